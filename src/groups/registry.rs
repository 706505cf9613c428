//! The one registry of groups: the controller and the offline plan both iterate it. Adding a
//! group is one line here (per instance); the engine orders the steps from what each needs and
//! provides, so the order of the lines does not matter.

use std::sync::Arc;

use super::cadence::PipelineCadence;
use super::group::{Group, GroupStep, Instance};
use super::{
    alarms, artifact_store, encryption_key, events, image_repository, keys, log_groups, network,
    notifications, pipeline, projects, roles, service,
};
use crate::aws::AwsSession;
use crate::desired::{Env, PipelineContext};
use crate::engine::{Failure, Values};

/// The session an instance acts through, by the environment whose account it lives in (None:
/// the pipeline account); an error when that session could not be opened (or, for the
/// offline plan, is not wanted).
pub type SessionFor<'a> = dyn Fn(Option<Env>) -> Result<Arc<AwsSession>, Failure> + 'a;

struct Registry<'a> {
    session: &'a SessionFor<'a>,
    cadence: Option<&'a PipelineCadence>,
    steps: Vec<Box<dyn GroupStep>>,
}

impl Registry<'_> {
    fn add<G: Group>(&mut self, group: G) {
        let session = (self.session)(group.environment());
        self.steps
            .push(Instance::boxed(group, session, self.cadence.cloned()));
    }
}

/// Every group instance of one pipeline, each with its session; with `cadence`, the groups
/// that may be checked less often than every resync trust their last check until it is due.
pub fn steps(
    ctx: &PipelineContext,
    session: &SessionFor<'_>,
    cadence: Option<&PipelineCadence>,
) -> Vec<Box<dyn GroupStep>> {
    let mut registry = Registry {
        session,
        cadence,
        steps: Vec::new(),
    };
    registry.add(encryption_key::EncryptionKey::new(ctx));
    registry.add(encryption_key::key_policy::KeyPolicy::new(ctx));
    registry.add(artifact_store::ArtifactStore::new(ctx));
    registry.add(notifications::TopicGroup::notifications(ctx));
    registry.add(notifications::TopicGroup::approval(ctx));
    registry.add(image_repository::ImageRepository::new(ctx));
    registry.add(image_repository::retention::ImageRetention::new(ctx));
    registry.add(log_groups::LogGroups::pipeline(ctx));
    registry.add(roles::RoleSet::pipeline(ctx));
    registry.add(projects::BuildProject::build(ctx));
    registry.add(projects::BuildProject::scan(ctx));
    registry.add(pipeline::DeliveryPipelineGroup::new(ctx));
    registry.add(events::EventRules::new(ctx));
    registry.add(alarms::AlarmSet::new(ctx));
    for env in Env::ALL {
        registry.add(log_groups::LogGroups::environment(ctx, env));
        registry.add(roles::RoleSet::environment(ctx, env));
        registry.add(network::NetworkGroup::new(ctx, env));
        registry.add(service::ServiceGroup::new(ctx, env));
    }
    registry.steps
}

/// Values known before any step runs.
pub fn seed(account_id: &str, region: &str) -> Values {
    Values::from([
        (keys::ACCOUNT_ID, account_id.to_string()),
        (keys::REGION, region.to_string()),
    ])
}
