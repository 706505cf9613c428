//! Status, computed purely from the run report and the stored status, and written only when it
//! differs.

use std::collections::BTreeSet;

use chrono::{SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{
    Condition, DeliveryPipeline, DeliveryPipelineStatus, DriftItem, InventoryItem, Outputs, READY,
    SYNCED,
};
use crate::desired::Env;
use crate::engine::conditions::{self, FALSE, State, UNKNOWN};
use crate::engine::{Failure, Key, Outcome, Report, Values};
use crate::groups::keys;

/// The condition that says whether the administrators' policies admit the pipeline.
pub const POLICY_COMPLIANT: &str = "PolicyCompliant";
/// Its reason, and the failure's, when they do not.
pub const POLICY_VIOLATION: &str = "PolicyViolation";

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn current(dp: &DeliveryPipeline) -> DeliveryPipelineStatus {
    dp.status.clone().unwrap_or_default()
}

/// Merges states into existing conditions: `lastTransitionTime` changes only when `status`
/// does; conditions not mentioned are kept unless listed in `drop`.
pub fn merge(
    existing: &[Condition],
    states: &[State],
    drop: &[String],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !drop.contains(&c.type_))
        .cloned()
        .collect();
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

/// Outputs from this run's values; where a step did not complete, what was recorded before.
/// Which value is which field is `keys::OUTPUTS` (and `ENVIRONMENT_OUTPUTS`).
fn outputs(values: &Values, previous: &Outputs) -> Outputs {
    use serde_json::{Map, Value};
    let fill = |fields: &mut Map<String, Value>, table: &[(&str, Key)], scope: Option<Env>| {
        for (field, key) in table {
            let key = scope.map_or(*key, |env| key.scoped(env.name()));
            if let Some(value) = values.get(&key) {
                fields.insert((*field).to_string(), Value::String(value.clone()));
            }
        }
    };
    let as_map = |value: Value| match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut fields = as_map(serde_json::to_value(previous).unwrap_or(Value::Null));
    fill(&mut fields, keys::OUTPUTS, None);
    for env in Env::ALL {
        let mut scoped = as_map(fields.remove(env.name()).unwrap_or(Value::Null));
        fill(&mut scoped, keys::ENVIRONMENT_OUTPUTS, Some(env));
        if !scoped.is_empty() {
            fields.insert(env.name().to_string(), Value::Object(scoped));
        }
    }
    serde_json::from_value(Value::Object(fields)).unwrap_or_else(|_| previous.clone())
}

/// What the pipeline owns: what completed steps report now, plus what earlier reconciles
/// recorded for steps that did not complete (so nothing is forgotten while it may exist).
fn inventory(report: &Report, previous: &[InventoryItem]) -> Vec<InventoryItem> {
    let incomplete: BTreeSet<&str> = report
        .steps
        .iter()
        .filter(|s| !s.completed())
        .map(|s| s.condition.as_str())
        .collect();
    let mut items: Vec<InventoryItem> = report
        .steps
        .iter()
        .flat_map(|s| {
            s.owned().iter().map(|o| InventoryItem {
                kind: o.kind.clone(),
                id: o.id.clone(),
                account: o.account.clone(),
                region: o.region.clone(),
                group: Some(s.condition.clone()),
            })
        })
        .collect();
    for old in previous {
        let keep = match &old.group {
            Some(g) => incomplete.contains(g.as_str()),
            // Recorded before items named their group: kept until a fully clean pass.
            None => !incomplete.is_empty(),
        };
        if keep && !items.contains(old) {
            items.push(old.clone());
        }
    }
    items.sort();
    items.dedup();
    items
}

pub fn after_apply(dp: &DeliveryPipeline, report: &Report) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let (states, dropped) = conditions::from_apply_keeping(report, |type_| {
        old.conditions
            .iter()
            .find(|c| {
                c.type_ == type_
                    && c.status == conditions::TRUE
                    && c.observed_generation == generation
            })
            .map(|c| State {
                type_: c.type_.clone(),
                status: conditions::TRUE,
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
    });
    let completed = report.steps.iter().all(|s| s.completed());
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: merge(&old.conditions, &states, &dropped, generation, &now()),
        outputs: outputs(&report.values, &old.outputs),
        inventory: inventory(report, &old.inventory),
        applied_tag_keys: crate::desired::tags::applied_user_tag_keys(
            &old.applied_tag_keys,
            &dp.spec.tags,
            completed,
        ),
        // The controller reads the execution after the run; until then, the last one known.
        last_execution: old.last_execution.clone(),
        drift: Vec::new(),
        verified_at: completed.then(now),
        last_handled_reconcile_at: old.last_handled_reconcile_at.clone(),
    }
}

/// How long until `dp`'s next whole check is due, when its status says it was verified whole
/// (`verifiedAt`) as it is now (same generation, reconcile request answered, Ready and Synced,
/// no execution running) less than `interval` before `now`; None when it must be checked now.
pub fn verified_within(
    dp: &DeliveryPipeline,
    interval: std::time::Duration,
    now: chrono::DateTime<Utc>,
) -> Option<std::time::Duration> {
    let status = dp.status.as_ref()?;
    let current = status.observed_generation == dp.meta().generation
        && status.last_handled_reconcile_at.as_ref()
            == dp.annotations().get(super::RECONCILE_REQUEST_ANNOTATION)
        && [READY, SYNCED].iter().all(|type_| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == *type_ && c.status == conditions::TRUE)
        })
        && !status
            .last_execution
            .as_ref()
            .is_some_and(super::executions::in_progress);
    if !current {
        return None;
    }
    let verified = chrono::DateTime::parse_from_rfc3339(status.verified_at.as_deref()?).ok()?;
    let age = now
        .signed_duration_since(verified.with_timezone(&Utc))
        .to_std()
        .ok()?;
    interval.checked_sub(age).filter(|left| !left.is_zero())
}

/// After an observe-only run: conditions name the differences, `drift` lists them; outputs and
/// inventory come from what exists (a missing resource's predicted names are not outputs);
/// the applied tag keys stay, since nothing was written.
pub fn after_observe(dp: &DeliveryPipeline, report: &Report) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let (states, dropped) = conditions::from_preview(report);
    let mut values = report.values.clone();
    for step in &report.steps {
        if let Outcome::Applied(a) = &step.outcome
            && a.owned.is_empty()
            && !a.drift.is_empty()
        {
            for key in a.values.keys() {
                values.remove(key);
            }
        }
    }
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: merge(&old.conditions, &states, &dropped, generation, &now()),
        outputs: outputs(&values, &old.outputs),
        inventory: inventory(report, &old.inventory),
        applied_tag_keys: old.applied_tag_keys.clone(),
        last_execution: old.last_execution.clone(),
        drift: report
            .drift()
            .map(|(step, d)| DriftItem {
                group: step.condition.clone(),
                action: format!("{:?}", d.action),
                resource: d.resource.clone(),
                field: d.field.clone(),
                observed: d.observed.clone(),
                desired: d.desired.clone(),
            })
            .collect(),
        // Observe-only reads every time it wakes: nothing to skip after a restart.
        verified_at: None,
        last_handled_reconcile_at: old.last_handled_reconcile_at.clone(),
    }
}

/// Nothing could be attempted (no region, credentials unusable): every group is Unknown, and
/// Ready/Synced say why.
pub fn failed_before_aws(dp: &DeliveryPipeline, err: &Failure) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let mut states: Vec<State> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != READY && c.type_ != SYNCED && c.type_ != POLICY_COMPLIANT)
        .map(|c| {
            State::new(
                &c.type_,
                UNKNOWN,
                "CredentialsUnavailable",
                "no AWS session could be established",
            )
        })
        .collect();
    if err.reason == POLICY_VIOLATION {
        states.push(State::new(
            POLICY_COMPLIANT,
            FALSE,
            &err.reason,
            &err.message,
        ));
    }
    states.push(State::new(READY, FALSE, &err.reason, &err.message));
    states.push(State::new(SYNCED, FALSE, &err.reason, &err.message));
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: merge(&old.conditions, &states, &[], generation, &now()),
        ..old
    }
}

/// The pipeline was admitted: `PolicyCompliant` names the policies that govern it.
pub fn compliant(dp: &DeliveryPipeline, status: &mut DeliveryPipelineStatus, governing: &[String]) {
    let (reason, message) = if governing.is_empty() {
        (
            "NoPolicy",
            "no DeliveryPolicy selects this namespace".to_string(),
        )
    } else {
        (
            "Admitted",
            format!("admitted by DeliveryPolicy {}", governing.join(", ")),
        )
    };
    let state = State::new(POLICY_COMPLIANT, conditions::TRUE, reason, &message);
    let generation = dp.meta().generation;
    status.conditions = merge(&status.conditions, &[state], &[], generation, &now());
}

/// The condition about `spec.outputs.configMapName`.
pub const OUTPUTS_PUBLISHED: &str = "OutputsPublished";
/// Its reason when a ConfigMap of that name is someone else's.
pub const CONFIG_MAP_NOT_OWNED: &str = "ConfigMapNotOwned";

/// Whether the outputs ConfigMap was written (`refused`: why not).
/// The ConfigMap write failed (the API server refused it, or was unreachable): retried with
/// backoff, and the rest of the status is written meanwhile.
pub const PUBLISH_FAILED: &str = "PublishFailed";

pub fn outputs_published(
    dp: &DeliveryPipeline,
    status: &mut DeliveryPipelineStatus,
    failed: Option<(&str, &str)>,
) {
    let state = match failed {
        None => State::new(
            OUTPUTS_PUBLISHED,
            conditions::TRUE,
            "Published",
            "the outputs are in the ConfigMap spec.outputs.configMapName",
        ),
        Some((reason, message)) => State::new(OUTPUTS_PUBLISHED, FALSE, reason, message),
    };
    let generation = dp.meta().generation;
    status.conditions = merge(&status.conditions, &[state], &[], generation, &now());
}

/// During deletion: what each group is waiting for, or why it failed.
pub fn deleting(dp: &DeliveryPipeline, report: &Report) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: merge(
            &old.conditions,
            &conditions::from_delete(report),
            &[],
            generation,
            &now(),
        ),
        inventory: inventory(report, &old.inventory),
        ..old
    }
}

/// `Synced` reason of a deletion that waits for a person (access to restore, or the abandon
/// annotation).
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

/// The deletion waits for something only a person can fix (an environment that cannot be
/// reached): `Synced` says what, and how to finish anyway.
pub fn deletion_waits(dp: &DeliveryPipeline, status: &mut DeliveryPipelineStatus, message: &str) {
    let states = [State::new(SYNCED, FALSE, DELETION_BLOCKED, message)];
    let generation = dp.meta().generation;
    status.conditions = merge(&status.conditions, &states, &[], generation, &now());
}

/// A reconcile that could not complete: `Synced` says why; every other condition stays as
/// last written (what the stopped reconcile found is unknown).
pub fn not_synced(dp: &DeliveryPipeline, err: &Failure) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let states = [State::new(SYNCED, FALSE, &err.reason, &err.message)];
    DeliveryPipelineStatus {
        conditions: merge(&old.conditions, &states, &[], generation, &now()),
        ..old
    }
}

/// Deletion could not start (no session): `Synced` says why; everything else is as it was.
pub fn deletion_blocked(dp: &DeliveryPipeline, err: &Failure) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let states = [
        State::new(READY, FALSE, "Deleting", "the pipeline is being deleted"),
        State::new(SYNCED, FALSE, &err.reason, &err.message),
    ];
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: merge(&old.conditions, &states, &[], generation, &now()),
        ..old
    }
}

/// Paused: `Synced` says so (and that a deletion waits); everything else stays as last seen,
/// including `observedGeneration`, since nothing was reconciled.
pub fn paused(dp: &DeliveryPipeline, deleting: bool) -> DeliveryPipelineStatus {
    let old = current(dp);
    let mut message = format!(
        "annotation {} is \"true\": the operator makes no AWS calls for this pipeline until it is removed",
        super::PAUSED_ANNOTATION
    );
    if deleting {
        message.push_str("; the deletion waits for it too");
    }
    let states = [State::new(SYNCED, FALSE, "Paused", &message)];
    DeliveryPipelineStatus {
        conditions: merge(&old.conditions, &states, &[], dp.meta().generation, &now()),
        ..old
    }
}

/// Writes `next` through the status subresource unless it equals what is stored.
pub async fn write(
    api: &Api<DeliveryPipeline>,
    dp: &DeliveryPipeline,
    mut next: DeliveryPipelineStatus,
) -> Result<(), kube::Error> {
    // Every write answers the reconcile request the pipeline carries when it was read.
    next.last_handled_reconcile_at = dp
        .annotations()
        .get(super::RECONCILE_REQUEST_ANNOTATION)
        .cloned();
    if dp.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let mut fields = serde_json::to_value(&next).map_err(kube::Error::SerdeError)?;
    // A merge patch keeps what it omits: a field that became empty (and is not serialised)
    // must be cleared explicitly, e.g. `drift` once AWS matches again.
    if let (Some(old), Some(new)) = (dp.status.as_ref(), fields.as_object_mut())
        && let Ok(serde_json::Value::Object(old)) = serde_json::to_value(old)
    {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let patch = json!({ "status": fields });
    api.patch_status(
        &dp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, Applied, Outcome, Owned, StepReport};

    #[test]
    fn every_output_key_fills_its_field_and_missing_values_keep_what_was_recorded() {
        let mut values = Values::new();
        for (field, key) in keys::OUTPUTS {
            values.insert(*key, format!("v-{field}"));
        }
        for (field, key) in keys::ENVIRONMENT_OUTPUTS {
            values.insert(key.scoped("staging"), format!("s-{field}"));
        }
        let previous = Outputs {
            production: Some(crate::api::EnvironmentOutputs {
                vpc_id: Some("vpc-old".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = serde_json::to_value(outputs(&values, &previous)).unwrap_or_default();
        for (field, _) in keys::OUTPUTS {
            assert_eq!(out[*field], format!("v-{field}"), "{field}");
        }
        for (field, _) in keys::ENVIRONMENT_OUTPUTS {
            assert_eq!(out["staging"][*field], format!("s-{field}"), "{field}");
        }
        assert_eq!(out["production"], json!({"vpcId": "vpc-old"}));
        assert_eq!(
            outputs(&Values::new(), &Outputs::default()),
            Outputs::default()
        );
    }

    fn item(id: &str, group: &str) -> InventoryItem {
        InventoryItem {
            kind: "k".into(),
            id: id.into(),
            account: "1".into(),
            region: "r".into(),
            group: Some(group.into()),
        }
    }

    fn applied(condition: &str, ids: &[&str]) -> StepReport {
        StepReport {
            condition: condition.into(),
            kind: "thing".into(),
            wanted: true,
            outcome: Outcome::Applied(Applied {
                action: Action::Unchanged,
                values: Values::new(),
                owned: ids
                    .iter()
                    .map(|id| Owned {
                        kind: "k".into(),
                        id: id.to_string(),
                        account: "1".into(),
                        region: "r".into(),
                    })
                    .collect(),
                progress: None,
                note: None,
                drift: Vec::new(),
            }),
        }
    }

    #[test]
    fn inventory_shrinks_with_what_completed_steps_report() {
        let report = Report {
            steps: vec![applied("A", &["a1"])],
            values: Values::new(),
        };
        let previous = vec![item("a1", "A"), item("a2", "A")];
        assert_eq!(inventory(&report, &previous), vec![item("a1", "A")]);
    }

    #[test]
    fn inventory_of_a_failed_step_is_kept() {
        let failed = StepReport {
            condition: "B".into(),
            kind: "thing".into(),
            wanted: true,
            outcome: Outcome::Failed(Failure::terminal("AccessDenied", "no")),
        };
        let report = Report {
            steps: vec![applied("A", &["a1"]), failed],
            values: Values::new(),
        };
        let previous = vec![item("b1", "B")];
        assert_eq!(
            inventory(&report, &previous),
            vec![item("a1", "A"), item("b1", "B")]
        );
    }

    #[test]
    fn transition_time_changes_only_with_status_and_dropped_conditions_leave() {
        let first = merge(
            &[],
            &[
                State::new("A", "True", "InSync", ""),
                State::new("Gone", "True", "InSync", ""),
            ],
            &[],
            Some(1),
            "t1",
        );
        let same = merge(
            &first,
            &[State::new("A", "True", "InSync", "")],
            &["Gone".to_string()],
            Some(2),
            "t2",
        );
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].last_transition_time, "t1");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            &[State::new("A", FALSE, "X", "x")],
            &[],
            Some(2),
            "t3",
        );
        assert_eq!(flipped[0].last_transition_time, "t3");
    }

    fn verified(generation: i64, verified_at: &str) -> DeliveryPipeline {
        let mut dp: DeliveryPipeline =
            serde_yaml::from_str(include_str!("../../examples/minimal.yaml")).expect("example");
        dp.metadata.generation = Some(generation);
        let condition = |type_: &str| Condition {
            type_: type_.into(),
            status: conditions::TRUE.into(),
            reason: "InSync".into(),
            message: String::new(),
            last_transition_time: "2026-12-06T10:00:00Z".into(),
            observed_generation: Some(2),
        };
        dp.status = Some(DeliveryPipelineStatus {
            observed_generation: Some(2),
            conditions: vec![condition(READY), condition(SYNCED)],
            verified_at: Some(verified_at.into()),
            ..Default::default()
        });
        dp
    }

    #[test]
    fn a_pipeline_verified_as_it_is_now_waits_for_the_rest_of_its_interval() {
        use std::time::Duration;
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:10:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let interval = Duration::from_secs(600);
        let dp = verified(2, "2026-12-06T10:06:00Z");
        assert_eq!(
            verified_within(&dp, interval, now),
            Some(Duration::from_secs(360))
        );
        // Verified longer ago than the interval, or never: check now.
        assert_eq!(
            verified_within(&verified(2, "2026-12-06T09:59:00Z"), interval, now),
            None
        );
        let mut never = verified(2, "x");
        never.status.as_mut().expect("status").verified_at = None;
        assert_eq!(verified_within(&never, interval, now), None);
        // The spec changed since.
        assert_eq!(
            verified_within(&verified(3, "2026-12-06T10:06:00Z"), interval, now),
            None
        );
        // A reconcile was requested and not yet answered.
        let mut requested = verified(2, "2026-12-06T10:06:00Z");
        requested.metadata.annotations = Some(
            [(
                super::super::RECONCILE_REQUEST_ANNOTATION.to_string(),
                "now".to_string(),
            )]
            .into(),
        );
        assert_eq!(verified_within(&requested, interval, now), None);
        // Not Ready.
        let mut failing = verified(2, "2026-12-06T10:06:00Z");
        failing.status.as_mut().expect("status").conditions[0].status = FALSE.into();
        assert_eq!(verified_within(&failing, interval, now), None);
        // An execution runs: it is polled, so the pipeline is looked at now.
        let mut running = verified(2, "2026-12-06T10:06:00Z");
        running.status.as_mut().expect("status").last_execution = Some(crate::api::LastExecution {
            status: "InProgress".into(),
            ..Default::default()
        });
        assert_eq!(verified_within(&running, interval, now), None);
    }
}
