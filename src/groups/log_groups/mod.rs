//! CloudWatch log groups, as an owned collection per scope: the pipeline account's build and
//! scan log groups, and each environment's application log group in its own account.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use self::desired::LogGroups as Desired;
use self::diff::{Change, ObservedLogGroup};
use super::kit::check_owner;
use super::{Group, Placement, Produced, keys};
use crate::aws::{AwsResultExt, AwsSession, classify, code, found};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Failure, Key, Removal, Values};

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

type Observed = BTreeMap<String, ObservedLogGroup>;

async fn list(aws: &AwsSession, prefix: &str) -> Result<Observed, Failure> {
    let logs = aws.logs();
    let mut found_groups = Vec::new();
    let mut token = None;
    loop {
        let page = logs
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .set_next_token(token)
            .send()
            .await
            .aws("logs:DescribeLogGroups")?;
        found_groups.extend(page.log_groups().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut observed = Observed::new();
    for g in found_groups {
        let Some(name) = g.log_group_name() else {
            continue;
        };
        // `arn` ends in `:*`; tagging takes the ARN without it.
        let arn = g
            .log_group_arn()
            .map(str::to_string)
            .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
            .unwrap_or_default();
        let tags = logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .aws("logs:ListTagsForResource")?
            .tags
            .unwrap_or_default()
            .into_iter()
            .collect();
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

async fn delete_group(aws: &AwsSession, name: &str) -> Result<(), Failure> {
    found(
        aws.logs()
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await,
        "logs:DeleteLogGroup",
        &["ResourceNotFoundException"],
    )?;
    Ok(())
}

impl Group for LogGroups {
    type Desired = Desired;
    type Observed = Observed;
    type Change = Change;

    fn condition(&self) -> String {
        match self.env {
            None => "LogGroupsReady".into(),
            Some(env) => format!("{}LogGroupsReady", env.title()),
        }
    }

    fn kind(&self) -> &'static str {
        match self.env {
            None => "build and scan log groups",
            Some(Env::Staging) => "staging application log group",
            Some(Env::Production) => "production application log group",
        }
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
        match self.env {
            None => {
                let key = super::kit::input(inputs, keys::KMS_KEY_ARN)?;
                Ok(desired::pipeline(&self.ctx, key))
            }
            Some(env) => Ok(desired::environment(&self.ctx, env)),
        }
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let observed = list(aws, &self.prefix()).await?;
        for (name, g) in &observed {
            check_owner(&self.ctx, &format!("log group {name}"), &g.tags)?;
        }
        Ok((!observed.is_empty()).then_some(observed))
    }

    fn diff(desired: &Desired, observed: &Observed) -> Vec<Change> {
        diff::diff(desired, observed)
    }

    fn describe(
        &self,
        desired: &Desired,
        observed: &Observed,
        change: &Change,
    ) -> Vec<crate::engine::Drift> {
        diff::describe(desired, observed, change)
    }

    fn describe_removal(&self, observed: &Observed) -> Vec<crate::engine::Drift> {
        super::kit::deletions("log group", observed.keys())
    }

    async fn create(&self, aws: &AwsSession, d: &Desired) -> Result<Produced, Failure> {
        let changes = diff::diff(d, &Observed::new());
        self.update(aws, d, &Observed::new(), changes).await?;
        Ok(self.produced(&Placement::of(aws), d, &Observed::new()))
    }

    async fn update(
        &self,
        aws: &AwsSession,
        d: &Desired,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<(), Failure> {
        let logs = aws.logs();
        for change in changes {
            match change {
                Change::Create(name) => {
                    let group = &d.groups[&name];
                    match logs
                        .create_log_group()
                        .log_group_name(&name)
                        .set_kms_key_id(group.kms_key_arn.clone())
                        .set_tags(Some(d.tags.tags.clone().into_iter().collect()))
                        .send()
                        .await
                    {
                        Ok(_) => {}
                        // Made by an interrupted earlier attempt: settle it below.
                        Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {}
                        Err(e) => return Err(classify("logs:CreateLogGroup", e)),
                    }
                    logs.put_retention_policy()
                        .log_group_name(&name)
                        .retention_in_days(group.retention_days)
                        .send()
                        .await
                        .aws("logs:PutRetentionPolicy")?;
                }
                Change::Retention(name) => {
                    logs.put_retention_policy()
                        .log_group_name(&name)
                        .retention_in_days(d.groups[&name].retention_days)
                        .send()
                        .await
                        .aws("logs:PutRetentionPolicy")?;
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
                    let arn = o.get(&name).map(|g| g.arn.clone()).unwrap_or_default();
                    if !plan.set.is_empty() {
                        logs.tag_resource()
                            .resource_arn(&arn)
                            .set_tags(Some(plan.set.into_iter().collect()))
                            .send()
                            .await
                            .aws("logs:TagResource")?;
                    }
                    if !plan.remove.is_empty() {
                        logs.untag_resource()
                            .resource_arn(&arn)
                            .set_tag_keys(Some(plan.remove))
                            .send()
                            .await
                            .aws("logs:UntagResource")?;
                    }
                }
                Change::Delete(name) => delete_group(aws, &name).await?,
            }
        }
        Ok(())
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
