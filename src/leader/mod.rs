//! Which replica reconciles: leader election on a Lease (`election.rs`), the process around it
//! (`run.rs`: lead while holding the lease, stop on losing it or on a shutdown signal), and
//! sharded leading (`shards.rs`: one Lease per shard of the pipelines).

mod election;
mod run;
mod shards;

pub use election::*;
pub use run::{Shutdown, lead, reconcile_until_stopped, stopped};
pub use shards::{ShardLease, lead_shards, shard_lease_name};
