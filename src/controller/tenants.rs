//! The administrators' `DeliveryPolicy` objects and the namespaces' labels, watched for the life
//! of the process (a standby replica has them ready when it takes over); what they allow a
//! pipeline; and which namespaces' pipelines a change of either must look at again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::api::{DeliveryPipeline, DeliveryPolicy};
use crate::desired::Tenancy;
use crate::tenancy::{Guardrails, Policies, Violation};

pub struct Tenants {
    policies: Store<DeliveryPolicy>,
    namespaces: Store<Namespace>,
    /// Namespaces whose pipelines a policy or label change affects.
    changes: broadcast::Sender<Vec<String>>,
    /// True once both watches have listed. Every reconcile waits on it: a `watch` channel
    /// wakes all of its waiters, while the reflector stores' own readiness future wakes only
    /// the last task that polled it (one waker), so with several reconciles starting at once
    /// the others would wait forever (and hold their pipelines' reconcile slots).
    listed: watch::Receiver<bool>,
    cluster_id: String,
    require_policy: bool,
}

/// What a pipeline may do: the tenancy its desired state is rendered under, and the account
/// rules that are checked once its sessions resolve.
pub struct Admitted {
    pub tenancy: Tenancy,
    pub guardrails: Guardrails,
}

/// The cluster's identity when none is configured: the UID of the `kube-system` namespace,
/// which is unique per cluster and stable for its life.
pub async fn cluster_identity(client: &Client) -> Result<String, kube::Error> {
    let namespace = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await?;
    Ok(namespace.uid().unwrap_or_default())
}

impl Admitted {
    /// A pipeline no policy governs, in a cluster known only by its ID (the offline diff).
    pub fn without_policies(cluster_id: &str, dp: &DeliveryPipeline) -> Result<Self, Violation> {
        let namespace = dp.namespace().unwrap_or_default();
        let guardrails = Policies {
            policies: &[],
            require_policy: false,
        }
        .admit(&namespace, &BTreeMap::new(), &dp.spec)?;
        Ok(Self {
            tenancy: Tenancy {
                cluster_id: cluster_id.into(),
                ..Tenancy::default()
            },
            guardrails,
        })
    }
}

impl Tenants {
    /// Starts watching policies and namespaces (cluster-wide: policies are cluster-scoped, and
    /// a policy selects namespaces by their labels).
    pub fn start(client: &Client, cluster_id: String, require_policy: bool) -> Arc<Self> {
        let (policies, policy_writer) = reflector::store::<DeliveryPolicy>();
        let (namespaces, namespace_writer) = reflector::store::<Namespace>();
        let (changes, _) = broadcast::channel(256);
        let (listed_tx, listed) = watch::channel(false);
        {
            // One task waits on the stores (a single waiter) and tells everyone.
            let (policies, namespaces) = (policies.clone(), namespaces.clone());
            tokio::spawn(async move {
                let (p, n) =
                    futures::join!(policies.wait_until_ready(), namespaces.wait_until_ready());
                if p.is_err() || n.is_err() {
                    warn!("the policy or namespace watch stopped before it was ready");
                }
                let _ = listed_tx.send(true);
            });
        }
        let tenants = Arc::new(Self {
            policies,
            namespaces,
            changes: changes.clone(),
            listed,
            cluster_id,
            require_policy,
        });

        // A policy change affects the namespaces it selected before and selects now.
        let selected = tenants.clone();
        let mut selectors: HashMap<String, Option<Selector>> = HashMap::new();
        let policy_changes = watcher(
            Api::<DeliveryPolicy>::all(client.clone()),
            Default::default(),
        )
        .default_backoff()
        .reflect(policy_writer)
        .touched_objects()
        .for_each(move |policy| {
            if let Ok(policy) = policy {
                let now = Selector::try_from(policy.spec.namespace_selector.clone()).ok();
                let before = selectors.insert(policy.name_any(), now.clone()).flatten();
                let affected = selected.namespaces_selected_by([before, now]);
                let _ = changes.send(affected);
            }
            futures::future::ready(())
        });

        // A namespace whose labels change may be governed by other policies now.
        let namespace_changes = {
            let changes = tenants.changes.clone();
            let mut labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
            watcher(Api::<Namespace>::all(client.clone()), Default::default())
                .default_backoff()
                .reflect(namespace_writer)
                .applied_objects()
                .for_each(move |namespace| {
                    if let Ok(namespace) = namespace {
                        let name = namespace.name_any();
                        let now = namespace.labels().clone();
                        if labels
                            .insert(name.clone(), now.clone())
                            .is_some_and(|l| l != now)
                        {
                            let _ = changes.send(vec![name]);
                        }
                    }
                    futures::future::ready(())
                })
        };
        tokio::spawn(policy_changes);
        tokio::spawn(namespace_changes);
        tenants
    }

    fn namespaces_selected_by(&self, selectors: [Option<Selector>; 2]) -> Vec<String> {
        self.namespaces
            .state()
            .iter()
            .filter(|ns| selectors.iter().flatten().any(|s| s.matches(ns.labels())))
            .map(|ns| ns.name_any())
            .collect()
    }

    /// Namespaces whose pipelines to look at again, as changes come.
    pub fn changes(&self) -> broadcast::Receiver<Vec<String>> {
        self.changes.subscribe()
    }

    /// Until both watches have listed once: before that, "no policy" would admit everything.
    pub async fn ready(&self) {
        let mut listed = self.listed.clone();
        // Err: the task ended without saying so (it always does before ending).
        let _ = listed.wait_for(|listed| *listed).await;
    }

    /// What the policies selecting the pipeline's namespace allow it, or why they refuse it.
    pub fn admit(&self, dp: &DeliveryPipeline) -> Result<Admitted, Violation> {
        let namespace = dp.namespace().unwrap_or_default();
        let labels = self.labels_of(dp);
        let policies = self.policies.state();
        let guardrails = Policies {
            policies: &policies,
            require_policy: self.require_policy,
        }
        .admit(&namespace, &labels, &dp.spec)?;
        Ok(Admitted {
            tenancy: Tenancy {
                cluster_id: self.cluster_id.clone(),
                permissions_boundary_policy: guardrails.permissions_boundary_policy.clone(),
                role_path: guardrails.role_path.clone(),
                manage_bucket_notifications: guardrails.manage_bucket_notifications,
            },
            guardrails,
        })
    }

    /// Keeps each policy's `status` (namespaces, pipelines, violations) current, every
    /// `interval`, writing only what changed. Run by the leader of a cluster-wide operator only:
    /// one watching some namespaces sees part of the picture.
    pub async fn publish_reach(
        &self,
        client: Client,
        pipelines: Store<DeliveryPipeline>,
        interval: std::time::Duration,
    ) {
        let api: Api<DeliveryPolicy> = Api::all(client);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let namespaces = self.namespaces.state();
            let labelled: Vec<(String, BTreeMap<String, String>)> = namespaces
                .iter()
                .map(|ns| (ns.name_any(), ns.labels().clone()))
                .collect();
            let all = pipelines.state();
            let specs: Vec<(String, &crate::api::DeliveryPipelineSpec)> = all
                .iter()
                .map(|dp| (dp.namespace().unwrap_or_default(), &dp.spec))
                .collect();
            for policy in self.policies.state() {
                let status = crate::tenancy::reach(
                    &policy,
                    labelled.iter().map(|(n, l)| (n.as_str(), l)),
                    specs.iter().map(|(n, s)| (n.as_str(), *s)),
                );
                if policy.status.as_ref() == Some(&status) {
                    continue;
                }
                let patch = kube::api::Patch::Merge(serde_json::json!({ "status": status }));
                if let Err(e) = api
                    .patch_status(&policy.name_any(), &Default::default(), &patch)
                    .await
                {
                    warn!(policy = %policy.name_any(), error = %e, "could not write the policy's status");
                }
            }
        }
    }

    fn labels_of(&self, dp: &DeliveryPipeline) -> BTreeMap<String, String> {
        let namespace = dp.namespace().unwrap_or_default();
        self.namespaces
            .get(&reflector::ObjectRef::new(&namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default()
    }
}
