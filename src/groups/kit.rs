//! A small kit every group uses: tag plans, ownership checks, and owned collections. Pure and
//! unit-tested; the AWS-specific adapters stay in each group.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::aws::AwsSession;
use crate::desired::PipelineContext;
use crate::desired::tags::{OWNER_KEY, tags};
use crate::engine::{Drift, Failure, Key, Values};
use crate::groups::Changes;

/// An upstream value a group's desired state needs. The engine runs a step only once its
/// inputs are known, so a missing one is a bug in the group's declared needs.
pub fn input(inputs: &Values, key: Key) -> Result<&str, Failure> {
    inputs.get(&key).map(String::as_str).ok_or_else(|| {
        Failure::terminal(
            "MissingInput",
            format!("{key} is not known; the group does not declare it as a need"),
        )
    })
}

/// Tags a resource must carry, and user keys that left the spec (to be removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredTags {
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

impl DesiredTags {
    pub fn of(ctx: &PipelineContext) -> Self {
        Self {
            tags: tags(ctx),
            retired: ctx.retired_tag_keys.clone(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// What to set and what to remove on a resource that has `actual`.
    pub fn plan(&self, actual: &BTreeMap<String, String>) -> TagPlan {
        TagPlan {
            set: self
                .tags
                .iter()
                .filter(|(k, v)| actual.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            remove: self
                .retired
                .iter()
                .filter(|k| actual.contains_key(*k) && !self.tags.contains_key(*k))
                .cloned()
                .collect(),
        }
    }
}

/// Tag writes: missing or different tags to set, retired keys to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagPlan {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl TagPlan {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// For APIs that replace the whole tag set (S3): keep tags others added, drop retired
    /// keys, override ours.
    pub fn whole_set(&self, actual: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut all = actual.clone();
        for key in &self.remove {
            all.remove(key);
        }
        all.extend(self.set.clone());
        all
    }
}

/// For `.build().map_err(invalid("what"))` on an SDK builder whose required members the
/// desired state always sets: a request the SDK refuses to build is a bad spec, not a retry.
pub fn invalid(
    what: &str,
) -> impl FnOnce(aws_smithy_types::error::operation::BuildError) -> Failure + '_ {
    move |e| Failure::terminal("InvalidRequest", format!("{what}: {e}"))
}

/// Applies a tag plan through a service's own tag and untag calls: `set` gets the tags to set
/// (when any), `remove` the keys to remove (when any).
pub async fn apply_tags<S, SF, R, RF>(plan: TagPlan, set: S, remove: R) -> Result<(), Failure>
where
    S: FnOnce(BTreeMap<String, String>) -> SF,
    SF: std::future::Future<Output = Result<(), Failure>>,
    R: FnOnce(Vec<String>) -> RF,
    RF: std::future::Future<Output = Result<(), Failure>>,
{
    if !plan.set.is_empty() {
        set(plan.set).await?;
    }
    if !plan.remove.is_empty() {
        remove(plan.remove).await?;
    }
    Ok(())
}

/// Applies a tag plan to one resource through its service's tag and untag calls.
pub async fn retag<C: crate::aws::tags::Tagging>(
    client: &C,
    resource: &str,
    plan: TagPlan,
) -> Result<(), Failure> {
    apply_tags(
        plan,
        |set| client.tag(resource, set),
        |keys| client.untag(resource, keys),
    )
    .await
}

/// A switch as a drift shows it.
pub fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The removal of each named resource of one `kind`, in words (`delete <kind> <name>`).
pub fn deletions<'a>(kind: &str, names: impl IntoIterator<Item = &'a String>) -> Vec<Drift> {
    names
        .into_iter()
        .map(|name| Drift::delete(format!("{kind} {name}")))
        .collect()
}

/// Tag writes in words: one drift per key, with the value AWS has and the one declared.
pub fn tag_drift(
    resource: &str,
    plan: &TagPlan,
    observed: &BTreeMap<String, String>,
) -> Vec<Drift> {
    use crate::engine::Drift;
    let shown = |key: &String| {
        observed
            .get(key)
            .map_or("(none)", String::as_str)
            .to_string()
    };
    plan.set
        .iter()
        .map(|(key, value)| Drift::value(resource, format!("tag {key}"), shown(key), value))
        .chain(
            plan.remove
                .iter()
                .map(|key| Drift::value(resource, format!("tag {key}"), shown(key), "(removed)")),
        )
        .collect()
}

/// Tag writes on one resource, when it lacks what it must carry: the change `change` makes of
/// the plan, with one drift per key.
pub fn tag_change<C>(
    changes: &mut Changes<C>,
    resource: &str,
    want: &DesiredTags,
    have: &BTreeMap<String, String>,
    change: impl FnOnce(TagPlan) -> C,
) {
    let plan = want.plan(have);
    if !plan.is_empty() {
        let drift = tag_drift(resource, &plan, have);
        changes.push_all(change(plan), drift);
    }
}

/// The tags of `arn`: from the reconcile's one tag read of the account
/// (`AwsSession::tags_of`), else from `read`, the resource's own tag read (None: the resource
/// is gone).
pub async fn tags_of<F, Fut>(
    aws: &AwsSession,
    ctx: &PipelineContext,
    arn: &str,
    read: F,
) -> Result<Option<BTreeMap<String, String>>, Failure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<BTreeMap<String, String>>, Failure>>,
{
    let owner = ctx.owner();
    match aws.tags_of((OWNER_KEY, &owner), arn).await? {
        Some(tags) => Ok(Some(tags)),
        None => read().await,
    }
}

/// Refuses a resource that another pipeline's owner tag claims. Untagged resources (a crash
/// between create and tag, or made by hand under our deterministic name) are adopted.
pub fn check_owner(
    ctx: &PipelineContext,
    what: &str,
    actual: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    match actual.get(OWNER_KEY) {
        Some(owner) if *owner != ctx.owner() => Err(Failure::terminal(
            "ResourceOwnedByAnotherPipeline",
            format!("{what} is owned by pipeline {owner}; delete it there or rename this pipeline"),
        )),
        _ => Ok(()),
    }
}

/// What to do to an owned collection (subnets, subscriptions, log groups, alarms) so it holds
/// exactly the desired members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionPlan<K> {
    pub create: Vec<K>,
    pub update: Vec<K>,
    pub delete: Vec<K>,
}

impl<K> CollectionPlan<K> {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Compares desired and observed members by key; `differs` decides whether a member present in
/// both needs an update.
pub fn collection_plan<K: Ord + Clone, D, O>(
    desired: &BTreeMap<K, D>,
    observed: &BTreeMap<K, O>,
    differs: impl Fn(&D, &O) -> bool,
) -> CollectionPlan<K> {
    let wanted: BTreeSet<&K> = desired.keys().collect();
    let present: BTreeSet<&K> = observed.keys().collect();
    CollectionPlan {
        create: wanted.difference(&present).map(|k| (*k).clone()).collect(),
        update: wanted
            .intersection(&present)
            .filter(|k| differs(&desired[**k], &observed[**k]))
            .map(|k| (*k).clone())
            .collect(),
        delete: present.difference(&wanted).map(|k| (*k).clone()).collect(),
    }
}

/// True when every member of `desired` is in `actual` with an equal value (recursively): for
/// configurations AWS returns with defaults filled in.
pub fn json_subset(desired: &serde_json::Value, actual: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| json_subset(v, av))),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| json_subset(dv, av))
        }
        _ => desired == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_plan_sets_missing_and_removes_only_retired_keys() {
        let desired = DesiredTags {
            tags: map(&[("Team", "a"), ("ManagedBy", "delivery-operator")]),
            retired: vec!["Old".into(), "NotThere".into()],
        };
        let actual = map(&[("Team", "b"), ("Old", "x"), ("SomeoneElse", "y")]);
        let plan = desired.plan(&actual);
        assert_eq!(
            plan.set,
            map(&[("Team", "a"), ("ManagedBy", "delivery-operator")])
        );
        assert_eq!(plan.remove, vec!["Old".to_string()]);
        assert_eq!(
            plan.whole_set(&actual),
            map(&[
                ("Team", "a"),
                ("ManagedBy", "delivery-operator"),
                ("SomeoneElse", "y")
            ])
        );
        assert!(desired.plan(&plan.whole_set(&actual)).is_empty());
    }

    #[test]
    fn foreign_owner_is_refused_and_untagged_is_adopted() {
        let c = context(FULL);
        assert!(check_owner(&c, "x", &map(&[])).is_ok());
        assert!(check_owner(&c, "x", &map(&[(OWNER_KEY, "payments/checkout")])).is_ok());
        let err = check_owner(&c, "bucket b", &map(&[(OWNER_KEY, "other/one")]));
        assert_eq!(
            err.map_err(|e| e.reason),
            Err("ResourceOwnedByAnotherPipeline".to_string())
        );
    }

    #[test]
    fn collection_plan_creates_updates_and_deletes_exactly() {
        let desired = BTreeMap::from([("a", 1), ("b", 2), ("c", 3)]);
        let observed = BTreeMap::from([("b", 2), ("c", 4), ("d", 5)]);
        let plan = collection_plan(&desired, &observed, |d, o| d != o);
        assert_eq!(plan.create, vec!["a"]);
        assert_eq!(plan.update, vec!["c"]);
        assert_eq!(plan.delete, vec!["d"]);
        let same = collection_plan(&desired, &desired, |d, o| d != o);
        assert!(same.is_empty());
    }

    #[test]
    fn json_subset_ignores_defaults_aws_adds() {
        let desired = json!({"a": 1, "b": {"c": [1, 2]}});
        let actual = json!({"a": 1, "b": {"c": [1, 2], "default": true}, "x": "y"});
        assert!(json_subset(&desired, &actual));
        assert!(!json_subset(&json!({"a": 2}), &actual));
        assert!(!json_subset(&json!({"b": {"c": [2, 1]}}), &actual));
    }
}

/// The one change of a step that owns a single document (a key policy, a lifecycle policy):
/// write it whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite;

/// `Rewrite`, worded as `field` of `resource`, unless the document AWS has (if any) already
/// `matches` the desired one.
pub fn rewrite_unless(resource: String, field: &str, matches: bool) -> Changes<Rewrite> {
    let mut changes = Changes::new();
    if !matches {
        changes.push(Rewrite, Drift::field(resource, field));
    }
    changes
}
