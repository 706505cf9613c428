//! Turning a run report into status conditions. Pure: unit-tested without AWS or Kubernetes.

use std::collections::BTreeMap;

use super::failure::Class;
use super::run::{Outcome, Report, StepReport};
use super::step::Removal;

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
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

/// How bad a state is, for merging steps that share a condition (worst wins).
fn severity(step: &StepReport) -> u8 {
    match &step.outcome {
        Outcome::Applied(a) if a.progress.is_none() && a.drift.is_empty() => 0,
        Outcome::Removed(Removal::Gone) => 0,
        Outcome::Applied(_) | Outcome::Removed(Removal::Pending(_)) | Outcome::Kept(_) => 1,
        Outcome::Failed(f) if !f.is_error() => 1,
        Outcome::Blocked { .. } => 2,
        Outcome::Failed(_) => 3,
    }
}

/// The state of one step's condition. During an apply run (`deleting` false) an unwanted step
/// that is gone has none: its condition leaves the status.
fn state_of(step: &StepReport, deleting: bool) -> Option<State> {
    let c = step.condition.as_str();
    Some(match &step.outcome {
        Outcome::Applied(a) if !a.drift.is_empty() => drifted(step, &a.drift),
        Outcome::Kept(drift) => drifted(step, drift),
        Outcome::Applied(a) => match &a.progress {
            None => match &a.note {
                None => State::new(c, TRUE, "InSync", ""),
                Some(n) => State::new(c, TRUE, &n.reason, format!("{}: {}", step.kind, n.message)),
            },
            Some(p) => State::new(c, FALSE, &p.reason, format!("{}: {}", step.kind, p.message)),
        },
        Outcome::Failed(f) => {
            State::new(c, FALSE, &f.reason, format!("{}: {}", step.kind, f.message))
        }
        Outcome::Blocked { waiting_for } if waiting_for.is_empty() => {
            State::new(c, UNKNOWN, "DependencyNotReady", "not attempted")
        }
        Outcome::Blocked { waiting_for } => State::new(
            c,
            UNKNOWN,
            "DependencyNotReady",
            format!("waiting for {}", waiting_for.join(", ")),
        ),
        Outcome::Removed(Removal::Gone) if !deleting && !step.wanted => return None,
        Outcome::Removed(Removal::Gone) => {
            State::new(c, FALSE, "Deleted", format!("{} deleted", step.kind))
        }
        Outcome::Removed(Removal::Pending(what)) => {
            State::new(c, FALSE, "Deleting", format!("{}: {what}", step.kind))
        }
    })
}

/// Observe-only: the condition names every difference (also listed in `status.drift`).
fn drifted(step: &StepReport, drift: &[super::step::Drift]) -> State {
    let what: Vec<String> = drift.iter().map(ToString::to_string).collect();
    State::new(
        &step.condition,
        FALSE,
        "Drifted",
        format!(
            "{} (observe-only, not corrected): {}",
            step.kind,
            what.join("; ")
        ),
    )
}

/// One state per condition type, worst step wins; and the condition types that leave.
fn per_condition(report: &Report) -> (Vec<State>, Vec<String>) {
    let mut worst: BTreeMap<&str, (u8, Option<State>)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for step in &report.steps {
        let sev = severity(step);
        let state = state_of(step, false);
        match worst.get(step.condition.as_str()) {
            None => {
                order.push(&step.condition);
                worst.insert(&step.condition, (sev, state));
            }
            // A dropped (gone, unwanted) state never hides a live one of the same type.
            Some((old, old_state)) if sev > *old || (old_state.is_none() && state.is_some()) => {
                worst.insert(&step.condition, (sev, state));
            }
            Some(_) => {}
        }
    }
    let mut states = Vec::new();
    let mut dropped = Vec::new();
    for c in order {
        match worst.remove(c) {
            Some((_, Some(s))) => states.push(s),
            _ => dropped.push(c.to_string()),
        }
    }
    (states, dropped)
}

/// States of the step conditions, `Ready` and `Synced` after an apply run, plus the condition
/// types to remove (groups the spec no longer wants, now gone).
pub fn from_apply(report: &Report) -> (Vec<State>, Vec<String>) {
    from_apply_keeping(report, |_| None)
}

/// As [`from_apply`], where a group that was True at this generation (`was_true` gives its
/// state then) stays True when this run could not look at it: a transient AWS error
/// (throttling, 5xx, a dropped connection) or a dependency blocked by one. `Ready` reports the
/// last known state of the resources and `Synced` the error, as Crossplane's Ready and Synced
/// do; otherwise one throttled read among a resync's hundred flips a running pipeline to not
/// Ready, and under sustained faults it would never show Ready at all.
pub fn from_apply_keeping(
    report: &Report,
    was_true: impl Fn(&str) -> Option<State>,
) -> (Vec<State>, Vec<String>) {
    let (mut states, dropped) = per_condition(report);
    for state in states.iter_mut().filter(|s| s.status != TRUE) {
        let unseen = report
            .steps
            .iter()
            .filter(|s| s.condition == state.type_)
            .all(|s| match &s.outcome {
                Outcome::Failed(f) => f.class == Class::Retryable,
                Outcome::Blocked { .. } => true,
                Outcome::Applied(a) => a.progress.is_none() && a.drift.is_empty(),
                _ => false,
            });
        if let Some(previous) = was_true(&state.type_).filter(|_| unseen) {
            *state = previous;
        }
    }
    let ready = ready(&states);
    states.push(ready);
    states.push(match report.errors().next() {
        None => State::new(SYNCED, TRUE, "ReconcileSucceeded", ""),
        Some(e) => State::new(SYNCED, FALSE, &e.reason, &e.message),
    });
    (states, dropped)
}

/// States after an observe-only run: as after an apply, with `Synced` saying nothing was
/// written and how much differs.
pub fn from_preview(report: &Report) -> (Vec<State>, Vec<String>) {
    let (mut states, dropped) = from_apply(report);
    let differences = report.drift().count();
    if let Some(synced) = states
        .iter_mut()
        .find(|s| s.type_ == SYNCED && s.status == TRUE)
    {
        *synced = State::new(
            SYNCED,
            TRUE,
            "ObserveOnly",
            match differences {
                0 => "managementPolicy is ObserveOnly: AWS matches the spec; nothing was written"
                    .to_string(),
                n => format!(
                    "managementPolicy is ObserveOnly: {n} difference(s) in status.drift, not corrected"
                ),
            },
        );
    }
    (states, dropped)
}

/// States after a delete run.
pub fn from_delete(report: &Report) -> Vec<State> {
    let mut states: Vec<State> = report
        .steps
        .iter()
        .filter_map(|s| state_of(s, true))
        .collect();
    states.push(State::new(
        READY,
        FALSE,
        "Deleting",
        "the pipeline is being deleted",
    ));
    states.push(match report.errors().next() {
        Some(e) => State::new(SYNCED, FALSE, &e.reason, &e.message),
        None => State::new(SYNCED, UNKNOWN, "Deleting", "deleting AWS resources"),
    });
    states
}

/// `Ready` is True only when every other condition is.
pub fn ready(conditions: &[State]) -> State {
    let not_ready: Vec<String> = conditions
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

/// When to look again: the soonest in-progress step, if any.
pub fn soonest_progress(report: &Report) -> Option<std::time::Duration> {
    report
        .steps
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Applied(a) => a.progress.as_ref().map(|p| p.after),
            Outcome::Failed(f) => match f.class {
                Class::InProgress(after) => Some(after),
                _ => None,
            },
            Outcome::Removed(Removal::Pending(_)) => Some(std::time::Duration::from_secs(10)),
            _ => None,
        })
        .min()
}
