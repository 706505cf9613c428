//! How the observed roles differ from the desired ones. Pure. Policies compare semantically:
//! IAM returns them URL-encoded and reordered.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::desired::{Role, Roles};
use crate::desired::policy::equivalent;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, tag_drift};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRole {
    pub arn: String,
    pub description: String,
    pub trust_policy: Value,
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Create the role with its trust policy and tags (its policies follow as their own changes).
    Create(String),
    Trust(String),
    Description(String),
    PutPolicy {
        role: String,
        policy: String,
    },
    DeletePolicy {
        role: String,
        policy: String,
    },
    Attach {
        role: String,
        policy_arn: String,
    },
    Detach {
        role: String,
        policy_arn: String,
    },
    Tags {
        role: String,
        plan: TagPlan,
    },
    /// A role no longer wanted: detached, emptied and deleted.
    Delete(String),
}

pub fn diff(d: &Roles, observed: &BTreeMap<String, ObservedRole>) -> Vec<Change> {
    let mut changes = Vec::new();
    for role in &d.roles {
        match observed.get(&role.name) {
            None => {
                changes.push(Change::Create(role.name.clone()));
                changes.extend(role_changes(role, &ObservedRole::default(), true));
            }
            Some(o) => changes.extend(role_changes(role, o, false)),
        }
    }
    changes.extend(
        d.retired
            .iter()
            .filter(|name| observed.contains_key(*name))
            .map(|name| Change::Delete(name.clone())),
    );
    changes
}

/// Changes to one role; a role just created already has its trust, description and tags.
fn role_changes(d: &Role, o: &ObservedRole, created: bool) -> Vec<Change> {
    let name = || d.name.clone();
    let mut changes = Vec::new();
    if !created {
        if !equivalent(&d.trust_policy, &o.trust_policy) {
            changes.push(Change::Trust(name()));
        }
        if d.description != o.description {
            changes.push(Change::Description(name()));
        }
        let tags = d.tags.plan(&o.tags);
        if !tags.is_empty() {
            changes.push(Change::Tags {
                role: name(),
                plan: tags,
            });
        }
    }
    for (policy, document) in &d.inline_policies {
        if !o
            .inline_policies
            .get(policy)
            .is_some_and(|actual| equivalent(document, actual))
        {
            changes.push(Change::PutPolicy {
                role: name(),
                policy: policy.clone(),
            });
        }
    }
    for policy in o.inline_policies.keys() {
        if !d.inline_policies.contains_key(policy) {
            changes.push(Change::DeletePolicy {
                role: name(),
                policy: policy.clone(),
            });
        }
    }
    for arn in d.managed_policy_arns.difference(&o.managed_policy_arns) {
        changes.push(Change::Attach {
            role: name(),
            policy_arn: arn.clone(),
        });
    }
    for arn in o.managed_policy_arns.difference(&d.managed_policy_arns) {
        changes.push(Change::Detach {
            role: name(),
            policy_arn: arn.clone(),
        });
    }
    changes
}

/// One change in words (policy documents are named, not printed).
pub fn describe(
    d: &Roles,
    observed: &BTreeMap<String, ObservedRole>,
    change: &Change,
) -> Vec<Drift> {
    let role = |name: &str| format!("IAM role {name}");
    vec![match change {
        Change::Create(name) => Drift::create(role(name)),
        Change::Delete(name) => Drift::delete(role(name)),
        Change::Trust(name) => Drift::field(role(name), "trust policy"),
        Change::Description(name) => Drift::value(
            role(name),
            "description",
            observed.get(name).map_or("", |o| o.description.as_str()),
            d.roles
                .iter()
                .find(|r| r.name == *name)
                .map_or("", |r| r.description.as_str()),
        ),
        Change::PutPolicy { role: name, policy } => {
            match observed
                .get(name)
                .map(|o| o.inline_policies.contains_key(policy))
            {
                Some(true) => Drift::field(role(name), format!("inline policy {policy}")),
                _ => Drift::create(format!("{} inline policy {policy}", role(name))),
            }
        }
        Change::DeletePolicy { role: name, policy } => {
            Drift::delete(format!("{} inline policy {policy}", role(name)))
        }
        Change::Attach {
            role: name,
            policy_arn,
        } => Drift::create(format!("{} attachment of {policy_arn}", role(name))),
        Change::Detach {
            role: name,
            policy_arn,
        } => Drift::delete(format!("{} attachment of {policy_arn}", role(name))),
        Change::Tags { role: name, plan } => {
            let empty = BTreeMap::new();
            let tags = observed.get(name).map_or(&empty, |o| &o.tags);
            return tag_drift(&role(name), plan, tags);
        }
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Env;
    use crate::desired::testing::{FULL, MINIMAL, context};
    use crate::groups::roles::desired::{environment, pipeline};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    fn in_sync(d: &Roles) -> BTreeMap<String, ObservedRole> {
        d.roles
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    ObservedRole {
                        arn: r.arn.clone(),
                        description: r.description.clone(),
                        trust_policy: r.trust_policy.clone(),
                        inline_policies: r.inline_policies.clone(),
                        managed_policy_arns: r.managed_policy_arns.clone(),
                        tags: r.tags.tags.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn roles_in_sync_need_nothing() {
        let d = pipeline(&context(FULL), KEY);
        assert_eq!(diff(&d, &in_sync(&d)), vec![]);
    }

    #[test]
    fn missing_roles_are_created_with_their_policies() {
        let d = environment(&context(FULL), Env::Production, KEY);
        let changes = diff(&d, &BTreeMap::new());
        let creates = changes
            .iter()
            .filter(|c| matches!(c, Change::Create(_)))
            .count();
        let puts = changes
            .iter()
            .filter(|c| matches!(c, Change::PutPolicy { .. }))
            .count();
        // Execution, task and deploy roles; the task role has no inline policy.
        assert_eq!((creates, puts), (3, 2), "{changes:?}");
    }

    #[test]
    fn an_edited_inline_policy_is_put_back() {
        let d = pipeline(&context(MINIMAL), KEY);
        let mut observed = in_sync(&d);
        let build = &d.roles[1].name;
        let edited = observed.get_mut(build).expect("build role");
        edited.inline_policies.insert(
            "build".into(),
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
        );
        edited
            .inline_policies
            .insert("extra".into(), serde_json::json!({}));
        assert_eq!(
            diff(&d, &observed),
            vec![
                Change::PutPolicy {
                    role: build.clone(),
                    policy: "build".into()
                },
                Change::DeletePolicy {
                    role: build.clone(),
                    policy: "extra".into()
                },
            ]
        );
    }

    #[test]
    fn managed_policies_follow_the_spec() {
        let mut c = context(MINIMAL);
        c.spec.environments.staging.task_role_policy_arns =
            vec!["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into()];
        let d = environment(&c, Env::Staging, KEY);
        let mut observed = in_sync(&d);
        let task = d.roles[1].name.clone();
        let o = observed.get_mut(&task).expect("task role");
        o.managed_policy_arns = BTreeSet::from(["arn:aws:iam::aws:policy/Old".to_string()]);
        assert_eq!(
            diff(&d, &observed),
            vec![
                Change::Attach {
                    role: task.clone(),
                    policy_arn: "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into()
                },
                Change::Detach {
                    role: task,
                    policy_arn: "arn:aws:iam::aws:policy/Old".into()
                },
            ]
        );
    }

    #[test]
    fn a_deploy_role_no_longer_needed_is_deleted() {
        let d = environment(&context(MINIMAL), Env::Staging, KEY);
        let mut observed = in_sync(&d);
        let retired = d.retired[0].clone();
        observed.insert(retired.clone(), ObservedRole::default());
        assert_eq!(diff(&d, &observed), vec![Change::Delete(retired)]);
    }
}
