//! The CodeBuild projects of the pipeline's Build and Test stages (one instance each), and the
//! scan's JUnit report group.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use aws_sdk_codebuild::types::{
    ArtifactsType, CloudWatchLogsConfig, ComputeType, EnvironmentType, EnvironmentVariable,
    EnvironmentVariableType, ImagePullCredentialsType, LogsConfig, LogsConfigStatusType,
    ProjectArtifacts, ProjectEnvironment, ProjectSource, ReportExportConfig,
    ReportExportConfigType, ReportGroup as AwsReportGroup, ReportPackagingType, ReportType,
    S3LogsConfig, S3ReportExportConfig, SourceType, Tag,
};

use self::desired::{Inputs, Project, Stage, project};
use self::diff::{Change, ProjectView, ReportGroupView, View};
use super::kit::{TagPlan, check_owner, input, invalid};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession};
use crate::desired::PipelineContext;
use crate::engine::{Failure, Key, Removal, Values};

const PROJECT_KIND: &str = "AWS::CodeBuild::Project";
const REPORT_GROUP_KIND: &str = "AWS::CodeBuild::ReportGroup";
const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

pub struct BuildProject {
    ctx: PipelineContext,
    stage: Stage,
}

impl BuildProject {
    pub fn build(ctx: &PipelineContext) -> Self {
        Self {
            ctx: ctx.clone(),
            stage: Stage::Build,
        }
    }

    pub fn scan(ctx: &PipelineContext) -> Self {
        Self {
            ctx: ctx.clone(),
            stage: Stage::Scan,
        }
    }

    fn name(&self) -> String {
        self.ctx.names().project(self.stage.purpose())
    }

    fn output(&self) -> Key {
        match self.stage {
            Stage::Build => keys::BUILD_PROJECT,
            Stage::Scan => keys::SCAN_PROJECT,
        }
    }

    fn report_group_arn(&self) -> String {
        self.ctx
            .arns()
            .report_group(&self.ctx.names().report_group())
    }
}

/// A request the SDK's builder refused.
/// The request members of a project, shared by CreateProject and UpdateProject.
struct Settings {
    source: ProjectSource,
    artifacts: ProjectArtifacts,
    environment: ProjectEnvironment,
    logs: LogsConfig,
}

fn settings(d: &Project) -> Result<Settings, Failure> {
    let variables = d
        .environment
        .iter()
        .map(|(name, value)| {
            EnvironmentVariable::builder()
                .name(name)
                .value(value)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .map_err(invalid("environment variable"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Settings {
        source: ProjectSource::builder()
            .r#type(SourceType::Codepipeline)
            .buildspec(&d.buildspec)
            .build()
            .map_err(invalid("source"))?,
        artifacts: ProjectArtifacts::builder()
            .r#type(ArtifactsType::Codepipeline)
            .build()
            .map_err(invalid("artifacts"))?,
        environment: ProjectEnvironment::builder()
            .r#type(EnvironmentType::LinuxContainer)
            .image(&d.image)
            .compute_type(ComputeType::from(d.compute_type.as_str()))
            .privileged_mode(d.privileged)
            .image_pull_credentials_type(ImagePullCredentialsType::Codebuild)
            .set_environment_variables(Some(variables))
            .build()
            .map_err(invalid("environment"))?,
        logs: LogsConfig::builder()
            .cloud_watch_logs(
                CloudWatchLogsConfig::builder()
                    .status(LogsConfigStatusType::Enabled)
                    .group_name(&d.log_group)
                    .build()
                    .map_err(invalid("logs"))?,
            )
            .s3_logs(
                S3LogsConfig::builder()
                    .status(LogsConfigStatusType::Disabled)
                    .build()
                    .map_err(invalid("logs"))?,
            )
            .build(),
    })
}

fn export_config(group: &desired::ReportGroup) -> ReportExportConfig {
    ReportExportConfig::builder()
        .export_config_type(ReportExportConfigType::S3)
        .s3_destination(
            S3ReportExportConfig::builder()
                .bucket(&group.export_bucket)
                .path(&group.export_prefix)
                .packaging(ReportPackagingType::None)
                .encryption_key(&group.kms_key_arn)
                .encryption_disabled(false)
                .build(),
        )
        .build()
}

fn view_of_project(p: &aws_sdk_codebuild::types::Project) -> ProjectView {
    let environment = p.environment();
    let logs = p.logs_config();
    let cloudwatch = logs.and_then(|l| l.cloud_watch_logs());
    ProjectView {
        description: p.description().unwrap_or_default().to_string(),
        source_type: p
            .source()
            .map(|s| s.r#type().as_str().to_string())
            .unwrap_or_default(),
        buildspec: p
            .source()
            .and_then(|s| s.buildspec())
            .unwrap_or_default()
            .to_string(),
        artifacts_type: p
            .artifacts()
            .map(|a| a.r#type().as_str().to_string())
            .unwrap_or_default(),
        image: environment
            .map(|e| e.image().to_string())
            .unwrap_or_default(),
        compute_type: environment
            .map(|e| e.compute_type().as_str().to_string())
            .unwrap_or_default(),
        privileged: environment
            .and_then(|e| e.privileged_mode())
            .unwrap_or(false),
        environment: environment
            .map(|e| {
                e.environment_variables()
                    .iter()
                    .map(|v| {
                        let kind = v.r#type().map_or("PLAINTEXT", |t| t.as_str()).to_string();
                        (v.name().to_string(), (v.value().to_string(), kind))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        timeout_minutes: p.timeout_in_minutes().unwrap_or_default(),
        queued_timeout_minutes: p.queued_timeout_in_minutes().unwrap_or_default(),
        service_role_arn: p.service_role().unwrap_or_default().to_string(),
        kms_key_arn: p.encryption_key().unwrap_or_default().to_string(),
        log_group: cloudwatch
            .filter(|c| c.status() == &LogsConfigStatusType::Enabled)
            .and_then(|c| c.group_name())
            .map(str::to_string),
        s3_logs_enabled: logs
            .and_then(|l| l.s3_logs())
            .is_some_and(|s| s.status() == &LogsConfigStatusType::Enabled),
        tags: from_sdk(p.tags()),
    }
}

fn view_of_report_group(g: &AwsReportGroup) -> ReportGroupView {
    let s3 = g.export_config().and_then(|c| c.s3_destination());
    ReportGroupView {
        export_bucket: s3.and_then(|d| d.bucket()).map(str::to_string),
        export_prefix: s3.and_then(|d| d.path()).map(str::to_string),
        kms_key_arn: s3.and_then(|d| d.encryption_key()).map(str::to_string),
        tags: from_sdk(g.tags()),
    }
}

/// CodeBuild replaces the tag set when tags are given, so they are given only when ours
/// drifted, and then with the tags others set (`actual`) kept.
fn replaced_tags(
    plan: &TagPlan,
    actual: Option<&BTreeMap<String, String>>,
) -> Result<Option<Vec<Tag>>, Failure> {
    if plan.is_empty() {
        return Ok(None);
    }
    to_sdk(&plan.whole_set(&actual.cloned().unwrap_or_default())).map(Some)
}

/// CreateProject and UpdateProject take the same members (`d`'s, with its `settings`), on
/// builders of different types.
macro_rules! project_request {
    ($call:expr, $d:expr, $settings:expr) => {{
        let (d, s): (&Project, Settings) = ($d, $settings);
        $call
            .name(&d.name)
            .description(&d.description)
            .source(s.source)
            .artifacts(s.artifacts)
            .environment(s.environment)
            .service_role(&d.service_role_arn)
            .timeout_in_minutes(d.timeout_minutes)
            .queued_timeout_in_minutes(d.queued_timeout_minutes)
            .encryption_key(&d.kms_key_arn)
            .logs_config(s.logs)
    }};
}

impl Group for BuildProject {
    type Desired = Project;
    type Observed = View;

    fn names(&self) -> Names {
        match self.stage {
            Stage::Build => Names::new("BuildProjectReady", "CodeBuild image build project"),
            Stage::Scan => Names::new("ScanProjectReady", "CodeBuild image scan project"),
        }
    }

    fn needs(&self) -> Vec<Key> {
        match self.stage {
            Stage::Build => vec![
                keys::KMS_KEY_ARN,
                keys::BUILD_ROLE_ARN,
                keys::BUILD_LOG_GROUP,
                keys::REPOSITORY_URI,
            ],
            // The report group exports to the artifact bucket.
            Stage::Scan => vec![
                keys::KMS_KEY_ARN,
                keys::SCAN_ROLE_ARN,
                keys::SCAN_LOG_GROUP,
                keys::REPOSITORY_URI,
                keys::ARTIFACT_BUCKET,
            ],
        }
    }

    fn provides(&self) -> Vec<Key> {
        vec![self.output()]
    }

    fn predicted(&self, _at: &Placement) -> Values {
        Values::from([(self.output(), self.name())])
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Project, Failure> {
        let (role, logs) = match self.stage {
            Stage::Build => (keys::BUILD_ROLE_ARN, keys::BUILD_LOG_GROUP),
            Stage::Scan => (keys::SCAN_ROLE_ARN, keys::SCAN_LOG_GROUP),
        };
        let bucket = match self.stage {
            Stage::Build => None,
            Stage::Scan => Some(input(inputs, keys::ARTIFACT_BUCKET)?),
        };
        Ok(project(
            &self.ctx,
            self.stage,
            &Inputs {
                kms_key_arn: input(inputs, keys::KMS_KEY_ARN)?,
                role_arn: input(inputs, role)?,
                log_group: input(inputs, logs)?,
                repository_uri: input(inputs, keys::REPOSITORY_URI)?,
                artifact_bucket: bucket,
            },
        ))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<View>, Failure> {
        let codebuild = aws.codebuild();
        let name = self.name();
        // One BatchGetProjects per reconcile for the build and scan projects.
        let both: Vec<String> = [Stage::Build, Stage::Scan]
            .map(|stage| self.ctx.names().project(stage.purpose()))
            .into();
        let found = aws
            .once_per_reconcile(
                &format!("codebuild:BatchGetProjects {}", both.join(" ")),
                || async {
                    codebuild
                        .batch_get_projects()
                        .set_names(Some(both.clone()))
                        .send()
                        .await
                        .aws("codebuild:BatchGetProjects")
                },
            )
            .await?;
        let project = found.projects().iter().find(|p| p.name() == Some(&name));
        if let Some(p) = project {
            check_owner(
                &self.ctx,
                &format!("CodeBuild project {name}"),
                &from_sdk(p.tags()),
            )?;
        }
        let report_group = if self.stage == Stage::Scan {
            let arn = self.report_group_arn();
            let groups = codebuild
                .batch_get_report_groups()
                .report_group_arns(&arn)
                .send()
                .await
                .aws("codebuild:BatchGetReportGroups")?;
            groups
                .report_groups()
                .iter()
                .find(|g| g.arn() == Some(&arn))
                .map(view_of_report_group)
        } else {
            None
        };
        let view = View {
            project: project.map(view_of_project),
            report_group,
        };
        Ok((view != View::default()).then_some(view))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let codebuild = aws.codebuild();
        for change in changes {
            match (change, &d.report_group) {
                (Change::CreateReportGroup, Some(group)) => {
                    codebuild
                        .create_report_group()
                        .name(&group.name)
                        .r#type(ReportType::Test)
                        .export_config(export_config(group))
                        .set_tags(Some(to_sdk(&group.tags.tags)?))
                        .send()
                        .await
                        .aws("codebuild:CreateReportGroup")?;
                }
                (Change::UpdateReportGroup(plan), Some(group)) => {
                    let actual = o.report_group.as_ref().map(|g| &g.tags);
                    codebuild
                        .update_report_group()
                        .arn(&group.arn)
                        .export_config(export_config(group))
                        .set_tags(replaced_tags(&plan, actual)?)
                        .send()
                        .await
                        .aws("codebuild:UpdateReportGroup")?;
                }
                // The diff finds report group changes only for a project that has one.
                (Change::CreateReportGroup | Change::UpdateReportGroup(_), None) => {}
                (Change::CreateProject, _) => {
                    project_request!(codebuild.create_project(), d, settings(d)?)
                        .set_tags(Some(to_sdk(&d.tags.tags)?))
                        .send()
                        .await
                        .aws("codebuild:CreateProject")?;
                }
                // Every member the operator owns: one call, whatever drifted.
                (Change::UpdateProject { fields, tags }, _) => {
                    tracing::debug!(project = %d.name, ?fields, "project drifted");
                    let actual = o.project.as_ref().map(|p| &p.tags);
                    project_request!(codebuild.update_project(), d, settings(d)?)
                        .set_tags(replaced_tags(&tags, actual)?)
                        .send()
                        .await
                        .aws("codebuild:UpdateProject")?;
                }
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, o: View) -> Result<Removal, Failure> {
        let codebuild = aws.codebuild();
        if o.project.is_some() {
            // DeleteProject succeeds for a project that is already gone.
            codebuild
                .delete_project()
                .name(self.name())
                .send()
                .await
                .aws("codebuild:DeleteProject")?;
        }
        if o.report_group.is_some() {
            codebuild
                .delete_report_group()
                .arn(self.report_group_arn())
                .delete_reports(true)
                .send()
                .await
                .aws_tolerating("codebuild:DeleteReportGroup", NOT_FOUND)?;
        }
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, d: &Project, _o: &View) -> Produced {
        let mut produced =
            Produced::default()
                .value(self.output(), &d.name)
                .owns(PROJECT_KIND, &d.arn, at);
        if let Some(group) = &d.report_group {
            produced = produced.owns(REPORT_GROUP_KIND, &group.arn, at);
        }
        produced
    }
}
