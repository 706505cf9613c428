//! How the observed artifact bucket differs from the desired one. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::desired::{ArtifactBucket, Lifecycle};
use crate::desired::policy;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, on_off, tag_drift};

/// What the bucket looks like now; `None` where the setting is absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketView {
    pub encryption_key: Option<String>,
    pub bucket_key_enabled: bool,
    pub versioning: bool,
    pub public_access_blocked: bool,
    pub lifecycle: Option<Lifecycle>,
    pub policy: Option<Value>,
    pub tags: BTreeMap<String, String>,
}

/// One S3 write each, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Tags(TagPlan),
    PublicAccessBlock,
    Encryption,
    Versioning,
    Lifecycle,
    Policy,
}

pub fn diff(d: &ArtifactBucket, o: &BucketView) -> Vec<Change> {
    let mut changes = Vec::new();
    let tags = d.tags.plan(&o.tags);
    if !tags.is_empty() {
        changes.push(Change::Tags(tags));
    }
    if o.public_access_blocked != d.block_public_access {
        changes.push(Change::PublicAccessBlock);
    }
    if o.encryption_key.as_deref() != Some(d.kms_key_arn.as_str())
        || o.bucket_key_enabled != d.bucket_key_enabled
    {
        changes.push(Change::Encryption);
    }
    if o.versioning != d.versioning {
        changes.push(Change::Versioning);
    }
    if o.lifecycle.as_ref() != Some(&d.lifecycle) {
        changes.push(Change::Lifecycle);
    }
    if !o
        .policy
        .as_ref()
        .is_some_and(|p| policy::equivalent(p, &d.policy))
    {
        changes.push(Change::Policy);
    }
    changes
}

/// Everything a new bucket needs, in order: tags first, so it is recognisably ours at once.
pub fn all(d: &ArtifactBucket) -> Vec<Change> {
    diff(d, &BucketView::default())
}

/// One change in words.
pub fn describe(d: &ArtifactBucket, o: &BucketView, change: &Change) -> Vec<Drift> {
    let bucket = format!("S3 bucket {}", d.name);
    vec![match change {
        Change::Tags(plan) => return tag_drift(&bucket, plan, &o.tags),
        Change::PublicAccessBlock => Drift::value(
            &bucket,
            "block public access",
            on_off(o.public_access_blocked),
            on_off(d.block_public_access),
        ),
        Change::Encryption
            if o.bucket_key_enabled != d.bucket_key_enabled
                && o.encryption_key.as_deref() == Some(d.kms_key_arn.as_str()) =>
        {
            Drift::value(
                &bucket,
                "bucket key",
                on_off(o.bucket_key_enabled),
                on_off(d.bucket_key_enabled),
            )
        }
        Change::Encryption => Drift::value(
            &bucket,
            "encryption key",
            o.encryption_key.as_deref().unwrap_or("(none)"),
            &d.kms_key_arn,
        ),
        Change::Versioning => Drift::value(
            &bucket,
            "versioning",
            on_off(o.versioning),
            on_off(d.versioning),
        ),
        Change::Lifecycle => Drift::value(
            &bucket,
            "lifecycle",
            o.lifecycle
                .as_ref()
                .map_or("(none)".to_string(), lifecycle_words),
            lifecycle_words(&d.lifecycle),
        ),
        Change::Policy => Drift::field(&bucket, "bucket policy"),
    }]
}

fn lifecycle_words(l: &Lifecycle) -> String {
    format!(
        "noncurrent versions expire after {} days, incomplete uploads aborted after {} days",
        l.noncurrent_version_expiration_days, l.abort_incomplete_upload_days
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};
    use crate::groups::artifact_store::desired::artifact_bucket;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    fn in_sync(d: &ArtifactBucket) -> BucketView {
        BucketView {
            encryption_key: Some(d.kms_key_arn.clone()),
            bucket_key_enabled: true,
            versioning: true,
            public_access_blocked: true,
            lifecycle: Some(d.lifecycle.clone()),
            policy: Some(d.policy.clone()),
            tags: d.tags.tags.clone(),
        }
    }

    #[test]
    fn an_equal_bucket_has_no_changes() {
        let d = artifact_bucket(&context(FULL), KEY);
        let mut o = in_sync(&d);
        o.tags.insert("aws:cloudformation:stack".into(), "x".into());
        assert_eq!(diff(&d, &o), vec![]);
    }

    #[test]
    fn a_new_bucket_gets_every_setting_tags_first() {
        let d = artifact_bucket(&context(FULL), KEY);
        let changes = all(&d);
        assert_eq!(changes.len(), 6);
        assert!(matches!(changes[0], Change::Tags(_)));
    }

    #[test]
    fn another_key_or_lifecycle_is_one_change_each() {
        let d = artifact_bucket(&context(FULL), KEY);
        let mut o = in_sync(&d);
        o.encryption_key = Some("arn:aws:kms:us-east-1:123456789012:key/other".into());
        o.lifecycle = None;
        assert_eq!(diff(&d, &o), vec![Change::Encryption, Change::Lifecycle]);
    }
}
