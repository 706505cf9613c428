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

    fix_sts_assume_role_requires_role()
    fix_s3_response_root_elements()
    seed_member_accounts()
    seed_after_reset()

    from moto.server import main as moto_main

    print(f"moto {importlib.metadata.version('moto')} with fixes on {args.host}:{args.port}", flush=True)
    moto_main(["-H", args.host, "-p", str(args.port)])


if __name__ == "__main__":
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    sys.exit(main())
