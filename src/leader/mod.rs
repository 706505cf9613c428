//! Which replica reconciles: leader election on a Lease (`election.rs`) and the process around
//! it (`run.rs`: lead while holding the lease, stop on losing it or on a shutdown signal).

mod election;
mod run;

pub use election::*;
pub use run::{Shutdown, lead, reconcile_until_stopped, stopped};
