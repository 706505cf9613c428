//! The versioned, KMS-encrypted artifact bucket.

pub mod desired;
pub mod diff;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tagging, VersioningConfiguration,
};

use self::desired::{
    ArtifactBucket, Lifecycle, RULE_ABORT_UPLOADS, RULE_EXPIRE_ARTIFACTS, RULE_NONCURRENT,
    artifact_bucket,
};
use self::diff::{BucketView, Change};
use super::kit::{check_owner, input, invalid};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession, classify, code, found};
use crate::desired::PipelineContext;
use crate::desired::policy;
use crate::engine::{Failure, Key, Removal, Values};

const KIND: &str = "AWS::S3::Bucket";
/// What a request the SDK refuses to build is reported as.
const S3_REQUEST: &str = "could not build an S3 request";

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

/// The bucket's settings; a setting S3 reports as absent ("NoSuch...") is `None`/false.
async fn read(
    s3: &Client,
    name: &str,
    tags: std::collections::BTreeMap<String, String>,
) -> Result<BucketView, Failure> {
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
        tags,
    })
}

fn encryption(d: &ArtifactBucket) -> Result<ServerSideEncryptionConfiguration, Failure> {
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(&d.kms_key_arn)
        .build()
        .map_err(invalid(S3_REQUEST))?;
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .bucket_key_enabled(d.bucket_key_enabled)
                .build(),
        )
        .build()
        .map_err(invalid(S3_REQUEST))
}

fn lifecycle(d: &ArtifactBucket) -> Result<BucketLifecycleConfiguration, Failure> {
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
            .map_err(invalid(S3_REQUEST))?,
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
            .map_err(invalid(S3_REQUEST))?,
        // Versioning keeps an expired artifact as a noncurrent version, which the first rule
        // then removes.
        LifecycleRule::builder()
            .id(RULE_EXPIRE_ARTIFACTS)
            .status(ExpirationStatus::Enabled)
            .filter(everything())
            .expiration(
                LifecycleExpiration::builder()
                    .days(d.lifecycle.artifact_expiration_days)
                    .build(),
            )
            .build()
            .map_err(invalid(S3_REQUEST))?,
    ];
    BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(invalid(S3_REQUEST))
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
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let ids = versions
            .chain(markers)
            .map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key.unwrap_or_default())
                    .set_version_id(version.map(str::to_string))
                    .build()
                    .map_err(invalid(S3_REQUEST))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(());
        }
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(invalid(S3_REQUEST))?;
        s3.delete_objects()
            .bucket(name)
            .delete(delete)
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
    let expire = enabled(RULE_EXPIRE_ARTIFACTS)?.expiration()?.days()?;
    Some(Lifecycle {
        noncurrent_version_expiration_days: noncurrent,
        abort_incomplete_upload_days: abort,
        artifact_expiration_days: expire,
    })
}

impl Group for ArtifactStore {
    type Desired = ArtifactBucket;
    type Observed = BucketView;

    fn names(&self) -> Names {
        Names::new("ArtifactStoreReady", "S3 artifact bucket")
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
        Ok(artifact_bucket(
            &self.ctx,
            input(inputs, keys::KMS_KEY_ARN)?,
        ))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<BucketView>, Failure> {
        let name = self.name();
        let s3 = aws.s3();
        // The tags are read first: the answer also says whether the bucket exists and is this
        // account's (what a HeadBucket would say), and the ownership check needs them before
        // anything else is read.
        let tags = match s3.get_bucket_tagging().bucket(&name).send().await {
            Ok(out) => from_sdk(out.tag_set()),
            Err(e) if code(&e) == Some("NoSuchTagSet") => Default::default(),
            Err(e)
                if code(&e) == Some("NoSuchBucket")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
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
            Err(e) => return Err(classify("s3:GetBucketTagging", e)),
        };
        check_owner(&self.ctx, &format!("S3 bucket {name}"), &tags)?;
        let view = read(&s3, &name, tags).await?;
        Ok(Some(view))
    }

    async fn create(&self, aws: &AwsSession, b: &ArtifactBucket) -> Result<Produced, Failure> {
        let mut request = aws.s3().create_bucket().bucket(&b.name);
        // us-east-1 is the one region that takes no location constraint.
        if b.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(b.region.as_str()))
                    .build(),
            );
        }
        let created = request.send().await;
        if created.as_ref().err().and_then(code) == Some("BucketAlreadyExists") {
            return Err(Failure::terminal(
                "BucketNameTaken",
                format!("S3 bucket name {} is taken in another account", b.name),
            ));
        }
        created.aws_tolerating("s3:CreateBucket", &["BucketAlreadyOwnedByYou"])?;
        // Then every setting, as an update from an empty bucket.
        let nothing = BucketView::default();
        self.update(aws, Update::of(b, &nothing)).await?;
        Ok(self.produced(&Placement::of(aws), b, &nothing))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let s3 = aws.s3();
        for change in changes {
            match change {
                Change::Tags(plan) => {
                    // PutBucketTagging replaces the whole set.
                    let tagging = Tagging::builder()
                        .set_tag_set(Some(to_sdk(&plan.whole_set(&o.tags))?))
                        .build()
                        .map_err(invalid(S3_REQUEST))?;
                    s3.put_bucket_tagging()
                        .bucket(&d.name)
                        .tagging(tagging)
                        .send()
                        .await
                        .aws("s3:PutBucketTagging")?;
                }
                Change::PublicAccessBlock => {
                    let config = PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build();
                    s3.put_public_access_block()
                        .bucket(&d.name)
                        .public_access_block_configuration(config)
                        .send()
                        .await
                        .aws("s3:PutPublicAccessBlock")?;
                }
                Change::Encryption => {
                    s3.put_bucket_encryption()
                        .bucket(&d.name)
                        .server_side_encryption_configuration(encryption(d)?)
                        .send()
                        .await
                        .aws("s3:PutBucketEncryption")?;
                }
                Change::Versioning => {
                    let config = VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build();
                    s3.put_bucket_versioning()
                        .bucket(&d.name)
                        .versioning_configuration(config)
                        .send()
                        .await
                        .aws("s3:PutBucketVersioning")?;
                }
                Change::Lifecycle => {
                    s3.put_bucket_lifecycle_configuration()
                        .bucket(&d.name)
                        .lifecycle_configuration(lifecycle(d)?)
                        .send()
                        .await
                        .aws("s3:PutBucketLifecycleConfiguration")?;
                }
                Change::Policy => {
                    s3.put_bucket_policy()
                        .bucket(&d.name)
                        .policy(d.policy.to_string())
                        .send()
                        .await
                        .aws("s3:PutBucketPolicy")?;
                }
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, _o: BucketView) -> Result<Removal, Failure> {
        let s3 = aws.s3();
        let name = self.name();
        empty(&s3, &name).await?;
        let deleted = s3.delete_bucket().bucket(&name).send().await;
        // An object written between emptying and deleting: empty again next time.
        if deleted.as_ref().err().and_then(code) == Some("BucketNotEmpty") {
            return Ok(Removal::Pending(
                "objects were written while the bucket was emptied".into(),
            ));
        }
        deleted.aws_tolerating("s3:DeleteBucket", &["NoSuchBucket"])?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, _d: &ArtifactBucket, _o: &BucketView) -> Produced {
        let name = self.name();
        Produced::default()
            .value(keys::ARTIFACT_BUCKET, &name)
            .owns(KIND, format!("arn:{}:s3:::{name}", at.partition), at)
    }
}
