//! The repository's lifecycle policy, as its own step of the `ImageRepositoryReady` condition:
//! it keeps the last images and, above that rule, the images the services run. It needs what
//! each environment's service runs, while the services need the repository: the repository is
//! made first, then this step owns the lifecycle policy.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::desired::{lifecycle_policy, tag_in};
use crate::aws::{AwsResultExt, AwsSession, found};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Drift, Failure, Key, Removal, Values};
use crate::groups::kit::{Rewrite, input, json_subset, rewrite_unless};
use crate::groups::{Changes, Diff, Group, Names, Placement, Produced, Update, Updated, keys};

pub struct ImageRetention {
    ctx: PipelineContext,
}

impl ImageRetention {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub repository: String,
    /// Tags of the images the services run.
    pub protected_tags: BTreeSet<String>,
    pub policy: Value,
}

/// The lifecycle policy ECR has (None: none).
#[derive(Default)]
pub struct Observed {
    policy: Option<Value>,
}

impl Diff<Observed> for Desired {
    type Change = Rewrite;

    fn diff(&self, observed: &Observed) -> Changes<Rewrite> {
        // ECR may reformat the text; fields it adds do not count.
        let same = observed
            .policy
            .as_ref()
            .is_some_and(|actual| json_subset(&self.policy, actual));
        let repository = format!("ECR repository {}", self.repository);
        rewrite_unless(repository, "lifecycle policy", same)
    }
}

impl Group for ImageRetention {
    type Desired = Desired;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("ImageRepositoryReady", "ECR lifecycle policy")
    }

    fn needs(&self) -> Vec<Key> {
        let mut needs = vec![keys::REPOSITORY_URI];
        needs.extend(Env::ALL.map(|env| keys::RUNNING_IMAGE.scoped(env.name())));
        needs
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Desired, Failure> {
        let uri = input(inputs, keys::REPOSITORY_URI)?;
        let protected_tags: BTreeSet<String> = Env::ALL
            .iter()
            .filter_map(|env| inputs.get(&keys::RUNNING_IMAGE.scoped(env.name())))
            .filter_map(|image| tag_in(uri, image))
            .collect();
        let keep = self.ctx.spec.image_repository.keep_last_images;
        Ok(Desired {
            repository: self.ctx.names().image_repository(),
            policy: lifecycle_policy(keep, &protected_tags),
            protected_tags,
        })
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let answer = found(
            aws.ecr()
                .get_lifecycle_policy()
                .repository_name(self.ctx.names().image_repository())
                .send()
                .await,
            "ecr:GetLifecyclePolicy",
            // No repository (deleted, or not made yet) has no policy either.
            &[
                "LifecyclePolicyNotFoundException",
                "RepositoryNotFoundException",
            ],
        )?;
        let policy = answer
            .as_ref()
            .and_then(|out| out.lifecycle_policy_text())
            .and_then(|text| serde_json::from_str(text).ok());
        Ok(policy.map(|policy| Observed {
            policy: Some(policy),
        }))
    }

    /// The repository step deletes the repository, lifecycle policy included.
    fn removal(&self, _o: &Observed) -> Option<Vec<Drift>> {
        Some(Vec::new())
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, _, _) = update.parts();
        aws.ecr()
            .put_lifecycle_policy()
            .repository_name(&d.repository)
            .lifecycle_policy_text(d.policy.to_string())
            .send()
            .await
            .aws("ecr:PutLifecyclePolicy")?;
        Ok(None)
    }

    /// The repository step deletes the repository, lifecycle policy included.
    async fn delete(&self, _aws: &AwsSession, _o: Observed) -> Result<Removal, Failure> {
        Ok(Removal::Gone)
    }

    fn produced(&self, _at: &Placement, _d: &Desired, _o: &Observed) -> Produced {
        Produced::default()
    }
}
