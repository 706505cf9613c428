//! The AWS emulator over real HTTP with the real SDK: identities, accounts, and the harness's
//! fixes for where moto deviates from AWS (model validation, trust policies, policy conditions,
//! cross-account isolation), its call record and fault injection.

use std::sync::Arc;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use delivery_operator::metrics::{CallCounter, Metrics as OperatorMetrics};

use crate::emulator::{
    Fault, calls_by, clear_calls, clear_faults_for, config_with_key, count, counts_by, inject,
    unique_access_key,
};
use crate::support::{
    Metrics, Operator, assert_metrics_match_record, assume_role, aws_config, create_namespace,
    eventually, example, is_ready, kube_client, member_config, s3, unique,
};

/// HTTP status of a failed SDK call (0 when there was no response).
fn status<E>(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::http::Response,
    >,
) -> u16 {
    err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn assume_role_moves_into_another_account_and_accounts_are_isolated() {
    let base = aws_config().await;
    let sts = aws_sdk_sts::Client::new(&base);
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(me.account(), Some("123456789012"));

    let member = member_config("222222222222").await;
    let them = aws_sdk_sts::Client::new(&member)
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    assert_eq!(them.account(), Some("222222222222"));

    let bucket = unique("member-only");
    s3(&member)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create in member account");
    let mine = s3(&base)
        .list_buckets()
        .send()
        .await
        .expect("list in default account");
    assert!(
        mine.buckets()
            .iter()
            .all(|b| b.name() != Some(bucket.as_str())),
        "bucket leaked across accounts"
    );
    let theirs = s3(&member)
        .list_buckets()
        .send()
        .await
        .expect("list in member account");
    assert!(
        theirs
            .buckets()
            .iter()
            .any(|b| b.name() == Some(bucket.as_str()))
    );
}

#[tokio::test]
async fn assuming_a_role_that_does_not_exist_is_denied_as_in_aws() {
    let sts = aws_sdk_sts::Client::new(&aws_config().await);
    let err = sts
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/no-such-role")
        .role_session_name("test")
        .send()
        .await
        .expect_err("AWS refuses to assume a role that does not exist");
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(status(&err), 403, "STS answers AccessDenied with 403");
}

#[tokio::test]
async fn s3_configuration_reads_parse_in_the_rust_sdk() {
    // moto roots these responses at the wrong XML element; the harness fixes it (see
    // docs/testing.md). Without the fix the SDK fails to parse GetBucketVersioning.
    let client = s3(&aws_config().await);
    let bucket = unique("versioned");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create");
    client
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("put versioning");
    let v = client
        .get_bucket_versioning()
        .bucket(&bucket)
        .send()
        .await
        .expect("get versioning parses");
    assert_eq!(
        v.status(),
        Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)
    );
    let versions = client
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .expect("list versions parses");
    assert!(versions.versions().is_empty());
}

#[tokio::test]
async fn kms_requests_outside_the_model_get_aws_validation_errors() {
    let key_id = unique_access_key();
    let kms = aws_sdk_kms::Client::new(&config_with_key(&key_id).await);
    let key = kms.create_key().send().await.expect("CreateKey");
    let key = key.key_metadata().expect("metadata").key_id().to_string();

    // AliasName: 1..256 characters (KMS API Reference, CreateAlias).
    let too_long = format!("alias/{}", "a".repeat(251));
    let err = kms
        .create_alias()
        .alias_name(&too_long)
        .target_key_id(&key)
        .send()
        .await
        .expect_err("a 257-character alias is outside the model");
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert_eq!(status(&err), 400);
    let message = err.message().unwrap_or_default();
    assert!(
        message.contains("'aliasName'") && message.contains("less than or equal to 256"),
        "{message}"
    );

    // RotationPeriodInDays: 90..2560 (KMS API Reference, EnableKeyRotation).
    let err = kms
        .enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(10)
        .send()
        .await
        .expect_err("a 10-day rotation period is outside the model");
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("greater than or equal to 90")
    );
    let err = kms
        .enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(2561)
        .send()
        .await
        .expect_err("2561 days is outside the model");
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");

    // At the limits, the same calls pass.
    let stem = unique("a");
    let at_limit = format!("alias/{stem}{}", "a".repeat(250 - stem.len()));
    assert_eq!(at_limit.len(), 256);
    kms.create_alias()
        .alias_name(&at_limit)
        .target_key_id(&key)
        .send()
        .await
        .expect("a 256-character alias is within the model");
    for days in [90, 2560] {
        kms.enable_key_rotation()
            .key_id(&key)
            .rotation_period_in_days(days)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{days} days is within the model: {e:?}"));
    }
    let status_now = kms
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .expect("GetKeyRotationStatus");
    assert_eq!(status_now.rotation_period_in_days(), Some(2560));

    // The record shows the rejections, with the message the client saw.
    let calls = calls_by(&key_id).await;
    let rejected: Vec<_> = calls.iter().filter(|c| c.rejected.is_some()).collect();
    assert_eq!(rejected.len(), 3, "{calls:#?}");
    assert!(
        rejected
            .iter()
            .all(|c| c.status == 400 && c.service == "KMS")
    );
    assert_eq!(rejected[0].operation, "CreateAlias");
}

#[tokio::test]
async fn sts_requests_outside_the_model_get_aws_validation_errors() {
    let sts = aws_sdk_sts::Client::new(&aws_config().await);
    let role = "arn:aws:iam::111111111111:role/delivery-bootstrap";
    let cases: [(&str, i32, &str); 3] = [
        // RoleSessionName: 2..64 characters of [\w+=,.@-] (STS API Reference, AssumeRole).
        ("has a space", 900, "roleSessionName"),
        (&"s".repeat(65), 900, "roleSessionName"),
        // DurationSeconds: 900..43200.
        ("ok-name", 899, "durationSeconds"),
    ];
    for (name, duration, member) in cases {
        let err = sts
            .assume_role()
            .role_arn(role)
            .role_session_name(name)
            .duration_seconds(duration)
            .send()
            .await
            .expect_err("outside the model");
        assert_eq!(err.code(), Some("ValidationError"), "{name}: {err:?}");
        assert_eq!(status(&err), 400);
        assert!(
            err.message()
                .unwrap_or_default()
                .contains(&format!("'{member}'")),
            "{err:?}"
        );
    }
    let at_limits = format!("{}+=,.@-_", "s".repeat(57));
    assert_eq!(at_limits.len(), 64);
    sts.assume_role()
        .role_arn(role)
        .role_session_name(&at_limits)
        .duration_seconds(900)
        .send()
        .await
        .expect(
            "a 64-character session name of every allowed character, 900 s, is within the model",
        );
}

#[tokio::test]
async fn s3_requests_outside_the_model_get_aws_errors() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus,
        LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, VersioningConfiguration,
    };
    let client = s3(&aws_config().await);
    let bucket = unique("validated");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create");
    let lifecycle = |status: ExpirationStatus| {
        BucketLifecycleConfiguration::builder()
            .rules(
                LifecycleRule::builder()
                    .id("expire")
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .status(status)
                    .expiration(LifecycleExpiration::builder().days(30).build())
                    .build()
                    .expect("rule"),
            )
            .build()
            .expect("lifecycle")
    };
    // Status is the enum Enabled | Disabled; S3 answers a schema violation in the body with
    // MalformedXML (Amazon S3 API Reference, PutBucketLifecycleConfiguration, Error responses).
    let err = client
        .put_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .lifecycle_configuration(lifecycle(ExpirationStatus::from("Sometimes")))
        .send()
        .await
        .expect_err("an unknown rule status is outside the model");
    assert_eq!(err.code(), Some("MalformedXML"), "{err:?}");
    assert_eq!(status(&err), 400);
    let err = client
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::from("On"))
                .build(),
        )
        .send()
        .await
        .expect_err("an unknown versioning status is outside the model");
    assert_eq!(err.code(), Some("MalformedXML"), "{err:?}");

    client
        .put_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .lifecycle_configuration(lifecycle(ExpirationStatus::Enabled))
        .send()
        .await
        .expect("a rule within the model");
    let read = client
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .expect("read back");
    assert_eq!(read.rules().len(), 1);
}

#[tokio::test]
async fn a_member_account_session_cannot_assume_a_role_trusted_only_by_the_management_account() {
    let base = aws_config().await;
    // Each delivery-bootstrap role trusts arn:aws:iam::123456789012:root only.
    let member = assume_role(&base, "arn:aws:iam::111111111111:role/delivery-bootstrap").await;
    let err = aws_sdk_sts::Client::new(&member)
        .assume_role()
        .role_arn("arn:aws:iam::222222222222:role/delivery-bootstrap")
        .role_session_name("chain")
        .send()
        .await
        .expect_err("111111111111 is not trusted by 222222222222's bootstrap role");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("arn:aws:sts::111111111111:assumed-role/delivery-bootstrap/test"),
        "AWS names the caller: {err:?}"
    );
    // The management account itself still may.
    let second = assume_role(&base, "arn:aws:iam::222222222222:role/delivery-bootstrap").await;
    let who = aws_sdk_sts::Client::new(&second)
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    assert_eq!(who.account(), Some("222222222222"));
}

#[tokio::test]
async fn another_accounts_bucket_is_refused_as_in_aws() {
    let base = aws_config().await;
    let member = assume_role(&base, "arn:aws:iam::333333333333:role/delivery-bootstrap").await;
    let bucket = unique("theirs");
    s3(&member)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create in the member account");
    s3(&member)
        .put_bucket_policy()
        .bucket(&bucket)
        .policy(format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::333333333333:root"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
        ))
        .send()
        .await
        .expect("policy");
    s3(&member)
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the owner sees its bucket");

    let err = s3(&base)
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect_err("HeadBucket on another account's bucket");
    assert_eq!(
        status(&err),
        403,
        "AWS answers 403, not 200 or 404: {err:?}"
    );
    let err = s3(&base)
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect_err("GetBucketPolicy on another account's bucket");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    assert_eq!(status(&err), 403);
    // Its name is still taken for everyone else.
    let err = s3(&base)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect_err("the name belongs to another account");
    assert_eq!(err.code(), Some("BucketAlreadyExists"), "{err:?}");
}

#[tokio::test]
async fn a_bucket_policy_deny_whose_condition_matches_still_denies() {
    let client = s3(&aws_config().await);
    let bucket = unique("deny");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create");
    // The first Deny's condition never matches over TLS (neutral); the second's matches every
    // upload without SSE-KMS: StringNotEquals matches when the header is absent.
    client
        .put_bucket_policy()
        .bucket(&bucket)
        .policy(format!(
            r#"{{"Version":"2012-10-17","Statement":[
              {{"Sid":"TlsOnly","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"],"Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}},
              {{"Sid":"KmsOnly","Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::{bucket}/*","Condition":{{"StringNotEquals":{{"s3:x-amz-server-side-encryption":"aws:kms"}}}}}}
            ]}}"#
        ))
        .send()
        .await
        .expect("policy");
    let err = client
        .put_object()
        .bucket(&bucket)
        .key("plain")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("an upload without SSE-KMS is denied");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    assert_eq!(status(&err), 403);
    client
        .put_object()
        .bucket(&bucket)
        .key("encrypted")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("an SSE-KMS upload is allowed");
}

#[tokio::test]
async fn a_throttling_fault_is_retried_by_the_sdk_and_every_attempt_is_recorded() {
    let key = unique_access_key();
    inject(Fault {
        service: Some("KMS".into()),
        operation: Some("ListKeys".into()),
        access_key: Some(key.clone()),
        error_code: Some("ThrottlingException".into()),
        http_status: Some(400),
        count: Some(2),
        ..Fault::default()
    })
    .await;
    let kms = aws_sdk_kms::Client::new(&config_with_key(&key).await);
    // Standard retry mode: 3 attempts, throttling errors retried.
    kms.list_keys()
        .send()
        .await
        .expect("succeeds on the third attempt");
    let calls = calls_by(&key).await;
    let attempts: Vec<(u16, bool)> = calls
        .iter()
        .filter(|c| c.operation == "ListKeys")
        .map(|c| (c.status, c.injected))
        .collect();
    assert_eq!(attempts, vec![(400, true), (400, true), (200, false)]);
    assert_eq!(
        counts_by(&key, "read").await.get("KMS:ListKeys"),
        Some(&3.0)
    );

    // A fault the SDK does not retry reaches the caller with its code.
    inject(Fault {
        service: Some("KMS".into()),
        operation: Some("ListKeys".into()),
        access_key: Some(key.clone()),
        error_code: Some("AccessDeniedException".into()),
        count: Some(1),
        ..Fault::default()
    })
    .await;
    let err = kms.list_keys().send().await.expect_err("injected");
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // A dropped connection is a transient failure the SDK retries.
    inject(Fault {
        service: Some("STS".into()),
        access_key: Some(key.clone()),
        drop_connection: true,
        count: Some(1),
        ..Fault::default()
    })
    .await;
    aws_sdk_sts::Client::new(&config_with_key(&key).await)
        .get_caller_identity()
        .send()
        .await
        .expect("the retry succeeds");
    let sts: Vec<(u16, bool)> = calls_by(&key)
        .await
        .iter()
        .filter(|c| c.service == "STS")
        .map(|c| (c.status, c.dropped))
        .collect();
    assert_eq!(sts, vec![(0, true), (200, false)]);

    // Faults stay until used up or cleared.
    inject(Fault {
        service: Some("STS".into()),
        access_key: Some(key.clone()),
        error_code: Some("InternalFailure".into()),
        http_status: Some(500),
        ..Fault::default()
    })
    .await;
    clear_faults_for(&key).await;
    aws_sdk_sts::Client::new(&config_with_key(&key).await)
        .get_caller_identity()
        .send()
        .await
        .expect("no fault left");
}

#[tokio::test]
async fn the_call_record_matches_an_sdk_call_counter_and_catches_a_difference() {
    let key = unique_access_key();
    let config = config_with_key(&key).await;
    let metrics = Arc::new(OperatorMetrics::default());
    let counter = CallCounter::new(metrics.clone());
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build(),
    );
    let s3c = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .interceptor(counter.clone())
            .build(),
    );
    sts.get_caller_identity().send().await.expect("identity");
    kms.list_keys().send().await.expect("list keys");
    let err = kms
        .describe_key()
        .key_id("alias/does-not-exist")
        .send()
        .await
        .expect_err("no such key");
    assert_eq!(err.code(), Some("NotFoundException"));
    let bucket = unique("counted");
    s3c.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create");
    s3c.list_buckets().send().await.expect("list");

    let parsed = Metrics::parse(&metrics.encode().expect("encode"));
    assert_metrics_match_record(&parsed, &key).await;
    let calls = calls_by(&key).await;
    assert_eq!(
        count(&calls, "read"),
        [
            ("KMS:DescribeKey".to_string(), 1.0),
            ("KMS:ListKeys".to_string(), 1.0),
            ("S3:ListBuckets".to_string(), 1.0),
            ("STS:GetCallerIdentity".to_string(), 1.0),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        count(&calls, "write"),
        [("S3:CreateBucket".to_string(), 1.0)].into_iter().collect()
    );
    assert!(
        calls
            .iter()
            .all(|c| c.account == "123456789012" && c.access_key == key && c.origin_key == key)
    );

    // A call the counter did not see is a difference the helper reports.
    aws_sdk_kms::Client::new(&config)
        .list_keys()
        .send()
        .await
        .expect("uncounted call");
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        assert_metrics_match_record(&parsed, &key),
    ))
    .await;
    assert!(result.is_err(), "an uncounted ListKeys must be reported");

    clear_calls(&key).await;
    assert!(calls_by(&key).await.is_empty());
}

#[tokio::test]
async fn an_operators_call_metric_matches_the_emulators_record() {
    use kube::api::{Api, PostParams};
    let client = kube_client("admin").await;
    let ns = unique("record");
    create_namespace(&client, &ns).await;
    let operator = Operator::start(&ns, &[]);
    let api: Api<delivery_operator::api::DeliveryPipeline> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &example("minimal.yaml", &ns, "p"))
        .await
        .expect("create pipeline");
    eventually(
        "the pipeline Ready",
        std::time::Duration::from_secs(120),
        || async {
            let dp = api.get("p").await.ok()?;
            is_ready(&dp).then_some(())
        },
    )
    .await;
    let calls = calls_by(&operator.access_key).await;
    assert!(
        calls.iter().any(|c| c.service == "KMS") && calls.iter().any(|c| c.service == "S3"),
        "{calls:#?}"
    );
    let rejected: Vec<_> = calls.iter().filter(|c| c.rejected.is_some()).collect();
    assert!(
        rejected.is_empty(),
        "the operator sent requests AWS would reject: {rejected:#?}"
    );
    operator.assert_calls_match_record().await;
}
