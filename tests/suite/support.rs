//! Shared test support: the sandbox (kube-apiserver, etcd, moto), clients, unique names, and the
//! operator as a separate process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use delivery_operator::api::DeliveryPipeline;
use delivery_operator::desired::{PipelineContext, Tenancy};
use kube::api::{Api, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Environment of a running sandbox (the `env` file `scripts/sandbox` writes).
pub struct Sandbox {
    pub dir: PathBuf,
    pub vars: BTreeMap<String, String>,
}

impl Sandbox {
    pub fn var(&self, key: &str) -> String {
        self.vars
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("sandbox env lacks {key}"))
    }

    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        match who {
            "admin" => self.dir.join("kubeconfig"),
            other => self.dir.join(format!("kubeconfig-{other}")),
        }
    }

    pub fn aws_endpoint(&self) -> String {
        self.var("AWS_ENDPOINT_URL")
    }

    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(Path::new(&self.var("SANDBOX_BIN")).join("kubectl"));
        c.env("KUBECONFIG", self.kubeconfig("admin"));
        c
    }

    /// The pinned helm as the administrator, its own configuration, cache and data under the
    /// sandbox (never the user's).
    pub fn helm(&self) -> Command {
        let mut c = Command::new(Path::new(&self.var("SANDBOX_BIN")).join("helm"));
        c.env("KUBECONFIG", self.kubeconfig("admin"));
        for (var, dir) in [
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_DATA_HOME", "data"),
        ] {
            c.env(var, self.dir.join("helm").join(dir));
        }
        c
    }

    /// A sandbox of its own in `dir` (fresh), stopped by a watchdog when this test binary exits.
    pub fn up(dir: PathBuf) -> Self {
        let status = Command::new(repo_root().join("scripts/sandbox"))
            .args(["up", "--owner-pid", &std::process::id().to_string()])
            .env("SANDBOX_DIR", &dir)
            .status()
            .expect("run scripts/sandbox");
        assert!(status.success(), "scripts/sandbox up failed");
        Self {
            vars: parse_env(&dir.join("env")),
            dir,
        }
    }

    /// The CRDs (established) and the operator's RBAC, as an installation has them.
    pub fn install_crds_and_rbac(&self) {
        let out = self
            .kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(repo_root().join("crds"))
            .output()
            .expect("kubectl apply crd");
        assert!(
            out.status.success(),
            "CRD install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self
            .kubectl()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/deliverypipelines.pipelines.delivery-operator.dev",
                "crd/deliverypolicies.pipelines.delivery-operator.dev",
            ])
            .output()
            .expect("kubectl wait");
        assert!(
            out.status.success(),
            "CRD not established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The operator runs as a service-account identity limited to the shipped RBAC.
        let out = self
            .kubectl()
            .args(["apply", "-f"])
            .arg(repo_root().join("deploy/rbac.yaml"))
            .output()
            .expect("rbac");
        assert!(
            out.status.success(),
            "RBAC install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops this sandbox's API server (etcd and the emulator keep running).
    pub fn stop_apiserver(&self) {
        self.sandbox_command("stop-apiserver");
    }

    /// Starts the API server `stop_apiserver` stopped, on the same port; returns once it is ready.
    pub fn start_apiserver(&self) {
        self.sandbox_command("start-apiserver");
    }

    fn sandbox_command(&self, command: &str) {
        let status = Command::new(repo_root().join("scripts/sandbox"))
            .arg(command)
            .env("SANDBOX_DIR", &self.dir)
            .status()
            .expect("run scripts/sandbox");
        assert!(status.success(), "scripts/sandbox {command} failed");
    }

    /// A client of this sandbox's API server with the identity of `kubeconfig`.
    pub async fn client(&self, kubeconfig: &Path) -> Client {
        let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kube config");
        Client::try_from(config).expect("kube client")
    }
}

fn parse_env(path: &Path) -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// The sandbox: the one `make test` started (SANDBOX_DIR), or one started for this test binary
/// with a watchdog that stops it when the binary exits.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let sandbox = match std::env::var("SANDBOX_DIR") {
            Ok(d) if Path::new(&d).join("env").exists() => Sandbox {
                vars: parse_env(&Path::new(&d).join("env")),
                dir: PathBuf::from(d),
            },
            _ => Sandbox::up(
                std::env::temp_dir().join(format!("delivery-operator-test-{}", std::process::id())),
            ),
        };
        sandbox.install_crds_and_rbac();
        sandbox
    })
}

pub async fn kube_client(who: &str) -> Client {
    let sb = sandbox();
    sb.client(&sb.kubeconfig(who)).await
}

/// SDK configuration for moto in `account` (the default one, or a member account reached via
/// its bootstrap role).
pub async fn aws_config() -> SdkConfig {
    let sb = sandbox();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(sb.aws_endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// `base` acting as a role session: AssumeRole with `base`'s credentials.
pub async fn assume_role(base: &SdkConfig, role_arn: &str) -> SdkConfig {
    let assumed = aws_sdk_sts::Client::new(base)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("test")
        .send()
        .await
        .unwrap_or_else(|e| panic!("AssumeRole {role_arn}: {e:?}"));
    let c = assumed.credentials().expect("credentials");
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "assumed",
        )))
        .build()
}

/// An administrator of a member account: its bootstrap role, assumed from the default account.
pub async fn member_config(account: &str) -> SdkConfig {
    assume_role(
        &aws_config().await,
        &format!("arn:aws:iam::{account}:role/delivery-bootstrap"),
    )
    .await
}

/// The SDK configuration of the emulator's default account or of a member account.
pub async fn config_for(account: &str) -> SdkConfig {
    if account == ACCOUNT {
        aws_config().await
    } else {
        member_config(account).await
    }
}

/// A bucket of the user's, as an S3 source: versioned and sending its events to EventBridge
/// when asked. Its own name, so no other test's trigger rule sees its uploads.
pub async fn source_bucket(s3: &aws_sdk_s3::Client, versioned: bool, sends_events: bool) -> String {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, EventBridgeConfiguration, NotificationConfiguration,
        VersioningConfiguration,
    };
    let bucket = unique("src");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    if versioned {
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
    }
    if sends_events {
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                    .build(),
            )
            .send()
            .await
            .expect("events to EventBridge");
    }
    bucket
}

pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random_range(0..0xffffff);
    format!("{prefix}-{n:06x}")
}

pub async fn create_namespace(client: &Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// A fresh namespace named after `prefix`, and the pipelines API in it.
pub async fn namespace(prefix: &str) -> (String, Api<DeliveryPipeline>) {
    let client = kube_client("admin").await;
    let ns = unique(prefix);
    create_namespace(&client, &ns).await;
    (ns.clone(), Api::namespaced(client, &ns))
}

/// A test's size from the environment variable `var` (`default` when unset).
pub fn size_from(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// One attempt to write `holder` into Lease `name` as its holder, renewed now (an
/// administrator taking the lease); the Lease written, or None when it changed meanwhile.
pub async fn claim_lease(
    leases: &Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
    holder: &str,
) -> Option<k8s_openapi::api::coordination::v1::Lease> {
    let mut current = leases.get(name).await.ok()?;
    if let Some(spec) = current.spec.as_mut() {
        spec.holder_identity = Some(holder.into());
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
    leases
        .replace(name, &kube::api::PostParams::default(), &current)
        .await
        .ok()
}

/// A fresh namespace with an operator watching it.
pub async fn start(prefix: &str) -> (String, Operator, Api<DeliveryPipeline>) {
    let client = kube_client("admin").await;
    let ns = unique(prefix);
    create_namespace(&client, &ns).await;
    let operator = Operator::start(&ns, &[]);
    (ns.clone(), operator, Api::namespaced(client, &ns))
}

/// Waits until the object is gone from the API server (its finalizer released).
/// Every event in `ns`, listed page by page.
pub async fn events_in(ns: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(kube_client("admin").await, ns);
    let mut all = Vec::new();
    let mut params = kube::api::ListParams::default().limit(50);
    loop {
        let page = events.list(&params).await.expect("events");
        all.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return all,
        }
    }
}

pub async fn gone(api: &Api<DeliveryPipeline>, name: &str) {
    gone_within(api, name, Duration::from_secs(90)).await
}

/// As [`gone`], for deletions queued behind many others.
pub async fn gone_within(api: &Api<DeliveryPipeline>, name: &str, wait: Duration) {
    eventually(&format!("{name} deleted"), wait, || async {
        match api.get(name).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Some(()),
            _ => None,
        }
    })
    .await
}

pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn condition<'a>(
    dp: &'a DeliveryPipeline,
    type_: &str,
) -> Option<&'a delivery_operator::api::Condition> {
    dp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The namespace of the operator's service account, where its leader-election Leases live
/// (`deploy/rbac.yaml` grants it leases there and nowhere else).
pub const LEASE_NAMESPACE: &str = "delivery-operator-system";

/// The operator binary, running as a separate process with the RBAC-limited identity.
pub struct Operator {
    child: Child,
    pub metrics_url: String,
    /// The AWS access-key ID this process signs with, its own: the emulator's record of this
    /// key ([`crate::emulator::calls_by`]) is every call this operator made.
    pub access_key: String,
    /// Its leader-election identity (`POD_NAME`).
    pub identity: String,
    log: PathBuf,
}

impl Operator {
    /// An operator watching `namespace`, with leader election on (as shipped) on a Lease of
    /// its own, so it leads at once and tests stay independent.
    pub fn start(namespace: &str, extra_env: &[(&str, &str)]) -> Self {
        let identity = unique("operator");
        let log = sandbox().dir.join(format!("operator-{namespace}.log"));
        Self::launch(namespace, extra_env, &[], identity, log)
    }

    /// A replica named `identity` (its `POD_NAME`), with `args` after the defaults (later
    /// flags win, e.g. `--leader-elect-lease-name` to share a Lease with another replica).
    /// Logs to `operator-<namespace>-<identity>.log` in the sandbox directory.
    pub fn start_replica(namespace: &str, identity: &str, args: &[&str]) -> Self {
        let log = sandbox()
            .dir
            .join(format!("operator-{namespace}-{identity}.log"));
        Self::launch(namespace, &[], args, identity.to_string(), log)
    }

    fn launch(
        namespace: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
        identity: String,
        log: PathBuf,
    ) -> Self {
        let sb = sandbox();
        let port = free_port();
        let access_key = crate::emulator::unique_access_key();
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Self::command();
        cmd.args([
            "run",
            "--namespace",
            namespace,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args(args)
        .env("KUBECONFIG", sb.kubeconfig("operator"))
        .env("AWS_ENDPOINT_URL", sb.aws_endpoint())
        .env("AWS_ACCESS_KEY_ID", &access_key)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info,delivery_operator=debug")
        .env("POD_NAME", &identity)
        .env("POD_NAMESPACE", LEASE_NAMESPACE)
        .env("LEADER_ELECT_LEASE_NAME", &identity)
        .env_remove("AWS_PROFILE")
        .env_remove("LEADER_ELECT")
        // The operator logs to stdout; panics and early errors go to stderr.
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, port, access_key, identity, log)
    }

    /// The operator binary, not yet configured.
    pub fn command() -> Command {
        // The bench may run another build of the same source (`scripts/bench` with
        // PROFILE=release).
        match std::env::var_os("OPERATOR_BINARY") {
            Some(binary) => Command::new(binary),
            None => Command::new(env!("CARGO_BIN_EXE_delivery-operator")),
        }
    }

    /// The process's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.memory_kib("VmHWM")
    }

    /// One line of the operator's `/proc/PID/status`, in KiB: `VmHWM` (peak resident), `VmRSS`,
    /// `RssAnon` (heap and stacks), `RssFile` (the binary's code pages).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the operator's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in the operator's /proc status"))
    }

    /// Starts `cmd` (from [`Operator::command`], configured by the caller) whose metrics listen
    /// on 127.0.0.1:`port`, whose AWS access-key ID is `access_key`, whose leader-election
    /// identity is `identity` and whose output goes to `log`.
    pub fn spawn(
        mut cmd: Command,
        port: u16,
        access_key: String,
        identity: String,
        log: PathBuf,
    ) -> Self {
        let child = cmd.spawn().expect("start operator");
        Self {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            access_key,
            identity,
            log,
        }
    }

    /// Stops the process at once (SIGKILL), as a crashed node or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM), as Kubernetes does before it deletes a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for the operator")
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log without its terminal colours, for matching `field=value` pairs.
    pub fn plain_log(&self) -> String {
        let mut plain = String::new();
        let log = self.log();
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An escape sequence runs to its final letter (`m` for colours).
                for e in chars.by_ref() {
                    if e.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// Fails unless the operator's own call metric equals the emulator's record of this
    /// process's access key, per `Service:Operation` and kind, every attempt counted.
    /// A reconcile may be between the metric's scrape and the record's read: the two are
    /// compared again until they agree or 30 s pass.
    pub async fn assert_calls_match_record(&self) {
        let agreed = tokio::time::timeout(
            Duration::from_secs(30),
            eventually(
                "the call metric to agree with the record",
                Duration::MAX,
                || async {
                    let metrics = self.metrics().await;
                    metric_record_differences(&metrics, &self.access_key)
                        .await
                        .is_empty()
                        .then_some(())
                },
            ),
        )
        .await;
        if agreed.is_err() {
            let metrics = self.metrics().await;
            let differences = metric_record_differences(&metrics, &self.access_key).await;
            assert_no_differences(&self.access_key, &differences);
        }
    }

    pub async fn metrics(&self) -> Metrics {
        let text = eventually(
            "operator metrics endpoint",
            Duration::from_secs(30),
            || async {
                reqwest::get(&self.metrics_url)
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            },
        )
        .await;
        Metrics::parse(&text)
    }

    /// The emulator's sequence number of this operator's last call: calls after it are
    /// [`Operator::calls_after`].
    pub async fn mark(&self) -> u64 {
        crate::emulator::last_seq(&self.access_key).await
    }

    /// This operator's calls after `mark`, from the emulator's record.
    pub async fn calls_after(&self, mark: u64) -> Vec<crate::emulator::Recorded> {
        crate::emulator::calls_after(&self.access_key, mark).await
    }

    /// Every call this operator made, from the emulator's record.
    pub async fn calls(&self) -> Vec<crate::emulator::Recorded> {
        crate::emulator::calls_by(&self.access_key).await
    }

    /// The calls of one requested reconcile of `name` (the emulator's record). The caller has
    /// waited for the previous reconcile's condition (Ready at a generation, a reason).
    pub async fn calls_of_reconcile(
        &self,
        api: &Api<DeliveryPipeline>,
        name: &str,
    ) -> Vec<crate::emulator::Recorded> {
        let mark = self.mark().await;
        reconcile_and_wait(api, name).await;
        self.calls_after(mark).await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Fails unless `metrics` (a `delivery_operator_aws_api_calls_total` exposition) counts exactly
/// what the emulator recorded for `access_key`, for reads and writes.
pub async fn assert_metrics_match_record(metrics: &Metrics, access_key: &str) {
    let differences = metric_record_differences(metrics, access_key).await;
    assert_no_differences(access_key, &differences);
}

async fn metric_record_differences(metrics: &Metrics, access_key: &str) -> Vec<String> {
    let calls = crate::emulator::calls_by(access_key).await;
    let mut differences = Vec::new();
    for kind in ["read", "write"] {
        let counted = metrics.aws_calls(kind);
        let recorded = crate::emulator::count(&calls, kind);
        let keys: std::collections::BTreeSet<&String> =
            counted.keys().chain(recorded.keys()).collect();
        for k in keys {
            let c = counted.get(k).copied().unwrap_or(0.0);
            let r = recorded.get(k).copied().unwrap_or(0.0);
            if c != r {
                differences.push(format!("{kind} {k}: metric {c}, emulator {r}"));
            }
        }
    }
    differences
}

fn assert_no_differences(access_key: &str, differences: &[String]) {
    assert!(
        differences.is_empty(),
        "the call metric disagrees with the emulator's record for {access_key}:\n  {}",
        differences.join("\n  ")
    );
}

/// Prometheus samples: metric line (name + labels) -> value.
#[derive(Debug, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.rsplit_once(' '))
                .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
                .collect(),
        )
    }

    pub fn reconciles(&self) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("delivery_operator_reconciles_total"))
            .map(|(_, v)| v)
            .sum()
    }

    /// `delivery_operator_leader`: 1 while the process runs its controller, 0 while it waits
    /// for the lease.
    pub fn leader(&self) -> Option<f64> {
        self.0.get("delivery_operator_leader").copied()
    }

    /// AWS calls of `kind` ("read" or "write"), by `Service:Operation`.
    pub fn aws_calls(&self, kind: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            if !k.starts_with("delivery_operator_aws_api_calls_total{")
                || !k.contains(&format!("kind=\"{kind}\""))
            {
                continue;
            }
            let label = |name: &str| {
                k.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            *out.entry(format!("{}:{}", label("service"), label("operation")))
                .or_insert(0.0) += v;
        }
        out
    }
}

/// A DeliveryPipeline from an example manifest, renamed into `namespace`.
pub fn example(file: &str, namespace: &str, name: &str) -> DeliveryPipeline {
    let text = std::fs::read_to_string(repo_root().join("examples").join(file)).expect("example");
    let mut dp: DeliveryPipeline = serde_yaml::from_str(&text).expect("example parses");
    dp.metadata.namespace = Some(namespace.into());
    dp.metadata.name = Some(name.into());
    dp
}

/// The emulator's default account and the operator's region in every test.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The rendering context of a pipeline the operator runs in the default account.
pub fn ctx_of(dp: &DeliveryPipeline) -> PipelineContext {
    PipelineContext {
        namespace: dp.namespace().unwrap_or_default(),
        name: dp.name_any(),
        spec: dp.spec.clone(),
        account_id: ACCOUNT.into(),
        region: REGION.into(),
        retired_tag_keys: Vec::new(),
        tenancy: Tenancy {
            cluster_id: cluster_id().into(),
            ..Tenancy::default()
        },
    }
}

/// The sandbox cluster's identity as the operator derives it: the kube-system namespace's UID.
pub fn cluster_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let out = sandbox()
            .kubectl()
            .args([
                "get",
                "namespace",
                "kube-system",
                "-o",
                "jsonpath={.metadata.uid}",
            ])
            .output()
            .expect("kubectl get namespace kube-system");
        let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !uid.is_empty(),
            "kube-system has no UID: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        uid
    })
}

/// The reason of a service's condition (True: the service is as declared, at no task) until the
/// pipeline first deploys to it. The emulator runs no pipeline, so a test pipeline's services
/// stay there unless a test deploys.
pub const AWAITING_FIRST_IMAGE: &str = "AwaitingFirstImage";

/// Every resource is in its declared state.
pub fn is_ready(dp: &DeliveryPipeline) -> bool {
    condition(dp, "Ready").is_some_and(|c| c.status == "True")
}

/// Waits until `name` is Ready ([`is_ready`]) for `generation`, and returns it then.
pub async fn wait_ready(
    api: &Api<DeliveryPipeline>,
    name: &str,
    generation: i64,
) -> DeliveryPipeline {
    eventually(
        &format!("{name} Ready at generation {generation}"),
        Duration::from_secs(90),
        || async {
            let dp = api.get(name).await.ok()?;
            let observed = dp.status.as_ref()?.observed_generation?;
            (is_ready(&dp) && observed == generation).then_some(dp)
        },
    )
    .await
}

/// Asks the operator for a reconcile of `name` now.
pub async fn request_reconcile(api: &Api<DeliveryPipeline>, name: &str) -> String {
    let value = unique("now");
    api.patch(
        name,
        &PatchParams::default(),
        &delivery_operator::controller::reconcile_request_patch(&value),
    )
    .await
    .expect("annotate");
    value
}

/// Requests a reconcile and waits until the operator acted on it
/// (`status.lastHandledReconcileAt`): every reconcile of `name` queued before it has finished,
/// its AWS calls are all in the emulator's record. Returns the pipeline then.
pub async fn reconcile_and_wait(api: &Api<DeliveryPipeline>, name: &str) -> DeliveryPipeline {
    let value = request_reconcile(api, name).await;
    eventually(
        "the operator to act on the reconcile request",
        Duration::from_secs(120),
        || async {
            let dp = api.get(name).await.ok()?;
            let handled = dp.status.as_ref()?.last_handled_reconcile_at.as_deref();
            (handled == Some(value.as_str())).then_some(dp)
        },
    )
    .await
}

/// Call counts by `Service:Operation`, as [`Metrics::aws_calls`] and the emulator's record give
/// them.
pub fn counts(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Retention in days of each log group whose name starts with `prefix`, read from CloudWatch Logs.
pub async fn log_group_retention(
    logs: &aws_sdk_cloudwatchlogs::Client,
    prefix: &str,
) -> BTreeMap<String, i32> {
    logs.describe_log_groups()
        .log_group_name_prefix(prefix)
        .send()
        .await
        .expect("log groups")
        .log_groups()
        .iter()
        .map(|g| {
            (
                g.log_group_name().unwrap_or_default().to_string(),
                g.retention_in_days().unwrap_or_default(),
            )
        })
        .collect()
}

/// What a reconcile that died between CreateKey and CreateAlias leaves behind: a key with the
/// pipeline's description, policy and tags, and no alias. Returns its ARN.
pub async fn key_left_by_a_crash(kms: &aws_sdk_kms::Client, dp: &DeliveryPipeline) -> String {
    let desired = delivery_operator::groups::encryption_key::desired::encryption_key(&ctx_of(dp));
    let tags: Vec<aws_sdk_kms::types::Tag> = desired
        .tags
        .tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_kms::types::Tag::builder()
                .tag_key(k)
                .tag_value(v)
                .build()
                .expect("tag")
        })
        .collect();
    kms.create_key()
        .description(&desired.description)
        .policy(desired.initial_policy.to_string())
        .set_tags(Some(tags))
        .send()
        .await
        .expect("a key without its alias")
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string()
}
