//! Desired ECS runtime of one environment, in that environment's account: a Fargate cluster
//! (Container Insights on, FARGATE as its capacity provider and default strategy), the
//! application's task definition family (one container: port, environment, health check, logs
//! to the environment's application log group) and the service running it in the environment's
//! network with the deployment circuit breaker.
//!
//! The image is not part of the desired state once the pipeline has deployed: CodePipeline's ECS
//! deploy action registers revisions with new images and points the service at them, so a new
//! revision the operator registers keeps the image the service runs. Until the first deployment
//! the image is a placeholder (`<repository>:latest`) and the service runs no task.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::api::HealthCheck as HealthCheckSpec;
use crate::desired::tags::ENVIRONMENT_KEY;
use crate::desired::{Env, PipelineContext};
use crate::groups::kit::DesiredTags;

pub const FARGATE: &str = "FARGATE";
pub const AWSVPC: &str = "awsvpc";
pub const CONTAINER_INSIGHTS: &str = "containerInsights";
pub const ENABLED: &str = "enabled";
pub const AWSLOGS: &str = "awslogs";
pub const TCP: &str = "tcp";
/// Tags of the service propagate to its tasks.
pub const PROPAGATE_FROM_SERVICE: &str = "SERVICE";
/// The tag the placeholder image carries before the pipeline's first deployment.
pub const PLACEHOLDER_TAG: &str = "latest";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    pub cluster: Cluster,
    pub task_definition: TaskDefinition,
    pub service: Service,
    /// The image of a revision registered before the pipeline deployed one. A service whose
    /// revision still has it has not been deployed to: it runs no task.
    pub placeholder_image: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub name: String,
    /// The `containerInsights` cluster setting.
    pub container_insights: String,
    pub capacity_providers: Vec<String>,
    pub default_strategy: Vec<Strategy>,
    pub tags: DesiredTags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    pub capacity_provider: String,
    pub weight: i32,
    pub base: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub family: String,
    /// Task CPU units and memory (MiB), as ECS returns them: strings.
    pub cpu: String,
    pub memory: String,
    pub network_mode: String,
    pub requires_compatibilities: Vec<String>,
    pub execution_role_arn: String,
    pub task_role_arn: String,
    pub container: Container,
    /// Set when the operator registers a revision; revisions are immutable, so not compared.
    pub tags: BTreeMap<String, String>,
}

/// The one container, as far as the spec controls it. The image is not here (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub essential: bool,
    pub environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    pub log_driver: String,
    pub log_options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval: i32,
    pub timeout: i32,
    pub retries: i32,
    pub start_period: i32,
}

impl From<&HealthCheckSpec> for HealthCheck {
    fn from(h: &HealthCheckSpec) -> Self {
        Self {
            command: h.command.clone(),
            interval: h.interval_seconds,
            timeout: h.timeout_seconds,
            retries: h.retries,
            start_period: h.start_period_seconds,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub cluster: String,
    /// The spec's task count: what runs once the pipeline has deployed (0 before).
    pub desired_count: i32,
    pub launch_type: String,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    /// `ENABLED` or `DISABLED`.
    pub assign_public_ip: String,
    pub deployment: Deployment,
    /// AWS applies it to container health checks too (and accepts it without a load balancer);
    /// without any health check it is unused.
    pub health_check_grace_period_seconds: i32,
    pub enable_ecs_managed_tags: bool,
    pub propagate_tags: String,
    pub tags: DesiredTags,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub circuit_breaker: bool,
    pub rollback: bool,
    pub minimum_healthy_percent: i32,
    pub maximum_percent: i32,
}

/// Upstream values the runtime is built from.
pub struct Inputs<'a> {
    /// The pipeline's image repository (in the pipeline account).
    pub repository_uri: &'a str,
    pub execution_role_arn: &'a str,
    pub task_role_arn: &'a str,
    pub log_group: &'a str,
    /// The environment's region (the log driver writes there).
    pub region: &'a str,
    /// Comma-separated, as the network group outputs them.
    pub subnet_ids: &'a str,
    pub security_group_ids: &'a str,
    pub assign_public_ip: &'a str,
}

fn ids(joined: &str) -> BTreeSet<String> {
    joined
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The image a revision gets before the pipeline's first deployment.
pub fn placeholder_image(repository_uri: &str) -> String {
    format!("{repository_uri}:{PLACEHOLDER_TAG}")
}

pub fn runtime(ctx: &PipelineContext, env: Env, inputs: &Inputs) -> Runtime {
    let names = ctx.names();
    let spec = env.spec(&ctx.spec);
    let tags = DesiredTags::of(ctx).with(ENVIRONMENT_KEY, env.name());
    let cluster_name = names.cluster(env);
    let container = &ctx.spec.container;
    Runtime {
        cluster: Cluster {
            name: cluster_name.clone(),
            container_insights: ENABLED.into(),
            capacity_providers: vec![FARGATE.into()],
            default_strategy: vec![Strategy {
                capacity_provider: FARGATE.into(),
                weight: 1,
                base: 0,
            }],
            tags: tags.clone(),
        },
        task_definition: TaskDefinition {
            family: names.service(env),
            cpu: spec.cpu.to_string(),
            memory: spec.memory.to_string(),
            network_mode: AWSVPC.into(),
            requires_compatibilities: vec![FARGATE.into()],
            execution_role_arn: inputs.execution_role_arn.into(),
            task_role_arn: inputs.task_role_arn.into(),
            container: Container {
                name: container.name.clone(),
                port: container.port,
                protocol: TCP.into(),
                essential: true,
                environment: spec
                    .environment
                    .iter()
                    .map(|v| (v.name.clone(), v.value.clone()))
                    .collect(),
                health_check: container.health_check.as_ref().map(HealthCheck::from),
                log_driver: AWSLOGS.into(),
                log_options: BTreeMap::from([
                    ("awslogs-group".to_string(), inputs.log_group.to_string()),
                    ("awslogs-region".to_string(), inputs.region.to_string()),
                    ("awslogs-stream-prefix".to_string(), env.name().to_string()),
                ]),
            },
            tags: tags.tags.clone(),
        },
        service: Service {
            name: names.service(env),
            cluster: cluster_name,
            desired_count: spec.desired_count,
            launch_type: FARGATE.into(),
            subnets: ids(inputs.subnet_ids),
            security_groups: ids(inputs.security_group_ids),
            assign_public_ip: inputs.assign_public_ip.into(),
            deployment: Deployment {
                circuit_breaker: true,
                rollback: spec.circuit_breaker_rollback,
                minimum_healthy_percent: 100,
                maximum_percent: 200,
            },
            health_check_grace_period_seconds: spec.health_check_grace_period_seconds,
            enable_ecs_managed_tags: true,
            propagate_tags: PROPAGATE_FROM_SERVICE.into(),
            tags,
        },
        placeholder_image: placeholder_image(inputs.repository_uri),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::desired::testing::{FULL, MINIMAL, context};

    pub const REPOSITORY: &str =
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/delivery-operator/payments-checkout";

    pub fn inputs() -> Inputs<'static> {
        Inputs {
            repository_uri: REPOSITORY,
            execution_role_arn: "arn:aws:iam::222222222222:role/exec",
            task_role_arn: "arn:aws:iam::222222222222:role/task",
            log_group: "/delivery-operator/x/staging/app",
            region: "us-east-1",
            subnet_ids: "subnet-b,subnet-a",
            security_group_ids: "sg-1",
            assign_public_ip: "ENABLED",
        }
    }

    #[test]
    fn the_task_definition_carries_every_field_the_spec_controls() {
        let c = context(FULL);
        let r = runtime(&c, Env::Staging, &inputs());
        let t = &r.task_definition;
        assert_eq!(t.family, c.names().service(Env::Staging));
        assert_eq!((t.cpu.as_str(), t.memory.as_str()), ("256", "512"));
        assert_eq!(t.network_mode, "awsvpc");
        assert_eq!(t.requires_compatibilities, vec!["FARGATE"]);
        assert_eq!(t.execution_role_arn, "arn:aws:iam::222222222222:role/exec");
        assert_eq!(t.task_role_arn, "arn:aws:iam::222222222222:role/task");
        let container = &t.container;
        assert_eq!(container.name, "app");
        assert_eq!((container.port, container.protocol.as_str()), (8080, "tcp"));
        assert!(container.essential);
        assert_eq!(
            container.environment,
            BTreeMap::from([("LOG_LEVEL".to_string(), "debug".to_string())])
        );
        let health = container.health_check.as_ref().map(|h| h.command.clone());
        assert_eq!(
            health,
            Some(vec![
                "CMD-SHELL".to_string(),
                "curl -fs http://localhost:8080/health || exit 1".to_string()
            ])
        );
        assert_eq!(container.log_driver, "awslogs");
        assert_eq!(
            container.log_options["awslogs-group"],
            "/delivery-operator/x/staging/app"
        );
        assert_eq!(container.log_options["awslogs-region"], "us-east-1");
        assert_eq!(container.log_options["awslogs-stream-prefix"], "staging");
        assert_eq!(r.placeholder_image, format!("{REPOSITORY}:latest"));
        // Production: its own size, no health check override, no variables.
        let p = runtime(&c, Env::Production, &inputs());
        assert_eq!(
            (
                p.task_definition.cpu.as_str(),
                p.task_definition.memory.as_str()
            ),
            ("1024", "2048")
        );
        assert!(p.task_definition.container.environment.is_empty());
        assert_eq!(
            p.task_definition.container.log_options["awslogs-stream-prefix"],
            "production"
        );
    }

    #[test]
    fn the_cluster_and_service_use_the_names_the_deploy_action_uses() {
        let c = context(MINIMAL);
        for env in Env::ALL {
            let r = runtime(&c, env, &inputs());
            assert_eq!(r.cluster.name, c.names().cluster(env));
            assert_eq!(r.service.name, c.names().service(env));
            assert_eq!(r.service.cluster, r.cluster.name);
            assert_eq!(r.cluster.container_insights, "enabled");
            assert_eq!(r.cluster.capacity_providers, vec!["FARGATE"]);
            assert_eq!(r.cluster.default_strategy[0].capacity_provider, "FARGATE");
            assert_eq!(
                r.cluster.tags.tags.get(ENVIRONMENT_KEY).map(String::as_str),
                Some(env.name())
            );
        }
        assert_ne!(
            c.names().cluster(Env::Staging),
            c.names().cluster(Env::Production)
        );
    }

    #[test]
    fn the_service_has_the_network_the_breaker_and_the_spec_count() {
        let c = context(MINIMAL);
        let s = runtime(&c, Env::Production, &inputs()).service;
        assert_eq!(s.desired_count, 2);
        assert_eq!(s.launch_type, "FARGATE");
        assert_eq!(
            s.subnets,
            BTreeSet::from(["subnet-a".to_string(), "subnet-b".to_string()])
        );
        assert_eq!(s.security_groups, BTreeSet::from(["sg-1".to_string()]));
        assert_eq!(s.assign_public_ip, "ENABLED");
        assert_eq!(
            s.deployment,
            Deployment {
                circuit_breaker: true,
                rollback: true,
                minimum_healthy_percent: 100,
                maximum_percent: 200
            }
        );
        assert_eq!(s.health_check_grace_period_seconds, 60);
        assert!(s.enable_ecs_managed_tags);
        assert_eq!(s.propagate_tags, "SERVICE");
        let mut no_rollback = c.clone();
        no_rollback
            .spec
            .environments
            .production
            .circuit_breaker_rollback = false;
        let s = runtime(&no_rollback, Env::Production, &inputs()).service;
        assert!(s.deployment.circuit_breaker && !s.deployment.rollback);
    }
}
