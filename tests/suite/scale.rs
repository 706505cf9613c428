//! What the operator costs at rest: a restart (or a new leader) trusts what the status says was
//! verified whole within the resync interval, and makes no AWS call until it is due.

use std::time::Duration;

use delivery_operator::api::DeliveryPipeline;
use kube::api::{Api, DeleteParams, PostParams};

use crate::support::{
    Operator, create_namespace, eventually, example, kube_client, reconcile_and_wait, unique,
    wait_ready,
};

const WAIT: Duration = Duration::from_secs(180);

/// `RESTART_PIPELINES` whole pipelines (10 in `make test`; docs/testing.md has 50) Ready, the
/// operator killed and started again: once the new process has looked at every pipeline (its
/// log names each one it deferred), the emulator's record holds no call of it at all (not even the
/// session's GetCallerIdentity), and no status changed; a reconcile asked for on one pipeline
/// then reads AWS at once (the skip is for what was verified, not a stopped operator).
#[tokio::test]
async fn a_restart_with_ready_pipelines_makes_no_aws_call_until_they_are_due() {
    let size: usize = std::env::var("RESTART_PIPELINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let client = kube_client("admin").await;
    let ns = unique("scale-restart");
    create_namespace(&client, &ns).await;
    let api: Api<DeliveryPipeline> = Api::namespaced(client, &ns);
    let names: Vec<String> = (0..size).map(|i| format!("p{i:03}")).collect();
    // The request rate is not what this test is about: many deletions at the default rate
    // queue for minutes.
    let env = [
        ("AWS_REQUESTS_PER_SECOND", "100"),
        ("AWS_REQUEST_BURST", "100"),
    ];
    let first = Operator::start(&ns, &env);
    for name in &names {
        api.create(&PostParams::default(), &example("minimal.yaml", &ns, name))
            .await
            .expect("create");
    }
    for name in &names {
        wait_ready(&api, name, 1).await;
    }
    drop(first);
    let mut verified = Vec::new();
    for name in &names {
        let status = api.get(name).await.expect("get").status.expect("status");
        assert!(status.verified_at.is_some(), "{name}: verifiedAt written");
        verified.push(status);
    }

    let second = Operator::start(&ns, &env);
    // Its log names each pipeline it deferred (the skip writes nothing anywhere else).
    eventually("the new process looked at every pipeline", WAIT, || async {
        let log = second.plain_log();
        names
            .iter()
            .all(|name| {
                log.lines().any(|l| {
                    l.contains("verified whole within the resync interval")
                        && l.contains(&format!("pipeline={ns}/{name} "))
                })
            })
            .then_some(())
    })
    .await;
    assert_eq!(
        second.calls().await.len(),
        0,
        "AWS calls of the restarted operator before any pipeline was due"
    );
    for (name, before) in names.iter().zip(&verified) {
        let now = api.get(name).await.expect("get").status.expect("status");
        assert_eq!(&now, before, "{name}: status unchanged by the restart");
    }

    reconcile_and_wait(&api, &names[0]).await;
    assert!(
        !second.calls().await.is_empty(),
        "a requested reconcile reads AWS"
    );

    for name in &names {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    for name in &names {
        crate::support::gone_within(&api, name, WAIT).await;
    }
}
