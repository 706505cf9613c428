//! The delivered pipeline, run: the emulator executes each execution of an armed pipeline as
//! CodePipeline, CodeBuild and ECS would (tests/moto/emu_executor.py), every call authorized by
//! the policies the operator wrote (tests/moto/emu_authorize.py).

use std::io::Write;
use std::time::Duration;

use aws_sdk_codepipeline::types::{ApprovalResult, ApprovalStatus};
use delivery_operator::api::{DeliveryPipeline, S3Source};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::emulator::{self, count};
use crate::support::{
    ACCOUNT, Operator, aws_config, config_for, counts, create_namespace, eventually, example,
    kube_client, request_reconcile, s3, source_bucket, start, unique, wait_ready,
};

/// A run goes through a real shell, the AWS CLI and several AWS calls per action.
const RUN_WAIT: Duration = Duration::from_secs(120);

/// A zip archive of `files`, as a developer's CI uploads the source.
fn source_zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut archive = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (path, text) in files {
            archive.start_file(*path, options).expect("zip entry");
            archive.write_all(text.as_bytes()).expect("zip write");
        }
        archive.finish().expect("zip finish");
    }
    buffer.into_inner()
}

const APP: &[(&str, &str)] = &[
    (
        "Dockerfile",
        "FROM public.ecr.aws/docker/library/busybox:1.37\nCOPY app.sh /app.sh\nCMD [\"/app.sh\"]\n",
    ),
    ("app.sh", "#!/bin/sh\necho hello\n"),
];

/// Uploads a new version of the source object; returns its version ID.
async fn upload(bucket: &str, files: &[(&str, &str)]) -> String {
    s3(&aws_config().await)
        .put_object()
        .bucket(bucket)
        .key("app.zip")
        .body(source_zip(files).into())
        .send()
        .await
        .expect("upload source")
        .version_id()
        .expect("versioned source bucket")
        .to_string()
}

/// Waits for run number `index` (oldest first) of `pipeline` to satisfy `done`.
async fn wait_run(
    pipeline: &str,
    index: usize,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, RUN_WAIT, || async {
        let runs = emulator::runs(pipeline).await;
        let run = runs.get(index)?;
        if done(run) {
            return Some(run.clone());
        }
        if finished(run) {
            panic!("the run ended before {what}: {run:#}");
        }
        None
    })
    .await
}

fn waiting_for_approval(run: &Value) -> bool {
    run["steps"].as_array().is_some_and(|s| {
        s.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.starts_with("waiting for approval"))
        })
    })
}

fn finished(run: &Value) -> bool {
    run["status"] != "InProgress"
}

/// Answers the approval the execution waits for, with the token GetPipelineState shows.
async fn decide(pipeline: &str, status: ApprovalStatus) {
    let client = aws_sdk_codepipeline::Client::new(&aws_config().await);
    let state = client
        .get_pipeline_state()
        .name(pipeline)
        .send()
        .await
        .expect("pipeline state");
    let token = state
        .stage_states()
        .iter()
        .find(|s| s.stage_name() == Some("Approval"))
        .and_then(|s| s.action_states().first())
        .and_then(|a| a.latest_execution())
        .and_then(|e| e.token())
        .expect("the approval's token")
        .to_string();
    client
        .put_approval_result()
        .pipeline_name(pipeline)
        .stage_name("Approval")
        .action_name("Approve")
        .token(token)
        .result(
            ApprovalResult::builder()
                .status(status)
                .summary("decided by the test")
                .build()
                .expect("result"),
        )
        .send()
        .await
        .expect("put approval result");
}

/// Run `index` of `pipeline` reaches its approval, gets `status`, and ends; returns it.
async fn through_approval(pipeline: &str, index: usize, status: ApprovalStatus) -> Value {
    wait_run(
        pipeline,
        index,
        "the run waits for approval",
        waiting_for_approval,
    )
    .await;
    decide(pipeline, status).await;
    wait_run(pipeline, index, "the run ends", finished).await
}

/// "Release change": the pipeline runs its source's latest revision again.
async fn release_change(pipeline: &str) {
    aws_sdk_codepipeline::Client::new(&aws_config().await)
        .start_pipeline_execution()
        .name(pipeline)
        .send()
        .await
        .expect("release change");
}

/// The image the service runs: its task definition's container image, read from ECS.
async fn running_image(cluster: &str, service: &str) -> String {
    running_image_in(ACCOUNT, cluster, service).await
}

/// [`running_image`] of a service in `account`.
async fn running_image_in(account: &str, cluster: &str, service: &str) -> String {
    let ecs = aws_sdk_ecs::Client::new(&config_for(account).await);
    let described = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .expect("describe services");
    let task_definition = described.services()[0]
        .task_definition()
        .expect("task definition")
        .to_string();
    ecs.describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .expect("task definition")
        .task_definition()
        .and_then(|t| t.container_definitions().first())
        .and_then(|c| c.image())
        .expect("image")
        .to_string()
}

fn denied(run: &Value) -> Vec<Value> {
    run["authorizations"]
        .as_array()
        .expect("authorizations")
        .iter()
        .filter(|a| a["allowed"] == false)
        .cloned()
        .collect()
}

fn with_source(dp: &mut DeliveryPipeline, bucket: &str) {
    dp.spec.source.s3 = Some(S3Source {
        bucket: bucket.into(),
        object_key: "app.zip".into(),
    });
}

struct Delivered {
    api: Api<DeliveryPipeline>,
    dp: DeliveryPipeline,
    bucket: String,
    pipeline: String,
    repository_uri: String,
    staging: (String, String),
    production: (String, String),
}

/// The minimal example with its own source bucket, Ready, and armed.
async fn delivered(prefix: &str, name: &str) -> (Operator, Delivered) {
    delivered_with(prefix, name, &[]).await
}

/// [`delivered`] with settings of the operator (environment variables).
async fn delivered_with(prefix: &str, name: &str, env: &[(&str, &str)]) -> (Operator, Delivered) {
    let client = kube_client("admin").await;
    let ns = unique(prefix);
    create_namespace(&client, &ns).await;
    let operator = Operator::start(&ns, env);
    let api: Api<DeliveryPipeline> = Api::namespaced(client, &ns);
    let bucket = source_bucket(&s3(&aws_config().await), true, true).await;
    let mut dp = example("minimal.yaml", &ns, name);
    with_source(&mut dp, &bucket);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let dp = wait_ready(&api, name, 1).await;
    let outputs = dp.status.as_ref().expect("status").outputs.clone();
    let pipeline = outputs.pipeline_name.expect("pipeline name");
    let env = |e: Option<delivery_operator::api::EnvironmentOutputs>| {
        let e = e.expect("environment outputs");
        (
            e.cluster_name.expect("cluster"),
            e.service_name.expect("service"),
        )
    };
    let delivered = Delivered {
        api,
        bucket,
        repository_uri: outputs.image_repository_uri.expect("repository URI"),
        staging: env(outputs.staging),
        production: env(outputs.production),
        pipeline: pipeline.clone(),
        dp,
    };
    emulator::arm_runs(&pipeline, json!({})).await;
    (operator, delivered)
}

/// The image tag build.sh gives an S3 object version.
fn tag_of(version: &str) -> String {
    let mut tag: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if tag.starts_with(['.', '-']) {
        tag.replace_range(0..1, "_");
    }
    tag.chars().take(128).collect()
}

/// A source change runs every stage to Succeeded: the staging and production services run the
/// image the build pushed, the status shows the run, the approval request names the image and
/// staging; every call of the run was authorized by the generated policies. The same revision
/// run again (a retry, "Release change") succeeds too, with the image already pushed.
#[tokio::test]
async fn a_source_change_runs_through_every_stage_and_runs_again() {
    let (_operator, d) = delivered("e2e-run", "hello").await;
    let version = upload(&d.bucket, APP).await;
    let image = format!("{}:{}", d.repository_uri, tag_of(&version));

    wait_run(
        &d.pipeline,
        0,
        "the first run waits for approval",
        waiting_for_approval,
    )
    .await;
    assert_eq!(
        running_image(&d.staging.0, &d.staging.1).await,
        image,
        "staging runs the build"
    );
    assert_ne!(
        running_image(&d.production.0, &d.production.1).await,
        image,
        "not yet production"
    );
    decide(&d.pipeline, ApprovalStatus::Approved).await;
    let run = wait_run(&d.pipeline, 0, "the first run ends", finished).await;
    assert_eq!(run["status"], "Succeeded", "{run:#}");
    assert_eq!(
        run["trigger"]["triggerType"], "CloudWatchEvent",
        "started by the source's rule"
    );
    assert_eq!(running_image(&d.production.0, &d.production.1).await, image);

    // The approval request says what is approved and where it runs.
    let request = &run["approvalRequests"][0]["approval"];
    let custom = request["customData"].as_str().expect("custom data");
    assert!(custom.contains(&tag_of(&version)), "{custom}");
    assert!(custom.contains(&d.staging.1), "{custom}");
    assert!(
        request["externalEntityLink"]
            .as_str()
            .is_some_and(|l| l.starts_with("https://"))
    );
    // The scan's JUnit report reached its report group, every threshold passed.
    let report = &run["reports"][0];
    assert_eq!(report["format"], "JUNITXML");
    assert_eq!(report["failures"], 0, "{report:#}");
    assert!(report["tests"].as_u64().is_some_and(|n| n > 0));
    // Every call the run made was authorized, none denied.
    assert_eq!(denied(&run), Vec::<Value>::new());
    let allowed = run["authorizations"]
        .as_array()
        .expect("authorizations")
        .len();
    assert!(
        allowed > 20,
        "the run's calls were authorized one by one ({allowed})"
    );

    // The status shows the run (kubectl get dp: "Last run") from the operator's next look at
    // the pipeline (a resync; here asked for).
    request_reconcile(&d.api, &d.dp.metadata.name.clone().expect("name")).await;
    let status = eventually("the run in status", RUN_WAIT, || async {
        let last = d
            .api
            .get(&d.dp.metadata.name.clone()?)
            .await
            .ok()?
            .status?
            .last_execution?;
        (last.id == run["executionId"].as_str()? && last.status == "Succeeded").then_some(last)
    })
    .await;
    assert_eq!(status.stages.len(), 6);

    // The same revision again: Release change.
    release_change(&d.pipeline).await;
    let rerun = through_approval(&d.pipeline, 1, ApprovalStatus::Approved).await;
    assert_eq!(rerun["status"], "Succeeded", "{rerun:#}");
    let build_log = rerun["logs"][0]["output"].as_str().expect("build log");
    assert!(build_log.contains("reusing it"), "{build_log}");
    assert_eq!(running_image(&d.production.0, &d.production.1).await, image);
    assert_eq!(denied(&rerun), Vec::<Value>::new());

    // A pipeline update restarts the execution (restartExecutionOnUpdate): the same revision
    // once more, green.
    let name = d.dp.metadata.name.clone().expect("name");
    d.api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "restartExecutionOnUpdate": true,
                "approval": {"customData": "Release hello once staging is green"}
            }})),
        )
        .await
        .expect("pipeline update");
    let restarted = wait_run(
        &d.pipeline,
        2,
        "the restart waits for approval",
        waiting_for_approval,
    )
    .await;
    assert_eq!(
        restarted["trigger"]["triggerType"],
        "StartPipelineExecution"
    );
    assert_eq!(
        restarted["approvalRequests"][0]["approval"]["customData"],
        "Release hello once staging is green"
    );
    decide(&d.pipeline, ApprovalStatus::Approved).await;
    let restarted = wait_run(&d.pipeline, 2, "the restart ends", finished).await;
    assert_eq!(restarted["status"], "Succeeded", "{restarted:#}");

    // A spec change of the service (cpu) after deployments keeps the image they deployed.
    d.api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"environments": {"staging": {"cpu": 512, "memory": 1024}}}}),
            ),
        )
        .await
        .expect("cpu change");
    wait_ready(&d.api, &name, 3).await;
    assert_eq!(
        running_image(&d.staging.0, &d.staging.1).await,
        image,
        "the cpu change kept the image"
    );
}

/// The image production runs outlives twelve newer builds (the repository keeps the last ten):
/// the lifecycle policy, applied by the emulator after every push, never expires an image a
/// service runs, and production can still pull it.
#[tokio::test]
async fn the_image_production_runs_outlives_twelve_newer_builds() {
    let (_operator, d) = delivered("e2e-runkeep", "kept").await;
    let name = d.dp.metadata.name.clone().expect("name");
    let repository = d
        .repository_uri
        .split_once('/')
        .expect("registry/name")
        .1
        .to_string();
    let first = upload(&d.bucket, APP).await;
    let released_tag = tag_of(&first);
    let run = through_approval(&d.pipeline, 0, ApprovalStatus::Approved).await;
    assert_eq!(run["status"], "Succeeded", "{run:#}");

    // The operator's next look protects what production now runs.
    request_reconcile(&d.api, &name).await;
    let ecr = aws_sdk_ecr::Client::new(&aws_config().await);
    eventually("the released tag protected", RUN_WAIT, || async {
        let policy = ecr
            .get_lifecycle_policy()
            .repository_name(&repository)
            .send()
            .await
            .ok()?;
        policy
            .lifecycle_policy_text()?
            .contains(&format!("\"{released_tag}\""))
            .then_some(())
    })
    .await;

    for build in 1..=12 {
        let script = format!("#!/bin/sh\necho build {build}\n");
        upload(&d.bucket, &[APP[0], ("app.sh", script.as_str())]).await;
        through_approval(&d.pipeline, build, ApprovalStatus::Rejected).await;
    }
    let mut tags = Vec::new();
    let mut pages = ecr
        .list_images()
        .repository_name(&repository)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("images page");
        tags.extend(
            page.image_ids()
                .iter()
                .filter_map(|i| i.image_tag().map(str::to_string)),
        );
    }
    assert!(
        tags.contains(&released_tag),
        "production's image was expired: {tags:?}"
    );
    // Ten newest builds kept, older candidates expired: the policy did run.
    let candidates = tags
        .iter()
        .filter(|t| **t != released_tag && *t != "latest")
        .count();
    assert_eq!(candidates, 10, "{tags:?}");
    assert_eq!(
        running_image(&d.production.0, &d.production.1).await,
        format!("{}:{released_tag}", d.repository_uri)
    );
}

/// A CRITICAL finding stops the run at Test and staging keeps its image; a rejected approval
/// never touches production; a failed staging deployment rolls back and fails the run.
#[tokio::test]
async fn failures_stop_the_run_where_they_happen() {
    let (_operator, d) = delivered("e2e-runfail", "gated").await;
    let repository = d
        .repository_uri
        .split_once('/')
        .expect("registry/name")
        .1
        .to_string();

    // A first release reaches production.
    let first = upload(&d.bucket, APP).await;
    let released = format!("{}:{}", d.repository_uri, tag_of(&first));
    let run = through_approval(&d.pipeline, 0, ApprovalStatus::Approved).await;
    assert_eq!(run["status"], "Succeeded", "{run:#}");

    // A CRITICAL finding: the gate fails the run at Test.
    emulator::set_scan_findings(
        &repository,
        json!([{"name": "CVE-2024-0001", "severity": "CRITICAL"}]),
    )
    .await;
    let second = upload(
        &d.bucket,
        &[APP[0], ("app.sh", "#!/bin/sh\necho changed\n")],
    )
    .await;
    let run = wait_run(&d.pipeline, 1, "the gated run ends", finished).await;
    assert_eq!(run["status"], "Failed");
    assert_eq!(run["failure"]["stage"], "Test", "{run:#}");
    let report = &run["reports"][0];
    assert!(
        report["failures"].as_u64().is_some_and(|n| n > 0),
        "{report:#}"
    );
    assert!(
        report["xml"]
            .as_str()
            .is_some_and(|x| x.contains("CVE-2024-0001"))
    );
    assert_eq!(
        running_image(&d.staging.0, &d.staging.1).await,
        released,
        "staging kept its image"
    );
    // The FAILED event reached the notifications topic, and the failure alarm's metric (the
    // rule's AWS/Events TriggeredRules) has its data point.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws_config().await);
    let alarm_name = format!("{}-failed", d.pipeline);
    let alarms = cloudwatch
        .describe_alarms()
        .alarm_names(&alarm_name)
        .send()
        .await
        .expect("describe alarms");
    let alarm = alarms.metric_alarms().first().expect("the failure alarm");
    let rule = alarm
        .dimensions()
        .iter()
        .find(|d| d.name() == Some("RuleName"))
        .and_then(|d| d.value())
        .expect("the alarm's rule")
        .to_string();
    let deliveries = emulator::event_deliveries(&rule).await;
    let failed: Vec<&Value> = deliveries
        .iter()
        .filter(|e| {
            e["delivered"] == true
                && e["input"]
                    .as_str()
                    .is_some_and(|i| i.contains(run["executionId"].as_str().unwrap_or("?")))
        })
        .collect();
    assert_eq!(failed.len(), 1, "{deliveries:#?}");
    assert!(
        failed[0]["targetArn"]
            .as_str()
            .is_some_and(|t| t.ends_with("-notifications"))
    );
    let now = std::time::SystemTime::now();
    let statistics = cloudwatch
        .get_metric_statistics()
        .namespace(alarm.namespace().expect("namespace"))
        .metric_name(alarm.metric_name().expect("metric"))
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("RuleName")
                .value(&rule)
                .build(),
        )
        .start_time((now - Duration::from_secs(900)).into())
        .end_time((now + Duration::from_secs(60)).into())
        .period(300)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .expect("metric statistics");
    let sum: f64 = statistics.datapoints().iter().filter_map(|p| p.sum()).sum();
    assert_eq!(sum, 1.0, "one failed execution so far");

    // Without the finding, the same revision reaches the approval, which is rejected.
    emulator::set_scan_findings(&repository, json!([])).await;
    release_change(&d.pipeline).await;
    wait_run(
        &d.pipeline,
        2,
        "the third run waits for approval",
        waiting_for_approval,
    )
    .await;
    let candidate = format!("{}:{}", d.repository_uri, tag_of(&second));
    assert_eq!(running_image(&d.staging.0, &d.staging.1).await, candidate);
    decide(&d.pipeline, ApprovalStatus::Rejected).await;
    let run = wait_run(&d.pipeline, 2, "the rejected run ends", finished).await;
    assert_eq!(run["status"], "Failed");
    assert_eq!(run["failure"]["stage"], "Approval", "{run:#}");
    assert_eq!(
        running_image(&d.production.0, &d.production.1).await,
        released,
        "production untouched"
    );

    // Staging's deployment fails: the circuit breaker rolls it back and the run fails there.
    emulator::arm_runs(&d.pipeline, json!({"failDeployments": [d.staging.1]})).await;
    upload(&d.bucket, &[APP[0], ("app.sh", "#!/bin/sh\nexit 1\n")]).await;
    let run = wait_run(&d.pipeline, 3, "the broken deployment's run ends", finished).await;
    assert_eq!(run["status"], "Failed");
    assert_eq!(run["failure"]["stage"], "DeployStaging", "{run:#}");
    assert!(
        run["failure"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rolled the service back"))
    );
    assert_eq!(
        running_image(&d.staging.0, &d.staging.1).await,
        candidate,
        "rolled back"
    );

    // A source without its Dockerfile: the build fails, saying so, and nothing is deployed.
    emulator::arm_runs(&d.pipeline, json!({})).await;
    upload(&d.bucket, &[APP[1]]).await;
    let run = wait_run(
        &d.pipeline,
        4,
        "the run without a Dockerfile ends",
        finished,
    )
    .await;
    assert_eq!(run["status"], "Failed");
    assert_eq!(run["failure"]["stage"], "Build", "{run:#}");
    let message = run["failure"]["message"].as_str().expect("message");
    assert!(message.contains("failed to read dockerfile"), "{message}");
    assert_eq!(running_image(&d.staging.0, &d.staging.1).await, candidate);
    for run in emulator::runs(&d.pipeline).await {
        assert_eq!(denied(&run), Vec::<Value>::new(), "{}", run["executionId"]);
    }
}

/// One statement taken from one role (the build role's push): the run stops at Build with the
/// AccessDenied AWS would return, naming the action. The pipeline is observed only, so the
/// operator does not put the statement back before the run.
#[tokio::test]
async fn a_missing_permission_stops_the_run_at_its_action() {
    let (_operator, d) = delivered("e2e-rundeny", "narrow").await;
    let name = d.dp.metadata.name.clone().expect("name");
    d.api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"managementPolicy": "ObserveOnly"}})),
        )
        .await
        .expect("observe only");
    eventually("observe only in effect", RUN_WAIT, || async {
        let dp = d.api.get(&name).await.ok()?;
        (dp.status?.observed_generation? >= 2).then_some(())
    })
    .await;
    let iam = aws_sdk_iam::Client::new(&aws_config().await);
    let role = format!("{}-build", d.pipeline);
    let policy_name = iam
        .list_role_policies()
        .role_name(&role)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .next()
        .expect("one inline policy")
        .expect("policies");
    let document = iam
        .get_role_policy()
        .role_name(&role)
        .policy_name(&policy_name)
        .send()
        .await
        .expect("policy");
    // IAM returns the document URL-encoded.
    let mut parsed =
        delivery_operator::desired::policy::parse(document.policy_document()).expect("policy JSON");
    for statement in parsed["Statement"].as_array_mut().expect("statements") {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != "ecr:PutImage");
        }
    }
    iam.put_role_policy()
        .role_name(&role)
        .policy_name(&policy_name)
        .policy_document(parsed.to_string())
        .send()
        .await
        .expect("narrowed policy");

    upload(&d.bucket, APP).await;
    let run = wait_run(&d.pipeline, 0, "the narrowed run ends", finished).await;
    assert_eq!(run["status"], "Failed");
    assert_eq!(run["failure"]["stage"], "Build", "{run:#}");
    let message = run["failure"]["message"].as_str().expect("message");
    assert!(
        message.contains("is not authorized to perform: ecr:PutImage"),
        "{message}"
    );
    let denied = denied(&run);
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0]["action"], "ecr:PutImage");
}

/// The cross-account example: a push to its connection runs into staging (222222222222) and
/// production (333333333333) through each account's deploy role, which reads the artifacts in
/// the pipeline account (bucket and key policies) and whose tasks pull the image across
/// accounts (repository policy); every call authorized, none denied.
#[tokio::test]
async fn the_cross_account_pipeline_runs_into_both_accounts() {
    let (ns, _operator, api) = start("e2e-runx").await;
    let dp = example("cross-account.yaml", &ns, "checkout");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "checkout", 1).await;
    let outputs = ready.status.expect("status").outputs;
    let pipeline = outputs.pipeline_name.expect("pipeline");
    let staging = outputs.staging.expect("staging");
    let production = outputs.production.expect("production");
    let (staging_account, staging_cluster, staging_service) = (
        staging.account_id.expect("account"),
        staging.cluster_name.expect("cluster"),
        staging.service_name.expect("service"),
    );
    let (production_account, production_cluster, production_service) = (
        production.account_id.expect("account"),
        production.cluster_name.expect("cluster"),
        production.service_name.expect("service"),
    );
    emulator::arm_runs(&pipeline, json!({})).await;
    let files: serde_json::Map<String, Value> =
        APP.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let commit = emulator::source_push(&pipeline, Value::Object(files)).await;
    let image = format!(
        "{}:{}",
        outputs.image_repository_uri.expect("repository"),
        &commit[..8]
    );

    wait_run(
        &pipeline,
        0,
        "the run waits for approval",
        waiting_for_approval,
    )
    .await;
    assert_eq!(
        running_image_in(&staging_account, &staging_cluster, &staging_service).await,
        image
    );
    decide(&pipeline, ApprovalStatus::Approved).await;
    let run = wait_run(&pipeline, 0, "the run ends", finished).await;
    assert_eq!(run["status"], "Succeeded", "{run:#}");
    assert_eq!(
        running_image_in(
            &production_account,
            &production_cluster,
            &production_service
        )
        .await,
        image
    );
    assert_eq!(denied(&run), Vec::<Value>::new());
    // The deploy roles of both accounts read the pipeline account's artifacts.
    let reads: Vec<&Value> = run["authorizations"]
        .as_array()
        .expect("authorizations")
        .iter()
        .filter(|a| {
            a["action"] == "s3:GetObject"
                && a["principal"]
                    .as_str()
                    .is_some_and(|p| p.contains("-deploy/"))
        })
        .collect();
    assert_eq!(reads.len(), 2, "{reads:#?}");
}

/// While a run waits for its approval (for days, in real life), each of the operator's
/// wake-ups between drift checks reads the execution alone: ListPipelineExecutions and
/// GetPipelineState, nothing of the pipeline's other resources (the emulator's record); the
/// run's end reaches the status.
#[tokio::test]
async fn while_an_approval_waits_the_operator_reads_only_the_execution() {
    // Time at 1:30 of production's defaults (poll 30 s, drift check 600 s): a poll every
    // second and a drift check every 20 s, so the 20 polls of a 10-minute wait span one whole
    // drift interval, which must not read the pipeline while the execution runs.
    let (operator, d) = delivered_with(
        "e2e-runpoll",
        "waiting",
        &[
            ("EXECUTION_POLL_SECONDS", "1"),
            ("RESYNC_INTERVAL_SECONDS", "20"),
        ],
    )
    .await;
    let name = d.dp.metadata.name.clone().expect("name");
    upload(&d.bucket, APP).await;
    let run = wait_run(
        &d.pipeline,
        0,
        "the run waits for approval",
        waiting_for_approval,
    )
    .await;
    let id = run["executionId"].as_str().expect("id").to_string();
    request_reconcile(&d.api, &name).await;
    eventually("the waiting run in status", RUN_WAIT, || async {
        let last = d.api.get(&name).await.ok()?.status?.last_execution?;
        (last.id == id && last.status == "InProgress").then_some(())
    })
    .await;

    // Twenty wake-ups, as the emulator recorded them: from one ListPipelineExecutions to the
    // twenty-first. Each reads the execution, and only the execution.
    let since = emulator::last_seq(&operator.access_key).await;
    let started = std::time::Instant::now();
    let calls = eventually(
        "21 polls in the record",
        Duration::from_secs(120),
        || async {
            let calls = emulator::calls_after(&operator.access_key, since).await;
            let polls: Vec<usize> = calls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.operation == "ListPipelineExecutions")
                .map(|(i, _)| i)
                .collect();
            (polls.len() >= 21).then(|| calls[polls[0]..polls[20]].to_vec())
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "the polls spanned a whole drift interval ({:?})",
        started.elapsed()
    );
    assert_eq!(
        count(&calls, "read"),
        counts(&[
            ("CodePipeline:ListPipelineExecutions", 20.0),
            ("CodePipeline:GetPipelineState", 20.0)
        ]),
        "twenty polls, and no drift check while the execution runs"
    );
    assert_eq!(count(&calls, "write"), std::collections::BTreeMap::new());

    decide(&d.pipeline, ApprovalStatus::Approved).await;
    wait_run(&d.pipeline, 0, "the run ends", finished).await;
    eventually("the finished run in status", RUN_WAIT, || async {
        let last = d.api.get(&name).await.ok()?.status?.last_execution?;
        (last.id == id && last.status == "Succeeded").then_some(())
    })
    .await;
    operator.assert_calls_match_record().await;
}
