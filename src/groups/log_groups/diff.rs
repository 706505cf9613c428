//! How observed log groups differ from the desired ones. Pure.

use std::collections::BTreeMap;

use super::desired::LogGroups;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, tag_drift};

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedLogGroup {
    pub arn: String,
    pub retention_days: Option<i32>,
    pub kms_key_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Create(String),
    Retention(String),
    Key(String),
    Tags(String, TagPlan),
    Delete(String),
}

pub fn diff(d: &LogGroups, observed: &BTreeMap<String, ObservedLogGroup>) -> Vec<Change> {
    let plan = collection_plan(&d.groups, observed, |_, _| true);
    let mut changes: Vec<Change> = plan.create.into_iter().map(Change::Create).collect();
    for name in plan.update {
        let (want, have) = (&d.groups[&name], &observed[&name]);
        if have.retention_days != Some(want.retention_days) {
            changes.push(Change::Retention(name.clone()));
        }
        if want.kms_key_arn.is_some() && have.kms_key_arn != want.kms_key_arn {
            changes.push(Change::Key(name.clone()));
        }
        let tags = d.tags.plan(&have.tags);
        if !tags.is_empty() {
            changes.push(Change::Tags(name, tags));
        }
    }
    changes.extend(plan.delete.into_iter().map(Change::Delete));
    changes
}

/// One change in words.
pub fn describe(
    d: &LogGroups,
    observed: &BTreeMap<String, ObservedLogGroup>,
    change: &Change,
) -> Vec<Drift> {
    let group = |name: &str| format!("log group {name}");
    vec![match change {
        Change::Create(name) => Drift::create(group(name)),
        Change::Delete(name) => Drift::delete(group(name)),
        Change::Retention(name) => Drift::value(
            group(name),
            "retention",
            observed
                .get(name)
                .and_then(|o| o.retention_days)
                .map_or("never expire".to_string(), |days| format!("{days} days")),
            d.groups
                .get(name)
                .map_or(String::new(), |g| format!("{} days", g.retention_days)),
        ),
        Change::Key(name) => Drift::value(
            group(name),
            "KMS key",
            observed
                .get(name)
                .and_then(|o| o.kms_key_arn.as_deref())
                .unwrap_or("(none)"),
            d.groups
                .get(name)
                .and_then(|g| g.kms_key_arn.as_deref())
                .unwrap_or("(none)"),
        ),
        Change::Tags(name, plan) => {
            let empty = BTreeMap::new();
            let tags = observed.get(name).map_or(&empty, |o| &o.tags);
            return tag_drift(&group(name), plan, tags);
        }
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{MINIMAL, context};
    use crate::groups::log_groups::desired::pipeline;

    fn observed_as(d: &LogGroups) -> BTreeMap<String, ObservedLogGroup> {
        d.groups
            .iter()
            .map(|(name, g)| {
                (
                    name.clone(),
                    ObservedLogGroup {
                        arn: format!("arn:aws:logs:us-east-1:123456789012:log-group:{name}"),
                        retention_days: Some(g.retention_days),
                        kms_key_arn: g.kms_key_arn.clone(),
                        tags: d.tags.tags.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn in_sync_groups_have_no_changes() {
        let d = pipeline(
            &context(MINIMAL),
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        assert_eq!(diff(&d, &observed_as(&d)), vec![]);
    }

    #[test]
    fn a_missing_group_is_created_and_an_extra_one_deleted() {
        let d = pipeline(
            &context(MINIMAL),
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        let mut o = observed_as(&d);
        let first = d.groups.keys().next().cloned().unwrap_or_default();
        o.remove(&first);
        let extra = format!("{}old", d.prefix);
        o.insert(
            extra.clone(),
            ObservedLogGroup {
                arn: "arn".into(),
                retention_days: None,
                kms_key_arn: None,
                tags: BTreeMap::new(),
            },
        );
        assert_eq!(
            diff(&d, &o),
            vec![Change::Create(first), Change::Delete(extra)]
        );
    }

    #[test]
    fn retention_and_tags_are_updated_in_place() {
        let mut c = context(MINIMAL);
        c.spec.log_retention_days = 30;
        let d = pipeline(&c, "arn:aws:kms:us-east-1:123456789012:key/k");
        let mut o = observed_as(&d);
        let name = d.groups.keys().next().cloned().unwrap_or_default();
        if let Some(g) = o.get_mut(&name) {
            g.retention_days = Some(7);
            g.tags.remove("CostCenter");
        }
        let changes = diff(&d, &o);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], Change::Retention(name));
    }
}
