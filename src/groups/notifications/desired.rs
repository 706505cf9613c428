//! Desired SNS topics: the notifications topic (pipeline events and alarms) and the approval
//! topic (manual approval requests). Both are KMS-encrypted and tagged, with the spec's e-mail
//! subscribers and a topic policy that admits exactly the publishers.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use crate::desired::PipelineContext;
use crate::groups::kit::DesiredTags;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Pipeline failure and success events (EventBridge) and alarms (CloudWatch).
    Notifications,
    /// Manual approval requests, published by CodePipeline as the pipeline role.
    Approval,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    #[serde(rename = "topicName")]
    pub name: String,
    pub arn: String,
    pub kms_key_arn: String,
    pub emails: BTreeSet<String>,
    pub policy: Value,
    pub tags: DesiredTags,
}

pub fn topic(ctx: &PipelineContext, purpose: Purpose, kms_key_arn: &str) -> Topic {
    let arns = ctx.arns();
    let (name, arn, emails) = match purpose {
        Purpose::Notifications => (
            ctx.names().notification_topic(),
            arns.notification_topic(),
            &ctx.spec.notifications.emails,
        ),
        Purpose::Approval => (
            ctx.names().approval_topic(),
            arns.approval_topic(),
            &ctx.spec.approval.notify_emails,
        ),
    };
    Topic {
        policy: topic_policy(ctx, purpose, &arn),
        name,
        arn,
        kms_key_arn: kms_key_arn.to_string(),
        emails: emails.iter().cloned().collect(),
        tags: DesiredTags::of(ctx),
    }
}

/// The account manages the topic through IAM; publishing without TLS is denied to everyone;
/// EventBridge rules and CloudWatch alarms of this
/// pipeline publish to the notifications topic (confused deputy: source account and ARN).
/// The approval topic needs no service grant: CodePipeline publishes as the pipeline role,
/// whose identity policy allows it.
fn topic_policy(ctx: &PipelineContext, purpose: Purpose, topic_arn: &str) -> Value {
    let account = &ctx.account_id;
    let arns = ctx.arns();
    let mut statements = vec![json!({
        "Sid": "AccountManagesTopic",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:{}:iam::{account}:root", ctx.partition())},
        "Action": [
            "sns:GetTopicAttributes",
            "sns:ListSubscriptionsByTopic",
            "sns:Publish",
            "sns:SetTopicAttributes",
            "sns:Subscribe"
        ],
        "Resource": topic_arn
    })];
    if purpose == Purpose::Notifications {
        for (sid, service, source) in [
            (
                "PipelineEventsPublish",
                "events.amazonaws.com",
                arns.rules(),
            ),
            (
                "PipelineAlarmsPublish",
                "cloudwatch.amazonaws.com",
                arns.alarms(),
            ),
        ] {
            statements.push(json!({
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": source}
                }
            }));
        }
    }
    // Messages carry pipeline state and approval links: never in clear text.
    statements.push(json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sns:Publish",
        "Resource": topic_arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    }));
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    #[test]
    fn topic_names_fit_sns_and_carry_their_emails() {
        let c = context(FULL);
        for (purpose, emails) in [
            (Purpose::Notifications, &c.spec.notifications.emails),
            (Purpose::Approval, &c.spec.approval.notify_emails),
        ] {
            let t = topic(&c, purpose, KEY);
            // SNS: 1-256 characters of [A-Za-z0-9_-].
            assert!(t.name.len() <= 256);
            assert!(
                t.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
            );
            assert!(t.arn.ends_with(&format!(":{}", t.name)));
            assert_eq!(t.emails.len(), emails.len());
        }
    }

    #[test]
    fn only_the_notifications_topic_admits_events_and_alarms() {
        let c = context(FULL);
        let notifications = topic(&c, Purpose::Notifications, KEY).policy.to_string();
        assert!(notifications.contains("events.amazonaws.com"));
        assert!(notifications.contains("cloudwatch.amazonaws.com"));
        assert!(notifications.contains("aws:SourceArn"));
        let approval = topic(&c, Purpose::Approval, KEY).policy.to_string();
        assert!(!approval.contains("amazonaws.com"));
    }

    #[test]
    fn both_topics_deny_publishing_without_tls() {
        let c = context(FULL);
        for purpose in [Purpose::Notifications, Purpose::Approval] {
            let policy = topic(&c, purpose, KEY).policy;
            let deny = policy["Statement"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["Effect"] == "Deny")
                .expect("a deny statement");
            assert_eq!(deny["Principal"], "*");
            assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
        }
    }
}
