//! End to end, the image repository: created from the examples and read back through the SDK
//! field by field; a resync with nothing to do reads and never writes; one field changed is
//! one write; deletion under `deletionPolicy: Delete` removes the repository with its images;
//! a cross-account pipeline lets exactly the environments' execution roles pull. ECR call
//! counts come from the emulator's own record of the operator's requests.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecr::types::{
    EncryptionType, ImageTagMutability, ImageTagMutabilityExclusionFilterType,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use delivery_operator::api::{DeletionPolicy, DeliveryPipeline};
use delivery_operator::desired::{Env, policy};
use delivery_operator::groups::image_repository::desired::{self as desired, pull_principals};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::emulator::{self, count};
use crate::support::reconcile_and_wait;
use crate::support::{
    ACCOUNT, Operator, REGION, aws_config, condition, counts, ctx_of, eventually, example, gone,
    start, wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);

/// The ECR reads of one observation of the repository (its tags come from the account's one
/// tag read of the reconcile, `tag:GetResources`).
const OBSERVE: &[(&str, f64)] = &[
    ("ECR:DescribeRepositories", 1.0),
    ("ECR:GetLifecyclePolicy", 1.0),
    ("ECR:GetRepositoryPolicy", 1.0),
];

/// The last request the emulator recorded for this operator.
async fn last_seq(operator: &Operator) -> u64 {
    emulator::last_seq(&operator.access_key).await
}

/// ECR calls of `kind` the emulator recorded for this operator after request `since`.
async fn ecr_calls(operator: &Operator, kind: &str, since: u64) -> BTreeMap<String, f64> {
    let calls: Vec<_> = emulator::calls_after(&operator.access_key, since)
        .await
        .into_iter()
        .filter(|c| c.service == "ECR")
        .collect();
    count(&calls, kind)
}

async fn ecr() -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(&aws_config().await)
}

async fn describe(ecr: &aws_sdk_ecr::Client, name: &str) -> aws_sdk_ecr::types::Repository {
    ecr.describe_repositories()
        .repository_names(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {name}: {e:?}"))
        .repositories()
        .first()
        .cloned()
        .expect("the repository")
}

async fn lifecycle(ecr: &aws_sdk_ecr::Client, name: &str) -> Value {
    let out = ecr
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
        .expect("lifecycle policy");
    serde_json::from_str(out.lifecycle_policy_text().expect("text")).expect("lifecycle JSON")
}

/// The repository policy, or the error code ECR answers.
async fn repository_policy(ecr: &aws_sdk_ecr::Client, name: &str) -> Result<Value, String> {
    match ecr
        .get_repository_policy()
        .repository_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(policy::parse(out.policy_text().expect("text")).expect("policy JSON")),
        Err(e) => Err(e.code().unwrap_or("no code").to_string()),
    }
}

fn image_manifest() -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7023,
            "digest": format!("sha256:{}", "a".repeat(64))
        },
        "layers": []
    })
    .to_string()
}

#[tokio::test]
async fn the_repository_is_created_as_specified_resynced_without_writes_and_updated_minimally() {
    let (ns, operator, api) = start("e2e-ecr").await;
    let dp = example("minimal.yaml", &ns, "images");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let dp = wait_ready(&api, "images", 1).await;
    let ready = condition(&dp, "ImageRepositoryReady").expect("condition");
    assert_eq!(ready.status, "True", "{ready:?}");
    let status = dp.status.clone().expect("status");
    let key = status.outputs.kms_key_arn.clone().expect("key output");
    let want = desired::image_repository(&ctx_of(&dp), &key);

    // Read back field by field.
    let ecr = ecr().await;
    let repo = describe(&ecr, &want.name).await;
    assert_eq!(
        repo.image_tag_mutability(),
        Some(&ImageTagMutability::ImmutableWithExclusion)
    );
    let filters: Vec<(&ImageTagMutabilityExclusionFilterType, &str)> = repo
        .image_tag_mutability_exclusion_filters()
        .iter()
        .map(|f| (f.filter_type(), f.filter()))
        .collect();
    assert_eq!(
        filters,
        vec![(&ImageTagMutabilityExclusionFilterType::Wildcard, "latest")]
    );
    assert_eq!(
        repo.image_scanning_configuration()
            .map(|c| c.scan_on_push()),
        Some(true)
    );
    let encryption = repo.encryption_configuration().expect("encryption");
    assert_eq!(encryption.encryption_type(), &EncryptionType::Kms);
    assert_eq!(
        encryption.kms_key(),
        Some(key.as_str()),
        "the pipeline's key"
    );
    let arn = repo.repository_arn().expect("arn").to_string();
    assert_eq!(
        status.outputs.image_repository_uri.as_deref(),
        repo.repository_uri()
    );
    assert!(
        status
            .inventory
            .iter()
            .any(|i| i.kind == "AWS::ECR::Repository"
                && i.id == arn
                && i.account == ACCOUNT
                && i.region == REGION
                && i.group.as_deref() == Some("ImageRepositoryReady")),
        "{:?}",
        status.inventory
    );
    let rules = lifecycle(&ecr, &want.name).await["rules"].clone();
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
    assert_eq!(rules[0]["selection"]["tagStatus"], "any");
    assert_eq!(rules[0]["selection"]["countType"], "imageCountMoreThan");
    assert_eq!(rules[0]["selection"]["countNumber"], 10);
    assert_eq!(rules[0]["action"]["type"], "expire");
    assert_eq!(
        repository_policy(&ecr, &want.name).await,
        Err("RepositoryPolicyNotFoundException".to_string()),
        "every environment is in the pipeline's account: no policy"
    );
    let tags: BTreeMap<String, String> = ecr
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("tags")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags, want.tags.tags);
    assert_eq!(
        (
            ecr_calls(&operator, "read", 0).await,
            ecr_calls(&operator, "write", 0).await
        ),
        (
            // The repository, then its lifecycle policy (the retention step), found absent.
            counts(&[
                ("ECR:DescribeRepositories", 1.0),
                ("ECR:GetLifecyclePolicy", 1.0)
            ]),
            counts(&[
                ("ECR:CreateRepository", 1.0),
                ("ECR:PutLifecyclePolicy", 1.0)
            ])
        ),
        "creation"
    );

    // Nothing to do: one observation, no write to ECR (nor anywhere).
    let since = last_seq(&operator).await;
    reconcile_and_wait(&api, "images").await;
    assert_eq!(
        crate::emulator::count(&operator.calls_after(since).await, "write"),
        BTreeMap::new()
    );
    assert_eq!(ecr_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(ecr_calls(&operator, "read", since).await, counts(OBSERVE));

    // keepLastImages: exactly one PutLifecyclePolicy, and no other write.
    let since = last_seq(&operator).await;
    api.patch(
        "images",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"imageRepository": {"keepLastImages": 20}}})),
    )
    .await
    .expect("patch");
    wait_ready(&api, "images", 2).await;
    let one_write = counts(&[("ECR:PutLifecyclePolicy", 1.0)]);
    assert_eq!(
        crate::emulator::count(&operator.calls_after(since).await, "write"),
        one_write
    );
    assert_eq!(ecr_calls(&operator, "write", since).await, one_write);
    assert_eq!(ecr_calls(&operator, "read", since).await, counts(OBSERVE));
    assert_eq!(
        lifecycle(&ecr, &want.name).await["rules"][0]["selection"]["countNumber"],
        20
    );
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn deletion_removes_the_repository_even_with_images_in_it() {
    let (ns, operator, api) = start("e2e-ecr-delete").await;
    let dp = example("minimal.yaml", &ns, "scrapped");
    assert_eq!(dp.spec.deletion_policy, DeletionPolicy::Delete);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let dp = wait_ready(&api, "scrapped", 1).await;
    let name = ctx_of(&dp).names().image_repository();
    let ecr = ecr().await;
    ecr.put_image()
        .repository_name(&name)
        .image_manifest(image_manifest())
        .image_tag("v1")
        .send()
        .await
        .expect("push an image");
    let images: Vec<_> = ecr
        .list_images()
        .repository_name(&name)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    assert_eq!(images.len(), 1, "{images:?}");

    let since = last_seq(&operator).await;
    api.delete("scrapped", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "scrapped").await;

    // What the account holds, not what the operator recorded.
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = ecr
            .describe_repositories()
            .set_next_token(token)
            .send()
            .await
            .expect("list repositories");
        names.extend(
            page.repositories()
                .iter()
                .filter_map(|r| r.repository_name().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert!(!names.contains(&name), "{name} is still in the account");
    assert_eq!(
        (
            ecr_calls(&operator, "read", since).await,
            ecr_calls(&operator, "write", since).await
        ),
        (counts(OBSERVE), counts(&[("ECR:DeleteRepository", 1.0)]))
    );
}

#[tokio::test]
async fn a_cross_account_pipeline_lets_exactly_the_environments_execution_roles_pull() {
    let (ns, operator, api) = start("e2e-ecr-xacct").await;
    let dp: DeliveryPipeline = example("cross-account.yaml", &ns, "shipper");
    let ctx = ctx_of(&dp);
    // ECR refuses a policy naming a role that does not exist: the repository step waits for
    // the environments' role steps (declared needs), so this succeeds on the first pass.
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let dp = wait_ready(&api, "shipper", 1).await;
    let key = dp
        .status
        .clone()
        .and_then(|s| s.outputs.kms_key_arn)
        .expect("key");
    let want = desired::image_repository(&ctx, &key);

    let ecr = ecr().await;
    let granted = repository_policy(&ecr, &want.name)
        .await
        .expect("a repository policy");
    assert!(
        policy::equivalent(&granted, want.policy.as_ref().expect("desired policy")),
        "{granted}"
    );
    let principals = &policy::normalize(&granted)["Statement"][0]["Principal"]["AWS"];
    assert_eq!(principals, &json!(pull_principals(&ctx)));
    assert_eq!(
        pull_principals(&ctx),
        vec![
            format!(
                "arn:aws:iam::222222222222:role/{}",
                ctx.names().environment_role(Env::Staging, "exec")
            ),
            format!(
                "arn:aws:iam::333333333333:role/{}",
                ctx.names().environment_role(Env::Production, "exec")
            ),
        ]
    );
    assert_eq!(
        ecr_calls(&operator, "write", 0).await,
        counts(&[
            ("ECR:CreateRepository", 1.0),
            ("ECR:PutLifecyclePolicy", 1.0),
            ("ECR:SetRepositoryPolicy", 1.0),
        ])
    );

    // Moving the environments into the pipeline's account would leave their resources behind
    // in 222222222222 and 333333333333: refused at admission, and the pulls stay allowed.
    let here = json!({"accountId": null, "managementRoleArn": null});
    let refused = api
        .patch(
            "shipper",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"environments": {"staging": here, "production": here}}})),
        )
        .await
        .expect_err("an environment's account cannot change");
    assert!(
        refused.to_string().contains("accountId cannot change"),
        "{refused}"
    );
    assert!(repository_policy(&ecr, &want.name).await.is_ok());
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn a_repository_encrypted_otherwise_is_reported_not_replaced() {
    let (ns, operator, api) = start("e2e-ecr-aes").await;
    let dp = example("minimal.yaml", &ns, "legacy");
    // Made by hand under the pipeline's name, untagged (so adopted), with ECR's default AES256.
    let name = ctx_of(&dp).names().image_repository();
    let ecr = ecr().await;
    ecr.create_repository()
        .repository_name(&name)
        .send()
        .await
        .expect("repository made by hand");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let reported = eventually("the encryption reported", WAIT, || async {
        let dp = api.get("legacy").await.ok()?;
        let c = condition(&dp, "ImageRepositoryReady")?.clone();
        (c.reason == "RepositoryEncryptionImmutable").then_some(c)
    })
    .await;
    assert_eq!(reported.status, "False");
    assert!(
        reported
            .message
            .contains("cannot change the encryption of an existing repository")
            && reported.message.contains("AES256")
            && reported.message.contains(&name),
        "{}",
        reported.message
    );
    // Refused before any write: not even the missing tags or the lifecycle policy.
    assert_eq!(ecr_calls(&operator, "write", 0).await, BTreeMap::new());
    let repo = describe(&ecr, &name).await;
    assert_eq!(
        repo.encryption_configuration().map(|e| e.encryption_type()),
        Some(&EncryptionType::Aes256)
    );
}
