//! The notifications and approval topics (SNS, encrypted with the pipeline's key), their topic
//! policies and their e-mail subscriptions, an owned collection. One instance per topic.

pub mod desired;
pub mod diff;

use aws_sdk_sns::types::Subscription;

use self::desired::{Purpose, Topic, topic};
use self::diff::{Change, TopicView as Observed};
use super::kit::{check_owner, input, retag, tags_of};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession, found};
use crate::desired::PipelineContext;
use crate::desired::policy::parse;
use crate::engine::{Failure, Key, Note, Removal, Values};

const KIND: &str = "AWS::SNS::Topic";
const SUBSCRIPTION_KIND: &str = "AWS::SNS::Subscription";
/// SNS's error code for a topic or subscription that does not exist (`NotFoundException` in
/// the API reference; the query protocol answers with code `NotFound`).
const NOT_FOUND: &[&str] = &["NotFound"];

pub struct TopicGroup {
    ctx: PipelineContext,
    purpose: Purpose,
}

impl TopicGroup {
    pub fn notifications(ctx: &PipelineContext) -> Self {
        Self {
            ctx: ctx.clone(),
            purpose: Purpose::Notifications,
        }
    }

    pub fn approval(ctx: &PipelineContext) -> Self {
        Self {
            ctx: ctx.clone(),
            purpose: Purpose::Approval,
        }
    }

    fn arn(&self, at: &Placement) -> String {
        let name = match self.purpose {
            Purpose::Notifications => self.ctx.names().notification_topic(),
            Purpose::Approval => self.ctx.names().approval_topic(),
        };
        format!(
            "arn:{}:sns:{}:{}:{name}",
            at.partition, at.region, at.account_id
        )
    }

    fn output(&self) -> Key {
        match self.purpose {
            Purpose::Notifications => keys::NOTIFICATION_TOPIC_ARN,
            Purpose::Approval => keys::APPROVAL_TOPIC_ARN,
        }
    }
}

async fn subscribe(aws: &AwsSession, topic_arn: &str, email: &str) -> Result<(), Failure> {
    aws.sns()
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("email")
        .endpoint(email)
        .return_subscription_arn(true)
        .send()
        .await
        .aws("sns:Subscribe")?;
    Ok(())
}

impl Group for TopicGroup {
    type Desired = Topic;
    type Observed = Observed;

    fn names(&self) -> Names {
        match self.purpose {
            Purpose::Notifications => Names::new("NotificationsReady", "SNS notifications topic"),
            Purpose::Approval => Names::new("ApprovalTopicReady", "SNS approval topic"),
        }
    }

    fn needs(&self) -> Vec<Key> {
        vec![keys::KMS_KEY_ARN]
    }

    fn provides(&self) -> Vec<Key> {
        vec![self.output()]
    }

    fn predicted(&self, at: &Placement) -> Values {
        Values::from([(self.output(), self.arn(at))])
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Topic, Failure> {
        let key = input(inputs, keys::KMS_KEY_ARN)?;
        Ok(topic(&self.ctx, self.purpose, key))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let sns = aws.sns();
        let arn = self.arn(&Placement::of(aws));
        let Some(attributes) = found(
            sns.get_topic_attributes().topic_arn(&arn).send().await,
            "sns:GetTopicAttributes",
            NOT_FOUND,
        )?
        else {
            return Ok(None);
        };
        let tags = tags_of(aws, &self.ctx, &arn, || async {
            let listed = sns
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await
                .aws("sns:ListTagsForResource")?;
            Ok(Some(from_sdk(listed.tags())))
        })
        .await?
        .unwrap_or_default();
        check_owner(&self.ctx, &format!("SNS topic {arn}"), &tags)?;
        let subscriptions: Vec<Subscription> = sns
            .list_subscriptions_by_topic()
            .topic_arn(&arn)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws("sns:ListSubscriptionsByTopic")?;
        let subscriptions = subscriptions
            .iter()
            .filter(|s| s.protocol() == Some("email"))
            .filter_map(|s| Some((s.endpoint()?.to_string(), s.subscription_arn()?.to_string())))
            .collect();
        let attribute = |name: &str| attributes.attributes().and_then(|a| a.get(name));
        Ok(Some(Observed {
            kms_key_arn: attribute("KmsMasterKeyId").cloned(),
            policy: attribute("Policy").and_then(|text| parse(text)),
            tags,
            subscriptions,
            arn,
        }))
    }

    async fn create(&self, aws: &AwsSession, d: &Topic) -> Result<Produced, Failure> {
        let at = Placement::of(aws);
        // CreateTopic is idempotent for the same name and attributes.
        let created = aws
            .sns()
            .create_topic()
            .name(&d.name)
            .attributes("KmsMasterKeyId", &d.kms_key_arn)
            .attributes("Policy", d.policy.to_string())
            .set_tags(Some(to_sdk(&d.tags.tags)?))
            .send()
            .await
            .aws("sns:CreateTopic")?;
        let arn = created
            .topic_arn()
            .map_or_else(|| self.arn(&at), str::to_string);
        for email in &d.emails {
            subscribe(aws, &arn, email).await?;
        }
        let made = Observed {
            arn,
            ..Observed::default()
        };
        Ok(self.produced(&at, d, &made))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let sns = &aws.sns();
        let arn = o.arn.as_str();
        let set_attribute = |name: &'static str, value: String| async move {
            sns.set_topic_attributes()
                .topic_arn(arn)
                .attribute_name(name)
                .attribute_value(value)
                .send()
                .await
                .aws("sns:SetTopicAttributes")
                .map(drop)
        };
        for change in changes {
            match change {
                Change::Key => set_attribute("KmsMasterKeyId", d.kms_key_arn.clone()).await?,
                Change::Policy => set_attribute("Policy", d.policy.to_string()).await?,
                Change::Tags(plan) => retag(sns, arn, plan).await?,
                Change::Subscribe(email) => subscribe(aws, arn, &email).await?,
                Change::Unsubscribe { arn, .. } => {
                    sns.unsubscribe()
                        .subscription_arn(&arn)
                        .send()
                        .await
                        .aws_tolerating("sns:Unsubscribe", NOT_FOUND)?;
                }
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        // Deleting a topic deletes its subscriptions.
        aws.sns()
            .delete_topic()
            .topic_arn(&o.arn)
            .send()
            .await
            .aws_tolerating("sns:DeleteTopic", NOT_FOUND)?;
        Ok(Removal::Gone)
    }

    fn note(&self, d: &Topic, o: &Observed) -> Option<Note> {
        let waiting = diff::unremovable(d, o);
        (!waiting.is_empty()).then(|| Note {
            reason: "UnconfirmedSubscribersExpire".into(),
            message: format!(
                "removed subscribers {} have not confirmed; AWS cannot unsubscribe a pending confirmation and deletes it when it expires (3 days)",
                waiting.join(", ")
            ),
        })
    }

    fn produced(&self, at: &Placement, d: &Topic, o: &Observed) -> Produced {
        let mut produced = Produced::default()
            .value(self.output(), &o.arn)
            .owns(KIND, &o.arn, at);
        // Subscriptions are recorded by endpoint: their ARNs are unknown until confirmed.
        for email in &d.emails {
            produced = produced.owns(SUBSCRIPTION_KIND, format!("{}|email|{email}", o.arn), at);
        }
        produced
    }
}
