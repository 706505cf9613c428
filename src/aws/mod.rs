//! AWS plumbing shared by every group: sessions (clients per identity chain and region) and
//! error classification.

pub mod error;
pub mod session;

pub use error::{AwsResultExt, classify, code, found};
pub use session::{Assume, AwsFactory, AwsSession, SessionKey};
