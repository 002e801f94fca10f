//! Whether an export stream was committed.
//!
//! A run is delivered only when its client says the stream is complete: the last message
//! carries a `filedrop.v1.ExportCommit` in its `app_metadata`, with the rows and record batches
//! the client sent. The ingest shows every message's `app_metadata` to a [`CommitWatch`] as it
//! arrives and counts the batches it decodes; when the stream ends, [`CommitWatch::verdict`]
//! says whether the export is committed. Anything else — no commit, counts that differ, a
//! message after the commit, metadata that is not a commit — is a [`CommitProblem`], and the
//! run fails with `STREAM_INCOMPLETE` without delivering anything.

use filedrop_proto::v1::ExportCommit;
use prost::Message;
use std::fmt;

/// What a stream carried, as the server counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Rows in the record batches.
    pub rows: u64,
    /// Record batch messages.
    pub batches: u64,
}

/// Why a stream is not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitProblem {
    /// The stream ended cleanly without an `ExportCommit`.
    Missing,
    /// A message's `app_metadata` is not an `ExportCommit`.
    NotACommit(String),
    /// A message arrived after the commit.
    AfterCommit,
    /// The commit counts something else than what arrived.
    Mismatch {
        /// What the commit says was sent.
        committed: Received,
        /// What arrived.
        received: Received,
    },
}

impl fmt::Display for CommitProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(
                f,
                "the stream ended without an ExportCommit; end a complete stream with an \
                 ExportCommit (the rows and batches sent) in the last message's app_metadata (pyarrow: \
                 writer.write_metadata(commit.SerializeToString()) before done_writing()), or set \
                 ExportRequest.commit_at_stream_end"
            ),
            Self::NotACommit(error) => write!(
                f,
                "a message's app_metadata is not an ExportCommit ({error}); only the last \
                 message carries app_metadata, and it is a filedrop.v1.ExportCommit"
            ),
            Self::AfterCommit => write!(
                f,
                "a message arrived after the ExportCommit; the commit ends the stream, so send \
                 it with (or after) the last record batch"
            ),
            Self::Mismatch {
                committed,
                received,
            } => write!(
                f,
                "the ExportCommit counts {} rows in {} record batches, but {} rows in {} \
                 record batches arrived; send the export again, counting what is sent",
                committed.rows, committed.batches, received.rows, received.batches
            ),
        }
    }
}

impl std::error::Error for CommitProblem {}

/// Follows the `app_metadata` of a stream's messages, in order.
#[derive(Debug, Default)]
pub struct CommitWatch {
    commit: Option<Received>,
    problem: Option<CommitProblem>,
}

impl CommitWatch {
    /// A watch over a stream that has not begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one message's `app_metadata` (empty when it carries none). The first problem is
    /// kept and returned from then on: the stream should be read no further.
    pub fn message(&mut self, app_metadata: &[u8]) -> Result<(), CommitProblem> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        let problem = if self.commit.is_some() {
            Some(CommitProblem::AfterCommit)
        } else if app_metadata.is_empty() {
            None
        } else {
            match ExportCommit::decode(app_metadata) {
                Ok(ExportCommit {
                    rows: Some(rows),
                    batches: Some(batches),
                }) => {
                    self.commit = Some(Received { rows, batches });
                    None
                }
                Ok(_) => Some(CommitProblem::NotACommit(
                    "rows and batches are both required, zeros included".to_owned(),
                )),
                Err(error) => Some(CommitProblem::NotACommit(error.to_string())),
            }
        };
        match problem {
            Some(problem) => {
                self.problem = Some(problem.clone());
                Err(problem)
            }
            None => Ok(()),
        }
    }

    /// Whether a stream that ended cleanly, having carried `received`, is committed. With
    /// `commit_at_stream_end`, a stream without a commit is committed by its end (a commit it
    /// does carry is still checked).
    pub fn verdict(
        &self,
        received: Received,
        commit_at_stream_end: bool,
    ) -> Result<(), CommitProblem> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        match self.commit {
            Some(committed) if committed == received => Ok(()),
            Some(committed) => Err(CommitProblem::Mismatch {
                committed,
                received,
            }),
            None if commit_at_stream_end => Ok(()),
            None => Err(CommitProblem::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(rows: u64, batches: u64) -> Vec<u8> {
        ExportCommit {
            rows: Some(rows),
            batches: Some(batches),
        }
        .encode_to_vec()
    }

    const THREE_BATCHES: Received = Received {
        rows: 300,
        batches: 3,
    };

    #[test]
    fn a_commit_with_the_counts_that_arrived_commits() {
        let mut watch = CommitWatch::new();
        for _ in 0..3 {
            watch.message(b"").unwrap();
        }
        watch.message(&commit(300, 3)).unwrap();
        assert_eq!(watch.verdict(THREE_BATCHES, false), Ok(()));
    }

    #[test]
    fn a_commit_of_nothing_commits_an_empty_stream() {
        let mut watch = CommitWatch::new();
        let zeros = commit(0, 0);
        assert!(!zeros.is_empty(), "a commit of zeros is sent as bytes");
        watch.message(&zeros).unwrap();
        assert_eq!(watch.verdict(Received::default(), false), Ok(()));
    }

    #[test]
    fn a_commit_without_its_counts_is_refused() {
        let mut watch = CommitWatch::new();
        let rows_only = ExportCommit {
            rows: Some(3),
            batches: None,
        }
        .encode_to_vec();
        let problem = watch.message(&rows_only).unwrap_err();
        assert!(problem.to_string().contains("both required"), "{problem}");
    }

    #[test]
    fn a_stream_that_ends_without_a_commit_is_not_committed() {
        let mut watch = CommitWatch::new();
        watch.message(b"").unwrap();
        let problem = watch.verdict(THREE_BATCHES, false).unwrap_err();
        assert_eq!(problem, CommitProblem::Missing);
        assert!(problem.to_string().contains("write_metadata"), "{problem}");
    }

    #[test]
    fn the_clean_end_commits_when_the_request_says_so() {
        let watch = CommitWatch::new();
        assert_eq!(watch.verdict(THREE_BATCHES, true), Ok(()));
    }

    #[test]
    fn a_commit_is_checked_even_when_the_end_would_commit() {
        let mut watch = CommitWatch::new();
        watch.message(&commit(3_000_000, 60)).unwrap();
        let problem = watch.verdict(THREE_BATCHES, true).unwrap_err();
        assert_eq!(
            problem,
            CommitProblem::Mismatch {
                committed: Received {
                    rows: 3_000_000,
                    batches: 60
                },
                received: THREE_BATCHES,
            }
        );
        assert!(
            problem
                .to_string()
                .contains("3000000 rows in 60 record batches"),
            "{problem}"
        );
    }

    #[test]
    fn counts_must_match_in_batches_too() {
        let mut watch = CommitWatch::new();
        watch.message(&commit(300, 2)).unwrap();
        assert!(matches!(
            watch.verdict(THREE_BATCHES, false),
            Err(CommitProblem::Mismatch { .. })
        ));
    }

    #[test]
    fn nothing_may_follow_the_commit() {
        let mut watch = CommitWatch::new();
        watch.message(&commit(300, 3)).unwrap();
        assert_eq!(watch.message(b""), Err(CommitProblem::AfterCommit));
        // The problem stays, whatever comes next.
        assert_eq!(
            watch.message(&commit(300, 3)),
            Err(CommitProblem::AfterCommit)
        );
        assert_eq!(
            watch.verdict(THREE_BATCHES, true),
            Err(CommitProblem::AfterCommit)
        );
    }

    #[test]
    fn metadata_that_is_not_a_commit_is_refused() {
        let mut watch = CommitWatch::new();
        let problem = watch.message(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(problem, CommitProblem::NotACommit(_)), "{problem}");
        assert!(watch.verdict(THREE_BATCHES, true).is_err());
    }
}
