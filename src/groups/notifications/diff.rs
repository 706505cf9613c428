//! How the observed topic differs from the desired one. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::desired::Topic;
use crate::desired::policy::equivalent;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, tag_drift};

/// `SubscriptionArn` of a subscription the recipient has not confirmed yet: AWS gives no ARN,
/// so it cannot be unsubscribed; AWS removes it when the confirmation expires.
pub const PENDING: &str = "PendingConfirmation";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopicView {
    pub kms_key_arn: Option<String>,
    pub policy: Option<Value>,
    pub tags: BTreeMap<String, String>,
    /// E-mail endpoint -> subscription ARN (or [`PENDING`]).
    pub subscriptions: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Key,
    Policy,
    Tags(TagPlan),
    Subscribe(String),
    Unsubscribe { email: String, arn: String },
}

/// Subscribers no longer wanted whose confirmation is pending: AWS gives them no subscription
/// ARN, so they cannot be unsubscribed; AWS deletes them when the confirmation expires.
pub fn unremovable(d: &Topic, o: &TopicView) -> Vec<String> {
    o.subscriptions
        .iter()
        .filter(|(email, arn)| *arn == PENDING && !d.emails.contains(*email))
        .map(|(email, _)| email.clone())
        .collect()
}

pub fn diff(d: &Topic, o: &TopicView) -> Vec<Change> {
    let mut changes = Vec::new();
    if o.kms_key_arn.as_deref() != Some(d.kms_key_arn.as_str()) {
        changes.push(Change::Key);
    }
    if !o.policy.as_ref().is_some_and(|p| equivalent(p, &d.policy)) {
        changes.push(Change::Policy);
    }
    let tags = d.tags.plan(&o.tags);
    if !tags.is_empty() {
        changes.push(Change::Tags(tags));
    }
    let wanted: BTreeMap<&String, ()> = d.emails.iter().map(|e| (e, ())).collect();
    let present: BTreeMap<&String, &String> = o.subscriptions.iter().collect();
    let plan = collection_plan(&wanted, &present, |_, _| false);
    changes.extend(
        plan.create
            .into_iter()
            .map(|e| Change::Subscribe(e.clone())),
    );
    changes.extend(
        plan.delete
            .into_iter()
            .filter(|e| o.subscriptions[*e] != PENDING)
            .map(|e| Change::Unsubscribe {
                email: e.clone(),
                arn: o.subscriptions[e].clone(),
            }),
    );
    changes
}

/// One change in words.
pub fn describe(d: &Topic, o: &TopicView, change: &Change) -> Vec<Drift> {
    let topic = format!("SNS topic {}", d.name);
    vec![match change {
        Change::Key => Drift::value(
            &topic,
            "KMS key",
            o.kms_key_arn.as_deref().unwrap_or("(none)"),
            &d.kms_key_arn,
        ),
        Change::Policy => Drift::field(&topic, "topic policy"),
        Change::Tags(plan) => return tag_drift(&topic, plan, &o.tags),
        Change::Subscribe(email) => Drift::create(format!("{topic} e-mail subscription {email}")),
        Change::Unsubscribe { email, .. } => {
            Drift::delete(format!("{topic} e-mail subscription {email}"))
        }
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};
    use crate::groups::notifications::desired::{Purpose, topic};

    fn in_sync(d: &Topic) -> TopicView {
        TopicView {
            kms_key_arn: Some(d.kms_key_arn.clone()),
            policy: Some(d.policy.clone()),
            tags: d.tags.tags.clone(),
            subscriptions: d
                .emails
                .iter()
                .map(|e| (e.clone(), format!("arn:aws:sns:us-east-1:1:t:{e}")))
                .collect(),
        }
    }

    #[test]
    fn in_sync_topic_has_no_changes() {
        let d = topic(
            &context(FULL),
            Purpose::Notifications,
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        assert_eq!(diff(&d, &in_sync(&d)), vec![]);
    }

    #[test]
    fn a_removed_email_is_unsubscribed_and_a_new_one_subscribed() {
        let mut d = topic(
            &context(FULL),
            Purpose::Notifications,
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        let mut o = in_sync(&d);
        o.subscriptions.insert(
            "gone@example.com".into(),
            "arn:aws:sns:us-east-1:1:t:gone".into(),
        );
        d.emails.insert("new@example.com".into());
        assert_eq!(
            diff(&d, &o),
            vec![
                Change::Subscribe("new@example.com".into()),
                Change::Unsubscribe {
                    email: "gone@example.com".into(),
                    arn: "arn:aws:sns:us-east-1:1:t:gone".into()
                }
            ]
        );
    }

    #[test]
    fn an_unconfirmed_unwanted_subscription_is_left_to_expire() {
        let d = topic(
            &context(FULL),
            Purpose::Notifications,
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        let mut o = in_sync(&d);
        o.subscriptions
            .insert("pending@example.com".into(), PENDING.into());
        assert_eq!(diff(&d, &o), vec![]);
        assert_eq!(unremovable(&d, &o), vec!["pending@example.com".to_string()]);
    }
}
