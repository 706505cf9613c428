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
}
