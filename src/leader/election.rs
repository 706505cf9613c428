//! Leader election on a `coordination.k8s.io/v1` Lease: of several replicas, exactly one runs
//! the controller.
//!
//! The semantics are client-go's (`k8s.io/client-go/tools/leaderelection`), so that clocks
//! that disagree between replicas do not matter: a replica never compares the lease's
//! `renewTime` (the holder's clock) with its own clock. It remembers when *it* first saw the
//! lease's current `resourceVersion`, and considers another holder's claim expired only once
//! `leaseDurationSeconds` have passed on its own monotonic clock without the lease changing.
//! Every write is a replace carrying the `resourceVersion` that was read, so of two replicas
//! racing for a free lease exactly one succeeds.
//!
//! The leader renews every retry period and leads only while a renewal succeeded within the
//! renew deadline, measured from when that renewal was *sent*. Another replica saw that write
//! no earlier than it was sent and waits a whole lease duration after seeing it, so with
//! `renew deadline < lease duration` the old leader has stopped before a new one starts.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::Rng;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tracing::{debug, info, warn};

/// The three durations of leader election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a holder's claim lasts, on an observer's clock, after the lease last changed.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// client-go's and controller-runtime's defaults.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// `retry period < renew deadline < lease duration`, all positive: a leader that cannot
    /// renew must stop before another replica may take the lease, and must get at least one
    /// retry before it gives up.
    pub fn validate(self) -> Result<Self, Error> {
        if self.retry_period.is_zero() {
            return Err(Error::Timing("the retry period must be positive".into()));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(Error::Timing(format!(
                "the renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline, self.retry_period
            )));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(Error::Timing(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            )));
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err() {
            return Err(Error::Timing("the lease duration is too long".into()));
        }
        Ok(self)
    }

    /// `leaseDurationSeconds` as the Lease stores it (whole seconds, rounded up).
    fn lease_duration_seconds(self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader-election timing: {0}")]
    Timing(String),
    #[error("Lease API call failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Why this replica stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The lease names another holder, or none (someone cleared or deleted it).
    TakenBy(Option<String>),
    /// No renewal succeeded within the renew deadline.
    NotRenewed {
        deadline: Duration,
        last_error: Option<String>,
    },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy(Some(holder)) => write!(f, "the lease is now held by {holder}"),
            Lost::TakenBy(None) => {
                write!(
                    f,
                    "the lease no longer names this replica (released or deleted by someone else)"
                )
            }
            Lost::NotRenewed {
                deadline,
                last_error,
            } => {
                write!(f, "the lease could not be renewed within {deadline:?}")?;
                match last_error {
                    Some(e) => write!(f, " (last error: {e})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The identity this replica writes into `holderIdentity`: the pod's name in a cluster
/// (`POD_NAME` from the downward API), else the host name with a random suffix, so that two
/// processes on one machine never share an identity.
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        return pod;
    }
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "delivery-operator".into());
    let suffix: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{host}-{suffix:06x}")
}

/// What this replica last saw of the lease, and when it first saw it (its own clock).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Observed {
    resource_version: Option<String>,
    /// `None` when the lease is free (no holder, or an empty one).
    holder: Option<String>,
    lease_duration: Duration,
    since: Instant,
}

/// The observation after reading `lease` at `now`: the time it was first seen moves only when
/// its `resourceVersion` changed. A lease without a duration is given `fallback` (ours), which
/// errs on the side of waiting.
fn observe(
    previous: Option<&Observed>,
    lease: &Lease,
    now: Instant,
    fallback: Duration,
) -> Observed {
    let spec = lease.spec.as_ref();
    let resource_version = lease.metadata.resource_version.clone();
    let since = match previous {
        Some(p) if p.resource_version.is_some() && p.resource_version == resource_version => {
            p.since
        }
        _ => now,
    };
    Observed {
        resource_version,
        holder: spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        lease_duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(fallback, Duration::from_secs),
        since,
    }
}

/// What to do with a lease as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// We hold it: renew.
    Renew,
    /// Free, or its holder let it expire: take it.
    Take,
    /// Another replica holds it; its claim runs out after `remaining` unless the lease changes.
    HeldBy { holder: String, remaining: Duration },
}

fn judge(observed: &Observed, identity: &str, now: Instant) -> Verdict {
    match &observed.holder {
        None => Verdict::Take,
        Some(holder) if holder == identity => Verdict::Renew,
        Some(holder) => {
            let expires = observed.since + observed.lease_duration;
            if now >= expires {
                Verdict::Take
            } else {
                Verdict::HeldBy {
                    holder: holder.clone(),
                    remaining: expires - now,
                }
            }
        }
    }
}

/// `current` claimed by `identity`: a renewal keeps the acquire time and the transition
/// count; a takeover starts a new term. Metadata (the resourceVersion above all) is kept, so
/// the write fails if anyone wrote in between.
fn claimed(current: &Lease, identity: &str, timing: Timing, now: MicroTime) -> Lease {
    let previous = current.spec.clone().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(identity);
    let transitions = previous.lease_transitions.unwrap_or(0);
    Lease {
        metadata: current.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(timing.lease_duration_seconds()),
            acquire_time: if ours {
                previous.acquire_time.or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..previous
        }),
    }
}

/// `current` released: no holder, so the next replica takes it at its next attempt instead of
/// waiting for it to expire.
fn released(current: &Lease, now: MicroTime) -> Lease {
    let previous = current.spec.clone().unwrap_or_default();
    Lease {
        metadata: current.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(now),
            ..previous
        }),
    }
}

/// A new lease, held by `identity` from `now`.
fn created(name: &str, identity: &str, timing: Timing, now: MicroTime) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(timing.lease_duration_seconds()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// `base` stretched by up to a fifth, so replicas that started together do not keep asking
/// at the same instant.
pub(super) fn jittered(base: Duration) -> Duration {
    base.mul_f64(1.0 + rand::rng().random_range(0.0..0.2))
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The outcome of one attempt to acquire or renew.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// The lease names us, as of a write that succeeded.
    Leading,
    /// Someone else holds it (or, while renewing, it no longer names us).
    NotOurs {
        holder: Option<String>,
        remaining: Duration,
    },
    /// Another replica wrote between our read and our write: look again.
    Conflict,
}

/// One replica's side of the election for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Reads the lease, decides, and writes our claim when it is ours to take or renew.
    /// While `renewing`, a lease that no longer names us is never taken back: it is lost.
    async fn try_acquire_or_renew(&mut self, renewing: bool) -> Result<Attempt, kube::Error> {
        let read_at = Instant::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            if renewing {
                // Someone deleted it: another replica may be creating it right now.
                return Ok(Attempt::NotOurs {
                    holder: None,
                    remaining: Duration::ZERO,
                });
            }
            let fresh = created(&self.name, &self.identity, self.timing, now_micro());
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(written) => {
                    self.observed =
                        Some(observe(None, &written, read_at, self.timing.lease_duration));
                    Ok(Attempt::Leading)
                }
                Err(e) if is_conflict(&e) => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let observed = observe(
            self.observed.as_ref(),
            &lease,
            Instant::now(),
            self.timing.lease_duration,
        );
        let verdict = judge(&observed, &self.identity, Instant::now());
        self.observed = Some(observed);
        match verdict {
            Verdict::HeldBy { holder, remaining } => Ok(Attempt::NotOurs {
                holder: Some(holder),
                remaining,
            }),
            Verdict::Take if renewing => Ok(Attempt::NotOurs {
                holder: lease
                    .spec
                    .and_then(|s| s.holder_identity)
                    .filter(|h| !h.is_empty()),
                remaining: Duration::ZERO,
            }),
            Verdict::Take | Verdict::Renew => {
                let claim = claimed(&lease, &self.identity, self.timing, now_micro());
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &claim)
                    .await
                {
                    Ok(written) => {
                        self.observed = Some(observe(
                            self.observed.as_ref(),
                            &written,
                            Instant::now(),
                            self.timing.lease_duration,
                        ));
                        Ok(Attempt::Leading)
                    }
                    Err(e) if is_conflict(&e) => Ok(Attempt::Conflict),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica holds the lease; returns when the winning write was sent,
    /// the instant the renew deadline counts from. Errors (the API unreachable, RBAC missing)
    /// are logged and retried: a replica that cannot reach the lease must not lead.
    pub async fn acquire(&mut self) -> Instant {
        let mut last_holder: Option<String> = None;
        loop {
            let sent = Instant::now();
            match self.try_acquire_or_renew(false).await {
                Ok(Attempt::Leading) => {
                    info!(identity = %self.identity, "acquired the lease: leading");
                    return sent;
                }
                Ok(Attempt::NotOurs { holder, remaining }) => {
                    if holder != last_holder {
                        info!(
                            holder = holder.as_deref().unwrap_or(""),
                            expires_in = ?remaining,
                            "the lease is held by another replica; waiting to lead"
                        );
                        last_holder = holder;
                    } else {
                        debug!(holder = holder.as_deref().unwrap_or(""), expires_in = ?remaining, "still waiting to lead");
                    }
                }
                Ok(Attempt::Conflict) => {
                    debug!("another replica wrote the lease first; looking again");
                }
                Err(e) => warn!(error = %e, "could not read or write the lease; retrying"),
            }
            sleep(jittered(self.timing.retry_period)).await;
        }
    }

    /// One attempt to take the lease: the instant the winning write was sent, or None when it
    /// is held by another replica (or the API server could not be reached). For a replica
    /// that looks at several leases (shards) in turn instead of waiting on one.
    pub async fn try_acquire(&mut self) -> Option<Instant> {
        let sent = Instant::now();
        match self.try_acquire_or_renew(false).await {
            Ok(Attempt::Leading) => {
                info!(lease = %self.name, identity = %self.identity, "acquired the lease");
                Some(sent)
            }
            Ok(Attempt::NotOurs { holder, remaining }) => {
                debug!(lease = %self.name, holder = holder.as_deref().unwrap_or(""), expires_in = ?remaining, "held by another replica");
                None
            }
            Ok(Attempt::Conflict) => None,
            Err(e) => {
                warn!(lease = %self.name, error = %e, "could not read or write the lease");
                None
            }
        }
    }

    /// Renews the lease every retry period, and returns only when leadership is lost: another
    /// holder is seen, or no renewal succeeded within the renew deadline counted from when the
    /// last successful one (or the acquiring write, `since`) was sent. An attempt still
    /// running at the deadline is abandoned at the deadline.
    pub async fn hold(&mut self, since: Instant) -> Lost {
        let mut renewed = since;
        let mut last_error: Option<String> = None;
        let mut wait = true;
        loop {
            let deadline = renewed + self.timing.renew_deadline;
            if wait {
                sleep_until((Instant::now() + self.timing.retry_period).min(deadline)).await;
            }
            wait = true;
            if Instant::now() >= deadline {
                return self.not_renewed(last_error);
            }
            let sent = Instant::now();
            match timeout_at(deadline, self.try_acquire_or_renew(true)).await {
                Err(_) => {
                    return self.not_renewed(Some(last_error.unwrap_or_else(|| {
                        "the renewal did not finish before the deadline".into()
                    })));
                }
                Ok(Ok(Attempt::Leading)) => {
                    debug!("renewed the lease");
                    renewed = sent;
                    last_error = None;
                }
                Ok(Ok(Attempt::NotOurs { holder, .. })) => return Lost::TakenBy(holder),
                // Someone wrote the lease since we read it: read it again at once.
                Ok(Ok(Attempt::Conflict)) => {
                    last_error = Some("the lease changed between read and write".into());
                    wait = false;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "could not renew the lease; retrying until the renew deadline");
                    last_error = Some(e.to_string());
                }
            }
        }
    }

    fn not_renewed(&self, last_error: Option<String>) -> Lost {
        Lost::NotRenewed {
            deadline: self.timing.renew_deadline,
            last_error,
        }
    }

    /// Clears `holderIdentity` if the lease still names us, so the next replica takes over
    /// at its next attempt. Returns whether it did. Bounded by the renew deadline, so a
    /// shutdown never hangs on an unreachable API server.
    pub async fn release(&mut self) -> Result<bool, Error> {
        let attempt = async {
            let Some(lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let holder = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref());
            if holder != Some(self.identity.as_str()) {
                return Ok(false);
            }
            match self
                .api
                .replace(
                    &self.name,
                    &PostParams::default(),
                    &released(&lease, now_micro()),
                )
                .await
            {
                Ok(_) => Ok(true),
                // Written by someone else since we read it: no longer ours to release.
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(Error::Kube(e)),
            }
        };
        match timeout(self.timing.renew_deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "replica-a";
    const OTHER: &str = "replica-b";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at(text: &str) -> MicroTime {
        MicroTime(text.parse().expect("timestamp"))
    }

    fn lease(resource_version: &str, holder: Option<&str>, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("delivery-operator".into()),
                namespace: Some("ops".into()),
                resource_version: Some(resource_version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: duration,
                acquire_time: Some(at("2030-01-01T00:00:00Z")),
                renew_time: Some(at("2030-01-01T00:05:00Z")),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn the_defaults_are_client_gos_and_valid() {
        let t = Timing::default();
        assert_eq!(
            (t.lease_duration, t.renew_deadline, t.retry_period),
            (secs(15), secs(10), secs(2))
        );
        assert_eq!(t.validate().ok(), Some(t));
    }

    #[test]
    fn a_deadline_not_shorter_than_the_lease_or_not_longer_than_a_retry_is_refused() {
        let timing = |l, d, r| Timing {
            lease_duration: secs(l),
            renew_deadline: secs(d),
            retry_period: secs(r),
        };
        assert!(timing(4, 3, 1).validate().is_ok());
        for (l, d, r) in [(10, 10, 2), (10, 12, 2), (15, 2, 2), (15, 10, 0)] {
            assert!(
                matches!(timing(l, d, r).validate(), Err(Error::Timing(_))),
                "{l}/{d}/{r} must be refused"
            );
        }
    }

    #[test]
    fn the_stored_duration_is_rounded_up_to_whole_seconds() {
        let t = Timing {
            lease_duration: Duration::from_millis(4500),
            ..Timing::default()
        };
        assert_eq!(t.lease_duration_seconds(), 5);
        assert_eq!(Timing::default().lease_duration_seconds(), 15);
    }

    #[test]
    fn the_observation_time_moves_only_when_the_resource_version_changes() {
        let t0 = Instant::now();
        let first = observe(None, &lease("7", Some(OTHER), Some(15)), t0, secs(15));
        assert_eq!(first.since, t0);
        let same = observe(
            Some(&first),
            &lease("7", Some(OTHER), Some(15)),
            t0 + secs(9),
            secs(15),
        );
        assert_eq!(
            same.since, t0,
            "an unchanged lease keeps its first sighting"
        );
        let renewed = observe(
            Some(&same),
            &lease("8", Some(OTHER), Some(15)),
            t0 + secs(10),
            secs(15),
        );
        assert_eq!(
            renewed.since,
            t0 + secs(10),
            "a renewal restarts the holder's term"
        );
    }

    #[test]
    fn an_empty_holder_is_free_and_a_missing_duration_is_ours() {
        let o = observe(None, &lease("1", Some(""), None), Instant::now(), secs(15));
        assert_eq!(o.holder, None);
        assert_eq!(o.lease_duration, secs(15));
        let o = observe(
            None,
            &lease("1", Some(OTHER), Some(40)),
            Instant::now(),
            secs(15),
        );
        assert_eq!(o.lease_duration, secs(40), "the holder's duration counts");
    }

    #[test]
    fn a_free_lease_is_taken_and_our_own_is_renewed() {
        let t0 = Instant::now();
        let free = observe(None, &lease("1", None, Some(15)), t0, secs(15));
        assert_eq!(judge(&free, ME, t0), Verdict::Take);
        let ours = observe(None, &lease("1", Some(ME), Some(15)), t0, secs(15));
        assert_eq!(judge(&ours, ME, t0), Verdict::Renew);
        // Even right after our own restart (same pod name): we are the holder.
        assert_eq!(judge(&ours, ME, t0 + secs(100)), Verdict::Renew);
    }

    #[test]
    fn another_holder_expires_a_lease_duration_after_we_last_saw_the_lease_change() {
        let t0 = Instant::now();
        let held = observe(None, &lease("1", Some(OTHER), Some(15)), t0, secs(15));
        assert_eq!(
            judge(&held, ME, t0 + secs(14)),
            Verdict::HeldBy {
                holder: OTHER.into(),
                remaining: secs(1)
            }
        );
        assert_eq!(judge(&held, ME, t0 + secs(15)), Verdict::Take);
        // The holder renewed at t0 + 14: its term restarts then, on our clock.
        let renewed = observe(
            Some(&held),
            &lease("2", Some(OTHER), Some(15)),
            t0 + secs(14),
            secs(15),
        );
        assert_eq!(
            judge(&renewed, ME, t0 + secs(20)),
            Verdict::HeldBy {
                holder: OTHER.into(),
                remaining: secs(9)
            }
        );
    }

    #[test]
    fn the_holders_clock_does_not_matter() {
        let t0 = Instant::now();
        // A holder whose clock is an hour behind writes renewTime an hour in the past: its
        // claim still lasts a full duration after we saw the write.
        let mut behind = lease("5", Some(OTHER), Some(15));
        if let Some(spec) = behind.spec.as_mut() {
            spec.renew_time = Some(at("2000-01-01T00:00:00Z"));
        }
        let o = observe(None, &behind, t0, secs(15));
        assert!(matches!(
            judge(&o, ME, t0 + secs(10)),
            Verdict::HeldBy { .. }
        ));
        // A holder whose clock runs ahead writes renewTime in the future: once the lease has
        // not changed for a duration, it is expired all the same.
        let mut ahead = lease("6", Some(OTHER), Some(15));
        if let Some(spec) = ahead.spec.as_mut() {
            spec.renew_time = Some(at("2100-01-01T00:00:00Z"));
        }
        let o = observe(None, &ahead, t0, secs(15));
        assert_eq!(judge(&o, ME, t0 + secs(15)), Verdict::Take);
    }

    #[test]
    fn a_renewal_keeps_the_term_and_a_takeover_starts_a_new_one() {
        let now = at("2030-01-01T00:06:00Z");
        let renewal = claimed(
            &lease("9", Some(ME), Some(15)),
            ME,
            Timing::default(),
            now.clone(),
        );
        let spec = renewal.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(at("2030-01-01T00:00:00Z")));
        assert_eq!(spec.renew_time, Some(now.clone()));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(
            renewal.metadata.resource_version.as_deref(),
            Some("9"),
            "the write is conditional on what was read"
        );

        let takeover = claimed(
            &lease("9", Some(OTHER), Some(40)),
            ME,
            Timing::default(),
            now.clone(),
        );
        let spec = takeover.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(now.clone()));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(
            spec.lease_duration_seconds,
            Some(15),
            "our duration replaces theirs"
        );

        let after_release = claimed(&lease("9", None, Some(1)), ME, Timing::default(), now);
        assert_eq!(
            after_release.spec.and_then(|s| s.lease_transitions),
            Some(4)
        );
    }

    #[test]
    fn a_released_lease_has_no_holder_and_keeps_its_history() {
        let r = released(&lease("9", Some(ME), Some(15)), at("2030-01-01T00:07:00Z"));
        assert_eq!(r.metadata.resource_version.as_deref(), Some("9"));
        let spec = r.spec.expect("spec");
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time, Some(at("2030-01-01T00:00:00Z")));
        // Free for anyone at once.
        let o = observe(
            None,
            &Lease {
                spec: Some(spec),
                ..lease("10", None, None)
            },
            Instant::now(),
            secs(15),
        );
        assert_eq!(judge(&o, OTHER, Instant::now()), Verdict::Take);
    }

    #[test]
    fn a_new_lease_starts_at_transition_zero() {
        let l = created(
            "delivery-operator",
            ME,
            Timing::default(),
            at("2030-01-01T00:00:00Z"),
        );
        let spec = l.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(l.metadata.resource_version, None);
    }

    #[test]
    fn losses_say_why() {
        assert_eq!(
            Lost::TakenBy(Some(OTHER.into())).to_string(),
            "the lease is now held by replica-b"
        );
        assert_eq!(
            Lost::NotRenewed {
                deadline: secs(10),
                last_error: Some("connection refused".into())
            }
            .to_string(),
            "the lease could not be renewed within 10s (last error: connection refused)"
        );
    }

    #[test]
    fn jitter_stretches_by_at_most_a_fifth() {
        for _ in 0..100 {
            let j = jittered(secs(2));
            assert!(j >= secs(2) && j < Duration::from_millis(2400), "{j:?}");
        }
    }
}
