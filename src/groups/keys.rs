//! The values groups hand to each other (and to `status.outputs`).

use crate::engine::Key;

pub const ACCOUNT_ID: Key = Key::new("AccountId");
pub const REGION: Key = Key::new("Region");
pub const KMS_KEY_ARN: Key = Key::new("KmsKeyArn");
pub const ARTIFACT_BUCKET: Key = Key::new("ArtifactBucket");
pub const NOTIFICATION_TOPIC_ARN: Key = Key::new("NotificationTopicArn");
/// Per environment (`.scoped(env.name())`): the application's log group.
pub const APPLICATION_LOG_GROUP: Key = Key::new("ApplicationLogGroup");
pub const BUILD_LOG_GROUP: Key = Key::new("BuildLogGroup");
pub const SCAN_LOG_GROUP: Key = Key::new("ScanLogGroup");
