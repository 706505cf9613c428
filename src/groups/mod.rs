//! Every group of AWS resources a pipeline owns, behind one trait ([`Group`]), and the one
//! registry ([`steps`]) that the controller and the offline plan iterate.
//!
//! A group is a folder: `desired.rs` (pure rendering from the spec), `diff.rs` (pure
//! comparison with what AWS has), and `mod.rs` (the AWS calls: observe, create, update,
//! delete). Per-environment groups are instances, each with its own condition, outputs and
//! session. `docs/architecture.md` has the checklist for adding one.

pub mod alarms;
pub mod artifact_store;
pub mod encryption_key;
pub mod events;
pub mod image_repository;
pub mod keys;
pub mod kit;
pub mod log_groups;
pub mod network;
pub mod notifications;
pub mod pipeline;
pub mod projects;
pub mod roles;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use tracing::Instrument;

use crate::aws::AwsSession;
use crate::desired::{Env, PipelineContext};
use crate::engine::{
    Action, Applied, Drift, Failure, Key, Note, Owned, Progress, Removal, Step, Values,
};

/// Where a group instance's resources live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub account_id: String,
    pub region: String,
    pub partition: &'static str,
}

impl Placement {
    pub fn of(session: &AwsSession) -> Self {
        Self {
            account_id: session.account_id.clone(),
            region: session.region.clone(),
            partition: session.partition,
        }
    }
}

/// Values and owned resources a group hands to the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Produced {
    pub values: Values,
    pub owned: Vec<Owned>,
    /// Exists but not settled, known from what `create` or `update_settled` left (e.g. a
    /// rollout under way); else [`Group::progress`] decides.
    pub progress: Option<Progress>,
    /// In sync, with something worth saying (e.g. a service waiting for its first image);
    /// else [`Group::note`] decides.
    pub note: Option<Note>,
}

impl Produced {
    pub fn value(mut self, key: Key, value: impl Into<String>) -> Self {
        self.values.insert(key, value.into());
        self
    }

    pub fn owns(mut self, kind: &str, id: impl Into<String>, at: &Placement) -> Self {
        self.owned.push(Owned {
            kind: kind.into(),
            id: id.into(),
            account: at.account_id.clone(),
            region: at.region.clone(),
        });
        self
    }
}

/// One group of AWS resources. The group value itself holds only identity (the pipeline
/// context, the environment): I/O methods get the session, so an instance whose session
/// could not be made still has its condition, needs and provides.
///
/// Contracts: `observe` has no side effects and works from identity alone (names, tags);
/// `create` is safe to repeat after a partial failure (it finds what an interrupted create
/// left); `update` applies exactly the `diff`; `delete` is safe to repeat.
pub trait Group: Send + Sync + 'static {
    type Desired: Send + Sync + Serialize;
    type Observed: Send + Sync;
    type Change: Send + Sync + std::fmt::Debug;

    /// The status condition, e.g. `EncryptionKeyReady` or `StagingLogGroupsReady`.
    fn condition(&self) -> String;
    /// What it is, for events and messages.
    fn kind(&self) -> &'static str;
    fn needs(&self) -> Vec<Key> {
        Vec::new()
    }
    fn provides(&self) -> Vec<Key> {
        Vec::new()
    }
    /// False when the spec no longer asks for this group: its resources are deleted.
    fn wanted(&self) -> bool {
        true
    }
    /// The environment whose account this instance lives in (None: the pipeline account).
    fn environment(&self) -> Option<Env> {
        None
    }
    /// Outputs known before creation (deterministic names and ARNs), so the offline plan
    /// renders real values; values AWS assigns are shown as placeholders.
    fn predicted(&self, _at: &Placement) -> Values {
        Values::new()
    }
    /// Pure: the desired state from the spec, where it lives, and upstream values.
    fn desired(&self, at: &Placement, inputs: &Values) -> Result<Self::Desired, Failure>;
    fn observe(
        &self,
        aws: &AwsSession,
    ) -> impl Future<Output = Result<Option<Self::Observed>, Failure>> + Send;
    /// Pure: what must change to bring `observed` to `desired` (empty: in sync).
    fn diff(desired: &Self::Desired, observed: &Self::Observed) -> Vec<Self::Change>;
    /// Pure: one change in words (which resource, which field, from what to what), for
    /// observe-only runs and `delivery-operator diff`.
    fn describe(
        &self,
        desired: &Self::Desired,
        observed: &Self::Observed,
        change: &Self::Change,
    ) -> Vec<Drift>;
    /// Pure: what `delete` would remove, in words.
    fn describe_removal(&self, _observed: &Self::Observed) -> Vec<Drift> {
        vec![Drift::delete(self.kind())]
    }
    fn create(
        &self,
        aws: &AwsSession,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Produced, Failure>> + Send;
    fn update(
        &self,
        aws: &AwsSession,
        desired: &Self::Desired,
        observed: &Self::Observed,
        changes: Vec<Self::Change>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
    /// `update`, returning the state it leaves when `produced` must see what the update made
    /// (values AWS assigns on creation, such as EC2 IDs). Default: `update`, after which
    /// `produced` reads `observed`.
    fn update_settled(
        &self,
        aws: &AwsSession,
        desired: &Self::Desired,
        observed: &Self::Observed,
        changes: Vec<Self::Change>,
    ) -> impl Future<Output = Result<Option<Self::Observed>, Failure>> + Send {
        async move {
            self.update(aws, desired, observed, changes).await?;
            Ok(None)
        }
    }
    fn delete(
        &self,
        aws: &AwsSession,
        observed: Self::Observed,
    ) -> impl Future<Output = Result<Removal, Failure>> + Send;
    /// Outputs and owned resources once `observed` is in the desired state (after an update,
    /// collections hold exactly the desired members).
    fn produced(
        &self,
        at: &Placement,
        desired: &Self::Desired,
        observed: &Self::Observed,
    ) -> Produced;
    /// Exists but not settled yet (e.g. a service rolling out).
    fn progress(&self, _observed: &Self::Observed) -> Option<Progress> {
        None
    }
    /// In sync, with something the user should know (shown in the condition's message).
    fn note(&self, _desired: &Self::Desired, _observed: &Self::Observed) -> Option<Note> {
        None
    }
}

/// A step the controller runs and the offline plan renders.
pub trait GroupStep: Step {
    fn environment(&self) -> Option<Env>;
    fn predicted(&self, at: &Placement) -> Values;
    /// The desired state, as the offline plan shows it: `known` holds the predicted outputs of
    /// every step; other inputs are shown as placeholders.
    fn plan(&self, at: &Placement, known: &Values) -> Result<serde_json::Value, Failure>;
}

/// A group with the session its instance acts through (or why there is none).
pub struct Instance<G: Group> {
    group: G,
    condition: String,
    session: Result<Arc<AwsSession>, Failure>,
}

impl<G: Group> Instance<G> {
    pub fn boxed(group: G, session: Result<Arc<AwsSession>, Failure>) -> Box<dyn GroupStep> {
        Box::new(Self {
            condition: group.condition(),
            group,
            session,
        })
    }

    /// Log fields of everything this instance does, AWS calls included: with the reconcile's
    /// `pipeline`, a person can follow one pipeline's group in one account.
    fn span(&self) -> tracing::Span {
        let account = self
            .session
            .as_ref()
            .map_or("unknown", |s| s.account_id.as_str());
        tracing::info_span!("group", group = %self.condition, account = %account)
    }

    fn session(&self) -> Result<&AwsSession, Failure> {
        self.session.as_deref().map_err(Clone::clone)
    }

    async fn run_apply(&self, inputs: &Values) -> Result<Applied, Failure> {
        let aws = self.session()?;
        let at = Placement::of(aws);
        let desired = self.group.desired(&at, inputs)?;
        let Some(observed) = self.group.observe(aws).await? else {
            let produced = self.group.create(aws, &desired).await?;
            return Ok(Applied {
                action: Action::Created,
                values: produced.values,
                owned: produced.owned,
                progress: produced.progress,
                note: produced.note,
                drift: Vec::new(),
            });
        };
        let changes = G::diff(&desired, &observed);
        if changes.is_empty() {
            return Ok(self.existing(&at, &desired, &observed, Action::Unchanged, Vec::new()));
        }
        tracing::debug!(kind = self.group.kind(), ?changes, "updating");
        let settled = self
            .group
            .update_settled(aws, &desired, &observed, changes)
            .await?;
        let observed = settled.unwrap_or(observed);
        Ok(self.existing(&at, &desired, &observed, Action::Updated, Vec::new()))
    }

    /// What an existing resource gives the run: its outputs and inventory, and its progress
    /// and note (the group's own from `produced`, else those read from `observed`).
    fn existing(
        &self,
        at: &Placement,
        desired: &G::Desired,
        observed: &G::Observed,
        action: Action,
        drift: Vec<Drift>,
    ) -> Applied {
        let produced = self.group.produced(at, desired, observed);
        Applied {
            action,
            values: produced.values,
            owned: produced.owned,
            progress: produced.progress.or_else(|| self.group.progress(observed)),
            note: produced.note.or_else(|| self.group.note(desired, observed)),
            drift,
        }
    }

    async fn run_observe(&self, inputs: &Values) -> Result<Applied, Failure> {
        let aws = self.session()?;
        let at = Placement::of(aws);
        let desired = self.group.desired(&at, inputs)?;
        let Some(observed) = self.group.observe(aws).await? else {
            // Dependents are compared against the names and ARNs it would have.
            return Ok(Applied {
                action: Action::Unchanged,
                values: self.group.predicted(&at),
                owned: Vec::new(),
                progress: None,
                note: None,
                drift: vec![Drift::create(self.group.kind())],
            });
        };
        let drift: Vec<Drift> = G::diff(&desired, &observed)
            .iter()
            .flat_map(|change| self.group.describe(&desired, &observed, change))
            .collect();
        Ok(self.existing(&at, &desired, &observed, Action::Unchanged, drift))
    }

    async fn run_observe_removal(&self) -> Result<Vec<Drift>, Failure> {
        let aws = self.session()?;
        Ok(match self.group.observe(aws).await? {
            None => Vec::new(),
            Some(observed) => self.group.describe_removal(&observed),
        })
    }

    async fn run_delete(&self) -> Result<Removal, Failure> {
        let aws = self.session()?;
        match self.group.observe(aws).await? {
            None => Ok(Removal::Gone),
            Some(observed) => self.group.delete(aws, observed).await,
        }
    }
}

impl<G: Group> Step for Instance<G> {
    fn condition(&self) -> &str {
        &self.condition
    }
    fn kind(&self) -> &str {
        self.group.kind()
    }
    fn needs(&self) -> Vec<Key> {
        self.group.needs()
    }
    fn provides(&self) -> Vec<Key> {
        self.group.provides()
    }
    fn wanted(&self) -> bool {
        self.group.wanted()
    }
    fn apply<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>> {
        Box::pin(self.run_apply(inputs).instrument(self.span()))
    }
    fn delete(&self) -> BoxFuture<'_, Result<Removal, Failure>> {
        Box::pin(self.run_delete().instrument(self.span()))
    }
    fn observe<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>> {
        Box::pin(self.run_observe(inputs).instrument(self.span()))
    }
    fn observe_removal(&self) -> BoxFuture<'_, Result<Vec<Drift>, Failure>> {
        Box::pin(self.run_observe_removal().instrument(self.span()))
    }
}

impl<G: Group> GroupStep for Instance<G> {
    fn environment(&self) -> Option<Env> {
        self.group.environment()
    }

    fn predicted(&self, at: &Placement) -> Values {
        self.group.predicted(at)
    }

    fn plan(&self, at: &Placement, known: &Values) -> Result<serde_json::Value, Failure> {
        let inputs: Values = self
            .group
            .needs()
            .into_iter()
            .map(|k| {
                let value = known
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| format!("<{k}: known after the step that provides it>"));
                (k, value)
            })
            .collect();
        let desired = self.group.desired(at, &inputs)?;
        serde_json::to_value(&desired)
            .map_err(|e| Failure::terminal("PlanFailed", format!("cannot render: {e}")))
    }
}

/// The sessions of one reconcile: the pipeline's, and each environment's (the pipeline's own
/// when the environment is in the pipeline account).
#[derive(Clone)]
pub struct Sessions {
    pub pipeline: Result<Arc<AwsSession>, Failure>,
    pub staging: Result<Arc<AwsSession>, Failure>,
    pub production: Result<Arc<AwsSession>, Failure>,
}

impl Sessions {
    pub fn pipeline(&self) -> Result<Arc<AwsSession>, Failure> {
        self.pipeline.clone()
    }

    /// No AWS at all: for the offline plan, which only renders desired states.
    pub fn offline() -> Self {
        let none = Err(Failure::terminal(
            "Offline",
            "the offline plan makes no AWS calls",
        ));
        Self {
            pipeline: none.clone(),
            staging: none.clone(),
            production: none,
        }
    }

    pub fn environment(&self, env: Env) -> Result<Arc<AwsSession>, Failure> {
        match env {
            Env::Staging => self.staging.clone(),
            Env::Production => self.production.clone(),
        }
    }
}

/// Groups of the pipeline's own account, in no particular order (the engine orders them).
pub fn steps(ctx: &PipelineContext, sessions: &Sessions) -> Vec<Box<dyn GroupStep>> {
    let mut steps = vec![
        Instance::boxed(encryption_key::EncryptionKey::new(ctx), sessions.pipeline()),
        Instance::boxed(
            encryption_key::key_policy::KeyPolicy::new(ctx),
            sessions.pipeline(),
        ),
        Instance::boxed(artifact_store::ArtifactStore::new(ctx), sessions.pipeline()),
        Instance::boxed(
            notifications::TopicGroup::notifications(ctx),
            sessions.pipeline(),
        ),
        Instance::boxed(
            notifications::TopicGroup::approval(ctx),
            sessions.pipeline(),
        ),
        Instance::boxed(
            image_repository::ImageRepository::new(ctx),
            sessions.pipeline(),
        ),
        Instance::boxed(log_groups::LogGroups::pipeline(ctx), sessions.pipeline()),
    ];
    steps.push(Instance::boxed(
        roles::RoleSet::pipeline(ctx),
        sessions.pipeline(),
    ));
    steps.push(Instance::boxed(
        projects::BuildProject::build(ctx),
        sessions.pipeline(),
    ));
    steps.push(Instance::boxed(
        projects::BuildProject::scan(ctx),
        sessions.pipeline(),
    ));
    steps.push(Instance::boxed(
        pipeline::DeliveryPipelineGroup::new(ctx),
        sessions.pipeline(),
    ));
    steps.push(Instance::boxed(
        events::EventRules::new(ctx),
        sessions.pipeline(),
    ));
    steps.push(Instance::boxed(
        alarms::AlarmSet::new(ctx),
        sessions.pipeline(),
    ));
    for env in Env::ALL {
        steps.push(Instance::boxed(
            log_groups::LogGroups::environment(ctx, env),
            sessions.environment(env),
        ));
        steps.push(Instance::boxed(
            roles::RoleSet::environment(ctx, env),
            sessions.environment(env),
        ));
        steps.push(Instance::boxed(
            network::NetworkGroup::new(ctx, env),
            sessions.environment(env),
        ));
        steps.push(Instance::boxed(
            service::ServiceGroup::new(ctx, env),
            sessions.environment(env),
        ));
    }
    steps
}

/// Values known before any step runs.
pub fn seed(account_id: &str, region: &str) -> Values {
    Values::from([
        (keys::ACCOUNT_ID, account_id.to_string()),
        (keys::REGION, region.to_string()),
    ])
}
