"""The module graph of src/ has no cycle, and the layers keep to their rules.

Reads every `.rs` file under src/ (comments stripped) and collects, per top-level module, the
other top-level modules it names (`crate::<module>`), and per group folder of src/groups, the
other group folders it names. Fails on a cycle, or on a dependency a layer must not have:

- `engine` knows nothing of AWS, the API or the groups; `aws` nothing of the spec (`api`,
  `desired`) or of the groups; `api` nothing of the rest; `desired` nothing of the groups or
  the controller.
- a group folder names no other group folder (what groups share lives in `desired`, `kit`,
  `keys` or the contract).

Usage: python3 tests/layers/check_layers.py [SRC]
"""

import re
import sys
from pathlib import Path

FORBIDDEN = {
    "engine": {"api", "aws", "desired", "groups", "controller", "render", "cli", "leader", "tenancy"},
    "aws": {"api", "desired", "groups", "controller", "render", "cli", "leader", "tenancy"},
    "api": {"aws", "desired", "engine", "groups", "controller", "render", "cli", "leader", "tenancy"},
    "desired": {"groups", "controller", "render", "cli", "leader", "tenancy"},
    "groups": {"controller", "render", "cli", "leader", "tenancy"},
    # What the administrators' policies allow: pure, from the API types alone.
    "tenancy": {"aws", "desired", "engine", "groups", "controller", "render", "cli", "leader"},
}
SHARED_IN_GROUPS = {"group", "registry", "kit", "keys"}


def code_of(path):
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def module_of(src, path):
    first = path.relative_to(src).parts[0]
    return first[:-3] if first.endswith(".rs") else first


def cycle(graph):
    """A cycle of `graph` (node -> set of nodes) as a list, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def check(src):
    problems = []
    modules, groups = {}, {}
    for path in sorted(src.rglob("*.rs")):
        code = code_of(path)
        module = module_of(src, path)
        if module in ("lib", "main"):
            continue
        names = set(re.findall(r"\bcrate::([a-z_]+)", code)) - {module}
        modules.setdefault(module, set()).update(names)
        for bad in sorted(names & FORBIDDEN.get(module, set())):
            problems.append(f"{path.relative_to(src)}: {module} must not depend on {bad}")
        parts = path.relative_to(src).parts
        if module == "groups" and len(parts) > 2:
            folder = parts[1]
            named = set(re.findall(r"\bcrate::groups::([a-z_]+)", code))
            named |= set(re.findall(r"\bsuper::super::([a-z_]+)", code))
            if parts[-1] == "mod.rs" and len(parts) == 3:
                # In a group's mod.rs, `super::` is src/groups itself.
                named |= set(re.findall(r"(?<![:\w])super::([a-z_]+)", code))
            others = named - SHARED_IN_GROUPS - {folder}
            groups.setdefault(folder, set()).update(others)
            for other in sorted(others):
                problems.append(f"{path.relative_to(src)}: group {folder} names group {other}")
    loop = cycle(modules)
    if loop:
        problems.append("module cycle: " + " -> ".join(loop))
    return problems, modules


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    problems, modules = check(src)
    for module in sorted(modules):
        print(f"{module} -> {', '.join(sorted(modules[module])) or '(nothing)'}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
