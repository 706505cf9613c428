//! kube-runtime wiring: watches DeliveryPipelines, runs the engine, writes status, events and
//! metrics, and owns the finalizer and the requeue policy.

mod executions;
mod outputs;
mod sessions;
pub mod shard;
mod status;
pub mod tenants;

pub use tenants::Tenants;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::api::{DeletionPolicy, DeliveryPipeline, FINALIZER, ManagementPolicy};
use crate::aws::{AwsFactory, AwsSession};
use crate::desired::{Env, PipelineContext, Tenancy};
use crate::engine::{self, Action, Class, Failure, Outcome, Removal, Report};
use crate::groups::cadence::{Cadence, PipelineCadence};
use crate::groups::{self, GroupStep};
use crate::metrics::Metrics;

/// Annotation whose change forces a reconcile (drift check) without a spec change.
pub const RECONCILE_REQUEST_ANNOTATION: &str = "delivery-operator.dev/reconcile-requested-at";

#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Drift check interval for pipelines that are in sync.
    pub resync_interval: Duration,
    /// How often a running execution is looked at (its two calls only, between drift checks).
    pub execution_poll: Duration,
    /// Drift check interval while an execution of a Ready pipeline is in progress: polling the
    /// execution stays two calls, and the whole check waits this long instead of
    /// `resync_interval` (a spec change still checks at once).
    pub drift_check_while_running: Duration,
    /// Retry interval for terminal errors (bad spec, AccessDenied): slow, since a human must act.
    pub terminal_retry: Duration,
    /// First retry of a transient error; doubles per consecutive failure up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Name of this operator instance in events (the pod name in a cluster).
    pub instance: String,
    /// Pipelines reconciled at once (per watched namespace); bounds the AWS request rate.
    pub max_concurrent_reconciles: u16,
    /// How long a step may wait for IAM to show a principal before it is an error (a
    /// principal that never appears is not propagation).
    pub iam_propagation_limit: Duration,
    /// After a stop signal, how long the reconciles in flight may take to finish.
    pub stop_grace: Duration,
    /// The longest one reconcile may take before it is stopped and retried.
    pub reconcile_deadline: Duration,
    /// How long a whole check of a pipeline's IAM roles is trusted by the resyncs after it
    /// (IAM is global and throttled account-wide); zero: every resync reads IAM.
    pub iam_check_interval: Duration,
}

pub struct Context {
    pub client: Client,
    pub aws: AwsFactory,
    /// The administrators' policies and the namespaces' labels.
    pub tenants: Arc<Tenants>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub settings: Settings,
    failures: Mutex<HashMap<String, u32>>,
    /// Pipelines whose last reconcile ended with an AWS or spec error that was reported in
    /// status (the reconcile itself returns Ok so the status write happens).
    degraded: Mutex<HashMap<String, bool>>,
    /// When each pipeline was last checked whole, and for which object (its reconcile trigger):
    /// until the next check is due, a wake-up for a running execution polls only that.
    full_checks: Mutex<HashMap<String, FullCheck>>,
    /// Since when each (pipeline, step) has been waiting for IAM propagation.
    iam_waits: Mutex<HashMap<String, Instant>>,
    /// Pipelines this process has looked at: only the first look may trust a `verifiedAt`
    /// another process (or this one before a restart) wrote.
    seen: Mutex<std::collections::HashSet<String>>,
    /// When the groups checked less often than every resync (IAM) were last checked whole.
    cadence: Cadence,
}

#[derive(Clone, Copy)]
struct FullCheck {
    trigger: Option<u64>,
    checked_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Aws(#[from] Failure),
    #[error("the group registry is inconsistent: {0}")]
    Graph(#[from] engine::GraphError),
    #[error("deletion in progress: {0}")]
    DeletionPending(String),
    #[error("object has no namespace")]
    NoNamespace,
    #[error("finalizer handling failed: {0}")]
    Finalizer(String),
    /// The pipeline is paused: deletion waits (the finalizer stays) until it is resumed.
    #[error("the pipeline is paused; deletion waits until {PAUSED_ANNOTATION} is removed")]
    Paused,
}

/// `delivery-operator.dev/abandon-unreachable: "true"` on a pipeline being deleted: what the
/// operator cannot reach (an environment whose role cannot be assumed or whose account is
/// closed; the pipeline's own credentials gone) or AWS refuses to delete (AccessDenied, or any
/// other error that a retry cannot change) is left in AWS, and everything else is deleted.
/// Without it such a deletion waits, and its condition names the blocker and this annotation.
pub const ABANDON_ANNOTATION: &str = "delivery-operator.dev/abandon-unreachable";

fn is_abandoning(dp: &DeliveryPipeline) -> bool {
    dp.annotations()
        .get(ABANDON_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The Warning event that says what a deletion left in AWS.
async fn abandoned(dp: &DeliveryPipeline, ctx: &Context, message: String) {
    ctx.event(dp, EventType::Warning, "Abandoned", "Delete", message)
        .await;
}

/// The one command that releases a deletion blocked by what cannot be reached.
fn abandon_command(dp: &DeliveryPipeline) -> String {
    format!(
        "kubectl annotate deliverypipeline {} -n {} {ABANDON_ANNOTATION}=true",
        dp.name_any(),
        dp.namespace().unwrap_or_default()
    )
}

/// `delivery-operator.dev/paused: "true"`: the operator makes no AWS calls for the pipeline
/// (during an incident, or while someone changes AWS by hand) until the annotation goes.
pub const PAUSED_ANNOTATION: &str = "delivery-operator.dev/paused";

fn is_observe_only(dp: &DeliveryPipeline) -> bool {
    dp.spec.management_policy == ManagementPolicy::ObserveOnly
}

fn is_paused(dp: &DeliveryPipeline) -> bool {
    dp.annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

impl Context {
    pub fn new(
        client: Client,
        aws: AwsFactory,
        tenants: Arc<Tenants>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "delivery-operator".into(),
                instance: Some(settings.instance.clone()),
            },
        );
        Self {
            client,
            aws,
            tenants,
            metrics,
            recorder,
            failures: Mutex::new(HashMap::new()),
            degraded: Mutex::new(HashMap::new()),
            full_checks: Mutex::new(HashMap::new()),
            iam_waits: Mutex::new(HashMap::new()),
            seen: Mutex::new(std::collections::HashSet::new()),
            cadence: Cadence::new(settings.iam_check_interval),
            settings,
        }
    }

    /// Jittered exponential backoff for the n-th consecutive transient failure of `key`.
    fn backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_string()).or_insert(0);
                *n += 1;
                *n
            })
            .unwrap_or(1);
        let exp = self
            .settings
            .base_backoff
            .saturating_mul(1u32 << n.min(16).saturating_sub(1));
        let capped = exp.min(self.settings.max_backoff);
        let jitter = rand::rng().random_range(0.5..1.0);
        capped.mul_f64(jitter)
    }

    /// Turns a wait for IAM propagation that outlasted `iam_propagation_limit` into an error,
    /// and forgets the waits of `key` that ended.
    fn escalate_long_iam_waits(&self, key: &str, report: &mut Report) {
        let Ok(mut waits) = self.iam_waits.lock() else {
            return;
        };
        let now = Instant::now();
        let prefix = format!("{key}/");
        let mut waiting = std::collections::HashSet::new();
        for step in &mut report.steps {
            let Outcome::Failed(failure) = &mut step.outcome else {
                continue;
            };
            if failure.reason != crate::aws::WAITING_FOR_IAM {
                continue;
            }
            let id = format!("{prefix}{}/{}", step.condition, step.kind);
            let since = *waits.entry(id.clone()).or_insert(now);
            waiting.insert(id);
            if let Some(escalated) =
                unseen_principal_error(failure, now - since, self.settings.iam_propagation_limit)
            {
                *failure = escalated;
            }
        }
        waits.retain(|id, _| !id.starts_with(&prefix) || waiting.contains(id));
    }

    fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    fn mark_degraded(&self, key: &str) {
        if let Ok(mut d) = self.degraded.lock() {
            d.insert(key.to_string(), true);
        }
    }

    fn take_degraded(&self, key: &str) -> bool {
        self.degraded
            .lock()
            .ok()
            .and_then(|mut d| d.remove(key))
            .unwrap_or(false)
    }

    fn checked_whole(&self, key: &str, dp: &DeliveryPipeline) {
        if let Ok(mut checks) = self.full_checks.lock() {
            checks.insert(
                key.to_string(),
                FullCheck {
                    trigger: reconcile_trigger(dp),
                    checked_at: Instant::now(),
                },
            );
        }
    }

    /// Whether `dp` was checked whole as it is now and its next whole check is not yet due:
    /// the time left until it is. While an execution runs, checks are `drift_check_while_running`
    /// apart instead of `resync_interval`.
    fn between_whole_checks(
        &self,
        key: &str,
        dp: &DeliveryPipeline,
        running: bool,
    ) -> Option<Duration> {
        let checks = self.full_checks.lock().ok()?;
        let check = checks.get(key)?;
        let interval = if running {
            self.settings
                .drift_check_while_running
                .max(self.settings.resync_interval)
        } else {
            self.settings.resync_interval
        };
        let left = (check.checked_at + interval).checked_duration_since(Instant::now())?;
        (check.trigger == reconcile_trigger(dp)).then_some(left)
    }

    /// A policy or namespace change: the next wake-up checks the pipeline whole, IAM too.
    fn forget_whole_check(&self, key: &str) {
        if let Ok(mut checks) = self.full_checks.lock() {
            checks.remove(key);
        }
        self.cadence.forget(key);
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key.to_string());
        }
    }

    /// A reconcile for a changed object (spec, annotations such as a reconcile request) checks
    /// every group, IAM too: only a plain resync trusts IAM's last check.
    fn forget_cadence_if_changed(&self, key: &str, dp: &DeliveryPipeline) {
        let unchanged = self.full_checks.lock().ok().is_some_and(|checks| {
            checks
                .get(key)
                .is_some_and(|check| check.trigger == reconcile_trigger(dp))
        });
        if !unchanged {
            self.cadence.forget(key);
        }
    }

    /// This process's first look at a pipeline verified whole, as it is now, less than a
    /// resync interval ago (by an earlier process or another replica): the time until its
    /// next check is due, which it waits without an AWS call. A restart costs nothing.
    fn verified_before_this_process(&self, key: &str, dp: &DeliveryPipeline) -> Option<Duration> {
        let first = self.seen.lock().ok()?.insert(key.to_string());
        if !first {
            return None;
        }
        let left = status::verified_within(dp, self.settings.resync_interval, chrono::Utc::now())?;
        // The whole check it stands for, so a running execution's polls and the next
        // resync count from it.
        if let Ok(mut checks) = self.full_checks.lock() {
            let age = self.settings.resync_interval.saturating_sub(left);
            checks.insert(
                key.to_string(),
                FullCheck {
                    trigger: reconcile_trigger(dp),
                    checked_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
                },
            );
        }
        Some(left)
    }

    async fn event(
        &self,
        dp: &DeliveryPipeline,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(event_note(note)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &dp.object_ref(&())).await {
            warn!(error = %e, "could not publish event");
        }
    }
}

/// The API server refuses an event whose note is longer than 1024 bytes (events.k8s.io/v1):
/// a longer one is cut at a character boundary and says so.
fn event_note(note: String) -> String {
    const LIMIT: usize = 1024;
    if note.len() <= LIMIT {
        return note;
    }
    let marker = " [...]";
    let mut end = LIMIT - marker.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &note[..end])
}

/// What decides whether a watch event is worth a reconcile: spec changes (generation),
/// deletion, finalizers, the reconcile-request and pause annotations. Status-only changes are
/// not, so writing status never triggers another reconcile.
fn reconcile_trigger(dp: &DeliveryPipeline) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dp.meta().generation.hash(&mut h);
    dp.meta().deletion_timestamp.is_some().hash(&mut h);
    dp.finalizers().hash(&mut h);
    // The abandon annotation releases a deletion that waits slowly: it must wake it at once.
    for annotation in [
        RECONCILE_REQUEST_ANNOTATION,
        PAUSED_ANNOTATION,
        ABANDON_ANNOTATION,
    ] {
        dp.annotations().get(annotation).hash(&mut h);
    }
    Some(h.finish())
}

/// Which pipelines a controller reconciles: all it watches, or one shard of them.
#[derive(Clone)]
pub struct Scope {
    shard: Option<shard::Shard>,
    /// The client its watches go through (for a shard, one that asks the API server for the
    /// shard's objects only).
    watch: Client,
}

impl Scope {
    pub fn all(client: Client) -> Self {
        Self {
            shard: None,
            watch: client,
        }
    }

    pub fn shard(shard: shard::Shard, watch: Client) -> Self {
        Self {
            shard: Some(shard),
            watch,
        }
    }

    /// Whether a watch event is this scope's: the API server filters a shard's watch, and
    /// this filters again for a server that does not (a shard selector it ignores).
    fn admits(&self, event: &watcher::Event<DeliveryPipeline>) -> bool {
        let Some(shard) = self.shard else {
            return true;
        };
        match event {
            watcher::Event::Apply(dp)
            | watcher::Event::InitApply(dp)
            | watcher::Event::Delete(dp) => dp.uid().is_some_and(|uid| shard.contains(&uid)),
            watcher::Event::Init | watcher::Event::InitDone => true,
        }
    }
}

/// What the controller's cache keeps of a pipeline: what triggers a reconcile and what tenancy
/// reads (metadata, spec), not the status (its inventory and conditions are most of the
/// object, ~16 KB of ~18 KB) nor the managed fields and kubectl's last-applied copy of the
/// spec. Each reconcile reads the whole object fresh (`reconcile`), so at 1,000 pipelines the
/// cache holds a few MiB instead of tens.
fn slim(dp: &mut DeliveryPipeline) {
    dp.status = None;
    dp.metadata.managed_fields = None;
    if let Some(annotations) = dp.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Runs until `shutdown` resolves, then lets the reconciles in flight finish. One controller
/// per watched namespace (or one for all), so the operator needs RBAC only where it works.
/// Dropping the returned future instead stops every reconcile at its next await, which is
/// what losing the leader lease (or a shard's lease) does.
pub async fn run<S>(ctx: Arc<Context>, scope: Scope, shutdown: S)
where
    S: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let apis: Vec<Api<DeliveryPipeline>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(scope.watch.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(scope.watch.clone(), ns))
            .collect()
    };
    let cluster_wide = ctx.settings.namespaces.is_empty();
    let mut readers = Vec::new();
    let controllers: Vec<_> = apis
        .into_iter()
        .map(|api| {
            let (reader, writer) = reflector::store();
            readers.push(reader.clone());
            let in_scope = scope.clone();
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .try_filter(move |event| std::future::ready(in_scope.admits(event)))
                .modify(slim)
                .reflect(writer)
                .applied_objects()
                .predicate_filter(reconcile_trigger, Default::default());
            let affected = affected_by_tenancy_changes(ctx.clone(), reader.clone());
            Controller::for_stream(stream, reader)
                .reconcile_on(affected)
                .with_config(
                    kube::runtime::controller::Config::default()
                        .concurrency(ctx.settings.max_concurrent_reconciles),
                )
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|result| async move {
                    if let Err(e) = result {
                        warn!(error = %e, "reconcile failed");
                    }
                })
        })
        .collect();
    // Only a cluster-wide operator sees every pipeline a policy governs; of shards, the
    // holder of the first counts them, from a watch of its own over every shard.
    let reach = async {
        match (readers.pop(), scope.shard) {
            (Some(pipelines), None) if cluster_wide => {
                ctx.tenants
                    .publish_reach(ctx.client.clone(), pipelines, POLICY_STATUS_INTERVAL)
                    .await
            }
            (_, Some(shard)) if cluster_wide && shard.index() == 0 => {
                let (pipelines, writer) = reflector::store();
                let feed = watcher(
                    Api::<DeliveryPipeline>::all(ctx.client.clone()),
                    watcher::Config::default(),
                )
                .default_backoff()
                .reflect(writer)
                .for_each(|_| std::future::ready(()));
                let publish = ctx.tenants.publish_reach(
                    ctx.client.clone(),
                    pipelines,
                    POLICY_STATUS_INTERVAL,
                );
                futures::future::join(feed, publish).await;
            }
            _ => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        () = reach => {}
    }
}

/// How often a cluster-wide operator refreshes the DeliveryPolicies' counts.
const POLICY_STATUS_INTERVAL: Duration = Duration::from_secs(15);

/// The pipelines (of those this controller watches) in the namespaces a policy or namespace
/// label change affects: they are admitted or refused again.
fn affected_by_tenancy_changes(
    ctx: Arc<Context>,
    pipelines: reflector::Store<DeliveryPipeline>,
) -> impl futures::Stream<Item = reflector::ObjectRef<DeliveryPipeline>> + Send + 'static {
    let changes = ctx.tenants.changes();
    futures::stream::unfold(changes, |mut changes| async move {
        loop {
            match changes.recv().await {
                Ok(namespaces) => return Some((namespaces, changes)),
                // Missed changes: nothing names them now, and the resync looks again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |namespaces| {
        let refs: Vec<_> = pipelines
            .state()
            .iter()
            .filter(|dp| dp.namespace().is_some_and(|ns| namespaces.contains(&ns)))
            .map(|dp| {
                ctx.forget_whole_check(&key_of(dp));
                reflector::ObjectRef::from_obj(dp.as_ref())
            })
            .collect();
        futures::stream::iter(refs)
    })
}

fn key_of(dp: &DeliveryPipeline) -> String {
    format!("{}/{}", dp.namespace().unwrap_or_default(), dp.name_any())
}

async fn reconcile(cached: Arc<DeliveryPipeline>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let ns = cached.namespace().ok_or(Error::NoNamespace)?;
    let key = key_of(&cached);
    // `pipeline`, not `name`: JSON logs put each span's own name under "name".
    let span = info_span!("reconcile", pipeline = %key, namespace = %ns, generation = cached.meta().generation);
    async move {
        let started = Instant::now();
        let api: Api<DeliveryPipeline> = Api::namespaced(ctx.client.clone(), &ns);
        // The cache keeps no status (`slim`): the reconcile works on the object as stored.
        let Some(dp) = api.get_opt(&cached.name_any()).await? else {
            return Ok(Requeue::await_change());
        };
        let dp = Arc::new(dp);
        let result = finalizer(&api, FINALIZER, dp, |event| async {
            match event {
                FinalizerEvent::Apply(dp) => apply_within_deadline(&dp, &api, &ctx).await,
                FinalizerEvent::Cleanup(dp) => cleanup(&dp, &api, &ctx).await,
            }
        })
        .await;
        let (label, out) = match result {
            Ok(action) if ctx.take_degraded(&key) => ("error", Ok(action)),
            Ok(action) => ("ok", Ok(action)),
            Err(
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e),
            ) => ("error", Err(e)),
            Err(
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e),
            ) => ("error", Err(Error::Kube(e))),
            Err(other) => ("error", Err(Error::Finalizer(other.to_string()))),
        };
        ctx.metrics
            .reconciled(label, started.elapsed().as_secs_f64());
        out
    }
    .instrument(span)
    .await
}

fn error_policy(dp: Arc<DeliveryPipeline>, error: &Error, ctx: Arc<Context>) -> Requeue {
    if matches!(error, Error::Paused) {
        // Removing the annotation changes the object, which wakes the controller.
        return Requeue::await_change();
    }
    let after = match error {
        Error::DeletionPending(_) => Duration::from_secs(5),
        Error::Aws(f) => requeue_after(f, &ctx, &key_of(&dp)),
        _ => ctx.backoff(&key_of(&dp)),
    };
    warn!(pipeline = %key_of(&dp), error = %error, retry_in = ?after, "reconcile error");
    Requeue::requeue(after)
}

/// The region a pipeline lives in: the spec's, else the one recorded when it was first
/// reconciled, else the operator's own.
fn region_of(dp: &DeliveryPipeline, aws: &AwsFactory) -> Option<String> {
    dp.spec
        .region
        .clone()
        .or_else(|| dp.status.as_ref().and_then(|s| s.outputs.region.clone()))
        .or_else(|| aws.default_region())
}

/// Nothing could be attempted in AWS (no region, unusable credentials, a moved account or
/// region): say so in an event and in status, and retry according to the error's class.
async fn not_attempted(
    dp: &DeliveryPipeline,
    api: &Api<DeliveryPipeline>,
    ctx: &Context,
    key: &str,
    err: Failure,
) -> Result<Requeue, Error> {
    ctx.event(
        dp,
        EventType::Warning,
        &err.reason,
        "Reconcile",
        err.message.clone(),
    )
    .await;
    status::write(api, dp, status::failed_before_aws(dp, &err)).await?;
    ctx.mark_degraded(key);
    Ok(Requeue::requeue(requeue_after(&err, ctx, key)))
}

/// A pipeline's resources stay where they were first made: credentials that now resolve to
/// another account, or a region added that differs from the recorded one, would build a second
/// pipeline and orphan the first.
fn placement_conflict(dp: &DeliveryPipeline, account_id: &str, region: &str) -> Option<Failure> {
    let recorded = &dp.status.as_ref()?.outputs;
    if let Some(recorded_account) = recorded.account_id.as_deref().filter(|a| *a != account_id) {
        return Some(Failure::terminal(
            "AccountChanged",
            format!(
                "this pipeline's AWS resources are in account {recorded_account}, but its credentials now resolve to account {account_id}; restore spec.credentials, or create a new DeliveryPipeline for the other account"
            ),
        ));
    }
    if let Some(recorded_region) = recorded.region.as_deref().filter(|r| *r != region) {
        return Some(Failure::terminal(
            "RegionChanged",
            format!(
                "this pipeline's AWS resources are in {recorded_region}, but spec.region is {region}; set spec.region to {recorded_region}, or create a new DeliveryPipeline for {region}"
            ),
        ));
    }
    None
}

/// Every group instance of the pipeline, each with the session of the account it lives in
/// (an environment whose role cannot be assumed carries that failure instead), and the
/// environments that cannot be reached, with why.
async fn group_steps(
    dp: &DeliveryPipeline,
    aws: &AwsFactory,
    tenancy: &Tenancy,
    region: &str,
    pipeline: Arc<AwsSession>,
    cadence: Option<&PipelineCadence>,
) -> (Vec<Box<dyn GroupStep>>, Vec<(Env, Failure)>) {
    let pctx = PipelineContext::of(dp, &pipeline.account_id, region).governed(tenancy.clone());
    let sessions = sessions::all(aws, dp, origin(dp, tenancy), region, pipeline)
        .await
        .for_one_reconcile();
    let unreachable = Env::ALL
        .into_iter()
        .filter_map(|env| sessions.of(Some(env)).err().map(|e| (env, e)))
        .collect();
    (
        groups::steps(&pctx, &|env| sessions.of(env), cadence),
        unreachable,
    )
}

/// Where the pipeline's sessions come from (its namespace, the cluster).
fn origin<'a>(dp: &'a DeliveryPipeline, tenancy: &'a Tenancy) -> sessions::Origin<'a> {
    sessions::Origin {
        cluster_id: &tenancy.cluster_id,
        namespace: dp.metadata.namespace.as_deref().unwrap_or_default(),
    }
}

/// What one run works with: the pipeline account's session, the values the run starts from,
/// and one step per group instance.
struct Prepared {
    pipeline: Arc<AwsSession>,
    seed: engine::Values,
    steps: Vec<Box<dyn GroupStep>>,
}

/// The region, the pipeline's session (checked against where its resources were recorded)
/// and the steps; a failure here means nothing in AWS could be attempted.
async fn prepare(
    dp: &DeliveryPipeline,
    aws: &AwsFactory,
    admitted: &tenants::Admitted,
    cadence: Option<&PipelineCadence>,
) -> Result<Prepared, Failure> {
    let region = region_of(dp, aws).ok_or_else(|| {
        Failure::terminal(
            "RegionUnknown",
            "spec.region is not set and the operator has no default region; set spec.region or AWS_REGION for the operator",
        )
    })?;
    let tenancy = &admitted.tenancy;
    let pipeline = sessions::pipeline(aws, dp, origin(dp, tenancy), &region).await?;
    if let Some(err) = placement_conflict(dp, &pipeline.account_id, &region) {
        return Err(err);
    }
    admitted
        .guardrails
        .admit_accounts(&pipeline.account_id, &dp.spec)
        .map_err(|v| refusal(&v))?;
    let seed = groups::seed(&pipeline.account_id, &region);
    let (steps, _) = group_steps(dp, aws, tenancy, &region, pipeline.clone(), cadence).await;
    Ok(Prepared {
        pipeline,
        seed,
        steps,
    })
}

/// What a reconcile of `dp` would change in AWS now, reading only (`delivery-operator diff`).
/// `dp` may carry the live object's status: it supplies the recorded region and the tag keys
/// the operator has applied, as a reconcile would use them.
pub async fn preview(
    dp: &DeliveryPipeline,
    aws: &AwsFactory,
    admitted: &tenants::Admitted,
) -> Result<Report, Error> {
    let Prepared { seed, steps, .. } = prepare(dp, aws, admitted, None).await?;
    Ok(engine::preview(&steps, seed).await?)
}

/// Events for what a run did: one Normal event per kind of change (created, updated, deleted)
/// naming every resource it changed, and one per step for drift left in place and for errors;
/// nothing for steps that are unchanged or still in progress. One event per change and not per
/// step: creating a pipeline changes some twenty groups, and at a thousand pipelines twenty
/// events each would be most of what the API server stores and the recorder keeps.
async fn publish_events(dp: &DeliveryPipeline, ctx: &Context, report: &Report) {
    // (reason, action, what was done to the kinds listed)
    let mut changed: Vec<(&str, &str, Vec<&str>)> = vec![
        ("Created", "Create", Vec::new()),
        ("Updated", "Update", Vec::new()),
        ("Deleted", "Delete", Vec::new()),
    ];
    for step in &report.steps {
        let change = match &step.outcome {
            Outcome::Applied(a) if a.action == Action::Created => Some(0),
            Outcome::Applied(a) if a.action == Action::Updated => Some(1),
            Outcome::Removed(Removal::Gone) if !step.wanted => Some(2),
            _ => None,
        };
        if let Some(i) = change {
            changed[i].2.push(&step.kind);
            continue;
        }
        let (type_, reason, verb, note) = match &step.outcome {
            Outcome::Applied(a) if !a.drift.is_empty() => (
                EventType::Normal,
                "Drifted".to_string(),
                "Observe",
                format!(
                    "{}: {} difference(s) from the spec, not corrected (managementPolicy is ObserveOnly)",
                    step.kind,
                    a.drift.len()
                ),
            ),
            Outcome::Kept(drift) => (
                EventType::Normal,
                "Drifted".to_string(),
                "Observe",
                format!(
                    "{}: the spec no longer asks for it; left in place ({} resource(s); managementPolicy is ObserveOnly)",
                    step.kind,
                    drift.len()
                ),
            ),
            Outcome::Failed(f) if f.is_error() => {
                warn!(resource = %step.kind, reason = %f.reason, message = %f.message, "group failed");
                (
                    EventType::Warning,
                    f.reason.clone(),
                    "Reconcile",
                    format!("{}: {}", step.kind, f.message),
                )
            }
            _ => continue,
        };
        info!(resource = %step.kind, %reason, "{note}");
        ctx.event(
            dp,
            type_,
            &reason,
            &action_name(verb, &step.condition),
            note,
        )
        .await;
    }
    for (reason, action, kinds) in changed {
        if kinds.is_empty() {
            continue;
        }
        let kinds = kinds.join(", ");
        let note = match reason {
            "Updated" => format!("updated {kinds} to match the spec"),
            "Deleted" => format!("deleted {kinds}: the spec no longer asks for them"),
            _ => format!("created {kinds}"),
        };
        info!(%reason, "{note}");
        ctx.event(dp, EventType::Normal, reason, action, note).await;
    }
}

/// `apply`, cut short at `settings.reconcile_deadline`: every AWS call is bounded, but a long
/// chain of dependent steps, each near its own timeout, must not hold a worker for longer. A
/// reconcile cut short says so in `Synced` and is retried with backoff; each step is idempotent,
/// so the retry goes on from what AWS has.
async fn apply_within_deadline(
    dp: &DeliveryPipeline,
    api: &Api<DeliveryPipeline>,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let deadline = ctx.settings.reconcile_deadline;
    match tokio::time::timeout(deadline, apply(dp, api, ctx)).await {
        Ok(result) => result,
        Err(_) => {
            let cut = Failure::retryable(
                "ReconcileDeadlineExceeded",
                format!(
                    "the reconcile did not finish within {} s (--reconcile-deadline-seconds) and was stopped; it is retried, going on from what AWS has",
                    deadline.as_secs()
                ),
            );
            status::write(api, dp, status::not_synced(dp, &cut)).await?;
            Err(Error::Aws(cut))
        }
    }
}

async fn apply(
    dp: &DeliveryPipeline,
    api: &Api<DeliveryPipeline>,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let key = key_of(dp);
    if is_paused(dp) {
        status::write(api, dp, status::paused(dp, false)).await?;
        return Ok(Requeue::await_change());
    }
    // admission -> context -> sessions -> engine run -> one status computation -> one write
    let admitted = match admit(dp, ctx).await {
        Ok(admitted) => admitted,
        Err(err) => return not_attempted(dp, api, ctx, &key, err).await,
    };
    if let Some(left) = ctx.verified_before_this_process(&key, dp) {
        info!(next_check_in = ?left, "verified whole within the resync interval; no AWS call until then");
        return Ok(Requeue::requeue(left));
    }
    if let Some(requeue) = poll_running_execution(dp, api, ctx, &key, &admitted).await? {
        return Ok(requeue);
    }
    ctx.forget_cadence_if_changed(&key, dp);
    let cadence = ctx.cadence.of(&key);
    let Prepared {
        pipeline,
        seed,
        steps,
    } = match prepare(dp, &ctx.aws, &admitted, Some(&cadence)).await {
        Ok(prepared) => prepared,
        Err(err) => return not_attempted(dp, api, ctx, &key, err).await,
    };
    let (report, mut status) = if is_observe_only(dp) {
        let report = engine::preview(&steps, seed).await?;
        let status = status::after_observe(dp, &report);
        (report, status)
    } else {
        let mut report = engine::apply(&steps, seed).await?;
        ctx.escalate_long_iam_waits(&key, &mut report);
        let status = status::after_apply(dp, &report);
        (report, status)
    };
    status::compliant(dp, &mut status, &admitted.guardrails.policies);
    publish_events(dp, ctx, &report).await;
    let mut next = next_look(&report, ctx, &key);
    if let Some(name) = report.values.get(&groups::keys::PIPELINE_NAME) {
        match executions::last(&pipeline, name).await {
            Ok(last) => {
                if last.as_ref().is_some_and(executions::in_progress) {
                    next = next.min(ctx.settings.execution_poll);
                }
                status.last_execution = last;
            }
            // The executions are for people to see; the pipeline itself is in sync.
            Err(e) => {
                tracing::warn!(reason = %e.reason, message = %e.message, "reading the last execution failed")
            }
        }
    }
    if let Some(name) = dp
        .spec
        .outputs
        .as_ref()
        .and_then(|o| o.config_map_name.as_deref())
    {
        match outputs::publish(&ctx.client, dp, name, &status.outputs).await {
            Ok(()) => status::outputs_published(dp, &mut status, None),
            Err(outputs::PublishError::Kube(e)) => {
                // Conditions, inventory and the last execution still reach the status (the
                // inventory is what a later deletion works from); the reconcile then fails and
                // is retried with backoff.
                let message = format!(
                    "writing ConfigMap {name} (spec.outputs.configMapName) failed: {e}; retrying"
                );
                status::outputs_published(
                    dp,
                    &mut status,
                    Some((status::PUBLISH_FAILED, &message)),
                );
                status::write(api, dp, status).await?;
                return Err(e.into());
            }
            Err(refused @ outputs::PublishError::NotOwned(_)) => {
                let message = refused.to_string();
                ctx.event(
                    dp,
                    EventType::Warning,
                    status::CONFIG_MAP_NOT_OWNED,
                    "PublishOutputs",
                    message.clone(),
                )
                .await;
                status::outputs_published(
                    dp,
                    &mut status,
                    Some((status::CONFIG_MAP_NOT_OWNED, &message)),
                );
            }
        }
    } else {
        status
            .conditions
            .retain(|c| c.type_ != status::OUTPUTS_PUBLISHED);
    }
    status::write(api, dp, status).await?;
    ctx.checked_whole(&key, dp);
    Ok(Requeue::requeue(next))
}

/// Between whole checks of a pipeline that is Ready, a wake-up for its running execution reads
/// only the execution (two calls) and writes it to status; None: check the pipeline whole.
async fn poll_running_execution(
    dp: &DeliveryPipeline,
    api: &Api<DeliveryPipeline>,
    ctx: &Context,
    key: &str,
    admitted: &tenants::Admitted,
) -> Result<Option<Requeue>, Error> {
    let Some(recorded) = dp.status.as_ref() else {
        return Ok(None);
    };
    let running = recorded
        .last_execution
        .as_ref()
        .is_some_and(executions::in_progress);
    let Some(until_whole) = ctx.between_whole_checks(key, dp, running) else {
        return Ok(None);
    };
    let ready = recorded
        .conditions
        .iter()
        .any(|c| c.type_ == crate::api::READY && c.status == engine::conditions::TRUE);
    let (Some(name), Some(region)) = (
        recorded.outputs.pipeline_name.as_deref(),
        recorded.outputs.region.as_deref(),
    ) else {
        return Ok(None);
    };
    if !running || !ready {
        return Ok(None);
    }
    let origin = origin(dp, &admitted.tenancy);
    let Ok(pipeline) = sessions::pipeline(&ctx.aws, dp, origin, region).await else {
        return Ok(None);
    };
    let Ok(last) = executions::last(&pipeline, name).await else {
        return Ok(None);
    };
    let still_running = last.as_ref().is_some_and(executions::in_progress);
    let mut next = recorded.clone();
    next.last_execution = last;
    status::write(api, dp, next).await?;
    Ok(Some(Requeue::requeue(if still_running {
        ctx.settings.execution_poll.min(until_whole)
    } else {
        // The run ended: the whole check is due at its usual interval again (now, if that passed).
        ctx.between_whole_checks(key, dp, false)
            .unwrap_or(Duration::ZERO)
    })))
}

/// When to look again: the most urgent error, else the soonest step in progress, else the
/// drift-check interval.
fn next_look(report: &Report, ctx: &Context, key: &str) -> Duration {
    let errors: Vec<&Failure> = report.errors().collect();
    if errors.is_empty() {
        ctx.succeeded(key);
        return engine::conditions::soonest_progress(report)
            .map_or(jittered(ctx.settings.resync_interval), |p| {
                p.min(ctx.settings.resync_interval)
            });
    }
    ctx.mark_degraded(key);
    if changed_aws(report) {
        // Backoff counts reconciles that got nowhere: one that created or updated something
        // is not a repeat of the last failure. (Under steady throttling nearly every reconcile
        // of a whole pipeline meets one failed call; escalating anyway stalled creations at
        // the 5-minute cap while each attempt still made progress.)
        ctx.succeeded(key);
    }
    soonest_retry(&errors, jittered(ctx.settings.terminal_retry), || {
        ctx.backoff(key)
    })
}

/// Whether a reconcile wrote to AWS (a step created or updated its resource).
fn changed_aws(report: &Report) -> bool {
    report
        .steps
        .iter()
        .any(|step| matches!(&step.outcome, Outcome::Applied(a) if a.action != Action::Unchanged))
}

/// A principal AWS has not shown for `waited`, longer than propagation takes: an error that
/// names what to check, retried slowly (None while it may still be propagation).
fn unseen_principal_error(failure: &Failure, waited: Duration, limit: Duration) -> Option<Failure> {
    (waited >= limit).then(|| {
        Failure::terminal(
            "PrincipalNotFound",
            format!(
                "{} — still refused after {} s, longer than IAM takes to propagate: a principal in the policy does not exist (a role deleted by hand, or in an account it cannot be made in); recreating it, or a spec change, retries at once",
                failure.message,
                waited.as_secs()
            ),
        )
    })
}

/// When to retry after one failure.
fn requeue_after(err: &Failure, ctx: &Context, key: &str) -> Duration {
    soonest_retry(&[err], jittered(ctx.settings.terminal_retry), || {
        ctx.backoff(key)
    })
}

/// The soonest retry the errors of one reconcile call for. Backoff escalates once per
/// reconcile however many groups failed transiently (five throttled groups are one failed
/// attempt, not five).
fn soonest_retry(
    errors: &[&Failure],
    terminal: Duration,
    backoff: impl FnOnce() -> Duration,
) -> Duration {
    let backoff = errors
        .iter()
        .any(|e| e.class == Class::Retryable)
        .then(backoff);
    errors
        .iter()
        .map(|e| match e.class {
            Class::Terminal => terminal,
            Class::Retryable => backoff.unwrap_or(terminal),
            Class::InProgress(after) => after,
        })
        .min()
        .unwrap_or(terminal)
}

/// `interval` spread by ±10%, so pipelines that failed or were checked together do not all
/// come back in the same second.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// Event action per group, e.g. `CreateEncryptionKey`: events are aggregated by action and
/// reason, so each group needs its own action to keep its own event.
fn action_name(verb: &str, condition: &str) -> String {
    format!("{verb}{}", condition.trim_end_matches("Ready"))
}

async fn cleanup(
    dp: &DeliveryPipeline,
    api: &Api<DeliveryPipeline>,
    ctx: &Context,
) -> Result<Requeue, Error> {
    if is_paused(dp) {
        status::write(api, dp, status::paused(dp, true)).await?;
        return Err(Error::Paused);
    }
    let retained = if is_observe_only(dp) {
        Some("managementPolicy is ObserveOnly: AWS resources are left in place")
    } else if dp.spec.deletion_policy == DeletionPolicy::Retain {
        Some("deletionPolicy is Retain: AWS resources are left in place")
    } else {
        None
    };
    if let Some(why) = retained {
        ctx.event(dp, EventType::Normal, "Retained", "Delete", why.into())
            .await;
        return Ok(Requeue::await_change());
    }
    let nothing_recorded = dp.status.as_ref().is_none_or(|s| s.inventory.is_empty());
    // Deleting acts in the tenant's accounts too: only with roles the policies still allow.
    let admitted = match admit(dp, ctx).await {
        Ok(admitted) => Some(admitted),
        Err(_) if nothing_recorded => None,
        Err(e) => {
            status::write(api, dp, status::deletion_blocked(dp, &e)).await?;
            return Err(Error::Aws(e));
        }
    };
    let Some(region) = region_of(dp, &ctx.aws) else {
        return if nothing_recorded {
            Ok(Requeue::await_change())
        } else {
            Err(Error::Aws(Failure::terminal(
                "RegionUnknown",
                "region unknown",
            )))
        };
    };
    let Some(admitted) = admitted else {
        return Ok(Requeue::await_change());
    };
    let tenancy = &admitted.tenancy;
    let pipeline = match sessions::pipeline(&ctx.aws, dp, origin(dp, tenancy), &region).await {
        Ok(s) => s,
        // Credentials that never worked created nothing: do not hold the object hostage.
        Err(_) if nothing_recorded => {
            ctx.event(
                dp,
                EventType::Normal,
                "Deleted",
                "Delete",
                "no AWS resources were recorded; nothing to delete".into(),
            )
            .await;
            return Ok(Requeue::await_change());
        }
        Err(e) if is_abandoning(dp) => {
            let recorded = dp.status.as_ref().map_or(0, |s| s.inventory.len());
            abandoned(dp, ctx, format!(
                "the pipeline's account cannot be reached ({}): its {recorded} recorded AWS resources (status.inventory) are left in AWS",
                e.message
            ))
            .await;
            return Ok(Requeue::await_change());
        }
        Err(e) => {
            let blocked = Failure {
                message: format!(
                    "{}; restore access, or leave the pipeline's AWS resources in place and finish the deletion: {}",
                    e.message,
                    abandon_command(dp)
                ),
                ..e
            };
            status::write(api, dp, status::deletion_blocked(dp, &blocked)).await?;
            return Err(Error::Aws(blocked));
        }
    };
    ctx.cadence.forget(&key_of(dp));
    let (mut steps, unreachable) =
        group_steps(dp, &ctx.aws, tenancy, &region, pipeline, None).await;
    let abandoning = is_abandoning(dp) && !unreachable.is_empty();
    if abandoning {
        // What lives in an environment that cannot be reached stays; nothing else waits for it.
        steps.retain(|s| {
            s.environment()
                .is_none_or(|e| unreachable.iter().all(|(u, _)| *u != e))
        });
    }
    // Deletion works from identity (names, tags): it needs no other step's outputs, so it
    // completes whatever partial state the pipeline is in.
    let mut report = engine::delete(&steps).await?;
    let refused = refused_deletions(&report);
    if is_abandoning(dp) && !refused.is_empty() {
        // Left in AWS as asked; deleting again without them frees what waited for them.
        let mut index = 0;
        steps.retain(|_| {
            index += 1;
            refused.iter().all(|r| r.index != index - 1)
        });
        report = engine::delete(&steps).await?;
    }
    if report.all_gone() {
        info!("every AWS resource is gone");
        if abandoning {
            let left: Vec<String> = unreachable
                .iter()
                .map(|(env, e)| format!("{} ({})", env.name(), e.message))
                .collect();
            abandoned(dp, ctx, format!(
                "left in AWS because they cannot be reached: the resources of environment {}; everything else was deleted",
                left.join(", environment ")
            ))
            .await;
        }
        if !refused.is_empty() {
            let left: Vec<&str> = refused.iter().map(|r| r.kind.as_str()).collect();
            abandoned(
                dp,
                ctx,
                format!(
                    "left in AWS because AWS refused to delete them: {}; everything else was deleted",
                    left.join("; ")
                ),
            )
            .await;
        }
        // Kubernetes' garbage collector removes the owned ConfigMap too; deleting it here
        // does not depend on one running.
        if let Some(name) = dp
            .spec
            .outputs
            .as_ref()
            .and_then(|o| o.config_map_name.as_deref())
        {
            outputs::remove(&ctx.client, dp, name).await?;
        }
        ctx.event(
            dp,
            EventType::Normal,
            "Deleted",
            "Delete",
            "deleted every AWS resource of the pipeline".into(),
        )
        .await;
        return Ok(Requeue::await_change());
    }
    let mut deleting = status::deleting(dp, &report);
    if let Some((env, e)) = unreachable.first().filter(|_| !abandoning) {
        status::deletion_waits(
            dp,
            &mut deleting,
            &format!(
                "the {} environment cannot be reached ({}); restore access, or leave its resources in AWS and delete everything else: {}",
                env.name(),
                e.message,
                abandon_command(dp)
            ),
        );
    } else if let Some(refusal) = refused.first().filter(|_| !is_abandoning(dp)) {
        let message = format!(
            "AWS refuses to delete {refusal}; allow it (or remove what prevents it), or leave what AWS refuses in AWS and delete everything else: {}",
            abandon_command(dp)
        );
        status::deletion_waits(dp, &mut deleting, &message);
        status::write(api, dp, deleting).await?;
        // A retry cannot change a refusal: looked at again slowly, unless something else of
        // the pipeline is still on its way out.
        return Err(if only_refusals_left(&report) {
            Error::Aws(Failure::terminal(status::DELETION_BLOCKED, message))
        } else {
            Error::DeletionPending(message)
        });
    }
    status::write(api, dp, deleting).await?;
    let first_error = report.errors().next().cloned();
    Err(Error::DeletionPending(
        first_error
            .map(|e| e.message)
            .unwrap_or_else(|| "waiting for AWS to finish deleting".into()),
    ))
}

/// A step of a deletion run that AWS refused with an error a retry cannot change (the
/// operator's identity denied the delete, a resource AWS will not delete).
struct Refusal {
    index: usize,
    kind: String,
    message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.kind, self.message)
    }
}

fn refused_deletions(report: &Report) -> Vec<Refusal> {
    report
        .steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| {
            step.failure()
                .filter(|f| f.class == Class::Terminal)
                .map(|f| Refusal {
                    index,
                    kind: step.kind.clone(),
                    message: f.message.clone(),
                })
        })
        .collect()
}

/// Whether every step not gone yet is refused, or waits for one that is.
fn only_refusals_left(report: &Report) -> bool {
    report.steps.iter().all(|step| match &step.outcome {
        Outcome::Removed(Removal::Gone) | Outcome::Blocked { .. } => true,
        Outcome::Failed(f) => f.class == Class::Terminal,
        _ => false,
    })
}

/// What the administrators' policies allow the pipeline (waiting for their first listing), or
/// a `PolicyViolation` naming the field, the value and the policy, with a Warning event.
async fn admit(dp: &DeliveryPipeline, ctx: &Context) -> Result<tenants::Admitted, Failure> {
    ctx.tenants.ready().await;
    ctx.tenants.admit(dp).map_err(|v| refusal(&v))
}

/// A pipeline the policies refuse: terminal until the spec or a policy changes (either wakes
/// the controller).
fn refusal(violation: &crate::tenancy::Violation) -> Failure {
    Failure::terminal(status::POLICY_VIOLATION, violation.to_string())
}

/// Asks for a reconcile now (used by tests and `kubectl annotate`).
pub fn reconcile_request_patch(value: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"metadata": {"annotations": {RECONCILE_REQUEST_ANNOTATION: value}}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_note_is_cut_to_what_the_api_server_accepts() {
        assert_eq!(event_note("short".into()), "short");
        let long = "é".repeat(600); // 1200 bytes
        let cut = event_note(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with(" [...]"));
    }

    #[test]
    fn a_reconcile_that_wrote_to_aws_made_progress() {
        let step = |action: Option<Action>| engine::StepReport {
            condition: "C".into(),
            kind: "thing".into(),
            wanted: true,
            outcome: match action {
                Some(action) => Outcome::Applied(engine::Applied {
                    action,
                    values: engine::Values::new(),
                    owned: Vec::new(),
                    progress: None,
                    note: None,
                    drift: Vec::new(),
                }),
                None => Outcome::Failed(Failure::retryable("Throttled", "throttled")),
            },
        };
        let report = |steps| Report {
            steps,
            values: engine::Values::new(),
        };
        assert!(changed_aws(&report(vec![
            step(None),
            step(Some(Action::Created))
        ])));
        assert!(changed_aws(&report(vec![step(Some(Action::Updated))])));
        assert!(!changed_aws(&report(vec![
            step(None),
            step(Some(Action::Unchanged))
        ])));
    }

    #[test]
    fn backoff_escalates_once_per_reconcile_however_many_groups_failed() {
        let throttled = Failure::retryable("ThrottlingException", "Rate exceeded");
        let errors = vec![&throttled; 5];
        let mut escalations = 0;
        let next = soonest_retry(&errors, Duration::from_secs(300), || {
            escalations += 1;
            Duration::from_secs(2)
        });
        assert_eq!(escalations, 1);
        assert_eq!(next, Duration::from_secs(2));
    }

    #[test]
    fn the_soonest_error_decides_and_terminal_errors_do_not_escalate_backoff() {
        let terminal = Failure::terminal("AccessDenied", "no");
        let pending = Failure {
            class: Class::InProgress(Duration::from_secs(5)),
            ..Failure::terminal("Pending", "deleting")
        };
        let mut escalations = 0;
        let next = soonest_retry(&[&terminal, &pending], Duration::from_secs(300), || {
            escalations += 1;
            Duration::from_secs(1)
        });
        assert_eq!((escalations, next), (0, Duration::from_secs(5)));
    }

    #[test]
    fn a_principal_unseen_longer_than_propagation_takes_is_an_error() {
        let waiting = Failure::in_progress(
            crate::aws::WAITING_FOR_IAM,
            "kms:PutKeyPolicy: AWS does not see a principal of the policy yet",
            Duration::from_secs(10),
        );
        let limit = Duration::from_secs(120);
        assert_eq!(
            unseen_principal_error(&waiting, Duration::from_secs(30), limit),
            None
        );
        let error =
            unseen_principal_error(&waiting, Duration::from_secs(125), limit).expect("escalated");
        assert_eq!(error.class, Class::Terminal);
        assert_eq!(error.reason, "PrincipalNotFound");
        assert!(
            error.message.contains("still refused after 125 s"),
            "{}",
            error.message
        );
    }

    #[test]
    fn jitter_spreads_within_ten_percent() {
        let spread: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| jittered(Duration::from_secs(600)).as_millis())
            .collect();
        assert!(spread.len() > 1, "not spread: {spread:?}");
        assert!(spread.iter().all(|ms| (540_000..=660_000).contains(ms)));
    }
    use crate::api::{DeliveryPipelineStatus, Outputs};

    fn pipeline(account: Option<&str>, region: Option<&str>) -> DeliveryPipeline {
        let mut dp: DeliveryPipeline =
            serde_yaml::from_str(include_str!("../../examples/minimal.yaml"))
                .expect("example parses");
        dp.status = Some(DeliveryPipelineStatus {
            outputs: Outputs {
                account_id: account.map(Into::into),
                region: region.map(Into::into),
                ..Default::default()
            },
            ..Default::default()
        });
        dp
    }

    #[test]
    fn first_reconcile_and_unchanged_placement_are_fine() {
        assert_eq!(
            placement_conflict(&pipeline(None, None), "111111111111", "us-east-1"),
            None
        );
        assert_eq!(
            placement_conflict(
                &pipeline(Some("111111111111"), Some("us-east-1")),
                "111111111111",
                "us-east-1"
            ),
            None
        );
    }

    #[test]
    fn moving_account_or_region_is_refused() {
        let account = placement_conflict(
            &pipeline(Some("111111111111"), Some("us-east-1")),
            "222222222222",
            "us-east-1",
        );
        assert_eq!(
            account.as_ref().map(|e| e.reason.as_str()),
            Some("AccountChanged")
        );
        let region = placement_conflict(
            &pipeline(Some("111111111111"), Some("us-east-1")),
            "111111111111",
            "eu-west-1",
        );
        assert_eq!(
            region.as_ref().map(|e| e.reason.as_str()),
            Some("RegionChanged")
        );
        assert!(region.is_some_and(|e| e.message.contains("set spec.region to us-east-1")));
    }
}
