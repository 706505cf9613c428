//! Tenancy: each attack a tenant would try against a shared operator, on the real API server and
//! the emulator. The attack makes no AWS write (the emulator's own record), its pipeline's
//! `PolicyCompliant` condition names the refused field, and the legitimate neighbour stays Ready.
//! Then: a permission taken away turns the neighbour's condition False without deleting
//! anything; every role the operator created carries the policy's boundary and path; the
//! outputs ConfigMap of another owner is left alone; a source bucket the policy does not let the
//! operator change keeps its notification configuration; and another cluster's operator does
//! not adopt this cluster's resources.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_iam::types::Role;
use delivery_operator::api::{DeliveryPipeline, DeliveryPolicy, OutputsSpec, S3Source};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{self, count};
use crate::support::{
    ACCOUNT, Operator, aws_config, condition, eventually, example, is_ready, kube_client, s3,
    source_bucket, unique, wait_ready,
};

const WAIT: Duration = Duration::from_secs(120);
const POLICY_COMPLIANT: &str = "PolicyCompliant";

/// A namespace labelled `team=<team>`.
async fn team_namespace(team: &str) -> String {
    let client = kube_client("admin").await;
    let name = unique("tenant");
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": team}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(client)
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Creates (or replaces) the cluster-scoped policy `name` with `spec`.
async fn apply_policy(name: &str, spec: serde_json::Value) {
    let policies: Api<DeliveryPolicy> = Api::all(kube_client("admin").await);
    let policy = json!({
        "apiVersion": "pipelines.delivery-operator.dev/v1alpha1",
        "kind": "DeliveryPolicy",
        "metadata": {"name": name},
        "spec": spec,
    });
    policies
        .patch(
            name,
            &PatchParams::apply("tenancy-test").force(),
            &Patch::Apply(&policy),
        )
        .await
        .expect("apply policy");
}

async fn delete_policy(name: &str) {
    let policies: Api<DeliveryPolicy> = Api::all(kube_client("admin").await);
    let _ = policies.delete(name, &DeleteParams::default()).await;
}

fn with_source(dp: &mut DeliveryPipeline, bucket: &str) {
    dp.spec.source.s3 = Some(S3Source {
        bucket: bucket.into(),
        object_key: "app.zip".into(),
    });
}

/// Waits until `name`'s condition `type_` is False with `reason`, and returns it.
async fn failed_with(
    api: &Api<DeliveryPipeline>,
    name: &str,
    type_: &str,
    reason: &str,
) -> delivery_operator::api::Condition {
    eventually(
        &format!("{name}: {type_} False, {reason}"),
        WAIT,
        || async {
            let dp = api.get(name).await.ok()?;
            condition(&dp, type_)
                .filter(|c| c.status == "False" && c.reason == reason)
                .cloned()
        },
    )
    .await
}

/// Waits until `name`'s `PolicyCompliant` condition is False, and returns its message.
async fn refused(api: &Api<DeliveryPipeline>, name: &str) -> String {
    failed_with(api, name, POLICY_COMPLIANT, "PolicyViolation")
        .await
        .message
}

/// A customer managed policy allowing `actions` (IAM requires a boundary or an attached policy to
/// exist).
async fn managed_policy(prefix: &str, actions: &[&str]) -> String {
    let iam = aws_sdk_iam::Client::new(&aws_config().await);
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    });
    iam.create_policy()
        .policy_name(unique(prefix))
        .policy_document(document.to_string())
        .send()
        .await
        .expect("create boundary policy")
        .policy()
        .and_then(|p| p.arn())
        .expect("policy arn")
        .to_string()
}

/// The permissions boundary of role `name` in `account`, as IAM reports it (GetRole: ListRoles
/// leaves it out).
async fn boundary_of(account: &str, name: &str) -> Option<String> {
    aws_sdk_iam::Client::new(&crate::support::config_for(account).await)
        .get_role()
        .role_name(name)
        .send()
        .await
        .expect("get role")
        .role?
        .permissions_boundary?
        .permissions_boundary_arn
}

/// How many IAM roles the pipeline's inventory lists.
fn owned_roles(dp: &DeliveryPipeline) -> usize {
    dp.status.as_ref().map_or(0, |s| {
        s.inventory
            .iter()
            .filter(|i| i.kind == "AWS::IAM::Role")
            .count()
    })
}

/// Every role on `path` in `account` (paged), by name.
async fn roles_on_path(account: &str, path: &str) -> BTreeMap<String, Role> {
    let iam = aws_sdk_iam::Client::new(&crate::support::config_for(account).await);
    let mut pages = iam
        .list_roles()
        .path_prefix(path)
        .max_items(5)
        .into_paginator()
        .items()
        .send();
    let mut roles = BTreeMap::new();
    while let Some(role) = pages.next().await {
        let role = role.expect("list roles");
        roles.insert(role.role_name().to_string(), role);
    }
    roles
}

#[tokio::test]
async fn each_tenant_attack_is_refused_without_an_aws_write_and_the_neighbour_stays_ready() {
    let team = unique("team");
    let ns = team_namespace(&team).await;
    let policy_name = unique("guard");
    let boundary = managed_policy(
        "tenant-boundary",
        &[
            "s3:*",
            "ecr:*",
            "logs:*",
            "kms:*",
            "codebuild:*",
            "codepipeline:*",
            "ecs:*",
            "sns:*",
            "iam:PassRole",
        ],
    )
    .await;
    let app_read = managed_policy("app-read", &["s3:GetObject"]).await;
    let path = format!("/delivery/{team}/");
    let allowed_bucket = source_bucket(&s3(&aws_config().await), true, true).await;
    let policy = |pipeline_account: &str| {
        json!({
            "namespaceSelector": {"matchLabels": {"team": team}},
            "accounts": {
                "pipeline": [{"accountId": pipeline_account, "roleArns": [format!("arn:aws:iam::{pipeline_account}:role/{team}-*")]}],
                "staging": [{"accountId": ACCOUNT}],
                "production": [{"accountId": ACCOUNT}]
            },
            "sources": {
                "s3Buckets": [allowed_bucket],
                "codeCommitRepositories": [format!("{team}-*")],
                "connectionArns": [format!("arn:aws:codeconnections:us-east-1:{ACCOUNT}:connection/{team}-*")],
                "manageBucketNotifications": false
            },
            "roles": {
                "permissionsBoundaryPolicy": boundary.rsplit('/').next().expect("policy name"),
                "path": path,
                "taskRolePolicyArns": [app_read]
            },
            "build": {"images": ["aws/codebuild/standard:*"]}
        })
    };
    apply_policy(&policy_name, policy(ACCOUNT)).await;
    let operator = Operator::start(&ns, &[]);
    let api: Api<DeliveryPipeline> = Api::namespaced(kube_client("admin").await, &ns);

    // The legitimate neighbour: admitted, Ready, and every role it has carries the boundary.
    let mut neighbour = example("minimal.yaml", &ns, "neighbour");
    with_source(&mut neighbour, &allowed_bucket);
    neighbour.spec.environments.staging.task_role_policy_arns = vec![app_read.clone()];
    api.create(&PostParams::default(), &neighbour)
        .await
        .expect("create neighbour");
    let ready = wait_ready(&api, "neighbour", 1).await;
    let admitted = condition(&ready, POLICY_COMPLIANT).expect("PolicyCompliant");
    assert_eq!(admitted.status, "True");
    assert!(
        admitted.message.contains(&policy_name),
        "{}",
        admitted.message
    );
    let roles = roles_on_path(ACCOUNT, &path).await;
    let created = owned_roles(&ready);
    assert!(created >= 5, "the pipeline's roles: {created}");
    assert_eq!(roles.len(), created, "every role is on the policy's path");
    for (name, role) in &roles {
        assert_eq!(
            boundary_of(ACCOUNT, name).await.as_deref(),
            Some(boundary.as_str()),
            "{name} carries the boundary"
        );
        assert!(
            role.arn().contains(&format!(":role{path}")),
            "{}",
            role.arn()
        );
    }

    // Each attack, as its own pipeline in the same namespace.
    let foreign_bucket = source_bucket(&s3(&aws_config().await), true, true).await;
    type Attack = Box<dyn Fn(&mut DeliveryPipeline)>;
    let attacks: Vec<(&str, Attack, &str)> = vec![
        (
            "admin-task-role",
            Box::new(|dp| {
                dp.spec.environments.production.task_role_policy_arns =
                    vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()]
            }),
            "spec.environments.production.taskRolePolicyArns",
        ),
        (
            "foreign-bucket",
            Box::new(move |dp| with_source(dp, &foreign_bucket)),
            "spec.source.s3.bucket",
        ),
        (
            "foreign-repository",
            Box::new(|dp| {
                dp.spec.source.s3 = None;
                dp.spec.source.code_commit = Some(delivery_operator::api::CodeCommitSource {
                    repository: "search-service".into(),
                    branch: "main".into(),
                });
            }),
            "spec.source.codeCommit.repository",
        ),
        (
            "foreign-connection",
            Box::new(|dp| {
                dp.spec.source.s3 = None;
                dp.spec.source.connection = Some(delivery_operator::api::ConnectionSource {
                    connection_arn: format!(
                        "arn:aws:codeconnections:us-east-1:{ACCOUNT}:connection/0123abcd-4567-89ef-0123-456789abcdef"
                    ),
                    repository: "search/service".into(),
                    branch: "main".into(),
                });
            }),
            "spec.source.connection.connectionArn",
        ),
        (
            "foreign-role",
            Box::new(|dp| {
                dp.spec.credentials = Some(delivery_operator::api::Credentials {
                    role_arn: format!("arn:aws:iam::{ACCOUNT}:role/other-team-admin"),
                })
            }),
            "spec.credentials.roleArn",
        ),
        (
            "foreign-account",
            Box::new(|dp| {
                dp.spec.environments.production.account_id = Some("444444444444".into());
                dp.spec.environments.production.management_role_arn =
                    Some("arn:aws:iam::444444444444:role/admin".into());
            }),
            "spec.environments.production.managementRoleArn",
        ),
        (
            "open-ingress",
            Box::new(|dp| {
                dp.spec.environments.staging.allowed_ingress_cidrs = vec!["0.0.0.0/0".into()]
            }),
            "spec.environments.staging.allowedIngressCidrs",
        ),
        (
            "own-build-image",
            Box::new(|dp| dp.spec.build.image = "attacker/builder:latest".into()),
            "spec.build.image",
        ),
    ];
    let since = emulator::last_seq(&operator.access_key).await;
    for (name, attack, field) in &attacks {
        let mut dp = example("minimal.yaml", &ns, name);
        with_source(&mut dp, &allowed_bucket);
        attack(&mut dp);
        api.create(&PostParams::default(), &dp)
            .await
            .expect("create attack");
        let message = refused(&api, name).await;
        assert!(message.contains(field), "{name}: {message}");
        assert!(message.contains(&policy_name), "{name}: {message}");
        let stored = api.get(name).await.expect("get");
        let ready = condition(&stored, "Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "PolicyViolation")
        );
    }
    // Each refusal was written by the run that refused: the record holds all that run did.
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        BTreeMap::new(),
        "a refused pipeline writes nothing in AWS"
    );
    assert!(
        is_ready(&api.get("neighbour").await.expect("neighbour")),
        "the neighbour stays Ready"
    );

    // The platform team withdraws the neighbour's account: refused, and nothing is deleted.
    let since = emulator::last_seq(&operator.access_key).await;
    apply_policy(&policy_name, policy("999999999999")).await;
    let message = refused(&api, "neighbour").await;
    assert!(
        message.contains("accounts.pipeline does not list this account"),
        "{message}"
    );
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        BTreeMap::new(),
        "nothing is deleted"
    );
    assert_eq!(
        roles_on_path(ACCOUNT, &path).await.len(),
        created,
        "the roles stay"
    );

    // Given back: Ready again without a write.
    apply_policy(&policy_name, policy(ACCOUNT)).await;
    eventually("the neighbour admitted again", WAIT, || async {
        let dp = api.get("neighbour").await.ok()?;
        (condition(&dp, POLICY_COMPLIANT)?.status == "True" && is_ready(&dp)).then_some(())
    })
    .await;
    operator.assert_calls_match_record().await;
    delete_policy(&policy_name).await;
}

#[tokio::test]
async fn a_source_bucket_the_policy_does_not_let_the_operator_change_keeps_its_notifications() {
    let team = unique("team");
    let ns = team_namespace(&team).await;
    let policy_name = unique("no-notify");
    apply_policy(
        &policy_name,
        json!({"namespaceSelector": {"matchLabels": {"team": team}}, "sources": {"manageBucketNotifications": false}}),
    )
    .await;
    let operator = Operator::start(&ns, &[]);
    let api: Api<DeliveryPipeline> = Api::namespaced(kube_client("admin").await, &ns);
    let quiet = source_bucket(&s3(&aws_config().await), true, false).await;
    let mut dp = example("minimal.yaml", &ns, "quiet");
    with_source(&mut dp, &quiet);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let reported = failed_with(&api, "quiet", "PipelineReady", "SourceBucketSendsNoEvents").await;
    assert!(reported.message.contains(&quiet), "{}", reported.message);
    let writes = emulator::counts_by(&operator.access_key, "write").await;
    assert_eq!(writes.get("S3:PutBucketNotificationConfiguration"), None);
    let got = s3(&aws_config().await)
        .get_bucket_notification_configuration()
        .bucket(&quiet)
        .send()
        .await
        .expect("notification configuration");
    assert!(got.event_bridge_configuration().is_none());
    delete_policy(&policy_name).await;
}

#[tokio::test]
async fn an_outputs_config_map_of_another_owner_is_left_alone() {
    let team = unique("team");
    let ns = team_namespace(&team).await;
    let client = kube_client("admin").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let theirs: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app-settings"},
        "data": {"database": "prod"}
    }))
    .expect("config map");
    config_maps
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create config map");
    let operator = Operator::start(&ns, &[]);
    let api: Api<DeliveryPipeline> = Api::namespaced(client.clone(), &ns);
    let bucket = source_bucket(&s3(&aws_config().await), true, true).await;
    let mut dp = example("minimal.yaml", &ns, "grabby");
    with_source(&mut dp, &bucket);
    dp.spec.outputs = Some(OutputsSpec {
        config_map_name: Some("app-settings".into()),
    });
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let refused = failed_with(&api, "grabby", "OutputsPublished", "ConfigMapNotOwned").await;
    assert!(
        refused.message.contains("app-settings"),
        "{}",
        refused.message
    );
    let after = config_maps.get("app-settings").await.expect("still there");
    assert_eq!(
        after.data,
        Some(BTreeMap::from([(
            "database".to_string(),
            "prod".to_string()
        )]))
    );
    assert!(after.metadata.owner_references.is_none());

    // Deleting the pipeline leaves it too.
    api.delete("grabby", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "grabby").await;
    assert!(
        config_maps
            .get_opt("app-settings")
            .await
            .expect("get")
            .is_some()
    );
    drop(operator);
}

#[tokio::test]
async fn another_clusters_operator_does_not_adopt_this_clusters_resources() {
    let team = unique("team");
    let ns = team_namespace(&team).await;
    let api: Api<DeliveryPipeline> = Api::namespaced(kube_client("admin").await, &ns);
    let bucket = source_bucket(&s3(&aws_config().await), true, true).await;
    let mut dp = example("minimal.yaml", &ns, "shared-account");
    with_source(&mut dp, &bucket);
    let mut ours = Operator::start(&ns, &[]);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "shared-account", 1).await;
    ours.kill();

    // The same namespace and name, seen by an operator of another cluster sharing the account.
    let other = Operator::start(&ns, &[("CLUSTER_ID", "another-cluster")]);
    crate::support::request_reconcile(&api, "shared-account").await;
    let since = 0;
    let refused = failed_with(
        &api,
        "shared-account",
        "EncryptionKeyReady",
        "ResourceOwnedByAnotherPipeline",
    )
    .await;
    assert!(
        refused.message.contains(crate::support::cluster_id()),
        "names the owner: {}",
        refused.message
    );
    // Named resources (key alias, bucket, repository, roles, topics, log groups) are found and
    // refused; it may make resources of its own that are found by owner tag (a VPC), but it
    // never changes one of this cluster's.
    let calls = emulator::calls_after(&other.access_key, since).await;
    let touched: Vec<String> = count(&calls, "write")
        .into_keys()
        .filter(|op| {
            [
                "IAM:",
                "KMS:",
                "S3:",
                "ECR:",
                "SNS:",
                "CloudWatchLogs:",
                "CodePipeline:",
            ]
            .iter()
            .any(|service| op.starts_with(service))
        })
        .collect();
    assert_eq!(
        touched,
        Vec::<String>::new(),
        "another cluster's operator changes none of ours"
    );
    let ctx = crate::support::ctx_of(&dp);
    let tags = aws_sdk_iam::Client::new(&aws_config().await)
        .get_role()
        .role_name(
            ctx.names()
                .role(delivery_operator::groups::roles::desired::PIPELINE),
        )
        .send()
        .await
        .expect("our pipeline role")
        .role
        .map(|r| r.tags().to_vec())
        .unwrap_or_default();
    let owner = tags
        .iter()
        .find(|t| t.key() == delivery_operator::desired::tags::OWNER_KEY)
        .map(|t| t.value().to_string());
    assert_eq!(owner, Some(ctx.owner()), "still ours");
    assert!(ctx.owner().starts_with(crate::support::cluster_id()));
}

/// The IAM action a recorded request needs (`Service:Operation` as the emulator records it).
fn iam_action(call: &str) -> String {
    let (service, operation) = call.split_once(':').expect("Service:Operation");
    let prefix = match service {
        "CloudWatch Logs" => "logs",
        "EventBridge" => "events",
        "Resource Groups Tagging API" => "tag",
        other => return format!("{}:{operation}", other.to_lowercase()),
    };
    format!("{prefix}:{operation}")
}

/// S3 operations whose IAM action has another name (the Service Authorization Reference).
fn s3_action(operation: &str) -> Vec<String> {
    let actions: &[&str] = match operation {
        "HeadBucket" => &["ListBucket"],
        "GetBucketNotificationConfiguration" => &["GetBucketNotification"],
        "PutBucketNotificationConfiguration" => &["PutBucketNotification"],
        "GetBucketEncryption" => &["GetEncryptionConfiguration"],
        "PutBucketEncryption" => &["PutEncryptionConfiguration"],
        "GetPublicAccessBlock" => &["GetBucketPublicAccessBlock"],
        "PutPublicAccessBlock" => &["PutBucketPublicAccessBlock"],
        "GetBucketLifecycleConfiguration" => &["GetLifecycleConfiguration"],
        "PutBucketLifecycleConfiguration" => &["PutLifecycleConfiguration"],
        "ListObjectVersions" => &["ListBucketVersions"],
        "DeleteObjects" => &["DeleteObject", "DeleteObjectVersion"],
        other => return vec![format!("s3:{other}")],
    };
    actions.iter().map(|a| format!("s3:{a}")).collect()
}

/// Every request the operator made over a pipeline's life (create, a change, a hand edit
/// restored, deletion), as the emulator recorded it, is an action `delivery-operator
/// iam-policy` allows: the printed policy is enough to run the operator.
#[tokio::test]
async fn the_operators_own_policy_allows_every_call_it_makes() {
    use delivery_operator::render::operator_policy::{Scope, allowed_actions, operator_policy};
    let team = unique("team");
    let ns = team_namespace(&team).await;
    let operator = Operator::start(&ns, &[]);
    let api: Api<DeliveryPipeline> = Api::namespaced(kube_client("admin").await, &ns);
    // A source without EventBridge notifications: the operator turns them on.
    let bucket = source_bucket(&s3(&aws_config().await), true, false).await;
    let mut dp = example("minimal.yaml", &ns, "lifecycle");
    with_source(&mut dp, &bucket);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "lifecycle", 1).await;
    api.patch(
        "lifecycle",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"logRetentionDays": 14, "tags": {"team": "x"}}})),
    )
    .await
    .expect("change");
    wait_ready(&api, "lifecycle", 2).await;
    api.delete("lifecycle", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "lifecycle").await;

    let allowed = allowed_actions(&operator_policy(&Scope {
        partition: "aws".into(),
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        role_path: "/".into(),
        permissions_boundary_arn: None,
        assumable_roles: vec![format!("arn:aws:iam::{ACCOUNT}:role/*")],
    }));
    let calls = emulator::calls_by(&operator.access_key).await;
    let made: std::collections::BTreeSet<String> = calls
        .iter()
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect();
    assert!(made.len() > 40, "a whole lifecycle: {made:?}");
    let missing: Vec<String> = made
        .iter()
        .flat_map(|call| match call.strip_prefix("S3:") {
            Some(operation) => s3_action(operation),
            None => vec![iam_action(call)],
        })
        .filter(|action| !allowed.contains(action))
        .collect();
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "calls the policy does not allow"
    );
}

/// The cross-account example under a policy with a boundary and a path: every role in every
/// account carries the boundary of its own account and lives on the path, and the pipeline is
/// Ready (the key, bucket and repository policies name the roles by their ARNs with the path).
#[tokio::test]
async fn every_role_in_every_account_carries_its_accounts_boundary() {
    let team = unique("team");
    let ns = team_namespace(&team).await;
    let boundary = unique("tenant-boundary");
    let accounts = [ACCOUNT, "222222222222", "333333333333"];
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*", "ecr:*", "logs:*", "kms:*", "ecs:*", "sns:*"], "Resource": "*"}]
    });
    for account in accounts {
        aws_sdk_iam::Client::new(&crate::support::config_for(account).await)
            .create_policy()
            .policy_name(&boundary)
            .policy_document(document.to_string())
            .send()
            .await
            .expect("boundary policy in each account");
    }
    let path = format!("/delivery/{team}/");
    let policy_name = unique("bounded");
    apply_policy(
        &policy_name,
        json!({
            "namespaceSelector": {"matchLabels": {"team": team}},
            "roles": {"permissionsBoundaryPolicy": boundary, "path": path}
        }),
    )
    .await;
    let _operator = Operator::start(&ns, &[]);
    let api: Api<DeliveryPipeline> = Api::namespaced(kube_client("admin").await, &ns);
    let dp = example("cross-account.yaml", &ns, "bounded");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "bounded", 1).await;
    let inventory_roles = owned_roles(&ready);
    let mut found = 0;
    for account in accounts {
        for role in roles_on_path(account, &path).await.values() {
            assert_eq!(
                boundary_of(account, role.role_name()).await,
                Some(format!("arn:aws:iam::{account}:policy/{boundary}")),
                "{} in {account}",
                role.role_name()
            );
            found += 1;
        }
    }
    assert!(found >= 9, "roles in three accounts: {found}");
    assert_eq!(
        found, inventory_roles,
        "every role the pipeline owns is on the path"
    );
    delete_policy(&policy_name).await;
}
