//! The process around the election: wait for the lease, run the controller while holding it,
//! stop on losing it or on a shutdown signal.

use std::process::ExitCode;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;
use tracing::{Instrument, error, info, warn};

use super::LeaderElector;
use crate::controller::{self, Context, Scope};
use crate::metrics::Metrics;

/// Waits for the lease, then runs the controller while holding it. Losing it stops every
/// reconcile at once (the controller's future is dropped) and exits with a failure, so that
/// Kubernetes restarts the container as a candidate again: the process never reconciles
/// without the lease. A shutdown signal stops gracefully and releases the lease, so the next
/// replica takes over at its next attempt instead of after the lease duration.
pub async fn lead(
    mut elector: LeaderElector,
    span: tracing::Span,
    ctx: Arc<Context>,
    scope: Scope,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> ExitCode {
    let since = tokio::select! {
        since = elector.acquire().instrument(span.clone()) => since,
        () = shutdown.graceful() => {
            info!("stopped before leading");
            return ExitCode::SUCCESS;
        }
    };
    metrics.leader.set(1);
    let lost = tokio::select! {
        forced = reconcile_until_stopped(ctx, scope, &shutdown) => Err(forced),
        lost = elector.hold(since).instrument(span.clone()) => Ok(lost),
    };
    metrics.leader.set(0);
    match lost {
        Ok(lost) => {
            error!(
                parent: &span,
                reason = %lost,
                "lost the lease: stopping every reconcile and exiting, so that only the new leader acts"
            );
            ExitCode::FAILURE
        }
        Err(forced) => {
            match elector.release().await {
                Ok(true) => info!(parent: &span, "released the lease"),
                Ok(false) => info!(parent: &span, "the lease was no longer ours to release"),
                Err(e) => {
                    warn!(parent: &span, error = %e, "could not release the lease; it expires by itself")
                }
            }
            stopped(forced)
        }
    }
}

/// The exit status after a shutdown: a failure when the reconciles in flight were cut short.
pub fn stopped(forced: bool) -> ExitCode {
    info!("delivery-operator stopped");
    if forced {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the controller until a shutdown signal; the reconciles in flight finish unless a
/// second signal comes or they outlast `settings.stop_grace` (kept below the pod's termination
/// grace period, so the lease is still released before Kubernetes kills the process).
/// Returns whether they were stopped at once.
pub async fn reconcile_until_stopped(ctx: Arc<Context>, scope: Scope, shutdown: &Shutdown) -> bool {
    let grace = ctx.settings.stop_grace;
    let outlasted = {
        let graceful = shutdown.graceful();
        async move {
            graceful.await;
            tokio::time::sleep(grace).await;
        }
    };
    tokio::select! {
        () = controller::run(ctx, scope, shutdown.graceful()) => false,
        () = shutdown.clone().signalled(2) => {
            warn!("second shutdown signal: stopping the reconciles in flight");
            true
        }
        () = outlasted => {
            warn!(grace_seconds = grace.as_secs(), "the reconciles in flight did not finish within the stop grace: stopping them");
            true
        }
    }
}

/// SIGTERM or Ctrl-C: the first asks for a graceful stop, a second for an immediate one.
#[derive(Clone)]
pub struct Shutdown {
    signals: watch::Receiver<u32>,
    first: Shared<BoxFuture<'static, ()>>,
}

impl Shutdown {
    pub fn listen() -> Self {
        let (tx, rx) = watch::channel(0u32);
        tokio::spawn(async move {
            let mut terminate = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                    None
                }
            };
            loop {
                let sigterm = async {
                    match terminate.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    Ok(()) = tokio::signal::ctrl_c() => {}
                    () = sigterm => {}
                }
                tx.send_modify(|n| *n += 1);
                if *tx.borrow() == 1 {
                    info!(
                        "shutting down: reconciles in flight finish first (a second signal stops them)"
                    );
                }
            }
        });
        let first = Self::count(rx.clone(), 1).boxed().shared();
        Self { signals: rx, first }
    }

    async fn count(mut signals: watch::Receiver<u32>, times: u32) {
        // An error means the sender is gone: no signal can come any more.
        if signals.wait_for(|n| *n >= times).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves on the first signal.
    pub fn graceful(&self) -> Shared<BoxFuture<'static, ()>> {
        self.first.clone()
    }

    async fn signalled(self, times: u32) {
        Self::count(self.signals, times).await;
    }
}
