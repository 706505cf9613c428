//! AWS side: one module per subresource, each implementing [`crate::engine::Subresource`],
//! plus sessions (clients per account and region) and error classification.

pub mod artifact_store;
pub mod encryption_key;
pub mod error;
pub mod session;

pub use error::AwsError;
pub use session::{AwsFactory, AwsSession, SessionKey};

use crate::desired::PipelineContext;
use crate::engine::Stages;

/// Every subresource of a pipeline, in dependency order.
pub fn stages(session: &AwsSession, ctx: &PipelineContext) -> Stages {
    vec![
        vec![Box::new(encryption_key::EncryptionKeySubresource {
            kms: session.kms(),
            tagging: session.tagging(),
            ctx: ctx.clone(),
        })],
        vec![Box::new(artifact_store::ArtifactStoreSubresource {
            s3: session.s3(),
            ctx: ctx.clone(),
        })],
    ]
}
