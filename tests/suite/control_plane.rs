//! The test bed itself: a real kube-apiserver with CEL validation, the status subresource,
//! watches, bearer-token auth and RBAC.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::support::{create_namespace, eventually, kube_client, unique};

fn widget_crd(group: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                            "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}]
                        },
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
                    }
                }}
            }]
        }
    }))
    .expect("crd json")
}

#[tokio::test]
async fn crd_with_cel_rule_rejects_bad_objects_and_round_trips_good_ones() {
    let client = kube_client("admin").await;
    let group = format!("{}.test.dev", unique("cel"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd(&group))
        .await
        .expect("create CRD");
    let name = format!("widgets.{group}");
    eventually("CRD established", Duration::from_secs(30), || async {
        let crd = crds.get(&name).await.ok()?;
        let established = crd
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;

    let ns = unique("cel");
    create_namespace(&client, &ns).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let object = |n: &str, min: i64, max: i64| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": n}, "spec": {"min": min, "max": max}
        }))
        .expect("object")
    };

    // The API server itself enforces the CEL rule, with the rule's message. Retried briefly:
    // a just-established CRD's validators may take a moment to load.
    let err = eventually("CEL rule enforced", Duration::from_secs(20), || async {
        match api
            .create(&PostParams::default(), &object("bad", 5, 1))
            .await
        {
            Err(kube::Error::Api(e)) => Some(e),
            _ => None,
        }
    })
    .await;
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("min must not exceed max"),
        "{}",
        err.message
    );

    // A valid object: create, watch, patch status through the subresource, see the change.
    let created = api
        .create(&PostParams::default(), &object("good", 1, 5))
        .await
        .expect("create valid");
    let rv = created
        .metadata
        .resource_version
        .clone()
        .expect("resourceVersion");
    let mut events = watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=good"),
    )
    .applied_objects()
    .boxed();
    let first = tokio::time::timeout(Duration::from_secs(20), events.try_next())
        .await
        .expect("watch")
        .expect("ok");
    assert_eq!(
        first.and_then(|o| o.metadata.name),
        Some("good".to_string())
    );

    api.patch_status(
        "good",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Ready"}})),
    )
    .await
    .expect("status patch");
    let updated = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Some(o)) = events.try_next().await
                && o.data["status"]["phase"] == "Ready"
            {
                return o;
            }
        }
    })
    .await
    .expect("watch saw the status change");
    assert_ne!(
        updated.metadata.resource_version,
        Some(rv),
        "resourceVersion advances"
    );
    assert_eq!(
        updated.data["spec"]["max"], 5,
        "spec unchanged by a status write"
    );

    // The status subresource ignores spec changes sent to it.
    api.patch_status(
        "good",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"max": 9}})),
    )
    .await
    .expect("status patch with spec");
    let after = api.get("good").await.expect("get");
    assert_eq!(after.data["spec"]["max"], 5);
    crds.delete(&name, &Default::default())
        .await
        .expect("delete CRD");
}

#[tokio::test]
async fn a_restricted_token_identity_gets_only_what_rbac_grants() {
    let admin = kube_client("admin").await;
    let restricted = kube_client("restricted").await;
    let ns = unique("rbac");
    create_namespace(&admin, &ns).await;
    let pipelines: Api<delivery_operator::api::DeliveryPipeline> =
        Api::namespaced(restricted.clone(), &ns);

    match pipelines.list(&Default::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{}", e.message),
        other => panic!("restricted identity could list before any binding: {other:?}"),
    }

    let role_name = unique("pipeline-reader");
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "rules": [{"apiGroups": ["pipelines.delivery-operator.dev"], "resources": ["deliverypipelines"], "verbs": ["get", "list", "watch"]}]
    }))
    .expect("role");
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "reader", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sandbox-restricted"}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind");

    let listed = eventually(
        "RBAC grant to take effect",
        Duration::from_secs(30),
        || async { pipelines.list(&Default::default()).await.ok() },
    )
    .await;
    assert!(listed.items.is_empty());
    // Still nothing beyond the grant: no writes, no other namespace.
    let other: Api<delivery_operator::api::DeliveryPipeline> =
        Api::namespaced(restricted.clone(), "default");
    match other.list(&Default::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403),
        other => panic!("grant leaked into another namespace: {other:?}"),
    }
    let dp = crate::support::example("minimal.yaml", &ns, "x");
    match pipelines.create(&PostParams::default(), &dp).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403),
        other => panic!("read-only identity could create: {other:?}"),
    }
}

/// The pinned API server filters lists of DeliveryPipelines by shard (`shardSelector`, feature
/// gate `ShardedListAndWatch`, on in the sandbox); which shard it puts each object in is what
/// `controller::shard::Shard::contains` computes from the UID, for every object; the three
/// shards together hold each object exactly once. The API server is the oracle of the hash.
#[tokio::test]
async fn the_api_server_shards_pipelines_as_the_operator_computes_shards() {
    use delivery_operator::api::DeliveryPipeline;
    use delivery_operator::controller::shard::Shard;
    use std::collections::BTreeMap;

    let client = kube_client("admin").await;
    let ns = unique("cp-shards");
    create_namespace(&client, &ns).await;
    let api: Api<DeliveryPipeline> = Api::namespaced(client.clone(), &ns);
    let mut uids = BTreeMap::new();
    for i in 0..24 {
        let dp = crate::support::example("minimal.yaml", &ns, &format!("s{i:02}"));
        let made = api
            .create(&PostParams::default(), &dp)
            .await
            .expect("create");
        uids.insert(made.metadata.uid.expect("uid"), 0);
    }
    for index in 0..3 {
        let shard = Shard::new(index, 3).expect("shard");
        let selector = shard.selector();
        // Every list pages: 5 a page, following `continue`.
        let mut token: Option<String> = None;
        loop {
            let mut url = reqwest::Url::parse("http://list/").expect("url");
            url.set_path(&format!(
                "/apis/pipelines.delivery-operator.dev/v1alpha1/namespaces/{ns}/deliverypipelines"
            ));
            url.query_pairs_mut()
                .append_pair("shardSelector", &selector)
                .append_pair("limit", "5");
            if let Some(t) = &token {
                url.query_pairs_mut().append_pair("continue", t);
            }
            let request = http::Request::get(format!(
                "{}?{}",
                url.path(),
                url.query().unwrap_or_default()
            ))
            .body(Vec::new())
            .expect("request");
            let page: serde_json::Value = client.request(request).await.expect("sharded list");
            // Kubernetes 1.37.2 filters custom resources but does not echo `shardInfo` for
            // them (so the operator filters client side as well); an echo must be ours.
            if let Some(echo) = page["metadata"]["shardInfo"]["selector"].as_str() {
                assert_eq!(echo, selector);
            }
            for item in page["items"].as_array().expect("items") {
                let uid = item["metadata"]["uid"].as_str().expect("uid");
                assert!(
                    shard.contains(uid),
                    "the server put {uid} in shard {shard}, the operator would not"
                );
                *uids.get_mut(uid).expect("one of ours") += 1;
            }
            token = page["metadata"]["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    assert!(
        uids.values().all(|n| *n == 1),
        "each object in exactly one shard: {uids:?}"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}
