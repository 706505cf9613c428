//! The Helm chart, installed for real: `helm install` of `charts/delivery-operator`, the operator
//! binary run outside the cluster as the chart's own ServiceAccount (a TokenRequest token) with
//! the environment the chart's Deployment gives its container, the API server's refusals of what
//! the chart's RBAC does not grant, PodSecurity `restricted` admission of the Deployment and its
//! pod, and the CRD brought up to date by `helm upgrade`.
//!
//! These tests have a control plane (and emulator) of their own ([`cluster`]): a cluster-wide
//! operator reconciles every pipeline it can see, which would be every other test's, and the CRD
//! test serves an older CRD for a while. Within it, those two take [`EXCLUSIVE`] for writing and
//! the test that runs a namespaced operator takes it for reading.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use delivery_operator::api::{DeliveryPipeline, DeliveryPolicy, FINALIZER, OutputsSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::support::{Operator, Sandbox, example, free_port, repo_root, unique, wait_ready};

const CRD: &str = "deliverypipelines.pipelines.delivery-operator.dev";
const POLICY_CRD: &str = "deliverypolicies.pipelines.delivery-operator.dev";

/// Held for writing by a test that would disturb any other pipeline of [`cluster`] (a
/// cluster-wide operator, an older CRD), for reading by one that owns pipelines there.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

/// The control plane and emulator of these tests: a sandbox of their own (in `$SANDBOX_DIR/chart`
/// under `make test`), with the CRD applied as `kubectl apply --server-side -f crds/` does,
/// managed outside any release. So releases install with `crds.install=false` (a CRD belongs to
/// one release at most), except in the CRD upgrade test, which hands it to its release.
fn cluster() -> &'static Sandbox {
    static CLUSTER: OnceLock<Sandbox> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = match std::env::var("SANDBOX_DIR") {
            Ok(d) if Path::new(&d).join("env").exists() => PathBuf::from(d).join("chart"),
            _ => {
                std::env::temp_dir().join(format!("delivery-operator-chart-{}", std::process::id()))
            }
        };
        let sb = Sandbox::up(dir);
        succeeded(
            sb.kubectl()
                .args(["apply", "--server-side", "-f"])
                .arg(repo_root().join("crds")),
            "apply the CRDs",
        );
        succeeded(
            sb.kubectl().args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{CRD}"),
            ]),
            "CRD established",
        );
        sb
    })
}

/// Runs `cmd`, fails the test with its stderr unless it succeeded; returns its output.
fn succeeded(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` with `input` on its stdin.
fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every object of a multi-document YAML stream (empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/delivery-operator")
}

/// The values every release of these tests sets: the emulator as the AWS endpoint (the chart's
/// `aws.endpointUrl`, as a VPC endpoint would be set) and the region.
fn aws_values(sb: &Sandbox) -> Vec<String> {
    vec![
        "--set".into(),
        format!("aws.endpointUrl={}", sb.aws_endpoint()),
        "--set".into(),
        "aws.region=us-east-1".into(),
    ]
}

/// An installed release and the objects of its manifest (`helm get manifest`).
struct Release {
    name: String,
    namespace: String,
    objects: Vec<Value>,
    /// Seconds `helm install` took.
    install_seconds: f64,
}

impl Release {
    /// `helm install NAME CHART -n NAMESPACE --create-namespace` with `values` (after the AWS
    /// ones), as the README installs it.
    fn install(sb: &Sandbox, chart: &Path, name: &str, namespace: &str, values: &[&str]) -> Self {
        let started = Instant::now();
        succeeded(
            sb.helm()
                .args(["install", name])
                .arg(chart)
                .args(["--namespace", namespace, "--create-namespace"])
                .args(aws_values(sb))
                .args(values),
            "helm install",
        );
        let install_seconds = started.elapsed().as_secs_f64();
        let mut release = Self {
            name: name.into(),
            namespace: namespace.into(),
            objects: Vec::new(),
            install_seconds,
        };
        release.refresh(sb);
        release
    }

    fn refresh(&mut self, sb: &Sandbox) {
        let out = succeeded(
            sb.helm()
                .args(["get", "manifest", &self.name, "-n", &self.namespace]),
            "helm get manifest",
        );
        self.objects = documents(&stdout(&out));
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The one object of `kind`.
    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "one {kind} in the release: {all:?}");
        all[0]
    }

    fn service_account(&self) -> String {
        name_of(self.one("ServiceAccount"))
    }

    /// The release's only Role (and RoleBinding) is leader election's: in its own namespace,
    /// `get`, `create` and `update` on Leases and nothing else.
    fn assert_only_leader_election_roles(&self) {
        let roles = self.all("Role");
        assert_eq!(roles.len(), 1, "{roles:?}");
        let role = roles[0];
        assert_eq!(role["metadata"]["namespace"], json!(self.namespace));
        assert_eq!(
            role["rules"],
            json!([{
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "create", "update"]
            }])
        );
        let bindings = self.all("RoleBinding");
        assert_eq!(bindings.len(), 1, "{bindings:?}");
        assert_eq!(bindings[0]["roleRef"]["name"], role["metadata"]["name"]);
    }

    /// The tenancy ClusterRole reads DeliveryPolicies and namespaces and writes the policies'
    /// counts, and does nothing else.
    fn assert_tenancy_role_reads_only(&self) {
        let tenancy: Vec<&Value> = self
            .all("ClusterRole")
            .into_iter()
            .filter(|r| {
                r["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-tenancy"))
            })
            .collect();
        assert_eq!(tenancy.len(), 1, "{tenancy:?}");
        assert_eq!(
            tenancy[0]["rules"],
            json!([
                {"apiGroups": ["pipelines.delivery-operator.dev"], "resources": ["deliverypolicies"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["pipelines.delivery-operator.dev"], "resources": ["deliverypolicies/status"], "verbs": ["patch"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
            ])
        );
    }

    /// The release's Lease (named by the Deployment's `LEADER_ELECT_LEASE_NAME`) names
    /// `holder`.
    async fn assert_lease_held_by(&self, admin: &Client, holder: &str) {
        let container = &self.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
        let lease_name = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|v| v["name"] == "LEADER_ELECT_LEASE_NAME")
            .and_then(|v| v["value"].as_str())
            .expect("LEADER_ELECT_LEASE_NAME in the Deployment")
            .to_string();
        let lease = Api::<Lease>::namespaced(admin.clone(), &self.namespace)
            .get(&lease_name)
            .await
            .expect("the release's Lease");
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some(holder)
        );
    }
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string()
}

/// A token of `service_account` from the TokenRequest API, and a kubeconfig that uses it (the
/// sandbox's API server and CA): what a pod of the chart's Deployment would authenticate with.
fn service_account_kubeconfig(sb: &Sandbox, namespace: &str, service_account: &str) -> PathBuf {
    let out = succeeded(
        sb.kubectl()
            .args(["create", "token", service_account, "-n", namespace]),
        "kubectl create token",
    );
    let token = stdout(&out).trim().to_string();
    assert!(!token.is_empty(), "a token");
    let user = format!("system:serviceaccount:{namespace}:{service_account}");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {
            "server": sb.var("SANDBOX_APISERVER"),
            "certificate-authority": sb.var("SANDBOX_CA_FILE"),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "chart", "context": {"cluster": "sandbox", "user": user}}],
        "current-context": "chart",
    });
    let path = sb
        .dir
        .join(format!("kubeconfig-{namespace}-{service_account}"));
    std::fs::write(
        &path,
        serde_yaml::to_string(&kubeconfig).expect("kubeconfig"),
    )
    .expect("write kubeconfig");
    path
}

/// The operator binary, outside the cluster, as the release's Deployment would run it: the
/// container's args and every variable of its env (fieldRefs resolved as the kubelet would),
/// and nothing else of this process's environment. What the cluster would give the pod instead
/// is given here: the API server and the service account's token (`kubeconfig`, for the
/// in-cluster configuration), AWS credentials (for IRSA's) and a metrics port of its own
/// (tests share one host).
fn run_as_deployment(
    sb: &Sandbox,
    release: &Release,
    kubeconfig: &Path,
) -> (Operator, BTreeMap<String, String>) {
    let deployment = release.one("Deployment");
    let pod = format!("{}-test", name_of(deployment));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("env name").to_string();
        let value = match (&var["value"], &var["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(path)) if path == "metadata.name" => pod.clone(),
            (_, Value::String(path)) if path == "metadata.namespace" => release.namespace.clone(),
            _ => panic!("{name}: a source this test does not resolve: {var}"),
        };
        env.insert(name, value);
    }
    let port = free_port();
    let access_key = crate::emulator::unique_access_key();
    let log = sb.dir.join(format!("operator-{}.log", release.name));
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Operator::command();
    cmd.env_clear()
        .args(&args)
        .envs(&env)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ACCESS_KEY_ID", &access_key)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info,delivery_operator=debug")
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file);
    (Operator::spawn(cmd, port, access_key, pod, log), env)
}

/// The API server's refusal of `result`: 403 Forbidden, naming `user` and what was refused.
fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, user: &str, what: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (403, "Forbidden"),
                "{status:?}"
            );
            assert!(
                status
                    .message
                    .contains(&format!("User \"{user}\" cannot {what}")),
                "{}",
                status.message
            );
        }
        other => panic!("{user} may {what}: {other:?}"),
    }
}

async fn create_namespace_labelled(client: &Client, name: &str, labels: Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// The minimal example in `namespace`, publishing its outputs to a ConfigMap (so the
/// ConfigMap rules of the chart are exercised too).
fn pipeline(namespace: &str, name: &str) -> DeliveryPipeline {
    let mut dp = example("minimal.yaml", namespace, name);
    dp.spec.outputs = Some(OutputsSpec {
        config_map_name: Some(format!("{name}-outputs")),
    });
    dp
}

/// Marks `name` paused, so an operator of a later test that sees it makes no AWS call for it.
async fn pause(api: &Api<DeliveryPipeline>, name: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"delivery-operator.dev/paused": "true"}}}),
        ),
    )
    .await
    .expect("pause");
}

/// Everything the operator needs from the API server, and only that: what a cluster-wide
/// release grants its ServiceAccount is enough to bring a pipeline in any namespace to Ready
/// (status, finalizer, events, the outputs ConfigMap), and Secrets and Deployments are refused.
#[tokio::test]
async fn a_cluster_wide_release_runs_the_operator_as_its_service_account_and_grants_nothing_else() {
    let _exclusive = EXCLUSIVE.write().await;
    let sb = cluster();
    let admin = sb.client(&sb.kubeconfig("admin")).await;
    let namespace = unique("chart-all");
    let release = Release::install(
        sb,
        &chart_dir(),
        &unique("ops"),
        &namespace,
        &["--set", "crds.install=false"],
    );
    // The operator's, and tenancy's (read-only, cluster-scoped by nature).
    assert_eq!(release.all("ClusterRole").len(), 2);
    assert_eq!(release.all("ClusterRoleBinding").len(), 2);
    release.assert_tenancy_role_reads_only();
    // Namespaced grants: only leader election's, on Leases in the release's own namespace.
    release.assert_only_leader_election_roles();
    assert!(release.all("CustomResourceDefinition").is_empty());

    let service_account = release.service_account();
    let user = format!("system:serviceaccount:{namespace}:{service_account}");
    let kubeconfig = service_account_kubeconfig(sb, &namespace, &service_account);
    let (operator, env) = run_as_deployment(sb, &release, &kubeconfig);
    assert!(!env.contains_key("WATCH_NAMESPACES"), "{env:?}");

    // A pipeline in a namespace created after the operator started, far from the release's.
    let elsewhere = unique("chart-any");
    create_namespace_labelled(&admin, &elsewhere, json!({"team": elsewhere})).await;
    let pipelines: Api<DeliveryPipeline> = Api::namespaced(admin.clone(), &elsewhere);
    let started = Instant::now();
    pipelines
        .create(&PostParams::default(), &pipeline(&elsewhere, "hello"))
        .await
        .expect("create pipeline");
    let ready = wait_ready(&pipelines, "hello", 1).await;
    let to_ready = started.elapsed().as_secs_f64();
    assert_eq!(ready.finalizers(), [FINALIZER.to_string()]);
    let outputs = Api::<ConfigMap>::namespaced(admin.clone(), &elsewhere)
        .get("hello-outputs")
        .await
        .expect("the outputs ConfigMap");
    assert_eq!(
        outputs.data.unwrap_or_default().get("artifactBucket"),
        ready
            .status
            .as_ref()
            .and_then(|s| s.outputs.artifact_bucket.as_ref())
    );
    let events = Api::<Event>::namespaced(admin.clone(), &elsewhere)
        .list(&ListParams::default())
        .await
        .expect("events");
    assert!(
        events.items.iter().any(|e| {
            e.reporting_controller.as_deref() == Some("delivery-operator")
                && e.reason.as_deref() == Some("Created")
        }),
        "the operator's events: {:?}",
        events.items
    );
    let metrics = operator.metrics().await;
    assert!(metrics.reconciles() >= 1.0);
    // It reconciled as the leader: the chart's Role let its token take the release's Lease.
    release.assert_lease_held_by(&admin, &env["POD_NAME"]).await;

    // With the same token, what the chart does not grant is refused.
    let as_operator = sb.client(&kubeconfig).await;
    assert_forbidden(
        Api::<Secret>::all(as_operator.clone())
            .list(&ListParams::default())
            .await,
        &user,
        "list resource \"secrets\" in API group \"\" at the cluster scope",
    );
    assert_forbidden(
        Api::<Secret>::namespaced(as_operator.clone(), &elsewhere)
            .get("anything")
            .await,
        &user,
        &format!("get resource \"secrets\" in API group \"\" in the namespace \"{elsewhere}\""),
    );
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "intruder"},
        "spec": {
            "selector": {"matchLabels": {"app": "intruder"}},
            "template": {
                "metadata": {"labels": {"app": "intruder"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .expect("deployment");
    assert_forbidden(
        Api::<Deployment>::namespaced(as_operator.clone(), &elsewhere)
            .create(&PostParams::default(), &deployment)
            .await,
        &user,
        &format!(
            "create resource \"deployments\" in API group \"apps\" in the namespace \"{elsewhere}\""
        ),
    );

    // The cluster-wide leader keeps each DeliveryPolicy's counts: the namespaces it selects,
    // their pipelines, and those it refuses.
    let policies: Api<DeliveryPolicy> = Api::all(admin.clone());
    let policy_name = unique("chart-policy");
    let policy: DeliveryPolicy = serde_json::from_value(json!({
        "apiVersion": "pipelines.delivery-operator.dev/v1alpha1",
        "kind": "DeliveryPolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"team": elsewhere}},
            "build": {"images": ["aws/codebuild/amazonlinux-x86_64-standard:*"]}
        }
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    let counts = crate::support::eventually(
        "the policy's counts",
        std::time::Duration::from_secs(60),
        || async {
            let status = policies.get(&policy_name).await.ok()?.status?;
            (status.pipelines == 1).then_some(status)
        },
    )
    .await;
    assert_eq!((counts.namespaces, counts.violations), (1, 1), "{counts:?}");
    policies
        .delete(&policy_name, &Default::default())
        .await
        .expect("delete policy");
    eprintln!(
        "chart: cluster-wide helm install {:.1} s; pipeline Ready {to_ready:.1} s after creation",
        release.install_seconds
    );
}

/// A release with `watchNamespaces`: Roles in those namespaces only; the operator reconciles a
/// pipeline in one of them, and neither sees nor touches one in a namespace not listed.
#[tokio::test]
async fn a_release_watching_namespaces_reconciles_there_and_cannot_read_elsewhere() {
    let _shared = EXCLUSIVE.read().await;
    let sb = cluster();
    let admin = sb.client(&sb.kubeconfig("admin")).await;
    let (watched, also_watched, other) =
        (unique("chart-a"), unique("chart-b"), unique("chart-other"));
    for ns in [&watched, &also_watched, &other] {
        create_namespace_labelled(&admin, ns, json!({})).await;
    }
    let namespace = unique("chart-ns");
    let release = Release::install(
        sb,
        &chart_dir(),
        &unique("ops"),
        &namespace,
        &[
            "--set",
            "crds.install=false",
            "--set",
            &format!("watchNamespaces={{{watched},{also_watched}}}"),
        ],
    );
    // Cluster-wide: only tenancy's reads of DeliveryPolicies and namespaces.
    assert_eq!(release.all("ClusterRole").len(), 1);
    assert_eq!(release.all("ClusterRoleBinding").len(), 1);
    release.assert_tenancy_role_reads_only();
    let role_namespaces = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = release
            .all(kind)
            .iter()
            .map(|r| r["metadata"]["namespace"].as_str().expect("ns").to_string())
            .collect();
        v.sort();
        v
    };
    // One per watched namespace, and leader election's in the release's own namespace.
    let mut expected = vec![watched.clone(), also_watched.clone(), namespace.clone()];
    expected.sort();
    assert_eq!(role_namespaces("Role"), expected);
    assert_eq!(role_namespaces("RoleBinding"), expected);

    let service_account = release.service_account();
    let user = format!("system:serviceaccount:{namespace}:{service_account}");
    let kubeconfig = service_account_kubeconfig(sb, &namespace, &service_account);
    let (_operator, env) = run_as_deployment(sb, &release, &kubeconfig);
    assert_eq!(
        env.get("WATCH_NAMESPACES"),
        Some(&format!("{watched},{also_watched}"))
    );

    // The pipeline outside goes first: by the time the watched one is Ready, the operator has
    // been running for all of it.
    let outside: Api<DeliveryPipeline> = Api::namespaced(admin.clone(), &other);
    let untouched = outside
        .create(&PostParams::default(), &pipeline(&other, "hello"))
        .await
        .expect("create outside");
    let inside: Api<DeliveryPipeline> = Api::namespaced(admin.clone(), &watched);
    inside
        .create(&PostParams::default(), &pipeline(&watched, "hello"))
        .await
        .expect("create inside");
    wait_ready(&inside, "hello", 1).await;

    let after = outside.get("hello").await.expect("outside pipeline");
    assert_eq!(
        after.resource_version(),
        untouched.resource_version(),
        "nothing wrote to the pipeline outside the watched namespaces"
    );
    assert!(after.status.is_none() && after.finalizers().is_empty());

    let as_operator = sb.client(&kubeconfig).await;
    assert_forbidden(
        Api::<DeliveryPipeline>::namespaced(as_operator.clone(), &other)
            .list(&ListParams::default())
            .await,
        &user,
        &format!(
            "list resource \"deliverypipelines\" in API group \"pipelines.delivery-operator.dev\" in the namespace \"{other}\""
        ),
    );
    assert_forbidden(
        Api::<DeliveryPipeline>::all(as_operator.clone())
            .list(&ListParams::default())
            .await,
        &user,
        "list resource \"deliverypipelines\" in API group \"pipelines.delivery-operator.dev\" at the cluster scope",
    );
    let listed = Api::<DeliveryPipeline>::namespaced(as_operator, &also_watched)
        .list(&ListParams::default())
        .await
        .expect("the other watched namespace is readable");
    assert!(listed.items.is_empty());

    pause(&inside, "hello").await;
    pause(&outside, "hello").await;
    eprintln!(
        "chart: watchNamespaces helm install {:.1} s",
        release.install_seconds
    );
}

/// The rendered Deployment under PodSecurity `restricted`: admitted without a warning, and a pod
/// of its template admitted by enforcement; copies that break the policy show that admission is
/// on (a warning for the Deployment, a refusal for the pod).
#[tokio::test]
async fn the_deployment_and_its_pod_are_admitted_under_restricted_pod_security() {
    let sb = cluster();
    let admin = sb.client(&sb.kubeconfig("admin")).await;
    let namespace = unique("chart-psa");
    create_namespace_labelled(
        &admin,
        &namespace,
        json!({
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "latest",
        }),
    )
    .await;
    let rendered = succeeded(
        sb.helm()
            .args(["template", "ops"])
            .arg(chart_dir())
            .args(["--namespace", &namespace])
            .args(aws_values(sb)),
        "helm template",
    );
    let objects = documents(&stdout(&rendered));
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")
        .clone();

    let apply = |object: &Value| server_side_apply(sb, object);
    let out = apply(&deployment);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("Warning:"),
        "PodSecurity warns about the chart's Deployment: {}",
        stderr(&out)
    );
    // The same Deployment allowed to run as root: admitted (enforcement is for pods), warned.
    let as_root = |spec: &Value| {
        let mut spec = spec.clone();
        spec["securityContext"]["runAsNonRoot"] = json!(false);
        spec["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        spec
    };
    let mut rooted = deployment.clone();
    rooted["metadata"]["name"] = json!("as-root");
    rooted["spec"]["template"]["spec"] = as_root(&deployment["spec"]["template"]["spec"]);
    let out = apply(&rooted);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "Warning: would violate PodSecurity \"restricted:latest\": runAsNonRoot != true"
        ),
        "{}",
        stderr(&out)
    );

    // Enforcement applies to pods: one with the Deployment's pod template, server-side applied.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let pod_of = |name: &str, spec: &Value| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": deployment["spec"]["template"]["metadata"]["labels"]},
            "spec": spec,
        })
    };
    let spec = deployment["spec"]["template"]["spec"].clone();
    let params = PatchParams::apply("chart-test");
    pods.patch(
        "operator",
        &params,
        &Patch::Apply(pod_of("operator", &spec)),
    )
    .await
    .expect("the chart's pod is admitted under restricted");
    match pods
        .patch(
            "as-root",
            &params,
            &Patch::Apply(pod_of("as-root", &as_root(&spec))),
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
            assert!(
                status
                    .message
                    .contains("violates PodSecurity \"restricted:latest\": runAsNonRoot != true"),
                "{}",
                status.message
            );
        }
        other => panic!("a pod that may run as root was admitted: {other:?}"),
    }
}

fn crd_versions(crd: &Value) -> Value {
    crd["spec"]["versions"].clone()
}

/// The CRD as committed, as JSON.
fn committed_crd() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("crds/deliverypipelines.yaml")).expect("crd");
    serde_yaml::from_str(&text).expect("crd yaml")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The chart as an earlier version shipped it: its CRD without `spec.outputs`.
fn older_chart(sb: &Sandbox) -> PathBuf {
    let dir = sb.dir.join(unique("older-chart"));
    copy_dir(&chart_dir(), &dir);
    let mut crd = committed_crd();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert!(spec["outputs"].is_object(), "the CRD has spec.outputs");
    spec.as_object_mut().expect("properties").remove("outputs");
    std::fs::write(
        dir.join("files/crds/deliverypipelines.yaml"),
        serde_yaml::to_string(&crd).expect("yaml"),
    )
    .expect("write older CRD");
    let chart = std::fs::read_to_string(dir.join("Chart.yaml")).expect("Chart.yaml");
    let older: String = chart
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                "version: 0.0.1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("Chart.yaml"), older).expect("write Chart.yaml");
    dir
}

/// A pipeline that names `spec.outputs`, applied as a user would (strict field validation).
fn apply_with_outputs(sb: &Sandbox, namespace: &str) -> Output {
    let mut dp = serde_json::to_value(pipeline(namespace, "kept")).expect("json");
    dp["metadata"]["annotations"] = json!({"delivery-operator.dev/paused": "true"});
    server_side_apply(sb, &dp)
}

/// `kubectl apply --server-side` of `object`, as a user applies a manifest.
fn server_side_apply(sb: &Sandbox, object: &Value) -> Output {
    with_stdin(
        sb.kubectl().args([
            "apply",
            "--server-side",
            "--field-manager",
            "chart-test",
            "-f",
            "-",
        ]),
        &serde_json::to_string(object).expect("json"),
    )
}

/// The CRD story: the chart templates the CRD (`crds.install`), so `helm upgrade` brings the
/// served CRD up to date, which Helm's crds/ directory never does; a CRD installed by other
/// means is handed to the release with the labels and annotations the README gives; and
/// uninstalling keeps the CRD (`crds.keep`) and with it every pipeline.
#[tokio::test]
async fn helm_upgrade_brings_the_crd_up_to_date_and_uninstall_keeps_it() {
    let _exclusive = EXCLUSIVE.write().await;
    let sb = cluster();
    let admin = sb.client(&sb.kubeconfig("admin")).await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let served =
        || async { serde_json::to_value(crds.get(CRD).await.expect("the CRD")).expect("json") };
    let uid = served().await["metadata"]["uid"].clone();
    let namespace = unique("chart-crd");
    let name = unique("ops");

    // The README's hand-over of the CRDs the release did not create.
    for crd in [CRD, POLICY_CRD] {
        succeeded(
            sb.kubectl().args([
                "label",
                "--overwrite",
                &format!("crd/{crd}"),
                "app.kubernetes.io/managed-by=Helm",
            ]),
            "label the CRD",
        );
        succeeded(
            sb.kubectl().args([
                "annotate",
                "--overwrite",
                &format!("crd/{crd}"),
                &format!("meta.helm.sh/release-name={name}"),
                &format!("meta.helm.sh/release-namespace={namespace}"),
            ]),
            "annotate the CRD",
        );
    }
    let mut release = Release::install(sb, &older_chart(sb), &name, &namespace, &[]);
    assert_eq!(release.all("CustomResourceDefinition").len(), 2);
    let older = served().await;
    let properties = |crd: &Value| -> Vec<String> {
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object()
            .expect("spec properties")
            .keys()
            .cloned()
            .collect()
    };
    assert!(!properties(&older).contains(&"outputs".to_string()));
    assert_eq!(
        older["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        older["metadata"]["labels"]["helm.sh/chart"],
        "delivery-operator-0.0.1"
    );
    let refused = apply_with_outputs(sb, &namespace);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(".spec.outputs: field not declared in schema"),
        "{}",
        stderr(&refused)
    );

    let started = Instant::now();
    succeeded(
        sb.helm()
            .args(["upgrade", &name])
            .arg(chart_dir())
            .args(["--namespace", &namespace])
            .args(aws_values(sb)),
        "helm upgrade",
    );
    let upgrade_seconds = started.elapsed().as_secs_f64();
    release.refresh(sb);
    let current = served().await;
    assert_eq!(crd_versions(&current), crd_versions(&committed_crd()));
    assert_eq!(current["metadata"]["uid"], uid, "updated in place");
    assert_eq!(
        current["metadata"]["labels"]["helm.sh/chart"],
        release.one("Deployment")["metadata"]["labels"]["helm.sh/chart"]
    );
    let accepted = apply_with_outputs(sb, &namespace);
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    let pipelines: Api<DeliveryPipeline> = Api::namespaced(admin.clone(), &namespace);
    let kept = pipelines.get("kept").await.expect("pipeline");
    assert_eq!(
        kept.spec
            .outputs
            .as_ref()
            .and_then(|o| o.config_map_name.as_deref()),
        Some("kept-outputs")
    );

    succeeded(
        sb.helm()
            .args(["uninstall", &name, "--namespace", &namespace]),
        "helm uninstall",
    );
    let service_accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
    assert!(
        service_accounts
            .get_opt(&release.service_account())
            .await
            .expect("get")
            .is_none(),
        "uninstall removed the release's objects"
    );
    assert_eq!(served().await["metadata"]["uid"], uid, "the CRD is kept");
    assert_eq!(
        pipelines.get("kept").await.expect("pipeline").uid(),
        kept.uid()
    );
    eprintln!(
        "chart: helm install (CRD adopted) {:.1} s, helm upgrade {upgrade_seconds:.1} s",
        release.install_seconds
    );
}

/// `helm template` alone: the CRD is the chart's copy of crds/ with the release's labels, kept on
/// uninstall unless `crds.keep=false`, and left out with `crds.install=false`.
#[tokio::test]
async fn the_rendered_crd_is_the_committed_one_and_follows_the_crds_values() {
    let sb = cluster();
    let render = |extra: &[&str]| {
        let out = succeeded(
            sb.helm()
                .args(["template", "ops"])
                .arg(chart_dir())
                .args(extra),
            "helm template",
        );
        documents(&stdout(&out))
    };
    let crds: Vec<Value> = render(&[])
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 2);
    let committed = committed_crd();
    assert_eq!(crds[0]["spec"], committed["spec"]);
    assert_eq!(crds[0]["metadata"]["name"], committed["metadata"]["name"]);
    let policy: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("crds/deliverypolicies.yaml")).expect("crd"),
    )
    .expect("crd yaml");
    assert_eq!(crds[1]["spec"], policy["spec"]);
    assert_eq!(crds[1]["metadata"]["name"], POLICY_CRD);
    assert_eq!(
        crds[0]["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        crds[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    let not_kept = render(&["--set", "crds.keep=false"]);
    let crd = not_kept
        .iter()
        .find(|o| o["kind"] == "CustomResourceDefinition")
        .expect("CRD");
    assert!(crd["metadata"]["annotations"].is_null());
    assert!(
        render(&["--set", "crds.install=false"])
            .iter()
            .all(|o| o["kind"] != "CustomResourceDefinition")
    );
}
