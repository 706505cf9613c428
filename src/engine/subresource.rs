//! The one trait every AWS subresource implements, in the spirit of Crossplane's
//! ExternalClient and ACK's resource manager. Implementations are small and idempotent; the
//! engine owns ordering, conditions, outputs, events and deletion.

use std::collections::BTreeMap;
use std::future::Future;

use futures::future::BoxFuture;

use crate::api::InventoryItem;
use crate::aws::AwsError;
use crate::desired::PipelineContext;

/// Values one subresource hands to the ones after it and to `status.outputs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputKey {
    AccountId,
    Region,
    KmsKeyArn,
    ArtifactBucket,
}

/// What a subresource produced: outputs and the AWS resources it owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Produced {
    pub outputs: BTreeMap<OutputKey, String>,
    pub inventory: Vec<InventoryItem>,
}

impl Produced {
    pub fn output(mut self, key: OutputKey, value: impl Into<String>) -> Self {
        self.outputs.insert(key, value.into());
        self
    }

    pub fn owns(mut self, kind: &str, id: impl Into<String>, account: &str, region: &str) -> Self {
        self.inventory.push(InventoryItem {
            kind: kind.into(),
            id: id.into(),
            account: account.into(),
            region: region.into(),
        });
        self
    }

    pub fn merge(&mut self, other: Produced) {
        self.outputs.extend(other.outputs);
        for item in other.inventory {
            if !self.inventory.contains(&item) {
                self.inventory.push(item);
            }
        }
    }

    /// An input a subresource needs from an upstream one.
    pub fn require(&self, key: OutputKey) -> Result<&str, SpecError> {
        self.outputs.get(&key).map(String::as_str).ok_or(SpecError {
            reason: "MissingInput".into(),
            message: format!("{key:?} is not known yet"),
        })
    }
}

/// The spec cannot be rendered into a valid AWS resource: terminal until the spec changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub reason: String,
    pub message: String,
}

/// What `observe` found.
pub enum Observation<O> {
    Absent,
    Present {
        observed: O,
        up_to_date: bool,
        produced: Produced,
    },
}

/// Result of `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// AWS confirms it is gone (or, for a KMS key, pending deletion).
    Yes,
    /// Deletion started; check again later.
    Pending,
}

pub trait Subresource: Send + Sync {
    /// The status condition this subresource writes, e.g. `ArtifactStoreReady`.
    const CONDITION: &'static str;
    /// What it is, for events and messages, e.g. `KMS key`.
    const KIND: &'static str;
    type Desired: Send + Sync;
    type Observed: Send + Sync;

    fn desired(
        &self,
        ctx: &PipelineContext,
        upstream: &Produced,
    ) -> Result<Self::Desired, SpecError>;
    fn observe(
        &self,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Observation<Self::Observed>, AwsError>> + Send;
    fn create(
        &self,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Produced, AwsError>> + Send;
    fn update(
        &self,
        desired: &Self::Desired,
        observed: &Self::Observed,
    ) -> impl Future<Output = Result<Produced, AwsError>> + Send;
    fn delete(
        &self,
        desired: &Self::Desired,
        observed: &Self::Observed,
    ) -> impl Future<Output = Result<Gone, AwsError>> + Send;
}

/// What one reconcile of a subresource did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

/// Why a step did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    Spec(SpecError),
    Aws(AwsError),
}

impl StepError {
    pub fn reason(&self) -> &str {
        match self {
            StepError::Spec(e) => &e.reason,
            StepError::Aws(e) => e.reason(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StepError::Spec(e) => &e.message,
            StepError::Aws(e) => e.message(),
        }
    }

    /// As an AWS error class: a spec error is terminal until the spec changes.
    pub fn to_aws(&self) -> AwsError {
        match self {
            StepError::Spec(e) => AwsError::terminal(e.reason.clone(), e.message.clone()),
            StepError::Aws(e) => e.clone(),
        }
    }
}

/// Object-safe form of [`Subresource`], so the engine can hold a list of different ones.
pub trait Step: Send + Sync {
    fn condition(&self) -> &'static str;
    fn kind(&self) -> &'static str;
    fn apply<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        upstream: &'a Produced,
    ) -> BoxFuture<'a, Result<(Action, Produced), StepError>>;
    /// Outputs of what exists now, without changing anything (used before deletion).
    fn look<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        upstream: &'a Produced,
    ) -> BoxFuture<'a, Result<Option<Produced>, StepError>>;
    fn remove<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        upstream: &'a Produced,
    ) -> BoxFuture<'a, Result<Gone, StepError>>;
}

impl<S: Subresource> Step for S {
    fn condition(&self) -> &'static str {
        S::CONDITION
    }

    fn kind(&self) -> &'static str {
        S::KIND
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        upstream: &'a Produced,
    ) -> BoxFuture<'a, Result<(Action, Produced), StepError>> {
        Box::pin(async move {
            let desired = self.desired(ctx, upstream).map_err(StepError::Spec)?;
            match self.observe(&desired).await.map_err(StepError::Aws)? {
                Observation::Absent => Ok((
                    Action::Created,
                    self.create(&desired).await.map_err(StepError::Aws)?,
                )),
                Observation::Present {
                    up_to_date: true,
                    produced,
                    ..
                } => Ok((Action::Unchanged, produced)),
                Observation::Present {
                    observed,
                    up_to_date: false,
                    ..
                } => Ok((
                    Action::Updated,
                    self.update(&desired, &observed)
                        .await
                        .map_err(StepError::Aws)?,
                )),
            }
        })
    }

    fn look<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        upstream: &'a Produced,
    ) -> BoxFuture<'a, Result<Option<Produced>, StepError>> {
        Box::pin(async move {
            let desired = self.desired(ctx, upstream).map_err(StepError::Spec)?;
            match self.observe(&desired).await.map_err(StepError::Aws)? {
                Observation::Absent => Ok(None),
                Observation::Present { produced, .. } => Ok(Some(produced)),
            }
        })
    }

    fn remove<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        upstream: &'a Produced,
    ) -> BoxFuture<'a, Result<Gone, StepError>> {
        Box::pin(async move {
            let desired = self.desired(ctx, upstream).map_err(StepError::Spec)?;
            match self.observe(&desired).await.map_err(StepError::Aws)? {
                Observation::Absent => Ok(Gone::Yes),
                Observation::Present { observed, .. } => self
                    .delete(&desired, &observed)
                    .await
                    .map_err(StepError::Aws),
            }
        })
    }
}
