//! Pure desired-state rendering: spec -> names, tags, policies and settings of every AWS
//! resource. No I/O happens here, so everything is unit-tested and the offline `plan` command
//! shows exactly what the operator would create.

pub mod arns;
pub mod names;
pub mod policy;
pub mod tags;

use crate::api::{DeliveryPipeline, DeliveryPipelineSpec, Environment, Network};

/// A deployment environment: per-environment groups have one instance each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Env {
    Staging,
    Production,
}

impl Env {
    pub const ALL: [Env; 2] = [Env::Staging, Env::Production];

    /// Lower case, as in `spec.environments.<name>` and scoped keys.
    pub fn name(self) -> &'static str {
        match self {
            Env::Staging => "staging",
            Env::Production => "production",
        }
    }

    /// Capitalised, as in condition types (`StagingLogGroupsReady`).
    pub fn title(self) -> &'static str {
        match self {
            Env::Staging => "Staging",
            Env::Production => "Production",
        }
    }

    pub fn spec(self, spec: &DeliveryPipelineSpec) -> &Environment {
        match self {
            Env::Staging => &spec.environments.staging,
            Env::Production => &spec.environments.production,
        }
    }
}

/// Everything a renderer needs to know about one pipeline: who owns it and where it lives.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineContext {
    pub namespace: String,
    pub name: String,
    pub spec: DeliveryPipelineSpec,
    /// The AWS account the pipeline's own resources live in.
    pub account_id: String,
    /// The AWS region the pipeline's own resources live in.
    pub region: String,
    /// User tag keys applied earlier that the spec no longer has: removed from every resource.
    pub retired_tag_keys: Vec<String>,
    /// The cluster it belongs to and what the administrators' policies impose on it.
    pub tenancy: Tenancy,
}

/// What the pipeline's cluster and the administrators' `DeliveryPolicy` objects impose.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenancy {
    /// The operator's cluster identity: part of the owner tag, so two clusters sharing an
    /// account never adopt each other's resources. Empty for the offline plan.
    pub cluster_id: String,
    /// Permissions boundary of every IAM role created: a managed policy's name (with its path),
    /// resolved in each role's own account.
    pub permissions_boundary_policy: Option<String>,
    /// IAM path of every role created.
    pub role_path: String,
    /// Whether the operator may turn on EventBridge notifications of an S3 source bucket.
    pub manage_bucket_notifications: bool,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            cluster_id: String::new(),
            permissions_boundary_policy: None,
            role_path: "/".into(),
            manage_bucket_notifications: true,
        }
    }
}

impl PipelineContext {
    /// The context of `dp` in an account and region. User tag keys the status records as
    /// applied but the spec no longer has are retired. A manifest without a namespace (the
    /// offline plan of a file) is in `default`, as kubectl would put it.
    pub fn of(dp: &DeliveryPipeline, account_id: &str, region: &str) -> Self {
        Self {
            namespace: dp
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: dp.metadata.name.clone().unwrap_or_default(),
            spec: dp.spec.clone(),
            account_id: account_id.into(),
            region: region.into(),
            retired_tag_keys: dp
                .status
                .as_ref()
                .map(|s| {
                    s.applied_tag_keys
                        .iter()
                        .filter(|k| !dp.spec.tags.contains_key(*k))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            tenancy: Tenancy::default(),
        }
    }

    /// The same pipeline, under `tenancy`.
    pub fn governed(self, tenancy: Tenancy) -> Self {
        Self { tenancy, ..self }
    }

    /// Whether a source change starts the pipeline through an EventBridge rule (S3 and
    /// CodeCommit sources; a CodeConnections source starts it itself).
    pub fn has_trigger(&self) -> bool {
        self.spec.source.s3.is_some() || self.spec.source.code_commit.is_some()
    }

    /// The AWS console of the pipeline's partition and region.
    pub fn console(&self) -> String {
        let region = &self.region;
        match self.partition() {
            "aws-cn" => format!("https://{region}.console.amazonaws.cn"),
            "aws-us-gov" => "https://console.amazonaws-us-gov.com".into(),
            _ => format!("https://{region}.console.aws.amazon.com"),
        }
    }

    /// AWS partition of the region (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &'static str {
        partition_of(&self.region)
    }

    /// `namespace/name`, how people name the pipeline (descriptions, messages).
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `<cluster ID>/namespace/name`, the value of the owner tag (`namespace/name` in the
    /// offline plan, which knows no cluster).
    pub fn owner(&self) -> String {
        if self.tenancy.cluster_id.is_empty() {
            self.display_name()
        } else {
            format!(
                "{}/{}/{}",
                self.tenancy.cluster_id, self.namespace, self.name
            )
        }
    }

    pub fn names(&self) -> names::Names<'_> {
        names::Names::new(self)
    }

    /// The account an environment lives in (the pipeline's unless `accountId` says otherwise).
    pub fn environment_account(&self, env: Env) -> String {
        env.spec(&self.spec)
            .account_id
            .clone()
            .unwrap_or_else(|| self.account_id.clone())
    }

    /// True when the environment lives in another account than the pipeline: it then has a
    /// deploy role the pipeline assumes, and resource policies grant its roles.
    pub fn is_cross_account(&self, env: Env) -> bool {
        self.environment_account(env) != self.account_id
    }

    /// The environments in other accounts than the pipeline's, in order.
    pub fn cross_account_environments(&self) -> Vec<Env> {
        Env::ALL
            .into_iter()
            .filter(|env| self.is_cross_account(*env))
            .collect()
    }

    /// The network an environment runs in: its own (`environments.<env>.network`), else
    /// `spec.network`. The API requires one of them.
    pub fn network(&self, env: Env) -> Option<&Network> {
        env.spec(&self.spec)
            .network
            .as_ref()
            .or(self.spec.network.as_ref())
    }

    pub fn arns(&self) -> arns::Arns<'_> {
        arns::Arns::new(self)
    }
}

pub use crate::aws::partition_of;

#[cfg(test)]
pub(crate) mod testing {
    use super::PipelineContext;
    use crate::api::DeliveryPipeline;

    pub const FULL: &str = include_str!("../../examples/cross-account.yaml");
    pub const MINIMAL: &str = include_str!("../../examples/minimal.yaml");

    pub fn context(manifest: &str) -> PipelineContext {
        let dp: DeliveryPipeline = serde_yaml::from_str(manifest).expect("example parses");
        PipelineContext {
            namespace: dp
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: dp.metadata.name.clone().expect("example has a name"),
            spec: dp.spec,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            retired_tag_keys: Vec::new(),
            tenancy: super::Tenancy::default(),
        }
    }
}
