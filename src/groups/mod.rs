//! Every group of AWS resources a pipeline owns, behind one contract ([`Group`], in
//! `group.rs`), and the one registry ([`steps`], in `registry.rs`) that the controller and the
//! offline plan iterate.
//!
//! A group is a folder: `desired.rs` (pure rendering from the spec), `diff.rs` (the pure
//! [`Diff`] of the desired state against what AWS has, each change with its words), and
//! `mod.rs` (the AWS calls: observe, create, update, delete). Per-environment groups are
//! instances, each with its own condition, outputs and session. `docs/architecture.md` has the
//! checklist for adding one.

pub mod alarms;
pub mod artifact_store;
pub mod cadence;
pub mod encryption_key;
pub mod events;
pub mod group;
pub mod image_repository;
pub mod keys;
pub mod kit;
pub mod log_groups;
pub mod network;
pub mod notifications;
pub mod pipeline;
pub mod projects;
pub mod registry;
pub mod roles;
pub mod service;

pub use group::{
    ChangeOf, Changes, Diff, Group, GroupStep, Instance, Names, Placement, Produced, Update,
    Updated,
};
pub use registry::{SessionFor, seed, steps};
