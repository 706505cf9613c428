"""Starts moto_server with targeted fixes for where moto deviates from AWS.

Every fix cites the AWS behaviour it restores and is listed in docs/testing.md. Fixes only make
moto stricter or more complete; none of them makes the emulator accept something AWS rejects.

Usage: launcher.py --port PORT [--host 127.0.0.1]
"""

import argparse
import importlib.metadata
import json
import os
import sys

import moto
from moto.core.exceptions import ServiceException

# Accounts that exist in every test run, as in an AWS Organization whose member accounts carry a
# bootstrap role the management account may assume. Tests that need "another account" use these.
DEFAULT_ACCOUNT = "123456789012"
MEMBER_ACCOUNTS = ["111111111111", "222222222222", "333333333333"]
BOOTSTRAP_ROLE = "delivery-bootstrap"


class AccessDenied(ServiceException):
    code = "AccessDenied"


def fix_sts_assume_role_requires_role() -> None:
    """AWS: sts:AssumeRole fails with AccessDenied ("User: ... is not authorized to perform:
    sts:AssumeRole on resource: ...") unless the role exists and its trust policy admits the
    caller (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html, Errors).
    moto returns credentials for any ARN, so a misconfigured credentials role would never fail.
    Fix: the role must exist in its account, and an ExternalId required by the trust policy
    must match."""
    from moto.iam.models import iam_backends
    from moto.sts.models import STSBackend

    original = STSBackend.assume_role

    def assume_role(self, region_name, role_session_name, role_arn, policy, duration, external_id):
        parts = role_arn.split(":")
        denied = AccessDenied(
            f"User: arn:aws:sts::{self.account_id}:assumed-role/caller is not authorized to "
            f"perform: sts:AssumeRole on resource: {role_arn}"
        )
        if len(parts) < 6 or not parts[5].startswith("role/"):
            raise denied
        account, partition = parts[4], parts[1]
        try:
            role = iam_backends[account][partition].get_role_by_arn(role_arn)
        except Exception:
            raise denied
        required = _required_external_id(role.assume_role_policy_document)
        if required is not None and required != external_id:
            raise denied
        return original(
            self, region_name, role_session_name, role_arn, policy, duration, external_id
        )

    STSBackend.assume_role = assume_role


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
    does not match denies nothing (IAM User Guide, "Policy evaluation logic"). moto returns
    DENIED for any statement whose condition does not match, so a bucket policy with
    `Deny s3:* when aws:SecureTransport is false` blocks every object call. Fix: a statement
    whose condition does not match is neutral. The emulator listens on plain HTTP only as an
    artefact of the test bed; S3 requests are evaluated as arriving over TLS, as the operator's
    and every SDK's requests do in AWS."""
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult
    from moto.s3.models import FakeBucket

    original = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        condition = self._statement.get("Condition")
        if condition and not _conditions_match(condition, incoming_condition_values or {}):
            return PermissionResult.NEUTRAL
        # The statement applies: let moto evaluate the rest without the condition it mis-reads.
        unconditioned = IAMPolicyStatement({k: v for k, v in self._statement.items() if k != "Condition"})
        return original(unconditioned, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted

    def get_permission(self, action, resource):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        return IAMPolicy(self.policy.decode()).is_action_permitted(
            action, resource, incoming_condition_values={"aws:SecureTransport": "true"}
        )

    FakeBucket.get_permission = get_permission


def _conditions_match(condition, context) -> bool:
    """Evaluates the condition operators the harness needs (Bool, String*, Arn*), as AWS does:
    every operator and key must match; a key absent from the request context does not match."""
    import fnmatch

    for operator, keys in condition.items():
        for key, expected in keys.items():
            expected = expected if isinstance(expected, list) else [expected]
            actual = context.get(key)
            if actual is None:
                return False
            if operator in ("Bool", "StringEqualsIgnoreCase"):
                ok = any(str(actual).lower() == str(e).lower() for e in expected)
            elif operator == "StringEquals":
                ok = any(str(actual) == str(e) for e in expected)
            elif operator == "StringNotEquals":
                ok = all(str(actual) != str(e) for e in expected)
            elif operator in ("StringLike", "ArnLike", "ArnEquals"):
                ok = any(fnmatch.fnmatchcase(str(actual), str(e)) for e in expected)
            else:
                return False
            if not ok:
                return False
    return True


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


def _required_external_id(document) -> "str | None":
    try:
        doc = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return None
    for statement in doc.get("Statement", []):
        condition = statement.get("Condition", {})
        for operator in ("StringEquals", "StringLike"):
            value = condition.get(operator, {}).get("sts:ExternalId")
            if value is not None:
                return value if isinstance(value, str) else value[0]
    return None


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if sys.prefix == sys.base_prefix:
        sys.exit("launcher.py must run in the pinned moto virtualenv (scripts/toolchain builds it)")

    fix_sts_assume_role_requires_role()
    fix_s3_response_root_elements()
    fix_policy_conditions_scope_statements()
    fix_kms_rotation_period()
    fix_kms_key_state_calls_accept_arns()
    seed_member_accounts()
    seed_after_reset()

    from moto.server import main as moto_main

    print(f"moto {importlib.metadata.version('moto')} with fixes on {args.host}:{args.port}", flush=True)
    moto_main(["-H", args.host, "-p", str(args.port)])


if __name__ == "__main__":
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    sys.exit(main())
