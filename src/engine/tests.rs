//! Engine tests with fake steps: ordering, concurrency, blocking, progress, deletion.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use super::conditions::{self, FALSE, READY, SYNCED, State, TRUE, UNKNOWN};
use super::*;

const A: Key = Key::new("A");
const B: Key = Key::new("B");
const C: Key = Key::new("C");
const SEED: Key = Key::new("Seed");

#[derive(Clone)]
enum Behaviour {
    Ok,
    Fail(Failure),
    Progressing,
}

/// A step that records when it starts and ends in a shared journal.
struct Fake {
    name: &'static str,
    condition: &'static str,
    needs: Vec<Key>,
    provides: Vec<Key>,
    wanted: bool,
    behaviour: Behaviour,
    delete_result: Result<Removal, Failure>,
    delay: Duration,
    /// What an observe-only run finds (the fake's resources exist unless it is `missing`).
    drift: Vec<Drift>,
    journal: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(
        name: &'static str,
        needs: &[Key],
        provides: &[Key],
        j: &Arc<Mutex<Vec<String>>>,
    ) -> Self {
        Self {
            name,
            condition: name,
            needs: needs.to_vec(),
            provides: provides.to_vec(),
            wanted: true,
            behaviour: Behaviour::Ok,
            delete_result: Ok(Removal::Gone),
            delay: Duration::from_millis(20),
            drift: Vec::new(),
            journal: j.clone(),
        }
    }

    /// What the fake gives its dependents: one value per key it provides.
    fn applied(&self, action: Action, drift: Vec<Drift>) -> Applied {
        Applied {
            action,
            values: self
                .provides
                .iter()
                .map(|k| (*k, format!("{}-value", self.name)))
                .collect(),
            owned: Vec::new(),
            progress: None,
            note: None,
            drift,
        }
    }

    fn log(&self, what: &str) {
        if let Ok(mut j) = self.journal.lock() {
            j.push(format!("{what} {}", self.name));
        }
    }
}

impl Step for Fake {
    fn condition(&self) -> &str {
        self.condition
    }
    fn kind(&self) -> &str {
        self.name
    }
    fn needs(&self) -> Vec<Key> {
        self.needs.clone()
    }
    fn provides(&self) -> Vec<Key> {
        self.provides.clone()
    }
    fn wanted(&self) -> bool {
        self.wanted
    }
    fn apply<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>> {
        Box::pin(async move {
            for k in &self.needs {
                assert!(inputs.contains_key(k), "{} ran without {k}", self.name);
            }
            self.log("start");
            tokio::time::sleep(self.delay).await;
            self.log("end");
            let applied = self.applied(Action::Created, Vec::new());
            match &self.behaviour {
                Behaviour::Ok => Ok(applied),
                Behaviour::Fail(f) => Err(f.clone()),
                Behaviour::Progressing => Ok(Applied {
                    progress: Some(Progress {
                        reason: "Progressing".into(),
                        message: "rolling out".into(),
                        after: Duration::from_secs(15),
                    }),
                    ..applied
                }),
            }
        })
    }
    fn delete(&self) -> BoxFuture<'_, Result<Removal, Failure>> {
        Box::pin(async move {
            self.log("delete");
            tokio::time::sleep(self.delay).await;
            self.delete_result.clone()
        })
    }
    fn preview<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>> {
        Box::pin(async move {
            for k in &self.needs {
                assert!(inputs.contains_key(k), "{} observed without {k}", self.name);
            }
            self.log("observe");
            match &self.behaviour {
                Behaviour::Fail(f) => Err(f.clone()),
                _ => Ok(self.applied(Action::Unchanged, self.drift.clone())),
            }
        })
    }
    fn preview_removal(&self) -> BoxFuture<'_, Result<Vec<Drift>, Failure>> {
        Box::pin(async move {
            self.log("observe-removal");
            Ok(self.drift.clone())
        })
    }
}

fn outcome_of(report: &Report, condition: &str) -> Option<Outcome> {
    report
        .steps
        .iter()
        .find(|s| s.condition == condition)
        .map(|s| s.outcome.clone())
}

fn journal() -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(j: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    j.lock().map(|j| j.clone()).unwrap_or_default()
}

fn position(j: &[String], entry: &str) -> usize {
    j.iter()
        .position(|e| e == entry)
        .unwrap_or_else(|| panic!("{entry} missing from {j:?}"))
}

fn seed() -> Values {
    Values::from([(SEED, "s".to_string())])
}

fn boxed(steps: Vec<Fake>) -> Vec<Box<dyn Step>> {
    steps
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn Step>)
        .collect()
}

fn state<'a>(states: &'a [conditions::State], type_: &str) -> &'a conditions::State {
    states
        .iter()
        .find(|s| s.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {states:?}"))
}

#[tokio::test]
async fn order_follows_declared_needs_regardless_of_list_order() {
    let j = journal();
    // Listed backwards on purpose.
    let steps = boxed(vec![
        Fake::new("c", &[B], &[C], &j),
        Fake::new("b", &[A], &[B], &j),
        Fake::new("a", &[SEED], &[A], &j),
    ]);
    let report = apply(&steps, seed()).await.expect("graph");
    let log = entries(&j);
    assert!(
        position(&log, "end a") < position(&log, "start b"),
        "{log:?}"
    );
    assert!(
        position(&log, "end b") < position(&log, "start c"),
        "{log:?}"
    );
    assert_eq!(report.values.get(&C).map(String::as_str), Some("c-value"));
    assert!(
        report
            .steps
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Applied(_)))
    );
}

#[tokio::test]
async fn independent_branches_run_concurrently() {
    let j = journal();
    let steps = boxed(vec![
        Fake::new("a", &[], &[A], &j),
        Fake::new("b", &[A], &[B], &j),
        Fake::new("c", &[A], &[C], &j),
    ]);
    apply(&steps, seed()).await.expect("graph");
    let log = entries(&j);
    // Both dependents start before either ends.
    let first_end = position(&log, "end b").min(position(&log, "end c"));
    assert!(position(&log, "start b") < first_end, "{log:?}");
    assert!(position(&log, "start c") < first_end, "{log:?}");
}

#[tokio::test]
async fn a_failure_blocks_only_its_dependents() {
    let j = journal();
    let mut a = Fake::new("a", &[], &[A], &j);
    a.behaviour = Behaviour::Fail(Failure::terminal("AccessDenied", "denied"));
    let steps = boxed(vec![
        a,
        Fake::new("b", &[A], &[B], &j),
        Fake::new("c", &[B], &[], &j),
        Fake::new("independent", &[SEED], &[C], &j),
    ]);
    let report = apply(&steps, seed()).await.expect("graph");
    let outcome = |name: &str| outcome_of(&report, name);
    assert!(matches!(outcome("a"), Some(Outcome::Failed(_))));
    assert_eq!(
        outcome("b"),
        Some(Outcome::Blocked {
            waiting_for: vec!["a".into()]
        })
    );
    assert_eq!(
        outcome("c"),
        Some(Outcome::Blocked {
            waiting_for: vec!["b".into()]
        })
    );
    assert!(matches!(outcome("independent"), Some(Outcome::Applied(_))));
    let (states, _) = conditions::from_apply(&report);
    assert_eq!(state(&states, "independent").status, TRUE);
    assert_eq!(state(&states, "b").status, UNKNOWN);
    assert_eq!(state(&states, "b").message, "waiting for a");
    assert_eq!(state(&states, SYNCED).status, FALSE);
    assert_eq!(state(&states, READY).status, FALSE);
}

#[tokio::test]
async fn a_transient_error_keeps_what_was_true_and_a_terminal_one_does_not() {
    let j = journal();
    let mut throttled = Fake::new("throttled", &[], &[A], &j);
    throttled.behaviour = Behaviour::Fail(Failure::retryable("Throttled", "slow down"));
    let mut denied = Fake::new("denied", &[], &[C], &j);
    denied.behaviour = Behaviour::Fail(Failure::terminal("AccessDenied", "denied"));
    let steps = boxed(vec![
        throttled,
        Fake::new("blocked", &[A], &[B], &j),
        denied,
    ]);
    let report = apply(&steps, seed()).await.expect("graph");
    let before = |type_: &str| Some(State::new(type_, TRUE, "InSync", ""));
    let (states, _) = conditions::from_apply_keeping(&report, before);
    assert_eq!(
        state(&states, "throttled").status,
        TRUE,
        "not seen this time"
    );
    assert_eq!(
        state(&states, "blocked").status,
        TRUE,
        "blocked by a transient error"
    );
    assert_eq!(
        state(&states, "denied").status,
        FALSE,
        "a terminal error is news"
    );
    assert_eq!(state(&states, READY).status, FALSE);
    assert_eq!(state(&states, SYNCED).status, FALSE);

    // Without the terminal error: Ready stays True while Synced says what failed.
    let j = journal();
    let mut throttled = Fake::new("throttled", &[], &[A], &j);
    throttled.behaviour = Behaviour::Fail(Failure::retryable("Throttled", "slow down"));
    let steps = boxed(vec![throttled, Fake::new("blocked", &[A], &[B], &j)]);
    let report = apply(&steps, seed()).await.expect("graph");
    let (states, _) = conditions::from_apply_keeping(&report, before);
    assert_eq!(state(&states, READY).status, TRUE);
    assert_eq!(state(&states, SYNCED).reason, "Throttled");
    // Never True before: the error shows.
    let (states, _) = conditions::from_apply_keeping(&report, |_| None);
    assert_eq!(state(&states, "throttled").status, FALSE);
    assert_eq!(state(&states, READY).status, FALSE);
}

#[tokio::test]
async fn in_progress_is_not_a_failure_and_dependents_proceed() {
    let j = journal();
    let mut a = Fake::new("a", &[], &[A], &j);
    a.behaviour = Behaviour::Progressing;
    let mut waiting = Fake::new("waiting", &[], &[C], &j);
    waiting.behaviour = Behaviour::Fail(Failure::in_progress(
        "RoleNotVisible",
        "not yet",
        Duration::from_secs(7),
    ));
    let steps = boxed(vec![a, Fake::new("b", &[A], &[B], &j), waiting]);
    let report = apply(&steps, seed()).await.expect("graph");
    assert!(report.errors().next().is_none());
    let (states, _) = conditions::from_apply(&report);
    assert_eq!(state(&states, "a").status, FALSE);
    assert_eq!(state(&states, "a").reason, "Progressing");
    assert_eq!(state(&states, "b").status, TRUE, "a exists, so b proceeds");
    assert_eq!(state(&states, "waiting").reason, "RoleNotVisible");
    assert_eq!(state(&states, SYNCED).status, TRUE);
    assert_eq!(state(&states, READY).status, FALSE);
    assert_eq!(
        conditions::soonest_progress(&report),
        Some(Duration::from_secs(7))
    );
}

#[tokio::test]
async fn deletion_runs_dependents_first_and_waits_for_them() {
    let j = journal();
    let mut b = Fake::new("b", &[A], &[B], &j);
    b.delete_result = Ok(Removal::Pending("draining".into()));
    let steps = boxed(vec![
        Fake::new("a", &[], &[A], &j),
        b,
        Fake::new("c", &[B], &[], &j),
        Fake::new("other", &[], &[], &j),
    ]);
    let report = delete(&steps).await.expect("graph");
    let log = entries(&j);
    assert!(
        position(&log, "delete c") < position(&log, "delete b"),
        "{log:?}"
    );
    assert!(
        !log.contains(&"delete a".to_string()),
        "a deleted before b was gone: {log:?}"
    );
    assert!(!report.all_gone());
    let outcome = |name: &str| outcome_of(&report, name);
    assert_eq!(
        outcome("a"),
        Some(Outcome::Blocked {
            waiting_for: vec!["b".into()]
        })
    );
    assert_eq!(outcome("other"), Some(Outcome::Removed(Removal::Gone)));
}

#[tokio::test]
async fn deletion_needs_no_upstream_outputs() {
    // The provider of A failed to ever create anything; deletion does not wait on its output.
    let j = journal();
    let steps = boxed(vec![
        Fake::new("a", &[SEED], &[A], &j),
        Fake::new("b", &[A], &[], &j),
    ]);
    let report = delete(&steps).await.expect("graph");
    assert!(report.all_gone(), "{report:?}");
}

#[tokio::test]
async fn unwanted_steps_are_deleted_during_apply_and_leave_status() {
    let j = journal();
    let mut gone = Fake::new("alarm", &[A], &[], &j);
    gone.wanted = false;
    let steps = boxed(vec![Fake::new("a", &[], &[A], &j), gone]);
    let report = apply(&steps, seed()).await.expect("graph");
    assert!(entries(&j).contains(&"delete alarm".to_string()));
    assert!(!entries(&j).contains(&"start alarm".to_string()));
    let (states, dropped) = conditions::from_apply(&report);
    assert_eq!(dropped, vec!["alarm".to_string()]);
    assert!(states.iter().all(|s| s.type_ != "alarm"));
    assert_eq!(state(&states, READY).status, TRUE);
}

#[tokio::test]
async fn a_shared_condition_takes_the_worst_state() {
    let j = journal();
    let mut failing = Fake::new("staging", &[], &[], &j);
    failing.condition = "ServiceReady";
    failing.behaviour = Behaviour::Fail(Failure::terminal("AccessDenied", "denied"));
    let mut fine = Fake::new("production", &[], &[], &j);
    fine.condition = "ServiceReady";
    // The True one comes last, so last-wins would hide the failure.
    let steps = boxed(vec![failing, fine]);
    let report = apply(&steps, seed()).await.expect("graph");
    let (states, _) = conditions::from_apply(&report);
    let service: Vec<_> = states
        .iter()
        .filter(|s| s.type_ == "ServiceReady")
        .collect();
    assert_eq!(service.len(), 1);
    assert_eq!(service[0].status, FALSE);
    assert_eq!(service[0].reason, "AccessDenied");
}

#[test]
fn a_cycle_is_rejected() {
    let j = journal();
    let steps = boxed(vec![
        Fake::new("a", &[B], &[A], &j),
        Fake::new("b", &[A], &[B], &j),
    ]);
    let err = Graph::build(&steps, &BTreeSet::new()).err();
    assert!(
        matches!(err, Some(GraphError::Cycle(ref s)) if s.contains('a') && s.contains('b')),
        "{err:?}"
    );
}

#[test]
fn a_missing_or_duplicate_provider_is_rejected() {
    let j = journal();
    let steps = boxed(vec![Fake::new("a", &[C], &[A], &j)]);
    assert!(matches!(
        Graph::build(&steps, &BTreeSet::new()),
        Err(GraphError::MissingProvider { .. })
    ));
    let steps = boxed(vec![
        Fake::new("a", &[], &[A], &j),
        Fake::new("b", &[], &[A], &j),
    ]);
    assert!(matches!(
        Graph::build(&steps, &BTreeSet::new()),
        Err(GraphError::DuplicateProvider { .. })
    ));
}

#[tokio::test]
async fn observing_changes_nothing_and_reports_each_difference() {
    let j = journal();
    let mut key = Fake::new("key", &[SEED], &[A], &j);
    key.drift = vec![Drift::value(
        "KMS key k",
        "rotation",
        "off",
        "every 365 days",
    )];
    let bucket = Fake::new("bucket", &[A], &[B], &j);
    let mut old = Fake::new("old", &[], &[], &j);
    old.wanted = false;
    old.drift = vec![Drift::delete("log group /old")];
    let mut gone = Fake::new("gone", &[], &[], &j);
    gone.wanted = false;
    let steps = boxed(vec![key, bucket, old, gone]);
    let report = preview(&steps, seed()).await.expect("graph");

    let calls = entries(&j);
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("observe ") || c.starts_with("observe-removal ")),
        "an observe-only run only reads: {calls:?}"
    );
    assert_eq!(calls.len(), 4, "{calls:?}");
    let drift: Vec<String> = report.drift().map(|(_, d)| d.to_string()).collect();
    assert_eq!(
        drift,
        vec![
            "update KMS key k: rotation from off to every 365 days".to_string(),
            "delete log group /old".to_string(),
        ]
    );
    assert!(matches!(outcome_of(&report, "old"), Some(Outcome::Kept(_))));
    assert_eq!(
        outcome_of(&report, "gone"),
        Some(Outcome::Removed(Removal::Gone))
    );

    let (states, dropped) = conditions::from_preview(&report);
    assert_eq!(dropped, vec!["gone".to_string()]);
    let key = state(&states, "key");
    assert_eq!((key.status, key.reason.as_str()), (FALSE, "Drifted"));
    assert!(
        key.message.contains("rotation from off to every 365 days"),
        "{}",
        key.message
    );
    assert_eq!(state(&states, "bucket").status, TRUE);
    assert_eq!(state(&states, "old").reason, "Drifted");
    assert_eq!(state(&states, READY).status, FALSE);
    let synced = state(&states, SYNCED);
    assert_eq!(
        (synced.status, synced.reason.as_str()),
        (TRUE, "ObserveOnly")
    );
    assert!(
        synced.message.contains("2 difference(s)"),
        "{}",
        synced.message
    );
}

#[test]
fn a_drift_reads_as_what_would_be_done() {
    assert_eq!(
        Drift::create("S3 bucket b").to_string(),
        "create S3 bucket b"
    );
    assert_eq!(Drift::delete("IAM role r").to_string(), "delete IAM role r");
    assert_eq!(
        Drift::field("SNS topic t", "topic policy").to_string(),
        "update SNS topic t: topic policy"
    );
    let long = "x".repeat(500);
    let shown = Drift::value("r", "f", &long, "y")
        .observed
        .unwrap_or_default();
    assert_eq!(shown.chars().count(), 120, "long values are cut");
    assert!(shown.ends_with('…'));
}
