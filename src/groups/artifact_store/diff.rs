//! How the observed artifact bucket differs from the desired one. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::desired::{ArtifactBucket, Lifecycle};
use crate::desired::policy;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, on_off, tag_change};
use crate::groups::{Changes, Diff};

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

/// Against an empty bucket: everything a new bucket needs, tags first, so it is recognisably
/// ours at once.
impl Diff<BucketView> for ArtifactBucket {
    type Change = Change;

    fn diff(&self, o: &BucketView) -> Changes<Change> {
        let bucket = format!("S3 bucket {}", self.name);
        let switch = |field: &str, have: bool, want: bool| {
            Drift::value(&bucket, field, on_off(have), on_off(want))
        };
        let mut changes = Changes::new();
        tag_change(&mut changes, &bucket, &self.tags, &o.tags, Change::Tags);
        if o.public_access_blocked != self.block_public_access {
            let drift = switch(
                "block public access",
                o.public_access_blocked,
                self.block_public_access,
            );
            changes.push(Change::PublicAccessBlock, drift);
        }
        if o.encryption_key.as_deref() != Some(self.kms_key_arn.as_str()) {
            let have = o.encryption_key.as_deref().unwrap_or("(none)");
            let drift = Drift::value(&bucket, "encryption key", have, &self.kms_key_arn);
            changes.push(Change::Encryption, drift);
        } else if o.bucket_key_enabled != self.bucket_key_enabled {
            let drift = switch("bucket key", o.bucket_key_enabled, self.bucket_key_enabled);
            changes.push(Change::Encryption, drift);
        }
        if o.versioning != self.versioning {
            let drift = switch("versioning", o.versioning, self.versioning);
            changes.push(Change::Versioning, drift);
        }
        if o.lifecycle.as_ref() != Some(&self.lifecycle) {
            let have = o
                .lifecycle
                .as_ref()
                .map_or("(none)".into(), lifecycle_words);
            let drift = Drift::value(&bucket, "lifecycle", have, lifecycle_words(&self.lifecycle));
            changes.push(Change::Lifecycle, drift);
        }
        if !o
            .policy
            .as_ref()
            .is_some_and(|p| policy::equivalent(p, &self.policy))
        {
            changes.push(Change::Policy, Drift::field(&bucket, "bucket policy"));
        }
        changes
    }
}

fn lifecycle_words(l: &Lifecycle) -> String {
    format!(
        "artifacts expire after {} days, noncurrent versions after {} days, incomplete uploads aborted after {} days",
        l.artifact_expiration_days,
        l.noncurrent_version_expiration_days,
        l.abort_incomplete_upload_days
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
        assert_eq!(d.diff(&o), vec![]);
    }

    #[test]
    fn a_new_bucket_gets_every_setting_tags_first() {
        let d = artifact_bucket(&context(FULL), KEY);
        let changes = d.diff(&BucketView::default());
        assert_eq!(changes.len(), 6);
        assert!(matches!(changes[0], Change::Tags(_)));
    }

    #[test]
    fn another_key_or_lifecycle_is_one_change_each() {
        let d = artifact_bucket(&context(FULL), KEY);
        let mut o = in_sync(&d);
        o.encryption_key = Some("arn:aws:kms:us-east-1:123456789012:key/other".into());
        o.lifecycle = None;
        assert_eq!(d.diff(&o), vec![Change::Encryption, Change::Lifecycle]);
    }
}
