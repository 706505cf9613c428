#!/usr/bin/env python3
"""The CRD's bounds against AWS's own service models (botocore), field by field.

For every field in tests/bounds/aws_bounds.yaml this checks that the generated CRD
(crds/deliverypipelines.yaml) admits nothing the AWS request member refuses (lengths, ranges,
enums, patterns, prefixes, list and map sizes), and that wherever the CRD is stricter the
table says why. It also fails when a CRD field is neither mapped nor listed as not passed to
AWS, when a CEL rule is unaccounted for, and when a written reason no longer explains a
difference (so the table cannot rot).

Patterns are compared by probing: each mapped example, with every probe character appended
and prepended (ASCII, whitespace, control and non-ASCII letters, digits, separators, emoji), and
with every forbidden prefix. CRD patterns follow RE2 (search, ASCII \\w\\s\\d); AWS patterns
are whole-value matches with Java's ASCII \\w\\s\\d.

Usage: check_bounds.py [CRD] [TABLE]      (run by scripts/test with the pinned botocore)
"""

import fnmatch
import re
import re._constants as sre_constants
import re._parser as sre_parse
import sys
from pathlib import Path

import botocore
import botocore.session
import regex
import yaml

ROOT = Path(__file__).resolve().parents[2]
INT32 = (-(2**31), 2**31 - 1)
PROBE_CHARS = (
    [chr(c) for c in range(0x20, 0x7F)]
    + ["\t", "\n", "\r", "\x00", "\x7f"]
    + ["é", "ß", "Ж", "日", "\u00a0", "\u2028", "\u3000", "٣", "½", "😀", "\u200b"]
)
CONSTRAINTS = {
    "minLength", "maxLength", "minimum", "maximum", "enum", "pattern", "prefix",
    "minItems", "maxItems", "maxProperties",
}


# ---------------------------------------------------------------------------------------------
# Regular expressions

def ascii_classes(pattern, re2=False):
    """Rewrites \\w \\d \\s (and negations) to their ASCII meaning in RE2 and Java; for RE2,
    `$` is the end of the text (Python's `$` also matches before a final newline)."""
    sets = {"w": "A-Za-z0-9_", "d": "0-9", "s": "\\t\\n\\f\\r "}
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in sets:
                out.append(sets[nxt] if in_class else f"[{sets[nxt]}]")
            elif nxt.lower() in sets and nxt.isupper():
                if in_class:
                    raise ValueError(f"negated class escape inside a set: {pattern}")
                out.append(f"[^{sets[nxt.lower()]}]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":
                out.append("]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        elif ch == "$" and not in_class and re2:
            out.append("\\Z")
        else:
            out.append(ch)
        i += 1
    return regex.compile("".join(out))


def width(pattern):
    """(shortest, longest) length of a value a pattern anchored at both ends can match."""
    p = regex.sub(r"\\[pP]\{[^}]*\}", "a", pattern)
    if not (p.startswith("^") and p.endswith("$") and not p.endswith("\\$")):
        lo, _ = sre_parse.parse(p).getwidth()
        return lo, None
    lo, hi = sre_parse.parse(p).getwidth()
    return lo, (None if hi >= sre_constants.MAXREPEAT else hi)


def cel_string(literal):
    return literal.replace("\\\\", "\\").replace("\\'", "'")


# ---------------------------------------------------------------------------------------------
# The CRD: every node below spec, with the constraints the API server enforces on it

class Node:
    def __init__(self, path, schema, kind):
        self.path, self.schema, self.kind = path, schema, kind
        self.patterns = [schema["pattern"]] if "pattern" in schema else []
        self.prefixes = []  # (prefix, case_insensitive)
        self.min_length = schema.get("minLength", 0)
        self.max_length = schema.get("maxLength")
        self.enum = schema.get("enum")


def crd_nodes(crd):
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    nodes, rules = {}, []  # rules: (path, rule, message, consumed)

    def add_rules(path, schema):
        for r in schema.get("x-kubernetes-validations", []):
            rules.append({"path": path, "rule": r["rule"], "message": r.get("message", ""), "consumed": False})

    add_rules("", root)
    add_rules("spec", root["properties"]["spec"])

    def walk(path, schema):
        t = schema.get("type")
        if t == "object" and "properties" in schema:
            if path != "spec":
                add_rules(path, schema)
            for k, v in schema["properties"].items():
                walk(f"{path}.{k}", v)
        elif t == "object" and "additionalProperties" in schema:
            nodes[path] = Node(path, schema, "map")
            nodes[path + "{key}"] = Node(path + "{key}", {"type": "string"}, "string")
            walk(path + "{value}", schema["additionalProperties"])
            add_rules(path, schema)
        elif t == "array":
            nodes[path] = Node(path, schema, "list")
            walk(path + "[]", schema["items"])
        else:
            nodes[path] = Node(path, schema, t)
            add_rules(path, schema)

    walk("spec", root["properties"]["spec"])
    interpret_cel(nodes, rules)
    return nodes, rules


def interpret_cel(nodes, rules):
    """Folds CEL rules that bound a single field into that field's constraints."""
    lit = r"'((?:[^'\\]|\\.)*)'"
    for r in rules:
        path, text = r["path"], r["rule"].strip()
        node = nodes.get(path)
        conj_of_all = re.fullmatch(r"self\.all\(k, (.*)\)", text)
        effects = []
        if node is not None and node.kind == "map" and conj_of_all:
            for c in conj_of_all.group(1).split(" && "):
                if m := re.fullmatch(r"k\.size\(\) <= (\d+)", c):
                    effects.append(("maxLength", path + "{key}", int(m.group(1))))
                elif m := re.fullmatch(r"!k\.lowerAscii\(\)\.startsWith\(" + lit + r"\)", c):
                    effects.append(("prefix", path + "{key}", (cel_string(m.group(1)), True)))
                elif m := re.fullmatch(r"!k\.startsWith\(" + lit + r"\)", c):
                    effects.append(("prefix", path + "{key}", (cel_string(m.group(1)), False)))
                elif m := re.fullmatch(r"k\.matches\(" + lit + r"\)", c):
                    effects.append(("pattern", path + "{key}", cel_string(m.group(1))))
                elif m := re.fullmatch(r"self\[k\]\.matches\(" + lit + r"\)", c):
                    effects.append(("pattern", path + "{value}", cel_string(m.group(1))))
                elif m := re.fullmatch(r"k in \[([^\]]*)\]", c):
                    effects.append(("enum", path + "{key}", [cel_string(x) for x in re.findall(lit, m.group(1))]))
                else:
                    effects = None
                    break
        elif node is not None and node.kind == "string" and (m := re.fullmatch(r"self\.matches\(" + lit + r"\)", text)):
            effects = [("pattern", path, cel_string(m.group(1)))]
        elif node is None and path:
            for c in text.split(" && "):
                if m := re.fullmatch(r"!self\.(\w+)\.startsWith\(" + lit + r"\)", c):
                    effects.append(("prefix", f"{path}.{m.group(1)}", (cel_string(m.group(2)), False)))
                else:
                    effects = None
                    break
        if not effects:
            continue
        for what, target, value in effects:
            n = nodes[target]
            if what == "maxLength":
                n.max_length = value if n.max_length is None else min(n.max_length, value)
            elif what == "prefix":
                n.prefixes.append(value)
            elif what == "pattern":
                n.patterns.append(value)
            elif what == "enum":
                n.enum = value
        r["consumed"] = True


# ---------------------------------------------------------------------------------------------
# AWS: a request (or response) member and its bounds

class Member:
    def __init__(self, ref, shape, doc):
        self.ref, self.shape, self.doc = ref, shape, doc
        meta = shape.metadata
        self.min, self.max = meta.get("min"), meta.get("max")
        self.pattern = meta.get("pattern")
        self.enum = list(getattr(shape, "enum", None) or []) or None


def plain(doc):
    return " ".join(regex.sub(r"<[^>]+>", " ", doc or "").split())


def resolve(session, ref):
    m = re.fullmatch(r"([a-z0-9-]+):([A-Za-z]+)([.>])(.*)", ref)
    if not m:
        raise ValueError(f"bad member reference {ref!r}")
    service, op, direction, path = m.groups()
    operation = session.get_service_model(service).operation_model(op)
    shape = operation.input_shape if direction == "." else operation.output_shape
    doc = ""
    for token in path.split("."):
        t = re.fullmatch(r"(\w+)((?:\[\]|\{key\}|\{value\})*)", token)
        if not t:
            raise ValueError(f"bad path {ref!r}")
        name, suffixes = t.groups()
        if name not in shape.members:
            raise KeyError(f"{ref}: no member {name!r} in {shape.name} (members: {sorted(shape.members)})")
        shape = shape.members[name]
        doc = shape.documentation
        for s in re.findall(r"\[\]|\{key\}|\{value\}", suffixes):
            shape = {"[]": lambda x: x.member, "{key}": lambda x: x.key, "{value}": lambda x: x.value}[s](shape)
            doc = shape.documentation
    return Member(ref, shape, plain(doc))


# ---------------------------------------------------------------------------------------------
# Comparison

class Check:
    def __init__(self, entry, node, members):
        self.entry, self.node, self.members = entry, node, members
        self.errors, self.stricter = [], set()

    def looser(self, what):
        self.errors.append(f"{self.node.path}: the CRD admits {what}, which AWS refuses")

    def tighter(self, constraint, what):
        self.stricter.add(constraint)
        if constraint not in (self.entry.get("stricter") or {}):
            self.errors.append(
                f"{self.node.path}: the CRD refuses {what}, which AWS admits; relax it, or give "
                f"the reason under stricter.{constraint} in tests/bounds/aws_bounds.yaml"
            )


def aws_bounds(entry, members, session):
    """The strictest of the members' bounds, with documented bounds folded in."""
    # An embedded value (inside a JSON document) is not bounded by the document's own limits.
    bounded = [] if entry.get("embedded") else members
    lo = [m.min for m in bounded if m.min is not None]
    hi = [m.max for m in bounded if m.max is not None]
    enum = None
    for m in members:
        if m.enum:
            enum = set(m.enum) if enum is None else enum & set(m.enum)
    docs = {}
    for key in ("doc_quote", "doc_quote_2"):
        if key in entry:
            quote = " ".join(entry[key].split())
            if not any(quote in m.doc for m in members):
                raise AssertionError(f"{entry['field']}: {key} is no longer in the model's documentation of {[m.ref for m in members]}: {quote!r}")
    if entry.get("doc_range"):
        for m in members:
            found = re.findall(r"between (\d[\d,]*) and (\d[\d,]*)", m.doc)
            if len(found) != 1:
                raise AssertionError(f"{entry['field']}: expected one 'between X and Y' in the documentation of {m.ref}, found {found}")
            lo.append(int(found[0][0].replace(",", "")))
            hi.append(int(found[0][1].replace(",", "")))
    if "doc_enum" in entry:
        spec = entry["doc_enum"]
        src = resolve(session, spec["member"])
        values = re.findall(spec["regex"], src.doc)
        if spec.get("split"):
            values = [v for s in values for v in re.findall(r"\d+", s)]
        if not values:
            raise AssertionError(f"{entry['field']}: doc_enum regex finds nothing in the documentation of {src.ref}")
        enum = set(values) if enum is None else enum & set(values)
    documented = entry.get("documented") or {}
    docs = {k: documented[k] for k in documented}
    if documented and "doc_quote" not in entry and "source" not in entry:
        raise AssertionError(f"{entry['field']}: a documented bound needs doc_quote (checked against the model) or source")
    return lo, hi, enum, docs


def compare(entry, node, members, session):
    c = Check(entry, node, members)
    lo, hi, enum, docs = aws_bounds(entry, members, session)
    kind = node.kind
    shape_types = {m.shape.type_name for m in members}

    if kind == "integer":
        aws_lo = max(lo + [docs["minimum"]] if "minimum" in docs else lo, default=INT32[0])
        aws_hi = min(hi + [docs["maximum"]] if "maximum" in docs else hi, default=INT32[1])
        crd_lo = int(node.schema.get("minimum", INT32[0]))
        crd_hi = int(node.schema.get("maximum", INT32[1]))
        if node.enum is not None:
            values = {str(v) for v in node.enum}
            if enum is not None:
                if values - enum:
                    c.looser(f"{sorted(values - enum, key=int)} (allowed: {sorted(enum, key=int)})")
                if enum - values:
                    c.tighter("enum", sorted(enum - values, key=int))
            else:
                outside = [v for v in node.enum if not aws_lo <= v <= aws_hi]
                if outside:
                    c.looser(f"{outside} (AWS range {aws_lo}..{aws_hi})")
                c.tighter("enum", f"values in {aws_lo}..{aws_hi} other than {node.enum}")
        else:
            if enum is not None:
                c.looser(f"any integer in {crd_lo}..{crd_hi}, but AWS allows only {sorted(enum, key=int)}")
            if crd_lo < aws_lo:
                c.looser(f"{crd_lo} (AWS minimum {aws_lo})")
            elif crd_lo > aws_lo:
                c.tighter("minimum", f"{aws_lo}..{crd_lo - 1}")
            if crd_hi > aws_hi:
                c.looser(f"{crd_hi} (AWS maximum {aws_hi})")
            elif crd_hi < aws_hi:
                c.tighter("maximum", f"{crd_hi + 1}..{aws_hi}")

    elif kind == "boolean":
        if "transform" in entry:
            mapped = {str(k).lower(): v for k, v in entry["transform"].items()}
            if set(mapped) != {"true", "false"}:
                c.errors.append(f"{node.path}: transform must map true and false")
            bad = [v for v in mapped.values() if enum is None or v not in enum]
            if bad:
                c.looser(f"{bad} after the transform (allowed: {sorted(enum or [])})")
        elif shape_types != {"boolean"}:
            c.errors.append(f"{node.path}: a boolean mapped to {shape_types} needs a transform")

    elif kind == "string":
        compare_strings(c, entry, node, members, lo, hi, enum, docs)

    elif kind in ("list", "map"):
        lo_key, hi_key = ("minItems", "maxItems") if kind == "list" else ("minProperties", "maxProperties")
        if entry.get("list_of_calls"):
            lo, hi = [], []
        elif kind == "list" and shape_types - {"list"}:
            c.errors.append(f"{node.path}: a list mapped to {shape_types}")
        reserve = entry.get("reserve", 0)
        aws_lo = max(lo + ([docs[lo_key]] if lo_key in docs else []), default=0)
        aws_hi = min(hi + ([docs[hi_key]] if hi_key in docs else []), default=None)
        aws_lo = max(0, aws_lo - reserve)
        aws_hi = None if aws_hi is None else aws_hi - reserve
        crd_lo, crd_hi = node.schema.get(lo_key, 0), node.schema.get(hi_key)
        if crd_lo < aws_lo:
            c.looser(f"{crd_lo} items (AWS minimum {aws_lo})")
        elif crd_lo > aws_lo:
            c.tighter(lo_key, f"{aws_lo} items")
        if aws_hi is not None and (crd_hi is None or crd_hi > aws_hi):
            c.looser(f"{crd_hi if crd_hi is not None else 'any number of'} items (AWS maximum {aws_hi}{f' after the operator adds {reserve}' if reserve else ''})")
        elif crd_hi is not None and (aws_hi is None or crd_hi < aws_hi):
            c.tighter(hi_key, f"{crd_hi + 1} items")
    else:
        c.errors.append(f"{node.path}: unsupported CRD type {kind}")
    return c


def compare_strings(c, entry, node, members, lo, hi, enum, docs):
    transform = entry.get("transform")
    if node.enum is not None:
        values = [transform.get(v, v) if transform else v for v in node.enum]
        if enum is None:
            c.errors.append(f"{node.path}: a CRD enum mapped to members without an enum")
        else:
            if set(values) - enum:
                c.looser(f"{sorted(set(values) - enum)} (allowed: {sorted(enum)})")
            if enum - set(values):
                c.tighter("enum", sorted(enum - set(values)))
        return
    if enum is not None:
        c.looser(f"any string, but AWS allows only {sorted(enum)}")
        return

    aws_lo = max(lo + ([docs["minLength"]] if "minLength" in docs else []), default=0)
    aws_hi = min(hi + ([docs["maxLength"]] if "maxLength" in docs else []), default=None)
    crd_lo, crd_hi = node.min_length, node.max_length
    for p in node.patterns:  # a pattern may bound the length by itself (e.g. an ARN format)
        p_lo, p_hi = width(p)
        crd_lo = max(crd_lo, p_lo)
        if p_hi is not None:
            crd_hi = p_hi if crd_hi is None else min(crd_hi, p_hi)
    # A length bound that only the pattern implies is the pattern's to explain.
    lo_by = "minLength" if node.min_length > aws_lo else "pattern"
    hi_by = "maxLength" if node.max_length is not None and (aws_hi is None or node.max_length < aws_hi) else "pattern"
    if crd_lo < aws_lo:
        c.looser(f"{crd_lo} characters (AWS minimum {aws_lo})")
    elif crd_lo > aws_lo:
        c.tighter(lo_by, f"{aws_lo}..{crd_lo - 1} characters")
    if aws_hi is not None and (crd_hi is None or crd_hi > aws_hi):
        c.looser(f"{crd_hi if crd_hi is not None else 'unbounded'} characters (AWS maximum {aws_hi})")
    elif crd_hi is not None and (aws_hi is None or crd_hi < aws_hi):
        c.tighter(hi_by, f"{crd_hi + 1}{'..' + str(aws_hi) if aws_hi else '+'} characters")

    crd_res = [ascii_classes(p, re2=True) for p in node.patterns]
    aws_res = [ascii_classes(m.pattern) for m in members if m.pattern]
    if "pattern" in docs:
        aws_res.append(ascii_classes(docs["pattern"]))
    if not crd_res and not aws_res and not node.prefixes:
        return
    examples = [str(e) for e in entry.get("examples") or []]
    if not examples:
        c.errors.append(f"{node.path}: a pattern or prefix on either side needs `examples` to probe with")
        return

    def crd_pattern_ok(s):
        return all(r.search(s) for r in crd_res)

    def crd_prefix_ok(s):
        return not any(s.lower().startswith(p.lower()) if ci else s.startswith(p) for p, ci in node.prefixes)

    def aws_ok(s):
        return all(r.fullmatch(s) for r in aws_res)

    def in_lengths(s):
        n = len(s)
        return max(crd_lo, aws_lo) <= n and (crd_hi is None or n <= crd_hi) and (aws_hi is None or n <= aws_hi)

    for e in examples:
        if not (crd_pattern_ok(e) and crd_prefix_ok(e) and in_lengths(e)):
            c.errors.append(f"{node.path}: example {e!r} is refused by the CRD")
        if not aws_ok(e):
            c.errors.append(f"{node.path}: example {e!r} is refused by AWS ({[m.ref for m in members]})")
    probes = {""} | set(PROBE_CHARS)
    for e in examples:
        for ch in PROBE_CHARS:
            probes |= {e + ch, ch + e, e[:1] + ch + e[1:]}
        for p, _ in node.prefixes:
            probes |= {p + e, p.lower() + e, p.upper() + e}
    looser, tighter_pattern, tighter_prefix = [], [], []
    for s in sorted(probes):
        if not in_lengths(s):
            continue
        crd, aws = crd_pattern_ok(s) and crd_prefix_ok(s), aws_ok(s)
        if crd and not aws:
            looser.append(s)
        elif aws and not crd:
            (tighter_pattern if not crd_pattern_ok(s) else tighter_prefix).append(s)
    if looser:
        c.looser(f"{len(looser)} probe value(s) outside the AWS pattern, e.g. {looser[:4]}")
    if tighter_pattern:
        c.tighter("pattern", f"{len(tighter_pattern)} probe value(s) such as {tighter_pattern[:3]} (pattern)")
    if tighter_prefix:
        c.tighter("prefix", f"{tighter_prefix[:3]} (reserved prefix)")


# ---------------------------------------------------------------------------------------------

def main():
    crd_file = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "crds/deliverypipelines.yaml"
    table_file = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests/bounds/aws_bounds.yaml"
    table = yaml.safe_load(table_file.read_text())
    crd = yaml.safe_load(crd_file.read_text())
    errors = []
    if botocore.__version__ != str(table["botocore"]):
        errors.append(f"botocore {botocore.__version__} is running, the table is checked against {table['botocore']}: use the pinned interpreter (scripts/toolchain)")

    session = botocore.session.get_session()
    nodes, rules = crd_nodes(crd)
    claimed = {}
    for path in table.get("not_passed_to_aws") or {}:
        if path not in nodes:
            errors.append(f"not_passed_to_aws: {path} is not a field of the CRD")
        claimed[path] = "not_passed_to_aws"

    members_checked = set()
    for entry in table["fields"]:
        matched = [p for p in nodes if fnmatch.fnmatchcase(p, entry["field"])]
        if not matched:
            errors.append(f"{entry['field']}: matches no field of the CRD")
            continue
        unknown = set(entry.get("stricter") or {}) - CONSTRAINTS
        if unknown:
            errors.append(f"{entry['field']}: unknown constraint(s) under stricter: {sorted(unknown)}")
        try:
            members = [resolve(session, ref) for ref in entry["to"]]
        except Exception as e:  # a member that no longer exists in the model is a failure
            errors.append(f"{entry['field']}: {e}")
            continue
        members_checked |= {m.ref for m in members}
        used = set()
        for path in matched:
            if path in claimed:
                errors.append(f"{path}: mapped twice ({claimed[path]} and {entry['field']})")
            claimed[path] = entry["field"]
            try:
                check = compare(entry, nodes[path], members, session)
            except AssertionError as e:
                errors.append(str(e))
                continue
            errors += check.errors
            used |= check.stricter
        for stale in sorted(set(entry.get("stricter") or {}) - used):
            errors.append(f"{entry['field']}: stricter.{stale} explains nothing (the CRD is not stricter there); remove it")

    for path in nodes:
        if path not in claimed:
            errors.append(f"{path}: in the CRD but not in tests/bounds/aws_bounds.yaml: map it to the AWS member it is passed to, or list it under not_passed_to_aws with the reason")

    explained = table.get("cel_rules") or {}
    used_prefixes = set()
    for r in rules:
        if r["consumed"]:
            continue
        hits = [p for p in explained if r["message"].startswith(p)]
        if not hits:
            errors.append(f"CEL rule at {r['path'] or '<root>'} is not accounted for: {r['message']!r} ({r['rule']}); list its message under cel_rules with the reason, or make it a bound of a mapped field")
        used_prefixes |= set(hits)
    for p in sorted(set(explained) - used_prefixes):
        errors.append(f"cel_rules: no CEL rule's message starts with {p!r}; remove it")

    if errors:
        print(f"AWS bounds: {len(errors)} disagreement(s) between the CRD and botocore {botocore.__version__}:")
        for e in errors:
            print(f"  - {e}")
        return 1
    print(f"AWS bounds: {len(nodes)} CRD fields ({len(claimed) - len(table.get('not_passed_to_aws') or {})} mapped, "
          f"{len(table.get('not_passed_to_aws') or {})} not passed to AWS) agree with {len(members_checked)} members "
          f"of botocore {botocore.__version__}; {sum(r['consumed'] for r in rules)} CEL rules read as bounds, "
          f"{len(used_prefixes)} explained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
