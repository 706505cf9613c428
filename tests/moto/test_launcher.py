"""The harness (launcher.py, emu_*.py) against a running emulator, with boto3, for the services
the Rust test crate has no SDK for: model validation answers each service's own error in its
protocol, role trust policies are evaluated as AWS evaluates them, policy conditions, and the
call record. Run with the moto virtualenv's interpreter against a running sandbox:

    AWS_ENDPOINT_URL=http://127.0.0.1:PORT ~/.cache/delivery-operator/moto-5.2.5/bin/python \\
        -m unittest -v tests/moto/test_launcher.py

(scripts/test does this after the sandbox is up.) The policy-evaluator unit tests need no
emulator.
"""

from __future__ import annotations

import json
import os
import sys
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import emu_authorize  # noqa: E402
import emu_policy  # noqa: E402

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL")
DEFAULT = "123456789012"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def key() -> str:
    return "AKIAPY" + uuid.uuid4().hex[:14].upper()


def client(service: str, access_key: str = "testing", secret: str = "testing", token: str | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        # Client-side validation off: the requests must reach the emulator for it to judge them.
        config=Config(retries={"mode": "standard", "max_attempts": 1}, parameter_validation=False),
    )


def session_client(service: str, creds: dict):
    return client(service, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


def trust(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def records(access_key: str) -> list[dict]:
    with urllib.request.urlopen(f"{ENDPOINT}/_harness/requests?origin_key={access_key}") as r:
        return json.loads(r.read())


class ConditionOperators(unittest.TestCase):
    """emu_policy against the IAM User Guide's condition-operator rules (no emulator needed)."""

    def test_negated_operators_match_an_absent_key(self):
        for op in ("StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike", "StringNotEqualsIgnoreCase", "NumericNotEquals", "NotIpAddress"):
            self.assertTrue(emu_policy.conditions_match({op: {"k": "v"}}, {}), op)
            self.assertFalse(emu_policy.conditions_match({op.replace("Not", "", 1) if op != "NotIpAddress" else "IpAddress": {"k": "v"}}, {}), op)

    def test_negated_operators_with_a_present_key(self):
        self.assertFalse(emu_policy.conditions_match({"StringNotEquals": {"k": ["a", "b"]}}, {"k": "b"}))
        self.assertTrue(emu_policy.conditions_match({"StringNotEquals": {"k": ["a", "b"]}}, {"k": "c"}))
        self.assertFalse(emu_policy.conditions_match({"ArnNotLike": {"k": "arn:aws:iam::*:role/x"}}, {"k": "arn:aws:iam::111111111111:role/x"}))

    def test_if_exists_and_null(self):
        self.assertTrue(emu_policy.conditions_match({"StringEqualsIfExists": {"k": "v"}}, {}))
        self.assertFalse(emu_policy.conditions_match({"StringEqualsIfExists": {"k": "v"}}, {"k": "w"}))
        self.assertTrue(emu_policy.conditions_match({"Null": {"k": "true"}}, {}))
        self.assertFalse(emu_policy.conditions_match({"Null": {"k": "true"}}, {"k": "x"}))
        self.assertTrue(emu_policy.conditions_match({"Null": {"k": "false"}}, {"k": "x"}))

    def test_like_uses_only_star_and_question_mark(self):
        self.assertTrue(emu_policy.conditions_match({"StringLike": {"k": "a*c?"}}, {"k": "abbbcd"}))
        self.assertFalse(emu_policy.conditions_match({"StringLike": {"k": "[a]"}}, {"k": "a"}))
        self.assertTrue(emu_policy.conditions_match({"ArnLike": {"k": "arn:aws:iam::*:role/*"}}, {"k": "arn:aws:iam::1:role/r"}))
        self.assertFalse(emu_policy.conditions_match({"ArnLike": {"k": "arn:aws:iam::*:role/*"}}, {"k": "arn:aws:sts::1:assumed-role/r"}))

    def test_set_operators(self):
        self.assertTrue(emu_policy.conditions_match({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a"]}))
        self.assertFalse(emu_policy.conditions_match({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["a", "c"]}))
        self.assertTrue(emu_policy.conditions_match({"ForAnyValue:StringEquals": {"aws:TagKeys": ["c"]}}, {"aws:TagKeys": ["a", "c"]}))
        self.assertFalse(emu_policy.conditions_match({"ForAnyValue:StringEquals": {"aws:TagKeys": ["c"]}}, {}))

    def test_unknown_operators_raise(self):
        for op in ("StringEqualz", "Maybe:StringEquals", "NullIfExists"):
            with self.assertRaises(emu_policy.UnsupportedPolicy, msg=op):
                emu_policy.conditions_match({op: {"k": "v"}}, {"k": "v"})

    def test_explicit_deny_wins(self):
        caller = emu_policy.Caller(DEFAULT, f"arn:aws:iam::{DEFAULT}:root")
        doc = {
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole"},
                {"Effect": "Deny", "Principal": "*", "Action": "sts:*", "Condition": {"StringNotEquals": {"aws:PrincipalAccount": "999999999999"}}},
            ]
        }
        allowed, reason = emu_policy.evaluate(doc, caller, ["sts:AssumeRole"], caller.context(), with_principal=True)
        self.assertFalse(allowed, reason)


    def test_resource_and_not_resource_decide_which_statements_apply(self):
        # IAM JSON policy elements: Resource / NotResource. A topic policy granting one topic
        # grants no other; NotResource excludes; a Deny on another resource does not apply.
        caller = emu_policy.ServiceCaller("events.amazonaws.com", DEFAULT, f"arn:aws:events:us-east-1:{DEFAULT}:rule/r")
        topic = f"arn:aws:sns:us-east-1:{DEFAULT}:alerts"
        other = f"arn:aws:sns:us-east-1:{DEFAULT}:other"
        doc = {"Statement": [
            {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": topic},
            {"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": other},
        ]}
        publish = lambda resource: emu_policy.evaluate(doc, caller, ["sns:Publish"], caller.context(), with_principal=True, resource=resource)
        self.assertTrue(publish(topic)[0])
        allowed, reason = publish(f"arn:aws:sns:us-east-1:{DEFAULT}:third")
        self.assertFalse(allowed)
        self.assertIn("no statement allows", reason)
        self.assertIn("explicit Deny", publish(other)[1])
        excluded = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sns:Publish", "NotResource": other}]}
        allow = lambda resource: emu_policy.evaluate(excluded, caller, ["sns:Publish"], caller.context(), with_principal=True, resource=resource)[0]
        self.assertTrue(allow(topic))
        self.assertFalse(allow(other))
        with self.assertRaises(emu_policy.UnsupportedPolicy):
            emu_policy.evaluate({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sns:Publish"}]},
                                caller, ["sns:Publish"], caller.context(), with_principal=True, resource=topic)


def document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class RunAuthorization(unittest.TestCase):
    """emu_authorize.decide_with against IAM's evaluation rules (IAM User Guide, "Policy
    evaluation logic", "Cross-account policy evaluation logic"; KMS Developer Guide, "Key
    policies"); no emulator needed."""

    BUCKET_OBJECT = "arn:aws:s3:::artifacts/p/a/1"

    def caller(self, account: str = "111111111111") -> emu_policy.Caller:
        return emu_policy.Caller(account, f"arn:aws:sts::{account}:assumed-role/deploy/s", f"arn:aws:iam::{account}:role/deploy", "AROAX:s")

    def need(self, action="s3:GetObject", resource=BUCKET_OBJECT, account="111111111111", policy=None, kind=""):
        return emu_authorize.Requirement(action, resource, account, policy, kind=kind)

    def decide(self, need, identity=(), boundary=None, caller=None):
        return emu_authorize.decide_with(caller or self.caller(), need, {"aws:SecureTransport": "true"}, list(identity), boundary)

    def allow(self, action="s3:GetObject", resource="*", **extra) -> dict:
        return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}

    def test_same_account_identity_or_resource_policy(self):
        self.assertEqual(self.decide(self.need(), [document(self.allow())]), (True, "allowed"))
        allowed, reason = self.decide(self.need(), [document(self.allow("s3:PutObject"))])
        self.assertFalse(allowed)
        self.assertEqual(reason, "because no identity-based policy allows the action")
        by_bucket = document(self.allow(Principal={"AWS": "arn:aws:iam::111111111111:role/deploy"}))
        self.assertTrue(self.decide(self.need(policy=by_bucket))[0])

    def test_explicit_deny_wins_and_principal_is_honoured(self):
        deny_me = document({"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111111111111:role/deploy"}, "Action": "s3:*", "Resource": "*"})
        allowed, reason = self.decide(self.need(policy=deny_me), [document(self.allow())])
        self.assertFalse(allowed)
        self.assertTrue(reason.startswith("with an explicit deny in a resource-based policy"), reason)
        deny_other = document({"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111111111111:role/other"}, "Action": "s3:*", "Resource": "*"})
        self.assertTrue(self.decide(self.need(policy=deny_other), [document(self.allow())])[0])
        deny_all_but_me = document({"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111111111111:role/deploy"}, "Action": "s3:*", "Resource": "*"})
        self.assertTrue(self.decide(self.need(policy=deny_all_but_me), [document(self.allow())])[0])
        identity_deny = document(self.allow(), {"Effect": "Deny", "Action": "s3:Get*", "Resource": "*"})
        self.assertFalse(self.decide(self.need(), [identity_deny])[0])

    def test_resource_and_not_resource(self):
        self.assertFalse(self.decide(self.need(), [document(self.allow(resource="arn:aws:s3:::other/*"))])[0])
        self.assertTrue(self.decide(self.need(), [document(self.allow(resource="arn:aws:s3:::artifacts/*"))])[0])
        not_resource = document({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::artifacts/*"})
        self.assertFalse(self.decide(self.need(), [not_resource])[0])

    def test_cross_account_needs_both_sides(self):
        need = lambda policy: self.need(account="123456789012", policy=policy)  # noqa: E731
        bucket = document(self.allow(Principal={"AWS": "arn:aws:iam::111111111111:role/deploy"}))
        self.assertEqual(self.decide(need(bucket), [])[1], "because no identity-based policy allows the action")
        self.assertEqual(self.decide(need(None), [document(self.allow())])[1], "because no resource-based policy allows the action")
        self.assertTrue(self.decide(need(bucket), [document(self.allow())])[0])

    def test_a_permissions_boundary_limits_what_identity_policies_allow(self):
        boundary = document(self.allow("s3:PutObject"))
        allowed, reason = self.decide(self.need(), [document(self.allow())], boundary)
        self.assertFalse(allowed)
        self.assertEqual(reason, "because no permissions boundary allows the action")
        self.assertTrue(self.decide(self.need(), [document(self.allow())], document(self.allow("s3:*")))[0])

    def test_a_key_is_reached_through_its_key_policy(self):
        key = "arn:aws:kms:us-east-1:111111111111:key/k"
        need = lambda policy, account="111111111111": self.need("kms:Decrypt", key, account, policy, "kms")  # noqa: E731
        names_account = document(self.allow("kms:*", Principal={"AWS": "arn:aws:iam::111111111111:root"}))
        names_role = document(self.allow("kms:Decrypt", Principal={"AWS": "arn:aws:iam::111111111111:role/deploy"}))
        use_key = document(self.allow("kms:Decrypt", key))
        # The account in the key policy delegates to IAM: the identity policy must allow too.
        self.assertFalse(self.decide(need(names_account))[0])
        self.assertTrue(self.decide(need(names_account), [use_key])[0])
        # Naming the role allows on its own within the account; an IAM allow alone never does.
        self.assertTrue(self.decide(need(names_role))[0])
        self.assertFalse(self.decide(need(document(self.allow("kms:*", Principal={"AWS": "arn:aws:iam::222222222222:root"}))), [use_key])[0])
        self.assertFalse(self.decide(need(None), [use_key])[0])
        # Another account's key: the key policy naming the role and the identity policy.
        other_key = lambda policy: self.need("kms:Decrypt", key.replace("111111111111", "123456789012"), "123456789012", policy, "kms")  # noqa: E731
        self.assertFalse(self.decide(other_key(names_role))[0])
        self.assertTrue(self.decide(other_key(names_role), [document(self.allow("kms:Decrypt"))])[0])

    def test_a_repository_policy_without_resource_is_about_its_repository(self):
        repository = "arn:aws:ecr:us-east-1:123456789012:repository/app"
        pull = document({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:role/deploy"}, "Action": ["ecr:BatchGetImage"]})
        need = self.need("ecr:BatchGetImage", repository, "123456789012", pull)
        self.assertTrue(self.decide(need, [document(self.allow("ecr:BatchGetImage", repository))])[0])


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class ModelValidation(unittest.TestCase):
    """A request outside the service model gets the service's own error; one at the limits passes."""

    def assertRejected(self, call, code, member, status=400):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as ctx:
            call()
        error = ctx.exception.response["Error"]
        self.assertEqual(error["Code"], code, ctx.exception.response)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], status)
        if member:
            self.assertIn(f"'{member}'", error.get("Message", ""), error)

    def test_a_request_that_does_not_parse_is_refused_not_served(self):
        # AWS reads a request before acting on it: a JSON-protocol body that is not JSON is a
        # SerializationException, a query string naming no operation is InvalidAction.
        import urllib.error

        auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0"
        request = urllib.request.Request(
            ENDPOINT + "/", data=b"{not json", method="POST",
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.CreateKey", "Authorization": auth},
        )
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(request)
        self.assertEqual(ctx.exception.code, 400)
        self.assertEqual(json.loads(ctx.exception.read())["__type"], "SerializationException")
        kms = client("kms")
        self.assertEqual(
            [k for k in kms.list_keys()["Keys"] if k["KeyId"] == "not-made"], [],
        )

    def test_iam(self):
        iam = client("iam")
        doc = trust([{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole"}])
        self.assertRejected(lambda: iam.create_role(RoleName="r" * 65, AssumeRolePolicyDocument=doc), "ValidationError", "roleName")
        self.assertRejected(lambda: iam.create_role(RoleName="has space", AssumeRolePolicyDocument=doc), "ValidationError", "roleName")
        self.assertRejected(lambda: iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=doc, MaxSessionDuration=3599), "ValidationError", "maxSessionDuration")
        # Java's \w is ASCII: a name with a non-ASCII letter breaks IAM's [\w+=,.@-]+ pattern.
        self.assertRejected(lambda: iam.create_role(RoleName="rôle-" + unique("r"), AssumeRolePolicyDocument=doc), "ValidationError", "roleName")
        name = unique("r") + "+=,.@_-"
        name = name + "x" * (64 - len(name))
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc, MaxSessionDuration=43200)
        iam.delete_role(RoleName=name)

    def test_ecr(self):
        ecr = client("ecr")
        self.assertRejected(lambda: ecr.create_repository(repositoryName="UPPER"), "ValidationException", "repositoryName")
        self.assertRejected(lambda: ecr.create_repository(repositoryName="a" * 257), "ValidationException", "repositoryName")
        name = unique("ns") + "/" + "a" * 200
        ecr.create_repository(repositoryName=name)
        ecr.delete_repository(repositoryName=name)

    def test_ecs(self):
        ecs = client("ecs")
        self.assertRejected(
            lambda: ecs.create_cluster(clusterName=unique("c"), tags=[{"key": "k" * 129, "value": "v"}]),
            "InvalidParameterException",
            "tags.1.member.key",
        )
        self.assertRejected(
            lambda: ecs.register_task_definition(family=unique("f"), containerDefinitions=[], networkMode="bridgy"),
            "InvalidParameterException",
            "networkMode",
        )
        ecs.create_cluster(clusterName=unique("c"), tags=[{"key": "k" * 128, "value": "v" * 256}])

    def test_codebuild(self):
        codebuild = client("codebuild")
        base = dict(
            source={"type": "CODEPIPELINE"},
            artifacts={"type": "CODEPIPELINE"},
            environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0", "computeType": "BUILD_GENERAL1_SMALL"},
            serviceRole=f"arn:aws:iam::{DEFAULT}:role/build",
        )
        self.assertRejected(lambda: codebuild.create_project(name="-bad", **base), "ValidationException", "name")
        self.assertRejected(lambda: codebuild.create_project(name=unique("p"), timeoutInMinutes=4, **base), "ValidationException", "timeoutInMinutes")

    def test_codepipeline(self):
        codepipeline = client("codepipeline")
        self.assertRejected(lambda: codepipeline.get_pipeline_state(name="has space"), "ValidationException", "name")
        self.assertRejected(lambda: codepipeline.get_pipeline(name="p" * 101), "ValidationException", "name")

    def test_logs(self):
        logs = client("logs")
        self.assertRejected(lambda: logs.create_log_group(logGroupName="has space"), "ValidationException", "logGroupName")
        self.assertRejected(lambda: logs.create_log_group(logGroupName="/x" * 257), "ValidationException", "logGroupName")
        name = "/" + unique("g") + "/" + "a" * 400
        logs.create_log_group(logGroupName=name, tags={"k": "v"})
        logs.put_retention_policy(logGroupName=name, retentionInDays=30)

    def test_sns(self):
        sns = client("sns")
        self.assertRejected(lambda: sns.create_topic(Name=unique("t"), Tags=[{"Key": "k" * 129, "Value": "v"}]), "InvalidParameter", "tags.1.member.key")
        sns.create_topic(Name=unique("t"), Tags=[{"Key": "k" * 128, "Value": "v" * 256}])

    def test_eventbridge(self):
        events = client("events")
        self.assertRejected(lambda: events.put_rule(Name="r" * 65, EventPattern="{}"), "ValidationException", "name")
        self.assertRejected(lambda: events.put_rule(Name=unique("r"), EventPattern="{}", State="ON"), "ValidationException", "state")
        rule = unique("r")
        rule = rule + "x" * (64 - len(rule))
        events.put_rule(Name=rule, EventPattern='{"source":["aws.codepipeline"]}', State="ENABLED")
        self.assertRejected(lambda: events.put_targets(Rule=rule, Targets=[]), "ValidationException", "targets")

    def test_cloudwatch(self):
        cloudwatch = client("cloudwatch")
        alarm = dict(MetricName="m", Namespace="n", Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
        self.assertRejected(lambda: cloudwatch.put_metric_alarm(AlarmName="a" * 256, **alarm), "ValidationError", "alarmName")
        self.assertRejected(lambda: cloudwatch.put_metric_alarm(AlarmName=unique("a"), AlarmActions=["arn:x"] * 6, **alarm), "ValidationError", "alarmActions")
        cloudwatch.put_metric_alarm(AlarmName="a" * 255, AlarmActions=["arn:aws:sns:us-east-1:123456789012:t"] * 5, **alarm)

    def test_ec2(self):
        ec2 = client("ec2")
        self.assertRejected(lambda: ec2.create_vpc(CidrBlock="10.0.0.0/16", InstanceTenancy="shared-ish"), "InvalidParameterValue", None)
        ec2.create_vpc(CidrBlock="10.0.0.0/16", InstanceTenancy="default")


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class AssumeRole(unittest.TestCase):
    """sts:AssumeRole evaluates the trust policy against the caller, as AWS does."""

    def role(self, account_client, statements, name=None):
        name = name or unique("role")
        arn = account_client.create_role(RoleName=name, AssumeRolePolicyDocument=trust(statements))["Role"]["Arn"]
        return arn

    def member(self, account):
        creds = client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/delivery-bootstrap", RoleSessionName="session")["Credentials"]
        return creds

    def test_trusted_caller_succeeds_and_uses_the_session(self):
        iam = client("iam")
        arn = self.role(iam, [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT}:root"}, "Action": "sts:AssumeRole"}])
        creds = client("sts").assume_role(RoleArn=arn, RoleSessionName="session")["Credentials"]
        who = session_client("sts", creds).get_caller_identity()
        self.assertEqual(who["Arn"], f"arn:aws:sts::{DEFAULT}:assumed-role/{arn.split('/')[-1]}/session")

    def test_untrusted_account_is_denied(self):
        # A role in 111111111111 that trusts only 222222222222.
        iam_111 = session_client("iam", self.member("111111111111"))
        arn = self.role(iam_111, [{"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "sts:AssumeRole"}])
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as ctx:
            client("sts").assume_role(RoleArn=arn, RoleSessionName="session")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "AccessDenied")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        # ... and 222222222222 may.
        creds = session_client("sts", self.member("222222222222")).assume_role(RoleArn=arn, RoleSessionName="session")["Credentials"]
        self.assertEqual(session_client("sts", creds).get_caller_identity()["Account"], "111111111111")

    def test_external_id_must_match(self):
        from botocore.exceptions import ClientError

        iam = client("iam")
        arn = self.role(iam, [{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "expected-id"}}}])
        for kwargs in ({}, {"ExternalId": "wrong-id-1"}):
            with self.assertRaises(ClientError, msg=str(kwargs)) as ctx:
                client("sts").assume_role(RoleArn=arn, RoleSessionName="session", **kwargs)
            self.assertEqual(ctx.exception.response["Error"]["Code"], "AccessDenied")
        client("sts").assume_role(RoleArn=arn, RoleSessionName="session", ExternalId="expected-id")

    def test_session_tags_need_sts_tag_session(self):
        from botocore.exceptions import ClientError

        iam = client("iam")
        arn = self.role(iam, [{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole"}])
        with self.assertRaises(ClientError) as ctx:
            client("sts").assume_role(RoleArn=arn, RoleSessionName="session", Tags=[{"Key": "team", "Value": "a"}])
        self.assertEqual(ctx.exception.response["Error"]["Code"], "AccessDenied")
        arn = self.role(iam, [{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": ["sts:AssumeRole", "sts:TagSession"]}])
        client("sts").assume_role(RoleArn=arn, RoleSessionName="session", Tags=[{"Key": "team", "Value": "a"}])

    def test_explicit_deny_wins_and_conditions_on_the_principal(self):
        from botocore.exceptions import ClientError

        iam = client("iam")
        arn = self.role(
            iam,
            [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:PrincipalAccount": [DEFAULT, "111111111111"]}}},
                {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole", "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111111111111:role/*"}}},
            ],
        )
        client("sts").assume_role(RoleArn=arn, RoleSessionName="session")
        with self.assertRaises(ClientError) as ctx:
            session_client("sts", self.member("111111111111")).assume_role(RoleArn=arn, RoleSessionName="session")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "AccessDenied")
        with self.assertRaises(ClientError):
            session_client("sts", self.member("222222222222")).assume_role(RoleArn=arn, RoleSessionName="session")

    def test_role_chaining_lands_in_the_right_account(self):
        # management -> 111111111111 bootstrap -> a role in 222222222222 that trusts
        # 111111111111's bootstrap role (by role ARN) -> the caller is in 222222222222.
        iam_222 = session_client("iam", self.member("222222222222"))
        arn = self.role(iam_222, [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:role/delivery-bootstrap"}, "Action": "sts:AssumeRole"}])
        first = self.member("111111111111")
        second = session_client("sts", first).assume_role(RoleArn=arn, RoleSessionName="chained")["Credentials"]
        who = session_client("sts", second).get_caller_identity()
        self.assertEqual(who["Account"], "222222222222")
        self.assertTrue(who["Arn"].endswith(f"assumed-role/{arn.split('/')[-1]}/chained"), who)
        # The management account itself is not that role.
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError):
            client("sts").assume_role(RoleArn=arn, RoleSessionName="session")


def image_manifest(size: int) -> str:
    """A minimal Docker image manifest; `size` makes distinct manifests."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": size, "digest": "sha256:" + "a" * 64},
            "layers": [],
        }
    )


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class Ecr(unittest.TestCase):
    """The ECR fixes: the KMS key of an encrypted repository must be usable, repository-policy
    principals must exist, and tag-mutability exclusion filters are whole-tag wildcards."""

    def assertCode(self, call, code):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as ctx:
            call()
        self.assertEqual(ctx.exception.response["Error"]["Code"], code, ctx.exception.response)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        return ctx.exception.response["Error"].get("Message", "")

    def test_a_kms_key_that_cannot_be_used_is_a_kms_exception(self):
        ecr, kms = client("ecr"), client("kms")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        kms_config = lambda k: {"encryptionType": "KMS", "kmsKey": k}  # noqa: E731
        missing = f"arn:aws:kms:us-east-1:{DEFAULT}:key/00000000-0000-0000-0000-000000000000"
        self.assertCode(lambda: ecr.create_repository(repositoryName=unique("r"), encryptionConfiguration=kms_config(missing)), "KmsException")
        other_region = key.replace(":us-east-1:", ":eu-west-1:")
        self.assertCode(lambda: ecr.create_repository(repositoryName=unique("r"), encryptionConfiguration=kms_config(other_region)), "KmsException")
        kms.disable_key(KeyId=key)
        self.assertCode(lambda: ecr.create_repository(repositoryName=unique("r"), encryptionConfiguration=kms_config(key)), "KmsException")
        kms.enable_key(KeyId=key)
        repo = ecr.create_repository(repositoryName=unique("r"), encryptionConfiguration=kms_config(key))["repository"]
        self.assertEqual(repo["encryptionConfiguration"], {"encryptionType": "KMS", "kmsKey": key})
        # Without a key ECR uses its AWS managed key; AES256 needs none.
        ecr.create_repository(repositoryName=unique("r"), encryptionConfiguration={"encryptionType": "KMS"})
        ecr.create_repository(repositoryName=unique("r"), encryptionConfiguration={"encryptionType": "AES256"})

    def test_repository_policy_principals_must_exist(self):
        ecr, iam = client("ecr"), client("iam")
        name = unique("r")
        ecr.create_repository(repositoryName=name)
        policy = lambda principal: json.dumps(  # noqa: E731
            {"Version": "2012-10-17", "Statement": [{"Sid": "Pull", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}
        )
        role = unique("puller")
        message = self.assertCode(lambda: ecr.set_repository_policy(repositoryName=name, policyText=policy([f"arn:aws:iam::{DEFAULT}:role/{role}"])), "InvalidParameterException")
        self.assertIn("Principal not found", message)
        self.assertCode(lambda: ecr.set_repository_policy(repositoryName=name, policyText=policy("arn:aws:iam::222222222222:role/" + role)), "InvalidParameterException")
        self.assertCode(lambda: ecr.get_repository_policy(repositoryName=name), "RepositoryPolicyNotFoundException")
        # Once the role exists (with a path, in another account too) the policy is accepted.
        arn = iam.create_role(RoleName=role, Path="/delivery/", AssumeRolePolicyDocument=trust([]))["Role"]["Arn"]
        ecr.set_repository_policy(repositoryName=name, policyText=policy([arn, "arn:aws:iam::222222222222:role/delivery-bootstrap"]))
        # Accounts, account roots and "*" are not looked up.
        ecr.set_repository_policy(repositoryName=name, policyText=policy(["222222222222", "arn:aws:iam::333333333333:root"]))
        ecr.set_repository_policy(repositoryName=name, policyText=policy("*"))

    def test_exclusion_filters_are_whole_tag_wildcards(self):
        ecr = client("ecr")
        name = unique("r")
        ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
            imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}, {"filterType": "WILDCARD", "filter": "*-dev"}],
        )
        for tag in ("latest", "feature-dev"):
            ecr.put_image(repositoryName=name, imageManifest=image_manifest(1), imageTag=tag)
            ecr.put_image(repositoryName=name, imageManifest=image_manifest(2), imageTag=tag)
        for tag in ("v1", "latest-rc", "dev"):
            ecr.put_image(repositoryName=name, imageManifest=image_manifest(1), imageTag=tag)
            self.assertCode(lambda: ecr.put_image(repositoryName=name, imageManifest=image_manifest(2), imageTag=tag), "ImageTagAlreadyExistsException")
        # The same manifest under its own tag is "already exists", as in AWS.
        self.assertCode(lambda: ecr.put_image(repositoryName=name, imageManifest=image_manifest(1), imageTag="v1"), "ImageAlreadyExistsException")
        # MUTABLE_WITH_EXCLUSION: only the excluded tags are immutable.
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE_WITH_EXCLUSION", imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}])
        ecr.put_image(repositoryName=name, imageManifest=image_manifest(3), imageTag="v1")
        ecr.put_image(repositoryName=name, imageManifest=image_manifest(1), imageTag="release-1")
        self.assertCode(lambda: ecr.put_image(repositoryName=name, imageManifest=image_manifest(2), imageTag="release-1"), "ImageTagAlreadyExistsException")

    def test_force_delete_removes_a_repository_with_images(self):
        ecr = client("ecr")
        name = unique("r")
        ecr.create_repository(repositoryName=name)
        ecr.put_image(repositoryName=name, imageManifest=image_manifest(1), imageTag="v1")
        self.assertCode(lambda: ecr.delete_repository(repositoryName=name), "RepositoryNotEmptyException")
        ecr.delete_repository(repositoryName=name, force=True)
        self.assertCode(lambda: ecr.describe_repositories(repositoryNames=[name]), "RepositoryNotFoundException")


def allow(principal, action: str, resource: str = "*", **extra) -> str:
    """A resource policy with one Allow statement for an AWS principal (an ARN or a list)."""
    statement = {"Sid": "Grant", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": action, "Resource": resource, **extra}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def member_session(account: str) -> dict:
    return client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/delivery-bootstrap", RoleSessionName="session")["Credentials"]


class ServiceErrors:
    def assertError(self, call, code, status=400):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as ctx:
            call()
        self.assertEqual(ctx.exception.response["Error"]["Code"], code, ctx.exception.response)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], status, ctx.exception.response)
        return ctx.exception.response["Error"].get("Message", "")


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class PolicyPrincipals(ServiceErrors, unittest.TestCase):
    """A key, bucket, topic or trust policy naming an IAM role or user that does not exist is
    refused with the service's own error; once the role or user exists, in the account its ARN
    names, the same request succeeds. Accounts, roots and "*" are not looked up."""

    def missing_role(self, account: str = DEFAULT) -> tuple[str, str]:
        name = unique("grantee")
        return name, f"arn:aws:iam::{account}:role/{name}"

    def test_kms_create_key_and_put_key_policy(self):
        kms, iam = client("kms"), client("iam")
        name, arn = self.missing_role()
        policy = allow([f"arn:aws:iam::{DEFAULT}:root", arn], "kms:*")
        message = self.assertError(lambda: kms.create_key(Policy=policy), "MalformedPolicyDocumentException")
        self.assertEqual(message, "Policy contains a statement with one or more invalid principals.")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        self.assertError(lambda: kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy), "MalformedPolicyDocumentException")
        self.assertNotIn(arn, kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        kms.create_key(Policy=policy)
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy)
        self.assertIn(arn, kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        # The ARN's account decides: a role of that name in the default account does not make
        # 222222222222's exist; 222222222222's own bootstrap role does.
        other = f"arn:aws:iam::222222222222:role/{name}"
        self.assertError(lambda: kms.put_key_policy(KeyId=key, PolicyName="default", Policy=allow(other, "kms:*")), "MalformedPolicyDocumentException")
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=allow(["222222222222", "arn:aws:iam::222222222222:role/delivery-bootstrap"], "kms:*"))

    def test_s3_put_bucket_policy(self):
        s3, iam = client("s3"), client("iam")
        bucket = unique("bucket")
        s3.create_bucket(Bucket=bucket)
        name, arn = self.missing_role()
        user = unique("user")
        user_arn = f"arn:aws:iam::{DEFAULT}:user/{user}"
        policy = lambda principal: allow(principal, "s3:GetObject", f"arn:aws:s3:::{bucket}/*")  # noqa: E731
        message = self.assertError(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=policy(arn)), "MalformedPolicy")
        self.assertEqual(message, "Invalid principal in policy")
        self.assertError(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=policy(user_arn)), "MalformedPolicy")
        self.assertError(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        iam.create_user(UserName=user)
        s3.put_bucket_policy(Bucket=bucket, Policy=policy([arn, user_arn, "*", f"arn:aws:iam::{DEFAULT}:root"]))
        self.assertIn(arn, s3.get_bucket_policy(Bucket=bucket)["Policy"])

    def test_iam_create_role_and_update_assume_role_policy(self):
        iam = client("iam")
        name, arn = self.missing_role("111111111111")
        statement = {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "sts:AssumeRole"}
        trusting = unique("trusting")
        message = self.assertError(lambda: iam.create_role(RoleName=trusting, AssumeRolePolicyDocument=trust([statement])), "MalformedPolicyDocument")
        self.assertEqual(message, f'Invalid principal in policy: "AWS":"{arn}"')
        self.assertError(lambda: iam.get_role(RoleName=trusting), "NoSuchEntity", 404)
        iam.create_role(RoleName=trusting, AssumeRolePolicyDocument=trust([{"Effect": "Allow", "Principal": {"AWS": "111111111111"}, "Action": "sts:AssumeRole"}]))
        self.assertError(lambda: iam.update_assume_role_policy(RoleName=trusting, PolicyDocument=trust([statement])), "MalformedPolicyDocument")
        # The same name in the default account is another role.
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        self.assertError(lambda: iam.update_assume_role_policy(RoleName=trusting, PolicyDocument=trust([statement])), "MalformedPolicyDocument")
        session_client("iam", member_session("111111111111")).create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        iam.update_assume_role_policy(RoleName=trusting, PolicyDocument=trust([statement]))
        iam.create_role(RoleName=unique("trusting"), AssumeRolePolicyDocument=trust([statement]))

    def test_sns_create_topic_and_set_topic_attributes(self):
        sns, iam = client("sns"), client("iam")
        name, arn = self.missing_role()
        topic = unique("topic")
        policy = allow(arn, "sns:Publish", f"arn:aws:sns:us-east-1:{DEFAULT}:{topic}")
        message = self.assertError(lambda: sns.create_topic(Name=topic, Attributes={"Policy": policy}), "InvalidParameter")
        self.assertEqual(message, "Invalid parameter: Policy Error: PrincipalNotFound")
        topic_arn = sns.create_topic(Name=topic)["TopicArn"]
        self.assertError(lambda: sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy), "InvalidParameter")
        self.assertNotIn(arn, sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]["Policy"])
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy)
        self.assertIn(arn, sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]["Policy"])
        sns.create_topic(Name=unique("topic"), Attributes={"Policy": policy})


def without_white_space(document: str) -> int:
    return len("".join(document.split()))


def document_of_size(size: int, build) -> str:
    """build(pad) rendered with `pad` grown so the document is `size` characters without white
    space (and, indented, far longer with it)."""
    base = without_white_space(build(""))
    assert size >= base, f"the smallest such document is {base} characters"
    document = build("x" * (size - base))
    assert without_white_space(document) == size
    return document


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class IamRoleQuotas(ServiceErrors, unittest.TestCase):
    """IAM's character quotas for a role (white space not counted) and its DeleteConflict."""

    def trust_of_size(self, size: int) -> str:
        return document_of_size(
            size,
            lambda pad: json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": pad}}}]},
                indent=8,
            ),
        )

    def inline_of_size(self, size: int) -> str:
        return document_of_size(
            size,
            lambda pad: json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{pad}"}]}, indent=8),
        )

    def test_trust_policy_at_most_2048_characters(self):
        iam = client("iam")
        at_quota, over = self.trust_of_size(2048), self.trust_of_size(2049)
        self.assertGreater(len(at_quota), 2048)  # white space is not counted
        name = unique("r")
        message = self.assertError(lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=over), "LimitExceeded", 409)
        self.assertEqual(message, "Cannot exceed quota for ACLSizePerRole: 2048")
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=at_quota)
        self.assertError(lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument=over), "LimitExceeded", 409)
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=at_quota)

    def test_inline_policies_of_a_role_at_most_10240_characters_together(self):
        iam = client("iam")
        name = unique("r")
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        iam.put_role_policy(RoleName=name, PolicyName="a", PolicyDocument=self.inline_of_size(6000))
        iam.put_role_policy(RoleName=name, PolicyName="b", PolicyDocument=self.inline_of_size(4240))
        message = self.assertError(lambda: iam.put_role_policy(RoleName=name, PolicyName="c", PolicyDocument=self.inline_of_size(200)), "LimitExceeded", 409)
        self.assertEqual(message, f"Maximum policy size of 10240 bytes exceeded for role {name}")
        # Replacing a policy counts its new document instead of the old one.
        iam.put_role_policy(RoleName=name, PolicyName="b", PolicyDocument=self.inline_of_size(4240))
        self.assertError(lambda: iam.put_role_policy(RoleName=name, PolicyName="b", PolicyDocument=self.inline_of_size(4241)), "LimitExceeded", 409)
        iam.delete_role_policy(RoleName=name, PolicyName="b")
        iam.put_role_policy(RoleName=name, PolicyName="c", PolicyDocument=self.inline_of_size(200))
        self.assertEqual(sorted(iam.list_role_policies(RoleName=name)["PolicyNames"]), ["a", "c"])

    def test_delete_role_with_policies_is_a_delete_conflict(self):
        # moto enforces this itself; asserted so that a moto upgrade that loses it is noticed.
        iam = client("iam")
        name = unique("r")
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust([]))
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=self.inline_of_size(200))
        message = self.assertError(lambda: iam.delete_role(RoleName=name), "DeleteConflict", 409)
        self.assertEqual(message, "Cannot delete entity, must delete policies first.")
        iam.delete_role_policy(RoleName=name, PolicyName="inline")
        policy_arn = iam.create_policy(PolicyName=unique("p"), PolicyDocument=self.inline_of_size(200))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
        message = self.assertError(lambda: iam.delete_role(RoleName=name), "DeleteConflict", 409)
        self.assertEqual(message, "Cannot delete entity, must detach all policies first.")
        iam.detach_role_policy(RoleName=name, PolicyArn=policy_arn)
        iam.delete_role(RoleName=name)


def codebuild_trust(account: str, project_arn: str) -> str:
    """The trust policy of a CodeBuild service role, scoped to one project (confused deputy)."""
    return trust(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": "codebuild.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": project_arn}},
            }
        ]
    )


def project_arn(name: str, account: str = DEFAULT) -> str:
    return f"arn:aws:codebuild:us-east-1:{account}:project/{name}"


BUILDSPEC = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo build\n"


def pipeline_project(name: str, role_arn: str, key_arn: str) -> dict:
    """A CodeBuild project as the operator creates it for a pipeline stage."""
    return dict(
        name=name,
        description=f"Build stage of {name}",
        source={"type": "CODEPIPELINE", "buildspec": BUILDSPEC},
        artifacts={"type": "CODEPIPELINE"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "privilegedMode": True,
            "imagePullCredentialsType": "CODEBUILD",
            "environmentVariables": [{"name": "IMAGE_REPO", "value": "repo", "type": "PLAINTEXT"}],
        },
        serviceRole=role_arn,
        timeoutInMinutes=2160,
        queuedTimeoutInMinutes=5,
        encryptionKey=key_arn,
        logsConfig={"cloudWatchLogs": {"status": "ENABLED", "groupName": f"/delivery/{name}", "streamName": "build"}, "s3Logs": {"status": "DISABLED"}},
        tags=[{"key": "delivery.example.com/pipeline", "value": name}],
    )


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class CodeBuild(ServiceErrors, unittest.TestCase):
    """CodeBuild projects and report groups as AWS serves them: a pipeline project needs no source
    location, every field reads back, UpdateProject changes only what it is given, the service
    role must exist and trust codebuild.amazonaws.com for the project, report groups exist."""

    def role(self, name: str, account_client=None, account: str = DEFAULT) -> str:
        iam = account_client or client("iam")
        return iam.create_role(RoleName=f"{name}-build", AssumeRolePolicyDocument=codebuild_trust(account, project_arn(name, account)))["Role"]["Arn"]

    def test_a_pipeline_project_reads_back_as_created(self):
        codebuild, kms = client("codebuild"), client("kms")
        name = unique("p")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        request = pipeline_project(name, self.role(name), key)
        created = codebuild.create_project(**request)["project"]
        answer = codebuild.batch_get_projects(names=[name, "missing-project"])
        self.assertEqual(answer["projectsNotFound"], ["missing-project"])
        [project] = answer["projects"]
        self.assertEqual(project, created)
        self.assertEqual(project["arn"], project_arn(name))
        for member in ("name", "description", "source", "artifacts", "environment", "serviceRole", "timeoutInMinutes", "queuedTimeoutInMinutes", "encryptionKey", "logsConfig", "tags"):
            self.assertEqual(project[member], request[member], member)
        self.assertNotIn("location", project["source"])
        self.assertEqual(project["created"], project["lastModified"])
        self.assertEqual(project["cache"], {"type": "NO_CACHE"})
        # By ARN too; all found: an empty projectsNotFound.
        answer = codebuild.batch_get_projects(names=[project_arn(name)])
        self.assertEqual((len(answer["projects"]), answer["projectsNotFound"]), (1, []))
        message = self.assertError(lambda: codebuild.create_project(**request), "ResourceAlreadyExistsException")
        self.assertIn(project_arn(name), message)
        codebuild.delete_project(name=name)
        self.assertEqual(codebuild.batch_get_projects(names=[name])["projectsNotFound"], [name])

    def test_defaults_and_model_values_moto_refused(self):
        codebuild = client("codebuild")
        name = "1" + unique("p")  # the model allows a leading digit
        request = dict(
            name=name,
            source={"type": "NO_SOURCE", "buildspec": BUILDSPEC},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0", "computeType": "BUILD_GENERAL1_XLARGE", "environmentVariables": [{"name": "A", "value": "b"}]},
            serviceRole=self.role(name),
        )
        project = codebuild.create_project(**request)["project"]
        self.assertEqual((project["timeoutInMinutes"], project["queuedTimeoutInMinutes"]), (60, 480))
        self.assertEqual(project["encryptionKey"], f"arn:aws:kms:us-east-1:{DEFAULT}:alias/aws/s3")
        self.assertEqual(project["tags"], [])
        self.assertEqual(project["badge"], {"badgeEnabled": False})
        self.assertEqual(project["logsConfig"], {"cloudWatchLogs": {"status": "ENABLED"}, "s3Logs": {"status": "DISABLED"}})
        env = project["environment"]
        self.assertEqual((env["privilegedMode"], env["imagePullCredentialsType"]), (False, "CODEBUILD"))
        self.assertEqual(env["environmentVariables"], [{"name": "A", "value": "b", "type": "PLAINTEXT"}])
        # Other source types still need a location.
        other = unique("p")
        self.assertError(
            lambda: codebuild.create_project(**{**request, "name": other, "serviceRole": self.role(other), "source": {"type": "CODECOMMIT"}}),
            "InvalidInputException",
        )
        codebuild.delete_project(name=name)

    def test_update_project_changes_only_what_it_is_given(self):
        codebuild, kms = client("codebuild"), client("kms")
        name = unique("p")
        request = pipeline_project(name, self.role(name), kms.create_key()["KeyMetadata"]["Arn"])
        before = codebuild.create_project(**request)["project"]
        after = codebuild.update_project(name=name, description="changed")["project"]
        self.assertEqual(after["description"], "changed")
        self.assertGreaterEqual(after["lastModified"], before["lastModified"])
        self.assertEqual(after["created"], before["created"])
        unchanged = lambda p: {k: v for k, v in p.items() if k not in ("description", "lastModified")}  # noqa: E731
        self.assertEqual(unchanged(after), unchanged(before))
        # A given environment replaces the environment whole; tags given replace the tag set.
        environment = {"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0", "computeType": "BUILD_GENERAL1_MEDIUM"}
        after = codebuild.update_project(name=name, environment=environment, tags=[{"key": "other", "value": "v"}], timeoutInMinutes=5)["project"]
        self.assertEqual(after["environment"], {**environment, "privilegedMode": False, "imagePullCredentialsType": "CODEBUILD", "environmentVariables": []})
        self.assertEqual(after["tags"], [{"key": "other", "value": "v"}])
        self.assertEqual(after["timeoutInMinutes"], 5)
        self.assertEqual(after["encryptionKey"], request["encryptionKey"])
        self.assertEqual(codebuild.batch_get_projects(names=[name])["projects"], [after])
        after = codebuild.update_project(name=name, tags=[])["project"]
        self.assertEqual(after["tags"], [])
        self.assertError(lambda: codebuild.update_project(name=unique("missing"), description="x"), "ResourceNotFoundException")

    def test_service_role_must_exist_and_trust_codebuild_for_the_project(self):
        codebuild, iam = client("codebuild"), client("iam")
        name = unique("p")
        request = pipeline_project(name, f"arn:aws:iam::{DEFAULT}:role/{name}-build", f"arn:aws:kms:us-east-1:{DEFAULT}:alias/delivery")
        message = self.assertError(lambda: codebuild.create_project(**request), "InvalidInputException")
        self.assertTrue(message.startswith("CodeBuild is not authorized to perform: sts:AssumeRole on service role."), message)
        # A role that trusts the account, or CodeBuild for another project, will not do.
        iam.create_role(RoleName=f"{name}-build", AssumeRolePolicyDocument=trust([{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole"}]))
        self.assertError(lambda: codebuild.create_project(**request), "InvalidInputException")
        iam.update_assume_role_policy(RoleName=f"{name}-build", PolicyDocument=codebuild_trust(DEFAULT, project_arn("another-project")))
        self.assertError(lambda: codebuild.create_project(**request), "InvalidInputException")
        self.assertEqual(codebuild.batch_get_projects(names=[name])["projectsNotFound"], [name])
        iam.update_assume_role_policy(RoleName=f"{name}-build", PolicyDocument=codebuild_trust(DEFAULT, project_arn(name)))
        codebuild.create_project(**request)
        # UpdateProject checks a serviceRole it is given (after finding the project).
        untrusting = iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust([]))["Role"]["Arn"]
        self.assertError(lambda: codebuild.update_project(name=name, serviceRole=untrusting), "InvalidInputException")
        self.assertEqual(codebuild.batch_get_projects(names=[name])["projects"][0]["serviceRole"], request["serviceRole"])
        self.assertError(lambda: codebuild.update_project(name=unique("missing"), serviceRole=untrusting), "ResourceNotFoundException")
        # A role by name, in the caller's account.
        other = unique("p")
        self.role(other)
        codebuild.create_project(**{**pipeline_project(other, f"{other}-build", request["encryptionKey"])})

    def test_report_groups(self):
        codebuild = client("codebuild")
        name = unique("reports")
        arn = f"arn:aws:codebuild:us-east-1:{DEFAULT}:report-group/{name}"
        tags = [{"key": "delivery.example.com/pipeline", "value": name}]
        group = codebuild.create_report_group(name=name, type="TEST", exportConfig={"exportConfigType": "NO_EXPORT"}, tags=tags)["reportGroup"]
        self.assertEqual(
            {k: group[k] for k in ("arn", "name", "type", "exportConfig", "tags", "status")},
            {"arn": arn, "name": name, "type": "TEST", "exportConfig": {"exportConfigType": "NO_EXPORT"}, "tags": tags, "status": "ACTIVE"},
        )
        self.assertEqual(group["created"], group["lastModified"])
        self.assertError(lambda: codebuild.create_report_group(name=name, type="TEST", exportConfig={"exportConfigType": "NO_EXPORT"}), "ResourceAlreadyExistsException")
        answer = codebuild.batch_get_report_groups(reportGroupArns=[arn, arn + "-missing"])
        self.assertEqual((answer["reportGroups"], answer["reportGroupsNotFound"]), ([group], [arn + "-missing"]))
        s3 = {"exportConfigType": "S3", "s3Destination": {"bucket": "reports", "path": "p", "packaging": "ZIP", "encryptionKey": f"arn:aws:kms:us-east-1:{DEFAULT}:key/k"}}
        updated = codebuild.update_report_group(arn=arn, exportConfig=s3)["reportGroup"]
        self.assertEqual((updated["exportConfig"], updated["tags"], updated["created"]), (s3, tags, group["created"]))
        updated = codebuild.update_report_group(arn=arn, tags=[])["reportGroup"]
        self.assertEqual((updated["exportConfig"], updated["tags"]), (s3, []))
        self.assertEqual(codebuild.batch_get_report_groups(reportGroupArns=[arn])["reportGroups"], [updated])
        self.assertError(lambda: codebuild.update_report_group(arn=arn + "-missing", tags=[]), "ResourceNotFoundException")
        self.assertIn(arn, codebuild.list_report_groups(sortBy="NAME")["reportGroups"])
        # Per account: another account has its own namespace.
        other = session_client("codebuild", member_session("111111111111"))
        self.assertEqual(other.batch_get_report_groups(reportGroupArns=[arn])["reportGroupsNotFound"], [arn])
        other_group = other.create_report_group(name=name, type="TEST", exportConfig={"exportConfigType": "NO_EXPORT"})["reportGroup"]
        self.assertEqual(other_group["arn"], arn.replace(DEFAULT, "111111111111"))
        codebuild.delete_report_group(arn=arn, deleteReports=True)
        self.assertEqual(codebuild.batch_get_report_groups(reportGroupArns=[arn])["reportGroupsNotFound"], [arn])
        self.assertNotIn(arn, codebuild.list_report_groups()["reportGroups"])
        self.assertIn(other_group["arn"], other.list_report_groups()["reportGroups"])

    def test_list_report_groups_pages(self):
        codebuild = client("codebuild", key())
        names = sorted(unique("page") for _ in range(3))
        for name in names:
            codebuild.create_report_group(name=name, type="TEST", exportConfig={"exportConfigType": "NO_EXPORT"})
        seen, token = [], None
        while True:
            page = codebuild.list_report_groups(sortBy="NAME", sortOrder="DESCENDING", maxResults=1, **({"nextToken": token} if token else {}))
            self.assertLessEqual(len(page["reportGroups"]), 1)
            seen += page["reportGroups"]
            token = page.get("nextToken")
            if not token:
                break
        ours = [a for a in seen if a.rsplit("/", 1)[1] in names]
        self.assertEqual(ours, [f"arn:aws:codebuild:us-east-1:{DEFAULT}:report-group/{n}" for n in reversed(names)])
        self.assertEqual(seen, sorted(seen, reverse=True))


def cbor_client(service: str, access_key: str = "testing"):
    """A boto3 client that speaks Smithy RPC v2 CBOR, as the AWS SDKs do to services whose model
    lists it (CloudWatch); boto3 itself prefers the JSON protocol."""
    import boto3
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    model = session.get_component("data_loader").load_service_model(service, "service-2")
    model["metadata"]["protocols"] = ["smithy-rpc-v2-cbor"]
    return boto3.Session(botocore_session=session).client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, parameter_validation=False),
    )


def raw_responses(service_client) -> list[dict]:
    """The raw HTTP responses the client receives, appended as they arrive."""
    seen: list[dict] = []

    def keep(**kwargs):
        response = kwargs.get("response_dict") or {}
        seen.append({"status": response.get("status_code"), "headers": response.get("headers") or {}, "body": response.get("body") or b""})

    service_client.meta.events.register("before-parse", keep)
    return seen


def rule_alarm(name: str, rule: str, topic_arn: str) -> dict:
    """The alarm the operator puts on a notification rule: it fires when the rule triggers."""
    return dict(
        AlarmName=name,
        AlarmDescription=f"Pipeline {rule} failed",
        ActionsEnabled=True,
        Namespace="AWS/Events",
        MetricName="TriggeredRules",
        Dimensions=[{"Name": "RuleName", "Value": rule}],
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic_arn],
        OKActions=[topic_arn],
    )


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class CloudWatch(ServiceErrors, unittest.TestCase):
    """CloudWatch as the AWS SDKs reach it (Smithy RPC v2 CBOR) and as AWS keeps alarms: a new
    alarm is INSUFFICIENT_DATA, an update keeps its state and tags, tags belong to an alarm that
    exists."""

    def topic(self) -> str:
        return client("sns").create_topic(Name=unique("alarms"))["TopicArn"]

    def test_cbor_requests_are_served_in_cbor(self):
        k = key()
        cloudwatch = cbor_client("cloudwatch", k)
        seen = raw_responses(cloudwatch)
        name, topic = unique("alarm"), self.topic()
        cloudwatch.put_metric_alarm(**rule_alarm(name, "rule", topic), Tags=[{"Key": "team", "Value": "a"}])
        self.assertEqual((seen[-1]["status"], seen[-1]["body"]), (200, b""))  # no output: no body
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        self.assertEqual(seen[-1]["headers"]["Content-Type"], "application/cbor")
        self.assertEqual(seen[-1]["headers"]["smithy-protocol"], "rpc-v2-cbor")
        self.assertEqual(seen[-1]["body"][:1], b"\xa2")  # a CBOR map: CompositeAlarms, MetricAlarms
        self.assertEqual((alarm["AlarmName"], alarm["Threshold"], alarm["AlarmActions"]), (name, 1.0, [topic]))
        # Errors: a CBOR map with __type and message, the query error code in x-amzn-query-error.
        message = self.assertError(lambda: cloudwatch.put_metric_alarm(**{**rule_alarm("a" * 256, "rule", topic)}), "ValidationError")
        self.assertIn("'alarmName'", message)
        self.assertEqual(seen[-1]["headers"]["x-amzn-query-error"], "ValidationError;Sender")
        self.assertEqual(seen[-1]["headers"]["Content-Type"], "application/cbor")
        # The record names the operations.
        self.assertEqual([(r["service"], r["operation"]) for r in records(k)], [("CloudWatch", "PutMetricAlarm"), ("CloudWatch", "DescribeAlarms"), ("CloudWatch", "PutMetricAlarm")])

    def test_the_operator_alarm_reads_back(self):
        cloudwatch = cbor_client("cloudwatch")
        name, topic = unique("alarm"), self.topic()
        request = rule_alarm(name, unique("rule"), topic)
        cloudwatch.put_metric_alarm(**request, Tags=[{"Key": "delivery.example.com/pipeline", "Value": "p"}])
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        for member, value in request.items():
            self.assertEqual(alarm[member], value, member)
        self.assertEqual(alarm["AlarmArn"], f"arn:aws:cloudwatch:us-east-1:{DEFAULT}:alarm:{name}")
        self.assertEqual(alarm["InsufficientDataActions"], [])
        self.assertEqual((alarm["StateValue"], alarm["StateReason"]), ("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation"))
        for stamp in ("AlarmConfigurationUpdatedTimestamp", "StateUpdatedTimestamp", "StateTransitionedTimestamp"):
            self.assertIn(stamp, alarm)
        # The JSON protocol answers the same.
        [same] = client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
        self.assertEqual(same, alarm)
        self.assertEqual(cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"], [{"Key": "delivery.example.com/pipeline", "Value": "p"}])
        cloudwatch.delete_alarms(AlarmNames=[name])
        self.assertEqual(cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"], [])

    def test_an_update_keeps_the_state_and_the_tags(self):
        cloudwatch = cbor_client("cloudwatch")
        name, topic = unique("alarm"), self.topic()
        tags = [{"Key": "team", "Value": "a"}]
        cloudwatch.put_metric_alarm(**rule_alarm(name, "rule", topic), Tags=tags)
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
        [before] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        self.assertEqual(before["StateValue"], "ALARM")
        update = {**rule_alarm(name, "rule", topic), "Threshold": 2.0}
        del update["OKActions"]
        cloudwatch.put_metric_alarm(**update, Tags=[{"Key": "other", "Value": "b"}])
        [after] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        self.assertEqual((after["StateValue"], after["StateReason"]), ("ALARM", "test"))
        self.assertEqual(after["StateTransitionedTimestamp"], before["StateTransitionedTimestamp"])
        self.assertEqual((after["Threshold"], after["OKActions"]), (2.0, []))  # the configuration is overwritten
        arn = after["AlarmArn"]
        self.assertEqual(cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"], tags)  # Tags of an update are ignored

    def test_tags_belong_to_an_alarm_that_exists(self):
        cloudwatch = cbor_client("cloudwatch")
        name, topic = unique("alarm"), self.topic()
        cloudwatch.put_metric_alarm(**rule_alarm(name, "rule", topic))
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        arn = alarm["AlarmArn"]
        cloudwatch.untag_resource(ResourceARN=arn, TagKeys=["absent"])  # an alarm without tags
        cloudwatch.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "a"}])
        cloudwatch.delete_alarms(AlarmNames=[name, unique("never-existed")])  # unknown names are skipped
        for call in (
            lambda: cloudwatch.list_tags_for_resource(ResourceARN=arn),
            lambda: cloudwatch.tag_resource(ResourceARN=arn, Tags=[{"Key": "k", "Value": "v"}]),
            lambda: cloudwatch.untag_resource(ResourceARN=arn, TagKeys=["team"]),
        ):
            self.assertError(call, "ResourceNotFoundException", 404)
        cloudwatch.put_metric_alarm(**rule_alarm(name, "rule", topic))
        self.assertEqual(cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"], [])  # nothing inherited


def codepipeline_trust(account: str, pipeline: str, service="codepipeline.amazonaws.com") -> str:
    """The trust policy of a pipeline's service role, scoped to the pipeline (confused deputy)."""
    return trust(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": pipeline_arn(pipeline, account)}},
            }
        ]
    )


def pipeline_arn(name: str, account: str = DEFAULT) -> str:
    return f"arn:aws:codepipeline:us-east-1:{account}:{name}"


def operator_pipeline(name: str, role_arn: str) -> dict:
    """A V2 pipeline declaration as the operator writes it."""
    source = {"category": "Source", "owner": "AWS", "provider": "CodeStarSourceConnection", "version": "1"}
    build = {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"}
    deploy = {"category": "Deploy", "owner": "AWS", "provider": "ECS", "version": "1"}
    variables = json.dumps([{"name": "COMMIT", "value": "#{SourceVariables.CommitId}", "type": "PLAINTEXT"}])
    return {
        "name": name,
        "roleArn": role_arn,
        "pipelineType": "V2",
        "executionMode": "SUPERSEDED",
        "artifactStore": {"type": "S3", "location": f"{name}-artifacts", "encryptionKey": {"id": f"arn:aws:kms:us-east-1:{DEFAULT}:alias/{name}", "type": "KMS"}},
        "stages": [
            {"name": "Source", "actions": [{"name": "Source", "actionTypeId": source, "runOrder": 1, "namespace": "SourceVariables", "outputArtifacts": [{"name": "source"}], "configuration": {"ConnectionArn": f"arn:aws:codeconnections:us-east-1:{DEFAULT}:connection/abc", "FullRepositoryId": "org/app", "BranchName": "main", "OutputArtifactFormat": "CODE_ZIP", "DetectChanges": "false"}}]},
            {"name": "Build", "actions": [{"name": "Build", "actionTypeId": build, "runOrder": 1, "namespace": "BuildVariables", "inputArtifacts": [{"name": "source"}], "outputArtifacts": [{"name": "image"}], "configuration": {"ProjectName": f"{name}-build", "EnvironmentVariables": variables}}]},
            {"name": "Test", "actions": [{"name": "Test", "actionTypeId": build, "runOrder": 1, "inputArtifacts": [{"name": "source"}], "configuration": {"ProjectName": f"{name}-scan"}}]},
            {"name": "DeployStaging", "actions": [{"name": "Deploy", "actionTypeId": deploy, "runOrder": 1, "inputArtifacts": [{"name": "image"}], "roleArn": "arn:aws:iam::111111111111:role/deploy", "region": "eu-west-1", "configuration": {"ClusterName": "staging", "ServiceName": "app", "FileName": "imagedefinitions.json"}}]},
            {"name": "Approval", "actions": [{"name": "Approve", "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}, "runOrder": 1, "configuration": {"NotificationArn": f"arn:aws:sns:us-east-1:{DEFAULT}:{name}-approval", "CustomData": "Promote #{BuildVariables.IMAGE_TAG}?", "ExternalEntityLink": "https://example.com/app"}}]},
            {"name": "DeployProduction", "actions": [{"name": "Deploy", "actionTypeId": deploy, "runOrder": 1, "inputArtifacts": [{"name": "image"}], "roleArn": "arn:aws:iam::222222222222:role/deploy", "region": "us-east-1", "configuration": {"ClusterName": "production", "ServiceName": "app", "FileName": "imagedefinitions.json"}}]},
        ],
        "triggers": [{"providerType": "CodeStarSourceConnection", "gitConfiguration": {"sourceActionName": "Source", "push": [{"branches": {"includes": ["main"]}}]}}],
        "variables": [{"name": "RELEASE", "defaultValue": "auto", "description": "release label"}],
    }


def harness(method: str, path: str, payload=None, query: str = ""):
    """A call to a harness control endpoint: (status, JSON answer)."""
    import urllib.error

    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{ENDPOINT}{path}{query}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def set_execution(**fields):
    status, answer = harness("POST", "/_harness/pipeline-executions", fields)
    assert status == 200, answer
    return answer


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class CodePipeline(ServiceErrors, unittest.TestCase):
    """CodePipeline V2 pipelines as AWS serves them: every member reads back with epoch-number
    timestamps, the service role must be assumable by codepipeline.amazonaws.com for the
    pipeline, executions are recorded (and moved on by tests through the harness)."""

    def create(self, name=None, **kwargs):
        codepipeline, iam = client("codepipeline"), client("iam")
        name = name or unique("pipe")
        role = iam.create_role(RoleName=f"{name}-pipeline", AssumeRolePolicyDocument=codepipeline_trust(DEFAULT, name))["Role"]["Arn"]
        declaration = operator_pipeline(name, role)
        codepipeline.create_pipeline(pipeline=declaration, **kwargs)
        return name, declaration

    def test_a_v2_pipeline_reads_back_as_declared(self):
        codepipeline = client("codepipeline")
        seen = raw_responses(codepipeline)
        tags = [{"key": "delivery.example.com/pipeline", "value": "app"}]
        name, declaration = self.create(tags=tags)
        answer = codepipeline.get_pipeline(name=name)
        pipeline, metadata = answer["pipeline"], answer["metadata"]
        self.assertEqual(pipeline["version"], 1)
        for member in ("name", "roleArn", "pipelineType", "executionMode", "artifactStore", "triggers", "variables"):
            self.assertEqual(pipeline[member], declaration[member], member)
        for stage, declared in zip(pipeline["stages"], declaration["stages"], strict=True):
            self.assertEqual(stage["name"], declared["name"])
            for action, declared_action in zip(stage["actions"], declared["actions"], strict=True):
                for member, value in declared_action.items():
                    self.assertEqual(action[member], value, f"{stage['name']}.{member}")
        self.assertEqual(metadata["pipelineArn"], pipeline_arn(name))
        # New: updated is created (moto reads the clock twice, so allow the request's own time).
        self.assertLessEqual(metadata["created"], metadata["updated"])
        self.assertLess((metadata["updated"] - metadata["created"]).total_seconds(), 1)
        # JSON numbers (epoch seconds), as AWS writes timestamps in the JSON protocol.
        body = json.loads(seen[-1]["body"])
        self.assertIsInstance(body["metadata"]["created"], (int, float))
        self.assertEqual(codepipeline.list_tags_for_resource(resourceArn=pipeline_arn(name))["tags"], tags)
        # UpdatePipeline bumps the version; created stays.
        changed = {**declaration, "executionMode": "QUEUED"}
        self.assertEqual(codepipeline.update_pipeline(pipeline=changed)["pipeline"]["version"], 2)
        answer = codepipeline.get_pipeline(name=name)
        self.assertEqual((answer["pipeline"]["version"], answer["pipeline"]["executionMode"]), (2, "QUEUED"))
        self.assertEqual(answer["metadata"]["created"], metadata["created"])
        self.assertGreaterEqual(answer["metadata"]["updated"], metadata["updated"])
        [summary] = [p for p in codepipeline.list_pipelines()["pipelines"] if p["name"] == name]
        self.assertEqual((summary["version"], summary["pipelineType"], summary["executionMode"]), (2, "V2", "QUEUED"))
        self.assertIsInstance(json.loads(seen[-1]["body"])["pipelines"][0]["created"], (int, float))
        # executionMode defaults to SUPERSEDED.
        without = {k: v for k, v in declaration.items() if k != "executionMode"}
        codepipeline.update_pipeline(pipeline=without)
        self.assertEqual(codepipeline.get_pipeline(name=name)["pipeline"]["executionMode"], "SUPERSEDED")
        codepipeline.delete_pipeline(name=name)
        self.assertError(lambda: codepipeline.get_pipeline(name=name), "PipelineNotFoundException")

    def test_a_name_in_use_is_pipeline_name_in_use(self):
        codepipeline = client("codepipeline")
        name, declaration = self.create()
        self.assertError(lambda: codepipeline.create_pipeline(pipeline=declaration), "PipelineNameInUseException")

    def test_the_role_must_be_assumable_by_codepipeline_for_the_pipeline(self):
        codepipeline, iam = client("codepipeline"), client("iam")
        name = unique("pipe")
        role_name = f"{name}-pipeline"
        declaration = operator_pipeline(name, f"arn:aws:iam::{DEFAULT}:role/{role_name}")
        message = self.assertError(lambda: codepipeline.create_pipeline(pipeline=declaration), "InvalidStructureException")
        self.assertEqual(message, f"CodePipeline is not authorized to perform AssumeRole on role {declaration['roleArn']}")
        # No Service principal at all (moto: HTTP 500), CodePipeline for another pipeline, a Deny.
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=trust([{"Effect": "Allow", "Principal": {"AWS": DEFAULT}, "Action": "sts:AssumeRole"}]))
        self.assertError(lambda: codepipeline.create_pipeline(pipeline=declaration), "InvalidStructureException")
        iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=codepipeline_trust(DEFAULT, "another-pipeline"))
        self.assertError(lambda: codepipeline.create_pipeline(pipeline=declaration), "InvalidStructureException")
        denied = json.loads(codepipeline_trust(DEFAULT, name))
        denied["Statement"].append({"Effect": "Deny", "Principal": {"Service": "codepipeline.amazonaws.com"}, "Action": "sts:AssumeRole"})
        iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(denied))
        self.assertError(lambda: codepipeline.create_pipeline(pipeline=declaration), "InvalidStructureException")
        self.assertError(lambda: codepipeline.get_pipeline(name=name), "PipelineNotFoundException")
        # Service as a list (moto refused it).
        iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=codepipeline_trust(DEFAULT, name, ["codepipeline.amazonaws.com", "codebuild.amazonaws.com"]))
        codepipeline.create_pipeline(pipeline=declaration)
        # UpdatePipeline checks the role too, and keeps the stored one when it refuses.
        untrusting = iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust([]))["Role"]["Arn"]
        self.assertError(lambda: codepipeline.update_pipeline(pipeline={**declaration, "roleArn": untrusting}), "InvalidStructureException")
        answer = codepipeline.get_pipeline(name=name)["pipeline"]
        self.assertEqual((answer["roleArn"], answer["version"]), (declaration["roleArn"], 1))

    def test_executions_are_recorded_and_moved_on_by_tests(self):
        codepipeline = client("codepipeline")
        seen = raw_responses(codepipeline)
        name, _ = self.create()
        self.assertEqual(codepipeline.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"], [])
        state = codepipeline.get_pipeline_state(name=name)
        self.assertEqual([s["stageName"] for s in state["stageStates"]], ["Source", "Build", "Test", "DeployStaging", "Approval", "DeployProduction"])
        self.assertTrue(all("latestExecution" not in s for s in state["stageStates"]))
        first = codepipeline.start_pipeline_execution(name=name)["pipelineExecutionId"]
        [summary] = codepipeline.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]
        self.assertEqual(summary["pipelineExecutionId"], first)
        self.assertEqual((summary["status"], summary["executionMode"], summary["executionType"]), ("InProgress", "SUPERSEDED", "STANDARD"))
        self.assertEqual(summary["trigger"], {"triggerType": "StartPipelineExecution", "triggerDetail": f"arn:aws:iam::{DEFAULT}:root"})
        self.assertIsInstance(json.loads(seen[-1]["body"])["pipelineExecutionSummaries"][0]["startTime"], (int, float))
        state = codepipeline.get_pipeline_state(name=name)
        source = state["stageStates"][0]
        self.assertEqual(source["latestExecution"], {"pipelineExecutionId": first, "status": "InProgress", "type": "STANDARD"})
        self.assertEqual(source["actionStates"][0]["latestExecution"]["status"], "InProgress")
        self.assertNotIn("inboundTransitionState", source)
        self.assertEqual(state["stageStates"][1]["inboundTransitionState"], {"enabled": True})
        # A test fails the build.
        set_execution(pipeline=name, executionId=first, status="Failed", stages={"Source": "Succeeded", "Build": {"status": "Failed", "actions": {"Build": {"status": "Failed", "summary": "Build failed", "externalExecutionId": "build-1"}}}})
        execution = codepipeline.get_pipeline_execution(pipelineName=name, pipelineExecutionId=first)["pipelineExecution"]
        self.assertEqual((execution["status"], execution["pipelineVersion"], execution["executionMode"]), ("Failed", 1, "SUPERSEDED"))
        self.assertEqual(execution["variables"], [{"name": "RELEASE", "resolvedValue": "auto"}])
        stages = {s["stageName"]: s for s in codepipeline.get_pipeline_state(name=name)["stageStates"]}
        self.assertEqual(stages["Source"]["latestExecution"]["status"], "Succeeded")
        self.assertEqual(stages["Build"]["latestExecution"], {"pipelineExecutionId": first, "status": "Failed", "type": "STANDARD"})
        build_action = stages["Build"]["actionStates"][0]["latestExecution"]
        self.assertEqual((build_action["status"], build_action["summary"], build_action["externalExecutionId"]), ("Failed", "Build failed", "build-1"))
        self.assertNotIn("latestExecution", stages["Test"])
        # A second execution, newest first; a retried client token is the same execution.
        second = codepipeline.start_pipeline_execution(name=name, clientRequestToken="token-1", variables=[{"name": "RELEASE", "value": "r2"}])["pipelineExecutionId"]
        self.assertEqual(codepipeline.start_pipeline_execution(name=name, clientRequestToken="token-1")["pipelineExecutionId"], second)
        summaries = codepipeline.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]
        self.assertEqual([(s["pipelineExecutionId"], s["status"]) for s in summaries], [(second, "InProgress"), (first, "Failed")])
        self.assertEqual(codepipeline.get_pipeline_execution(pipelineName=name, pipelineExecutionId=second)["pipelineExecution"]["variables"], [{"name": "RELEASE", "resolvedValue": "r2"}])
        # The Source stage shows the newest execution that reached it; Build still the first's.
        stages = {s["stageName"]: s for s in codepipeline.get_pipeline_state(name=name)["stageStates"]}
        self.assertEqual((stages["Source"]["latestExecution"]["pipelineExecutionId"], stages["Build"]["latestExecution"]["pipelineExecutionId"]), (second, first))
        set_execution(pipeline=name, executionId=second, status="Succeeded", stages={s: "Succeeded" for s in stages})
        page = codepipeline.list_pipeline_executions(pipelineName=name, maxResults=1)
        self.assertEqual([s["pipelineExecutionId"] for s in page["pipelineExecutionSummaries"]], [second])
        page = codepipeline.list_pipeline_executions(pipelineName=name, maxResults=1, nextToken=page["nextToken"])
        self.assertEqual([s["pipelineExecutionId"] for s in page["pipelineExecutionSummaries"]], [first])
        self.assertNotIn("nextToken", page)
        succeeded = codepipeline.list_pipeline_executions(pipelineName=name, filter={"succeededInStage": {"stageName": "Build"}})
        self.assertEqual([s["pipelineExecutionId"] for s in succeeded["pipelineExecutionSummaries"]], [second])
        # A harness-made execution (e.g. one a webhook would have started).
        third = set_execution(pipeline=name, status="InProgress", stages={"Source": "InProgress"}, trigger={"triggerType": "WebhookV2", "triggerDetail": "push"})
        self.assertEqual(third["status"], "InProgress")
        latest = codepipeline.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"][0]
        self.assertEqual((latest["pipelineExecutionId"], latest["trigger"]), (third["pipelineExecutionId"], {"triggerType": "WebhookV2", "triggerDetail": "push"}))
        self.assertError(lambda: codepipeline.get_pipeline_execution(pipelineName=name, pipelineExecutionId="00000000-0000-0000-0000-000000000000"), "PipelineExecutionNotFoundException")
        for call in (
            lambda: codepipeline.start_pipeline_execution(name=unique("missing")),
            lambda: codepipeline.list_pipeline_executions(pipelineName=unique("missing")),
            lambda: codepipeline.get_pipeline_state(name=unique("missing")),
        ):
            self.assertError(call, "PipelineNotFoundException")
        # Deleting the pipeline deletes its history.
        codepipeline.delete_pipeline(name=name)
        self.assertEqual(harness("GET", "/_harness/pipeline-executions", query=f"?pipeline={name}")[0], 404)

    def test_the_harness_endpoint_refuses_what_it_does_not_know(self):
        name, _ = self.create()
        for payload, status in (
            ({"pipeline": name, "status": "Done"}, 400),
            ({"pipeline": name, "status": "Failed", "stages": {"Nope": "Failed"}}, 400),
            ({"pipeline": name, "status": "Failed", "stages": {"Build": "Broken"}}, 400),
            ({"pipeline": name, "status": "Failed", "stages": {"Build": {"status": "Failed", "actions": {"Nope": {"status": "Failed"}}}}}, 400),
            ({"pipeline": name, "status": "Failed", "colour": "red"}, 400),
            ({"pipeline": name}, 400),
            ({"pipeline": unique("missing"), "status": "Failed"}, 404),
        ):
            self.assertEqual(harness("POST", "/_harness/pipeline-executions", payload)[0], status, payload)
        status, listed = harness("GET", "/_harness/pipeline-executions", query=f"?pipeline={name}")
        self.assertEqual((status, listed), (200, []))


# A "CodePipeline Pipeline Execution State Change" event as CodePipeline sends it (CodePipeline
# User Guide, "Monitoring CodePipeline events", pipeline-level FAILED example).
PIPELINE_FAILED_EVENT = {
    "version": "0",
    "id": "01234567-EXAMPLE",
    "detail-type": "CodePipeline Pipeline Execution State Change",
    "source": "aws.codepipeline",
    "account": DEFAULT,
    "time": "2020-01-24T22:03:07Z",
    "region": "us-east-1",
    "resources": [f"arn:aws:codepipeline:us-east-1:{DEFAULT}:myPipeline"],
    "detail": {
        "pipeline": "myPipeline",
        "execution-id": "12345678-1234-5678-abcd-12345678abcd",
        "start-time": "2023-10-26T13:50:53.041Z",
        "execution-trigger": {"trigger-type": "StartPipelineExecution", "trigger-detail": f"arn:aws:sts::{DEFAULT}:assumed-role/Admin/my-user"},
        "state": "FAILED",
        "version": 1.0,
        "pipeline-execution-attempt": 1.0,
    },
}


def failure_rule_pattern(pipeline: str) -> dict:
    """The operator's notification rule: its pipeline's executions that fail or are stopped."""
    return {
        "source": ["aws.codepipeline"],
        "detail-type": ["CodePipeline Pipeline Execution State Change"],
        "resources": [pipeline_arn(pipeline)],
        "detail": {"pipeline": [pipeline], "state": ["FAILED", "STOPPED"]},
    }


def notification_topic(name: str, rule_arns: list[str] | None = None, key_arn: str | None = None) -> str:
    """A topic whose policy lets EventBridge publish for the given rules (None: the default policy)."""
    sns = client("sns")
    attributes = {"KmsMasterKeyId": key_arn} if key_arn else {}
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    if rule_arns is not None:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EventBridgePublishes",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                }
            ],
        }
        sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(policy))
    return arn


def subscribed_queue(topic_arn: str) -> str:
    """An SQS queue subscribed to the topic (raw delivery): what the topic publishes arrives there."""
    sqs, sns = client("sqs"), client("sns")
    url = sqs.create_queue(QueueName=unique("inbox"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return url


def received(url: str) -> list[str]:
    messages = client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [m["Body"] for m in messages]


def deliveries(rule: str) -> list[dict]:
    status, answer = harness("GET", "/_harness/event-deliveries", query=f"?rule={rule}")
    assert status == 200, answer
    return answer


FAILURE_TEMPLATE = '"Pipeline <pipeline> execution <execution> is <state> (<time>)"'
FAILURE_PATHS = {"pipeline": "$.detail.pipeline", "execution": "$.detail.execution-id", "state": "$.detail.state", "time": "$.time"}


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class EventBridge(ServiceErrors, unittest.TestCase):
    """EventBridge rules as AWS runs them: TestEventPattern answers, matched events reach SNS topic
    targets (through the input transformer, when the topic policy lets EventBridge publish) and
    CodePipeline targets, disabled rules match nothing, aws.* sources are AWS's own."""

    def test_test_event_pattern_matches_codepipeline_events(self):
        events = client("events")
        event = json.dumps(PIPELINE_FAILED_EVENT)

        def matches(pattern) -> bool:
            return events.test_event_pattern(EventPattern=json.dumps(pattern), Event=event)["Result"]

        self.assertTrue(matches(failure_rule_pattern("myPipeline")))
        self.assertTrue(matches({"source": ["aws.codepipeline"]}))
        self.assertTrue(matches({"detail": {"execution-trigger": {"trigger-type": ["StartPipelineExecution"]}}}))
        self.assertTrue(matches({"detail": {"pipeline": [{"prefix": "my"}]}}))
        self.assertTrue(matches({"resources": [{"prefix": f"arn:aws:codepipeline:us-east-1:{DEFAULT}:"}]}))
        self.assertTrue(matches({"detail": {"state": [{"anything-but": ["SUCCEEDED"]}]}}))
        self.assertFalse(matches(failure_rule_pattern("otherPipeline")))
        self.assertFalse(matches({**failure_rule_pattern("myPipeline"), "detail": {"pipeline": ["myPipeline"], "state": ["SUCCEEDED"]}}))
        self.assertFalse(matches({"detail-type": ["CodePipeline Stage Execution State Change"]}))
        self.assertFalse(matches({"detail": {"stage": [{"exists": True}]}}))
        self.assertFalse(matches({"detail": {"pipeline": [{"prefix": "other"}]}}))
        missing = {k: v for k, v in PIPELINE_FAILED_EVENT.items() if k != "time"}
        self.assertError(lambda: events.test_event_pattern(EventPattern=json.dumps({"source": ["aws.codepipeline"]}), Event=json.dumps(missing)), "ValidationException")
        self.assertError(lambda: events.test_event_pattern(EventPattern='{"source": "aws.codepipeline"}', Event=event), "InvalidEventPatternException")

    def test_a_rule_and_its_targets_read_back(self):
        events = client("events")
        name, pipeline = unique("rule"), unique("pipe")
        pattern = json.dumps(failure_rule_pattern(pipeline))
        tags = [{"Key": "delivery.example.com/pipeline", "Value": pipeline}]
        arn = events.put_rule(Name=name, EventPattern=pattern, State="ENABLED", Description="Pipeline failures", Tags=tags)["RuleArn"]
        self.assertEqual(arn, f"arn:aws:events:us-east-1:{DEFAULT}:rule/{name}")
        rule = events.describe_rule(Name=name)
        self.assertEqual(
            {k: rule[k] for k in ("Name", "Arn", "EventPattern", "State", "Description", "EventBusName", "CreatedBy")},
            {"Name": name, "Arn": arn, "EventPattern": pattern, "State": "ENABLED", "Description": "Pipeline failures", "EventBusName": "default", "CreatedBy": DEFAULT},
        )
        topic = f"arn:aws:sns:us-east-1:{DEFAULT}:{pipeline}-notifications"
        targets = [
            {"Id": "notify", "Arn": topic, "InputTransformer": {"InputPathsMap": FAILURE_PATHS, "InputTemplate": FAILURE_TEMPLATE}},
            {"Id": "restart", "Arn": pipeline_arn(pipeline), "RoleArn": f"arn:aws:iam::{DEFAULT}:role/{pipeline}-events"},
        ]
        self.assertEqual(events.put_targets(Rule=name, Targets=targets)["FailedEntryCount"], 0)
        self.assertEqual(events.list_targets_by_rule(Rule=name)["Targets"], targets)
        self.assertEqual(events.list_tags_for_resource(ResourceARN=arn)["Tags"], tags)
        events.tag_resource(ResourceARN=arn, Tags=[{"Key": "extra", "Value": "1"}])
        events.untag_resource(ResourceARN=arn, TagKeys=["extra"])
        self.assertEqual(events.list_tags_for_resource(ResourceARN=arn)["Tags"], tags)
        # (not a gap) a rule with targets cannot be deleted.
        message = self.assertError(lambda: events.delete_rule(Name=name), "ValidationException")
        self.assertEqual(message, "Rule can't be deleted since it has targets.")
        events.remove_targets(Rule=name, Ids=["notify", "restart"])
        events.delete_rule(Name=name)
        self.assertError(lambda: events.describe_rule(Name=name), "ResourceNotFoundException")

    def put_failure_rule(self, pipeline: str, topic_arn: str | None = None, name: str | None = None) -> tuple[str, str]:
        events = client("events")
        name = name or unique("rule")
        arn = events.put_rule(Name=name, EventPattern=json.dumps(failure_rule_pattern(pipeline)), State="ENABLED")["RuleArn"]
        if topic_arn:
            events.put_targets(Rule=name, Targets=[{"Id": "notify", "Arn": topic_arn, "InputTransformer": {"InputPathsMap": FAILURE_PATHS, "InputTemplate": FAILURE_TEMPLATE}}])
        return name, arn

    def pipeline(self) -> str:
        name = unique("pipe")
        role = client("iam").create_role(RoleName=f"{name}-pipeline", AssumeRolePolicyDocument=codepipeline_trust(DEFAULT, name))["Role"]["Arn"]
        client("codepipeline").create_pipeline(pipeline=operator_pipeline(name, role))
        return name

    def test_a_failed_execution_reaches_the_topic_through_the_input_transformer(self):
        pipeline = self.pipeline()
        rule_name = unique("rule")
        rule_arn = f"arn:aws:events:us-east-1:{DEFAULT}:rule/{rule_name}"
        topic = notification_topic(unique("notify"), [rule_arn])
        inbox = subscribed_queue(topic)
        self.put_failure_rule(pipeline, topic, rule_name)
        execution = client("codepipeline").start_pipeline_execution(name=pipeline)["pipelineExecutionId"]
        self.assertEqual(received(inbox), [])  # STARTED does not match
        set_execution(pipeline=pipeline, executionId=execution, status="Failed", stages={"Build": "Failed"})
        [message] = received(inbox)
        self.assertRegex(message, rf'^"Pipeline {pipeline} execution {execution} is FAILED \(\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"$')
        [delivery] = deliveries(rule_name)
        self.assertEqual((delivery["delivered"], delivery["targetArn"], delivery["input"]), (True, topic, message))
        # A JSON template: placeholders outside quotes become JSON values, inside quotes text.
        client("events").put_targets(
            Rule=rule_name,
            Targets=[{"Id": "notify", "Arn": topic, "InputTransformer": {"InputPathsMap": {"state": "$.detail.state", "version": "$.detail.version", "resources": "$.resources"}, "InputTemplate": '{"state": <state>, "text": "now <state>", "version": <version>, "resources": <resources>, "rule": "<aws.events.rule-name>"}'}}],
        )
        set_execution(pipeline=pipeline, status="Stopped", events=True)
        [message] = received(inbox)
        self.assertEqual(json.loads(message), {"state": "STOPPED", "text": "now STOPPED", "version": 1.0, "resources": [pipeline_arn(pipeline)], "rule": rule_name})
        # Without a transformer the target gets the event itself.
        client("events").put_targets(Rule=rule_name, Targets=[{"Id": "notify", "Arn": topic}])
        failed = set_execution(pipeline=pipeline, status="Failed")
        [message] = received(inbox)
        event = json.loads(message)
        self.assertEqual((event["source"], event["detail-type"], event["account"], event["region"]), ("aws.codepipeline", "CodePipeline Pipeline Execution State Change", DEFAULT, "us-east-1"))
        self.assertEqual((event["detail"]["pipeline"], event["detail"]["execution-id"], event["detail"]["state"]), (pipeline, failed["pipelineExecutionId"], "FAILED"))
        self.assertEqual(event["detail"]["execution-trigger"]["trigger-type"], "StartPipelineExecution")

    def test_a_topic_that_does_not_let_eventbridge_publish_gets_nothing(self):
        kms = client("kms")
        pipeline = self.pipeline()
        # The default topic policy does not let EventBridge publish.
        rule_name, rule_arn = self.put_failure_rule(pipeline)
        topic = notification_topic(unique("notify"))
        inbox = subscribed_queue(topic)
        client("events").put_targets(Rule=rule_name, Targets=[{"Id": "notify", "Arn": topic}])
        set_execution(pipeline=pipeline, status="Failed")
        self.assertEqual(received(inbox), [])
        [delivery] = deliveries(rule_name)
        self.assertFalse(delivery["delivered"])
        self.assertIn("topic policy", delivery["problem"])
        # An encrypted topic: the key policy must let EventBridge use the key too.
        account_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT}:root"}, "Action": "kms:*", "Resource": "*"}]}
        key = kms.create_key(Policy=json.dumps(account_only))["KeyMetadata"]["Arn"]
        encrypted = notification_topic(unique("notify"), [rule_arn], key)
        inbox = subscribed_queue(encrypted)
        client("events").put_targets(Rule=rule_name, Targets=[{"Id": "notify", "Arn": encrypted}])
        harness("DELETE", "/_harness/event-deliveries", query=f"?rule={rule_name}")
        set_execution(pipeline=pipeline, status="Failed")
        self.assertEqual(received(inbox), [])
        [delivery] = deliveries(rule_name)
        self.assertIn("key policy", delivery["problem"])
        with_events = {**account_only, "Statement": account_only["Statement"] + [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}]}
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(with_events))
        set_execution(pipeline=pipeline, status="Failed")
        self.assertEqual(len(received(inbox)), 1)
        # The AWS managed key does not let EventBridge in.
        managed = notification_topic(unique("notify"), [rule_arn], "alias/aws/sns")
        client("events").put_targets(Rule=rule_name, Targets=[{"Id": "notify", "Arn": managed}])
        harness("DELETE", "/_harness/event-deliveries", query=f"?rule={rule_name}")
        set_execution(pipeline=pipeline, status="Failed")
        self.assertIn("alias/aws/sns", deliveries(rule_name)[0]["problem"])

    def test_put_events_refuses_aws_sources_and_routes_custom_ones(self):
        events = client("events")
        rule_name = unique("rule")
        rule_arn = events.put_rule(Name=rule_name, EventPattern=json.dumps({"source": ["com.example.release"], "detail": {"app": [{"prefix": "web"}]}}))["RuleArn"]
        topic = notification_topic(unique("notify"), [rule_arn])
        inbox = subscribed_queue(topic)
        events.put_targets(Rule=rule_name, Targets=[{"Id": "app", "Arn": topic, "InputPath": "$.detail.app"}, {"Id": "fixed", "Arn": topic, "Input": '{"fixed": true}'}])
        answer = events.put_events(
            Entries=[
                {"Source": "aws.codepipeline", "DetailType": "CodePipeline Pipeline Execution State Change", "Detail": json.dumps(PIPELINE_FAILED_EVENT["detail"])},
                {"Source": "com.example.release", "DetailType": "Release", "Detail": json.dumps({"app": "web-frontend"})},
                {"Source": "com.example.release", "DetailType": "Release", "Detail": json.dumps({"app": "api"})},
            ]
        )
        self.assertEqual(answer["FailedEntryCount"], 1)
        self.assertEqual(answer["Entries"][0]["ErrorCode"], "NotAuthorizedForSourceException")
        self.assertTrue(all("EventId" in e for e in answer["Entries"][1:]))
        self.assertEqual(sorted(received(inbox)), sorted(['"web-frontend"', '{"fixed": true}']))
        # A disabled rule matches nothing.
        events.disable_rule(Name=rule_name)
        events.put_events(Entries=[{"Source": "com.example.release", "DetailType": "Release", "Detail": json.dumps({"app": "web"})}])
        self.assertEqual(received(inbox), [])

    def test_a_codepipeline_target_starts_an_execution_with_its_role(self):
        events, iam, codepipeline = client("events"), client("iam"), client("codepipeline")
        pipeline = self.pipeline()
        rule_name = unique("rule")
        rule_arn = events.put_rule(Name=rule_name, EventPattern=json.dumps({"source": ["com.example.release"]}))["RuleArn"]
        role_name = f"{pipeline}-events"
        events.put_targets(Rule=rule_name, Targets=[{"Id": "start", "Arn": pipeline_arn(pipeline), "RoleArn": f"arn:aws:iam::{DEFAULT}:role/{role_name}"}])
        release = [{"Source": "com.example.release", "DetailType": "Release", "Detail": "{}"}]
        events.put_events(Entries=release)
        self.assertIn("does not exist", deliveries(rule_name)[-1]["problem"])
        events_trust = trust([{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole", "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}])
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=events_trust)
        events.put_events(Entries=release)
        self.assertTrue(deliveries(rule_name)[-1]["delivered"])
        [summary] = codepipeline.list_pipeline_executions(pipelineName=pipeline)["pipelineExecutionSummaries"]
        self.assertEqual((summary["status"], summary["trigger"]), ("InProgress", {"triggerType": "CloudWatchEvent", "triggerDetail": rule_arn}))


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class SnsEmailConfirmation(unittest.TestCase):
    """An e-mail subscription is pending until its recipient confirms it, as in AWS."""

    def test_an_email_subscription_is_pending_until_confirmed(self):
        sns = client("sns")
        topic = sns.create_topic(Name=unique("alerts"))["TopicArn"]
        self.assertEqual(sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="a@example.com")["SubscriptionArn"], "pending confirmation")
        arn = sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="b@example.com", ReturnSubscriptionArn=True)["SubscriptionArn"]
        self.assertTrue(arn.startswith(topic + ":"), arn)
        self.assertEqual(sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]["PendingConfirmation"], "true")
        listed = lambda: {s["Endpoint"]: s["SubscriptionArn"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}
        self.assertEqual(listed(), {"a@example.com": "PendingConfirmation", "b@example.com": "PendingConfirmation"})

        request = urllib.request.Request(
            f"{ENDPOINT}/_harness/sns-confirmations", method="POST",
            data=json.dumps({"topicArn": topic, "endpoint": "b@example.com"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as r:
            self.assertEqual(json.loads(r.read())["subscriptionArn"], arn)
        self.assertEqual(listed(), {"a@example.com": "PendingConfirmation", "b@example.com": arn})
        self.assertEqual(sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]["PendingConfirmation"], "false")
        # Other protocols need no confirmation here.
        queue = client("sqs").create_queue(QueueName=unique("q"))["QueueUrl"]
        queue_arn = client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.assertTrue(sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"].startswith(topic))


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class Ec2ClientToken(unittest.TestCase):
    """CreateRouteTable with a ClientToken seen before answers the table it made, as EC2's
    idempotency does; another token makes another table."""

    def test_a_repeated_token_makes_one_route_table(self):
        ec2 = client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        token = unique("token")
        first = ec2.create_route_table(VpcId=vpc, ClientToken=token)["RouteTable"]["RouteTableId"]
        again = ec2.create_route_table(VpcId=vpc, ClientToken=token)["RouteTable"]["RouteTableId"]
        other = ec2.create_route_table(VpcId=vpc, ClientToken=unique("token"))["RouteTable"]["RouteTableId"]
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)
        tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
        self.assertEqual(len(tables), 3, tables)  # the main table, and the two made


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class TaggingApi(unittest.TestCase):
    """GetResources, as AWS serves it, covers ECR repositories, CodePipeline pipelines and
    EventBridge rules with their tags (beside KMS, SNS, logs and alarms), filtered by tags and
    by service."""

    def test_repositories_pipelines_and_rules_are_found_by_their_tags(self):
        owner = unique("owner")
        tags = [{"Key": "owner", "Value": owner}]
        repository = client("ecr").create_repository(
            repositoryName=unique("repo"), tags=tags
        )["repository"]["repositoryArn"]
        name, _ = CodePipeline.create(self, tags=[{"key": "owner", "value": owner}])
        pipeline = client("codepipeline").get_pipeline(name=name)["metadata"]["pipelineArn"]
        rule = client("events").put_rule(
            Name=unique("rule"), EventPattern=json.dumps({"source": ["aws.codepipeline"]}), Tags=tags
        )["RuleArn"]
        topic = client("sns").create_topic(Name=unique("topic"), Tags=tags)["TopicArn"]
        client("ecr").create_repository(repositoryName=unique("other"), tags=[{"Key": "owner", "Value": "someone else"}])
        tagging = client("resourcegroupstaggingapi")
        pages = tagging.get_paginator("get_resources").paginate(
            TagFilters=[{"Key": "owner", "Values": [owner]}],
            ResourceTypeFilters=["ecr", "codepipeline", "events", "sns"],
        )
        found = {r["ResourceARN"]: r["Tags"] for page in pages for r in page["ResourceTagMappingList"]}
        self.assertEqual(set(found), {repository, pipeline, rule, topic})
        for arn, got in found.items():
            self.assertEqual(got, [{"Key": "owner", "Value": owner}], arn)
        only_rules = tagging.get_resources(
            TagFilters=[{"Key": "owner", "Values": [owner]}], ResourceTypeFilters=["events"]
        )["ResourceTagMappingList"]
        self.assertEqual([r["ResourceARN"] for r in only_rules], [rule])


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class IamPropagation(ServiceErrors, unittest.TestCase):
    """A role a test chose to propagate slowly is refused, as not there, by STS and by resource
    policies until its delay has passed, then accepted; roles outside the chosen names are seen at
    once; every refusal is in the harness's record."""

    def test_a_new_role_is_refused_until_it_has_propagated(self):
        import time

        iam, sts, kms = client("iam"), client("sts"), client("kms")
        fragment = unique("slow")
        self.assertEqual(harness("POST", "/_harness/iam-propagation", {"match": fragment, "seconds": 2})[0], 200)
        name = f"{fragment}-role"
        arn = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=trust([{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT}:root"}, "Action": "sts:AssumeRole"}]),
        )["Role"]["Arn"]
        self.assertError(lambda: sts.assume_role(RoleArn=arn, RoleSessionName="session"), "AccessDenied", 403)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        policy = allow([f"arn:aws:iam::{DEFAULT}:root", arn], "kms:*")
        self.assertError(lambda: kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy), "MalformedPolicyDocumentException")
        # A role whose name does not match is seen at once.
        other = iam.create_role(
            RoleName=unique("quick"),
            AssumeRolePolicyDocument=trust([{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT}:root"}, "Action": "sts:AssumeRole"}]),
        )["Role"]["Arn"]
        sts.assume_role(RoleArn=other, RoleSessionName="session")
        deadline = time.time() + 30
        while True:
            try:
                sts.assume_role(RoleArn=arn, RoleSessionName="session")
                break
            except Exception:  # noqa: BLE001
                self.assertLess(time.time(), deadline, "the role never became visible")
                time.sleep(0.2)
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy)
        uses = {r["use"] for r in harness("GET", "/_harness/iam-propagation", query=f"?match={fragment}")[1]["refusals"]}
        self.assertTrue({"sts:AssumeRole", "a policy naming it as a principal"} <= uses, uses)
        self.assertFalse(any("quick" in r["role"] for r in harness("GET", "/_harness/iam-propagation")[1]["refusals"]))
        # A trust-policy change propagates again.
        iam.update_assume_role_policy(
            RoleName=name,
            PolicyDocument=trust([{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT}:root"}, "Action": "sts:AssumeRole"}]),
        )
        self.assertError(lambda: sts.assume_role(RoleArn=arn, RoleSessionName="session"), "AccessDenied", 403)


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class S3Notifications(unittest.TestCase):
    def test_eventbridge_delivery_is_reported(self):
        s3 = client("s3")
        bucket = unique("events")
        s3.create_bucket(Bucket=bucket)
        roots = []
        s3.meta.events.register(
            "after-call.s3.GetBucketNotificationConfiguration",
            lambda http_response, **_: roots.append(http_response.content.split(b"<", 3)[2].split()[0]),
        )
        self.assertNotIn("EventBridgeConfiguration", s3.get_bucket_notification_configuration(Bucket=bucket))
        self.assertEqual(roots, [b"NotificationConfiguration"], "AWS's root element for an empty configuration")
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        got = s3.get_bucket_notification_configuration(Bucket=bucket)
        self.assertEqual(got.get("EventBridgeConfiguration"), {})


class Ec2Network(ServiceErrors, unittest.TestCase):
    """EC2 refuses to delete what is still in use, and to associate a subnet twice."""

    def vpc(self, ec2, cidr="10.77.0.0/16"):
        return ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]

    def test_delete_vpc_with_an_attached_gateway_is_a_dependency_violation(self):
        ec2 = client("ec2")
        vpc = self.vpc(ec2)
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        message = self.assertError(lambda: ec2.delete_vpc(VpcId=vpc), "DependencyViolation")
        self.assertEqual(message, f"The vpc '{vpc}' has dependencies and cannot be deleted.")
        ec2.detach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=gateway)
        ec2.delete_vpc(VpcId=vpc)
        self.assertError(lambda: ec2.describe_vpcs(VpcIds=[vpc]), "InvalidVpcID.NotFound")

    def test_delete_vpc_with_a_security_group_is_a_dependency_violation(self):
        ec2 = client("ec2")
        vpc = self.vpc(ec2)
        group = ec2.create_security_group(GroupName=unique("sg"), Description="d", VpcId=vpc)["GroupId"]
        self.assertError(lambda: ec2.delete_vpc(VpcId=vpc), "DependencyViolation")
        ec2.delete_security_group(GroupId=group)
        # The default group goes with the VPC, as in AWS.
        ec2.delete_vpc(VpcId=vpc)
        left = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
        self.assertEqual(left, [])

    def test_an_associated_subnet_is_not_associated_again(self):
        ec2 = client("ec2")
        vpc = self.vpc(ec2)
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/24")["Subnet"]["SubnetId"]
        first = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        second = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        association = ec2.associate_route_table(RouteTableId=first, SubnetId=subnet)["AssociationId"]
        for table in (first, second):
            message = self.assertError(lambda: ec2.associate_route_table(RouteTableId=table, SubnetId=subnet), "Resource.AlreadyAssociated")
            self.assertIn(table, message)
        moved = ec2.replace_route_table_association(AssociationId=association, RouteTableId=second)["NewAssociationId"]
        tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])["RouteTables"]
        self.assertEqual([t["RouteTableId"] for t in tables], [second])
        ec2.disassociate_route_table(AssociationId=moved)
        ec2.associate_route_table(RouteTableId=first, SubnetId=subnet)

    def test_each_resource_lists_exactly_its_own_tags(self):
        # The per-resource tag lookup (a speed fix) answers as moto's scan did.
        ec2 = client("ec2")
        a, b = self.vpc(ec2, "10.81.0.0/16"), self.vpc(ec2, "10.82.0.0/16")
        ec2.create_tags(Resources=[a], Tags=[{"Key": "k", "Value": "a"}, {"Key": "Name", "Value": "first"}])
        ec2.create_tags(Resources=[b], Tags=[{"Key": "k", "Value": "b"}])
        vpcs = {v["VpcId"]: sorted((t["Key"], t["Value"]) for t in v.get("Tags", [])) for v in ec2.describe_vpcs(VpcIds=[a, b])["Vpcs"]}
        self.assertEqual(vpcs, {a: [("Name", "first"), ("k", "a")], b: [("k", "b")]})
        found = ec2.describe_vpcs(Filters=[{"Name": "tag:k", "Values": ["b"]}, {"Name": "vpc-id", "Values": [a, b]}])["Vpcs"]
        self.assertEqual([v["VpcId"] for v in found], [b])
        described = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [a]}])["Tags"]
        self.assertEqual(sorted((t["Key"], t["ResourceType"]) for t in described), [("Name", "vpc"), ("k", "vpc")])

    def test_what_moto_already_refuses_as_aws_does(self):
        # Not gaps: asserted so that a moto upgrade that loses one is noticed.
        ec2 = client("ec2")
        vpc = self.vpc(ec2)
        self.assertError(lambda: ec2.create_subnet(VpcId=vpc, CidrBlock="10.78.0.0/24"), "InvalidSubnet.Range")
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/17")["Subnet"]["SubnetId"]
        self.assertError(lambda: ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.64.0/18"), "InvalidSubnet.Conflict")
        self.assertError(lambda: ec2.delete_vpc(VpcId=vpc), "DependencyViolation")
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        self.assertError(lambda: ec2.delete_route_table(RouteTableId=table), "DependencyViolation")
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        self.assertError(lambda: ec2.delete_internet_gateway(InternetGatewayId=gateway), "DependencyViolation")
        group = ec2.create_security_group(GroupName=unique("sg"), Description="d", VpcId=vpc)["GroupId"]
        rule = [{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rule)
        self.assertError(lambda: ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rule), "InvalidPermission.Duplicate")
        ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=rule)
        self.assertError(lambda: ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=rule), "InvalidPermission.NotFound")
        # Tag filters select exactly the tagged resources.
        mark = unique("mark")
        ec2.create_tags(Resources=[vpc, subnet, table, gateway, group], Tags=[{"Key": "delivery-operator.dev/owner", "Value": mark}])
        by_tag = [{"Name": "tag:delivery-operator.dev/owner", "Values": [mark]}]
        self.assertEqual([v["VpcId"] for v in ec2.describe_vpcs(Filters=by_tag)["Vpcs"]], [vpc])
        self.assertEqual([s["SubnetId"] for s in ec2.describe_subnets(Filters=by_tag)["Subnets"]], [subnet])
        self.assertEqual([t["RouteTableId"] for t in ec2.describe_route_tables(Filters=by_tag)["RouteTables"]], [table])
        self.assertEqual([g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=by_tag)["InternetGateways"]], [gateway])
        self.assertEqual([g["GroupId"] for g in ec2.describe_security_groups(Filters=by_tag)["SecurityGroups"]], [group])


def ecs_harness(path: str, payload: dict | None = None, method: str | None = None):
    """A control endpoint of the harness: (HTTP status, JSON answer)."""
    import urllib.error

    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{ENDPOINT}/_harness/{path}", data=data, method=method or ("POST" if data else "GET"))
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class EcsServices(ServiceErrors, unittest.TestCase):
    """ECS keeps what CreateService and UpdateService are given, tracks deployments as AWS does,
    and refuses what AWS refuses; a test moves a deployment through /_harness/ecs-deployments."""

    def setUp(self):
        self.ecs, ec2 = client("ecs"), client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.0.0/24")["Subnet"]["SubnetId"]
        self.group = ec2.create_security_group(GroupName=unique("sg"), Description="d", VpcId=vpc)["GroupId"]
        self.cluster = unique("cluster")
        self.ecs.create_cluster(clusterName=self.cluster)
        self.family = unique("family")

    def register(self, image="repo:latest", **extra):
        return self.ecs.register_task_definition(
            family=self.family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[{"name": "app", "image": image, "essential": True, "portMappings": [{"containerPort": 8080, "protocol": "tcp"}], **extra}],
        )["taskDefinition"]["taskDefinitionArn"]

    def network(self, public="ENABLED"):
        return {"awsvpcConfiguration": {"subnets": [self.subnet], "securityGroups": [self.group], "assignPublicIp": public}}

    def create(self, name=None, **extra):
        name = name or unique("service")
        self.ecs.create_service(
            cluster=self.cluster, serviceName=name, taskDefinition=self.register(), desiredCount=1,
            launchType="FARGATE", networkConfiguration=self.network(), **extra,
        )
        return name

    def describe(self, name):
        return self.ecs.describe_services(cluster=self.cluster, services=[name])["services"][0]

    def test_create_service_keeps_deployment_configuration_grace_period_and_managed_tags(self):
        configuration = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 150, "minimumHealthyPercent": 50}
        name = self.create(deploymentConfiguration=configuration, healthCheckGracePeriodSeconds=60, enableECSManagedTags=True, propagateTags="SERVICE")
        service = self.describe(name)
        self.assertEqual(service["deploymentConfiguration"], configuration)
        self.assertEqual(service["healthCheckGracePeriodSeconds"], 60)
        self.assertEqual(service["enableECSManagedTags"], True)
        self.assertEqual(service["propagateTags"], "SERVICE")
        # Without them: AWS's defaults, the circuit breaker off.
        plain = self.describe(self.create())
        self.assertEqual(
            plain["deploymentConfiguration"],
            {"deploymentCircuitBreaker": {"enable": False, "rollback": False}, "maximumPercent": 200, "minimumHealthyPercent": 100},
        )
        self.assertNotIn("healthCheckGracePeriodSeconds", plain)
        self.assertEqual(plain["enableECSManagedTags"], False)

    def test_the_first_deployment_is_primary_and_settles(self):
        service = self.describe(self.create())
        [deployment] = service["deployments"]
        self.assertEqual(
            (deployment["status"], deployment["rolloutState"], deployment["desiredCount"], deployment["runningCount"], deployment["taskDefinition"]),
            ("PRIMARY", "COMPLETED", 1, 1, service["taskDefinition"]),
        )
        self.assertEqual((service["runningCount"], service["pendingCount"]), (1, 0))

    def test_a_count_change_updates_the_primary_deployment_and_starts_no_other(self):
        name = self.create()
        before = self.describe(name)["deployments"][0]["id"]
        self.ecs.update_service(cluster=self.cluster, service=name, desiredCount=3)
        service = self.describe(name)
        self.assertEqual([(d["id"], d["desiredCount"], d["runningCount"]) for d in service["deployments"]], [(before, 3, 3)])

    def test_a_new_task_definition_or_network_starts_a_new_deployment(self):
        name = self.create()
        first = self.describe(name)["deployments"][0]["id"]
        revision = self.register("repo:abc123")
        family_and_revision = revision.split("/")[-1]
        # Given as family:revision, stored as the revision's ARN.
        self.ecs.update_service(cluster=self.cluster, service=name, taskDefinition=family_and_revision)
        service = self.describe(name)
        self.assertEqual(service["taskDefinition"], revision)
        [deployment] = service["deployments"]
        self.assertNotEqual(deployment["id"], first)
        self.assertEqual((deployment["taskDefinition"], deployment["rolloutState"]), (revision, "COMPLETED"))
        self.ecs.update_service(cluster=self.cluster, service=name, networkConfiguration=self.network("DISABLED"))
        service = self.describe(name)
        self.assertNotEqual(service["deployments"][0]["id"], deployment["id"])
        self.assertEqual(service["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"], "DISABLED")
        # Configuration alone starts none.
        current = service["deployments"][0]["id"]
        self.ecs.update_service(
            cluster=self.cluster, service=name, healthCheckGracePeriodSeconds=30, enableECSManagedTags=True,
            deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": False}},
        )
        service = self.describe(name)
        self.assertEqual(service["deployments"][0]["id"], current)
        self.assertEqual(service["healthCheckGracePeriodSeconds"], 30)
        self.assertEqual(service["enableECSManagedTags"], True)
        self.assertEqual(
            service["deploymentConfiguration"],
            {"deploymentCircuitBreaker": {"enable": True, "rollback": False}, "maximumPercent": 200, "minimumHealthyPercent": 100},
        )

    def test_create_service_twice_and_update_of_a_deleted_service_are_refused(self):
        name = self.create()
        message = self.assertError(lambda: self.create(name), "InvalidParameterException")
        self.assertEqual(message, "Creation of service was not idempotent.")
        self.ecs.delete_service(cluster=self.cluster, service=name, force=True)
        self.assertError(lambda: self.ecs.update_service(cluster=self.cluster, service=name, desiredCount=0), "ServiceNotActiveException")
        # An inactive service's name may be used again.
        self.create(name)

    def test_delete_cluster_with_a_service_is_refused(self):
        name = self.create()
        self.assertError(lambda: self.ecs.delete_cluster(cluster=self.cluster), "ClusterContainsServicesException")
        self.ecs.delete_service(cluster=self.cluster, service=name, force=True)
        self.assertEqual(self.ecs.delete_cluster(cluster=self.cluster)["cluster"]["status"], "INACTIVE")

    def test_a_family_alone_is_its_latest_active_revision(self):
        first = self.register("repo:1")
        second = self.register("repo:2")
        self.assertEqual(self.ecs.describe_task_definition(taskDefinition=self.family)["taskDefinition"]["taskDefinitionArn"], second)
        self.ecs.deregister_task_definition(taskDefinition=second)
        self.assertEqual(self.ecs.describe_task_definition(taskDefinition=self.family)["taskDefinition"]["taskDefinitionArn"], first)
        self.ecs.deregister_task_definition(taskDefinition=first)
        message = self.assertError(lambda: self.ecs.describe_task_definition(taskDefinition=self.family), "ClientException")
        self.assertEqual(message, "Unable to describe task definition.")
        # A deregistered revision is still described by its own name.
        self.assertEqual(self.ecs.describe_task_definition(taskDefinition=second)["taskDefinition"]["status"], "INACTIVE")

    def test_harness_holds_fails_and_rolls_back_deployments(self):
        breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 200, "minimumHealthyPercent": 100}
        name = self.create(deploymentConfiguration=breaker)
        old = self.describe(name)["taskDefinition"]
        new = self.register("repo:abc123")
        self.ecs.update_service(cluster=self.cluster, service=name, taskDefinition=new)
        where = {"cluster": self.cluster, "service": name}
        status, deployments = ecs_harness("ecs-deployments", {**where, "rolloutState": "IN_PROGRESS", "runningCount": 0})
        self.assertEqual(status, 200, deployments)
        service = self.describe(name)
        self.assertEqual([(d["status"], d["rolloutState"], d["runningCount"]) for d in service["deployments"]], [("PRIMARY", "IN_PROGRESS", 0)])
        self.assertEqual((service["runningCount"], service["pendingCount"]), (0, 1))
        # A count change while it is held keeps it held.
        self.ecs.update_service(cluster=self.cluster, service=name, desiredCount=2)
        self.assertEqual(self.describe(name)["deployments"][0]["rolloutState"], "IN_PROGRESS")
        status, _ = ecs_harness("ecs-deployments", {**where, "rolloutState": "FAILED", "failedTasks": 3})
        self.assertEqual(status, 200)
        service = self.describe(name)
        rollback, failed = service["deployments"]
        self.assertEqual((failed["status"], failed["rolloutState"], failed["failedTasks"], failed["taskDefinition"]), ("ACTIVE", "FAILED", 3, new))
        self.assertEqual(failed["rolloutStateReason"], "ECS deployment circuit breaker: tasks failed to start.")
        self.assertEqual((rollback["status"], rollback["rolloutState"], rollback["taskDefinition"]), ("PRIMARY", "IN_PROGRESS", old))
        self.assertEqual(service["taskDefinition"], old)
        self.assertIn("deployment failed", service["events"][0]["message"])
        status, _ = ecs_harness("ecs-deployments", {**where, "rolloutState": "COMPLETED"})
        self.assertEqual([(d["status"], d["rolloutState"]) for d in self.describe(name)["deployments"]], [("PRIMARY", "COMPLETED")])
        status, listed = ecs_harness(f"ecs-deployments?cluster={self.cluster}&service={name}")
        self.assertEqual((status, [d["taskDefinition"] for d in listed]), (200, [old]))

    def test_harness_fails_a_deployment_without_rollback_and_refuses_without_a_circuit_breaker(self):
        breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}
        name = self.create(deploymentConfiguration=breaker)
        where = {"cluster": self.cluster, "service": name}
        status, _ = ecs_harness("ecs-deployments", {**where, "rolloutState": "FAILED", "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start."})
        self.assertEqual(status, 200)
        [deployment] = self.describe(name)["deployments"]
        self.assertEqual((deployment["status"], deployment["rolloutState"]), ("PRIMARY", "FAILED"))
        plain = self.create()
        status, answer = ecs_harness("ecs-deployments", {"cluster": self.cluster, "service": plain, "rolloutState": "FAILED"})
        self.assertEqual(status, 400, answer)
        self.assertIn("circuit breaker", answer["error"])
        self.assertEqual(ecs_harness("ecs-deployments", {**where, "rolloutState": "DONE"})[0], 400)
        self.assertEqual(ecs_harness("ecs-deployments", {**where, "state": "FAILED"})[0], 400)
        self.assertEqual(ecs_harness("ecs-deployments", {"cluster": self.cluster, "service": "missing", "rolloutState": "FAILED"})[0], 404)

    def test_what_moto_already_does_as_aws_does(self):
        # Not gaps: asserted so that a moto upgrade that loses one is noticed.
        cluster = unique("insights")
        created = self.ecs.create_cluster(
            clusterName=cluster,
            settings=[{"name": "containerInsights", "value": "enabled"}],
            capacityProviders=["FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1, "base": 0}],
            tags=[{"key": "k", "value": "v"}],
        )["cluster"]
        [described] = self.ecs.describe_clusters(clusters=[cluster], include=["SETTINGS", "TAGS"])["clusters"]
        for c in (created, described):
            self.assertEqual(c["settings"], [{"name": "containerInsights", "value": "enabled"}])
            self.assertEqual(c["capacityProviders"], ["FARGATE"])
            self.assertEqual(c["defaultCapacityProviderStrategy"], [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}])
            self.assertEqual(c["tags"], [{"key": "k", "value": "v"}])
        self.ecs.update_cluster(cluster=cluster, settings=[{"name": "containerInsights", "value": "disabled"}])
        self.ecs.put_cluster_capacity_providers(cluster=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"], defaultCapacityProviderStrategy=[])
        [c] = self.ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"]
        self.assertEqual((c["settings"][0]["value"], c["capacityProviders"], c["defaultCapacityProviderStrategy"]), ("disabled", ["FARGATE", "FARGATE_SPOT"], []))
        # Every field the operator sets on a container comes back as it was given.
        container = {
            "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
            "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0},
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p"}},
        }
        arn = self.register(**container)
        got = self.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])["taskDefinition"]
        [app] = got["containerDefinitions"]
        for field, value in container.items():
            self.assertEqual(app[field], value, field)
        self.assertEqual((got["cpu"], got["memory"], got["networkMode"], got["requiresCompatibilities"]), ("256", "512", "awsvpc", ["FARGATE"]))
        # DeleteTaskDefinitions takes only deregistered revisions.
        [failure] = self.ecs.delete_task_definitions(taskDefinitions=[arn])["failures"]
        self.assertIn("ACTIVE", failure["reason"])
        self.ecs.deregister_task_definition(taskDefinition=arn)
        deleted = self.ecs.delete_task_definitions(taskDefinitions=[arn])
        self.assertEqual((deleted["failures"], deleted["taskDefinitions"][0]["status"]), ([], "DELETE_IN_PROGRESS"))
        listed = self.ecs.list_task_definitions(familyPrefix=self.family, status="INACTIVE")["taskDefinitionArns"]
        self.assertNotIn(arn, listed)


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class Record(unittest.TestCase):
    def test_every_request_is_recorded_with_its_service_id_operation_and_status(self):
        k = key()
        client("logs", k).describe_log_groups()
        client("events", k).list_rules()
        client("ecr", k).describe_repositories()
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError):
            client("iam", k).get_role(RoleName=unique("missing"))
        seen = [(r["service"], r["operation"], r["status"], r["account"]) for r in records(k)]
        self.assertEqual(
            seen,
            [
                ("CloudWatch Logs", "DescribeLogGroups", 200, DEFAULT),
                ("EventBridge", "ListRules", 200, DEFAULT),
                ("ECR", "DescribeRepositories", 200, DEFAULT),
                ("IAM", "GetRole", 404, DEFAULT),
            ],
        )


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class RunSupport(ServiceErrors, unittest.TestCase):
    """What the pipeline runs rely on: bucket policies' explicit denies (Principal and NotPrincipal
    honoured, every operation), ECR lifecycle policies applied on push, scans on push."""

    def test_a_bucket_policy_deny_applies_to_its_principals_on_every_operation(self):
        s3 = client("s3")
        bucket = unique("bucket")
        s3.create_bucket(Bucket=bucket)

        def deny(**principal) -> str:
            return json.dumps(document({"Effect": "Deny", **principal, "Action": "s3:GetBucketVersioning", "Resource": f"arn:aws:s3:::{bucket}"}))

        s3.put_bucket_policy(Bucket=bucket, Policy=deny(Principal={"AWS": "arn:aws:iam::111111111111:root"}))
        s3.get_bucket_versioning(Bucket=bucket)  # another account's principals are denied, not us
        s3.put_bucket_policy(Bucket=bucket, Policy=deny(NotPrincipal={"AWS": f"arn:aws:iam::{DEFAULT}:root"}))
        s3.get_bucket_versioning(Bucket=bucket)  # everyone but us
        s3.put_bucket_policy(Bucket=bucket, Policy=deny(Principal="*"))
        message = self.assertError(lambda: s3.get_bucket_versioning(Bucket=bucket), "AccessDenied", 403)
        self.assertIn("s3:GetBucketVersioning", message)
        self.assertIn("explicit deny in a resource-based policy", message)
        s3.get_bucket_location(Bucket=bucket)  # another action: not denied
        s3.delete_bucket_policy(Bucket=bucket)
        s3.get_bucket_versioning(Bucket=bucket)

    def push(self, ecr, repository: str, tag: str) -> None:
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:" + uuid.uuid4().hex * 2},
                    "layers": []}
        ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=json.dumps(manifest))

    def tags(self, ecr, repository: str) -> set[str]:
        found = set()
        for page in ecr.get_paginator("list_images").paginate(repositoryName=repository):
            found.update(i.get("imageTag") for i in page["imageIds"] if i.get("imageTag"))
        return found

    def test_a_lifecycle_policy_expires_on_push_and_a_higher_rule_protects(self):
        ecr = client("ecr")
        repository = unique("lifecycle")
        ecr.create_repository(repositoryName=repository, imageScanningConfiguration={"scanOnPush": True})
        rules = [
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["prod-*"], "countType": "imageCountMoreThan", "countNumber": 1000}, "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}},
        ]
        ecr.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=json.dumps({"rules": rules}))
        for tag in ("prod-1", "b1", "b2", "b3", "b4"):
            self.push(ecr, repository, tag)
        # prod-1 is selected by rule 1 (never expired); rule 2 keeps the newest two of the rest.
        self.assertEqual(self.tags(ecr, repository), {"prod-1", "b3", "b4"})
        # Scan on push: a completed scan, without findings until a test gives some.
        scan = ecr.describe_image_scan_findings(repositoryName=repository, imageId={"imageTag": "b4"})
        self.assertEqual(scan["imageScanStatus"]["status"], "COMPLETE")
        self.assertEqual(scan["imageScanFindings"]["findingSeverityCounts"], {})
        request = urllib.request.Request(
            f"{ENDPOINT}/_harness/scan-findings", method="POST",
            data=json.dumps({"repository": repository, "findings": [{"name": "CVE-1", "severity": "HIGH"}]}).encode(),
        )
        urllib.request.urlopen(request).read()
        scan = ecr.describe_image_scan_findings(repositoryName=repository, imageId={"imageTag": "b4"})
        self.assertEqual(scan["imageScanFindings"]["findingSeverityCounts"], {"HIGH": 1})
        self.assertEqual([f["name"] for f in scan["imageScanFindings"]["findings"]], ["CVE-1"])
        self.assertError(lambda: ecr.describe_image_scan_findings(repositoryName=repository, imageId={"imageTag": "b1"}), "ImageNotFoundException")


# The performance indexes (launcher.perf_*) must not change an answer. The EC2 one is compared
# in a fresh interpreter with moto's own functions (before and after the patch, on the same
# resources); the others against the emulator, with the full scan they replace as the oracle.
EC2_EQUIVALENCE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import launcher
from moto.ec2.models import ec2_backends

launcher.fix_ec2_tags_are_read_per_resource()
ec2 = ec2_backends["123456789012"]["us-east-1"]
for i in range(12):
    owner, env, part = f"ns/p{i % 4}", ("staging", "production")[i % 2], "net"
    vpc = ec2.create_vpc(cidr_block=f"10.{i}.0.0/16")
    subnet = ec2.create_subnet(vpc.id, f"10.{i}.1.0/24", availability_zone="us-east-1a")
    table = ec2.create_route_table(vpc.id)
    group = ec2.create_security_group(f"g{i}", "a group", vpc.id)
    igw = ec2.create_internet_gateway()
    ec2.attach_internet_gateway(igw.id, vpc.id)
    tags = {"owner": owner, "env": env, "part": part, "odd[1]": "x*y?"}
    if i % 3 == 0:
        tags.pop("env")
    if i % 5 == 0:
        tags["owner"] = ""
    ec2.create_tags([vpc.id, subnet.id, table.id, group.id, igw.id], tags)

FILTERS = [
    {"tag:owner": ["ns/p1"]},
    {"tag:owner": ["ns/p1", "ns/p2"], "tag:env": ["staging"]},
    {"tag:owner": ["ns/p2"], "tag:env": ["production"], "tag:part": ["net"]},
    {"tag:env": ["staging"], "tag:owner": ["ns/p3"]},
    {"tag:owner": [""]},
    {"tag:owner": []},
    {"tag:missing": ["x"]},
    {"tag:owner": ["ns/p*"], "tag:env": ["staging"]},
    {"tag:owner": ["ns/p?"]},
    {"tag:owner": ["[n]s/p1"]},
    {"tag:odd[1]": ["x*y?"]},
    {"tag-key": ["env"], "tag:owner": ["ns/p0"]},
    {"tag-value": ["staging"]},
    {"tag:owner": ["ns/p1"], "no-such-filter": ["x"]},
    {"no-such-filter": ["x"], "tag:owner": ["no-one"]},
    {"tag:owner": ["no-one"], "no-such-filter": ["x"]},
    {"vpc-id": [], "tag:owner": ["ns/p1"]},
]

def answer(call):
    try:
        return [getattr(r, "id", None) for r in call()]
    except Exception as e:
        return f"{type(e).__name__}: {e}"

def answers():
    out = []
    for f in FILTERS:
        out.append([
            answer(lambda: ec2.describe_vpcs(filters=f)),
            answer(lambda: ec2.describe_subnets(filters=f)),
            answer(lambda: ec2.describe_route_tables(filters=f)),
            answer(lambda: ec2.describe_security_groups(filters=f)),
            answer(lambda: ec2.describe_internet_gateways(filters=f)),
        ])
    return out

before = answers()
launcher.perf_ec2_tag_filters()
after = answers()
print(json.dumps({"before": before, "after": after, "fast": launcher.__name__}))
"""

TAGGING_EQUIVALENCE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ.pop("AWS_ENDPOINT_URL", None)  # the mock, not the running emulator
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
import boto3
from moto import mock_aws
import launcher

CASES = [
    {},
    {"TagFilters": [{"Key": "owner", "Values": ["a"]}]},
    {"TagFilters": [{"Key": "owner", "Values": ["a", "b"]}, {"Key": "tier"}]},
    {"TagFilters": [{"Key": "owner", "Values": ["b"]}, {"Key": "tier", "Values": ["silver"]}], "ResourceTypeFilters": ["kms", "sns:topic"]},
    {"TagFilters": [{"Key": "owner"}], "ResourceTypeFilters": ["logs", "kms:key"]},
    {"TagFilters": [{"Key": "owner", "Values": [""]}]},
    {"TagFilters": [{"Key": "nobody", "Values": ["a"]}]},
    {"ResourceTypeFilters": ["sns"]},
]

with mock_aws():
    kms, sns, logs = (boto3.client(s, region_name="us-east-1") for s in ("kms", "sns", "logs"))
    for i in range(9):
        tags = {"owner": "abc"[i % 3] if i % 4 else "", "tier": ["gold", "silver"][i % 2]}
        if i % 5 == 0:
            tags.pop("tier")
        kms.create_key(Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()])
        sns.create_topic(Name=f"t{i}", Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        logs.create_log_group(logGroupName=f"/g/{i}", tags=tags)
    kms.create_key()
    sns.create_topic(Name="untagged")
    tagging = boto3.client("resourcegroupstaggingapi", region_name="us-east-1")

    def answers():
        out = []
        for case in CASES:
            pages = tagging.get_paginator("get_resources").paginate(ResourcesPerPage=4, **case)
            out.append([(r["ResourceARN"], r["Tags"]) for p in pages for r in p["ResourceTagMappingList"]])
        return out

    before = answers()
    launcher.fix_tagging_api_covers_ecr_codepipeline_and_event_rules()
    after = answers()
print(json.dumps({"before": before, "after": after}))
"""

KMS_EQUIVALENCE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ.pop("AWS_ENDPOINT_URL", None)  # the mock, not the running emulator
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
import launcher

def outcome(call):
    try:
        answer = call()
        answer.pop("ResponseMetadata", None)
        return {"ok": sorted(answer)}
    except ClientError as e:
        return {"error": e.response["Error"]["Code"]}

def answers(kms):
    out = []
    for spec in ("SYMMETRIC_DEFAULT", "RSA_2048", "ECC_NIST_P256"):
        usage = "ENCRYPT_DECRYPT" if spec != "ECC_NIST_P256" else "SIGN_VERIFY"
        key = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
        out.append(outcome(lambda: kms.describe_key(KeyId=key)))
        out.append(outcome(lambda: kms.get_public_key(KeyId=key)))
        out.append(outcome(lambda: kms.sign(KeyId=key, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")))
        if usage == "ENCRYPT_DECRYPT":
            blob = kms.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
            out.append(kms.decrypt(CiphertextBlob=blob)["Plaintext"].decode())
    return out

with mock_aws():
    kms = boto3.client("kms", region_name="us-east-1")
    before = answers(kms)
    launcher.perf_kms_symmetric_keys_skip_the_rsa_key()
    after = answers(kms)
    from moto.kms.models import kms_backends
    lazy = [type(k.private_key).__name__ for k in kms_backends["123456789012"]["us-east-1"].keys.values()]
print(json.dumps({"before": before, "after": after, "lazy": lazy}))
"""


def in_fresh_interpreter(script: str) -> dict:
    """Runs `script` (which patches moto itself and prints one JSON line last) in a new Python
    process, so moto's unpatched paths can be compared with the patched ones."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", script, here], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@unittest.skipUnless(ENDPOINT, "needs a running emulator (AWS_ENDPOINT_URL)")
class PerformanceIndexes(unittest.TestCase):
    """launcher.perf_*: indexes and caches that keep moto's answers exactly as they were."""

    def test_ec2_tag_filters_answer_as_moto_does(self):
        result = in_fresh_interpreter(EC2_EQUIVALENCE)
        self.assertEqual(result["after"], result["before"])
        # The cases are not vacuous: some answers hold resources, some are errors.
        flat = [a for case in result["before"] for a in case]
        self.assertTrue(any(isinstance(a, list) and a for a in flat))
        self.assertTrue(any(isinstance(a, str) for a in flat))

    def test_get_resources_answers_as_moto_does(self):
        """moto's own GetResources (every backend read whole, moto's tag matcher) and the fixed
        one (launcher.fix_tagging_api_covers_ecr_codepipeline_and_event_rules, with its fast
        walk of the tag filter's candidates) give the same pages for KMS, SNS and Logs."""
        result = in_fresh_interpreter(TAGGING_EQUIVALENCE)
        self.assertEqual(result["after"], result["before"])
        self.assertTrue(all(result["before"][i] for i in (1, 2, 3, 4, 5)), [len(a) for a in result["before"]])

    def test_kms_keys_answer_as_moto_does(self):
        """Symmetric keys made without their RSA key (launcher.perf_kms_symmetric_keys_skip_the_rsa_key)
        answer DescribeKey, GetPublicKey, Sign, Encrypt and Decrypt as moto's do."""
        result = in_fresh_interpreter(KMS_EQUIVALENCE)
        self.assertEqual(result["after"], result["before"])
        self.assertIn("PrivateKeyOnFirstUse", result["lazy"])

    def test_ec2_tag_filters_through_the_api(self):
        """A literal value (the fast path) finds what the same value as a one-letter fnmatch
        class (moto's own path) finds, for each Describe* the operator filters by tags."""
        ec2 = client("ec2")
        owner = unique("owner")
        vpc = ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.78.1.0/24")["Subnet"]["SubnetId"]
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        group = ec2.create_security_group(GroupName=unique("g"), Description="d", VpcId=vpc)["GroupId"]
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.create_tags(Resources=[vpc, subnet, table, group, igw], Tags=[{"Key": "owner", "Value": owner}, {"Key": "part", "Value": "a"}])
        calls = [
            (ec2.describe_vpcs, "Vpcs", "VpcId", vpc),
            (ec2.describe_subnets, "Subnets", "SubnetId", subnet),
            (ec2.describe_route_tables, "RouteTables", "RouteTableId", table),
            (ec2.describe_security_groups, "SecurityGroups", "GroupId", group),
            (ec2.describe_internet_gateways, "InternetGateways", "InternetGatewayId", igw),
        ]
        for call, field, id_field, made in calls:
            def ids(value, part="a"):
                found = call(Filters=[{"Name": "tag:owner", "Values": [value]}, {"Name": "tag:part", "Values": [part]}])[field]
                return [r[id_field] for r in found]

            self.assertEqual(ids(owner), [made], field)
            self.assertEqual(ids(owner), ids("[" + owner[0] + "]" + owner[1:]), field)
            self.assertEqual(ids(owner, "b"), [], field)

    def test_roles_are_found_by_name_and_arn_as_they_come_and_go(self):
        from botocore.exceptions import ClientError

        iam = client("iam")
        name = unique("perf-role")
        document = trust([{"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole"}])
        with self.assertRaises(ClientError) as missing:
            iam.get_role(RoleName=name)
        self.assertEqual(missing.exception.response["Error"]["Code"], "NoSuchEntity")
        self.assertEqual(missing.exception.response["Error"]["Message"], f"Role {name} not found")
        arn = iam.create_role(RoleName=name, Path="/perf/", AssumeRolePolicyDocument=document)["Role"]["Arn"]
        self.assertEqual(iam.get_role(RoleName=name)["Role"]["Arn"], arn)
        with self.assertRaises(ClientError) as taken:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=document)
        self.assertEqual(taken.exception.response["Error"]["Code"], "EntityAlreadyExists")
        # A resource policy naming the role by ARN finds it (launcher.principal_exists).
        topic = client("sns").create_topic(Name=unique("perf-topic"))["TopicArn"]
        client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=allow(arn, "sns:Publish", topic))
        listed = [r["Arn"] for page in iam.get_paginator("list_roles").paginate(PathPrefix="/perf/") for r in page["Roles"]]
        self.assertIn(arn, listed)
        iam.delete_role(RoleName=name)
        with self.assertRaises(ClientError) as gone:
            iam.get_role(RoleName=name)
        self.assertEqual(gone.exception.response["Error"]["Code"], "NoSuchEntity")
        with self.assertRaises(ClientError):
            client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=allow(arn, "sns:Publish", topic))
        again = iam.create_role(RoleName=name, AssumeRolePolicyDocument=document)["Role"]["Arn"]
        self.assertEqual(iam.get_role(RoleName=name)["Role"]["Arn"], again)
        self.assertNotEqual(again, arn)  # another path: another ARN

    def test_get_resources_answers_what_the_full_listing_holds(self):
        """TagFilters and ResourceTypeFilters answer, in the same order, the resources that the
        unfiltered listing holds and the filters select."""
        owner = unique("owner")
        other = unique("owner")
        tags = lambda o, extra=(): [{"Key": "owner", "Value": o}, *extra]  # noqa: E731
        made = []
        for o in (owner, other, owner):
            made.append(client("sns").create_topic(Name=unique("t"), Tags=tags(o, [{"Key": "tier", "Value": "gold"}]))["TopicArn"])
            made.append(client("logs").create_log_group(logGroupName=unique("/perf/g"), tags={"owner": o}) or None)
            made.append(client("ecr").create_repository(repositoryName=unique("perf"), tags=tags(o))["repository"]["repositoryArn"])
            made.append(client("events").put_rule(Name=unique("perf"), ScheduleExpression="rate(1 day)", Tags=tags(o))["RuleArn"])
        tagging = client("resourcegroupstaggingapi")

        def listing(**kwargs):
            pages = tagging.get_paginator("get_resources").paginate(**kwargs)
            return [(r["ResourceARN"], {t["Key"]: t["Value"] for t in r["Tags"]}) for p in pages for r in p["ResourceTagMappingList"]]

        everything = listing()
        types = ["sns", "logs", "ecr", "events:rule", "kms:key"]

        def kind_ok(arn):
            service, kind = arn.split(":")[2], arn.split(":")[5].split("/")[0]
            return service in types or f"{service}:{kind}" in types

        for filters in (
            [{"Key": "owner", "Values": [owner]}],
            [{"Key": "owner", "Values": [owner, other]}, {"Key": "tier"}],
            [{"Key": "owner", "Values": [owner]}, {"Key": "tier", "Values": ["silver"]}],
            [{"Key": "owner"}],
        ):
            expected = [
                (arn, t) for arn, t in everything
                if kind_ok(arn) and all(f["Key"] in t and (not f.get("Values") or t[f["Key"]] in f["Values"]) for f in filters)
            ]
            self.assertEqual(listing(TagFilters=filters, ResourceTypeFilters=types), expected, filters)
        self.assertEqual(len(listing(TagFilters=[{"Key": "owner", "Values": [owner]}], ResourceTypeFilters=types)), 8)


if __name__ == "__main__":
    unittest.main(verbosity=2)
