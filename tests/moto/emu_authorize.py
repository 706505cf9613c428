"""Authorization of the calls a pipeline run makes, as IAM evaluates them (IAM User Guide, "Policy
evaluation logic"; "Cross-account policy evaluation logic"; AWS KMS Developer Guide, "Key
policies in AWS KMS"):

- an explicit Deny in any policy that applies wins;
- identity-based policies of the caller's role (inline and attached managed), limited by its
  permissions boundary when it has one;
- the resource's policy (bucket, key, repository, topic): within one account either side may
  allow; across accounts both must;
- a KMS key is reached only through its key policy: one naming the caller allows on its own, one
  naming the caller's account delegates to the identity policies, which must then allow too.

Only sessions the executor (emu_executor.py) issued to a service (CodePipeline, CodeBuild)
acting as a role are authorized here: the operator's own calls are outside a run. A call whose
(action, resource) the table below does not know is refused loudly (the run fails with a
harness error), never served unchecked.
"""

from __future__ import annotations

import json
import re
from typing import Any

import emu_policy


class Requirement:
    """One IAM action on one resource that a call needs, and where the resource's policy is."""

    def __init__(self, action: str, resource: str, resource_account: str | None = None, resource_policy: Any = None, kind: str = "", context: dict | None = None):
        self.action = action
        self.resource = resource
        self.resource_account = resource_account
        self.resource_policy = resource_policy  # JSON text or dict; None: the resource has none
        self.kind = kind  # "kms" for a key: its key policy must allow (see module doc)
        self.context = context or {}


def role_of(role_arn: str):
    from moto.iam.models import iam_backends

    parts = role_arn.split(":")
    if len(parts) < 6:
        return None
    backend = iam_backends[parts[4]][parts[1]]
    try:
        return backend.get_role_by_arn(role_arn)  # indexed (launcher.perf_iam_role_lookups)
    except Exception:  # noqa: BLE001  (NotFoundException: no such role)
        return None


def managed_document(policy) -> str | None:
    if getattr(policy, "document", None):
        return policy.document
    for version in getattr(policy, "versions", []) or []:
        if getattr(version, "is_default_version", False) or getattr(version, "is_default", False):
            return version.document
    return None


def identity_documents(role) -> list[Any]:
    documents = list(role.policies.values())
    documents += [d for d in (managed_document(p) for p in role.managed_policies.values()) if d]
    return documents


def boundary_document(role) -> Any:
    arn = getattr(role, "permissions_boundary_arn", None)
    if not arn:
        return None
    from moto.iam.models import iam_backends

    parts = arn.split(":")
    try:
        return managed_document(iam_backends[parts[4]][parts[1]].get_policy(arn))
    except Exception:  # noqa: BLE001
        return json.dumps({"Version": "2012-10-17", "Statement": []})


def _implicit_resource(document: Any, resource: str) -> Any:
    """A resource policy's statements without Resource (ECR repository policies have none) are
    about the resource the policy is attached to."""
    doc = json.loads(document) if isinstance(document, str) else document
    statements = doc.get("Statement")
    statements = statements if isinstance(statements, list) else [statements]
    return {**doc, "Statement": [s if ("Resource" in s or "NotResource" in s) else {**s, "Resource": resource} for s in statements]}


def _verdict(documents: list[Any], caller, action: str, resource: str, context: dict, with_principal: bool) -> tuple[str, str]:
    """("deny" | "allow" | "none", reason) over several documents."""
    allowed = False
    if with_principal:
        documents = [_implicit_resource(d, resource) for d in documents]
    for document in documents:
        ok, reason = emu_policy.evaluate(document, caller, [action], context, with_principal=with_principal, resource=resource)
        if not ok and reason.startswith("explicit Deny"):
            return "deny", reason
        allowed = allowed or ok
    return ("allow", "allowed") if allowed else ("none", f"no statement allows {action}")


class _NoAccount(emu_policy.Caller):
    """The caller as a principal naming it directly would see it: its account's root does not
    match (a key policy statement naming the account delegates to IAM instead)."""

    def __init__(self, caller):
        super().__init__("-", caller.arn, caller.role_arn, caller.user_id)


def decide(caller, requirement: Requirement, context: dict) -> tuple[bool, str]:
    """Whether `caller` (a role session) may perform the requirement; the reason names which
    policy did not allow, in the words AWS uses."""
    role = role_of(caller.role_arn) if caller.role_arn else None
    if role is None:
        return False, f"the caller {caller.arn} is not a role session"
    return decide_with(caller, requirement, context, identity_documents(role), boundary_document(role))


def decide_with(caller, requirement: Requirement, context: dict, identity_policies: list[Any], boundary: Any) -> tuple[bool, str]:
    """`decide` over given documents: the role's identity policies and its boundary (None:
    none)."""
    context = {**context, **requirement.context}
    action, resource = requirement.action, requirement.resource
    identity, why = _verdict(identity_policies, caller, action, resource, context, with_principal=False)
    if identity == "deny":
        return False, f"with an explicit deny in an identity-based policy ({why})"
    if boundary is not None:
        bounded, _ = _verdict([boundary], caller, action, resource, context, with_principal=False)
        if bounded != "allow":
            return False, "because no permissions boundary allows the action"
    policy = requirement.resource_policy
    if requirement.kind == "sts":
        # The role's side, its trust policy, is evaluated by STS itself
        # (launcher.fix_sts_assume_role_evaluates_trust_policy); across accounts the caller's
        # identity policy must allow the AssumeRole as well.
        if requirement.resource_account not in (None, caller.account) and identity != "allow":
            return False, "because no identity-based policy allows the action"
        return True, "allowed (the trust policy is evaluated by STS)"
    if requirement.kind == "kms":
        if policy is None:
            return False, "because the key has no key policy"
        direct, why = _verdict([policy], _NoAccount(caller), action, resource, context, with_principal=True)
        through_account, why_account = _verdict([policy], caller, action, resource, context, with_principal=True)
        if "deny" in (direct, through_account):
            return False, f"with an explicit deny in the key policy ({why if direct == 'deny' else why_account})"
        cross = requirement.resource_account not in (None, caller.account)
        if direct == "allow" and not cross:
            return True, "allowed by the key policy"
        if through_account == "allow" and identity == "allow":
            return True, "allowed by the key policy and an identity-based policy"
        if through_account != "allow":
            return False, "because no resource-based policy allows the action (the key policy)"
        return False, "because no identity-based policy allows the action"
    resource_verdict = "none"
    if policy is not None:
        resource_verdict, why = _verdict([policy], caller, action, resource, context, with_principal=True)
        if resource_verdict == "deny":
            return False, f"with an explicit deny in a resource-based policy ({why})"
    cross = requirement.resource_account not in (None, caller.account)
    if cross:
        if identity != "allow":
            return False, "because no identity-based policy allows the action"
        if resource_verdict != "allow":
            return False, "because no resource-based policy allows the action"
        return True, "allowed by identity-based and resource-based policies"
    if identity == "allow" or resource_verdict == "allow":
        return True, "allowed"
    return False, "because no identity-based policy allows the action"


def denial_message(caller, requirement: Requirement, reason: str) -> str:
    """AWS's AccessDenied message (IAM User Guide, "Troubleshoot access denied error messages")."""
    return f"User: {caller.arn} is not authorized to perform: {requirement.action} on resource: {requirement.resource} {reason}"


# ---------------------------------------------------------------- resources of each call


def _s3_bucket(name: str):
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(name)
    if owner is None:
        return None, None
    partition, account = owner
    return s3_backends[account][partition].buckets.get(name), account


def kms_key(key_id: str, account: str, region: str):
    """The key a key ID, key ARN, alias name or alias ARN names, or None."""
    from moto.kms.models import kms_backends

    match = re.fullmatch(r"arn:[^:]+:kms:([^:]+):(\d{12}):(key|alias)/(.+)", key_id or "")
    if match:
        region, account = match.group(1), match.group(2)
        key_id = match.group(4) if match.group(3) == "key" else f"alias/{match.group(4)}"
    backend = kms_backends[account][region]
    try:
        resolved = backend.any_id_to_key_id(key_id)
    except Exception:  # noqa: BLE001
        return None
    return backend.keys.get(resolved)


def kms_requirement(action: str, key, via: str, region: str) -> Requirement | None:
    if key is None:
        return None
    return Requirement(
        action,
        key.arn,
        key.account_id,
        key.policy,
        kind="kms",
        context={"kms:ViaService": f"{via}.{region}.amazonaws.com"},
    )


def requirements(ident) -> list[Requirement] | None:
    """What a call needs, from its parsed parameters (Service Authorization Reference, each
    service's actions and resource types); None when the table does not know the call."""
    service, operation, params = ident.service_id, ident.operation, ident.params or {}
    region, account = ident.region, ident.account
    if service == "S3":
        bucket_name = params.get("Bucket", "")
        bucket, owner = _s3_bucket(bucket_name)
        policy = bucket.policy.decode() if bucket is not None and bucket.policy else None
        key = params.get("Key")
        if operation in ("GetObject", "HeadObject"):
            action = "s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject"
            needs = [Requirement(action, f"arn:aws:s3:::{bucket_name}/{key}", owner, policy)]
            stored = None
            if bucket is not None:
                try:
                    stored = bucket.keys.get(key) if not params.get("VersionId") else next(
                        (k for k in bucket.keys.getlist(key) if k.version_id == params["VersionId"]), None
                    )
                except Exception:  # noqa: BLE001
                    stored = None
            if stored is not None and stored.encryption == "aws:kms" and stored.kms_key_id:
                need = kms_requirement("kms:Decrypt", kms_key(stored.kms_key_id, owner, region), "s3", region)
                if need is not None:
                    needs.append(need)
            return needs
        if operation == "PutObject":
            needs = [Requirement("s3:PutObject", f"arn:aws:s3:::{bucket_name}/{key}", owner, policy)]
            if params.get("ServerSideEncryption") == "aws:kms":
                key_id = params.get("SSEKMSKeyId") or "alias/aws/s3"
                need = kms_requirement("kms:GenerateDataKey", kms_key(key_id, owner or account, region), "s3", region)
                if need is None:
                    return [Requirement("kms:GenerateDataKey", f"arn:aws:kms:{region}:{owner}:{key_id}", owner, None, kind="kms")]
                needs.append(need)
            return needs
        if operation in ("GetBucketVersioning", "GetBucketLocation"):
            return [Requirement(f"s3:{operation}", f"arn:aws:s3:::{bucket_name}", owner, policy)]
        if operation == "ListObjectsV2":
            return [Requirement("s3:ListBucket", f"arn:aws:s3:::{bucket_name}", owner, policy)]
        return None
    if service == "ECR":
        if operation == "GetAuthorizationToken":
            return [Requirement("ecr:GetAuthorizationToken", "*")]
        name = params.get("repositoryName")
        if not name:
            return None
        from moto.ecr.models import ecr_backends

        registry = params.get("registryId") or account
        repository = ecr_backends[registry][region].repositories.get(name)
        policy = repository.policy if repository is not None else None
        return [Requirement(f"ecr:{operation}", f"arn:aws:ecr:{region}:{registry}:repository/{name}", registry, policy)]
    if service == "CloudWatch Logs" and operation in ("CreateLogStream", "PutLogEvents"):
        arn = f"arn:aws:logs:{region}:{account}:log-group:{params.get('logGroupName')}:log-stream:{params.get('logStreamName')}"
        return [Requirement(f"logs:{operation}", arn)]
    if service == "ECS":
        if operation == "DescribeServices":
            cluster = (params.get("cluster") or "default").split("/")[-1]
            return [
                Requirement("ecs:DescribeServices", f"arn:aws:ecs:{region}:{account}:service/{cluster}/{s.split('/')[-1]}")
                for s in params.get("services") or []
            ]
        if operation == "UpdateService":
            cluster = (params.get("cluster") or "default").split("/")[-1]
            return [Requirement("ecs:UpdateService", f"arn:aws:ecs:{region}:{account}:service/{cluster}/{params.get('service', '').split('/')[-1]}")]
        if operation == "DescribeTaskDefinition":
            return [Requirement("ecs:DescribeTaskDefinition", "*")]
        if operation == "RegisterTaskDefinition":
            from moto.ecs.models import ecs_backends

            family = params.get("family", "")
            revisions = ecs_backends[account][region].task_definitions.get(family) or {}
            arn = f"arn:aws:ecs:{region}:{account}:task-definition/{family}:{len(revisions) + 1}"
            needs = [Requirement("ecs:RegisterTaskDefinition", arn)]
            if params.get("tags"):
                needs.append(Requirement("ecs:TagResource", arn, context={"ecs:CreateAction": "RegisterTaskDefinition"}))
            for member in ("executionRoleArn", "taskRoleArn"):
                if params.get(member):
                    needs.append(Requirement("iam:PassRole", params[member], context={"iam:PassedToService": "ecs-tasks.amazonaws.com"}))
            return needs
        return None
    if service == "SNS" and operation == "Publish":
        from moto.sns.models import sns_backends

        topic_arn = params.get("TopicArn", "")
        parts = topic_arn.split(":")
        topic = sns_backends[parts[4]][parts[3]].topics.get(topic_arn) if len(parts) >= 6 else None
        policy = topic.policy if topic is not None else None
        return [Requirement("sns:Publish", topic_arn, parts[4] if len(parts) >= 6 else None, policy)]
    if service == "STS" and operation == "AssumeRole":
        role_arn = params.get("RoleArn", "")
        parts = role_arn.split(":")
        return [Requirement("sts:AssumeRole", role_arn, parts[4] if len(parts) >= 5 else None, kind="sts")]
    return None


# ---------------------------------------------------------------- bucket policies of every request

# IAM action of an S3 operation where it is not "s3:" + the operation's name (Service
# Authorization Reference, Amazon S3, "Actions defined by Amazon S3": each action's API).
S3_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "CopyObject": "s3:PutObject",
}


def s3_explicit_deny(ident, caller, context: dict) -> str | None:
    """The AccessDenied message when the bucket's policy explicitly denies this request to this
    caller, for any S3 operation (bucket-level too) and with Principal/NotPrincipal honoured;
    an explicit deny in a resource-based policy applies whatever allows the caller has (IAM User
    Guide, "Policy evaluation logic"). None otherwise."""
    if ident.service_id != "S3" or ident.params is None:
        return None
    name = ident.params.get("Bucket")
    if not name:
        return None
    bucket, _ = _s3_bucket(name)
    if bucket is None or not bucket.policy:
        return None
    action = S3_ACTIONS.get(ident.operation, f"s3:{ident.operation}")
    key = ident.params.get("Key")
    resource = f"arn:aws:s3:::{name}/{key}" if key else f"arn:aws:s3:::{name}"
    verdict, why = _verdict([bucket.policy.decode()], caller, action, resource, context, with_principal=True)
    if verdict != "deny":
        return None
    return f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource} with an explicit deny in a resource-based policy"
