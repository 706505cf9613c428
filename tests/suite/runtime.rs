//! End to end, each environment's ECS runtime: created from the examples and read back through
//! the SDK in the account it belongs to, field by field (cluster settings and capacity
//! providers, the task definition's container, the service's network, deployment configuration,
//! grace period and tags); before the pipeline's first deployment the service runs no task; a
//! deployment made as CodePipeline's ECS deploy action makes it (a revision with a new image,
//! the service pointed at it) is kept, and later spec changes keep its image; a resync with
//! nothing to do only reads; a count change, an environment variable change and a circuit
//! breaker disabled by hand make exactly the needed writes; rollouts in progress, failed and
//! rolled back are reported; deletion leaves nothing (listed in every account). ECS call
//! counts come from the emulator's own record of the operator's requests, per account.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    ClusterField, DeploymentCircuitBreaker, DeploymentConfiguration, ServiceField,
    TaskDefinitionStatus,
};
use delivery_operator::api::DeliveryPipeline;
use delivery_operator::desired::{Env, PipelineContext};
use delivery_operator::groups::log_groups::desired as log_groups;
use delivery_operator::groups::service::desired::{self, Inputs, Runtime};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{self, count, set_ecs_deployment};
use crate::support::reconcile_and_wait;
use crate::support::{
    ACCOUNT, AWAITING_FIRST_IMAGE, Operator, REGION, condition, config_for, counts, ctx_of,
    eventually, example, gone, start, wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);
const STAGING_ACCOUNT: &str = "222222222222";
const PRODUCTION_ACCOUNT: &str = "333333333333";
/// The tag the pipeline's build gives an image (a commit ID, shortened).
const RELEASE: &str = "abc123";

async fn ecs_in(account: &str) -> Client {
    Client::new(&config_for(account).await)
}

/// ECS calls of `kind` the emulator recorded for this operator after request `since`, by
/// account, then `ECS:Operation`.
async fn ecs_calls(
    operator: &Operator,
    kind: &str,
    since: u64,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    emulator::service_calls_by_account(&operator.access_key, "ECS", kind, since).await
}

/// Every call of `kind` (all services) after `since`, by `Service:Operation`.
async fn all_calls(operator: &Operator, kind: &str, since: u64) -> BTreeMap<String, f64> {
    count(
        &emulator::calls_after(&operator.access_key, since).await,
        kind,
    )
}

/// The tags the repository's lifecycle policy keeps whatever is built after them (its first
/// rule), read from the emulator.
async fn protected_tags(account: &str, repository_uri: &str) -> Vec<String> {
    let name = repository_uri
        .split_once('/')
        .map(|(_, n)| n)
        .expect("repository name");
    let text = aws_sdk_ecr::Client::new(&crate::support::config_for(account).await)
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
        .expect("lifecycle policy")
        .lifecycle_policy_text
        .expect("policy text");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("policy JSON");
    let rules = policy["rules"].as_array().cloned().unwrap_or_default();
    rules
        .iter()
        .filter(|r| r["selection"]["tagStatus"] == "tagged")
        .flat_map(|r| {
            r["selection"]["tagPatternList"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

fn in_accounts(pairs: &[(&str, BTreeMap<String, f64>)]) -> BTreeMap<String, BTreeMap<String, f64>> {
    pairs
        .iter()
        .map(|(a, c)| (a.to_string(), c.clone()))
        .collect()
}

/// The reads of `runtimes` runtimes in one account: their clusters in one description, each
/// service. The revision a service runs is not read again: this process registered it or read
/// it before, and a revision never changes.
fn observe(runtimes: f64) -> BTreeMap<String, f64> {
    counts(&[
        ("ECS:DescribeClusters", 1.0),
        ("ECS:DescribeServices", runtimes),
    ])
}

/// The runtime the operator should have made for `env`, from the pipeline's reported outputs.
fn desired_runtime(ctx: &PipelineContext, dp: &DeliveryPipeline, env: Env) -> Runtime {
    let status = dp.status.as_ref().expect("status");
    let outputs = match env {
        Env::Staging => status.outputs.staging.as_ref(),
        Env::Production => status.outputs.production.as_ref(),
    }
    .expect("environment outputs");
    let log_group = log_groups::environment(ctx, env)
        .groups
        .into_keys()
        .next()
        .expect("application log group");
    desired::runtime(
        ctx,
        env,
        &Inputs {
            repository_uri: status
                .outputs
                .image_repository_uri
                .as_deref()
                .expect("repository"),
            execution_role_arn: outputs.execution_role_arn.as_deref().expect("execution"),
            task_role_arn: outputs.task_role_arn.as_deref().expect("task role"),
            log_group: &log_group,
            region: REGION,
            subnet_ids: outputs.subnet_ids.as_deref().expect("subnets"),
            security_group_ids: outputs.security_group_ids.as_deref().expect("groups"),
            assign_public_ip: "ENABLED",
        },
    )
}

fn tags_of(tags: &[aws_sdk_ecs::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

fn assert_tagged(what: &str, actual: &[aws_sdk_ecs::types::Tag], want: &BTreeMap<String, String>) {
    let actual = tags_of(actual);
    for (k, v) in want {
        assert_eq!(actual.get(k), Some(v), "{what}: tag {k} in {actual:?}");
    }
}

/// What one environment's runtime is in AWS.
#[derive(Debug)]
struct Built {
    cluster_arn: String,
    service_arn: String,
    /// The revision the service runs.
    revision: String,
}

/// Reads one environment's runtime back in `account` and compares it with `want` field by
/// field; the service runs `image` with `tasks` tasks.
async fn assert_runtime(
    ecs: &Client,
    account: &str,
    want: &Runtime,
    image: &str,
    tasks: i32,
) -> Built {
    let clusters = ecs
        .describe_clusters()
        .clusters(&want.cluster.name)
        .include(ClusterField::Settings)
        .include(ClusterField::Tags)
        .send()
        .await
        .expect("describe clusters");
    let cluster = clusters
        .clusters()
        .iter()
        .find(|c| c.status() == Some("ACTIVE"))
        .unwrap_or_else(|| panic!("cluster {} in {account}", want.cluster.name));
    let cluster_arn = cluster.cluster_arn().expect("cluster arn").to_string();
    assert_eq!(
        cluster_arn,
        format!(
            "arn:aws:ecs:{REGION}:{account}:cluster/{}",
            want.cluster.name
        )
    );
    let settings: Vec<(String, String)> = cluster
        .settings()
        .iter()
        .map(|s| {
            (
                s.name().map(|n| n.as_str().to_string()).unwrap_or_default(),
                s.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        settings,
        vec![("containerInsights".to_string(), "enabled".to_string())]
    );
    assert_eq!(cluster.capacity_providers(), ["FARGATE".to_string()]);
    let strategy: Vec<(&str, i32, i32)> = cluster
        .default_capacity_provider_strategy()
        .iter()
        .map(|s| (s.capacity_provider(), s.weight(), s.base()))
        .collect();
    assert_eq!(strategy, vec![("FARGATE", 1, 0)]);
    assert_tagged("cluster", cluster.tags(), &want.cluster.tags.tags);

    let services = ecs
        .describe_services()
        .cluster(&want.cluster.name)
        .services(&want.service.name)
        .include(ServiceField::Tags)
        .send()
        .await
        .expect("describe services");
    let service = services
        .services()
        .iter()
        .find(|s| s.status() == Some("ACTIVE"))
        .unwrap_or_else(|| panic!("service {} in {account}", want.service.name));
    let service_arn = service.service_arn().expect("service arn").to_string();
    assert_eq!(
        service_arn,
        format!(
            "arn:aws:ecs:{REGION}:{account}:service/{}/{}",
            want.cluster.name, want.service.name
        )
    );
    assert_eq!(service.cluster_arn(), Some(cluster_arn.as_str()));
    assert_eq!(service.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    assert_eq!(service.desired_count(), tasks, "{account} task count");
    let vpc = service
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .expect("awsvpc configuration");
    assert_eq!(
        vpc.subnets().iter().cloned().collect::<BTreeSet<_>>(),
        want.service.subnets
    );
    assert_eq!(
        vpc.security_groups()
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        want.service.security_groups
    );
    assert_eq!(
        vpc.assign_public_ip().map(|a| a.as_str()),
        Some(want.service.assign_public_ip.as_str())
    );
    let configuration = service
        .deployment_configuration()
        .expect("deployment configuration");
    let breaker = configuration
        .deployment_circuit_breaker()
        .expect("circuit breaker");
    assert_eq!(
        (
            breaker.enable(),
            breaker.rollback(),
            configuration.minimum_healthy_percent(),
            configuration.maximum_percent()
        ),
        (true, want.service.deployment.rollback, Some(100), Some(200))
    );
    assert_eq!(
        service.health_check_grace_period_seconds(),
        Some(want.service.health_check_grace_period_seconds)
    );
    assert!(service.enable_ecs_managed_tags());
    assert_eq!(
        service.propagate_tags().map(|p| p.as_str()),
        Some("SERVICE")
    );
    assert_tagged("service", service.tags(), &want.service.tags.tags);
    let revision = service.task_definition().expect("revision").to_string();
    assert!(
        revision.starts_with(&format!(
            "arn:aws:ecs:{REGION}:{account}:task-definition/{}:",
            want.task_definition.family
        )),
        "{revision}"
    );

    let t = ecs
        .describe_task_definition()
        .task_definition(&revision)
        .send()
        .await
        .expect("describe task definition");
    let t = t.task_definition().expect("task definition");
    let wt = &want.task_definition;
    assert_eq!(t.family(), Some(wt.family.as_str()));
    assert_eq!(
        (t.cpu(), t.memory()),
        (Some(wt.cpu.as_str()), Some(wt.memory.as_str()))
    );
    assert_eq!(t.network_mode().map(|n| n.as_str()), Some("awsvpc"));
    assert_eq!(
        t.requires_compatibilities()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        vec!["FARGATE"]
    );
    assert_eq!(t.execution_role_arn(), Some(wt.execution_role_arn.as_str()));
    assert_eq!(t.task_role_arn(), Some(wt.task_role_arn.as_str()));
    let [c] = t.container_definitions() else {
        panic!("one container: {:?}", t.container_definitions());
    };
    let wc = &wt.container;
    assert_eq!(c.name(), Some(wc.name.as_str()));
    assert_eq!(c.image(), Some(image), "{account} image");
    assert_eq!(c.essential(), Some(true));
    let ports: Vec<(Option<i32>, Option<&str>)> = c
        .port_mappings()
        .iter()
        .map(|p| (p.container_port(), p.protocol().map(|x| x.as_str())))
        .collect();
    assert_eq!(ports, vec![(Some(wc.port), Some("tcp"))]);
    let environment: BTreeMap<String, String> = c
        .environment()
        .iter()
        .filter_map(|v| Some((v.name()?.to_string(), v.value()?.to_string())))
        .collect();
    assert_eq!(environment, wc.environment);
    let health = c.health_check().map(|h| {
        (
            h.command().to_vec(),
            h.interval(),
            h.timeout(),
            h.retries(),
            h.start_period(),
        )
    });
    let want_health = wc.health_check.as_ref().map(|h| {
        (
            h.command.clone(),
            Some(h.interval),
            Some(h.timeout),
            Some(h.retries),
            Some(h.start_period),
        )
    });
    assert_eq!(health, want_health);
    let log = c.log_configuration().expect("log configuration");
    assert_eq!(log.log_driver().as_str(), "awslogs");
    let options: BTreeMap<String, String> = log
        .options()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    assert_eq!(options, wc.log_options);
    Built {
        cluster_arn,
        service_arn,
        revision,
    }
}

/// What CodePipeline's ECS deploy action does with an `imagedefinitions.json` naming `image`:
/// a new revision of the revision the service runs, with the container's image replaced, and
/// the service pointed at it. Returns the new revision.
async fn deploy_as_the_pipeline(ecs: &Client, want: &Runtime, image: &str) -> String {
    let services = ecs
        .describe_services()
        .cluster(&want.cluster.name)
        .services(&want.service.name)
        .send()
        .await
        .expect("service");
    let running = services.services()[0]
        .task_definition()
        .expect("revision")
        .to_string();
    let current = ecs
        .describe_task_definition()
        .task_definition(&running)
        .send()
        .await
        .expect("running revision");
    let t = current.task_definition().expect("task definition");
    let containers = t
        .container_definitions()
        .iter()
        .cloned()
        .map(|mut c| {
            if c.name() == Some(want.task_definition.container.name.as_str()) {
                c.image = Some(image.to_string());
            }
            c
        })
        .collect();
    let registered = ecs
        .register_task_definition()
        .family(t.family().expect("family"))
        .set_task_role_arn(t.task_role_arn().map(str::to_string))
        .set_execution_role_arn(t.execution_role_arn().map(str::to_string))
        .set_network_mode(t.network_mode().cloned())
        .set_requires_compatibilities(Some(t.requires_compatibilities().to_vec()))
        .set_cpu(t.cpu().map(str::to_string))
        .set_memory(t.memory().map(str::to_string))
        .set_container_definitions(Some(containers))
        .send()
        .await
        .expect("register the release");
    let revision = registered
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("arn")
        .to_string();
    ecs.update_service()
        .cluster(&want.cluster.name)
        .service(&want.service.name)
        .task_definition(&revision)
        .send()
        .await
        .expect("point the service at the release");
    revision
}

/// What of this pipeline's ECS runtimes `account` still lists: active clusters, their services,
/// and revisions of either family (active or inactive).
pub(crate) async fn leftovers(ctx: &PipelineContext, account: &str) -> Vec<String> {
    let ecs = ecs_in(account).await;
    let names = ctx.names();
    let mut left = Vec::new();
    let clusters: BTreeSet<String> = Env::ALL.iter().map(|e| names.cluster(*e)).collect();
    // Every list pages: the account is shared by every test.
    let listed: Vec<_> = ecs
        .list_clusters()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let ours: Vec<String> = listed
        .into_iter()
        .map(|a| a.expect("list clusters"))
        .filter(|a| clusters.contains(a.rsplit('/').next().unwrap_or_default()))
        .collect();
    if !ours.is_empty() {
        let described = ecs
            .describe_clusters()
            .set_clusters(Some(ours))
            .send()
            .await
            .expect("describe clusters");
        for c in described
            .clusters()
            .iter()
            .filter(|c| c.status() == Some("ACTIVE"))
        {
            let arn = c.cluster_arn().unwrap_or_default().to_string();
            let services: Vec<_> = ecs
                .list_services()
                .cluster(&arn)
                .into_paginator()
                .items()
                .send()
                .collect()
                .await;
            left.extend(services.into_iter().map(|s| s.expect("list services")));
            left.push(arn);
        }
    }
    for env in Env::ALL {
        for status in [TaskDefinitionStatus::Active, TaskDefinitionStatus::Inactive] {
            let revisions: Vec<_> = ecs
                .list_task_definitions()
                .family_prefix(names.service(env))
                .status(status)
                .into_paginator()
                .items()
                .send()
                .collect()
                .await;
            left.extend(
                revisions
                    .into_iter()
                    .map(|r| r.expect("list task definitions")),
            );
        }
    }
    left
}

fn condition_of(dp: &DeliveryPipeline, env: Env) -> delivery_operator::api::Condition {
    condition(dp, &format!("{}ServiceReady", env.title()))
        .cloned()
        .expect("service condition")
}

/// The outputs and inventory items the service step reports for `env`.
fn assert_reported(dp: &DeliveryPipeline, env: Env, account: &str, want: &Runtime, built: &Built) {
    let status = dp.status.as_ref().expect("status");
    let outputs = match env {
        Env::Staging => status.outputs.staging.as_ref(),
        Env::Production => status.outputs.production.as_ref(),
    }
    .expect("environment outputs");
    assert_eq!(
        (
            outputs.cluster_name.as_deref(),
            outputs.cluster_arn.as_deref(),
            outputs.service_name.as_deref(),
            outputs.service_arn.as_deref()
        ),
        (
            Some(want.cluster.name.as_str()),
            Some(built.cluster_arn.as_str()),
            Some(want.service.name.as_str()),
            Some(built.service_arn.as_str())
        )
    );
    let group = format!("{}ServiceReady", env.title());
    let mut items: Vec<(String, String)> = status
        .inventory
        .iter()
        .filter(|i| i.group.as_deref() == Some(group.as_str()))
        .inspect(|i| assert_eq!((i.account.as_str(), i.region.as_str()), (account, REGION)))
        .map(|i| (i.kind.clone(), i.id.clone()))
        .collect();
    items.sort();
    assert_eq!(
        items,
        vec![
            ("AWS::ECS::Cluster".to_string(), built.cluster_arn.clone()),
            ("AWS::ECS::Service".to_string(), built.service_arn.clone()),
            (
                "AWS::ECS::TaskDefinition".to_string(),
                format!(
                    "arn:aws:ecs:{REGION}:{account}:task-definition/{}:*",
                    want.task_definition.family
                )
            ),
        ]
    );
}

/// Asks for a reconcile and waits until the operator acted on it; returns the request sequence
/// number before it.
async fn resync(operator: &Operator, api: &Api<DeliveryPipeline>, name: &str) -> u64 {
    let since = operator.mark().await;
    reconcile_and_wait(api, name).await;
    since
}

/// Patches the spec and waits until the operator reconciled `generation`; returns the request
/// sequence number before the patch.
async fn change(
    operator: &Operator,
    api: &Api<DeliveryPipeline>,
    name: &str,
    spec: serde_json::Value,
    generation: i64,
) -> (u64, DeliveryPipeline) {
    let since = operator.mark().await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .expect("patch");
    let dp = eventually(
        &format!("{name} at generation {generation}"),
        WAIT,
        || async {
            let dp = api.get(name).await.ok()?;
            (dp.status.as_ref()?.observed_generation? == generation).then_some(dp)
        },
    )
    .await;
    (since, dp)
}

#[tokio::test]
async fn each_environment_gets_its_runtime_the_pipelines_image_is_kept_and_deletion_leaves_nothing()
{
    let (ns, operator, api) = start("e2e-ecs").await;
    let dp = example("minimal.yaml", &ns, "served");
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "served", 1).await;
    let mut ctx = ctx_of(&dp);
    let ecs = ecs_in(ACCOUNT).await;

    // Creation, per environment: the cluster, the first revision, the service; nothing read
    // but the absent cluster.
    assert_eq!(
        ecs_calls(&operator, "write", 0).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                ("ECS:CreateCluster", 2.0),
                ("ECS:RegisterTaskDefinition", 2.0),
                ("ECS:CreateService", 2.0),
            ])
        )])
    );
    assert_eq!(
        ecs_calls(&operator, "read", 0).await,
        // Both clusters looked for in one description.
        in_accounts(&[(ACCOUNT, counts(&[("ECS:DescribeClusters", 1.0)]))])
    );

    // Before the pipeline's first deployment: the placeholder image, no task, and the condition
    // says what it waits for.
    let staging = desired_runtime(&ctx, &ready, Env::Staging);
    let production = desired_runtime(&ctx, &ready, Env::Production);
    let repository = ready
        .status
        .as_ref()
        .and_then(|s| s.outputs.image_repository_uri.clone())
        .expect("repository");
    let placeholder = staging.placeholder_image.clone();
    assert_eq!(placeholder, format!("{repository}:latest"));
    let built_staging = assert_runtime(&ecs, ACCOUNT, &staging, &placeholder, 0).await;
    let built_production = assert_runtime(&ecs, ACCOUNT, &production, &placeholder, 0).await;
    assert_ne!(built_staging.cluster_arn, built_production.cluster_arn);
    assert_reported(&ready, Env::Staging, ACCOUNT, &staging, &built_staging);
    assert_reported(
        &ready,
        Env::Production,
        ACCOUNT,
        &production,
        &built_production,
    );
    for env in Env::ALL {
        let c = condition_of(&ready, env);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", AWAITING_FIRST_IMAGE)
        );
        let want = if env == Env::Staging {
            &staging
        } else {
            &production
        };
        assert_eq!(
            c.message,
            format!(
                "{} ECS cluster and service: service {} runs no task until the pipeline's first deployment to {} (its image is the placeholder {placeholder}); it is then scaled to {} task(s)",
                env.name(),
                want.service.name,
                env.name(),
                want.service.desired_count
            )
        );
    }
    assert_eq!(
        condition(&ready, "Synced").map(|c| c.status.as_str()),
        Some("True")
    );

    // A resync with nothing to do: no write at all, one observation of each runtime.
    let since = resync(&operator, &api, "served").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(
        ecs_calls(&operator, "read", since).await,
        in_accounts(&[(ACCOUNT, observe(2.0))])
    );

    // The pipeline deploys release abc123 to staging, as the ECS deploy action does. The
    // operator keeps it and scales the service to the spec's count: one UpdateService; and the
    // repository's lifecycle policy now keeps that image whatever is built after it.
    let release = format!("{repository}:{RELEASE}");
    let released = deploy_as_the_pipeline(&ecs, &staging, &release).await;
    let since = resync(&operator, &api, "served").await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[("ECS:UpdateService", 1.0), ("ECR:PutLifecyclePolicy", 1.0)])
    );
    assert_eq!(protected_tags(ACCOUNT, &repository).await, vec![RELEASE]);
    let built = assert_runtime(&ecs, ACCOUNT, &staging, &release, 1).await;
    assert_eq!(built.revision, released);
    let dp = api.get("served").await.expect("get");
    assert_eq!(condition_of(&dp, Env::Staging).status, "True");
    assert_eq!(
        condition_of(&dp, Env::Production).reason,
        AWAITING_FIRST_IMAGE,
        "production waits for its own deployment"
    );
    // And then nothing more to do.
    let since = resync(&operator, &api, "served").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());

    // desiredCount: exactly one UpdateService, the count only (same revision, same image).
    let (since, dp) = change(
        &operator,
        &api,
        "served",
        json!({"environments": {"staging": {"desiredCount": 3}}}),
        2,
    )
    .await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[("ECS:UpdateService", 1.0)])
    );
    ctx.spec = dp.spec.clone();
    let staging = desired_runtime(&ctx, &dp, Env::Staging);
    let built = assert_runtime(&ecs, ACCOUNT, &staging, &release, 3).await;
    assert_eq!(built.revision, released);

    // An environment variable: one new revision (keeping the release's image) and one
    // UpdateService pointing the service at it.
    let (since, dp) = change(
        &operator,
        &api,
        "served",
        json!({"environments": {"staging": {"environment": [{"name": "GREETING", "value": "hello"}]}}}),
        3,
    )
    .await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[
            ("ECS:RegisterTaskDefinition", 1.0),
            ("ECS:UpdateService", 1.0)
        ])
    );
    ctx.spec = dp.spec.clone();
    let staging = desired_runtime(&ctx, &dp, Env::Staging);
    assert_eq!(
        staging.task_definition.container.environment,
        BTreeMap::from([("GREETING".to_string(), "hello".to_string())])
    );
    let greeted = assert_runtime(&ecs, ACCOUNT, &staging, &release, 3).await;
    assert_ne!(greeted.revision, released);
    // Production was not touched: still the placeholder, no task.
    assert_runtime(&ecs, ACCOUNT, &production, &placeholder, 0).await;

    // The circuit breaker disabled by hand: one UpdateService turns it back on.
    ecs.update_service()
        .cluster(&staging.cluster.name)
        .service(&staging.service.name)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(
                    DeploymentCircuitBreaker::builder()
                        .enable(false)
                        .rollback(false)
                        .build(),
                )
                .minimum_healthy_percent(100)
                .maximum_percent(200)
                .build(),
        )
        .send()
        .await
        .expect("disable the circuit breaker by hand");
    let since = resync(&operator, &api, "served").await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[("ECS:UpdateService", 1.0)])
    );
    let built = assert_runtime(&ecs, ACCOUNT, &staging, &release, 3).await;
    assert_eq!(built.revision, greeted.revision);

    // A rollout in progress is reported, not an error; nothing is written.
    set_ecs_deployment(
        ACCOUNT,
        &staging.cluster.name,
        &staging.service.name,
        json!({"rolloutState": "IN_PROGRESS", "runningCount": 1}),
    )
    .await;
    let since = resync(&operator, &api, "served").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());
    let dp = api.get("served").await.expect("get");
    let c = condition_of(&dp, Env::Staging);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RolloutInProgress")
    );
    assert!(
        c.message.contains("1 of 3 task(s) running"),
        "{}",
        c.message
    );
    assert_eq!(
        condition(&dp, "Synced").map(|c| c.status.as_str()),
        Some("True")
    );

    // The circuit breaker trips and rolls back to the release without the variable: reported
    // with ECS's reason; the operator does not fight the rollback.
    set_ecs_deployment(
        ACCOUNT,
        &staging.cluster.name,
        &staging.service.name,
        json!({"rolloutState": "FAILED", "failedTasks": 2}),
    )
    .await;
    let since = resync(&operator, &api, "served").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());
    let dp = api.get("served").await.expect("get");
    let c = condition_of(&dp, Env::Staging);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RolloutFailed")
    );
    assert!(
        c.message.contains(&greeted.revision)
            && c.message.contains(
                "ECS deployment circuit breaker: tasks failed to start. (2 task(s) failed to start)"
            )
            && c.message.contains(&format!("rolling back to {released}")),
        "{}",
        c.message
    );
    assert_eq!(
        condition(&dp, "Synced").map(|c| c.status.as_str()),
        Some("True")
    );
    // Once the rollback completes, the spec's revision is deployed again (with the image the
    // service runs).
    set_ecs_deployment(
        ACCOUNT,
        &staging.cluster.name,
        &staging.service.name,
        json!({"rolloutState": "COMPLETED"}),
    )
    .await;
    let since = resync(&operator, &api, "served").await;
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[
            ("ECS:RegisterTaskDefinition", 1.0),
            ("ECS:UpdateService", 1.0)
        ])
    );
    let again = assert_runtime(&ecs, ACCOUNT, &staging, &release, 3).await;
    let dp = api.get("served").await.expect("get");
    assert_eq!(condition_of(&dp, Env::Staging).status, "True");

    // Deletion, dependents first: staging scaled to no task, both services deleted, every
    // revision deregistered and deleted, both clusters deleted; nothing is listed after.
    let since = emulator::last_seq(&operator.access_key).await;
    api.delete("served", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "served").await;
    assert_eq!(
        ecs_calls(&operator, "write", since).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                ("ECS:UpdateService", 1.0),
                ("ECS:DeleteService", 2.0),
                // Staging: the placeholder, the release, the variable, its redeployment;
                // production: the placeholder.
                ("ECS:DeregisterTaskDefinition", 5.0),
                ("ECS:DeleteTaskDefinitions", 2.0),
                ("ECS:DeleteCluster", 2.0),
            ])
        )])
    );
    assert_ne!(again.revision, greeted.revision);
    assert_eq!(leftovers(&ctx, ACCOUNT).await, Vec::<String>::new());
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn cross_account_runtimes_live_in_their_accounts_and_keep_the_deployed_image() {
    let (ns, operator, api) = start("e2e-ecs-xacct").await;
    let dp = example("cross-account.yaml", &ns, "spread-ecs");
    let mut ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "spread-ecs", 1).await;

    // Each runtime in its environment's account; nothing in the pipeline's.
    let staging = desired_runtime(&ctx, &ready, Env::Staging);
    let production = desired_runtime(&ctx, &ready, Env::Production);
    let placeholder = staging.placeholder_image.clone();
    let staging_ecs = ecs_in(STAGING_ACCOUNT).await;
    let production_ecs = ecs_in(PRODUCTION_ACCOUNT).await;
    let built_staging =
        assert_runtime(&staging_ecs, STAGING_ACCOUNT, &staging, &placeholder, 0).await;
    let built_production = assert_runtime(
        &production_ecs,
        PRODUCTION_ACCOUNT,
        &production,
        &placeholder,
        0,
    )
    .await;
    assert_reported(
        &ready,
        Env::Staging,
        STAGING_ACCOUNT,
        &staging,
        &built_staging,
    );
    assert_reported(
        &ready,
        Env::Production,
        PRODUCTION_ACCOUNT,
        &production,
        &built_production,
    );
    assert_eq!(leftovers(&ctx, ACCOUNT).await, Vec::<String>::new());
    assert!(
        production
            .task_definition
            .execution_role_arn
            .contains(PRODUCTION_ACCOUNT)
    );
    let create = counts(&[
        ("ECS:CreateCluster", 1.0),
        ("ECS:RegisterTaskDefinition", 1.0),
        ("ECS:CreateService", 1.0),
    ]);
    assert_eq!(
        ecs_calls(&operator, "write", 0).await,
        in_accounts(&[
            (STAGING_ACCOUNT, create.clone()),
            (PRODUCTION_ACCOUNT, create)
        ])
    );

    // A resync with nothing to do: one observation in each environment account.
    let since = resync(&operator, &api, "spread-ecs").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(
        ecs_calls(&operator, "read", since).await,
        in_accounts(&[
            (STAGING_ACCOUNT, observe(1.0)),
            (PRODUCTION_ACCOUNT, observe(1.0))
        ])
    );

    // The pipeline deploys abc123 to production (its deploy role acts in that account): the
    // operator scales it to the spec's three tasks, in that account only.
    let repository = ready
        .status
        .as_ref()
        .and_then(|s| s.outputs.image_repository_uri.clone())
        .expect("repository");
    let release = format!("{repository}:{RELEASE}");
    let released = deploy_as_the_pipeline(&production_ecs, &production, &release).await;
    let since = resync(&operator, &api, "spread-ecs").await;
    assert_eq!(
        ecs_calls(&operator, "write", since).await,
        in_accounts(&[(PRODUCTION_ACCOUNT, counts(&[("ECS:UpdateService", 1.0)]))])
    );
    assert_eq!(
        all_calls(&operator, "write", since).await,
        counts(&[("ECS:UpdateService", 1.0), ("ECR:PutLifecyclePolicy", 1.0)]),
        "the release in production, and the lifecycle policy keeping it"
    );
    assert_eq!(protected_tags(ACCOUNT, &repository).await, vec![RELEASE]);
    let built = assert_runtime(
        &production_ecs,
        PRODUCTION_ACCOUNT,
        &production,
        &release,
        3,
    )
    .await;
    assert_eq!(built.revision, released);
    let since = resync(&operator, &api, "spread-ecs").await;
    assert_eq!(all_calls(&operator, "write", since).await, BTreeMap::new());

    // A later spec change keeps the release: one revision and one UpdateService, in production's
    // account.
    let (since, dp) = change(
        &operator,
        &api,
        "spread-ecs",
        json!({"environments": {"production": {"environment": [{"name": "REGION_NAME", "value": "east"}]}}}),
        2,
    )
    .await;
    assert_eq!(
        ecs_calls(&operator, "write", since).await,
        in_accounts(&[(
            PRODUCTION_ACCOUNT,
            counts(&[
                ("ECS:RegisterTaskDefinition", 1.0),
                ("ECS:UpdateService", 1.0)
            ])
        )])
    );
    ctx.spec = dp.spec.clone();
    let production = desired_runtime(&ctx, &dp, Env::Production);
    let changed = assert_runtime(
        &production_ecs,
        PRODUCTION_ACCOUNT,
        &production,
        &release,
        3,
    )
    .await;
    assert_ne!(changed.revision, released);
    assert_runtime(&staging_ecs, STAGING_ACCOUNT, &staging, &placeholder, 0).await;

    // Deletion: nothing of the pipeline's runtimes is listed in any account.
    let since = emulator::last_seq(&operator.access_key).await;
    api.delete("spread-ecs", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "spread-ecs").await;
    assert_eq!(
        ecs_calls(&operator, "write", since).await,
        in_accounts(&[
            (
                STAGING_ACCOUNT,
                counts(&[
                    ("ECS:DeleteService", 1.0),
                    ("ECS:DeregisterTaskDefinition", 1.0),
                    ("ECS:DeleteTaskDefinitions", 1.0),
                    ("ECS:DeleteCluster", 1.0),
                ])
            ),
            (
                PRODUCTION_ACCOUNT,
                // The placeholder, the release, the variable's revision.
                counts(&[
                    ("ECS:UpdateService", 1.0),
                    ("ECS:DeleteService", 1.0),
                    ("ECS:DeregisterTaskDefinition", 3.0),
                    ("ECS:DeleteTaskDefinitions", 1.0),
                    ("ECS:DeleteCluster", 1.0),
                ])
            ),
        ])
    );
    for account in [ACCOUNT, STAGING_ACCOUNT, PRODUCTION_ACCOUNT] {
        assert_eq!(
            leftovers(&ctx, account).await,
            Vec::<String>::new(),
            "{account}"
        );
    }
    operator.assert_calls_match_record().await;
}
