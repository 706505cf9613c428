"""IAM policy evaluation as AWS does it, for the parts the harness evaluates itself: condition
blocks (bucket policies, role trust policies) and role trust policies for sts:AssumeRole.

References:
- IAM User Guide, "IAM JSON policy elements: Condition operators"
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
- IAM User Guide, "Condition keys that are not present in the request"
  (negated operators match when the key is absent; ...IfExists; Null)
- IAM User Guide, "Single-valued vs. multivalued context keys" (ForAllValues / ForAnyValue)
- IAM User Guide, "Policy evaluation logic" (an explicit Deny overrides any Allow)
- IAM User Guide, "AWS JSON policy elements: Principal" (account, role, assumed-role session)
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import sys
from typing import Any


class UnsupportedPolicy(Exception):
    """A policy uses an operator or element this evaluator does not implement. Raised loudly (the
    caller gets HTTP 500): a silent "neutral" would let a test pass that AWS would fail."""


def log(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr, flush=True)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """`*` matches any run of characters, `?` any single character; nothing else is special."""
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def arn_match(pattern: str, value: str) -> bool:
    """ArnEquals/ArnLike: each of the six colon-delimited components is matched separately, with
    `*` and `?` wildcards."""
    p = pattern.split(":", 5)
    v = value.split(":", 5)
    if len(p) != 6 or len(v) != 6:
        return False
    return all(wildcard_match(a, b) for a, b in zip(p, v))


def _number(value: Any) -> float:
    return float(value)


def _date(value: Any) -> datetime.datetime:
    text = _text(value)
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return datetime.datetime.fromtimestamp(float(text), tz=datetime.timezone.utc)
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _ip(actual: Any, expected: Any) -> bool:
    try:
        return ipaddress.ip_address(_text(actual)) in ipaddress.ip_network(_text(expected), strict=False)
    except ValueError:
        return False


# Base operator -> (matches one actual value against one expected value, negated).
# A negated operator is "not (matches any expected value)".
_OPERATORS = {
    "StringEquals": (lambda a, e: _text(a) == _text(e), False),
    "StringNotEquals": (lambda a, e: _text(a) == _text(e), True),
    "StringEqualsIgnoreCase": (lambda a, e: _text(a).lower() == _text(e).lower(), False),
    "StringNotEqualsIgnoreCase": (lambda a, e: _text(a).lower() == _text(e).lower(), True),
    "StringLike": (lambda a, e: wildcard_match(_text(e), _text(a)), False),
    "StringNotLike": (lambda a, e: wildcard_match(_text(e), _text(a)), True),
    "NumericEquals": (lambda a, e: _number(a) == _number(e), False),
    "NumericNotEquals": (lambda a, e: _number(a) == _number(e), True),
    "NumericLessThan": (lambda a, e: _number(a) < _number(e), False),
    "NumericLessThanEquals": (lambda a, e: _number(a) <= _number(e), False),
    "NumericGreaterThan": (lambda a, e: _number(a) > _number(e), False),
    "NumericGreaterThanEquals": (lambda a, e: _number(a) >= _number(e), False),
    "DateEquals": (lambda a, e: _date(a) == _date(e), False),
    "DateNotEquals": (lambda a, e: _date(a) == _date(e), True),
    "DateLessThan": (lambda a, e: _date(a) < _date(e), False),
    "DateLessThanEquals": (lambda a, e: _date(a) <= _date(e), False),
    "DateGreaterThan": (lambda a, e: _date(a) > _date(e), False),
    "DateGreaterThanEquals": (lambda a, e: _date(a) >= _date(e), False),
    "Bool": (lambda a, e: _text(a).lower() == _text(e).lower(), False),
    "BinaryEquals": (lambda a, e: _text(a) == _text(e), False),
    "IpAddress": (_ip, False),
    "NotIpAddress": (_ip, True),
    "ArnEquals": (lambda a, e: arn_match(_text(e), _text(a)), False),
    "ArnLike": (lambda a, e: arn_match(_text(e), _text(a)), False),
    "ArnNotEquals": (lambda a, e: arn_match(_text(e), _text(a)), True),
    "ArnNotLike": (lambda a, e: arn_match(_text(e), _text(a)), True),
}

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _substitute(expected: Any, context: dict[str, Any]) -> Any:
    """Policy variables (${aws:username}, ...) take their value from the request context; one that
    cannot be resolved makes the value unmatchable, as in AWS."""
    if not isinstance(expected, str) or "${" not in expected:
        return expected

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in ("*", "?", "$"):
            return name
        value = context.get(name)
        if value is None or isinstance(value, list):
            raise _Unresolvable()
        return _text(value)

    return _VARIABLE.sub(replace, expected)


class _Unresolvable(Exception):
    pass


def _lookup(context: dict[str, Any], key: str) -> Any:
    if key in context:
        return context[key]
    lowered = key.lower()  # condition key names are case-insensitive
    for k, v in context.items():
        if k.lower() == lowered:
            return v
    return None


def condition_operator_matches(operator: str, keys: dict[str, Any], context: dict[str, Any]) -> bool:
    """One operator block of a Condition: every key in it must match (AND)."""
    qualifier = None
    base = operator
    if ":" in operator:
        qualifier, base = operator.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise UnsupportedPolicy(f"unknown condition set operator {qualifier!r} in {operator!r}")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    if not isinstance(keys, dict):
        raise UnsupportedPolicy(f"condition operator {operator!r} must map keys to values")

    for key, expected_raw in keys.items():
        actual = _lookup(context, key)
        expected_values = _as_list(expected_raw)
        if base == "Null":
            if qualifier or if_exists:
                raise UnsupportedPolicy(f"unsupported condition operator {operator!r}")
            want_absent = any(_text(e).lower() == "true" for e in expected_values)
            absent = actual is None or actual == []
            if absent != want_absent:
                return False
            continue
        if base not in _OPERATORS:
            raise UnsupportedPolicy(f"unknown condition operator {operator!r}")
        match_one, negated = _OPERATORS[base]
        try:
            expected_values = [_substitute(e, context) for e in expected_values]
        except _Unresolvable:
            expected_values = []

        def matches_any(value: Any) -> bool:
            try:
                return any(match_one(value, e) for e in expected_values)
            except (TypeError, ValueError):
                return False  # a value of the wrong type (e.g. not a number) does not match

        actual_values = _as_list(actual)
        if qualifier == "ForAllValues":
            # True when every value in the request matches (vacuously true when there is none).
            ok = all((not matches_any(v)) if negated else matches_any(v) for v in actual_values)
        elif qualifier == "ForAnyValue":
            ok = any((not matches_any(v)) if negated else matches_any(v) for v in actual_values)
        elif not actual_values:
            # Key absent: ...IfExists is true; a negated operator is true; anything else is false.
            ok = if_exists or negated
        else:
            hit = any(matches_any(v) for v in actual_values)
            ok = (not hit) if negated else hit
        if not ok:
            return False
    return True


def conditions_match(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    """A Condition element matches when every operator block matches (AND across operators and
    keys, OR across the values of one key)."""
    if not isinstance(condition, dict):
        raise UnsupportedPolicy("Condition must be an object")
    return all(condition_operator_matches(op, keys, context) for op, keys in condition.items())


def action_matches(statement: dict[str, Any], action: str) -> bool:
    if "Action" in statement:
        return any(wildcard_match(_text(a), action, ignore_case=True) for a in _as_list(statement["Action"]))
    if "NotAction" in statement:
        return not any(wildcard_match(_text(a), action, ignore_case=True) for a in _as_list(statement["NotAction"]))
    return False


class Caller:
    """Who signed a request, as AWS authenticates it."""

    def __init__(self, account: str, arn: str, role_arn: str | None = None, user_id: str = ""):
        self.account = account
        self.arn = arn  # arn:aws:sts::X:assumed-role/R/S, arn:aws:iam::X:user/U, arn:aws:iam::X:root
        self.role_arn = role_arn  # for a role session: the role's ARN (aws:PrincipalArn)
        self.user_id = user_id

    @property
    def principal_arn(self) -> str:
        return self.role_arn or self.arn

    def context(self) -> dict[str, Any]:
        return {
            "aws:PrincipalAccount": self.account,
            "aws:PrincipalArn": self.principal_arn,
            "aws:userid": self.user_id,
            "aws:PrincipalType": "AssumedRole" if self.role_arn else ("Account" if self.arn.endswith(":root") else "User"),
        }

    def __repr__(self) -> str:
        return f"Caller({self.arn})"


class ServiceCaller(Caller):
    """An AWS service principal (e.g. codebuild.amazonaws.com) assuming a role on behalf of one of
    its resources. AWS sets aws:SourceAccount and aws:SourceArn to the resource's account and ARN
    for service-to-service requests, and aws:PrincipalServiceName / aws:PrincipalIsAWSService for
    the service (IAM User Guide, "AWS global condition context keys"; "The confused deputy
    problem")."""

    def __init__(self, service: str, source_account: str, source_arn: str):
        super().__init__(source_account, service)
        self.service = service
        self.source_account = source_account
        self.source_arn = source_arn

    @property
    def principal_arn(self) -> str:
        return self.service

    def context(self) -> dict[str, Any]:
        return {
            "aws:SourceAccount": self.source_account,
            "aws:SourceArn": self.source_arn,
            "aws:PrincipalServiceName": self.service,
            "aws:PrincipalIsAWSService": "true",
        }

    def __repr__(self) -> str:
        return f"ServiceCaller({self.service} for {self.source_arn})"


def principal_matches(principal: Any, caller: Caller) -> bool:
    """Principal element against a caller: "*" matches everyone. For an AWS caller: {"AWS": "*"},
    an account (ID or arn:aws:iam::X:root: any principal of that account), a role ARN (sessions of
    that role), an assumed-role session ARN, or a user ARN; Service and federated principals never
    match it. For a service caller: {"Service": its name} (a string or a list) and nothing else."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise UnsupportedPolicy(f"unsupported Principal {principal!r}")
    if isinstance(caller, ServiceCaller):
        return any(_text(v) == caller.service for v in _as_list(principal.get("Service")))
    for kind, values in principal.items():
        if kind != "AWS":
            continue
        for value in _as_list(values):
            value = _text(value)
            if value == "*":
                return True
            if re.fullmatch(r"\d{12}", value):
                if caller.account == value:
                    return True
                continue
            m = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):root", value)
            if m:
                if caller.account == m.group(1):
                    return True
                continue
            if value == caller.arn or (caller.role_arn is not None and value == caller.role_arn):
                return True
    return False


def resource_matches(statement: dict[str, Any], resource: str | None) -> bool:
    """Resource / NotResource against the ARN the request acts on (IAM JSON policy elements:
    "Resource" and "NotResource"; `*` and `?` wildcards, case-sensitive). A trust policy has
    neither element and no resource (None): its statements apply."""
    if resource is None:
        return True
    if "Resource" in statement:
        return any(wildcard_match(_text(r), resource) for r in _as_list(statement["Resource"]))
    if "NotResource" in statement:
        return not any(wildcard_match(_text(r), resource) for r in _as_list(statement["NotResource"]))
    raise UnsupportedPolicy("a statement of a resource policy needs Resource or NotResource")


def evaluate(document: Any, caller: Caller, actions: list[str], context: dict[str, Any], with_principal: bool, resource: str | None = None) -> tuple[bool, str]:
    """Returns (allowed, reason). Every action must be allowed by some statement and denied by
    none; an explicit Deny wins (IAM "Policy evaluation logic"). `resource`: the ARN acted on, for
    Resource/NotResource (None for a trust policy)."""
    doc = json.loads(document) if isinstance(document, str) else document
    statements = _as_list(doc.get("Statement"))
    allowed = {a: False for a in actions}
    for statement in statements:
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement Effect must be Allow or Deny, not {effect!r}")
        if with_principal:
            if "Principal" in statement:
                if not principal_matches(statement["Principal"], caller):
                    continue
            elif "NotPrincipal" in statement:
                if principal_matches(statement["NotPrincipal"], caller):
                    continue
            else:
                continue
        if not resource_matches(statement, resource):
            continue
        condition = statement.get("Condition")
        applies_condition = conditions_match(condition, context) if condition else True
        if not applies_condition:
            continue
        for action in actions:
            if not action_matches(statement, action):
                continue
            if effect == "Deny":
                return False, f"explicit Deny for {action} (statement {statement.get('Sid', '')!r})"
            allowed[action] = True
    missing = [a for a, ok in allowed.items() if not ok]
    if missing:
        return False, f"no statement allows {', '.join(missing)}"
    return True, "allowed"
