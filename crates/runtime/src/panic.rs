//! Panics caught at a task's boundary, so that one bad task fails its run and never its
//! process.
//!
//! [`install_hook`] (called by [`crate::telemetry::init`]) logs every panic as one structured
//! line and remembers where it happened, per thread; [`catch`] runs a future, and when it
//! panics, answers with that place instead of unwinding further. The place — a file and line,
//! such as `aws-runtime-1.5.10/src/auth.rs:296` — is what a run's error message shows: the
//! panic's own text stays in the operators' log, since it may quote data.

use futures::FutureExt;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;

thread_local! {
    /// Where the last panic on this thread happened.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic caught by [`catch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// Where it happened: the last three parts of the file's path, line and column.
    pub location: String,
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panicked at {}", self.location)
    }
}

/// Installs the panic hook: each panic is logged (`error`, with its location and message) and
/// its location kept for [`catch`]. Safe to call more than once.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| {
                format!(
                    "{}:{}:{}",
                    short_path(location.file()),
                    location.line(),
                    location.column()
                )
            })
            .unwrap_or_else(|| "an unknown place".to_owned());
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            %location,
            thread = thread.name().unwrap_or("unnamed"),
            message,
            "panic"
        );
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(location));
    }));
}

/// The last three parts of a source path: the crate (with its version, for a dependency),
/// `src` and the file, without the machine's directories.
fn short_path(file: &str) -> String {
    let parts: Vec<&str> = file.split(['/', '\\']).collect();
    parts[parts.len().saturating_sub(3)..].join("/")
}

/// Runs `future`; if it panics, the panic stops here and its place is returned. The future
/// must not be used after a panic (it is consumed), so no half-updated state is seen again.
pub async fn catch<F: Future>(future: F) -> Result<F::Output, Panic> {
    LAST_PANIC.with(|last| last.borrow_mut().take());
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(output) => Ok(output),
        // Read on the thread that polled the future when it panicked: this one, as no await
        // lies between that poll and here.
        Err(_) => Err(Panic {
            location: LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| "an unknown place".to_owned()),
        }),
    }
}

/// Runs `work` (blocking code, on the thread that calls this); if it panics, the panic stops
/// here and its place is returned. For work moved to a blocking thread
/// (`tokio::task::spawn_blocking(|| catch_blocking(work))`), whose panic would otherwise come
/// back as a `JoinError` that quotes the panic's message.
pub fn catch_blocking<T>(work: impl FnOnce() -> T) -> Result<T, Panic> {
    LAST_PANIC.with(|last| last.borrow_mut().take());
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|_| Panic {
        location: LAST_PANIC
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| "an unknown place".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_future_is_caught_with_its_place() {
        install_hook();
        let caught = catch(async {
            tokio::task::yield_now().await;
            let values: Vec<u8> = Vec::new();
            values[3]
        })
        .await
        .unwrap_err();
        assert!(
            caught.location.starts_with("runtime/src/panic.rs:"),
            "{caught}"
        );
        assert_eq!(catch(async { 7 }).await, Ok(7));
        let caught = tokio::task::spawn_blocking(|| catch_blocking(|| -> u8 { panic!("x") }))
            .await
            .expect("the blocking task returns");
        assert!(
            caught
                .unwrap_err()
                .location
                .starts_with("runtime/src/panic.rs:"),
            "the place of a blocking panic"
        );
    }

    #[test]
    fn paths_keep_the_crate_and_file_only() {
        assert_eq!(
            short_path("/root/.cargo/registry/src/somewhere/aws-runtime-1.5.10/src/auth.rs"),
            "aws-runtime-1.5.10/src/auth.rs"
        );
        assert_eq!(short_path("src/lib.rs"), "src/lib.rs");
    }
}
