//! Desired CodeBuild projects: the image build and the image-scan gate (the pipeline's Test
//! stage), each with an inline buildspec that embeds its stage script from `scripts/`, and the
//! scan's JUnit report group.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::api::TagMutability;
use crate::desired::PipelineContext;
use crate::desired::names::role::{BUILDER, SCANNER};
use crate::groups::kit::DesiredTags;

/// The stage scripts, embedded at build time; `tests/stages` runs the same files.
pub const BUILD_SCRIPT: &str = include_str!("scripts/build.sh");
pub const SCAN_SCRIPT: &str = include_str!("scripts/scan.py");

/// The image the scan runs in: it needs the AWS CLI and python3, whatever image the user
/// builds with.
pub const SCAN_IMAGE: &str = "aws/codebuild/standard:7.0";
/// How long a build may wait for capacity before CodeBuild gives up on it.
pub const QUEUED_TIMEOUT_MINUTES: i32 = 60;
/// Minutes the scan project gets beyond the scan wait: start-up, report upload.
pub const SCAN_OVERHEAD_MINUTES: i32 = 5;
/// CodeBuild's maximum project timeout.
const MAX_TIMEOUT_MINUTES: i32 = 2160;
/// The scan script's JUnit report, published to the report group.
pub const REPORT_FILE: &str = "scan-report.xml";
/// Findings listed one by one in the report (the counts cover all of them).
pub const MAX_REPORTED_FINDINGS: u32 = 100;
/// Seconds between scan status polls.
pub const POLL_INTERVAL_SECONDS: u32 = 5;
pub use crate::desired::names::REPORT_EXPORT_PREFIX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Build,
    Scan,
}

impl Stage {
    pub fn purpose(self) -> &'static str {
        match self {
            Stage::Build => BUILDER,
            Stage::Scan => SCANNER,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub name: String,
    pub arn: String,
    pub description: String,
    pub buildspec: String,
    pub image: String,
    pub compute_type: String,
    /// Docker-in-Docker needs a privileged build container.
    pub privileged: bool,
    pub timeout_minutes: i32,
    pub queued_timeout_minutes: i32,
    pub service_role_arn: String,
    pub kms_key_arn: String,
    pub log_group: String,
    pub environment: BTreeMap<String, String>,
    pub tags: DesiredTags,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_group: Option<ReportGroup>,
}

/// The scan's JUnit report group, exported to the artifact bucket encrypted with the key.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportGroup {
    pub name: String,
    pub arn: String,
    pub export_bucket: String,
    pub export_prefix: String,
    pub kms_key_arn: String,
    pub tags: DesiredTags,
}

/// Upstream values a project is made from.
pub struct Inputs<'a> {
    pub kms_key_arn: &'a str,
    pub role_arn: &'a str,
    pub log_group: &'a str,
    pub repository_uri: &'a str,
    /// Scan only: where the report group exports reports.
    pub artifact_bucket: Option<&'a str>,
}

pub fn project(ctx: &PipelineContext, stage: Stage, inputs: &Inputs) -> Project {
    let arns = ctx.arns();
    let names = ctx.names();
    let name = names.project(stage.purpose());
    let build = &ctx.spec.build;
    let owner = ctx.display_name();
    let common = |description: String, buildspec: String| Project {
        arn: arns.project(stage.purpose()),
        name: name.clone(),
        description,
        buildspec,
        image: build.image.clone(),
        compute_type: compute_type(ctx),
        privileged: false,
        timeout_minutes: build.timeout_minutes,
        queued_timeout_minutes: QUEUED_TIMEOUT_MINUTES,
        service_role_arn: inputs.role_arn.to_string(),
        kms_key_arn: inputs.kms_key_arn.to_string(),
        log_group: inputs.log_group.to_string(),
        environment: BTreeMap::new(),
        tags: DesiredTags::of(ctx),
        report_group: None,
    };
    match stage {
        Stage::Build => {
            let mut environment: BTreeMap<String, String> = build
                .environment
                .iter()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect();
            environment.extend(
                [
                    ("AWS_ACCOUNT_ID", ctx.account_id.clone()),
                    ("AWS_REGION", ctx.region.clone()),
                    ("REPOSITORY_URI", inputs.repository_uri.to_string()),
                    ("CONTAINER_NAME", ctx.spec.container.name.clone()),
                    ("DOCKERFILE", build.dockerfile.clone()),
                    ("BUILD_CONTEXT", build.context.clone()),
                    ("TAG_LATEST", tag_latest(ctx).to_string()),
                ]
                .map(|(k, v)| (k.to_string(), v)),
            );
            Project {
                privileged: true,
                environment,
                ..common(
                    format!("Builds and pushes the image of delivery pipeline {owner}"),
                    build_buildspec(),
                )
            }
        }
        Stage::Scan => {
            let report_name = names.report_group();
            let report_arn = arns.report_group(&report_name);
            let scan = &ctx.spec.image_scan;
            let environment = [
                ("AWS_REGION", ctx.region.clone()),
                ("REPOSITORY_NAME", names.image_repository()),
                ("FAIL_ON", json!(scan.fail_on).to_string()),
                (
                    "SCAN_TIMEOUT_SECONDS",
                    (scan.timeout_minutes * 60).to_string(),
                ),
                ("POLL_INTERVAL_SECONDS", POLL_INTERVAL_SECONDS.to_string()),
                (
                    "START_SCAN",
                    (!ctx.spec.image_repository.scan_on_push).to_string(),
                ),
                ("REPORT_FILE", REPORT_FILE.to_string()),
                ("MAX_REPORTED_FINDINGS", MAX_REPORTED_FINDINGS.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect();
            Project {
                image: SCAN_IMAGE.to_string(),
                compute_type: "BUILD_GENERAL1_SMALL".to_string(),
                timeout_minutes: (scan.timeout_minutes + SCAN_OVERHEAD_MINUTES)
                    .min(MAX_TIMEOUT_MINUTES),
                environment,
                report_group: Some(ReportGroup {
                    name: report_name,
                    arn: report_arn.clone(),
                    export_bucket: inputs.artifact_bucket.unwrap_or_default().to_string(),
                    export_prefix: REPORT_EXPORT_PREFIX.to_string(),
                    kms_key_arn: inputs.kms_key_arn.to_string(),
                    tags: DesiredTags::of(ctx),
                }),
                ..common(
                    format!(
                        "Gates the image of delivery pipeline {owner} on its ECR scan findings"
                    ),
                    scan_buildspec(&report_arn),
                )
            }
        }
    }
}

fn compute_type(ctx: &PipelineContext) -> String {
    serde_json::to_value(ctx.spec.build.compute_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "BUILD_GENERAL1_SMALL".to_string())
}

/// A second `latest` push to a repository whose tags are all immutable would fail.
fn tag_latest(ctx: &PipelineContext) -> bool {
    ctx.spec.image_repository.tag_mutability != TagMutability::Immutable
}

/// The heredoc delimiter a stage script is written out with.
pub const SCRIPT_DELIMITER: &str = "DELIVERY_OPERATOR_SCRIPT";

/// A buildspec command that writes `script` to `path` (quoted heredoc: no expansion).
fn write_script(path: &str, script: &str) -> String {
    format!("cat > {path} <<'{SCRIPT_DELIMITER}'\n{script}{SCRIPT_DELIMITER}\n")
}

fn build_buildspec() -> String {
    let path = "/tmp/delivery-operator-build.sh";
    let spec = json!({
        "version": "0.2",
        "env": {"shell": "bash", "exported-variables": ["IMAGE_TAG"]},
        "phases": {"build": {"commands": [
            write_script(path, BUILD_SCRIPT),
            format!("bash {path}"),
            // Assigned, then exported: `export X="$(...)"` would hide a failing `cat`.
            "IMAGE_TAG=\"$(cat image-tag)\" && export IMAGE_TAG",
        ]}},
        "artifacts": {"files": ["imagedefinitions.json", "image-tag"]}
    });
    to_yaml(&spec)
}

fn scan_buildspec(report_group_arn: &str) -> String {
    let path = "/tmp/delivery-operator-scan.py";
    let spec = json!({
        "version": "0.2",
        "env": {"shell": "bash"},
        "phases": {"build": {"commands": [
            write_script(path, SCAN_SCRIPT),
            format!("python3 {path}"),
        ]}},
        "reports": {report_group_arn: {"files": [REPORT_FILE], "file-format": "JUNITXML"}}
    });
    to_yaml(&spec)
}

fn to_yaml(spec: &serde_json::Value) -> String {
    // Serializing a JSON value cannot fail; an empty buildspec would fail CreateProject loudly.
    serde_yaml::to_string(spec).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, MINIMAL, context};

    fn inputs() -> Inputs<'static> {
        Inputs {
            kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k",
            role_arn: "arn:aws:iam::123456789012:role/r",
            log_group: "/delivery-operator/x/pipeline/build",
            repository_uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/delivery-operator/x",
            artifact_bucket: Some("bucket"),
        }
    }

    #[test]
    fn the_build_is_privileged_and_gets_the_scripts_inputs() {
        let c = context(FULL);
        let p = project(&c, Stage::Build, &inputs());
        assert!(p.privileged);
        assert_eq!(p.timeout_minutes, c.spec.build.timeout_minutes);
        assert_eq!(p.environment["REPOSITORY_URI"], inputs().repository_uri);
        assert_eq!(p.environment["CONTAINER_NAME"], "app");
        assert_eq!(p.environment["GOFLAGS"], "-mod=vendor");
        // ImmutableExceptLatest: `latest` may be pushed again.
        assert_eq!(p.environment["TAG_LATEST"], "true");
        assert!(
            p.buildspec
                .contains(BUILD_SCRIPT.lines().last().unwrap_or_default())
        );
        assert!(p.report_group.is_none());
    }

    #[test]
    fn immutable_tags_get_no_latest() {
        let mut c = context(MINIMAL);
        c.spec.image_repository.tag_mutability = TagMutability::Immutable;
        let p = project(&c, Stage::Build, &inputs());
        assert_eq!(p.environment["TAG_LATEST"], "false");
    }

    #[test]
    fn the_scan_waits_within_its_timeout_and_reports_to_its_group() {
        let c = context(FULL);
        let p = project(&c, Stage::Scan, &inputs());
        assert!(!p.privileged);
        assert_eq!(p.image, SCAN_IMAGE);
        assert_eq!(
            p.environment["SCAN_TIMEOUT_SECONDS"],
            (c.spec.image_scan.timeout_minutes * 60).to_string()
        );
        assert_eq!(
            p.timeout_minutes,
            c.spec.image_scan.timeout_minutes + SCAN_OVERHEAD_MINUTES
        );
        let fail_on: serde_json::Value =
            serde_json::from_str(&p.environment["FAIL_ON"]).expect("FAIL_ON is JSON");
        assert_eq!(fail_on, json!({"CRITICAL": 0, "HIGH": 5}));
        let group = p.report_group.expect("report group");
        assert!(p.buildspec.contains(&group.arn));
        // The scan role may write reports to groups named after its project.
        assert!(group.name.starts_with(&format!("{}-", p.name)));
    }

    #[test]
    fn buildspecs_are_yaml_with_the_script_embedded_verbatim() {
        let c = context(MINIMAL);
        for (stage, script) in [(Stage::Build, BUILD_SCRIPT), (Stage::Scan, SCAN_SCRIPT)] {
            let p = project(&c, stage, &inputs());
            let parsed: serde_yaml::Value =
                serde_yaml::from_str(&p.buildspec).expect("buildspec parses");
            let first = parsed["phases"]["build"]["commands"][0]
                .as_str()
                .expect("first command");
            assert!(first.contains(script), "{stage:?}");
            assert_eq!(parsed["version"].as_str(), Some("0.2"));
        }
    }
}
