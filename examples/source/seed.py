"""Puts the examples' source in place: what a user of `examples/minimal.yaml` has before
applying it. The S3 source action reads one object of a versioned bucket; S3 sends the bucket's
events to EventBridge, where the pipeline's trigger rule listens.

Run by `scripts/sandbox up` against the emulator (AWS_ENDPOINT_URL set), or by hand against an
account: `python3 examples/source/seed.py` (needs boto3). Idempotent.
"""

import io
import os
import zipfile

import boto3

BUCKET = "hello-source"
KEY = "hello.zip"
HERE = os.path.dirname(os.path.abspath(__file__))


def source_zip() -> bytes:
    """The sample application (examples/source/app) as the zip the source action expects."""
    buffer = io.BytesIO()
    app = os.path.join(HERE, "app")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(app)):
            archive.write(os.path.join(app, name), name)
    return buffer.getvalue()


def main() -> None:
    s3 = boto3.client("s3", region_name=os.environ.get("AWS_REGION", "us-east-1"))
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=source_zip())


if __name__ == "__main__":
    main()
