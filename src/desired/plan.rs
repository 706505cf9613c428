//! The offline plan: the desired state of every AWS resource of a manifest, without a cluster
//! or AWS. Values AWS assigns at creation are shown as placeholders.

use serde::Serialize;

use super::PipelineContext;
use super::artifact_store::{ArtifactBucket, artifact_bucket};
use super::encryption_key::{EncryptionKey, encryption_key};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub pipeline: String,
    pub account_id: String,
    pub region: String,
    pub encryption_key: EncryptionKey,
    pub artifact_bucket: ArtifactBucket,
}

pub fn plan(ctx: &PipelineContext) -> Plan {
    let key_placeholder = format!(
        "arn:{}:kms:{}:{}:key/<assigned at creation; found by {}>",
        ctx.partition(),
        ctx.region,
        ctx.account_id,
        ctx.names().kms_alias()
    );
    Plan {
        pipeline: ctx.owner(),
        account_id: ctx.account_id.clone(),
        region: ctx.region.clone(),
        encryption_key: encryption_key(ctx),
        artifact_bucket: artifact_bucket(ctx, &key_placeholder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    #[test]
    fn plan_names_every_resource() {
        let p = plan(&context(FULL));
        assert_eq!(p.pipeline, "payments/checkout");
        assert!(
            p.artifact_bucket
                .kms_key_arn
                .contains(&p.encryption_key.alias)
        );
        let yaml = serde_yaml::to_string(&p).unwrap_or_default();
        assert!(
            yaml.contains("encryptionKey:") && yaml.contains("artifactBucket:"),
            "{yaml}"
        );
    }
}
