//! What the operator shows people without changing anything: the offline plan of a manifest
//! (`delivery-operator plan`) and the drift an observe-only run found (`delivery-operator
//! diff`), and the operator's own IAM policy (`delivery-operator iam-policy`). They render what the groups and the engine computed; neither decides anything.

pub mod drift;
pub mod operator_policy;
pub mod plan;
