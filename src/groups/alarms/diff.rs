//! How the observed alarms differ from the desired ones. Pure.

use std::collections::BTreeMap;

use super::desired::{Alarms, Settings};
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, tag_drift};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedAlarm {
    pub arn: String,
    pub settings: Settings,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// PutMetricAlarm with tags.
    Create(String),
    /// PutMetricAlarm: it replaces the whole configuration (tags given to it are ignored for
    /// an existing alarm).
    Put(String),
    Tags {
        alarm: String,
        plan: TagPlan,
    },
    /// Alarms no longer wanted: one DeleteAlarms for all of them.
    Delete(Vec<String>),
}

pub fn diff(d: &Alarms, observed: &BTreeMap<String, ObservedAlarm>) -> Vec<Change> {
    let plan = collection_plan(&d.alarms, observed, |want, have| {
        !same(&want.settings, &have.settings)
    });
    let mut changes: Vec<Change> = plan.create.into_iter().map(Change::Create).collect();
    changes.extend(plan.update.into_iter().map(Change::Put));
    for (name, want) in &d.alarms {
        if let Some(have) = observed.get(name) {
            let tags = want.tags.plan(&have.tags);
            if !tags.is_empty() {
                changes.push(Change::Tags {
                    alarm: name.clone(),
                    plan: tags,
                });
            }
        }
    }
    if !plan.delete.is_empty() {
        changes.push(Change::Delete(plan.delete));
    }
    changes
}

/// Equal settings, with action lists compared as sets (AWS keeps their order, which carries no
/// meaning).
fn same(want: &Settings, have: &Settings) -> bool {
    let sorted = |s: &Settings| {
        let mut s = s.clone();
        s.alarm_actions.sort();
        s.ok_actions.sort();
        s.insufficient_data_actions.sort();
        s
    };
    sorted(want) == sorted(have)
}

/// One change in words: an alarm rewrite names each setting that differs.
pub fn describe(
    d: &Alarms,
    observed: &BTreeMap<String, ObservedAlarm>,
    change: &Change,
) -> Vec<Drift> {
    let alarm = |name: &str| format!("CloudWatch alarm {name}");
    match change {
        Change::Create(name) => vec![Drift::create(alarm(name))],
        Change::Delete(names) => names.iter().map(|n| Drift::delete(alarm(n))).collect(),
        Change::Tags { alarm: name, plan } => {
            let empty = BTreeMap::new();
            let tags = observed.get(name).map_or(&empty, |o| &o.tags);
            tag_drift(&alarm(name), plan, tags)
        }
        Change::Put(name) => match (d.alarms.get(name), observed.get(name)) {
            (Some(want), Some(have)) => {
                settings_drift(&alarm(name), &want.settings, &have.settings)
            }
            _ => vec![Drift::field(alarm(name), "settings")],
        },
    }
}

fn settings_drift(alarm: &str, want: &Settings, have: &Settings) -> Vec<Drift> {
    let mut drift = Vec::new();
    let mut compare = |field: &str, have: String, want: String| {
        if have != want {
            drift.push(Drift::value(alarm, field, have, want));
        }
    };
    let sorted = |actions: &[String]| {
        let mut actions = actions.to_vec();
        actions.sort();
        actions.join(", ")
    };
    compare(
        "description",
        have.description.clone(),
        want.description.clone(),
    );
    compare(
        "metric",
        format!("{}/{}", have.namespace, have.metric_name),
        format!("{}/{}", want.namespace, want.metric_name),
    );
    compare(
        "dimensions",
        format!("{:?}", have.dimensions),
        format!("{:?}", want.dimensions),
    );
    compare("statistic", have.statistic.clone(), want.statistic.clone());
    compare("period", have.period.to_string(), want.period.to_string());
    compare(
        "evaluation periods",
        have.evaluation_periods.to_string(),
        want.evaluation_periods.to_string(),
    );
    compare(
        "threshold",
        have.threshold.to_string(),
        want.threshold.to_string(),
    );
    compare(
        "comparison",
        have.comparison_operator.clone(),
        want.comparison_operator.clone(),
    );
    compare(
        "missing data",
        have.treat_missing_data.clone(),
        want.treat_missing_data.clone(),
    );
    compare(
        "actions enabled",
        have.actions_enabled.to_string(),
        want.actions_enabled.to_string(),
    );
    compare(
        "alarm actions",
        sorted(&have.alarm_actions),
        sorted(&want.alarm_actions),
    );
    compare(
        "OK actions",
        sorted(&have.ok_actions),
        sorted(&want.ok_actions),
    );
    compare(
        "insufficient-data actions",
        sorted(&have.insufficient_data_actions),
        sorted(&want.insufficient_data_actions),
    );
    compare(
        "datapoints to alarm",
        format!("{:?}", have.datapoints_to_alarm),
        format!("{:?}", want.datapoints_to_alarm),
    );
    compare(
        "extended statistic",
        format!("{:?}", have.extended_statistic),
        format!("{:?}", want.extended_statistic),
    );
    compare(
        "unit",
        format!("{:?}", have.unit),
        format!("{:?}", want.unit),
    );
    compare(
        "metric math",
        have.metric_math.to_string(),
        want.metric_math.to_string(),
    );
    if drift.is_empty() {
        drift.push(Drift::field(alarm, "settings"));
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};
    use crate::groups::alarms::desired::{FAILED, Inputs, SUCCEEDED, alarms};

    fn desired(c: &crate::desired::PipelineContext) -> Alarms {
        alarms(
            c,
            &Inputs {
                topic_arn: "arn:aws:sns:us-east-1:123456789012:topic",
                failure_rule: "rule-failed",
                success_rule: "rule-succeeded",
            },
        )
    }

    fn in_sync(d: &Alarms) -> BTreeMap<String, ObservedAlarm> {
        d.alarms
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    ObservedAlarm {
                        arn: a.arn.clone(),
                        settings: a.settings.clone(),
                        tags: a.tags.tags.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn alarms_in_sync_need_nothing() {
        let d = desired(&context(FULL));
        assert_eq!(diff(&d, &in_sync(&d)), vec![]);
    }

    #[test]
    fn missing_alarms_are_created() {
        let c = context(FULL);
        let d = desired(&c);
        assert_eq!(
            diff(&d, &BTreeMap::new()),
            vec![
                Change::Create(c.names().alarm(FAILED)),
                Change::Create(c.names().alarm(SUCCEEDED)),
            ]
        );
    }

    #[test]
    fn any_field_differing_is_one_put() {
        let c = context(FULL);
        let d = desired(&c);
        let failed = c.names().alarm(FAILED);
        for edit in [
            (|s: &mut Settings| s.threshold = 2.0) as fn(&mut Settings),
            |s| s.period = 60,
            |s| s.treat_missing_data = "missing".into(),
            |s| s.ok_actions.clear(),
            |s| s.description = "edited".into(),
            |s| s.actions_enabled = false,
            |s| s.datapoints_to_alarm = Some(1),
            |s| {
                s.dimensions
                    .insert("RuleName".into(), "another-rule".into());
            },
        ] {
            let mut observed = in_sync(&d);
            edit(&mut observed.get_mut(&failed).expect("failed").settings);
            assert_eq!(diff(&d, &observed), vec![Change::Put(failed.clone())]);
        }
    }

    #[test]
    fn one_alarm_turned_off_is_deleted() {
        let mut c = context(FULL);
        let observed = in_sync(&desired(&c));
        c.spec.monitoring.success_alarm = false;
        assert_eq!(
            diff(&desired(&c), &observed),
            vec![Change::Delete(vec![c.names().alarm(SUCCEEDED)])]
        );
    }

    #[test]
    fn a_retired_tag_is_removed() {
        let mut c = context(FULL);
        c.retired_tag_keys = vec!["Old".into()];
        let d = desired(&c);
        let mut observed = in_sync(&d);
        let failed = c.names().alarm(FAILED);
        observed
            .get_mut(&failed)
            .expect("failed")
            .tags
            .insert("Old".into(), "x".into());
        let changes = diff(&d, &observed);
        let [Change::Tags { alarm, plan }] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!((alarm, &plan.remove), (&failed, &vec!["Old".to_string()]));
        assert!(plan.set.is_empty());
    }
}
