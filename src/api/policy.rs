//! The `DeliveryPolicy` API: what a platform team allows the namespaces it selects. Cluster-scoped,
//! so only cluster administrators write it; tenants cannot change what protects them.
//!
//! Every list is an allow list. A field left out places no restriction; a list that is present
//! admits only what it names (an empty list admits nothing). Where several policies select a
//! namespace, a pipeline must satisfy each of them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Guardrails a platform team sets for the namespaces it selects: which AWS accounts and roles
/// their pipelines may use, which sources, which managed policies task roles may carry, the
/// permissions boundary and IAM path of every role the operator creates, whether services may
/// be reachable from anywhere, and which build images may run.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.delivery-operator.dev",
    version = "v1alpha1",
    kind = "DeliveryPolicy",
    plural = "deliverypolicies",
    singular = "deliverypolicy",
    shortname = "dpol",
    category = "delivery",
    status = "DeliveryPolicyStatus",
    derive = "PartialEq",
    doc = "A DeliveryPolicy is a platform team's guardrails for the DeliveryPipelines of the namespaces it selects: accounts and roles, sources, task-role policies, the permissions boundary of every created role, public ingress and build images.",
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.namespaces",
        description = "Namespaces this policy selects"
    ),
    printcolumn(
        name = "Pipelines",
        type_ = "integer",
        json_path = ".status.pipelines",
        description = "DeliveryPipelines in the selected namespaces"
    ),
    printcolumn(
        name = "Violations",
        type_ = "integer",
        json_path = ".status.violations",
        description = "Pipelines this policy refuses"
    ),
    printcolumn(
        name = "Boundary",
        type_ = "string",
        json_path = ".spec.roles.permissionsBoundaryPolicy",
        description = "Permissions boundary of every IAM role the operator creates",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPolicySpec {
    /// The namespaces governed, by their labels (`{}` selects every namespace), e.g.
    /// `matchLabels: {team: payments}`.
    #[schemars(schema_with = "schema::label_selector")]
    pub namespace_selector: LabelSelector,
    /// AWS accounts, and roles in them, that pipelines and each environment may use.
    #[serde(default)]
    pub accounts: AccountRules,
    /// Sources pipelines may read.
    #[serde(default)]
    pub sources: SourceRules,
    /// What every IAM role the operator creates gets, and what task roles may carry.
    #[serde(default)]
    pub roles: RoleRules,
    /// Network exposure of the services.
    #[serde(default)]
    pub network: NetworkRules,
    /// Build settings.
    #[serde(default)]
    pub build: BuildRules,
}

/// Accounts per place: the pipeline's own (`spec.credentials`, or the operator's identity) and
/// each environment's (`environments.<env>.accountId` / `managementRoleArn`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRules {
    /// Accounts the pipeline may live in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub pipeline: Option<Vec<AccountGrant>>,
    /// Accounts the staging environment may live in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub staging: Option<Vec<AccountGrant>>,
    /// Accounts the production environment may live in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub production: Option<Vec<AccountGrant>>,
}

/// One account, and the roles the operator may assume there for a pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.roleArns) || self.roleArns.all(r, r.contains(':iam::' + self.accountId + ':role/'))",
    "message": "every roleArns pattern must name a role in accountId"
}]))]
pub struct AccountGrant {
    /// The 12-digit AWS account ID.
    #[schemars(length(min = 12, max = 12), regex(pattern = r"^[0-9]{12}$"))]
    pub account_id: String,
    /// Role ARNs that may be assumed in this account (`*` matches any run of characters, e.g.
    /// `arn:aws:iam::111111111111:role/payments-*`). Left out: a pipeline in this account uses
    /// the operator's own identity only (no `spec.credentials`), and an environment names no
    /// `managementRoleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::role_arn_patterns")]
    pub role_arns: Option<Vec<String>>,
}

/// Sources pipelines may read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRules {
    /// S3 buckets `source.s3.bucket` may name (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::name_patterns")]
    pub s3_buckets: Option<Vec<String>>,
    /// CodeCommit repositories `source.codeCommit.repository` may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::name_patterns")]
    pub code_commit_repositories: Option<Vec<String>>,
    /// Connection ARNs `source.connection.connectionArn` may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::name_patterns")]
    pub connection_arns: Option<Vec<String>>,
    /// Whether the operator may turn on EventBridge notifications of an S3 source bucket (it
    /// rewrites the bucket's notification configuration). False: a bucket without them is
    /// reported in the pipeline's condition, and the team's bucket owner turns them on.
    #[serde(default)]
    pub manage_bucket_notifications: bool,
}

/// IAM roles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRules {
    /// Managed policy every role the operator creates carries as its permissions boundary, by
    /// name (with its IAM path, if any, e.g. `boundaries/delivery-tenant`). It is resolved in
    /// each role's own account, so it must exist under that name in every account the selected
    /// namespaces' pipelines and environments use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^([\w+=,.@-]+/)*[\w+=,.@-]{1,128}$")
    )]
    pub permissions_boundary_policy: Option<String>,
    /// IAM path of every role the operator creates, e.g. `/delivery/payments/`, so
    /// administrators can scope their own policies to it. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = r"^/([\x21-\x2e\x30-\x7e]+/)*$"))]
    pub path: Option<String>,
    /// Managed policy ARNs `environments.<env>.taskRolePolicyArns` may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::policy_arn_patterns")]
    pub task_role_policy_arns: Option<Vec<String>>,
}

/// Network exposure.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRules {
    /// Whether `allowedIngressCidrs` may contain `0.0.0.0/0` (a service reachable from anywhere).
    #[serde(default)]
    pub allow_public_ingress: bool,
}

/// Build settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildRules {
    /// Build images `build.image` may name (`*` matches any run of characters, e.g.
    /// `aws/codebuild/standard:*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::name_patterns")]
    pub images: Option<Vec<String>>,
}

/// What the operator observed of the policy's reach.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPolicyStatus {
    /// Namespaces the selector matches.
    #[serde(default)]
    pub namespaces: i64,
    /// DeliveryPipelines in those namespaces.
    #[serde(default)]
    pub pipelines: i64,
    /// Of those, the pipelines this policy refuses.
    #[serde(default)]
    pub violations: i64,
    /// The spec generation these counts are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
