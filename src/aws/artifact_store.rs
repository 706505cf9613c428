//! The versioned, KMS-encrypted artifact bucket.

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

use super::error::{AwsError, classify, code};
use crate::desired::PipelineContext;
use crate::desired::artifact_store::{
    ArtifactBucket, Lifecycle, RULE_ABORT_UPLOADS, RULE_NONCURRENT, artifact_bucket,
};
use crate::desired::policy;
use crate::desired::tags::{Ownership, ownership, stale_tags, tag_drift};
use crate::engine::{Gone, Observation, OutputKey, Produced, SpecError, Subresource};

pub struct ArtifactStoreSubresource {
    pub s3: Client,
    pub ctx: PipelineContext,
}

pub struct Desired {
    bucket: ArtifactBucket,
}

/// What the bucket looks like now; `None` where the setting is absent.
#[derive(Debug, Default)]
pub struct Observed {
    encryption_key: Option<String>,
    bucket_key_enabled: bool,
    versioning: bool,
    public_access_blocked: bool,
    lifecycle: Option<Lifecycle>,
    policy: Option<serde_json::Value>,
    tags: BTreeMap<String, String>,
}

const KIND: &str = "AWS::S3::Bucket";

/// Which settings differ from the desired ones; each maps to one S3 write.
#[derive(Debug, Default, PartialEq, Eq)]
struct Drift {
    tags: bool,
    public_access: bool,
    encryption: bool,
    versioning: bool,
    lifecycle: bool,
    policy: bool,
}

impl Drift {
    fn any(&self) -> bool {
        *self != Drift::default()
    }
}

fn build_err(e: BuildError) -> AwsError {
    AwsError::terminal(
        "InvalidRequest",
        format!("could not build an S3 request: {e}"),
    )
}

impl ArtifactStoreSubresource {
    fn drift(&self, b: &ArtifactBucket, o: &Observed) -> Drift {
        Drift {
            tags: !tag_drift(&b.tags, &o.tags).is_empty()
                || !stale_tags(&self.ctx, &o.tags).is_empty(),
            public_access: o.public_access_blocked != b.block_public_access,
            encryption: o.encryption_key.as_deref() != Some(b.kms_key_arn.as_str())
                || o.bucket_key_enabled != b.bucket_key_enabled,
            versioning: o.versioning != b.versioning,
            lifecycle: o.lifecycle.as_ref() != Some(&b.lifecycle),
            policy: !o
                .policy
                .as_ref()
                .is_some_and(|p| policy::equivalent(p, &b.policy)),
        }
    }

    fn produced(&self, bucket: &str) -> Produced {
        Produced::default()
            .output(OutputKey::ArtifactBucket, bucket)
            .owns(
                KIND,
                format!("arn:{}:s3:::{bucket}", self.ctx.partition()),
                &self.ctx.account_id,
                &self.ctx.region,
            )
    }

    async fn read(&self, name: &str) -> Result<Observed, AwsError> {
        let mut o = Observed::default();
        match self.s3.get_bucket_encryption().bucket(name).send().await {
            Ok(out) => {
                let rule = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first());
                o.bucket_key_enabled = rule.and_then(|r| r.bucket_key_enabled()).unwrap_or(false);
                o.encryption_key = rule
                    .and_then(|r| r.apply_server_side_encryption_by_default())
                    .filter(|d| d.sse_algorithm() == &ServerSideEncryption::AwsKms)
                    .and_then(|d| d.kms_master_key_id().map(str::to_string));
            }
            Err(e) if code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => {}
            Err(e) => return Err(classify("s3:GetBucketEncryption", e)),
        }
        let versioning = self
            .s3
            .get_bucket_versioning()
            .bucket(name)
            .send()
            .await
            .map_err(|e| classify("s3:GetBucketVersioning", e))?;
        o.versioning = versioning.status() == Some(&BucketVersioningStatus::Enabled);
        match self.s3.get_public_access_block().bucket(name).send().await {
            Ok(out) => {
                o.public_access_blocked = out.public_access_block_configuration().is_some_and(|c| {
                    c.block_public_acls() == Some(true)
                        && c.ignore_public_acls() == Some(true)
                        && c.block_public_policy() == Some(true)
                        && c.restrict_public_buckets() == Some(true)
                })
            }
            Err(e) if code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => {}
            Err(e) => return Err(classify("s3:GetPublicAccessBlock", e)),
        }
        match self
            .s3
            .get_bucket_lifecycle_configuration()
            .bucket(name)
            .send()
            .await
        {
            Ok(out) => o.lifecycle = lifecycle_of(out.rules()),
            Err(e) if code(&e) == Some("NoSuchLifecycleConfiguration") => {}
            Err(e) => return Err(classify("s3:GetBucketLifecycleConfiguration", e)),
        }
        match self.s3.get_bucket_policy().bucket(name).send().await {
            Ok(out) => o.policy = out.policy().and_then(policy::parse),
            Err(e) if code(&e) == Some("NoSuchBucketPolicy") => {}
            Err(e) => return Err(classify("s3:GetBucketPolicy", e)),
        }
        match self.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(out) => {
                o.tags = out
                    .tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect();
            }
            Err(e) if code(&e) == Some("NoSuchTagSet") => {}
            Err(e) => return Err(classify("s3:GetBucketTagging", e)),
        }
        Ok(o)
    }

    async fn put_public_access_block(&self, name: &str) -> Result<(), AwsError> {
        let config = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        self.s3
            .put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(config)
            .send()
            .await
            .map_err(|e| classify("s3:PutPublicAccessBlock", e))?;
        Ok(())
    }

    async fn put_encryption(&self, d: &ArtifactBucket) -> Result<(), AwsError> {
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
        self.s3
            .put_bucket_encryption()
            .bucket(&d.name)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(|e| classify("s3:PutBucketEncryption", e))?;
        Ok(())
    }

    async fn put_versioning(&self, name: &str) -> Result<(), AwsError> {
        self.s3
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("s3:PutBucketVersioning", e))?;
        Ok(())
    }

    async fn put_lifecycle(&self, d: &ArtifactBucket) -> Result<(), AwsError> {
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
        self.s3
            .put_bucket_lifecycle_configuration()
            .bucket(&d.name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| classify("s3:PutBucketLifecycleConfiguration", e))?;
        Ok(())
    }

    async fn put_policy(&self, d: &ArtifactBucket) -> Result<(), AwsError> {
        self.s3
            .put_bucket_policy()
            .bucket(&d.name)
            .policy(d.policy.to_string())
            .send()
            .await
            .map_err(|e| classify("s3:PutBucketPolicy", e))?;
        Ok(())
    }

    async fn put_tags(
        &self,
        d: &ArtifactBucket,
        existing: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        // PutBucketTagging replaces the whole set: keep tags others added, drop the keys the
        // spec no longer has, override ours.
        let mut all = existing.clone();
        for key in stale_tags(&self.ctx, existing) {
            all.remove(&key);
        }
        all.extend(d.tags.clone());
        let tags = all
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_err))
            .collect::<Result<Vec<_>, _>>()?;
        self.s3
            .put_bucket_tagging()
            .bucket(&d.name)
            .tagging(
                Tagging::builder()
                    .set_tag_set(Some(tags))
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| classify("s3:PutBucketTagging", e))?;
        Ok(())
    }

    /// Deletes every object version and delete marker, a page at a time.
    async fn empty(&self, name: &str) -> Result<(), AwsError> {
        loop {
            let page = self
                .s3
                .list_object_versions()
                .bucket(name)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| classify("s3:ListObjectVersions", e))?;
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
            self.s3
                .delete_objects()
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
                .map_err(|e| classify("s3:DeleteObjects", e))?;
        }
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

impl Subresource for ArtifactStoreSubresource {
    const CONDITION: &'static str = "ArtifactStoreReady";
    const KIND: &'static str = "S3 artifact bucket";
    type Desired = Desired;
    type Observed = Observed;

    fn desired(&self, ctx: &PipelineContext, upstream: &Produced) -> Result<Desired, SpecError> {
        let key = upstream.require(OutputKey::KmsKeyArn)?;
        Ok(Desired {
            bucket: artifact_bucket(ctx, key),
        })
    }

    async fn observe(&self, d: &Desired) -> Result<Observation<Observed>, AwsError> {
        let name = &d.bucket.name;
        match self.s3.head_bucket().bucket(name).send().await {
            Ok(_) => {}
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(Observation::Absent);
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                return Err(AwsError::terminal(
                    "BucketNameTaken",
                    format!(
                        "S3 bucket {name} exists but belongs to someone else; this cannot happen by chance, check for a copy of this pipeline in another account"
                    ),
                ));
            }
            Err(e) => return Err(classify("s3:HeadBucket", e)),
        }
        let observed = self.read(name).await?;
        if let Ownership::Foreign(owner) = ownership(&self.ctx, &observed.tags) {
            return Err(AwsError::terminal(
                "ResourceOwnedByAnotherPipeline",
                format!("S3 bucket {name} is owned by {owner}"),
            ));
        }
        let up_to_date = !self.drift(&d.bucket, &observed).any();
        Ok(Observation::Present {
            observed,
            up_to_date,
            produced: self.produced(name),
        })
    }

    async fn create(&self, d: &Desired) -> Result<Produced, AwsError> {
        let b = &d.bucket;
        let mut request = self.s3.create_bucket().bucket(&b.name);
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
                return Err(AwsError::terminal(
                    "BucketNameTaken",
                    format!("S3 bucket name {} is taken in another account", b.name),
                ));
            }
            Err(e) => return Err(classify("s3:CreateBucket", e)),
        }
        // Tags first: from now on the bucket is recognisably ours.
        self.put_tags(b, &BTreeMap::new()).await?;
        self.put_public_access_block(&b.name).await?;
        self.put_encryption(b).await?;
        self.put_versioning(&b.name).await?;
        self.put_lifecycle(b).await?;
        self.put_policy(b).await?;
        Ok(self.produced(&b.name))
    }

    async fn update(&self, d: &Desired, o: &Observed) -> Result<Produced, AwsError> {
        let b = &d.bucket;
        let drift = self.drift(b, o);
        if drift.tags {
            self.put_tags(b, &o.tags).await?;
        }
        if drift.public_access {
            self.put_public_access_block(&b.name).await?;
        }
        if drift.encryption {
            self.put_encryption(b).await?;
        }
        if drift.versioning {
            self.put_versioning(&b.name).await?;
        }
        if drift.lifecycle {
            self.put_lifecycle(b).await?;
        }
        if drift.policy {
            self.put_policy(b).await?;
        }
        Ok(self.produced(&b.name))
    }

    async fn delete(&self, d: &Desired, _o: &Observed) -> Result<Gone, AwsError> {
        self.empty(&d.bucket.name).await?;
        match self.s3.delete_bucket().bucket(&d.bucket.name).send().await {
            Ok(_) => Ok(Gone::Yes),
            Err(e) if code(&e) == Some("NoSuchBucket") => Ok(Gone::Yes),
            // An object written between emptying and deleting: empty again next time.
            Err(e) if code(&e) == Some("BucketNotEmpty") => Ok(Gone::Pending),
            Err(e) => Err(classify("s3:DeleteBucket", e)),
        }
    }
}
