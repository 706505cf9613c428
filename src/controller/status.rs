//! Building and writing `status`. Written only when it differs from what is stored.

use chrono::{SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{DeliveryPipeline, DeliveryPipelineStatus, EnvironmentOutputs, Outputs};
use crate::aws::AwsError;
use crate::engine::conditions::{self, FALSE, State, UNKNOWN};
use crate::engine::{ApplyReport, Gone, OutputKey, Produced, StepError};

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn current(dp: &DeliveryPipeline) -> DeliveryPipelineStatus {
    dp.status.clone().unwrap_or_default()
}

/// Outputs recorded by earlier reconciles, so later stages and deletion know them.
pub fn seed(dp: &DeliveryPipeline) -> Produced {
    let s = current(dp);
    let mut p = Produced {
        outputs: Default::default(),
        inventory: Vec::new(),
    };
    let known = [
        (OutputKey::AccountId, s.outputs.account_id),
        (OutputKey::Region, s.outputs.region),
        (OutputKey::KmsKeyArn, s.outputs.kms_key_arn),
        (OutputKey::ArtifactBucket, s.outputs.artifact_bucket),
    ];
    for (k, v) in known {
        if let Some(v) = v {
            p.outputs.insert(k, v);
        }
    }
    p
}

fn outputs(produced: &Produced, previous: &Outputs) -> Outputs {
    let get = |k: OutputKey| produced.outputs.get(&k).cloned();
    Outputs {
        account_id: get(OutputKey::AccountId),
        region: get(OutputKey::Region),
        kms_key_arn: get(OutputKey::KmsKeyArn),
        artifact_bucket: get(OutputKey::ArtifactBucket),
        // Filled in by the subresources that produce them.
        pipeline_name: previous.pipeline_name.clone(),
        pipeline_arn: previous.pipeline_arn.clone(),
        image_repository_uri: previous.image_repository_uri.clone(),
        notification_topic_arn: previous.notification_topic_arn.clone(),
        staging: previous
            .staging
            .clone()
            .filter(|e| *e != EnvironmentOutputs::default()),
        production: previous
            .production
            .clone()
            .filter(|e| *e != EnvironmentOutputs::default()),
    }
}

pub fn after_apply(dp: &DeliveryPipeline, report: &ApplyReport) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let states = conditions::from_apply(report);
    let mut inventory = report.produced.inventory.clone();
    // Keep what earlier reconciles recorded for subresources that failed this time.
    for item in &old.inventory {
        if !inventory.contains(item) {
            inventory.push(item.clone());
        }
    }
    inventory.sort();
    let completed = report.errors().next().is_none();
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &states, generation, &now()),
        outputs: outputs(&report.produced, &old.outputs),
        inventory,
        applied_tag_keys: crate::desired::tags::applied_user_tag_keys(
            &old.applied_tag_keys,
            &dp.spec.tags,
            completed,
        ),
    }
}

/// Nothing could be attempted (no region, credentials unusable): every subresource is
/// Unknown, and Ready/Synced say why.
pub fn failed_before_aws(dp: &DeliveryPipeline, err: &AwsError) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let mut states: Vec<State> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != crate::api::READY && c.type_ != crate::api::SYNCED)
        .map(|c| {
            State::new(
                &c.type_,
                UNKNOWN,
                "CredentialsUnavailable",
                "no AWS session could be established",
            )
        })
        .collect();
    states.push(State::new(
        crate::api::READY,
        FALSE,
        err.reason(),
        err.message(),
    ));
    states.push(State::new(
        crate::api::SYNCED,
        FALSE,
        err.reason(),
        err.message(),
    ));
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &states, generation, &now()),
        ..old
    }
}

pub fn deleting(
    dp: &DeliveryPipeline,
    steps: &[(&'static str, &'static str, Result<Gone, StepError>)],
    err: Option<&AwsError>,
) -> DeliveryPipelineStatus {
    let old = current(dp);
    let generation = dp.meta().generation;
    let mut states: Vec<State> = steps
        .iter()
        .map(|(condition, kind, r)| match r {
            Ok(Gone::Yes) => State::new(condition, FALSE, "Deleted", format!("{kind} deleted")),
            Ok(Gone::Pending) => State::new(
                condition,
                FALSE,
                "Deleting",
                format!("waiting for AWS to delete the {kind}"),
            ),
            Err(e) => State::new(condition, FALSE, e.reason(), e.message()),
        })
        .collect();
    let (reason, message) = match err {
        Some(e) => (e.reason().to_string(), e.message().to_string()),
        None => ("Deleting".to_string(), "deleting AWS resources".to_string()),
    };
    states.push(State::new(
        crate::api::READY,
        FALSE,
        "Deleting",
        "the pipeline is being deleted",
    ));
    states.push(State::new(
        crate::api::SYNCED,
        if err.is_some() { FALSE } else { UNKNOWN },
        &reason,
        message,
    ));
    DeliveryPipelineStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &states, generation, &now()),
        ..old
    }
}

/// Writes `next` through the status subresource unless it equals what is stored.
pub async fn write(
    api: &Api<DeliveryPipeline>,
    dp: &DeliveryPipeline,
    next: DeliveryPipelineStatus,
) -> Result<(), kube::Error> {
    if dp.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let patch = json!({"status": next});
    api.patch_status(
        &dp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
