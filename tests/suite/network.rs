//! End to end, each environment's network: created from the examples and read back through the
//! SDK in the account it belongs to, field by field (VPC and DNS attributes, gateway, subnets and
//! their zones, routes and associations, security group rules, tags); a resync with nothing to
//! do only reads; a rule added by hand is revoked; one availability zone fewer removes exactly
//! one subnet; a switch to an existing network verifies it and removes the managed one;
//! deletion leaves nothing (listed by tags in every account). EC2 call counts come from the
//! emulator's own record of the operator's requests, per account.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, IpPermission, VpcAttributeName};
use delivery_operator::api::DeliveryPipeline;
use delivery_operator::desired::tags::{ENVIRONMENT_KEY, OWNER_KEY};
use delivery_operator::desired::{Env, PipelineContext};
use delivery_operator::groups::Placement;
use delivery_operator::groups::network::desired::{self, Managed, Network, Part, SUBNET_INDEX_KEY};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::emulator::{self, Fault, inject};
use crate::support::reconcile_and_wait;
use crate::support::{
    ACCOUNT, Operator, REGION, condition, config_for, counts, ctx_of, eventually, example, gone,
    start, wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);
const STAGING_ACCOUNT: &str = "222222222222";
const PRODUCTION_ACCOUNT: &str = "333333333333";

/// The zones DescribeAvailabilityZones lists in the emulator's us-east-1, by name.
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

async fn ec2_in(account: &str) -> Client {
    Client::new(&config_for(account).await)
}

/// EC2 calls of `kind` the emulator recorded for this operator after request `since`, by
/// account, then `EC2:Operation`.
async fn ec2_calls(
    operator: &Operator,
    kind: &str,
    since: u64,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    emulator::service_calls_by_account(&operator.access_key, "EC2", kind, since).await
}

/// The reads of `networks` networks in one account: each part listed once for all of them
/// (by the pipeline's owner tag), each VPC's two DNS attributes.
fn observe(networks: f64) -> BTreeMap<String, f64> {
    counts(&[
        ("EC2:DescribeVpcs", 1.0),
        ("EC2:DescribeVpcAttribute", 2.0 * networks),
        ("EC2:DescribeInternetGateways", 1.0),
        ("EC2:DescribeSubnets", 1.0),
        ("EC2:DescribeRouteTables", 1.0),
        ("EC2:DescribeSecurityGroups", 1.0),
    ])
}

fn in_accounts(pairs: &[(&str, BTreeMap<String, f64>)]) -> BTreeMap<String, BTreeMap<String, f64>> {
    pairs
        .iter()
        .map(|(a, c)| (a.to_string(), c.clone()))
        .collect()
}

fn desired_managed(ctx: &PipelineContext, env: Env) -> Managed {
    let at = Placement {
        account_id: ctx.environment_account(env),
        region: REGION.into(),
        partition: "aws",
    };
    match desired::network(ctx, env, &at) {
        Ok(Network::Managed(m)) => m,
        other => panic!("{env:?}: a managed network: {other:?}"),
    }
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// What an account holds of a pipeline's networks, by tags (one environment's, or every one).
#[derive(Debug, Default)]
struct View {
    vpcs: Vec<aws_sdk_ec2::types::Vpc>,
    gateways: Vec<aws_sdk_ec2::types::InternetGateway>,
    subnets: Vec<aws_sdk_ec2::types::Subnet>,
    tables: Vec<aws_sdk_ec2::types::RouteTable>,
    groups: Vec<aws_sdk_ec2::types::SecurityGroup>,
}

impl View {
    async fn of(ec2: &Client, ctx: &PipelineContext, env: Option<Env>) -> Self {
        let mut filters = vec![tag_filter(OWNER_KEY, &ctx.owner())];
        if let Some(env) = env {
            filters.push(tag_filter(ENVIRONMENT_KEY, env.name()));
        }
        let f = Some(filters);
        Self {
            vpcs: ec2
                .describe_vpcs()
                .set_filters(f.clone())
                .send()
                .await
                .expect("vpcs")
                .vpcs()
                .to_vec(),
            gateways: ec2
                .describe_internet_gateways()
                .set_filters(f.clone())
                .send()
                .await
                .expect("gateways")
                .internet_gateways()
                .to_vec(),
            subnets: ec2
                .describe_subnets()
                .set_filters(f.clone())
                .send()
                .await
                .expect("subnets")
                .subnets()
                .to_vec(),
            tables: ec2
                .describe_route_tables()
                .set_filters(f.clone())
                .send()
                .await
                .expect("route tables")
                .route_tables()
                .to_vec(),
            groups: ec2
                .describe_security_groups()
                .set_filters(f)
                .send()
                .await
                .expect("security groups")
                .security_groups()
                .to_vec(),
        }
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .vpcs
            .iter()
            .filter_map(|v| v.vpc_id())
            .chain(self.gateways.iter().filter_map(|g| g.internet_gateway_id()))
            .chain(self.subnets.iter().filter_map(|s| s.subnet_id()))
            .chain(self.tables.iter().filter_map(|t| t.route_table_id()))
            .chain(self.groups.iter().filter_map(|g| g.group_id()))
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    }
}

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

/// Every desired tag is on the resource (AWS may carry others).
fn assert_tagged(what: &str, actual: &[aws_sdk_ec2::types::Tag], want: &BTreeMap<String, String>) {
    let actual = tags_of(actual);
    for (k, v) in want {
        assert_eq!(actual.get(k), Some(v), "{what}: tag {k} in {actual:?}");
    }
}

/// (protocol, from port, to port, IPv4 CIDR) of every rule; other peers as `other:<id>`.
fn flat_rules(
    permissions: &[IpPermission],
) -> BTreeSet<(String, Option<i32>, Option<i32>, String)> {
    let mut out = BTreeSet::new();
    for p in permissions {
        let protocol = p.ip_protocol().unwrap_or_default().to_string();
        let ports = if protocol == "-1" {
            (None, None)
        } else {
            (p.from_port(), p.to_port())
        };
        for r in p.ip_ranges() {
            out.insert((
                protocol.clone(),
                ports.0,
                ports.1,
                r.cidr_ip().unwrap_or_default().to_string(),
            ));
        }
        for g in p.user_id_group_pairs() {
            out.insert((
                protocol.clone(),
                ports.0,
                ports.1,
                format!("other:{}", g.group_id().unwrap_or_default()),
            ));
        }
    }
    out
}

fn tcp(port: i32, cidr: &str) -> (String, Option<i32>, Option<i32>, String) {
    ("tcp".into(), Some(port), Some(port), cidr.into())
}

/// What one environment's network is in AWS.
struct Built {
    vpc: String,
    subnets: BTreeMap<usize, String>,
    group: String,
}

/// Reads one environment's network back in its account and compares it with the spec field by
/// field: one VPC (CIDR, DNS support and hostnames), one gateway attached to it, one subnet per
/// zone (block of the split, zone in name order), one route table (default route to the
/// gateway, every subnet associated), one security group (the container port from the VPC and
/// `allowed`, all egress), every part tagged.
async fn assert_network(
    ec2: &Client,
    ctx: &PipelineContext,
    env: Env,
    blocks: &[&str],
    allowed: &[&str],
) -> Built {
    let want = desired_managed(ctx, env);
    let view = View::of(ec2, ctx, Some(env)).await;
    assert_eq!(view.vpcs.len(), 1, "{env:?}: {:?}", view.vpcs);
    let vpc = &view.vpcs[0];
    let vpc_id = vpc.vpc_id().expect("vpc id").to_string();
    assert_eq!(vpc.cidr_block(), Some(want.cidr.to_string().as_str()));
    assert_tagged("vpc", vpc.tags(), &want.tags(Part::Vpc, None).tags);
    for (attribute, what) in [
        (VpcAttributeName::EnableDnsSupport, "support"),
        (VpcAttributeName::EnableDnsHostnames, "hostnames"),
    ] {
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attribute)
            .send()
            .await
            .expect("vpc attribute");
        let value = out
            .enable_dns_support()
            .or(out.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(value, Some(true), "{env:?}: DNS {what}");
    }

    assert_eq!(view.gateways.len(), 1, "{env:?}: {:?}", view.gateways);
    let gateway = &view.gateways[0];
    let gateway_id = gateway
        .internet_gateway_id()
        .expect("gateway id")
        .to_string();
    let attached: Vec<&str> = gateway
        .attachments()
        .iter()
        .filter_map(|a| a.vpc_id())
        .collect();
    assert_eq!(attached, vec![vpc_id.as_str()]);
    assert_tagged(
        "gateway",
        gateway.tags(),
        &want.tags(Part::InternetGateway, None).tags,
    );

    let mut subnets = BTreeMap::new();
    for s in &view.subnets {
        let index: usize = tags_of(s.tags())
            .get(SUBNET_INDEX_KEY)
            .and_then(|i| i.parse().ok())
            .expect("subnet index tag");
        assert_eq!(s.vpc_id(), Some(vpc_id.as_str()));
        assert_eq!(
            s.cidr_block(),
            Some(blocks[index]),
            "{env:?} subnet {index}"
        );
        assert_eq!(
            s.availability_zone(),
            Some(ZONES[index]),
            "{env:?} subnet {index}"
        );
        assert_tagged(
            "subnet",
            s.tags(),
            &want.tags(Part::Subnet, Some(index)).tags,
        );
        let previous = subnets.insert(index, s.subnet_id().expect("subnet id").to_string());
        assert_eq!(previous, None, "{env:?}: two subnets {index}");
    }
    assert_eq!(subnets.len(), blocks.len(), "{env:?}: {:?}", view.subnets);

    assert_eq!(view.tables.len(), 1, "{env:?}: {:?}", view.tables);
    let table = &view.tables[0];
    assert_eq!(table.vpc_id(), Some(vpc_id.as_str()));
    let default_route: Vec<Option<&str>> = table
        .routes()
        .iter()
        .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
        .map(|r| r.gateway_id())
        .collect();
    assert_eq!(default_route, vec![Some(gateway_id.as_str())]);
    let associated: BTreeSet<String> = table
        .associations()
        .iter()
        .filter(|a| a.main() != Some(true))
        .filter_map(|a| a.subnet_id().map(str::to_string))
        .collect();
    assert_eq!(associated, subnets.values().cloned().collect());
    assert_tagged(
        "route table",
        table.tags(),
        &want.tags(Part::RouteTable, None).tags,
    );

    assert_eq!(view.groups.len(), 1, "{env:?}: {:?}", view.groups);
    let group = &view.groups[0];
    assert_eq!(group.vpc_id(), Some(vpc_id.as_str()));
    assert_eq!(group.group_name(), Some(want.security_group_name.as_str()));
    let port = ctx.spec.container.port;
    let mut ingress = BTreeSet::from([tcp(port, &want.cidr.to_string())]);
    ingress.extend(allowed.iter().map(|c| tcp(port, c)));
    assert_eq!(flat_rules(group.ip_permissions()), ingress, "{env:?}");
    assert_eq!(
        flat_rules(group.ip_permissions_egress()),
        BTreeSet::from([("-1".to_string(), None, None, "0.0.0.0/0".to_string())])
    );
    assert_tagged(
        "security group",
        group.tags(),
        &want.tags(Part::SecurityGroup, None).tags,
    );
    Built {
        vpc: vpc_id,
        subnets,
        group: group.group_id().expect("group id").to_string(),
    }
}

/// The outputs and inventory items the network step reports for `env`.
fn assert_reported(dp: &DeliveryPipeline, env: Env, account: &str, built: &Built) {
    let status = dp.status.as_ref().expect("status");
    let outputs = match env {
        Env::Staging => status.outputs.staging.as_ref(),
        Env::Production => status.outputs.production.as_ref(),
    }
    .expect("environment outputs");
    assert_eq!(outputs.vpc_id.as_deref(), Some(built.vpc.as_str()));
    let mut subnets: Vec<String> = built.subnets.values().cloned().collect();
    subnets.sort();
    assert_eq!(outputs.subnet_ids, Some(subnets.join(",")));
    assert_eq!(
        outputs.security_group_ids.as_deref(),
        Some(built.group.as_str())
    );
    let group = format!("{}NetworkReady", env.title());
    let mut items: Vec<(String, String)> = status
        .inventory
        .iter()
        .filter(|i| i.group.as_deref() == Some(group.as_str()))
        .inspect(|i| assert_eq!((i.account.as_str(), i.region.as_str()), (account, REGION)))
        .map(|i| {
            (
                i.kind.clone(),
                i.id.rsplit('/').next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    items.sort();
    let mut want = vec![
        ("AWS::EC2::SecurityGroup".to_string(), built.group.clone()),
        ("AWS::EC2::VPC".to_string(), built.vpc.clone()),
    ];
    want.extend(
        built
            .subnets
            .values()
            .map(|s| ("AWS::EC2::Subnet".to_string(), s.clone())),
    );
    want.sort();
    let kinds: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds.contains(&"AWS::EC2::InternetGateway") && kinds.contains(&"AWS::EC2::RouteTable")
    );
    items.retain(|(k, _)| k != "AWS::EC2::InternetGateway" && k != "AWS::EC2::RouteTable");
    assert_eq!(items, want, "{env:?}");
}

#[tokio::test]
async fn each_environment_gets_its_own_network_kept_exact_and_removed_completely() {
    let (ns, operator, api) = start("e2e-net").await;
    let mut dp = example("minimal.yaml", &ns, "netted");
    if let Some(m) = dp.spec.network.as_mut().and_then(|n| n.managed.as_mut()) {
        m.availability_zones = 3;
    }
    dp.spec.environments.production.allowed_ingress_cidrs = vec!["203.0.113.0/24".into()];
    // EC2 is eventually consistent: once, a VPC just created is not found by the next call.
    inject(Fault {
        service: Some("EC2".into()),
        operation: Some("ModifyVpcAttribute".into()),
        access_key: Some(operator.access_key.clone()),
        error_code: Some("InvalidVpcID.NotFound".into()),
        http_status: Some(400),
        message: Some("The vpc ID does not exist".into()),
        count: Some(1),
        ..Fault::default()
    })
    .await;
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "netted", 1).await;
    let ctx = ctx_of(&dp);

    // Creation, per environment: VPC, DNS hostnames on, gateway attached, three subnets, the
    // route table with its default route and three associations, the group with its rules.
    assert_eq!(
        ec2_calls(&operator, "write", 0).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                ("EC2:CreateVpc", 2.0),
                // One more: the attempt that did not find the new VPC, retried at once.
                ("EC2:ModifyVpcAttribute", 3.0),
                ("EC2:CreateInternetGateway", 2.0),
                ("EC2:AttachInternetGateway", 2.0),
                ("EC2:CreateSubnet", 6.0),
                ("EC2:CreateRouteTable", 2.0),
                ("EC2:CreateRoute", 2.0),
                ("EC2:AssociateRouteTable", 6.0),
                ("EC2:CreateSecurityGroup", 2.0),
                // Staging: the VPC's CIDR; production: that and 203.0.113.0/24.
                ("EC2:AuthorizeSecurityGroupIngress", 3.0),
            ])
        )])
    );
    assert_eq!(
        ec2_calls(&operator, "read", 0).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                // One listing per part for both environments; each environment's zones.
                ("EC2:DescribeVpcs", 1.0),
                ("EC2:DescribeInternetGateways", 1.0),
                ("EC2:DescribeAvailabilityZones", 2.0),
            ])
        )])
    );

    // Two VPCs in one account, never shared, each exactly as specified.
    let ec2 = ec2_in(ACCOUNT).await;
    let quarters = ["10.40.0.0/18", "10.40.64.0/18", "10.40.128.0/18"];
    let staging = assert_network(&ec2, &ctx, Env::Staging, &quarters, &[]).await;
    let production =
        assert_network(&ec2, &ctx, Env::Production, &quarters, &["203.0.113.0/24"]).await;
    assert_ne!(staging.vpc, production.vpc);
    assert_reported(&ready, Env::Staging, ACCOUNT, &staging);
    assert_reported(&ready, Env::Production, ACCOUNT, &production);

    // A resync with nothing to do: no EC2 write, one observation of each network.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "netted").await;
    assert_eq!(
        emulator::count(&operator.calls_after(since).await, "write"),
        BTreeMap::new()
    );
    assert_eq!(ec2_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(
        ec2_calls(&operator, "read", since).await,
        in_accounts(&[(ACCOUNT, observe(2.0))])
    );

    // By hand, on staging's group: SSH open to the world, the VPC's own rule removed. One
    // revoke and one authorize put it back.
    let ssh = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(
            aws_sdk_ec2::types::IpRange::builder()
                .cidr_ip("0.0.0.0/0")
                .build(),
        )
        .build();
    let own = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(8080)
        .to_port(8080)
        .ip_ranges(
            aws_sdk_ec2::types::IpRange::builder()
                .cidr_ip("10.40.0.0/16")
                .build(),
        )
        .build();
    ec2.authorize_security_group_ingress()
        .group_id(&staging.group)
        .ip_permissions(ssh)
        .send()
        .await
        .expect("open SSH by hand");
    ec2.revoke_security_group_ingress()
        .group_id(&staging.group)
        .ip_permissions(own)
        .send()
        .await
        .expect("remove the VPC rule by hand");
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "netted").await;
    assert_eq!(
        ec2_calls(&operator, "write", since).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                ("EC2:RevokeSecurityGroupIngress", 1.0),
                ("EC2:AuthorizeSecurityGroupIngress", 1.0),
            ])
        )])
    );
    assert_network(&ec2, &ctx, Env::Staging, &quarters, &[]).await;

    // By hand, staging's first subnet moved to a route table of someone else's: moved back
    // (AWS refuses a second association; the existing one is replaced).
    let theirs = ec2
        .create_route_table()
        .vpc_id(&staging.vpc)
        .send()
        .await
        .expect("a route table made by hand")
        .route_table()
        .and_then(|t| t.route_table_id().map(str::to_string))
        .expect("route table id");
    let ours = View::of(&ec2, &ctx, Some(Env::Staging)).await.tables[0].clone();
    let moved = ours
        .associations()
        .iter()
        .find(|a| a.subnet_id() == Some(staging.subnets[&0].as_str()))
        .and_then(|a| a.route_table_association_id())
        .expect("association of subnet 0");
    ec2.replace_route_table_association()
        .association_id(moved)
        .route_table_id(&theirs)
        .send()
        .await
        .expect("move the subnet by hand");
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "netted").await;
    assert_eq!(
        ec2_calls(&operator, "write", since).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                // Refused with Resource.AlreadyAssociated, then the association is replaced.
                ("EC2:AssociateRouteTable", 1.0),
                ("EC2:ReplaceRouteTableAssociation", 1.0),
            ])
        )])
    );
    assert_network(&ec2, &ctx, Env::Staging, &quarters, &[]).await;
    ec2.delete_route_table()
        .route_table_id(&theirs)
        .send()
        .await
        .expect("the table made by hand, empty again, is removed");

    // Production gets a network of its own: the same VPC with two zones. The third subnet (and
    // its association) goes; the other two keep their blocks.
    let since = emulator::last_seq(&operator.access_key).await;
    let two_zones = json!({"managed": {"cidr": "10.40.0.0/16", "availabilityZones": 2}});
    api.patch(
        "netted",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"environments": {"production": {"network": two_zones}}}})),
    )
    .await
    .expect("patch");
    let shrunk = wait_ready(&api, "netted", 2).await;
    assert_eq!(
        ec2_calls(&operator, "write", since).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                ("EC2:DisassociateRouteTable", 1.0),
                ("EC2:DeleteSubnet", 1.0),
            ])
        )])
    );
    let mut ctx = ctx;
    ctx.spec = shrunk.spec.clone();
    let production = assert_network(
        &ec2,
        &ctx,
        Env::Production,
        &quarters[..2],
        &["203.0.113.0/24"],
    )
    .await;
    let shrunk = api.get("netted").await.expect("get");
    assert_reported(&shrunk, Env::Production, ACCOUNT, &production);

    // Deletion, with a subnet still in use at the first attempt (a task's network interface
    // being released): waited for, then everything goes.
    inject(Fault {
        service: Some("EC2".into()),
        operation: Some("DeleteSubnet".into()),
        access_key: Some(operator.access_key.clone()),
        error_code: Some("DependencyViolation".into()),
        http_status: Some(400),
        message: Some("The subnet has dependencies and cannot be deleted.".into()),
        count: Some(1),
        ..Fault::default()
    })
    .await;
    let since = emulator::last_seq(&operator.access_key).await;
    api.delete("netted", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "netted").await;
    assert_eq!(
        ec2_calls(&operator, "write", since).await,
        in_accounts(&[(
            ACCOUNT,
            counts(&[
                ("EC2:DeleteSecurityGroup", 2.0),
                // Staging's three associations, production's two.
                ("EC2:DisassociateRouteTable", 5.0),
                ("EC2:DeleteRouteTable", 2.0),
                // Five subnets, one of them refused once.
                ("EC2:DeleteSubnet", 6.0),
                ("EC2:DetachInternetGateway", 2.0),
                ("EC2:DeleteInternetGateway", 2.0),
                ("EC2:DeleteVpc", 2.0),
            ])
        )])
    );
    assert_eq!(View::of(&ec2, &ctx, None).await.ids(), Vec::<String>::new());
    emulator::clear_faults_for(&operator.access_key).await;
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn cross_account_networks_live_in_their_accounts_and_a_switch_to_existing_removes_the_managed_one()
 {
    let (ns, operator, api) = start("e2e-net-xacct").await;
    let dp = example("cross-account.yaml", &ns, "spread-net");
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "spread-net", 1).await;

    // Each network in its environment's account; nothing in the pipeline's.
    let halves = ["10.40.0.0/17", "10.40.128.0/17"];
    let staging_ec2 = ec2_in(STAGING_ACCOUNT).await;
    let production_ec2 = ec2_in(PRODUCTION_ACCOUNT).await;
    let staging = assert_network(&staging_ec2, &ctx, Env::Staging, &halves, &[]).await;
    let production = assert_network(&production_ec2, &ctx, Env::Production, &halves, &[]).await;
    assert_reported(&ready, Env::Staging, STAGING_ACCOUNT, &staging);
    assert_reported(&ready, Env::Production, PRODUCTION_ACCOUNT, &production);
    let here = ec2_in(ACCOUNT).await;
    assert_eq!(
        View::of(&here, &ctx, None).await.ids(),
        Vec::<String>::new()
    );
    assert_eq!(
        View::of(&production_ec2, &ctx, Some(Env::Staging))
            .await
            .ids(),
        Vec::<String>::new(),
        "staging's network is not in production's account"
    );

    // A resync with nothing to do: one observation in each environment account, none in the
    // pipeline's.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "spread-net").await;
    assert_eq!(ec2_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(
        ec2_calls(&operator, "read", since).await,
        in_accounts(&[
            (STAGING_ACCOUNT, observe(1.0)),
            (PRODUCTION_ACCOUNT, observe(1.0))
        ])
    );

    // A network made by hand in the staging account.
    let vpc = staging_ec2
        .create_vpc()
        .cidr_block("10.90.0.0/16")
        .send()
        .await
        .expect("vpc")
        .vpc()
        .and_then(|v| v.vpc_id().map(str::to_string))
        .expect("vpc id");
    let subnet = staging_ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.90.1.0/24")
        .send()
        .await
        .expect("subnet")
        .subnet()
        .and_then(|s| s.subnet_id().map(str::to_string))
        .expect("subnet id");
    let group = staging_ec2
        .create_security_group()
        .vpc_id(&vpc)
        .group_name(format!("{ns}-by-hand"))
        .description("made by hand")
        .send()
        .await
        .expect("group")
        .group_id()
        .map(str::to_string)
        .expect("group id");

    // Naming a subnet that does not exist: reported, and the managed network stays.
    let since = emulator::last_seq(&operator.access_key).await;
    let wrong = json!({"existing": {"subnetIds": ["subnet-0123456789abcdef0", subnet], "securityGroupIds": [group]}});
    api.patch(
        "spread-net",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"environments": {"staging": {"network": wrong}}}})),
    )
    .await
    .expect("patch");
    let refused = eventually("the wrong subnet reported", WAIT, || async {
        let dp = api.get("spread-net").await.ok()?;
        let c = condition(&dp, "StagingNetworkReady")?.clone();
        (c.reason == "ExistingNetworkInvalid" && c.observed_generation == Some(2)).then_some(c)
    })
    .await;
    assert_eq!(refused.status, "False");
    assert_eq!(
        refused.message,
        "staging network: subnet subnet-0123456789abcdef0 does not exist in account 222222222222 region us-east-1"
    );
    assert_eq!(ec2_calls(&operator, "write", since).await, BTreeMap::new());
    assert_eq!(View::of(&staging_ec2, &ctx, None).await.vpcs.len(), 1);

    // The right ones: the managed network of staging is removed, the outputs name the
    // existing one, production is untouched.
    let since = emulator::last_seq(&operator.access_key).await;
    let right = json!({"existing": {"subnetIds": [subnet], "securityGroupIds": [group]}});
    api.patch(
        "spread-net",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"environments": {"staging": {"network": right}}}})),
    )
    .await
    .expect("patch");
    let moved = wait_ready(&api, "spread-net", 3).await;
    assert_eq!(
        ec2_calls(&operator, "write", since).await,
        in_accounts(&[(
            STAGING_ACCOUNT,
            counts(&[
                ("EC2:DeleteSecurityGroup", 1.0),
                ("EC2:DisassociateRouteTable", 2.0),
                ("EC2:DeleteRouteTable", 1.0),
                ("EC2:DeleteSubnet", 2.0),
                ("EC2:DetachInternetGateway", 1.0),
                ("EC2:DeleteInternetGateway", 1.0),
                ("EC2:DeleteVpc", 1.0),
            ])
        )])
    );
    assert_eq!(
        View::of(&staging_ec2, &ctx, None).await.ids(),
        Vec::<String>::new()
    );
    let outputs = moved
        .status
        .as_ref()
        .and_then(|s| s.outputs.staging.clone())
        .expect("staging outputs");
    assert_eq!(
        (
            outputs.vpc_id.as_deref(),
            outputs.subnet_ids.as_deref(),
            outputs.security_group_ids.as_deref()
        ),
        (
            Some(vpc.as_str()),
            Some(subnet.as_str()),
            Some(group.as_str())
        )
    );
    assert!(
        moved.status.as_ref().is_some_and(|s| s
            .inventory
            .iter()
            .all(|i| i.group.as_deref() != Some("StagingNetworkReady"))),
        "an existing network is not owned"
    );
    assert_network(&production_ec2, &ctx, Env::Production, &halves, &[]).await;

    // Deletion: nothing of the pipeline's is left in any account; the network made by hand is.
    api.delete("spread-net", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "spread-net").await;
    for (account, ec2) in [
        (ACCOUNT, &here),
        (STAGING_ACCOUNT, &staging_ec2),
        (PRODUCTION_ACCOUNT, &production_ec2),
    ] {
        assert_eq!(
            View::of(ec2, &ctx, None).await.ids(),
            Vec::<String>::new(),
            "{account}"
        );
    }
    let kept = staging_ec2
        .describe_subnets()
        .subnet_ids(&subnet)
        .send()
        .await
        .expect("the subnet made by hand is kept");
    assert_eq!(kept.subnets().len(), 1);
    staging_ec2
        .delete_security_group()
        .group_id(&group)
        .send()
        .await
        .expect("clean up");
    staging_ec2
        .delete_subnet()
        .subnet_id(&subnet)
        .send()
        .await
        .expect("clean up");
    staging_ec2
        .delete_vpc()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("clean up");
    operator.assert_calls_match_record().await;
}
