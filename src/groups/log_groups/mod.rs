//! CloudWatch log groups, as an owned collection per scope: the pipeline account's build and
//! scan log groups, and each environment's application log group in its own account.

pub mod desired;
pub mod diff;

use self::desired::LogGroups as Desired;
use self::diff::{Change, Observed, ObservedLogGroup};
use super::kit::{check_owner, deletions, input, retag, tags_of};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::{AwsResultExt, AwsSession};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Drift, Failure, Key, Removal, Values};

const KIND: &str = "AWS::Logs::LogGroup";

pub struct LogGroups {
    ctx: PipelineContext,
    /// None: the pipeline account's log groups.
    env: Option<Env>,
}

impl LogGroups {
    pub fn pipeline(ctx: &PipelineContext) -> Self {
        Self {
            ctx: ctx.clone(),
            env: None,
        }
    }

    pub fn environment(ctx: &PipelineContext, env: Env) -> Self {
        Self {
            ctx: ctx.clone(),
            env: Some(env),
        }
    }

    fn prefix(&self) -> String {
        self.ctx
            .names()
            .log_group_prefix(self.env.map_or("pipeline", Env::name))
    }
}

/// This scope's log groups (`prefix`), from one `DescribeLogGroups` per reconcile, account and
/// region for every scope of the pipeline (the environments in the pipeline's account share it).
async fn list(aws: &AwsSession, ctx: &PipelineContext, prefix: &str) -> Result<Observed, Failure> {
    let logs = aws.logs();
    let root = ctx.names().log_group_root();
    let all = aws
        .once_per_reconcile(&format!("logs:DescribeLogGroups {root}"), || async {
            let groups: Vec<_> = logs
                .describe_log_groups()
                .log_group_name_prefix(&root)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .aws("logs:DescribeLogGroups")?;
            Ok(groups)
        })
        .await?;
    let mut observed = Observed::new();
    for g in all.iter() {
        let Some(name) = g.log_group_name().filter(|n| n.starts_with(prefix)) else {
            continue;
        };
        // `arn` ends in `:*`; tagging takes the ARN without it.
        let arn = g
            .log_group_arn()
            .map(str::to_string)
            .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
            .unwrap_or_default();
        let tags = tags_of(aws, ctx, &arn, || async {
            Ok(Some(
                logs.list_tags_for_resource()
                    .resource_arn(&arn)
                    .send()
                    .await
                    .aws("logs:ListTagsForResource")?
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ))
        })
        .await?
        .unwrap_or_default();
        observed.insert(
            name.to_string(),
            ObservedLogGroup {
                arn,
                retention_days: g.retention_in_days(),
                kms_key_arn: g.kms_key_id().map(str::to_string),
                tags,
            },
        );
    }
    Ok(observed)
}

async fn put_retention(aws: &AwsSession, name: &str, days: i32) -> Result<(), Failure> {
    aws.logs()
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .aws("logs:PutRetentionPolicy")?;
    Ok(())
}

async fn delete_group(aws: &AwsSession, name: &str) -> Result<(), Failure> {
    aws.logs()
        .delete_log_group()
        .log_group_name(name)
        .send()
        .await
        .aws_tolerating("logs:DeleteLogGroup", &["ResourceNotFoundException"])?;
    Ok(())
}

impl Group for LogGroups {
    type Desired = Desired;
    type Observed = Observed;

    fn names(&self) -> Names {
        let kind = match self.env {
            None => "build and scan log groups",
            Some(_) => "application log group",
        };
        Names::new("LogGroupsReady", kind)
    }

    fn environment(&self) -> Option<Env> {
        self.env
    }

    fn needs(&self) -> Vec<Key> {
        match self.env {
            None => vec![keys::KMS_KEY_ARN],
            Some(_) => Vec::new(),
        }
    }

    fn provides(&self) -> Vec<Key> {
        match self.env {
            None => vec![keys::BUILD_LOG_GROUP, keys::SCAN_LOG_GROUP],
            Some(env) => vec![keys::APPLICATION_LOG_GROUP.scoped(env.name())],
        }
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Desired, Failure> {
        Ok(match self.env {
            None => desired::pipeline(&self.ctx, input(inputs, keys::KMS_KEY_ARN)?),
            Some(env) => desired::environment(&self.ctx, env),
        })
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let observed = list(aws, &self.ctx, &self.prefix()).await?;
        for (name, g) in &observed {
            check_owner(&self.ctx, &diff::words(name), &g.tags)?;
        }
        Ok((!observed.is_empty()).then_some(observed))
    }

    fn removal(&self, observed: &Observed) -> Option<Vec<Drift>> {
        Some(deletions(diff::LOG_GROUP, observed.keys()))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let logs = &aws.logs();
        for change in changes {
            match change {
                Change::Create(name) => {
                    let group = &d.groups[&name];
                    logs.create_log_group()
                        .log_group_name(&name)
                        .set_kms_key_id(group.kms_key_arn.clone())
                        .set_tags(Some(d.tags.tags.clone().into_iter().collect()))
                        .send()
                        .await
                        // Made by an interrupted earlier attempt: its retention is set below.
                        .aws_tolerating(
                            "logs:CreateLogGroup",
                            &["ResourceAlreadyExistsException"],
                        )?;
                    put_retention(aws, &name, group.retention_days).await?;
                }
                Change::Retention(name) => {
                    put_retention(aws, &name, d.groups[&name].retention_days).await?;
                }
                Change::Key(name) => {
                    logs.associate_kms_key()
                        .log_group_name(&name)
                        .set_kms_key_id(d.groups[&name].kms_key_arn.clone())
                        .send()
                        .await
                        .aws("logs:AssociateKmsKey")?;
                }
                Change::Tags(name, plan) => {
                    let arn = o.get(&name).map_or("", |g| g.arn.as_str());
                    retag(logs, arn, plan).await?;
                }
                Change::Delete(name) => delete_group(aws, &name).await?,
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        for name in o.keys() {
            delete_group(aws, name).await?;
        }
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, d: &Desired, _o: &Observed) -> Produced {
        let mut produced = Produced::default();
        for name in d.groups.keys() {
            let key = match (self.env, name.strip_prefix(&d.prefix)) {
                (None, Some(desired::BUILD)) => Some(keys::BUILD_LOG_GROUP),
                (None, Some(desired::SCAN)) => Some(keys::SCAN_LOG_GROUP),
                (Some(env), Some(desired::APPLICATION)) => {
                    Some(keys::APPLICATION_LOG_GROUP.scoped(env.name()))
                }
                _ => None,
            };
            if let Some(key) = key {
                produced = produced.value(key, name);
            }
            let arn = format!(
                "arn:{}:logs:{}:{}:log-group:{name}",
                at.partition, at.region, at.account_id
            );
            produced = produced.owns(KIND, arn, at);
        }
        produced
    }
}
