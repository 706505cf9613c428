//! The network of one environment, in that environment's account: a managed VPC (subnets,
//! internet gateway, route table, the tasks' security group), or existing subnets and security
//! groups, verified. Its outputs are what ECS services are placed with: the VPC, the subnets,
//! the security groups and whether tasks get a public IP.
//!
//! Everything is found by tags (owner, environment, part), never by a remembered ID, so an
//! interrupted create is resumed and a pipeline whose outputs were lost is still deleted.

pub mod desired;
pub mod diff;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType,
    Tag, TagSpecification, UserIdGroupPair, VpcAttributeName,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use self::desired::{Managed, Network, Part, Peer, Rule, SUBNET_INDEX_KEY, Zone};
use self::diff::{
    Change, Found, Observed, ObservedAssociation, ObservedExisting, ObservedGateway,
    ObservedManaged, ObservedRoute, ObservedRouteTable, ObservedSecurityGroup, ObservedSubnet,
    ObservedVpc, existing_vpc, primary,
};
use super::{Group, Placement, Produced, keys};
use crate::aws::{AwsResultExt, AwsSession, classify, code, found};
use crate::desired::tags::{ENVIRONMENT_KEY, OWNER_KEY};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Class, Failure, Key, Removal, Values};

/// How soon to look again while network interfaces (of tasks being stopped) still hold a
/// security group, subnet or the VPC.
const RELEASE_RETRY: Duration = Duration::from_secs(30);
/// EC2 is eventually consistent: a resource just created may not be found by the next call.
const NOT_YET_VISIBLE: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidGroup.NotFound",
];

pub struct NetworkGroup {
    ctx: PipelineContext,
    env: Env,
}

impl NetworkGroup {
    pub fn new(ctx: &PipelineContext, env: Env) -> Self {
        Self {
            ctx: ctx.clone(),
            env,
        }
    }

    /// Filters matching what this environment's network tagged as `part`.
    fn filters(&self, part: Part) -> Vec<Filter> {
        vec![
            tag_filter(OWNER_KEY, &self.ctx.owner()),
            tag_filter(ENVIRONMENT_KEY, self.env.name()),
            tag_filter(desired::PART_KEY, part.tag()),
        ]
    }
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_spec(kind: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

fn rules(permissions: &[IpPermission]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in permissions {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from_port, to_port) = if protocol == "-1" {
            (None, None)
        } else {
            (p.from_port(), p.to_port())
        };
        let peers = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(|c| Peer::Cidr(c.into())))
            .chain(
                p.ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6().map(|c| Peer::Ipv6(c.into()))),
            )
            .chain(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id().map(|c| Peer::Group(c.into()))),
            )
            .chain(
                p.prefix_list_ids()
                    .iter()
                    .filter_map(|l| l.prefix_list_id().map(|c| Peer::PrefixList(c.into()))),
            );
        for peer in peers {
            out.insert(Rule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                peer,
            });
        }
    }
    out
}

/// One rule as the one permission of an Authorize or Revoke call.
fn permission(rule: &Rule) -> IpPermission {
    let b = IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .set_from_port(rule.from_port)
        .set_to_port(rule.to_port);
    match &rule.peer {
        Peer::Cidr(c) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
        Peer::Ipv6(c) => b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
        Peer::Group(g) => b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
        Peer::PrefixList(l) => b.prefix_list_ids(PrefixListId::builder().prefix_list_id(l).build()),
    }
    .build()
}

fn arn(at: &Placement, part: Part, id: &str) -> String {
    format!(
        "arn:{}:ec2:{}:{}:{}/{id}",
        at.partition,
        at.region,
        at.account_id,
        part.resource_type()
    )
}

/// A call on a resource that may have been created a moment ago: EC2's eventual consistency
/// ("...NotFound" for an ID it just returned) is waited out briefly, then reported as in
/// progress.
async fn consistent<T, E, F, Fut>(operation: &str, call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    tolerant(operation, &[], call)
        .await?
        .ok_or_else(|| Failure::terminal("Unreachable", format!("{operation}: no answer")))
}

/// [`consistent`], with the error codes in `done` meaning the call's effect is already there
/// (None).
async fn tolerant<T, E, F, Fut>(
    operation: &str,
    done: &[&str],
    call: F,
) -> Result<Option<T>, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match while_unseen(call).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if code(&e).is_some_and(|c| done.contains(&c)) => Ok(None),
        Err(e) => {
            let overrides: Vec<(&str, Class)> = NOT_YET_VISIBLE
                .iter()
                .map(|c| (*c, Class::InProgress(Duration::from_secs(10))))
                .collect();
            Err::<T, _>(e).aws_with(operation, &overrides).map(Some)
        }
    }
}

/// Repeats `call` (5 attempts in about 4 s) while EC2 answers that a resource just created is
/// not visible yet (EC2 is eventually consistent); the last answer otherwise.
async fn while_unseen<T, E, F, Fut>(mut call: F) -> Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut wait = Duration::from_millis(250);
    loop {
        let result = call().await;
        match &result {
            Err(e)
                if code(e).is_some_and(|c| NOT_YET_VISIBLE.contains(&c))
                    && wait < Duration::from_secs(4) =>
            {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            _ => return result,
        }
    }
}

/// The outcome of a deletion: done (or already gone), or refused because something (a task's
/// network interface) still uses the resource.
enum Deleted {
    Done,
    InUse(String),
}

async fn delete_call<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &str,
    not_found: &[&str],
    what: &str,
) -> Result<Deleted, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Err(e) if code(&e) == Some("DependencyViolation") => Ok(Deleted::InUse(format!(
            "{what} is still in use: network interfaces of stopped tasks are released within minutes; anything else made in it by hand must be removed by hand"
        ))),
        other => found(other, operation, not_found).map(|_| Deleted::Done),
    }
}

/// Removes `parts` in dependency order: security groups, route tables (associations first),
/// subnets (their associations with other tables first), gateways (detached first), VPCs.
/// `state` is what is known of every table, for the subnets' associations; what is removed
/// leaves it. Some(what): something is still in use; look again later.
async fn teardown(
    aws: &AwsSession,
    parts: &ObservedManaged,
    state: &mut ObservedManaged,
) -> Result<Option<String>, Failure> {
    let ec2 = aws.ec2();
    macro_rules! removed {
        ($call:expr, $op:expr, $not_found:expr, $what:expr) => {
            if let Deleted::InUse(why) = delete_call($call.await, $op, $not_found, &$what).await? {
                return Ok(Some(why));
            }
        };
    }
    for g in &parts.security_groups {
        removed!(
            ec2.delete_security_group().group_id(&g.id).send(),
            "ec2:DeleteSecurityGroup",
            &["InvalidGroup.NotFound"],
            format!("security group {}", g.id)
        );
        state.security_groups.retain(|x| x.id != g.id);
    }
    for t in &parts.route_tables {
        for a in &t.associations {
            found(
                ec2.disassociate_route_table()
                    .association_id(&a.id)
                    .send()
                    .await,
                "ec2:DisassociateRouteTable",
                &["InvalidAssociationID.NotFound"],
            )?;
        }
        removed!(
            ec2.delete_route_table().route_table_id(&t.id).send(),
            "ec2:DeleteRouteTable",
            &["InvalidRouteTableID.NotFound"],
            format!("route table {}", t.id)
        );
        state.route_tables.retain(|x| x.id != t.id);
    }
    for s in &parts.subnets {
        for table in &mut state.route_tables {
            for a in table
                .associations
                .iter()
                .filter(|a| a.subnet_id.as_deref() == Some(s.id.as_str()))
            {
                found(
                    ec2.disassociate_route_table()
                        .association_id(&a.id)
                        .send()
                        .await,
                    "ec2:DisassociateRouteTable",
                    &["InvalidAssociationID.NotFound"],
                )?;
            }
            table
                .associations
                .retain(|a| a.subnet_id.as_deref() != Some(s.id.as_str()));
        }
        removed!(
            ec2.delete_subnet().subnet_id(&s.id).send(),
            "ec2:DeleteSubnet",
            &["InvalidSubnetID.NotFound"],
            format!("subnet {}", s.id)
        );
        state.subnets.retain(|x| x.id != s.id);
    }
    for g in &parts.gateways {
        for vpc in &g.attached {
            removed!(
                ec2.detach_internet_gateway()
                    .internet_gateway_id(&g.id)
                    .vpc_id(vpc)
                    .send(),
                "ec2:DetachInternetGateway",
                &["InvalidInternetGatewayID.NotFound", "Gateway.NotAttached"],
                format!("internet gateway {} (public addresses still mapped)", g.id)
            );
        }
        removed!(
            ec2.delete_internet_gateway()
                .internet_gateway_id(&g.id)
                .send(),
            "ec2:DeleteInternetGateway",
            &["InvalidInternetGatewayID.NotFound"],
            format!("internet gateway {}", g.id)
        );
        state.gateways.retain(|x| x.id != g.id);
    }
    for v in &parts.vpcs {
        removed!(
            ec2.delete_vpc().vpc_id(&v.id).send(),
            "ec2:DeleteVpc",
            &["InvalidVpcID.NotFound"],
            format!("VPC {}", v.id)
        );
        state.vpcs.retain(|x| x.id != v.id);
    }
    Ok(None)
}

async fn dns_attribute(
    aws: &AwsSession,
    vpc: &str,
    attribute: VpcAttributeName,
) -> Result<bool, Failure> {
    let out = aws
        .ec2()
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(attribute.clone())
        .send()
        .await
        .aws("ec2:DescribeVpcAttribute")?;
    let value = match attribute {
        VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
        _ => out.enable_dns_hostnames(),
    };
    Ok(value
        .and_then(AttributeBooleanValue::value)
        .unwrap_or(false))
}

impl NetworkGroup {
    /// Every managed part tagged for this environment. Subnets, route tables and security
    /// groups live in a VPC, so without one only a gateway can be left (by a create
    /// interrupted between CreateInternetGateway and CreateVpc's successor).
    async fn observe_managed(&self, aws: &AwsSession) -> Result<ObservedManaged, Failure> {
        let ec2 = aws.ec2();
        let mut o = ObservedManaged::default();
        let vpcs = ec2
            .describe_vpcs()
            .set_filters(Some(self.filters(Part::Vpc)))
            .send()
            .await
            .aws("ec2:DescribeVpcs")?;
        for v in vpcs.vpcs() {
            let Some(id) = v.vpc_id() else { continue };
            o.vpcs.push(ObservedVpc {
                id: id.to_string(),
                cidr: v.cidr_block().unwrap_or_default().to_string(),
                dns_support: dns_attribute(aws, id, VpcAttributeName::EnableDnsSupport).await?,
                dns_hostnames: dns_attribute(aws, id, VpcAttributeName::EnableDnsHostnames).await?,
                tags: tag_map(v.tags()),
            });
        }
        let gateways = ec2
            .describe_internet_gateways()
            .set_filters(Some(self.filters(Part::InternetGateway)))
            .send()
            .await
            .aws("ec2:DescribeInternetGateways")?;
        o.gateways = gateways
            .internet_gateways()
            .iter()
            .filter_map(|g| {
                Some(ObservedGateway {
                    id: g.internet_gateway_id()?.to_string(),
                    attached: g
                        .attachments()
                        .iter()
                        .filter(|a| {
                            !matches!(
                                a.state().map(|s| s.as_str()),
                                Some("detached" | "detaching")
                            )
                        })
                        .filter_map(|a| a.vpc_id().map(str::to_string))
                        .collect(),
                    tags: tag_map(g.tags()),
                })
            })
            .collect();
        if o.vpcs.is_empty() {
            return Ok(o);
        }
        let subnets = ec2
            .describe_subnets()
            .set_filters(Some(self.filters(Part::Subnet)))
            .send()
            .await
            .aws("ec2:DescribeSubnets")?;
        o.subnets = subnets
            .subnets()
            .iter()
            .filter_map(|s| {
                let tags = tag_map(s.tags());
                Some(ObservedSubnet {
                    id: s.subnet_id()?.to_string(),
                    vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                    cidr: s.cidr_block().unwrap_or_default().to_string(),
                    zone: s.availability_zone().unwrap_or_default().to_string(),
                    index: tags.get(SUBNET_INDEX_KEY).and_then(|i| i.parse().ok()),
                    tags,
                })
            })
            .collect();
        let tables = ec2
            .describe_route_tables()
            .set_filters(Some(self.filters(Part::RouteTable)))
            .send()
            .await
            .aws("ec2:DescribeRouteTables")?;
        o.route_tables = tables
            .route_tables()
            .iter()
            .filter_map(|t| {
                Some(ObservedRouteTable {
                    id: t.route_table_id()?.to_string(),
                    vpc_id: t.vpc_id().unwrap_or_default().to_string(),
                    routes: t
                        .routes()
                        .iter()
                        .filter_map(|r| {
                            Some(ObservedRoute {
                                destination: r.destination_cidr_block()?.to_string(),
                                gateway_id: r.gateway_id().map(str::to_string),
                            })
                        })
                        .collect(),
                    associations: t
                        .associations()
                        .iter()
                        .filter(|a| a.main() != Some(true))
                        .filter_map(|a| {
                            Some(ObservedAssociation {
                                id: a.route_table_association_id()?.to_string(),
                                subnet_id: a.subnet_id().map(str::to_string),
                            })
                        })
                        .collect(),
                    tags: tag_map(t.tags()),
                })
            })
            .collect();
        let groups = ec2
            .describe_security_groups()
            .set_filters(Some(self.filters(Part::SecurityGroup)))
            .send()
            .await
            .aws("ec2:DescribeSecurityGroups")?;
        o.security_groups = groups
            .security_groups()
            .iter()
            .filter_map(|g| {
                Some(ObservedSecurityGroup {
                    id: g.group_id()?.to_string(),
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    ingress: rules(g.ip_permissions()),
                    egress: rules(g.ip_permissions_egress()),
                    tags: tag_map(g.tags()),
                })
            })
            .collect();
        Ok(o)
    }

    /// The existing subnets and security groups the spec names, as this account and region
    /// have them (filters, so an ID that does not exist is simply absent).
    async fn observe_existing(
        &self,
        aws: &AwsSession,
        subnet_ids: &[String],
        group_ids: &[String],
    ) -> Result<ObservedExisting, Failure> {
        let ec2 = aws.ec2();
        let subnets = ec2
            .describe_subnets()
            .filters(filter("subnet-id", subnet_ids.iter().cloned()))
            .send()
            .await
            .aws("ec2:DescribeSubnets")?;
        let groups = ec2
            .describe_security_groups()
            .filters(filter("group-id", group_ids.iter().cloned()))
            .send()
            .await
            .aws("ec2:DescribeSecurityGroups")?;
        Ok(ObservedExisting {
            subnets: subnets
                .subnets()
                .iter()
                .filter_map(|s| {
                    Some(Found {
                        id: s.subnet_id()?.to_string(),
                        vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                    })
                })
                .collect(),
            security_groups: groups
                .security_groups()
                .iter()
                .filter_map(|g| {
                    Some(Found {
                        id: g.group_id()?.to_string(),
                        vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    })
                })
                .collect(),
        })
    }

    /// Zones for the subnets `changes` create, keeping the zones of the subnets that stay.
    async fn zones_for(
        &self,
        aws: &AwsSession,
        m: &Managed,
        state: &ObservedManaged,
        changes: &[Change],
    ) -> Result<BTreeMap<usize, String>, Failure> {
        let new: Vec<usize> = changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateSubnet { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        if new.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = aws
            .ec2()
            .describe_availability_zones()
            .filters(filter("state", ["available".to_string()]))
            .filters(filter("zone-type", ["availability-zone".to_string()]))
            .send()
            .await
            .aws("ec2:DescribeAvailabilityZones")?;
        let zones: Vec<Zone> = out
            .availability_zones()
            .iter()
            .map(|z| Zone {
                name: z.zone_name().unwrap_or_default().to_string(),
                state: z
                    .state()
                    .map(|s| s.as_str())
                    .unwrap_or_default()
                    .to_string(),
                zone_type: z.zone_type().unwrap_or_default().to_string(),
            })
            .collect();
        let p = primary(state, Some(&m.cidr.to_string()));
        let kept: BTreeMap<usize, String> = p
            .subnets
            .iter()
            .filter(|(index, _)| m.subnets.contains_key(index))
            .map(|(index, position)| (*index, state.subnets[*position].zone.clone()))
            .collect();
        desired::assign_zones(&zones, &kept, &new).map_err(|e| {
            Failure::terminal(
                "NotEnoughAvailabilityZones",
                format!(
                    "{e}: lower network.managed.availabilityZones of {}",
                    self.env.name()
                ),
            )
        })
    }

    /// Applies `changes` in order; returns the state they leave (what `produced` reads).
    async fn apply(
        &self,
        aws: &AwsSession,
        d: &Network,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<Observed, Failure> {
        let mut state = o.clone();
        let mut refusal = None;
        let zones = match d {
            Network::Managed(m) => self.zones_for(aws, m, &state.managed, &changes).await?,
            Network::Existing(_) => BTreeMap::new(),
        };
        for change in changes {
            match change {
                Change::Refuse { reason, message } => {
                    refusal.get_or_insert(Failure::terminal(reason, message));
                }
                Change::Remove(parts) => {
                    if let Some(why) = teardown(aws, &parts, &mut state.managed).await? {
                        return Err(Failure::in_progress(
                            "WaitingForNetworkRelease",
                            format!("removing the unused network parts: {why}"),
                            RELEASE_RETRY,
                        ));
                    }
                }
                other => {
                    if let Network::Managed(m) = d {
                        self.apply_managed(aws, m, &mut state.managed, &zones, other)
                            .await?;
                    }
                }
            }
        }
        match refusal {
            Some(f) => Err(f),
            None => Ok(state),
        }
    }

    async fn apply_managed(
        &self,
        aws: &AwsSession,
        m: &Managed,
        state: &mut ObservedManaged,
        zones: &BTreeMap<usize, String>,
        change: Change,
    ) -> Result<(), Failure> {
        let ec2 = aws.ec2();
        let cidr = m.cidr.to_string();
        let p = primary(state, Some(&cidr));
        let missing = |what: &str| {
            Failure::terminal(
                "NetworkPartMissing",
                format!("no {what} to apply {change:?} to; the next reconcile observes again"),
            )
        };
        let vpc_id = p.vpc.map(|i| state.vpcs[i].id.clone());
        let gateway_id = p.gateway.map(|i| state.gateways[i].id.clone());
        let table_id = p.route_table.map(|i| state.route_tables[i].id.clone());
        let group_id = p
            .security_group
            .map(|i| state.security_groups[i].id.clone());
        match &change {
            Change::CreateVpc => {
                let out = ec2
                    .create_vpc()
                    .cidr_block(&cidr)
                    .tag_specifications(tag_spec(ResourceType::Vpc, &m.tags(Part::Vpc, None).tags))
                    .send()
                    .await
                    .aws("ec2:CreateVpc")?;
                let id = out
                    .vpc()
                    .and_then(|v| v.vpc_id())
                    .ok_or_else(|| missing("VPC ID in the CreateVpc answer"))?;
                state.vpcs.push(ObservedVpc {
                    id: id.to_string(),
                    cidr,
                    // AWS's defaults for a new VPC.
                    dns_support: true,
                    dns_hostnames: false,
                    tags: m.tags(Part::Vpc, None).tags,
                });
            }
            Change::EnableDnsSupport | Change::EnableDnsHostnames => {
                let vpc = vpc_id.ok_or_else(|| missing("VPC"))?;
                let on = AttributeBooleanValue::builder().value(true).build();
                let support = matches!(change, Change::EnableDnsSupport);
                consistent("ec2:ModifyVpcAttribute", || {
                    let call = ec2.modify_vpc_attribute().vpc_id(&vpc);
                    if support {
                        call.enable_dns_support(on.clone()).send()
                    } else {
                        call.enable_dns_hostnames(on.clone()).send()
                    }
                })
                .await?;
                if let Some(v) = state.vpcs.iter_mut().find(|v| v.id == vpc) {
                    if support {
                        v.dns_support = true;
                    } else {
                        v.dns_hostnames = true;
                    }
                }
            }
            Change::CreateGateway => {
                let tags = m.tags(Part::InternetGateway, None).tags;
                let out = ec2
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ResourceType::InternetGateway, &tags))
                    .send()
                    .await
                    .aws("ec2:CreateInternetGateway")?;
                let id = out
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .ok_or_else(|| missing("gateway ID in the CreateInternetGateway answer"))?;
                state.gateways.push(ObservedGateway {
                    id: id.to_string(),
                    attached: Vec::new(),
                    tags,
                });
            }
            Change::AttachGateway => {
                let (vpc, gateway) = (
                    vpc_id.ok_or_else(|| missing("VPC"))?,
                    gateway_id.ok_or_else(|| missing("internet gateway"))?,
                );
                consistent("ec2:AttachInternetGateway", || {
                    ec2.attach_internet_gateway()
                        .internet_gateway_id(&gateway)
                        .vpc_id(&vpc)
                        .send()
                })
                .await?;
                if let Some(g) = state.gateways.iter_mut().find(|g| g.id == gateway) {
                    g.attached.push(vpc);
                }
            }
            Change::CreateSubnet { index, cidr: block } => {
                let vpc = vpc_id.ok_or_else(|| missing("VPC"))?;
                let zone = zones
                    .get(index)
                    .cloned()
                    .ok_or_else(|| missing("availability zone"))?;
                let tags = m.tags(Part::Subnet, Some(*index)).tags;
                let out = consistent("ec2:CreateSubnet", || {
                    ec2.create_subnet()
                        .vpc_id(&vpc)
                        .cidr_block(block.to_string())
                        .availability_zone(&zone)
                        .tag_specifications(tag_spec(ResourceType::Subnet, &tags))
                        .send()
                })
                .await?;
                let id = out
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .ok_or_else(|| missing("subnet ID in the CreateSubnet answer"))?;
                state.subnets.push(ObservedSubnet {
                    id: id.to_string(),
                    vpc_id: vpc,
                    cidr: block.to_string(),
                    zone,
                    index: Some(*index),
                    tags,
                });
            }
            Change::CreateRouteTable => {
                let vpc = vpc_id.ok_or_else(|| missing("VPC"))?;
                let tags = m.tags(Part::RouteTable, None).tags;
                let out = consistent("ec2:CreateRouteTable", || {
                    ec2.create_route_table()
                        .vpc_id(&vpc)
                        .tag_specifications(tag_spec(ResourceType::RouteTable, &tags))
                        .send()
                })
                .await?;
                let id = out
                    .route_table()
                    .and_then(|t| t.route_table_id())
                    .ok_or_else(|| missing("route table ID in the CreateRouteTable answer"))?;
                state.route_tables.push(ObservedRouteTable {
                    id: id.to_string(),
                    vpc_id: vpc,
                    routes: vec![ObservedRoute {
                        destination: cidr.clone(),
                        gateway_id: Some("local".into()),
                    }],
                    associations: Vec::new(),
                    tags,
                });
            }
            Change::CreateDefaultRoute | Change::ReplaceDefaultRoute => {
                let (table, gateway) = (
                    table_id.ok_or_else(|| missing("route table"))?,
                    gateway_id.ok_or_else(|| missing("internet gateway"))?,
                );
                if matches!(change, Change::CreateDefaultRoute) {
                    consistent("ec2:CreateRoute", || {
                        ec2.create_route()
                            .route_table_id(&table)
                            .destination_cidr_block("0.0.0.0/0")
                            .gateway_id(&gateway)
                            .send()
                    })
                    .await?;
                } else {
                    consistent("ec2:ReplaceRoute", || {
                        ec2.replace_route()
                            .route_table_id(&table)
                            .destination_cidr_block("0.0.0.0/0")
                            .gateway_id(&gateway)
                            .send()
                    })
                    .await?;
                }
                if let Some(t) = state.route_tables.iter_mut().find(|t| t.id == table) {
                    t.routes.retain(|r| r.destination != "0.0.0.0/0");
                    t.routes.push(ObservedRoute {
                        destination: "0.0.0.0/0".into(),
                        gateway_id: Some(gateway),
                    });
                }
            }
            Change::Associate { index } => {
                let table = table_id.ok_or_else(|| missing("route table"))?;
                let subnet = p
                    .subnets
                    .get(index)
                    .map(|i| state.subnets[*i].id.clone())
                    .ok_or_else(|| missing("subnet"))?;
                let id = self.associate(aws, &table, &subnet).await?;
                if let Some(t) = state.route_tables.iter_mut().find(|t| t.id == table) {
                    t.associations.push(ObservedAssociation {
                        id,
                        subnet_id: Some(subnet),
                    });
                }
            }
            Change::CreateSecurityGroup => {
                let vpc = vpc_id.ok_or_else(|| missing("VPC"))?;
                let tags = m.tags(Part::SecurityGroup, None).tags;
                let out = consistent("ec2:CreateSecurityGroup", || {
                    ec2.create_security_group()
                        .group_name(&m.security_group_name)
                        .description(&m.security_group_description)
                        .vpc_id(&vpc)
                        .tag_specifications(tag_spec(ResourceType::SecurityGroup, &tags))
                        .send()
                })
                .await?;
                let id = out
                    .group_id()
                    .ok_or_else(|| missing("group ID in the CreateSecurityGroup answer"))?;
                state.security_groups.push(ObservedSecurityGroup {
                    id: id.to_string(),
                    vpc_id: vpc,
                    ingress: BTreeSet::new(),
                    // AWS gives every new group the allow-all egress rule.
                    egress: BTreeSet::from([Rule::all_traffic_to("0.0.0.0/0")]),
                    tags,
                });
            }
            Change::Authorize(rule)
            | Change::Revoke(rule)
            | Change::AuthorizeEgress(rule)
            | Change::RevokeEgress(rule) => {
                let group = group_id.ok_or_else(|| missing("security group"))?;
                self.change_rule(aws, &group, &change, rule).await?;
                if let Some(g) = state.security_groups.iter_mut().find(|g| g.id == group) {
                    match &change {
                        Change::Authorize(_) => g.ingress.insert(rule.clone()),
                        Change::Revoke(_) => g.ingress.remove(rule),
                        Change::AuthorizeEgress(_) => g.egress.insert(rule.clone()),
                        _ => g.egress.remove(rule),
                    };
                }
            }
            Change::Tags { ids, plan } => {
                if !plan.set.is_empty() {
                    consistent("ec2:CreateTags", || {
                        ec2.create_tags()
                            .set_resources(Some(ids.clone()))
                            .set_tags(Some(ec2_tags(&plan.set)))
                            .send()
                    })
                    .await?;
                }
                if !plan.remove.is_empty() {
                    ec2.delete_tags()
                        .set_resources(Some(ids.clone()))
                        .set_tags(Some(
                            plan.remove
                                .iter()
                                .map(|k| Tag::builder().key(k).build())
                                .collect(),
                        ))
                        .send()
                        .await
                        .aws("ec2:DeleteTags")?;
                }
            }
            Change::Remove(_) | Change::Refuse { .. } => {}
        }
        Ok(())
    }

    /// One rule authorized or revoked. A rule already there (or already gone) is what was
    /// wanted: another reconcile of the same spec got there first.
    async fn change_rule(
        &self,
        aws: &AwsSession,
        group: &str,
        change: &Change,
        rule: &Rule,
    ) -> Result<(), Failure> {
        let ec2 = aws.ec2();
        let ip = permission(rule);
        const DUPLICATE: &[&str] = &["InvalidPermission.Duplicate"];
        const GONE: &[&str] = &["InvalidPermission.NotFound"];
        match change {
            Change::Authorize(_) => {
                tolerant("ec2:AuthorizeSecurityGroupIngress", DUPLICATE, || {
                    ec2.authorize_security_group_ingress()
                        .group_id(group)
                        .ip_permissions(ip.clone())
                        .send()
                })
                .await
                .map(drop)
            }
            Change::AuthorizeEgress(_) => {
                tolerant("ec2:AuthorizeSecurityGroupEgress", DUPLICATE, || {
                    ec2.authorize_security_group_egress()
                        .group_id(group)
                        .ip_permissions(ip.clone())
                        .send()
                })
                .await
                .map(drop)
            }
            Change::Revoke(_) => tolerant("ec2:RevokeSecurityGroupIngress", GONE, || {
                ec2.revoke_security_group_ingress()
                    .group_id(group)
                    .ip_permissions(ip.clone())
                    .send()
            })
            .await
            .map(drop),
            _ => tolerant("ec2:RevokeSecurityGroupEgress", GONE, || {
                ec2.revoke_security_group_egress()
                    .group_id(group)
                    .ip_permissions(ip.clone())
                    .send()
            })
            .await
            .map(drop),
        }
    }

    /// Associates a subnet with the table; a subnet associated with another table (by hand) is
    /// moved to this one.
    async fn associate(
        &self,
        aws: &AwsSession,
        table: &str,
        subnet: &str,
    ) -> Result<String, Failure> {
        let ec2 = aws.ec2();
        let result = while_unseen(|| {
            ec2.associate_route_table()
                .route_table_id(table)
                .subnet_id(subnet)
                .send()
        })
        .await;
        match result {
            Ok(out) => Ok(out.association_id().unwrap_or_default().to_string()),
            Err(e) if code(&e) == Some("Resource.AlreadyAssociated") => {
                let tables = ec2
                    .describe_route_tables()
                    .filters(filter("association.subnet-id", [subnet.to_string()]))
                    .send()
                    .await
                    .aws("ec2:DescribeRouteTables")?;
                let association = tables
                    .route_tables()
                    .iter()
                    .flat_map(|t| t.associations())
                    .find(|a| a.subnet_id() == Some(subnet))
                    .and_then(|a| a.route_table_association_id())
                    .ok_or_else(|| {
                        Failure::retryable(
                            "AssociationChanged",
                            format!("subnet {subnet} is associated with a route table that cannot be found now"),
                        )
                    })?;
                let out = ec2
                    .replace_route_table_association()
                    .association_id(association)
                    .route_table_id(table)
                    .send()
                    .await
                    .aws("ec2:ReplaceRouteTableAssociation")?;
                Ok(out.new_association_id().unwrap_or_default().to_string())
            }
            Err(e) => Err(classify("ec2:AssociateRouteTable", e)),
        }
    }
}

type Observe = Result<Option<Observed>, Failure>;

impl Group for NetworkGroup {
    type Desired = Network;
    type Observed = Observed;
    type Change = Change;

    fn condition(&self) -> String {
        format!("{}NetworkReady", self.env.title())
    }

    fn kind(&self) -> &'static str {
        match self.env {
            Env::Staging => "staging network",
            Env::Production => "production network",
        }
    }

    fn environment(&self) -> Option<Env> {
        Some(self.env)
    }

    fn provides(&self) -> Vec<Key> {
        let scope = self.env.name();
        vec![
            keys::VPC_ID.scoped(scope),
            keys::SUBNET_IDS.scoped(scope),
            keys::SECURITY_GROUP_IDS.scoped(scope),
            keys::ASSIGN_PUBLIC_IP.scoped(scope),
        ]
    }

    fn predicted(&self, at: &Placement) -> Values {
        let scope = self.env.name();
        match desired::network(&self.ctx, self.env, at) {
            Ok(Network::Managed(_)) => {
                Values::from([(keys::ASSIGN_PUBLIC_IP.scoped(scope), "ENABLED".to_string())])
            }
            Ok(Network::Existing(e)) => Values::from([
                (keys::SUBNET_IDS.scoped(scope), join(&e.subnet_ids)),
                (
                    keys::SECURITY_GROUP_IDS.scoped(scope),
                    join(&e.security_group_ids),
                ),
                (
                    keys::ASSIGN_PUBLIC_IP.scoped(scope),
                    assign_public_ip(e.assign_public_ip).into(),
                ),
            ]),
            Err(_) => Values::new(),
        }
    }

    fn desired(&self, at: &Placement, _inputs: &Values) -> Result<Network, Failure> {
        desired::network(&self.ctx, self.env, at)
            .map_err(|e| Failure::terminal("InvalidNetwork", e))
    }

    async fn observe(&self, aws: &AwsSession) -> Observe {
        let managed = self.observe_managed(aws).await?;
        let existing = match self.ctx.network(self.env).and_then(|n| n.existing.as_ref()) {
            Some(e) => Some(
                self.observe_existing(aws, &e.subnet_ids, &e.security_group_ids)
                    .await?,
            ),
            None => None,
        };
        if managed.is_empty() && existing.is_none() {
            return Ok(None);
        }
        Ok(Some(Observed { managed, existing }))
    }

    fn diff(desired: &Network, observed: &Observed) -> Vec<Change> {
        diff::diff(desired, observed)
    }

    fn describe(
        &self,
        desired: &Network,
        observed: &Observed,
        change: &Change,
    ) -> Vec<crate::engine::Drift> {
        diff::describe(desired, observed, change)
    }

    fn describe_removal(&self, observed: &Observed) -> Vec<crate::engine::Drift> {
        diff::removal(&observed.managed)
    }

    async fn create(&self, aws: &AwsSession, d: &Network) -> Result<Produced, Failure> {
        let none = Observed::default();
        let state = self.apply(aws, d, &none, diff::diff(d, &none)).await?;
        Ok(self.produced(&Placement::of(aws), d, &state))
    }

    async fn update(
        &self,
        aws: &AwsSession,
        d: &Network,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<(), Failure> {
        self.apply(aws, d, o, changes).await.map(|_| ())
    }

    async fn update_settled(
        &self,
        aws: &AwsSession,
        d: &Network,
        o: &Observed,
        changes: Vec<Change>,
    ) -> Result<Option<Observed>, Failure> {
        self.apply(aws, d, o, changes).await.map(Some)
    }

    async fn delete(&self, aws: &AwsSession, o: Observed) -> Result<Removal, Failure> {
        let mut state = o.managed.clone();
        Ok(match teardown(aws, &o.managed, &mut state).await? {
            Some(why) => Removal::Pending(why),
            None => Removal::Gone,
        })
    }

    fn produced(&self, at: &Placement, d: &Network, o: &Observed) -> Produced {
        let scope = self.env.name();
        match d {
            Network::Managed(m) => {
                let state = &o.managed;
                let p = primary(state, Some(&m.cidr.to_string()));
                let mut produced =
                    Produced::default().value(keys::ASSIGN_PUBLIC_IP.scoped(scope), "ENABLED");
                let subnets: BTreeSet<String> = p
                    .subnets
                    .iter()
                    .filter(|(index, _)| m.subnets.contains_key(index))
                    .map(|(_, i)| state.subnets[*i].id.clone())
                    .collect();
                if let Some(v) = p.vpc.map(|i| &state.vpcs[i]) {
                    produced = produced.value(keys::VPC_ID.scoped(scope), &v.id).owns(
                        Part::Vpc.kind(),
                        arn(at, Part::Vpc, &v.id),
                        at,
                    );
                }
                if let Some(g) = p.gateway.map(|i| &state.gateways[i]) {
                    produced = produced.owns(
                        Part::InternetGateway.kind(),
                        arn(at, Part::InternetGateway, &g.id),
                        at,
                    );
                }
                for id in &subnets {
                    produced = produced.owns(Part::Subnet.kind(), arn(at, Part::Subnet, id), at);
                }
                produced = produced.value(keys::SUBNET_IDS.scoped(scope), join(&subnets));
                if let Some(t) = p.route_table.map(|i| &state.route_tables[i]) {
                    produced = produced.owns(
                        Part::RouteTable.kind(),
                        arn(at, Part::RouteTable, &t.id),
                        at,
                    );
                }
                if let Some(g) = p.security_group.map(|i| &state.security_groups[i]) {
                    produced = produced
                        .value(keys::SECURITY_GROUP_IDS.scoped(scope), &g.id)
                        .owns(
                            Part::SecurityGroup.kind(),
                            arn(at, Part::SecurityGroup, &g.id),
                            at,
                        );
                }
                produced
            }
            Network::Existing(e) => {
                let mut produced = Produced::default()
                    .value(keys::SUBNET_IDS.scoped(scope), join(&e.subnet_ids))
                    .value(
                        keys::SECURITY_GROUP_IDS.scoped(scope),
                        join(&e.security_group_ids),
                    )
                    .value(
                        keys::ASSIGN_PUBLIC_IP.scoped(scope),
                        assign_public_ip(e.assign_public_ip),
                    );
                if let Some(vpc) = o.existing.as_ref().and_then(existing_vpc) {
                    produced = produced.value(keys::VPC_ID.scoped(scope), vpc);
                }
                produced
            }
        }
    }
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter().cloned().collect::<Vec<_>>().join(",")
}

fn assign_public_ip(enabled: bool) -> &'static str {
    if enabled { "ENABLED" } else { "DISABLED" }
}
