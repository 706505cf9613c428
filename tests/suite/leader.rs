//! Leader election end to end: operator replicas as separate processes on one Lease in the
//! sandbox's apiserver (with the shipped RBAC), the AWS call record as the independent witness
//! of who reconciled. Short timings (a 4 s lease) keep the tests quick; each test has its own
//! Lease and namespace.

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::emulator::{self, Fault, Recorded};
use crate::support::{
    LEASE_NAMESPACE, Operator, claim_lease, create_namespace, eventually, example, kube_client,
    unique, wait_ready,
};

const WAIT: Duration = Duration::from_secs(60);

/// Flags for a replica on `lease` with a `duration`-second lease, renewed every second and
/// given up after `deadline` seconds without a renewal.
fn on_lease(lease: &str, duration: u32, deadline: u32) -> Vec<String> {
    vec![
        "--leader-elect-lease-name".into(),
        lease.into(),
        "--leader-elect-lease-duration-seconds".into(),
        duration.to_string(),
        "--leader-elect-renew-deadline-seconds".into(),
        deadline.to_string(),
        "--leader-elect-retry-period-seconds".into(),
        "1".into(),
    ]
}

fn replica(namespace: &str, name: &str, args: &[String]) -> Operator {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start_replica(namespace, &unique(name), &args)
}

async fn leases() -> Api<Lease> {
    Api::namespaced(kube_client("admin").await, LEASE_NAMESPACE)
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn transitions(lease: &Lease) -> Option<i32> {
    lease.spec.as_ref()?.lease_transitions
}

/// Waits until `name` is held by `identity`, and returns the Lease then.
async fn held_by(leases: &Api<Lease>, name: &str, identity: &str, timeout: Duration) -> Lease {
    eventually(&format!("{identity} holding {name}"), timeout, || async {
        let lease = leases.get_opt(name).await.ok()??;
        (holder(&lease) == Some(identity)).then_some(lease)
    })
    .await
}

/// Two replicas on `lease`: the first holds it, the second has said it waits to lead.
async fn leader_and_follower(
    namespace: &str,
    leases: &Api<Lease>,
    lease: &str,
    args: &[String],
) -> (Operator, Operator) {
    let leader = replica(namespace, "replica-a", args);
    held_by(leases, lease, &leader.identity, WAIT).await;
    let follower = replica(namespace, "replica-b", args);
    eventually("the second replica waiting", WAIT, || async {
        follower.log().contains("waiting to lead").then_some(())
    })
    .await;
    (leader, follower)
}

/// The operator's exit status, once it exits within `timeout` (polled every 100 ms).
pub(crate) async fn exit_of(operator: &mut Operator, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = operator.exited() {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "{} still running after {timeout:?}:\n{}",
            operator.identity,
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creating writes (`Create*`) by `Service:Operation`.
fn creates(calls: &[Recorded]) -> BTreeMap<String, f64> {
    emulator::count(calls, "write")
        .into_iter()
        .filter(|(op, _)| {
            op.split(':')
                .nth(1)
                .is_some_and(|o| o.starts_with("Create"))
        })
        .collect()
}

/// The time of the first log line containing `needle`, as the process stamped it.
fn logged_at(log: &str, needle: &str) -> Option<Timestamp> {
    let line = log
        .lines()
        .map(without_colours)
        .find(|l| l.contains(needle))?;
    line.split_whitespace().next()?.parse().ok()
}

fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn when_the_leader_dies_the_other_replica_takes_over_and_creates_nothing_twice() {
    let client = kube_client("admin").await;
    let ns = unique("e2e-failover");
    create_namespace(&client, &ns).await;
    let api = Api::namespaced(client, &ns);
    let leases = leases().await;
    let lease = unique("failover");
    let args = on_lease(&lease, 4, 3);
    let a = replica(&ns, "replica-a", &args);
    let b = replica(&ns, "replica-b", &args);
    let first = eventually("a replica holding the lease", WAIT, || async {
        leases
            .get_opt(&lease)
            .await
            .ok()?
            .and_then(|l| holder(&l).map(String::from))
    })
    .await;
    let (mut leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
    assert_eq!(first, leader.identity);

    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "first"),
    )
    .await
    .expect("create");
    wait_ready(&api, "first", 1).await;
    let leader_metrics = leader.metrics().await;
    let waiting = follower.metrics().await;
    assert_eq!(leader_metrics.leader(), Some(1.0));
    assert_eq!(waiting.leader(), Some(0.0), "the other replica waits");
    assert_eq!(waiting.reconciles(), 0.0, "only the leader reconciles");
    assert_eq!(
        emulator::calls_by(&follower.access_key).await.len(),
        0,
        "the waiting replica makes no AWS call"
    );
    let log = follower.log();
    assert!(
        log.contains("waiting to lead") && log.contains(&leader.identity),
        "the waiting replica says whom it waits for:\n{log}"
    );
    let before = held_by(&leases, &lease, &leader.identity, WAIT).await;

    let killed = Instant::now();
    leader.kill();
    // Work for whoever leads next: a second pipeline.
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "second"),
    )
    .await
    .expect("create");
    let taken = held_by(&leases, &lease, &follower.identity, WAIT).await;
    let takeover = killed.elapsed();
    wait_ready(&api, "second", 1).await;
    let second_ready = killed.elapsed();
    let new_leader = follower.metrics().await;
    println!(
        "failover: lease taken {takeover:?} after the leader was killed; the second pipeline Ready after {second_ready:?}"
    );
    assert_eq!(new_leader.leader(), Some(1.0));
    assert_eq!(transitions(&taken), transitions(&before).map(|t| t + 1));
    let first = api.get("first").await.expect("first");
    assert!(
        crate::support::is_ready(&first),
        "the first pipeline stays Ready"
    );

    // The emulator's record: each replica created one pipeline's resources, once each. Had
    // the new leader created any of the first pipeline's again, its counts would be higher.
    let by_leader = creates(&emulator::calls_by(&leader.access_key).await);
    let by_follower = creates(&emulator::calls_by(&follower.access_key).await);
    for op in ["KMS:CreateKey", "S3:CreateBucket", "ECR:CreateRepository"] {
        assert_eq!(
            by_leader.get(op),
            Some(&1.0),
            "{op} by the first leader: {by_leader:?}"
        );
    }
    assert!(
        by_leader.get("IAM:CreateRole").is_some_and(|n| *n >= 3.0),
        "{by_leader:?}"
    );
    assert_eq!(
        by_follower, by_leader,
        "the new leader created exactly the second pipeline's resources"
    );
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_stops_at_once_mid_reconcile() {
    let client = kube_client("admin").await;
    let ns = unique("e2e-lost");
    create_namespace(&client, &ns).await;
    let api = Api::namespaced(client, &ns);
    let leases = leases().await;
    let lease = unique("lost");
    let mut operator = replica(&ns, "replica", &on_lease(&lease, 4, 3));
    held_by(&leases, &lease, &operator.identity, WAIT).await;

    // A reconcile in flight when the lease goes: the artifact bucket's creation answers only
    // after 10 s; what follows it (versioning, encryption, policy) is still to come.
    const HELD_FOR: Duration = Duration::from_secs(10);
    emulator::inject(Fault {
        access_key: Some(operator.access_key.clone()),
        service: Some("S3".into()),
        operation: Some("CreateBucket".into()),
        latency_ms: Some(HELD_FOR.as_millis() as u64),
        count: Some(1),
        ..Fault::default()
    })
    .await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "held"),
    )
    .await
    .expect("create");
    let create_bucket = eventually("CreateBucket in flight", WAIT, || async {
        emulator::calls_by(&operator.access_key)
            .await
            .into_iter()
            .find(|c| c.operation == "CreateBucket")
    })
    .await;
    let in_flight = Instant::now();

    // An administrator hands the lease to someone else (read and replaced until no renewal
    // came in between).
    eventually("the lease taken by an administrator", WAIT, || {
        claim_lease(&leases, &lease, "intruder")
    })
    .await;
    let taken = Instant::now();
    let at_takeover = emulator::last_seq(&operator.access_key).await;
    let status = exit_of(&mut operator, WAIT).await;
    let stopped_after = taken.elapsed();
    assert_eq!(
        status.code(),
        Some(1),
        "losing the lease is a failure exit: {status:?}"
    );
    let log = operator.log();
    assert!(
        log.contains("lost the lease") && log.contains("the lease is now held by intruder"),
        "{log}"
    );

    // Once the held call has been answered, nothing of the reconcile went on: no S3 write
    // after CreateBucket (a graceful stop would have let the bucket's creation finish).
    tokio::time::sleep(
        (in_flight + HELD_FOR + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    )
    .await;
    let after: Vec<Recorded> = emulator::calls_after(&operator.access_key, create_bucket.seq)
        .await
        .into_iter()
        .filter(|c| c.service == "S3" && !delivery_operator::metrics::is_read(&c.operation))
        .collect();
    assert!(after.is_empty(), "the bucket's creation went on: {after:?}");
    let writes_after_takeover = emulator::count(
        &emulator::calls_after(&operator.access_key, at_takeover).await,
        "write",
    );
    println!(
        "loss: exited {stopped_after:?} after the lease was taken; AWS writes recorded after the takeover: {writes_after_takeover:?}"
    );
    let still = leases.get(&lease).await.expect("lease");
    assert_eq!(
        holder(&still),
        Some("intruder"),
        "the stopped replica wrote no claim"
    );
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_the_next_one_starts() {
    let client = kube_client("admin").await;
    let ns = unique("e2e-unrenewable");
    create_namespace(&client, &ns).await;
    let leases = leases().await;
    let lease = unique("unrenewable");
    // A 6 s lease and a 3 s renew deadline: the leader must be gone 3 s before anyone may
    // take over.
    let args = on_lease(&lease, 6, 3);
    let (mut leader, follower) = leader_and_follower(&ns, &leases, &lease, &args).await;

    // The API server refuses every write that keeps the leader as holder: it can no longer
    // renew, while the other replica can still take the lease.
    let policy_name = unique("freeze-lease");
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": policy_name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["coordination.k8s.io"], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": ["leases"]
            }]},
            "validations": [{
                "expression": format!(
                    "object.metadata.name != '{lease}' || !has(object.spec.holderIdentity) || object.spec.holderIdentity != '{}'",
                    leader.identity
                ),
                "message": "this replica may no longer renew"
            }]
        }
    }))
    .expect("policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": policy_name},
        "spec": {"policyName": policy_name, "validationActions": ["Deny"]}
    }))
    .expect("binding");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let frozen = Instant::now();

    let status = exit_of(&mut leader, WAIT).await;
    let stopped_after = frozen.elapsed();
    let taken = held_by(&leases, &lease, &follower.identity, WAIT).await;
    let taken_after = frozen.elapsed();
    let _ = bindings
        .delete(&policy_name, &DeleteParams::default())
        .await;
    let _ = policies
        .delete(&policy_name, &DeleteParams::default())
        .await;

    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = leader.log();
    assert!(
        log.contains("the lease could not be renewed within 3s"),
        "{log}"
    );
    assert!(
        log.contains("may no longer renew"),
        "the refusal is logged: {log}"
    );
    // On the machine's one clock: the old leader had stopped before the new one acquired.
    let stopped = logged_at(&log, "lost the lease").expect("the loss is logged with its time");
    let acquired = taken
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.as_ref())
        .map(|t| t.0)
        .expect("acquireTime");
    println!(
        "unrenewable: leader exited {stopped_after:?} after renewals were refused; the other took over after {taken_after:?}; margin {:?}",
        acquired.duration_since(stopped)
    );
    assert!(
        stopped < acquired,
        "the old leader stopped at {stopped}, the new one acquired at {acquired}"
    );
    assert_eq!(transitions(&taken), Some(1));
}

#[tokio::test]
async fn a_leader_stopped_gracefully_hands_the_lease_over_at_once() {
    let client = kube_client("admin").await;
    let ns = unique("e2e-handover");
    create_namespace(&client, &ns).await;
    let leases = leases().await;
    let lease = unique("handover");
    // A 60 s lease: the other replica can take it within the wait below only if it is
    // released, not by expiry.
    let args = on_lease(&lease, 60, 10);
    let (mut leader, follower) = leader_and_follower(&ns, &leases, &lease, &args).await;

    let stopping = Instant::now();
    leader.terminate();
    let status = exit_of(&mut leader, Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "a requested stop is a clean exit: {status:?}"
    );
    assert!(
        leader.log().contains("released the lease"),
        "{}",
        leader.log()
    );
    let taken = held_by(&leases, &lease, &follower.identity, Duration::from_secs(30)).await;
    println!(
        "handover: the other replica leads {:?} after SIGTERM to the leader",
        stopping.elapsed()
    );
    assert_eq!(transitions(&taken), Some(1));
    eventually("the new leader's gauge", WAIT, || async {
        (follower.metrics().await.leader() == Some(1.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_operator_may_use_leases_only_in_its_own_namespace() {
    let operator = kube_client("operator").await;
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": unique("rbac")}})).expect("lease");
    let own: Api<Lease> = Api::namespaced(operator.clone(), LEASE_NAMESPACE);
    let created = own
        .create(&PostParams::default(), &lease)
        .await
        .expect("create in its own namespace");
    own.replace(
        created.metadata.name.as_deref().unwrap_or_default(),
        &PostParams::default(),
        &created,
    )
    .await
    .expect("update in its own namespace");
    let elsewhere: Api<Lease> = Api::namespaced(operator, "default");
    match elsewhere.create(&PostParams::default(), &lease).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("the operator could create a Lease outside its namespace: {other:?}"),
    }
}
