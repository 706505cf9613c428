//! The values groups hand to each other (and to `status.outputs`).

use crate::engine::Key;

pub const ACCOUNT_ID: Key = Key::new("AccountId");
pub const REGION: Key = Key::new("Region");
pub const KMS_KEY_ARN: Key = Key::new("KmsKeyArn");
pub const ARTIFACT_BUCKET: Key = Key::new("ArtifactBucket");
pub const NOTIFICATION_TOPIC_ARN: Key = Key::new("NotificationTopicArn");
/// Per environment (`.scoped(env.name())`): the application's log group.
pub const APPLICATION_LOG_GROUP: Key = Key::new("ApplicationLogGroup");
pub const BUILD_LOG_GROUP: Key = Key::new("BuildLogGroup");
pub const SCAN_LOG_GROUP: Key = Key::new("ScanLogGroup");
pub const APPROVAL_TOPIC_ARN: Key = Key::new("ApprovalTopicArn");
pub const REPOSITORY_ARN: Key = Key::new("RepositoryArn");
pub const REPOSITORY_URI: Key = Key::new("RepositoryUri");
/// Pipeline account roles.
pub const PIPELINE_ROLE_ARN: Key = Key::new("PipelineRoleArn");
pub const BUILD_ROLE_ARN: Key = Key::new("BuildRoleArn");
pub const SCAN_ROLE_ARN: Key = Key::new("ScanRoleArn");
/// The role EventBridge assumes to start the pipeline on a source change (S3 and CodeCommit
/// sources only).
pub const TRIGGER_ROLE_ARN: Key = Key::new("TriggerRoleArn");
/// Per environment (`.scoped(env.name())`), in that environment's account.
pub const EXECUTION_ROLE_ARN: Key = Key::new("ExecutionRoleArn");
pub const TASK_ROLE_ARN: Key = Key::new("TaskRoleArn");
/// Per environment in another account: the role the pipeline assumes to deploy there.
pub const DEPLOY_ROLE_ARN: Key = Key::new("DeployRoleArn");
/// Per environment: the AWS account it lives in (as its session sees it).
pub const ENVIRONMENT_ACCOUNT_ID: Key = Key::new("EnvironmentAccountId");
/// CodeBuild projects (names), for the pipeline's Build and Test stages.
pub const BUILD_PROJECT: Key = Key::new("BuildProject");
pub const SCAN_PROJECT: Key = Key::new("ScanProject");
/// The CodePipeline pipeline.
pub const PIPELINE_NAME: Key = Key::new("PipelineName");
pub const PIPELINE_ARN: Key = Key::new("PipelineArn");
/// Per environment (`.scoped(env.name())`): where its ECS service is placed. The VPC; the
/// subnets and security groups, comma-separated and sorted; `ENABLED` or `DISABLED`.
pub const VPC_ID: Key = Key::new("VpcId");
pub const SUBNET_IDS: Key = Key::new("SubnetIds");
pub const SECURITY_GROUP_IDS: Key = Key::new("SecurityGroupIds");
pub const ASSIGN_PUBLIC_IP: Key = Key::new("AssignPublicIp");
/// EventBridge rules (names) matching this pipeline's FAILED and SUCCEEDED executions, whose
/// `TriggeredRules` metrics the alarms watch.
pub const FAILURE_RULE_NAME: Key = Key::new("FailureRuleName");
pub const SUCCESS_RULE_NAME: Key = Key::new("SuccessRuleName");
/// Per environment (`.scoped(env.name())`), in that environment's account: its ECS cluster and
/// service, which the pipeline's deploy actions deploy to.
pub const CLUSTER_NAME: Key = Key::new("ClusterName");
pub const CLUSTER_ARN: Key = Key::new("ClusterArn");
pub const SERVICE_NAME: Key = Key::new("ServiceName");
pub const SERVICE_ARN: Key = Key::new("ServiceArn");
/// The image a service runs (empty before the pipeline's first deployment): the repository's
/// lifecycle policy keeps it.
pub const RUNNING_IMAGE: Key = Key::new("RunningImage");

/// The values published in `status.outputs`, by field name (camelCase, as in the CRD). The
/// field's type and documentation live in `api::status::Outputs`; a new output is a field
/// there and a row here.
pub const OUTPUTS: &[(&str, Key)] = &[
    ("accountId", ACCOUNT_ID),
    ("region", REGION),
    ("kmsKeyArn", KMS_KEY_ARN),
    ("artifactBucket", ARTIFACT_BUCKET),
    ("imageRepositoryUri", REPOSITORY_URI),
    ("imageRepositoryArn", REPOSITORY_ARN),
    ("notificationTopicArn", NOTIFICATION_TOPIC_ARN),
    ("approvalTopicArn", APPROVAL_TOPIC_ARN),
    ("pipelineRoleArn", PIPELINE_ROLE_ARN),
    ("pipelineName", PIPELINE_NAME),
    ("pipelineArn", PIPELINE_ARN),
];

/// Per environment (`status.outputs.<env>`), scoped by the environment's name.
pub const ENVIRONMENT_OUTPUTS: &[(&str, Key)] = &[
    ("accountId", ENVIRONMENT_ACCOUNT_ID),
    ("deployRoleArn", DEPLOY_ROLE_ARN),
    ("executionRoleArn", EXECUTION_ROLE_ARN),
    ("taskRoleArn", TASK_ROLE_ARN),
    ("vpcId", VPC_ID),
    ("subnetIds", SUBNET_IDS),
    ("securityGroupIds", SECURITY_GROUP_IDS),
    ("clusterName", CLUSTER_NAME),
    ("clusterArn", CLUSTER_ARN),
    ("serviceName", SERVICE_NAME),
    ("serviceArn", SERVICE_ARN),
];
