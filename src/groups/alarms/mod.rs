//! CloudWatch alarms on pipeline executions (`spec.monitoring`), as an owned collection listed
//! by name prefix. They watch the `TriggeredRules` metric of the events group's FAILED and
//! SUCCEEDED rules and notify the notifications topic.

pub mod desired;
pub mod diff;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic};

use self::desired::{Alarm, Alarms, Inputs, Settings};
use self::diff::{ALARM, Change, Observed, ObservedAlarm};
use super::kit::{check_owner, deletions, input, retag, tags_of};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession};
use crate::desired::PipelineContext;
use crate::engine::{Drift, Failure, Key, Removal, Values};

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

async fn put_alarm(aws: &AwsSession, a: &Alarm, creating: bool) -> Result<(), Failure> {
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
    if creating {
        request = request.set_tags(Some(to_sdk(&a.tags.tags)?));
    }
    request.send().await.aws("cloudwatch:PutMetricAlarm")?;
    Ok(())
}

async fn delete_alarms(aws: &AwsSession, names: Vec<String>) -> Result<(), Failure> {
    if names.is_empty() {
        return Ok(());
    }
    aws.cloudwatch()
        .delete_alarms()
        .set_alarm_names(Some(names))
        .send()
        .await
        .aws_tolerating("cloudwatch:DeleteAlarms", NOT_FOUND)?;
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

    fn names(&self) -> Names {
        Names::new("AlarmsReady", "CloudWatch alarms")
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
        let pages: Vec<_> = cloudwatch
            .describe_alarms()
            .alarm_name_prefix(&prefix)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .aws("cloudwatch:DescribeAlarms")?;
        let mut observed = Observed::new();
        for alarm in pages.iter().flat_map(|page| page.metric_alarms()) {
            let (Some(name), Some(arn)) = (alarm.alarm_name(), alarm.alarm_arn()) else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            let Some(tags) = tags_of(aws, &self.ctx, arn, || async {
                Ok(cloudwatch
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .aws_tolerating("cloudwatch:ListTagsForResource", NOT_FOUND)?
                    .map(|tagged| from_sdk(tagged.tags())))
            })
            .await?
            else {
                continue;
            };
            check_owner(&self.ctx, &diff::words(name), &tags)?;
            observed.insert(
                name.to_string(),
                ObservedAlarm {
                    arn: arn.to_string(),
                    settings: settings(alarm),
                    tags,
                },
            );
        }
        Ok((!observed.is_empty()).then_some(observed))
    }

    fn removal(&self, observed: &Observed) -> Option<Vec<Drift>> {
        Some(deletions(ALARM, observed.keys()))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let cloudwatch = &aws.cloudwatch();
        for change in changes {
            let creating = matches!(change, Change::Create(_));
            match change {
                Change::Create(name) | Change::Put(name) => {
                    if let Some(a) = d.alarms.get(&name) {
                        put_alarm(aws, a, creating).await?;
                    }
                }
                Change::Tags { alarm, plan } => {
                    let Some(arn) = o.get(&alarm).map(|a| a.arn.as_str()) else {
                        continue;
                    };
                    retag(cloudwatch, arn, plan).await?;
                }
                Change::Delete(names) => delete_alarms(aws, names).await?,
            }
        }
        Ok(None)
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
