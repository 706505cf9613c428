"""Request validation against the AWS service models that botocore ships.

AWS validates every request against its service model before acting on it: required members,
string and list lengths, numeric ranges, enums and (where the model carries one) patterns, and
answers a violation with the service's validation error ("1 validation error detected: Value
'...' at 'aliasName' failed to satisfy constraint: Member must have length less than or equal
to 256"). moto checks a handful of these by hand. This module checks all of them, from the same
model the SDKs are generated from.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import botocore.session

# The error each service returns for a model violation, by botocore service name:
# (code, HTTP status). JSON-protocol services built on AWS's common validation answer
# ValidationException (KMS, ECR, CodeBuild, CodePipeline, CloudWatch Logs, EventBridge); a
# service whose model has no ValidationException but an InvalidParameterException answers that
# (ECS, Resource Groups Tagging API). Query-protocol services answer ValidationError (STS, IAM,
# CloudWatch); SNS answers InvalidParameter (the error code of its InvalidParameterException);
# EC2 answers InvalidParameterValue (MissingParameter for a missing required member).
QUERY_CODES = {"sns": "InvalidParameter"}


@functools.cache
def botocore_model(service_name: str):
    return botocore.session.get_session().get_service_model(service_name)


@functools.cache
def error_code(service_name: str) -> str:
    model = botocore_model(service_name)
    protocol = model.protocol
    if service_name == "ec2":
        return "InvalidParameterValue"
    if service_name in QUERY_CODES:
        return QUERY_CODES[service_name]
    if protocol == "query" or "query" in model.metadata.get("protocols", []):
        # Query services, and JSON services compatible with their query past (CloudWatch,
        # awsQueryCompatible), answer with the query error code.
        return "ValidationError"
    names = set(model.shape_names)
    if "ValidationException" in names:
        return "ValidationException"
    if "InvalidParameterException" in names:
        return "InvalidParameterException"
    return "ValidationException"


# Java Unicode classes Python's `re` lacks, outside and inside a character class. Inside a class
# letters become \w (letters, digits, underscore): looser than AWS, never stricter.
_UNICODE_CLASSES = {
    "L": ("[^\\W\\d_]", "\\w"),
    "N": ("\\d", "\\d"),
    "Z": ("\\s", "\\s"),
    "Alpha": ("[A-Za-z]", "A-Za-z"),
    "Alnum": ("[A-Za-z0-9]", "A-Za-z0-9"),
    "ASCII": ("[\\x00-\\x7f]", "\\x00-\\x7f"),
}


def _translate(pattern: str) -> str:
    out = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and pattern.startswith("\\p{", i):
            end = pattern.index("}", i)
            name = pattern[i + 3 : end]
            if name not in _UNICODE_CLASSES:
                raise re.error(f"unsupported class \\p{{{name}}}")
            out.append(_UNICODE_CLASSES[name][1 if in_class else 0])
            i = end + 1
            continue
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


@functools.cache
def _compiled(pattern: str):
    """Java regular expressions (the models' dialect) mostly compile in Python once the Unicode
    classes are translated. Any that still do not are not checked (UNCHECKABLE lists them).
    ASCII: in Java `\w`, `\d` and `\s` are ASCII classes (java.util.regex.Pattern, "Predefined
    character classes", without UNICODE_CHARACTER_CLASS); Python's str patterns would take any
    Unicode letter or digit, so `rôle` would pass a `[\w+=,.@-]+` IAM name."""
    try:
        return re.compile(_translate(pattern), re.DOTALL | re.ASCII)
    except (re.error, ValueError):
        UNCHECKABLE.add(pattern)
        return None


UNCHECKABLE: set[str] = set()


def _display(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _name(member: str) -> str:
    return member[:1].lower() + member[1:]


class Violation:
    def __init__(self, path: str, value: Any, constraint: str, missing: bool = False):
        self.path = path
        self.value = value
        self.constraint = constraint
        self.missing = missing

    def __str__(self) -> str:
        value = "null" if self.missing else f"'{_display(self.value)}'"
        return f"Value {value} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def _length(shape, value: Any) -> int | None:
    if shape.type_name == "string":
        return len(value) if isinstance(value, str) else None
    if shape.type_name == "blob":
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        if isinstance(value, str):
            try:
                return len(base64.b64decode(value, validate=True))
            except ValueError:
                return len(value.encode())
        return None
    return None


def check(shape, value: Any, path: str, out: list[Violation], streaming_ok: bool = True) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return
        for required in shape.required_members:
            member_shape = shape.members.get(required)
            present = required in value and value[required] is not None
            if not present:
                out.append(Violation(_join(path, required), None, "Member must not be null", missing=True))
        for member, member_value in value.items():
            member_shape = shape.members.get(member)
            if member_shape is None or member_value is None:
                continue
            if member_shape.serialization.get("eventstream") or member_shape.metadata.get("streaming"):
                continue
            check(member_shape, member_value, _join(path, member), out)
        return
    if kind == "list":
        if isinstance(value, str) and value == "":
            value = []  # the query protocol's empty list
        if not isinstance(value, list):
            return
        _bounds(meta, len(value), path, value, out, "length")
        for i, item in enumerate(value, start=1):
            check(shape.member, item, f"{path}.{i}.member" if path else str(i), out)
        return
    if kind == "map":
        if not isinstance(value, dict):
            return
        _bounds(meta, len(value), path, value, out, "length")
        for k, v in value.items():
            check(shape.key, k, f"{path}.key", out)
            check(shape.value, v, f"{path}.{k}", out)
        return
    if kind in ("string", "blob"):
        length = _length(shape, value)
        if length is not None:
            _bounds(meta, length, path, value, out, "length")
        if kind == "string" and isinstance(value, str):
            if shape.enum and value not in shape.enum:
                out.append(Violation(path, value, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"))
            pattern = meta.get("pattern")
            if pattern:
                compiled = _compiled(pattern)
                if compiled is not None and compiled.fullmatch(value) is None:
                    out.append(Violation(path, value, f"Member must satisfy regular expression pattern: {pattern}"))
        return
    if kind in ("integer", "long", "float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                return
        if "min" in meta and value < meta["min"]:
            out.append(Violation(path, _num(value), f"Member must have value greater than or equal to {meta['min']}"))
        if "max" in meta and value > meta["max"]:
            out.append(Violation(path, _num(value), f"Member must have value less than or equal to {meta['max']}"))


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _bounds(meta: dict[str, Any], length: int, path: str, value: Any, out: list[Violation], what: str) -> None:
    if "min" in meta and length < meta["min"]:
        out.append(Violation(path, value, f"Member must have {what} greater than or equal to {meta['min']}"))
    if "max" in meta and length > meta["max"]:
        out.append(Violation(path, value, f"Member must have {what} less than or equal to {meta['max']}"))


def _join(path: str, member: str) -> str:
    return f"{path}.{_name(member)}" if path else _name(member)


def validate(service_name: str, operation_name: str, params: dict[str, Any]) -> list[Violation]:
    model = botocore_model(service_name)
    operation = model.operation_model(operation_name)
    if operation.input_shape is None:
        return []
    out: list[Violation] = []
    check(operation.input_shape, params, "", out)
    return out


def message(violations: list[Violation]) -> str:
    n = len(violations)
    head = f"{n} validation error{'s' if n > 1 else ''} detected: "
    return head + "; ".join(str(v) for v in violations)
