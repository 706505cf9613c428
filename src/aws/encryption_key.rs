//! The pipeline's customer-managed KMS key, found by its alias.

use std::collections::BTreeMap;

use aws_sdk_kms::Client;
use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, KeyUsageType, Tag};

use super::error::{AwsError, classify, code};
use crate::desired::PipelineContext;
use crate::desired::encryption_key::{
    ALIAS_TAG, DELETION_WINDOW_DAYS, EncryptionKey, encryption_key,
};
use crate::desired::policy;
use crate::desired::tags::{OWNER_KEY, Ownership, ownership, stale_tags, tag_drift};
use crate::engine::{Gone, Observation, OutputKey, Produced, SpecError, Subresource};

pub struct EncryptionKeySubresource {
    pub kms: Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    pub ctx: PipelineContext,
}

pub struct Desired {
    key: EncryptionKey,
}

pub struct Observed {
    metadata: KeyMetadata,
    rotation_enabled: bool,
    rotation_period_days: Option<i32>,
    policy: Option<serde_json::Value>,
    tags: BTreeMap<String, String>,
}

impl Observed {
    fn key_id(&self) -> &str {
        self.metadata.key_id()
    }
}

const KIND: &str = "AWS::KMS::Key";

/// How the key differs from the desired one.
#[derive(Debug, Default, PartialEq, Eq)]
struct Drift {
    /// Not Enabled (disabled, or pending deletion).
    state: bool,
    rotation: bool,
    policy: bool,
    description: bool,
    missing_tags: BTreeMap<String, String>,
    stale_tags: Vec<String>,
}

impl Drift {
    fn any(&self) -> bool {
        *self != Drift::default()
    }
}

impl EncryptionKeySubresource {
    /// A key coming back from pending deletion reports no rotation or policy; both are rewritten.
    fn drift(&self, d: &EncryptionKey, o: &Observed) -> Drift {
        let pending = o.metadata.key_state() == Some(&KeyState::PendingDeletion);
        Drift {
            state: o.metadata.key_state() != Some(&KeyState::Enabled),
            rotation: pending
                || !o.rotation_enabled
                || o.rotation_period_days
                    .is_some_and(|p| p != d.rotation_period_days),
            policy: pending
                || !o
                    .policy
                    .as_ref()
                    .is_some_and(|p| policy::equivalent(p, &d.policy)),
            description: o.metadata.description() != Some(d.description.as_str()),
            missing_tags: tag_drift(&d.tags, &o.tags),
            stale_tags: stale_tags(&self.ctx, &o.tags),
        }
    }

    fn produced(&self, key_arn: &str) -> Produced {
        Produced::default()
            .output(OutputKey::KmsKeyArn, key_arn)
            .owns(KIND, key_arn, &self.ctx.account_id, &self.ctx.region)
    }

    async fn tags(&self, key_id: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let mut tags = BTreeMap::new();
        let mut marker = None;
        loop {
            let out = self
                .kms
                .list_resource_tags()
                .key_id(key_id)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| classify("kms:ListResourceTags", e))?;
            for t in out.tags() {
                tags.insert(t.tag_key().to_string(), t.tag_value().to_string());
            }
            marker = out.next_marker().map(str::to_string);
            if !out.truncated() || marker.is_none() {
                return Ok(tags);
            }
        }
    }

    /// A usable key tagged for our alias but without it: made by a reconcile that crashed
    /// between CreateKey and CreateAlias.
    async fn find_orphan(&self, d: &EncryptionKey) -> Result<Option<String>, AwsError> {
        use aws_sdk_resourcegroupstagging::types::TagFilter;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .tagging
                .get_resources()
                .resource_type_filters("kms:key")
                .tag_filters(TagFilter::builder().key(ALIAS_TAG).values(&d.alias).build())
                .tag_filters(
                    TagFilter::builder()
                        .key(OWNER_KEY)
                        .values(self.ctx.owner())
                        .build(),
                )
                .set_pagination_token(token.clone())
                .send()
                .await
                .map_err(|e| classify("tag:GetResources", e))?;
            for arn in out
                .resource_tag_mapping_list()
                .iter()
                .filter_map(|m| m.resource_arn())
            {
                let described = self
                    .kms
                    .describe_key()
                    .key_id(arn)
                    .send()
                    .await
                    .map_err(|e| classify("kms:DescribeKey", e))?;
                let usable = described
                    .key_metadata()
                    .and_then(|m| m.key_state())
                    .is_some_and(|s| matches!(s, KeyState::Enabled | KeyState::Disabled));
                if usable {
                    return Ok(Some(arn.to_string()));
                }
            }
            token = out
                .pagination_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(None);
            }
        }
    }

    async fn create_alias(&self, alias: &str, key_id: &str) -> Result<(), AwsError> {
        self.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
            .map_err(|e| classify("kms:CreateAlias", e))?;
        Ok(())
    }

    async fn ensure_rotation(&self, key_id: &str, d: &EncryptionKey) -> Result<(), AwsError> {
        self.kms
            .enable_key_rotation()
            .key_id(key_id)
            .rotation_period_in_days(d.rotation_period_days)
            .send()
            .await
            .map_err(|e| classify("kms:EnableKeyRotation", e))?;
        Ok(())
    }

    async fn put_policy(&self, key_id: &str, d: &EncryptionKey) -> Result<(), AwsError> {
        self.kms
            .put_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .policy(d.policy.to_string())
            .send()
            .await
            .map_err(|e| classify("kms:PutKeyPolicy", e))?;
        Ok(())
    }
}

fn kms_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .tag_key(k)
                .tag_value(v)
                .build()
                .map_err(|e| AwsError::terminal("InvalidTag", format!("tag {k}: {e}")))
        })
        .collect()
}

impl Subresource for EncryptionKeySubresource {
    const CONDITION: &'static str = "EncryptionKeyReady";
    const KIND: &'static str = "KMS key";
    type Desired = Desired;
    type Observed = Observed;

    fn desired(&self, ctx: &PipelineContext, _upstream: &Produced) -> Result<Desired, SpecError> {
        Ok(Desired {
            key: encryption_key(ctx),
        })
    }

    async fn observe(&self, d: &Desired) -> Result<Observation<Observed>, AwsError> {
        let described = match self.kms.describe_key().key_id(&d.key.alias).send().await {
            Ok(out) => out,
            Err(e) if code(&e) == Some("NotFoundException") => return Ok(Observation::Absent),
            Err(e) => return Err(classify("kms:DescribeKey", e)),
        };
        let Some(metadata) = described.key_metadata().cloned() else {
            return Ok(Observation::Absent);
        };
        let key_id = metadata.key_id().to_string();
        let tags = self.tags(&key_id).await?;
        if let Ownership::Foreign(owner) = ownership(&self.ctx, &tags) {
            return Err(AwsError::terminal(
                "ResourceOwnedByAnotherPipeline",
                format!(
                    "alias {} points at a key owned by {owner}; delete that alias or rename this pipeline",
                    d.key.alias
                ),
            ));
        }
        let pending = metadata.key_state() == Some(&KeyState::PendingDeletion);
        // A key pending deletion cannot report rotation or accept policy reads in AWS; it is
        // restored (and then re-read) by `update`.
        let (rotation_enabled, rotation_period_days, policy) = if pending {
            (false, None, None)
        } else {
            let rotation = self
                .kms
                .get_key_rotation_status()
                .key_id(&key_id)
                .send()
                .await
                .map_err(|e| classify("kms:GetKeyRotationStatus", e))?;
            let policy_text = self
                .kms
                .get_key_policy()
                .key_id(&key_id)
                .policy_name("default")
                .send()
                .await
                .map_err(|e| classify("kms:GetKeyPolicy", e))?;
            (
                rotation.key_rotation_enabled(),
                rotation.rotation_period_in_days(),
                policy_text.policy().and_then(policy::parse),
            )
        };
        let observed = Observed {
            metadata,
            rotation_enabled,
            rotation_period_days,
            policy,
            tags,
        };
        let up_to_date = !self.drift(&d.key, &observed).any();
        let produced = self.produced(observed.metadata.arn().unwrap_or_default());
        Ok(Observation::Present {
            observed,
            up_to_date,
            produced,
        })
    }

    async fn create(&self, d: &Desired) -> Result<Produced, AwsError> {
        if let Some(orphan) = self.find_orphan(&d.key).await? {
            // Adopt it: give it its alias, then bring it to the desired state like any key.
            self.create_alias(&d.key.alias, &orphan).await?;
            return match self.observe(d).await? {
                Observation::Present {
                    observed,
                    up_to_date: false,
                    ..
                } => self.update(d, &observed).await,
                Observation::Present { produced, .. } => Ok(produced),
                Observation::Absent => Err(AwsError::requeue(
                    "AliasNotVisibleYet",
                    format!("alias {} was created but is not visible yet", d.key.alias),
                    std::time::Duration::from_secs(5),
                )),
            };
        }
        // Tags go on with CreateKey so the key is recognisably ours from its first moment.
        let created = self
            .kms
            .create_key()
            .description(&d.key.description)
            .policy(d.key.policy.to_string())
            .key_usage(KeyUsageType::EncryptDecrypt)
            .key_spec(KeySpec::SymmetricDefault)
            .set_tags(Some(kms_tags(&d.key.tags)?))
            .send()
            .await
            .map_err(|e| classify("kms:CreateKey", e))?;
        let metadata = created.key_metadata().ok_or_else(|| AwsError::Retryable {
            reason: "AwsCallFailed".into(),
            message: "kms:CreateKey returned no key".into(),
        })?;
        let key_id = metadata.key_id().to_string();
        let arn = metadata.arn().unwrap_or_default().to_string();
        // The alias right away: it is how the key is found again.
        self.create_alias(&d.key.alias, &key_id).await?;
        self.ensure_rotation(&key_id, &d.key).await?;
        Ok(self.produced(&arn))
    }

    async fn update(&self, d: &Desired, o: &Observed) -> Result<Produced, AwsError> {
        let key_id = o.key_id();
        let mut state = o.metadata.key_state().cloned();
        if state == Some(KeyState::PendingDeletion) {
            // Scheduled for deletion outside the operator (or a deletion interrupted before the
            // alias went): restore the key, which keeps old artifacts readable, rather than
            // making a second one.
            self.kms
                .cancel_key_deletion()
                .key_id(key_id)
                .send()
                .await
                .map_err(|e| classify("kms:CancelKeyDeletion", e))?;
            state = Some(KeyState::Disabled);
        }
        if state == Some(KeyState::Disabled) {
            self.kms
                .enable_key()
                .key_id(key_id)
                .send()
                .await
                .map_err(|e| classify("kms:EnableKey", e))?;
        } else if state != Some(KeyState::Enabled) {
            return Err(AwsError::requeue(
                "KeyNotUsable",
                format!("KMS key {key_id} is in state {state:?}; waiting for it to become Enabled"),
                std::time::Duration::from_secs(15),
            ));
        }
        let drift = self.drift(&d.key, o);
        if drift.rotation {
            self.ensure_rotation(key_id, &d.key).await?;
        }
        if drift.policy {
            self.put_policy(key_id, &d.key).await?;
        }
        if drift.description {
            self.kms
                .update_key_description()
                .key_id(key_id)
                .description(&d.key.description)
                .send()
                .await
                .map_err(|e| classify("kms:UpdateKeyDescription", e))?;
        }
        if !drift.missing_tags.is_empty() {
            self.kms
                .tag_resource()
                .key_id(key_id)
                .set_tags(Some(kms_tags(&drift.missing_tags)?))
                .send()
                .await
                .map_err(|e| classify("kms:TagResource", e))?;
        }
        if !drift.stale_tags.is_empty() {
            self.kms
                .untag_resource()
                .key_id(key_id)
                .set_tag_keys(Some(drift.stale_tags))
                .send()
                .await
                .map_err(|e| classify("kms:UntagResource", e))?;
        }
        Ok(self.produced(o.metadata.arn().unwrap_or_default()))
    }

    async fn delete(&self, d: &Desired, o: &Observed) -> Result<Gone, AwsError> {
        if o.metadata.key_state() != Some(&KeyState::PendingDeletion) {
            match self
                .kms
                .schedule_key_deletion()
                .key_id(o.key_id())
                .pending_window_in_days(DELETION_WINDOW_DAYS)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("KMSInvalidStateException") => {}
                Err(e) => return Err(classify("kms:ScheduleKeyDeletion", e)),
            }
        }
        // Without the alias a re-created pipeline starts with a fresh key; the old one is gone
        // after the waiting period. A key pending deletion counts as gone.
        match self
            .kms
            .delete_alias()
            .alias_name(&d.key.alias)
            .send()
            .await
        {
            Ok(_) => Ok(Gone::Yes),
            Err(e) if code(&e) == Some("NotFoundException") => Ok(Gone::Yes),
            Err(e) => Err(classify("kms:DeleteAlias", e)),
        }
    }
}
