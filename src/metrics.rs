//! Prometheus metrics: reconciles by result, reconcile duration, and every AWS API call by
//! service, operation, kind (read/write) and outcome. The AWS call counter is fed by an SDK
//! interceptor on every client, so it counts each call the operator makes, including the STS
//! calls behind assumed-role credentials. `leader` says whether this replica runs the
//! controller.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    pub kind: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    /// 1 while this replica runs the controller (it holds the lease, or leader election is
    /// off), 0 while it waits.
    pub leader: Gauge,
    /// Shards of the pipelines whose leases this replica holds (sharded operators).
    pub shards_held: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("delivery_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of DeliveryPipelines by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one DeliveryPipeline reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "aws_api_calls",
            "AWS API calls by service, operation, kind (read or write) and outcome",
            aws_calls.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controller (holds the leader-election lease), else 0",
            leader.clone(),
        );
        let shards_held = Gauge::default();
        registry.register(
            "shards_held",
            "Shards of the pipelines whose leases this replica holds (with --shards above 1)",
            shards_held.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            aws_calls,
            leader,
            shards_held,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn reconciled(&self, result: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: result.into(),
            })
            .inc();
        self.reconcile_duration.observe(seconds);
    }
}

/// Whether an operation only reads. Everything else counts as a write.
pub fn is_read(operation: &str) -> bool {
    [
        "Get", "Describe", "List", "Head", "Lookup", "BatchGet", "Search",
    ]
    .iter()
    .any(|p| operation.starts_with(p))
}

/// SDK interceptor that counts every attempt of every call into [`Metrics::aws_calls`].
#[derive(Clone)]
pub struct CallCounter {
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallCounter")
    }
}

impl CallCounter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    // Per attempt, not per operation: a call the SDK retried twice counts three times, as AWS
    // (and the emulator's request record) sees it.
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let succeeded = match context.output_or_error() {
            Some(result) => result.is_ok(),
            None => context.response().is_some_and(|r| r.status().is_success()),
        };
        let outcome = if succeeded { "success" } else { "error" };
        let kind = if is_read(&operation) { "read" } else { "write" };
        // Inside the group's span: the log line carries pipeline, group and account too.
        if kind == "write" || !succeeded {
            tracing::info!(%service, %operation, kind, outcome, "aws call");
        } else {
            tracing::debug!(%service, %operation, kind, outcome, "aws call");
        }
        self.metrics
            .aws_calls
            .get_or_create(&AwsCallLabels {
                service,
                operation,
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_told_apart() {
        for read in [
            "GetBucketPolicy",
            "DescribeKey",
            "ListResourceTags",
            "HeadBucket",
            "GetCallerIdentity",
        ] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "CreateKey",
            "PutBucketPolicy",
            "EnableKeyRotation",
            "DeleteBucket",
            "AssumeRole",
            "TagResource",
        ] {
            assert!(!is_read(write), "{write}");
        }
    }

    #[test]
    fn metrics_encode_in_prometheus_text_format() {
        let m = Metrics::default();
        m.reconciled("ok", 0.2);
        let text = m.encode().unwrap_or_default();
        assert!(
            text.contains("delivery_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
    }
}
