//! Deterministic AWS resource names.
//!
//! Every name is `<readable part>-<hash>`: the readable part is `namespace-name-suffix`,
//! truncated to fit the AWS limit of the resource kind; the hash is 8 hex characters of
//! SHA-256 over the unambiguous `namespace/name/suffix` (plus account and region for globally
//! unique S3 bucket names). The hash is always present, because joining with `-` alone is
//! ambiguous (`a-b`/`c` and `a`/`b-c` both read `a-b-c`), so two pipelines never share a name,
//! and a crashed create is found again under the same name.

use sha2::{Digest, Sha256};

use super::{Env, PipelineContext};

const HASH_LEN: usize = 8;
/// EventBridge's limit on rule names.
pub const RULE_NAME_MAX: usize = 64;
/// The longest purpose a rule name may end with.
pub const RULE_PURPOSE_MAX: usize = 16;

/// Purposes of the pipeline account's roles and of each environment's roles: the last part
/// of each role's name.
pub mod role {
    pub const PIPELINE: &str = "pipeline";
    pub const BUILDER: &str = "build";
    pub const SCANNER: &str = "scan";
    pub const EXECUTION: &str = "exec";
    pub const TASK: &str = "task";
    pub const DEPLOY: &str = "deploy";
    /// The role EventBridge assumes to start the pipeline when its S3 or CodeCommit source changes.
    pub const TRIGGER: &str = "trigger";
}

/// Purposes of the log groups: the last part of each log group's name (build and scan in the
/// pipeline account, the application's in each environment's account).
pub mod log_group {
    pub const BUILD: &str = "build";
    pub const SCAN: &str = "scan";
    pub const APPLICATION: &str = "app";
}

/// The purpose of the EventBridge rule that starts the pipeline (its name's last part): the
/// trigger role trusts EventBridge only for that rule.
pub const TRIGGER_RULE: &str = "source";
/// Where the scan project's report group exports raw reports, in the artifact bucket.
pub const REPORT_EXPORT_PREFIX: &str = "scan-reports";

/// Names of one pipeline's AWS resources.
pub struct Names<'a> {
    ctx: &'a PipelineContext,
}

impl<'a> Names<'a> {
    pub fn new(ctx: &'a PipelineContext) -> Self {
        Self { ctx }
    }

    fn readable(&self) -> String {
        sanitize(&format!(
            "{}-{}-{}",
            self.ctx.namespace, self.ctx.name, self.ctx.spec.environment_suffix
        ))
    }

    fn identity(&self) -> String {
        format!(
            "{}/{}/{}",
            self.ctx.namespace, self.ctx.name, self.ctx.spec.environment_suffix
        )
    }

    /// A name of at most `max_len` characters: readable part, the hash, then `suffix`.
    fn fitted(&self, max_len: usize, suffix: &str, extra_identity: &str) -> String {
        let hash = short_hash(&format!("{}{}", self.identity(), extra_identity));
        let tail = if suffix.is_empty() {
            format!("-{hash}")
        } else {
            format!("-{hash}-{suffix}")
        };
        let room = max_len.saturating_sub(tail.len());
        let readable = self.readable();
        let head = readable[..readable.len().min(room)].trim_end_matches('-');
        format!("{head}{tail}")
    }

    /// `-<hash>-`: the part every fitted name of this pipeline contains, so a policy can match
    /// all of one kind of resource (rules, alarms) with one pattern.
    pub fn identity_tag(&self) -> String {
        format!("-{}-", short_hash(&self.identity()))
    }

    /// The base name most resources share (also the CodePipeline name); at most 100 characters.
    pub fn base(&self) -> String {
        self.fitted(100, "", "")
    }

    /// Prefix of every CloudWatch log group of one scope (`pipeline`, `staging`, `production`),
    /// so each scope's log groups are found (and removed) as a collection.
    pub fn log_group_prefix(&self, scope: &str) -> String {
        format!("{}{scope}/", self.log_group_root())
    }

    /// Prefix of every CloudWatch log group of this pipeline, whatever its scope (the trailing
    /// `/` keeps another pipeline whose base name starts with this one's out).
    pub fn log_group_root(&self) -> String {
        format!("/delivery-operator/{}/", self.base())
    }

    /// SNS topic for pipeline notifications (256 characters allowed).
    pub fn notification_topic(&self) -> String {
        self.fitted(256, "notifications", "")
    }

    /// KMS alias (without the `alias/` prefix rules: AWS allows 256 characters).
    pub fn kms_alias(&self) -> String {
        format!("alias/delivery-operator/{}", self.fitted(200, "", ""))
    }

    /// S3 bucket: 3-63 lowercase characters, globally unique across all AWS accounts, so the
    /// account and region are part of the hash.
    pub fn artifact_bucket(&self) -> String {
        self.fitted(
            63,
            "artifacts",
            &format!("@{}/{}", self.ctx.account_id, self.ctx.region),
        )
    }

    /// IAM role name (64 characters) for a role purpose such as `pipeline` or `build`.
    pub fn role(&self, purpose: &str) -> String {
        self.fitted(64, purpose, "")
    }

    /// IAM role of one environment (`staging-exec`, `production-task`, `staging-deploy`).
    pub fn environment_role(&self, env: Env, purpose: &str) -> String {
        self.role(&format!("{}-{purpose}", env.name()))
    }

    /// SNS topic for manual approval requests.
    pub fn approval_topic(&self) -> String {
        self.fitted(256, "approval", "")
    }

    /// ECR repository: lowercase, at most 256 characters.
    pub fn image_repository(&self) -> String {
        format!("delivery-operator/{}", self.fitted(200, "", ""))
    }

    /// CodeBuild project for a purpose: `build` or `scan`. CodeBuild allows 255 characters;
    /// 100 leaves room for the report group named after the project (128).
    pub fn project(&self, purpose: &str) -> String {
        self.fitted(100, purpose, "")
    }

    /// The scan's report group: `<scan project>-findings`, so the scan role's report-group
    /// permission (`<project>-*`) covers it.
    pub fn report_group(&self) -> String {
        format!("{}-findings", self.project("scan"))
    }

    /// `Name` tag (256 characters) of one part of an environment's network (`vpc`, `public-0`),
    /// also the security group's name (255 characters).
    pub fn network(&self, env: Env, part: &str) -> String {
        format!("{}-{}-{part}", self.base(), env.name())
    }

    /// Prefix every EventBridge rule of this pipeline starts with (`<readable>-<hash>-`), so the
    /// rules are listed as one collection (`ListRules` by prefix) and every rule name carries
    /// [`identity_tag`](Self::identity_tag). Leaves room for a purpose of
    /// [`RULE_PURPOSE_MAX`] characters within EventBridge's 64.
    pub fn rule_prefix(&self) -> String {
        format!(
            "{}-",
            self.fitted(RULE_NAME_MAX - RULE_PURPOSE_MAX - 1, "", "")
        )
    }

    /// EventBridge rule for a purpose (`failed`, `succeeded`, `source`): at most 64 characters.
    pub fn rule(&self, purpose: &str) -> String {
        format!("{}{purpose}", self.rule_prefix())
    }

    /// Prefix every CloudWatch alarm of this pipeline starts with, so they are listed as one
    /// collection (`DescribeAlarms` by prefix); it carries [`identity_tag`](Self::identity_tag).
    pub fn alarm_prefix(&self) -> String {
        format!("{}-", self.fitted(200, "", ""))
    }

    /// CloudWatch alarm for a purpose (`failed`, `succeeded`): at most 255 characters.
    pub fn alarm(&self, purpose: &str) -> String {
        format!("{}{purpose}", self.alarm_prefix())
    }

    /// ECS cluster (255 characters) of an environment.
    pub fn cluster(&self, env: Env) -> String {
        self.fitted(200, env.name(), "")
    }

    /// ECS service (255 characters) of an environment.
    pub fn service(&self, env: Env) -> String {
        self.fitted(200, env.name(), "")
    }
}

/// Lowercase, only `[a-z0-9-]`, no leading/trailing or doubled dashes.
fn sanitize(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

pub fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    hex::encode(digest)[..HASH_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    fn ctx(ns: &str, name: &str) -> PipelineContext {
        let mut c = context(FULL);
        c.namespace = ns.into();
        c.name = name.into();
        c
    }

    #[test]
    fn names_are_deterministic_and_readable() {
        let c = ctx("payments", "checkout");
        assert_eq!(c.names().base(), "payments-checkout-prod-cb8b1995");
        assert_eq!(c.names().base(), ctx("payments", "checkout").names().base());
        assert_eq!(
            c.names().artifact_bucket(),
            "payments-checkout-prod-379500e6-artifacts"
        );
        assert_eq!(
            c.names().kms_alias(),
            "alias/delivery-operator/payments-checkout-prod-cb8b1995"
        );
    }

    #[test]
    fn ambiguous_joins_do_not_collide() {
        let a = ctx("a-b", "c");
        let b = ctx("a", "b-c");
        assert_ne!(a.names().base(), b.names().base());
        assert_ne!(a.names().artifact_bucket(), b.names().artifact_bucket());
        assert_ne!(a.names().role("build"), b.names().role("build"));
    }

    #[test]
    fn same_name_in_two_namespaces_differs() {
        assert_ne!(
            ctx("team-a", "app").names().base(),
            ctx("team-b", "app").names().base()
        );
    }

    #[test]
    fn bucket_differs_per_account_and_region() {
        let a = ctx("ns", "app");
        let mut b = ctx("ns", "app");
        b.account_id = "999999999999".into();
        let mut r = ctx("ns", "app");
        r.region = "eu-west-1".into();
        assert_ne!(a.names().artifact_bucket(), b.names().artifact_bucket());
        assert_ne!(a.names().artifact_bucket(), r.names().artifact_bucket());
    }

    #[test]
    fn long_names_fit_aws_limits_and_stay_unique() {
        let ns = "n".repeat(63);
        let a = ctx(&ns, &"x".repeat(40));
        let b = ctx(&ns, &format!("{}y", "x".repeat(39)));
        for (name, limit) in [
            (a.names().artifact_bucket(), 63),
            (a.names().role("cross-account-deploy"), 64),
            (a.names().base(), 100),
        ] {
            assert!(name.len() <= limit, "{name} is longer than {limit}");
            assert!(!name.contains("--"), "{name}");
        }
        assert_ne!(a.names().artifact_bucket(), b.names().artifact_bucket());
        assert_ne!(a.names().role("build"), b.names().role("build"));
    }

    #[test]
    fn rule_and_alarm_names_carry_the_identity_tag_and_fit() {
        for c in [
            ctx("payments", "checkout"),
            ctx(&"n".repeat(63), &"x".repeat(63)),
        ] {
            let names = c.names();
            let tag = names.identity_tag();
            let rule = names.rule(&"p".repeat(RULE_PURPOSE_MAX));
            assert!(rule.len() <= RULE_NAME_MAX, "{rule}");
            assert!(rule.contains(&tag) && rule.starts_with(&names.rule_prefix()));
            assert!(
                rule.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)),
                "{rule}"
            );
            let alarm = names.alarm("succeeded");
            assert!(alarm.len() <= 255 && alarm.contains(&tag), "{alarm}");
            assert!(alarm.starts_with(&names.alarm_prefix()));
        }
        assert_ne!(
            ctx("a-b", "c").names().rule_prefix(),
            ctx("a", "b-c").names().rule_prefix()
        );
    }

    #[test]
    fn bucket_names_are_valid_s3_names() {
        let c = ctx("Weird_NS", "App.Name");
        let bucket = c.names().artifact_bucket();
        assert!(bucket.len() >= 3 && bucket.len() <= 63);
        assert!(
            bucket
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'),
            "{bucket}"
        );
        assert!(!bucket.starts_with('-') && !bucket.ends_with('-'));
    }

    #[test]
    fn sanitize_collapses_and_trims() {
        assert_eq!(sanitize("A__b--c-"), "a-b-c");
        assert_eq!(sanitize("-x"), "x");
    }
}
