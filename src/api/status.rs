//! The `DeliveryPipeline` status: written only by the operator, through the status subresource.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a DeliveryPipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPipelineStatus {
    /// The `metadata.generation` the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One condition per group of AWS resources, plus `Ready` (all of them are in the declared
    /// state) and `Synced` (the last reconcile completed without error).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Identifiers of what the pipeline created, for use by people and other tools.
    #[serde(default)]
    pub outputs: Outputs,
    /// Every AWS resource the pipeline owns.
    #[serde(default)]
    pub inventory: Vec<InventoryItem>,
    /// Keys of `spec.tags` the operator has put on AWS resources; a key that leaves the spec is
    /// removed from the resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_tag_keys: Vec<String>,
    /// The pipeline's most recent execution, read at each reconcile (every 30 seconds while
    /// one is in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution: Option<LastExecution>,
    /// With `managementPolicy: ObserveOnly`: every difference between AWS and the spec found
    /// by the last reconcile, none of them corrected. Empty when AWS matches the spec (and
    /// always under `Manage`, which corrects what it finds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftItem>,
    /// When the operator last read every AWS resource of the pipeline and found each as the
    /// spec at `observedGeneration` wants it (nothing to change, nothing to wait for). A
    /// restarted operator, or a new leader, does not check the pipeline again before
    /// `--resync-interval-seconds` from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// The value of the `delivery-operator.dev/reconcile-requested-at` annotation the operator
    /// last acted on: a tool that sets the annotation waits for this field to equal it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// One difference between AWS and the spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftItem {
    /// The condition of the group it belongs to, e.g. `StagingLogGroupsReady`.
    pub group: String,
    /// What a managed reconcile would do: `Create`, `Update` or `Delete`.
    pub action: String,
    /// The AWS resource, e.g. `log group /aws/codebuild/dev-web-build`.
    pub resource: String,
    /// The field that differs (updates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What AWS has, when it is one short value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// What the spec declares, when it is one short value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
}

/// A CodePipeline execution, as `kubectl get` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastExecution {
    /// Execution ID.
    pub id: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Stopped`, `Superseded`, ...
    pub status: String,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// What started it, e.g. `StartPipelineExecution`, `CloudWatchEvent`, `Webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Each stage's status in this execution, in pipeline order; a pending approval shows as
    /// the `Approval` stage `InProgress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStatus>,
}

/// One stage of an execution.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    pub name: String,
    pub status: String,
}

/// A condition in the shape of Kubernetes' `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready` or `ArtifactStoreReady`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason for the last transition.
    pub reason: String,
    /// What is wrong and what to do about it; empty when all is well.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Identifiers of what the pipeline created.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    /// AWS account of the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// AWS region of the pipeline (recorded once, then kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Name of the CodePipeline pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    /// ARN of the CodePipeline pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_arn: Option<String>,
    /// URI of the ECR repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository_uri: Option<String>,
    /// ARN of the ECR repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository_arn: Option<String>,
    /// Name of the artifact bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_bucket: Option<String>,
    /// ARN of the KMS key that encrypts artifacts, images and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// ARN of the SNS topic for pipeline events and alarms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_topic_arn: Option<String>,
    /// ARN of the SNS topic for manual approval requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_topic_arn: Option<String>,
    /// ARN of the pipeline's (CodePipeline's) IAM role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_role_arn: Option<String>,
    /// The staging environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<EnvironmentOutputs>,
    /// The production environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production: Option<EnvironmentOutputs>,
}

/// Identifiers of one deployment environment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentOutputs {
    /// AWS account the environment lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// ECS cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// ARN of the ECS cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// ECS service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// ARN of the ECS service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_arn: Option<String>,
    /// ARN of the role the pipeline assumes to deploy into this environment (only when the
    /// environment is in another account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_role_arn: Option<String>,
    /// ARN of the application's ECS task execution role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// ARN of the application's ECS task role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// VPC the ECS service runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Subnets of the ECS service's tasks, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_ids: Option<String>,
    /// Security groups of the ECS service's tasks, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_ids: Option<String>,
}

/// One AWS resource owned by the pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryItem {
    /// Resource kind, e.g. `AWS::KMS::Key`.
    pub kind: String,
    /// Identifier: an ARN where the resource has one, else its name or ID.
    pub id: String,
    /// AWS account that holds it.
    pub account: String,
    /// AWS region that holds it (empty for global resources such as IAM roles).
    pub region: String,
    /// The condition of the group that owns it, e.g. `StagingLogGroupsReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}
