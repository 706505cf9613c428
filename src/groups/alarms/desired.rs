//! Desired CloudWatch alarms on pipeline executions (`spec.monitoring`). They watch metrics
//! that are really published: EventBridge publishes `AWS/Events` `TriggeredRules` per rule
//! (dimension `RuleName`), so the failure alarm watches the rule matching this pipeline's
//! FAILED executions and the success alarm the SUCCEEDED one. Both notify the notifications
//! topic; the failure alarm also tells it when it is back to OK.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::desired::PipelineContext;
use crate::groups::kit::DesiredTags;

/// Alarm purposes (the last part of each alarm's name).
pub const FAILED: &str = "failed";
pub const SUCCEEDED: &str = "succeeded";

pub const NAMESPACE: &str = "AWS/Events";
pub const METRIC: &str = "TriggeredRules";
pub const DIMENSION: &str = "RuleName";
/// Five minutes: an execution's event counts once in the period it arrives in.
pub const PERIOD_SECONDS: i32 = 300;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarms {
    /// Alarm name -> alarm.
    pub alarms: BTreeMap<String, Alarm>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    pub name: String,
    pub arn: String,
    #[serde(flatten)]
    pub settings: Settings,
    pub tags: DesiredTags,
}

/// Everything PutMetricAlarm sets, as DescribeAlarms returns it: any difference is one
/// PutMetricAlarm, which replaces the alarm's configuration whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub description: String,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: String,
    pub period: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison_operator: String,
    pub treat_missing_data: String,
    pub actions_enabled: bool,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    /// Not set by the operator: any value found is drift.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_statistic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A metric-math alarm (`Metrics`) found under our name.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metric_math: bool,
}

/// What the alarms need from upstream groups.
pub struct Inputs<'a> {
    pub topic_arn: &'a str,
    pub failure_rule: &'a str,
    pub success_rule: &'a str,
}

pub fn alarms(ctx: &PipelineContext, inputs: &Inputs) -> Alarms {
    let names = ctx.names();
    let owner = ctx.display_name();
    let pipeline = names.base();
    let topic = vec![inputs.topic_arn.to_string()];
    let monitoring = &ctx.spec.monitoring;
    let mut all = Vec::new();
    if monitoring.failure_alarm {
        all.push((
            FAILED,
            inputs.failure_rule,
            format!(
                "Delivery pipeline {owner}: an execution of CodePipeline pipeline {pipeline} failed in the last 5 minutes (EventBridge rule {rule} matched its FAILED event; the notifications topic also got the execution ID and a console link). What to do: open the failed execution in the CodePipeline console, find the failed stage and action and read its details and logs (build and scan logs are in CloudWatch Logs under {logs}), fix the cause, then release the change again. The alarm returns to OK after 5 minutes without a failure.",
                rule = inputs.failure_rule,
                logs = names.log_group_prefix("pipeline"),
            ),
            topic.clone(),
        ));
    }
    if monitoring.success_alarm {
        all.push((
            SUCCEEDED,
            inputs.success_rule,
            format!(
                "Delivery pipeline {owner}: an execution of CodePipeline pipeline {pipeline} succeeded in the last 5 minutes (EventBridge rule {rule} matched its SUCCEEDED event): a new version passed every stage and runs in production. Nothing to do if the release was expected; otherwise check the execution's source revision and approval in the CodePipeline console.",
                rule = inputs.success_rule,
            ),
            Vec::new(),
        ));
    }
    Alarms {
        alarms: all
            .into_iter()
            .map(|(purpose, rule, description, ok_actions)| {
                let name = names.alarm(purpose);
                let alarm = Alarm {
                    arn: ctx.arns().alarm(&name),
                    name: name.clone(),
                    settings: Settings {
                        description,
                        namespace: NAMESPACE.into(),
                        metric_name: METRIC.into(),
                        dimensions: BTreeMap::from([(DIMENSION.to_string(), rule.to_string())]),
                        statistic: "Sum".into(),
                        period: PERIOD_SECONDS,
                        evaluation_periods: 1,
                        threshold: 1.0,
                        comparison_operator: "GreaterThanOrEqualToThreshold".into(),
                        treat_missing_data: "notBreaching".into(),
                        actions_enabled: true,
                        alarm_actions: topic.clone(),
                        ok_actions,
                        ..Settings::default()
                    },
                    tags: DesiredTags::of(ctx),
                };
                (name, alarm)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:topic";

    fn inputs() -> Inputs<'static> {
        Inputs {
            topic_arn: TOPIC,
            failure_rule: "rule-failed",
            success_rule: "rule-succeeded",
        }
    }

    #[test]
    fn each_alarm_watches_its_rules_triggered_count() {
        let c = context(FULL);
        let a = alarms(&c, &inputs());
        assert_eq!(a.alarms.len(), 2);
        let failed = &a.alarms[&c.names().alarm(FAILED)];
        let succeeded = &a.alarms[&c.names().alarm(SUCCEEDED)];
        for (alarm, rule) in [(failed, "rule-failed"), (succeeded, "rule-succeeded")] {
            let s = &alarm.settings;
            assert_eq!(
                (s.namespace.as_str(), s.metric_name.as_str()),
                ("AWS/Events", "TriggeredRules")
            );
            assert_eq!(
                s.dimensions,
                BTreeMap::from([("RuleName".into(), rule.into())])
            );
            assert_eq!(
                (s.statistic.as_str(), s.period, s.evaluation_periods),
                ("Sum", 300, 1)
            );
            assert_eq!(s.threshold, 1.0);
            assert_eq!(s.comparison_operator, "GreaterThanOrEqualToThreshold");
            assert_eq!(s.treat_missing_data, "notBreaching");
            assert_eq!(s.alarm_actions, vec![TOPIC.to_string()]);
            assert!(s.actions_enabled && s.insufficient_data_actions.is_empty());
            assert!(alarm.name.contains(&c.names().identity_tag()));
            assert!(alarm.arn.ends_with(&format!(":alarm:{}", alarm.name)));
            assert!(s.description.len() <= 1024, "{}", s.description.len());
            assert!(s.description.contains(rule) && s.description.contains("payments/checkout"));
        }
        assert_eq!(failed.settings.ok_actions, vec![TOPIC.to_string()]);
        assert!(succeeded.settings.ok_actions.is_empty());
        assert!(failed.settings.description.contains("What to do"));
    }

    #[test]
    fn each_alarm_follows_its_switch() {
        let mut c = context(FULL);
        c.spec.monitoring.success_alarm = false;
        let a = alarms(&c, &inputs());
        assert_eq!(
            a.alarms.keys().cloned().collect::<Vec<_>>(),
            vec![c.names().alarm(FAILED)]
        );
        c.spec.monitoring.failure_alarm = false;
        assert!(alarms(&c, &inputs()).alarms.is_empty());
    }
}
