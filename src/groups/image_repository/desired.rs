//! Desired state of the pipeline's ECR image repository: tag mutability, scan on push, KMS
//! encryption with the pipeline's key, and a repository policy letting other accounts'
//! environments pull; and its lifecycle policy (the retention step's), keeping the last images
//! and those the services run.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::TagMutability;
use crate::desired::PipelineContext;
use crate::desired::names::role::EXECUTION;
use crate::groups::kit::DesiredTags;

/// Tag exempt from immutability under `ImmutableExceptLatest`.
pub const LATEST: &str = "latest";

/// What image pulls need; granted to environments in other accounts.
pub const PULL_ACTIONS: &[&str] = &[
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];

pub const PULL_SID: &str = "EnvironmentExecutionRolesPull";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepository {
    pub name: String,
    pub mutability: Mutability,
    pub scan_on_push: bool,
    /// ECR encrypts with this KMS key; it cannot be changed once the repository exists.
    pub kms_key_arn: String,
    /// None: the repository has no policy (every environment is in the pipeline's account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    pub tags: DesiredTags,
}

/// ECR's `imageTagMutability` and its exclusion filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutability {
    /// `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION` or `MUTABLE`, as ECR spells it.
    pub mode: String,
    /// `WILDCARD` filters of tags exempt from `mode`, sorted; empty unless `..._WITH_EXCLUSION`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<String>,
}

pub fn mutability(spec: TagMutability) -> Mutability {
    let (mode, exclusions) = match spec {
        TagMutability::Immutable => ("IMMUTABLE", vec![]),
        TagMutability::ImmutableExceptLatest => {
            ("IMMUTABLE_WITH_EXCLUSION", vec![LATEST.to_string()])
        }
        TagMutability::Mutable => ("MUTABLE", vec![]),
    };
    Mutability {
        mode: mode.into(),
        exclusions,
    }
}

/// A count the images of a few protected tags never exceed: they are never expired.
const NEVER: i32 = 1000;

/// Expire every image beyond the newest `keep`, except the images `protected` tags name (what
/// the services run): ECR applies rules in priority order, and an image a higher-priority rule
/// selects is never expired by a lower one (ECR User Guide, "Lifecycle policy evaluation
/// rules"). Without the first rule, N newer builds would expire the image production runs, and
/// a scale-out or a rollback could not pull it.
pub fn lifecycle_policy(keep: i32, protected: &BTreeSet<String>) -> Value {
    let mut rules = Vec::new();
    if !protected.is_empty() {
        rules.push(json!({
            "rulePriority": 1,
            "description": "Keep the images the services run",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": protected,
                "countType": "imageCountMoreThan",
                "countNumber": NEVER
            },
            "action": {"type": "expire"}
        }));
    }
    rules.push(json!({
        "rulePriority": rules.len() + 1,
        "description": format!("Keep the last {keep} images"),
        "selection": {
            "tagStatus": "any",
            "countType": "imageCountMoreThan",
            "countNumber": keep
        },
        "action": {"type": "expire"}
    }));
    json!({ "rules": rules })
}

/// The tag of `image` when it is in `repository_uri` (`<uri>:<tag>`); an image named by digest,
/// or from elsewhere (the placeholder before the first deployment), has none to protect.
pub fn tag_in(repository_uri: &str, image: &str) -> Option<String> {
    let tag = image.strip_prefix(repository_uri)?.strip_prefix(':')?;
    (!tag.is_empty() && !tag.contains('@')).then(|| tag.to_string())
}

/// The task execution roles that pull images from another account: one per environment whose
/// `accountId` is set and differs from the pipeline's account. Specific role ARNs, never account
/// roots, so nothing else in those accounts can pull.
pub fn pull_principals(ctx: &PipelineContext) -> Vec<String> {
    ctx.cross_account_environments()
        .into_iter()
        .map(|env| ctx.arns().environment_role(env, EXECUTION))
        .collect()
}

/// The repository policy: pull for the execution roles of other accounts' environments, or
/// none at all. ECR repository policies name no `Resource` (the repository is implied).
fn repository_policy(ctx: &PipelineContext) -> Option<Value> {
    let principals = pull_principals(ctx);
    (!principals.is_empty()).then(|| {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": PULL_SID,
                "Effect": "Allow",
                "Principal": {"AWS": principals},
                "Action": PULL_ACTIONS
            }]
        })
    })
}

pub fn image_repository(ctx: &PipelineContext, kms_key_arn: &str) -> ImageRepository {
    let spec = &ctx.spec.image_repository;
    ImageRepository {
        name: ctx.names().image_repository(),
        mutability: mutability(spec.tag_mutability),
        scan_on_push: spec.scan_on_push,
        kms_key_arn: kms_key_arn.to_string(),
        policy: repository_policy(ctx),
        tags: DesiredTags::of(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Env;
    use crate::desired::policy::allowed_actions;
    use crate::desired::testing::{FULL, MINIMAL, context};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    #[test]
    fn each_tag_mutability_maps_to_ecr() {
        assert_eq!(
            mutability(TagMutability::Immutable),
            Mutability {
                mode: "IMMUTABLE".into(),
                exclusions: vec![]
            }
        );
        assert_eq!(
            mutability(TagMutability::ImmutableExceptLatest),
            Mutability {
                mode: "IMMUTABLE_WITH_EXCLUSION".into(),
                exclusions: vec!["latest".into()]
            }
        );
        assert_eq!(
            mutability(TagMutability::Mutable),
            Mutability {
                mode: "MUTABLE".into(),
                exclusions: vec![]
            }
        );
    }

    #[test]
    fn repository_follows_the_spec_and_uses_the_pipeline_key() {
        let mut c = context(FULL);
        c.spec.image_repository.scan_on_push = false;
        c.spec.image_repository.tag_mutability = TagMutability::Mutable;
        let r = image_repository(&c, KEY);
        assert_eq!(r.kms_key_arn, KEY);
        assert!(!r.scan_on_push);
        assert_eq!(r.mutability.mode, "MUTABLE");
        assert_eq!(r.tags, DesiredTags::of(&c));
        // ECR: lowercase, at most 256 characters, (namespace/)*name.
        assert!(r.name.len() <= 256);
        assert!(
            r.name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_./".contains(ch)),
            "{}",
            r.name
        );
    }

    #[test]
    fn lifecycle_keeps_the_last_images_of_any_tag() {
        let rules = &lifecycle_policy(25, &BTreeSet::new())["rules"];
        assert_eq!(rules.as_array().map(Vec::len), Some(1));
        let rule = &rules[0];
        assert_eq!(rule["rulePriority"], 1);
        assert_eq!(rule["selection"]["tagStatus"], "any");
        assert_eq!(rule["selection"]["countType"], "imageCountMoreThan");
        assert_eq!(rule["selection"]["countNumber"], 25);
        assert_eq!(rule["action"]["type"], "expire");
    }

    #[test]
    fn the_images_the_services_run_are_protected_by_a_first_rule() {
        let running = BTreeSet::from(["0123abcd".to_string(), "89abcdef".to_string()]);
        let rules = &lifecycle_policy(10, &running)["rules"];
        assert_eq!(rules.as_array().map(Vec::len), Some(2));
        assert_eq!(rules[0]["rulePriority"], 1);
        assert_eq!(rules[0]["selection"]["tagStatus"], "tagged");
        assert_eq!(
            rules[0]["selection"]["tagPatternList"],
            json!(["0123abcd", "89abcdef"])
        );
        assert!(rules[0]["selection"]["countNumber"].as_i64() > Some(2));
        assert_eq!(rules[1]["rulePriority"], 2);
        assert_eq!(rules[1]["selection"]["countNumber"], 10);
    }

    #[test]
    fn only_tags_of_this_repository_are_protected() {
        let uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/delivery-operator/app";
        assert_eq!(
            tag_in(uri, &format!("{uri}:0123abcd")),
            Some("0123abcd".into())
        );
        assert_eq!(tag_in(uri, &format!("{uri}@sha256:abc")), None);
        assert_eq!(tag_in(uri, "public.ecr.aws/nginx/nginx:latest"), None);
        assert_eq!(tag_in(uri, &format!("{uri}-other:1")), None);
        assert_eq!(tag_in(uri, &format!("{uri}:")), None);
    }

    #[test]
    fn a_single_account_pipeline_has_no_repository_policy() {
        let c = context(MINIMAL);
        assert!(pull_principals(&c).is_empty());
        assert_eq!(image_repository(&c, KEY).policy, None);
        // An environment that names the pipeline's own account is not "another account".
        let mut same = context(MINIMAL);
        same.spec.environments.staging.account_id = Some(same.account_id.clone());
        assert!(pull_principals(&same).is_empty());
        assert_eq!(image_repository(&same, KEY).policy, None);
    }

    #[test]
    fn cross_account_environments_pull_through_their_execution_roles_only() {
        let c = context(FULL);
        let staging = format!(
            "arn:aws:iam::222222222222:role/{}",
            c.names().environment_role(Env::Staging, "exec")
        );
        let production = format!(
            "arn:aws:iam::333333333333:role/{}",
            c.names().environment_role(Env::Production, "exec")
        );
        assert_eq!(
            pull_principals(&c),
            vec![staging.clone(), production.clone()]
        );
        let policy = image_repository(&c, KEY).policy.expect("a policy");
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Principal"]["AWS"], json!([staging, production]));
        assert!(!policy.to_string().contains(":root"));
        assert!(statement.get("Resource").is_none());
        let mut actions = allowed_actions(&policy);
        actions.sort();
        assert_eq!(actions, PULL_ACTIONS);
    }

    #[test]
    fn one_environment_in_another_account_grants_only_its_role() {
        let mut c = context(FULL);
        c.spec.environments.production.account_id = None;
        c.spec.environments.production.management_role_arn = None;
        let principals = pull_principals(&c);
        assert_eq!(principals.len(), 1);
        assert!(principals[0].starts_with("arn:aws:iam::222222222222:role/"));
        assert!(principals[0].ends_with("-staging-exec"));
    }
}
