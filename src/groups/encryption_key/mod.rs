//! The pipeline's customer-managed KMS key, found by its alias.

pub mod desired;
pub mod diff;
pub mod key_policy;

use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState as KmsKeyState, KeyUsageType, Tag};

use self::desired::{ALIAS_TAG, DELETION_WINDOW_DAYS, EncryptionKey as Desired, encryption_key};
use self::diff::{Change, KeyState, KeyView as Observed};
use super::kit::{check_owner, retag, tags_of};
use super::{Diff, Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession};
use crate::desired::PipelineContext;
use crate::desired::tags::OWNER_KEY;
use crate::engine::{Failure, Key, Progress, Removal, Values};

const KIND: &str = "AWS::KMS::Key";

pub struct EncryptionKey {
    ctx: PipelineContext,
}

impl EncryptionKey {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }

    fn alias(&self) -> String {
        self.ctx.names().kms_alias()
    }

    /// A usable key tagged for our alias but without it: made by a reconcile that crashed
    /// between CreateKey and CreateAlias.
    async fn find_orphan(&self, aws: &AwsSession, alias: &str) -> Result<Option<String>, Failure> {
        Ok(self.tagged_keys(aws, alias).await?.into_iter().next())
    }

    /// Every key tagged for our alias and owner that is not pending deletion, by ARN. (The
    /// tagging API is eventually consistent: a key made a moment ago may be missing.)
    async fn tagged_keys(&self, aws: &AwsSession, alias: &str) -> Result<Vec<String>, Failure> {
        use aws_sdk_resourcegroupstagging::types::TagFilter;
        let owner = TagFilter::builder()
            .key(OWNER_KEY)
            .values(self.ctx.owner())
            .build();
        let mut tagged = aws
            .tagging()
            .get_resources()
            .resource_type_filters("kms:key")
            .tag_filters(TagFilter::builder().key(ALIAS_TAG).values(alias).build())
            .tag_filters(owner)
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(mapping) = tagged.try_next().await.aws("tag:GetResources")? {
            let Some(arn) = mapping.resource_arn() else {
                continue;
            };
            let described = aws
                .kms()
                .describe_key()
                .key_id(arn)
                .send()
                .await
                .aws("kms:DescribeKey")?;
            let usable = matches!(
                state_of(described.key_metadata().and_then(|m| m.key_state())),
                KeyState::Enabled | KeyState::Disabled
            );
            if usable {
                found.push(arn.to_string());
            }
        }
        Ok(found)
    }
}

fn state_of(s: Option<&KmsKeyState>) -> KeyState {
    match s {
        Some(KmsKeyState::Enabled) => KeyState::Enabled,
        Some(KmsKeyState::Disabled) => KeyState::Disabled,
        Some(KmsKeyState::PendingDeletion) => KeyState::PendingDeletion,
        _ => KeyState::Other,
    }
}

/// A key KMS is still working on (Creating, Updating, ...).
fn not_usable_yet(key_id: &str) -> Progress {
    Progress {
        reason: "KeyNotUsable".into(),
        message: format!("KMS key {key_id} is not Enabled yet; waiting for KMS"),
        after: Duration::from_secs(15),
    }
}

/// The key behind `alias` (None: no such alias). The key policy step resolves it too.
async fn key_by_alias(kms: &Client, alias: &str) -> Result<Option<KeyMetadata>, Failure> {
    Ok(kms
        .describe_key()
        .key_id(alias)
        .send()
        .await
        .aws_tolerating("kms:DescribeKey", &["NotFoundException"])?
        .and_then(|out| out.key_metadata))
}

async fn create_alias(kms: &Client, alias: &str, key_id: &str) -> Result<(), Failure> {
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(key_id)
        .send()
        .await
        .aws("kms:CreateAlias")?;
    Ok(())
}

async fn enable_rotation(kms: &Client, key_id: &str, d: &Desired) -> Result<(), Failure> {
    kms.enable_key_rotation()
        .key_id(key_id)
        .rotation_period_in_days(d.rotation_period_days)
        .send()
        .await
        .aws("kms:EnableKeyRotation")?;
    Ok(())
}

impl Group for EncryptionKey {
    type Desired = Desired;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("EncryptionKeyReady", "KMS key")
    }

    fn provides(&self) -> Vec<Key> {
        vec![keys::KMS_KEY_ARN]
    }

    fn predicted(&self, at: &Placement) -> Values {
        let arn = format!(
            "arn:{}:kms:{}:{}:key/KNOWN-AFTER-CREATE",
            at.partition, at.region, at.account_id
        );
        Values::from([(keys::KMS_KEY_ARN, arn)])
    }

    fn desired(&self, _at: &Placement, _inputs: &Values) -> Result<Desired, Failure> {
        Ok(encryption_key(&self.ctx))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let kms = aws.kms();
        let alias = self.alias();
        let Some(metadata) = key_by_alias(&kms, &alias).await? else {
            return Ok(None);
        };
        let key_id = metadata.key_id().to_string();
        let key_arn = metadata.arn().unwrap_or_default().to_string();
        let tags = tags_of(aws, &self.ctx, &key_arn, || async {
            let tags: Vec<Tag> = kms
                .list_resource_tags()
                .key_id(&key_id)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .aws("kms:ListResourceTags")?;
            Ok(Some(from_sdk(&tags)))
        })
        .await?
        .unwrap_or_default();
        check_owner(
            &self.ctx,
            &format!("the KMS key behind alias {alias}"),
            &tags,
        )?;
        let state = state_of(metadata.key_state());
        // A key pending deletion cannot report rotation in AWS; it is restored (and then
        // rewritten) by `update`.
        let (rotation_enabled, rotation_period_days) = if state == KeyState::PendingDeletion {
            (false, None)
        } else {
            let rotation = kms
                .get_key_rotation_status()
                .key_id(&key_id)
                .send()
                .await
                .aws("kms:GetKeyRotationStatus")?;
            (
                rotation.key_rotation_enabled(),
                rotation.rotation_period_in_days(),
            )
        };
        Ok(Some(Observed {
            arn: metadata.arn().unwrap_or_default().to_string(),
            state,
            description: metadata.description().unwrap_or_default().to_string(),
            rotation_enabled,
            rotation_period_days,
            tags,
            key_id,
            strays: Vec::new(),
            aliased: true,
        }))
    }

    async fn observe_for_deletion(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let alias = self.alias();
        let aliased = self.observe(aws).await?;
        let mut strays = self.tagged_keys(aws, &alias).await?;
        match aliased {
            Some(mut key) => {
                strays.retain(|arn| *arn != key.arn);
                key.strays = strays;
                key.aliased = true;
                Ok(Some(key))
            }
            None if strays.is_empty() => Ok(None),
            None => Ok(Some(Observed {
                strays,
                ..Observed::default()
            })),
        }
    }

    fn progress(&self, o: &Observed) -> Option<Progress> {
        (o.state == KeyState::Other).then(|| not_usable_yet(&o.key_id))
    }

    async fn create(&self, aws: &AwsSession, d: &Desired) -> Result<Produced, Failure> {
        let kms = aws.kms();
        let at = Placement::of(aws);
        if let Some(orphan) = self.find_orphan(aws, &d.alias).await? {
            // Adopt it: give it its alias, then bring it to the desired state like any key.
            create_alias(&kms, &d.alias, &orphan).await?;
            let Some(observed) = self.observe(aws).await? else {
                return Err(Failure::in_progress(
                    "AliasNotVisibleYet",
                    format!("alias {} was created but is not visible yet", d.alias),
                    Duration::from_secs(5),
                ));
            };
            let changes = d.diff(&observed).into_changes();
            if !changes.is_empty() {
                self.update(aws, Update::new(d, &observed, changes)).await?;
            }
            return Ok(self.produced(&at, d, &observed));
        }
        // Tags go on with CreateKey so the key is recognisably ours from its first moment.
        let created = kms
            .create_key()
            .description(&d.description)
            .policy(d.initial_policy.to_string())
            .key_usage(KeyUsageType::EncryptDecrypt)
            .key_spec(KeySpec::SymmetricDefault)
            .set_tags(Some(to_sdk(&d.tags.tags)?))
            .send()
            .await
            .aws("kms:CreateKey")?;
        let metadata = created
            .key_metadata()
            .ok_or_else(|| Failure::retryable("AwsCallFailed", "kms:CreateKey returned no key"))?;
        let key_id = metadata.key_id();
        // The alias right away: it is how the key is found again.
        create_alias(&kms, &d.alias, key_id).await?;
        enable_rotation(&kms, key_id, d).await?;
        let arn = metadata.arn().unwrap_or_default().to_string();
        let made = Observed {
            arn,
            ..Observed::default()
        };
        Ok(self.produced(&at, d, &made))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let kms = &aws.kms();
        let key_id = o.key_id.as_str();
        if o.state == KeyState::Other {
            // KMS refuses writes to a key that is still being created or updated.
            let p = not_usable_yet(key_id);
            return Err(Failure::in_progress(p.reason, p.message, p.after));
        }
        for change in changes {
            match change {
                Change::CancelDeletion => {
                    kms.cancel_key_deletion()
                        .key_id(key_id)
                        .send()
                        .await
                        .aws("kms:CancelKeyDeletion")?;
                }
                Change::Enable => {
                    kms.enable_key()
                        .key_id(key_id)
                        .send()
                        .await
                        .aws("kms:EnableKey")?;
                }
                Change::Rotation => enable_rotation(kms, key_id, d).await?,
                Change::Description => {
                    kms.update_key_description()
                        .key_id(key_id)
                        .description(&d.description)
                        .send()
                        .await
                        .aws("kms:UpdateKeyDescription")?;
                }
                Change::Tags(plan) => retag(kms, key_id, plan).await?,
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        let kms = aws.kms();
        let aliased = (o.aliased && o.state != KeyState::PendingDeletion).then_some(&o.key_id);
        for key in aliased.into_iter().chain(&o.strays) {
            kms.schedule_key_deletion()
                .key_id(key)
                .pending_window_in_days(DELETION_WINDOW_DAYS)
                .send()
                .await
                .aws_tolerating("kms:ScheduleKeyDeletion", &["KMSInvalidStateException"])?;
        }
        // Without the alias a re-created pipeline starts with a fresh key; the old one is gone
        // after the waiting period. A key pending deletion counts as gone.
        kms.delete_alias()
            .alias_name(self.alias())
            .send()
            .await
            .aws_tolerating("kms:DeleteAlias", &["NotFoundException"])?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, _d: &Desired, o: &Observed) -> Produced {
        Produced::default()
            .value(keys::KMS_KEY_ARN, &o.arn)
            .owns(KIND, &o.arn, at)
    }
}
