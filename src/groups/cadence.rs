//! Groups checked less often than every resync. A group that can say what it produces without
//! reading AWS ([`Group::unobserved`]) is checked whole at most every `interval` while its
//! desired state stays the same; the resyncs in between trust that check. IAM is such a group:
//! global, throttled account-wide, and four reads a role (30 of a whole pipeline's resync).
//!
//! A check is due again when the interval is up, when the group's desired state changes (a new
//! KMS key ARN, a spec change), when the pipeline's spec or annotations change or a policy
//! reaches it (the controller calls [`Cadence::forget`]), and after a restart (the record is in
//! memory). Observe-only runs and `diff` always read.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// When each (pipeline, group instance) was last checked whole, against which desired state.
#[derive(Clone)]
pub struct Cadence {
    interval: Duration,
    checked: Arc<Mutex<HashMap<String, Vec<Checked>>>>,
}

#[derive(Clone, Copy)]
struct Checked {
    /// The instance's condition, hashed (`StagingRolesReady`).
    instance: u64,
    /// The desired state it was checked against, hashed.
    desired: u64,
    at: Instant,
}

impl Cadence {
    /// `interval` zero: every resync checks every group.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            checked: Arc::default(),
        }
    }

    /// The record of one pipeline (`key`: namespace/name), for its steps.
    pub fn of(&self, pipeline: &str) -> PipelineCadence {
        PipelineCadence {
            cadence: self.clone(),
            pipeline: pipeline.to_string(),
        }
    }

    /// The pipeline's next reconcile checks every group (its spec, annotations or policies
    /// changed, or it is gone).
    pub fn forget(&self, pipeline: &str) {
        if let Ok(mut checked) = self.checked.lock() {
            checked.remove(pipeline);
        }
    }

    /// Pipelines with a record (one entry per pipeline).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.checked.lock().map_or(0, |c| c.len())
    }
}

/// One pipeline's record, handed to its group instances.
#[derive(Clone)]
pub struct PipelineCadence {
    cadence: Cadence,
    pipeline: String,
}

impl PipelineCadence {
    /// Whether `instance` was checked whole against `desired` less than the interval ago.
    pub fn fresh<D: Serialize>(&self, instance: &str, desired: &D) -> bool {
        self.fresh_at(instance, desired, Instant::now())
    }

    fn fresh_at<D: Serialize>(&self, instance: &str, desired: &D, now: Instant) -> bool {
        let (instance, Some(desired)) = (digest(&instance), digest_of(desired)) else {
            return false;
        };
        let Ok(checked) = self.cadence.checked.lock() else {
            return false;
        };
        checked
            .get(&self.pipeline)
            .and_then(|all| all.iter().find(|c| c.instance == instance))
            .is_some_and(|c| {
                c.desired == desired && now.saturating_duration_since(c.at) < self.cadence.interval
            })
    }

    /// `instance` was just checked whole (read, and corrected where it differed) against
    /// `desired`.
    pub fn checked<D: Serialize>(&self, instance: &str, desired: &D) {
        self.checked_at(instance, desired, Instant::now());
    }

    fn checked_at<D: Serialize>(&self, instance: &str, desired: &D, at: Instant) {
        let (instance, Some(desired)) = (digest(&instance), digest_of(desired)) else {
            return;
        };
        if self.cadence.interval.is_zero() {
            return;
        }
        let Ok(mut checked) = self.cadence.checked.lock() else {
            return;
        };
        let all = checked.entry(self.pipeline.clone()).or_default();
        all.retain(|c| c.instance != instance);
        all.push(Checked {
            instance,
            desired,
            at,
        });
    }
}

fn digest(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// None when the desired state cannot be rendered: it is then never trusted.
fn digest_of<D: Serialize>(desired: &D) -> Option<u64> {
    serde_json::to_vec(desired).ok().map(|bytes| digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_check_is_trusted_for_the_interval_and_the_same_desired_state_only() {
        let cadence = Cadence::new(HOUR);
        let p = cadence.of("team-a/web");
        let start = Instant::now();
        assert!(!p.fresh_at("RolesReady", &"v1", start), "never checked");
        p.checked_at("RolesReady", &"v1", start);
        assert!(p.fresh_at("RolesReady", &"v1", start + HOUR / 2));
        assert!(
            !p.fresh_at("RolesReady", &"v1", start + HOUR),
            "interval up"
        );
        assert!(
            !p.fresh_at("RolesReady", &"v2", start),
            "desired state changed"
        );
        assert!(
            !p.fresh_at("StagingRolesReady", &"v1", start),
            "another instance"
        );
        assert!(
            !cadence
                .of("team-a/api")
                .fresh_at("RolesReady", &"v1", start),
            "another pipeline"
        );
    }

    #[test]
    fn forgetting_a_pipeline_makes_its_next_check_whole() {
        let cadence = Cadence::new(HOUR);
        let p = cadence.of("team-a/web");
        p.checked("RolesReady", &"v1");
        p.checked("StagingRolesReady", &"v1");
        assert!(p.fresh("RolesReady", &"v1"));
        assert_eq!(cadence.len(), 1, "one entry per pipeline");
        cadence.forget("team-a/web");
        assert!(!p.fresh("RolesReady", &"v1"));
        assert!(!p.fresh("StagingRolesReady", &"v1"));
        assert_eq!(cadence.len(), 0);
    }

    #[test]
    fn a_zero_interval_trusts_nothing() {
        let p = Cadence::new(Duration::ZERO).of("team-a/web");
        p.checked("RolesReady", &"v1");
        assert!(!p.fresh("RolesReady", &"v1"));
    }

    #[test]
    fn a_newer_check_replaces_the_older() {
        let cadence = Cadence::new(HOUR);
        let p = cadence.of("team-a/web");
        let start = Instant::now();
        p.checked_at("RolesReady", &"v1", start);
        p.checked_at("RolesReady", &"v2", start + HOUR / 2);
        assert!(!p.fresh_at("RolesReady", &"v1", start + HOUR / 2));
        assert!(p.fresh_at("RolesReady", &"v2", start + HOUR));
    }
}
