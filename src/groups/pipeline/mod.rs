//! The CodePipeline itself (pipeline account), and what an S3 source needs of its bucket.

pub mod desired;
pub mod diff;

use std::collections::BTreeMap;

use aws_sdk_codepipeline::types::{
    ActionCategory, ActionDeclaration, ActionOwner, ActionTypeId, ArtifactStore, ArtifactStoreType,
    EncryptionKey, EncryptionKeyType, ExecutionMode, GitBranchFilterCriteria, GitConfiguration,
    GitPushFilter, InputArtifact, OutputArtifact, PipelineDeclaration, PipelineTriggerDeclaration,
    PipelineTriggerProviderType, PipelineType, StageDeclaration,
};

use self::desired::{Action, Inputs, Pipeline, Stage, Structure, Trigger, pipeline};
use self::diff::{Change, PipelineView, SourceBucketView, View};
use super::kit::{check_owner, input, invalid, retag, tags_of};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Failure, Key, Removal, Values};

const KIND: &str = "AWS::CodePipeline::Pipeline";
const NOT_FOUND: &[&str] = &["PipelineNotFoundException"];

pub struct DeliveryPipelineGroup {
    ctx: PipelineContext,
}

impl DeliveryPipelineGroup {
    pub fn new(ctx: &PipelineContext) -> Self {
        Self { ctx: ctx.clone() }
    }

    fn name(&self) -> String {
        self.ctx.names().base()
    }
}

/// A request the SDK's builder refused.
fn action_declaration(a: &Action) -> Result<ActionDeclaration, Failure> {
    let type_id = ActionTypeId::builder()
        .category(ActionCategory::from(a.category.as_str()))
        .owner(ActionOwner::Aws)
        .provider(&a.provider)
        .version("1")
        .build()
        .map_err(invalid("action type"))?;
    let inputs = a
        .input_artifacts
        .iter()
        .map(|n| InputArtifact::builder().name(n).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid("input artifact"))?;
    let outputs = a
        .output_artifacts
        .iter()
        .map(|n| OutputArtifact::builder().name(n).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid("output artifact"))?;
    ActionDeclaration::builder()
        .name(&a.name)
        .action_type_id(type_id)
        .run_order(1)
        .set_configuration(Some(
            a.configuration
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
        .set_input_artifacts(Some(inputs))
        .set_output_artifacts(Some(outputs))
        .set_role_arn(a.role_arn.clone())
        .set_region(a.region.clone())
        .set_namespace(a.namespace.clone())
        .build()
        .map_err(invalid("action"))
}

fn declaration(name: &str, s: &Structure) -> Result<PipelineDeclaration, Failure> {
    let stages = s
        .stages
        .iter()
        .map(|stage| {
            let actions = stage
                .actions
                .iter()
                .map(action_declaration)
                .collect::<Result<Vec<_>, _>>()?;
            StageDeclaration::builder()
                .name(&stage.name)
                .set_actions(Some(actions))
                .build()
                .map_err(invalid("stage"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let triggers = s
        .triggers
        .iter()
        .map(|t| {
            let branches = GitBranchFilterCriteria::builder()
                .includes(&t.branch)
                .build();
            let git = GitConfiguration::builder()
                .source_action_name(&t.source_action)
                .push(GitPushFilter::builder().branches(branches).build())
                .build()
                .map_err(invalid("trigger"))?;
            PipelineTriggerDeclaration::builder()
                .provider_type(PipelineTriggerProviderType::CodeStarSourceConnection)
                .git_configuration(git)
                .build()
                .map_err(invalid("trigger"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = EncryptionKey::builder()
        .id(&s.kms_key_arn)
        .r#type(EncryptionKeyType::Kms)
        .build()
        .map_err(invalid("artifact key"))?;
    let store = ArtifactStore::builder()
        .r#type(ArtifactStoreType::S3)
        .location(&s.artifact_bucket)
        .encryption_key(key)
        .build()
        .map_err(invalid("artifact store"))?;
    PipelineDeclaration::builder()
        .name(name)
        .role_arn(&s.role_arn)
        .artifact_store(store)
        .pipeline_type(PipelineType::from(s.pipeline_type.as_str()))
        .execution_mode(ExecutionMode::from(s.execution_mode.as_str()))
        .set_stages(Some(stages))
        .set_triggers((!triggers.is_empty()).then_some(triggers))
        .build()
        .map_err(invalid("pipeline"))
}

/// Reads a declaration back into the desired shape; what the operator does not set (run
/// order 1 by default, versions, metadata) is left out.
fn structure_of(p: &PipelineDeclaration) -> Structure {
    let store = p.artifact_store();
    let stages = p
        .stages()
        .iter()
        .map(|s| Stage {
            name: s.name().to_string(),
            actions: s
                .actions()
                .iter()
                .map(|a| Action {
                    name: a.name().to_string(),
                    category: a
                        .action_type_id()
                        .map(|t| t.category().as_str().to_string())
                        .unwrap_or_default(),
                    provider: a
                        .action_type_id()
                        .map(|t| t.provider().to_string())
                        .unwrap_or_default(),
                    configuration: a
                        .configuration()
                        .map(|c| {
                            c.iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect::<BTreeMap<_, _>>()
                        })
                        .unwrap_or_default(),
                    input_artifacts: a
                        .input_artifacts()
                        .iter()
                        .map(|i| i.name().to_string())
                        .collect(),
                    output_artifacts: a
                        .output_artifacts()
                        .iter()
                        .map(|o| o.name().to_string())
                        .collect(),
                    role_arn: a.role_arn().map(str::to_string),
                    region: a.region().map(str::to_string),
                    namespace: a.namespace().map(str::to_string),
                })
                .collect(),
        })
        .collect();
    let triggers = p
        .triggers()
        .iter()
        .filter_map(|t| {
            let git = t.git_configuration()?;
            let branch = git
                .push()
                .first()
                .and_then(|push| push.branches())
                .and_then(|b| b.includes().first())?;
            Some(Trigger {
                source_action: git.source_action_name().to_string(),
                branch: branch.clone(),
            })
        })
        .collect();
    Structure {
        role_arn: p.role_arn().to_string(),
        artifact_bucket: store.map(|s| s.location().to_string()).unwrap_or_default(),
        kms_key_arn: store
            .and_then(|s| s.encryption_key())
            .map(|k| k.id().to_string())
            .unwrap_or_default(),
        pipeline_type: p
            .pipeline_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        execution_mode: p
            .execution_mode()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        stages,
        triggers,
    }
}

impl DeliveryPipelineGroup {
    /// The pipeline as CodePipeline has it, without its source bucket (None: no pipeline).
    async fn observe_pipeline(&self, aws: &AwsSession) -> Result<Option<View>, Failure> {
        let codepipeline = aws.codepipeline();
        let name = self.name();
        let Some(declaration) = codepipeline
            .get_pipeline()
            .name(&name)
            .send()
            .await
            .aws_tolerating("codepipeline:GetPipeline", NOT_FOUND)?
            .and_then(|got| got.pipeline)
        else {
            // `create` checks the source bucket before creating.
            return Ok(None);
        };
        let arn = self.ctx.arns().pipeline();
        let tags = tags_of(aws, &self.ctx, &arn, || async {
            Ok(Some(from_sdk(
                codepipeline
                    .list_tags_for_resource()
                    .resource_arn(&arn)
                    .send()
                    .await
                    .aws("codepipeline:ListTagsForResource")?
                    .tags(),
            )))
        })
        .await?
        .unwrap_or_default();
        check_owner(&self.ctx, &format!("pipeline {name}"), &tags)?;
        Ok(Some(View {
            pipeline: Some(PipelineView {
                structure: structure_of(&declaration),
                tags,
            }),
            source_bucket: None,
        }))
    }

    /// What the pipeline needs of an S3 source's bucket (None: not an S3 source).
    async fn source_bucket(&self, aws: &AwsSession) -> Result<Option<SourceBucketView>, Failure> {
        let Some(bucket) = self.ctx.spec.source.s3.as_ref().map(|s3| &s3.bucket) else {
            return Ok(None);
        };
        let s3 = aws.s3();
        let context =
            |f: Failure| f.context(&format!("source bucket {bucket} (spec.source.s3.bucket)"));
        let versioning = s3
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .aws("s3:GetBucketVersioning")
            .map_err(context)?;
        let notifications = s3
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .aws("s3:GetBucketNotificationConfiguration")
            .map_err(context)?;
        Ok(Some(SourceBucketView {
            versioned: versioning.status()
                == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled),
            sends_events: notifications.event_bridge_configuration().is_some(),
        }))
    }

    /// Adds EventBridge delivery to the bucket's notification configuration, keeping the
    /// topic, queue and function notifications it has (the call replaces the whole set).
    async fn send_source_events(&self, aws: &AwsSession, bucket: &str) -> Result<(), Failure> {
        let s3 = aws.s3();
        let current = s3
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .aws("s3:GetBucketNotificationConfiguration")?;
        let configuration = aws_sdk_s3::types::NotificationConfiguration::builder()
            .set_topic_configurations(Some(current.topic_configurations().to_vec()))
            .set_queue_configurations(Some(current.queue_configurations().to_vec()))
            .set_lambda_function_configurations(Some(
                current.lambda_function_configurations().to_vec(),
            ))
            .event_bridge_configuration(
                aws_sdk_s3::types::EventBridgeConfiguration::builder().build(),
            )
            .build();
        s3.put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(configuration)
            .send()
            .await
            .aws("s3:PutBucketNotificationConfiguration")?;
        Ok(())
    }

    async fn start_execution(&self, aws: &AwsSession) -> Result<(), Failure> {
        aws.codepipeline()
            .start_pipeline_execution()
            .name(self.name())
            .send()
            .await
            .aws("codepipeline:StartPipelineExecution")?;
        Ok(())
    }
}

impl Group for DeliveryPipelineGroup {
    type Desired = Pipeline;
    type Observed = View;

    fn names(&self) -> Names {
        Names::new("PipelineReady", "CodePipeline pipeline")
    }

    fn needs(&self) -> Vec<Key> {
        let mut needs = vec![
            keys::PIPELINE_ROLE_ARN,
            keys::ARTIFACT_BUCKET,
            keys::KMS_KEY_ARN,
            keys::BUILD_PROJECT,
            keys::SCAN_PROJECT,
            keys::APPROVAL_TOPIC_ARN,
        ];
        // CodePipeline checks that it may pass each action's role when the pipeline is saved.
        for env in self.ctx.cross_account_environments() {
            needs.push(keys::DEPLOY_ROLE_ARN.scoped(env.name()));
        }
        // A new pipeline runs at once: the services it deploys to must exist.
        for env in Env::ALL {
            needs.push(keys::SERVICE_NAME.scoped(env.name()));
        }
        needs
    }

    fn provides(&self) -> Vec<Key> {
        vec![keys::PIPELINE_NAME, keys::PIPELINE_ARN]
    }

    fn predicted(&self, _at: &Placement) -> Values {
        Values::from([
            (keys::PIPELINE_NAME, self.name()),
            (keys::PIPELINE_ARN, self.ctx.arns().pipeline()),
        ])
    }

    fn desired(&self, _at: &Placement, inputs: &Values) -> Result<Pipeline, Failure> {
        let mut deploy_roles = BTreeMap::new();
        for env in self.ctx.cross_account_environments() {
            let role = input(inputs, keys::DEPLOY_ROLE_ARN.scoped(env.name()))?;
            deploy_roles.insert(env, role.to_string());
        }
        Ok(pipeline(
            &self.ctx,
            &Inputs {
                role_arn: input(inputs, keys::PIPELINE_ROLE_ARN)?,
                artifact_bucket: input(inputs, keys::ARTIFACT_BUCKET)?,
                kms_key_arn: input(inputs, keys::KMS_KEY_ARN)?,
                build_project: input(inputs, keys::BUILD_PROJECT)?,
                scan_project: input(inputs, keys::SCAN_PROJECT)?,
                approval_topic_arn: input(inputs, keys::APPROVAL_TOPIC_ARN)?,
                deploy_roles,
            },
        ))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<View>, Failure> {
        let Some(mut view) = self.observe_pipeline(aws).await? else {
            return Ok(None);
        };
        view.source_bucket = self.source_bucket(aws).await?;
        Ok(Some(view))
    }

    /// Deleting the pipeline needs nothing of the source bucket (the user's: its notification
    /// configuration is left as it is), so a bucket deleted or unreadable meanwhile does not
    /// hold the deletion.
    async fn observe_for_deletion(&self, aws: &AwsSession) -> Result<Option<View>, Failure> {
        self.observe_pipeline(aws).await
    }

    /// The update from nothing, once the source bucket is known: an S3 source's bucket must be
    /// usable before the pipeline exists.
    async fn create(&self, aws: &AwsSession, d: &Pipeline) -> Result<Produced, Failure> {
        let view = View {
            pipeline: None,
            source_bucket: self.source_bucket(aws).await?,
        };
        self.update(aws, Update::of(d, &view)).await?;
        Ok(self.produced(&Placement::of(aws), d, &view))
    }

    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, _, changes) = update.parts();
        let codepipeline = aws.codepipeline();
        for change in changes {
            match change {
                Change::SourceNotVersioned => {
                    return Err(Failure::terminal(
                        "SourceBucketNotVersioned",
                        format!(
                            "source bucket {} (spec.source.s3.bucket) does not keep object versions; CodePipeline's S3 source needs versioning enabled on it",
                            d.source_bucket.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                Change::SourceSendsNoEvents => {
                    return Err(Failure::terminal(
                        "SourceBucketSendsNoEvents",
                        format!(
                            "source bucket {} (spec.source.s3.bucket) does not send events to EventBridge, and the DeliveryPolicy does not let the operator change its notification configuration (sources.manageBucketNotifications); its owner must turn on EventBridge notifications",
                            d.source_bucket.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                Change::SendSourceEvents => {
                    if let Some(bucket) = &d.source_bucket {
                        self.send_source_events(aws, bucket).await?;
                    }
                }
                Change::Create => {
                    codepipeline
                        .create_pipeline()
                        .pipeline(declaration(&d.name, &d.structure)?)
                        .set_tags(Some(to_sdk(&d.tags.tags)?))
                        .send()
                        .await
                        .aws("codepipeline:CreatePipeline")?;
                }
                Change::Update => {
                    codepipeline
                        .update_pipeline()
                        .pipeline(declaration(&d.name, &d.structure)?)
                        .send()
                        .await
                        .aws("codepipeline:UpdatePipeline")?;
                    if d.restart_on_update {
                        self.start_execution(aws).await?;
                    }
                }
                Change::Tags(plan) => {
                    let codepipeline = &codepipeline;
                    retag(codepipeline, &d.arn, plan).await?;
                }
            }
        }
        Ok(None)
    }

    async fn delete(&self, aws: &AwsSession, _o: View) -> Result<Removal, Failure> {
        // DeletePipeline succeeds for a pipeline that is already gone. The source bucket's
        // EventBridge delivery stays: it belongs to the user's bucket.
        aws.codepipeline()
            .delete_pipeline()
            .name(self.name())
            .send()
            .await
            .aws("codepipeline:DeletePipeline")?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, d: &Pipeline, _o: &View) -> Produced {
        Produced::default()
            .value(keys::PIPELINE_NAME, &d.name)
            .value(keys::PIPELINE_ARN, &d.arn)
            .owns(KIND, &d.arn, at)
    }
}
