//! What the operator costs at rest: a restart (or a new leader) trusts what the status says was
//! verified whole within the resync interval, and makes no AWS call until it is due.

use std::collections::BTreeSet;
use std::time::Duration;

use delivery_operator::api::DeliveryPipeline;
use delivery_operator::controller::shard::Shard;
use delivery_operator::desired::tags::OWNER_KEY;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use crate::emulator::count;
use crate::support::{
    LEASE_NAMESPACE, Operator, claim_lease, ctx_of, eventually, example, kube_client, namespace,
    reconcile_and_wait, request_reconcile, size_from, unique, wait_ready,
};

const WAIT: Duration = Duration::from_secs(180);

/// `RESTART_PIPELINES` whole pipelines (10 in `make test`; docs/testing.md has 50) Ready, the
/// operator killed and started again: once the new process has looked at every pipeline (its
/// log names each one it deferred), the emulator's record holds no call of it at all (not even the
/// session's GetCallerIdentity), and no status changed; a reconcile asked for on one pipeline
/// then reads AWS at once (the skip is for what was verified, not a stopped operator).
#[tokio::test]
async fn a_restart_with_ready_pipelines_makes_no_aws_call_until_they_are_due() {
    let size = size_from("RESTART_PIPELINES", 10);
    let (ns, api) = namespace("scale-restart").await;
    let names: Vec<String> = (0..size).map(|i| format!("p{i:03}")).collect();
    // The request rate is not what this test is about: many deletions at the default rate
    // queue for minutes.
    let env = [
        ("AWS_REQUESTS_PER_SECOND", "100"),
        ("AWS_REQUEST_BURST", "100"),
    ];
    let first = Operator::start(&ns, &env);
    for name in &names {
        api.create(&PostParams::default(), &example("minimal.yaml", &ns, name))
            .await
            .expect("create");
    }
    for name in &names {
        wait_ready(&api, name, 1).await;
    }
    drop(first);
    let mut verified = Vec::new();
    for name in &names {
        let status = api.get(name).await.expect("get").status.expect("status");
        assert!(status.verified_at.is_some(), "{name}: verifiedAt written");
        verified.push(status);
    }

    let second = Operator::start(&ns, &env);
    // Its log names each pipeline it deferred (the skip writes nothing anywhere else).
    eventually("the new process looked at every pipeline", WAIT, || async {
        let log = second.plain_log();
        names
            .iter()
            .all(|name| {
                log.lines().any(|l| {
                    l.contains("verified whole within the resync interval")
                        && l.contains(&format!("pipeline={ns}/{name} "))
                })
            })
            .then_some(())
    })
    .await;
    assert_eq!(
        second.calls().await.len(),
        0,
        "AWS calls of the restarted operator before any pipeline was due"
    );
    for (name, before) in names.iter().zip(&verified) {
        let now = api.get(name).await.expect("get").status.expect("status");
        assert_eq!(&now, before, "{name}: status unchanged by the restart");
    }

    reconcile_and_wait(&api, &names[0]).await;
    assert!(
        !second.calls().await.is_empty(),
        "a requested reconcile reads AWS"
    );

    delete_all(&api, &names, WAIT).await;
}

/// Flags for a replica of a sharded operator: `shards` shards on leases named after `lease`,
/// a 4 s lease renewed every second and given up after 3 s, at most two shards a replica.
fn sharded(lease: &str, shards: u32) -> Vec<String> {
    [
        "--leader-elect-lease-name",
        lease,
        "--leader-elect-lease-duration-seconds",
        "4",
        "--leader-elect-renew-deadline-seconds",
        "3",
        "--leader-elect-retry-period-seconds",
        "1",
        "--shards",
        &shards.to_string(),
        "--max-shards-per-replica",
        "2",
        "--aws-requests-per-second",
        "100",
        "--aws-request-burst",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The identity holding each shard's lease (all of them held).
async fn shard_holders(lease: &str, shards: u32) -> Option<Vec<String>> {
    let leases: Api<Lease> = Api::namespaced(kube_client("admin").await, LEASE_NAMESPACE);
    let mut holders = Vec::new();
    for index in 0..shards {
        let got = leases
            .get_opt(&format!("{lease}-shard-{index}-of-{shards}"))
            .await
            .ok()??;
        holders.push(got.spec?.holder_identity.filter(|h| !h.is_empty())?);
    }
    Some(holders)
}

/// The shard of `shards` a pipeline's UID puts it in.
fn shard_of(dp: &DeliveryPipeline, shards: u32) -> u32 {
    let uid = dp.uid().expect("uid");
    (0..shards)
        .find(|i| Shard::new(*i, shards).expect("shard").contains(&uid))
        .expect("a shard")
}

/// The buckets `operator`'s S3 calls after request `mark` named (the emulator's record).
async fn buckets_named(operator: &Operator, mark: u64) -> BTreeSet<String> {
    operator
        .calls_after(mark)
        .await
        .iter()
        .filter(|c| c.service == "S3")
        .filter_map(|c| {
            c.path
                .trim_start_matches('/')
                .split(['/', '?'])
                .next()
                .map(str::to_string)
        })
        .filter(|b| !b.is_empty())
        .collect()
}

/// The artifact buckets each replica's S3 calls named (the emulator's record, per access key).
async fn buckets_touched(replicas: &[Operator], since: &[u64]) -> Vec<BTreeSet<String>> {
    let mut touched = Vec::new();
    for (replica, mark) in replicas.iter().zip(since) {
        touched.push(buckets_named(replica, *mark).await);
    }
    touched
}

/// VPCs in the pipeline account tagged as `dp`'s (every page).
async fn vpcs_of(ec2: &aws_sdk_ec2::Client, dp: &DeliveryPipeline) -> usize {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{OWNER_KEY}"))
        .values(ctx_of(dp).owner())
        .build();
    let vpcs: Vec<_> = ec2
        .describe_vpcs()
        .filters(filter)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("describe vpcs");
    vpcs.len()
}

/// Three replicas share three shards (server-side sharded watch, one Lease per shard) over 30
/// whole pipelines: every pipeline is Ready, and the emulator's record shows each pipeline's
/// bucket touched by exactly one replica, the holder of the pipeline's shard (computed from
/// its UID). Then the holder of one shard is killed: another replica holds its lease within
/// the lease duration and retry period (measured, printed), reconciles that shard's pipelines
/// when asked (no other replica does), and no resource exists twice (one bucket and two VPCs
/// per pipeline, read from the emulator).
#[tokio::test]
async fn three_replicas_share_three_shards_and_take_over_a_killed_ones() {
    const SHARDS: u32 = 3;
    let size = size_from("SHARDED_PIPELINES", 30);
    let (ns, api) = namespace("scale-shards").await;
    let lease = unique("shards");
    let args = sharded(&lease, SHARDS);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas: Vec<Operator> = ["a", "b", "c"]
        .iter()
        .map(|r| Operator::start_replica(&ns, &unique(&format!("shard-replica-{r}")), &args))
        .collect();
    let holders = eventually("every shard's lease held", WAIT, || {
        shard_holders(&lease, SHARDS)
    })
    .await;
    for holder in &holders {
        assert!(
            replicas.iter().any(|r| &r.identity == holder),
            "{holder} is one of the replicas"
        );
    }
    let marks: Vec<u64> = futures::future::join_all(replicas.iter().map(|r| r.mark())).await;

    let names: Vec<String> = (0..size).map(|i| format!("s{i:03}")).collect();
    for name in &names {
        api.create(&PostParams::default(), &example("minimal.yaml", &ns, name))
            .await
            .expect("create");
    }
    let mut pipelines = Vec::new();
    for name in &names {
        pipelines.push(wait_ready(&api, name, 1).await);
    }
    let shard_of = |dp: &DeliveryPipeline| shard_of(dp, SHARDS) as usize;
    let touched = buckets_touched(&replicas, &marks).await;
    for dp in &pipelines {
        let bucket = ctx_of(dp).names().artifact_bucket();
        let by: Vec<&str> = replicas
            .iter()
            .zip(&touched)
            .filter(|(_, buckets)| buckets.contains(&bucket))
            .map(|(r, _)| r.identity.as_str())
            .collect();
        assert_eq!(
            by,
            vec![holders[shard_of(dp)].as_str()],
            "{}: reconciled by exactly the holder of its shard {}",
            dp.name_any(),
            shard_of(dp)
        );
    }
    let per_shard: Vec<usize> = (0..SHARDS as usize)
        .map(|s| pipelines.iter().filter(|dp| shard_of(dp) == s).count())
        .collect();
    println!("sharding: {size} pipelines over shards {per_shard:?}, holders {holders:?}");

    // The holder of the fullest shard is killed, as a crashed node would stop it.
    let shard = (0..SHARDS as usize)
        .max_by_key(|s| per_shard[*s])
        .expect("a shard");
    let victim = replicas
        .iter()
        .position(|r| r.identity == holders[shard])
        .expect("the holder");
    let killed_at = std::time::Instant::now();
    replicas[victim].kill();
    let taker = eventually("another replica holding the shard", WAIT, || async {
        let now = shard_holders(&lease, SHARDS).await?;
        (now[shard] != holders[shard]).then(|| now[shard].clone())
    })
    .await;
    println!(
        "sharding: shard {shard} taken over by {taker} {:.1} s after its holder was killed (lease 4 s, retry 1 s)",
        killed_at.elapsed().as_secs_f64()
    );
    let taker_index = replicas
        .iter()
        .position(|r| r.identity == taker)
        .expect("the taker is a replica");
    assert_ne!(taker_index, victim);
    let marks: Vec<u64> = futures::future::join_all(replicas.iter().map(|r| r.mark())).await;
    let in_shard: Vec<&DeliveryPipeline> = pipelines
        .iter()
        .filter(|dp| shard_of(dp) == shard)
        .collect();
    for dp in &in_shard {
        reconcile_and_wait(&api, &dp.name_any()).await;
    }
    let touched = buckets_touched(&replicas, &marks).await;
    for dp in &in_shard {
        let bucket = ctx_of(dp).names().artifact_bucket();
        for (i, buckets) in touched.iter().enumerate() {
            assert_eq!(
                buckets.contains(&bucket),
                i == taker_index,
                "{}: after the takeover only {taker} reconciles it ({} did: {})",
                dp.name_any(),
                replicas[i].identity,
                buckets.contains(&bucket)
            );
        }
    }

    let config = crate::support::aws_config().await;
    let s3 = crate::support::s3(&config);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let buckets: BTreeSet<String> = {
        s3.list_buckets()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .expect("list buckets")
            .iter()
            .flat_map(|page| {
                page.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_string))
            })
            .collect()
    };
    for dp in &pipelines {
        assert!(
            buckets.contains(&ctx_of(dp).names().artifact_bucket()),
            "{}",
            dp.name_any()
        );
        assert_eq!(
            vpcs_of(&ec2, dp).await,
            2,
            "{}: one VPC per environment",
            dp.name_any()
        );
    }

    delete_all(&api, &names, WAIT).await;
}

/// Waits (until `deadline`) for every one of `size` pipelines in `api`'s namespace to satisfy
/// `done`, watching them: each change the API server sends is checked as it comes, so nothing
/// lists the whole namespace again and again (at a thousand pipelines, ~18 MB a listing).
async fn until_every(
    api: &Api<DeliveryPipeline>,
    size: usize,
    what: &str,
    deadline: Duration,
    done: impl Fn(&DeliveryPipeline) -> bool,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (pipelines, writer) = reflector::store();
    let mut changes = watcher(api.clone(), watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .boxed();
    let watched = tokio::time::timeout(deadline, async {
        while let Some(change) = changes.next().await {
            change.expect("watch pipelines");
            if pipelines.state().iter().filter(|dp| done(dp)).count() == size {
                return;
            }
        }
    })
    .await;
    assert!(
        watched.is_ok(),
        "timed out after {deadline:?} waiting for {what}"
    );
}

/// The bench (`scripts/bench N` runs it with `BENCH_PIPELINES=N`, optionally on a release
/// build through `OPERATOR_BINARY`; `make test` runs 3): N whole pipelines (the minimal
/// example) through one operator. Reports time to all Ready, AWS calls per pipeline to create
/// and per no-op resync from the emulator's record, and the operator's peak RSS; asserts the
/// writes to create and the reads of a no-op resync exactly, N times one pipeline's (so
/// pipelines do not cost each other calls).
#[tokio::test]
async fn bench_whole_pipelines_time_calls_and_memory() {
    let size = size_from("BENCH_PIPELINES", 3);
    let (ns, api) = namespace("bench").await;
    let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "8".into());
    // The emulator is one account: the per-service request rate of one account is not what is
    // measured here (at the default 10 per second, 1,000 pipelines' EC2 calls alone queue for
    // most of an hour).
    let env = [
        ("AWS_REQUESTS_PER_SECOND", "1000"),
        ("AWS_REQUEST_BURST", "1000"),
        ("MAX_CONCURRENT_RECONCILES", concurrency.as_str()),
        ("RUST_LOG", "warn"),
    ];
    let operator = Operator::start(&ns, &env);
    let names: Vec<String> = (0..size).map(|i| format!("b{i:04}")).collect();
    let started = std::time::Instant::now();
    for name in &names {
        api.create(&PostParams::default(), &example("minimal.yaml", &ns, name))
            .await
            .expect("create");
    }
    let wait = WAIT + Duration::from_secs(3 * size as u64);
    until_every(&api, size, "every pipeline Ready", wait, |dp| {
        crate::support::is_ready(dp)
            && dp.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
    })
    .await;
    let to_ready = started.elapsed();
    let created = operator.calls().await;
    let n = size as f64;
    let writes: f64 = count(&created, "write").values().sum();
    let create_reads: f64 = count(&created, "read").values().sum();
    let expected_writes: std::collections::BTreeMap<String, f64> = crate::operator::create_writes()
        .into_iter()
        .map(|(call, per)| (call, per * n))
        .collect();
    assert_eq!(
        count(&created, "write"),
        expected_writes,
        "writes to create {size} pipelines"
    );

    let mark = operator.mark().await;
    let mut requests = Vec::new();
    for name in &names {
        requests.push((name.clone(), request_reconcile(&api, name).await));
    }
    let requests: std::collections::BTreeMap<String, String> = requests.into_iter().collect();
    until_every(&api, size, "every reconcile request handled", wait, |dp| {
        let handled = dp
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref());
        handled.is_some() && handled == requests.get(&dp.name_any()).map(String::as_str)
    })
    .await;
    let resync = operator.calls_after(mark).await;
    assert_eq!(
        count(&resync, "write").len(),
        0,
        "a no-op resync writes nothing"
    );
    let expected: std::collections::BTreeMap<String, f64> = crate::operator::observe_reads()
        .into_values()
        .flatten()
        .map(|(call, per)| (call, per * n))
        .collect();
    assert_eq!(
        count(&resync, "read"),
        expected,
        "reads of {size} no-op resyncs"
    );
    let resync_reads: f64 = expected.values().sum();
    // A requested check reads IAM too; the resyncs between hourly IAM checks do not.
    let iam_reads: f64 = expected
        .iter()
        .filter(|(call, _)| call.starts_with("IAM:"))
        .map(|(_, n)| n)
        .sum();
    let rss = operator.peak_rss_kib();
    println!(
        "bench: {size} pipelines: all Ready in {:.1} s; per pipeline {:.1} reads + {:.0} writes to create, {:.0} reads per no-op check ({:.0} between IAM checks; {:.0} per hour at the 10-minute resync and hourly IAM check); peak RSS {:.1} MiB",
        to_ready.as_secs_f64(),
        create_reads / n,
        writes / n,
        resync_reads / n,
        (resync_reads - iam_reads) / n,
        (6.0 * resync_reads - 5.0 * iam_reads) / n,
        rss as f64 / 1024.0
    );
    let mib = |field: &str| operator.memory_kib(field) as f64 / 1024.0;
    println!(
        "bench: memory now: resident {:.1} MiB = heap {:.1} (RssAnon) + code {:.1} (RssFile)",
        mib("VmRSS"),
        mib("RssAnon"),
        mib("RssFile")
    );
    if std::env::var_os("BENCH_KEEP").is_none() {
        delete_all(&api, &names, wait).await;
    }
}

/// A replica holding two shards loses one of them (an administrator writes another holder into
/// that shard's Lease and keeps renewing it): the replica says so, keeps the other shard, and
/// reconciles nothing of the lost one: a reconcile asked for on a pipeline of the lost shard
/// and then one on a pipeline of the kept shard, only the second is handled and the emulator's
/// record has no call on the first's bucket. When the intruder stops renewing, the replica takes
/// the shard back (its claim expired) and handles the waiting request.
#[tokio::test]
async fn a_replica_that_loses_a_shards_lease_stops_that_shard_only() {
    const SHARDS: u32 = 2;
    let (ns, api) = namespace("scale-shard-loss").await;
    let lease = unique("shard-loss");
    let args = sharded(&lease, SHARDS);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = Operator::start_replica(&ns, &unique("shard-replica"), &args);
    let shard_of = |dp: &DeliveryPipeline| shard_of(dp, SHARDS);
    // Pipelines until both shards have one (UIDs are random).
    let mut by_shard: [Option<String>; 2] = [None, None];
    let mut names = Vec::new();
    for i in 0..32 {
        if by_shard.iter().all(Option::is_some) {
            break;
        }
        let name = format!("l{i:02}");
        let made = api
            .create(&PostParams::default(), &example("minimal.yaml", &ns, &name))
            .await
            .expect("create");
        by_shard[shard_of(&made) as usize].get_or_insert(name.clone());
        names.push(name);
    }
    let [Some(lost), Some(kept)] = by_shard else {
        panic!("no pipeline in one of the shards after 32: {names:?}");
    };
    for name in &names {
        wait_ready(&api, name, 1).await;
    }
    let lost_dp = api.get(&lost).await.expect("get");
    let lost_shard = shard_of(&lost_dp);
    let lost_lease = format!("{lease}-shard-{lost_shard}-of-{SHARDS}");
    let leases: Api<Lease> = Api::namespaced(kube_client("admin").await, LEASE_NAMESPACE);

    // The intruder holds the lost shard's Lease as a replica would: it renews it every 500 ms
    // (its renewal period, faster than the 4 s lease) until it is stopped.
    let intrude = |leases: Api<Lease>, name: String| async move {
        let mut renewals = tokio::time::interval(Duration::from_millis(500));
        loop {
            renewals.tick().await;
            claim_lease(&leases, &name, "intruder").await;
        }
    };
    let intruder = tokio::spawn(intrude(leases.clone(), lost_lease.clone()));
    eventually("the replica saying it lost the shard", WAIT, || async {
        let log = replica.plain_log();
        log.lines()
            .any(|l| {
                l.contains("lost the shard's lease")
                    && l.contains(&format!("shard={lost_shard}/{SHARDS}"))
            })
            .then_some(())
    })
    .await;
    let mark = replica.mark().await;
    let waiting = request_reconcile(&api, &lost).await;
    reconcile_and_wait(&api, &kept).await;
    let handled = |dp: &DeliveryPipeline| {
        dp.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.clone())
    };
    assert_ne!(
        handled(&api.get(&lost).await.expect("get")),
        Some(waiting.clone()),
        "the lost shard's pipeline was reconciled while another held its shard"
    );
    let touched = buckets_named(&replica, mark).await;
    let lost_bucket = ctx_of(&lost_dp).names().artifact_bucket();
    let kept_bucket = ctx_of(&api.get(&kept).await.expect("get"))
        .names()
        .artifact_bucket();
    assert!(
        !touched.contains(&lost_bucket),
        "calls on the lost shard's bucket: {touched:?}"
    );
    assert!(
        touched.contains(&kept_bucket),
        "the kept shard's reconcile read its bucket: {touched:?}"
    );

    intruder.abort();
    eventually(
        "the replica holding the shard again and handling the request",
        WAIT,
        || async {
            let dp = api.get(&lost).await.ok()?;
            (handled(&dp) == Some(waiting.clone())).then_some(())
        },
    )
    .await;

    delete_all(&api, &names, WAIT).await;
}

/// IAM is checked whole at most every `--iam-check-interval-seconds` (default an hour): a
/// plain resync between two IAM checks reads exactly what a checked reconcile reads except
/// the roles (30 reads of the minimal example), and writes nothing; a reconcile request then
/// reads the roles again. Counts from the emulator's record, with a 6-second resync so the
/// resyncs come by the timer, not by a request.
#[tokio::test]
async fn a_resync_between_iam_checks_reads_everything_but_the_roles() {
    let (ns, api) = namespace("scale-iam").await;
    let operator = Operator::start(&ns, &[("RESYNC_INTERVAL_SECONDS", "6")]);
    api.create(&PostParams::default(), &example("minimal.yaml", &ns, "web"))
        .await
        .expect("create");
    wait_ready(&api, "web", 1).await;
    let verified = |dp: &DeliveryPipeline| dp.status.as_ref().and_then(|s| s.verified_at.clone());
    let checked_by_timer = |before: Option<String>| {
        let api = api.clone();
        async move {
            until_every(&api, 1, "a resync by the timer", WAIT, |dp| {
                verified(dp).is_some() && verified(dp) != before
            })
            .await;
        }
    };
    // One resync to settle on, then one measured: the calls between two recorded checks.
    checked_by_timer(verified(&api.get("web").await.expect("get"))).await;
    let before = verified(&api.get("web").await.expect("get"));
    let mark = operator.mark().await;
    checked_by_timer(before).await;
    let resync = operator.calls_after(mark).await;
    assert_eq!(
        count(&resync, "write").len(),
        0,
        "a no-op resync writes nothing"
    );
    let mut expected = crate::operator::observe_reads();
    let roles = expected.remove("Roles").expect("the roles' reads");
    assert_eq!(
        count(&resync, "read"),
        expected.into_values().flatten().collect(),
        "a resync between IAM checks"
    );
    // A reconcile request checks the roles too.
    let requested = operator.calls_of_reconcile(&api, "web").await;
    let iam: std::collections::BTreeMap<String, f64> = count(&requested, "read")
        .into_iter()
        .filter(|(call, _)| call.starts_with("IAM:"))
        .collect();
    assert_eq!(iam, roles, "a requested check reads the roles");

    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    crate::support::gone_within(&api, "web", WAIT).await;
}

/// Deletes every pipeline of `names` and waits (up to `wait` each) until each is gone.
async fn delete_all(api: &Api<DeliveryPipeline>, names: &[String], wait: Duration) {
    for name in names {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    for name in names {
        crate::support::gone_within(api, name, wait).await;
    }
}
