//! A shutdown signal shared by every loop of a process.

use tokio::sync::watch;

/// The sending half: raise it once to ask every loop to stop.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// The receiving half: loops wait on [`Shutdown::wait`] or check [`Shutdown::is_raised`].
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, unraised signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger(sender), Shutdown(receiver))
}

impl ShutdownTrigger {
    /// Asks every loop to stop.
    pub fn raise(&self) {
        self.0.send_replace(true);
    }

    /// Raises the signal on SIGINT or SIGTERM.
    pub fn raise_on_signals(self) {
        tokio::spawn(async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutdown requested");
            self.raise();
        });
    }
}

impl Shutdown {
    /// Whether the signal is raised.
    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal is raised.
    pub async fn wait(&self) {
        let mut receiver = self.0.clone();
        // An error means the trigger is gone: nothing can raise it any more, so stop too.
        let _ = receiver.wait_for(|raised| *raised).await;
    }
}
