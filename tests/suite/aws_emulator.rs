//! The AWS emulator over real HTTP with the real SDK: identities, accounts, and the harness's
//! fixes for where moto deviates from AWS.

use aws_credential_types::Credentials;

use crate::support::{aws_config, s3, unique};

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

    let assumed = sts
        .assume_role()
        .role_arn("arn:aws:iam::222222222222:role/delivery-bootstrap")
        .role_session_name("test")
        .send()
        .await
        .expect("AssumeRole into the member account");
    let c = assumed.credentials().expect("credentials");
    let member = base
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                None,
                "assumed",
            )),
        )
        .build();
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
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    assert_eq!(err.code(), Some("AccessDenied"));
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
