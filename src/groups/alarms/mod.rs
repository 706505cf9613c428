//! CloudWatch alarms on pipeline executions (`spec.monitoring`), as an owned collection listed
//! by name prefix. They watch the `TriggeredRules` metric of the events group's FAILED and
//! SUCCEEDED rules and notify the notifications topic.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag};

use self::desired::{Alarm, Alarms, Inputs, Settings};
use self::diff::{Change, ObservedAlarm};
use super::kit::{check_owner, input};
use super::{Group, Placement, Produced, keys};
use crate::aws::{AwsResultExt, AwsSession, found};
use crate::desired::PipelineContext;
use crate::engine::{Failure, Key, Removal, Values};

const KIND: &str = "AWS::CloudWatch::Alarm";
/// `DeleteAlarms` answers `ResourceNotFound` for an alarm that is not there;
/// `ListTagsForResource` and the tag calls `ResourceNotFoundException`.
const NOT_FOUND: &[&str] = &["ResourceNotFound", "ResourceNotFoundException"];

pub struct AlarmSet {
    ctx: PipelineContext,
}

impl AlarmSet {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }
}

type Observed = BTreeMap<String, ObservedAlarm>;

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn put_alarm(aws: &AwsSession, a: &Alarm, with_tags: bool) -> Result<(), Failure> {
    let s = &a.settings;
    let dimensions = s
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    let mut request = aws
        .cloudwatch()
        .put_metric_alarm()
        .alarm_name(&a.name)
        .alarm_description(&s.description)
        .namespace(&s.namespace)
        .metric_name(&s.metric_name)
        .set_dimensions(Some(dimensions))
        .statistic(Statistic::from(s.statistic.as_str()))
        .period(s.period)
        .evaluation_periods(s.evaluation_periods)
        .threshold(s.threshold)
        .comparison_operator(ComparisonOperator::from(s.comparison_operator.as_str()))
        .treat_missing_data(&s.treat_missing_data)
        .actions_enabled(s.actions_enabled)
        .set_alarm_actions(Some(s.alarm_actions.clone()))
        .set_ok_actions(Some(s.ok_actions.clone()))
        .set_insufficient_data_actions(Some(s.insufficient_data_actions.clone()));
    // Tags given to PutMetricAlarm apply only when it creates the alarm.
    if with_tags {
        request = request.set_tags(Some(tags(&a.tags.tags)));
    }
    request.send().await.aws("cloudwatch:PutMetricAlarm")?;
    Ok(())
}

async fn delete_alarms(aws: &AwsSession, names: Vec<String>) -> Result<(), Failure> {
    if names.is_empty() {
        return Ok(());
    }
    found(
        aws.cloudwatch()
            .delete_alarms()
            .set_alarm_names(Some(names))
            .send()
            .await,
        "cloudwatch:DeleteAlarms",
        NOT_FOUND,
    )?;
    Ok(())
}

/// The settings of an alarm as DescribeAlarms gives them.
fn settings(a: &MetricAlarm) -> Settings {
    Settings {
        description: a.alarm_description().unwrap_or_default().to_string(),
        namespace: a.namespace().unwrap_or_default().to_string(),
        metric_name: a.metric_name().unwrap_or_default().to_string(),
        dimensions: a
            .dimensions()
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().to_string(),
                    d.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        statistic: a
            .statistic()
            .map(|s| s.as_str())
            .unwrap_or_default()
            .to_string(),
        period: a.period().unwrap_or_default(),
        evaluation_periods: a.evaluation_periods().unwrap_or_default(),
        threshold: a.threshold().unwrap_or_default(),
        comparison_operator: a
            .comparison_operator()
            .map(|c| c.as_str())
            .unwrap_or_default()
            .to_string(),
        treat_missing_data: a.treat_missing_data().unwrap_or_default().to_string(),
        // AWS's default when PutMetricAlarm omits it.
        actions_enabled: a.actions_enabled().unwrap_or(true),
        alarm_actions: a.alarm_actions().to_vec(),
        ok_actions: a.ok_actions().to_vec(),
        insufficient_data_actions: a.insufficient_data_actions().to_vec(),
        datapoints_to_alarm: a.datapoints_to_alarm(),
        extended_statistic: a.extended_statistic().map(str::to_string),
        unit: a.unit().map(|u| u.as_str().to_string()),
        metric_math: !a.metrics().is_empty(),
    }
}

impl Group for AlarmSet {
    type Desired = Alarms;
    type Observed = Observed;
    type Change = Change;

    fn condition(&self) -> String {
        "AlarmsReady".into()
    }

    fn kind(&self) -> &'static str {
        "CloudWatch alarms"
    }

    fn needs(&self) -> Vec<Key> {
        vec![
            keys::NOTIFICATION_TOPIC_ARN,
            keys::FAILURE_RULE_NAME,
            keys::SUCCESS_RULE_NAME,
        ]
    }

    /// With both alarms switched off the group is removed (its alarms deleted).
    fn wanted(&self) -> bool {
        let m = &self.ctx.spec.monitoring;
        m.failure_alarm || m.success_alarm
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Alarms, Failure> {
        Ok(desired::alarms(
            &self.ctx,
            &Inputs {
                topic_arn: input(inputs, keys::NOTIFICATION_TOPIC_ARN)?,
                failure_rule: input(inputs, keys::FAILURE_RULE_NAME)?,
                success_rule: input(inputs, keys::SUCCESS_RULE_NAME)?,
            },
        ))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let cloudwatch = aws.cloudwatch();
        let prefix = self.ctx.names().alarm_prefix();
        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let page = cloudwatch
                .describe_alarms()
                .alarm_name_prefix(&prefix)
                .set_next_token(token)
                .send()
                .await
                .aws("cloudwatch:DescribeAlarms")?;
            listed.extend(page.metric_alarms().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut observed = Observed::new();
        for alarm in listed {
            let (Some(name), Some(arn)) = (alarm.alarm_name(), alarm.alarm_arn()) else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            let Some(tagged) = found(
                cloudwatch
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await,
                "cloudwatch:ListTagsForResource",
                NOT_FOUND,
            )?
            else {
                continue;
            };
            let tags: BTreeMap<String, String> = tagged
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            check_owner(&self.ctx, &format!("CloudWatch alarm {name}"), &tags)?;
            observed.insert(
                name.to_string(),
                ObservedAlarm {
                    arn: arn.to_string(),
                    settings: settings(&alarm),
                    tags,
                },
            );
        }
        Ok((!observed.is_empty()).then_some(observed))
    }

    fn diff(desired: &Alarms, observed: &Observed) -> Vec<Change> {
        diff::diff(desired, observed)
    }

    fn describe(
        &self,
        desired: &Alarms,
        observed: &Observed,
        change: &Change,
    ) -> Vec<crate::engine::Drift> {
        diff::describe(desired, observed, change)
    }

    fn describe_removal(&self, observed: &Observed) -> Vec<crate::engine::Drift> {
        super::kit::deletions("CloudWatch alarm", observed.keys())
    }

    async fn create(&self, aws: &AwsSession, d: &Alarms) -> Result<Produced, Failure> {
        let none = Observed::new();
        self.update(aws, d, &none, diff::diff(d, &none)).await?;
        Ok(self.produced(&Placement::of(aws), d, &none))
    }

    async fn update(
        &self,
        aws: &AwsSession,
        d: &Alarms,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<(), Failure> {
        let cloudwatch = aws.cloudwatch();
        for change in changes {
            match change {
                Change::Create(name) => {
                    let Some(a) = d.alarms.get(&name) else {
                        continue;
                    };
                    put_alarm(aws, a, true).await?;
                }
                Change::Put(name) => {
                    let Some(a) = d.alarms.get(&name) else {
                        continue;
                    };
                    put_alarm(aws, a, false).await?;
                }
                Change::Tags { alarm, plan } => {
                    let Some(arn) = o.get(&alarm).map(|a| a.arn.clone()) else {
                        continue;
                    };
                    if !plan.set.is_empty() {
                        cloudwatch
                            .tag_resource()
                            .resource_arn(&arn)
                            .set_tags(Some(tags(&plan.set)))
                            .send()
                            .await
                            .aws("cloudwatch:TagResource")?;
                    }
                    if !plan.remove.is_empty() {
                        cloudwatch
                            .untag_resource()
                            .resource_arn(&arn)
                            .set_tag_keys(Some(plan.remove))
                            .send()
                            .await
                            .aws("cloudwatch:UntagResource")?;
                    }
                }
                Change::Delete(names) => delete_alarms(aws, names).await?,
            }
        }
        Ok(())
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        delete_alarms(aws, o.into_keys().collect()).await?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, d: &Alarms, _o: &Observed) -> Produced {
        d.alarms
            .values()
            .fold(Produced::default(), |produced, alarm| {
                produced.owns(KIND, &alarm.arn, at)
            })
    }
}
