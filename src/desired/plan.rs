//! The offline plan: the desired state of every group of a manifest, without a cluster or AWS.
//! It iterates the same registry the controller runs; values AWS assigns at creation are shown
//! as placeholders.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PipelineContext;
use crate::groups::{self, Placement, Sessions};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub pipeline: String,
    pub account_id: String,
    pub region: String,
    /// Condition type of each group instance -> its desired state.
    pub groups: BTreeMap<String, serde_json::Value>,
}

pub fn plan(ctx: &PipelineContext) -> Plan {
    let at = Placement {
        account_id: ctx.account_id.clone(),
        region: ctx.region.clone(),
        partition: ctx.partition(),
    };
    let groups = groups::steps(ctx, &Sessions::offline())
        .iter()
        .map(|step| {
            let rendered = step
                .plan(&at)
                .unwrap_or_else(|e| serde_json::json!({"error": e.message}));
            (step.condition().to_string(), rendered)
        })
        .collect();
    Plan {
        pipeline: ctx.owner(),
        account_id: ctx.account_id.clone(),
        region: ctx.region.clone(),
        groups,
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
            "ImageRepositoryReady",
            "LogGroupsReady",
            "StagingLogGroupsReady",
            "ProductionLogGroupsReady",
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
                .is_some_and(|k| k.contains("KmsKeyArn"))
        );
        let repository = &p.groups["ImageRepositoryReady"];
        assert!(
            repository["kmsKeyArn"]
                .as_str()
                .is_some_and(|k| k.contains("KmsKeyArn"))
        );
        assert!(
            repository["policy"].is_object(),
            "cross-account: {repository}"
        );
    }

    #[test]
    fn the_registry_forms_a_valid_graph() {
        let c = context(FULL);
        let steps = crate::groups::steps(&c, &Sessions::offline());
        let seed = crate::groups::seed("123456789012", "us-east-1");
        let graph = crate::engine::Graph::build(&steps, &seed.keys().copied().collect());
        assert!(graph.is_ok(), "{:?}", graph.err());
    }
}
