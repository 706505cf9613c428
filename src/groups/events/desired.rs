//! Desired EventBridge rules of one pipeline, on the account's default event bus:
//!
//! - `failed` and `succeeded`: this pipeline's `CodePipeline Pipeline Execution State Change`
//!   events in that state, sent to the notifications topic as a readable message (an input
//!   transformer) with a link to the execution in the console. Their `TriggeredRules` metrics
//!   are what the alarms watch.
//! - `source` (S3 and CodeCommit sources only): a change of the source object or branch starts
//!   the pipeline, through the trigger role. A connection source needs none: the pipeline's V2
//!   trigger starts it.
//!
//! Every rule name starts with [`Names::rule_prefix`](crate::desired::names::Names::rule_prefix),
//! so the rules are found (and removed) as one collection.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::desired::PipelineContext;
use crate::desired::names::TRIGGER_RULE;
use crate::groups::kit::DesiredTags;

/// Rule purposes (the last part of each rule's name).
pub const FAILED: &str = "failed";
pub const SUCCEEDED: &str = "succeeded";
pub const SOURCE: &str = TRIGGER_RULE;

/// Every rule is enabled.
pub const ENABLED: &str = "ENABLED";
/// Target IDs.
pub const NOTIFY_TARGET: &str = "notifications";
pub const PIPELINE_TARGET: &str = "pipeline";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    /// Rule name -> rule.
    pub rules: BTreeMap<String, Rule>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    pub arn: String,
    pub description: String,
    pub event_pattern: Value,
    pub state: String,
    pub targets: Vec<Target>,
    pub tags: DesiredTags,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub id: String,
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_transformer: Option<InputTransformer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputTransformer {
    pub input_paths_map: BTreeMap<String, String>,
    pub input_template: String,
}

/// What the rules point at, known from upstream groups.
pub struct Inputs<'a> {
    pub topic_arn: &'a str,
    /// Present exactly when the source has a trigger rule.
    pub trigger_role_arn: Option<&'a str>,
}

pub fn rules(ctx: &PipelineContext, inputs: &Inputs) -> Rules {
    let names = ctx.names();
    let owner = ctx.display_name();
    let pipeline = names.base();
    let rule = |purpose: &str, description: String, event_pattern: Value, target: Target| {
        let name = names.rule(purpose);
        Rule {
            arn: ctx.arns().rule(&name),
            name,
            description,
            event_pattern,
            state: ENABLED.into(),
            targets: vec![target],
            tags: DesiredTags::of(ctx),
        }
    };
    let mut all = vec![
        rule(
            FAILED,
            format!("Failed executions of delivery pipeline {owner}: notify its topic"),
            execution_pattern(&pipeline, "FAILED"),
            notify(ctx, inputs.topic_arn),
        ),
        rule(
            SUCCEEDED,
            format!("Succeeded executions of delivery pipeline {owner}: notify its topic"),
            execution_pattern(&pipeline, "SUCCEEDED"),
            notify(ctx, inputs.topic_arn),
        ),
    ];
    if let (Some(pattern), Some(role)) = (source_pattern(ctx), inputs.trigger_role_arn) {
        all.push(rule(
            SOURCE,
            format!("Source changes of delivery pipeline {owner}: start the pipeline"),
            pattern,
            Target {
                id: PIPELINE_TARGET.into(),
                arn: ctx.arns().pipeline(),
                role_arn: Some(role.to_string()),
                input_transformer: None,
            },
        ));
    }
    Rules {
        rules: all.into_iter().map(|r| (r.name.clone(), r)).collect(),
    }
}

/// This pipeline's executions reaching `state` (`FAILED`, `SUCCEEDED`).
pub fn execution_pattern(pipeline: &str, state: &str) -> Value {
    json!({
        "source": ["aws.codepipeline"],
        "detail-type": ["CodePipeline Pipeline Execution State Change"],
        "detail": {"pipeline": [pipeline], "state": [state]}
    })
}

/// The event that starts the pipeline, for sources EventBridge watches: the S3 source object
/// created (again), or the CodeCommit branch created or moved. None for a connection source.
pub fn source_pattern(ctx: &PipelineContext) -> Option<Value> {
    let source = &ctx.spec.source;
    if let Some(s3) = &source.s3 {
        Some(json!({
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [s3.bucket]},
                "object": {"key": [s3.object_key]}
            }
        }))
    } else {
        source.code_commit.as_ref().map(|repo| {
            json!({
                "source": ["aws.codecommit"],
                "detail-type": ["CodeCommit Repository State Change"],
                "resources": [ctx.arns().code_commit_repository(&repo.repository)],
                "detail": {
                    "event": ["referenceCreated", "referenceUpdated"],
                    "referenceType": ["branch"],
                    "referenceName": [repo.branch]
                }
            })
        })
    }
}

/// The notifications topic as the target, with the event turned into a readable message.
fn notify(ctx: &PipelineContext, topic_arn: &str) -> Target {
    Target {
        id: NOTIFY_TARGET.into(),
        arn: topic_arn.to_string(),
        role_arn: None,
        input_transformer: Some(message(ctx)),
    }
}

/// `Delivery pipeline <owner>: execution <id> of CodePipeline <name> FAILED at <time>. <link>`,
/// as a JSON string (EventBridge sends a quoted template as text).
pub fn message(ctx: &PipelineContext) -> InputTransformer {
    let paths = [
        ("pipeline", "$.detail.pipeline"),
        ("execution", "$.detail.execution-id"),
        ("state", "$.detail.state"),
        ("time", "$.time"),
    ];
    let link = format!(
        "{}/codesuite/codepipeline/pipelines/<pipeline>/executions/<execution>/timeline?region={}",
        ctx.console(),
        ctx.region
    );
    InputTransformer {
        input_paths_map: paths
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        input_template: format!(
            "\"Delivery pipeline {}: execution <execution> of CodePipeline <pipeline> <state> at <time>. Details: {link}\"",
            ctx.display_name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, MINIMAL, context};

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:topic";
    const ROLE: &str = "arn:aws:iam::123456789012:role/trigger";

    fn inputs(role: Option<&'static str>) -> Inputs<'static> {
        Inputs {
            topic_arn: TOPIC,
            trigger_role_arn: role,
        }
    }

    #[test]
    fn execution_rules_match_this_pipelines_failed_and_succeeded_executions() {
        let c = context(FULL);
        let r = rules(&c, &inputs(None));
        let failed = &r.rules[&c.names().rule(FAILED)];
        assert_eq!(
            failed.event_pattern,
            json!({
                "source": ["aws.codepipeline"],
                "detail-type": ["CodePipeline Pipeline Execution State Change"],
                "detail": {"pipeline": [c.names().base()], "state": ["FAILED"]}
            })
        );
        let succeeded = &r.rules[&c.names().rule(SUCCEEDED)];
        assert_eq!(
            succeeded.event_pattern["detail"]["state"],
            json!(["SUCCEEDED"])
        );
        for rule in [failed, succeeded] {
            assert_eq!(rule.state, "ENABLED");
            assert!(rule.name.contains(&c.names().identity_tag()));
            assert!(rule.arn.ends_with(&format!(":rule/{}", rule.name)));
            assert_eq!(rule.targets.len(), 1);
            let target = &rule.targets[0];
            assert_eq!(
                (target.id.as_str(), target.arn.as_str()),
                ("notifications", TOPIC)
            );
            assert_eq!(
                target.role_arn, None,
                "SNS is reached through the topic policy"
            );
        }
        // A connection source: no trigger rule.
        assert_eq!(r.rules.len(), 2);
    }

    #[test]
    fn the_message_names_the_execution_and_links_to_it() {
        let c = context(FULL);
        let t = message(&c);
        assert_eq!(t.input_paths_map["execution"], "$.detail.execution-id");
        assert_eq!(t.input_paths_map["pipeline"], "$.detail.pipeline");
        assert_eq!(t.input_paths_map["state"], "$.detail.state");
        assert!(t.input_template.starts_with('"') && t.input_template.ends_with('"'));
        assert!(t.input_template.contains(
            "https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/<pipeline>/executions/<execution>/timeline?region=us-east-1"
        ));
        assert!(t.input_template.contains("payments/checkout"));
        // Every placeholder is an input path.
        for placeholder in t.input_template.split('<').skip(1) {
            let name = placeholder.split('>').next().unwrap_or_default();
            assert!(t.input_paths_map.contains_key(name), "{name}");
        }
        // With the placeholders filled in, the template is a JSON string.
        let filled = t
            .input_paths_map
            .keys()
            .fold(t.input_template.clone(), |s, k| {
                s.replace(&format!("<{k}>"), "x")
            });
        assert!(serde_json::from_str::<String>(&filled).is_ok(), "{filled}");
    }

    #[test]
    fn an_s3_source_is_watched_for_its_object() {
        let c = context(MINIMAL);
        let r = rules(&c, &inputs(Some(ROLE)));
        let source = &r.rules[&c.names().rule(SOURCE)];
        assert_eq!(
            source.event_pattern,
            json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": ["hello-source"]},
                    "object": {"key": ["hello.zip"]}
                }
            })
        );
        assert_eq!(
            source.targets,
            vec![Target {
                id: "pipeline".into(),
                arn: c.arns().pipeline(),
                role_arn: Some(ROLE.into()),
                input_transformer: None,
            }]
        );
    }

    #[test]
    fn a_code_commit_source_is_watched_for_its_branch() {
        let mut c = context(MINIMAL);
        c.spec.source.s3 = None;
        c.spec.source.code_commit = Some(crate::api::CodeCommitSource {
            repository: "app".into(),
            branch: "release".into(),
        });
        let r = rules(&c, &inputs(Some(ROLE)));
        assert_eq!(
            r.rules[&c.names().rule(SOURCE)].event_pattern,
            json!({
                "source": ["aws.codecommit"],
                "detail-type": ["CodeCommit Repository State Change"],
                "resources": ["arn:aws:codecommit:us-east-1:123456789012:app"],
                "detail": {
                    "event": ["referenceCreated", "referenceUpdated"],
                    "referenceType": ["branch"],
                    "referenceName": ["release"]
                }
            })
        );
    }
}
