//! AWS plumbing shared by every group: sessions (clients per identity chain and region), error
//! classification, tolerated codes and "not yet visible" retries, and the tag adapters.

pub mod error;
pub mod rate;
pub mod session;
pub mod tags;

pub use error::{
    AwsResultExt, IAM_PROPAGATION_RETRY, WAITING_FOR_IAM, classify, code, found,
    role_not_visible_yet, while_unseen,
};
pub use rate::RateLimit;
pub use session::{Assume, AwsFactory, AwsSession, ClientLimits, SessionKey};

/// The partition a region belongs to (the second field of every ARN).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}
