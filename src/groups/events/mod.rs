//! EventBridge rules around the pipeline, as an owned collection listed by name prefix: the
//! FAILED and SUCCEEDED execution rules that notify the topic (and whose metrics the alarms
//! watch), and for S3 and CodeCommit sources the rule that starts the pipeline on a change.

pub mod desired;
pub mod diff;

use aws_sdk_eventbridge::types::RuleState;
use aws_smithy_types::error::operation::BuildError;

use self::desired::{FAILED, Inputs, Rules, SUCCEEDED};
use self::diff::{Change, Observed, ObservedRule, ObservedTarget};
use super::kit::{check_owner, deletions, input, retag, tags_of};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession};
use crate::desired::PipelineContext;
use crate::engine::{Drift, Failure, Key, Removal, Values};

const KIND: &str = "AWS::Events::Rule";
const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

pub struct EventRules {
    ctx: PipelineContext,
}

impl EventRules {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }
}

fn target(t: &desired::Target) -> Result<aws_sdk_eventbridge::types::Target, Failure> {
    let invalid =
        |e: BuildError| Failure::terminal("InvalidTarget", format!("target {}: {e}", t.id));
    let transformer = t
        .input_transformer
        .as_ref()
        .map(|it| {
            aws_sdk_eventbridge::types::InputTransformer::builder()
                .set_input_paths_map(Some(it.input_paths_map.clone().into_iter().collect()))
                .input_template(&it.input_template)
                .build()
        })
        .transpose()
        .map_err(invalid)?;
    aws_sdk_eventbridge::types::Target::builder()
        .id(&t.id)
        .arn(&t.arn)
        .set_role_arn(t.role_arn.clone())
        .set_input_transformer(transformer)
        .build()
        .map_err(invalid)
}

/// PutTargets and RemoveTargets answer 200 with per-target failures (target ID, code and
/// message of each): any is the call's failure.
fn entries_failed<'a>(
    operation: &str,
    rule: &str,
    count: i32,
    failures: impl Iterator<Item = (Option<&'a str>, Option<&'a str>, Option<&'a str>)>,
) -> Result<(), Failure> {
    if count == 0 {
        return Ok(());
    }
    let detail: Vec<String> = failures
        .map(|(id, code, message)| {
            format!(
                "{}: {} {}",
                id.unwrap_or_default(),
                code.unwrap_or_default(),
                message.unwrap_or_default()
            )
        })
        .collect();
    Err(Failure::retryable(
        "TargetsNotApplied",
        format!(
            "{operation} on rule {rule} failed for {count} target(s): {}",
            detail.join("; ")
        ),
    ))
}

async fn put_rule(aws: &AwsSession, r: &desired::Rule, creating: bool) -> Result<(), Failure> {
    let mut request = aws
        .events()
        .put_rule()
        .name(&r.name)
        .event_pattern(r.event_pattern.to_string())
        .state(RuleState::from(r.state.as_str()))
        .description(&r.description);
    // Tags given to PutRule apply only when it creates the rule.
    if creating {
        request = request.set_tags(Some(to_sdk(&r.tags.tags)?));
    }
    request.send().await.aws("events:PutRule")?;
    Ok(())
}

async fn put_targets(aws: &AwsSession, r: &desired::Rule) -> Result<(), Failure> {
    let targets = r
        .targets
        .iter()
        .map(target)
        .collect::<Result<Vec<_>, _>>()?;
    let out = aws
        .events()
        .put_targets()
        .rule(&r.name)
        .set_targets(Some(targets))
        .send()
        .await
        .aws("events:PutTargets")?;
    entries_failed(
        "events:PutTargets",
        &r.name,
        out.failed_entry_count(),
        out.failed_entries()
            .iter()
            .map(|e| (e.target_id(), e.error_code(), e.error_message())),
    )
}

async fn remove_targets(aws: &AwsSession, rule: &str, ids: Vec<String>) -> Result<(), Failure> {
    let Some(out) = aws
        .events()
        .remove_targets()
        .rule(rule)
        .set_ids(Some(ids))
        .send()
        .await
        .aws_tolerating("events:RemoveTargets", NOT_FOUND)?
    else {
        return Ok(());
    };
    entries_failed(
        "events:RemoveTargets",
        rule,
        out.failed_entry_count(),
        out.failed_entries()
            .iter()
            .map(|e| (e.target_id(), e.error_code(), e.error_message())),
    )
}

/// Removes a rule's targets (EventBridge refuses to delete a rule that has any), then the rule.
async fn delete_rule(aws: &AwsSession, rule: &str, targets: Vec<String>) -> Result<(), Failure> {
    if !targets.is_empty() {
        remove_targets(aws, rule, targets).await?;
    }
    aws.events()
        .delete_rule()
        .name(rule)
        .send()
        .await
        .aws_tolerating("events:DeleteRule", NOT_FOUND)?;
    Ok(())
}

fn observed_target(t: &aws_sdk_eventbridge::types::Target) -> ObservedTarget {
    ObservedTarget {
        id: t.id().to_string(),
        arn: t.arn().to_string(),
        role_arn: t.role_arn().map(str::to_string),
        input_transformer: t.input_transformer().map(|it| desired::InputTransformer {
            input_paths_map: it
                .input_paths_map()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
            input_template: it.input_template().to_string(),
        }),
        other_input: t.input().is_some() || t.input_path().is_some(),
    }
}

impl Group for EventRules {
    type Desired = Rules;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("EventRulesReady", "EventBridge rules")
    }

    fn needs(&self) -> Vec<Key> {
        let mut needs = vec![keys::NOTIFICATION_TOPIC_ARN];
        if self.ctx.has_trigger() {
            needs.push(keys::TRIGGER_ROLE_ARN);
        }
        needs
    }

    fn provides(&self) -> Vec<Key> {
        vec![keys::FAILURE_RULE_NAME, keys::SUCCESS_RULE_NAME]
    }

    fn predicted(&self, _at: &Placement) -> Values {
        let names = self.ctx.names();
        Values::from([
            (keys::FAILURE_RULE_NAME, names.rule(FAILED)),
            (keys::SUCCESS_RULE_NAME, names.rule(SUCCEEDED)),
        ])
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Rules, Failure> {
        let topic_arn = input(inputs, keys::NOTIFICATION_TOPIC_ARN)?;
        let trigger_role_arn = if self.ctx.has_trigger() {
            Some(input(inputs, keys::TRIGGER_ROLE_ARN)?)
        } else {
            None
        };
        Ok(desired::rules(
            &self.ctx,
            &Inputs {
                topic_arn,
                trigger_role_arn,
            },
        ))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let events = aws.events();
        let prefix = self.ctx.names().rule_prefix();
        // The EventBridge SDK has no paginator for ListRules: its pages are followed here.
        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let page = events
                .list_rules()
                .name_prefix(&prefix)
                .set_next_token(token)
                .send()
                .await
                .aws("events:ListRules")?;
            listed.extend(page.rules.unwrap_or_default());
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut observed = Observed::new();
        for rule in listed {
            let (Some(name), Some(arn)) = (rule.name(), rule.arn()) else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            // A rule deleted between the listing and these reads is simply not there.
            let Some(tags) = tags_of(aws, &self.ctx, arn, || async {
                Ok(events
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .aws_tolerating("events:ListTagsForResource", NOT_FOUND)?
                    .map(|tagged| from_sdk(tagged.tags())))
            })
            .await?
            else {
                continue;
            };
            check_owner(&self.ctx, &diff::words(name), &tags)?;
            // A rule has at most five targets: one page.
            let Some(targets) = events
                .list_targets_by_rule()
                .rule(name)
                .send()
                .await
                .aws_tolerating("events:ListTargetsByRule", NOT_FOUND)?
            else {
                continue;
            };
            observed.insert(
                name.to_string(),
                ObservedRule {
                    arn: arn.to_string(),
                    description: rule.description().unwrap_or_default().to_string(),
                    event_pattern: rule
                        .event_pattern()
                        .and_then(|text| serde_json::from_str(text).ok()),
                    state: rule
                        .state()
                        .map(|s| s.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    targets: targets.targets().iter().map(observed_target).collect(),
                    tags,
                },
            );
        }
        Ok((!observed.is_empty()).then_some(observed))
    }

    fn removal(&self, observed: &Observed) -> Option<Vec<Drift>> {
        Some(deletions(diff::RULE, observed.keys()))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let events = &aws.events();
        let wanted = |name: &str| d.rules.get(name);
        for change in changes {
            match change {
                Change::Create(name) => {
                    let Some(r) = wanted(&name) else { continue };
                    put_rule(aws, r, true).await?;
                    put_targets(aws, r).await?;
                }
                Change::Rule(name) => {
                    let Some(r) = wanted(&name) else { continue };
                    put_rule(aws, r, false).await?;
                }
                Change::PutTargets(name) => {
                    let Some(r) = wanted(&name) else { continue };
                    put_targets(aws, r).await?;
                }
                Change::RemoveTargets { rule, ids } => remove_targets(aws, &rule, ids).await?,
                Change::Tags { rule, plan } => {
                    let Some(arn) = o.get(&rule).map(|r| r.arn.as_str()) else {
                        continue;
                    };
                    retag(events, arn, plan).await?;
                }
                Change::Delete { rule, targets } => delete_rule(aws, &rule, targets).await?,
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        for (name, rule) in o {
            let targets = rule.targets.into_iter().map(|t| t.id).collect();
            delete_rule(aws, &name, targets).await?;
        }
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, d: &Rules, _o: &Observed) -> Produced {
        let names = self.ctx.names();
        d.rules.values().fold(
            Produced::default()
                .value(keys::FAILURE_RULE_NAME, names.rule(FAILED))
                .value(keys::SUCCESS_RULE_NAME, names.rule(SUCCEEDED)),
            |produced, rule| produced.owns(KIND, &rule.arn, at),
        )
    }
}
