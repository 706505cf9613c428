//! End to end, the EventBridge rules and CloudWatch alarms around the pipeline: every rule read
//! back (pattern, targets, input transformer, role, tags), the FAILED rule matching a real
//! CodePipeline "Pipeline Execution State Change" event through EventBridge's own
//! TestEventPattern, the alarms read back field by field; a resync with nothing to do reads
//! exactly and writes nothing; hand edits are one write each; an alarm switched off is one
//! DeleteAlarms; a source that no longer needs its trigger rule loses it (and its role);
//! deletion leaves no rule and no alarm (listed). Counts come from the emulator's record.

use std::collections::BTreeMap;

use delivery_operator::desired::PipelineContext;
use delivery_operator::groups::alarms::desired::{self as alarms, Alarm};
use delivery_operator::groups::events::desired::{self as events, Rule};
use delivery_operator::groups::roles::desired as roles;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::emulator::{self, count};
use crate::support::reconcile_and_wait;
use crate::support::{
    ACCOUNT, Operator, aws_config, counts, ctx_of, example, gone, s3, source_bucket, start,
    wait_ready,
};

/// EventBridge and CloudWatch calls of `kind` the emulator recorded for this operator after
/// request `since`.
async fn calls(operator: &Operator, kind: &str, since: u64) -> BTreeMap<String, f64> {
    let calls: Vec<_> = emulator::calls_after(&operator.access_key, since)
        .await
        .into_iter()
        .filter(|c| c.service == "EventBridge" || c.service == "CloudWatch")
        .collect();
    count(&calls, kind)
}

/// Every call of `kind` (any service) after request `since`.
async fn all_calls(operator: &Operator, kind: &str, since: u64) -> BTreeMap<String, f64> {
    count(
        &emulator::calls_after(&operator.access_key, since).await,
        kind,
    )
}

fn desired_rules(ctx: &PipelineContext) -> events::Rules {
    let arns = ctx.arns();
    let topic = arns.notification_topic();
    let role = arns.pipeline_role(roles::TRIGGER);
    events::rules(
        ctx,
        &events::Inputs {
            topic_arn: &topic,
            trigger_role_arn: ctx.has_trigger().then_some(role.as_str()),
        },
    )
}

fn desired_alarms(ctx: &PipelineContext) -> alarms::Alarms {
    let names = ctx.names();
    alarms::alarms(
        ctx,
        &alarms::Inputs {
            topic_arn: &ctx.arns().notification_topic(),
            failure_rule: &names.rule(events::FAILED),
            success_rule: &names.rule(events::SUCCEEDED),
        },
    )
}

pub(crate) async fn rule_names(client: &aws_sdk_eventbridge::Client, prefix: &str) -> Vec<String> {
    // ListRules has no paginator in the SDK: follow NextToken by hand.
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_rules()
            .name_prefix(prefix)
            .set_next_token(token)
            .send()
            .await
            .expect("list rules");
        names.extend(
            page.rules()
                .iter()
                .filter_map(|r| r.name().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return names;
        }
    }
}

async fn alarm_names(client: &aws_sdk_cloudwatch::Client, prefix: &str) -> Vec<String> {
    client
        .describe_alarms()
        .alarm_name_prefix(prefix)
        .send()
        .await
        .expect("describe alarms")
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_string))
        .collect()
}

async fn assert_rule_matches(client: &aws_sdk_eventbridge::Client, want: &Rule) {
    let name = &want.name;
    let got = client
        .describe_rule()
        .name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("rule {name}: {e:?}"));
    assert_eq!(got.arn(), Some(want.arn.as_str()), "{name}");
    assert_eq!(got.state().map(|s| s.as_str()), Some("ENABLED"), "{name}");
    assert_eq!(got.description(), Some(want.description.as_str()), "{name}");
    let pattern: Value =
        serde_json::from_str(got.event_pattern().expect("pattern")).expect("pattern is JSON");
    assert_eq!(pattern, want.event_pattern, "{name}");
    // One page holds them all: a rule has at most 5 targets (EventBridge quotas).
    let targets = client
        .list_targets_by_rule()
        .rule(name)
        .send()
        .await
        .expect("targets");
    assert_eq!(targets.targets().len(), want.targets.len(), "{name}");
    for (got, want) in targets.targets().iter().zip(&want.targets) {
        assert_eq!((got.id(), got.arn()), (want.id.as_str(), want.arn.as_str()));
        assert_eq!(got.role_arn(), want.role_arn.as_deref(), "{name}");
        assert_eq!(got.input(), None);
        let transformer = got.input_transformer().map(|t| {
            (
                t.input_paths_map()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
                t.input_template().to_string(),
            )
        });
        assert_eq!(
            transformer,
            want.input_transformer
                .as_ref()
                .map(|t| (t.input_paths_map.clone(), t.input_template.clone())),
            "{name}"
        );
    }
    let tags: BTreeMap<String, String> = client
        .list_tags_for_resource()
        .resource_arn(&want.arn)
        .send()
        .await
        .expect("rule tags")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags, want.tags.tags, "{name}");
}

async fn assert_alarm_matches(client: &aws_sdk_cloudwatch::Client, want: &Alarm) {
    let name = &want.name;
    let got = client
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .expect("describe alarm");
    let [got] = got.metric_alarms() else {
        panic!("alarm {name}: {:?}", got.metric_alarms())
    };
    let s = &want.settings;
    assert_eq!(got.alarm_arn(), Some(want.arn.as_str()));
    assert_eq!(got.namespace(), Some("AWS/Events"));
    assert_eq!(got.metric_name(), Some("TriggeredRules"));
    let dimensions: Vec<(&str, &str)> = got
        .dimensions()
        .iter()
        .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
        .collect();
    let rule = &s.dimensions["RuleName"];
    assert_eq!(dimensions, vec![("RuleName", rule.as_str())], "{name}");
    assert_eq!(got.statistic().map(|s| s.as_str()), Some("Sum"));
    assert_eq!(got.period(), Some(300));
    assert_eq!(got.evaluation_periods(), Some(1));
    assert_eq!(got.threshold(), Some(1.0));
    assert_eq!(
        got.comparison_operator().map(|c| c.as_str()),
        Some("GreaterThanOrEqualToThreshold")
    );
    assert_eq!(got.treat_missing_data(), Some("notBreaching"));
    assert_eq!(got.alarm_actions(), s.alarm_actions.as_slice(), "{name}");
    assert_eq!(got.ok_actions(), s.ok_actions.as_slice(), "{name}");
    assert_eq!(got.alarm_description(), Some(s.description.as_str()));
    let tags: BTreeMap<String, String> = client
        .list_tags_for_resource()
        .resource_arn(&want.arn)
        .send()
        .await
        .expect("alarm tags")
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    assert_eq!(tags, want.tags.tags, "{name}");
}

/// A CodePipeline "Pipeline Execution State Change" event of `pipeline` in `state`, as the
/// CodePipeline User Guide ("Monitoring CodePipeline events") shows it.
fn execution_event(pipeline: &str, state: &str) -> String {
    json!({
        "version": "0",
        "id": "01234567-0123-0123-0123-012345678901",
        "detail-type": "CodePipeline Pipeline Execution State Change",
        "source": "aws.codepipeline",
        "account": ACCOUNT,
        "time": "2020-01-24T22:03:44Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:codepipeline:us-east-1:{ACCOUNT}:{pipeline}")],
        "detail": {
            "pipeline": pipeline,
            "execution-id": "12345678-1234-5678-abcd-12345678abcd",
            "start-time": "2020-01-24T22:02:44.483Z",
            "execution-trigger": {
                "trigger-type": "StartPipelineExecution",
                "trigger-detail": format!("arn:aws:sts::{ACCOUNT}:assumed-role/Admin/me")
            },
            "state": state,
            "version": 1.0,
            "pipeline-execution-attempt": 1.0
        }
    })
    .to_string()
}

async fn matches(client: &aws_sdk_eventbridge::Client, rule: &Rule, event: &str) -> bool {
    client
        .test_event_pattern()
        .event_pattern(rule.event_pattern.to_string())
        .event(event)
        .send()
        .await
        .expect("test event pattern")
        .result()
}

#[tokio::test]
async fn rules_and_alarms_read_back_and_change_minimally() {
    let (ns, operator, api) = start("e2e-events").await;
    let dp = example("minimal.yaml", &ns, "watched");
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "watched", 1).await;
    let config = aws_config().await;
    let eventbridge = aws_sdk_eventbridge::Client::new(&config);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let names = ctx.names();

    // Rules: the two execution rules and, for the S3 source, the trigger.
    let rules = desired_rules(&ctx);
    assert_eq!(rules.rules.len(), 3);
    for rule in rules.rules.values() {
        assert_rule_matches(&eventbridge, rule).await;
    }
    let source = &rules.rules[&names.rule(events::SOURCE)];
    assert_eq!(
        source.targets[0].role_arn.as_deref(),
        Some(ctx.arns().pipeline_role(roles::TRIGGER).as_str())
    );
    let mut listed = rule_names(&eventbridge, &names.rule_prefix()).await;
    listed.sort();
    assert_eq!(listed, rules.rules.keys().cloned().collect::<Vec<_>>());

    // The FAILED rule matches a FAILED execution of this pipeline, not a SUCCEEDED one, nor
    // another pipeline's failure.
    let failed = &rules.rules[&names.rule(events::FAILED)];
    let succeeded = &rules.rules[&names.rule(events::SUCCEEDED)];
    let pipeline = names.base();
    assert!(matches(&eventbridge, failed, &execution_event(&pipeline, "FAILED")).await);
    assert!(
        !matches(
            &eventbridge,
            failed,
            &execution_event(&pipeline, "SUCCEEDED")
        )
        .await
    );
    assert!(!matches(&eventbridge, failed, &execution_event("another", "FAILED")).await);
    assert!(
        matches(
            &eventbridge,
            succeeded,
            &execution_event(&pipeline, "SUCCEEDED")
        )
        .await
    );

    // Alarms, field by field.
    let wanted_alarms = desired_alarms(&ctx);
    assert_eq!(wanted_alarms.alarms.len(), 2);
    for alarm in wanted_alarms.alarms.values() {
        assert_alarm_matches(&cloudwatch, alarm).await;
    }
    let inventory = &ready.status.as_ref().expect("status").inventory;
    let of_kind = |kind: &str| inventory.iter().filter(|i| i.kind == kind).count();
    assert_eq!(
        (
            of_kind("AWS::Events::Rule"),
            of_kind("AWS::CloudWatch::Alarm")
        ),
        (3, 2)
    );

    // Nothing to do: exact reads, no writes anywhere.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "watched").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(
        calls(&operator, "read", since).await,
        // Tags come from the account's one tag read of the reconcile (tag:GetResources).
        counts(&[
            ("EventBridge:ListRules", 1.0),
            ("EventBridge:ListTargetsByRule", 3.0),
            ("CloudWatch:DescribeAlarms", 1.0),
        ])
    );

    // Hand edits: a disabled rule, a lost target, a changed threshold: one write each.
    reconcile_and_wait(&api, "watched").await;
    eventbridge
        .disable_rule()
        .name(&failed.name)
        .send()
        .await
        .expect("disable");
    eventbridge
        .remove_targets()
        .rule(&succeeded.name)
        .ids(events::NOTIFY_TARGET)
        .send()
        .await
        .expect("remove target");
    let failure_alarm = &wanted_alarms.alarms[&names.alarm(alarms::FAILED)];
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&failure_alarm.name)
        .namespace("AWS/Events")
        .metric_name("TriggeredRules")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(300)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(
            aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
        )
        .send()
        .await
        .expect("edit alarm");
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "watched").await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[
            ("EventBridge:PutRule", 1.0),
            ("EventBridge:PutTargets", 1.0),
            ("CloudWatch:PutMetricAlarm", 1.0),
        ])
    );
    assert_rule_matches(&eventbridge, failed).await;
    assert_rule_matches(&eventbridge, succeeded).await;
    assert_alarm_matches(&cloudwatch, failure_alarm).await;

    // The success alarm switched off: exactly one DeleteAlarms, nothing else written.
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"monitoring": {"successAlarm": false}}})),
    )
    .await
    .expect("patch monitoring");
    wait_ready(&api, "watched", 2).await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[("CloudWatch:DeleteAlarms", 1.0)])
    );
    assert_eq!(
        alarm_names(&cloudwatch, &names.alarm_prefix()).await,
        vec![names.alarm(alarms::FAILED)]
    );

    // Deletion leaves no rule and no alarm.
    api.delete("watched", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "watched").await;
    assert_eq!(
        rule_names(&eventbridge, &names.rule_prefix()).await,
        Vec::<String>::new()
    );
    assert_eq!(
        alarm_names(&cloudwatch, &names.alarm_prefix()).await,
        Vec::<String>::new()
    );
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn a_source_that_starts_the_pipeline_itself_loses_the_trigger_rule_and_role() {
    let (ns, operator, api) = start("e2e-trigger").await;
    let dp = example("minimal.yaml", &ns, "moved");
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "moved", 1).await;
    let config = aws_config().await;
    let eventbridge = aws_sdk_eventbridge::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let names = ctx.names();
    let trigger_role = names.role(roles::TRIGGER);
    iam.get_role()
        .role_name(&trigger_role)
        .send()
        .await
        .expect("trigger role exists");

    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "moved",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"source": {
            "s3": null,
            "connection": {
                "connectionArn": format!("arn:aws:codeconnections:us-east-1:{ACCOUNT}:connection/0a1b2c3d-1111-2222-3333-444455556666"),
                "repository": "acme/moved",
                "branch": "main"
            }
        }}})),
    )
    .await
    .expect("switch the source");
    wait_ready(&api, "moved", 2).await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[
            // The trigger rule: its target, then the rule.
            ("EventBridge:RemoveTargets", 1.0),
            ("EventBridge:DeleteRule", 1.0),
            // The trigger role: its policy, then the role; the pipeline role's source
            // permissions change with the source.
            ("IAM:DeleteRolePolicy", 1.0),
            ("IAM:DeleteRole", 1.0),
            ("IAM:PutRolePolicy", 1.0),
            // The pipeline's source action (restartExecutionOnUpdate: a new execution).
            ("CodePipeline:UpdatePipeline", 1.0),
            ("CodePipeline:StartPipelineExecution", 1.0),
        ])
    );
    let mut left = rule_names(&eventbridge, &names.rule_prefix()).await;
    left.sort();
    assert_eq!(
        left,
        vec![names.rule(events::FAILED), names.rule(events::SUCCEEDED)]
    );
    assert!(
        iam.get_role()
            .role_name(&trigger_role)
            .send()
            .await
            .is_err(),
        "the trigger role is gone"
    );
    operator.assert_calls_match_record().await;
}

async fn upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .expect("upload");
}

/// What a target received: the transformed text (a quoted template arrives as a JSON string).
fn received(delivery: &Value) -> String {
    let input = delivery["input"].as_str().unwrap_or_default();
    serde_json::from_str::<String>(input).unwrap_or_else(|_| input.to_string())
}

#[tokio::test]
async fn an_upload_starts_the_pipeline_and_its_failure_reaches_the_topic() {
    let (ns, _operator, api) = start("e2e-delivery").await;
    let s3 = s3(&aws_config().await);
    let bucket = source_bucket(&s3, true, true).await;
    upload(&s3, &bucket, "app.zip", "v1").await;
    let mut dp = example("minimal.yaml", &ns, "notified");
    dp.spec.source.s3 = Some(delivery_operator::api::S3Source {
        bucket: bucket.clone(),
        object_key: "app.zip".into(),
    });
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "notified", 1).await;
    let names = ctx.names();
    let pipeline = names.base();
    let rules = desired_rules(&ctx);
    let (source, failed, succeeded) = (
        names.rule(events::SOURCE),
        names.rule(events::FAILED),
        names.rule(events::SUCCEEDED),
    );

    // Another object of the bucket starts nothing; the source object does, through the rule's
    // role, as a CloudWatchEvent trigger.
    upload(&s3, &bucket, "other.zip", "x").await;
    upload(&s3, &bucket, "app.zip", "v2").await;
    let deliveries = emulator::event_deliveries(&source).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["delivered"], true, "{deliveries:#?}");
    assert_eq!(deliveries[0]["detailType"], "Object Created");
    assert_eq!(deliveries[0]["targetArn"], json!(ctx.arns().pipeline()));
    let executions = emulator::pipeline_executions(&pipeline).await;
    let started = executions
        .iter()
        .find(|e| e["trigger"]["triggerType"] == "CloudWatchEvent")
        .unwrap_or_else(|| panic!("an execution started by the rule: {executions:#?}"));
    assert_eq!(
        started["trigger"]["triggerDetail"],
        json!(rules.rules[&source].arn)
    );
    let execution = started["pipelineExecutionId"]
        .as_str()
        .expect("execution ID")
        .to_string();

    // The execution fails: the FAILED rule sends the readable message to the topic (which its
    // policy and the key's let EventBridge publish to); the SUCCEEDED rule sends nothing.
    emulator::pipeline_execution(json!({
        "pipeline": pipeline,
        "executionId": execution,
        "status": "Failed",
    }))
    .await;
    let deliveries = emulator::event_deliveries(&failed).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    let delivery = &deliveries[0];
    assert_eq!(delivery["delivered"], true, "{delivery:#}");
    assert_eq!(
        delivery["targetArn"],
        json!(ctx.arns().notification_topic())
    );
    let message = received(delivery);
    let prefix = format!(
        "Delivery pipeline {ns}/notified: execution {execution} of CodePipeline {pipeline} FAILED at "
    );
    assert!(message.starts_with(&prefix), "{message}");
    assert!(
        message.ends_with(&format!(
            ". Details: https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}/executions/{execution}/timeline?region=us-east-1"
        )),
        "{message}"
    );
    assert_eq!(
        emulator::event_deliveries(&succeeded).await,
        Vec::<Value>::new()
    );

    api.delete("notified", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "notified").await;
}
