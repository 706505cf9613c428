//! IAM roles, as an owned collection per account: the pipeline account's pipeline, build and
//! scan roles, and each environment's execution, task and (cross-account) deploy roles in that
//! environment's account. Each role has one trust policy and at most one inline policy.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use self::desired::Roles;
use self::diff::{Change, Observed, ObservedRole};
use super::kit::{check_owner, deletions, input, retag};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{
    AwsResultExt, AwsSession, IAM_PROPAGATION_RETRY, role_not_visible_yet, while_unseen,
};
use crate::desired::names::role::{BUILDER, DEPLOY, EXECUTION, PIPELINE, SCANNER, TASK, TRIGGER};
use crate::desired::policy::parse;
use crate::desired::{Env, PipelineContext};
use crate::engine::{Class, Drift, Failure, Key, Removal, Values};

const KIND: &str = "AWS::IAM::Role";
const NOT_FOUND: &[&str] = &["NoSuchEntity"];
/// `NoSuchEntity` for a role this reconcile created: IAM's eventual consistency.
const UNSEEN_ROLE: &[(&str, Class)] = &[("NoSuchEntity", Class::InProgress(IAM_PROPAGATION_RETRY))];

pub struct RoleSet {
    ctx: PipelineContext,
    /// None: the pipeline account's roles.
    env: Option<Env>,
}

impl RoleSet {
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

    /// The output key of each role this instance may own, by role name.
    fn outputs(&self) -> Vec<(String, Key)> {
        let names = self.ctx.names();
        match self.env {
            None => vec![
                (names.role(PIPELINE), keys::PIPELINE_ROLE_ARN),
                (names.role(BUILDER), keys::BUILD_ROLE_ARN),
                (names.role(SCANNER), keys::SCAN_ROLE_ARN),
                (names.role(TRIGGER), keys::TRIGGER_ROLE_ARN),
            ],
            Some(env) => {
                let scope = env.name();
                vec![
                    (
                        names.environment_role(env, EXECUTION),
                        keys::EXECUTION_ROLE_ARN.scoped(scope),
                    ),
                    (
                        names.environment_role(env, TASK),
                        keys::TASK_ROLE_ARN.scoped(scope),
                    ),
                    (
                        names.environment_role(env, DEPLOY),
                        keys::DEPLOY_ROLE_ARN.scoped(scope),
                    ),
                ]
            }
        }
    }

    /// The roles a resync looks for: those wanted, and those a spec change may have left
    /// (the trigger role once the source is a connection). Not the deploy role of an
    /// environment in the pipeline's account: environments cannot change account (refused at
    /// admission), so it never existed there, and reading it cannot find drift.
    fn possible(&self) -> Vec<(String, Key)> {
        self.outputs()
            .into_iter()
            .filter(|(_, key)| self.has_deploy_role() || key.name != keys::DEPLOY_ROLE_ARN.name)
            .collect()
    }

    async fn observe_roles(
        &self,
        aws: &AwsSession,
        names: Vec<(String, Key)>,
    ) -> Result<Option<Observed>, Failure> {
        let mut observed = Observed::new();
        for (name, _) in names {
            if let Some(role) = observe_role(aws, &name).await? {
                check_owner(&self.ctx, &diff::words(&name), &role.tags)?;
                observed.insert(name, role);
            }
        }
        Ok((!observed.is_empty()).then_some(observed))
    }

    fn has_deploy_role(&self) -> bool {
        self.env.is_some_and(|env| self.ctx.is_cross_account(env))
    }

    /// Whether the optional role behind `key` is wanted: the deploy role only for an
    /// environment in another account, the trigger role only for S3 and CodeCommit sources.
    fn wants(&self, key: Key) -> bool {
        match self.env {
            None if key == keys::TRIGGER_ROLE_ARN => self.ctx.has_trigger(),
            Some(env) if key == keys::DEPLOY_ROLE_ARN.scoped(env.name()) => self.has_deploy_role(),
            _ => true,
        }
    }
}

fn policy_text(operation: &str, text: &str) -> Result<serde_json::Value, Failure> {
    parse(text).ok_or_else(|| {
        Failure::terminal(
            "UnreadablePolicy",
            format!("{operation} returned a policy that is not JSON"),
        )
    })
}

async fn set_boundary(aws: &AwsSession, r: &desired::Role) -> Result<(), Failure> {
    let iam = aws.iam();
    match &r.permissions_boundary {
        Some(boundary) => {
            iam.put_role_permissions_boundary()
                .role_name(&r.name)
                .permissions_boundary(boundary)
                .send()
                .await
                .aws("iam:PutRolePermissionsBoundary")?;
        }
        None => {
            iam.delete_role_permissions_boundary()
                .role_name(&r.name)
                .send()
                .await
                .aws_tolerating("iam:DeleteRolePermissionsBoundary", NOT_FOUND)?;
        }
    }
    Ok(())
}

async fn observe_role(aws: &AwsSession, name: &str) -> Result<Option<ObservedRole>, Failure> {
    let iam = aws.iam();
    let Some(role) = iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .aws_tolerating("iam:GetRole", NOT_FOUND)?
        .and_then(|got| got.role)
    else {
        return Ok(None);
    };
    let mut observed = ObservedRole {
        arn: role.arn().to_string(),
        path: role.path().to_string(),
        permissions_boundary: role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
        description: role.description().unwrap_or_default().to_string(),
        trust_policy: match role.assume_role_policy_document() {
            Some(text) => policy_text("iam:GetRole", text)?,
            None => serde_json::Value::Null,
        },
        tags: from_sdk(role.tags()),
        ..ObservedRole::default()
    };
    // A role has at most a handful of inline and attached policies; one page each (the
    // defaults are 100) holds them all.
    let inline = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .aws("iam:ListRolePolicies")?;
    for policy in inline.policy_names() {
        let got = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .aws("iam:GetRolePolicy")?;
        observed.inline_policies.insert(
            policy.clone(),
            policy_text("iam:GetRolePolicy", got.policy_document())?,
        );
    }
    observed.managed_policy_arns = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .aws("iam:ListAttachedRolePolicies")?
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    Ok(Some(observed))
}

async fn detach(aws: &AwsSession, role: &str, policy_arn: &str) -> Result<(), Failure> {
    aws.iam()
        .detach_role_policy()
        .role_name(role)
        .policy_arn(policy_arn)
        .send()
        .await
        .aws_tolerating("iam:DetachRolePolicy", NOT_FOUND)?;
    Ok(())
}

async fn delete_policy(aws: &AwsSession, role: &str, policy: &str) -> Result<(), Failure> {
    aws.iam()
        .delete_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
        .aws_tolerating("iam:DeleteRolePolicy", NOT_FOUND)?;
    Ok(())
}

/// Removes a role's policies, then the role (IAM refuses to delete a role with policies).
async fn delete_role(aws: &AwsSession, name: &str, o: &ObservedRole) -> Result<(), Failure> {
    for arn in &o.managed_policy_arns {
        detach(aws, name, arn).await?;
    }
    for policy in o.inline_policies.keys() {
        delete_policy(aws, name, policy).await?;
    }
    aws.iam()
        .delete_role()
        .role_name(name)
        .send()
        .await
        .aws_tolerating("iam:DeleteRole", NOT_FOUND)?;
    Ok(())
}

impl Group for RoleSet {
    type Desired = Roles;
    type Observed = Observed;

    fn names(&self) -> Names {
        let kind = match self.env {
            None => "pipeline, build, scan and trigger IAM roles",
            Some(_) => "IAM roles",
        };
        Names::new("RolesReady", kind)
    }

    fn environment(&self) -> Option<Env> {
        self.env
    }

    fn needs(&self) -> Vec<Key> {
        let mut needs = vec![keys::KMS_KEY_ARN];
        // The deploy role's trust names the pipeline role, which must exist first.
        if self.has_deploy_role() {
            needs.push(keys::PIPELINE_ROLE_ARN);
        }
        needs
    }

    fn provides(&self) -> Vec<Key> {
        let mut provides: Vec<Key> = self
            .outputs()
            .into_iter()
            .map(|(_, k)| k)
            .filter(|k| self.wants(*k))
            .collect();
        // The environment's roles are made in its account: they say which it is.
        if let Some(env) = self.env {
            provides.push(keys::ENVIRONMENT_ACCOUNT_ID.scoped(env.name()));
        }
        provides
    }

    fn predicted(&self, at: &Placement) -> Values {
        let arns = self.ctx.arns();
        self.outputs()
            .into_iter()
            .filter(|(_, key)| self.provides().contains(key))
            .map(|(name, key)| (key, arns.role(&at.account_id, &name)))
            .collect()
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Roles, Failure> {
        let key = input(inputs, keys::KMS_KEY_ARN)?;
        Ok(match self.env {
            None => desired::pipeline(&self.ctx, key),
            Some(env) => desired::environment(&self.ctx, env, key),
        })
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        self.observe_roles(aws, self.possible()).await
    }

    /// Deletion looks for every role this instance could ever have made.
    async fn observe_for_deletion(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        self.observe_roles(aws, self.outputs()).await
    }

    fn removal(&self, observed: &Observed) -> Option<Vec<Drift>> {
        Some(deletions(diff::ROLE, observed.keys()))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let iam = &aws.iam();
        let role = |name: &str| d.roles.iter().find(|r| r.name == name);
        for change in changes {
            match change {
                Change::Create(name) => {
                    let Some(r) = role(&name) else { continue };
                    iam.create_role()
                        .role_name(&r.name)
                        .path(&r.path)
                        .set_permissions_boundary(r.permissions_boundary.clone())
                        .description(&r.description)
                        .assume_role_policy_document(r.trust_policy.to_string())
                        .set_tags(Some(to_sdk(&r.tags.tags)?))
                        .send()
                        .await
                        .aws("iam:CreateRole")?;
                }
                Change::Trust(name) => {
                    let Some(r) = role(&name) else { continue };
                    iam.update_assume_role_policy()
                        .role_name(&r.name)
                        .policy_document(r.trust_policy.to_string())
                        .send()
                        .await
                        .aws("iam:UpdateAssumeRolePolicy")?;
                }
                Change::Boundary(name) => {
                    let Some(r) = role(&name) else { continue };
                    set_boundary(aws, r).await?;
                }
                Change::Description(name) => {
                    let Some(r) = role(&name) else { continue };
                    iam.update_role()
                        .role_name(&r.name)
                        .description(&r.description)
                        .send()
                        .await
                        .aws("iam:UpdateRole")?;
                }
                Change::PutPolicy { role: name, policy } => {
                    let Some(document) = role(&name).and_then(|r| r.inline_policies.get(&policy))
                    else {
                        continue;
                    };
                    // Right after CreateRole, IAM may not show the role yet: a few quick
                    // tries, then "in progress" rather than a bad request.
                    while_unseen(NOT_FOUND, || {
                        iam.put_role_policy()
                            .role_name(&name)
                            .policy_name(&policy)
                            .policy_document(document.to_string())
                            .send()
                    })
                    .await
                    .aws_with("iam:PutRolePolicy", UNSEEN_ROLE)
                    .map_err(|f| role_not_visible_yet(f, &name))?;
                }
                Change::DeletePolicy { role: name, policy } => {
                    delete_policy(aws, &name, &policy).await?;
                }
                Change::Attach {
                    role: name,
                    policy_arn,
                } => {
                    while_unseen(NOT_FOUND, || {
                        iam.attach_role_policy()
                            .role_name(&name)
                            .policy_arn(&policy_arn)
                            .send()
                    })
                    .await
                    .aws_with("iam:AttachRolePolicy", UNSEEN_ROLE)
                    .map_err(|f| role_not_visible_yet(f, &name))?;
                }
                Change::Detach {
                    role: name,
                    policy_arn,
                } => {
                    detach(aws, &name, &policy_arn).await?;
                }
                Change::Tags { role: name, plan } => {
                    let name = name.as_str();
                    retag(iam, name, plan).await?;
                }
                Change::Delete(name) => {
                    if let Some(observed) = o.get(&name) {
                        delete_role(aws, &name, observed).await?;
                    }
                }
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        for (name, role) in &o {
            delete_role(aws, name, role).await?;
        }
        Ok(Removal::Gone)
    }

    /// IAM is checked whole at most every `--iam-check-interval-seconds` (it is global and
    /// throttled account-wide); between checks a resync takes the ARNs from the names.
    fn unobserved(&self, at: &Placement, desired: &Roles) -> Option<Produced> {
        Some(self.produced(at, desired, &Observed::new()))
    }

    fn produced(&self, at: &Placement, d: &Roles, _o: &Observed) -> Produced {
        let outputs: BTreeMap<String, Key> = self.outputs().into_iter().collect();
        let start = match self.env {
            Some(env) => Produced::default().value(
                keys::ENVIRONMENT_ACCOUNT_ID.scoped(env.name()),
                &at.account_id,
            ),
            None => Produced::default(),
        };
        d.roles.iter().fold(start, |produced, role| {
            let produced = produced.owns(KIND, &role.arn, at);
            match outputs.get(&role.name) {
                Some(key) => produced.value(*key, &role.arn),
                None => produced,
            }
        })
    }
}
