//! How the observed rules differ from the desired ones. Pure. Event patterns compare as JSON
//! (EventBridge returns the text it was given, which another writer may have formatted or
//! reordered); the values a field may take are a set, so their order does not count.

use std::collections::BTreeMap;

use serde_json::Value;

use super::desired::{InputTransformer, Rule, Rules, Target};
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, tag_change};
use crate::groups::{Changes, Diff};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRule {
    pub arn: String,
    pub description: String,
    /// None: no pattern, or text that is not JSON.
    pub event_pattern: Option<Value>,
    pub state: String,
    pub targets: Vec<ObservedTarget>,
    pub tags: BTreeMap<String, String>,
}

/// The rules under the prefix, by name.
pub type Observed = BTreeMap<String, ObservedRule>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedTarget {
    pub id: String,
    pub arn: String,
    pub role_arn: Option<String>,
    pub input_transformer: Option<InputTransformer>,
    /// `Input` or `InputPath` set (the operator sets neither): the target is written again.
    pub other_input: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// PutRule (with tags), then PutTargets.
    Create(String),
    /// PutRule: pattern, state or description differ (PutRule replaces all three).
    Rule(String),
    /// PutTargets with the desired targets: one is missing or differs.
    PutTargets(String),
    /// Targets the rule should not have.
    RemoveTargets {
        rule: String,
        ids: Vec<String>,
    },
    Tags {
        rule: String,
        plan: TagPlan,
    },
    /// A rule no longer wanted: its targets removed (EventBridge refuses to delete a rule with
    /// targets), then the rule.
    Delete {
        rule: String,
        targets: Vec<String>,
    },
}

/// What a rule is called in words.
pub const RULE: &str = "EventBridge rule";

/// A rule in words.
pub fn words(name: &str) -> String {
    format!("{RULE} {name}")
}

impl Diff<Observed> for Rules {
    type Change = Change;

    fn diff(&self, observed: &Observed) -> Changes<Change> {
        let plan = collection_plan(&self.rules, observed, |_, _| true);
        let mut changes = Changes::new();
        for name in plan.create {
            changes.push(Change::Create(name.clone()), Drift::create(words(&name)));
        }
        for name in plan.update {
            changes.extend(rule_changes(&self.rules[&name], &observed[&name]));
        }
        for rule in plan.delete {
            let drift = Drift::delete(words(&rule));
            let targets = observed[&rule]
                .targets
                .iter()
                .map(|t| t.id.clone())
                .collect();
            changes.push(Change::Delete { rule, targets }, drift);
        }
        changes
    }
}

fn rule_changes(d: &Rule, o: &ObservedRule) -> Changes<Change> {
    let rule = words(&d.name);
    let name = || d.name.clone();
    let mut changes = Changes::new();
    // PutRule replaces the pattern, state and description together.
    let mut put_rule = Vec::new();
    if o.state != d.state {
        put_rule.push(Drift::value(&rule, "state", &o.state, &d.state));
    }
    if o.description != d.description {
        put_rule.push(Drift::value(
            &rule,
            "description",
            &o.description,
            &d.description,
        ));
    }
    let same_pattern = o
        .event_pattern
        .as_ref()
        .is_some_and(|p| normalized(p) == normalized(&d.event_pattern));
    if !same_pattern {
        put_rule.push(Drift::field(&rule, "event pattern"));
    }
    if !put_rule.is_empty() {
        changes.push_all(Change::Rule(name()), put_rule);
    }
    if d.targets.iter().any(|want| {
        !o.targets
            .iter()
            .any(|have| have.id == want.id && same_target(want, have))
    }) {
        changes.push(Change::PutTargets(name()), Drift::field(&rule, "targets"));
    }
    let extra: Vec<String> = o
        .targets
        .iter()
        .filter(|have| !d.targets.iter().any(|want| want.id == have.id))
        .map(|t| t.id.clone())
        .collect();
    if !extra.is_empty() {
        let drift = extra
            .iter()
            .map(|id| Drift::delete(format!("{rule} target {id}")))
            .collect();
        changes.push_all(
            Change::RemoveTargets {
                rule: name(),
                ids: extra,
            },
            drift,
        );
    }
    tag_change(&mut changes, &rule, &d.tags, &o.tags, |plan| Change::Tags {
        rule: name(),
        plan,
    });
    changes
}

fn same_target(want: &Target, have: &ObservedTarget) -> bool {
    want.arn == have.arn
        && want.role_arn == have.role_arn
        && want.input_transformer == have.input_transformer
        && !have.other_input
}

/// The pattern with every array of plain values sorted: `["a", "b"]` and `["b", "a"]` match the
/// same events.
pub fn normalized(pattern: &Value) -> Value {
    match pattern {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(normalized).collect();
            if items.iter().all(|v| !v.is_object() && !v.is_array()) {
                items.sort_by_key(|v| v.to_string());
            }
            Value::Array(items)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, MINIMAL, context};
    use crate::groups::events::desired::{FAILED, Inputs, SOURCE, SUCCEEDED, rules};
    use serde_json::json;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:topic";
    const ROLE: &str = "arn:aws:iam::123456789012:role/trigger";

    fn desired(manifest: &str, role: Option<&str>) -> Rules {
        rules(
            &context(manifest),
            &Inputs {
                topic_arn: TOPIC,
                trigger_role_arn: role,
            },
        )
    }

    fn in_sync(d: &Rules) -> BTreeMap<String, ObservedRule> {
        d.rules
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    ObservedRule {
                        arn: r.arn.clone(),
                        description: r.description.clone(),
                        event_pattern: Some(r.event_pattern.clone()),
                        state: r.state.clone(),
                        targets: r
                            .targets
                            .iter()
                            .map(|t| ObservedTarget {
                                id: t.id.clone(),
                                arn: t.arn.clone(),
                                role_arn: t.role_arn.clone(),
                                input_transformer: t.input_transformer.clone(),
                                other_input: false,
                            })
                            .collect(),
                        tags: r.tags.tags.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rules_in_sync_need_nothing() {
        let d = desired(MINIMAL, Some(ROLE));
        assert_eq!(d.diff(&in_sync(&d)), vec![]);
    }

    #[test]
    fn missing_rules_are_created() {
        let d = desired(MINIMAL, Some(ROLE));
        let c = context(MINIMAL);
        let mut observed = in_sync(&d);
        observed.remove(&c.names().rule(SOURCE));
        assert_eq!(
            d.diff(&observed),
            vec![Change::Create(c.names().rule(SOURCE))]
        );
    }

    #[test]
    fn a_reordered_or_reformatted_pattern_is_in_sync_and_another_pattern_is_put() {
        let mut d = desired(MINIMAL, Some(ROLE));
        let failed = context(MINIMAL).names().rule(FAILED);
        let mut observed = in_sync(&d);
        let rule = d.rules.get_mut(&failed).expect("failed rule");
        rule.event_pattern = json!({
            "source": ["aws.codepipeline"],
            "detail": {"state": ["FAILED", "CANCELED"]}
        });
        observed.get_mut(&failed).expect("observed").event_pattern = Some(json!({
            "detail": {"state": ["CANCELED", "FAILED"]},
            "source": ["aws.codepipeline"]
        }));
        assert_eq!(d.diff(&observed), vec![]);
        observed.get_mut(&failed).expect("observed").event_pattern = Some(json!({
            "detail": {"state": ["FAILED"]},
            "source": ["aws.codepipeline"]
        }));
        assert_eq!(d.diff(&observed), vec![Change::Rule(failed)]);
    }

    #[test]
    fn a_disabled_rule_or_another_description_is_one_put_rule() {
        let d = desired(FULL, None);
        let succeeded = context(FULL).names().rule(SUCCEEDED);
        let mut observed = in_sync(&d);
        let o = observed.get_mut(&succeeded).expect("observed");
        o.state = "DISABLED".into();
        o.description = "edited".into();
        assert_eq!(d.diff(&observed), vec![Change::Rule(succeeded)]);
    }

    #[test]
    fn target_drift_is_put_back_and_foreign_targets_removed() {
        let d = desired(MINIMAL, Some(ROLE));
        let c = context(MINIMAL);
        let (failed, source) = (c.names().rule(FAILED), c.names().rule(SOURCE));
        let mut observed = in_sync(&d);
        let o = observed.get_mut(&failed).expect("failed");
        o.targets[0].input_transformer = None;
        o.targets.push(ObservedTarget {
            id: "extra".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:q".into(),
            ..ObservedTarget::default()
        });
        observed.get_mut(&source).expect("source").targets[0].role_arn = None;
        assert_eq!(
            d.diff(&observed),
            vec![
                Change::PutTargets(failed.clone()),
                Change::RemoveTargets {
                    rule: failed,
                    ids: vec!["extra".into()]
                },
                Change::PutTargets(source),
            ]
        );
    }

    #[test]
    fn a_target_with_its_own_input_is_written_again() {
        let d = desired(FULL, None);
        let failed = context(FULL).names().rule(FAILED);
        let mut observed = in_sync(&d);
        observed.get_mut(&failed).expect("failed").targets[0].other_input = true;
        assert_eq!(d.diff(&observed), vec![Change::PutTargets(failed)]);
    }

    #[test]
    fn a_retired_tag_is_removed_and_a_changed_one_set() {
        let mut c = context(FULL);
        c.retired_tag_keys = vec!["Old".into()];
        let d = rules(
            &c,
            &Inputs {
                topic_arn: TOPIC,
                trigger_role_arn: None,
            },
        );
        let failed = c.names().rule(FAILED);
        let mut observed = in_sync(&d);
        let tags = &mut observed.get_mut(&failed).expect("failed").tags;
        tags.insert("Old".into(), "x".into());
        tags.insert("Team".into(), "other".into());
        let changes = d.diff(&observed);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let Change::Tags { rule, plan } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(rule, &failed);
        assert_eq!(plan.remove, vec!["Old".to_string()]);
        assert_eq!(plan.set.get("Team").map(String::as_str), Some("payments"));
    }

    #[test]
    fn a_trigger_rule_no_longer_wanted_loses_its_targets_then_goes() {
        // The source moved from S3 to a connection.
        let d = desired(FULL, None);
        let with_trigger = desired(MINIMAL, Some(ROLE));
        let mut observed = in_sync(&d);
        let source = context(MINIMAL).names().rule(SOURCE);
        let mut left = in_sync(&with_trigger)[&source].clone();
        let name = context(FULL).names().rule(SOURCE);
        left.arn = format!("arn:aws:events:us-east-1:123456789012:rule/{name}");
        observed.insert(name.clone(), left);
        assert_eq!(
            d.diff(&observed),
            vec![Change::Delete {
                rule: name,
                targets: vec!["pipeline".into()]
            }]
        );
    }
}
