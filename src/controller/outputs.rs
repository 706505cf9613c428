//! `spec.outputs.configMapName`: the outputs as a ConfigMap in the pipeline's namespace, owned
//! by the pipeline (Kubernetes deletes it with the pipeline), for workloads that read
//! configuration rather than custom resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::{DeliveryPipeline, Outputs};

const FIELD_MANAGER: &str = "delivery-operator";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Every output as a flat key: top-level outputs by name, environment outputs prefixed with
/// the environment (`stagingDeployRoleArn`).
pub fn data(outputs: &Outputs) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    let Ok(Value::Object(fields)) = serde_json::to_value(outputs) else {
        return data;
    };
    for (key, value) in fields {
        match value {
            Value::String(s) => {
                data.insert(key, s);
            }
            Value::Object(nested) => {
                for (inner, value) in nested {
                    if let Value::String(s) = value {
                        data.insert(format!("{key}{}", capitalized(&inner)), s);
                    }
                }
            }
            _ => {}
        }
    }
    data
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// A ConfigMap of that name exists and is not this pipeline's: it is left alone.
    #[error(
        "ConfigMap {0} (spec.outputs.configMapName) exists and is not owned by this pipeline; the operator writes only ConfigMaps it created: choose another name, or delete that ConfigMap"
    )]
    NotOwned(String),
}

/// Whether `config_map` is this pipeline's: created by the operator for it (controller
/// owner reference to the pipeline's UID).
fn owned_by(config_map: &ConfigMap, dp: &DeliveryPipeline) -> bool {
    let uid = dp.uid();
    config_map.owner_references().iter().any(|o| {
        o.controller == Some(true) && Some(&o.uid) == uid.as_ref() && o.kind == "DeliveryPipeline"
    })
}

/// Writes the outputs to the ConfigMap `name`: created when absent, updated (server-side apply,
/// only its own fields) when it is this pipeline's, refused when it is anyone else's.
pub async fn publish(
    client: &kube::Client,
    dp: &DeliveryPipeline,
    name: &str,
    outputs: &Outputs,
) -> Result<(), PublishError> {
    let namespace = dp.namespace().unwrap_or_default();
    let owner = dp.controller_owner_ref(&());
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: FIELD_MANAGER},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "data": data(outputs),
    });
    let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    match api.get_opt(name).await? {
        None => {
            // `create` fails if one appeared meanwhile, so a foreign ConfigMap is never taken.
            let created: ConfigMap =
                serde_json::from_value(config_map.clone()).map_err(kube::Error::SerdeError)?;
            api.create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PostParams::default()
                },
                &created,
            )
            .await?;
        }
        Some(existing) if owned_by(&existing, dp) => {
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&config_map),
            )
            .await?;
        }
        Some(_) => return Err(PublishError::NotOwned(name.to_string())),
    }
    Ok(())
}

/// Deletes the outputs ConfigMap if it is this pipeline's (already gone is fine); the UID
/// precondition makes sure it is the one that was checked.
pub async fn remove(
    client: &kube::Client,
    dp: &DeliveryPipeline,
    name: &str,
) -> Result<(), kube::Error> {
    let namespace = dp.namespace().unwrap_or_default();
    let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !owned_by(&existing, dp) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::EnvironmentOutputs;

    #[test]
    fn outputs_flatten_to_one_key_each() {
        let outputs = Outputs {
            pipeline_name: Some("p".into()),
            kms_key_arn: Some("arn:aws:kms:us-east-1:1:key/k".into()),
            staging: Some(EnvironmentOutputs {
                deploy_role_arn: Some("arn:aws:iam::2:role/d".into()),
                ..EnvironmentOutputs::default()
            }),
            ..Outputs::default()
        };
        let data = data(&outputs);
        assert_eq!(data["pipelineName"], "p");
        assert_eq!(data["kmsKeyArn"], "arn:aws:kms:us-east-1:1:key/k");
        assert_eq!(data["stagingDeployRoleArn"], "arn:aws:iam::2:role/d");
        assert_eq!(data.len(), 3);
    }
}
