//! End to end, reading without writing: `managementPolicy: ObserveOnly` reports each difference
//! in the group's condition and `status.drift` and writes nothing (checked against the
//! emulator's own record); `delivery-operator diff` shows what a reconcile would change, with
//! `kubectl diff`'s exit status.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use delivery_operator::api::DeliveryPipeline;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{self, count};
use crate::support::reconcile_and_wait;
use crate::support::{
    Operator, aws_config, condition, create_namespace, ctx_of, eventually, example, kube_client,
    log_group_retention, sandbox, start, unique, wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);

/// Retention of each of the pipeline's log groups, read from CloudWatch Logs.
async fn retention(dp: &DeliveryPipeline) -> BTreeMap<String, i32> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws_config().await);
    let prefix = format!("/delivery-operator/{}/", ctx_of(dp).names().base());
    log_group_retention(&logs, &prefix).await
}

/// Every AWS write in the operator's JSON log names the pipeline, the group, the account and
/// the operation, read from the log lines as a log pipeline would.
fn assert_writes_are_attributed(log: &Path, pipeline: &str) -> usize {
    let text = std::fs::read_to_string(log).expect("operator log");
    let mut writes = 0;
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] != "aws call" || fields["kind"] != "write" {
            continue;
        }
        writes += 1;
        let spans = entry["spans"].as_array().cloned().unwrap_or_default();
        let span = |name: &str| {
            spans
                .iter()
                .find(|s| s["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name} span: {line}"))
        };
        assert_eq!(span("reconcile")["pipeline"], json!(pipeline), "{line}");
        let group = span("group");
        assert!(
            group["group"]
                .as_str()
                .is_some_and(|g| g.ends_with("Ready")),
            "{line}"
        );
        assert_eq!(group["account"], json!(crate::support::ACCOUNT), "{line}");
        assert!(
            fields["service"].is_string() && fields["operation"].is_string(),
            "{line}"
        );
    }
    writes
}

#[tokio::test]
async fn observe_only_reports_each_difference_and_writes_nothing() {
    let client = kube_client("admin").await;
    let ns = unique("e2e-observe");
    create_namespace(&client, &ns).await;
    let operator = Operator::start(&ns, &[("LOG_FORMAT", "json")]);
    let api: Api<DeliveryPipeline> = Api::namespaced(client, &ns);
    let dp = example("minimal.yaml", &ns, "seen");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "seen", 1).await;
    let created = emulator::calls_by(&operator.access_key).await;
    assert_eq!(
        assert_writes_are_attributed(
            &sandbox().dir.join(format!("operator-{ns}.log")),
            &format!("{ns}/seen")
        ) as f64,
        count(&created, "write").values().sum::<f64>(),
        "one attributed log line per AWS write the emulator recorded"
    );
    let groups = retention(&dp).await;
    assert_eq!(groups.len(), 4, "{groups:?}");

    // A managed resync with nothing to do, for its reads.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "seen").await;
    let resync_reads = count(
        &emulator::calls_after(&operator.access_key, since).await,
        "read",
    );

    // Observe only, and a spec change it must not apply.
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "seen",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"managementPolicy": "ObserveOnly", "logRetentionDays": 90}})),
    )
    .await
    .expect("observe only");
    let observed = eventually("the observe-only reconcile", WAIT, || async {
        let dp = api.get("seen").await.ok()?;
        let status = dp.status.as_ref()?;
        (status.observed_generation == Some(2)
            && condition(&dp, "Synced").is_some_and(|c| c.reason == "ObserveOnly"))
        .then_some(dp)
    })
    .await;

    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        BTreeMap::new(),
        "observe-only writes nothing"
    );
    assert_eq!(
        count(&calls, "read"),
        resync_reads,
        "observe-only reads exactly what a managed resync reads"
    );
    assert!(
        retention(&dp).await.values().all(|days| *days == 7),
        "AWS keeps its retention"
    );

    // Every log group's retention is reported, and nothing else differs.
    let status = observed.status.as_ref().expect("status");
    let drifted: BTreeMap<String, (String, String)> = status
        .drift
        .iter()
        .map(|d| {
            assert_eq!(
                (d.action.as_str(), d.field.as_deref()),
                ("Update", Some("retention")),
                "{d:?}"
            );
            (
                d.resource.trim_start_matches("log group ").to_string(),
                (
                    d.observed.clone().unwrap_or_default(),
                    d.desired.clone().unwrap_or_default(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, String)> = groups
        .keys()
        .map(|name| (name.clone(), ("7 days".into(), "90 days".into())))
        .collect();
    assert_eq!(drifted, expected);
    let groups_condition = condition(&observed, "LogGroupsReady").expect("LogGroupsReady");
    assert_eq!(
        (
            groups_condition.status.as_str(),
            groups_condition.reason.as_str()
        ),
        ("False", "Drifted")
    );
    assert!(
        groups_condition
            .message
            .contains("retention from 7 days to 90 days"),
        "{}",
        groups_condition.message
    );
    assert_eq!(
        condition(&observed, "EncryptionKeyReady").map(|c| c.status.as_str()),
        Some("True"),
        "groups in sync stay True"
    );
    assert_eq!(
        condition(&observed, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );

    // Back to Manage: the difference is corrected and the drift list leaves the status.
    api.patch(
        "seen",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"managementPolicy": "Manage"}})),
    )
    .await
    .expect("manage");
    let managed = wait_ready(&api, "seen", 3).await;
    assert!(
        managed.status.as_ref().is_some_and(|s| s.drift.is_empty()),
        "{:?}",
        managed.status.as_ref().map(|s| &s.drift)
    );
    assert!(retention(&dp).await.values().all(|days| *days == 90));
}

/// Runs `delivery-operator diff` on `dp` written to a file, signing with `access_key`.
fn diff(dir: &Path, dp: &DeliveryPipeline, access_key: &str, args: &[&str]) -> Output {
    let file = dir.join(format!("{}.yaml", unique("manifest")));
    std::fs::write(&file, serde_yaml::to_string(dp).expect("yaml")).expect("write manifest");
    let sb = sandbox();
    Command::new(env!("CARGO_BIN_EXE_delivery-operator"))
        .arg("diff")
        .arg(&file)
        .args(args)
        .env("KUBECONFIG", sb.kubeconfig("admin"))
        .env("AWS_ENDPOINT_URL", sb.aws_endpoint())
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run diff")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_diff_command_shows_what_a_reconcile_would_change() {
    let (ns, _operator, api) = start("e2e-diff").await;
    let dp = example("minimal.yaml", &ns, "previewed");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "previewed", 1).await;
    let dir = sandbox().dir.clone();
    let access_key = emulator::unique_access_key();

    // In sync: exit 0, without a cluster as with one.
    // Without a cluster, the operator's cluster identity is given (it is in the owner tags).
    let same = diff(
        &dir,
        &dp,
        &access_key,
        &["--no-cluster", "--cluster-id", crate::support::cluster_id()],
    );
    assert_eq!(same.status.code(), Some(0), "{}", stdout(&same));
    assert_eq!(stdout(&same), "No changes: AWS matches the manifest.\n");

    // One field changed: each log group's retention, from what AWS has to the manifest's.
    let mut changed = dp.clone();
    changed.spec.log_retention_days = 30;
    let out = diff(&dir, &changed, &access_key, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let groups = retention(&dp).await;
    for name in groups.keys() {
        assert!(
            text.contains(&format!(
                "  ~ update log group {name}: retention from 7 days to 30 days\n"
            )),
            "{text}"
        );
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  ")).count(),
        groups.len(),
        "only the retention differs: {text}"
    );
    assert!(text.ends_with("4 change(s) would be made.\n"), "{text}");

    // A missing resource: a log group deleted by hand is to be created.
    let (missing, _) = groups.iter().next().expect("a log group");
    aws_sdk_cloudwatchlogs::Client::new(&aws_config().await)
        .delete_log_group()
        .log_group_name(missing)
        .send()
        .await
        .expect("delete by hand");
    let out = diff(&dir, &dp, &access_key, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["changes"], json!(1), "{summary}");
    assert_eq!(
        summary["groups"][0]["changes"],
        json!([format!("create log group {missing}")]),
        "{summary}"
    );

    // An unreadable manifest is an error.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "kind: DeliveryPipeline\nspec: 3\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_delivery-operator"))
        .arg("diff")
        .arg(&bad)
        .output()
        .expect("run diff");
    assert_eq!(out.status.code(), Some(2));

    // Every diff only read.
    let calls = emulator::calls_by(&access_key).await;
    assert!(!calls.is_empty());
    assert_eq!(
        count(&calls, "write"),
        BTreeMap::new(),
        "diff writes nothing"
    );
}
