//! End to end, running it like a platform team would: pausing a pipeline stops every AWS call
//! (checked against the emulator's own record), and a paused pipeline's deletion waits.

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator;
use crate::support::{condition, eventually, example, gone, start, wait_ready};

const WAIT: Duration = Duration::from_secs(90);
const PAUSED: &str = "delivery-operator.dev/paused";

#[tokio::test]
async fn a_paused_pipeline_makes_no_aws_calls_and_its_deletion_waits() {
    let (ns, operator, api) = start("e2e-paused").await;
    api.create(
        &PostParams::default(),
        &example("minimal.yaml", &ns, "held"),
    )
    .await
    .expect("create");
    wait_ready(&api, "held", 1).await;

    let pause = |value: serde_json::Value| {
        Patch::Merge(json!({"metadata": {"annotations": {PAUSED: value}}}))
    };
    api.patch("held", &PatchParams::default(), &pause(json!("true")))
        .await
        .expect("pause");
    let since = emulator::last_seq(&operator.access_key).await;
    // A spec change while paused: not applied.
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"logRetentionDays": 90}})),
    )
    .await
    .expect("change while paused");
    let synced = eventually("Synced=False Paused", WAIT, || async {
        let dp = api.get("held").await.ok()?;
        condition(&dp, "Synced")
            .filter(|c| c.reason == "Paused")
            .cloned()
    })
    .await;
    assert_eq!(synced.status, "False");
    assert!(synced.message.contains(PAUSED), "{}", synced.message);
    let dp = api.get("held").await.expect("get");
    assert_eq!(
        dp.status.as_ref().and_then(|s| s.observed_generation),
        Some(1),
        "nothing was reconciled"
    );

    // Deleting a paused pipeline waits for it to be resumed.
    api.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the deletion waiting", WAIT, || async {
        let dp = api.get("held").await.ok()?;
        condition(&dp, "Synced")
            .filter(|c| c.message.contains("deletion waits"))
            .cloned()
    })
    .await;
    assert_eq!(
        emulator::calls_after(&operator.access_key, since)
            .await
            .len(),
        0,
        "a paused pipeline makes no AWS call"
    );

    api.patch(
        "held",
        &PatchParams::default(),
        &pause(serde_json::Value::Null),
    )
    .await
    .expect("resume");
    gone(&api, "held").await;
    assert!(
        !emulator::calls_after(&operator.access_key, since)
            .await
            .is_empty()
    );
}
