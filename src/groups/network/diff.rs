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
use crate::groups::kit::{TagPlan, deletions};
use crate::groups::{Changes, Diff};

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
        *self == Self::default()
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

/// The parts that make up the network, found among what is observed: one of each kind, and
/// the desired subnets by index.
#[derive(Clone, Debug, Default)]
pub struct Primary<'a> {
    pub vpc: Option<&'a ObservedVpc>,
    pub gateway: Option<&'a ObservedGateway>,
    pub route_table: Option<&'a ObservedRouteTable>,
    pub security_group: Option<&'a ObservedSecurityGroup>,
    pub subnets: BTreeMap<usize, &'a ObservedSubnet>,
}

/// One part of the network: its kind, subnet index, ID and tags.
pub type PartRef<'a> = (Part, Option<usize>, &'a str, &'a BTreeMap<String, String>);

impl<'a> Primary<'a> {
    /// The ID and tags of the network's one `part` (None for subnets: there is one per index).
    pub fn one(&self, part: Part) -> Option<(&'a str, &'a BTreeMap<String, String>)> {
        match part {
            Part::Vpc => self.vpc.map(|v| (v.id.as_str(), &v.tags)),
            Part::InternetGateway => self.gateway.map(|g| (g.id.as_str(), &g.tags)),
            Part::Subnet => None,
            Part::RouteTable => self.route_table.map(|t| (t.id.as_str(), &t.tags)),
            Part::SecurityGroup => self.security_group.map(|g| (g.id.as_str(), &g.tags)),
        }
    }

    /// Every part, in the order the network is made.
    pub fn parts(&self) -> Vec<PartRef<'a>> {
        Part::ALL
            .into_iter()
            .flat_map(|part| match part {
                Part::Subnet => self
                    .subnets
                    .iter()
                    .map(|(&index, &s)| (part, Some(index), s.id.as_str(), &s.tags))
                    .collect(),
                _ => Vec::from_iter(self.one(part).map(|(id, tags)| (part, None, id, tags))),
            })
            .collect()
    }
}

/// Picks the network's parts among what is observed. Deterministic: the VPC with the desired
/// CIDR (else any), lowest ID first; the gateway attached to it (else a detached one); the
/// route table and security group in it; per desired subnet index, one subnet in it.
pub fn primary<'a>(o: &'a ObservedManaged, d: &Managed) -> Primary<'a> {
    let cidr = d.cidr.to_string();
    let vpc = lowest(&o.vpcs, |v| &v.id, |v| v.cidr == cidr)
        .or_else(|| lowest(&o.vpcs, |v| &v.id, |_| true));
    let in_vpc = |id: &str| vpc.is_some_and(|v| v.id == id);
    let gateway = lowest(
        &o.gateways,
        |g| &g.id,
        |g| g.attached.iter().any(|v| in_vpc(v)),
    )
    .or_else(|| lowest(&o.gateways, |g| &g.id, |g| g.attached.is_empty()));
    let mut subnets: BTreeMap<usize, &ObservedSubnet> = BTreeMap::new();
    for s in &o.subnets {
        let wanted = |i: &usize| d.subnets.contains_key(i) && in_vpc(&s.vpc_id);
        if let Some(index) = s.index.filter(wanted) {
            let kept = subnets.entry(index).or_insert(s);
            if s.id < kept.id {
                *kept = s;
            }
        }
    }
    Primary {
        vpc,
        gateway,
        route_table: lowest(&o.route_tables, |t| &t.id, |t| in_vpc(&t.vpc_id)),
        security_group: lowest(&o.security_groups, |g| &g.id, |g| in_vpc(&g.vpc_id)),
        subnets,
    }
}

/// The item with the lowest ID among those `wanted`.
fn lowest<T>(items: &[T], id: impl Fn(&T) -> &String, wanted: impl Fn(&T) -> bool) -> Option<&T> {
    items
        .iter()
        .filter(|item| wanted(item))
        .min_by(|a, b| id(a).cmp(id(b)))
}

/// What is observed but not part of the network: to be removed.
pub fn strays(o: &ObservedManaged, p: &Primary) -> ObservedManaged {
    let kept: BTreeSet<&str> = p.parts().into_iter().map(|(_, _, id, _)| id).collect();
    fn others<T: Clone>(items: &[T], id: fn(&T) -> &String, kept: &BTreeSet<&str>) -> Vec<T> {
        items
            .iter()
            .filter(|item| !kept.contains(id(item).as_str()))
            .cloned()
            .collect()
    }
    ObservedManaged {
        vpcs: others(&o.vpcs, |v| &v.id, &kept),
        gateways: others(&o.gateways, |g| &g.id, &kept),
        subnets: others(&o.subnets, |s| &s.id, &kept),
        route_tables: others(&o.route_tables, |t| &t.id, &kept),
        security_groups: others(&o.security_groups, |g| &g.id, &kept),
    }
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

impl Diff<Observed> for Network {
    type Change = Change;

    fn diff(&self, o: &Observed) -> Changes<Change> {
        match self {
            Network::Managed(m) => managed(m, &o.managed),
            Network::Existing(e) => existing(e, o),
        }
    }
}

/// A change nothing AWS can do, with its words.
fn refuse(changes: &mut Changes<Change>, reason: &str, message: String) {
    let drift = Drift::field("network", format!("{reason}: {message}"));
    changes.push(
        Change::Refuse {
            reason: reason.into(),
            message,
        },
        drift,
    );
}

/// Parts no longer wanted, with their words.
fn remove(changes: &mut Changes<Change>, parts: &ObservedManaged) {
    changes.push_all(Change::Remove(parts.clone()), removal(parts));
}

fn existing(d: &Existing, o: &Observed) -> Changes<Change> {
    let found = o.existing.clone().unwrap_or_default();
    let problems = existing_problems(d, &found);
    let mut changes = Changes::new();
    if !problems.is_empty() {
        // Nothing is removed while the network to move to is unusable.
        refuse(&mut changes, "ExistingNetworkInvalid", problems.join("; "));
    } else if !o.managed.is_empty() {
        remove(&mut changes, &o.managed);
    }
    changes
}

/// What is wrong with an existing network: missing subnets or security groups, or more than one
/// VPC among them.
pub fn existing_problems(d: &Existing, found: &ObservedExisting) -> Vec<String> {
    let place = format!("account {} region {}", d.account_id, d.region);
    let mut problems = Vec::new();
    for (what, wanted, found) in [
        ("subnet", &d.subnet_ids, &found.subnets),
        (
            "security group",
            &d.security_group_ids,
            &found.security_groups,
        ),
    ] {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|id| !found.iter().any(|f| f.id == **id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{what} {} does not exist in {place}",
                missing.join(", ")
            ));
        }
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

fn managed(d: &Managed, o: &ObservedManaged) -> Changes<Change> {
    let p = primary(o, d);
    let mut changes = Changes::new();
    if let Some(v) = p.vpc.filter(|v| v.cidr != d.cidr.to_string()) {
        refuse(
            &mut changes,
            "VpcCidrImmutable",
            format!(
                "the VPC {} has CIDR {}; network.managed.cidr asks {}, and AWS cannot change a VPC's CIDR. Restore {} or make a new pipeline",
                v.id, v.cidr, d.cidr, v.cidr
            ),
        );
        return changes;
    }
    // The words name the first VPC observed, else the desired CIDR.
    let vpc_words = match o.vpcs.first() {
        Some(v) => format!("VPC {}", v.id),
        None => format!("VPC {}", d.cidr),
    };
    vpc_and_gateway(&mut changes, &p, &vpc_words);
    let (unplaced, refusals) = subnets(&mut changes, d, &p);
    route_table(&mut changes, &p);
    associations(&mut changes, d, &p, &unplaced);
    security_group(&mut changes, d, p.security_group);
    tags(&mut changes, d, &p);
    let stray = strays(o, &p);
    if !stray.is_empty() {
        remove(&mut changes, &stray);
    }
    changes.extend(refusals);
    changes
}

/// The VPC with DNS support and hostnames (a new one has support on), and the internet
/// gateway attached to it.
fn vpc_and_gateway(changes: &mut Changes<Change>, p: &Primary, vpc_words: &str) {
    let dns = |field: &str| Drift::value(vpc_words, field, "off", "on");
    match p.vpc {
        None => changes.push(Change::CreateVpc, Drift::create(vpc_words)),
        Some(v) if !v.dns_support => changes.push(Change::EnableDnsSupport, dns("DNS support")),
        Some(_) => {}
    }
    if !p.vpc.is_some_and(|v| v.dns_hostnames) {
        changes.push(Change::EnableDnsHostnames, dns("DNS hostnames"));
    }
    if p.gateway.is_none() {
        changes.push(Change::CreateGateway, Drift::create("internet gateway"));
    }
    if !p
        .gateway
        .zip(p.vpc)
        .is_some_and(|(g, v)| g.attached.contains(&v.id))
    {
        let words = format!("internet gateway attachment to {vpc_words}");
        changes.push(Change::AttachGateway, Drift::create(words));
    }
}

/// Subnets to create: kept ones keep their CIDR and zone; a new one takes its block of the
/// split if free, else the first free block of that size. Returns the subnets no block is left
/// for, and their refusals (the last changes: everything else is still applied).
fn subnets(
    changes: &mut Changes<Change>,
    d: &Managed,
    p: &Primary,
) -> (BTreeSet<usize>, Changes<Change>) {
    let mut taken: Vec<Ipv4Cidr> = p
        .subnets
        .values()
        .filter_map(|s| Ipv4Cidr::parse(&s.cidr))
        .collect();
    let mut unplaced = BTreeSet::new();
    let mut refusals = Changes::new();
    for (&index, block) in &d.subnets {
        if p.subnets.contains_key(&index) {
            continue;
        }
        let free = |b: &Ipv4Cidr| !taken.iter().any(|t| t.overlaps(*b));
        let chosen = Some(*block)
            .filter(free)
            .or_else(|| d.cidr.blocks(d.subnet_prefix).into_iter().find(free));
        if let Some(cidr) = chosen {
            taken.push(cidr);
            let words = format!("subnet {index} ({cidr})");
            changes.push(Change::CreateSubnet { index, cidr }, Drift::create(words));
            continue;
        }
        unplaced.insert(index);
        refuse(
            &mut refusals,
            "NoRoomForSubnet",
            format!(
                "the VPC {} has no free /{} block for subnet {index}: the existing subnets ({}) fill it, and AWS cannot resize a subnet. Keep availabilityZones at {} or make a new pipeline",
                d.cidr,
                d.subnet_prefix,
                taken
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                p.subnets.len()
            ),
        );
    }
    (unplaced, refusals)
}

/// The route table, with `0.0.0.0/0` to the internet gateway.
fn route_table(changes: &mut Changes<Change>, p: &Primary) {
    let to_gateway = || Drift::create("route 0.0.0.0/0 to the internet gateway");
    let Some(t) = p.route_table else {
        changes.push(Change::CreateRouteTable, Drift::create("route table"));
        changes.push(Change::CreateDefaultRoute, to_gateway());
        return;
    };
    let gateway = p.gateway.map(|g| g.id.as_str());
    match t.routes.iter().find(|r| r.destination == "0.0.0.0/0") {
        None => changes.push(Change::CreateDefaultRoute, to_gateway()),
        Some(r) if gateway.is_none() || r.gateway_id.as_deref() != gateway => changes.push(
            Change::ReplaceDefaultRoute,
            Drift::field(
                "route table",
                "route 0.0.0.0/0 (not to the internet gateway)",
            ),
        ),
        Some(_) => {}
    }
}

/// Every subnet that has (or gets) a block associated with the route table.
fn associations(
    changes: &mut Changes<Change>,
    d: &Managed,
    p: &Primary,
    unplaced: &BTreeSet<usize>,
) {
    for &index in d.subnets.keys().filter(|i| !unplaced.contains(i)) {
        let associated = p
            .subnets
            .get(&index)
            .zip(p.route_table)
            .is_some_and(|(s, t)| {
                t.associations
                    .iter()
                    .any(|a| a.subnet_id.as_deref() == Some(s.id.as_str()))
            });
        if !associated {
            let words = format!("route table association of subnet {index}");
            changes.push(Change::Associate { index }, Drift::create(words));
        }
    }
}

/// The tasks' security group and its rules.
fn security_group(
    changes: &mut Changes<Change>,
    d: &Managed,
    group: Option<&ObservedSecurityGroup>,
) {
    let words = format!("security group {}", d.security_group_name);
    let none = BTreeSet::new();
    if group.is_none() {
        changes.push(Change::CreateSecurityGroup, Drift::create(&words));
    }
    // AWS gives a new group the allow-all egress rule, which is the desired one.
    let (ingress, egress) = group.map_or((&none, &d.egress), |g| (&g.ingress, &g.egress));
    let (add, revoke) = (Change::Authorize, Change::Revoke);
    rules(changes, &words, "ingress", &d.ingress, ingress, add, revoke);
    let (add, revoke) = (Change::AuthorizeEgress, Change::RevokeEgress);
    rules(changes, &words, "egress", &d.egress, egress, add, revoke);
}

/// One direction's rules: the missing ones added (`add`), the others revoked (`revoke`).
fn rules(
    changes: &mut Changes<Change>,
    group_words: &str,
    direction: &str,
    want: &BTreeSet<Rule>,
    have: &BTreeSet<Rule>,
    add: fn(Rule) -> Change,
    revoke: fn(Rule) -> Change,
) {
    let words = |r: &Rule| format!("{group_words} {direction} {}", rule_words(r));
    for r in want.difference(have) {
        changes.push(add(r.clone()), Drift::create(words(r)));
    }
    for r in have.difference(want) {
        changes.push(revoke(r.clone()), Drift::delete(words(r)));
    }
}

/// Tags of the parts that exist (new ones are created with theirs), one write per distinct
/// plan.
fn tags(changes: &mut Changes<Change>, d: &Managed, p: &Primary) {
    let mut plans: Vec<(TagPlan, Vec<String>)> = Vec::new();
    for (part, index, id, actual) in p.parts() {
        let plan = d.tags(part, index).plan(actual);
        if plan.is_empty() {
            continue;
        }
        match plans.iter_mut().find(|(p, _)| *p == plan) {
            Some((_, ids)) => ids.push(id.to_string()),
            None => plans.push((plan, vec![id.to_string()])),
        }
    }
    for (plan, ids) in plans {
        let drift = tag_words(&ids.join(", "), &plan);
        changes.push_all(Change::Tags { ids, plan }, drift);
    }
}

/// A rule in words: protocol, ports and peer.
fn rule_words(r: &Rule) -> String {
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
}

/// One tag write on `resources` in words: one drift per key set or removed.
fn tag_words(resources: &str, plan: &TagPlan) -> Vec<Drift> {
    plan.set
        .iter()
        .map(|(key, value)| Drift::value(resources, format!("tag {key}"), "(differs)", value))
        .chain(
            plan.remove
                .iter()
                .map(|key| Drift::value(resources, format!("tag {key}"), "set", "(removed)")),
        )
        .collect()
}

/// Every managed part that deleting `parts` would remove.
pub fn removal(parts: &ObservedManaged) -> Vec<Drift> {
    [
        deletions(
            "security group",
            parts.security_groups.iter().map(|g| &g.id),
        ),
        deletions("route table", parts.route_tables.iter().map(|t| &t.id)),
        deletions("subnet", parts.subnets.iter().map(|s| &s.id)),
        deletions("internet gateway", parts.gateways.iter().map(|g| &g.id)),
        deletions("VPC", parts.vpcs.iter().map(|v| &v.id)),
    ]
    .concat()
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
                    zone: format!("us-east-1{}", ["a", "b", "c", "d", "e", "f"][*i]),
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

    fn managed_diff(d: &Managed, o: &ObservedManaged) -> Changes<Change> {
        Network::Managed(d.clone()).diff(&Observed {
            managed: o.clone(),
            existing: None,
        })
    }

    #[test]
    fn a_network_in_sync_needs_nothing() {
        let d = desired(3, &["203.0.113.0/24"]);
        assert_eq!(managed_diff(&d, &in_sync(&d)), vec![]);
    }

    /// What making a two-subnet network takes from its second subnet on.
    fn from_the_second_subnet(d: &Managed) -> Vec<Change> {
        vec![
            Change::CreateSubnet {
                index: 1,
                cidr: d.subnets[&1],
            },
            Change::CreateRouteTable,
            Change::CreateDefaultRoute,
            Change::Associate { index: 0 },
            Change::Associate { index: 1 },
            Change::CreateSecurityGroup,
            Change::Authorize(Rule::tcp(8080, "10.40.0.0/16")),
        ]
    }

    #[test]
    fn nothing_observed_creates_every_part_in_order() {
        let d = desired(2, &[]);
        let first = Change::CreateSubnet {
            index: 0,
            cidr: d.subnets[&0],
        };
        let start = [
            Change::CreateVpc,
            Change::EnableDnsHostnames,
            Change::CreateGateway,
            Change::AttachGateway,
            first,
        ];
        assert_eq!(
            managed_diff(&d, &ObservedManaged::default()),
            [start.to_vec(), from_the_second_subnet(&d)].concat()
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
        assert_eq!(managed_diff(&d, &o), from_the_second_subnet(&d));
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
        let changes = managed_diff(&d, &o).into_changes();
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
        assert_eq!(d.diff(&o), vec![]);
        assert_eq!(existing_vpc(&good), Some("vpc-1"));
        let left = in_sync(&desired(2, &[]));
        o.managed = left.clone();
        assert_eq!(d.diff(&o), vec![Change::Remove(left.clone())]);

        // A missing subnet, and a group in another VPC: named, and nothing removed.
        o.existing = Some(ObservedExisting {
            subnets: vec![found("subnet-1", "vpc-1")],
            security_groups: vec![found("sg-1", "vpc-9")],
        });
        let changes = d.diff(&o).into_changes();
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
