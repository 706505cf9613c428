//! How the observed roles differ from the desired ones. Pure. Policies compare semantically:
//! IAM returns them URL-encoded and reordered.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::desired::{Role, Roles};
use crate::desired::policy::equivalent;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, tag_change};
use crate::groups::{Changes, Diff};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRole {
    pub arn: String,
    pub path: String,
    pub permissions_boundary: Option<String>,
    pub description: String,
    pub trust_policy: Value,
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

/// The roles found, by name.
pub type Observed = BTreeMap<String, ObservedRole>;

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Create the role with its path, boundary, trust policy and tags (its policies follow as
    /// their own changes).
    Create(String),
    /// Set the role's permissions boundary to the desired one (or remove it).
    Boundary(String),
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

/// What a role is called in words.
pub const ROLE: &str = "IAM role";

/// A role in words.
pub fn words(name: &str) -> String {
    format!("{ROLE} {name}")
}

impl Diff<Observed> for Roles {
    type Change = Change;

    /// Policy documents are named in the words, not printed.
    fn diff(&self, observed: &Observed) -> Changes<Change> {
        let mut changes = Changes::new();
        for role in &self.roles {
            match observed.get(&role.name) {
                None => {
                    changes.push(
                        Change::Create(role.name.clone()),
                        Drift::create(words(&role.name)),
                    );
                    changes.extend(role_changes(role, &ObservedRole::default(), true));
                }
                // IAM cannot move a role to another path: it is made again there (the
                // delete comes first, so the name is free).
                Some(o) if o.path != role.path => {
                    let drift = Drift::value(words(&role.name), "path", &o.path, &role.path);
                    changes.push(Change::Delete(role.name.clone()), drift);
                    changes.push(
                        Change::Create(role.name.clone()),
                        Drift::create(words(&role.name)),
                    );
                    changes.extend(role_changes(role, &ObservedRole::default(), true));
                }
                Some(o) => changes.extend(role_changes(role, o, false)),
            }
        }
        for name in self
            .retired
            .iter()
            .filter(|name| observed.contains_key(*name))
        {
            changes.push(Change::Delete(name.clone()), Drift::delete(words(name)));
        }
        changes
    }
}

/// Changes to one role; a role just created already has its trust, description and tags.
fn role_changes(d: &Role, o: &ObservedRole, created: bool) -> Changes<Change> {
    let role = words(&d.name);
    let name = || d.name.clone();
    let mut changes = Changes::new();
    if !created {
        if !equivalent(&d.trust_policy, &o.trust_policy) {
            changes.push(Change::Trust(name()), Drift::field(&role, "trust policy"));
        }
        if d.permissions_boundary != o.permissions_boundary {
            let drift = Drift::value(
                &role,
                "permissions boundary",
                o.permissions_boundary.as_deref().unwrap_or("none"),
                d.permissions_boundary.as_deref().unwrap_or("none"),
            );
            changes.push(Change::Boundary(name()), drift);
        }
        if d.description != o.description {
            let drift = Drift::value(&role, "description", &o.description, &d.description);
            changes.push(Change::Description(name()), drift);
        }
        tag_change(&mut changes, &role, &d.tags, &o.tags, |plan| Change::Tags {
            role: name(),
            plan,
        });
    }
    for (policy, document) in &d.inline_policies {
        let drift = match o.inline_policies.get(policy) {
            Some(actual) if equivalent(document, actual) => continue,
            Some(_) => Drift::field(&role, format!("inline policy {policy}")),
            None => Drift::create(format!("{role} inline policy {policy}")),
        };
        let change = Change::PutPolicy {
            role: name(),
            policy: policy.clone(),
        };
        changes.push(change, drift);
    }
    for policy in o.inline_policies.keys() {
        if !d.inline_policies.contains_key(policy) {
            let change = Change::DeletePolicy {
                role: name(),
                policy: policy.clone(),
            };
            changes.push(
                change,
                Drift::delete(format!("{role} inline policy {policy}")),
            );
        }
    }
    for arn in d.managed_policy_arns.difference(&o.managed_policy_arns) {
        let change = Change::Attach {
            role: name(),
            policy_arn: arn.clone(),
        };
        changes.push(change, Drift::create(format!("{role} attachment of {arn}")));
    }
    for arn in o.managed_policy_arns.difference(&d.managed_policy_arns) {
        let change = Change::Detach {
            role: name(),
            policy_arn: arn.clone(),
        };
        changes.push(change, Drift::delete(format!("{role} attachment of {arn}")));
    }
    changes
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
                        path: r.path.clone(),
                        permissions_boundary: r.permissions_boundary.clone(),
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
        assert_eq!(d.diff(&in_sync(&d)), vec![]);
    }

    #[test]
    fn missing_roles_are_created_with_their_policies() {
        let d = environment(&context(FULL), Env::Production, KEY);
        let changes = d.diff(&Observed::new());
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
            d.diff(&observed),
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
            d.diff(&observed),
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
        assert_eq!(d.diff(&observed), vec![Change::Delete(retired)]);
    }
}
