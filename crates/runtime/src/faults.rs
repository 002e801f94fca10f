//! Faults injected on purpose, to test how filedrop survives a task that panics or a process
//! that dies while holding one. Off unless the binary is given a fault specification (the
//! `FILEDROP_TEST_FAULTS` environment variable of the worker and control-plane binaries);
//! never set it in production.
//!
//! A specification is a comma-separated list of `<place>:<action>:<marker>`: at `place`
//! (`encode`, `upload`, `finalize`, `commit`, `events`, `ingest`, `api`), a task whose message
//! contains the bytes of `marker` makes the process `panic` or `abort`. Tests put the marker
//! where only the run they mean to break carries it: a row number column's name (encode and
//! upload tasks), the destination prefix (upload and finalize tasks, the run's request), a
//! file's key (`commit`), a call's path (`api`).

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// An encode task, in a worker.
    Encode,
    /// An upload task, in a worker.
    Upload,
    /// A finalize task, in a worker.
    Finalize,
    /// A worker's commit of a run, just after it made the first file visible (matched against
    /// that file's key): a crash midway through the commit.
    Commit,
    /// A worker event, in the control plane's planner (matched against the run's request).
    Events,
    /// A `DoPut` stream, in the control plane, once its run exists (matched against the
    /// request).
    Ingest,
    /// Any gRPC call to the control plane (matched against its path, e.g.
    /// `/filedrop.v1.RunService/GetRun`).
    Api,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Panic: the task's boundary must catch it.
    Panic,
    /// Abort the process, as a crash or an out-of-memory kill would end it.
    Abort,
}

/// The faults a process injects; none by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Vec<(Place, Action, Vec<u8>)>,
}

impl Faults {
    /// Parses a specification (see the module's documentation); empty means none.
    pub fn parse(specification: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for rule in specification
            .split(',')
            .filter(|rule| !rule.trim().is_empty())
        {
            let mut parts = rule.trim().splitn(3, ':');
            let (Some(place), Some(action), Some(marker)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "fault {rule:?}: write <place>:<action>:<marker>, e.g. encode:panic:poison"
                ));
            };
            let place = match place {
                "encode" => Place::Encode,
                "upload" => Place::Upload,
                "finalize" => Place::Finalize,
                "commit" => Place::Commit,
                "events" => Place::Events,
                "ingest" => Place::Ingest,
                "api" => Place::Api,
                other => {
                    return Err(format!(
                        "fault place {other:?}: use encode, upload, finalize, commit, events, \
                         ingest or api"
                    ));
                }
            };
            let action = match action {
                "panic" => Action::Panic,
                "abort" => Action::Abort,
                other => return Err(format!("fault action {other:?}: use panic or abort")),
            };
            if marker.is_empty() {
                return Err(format!("fault {rule:?}: the marker is empty"));
            }
            rules.push((place, action, marker.as_bytes().to_vec()));
        }
        Ok(Self { rules })
    }

    /// Whether any fault is injected at `place`.
    pub fn any_at(&self, place: Place) -> bool {
        self.rules.iter().any(|(at, _, _)| *at == place)
    }

    /// Injects the fault configured at `place` for a message holding its marker: panics or
    /// aborts. Does nothing otherwise.
    pub fn inject(&self, place: Place, message: &[u8]) {
        for (at, action, marker) in &self.rules {
            let matches = *at == place
                && message
                    .windows(marker.len())
                    .any(|window| window == marker.as_slice());
            if matches {
                match action {
                    Action::Panic => panic!("fault injected at {place:?}"),
                    Action::Abort => {
                        tracing::error!(?place, "fault injected: aborting the process");
                        std::process::abort()
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifications_name_a_place_an_action_and_a_marker() {
        let faults = Faults::parse("encode:panic:poison, finalize:abort:x:y").unwrap();
        assert!(faults.any_at(Place::Encode) && faults.any_at(Place::Finalize));
        assert!(!faults.any_at(Place::Upload));
        faults.inject(Place::Encode, b"harmless");
        faults.inject(Place::Upload, b"poison");
        let panicked = std::panic::catch_unwind(|| faults.inject(Place::Encode, b"a poison pill"));
        assert!(panicked.is_err());
        assert!(Faults::parse("").unwrap().rules.is_empty());
        for bad in [
            "encode:panic",
            "disk:panic:x",
            "encode:explode:x",
            "encode:panic:",
        ] {
            assert!(Faults::parse(bad).is_err(), "{bad}");
        }
    }
}
