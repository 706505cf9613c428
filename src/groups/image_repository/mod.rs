//! The pipeline's ECR image repository, encrypted with the pipeline's KMS key.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
    ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType, Repository, Tag,
};
use aws_smithy_types::error::operation::BuildError;

use self::desired::{ImageRepository as Desired, Mutability, image_repository};
use self::diff::{Change, Encryption, RepositoryView};
use super::kit::{TagPlan, check_owner};
use super::{Group, Placement, Produced, keys};
use crate::aws::{AwsResultExt, AwsSession, classify, code, found};
use crate::desired::{PipelineContext, policy};
use crate::engine::{Failure, Key, Removal, Values};

const KIND: &str = "AWS::ECR::Repository";
const NOT_FOUND: &[&str] = &["RepositoryNotFoundException"];

pub struct ImageRepository {
    ctx: PipelineContext,
}

impl ImageRepository {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }

    fn name(&self) -> String {
        self.ctx.names().image_repository()
    }
}

/// The repository as ECR reports it.
pub struct Observed {
    arn: String,
    uri: String,
    view: RepositoryView,
}

fn build_err(e: BuildError) -> Failure {
    Failure::terminal(
        "InvalidRequest",
        format!("could not build an ECR request: {e}"),
    )
}

fn ecr_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, Failure> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_err))
        .collect()
}

/// The exclusion filters of `m`, or None when it has none (ECR takes one to five).
fn exclusion_filters(
    m: &Mutability,
) -> Result<Option<Vec<ImageTagMutabilityExclusionFilter>>, Failure> {
    if m.exclusions.is_empty() {
        return Ok(None);
    }
    m.exclusions
        .iter()
        .map(|f| {
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter(f)
                .build()
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn scanning(d: &Desired) -> ImageScanningConfiguration {
    ImageScanningConfiguration::builder()
        .scan_on_push(d.scan_on_push)
        .build()
}

/// Identity and the settings DescribeRepositories reports; policies and tags are read apart.
fn identity_of(repo: &Repository) -> Result<(String, String), Failure> {
    match (repo.repository_arn(), repo.repository_uri()) {
        (Some(arn), Some(uri)) => Ok((arn.to_string(), uri.to_string())),
        _ => Err(Failure::retryable(
            "AwsCallFailed",
            "ECR described a repository without its ARN or URI",
        )),
    }
}

fn mutability_of(repo: &Repository) -> Mutability {
    let mut exclusions: Vec<String> = repo
        .image_tag_mutability_exclusion_filters()
        .iter()
        .map(|f| match f.filter_type() {
            ImageTagMutabilityExclusionFilterType::Wildcard => f.filter().to_string(),
            other => format!("{}:{}", other.as_str(), f.filter()),
        })
        .collect();
    exclusions.sort();
    Mutability {
        mode: repo
            .image_tag_mutability()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        exclusions,
    }
}

fn encryption_of(repo: &Repository) -> Encryption {
    match repo.encryption_configuration() {
        Some(c) => Encryption {
            kind: c.encryption_type().as_str().to_string(),
            kms_key: c.kms_key().map(str::to_string),
        },
        // ECR's default.
        None => Encryption {
            kind: "AES256".into(),
            kms_key: None,
        },
    }
}

async fn put_lifecycle(ecr: &Client, d: &Desired) -> Result<(), Failure> {
    ecr.put_lifecycle_policy()
        .repository_name(&d.name)
        .lifecycle_policy_text(d.lifecycle_policy.to_string())
        .send()
        .await
        .aws("ecr:PutLifecyclePolicy")?;
    Ok(())
}

async fn set_policy(ecr: &Client, d: &Desired) -> Result<(), Failure> {
    if let Some(p) = &d.policy {
        ecr.set_repository_policy()
            .repository_name(&d.name)
            .policy_text(p.to_string())
            .send()
            .await
            .aws("ecr:SetRepositoryPolicy")?;
    }
    Ok(())
}

async fn put_tags(ecr: &Client, arn: &str, plan: TagPlan) -> Result<(), Failure> {
    if !plan.set.is_empty() {
        ecr.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecr_tags(&plan.set)?))
            .send()
            .await
            .aws("ecr:TagResource")?;
    }
    if !plan.remove.is_empty() {
        ecr.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(plan.remove))
            .send()
            .await
            .aws("ecr:UntagResource")?;
    }
    Ok(())
}

impl Group for ImageRepository {
    type Desired = Desired;
    type Observed = Observed;
    type Change = Change;

    fn condition(&self) -> String {
        "ImageRepositoryReady".into()
    }

    fn kind(&self) -> &'static str {
        "ECR image repository"
    }

    fn needs(&self) -> Vec<Key> {
        // The repository policy names the cross-account execution roles: ECR rejects a policy
        // naming a principal that does not exist yet.
        let mut needs = vec![keys::KMS_KEY_ARN];
        for env in self.ctx.cross_account_environments() {
            needs.push(keys::EXECUTION_ROLE_ARN.scoped(env.name()));
        }
        needs
    }

    fn provides(&self) -> Vec<Key> {
        vec![keys::REPOSITORY_ARN, keys::REPOSITORY_URI]
    }

    fn predicted(&self, at: &Placement) -> Values {
        let name = self.ctx.names().image_repository();
        let uri = format!(
            "{}.dkr.ecr.{}.amazonaws.com/{name}",
            at.account_id, at.region
        );
        Values::from([
            (keys::REPOSITORY_ARN, self.ctx.arns().repository()),
            (keys::REPOSITORY_URI, uri),
        ])
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Desired, Failure> {
        let key = super::kit::input(inputs, keys::KMS_KEY_ARN)?;
        Ok(image_repository(&self.ctx, key))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let ecr = aws.ecr();
        let name = self.name();
        let Some(described) = found(
            ecr.describe_repositories()
                .repository_names(&name)
                .send()
                .await,
            "ecr:DescribeRepositories",
            NOT_FOUND,
        )?
        else {
            return Ok(None);
        };
        let Some(repo) = described
            .repositories()
            .iter()
            .find(|r| r.repository_name() == Some(name.as_str()))
        else {
            return Ok(None);
        };
        let (arn, uri) = identity_of(repo)?;
        let tags: BTreeMap<String, String> = ecr
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .aws("ecr:ListTagsForResource")?
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        check_owner(&self.ctx, &format!("ECR repository {name}"), &tags)?;
        let lifecycle = found(
            ecr.get_lifecycle_policy()
                .repository_name(&name)
                .send()
                .await,
            "ecr:GetLifecyclePolicy",
            &["LifecyclePolicyNotFoundException"],
        )?;
        let repository_policy = found(
            ecr.get_repository_policy()
                .repository_name(&name)
                .send()
                .await,
            "ecr:GetRepositoryPolicy",
            &["RepositoryPolicyNotFoundException"],
        )?;
        Ok(Some(Observed {
            view: RepositoryView {
                mutability: mutability_of(repo),
                scan_on_push: repo
                    .image_scanning_configuration()
                    .is_some_and(|c| c.scan_on_push()),
                encryption: encryption_of(repo),
                lifecycle_policy: lifecycle
                    .as_ref()
                    .and_then(|out| out.lifecycle_policy_text())
                    .and_then(|text| serde_json::from_str(text).ok()),
                // A policy that does not parse still exists: it differs from any desired one.
                policy: repository_policy
                    .as_ref()
                    .and_then(|out| out.policy_text())
                    .map(|text| {
                        policy::parse(text).unwrap_or_else(|| serde_json::Value::from(text))
                    }),
                tags,
            },
            arn,
            uri,
        }))
    }

    fn diff(desired: &Desired, observed: &Observed) -> Vec<Change> {
        diff::diff(desired, &observed.view)
    }

    fn describe(
        &self,
        desired: &Desired,
        observed: &Observed,
        change: &Change,
    ) -> Vec<crate::engine::Drift> {
        diff::describe(desired, &observed.view, change)
    }

    async fn create(&self, aws: &AwsSession, d: &Desired) -> Result<Produced, Failure> {
        let ecr = aws.ecr();
        let at = Placement::of(aws);
        let created = ecr
            .create_repository()
            .repository_name(&d.name)
            .image_tag_mutability(ImageTagMutability::from(d.mutability.mode.as_str()))
            .set_image_tag_mutability_exclusion_filters(exclusion_filters(&d.mutability)?)
            .image_scanning_configuration(scanning(d))
            .encryption_configuration(
                EncryptionConfiguration::builder()
                    .encryption_type(EncryptionType::Kms)
                    .kms_key(&d.kms_key_arn)
                    .build()
                    .map_err(build_err)?,
            )
            // Tagged at creation, so it is recognisably ours at once.
            .set_tags(Some(ecr_tags(&d.tags.tags)?))
            .send()
            .await;
        let repo = match created {
            Ok(out) => out.repository().cloned().ok_or_else(|| {
                Failure::retryable(
                    "AwsCallFailed",
                    "ecr:CreateRepository returned no repository",
                )
            })?,
            // Made since it was observed (another reconcile): settle it like an update.
            Err(e) if code(&e) == Some("RepositoryAlreadyExistsException") => {
                let o = self.observe(aws).await?.ok_or_else(|| {
                    Failure::retryable(
                        "AwsCallFailed",
                        format!("ECR repository {} exists and does not", d.name),
                    )
                })?;
                let changes = diff::diff(d, &o.view);
                if !changes.is_empty() {
                    self.update(aws, d, &o, changes).await?;
                }
                return Ok(self.produced(&at, d, &o));
            }
            Err(e) => return Err(classify("ecr:CreateRepository", e)),
        };
        // A crash from here on leaves a tagged repository that the next diff completes.
        put_lifecycle(&ecr, d).await?;
        set_policy(&ecr, d).await?;
        let (arn, uri) = identity_of(&repo)?;
        Ok(outputs(&at, &arn, &uri))
    }

    async fn update(
        &self,
        aws: &AwsSession,
        d: &Desired,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<(), Failure> {
        // Refused before anything is written: the repository is not the one this spec needs.
        if let Some(encryption) = changes.iter().find_map(|c| match c {
            Change::Encryption(e) => Some(e),
            _ => None,
        }) {
            return Err(diff::encryption_refusal(d, encryption));
        }
        let ecr = aws.ecr();
        for change in changes {
            match change {
                Change::Encryption(_) => {}
                Change::Tags(plan) => put_tags(&ecr, &o.arn, plan).await?,
                Change::Mutability => {
                    ecr.put_image_tag_mutability()
                        .repository_name(&d.name)
                        .image_tag_mutability(ImageTagMutability::from(d.mutability.mode.as_str()))
                        .set_image_tag_mutability_exclusion_filters(exclusion_filters(
                            &d.mutability,
                        )?)
                        .send()
                        .await
                        .aws("ecr:PutImageTagMutability")?;
                }
                Change::ScanOnPush => {
                    ecr.put_image_scanning_configuration()
                        .repository_name(&d.name)
                        .image_scanning_configuration(scanning(d))
                        .send()
                        .await
                        .aws("ecr:PutImageScanningConfiguration")?;
                }
                Change::Lifecycle => put_lifecycle(&ecr, d).await?,
                Change::Policy => set_policy(&ecr, d).await?,
                Change::DeletePolicy => {
                    found(
                        ecr.delete_repository_policy()
                            .repository_name(&d.name)
                            .send()
                            .await,
                        "ecr:DeleteRepositoryPolicy",
                        &["RepositoryPolicyNotFoundException"],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Only reached under `deletionPolicy: Delete` (the controller leaves everything in place
    /// under Retain): the repository goes with its images.
    async fn delete(&self, aws: &AwsSession, _o: Observed) -> Result<Removal, Failure> {
        found(
            aws.ecr()
                .delete_repository()
                .repository_name(self.name())
                .force(true)
                .send()
                .await,
            "ecr:DeleteRepository",
            NOT_FOUND,
        )?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, _d: &Desired, o: &Observed) -> Produced {
        outputs(at, &o.arn, &o.uri)
    }
}

fn outputs(at: &Placement, arn: &str, uri: &str) -> Produced {
    Produced::default()
        .value(keys::REPOSITORY_ARN, arn)
        .value(keys::REPOSITORY_URI, uri)
        .owns(KIND, arn, at)
}
