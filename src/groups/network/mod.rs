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

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType,
    Tag, TagSpecification, UserIdGroupPair, VpcAttributeName,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use self::desired::{Existing, Managed, Network, Part, Peer, Rule, SUBNET_INDEX_KEY, Zone};
use self::diff::{
    Change, Found, Observed, ObservedAssociation, ObservedExisting, ObservedGateway,
    ObservedManaged, ObservedRoute, ObservedRouteTable, ObservedSecurityGroup, ObservedSubnet,
    ObservedVpc, existing_vpc, primary,
};
use super::kit::{TagPlan, apply_tags};
use super::{Group, Names, Placement, Produced, Update, Updated, keys};
use crate::aws::tags::{from_sdk, to_sdk};
use crate::aws::{AwsResultExt, AwsSession, code, found, while_unseen};
use crate::desired::tags::{ENVIRONMENT_KEY, OWNER_KEY};
use crate::desired::{Env, PipelineContext};
use crate::engine::{Class, Drift, Failure, Key, Removal, Values};

/// How soon to look again while network interfaces (of tasks being stopped) still hold a
/// security group, subnet or the VPC.
const RELEASE_RETRY: Duration = Duration::from_secs(30);
/// EC2 is eventually consistent: a resource just created may not be found by the next call.
const NOT_YET_VISIBLE: [&str; 5] = [
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidGroup.NotFound",
];
/// Still not visible after `while_unseen` waited: in progress, looked at again in 10 s.
fn unseen_in_progress() -> [(&'static str, Class); 5] {
    NOT_YET_VISIBLE.map(|c| (c, Class::InProgress(Duration::from_secs(10))))
}
/// The default route's destination, and where a new group's egress rule goes.
const ANYWHERE: &str = "0.0.0.0/0";

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

    /// Filters matching what this pipeline's networks (every environment's) tagged as `part`:
    /// one Describe per part and reconcile serves the environments sharing an account.
    fn filters(&self, part: Part) -> Vec<Filter> {
        let owner = self.ctx.owner();
        [(OWNER_KEY, owner.as_str()), (desired::PART_KEY, part.tag())]
            .map(|(key, value)| filter(&format!("tag:{key}"), [value.to_string()]))
            .into()
    }

    /// Whether a part carrying `tags` is this environment's.
    fn is_mine(&self, tags: &[aws_sdk_ec2::types::Tag]) -> bool {
        tags.iter()
            .any(|t| t.key() == Some(ENVIRONMENT_KEY) && t.value() == Some(self.env.name()))
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

fn rules(permissions: &[IpPermission]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in permissions {
        let protocol = p.ip_protocol().unwrap_or("-1");
        let ports = match protocol {
            "-1" => (None, None),
            _ => (p.from_port(), p.to_port()),
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
        out.extend(peers.map(|peer| Rule {
            protocol: protocol.to_string(),
            from_port: ports.0,
            to_port: ports.1,
            peer,
        }));
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
/// For creates EC2 cannot make idempotent (CreateVpc and CreateInternetGateway take no client
/// token): no SDK retry, since a retry after a lost reply would make a second one. The
/// reconcile fails instead, and the next one finds what the first attempt made by its tags.
fn sent_once() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
}

/// A fresh idempotency token for one create (its SDK retries reuse it).
fn client_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

async fn consistent<T, E, F, Fut>(operation: &str, call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    while_unseen(&NOT_YET_VISIBLE, call)
        .await
        .aws_with(operation, &unseen_in_progress())
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
    match while_unseen(&NOT_YET_VISIBLE, call).await {
        Err(e) if code(&e).is_some_and(|c| done.contains(&c)) => Ok(None),
        result => result.aws_with(operation, &unseen_in_progress()).map(Some),
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
    // A deletion done, or already gone; or refused because something (a task's network
    // interface) still uses the resource.
    macro_rules! removed {
        ($call:expr, $op:expr, $not_found:expr, $what:expr) => {
            match $call.await {
                Err(e) if code(&e) == Some("DependencyViolation") => {
                    return Ok(Some(format!(
                        "{} is still in use: network interfaces of stopped tasks are released within minutes; anything else made in it by hand must be removed by hand",
                        $what
                    )));
                }
                other => found(other, $op, $not_found)?,
            };
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
            disassociate(&ec2, &a.id).await?;
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
        let of_subnet = |a: &ObservedAssociation| a.subnet_id.as_deref() == Some(s.id.as_str());
        for table in &mut state.route_tables {
            for a in table.associations.iter().filter(|a| of_subnet(a)) {
                disassociate(&ec2, &a.id).await?;
            }
            table.associations.retain(|a| !of_subnet(a));
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

/// Ends a route table association (already ended: done).
async fn disassociate(ec2: &Client, association: &str) -> Result<(), Failure> {
    found(
        ec2.disassociate_route_table()
            .association_id(association)
            .send()
            .await,
        "ec2:DisassociateRouteTable",
        &["InvalidAssociationID.NotFound"],
    )
    .map(drop)
}

/// Associates a subnet with the table; a subnet associated with another table (by hand) is
/// moved to this one. Returns the association's ID.
async fn associate(ec2: &Client, table: &str, subnet: &str) -> Result<String, Failure> {
    let associated = while_unseen(&NOT_YET_VISIBLE, || {
        ec2.associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet)
            .send()
    })
    .await
    .aws_tolerating("ec2:AssociateRouteTable", &["Resource.AlreadyAssociated"])?;
    if let Some(out) = associated {
        return Ok(out.association_id().unwrap_or_default().to_string());
    }
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
                format!(
                    "subnet {subnet} is associated with a route table that cannot be found now"
                ),
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

async fn dns_attribute(
    ec2: &Client,
    vpc: &str,
    attribute: VpcAttributeName,
) -> Result<bool, Failure> {
    let out = ec2
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
        // One Describe call per part and reconcile, filtered to what this pipeline tagged as
        // `part`; each environment keeps what it tagged as its own.
        let owner = self.ctx.owner();
        macro_rules! tagged {
            ($method:ident, $items:ident, $part:expr, $op:literal) => {
                aws.once_per_reconcile(&format!("{} {owner}", $op), || async {
                    ec2.$method()
                        .set_filters(Some(self.filters($part)))
                        .send()
                        .await
                        .aws($op)
                })
                .await?
                .$items()
                .iter()
                .filter(|item| self.is_mine(item.tags()))
                .cloned()
                .collect::<Vec<_>>()
            };
        }
        let mut o = ObservedManaged::default();
        let vpcs = tagged!(describe_vpcs, vpcs, Part::Vpc, "ec2:DescribeVpcs");
        for v in &vpcs {
            let Some(id) = v.vpc_id() else { continue };
            o.vpcs.push(ObservedVpc {
                id: id.to_string(),
                cidr: v.cidr_block().unwrap_or_default().to_string(),
                dns_support: dns_attribute(&ec2, id, VpcAttributeName::EnableDnsSupport).await?,
                dns_hostnames: dns_attribute(&ec2, id, VpcAttributeName::EnableDnsHostnames)
                    .await?,
                tags: from_sdk(v.tags()),
            });
        }
        let gateways = tagged!(
            describe_internet_gateways,
            internet_gateways,
            Part::InternetGateway,
            "ec2:DescribeInternetGateways"
        );
        o.gateways = gateways
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
                    tags: from_sdk(g.tags()),
                })
            })
            .collect();
        if o.vpcs.is_empty() {
            return Ok(o);
        }
        let subnets = tagged!(
            describe_subnets,
            subnets,
            Part::Subnet,
            "ec2:DescribeSubnets"
        );
        o.subnets = subnets
            .iter()
            .filter_map(|s| {
                let tags = from_sdk(s.tags());
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
        let tables = tagged!(
            describe_route_tables,
            route_tables,
            Part::RouteTable,
            "ec2:DescribeRouteTables"
        );
        o.route_tables = tables
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
                    tags: from_sdk(t.tags()),
                })
            })
            .collect();
        let groups = tagged!(
            describe_security_groups,
            security_groups,
            Part::SecurityGroup,
            "ec2:DescribeSecurityGroups"
        );
        o.security_groups = groups
            .iter()
            .filter_map(|g| {
                Some(ObservedSecurityGroup {
                    id: g.group_id()?.to_string(),
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    ingress: rules(g.ip_permissions()),
                    egress: rules(g.ip_permissions_egress()),
                    tags: from_sdk(g.tags()),
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
        let found = |id: Option<&str>, vpc: Option<&str>| {
            Some(Found {
                id: id?.to_string(),
                vpc_id: vpc.unwrap_or_default().to_string(),
            })
        };
        Ok(ObservedExisting {
            subnets: subnets
                .subnets()
                .iter()
                .filter_map(|s| found(s.subnet_id(), s.vpc_id()))
                .collect(),
            security_groups: groups
                .security_groups()
                .iter()
                .filter_map(|g| found(g.group_id(), g.vpc_id()))
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
        let kept: BTreeMap<usize, String> = primary(state, m)
            .subnets
            .iter()
            .map(|(index, s)| (*index, s.zone.clone()))
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
}

/// One change applied to the managed network. `state` is what the changes so far left: the
/// change finds the parts it works on there (by kind; subnets by index) and records what it
/// made there, with the IDs EC2 assigned, for the next change and for `produced`.
struct Apply<'a> {
    ec2: Client,
    m: &'a Managed,
    zones: &'a BTreeMap<usize, String>,
    state: &'a mut ObservedManaged,
    change: &'a Change,
}

impl Apply<'_> {
    async fn run(mut self) -> Result<(), Failure> {
        match self.change {
            Change::CreateVpc => self.create_vpc().await,
            Change::EnableDnsSupport => self.enable_dns(true).await,
            Change::EnableDnsHostnames => self.enable_dns(false).await,
            Change::CreateGateway => self.create_gateway().await,
            Change::AttachGateway => self.attach_gateway().await,
            Change::CreateSubnet { index, cidr } => {
                self.create_subnet(*index, cidr.to_string()).await
            }
            Change::CreateRouteTable => self.create_route_table().await,
            Change::CreateDefaultRoute => self.default_route(false).await,
            Change::ReplaceDefaultRoute => self.default_route(true).await,
            Change::Associate { index } => self.associate(*index).await,
            Change::CreateSecurityGroup => self.create_security_group().await,
            Change::Authorize(rule)
            | Change::Revoke(rule)
            | Change::AuthorizeEgress(rule)
            | Change::RevokeEgress(rule) => self.rule(rule).await,
            Change::Tags { ids, plan } => self.tags(ids, plan).await,
            Change::Remove(_) | Change::Refuse { .. } => Ok(()),
        }
    }

    fn missing(&self, what: &str) -> Failure {
        let change = self.change;
        let message =
            format!("no {what} to apply {change:?} to; the next reconcile observes again");
        Failure::terminal("NetworkPartMissing", message)
    }

    /// The ID of the network's one `part` (`what`, in the message when there is none).
    fn id(&self, part: Part, what: &str) -> Result<String, Failure> {
        let p = primary(self.state, self.m);
        p.one(part)
            .map(|(id, _)| id.to_string())
            .ok_or_else(|| self.missing(what))
    }

    /// The ID EC2 assigned (`what`), from a create call's answer.
    fn assigned(&self, id: Option<&str>, what: &str) -> Result<String, Failure> {
        id.map(str::to_string).ok_or_else(|| self.missing(what))
    }

    /// A new part's tags, and the tag specification that creates it with them.
    fn tagged(
        &self,
        part: Part,
        index: Option<usize>,
    ) -> Result<(BTreeMap<String, String>, TagSpecification), Failure> {
        let tags = self.m.tags(part, index).tags;
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::from(part.resource_type()))
            .set_tags(Some(to_sdk(&tags)?))
            .build();
        Ok((tags, spec))
    }

    async fn create_vpc(&mut self) -> Result<(), Failure> {
        let cidr = self.m.cidr.to_string();
        let (tags, spec) = self.tagged(Part::Vpc, None)?;
        let out = self
            .ec2
            .create_vpc()
            .cidr_block(&cidr)
            .tag_specifications(spec)
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .aws("ec2:CreateVpc")?;
        let id = out.vpc().and_then(|v| v.vpc_id());
        let id = self.assigned(id, "VPC ID in the CreateVpc answer")?;
        self.state.vpcs.push(ObservedVpc {
            id,
            cidr,
            // AWS's defaults for a new VPC.
            dns_support: true,
            dns_hostnames: false,
            tags,
        });
        Ok(())
    }

    /// DNS support (else hostnames) switched on.
    async fn enable_dns(&mut self, support: bool) -> Result<(), Failure> {
        let vpc = self.id(Part::Vpc, "VPC")?;
        let on = AttributeBooleanValue::builder().value(true).build();
        consistent("ec2:ModifyVpcAttribute", || {
            self.ec2
                .modify_vpc_attribute()
                .vpc_id(&vpc)
                .set_enable_dns_support(support.then(|| on.clone()))
                .set_enable_dns_hostnames((!support).then(|| on.clone()))
                .send()
        })
        .await?;
        if let Some(v) = self.state.vpcs.iter_mut().find(|v| v.id == vpc) {
            v.dns_support |= support;
            v.dns_hostnames |= !support;
        }
        Ok(())
    }

    async fn create_gateway(&mut self) -> Result<(), Failure> {
        let (tags, spec) = self.tagged(Part::InternetGateway, None)?;
        let out = self
            .ec2
            .create_internet_gateway()
            .tag_specifications(spec)
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .aws("ec2:CreateInternetGateway")?;
        let id = out.internet_gateway().and_then(|g| g.internet_gateway_id());
        let id = self.assigned(id, "gateway ID in the CreateInternetGateway answer")?;
        self.state.gateways.push(ObservedGateway {
            id,
            attached: Vec::new(),
            tags,
        });
        Ok(())
    }

    async fn attach_gateway(&mut self) -> Result<(), Failure> {
        let vpc = self.id(Part::Vpc, "VPC")?;
        let gateway = self.id(Part::InternetGateway, "internet gateway")?;
        // Already attached: the SDK's retry of an attach whose reply was lost (the gateway is
        // the pipeline's own; where it is attached is read on the next reconcile).
        tolerant(
            "ec2:AttachInternetGateway",
            &["Resource.AlreadyAssociated"],
            || {
                self.ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(&gateway)
                    .vpc_id(&vpc)
                    .send()
            },
        )
        .await?;
        if let Some(g) = self.state.gateways.iter_mut().find(|g| g.id == gateway) {
            g.attached.push(vpc);
        }
        Ok(())
    }

    async fn create_subnet(&mut self, index: usize, cidr: String) -> Result<(), Failure> {
        let vpc = self.id(Part::Vpc, "VPC")?;
        let zone = self
            .zones
            .get(&index)
            .cloned()
            .ok_or_else(|| self.missing("availability zone"))?;
        let (tags, spec) = self.tagged(Part::Subnet, Some(index))?;
        let out = consistent("ec2:CreateSubnet", || {
            self.ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(&cidr)
                .availability_zone(&zone)
                .tag_specifications(spec.clone())
                .send()
        })
        .await?;
        let id = out.subnet().and_then(|s| s.subnet_id());
        let id = self.assigned(id, "subnet ID in the CreateSubnet answer")?;
        self.state.subnets.push(ObservedSubnet {
            id,
            vpc_id: vpc,
            cidr,
            zone,
            index: Some(index),
            tags,
        });
        Ok(())
    }

    async fn create_route_table(&mut self) -> Result<(), Failure> {
        let vpc = self.id(Part::Vpc, "VPC")?;
        let (tags, spec) = self.tagged(Part::RouteTable, None)?;
        // The SDK's retries of one call carry the same token: EC2 makes one table for it.
        let token = client_token();
        let out = consistent("ec2:CreateRouteTable", || {
            self.ec2
                .create_route_table()
                .vpc_id(&vpc)
                .tag_specifications(spec.clone())
                .client_token(&token)
                .send()
        })
        .await?;
        let id = out.route_table().and_then(|t| t.route_table_id());
        let id = self.assigned(id, "route table ID in the CreateRouteTable answer")?;
        let local = ObservedRoute {
            destination: self.m.cidr.to_string(),
            gateway_id: Some("local".into()),
        };
        self.state.route_tables.push(ObservedRouteTable {
            id,
            vpc_id: vpc,
            routes: vec![local],
            associations: Vec::new(),
            tags,
        });
        Ok(())
    }

    /// The default route to the internet gateway: created, or (`replace`) pointed back at it.
    async fn default_route(&mut self, replace: bool) -> Result<(), Failure> {
        let table = self.id(Part::RouteTable, "route table")?;
        let gateway = self.id(Part::InternetGateway, "internet gateway")?;
        let ec2 = &self.ec2;
        macro_rules! route {
            ($method:ident, $op:literal) => {
                consistent($op, || {
                    ec2.$method()
                        .route_table_id(&table)
                        .destination_cidr_block(ANYWHERE)
                        .gateway_id(&gateway)
                        .send()
                })
                .await
                .map(drop)
            };
        }
        if replace {
            route!(replace_route, "ec2:ReplaceRoute")?;
        } else {
            route!(create_route, "ec2:CreateRoute")?;
        }
        if let Some(t) = self.state.route_tables.iter_mut().find(|t| t.id == table) {
            t.routes.retain(|r| r.destination != ANYWHERE);
            t.routes.push(ObservedRoute {
                destination: ANYWHERE.into(),
                gateway_id: Some(gateway),
            });
        }
        Ok(())
    }

    async fn associate(&mut self, index: usize) -> Result<(), Failure> {
        let table = self.id(Part::RouteTable, "route table")?;
        let subnet = primary(self.state, self.m)
            .subnets
            .get(&index)
            .map(|s| s.id.clone());
        let subnet = subnet.ok_or_else(|| self.missing("subnet"))?;
        let id = associate(&self.ec2, &table, &subnet).await?;
        if let Some(t) = self.state.route_tables.iter_mut().find(|t| t.id == table) {
            t.associations.push(ObservedAssociation {
                id,
                subnet_id: Some(subnet),
            });
        }
        Ok(())
    }

    async fn create_security_group(&mut self) -> Result<(), Failure> {
        let vpc = self.id(Part::Vpc, "VPC")?;
        let (tags, spec) = self.tagged(Part::SecurityGroup, None)?;
        let out = consistent("ec2:CreateSecurityGroup", || {
            self.ec2
                .create_security_group()
                .group_name(&self.m.security_group_name)
                .description(&self.m.security_group_description)
                .vpc_id(&vpc)
                .tag_specifications(spec.clone())
                .send()
        })
        .await?;
        let id = self.assigned(out.group_id(), "group ID in the CreateSecurityGroup answer")?;
        self.state.security_groups.push(ObservedSecurityGroup {
            id,
            vpc_id: vpc,
            ingress: BTreeSet::new(),
            // AWS gives every new group the allow-all egress rule.
            egress: BTreeSet::from([Rule::all_traffic_to(ANYWHERE)]),
            tags,
        });
        Ok(())
    }

    /// One rule authorized or revoked. A rule already there (or already gone) is what was
    /// wanted: another reconcile of the same spec got there first.
    async fn rule(&mut self, rule: &Rule) -> Result<(), Failure> {
        let group = self.id(Part::SecurityGroup, "security group")?;
        let (ec2, ip) = (&self.ec2, permission(rule));
        macro_rules! call {
            ($method:ident, $op:literal, $done:expr) => {
                tolerant($op, &[$done], || {
                    ec2.$method()
                        .group_id(&group)
                        .ip_permissions(ip.clone())
                        .send()
                })
                .await
                .map(drop)
            };
        }
        const DUPLICATE: &str = "InvalidPermission.Duplicate";
        const GONE: &str = "InvalidPermission.NotFound";
        match self.change {
            Change::Authorize(_) => call!(
                authorize_security_group_ingress,
                "ec2:AuthorizeSecurityGroupIngress",
                DUPLICATE
            ),
            Change::AuthorizeEgress(_) => call!(
                authorize_security_group_egress,
                "ec2:AuthorizeSecurityGroupEgress",
                DUPLICATE
            ),
            Change::Revoke(_) => call!(
                revoke_security_group_ingress,
                "ec2:RevokeSecurityGroupIngress",
                GONE
            ),
            _ => call!(
                revoke_security_group_egress,
                "ec2:RevokeSecurityGroupEgress",
                GONE
            ),
        }?;
        if let Some(g) = self
            .state
            .security_groups
            .iter_mut()
            .find(|g| g.id == group)
        {
            match self.change {
                Change::Authorize(_) => g.ingress.insert(rule.clone()),
                Change::Revoke(_) => g.ingress.remove(rule),
                Change::AuthorizeEgress(_) => g.egress.insert(rule.clone()),
                _ => g.egress.remove(rule),
            };
        }
        Ok(())
    }

    /// One tag plan on every resource in `ids`: one CreateTags, one DeleteTags.
    async fn tags(&self, ids: &[String], plan: &TagPlan) -> Result<(), Failure> {
        let ec2 = &self.ec2;
        apply_tags(
            plan.clone(),
            |set| async move {
                let tags: Vec<Tag> = to_sdk(&set)?;
                consistent("ec2:CreateTags", || {
                    ec2.create_tags()
                        .set_resources(Some(ids.to_vec()))
                        .set_tags(Some(tags.clone()))
                        .send()
                })
                .await
                .map(drop)
            },
            |keys| async move {
                let keys = keys.iter().map(|k| Tag::builder().key(k).build());
                ec2.delete_tags()
                    .set_resources(Some(ids.to_vec()))
                    .set_tags(Some(keys.collect()))
                    .send()
                    .await
                    .aws("ec2:DeleteTags")
                    .map(drop)
            },
        )
        .await
    }
}

impl Group for NetworkGroup {
    type Desired = Network;
    type Observed = Observed;

    fn names(&self) -> Names {
        Names::new("NetworkReady", "network")
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
            Ok(Network::Existing(e)) => existing_values(scope, &e),
            Err(_) => Values::new(),
        }
    }

    fn desired(&self, at: &Placement, _inputs: &Values) -> Result<Network, Failure> {
        desired::network(&self.ctx, self.env, at)
            .map_err(|e| Failure::terminal("InvalidNetwork", e))
    }

    async fn observe(&self, aws: &AwsSession) -> Result<Option<Observed>, Failure> {
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

    fn removal(&self, observed: &Observed) -> Option<Vec<Drift>> {
        Some(diff::removal(&observed.managed))
    }

    /// Applies `changes` in order. Returns the state they leave: `produced` needs the IDs EC2
    /// assigned.
    async fn update(&self, aws: &AwsSession, update: Update<'_, Self>) -> Updated<Self> {
        let (d, o, changes) = update.parts();
        let mut state = o.clone();
        let mut refusal = None;
        let zones = match d {
            Network::Managed(m) => self.zones_for(aws, m, &state.managed, &changes).await?,
            Network::Existing(_) => BTreeMap::new(),
        };
        for change in &changes {
            match (change, d) {
                (Change::Refuse { reason, message }, _) => {
                    refusal.get_or_insert(Failure::terminal(reason, message));
                }
                (Change::Remove(parts), _) => {
                    if let Some(why) = teardown(aws, parts, &mut state.managed).await? {
                        return Err(Failure::in_progress(
                            "WaitingForNetworkRelease",
                            format!("removing the unused network parts: {why}"),
                            RELEASE_RETRY,
                        ));
                    }
                }
                (change, Network::Managed(m)) => {
                    let apply = Apply {
                        ec2: aws.ec2(),
                        m,
                        zones: &zones,
                        state: &mut state.managed,
                        change,
                    };
                    apply.run().await?;
                }
                (_, Network::Existing(_)) => {}
            }
        }
        refusal.map_or(Ok(Some(state)), Err)
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
                let p = primary(&o.managed, m);
                let subnets: BTreeSet<String> = p.subnets.values().map(|s| s.id.clone()).collect();
                let mut values = Values::from([
                    (keys::ASSIGN_PUBLIC_IP.scoped(scope), "ENABLED".to_string()),
                    (keys::SUBNET_IDS.scoped(scope), join(&subnets)),
                ]);
                values.extend(p.vpc.map(|v| (keys::VPC_ID.scoped(scope), v.id.clone())));
                let group = p.security_group.map(|g| g.id.clone());
                values.extend(group.map(|id| (keys::SECURITY_GROUP_IDS.scoped(scope), id)));
                // In the order the network is made; subnets by ID.
                let owned = Part::ALL.into_iter().flat_map(|part| match part {
                    Part::Subnet => subnets.iter().map(|id| (part, id.as_str())).collect(),
                    _ => Vec::from_iter(p.one(part).map(|(id, _)| (part, id))),
                });
                let produced = Produced {
                    values,
                    ..Produced::default()
                };
                owned.fold(produced, |produced, (part, id)| {
                    produced.owns(part.kind(), arn(at, part, id), at)
                })
            }
            Network::Existing(e) => {
                let mut values = existing_values(scope, e);
                if let Some(vpc) = o.existing.as_ref().and_then(existing_vpc) {
                    values.insert(keys::VPC_ID.scoped(scope), vpc.into());
                }
                Produced {
                    values,
                    ..Produced::default()
                }
            }
        }
    }
}

/// An existing network's values, all known from the spec but its VPC.
fn existing_values(scope: &'static str, e: &Existing) -> Values {
    let groups = join(&e.security_group_ids);
    let ip = assign_public_ip(e.assign_public_ip).to_string();
    Values::from([
        (keys::SUBNET_IDS.scoped(scope), join(&e.subnet_ids)),
        (keys::SECURITY_GROUP_IDS.scoped(scope), groups),
        (keys::ASSIGN_PUBLIC_IP.scoped(scope), ip),
    ])
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter().cloned().collect::<Vec<_>>().join(",")
}

fn assign_public_ip(enabled: bool) -> &'static str {
    if enabled { "ENABLED" } else { "DISABLED" }
}
