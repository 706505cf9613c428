//! How the observed repository differs from the desired one. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::desired::{ImageRepository, Mutability};
use crate::desired::policy;
use crate::engine::{Drift, Failure};
use crate::groups::kit::{TagPlan, on_off, tag_change};
use crate::groups::{Changes, Diff};

/// How ECR encrypts the repository (`encryptionConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encryption {
    /// `AES256`, `KMS` or `KMS_DSSE`.
    pub kind: String,
    pub kms_key: Option<String>,
}

/// The repository as ECR reports it: its identity, and what is compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepositoryView {
    pub arn: String,
    pub uri: String,
    pub mutability: Mutability,
    pub scan_on_push: bool,
    pub encryption: Encryption,
    pub policy: Option<Value>,
    pub tags: BTreeMap<String, String>,
}

/// One ECR write each, in the order they are applied; `Encryption` is no write but a refusal.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The repository is encrypted otherwise than desired. ECR cannot change the encryption of
    /// an existing repository and replacing it would lose its images: reported, not applied.
    Encryption(Encryption),
    Tags(TagPlan),
    Mutability,
    ScanOnPush,
    Policy,
    DeletePolicy,
}

fn encrypted_as_desired(d: &ImageRepository, o: &Encryption) -> bool {
    o.kind == "KMS" && o.kms_key.as_deref() == Some(d.kms_key_arn.as_str())
}

fn same_mutability(d: &Mutability, o: &Mutability) -> bool {
    let sorted = |m: &Mutability| {
        let mut e = m.exclusions.clone();
        e.sort();
        e.dedup();
        e
    };
    d.mode == o.mode && sorted(d) == sorted(o)
}

impl Diff<RepositoryView> for ImageRepository {
    type Change = Change;

    fn diff(&self, o: &RepositoryView) -> Changes<Change> {
        let repository = format!("ECR repository {}", self.name);
        let mut changes = Changes::new();
        if !encrypted_as_desired(self, &o.encryption) {
            let have = &o.encryption;
            let drift = Drift::value(
                &repository,
                "encryption (cannot change; a new repository is needed)",
                format!("{} {}", have.kind, have.kms_key.as_deref().unwrap_or("")).trim_end(),
                format!("KMS {}", self.kms_key_arn),
            );
            changes.push(Change::Encryption(have.clone()), drift);
        }
        tag_change(&mut changes, &repository, &self.tags, &o.tags, Change::Tags);
        if !same_mutability(&self.mutability, &o.mutability) {
            let words = |m: &Mutability| match m.exclusions.as_slice() {
                [] => m.mode.clone(),
                exclusions => format!("{} except {}", m.mode, exclusions.join(", ")),
            };
            let drift = Drift::value(
                &repository,
                "tag mutability",
                words(&o.mutability),
                words(&self.mutability),
            );
            changes.push(Change::Mutability, drift);
        }
        if o.scan_on_push != self.scan_on_push {
            let drift = Drift::value(
                &repository,
                "scan on push",
                on_off(o.scan_on_push),
                on_off(self.scan_on_push),
            );
            changes.push(Change::ScanOnPush, drift);
        }
        match (&self.policy, &o.policy) {
            (Some(want), Some(have)) if policy::equivalent(want, have) => {}
            (Some(_), _) => {
                let drift = Drift::field(&repository, "repository policy");
                changes.push(Change::Policy, drift);
            }
            (None, Some(_)) => {
                let drift = Drift::value(&repository, "repository policy", "set", "(none)");
                changes.push(Change::DeletePolicy, drift);
            }
            (None, None) => {}
        }
        changes
    }
}

/// What a repository encrypted otherwise than desired is reported as: a terminal failure that
/// says why nothing is changed and what to do.
pub fn encryption_refusal(d: &ImageRepository, observed: &Encryption) -> Failure {
    let have = match (observed.kind.as_str(), &observed.kms_key) {
        (kind, Some(key)) => format!("{kind} with key {key}"),
        (kind, None) => kind.to_string(),
    };
    Failure::terminal(
        "RepositoryEncryptionImmutable",
        format!(
            "ECR repository {} is encrypted with {have}, but this pipeline encrypts with KMS key {}. \
             ECR cannot change the encryption of an existing repository, and the operator does not \
             replace it (its images would be lost). Delete the repository (aws ecr delete-repository \
             --force --repository-name {}) so that it is recreated with the pipeline's key, or delete \
             this DeliveryPipeline",
            d.name, d.kms_key_arn, d.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TagMutability;
    use crate::desired::testing::{FULL, MINIMAL, context};
    use crate::groups::image_repository::desired::{image_repository, mutability};
    use serde_json::json;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    fn in_sync(d: &ImageRepository) -> RepositoryView {
        RepositoryView {
            mutability: d.mutability.clone(),
            scan_on_push: d.scan_on_push,
            encryption: Encryption {
                kind: "KMS".into(),
                kms_key: Some(d.kms_key_arn.clone()),
            },
            policy: d.policy.clone(),
            tags: d.tags.tags.clone(),
            ..RepositoryView::default()
        }
    }

    #[test]
    fn an_equal_repository_has_no_changes_whatever_aws_adds() {
        for manifest in [FULL, MINIMAL] {
            let d = image_repository(&context(manifest), KEY);
            let mut o = in_sync(&d);
            o.tags.insert("aws:cloudformation:stack".into(), "x".into());
            // ECR hands policies back reformatted: collapsed lists, reordered members.
            o.policy = d.policy.as_ref().map(|p| {
                let mut p = p.clone();
                p["Statement"][0]["Action"] = json!([
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                    "ecr:BatchCheckLayerAvailability"
                ]);
                p
            });
            assert_eq!(d.diff(&o), vec![], "{manifest}");
        }
    }

    #[test]
    fn each_mutability_mode_is_one_in_place_change() {
        let modes = [
            TagMutability::Immutable,
            TagMutability::ImmutableExceptLatest,
            TagMutability::Mutable,
        ];
        for want in modes {
            for have in modes {
                let mut c = context(MINIMAL);
                c.spec.image_repository.tag_mutability = want;
                let d = image_repository(&c, KEY);
                let mut o = in_sync(&d);
                o.mutability = mutability(have);
                let expected = if want == have {
                    vec![]
                } else {
                    vec![Change::Mutability]
                };
                assert_eq!(d.diff(&o), expected, "{want:?} over {have:?}");
            }
        }
    }

    #[test]
    fn a_different_exclusion_filter_is_a_mutability_change() {
        let d = image_repository(&context(MINIMAL), KEY);
        let mut o = in_sync(&d);
        o.mutability.exclusions = vec!["latest".into(), "dev-*".into()];
        assert_eq!(d.diff(&o), vec![Change::Mutability]);
    }

    #[test]
    fn scan_on_push_is_updated_in_place() {
        let mut c = context(MINIMAL);
        let mut o = in_sync(&image_repository(&c, KEY));
        c.spec.image_repository.scan_on_push = false;
        let d = image_repository(&c, KEY);
        assert_eq!(d.diff(&o), vec![Change::ScanOnPush]);
        o.scan_on_push = false;
        assert_eq!(d.diff(&o), vec![]);
    }

    #[test]
    fn a_policy_is_set_for_other_accounts_and_removed_when_none_is_left() {
        let full = image_repository(&context(FULL), KEY);
        let mut o = in_sync(&full);
        o.policy = None;
        assert_eq!(full.diff(&o), vec![Change::Policy]);
        // Another principal (an account root, say) is not what we grant.
        o.policy = Some(json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
            "Action": ["ecr:BatchGetImage"]
        }]}));
        assert_eq!(full.diff(&o), vec![Change::Policy]);

        let single = image_repository(&context(MINIMAL), KEY);
        let mut o = in_sync(&single);
        assert_eq!(single.diff(&o), vec![]);
        o.policy = full.policy.clone();
        assert_eq!(single.diff(&o), vec![Change::DeletePolicy]);
    }

    #[test]
    fn another_encryption_is_reported_not_applied() {
        let d = image_repository(&context(FULL), KEY);
        for observed in [
            Encryption {
                kind: "KMS".into(),
                kms_key: Some("arn:aws:kms:us-east-1:123456789012:key/old".into()),
            },
            Encryption {
                kind: "AES256".into(),
                kms_key: None,
            },
        ] {
            let mut o = in_sync(&d);
            o.encryption = observed.clone();
            assert_eq!(d.diff(&o), vec![Change::Encryption(observed.clone())]);
            let refusal = encryption_refusal(&d, &observed);
            assert_eq!(refusal.class, crate::engine::Class::Terminal);
            assert_eq!(refusal.reason, "RepositoryEncryptionImmutable");
            for needle in [
                "cannot change the encryption of an existing repository",
                "Delete the repository",
                "delete this DeliveryPipeline",
                d.name.as_str(),
                KEY,
            ] {
                assert!(refusal.message.contains(needle), "{}", refusal.message);
            }
        }
    }

    #[test]
    fn encryption_is_reported_first_so_nothing_is_written() {
        let mut c = context(MINIMAL);
        let mut o = in_sync(&image_repository(&c, KEY));
        o.encryption.kind = "AES256".into();
        o.encryption.kms_key = None;
        c.spec.image_repository.scan_on_push = false;
        let changes = image_repository(&c, KEY).diff(&o);
        assert!(matches!(changes[0], Change::Encryption(_)), "{changes:?}");
        assert_eq!(changes.len(), 2);
    }
}
