//! The offline plan: the desired state of every group of a manifest, without a cluster or AWS.
//! It iterates the same registry the controller runs. Outputs known before creation
//! (deterministic names and ARNs) are filled in; values AWS assigns are placeholders.
//!
//! `policies` lists every policy document of the plan with its kind, so independent checkers
//! (tests/iam) can judge them without knowing each group's shape. The kind follows the field
//! name: `trustPolicy` (who may assume a role), `inlinePolicies` (what a role may do), and
//! `policy` (a resource policy: key, bucket, topic, repository).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::desired::PipelineContext;
use crate::engine::{Failure, Values};
use crate::groups::{self, Placement};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub pipeline: String,
    pub account_id: String,
    pub region: String,
    /// Condition type of each group instance -> its desired state.
    pub groups: BTreeMap<String, Value>,
    pub policies: Vec<PolicyDocument>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Identity,
    Trust,
    Resource,
}

#[derive(Debug, Serialize)]
pub struct PolicyDocument {
    pub group: String,
    /// The account the policy lives in.
    pub account: String,
    pub kind: PolicyKind,
    /// `role/inline-policy` (identity), `role` (trust), or the resource's name.
    pub name: String,
    pub document: Value,
}

/// No AWS at all: the offline plan only renders desired states.
fn offline(
    _: Option<crate::desired::Env>,
) -> Result<std::sync::Arc<crate::aws::AwsSession>, Failure> {
    Err(Failure::terminal(
        "Offline",
        "the offline plan makes no AWS calls",
    ))
}

pub fn plan(ctx: &PipelineContext) -> Plan {
    let steps = groups::steps(ctx, &offline, None);
    let placement_of = |step: &dyn groups::GroupStep| Placement {
        account_id: step
            .environment()
            .and_then(|env| env.spec(&ctx.spec).account_id.clone())
            .unwrap_or_else(|| ctx.account_id.clone()),
        region: ctx.region.clone(),
        partition: ctx.partition(),
    };
    let mut known: Values = groups::seed(&ctx.account_id, &ctx.region);
    for step in &steps {
        known.extend(step.predicted(&placement_of(step.as_ref())));
    }
    let mut groups = BTreeMap::new();
    let mut policies = Vec::new();
    for step in &steps {
        let at = placement_of(step.as_ref());
        let condition = step.condition().to_string();
        let rendered = match step.plan(&at, &known) {
            Ok(desired) => desired,
            Err(e) => serde_json::json!({"error": e.message}),
        };
        collect_policies(&condition, &at.account_id, &rendered, "", &mut policies);
        // Steps sharing a condition (one environment's parts) render under one entry.
        match groups.remove(&condition) {
            None => groups.insert(condition, rendered),
            Some(Value::Array(mut parts)) => {
                parts.push(rendered);
                groups.insert(condition, Value::Array(parts))
            }
            Some(first) => groups.insert(condition, Value::Array(vec![first, rendered])),
        };
    }
    Plan {
        pipeline: ctx.display_name(),
        account_id: ctx.account_id.clone(),
        region: ctx.region.clone(),
        groups,
        policies,
    }
}

/// Walks a rendered desired state for policy documents; `owner` is the name of the nearest
/// enclosing object (a role, a bucket, a key alias).
fn collect_policies(
    group: &str,
    account: &str,
    value: &Value,
    owner: &str,
    out: &mut Vec<PolicyDocument>,
) {
    match value {
        Value::Object(fields) => {
            let owner = ["name", "alias", "topicName"]
                .iter()
                .find_map(|f| fields.get(*f).and_then(Value::as_str))
                .unwrap_or(owner);
            let document = |kind, name: String, document: &Value| PolicyDocument {
                group: group.to_string(),
                account: account.to_string(),
                kind,
                name,
                document: document.clone(),
            };
            for (field, child) in fields {
                match field.as_str() {
                    "trustPolicy" => out.push(document(PolicyKind::Trust, owner.into(), child)),
                    "policy" if child.get("Statement").is_some() => {
                        out.push(document(PolicyKind::Resource, owner.into(), child))
                    }
                    "inlinePolicies" => {
                        for (policy, doc) in child.as_object().into_iter().flatten() {
                            let name = format!("{owner}/{policy}");
                            out.push(document(PolicyKind::Identity, name, doc));
                        }
                    }
                    _ => collect_policies(group, account, child, owner, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_policies(group, account, item, owner, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    #[test]
    fn plan_renders_every_registered_group() {
        let p = plan(&context(FULL));
        assert_eq!(p.pipeline, "payments/checkout");
        for condition in [
            "EncryptionKeyReady",
            "ArtifactStoreReady",
            "NotificationsReady",
            "ApprovalTopicReady",
            "ImageRepositoryReady",
            "LogGroupsReady",
            "RolesReady",
            "StagingLogGroupsReady",
            "StagingRolesReady",
            "ProductionLogGroupsReady",
            "ProductionRolesReady",
            "StagingNetworkReady",
            "ProductionNetworkReady",
            "EventRulesReady",
            "AlarmsReady",
            "StagingServiceReady",
            "ProductionServiceReady",
        ] {
            let group = p.groups.get(condition);
            assert!(
                group.is_some_and(|g| g.get("error").is_none()),
                "{condition}: {group:?}"
            );
        }
        let bucket = &p.groups["ArtifactStoreReady"];
        assert!(
            bucket["kmsKeyArn"]
                .as_str()
                .is_some_and(|k| k.ends_with(":key/KNOWN-AFTER-CREATE"))
        );
        // The repository, then its lifecycle policy (a step of the same condition).
        let repository = &p.groups["ImageRepositoryReady"][0];
        assert!(p.groups["ImageRepositoryReady"][1]["policy"]["rules"].is_array());
        assert!(
            repository["kmsKeyArn"]
                .as_str()
                .is_some_and(|k| k.ends_with(":key/KNOWN-AFTER-CREATE"))
        );
        assert!(
            repository["policy"].is_object(),
            "cross-account: {repository}"
        );
    }

    #[test]
    fn plan_lists_resource_policies_in_their_accounts() {
        let p = plan(&context(FULL));
        let key_policy = p
            .policies
            .iter()
            .find(|d| d.group == "EncryptionKeyReady")
            .expect("the key policy is listed");
        assert_eq!(key_policy.kind, PolicyKind::Resource);
        assert_eq!(key_policy.account, "123456789012");
        assert!(key_policy.name.starts_with("alias/delivery-operator/"));
    }

    #[test]
    fn the_registry_forms_a_valid_graph() {
        let c = context(FULL);
        let steps = crate::groups::steps(&c, &offline, None);
        let seed = crate::groups::seed("123456789012", "us-east-1");
        let graph = crate::engine::Graph::build(&steps, &seed.keys().copied().collect());
        assert!(graph.is_ok(), "{:?}", graph.err());
    }
}
