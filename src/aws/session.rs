//! AWS sessions: SDK configuration per (credentials, region), with optional role assumption,
//! an endpoint override for emulators, and the call counter on every client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
};

use super::error::{AwsError, classify};
use crate::metrics::{CallCounter, Metrics};

/// Which identity a session acts as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub region: String,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

/// Builds and caches sessions. One per operator process.
pub struct AwsFactory {
    base: SdkConfig,
    endpoint_override: bool,
    metrics: Arc<Metrics>,
    /// Held across creation, so pipelines reconciled at once share one identity lookup.
    sessions: tokio::sync::Mutex<HashMap<SessionKey, Arc<AwsSession>>>,
}

/// An identity in one account and region, with clients for every service the operator uses.
/// Clients are built once per session and shared (they are cheap handles to one connection pool).
pub struct AwsSession {
    pub account_id: String,
    pub region: String,
    pub partition: &'static str,
    kms: aws_sdk_kms::Client,
    s3: aws_sdk_s3::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
}

impl AwsFactory {
    /// Loads the default credential chain and region. `endpoint_url` points every client at an
    /// emulator (or a VPC endpoint); it also comes from `AWS_ENDPOINT_URL`.
    pub async fn new(endpoint_url: Option<String>, metrics: Arc<Metrics>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = &endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let base = loader.load().await;
        let endpoint_override = endpoint_url.is_some() || base.endpoint_url().is_some();
        Self {
            base,
            endpoint_override,
            metrics,
            sessions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The operator's own region, used when a pipeline names none.
    pub fn default_region(&self) -> Option<String> {
        self.base.region().map(|r| r.to_string())
    }

    /// A session for `key`, created (and its identity verified) on first use, then cached.
    /// Failures are not cached, so fixing a role's trust policy takes effect on the next try.
    pub async fn session(&self, key: &SessionKey) -> Result<Arc<AwsSession>, AwsError> {
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(key) {
            return Ok(s.clone());
        }
        let counter = CallCounter::new(self.metrics.clone());
        let region = Region::new(key.region.clone());
        let regional = self.base.to_builder().region(region.clone()).build();
        let sts = sts_client(&regional, &counter);

        let (config, account_id) = match &key.role_arn {
            Some(role_arn) => {
                let provider = AssumedRole {
                    sts: sts.clone(),
                    role_arn: role_arn.clone(),
                    external_id: key.external_id.clone(),
                    cached: Arc::new(Mutex::new(None)),
                };
                // Assume once now: proves the role is usable and tells us its account.
                let (credentials, account) = provider.assume().await.map_err(|e| match e {
                    AwsError::Terminal { message, .. } => AwsError::terminal(
                        "CredentialsRoleNotAssumable",
                        format!(
                            "the operator cannot assume spec.credentials.roleArn {role_arn}: {message}. Check that the role exists and that its trust policy allows the operator's identity (and the externalId, if one is set)"
                        ),
                    ),
                    other => other,
                })?;
                if let Ok(mut c) = provider.cached.lock() {
                    *c = Some(credentials);
                }
                let config = regional
                    .to_builder()
                    .credentials_provider(SharedCredentialsProvider::new(provider))
                    .build();
                (config, account)
            }
            None => {
                let identity = sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| classify("sts:GetCallerIdentity", e))?;
                let account = identity.account().unwrap_or_default().to_string();
                (regional, account)
            }
        };
        let session = Arc::new(AwsSession {
            account_id,
            partition: crate::desired::partition_of(&key.region),
            region: key.region.clone(),
            kms: aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(&config)
                    .interceptor(counter.clone())
                    .build(),
            ),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    // Emulators and VPC endpoints on a bare host need path-style addressing.
                    .force_path_style(self.endpoint_override)
                    .interceptor(counter.clone())
                    .build(),
            ),
            tagging: aws_sdk_resourcegroupstagging::Client::from_conf(
                aws_sdk_resourcegroupstagging::config::Builder::from(&config)
                    .interceptor(counter)
                    .build(),
            ),
        });
        sessions.insert(key.clone(), session.clone());
        Ok(session)
    }
}

fn sts_client(config: &SdkConfig, counter: &CallCounter) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(config)
            .interceptor(counter.clone())
            .build(),
    )
}

impl AwsSession {
    pub fn kms(&self) -> aws_sdk_kms::Client {
        self.kms.clone()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        self.s3.clone()
    }

    pub fn tagging(&self) -> aws_sdk_resourcegroupstagging::Client {
        self.tagging.clone()
    }
}

/// Credentials from `sts:AssumeRole`, made through our own (counted) STS client and refreshed
/// five minutes before they expire.
#[derive(Clone)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    external_id: Option<String>,
    cached: Arc<Mutex<Option<Credentials>>>,
}

impl std::fmt::Debug for AssumedRole {
    // Never print credentials or the external ID.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumedRole")
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

const REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl AssumedRole {
    async fn assume(&self) -> Result<(Credentials, String), AwsError> {
        let mut request = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name("delivery-operator");
        if let Some(id) = &self.external_id {
            request = request.external_id(id);
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify("sts:AssumeRole", e))?;
        let account = out
            .assumed_role_user()
            .and_then(|u| u.arn().split(':').nth(4).map(str::to_string))
            .unwrap_or_default();
        let c = out.credentials().ok_or_else(|| AwsError::Retryable {
            reason: "AwsCallFailed".into(),
            message: "sts:AssumeRole returned no credentials".into(),
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
