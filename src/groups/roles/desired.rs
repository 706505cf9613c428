//! Desired IAM roles: one trust policy and at most one inline policy each, least privilege.
//!
//! The pipeline account has the pipeline role (CodePipeline), the build role and the scan role
//! (CodeBuild). Each environment, in its own account, has the task execution role, the task
//! role and, when that account is not the pipeline's, the deploy role the pipeline assumes.
//! Every service trust carries `aws:SourceAccount` and `aws:SourceArn` (confused deputy).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::desired::names::log_group::{APPLICATION, BUILD, SCAN};
pub use crate::desired::names::role::{
    BUILDER, DEPLOY, EXECUTION, PIPELINE, SCANNER, TASK, TRIGGER,
};
use crate::desired::names::{REPORT_EXPORT_PREFIX, TRIGGER_RULE};
use crate::desired::{Env, PipelineContext};
use crate::groups::kit::DesiredTags;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub name: String,
    pub arn: String,
    /// IAM path (`/` unless the administrators' policy sets one); fixed at creation.
    pub path: String,
    /// Permissions boundary from the administrators' policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    pub description: String,
    pub trust_policy: Value,
    /// Policy name -> document.
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
    pub tags: DesiredTags,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Roles {
    pub roles: Vec<Role>,
    /// Roles this instance may have made earlier and no longer wants (e.g. the deploy role of
    /// an environment that moved into the pipeline account): deleted when found.
    pub retired: Vec<String>,
}

const ALLOW: &str = "Allow";

fn statement(sid: &str, actions: &[&str], resources: &[String]) -> Value {
    json!({"Sid": sid, "Effect": ALLOW, "Action": actions, "Resource": resources})
}

fn document(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Trust for an AWS service, limited to this account and, where the service sends it, to the
/// resource acting (`aws:SourceArn`).
fn service_trust(service: &str, account: &str, source_arn: &str) -> Value {
    document(vec![json!({
        "Effect": ALLOW,
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": source_arn}
        }
    })])
}

/// Trust for one role (the pipeline role assuming an environment's deploy role).
fn role_trust(role_arn: &str) -> Value {
    document(vec![json!({
        "Effect": ALLOW,
        "Principal": {"AWS": role_arn},
        "Action": "sts:AssumeRole"
    })])
}

const KMS_USE: &[&str] = &[
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
];
const ARTIFACT_READ_WRITE: &[&str] = &["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"];
const ARTIFACT_READ: &[&str] = &["s3:GetObject", "s3:GetObjectVersion"];
const LOG_WRITE: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
const REPORTS: &[&str] = &[
    "codebuild:BatchPutCodeCoverages",
    "codebuild:BatchPutTestCases",
    "codebuild:CreateReport",
    "codebuild:CreateReportGroup",
    "codebuild:UpdateReport",
];
const IMAGE_PULL: &[&str] = &[
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];
/// What CodePipeline's ECS deploy action calls (AWS: "Amazon ECS standard deployment action
/// reference", service role permissions).
const ECS_DEPLOY_SERVICE: &[&str] = &["ecs:DescribeServices", "ecs:UpdateService"];
/// AWS authorizes `DescribeTaskDefinition` on no resource.
const ECS_READ_TASK_DEFINITIONS: &[&str] = &["ecs:DescribeTaskDefinition"];
/// The one ECR action AWS authorizes only on `*`.
const ECR_LOGIN: &[&str] = &["ecr:GetAuthorizationToken"];

/// A role named for its purpose, in the pipeline account (`env` None) or in an environment's.
fn role(ctx: &PipelineContext, env: Option<Env>, purpose: &str, description: String) -> Role {
    let (names, arns) = (ctx.names(), ctx.arns());
    let (name, arn) = match env {
        None => (names.role(purpose), arns.pipeline_role(purpose)),
        Some(env) => (
            names.environment_role(env, purpose),
            arns.environment_role(env, purpose),
        ),
    };
    Role {
        name,
        arn,
        path: ctx.tenancy.role_path.clone(),
        permissions_boundary: ctx
            .tenancy
            .permissions_boundary_policy
            .as_ref()
            .map(|name| {
                let account =
                    env.map_or_else(|| ctx.account_id.clone(), |e| ctx.environment_account(e));
                format!("arn:{}:iam::{account}:policy/{name}", ctx.partition())
            }),
        description,
        trust_policy: Value::Null,
        inline_policies: BTreeMap::new(),
        managed_policy_arns: BTreeSet::new(),
        tags: DesiredTags::of(ctx),
    }
}

impl Role {
    fn trust(mut self, policy: Value) -> Self {
        self.trust_policy = policy;
        self
    }

    fn policy(mut self, name: &str, statements: Vec<Value>) -> Self {
        self.inline_policies
            .insert(name.into(), document(statements));
        self
    }
}

/// The pipeline account's roles. `kms_key_arn` is the pipeline's key.
pub fn pipeline(ctx: &PipelineContext, kms_key_arn: &str) -> Roles {
    let arns = ctx.arns();
    let account = &ctx.account_id;
    let key = vec![kms_key_arn.to_string()];
    let log_prefix = ctx.names().log_group_prefix("pipeline");
    let build_logs = arns.log_streams(account, &format!("{log_prefix}{BUILD}"));
    let scan_logs = arns.log_streams(account, &format!("{log_prefix}{SCAN}"));
    let owner = ctx.display_name();

    let pipeline_role = role(
        ctx,
        None,
        PIPELINE,
        format!("CodePipeline service role of delivery pipeline {owner}"),
    )
    .trust(service_trust(
        "codepipeline.amazonaws.com",
        account,
        &arns.pipeline(),
    ))
    .policy(PIPELINE, pipeline_statements(ctx, &key));

    let build_role = role(
        ctx,
        None,
        BUILDER,
        format!("CodeBuild role of the image build of delivery pipeline {owner}"),
    )
    .trust(service_trust(
        "codebuild.amazonaws.com",
        account,
        &arns.project(BUILDER),
    ))
    .policy(
        BUILDER,
        vec![
            statement("WriteBuildLogs", LOG_WRITE, &[build_logs]),
            statement(
                "ReadWriteArtifacts",
                ARTIFACT_READ_WRITE,
                &[arns.bucket_objects()],
            ),
            statement("UseKey", KMS_USE, &key),
            statement("LogInToRegistry", ECR_LOGIN, &["*".into()]),
            statement(
                "PushImage",
                &[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload",
                    // A re-run finds the image of its source version instead of pushing again.
                    "ecr:DescribeImages",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload",
                    "ecr:PutImage",
                    "ecr:UploadLayerPart",
                ],
                &[arns.repository()],
            ),
            statement("WriteReports", REPORTS, &[arns.report_groups(BUILDER)]),
        ],
    );

    let mut scan_actions = vec!["ecr:DescribeImageScanFindings", "ecr:DescribeImages"];
    if !ctx.spec.image_repository.scan_on_push {
        scan_actions.push("ecr:StartImageScan");
    }
    let scan_role = role(
        ctx,
        None,
        SCANNER,
        format!("CodeBuild role of the image scan gate of delivery pipeline {owner}"),
    )
    .trust(service_trust(
        "codebuild.amazonaws.com",
        account,
        &arns.project(SCANNER),
    ))
    .policy(
        SCANNER,
        vec![
            statement("WriteScanLogs", LOG_WRITE, &[scan_logs]),
            statement("ReadArtifacts", ARTIFACT_READ, &[arns.bucket_objects()]),
            // The report group exports raw reports to the artifact bucket, encrypted with the
            // key, as this role.
            statement(
                "ExportReports",
                &["s3:PutObject"],
                &[format!("{}/{REPORT_EXPORT_PREFIX}/*", arns.bucket())],
            ),
            statement("UseKey", KMS_USE, &key),
            statement("ReadScanFindings", &scan_actions, &[arns.repository()]),
            statement("WriteReports", REPORTS, &[arns.report_groups(SCANNER)]),
        ],
    );

    let mut roles = vec![pipeline_role, build_role, scan_role];
    let mut retired = Vec::new();
    if ctx.has_trigger() {
        let rule = arns.rule(&ctx.names().rule(TRIGGER_RULE));
        roles.push(
            role(
                ctx,
                None,
                TRIGGER,
                format!(
                    "Assumed by EventBridge to start delivery pipeline {owner} when its source changes"
                ),
            )
            .trust(service_trust("events.amazonaws.com", account, &rule))
            .policy(
                TRIGGER,
                vec![statement(
                    "StartPipeline",
                    &["codepipeline:StartPipelineExecution"],
                    &[arns.pipeline()],
                )],
            ),
        );
    } else {
        retired.push(ctx.names().role(TRIGGER));
    }
    Roles { roles, retired }
}

fn pipeline_statements(ctx: &PipelineContext, key: &[String]) -> Vec<Value> {
    let arns = ctx.arns();
    let mut statements = vec![
        statement(
            "ReadWriteArtifacts",
            ARTIFACT_READ_WRITE,
            &[arns.bucket_objects()],
        ),
        statement(
            "ArtifactBucket",
            &["s3:GetBucketLocation", "s3:GetBucketVersioning"],
            &[arns.bucket()],
        ),
        statement("UseKey", KMS_USE, key),
        statement(
            "RunBuildAndScan",
            &["codebuild:BatchGetBuilds", "codebuild:StartBuild"],
            &[arns.project(BUILDER), arns.project(SCANNER)],
        ),
        statement(
            "RequestApproval",
            &["sns:Publish"],
            &[arns.approval_topic()],
        ),
    ];
    statements.extend(source_statements(ctx));
    let local: Vec<Env> = Env::ALL
        .into_iter()
        .filter(|env| !ctx.is_cross_account(*env))
        .collect();
    if !local.is_empty() {
        statements.extend(ecs_deploy_statements(ctx, &local));
    }
    let remote: Vec<String> = ctx
        .cross_account_environments()
        .into_iter()
        .map(|env| arns.environment_role(env, DEPLOY))
        .collect();
    if !remote.is_empty() {
        statements.push(statement(
            "AssumeEnvironmentDeployRoles",
            &["sts:AssumeRole"],
            &remote,
        ));
    }
    statements
}

fn source_statements(ctx: &PipelineContext) -> Vec<Value> {
    let partition = ctx.partition();
    let source = &ctx.spec.source;
    if let Some(s3) = &source.s3 {
        vec![
            statement(
                "ReadSourceObject",
                &["s3:GetObject", "s3:GetObjectVersion"],
                &[format!(
                    "arn:{partition}:s3:::{}/{}",
                    s3.bucket, s3.object_key
                )],
            ),
            statement(
                "ReadSourceBucket",
                &["s3:GetBucketVersioning"],
                &[format!("arn:{partition}:s3:::{}", s3.bucket)],
            ),
        ]
    } else if let Some(connection) = &source.connection {
        // The action's service prefix follows the connection ARN's (the service was renamed;
        // both ARN forms are in use).
        let action = if connection.connection_arn.contains(":codestar-connections:") {
            "codestar-connections:UseConnection"
        } else {
            "codeconnections:UseConnection"
        };
        vec![statement(
            "UseConnection",
            &[action],
            std::slice::from_ref(&connection.connection_arn),
        )]
    } else if let Some(repo) = &source.code_commit {
        vec![statement(
            "ReadSourceRepository",
            &[
                "codecommit:CancelUploadArchive",
                "codecommit:GetBranch",
                "codecommit:GetCommit",
                "codecommit:GetUploadArchiveStatus",
                "codecommit:UploadArchive",
            ],
            &[format!(
                "arn:{partition}:codecommit:{}:{}:{}",
                ctx.region, ctx.account_id, repo.repository
            )],
        )]
    } else {
        Vec::new()
    }
}

/// What the ECS deploy action needs on `envs` (from the pipeline role when they share its
/// account, from each deploy role otherwise).
fn ecs_deploy_statements(ctx: &PipelineContext, envs: &[Env]) -> Vec<Value> {
    let arns = ctx.arns();
    let each = |f: &dyn Fn(Env) -> String| envs.iter().map(|e| f(*e)).collect::<Vec<_>>();
    let task_roles: Vec<String> = envs
        .iter()
        .flat_map(|env| {
            [
                arns.environment_role(*env, EXECUTION),
                arns.environment_role(*env, TASK),
            ]
        })
        .collect();
    vec![
        statement(
            "UpdateServices",
            ECS_DEPLOY_SERVICE,
            &each(&|e| arns.service(e)),
        ),
        statement(
            "WatchTasks",
            &["ecs:DescribeTasks"],
            &each(&|e| arns.tasks(e)),
        ),
        json!({
            "Sid": "ListTasks",
            "Effect": ALLOW,
            "Action": "ecs:ListTasks",
            "Resource": each(&|e| arns.container_instances(e)),
            "Condition": {"ArnEquals": {"ecs:cluster": each(&|e| arns.cluster(e))}}
        }),
        statement(
            "RegisterTaskDefinitions",
            &["ecs:RegisterTaskDefinition"],
            &each(&|e| arns.task_definitions(e)),
        ),
        statement(
            "ReadTaskDefinitions",
            ECS_READ_TASK_DEFINITIONS,
            &["*".into()],
        ),
        json!({
            "Sid": "TagTaskDefinitions",
            "Effect": ALLOW,
            "Action": "ecs:TagResource",
            "Resource": each(&|e| arns.task_definitions(e)),
            "Condition": {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}}
        }),
        json!({
            "Sid": "PassTaskRoles",
            "Effect": ALLOW,
            "Action": "iam:PassRole",
            "Resource": task_roles,
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
        }),
    ]
}

/// One environment's roles, in its account. `kms_key_arn` is the pipeline's key.
pub fn environment(ctx: &PipelineContext, env: Env, kms_key_arn: &str) -> Roles {
    let arns = ctx.arns();
    let names = ctx.names();
    let account = ctx.environment_account(env);
    let owner = ctx.display_name();
    let title = env.name();
    let app_logs = arns.log_streams(
        &account,
        &format!("{}{APPLICATION}", names.log_group_prefix(env.name())),
    );

    let ecs_tasks_trust = service_trust(
        "ecs-tasks.amazonaws.com",
        &account,
        &format!("arn:{}:ecs:{}:{account}:*", ctx.partition(), ctx.region),
    );

    let execution = role(
        ctx,
        Some(env),
        EXECUTION,
        format!("ECS task execution role of the {title} environment of delivery pipeline {owner}"),
    )
    .trust(ecs_tasks_trust.clone())
    .policy(
        EXECUTION,
        vec![
            statement("LogInToRegistry", ECR_LOGIN, &["*".into()]),
            statement("PullImage", IMAGE_PULL, &[arns.repository()]),
            statement("DecryptImage", &["kms:Decrypt"], &[kms_key_arn.to_string()]),
            statement("WriteApplicationLogs", LOG_WRITE, &[app_logs]),
        ],
    );

    let mut task = role(
        ctx,
        Some(env),
        TASK,
        format!(
            "Task role of the application in the {title} environment of delivery pipeline {owner}"
        ),
    )
    .trust(ecs_tasks_trust);
    task.managed_policy_arns = env
        .spec(&ctx.spec)
        .task_role_policy_arns
        .iter()
        .cloned()
        .collect();

    let mut roles = vec![execution, task];
    let mut retired = Vec::new();
    if ctx.is_cross_account(env) {
        let mut statements = ecs_deploy_statements(ctx, &[env]);
        statements.push(statement(
            "ReadArtifacts",
            ARTIFACT_READ,
            &[arns.bucket_objects()],
        ));
        statements.push(statement(
            "DecryptArtifacts",
            &["kms:Decrypt", "kms:DescribeKey"],
            &[kms_key_arn.to_string()],
        ));
        roles.push(
            role(
                ctx,
                Some(env),
                DEPLOY,
                format!("Assumed by delivery pipeline {owner} to deploy to {title}"),
            )
            .trust(role_trust(&arns.pipeline_role(PIPELINE)))
            .policy(DEPLOY, statements),
        );
    } else {
        retired.push(names.environment_role(env, DEPLOY));
    }
    Roles { roles, retired }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, MINIMAL, context};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    #[test]
    fn an_s3_source_gets_a_trigger_role_that_may_only_start_this_pipeline() {
        let c = context(MINIMAL);
        let roles = pipeline(&c, KEY);
        let trigger = roles
            .roles
            .iter()
            .find(|r| r.name == c.names().role(TRIGGER))
            .expect("trigger role");
        let rule = c.arns().rule(&c.names().rule(TRIGGER_RULE));
        assert_eq!(
            trigger.trust_policy["Statement"][0]["Principal"]["Service"],
            "events.amazonaws.com"
        );
        assert_eq!(
            trigger.trust_policy["Statement"][0]["Condition"],
            json!({
                "StringEquals": {"aws:SourceAccount": "123456789012"},
                "ArnLike": {"aws:SourceArn": rule}
            })
        );
        assert_eq!(
            trigger.inline_policies[TRIGGER]["Statement"],
            json!([{
                "Sid": "StartPipeline",
                "Effect": "Allow",
                "Action": ["codepipeline:StartPipelineExecution"],
                "Resource": [c.arns().pipeline()]
            }])
        );
        assert!(roles.retired.is_empty());
    }

    #[test]
    fn a_code_commit_source_has_a_trigger_role_and_a_connection_retires_it() {
        let mut c = context(MINIMAL);
        c.spec.source.s3 = None;
        c.spec.source.code_commit = Some(crate::api::CodeCommitSource {
            repository: "app".into(),
            branch: "main".into(),
        });
        assert!(c.has_trigger());
        assert_eq!(pipeline(&c, KEY).roles.len(), 4);
        let full = context(FULL);
        let roles = pipeline(&full, KEY);
        assert_eq!(roles.roles.len(), 3);
        assert_eq!(roles.retired, vec![full.names().role(TRIGGER)]);
    }
}
