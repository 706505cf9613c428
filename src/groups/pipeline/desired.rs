//! The desired CodePipeline (V2): Source -> Build -> Test -> DeployStaging -> Approval ->
//! DeployProduction, with the pipeline role, the artifact bucket and key, and a push trigger
//! for connection sources (S3 and CodeCommit sources are triggered by EventBridge rules).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::desired::{Env, PipelineContext};
use crate::groups::kit::DesiredTags;

pub const SOURCE_ARTIFACT: &str = "Source";
pub const BUILD_ARTIFACT: &str = "BuildOutput";
/// Variable namespace of the build action: the scan reads `#{BuildVariables.IMAGE_TAG}`.
pub const BUILD_NAMESPACE: &str = "BuildVariables";
pub const SOURCE_NAMESPACE: &str = "SourceVariables";
/// Minutes the ECS deploy action waits for a deployment to finish.
pub const DEPLOYMENT_TIMEOUT_MINUTES: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub name: String,
    pub category: String,
    pub provider: String,
    pub configuration: BTreeMap<String, String>,
    pub input_artifacts: Vec<String>,
    pub output_artifacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub name: String,
    pub actions: Vec<Action>,
}

/// A V2 push trigger on a connection source's branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub source_action: String,
    pub branch: String,
}

/// What CodePipeline stores as the pipeline's structure, compared as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Structure {
    pub role_arn: String,
    pub artifact_bucket: String,
    pub kms_key_arn: String,
    pub pipeline_type: String,
    pub execution_mode: String,
    pub stages: Vec<Stage>,
    pub triggers: Vec<Trigger>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub name: String,
    pub arn: String,
    pub structure: Structure,
    /// Start an execution after a structural update.
    pub restart_on_update: bool,
    /// An S3 source's bucket: it must be versioned and send events to EventBridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_bucket: Option<String>,
    /// Whether the operator may turn on the source bucket's EventBridge notifications (the
    /// administrators' policy says; without one, a single-team install may).
    pub manage_source_events: bool,
    pub tags: DesiredTags,
}

/// Upstream values the pipeline is made from.
pub struct Inputs<'a> {
    pub role_arn: &'a str,
    pub artifact_bucket: &'a str,
    pub kms_key_arn: &'a str,
    pub build_project: &'a str,
    pub scan_project: &'a str,
    pub approval_topic_arn: &'a str,
    /// Deploy roles of environments in other accounts.
    pub deploy_roles: BTreeMap<Env, String>,
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn action(name: &str, category: &str, provider: &str) -> Action {
    Action {
        name: name.into(),
        category: category.into(),
        provider: provider.into(),
        configuration: BTreeMap::new(),
        input_artifacts: Vec::new(),
        output_artifacts: Vec::new(),
        role_arn: None,
        region: None,
        namespace: None,
    }
}

fn stage(name: &str, action: Action) -> Stage {
    Stage {
        name: name.into(),
        actions: vec![action],
    }
}

pub fn pipeline(ctx: &PipelineContext, inputs: &Inputs) -> Pipeline {
    let (source, trigger) = source_action(ctx);
    let build = Action {
        configuration: config(&[("ProjectName", inputs.build_project)]),
        input_artifacts: vec![SOURCE_ARTIFACT.into()],
        output_artifacts: vec![BUILD_ARTIFACT.into()],
        namespace: Some(BUILD_NAMESPACE.into()),
        ..action("Build", "Build", "CodeBuild")
    };
    let image_tag = json!([{
        "name": "IMAGE_TAG",
        "value": format!("#{{{BUILD_NAMESPACE}.IMAGE_TAG}}"),
        "type": "PLAINTEXT"
    }])
    .to_string();
    let scan = Action {
        configuration: config(&[
            ("ProjectName", inputs.scan_project),
            ("EnvironmentVariables", &image_tag),
        ]),
        input_artifacts: vec![BUILD_ARTIFACT.into()],
        ..action("ImageScan", "Test", "CodeBuild")
    };
    let approval = ctx.spec.approval.clone();
    let approval_config = vec![
        ("NotificationArn", inputs.approval_topic_arn.to_string()),
        (
            "CustomData",
            approval
                .custom_data
                .unwrap_or_else(|| approval_context(ctx)),
        ),
        (
            "ExternalEntityLink",
            approval
                .external_entity_link
                .unwrap_or_else(|| staging_service_link(ctx)),
        ),
    ];
    let approve = Action {
        configuration: approval_config
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..action("Approve", "Approval", "Manual")
    };
    let stages = vec![
        stage("Source", source),
        stage("Build", build),
        stage("Test", scan),
        stage("DeployStaging", deploy(ctx, Env::Staging, inputs)),
        stage("Approval", approve),
        stage("DeployProduction", deploy(ctx, Env::Production, inputs)),
    ];
    Pipeline {
        name: ctx.names().base(),
        arn: ctx.arns().pipeline(),
        structure: Structure {
            role_arn: inputs.role_arn.into(),
            artifact_bucket: inputs.artifact_bucket.into(),
            kms_key_arn: inputs.kms_key_arn.into(),
            pipeline_type: "V2".into(),
            execution_mode: "SUPERSEDED".into(),
            stages,
            triggers: trigger.into_iter().collect(),
        },
        restart_on_update: ctx.spec.restart_execution_on_update,
        source_bucket: ctx.spec.source.s3.as_ref().map(|s| s.bucket.clone()),
        manage_source_events: ctx.tenancy.manage_bucket_notifications,
        tags: DesiredTags::of(ctx),
    }
}

/// The source action and, for a connection, its push trigger. Polling is off everywhere:
/// What the approver is asked, by default: which image, and where it runs in staging. The tag is
/// the build's variable, resolved by CodePipeline for each execution. At most 1000 characters.
fn approval_context(ctx: &PipelineContext) -> String {
    let names = ctx.names();
    let text = format!(
        "Release image {}:#{{{BUILD_NAMESPACE}.IMAGE_TAG}} of delivery pipeline {} to production. It runs in staging as ECS service {} (cluster {}, account {}, {}); approve once it behaves there.",
        names.image_repository(),
        ctx.display_name(),
        names.service(Env::Staging),
        names.cluster(Env::Staging),
        ctx.environment_account(Env::Staging),
        ctx.region,
    );
    text.chars().take(1000).collect()
}

/// The staging service's health page in the console, by default the approver's link.
fn staging_service_link(ctx: &PipelineContext) -> String {
    let names = ctx.names();
    let link = format!(
        "{}/ecs/v2/clusters/{}/services/{}/health?region={}",
        ctx.console(),
        names.cluster(Env::Staging),
        names.service(Env::Staging),
        ctx.region
    );
    link.chars().take(1000).collect()
}

/// S3 and CodeCommit changes arrive as EventBridge events.
fn source_action(ctx: &PipelineContext) -> (Action, Option<Trigger>) {
    let source = &ctx.spec.source;
    let base = |provider: &str, configuration| Action {
        configuration,
        output_artifacts: vec![SOURCE_ARTIFACT.into()],
        namespace: Some(SOURCE_NAMESPACE.into()),
        ..action("Source", "Source", provider)
    };
    if let Some(s3) = &source.s3 {
        let c = config(&[
            ("S3Bucket", &s3.bucket),
            ("S3ObjectKey", &s3.object_key),
            ("PollForSourceChanges", "false"),
        ]);
        (base("S3", c), None)
    } else if let Some(repo) = &source.code_commit {
        let c = config(&[
            ("RepositoryName", &repo.repository),
            ("BranchName", &repo.branch),
            ("PollForSourceChanges", "false"),
            ("OutputArtifactFormat", "CODE_ZIP"),
        ]);
        (base("CodeCommit", c), None)
    } else if let Some(connection) = &source.connection {
        let c = config(&[
            ("ConnectionArn", &connection.connection_arn),
            ("FullRepositoryId", &connection.repository),
            ("BranchName", &connection.branch),
            ("OutputArtifactFormat", "CODE_ZIP"),
            // The V2 trigger starts executions; the action's own change detection would start
            // a second one.
            ("DetectChanges", "false"),
        ]);
        let trigger = Trigger {
            source_action: "Source".into(),
            branch: connection.branch.clone(),
        };
        (base("CodeStarSourceConnection", c), Some(trigger))
    } else {
        // The CRD's CEL rule requires exactly one source; nothing to build from otherwise.
        (base("S3", BTreeMap::new()), None)
    }
}

fn deploy(ctx: &PipelineContext, env: Env, inputs: &Inputs) -> Action {
    let names = ctx.names();
    let timeout = DEPLOYMENT_TIMEOUT_MINUTES.to_string();
    Action {
        configuration: config(&[
            ("ClusterName", &names.cluster(env)),
            ("ServiceName", &names.service(env)),
            ("FileName", "imagedefinitions.json"),
            ("DeploymentTimeout", &timeout),
        ]),
        input_artifacts: vec![BUILD_ARTIFACT.into()],
        role_arn: inputs.deploy_roles.get(&env).cloned(),
        region: Some(ctx.region.clone()),
        ..action(&format!("Deploy{}", env.title()), "Deploy", "ECS")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::desired::testing::{FULL, MINIMAL, context};

    pub fn inputs(deploy_roles: BTreeMap<Env, String>) -> Inputs<'static> {
        Inputs {
            role_arn: "arn:aws:iam::123456789012:role/p",
            artifact_bucket: "bucket",
            kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k",
            build_project: "build",
            scan_project: "scan",
            approval_topic_arn: "arn:aws:sns:us-east-1:123456789012:approval",
            deploy_roles,
        }
    }

    #[test]
    fn stages_follow_the_delivery_order() {
        let p = pipeline(&context(MINIMAL), &inputs(BTreeMap::new()));
        let names: Vec<&str> = p.structure.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Source",
                "Build",
                "Test",
                "DeployStaging",
                "Approval",
                "DeployProduction"
            ]
        );
        assert_eq!(p.structure.pipeline_type, "V2");
        assert_eq!(p.structure.execution_mode, "SUPERSEDED");
        let source = &p.structure.stages[0].actions[0];
        assert_eq!(source.provider, "S3");
        assert_eq!(source.configuration["PollForSourceChanges"], "false");
        assert!(p.structure.triggers.is_empty());
        assert!(p.source_bucket.is_some());
    }

    #[test]
    fn the_default_approval_names_the_image_and_links_the_staging_service() {
        let ctx = context(MINIMAL);
        let p = pipeline(&ctx, &inputs(BTreeMap::new()));
        let approval = &p.structure.stages[4].actions[0].configuration;
        let names = ctx.names();
        let data = &approval["CustomData"];
        assert!(
            data.contains(&format!(
                "{}:#{{BuildVariables.IMAGE_TAG}}",
                names.image_repository()
            )),
            "{data}"
        );
        assert!(data.contains(&names.service(Env::Staging)), "{data}");
        assert!(data.len() <= 1000);
        assert_eq!(
            approval["ExternalEntityLink"],
            format!(
                "https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/{}/services/{}/health?region=us-east-1",
                names.cluster(Env::Staging),
                names.service(Env::Staging)
            )
        );
    }

    #[test]
    fn the_scan_gets_the_built_tag_and_deploys_read_the_image_definitions() {
        let p = pipeline(&context(MINIMAL), &inputs(BTreeMap::new()));
        let scan = &p.structure.stages[2].actions[0];
        let vars: serde_json::Value =
            serde_json::from_str(&scan.configuration["EnvironmentVariables"]).expect("JSON");
        assert_eq!(vars[0]["value"], "#{BuildVariables.IMAGE_TAG}");
        for index in [3, 5] {
            let deploy = &p.structure.stages[index].actions[0];
            assert_eq!(deploy.configuration["FileName"], "imagedefinitions.json");
            assert_eq!(deploy.input_artifacts, vec![BUILD_ARTIFACT.to_string()]);
            // Same account: the pipeline role deploys.
            assert_eq!(deploy.role_arn, None);
        }
    }

    #[test]
    fn cross_account_deploys_assume_the_environment_roles_and_connections_trigger_on_push() {
        let c = context(FULL);
        let roles = BTreeMap::from([
            (Env::Staging, "arn:aws:iam::222222222222:role/s".to_string()),
            (
                Env::Production,
                "arn:aws:iam::333333333333:role/p".to_string(),
            ),
        ]);
        let p = pipeline(&c, &inputs(roles));
        assert_eq!(
            p.structure.stages[3].actions[0].role_arn.as_deref(),
            Some("arn:aws:iam::222222222222:role/s")
        );
        assert_eq!(
            p.structure.stages[5].actions[0].role_arn.as_deref(),
            Some("arn:aws:iam::333333333333:role/p")
        );
        assert_eq!(
            p.structure.triggers,
            vec![Trigger {
                source_action: "Source".into(),
                branch: "main".into()
            }]
        );
        let approval = &p.structure.stages[4].actions[0];
        assert_eq!(
            approval.configuration["CustomData"],
            "Approve the production release of checkout"
        );
        assert!(approval.configuration.contains_key("ExternalEntityLink"));
    }
}
