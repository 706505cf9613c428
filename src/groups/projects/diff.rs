//! How an observed CodeBuild project (and the scan's report group) differs from the desired
//! one. Pure. Any project setting that differs is one UpdateProject with the whole desired
//! project, so a one-field change is one write.

use std::collections::BTreeMap;

use super::desired::{Project, ReportGroup};
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, tag_drift};
use crate::groups::{Changes, Diff};

/// A project as BatchGetProjects reports it, reduced to what the operator sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectView {
    pub description: String,
    pub source_type: String,
    pub buildspec: String,
    pub artifacts_type: String,
    pub image: String,
    pub compute_type: String,
    pub privileged: bool,
    /// Every variable with its type (the operator sets PLAINTEXT only).
    pub environment: BTreeMap<String, (String, String)>,
    pub timeout_minutes: i32,
    pub queued_timeout_minutes: i32,
    pub service_role_arn: String,
    pub kms_key_arn: String,
    /// CloudWatch Logs group when enabled.
    pub log_group: Option<String>,
    pub s3_logs_enabled: bool,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportGroupView {
    pub export_bucket: Option<String>,
    pub export_prefix: Option<String>,
    pub kms_key_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub project: Option<ProjectView>,
    pub report_group: Option<ReportGroupView>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The report group comes first: the project's buildspec names it.
    CreateReportGroup,
    UpdateReportGroup(TagPlan),
    CreateProject,
    /// The fields that differ (for the log), and the tag writes folded into the same call.
    UpdateProject {
        fields: Vec<&'static str>,
        tags: TagPlan,
    },
}

impl Diff<View> for Project {
    type Change = Change;

    fn diff(&self, o: &View) -> Changes<Change> {
        let d = self;
        let mut changes = Changes::new();
        if let Some(group) = &d.report_group {
            let name = format!("CodeBuild report group {}", group.name);
            match &o.report_group {
                None => changes.push(Change::CreateReportGroup, Drift::create(name)),
                Some(actual) => {
                    let tags = group.tags.plan(&actual.tags);
                    let mut drift = Vec::new();
                    if !report_group_in_sync(group, actual) {
                        drift.push(Drift::field(&name, "export"));
                    }
                    drift.extend(tag_drift(&name, &tags, &actual.tags));
                    if !drift.is_empty() {
                        changes.push_all(Change::UpdateReportGroup(tags), drift);
                    }
                }
            }
        }
        let project = format!("CodeBuild project {}", d.name);
        match &o.project {
            None => changes.push(Change::CreateProject, Drift::create(project)),
            Some(actual) => {
                let tags = d.tags.plan(&actual.tags);
                let (fields, mut drift): (Vec<_>, Vec<_>) =
                    project_drift(&project, d, actual).into_iter().unzip();
                drift.extend(tag_drift(&project, &tags, &actual.tags));
                if !drift.is_empty() {
                    changes.push_all(Change::UpdateProject { fields, tags }, drift);
                }
            }
        }
        changes
    }
}

fn report_group_in_sync(d: &ReportGroup, o: &ReportGroupView) -> bool {
    o.export_bucket.as_deref() == Some(d.export_bucket.as_str())
        && o.export_prefix.as_deref() == Some(d.export_prefix.as_str())
        && o.kms_key_arn.as_deref() == Some(d.kms_key_arn.as_str())
}

/// A field that differs, named only (the buildspec, the variables).
fn named(same: bool) -> Option<Option<(String, String)>> {
    (!same).then_some(None)
}

/// A field that differs, with what AWS has and what the spec declares.
fn valued<T: PartialEq + ToString>(have: T, want: T) -> Option<Option<(String, String)>> {
    (have != want).then(|| Some((have.to_string(), want.to_string())))
}

/// Each project field that differs, in words: with its values when it is one short value.
fn project_drift(project: &str, d: &Project, o: &ProjectView) -> Vec<(&'static str, Drift)> {
    let environment: BTreeMap<String, (String, String)> = d
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), (v.clone(), "PLAINTEXT".to_string())))
        .collect();
    [
        ("description", valued(&o.description, &d.description)),
        (
            "source",
            named(o.source_type == "CODEPIPELINE" && d.buildspec == o.buildspec),
        ),
        ("artifacts", named(o.artifacts_type == "CODEPIPELINE")),
        ("image", valued(&o.image, &d.image)),
        ("computeType", valued(&o.compute_type, &d.compute_type)),
        ("privilegedMode", valued(o.privileged, d.privileged)),
        ("environmentVariables", named(environment == o.environment)),
        (
            "timeoutInMinutes",
            valued(o.timeout_minutes, d.timeout_minutes),
        ),
        (
            "queuedTimeoutInMinutes",
            valued(o.queued_timeout_minutes, d.queued_timeout_minutes),
        ),
        (
            "serviceRole",
            valued(&o.service_role_arn, &d.service_role_arn),
        ),
        ("encryptionKey", valued(&o.kms_key_arn, &d.kms_key_arn)),
        (
            "logsConfig",
            named(o.log_group.as_deref() == Some(d.log_group.as_str()) && !o.s3_logs_enabled),
        ),
    ]
    .into_iter()
    .filter_map(|(field, differs)| {
        let drift = match differs? {
            Some((from, to)) => Drift::value(project, field, from, to),
            None => Drift::field(project, field),
        };
        Some((field, drift))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{FULL, context};
    use crate::groups::projects::desired::{Inputs, Stage, project};

    fn desired(stage: Stage) -> Project {
        project(
            &context(FULL),
            stage,
            &Inputs {
                kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k",
                role_arn: "arn:aws:iam::123456789012:role/r",
                log_group: "/delivery-operator/x/pipeline/scan",
                repository_uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/r",
                artifact_bucket: Some("bucket"),
            },
        )
    }

    fn in_sync(d: &Project) -> View {
        View {
            project: Some(ProjectView {
                description: d.description.clone(),
                source_type: "CODEPIPELINE".into(),
                buildspec: d.buildspec.clone(),
                artifacts_type: "CODEPIPELINE".into(),
                image: d.image.clone(),
                compute_type: d.compute_type.clone(),
                privileged: d.privileged,
                environment: d
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), (v.clone(), "PLAINTEXT".into())))
                    .collect(),
                timeout_minutes: d.timeout_minutes,
                queued_timeout_minutes: d.queued_timeout_minutes,
                service_role_arn: d.service_role_arn.clone(),
                kms_key_arn: d.kms_key_arn.clone(),
                log_group: Some(d.log_group.clone()),
                s3_logs_enabled: false,
                tags: d.tags.tags.clone(),
            }),
            report_group: d.report_group.as_ref().map(|g| ReportGroupView {
                export_bucket: Some(g.export_bucket.clone()),
                export_prefix: Some(g.export_prefix.clone()),
                kms_key_arn: Some(g.kms_key_arn.clone()),
                tags: g.tags.tags.clone(),
            }),
        }
    }

    #[test]
    fn in_sync_projects_need_nothing() {
        for stage in [Stage::Build, Stage::Scan] {
            let d = desired(stage);
            assert_eq!(d.diff(&in_sync(&d)), vec![], "{stage:?}");
        }
    }

    #[test]
    fn a_missing_scan_creates_its_report_group_first() {
        let d = desired(Stage::Scan);
        assert_eq!(
            d.diff(&View::default()),
            vec![Change::CreateReportGroup, Change::CreateProject]
        );
    }

    #[test]
    fn any_drifted_setting_is_one_update_naming_it() {
        let d = desired(Stage::Build);
        let mut o = in_sync(&d);
        if let Some(p) = o.project.as_mut() {
            p.timeout_minutes += 1;
            p.environment.remove("GOFLAGS");
            p.buildspec.push_str("# edited\n");
        }
        assert_eq!(
            d.diff(&o),
            vec![Change::UpdateProject {
                fields: vec!["source", "environmentVariables", "timeoutInMinutes"],
                tags: TagPlan::default(),
            }]
        );
    }

    #[test]
    fn a_secret_typed_variable_of_the_same_value_is_drift() {
        let d = desired(Stage::Build);
        let mut o = in_sync(&d);
        if let Some(p) = o.project.as_mut()
            && let Some(v) = p.environment.get_mut("GOFLAGS")
        {
            v.1 = "PARAMETER_STORE".into();
        }
        assert_eq!(d.diff(&o).len(), 1);
    }
}
