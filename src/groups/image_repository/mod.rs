//! The pipeline's ECR image repository, encrypted with the pipeline's KMS key.

pub mod desired;
pub mod diff;
pub mod retention;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
    ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType, Repository,
};

use self::desired::{ImageRepository as Desired, Mutability, image_repository};
use self::diff::{Change, Encryption, RepositoryView as Observed};
use super::kit::{check_owner, input, invalid, retag, tags_of};
use super::{Diff, Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession, found};
use crate::desired::{PipelineContext, policy};
use crate::engine::{Failure, Key, Removal, Values};

const KIND: &str = "AWS::ECR::Repository";
const NOT_FOUND: &[&str] = &["RepositoryNotFoundException"];
/// What a request the SDK refuses to build is reported as.
const ECR_REQUEST: &str = "could not build an ECR request";

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
                .map_err(invalid(ECR_REQUEST))
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
fn repository_of(repo: &Repository) -> Result<Observed, Failure> {
    let (Some(arn), Some(uri)) = (repo.repository_arn(), repo.repository_uri()) else {
        return Err(Failure::retryable(
            "AwsCallFailed",
            "ECR described a repository without its ARN or URI",
        ));
    };
    Ok(Observed {
        arn: arn.to_string(),
        uri: uri.to_string(),
        mutability: mutability_of(repo),
        scan_on_push: repo
            .image_scanning_configuration()
            .is_some_and(|c| c.scan_on_push()),
        encryption: encryption_of(repo),
        ..Observed::default()
    })
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

impl Group for ImageRepository {
    type Desired = Desired;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("ImageRepositoryReady", "ECR image repository")
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
        Ok(image_repository(
            &self.ctx,
            input(inputs, keys::KMS_KEY_ARN)?,
        ))
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
        let repository = repository_of(repo)?;
        let tags = tags_of(aws, &self.ctx, &repository.arn, || async {
            let listed = ecr
                .list_tags_for_resource()
                .resource_arn(&repository.arn)
                .send()
                .await
                .aws("ecr:ListTagsForResource")?;
            Ok(Some(from_sdk(listed.tags())))
        })
        .await?
        .unwrap_or_default();
        check_owner(&self.ctx, &format!("ECR repository {name}"), &tags)?;
        let repository_policy = found(
            ecr.get_repository_policy()
                .repository_name(&name)
                .send()
                .await,
            "ecr:GetRepositoryPolicy",
            &["RepositoryPolicyNotFoundException"],
        )?;
        Ok(Some(Observed {
            // A policy that does not parse still exists: it differs from any desired one.
            policy: repository_policy
                .as_ref()
                .and_then(|out| out.policy_text())
                .map(|text| policy::parse(text).unwrap_or_else(|| serde_json::Value::from(text))),
            tags,
            ..repository
        }))
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
                    .map_err(invalid(ECR_REQUEST))?,
            )
            // Tagged at creation, so it is recognisably ours at once.
            .set_tags(Some(to_sdk(&d.tags.tags)?))
            .send()
            .await
            .aws_tolerating(
                "ecr:CreateRepository",
                &["RepositoryAlreadyExistsException"],
            )?;
        let Some(created) = created else {
            // Made since it was observed (another reconcile): settle it like an update.
            let o = self.observe(aws).await?.ok_or_else(|| {
                Failure::retryable(
                    "AwsCallFailed",
                    format!("ECR repository {} exists and does not", d.name),
                )
            })?;
            let changes = d.diff(&o).into_changes();
            if !changes.is_empty() {
                self.update(aws, Update::new(d, &o, changes)).await?;
            }
            return Ok(self.produced(&at, d, &o));
        };
        let repo = created.repository().ok_or_else(|| {
            Failure::retryable(
                "AwsCallFailed",
                "ecr:CreateRepository returned no repository",
            )
        })?;
        // A crash from here on leaves a tagged repository that the next diff completes.
        set_policy(&ecr, d).await?;
        Ok(self.produced(&at, d, &repository_of(repo)?))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        // Refused before anything is written: the repository is not the one this spec needs.
        if let Some(encryption) = changes.iter().find_map(|c| match c {
            Change::Encryption(e) => Some(e),
            _ => None,
        }) {
            return Err(diff::encryption_refusal(d, encryption));
        }
        let ecr = &aws.ecr();
        let arn = o.arn.as_str();
        for change in changes {
            match change {
                Change::Encryption(_) => {}
                Change::Tags(plan) => retag(ecr, arn, plan).await?,
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
                Change::Policy => set_policy(ecr, d).await?,
                Change::DeletePolicy => {
                    ecr.delete_repository_policy()
                        .repository_name(&d.name)
                        .send()
                        .await
                        .aws_tolerating(
                            "ecr:DeleteRepositoryPolicy",
                            &["RepositoryPolicyNotFoundException"],
                        )?;
                }
            }
        }
        Ok(None)
    }

    /// Only reached under `deletionPolicy: Delete` (the controller leaves everything in place
    /// under Retain): the repository goes with its images.
    async fn delete(&self, aws: &AwsSession, _o: Observed) -> Result<Removal, Failure> {
        aws.ecr()
            .delete_repository()
            .repository_name(self.name())
            .force(true)
            .send()
            .await
            .aws_tolerating("ecr:DeleteRepository", NOT_FOUND)?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, _d: &Desired, o: &Observed) -> Produced {
        Produced::default()
            .value(keys::REPOSITORY_ARN, &o.arn)
            .value(keys::REPOSITORY_URI, &o.uri)
            .owns(KIND, &o.arn, at)
    }
}
