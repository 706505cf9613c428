//! The one object-safe trait the engine drives. Groups implement it through
//! `groups::Instance`; engine tests implement it with fakes.

use std::time::Duration;

use futures::future::BoxFuture;

use super::failure::Failure;
use super::key::{Key, Values};

/// What one apply of a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

/// An AWS resource a step owns, for `status.inventory`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owned {
    pub kind: String,
    pub id: String,
    pub account: String,
    pub region: String,
}

/// The resource exists (its outputs are usable) but has not settled yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub reason: String,
    pub message: String,
    pub after: Duration,
}

/// Result of a successful apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub action: Action,
    pub values: Values,
    pub owned: Vec<Owned>,
    pub progress: Option<Progress>,
    /// Something the user should know about a step that is in sync (its condition's reason
    /// and message, the condition staying True).
    pub note: Option<Note>,
    /// Observe-only runs: what an apply would change (empty: in sync). Always empty after an
    /// apply, which corrects what it finds.
    pub drift: Vec<Drift>,
}

/// What an apply would do to one resource or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum DriftAction {
    Create,
    Update,
    Delete,
}

/// One difference between AWS and the spec, in words a person can act on: `update log group
/// /x: retention from 30 to 7`. Values are short renderings (documents are summarised), never
/// secrets: nothing the operator manages holds one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drift {
    pub action: DriftAction,
    /// The resource, e.g. `log group /aws/codebuild/x` or `KMS key`.
    pub resource: String,
    /// The field that differs (updates only), e.g. `retention`.
    pub field: Option<String>,
    /// What AWS has, when it is one short value.
    pub observed: Option<String>,
    /// What the spec declares, when it is one short value.
    pub desired: Option<String>,
}

/// Longest value a drift shows; longer ones are cut with an ellipsis.
const DRIFT_VALUE_MAX: usize = 120;

impl Drift {
    pub fn create(resource: impl Into<String>) -> Self {
        Self {
            action: DriftAction::Create,
            resource: resource.into(),
            field: None,
            observed: None,
            desired: None,
        }
    }

    pub fn delete(resource: impl Into<String>) -> Self {
        Self {
            action: DriftAction::Delete,
            ..Self::create(resource)
        }
    }

    /// A field that differs, without values (e.g. a policy document).
    pub fn field(resource: impl Into<String>, field: impl Into<String>) -> Self {
        Self {
            action: DriftAction::Update,
            field: Some(field.into()),
            ..Self::create(resource)
        }
    }

    /// A field that differs, from what AWS has to what the spec declares.
    pub fn value(
        resource: impl Into<String>,
        field: impl Into<String>,
        observed: impl std::fmt::Display,
        desired: impl std::fmt::Display,
    ) -> Self {
        Self {
            observed: Some(shorten(observed.to_string())),
            desired: Some(shorten(desired.to_string())),
            ..Self::field(resource, field)
        }
    }
}

fn shorten(mut value: String) -> String {
    if value.chars().count() > DRIFT_VALUE_MAX {
        value = value.chars().take(DRIFT_VALUE_MAX - 1).collect();
        value.push('…');
    }
    value
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.action {
            DriftAction::Create => write!(f, "create {}", self.resource),
            DriftAction::Delete => write!(f, "delete {}", self.resource),
            DriftAction::Update => {
                write!(f, "update {}", self.resource)?;
                if let Some(field) = &self.field {
                    write!(f, ": {field}")?;
                }
                match (&self.observed, &self.desired) {
                    (Some(o), Some(d)) => write!(f, " from {o} to {d}"),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// In sync, and yet worth saying: e.g. a service that runs no task until the pipeline's first
/// deployment, or a removed subscriber AWS cannot unsubscribe until its confirmation expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub reason: String,
    pub message: String,
}

/// Result of a successful delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// AWS confirms it is gone (or, for a KMS key, pending deletion).
    Gone,
    /// Deletion started; look again later. The text says what is awaited.
    Pending(String),
}

/// One unit of reconciliation: one group instance (e.g. the staging log groups).
///
/// Contracts: `apply` is safe to repeat after a partial failure (it observes first, without side
/// effects, and only then changes what differs); `delete` works from identity alone (names,
/// tags), never from another step's outputs, and is safe to repeat.
pub trait Step: Send + Sync {
    /// The status condition this step writes, e.g. `StagingLogGroupsReady`. Steps may share a
    /// condition; their states merge worst-wins.
    fn condition(&self) -> &str;
    /// What it is, for events and messages, e.g. `KMS key`.
    fn kind(&self) -> &str;
    fn needs(&self) -> Vec<Key>;
    fn provides(&self) -> Vec<Key>;
    /// False when the spec no longer asks for it: the engine deletes it instead.
    fn wanted(&self) -> bool {
        true
    }
    fn apply<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>>;
    fn delete(&self) -> BoxFuture<'_, Result<Removal, Failure>>;
    /// Read only: what `apply` would change, in `Applied::drift` (action `Unchanged`). When the
    /// resource is missing, its predicted outputs stand in so dependents can still be compared.
    fn preview<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>>;
    /// Read only: what `delete` would remove (empty: nothing exists).
    fn preview_removal(&self) -> BoxFuture<'_, Result<Vec<Drift>, Failure>>;
}
