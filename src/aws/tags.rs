//! One adapter per SDK between a tag map and that SDK's own `Tag` type, so groups speak
//! `BTreeMap<String, String>` only.

use std::collections::BTreeMap;

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
