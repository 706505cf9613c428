//! The reconcile engine: a graph of steps derived from what each needs and provides, run
//! concurrently where independent; a failure blocks only its dependents; "in progress" is not a
//! failure; deletion runs dependents first. It knows nothing of AWS or of the API types: groups
//! (the `groups` module) implement [`Step`], the controller turns the [`Report`] into status.

pub mod conditions;
mod failure;
mod graph;
mod key;
mod run;
mod step;

pub use failure::{Class, Failure};
pub use graph::{Graph, GraphError};
pub use key::{Key, Values};
pub use run::{Outcome, Report, StepReport, apply, delete, preview};
pub use step::{Action, Applied, Drift, DriftAction, Note, Owned, Progress, Removal, Step};

#[cfg(test)]
mod tests;
