//! Client-side request rate limits, one token bucket per (service, account, region): AWS
//! throttles each account's calls to a service in a region, so one busy pipeline (or one
//! account's throttling) must not use up the budget of the others. Every attempt, retries
//! included, takes a token before it is sent; a call over the rate waits for the bucket instead
//! of being throttled by AWS.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use governor::{DefaultDirectRateLimiter, Jitter, Quota, RateLimiter};

/// Sustained requests per second and burst of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    /// 10 per second, bursts of 20: at or below the steady rates AWS documents for the
    /// operator's most frequent calls (CloudWatch Logs `DescribeLogGroups`, 10 per second per
    /// account and region, is the lowest), so a resync of many pipelines waits here instead of
    /// being throttled there.
    fn default() -> Self {
        Self {
            per_second: NonZeroU32::MIN.saturating_add(9),
            burst: NonZeroU32::MIN.saturating_add(19),
        }
    }
}

/// The buckets of one operator process, created on first use and shared by every session of the
/// same account (sessions are per role chain; AWS throttles per account).
pub struct RateLimits {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
}

impl RateLimits {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of `partition` (service, account and region).
    fn bucket(&self, partition: &str) -> Arc<DefaultDirectRateLimiter> {
        let quota = Quota::per_second(self.limit.per_second).allow_burst(self.limit.burst);
        match self.buckets.lock() {
            Ok(mut buckets) => buckets
                .entry(partition.to_string())
                .or_insert_with(|| Arc::new(RateLimiter::direct(quota)))
                .clone(),
            // A poisoned map still limits this client on its own.
            Err(_) => Arc::new(RateLimiter::direct(quota)),
        }
    }

    /// `inner` with every request of `partition` taking a token first.
    pub fn limited(&self, inner: SharedHttpClient, partition: &str) -> SharedHttpClient {
        SharedHttpClient::new(RateLimitedClient {
            inner,
            bucket: self.bucket(partition),
        })
    }
}

#[derive(Debug, Clone)]
struct RateLimitedClient {
    inner: SharedHttpClient,
    bucket: Arc<DefaultDirectRateLimiter>,
}

impl HttpClient for RateLimitedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RateLimitedConnector {
            inner: self.inner.http_connector(settings, components),
            bucket: self.bucket.clone(),
        })
    }
}

#[derive(Debug)]
struct RateLimitedConnector {
    inner: SharedHttpConnector,
    bucket: Arc<DefaultDirectRateLimiter>,
}

/// Waiters are spread by up to this much, so those released together do not send together.
const JITTER: Duration = Duration::from_millis(50);

impl HttpConnector for RateLimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let bucket = self.bucket.clone();
        HttpConnectorFuture::new(async move {
            bucket.until_ready_with_jitter(Jitter::up_to(JITTER)).await;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32) -> RateLimits {
        RateLimits::new(RateLimit {
            per_second: NonZeroU32::new(per_second).expect("non-zero"),
            burst: NonZeroU32::new(burst).expect("non-zero"),
        })
    }

    #[test]
    fn a_burst_passes_and_the_next_request_waits() {
        let limits = limits(1, 3);
        let bucket = limits.bucket("iam-111111111111-us-east-1");
        assert!((0..3).all(|_| bucket.check().is_ok()), "the burst passes");
        assert!(bucket.check().is_err(), "the fourth waits for a token");
    }

    #[test]
    fn accounts_and_services_have_their_own_buckets() {
        let limits = limits(1, 1);
        let busy = limits.bucket("iam-111111111111-us-east-1");
        assert!(busy.check().is_ok());
        assert!(busy.check().is_err(), "the busy account's bucket is empty");
        assert!(
            limits.bucket("iam-111111111111-us-east-1").check().is_err(),
            "the same account and service share it"
        );
        assert!(limits.bucket("iam-222222222222-us-east-1").check().is_ok());
        assert!(limits.bucket("kms-111111111111-us-east-1").check().is_ok());
    }

    #[test]
    fn the_default_is_ten_per_second_with_bursts_of_twenty() {
        let d = RateLimit::default();
        assert_eq!((d.per_second.get(), d.burst.get()), (10, 20));
    }
}
