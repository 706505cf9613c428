//! Admission: every invalid manifest under tests/data/invalid is rejected by the real API
//! server with its expected message; every manifest under tests/data/valid (values AWS accepts
//! at the edge of its bounds) and every example is accepted; `kubectl explain` shows the field
//! documentation.

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde::Deserialize;
use serde_json::json;

use crate::support::{create_namespace, kube_client, repo_root, sandbox, unique};

fn pipelines_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "pipelines.delivery-operator.dev",
            "v1alpha1",
            "DeliveryPipeline",
        ),
        "deliverypipelines",
    )
}

fn documents(text: &str) -> Vec<DynamicObject> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| DynamicObject::deserialize(doc).expect("manifest parses"))
        .collect()
}

fn expectation(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .map(|s| s.trim().to_string())
        .expect("manifest names its expected message in a '# expect:' line")
}

#[tokio::test]
async fn every_invalid_manifest_is_rejected_with_its_message() {
    let client = kube_client("admin").await;
    let ns = unique("admission");
    create_namespace(&client, &ns).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &pipelines_resource());
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };

    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/data/invalid"))
        .expect("tests/data/invalid")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected at least 30 invalid manifests, found {}",
        files.len()
    );

    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read manifest");
        let expected = expectation(&text);
        let mut docs = documents(&text);
        for d in &mut docs {
            d.metadata.namespace = Some(ns.clone());
        }
        let result = if docs.len() == 2 {
            // An update: create the original for real, then submit the change.
            let original = api
                .create(&PostParams::default(), &docs[0])
                .await
                .expect("original is valid");
            let mut changed = docs[1].clone();
            changed.metadata.resource_version = original.metadata.resource_version.clone();
            let name = changed.metadata.name.clone().unwrap_or_default();
            let r = api.replace(&name, &dry_run, &changed).await;
            api.delete(&name, &DeleteParams::default())
                .await
                .expect("cleanup");
            r
        } else {
            api.create(&dry_run, &docs[0]).await
        };
        match result {
            Err(kube::Error::Api(e)) if e.message.contains(&expected) => {}
            Err(kube::Error::Api(e)) => failures.push(format!(
                "{}: rejected, but with: {}",
                file.display(),
                e.message
            )),
            Err(other) => failures.push(format!("{}: unexpected error {other}", file.display())),
            Ok(_) => failures.push(format!(
                "{}: ACCEPTED, expected rejection containing {expected:?}",
                file.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} manifests misbehaved:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Values at the edge of what AWS accepts (tests/bounds/aws_bounds.yaml maps each field to its
/// AWS member): each relaxed rule has a manifest here, so a bound cannot silently tighten again.
#[tokio::test]
async fn every_valid_manifest_is_accepted() {
    let client = kube_client("admin").await;
    let ns = unique("valid");
    create_namespace(&client, &ns).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &pipelines_resource());
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/data/valid"))
        .expect("tests/data/valid")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected at least 7 valid manifests, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read manifest");
        let mut doc = documents(&text).remove(0);
        doc.metadata.namespace = Some(ns.clone());
        if let Err(e) = api.create(&dry_run, &doc).await {
            failures.push(format!("{}: REJECTED: {e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} valid manifests were rejected:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_example_is_accepted() {
    let client = kube_client("admin").await;
    let ns = unique("examples");
    create_namespace(&client, &ns).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &pipelines_resource());
    for file in ["minimal.yaml", "cross-account.yaml"] {
        let text =
            std::fs::read_to_string(repo_root().join("examples").join(file)).expect("example");
        let mut doc = documents(&text).remove(0);
        doc.metadata.namespace = Some(ns.clone());
        let stored = api
            .create(&PostParams::default(), &doc)
            .await
            .unwrap_or_else(|e| panic!("{file} rejected: {e}"));
        // Server-side defaults are visible in the stored object.
        assert!(
            stored.data["spec"]["logRetentionDays"].as_i64().is_some(),
            "{file}"
        );
        assert_eq!(stored.data["spec"]["deletionPolicy"], "Delete", "{file}");
    }
}

/// `kubectl explain path`, once the API server publishes the CRD's OpenAPI (a few seconds
/// after it is established).
async fn explain(path: &str) -> String {
    crate::support::eventually(
        &format!("kubectl explain {path}"),
        std::time::Duration::from_secs(60),
        || async {
            let out = sandbox()
                .kubectl()
                .args(["explain", path])
                .output()
                .expect("kubectl explain");
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).to_string())
        },
    )
    .await
}

#[tokio::test]
async fn kubectl_explain_shows_field_documentation() {
    let text = explain("deliverypipeline.spec.environments.production").await;
    assert!(
        text.contains("Production: deployed after the manual approval"),
        "{text}"
    );
    assert!(text.contains("managementRoleArn"), "{text}");
    assert!(text.contains("Fargate task CPU units"), "{text}");
    let policy = explain("deliverypolicy.spec.roles").await;
    assert!(policy.contains("permissionsBoundaryPolicy"), "{policy}");
    assert!(
        policy.contains("Managed policy every role the operator creates carries"),
        "{policy}"
    );
}

/// The example DeliveryPolicy is accepted; the schema refuses a lone `*`, a role outside its
/// account and a selector operator without values, each with its message.
#[tokio::test]
async fn delivery_policies_are_validated_at_admission() {
    let client = kube_client("admin").await;
    let policies: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "pipelines.delivery-operator.dev",
                "v1alpha1",
                "DeliveryPolicy",
            ),
            "deliverypolicies",
        ),
    );
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let text = std::fs::read_to_string(repo_root().join("examples/policies/payments.yaml"))
        .expect("example policy");
    let example = documents(&text).remove(0);
    policies
        .create(&dry_run, &example)
        .await
        .expect("the example policy is accepted");
    let cases = [
        (
            json!({"namespaceSelector": {}, "build": {"images": ["*"]}}),
            "a lone * admits everything",
        ),
        (
            json!({"namespaceSelector": {}, "accounts": {"pipeline": [{"accountId": "111111111111", "roleArns": ["arn:aws:iam::222222222222:role/x"]}]}}),
            "every roleArns pattern must name a role in accountId",
        ),
        (
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}),
            "In and NotIn need values",
        ),
    ];
    for (spec, expected) in cases {
        let mut bad = example.clone();
        bad.data["spec"] = spec;
        match policies.create(&dry_run, &bad).await {
            Err(kube::Error::Api(e)) => assert!(e.message.contains(expected), "{}", e.message),
            other => panic!("expected a rejection containing {expected:?}, got {other:?}"),
        }
    }
}
