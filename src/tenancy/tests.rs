use std::sync::Arc;

use super::*;
use crate::api::DeliveryPipeline;

fn pipeline(file: &str) -> DeliveryPipelineSpec {
    let dp: DeliveryPipeline = serde_yaml::from_str(file).expect("example parses");
    dp.spec
}

fn minimal() -> DeliveryPipelineSpec {
    pipeline(include_str!("../../examples/minimal.yaml"))
}

fn policy(name: &str, spec: serde_json::Value) -> Arc<DeliveryPolicy> {
    let mut policy: DeliveryPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "pipelines.delivery-operator.dev/v1alpha1",
        "kind": "DeliveryPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("policy parses");
    policy.metadata.name = Some(name.into());
    Arc::new(policy)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn admit(
    policies: &[Arc<DeliveryPolicy>],
    spec: &DeliveryPipelineSpec,
) -> Result<Guardrails, Violation> {
    Policies {
        policies,
        require_policy: false,
    }
    .admit("payments", &labels(&[("team", "payments")]), spec)
}

#[test]
fn external_ids_differ_per_cluster_and_namespace() {
    assert_eq!(
        external_id("c1", "payments"),
        "delivery-operator:c1:payments"
    );
    assert_ne!(external_id("c1", "a"), external_id("c2", "a"));
    assert_ne!(external_id("c1", "a"), external_id("c1", "b"));
}

#[test]
fn without_a_policy_a_single_team_install_keeps_working() {
    let guard = admit(&[], &minimal()).expect("admitted");
    assert_eq!(guard.role_path, "/");
    assert_eq!(guard.permissions_boundary_policy, None);
    assert!(guard.manage_bucket_notifications);
}

#[test]
fn require_policy_refuses_ungoverned_namespaces() {
    let refused = Policies {
        policies: &[],
        require_policy: true,
    }
    .admit("payments", &BTreeMap::new(), &minimal())
    .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("no DeliveryPolicy selects namespace payments")
    );
}

#[test]
fn a_policy_applies_only_to_the_namespaces_it_selects() {
    let other = policy(
        "other",
        serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "search"}}, "build": {"images": []}}),
    );
    assert!(admit(std::slice::from_ref(&other), &minimal()).is_ok());
    let ours = policy(
        "payments",
        serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["payments"]}]}, "build": {"images": []}}),
    );
    let refused = admit(&[other, ours], &minimal()).expect_err("refused");
    assert_eq!(refused.policy, "payments");
    assert_eq!(refused.field, "spec.build.image");
}

#[test]
fn each_rule_names_the_field_value_and_policy() {
    let rules = policy(
        "guard",
        serde_json::json!({
            "namespaceSelector": {},
            "accounts": {
                "pipeline": [{"accountId": "111111111111", "roleArns": ["arn:aws:iam::111111111111:role/payments-*"]}],
                "staging": [{"accountId": "222222222222"}]
            },
            "sources": {"s3Buckets": ["payments-*"]},
            "roles": {"taskRolePolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]},
            "build": {"images": ["aws/codebuild/standard:*"]}
        }),
    );
    type Attack = Box<dyn Fn(&mut DeliveryPipelineSpec)>;
    let cases: Vec<(&str, Attack, &str)> = vec![
        (
            "another team's role",
            Box::new(|s| {
                s.credentials = Some(crate::api::Credentials {
                    role_arn: "arn:aws:iam::111111111111:role/search-deployer".into(),
                })
            }),
            "spec.credentials.roleArn",
        ),
        (
            "an account not granted",
            Box::new(|s| {
                s.credentials = Some(crate::api::Credentials {
                    role_arn: "arn:aws:iam::999999999999:role/payments-x".into(),
                })
            }),
            "spec.credentials.roleArn",
        ),
        (
            "a role in an account granted without roles",
            Box::new(|s| {
                s.environments.staging.management_role_arn =
                    Some("arn:aws:iam::222222222222:role/anything".into())
            }),
            "spec.environments.staging.managementRoleArn",
        ),
        (
            "another team's bucket",
            Box::new(|s| {
                if let Some(s3) = s.source.s3.as_mut() {
                    s3.bucket = "search-sources".into();
                }
            }),
            "spec.source.s3.bucket",
        ),
        (
            "administrator access on the task role",
            Box::new(|s| {
                s.environments.production.task_role_policy_arns =
                    vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()]
            }),
            "spec.environments.production.taskRolePolicyArns",
        ),
        (
            "ingress from anywhere",
            Box::new(|s| s.environments.staging.allowed_ingress_cidrs = vec!["0.0.0.0/0".into()]),
            "spec.environments.staging.allowedIngressCidrs",
        ),
        (
            "a custom build image",
            Box::new(|s| s.build.image = "attacker/image:latest".into()),
            "spec.build.image",
        ),
    ];
    let mut base = minimal();
    if let Some(s3) = base.source.s3.as_mut() {
        s3.bucket = "payments-sources".into();
    }
    assert!(
        admit(std::slice::from_ref(&rules), &base).is_ok(),
        "the legitimate spec is admitted"
    );
    for (what, attack, field) in cases {
        let mut spec = base.clone();
        attack(&mut spec);
        let refused = admit(std::slice::from_ref(&rules), &spec).expect_err(what);
        assert_eq!(refused.field, field, "{what}");
        assert_eq!(refused.policy, "guard", "{what}");
        assert!(
            refused.to_string().contains("DeliveryPolicy guard"),
            "{what}: {refused}"
        );
    }
}

#[test]
fn accounts_are_checked_once_the_sessions_resolve_them() {
    let rules = policy(
        "guard",
        serde_json::json!({
            "namespaceSelector": {},
            "accounts": {"pipeline": [{"accountId": "111111111111"}], "production": [{"accountId": "333333333333"}]}
        }),
    );
    let mut spec = minimal();
    spec.environments.production.account_id = Some("333333333333".into());
    let guard = admit(&[rules], &spec).expect("admitted from the spec");
    assert!(guard.admit_accounts("111111111111", &spec).is_ok());
    let refused = guard
        .admit_accounts("222222222222", &spec)
        .expect_err("operator account not granted");
    assert_eq!(refused.field, "the operator's own account");
    spec.environments.production.account_id = None;
    let refused = guard
        .admit_accounts("111111111111", &spec)
        .expect_err("production would live in the pipeline account");
    assert_eq!(refused.field, "spec.environments.production.accountId");
    assert_eq!(refused.value, "111111111111");
}

#[test]
fn boundary_and_path_come_from_the_policy_and_conflicts_are_refused() {
    let a = policy(
        "a",
        serde_json::json!({"namespaceSelector": {}, "roles": {"permissionsBoundaryPolicy": "tenant-boundary", "path": "/delivery/payments/"}}),
    );
    let guard = admit(std::slice::from_ref(&a), &minimal()).expect("admitted");
    assert_eq!(
        guard.permissions_boundary_policy.as_deref(),
        Some("tenant-boundary")
    );
    assert_eq!(guard.role_path, "/delivery/payments/");
    assert!(
        !guard.manage_bucket_notifications,
        "off unless a policy allows it"
    );
    let b = policy(
        "b",
        serde_json::json!({"namespaceSelector": {}, "roles": {"permissionsBoundaryPolicy": "other"}}),
    );
    let conflict = admit(&[a, b], &minimal()).expect_err("conflict");
    assert!(
        conflict
            .to_string()
            .contains("different roles.permissionsBoundaryPolicy")
    );
}

#[test]
fn wildcards_match_runs_of_characters_only_where_written() {
    assert!(admitted(
        &["arn:aws:iam::*:role/delivery-*".into()],
        "arn:aws:iam::111111111111:role/delivery-x"
    ));
    assert!(!admitted(
        &["arn:aws:iam::*:role/delivery-*".into()],
        "arn:aws:iam::111111111111:role/admin"
    ));
    assert!(admitted(&["exact".into()], "exact"));
    assert!(!admitted(&["exact".into()], "exactly"));
}

#[test]
fn reach_counts_selected_namespaces_their_pipelines_and_refusals() {
    let rules = policy(
        "guard",
        serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "payments"}}, "build": {"images": ["aws/codebuild/*"]}}),
    );
    let payments = labels(&[("team", "payments")]);
    let search = labels(&[("team", "search")]);
    let good = minimal();
    let mut bad = minimal();
    bad.build.image = "attacker/image".into();
    let status = reach(
        &rules,
        [("a", &payments), ("b", &payments), ("c", &search)],
        [("a", &good), ("a", &bad), ("b", &good), ("c", &bad)],
    );
    assert_eq!(
        (status.namespaces, status.pipelines, status.violations),
        (2, 3, 1)
    );
}
