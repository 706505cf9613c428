//! Desired notification topic: KMS-encrypted, tagged, with the spec's e-mail subscribers.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::desired::PipelineContext;
use crate::groups::kit::DesiredTags;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    pub name: String,
    pub kms_key_arn: String,
    pub emails: BTreeSet<String>,
    pub tags: DesiredTags,
}

pub fn topic(ctx: &PipelineContext, kms_key_arn: &str) -> Topic {
    Topic {
        name: ctx.names().notification_topic(),
        kms_key_arn: kms_key_arn.to_string(),
        emails: ctx.spec.notifications.emails.iter().cloned().collect(),
        tags: DesiredTags::of(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    #[test]
    fn topic_name_fits_sns_and_carries_the_spec_emails() {
        let c = context(FULL);
        let t = topic(&c, "arn:aws:kms:us-east-1:123456789012:key/k");
        // SNS: 1-256 characters of [A-Za-z0-9_-].
        assert!(t.name.len() <= 256);
        assert!(
            t.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
        );
        assert_eq!(t.emails.len(), c.spec.notifications.emails.len());
    }
}
