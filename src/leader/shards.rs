//! Sharded leading: the pipelines are split into shards by UID (`controller::shard`), each
//! shard has a Lease of its own (`<lease>-shard-<i>-of-<n>`), and a replica reconciles the shards
//! whose leases it holds, at most `max_held` at a time (one by default, so that N replicas
//! share N shards). Each held shard runs a controller whose watch the API server filters to
//! that shard; losing its lease stops that controller at once (its reconciles are dropped at
//! their next await) while the replica's other shards go on, and the replica becomes a
//! candidate for free shards again.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tracing::{Instrument, error, info, warn};

use super::election::{LeaderElector, Lost};
use super::run::{Shutdown, reconcile_until_stopped, stopped};
use crate::controller::shard::Shard;
use crate::controller::{Context, Scope};
use crate::metrics::Metrics;

/// One shard a replica may hold: its lease and the scope its controller runs in.
pub struct ShardLease {
    pub shard: Shard,
    pub elector: LeaderElector,
    pub scope: Scope,
}

/// How a held shard ended.
enum Ended {
    /// Its lease was lost: the shard's controller was stopped.
    Lost(ShardLease, Lost),
    /// A shutdown stopped its controller (`forced`: the reconciles in flight were cut short).
    Stopped(ShardLease, bool),
}

/// Acquires free shards (at most `max_held`, one per retry period, starting at an offset
/// derived from the identity so that replicas starting together try different shards first)
/// and runs each one's controller while holding its lease. Returns after a shutdown signal,
/// once every held shard's controller has stopped and its lease was released.
pub async fn lead_shards(
    mut free: Vec<ShardLease>,
    max_held: usize,
    retry_period: Duration,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> ExitCode {
    if !free.is_empty() {
        let offset = start_offset(free[0].elector.identity(), free.len());
        free.rotate_left(offset);
    }
    let mut held: FuturesUnordered<BoxFuture<'static, Ended>> = FuturesUnordered::new();
    let mut stopping = false;
    let mut forced_any = false;
    let graceful = shutdown.graceful();
    tokio::pin!(graceful);
    loop {
        if !stopping && held.len() < max_held {
            let mut taken = None;
            for (i, candidate) in free.iter_mut().enumerate() {
                if let Some(since) = candidate.elector.try_acquire().await {
                    taken = Some((i, since));
                    break;
                }
            }
            if let Some((i, since)) = taken {
                let lease = free.remove(i);
                info!(shard = %lease.shard, "reconciling the shard");
                held.push(Box::pin(hold(lease, since, ctx.clone(), shutdown.clone())));
                metrics.shards_held.set(held.len() as i64);
                metrics.leader.set(1);
            }
        }
        if stopping && held.is_empty() {
            return stopped(forced_any);
        }
        let wait = super::election::jittered(retry_period);
        tokio::select! {
            Some(ended) = held.next() => {
                match ended {
                    Ended::Lost(lease, lost) => {
                        error!(shard = %lease.shard, reason = %lost, "lost the shard's lease: its reconciles stopped; a candidate for free shards again");
                        free.push(lease);
                    }
                    Ended::Stopped(mut lease, forced) => {
                        forced_any |= forced;
                        release(&mut lease).await;
                    }
                }
                metrics.shards_held.set(held.len() as i64);
                metrics.leader.set(i64::from(!held.is_empty()));
            }
            () = &mut graceful, if !stopping => {
                stopping = true;
                if held.is_empty() {
                    info!("stopped before holding a shard");
                    return ExitCode::SUCCESS;
                }
            }
            () = tokio::time::sleep(wait), if !stopping => {}
        }
    }
}

/// Runs the shard's controller while renewing its lease.
async fn hold(
    mut lease: ShardLease,
    since: Instant,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) -> Ended {
    let span = tracing::info_span!("shard", shard = %lease.shard);
    let scope = lease.scope.clone();
    let outcome = tokio::select! {
        forced = reconcile_until_stopped(ctx, scope, &shutdown).instrument(span.clone()) => Err(forced),
        lost = lease.elector.hold(since).instrument(span) => Ok(lost),
    };
    match outcome {
        Ok(lost) => Ended::Lost(lease, lost),
        Err(forced) => Ended::Stopped(lease, forced),
    }
}

async fn release(lease: &mut ShardLease) {
    match lease.elector.release().await {
        Ok(true) => info!(shard = %lease.shard, "released the shard's lease"),
        Ok(false) => info!(shard = %lease.shard, "the shard's lease was no longer ours to release"),
        Err(e) => {
            warn!(shard = %lease.shard, error = %e, "could not release the shard's lease; it expires by itself")
        }
    }
}

/// Where a replica starts looking for a free shard: spread by its identity.
fn start_offset(identity: &str, shards: usize) -> usize {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(identity.as_bytes());
    (hasher.finish() % shards.max(1) as u64) as usize
}

/// The Lease of `shard` when the operator's lease is `lease`. The count is in the name: shard
/// 0 of 3 and shard 0 of 2 are different ranges of pipelines and must not share a Lease.
pub fn shard_lease_name(lease: &str, shard: Shard) -> String {
    format!("{lease}-shard-{}-of-{}", shard.index(), shard.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_start_at_shards_their_identities_spread_over() {
        let offsets: std::collections::BTreeSet<usize> = (0..30)
            .map(|i| start_offset(&format!("delivery-operator-7d9f-{i}"), 3))
            .collect();
        assert_eq!(offsets.len(), 3, "{offsets:?}");
        assert!(offsets.iter().all(|o| *o < 3));
        assert_eq!(start_offset("any", 1), 0);
        assert_eq!(
            shard_lease_name("delivery-operator", Shard::new(2, 3).expect("shard")),
            "delivery-operator-shard-2-of-3"
        );
    }
}
