//! The ECS runtime of one environment, in that environment's account: the cluster, the task
//! definition family and the service, as one group (`<Env>ServiceReady`). The cluster exists only
//! for the service, and the three are created and deleted in one order (cluster, revision,
//! service; service, revisions, cluster), so one condition tells their state.
//!
//! Everything is found by its deterministic name (`names.cluster(env)`, `names.service(env)`, the
//! family is the service's name): the names CodePipeline's ECS deploy action uses.

pub mod desired;
pub mod diff;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ClusterField,
    ClusterSetting, ClusterSettingName, Compatibility, ContainerDefinition,
    DeploymentCircuitBreaker, DeploymentConfiguration, HealthCheck as EcsHealthCheck, KeyValuePair,
    LaunchType, LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, PortMapping,
    PropagateTags, ServiceField, TaskDefinitionStatus, TransportProtocol,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use self::desired::{HealthCheck, Inputs, Runtime, Strategy};
use self::diff::{
    ACTIVE, Change, Observed, ObservedCluster, ObservedContainer, ObservedDeployment,
    ObservedDeploymentConfiguration, ObservedService, ObservedTaskDefinition, ServiceUpdate,
};
use super::kit::{TagPlan, check_owner, input, invalid, retag};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession, code};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Failure, Key, Removal, Values};

const CLUSTER_KIND: &str = "AWS::ECS::Cluster";
const SERVICE_KIND: &str = "AWS::ECS::Service";
const TASK_DEFINITION_KIND: &str = "AWS::ECS::TaskDefinition";
/// DeleteTaskDefinitions takes at most this many revisions.
const DELETE_BATCH: usize = 10;
/// How soon to look again at a service being deleted (its tasks stopping).
const DRAINING_RETRY: Duration = Duration::from_secs(15);

pub struct ServiceGroup {
    ctx: PipelineContext,
    env: Env,
}

impl ServiceGroup {
    pub fn new(ctx: &PipelineContext, env: Env) -> Self {
        Self {
            ctx: ctx.clone(),
            env,
        }
    }

    fn cluster_name(&self) -> String {
        self.ctx.names().cluster(self.env)
    }

    fn service_name(&self) -> String {
        self.ctx.names().service(self.env)
    }

    fn arn(&self, at: &Placement, resource: &str) -> String {
        format!(
            "arn:{}:ecs:{}:{}:{resource}",
            at.partition, at.region, at.account_id
        )
    }
}

/// A request the SDK's builder refused.
fn strategy_items(strategy: &[Strategy]) -> Result<Vec<CapacityProviderStrategyItem>, Failure> {
    strategy
        .iter()
        .map(|s| {
            CapacityProviderStrategyItem::builder()
                .capacity_provider(&s.capacity_provider)
                .weight(s.weight)
                .base(s.base)
                .build()
                .map_err(invalid("capacity provider strategy"))
        })
        .collect()
}

fn observed_strategy(items: &[CapacityProviderStrategyItem]) -> Vec<Strategy> {
    items
        .iter()
        .map(|i| Strategy {
            capacity_provider: i.capacity_provider().to_string(),
            weight: i.weight(),
            base: i.base(),
        })
        .collect()
}

fn observed_cluster(c: &aws_sdk_ecs::types::Cluster) -> ObservedCluster {
    ObservedCluster {
        arn: c.cluster_arn().unwrap_or_default().to_string(),
        settings: c
            .settings()
            .iter()
            .filter_map(|s| Some((s.name()?.as_str().to_string(), s.value()?.to_string())))
            .collect(),
        capacity_providers: c.capacity_providers().to_vec(),
        default_strategy: observed_strategy(c.default_capacity_provider_strategy()),
        tags: from_sdk(c.tags()),
    }
}

fn observed_service(s: &aws_sdk_ecs::types::Service) -> ObservedService {
    let vpc = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let configuration = s.deployment_configuration();
    let breaker = configuration.and_then(|c| c.deployment_circuit_breaker());
    ObservedService {
        arn: s.service_arn().unwrap_or_default().to_string(),
        task_definition: s.task_definition().unwrap_or_default().to_string(),
        desired_count: s.desired_count(),
        subnets: vpc
            .map(|v| v.subnets().iter().cloned().collect())
            .unwrap_or_default(),
        security_groups: vpc
            .map(|v| v.security_groups().iter().cloned().collect())
            .unwrap_or_default(),
        assign_public_ip: vpc
            .and_then(|v| v.assign_public_ip())
            .map(|a| a.as_str().to_string()),
        deployment: ObservedDeploymentConfiguration {
            circuit_breaker: breaker.map(|b| b.enable()),
            rollback: breaker.map(|b| b.rollback()),
            minimum_healthy_percent: configuration.and_then(|c| c.minimum_healthy_percent()),
            maximum_percent: configuration.and_then(|c| c.maximum_percent()),
        },
        health_check_grace_period_seconds: s.health_check_grace_period_seconds(),
        enable_ecs_managed_tags: s.enable_ecs_managed_tags(),
        propagate_tags: s.propagate_tags().map(|p| p.as_str().to_string()),
        tags: from_sdk(s.tags()),
        deployments: s
            .deployments()
            .iter()
            .map(|d| ObservedDeployment {
                id: d.id().unwrap_or_default().to_string(),
                status: d.status().unwrap_or_default().to_string(),
                task_definition: d.task_definition().unwrap_or_default().to_string(),
                rollout_state: d.rollout_state().map(|r| r.as_str().to_string()),
                rollout_state_reason: d.rollout_state_reason().map(str::to_string),
                desired_count: d.desired_count(),
                running_count: d.running_count(),
                failed_tasks: d.failed_tasks(),
            })
            .collect(),
    }
}

fn observed_container(c: &ContainerDefinition) -> ObservedContainer {
    let log = c.log_configuration();
    ObservedContainer {
        name: c.name().unwrap_or_default().to_string(),
        image: c.image().unwrap_or_default().to_string(),
        essential: c.essential(),
        port_mappings: c
            .port_mappings()
            .iter()
            .map(|p| {
                (
                    p.container_port(),
                    p.protocol().map(|x| x.as_str().to_string()),
                )
            })
            .collect(),
        environment: c
            .environment()
            .iter()
            .filter_map(|v| Some((v.name()?.to_string(), v.value()?.to_string())))
            .collect(),
        health_check: c.health_check().map(|h| HealthCheck {
            command: h.command().to_vec(),
            interval: h.interval().unwrap_or(30),
            timeout: h.timeout().unwrap_or(5),
            retries: h.retries().unwrap_or(3),
            start_period: h.start_period().unwrap_or(0),
        }),
        log_driver: log.map(|l| l.log_driver().as_str().to_string()),
        log_options: log
            .and_then(|l| l.options())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

/// What each task definition revision holds, by ARN. A revision never changes once registered
/// (AWS: a change is a new revision; deregistering one leaves its content), so a resync reads
/// the revision a service runs once per process instead of on every check: a deployment moves
/// the service to another ARN, which is read then. Bounded: when full it starts again empty.
mod revisions {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    use super::ObservedTaskDefinition;

    /// Two environments of 2,000 pipelines, with room for the revisions deployments make.
    const KEPT: usize = 8192;

    static REVISIONS: LazyLock<Mutex<HashMap<String, ObservedTaskDefinition>>> =
        LazyLock::new(Mutex::default);

    pub fn remembered(arn: &str) -> Option<ObservedTaskDefinition> {
        REVISIONS.lock().ok()?.get(arn).cloned()
    }

    pub fn remember(t: &ObservedTaskDefinition) {
        if t.arn.is_empty() {
            return;
        }
        if let Ok(mut revisions) = REVISIONS.lock() {
            if revisions.len() >= KEPT {
                revisions.clear();
            }
            revisions.insert(t.arn.clone(), t.clone());
        }
    }
}

fn observed_task_definition(t: &aws_sdk_ecs::types::TaskDefinition) -> ObservedTaskDefinition {
    ObservedTaskDefinition {
        arn: t.task_definition_arn().unwrap_or_default().to_string(),
        cpu: t.cpu().map(str::to_string),
        memory: t.memory().map(str::to_string),
        network_mode: t.network_mode().map(|n| n.as_str().to_string()),
        requires_compatibilities: t
            .requires_compatibilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        execution_role_arn: t.execution_role_arn().map(str::to_string),
        task_role_arn: t.task_role_arn().map(str::to_string),
        containers: t
            .container_definitions()
            .iter()
            .map(observed_container)
            .collect(),
    }
}

fn deployment_configuration(d: &desired::Deployment) -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(d.circuit_breaker)
                .rollback(d.rollback)
                .build(),
        )
        .minimum_healthy_percent(d.minimum_healthy_percent)
        .maximum_percent(d.maximum_percent)
        .build()
}

fn network_configuration(s: &desired::Service) -> Result<NetworkConfiguration, Failure> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(s.subnets.iter().cloned().collect()))
        .set_security_groups(Some(s.security_groups.iter().cloned().collect()))
        .assign_public_ip(AssignPublicIp::from(s.assign_public_ip.as_str()))
        .build()
        .map_err(invalid("awsvpc configuration"))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn container_definition(
    c: &desired::Container,
    image: &str,
) -> Result<ContainerDefinition, Failure> {
    let health_check = c
        .health_check
        .as_ref()
        .map(|h| {
            EcsHealthCheck::builder()
                .set_command(Some(h.command.clone()))
                .interval(h.interval)
                .timeout(h.timeout)
                .retries(h.retries)
                .start_period(h.start_period)
                .build()
                .map_err(invalid("health check"))
        })
        .transpose()?;
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::from(c.log_driver.as_str()))
        .set_options(Some(
            c.log_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ))
        .build()
        .map_err(invalid("log configuration"))?;
    Ok(ContainerDefinition::builder()
        .name(&c.name)
        .image(image)
        .essential(c.essential)
        .port_mappings(
            PortMapping::builder()
                .container_port(c.port)
                .protocol(TransportProtocol::from(c.protocol.as_str()))
                .build(),
        )
        .set_environment(Some(
            c.environment
                .iter()
                .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                .collect(),
        ))
        .set_health_check(health_check)
        .log_configuration(log)
        .build())
}

/// ECS creates its service-linked role with an account's first cluster; a service created right
/// after may be refused until IAM shows the role: in progress, not an error.
fn service_call<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &str,
) -> Result<T, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Err(e)
            if code(&e) == Some("InvalidParameterException")
                && e.message()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("service linked role")) =>
        {
            Err(Failure::in_progress(
                "WaitingForServiceLinkedRole",
                format!(
                    "{operation}: ECS does not see its service-linked role yet ({}); it is created with the account's first cluster",
                    e.message().unwrap_or_default()
                ),
                Duration::from_secs(10),
            ))
        }
        other => other.aws(operation),
    }
}

/// The Container Insights setting of the cluster.
fn insights(c: &desired::Cluster) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(&c.container_insights)
        .build()
}

/// Writes `plan` to the resource `arn` and records on `tags` the set it leaves.
async fn retag_recording(
    aws: &AwsSession,
    arn: &str,
    tags: &mut BTreeMap<String, String>,
    plan: TagPlan,
) -> Result<(), Failure> {
    let left = plan.whole_set(tags);
    retag(&aws.ecs(), arn, plan).await?;
    *tags = left;
    Ok(())
}

/// Every revision of the family with `status`.
async fn revisions(
    aws: &AwsSession,
    family: &str,
    status: TaskDefinitionStatus,
) -> Result<Vec<String>, Failure> {
    aws.ecs()
        .list_task_definitions()
        .family_prefix(family)
        .status(status)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("ecs:ListTaskDefinitions")
}

impl ServiceGroup {
    /// One UpdateService with every field that changed.
    async fn update_service(
        &self,
        aws: &AwsSession,
        d: &Runtime,
        state: &Observed,
        u: &ServiceUpdate,
    ) -> Result<Option<aws_sdk_ecs::types::Service>, Failure> {
        let s = &d.service;
        let mut call = aws
            .ecs()
            .update_service()
            .cluster(&s.cluster)
            .service(&s.name)
            .set_desired_count(u.desired_count);
        if u.task_definition {
            let revision = state
                .task_definition
                .as_ref()
                .map(|t| t.arn.clone())
                .ok_or_else(|| {
                    Failure::terminal(
                        "MissingRevision",
                        "the new task definition revision is not known",
                    )
                })?;
            call = call.task_definition(revision);
        }
        if u.deployment_configuration {
            call = call.deployment_configuration(deployment_configuration(&s.deployment));
        }
        if u.health_check_grace_period {
            call = call.health_check_grace_period_seconds(s.health_check_grace_period_seconds);
        }
        if u.network {
            call = call.network_configuration(network_configuration(s)?);
        }
        if u.propagate_tags {
            call = call.propagate_tags(PropagateTags::from(s.propagate_tags.as_str()));
        }
        if u.managed_tags {
            call = call.enable_ecs_managed_tags(s.enable_ecs_managed_tags);
        }
        let out = service_call(call.send().await, "ecs:UpdateService")?;
        Ok(out.service().cloned())
    }

    /// Deregisters the family's active revisions, then deletes every revision.
    async fn delete_revisions(&self, aws: &AwsSession) -> Result<(), Failure> {
        let ecs = aws.ecs();
        let family = self.service_name();
        let active = revisions(aws, &family, TaskDefinitionStatus::Active).await?;
        let mut all = revisions(aws, &family, TaskDefinitionStatus::Inactive).await?;
        for arn in &active {
            ecs.deregister_task_definition()
                .task_definition(arn)
                .send()
                .await
                .aws("ecs:DeregisterTaskDefinition")?;
        }
        all.extend(active);
        for batch in all.chunks(DELETE_BATCH) {
            let out = ecs
                .delete_task_definitions()
                .set_task_definitions(Some(batch.to_vec()))
                .send()
                .await
                .aws("ecs:DeleteTaskDefinitions")?;
            // A revision deleted meanwhile is what was wanted.
            if let Some(f) = out
                .failures()
                .iter()
                .find(|f| !f.reason().is_some_and(|r| r.contains("does not exist")))
            {
                return Err(Failure::retryable(
                    "TaskDefinitionNotDeleted",
                    format!(
                        "ecs:DeleteTaskDefinitions refused {}: {}",
                        f.arn().unwrap_or_default(),
                        f.reason().unwrap_or("no reason given")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Group for ServiceGroup {
    type Desired = Runtime;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("ServiceReady", "ECS cluster and service")
    }

    fn environment(&self) -> Option<Env> {
        Some(self.env)
    }

    fn needs(&self) -> Vec<Key> {
        let scope = self.env.name();
        vec![
            keys::REPOSITORY_URI,
            keys::EXECUTION_ROLE_ARN.scoped(scope),
            keys::TASK_ROLE_ARN.scoped(scope),
            keys::APPLICATION_LOG_GROUP.scoped(scope),
            // The network is deleted only after the service that uses it.
            keys::SUBNET_IDS.scoped(scope),
            keys::SECURITY_GROUP_IDS.scoped(scope),
            keys::ASSIGN_PUBLIC_IP.scoped(scope),
        ]
    }

    fn provides(&self) -> Vec<Key> {
        let scope = self.env.name();
        vec![
            keys::CLUSTER_NAME.scoped(scope),
            keys::CLUSTER_ARN.scoped(scope),
            keys::SERVICE_NAME.scoped(scope),
            keys::SERVICE_ARN.scoped(scope),
            keys::RUNNING_IMAGE.scoped(scope),
        ]
    }

    fn predicted(&self, at: &Placement) -> Values {
        let scope = self.env.name();
        let (cluster, service) = (self.cluster_name(), self.service_name());
        Values::from([
            (
                keys::CLUSTER_ARN.scoped(scope),
                self.arn(at, &format!("cluster/{cluster}")),
            ),
            (
                keys::SERVICE_ARN.scoped(scope),
                self.arn(at, &format!("service/{cluster}/{service}")),
            ),
            (keys::CLUSTER_NAME.scoped(scope), cluster),
            (keys::SERVICE_NAME.scoped(scope), service),
        ])
    }

    fn desired(&self, at: &Placement, inputs: &Values) -> Result<Runtime, Failure> {
        let scope = self.env.name();
        let get = |key: Key| input(inputs, key);
        Ok(desired::runtime(
            &self.ctx,
            self.env,
            &Inputs {
                repository_uri: get(keys::REPOSITORY_URI)?,
                execution_role_arn: get(keys::EXECUTION_ROLE_ARN.scoped(scope))?,
                task_role_arn: get(keys::TASK_ROLE_ARN.scoped(scope))?,
                log_group: get(keys::APPLICATION_LOG_GROUP.scoped(scope))?,
                region: &at.region,
                subnet_ids: get(keys::SUBNET_IDS.scoped(scope))?,
                security_group_ids: get(keys::SECURITY_GROUP_IDS.scoped(scope))?,
                assign_public_ip: get(keys::ASSIGN_PUBLIC_IP.scoped(scope))?,
            },
        ))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
        let ecs = aws.ecs();
        let (cluster_name, service_name) = (self.cluster_name(), self.service_name());
        // One DescribeClusters per reconcile for the clusters of every environment in this
        // account (it takes up to 100 names); each instance picks its own.
        let account = self.ctx.environment_account(self.env);
        let neighbours: Vec<String> = Env::ALL
            .into_iter()
            .filter(|env| self.ctx.environment_account(*env) == account)
            .map(|env| self.ctx.names().cluster(env))
            .collect();
        let clusters = aws
            .once_per_reconcile(
                &format!("ecs:DescribeClusters {}", neighbours.join(" ")),
                || async {
                    ecs.describe_clusters()
                        .set_clusters(Some(neighbours.clone()))
                        .include(ClusterField::Settings)
                        .include(ClusterField::Tags)
                        .send()
                        .await
                        .aws("ecs:DescribeClusters")
                },
            )
            .await?;
        // A deleted cluster stays visible as INACTIVE for a while.
        let Some(cluster) = clusters
            .clusters()
            .iter()
            .find(|c| c.cluster_name() == Some(cluster_name.as_str()) && c.status() == Some(ACTIVE))
            .map(observed_cluster)
        else {
            return Ok(None);
        };
        check_owner(
            &self.ctx,
            &format!("ECS cluster {cluster_name}"),
            &cluster.tags,
        )?;
        let services = ecs
            .describe_services()
            .cluster(&cluster_name)
            .services(&service_name)
            .include(ServiceField::Tags)
            .send()
            .await
            .aws("ecs:DescribeServices")?;
        let service = services
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"));
        if let Some(s) = service.filter(|s| s.status() != Some(ACTIVE)) {
            return Err(Failure::in_progress(
                "ServiceDraining",
                format!(
                    "service {service_name} is being deleted ({}): its tasks are stopping",
                    s.status().unwrap_or("not active")
                ),
                DRAINING_RETRY,
            ));
        }
        let service = service.map(observed_service);
        if let Some(s) = &service {
            check_owner(&self.ctx, &format!("ECS service {service_name}"), &s.tags)?;
        }
        let (revision, missing): (&str, &[&str]) = match &service {
            // The revision the service runs must be readable: its image is what a new one keeps.
            Some(s) => (&s.task_definition, &[]),
            // No service: the family's latest active revision, if any, is reused.
            None => (&service_name, &["ClientException"]),
        };
        let known = service
            .as_ref()
            .and_then(|s| revisions::remembered(&s.task_definition));
        let task_definition = match known {
            Some(known) => Some(known),
            None => {
                let read = ecs
                    .describe_task_definition()
                    .task_definition(revision)
                    .send()
                    .await
                    .aws_tolerating("ecs:DescribeTaskDefinition", missing)?
                    .and_then(|out| out.task_definition().map(observed_task_definition));
                if let Some(t) = &read {
                    revisions::remember(t);
                }
                read
            }
        };
        Ok(Some(Observed {
            cluster: Some(cluster),
            service,
            task_definition,
        }))
    }

    /// Applies `changes` in order (cluster, revision, service) and returns the state they leave,
    /// from AWS's answers (no further reads).
    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let ecs = aws.ecs();
        let mut state = o.clone();
        for change in changes {
            match change {
                Change::CreateCluster => {
                    let c = &d.cluster;
                    let out = ecs
                        .create_cluster()
                        .cluster_name(&c.name)
                        .settings(insights(c))
                        .set_capacity_providers(Some(c.capacity_providers.clone()))
                        .set_default_capacity_provider_strategy(Some(strategy_items(
                            &c.default_strategy,
                        )?))
                        .set_tags(Some(to_sdk(&c.tags.tags)?))
                        .send()
                        .await
                        .aws("ecs:CreateCluster")?;
                    state.cluster = out.cluster().map(|x| ObservedCluster {
                        tags: c.tags.tags.clone(),
                        ..observed_cluster(x)
                    });
                }
                Change::ClusterSettings => {
                    ecs.update_cluster()
                        .cluster(&d.cluster.name)
                        .settings(insights(&d.cluster))
                        .send()
                        .await
                        .aws("ecs:UpdateCluster")?;
                    if let Some(c) = state.cluster.as_mut() {
                        c.settings.insert(
                            desired::CONTAINER_INSIGHTS.into(),
                            d.cluster.container_insights.clone(),
                        );
                    }
                }
                Change::CapacityProviders => {
                    ecs.put_cluster_capacity_providers()
                        .cluster(&d.cluster.name)
                        .set_capacity_providers(Some(d.cluster.capacity_providers.clone()))
                        .set_default_capacity_provider_strategy(Some(strategy_items(
                            &d.cluster.default_strategy,
                        )?))
                        .send()
                        .await
                        .aws("ecs:PutClusterCapacityProviders")?;
                    if let Some(c) = state.cluster.as_mut() {
                        c.capacity_providers = d.cluster.capacity_providers.clone();
                        c.default_strategy = d.cluster.default_strategy.clone();
                    }
                }
                // The diff finds tag writes only on a cluster and a service that exist.
                Change::ClusterTags(plan) => {
                    if let Some(c) = state.cluster.as_mut() {
                        retag_recording(aws, &c.arn, &mut c.tags, plan).await?;
                    }
                }
                Change::RegisterTaskDefinition { image } => {
                    let t = &d.task_definition;
                    let out = ecs
                        .register_task_definition()
                        .family(&t.family)
                        .requires_compatibilities(Compatibility::from(desired::FARGATE))
                        .network_mode(NetworkMode::from(t.network_mode.as_str()))
                        .cpu(&t.cpu)
                        .memory(&t.memory)
                        .execution_role_arn(&t.execution_role_arn)
                        .task_role_arn(&t.task_role_arn)
                        .container_definitions(container_definition(&t.container, &image)?)
                        .set_tags(Some(to_sdk(&t.tags)?))
                        .send()
                        .await
                        .aws("ecs:RegisterTaskDefinition")?;
                    let registered = out.task_definition().ok_or_else(|| {
                        Failure::retryable(
                            "IncompleteAnswer",
                            "ecs:RegisterTaskDefinition answered without the revision",
                        )
                    })?;
                    let registered = observed_task_definition(registered);
                    revisions::remember(&registered);
                    state.task_definition = Some(registered);
                }
                Change::CreateService { desired_count } => {
                    let s = &d.service;
                    let revision = state
                        .task_definition
                        .as_ref()
                        .map(|t| t.arn.clone())
                        .unwrap_or_else(|| d.task_definition.family.clone());
                    let out = service_call(
                        ecs.create_service()
                            .client_token(create_token(&s.cluster, &s.name, &revision))
                            .cluster(&s.cluster)
                            .service_name(&s.name)
                            .task_definition(&revision)
                            .desired_count(desired_count)
                            .launch_type(LaunchType::from(s.launch_type.as_str()))
                            .network_configuration(network_configuration(s)?)
                            .deployment_configuration(deployment_configuration(&s.deployment))
                            .health_check_grace_period_seconds(s.health_check_grace_period_seconds)
                            .enable_ecs_managed_tags(s.enable_ecs_managed_tags)
                            .propagate_tags(PropagateTags::from(s.propagate_tags.as_str()))
                            .set_tags(Some(to_sdk(&s.tags.tags)?))
                            .send()
                            .await,
                        "ecs:CreateService",
                    )?;
                    state.service = out.service().map(|x| ObservedService {
                        tags: s.tags.tags.clone(),
                        ..observed_service(x)
                    });
                }
                Change::UpdateService(u) => {
                    let out = self.update_service(aws, d, &state, &u).await?;
                    if let Some(x) = out {
                        let tags = state.service.take().map(|s| s.tags).unwrap_or_default();
                        state.service = Some(ObservedService {
                            tags,
                            ..observed_service(&x)
                        });
                    }
                }
                Change::ServiceTags(plan) => {
                    if let Some(s) = state.service.as_mut() {
                        retag_recording(aws, &s.arn, &mut s.tags, plan).await?;
                    }
                }
            }
        }
        Ok(Some(state))
    }

    /// Dependents first: the service (scaled to no task, then deleted with force; waited for
    /// while it drains), every revision of the family, then the cluster.
    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        let ecs = aws.ecs();
        let (cluster, name) = (self.cluster_name(), self.service_name());
        const GONE: &[&str] = &["ServiceNotFoundException", "ServiceNotActiveException"];
        if let Some(s) = &o.service {
            if s.desired_count > 0 {
                ecs.update_service()
                    .cluster(&cluster)
                    .service(&name)
                    .desired_count(0)
                    .send()
                    .await
                    .aws_tolerating("ecs:UpdateService", GONE)?;
            }
            let deleted = ecs
                .delete_service()
                .cluster(&cluster)
                .service(&name)
                .force(true)
                .send()
                .await
                .aws_tolerating("ecs:DeleteService", GONE)?;
            let status = deleted
                .as_ref()
                .and_then(|out| out.service())
                .and_then(|s| s.status())
                .unwrap_or("INACTIVE");
            if status != "INACTIVE" {
                return Ok(Removal::Pending(format!(
                    "service {name} is {status}: its tasks are stopping"
                )));
            }
        }
        self.delete_revisions(aws).await?;
        let deleted = ecs.delete_cluster().cluster(&cluster).send().await;
        if let Err(e) = &deleted
            && let Some("ClusterContainsServicesException" | "ClusterContainsTasksException") =
                code(e)
        {
            return Ok(Removal::Pending(format!(
                "cluster {cluster} still has services or tasks ({})",
                e.message().unwrap_or_default()
            )));
        }
        deleted.aws_tolerating("ecs:DeleteCluster", &["ClusterNotFoundException"])?;
        Ok(Removal::Gone)
    }

    fn produced(&self, at: &Placement, d: &Runtime, o: &Observed) -> Produced {
        let scope = self.env.name();
        let predicted = self.predicted(at);
        // The ARN AWS answered with, else the predicted one.
        let arn_of = |answered: Option<&String>, key: Key| {
            answered
                .filter(|a| !a.is_empty())
                .or_else(|| predicted.get(&key.scoped(scope)))
                .cloned()
                .unwrap_or_default()
        };
        let cluster_arn = arn_of(o.cluster.as_ref().map(|c| &c.arn), keys::CLUSTER_ARN);
        let service_arn = arn_of(o.service.as_ref().map(|s| &s.arn), keys::SERVICE_ARN);
        let family = self.arn(
            at,
            &format!("task-definition/{}:*", d.task_definition.family),
        );
        let running = diff::kept_image(d, o);
        let running = if running == d.placeholder_image {
            String::new()
        } else {
            running
        };
        let mut produced = Produced::default()
            .value(keys::RUNNING_IMAGE.scoped(scope), &running)
            .value(keys::CLUSTER_NAME.scoped(scope), &d.cluster.name)
            .value(keys::CLUSTER_ARN.scoped(scope), &cluster_arn)
            .value(keys::SERVICE_NAME.scoped(scope), &d.service.name)
            .value(keys::SERVICE_ARN.scoped(scope), &service_arn)
            .owns(CLUSTER_KIND, cluster_arn, at)
            .owns(TASK_DEFINITION_KIND, family, at)
            .owns(SERVICE_KIND, service_arn, at);
        produced.progress = diff::progress(d, o);
        produced.note = diff::awaiting_first_image(scope, d, o);
        produced
    }
}

/// CreateService's idempotency token: the same for every retry of one creation (an SDK retry
/// after a reply lost, or the next reconcile after a crash), so ECS answers the service it
/// already made instead of "Creation of service was not idempotent"; another for a later
/// creation of the same name, which starts from another task definition revision. At most 36
/// ASCII characters (ECS API Reference, CreateService, clientToken).
fn create_token(cluster: &str, service: &str, revision: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{cluster}/{service}/{revision}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
