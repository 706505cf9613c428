//! End to end: the operator binary as a separate process (RBAC-limited identity), the real API
//! server, and moto. AWS state is read back through the SDK and asserted field by field; AWS
//! call counts come from the operator's own metrics and are asserted exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use aws_sdk_kms::types::KeyState;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use delivery_operator::api::{DeletionPolicy, DeliveryPipeline};
use delivery_operator::desired::policy;
use delivery_operator::groups::artifact_store::desired as artifact_store;
use delivery_operator::groups::encryption_key::desired as encryption_key;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::count;
use crate::support::{
    ACCOUNT, Operator, REGION, aws_config, condition, counts, create_namespace, ctx_of, eventually,
    example, gone, is_ready, kube_client, reconcile_and_wait, s3, sandbox, start, unique,
    wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);

/// Applies a pipeline with `kubectl apply`, as a user would.
fn kubectl_apply(dp: &DeliveryPipeline) {
    let mut child = sandbox()
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("kubectl");
    let yaml = serde_yaml::to_string(dp).expect("yaml");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    assert!(
        child.wait().expect("kubectl apply").success(),
        "kubectl apply failed"
    );
}

/// The group a call belongs to: each group uses its own AWS services (the key also searches
/// the tagging API for a key orphaned by a crash; the pipeline reads its S3 source bucket,
/// counted with the artifact store's S3 calls); STS is the session.
fn group_of(call: &str) -> &'static str {
    match call.split(':').next().unwrap_or_default() {
        "KMS" | "Resource Groups Tagging API" => "EncryptionKey",
        "S3" => "ArtifactStore",
        "SNS" => "Notifications",
        "CloudWatch Logs" => "LogGroups",
        "IAM" => "Roles",
        "CodeBuild" => "Projects",
        "CodePipeline" => "Pipeline",
        "ECR" => "ImageRepository",
        "EC2" => "Network",
        "EventBridge" => "EventRules",
        "CloudWatch" => "Alarms",
        "ECS" => "Service",
        "STS" => "Session",
        _ => "Unknown",
    }
}

/// Calls split by group, so each group's exact counts are asserted on their own.
fn by_group(calls: BTreeMap<String, f64>) -> BTreeMap<&'static str, BTreeMap<String, f64>> {
    let mut out: BTreeMap<&'static str, BTreeMap<String, f64>> = BTreeMap::new();
    for (call, n) in calls {
        out.entry(group_of(&call)).or_default().insert(call, n);
    }
    out
}

fn groups(
    pairs: &[(&'static str, &[(&str, f64)])],
) -> BTreeMap<&'static str, BTreeMap<String, f64>> {
    pairs
        .iter()
        .filter(|(_, calls)| !calls.is_empty())
        .map(|(g, calls)| (*g, counts(calls)))
        .collect()
}

/// Log group calls for the minimal example: build and scan in the pipeline account, one
/// application log group per environment (both environments in the pipeline account).
const LOG_GROUPS_CREATE: &[(&str, f64)] = &[
    ("CloudWatch Logs:CreateLogGroup", 4.0),
    ("CloudWatch Logs:PutRetentionPolicy", 4.0),
];

/// Network calls for the minimal example: per environment, a VPC (DNS hostnames turned on), an
/// attached gateway, two subnets, one route table with the default route and both
/// associations, the security group with its one ingress rule (the VPC's CIDR).
const NETWORK_CREATE: &[(&str, f64)] = &[
    ("EC2:CreateVpc", 2.0),
    ("EC2:ModifyVpcAttribute", 2.0),
    ("EC2:CreateInternetGateway", 2.0),
    ("EC2:AttachInternetGateway", 2.0),
    ("EC2:CreateSubnet", 4.0),
    ("EC2:CreateRouteTable", 2.0),
    ("EC2:CreateRoute", 2.0),
    ("EC2:AssociateRouteTable", 4.0),
    ("EC2:CreateSecurityGroup", 2.0),
    ("EC2:AuthorizeSecurityGroupIngress", 2.0),
];

/// ECS calls for the minimal example: per environment, the cluster, the first revision (the
/// placeholder image) and the service (no task until the pipeline's first deployment).
const SERVICE_CREATE: &[(&str, f64)] = &[
    ("ECS:CreateCluster", 2.0),
    ("ECS:RegisterTaskDefinition", 2.0),
    ("ECS:CreateService", 2.0),
];

/// Role calls for the minimal example: pipeline, build, scan and (S3 source) trigger roles;
/// execution and task role per environment (no deploy roles: one account). Task roles have no
/// inline policy.
const ROLES_CREATE: &[(&str, f64)] = &[("IAM:CreateRole", 8.0), ("IAM:PutRolePolicy", 6.0)];

/// The reads of one reconcile of an up-to-date pipeline: each group observed once. The tags
/// of the key, topics, log groups, repository, pipeline, rules and alarms come from one
/// tag:GetResources for the account (the other resources' tags come with their own reads).
pub fn observe_reads() -> BTreeMap<&'static str, BTreeMap<String, f64>> {
    by_group(counts(&[
        ("Resource Groups Tagging API:GetResources", 1.0),
        // Two topics: notifications and approval.
        ("SNS:GetTopicAttributes", 2.0),
        ("SNS:ListSubscriptionsByTopic", 2.0),
        // One listing for the three scopes (pipeline, staging, production), all in the
        // pipeline's account.
        ("CloudWatch Logs:DescribeLogGroups", 1.0),
        // The key step resolves the alias; the key policy step reads the policy of that key.
        ("KMS:DescribeKey", 1.0),
        ("KMS:GetKeyPolicy", 1.0),
        ("KMS:GetKeyRotationStatus", 1.0),
        // Eight roles (the trigger role with the S3 source), six with an inline policy. No
        // deploy role is looked up: both environments are in the pipeline's account, which
        // they cannot leave.
        ("IAM:GetRole", 8.0),
        ("IAM:ListRolePolicies", 8.0),
        ("IAM:GetRolePolicy", 6.0),
        ("IAM:ListAttachedRolePolicies", 8.0),
        // Build and scan projects in one read, the scan's report group.
        ("CodeBuild:BatchGetProjects", 1.0),
        ("CodeBuild:BatchGetReportGroups", 1.0),
        ("S3:GetBucketEncryption", 1.0),
        ("S3:GetBucketLifecycleConfiguration", 1.0),
        ("S3:GetBucketPolicy", 1.0),
        ("S3:GetBucketTagging", 1.0),
        // The artifact bucket's and the source bucket's.
        ("S3:GetBucketVersioning", 2.0),
        ("S3:GetBucketNotificationConfiguration", 1.0),
        ("CodePipeline:GetPipeline", 1.0),
        // status.lastExecution: no execution yet, so no GetPipelineState.
        ("CodePipeline:ListPipelineExecutions", 1.0),
        ("S3:GetPublicAccessBlock", 1.0),
        ("ECR:DescribeRepositories", 1.0),
        ("ECR:GetLifecyclePolicy", 1.0),
        ("ECR:GetRepositoryPolicy", 1.0),
        // Two networks (staging, production) in one account: each part listed once by the
        // pipeline's owner tag for both, each VPC's two DNS attributes read.
        ("EC2:DescribeVpcs", 1.0),
        ("EC2:DescribeVpcAttribute", 4.0),
        ("EC2:DescribeInternetGateways", 1.0),
        ("EC2:DescribeSubnets", 1.0),
        ("EC2:DescribeRouteTables", 1.0),
        ("EC2:DescribeSecurityGroups", 1.0),
        // Rules listed by prefix; each rule's targets (failed, succeeded, source).
        ("EventBridge:ListRules", 1.0),
        ("EventBridge:ListTargetsByRule", 3.0),
        // Alarms listed by prefix.
        ("CloudWatch:DescribeAlarms", 1.0),
        // Two runtimes: both clusters in one description, each service (the revision it runs
        // was registered by this process, and revisions never change).
        ("ECS:DescribeClusters", 1.0),
        ("ECS:DescribeServices", 2.0),
    ]))
}

async fn key_tags(kms: &aws_sdk_kms::Client, key: &str) -> BTreeMap<String, String> {
    let out = kms
        .list_resource_tags()
        .key_id(key)
        .send()
        .await
        .expect("key tags");
    out.tags()
        .iter()
        .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
        .collect()
}

async fn bucket_tags(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, String> {
    let out = s3
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket tags");
    out.tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// (noncurrent-version expiry, abort-incomplete-upload, artifact expiry) days of the
/// operator's lifecycle rules.
async fn lifecycle_days(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> (Option<i32>, Option<i32>, Option<i32>) {
    let out = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .expect("lifecycle");
    let rule = |id: &str| out.rules().iter().find(|r| r.id() == Some(id)).cloned();
    (
        rule(artifact_store::RULE_NONCURRENT)
            .and_then(|r| r.noncurrent_version_expiration()?.noncurrent_days()),
        rule(artifact_store::RULE_ABORT_UPLOADS).and_then(|r| {
            r.abort_incomplete_multipart_upload()?
                .days_after_initiation()
        }),
        rule(artifact_store::RULE_EXPIRE_ARTIFACTS).and_then(|r| r.expiration()?.days()),
    )
}

#[tokio::test]
async fn minimal_pipeline_reaches_ready_with_every_aws_property_and_updates_minimally() {
    let (ns, operator, api) = start("e2e-ready").await;
    let dp = example("minimal.yaml", &ns, "hello");
    kubectl_apply(&dp);
    let dp = wait_ready(&api, "hello", 1).await;

    for c in ["EncryptionKeyReady", "ArtifactStoreReady", "Synced"] {
        let cond = condition(&dp, c).unwrap_or_else(|| panic!("{c} missing"));
        assert_eq!(cond.status, "True", "{c}: {cond:?}");
        assert_eq!(cond.observed_generation, Some(1));
    }
    // Nothing was deployed yet (the emulator runs no pipeline): the services are as declared,
    // at no task, and their conditions say they await the pipeline's first image.
    let ready = condition(&dp, "Ready").expect("Ready");
    assert_eq!(ready.status, "True", "{ready:?}");
    for c in ["StagingServiceReady", "ProductionServiceReady"] {
        let cond = condition(&dp, c).unwrap_or_else(|| panic!("{c} missing"));
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "AwaitingFirstImage")
        );
    }
    assert_eq!(
        dp.finalizers(),
        &[delivery_operator::api::FINALIZER.to_string()]
    );
    let status = dp.status.clone().expect("status");
    let outputs = &status.outputs;
    let ctx = ctx_of(&dp);
    let desired_key = encryption_key::encryption_key(&ctx);
    let key_arn = outputs.kms_key_arn.clone().expect("kmsKeyArn output");
    let desired_bucket = artifact_store::artifact_bucket(&ctx, &key_arn);
    assert_eq!(outputs.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(outputs.region.as_deref(), Some(REGION));
    assert_eq!(
        outputs.artifact_bucket.as_deref(),
        Some(desired_bucket.name.as_str())
    );
    let kinds: Vec<(&str, &str)> = status
        .inventory
        .iter()
        .filter(|i| i.kind == "AWS::KMS::Key" || i.kind == "AWS::S3::Bucket")
        .map(|i| (i.kind.as_str(), i.id.as_str()))
        .collect();
    let log_groups = status
        .inventory
        .iter()
        .filter(|i| i.kind == "AWS::Logs::LogGroup")
        .count();
    assert_eq!(log_groups, 4, "{:?}", status.inventory);
    assert_eq!(
        status
            .inventory
            .iter()
            .filter(|i| i.kind == "AWS::SNS::Topic")
            .count(),
        2
    );
    assert_eq!(
        kinds,
        vec![
            ("AWS::KMS::Key", key_arn.as_str()),
            (
                "AWS::S3::Bucket",
                format!("arn:aws:s3:::{}", desired_bucket.name).as_str()
            )
        ]
    );

    // KMS key, read back field by field.
    let aws = aws_config().await;
    let kms = aws_sdk_kms::Client::new(&aws);
    let key = kms
        .describe_key()
        .key_id(&desired_key.alias)
        .send()
        .await
        .expect("key found by alias");
    let meta = key.key_metadata().expect("metadata");
    assert_eq!(meta.arn(), Some(key_arn.as_str()));
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    assert_eq!(
        meta.key_manager(),
        Some(&aws_sdk_kms::types::KeyManagerType::Customer)
    );
    assert_eq!(meta.description(), Some(desired_key.description.as_str()));
    let rotation = kms
        .get_key_rotation_status()
        .key_id(meta.key_id())
        .send()
        .await
        .expect("rotation");
    assert!(rotation.key_rotation_enabled());
    assert_eq!(rotation.rotation_period_in_days(), Some(365));
    let key_policy = kms
        .get_key_policy()
        .key_id(meta.key_id())
        .policy_name("default")
        .send()
        .await
        .expect("policy");
    let key_policy = policy::parse(key_policy.policy().expect("policy text")).expect("policy json");
    assert!(
        policy::equivalent(
            &key_policy,
            &encryption_key::key_policy(&ctx, &encryption_key::key_users(&ctx))
        ),
        "{key_policy}"
    );
    let tags = key_tags(&kms, meta.key_id()).await;
    assert_eq!(
        tags.get("ManagedBy").map(String::as_str),
        Some("delivery-operator")
    );
    assert_eq!(tags.get("Environment").map(String::as_str), Some("dev"));
    assert_eq!(tags.get("CostCenter").map(String::as_str), Some("platform"));
    assert_eq!(
        tags.get("delivery-operator.dev/owner"),
        Some(&format!("{}/{ns}/hello", crate::support::cluster_id()))
    );

    // Artifact bucket, read back field by field.
    let s3 = s3(&aws);
    let bucket = desired_bucket.name.as_str();
    let enc = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("encryption");
    let rule = &enc
        .server_side_encryption_configuration()
        .expect("sse")
        .rules()[0];
    let default = rule
        .apply_server_side_encryption_by_default()
        .expect("default");
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(default.kms_master_key_id(), Some(key_arn.as_str()));
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .expect("versioning");
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let pab = s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .expect("public access block");
    let pab = pab.public_access_block_configuration().expect("config");
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let bucket_policy = s3
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket policy");
    let bucket_policy = policy::parse(bucket_policy.policy().expect("text")).expect("json");
    assert!(
        policy::equivalent(&bucket_policy, &desired_bucket.policy),
        "{bucket_policy}"
    );
    assert_eq!(
        lifecycle_days(&s3, bucket).await,
        (Some(30), Some(7), Some(30))
    );
    assert_eq!(bucket_tags(&s3, bucket).await, desired_bucket.tags.tags);

    // Events for what was created: one per reconcile that created something, naming each
    // kind it created.
    let created: Vec<String> = crate::support::events_in(&ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Created"))
        .filter_map(|e| e.message)
        .collect();
    let named = |kind: &str| {
        created.iter().any(|m| {
            m.strip_prefix("created ")
                .is_some_and(|kinds| kinds.split(", ").any(|k| k == kind))
        })
    };
    assert!(
        named("KMS key") && named("S3 artifact bucket"),
        "{created:?}"
    );
    assert!(
        created.len() <= 3,
        "one Created event per reconcile: {created:?}"
    );

    // A reconcile with nothing to do: exactly one observation of each subresource, no writes,
    // and a status that changes only in the request it answers.
    let calls = operator.calls_of_reconcile(&api, "hello").await;
    assert_eq!(
        count(&calls, "write"),
        BTreeMap::new(),
        "a no-op reconcile wrote to AWS"
    );
    assert_eq!(by_group(count(&calls, "read")), observe_reads());
    let unchanged = api.get("hello").await.expect("get");
    assert_eq!(
        unchanged.metadata.annotations.as_ref().map(|a| a.len()),
        Some(2),
        "only our annotation and kubectl's"
    );
    // The check is recorded (`verifiedAt` moves on, RFC 3339 in UTC sorts as time);
    // nothing else in the status changes.
    let verified = |s: &Option<delivery_operator::api::DeliveryPipelineStatus>| {
        s.as_ref().and_then(|s| s.verified_at.clone())
    };
    assert!(
        verified(&unchanged.status) >= verified(&dp.status) && verified(&dp.status).is_some(),
        "verifiedAt {:?} then {:?}",
        verified(&dp.status),
        verified(&unchanged.status)
    );
    let without_check = |s: &Option<delivery_operator::api::DeliveryPipelineStatus>| {
        s.clone().map(|mut s| {
            s.last_handled_reconcile_at = None;
            s.verified_at = None;
            s
        })
    };
    assert_eq!(
        without_check(&unchanged.status),
        without_check(&dp.status),
        "status is not rewritten when nothing changed"
    );

    // Change the lifecycle: exactly one AWS write, and observedGeneration follows.
    let mark = operator.mark().await;
    api.patch(
        "hello",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"artifactStore": {"noncurrentVersionExpirationDays": 45}}})),
    )
    .await
    .expect("patch spec");
    let updated = wait_ready(&api, "hello", 2).await;
    assert_eq!(
        count(&operator.calls_after(mark).await, "write"),
        counts(&[("S3:PutBucketLifecycleConfiguration", 1.0)])
    );
    assert_eq!(
        updated.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
    assert_eq!(
        lifecycle_days(&s3, bucket).await,
        (Some(45), Some(7), Some(30))
    );
    // The condition did not flap: its transition time is the original one.
    assert_eq!(
        condition(&updated, "ArtifactStoreReady").map(|c| c.last_transition_time.clone()),
        condition(&dp, "ArtifactStoreReady").map(|c| c.last_transition_time.clone())
    );
}

#[tokio::test]
async fn drift_in_aws_is_repaired_on_resync() {
    let (ns, operator, api) = start("e2e-drift").await;
    kubectl_apply(&example("minimal.yaml", &ns, "drifty"));
    let dp = wait_ready(&api, "drifty", 1).await;
    let outputs = dp.status.clone().expect("status").outputs;
    let aws = aws_config().await;
    let kms = aws_sdk_kms::Client::new(&aws);
    let s3 = s3(&aws);
    let key = outputs.kms_key_arn.expect("key");
    let bucket = outputs.artifact_bucket.expect("bucket");
    let mark = operator.mark().await;
    kms.disable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .expect("disable rotation");
    s3.delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete policy");
    reconcile_and_wait(&api, "drifty").await;

    assert_eq!(
        count(&operator.calls_after(mark).await, "write"),
        counts(&[("KMS:EnableKeyRotation", 1.0), ("S3:PutBucketPolicy", 1.0)])
    );
    assert!(
        kms.get_key_rotation_status()
            .key_id(&key)
            .send()
            .await
            .expect("rotation")
            .key_rotation_enabled()
    );
    let restored = s3
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("policy restored");
    let desired = artifact_store::artifact_bucket(&ctx_of(&dp), &key);
    assert!(policy::equivalent(
        &policy::parse(restored.policy().unwrap_or_default()).expect("json"),
        &desired.policy
    ));
    let dp = api.get("drifty").await.expect("get");
    assert!(is_ready(&dp), "{:?}", dp.status);
}

#[tokio::test]
async fn deletion_removes_the_finalizer_only_after_aws_confirms() {
    let (ns, _operator, api) = start("e2e-delete").await;
    kubectl_apply(&example("minimal.yaml", &ns, "doomed"));
    let dp = wait_ready(&api, "doomed", 1).await;
    let outputs = dp.status.clone().expect("status").outputs;
    let key = outputs.kms_key_arn.expect("key");
    let bucket = outputs.artifact_bucket.expect("bucket");
    let aws = aws_config().await;
    let s3 = s3(&aws);
    // An artifact (with versions) must not stop the deletion.
    for body in ["v1", "v2"] {
        s3.put_object()
            .bucket(&bucket)
            .key("artifact.zip")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .expect("put");
    }

    api.delete("doomed", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "doomed").await;

    let head = s3.head_bucket().bucket(&bucket).send().await;
    assert!(
        head.is_err_and(|e| e.raw_response().is_some_and(|r| r.status().as_u16() == 404)),
        "bucket still exists"
    );
    let kms = aws_sdk_kms::Client::new(&aws);
    let key_state = kms
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("key is still described");
    assert_eq!(
        key_state.key_metadata().and_then(|m| m.key_state()),
        Some(&KeyState::PendingDeletion)
    );
    let alias = encryption_key::encryption_key(&ctx_of(&dp)).alias;
    let err = kms
        .describe_key()
        .key_id(&alias)
        .send()
        .await
        .expect_err("alias is gone");
    assert_eq!(err.code(), Some("NotFoundException"));
}

#[tokio::test]
async fn retain_policy_keeps_aws_resources_and_releases_the_object() {
    let (ns, _operator, api) = start("e2e-retain").await;
    let mut dp = example("minimal.yaml", &ns, "kept");
    dp.spec.deletion_policy = DeletionPolicy::Retain;
    kubectl_apply(&dp);
    let dp = wait_ready(&api, "kept", 1).await;
    let outputs = dp.status.clone().expect("status").outputs;
    api.delete("kept", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "kept").await;

    let aws = aws_config().await;
    s3(&aws)
        .head_bucket()
        .bucket(outputs.artifact_bucket.expect("bucket"))
        .send()
        .await
        .expect("bucket retained");
    let key = aws_sdk_kms::Client::new(&aws)
        .describe_key()
        .key_id(outputs.kms_key_arn.expect("key"))
        .send()
        .await
        .expect("key");
    assert_eq!(
        key.key_metadata().and_then(|m| m.key_state()),
        Some(&KeyState::Enabled)
    );
    aws_sdk_ecr::Client::new(&aws)
        .describe_repositories()
        .repository_names(ctx_of(&dp).names().image_repository())
        .send()
        .await
        .expect("image repository retained");
}

#[tokio::test]
async fn same_name_in_two_namespaces_gets_distinct_aws_resources() {
    let client = kube_client("admin").await;
    let (a, b) = (unique("e2e-twin-a"), unique("e2e-twin-b"));
    create_namespace(&client, &a).await;
    create_namespace(&client, &b).await;
    let _operator = Operator::start(&format!("{a},{b}"), &[]);
    let api_a: Api<DeliveryPipeline> = Api::namespaced(client.clone(), &a);
    let api_b: Api<DeliveryPipeline> = Api::namespaced(client.clone(), &b);
    api_a
        .create(&PostParams::default(), &example("minimal.yaml", &a, "app"))
        .await
        .expect("create a");
    api_b
        .create(&PostParams::default(), &example("minimal.yaml", &b, "app"))
        .await
        .expect("create b");
    let (da, db) = (
        wait_ready(&api_a, "app", 1).await,
        wait_ready(&api_b, "app", 1).await,
    );
    let (oa, ob) = (
        da.status.expect("status").outputs,
        db.status.expect("status").outputs,
    );
    assert_ne!(oa.artifact_bucket, ob.artifact_bucket);
    assert_ne!(oa.kms_key_arn, ob.kms_key_arn);
    let s3 = s3(&aws_config().await);
    for bucket in [
        oa.artifact_bucket.expect("a"),
        ob.artifact_bucket.expect("b"),
    ] {
        let owner = bucket_tags(&s3, &bucket)
            .await
            .remove("delivery-operator.dev/owner");
        assert!(
            owner == Some(format!("{}/{a}/app", crate::support::cluster_id()))
                || owner == Some(format!("{}/{b}/app", crate::support::cluster_id())),
            "{owner:?}"
        );
    }
}

#[tokio::test]
async fn a_credentials_role_that_cannot_be_assumed_is_reported_and_creates_nothing() {
    let (ns, operator, api) = start("e2e-badrole").await;
    let mut dp = example("minimal.yaml", &ns, "lost");
    let role = format!("arn:aws:iam::{ACCOUNT}:role/no-such-role");
    dp.spec.credentials = Some(delivery_operator::api::Credentials {
        role_arn: role.clone(),
    });
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");

    let stored = eventually("Ready=False with the credentials reason", WAIT, || async {
        let dp = api.get("lost").await.ok()?;
        let ready = condition(&dp, "Ready")?;
        (ready.status == "False" && ready.reason == "CredentialsRoleNotAssumable").then_some(dp)
    })
    .await;
    let ready = condition(&stored, "Ready").cloned().expect("ready");
    assert!(
        ready.message.contains(&role) && ready.message.contains("trust policy"),
        "{}",
        ready.message
    );
    assert_eq!(
        condition(&stored, "Synced").map(|c| c.reason.as_str()),
        Some("CredentialsRoleNotAssumable")
    );
    assert!(
        stored
            .status
            .as_ref()
            .is_some_and(|s| s.inventory.is_empty())
    );

    // One reconcile adds the finalizer; the next fails on credentials and is counted as an error.
    eventually(
        "one ok and one failed reconcile",
        Duration::from_secs(30),
        || async {
            let metrics = operator.metrics().await;
            let result = |r: &str| {
                metrics
                    .0
                    .get(&format!(
                        "delivery_operator_reconciles_total{{result=\"{r}\"}}"
                    ))
                    .copied()
            };
            ((result("ok"), result("error")) == (Some(1.0), Some(1.0))).then_some(())
        },
    )
    .await;
    let writes = count(&operator.calls().await, "write");
    assert!(
        writes.keys().all(|k| k == "STS:AssumeRole"),
        "wrote to AWS despite unusable credentials: {writes:?}"
    );
    let ctx = ctx_of(&stored);
    let aws = aws_config().await;
    let err = aws_sdk_kms::Client::new(&aws)
        .describe_key()
        .key_id(encryption_key::encryption_key(&ctx).alias)
        .send()
        .await
        .expect_err("no key was created");
    assert_eq!(err.code(), Some("NotFoundException"));
    let bucket = ctx.names().artifact_bucket();
    assert!(
        s3(&aws).head_bucket().bucket(&bucket).send().await.is_err(),
        "a bucket was created"
    );

    // Nothing was ever created, so deletion does not wait on AWS.
    api.delete("lost", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "lost").await;
}

/// The writes of a first reconcile that creates everything, per group; `kms` differs between
/// a fresh key and an adopted one.
fn creation_writes(kms: &[(&str, f64)]) -> BTreeMap<&'static str, BTreeMap<String, f64>> {
    groups(&[
        ("EncryptionKey", kms),
        (
            "ArtifactStore",
            &[
                ("S3:CreateBucket", 1.0),
                ("S3:PutBucketTagging", 1.0),
                ("S3:PutPublicAccessBlock", 1.0),
                ("S3:PutBucketEncryption", 1.0),
                ("S3:PutBucketVersioning", 1.0),
                ("S3:PutBucketLifecycleConfiguration", 1.0),
                ("S3:PutBucketPolicy", 1.0),
            ],
        ),
        ("Notifications", &[("SNS:CreateTopic", 2.0)]),
        ("LogGroups", LOG_GROUPS_CREATE),
        ("Roles", ROLES_CREATE),
        ("Network", NETWORK_CREATE),
        ("Service", SERVICE_CREATE),
        (
            "Projects",
            &[
                ("CodeBuild:CreateReportGroup", 1.0),
                ("CodeBuild:CreateProject", 2.0),
            ],
        ),
        ("Pipeline", &[("CodePipeline:CreatePipeline", 1.0)]),
        (
            "ImageRepository",
            &[
                ("ECR:CreateRepository", 1.0),
                ("ECR:PutLifecyclePolicy", 1.0),
            ],
        ),
        (
            "EventRules",
            &[
                ("EventBridge:PutRule", 3.0),
                ("EventBridge:PutTargets", 3.0),
            ],
        ),
        ("Alarms", &[("CloudWatch:PutMetricAlarm", 2.0)]),
    ])
}

#[tokio::test]
async fn a_key_left_by_a_crash_before_its_alias_is_adopted_not_duplicated() {
    let client = kube_client("admin").await;
    let ns = unique("e2e-crash");
    create_namespace(&client, &ns).await;
    let dp = example("minimal.yaml", &ns, "phoenix");
    // What a reconcile that died between CreateKey and CreateAlias leaves behind.
    let aws = aws_config().await;
    let kms = aws_sdk_kms::Client::new(&aws);
    let orphan_arn = crate::support::key_left_by_a_crash(&kms, &dp).await;

    let operator = Operator::start(&ns, &[]);
    let api: Api<DeliveryPipeline> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "phoenix", 1).await;
    assert_eq!(
        ready.status.expect("status").outputs.kms_key_arn,
        Some(orphan_arn.clone())
    );

    assert_eq!(
        by_group(count(&operator.calls().await, "write")),
        // The key policy step names the pipeline's roles once they exist: one PutKeyPolicy.
        creation_writes(&[
            ("KMS:CreateAlias", 1.0),
            ("KMS:EnableKeyRotation", 1.0),
            ("KMS:PutKeyPolicy", 1.0)
        ]),
        "adoption must not create a second key"
    );
    let rotation = kms
        .get_key_rotation_status()
        .key_id(&orphan_arn)
        .send()
        .await
        .expect("rotation");
    assert!(rotation.key_rotation_enabled());
}

/// The writes that create the minimal example's whole pipeline, per group.
fn create_writes_by_group() -> BTreeMap<&'static str, BTreeMap<String, f64>> {
    creation_writes(&[
        ("KMS:CreateKey", 1.0),
        ("KMS:CreateAlias", 1.0),
        ("KMS:EnableKeyRotation", 1.0),
        ("KMS:PutKeyPolicy", 1.0),
    ])
}

/// The same, by `Service:Operation`.
pub fn create_writes() -> BTreeMap<String, f64> {
    create_writes_by_group().into_values().flatten().collect()
}

#[tokio::test]
async fn first_reconcile_makes_exactly_the_creating_calls() {
    let (ns, operator, api) = start("e2e-count").await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "counted"),
    )
    .await
    .expect("create");
    wait_ready(&api, "counted", 1).await;
    let calls = operator.calls().await;
    assert_eq!(by_group(count(&calls, "write")), create_writes_by_group());
    // Reads: the identity once, each absent group observed once, the orphan-key search.
    assert_eq!(
        by_group(count(&calls, "read")),
        groups(&[
            ("Session", &[("STS:GetCallerIdentity", 1.0)]),
            (
                "EncryptionKey",
                &[
                    // The key step finds no key and makes it; the key policy step reads
                    // the new key's policy (already as desired: one account).
                    ("KMS:DescribeKey", 1.0),
                    ("KMS:GetKeyPolicy", 1.0),
                    ("Resource Groups Tagging API:GetResources", 1.0),
                ],
            ),
            (
                "ArtifactStore",
                &[
                    ("S3:GetBucketTagging", 1.0),
                    // The pipeline checks its source bucket (versioned, sends events).
                    ("S3:GetBucketVersioning", 1.0),
                    ("S3:GetBucketNotificationConfiguration", 1.0),
                ],
            ),
            ("Notifications", &[("SNS:GetTopicAttributes", 2.0)]),
            // One listing for the three scopes.
            ("LogGroups", &[("CloudWatch Logs:DescribeLogGroups", 1.0)]),
            ("Roles", &[("IAM:GetRole", 8.0)]),
            (
                "Projects",
                &[
                    ("CodeBuild:BatchGetProjects", 1.0),
                    ("CodeBuild:BatchGetReportGroups", 1.0),
                ],
            ),
            // The last execution is looked up once the pipeline exists (none ran yet).
            (
                "Pipeline",
                &[
                    ("CodePipeline:GetPipeline", 1.0),
                    ("CodePipeline:ListPipelineExecutions", 1.0),
                ],
            ),
            // The repository, then its lifecycle policy (none yet).
            (
                "ImageRepository",
                &[
                    ("ECR:DescribeRepositories", 1.0),
                    ("ECR:GetLifecyclePolicy", 1.0),
                ],
            ),
            // No VPC nor gateway found (one listing each for both environments), then the
            // zones for each environment's subnets.
            (
                "Network",
                &[
                    ("EC2:DescribeVpcs", 1.0),
                    ("EC2:DescribeInternetGateways", 1.0),
                    ("EC2:DescribeAvailabilityZones", 2.0),
                ],
            ),
            ("EventRules", &[("EventBridge:ListRules", 1.0)]),
            ("Alarms", &[("CloudWatch:DescribeAlarms", 1.0)]),
            // No cluster found (one description for both), so no service to look for.
            ("Service", &[("ECS:DescribeClusters", 1.0)]),
        ])
    );
    // The emulator's own record of this operator's requests says the same.
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn a_tag_removed_from_the_spec_is_removed_from_aws() {
    let (ns, operator, api) = start("e2e-tags").await;
    let mut dp = example("minimal.yaml", &ns, "tagged");
    dp.spec.tags = BTreeMap::from([
        ("Team".to_string(), "payments".to_string()),
        ("Tier".to_string(), "gold".to_string()),
    ]);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "tagged", 1).await;
    let status = ready.status.clone().expect("status");
    assert_eq!(
        status.applied_tag_keys,
        vec!["Team".to_string(), "Tier".to_string()]
    );
    let (key, bucket) = (
        status.outputs.kms_key_arn.expect("key"),
        status.outputs.artifact_bucket.expect("bucket"),
    );
    let mark = operator.mark().await;
    api.patch(
        "tagged",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"tags": {"Tier": null}}})),
    )
    .await
    .expect("drop a tag");
    let updated = wait_ready(&api, "tagged", 2).await;
    assert_eq!(
        by_group(count(&operator.calls_after(mark).await, "write")),
        groups(&[
            ("EncryptionKey", &[("KMS:UntagResource", 1.0)]),
            ("ArtifactStore", &[("S3:PutBucketTagging", 1.0)]),
            ("Notifications", &[("SNS:UntagResource", 2.0)]),
            ("LogGroups", &[("CloudWatch Logs:UntagResource", 4.0)]),
            ("Roles", &[("IAM:UntagRole", 8.0)]),
            // CodeBuild takes the whole tag set with the update.
            (
                "Projects",
                &[
                    ("CodeBuild:UpdateProject", 2.0),
                    ("CodeBuild:UpdateReportGroup", 1.0),
                ],
            ),
            ("Pipeline", &[("CodePipeline:UntagResource", 1.0)]),
            ("ImageRepository", &[("ECR:UntagResource", 1.0)]),
            // One DeleteTags per environment for its six network parts.
            ("Network", &[("EC2:DeleteTags", 2.0)]),
            ("EventRules", &[("EventBridge:UntagResource", 3.0)]),
            ("Alarms", &[("CloudWatch:UntagResource", 2.0)]),
            // Each environment's cluster and service (revisions keep the tags they were
            // registered with).
            ("Service", &[("ECS:UntagResource", 4.0)]),
        ])
    );
    assert_eq!(
        updated.status.expect("status").applied_tag_keys,
        vec!["Team".to_string()]
    );

    let aws = aws_config().await;
    let on_key = key_tags(&aws_sdk_kms::Client::new(&aws), &key).await;
    assert!(
        on_key.contains_key("Team") && !on_key.contains_key("Tier"),
        "{on_key:?}"
    );
    let on_bucket = bucket_tags(&s3(&aws), &bucket).await;
    assert!(
        on_bucket.contains_key("Team") && !on_bucket.contains_key("Tier"),
        "{on_bucket:?}"
    );
    assert!(on_bucket.contains_key("ManagedBy"));
}

#[tokio::test]
async fn a_key_scheduled_for_deletion_by_hand_is_restored() {
    let (ns, operator, api) = start("e2e-restore").await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "saved"),
    )
    .await
    .expect("create");
    let dp = wait_ready(&api, "saved", 1).await;
    let key = dp.status.expect("status").outputs.kms_key_arn.expect("key");
    let kms = aws_sdk_kms::Client::new(&aws_config().await);
    let mark = operator.mark().await;
    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("schedule deletion");
    reconcile_and_wait(&api, "saved").await;

    // AWS leaves a key whose deletion was cancelled Disabled: cancel, enable, then rewrite the
    // rotation it could not report while pending. The policy survived (the key policy step
    // reads it after the restore and finds it as desired).
    assert_eq!(
        count(&operator.calls_after(mark).await, "write"),
        counts(&[
            ("KMS:CancelKeyDeletion", 1.0),
            ("KMS:EnableKey", 1.0),
            ("KMS:EnableKeyRotation", 1.0),
        ])
    );
    let described = kms
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("describe");
    assert_eq!(
        described.key_metadata().and_then(|m| m.key_state()),
        Some(&KeyState::Enabled)
    );
    let dp = api.get("saved").await.expect("get");
    assert_eq!(
        condition(&dp, "EncryptionKeyReady").map(|c| c.status.as_str()),
        Some("True")
    );
}

#[tokio::test]
async fn switching_a_deleting_pipeline_to_retain_releases_it() {
    let (ns, operator, api) = start("e2e-release").await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "stuck"),
    )
    .await
    .expect("create");
    let dp = wait_ready(&api, "stuck", 1).await;
    let bucket = dp
        .status
        .expect("status")
        .outputs
        .artifact_bucket
        .expect("bucket");
    // With the operator away, the deletion cannot progress: the finalizer holds the object.
    drop(operator);
    api.delete("stuck", &DeleteParams::default())
        .await
        .expect("delete");
    let held = api.get("stuck").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "stuck",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})),
    )
    .await
    .expect("switch to Retain while deleting");

    let _operator = Operator::start(&ns, &[]);
    gone(&api, "stuck").await;
    s3(&aws_config().await)
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket retained");
}
