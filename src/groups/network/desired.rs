//! Desired network of one environment, in that environment's account. Managed: a VPC with DNS
//! support and hostnames, an attached internet gateway, one public subnet per availability
//! zone (the VPC's CIDR split evenly), one route table sending `0.0.0.0/0` to the gateway and
//! associated with every subnet, and the tasks' security group (the container port from the
//! VPC and `allowedIngressCidrs`; all egress). Existing: subnets and security groups the
//! operator only verifies.
//!
//! Every managed part is tagged with the pipeline's tags, the environment, its part and a
//! deterministic `Name`, and is found again by those tags alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Serialize, Serializer};

use crate::api::Network as NetworkSpec;
use crate::desired::tags::ENVIRONMENT_KEY;
use crate::desired::{Env, PipelineContext};
use crate::groups::Placement;
use crate::groups::kit::DesiredTags;

/// Which part of the network a resource is (tag `delivery-operator.dev/part`).
pub const PART_KEY: &str = "delivery-operator.dev/part";
/// Position of a subnet among the environment's subnets (0, 1, ...).
pub const SUBNET_INDEX_KEY: &str = "delivery-operator.dev/subnet-index";
pub const NAME_KEY: &str = "Name";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Vpc,
    InternetGateway,
    Subnet,
    RouteTable,
    SecurityGroup,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Vpc,
        Part::InternetGateway,
        Part::Subnet,
        Part::RouteTable,
        Part::SecurityGroup,
    ];

    /// The value of the part tag.
    pub fn tag(self) -> &'static str {
        match self {
            Part::Vpc => "vpc",
            Part::InternetGateway => "internet-gateway",
            Part::Subnet => "subnet",
            Part::RouteTable => "route-table",
            Part::SecurityGroup => "security-group",
        }
    }

    /// CloudFormation type, for the inventory.
    pub fn kind(self) -> &'static str {
        match self {
            Part::Vpc => "AWS::EC2::VPC",
            Part::InternetGateway => "AWS::EC2::InternetGateway",
            Part::Subnet => "AWS::EC2::Subnet",
            Part::RouteTable => "AWS::EC2::RouteTable",
            Part::SecurityGroup => "AWS::EC2::SecurityGroup",
        }
    }

    /// Resource type in EC2 ARNs and tag specifications.
    pub fn resource_type(self) -> &'static str {
        // EC2 names each type as the part tag does.
        self.tag()
    }
}

/// An IPv4 CIDR block, always a network address (no host bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `10.40.0.0/16`; None for anything else, host bits included.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let cidr = Self {
            network: u32::from(addr),
            prefix,
        };
        (cidr.network & !cidr.mask() == 0).then_some(cidr)
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn last(self) -> u32 {
        self.network | !self.mask()
    }

    pub fn overlaps(self, other: Self) -> bool {
        self.network <= other.last() && other.network <= self.last()
    }

    /// Every block of `prefix` inside this one, in address order (empty when `prefix` is
    /// shorter than this block's, or past /32).
    pub fn blocks(self, prefix: u8) -> Vec<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return Vec::new();
        }
        let count = 1u64 << (prefix - self.prefix);
        let step = 1u64 << (32 - u32::from(prefix));
        (0..count)
            .map(|i| Ipv4Cidr {
                // At most 2^32 addresses: fits a u32 once added to the network address.
                network: self.network + (i * step) as u32,
                prefix,
            })
            .collect()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The prefix of each subnet when `vpc` is split evenly into `parts`, rounded up to a power of
/// two (a /16 in 3 parts: four /18s).
pub fn subnet_prefix(vpc: Ipv4Cidr, parts: usize) -> u8 {
    let bits = parts.max(1).next_power_of_two().trailing_zeros();
    vpc.prefix()
        .saturating_add(u8::try_from(bits).unwrap_or(u8::MAX))
}

/// The first `parts` blocks of that split: subnet `i` is block `i`.
pub fn split(vpc: Ipv4Cidr, parts: usize) -> Vec<Ipv4Cidr> {
    let mut blocks = vpc.blocks(subnet_prefix(vpc, parts));
    blocks.truncate(parts);
    blocks
}

/// An availability zone as DescribeAvailabilityZones reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub state: String,
    pub zone_type: String,
}

/// Zones for new subnets: subnet `i` goes to the `i`-th usable zone (state `available`, type
/// `availability-zone`, sorted by name) unless a kept subnet is there, then to the first free
/// one. Kept subnets never move. Err: the region has too few zones.
pub fn assign_zones(
    zones: &[Zone],
    kept: &BTreeMap<usize, String>,
    new: &[usize],
) -> Result<BTreeMap<usize, String>, String> {
    let mut usable: Vec<&str> = zones
        .iter()
        .filter(|z| z.state == "available" && z.zone_type == "availability-zone")
        .map(|z| z.name.as_str())
        .collect();
    usable.sort_unstable();
    usable.dedup();
    let mut used: BTreeSet<&str> = kept.values().map(String::as_str).collect();
    let mut chosen = BTreeMap::new();
    for &index in new {
        let zone = usable
            .get(index)
            .filter(|z| !used.contains(*z))
            .or_else(|| usable.iter().find(|z| !used.contains(*z)))
            .copied()
            .ok_or_else(|| {
                format!(
                    "the region has {} usable availability zones ({}); {} subnets need as many",
                    usable.len(),
                    usable.join(", "),
                    kept.len() + new.len()
                )
            })?;
        used.insert(zone);
        chosen.insert(index, zone.to_string());
    }
    Ok(chosen)
}

/// Where a security group rule lets traffic in from (or out to).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Peer {
    Cidr(String),
    Ipv6(String),
    Group(String),
    PrefixList(String),
}

/// One security group rule: a protocol, a port range (none for all traffic), one peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// `tcp`, `udp`, `icmp`, or `-1` for all traffic.
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    pub peer: Peer,
}

impl Rule {
    pub fn tcp(port: i32, cidr: &str) -> Self {
        Self {
            protocol: "tcp".into(),
            from_port: Some(port),
            to_port: Some(port),
            peer: Peer::Cidr(cidr.into()),
        }
    }

    pub fn all_traffic_to(cidr: &str) -> Self {
        Self {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            peer: Peer::Cidr(cidr.into()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Managed {
    pub cidr: Ipv4Cidr,
    /// Subnet index -> its block of the even split. An existing subnet keeps its block when
    /// the count changes (AWS cannot resize a subnet); a new one takes this block when free.
    pub subnets: BTreeMap<usize, Ipv4Cidr>,
    pub subnet_prefix: u8,
    pub security_group_name: String,
    pub security_group_description: String,
    pub ingress: BTreeSet<Rule>,
    pub egress: BTreeSet<Rule>,
    /// `Name` tags by part (subnets: the prefix, followed by the index).
    pub names: BTreeMap<String, String>,
    /// Tags every part carries (the pipeline's, the environment, the owner); [`Managed::tags`]
    /// adds the part, its name and a subnet's index.
    pub tags: DesiredTags,
}

impl Managed {
    pub fn name(&self, part: Part, index: Option<usize>) -> String {
        let base = self.names.get(part.tag()).cloned().unwrap_or_default();
        match index {
            Some(i) => format!("{base}{i}"),
            None => base,
        }
    }

    /// The tags of one part.
    pub fn tags(&self, part: Part, index: Option<usize>) -> DesiredTags {
        let tags = self
            .tags
            .clone()
            .with(PART_KEY, part.tag())
            .with(NAME_KEY, &self.name(part, index));
        match index {
            Some(i) => tags.with(SUBNET_INDEX_KEY, &i.to_string()),
            None => tags,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Existing {
    pub subnet_ids: BTreeSet<String>,
    pub security_group_ids: BTreeSet<String>,
    pub assign_public_ip: bool,
    /// Where they must be, for messages.
    pub account_id: String,
    pub region: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Network {
    Managed(Managed),
    Existing(Existing),
}

/// Tags every managed part carries; also what the operator finds them by.
pub fn base_tags(ctx: &PipelineContext, env: Env) -> DesiredTags {
    DesiredTags::of(ctx).with(ENVIRONMENT_KEY, env.name())
}

/// The desired network of `env`. Err: the spec names none, or an unusable CIDR (both refused
/// at admission; checked again because the offline plan reads unvalidated manifests).
pub fn network(ctx: &PipelineContext, env: Env, at: &Placement) -> Result<Network, String> {
    let spec = ctx.network(env).ok_or_else(|| {
        format!(
            "neither environments.{}.network nor network is set",
            env.name()
        )
    })?;
    match spec {
        NetworkSpec {
            managed: Some(m), ..
        } => {
            let cidr = Ipv4Cidr::parse(&m.cidr)
                .ok_or_else(|| format!("{} is not an IPv4 network address", m.cidr))?;
            let count = usize::try_from(m.availability_zones).unwrap_or(0);
            let port = ctx.spec.container.port;
            let mut ingress: BTreeSet<Rule> = BTreeSet::from([Rule::tcp(port, &cidr.to_string())]);
            ingress.extend(
                env.spec(&ctx.spec)
                    .allowed_ingress_cidrs
                    .iter()
                    .map(|c| Rule::tcp(port, c)),
            );
            let names = ctx.names();
            let name = |part: &str| names.network(env, part);
            Ok(Network::Managed(Managed {
                cidr,
                subnets: split(cidr, count).into_iter().enumerate().collect(),
                subnet_prefix: subnet_prefix(cidr, count),
                security_group_name: name("tasks"),
                security_group_description: format!(
                    "Tasks of delivery pipeline {} ({})",
                    ctx.display_name(),
                    env.name()
                ),
                ingress,
                egress: BTreeSet::from([Rule::all_traffic_to("0.0.0.0/0")]),
                names: [
                    (Part::Vpc, name("vpc")),
                    (Part::InternetGateway, name("igw")),
                    (Part::Subnet, name("public-")),
                    (Part::RouteTable, name("public")),
                    (Part::SecurityGroup, name("tasks")),
                ]
                .into_iter()
                .map(|(part, n)| (part.tag().to_string(), n))
                .collect(),
                tags: base_tags(ctx, env),
            }))
        }
        NetworkSpec {
            existing: Some(e), ..
        } => Ok(Network::Existing(Existing {
            subnet_ids: e.subnet_ids.iter().cloned().collect(),
            security_group_ids: e.security_group_ids.iter().cloned().collect(),
            assign_public_ip: e.assign_public_ip,
            account_id: at.account_id.clone(),
            region: at.region.clone(),
        })),
        _ => Err("network sets neither managed nor existing".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExistingNetwork, ManagedNetwork};
    use crate::desired::testing::{FULL, MINIMAL, context};

    fn cidr(text: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    fn texts(blocks: &[Ipv4Cidr]) -> Vec<String> {
        blocks.iter().map(ToString::to_string).collect()
    }

    fn at() -> Placement {
        Placement {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws",
        }
    }

    #[test]
    fn cidrs_parse_only_network_addresses() {
        assert_eq!(cidr("10.40.0.0/16").to_string(), "10.40.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "10.40.0.1/16",
            "10.40.0.0",
            "10.40.0.0/33",
            "300.0.0.0/8",
            "x/8",
        ] {
            assert_eq!(Ipv4Cidr::parse(bad), None, "{bad}");
        }
        assert!(cidr("10.0.0.0/17").overlaps(cidr("10.0.64.0/18")));
        assert!(!cidr("10.0.0.0/18").overlaps(cidr("10.0.64.0/18")));
        assert!(cidr("0.0.0.0/0").overlaps(cidr("10.0.0.0/8")));
    }

    #[test]
    fn the_vpc_is_split_evenly_rounded_to_a_power_of_two() {
        assert_eq!(
            texts(&split(cidr("10.40.0.0/16"), 2)),
            ["10.40.0.0/17", "10.40.128.0/17"]
        );
        assert_eq!(
            texts(&split(cidr("10.40.0.0/16"), 3)),
            ["10.40.0.0/18", "10.40.64.0/18", "10.40.128.0/18"]
        );
        assert_eq!(subnet_prefix(cidr("10.40.0.0/16"), 4), 18);
        let six = split(cidr("192.168.1.0/24"), 6);
        assert_eq!(
            texts(&six),
            [
                "192.168.1.0/27",
                "192.168.1.32/27",
                "192.168.1.64/27",
                "192.168.1.96/27",
                "192.168.1.128/27",
                "192.168.1.160/27"
            ]
        );
        assert_eq!(cidr("192.168.1.0/24").blocks(27).len(), 8);
        assert!(cidr("10.0.0.0/24").blocks(23).is_empty());
    }

    fn zone(name: &str, state: &str, zone_type: &str) -> Zone {
        Zone {
            name: name.into(),
            state: state.into(),
            zone_type: zone_type.into(),
        }
    }

    #[test]
    fn zones_are_chosen_in_name_order_among_usable_ones() {
        let zones = vec![
            zone("us-east-1c", "available", "availability-zone"),
            zone("us-east-1a", "available", "availability-zone"),
            zone("us-east-1-bos-1a", "available", "local-zone"),
            zone("us-east-1b", "impaired", "availability-zone"),
            zone("us-east-1d", "available", "availability-zone"),
        ];
        let chosen = assign_zones(&zones, &BTreeMap::new(), &[0, 1, 2]);
        assert_eq!(
            chosen,
            Ok(BTreeMap::from([
                (0, "us-east-1a".to_string()),
                (1, "us-east-1c".to_string()),
                (2, "us-east-1d".to_string())
            ]))
        );
        // A kept subnet stays where it is; a new one avoids its zone.
        let kept = BTreeMap::from([(0, "us-east-1c".to_string())]);
        assert_eq!(
            assign_zones(&zones, &kept, &[1]),
            Ok(BTreeMap::from([(1, "us-east-1a".to_string())]))
        );
        let too_many = assign_zones(&zones, &BTreeMap::new(), &[0, 1, 2, 3]);
        assert!(
            too_many.is_err_and(|e| e.contains("3 usable availability zones")),
            "four subnets in three zones"
        );
    }

    #[test]
    fn managed_network_allows_the_container_port_from_the_vpc_and_listed_cidrs() {
        let mut c = context(MINIMAL);
        c.spec.environments.production.allowed_ingress_cidrs =
            vec!["203.0.113.0/24".into(), "10.40.0.0/16".into()];
        let Ok(Network::Managed(d)) = network(&c, Env::Production, &at()) else {
            panic!("managed network");
        };
        assert_eq!(
            d.ingress,
            BTreeSet::from([
                Rule::tcp(8080, "10.40.0.0/16"),
                Rule::tcp(8080, "203.0.113.0/24")
            ]),
            "the VPC CIDR listed again is one rule"
        );
        assert_eq!(
            d.egress,
            BTreeSet::from([Rule::all_traffic_to("0.0.0.0/0")])
        );
        assert_eq!(
            texts(&d.subnets.values().copied().collect::<Vec<_>>()),
            ["10.40.0.0/17", "10.40.128.0/17"]
        );
        let Ok(Network::Managed(staging)) = network(&c, Env::Staging, &at()) else {
            panic!("managed network");
        };
        assert_eq!(staging.ingress.len(), 1, "cidrs are per environment");
        assert_ne!(staging.security_group_name, d.security_group_name);
        let tags = d.tags(Part::Subnet, Some(1));
        assert_eq!(tags.tags[PART_KEY], "subnet");
        assert_eq!(tags.tags[SUBNET_INDEX_KEY], "1");
        assert_eq!(tags.tags[ENVIRONMENT_KEY], "production");
        assert!(tags.tags[NAME_KEY].ends_with("-production-public-1"));
        assert_eq!(tags.tags["delivery-operator.dev/owner"], "demo/hello");
    }

    #[test]
    fn an_environment_network_replaces_the_pipeline_network() {
        let mut c = context(FULL);
        c.spec.environments.staging.network = Some(NetworkSpec {
            managed: None,
            existing: Some(ExistingNetwork {
                subnet_ids: vec!["subnet-0123456789abcdef0".into()],
                security_group_ids: vec!["sg-0123456789abcdef0".into()],
                assign_public_ip: false,
            }),
        });
        c.spec.environments.production.network = Some(NetworkSpec {
            managed: Some(ManagedNetwork {
                cidr: "10.60.0.0/20".into(),
                availability_zones: 3,
            }),
            existing: None,
        });
        c.spec.network = None;
        let Ok(Network::Existing(s)) = network(&c, Env::Staging, &at()) else {
            panic!("existing network");
        };
        assert!(!s.assign_public_ip);
        let Ok(Network::Managed(p)) = network(&c, Env::Production, &at()) else {
            panic!("managed network");
        };
        assert_eq!(p.cidr.to_string(), "10.60.0.0/20");
        assert_eq!(p.subnet_prefix, 22);
        c.spec.environments.staging.network = None;
        assert!(network(&c, Env::Staging, &at()).is_err());
    }
}
