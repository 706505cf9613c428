//! The notifications and approval topics (SNS, encrypted with the pipeline's key), their topic
//! policies and their e-mail subscriptions, an owned collection. One instance per topic.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use self::desired::{Purpose, Topic, topic};
use self::diff::{Change, TopicView};
use super::kit::check_owner;
use super::{Group, Placement, Produced, keys};
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

pub struct Observed {
    arn: String,
    view: TopicView,
}

fn sns_tags(tags: &BTreeMap<String, String>) -> Result<Vec<aws_sdk_sns::types::Tag>, Failure> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_sns::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Failure::terminal("InvalidTag", format!("tag {k}: {e}")))
        })
        .collect()
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
    type Change = Change;

    fn condition(&self) -> String {
        match self.purpose {
            Purpose::Notifications => "NotificationsReady".into(),
            Purpose::Approval => "ApprovalTopicReady".into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self.purpose {
            Purpose::Notifications => "SNS notifications topic",
            Purpose::Approval => "SNS approval topic",
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
        let key = super::kit::input(inputs, keys::KMS_KEY_ARN)?;
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
        let tags: BTreeMap<String, String> = sns
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .aws("sns:ListTagsForResource")?
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        check_owner(&self.ctx, &format!("SNS topic {arn}"), &tags)?;
        let mut subscriptions = BTreeMap::new();
        let mut token = None;
        loop {
            let page = sns
                .list_subscriptions_by_topic()
                .topic_arn(&arn)
                .set_next_token(token)
                .send()
                .await
                .aws("sns:ListSubscriptionsByTopic")?;
            for s in page.subscriptions() {
                if let (Some("email"), Some(endpoint), Some(sub_arn)) =
                    (s.protocol(), s.endpoint(), s.subscription_arn())
                {
                    subscriptions.insert(endpoint.to_string(), sub_arn.to_string());
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let attribute = |name: &str| attributes.attributes().and_then(|a| a.get(name));
        let kms_key_arn = attribute("KmsMasterKeyId").cloned();
        let policy = attribute("Policy").and_then(|text| parse(text));
        Ok(Some(Observed {
            arn,
            view: TopicView {
                kms_key_arn,
                policy,
                tags,
                subscriptions,
            },
        }))
    }

    fn diff(desired: &Topic, observed: &Observed) -> Vec<Change> {
        diff::diff(desired, &observed.view)
    }

    fn describe(
        &self,
        desired: &Topic,
        observed: &Observed,
        change: &Change,
    ) -> Vec<crate::engine::Drift> {
        diff::describe(desired, &observed.view, change)
    }

    async fn create(&self, aws: &AwsSession, d: &Topic) -> Result<Produced, Failure> {
        let tags = sns_tags(&d.tags.tags)?;
        // CreateTopic is idempotent for the same name and attributes.
        let created = aws
            .sns()
            .create_topic()
            .name(&d.name)
            .attributes("KmsMasterKeyId", &d.kms_key_arn)
            .attributes("Policy", d.policy.to_string())
            .set_tags(Some(tags))
            .send()
            .await
            .aws("sns:CreateTopic")?;
        let arn = created
            .topic_arn()
            .map(str::to_string)
            .unwrap_or_else(|| self.arn(&Placement::of(aws)));
        for email in &d.emails {
            subscribe(aws, &arn, email).await?;
        }
        let at = Placement::of(aws);
        Ok(self.produced(
            &at,
            d,
            &Observed {
                arn,
                view: TopicView::default(),
            },
        ))
    }

    async fn update(
        &self,
        aws: &AwsSession,
        d: &Topic,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<(), Failure> {
        let sns = aws.sns();
        for change in changes {
            match change {
                Change::Key => {
                    sns.set_topic_attributes()
                        .topic_arn(&o.arn)
                        .attribute_name("KmsMasterKeyId")
                        .attribute_value(&d.kms_key_arn)
                        .send()
                        .await
                        .aws("sns:SetTopicAttributes")?;
                }
                Change::Policy => {
                    sns.set_topic_attributes()
                        .topic_arn(&o.arn)
                        .attribute_name("Policy")
                        .attribute_value(d.policy.to_string())
                        .send()
                        .await
                        .aws("sns:SetTopicAttributes")?;
                }
                Change::Tags(plan) => {
                    if !plan.set.is_empty() {
                        let tags = sns_tags(&plan.set)?;
                        sns.tag_resource()
                            .resource_arn(&o.arn)
                            .set_tags(Some(tags))
                            .send()
                            .await
                            .aws("sns:TagResource")?;
                    }
                    if !plan.remove.is_empty() {
                        sns.untag_resource()
                            .resource_arn(&o.arn)
                            .set_tag_keys(Some(plan.remove))
                            .send()
                            .await
                            .aws("sns:UntagResource")?;
                    }
                }
                Change::Subscribe(email) => subscribe(aws, &o.arn, &email).await?,
                Change::Unsubscribe { arn, .. } => {
                    found(
                        sns.unsubscribe().subscription_arn(&arn).send().await,
                        "sns:Unsubscribe",
                        NOT_FOUND,
                    )?;
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        // Deleting a topic deletes its subscriptions.
        found(
            aws.sns().delete_topic().topic_arn(&o.arn).send().await,
            "sns:DeleteTopic",
            NOT_FOUND,
        )?;
        Ok(Removal::Gone)
    }

    fn note(&self, d: &Topic, o: &Observed) -> Option<Note> {
        let waiting = diff::unremovable(d, &o.view);
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
