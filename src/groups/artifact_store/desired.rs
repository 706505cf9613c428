//! Desired state of the versioned, KMS-encrypted artifact bucket.

use serde::Serialize;
use serde_json::{Value, json};

use crate::desired::PipelineContext;
use crate::desired::names::role::DEPLOY;
use crate::groups::kit::DesiredTags;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactBucket {
    pub name: String,
    pub region: String,
    /// ARN of the KMS key objects are encrypted with (from the encryption key).
    pub kms_key_arn: String,
    pub bucket_key_enabled: bool,
    pub versioning: bool,
    pub block_public_access: bool,
    pub lifecycle: Lifecycle,
    pub policy: Value,
    pub tags: DesiredTags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub noncurrent_version_expiration_days: i32,
    pub abort_incomplete_upload_days: i32,
    pub artifact_expiration_days: i32,
}

pub const RULE_NONCURRENT: &str = "expire-noncurrent-versions";
pub const RULE_ABORT_UPLOADS: &str = "abort-incomplete-multipart-uploads";
pub const RULE_EXPIRE_ARTIFACTS: &str = "expire-artifacts";

pub fn artifact_bucket(ctx: &PipelineContext, kms_key_arn: &str) -> ArtifactBucket {
    let name = ctx.names().artifact_bucket();
    ArtifactBucket {
        policy: bucket_policy(ctx, &name),
        name,
        region: ctx.region.clone(),
        kms_key_arn: kms_key_arn.to_string(),
        bucket_key_enabled: true,
        versioning: true,
        block_public_access: true,
        lifecycle: Lifecycle {
            noncurrent_version_expiration_days: ctx
                .spec
                .artifact_store
                .noncurrent_version_expiration_days,
            abort_incomplete_upload_days: ctx.spec.artifact_store.abort_incomplete_upload_days,
            artifact_expiration_days: ctx.spec.artifact_store.artifact_expiration_days,
        },
        tags: DesiredTags::of(ctx),
    }
}

/// Roles in other accounts that read artifacts: each cross-account environment's deploy role
/// (the ECS deploy action reads the image definitions). Specific roles, never account roots.
pub fn artifact_readers(ctx: &PipelineContext) -> Vec<String> {
    ctx.cross_account_environments()
        .into_iter()
        .map(|env| ctx.arns().environment_role(env, DEPLOY))
        .collect()
}

fn bucket_policy(ctx: &PipelineContext, bucket: &str) -> Value {
    let partition = ctx.partition();
    let bucket_arn = format!("arn:{partition}:s3:::{bucket}");
    let objects_arn = format!("{bucket_arn}/*");
    // A Deny must cover every action, so `s3:*` is right here; Allow statements list actions.
    let mut statements = vec![json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, objects_arn],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })];
    let readers = artifact_readers(ctx);
    if !readers.is_empty() {
        statements.push(json!({
            "Sid": "EnvironmentDeployRolesReadArtifacts",
            "Effect": "Allow",
            "Principal": {"AWS": readers},
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": objects_arn
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::policy::allowed_actions;
    use crate::desired::testing::{FULL, MINIMAL, context};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn bucket_is_versioned_encrypted_and_private() {
        let b = artifact_bucket(&context(MINIMAL), KEY);
        assert!(b.versioning && b.block_public_access && b.bucket_key_enabled);
        assert_eq!(b.kms_key_arn, KEY);
        assert_eq!(
            b.lifecycle,
            Lifecycle {
                noncurrent_version_expiration_days: 30,
                abort_incomplete_upload_days: 7,
                artifact_expiration_days: 30
            }
        );
    }

    #[test]
    fn lifecycle_follows_spec() {
        let mut c = context(FULL);
        c.spec.artifact_store.noncurrent_version_expiration_days = 90;
        c.spec.artifact_store.abort_incomplete_upload_days = 2;
        c.spec.artifact_store.artifact_expiration_days = 14;
        let b = artifact_bucket(&c, KEY);
        assert_eq!(
            b.lifecycle,
            Lifecycle {
                noncurrent_version_expiration_days: 90,
                abort_incomplete_upload_days: 2,
                artifact_expiration_days: 14
            }
        );
    }

    #[test]
    fn bucket_policy_golden_cross_account() {
        let c = context(FULL);
        let b = artifact_bucket(&c, KEY);
        let golden: Value = serde_json::from_str(include_str!(
            "../../../tests/data/golden/bucket-policy-cross-account.json"
        ))
        .expect("golden parses");
        assert_eq!(
            b.policy,
            golden,
            "{}",
            serde_json::to_string_pretty(&b.policy).unwrap_or_default()
        );
    }

    #[test]
    fn bucket_policy_denies_plain_http_and_allows_no_wildcards() {
        for manifest in [FULL, MINIMAL] {
            let b = artifact_bucket(&context(manifest), KEY);
            let deny = &b.policy["Statement"][0];
            assert_eq!(deny["Effect"], "Deny");
            assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
            assert!(allowed_actions(&b.policy).iter().all(|a| !a.contains('*')));
        }
    }
}
