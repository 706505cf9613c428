//! `spec.outputs.configMapName`: the outputs as a ConfigMap in the pipeline's namespace, owned
//! by the pipeline (Kubernetes deletes it with the pipeline), for workloads that read
//! configuration rather than custom resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::{DeliveryPipeline, Outputs};

const FIELD_MANAGER: &str = "delivery-operator";

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

/// Applies the ConfigMap `name` with the outputs (server-side apply: only its own fields).
pub async fn publish(
    client: &kube::Client,
    dp: &DeliveryPipeline,
    name: &str,
    outputs: &Outputs,
) -> Result<(), kube::Error> {
    let namespace = dp.namespace().unwrap_or_default();
    let owner = dp.controller_owner_ref(&());
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "delivery-operator"},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "data": data(outputs),
    });
    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&config_map),
        )
        .await?;
    Ok(())
}

/// Deletes the outputs ConfigMap (already gone is fine).
pub async fn remove(client: &kube::Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    match Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .delete(name, &Default::default())
        .await
    {
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
