//! Turning engine reports into status conditions. Pure: unit-tested without AWS or Kubernetes.

use crate::api::{Condition, READY, SYNCED};

use super::{ApplyReport, StepError, StepOutcome};

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// A condition's content, before times and generations are attached.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub type_: String,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl State {
    pub fn new(
        type_: &str,
        status: &'static str,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// States of the subresource conditions, `Ready` and `Synced` after an apply.
pub fn from_apply(report: &ApplyReport) -> Vec<State> {
    let mut states: Vec<State> = report
        .steps
        .iter()
        .map(|step| match &step.outcome {
            StepOutcome::Done(_) => State::new(step.condition, TRUE, "InSync", ""),
            StepOutcome::Failed(StepError::Spec(e)) => {
                State::new(step.condition, FALSE, &e.reason, &e.message)
            }
            StepOutcome::Failed(StepError::Aws(e)) => State::new(
                step.condition,
                FALSE,
                e.reason(),
                format!("{}: {}", step.kind, e.message()),
            ),
            StepOutcome::Blocked { waiting_for } => State::new(
                step.condition,
                UNKNOWN,
                "DependencyNotReady",
                format!("waiting for {}", waiting_for.join(", ")),
            ),
        })
        .collect();
    states.push(ready(&states));
    let first_error = report.errors().next();
    states.push(match first_error {
        None => State::new(SYNCED, TRUE, "ReconcileSucceeded", ""),
        Some(e) => State::new(SYNCED, FALSE, e.reason(), e.message()),
    });
    states
}

/// `Ready` is True only when every other condition is.
pub fn ready(subresources: &[State]) -> State {
    let not_ready: Vec<String> = subresources
        .iter()
        .filter(|s| s.status != TRUE)
        .map(|s| format!("{} ({})", s.type_, s.reason))
        .collect();
    if not_ready.is_empty() {
        State::new(READY, TRUE, "AllResourcesReady", "")
    } else {
        State::new(
            READY,
            FALSE,
            "ResourcesNotReady",
            format!("not ready: {}", not_ready.join(", ")),
        )
    }
}

/// Merges new states into existing conditions: `lastTransitionTime` changes only when
/// `status` does; conditions not mentioned are kept.
pub fn merge(
    existing: &[Condition],
    states: &[State],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for state in states {
        let next = |last_transition_time: String| Condition {
            type_: state.type_.clone(),
            status: state.status.into(),
            reason: state.reason.clone(),
            message: state.message.clone(),
            last_transition_time,
            observed_generation: generation,
        };
        match out.iter_mut().find(|c| c.type_ == state.type_) {
            Some(c) if c.status == state.status => *c = next(c.last_transition_time.clone()),
            Some(c) => *c = next(now.to_string()),
            None => out.push(next(now.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;
    use crate::engine::{Action, StepReport};

    fn report(outcomes: Vec<(&'static str, StepOutcome)>) -> ApplyReport {
        ApplyReport {
            steps: outcomes
                .into_iter()
                .map(|(c, outcome)| StepReport {
                    condition: c,
                    kind: "thing",
                    outcome,
                })
                .collect(),
            produced: Default::default(),
        }
    }

    #[test]
    fn all_done_is_ready_and_synced() {
        let states = from_apply(&report(vec![
            ("AReady", StepOutcome::Done(Action::Created)),
            ("BReady", StepOutcome::Done(Action::Unchanged)),
        ]));
        let ready = states.iter().find(|s| s.type_ == READY).cloned();
        assert_eq!(
            ready,
            Some(State::new(READY, TRUE, "AllResourcesReady", ""))
        );
        assert!(states.iter().all(|s| s.status == TRUE));
    }

    #[test]
    fn a_failed_child_makes_ready_false_and_blocks_dependents() {
        let err = AwsError::terminal("AccessDenied", "AWS denied kms:CreateKey");
        let states = from_apply(&report(vec![
            ("AReady", StepOutcome::Failed(StepError::Aws(err))),
            (
                "BReady",
                StepOutcome::Blocked {
                    waiting_for: vec!["AReady"],
                },
            ),
        ]));
        let get = |t: &str| {
            states
                .iter()
                .find(|s| s.type_ == t)
                .cloned()
                .unwrap_or_else(|| State::new(t, UNKNOWN, "missing", ""))
        };
        assert_eq!(get("AReady").status, FALSE);
        assert_eq!(get("AReady").reason, "AccessDenied");
        assert_eq!(get("BReady").status, UNKNOWN);
        assert_eq!(get(READY).status, FALSE);
        assert_eq!(
            get(READY).message,
            "not ready: AReady (AccessDenied), BReady (DependencyNotReady)"
        );
        assert_eq!(get(SYNCED).reason, "AccessDenied");
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let first = merge(
            &[],
            &[State::new("AReady", TRUE, "InSync", "")],
            Some(1),
            "t1",
        );
        let same = merge(
            &first,
            &[State::new("AReady", TRUE, "InSync", "")],
            Some(2),
            "t2",
        );
        assert_eq!(same[0].last_transition_time, "t1");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            &[State::new("AReady", FALSE, "AccessDenied", "x")],
            Some(2),
            "t3",
        );
        assert_eq!(flipped[0].last_transition_time, "t3");
    }
}
