//! ARNs of the resources a pipeline owns, computed from their deterministic names. Identity
//! policies name resources by ARN, and most of them are known before anything exists.

use super::{Env, PipelineContext};

pub struct Arns<'a> {
    ctx: &'a PipelineContext,
}

impl<'a> Arns<'a> {
    pub fn new(ctx: &'a PipelineContext) -> Self {
        Self { ctx }
    }

    fn partition(&self) -> &'static str {
        self.ctx.partition()
    }

    /// `arn:<partition>:<service>:<region>:<account>:<resource>` in the pipeline account.
    fn regional(&self, service: &str, resource: &str) -> String {
        self.in_account(service, &self.ctx.account_id, resource)
    }

    fn in_account(&self, service: &str, account: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{account}:{resource}",
            self.partition(),
            self.ctx.region
        )
    }

    /// A role the operator creates: on the IAM path the administrators' policy sets.
    pub fn role(&self, account: &str, name: &str) -> String {
        format!(
            "arn:{}:iam::{account}:role{}{name}",
            self.partition(),
            self.ctx.tenancy.role_path
        )
    }

    /// A pipeline-account role: `pipeline`, `build` or `scan`.
    pub fn pipeline_role(&self, purpose: &str) -> String {
        self.role(&self.ctx.account_id, &self.ctx.names().role(purpose))
    }

    /// An environment role (`exec`, `task`, `deploy`) in that environment's account.
    pub fn environment_role(&self, env: Env, purpose: &str) -> String {
        self.role(
            &self.ctx.environment_account(env),
            &self.ctx.names().environment_role(env, purpose),
        )
    }

    pub fn pipeline(&self) -> String {
        self.regional("codepipeline", &self.ctx.names().base())
    }

    pub fn bucket(&self) -> String {
        format!(
            "arn:{}:s3:::{}",
            self.partition(),
            self.ctx.names().artifact_bucket()
        )
    }

    pub fn bucket_objects(&self) -> String {
        format!("{}/*", self.bucket())
    }

    pub fn repository(&self) -> String {
        self.regional(
            "ecr",
            &format!("repository/{}", self.ctx.names().image_repository()),
        )
    }

    pub fn project(&self, purpose: &str) -> String {
        self.regional(
            "codebuild",
            &format!("project/{}", self.ctx.names().project(purpose)),
        )
    }

    pub fn report_group(&self, name: &str) -> String {
        self.regional("codebuild", &format!("report-group/{name}"))
    }

    /// Report groups CodeBuild creates for a project's reports (`<project>-<report name>`).
    pub fn report_groups(&self, purpose: &str) -> String {
        self.regional(
            "codebuild",
            &format!("report-group/{}-*", self.ctx.names().project(purpose)),
        )
    }

    /// The streams of a log group, in `account` (where log events are written).
    pub fn log_streams(&self, account: &str, name: &str) -> String {
        self.in_account("logs", account, &format!("log-group:{name}:log-stream:*"))
    }

    pub fn approval_topic(&self) -> String {
        self.regional("sns", &self.ctx.names().approval_topic())
    }

    pub fn notification_topic(&self) -> String {
        self.regional("sns", &self.ctx.names().notification_topic())
    }

    pub fn service(&self, env: Env) -> String {
        let names = self.ctx.names();
        self.in_account(
            "ecs",
            &self.ctx.environment_account(env),
            &format!("service/{}/{}", names.cluster(env), names.service(env)),
        )
    }

    /// Every revision of an environment's task definition family.
    pub fn task_definitions(&self, env: Env) -> String {
        self.in_account(
            "ecs",
            &self.ctx.environment_account(env),
            &format!("task-definition/{}:*", self.ctx.names().service(env)),
        )
    }

    /// Tasks of an environment's cluster (the deploy action watches them).
    pub fn tasks(&self, env: Env) -> String {
        self.in_account(
            "ecs",
            &self.ctx.environment_account(env),
            &format!("task/{}/*", self.ctx.names().cluster(env)),
        )
    }

    /// Container instances of an environment's cluster: the resource ECS authorizes
    /// `ListTasks` on (Fargate tasks included).
    pub fn container_instances(&self, env: Env) -> String {
        self.in_account(
            "ecs",
            &self.ctx.environment_account(env),
            &format!("container-instance/{}/*", self.ctx.names().cluster(env)),
        )
    }

    pub fn cluster(&self, env: Env) -> String {
        self.in_account(
            "ecs",
            &self.ctx.environment_account(env),
            &format!("cluster/{}", self.ctx.names().cluster(env)),
        )
    }

    /// An EventBridge rule of this pipeline (on the account's default event bus).
    pub fn rule(&self, name: &str) -> String {
        self.regional("events", &format!("rule/{name}"))
    }

    /// A CloudWatch alarm of this pipeline.
    pub fn alarm(&self, name: &str) -> String {
        self.regional("cloudwatch", &format!("alarm:{name}"))
    }

    /// A CodeCommit repository in the pipeline account.
    pub fn code_commit_repository(&self, name: &str) -> String {
        self.regional("codecommit", name)
    }

    /// EventBridge rules and CloudWatch alarms of this pipeline: their names all carry the
    /// pipeline's identity hash.
    pub fn rules(&self) -> String {
        self.regional(
            "events",
            &format!("rule/*{}*", self.ctx.names().identity_tag()),
        )
    }

    pub fn alarms(&self) -> String {
        self.regional(
            "cloudwatch",
            &format!("alarm:*{}*", self.ctx.names().identity_tag()),
        )
    }
}
