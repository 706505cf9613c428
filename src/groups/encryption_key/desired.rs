//! Desired state of the pipeline's customer-managed KMS key.

use serde::Serialize;
use serde_json::{Value, json};

use crate::desired::PipelineContext;
use crate::desired::names::role as roles;
use crate::groups::kit::DesiredTags;

/// Days between automatic rotations (AWS default and minimum is 90; 365 is the usual choice).
pub const ROTATION_PERIOD_DAYS: i32 = 365;
/// AWS's minimum waiting period before a scheduled key deletion takes effect.
pub const DELETION_WINDOW_DAYS: i32 = 7;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKey {
    pub alias: String,
    pub description: String,
    pub rotation_enabled: bool,
    pub rotation_period_days: i32,
    /// The policy the key is created with: without the grants to environment roles, which
    /// may not exist yet (KMS rejects a policy naming an unknown principal). The key policy
    /// step owns the policy from then on.
    pub initial_policy: Value,
    pub tags: DesiredTags,
}

/// Actions the account's principals (through IAM) need to administer the key. Listed rather
/// than `kms:*`, and without the cryptographic ones: an unrelated principal with `kms:Decrypt`
/// on `*` in its IAM policy must not read every pipeline's artifacts. Use goes through the
/// services (`kms:ViaService`) or to the pipeline's own roles by ARN.
const ADMIN_ACTIONS: &[&str] = &[
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
];

const USE_ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
];

/// Tag naming the alias a key was made for: how a key created just before a crash (before its
/// alias) is found again instead of a second key being made.
pub const ALIAS_TAG: &str = "delivery-operator.dev/kms-alias";

pub fn encryption_key(ctx: &PipelineContext) -> EncryptionKey {
    let alias = ctx.names().kms_alias();
    let key_tags = DesiredTags::of(ctx).with(ALIAS_TAG, &alias);
    EncryptionKey {
        alias,
        description: format!(
            "Encrypts the artifacts, images, logs and notifications of delivery pipeline {}",
            ctx.display_name()
        ),
        rotation_enabled: true,
        rotation_period_days: ROTATION_PERIOD_DAYS,
        initial_policy: key_policy(ctx, &KeyUsers::default()),
        tags: key_tags,
    }
}

/// Roles granted use of the key by ARN, once they exist (KMS refuses a policy naming an unknown
/// principal).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyUsers {
    /// The pipeline's own roles in its account: the pipeline, build and scan roles.
    pub pipeline_roles: Vec<String>,
    /// Roles in other accounts: each cross-account environment's deploy role (reads
    /// artifacts) and task execution role (pulls images encrypted with it).
    pub environment_roles: Vec<String>,
}

pub fn key_users(ctx: &PipelineContext) -> KeyUsers {
    let arns = ctx.arns();
    KeyUsers {
        pipeline_roles: [roles::PIPELINE, roles::BUILDER, roles::SCANNER]
            .into_iter()
            .map(|purpose| arns.pipeline_role(purpose))
            .collect(),
        environment_roles: ctx
            .cross_account_environments()
            .into_iter()
            .flat_map(|env| {
                [
                    arns.environment_role(env, roles::DEPLOY),
                    arns.environment_role(env, roles::EXECUTION),
                ]
            })
            .collect(),
    }
}

/// The key policy: administration by the account; use through the pipeline's services in this
/// account and by the pipeline's own roles; decryption for the environment roles of other
/// accounts (specific roles, never another account's root).
pub fn key_policy(ctx: &PipelineContext, users: &KeyUsers) -> Value {
    let partition = ctx.partition();
    let account = &ctx.account_id;
    let region = &ctx.region;
    let root = format!("arn:{partition}:iam::{account}:root");
    let mut statements = vec![
        json!({
            "Sid": "AccountAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ADMIN_ACTIONS,
            "Resource": "*"
        }),
        json!({
            "Sid": "PipelineServicesInAccount",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": USE_ACTIONS,
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "kms:CallerAccount": account,
                    "kms:ViaService": via(region, &["codebuild", "codepipeline", "ecr", "s3", "sns"])
                }
            }
        }),
        json!({
            "Sid": "PipelineServicesGrants",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "kms:CallerAccount": account,
                    "kms:ViaService": via(region, &["codebuild", "ecr"])
                },
                "Bool": {"kms:GrantIsForAWSResource": "true"}
            }
        }),
        json!({
            "Sid": "CloudWatchLogs",
            "Effect": "Allow",
            "Principal": {"Service": format!("logs.{region}.amazonaws.com")},
            "Action": USE_ACTIONS,
            "Resource": "*",
            "Condition": {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": format!("arn:{partition}:logs:{region}:{account}:log-group:*")
                }
            }
        }),
        json!({
            "Sid": "EventsAndAlarmsPublishToTopic",
            "Effect": "Allow",
            "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}}
        }),
    ];
    if !users.pipeline_roles.is_empty() {
        statements.push(json!({
            "Sid": "PipelineRolesUse",
            "Effect": "Allow",
            "Principal": {"AWS": users.pipeline_roles},
            "Action": USE_ACTIONS,
            "Resource": "*"
        }));
    }
    if !users.environment_roles.is_empty() {
        statements.push(json!({
            "Sid": "EnvironmentRolesDecrypt",
            "Effect": "Allow",
            "Principal": {"AWS": users.environment_roles},
            "Action": ["kms:Decrypt", "kms:DescribeKey"],
            "Resource": "*"
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The regional endpoints of `services`, as `kms:ViaService` names them.
fn via(region: &str, services: &[&str]) -> Vec<String> {
    services
        .iter()
        .map(|service| format!("{service}.{region}.amazonaws.com"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::policy::allowed_actions;
    use crate::desired::testing::{FULL, MINIMAL, context};

    #[test]
    fn key_rotates_yearly_and_is_named_by_alias() {
        let key = encryption_key(&context(MINIMAL));
        assert!(key.rotation_enabled);
        assert_eq!(key.rotation_period_days, 365);
        assert!(key.alias.starts_with("alias/delivery-operator/"));
    }

    #[test]
    fn key_policy_golden_cross_account() {
        let c = context(FULL);
        let policy = key_policy(&c, &key_users(&c));
        let golden: Value = serde_json::from_str(include_str!(
            "../../../tests/data/golden/kms-key-policy-cross-account.json"
        ))
        .expect("golden parses");
        assert_eq!(
            policy,
            golden,
            "{}",
            serde_json::to_string_pretty(&policy).unwrap_or_default()
        );
    }

    #[test]
    fn cross_account_grants_name_the_environment_roles_only() {
        let c = context(FULL);
        let roles = key_users(&c).environment_roles;
        assert_eq!(roles.len(), 4, "{roles:?}");
        assert!(
            roles
                .iter()
                .all(|r| r.contains(":role/") && !r.ends_with(":root"))
        );
        // The initial policy names none of them: they may not exist when the key is made.
        let key = encryption_key(&c);
        assert!(!key.initial_policy.to_string().contains(":role/"));
    }

    #[test]
    fn the_account_administers_the_key_but_uses_it_only_through_services_or_named_roles() {
        let c = context(MINIMAL);
        let policy = key_policy(&c, &key_users(&c));
        let crypto = [
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:GenerateDataKey",
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
            "kms:CreateGrant",
        ];
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            let root_principal = statement["Principal"]["AWS"]
                .as_str()
                .is_some_and(|p| p.ends_with(":root"));
            let actions: Vec<&str> = match &statement["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if root_principal && actions.iter().any(|a| crypto.contains(a)) {
                assert!(
                    statement["Condition"]["StringEquals"]["kms:ViaService"].is_array(),
                    "the account uses the key only through services: {statement}"
                );
            }
        }
        let named = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["Sid"] == "PipelineRolesUse")
            .expect("the pipeline's roles by ARN");
        assert_eq!(named["Principal"]["AWS"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn single_account_key_policy_grants_no_other_account() {
        let c = context(MINIMAL);
        assert!(key_users(&c).environment_roles.is_empty());
        let text = key_policy(&c, &key_users(&c)).to_string();
        assert!(!text.contains("EnvironmentRolesDecrypt"));
        assert!(!text.contains("222222222222"));
    }

    #[test]
    fn key_policy_has_no_wildcard_action() {
        for manifest in [FULL, MINIMAL] {
            let c = context(manifest);
            let actions = allowed_actions(&key_policy(&c, &key_users(&c)));
            assert!(!actions.is_empty());
            assert!(actions.iter().all(|a| !a.contains('*')), "{actions:?}");
        }
    }
}
