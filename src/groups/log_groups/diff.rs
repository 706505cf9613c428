//! How observed log groups differ from the desired ones. Pure.

use std::collections::BTreeMap;

use super::desired::LogGroups;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, tag_change};
use crate::groups::{Changes, Diff};

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedLogGroup {
    pub arn: String,
    pub retention_days: Option<i32>,
    pub kms_key_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The log groups under the prefix, by name.
pub type Observed = BTreeMap<String, ObservedLogGroup>;

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Create(String),
    Retention(String),
    Key(String),
    Tags(String, TagPlan),
    Delete(String),
}

/// What a log group is called in words.
pub const LOG_GROUP: &str = "log group";

/// A log group in words.
pub fn words(name: &str) -> String {
    format!("{LOG_GROUP} {name}")
}

impl Diff<Observed> for LogGroups {
    type Change = Change;

    fn diff(&self, observed: &Observed) -> Changes<Change> {
        let plan = collection_plan(&self.groups, observed, |_, _| true);
        let mut changes = Changes::new();
        for name in plan.create {
            changes.push(Change::Create(name.clone()), Drift::create(words(&name)));
        }
        for name in plan.update {
            let (want, have) = (&self.groups[&name], &observed[&name]);
            if have.retention_days != Some(want.retention_days) {
                let days = |days: i32| format!("{days} days");
                let drift = Drift::value(
                    words(&name),
                    "retention",
                    have.retention_days.map_or("never expire".to_string(), days),
                    days(want.retention_days),
                );
                changes.push(Change::Retention(name.clone()), drift);
            }
            if want.kms_key_arn.is_some() && have.kms_key_arn != want.kms_key_arn {
                let key = |arn: &Option<String>| arn.as_deref().unwrap_or("(none)").to_string();
                let drift = Drift::value(
                    words(&name),
                    "KMS key",
                    key(&have.kms_key_arn),
                    key(&want.kms_key_arn),
                );
                changes.push(Change::Key(name.clone()), drift);
            }
            tag_change(
                &mut changes,
                &words(&name),
                &self.tags,
                &have.tags,
                |plan| Change::Tags(name, plan),
            );
        }
        for name in plan.delete {
            changes.push(Change::Delete(name.clone()), Drift::delete(words(&name)));
        }
        changes
    }
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
        assert_eq!(d.diff(&observed_as(&d)), vec![]);
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
            d.diff(&o),
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
        let changes = d.diff(&o);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], Change::Retention(name));
    }
}
