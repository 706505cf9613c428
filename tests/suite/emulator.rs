//! Test-side client of the emulator harness (`tests/moto/emu_harness.py`): the independent
//! record of every AWS call the emulator received, and fault injection.
//!
//! Tests run in parallel against one emulator, so scope faults and record queries by access
//! key: give each client under test its own key ([`unique_access_key`]).

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde::{Deserialize, Serialize};

use crate::support::sandbox;

/// One request as the emulator received it.
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // every field shows in assertion messages ({:?}); not every test reads each
pub struct Recorded {
    pub seq: u64,
    /// When the emulator received it (Unix seconds).
    pub time: f64,
    /// botocore serviceId, equal to the Rust SDK's metadata service name ("KMS", "S3", "STS").
    pub service: String,
    pub operation: String,
    pub account: String,
    /// Access key ID from the SigV4 Authorization header.
    pub access_key: String,
    /// The long-term key a role-session key was (transitively) assumed from; the key itself
    /// otherwise. Records are selected by this key.
    pub origin_key: String,
    pub method: String,
    pub path: String,
    /// HTTP status returned (0 when the connection was dropped).
    pub status: u16,
    /// A fault injected by the harness answered this request.
    pub injected: bool,
    pub dropped: bool,
    /// The model-validation message, when the harness rejected the request as AWS would.
    pub rejected: Option<String>,
}

/// A fault to inject. Unset fields match anything; `error_code` answers with that AWS error in
/// the service's protocol; `latency_ms` delays the request; `drop_connection` closes the socket
/// without a response. `count` limits it to the next N matching calls, `fraction` to a share of
/// them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fault {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// A long-term key: its own calls and those of every role session assumed from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_key: Option<String>,
    /// A substring of the request (path, query or body), e.g. a resource name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub drop_connection: bool,
    /// The request reaches moto (the write happens) and the caller gets the fault instead of
    /// the reply: a reply lost, a 500 after commit, a connection reset after commit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_apply: bool,
}

fn url(path: &str) -> String {
    format!("{}/_harness/{path}", sandbox().aws_endpoint())
}

async fn send(request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.expect("harness endpoint reachable");
    let status = response.status();
    let text = response.text().await.expect("harness response body");
    assert!(status.is_success(), "harness answered {status}: {text}");
    text
}

/// Creates or moves a pipeline execution (the emulator runs none); `body` as documented at
/// `pipeline_executions_endpoint` in tests/moto/launcher.py. Returns the execution.
pub async fn pipeline_execution(body: serde_json::Value) -> serde_json::Value {
    let text = send(
        reqwest::Client::new()
            .post(url("pipeline-executions"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await;
    serde_json::from_str(&text).expect("execution JSON")
}

/// [`pipeline_execution`], returning the execution's ID.
pub async fn pipeline_execution_id(body: serde_json::Value) -> String {
    pipeline_execution(body).await["pipelineExecutionId"]
        .as_str()
        .expect("execution id")
        .to_string()
}

/// The executions of `pipeline` in the default account, newest first, as
/// `GET /_harness/pipeline-executions` lists them.
pub async fn pipeline_executions(pipeline: &str) -> Vec<serde_json::Value> {
    let text = send(
        reqwest::Client::new()
            .get(url("pipeline-executions"))
            .query(&[("pipeline", pipeline)]),
    )
    .await;
    serde_json::from_str(&text).expect("executions JSON")
}

/// The target invocations EventBridge made (or refused) for `rule`, oldest first:
/// `{rule, targetId, targetArn, eventId, detailType, input, delivered, problem, ...}`.
pub async fn event_deliveries(rule: &str) -> Vec<serde_json::Value> {
    let text = send(
        reqwest::Client::new()
            .get(url("event-deliveries"))
            .query(&[("rule", rule)]),
    )
    .await;
    serde_json::from_str(&text).expect("deliveries JSON")
}

/// Installs a fault; returns its id.
pub async fn inject(fault: Fault) -> String {
    let body = serde_json::to_string(&fault).expect("fault serialises");
    let text = send(
        reqwest::Client::new()
            .post(url("faults"))
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&text).expect("fault reply is JSON");
    v["id"].as_str().expect("fault id").to_string()
}

/// Removes every fault (all tests'). Prefer [`clear_faults_for`] in tests that run in parallel.
#[allow(dead_code)] // for serial tests and debugging; parallel tests use clear_faults_for
pub async fn clear_faults() {
    send(reqwest::Client::new().delete(url("faults"))).await;
}

/// Removes the faults whose `field` (a field of [`Fault`], or `id`) equals `value`.
async fn remove_faults_where(field: &str, value: &str) {
    send(
        reqwest::Client::new()
            .delete(url("faults"))
            .query(&[(field, value)]),
    )
    .await;
}

/// Clears the faults injected with `origin_key` set to `key`.
pub async fn clear_faults_from(key: &str) {
    remove_faults_where("origin_key", key).await;
}

/// Removes the fault `inject` answered with this ID.
pub async fn remove_fault(id: &str) {
    remove_faults_where("id", id).await;
}

/// Removes the faults scoped to `access_key`.
pub async fn clear_faults_for(access_key: &str) {
    remove_faults_where("access_key", access_key).await;
}

/// Every request made with `access_key` or with role sessions assumed from it, in arrival order.
pub async fn calls_by(access_key: &str) -> Vec<Recorded> {
    let text = send(
        reqwest::Client::new()
            .get(url("requests"))
            .query(&[("origin_key", access_key)]),
    )
    .await;
    serde_json::from_str(&text).expect("record parses")
}

/// The sequence number of the last request recorded for `access_key` (0: none yet).
pub async fn last_seq(access_key: &str) -> u64 {
    calls_by(access_key)
        .await
        .iter()
        .map(|c| c.seq)
        .max()
        .unwrap_or(0)
}

/// Requests of `access_key` recorded after request `since`.
pub async fn calls_after(access_key: &str, since: u64) -> Vec<Recorded> {
    calls_by(access_key)
        .await
        .into_iter()
        .filter(|c| c.seq > since)
        .collect()
}

/// Calls of `kind` by account, then `Service:Operation`.
pub fn by_account(calls: &[Recorded], kind: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut accounts: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
    for c in calls {
        accounts
            .entry(c.account.clone())
            .or_default()
            .push(c.clone());
    }
    accounts
        .into_iter()
        .map(|(account, calls)| (account, count(&calls, kind)))
        .filter(|(_, calls)| !calls.is_empty())
        .collect()
}

/// One service's calls of `kind` that `access_key` made after request `since`, by account,
/// then `Service:Operation`.
pub async fn service_calls_by_account(
    access_key: &str,
    service: &str,
    kind: &str,
    since: u64,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    let calls: Vec<Recorded> = calls_after(access_key, since)
        .await
        .into_iter()
        .filter(|c| c.service == service)
        .collect();
    by_account(&calls, kind)
}

/// Forgets the record of `access_key`.
pub async fn clear_calls(access_key: &str) {
    send(
        reqwest::Client::new()
            .delete(url("requests"))
            .query(&[("origin_key", access_key)]),
    )
    .await;
}

/// Attempts of `kind` ("read" or "write", by [`delivery_operator::metrics::is_read`]) made with
/// `access_key`, by `Service:Operation`: every attempt counts, failed, injected and retried ones
/// included.
pub async fn counts_by(access_key: &str, kind: &str) -> BTreeMap<String, f64> {
    count(&calls_by(access_key).await, kind)
}

/// [`counts_by`] over an already fetched record.
pub fn count(calls: &[Recorded], kind: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for c in calls {
        let read = delivery_operator::metrics::is_read(&c.operation);
        if (kind == "read") == read {
            *out.entry(format!("{}:{}", c.service, c.operation))
                .or_insert(0.0) += 1.0;
        }
    }
    out
}

/// An access-key ID no other client uses. Unknown keys act as the default account's
/// administrator in the emulator, as the shared `testing` key does.
pub fn unique_access_key() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random_range(0..(1u64 << 56));
    format!("AKIAOP{n:014X}")
}

/// SDK configuration for the emulator's default account, signed with `access_key`.
pub async fn config_with_key(access_key: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(sandbox().aws_endpoint())
        .credentials_provider(Credentials::new(access_key, "testing", None, None, "test"))
        .load()
        .await
}

/// Moves the PRIMARY deployment of an ECS service (`POST /_harness/ecs-deployments`): the
/// emulator runs no tasks, so a deployment completes at once unless a test holds it
/// (`IN_PROGRESS`) or the circuit breaker trips (`FAILED`, with a rollback when the service
/// has one). `change` holds `rolloutState` and optionally `rolloutStateReason`, `failedTasks`,
/// `runningCount`. Returns the service's deployments.
pub async fn set_ecs_deployment(
    account: &str,
    cluster: &str,
    service: &str,
    change: serde_json::Value,
) -> serde_json::Value {
    let mut body = serde_json::json!({"account": account, "cluster": cluster, "service": service});
    if let (Some(body), Some(change)) = (body.as_object_mut(), change.as_object()) {
        body.extend(change.clone());
    }
    let text = send(
        reqwest::Client::new()
            .post(url("ecs-deployments"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await;
    serde_json::from_str(&text).expect("deployments are JSON")
}

/// The recipients of every pending e-mail subscription of `topic_arn` (in the default account)
/// confirm them, as following the link in the confirmation message would. Returns the
/// confirmed endpoints.
pub async fn confirm_email_subscriptions(topic_arn: &str) -> Vec<String> {
    let sns = aws_sdk_sns::Client::new(&crate::support::aws_config().await);
    let listed: Vec<_> = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let mut confirmed = Vec::new();
    for subscription in listed {
        let subscription = subscription.expect("list subscriptions");
        if subscription.subscription_arn() != Some("PendingConfirmation") {
            continue;
        }
        let endpoint = subscription.endpoint().unwrap_or_default().to_string();
        send(
            reqwest::Client::new()
                .post(url("sns-confirmations"))
                .header("content-type", "application/json")
                .body(serde_json::json!({"topicArn": topic_arn, "endpoint": endpoint}).to_string()),
        )
        .await;
        confirmed.push(endpoint);
    }
    confirmed
}

/// Arms `pipeline` (default account and region): its executions from now on run in the
/// emulator (tests/moto/emu_executor.py). `scenario` adds e.g. `failDeployments`.
pub async fn arm_runs(pipeline: &str, scenario: serde_json::Value) {
    let mut body = scenario;
    body["pipeline"] = serde_json::Value::String(pipeline.to_string());
    send(
        reqwest::Client::new()
            .post(url("runs"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await;
}

/// The runs of `pipeline`, oldest first: `{executionId, status, steps, authorizations,
/// approvalRequests, reports, logs, failure}`.
pub async fn runs(pipeline: &str) -> Vec<serde_json::Value> {
    let text = send(
        reqwest::Client::new()
            .get(url("runs"))
            .query(&[("pipeline", pipeline)]),
    )
    .await;
    serde_json::from_str(&text).expect("runs JSON")
}

/// What ECR's scan finds in the images of `repository` (default account): `[{name, severity}]`.
pub async fn set_scan_findings(repository: &str, findings: serde_json::Value) {
    send(
        reqwest::Client::new()
            .post(url("scan-findings"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"repository": repository, "findings": findings}).to_string()),
    )
    .await;
}

/// A push of `files` to the connection or CodeCommit source of `pipeline` (default account):
/// the pipeline starts as its trigger would. Returns the commit ID.
pub async fn source_push(pipeline: &str, files: serde_json::Value) -> String {
    let text = send(
        reqwest::Client::new()
            .post(url("source-push"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"pipeline": pipeline, "files": files}).to_string()),
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&text).expect("push JSON");
    answer["commitId"].as_str().expect("commit").to_string()
}

/// IAM's eventual consistency for the roles whose names contain `fragment`: each create or
/// trust-policy change is invisible to STS, the services and resource policies for `seconds`.
pub async fn slow_iam_propagation(fragment: &str, seconds: f64) {
    send(
        reqwest::Client::new()
            .post(url("iam-propagation"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"match": fragment, "seconds": seconds}).to_string()),
    )
    .await;
}

/// What the emulator refused because a role matching `fragment` had not propagated yet: the
/// use ("sts:AssumeRole", "CodeBuild", "a policy naming it as a principal", ...) per refusal.
pub async fn propagation_refusals(fragment: &str) -> Vec<String> {
    let text =
        send(reqwest::Client::new().get(format!("{}?match={fragment}", url("iam-propagation"))))
            .await;
    let v: serde_json::Value = serde_json::from_str(&text).expect("refusals are JSON");
    v["refusals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["use"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
