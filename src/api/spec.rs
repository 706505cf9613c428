//! The `DeliveryPipeline` spec: everything a user declares.
//!
//! Every default lives in the schema (`#[serde(default = ...)]` becomes an OpenAPI `default`), so
//! the API server fills it in at admission and the stored object shows the effective
//! configuration. Every cross-field rule is a CEL `x-kubernetes-validations` rule, so a bad
//! manifest is rejected by the API server before the operator sees it.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;
use super::status::DeliveryPipelineStatus;

/// A complete container delivery pipeline in AWS: source, image build, image-scan gate,
/// staging deployment, manual approval and production deployment on ECS Fargate, with the
/// encryption key, artifact store, image repository, IAM roles, network, notifications and
/// alarms around it.
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.delivery-operator.dev",
    version = "v1alpha1",
    kind = "DeliveryPipeline",
    plural = "deliverypipelines",
    singular = "deliverypipeline",
    shortname = "dp",
    category = "delivery",
    namespaced,
    status = "DeliveryPipelineStatus",
    derive = "PartialEq",
    doc = "A DeliveryPipeline is a complete container delivery pipeline in AWS (source, build, image-scan gate, staging, approval, production), kept in the declared state by the delivery operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every owned AWS resource is in the declared state"
    ),
    printcolumn(
        name = "Pipeline",
        type_ = "string",
        json_path = ".status.outputs.pipelineName",
        description = "Name of the CodePipeline pipeline"
    ),
    printcolumn(
        name = "Last run",
        type_ = "string",
        json_path = ".status.lastExecution.status",
        description = "Status of the pipeline's most recent execution"
    ),
    printcolumn(
        name = "Image repository",
        type_ = "string",
        json_path = ".status.outputs.imageRepositoryUri",
        description = "URI of the ECR repository the build pushes to"
    ),
    printcolumn(
        name = "Staging service",
        type_ = "string",
        json_path = ".status.outputs.staging.serviceName",
        description = "ECS service of the staging environment",
        priority = 1
    ),
    printcolumn(
        name = "Production service",
        type_ = "string",
        json_path = ".status.outputs.production.serviceName",
        description = "ECS service of the production environment",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.environmentSuffix == oldSelf.environmentSuffix",
        "message": "environmentSuffix is immutable: it is part of every AWS resource name; create a new DeliveryPipeline instead"
    },
    {
        "rule": "!has(oldSelf.region) || (has(self.region) && self.region == oldSelf.region)",
        "message": "region is immutable once set: the pipeline's AWS resources cannot move between regions; create a new DeliveryPipeline instead"
    },
    {
        "rule": "!has(self.region) || !has(self.source.connection) || self.source.connection.connectionArn.split(':')[3] == self.region",
        "message": "source.connection.connectionArn must be a connection in spec.region: CodePipeline uses connections of its own region only"
    },
    {
        "rule": "!has(self.tags) || self.tags.all(k, !(k in ['ManagedBy', 'Environment', 'CostCenter']) && !k.startsWith('delivery-operator.dev/'))",
        "message": "tags must not set the reserved keys ManagedBy, Environment, CostCenter or delivery-operator.dev/*; use environmentSuffix and costCenter instead"
    },
    {
        "rule": "has(self.network) || (has(self.environments.staging.network) && has(self.environments.production.network))",
        "message": "network is required unless both environments.staging.network and environments.production.network are set"
    },
    {
        "rule": "!has(self.environments.staging.accountId) || has(self.environments.staging.network) || !has(self.network) || !has(self.network.existing)",
        "message": "environments.staging.network is required when environments.staging.accountId is set and network is existing: subnets and security groups belong to one AWS account, so an environment in its own account names its own"
    },
    {
        "rule": "!has(self.environments.production.accountId) || has(self.environments.production.network) || !has(self.network) || !has(self.network.existing)",
        "message": "environments.production.network is required when environments.production.accountId is set and network is existing: subnets and security groups belong to one AWS account, so an environment in its own account names its own"
    },
    {
        "rule": "!has(self.environments.staging.allowedIngressCidrs) || size(self.environments.staging.allowedIngressCidrs) == 0 || (has(self.environments.staging.network) ? has(self.environments.staging.network.managed) : (has(self.network) && has(self.network.managed)))",
        "message": "environments.staging.allowedIngressCidrs needs a managed network: the operator does not change the rules of existing security groups"
    },
    {
        "rule": "!has(self.environments.production.allowedIngressCidrs) || size(self.environments.production.allowedIngressCidrs) == 0 || (has(self.environments.production.network) ? has(self.environments.production.network.managed) : (has(self.network) && has(self.network.managed)))",
        "message": "environments.production.allowedIngressCidrs needs a managed network: the operator does not change the rules of existing security groups"
    }
]))]
pub struct DeliveryPipelineSpec {
    /// Short environment name, e.g. `dev` or `prod`. Becomes the `Environment` tag and part of
    /// every AWS resource name. Immutable.
    #[schemars(
        length(min = 1, max = 10),
        regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    )]
    pub environment_suffix: String,

    /// Cost center recorded in the `CostCenter` tag of every AWS resource. At most 255
    /// characters (CodeBuild's tag value limit, the strictest of the services tagged).
    #[schemars(
        length(min = 1, max = 255),
        regex(
            pattern = r"^[\p{L}\p{Z}\p{N}_.:/=+@-]*[\p{L}\p{N}_.:/=+@-][\p{L}\p{Z}\p{N}_.:/=+@-]*$"
        )
    )]
    pub cost_center: String,

    /// Extra tags added to every AWS resource. `ManagedBy`, `Environment`, `CostCenter` and the
    /// owner tags are always added by the operator and cannot be set here. Keys are at most 127
    /// and values at most 255 characters (CodeBuild's limits, the strictest of the services
    /// tagged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::tag_map")]
    pub tags: BTreeMap<String, String>,

    /// AWS region of the pipeline, e.g. `us-east-1`. Defaults to the operator's region, which
    /// is then recorded in `status.outputs.region` and kept. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// AWS credentials the operator uses for this pipeline. Defaults to the operator's own
    /// identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,

    /// Where the pipeline takes its source from. Exactly one kind must be set.
    pub source: Source,

    /// The CodeBuild project that builds the container image and pushes it to ECR.
    #[serde(default)]
    pub build: Build,

    /// The ECR repository the image is pushed to.
    #[serde(default)]
    pub image_repository: ImageRepository,

    /// The Test stage: an ECR image-scan gate that fails the pipeline when findings exceed the
    /// allowed counts, and publishes a JUnit report.
    #[serde(default)]
    pub image_scan: ImageScan,

    /// The S3 bucket that holds pipeline artifacts.
    #[serde(default)]
    pub artifact_store: ArtifactStore,

    /// The container the image runs as in ECS.
    pub container: Container,

    /// Network the ECS services run in, for each environment that does not set its own
    /// (`environments.<env>.network`). Exactly one kind must be set. A managed network is made
    /// once per environment, in that environment's account: environments never share a VPC.
    /// Required unless both environments set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,

    /// The staging and production ECS Fargate environments.
    pub environments: Environments,

    /// The manual approval between staging and production.
    #[serde(default)]
    pub approval: Approval,

    /// Who is told about pipeline failures and successes.
    #[serde(default)]
    pub notifications: Notifications,

    /// CloudWatch alarms on pipeline executions.
    #[serde(default)]
    pub monitoring: Monitoring,

    /// Retention of every log group the pipeline owns, in days. One of CloudWatch Logs'
    /// allowed values.
    #[serde(default = "defaults::log_retention_days")]
    #[schemars(extend("enum" = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]))]
    pub log_retention_days: i32,

    /// Start a new pipeline execution when the pipeline definition changes.
    #[serde(default = "defaults::yes")]
    pub restart_execution_on_update: bool,

    /// What happens to the AWS resources when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Manage` (the default) creates, corrects and deletes the AWS resources. `ObserveOnly`
    /// only reads them: each difference from this spec is reported in its group's condition
    /// and in `status.drift`, and nothing is written to AWS, not even on deletion (the
    /// resources are left in place as with `deletionPolicy: Retain`).
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Where else to publish `status.outputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<OutputsSpec>,
}

/// Publishing of the pipeline's outputs for other workloads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputsSpec {
    /// A ConfigMap in this namespace, owned by the pipeline (deleted with it), holding every
    /// output as a key (`pipelineArn`, `imageRepositoryUri`, `stagingDeployRoleArn`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub config_map_name: Option<String>,
}

/// Credentials for this pipeline's AWS calls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// IAM role the operator assumes for every AWS call of this pipeline. The operator sends
    /// the external ID `delivery-operator:<cluster ID>:<namespace>`, which the role's trust
    /// policy must require (`sts:ExternalId`); a team cannot choose it, so one namespace cannot
    /// assume a role trusted for another.
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
    )]
    pub role_arn: String,
}

/// Pipeline source: exactly one of `s3`, `connection` or `codeCommit`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.s3) ? 1 : 0) + (has(self.connection) ? 1 : 0) + (has(self.codeCommit) ? 1 : 0) == 1",
    "message": "source must set exactly one of s3, connection or codeCommit"
}]))]
pub struct Source {
    /// An S3 object (a zip of the repository), e.g. uploaded by another CI system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// A repository reached through an AWS CodeConnections connection (GitHub, GitLab,
    /// Bitbucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionSource>,
    /// An AWS CodeCommit repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<CodeCommitSource>,
}

/// An S3 object source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.bucket.contains('..') && !self.bucket.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$')",
    "message": "source.s3.bucket is not a valid S3 bucket name (no '..', not an IP address)"
}]))]
pub struct S3Source {
    /// Bucket name.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    )]
    pub bucket: String,
    /// Object key of the source archive, e.g. `checkout.zip`. At most 1000 characters
    /// (CodePipeline's limit for action configuration values). No `*` or `?`: the pipeline
    /// role is granted read on exactly this object, and a wildcard would widen that grant.
    #[schemars(length(min = 1, max = 1000), regex(pattern = r"^[^*?]+$"))]
    pub object_key: String,
}

/// A CodeConnections repository source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSource {
    /// ARN of the CodeConnections (or CodeStar Connections) connection.
    #[schemars(
        length(max = 256),
        regex(
            pattern = r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:[0-9]{12}:connection/[0-9a-f-]+$"
        )
    )]
    pub connection_arn: String,
    /// Full repository id, `owner/name`.
    #[schemars(length(min = 3, max = 256), regex(pattern = r"^[^/\s]+/[^\s]+$"))]
    pub repository: String,
    /// Branch to build.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^\S+$"))]
    pub branch: String,
}

/// A CodeCommit repository source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeCommitSource {
    /// Repository name.
    #[schemars(length(min = 1, max = 100), regex(pattern = r"^[\w.-]+$"))]
    pub repository: String,
    /// Branch to build.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^\S+$"))]
    pub branch: String,
}

/// The image build (CodeBuild: docker build, push to ECR).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.dockerfile.split('/').exists(p, p == '..') && !self.context.split('/').exists(p, p == '..')",
    "message": "build.dockerfile and build.context must stay inside the source (no '..')"
}]))]
pub struct Build {
    /// CodeBuild image the build runs in.
    #[serde(default = "defaults::build_image")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^\S+$"))]
    pub image: String,
    /// CodeBuild compute type.
    #[serde(default)]
    pub compute_type: ComputeType,
    /// Build timeout in minutes (5 to 2160, CodeBuild's limits).
    #[serde(default = "defaults::build_timeout_minutes")]
    #[schemars(range(min = 5, max = 2160))]
    pub timeout_minutes: i32,
    /// Path of the Dockerfile, relative to the source root.
    #[serde(default = "defaults::dockerfile")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[^/]"))]
    pub dockerfile: String,
    /// Docker build context, relative to the source root.
    #[serde(default = "defaults::context")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[^/]"))]
    pub context: String,
    /// Plain-text environment variables of the build. Do not put secrets here. Reserved (they
    /// change what the build shell runs or where it pushes): `BASH_ENV`, `BASHOPTS`, `ENV`,
    /// `IFS`, `PATH`, `PS4`, `SHELLOPTS`, names starting with `AWS_`, `CODEBUILD_`, `DOCKER_`
    /// or `LD_`, and the build script's inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::build_env_vars")]
    pub environment: Vec<EnvVar>,
}

impl Default for Build {
    fn default() -> Self {
        Self {
            image: defaults::build_image(),
            compute_type: ComputeType::default(),
            timeout_minutes: defaults::build_timeout_minutes(),
            dockerfile: defaults::dockerfile(),
            context: defaults::context(),
            environment: Vec::new(),
        }
    }
}

/// CodeBuild compute type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[allow(clippy::enum_variant_names)]
pub enum ComputeType {
    #[default]
    #[serde(rename = "BUILD_GENERAL1_SMALL")]
    BuildGeneral1Small,
    #[serde(rename = "BUILD_GENERAL1_MEDIUM")]
    BuildGeneral1Medium,
    #[serde(rename = "BUILD_GENERAL1_LARGE")]
    BuildGeneral1Large,
    #[serde(rename = "BUILD_GENERAL1_XLARGE")]
    BuildGeneral1Xlarge,
    #[serde(rename = "BUILD_GENERAL1_2XLARGE")]
    BuildGeneral12xlarge,
}

/// A plain-text environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
}

/// The ECR repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepository {
    /// Tag mutability. `ImmutableExceptLatest` keeps every tag immutable except `latest`.
    /// Builds push the source-version tag, plus `latest` unless this is `Immutable` (where a
    /// second `latest` push would be refused).
    #[serde(default)]
    pub tag_mutability: TagMutability,
    /// Number of images the lifecycle policy keeps; older ones expire.
    #[serde(default = "defaults::keep_last_images")]
    #[schemars(range(min = 1, max = 10000))]
    pub keep_last_images: i32,
    /// Scan every pushed image for vulnerabilities.
    #[serde(default = "defaults::yes")]
    pub scan_on_push: bool,
}

impl Default for ImageRepository {
    fn default() -> Self {
        Self {
            tag_mutability: TagMutability::default(),
            keep_last_images: defaults::keep_last_images(),
            scan_on_push: true,
        }
    }
}

/// ECR tag mutability. Every build pushes the image under its source-version tag, and also as
/// `latest` unless tags are `Immutable` (a second `latest` push would be refused there).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TagMutability {
    /// Every tag is immutable; builds push no `latest` tag.
    Immutable,
    /// Every tag is immutable except `latest`.
    #[default]
    ImmutableExceptLatest,
    /// Tags can be overwritten.
    Mutable,
}

/// The image-scan gate (the Test stage).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageScan {
    /// Maximum allowed number of findings per severity; the gate fails when any count is
    /// exceeded. Severities: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED.
    #[serde(default = "defaults::fail_on")]
    #[schemars(schema_with = "schema::severity_map")]
    pub fail_on: BTreeMap<String, i32>,
    /// How long the gate waits for the scan to complete, in minutes (5 to 2160: the timeout of
    /// the gate's CodeBuild project).
    #[serde(default = "defaults::scan_timeout_minutes")]
    #[schemars(range(min = 5, max = 2160))]
    pub timeout_minutes: i32,
}

impl Default for ImageScan {
    fn default() -> Self {
        Self {
            fail_on: defaults::fail_on(),
            timeout_minutes: defaults::scan_timeout_minutes(),
        }
    }
}

/// The artifact bucket's lifecycle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStore {
    /// Days after which noncurrent object versions expire (at least 1).
    #[serde(default = "defaults::noncurrent_version_expiration_days")]
    #[schemars(range(min = 1))]
    pub noncurrent_version_expiration_days: i32,
    /// Days after which incomplete multipart uploads are aborted (at least 1).
    #[serde(default = "defaults::abort_incomplete_upload_days")]
    #[schemars(range(min = 1))]
    pub abort_incomplete_upload_days: i32,
    /// Days after which artifacts expire (at least 1). CodePipeline writes each execution's
    /// artifacts under new keys, so without this nothing would ever be removed; keep it longer
    /// than an execution may wait at the approval, or the production deploy finds no artifact.
    #[serde(default = "defaults::artifact_expiration_days")]
    #[schemars(range(min = 1))]
    pub artifact_expiration_days: i32,
}

impl Default for ArtifactStore {
    fn default() -> Self {
        Self {
            noncurrent_version_expiration_days: defaults::noncurrent_version_expiration_days(),
            abort_incomplete_upload_days: defaults::abort_incomplete_upload_days(),
            artifact_expiration_days: defaults::artifact_expiration_days(),
        }
    }
}

/// The application container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name in the task definition: up to 255 letters, digits, underscores and
    /// hyphens (ECS's rule).
    #[serde(default = "defaults::container_name")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[a-zA-Z0-9_-]+$"))]
    pub name: String,
    /// TCP port the container listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Container health check, run by ECS inside the container. There is deliberately no
    /// default: the command runs in the team's image, which may hold no shell or HTTP client
    /// (distroless), and a default that cannot run would stop every task. Without one, the
    /// deployment circuit breaker still rolls back tasks that fail to start or exit; with one,
    /// it also rolls back tasks that run but are unhealthy, which is what a release wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// An ECS container health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.command[0] in ['CMD', 'CMD-SHELL'] && self.command.size() >= 2",
    "message": "healthCheck.command must start with CMD or CMD-SHELL followed by the command"
}]))]
pub struct HealthCheck {
    /// Command, starting with `CMD` or `CMD-SHELL`.
    #[schemars(length(min = 2, max = 32), inner(length(min = 1, max = 1024)))]
    pub command: Vec<String>,
    /// Seconds between checks (5 to 300).
    #[serde(default = "defaults::health_interval")]
    #[schemars(range(min = 5, max = 300))]
    pub interval_seconds: i32,
    /// Seconds before a check counts as failed (2 to 60).
    #[serde(default = "defaults::health_timeout")]
    #[schemars(range(min = 2, max = 60))]
    pub timeout_seconds: i32,
    /// Consecutive failures before the container is unhealthy (1 to 10).
    #[serde(default = "defaults::health_retries")]
    #[schemars(range(min = 1, max = 10))]
    pub retries: i32,
    /// Grace period after start before failures count (0 to 300).
    #[serde(default)]
    #[schemars(range(min = 0, max = 300))]
    pub start_period_seconds: i32,
}

/// Network: exactly one of `managed` or `existing`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.managed) != has(self.existing)",
    "message": "network must set exactly one of managed or existing"
}]))]
pub struct Network {
    /// A VPC the operator creates: public subnets, an internet gateway, no NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedNetwork>,
    /// Subnets and security groups that already exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<ExistingNetwork>,
}

/// A VPC created and owned by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "int(self.cidr.split('/')[1]) >= 16 && int(self.cidr.split('/')[1]) <= 24",
        "message": "network.managed.cidr must have a prefix length between /16 and /24"
    },
    {
        "rule": "isCIDR(self.cidr) && cidr(self.cidr).ip().family() == 4 && cidr(self.cidr) == cidr(self.cidr).masked()",
        "message": "network.managed.cidr must be an IPv4 network address such as 10.40.0.0/16 (valid octets, no host bits set)"
    }
]))]
pub struct ManagedNetwork {
    /// IPv4 CIDR block of the VPC, e.g. `10.40.0.0/16`.
    #[schemars(
        length(max = 18),
        regex(pattern = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$")
    )]
    pub cidr: String,
    /// Number of availability zones, one public subnet in each.
    #[serde(default = "defaults::availability_zones")]
    #[schemars(range(min = 2, max = 6))]
    pub availability_zones: i32,
}

/// Subnets and security groups that already exist.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingNetwork {
    /// Subnet IDs for the ECS services.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 32), regex(pattern = r"^subnet-[0-9a-f]{8,17}$"))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub subnet_ids: Vec<String>,
    /// Security group IDs for the ECS services.
    #[schemars(
        length(min = 1, max = 5),
        inner(length(max = 32), regex(pattern = r"^sg-[0-9a-f]{8,17}$"))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub security_group_ids: Vec<String>,
    /// Give tasks a public IP (needed in public subnets without NAT to pull images).
    #[serde(default)]
    pub assign_public_ip: bool,
}

/// The two deployment environments.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Environments {
    /// Staging: deployed automatically after the image-scan gate.
    pub staging: Environment,
    /// Production: deployed after the manual approval.
    pub production: Environment,
}

/// One ECS Fargate deployment environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.managementRoleArn) || has(self.accountId)",
        "message": "managementRoleArn needs accountId: it names the role to assume in that account"
    },
    {
        "rule": "!has(self.accountId) || has(self.managementRoleArn)",
        "message": "managementRoleArn is required when accountId names another AWS account; leave accountId out to deploy into the pipeline's own account"
    },
    {
        "rule": "!has(self.accountId) || !has(self.managementRoleArn) || self.managementRoleArn.split(':')[4] == self.accountId",
        "message": "managementRoleArn must be a role in the account named by accountId"
    },
    {
        "rule": "(has(self.accountId) ? self.accountId : '') == (has(oldSelf.accountId) ? oldSelf.accountId : '')",
        "message": "accountId cannot change: this environment's resources live in the account first given, and would be left behind there; to move an environment, create a new DeliveryPipeline for the new account and delete this one"
    },
    {
        "rule": "(self.cpu == 256 && self.memory in [512, 1024, 2048]) || (self.cpu == 512 && self.memory >= 1024 && self.memory <= 4096 && self.memory % 1024 == 0) || (self.cpu == 1024 && self.memory >= 2048 && self.memory <= 8192 && self.memory % 1024 == 0) || (self.cpu == 2048 && self.memory >= 4096 && self.memory <= 16384 && self.memory % 1024 == 0) || (self.cpu == 4096 && self.memory >= 8192 && self.memory <= 30720 && self.memory % 1024 == 0) || (self.cpu == 8192 && self.memory >= 16384 && self.memory <= 61440 && self.memory % 4096 == 0) || (self.cpu == 16384 && self.memory >= 32768 && self.memory <= 122880 && self.memory % 8192 == 0)",
        "message": "cpu and memory must be a valid Fargate combination, e.g. cpu 256 with memory 512, 1024 or 2048; cpu 1024 with memory 2048 to 8192 in steps of 1024"
    }
]))]
pub struct Environment {
    /// AWS account of this environment (12 digits). Leave out to use the pipeline's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{12}$"), length(min = 12, max = 12))]
    pub account_id: Option<String>,
    /// Role in `accountId` that the operator assumes to create this environment's resources.
    /// Required when `accountId` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
    )]
    pub management_role_arn: Option<String>,
    /// Fargate task CPU units.
    #[schemars(extend("enum" = [256, 512, 1024, 2048, 4096, 8192, 16384]))]
    pub cpu: i32,
    /// Fargate task memory in MiB; must fit the CPU size.
    #[schemars(range(min = 512, max = 122880))]
    pub memory: i32,
    /// Number of running tasks.
    #[serde(default = "defaults::desired_count")]
    #[schemars(range(min = 0, max = 1000))]
    pub desired_count: i32,
    /// Seconds ECS ignores failing health checks after a task starts.
    #[serde(default = "defaults::health_check_grace_period")]
    #[schemars(range(min = 0))]
    pub health_check_grace_period_seconds: i32,
    /// Plain-text environment variables of the container. Do not put secrets here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::container_env_vars")]
    pub environment: Vec<EnvVar>,
    /// Roll back automatically when a deployment fails (ECS deployment circuit breaker).
    #[serde(default = "defaults::yes")]
    pub circuit_breaker_rollback: bool,
    /// Managed policies attached to the application's task role, which has no permissions
    /// otherwise. AWS managed (`arn:aws:iam::aws:policy/...`) or in this environment's account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 10),
        inner(
            length(max = 2048),
            regex(pattern = r"^arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/[\w+=,.@/-]{1,512}$")
        )
    )]
    pub task_role_policy_arns: Vec<String>,
    /// This environment's network, used instead of `spec.network`: exactly one of `managed` or
    /// `existing`. Subnets and security groups belong to one AWS account, so an environment in
    /// another account (`accountId`) must set its own when `spec.network` is `existing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Extra IPv4 CIDR blocks allowed to reach the container port, besides the VPC's own CIDR,
    /// e.g. `203.0.113.0/24` (`0.0.0.0/0`: anyone). Needs a managed network: the operator does
    /// not change the rules of existing security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::ingress_cidrs")]
    pub allowed_ingress_cidrs: Vec<String>,
}

/// The manual approval before production.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Email addresses notified when an approval is waiting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::email_list")]
    pub notify_emails: Vec<String>,
    /// Text shown to the approver (1 to 1000 characters, CodePipeline's limits). Default: the
    /// image being released (`<repository>:<built tag>`) and the staging service it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000))]
    pub custom_data: Option<String>,
    /// Link shown to the approver, e.g. a release checklist. At most 1000 characters
    /// (CodePipeline's limit for action configuration values). Default: the staging service's
    /// health page in the AWS console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), regex(pattern = r"^https?://[^\s]+$"))]
    pub external_entity_link: Option<String>,
}

/// Notification subscribers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// Email addresses subscribed to pipeline notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::email_list")]
    pub emails: Vec<String>,
}

/// CloudWatch alarms on pipeline executions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Alarm (and notify) when an execution fails.
    #[serde(default = "defaults::yes")]
    pub failure_alarm: bool,
    /// Alarm (and notify) when an execution succeeds.
    #[serde(default = "defaults::yes")]
    pub success_alarm: bool,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            failure_alarm: true,
            success_alarm: true,
        }
    }
}

/// Whether the operator changes AWS or only reports how it differs from the spec.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, correct and delete the AWS resources.
    #[default]
    Manage,
    /// Read only: report differences, write nothing.
    ObserveOnly,
}

/// What deleting the DeliveryPipeline does to its AWS resources.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete every owned AWS resource (the KMS key is scheduled for deletion).
    #[default]
    Delete,
    /// Leave every AWS resource in place.
    Retain,
}

/// Schema defaults. Each is also the Rust default, so a spec read without server defaulting
/// (the offline `plan` command) means the same as one stored by the API server.
pub mod defaults {
    use std::collections::BTreeMap;

    pub fn yes() -> bool {
        true
    }
    pub fn log_retention_days() -> i32 {
        7
    }
    pub fn build_image() -> String {
        "aws/codebuild/standard:7.0".into()
    }
    pub fn build_timeout_minutes() -> i32 {
        30
    }
    pub fn dockerfile() -> String {
        "Dockerfile".into()
    }
    pub fn context() -> String {
        ".".into()
    }
    pub fn keep_last_images() -> i32 {
        10
    }
    pub fn fail_on() -> BTreeMap<String, i32> {
        BTreeMap::from([("CRITICAL".to_string(), 0)])
    }
    pub fn scan_timeout_minutes() -> i32 {
        15
    }
    pub fn noncurrent_version_expiration_days() -> i32 {
        30
    }
    pub fn artifact_expiration_days() -> i32 {
        30
    }
    pub fn abort_incomplete_upload_days() -> i32 {
        7
    }
    pub fn container_name() -> String {
        "app".into()
    }
    pub fn health_interval() -> i32 {
        30
    }
    pub fn health_timeout() -> i32 {
        5
    }
    pub fn health_retries() -> i32 {
        3
    }
    pub fn availability_zones() -> i32 {
        2
    }
    pub fn desired_count() -> i32 {
        1
    }
    pub fn health_check_grace_period() -> i32 {
        60
    }
}
