"""Starts moto_server with targeted fixes for where moto deviates from AWS.

Every fix cites the AWS behaviour it restores and is listed in docs/testing.md. In front of moto
sits the harness (emu_harness.py): request validation against the AWS service models
(emu_validation.py), an independent record of every call, and fault injection, with control
endpoints under /_harness/. Policy conditions and role trust policies are evaluated by
emu_policy.py.

Usage: launcher.py --port PORT [--host 127.0.0.1]
"""

import argparse
import importlib.metadata
import json
import os
import re
import signal
import sys
import uuid

# Read by moto when a request arrives; set before anything else so no code path sees the default.
os.environ["MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS"] = "false"
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")

import moto  # noqa: E402,F401
from moto.core.exceptions import ServiceException  # noqa: E402

import emu_policy  # noqa: E402
from emu_harness import CURRENT, Harness, log, session_issued  # noqa: E402

# Accounts that exist in every test run, as in an AWS Organization whose member accounts carry a
# bootstrap role the management account may assume. Tests that need "another account" use these.
DEFAULT_ACCOUNT = "123456789012"
MEMBER_ACCOUNTS = ["111111111111", "222222222222", "333333333333"]
BOOTSTRAP_ROLE = "delivery-bootstrap"


class AccessDenied(ServiceException):
    code = "AccessDenied"


def caller_of(access_key: str) -> "emu_policy.Caller":
    """The identity AWS authenticates for an access key: a role session moto issued (its role, in
    the role's account), an IAM user's key, or otherwise (the test key `testing`, any unknown key)
    the default account's root/admin identity."""
    from moto.iam.models import get_account_id_from, iam_backends
    from moto.sts.models import sts_backends

    account = get_account_id_from(access_key) if access_key else DEFAULT_ACCOUNT
    session = sts_backends[account]["aws"].get_assumed_role_from_access_key(access_key)
    if session is not None:
        role_name = session.role_arn.split("/")[-1]
        return emu_policy.Caller(
            session.account_id,
            f"arn:aws:sts::{session.account_id}:assumed-role/{role_name}/{session.session_name}",
            session.role_arn,
            session.user_id,
        )
    user = iam_backends[account]["aws"].get_user_from_access_key_id(access_key)
    if user is not None:
        return emu_policy.Caller(account, user.arn, None, user.id)
    return emu_policy.Caller(account, f"arn:aws:iam::{account}:root", None, account)


def fix_sts_assume_role_evaluates_trust_policy() -> None:
    """AWS: sts:AssumeRole fails with AccessDenied ("User: ARN is not authorized to perform:
    sts:AssumeRole on resource: ROLE") unless the role exists and its trust policy allows the
    caller (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html, Errors;
    IAM User Guide, "Policy evaluation logic", "Principal", "Condition"): the Principal must name
    the caller (its account, its user, its role for a role session, or "*"), the Action must
    cover sts:AssumeRole (and sts:TagSession when session tags are passed), every Condition must
    match the request context (sts:ExternalId, sts:RoleSessionName, aws:PrincipalAccount,
    aws:PrincipalArn, aws:RequestTag/*, aws:TagKeys), and no matching Deny may exist. moto
    returns credentials for any ARN, existing or not. Fix: evaluate the trust policy against
    the caller the request's access key identifies (role chaining: a role session is the
    caller of the next AssumeRole)."""
    from moto.iam.models import iam_backends
    from moto.sts.responses import TokenResponse

    original = TokenResponse.assume_role

    def assume_role(self):
        role_arn = self._get_param("RoleArn") or ""
        ident = getattr(CURRENT, "ident", None)
        access_key = ident.access_key if ident is not None else self.get_access_key()
        caller = caller_of(access_key)
        denied = AccessDenied(
            f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        )
        parts = role_arn.split(":")
        if len(parts) < 6 or not parts[5].startswith("role/"):
            log(f"AssumeRole denied: {role_arn} is not a role ARN")
            raise denied
        try:
            role = iam_backends[parts[4]][parts[1]].get_role_by_arn(role_arn)
        except Exception:
            log(f"AssumeRole denied: {role_arn} does not exist")
            raise denied
        tags = self._get_param("Tags") or []
        context = caller.context()
        context["sts:RoleSessionName"] = self._get_param("RoleSessionName")
        if self._get_param("ExternalId") is not None:
            context["sts:ExternalId"] = self._get_param("ExternalId")
        if self._get_param("SourceIdentity") is not None:
            context["sts:SourceIdentity"] = self._get_param("SourceIdentity")
        for tag in tags:
            context[f"aws:RequestTag/{tag['Key']}"] = tag["Value"]
        if tags:
            context["aws:TagKeys"] = [t["Key"] for t in tags]
        actions = ["sts:AssumeRole"] + (["sts:TagSession"] if tags else [])
        allowed, reason = emu_policy.evaluate(
            role.assume_role_policy_document, caller, actions, context, with_principal=True
        )
        if not allowed:
            log(f"AssumeRole denied: {caller.arn} -> {role_arn}: {reason}")
            raise denied
        result = original(self)
        session_issued(access_key, result.result["Credentials"].access_key_id)
        return result

    TokenResponse.assume_role = assume_role


def fix_sts_access_denied_status() -> None:
    """AWS: STS answers AccessDenied with HTTP 403 (STS API Reference, AssumeRole, Errors; AWS
    common errors: AccessDeniedException 403). moto serialises the harness's AccessDenied with
    400. Fix: 403."""
    from moto.sts.responses import TokenResponse

    original = TokenResponse.call_action

    def call_action(self):
        status, headers, body = original(self)
        if status == 400 and b"<Code>AccessDenied</Code>" in (body.encode() if isinstance(body, str) else body or b""):
            status = 403
            headers["status"] = 403
        return status, headers, body

    TokenResponse.call_action = call_action


# Root element of S3 REST-XML responses whose output has no payload member, from the "Response
# Syntax" section of each operation in the Amazon S3 API Reference.
S3_RESPONSE_ROOTS = {
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketLifecycleConfiguration": "LifecycleConfiguration",
    "GetBucketTagging": "Tagging",
    "GetObjectTagging": "Tagging",
    "GetBucketAcl": "AccessControlPolicy",
    "GetObjectAcl": "AccessControlPolicy",
    "GetBucketCors": "CORSConfiguration",
    "GetBucketLogging": "BucketLoggingStatus",
    "GetBucketNotificationConfiguration": "NotificationConfiguration",
    "ListObjectVersions": "ListVersionsResult",
    "ListObjects": "ListBucketResult",
    "ListObjectsV2": "ListBucketResult",
    "ListBuckets": "ListAllMyBucketsResult",
    "DeleteObjects": "DeleteResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "ListParts": "ListPartsResult",
}


def fix_s3_response_root_elements() -> None:
    """AWS: S3 responses are rooted at the element the API reference names (e.g. GetBucketVersioning
    returns <VersioningConfiguration>). moto 5.2's model-driven serializer roots them at
    <GetBucketVersioningResponse>; botocore ignores the root, but SDKs that check it (the Rust
    SDK) reject the response. Fix: use the documented root element."""
    from moto.core.serialize import BaseXMLSerializer, S3Serializer

    original = BaseXMLSerializer._serialized_result_to_response

    def serialized_result_to_response(self, resp, result, shape, serialized_result):
        root = S3_RESPONSE_ROOTS.get(self.operation_model.name)
        if not isinstance(self, S3Serializer) or root is None or (shape is not None and "payload" in shape.serialization):
            return original(self, resp, result, shape, serialized_result)
        wrapper = {root: serialized_result}
        self._serialize_namespace_attribute(wrapper[root])
        resp["body"] = self._serialize_body(wrapper)
        resp["headers"]["Content-Type"] = self.CONTENT_TYPE
        return resp

    BaseXMLSerializer._serialized_result_to_response = serialized_result_to_response


def fix_policy_conditions_scope_statements() -> None:
    """AWS: a policy statement applies only when its Condition matches; a Deny whose condition
    does not match denies nothing, one whose condition matches denies (IAM User Guide, "Policy
    evaluation logic", "Condition operators", "Condition keys that are not present": negated
    operators match an absent key, ...IfExists matches an absent key, Null tests presence).
    moto returns DENIED for any statement whose condition does not match and ignores Bool, so a
    bucket policy with `Deny s3:* when aws:SecureTransport is false` blocks every object call.
    Fix: conditions are evaluated by emu_policy (every documented operator; an unknown one is an
    error, HTTP 500, never "neutral"), against the request context: aws:SecureTransport (the
    emulator listens on plain HTTP only as an artefact of the test bed; requests are evaluated as
    arriving over TLS, as every SDK's do in AWS), aws:PrincipalAccount, aws:PrincipalArn,
    aws:userid, and S3's s3:x-amz-server-side-encryption(-aws-kms-key-id) and s3:x-amz-acl
    request headers."""
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult
    from moto.s3.models import FakeBucket

    original = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        condition = self._statement.get("Condition")
        if condition and not emu_policy.conditions_match(condition, incoming_condition_values or {}):
            return PermissionResult.NEUTRAL
        # The statement applies: let moto evaluate the rest without the condition it mis-reads.
        unconditioned = IAMPolicyStatement({k: v for k, v in self._statement.items() if k != "Condition"})
        return original(unconditioned, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted

    def get_permission(self, action, resource):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        return IAMPolicy(self.policy.decode()).is_action_permitted(
            action, resource, incoming_condition_values=request_context()
        )

    FakeBucket.get_permission = get_permission


def request_context() -> dict:
    """Global and S3 condition keys of the request being served (IAM User Guide, "AWS global
    condition context keys"; Amazon S3 User Guide, "Condition keys")."""
    context = {"aws:SecureTransport": "true"}
    ident = getattr(CURRENT, "ident", None)
    if ident is None:
        return context
    caller = caller_of(ident.access_key)
    context.update(caller.context())
    context["aws:RequestedRegion"] = ident.region
    headers = ident.headers or {}
    for header in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-acl"):
        if header in headers:
            context[f"s3:{header}"] = headers[header]
    return context


def fix_s3_policy_denial_is_access_denied() -> None:
    """AWS: a request a bucket policy denies gets 403 with an XML error body, Code AccessDenied
    (Amazon S3 API Reference, "Error responses", AccessDenied). moto answers object requests
    denied by a bucket policy with 403 and an empty body, which SDKs cannot classify. Fix: raise
    S3's AccessDenied (HEAD keeps its bodiless 403, as in AWS)."""
    from moto.s3.exceptions import AccessDeniedByLock
    from moto.s3.responses import S3Response

    original = S3Response._key_response

    def _key_response(self, request, full_url):
        response = original(self, request, full_url)
        if isinstance(response, tuple) and len(response) == 3 and response[0] == 403 and not response[2] and request.method != "HEAD":
            raise AccessDeniedByLock()
        return response

    S3Response._key_response = _key_response


def fix_s3_create_bucket_name_taken_by_another_account() -> None:
    """AWS: CreateBucket with a name another account owns fails with 409 BucketAlreadyExists
    ("The requested bucket name is not available. The bucket namespace is shared by all users of
    the system."; Amazon S3 API Reference, CreateBucket, Errors). With cross-account bucket
    access refused, moto's CreateBucket looks the existing bucket up to tell "yours" from
    "theirs", is refused, and answers AccessDenied. Fix: answer BucketAlreadyExists for a name
    another account owns before that lookup."""
    from moto.s3.exceptions import BucketAlreadyExists
    from moto.s3.models import s3_backends
    from moto.s3.responses import S3Response

    original = S3Response._bucket_response_put

    def _bucket_response_put(self, request, bucket_name, querystring):
        if not querystring:  # CreateBucket: PUT /{Bucket} without a subresource
            owner = s3_backends.bucket_accounts.get(bucket_name)
            if owner is not None and owner[1] != self.get_current_account():
                raise BucketAlreadyExists(bucket=bucket_name)
        return original(self, request, bucket_name, querystring)

    S3Response._bucket_response_put = _bucket_response_put


def fix_kms_rotation_period() -> None:
    """AWS: EnableKeyRotation takes RotationPeriodInDays (90-2560, default 365) and
    GetKeyRotationStatus returns it (KMS API Reference). moto ignores the parameter and omits
    the field. Fix: store and return it."""
    import json as _json

    from moto.kms.responses import KmsResponse

    original_enable = KmsResponse.enable_key_rotation
    original_status = KmsResponse.get_key_rotation_status

    def enable_key_rotation(self):
        result = original_enable(self)
        key = self.kms_backend.keys[self.kms_backend.get_key_id(self._get_param("KeyId"))]
        key.rotation_period_in_days = int(self._get_param("RotationPeriodInDays") or 365)
        return result

    def get_key_rotation_status(self):
        body = _json.loads(original_status(self))
        key = self.kms_backend.keys[self.kms_backend.get_key_id(self._get_param("KeyId"))]
        if body.get("KeyRotationEnabled"):
            body["RotationPeriodInDays"] = getattr(key, "rotation_period_in_days", 365)
        body["KeyId"] = key.id
        return _json.dumps(body)

    KmsResponse.enable_key_rotation = enable_key_rotation
    KmsResponse.get_key_rotation_status = get_key_rotation_status


def fix_kms_key_state_calls_accept_arns() -> None:
    """AWS: EnableKey, DisableKey, CancelKeyDeletion and ScheduleKeyDeletion take a key ID or a key
    ARN (KMS API Reference, KeyId). moto indexes its key table with the raw value, so an ARN
    fails with an internal error. Fix: resolve the ARN to the key ID first."""
    from moto.kms.models import KmsBackend

    for name in ("enable_key", "disable_key", "cancel_key_deletion", "schedule_key_deletion"):
        original = getattr(KmsBackend, name)

        def resolved(self, key_id, *args, _original=original, **kwargs):
            return _original(self, self.get_key_id(key_id), *args, **kwargs)

        setattr(KmsBackend, name, resolved)


class KmsException(ServiceException):
    code = "KmsException"


class ImageTagAlreadyExistsException(ServiceException):
    code = "ImageTagAlreadyExistsException"


def kms_key_problem(key: str, account: str, region: str) -> str | None:
    """Why ECR could not use KMS key `key` (an ID, alias or ARN) for a repository in `account`
    and `region`, or None when it can."""
    from moto.kms.models import kms_backends

    if key.startswith("arn:"):
        parts = key.split(":")
        if len(parts) < 6:
            return f"Invalid KMS key '{key}'"
        if parts[3] != region:
            return f"KMS key '{key}' is not in the repository's Region {region}"
        account = parts[4]
    try:
        found = kms_backends[account][region].describe_key(key)
    except Exception:
        return f"Error from KMS: key '{key}' does not exist (NotFoundException)"
    if found.key_state != "Enabled":
        return f"Error from KMS: key '{key}' is {found.key_state} (KMSInvalidStateException)"
    return None


def fix_ecr_kms_key_must_exist() -> None:
    """AWS: a repository created with encryptionType KMS is encrypted with the key in kmsKey,
    which "must exist in the same Region as the repository" (ECR API Reference,
    EncryptionConfiguration, kmsKey); ECR creates a grant on it at creation, and a key that does
    not exist or cannot be used (disabled, pending deletion) fails CreateRepository with
    KmsException (ECR API Reference, CreateRepository, Errors: KmsException, "The operation
    failed due to a KMS exception"). moto stores any string as the key. Fix: resolve the key in
    KMS (the key ARN's account, the repository's Region) and answer KmsException when it is
    missing, in another Region, or not Enabled."""
    from moto.ecr.models import ECRBackend

    original = ECRBackend.create_repository

    def create_repository(self, *args, **kwargs):
        config = kwargs.get("encryption_config") if "encryption_config" in kwargs else (args[2] if len(args) > 2 else None)
        config = config or {}
        key = config.get("kmsKey")
        if config.get("encryptionType") in ("KMS", "KMS_DSSE") and key:
            problem = kms_key_problem(key, self.account_id, self.region_name)
            if problem:
                log(f"CreateRepository refused: {problem}")
                raise KmsException(problem)
        return original(self, *args, **kwargs)

    ECRBackend.create_repository = create_repository


IAM_PRINCIPAL = re.compile(r"arn:(aws[a-z-]*):iam::([0-9]{12}):(role|user)/(?:[^/]+/)*([^/]+)")


def aws_principals(document: dict) -> list[str]:
    """Every `AWS` principal (and NotPrincipal) a policy document names."""
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    names = []
    for statement in statements:
        for field in ("Principal", "NotPrincipal"):
            principal = statement.get(field) if isinstance(statement, dict) else None
            if isinstance(principal, dict):
                value = principal.get("AWS", [])
                names.extend([value] if isinstance(value, str) else value)
    return [n for n in names if isinstance(n, str)]


def principal_exists(arn: str) -> bool:
    """Whether an IAM role or user ARN names a role or user that exists, looked up in the ARN's
    own account (moto keeps one IAM backend per account): the whole ARN, path included, as AWS
    resolves it to the principal's unique ID. Anything else (account IDs, account roots, "*",
    session ARNs) is not looked up and counts as existing."""
    from moto.iam.models import iam_backends

    match = IAM_PRINCIPAL.fullmatch(arn)
    if match is None:
        return True
    partition, account, kind, _name = match.groups()
    try:
        backend = iam_backends[account][partition]
    except Exception:
        return False
    if kind == "role":
        return any(role.arn == arn for role in backend.get_roles())
    return any(user.arn == arn for user in backend.users.values())


def missing_principal(policy) -> str | None:
    """The first IAM role or user ARN among a policy document's AWS principals that does not exist
    in its account, or None. `policy` is the document as sent (str or bytes) or parsed; one that
    is not a JSON object is left to moto's own validation."""
    if isinstance(policy, (bytes, bytearray)):
        policy = policy.decode("utf-8", "replace")
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return None
    if not isinstance(policy, dict):
        return None
    return next((arn for arn in aws_principals(policy) if not principal_exists(arn)), None)


def refuse_missing_principal(operation: str, policy, error) -> None:
    """Raises error(arn) when the policy names an IAM role or user that does not exist."""
    arn = missing_principal(policy)
    if arn is not None:
        log(f"{operation} refused: principal {arn} does not exist")
        raise error(arn)


def fix_ecr_repository_policy_principals_must_exist() -> None:
    """AWS: a role or user ARN in a resource-based policy is turned into that principal's unique
    ID when the policy is saved, so the principal must exist (IAM User Guide, "AWS JSON policy
    elements: Principal", IAM role principals and IAM user principals); SetRepositoryPolicy
    with a role or user that does not exist fails with InvalidParameterException (ECR API
    Reference, SetRepositoryPolicy, Errors), message "Invalid parameter at 'PolicyText' failed
    to satisfy constraint: 'Principal not found'". moto accepts any ARN. Fix: every IAM role or
    user ARN among the policy's AWS principals must exist in its account (account IDs, account
    roots, "*" and service principals are not looked up)."""
    from moto.ecr.exceptions import InvalidParameterException
    from moto.ecr.models import ECRBackend

    original = ECRBackend.set_repository_policy

    def set_repository_policy(self, registry_id, repository_name, policy_text):
        refuse_missing_principal(
            "SetRepositoryPolicy",
            policy_text,
            lambda arn: InvalidParameterException(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Principal not found'"
            ),
        )
        return original(self, registry_id, repository_name, policy_text)

    ECRBackend.set_repository_policy = set_repository_policy


class MalformedPolicyDocumentException(ServiceException):
    code = "MalformedPolicyDocumentException"


def fix_kms_key_policy_principals_must_exist() -> None:
    """AWS: "The principals in the key policy must exist and be visible to KMS" (KMS API
    Reference, CreateKey and PutKeyPolicy, request parameter Policy); a key policy naming a role
    or user that does not exist fails with MalformedPolicyDocumentException ("The request was
    rejected because the specified policy is not syntactically or semantically correct"; same
    pages, Errors), message "Policy contains a statement with one or more invalid principals.".
    moto stores any policy. Fix: every IAM role or user ARN among the policy's AWS principals
    must exist in its account, for CreateKey with a Policy and for PutKeyPolicy."""
    from moto.kms.models import KmsBackend

    original_create = KmsBackend.create_key
    original_put = KmsBackend.put_key_policy

    def invalid(arn):
        return MalformedPolicyDocumentException("Policy contains a statement with one or more invalid principals.")

    def create_key(self, policy, *args, **kwargs):
        refuse_missing_principal("CreateKey", policy, invalid)
        return original_create(self, policy, *args, **kwargs)

    def put_key_policy(self, key_id, policy):
        refuse_missing_principal("PutKeyPolicy", policy, invalid)
        return original_put(self, key_id, policy)

    KmsBackend.create_key = create_key
    KmsBackend.put_key_policy = put_key_policy


def fix_s3_bucket_policy_principals_must_exist() -> None:
    """AWS: PutBucketPolicy with a Principal that is not valid, including an IAM user or role that
    does not exist (or was deleted), fails with HTTP 400 MalformedPolicy, "Invalid principal in
    policy" (Amazon S3 API Reference, "Error responses", MalformedPolicy: "This happens when the
    policy is not valid"; AWS Knowledge Center, "Why do I get the error 'Invalid principal in
    policy' when I try to update my Amazon S3 bucket policy?"; IAM User Guide, "AWS JSON policy
    elements: Principal"). moto stores any policy. Fix: every IAM role or user ARN among the
    policy's AWS principals must exist in its account."""
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend

    original = S3Backend.put_bucket_policy

    def put_bucket_policy(self, bucket_name, policy):
        self.get_bucket(bucket_name)  # NoSuchBucket first
        refuse_missing_principal(
            "PutBucketPolicy", policy, lambda arn: S3ClientError("MalformedPolicy", "Invalid principal in policy")
        )
        return original(self, bucket_name, policy)

    S3Backend.put_bucket_policy = put_bucket_policy


def fix_sns_topic_policy_principals_must_exist() -> None:
    """AWS: a topic policy naming an IAM role or user that does not exist is refused with
    InvalidParameter (HTTP 400; SNS API Reference, CreateTopic and SetTopicAttributes, Errors:
    "Indicates that a request parameter does not comply with the associated constraints"),
    message "Invalid parameter: Policy Error: PrincipalNotFound"; the principal must exist
    because a resource policy stores its unique ID (IAM User Guide, "AWS JSON policy elements:
    Principal"). moto stores any policy. Fix: every IAM role or user ARN among the AWS principals
    of the Policy attribute must exist in its account, for CreateTopic (Attributes.Policy) and
    SetTopicAttributes (AttributeName=Policy)."""
    from moto.sns.exceptions import SNSInvalidParameter
    from moto.sns.models import SNSBackend

    original_create = SNSBackend.create_topic
    original_set = SNSBackend.set_topic_attribute

    def invalid(arn):
        return SNSInvalidParameter("Invalid parameter: Policy Error: PrincipalNotFound")

    def create_topic(self, name, attributes=None, tags=None):
        policy = (attributes or {}).get("Policy")
        if policy is not None:
            refuse_missing_principal("CreateTopic", policy, invalid)
        return original_create(self, name, attributes, tags)

    def set_topic_attribute(self, topic_arn, attribute_name, attribute_value):
        # SetTopicAttributes passes the name through camelcase_to_underscores: Policy -> policy.
        if attribute_name in ("policy", "Policy"):
            self.get_topic(topic_arn)  # NotFound first, as in AWS
            refuse_missing_principal("SetTopicAttributes", attribute_value, invalid)
        return original_set(self, topic_arn, attribute_name, attribute_value)

    SNSBackend.create_topic = create_topic
    SNSBackend.set_topic_attribute = set_topic_attribute


# IAM character quotas (IAM User Guide, "IAM and AWS STS quotas", IAM and STS character limits);
# IAM does not count white space against them.
ROLE_TRUST_POLICY_QUOTA = 2048
ROLE_INLINE_POLICIES_QUOTA = 10240


def iam_policy_size(document: str | None) -> int:
    return len(re.sub(r"\s", "", document or ""))


def fix_iam_trust_policy_principals_must_exist() -> None:
    """AWS: a role's trust policy is a resource-based policy; a role or user ARN among its
    principals is turned into the principal's unique ID, so it must exist (IAM User Guide, "AWS
    JSON policy elements: Principal"; "Roles terms and concepts": if the principal is deleted
    the policy shows its unique ID). CreateRole and UpdateAssumeRolePolicy with one that does
    not exist fail with MalformedPolicyDocument (HTTP 400; IAM API Reference, CreateRole and
    UpdateAssumeRolePolicy, Errors: "The request was rejected because the policy document was
    malformed"), message `Invalid principal in policy: "AWS":"<arn>"`. moto accepts any ARN.
    Fix: every IAM role or user ARN among the trust policy's AWS principals must exist in its
    account."""
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.models import IAMBackend

    original_create = IAMBackend.create_role
    original_update = IAMBackend.update_assume_role_policy

    def invalid(arn):
        return MalformedPolicyDocument(f'Invalid principal in policy: "AWS":"{arn}"')

    def create_role(self, role_name, assume_role_policy_document, *args, **kwargs):
        refuse_missing_principal("CreateRole", assume_role_policy_document, invalid)
        return original_create(self, role_name, assume_role_policy_document, *args, **kwargs)

    def update_assume_role_policy(self, role_name, policy_document):
        self.get_role(role_name)  # NoSuchEntity first
        refuse_missing_principal("UpdateAssumeRolePolicy", policy_document, invalid)
        return original_update(self, role_name, policy_document)

    IAMBackend.create_role = create_role
    IAMBackend.update_assume_role_policy = update_assume_role_policy


def fix_iam_role_policy_size_quotas() -> None:
    """AWS (IAM User Guide, "IAM and AWS STS quotas", IAM and STS character limits): a role trust
    policy can't exceed 2,048 characters, and the aggregate size of all of a role's inline
    policies can't exceed 10,240 characters; IAM does not count white space. Past them,
    CreateRole and UpdateAssumeRolePolicy fail with LimitExceeded (HTTP 409; IAM API Reference,
    CreateRole, UpdateAssumeRolePolicy, Errors: "The request was rejected because it attempted
    to create resources beyond the current AWS account limits"), message "Cannot exceed quota
    for ACLSizePerRole: 2048", and PutRolePolicy with LimitExceeded (HTTP 409; PutRolePolicy,
    Errors), "Maximum policy size of 10240 bytes exceeded for role <name>". moto reports both
    quotas in GetAccountSummary (AssumeRolePolicySizeQuota, RolePolicySizeQuota) but enforces
    neither. Fix: enforce both, white space not counted; a PutRolePolicy that replaces an inline
    policy counts the new document instead of the old."""
    from moto.iam.exceptions import LimitExceededException
    from moto.iam.models import IAMBackend

    original_create = IAMBackend.create_role
    original_update = IAMBackend.update_assume_role_policy
    original_put = IAMBackend.put_role_policy

    def check_trust(operation, role_name, document):
        size = iam_policy_size(document)
        if size > ROLE_TRUST_POLICY_QUOTA:
            log(f"{operation} refused: trust policy of {role_name} is {size} characters without white space")
            raise LimitExceededException(f"Cannot exceed quota for ACLSizePerRole: {ROLE_TRUST_POLICY_QUOTA}")

    def create_role(self, role_name, assume_role_policy_document, *args, **kwargs):
        check_trust("CreateRole", role_name, assume_role_policy_document)
        return original_create(self, role_name, assume_role_policy_document, *args, **kwargs)

    def update_assume_role_policy(self, role_name, policy_document):
        self.get_role(role_name)  # NoSuchEntity first
        check_trust("UpdateAssumeRolePolicy", role_name, policy_document)
        return original_update(self, role_name, policy_document)

    def put_role_policy(self, role_name, policy_name, policy_json):
        role = self.get_role(role_name)
        others = sum(iam_policy_size(doc) for name, doc in role.policies.items() if name != policy_name)
        size = others + iam_policy_size(policy_json)
        if size > ROLE_INLINE_POLICIES_QUOTA:
            log(f"PutRolePolicy refused: inline policies of {role_name} would be {size} characters without white space")
            raise LimitExceededException(
                f"Maximum policy size of {ROLE_INLINE_POLICIES_QUOTA} bytes exceeded for role {role_name}"
            )
        return original_put(self, role_name, policy_name, policy_json)

    IAMBackend.create_role = create_role
    IAMBackend.update_assume_role_policy = update_assume_role_policy
    IAMBackend.put_role_policy = put_role_policy


def wildcard_match(pattern: str, text: str) -> bool:
    """ECR's WILDCARD filter: the whole text, `*` standing for any run of characters."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), text) is not None


def tag_is_immutable(repository, tag: str) -> bool:
    excluded = any(wildcard_match(f["filter"], tag) for f in repository.image_tag_mutability_exclusion_filters or [])
    mode = str(getattr(repository.image_tag_mutability, "value", repository.image_tag_mutability))
    return (
        mode == "IMMUTABLE"
        or (mode == "IMMUTABLE_WITH_EXCLUSION" and not excluded)
        or (mode == "MUTABLE_WITH_EXCLUSION" and excluded)
    )


def fix_ecr_tag_mutability_exclusions_are_wildcards() -> None:
    """AWS: an exclusion filter of type WILDCARD matches a whole tag, `*` standing for any run of
    characters (ECR User Guide, "Preventing image tags from being overwritten": tag names, or
    wildcards (*) to match similar tags; ECR API Reference, ImageTagMutabilityExclusionFilter:
    filterType WILDCARD, filter pattern ^[0-9a-zA-Z._*-]{1,128}$). Under IMMUTABLE every tag is
    immutable, under IMMUTABLE_WITH_EXCLUSION every tag but the excluded ones, under
    MUTABLE_WITH_EXCLUSION only the excluded ones; pushing another image under an existing
    immutable tag fails with ImageTagAlreadyExistsException (ECR API Reference, PutImage,
    Errors). moto matches filters as regular-expression prefixes (`latest` exempts
    `latest-rc`; `dev-*` means "dev" and dashes; `*-dev` is an internal error) and answers
    ImageAlreadyExistsException. Fix: whole-tag wildcard matching and AWS's error; re-pushing
    the same manifest under its own tag stays ImageAlreadyExistsException, as in AWS."""
    from moto.ecr.models import ECRBackend

    original_put_image = ECRBackend.put_image

    def resolve_image_tag_mutability(self, repository, proposed_image_tag):
        # The images holding the tag (moved to the new image by put_image); immutability is
        # decided in put_image below, where the manifest is known.
        return [i for i in repository.images if proposed_image_tag in i.image_tags]

    def put_image(self, repository_name, image_manifest, image_tag, *args, **kwargs):
        repository = self.repositories.get(repository_name)
        if repository is not None and image_tag:
            holders = [i for i in repository.images if image_tag in i.image_tags]
            if holders and all(i.image_manifest != image_manifest for i in holders) and tag_is_immutable(repository, image_tag):
                raise ImageTagAlreadyExistsException(
                    f"The image tag '{image_tag}' already exists in the '{repository_name}' repository "
                    "and cannot be overwritten because the tag is immutable."
                )
        return original_put_image(self, repository_name, image_manifest, image_tag, *args, **kwargs)

    ECRBackend._resolve_image_tag_mutability = resolve_image_tag_mutability
    ECRBackend.put_image = put_image


def fix_ec2_delete_vpc_refuses_dependencies() -> None:
    """AWS: "You must detach or delete all gateways and resources that are associated with the VPC
    before you can delete it. For example, you must ... delete all security groups associated
    with the VPC (except the default one) ..." (EC2 API Reference, DeleteVpc); otherwise
    DependencyViolation "The vpc 'vpc-...' has dependencies and cannot be deleted.". moto 5.2.5
    refuses a VPC with subnets or extra route tables, but deletes one with an attached internet
    gateway (its own TODO) or a security group other than the default one, leaving the gateway
    attached to a VPC that no longer exists and the group orphaned. Fix: refuse both."""
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models.vpcs import VPCBackend

    original = VPCBackend.delete_vpc

    def delete_vpc(self, vpc_id):
        attached = [g.id for g in self.internet_gateways.values() if g.vpc is not None and g.vpc.id == vpc_id]
        groups = [g.id for g in self.groups.get(vpc_id, {}).values() if g.name != "default"]
        if attached or groups:
            log(f"DeleteVpc refused: {vpc_id} still has gateways {attached} and security groups {groups}")
            raise DependencyViolationError(f"The vpc '{vpc_id}' has dependencies and cannot be deleted.")
        return original(self, vpc_id)

    VPCBackend.delete_vpc = delete_vpc


def fix_ec2_associate_route_table_refuses_an_associated_subnet() -> None:
    """AWS: a subnet is explicitly associated with at most one route table; AssociateRouteTable
    for a subnet that already has an explicit association (with any table) fails with
    Resource.AlreadyAssociated ("The specified resource is already in use", EC2 API Reference,
    Error codes), and ReplaceRouteTableAssociation moves it ("Changes the route table associated
    with a given subnet ... in a VPC. After the operation completes, the subnet ... uses the
    routes in the new route table", EC2 API Reference, ReplaceRouteTableAssociation). moto 5.2.5
    answers with the existing association's ID, even one of another table, as if the subnet now
    used the requested table. Fix: refuse, naming the table."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.route_tables import RouteBackend

    original = RouteBackend.associate_route_table

    def associate_route_table(self, route_table_id, gateway_id=None, subnet_id=None):
        if subnet_id is not None:
            for table in self.route_tables.values():
                if subnet_id in table._associations.values():
                    raise EC2ClientError(
                        "Resource.AlreadyAssociated",
                        f"the specified association for route table {route_table_id} conflicts with an existing association",
                    )
        return original(self, route_table_id, gateway_id=gateway_id, subnet_id=subnet_id)

    RouteBackend.associate_route_table = associate_route_table


def fix_ec2_tags_are_read_per_resource() -> None:
    """Not an AWS behaviour but the test bed's speed: moto 5.2.5 reads one EC2 resource's tags by
    scanning every tag of every resource in the region with a regular expression
    (TaggedEC2Resource.get_tags calls describe_tags with a resource-id filter), so a Describe*
    call costs O(resources x tags): about a second per DescribeSecurityGroups once a suite run
    has left some 80 VPCs. Fix: look the resource's own tags up; the same list, in the same
    shape."""
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def get_tags(self):
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        tags = self.ec2_backend.tags.get(resource_id, {})
        return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]

    TaggedEC2Resource.get_tags = get_tags


# ECS: what AWS fills in when CreateService has no deploymentConfiguration (ECS API Reference,
# DeploymentConfiguration: maximumPercent defaults to 200 and minimumHealthyPercent to 100 for a
# REPLICA service; DeploymentCircuitBreaker: the circuit breaker is off unless enabled).
ECS_DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


class EcsException(ServiceException):
    """An ECS error with its own code (ECS API Reference, each operation's Errors)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


def ecs_deployment_configuration(given, current=None) -> dict:
    import copy

    merged = copy.deepcopy(current if current is not None else ECS_DEFAULT_DEPLOYMENT_CONFIGURATION)
    for key, value in (given or {}).items():
        merged[key] = copy.deepcopy(value)
    return merged


def ecs_primary(service) -> dict | None:
    return next((d for d in service.deployments if d.get("status") == "PRIMARY"), None)


def ecs_start_deployment(service) -> dict:
    """A new PRIMARY deployment of the service's task definition (ECS Developer Guide, "Rolling
    update deployments"; API Reference, Deployment). The emulator runs no tasks, so a deployment
    reaches its steady state the moment it starts (rolloutState COMPLETED, runningCount =
    desiredCount) and the deployments it replaces are drained at once, unless a test holds or
    fails it through /_harness/ecs-deployments. The task definition of the deployment it
    replaces, if that one completed, is what the circuit breaker rolls back to."""
    import random

    from moto.core.utils import utcnow

    previous = ecs_primary(service)
    if previous is not None and previous.get("rolloutState") == "COMPLETED":
        service.emulator_rollback_target = previous.get("taskDefinition")
    now = utcnow()
    deployment_id = f"ecs-svc/{random.randint(10**18, 10**19 - 1)}"
    deployment = {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": service.task_definition,
        "desiredCount": service.desired_count,
        "pendingCount": 0,
        "runningCount": service.desired_count,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "launchType": service.launch_type,
        # What LATEST resolves to on Fargate (ECS Developer Guide, "Fargate Linux platform versions").
        "platformVersion": "1.4.0" if service.launch_type == "FARGATE" and service.platform_version in (None, "LATEST") else service.platform_version,
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": "COMPLETED",
        "rolloutStateReason": f"ECS deployment {deployment_id} completed.",
    }
    service.deployments = [deployment]
    service.running_count = service.desired_count
    service.pending_count = 0
    return deployment


def fix_ecs_services_keep_their_configuration_and_deployments() -> None:
    """AWS (ECS API Reference, CreateService, UpdateService, Service, Deployment):
    - CreateService stores deploymentConfiguration (with the defaults above for what is not
      given), healthCheckGracePeriodSeconds and enableECSManagedTags, and DescribeServices
      returns them; moto 5.2.5 drops all three.
    - A service's deployments: CreateService starts the first PRIMARY deployment; UpdateService
      with a new taskDefinition or networkConfiguration (or forceNewDeployment) starts a new
      PRIMARY one, and the previous one drains; a desiredCount change alone updates the PRIMARY
      deployment's desiredCount ("Deployment.desiredCount: The most recent desired count of tasks
      that was specified for the service to deploy or maintain"). Each has a rolloutState
      (IN_PROGRESS, COMPLETED, FAILED) while the circuit breaker watches it. moto keeps the
      deployment of CreateService forever (its desiredCount and task definition never change)
      and reports it IN_PROGRESS forever once desiredCount > 0.
    - UpdateService stores taskDefinition as the full revision ARN (DescribeServices returns
      "arn:...:task-definition/family:revision" whatever form was passed); moto stores the
      string as given.
    - CreateService of a service that exists (ACTIVE or DRAINING) in the cluster fails with
      InvalidParameterException "Creation of service was not idempotent."; moto replaces it.
    - UpdateService of a service that is not ACTIVE fails with ServiceNotActiveException
      ("The specified service isn't active. You can't update a service that's inactive.");
      moto updates it.
    Fix: all of the above; deployments settle at once (the emulator runs no tasks) unless a test
    holds or fails one through /_harness/ecs-deployments (ecs_deployments_endpoint)."""
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse

    original_create = EC2ContainerServiceResponse.create_service
    original_update = EC2ContainerServiceBackend.update_service

    def create_service(self):
        backend = self.ecs_backend
        cluster = (self._get_param("cluster") or "default").split("/")[-1]
        name = self._get_param("serviceName")
        existing = backend.services.get(f"{cluster}:{name}")
        if existing is not None and existing.status in ("ACTIVE", "DRAINING"):
            raise InvalidParameterException("Creation of service was not idempotent.")
        result = original_create(self)
        service = backend.services[f"{cluster}:{name}"]
        service.deployment_configuration = ecs_deployment_configuration(self._get_param("deploymentConfiguration"))
        grace = self._get_param("healthCheckGracePeriodSeconds")
        if grace is not None:
            service.health_check_grace_period_seconds = int(grace)
        service.enable_ecs_managed_tags = bool(self._get_param("enableECSManagedTags") or False)
        ecs_start_deployment(service)
        return result

    def update_service(self, props):
        cluster = (props.get("cluster") or "default").split("/")[-1]
        name = str(props.get("service", "")).split("/")[-1]
        service = self._get_service(cluster, name)
        if service.status != "ACTIVE":
            raise EcsException(
                "ServiceNotActiveException",
                "The specified service isn't active. You can't update a service that's inactive.",
            )
        configuration = props.pop("deployment_configuration", None)
        grace = props.pop("health_check_grace_period_seconds", None)
        managed = props.pop("enable_ecs_managed_tags", None)
        if props.get("task_definition"):
            props["task_definition"] = self.describe_task_definition(props["task_definition"]).arn
        if props.get("network_configuration") is not None:
            service._validate_network(props["network_configuration"])
        before = (service.task_definition, json.dumps(service.network_configuration, sort_keys=True), service.platform_version)
        force = bool(props.get("force_new_deployment"))
        result = original_update(self, props)
        if configuration is not None:
            service.deployment_configuration = ecs_deployment_configuration(
                configuration, getattr(service, "deployment_configuration", None)
            )
        if grace is not None:
            service.health_check_grace_period_seconds = int(grace)
        if managed is not None:
            service.enable_ecs_managed_tags = bool(managed)
        after = (service.task_definition, json.dumps(service.network_configuration, sort_keys=True), service.platform_version)
        primary = ecs_primary(service)
        if force or after != before or primary is None:
            ecs_start_deployment(service)
        elif props.get("desired_count") is not None:
            from moto.core.utils import utcnow

            primary["desiredCount"] = service.desired_count
            primary["updatedAt"] = utcnow()
            if primary.get("rolloutState") == "COMPLETED":
                primary["runningCount"] = service.desired_count
                primary["pendingCount"] = 0
            else:
                service.running_count = primary.get("runningCount", 0)
                service.pending_count = max(service.desired_count - service.running_count, 0)
        return result

    EC2ContainerServiceResponse.create_service = create_service
    EC2ContainerServiceBackend.update_service = update_service


def fix_ecs_delete_cluster_refuses_active_services() -> None:
    """AWS: "You must delete all services that are running in the cluster before you can delete
    the cluster" (ECS API Reference, DeleteCluster); otherwise ClusterContainsServicesException
    ("You can't delete a cluster that contains services. First, update the service to reduce
    its desired task count to 0, and then delete the service."). A service being deleted
    (DRAINING) still counts. moto 5.2.5 marks the cluster INACTIVE with its services still in
    it. Fix: refuse while any service of the cluster is ACTIVE or DRAINING."""
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.delete_cluster

    def delete_cluster(self, cluster_str):
        cluster = self._get_cluster(cluster_str)
        active = [s.name for s in self.services.values() if s.cluster_name == cluster.name and s.status in ("ACTIVE", "DRAINING")]
        if active:
            log(f"DeleteCluster refused: {cluster.name} still has services {active}")
            raise EcsException(
                "ClusterContainsServicesException",
                "The Cluster cannot be deleted while Services are active.",
            )
        return original(self, cluster_str)

    EC2ContainerServiceBackend.delete_cluster = delete_cluster


def fix_ecs_family_resolves_to_the_latest_active_revision() -> None:
    """AWS: a task definition given as a family alone means "the latest ACTIVE revision"
    (ECS API Reference, DescribeTaskDefinition.taskDefinition: "The family for the latest
    ACTIVE revision, family and revision (family:revision) for a specific revision in the
    family, or full Amazon Resource Name (ARN) of the task definition to describe."; the same
    for CreateService and UpdateService); a family whose revisions are all deregistered answers
    ClientException "Unable to describe task definition.". moto 5.2.5 takes the highest
    revision, deregistered or not. Fix: the highest ACTIVE revision."""
    from moto.ecs.exceptions import TaskDefinitionNotFoundException
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.describe_task_definition

    def describe_task_definition(self, task_definition_str):
        name = str(task_definition_str).split("/")[-1]
        if ":" in name:
            return original(self, task_definition_str)
        revisions = self.task_definitions.get(name, {})
        active = [number for number, revision in revisions.items() if revision.status == "ACTIVE"]
        if not active:
            raise TaskDefinitionNotFoundException()
        return revisions[max(active)]

    EC2ContainerServiceBackend.describe_task_definition = describe_task_definition


# POST /_harness/ecs-deployments fields.
ECS_DEPLOYMENT_FIELDS = {"account", "region", "cluster", "service", "rolloutState", "rolloutStateReason", "failedTasks", "runningCount"}


def ecs_deployments_endpoint(method: str, query: dict, body: bytes):
    """POST /_harness/ecs-deployments: moves the PRIMARY deployment of a service (the emulator
    runs no tasks, so a deployment completes the moment it starts unless a test says otherwise).
    JSON body:

        {"account": "123456789012", "region": "us-east-1",      (defaults)
         "cluster": "name", "service": "name",                  (required)
         "rolloutState": "IN_PROGRESS" | "COMPLETED" | "FAILED", (required)
         "rolloutStateReason": "...",   (default: what ECS says for that state)
         "failedTasks": 2,              (FAILED: tasks that failed to start; default 1)
         "runningCount": 0}             (IN_PROGRESS: tasks running so far; default 0)

    IN_PROGRESS holds the deployment (runningCount of desiredCount). COMPLETED settles it and
    drains the others. FAILED is the deployment circuit breaker tripping, refused (400) unless
    the service's circuit breaker is enabled: with rollback, the failed deployment becomes
    ACTIVE and a new PRIMARY one starts (IN_PROGRESS) with the task definition of the last
    deployment that completed, which the service then runs (ECS Developer Guide, "How the Amazon
    ECS deployment circuit breaker detects failures"); without rollback it stays PRIMARY and
    FAILED. Answers 200 with the service's deployments. GET ?account=&region=&cluster=&service=
    lists them; 404 for an unknown cluster or service."""
    from moto.core.utils import utcnow
    from moto.ecs.models import ecs_backends

    def jsonable(value):
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: jsonable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [jsonable(v) for v in value]
        return value

    if method == "GET":
        request = dict(query)
    elif method == "POST":
        try:
            request = json.loads(body or b"{}")
        except ValueError as e:
            return 400, {"error": f"not JSON: {e}"}
        unknown = set(request) - ECS_DEPLOYMENT_FIELDS
        if unknown:
            return 400, {"error": f"unknown fields {sorted(unknown)}"}
    else:
        return 405, {"error": "use GET or POST"}
    account, region = request.get("account", DEFAULT_ACCOUNT), request.get("region", "us-east-1")
    backend = ecs_backends[account][region]
    cluster, name = str(request.get("cluster", "")).split("/")[-1], str(request.get("service", "")).split("/")[-1]
    service = backend.services.get(f"{cluster}:{name}")
    if service is None or service.status != "ACTIVE":
        return 404, {"error": f"no active service {name!r} in cluster {cluster!r} of {account}/{region}"}
    if method == "GET":
        return 200, jsonable(service.deployments)
    state = request.get("rolloutState")
    primary = ecs_primary(service)
    if primary is None:
        return 400, {"error": f"service {name} has no deployment"}
    now = utcnow()
    primary["updatedAt"] = now
    if state == "IN_PROGRESS":
        running = int(request.get("runningCount", 0))
        primary.update(
            rolloutState="IN_PROGRESS",
            rolloutStateReason=request.get("rolloutStateReason") or f"ECS deployment {primary['id']} in progress.",
            runningCount=running,
            pendingCount=max(service.desired_count - running, 0),
        )
        service.running_count, service.pending_count = running, max(service.desired_count - running, 0)
    elif state == "COMPLETED":
        primary.update(
            rolloutState="COMPLETED",
            rolloutStateReason=request.get("rolloutStateReason") or f"ECS deployment {primary['id']} completed.",
            runningCount=service.desired_count,
            pendingCount=0,
        )
        service.deployments = [primary]
        service.running_count, service.pending_count = service.desired_count, 0
    elif state == "FAILED":
        breaker = (getattr(service, "deployment_configuration", None) or {}).get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable"):
            return 400, {"error": f"the deployment circuit breaker of service {name} is off: ECS keeps trying, a deployment never turns FAILED"}
        primary.update(
            rolloutState="FAILED",
            rolloutStateReason=request.get("rolloutStateReason") or "ECS deployment circuit breaker: tasks failed to start.",
            failedTasks=int(request.get("failedTasks", 1)),
            runningCount=0,
        )
        target = getattr(service, "emulator_rollback_target", None)
        service.events.insert(
            0,
            {
                "id": str(uuid.uuid4()),
                "createdAt": now,
                "message": f"(service {name}) (deployment {primary['id']}) deployment failed: tasks failed to start.",
            },
        )
        if breaker.get("rollback") and target:
            failed_id = primary["id"]
            primary["status"] = "ACTIVE"
            service.task_definition = target
            rollback = ecs_start_deployment(service)
            rollback.update(
                rolloutState="IN_PROGRESS",
                rolloutStateReason=f"ECS deployment circuit breaker: rolling back to deploymentId {rollback['id']}.",
                runningCount=0,
                pendingCount=service.desired_count,
            )
            service.deployments = [rollback, primary]
            service.running_count, service.pending_count = 0, service.desired_count
            log(f"ECS deployment {failed_id} of {name} failed; rolling back to {target}")
    else:
        return 400, {"error": f"rolloutState must be IN_PROGRESS, COMPLETED or FAILED, not {state!r}"}
    return 200, jsonable(service.deployments)


def seed_member_accounts() -> None:
    """Member accounts with a bootstrap role trusted by the default account (what AWS
    Organizations' OrganizationAccountAccessRole provides), so tests can act in them."""
    from moto.iam.models import iam_backends

    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    for account in MEMBER_ACCOUNTS:
        backend = iam_backends[account]["aws"]
        try:
            backend.get_role(BOOTSTRAP_ROLE)
        except Exception:
            backend.create_role(
                role_name=BOOTSTRAP_ROLE,
                assume_role_policy_document=trust,
                path="/",
                permissions_boundary=None,
                description="Test bootstrap role",
                tags=[],
                max_session_duration=None,
            )


def seed_after_reset() -> None:
    """Re-seed after POST /moto-api/reset, which clears every backend."""
    from moto.core.base_backend import BackendDict  # noqa: F401  (import check only)
    from moto.moto_api._internal.models import moto_api_backend

    original_reset = moto_api_backend.reset

    def reset(*args, **kwargs):
        result = original_reset(*args, **kwargs)
        seed_member_accounts()
        return result

    moto_api_backend.reset = reset


def serve(host: str, port: int) -> None:
    """moto_server's own WSGI application and request handler, with the harness in front."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    harness = Harness(app)
    harness.register("/_harness/ecs-deployments", ecs_deployments_endpoint)
    run_simple(host, port, harness, threaded=True, request_handler=MotoRequestHandler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if sys.prefix == sys.base_prefix:
        sys.exit("launcher.py must run in the pinned moto virtualenv (scripts/toolchain builds it)")

    fix_sts_assume_role_evaluates_trust_policy()
    fix_sts_access_denied_status()
    fix_s3_response_root_elements()
    fix_policy_conditions_scope_statements()
    fix_s3_policy_denial_is_access_denied()
    fix_s3_create_bucket_name_taken_by_another_account()
    fix_kms_rotation_period()
    fix_kms_key_state_calls_accept_arns()
    fix_ecr_kms_key_must_exist()
    fix_ecr_repository_policy_principals_must_exist()
    fix_kms_key_policy_principals_must_exist()
    fix_s3_bucket_policy_principals_must_exist()
    fix_sns_topic_policy_principals_must_exist()
    fix_iam_trust_policy_principals_must_exist()
    fix_iam_role_policy_size_quotas()
    fix_ecr_tag_mutability_exclusions_are_wildcards()
    fix_ec2_delete_vpc_refuses_dependencies()
    fix_ec2_associate_route_table_refuses_an_associated_subnet()
    fix_ec2_tags_are_read_per_resource()
    fix_ecs_services_keep_their_configuration_and_deployments()
    fix_ecs_delete_cluster_refuses_active_services()
    fix_ecs_family_resolves_to_the_latest_active_revision()
    seed_member_accounts()
    seed_after_reset()

    print(f"moto {importlib.metadata.version('moto')} with fixes and the harness on {args.host}:{args.port}", flush=True)
    serve(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
