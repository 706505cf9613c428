//! The key policy, as its own step of the `EncryptionKeyReady` condition. It runs after the
//! environment roles it grants exist (KMS rejects a policy naming an unknown principal), while
//! those roles need the key's ARN: the key is created first with the policy minus those grants,
//! then this step owns the whole policy.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::desired::{key_policy, key_users};
use super::key_by_alias;
use crate::aws::{AwsResultExt, AwsSession, found};
use crate::desired::PipelineContext;
use crate::desired::policy::{equivalent, parse};
use crate::engine::{Drift, Failure, Key, Removal, Values};
use crate::groups::kit::{Rewrite, input, rewrite_unless};
use crate::groups::{Changes, Diff, Group, Names, Placement, Produced, Update, Updated, keys};

pub struct KeyPolicy {
    ctx: PipelineContext,
}

impl KeyPolicy {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub alias: String,
    pub key_arn: String,
    pub policy: Value,
}

#[derive(Default)]
pub struct Observed {
    key_id: String,
    policy: Option<Value>,
}

impl Diff<Observed> for Desired {
    type Change = Rewrite;

    fn diff(&self, observed: &Observed) -> Changes<Rewrite> {
        let same = observed
            .policy
            .as_ref()
            .is_some_and(|actual| equivalent(actual, &self.policy));
        rewrite_unless(format!("KMS key {}", self.alias), "key policy", same)
    }
}

impl Group for KeyPolicy {
    type Desired = Desired;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("EncryptionKeyReady", "KMS key policy")
    }

    fn needs(&self) -> Vec<Key> {
        // The pipeline role set makes the pipeline, build and scan roles the policy names.
        let mut needs = vec![keys::KMS_KEY_ARN, keys::PIPELINE_ROLE_ARN];
        for env in self.ctx.cross_account_environments() {
            needs.push(keys::DEPLOY_ROLE_ARN.scoped(env.name()));
            needs.push(keys::EXECUTION_ROLE_ARN.scoped(env.name()));
        }
        needs
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Desired, Failure> {
        Ok(Desired {
            alias: self.ctx.names().kms_alias(),
            key_arn: input(inputs, keys::KMS_KEY_ARN)?.to_string(),
            policy: key_policy(&self.ctx, &key_users(&self.ctx)),
        })
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let kms = aws.kms();
        // GetKeyPolicy takes no alias: resolve it first.
        let Some(metadata) = key_by_alias(&kms, &self.ctx.names().kms_alias()).await? else {
            return Ok(None);
        };
        let key_id = metadata.key_id;
        let policy = kms
            .get_key_policy()
            .key_id(&key_id)
            .policy_name("default")
            .send()
            .await
            .aws("kms:GetKeyPolicy")?
            .policy()
            .and_then(parse);
        Ok(Some(Observed { key_id, policy }))
    }

    /// The key step resolved the alias a moment ago: its key ARN is read from there, not
    /// from a second DescribeKey (a preview's placeholder for a key not made yet is no ARN).
    async fn observe_with(
        &self,
        aws: &AwsSession,
        inputs: &Values,
    ) -> Result<Option<Observed>, Failure> {
        let Some(key_arn) = inputs
            .get(&keys::KMS_KEY_ARN)
            .filter(|arn| arn.starts_with("arn:"))
        else {
            return self.observe(aws).await;
        };
        let Some(got) = found(
            aws.kms()
                .get_key_policy()
                .key_id(key_arn)
                .policy_name("default")
                .send()
                .await,
            "kms:GetKeyPolicy",
            &["NotFoundException"],
        )?
        else {
            return Ok(None);
        };
        let key_id = key_arn.rsplit('/').next().unwrap_or(key_arn).to_string();
        Ok(Some(Observed {
            key_id,
            policy: got.policy().and_then(parse),
        }))
    }

    /// The key step deletes the key, policy included.
    fn removal(&self, _o: &Observed) -> Option<Vec<Drift>> {
        Some(Vec::new())
    }

    /// The key step ran just before; an alias not visible yet is KMS catching up.
    async fn create(&self, _aws: &AwsSession, d: &Desired) -> Result<Produced, Failure> {
        Err(Failure::in_progress(
            "KeyNotVisibleYet",
            format!("KMS does not resolve {} yet", d.alias),
            Duration::from_secs(5),
        ))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, _) = update.parts();
        aws.kms()
            .put_key_policy()
            .key_id(&o.key_id)
            .policy_name("default")
            .policy(d.policy.to_string())
            .send()
            .await
            .aws("kms:PutKeyPolicy")?;
        Ok(None)
    }

    /// The key step schedules the key's deletion, policy included.
    async fn delete(&self, _aws: &AwsSession, _o: Observed) -> Result<Removal, Failure> {
        Ok(Removal::Gone)
    }

    fn produced(&self, _at: &Placement, _d: &Desired, _o: &Observed) -> Produced {
        Produced::default()
    }
}
