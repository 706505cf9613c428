//! End to end, the engine's promises: a failure blocks only its dependents and deletion still
//! completes; a removed collection member removes exactly its AWS object; an environment whose
//! role cannot be assumed fails only that environment; every AssumeRole carries the namespace's
//! external ID, so a role trusted for one namespace cannot be used from another.

use std::collections::BTreeMap;
use std::time::Duration;

use delivery_operator::api::{Credentials as SpecCredentials, DeliveryPipeline};
use delivery_operator::desired::Tenancy;
use delivery_operator::tenancy::external_id;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{Fault, clear_faults_for, count, inject};
use crate::support::{
    Operator, aws_config, cluster_id, condition, create_namespace, eventually, example, gone,
    is_ready, kube_client, member_config, s3, source_bucket, start, unique,
};

const WAIT: Duration = Duration::from_secs(90);

async fn wait_for(
    api: &Api<DeliveryPipeline>,
    name: &str,
    what: &str,
    check: impl Fn(&DeliveryPipeline) -> bool,
) -> DeliveryPipeline {
    eventually(what, WAIT, || async {
        let dp = api.get(name).await.ok()?;
        check(&dp).then_some(dp)
    })
    .await
}

fn status_of(dp: &DeliveryPipeline, type_: &str) -> Option<String> {
    condition(dp, type_).map(|c| c.status.clone())
}

#[tokio::test]
async fn a_failed_key_blocks_only_its_dependents_and_deletion_still_completes() {
    let (ns, operator, api) = start("e2e-keyfail").await;
    inject(Fault {
        service: Some("KMS".into()),
        operation: Some("CreateKey".into()),
        access_key: Some(operator.access_key.clone()),
        error_code: Some("AccessDeniedException".into()),
        http_status: Some(400),
        ..Default::default()
    })
    .await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "nokey"),
    )
    .await
    .expect("create");
    let dp = wait_for(&api, "nokey", "the key failure reported", |dp| {
        condition(dp, "EncryptionKeyReady").is_some_and(|c| c.reason == "AccessDenied")
            && [
                "StagingLogGroupsReady",
                "ProductionLogGroupsReady",
                "StagingNetworkReady",
                "ProductionNetworkReady",
            ]
            .iter()
            .all(|c| status_of(dp, c).as_deref() == Some("True"))
    })
    .await;
    let key = condition(&dp, "EncryptionKeyReady")
        .cloned()
        .expect("key condition");
    assert!(key.message.contains("kms:CreateKey"), "{}", key.message);
    // Dependents of the key wait and say so; groups that do not need it are Ready.
    for dependent in ["ArtifactStoreReady", "NotificationsReady", "LogGroupsReady"] {
        let c = condition(&dp, dependent).cloned().expect(dependent);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "DependencyNotReady")
        );
        assert_eq!(c.message, "waiting for EncryptionKeyReady", "{dependent}");
    }
    assert_eq!(
        status_of(&dp, "ProductionLogGroupsReady").as_deref(),
        Some("True")
    );
    assert_eq!(status_of(&dp, "Ready").as_deref(), Some("False"));
    let inventory = dp
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    let (log_groups, network): (Vec<_>, Vec<_>) = inventory
        .into_iter()
        .partition(|i| i.kind == "AWS::Logs::LogGroup");
    assert_eq!(
        log_groups.len(),
        2,
        "the two application log groups: {log_groups:?}"
    );
    // Each environment's VPC, gateway, two subnets, route table and security group.
    assert_eq!(network.len(), 12, "{network:?}");
    assert!(network.iter().all(|i| i.kind.starts_with("AWS::EC2::")));

    // The key never existed: deletion does not wait for its output, and removes what was made.
    api.delete("nokey", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "nokey").await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws_config().await);
    for item in log_groups {
        let name = item
            .id
            .rsplit("log-group:")
            .next()
            .unwrap_or_default()
            .to_string();
        let left = logs
            .describe_log_groups()
            .log_group_name_prefix(&name)
            .send()
            .await
            .expect("describe");
        assert!(left.log_groups().is_empty(), "{name} was left behind");
    }
    clear_faults_for(&operator.access_key).await;
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn removing_an_email_unsubscribes_exactly_that_subscriber() {
    let (ns, operator, api) = start("e2e-emails").await;
    let mut dp = example("minimal.yaml", &ns, "mail");
    dp.spec.notifications.emails = vec!["a@example.com".into(), "b@example.com".into()];
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_for(&api, "mail", "Ready", is_ready).await;
    let status = ready.status.clone().expect("status");
    let topic = status
        .outputs
        .notification_topic_arn
        .clone()
        .expect("topic output");
    let sns = aws_sdk_sns::Client::new(&aws_config().await);
    let endpoints = || async {
        let mut out: Vec<String> = sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .filter_map(|s| {
                s.expect("list subscriptions")
                    .endpoint()
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(endpoints().await, vec!["a@example.com", "b@example.com"]);
    // Both recipients confirm: AWS can only unsubscribe a confirmed subscription.
    assert_eq!(
        crate::emulator::confirm_email_subscriptions(&topic)
            .await
            .len(),
        2
    );
    let mark = operator.mark().await;
    api.patch(
        "mail",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"notifications": {"emails": ["a@example.com"]}}})),
    )
    .await
    .expect("patch");
    let updated = wait_for(&api, "mail", "Ready at generation 2", |dp| {
        is_ready(dp) && dp.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert_eq!(endpoints().await, vec!["a@example.com"]);
    assert_eq!(
        crate::emulator::count(&operator.calls_after(mark).await, "write"),
        BTreeMap::from([("SNS:Unsubscribe".to_string(), 1.0)]),
        "exactly the removed subscriber is deleted"
    );
    let inventory = updated.status.expect("status").inventory;
    assert_eq!(inventory.len(), status.inventory.len() - 1);
    assert!(inventory.iter().all(|i| !i.id.ends_with("b@example.com")));

    // A subscriber added and removed again before confirming: AWS has no ARN to unsubscribe
    // it, so nothing is written and the condition says it expires by itself.
    let since = crate::emulator::last_seq(&operator.access_key).await;
    for (generation, emails) in [
        (3, json!(["a@example.com", "c@example.com"])),
        (4, json!(["a@example.com"])),
    ] {
        api.patch(
            "mail",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"notifications": {"emails": emails}}})),
        )
        .await
        .expect("patch");
        wait_for(&api, "mail", "Ready at the new generation", |dp| {
            is_ready(dp)
                && dp.status.as_ref().and_then(|s| s.observed_generation) == Some(generation)
        })
        .await;
    }
    let pending = wait_for(&api, "mail", "the pending subscriber named", |dp| {
        condition(dp, "NotificationsReady")
            .is_some_and(|c| c.reason == "UnconfirmedSubscribersExpire")
    })
    .await;
    let message = condition(&pending, "NotificationsReady")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("c@example.com"), "{message}");
    assert_eq!(endpoints().await, vec!["a@example.com", "c@example.com"]);
    let calls = crate::emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write").get("SNS:Unsubscribe"),
        None,
        "a pending subscription is not unsubscribed"
    );
    assert_eq!(count(&calls, "write").get("SNS:Subscribe"), Some(&1.0));
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn a_staging_role_that_cannot_be_assumed_fails_only_staging() {
    let (ns, operator, api) = start("e2e-stagingrole").await;
    let role = "arn:aws:iam::222222222222:role/no-such-deployer";
    let mut dp = example("minimal.yaml", &ns, "split");
    dp.spec.environments.staging.account_id = Some("222222222222".into());
    dp.spec.environments.staging.management_role_arn = Some(role.into());
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let dp = wait_for(&api, "split", "staging failure and the rest Ready", |dp| {
        status_of(dp, "StagingLogGroupsReady").as_deref() == Some("False")
            && status_of(dp, "NotificationsReady").as_deref() == Some("True")
            && status_of(dp, "RolesReady").as_deref() == Some("True")
            && status_of(dp, "ProductionRolesReady").as_deref() == Some("True")
    })
    .await;
    let staging = condition(&dp, "StagingLogGroupsReady")
        .cloned()
        .expect("staging");
    assert_eq!(staging.reason, "RoleNotAssumable");
    assert!(
        staging.message.contains(role)
            && staging
                .message
                .contains("spec.environments.staging.managementRoleArn"),
        "{}",
        staging.message
    );
    for fine in [
        "NotificationsReady",
        "ApprovalTopicReady",
        "LogGroupsReady",
        "RolesReady",
        "ProductionLogGroupsReady",
        "ProductionRolesReady",
    ] {
        assert_eq!(status_of(&dp, fine).as_deref(), Some("True"), "{fine}");
    }
    // The key and bucket policies grant staging's roles, so they wait for them, and say so.
    for blocked in ["EncryptionKeyReady", "ArtifactStoreReady"] {
        let c = condition(&dp, blocked).cloned().expect(blocked);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "DependencyNotReady"),
            "{blocked}"
        );
        assert!(
            c.message.contains("StagingRolesReady"),
            "{blocked}: {}",
            c.message
        );
    }
    assert_eq!(status_of(&dp, "Ready").as_deref(), Some("False"));
    // Every inventory item names the account it is in: all in the pipeline's.
    let inventory = dp.status.clone().expect("status").inventory;
    assert!(
        inventory.iter().all(|i| i.account == "123456789012"),
        "{inventory:?}"
    );
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn a_role_trusting_another_namespace_is_refused_and_its_own_namespace_works() {
    let client = kube_client("admin").await;
    let (ns_a, ns_b) = (unique("e2e-xid-a"), unique("e2e-xid-b"));
    create_namespace(&client, &ns_a).await;
    create_namespace(&client, &ns_b).await;
    // A pipeline-administration role in a member account, trusting the operator's account only
    // with namespace B's external ID (docs/security.md shows this trust policy).
    let member = "333333333333";
    let role_name = unique("pipeline-admin");
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id(cluster_id(), &ns_b)}}
        }]
    });
    let iam = aws_sdk_iam::Client::new(&member_config(member).await);
    let role_arn = iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("create role")
        .role()
        .map(|r| r.arn().to_string())
        .expect("role arn");

    let credentials = SpecCredentials {
        role_arn: role_arn.clone(),
    };
    let op_a = Operator::start(&ns_a, &[]);
    let api_a: Api<DeliveryPipeline> = Api::namespaced(client.clone(), &ns_a);
    let mut a = example("minimal.yaml", &ns_a, "borrower");
    a.spec.credentials = Some(credentials.clone());
    api_a
        .create(&PostParams::default(), &a)
        .await
        .expect("create a");
    let refused = wait_for(&api_a, "borrower", "refused", |dp| {
        condition(dp, "Ready").is_some_and(|c| c.reason == "CredentialsRoleNotAssumable")
    })
    .await;
    assert!(
        condition(&refused, "Ready").is_some_and(|c| c.message.contains(&role_arn)),
        "the condition names the role"
    );
    // The refused AssumeRole is all namespace A got: no write anywhere (the emulator's record).
    let writes = crate::emulator::counts_by(&op_a.access_key, "write").await;
    assert!(
        writes.keys().all(|call| call == "STS:AssumeRole"),
        "{writes:?}"
    );

    let op_b = Operator::start(&ns_b, &[]);
    let api_b: Api<DeliveryPipeline> = Api::namespaced(client, &ns_b);
    let mut b = example("minimal.yaml", &ns_b, "owner");
    b.spec.credentials = Some(credentials);
    // The pipeline's S3 source lives in its own account, as a user there would have it.
    b.spec.source.s3 = Some(delivery_operator::api::S3Source {
        bucket: source_bucket(&s3(&member_config(member).await), true, true).await,
        object_key: "hello.zip".into(),
    });
    api_b
        .create(&PostParams::default(), &b)
        .await
        .expect("create b");
    let ready = wait_for(&api_b, "owner", "Ready in the member account", |dp| {
        is_ready(dp)
    })
    .await;
    let status = ready.status.expect("status");
    assert_eq!(status.outputs.account_id.as_deref(), Some(member));
    assert!(!status.inventory.is_empty());
    assert!(
        status.inventory.iter().all(|i| i.account == member),
        "{:?}",
        status.inventory
    );
    // The key really is in the member account, and not in the operator's.
    let key = status.outputs.kms_key_arn.expect("key");
    assert!(key.contains(&format!(":{member}:")), "{key}");
    aws_sdk_kms::Client::new(&member_config(member).await)
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("key in the member account");
    op_a.assert_calls_match_record().await;
    op_b.assert_calls_match_record().await;
}

#[tokio::test]
async fn a_bucket_name_taken_in_another_account_is_reported_not_adopted() {
    let (ns, _operator, api) = start("e2e-taken").await;
    let dp = example("minimal.yaml", &ns, "squatted");
    let ctx = delivery_operator::desired::PipelineContext {
        namespace: ns.clone(),
        name: "squatted".into(),
        spec: dp.spec.clone(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        retired_tag_keys: Vec::new(),
        tenancy: Tenancy {
            cluster_id: cluster_id().into(),
            ..Tenancy::default()
        },
    };
    let name = ctx.names().artifact_bucket();
    // Someone else's account owns the name first.
    let foreign = member_config("222222222222").await;
    s3(&foreign)
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("bucket in the other account");

    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let dp = wait_for(&api, "squatted", "BucketNameTaken", |dp| {
        condition(dp, "ArtifactStoreReady").is_some_and(|c| c.reason == "BucketNameTaken")
    })
    .await;
    let c = condition(&dp, "ArtifactStoreReady")
        .cloned()
        .expect("condition");
    assert_eq!(c.status, "False");
    assert!(c.message.contains(&name), "{}", c.message);
    // The key does not depend on the bucket: it is Ready.
    assert_eq!(
        status_of(&dp, "EncryptionKeyReady").as_deref(),
        Some("True")
    );
    assert!(
        dp.status
            .as_ref()
            .is_some_and(|s| s.inventory.iter().all(|i| i.kind != "AWS::S3::Bucket")),
        "a foreign bucket must not be recorded as ours"
    );
}
