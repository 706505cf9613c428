//! AWS sessions: SDK configuration per identity chain and region, built once per key (a
//! per-key once-cell, so one slow AssumeRole stalls only the pipelines that need that role), with
//! an endpoint override for emulators and the call counter on every client, built lazily.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
};
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::error::AwsResultExt;
use super::rate::{RateLimit, RateLimits};
use crate::engine::{Class, Failure};
use crate::metrics::{CallCounter, Metrics};

/// One role assumption in a chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assume {
    pub role_arn: String,
    /// Always set by the operator (the user's, or one derived from the pipeline's namespace):
    /// a role trusting the operator for one namespace cannot be used from another.
    pub external_id: String,
}

/// Which identity a session acts as: the operator's own, then each role of `chain` assumed from
/// the previous identity (role chaining), in `region`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub region: String,
    pub chain: Vec<Assume>,
}

impl SessionKey {
    fn parent(&self) -> Option<SessionKey> {
        let mut chain = self.chain.clone();
        chain.pop()?;
        Some(SessionKey {
            region: self.region.clone(),
            chain,
        })
    }
}

/// How long one AWS call may take, and how it retries. Every client has these: without them a
/// stalled connection holds a reconcile (and a worker) forever, and a graceful stop hangs.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// One attempt (one HTTP request and its response).
    pub attempt_timeout: Duration,
    /// The whole operation, retries included.
    pub operation_timeout: Duration,
    /// Attempts per operation (the first included). Five, not the SDKs' three: a whole
    /// pipeline's reconcile makes about a hundred calls, and under sustained faults (the soak's
    /// 29% of calls) three attempts left one call in forty failed, so almost no reconcile
    /// finished clean and creations waited at the backoff cap; with five, one in 500.
    pub max_attempts: u32,
    /// Requests per (service, account, region), every attempt counted.
    pub rate: RateLimit,
    /// The SDK's adaptive retry mode instead of standard.
    pub adaptive: bool,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(20),
            operation_timeout: Duration::from_secs(60),
            max_attempts: 5,
            rate: RateLimit::default(),
            adaptive: false,
        }
    }
}

impl ClientLimits {
    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    /// Standard retries by default; every request has already waited for its token bucket
    /// (`rate`), which keeps the operator under AWS's rates. Adaptive mode adds the SDK's own
    /// CUBIC limiter, which cuts a partition's rate toward 0.5 requests per second on every
    /// throttle, whoever caused it: under the soak's 20% throttling it fell to 43 calls a minute
    /// for the whole operator, against hundreds in standard mode.
    fn retries(&self) -> RetryConfig {
        let config = if self.adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        };
        config.with_max_attempts(self.max_attempts)
    }
}

/// Builds and caches sessions. One per operator process.
pub struct AwsFactory {
    base: SdkConfig,
    endpoint_override: bool,
    metrics: Arc<Metrics>,
    /// Role ARN patterns (`*` matches any run of characters) pipelines may name; empty: any.
    allowed_roles: Vec<String>,
    sessions: Mutex<HashMap<SessionKey, Arc<OnceCell<Arc<AwsSession>>>>>,
    /// The HTTPS client every AWS client shares (one connection pool).
    http: SharedHttpClient,
    rates: Arc<RateLimits>,
}

/// An identity in one account and region. Clients are built on first use and shared (they are
/// cheap handles to one connection pool); every one carries the call counter.
pub struct AwsSession {
    pub account_id: String,
    pub region: String,
    pub partition: &'static str,
    config: SdkConfig,
    counter: CallCounter,
    path_style_s3: bool,
    http: SharedHttpClient,
    rates: Arc<RateLimits>,
    /// Shared with the copies made for one reconcile: clients are built once per session.
    clients: Arc<Clients>,
    /// The tags of one reconcile's resources in this account and region, read once for all of
    /// its steps (`tags_of`); only a session made for one reconcile has one.
    tag_snapshot: Option<OnceCell<TagSnapshot>>,
    /// Reads several steps of one reconcile share (`once_per_reconcile`); only a session made
    /// for one reconcile has them.
    shared_reads: Option<SharedReads>,
}

/// One answer per key, made by the first step that asks; the others wait for it.
type SharedReads = Mutex<HashMap<String, Arc<OnceCell<Arc<dyn Any + Send + Sync>>>>>;

/// Tags by resource ARN, of the resources carrying one owner tag.
struct TagSnapshot {
    owner: (String, String),
    tags: HashMap<String, BTreeMap<String, String>>,
}

/// The services whose tags `tags_of` reads in one request (each group reads its other
/// resources' tags with the resource: IAM's GetRole, EC2's and ECS's descriptions, CodeBuild's
/// batch reads, the bucket's tag read that also says it exists).
const SNAPSHOT_SERVICES: [&str; 7] = [
    "kms",
    "sns",
    "ecr",
    "codepipeline",
    "events",
    "cloudwatch",
    "logs",
];

/// Declares a lazily built client per service: a field of `Clients` and an accessor on
/// `AwsSession`, each with the call counter.
macro_rules! clients {
    ($($name:ident: $sdk:ident),* $(,)?) => {
        #[derive(Default)]
        struct Clients {
            s3: OnceLock<aws_sdk_s3::Client>,
            $($name: OnceLock<$sdk::Client>,)*
        }

        impl AwsSession {
            $(
                pub fn $name(&self) -> $sdk::Client {
                    self.clients
                        .$name
                        .get_or_init(|| {
                            $sdk::Client::from_conf(
                                $sdk::config::Builder::from(&self.config)
                                    .interceptor(self.counter.clone())
                                    .retry_partition($sdk::config::retry::RetryPartition::new(
                                        self.retry_partition(stringify!($name)),
                                    ))
                                    .http_client(self.http_client(stringify!($name)))
                                    .build(),
                            )
                        })
                        .clone()
                }
            )*
        }
    };
}

clients!(
    kms: aws_sdk_kms,
    sts: aws_sdk_sts,
    sns: aws_sdk_sns,
    logs: aws_sdk_cloudwatchlogs,
    iam: aws_sdk_iam,
    ecr: aws_sdk_ecr,
    codebuild: aws_sdk_codebuild,
    codepipeline: aws_sdk_codepipeline,
    ec2: aws_sdk_ec2,
    ecs: aws_sdk_ecs,
    tagging: aws_sdk_resourcegroupstagging,
    events: aws_sdk_eventbridge,
    cloudwatch: aws_sdk_cloudwatch,
);

impl AwsSession {
    /// The same identity for one reconcile: its steps share the clients (and connections) and
    /// one tag read per account and region (`tags_of`), which the next reconcile makes afresh.
    pub fn for_one_reconcile(&self) -> Arc<AwsSession> {
        Arc::new(AwsSession {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            partition: self.partition,
            config: self.config.clone(),
            counter: self.counter.clone(),
            path_style_s3: self.path_style_s3,
            http: self.http.clone(),
            rates: self.rates.clone(),
            clients: self.clients.clone(),
            tag_snapshot: Some(OnceCell::new()),
            shared_reads: Some(Mutex::default()),
        })
    }

    /// `read`'s answer, made once per reconcile for every step that asks with the same `key`
    /// in this account and region (e.g. one `DescribeLogGroups` for the log groups of every
    /// scope, one `DescribeVpcs` for every environment's network). A session not made for one
    /// reconcile reads every time. Only for observing: a step reads what the reconcile found
    /// when it began, as if it had read it itself first.
    pub async fn once_per_reconcile<T, F, Fut>(&self, key: &str, read: F) -> Result<Arc<T>, Failure>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let Some(shared) = &self.shared_reads else {
            return Ok(Arc::new(read().await?));
        };
        let cell = {
            let mut cells = shared
                .lock()
                .map_err(|_| Failure::terminal("Internal", "shared reads lock poisoned"))?;
            cells.entry(key.to_string()).or_default().clone()
        };
        let answer = cell
            .get_or_try_init(|| async {
                let answer: Arc<dyn Any + Send + Sync> = Arc::new(read().await?);
                Ok::<_, Failure>(answer)
            })
            .await?
            .clone();
        answer.downcast::<T>().map_err(|_| {
            Failure::terminal(
                "Internal",
                format!("shared read {key} was made with another type"),
            )
        })
    }

    /// The tags of `arn`, from one `tag:GetResources` this reconcile makes in this account and
    /// region for every resource tagged `owner` (key, value) of the services in
    /// `SNAPSHOT_SERVICES`: one read instead of one per resource. None when the snapshot
    /// cannot say: a session not made for one reconcile, another owner, or a resource missing
    /// from it (untagged, another owner's, or not visible yet: the tagging API is eventually
    /// consistent); the caller then reads the resource's own tags, so a resource claimed by
    /// another pipeline is still refused.
    pub async fn tags_of(
        &self,
        owner: (&str, &str),
        arn: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Failure> {
        let Some(cell) = &self.tag_snapshot else {
            return Ok(None);
        };
        let snapshot = cell
            .get_or_try_init(|| self.read_tag_snapshot(owner))
            .await?;
        if snapshot.owner.0 != owner.0 || snapshot.owner.1 != owner.1 {
            return Ok(None);
        }
        Ok(snapshot.tags.get(tagging_arn(arn)).cloned())
    }

    async fn read_tag_snapshot(&self, owner: (&str, &str)) -> Result<TagSnapshot, Failure> {
        use aws_sdk_resourcegroupstagging::types::TagFilter;
        let filter = TagFilter::builder().key(owner.0).values(owner.1).build();
        let mappings: Vec<_> = self
            .tagging()
            .get_resources()
            .tag_filters(filter)
            .set_resource_type_filters(Some(
                SNAPSHOT_SERVICES.iter().map(|s| s.to_string()).collect(),
            ))
            .resources_per_page(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws("tag:GetResources")?;
        let tags = mappings
            .iter()
            .filter_map(|m| {
                let arn = m.resource_arn()?;
                let tags = m
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect();
                Some((tagging_arn(arn).to_string(), tags))
            })
            .collect();
        Ok(TagSnapshot {
            owner: (owner.0.to_string(), owner.1.to_string()),
            tags,
        })
    }

    /// The SDK shares a retry budget (and, in adaptive mode, its rate limiter) among the clients of one
    /// retry partition, by default one per service for the whole process: throttling in one
    /// account would then slow every account's calls. One partition per service, account and
    /// region instead, as AWS throttles.
    fn retry_partition(&self, service: &str) -> String {
        format!("{service}-{}-{}", self.account_id, self.region)
    }

    /// The HTTP client of `service`'s clients: each request waits for a token of the bucket of
    /// its service, account and region first.
    fn http_client(&self, service: &str) -> SharedHttpClient {
        self.rates
            .limited(self.http.clone(), &self.retry_partition(service))
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        self.clients
            .s3
            .get_or_init(|| {
                aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&self.config)
                        // Emulators and VPC endpoints on a bare host need path-style addressing.
                        .force_path_style(self.path_style_s3)
                        .interceptor(self.counter.clone())
                        .retry_partition(aws_sdk_s3::config::retry::RetryPartition::new(
                            self.retry_partition("s3"),
                        ))
                        .http_client(self.http_client("s3"))
                        .build(),
                )
            })
            .clone()
    }
}

impl AwsFactory {
    /// Loads the default credential chain and region. `endpoint_url` points every client at an
    /// emulator (or a VPC endpoint); it also comes from `AWS_ENDPOINT_URL`.
    pub async fn new(
        endpoint_url: Option<String>,
        metrics: Arc<Metrics>,
        allowed_roles: Vec<String>,
        limits: ClientLimits,
    ) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(limits.timeouts())
            .retry_config(limits.retries());
        if let Some(url) = &endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let base = loader.load().await;
        let endpoint_override = endpoint_url.is_some() || base.endpoint_url().is_some();
        let http = https_client();
        Self {
            base,
            endpoint_override,
            metrics,
            allowed_roles,
            sessions: Mutex::new(HashMap::new()),
            http,
            rates: Arc::new(RateLimits::new(limits.rate)),
        }
    }

    /// The operator's own region, used when a pipeline names none.
    pub fn default_region(&self) -> Option<String> {
        self.base.region().map(|r| r.to_string())
    }

    /// Whether the operator's `--allowed-role-arn` patterns admit `role_arn`.
    pub fn role_allowed(&self, role_arn: &str) -> bool {
        self.allowed_roles.is_empty()
            || self
                .allowed_roles
                .iter()
                .any(|p| wildmatch::WildMatch::new(p).matches(role_arn))
    }

    /// A session for `key`, created (and its identity verified) on first use, then cached.
    /// Failures are not cached, so fixing a role's trust policy takes effect on the next try.
    pub fn session<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Arc<AwsSession>, Failure>> {
        Box::pin(async move {
            let cell = match self.sessions.lock() {
                Ok(mut sessions) => sessions.entry(key.clone()).or_default().clone(),
                Err(_) => Arc::new(OnceCell::new()),
            };
            cell.get_or_try_init(|| self.build(key)).await.cloned()
        })
    }

    async fn build(&self, key: &SessionKey) -> Result<Arc<AwsSession>, Failure> {
        let counter = CallCounter::new(self.metrics.clone());
        let regional = self
            .base
            .to_builder()
            .region(Region::new(key.region.clone()))
            .build();
        let (config, account_id) = match (key.parent(), key.chain.last()) {
            (Some(parent_key), Some(assume)) => {
                if !self.role_allowed(&assume.role_arn) {
                    return Err(Failure::terminal(
                        "RoleNotAllowed",
                        format!(
                            "role {} is not admitted by the operator's --allowed-role-arn patterns; ask the operator's administrators",
                            assume.role_arn
                        ),
                    ));
                }
                let parent = self.session(&parent_key).await?;
                let provider = AssumedRole {
                    sts: parent.sts(),
                    assume: assume.clone(),
                    cached: Arc::new(Mutex::new(None)),
                };
                // Assume once now: proves the role is usable and tells us its account.
                let (credentials, account) = provider.assume().await?;
                if let Ok(mut c) = provider.cached.lock() {
                    *c = Some(credentials);
                }
                let config = regional
                    .to_builder()
                    .credentials_provider(SharedCredentialsProvider::new(provider))
                    .build();
                (config, account)
            }
            _ => {
                let sts = aws_sdk_sts::Client::from_conf(
                    aws_sdk_sts::config::Builder::from(&regional)
                        .interceptor(counter.clone())
                        .build(),
                );
                let identity = sts
                    .get_caller_identity()
                    .send()
                    .await
                    .aws("sts:GetCallerIdentity")?;
                let account = identity.account().unwrap_or_default().to_string();
                (regional, account)
            }
        };
        Ok(Arc::new(AwsSession {
            account_id,
            partition: super::partition_of(&key.region),
            region: key.region.clone(),
            config,
            counter,
            path_style_s3: self.endpoint_override,
            http: self.http.clone(),
            rates: self.rates.clone(),
            clients: Arc::default(),
            tag_snapshot: None,
            shared_reads: None,
        }))
    }
}

/// The ARN the tagging API names a resource by: a log group's without the `:*` its
/// description carries.
fn tagging_arn(arn: &str) -> &str {
    arn.strip_suffix(":*").unwrap_or(arn)
}

/// The SDK's default HTTPS client, built as the SDK builds it (rustls with aws-lc, the proxy
/// from the environment), so every client can share it behind its rate limit.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Credentials from `sts:AssumeRole`, made through the parent identity's (counted) STS client
/// and refreshed five minutes before they expire.
#[derive(Clone)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    assume: Assume,
    cached: Arc<Mutex<Option<Credentials>>>,
}

impl std::fmt::Debug for AssumedRole {
    // Never print credentials or the external ID.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumedRole")
            .field("role_arn", &self.assume.role_arn)
            .finish_non_exhaustive()
    }
}

const REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl AssumedRole {
    async fn assume(&self) -> Result<(Credentials, String), Failure> {
        let role_arn = &self.assume.role_arn;
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name("delivery-operator")
            .external_id(&self.assume.external_id)
            .send()
            .await
            .aws("sts:AssumeRole")
            .map_err(|e| match e.class {
                Class::Terminal => Failure::terminal(
                    "RoleNotAssumable",
                    format!(
                        "the operator cannot assume {role_arn}: {}. Check that the role exists and that its trust policy allows the identity assuming it and requires this pipeline's external ID (docs/security.md)",
                        e.message
                    ),
                ),
                _ => e,
            })?;
        let account = out
            .assumed_role_user()
            .and_then(|u| u.arn().split(':').nth(4).map(str::to_string))
            .unwrap_or_default();
        let c = out.credentials().ok_or_else(|| {
            Failure::retryable("AwsCallFailed", "sts:AssumeRole returned no credentials")
        })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "delivery-operator-assume-role",
        );
        Ok((creds, account))
    }

    async fn current(&self) -> Result<Credentials, CredentialsError> {
        let fresh = self.cached.lock().ok().and_then(|c| c.clone()).filter(|c| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_MARGIN)
        });
        if let Some(c) = fresh {
            return Ok(c);
        }
        match self.assume().await {
            Ok((c, _)) => {
                if let Ok(mut slot) = self.cached.lock() {
                    *slot = Some(c.clone());
                }
                Ok(c)
            }
            Err(e) => Err(CredentialsError::provider_error(e)),
        }
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.current())
    }
}
