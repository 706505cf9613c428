//! End to end, the CodePipeline: read back stage by stage and action by action in the
//! cross-account example (deploys assume the environments' roles, a connection source triggers
//! on push); one field changed is one UpdatePipeline (and one StartPipelineExecution when
//! restart on update is on, none when off); an execution the emulator is told about shows in
//! `status.lastExecution` and `kubectl get`; the outputs ConfigMap; what an S3 source needs of
//! its bucket. Counts come from the emulator's record of the operator's requests.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_codepipeline::types::PipelineDeclaration;
use delivery_operator::api::{DeliveryPipeline, OutputsSpec, S3Source};
use delivery_operator::desired::Env;
use delivery_operator::groups::roles::desired as roles;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{self, count};
use crate::support::reconcile_and_wait;
use crate::support::{
    ACCOUNT, REGION, aws_config, condition, counts, ctx_of, eventually, example, gone, kube_client,
    request_reconcile, s3, sandbox, source_bucket, start, wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);

async fn declaration(name: &str) -> PipelineDeclaration {
    aws_sdk_codepipeline::Client::new(&aws_config().await)
        .get_pipeline()
        .name(name)
        .send()
        .await
        .expect("get pipeline")
        .pipeline()
        .cloned()
        .expect("declaration")
}

#[tokio::test]
async fn the_cross_account_pipeline_reads_back_stage_by_stage() {
    let (ns, operator, api) = start("e2e-pipeline").await;
    let dp = example("cross-account.yaml", &ns, "delivery");
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "delivery", 1).await;
    let outputs = ready.status.clone().expect("status").outputs;
    let name = ctx.names().base();
    assert_eq!(outputs.pipeline_name.as_deref(), Some(name.as_str()));
    assert_eq!(
        outputs.pipeline_arn.as_deref(),
        Some(ctx.arns().pipeline().as_str())
    );

    let p = declaration(&name).await;
    assert_eq!(p.pipeline_type().map(|t| t.as_str()), Some("V2"));
    assert_eq!(p.execution_mode().map(|m| m.as_str()), Some("SUPERSEDED"));
    assert_eq!(p.role_arn(), ctx.arns().pipeline_role(roles::PIPELINE));
    let store = p.artifact_store().expect("artifact store");
    assert_eq!(Some(store.location()), outputs.artifact_bucket.as_deref());
    assert_eq!(
        store.encryption_key().map(|k| k.id()),
        outputs.kms_key_arn.as_deref()
    );
    let stages: Vec<(&str, &str, &str)> = p
        .stages()
        .iter()
        .map(|s| {
            let action = &s.actions()[0];
            let kind = action.action_type_id().expect("type");
            (s.name(), kind.category().as_str(), kind.provider())
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("Source", "Source", "CodeStarSourceConnection"),
            ("Build", "Build", "CodeBuild"),
            ("Test", "Test", "CodeBuild"),
            ("DeployStaging", "Deploy", "ECS"),
            ("Approval", "Approval", "Manual"),
            ("DeployProduction", "Deploy", "ECS"),
        ]
    );
    let config = |stage: usize| -> BTreeMap<String, String> {
        p.stages()[stage].actions()[0]
            .configuration()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    assert_eq!(config(0)["BranchName"], "main");
    assert_eq!(config(0)["DetectChanges"], "false");
    assert_eq!(
        config(1)["ProjectName"],
        ctx.names().project(roles::BUILDER)
    );
    assert_eq!(
        config(2)["ProjectName"],
        ctx.names().project(roles::SCANNER)
    );
    assert!(config(2)["EnvironmentVariables"].contains("#{BuildVariables.IMAGE_TAG}"));
    assert_eq!(
        config(4)["NotificationArn"],
        ctx.arns().approval_topic().as_str()
    );
    assert_eq!(
        config(4)["CustomData"],
        "Approve the production release of checkout"
    );
    for (stage, env) in [(3, Env::Staging), (5, Env::Production)] {
        let action = &p.stages()[stage].actions()[0];
        assert_eq!(config(stage)["ClusterName"], ctx.names().cluster(env));
        assert_eq!(config(stage)["ServiceName"], ctx.names().service(env));
        assert_eq!(config(stage)["FileName"], "imagedefinitions.json");
        assert_eq!(
            action.role_arn(),
            Some(ctx.arns().environment_role(env, roles::DEPLOY).as_str()),
            "{env:?} deploys through its own account's deploy role"
        );
        assert_eq!(action.region(), Some(REGION));
    }
    let trigger = &p.triggers()[0];
    let git = trigger.git_configuration().expect("git trigger");
    assert_eq!(git.source_action_name(), "Source");
    assert_eq!(
        git.push()[0].branches().map(|b| b.includes().to_vec()),
        Some(vec!["main".to_string()])
    );

    // Nothing to do: no writes.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "delivery").await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(count(&calls, "write"), BTreeMap::new());

    // One field: one UpdatePipeline, and (restart on update) one StartPipelineExecution.
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "delivery",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approval": {"customData": "Check the dashboards first"}}})),
    )
    .await
    .expect("patch");
    wait_ready(&api, "delivery", 2).await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        counts(&[
            ("CodePipeline:UpdatePipeline", 1.0),
            ("CodePipeline:StartPipelineExecution", 1.0),
        ])
    );
    let p = declaration(&name).await;
    assert_eq!(
        p.stages()[4].actions()[0]
            .configuration()
            .and_then(|c| c.get("CustomData"))
            .map(String::as_str),
        Some("Check the dashboards first")
    );

    // Restart off: the update alone.
    api.patch(
        "delivery",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"restartExecutionOnUpdate": false}})),
    )
    .await
    .expect("patch");
    wait_ready(&api, "delivery", 3).await;
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "delivery",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approval": {"customData": "Ship it"}}})),
    )
    .await
    .expect("patch");
    wait_ready(&api, "delivery", 4).await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        counts(&[("CodePipeline:UpdatePipeline", 1.0)])
    );

    api.delete("delivery", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "delivery").await;
    let pipelines = aws_sdk_codepipeline::Client::new(&aws_config().await)
        .list_pipelines()
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert!(
        pipelines
            .into_iter()
            .all(|p| p.expect("list pipelines").name() != Some(name.as_str())),
        "the pipeline is gone"
    );
}

#[tokio::test]
async fn the_last_execution_and_the_outputs_config_map_follow_the_pipeline() {
    let (ns, _operator, api) = start("e2e-lastrun").await;
    let mut dp = example("minimal.yaml", &ns, "runner");
    dp.spec.outputs = Some(OutputsSpec {
        config_map_name: Some("runner-outputs".into()),
    });
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "runner", 1).await;
    let name = ctx_of(&dp).names().base();

    // Every output is in the ConfigMap, and it is owned by the pipeline.
    let config_maps: Api<ConfigMap> = Api::namespaced(kube_client("admin").await, &ns);
    let cm = config_maps.get("runner-outputs").await.expect("config map");
    let data = cm.data.clone().unwrap_or_default();
    let outputs = ready.status.clone().expect("status").outputs;
    for (key, value) in [
        ("pipelineName", outputs.pipeline_name.clone()),
        ("pipelineArn", outputs.pipeline_arn.clone()),
        ("kmsKeyArn", outputs.kms_key_arn.clone()),
        ("artifactBucket", outputs.artifact_bucket.clone()),
        ("imageRepositoryUri", outputs.image_repository_uri.clone()),
        (
            "notificationTopicArn",
            outputs.notification_topic_arn.clone(),
        ),
        ("approvalTopicArn", outputs.approval_topic_arn.clone()),
        (
            "stagingExecutionRoleArn",
            outputs
                .staging
                .as_ref()
                .and_then(|s| s.execution_role_arn.clone()),
        ),
    ] {
        assert!(value.is_some(), "{key} is an output");
        assert_eq!(data.get(key), value.as_ref(), "{key}");
    }
    let owner = &cm.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(owner.kind, "DeliveryPipeline");
    assert_eq!(Some(&owner.uid), ready.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    // A key removed by hand comes back at the next reconcile.
    reconcile_and_wait(&api, "runner").await;
    config_maps
        .patch(
            "runner-outputs",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"pipelineArn": null}})),
        )
        .await
        .expect("edit by hand");
    reconcile_and_wait(&api, "runner").await;
    let cm = config_maps.get("runner-outputs").await.expect("config map");
    assert_eq!(
        cm.data.unwrap_or_default().get("pipelineArn"),
        outputs.pipeline_arn.as_ref()
    );

    // A failed execution (the emulator runs none: the test says what happened).
    let id = emulator::pipeline_execution_id(json!({
        "pipeline": name,
        "status": "Failed",
        "stages": {"Source": "Succeeded", "Build": "Failed"},
        "trigger": {"triggerType": "CloudWatchEvent", "triggerDetail": "rule"},
        "events": false
    }))
    .await;
    request_reconcile(&api, "runner").await;
    let seen = eventually("the failed execution in status", WAIT, || async {
        let dp = api.get("runner").await.ok()?;
        let last = dp.status?.last_execution?;
        (last.id == id).then_some(last)
    })
    .await;
    assert_eq!(seen.status, "Failed");
    assert_eq!(seen.trigger.as_deref(), Some("CloudWatchEvent"));
    let stages: Vec<(String, String)> = seen
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.status.clone()))
        .collect();
    assert_eq!(
        stages[..3],
        [
            ("Source".to_string(), "Succeeded".to_string()),
            ("Build".to_string(), "Failed".to_string()),
            ("Test".to_string(), "NotRun".to_string()),
        ]
    );
    // `kubectl get` shows it in the "Last run" column.
    let out = sandbox()
        .kubectl()
        .args(["get", "deliverypipeline", "runner", "-n", &ns])
        .output()
        .expect("kubectl get");
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(header.contains("LAST RUN"), "{table}");
    assert!(row.contains("Failed"), "{table}");

    // Deleting the pipeline deletes its ConfigMap.
    api.delete("runner", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "runner").await;
    assert!(
        config_maps
            .get_opt("runner-outputs")
            .await
            .expect("get")
            .is_none(),
        "the outputs ConfigMap goes with the pipeline"
    );
}

fn with_source(dp: &mut DeliveryPipeline, bucket: &str) {
    dp.spec.source.s3 = Some(S3Source {
        bucket: bucket.into(),
        object_key: "app.zip".into(),
    });
}

#[tokio::test]
async fn an_s3_source_must_be_versioned_and_gets_its_events_sent_to_eventbridge() {
    let (ns, operator, api) = start("e2e-s3src").await;
    // Unversioned: reported, and no pipeline is made.
    let plain = source_bucket(&s3(&aws_config().await), false, false).await;
    let mut dp = example("minimal.yaml", &ns, "unversioned");
    with_source(&mut dp, &plain);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let reported = eventually("the unversioned source reported", WAIT, || async {
        let dp = api.get("unversioned").await.ok()?;
        condition(&dp, "PipelineReady")
            .filter(|c| c.reason == "SourceBucketNotVersioned")
            .cloned()
    })
    .await;
    assert_eq!(reported.status, "False");
    assert!(reported.message.contains(&plain), "{}", reported.message);
    let calls = emulator::calls_by(&operator.access_key).await;
    assert_eq!(
        count(&calls, "write").get("CodePipeline:CreatePipeline"),
        None
    );

    // Versioned, events not yet sent to EventBridge: the operator turns that on, once.
    let versioned = source_bucket(&s3(&aws_config().await), true, false).await;
    let mut dp = example("minimal.yaml", &ns, "versioned");
    with_source(&mut dp, &versioned);
    let since = emulator::last_seq(&operator.access_key).await;
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    wait_ready(&api, "versioned", 1).await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    let writes = count(&calls, "write");
    assert_eq!(
        writes.get("S3:PutBucketNotificationConfiguration"),
        Some(&1.0)
    );
    let got = s3(&aws_config().await)
        .get_bucket_notification_configuration()
        .bucket(&versioned)
        .send()
        .await
        .expect("notification configuration");
    assert!(got.event_bridge_configuration().is_some());
    assert_eq!(ACCOUNT, ctx_of(&dp).account_id);
}
