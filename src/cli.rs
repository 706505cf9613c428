//! The command line: `run` (the operator), `crd` (print or write the CRD), `plan` (offline render of
//! the desired AWS state of a manifest), `diff` (what a reconcile of a manifest would change in
//! AWS now, read only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand};
use kube::ResourceExt;
use tracing::{Instrument, error, info, info_span};

use crate::api::{self, DeliveryPipeline};
use crate::aws::{AwsFactory, ClientLimits, RateLimit};
use crate::controller::shard::Shard;
use crate::controller::{self, Context, Scope, Settings, Tenants};
use crate::desired::PipelineContext;
use crate::leader::{
    self, LeaderElector, ShardLease, Shutdown, Timing, lead, lead_shards, reconcile_until_stopped,
    shard_lease_name, stopped,
};
use crate::metrics::Metrics;
use crate::render::{drift as diff, operator_policy, plan};
use std::num::NonZeroU32;

#[derive(Parser)]
#[command(
    name = "delivery-operator",
    version,
    about = "DeliveryPipeline operator for AWS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Print the CustomResourceDefinition, or write it into a directory.
    Crd {
        /// Directory to write `deliverypipelines.yaml` and `deliverypolicies.yaml` into; prints both
        /// to stdout (one YAML stream) when absent.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Print the least-privilege IAM policy the operator's own identity needs.
    IamPolicy(IamPolicyArgs),
    /// Render the desired AWS state of a DeliveryPipeline manifest, offline.
    Plan {
        /// Manifest file (YAML).
        file: PathBuf,
        /// AWS account to render for.
        #[arg(long, default_value = "123456789012")]
        account_id: String,
        /// Region used when the manifest names none.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Yaml)]
        output: PlanFormat,
    },
    /// Show what a reconcile of a DeliveryPipeline manifest would change in AWS now, reading
    /// only. Needs AWS credentials; a kubeconfig is optional (with one, the live object's
    /// status supplies the recorded region and the tag keys already applied). Exit status: 0
    /// when nothing would change, 1 when something would, 2 on error.
    Diff(DiffArgs),
}

#[derive(clap::Args)]
struct DiffArgs {
    /// Manifest file (YAML).
    file: PathBuf,
    /// Namespace when the manifest names none (else the kubeconfig's, else `default`).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Do not read the live object from the cluster, even when a kubeconfig is available.
    #[arg(long)]
    no_cluster: bool,
    /// AWS endpoint override (an emulator or VPC endpoint); also read from AWS_ENDPOINT_URL.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    aws_endpoint_url: Option<String>,
    /// The operator's cluster identity (its --cluster-id); default: read from the cluster.
    #[arg(long, env = "CLUSTER_ID")]
    cluster_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    output: DiffFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PlanFormat {
    Yaml,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RetryMode {
    Standard,
    Adaptive,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespace to watch (repeatable); all namespaces when absent.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Address of the metrics and health endpoint.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Seconds between drift checks of a pipeline that is in sync.
    #[arg(long, env = "RESYNC_INTERVAL_SECONDS", default_value_t = 600)]
    resync_interval_seconds: u64,
    /// Seconds between looks at a running execution (two calls; the pipeline's other resources
    /// wait for the drift check).
    #[arg(long, env = "EXECUTION_POLL_SECONDS", default_value_t = 30)]
    execution_poll_seconds: u64,
    /// Seconds between drift checks of a Ready pipeline while one of its executions is in
    /// progress (a manual approval can wait days); its execution is still polled.
    #[arg(
        long,
        env = "DRIFT_CHECK_WHILE_RUNNING_SECONDS",
        default_value_t = 3600
    )]
    drift_check_while_running_seconds: u64,
    /// Seconds a whole check of a pipeline's IAM roles is trusted by the resyncs after it: IAM
    /// is global and throttled account-wide, and its roles are four reads each. A spec or
    /// policy change, a reconcile request and a restart check IAM at once; 0 reads IAM every
    /// resync.
    #[arg(long, env = "IAM_CHECK_INTERVAL_SECONDS", default_value_t = 3600)]
    iam_check_interval_seconds: u64,
    /// Seconds one AWS request (one attempt) may take before it is abandoned and retried.
    #[arg(long, env = "AWS_ATTEMPT_TIMEOUT_SECONDS", default_value_t = 20)]
    aws_attempt_timeout_seconds: u64,
    /// Seconds one AWS operation may take, its retries included.
    #[arg(long, env = "AWS_OPERATION_TIMEOUT_SECONDS", default_value_t = 60)]
    aws_operation_timeout_seconds: u64,
    /// Requests per second to one AWS service in one account and region (every attempt; a
    /// request over the rate waits for its turn instead of being throttled by AWS).
    #[arg(long, env = "AWS_REQUESTS_PER_SECOND", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    aws_requests_per_second: u32,
    /// Requests to one service, account and region that may go at once above that rate.
    #[arg(long, env = "AWS_REQUEST_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    aws_request_burst: u32,
    /// The AWS SDK's retry mode: `standard`, or `adaptive` (the SDK's own client-side rate
    /// limiter on top of the request rate above, cut on every throttle).
    #[arg(long, env = "AWS_RETRY_MODE", value_enum, default_value_t = RetryMode::Standard)]
    aws_retry_mode: RetryMode,
    /// Attempts per AWS operation, the first included (each within the attempt timeout, all
    /// within the operation timeout).
    #[arg(long, env = "AWS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10))]
    aws_max_attempts: u32,
    /// Seconds a step may wait for IAM to show a principal (a role just created) before the
    /// wait is reported as an error: longer than propagation takes means it will not appear.
    #[arg(long, env = "IAM_PROPAGATION_LIMIT_SECONDS", default_value_t = 120)]
    iam_propagation_limit_seconds: u64,
    /// Seconds the reconciles in flight may take to finish after SIGTERM; keep it below the
    /// pod's termination grace period (the chart sets it 10 s below), so the lease is released
    /// before the process is killed.
    #[arg(long, env = "STOP_GRACE_SECONDS", default_value_t = 20)]
    stop_grace_seconds: u64,
    /// Seconds one reconcile of a pipeline may take before it is stopped and retried.
    #[arg(long, env = "RECONCILE_DEADLINE_SECONDS", default_value_t = 300)]
    reconcile_deadline_seconds: u64,
    /// Seconds between retries of a pipeline stuck on a terminal error.
    #[arg(long, env = "TERMINAL_RETRY_SECONDS", default_value_t = 300)]
    terminal_retry_seconds: u64,
    /// Pipelines reconciled at once (per watched namespace).
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 8)]
    max_concurrent_reconciles: u16,
    /// AWS endpoint override (an emulator or VPC endpoint); also read from AWS_ENDPOINT_URL.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    aws_endpoint_url: Option<String>,
    /// Role ARN patterns (`*` matches anything) that pipelines may name in spec.credentials
    /// and environments; empty: any role.
    #[arg(
        long = "allowed-role-arn",
        env = "ALLOWED_ROLE_ARNS",
        value_delimiter = ','
    )]
    allowed_role_arns: Vec<String>,
    /// This cluster's identity, in every external ID and owner tag, so two clusters sharing an
    /// AWS account never act on each other's resources. Default: the UID of the kube-system
    /// namespace.
    #[arg(long, env = "CLUSTER_ID")]
    cluster_id: Option<String>,
    /// Refuse pipelines of namespaces that no DeliveryPolicy selects (for clusters shared by
    /// many teams: nothing runs without the platform team's guardrails).
    #[arg(
        long,
        env = "REQUIRE_POLICY",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    require_policy: bool,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Elect a leader on a Lease so that of several replicas only one reconciles; the others
    /// wait to take over. `--leader-elect=false` reconciles at once (run a single replica).
    #[arg(
        long,
        env = "LEADER_ELECT",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    leader_elect: bool,
    /// Name of the coordination.k8s.io/v1 Lease the replicas elect a leader on.
    #[arg(
        long,
        env = "LEADER_ELECT_LEASE_NAME",
        default_value = "delivery-operator"
    )]
    leader_elect_lease_name: String,
    /// Namespace of the Lease: the operator's own (POD_NAMESPACE in a pod); else the
    /// kubeconfig's namespace (or the in-cluster one), else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    leader_elect_lease_namespace: Option<String>,
    /// Split the pipelines into this many shards by UID, each reconciled by the holder of its
    /// own Lease (`<lease name>-shard-<i>-of-<n>`), its watch filtered by the API server
    /// (`shardSelector`, feature gate `ShardedListAndWatch`) and again by the operator.
    /// Every replica must run with the same count. 1: one leader reconciles everything.
    #[arg(long, env = "SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// The most shards one replica holds at a time. With 1 (the default), N replicas share N
    /// shards and a shard whose replica stopped waits for a replica without one (a spare, or
    /// the stopped one restarted); above 1, a replica also takes over a stopped replica's shard.
    #[arg(long, env = "MAX_SHARDS_PER_REPLICA", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_shards_per_replica: u32,
    /// Seconds another replica's claim on the lease lasts after it last changed, measured on
    /// the waiting replica's own clock.
    #[arg(
        long,
        env = "LEADER_ELECT_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    leader_elect_lease_duration_seconds: u64,
    /// Seconds the leader keeps leading without a successful renewal; then it exits.
    #[arg(
        long,
        env = "LEADER_ELECT_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    leader_elect_renew_deadline_seconds: u64,
    /// Seconds between attempts to acquire or renew the lease.
    #[arg(long, env = "LEADER_ELECT_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    leader_elect_retry_period_seconds: u64,
}

/// Parses the command line and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    // kube and the AWS SDK both use rustls; pick its provider once for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Crd { output_dir } => write_crd(output_dir),
        Command::Plan {
            file,
            account_id,
            region,
            output,
        } => print_plan(&file, account_id, region, output),
        Command::Run(args) => run(args).await,
        Command::IamPolicy(args) => print_iam_policy(args),
        Command::Diff(args) => print_diff(args).await,
    }
}

fn write_crd(output_dir: Option<PathBuf>) -> ExitCode {
    let files = match api::crd_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("could not render the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (file, yaml) in files {
        match &output_dir {
            // One YAML stream, as `kubectl apply -f -` takes it.
            None => print!("---\n{yaml}"),
            Some(dir) => {
                let path = dir.join(file);
                if let Err(e) =
                    std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, yaml))
                {
                    eprintln!("could not write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
struct IamPolicyArgs {
    /// The AWS account the policy is attached in (`*`: any).
    #[arg(long, default_value = "*")]
    account_id: String,
    /// The region the operator works in (`*`: any).
    #[arg(long, default_value = "*")]
    region: String,
    /// AWS partition.
    #[arg(long, default_value = "aws")]
    partition: String,
    /// IAM path of the roles the operator creates (the DeliveryPolicies' `roles.path`).
    #[arg(long, default_value = "/")]
    role_path: String,
    /// Permissions boundary every created role must carry (the DeliveryPolicies'
    /// `roles.permissionsBoundaryArn`); the policy then denies roles without it.
    #[arg(long)]
    permissions_boundary_arn: Option<String>,
    /// Role ARN patterns pipelines may assume (`spec.credentials`, `managementRoleArn`), e.g.
    /// `arn:aws:iam::222222222222:role/delivery-*`; default: any role of --account-id.
    #[arg(long = "assumable-role-arn")]
    assumable_role_arns: Vec<String>,
    /// `policy`: the policy document; `plan`: as `plan --output json` lists policies (what
    /// tests/iam reads).
    #[arg(long, default_value = "policy")]
    output: String,
}

fn print_iam_policy(args: IamPolicyArgs) -> ExitCode {
    let assumable_roles = if args.assumable_role_arns.is_empty() {
        vec![format!(
            "arn:{}:iam::{}:role/*",
            args.partition, args.account_id
        )]
    } else {
        args.assumable_role_arns
    };
    let scope = operator_policy::Scope {
        partition: args.partition,
        account: args.account_id.clone(),
        region: args.region,
        role_path: args.role_path,
        permissions_boundary_arn: args.permissions_boundary_arn,
        assumable_roles,
    };
    let policy = operator_policy::operator_policy(&scope);
    let out = match args.output.as_str() {
        "policy" => policy,
        "plan" => serde_json::json!({"policies": [{
            "group": "Operator",
            "account": args.account_id,
            "kind": "identity",
            "name": "delivery-operator",
            "document": policy,
        }]}),
        other => {
            eprintln!("unknown --output {other}: policy or plan");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string_pretty(&out) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("could not render the policy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A DeliveryPipeline manifest (YAML) from `file`, or why it is not one.
fn read_manifest(file: &Path) -> Result<DeliveryPipeline, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    serde_yaml::from_str(&text)
        .map_err(|e| format!("{} is not a valid DeliveryPipeline: {e}", file.display()))
}

fn print_plan(file: &Path, account_id: String, region: String, output: PlanFormat) -> ExitCode {
    let dp = match read_manifest(file) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let region = dp.spec.region.clone().unwrap_or(region);
    let ctx = PipelineContext::of(&dp, &account_id, &region);
    let plan = plan::plan(&ctx);
    let rendered = match output {
        PlanFormat::Yaml => serde_yaml::to_string(&plan).map_err(|e| e.to_string()),
        PlanFormat::Json => serde_json::to_string_pretty(&plan)
            .map(|json| json + "\n")
            .map_err(|e| e.to_string()),
    };
    match rendered {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("could not render the plan: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the manifest (and, when a cluster is reachable, the live object's status), runs the
/// observe-only walk and prints what would change.
async fn print_diff(args: DiffArgs) -> ExitCode {
    const ERROR: u8 = 2;
    let mut dp = match read_manifest(&args.file) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(ERROR);
        }
    };
    let cluster = if args.no_cluster {
        None
    } else {
        kube::Config::infer().await.ok()
    };
    let namespace = dp
        .metadata
        .namespace
        .clone()
        .or(args.namespace)
        .or_else(|| cluster.as_ref().map(|c| c.default_namespace.clone()))
        .unwrap_or_else(|| "default".into());
    dp.metadata.namespace = Some(namespace.clone());
    let live_client = cluster.and_then(|config| kube::Client::try_from(config).ok());
    if let Some(client) = &live_client {
        match live_status(client, &namespace, &dp.name_any()).await {
            Ok(status) => dp.status = status,
            Err(e) => eprintln!(
                "note: could not read {namespace}/{} from the cluster ({e}); comparing without its status",
                dp.name_any()
            ),
        }
    }
    let admitted = match diff_admission(&dp, args.cluster_id, live_client).await {
        Ok(admitted) => admitted,
        Err(e) => {
            eprintln!("cannot compare: {e}");
            return ExitCode::from(ERROR);
        }
    };
    let aws = AwsFactory::new(
        args.aws_endpoint_url,
        Arc::new(Metrics::default()),
        Vec::new(),
        ClientLimits::default(),
    )
    .await;
    let report = match controller::preview(&dp, &aws, &admitted).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("cannot compare: {e}");
            return ExitCode::from(ERROR);
        }
    };
    let summary = diff::Summary::of(&report);
    match args.output {
        DiffFormat::Text => print!("{}", summary.text()),
        DiffFormat::Json => match serde_json::to_string_pretty(&summary) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("could not render the diff: {e}");
                return ExitCode::from(ERROR);
            }
        },
    }
    ExitCode::from(summary.exit_code())
}

/// What the diff runs under: the cluster's policies and identity when a cluster is reachable
/// (as the operator would), else none and the given cluster ID.
async fn diff_admission(
    dp: &DeliveryPipeline,
    cluster_id: Option<String>,
    client: Option<kube::Client>,
) -> Result<controller::tenants::Admitted, String> {
    let Some(client) = client else {
        let cluster_id = cluster_id.ok_or(
            "without a cluster, --cluster-id (the operator's) is needed: it makes the external ID of every AssumeRole",
        )?;
        return controller::tenants::Admitted::without_policies(&cluster_id, dp)
            .map_err(|v| v.to_string());
    };
    let cluster_id = match cluster_id {
        Some(id) => id,
        None => controller::tenants::cluster_identity(&client)
            .await
            .map_err(|e| format!("could not read the cluster identity: {e}"))?,
    };
    let tenants = Tenants::start(&client, cluster_id, false);
    tenants.ready().await;
    tenants.admit(dp).map_err(|v| v.to_string())
}

/// The live object's status, if the object exists.
async fn live_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<api::DeliveryPipelineStatus>, kube::Error> {
    let pipelines: kube::Api<DeliveryPipeline> = kube::Api::namespaced(client.clone(), namespace);
    Ok(pipelines.get_opt(name).await?.and_then(|live| live.status))
}

async fn run(args: RunArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,aws=warn,kube=warn".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let timing = if args.leader_elect {
        let timing = Timing {
            lease_duration: Duration::from_secs(args.leader_elect_lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.leader_elect_renew_deadline_seconds),
            retry_period: Duration::from_secs(args.leader_elect_retry_period_seconds),
        };
        match timing.validate() {
            Ok(t) => Some(t),
            Err(e) => {
                error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if args.shards > 1 && timing.is_none() {
        error!(
            "cannot start: --shards above 1 needs leader election (each shard is owned by the holder of its Lease)"
        );
        return ExitCode::FAILURE;
    }
    let kube_config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "no Kubernetes configuration (kubeconfig or in-cluster)");
            return ExitCode::FAILURE;
        }
    };
    let client = match kube::Client::try_from(kube_config.clone()) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot build a Kubernetes client");
            return ExitCode::FAILURE;
        }
    };
    let identity = leader::default_identity();
    let metrics = Arc::new(Metrics::default());
    let allowed_roles = args
        .allowed_role_arns
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let limits = ClientLimits {
        attempt_timeout: Duration::from_secs(args.aws_attempt_timeout_seconds.max(1)),
        operation_timeout: Duration::from_secs(args.aws_operation_timeout_seconds.max(1)),
        rate: RateLimit {
            per_second: NonZeroU32::new(args.aws_requests_per_second).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(args.aws_request_burst).unwrap_or(NonZeroU32::MIN),
        },
        adaptive: args.aws_retry_mode == RetryMode::Adaptive,
        max_attempts: args.aws_max_attempts,
    };
    let aws = AwsFactory::new(
        args.aws_endpoint_url.clone(),
        metrics.clone(),
        allowed_roles,
        limits,
    )
    .await;
    let settings = Settings {
        // An empty WATCH_NAMESPACES (or stray commas) means all namespaces, not namespace "".
        namespaces: args
            .namespaces
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        resync_interval: Duration::from_secs(args.resync_interval_seconds),
        execution_poll: Duration::from_secs(args.execution_poll_seconds),
        drift_check_while_running: Duration::from_secs(args.drift_check_while_running_seconds),
        terminal_retry: Duration::from_secs(args.terminal_retry_seconds),
        base_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(300),
        instance: identity.clone(),
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        iam_propagation_limit: Duration::from_secs(args.iam_propagation_limit_seconds),
        stop_grace: Duration::from_secs(args.stop_grace_seconds),
        reconcile_deadline: Duration::from_secs(args.reconcile_deadline_seconds.max(1)),
        iam_check_interval: Duration::from_secs(args.iam_check_interval_seconds),
    };
    let cluster_id = match args.cluster_id {
        Some(id) => id,
        None => match controller::tenants::cluster_identity(&client).await {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "cannot read the cluster identity (the kube-system namespace's UID); set --cluster-id");
                return ExitCode::FAILURE;
            }
        },
    };
    info!(%cluster_id, require_policy = args.require_policy, "tenancy");
    let tenants = Tenants::start(&client, cluster_id, args.require_policy);
    let ctx = Arc::new(Context::new(
        client.clone(),
        aws,
        tenants,
        metrics.clone(),
        settings,
    ));

    let listener = match tokio::net::TcpListener::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, addr = %args.metrics_addr, "cannot listen for metrics");
            return ExitCode::FAILURE;
        }
    };
    let m = metrics.clone();
    // Readiness is about serving this endpoint, not about leading: a replica waiting for the
    // lease is ready (as controller-runtime's are), so a rollout is not held up by it.
    let router = Router::new()
        .route(
            "/metrics",
            get(move || async move { m.encode().unwrap_or_default() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!(error = %e, "metrics server stopped");
        }
    });
    let shutdown = Shutdown::listen();
    info!(addr = %args.metrics_addr, %identity, "delivery-operator started");
    let Some(timing) = timing else {
        metrics.leader.set(1);
        let forced = reconcile_until_stopped(ctx, Scope::all(client), &shutdown).await;
        return stopped(forced);
    };
    let namespace = args
        .leader_elect_lease_namespace
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    if args.shards > 1 {
        let mut leases = Vec::new();
        for index in 0..args.shards {
            let Ok(shard) = Shard::new(index, args.shards) else {
                continue;
            };
            let watch = match controller::shard::watch_client(kube_config.clone(), shard) {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, "cannot build a Kubernetes client");
                    return ExitCode::FAILURE;
                }
            };
            let lease = shard_lease_name(&args.leader_elect_lease_name, shard);
            leases.push(ShardLease {
                shard,
                elector: LeaderElector::new(client.clone(), &namespace, &lease, &identity, timing),
                scope: Scope::shard(shard, watch),
            });
        }
        let span = info_span!("sharding", shards = args.shards, %identity);
        return lead_shards(
            leases,
            args.max_shards_per_replica as usize,
            timing.retry_period,
            ctx,
            metrics,
            shutdown,
        )
        .instrument(span)
        .await;
    }
    let elector = LeaderElector::new(
        client.clone(),
        &namespace,
        &args.leader_elect_lease_name,
        &identity,
        timing,
    );
    let span = info_span!(
        "leader_election",
        lease = %format!("{namespace}/{}", args.leader_elect_lease_name),
        %identity
    );
    lead(elector, span, ctx, Scope::all(client), metrics, shutdown).await
}
