//! How an environment's ECS runtime differs from the desired one, and how far its rollout is.
//! Pure.
//!
//! Only the fields the operator sets are compared: ECS fills in defaults (container `cpu` 0,
//! `hostPort`, mount points, deployment alarms, ...) that must not count. The image is never
//! compared: a new revision keeps the one the service runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::desired::{
    AWSVPC, CONTAINER_INSIGHTS, Cluster, Container, Deployment, HealthCheck, Runtime, Service,
    Strategy, TCP, TaskDefinition,
};
use crate::engine::{Drift, Note, Progress};
use crate::groups::kit::{TagPlan, tag_change};
use crate::groups::{Changes, Diff};

pub const ACTIVE: &str = "ACTIVE";
pub const PRIMARY: &str = "PRIMARY";
pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const FAILED: &str = "FAILED";

pub const ROLLOUT_RETRY: Duration = Duration::from_secs(30);
pub const FAILED_ROLLOUT_RETRY: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The cluster, when ACTIVE.
    pub cluster: Option<ObservedCluster>,
    /// The service, when ACTIVE.
    pub service: Option<ObservedService>,
    /// The revision the service runs; without a service, the family's latest ACTIVE one.
    pub task_definition: Option<ObservedTaskDefinition>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedCluster {
    pub arn: String,
    pub settings: BTreeMap<String, String>,
    pub capacity_providers: Vec<String>,
    pub default_strategy: Vec<Strategy>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedService {
    pub arn: String,
    pub task_definition: String,
    pub desired_count: i32,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub assign_public_ip: Option<String>,
    pub deployment: ObservedDeploymentConfiguration,
    pub health_check_grace_period_seconds: Option<i32>,
    pub enable_ecs_managed_tags: bool,
    pub propagate_tags: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub deployments: Vec<ObservedDeployment>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedDeploymentConfiguration {
    pub circuit_breaker: Option<bool>,
    pub rollback: Option<bool>,
    pub minimum_healthy_percent: Option<i32>,
    pub maximum_percent: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedDeployment {
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    pub task_definition: String,
    /// IN_PROGRESS, COMPLETED or FAILED (absent without a circuit breaker).
    pub rollout_state: Option<String>,
    pub rollout_state_reason: Option<String>,
    pub desired_count: i32,
    pub running_count: i32,
    pub failed_tasks: i32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedTaskDefinition {
    pub arn: String,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub network_mode: Option<String>,
    pub requires_compatibilities: Vec<String>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub containers: Vec<ObservedContainer>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedContainer {
    pub name: String,
    pub image: String,
    pub essential: Option<bool>,
    /// (containerPort, protocol) of every port mapping.
    pub port_mappings: Vec<(Option<i32>, Option<String>)>,
    pub environment: BTreeMap<String, String>,
    pub health_check: Option<HealthCheck>,
    pub log_driver: Option<String>,
    pub log_options: BTreeMap<String, String>,
}

/// What `UpdateService` changes, all in one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceUpdate {
    /// The revision registered by the same update.
    pub task_definition: bool,
    pub desired_count: Option<i32>,
    pub deployment_configuration: bool,
    pub health_check_grace_period: bool,
    pub network: bool,
    pub propagate_tags: bool,
    pub managed_tags: bool,
}

impl ServiceUpdate {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateCluster,
    /// `UpdateCluster` with the Container Insights setting.
    ClusterSettings,
    /// `PutClusterCapacityProviders`.
    CapacityProviders,
    ClusterTags(TagPlan),
    /// A new revision of the family: the spec's container definition with this image.
    RegisterTaskDefinition {
        image: String,
    },
    /// With the revision the service should run and its task count.
    CreateService {
        desired_count: i32,
    },
    UpdateService(ServiceUpdate),
    ServiceTags(TagPlan),
}

/// The container the spec names, else the revision's first: its image is what a new revision
/// keeps (the container may just have been renamed).
fn current_container<'a>(
    name: &str,
    t: &'a ObservedTaskDefinition,
) -> Option<&'a ObservedContainer> {
    t.containers
        .iter()
        .find(|c| c.name == name)
        .or_else(|| t.containers.first())
}

/// The image the next revision gets: the one the service runs, or the placeholder before
/// anything was deployed.
pub fn kept_image(d: &Runtime, o: &Observed) -> String {
    o.task_definition
        .as_ref()
        .and_then(|t| current_container(&d.task_definition.container.name, t))
        .map(|c| c.image.clone())
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| d.placeholder_image.clone())
}

/// True once the pipeline has deployed an image: the service's revision has another image than
/// the operator's placeholder.
pub fn deployed(d: &Runtime, o: &Observed) -> bool {
    kept_image(d, o) != d.placeholder_image
}

/// The task count the service should have now: the spec's once deployed, else none.
pub fn wanted_count(d: &Runtime, o: &Observed) -> i32 {
    if deployed(d, o) {
        d.service.desired_count
    } else {
        0
    }
}

fn container_matches(want: &Container, have: &ObservedContainer) -> bool {
    let protocol = |p: &Option<String>| p.clone().unwrap_or_else(|| TCP.to_string());
    want.name == have.name
        // ECS reads an absent `essential` as true.
        && have.essential.unwrap_or(true) == want.essential
        && have.port_mappings.len() == 1
        && have.port_mappings.iter().all(|(port, p)| {
            *port == Some(want.port) && protocol(p) == want.protocol
        })
        && have.environment == want.environment
        && have.health_check == want.health_check
        && have.log_driver.as_deref() == Some(want.log_driver.as_str())
        && want
            .log_options
            .iter()
            .all(|(k, v)| have.log_options.get(k) == Some(v))
}

/// The family of a revision's ARN (`...:task-definition/<family>:<revision>`).
fn family_of(arn: &str) -> Option<&str> {
    arn.rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once(':'))
        .map(|(family, _)| family)
}

/// True when the revision has everything the spec controls (the image aside).
pub fn task_definition_matches(want: &TaskDefinition, have: &ObservedTaskDefinition) -> bool {
    let compatibilities: BTreeSet<&String> = have.requires_compatibilities.iter().collect();
    family_of(&have.arn) == Some(want.family.as_str())
        && have.cpu.as_deref() == Some(want.cpu.as_str())
        && have.memory.as_deref() == Some(want.memory.as_str())
        && have.network_mode.as_deref() == Some(AWSVPC)
        && compatibilities == want.requires_compatibilities.iter().collect()
        && have.execution_role_arn.as_deref() == Some(want.execution_role_arn.as_str())
        && have.task_role_arn.as_deref() == Some(want.task_role_arn.as_str())
        && have.containers.len() == 1
        && have
            .containers
            .iter()
            .all(|c| container_matches(&want.container, c))
}

fn cluster_changes(
    changes: &mut Changes<Change>,
    cluster: &str,
    want: &Cluster,
    have: &ObservedCluster,
) {
    let insights = have.settings.get(CONTAINER_INSIGHTS);
    if insights != Some(&want.container_insights) {
        let drift = Drift::value(
            cluster,
            CONTAINER_INSIGHTS,
            insights.map_or("(unset)", String::as_str),
            &want.container_insights,
        );
        changes.push(Change::ClusterSettings, drift);
    }
    if have.capacity_providers != want.capacity_providers
        || have.default_strategy != want.default_strategy
    {
        let drift = Drift::value(
            cluster,
            "capacity providers",
            have.capacity_providers.join(", "),
            want.capacity_providers.join(", "),
        );
        changes.push(Change::CapacityProviders, drift);
    }
    tag_change(
        changes,
        cluster,
        &want.tags,
        &have.tags,
        Change::ClusterTags,
    );
}

fn deployment_matches(want: &Deployment, have: &ObservedDeploymentConfiguration) -> bool {
    have.circuit_breaker == Some(want.circuit_breaker)
        && have.rollback == Some(want.rollback)
        && have.minimum_healthy_percent == Some(want.minimum_healthy_percent)
        && have.maximum_percent == Some(want.maximum_percent)
}

/// What one UpdateService changes (`register`: with the revision registered before it), in
/// words.
fn service_update(
    service: &str,
    want: &Service,
    count: i32,
    register: bool,
    have: &ObservedService,
) -> (ServiceUpdate, Vec<Drift>) {
    let update = ServiceUpdate {
        task_definition: register,
        desired_count: (have.desired_count != count).then_some(count),
        deployment_configuration: !deployment_matches(&want.deployment, &have.deployment),
        health_check_grace_period: have.health_check_grace_period_seconds.unwrap_or(0)
            != want.health_check_grace_period_seconds,
        network: have.subnets != want.subnets
            || have.security_groups != want.security_groups
            || have.assign_public_ip.as_deref() != Some(want.assign_public_ip.as_str()),
        propagate_tags: have.propagate_tags.as_deref() != Some(want.propagate_tags.as_str()),
        managed_tags: have.enable_ecs_managed_tags != want.enable_ecs_managed_tags,
    };
    let named = |differs: bool, field: &str| differs.then(|| Drift::field(service, field));
    let drift = [
        named(update.task_definition, "task definition (a new revision)"),
        update
            .desired_count
            .map(|count| Drift::value(service, "desired count", have.desired_count, count)),
        named(update.deployment_configuration, "deployment configuration"),
        update.health_check_grace_period.then(|| {
            Drift::value(
                service,
                "health check grace period",
                have.health_check_grace_period_seconds
                    .map_or("(unset)".to_string(), |s| format!("{s} s")),
                format!("{} s", want.health_check_grace_period_seconds),
            )
        }),
        named(update.network, "network configuration"),
        named(update.propagate_tags, "tag propagation"),
        named(update.managed_tags, "ECS managed tags"),
    ];
    (update, drift.into_iter().flatten().collect())
}

/// A deployment of the service is under way (a pipeline's release, or the circuit breaker
/// rolling back): a new revision would supersede it, so the spec's task definition waits.
pub fn rolling_out(o: &Observed) -> bool {
    o.service.as_ref().is_some_and(|s| {
        s.deployments
            .iter()
            .any(|x| x.status == PRIMARY && x.rollout_state.as_deref() == Some(IN_PROGRESS))
    })
}

impl Diff<Observed> for Runtime {
    type Change = Change;

    fn diff(&self, o: &Observed) -> Changes<Change> {
        let d = self;
        let cluster = format!("ECS cluster {}", d.cluster.name);
        let service = format!("ECS service {}", d.service.name);
        let mut changes = Changes::new();
        match &o.cluster {
            None => changes.push(Change::CreateCluster, Drift::create(&cluster)),
            Some(have) => cluster_changes(&mut changes, &cluster, &d.cluster, have),
        }
        let register = !rolling_out(o)
            && o.task_definition
                .as_ref()
                .is_none_or(|t| !task_definition_matches(&d.task_definition, t));
        if register {
            let family = format!("ECS task definition {}", d.task_definition.family);
            let drift = match &o.task_definition {
                None => vec![Drift::create(family)],
                Some(have) => task_definition_drift(&family, &d.task_definition, have),
            };
            let image = kept_image(d, o);
            changes.push_all(Change::RegisterTaskDefinition { image }, drift);
        }
        let count = wanted_count(d, o);
        match &o.service {
            None => changes.push(
                Change::CreateService {
                    desired_count: count,
                },
                Drift::create(service),
            ),
            Some(have) => {
                let (update, drift) = service_update(&service, &d.service, count, register, have);
                if !update.is_empty() {
                    changes.push_all(Change::UpdateService(update), drift);
                }
                tag_change(
                    &mut changes,
                    &service,
                    &d.service.tags,
                    &have.tags,
                    Change::ServiceTags,
                );
            }
        }
        changes
    }
}

/// A service that runs no task until the pipeline's first deployment: in its declared state
/// (the condition stays True), and the condition says what it waits for.
pub fn awaiting_first_image(env: &str, d: &Runtime, o: &Observed) -> Option<Note> {
    o.service.as_ref()?;
    (!deployed(d, o)).then(|| Note {
        reason: "AwaitingFirstImage".into(),
        message: format!(
            "service {} runs no task until the pipeline's first deployment to {env} (its image is the placeholder {}); it is then scaled to {} task(s)",
            d.service.name, d.placeholder_image, d.service.desired_count
        ),
    })
}

/// Whether the service has settled: a rollout under way, or a rollout the circuit breaker
/// stopped.
pub fn progress(d: &Runtime, o: &Observed) -> Option<Progress> {
    let service = o.service.as_ref()?;
    if let Some(failed) = service
        .deployments
        .iter()
        .find(|x| x.rollout_state.as_deref() == Some(FAILED))
    {
        let primary = service.deployments.iter().find(|x| x.status == PRIMARY);
        let rolling_back = primary
            .filter(|p| p.id != failed.id)
            .map(|p| format!("; rolling back to {}", p.task_definition))
            .unwrap_or_default();
        return Some(Progress {
            reason: "RolloutFailed".into(),
            message: format!(
                "deployment {} of {} failed: {} ({} task(s) failed to start){rolling_back}",
                failed.id,
                failed.task_definition,
                failed
                    .rollout_state_reason
                    .as_deref()
                    .unwrap_or("the deployment circuit breaker stopped it"),
                failed.failed_tasks
            ),
            after: FAILED_ROLLOUT_RETRY,
        });
    }
    let primary = service.deployments.iter().find(|x| x.status == PRIMARY)?;
    (primary.rollout_state.as_deref() == Some(IN_PROGRESS)).then(|| Progress {
        reason: "RolloutInProgress".into(),
        message: format!(
            "deployment {} of {} in progress: {} of {} task(s) running{}",
            primary.id,
            primary.task_definition,
            primary.running_count,
            primary.desired_count,
            if pending_revision(d, o) {
                "; the spec's task definition changes wait for it"
            } else {
                ""
            }
        ),
        after: ROLLOUT_RETRY,
    })
}

/// The spec's task definition differs from the revision the service runs.
fn pending_revision(d: &Runtime, o: &Observed) -> bool {
    o.task_definition
        .as_ref()
        .is_some_and(|t| !task_definition_matches(&d.task_definition, t))
}

fn task_definition_drift(
    family: &str,
    want: &TaskDefinition,
    have: &ObservedTaskDefinition,
) -> Vec<Drift> {
    let mut drift = Vec::new();
    let mut compare = |field: &str, have: Option<&str>, want: &str| {
        if have != Some(want) {
            drift.push(Drift::value(family, field, have.unwrap_or("(unset)"), want));
        }
    };
    compare("cpu", have.cpu.as_deref(), &want.cpu);
    compare("memory", have.memory.as_deref(), &want.memory);
    compare(
        "execution role",
        have.execution_role_arn.as_deref(),
        &want.execution_role_arn,
    );
    compare(
        "task role",
        have.task_role_arn.as_deref(),
        &want.task_role_arn,
    );
    if drift.is_empty() {
        drift.push(Drift::field(family, "container definition"));
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Env;
    use crate::desired::testing::{FULL, MINIMAL, context};
    use crate::groups::service::desired::runtime;
    use crate::groups::service::desired::tests::inputs;

    const DEPLOYED: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r:abc123";

    fn desired(manifest: &str, env: Env) -> Runtime {
        runtime(&context(manifest), env, &inputs())
    }

    /// What AWS returns for a runtime in the desired state, with the defaults ECS adds, running
    /// `image` with `count` tasks.
    fn observed_as(d: &Runtime, image: &str, count: i32) -> Observed {
        let t = &d.task_definition;
        let c = &t.container;
        let mut tags = d.cluster.tags.tags.clone();
        tags.insert("aws:cloudformation:stack".into(), "not ours".into());
        let revision = format!(
            "arn:aws:ecs:us-east-1:222222222222:task-definition/{}:3",
            t.family
        );
        Observed {
            cluster: Some(ObservedCluster {
                arn: "arn:aws:ecs:us-east-1:222222222222:cluster/c".into(),
                settings: BTreeMap::from([(CONTAINER_INSIGHTS.into(), "enabled".into())]),
                capacity_providers: d.cluster.capacity_providers.clone(),
                default_strategy: d.cluster.default_strategy.clone(),
                tags: tags.clone(),
            }),
            service: Some(ObservedService {
                arn: "arn:aws:ecs:us-east-1:222222222222:service/c/s".into(),
                task_definition: revision.clone(),
                desired_count: count,
                subnets: d.service.subnets.clone(),
                security_groups: d.service.security_groups.clone(),
                assign_public_ip: Some(d.service.assign_public_ip.clone()),
                deployment: ObservedDeploymentConfiguration {
                    circuit_breaker: Some(true),
                    rollback: Some(d.service.deployment.rollback),
                    minimum_healthy_percent: Some(100),
                    maximum_percent: Some(200),
                },
                health_check_grace_period_seconds: Some(
                    d.service.health_check_grace_period_seconds,
                ),
                enable_ecs_managed_tags: true,
                propagate_tags: Some("SERVICE".into()),
                tags,
                deployments: vec![ObservedDeployment {
                    id: "ecs-svc/1".into(),
                    status: PRIMARY.into(),
                    task_definition: revision.clone(),
                    rollout_state: Some("COMPLETED".into()),
                    rollout_state_reason: Some("ECS deployment ecs-svc/1 completed.".into()),
                    desired_count: count,
                    running_count: count,
                    failed_tasks: 0,
                }],
            }),
            task_definition: Some(ObservedTaskDefinition {
                arn: revision,
                cpu: Some(t.cpu.clone()),
                memory: Some(t.memory.clone()),
                network_mode: Some("awsvpc".into()),
                requires_compatibilities: vec!["FARGATE".into()],
                execution_role_arn: Some(t.execution_role_arn.clone()),
                task_role_arn: Some(t.task_role_arn.clone()),
                containers: vec![ObservedContainer {
                    name: c.name.clone(),
                    image: image.into(),
                    essential: Some(true),
                    port_mappings: vec![(Some(c.port), Some("tcp".into()))],
                    environment: c.environment.clone(),
                    health_check: c.health_check.clone(),
                    log_driver: Some("awslogs".into()),
                    log_options: c.log_options.clone(),
                }],
            }),
        }
    }

    fn deployed_state(d: &Runtime) -> Observed {
        observed_as(d, DEPLOYED, d.service.desired_count)
    }

    fn service(o: &mut Observed) -> &mut ObservedService {
        o.service.as_mut().expect("service")
    }

    fn container(o: &mut Observed) -> &mut ObservedContainer {
        &mut o.task_definition.as_mut().expect("revision").containers[0]
    }

    #[test]
    fn nothing_there_creates_the_cluster_a_revision_with_the_placeholder_and_an_idle_service() {
        let d = desired(FULL, Env::Staging);
        assert_eq!(
            d.diff(&Observed::default()),
            vec![
                Change::CreateCluster,
                Change::RegisterTaskDefinition {
                    image: d.placeholder_image.clone()
                },
                Change::CreateService { desired_count: 0 },
            ]
        );
    }

    #[test]
    fn in_sync_runtimes_have_no_changes_whatever_image_runs() {
        for manifest in [FULL, MINIMAL] {
            for env in Env::ALL {
                let d = desired(manifest, env);
                assert_eq!(d.diff(&deployed_state(&d)), vec![], "{env:?}");
                // Before the first deployment: the placeholder at no task is in sync too.
                let idle = observed_as(&d, &d.placeholder_image, 0);
                assert_eq!(d.diff(&idle), vec![], "{env:?}");
            }
        }
    }

    #[test]
    fn defaults_ecs_adds_do_not_count() {
        let d = desired(FULL, Env::Staging);
        let mut o = deployed_state(&d);
        let c = container(&mut o);
        c.essential = None;
        c.port_mappings = vec![(Some(8080), None)];
        c.log_options
            .insert("awslogs-datetime-format".into(), "%Y".into());
        let t = o.task_definition.as_mut().expect("revision");
        t.requires_compatibilities = vec!["FARGATE".into()];
        service(&mut o)
            .tags
            .insert("added-by-someone".into(), "x".into());
        assert_eq!(d.diff(&o), vec![]);
        // No grace period reported reads as 0.
        let mut zero = d.clone();
        zero.service.health_check_grace_period_seconds = 0;
        let mut o = deployed_state(&zero);
        service(&mut o).health_check_grace_period_seconds = None;
        assert_eq!(zero.diff(&o), vec![]);
    }

    #[test]
    fn an_environment_variable_change_registers_a_revision_that_keeps_the_deployed_image() {
        let d = desired(FULL, Env::Staging);
        let mut o = deployed_state(&d);
        container(&mut o)
            .environment
            .insert("LOG_LEVEL".into(), "info".into());
        assert_eq!(
            d.diff(&o),
            vec![
                Change::RegisterTaskDefinition {
                    image: DEPLOYED.into()
                },
                Change::UpdateService(ServiceUpdate {
                    task_definition: true,
                    ..ServiceUpdate::default()
                }),
            ]
        );
        // An extra variable added by hand is removed the same way.
        let mut o = deployed_state(&d);
        container(&mut o).environment.insert("X".into(), "1".into());
        assert!(matches!(
            d.diff(&o)[0],
            Change::RegisterTaskDefinition { ref image } if image == DEPLOYED
        ));
    }

    #[test]
    fn each_task_definition_field_the_spec_controls_is_compared() {
        let d = desired(FULL, Env::Staging);
        type Edit = Box<dyn Fn(&mut ObservedTaskDefinition)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "family",
                Box::new(|t| t.arn = "arn:aws:ecs:us-east-1:1:task-definition/other:1".into()),
            ),
            ("cpu", Box::new(|t| t.cpu = Some("512".into()))),
            ("memory", Box::new(|t| t.memory = Some("1024".into()))),
            (
                "network mode",
                Box::new(|t| t.network_mode = Some("bridge".into())),
            ),
            (
                "compatibilities",
                Box::new(|t| t.requires_compatibilities = vec!["EC2".into()]),
            ),
            ("execution role", Box::new(|t| t.execution_role_arn = None)),
            (
                "task role",
                Box::new(|t| t.task_role_arn = Some("arn:aws:iam::1:role/x".into())),
            ),
            (
                "container name",
                Box::new(|t| t.containers[0].name = "web".into()),
            ),
            (
                "essential",
                Box::new(|t| t.containers[0].essential = Some(false)),
            ),
            (
                "port",
                Box::new(|t| t.containers[0].port_mappings = vec![(Some(80), Some("tcp".into()))]),
            ),
            (
                "protocol",
                Box::new(|t| {
                    t.containers[0].port_mappings = vec![(Some(8080), Some("udp".into()))]
                }),
            ),
            (
                "second port",
                Box::new(|t| t.containers[0].port_mappings.push((Some(9090), None))),
            ),
            (
                "health check",
                Box::new(|t| t.containers[0].health_check = None),
            ),
            (
                "health check interval",
                Box::new(|t| {
                    if let Some(h) = t.containers[0].health_check.as_mut() {
                        h.interval = 10;
                    }
                }),
            ),
            (
                "log driver",
                Box::new(|t| t.containers[0].log_driver = Some("json-file".into())),
            ),
            (
                "log group",
                Box::new(|t| {
                    t.containers[0]
                        .log_options
                        .insert("awslogs-group".into(), "other".into());
                }),
            ),
            (
                "sidecar",
                Box::new(|t| {
                    let extra = t.containers[0].clone();
                    t.containers.push(ObservedContainer {
                        name: "sidecar".into(),
                        ..extra
                    });
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut o = deployed_state(&d);
            edit(o.task_definition.as_mut().expect("revision"));
            let changes = d.diff(&o).into_changes();
            assert_eq!(
                changes.first(),
                Some(&Change::RegisterTaskDefinition {
                    image: DEPLOYED.into()
                }),
                "{what}: {changes:?}"
            );
        }
    }

    #[test]
    fn a_renamed_container_keeps_the_image_of_the_one_that_ran() {
        let mut c = context(FULL);
        c.spec.container.name = "web".into();
        let d = runtime(&c, Env::Staging, &inputs());
        let o = deployed_state(&desired(FULL, Env::Staging));
        assert_eq!(kept_image(&d, &o), DEPLOYED);
        assert!(deployed(&d, &o));
    }

    #[test]
    fn a_count_change_updates_only_the_count_once_deployed() {
        let d = desired(MINIMAL, Env::Production);
        let o = observed_as(&d, DEPLOYED, 5);
        assert_eq!(
            d.diff(&o),
            vec![Change::UpdateService(ServiceUpdate {
                desired_count: Some(2),
                ..ServiceUpdate::default()
            })]
        );
        // The first deployment happened (the pipeline's revision runs, at no task): scaled to
        // the spec's count.
        let o = observed_as(&d, DEPLOYED, 0);
        assert_eq!(
            d.diff(&o),
            vec![Change::UpdateService(ServiceUpdate {
                desired_count: Some(2),
                ..ServiceUpdate::default()
            })]
        );
    }

    #[test]
    fn before_the_first_deployment_the_service_stays_at_no_task() {
        let d = desired(MINIMAL, Env::Production);
        let idle = observed_as(&d, &d.placeholder_image, 0);
        assert_eq!(wanted_count(&d, &idle), 0);
        assert_eq!(d.diff(&idle), vec![]);
        // Scaled up by hand before any image exists: back to none.
        let scaled = observed_as(&d, &d.placeholder_image, 3);
        assert_eq!(
            d.diff(&scaled),
            vec![Change::UpdateService(ServiceUpdate {
                desired_count: Some(0),
                ..ServiceUpdate::default()
            })]
        );
        let n = awaiting_first_image("production", &d, &idle).expect("awaiting");
        assert_eq!(n.reason, "AwaitingFirstImage");
        assert!(
            n.message.contains("first deployment to production")
                && n.message.contains(&d.placeholder_image),
            "{}",
            n.message
        );
        // Awaiting the first image is settled: no progress to wait for.
        assert_eq!(progress(&d, &idle), None);
    }

    #[test]
    fn circuit_breaker_drift_is_restored_by_one_update() {
        let d = desired(FULL, Env::Production);
        for edit in [
            (|c: &mut ObservedDeploymentConfiguration| c.circuit_breaker = Some(false))
                as fn(&mut ObservedDeploymentConfiguration),
            |c| c.rollback = Some(false),
            |c| c.minimum_healthy_percent = Some(50),
            |c| c.maximum_percent = None,
        ] {
            let mut o = deployed_state(&d);
            edit(&mut service(&mut o).deployment);
            assert_eq!(
                d.diff(&o),
                vec![Change::UpdateService(ServiceUpdate {
                    deployment_configuration: true,
                    ..ServiceUpdate::default()
                })]
            );
        }
    }

    #[test]
    fn other_service_drift_goes_into_the_same_single_update() {
        let d = desired(FULL, Env::Staging);
        let mut o = deployed_state(&d);
        let s = service(&mut o);
        s.health_check_grace_period_seconds = Some(0);
        s.assign_public_ip = Some("DISABLED".into());
        s.propagate_tags = Some("NONE".into());
        s.enable_ecs_managed_tags = false;
        s.desired_count = 4;
        s.tags.remove("CostCenter");
        let changes = d.diff(&o);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(
            changes[0],
            Change::UpdateService(ServiceUpdate {
                task_definition: false,
                desired_count: Some(1),
                deployment_configuration: false,
                health_check_grace_period: true,
                network: true,
                propagate_tags: true,
                managed_tags: true,
            })
        );
        assert!(matches!(&changes[1], Change::ServiceTags(p) if p.set.contains_key("CostCenter")));
        let mut o = deployed_state(&d);
        service(&mut o).subnets.insert("subnet-c".into());
        assert!(matches!(&d.diff(&o).into_changes()[..], [Change::UpdateService(u)] if u.network));
    }

    #[test]
    fn cluster_drift_has_its_own_calls() {
        let d = desired(FULL, Env::Staging);
        let mut o = deployed_state(&d);
        let c = o.cluster.as_mut().expect("cluster");
        c.settings
            .insert(CONTAINER_INSIGHTS.into(), "disabled".into());
        c.capacity_providers.push("FARGATE_SPOT".into());
        c.tags.remove("Team");
        let changes = d.diff(&o).into_changes();
        assert_eq!(
            changes[..2],
            [Change::ClusterSettings, Change::CapacityProviders]
        );
        assert!(matches!(&changes[2], Change::ClusterTags(p) if p.set.contains_key("Team")));
        let mut o = deployed_state(&d);
        o.cluster
            .as_mut()
            .expect("cluster")
            .default_strategy
            .clear();
        assert_eq!(d.diff(&o), vec![Change::CapacityProviders]);
    }

    #[test]
    fn a_missing_service_is_created_with_the_revision_found_and_its_image_kept() {
        let d = desired(MINIMAL, Env::Staging);
        let mut o = deployed_state(&d);
        o.service = None;
        assert_eq!(d.diff(&o), vec![Change::CreateService { desired_count: 1 }]);
        let mut o = observed_as(&d, &d.placeholder_image, 0);
        o.service = None;
        o.task_definition = None;
        assert_eq!(
            d.diff(&o),
            vec![
                Change::RegisterTaskDefinition {
                    image: d.placeholder_image.clone()
                },
                Change::CreateService { desired_count: 0 }
            ]
        );
    }

    #[test]
    fn rollouts_in_progress_and_failed_are_reported_not_errors() {
        let d = desired(FULL, Env::Production);
        let mut o = deployed_state(&d);
        assert_eq!(progress(&d, &o), None);
        let primary = &mut service(&mut o).deployments[0];
        primary.rollout_state = Some(IN_PROGRESS.into());
        primary.running_count = 1;
        let p = progress(&d, &o).expect("in progress");
        assert_eq!(p.reason, "RolloutInProgress");
        assert!(p.message.contains("1 of 3"), "{}", p.message);
        assert_eq!(p.after, ROLLOUT_RETRY);
        // The circuit breaker tripped and rolls back to the previous revision.
        let s = service(&mut o);
        s.deployments[0].task_definition = "td:2".into();
        s.deployments[0].id = "ecs-svc/2".into();
        s.deployments.push(ObservedDeployment {
            id: "ecs-svc/3".into(),
            status: "ACTIVE".into(),
            task_definition: "td:3".into(),
            rollout_state: Some(FAILED.into()),
            rollout_state_reason: Some(
                "ECS deployment circuit breaker: tasks failed to start.".into(),
            ),
            desired_count: 3,
            running_count: 0,
            failed_tasks: 4,
        });
        let p = progress(&d, &o).expect("failed");
        assert_eq!(p.reason, "RolloutFailed");
        assert_eq!(
            p.message,
            "deployment ecs-svc/3 of td:3 failed: ECS deployment circuit breaker: tasks failed to start. (4 task(s) failed to start); rolling back to td:2"
        );
        // Nothing to write while it rolls back: the revision it returns to is in sync.
        assert_eq!(d.diff(&o), vec![]);
    }

    #[test]
    fn a_spec_change_waits_while_a_rollout_is_under_way_but_counts_and_settings_do_not() {
        let d = desired(FULL, Env::Staging);
        let mut o = deployed_state(&d);
        let s = service(&mut o);
        s.deployments[0].rollout_state = Some(IN_PROGRESS.into());
        s.desired_count = 5;
        s.deployment.rollback = Some(false);
        container(&mut o)
            .environment
            .insert("LOG_LEVEL".into(), "info".into());
        assert_eq!(
            d.diff(&o),
            vec![Change::UpdateService(ServiceUpdate {
                desired_count: Some(1),
                deployment_configuration: true,
                ..ServiceUpdate::default()
            })]
        );
        let p = progress(&d, &o).expect("in progress");
        assert!(
            p.message
                .ends_with("the spec's task definition changes wait for it"),
            "{}",
            p.message
        );
        // Once it completes, the revision is registered with the image it rolled out.
        service(&mut o).deployments[0].rollout_state = Some("COMPLETED".into());
        assert!(matches!(
            &d.diff(&o)[0],
            Change::RegisterTaskDefinition { image } if image == DEPLOYED
        ));
    }
}
