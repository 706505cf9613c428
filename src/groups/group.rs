//! The contract every group of AWS resources implements ([`Group`]), the pure comparison its
//! desired state carries ([`Diff`]), and the adapter that turns a group and its session into
//! an engine step ([`Instance`]).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use tracing::Instrument;

use super::cadence::PipelineCadence;
use crate::aws::AwsSession;
use crate::desired::Env;
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
    /// Exists but not settled, known from what `create` or `update` left (e.g. a rollout under
    /// way); else [`Group::progress`] decides.
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

/// What must change, in the order to apply it, each change with its words: the words are
/// written where the change is found, so what an observe-only run shows and what an apply does
/// cannot disagree.
#[derive(Clone, Debug, PartialEq)]
pub struct Changes<C>(Vec<(C, Vec<Drift>)>);

impl<C> Default for Changes<C> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<C> Changes<C> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A change shown as one drift.
    pub fn push(&mut self, change: C, drift: Drift) {
        self.0.push((change, vec![drift]));
    }

    /// A change shown as several drifts (e.g. one per tag key).
    pub fn push_all(&mut self, change: C, drift: Vec<Drift>) {
        self.0.push((change, drift));
    }

    pub fn extend(&mut self, other: Changes<C>) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &C> {
        self.0.iter().map(|(change, _)| change)
    }

    /// Every change's words, in order.
    pub fn drift(&self) -> Vec<Drift> {
        self.0
            .iter()
            .flat_map(|(_, drift)| drift.iter().cloned())
            .collect()
    }

    /// The changes to apply, words dropped.
    pub fn into_changes(self) -> Vec<C> {
        self.0.into_iter().map(|(change, _)| change).collect()
    }
}

impl<C> FromIterator<(C, Vec<Drift>)> for Changes<C> {
    fn from_iter<I: IntoIterator<Item = (C, Vec<Drift>)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<C> std::ops::Index<usize> for Changes<C> {
    type Output = C;
    fn index(&self, index: usize) -> &C {
        &self.0[index].0
    }
}

/// Unit tests compare the changes alone: `assert_eq!(desired.diff(&observed), vec![...])`.
impl<C: PartialEq> PartialEq<Vec<C>> for Changes<C> {
    fn eq(&self, other: &Vec<C>) -> bool {
        self.0.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b)
    }
}

/// The pure comparison a desired state carries: what must change to bring `observed` to it
/// (empty: in sync). It ignores what AWS adds (defaults, reordering, tags others set).
pub trait Diff<Observed> {
    type Change: Send + Sync + Debug;
    fn diff(&self, observed: &Observed) -> Changes<Self::Change>;
}

/// A group's condition (`RolesReady`) and what it is, for events and messages ("IAM roles").
pub struct Names {
    pub condition: &'static str,
    pub kind: &'static str,
}

impl Names {
    pub const fn new(condition: &'static str, kind: &'static str) -> Self {
        Self { condition, kind }
    }

    /// The names of an instance in `env`'s account.
    fn in_environment(&self, env: Option<Env>) -> (String, String) {
        match env {
            None => (self.condition.to_string(), self.kind.to_string()),
            Some(env) => (
                format!("{}{}", env.title(), self.condition),
                format!("{} {}", env.name(), self.kind),
            ),
        }
    }
}

/// What `update` works on: the desired state, what was observed, and exactly the changes
/// `Diff::diff` found between them.
pub struct Update<'a, G: Group> {
    pub desired: &'a G::Desired,
    pub observed: &'a G::Observed,
    pub changes: Vec<ChangeOf<G>>,
}

impl<'a, G: Group> Update<'a, G> {
    pub fn new(
        desired: &'a G::Desired,
        observed: &'a G::Observed,
        changes: Vec<ChangeOf<G>>,
    ) -> Self {
        Self {
            desired,
            observed,
            changes,
        }
    }

    /// Desired, observed and the changes, for a body that names them briefly.
    pub fn parts(self) -> (&'a G::Desired, &'a G::Observed, Vec<ChangeOf<G>>) {
        (self.desired, self.observed, self.changes)
    }

    /// Every change from `observed` to `desired`.
    pub fn of(desired: &'a G::Desired, observed: &'a G::Observed) -> Self {
        Self::new(desired, observed, desired.diff(observed).into_changes())
    }
}

/// What `update` returns: the state it left (None: `produced` reads what was observed).
pub type Updated<G> = Result<Option<<G as Group>::Observed>, Failure>;

/// A group's change type.
pub type ChangeOf<G> = <<G as Group>::Desired as Diff<<G as Group>::Observed>>::Change;

/// One group of AWS resources. The group value itself holds only identity (the pipeline
/// context, the environment): I/O methods get the session, so an instance whose session
/// could not be made still has its condition, needs and provides.
///
/// Contracts: `observe` has no side effects and works from identity alone (names, tags);
/// `create` is safe to repeat after a partial failure (it finds what an interrupted create
/// left); `update` applies exactly the changes `Desired::diff` found; `delete` is safe to
/// repeat and works from identity alone, never from another step's outputs.
pub trait Group: Send + Sync + Sized + 'static {
    type Desired: Diff<Self::Observed> + Send + Sync + Serialize;
    /// What `observe` reads. Its `Default` is "nothing there yet": the default `create`
    /// applies the diff from it.
    type Observed: Send + Sync + Default;

    /// Its condition and what it is; an instance in an environment gets that environment's
    /// prefix on both (`LogGroupsReady` becomes `StagingLogGroupsReady`).
    fn names(&self) -> Names;
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
    /// Reads what AWS has (None: nothing of this group exists).
    fn observe(
        &self,
        aws: &AwsSession,
    ) -> impl Future<Output = Result<Option<Self::Observed>, Failure>> + Send;
    /// `observe` when the upstream values are known (a reconcile or a preview, not a
    /// deletion): a group that would otherwise read again what an upstream step just read
    /// (the key policy step resolving the key's alias) takes it from `inputs`.
    fn observe_with(
        &self,
        aws: &AwsSession,
        _inputs: &Values,
    ) -> impl Future<Output = Result<Option<Self::Observed>, Failure>> + Send {
        self.observe(aws)
    }
    /// What the group produces without reading AWS, when it may be checked less often than
    /// every resync (`cadence.rs`): between its whole checks a resync trusts the last one and
    /// takes its outputs and inventory from the desired state. None (the default): it is read
    /// every resync.
    fn unobserved(&self, _at: &Placement, _desired: &Self::Desired) -> Option<Produced> {
        None
    }
    /// Makes the group's resources. Default: the update from nothing (right for collections
    /// and for resources whose creation is one call among the changes).
    fn create(
        &self,
        aws: &AwsSession,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Produced, Failure>> + Send {
        async move {
            let nothing = Self::Observed::default();
            let left = self.update(aws, Update::of(desired, &nothing)).await?;
            Ok(self.produced(
                &Placement::of(aws),
                desired,
                left.as_ref().unwrap_or(&nothing),
            ))
        }
    }
    /// Applies exactly `changes`. Returns the state it left when `produced` must see what the
    /// update made (values AWS assigns, such as EC2 IDs); None: `produced` reads `observed`.
    fn update(
        &self,
        aws: &AwsSession,
        update: Update<'_, Self>,
    ) -> impl Future<Output = Updated<Self>> + Send;
    /// What deletion works from: by default what `observe` reads. A group whose resources can
    /// exist where `observe` does not look (a KMS key made before its alias, by a reconcile
    /// that crashed or lost CreateKey's reply) finds them here too, so none is left behind.
    fn observe_for_deletion(
        &self,
        aws: &AwsSession,
    ) -> impl Future<Output = Result<Option<Self::Observed>, Failure>> + Send {
        self.observe(aws)
    }
    fn delete(
        &self,
        aws: &AwsSession,
        observed: Self::Observed,
    ) -> impl Future<Output = Result<Removal, Failure>> + Send;
    /// Pure: what `delete` would remove, in words. None (the default): the whole group, named
    /// by its kind.
    fn removal(&self, _observed: &Self::Observed) -> Option<Vec<Drift>> {
        None
    }
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
    kind: String,
    session: Result<Arc<AwsSession>, Failure>,
    /// When a group checked less often than every resync was last checked (None: always read).
    cadence: Option<PipelineCadence>,
}

impl<G: Group> Instance<G> {
    pub fn boxed(
        group: G,
        session: Result<Arc<AwsSession>, Failure>,
        cadence: Option<PipelineCadence>,
    ) -> Box<dyn GroupStep> {
        let (condition, kind) = group.names().in_environment(group.environment());
        Box::new(Self {
            condition,
            kind,
            group,
            session,
            cadence,
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

    /// The session, where the resources live, and the desired state: what apply and preview
    /// both start from.
    fn prepare(&self, inputs: &Values) -> Result<(&AwsSession, Placement, G::Desired), Failure> {
        let aws = self.session()?;
        let at = Placement::of(aws);
        let desired = self.group.desired(&at, inputs)?;
        Ok((aws, at, desired))
    }

    async fn run_apply(&self, inputs: &Values) -> Result<Applied, Failure> {
        let (aws, at, desired) = self.prepare(inputs)?;
        // A group checked less often than every resync, between its checks: trust the last.
        let sparse = self
            .cadence
            .as_ref()
            .zip(self.group.unobserved(&at, &desired));
        let cadence = sparse.as_ref().map(|(cadence, _)| *cadence);
        if let Some((cadence, produced)) = sparse
            && cadence.fresh(&self.condition, &desired)
        {
            return Ok(Applied {
                action: Action::Unchanged,
                values: produced.values,
                owned: produced.owned,
                progress: None,
                note: None,
                drift: Vec::new(),
            });
        }
        let applied = self.check_whole(aws, &at, &desired, inputs).await?;
        if let Some(cadence) = cadence
            && applied.progress.is_none()
        {
            cadence.checked(&self.condition, &desired);
        }
        Ok(applied)
    }

    /// Reads the group and corrects what differs from `desired`.
    async fn check_whole(
        &self,
        aws: &AwsSession,
        at: &Placement,
        desired: &G::Desired,
        inputs: &Values,
    ) -> Result<Applied, Failure> {
        let Some(observed) = self.group.observe_with(aws, inputs).await? else {
            let produced = self.group.create(aws, desired).await?;
            return Ok(Applied {
                action: Action::Created,
                values: produced.values,
                owned: produced.owned,
                progress: produced.progress,
                note: produced.note,
                drift: Vec::new(),
            });
        };
        let changes = desired.diff(&observed);
        if changes.is_empty() {
            return Ok(self.existing(at, desired, &observed, Action::Unchanged, Vec::new()));
        }
        tracing::debug!(kind = %self.kind, changes = ?changes.iter().collect::<Vec<_>>(), "updating");
        let left = self
            .group
            .update(aws, Update::new(desired, &observed, changes.into_changes()))
            .await?;
        let observed = left.unwrap_or(observed);
        Ok(self.existing(at, desired, &observed, Action::Updated, Vec::new()))
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

    async fn run_preview(&self, inputs: &Values) -> Result<Applied, Failure> {
        let (aws, at, desired) = self.prepare(inputs)?;
        let Some(observed) = self.group.observe_with(aws, inputs).await? else {
            // Dependents are compared against the names and ARNs it would have.
            return Ok(Applied {
                action: Action::Unchanged,
                values: self.group.predicted(&at),
                owned: Vec::new(),
                progress: None,
                note: None,
                drift: vec![Drift::create(&self.kind)],
            });
        };
        let drift = desired.diff(&observed).drift();
        Ok(self.existing(&at, &desired, &observed, Action::Unchanged, drift))
    }

    async fn run_preview_removal(&self) -> Result<Vec<Drift>, Failure> {
        let aws = self.session()?;
        Ok(match self.group.observe(aws).await? {
            None => Vec::new(),
            Some(observed) => self
                .group
                .removal(&observed)
                .unwrap_or_else(|| vec![Drift::delete(&self.kind)]),
        })
    }

    async fn run_delete(&self) -> Result<Removal, Failure> {
        let aws = self.session()?;
        match self.group.observe_for_deletion(aws).await? {
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
        &self.kind
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
    fn preview<'a>(&'a self, inputs: &'a Values) -> BoxFuture<'a, Result<Applied, Failure>> {
        Box::pin(self.run_preview(inputs).instrument(self.span()))
    }
    fn preview_removal(&self) -> BoxFuture<'_, Result<Vec<Drift>, Failure>> {
        Box::pin(self.run_preview_removal().instrument(self.span()))
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
