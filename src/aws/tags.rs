//! One adapter per SDK between a tag map and that SDK's own `Tag` type, so groups speak
//! `BTreeMap<String, String>` only.

use std::collections::BTreeMap;
use std::future::Future;

use super::error::AwsResultExt;
use crate::engine::Failure;

/// An SDK's tag type: built from a key and value (some SDKs check them at build time), read
/// back as a pair.
pub trait SdkTag: Sized {
    fn build(key: &str, value: &str) -> Result<Self, Failure>;
    fn pair(&self) -> Option<(&str, &str)>;
}

/// The tags in an SDK's shape.
pub fn to_sdk<T: SdkTag>(tags: &BTreeMap<String, String>) -> Result<Vec<T>, Failure> {
    tags.iter().map(|(k, v)| T::build(k, v)).collect()
}

/// An SDK's tags as a map (entries without a key or value are skipped).
pub fn from_sdk<T: SdkTag>(tags: &[T]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(T::pair)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn invalid(key: &str, e: impl std::fmt::Display) -> Failure {
    Failure::terminal("InvalidTag", format!("tag {key}: {e}"))
}

/// `required`: the SDK's builder checks both members (`build()` returns a `Result`) and the
/// getters return `&str`; `optional`: both are `Option`s.
macro_rules! sdk_tag {
    ($ty:ty, $key:ident, $value:ident, required) => {
        impl SdkTag for $ty {
            fn build(key: &str, value: &str) -> Result<Self, Failure> {
                <$ty>::builder()
                    .$key(key)
                    .$value(value)
                    .build()
                    .map_err(|e| invalid(key, e))
            }
            fn pair(&self) -> Option<(&str, &str)> {
                Some((self.$key(), self.$value()))
            }
        }
    };
    ($ty:ty, $key:ident, $value:ident, optional) => {
        impl SdkTag for $ty {
            fn build(key: &str, value: &str) -> Result<Self, Failure> {
                Ok(<$ty>::builder().$key(key).$value(value).build())
            }
            fn pair(&self) -> Option<(&str, &str)> {
                Some((self.$key()?, self.$value()?))
            }
        }
    };
}

sdk_tag!(aws_sdk_kms::types::Tag, tag_key, tag_value, required);
sdk_tag!(aws_sdk_s3::types::Tag, key, value, required);
sdk_tag!(aws_sdk_ecr::types::Tag, key, value, required);
sdk_tag!(aws_sdk_iam::types::Tag, key, value, required);
sdk_tag!(aws_sdk_sns::types::Tag, key, value, required);
sdk_tag!(aws_sdk_codepipeline::types::Tag, key, value, required);
sdk_tag!(aws_sdk_cloudwatch::types::Tag, key, value, optional);
sdk_tag!(aws_sdk_eventbridge::types::Tag, key, value, required);
sdk_tag!(aws_sdk_codebuild::types::Tag, key, value, optional);
sdk_tag!(aws_sdk_ec2::types::Tag, key, value, optional);
sdk_tag!(aws_sdk_ecs::types::Tag, key, value, optional);

/// A service's own tag and untag calls on one resource (named by ARN, or by the member the
/// service uses: a KMS key ID, an IAM role name).
pub trait Tagging: Sync {
    fn tag(
        &self,
        resource: &str,
        tags: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
    fn untag(
        &self,
        resource: &str,
        keys: Vec<String>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

macro_rules! tagging {
    ($client:ty, $tag:ident, $untag:ident, $member:ident, $tag_op:literal, $untag_op:literal) => {
        impl Tagging for $client {
            async fn tag(
                &self,
                resource: &str,
                tags: BTreeMap<String, String>,
            ) -> Result<(), Failure> {
                self.$tag()
                    .$member(resource)
                    .set_tags(Some(to_sdk(&tags)?))
                    .send()
                    .await
                    .aws($tag_op)
                    .map(drop)
            }
            async fn untag(&self, resource: &str, keys: Vec<String>) -> Result<(), Failure> {
                self.$untag()
                    .$member(resource)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .aws($untag_op)
                    .map(drop)
            }
        }
    };
}

tagging!(
    aws_sdk_kms::Client,
    tag_resource,
    untag_resource,
    key_id,
    "kms:TagResource",
    "kms:UntagResource"
);
tagging!(
    aws_sdk_ecr::Client,
    tag_resource,
    untag_resource,
    resource_arn,
    "ecr:TagResource",
    "ecr:UntagResource"
);
tagging!(
    aws_sdk_sns::Client,
    tag_resource,
    untag_resource,
    resource_arn,
    "sns:TagResource",
    "sns:UntagResource"
);
tagging!(
    aws_sdk_cloudwatch::Client,
    tag_resource,
    untag_resource,
    resource_arn,
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource"
);
tagging!(
    aws_sdk_eventbridge::Client,
    tag_resource,
    untag_resource,
    resource_arn,
    "events:TagResource",
    "events:UntagResource"
);
tagging!(
    aws_sdk_codepipeline::Client,
    tag_resource,
    untag_resource,
    resource_arn,
    "codepipeline:TagResource",
    "codepipeline:UntagResource"
);
tagging!(
    aws_sdk_ecs::Client,
    tag_resource,
    untag_resource,
    resource_arn,
    "ecs:TagResource",
    "ecs:UntagResource"
);
// Roles are the only IAM resources the operator tags.
tagging!(
    aws_sdk_iam::Client,
    tag_role,
    untag_role,
    role_name,
    "iam:TagRole",
    "iam:UntagRole"
);

/// CloudWatch Logs takes its tags as a map, not as a list of `Tag`s.
impl Tagging for aws_sdk_cloudwatchlogs::Client {
    async fn tag(&self, resource: &str, tags: BTreeMap<String, String>) -> Result<(), Failure> {
        self.tag_resource()
            .resource_arn(resource)
            .set_tags(Some(tags.into_iter().collect()))
            .send()
            .await
            .aws("logs:TagResource")
            .map(drop)
    }
    async fn untag(&self, resource: &str, keys: Vec<String>) -> Result<(), Failure> {
        self.untag_resource()
            .resource_arn(resource)
            .set_tag_keys(Some(keys))
            .send()
            .await
            .aws("logs:UntagResource")
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_each_shape() {
        let tags = BTreeMap::from([
            ("ManagedBy".to_string(), "delivery-operator".to_string()),
            ("Team".to_string(), "a".to_string()),
        ]);
        let kms: Vec<aws_sdk_kms::types::Tag> = to_sdk(&tags).unwrap_or_default();
        assert_eq!(from_sdk(&kms), tags);
        let ec2: Vec<aws_sdk_ec2::types::Tag> = to_sdk(&tags).unwrap_or_default();
        assert_eq!(from_sdk(&ec2), tags);
        let partial = aws_sdk_ecs::types::Tag::builder().key("only-key").build();
        assert!(from_sdk(&[partial]).is_empty());
    }
}
