//! Tags carried by every taggable AWS resource of a pipeline.

use std::collections::BTreeMap;

use super::PipelineContext;

pub const MANAGED_BY_KEY: &str = "ManagedBy";
pub const MANAGED_BY_VALUE: &str = "delivery-operator";
/// `namespace/name` of the DeliveryPipeline that owns the resource: how the operator finds,
/// adopts and refuses resources.
pub const OWNER_KEY: &str = "delivery-operator.dev/owner";
/// The environment (`staging`, `production`) a per-environment resource belongs to.
pub const ENVIRONMENT_KEY: &str = "delivery-operator.dev/environment";

/// User tags first, then the operator's own tags (which the API forbids users to set, so
/// nothing here is overwritten silently).
pub fn tags(ctx: &PipelineContext) -> BTreeMap<String, String> {
    let mut tags = ctx.spec.tags.clone();
    tags.insert(MANAGED_BY_KEY.into(), MANAGED_BY_VALUE.into());
    tags.insert("Environment".into(), ctx.spec.environment_suffix.clone());
    tags.insert("CostCenter".into(), ctx.spec.cost_center.clone());
    tags.insert(OWNER_KEY.into(), ctx.owner());
    tags
}

/// Desired tags that are missing or different on a resource.
pub fn tag_drift(
    desired: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Retired user tag keys present on a resource: to be removed.
pub fn stale_tags(ctx: &PipelineContext, actual: &BTreeMap<String, String>) -> Vec<String> {
    ctx.retired_tag_keys
        .iter()
        .filter(|k| actual.contains_key(*k))
        .cloned()
        .collect()
}

/// User tag keys the operator has applied and must remember, so that a key later removed from
/// the spec is removed from AWS too (not left behind, as adding-only tagging would).
pub fn applied_user_tag_keys(
    previous: &[String],
    spec_tags: &BTreeMap<String, String>,
    completed: bool,
) -> Vec<String> {
    let mut keys: Vec<String> = spec_tags.keys().cloned().collect();
    if !completed {
        // Some resource may still carry a retired key: keep remembering it until a clean pass.
        keys.extend(previous.iter().cloned());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Who owns an existing resource, judged from its tags.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    /// Carries no owner tag: a crash between create and tag, or made by hand.
    Untagged,
    Foreign(String),
}

pub fn ownership(ctx: &PipelineContext, tags: &BTreeMap<String, String>) -> Ownership {
    match tags.get(OWNER_KEY) {
        None => Ownership::Untagged,
        Some(owner) if *owner == ctx.owner() => Ownership::Ours,
        Some(other) => Ownership::Foreign(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    #[test]
    fn every_resource_carries_required_and_user_tags() {
        let c = context(FULL);
        let t = tags(&c);
        assert_eq!(t["ManagedBy"], "delivery-operator");
        assert_eq!(t["Environment"], "prod");
        assert_eq!(t["CostCenter"], "payments");
        assert_eq!(t["Team"], "payments");
        assert_eq!(t[OWNER_KEY], "payments/checkout");
    }

    #[test]
    fn retired_keys_are_remembered_until_a_clean_pass() {
        let spec = BTreeMap::from([("Team".to_string(), "a".to_string())]);
        let previous = vec!["Owner".to_string(), "Team".to_string()];
        assert_eq!(
            applied_user_tag_keys(&previous, &spec, true),
            vec!["Team".to_string()]
        );
        assert_eq!(applied_user_tag_keys(&previous, &spec, false), previous);
        let mut c = context(FULL);
        c.retired_tag_keys = vec!["Owner".into(), "Gone".into()];
        let actual = BTreeMap::from([
            ("Owner".to_string(), "x".to_string()),
            ("Team".to_string(), "a".to_string()),
        ]);
        assert_eq!(stale_tags(&c, &actual), vec!["Owner".to_string()]);
    }

    #[test]
    fn ownership_is_read_from_owner_tag() {
        let c = context(FULL);
        assert_eq!(ownership(&c, &tags(&c)), Ownership::Ours);
        assert_eq!(ownership(&c, &BTreeMap::new()), Ownership::Untagged);
        let other = BTreeMap::from([(OWNER_KEY.to_string(), "x/y".to_string())]);
        assert_eq!(ownership(&c, &other), Ownership::Foreign("x/y".into()));
    }
}
