//! How the observed network differs from the desired one. Pure.
//!
//! Everything tagged for the environment is observed. Of each part, one is the network
//! ("primary": the VPC with the desired CIDR, the gateway attached to it, the route table and
//! security group in it, one subnet per index); anything else found (a duplicate left by a
//! create AWS completed but answered with an error, or a whole managed network after a switch
//! to an existing one) is removed, in dependency order.

use std::collections::{BTreeMap, BTreeSet};

use super::desired::{Existing, Ipv4Cidr, Managed, Network, Part, Peer, Rule};
use crate::engine::Drift;
use crate::groups::kit::TagPlan;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedVpc {
    pub id: String,
    pub cidr: String,
    pub dns_support: bool,
    pub dns_hostnames: bool,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedGateway {
    pub id: String,
    /// VPCs it is attached to.
    pub attached: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedSubnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub zone: String,
    /// From the subnet index tag.
    pub index: Option<usize>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRoute {
    pub destination: String,
    pub gateway_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedAssociation {
    pub id: String,
    pub subnet_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRouteTable {
    pub id: String,
    pub vpc_id: String,
    pub routes: Vec<ObservedRoute>,
    pub associations: Vec<ObservedAssociation>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedSecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub ingress: BTreeSet<Rule>,
    pub egress: BTreeSet<Rule>,
    pub tags: BTreeMap<String, String>,
}

/// Every managed part tagged for the environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedManaged {
    pub vpcs: Vec<ObservedVpc>,
    pub gateways: Vec<ObservedGateway>,
    pub subnets: Vec<ObservedSubnet>,
    pub route_tables: Vec<ObservedRouteTable>,
    pub security_groups: Vec<ObservedSecurityGroup>,
}

impl ObservedManaged {
    pub fn is_empty(&self) -> bool {
        self.vpcs.is_empty()
            && self.gateways.is_empty()
            && self.subnets.is_empty()
            && self.route_tables.is_empty()
            && self.security_groups.is_empty()
    }
}

/// An existing subnet or security group as found in the environment's account and region.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    pub id: String,
    pub vpc_id: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedExisting {
    pub subnets: Vec<Found>,
    pub security_groups: Vec<Found>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub managed: ObservedManaged,
    /// With an existing network: what its subnets and security groups are.
    pub existing: Option<ObservedExisting>,
}

/// The parts that make up the network, by their position in `ObservedManaged`'s lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Primary {
    pub vpc: Option<usize>,
    pub gateway: Option<usize>,
    pub route_table: Option<usize>,
    pub security_group: Option<usize>,
    /// Subnet index -> position.
    pub subnets: BTreeMap<usize, usize>,
}

/// Picks the network's parts among what is observed. Deterministic: the VPC with the desired
/// CIDR (else any), lowest ID first; the gateway attached to it (else a detached one); the
/// route table and security group in it; per index, one subnet in it.
pub fn primary(o: &ObservedManaged, cidr: Option<&str>) -> Primary {
    let vpc = lowest(&o.vpcs, |v| &v.id, |v| cidr.is_none_or(|c| v.cidr == c))
        .or_else(|| lowest(&o.vpcs, |v| &v.id, |_| true));
    let vpc_id = vpc.map(|i| o.vpcs[i].id.as_str());
    let in_vpc = |id: &str| Some(id) == vpc_id;
    let gateway = lowest(
        &o.gateways,
        |g| &g.id,
        |g| g.attached.iter().any(|v| in_vpc(v)),
    )
    .or_else(|| lowest(&o.gateways, |g| &g.id, |g| g.attached.is_empty()));
    let route_table = lowest(&o.route_tables, |t| &t.id, |t| in_vpc(&t.vpc_id));
    let security_group = lowest(&o.security_groups, |g| &g.id, |g| in_vpc(&g.vpc_id));
    let mut subnets: BTreeMap<usize, usize> = BTreeMap::new();
    for (position, s) in o.subnets.iter().enumerate() {
        let Some(index) = s.index.filter(|_| in_vpc(&s.vpc_id)) else {
            continue;
        };
        match subnets.get(&index) {
            Some(&other) if o.subnets[other].id <= s.id => {}
            _ => {
                subnets.insert(index, position);
            }
        }
    }
    Primary {
        vpc,
        gateway,
        route_table,
        security_group,
        subnets,
    }
}

/// The position of the item with the lowest ID among those `wanted`.
fn lowest<T>(
    items: &[T],
    id: impl Fn(&T) -> &String,
    wanted: impl Fn(&T) -> bool,
) -> Option<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| wanted(item))
        .min_by(|(_, a), (_, b)| id(a).cmp(id(b)))
        .map(|(i, _)| i)
}

/// What is observed but not part of the network: to be removed.
pub fn strays(o: &ObservedManaged, p: &Primary, wanted_subnets: usize) -> ObservedManaged {
    let kept_subnets: BTreeSet<usize> = p
        .subnets
        .iter()
        .filter(|(index, _)| **index < wanted_subnets)
        .map(|(_, position)| *position)
        .collect();
    let keep = |position: usize, chosen: Option<usize>| chosen == Some(position);
    ObservedManaged {
        vpcs: pick(&o.vpcs, |i| !keep(i, p.vpc)),
        gateways: pick(&o.gateways, |i| !keep(i, p.gateway)),
        subnets: pick(&o.subnets, |i| !kept_subnets.contains(&i)),
        route_tables: pick(&o.route_tables, |i| !keep(i, p.route_table)),
        security_groups: pick(&o.security_groups, |i| !keep(i, p.security_group)),
    }
}

fn pick<T: Clone>(items: &[T], wanted: impl Fn(usize) -> bool) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| wanted(*i))
        .map(|(_, item)| item.clone())
        .collect()
}

/// One EC2 write each (a subnet removal is two), in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateVpc,
    EnableDnsSupport,
    EnableDnsHostnames,
    CreateGateway,
    AttachGateway,
    CreateSubnet {
        index: usize,
        cidr: Ipv4Cidr,
    },
    CreateRouteTable,
    CreateDefaultRoute,
    /// `0.0.0.0/0` leads somewhere else: pointed back at the gateway.
    ReplaceDefaultRoute,
    Associate {
        index: usize,
    },
    CreateSecurityGroup,
    Authorize(Rule),
    Revoke(Rule),
    AuthorizeEgress(Rule),
    RevokeEgress(Rule),
    /// The same tag writes on every listed resource (one CreateTags and/or one DeleteTags).
    Tags {
        ids: Vec<String>,
        plan: TagPlan,
    },
    /// Parts no longer wanted (subnets past `availabilityZones`, duplicates, a managed network
    /// after a switch to an existing one): security groups, route tables (associations first),
    /// subnets, gateways (detached first), VPCs.
    Remove(ObservedManaged),
    /// Nothing AWS can do: reported as a terminal condition (`reason`, `message`).
    Refuse {
        reason: String,
        message: String,
    },
}

pub fn diff(d: &Network, o: &Observed) -> Vec<Change> {
    match d {
        Network::Managed(m) => managed(m, &o.managed),
        Network::Existing(e) => existing(e, o),
    }
}

fn existing(d: &Existing, o: &Observed) -> Vec<Change> {
    let found = o.existing.clone().unwrap_or_default();
    let problems = existing_problems(d, &found);
    if !problems.is_empty() {
        // Nothing is removed while the network to move to is unusable.
        return vec![Change::Refuse {
            reason: "ExistingNetworkInvalid".into(),
            message: problems.join("; "),
        }];
    }
    if o.managed.is_empty() {
        Vec::new()
    } else {
        vec![Change::Remove(o.managed.clone())]
    }
}

/// What is wrong with an existing network: missing subnets or security groups, or more than one
/// VPC among them.
pub fn existing_problems(d: &Existing, found: &ObservedExisting) -> Vec<String> {
    let mut problems = Vec::new();
    let missing = |wanted: &BTreeSet<String>, found: &[Found]| -> Vec<String> {
        wanted
            .iter()
            .filter(|id| !found.iter().any(|f| f.id == **id))
            .cloned()
            .collect()
    };
    let place = format!("account {} region {}", d.account_id, d.region);
    let subnets = missing(&d.subnet_ids, &found.subnets);
    if !subnets.is_empty() {
        problems.push(format!(
            "subnet {} does not exist in {place}",
            subnets.join(", ")
        ));
    }
    let groups = missing(&d.security_group_ids, &found.security_groups);
    if !groups.is_empty() {
        problems.push(format!(
            "security group {} does not exist in {place}",
            groups.join(", ")
        ));
    }
    let mut by_vpc: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in found.subnets.iter().chain(&found.security_groups) {
        by_vpc.entry(&f.vpc_id).or_default().push(&f.id);
    }
    if by_vpc.len() > 1 {
        let parts: Vec<String> = by_vpc
            .iter()
            .map(|(vpc, ids)| format!("{} in {vpc}", ids.join(", ")))
            .collect();
        problems.push(format!(
            "the subnets and security groups must be in one VPC: {}",
            parts.join("; ")
        ));
    }
    problems
}

/// The VPC the subnets and security groups of a valid existing network are in.
pub fn existing_vpc(found: &ObservedExisting) -> Option<&str> {
    found
        .subnets
        .iter()
        .chain(&found.security_groups)
        .map(|f| f.vpc_id.as_str())
        .next()
}

fn managed(d: &Managed, o: &ObservedManaged) -> Vec<Change> {
    let want_cidr = d.cidr.to_string();
    let p = primary(o, Some(&want_cidr));
    let vpc = p.vpc.map(|i| &o.vpcs[i]);
    if let Some(v) = vpc.filter(|v| v.cidr != want_cidr) {
        return vec![Change::Refuse {
            reason: "VpcCidrImmutable".into(),
            message: format!(
                "the VPC {} has CIDR {}; network.managed.cidr asks {want_cidr}, and AWS cannot change a VPC's CIDR. Restore {} or make a new pipeline",
                v.id, v.cidr, v.cidr
            ),
        }];
    }
    let gateway = p.gateway.map(|i| &o.gateways[i]);
    let table = p.route_table.map(|i| &o.route_tables[i]);
    let group = p.security_group.map(|i| &o.security_groups[i]);
    let mut changes = Vec::new();
    let mut refusals = Vec::new();
    let mut unplaced = BTreeSet::new();

    match vpc {
        None => changes.extend([Change::CreateVpc, Change::EnableDnsHostnames]),
        Some(v) => {
            if !v.dns_support {
                changes.push(Change::EnableDnsSupport);
            }
            if !v.dns_hostnames {
                changes.push(Change::EnableDnsHostnames);
            }
        }
    }
    match gateway {
        None => changes.extend([Change::CreateGateway, Change::AttachGateway]),
        Some(g) if !vpc.is_some_and(|v| g.attached.contains(&v.id)) => {
            changes.push(Change::AttachGateway)
        }
        Some(_) => {}
    }

    // Subnets: kept ones keep their CIDR and zone; new ones take their block of the split if
    // free, else the first free block of that size.
    let kept: BTreeMap<usize, &ObservedSubnet> = p
        .subnets
        .iter()
        .filter(|(index, _)| d.subnets.contains_key(index))
        .map(|(index, position)| (*index, &o.subnets[*position]))
        .collect();
    let mut taken: Vec<Ipv4Cidr> = kept
        .values()
        .filter_map(|s| Ipv4Cidr::parse(&s.cidr))
        .collect();
    for (index, block) in &d.subnets {
        if kept.contains_key(index) {
            continue;
        }
        let free = |b: &Ipv4Cidr| !taken.iter().any(|t| t.overlaps(*b));
        let chosen = Some(*block)
            .filter(free)
            .or_else(|| d.cidr.blocks(d.subnet_prefix).into_iter().find(free));
        match chosen {
            Some(cidr) => {
                taken.push(cidr);
                changes.push(Change::CreateSubnet {
                    index: *index,
                    cidr,
                });
            }
            None => refusals.push({
                unplaced.insert(*index);
                Change::Refuse {
                reason: "NoRoomForSubnet".into(),
                message: format!(
                    "the VPC {} has no free /{} block for subnet {index}: the existing subnets ({}) fill it, and AWS cannot resize a subnet. Keep availabilityZones at {} or make a new pipeline",
                    d.cidr,
                    d.subnet_prefix,
                    taken
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    kept.len()
                ),
            }}),
        }
    }

    match table {
        None => changes.extend([Change::CreateRouteTable, Change::CreateDefaultRoute]),
        Some(t) => {
            let gateway_id = gateway.map(|g| g.id.as_str());
            match t.routes.iter().find(|r| r.destination == "0.0.0.0/0") {
                None => changes.push(Change::CreateDefaultRoute),
                Some(r) if gateway_id.is_none() || r.gateway_id.as_deref() != gateway_id => {
                    changes.push(Change::ReplaceDefaultRoute)
                }
                Some(_) => {}
            }
        }
    }
    for index in d.subnets.keys() {
        let associated = match (kept.get(index), table) {
            (Some(s), Some(t)) => t
                .associations
                .iter()
                .any(|a| a.subnet_id.as_deref() == Some(s.id.as_str())),
            _ => false,
        };
        if !associated && !unplaced.contains(index) {
            changes.push(Change::Associate { index: *index });
        }
    }

    match group {
        None => {
            changes.push(Change::CreateSecurityGroup);
            // AWS gives a new group the allow-all egress rule, which is the desired one.
            changes.extend(d.ingress.iter().cloned().map(Change::Authorize));
        }
        Some(g) => {
            changes.extend(
                d.ingress
                    .difference(&g.ingress)
                    .cloned()
                    .map(Change::Authorize),
            );
            changes.extend(
                g.ingress
                    .difference(&d.ingress)
                    .cloned()
                    .map(Change::Revoke),
            );
            changes.extend(
                d.egress
                    .difference(&g.egress)
                    .cloned()
                    .map(Change::AuthorizeEgress),
            );
            changes.extend(
                g.egress
                    .difference(&d.egress)
                    .cloned()
                    .map(Change::RevokeEgress),
            );
        }
    }

    // Tags of the parts that exist (new ones are created with theirs), one write per distinct
    // plan.
    let mut plans: Vec<(TagPlan, Vec<String>)> = Vec::new();
    let mut tag =
        |id: &str, part: Part, index: Option<usize>, actual: &BTreeMap<String, String>| {
            let plan = d.tags(part, index).plan(actual);
            if plan.is_empty() {
                return;
            }
            match plans.iter_mut().find(|(p, _)| *p == plan) {
                Some((_, ids)) => ids.push(id.to_string()),
                None => plans.push((plan, vec![id.to_string()])),
            }
        };
    if let Some(v) = vpc {
        tag(&v.id, Part::Vpc, None, &v.tags);
    }
    if let Some(g) = gateway {
        tag(&g.id, Part::InternetGateway, None, &g.tags);
    }
    for (index, s) in &kept {
        tag(&s.id, Part::Subnet, Some(*index), &s.tags);
    }
    if let Some(t) = table {
        tag(&t.id, Part::RouteTable, None, &t.tags);
    }
    if let Some(g) = group {
        tag(&g.id, Part::SecurityGroup, None, &g.tags);
    }
    changes.extend(
        plans
            .into_iter()
            .map(|(plan, ids)| Change::Tags { ids, plan }),
    );

    let stray = strays(o, &p, d.subnets.len());
    if !stray.is_empty() {
        changes.push(Change::Remove(stray));
    }
    changes.extend(refusals);
    changes
}

/// One change in words.
pub fn describe(d: &Network, o: &Observed, change: &Change) -> Vec<Drift> {
    let vpc = || match (d, o.managed.vpcs.first()) {
        (_, Some(v)) => format!("VPC {}", v.id),
        (Network::Managed(m), None) => format!("VPC {}", m.cidr),
        (Network::Existing(_), None) => "VPC".to_string(),
    };
    let group = || match d {
        Network::Managed(m) => format!("security group {}", m.security_group_name),
        Network::Existing(_) => "security group".to_string(),
    };
    let rule = |r: &Rule| {
        let ports = match (r.from_port, r.to_port) {
            (Some(from), Some(to)) if from == to => format!(" port {from}"),
            (Some(from), Some(to)) => format!(" ports {from}-{to}"),
            _ => String::new(),
        };
        let peer = match &r.peer {
            Peer::Cidr(cidr) | Peer::Ipv6(cidr) => format!("from {cidr}"),
            Peer::Group(id) => format!("from group {id}"),
            Peer::PrefixList(id) => format!("from prefix list {id}"),
        };
        format!("{}{ports} {peer}", r.protocol)
    };
    match change {
        Change::CreateVpc => vec![Drift::create(vpc())],
        Change::EnableDnsSupport => vec![Drift::value(vpc(), "DNS support", "off", "on")],
        Change::EnableDnsHostnames => vec![Drift::value(vpc(), "DNS hostnames", "off", "on")],
        Change::CreateGateway => vec![Drift::create("internet gateway")],
        Change::AttachGateway => vec![Drift::create(format!(
            "internet gateway attachment to {}",
            vpc()
        ))],
        Change::CreateSubnet { index, cidr } => {
            vec![Drift::create(format!("subnet {index} ({cidr})"))]
        }
        Change::CreateRouteTable => vec![Drift::create("route table")],
        Change::CreateDefaultRoute => {
            vec![Drift::create("route 0.0.0.0/0 to the internet gateway")]
        }
        Change::ReplaceDefaultRoute => vec![Drift::field(
            "route table",
            "route 0.0.0.0/0 (not to the internet gateway)",
        )],
        Change::Associate { index } => vec![Drift::create(format!(
            "route table association of subnet {index}"
        ))],
        Change::CreateSecurityGroup => vec![Drift::create(group())],
        Change::Authorize(r) => vec![Drift::create(format!("{} ingress {}", group(), rule(r)))],
        Change::Revoke(r) => vec![Drift::delete(format!("{} ingress {}", group(), rule(r)))],
        Change::AuthorizeEgress(r) => {
            vec![Drift::create(format!("{} egress {}", group(), rule(r)))]
        }
        Change::RevokeEgress(r) => vec![Drift::delete(format!("{} egress {}", group(), rule(r)))],
        Change::Tags { ids, plan } => {
            let resources = ids.join(", ");
            plan.set
                .iter()
                .map(|(key, value)| {
                    Drift::value(&resources, format!("tag {key}"), "(differs)", value)
                })
                .chain(
                    plan.remove.iter().map(|key| {
                        Drift::value(&resources, format!("tag {key}"), "set", "(removed)")
                    }),
                )
                .collect()
        }
        Change::Remove(parts) => removal(parts),
        Change::Refuse { reason, message } => {
            vec![Drift::field("network", format!("{reason}: {message}"))]
        }
    }
}

/// Every managed part that deleting `parts` would remove.
pub fn removal(parts: &ObservedManaged) -> Vec<Drift> {
    let ids = |kind: &str, ids: Vec<&String>| {
        ids.into_iter()
            .map(|id| Drift::delete(format!("{kind} {id}")))
            .collect::<Vec<_>>()
    };
    let mut drift = ids(
        "security group",
        parts.security_groups.iter().map(|g| &g.id).collect(),
    );
    drift.extend(ids(
        "route table",
        parts.route_tables.iter().map(|t| &t.id).collect(),
    ));
    drift.extend(ids("subnet", parts.subnets.iter().map(|s| &s.id).collect()));
    drift.extend(ids(
        "internet gateway",
        parts.gateways.iter().map(|g| &g.id).collect(),
    ));
    drift.extend(ids("VPC", parts.vpcs.iter().map(|v| &v.id).collect()));
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Env;
    use crate::desired::testing::{MINIMAL, context};
    use crate::groups::Placement;
    use crate::groups::network::desired::{Peer, network};

    fn desired(zones: i32, allowed: &[&str]) -> Managed {
        let mut c = context(MINIMAL);
        if let Some(m) = c.spec.network.as_mut().and_then(|n| n.managed.as_mut()) {
            m.availability_zones = zones;
        }
        c.spec.environments.staging.allowed_ingress_cidrs =
            allowed.iter().map(ToString::to_string).collect();
        let at = Placement {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws",
        };
        match network(&c, Env::Staging, &at) {
            Ok(Network::Managed(m)) => m,
            other => panic!("managed network: {other:?}"),
        }
    }

    const ZONES: [&str; 6] = [
        "us-east-1a",
        "us-east-1b",
        "us-east-1c",
        "us-east-1d",
        "us-east-1e",
        "us-east-1f",
    ];

    /// What AWS holds once `d` is applied.
    fn in_sync(d: &Managed) -> ObservedManaged {
        let vpc = "vpc-0000000000000000a".to_string();
        ObservedManaged {
            vpcs: vec![ObservedVpc {
                id: vpc.clone(),
                cidr: d.cidr.to_string(),
                dns_support: true,
                dns_hostnames: true,
                tags: d.tags(Part::Vpc, None).tags,
            }],
            gateways: vec![ObservedGateway {
                id: "igw-0000000000000000a".into(),
                attached: vec![vpc.clone()],
                tags: d.tags(Part::InternetGateway, None).tags,
            }],
            subnets: d
                .subnets
                .iter()
                .map(|(i, cidr)| ObservedSubnet {
                    id: format!("subnet-00000000000000{i:03}"),
                    vpc_id: vpc.clone(),
                    cidr: cidr.to_string(),
                    zone: ZONES[*i].into(),
                    index: Some(*i),
                    tags: d.tags(Part::Subnet, Some(*i)).tags,
                })
                .collect(),
            route_tables: vec![ObservedRouteTable {
                id: "rtb-0000000000000000a".into(),
                vpc_id: vpc.clone(),
                routes: vec![
                    ObservedRoute {
                        destination: d.cidr.to_string(),
                        gateway_id: Some("local".into()),
                    },
                    ObservedRoute {
                        destination: "0.0.0.0/0".into(),
                        gateway_id: Some("igw-0000000000000000a".into()),
                    },
                ],
                associations: d
                    .subnets
                    .keys()
                    .map(|i| ObservedAssociation {
                        id: format!("rtbassoc-0000000000000{i:03}"),
                        subnet_id: Some(format!("subnet-00000000000000{i:03}")),
                    })
                    .collect(),
                tags: d.tags(Part::RouteTable, None).tags,
            }],
            security_groups: vec![ObservedSecurityGroup {
                id: "sg-0000000000000000a".into(),
                vpc_id: vpc,
                ingress: d.ingress.clone(),
                egress: d.egress.clone(),
                tags: d.tags(Part::SecurityGroup, None).tags,
            }],
        }
    }

    fn managed_diff(d: &Managed, o: &ObservedManaged) -> Vec<Change> {
        diff(
            &Network::Managed(d.clone()),
            &Observed {
                managed: o.clone(),
                existing: None,
            },
        )
    }

    #[test]
    fn a_network_in_sync_needs_nothing() {
        let d = desired(3, &["203.0.113.0/24"]);
        assert_eq!(managed_diff(&d, &in_sync(&d)), vec![]);
    }

    #[test]
    fn nothing_observed_creates_every_part_in_order() {
        let d = desired(2, &[]);
        assert_eq!(
            managed_diff(&d, &ObservedManaged::default()),
            vec![
                Change::CreateVpc,
                Change::EnableDnsHostnames,
                Change::CreateGateway,
                Change::AttachGateway,
                Change::CreateSubnet {
                    index: 0,
                    cidr: d.subnets[&0]
                },
                Change::CreateSubnet {
                    index: 1,
                    cidr: d.subnets[&1]
                },
                Change::CreateRouteTable,
                Change::CreateDefaultRoute,
                Change::Associate { index: 0 },
                Change::Associate { index: 1 },
                Change::CreateSecurityGroup,
                Change::Authorize(Rule::tcp(8080, "10.40.0.0/16")),
            ]
        );
    }

    #[test]
    fn an_interrupted_create_is_resumed_not_repeated() {
        let d = desired(2, &[]);
        let mut o = in_sync(&d);
        // The create stopped after the first subnet: no second subnet, no table, no group.
        o.subnets.truncate(1);
        o.route_tables.clear();
        o.security_groups.clear();
        assert_eq!(
            managed_diff(&d, &o),
            vec![
                Change::CreateSubnet {
                    index: 1,
                    cidr: d.subnets[&1]
                },
                Change::CreateRouteTable,
                Change::CreateDefaultRoute,
                Change::Associate { index: 0 },
                Change::Associate { index: 1 },
                Change::CreateSecurityGroup,
                Change::Authorize(Rule::tcp(8080, "10.40.0.0/16")),
            ]
        );
    }

    #[test]
    fn a_rule_added_by_hand_is_revoked_and_a_removed_one_authorized() {
        let d = desired(2, &["203.0.113.0/24"]);
        let mut o = in_sync(&d);
        let by_hand = Rule::tcp(22, "0.0.0.0/0");
        let group = &mut o.security_groups[0];
        group.ingress.insert(by_hand.clone());
        group.ingress.remove(&Rule::tcp(8080, "203.0.113.0/24"));
        group.egress.insert(Rule {
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            peer: Peer::Group("sg-0123456789abcdef0".into()),
        });
        let changes = managed_diff(&d, &o);
        assert_eq!(
            changes,
            vec![
                Change::Authorize(Rule::tcp(8080, "203.0.113.0/24")),
                Change::Revoke(by_hand),
                Change::RevokeEgress(Rule {
                    protocol: "tcp".into(),
                    from_port: Some(443),
                    to_port: Some(443),
                    peer: Peer::Group("sg-0123456789abcdef0".into()),
                }),
            ]
        );
    }

    #[test]
    fn fewer_availability_zones_remove_exactly_the_last_subnets() {
        let three = desired(3, &[]);
        let o = in_sync(&three);
        let two = desired(2, &[]);
        let changes = managed_diff(&two, &o);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let Change::Remove(removed) = &changes[0] else {
            panic!("{changes:?}");
        };
        assert_eq!(
            removed,
            &ObservedManaged {
                subnets: vec![o.subnets[2].clone()],
                ..ObservedManaged::default()
            }
        );
        // The two kept subnets keep their /18s although two AZs alone would split into /17s.
        let mut after = o.clone();
        after.subnets.truncate(2);
        after.route_tables[0].associations.truncate(2);
        assert_eq!(managed_diff(&two, &after), vec![]);
        // And growing back takes the freed block.
        assert_eq!(
            managed_diff(&three, &after),
            vec![
                Change::CreateSubnet {
                    index: 2,
                    cidr: three.subnets[&2]
                },
                Change::Associate { index: 2 }
            ]
        );
    }

    #[test]
    fn growing_a_full_vpc_is_refused_and_the_rest_still_applied() {
        let two = desired(2, &[]);
        let mut o = in_sync(&two);
        o.vpcs[0].dns_hostnames = false;
        let three = desired(3, &[]);
        let changes = managed_diff(&three, &o);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], Change::EnableDnsHostnames);
        assert!(
            matches!(&changes[1], Change::Refuse { reason, message } if reason == "NoRoomForSubnet" && message.contains("10.40.0.0/17, 10.40.128.0/17")),
            "{changes:?}"
        );
    }

    #[test]
    fn another_cidr_is_refused_without_writes() {
        let d = desired(2, &[]);
        let mut o = in_sync(&d);
        o.vpcs[0].cidr = "10.99.0.0/16".into();
        let changes = managed_diff(&d, &o);
        assert!(
            matches!(changes.as_slice(), [Change::Refuse { reason, .. }] if reason == "VpcCidrImmutable"),
            "{changes:?}"
        );
    }

    #[test]
    fn tag_drift_is_one_write_per_distinct_plan() {
        let d = desired(2, &[]);
        let mut o = in_sync(&d);
        for s in &mut o.subnets {
            s.tags.remove("CostCenter");
        }
        o.vpcs[0].tags.insert("Name".into(), "renamed".into());
        let changes = managed_diff(&d, &o);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.iter().any(|c| matches!(c, Change::Tags { ids, .. } if ids == &vec![o.subnets[0].id.clone(), o.subnets[1].id.clone()])));
        assert!(changes.iter().any(|c| matches!(c, Change::Tags { ids, plan } if ids == &vec![o.vpcs[0].id.clone()] && plan.set.contains_key("Name"))));
    }

    #[test]
    fn a_route_elsewhere_is_replaced_and_a_detached_gateway_reattached() {
        let d = desired(2, &[]);
        let mut o = in_sync(&d);
        o.route_tables[0].routes[1].gateway_id = Some("igw-0ffffffffffffffff".into());
        o.gateways[0].attached.clear();
        assert_eq!(
            managed_diff(&d, &o),
            vec![Change::AttachGateway, Change::ReplaceDefaultRoute]
        );
    }

    #[test]
    fn duplicates_are_removed_and_the_lowest_id_kept() {
        let d = desired(2, &[]);
        let mut o = in_sync(&d);
        let mut twin = o.vpcs[0].clone();
        twin.id = "vpc-0000000000000000b".into();
        o.vpcs.push(twin.clone());
        let mut loose = o.gateways[0].clone();
        loose.id = "igw-0000000000000000b".into();
        loose.attached.clear();
        o.gateways.push(loose.clone());
        let changes = managed_diff(&d, &o);
        assert_eq!(
            changes,
            vec![Change::Remove(ObservedManaged {
                vpcs: vec![twin],
                gateways: vec![loose],
                ..ObservedManaged::default()
            })]
        );
    }

    fn existing_desired() -> Existing {
        Existing {
            subnet_ids: BTreeSet::from(["subnet-1".to_string(), "subnet-2".to_string()]),
            security_group_ids: BTreeSet::from(["sg-1".to_string()]),
            assign_public_ip: false,
            account_id: "222222222222".into(),
            region: "us-east-1".into(),
        }
    }

    fn found(id: &str, vpc: &str) -> Found {
        Found {
            id: id.into(),
            vpc_id: vpc.into(),
        }
    }

    #[test]
    fn an_existing_network_is_verified_and_a_managed_one_left_behind_removed() {
        let e = existing_desired();
        let good = ObservedExisting {
            subnets: vec![found("subnet-1", "vpc-1"), found("subnet-2", "vpc-1")],
            security_groups: vec![found("sg-1", "vpc-1")],
        };
        let d = Network::Existing(e.clone());
        let mut o = Observed {
            managed: ObservedManaged::default(),
            existing: Some(good.clone()),
        };
        assert_eq!(diff(&d, &o), vec![]);
        assert_eq!(existing_vpc(&good), Some("vpc-1"));
        let left = in_sync(&desired(2, &[]));
        o.managed = left.clone();
        assert_eq!(diff(&d, &o), vec![Change::Remove(left.clone())]);

        // A missing subnet, and a group in another VPC: named, and nothing removed.
        o.existing = Some(ObservedExisting {
            subnets: vec![found("subnet-1", "vpc-1")],
            security_groups: vec![found("sg-1", "vpc-9")],
        });
        let changes = diff(&d, &o);
        let [Change::Refuse { reason, message }] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert_eq!(reason, "ExistingNetworkInvalid");
        assert_eq!(
            message,
            "subnet subnet-2 does not exist in account 222222222222 region us-east-1; the subnets and security groups must be in one VPC: subnet-1 in vpc-1; sg-1 in vpc-9"
        );
    }
}
