//! The versioned, KMS-encrypted artifact bucket.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use aws_smithy_types::error::operation::BuildError;

use self::desired::{
    ArtifactBucket, Lifecycle, RULE_ABORT_UPLOADS, RULE_NONCURRENT, artifact_bucket,
};
use self::diff::{BucketView, Change};
use super::kit::{TagPlan, check_owner};
use super::{Group, Placement, Produced, keys};
use crate::aws::{AwsResultExt, AwsSession, classify, code, found};
use crate::desired::PipelineContext;
use crate::desired::policy;
use crate::engine::{Failure, Key, Removal, Values};

const KIND: &str = "AWS::S3::Bucket";

pub struct ArtifactStore {
    ctx: PipelineContext,
}

impl ArtifactStore {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }

    fn name(&self) -> String {
        self.ctx.names().artifact_bucket()
    }
}

fn build_err(e: BuildError) -> Failure {
    Failure::terminal(
        "InvalidRequest",
        format!("could not build an S3 request: {e}"),
    )
}

/// The bucket's settings; a setting S3 reports as absent ("NoSuch...") is `None`/false.
async fn read(s3: &Client, name: &str) -> Result<BucketView, Failure> {
    let encryption = found(
        s3.get_bucket_encryption().bucket(name).send().await,
        "s3:GetBucketEncryption",
        &["ServerSideEncryptionConfigurationNotFoundError"],
    )?;
    let rule = encryption
        .as_ref()
        .and_then(|out| out.server_side_encryption_configuration())
        .and_then(|c| c.rules().first());
    let versioning = s3
        .get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .aws("s3:GetBucketVersioning")?;
    let public_access = found(
        s3.get_public_access_block().bucket(name).send().await,
        "s3:GetPublicAccessBlock",
        &["NoSuchPublicAccessBlockConfiguration"],
    )?;
    let lifecycle = found(
        s3.get_bucket_lifecycle_configuration()
            .bucket(name)
            .send()
            .await,
        "s3:GetBucketLifecycleConfiguration",
        &["NoSuchLifecycleConfiguration"],
    )?;
    let policy = found(
        s3.get_bucket_policy().bucket(name).send().await,
        "s3:GetBucketPolicy",
        &["NoSuchBucketPolicy"],
    )?;
    let tags = found(
        s3.get_bucket_tagging().bucket(name).send().await,
        "s3:GetBucketTagging",
        &["NoSuchTagSet"],
    )?;
    Ok(BucketView {
        bucket_key_enabled: rule.and_then(|r| r.bucket_key_enabled()).unwrap_or(false),
        encryption_key: rule
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .filter(|d| d.sse_algorithm() == &ServerSideEncryption::AwsKms)
            .and_then(|d| d.kms_master_key_id().map(str::to_string)),
        versioning: versioning.status() == Some(&BucketVersioningStatus::Enabled),
        public_access_blocked: public_access
            .as_ref()
            .and_then(|out| out.public_access_block_configuration())
            .is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            }),
        lifecycle: lifecycle.and_then(|out| lifecycle_of(out.rules())),
        policy: policy.and_then(|out| out.policy().and_then(policy::parse)),
        tags: tags
            .map(|out| {
                out.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

async fn put_public_access_block(s3: &Client, name: &str) -> Result<(), Failure> {
    let config = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    s3.put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(config)
        .send()
        .await
        .aws("s3:PutPublicAccessBlock")?;
    Ok(())
}

async fn put_encryption(s3: &Client, d: &ArtifactBucket) -> Result<(), Failure> {
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(&d.kms_key_arn)
        .build()
        .map_err(build_err)?;
    let config = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .bucket_key_enabled(d.bucket_key_enabled)
                .build(),
        )
        .build()
        .map_err(build_err)?;
    s3.put_bucket_encryption()
        .bucket(&d.name)
        .server_side_encryption_configuration(config)
        .send()
        .await
        .aws("s3:PutBucketEncryption")?;
    Ok(())
}

async fn put_versioning(s3: &Client, name: &str) -> Result<(), Failure> {
    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .aws("s3:PutBucketVersioning")?;
    Ok(())
}

async fn put_lifecycle(s3: &Client, d: &ArtifactBucket) -> Result<(), Failure> {
    let everything = || LifecycleRuleFilter::builder().prefix("").build();
    let rules = vec![
        LifecycleRule::builder()
            .id(RULE_NONCURRENT)
            .status(ExpirationStatus::Enabled)
            .filter(everything())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(d.lifecycle.noncurrent_version_expiration_days)
                    .build(),
            )
            .build()
            .map_err(build_err)?,
        LifecycleRule::builder()
            .id(RULE_ABORT_UPLOADS)
            .status(ExpirationStatus::Enabled)
            .filter(everything())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(d.lifecycle.abort_incomplete_upload_days)
                    .build(),
            )
            .build()
            .map_err(build_err)?,
    ];
    s3.put_bucket_lifecycle_configuration()
        .bucket(&d.name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .aws("s3:PutBucketLifecycleConfiguration")?;
    Ok(())
}

async fn put_policy(s3: &Client, d: &ArtifactBucket) -> Result<(), Failure> {
    s3.put_bucket_policy()
        .bucket(&d.name)
        .policy(d.policy.to_string())
        .send()
        .await
        .aws("s3:PutBucketPolicy")?;
    Ok(())
}

async fn put_tags(
    s3: &Client,
    name: &str,
    plan: &TagPlan,
    existing: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    // PutBucketTagging replaces the whole set.
    let tags = plan
        .whole_set(existing)
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_err))
        .collect::<Result<Vec<_>, _>>()?;
    s3.put_bucket_tagging()
        .bucket(name)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .aws("s3:PutBucketTagging")?;
    Ok(())
}

async fn apply_changes(
    s3: &Client,
    d: &ArtifactBucket,
    existing_tags: &BTreeMap<String, String>,
    changes: Vec<Change>,
) -> Result<(), Failure> {
    for change in changes {
        match change {
            Change::Tags(plan) => put_tags(s3, &d.name, &plan, existing_tags).await?,
            Change::PublicAccessBlock => put_public_access_block(s3, &d.name).await?,
            Change::Encryption => put_encryption(s3, d).await?,
            Change::Versioning => put_versioning(s3, &d.name).await?,
            Change::Lifecycle => put_lifecycle(s3, d).await?,
            Change::Policy => put_policy(s3, d).await?,
        }
    }
    Ok(())
}

/// Deletes every object version and delete marker, a page at a time.
async fn empty(s3: &Client, name: &str) -> Result<(), Failure> {
    loop {
        let page = s3
            .list_object_versions()
            .bucket(name)
            .max_keys(1000)
            .send()
            .await
            .aws("s3:ListObjectVersions")?;
        let mut objects = Vec::new();
        for v in page.versions() {
            objects.push((
                v.key().unwrap_or_default().to_string(),
                v.version_id().map(str::to_string),
            ));
        }
        for m in page.delete_markers() {
            objects.push((
                m.key().unwrap_or_default().to_string(),
                m.version_id().map(str::to_string),
            ));
        }
        if objects.is_empty() {
            return Ok(());
        }
        let ids = objects
            .into_iter()
            .map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version)
                    .build()
                    .map_err(build_err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        s3.delete_objects()
            .bucket(name)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .aws("s3:DeleteObjects")?;
    }
}

/// The lifecycle settings the operator manages, if both of its rules are present.
fn lifecycle_of(rules: &[LifecycleRule]) -> Option<Lifecycle> {
    let enabled = |id: &str| {
        rules
            .iter()
            .find(|r| r.id() == Some(id) && r.status() == &ExpirationStatus::Enabled)
    };
    let noncurrent = enabled(RULE_NONCURRENT)?
        .noncurrent_version_expiration()?
        .noncurrent_days()?;
    let abort = enabled(RULE_ABORT_UPLOADS)?
        .abort_incomplete_multipart_upload()?
        .days_after_initiation()?;
    Some(Lifecycle {
        noncurrent_version_expiration_days: noncurrent,
        abort_incomplete_upload_days: abort,
    })
}

impl Group for ArtifactStore {
    type Desired = ArtifactBucket;
    type Observed = BucketView;
    type Change = Change;

    fn condition(&self) -> String {
        "ArtifactStoreReady".into()
    }

    fn kind(&self) -> &'static str {
        "S3 artifact bucket"
    }

    fn needs(&self) -> Vec<Key> {
        // The bucket policy names the cross-account deploy roles: S3 rejects a policy naming
        // a principal that does not exist yet.
        let mut needs = vec![keys::KMS_KEY_ARN];
        for env in self.ctx.cross_account_environments() {
            needs.push(keys::DEPLOY_ROLE_ARN.scoped(env.name()));
        }
        needs
    }

    fn provides(&self) -> Vec<Key> {
        vec![keys::ARTIFACT_BUCKET]
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<ArtifactBucket, Failure> {
        let key = super::kit::input(inputs, keys::KMS_KEY_ARN)?;
        Ok(artifact_bucket(&self.ctx, key))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<BucketView>, Failure> {
        let name = self.name();
        let s3 = aws.s3();
        match s3.head_bucket().bucket(&name).send().await {
            Ok(_) => {}
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                return Err(Failure::terminal(
                    "BucketNameTaken",
                    format!(
                        "S3 bucket {name} exists but belongs to another account; this cannot happen by chance, check for a copy of this pipeline in another account"
                    ),
                ));
            }
            Err(e) => return Err(classify("s3:HeadBucket", e)),
        }
        let view = read(&s3, &name).await?;
        check_owner(&self.ctx, &format!("S3 bucket {name}"), &view.tags)?;
        Ok(Some(view))
    }

    fn diff(desired: &ArtifactBucket, observed: &BucketView) -> Vec<Change> {
        diff::diff(desired, observed)
    }

    fn describe(
        &self,
        desired: &ArtifactBucket,
        observed: &BucketView,
        change: &Change,
    ) -> Vec<crate::engine::Drift> {
        diff::describe(desired, observed, change)
    }

    async fn create(&self, aws: &AwsSession, b: &ArtifactBucket) -> Result<Produced, Failure> {
        let s3 = aws.s3();
        let mut request = s3.create_bucket().bucket(&b.name);
        // us-east-1 is the one region that takes no location constraint.
        if b.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(b.region.as_str()))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => {}
            Err(e) if code(&e) == Some("BucketAlreadyExists") => {
                return Err(Failure::terminal(
                    "BucketNameTaken",
                    format!("S3 bucket name {} is taken in another account", b.name),
                ));
            }
            Err(e) => return Err(classify("s3:CreateBucket", e)),
        }
        apply_changes(&s3, b, &BTreeMap::new(), diff::all(b)).await?;
        Ok(self.produced(&Placement::of(aws), b, &BucketView::default()))
    }

    async fn update(
        &self,
        aws: &AwsSession,
        d: &ArtifactBucket,
        o: &BucketView,
        changes: Vec<Change>,
    ) -> Result<(), Failure> {
        apply_changes(&aws.s3(), d, &o.tags, changes).await
    }

    async fn delete(&self, aws: &AwsSession, _o: BucketView) -> Result<Removal, Failure> {
        let s3 = aws.s3();
        let name = self.name();
        empty(&s3, &name).await?;
        match s3.delete_bucket().bucket(&name).send().await {
            Ok(_) => Ok(Removal::Gone),
            Err(e) if code(&e) == Some("NoSuchBucket") => Ok(Removal::Gone),
            // An object written between emptying and deleting: empty again next time.
            Err(e) if code(&e) == Some("BucketNotEmpty") => Ok(Removal::Pending(
                "objects were written while the bucket was emptied".into(),
            )),
            Err(e) => Err(classify("s3:DeleteBucket", e)),
        }
    }

    fn produced(&self, at: &Placement, _d: &ArtifactBucket, _o: &BucketView) -> Produced {
        let name = self.name();
        Produced::default()
            .value(keys::ARTIFACT_BUCKET, &name)
            .owns(KIND, format!("arn:{}:s3:::{name}", at.partition), at)
    }
}
