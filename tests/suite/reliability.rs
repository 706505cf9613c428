//! The operator under AWS faults and failures of its own writes: every call has a bounded
//! time, a write whose reply was lost is not made twice, and a failed ConfigMap write does not
//! keep the status (and the inventory a deletion works from) unwritten.

use std::time::{Duration, Instant};

use delivery_operator::api::{DeliveryPipeline, OutputsSpec};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::emulator::{self, Fault};
use crate::support::{
    Operator, condition, config_for, create_namespace, eventually, example, kube_client, namespace,
    unique, wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);

/// The next `operation` of `access_key` is applied by AWS and answered with a 500: its reply
/// is lost.
fn reply_lost_once(service: &str, operation: &str, access_key: &str) -> Fault {
    Fault {
        service: Some(service.into()),
        operation: Some(operation.into()),
        access_key: Some(access_key.into()),
        error_code: Some("InternalFailure".into()),
        http_status: Some(500),
        count: Some(1),
        after_apply: true,
        ..Fault::default()
    }
}

/// A call that stalls (the emulator holds it 60 s) is abandoned after the attempt timeout and
/// retried within the operation timeout; the reconcile ends with `AwsUnreachable` instead of
/// holding its worker, and the pipeline converges once AWS answers again.
#[tokio::test]
async fn a_stalled_aws_call_ends_within_its_timeouts() {
    let (ns, api) = namespace("rel-stall").await;
    let operator = Operator::start(
        &ns,
        &[
            ("AWS_ATTEMPT_TIMEOUT_SECONDS", "1"),
            ("AWS_OPERATION_TIMEOUT_SECONDS", "3"),
        ],
    );
    emulator::inject(Fault {
        service: Some("KMS".into()),
        operation: Some("DescribeKey".into()),
        access_key: Some(operator.access_key.clone()),
        latency_ms: Some(60_000),
        ..Fault::default()
    })
    .await;
    let dp = example("minimal.yaml", &ns, "stalled");
    let started = Instant::now();
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let reported = eventually("the stalled call reported", WAIT, || async {
        let dp = api.get("stalled").await.ok()?;
        condition(&dp, "EncryptionKeyReady")
            .filter(|c| c.reason == "AwsUnreachable")
            .cloned()
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "reported after {elapsed:?}, not within the timeouts: {}",
        reported.message
    );
    // The attempts the emulator saw: each abandoned after a second, at most three in the
    // three-second operation.
    let calls = emulator::calls_by(&operator.access_key).await;
    let attempts = calls
        .iter()
        .filter(|c| c.operation == "DescribeKey")
        .count();
    assert!(
        (1..=3).contains(&attempts),
        "{attempts} DescribeKey attempts"
    );

    emulator::clear_faults_for(&operator.access_key).await;
    wait_ready(&api, "stalled", 1).await;
}

/// CreateService applied by ECS whose reply is lost (a 500 after commit): the SDK's retry
/// carries the same client token, ECS answers the service it made, and the environment has one
/// service; the pipeline reaches Ready without a terminal error.
#[tokio::test]
async fn a_lost_create_service_reply_makes_one_service() {
    let (ns, api) = namespace("rel-lost").await;
    let operator = Operator::start(&ns, &[]);
    emulator::inject(reply_lost_once(
        "ECS",
        "CreateService",
        &operator.access_key,
    ))
    .await;
    let dp = example("minimal.yaml", &ns, "lost");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "lost", 1).await;
    let calls = emulator::calls_by(&operator.access_key).await;
    let creates: Vec<_> = calls
        .iter()
        .filter(|c| c.operation == "CreateService")
        .collect();
    // Two environments: one creation answered normally, the other applied, its reply lost,
    // and sent again.
    assert_eq!(creates.len(), 3, "{creates:#?}");
    assert_eq!(creates.iter().filter(|c| c.injected).count(), 1);
    let ecs = aws_sdk_ecs::Client::new(&config_for(crate::support::ACCOUNT).await);
    for env in ["staging", "production"] {
        let outputs = ready.status.as_ref().expect("status").outputs.clone();
        let environment = if env == "staging" {
            outputs.staging
        } else {
            outputs.production
        }
        .expect("environment outputs");
        let cluster = environment.cluster_name.expect("cluster");
        let mut services = Vec::new();
        let mut pages = ecs
            .list_services()
            .cluster(&cluster)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            services.extend(page.expect("services page").service_arns().to_vec());
        }
        assert_eq!(services.len(), 1, "{env}: {services:?}");
    }
}

/// The API server refuses the outputs ConfigMap: the status is written all the same (the
/// groups' conditions and the inventory a deletion works from), with `OutputsPublished` False
/// `PublishFailed`; once the refusal goes, the ConfigMap is written.
#[tokio::test]
async fn a_refused_outputs_config_map_still_leaves_the_status_written() {
    let (ns, api) = namespace("rel-outputs").await;
    let client = kube_client("admin").await;
    let _operator = Operator::start(&ns, &[]);
    let name = unique("refuse-outputs");
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]
            }]},
            "validations": [{
                "expression": format!("object.metadata.namespace != '{ns}'"),
                "message": "ConfigMaps are frozen in this namespace"
            }]
        }
    }))
    .expect("policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]}
    }))
    .expect("binding");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");

    // Admission policies take effect a moment after they are made: wait until one refuses.
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &ns);
    eventually("the policy in effect", WAIT, || async {
        let probe: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": unique("probe")}})).ok()?;
        match config_maps.create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 403 => Some(()),
            _ => None,
        }
    })
    .await;

    let mut dp = example("minimal.yaml", &ns, "published");
    dp.spec.outputs = Some(OutputsSpec {
        config_map_name: Some("published-outputs".into()),
    });
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let refused = eventually("the refused ConfigMap reported", WAIT, || async {
        let dp = api.get("published").await.ok()?;
        condition(&dp, "OutputsPublished")
            .filter(|c| c.reason == "PublishFailed")
            .map(|_| dp.clone())
    })
    .await;
    let status = refused.status.expect("status");
    assert!(!status.inventory.is_empty(), "the inventory is recorded");
    for group in ["EncryptionKeyReady", "ArtifactStoreReady", "PipelineReady"] {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == group)
            .unwrap_or_else(|| panic!("{group} in status"));
        assert_eq!(c.status, "True", "{group}: {}", c.message);
    }

    bindings
        .delete(&name, &DeleteParams::default())
        .await
        .expect("binding gone");
    policies
        .delete(&name, &DeleteParams::default())
        .await
        .expect("policy gone");
    eventually("the ConfigMap published", WAIT, || async {
        let dp = api.get("published").await.ok()?;
        condition(&dp, "OutputsPublished")
            .filter(|c| c.status == "True")
            .map(|_| ())
    })
    .await;
}

/// CreateKey is not idempotent: a reply lost and the call sent again (or a crash before
/// CreateAlias, twice) leaves keys tagged for the pipeline that no alias names. The pipeline
/// adopts one; its deletion schedules every one of them, not only the aliased key.
#[tokio::test]
async fn deletion_removes_every_key_made_for_the_pipeline_even_without_its_alias() {
    let (ns, api) = namespace("rel-keys").await;
    let dp = example("minimal.yaml", &ns, "keys");
    let kms = aws_sdk_kms::Client::new(&config_for(crate::support::ACCOUNT).await);
    let strays = vec![
        crate::support::key_left_by_a_crash(&kms, &dp).await,
        crate::support::key_left_by_a_crash(&kms, &dp).await,
    ];
    let _operator = Operator::start(&ns, &[]);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "keys", 1).await;
    let adopted = ready
        .status
        .expect("status")
        .outputs
        .kms_key_arn
        .expect("key");
    assert!(
        strays.contains(&adopted),
        "one of the keys was adopted, none made"
    );

    api.delete("keys", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "keys").await;
    for key in &strays {
        let state = kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .expect("describe")
            .key_metadata()
            .and_then(|m| m.key_state().cloned())
            .expect("state");
        assert_eq!(
            state,
            aws_sdk_kms::types::KeyState::PendingDeletion,
            "{key} (adopted: {})",
            *key == adopted
        );
    }
}

/// A policy whose principal AWS never sees (here KMS refusing the key policy's principals on
/// every try) is waited for as IAM propagation only as long as propagation can take
/// (`IAM_PROPAGATION_LIMIT_SECONDS`, 3 s here): then it is an error, `PrincipalNotFound`,
/// and `Synced` is False, instead of "in progress" every 10 s forever.
#[tokio::test]
async fn a_principal_that_never_appears_becomes_an_error() {
    let (ns, api) = namespace("rel-principal").await;
    let operator = Operator::start(&ns, &[("IAM_PROPAGATION_LIMIT_SECONDS", "3")]);
    emulator::inject(Fault {
        service: Some("KMS".into()),
        operation: Some("PutKeyPolicy".into()),
        access_key: Some(operator.access_key.clone()),
        error_code: Some("MalformedPolicyDocumentException".into()),
        message: Some("Policy contains a statement with one or more invalid principals.".into()),
        ..Fault::default()
    })
    .await;
    let dp = example("minimal.yaml", &ns, "unseen");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let escalated = eventually("the unseen principal escalated", WAIT, || async {
        let dp = api.get("unseen").await.ok()?;
        let c = condition(&dp, "EncryptionKeyReady")?;
        (c.reason == "PrincipalNotFound").then(|| (c.clone(), dp.clone()))
    })
    .await;
    assert!(
        escalated.0.message.contains("invalid principals")
            && escalated
                .0
                .message
                .contains("longer than IAM takes to propagate"),
        "{}",
        escalated.0.message
    );
    let synced = condition(&escalated.1, "Synced").expect("Synced");
    assert_eq!(synced.status, "False", "{}", synced.message);

    emulator::clear_faults_for(&operator.access_key).await;
    crate::support::request_reconcile(&api, "unseen").await;
    wait_ready(&api, "unseen", 1).await;
}

/// A deletion that cannot reach an environment (its management role deleted: an account
/// closed looks the same) waits, and `Synced` names the blocker and the one command that
/// resolves it; with the abandon annotation the rest is deleted and the environment's
/// resources stay where they are.
/// Deletes `name` and waits for `Synced` `DeletionBlocked`: the condition and the one command
/// it must name.
async fn delete_until_blocked(
    api: &Api<DeliveryPipeline>,
    ns: &str,
    name: &str,
) -> (delivery_operator::api::Condition, String) {
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    let blocked = eventually("the deletion blocked", WAIT, || async {
        let dp = api.get(name).await.ok()?;
        condition(&dp, "Synced")
            .filter(|c| c.reason == "DeletionBlocked")
            .cloned()
    })
    .await;
    let command = format!(
        "kubectl annotate deliverypipeline {name} -n {ns} delivery-operator.dev/abandon-unreachable=true"
    );
    (blocked, command)
}

/// What the command a blocked deletion names does.
async fn abandon(api: &Api<DeliveryPipeline>, name: &str) {
    use kube::api::{Patch, PatchParams};
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "delivery-operator.dev/abandon-unreachable": "true"
        }}})),
    )
    .await
    .expect("abandon");
}

#[tokio::test]
async fn a_deletion_that_cannot_reach_an_environment_waits_until_told_to_abandon_it() {
    let (ns, api) = namespace("rel-abandon").await;
    // A management role of the test's own in 222222222222 (the shared bootstrap role stays).
    let staging_account = "222222222222";
    let iam = aws_sdk_iam::Client::new(&crate::support::member_config(staging_account).await);
    let role_name = unique("rel-mgmt");
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": format!("arn:aws:iam::{}:root", crate::support::ACCOUNT)}
    }]});
    iam.create_role()
        .role_name(&role_name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("management role");
    let role_arn = format!("arn:aws:iam::{staging_account}:role/{role_name}");
    let mut dp = example("minimal.yaml", &ns, "stranded");
    dp.spec.environments.staging.account_id = Some(staging_account.into());
    dp.spec.environments.staging.management_role_arn = Some(role_arn.clone());
    let operator = Operator::start(&ns, &[]);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "stranded", 1).await;
    let outputs = ready.status.expect("status").outputs;
    let cluster = outputs
        .staging
        .and_then(|s| s.cluster_name)
        .expect("staging cluster");
    let key = outputs.kms_key_arn.expect("key");

    // The role goes; a new operator process can no longer reach staging.
    drop(operator);
    iam.delete_role()
        .role_name(&role_name)
        .send()
        .await
        .expect("role deleted");
    let _operator = Operator::start(&ns, &[]);
    let (blocked, command) = delete_until_blocked(&api, &ns, "stranded").await;
    assert!(
        blocked.message.contains(&role_arn) && blocked.message.contains(&command),
        "{}",
        blocked.message
    );
    // Waiting: the pipeline account's key is not deleted before staging lets go of it.
    assert!(api.get("stranded").await.is_ok());

    abandon(&api, "stranded").await;
    crate::support::gone(&api, "stranded").await;
    let kms = aws_sdk_kms::Client::new(&config_for(crate::support::ACCOUNT).await);
    let state = kms
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("key")
        .key_metadata()
        .and_then(|m| m.key_state().cloned());
    assert_eq!(state, Some(aws_sdk_kms::types::KeyState::PendingDeletion));
    // Staging's resources were left where they are.
    let ecs = aws_sdk_ecs::Client::new(&crate::support::member_config(staging_account).await);
    let clusters = ecs
        .describe_clusters()
        .clusters(&cluster)
        .send()
        .await
        .expect("clusters");
    assert_eq!(
        clusters.clusters().first().and_then(|c| c.status()),
        Some("ACTIVE"),
        "the unreachable environment's cluster stays"
    );
}

/// The cross-account pipeline created while its operator is SIGKILLed at random moments
/// (`CRASHES`, 8 here; `scripts/crash-loop` runs 20), each time restarted: it reaches Ready
/// with every resource exactly once (each account's inventory, listed from AWS, has exactly
/// what the same pipeline made without a crash has), and its deletion leaves nothing in any
/// account.
#[tokio::test]
async fn a_pipeline_created_through_repeated_crashes_has_each_resource_once() {
    use rand::Rng;

    let crashes: usize = std::env::var("CRASHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8);
    let accounts = [crate::support::ACCOUNT, "222222222222", "333333333333"];
    let (ns, api) = namespace("rel-crash").await;

    // The baseline: the same shape made without a crash.
    let calm = example("cross-account.yaml", &ns, "calm");
    let calm_ctx = crate::support::ctx_of(&calm);
    let phoenix = example("cross-account.yaml", &ns, "phoenix");
    let phoenix_ctx = crate::support::ctx_of(&phoenix);
    {
        let _operator = Operator::start(&ns, &[]);
        api.create(&PostParams::default(), &calm)
            .await
            .expect("create calm");
        wait_ready(&api, "calm", 1).await;
    }
    api.create(&PostParams::default(), &phoenix)
        .await
        .expect("create phoenix");
    for _ in 0..crashes {
        // A random moment, as the emulator's record counts it: after the n-th AWS call.
        let operator = Operator::start(&ns, &[]);
        let moment = rand::rng().random_range(1..60);
        eventually("the moment to crash", WAIT, || async {
            (emulator::calls_by(&operator.access_key).await.len() >= moment).then_some(())
        })
        .await;
        drop(operator); // SIGKILL
    }
    let operator = Operator::start(&ns, &[]);
    wait_ready(&api, "phoenix", 1).await;
    for account in accounts {
        let made = crate::identity::leftovers(&phoenix_ctx, account).await;
        let baseline = crate::identity::leftovers(&calm_ctx, account).await;
        assert_eq!(
            made.len(),
            baseline.len(),
            "{account}: through crashes {made:#?}, without {baseline:#?}"
        );
    }

    for name in ["calm", "phoenix"] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    crate::support::gone(&api, "calm").await;
    crate::support::gone(&api, "phoenix").await;
    for account in accounts {
        assert_eq!(
            crate::identity::leftovers(&phoenix_ctx, account).await,
            Vec::<String>::new(),
            "{account}"
        );
    }
    drop(operator);
}

/// A restarted operator reconciles every pipeline it finds. (Every reconcile first waits for
/// the policy and namespace watches to list; that wait woke only one of the reconciles that
/// started together, so after a restart all but one pipeline were never looked at again.)
/// Shown by drift made while no operator runs: each pipeline's log group retention is changed
/// by hand, and the restarted operator restores every one once its check is due (a pipeline
/// verified less than a resync interval before the restart is not read until then; the
/// restarted operator runs with a 5 s interval so that is soon).
#[tokio::test]
async fn a_restarted_operator_reconciles_every_pipeline() {
    let (ns, api) = namespace("rel-restart").await;
    let names = ["one", "two", "three"];
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config_for(crate::support::ACCOUNT).await);
    let mut desired = std::collections::BTreeMap::new();
    {
        let _operator = Operator::start(&ns, &[]);
        for name in names {
            api.create(&PostParams::default(), &example("minimal.yaml", &ns, name))
                .await
                .expect("create");
        }
        for name in names {
            wait_ready(&api, name, 1).await;
        }
    }
    for name in names {
        let ctx = crate::support::ctx_of(&example("minimal.yaml", &ns, name));
        let prefix = format!("/delivery-operator/{}/", ctx.names().base());
        let groups = crate::support::log_group_retention(&logs, &prefix).await;
        let (group, retention) = groups.into_iter().next().expect("a log group");
        logs.put_retention_policy()
            .log_group_name(&group)
            .retention_in_days(if retention == 1 { 3 } else { 1 })
            .send()
            .await
            .expect("retention changed by hand");
        desired.insert(group, retention);
    }
    let _operator = Operator::start(&ns, &[("RESYNC_INTERVAL_SECONDS", "5")]);
    eventually("every pipeline's drift corrected", WAIT, || async {
        for (group, retention) in &desired {
            let now = crate::support::log_group_retention(&logs, group).await;
            if now.get(group) != Some(retention) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// SIGTERM while a reconcile waits on a stalled AWS call: the process gives the reconciles in
/// flight `STOP_GRACE_SECONDS` (2 s here; the chart sets the pod's termination grace period less
/// 10 s), then stops them, releases its lease and exits, long before the call's own timeouts.
#[tokio::test]
async fn a_stop_signal_ends_the_process_within_its_grace() {
    let (ns, api) = namespace("rel-stop").await;
    let mut operator = Operator::start(&ns, &[("STOP_GRACE_SECONDS", "2")]);
    emulator::inject(Fault {
        service: Some("KMS".into()),
        operation: Some("DescribeKey".into()),
        access_key: Some(operator.access_key.clone()),
        latency_ms: Some(60_000),
        ..Fault::default()
    })
    .await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "held"),
    )
    .await
    .expect("create");
    let key = operator.access_key.clone();
    eventually("a reconcile holding a stalled call", WAIT, || async {
        let calls = emulator::calls_by(&key).await;
        calls
            .iter()
            .any(|c| c.operation == "DescribeKey")
            .then_some(())
    })
    .await;
    let signalled = Instant::now();
    operator.terminate();
    let status = crate::leader::exit_of(&mut operator, Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    emulator::clear_faults_for(&key).await;
    assert!(
        !status.success(),
        "reconciles were cut short: a failure status"
    );
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM"
    );
    let log = operator.log();
    assert!(
        log.contains("did not finish within the stop grace") && log.contains("released the lease"),
        "{log}"
    );
}

/// The user's S3 source bucket deleted before the pipeline: deleting the pipeline needs
/// nothing of it, and completes (it used to read the bucket first and retry every 5 s forever).
#[tokio::test]
async fn a_deleted_source_bucket_does_not_hold_the_deletion() {
    let (ns, api) = namespace("rel-srcgone").await;
    let _operator = Operator::start(&ns, &[]);
    let s3 = crate::support::s3(&config_for(crate::support::ACCOUNT).await);
    let bucket = crate::support::source_bucket(&s3, true, true).await;
    let mut dp = example("minimal.yaml", &ns, "orphaned");
    dp.spec.source.s3 = Some(delivery_operator::api::S3Source {
        bucket: bucket.clone(),
        object_key: "app.zip".into(),
    });
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "orphaned", 1).await;
    let ctx = crate::support::ctx_of(&ready);
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the source bucket deleted by its owner");
    api.delete("orphaned", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "orphaned").await;
    assert_eq!(
        crate::identity::leftovers(&ctx, crate::support::ACCOUNT).await,
        Vec::<String>::new()
    );
}

/// A reconcile that outlasts `RECONCILE_DEADLINE_SECONDS` (3 s here; every call of it is held
/// 2 s by the emulator, and the calls depend on each other) is stopped: `Synced` False
/// `ReconcileDeadlineExceeded`, and the retries go on from what AWS has until the pipeline
/// is Ready once AWS is fast again.
#[tokio::test]
async fn a_reconcile_longer_than_its_deadline_is_stopped_and_retried() {
    let (ns, api) = namespace("rel-deadline").await;
    let operator = Operator::start(&ns, &[("RECONCILE_DEADLINE_SECONDS", "3")]);
    emulator::inject(Fault {
        access_key: Some(operator.access_key.clone()),
        latency_ms: Some(2_000),
        ..Fault::default()
    })
    .await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "slow"),
    )
    .await
    .expect("create");
    let cut = eventually("the reconcile stopped at its deadline", WAIT, || async {
        let dp = api.get("slow").await.ok()?;
        condition(&dp, "Synced")
            .filter(|c| c.reason == "ReconcileDeadlineExceeded")
            .cloned()
    })
    .await;
    assert!(cut.message.contains("within 3 s"), "{}", cut.message);
    emulator::clear_faults_for(&operator.access_key).await;
    wait_ready(&api, "slow", 1).await;
}

/// The most calls of one service in one account the emulator received within any `window`.
fn busiest_window(calls: &[emulator::Recorded], window: f64) -> (String, usize) {
    let mut by_bucket: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
    for c in calls {
        by_bucket
            .entry((c.service.clone(), c.account.clone()))
            .or_default()
            .push(c.time);
    }
    let mut busiest = (String::new(), 0);
    for ((service, account), mut times) in by_bucket {
        times.sort_by(f64::total_cmp);
        for (i, start) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .take_while(|t| **t < start + window)
                .count();
            if within > busiest.1 {
                busiest = (format!("{service} in {account}"), within);
            }
        }
    }
    busiest
}

/// Every request waits for a token of its service, account and region: over the whole creation
/// of a pipeline, the emulator never received more of one service's calls in one account within
/// a second than the bucket allows (its burst plus one second's rate).
#[tokio::test]
async fn each_service_and_account_is_held_to_its_request_rate() {
    let (ns, api) = namespace("rel-rate").await;
    let operator = Operator::start(
        &ns,
        &[("AWS_REQUESTS_PER_SECOND", "4"), ("AWS_REQUEST_BURST", "4")],
    );
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "paced"),
    )
    .await
    .expect("create");
    wait_ready(&api, "paced", 1).await;
    let calls = operator.calls().await;
    let (bucket, most) = busiest_window(&calls, 1.0);
    // GCRA admits the burst at once and then one call per 1/rate s: 4 + 4 within a second.
    assert!(most <= 8, "{most} calls of {bucket} within one second");
    // Not vacuous: one bucket had more calls than a second allows, so it was made to wait.
    let iam = calls.iter().filter(|c| c.service == "IAM").count();
    assert!(iam > 8, "IAM calls: {iam}");
    operator.assert_calls_match_record().await;
}

/// Faults the soak injects into every call of the operator (its own key and every role session
/// assumed from it), as fractions of the calls: throttling, 5xx, connection resets, and replies
/// lost after AWS applied the write.
fn soak_faults(origin_key: &str) -> Vec<Fault> {
    let fault = |fraction: f64| Fault {
        origin_key: Some(origin_key.to_string()),
        fraction: Some(fraction),
        ..Fault::default()
    };
    vec![
        Fault {
            error_code: Some("ThrottlingException".into()),
            http_status: Some(400),
            message: Some("Rate exceeded".into()),
            ..fault(0.20)
        },
        Fault {
            error_code: Some("InternalFailure".into()),
            http_status: Some(500),
            ..fault(0.05)
        },
        Fault {
            drop_connection: true,
            ..fault(0.02)
        },
        Fault {
            error_code: Some("InternalFailure".into()),
            http_status: Some(500),
            after_apply: true,
            ..fault(0.02)
        },
    ]
}

/// The soak: whole pipelines of both examples' shapes (three accounts) created while 20% of
/// the operator's calls are throttled, 5% answered 5xx, 2% reset and 2% lose their reply after
/// AWS applied them. All become Ready; each account's inventory, listed from the emulator, holds
/// exactly what the same shape holds when made without faults; all deleted, nothing is left.
/// `SOAK_PIPELINES` sets the size (2 in `make test`; `scripts/soak` runs 20).
#[tokio::test]
async fn whole_pipelines_converge_under_injected_faults_and_leave_nothing() {
    let size: usize = std::env::var("SOAK_PIPELINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let accounts = [crate::support::ACCOUNT, "222222222222", "333333333333"];
    let shapes = ["minimal.yaml", "cross-account.yaml"];
    let (ns, api) = namespace("rel-soak").await;
    let env = [
        ("AWS_REQUESTS_PER_SECOND", "50"),
        ("AWS_REQUEST_BURST", "50"),
    ];

    // The baselines: one of each shape, made without a fault (in a namespace of their own),
    // counted, and deleted.
    let mut baseline = std::collections::BTreeMap::new();
    {
        let (calm_ns, calm_api) = namespace("rel-calm").await;
        let _calm = Operator::start(&calm_ns, &env);
        for (i, shape) in shapes.iter().enumerate() {
            let name = format!("calm{i}");
            let dp = example(shape, &calm_ns, &name);
            calm_api
                .create(&PostParams::default(), &dp)
                .await
                .expect("create");
            wait_ready(&calm_api, &name, 1).await;
            let ctx = crate::support::ctx_of(&dp);
            for account in accounts {
                let made = crate::identity::leftovers(&ctx, account).await.len();
                baseline.insert((*shape, account), made);
            }
            calm_api
                .delete(&name, &DeleteParams::default())
                .await
                .expect("delete");
            crate::support::gone(&calm_api, &name).await;
        }
    }

    let operator = Operator::start(&ns, &env);
    for fault in soak_faults(&operator.access_key) {
        emulator::inject(fault).await;
    }
    let started = Instant::now();
    let pipelines: Vec<(&str, DeliveryPipeline)> = (0..size)
        .map(|i| {
            let shape = shapes[i % shapes.len()];
            (shape, example(shape, &ns, &format!("soak{i:02}")))
        })
        .collect();
    for (_, dp) in &pipelines {
        api.create(&PostParams::default(), dp)
            .await
            .expect("create");
    }
    let slow = Duration::from_secs(600);
    for (_, dp) in &pipelines {
        let name = dp.metadata.name.clone().expect("name");
        eventually(&format!("{name} Ready under faults"), slow, || async {
            let dp = api.get(&name).await.ok()?;
            crate::support::is_ready(&dp).then_some(())
        })
        .await;
    }
    let ready_after = started.elapsed();
    let calls = operator.calls().await;
    let faulted = calls.iter().filter(|c| c.injected || c.dropped).count();
    println!(
        "soak: {size} pipelines Ready after {ready_after:?} under faults; {} calls, {faulted} answered by a fault",
        calls.len()
    );
    assert!(faulted > 0, "no fault was injected");
    emulator::clear_faults_from(&operator.access_key).await;

    for (shape, dp) in &pipelines {
        let ctx = crate::support::ctx_of(dp);
        for account in accounts {
            let made = crate::identity::leftovers(&ctx, account).await;
            assert_eq!(
                made.len(),
                baseline[&(*shape, account)],
                "{} in {account}: {made:#?}",
                dp.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }

    for (_, dp) in &pipelines {
        api.delete(
            dp.metadata.name.as_deref().expect("name"),
            &DeleteParams::default(),
        )
        .await
        .expect("delete");
    }
    for (_, dp) in &pipelines {
        crate::support::gone(&api, dp.metadata.name.as_deref().expect("name")).await;
        let ctx = crate::support::ctx_of(dp);
        for account in accounts {
            assert_eq!(
                crate::identity::leftovers(&ctx, account).await,
                Vec::<String>::new(),
                "{account}"
            );
        }
    }
}

/// Creates `names` in `api` and waits until every one is Ready; returns how long that took.
async fn all_ready(api: &Api<DeliveryPipeline>, ns: &str, names: &[String]) -> Duration {
    let started = Instant::now();
    for name in names {
        api.create(&PostParams::default(), &example("minimal.yaml", ns, name))
            .await
            .expect("create");
    }
    for name in names {
        eventually(
            &format!("{name} Ready"),
            Duration::from_secs(600),
            || async {
                let dp = api.get(name).await.ok()?;
                crate::support::is_ready(&dp).then_some(())
            },
        )
        .await;
    }
    started.elapsed()
}

/// One pipeline whose role lacks one action (logs:CreateLogGroup, refused by AWS for its log
/// groups only) among healthy ones: its condition names the action, it is not retried while
/// the others are made (a terminal error waits for the slow retry, holding no worker), and the
/// healthy ones reach Ready; the time they take beside it is measured against the same number
/// alone, in the same run. `FAIRNESS_PIPELINES` sets how many healthy ones (6 in `make test`;
/// the figure in docs/testing.md is for 20).
#[tokio::test]
async fn one_pipeline_denied_an_action_does_not_slow_the_others() {
    let size: usize = std::env::var("FAIRNESS_PIPELINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let env = [
        ("AWS_REQUESTS_PER_SECOND", "100"),
        ("AWS_REQUEST_BURST", "100"),
    ];
    let names: Vec<String> = (0..size).map(|i| format!("ok{i:02}")).collect();

    let (alone_ns, alone_api) = namespace("rel-alone").await;
    let alone_operator = Operator::start(&alone_ns, &env);
    let alone = all_ready(&alone_api, &alone_ns, &names).await;

    let (ns, api) = namespace("rel-beside").await;
    let operator = Operator::start(&ns, &env);
    let bad = example("minimal.yaml", &ns, "denied");
    let bad_name = crate::support::ctx_of(&bad).names().base();
    emulator::inject(Fault {
        service: Some("CloudWatch Logs".into()),
        operation: Some("CreateLogGroup".into()),
        resource: Some(bad_name.clone()),
        error_code: Some("AccessDeniedException".into()),
        http_status: Some(400),
        message: Some(format!(
            "User: arn:aws:sts::{}:assumed-role/operator/session is not authorized to perform: logs:CreateLogGroup on resource: arn:aws:logs:us-east-1:{}:log-group:/delivery-operator/{bad_name}/ because no identity-based policy allows the logs:CreateLogGroup action",
            crate::support::ACCOUNT,
            crate::support::ACCOUNT
        )),
        ..Fault::default()
    })
    .await;
    api.create(&PostParams::default(), &bad)
        .await
        .expect("create the denied one");
    let beside = all_ready(&api, &ns, &names).await;
    println!(
        "fairness: {size} healthy pipelines Ready in {alone:?} alone and {beside:?} beside one denied an action (ratio {:.2})",
        beside.as_secs_f64() / alone.as_secs_f64()
    );

    let denied = eventually("the denied pipeline's condition", WAIT, || async {
        let dp = api.get("denied").await.ok()?;
        dp.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.status == "False" && c.message.contains("logs:CreateLogGroup"))
            .cloned()
    })
    .await;
    assert_eq!(denied.reason, "AccessDenied", "{denied:?}");
    // Tried in one reconcile (one call per log group at most), not again while the others
    // were made: the terminal retry is minutes away.
    let tries = operator
        .calls()
        .await
        .iter()
        .filter(|c| c.operation == "CreateLogGroup" && c.injected)
        .count();
    assert!(
        (1..=4).contains(&tries),
        "{tries} denied CreateLogGroup calls"
    );

    for (api, names) in [
        (&alone_api, names.clone()),
        (&api, [names.clone(), vec!["denied".to_string()]].concat()),
    ] {
        for name in &names {
            api.delete(name, &DeleteParams::default())
                .await
                .expect("delete");
        }
        for name in &names {
            crate::support::gone(api, name).await;
        }
    }
    drop(alone_operator);
}

/// Every role of the cross-account pipeline takes 6 s to propagate (the emulator hides each
/// create and trust change from STS, the services that assume roles and resource policies
/// naming them, as IAM's eventual consistency does): the pipeline reaches Ready within the
/// usual wait (no 5-minute terminal retry), `Synced` is never False in any status version the
/// apiserver's watch delivered, and the emulator's record shows propagation did refuse calls.
#[tokio::test]
async fn roles_that_take_seconds_to_propagate_are_waited_for_without_an_error() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    let (ns, api) = namespace("rel-propagate").await;
    let dp = example("cross-account.yaml", &ns, "propagating");
    let fragment = crate::support::ctx_of(&dp).names().identity_tag();
    emulator::slow_iam_propagation(&fragment, 6.0).await;
    let _operator = Operator::start(&ns, &[]);
    let mut versions = watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=propagating"),
    )
    .applied_objects()
    .boxed();
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let mut not_synced = Vec::new();
    let watched = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(Ok(seen)) = versions.next().await {
            if let Some(c) = condition(&seen, "Synced").filter(|c| c.status == "False") {
                not_synced.push(format!("{}: {}", c.reason, c.message));
            }
            if crate::support::is_ready(&seen) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        watched,
        Ok(true),
        "Ready within 120 s while roles propagate"
    );
    assert!(not_synced.is_empty(), "Synced went False: {not_synced:?}");
    let refusals = emulator::propagation_refusals(&fragment).await;
    assert!(
        refusals
            .iter()
            .any(|u| u == "a policy naming it as a principal"),
        "propagation refused nothing, so this test showed nothing: {refusals:?}"
    );
    api.delete("propagating", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "propagating").await;
}

/// AWS refuses to delete the pipeline's log groups (the operator's identity denied
/// logs:DeleteLogGroup on them): the deletion waits with `Synced` `DeletionBlocked` naming
/// what is refused, the denied action and the one command that finishes anyway; once
/// annotated, the pipeline is gone, a Warning event says what was left, and the account
/// holds nothing of the pipeline but those log groups (listed from AWS).
#[tokio::test]
async fn a_deletion_aws_refuses_waits_until_told_to_leave_what_is_refused() {
    let (ns, api) = namespace("rel-refused").await;
    let dp = example("minimal.yaml", &ns, "refused");
    let ctx = crate::support::ctx_of(&dp);
    let prefix = format!("/delivery-operator/{}/", ctx.names().base());
    let _operator = Operator::start(&ns, &[]);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "refused", 1).await;
    let denied = emulator::inject(Fault {
        service: Some("CloudWatch Logs".into()),
        operation: Some("DeleteLogGroup".into()),
        resource: Some(prefix.clone()),
        error_code: Some("AccessDeniedException".into()),
        http_status: Some(400),
        message: Some(format!(
            "User: arn:aws:iam::{0}:user/operator is not authorized to perform: logs:DeleteLogGroup on resource: arn:aws:logs:us-east-1:{0}:log-group:{prefix}* because no identity-based policy allows the logs:DeleteLogGroup action",
            crate::support::ACCOUNT
        )),
        ..Fault::default()
    })
    .await;
    let (blocked, command) = delete_until_blocked(&api, &ns, "refused").await;
    for part in ["log group", "logs:DeleteLogGroup", command.as_str()] {
        assert!(
            blocked.message.contains(part),
            "{part}: {}",
            blocked.message
        );
    }

    abandon(&api, "refused").await;
    crate::support::gone(&api, "refused").await;
    let abandoned: Vec<String> = crate::support::events_in(&ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Abandoned"))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        abandoned
            .iter()
            .any(|m| m.contains("AWS refused to delete")),
        "{abandoned:?}"
    );
    emulator::remove_fault(&denied).await;
    let left = crate::identity::leftovers(&ctx, crate::support::ACCOUNT).await;
    assert!(!left.is_empty(), "the refused log groups stay");
    assert!(
        left.iter().all(|l| l.starts_with(&prefix)),
        "only the refused log groups are left: {left:?}"
    );
}

/// A control plane of its own (in `$SANDBOX_DIR/apiserver-restart` under `make test`): stopping
/// the shared one would fail every other test. It uses the shared emulator.
fn restartable_sandbox() -> &'static crate::support::Sandbox {
    static SANDBOX: std::sync::OnceLock<crate::support::Sandbox> = std::sync::OnceLock::new();
    SANDBOX.get_or_init(|| {
        let dir = match std::env::var("SANDBOX_DIR") {
            Ok(d) => std::path::PathBuf::from(d).join("apiserver-restart"),
            Err(_) => std::env::temp_dir()
                .join(format!("delivery-operator-restart-{}", std::process::id())),
        };
        let sb = crate::support::Sandbox::up(dir);
        sb.install_crds_and_rbac();
        sb
    })
}

/// The API server stops while a reconcile is in the middle of its AWS calls (a CreateBucket the
/// emulator holds 3 s) and comes back once that call was answered: the same operator process
/// (no exit, no restart) brings the pipeline to Ready, and each account's inventory (listed
/// from AWS) has exactly what the same pipeline made without the outage has; both deleted,
/// nothing left. The outage is shorter than the renew deadline the test gives the operator
/// (30 s): a longer one makes the leader exit by design (it can no longer prove it leads).
#[tokio::test]
async fn an_api_server_restart_mid_reconcile_is_ridden_out() {
    let sb = restartable_sandbox();
    let admin = sb.client(&sb.kubeconfig("admin")).await;
    let ns = unique("rel-apiserver");
    create_namespace(&admin, &ns).await;
    let api: Api<DeliveryPipeline> = Api::namespaced(admin, &ns);
    let kubeconfig = sb.kubeconfig("operator");
    let env = [
        ("KUBECONFIG", kubeconfig.to_str().expect("path")),
        ("LEADER_ELECT_LEASE_DURATION_SECONDS", "40"),
        ("LEADER_ELECT_RENEW_DEADLINE_SECONDS", "30"),
    ];
    let mut operator = Operator::start(&ns, &env);
    let calm = example("minimal.yaml", &ns, "calm");
    let calm_ctx = crate::support::ctx_of(&calm);
    api.create(&PostParams::default(), &calm)
        .await
        .expect("create calm");
    wait_ready(&api, "calm", 1).await;

    let outage = example("minimal.yaml", &ns, "outage");
    let outage_ctx = crate::support::ctx_of(&outage);
    let bucket = outage_ctx.names().artifact_bucket();
    emulator::inject(Fault {
        service: Some("S3".into()),
        operation: Some("CreateBucket".into()),
        resource: Some(bucket.clone()),
        latency_ms: Some(3000),
        count: Some(1),
        ..Fault::default()
    })
    .await;
    let mark = operator.mark().await;
    api.create(&PostParams::default(), &outage)
        .await
        .expect("create outage");
    let create_bucket = |answered: bool| {
        let operator = &operator;
        async move {
            operator
                .calls_after(mark)
                .await
                .into_iter()
                .find(|c| c.operation == "CreateBucket" && (c.status != 0) == answered)
        }
    };
    let held = eventually("CreateBucket held", WAIT, || create_bucket(false)).await;
    sb.stop_apiserver();
    eventually(
        "CreateBucket answered while the API server is down",
        WAIT,
        || async {
            let answered = create_bucket(true).await?;
            // The reconcile went on after it.
            let later = operator.calls_after(answered.seq).await.into_iter().next();
            later.map(|_| ())
        },
    )
    .await;
    sb.start_apiserver();
    wait_ready(&api, "outage", 1).await;
    assert_eq!(operator.exited(), None, "the operator rode out the outage");
    assert!(held.seq > mark);
    let made = crate::identity::leftovers(&outage_ctx, crate::support::ACCOUNT).await;
    let baseline = crate::identity::leftovers(&calm_ctx, crate::support::ACCOUNT).await;
    assert_eq!(
        made.len(),
        baseline.len(),
        "through the outage {made:#?}, without {baseline:#?}"
    );
    for name in ["calm", "outage"] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    crate::support::gone(&api, "calm").await;
    crate::support::gone(&api, "outage").await;
    assert_eq!(
        crate::identity::leftovers(&outage_ctx, crate::support::ACCOUNT).await,
        Vec::<String>::new()
    );
    drop(operator);
}

/// Replies lost after AWS applied the request, for creates and an attach that are not
/// idempotent: the SDK's retry is answered "already exists" / "already associated". Each is
/// read again at once (the attach taken as done), so the pipeline is Ready within the usual
/// wait instead of after the 5-minute terminal retry these answers used to get.
#[tokio::test]
async fn retries_answered_already_exists_do_not_wait_the_terminal_retry() {
    let (ns, api) = namespace("rel-exists").await;
    let operator = Operator::start(&ns, &[]);
    let lost = [
        ("EC2", "AttachInternetGateway"),
        ("EC2", "CreateRoute"),
        ("IAM", "CreateRole"),
        ("CodeBuild", "CreateReportGroup"),
    ];
    for (service, operation) in lost {
        emulator::inject(reply_lost_once(service, operation, &operator.access_key)).await;
    }
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "twice"),
    )
    .await
    .expect("create");
    wait_ready(&api, "twice", 1).await;
    let calls = emulator::calls_by(&operator.access_key).await;
    for (_, operation) in lost {
        let retried_after_apply = calls
            .iter()
            .filter(|c| c.operation == operation && c.injected)
            .count();
        assert_eq!(retried_after_apply, 1, "{operation}: one reply lost");
    }
    api.delete("twice", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "twice").await;
}

/// Replies of CreateVpc, CreateInternetGateway and CreateRouteTable lost after AWS applied
/// them (and nothing else failing, so the reconcile that made them is the one that says
/// Ready): EC2 has no client token for the first two, so they are sent once and the next
/// reconcile adopts what the lost attempt made; the route table's create carries a token.
/// Exactly one VPC, gateway and route table per environment when Ready (an SDK retry used to
/// make a second VPC, removed only at the next resync: the soak at 20 found it).
#[tokio::test]
async fn lost_replies_of_ec2_creates_make_each_network_part_once() {
    let (ns, api) = namespace("rel-ec2-once").await;
    let operator = Operator::start(&ns, &[]);
    for operation in ["CreateVpc", "CreateInternetGateway", "CreateRouteTable"] {
        emulator::inject(reply_lost_once("EC2", operation, &operator.access_key)).await;
    }
    let dp = example("minimal.yaml", &ns, "once");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "once", 1).await;
    let made =
        crate::identity::leftovers(&crate::support::ctx_of(&dp), crate::support::ACCOUNT).await;
    for prefix in ["vpc-", "igw-", "rtb-"] {
        let n = made.iter().filter(|m| m.starts_with(prefix)).count();
        assert_eq!(n, 2, "{prefix}: one per environment: {made:#?}");
    }
    api.delete("once", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone(&api, "once").await;
}
