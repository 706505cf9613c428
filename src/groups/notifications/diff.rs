//! How the observed topic differs from the desired one. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::desired::Topic;
use crate::desired::policy::equivalent;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, collection_plan, tag_change};
use crate::groups::{Changes, Diff};

/// `SubscriptionArn` of a subscription the recipient has not confirmed yet: AWS gives no ARN,
/// so it cannot be unsubscribed; AWS removes it when the confirmation expires.
pub const PENDING: &str = "PendingConfirmation";

/// The topic as SNS reports it: its identity, and what is compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopicView {
    pub arn: String,
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

impl Diff<TopicView> for Topic {
    type Change = Change;

    fn diff(&self, o: &TopicView) -> Changes<Change> {
        let topic = format!("SNS topic {}", self.name);
        let mut changes = Changes::new();
        if o.kms_key_arn.as_deref() != Some(self.kms_key_arn.as_str()) {
            let have = o.kms_key_arn.as_deref().unwrap_or("(none)");
            let drift = Drift::value(&topic, "KMS key", have, &self.kms_key_arn);
            changes.push(Change::Key, drift);
        }
        if !o
            .policy
            .as_ref()
            .is_some_and(|p| equivalent(p, &self.policy))
        {
            changes.push(Change::Policy, Drift::field(&topic, "topic policy"));
        }
        tag_change(&mut changes, &topic, &self.tags, &o.tags, Change::Tags);
        let subscription = |email: &str| format!("{topic} e-mail subscription {email}");
        let wanted: BTreeMap<&String, ()> = self.emails.iter().map(|e| (e, ())).collect();
        let present: BTreeMap<&String, &String> = o.subscriptions.iter().collect();
        let plan = collection_plan(&wanted, &present, |_, _| false);
        for email in plan.create {
            let drift = Drift::create(subscription(email));
            changes.push(Change::Subscribe(email.clone()), drift);
        }
        for email in plan.delete {
            let arn = &o.subscriptions[email];
            if arn != PENDING {
                let drift = Drift::delete(subscription(email));
                let change = Change::Unsubscribe {
                    email: email.clone(),
                    arn: arn.clone(),
                };
                changes.push(change, drift);
            }
        }
        changes
    }
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
            ..TopicView::default()
        }
    }

    #[test]
    fn in_sync_topic_has_no_changes() {
        let d = topic(
            &context(FULL),
            Purpose::Notifications,
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        assert_eq!(d.diff(&in_sync(&d)), vec![]);
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
            d.diff(&o),
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
        assert_eq!(d.diff(&o), vec![]);
        assert_eq!(unremovable(&d, &o), vec!["pending@example.com".to_string()]);
    }
}
