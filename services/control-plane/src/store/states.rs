//! The run state machine: the one table of which change may move a run from which state.
//! Every state change in the store is one of these [`Transition`]s, written as a conditional
//! update on the states it may come from, so a redelivered event or a second planner can
//! never move a run backwards or twice.

use super::state_name;
use filedrop_proto::v1::RunState;

/// The states a run is stored in.
pub const STATES: [RunState; 7] = [
    RunState::Receiving,
    RunState::Encoding,
    RunState::Uploading,
    RunState::Committing,
    RunState::Succeeded,
    RunState::Failed,
    RunState::Cancelled,
];

/// A change of a run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The client committed its stream: receiving → encoding.
    EndStream,
    /// Every segment is encoded: encoding → uploading.
    Encoded,
    /// Every file is uploaded: uploading → committing.
    Uploaded,
    /// The commit wrote the marker: committing → succeeded.
    Committed,
    /// Resumed from its staged data: failed → encoding.
    Retry,
    /// Failed, from any state that is not over.
    Fail,
    /// Cancelled, from any state but succeeded or cancelled (a failed run is given up).
    Cancel,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 7] = [
        Self::EndStream,
        Self::Encoded,
        Self::Uploaded,
        Self::Committed,
        Self::Retry,
        Self::Fail,
        Self::Cancel,
    ];

    /// The state it moves a run to.
    pub fn to(self) -> RunState {
        match self {
            Self::EndStream | Self::Retry => RunState::Encoding,
            Self::Encoded => RunState::Uploading,
            Self::Uploaded => RunState::Committing,
            Self::Committed => RunState::Succeeded,
            Self::Fail => RunState::Failed,
            Self::Cancel => RunState::Cancelled,
        }
    }

    /// The states it may move a run from.
    pub fn from(self) -> &'static [RunState] {
        use RunState::{Committing, Encoding, Failed, Receiving, Uploading};
        match self {
            Self::EndStream => &[Receiving],
            Self::Encoded => &[Encoding],
            Self::Uploaded => &[Uploading],
            Self::Committed => &[Committing],
            Self::Retry => &[Failed],
            Self::Fail => &[Receiving, Encoding, Uploading, Committing],
            Self::Cancel => &[Receiving, Encoding, Uploading, Committing, Failed],
        }
    }

    /// The SQL condition a run's row must meet to take it: `state IN ('…', …)`.
    pub fn condition(self) -> String {
        state_in(self.from())
    }
}

/// The SQL condition of a run's row being in one of `states`: `state IN ('…', …)`, the one
/// way the store's queries name states.
pub fn state_in(states: &[RunState]) -> String {
    let names: Vec<String> = states
        .iter()
        .map(|state| format!("'{}'", state_name(*state)))
        .collect();
    format!("state IN ({})", names.join(", "))
}

/// The states a run that ended before its client committed it is in (with its stream never
/// complete: no segment count); nothing of it was delivered.
pub const ENDED_UNCOMMITTED: [RunState; 2] = [RunState::Failed, RunState::Cancelled];

/// The SQL condition of a run that ended before its client committed it (see
/// [`ENDED_UNCOMMITTED`], and `RunRecord::ended_uncommitted`).
pub fn ended_uncommitted() -> String {
    format!("{} AND segment_count IS NULL", state_in(&ENDED_UNCOMMITTED))
}

/// Whether some transition moves a run from `from` to `to`.
pub fn may_move(from: RunState, to: RunState) -> bool {
    Transition::ALL
        .iter()
        .any(|transition| transition.to() == to && transition.from().contains(&from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::{Cancelled, Committing, Encoding, Failed, Receiving, Succeeded, Uploading};

    #[test]
    fn the_table_allows_exactly_the_runs_life() {
        let allowed = [
            (Receiving, Encoding),
            (Encoding, Uploading),
            (Uploading, Committing),
            (Committing, Succeeded),
            (Failed, Encoding),
            (Receiving, Failed),
            (Encoding, Failed),
            (Uploading, Failed),
            (Committing, Failed),
            (Receiving, Cancelled),
            (Encoding, Cancelled),
            (Uploading, Cancelled),
            (Committing, Cancelled),
            (Failed, Cancelled),
        ];
        for from in STATES {
            for to in STATES {
                assert_eq!(
                    may_move(from, to),
                    allowed.contains(&(from, to)),
                    "{from:?} → {to:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_leaves_a_succeeded_or_cancelled_run() {
        for to in STATES {
            assert!(!may_move(Succeeded, to), "succeeded → {to:?}");
            assert!(!may_move(Cancelled, to), "cancelled → {to:?}");
        }
    }

    #[test]
    fn a_condition_names_the_states_a_transition_comes_from() {
        assert_eq!(Transition::EndStream.condition(), "state IN ('receiving')");
        assert_eq!(
            Transition::Cancel.condition(),
            "state IN ('receiving', 'encoding', 'uploading', 'committing', 'failed')"
        );
    }

    #[test]
    fn a_run_ended_uncommitted_is_failed_or_cancelled_before_its_stream_was_complete() {
        assert_eq!(
            ended_uncommitted(),
            "state IN ('failed', 'cancelled') AND segment_count IS NULL"
        );
        assert_eq!(state_in(&[Receiving]), "state IN ('receiving')");
    }
}
