//! Desired CloudWatch log groups: build and scan in the pipeline account, one application log
//! group per environment in that environment's account.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::desired::{Env, PipelineContext};
use crate::groups::kit::DesiredTags;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroup {
    pub retention_days: i32,
    /// Customer-managed key; None: CloudWatch Logs' own encryption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroups {
    /// Every log group under `prefix` not named here is removed.
    pub prefix: String,
    pub groups: BTreeMap<String, LogGroup>,
    pub tags: DesiredTags,
}

/// Log group purposes, named in `desired::names` (other groups name these log groups too).
pub use crate::desired::names::log_group::{APPLICATION, BUILD, SCAN};

/// The pipeline account's log groups, encrypted with the pipeline's key (whose policy admits
/// CloudWatch Logs for this account's log groups).
pub fn pipeline(ctx: &PipelineContext, kms_key_arn: &str) -> LogGroups {
    let prefix = ctx.names().log_group_prefix("pipeline");
    let group = LogGroup {
        retention_days: ctx.spec.log_retention_days,
        kms_key_arn: Some(kms_key_arn.to_string()),
    };
    LogGroups {
        groups: [BUILD, SCAN]
            .into_iter()
            .map(|part| (format!("{prefix}{part}"), group.clone()))
            .collect(),
        prefix,
        tags: DesiredTags::of(ctx),
    }
}

/// One environment's application log group. The pipeline's key lives in the pipeline account,
/// so these use CloudWatch Logs' own encryption.
pub fn environment(ctx: &PipelineContext, env: Env) -> LogGroups {
    let prefix = ctx.names().log_group_prefix(env.name());
    LogGroups {
        groups: BTreeMap::from([(
            format!("{prefix}{APPLICATION}"),
            LogGroup {
                retention_days: ctx.spec.log_retention_days,
                kms_key_arn: None,
            },
        )]),
        prefix,
        tags: DesiredTags::of(ctx).with("delivery-operator.dev/environment", env.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    #[test]
    fn each_scope_has_its_own_prefix_and_valid_names() {
        let c = context(FULL);
        let p = pipeline(&c, "arn:aws:kms:us-east-1:123456789012:key/k");
        let s = environment(&c, Env::Staging);
        let prod = environment(&c, Env::Production);
        assert_eq!(p.groups.len(), 2);
        assert!(!p.prefix.starts_with(&s.prefix) && !s.prefix.starts_with(&p.prefix));
        assert_ne!(s.prefix, prod.prefix);
        for name in p
            .groups
            .keys()
            .chain(s.groups.keys())
            .chain(prod.groups.keys())
        {
            // CloudWatch Logs: 1-512 characters of [.-_/#A-Za-z0-9].
            assert!(name.len() <= 512, "{name}");
            assert!(
                name.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-/#".contains(ch)),
                "{name}"
            );
        }
        assert!(
            p.groups
                .values()
                .all(|g| g.retention_days == c.spec.log_retention_days)
        );
    }
}
