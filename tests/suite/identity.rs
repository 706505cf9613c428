//! End to end, the pipeline's identities and what they reach: IAM roles with their trust and
//! inline policies, the notifications and approval topics with their policies and
//! subscriptions, the key and bucket policies granting environment roles, log groups. The
//! cross-account example spans three emulated accounts; every resource is read back in the
//! account it belongs to, and deletion is checked by listing each service in each account.
//! Call counts come from the emulator's own record of the operator's requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use delivery_operator::api::DeliveryPipeline;
use delivery_operator::desired::{Env, PipelineContext, policy};
use delivery_operator::groups::artifact_store::desired as artifact_store;
use delivery_operator::groups::encryption_key::desired as encryption_key;
use delivery_operator::groups::notifications::desired::{Purpose, topic};
use delivery_operator::groups::roles::desired::{self as roles, Role};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::emulator::{self, Fault, by_account, count, inject};
use crate::support::reconcile_and_wait;
use crate::support::{
    ACCOUNT, aws_config, condition, config_for, counts, ctx_of, eventually, example, gone,
    log_group_retention, member_config, s3, start, wait_ready,
};

const WAIT: Duration = Duration::from_secs(120);

/// Every desired role with the account it belongs in.
fn desired_roles(ctx: &PipelineContext, key: &str) -> Vec<(String, Role)> {
    let mut all: Vec<(String, Role)> = roles::pipeline(ctx, key)
        .roles
        .into_iter()
        .map(|r| (ctx.account_id.clone(), r))
        .collect();
    for env in Env::ALL {
        let account = ctx.environment_account(env);
        all.extend(
            roles::environment(ctx, env, key)
                .roles
                .into_iter()
                .map(|r| (account.clone(), r)),
        );
    }
    all
}

fn parsed(text: Option<&str>) -> Value {
    policy::parse(text.unwrap_or_default()).unwrap_or(Value::Null)
}

/// Reads a role back and compares trust, description, inline and managed policies and tags.
async fn assert_role_matches(iam: &aws_sdk_iam::Client, want: &Role) {
    let got = iam
        .get_role()
        .role_name(&want.name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("role {}: {e:?}", want.name));
    let role = got.role().expect("role");
    assert_eq!(role.arn(), want.arn);
    assert_eq!(role.description(), Some(want.description.as_str()));
    let trust = parsed(role.assume_role_policy_document());
    assert!(
        policy::equivalent(&trust, &want.trust_policy),
        "{}: trust {trust}",
        want.name
    );
    let tags: BTreeMap<&str, &str> = role.tags().iter().map(|t| (t.key(), t.value())).collect();
    for (k, v) in &want.tags.tags {
        assert_eq!(
            tags.get(k.as_str()),
            Some(&v.as_str()),
            "{}: tag {k}",
            want.name
        );
    }
    let names: BTreeSet<String> = iam
        .list_role_policies()
        .role_name(&want.name)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|n| n.expect("list role policies"))
        .collect();
    assert_eq!(
        names,
        want.inline_policies
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        "{}",
        want.name
    );
    for (name, document) in &want.inline_policies {
        let got = iam
            .get_role_policy()
            .role_name(&want.name)
            .policy_name(name)
            .send()
            .await
            .expect("inline policy");
        let got = parsed(Some(got.policy_document()));
        assert!(
            policy::equivalent(&got, document),
            "{}/{name}: {got}",
            want.name
        );
    }
    let attached: BTreeSet<String> = iam
        .list_attached_role_policies()
        .role_name(&want.name)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(|p| {
            p.expect("attached policies")
                .policy_arn()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(attached, want.managed_policy_arns, "{}", want.name);
}

async fn subscribers(sns: &aws_sdk_sns::Client, topic_arn: &str) -> BTreeSet<String> {
    sns.list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(|s| s.expect("subscriptions").endpoint().map(str::to_string))
        .collect()
}

/// Reads both topics back: encryption, policy, subscribers.
async fn assert_topics_match(ctx: &PipelineContext, key: &str) {
    let sns = aws_sdk_sns::Client::new(&aws_config().await);
    for purpose in [Purpose::Notifications, Purpose::Approval] {
        let want = topic(ctx, purpose, key);
        let attributes = sns
            .get_topic_attributes()
            .topic_arn(&want.arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("topic {}: {e:?}", want.arn));
        let attributes = attributes.attributes().cloned().unwrap_or_default();
        assert_eq!(
            attributes.get("KmsMasterKeyId").map(String::as_str),
            Some(key)
        );
        let got = parsed(attributes.get("Policy").map(String::as_str));
        assert!(policy::equivalent(&got, &want.policy), "{purpose:?}: {got}");
        assert_eq!(
            subscribers(&sns, &want.arn).await,
            want.emails,
            "{purpose:?}"
        );
    }
}

/// What of this pipeline each service still lists in `account`, by listing (not by trusting
/// the inventory): roles, topics, buckets, key aliases, log groups, repositories, rules,
/// alarms, ECS clusters, services and task definitions.
pub(crate) async fn leftovers(ctx: &PipelineContext, account: &str) -> Vec<String> {
    let config = config_for(account).await;
    let names = ctx.names();
    let mark = names.identity_tag();
    let mut left = Vec::new();
    // Every list pages: an account shared by many tests holds more than one page.
    let roles: Vec<_> = aws_sdk_iam::Client::new(&config)
        .list_roles()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        roles
            .into_iter()
            .map(|r| r.expect("list roles").role_name().to_string())
            .filter(|n| n.contains(&mark)),
    );
    let topics: Vec<_> = aws_sdk_sns::Client::new(&config)
        .list_topics()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        topics
            .into_iter()
            .filter_map(|t| t.expect("list topics").topic_arn().map(str::to_string))
            .filter(|a| a.contains(&mark)),
    );
    let buckets: Vec<_> = s3(&config)
        .list_buckets()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        buckets
            .into_iter()
            .filter_map(|b| b.expect("list buckets").name().map(str::to_string))
            .filter(|b| *b == names.artifact_bucket()),
    );
    let aliases: Vec<_> = aws_sdk_kms::Client::new(&config)
        .list_aliases()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        aliases
            .into_iter()
            .filter_map(|a| a.expect("list aliases").alias_name().map(str::to_string))
            .filter(|a| *a == names.kms_alias()),
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let prefix = format!("/delivery-operator/{}/", names.base());
    left.extend(log_group_retention(&logs, &prefix).await.into_keys());
    let repositories: Vec<_> = aws_sdk_ecr::Client::new(&config)
        .describe_repositories()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        repositories
            .into_iter()
            .filter_map(|r| {
                r.expect("repositories")
                    .repository_name()
                    .map(str::to_string)
            })
            .filter(|r| *r == names.image_repository()),
    );
    left.extend(
        crate::events::rule_names(
            &aws_sdk_eventbridge::Client::new(&config),
            &names.rule_prefix(),
        )
        .await,
    );
    let alarms: Vec<_> = aws_sdk_cloudwatch::Client::new(&config)
        .describe_alarms()
        .alarm_name_prefix(names.alarm_prefix())
        .into_paginator()
        .send()
        .collect()
        .await;
    for page in alarms {
        left.extend(
            page.expect("alarms")
                .metric_alarms()
                .iter()
                .filter_map(|a| a.alarm_name().map(str::to_string)),
        );
    }
    left.extend(crate::runtime::leftovers(ctx, account).await);
    let projects: Vec<_> = aws_sdk_codebuild::Client::new(&config)
        .list_projects()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        projects
            .into_iter()
            .map(|p| p.expect("projects"))
            .filter(|p| p.contains(&mark)),
    );
    let reports: Vec<_> = aws_sdk_codebuild::Client::new(&config)
        .list_report_groups()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        reports
            .into_iter()
            .map(|g| g.expect("report groups"))
            .filter(|g| g.contains(&mark)),
    );
    let pipelines: Vec<_> = aws_sdk_codepipeline::Client::new(&config)
        .list_pipelines()
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    left.extend(
        pipelines
            .into_iter()
            .filter_map(|p| p.expect("pipelines").name().map(str::to_string))
            .filter(|n| *n == names.base()),
    );
    // The network: anything tagged as this pipeline's.
    let owner = aws_sdk_ec2::types::Filter::builder()
        .name(format!(
            "tag:{}",
            delivery_operator::desired::tags::OWNER_KEY
        ))
        .values(ctx.owner())
        .build();
    let vpcs = aws_sdk_ec2::Client::new(&config)
        .describe_vpcs()
        .filters(owner)
        .send()
        .await
        .expect("vpcs");
    left.extend(
        vpcs.vpcs()
            .iter()
            .filter_map(|v| v.vpc_id().map(str::to_string)),
    );
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let subnets = ec2
        .describe_subnets()
        .filters(owner_filter(ctx))
        .send()
        .await
        .expect("subnets");
    left.extend(
        subnets
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_string)),
    );
    let gateways = ec2
        .describe_internet_gateways()
        .filters(owner_filter(ctx))
        .send()
        .await
        .expect("internet gateways");
    left.extend(
        gateways
            .internet_gateways()
            .iter()
            .filter_map(|g| g.internet_gateway_id().map(str::to_string)),
    );
    let groups = ec2
        .describe_security_groups()
        .filters(owner_filter(ctx))
        .send()
        .await
        .expect("security groups");
    left.extend(
        groups
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string)),
    );
    let tables = ec2
        .describe_route_tables()
        .filters(owner_filter(ctx))
        .send()
        .await
        .expect("route tables");
    left.extend(
        tables
            .route_tables()
            .iter()
            .filter_map(|t| t.route_table_id().map(str::to_string)),
    );
    // KMS keys by the pipeline's owner tag (an alias is not proof there is only one), those
    // not pending deletion (which counts as gone).
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&config);
    let tagged: Vec<_> = tagging
        .get_resources()
        .resource_type_filters("kms:key")
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key(delivery_operator::desired::tags::OWNER_KEY)
                .values(ctx.owner())
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let kms = aws_sdk_kms::Client::new(&config);
    for mapping in tagged {
        let arn = mapping
            .expect("tagged keys")
            .resource_arn()
            .unwrap_or_default()
            .to_string();
        let state = kms
            .describe_key()
            .key_id(&arn)
            .send()
            .await
            .expect("describe key")
            .key_metadata()
            .and_then(|m| m.key_state().cloned());
        if state != Some(aws_sdk_kms::types::KeyState::PendingDeletion) {
            left.push(arn);
        }
    }
    left
}

/// EC2's filter for resources tagged as this pipeline's.
fn owner_filter(ctx: &PipelineContext) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!(
            "tag:{}",
            delivery_operator::desired::tags::OWNER_KEY
        ))
        .values(ctx.owner())
        .build()
}

fn all_conditions_true(dp: &DeliveryPipeline) {
    let conditions = &dp.status.as_ref().expect("status").conditions;
    let not_true: Vec<String> = conditions
        .iter()
        .filter(|c| c.status != "True")
        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
        .collect();
    assert!(not_true.is_empty(), "{not_true:#?}");
}

/// The reads one up-to-date reconcile makes in each environment account: its application log
/// group (listed; its tags from the account's one tag read), three role names looked up (execution, task, deploy), each
/// found with its inline policies (execution and deploy have one) and attachments, its
/// network (each part listed by tags, the VPC's two DNS attributes), and its ECS runtime (the
/// cluster, the service; not the revision it runs, which this process registered).
fn environment_observe_reads() -> BTreeMap<String, f64> {
    counts(&[
        ("CloudWatch Logs:DescribeLogGroups", 1.0),
        ("Resource Groups Tagging API:GetResources", 1.0),
        ("IAM:GetRole", 3.0),
        ("IAM:ListRolePolicies", 3.0),
        ("IAM:GetRolePolicy", 2.0),
        ("IAM:ListAttachedRolePolicies", 3.0),
        ("EC2:DescribeVpcs", 1.0),
        ("EC2:DescribeVpcAttribute", 2.0),
        ("EC2:DescribeInternetGateways", 1.0),
        ("EC2:DescribeSubnets", 1.0),
        ("EC2:DescribeRouteTables", 1.0),
        ("EC2:DescribeSecurityGroups", 1.0),
        ("ECS:DescribeClusters", 1.0),
        ("ECS:DescribeServices", 1.0),
    ])
}

#[tokio::test]
async fn cross_account_pipeline_puts_each_resource_in_its_account_and_deletion_leaves_nothing() {
    let (ns, operator, api) = start("e2e-xacct").await;
    let dp = example("cross-account.yaml", &ns, "spread");
    let ctx = ctx_of(&dp);
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "spread", 1).await;
    all_conditions_true(&ready);
    let status = ready.status.clone().expect("status");
    let key = status.outputs.kms_key_arn.clone().expect("key output");
    let arns = ctx.arns();
    assert_eq!(
        status.outputs.approval_topic_arn.as_deref(),
        Some(arns.approval_topic().as_str())
    );
    assert_eq!(
        status.outputs.pipeline_role_arn.as_deref(),
        Some(arns.pipeline_role(roles::PIPELINE).as_str())
    );
    let production = status
        .outputs
        .production
        .clone()
        .expect("production outputs");
    assert_eq!(production.account_id.as_deref(), Some("333333333333"));
    assert_eq!(
        production.deploy_role_arn.as_deref(),
        Some(
            arns.environment_role(Env::Production, roles::DEPLOY)
                .as_str()
        )
    );

    // Every role, in its own account, exactly as rendered (trust, inline, managed, tags).
    for (account, role) in desired_roles(&ctx, &key) {
        let iam = aws_sdk_iam::Client::new(&config_for(&account).await);
        assert_role_matches(&iam, &role).await;
    }
    assert_topics_match(&ctx, &key).await;
    // The key and bucket policies grant the environments' roles, never their accounts' roots.
    let kms = aws_sdk_kms::Client::new(&aws_config().await);
    let key_policy = kms
        .get_key_policy()
        .key_id(&key)
        .policy_name("default")
        .send()
        .await
        .expect("key policy");
    let key_policy = parsed(key_policy.policy());
    let want = encryption_key::key_policy(&ctx, &encryption_key::key_users(&ctx));
    assert!(policy::equivalent(&key_policy, &want), "{key_policy}");
    let bucket = status.outputs.artifact_bucket.clone().expect("bucket");
    let bucket_policy = s3(&aws_config().await)
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket policy");
    let bucket_policy = parsed(bucket_policy.policy());
    let want = artifact_store::artifact_bucket(&ctx, &key).policy;
    assert!(policy::equivalent(&bucket_policy, &want), "{bucket_policy}");
    for text in [key_policy.to_string(), bucket_policy.to_string()] {
        assert!(!text.contains("222222222222:root") && !text.contains("333333333333:root"));
    }
    // Application log groups live in the environments' accounts.
    for env in Env::ALL {
        let logs =
            aws_sdk_cloudwatchlogs::Client::new(&config_for(&ctx.environment_account(env)).await);
        let groups = log_group_retention(&logs, &ctx.names().log_group_prefix(env.name())).await;
        assert_eq!(
            groups.values().copied().collect::<Vec<_>>(),
            vec![14],
            "{env:?}"
        );
    }

    // A resync with nothing to do: no writes anywhere, and exactly the observing reads.
    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "spread").await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        by_account(&calls, "write"),
        BTreeMap::new(),
        "a no-op resync writes"
    );
    let reads = by_account(&calls, "read");
    for account in ["222222222222", "333333333333"] {
        assert_eq!(
            reads.get(account),
            Some(&environment_observe_reads()),
            "{account}"
        );
    }
    assert_eq!(
        reads.get(ACCOUNT),
        Some(&counts(&[
            // The tags of the key, topics, log groups, repository, pipeline, rules and alarms.
            ("Resource Groups Tagging API:GetResources", 1.0),
            ("KMS:DescribeKey", 1.0),
            ("KMS:GetKeyPolicy", 1.0),
            ("KMS:GetKeyRotationStatus", 1.0),
            ("S3:GetBucketEncryption", 1.0),
            ("S3:GetBucketLifecycleConfiguration", 1.0),
            ("S3:GetBucketPolicy", 1.0),
            ("S3:GetBucketTagging", 1.0),
            ("S3:GetBucketVersioning", 1.0),
            ("S3:GetPublicAccessBlock", 1.0),
            ("SNS:GetTopicAttributes", 2.0),
            ("SNS:ListSubscriptionsByTopic", 2.0),
            ("CloudWatch Logs:DescribeLogGroups", 1.0),
            // Pipeline, build, scan found; the trigger role looked up too (a connection source
            // has none; one left from an S3 source would be removed).
            ("IAM:GetRole", 4.0),
            ("IAM:ListRolePolicies", 3.0),
            ("IAM:GetRolePolicy", 3.0),
            ("IAM:ListAttachedRolePolicies", 3.0),
            ("ECR:DescribeRepositories", 1.0),
            ("ECR:GetLifecyclePolicy", 1.0),
            ("ECR:GetRepositoryPolicy", 1.0),
            ("CodeBuild:BatchGetProjects", 1.0),
            ("CodeBuild:BatchGetReportGroups", 1.0),
            ("CodePipeline:GetPipeline", 1.0),
            ("CodePipeline:ListPipelineExecutions", 1.0),
            // The failed and succeeded rules (a connection source has no trigger rule).
            ("EventBridge:ListRules", 1.0),
            ("EventBridge:ListTargetsByRule", 2.0),
            ("CloudWatch:DescribeAlarms", 1.0),
        ])),
        "pipeline account"
    );

    api.delete("spread", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "spread").await;
    for account in [ACCOUNT, "222222222222", "333333333333"] {
        assert_eq!(
            leftovers(&ctx, account).await,
            Vec::<String>::new(),
            "{account}"
        );
    }
    operator.assert_calls_match_record().await;
}

#[tokio::test]
async fn one_field_changes_make_exactly_the_needed_writes() {
    let (ns, operator, api) = start("e2e-onefield").await;
    let mut dp = example("minimal.yaml", &ns, "tuned");
    dp.spec.notifications.emails = vec!["a@example.com".into(), "b@example.com".into()];
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "tuned", 1).await;
    let ctx = ctx_of(&dp);
    // With one account, every role and both topics are read back as rendered too.
    let key = ready
        .status
        .and_then(|s| s.outputs.kms_key_arn)
        .expect("key");
    for (account, role) in desired_roles(&ctx, &key) {
        assert_eq!(account, ACCOUNT);
        let iam = aws_sdk_iam::Client::new(&config_for(&account).await);
        assert_role_matches(&iam, &role).await;
    }
    assert_topics_match(&ctx, &key).await;

    // Retention: one PutRetentionPolicy per log group (build, scan, two applications).
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "tuned",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"logRetentionDays": 90}})),
    )
    .await
    .expect("patch retention");
    wait_ready(&api, "tuned", 2).await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        counts(&[("CloudWatch Logs:PutRetentionPolicy", 4.0)])
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws_config().await);
    let prefix = format!("/delivery-operator/{}/", ctx.names().base());
    let all = log_group_retention(&logs, &prefix).await;
    assert_eq!(all.len(), 4);
    assert!(all.values().all(|days| *days == 90), "{all:?}");

    // One address added and one (confirmed) removed: one Subscribe and one Unsubscribe.
    emulator::confirm_email_subscriptions(&ctx.arns().notification_topic()).await;
    let since = emulator::last_seq(&operator.access_key).await;
    api.patch(
        "tuned",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"notifications": {"emails": ["a@example.com", "c@example.com"]}}}),
        ),
    )
    .await
    .expect("patch emails");
    wait_ready(&api, "tuned", 3).await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        counts(&[("SNS:Subscribe", 1.0), ("SNS:Unsubscribe", 1.0)])
    );
    let sns = aws_sdk_sns::Client::new(&aws_config().await);
    assert_eq!(
        subscribers(&sns, &ctx.arns().notification_topic()).await,
        BTreeSet::from(["a@example.com".to_string(), "c@example.com".to_string()])
    );
}

#[tokio::test]
async fn hand_edits_to_policies_subscriptions_and_retention_are_restored() {
    let (ns, operator, api) = start("e2e-handedit").await;
    let mut dp = example("minimal.yaml", &ns, "edited");
    dp.spec.notifications.emails = vec!["ops@example.com".into()];
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let ready = wait_ready(&api, "edited", 1).await;
    let ctx = ctx_of(&dp);
    let key = ready
        .status
        .and_then(|s| s.outputs.kms_key_arn)
        .expect("key");
    let config = aws_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    reconcile_and_wait(&api, "edited").await;

    // By hand: the build role may now do anything; the subscriber is removed; the build log
    // group keeps its logs forever.
    let build = ctx.names().role(roles::BUILDER);
    iam.put_role_policy()
        .role_name(&build)
        .policy_name(roles::BUILDER)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("widen the build role");
    let topic_arn = ctx.arns().notification_topic();
    // A subscription its recipient confirmed, removed by hand.
    emulator::confirm_email_subscriptions(&topic_arn).await;
    let subscription = sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic_arn)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .find_map(|s| {
            s.expect("subscriptions")
                .subscription_arn()
                .map(str::to_string)
        })
        .expect("one subscription");
    sns.unsubscribe()
        .subscription_arn(&subscription)
        .send()
        .await
        .expect("unsubscribe by hand");
    let build_logs = format!("{}build", ctx.names().log_group_prefix("pipeline"));
    logs.delete_retention_policy()
        .log_group_name(&build_logs)
        .send()
        .await
        .expect("retention removed by hand");

    let since = emulator::last_seq(&operator.access_key).await;
    reconcile_and_wait(&api, "edited").await;
    let calls = emulator::calls_after(&operator.access_key, since).await;
    assert_eq!(
        count(&calls, "write"),
        counts(&[
            ("IAM:PutRolePolicy", 1.0),
            ("SNS:Subscribe", 1.0),
            ("CloudWatch Logs:PutRetentionPolicy", 1.0),
        ])
    );
    let build_role = roles::pipeline(&ctx, &key)
        .roles
        .into_iter()
        .find(|r| r.name == build)
        .expect("build role rendered");
    assert_role_matches(&iam, &build_role).await;
    assert_eq!(
        subscribers(&sns, &topic_arn).await,
        BTreeSet::from(["ops@example.com".to_string()])
    );
    assert_eq!(
        log_group_retention(&logs, &build_logs)
            .await
            .get(&build_logs),
        Some(&ctx.spec.log_retention_days)
    );
}

#[tokio::test]
async fn a_role_not_yet_visible_to_iam_is_waited_for_not_failed() {
    let (ns, operator, api) = start("e2e-iamlag").await;
    let dp = example("cross-account.yaml", &ns, "lagging");
    let ctx = ctx_of(&dp);
    // Right after the pipeline role is created, IAM in the staging account does not resolve it
    // yet: the deploy role's trust policy is refused once, as AWS words it.
    let deploy = ctx.names().environment_role(Env::Staging, roles::DEPLOY);
    inject(Fault {
        service: Some("IAM".into()),
        operation: Some("CreateRole".into()),
        // The operator acts in the staging account through an assumed-role session; the
        // role name (unique to this test's namespace) scopes the fault to this pipeline.
        account: Some("222222222222".into()),
        resource: Some(deploy.clone()),
        error_code: Some("MalformedPolicyDocument".into()),
        http_status: Some(400),
        message: Some(format!(
            "Invalid principal in policy: \"AWS\":\"{}\"",
            ctx.arns().pipeline_role(roles::PIPELINE)
        )),
        count: Some(1),
        ..Fault::default()
    })
    .await;
    api.create(&PostParams::default(), &dp)
        .await
        .expect("create");
    let waiting = eventually("staging roles waiting for IAM", WAIT, || async {
        let dp = api.get("lagging").await.ok()?;
        condition(&dp, "StagingRolesReady")
            .filter(|c| c.reason == "WaitingForIamPropagation")
            .cloned()
    })
    .await;
    assert_eq!(waiting.status, "False");
    assert!(waiting.message.contains("seconds"), "{}", waiting.message);
    let ready = wait_ready(&api, "lagging", 1).await;
    all_conditions_true(&ready);
    let staging = aws_sdk_iam::Client::new(&member_config("222222222222").await);
    let role = staging
        .get_role()
        .role_name(&deploy)
        .send()
        .await
        .expect("the deploy role exists once IAM caught up");
    assert!(role.role().is_some());
    // In progress is not an error: no Warning event was published for it.
    let warnings: Vec<String> = crate::support::events_in(&ns)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        warnings
            .iter()
            .all(|m| !m.contains("WaitingForIamPropagation") && !m.contains("Invalid principal")),
        "{warnings:?}"
    );
    // The refused attempt is one more CreateRole in the staging account, counted like any.
    operator.assert_calls_match_record().await;
    api.delete("lagging", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&api, "lagging").await;
}
