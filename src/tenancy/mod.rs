//! Tenancy: what the administrators' `DeliveryPolicy` objects allow a pipeline, decided from the
//! spec alone before any AWS call, and what they impose on every role it creates.
//!
//! Pure: the controller passes the namespace's labels and the policies it watches.

use std::collections::BTreeMap;
use std::fmt;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use wildmatch::WildMatch;

use crate::api::policy::AccountGrant;
use crate::api::{DeliveryPipelineSpec, DeliveryPolicy, DeliveryPolicyStatus, Environment};

/// The prefix of every external ID the operator sends.
pub const EXTERNAL_ID_PREFIX: &str = "delivery-operator";

/// The external ID every AssumeRole of a pipeline in `namespace` carries:
/// `delivery-operator:<cluster ID>:<namespace>`. Derived, never chosen by the tenant: a role
/// whose trust requires it can be assumed for that namespace of that cluster only.
pub fn external_id(cluster_id: &str, namespace: &str) -> String {
    format!("{EXTERNAL_ID_PREFIX}:{cluster_id}:{namespace}")
}

/// What the policies governing a namespace impose on its pipelines.
#[derive(Clone, Debug, PartialEq)]
pub struct Guardrails {
    /// The names of those policies (none: a single-team install).
    pub policies: Vec<String>,
    /// Permissions boundary of every role the operator creates.
    pub permissions_boundary_policy: Option<String>,
    /// IAM path of every role the operator creates (`/` when no policy sets one).
    pub role_path: String,
    /// Whether the operator may turn on EventBridge notifications of an S3 source bucket.
    pub manage_bucket_notifications: bool,
    /// Accounts the pipeline may live in, by policy (checked once its account is known).
    pipeline_accounts: Vec<(String, Vec<String>)>,
    /// Accounts each environment may live in, by policy.
    environment_accounts: Vec<(String, &'static str, Vec<String>)>,
}

/// Why a pipeline is refused: the field, the value and the policy that does not allow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub policy: String,
    pub field: String,
    pub value: String,
    pub why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{} ({})", self.why, self.policy)
        } else {
            write!(
                f,
                "{} {} is not allowed by DeliveryPolicy {}: {}",
                self.field, self.value, self.policy, self.why
            )
        }
    }
}

/// The namespaces' labels and the policies, as the controller sees them.
pub struct Policies<'a> {
    pub policies: &'a [std::sync::Arc<DeliveryPolicy>],
    /// Refuse pipelines of namespaces no policy selects (`--require-policy`).
    pub require_policy: bool,
}

impl Policies<'_> {
    /// The policies that select a namespace with these labels.
    pub fn governing<'p>(&'p self, labels: &BTreeMap<String, String>) -> Vec<&'p DeliveryPolicy> {
        self.policies
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| selects(p, labels))
            .collect()
    }

    /// Checks `spec` against every policy selecting its namespace; the guardrails they impose,
    /// or the first violation.
    pub fn admit(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        spec: &DeliveryPipelineSpec,
    ) -> Result<Guardrails, Violation> {
        let governing = self.governing(labels);
        if governing.is_empty() {
            if self.require_policy {
                return Err(Violation {
                    policy: "none".into(),
                    field: String::new(),
                    value: String::new(),
                    why: format!(
                        "no DeliveryPolicy selects namespace {namespace}, and the operator runs with --require-policy; ask the platform team to add one"
                    ),
                });
            }
            return Ok(Guardrails::unrestricted());
        }
        let mut guard = Guardrails::unrestricted();
        let mut boundary_from: Option<String> = None;
        let mut role_path: Option<String> = None;
        let mut path_from: Option<String> = None;
        for policy in governing {
            let name = policy.name_any();
            check(policy, spec)?;
            guard.policies.push(name.clone());
            let rules = &policy.spec;
            if let Some(boundary) = &rules.roles.permissions_boundary_policy {
                agree(
                    &mut guard.permissions_boundary_policy,
                    &mut boundary_from,
                    boundary,
                    &name,
                    "roles.permissionsBoundaryPolicy",
                )?;
            }
            if let Some(path) = &rules.roles.path {
                agree(&mut role_path, &mut path_from, path, &name, "roles.path")?;
            }
            guard.manage_bucket_notifications &= rules.sources.manage_bucket_notifications;
            if let Some(grants) = &rules.accounts.pipeline {
                guard
                    .pipeline_accounts
                    .push((name.clone(), account_ids(grants)));
            }
            for (env, grants) in [
                ("staging", &rules.accounts.staging),
                ("production", &rules.accounts.production),
            ] {
                if let Some(grants) = grants {
                    guard
                        .environment_accounts
                        .push((name.clone(), env, account_ids(grants)));
                }
            }
        }
        if let Some(path) = role_path {
            guard.role_path = path;
        }
        Ok(guard)
    }
}

impl Guardrails {
    /// What a namespace no policy governs gets: roles on `/`, no boundary, notifications managed.
    fn unrestricted() -> Self {
        Self {
            policies: Vec::new(),
            permissions_boundary_policy: None,
            role_path: "/".into(),
            manage_bucket_notifications: true,
            pipeline_accounts: Vec::new(),
            environment_accounts: Vec::new(),
        }
    }

    /// Checks the accounts the sessions resolved to: the pipeline's (`spec.credentials`, or the
    /// operator's own identity) and each environment's (its own, or the pipeline's).
    pub fn admit_accounts(
        &self,
        pipeline_account: &str,
        spec: &DeliveryPipelineSpec,
    ) -> Result<(), Violation> {
        for (policy, allowed) in &self.pipeline_accounts {
            if !allowed.iter().any(|a| a == pipeline_account) {
                let field = if spec.credentials.is_some() {
                    "spec.credentials.roleArn"
                } else {
                    "the operator's own account"
                };
                return Err(Violation {
                    policy: policy.clone(),
                    field: field.into(),
                    value: pipeline_account.into(),
                    why: "accounts.pipeline does not list this account".into(),
                });
            }
        }
        for (policy, env, allowed) in &self.environment_accounts {
            let environment = environment_of(spec, env);
            let account = environment
                .account_id
                .clone()
                .or_else(|| environment.management_role_arn.as_deref().map(arn_account))
                .unwrap_or_else(|| pipeline_account.to_string());
            if !allowed.contains(&account) {
                return Err(Violation {
                    policy: policy.clone(),
                    field: format!("spec.environments.{env}.accountId"),
                    value: account,
                    why: format!("accounts.{env} does not list this account"),
                });
            }
        }
        Ok(())
    }
}

/// How far a policy reaches: the namespaces it selects, the pipelines in them, and how many of
/// those it refuses (from their specs; account rules need the sessions and are not counted).
pub fn reach<'a>(
    policy: &DeliveryPolicy,
    namespaces: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    pipelines: impl IntoIterator<Item = (&'a str, &'a DeliveryPipelineSpec)> + Clone,
) -> DeliveryPolicyStatus {
    let mut status = DeliveryPolicyStatus {
        observed_generation: policy.metadata.generation,
        ..DeliveryPolicyStatus::default()
    };
    for (namespace, labels) in namespaces {
        if !selects(policy, labels) {
            continue;
        }
        status.namespaces += 1;
        for (_, spec) in pipelines
            .clone()
            .into_iter()
            .filter(|(ns, _)| *ns == namespace)
        {
            status.pipelines += 1;
            if check(policy, spec).is_err() {
                status.violations += 1;
            }
        }
    }
    status
}

fn selects(policy: &DeliveryPolicy, labels: &BTreeMap<String, String>) -> bool {
    // A selector the API server admitted always parses; one that does not selects nothing.
    Selector::try_from(policy.spec.namespace_selector.clone()).is_ok_and(|s| s.matches(labels))
}

fn account_ids(grants: &[AccountGrant]) -> Vec<String> {
    grants.iter().map(|g| g.account_id.clone()).collect()
}

fn arn_account(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or_default().to_string()
}

fn environment_of<'a>(spec: &'a DeliveryPipelineSpec, env: &str) -> &'a Environment {
    if env == "staging" {
        &spec.environments.staging
    } else {
        &spec.environments.production
    }
}

fn admitted(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| WildMatch::new(p).matches(value))
}

/// Two policies selecting one namespace must not ask for different values of a setting that can
/// have only one.
fn agree(
    current: &mut Option<String>,
    from: &mut Option<String>,
    value: &str,
    policy: &str,
    field: &str,
) -> Result<(), Violation> {
    match (current.as_deref(), from.as_deref()) {
        (Some(held), Some(other)) if held != value => Err(Violation {
            policy: format!("{other} and {policy}"),
            field: String::new(),
            value: String::new(),
            why: format!(
                "DeliveryPolicies {other} and {policy} both select this namespace with different {field} ({held}, {value}); the platform team must reconcile them"
            ),
        }),
        _ => {
            *current = Some(value.to_string());
            *from = Some(policy.to_string());
            Ok(())
        }
    }
}

/// Everything one policy decides from the spec alone.
fn check(policy: &DeliveryPolicy, spec: &DeliveryPipelineSpec) -> Result<(), Violation> {
    let name = policy.name_any();
    let refuse = |field: &str, value: &str, why: &str| Violation {
        policy: name.clone(),
        field: field.into(),
        value: value.into(),
        why: why.into(),
    };
    let rules = &policy.spec;

    if let Some(grants) = &rules.accounts.pipeline
        && let Some(credentials) = &spec.credentials
    {
        check_role(
            grants,
            &credentials.role_arn,
            "spec.credentials.roleArn",
            "accounts.pipeline",
            &refuse,
        )?;
    }
    for (env, grants) in [
        ("staging", &rules.accounts.staging),
        ("production", &rules.accounts.production),
    ] {
        let Some(grants) = grants else { continue };
        let environment = environment_of(spec, env);
        if let Some(role) = &environment.management_role_arn {
            check_role(
                grants,
                role,
                &format!("spec.environments.{env}.managementRoleArn"),
                &format!("accounts.{env}"),
                &refuse,
            )?;
        }
        if let Some(account) = &environment.account_id
            && !grants.iter().any(|g| g.account_id == *account)
        {
            return Err(refuse(
                &format!("spec.environments.{env}.accountId"),
                account,
                &format!("accounts.{env} does not list this account"),
            ));
        }
    }

    let sources = &rules.sources;
    if let (Some(allowed), Some(s3)) = (&sources.s3_buckets, &spec.source.s3)
        && !admitted(allowed, &s3.bucket)
    {
        return Err(refuse(
            "spec.source.s3.bucket",
            &s3.bucket,
            "sources.s3Buckets does not list it",
        ));
    }
    if let (Some(allowed), Some(repo)) =
        (&sources.code_commit_repositories, &spec.source.code_commit)
        && !admitted(allowed, &repo.repository)
    {
        return Err(refuse(
            "spec.source.codeCommit.repository",
            &repo.repository,
            "sources.codeCommitRepositories does not list it",
        ));
    }
    if let (Some(allowed), Some(connection)) = (&sources.connection_arns, &spec.source.connection)
        && !admitted(allowed, &connection.connection_arn)
    {
        return Err(refuse(
            "spec.source.connection.connectionArn",
            &connection.connection_arn,
            "sources.connectionArns does not list it",
        ));
    }

    if let Some(allowed) = &rules.build.images
        && !admitted(allowed, &spec.build.image)
    {
        return Err(refuse(
            "spec.build.image",
            &spec.build.image,
            "build.images does not list it",
        ));
    }

    for env in ["staging", "production"] {
        let environment = environment_of(spec, env);
        if let Some(allowed) = &rules.roles.task_role_policy_arns
            && let Some(arn) = environment
                .task_role_policy_arns
                .iter()
                .find(|arn| !admitted(allowed, arn))
        {
            return Err(refuse(
                &format!("spec.environments.{env}.taskRolePolicyArns"),
                arn,
                "roles.taskRolePolicyArns does not list it",
            ));
        }
        if !rules.network.allow_public_ingress
            && let Some(cidr) = environment
                .allowed_ingress_cidrs
                .iter()
                .find(|c| c.ends_with("/0"))
        {
            return Err(refuse(
                &format!("spec.environments.{env}.allowedIngressCidrs"),
                cidr,
                "network.allowPublicIngress is false: the service would be reachable from anywhere",
            ));
        }
    }
    Ok(())
}

/// A role is admitted when its account is granted and, if the grant lists roles, one matches;
/// a grant without `roleArns` admits no role to be assumed.
fn check_role(
    grants: &[AccountGrant],
    role_arn: &str,
    field: &str,
    rule: &str,
    refuse: &impl Fn(&str, &str, &str) -> Violation,
) -> Result<(), Violation> {
    let account = arn_account(role_arn);
    let Some(grant) = grants.iter().find(|g| g.account_id == account) else {
        return Err(refuse(
            field,
            role_arn,
            &format!("{rule} does not list account {account}"),
        ));
    };
    match &grant.role_arns {
        Some(roles) if admitted(roles, role_arn) => Ok(()),
        Some(_) => Err(refuse(
            field,
            role_arn,
            &format!("{rule}[{account}].roleArns does not list it"),
        )),
        None => Err(refuse(
            field,
            role_arn,
            &format!("{rule}[{account}] lists no roleArns, so no role may be assumed there"),
        )),
    }
}

#[cfg(test)]
mod tests;
