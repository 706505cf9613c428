//! End to end, the Build and Test stages' CodeBuild projects and the scan's report group: read
//! back field by field (buildspec identical to the rendered one), a resync with nothing to do
//! reads and never writes, one field changed is one UpdateProject, a hand edit is restored,
//! deletion removes both projects and the report group. Counts come from the emulator's
//! record of the operator's requests.

use std::collections::BTreeMap;

use delivery_operator::api::DeliveryPipeline;
use delivery_operator::desired::PipelineContext;
use delivery_operator::groups::log_groups::desired::{BUILD, SCAN};
use delivery_operator::groups::projects::desired::{Inputs, Project, Stage, project};
use delivery_operator::groups::roles::desired as roles;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{self, count};
use crate::support::reconcile_and_wait;
use crate::support::{Operator, aws_config, counts, ctx_of, example, gone, start, wait_ready};

/// CodeBuild calls of `kind` the emulator recorded for this operator after request `since`.
async fn codebuild_calls(operator: &Operator, kind: &str, since: u64) -> BTreeMap<String, f64> {
    let calls: Vec<_> = emulator::calls_after(&operator.access_key, since)
        .await
        .into_iter()
        .filter(|c| c.service == "CodeBuild")
        .collect();
    count(&calls, kind)
}

/// Both projects as the operator renders them for `dp` once Ready.
fn desired_projects(ctx: &PipelineContext, dp: &DeliveryPipeline) -> Vec<Project> {
    let outputs = dp.status.clone().expect("status").outputs;
    let key = outputs.kms_key_arn.expect("key");
    let uri = outputs.image_repository_uri.expect("repository");
    let bucket = outputs.artifact_bucket.expect("bucket");
    let arns = ctx.arns();
    let log_prefix = ctx.names().log_group_prefix("pipeline");
    [
        (Stage::Build, roles::BUILDER, BUILD),
        (Stage::Scan, roles::SCANNER, SCAN),
    ]
    .into_iter()
    .map(|(stage, purpose, logs)| {
        project(
            ctx,
            stage,
            &Inputs {
                kms_key_arn: &key,
                role_arn: &arns.pipeline_role(purpose),
                log_group: &format!("{log_prefix}{logs}"),
                repository_uri: &uri,
                artifact_bucket: Some(&bucket),
            },
        )
    })
    .collect()
}

async fn read_project(
    codebuild: &aws_sdk_codebuild::Client,
    name: &str,
) -> Option<aws_sdk_codebuild::types::Project> {
    codebuild
        .batch_get_projects()
        .names(name)
        .send()
        .await
        .expect("batch get projects")
        .projects()
        .first()
        .cloned()
}

fn assert_project_matches(got: &aws_sdk_codebuild::types::Project, want: &Project) {
    let name = &want.name;
    assert_eq!(got.arn(), Some(want.arn.as_str()), "{name}");
    assert_eq!(got.description(), Some(want.description.as_str()), "{name}");
    let source = got.source().expect("source");
    assert_eq!(source.r#type().as_str(), "CODEPIPELINE", "{name}");
    assert_eq!(source.buildspec(), Some(want.buildspec.as_str()), "{name}");
    assert_eq!(
        got.artifacts().map(|a| a.r#type().as_str()),
        Some("CODEPIPELINE")
    );
    let env = got.environment().expect("environment");
    assert_eq!(env.r#type().as_str(), "LINUX_CONTAINER");
    assert_eq!(env.image(), want.image);
    assert_eq!(env.compute_type().as_str(), want.compute_type);
    assert_eq!(env.privileged_mode(), Some(want.privileged), "{name}");
    let variables: BTreeMap<String, String> = env
        .environment_variables()
        .iter()
        .map(|v| {
            assert_eq!(v.r#type().map(|t| t.as_str()), Some("PLAINTEXT"));
            (v.name().to_string(), v.value().to_string())
        })
        .collect();
    assert_eq!(variables, want.environment, "{name}");
    assert_eq!(got.timeout_in_minutes(), Some(want.timeout_minutes));
    assert_eq!(
        got.queued_timeout_in_minutes(),
        Some(want.queued_timeout_minutes)
    );
    assert_eq!(got.service_role(), Some(want.service_role_arn.as_str()));
    assert_eq!(got.encryption_key(), Some(want.kms_key_arn.as_str()));
    let logs = got.logs_config().expect("logs config");
    let cloudwatch = logs.cloud_watch_logs().expect("cloudwatch logs");
    assert_eq!(cloudwatch.status().as_str(), "ENABLED");
    assert_eq!(cloudwatch.group_name(), Some(want.log_group.as_str()));
    assert_eq!(
        logs.s3_logs().map(|s| s.status().as_str()),
        Some("DISABLED"),
        "no S3 logs"
    );
    let tags: BTreeMap<&str, &str> = got
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    for (k, v) in &want.tags.tags {
        assert_eq!(tags.get(k.as_str()), Some(&v.as_str()), "{name}: tag {k}");
    }
}

#[tokio::test]
async fn build_and_scan_projects_match_the_rendering_and_update_minimally() {
    let (ns, operator, api) = start("e2e-projects").await;
    let dp = example("minimal.yaml", &ns, "builder");
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "builder", 1).await;
    let codebuild = aws_sdk_codebuild::Client::new(&aws_config().await);
    let wanted = desired_projects(&ctx, &ready);
    for want in &wanted {
        let got = read_project(&codebuild, &want.name)
            .await
            .unwrap_or_else(|| panic!("project {} exists", want.name));
        assert_project_matches(&got, want);
    }
    let report = wanted[1].report_group.clone().expect("scan report group");
    let groups = codebuild
        .batch_get_report_groups()
        .report_group_arns(&report.arn)
        .send()
        .await
        .expect("report groups");
    let group = groups.report_groups().first().expect("report group exists");
    assert_eq!(group.r#type().map(|t| t.as_str()), Some("TEST"));
    let export = group
        .export_config()
        .and_then(|c| c.s3_destination())
        .expect("exported to S3");
    assert_eq!(export.bucket(), Some(report.export_bucket.as_str()));
    assert_eq!(export.encryption_key(), Some(report.kms_key_arn.as_str()));

    // Nothing to do: reads only.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "builder").await;
    assert_eq!(
        codebuild_calls(&operator, "write", since).await,
        BTreeMap::new()
    );
    assert_eq!(
        codebuild_calls(&operator, "read", since).await,
        counts(&[
            // Build and scan in one read.
            ("CodeBuild:BatchGetProjects", 1.0),
            ("CodeBuild:BatchGetReportGroups", 1.0),
        ])
    );

    // One field: one UpdateProject, and no other write anywhere.
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "builder",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"build": {"timeoutMinutes": 45}}})),
    )
    .await
    .expect("patch timeout");
    wait_ready(&api, "builder", 2).await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        counts(&[("CodeBuild:UpdateProject", 1.0)])
    );
    let build = read_project(&codebuild, &wanted[0].name)
        .await
        .expect("build project");
    assert_eq!(build.timeout_in_minutes(), Some(45));

    // Edited by hand (not privileged: docker cannot run): restored with one UpdateProject.
    reconcile_and_wait(&api, "builder").await;
    let mut environment = build.environment().cloned().expect("environment");
    environment.privileged_mode = Some(false);
    codebuild
        .update_project()
        .name(&wanted[0].name)
        .environment(environment)
        .send()
        .await
        .expect("edit by hand");
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "builder").await;
    assert_eq!(
        codebuild_calls(&operator, "write", since).await,
        counts(&[("CodeBuild:UpdateProject", 1.0)])
    );
    let restored = read_project(&codebuild, &wanted[0].name)
        .await
        .expect("build project");
    assert_eq!(
        restored.environment().and_then(|e| e.privileged_mode()),
        Some(true)
    );

    // Deletion removes both projects and the report group.
    api.delete("builder", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "builder").await;
    let names: Vec<String> = wanted.iter().map(|p| p.name.clone()).collect();
    let after = codebuild
        .batch_get_projects()
        .set_names(Some(names.clone()))
        .send()
        .await
        .expect("batch get");
    assert!(after.projects().is_empty(), "{:?}", after.projects());
    assert_eq!(after.projects_not_found().len(), 2);
    let groups = codebuild
        .batch_get_report_groups()
        .report_group_arns(&report.arn)
        .send()
        .await
        .expect("report groups");
    assert!(groups.report_groups().is_empty());
    operator.assert_calls_match_record().await;
}
