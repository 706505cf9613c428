"""Runs the pipelines the operator defines, as CodePipeline, CodeBuild and ECS would, using only
what exists in the emulator. A test arms a pipeline (POST /_harness/runs); every execution of an
armed pipeline that starts afterwards (StartPipelineExecution, the source's EventBridge rule, a
CodeConnections push through POST /_harness/source-push) then runs:

- CodePipeline assumes the pipeline's role as codepipeline.amazonaws.com (the trust policy
  decides) and runs the stages in order, an action at a time, with the execution's, stages' and
  actions' statuses and the EventBridge events CodePipeline sends (launcher's execution model).
- Source (S3): the object's latest version, read as the pipeline role, is the output artifact,
  written to the artifact store under a new key with SSE-KMS and the store's key.
  Source (CodeStarSourceConnection, CodeCommit): the fixture archive the push names, zipped.
- CodeBuild: the project's inline buildspec (phases, env.variables, env.exported-variables,
  artifacts, reports) runs in a real bash with the environment variables CodeBuild sets, as the
  project's service role (assumed as codebuild.amazonaws.com), with the runner's AWS CLI and a
  fake `docker` (tests/moto/fakebin) that pushes a deterministic manifest into the emulator's
  ECR; logs go to the project's log group; input and output artifacts are read and written as
  the project role. ECR scan findings come from POST /_harness/scan-findings.
- ECS deploy: as the action's role (else the pipeline's), read imagedefinitions.json from the
  input artifact, register a revision of the service's task definition with the new image and
  update the service; the deployment completes, or (`failDeployments`) the circuit breaker fails
  it and rolls back (launcher.ecs_deployments_endpoint), and the action fails.
- Manual approval: publishes to the action's topic as the pipeline role and waits for
  PutApprovalResult (Approved continues, Rejected fails the stage).

Every call made as a role goes over HTTP through the harness, which authorizes it
(emu_authorize.py) and records the verdict in the run; a denied call fails its action with the
AccessDenied AWS returns. Calls CodePipeline and CodeBuild make inside AWS without an API request
we could send (codebuild:StartBuild from the pipeline, report uploads) are authorized the same
way, directly.

Deliberate limits (docs/testing.md): one action at a time; executions of one pipeline do not
supersede each other; builds run one at a time (they share the machine's /tmp); no build
cache, VPC config or secrets in build environments.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from typing import Any

import emu_authorize
import emu_policy
from emu_harness import CURRENT, log

HERE = os.path.dirname(os.path.abspath(__file__))
FAKEBIN = os.path.join(HERE, "fakebin")

LOCK = threading.RLock()
# (account, region, pipeline) -> scenario of the armed pipeline.
ARMED: dict[tuple[str, str, str], dict] = {}
# Runs, oldest first: GET /_harness/runs.
RUNS: list[dict] = []
# Access key of a session the executor issued -> its run.
SESSIONS: dict[str, dict] = {}
# (account, region, repository) -> findings the scan reports.
SCAN_FINDINGS: dict[tuple[str, str, str], list[dict]] = {}
# Approval token -> {"event", "result"}.
APPROVALS: dict[str, dict] = {}
# Fixture archives for connection and CodeCommit sources: (account, region, pipeline) -> push.
PUSHES: dict[tuple[str, str, str], dict] = {}
BUILD_NUMBERS: dict[str, int] = {}
BUILD_LOCK = threading.Lock()

SETTINGS = {"endpoint": "http://127.0.0.1:5000", "build_tools": None}

SCENARIO_FIELDS = {"account", "region", "pipeline", "failDeployments", "approvalTimeoutSeconds", "buildTimeoutSeconds"}


class ActionFailed(Exception):
    def __init__(self, message: str, code: str = "JobFailed", summary: str | None = None):
        super().__init__(message)
        self.code = code
        self.summary = summary


# ---------------------------------------------------------------- sessions and authorization


def issue_session(run: dict, role_arn: str, service: str, source_arn: str, source_account: str) -> dict:
    """Credentials of `role_arn` for an AWS service acting for one of its resources, as the
    service obtains them: only when the role's trust policy allows the service principal with
    that source (aws:SourceArn, aws:SourceAccount)."""
    from moto.sts.models import sts_backends

    role = emu_authorize.role_of(role_arn)
    if role is None:
        raise ActionFailed(f"{service} could not assume role {role_arn}: it does not exist", "JobFailed")
    caller = emu_policy.ServiceCaller(service, source_account, source_arn)
    allowed, reason = emu_policy.evaluate(role.assume_role_policy_document, caller, ["sts:AssumeRole"], caller.context(), with_principal=True)
    record_authorization(run, service, "sts:AssumeRole", role_arn, allowed, reason)
    if not allowed:
        raise ActionFailed(f"{service} is not authorized to perform AssumeRole on role {role_arn}", "JobFailed")
    account = role_arn.split(":")[4]
    assumed = sts_backends[account]["global"].assume_role(
        region_name="us-east-1", role_session_name=service.split(".")[0], role_arn=role_arn, policy=None, duration=3600, external_id=None
    )
    session = {"access_key": assumed.access_key_id, "secret_key": assumed.secret_access_key, "token": assumed.session_token, "role_arn": role_arn}
    with LOCK:
        SESSIONS[assumed.access_key_id] = run
        run["sessions"].append(assumed.access_key_id)
    return session


def record_authorization(run: dict, principal: str, action: str, resource: str, allowed: bool, reason: str) -> None:
    with LOCK:
        run["authorizations"].append({"principal": principal, "action": action, "resource": resource, "allowed": allowed, "reason": reason})


def authorize_request(ident) -> tuple[str, str, int] | None:
    """The harness's hook: None when the call may proceed, else (code, message, status). Only
    calls of the executor's sessions are evaluated."""
    from launcher import caller_of, request_context

    run = SESSIONS.get(ident.access_key)
    if run is None:
        return None
    caller = caller_of(ident.access_key)
    needs = emu_authorize.requirements(ident)
    if needs is None:
        message = f"test harness: no authorization rule for {ident.service_id}:{ident.operation}"
        record_authorization(run, caller.arn, f"{ident.service_id}:{ident.operation}", "?", False, message)
        return "InternalFailure", message, 500
    context = request_context()
    context["kms:CallerAccount"] = caller.account
    for need in needs:
        allowed, reason = emu_authorize.decide(caller, need, context)
        record_authorization(run, caller.arn, need.action, need.resource, allowed, reason)
        if not allowed:
            return access_denied_code(ident), emu_authorize.denial_message(caller, need, reason), (403 if ident.service_id in ("S3", "SNS", "STS") else 400)
    if any(n.resource_account not in (None, caller.account) for n in needs):
        CURRENT.cross_account_authorized = True
    return None


def access_denied_code(ident) -> str:
    return {"S3": "AccessDenied", "STS": "AccessDenied", "SNS": "AuthorizationError"}.get(ident.service_id, "AccessDeniedException")


def authorize_direct(run: dict, session: dict, action: str, resource: str, requirement: emu_authorize.Requirement | None = None) -> None:
    """A call a service makes inside AWS on the session's behalf (no API request to send)."""
    from launcher import caller_of

    caller = caller_of(session["access_key"])
    need = requirement or emu_authorize.Requirement(action, resource)
    allowed, reason = emu_authorize.decide(caller, need, {"aws:SecureTransport": "true", **caller.context()})
    record_authorization(run, caller.arn, need.action, need.resource, allowed, reason)
    if not allowed:
        raise ActionFailed(emu_authorize.denial_message(caller, need, reason), "JobFailed")


def client(session: dict, service: str, region: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=SETTINGS["endpoint"],
        aws_access_key_id=session["access_key"],
        aws_secret_access_key=session["secret_key"],
        aws_session_token=session["token"],
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def aws_error(e: Exception) -> ActionFailed:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        return ActionFailed(f"{error.get('Code')}: {error.get('Message')}", "JobFailed")
    return ActionFailed(f"{type(e).__name__}: {e}", "JobFailed")


# ---------------------------------------------------------------- execution state


def set_state(run: dict, status: str | None = None, stages: dict | None = None, summary: str | None = None, source_revisions=None) -> None:
    from launcher import pipeline_executions_endpoint

    body = {"account": run["account"], "region": run["region"], "pipeline": run["pipeline"], "executionId": run["executionId"]}
    if status:
        body["status"] = status
    if stages:
        body["stages"] = stages
    if summary:
        body["statusSummary"] = summary
    if source_revisions is not None:
        body["sourceRevisions"] = source_revisions
    code, answer = pipeline_executions_endpoint("POST", {}, json.dumps(body).encode())
    if code != 200:
        raise RuntimeError(f"execution state refused: {answer}")


def resolve(value: str, variables: dict) -> str:
    """#{Namespace.Variable} in an action's configuration (CodePipeline User Guide, "Variables
    reference"); an unresolvable one fails the action as CodePipeline does."""

    def one(match):
        namespace, name = match.group(1), match.group(2)
        if namespace not in variables or name not in variables[namespace]:
            raise ActionFailed(f"The action configuration references variable #{{{namespace}.{name}}}, which could not be resolved", "ConfigurationError")
        return variables[namespace][name]

    return re.sub(r"#\{([A-Za-z0-9@\-_]+)\.([A-Za-z0-9@\-_]+)\}", one, value)


def arm(method: str, query: dict, body: bytes):
    """POST /_harness/runs arms a pipeline: {"pipeline", "account"?, "region"?,
    "failDeployments"?: [ECS service name, ...],
    "approvalTimeoutSeconds"?, "buildTimeoutSeconds"?}. GET ?pipeline=&account= lists its runs
    (newest last) with every step and authorization; DELETE disarms."""
    if method == "GET":
        with LOCK:
            runs = [r for r in RUNS if r["pipeline"] == query.get("pipeline", r["pipeline"]) and r["account"] == query.get("account", r["account"])]
            return 200, [{k: v for k, v in r.items() if k not in ("scenario", "stored")} for r in runs]
    try:
        request = json.loads(body or b"{}")
    except ValueError as e:
        return 400, {"error": f"not JSON: {e}"}
    unknown = set(request) - SCENARIO_FIELDS
    if unknown or not request.get("pipeline"):
        return 400, {"error": f"fields: {sorted(SCENARIO_FIELDS)} (pipeline required); unknown {sorted(unknown)}"}
    key = (request.get("account", "123456789012"), request.get("region", "us-east-1"), request["pipeline"])
    with LOCK:
        if method == "DELETE":
            ARMED.pop(key, None)
            return 200, {}
        if method != "POST":
            return 405, {"error": "use GET, POST or DELETE"}
        ARMED[key] = request
    return 200, request


def started(stored, account: str, region: str, execution: dict) -> None:
    """Called when an execution starts: runs it when its pipeline is armed."""
    with LOCK:
        scenario = ARMED.get((account, region, stored.pipeline["name"]))
    if scenario is None:
        return
    run = {
        "executionId": execution["pipelineExecutionId"],
        "pipeline": stored.pipeline["name"],
        "account": account,
        "region": region,
        "status": "InProgress",
        "trigger": execution.get("trigger"),
        "steps": [],
        "authorizations": [],
        "sessions": [],
        "reports": [],
        "scenario": scenario,
        "stored": stored,
    }
    with LOCK:
        RUNS.append(run)
    threading.Thread(target=run_execution, args=(run,), daemon=True, name=f"run-{run['executionId'][:8]}").start()


def step(run: dict, text: str) -> None:
    with LOCK:
        run["steps"].append(text)
    log(f"run {run['executionId'][:8]} of {run['pipeline']}: {text}")


def run_execution(run: dict) -> None:
    stored = run["stored"]
    pipeline = stored.pipeline
    account, region = run["account"], run["region"]
    variables: dict[str, dict[str, str]] = {}
    artifacts: dict[str, dict] = {}
    stage_name = None
    try:
        session = issue_session(run, pipeline["roleArn"], "codepipeline.amazonaws.com", stored._arn, account)
        for stage in pipeline["stages"]:
            stage_name = stage["name"]
            actions_state: dict[str, dict] = {}
            set_state(run, stages={stage_name: {"status": "InProgress"}})
            for action in sorted(stage["actions"], key=lambda a: a.get("runOrder", 1)):
                name = action["name"]
                actions_state[name] = {"status": "InProgress"}
                set_state(run, stages={stage_name: {"status": "InProgress", "actions": dict(actions_state)}})
                step(run, f"{stage_name}/{name}: started")
                try:
                    outcome = perform(run, session, stage, action, variables, artifacts) or {}
                except ActionFailed as failure:
                    actions_state[name] = {"status": "Failed", "errorDetails": {"code": failure.code, "message": str(failure)[:5000]}}
                    if failure.summary:
                        actions_state[name]["summary"] = failure.summary
                    step(run, f"{stage_name}/{name}: failed: {failure}")
                    set_state(run, status="Failed", stages={stage_name: {"status": "Failed", "actions": dict(actions_state)}}, summary=str(failure)[:2000])
                    run["status"] = "Failed"
                    run["failure"] = {"stage": stage_name, "action": name, "message": str(failure)}
                    return
                actions_state[name] = {"status": "Succeeded", **{k: v for k, v in outcome.items() if k in ("summary", "externalExecutionId")}}
                if outcome.get("sourceRevisions") is not None:
                    set_state(run, source_revisions=outcome["sourceRevisions"])
                step(run, f"{stage_name}/{name}: succeeded")
            set_state(run, stages={stage_name: {"status": "Succeeded", "actions": dict(actions_state)}})
        set_state(run, status="Succeeded")
        run["status"] = "Succeeded"
        step(run, "execution succeeded")
    except ActionFailed as failure:
        step(run, f"failed before any action: {failure}")
        stages = {stage_name: {"status": "Failed"}} if stage_name else None
        set_state(run, status="Failed", stages=stages, summary=str(failure))
        run["status"] = "Failed"
        run["failure"] = {"stage": stage_name, "action": None, "message": str(failure)}
    except Exception as e:  # noqa: BLE001
        log("run crashed:\n" + traceback.format_exc())
        run["status"] = "HarnessError"
        run["failure"] = {"stage": stage_name, "action": None, "message": f"harness error: {e}"}
        try:
            set_state(run, status="Failed", summary=f"harness error: {e}")
        except Exception:  # noqa: BLE001
            pass


def perform(run, session, stage, action, variables, artifacts) -> dict | None:
    kind = action["actionTypeId"]
    key = (kind["category"], kind["provider"])
    configuration = {k: resolve(str(v), variables) for k, v in (action.get("configuration") or {}).items()}
    if key == ("Source", "S3"):
        return source_s3(run, session, action, configuration, variables, artifacts)
    if key in (("Source", "CodeStarSourceConnection"), ("Source", "CodeCommit")):
        return source_fixture(run, session, action, configuration, variables, artifacts)
    if kind["provider"] == "CodeBuild":
        return codebuild(run, session, action, configuration, variables, artifacts)
    if key == ("Deploy", "ECS"):
        return deploy_ecs(run, session, action, configuration, artifacts)
    if key == ("Approval", "Manual"):
        return approval(run, session, stage, action, configuration)
    raise ActionFailed(f"test harness: no executor for {kind['category']}/{kind['provider']}", "JobFailed")


# ---------------------------------------------------------------- artifacts


def artifact_store(run: dict) -> dict:
    pipeline = run["stored"].pipeline
    store = pipeline.get("artifactStore") or (pipeline.get("artifactStores") or {}).get(run["region"])
    return store


def put_artifact(run: dict, session: dict, name: str, data: bytes, artifacts: dict, revision: str | None) -> None:
    """An output artifact, written as CodePipeline lays it out: <pipeline name (20)>/<artifact
    name (10)>/<random>, SSE-KMS with the store's key."""
    store = artifact_store(run)
    key = f"{run['pipeline'][:20]}/{name[:10]}/{uuid.uuid4().hex[:7]}"
    params = {"Bucket": store["location"], "Key": key, "Body": data}
    encryption = store.get("encryptionKey")
    if encryption:
        params.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=encryption["id"])
    try:
        client(session, "s3", run["region"]).put_object(**params)
    except Exception as e:  # noqa: BLE001
        raise aws_error(e)
    artifacts[name] = {"bucket": store["location"], "key": key, "revision": revision}


def get_artifact(run: dict, session: dict, name: str, artifacts: dict) -> bytes:
    location = artifacts.get(name)
    if location is None:
        raise ActionFailed(f"input artifact {name} was not produced by an earlier action", "ConfigurationError")
    try:
        return client(session, "s3", run["region"]).get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()
    except Exception as e:  # noqa: BLE001
        raise aws_error(e)


def output_names(action: dict) -> list[str]:
    return [a["name"] for a in action.get("outputArtifacts") or []]


def input_names(action: dict) -> list[str]:
    return [a["name"] for a in action.get("inputArtifacts") or []]


# ---------------------------------------------------------------- sources


def source_s3(run, session, action, configuration, variables, artifacts) -> dict:
    bucket, key = configuration["S3Bucket"], configuration["S3ObjectKey"]
    try:
        got = client(session, "s3", run["region"]).get_object(Bucket=bucket, Key=key)
    except Exception as e:  # noqa: BLE001
        raise aws_error(e)
    data = got["Body"].read()
    version = got.get("VersionId")
    for name in output_names(action):
        put_artifact(run, session, name, data, artifacts, version)
    if action.get("namespace"):
        variables[action["namespace"]] = {"ObjectKey": key, "VersionId": version or "", "ETag": (got.get("ETag") or "").strip('"')}
    return {"summary": f"Amazon S3 version id: {version}", "externalExecutionId": version,
            "sourceRevisions": [{"actionName": action["name"], "revisionId": version, "revisionSummary": key}]}


def source_push(method: str, query: dict, body: bytes):
    """POST /_harness/source-push: a push to a connection's or CodeCommit repository's branch:
    {"pipeline", "account"?, "region"?, "commitId", "files": {path: text}}. Stores the archive
    and starts the pipeline as its trigger would (PushEvent / CodeCommit)."""
    from launcher import codepipeline_start, codepipeline_stored

    if method != "POST":
        return 405, {"error": "use POST"}
    request = json.loads(body or b"{}")
    account, region = request.get("account", "123456789012"), request.get("region", "us-east-1")
    stored = codepipeline_stored(account, region, request.get("pipeline", ""))
    if stored is None:
        return 404, {"error": "no such pipeline"}
    commit = request.get("commitId") or uuid.uuid4().hex + uuid.uuid4().hex[:8]
    with LOCK:
        PUSHES[(account, region, stored.pipeline["name"])] = {"commitId": commit, "files": request.get("files") or {}}
    execution = codepipeline_start(stored, account, region, {"triggerType": "CodeStarSourceConnection", "triggerDetail": commit})
    return 200, {"pipelineExecutionId": execution["pipelineExecutionId"], "commitId": commit}


def source_fixture(run, session, action, configuration, variables, artifacts) -> dict:
    connection = configuration.get("ConnectionArn")
    if connection:
        # CodePipeline uses the connection as the pipeline role (CodePipeline User Guide,
        # "CodeStarSourceConnection": the service role needs UseConnection on it).
        service = "codeconnections" if connection.split(":")[2] == "codeconnections" else "codestar-connections"
        authorize_direct(run, session, f"{service}:UseConnection", connection)
    with LOCK:
        push = PUSHES.get((run["account"], run["region"], run["pipeline"]))
    if push is None:
        raise ActionFailed("no commit was pushed to the source (POST /_harness/source-push)", "JobFailed")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in sorted(push["files"].items()):
            archive.writestr(path, text)
    for name in output_names(action):
        put_artifact(run, session, name, buffer.getvalue(), artifacts, push["commitId"])
    if action.get("namespace"):
        variables[action["namespace"]] = {"CommitId": push["commitId"], "BranchName": configuration.get("BranchName", "")}
    return {"summary": f"commit {push['commitId']}", "externalExecutionId": push["commitId"],
            "sourceRevisions": [{"actionName": action["name"], "revisionId": push["commitId"]}]}


# ---------------------------------------------------------------- CodeBuild


def codebuild(run, session, action, configuration, variables, artifacts) -> dict:
    import yaml
    from moto.codebuild.models import codebuild_backends

    from launcher import codebuild_project_named

    region, account = run["region"], run["account"]
    project = codebuild_project_named(codebuild_backends[account][region], configuration["ProjectName"])
    if project is None:
        raise ActionFailed(f"project {configuration['ProjectName']} does not exist", "ConfigurationError")
    spec = project.project_metadata
    authorize_direct(run, session, "codebuild:StartBuild", spec["arn"])
    authorize_direct(run, session, "codebuild:BatchGetBuilds", spec["arn"])
    build_role = issue_session(run, spec["serviceRole"], "codebuild.amazonaws.com", spec["arn"], account)
    with LOCK:
        number = BUILD_NUMBERS[spec["arn"]] = BUILD_NUMBERS.get(spec["arn"], 0) + 1
    build_id = f"{spec['name']}:{uuid.uuid4()}"
    workspace = tempfile.mkdtemp(prefix="emu-build.")
    try:
        source = os.path.join(workspace, "src")
        os.makedirs(source)
        inputs = input_names(action)
        revision = ""
        if inputs:
            data = get_artifact(run, build_role, inputs[0], artifacts)
            revision = artifacts[inputs[0]].get("revision") or ""
            try:
                zipfile.ZipFile(io.BytesIO(data)).extractall(source)
            except zipfile.BadZipFile:
                raise ActionFailed(f"CLIENT_ERROR: the input artifact {inputs[0]} is not a zip archive", "JobFailed")
        try:
            buildspec = yaml.safe_load(spec["source"].get("buildspec") or "")
        except yaml.YAMLError as e:
            raise ActionFailed(f"YAML_FILE_ERROR: {e}", "JobFailed")
        environment = build_environment(run, spec, configuration, build_role, build_id, number, revision, source, workspace, artifacts, inputs)
        # One build at a time: a real build has its own container, these share the machine's
        # /tmp, where a buildspec may write (the operator's write their stage scripts there).
        with BUILD_LOCK:
            exit_code, output, exported = run_buildspec(buildspec, environment, source, workspace, run["scenario"].get("buildTimeoutSeconds", 300))
        write_logs(run, build_role, spec, build_id, output)
        upload_reports(run, build_role, spec, buildspec, source)
        if exit_code != 0:
            tail = "\n".join(output.strip().splitlines()[-5:])
            raise ActionFailed(
                f"Build failed: COMMAND_EXECUTION_ERROR: Error while executing command. Reason: exit status {exit_code}. Last output:\n{tail}",
                "JobFailed",
                summary=f"Build {build_id} failed",
            )
        namespace = action.get("namespace")
        if namespace:
            variables[namespace] = exported
        for name in output_names(action):
            put_artifact(run, build_role, name, zip_outputs(buildspec, source), artifacts, revision)
        return {"summary": f"Build {build_id} succeeded", "externalExecutionId": build_id}
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def build_environment(run, spec, configuration, build_role, build_id, number, revision, source, workspace, artifacts, inputs) -> dict:
    """What a build's shell sees: the project's variables, the action's, and CodeBuild's own
    (CodeBuild User Guide, "Environment variables in build environments"). The credentials are
    the service role's, as CodeBuild provides them; AWS_ENDPOINT_URL points the CLI at the
    emulator (the one variable real CodeBuild does not set)."""
    environment = {
        "PATH": os.pathsep.join(p for p in (SETTINGS["build_tools"], FAKEBIN, "/usr/local/bin", "/usr/bin", "/bin") if p),
        "HOME": os.path.join(workspace, "home"),
        "LANG": "C.UTF-8",
        "AWS_REGION": run["region"],
        "AWS_DEFAULT_REGION": run["region"],
        "AWS_ACCESS_KEY_ID": build_role["access_key"],
        "AWS_SECRET_ACCESS_KEY": build_role["secret_key"],
        "AWS_SESSION_TOKEN": build_role["token"],
        "AWS_ENDPOINT_URL": SETTINGS["endpoint"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "CODEBUILD_BUILD_ID": build_id,
        "CODEBUILD_BUILD_ARN": f"arn:aws:codebuild:{run['region']}:{run['account']}:build/{build_id}",
        "CODEBUILD_BUILD_NUMBER": str(number),
        "CODEBUILD_BUILD_SUCCEEDING": "1",
        "CODEBUILD_INITIATOR": f"codepipeline/{run['pipeline']}",
        "CODEBUILD_RESOLVED_SOURCE_VERSION": revision,
        "CODEBUILD_SRC_DIR": source,
        "CODEBUILD_SOURCE_VERSION": f"arn:aws:s3:::{artifacts[inputs[0]]['bucket']}/{artifacts[inputs[0]]['key']}" if inputs else "",
        "FAKE_DOCKER_STATE": os.path.join(workspace, "docker"),
    }
    os.makedirs(environment["HOME"], exist_ok=True)
    for variable in (spec.get("environment") or {}).get("environmentVariables") or []:
        if variable.get("type", "PLAINTEXT") != "PLAINTEXT":
            raise ActionFailed(f"test harness: {variable['type']} environment variables are not emulated", "JobFailed")
        environment[variable["name"]] = variable["value"]
    if configuration.get("EnvironmentVariables"):
        for variable in json.loads(configuration["EnvironmentVariables"]):
            if variable.get("type", "PLAINTEXT") != "PLAINTEXT":
                raise ActionFailed(f"test harness: {variable['type']} environment variables are not emulated", "JobFailed")
            environment[variable["name"]] = variable["value"]
    return environment


def run_buildspec(buildspec: dict, environment: dict, source: str, workspace: str, timeout: float) -> tuple[int, str, dict]:
    """The phases' commands in one bash (buildspec version 0.2: "all commands run in the same
    instance of the default shell"), stopping at the first that fails; env.variables first;
    the exported variables' values after the last phase."""
    if not isinstance(buildspec, dict) or str(buildspec.get("version")) != "0.2":
        return 1, "YAML_FILE_ERROR: buildspec version must be 0.2", {}
    env_section = buildspec.get("env") or {}
    shell = env_section.get("shell", "bash")
    if shell not in ("bash", "sh", "/bin/bash", "/bin/sh"):
        return 1, f"test harness: shell {shell} is not emulated", {}
    lines = []
    for name, value in (env_section.get("variables") or {}).items():
        lines.append(f"export {name}={shlex.quote(str(value))}")
    for phase in ("install", "pre_build", "build", "post_build"):
        for command in ((buildspec.get("phases") or {}).get(phase) or {}).get("commands") or []:
            lines.append(f"echo {shlex.quote('[Container] Running command ' + command.splitlines()[0])}")
            lines.append(command)
            lines.append(f"__status=$?; if [ $__status -ne 0 ]; then echo {shlex.quote('[Container] Command did not exit successfully ' + command.splitlines()[0])} \"exit status $__status\"; exit $__status; fi")
    exported = env_section.get("exported-variables") or []
    exports_file = os.path.join(workspace, "exported")
    for name in exported:
        lines.append(f"printf '%s=%s\\n' {shlex.quote(name)} \"${{{name}:-}}\" >> {shlex.quote(exports_file)}")
    script = os.path.join(workspace, "buildspec.sh")
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        done = subprocess.run(["bash", script], cwd=source, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return 124, (e.stdout or b"").decode("utf-8", "replace") + f"\nBuild timed out after {timeout} s", {}
    output = done.stdout.decode("utf-8", "replace")
    values = {}
    if done.returncode == 0 and os.path.exists(exports_file):
        for line in open(exports_file).read().splitlines():
            name, _, value = line.partition("=")
            values[name] = value
    return done.returncode, output, values


def zip_outputs(buildspec: dict, source: str) -> bytes:
    section = buildspec.get("artifacts") or {}
    base = os.path.join(source, section.get("base-directory", ""))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for pattern in section.get("files") or []:
            import glob

            for path in sorted(glob.glob(os.path.join(base, pattern), recursive=True)):
                if os.path.isfile(path):
                    archive.write(path, os.path.basename(path) if section.get("discard-paths") in (True, "yes") else os.path.relpath(path, base))
    return buffer.getvalue()


def write_logs(run, build_role, spec, build_id, output: str) -> None:
    logs_config = (spec.get("logsConfig") or {}).get("cloudWatchLogs") or {}
    if logs_config.get("status", "ENABLED") != "ENABLED" or not logs_config.get("groupName"):
        return
    group = logs_config["groupName"]
    stream = "/".join(p for p in (logs_config.get("streamName"), build_id.split(":")[-1]) if p)
    logs = client(build_role, "logs", run["region"])
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in output.splitlines()[:5000] if line] or [{"timestamp": now, "message": "(no output)"}]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    except Exception as e:  # noqa: BLE001
        raise ActionFailed(f"CodeBuild could not write the build's logs: {aws_error(e)}", "JobFailed")
    with LOCK:
        run.setdefault("logs", []).append({"group": group, "stream": stream, "output": output[-20000:]})


def upload_reports(run, build_role, spec, buildspec: dict, source: str) -> None:
    """Reports are uploaded whether the build passed or not (CodeBuild User Guide, "Working with
    test reporting"): as the project role, into the report group."""
    import glob
    import xml.etree.ElementTree as ET

    for group, section in ((buildspec or {}).get("reports") or {}).items():
        arn = group if group.startswith("arn:") else f"arn:aws:codebuild:{run['region']}:{run['account']}:report-group/{spec['name']}-{group}"
        for action in ("codebuild:CreateReport", "codebuild:BatchPutTestCases", "codebuild:UpdateReport"):
            authorize_direct(run, build_role, action, arn)
        for pattern in section.get("files") or []:
            for path in glob.glob(os.path.join(source, section.get("base-directory", ""), pattern), recursive=True):
                text = open(path).read()
                root = ET.fromstring(text)
                cases = root.iter("testcase")
                tests = failures = 0
                for case in cases:
                    tests += 1
                    failures += 1 if case.find("failure") is not None or case.find("error") is not None else 0
                with LOCK:
                    run["reports"].append({"reportGroupArn": arn, "file": os.path.relpath(path, source), "format": section.get("file-format"), "tests": tests, "failures": failures, "xml": text})


# ---------------------------------------------------------------- ECS


def deploy_ecs(run, session, action, configuration, artifacts) -> dict:
    region = action.get("region") or run["region"]
    role = session
    if action.get("roleArn"):
        try:
            sts = client(session, "sts", region)
            got = sts.assume_role(RoleArn=action["roleArn"], RoleSessionName="codepipeline-deploy")["Credentials"]
        except Exception as e:  # noqa: BLE001
            raise aws_error(e)
        role = {"access_key": got["AccessKeyId"], "secret_key": got["SecretAccessKey"], "token": got["SessionToken"], "role_arn": action["roleArn"]}
        with LOCK:
            SESSIONS[got["AccessKeyId"]] = run
            run["sessions"].append(got["AccessKeyId"])
    inputs = input_names(action)
    archive = zipfile.ZipFile(io.BytesIO(get_artifact(run, role, inputs[0], artifacts)))
    file_name = configuration.get("FileName", "imagedefinitions.json")
    try:
        definitions = json.loads(archive.read(file_name))
    except KeyError:
        raise ActionFailed(f"The image definition file {file_name} does not exist in the artifact {inputs[0]}", "JobFailed")
    images = {d["name"]: d["imageUri"] for d in definitions}
    ecs = client(role, "ecs", region)
    cluster, service_name = configuration["ClusterName"], configuration["ServiceName"]
    try:
        service = ecs.describe_services(cluster=cluster, services=[service_name])["services"][0]
        current = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        containers = current["containerDefinitions"]
        unknown = set(images) - {c["name"] for c in containers}
        if unknown:
            raise ActionFailed(f"The container {sorted(unknown)[0]} does not exist in the task definition", "JobFailed")
        for container in containers:
            if container["name"] in images:
                container["image"] = images[container["name"]]
        members = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "volumes", "placementConstraints", "requiresCompatibilities", "cpu", "memory", "runtimePlatform", "ephemeralStorage")
        registered = ecs.register_task_definition(**{m: current[m] for m in members if current.get(m) not in (None, [], {})})["taskDefinition"]
        ecs.update_service(cluster=cluster, service=service_name, taskDefinition=registered["taskDefinitionArn"])
    except ActionFailed:
        raise
    except Exception as e:  # noqa: BLE001
        raise aws_error(e)
    step(run, f"deploying {registered['taskDefinitionArn']} to {service_name}")
    pull_problem = pull_images(run, registered, service, region)
    if pull_problem is not None:
        step(run, f"tasks of {service_name} cannot start: {pull_problem}")
        fail_deployment(run, role, region, cluster, service_name, pull_problem)
    elif service_name in (run["scenario"].get("failDeployments") or []):
        fail_deployment(run, role, region, cluster, service_name, "tasks failed their health checks (the test's scenario)")
    deadline = time.time() + 60 * float(configuration.get("DeploymentTimeout", "60"))
    while True:
        try:
            service = ecs.describe_services(cluster=cluster, services=[service_name])["services"][0]
        except Exception as e:  # noqa: BLE001
            raise aws_error(e)
        ours = next((d for d in service["deployments"] if d["taskDefinition"] == registered["taskDefinitionArn"]), None)
        if ours is None or ours.get("rolloutState") == "FAILED":
            why = (ours or {}).get("rolloutStateReason") or "the deployment was replaced"
            raise ActionFailed(
                f"Deployment of {registered['taskDefinitionArn']} to service {service_name} failed ({why}); the circuit breaker rolled the service back to {service['taskDefinition']}",
                "JobFailed",
            )
        if ours.get("rolloutState") == "COMPLETED" and ours["status"] == "PRIMARY":
            return {"summary": f"Deployed {registered['taskDefinitionArn']}", "externalExecutionId": ours["id"]}
        if time.time() > deadline:
            raise ActionFailed("The deployment timed out", "JobFailed")
        time.sleep(0.5)


def fail_deployment(run, role, region, cluster, service_name, why: str) -> None:
    """The circuit breaker trips: the deployment fails and, with rollback on, the service goes
    back to the last deployment that completed (launcher.ecs_deployments_endpoint)."""
    from launcher import ecs_deployments_endpoint

    target = {"account": role["role_arn"].split(":")[4], "region": region, "cluster": cluster, "service": service_name}
    code, answer = ecs_deployments_endpoint("POST", {}, json.dumps({**target, "rolloutState": "FAILED", "rolloutStateReason": f"ECS deployment circuit breaker: {why}"[:1000]}).encode())
    if code != 200:
        raise ActionFailed(f"Deployment to {service_name} never completes: {why}", "JobFailed")
    ecs_deployments_endpoint("POST", {}, json.dumps({**target, "rolloutState": "COMPLETED"}).encode())


def pull_images(run, task_definition: dict, service: dict, region: str) -> str | None:
    """What starting a task needs before any container runs (ECS Developer Guide, "Amazon ECS
    task execution IAM role"): ECS assumes the execution role as ecs-tasks.amazonaws.com and
    pulls each ECR image with it, which the role's policies and the repository's policy (another
    account's pull) must allow, and the image must still be in the repository. None when every
    image can be pulled, else why not, as ECS reports it (CannotPullContainerError)."""
    from moto.ecr.models import ecr_backends

    account = task_definition["taskDefinitionArn"].split(":")[4]
    execution_role = task_definition.get("executionRoleArn")
    for container in task_definition["containerDefinitions"]:
        match = re.fullmatch(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)(?::([^@]+))?", container["image"])
        if match is None:
            continue
        if not execution_role:
            return "CannotPullContainerError: an ECR image needs the task's execution role"
        registry, image_region, name, tag = match.groups()
        try:
            session = issue_session(run, execution_role, "ecs-tasks.amazonaws.com", f"arn:aws:ecs:{region}:{account}:task/{service['clusterArn'].split('/')[-1]}/{uuid.uuid4().hex}", account)
            authorize_direct(run, session, "ecr:GetAuthorizationToken", "*")
            repository = ecr_backends[registry][image_region].repositories.get(name)
            policy = repository.policy if repository is not None else None
            arn = f"arn:aws:ecr:{image_region}:{registry}:repository/{name}"
            for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
                authorize_direct(run, session, action, arn, emu_authorize.Requirement(action, arn, registry, policy))
        except ActionFailed as denied:
            return f"CannotPullContainerError: pull access denied for {container['image']}: {denied}"
        if repository is None or not any((tag or "latest") in image.image_tags for image in repository.images):
            return f"CannotPullContainerError: {container['image']}: not found"
    return None


# ---------------------------------------------------------------- approval


def approval(run, session, stage, action, configuration) -> dict:
    token = str(uuid.uuid4())
    waiter = {"event": threading.Event(), "result": None, "run": run["executionId"], "stage": stage["name"], "action": action["name"], "pipeline": run["pipeline"]}
    with LOCK:
        APPROVALS[token] = waiter
    set_token(run, stage["name"], action["name"], token)
    if configuration.get("NotificationArn"):
        message = {
            "region": run["region"],
            "consoleLink": f"https://console.aws.amazon.com/codepipeline/home?region={run['region']}#/view/{run['pipeline']}",
            "approval": {
                "pipelineName": run["pipeline"],
                "stageName": stage["name"],
                "actionName": action["name"],
                "token": token,
                "expires": (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=7)).isoformat(),
                "externalEntityLink": configuration.get("ExternalEntityLink"),
                "approvalReviewLink": f"https://console.aws.amazon.com/codepipeline/home?region={run['region']}#/view/{run['pipeline']}/{stage['name']}/{action['name']}/approve/{token}",
                "customData": configuration.get("CustomData"),
            },
        }
        try:
            client(session, "sns", run["region"]).publish(
                TopicArn=configuration["NotificationArn"],
                Subject=f"APPROVAL NEEDED: AWS CodePipeline {run['pipeline']} for action {action['name']}"[:100],
                Message=json.dumps(message),
            )
        except Exception as e:  # noqa: BLE001
            raise aws_error(e)
        with LOCK:
            run.setdefault("approvalRequests", []).append(message)
    step(run, f"waiting for approval (token {token})")
    if not waiter["event"].wait(float(run["scenario"].get("approvalTimeoutSeconds", 3600))):
        raise ActionFailed("The approval request expired", "JobFailed")
    result = waiter["result"]
    if result["status"] == "Approved":
        return {"summary": result.get("summary") or "Approved"}
    raise ActionFailed(f"Rejected: {result.get('summary') or ''}".strip(), "JobFailed", summary=result.get("summary"))


def set_token(run: dict, stage: str, action: str, token: str) -> None:
    from launcher import codepipeline_executions

    for execution in codepipeline_executions(run["stored"]):
        if execution["pipelineExecutionId"] == run["executionId"]:
            execution["stages"][stage]["actions"].setdefault(action, {"status": "InProgress"})["token"] = token


def put_approval_result(pipeline: str, stage: str, action: str, result: dict, token: str) -> None:
    """PutApprovalResult (CodePipeline API Reference): the token must be the action's current
    one (InvalidApprovalTokenException), and an action already decided cannot be decided again
    (ApprovalAlreadyCompletedException)."""
    from launcher import EcsException  # a ServiceException with its own code

    with LOCK:
        waiter = APPROVALS.get(token)
        if waiter is None or (waiter["pipeline"], waiter["stage"], waiter["action"]) != (pipeline, stage, action):
            raise EcsException("InvalidApprovalTokenException", f"The approval token {token} is not valid for action {action} of stage {stage} in pipeline {pipeline}")
        if waiter["result"] is not None:
            raise EcsException("ApprovalAlreadyCompletedException", "The approval action has already been completed")
        if result.get("status") not in ("Approved", "Rejected"):
            raise EcsException("InvalidRequestException", "result.status must be Approved or Rejected")
        waiter["result"] = dict(result)
    waiter["event"].set()


# ---------------------------------------------------------------- ECR scan findings


def scan_findings_endpoint(method: str, query: dict, body: bytes):
    """POST /_harness/scan-findings: what ECR's basic scan finds in a repository's images:
    {"account"?, "region"?, "repository", "findings": [{"name", "severity", "description"?}]}.
    DELETE with the same keys forgets them (moto's own answer again)."""
    request = json.loads(body or b"{}")
    key = (request.get("account", "123456789012"), request.get("region", "us-east-1"), request.get("repository", ""))
    if not key[2]:
        return 400, {"error": "repository is required"}
    with LOCK:
        if method == "DELETE":
            SCAN_FINDINGS.pop(key, None)
            return 200, {}
        if method != "POST":
            return 405, {"error": "use POST or DELETE"}
        for finding in request.get("findings") or []:
            if finding.get("severity") not in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED") or not finding.get("name"):
                return 400, {"error": f"a finding needs a name and an ECR severity: {finding}"}
        SCAN_FINDINGS[key] = list(request.get("findings") or [])
    return 200, {"findings": len(SCAN_FINDINGS[key])}


def scan_findings_response(account: str, region: str, repository: str, image_id: dict, scans_on_push: bool) -> dict | None:
    """DescribeImageScanFindings of a repository that scans on push or a test gave findings: a
    completed basic scan (ECR API Reference, ImageScanFindings); None: moto answers."""
    with LOCK:
        findings = SCAN_FINDINGS.get((account, region, repository))
    if findings is None and not scans_on_push:
        return None
    findings = findings or []
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "registryId": account,
        "repositoryName": repository,
        "imageId": image_id,
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        "imageScanFindings": {
            "imageScanCompletedAt": now,
            "vulnerabilitySourceUpdatedAt": now,
            "findingSeverityCounts": counts,
            "findings": [
                {"name": f["name"], "severity": f["severity"], "description": f.get("description", ""), "uri": f.get("uri", f"https://nvd.nist.gov/vuln/detail/{f['name']}"), "attributes": []}
                for f in findings
            ],
        },
    }
