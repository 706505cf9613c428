//! How the observed alarms differ from the desired ones. Pure.

use std::collections::BTreeMap;

use super::desired::{Alarms, Settings};
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, deletions, tag_change};
use crate::groups::{Changes, Diff};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedAlarm {
    pub arn: String,
    pub settings: Settings,
    pub tags: BTreeMap<String, String>,
}

/// The alarms under the prefix, by name.
pub type Observed = BTreeMap<String, ObservedAlarm>;

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

/// What an alarm is called in words.
pub const ALARM: &str = "CloudWatch alarm";

/// An alarm in words.
pub fn words(name: &str) -> String {
    format!("{ALARM} {name}")
}

impl Diff<Observed> for Alarms {
    type Change = Change;

    /// An alarm rewrite names each setting that differs.
    fn diff(&self, observed: &Observed) -> Changes<Change> {
        let plan = collection_plan(&self.alarms, observed, |want, have| {
            !same(&want.settings, &have.settings)
        });
        let mut changes = Changes::new();
        for name in plan.create {
            changes.push(Change::Create(name.clone()), Drift::create(words(&name)));
        }
        for name in plan.update {
            let drift = settings_drift(
                &words(&name),
                &self.alarms[&name].settings,
                &observed[&name].settings,
            );
            changes.push_all(Change::Put(name), drift);
        }
        for (name, want) in &self.alarms {
            if let Some(have) = observed.get(name) {
                let alarm = name.clone();
                tag_change(&mut changes, &words(name), &want.tags, &have.tags, |plan| {
                    Change::Tags { alarm, plan }
                });
            }
        }
        if !plan.delete.is_empty() {
            let drift = deletions(ALARM, &plan.delete);
            changes.push_all(Change::Delete(plan.delete), drift);
        }
        changes
    }
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

/// An action list as a drift shows it: sorted, as [`same`] compares it.
fn actions(actions: &[String]) -> String {
    let mut actions = actions.to_vec();
    actions.sort();
    actions.join(", ")
}

/// One setting as a drift shows it.
type Shown = fn(&Settings) -> String;

/// Each setting PutMetricAlarm sets, by the name a drift gives it.
const SETTINGS: &[(&str, Shown)] = &[
    ("description", |s| s.description.clone()),
    ("metric", |s| format!("{}/{}", s.namespace, s.metric_name)),
    ("dimensions", |s| format!("{:?}", s.dimensions)),
    ("statistic", |s| s.statistic.clone()),
    ("period", |s| s.period.to_string()),
    ("evaluation periods", |s| s.evaluation_periods.to_string()),
    ("threshold", |s| s.threshold.to_string()),
    ("comparison", |s| s.comparison_operator.clone()),
    ("missing data", |s| s.treat_missing_data.clone()),
    ("actions enabled", |s| s.actions_enabled.to_string()),
    ("alarm actions", |s| actions(&s.alarm_actions)),
    ("OK actions", |s| actions(&s.ok_actions)),
    ("insufficient-data actions", |s| {
        actions(&s.insufficient_data_actions)
    }),
    ("datapoints to alarm", |s| {
        format!("{:?}", s.datapoints_to_alarm)
    }),
    ("extended statistic", |s| {
        format!("{:?}", s.extended_statistic)
    }),
    ("unit", |s| format!("{:?}", s.unit)),
    ("metric math", |s| s.metric_math.to_string()),
];

/// Each setting that differs, with what AWS has and what the spec declares; "settings" when
/// none shows a difference.
fn settings_drift(alarm: &str, want: &Settings, have: &Settings) -> Vec<Drift> {
    let drift: Vec<Drift> = SETTINGS
        .iter()
        .map(|(field, show)| (field, show(have), show(want)))
        .filter(|(_, have, want)| have != want)
        .map(|(field, have, want)| Drift::value(alarm, *field, have, want))
        .collect();
    if drift.is_empty() {
        return vec![Drift::field(alarm, "settings")];
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
        assert_eq!(d.diff(&in_sync(&d)), vec![]);
    }

    #[test]
    fn missing_alarms_are_created() {
        let c = context(FULL);
        let d = desired(&c);
        assert_eq!(
            d.diff(&BTreeMap::new()),
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
            assert_eq!(d.diff(&observed), vec![Change::Put(failed.clone())]);
        }
    }

    #[test]
    fn one_alarm_turned_off_is_deleted() {
        let mut c = context(FULL);
        let observed = in_sync(&desired(&c));
        c.spec.monitoring.success_alarm = false;
        assert_eq!(
            desired(&c).diff(&observed),
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
        let changes = d.diff(&observed).into_changes();
        let [Change::Tags { alarm, plan }] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!((alarm, &plan.remove), (&failed, &vec!["Old".to_string()]));
        assert!(plan.set.is_empty());
    }
}
