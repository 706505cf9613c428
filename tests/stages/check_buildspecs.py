#!/usr/bin/env python3
"""Checks the CodeBuild buildspecs a plan renders, then runs them.

Reads the JSON of `delivery-operator plan --output json MANIFEST`. For the build project
(groups.BuildProjectReady) and the scan project (groups.ScanProjectReady), each with a buildspec
string and the project's environment variables:
  - the buildspec is YAML of CodeBuild's structure: version 0.2; env.shell bash; only known
    keys; phases only install, pre_build, build, post_build, each with a list of commands
    (strings); the build's artifacts.files holds imagedefinitions.json and image-tag and its
    env.exported-variables IMAGE_TAG; the scan's reports are JUNITXML and one of them holds its
    script's report file;
  - every command passes shellcheck as a bash script;
  - one command writes the stage script out with a quoted heredoc, byte for byte the file in
    src/groups/projects/scripts/, and the next one runs it with its interpreter;
  - the environment gives every input of the script that neither CodeBuild nor the pipeline
    provides.
A buildspec that passes these is run: its commands in order, in one bash, as CodeBuild runs
buildspec version 0.2 (one shell for the whole build, a phase stopped by its first failing
command), in a temporary directory with the fake `aws` and `docker` of tests/stages/fakes, and
with the project's environment (a value the plan knows only after an earlier step, such as the
repository URI, replaced by a stand-in of its form):
  - build: it succeeds, imagedefinitions.json names the container and the image it pushed, each
    artifact file exists, and IMAGE_TAG (each exported variable) is exported with the image tag;
  - scan, against a finished scan without findings: it succeeds and writes each report file,
    JUnit XML without failures.
The commands write their script to the path they name (under /tmp, like on CodeBuild); the
checker removes those files afterwards.

Exit status: 0 when nothing is found, 1 with one line per finding, 2 when a plan cannot be read.

Usage: check_buildspecs.py PLAN.json [PLAN.json ...]      (`-` reads standard input)
Run with the pinned stages virtualenv (shellcheck, junitparser, pyyaml).
"""

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from junitparser import JUnitXml

from stagekit import BUILD_SCRIPT, ROOT, SCAN_SCRIPT, Sandbox, shellcheck

# CodeBuild's buildspec keys (build-spec-ref, version 0.2).
TOP_LEVEL_KEYS = {
    "version",
    "run-as",
    "env",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
}
ENV_KEYS = {
    "shell",
    "variables",
    "parameter-store",
    "exported-variables",
    "secrets-manager",
    "git-credential-helper",
}
PHASES = ("install", "pre_build", "build", "post_build")  # the order they run in
PHASE_KEYS = {"run-as", "on-failure", "runtime-versions", "commands", "finally"}
REPORT_KEYS = {"files", "base-directory", "discard-paths", "file-format"}
INTERPRETERS = {".sh": "bash", ".py": "python3"}
# `cat > PATH <<'DELIMITER'`: the first line of the command that writes a stage script out.
WRITE_SCRIPT = re.compile(r"cat > (?P<path>/\S+) <<'(?P<delimiter>\w+)'\n")
SHELLCHECK_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")

# What CodeBuild sets in every build, for the runs.
SOURCE_VERSION = "0123456789abcdef0123456789abcdef01234567"
CODEBUILD_VARIABLES = {
    "CODEBUILD_RESOLVED_SOURCE_VERSION": SOURCE_VERSION,
    "CODEBUILD_BUILD_NUMBER": "1",
}
IMAGE_TAG = SOURCE_VERSION[:8]
# A value the plan cannot know before an earlier step has run (as src/groups/mod.rs renders it).
UNKNOWN_VALUE = re.compile(r"<(?P<key>\w+): known after the step that provides it>")


@dataclass(frozen=True)
class Stage:
    group: str
    script: Path
    # Inputs of the script the project must set: CodeBuild sets AWS_REGION and CODEBUILD_*,
    # the pipeline's scan action IMAGE_TAG, and the others have defaults.
    project_inputs: tuple


BUILD = Stage(
    "BuildProjectReady",
    BUILD_SCRIPT,
    ("REPOSITORY_URI", "CONTAINER_NAME", "DOCKERFILE", "BUILD_CONTEXT", "TAG_LATEST"),
)
SCAN = Stage(
    "ScanProjectReady", SCAN_SCRIPT, ("REPOSITORY_NAME", "FAIL_ON", "SCAN_TIMEOUT_SECONDS")
)


class Findings(list):
    def problem(self, stage, message):
        self.append(f"[{stage.group}] {message}")


def string_list(value):
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def structure_problems(stage, spec, environment):
    """CodeBuild's structure (phases apart), and what each stage needs of it."""
    problems = [f"unknown buildspec key {key!r}" for key in sorted(set(spec) - TOP_LEVEL_KEYS)]
    if str(spec.get("version")) != "0.2":
        problems.append(f"version is {spec.get('version')!r}, not 0.2")
    env = spec.get("env")
    if not isinstance(env, dict):
        problems.append("no env mapping")
        env = {}
    problems += [f"unknown env key {key!r}" for key in sorted(set(env) - ENV_KEYS)]
    if env.get("shell") != "bash":
        problems.append(f"env.shell is {env.get('shell')!r}, not bash")
    exported = env.get("exported-variables", [])
    if not string_list(exported):
        problems.append("env.exported-variables is not a list of names")

    if stage is BUILD:
        files = (spec.get("artifacts") or {}).get("files")
        if not string_list(files):
            problems.append("artifacts.files is not a list of files")
        else:
            problems += [
                f"artifacts.files lacks {name}"
                for name in ("imagedefinitions.json", "image-tag")
                if name not in files
            ]
        if not string_list(exported) or "IMAGE_TAG" not in exported:
            problems.append("env.exported-variables lacks IMAGE_TAG")
    else:
        problems += report_problems(spec.get("reports"), environment)
    return problems


def phase_problems(phases):
    if not isinstance(phases, dict) or not phases:
        return ["no phases"]
    problems = []
    for name, phase in phases.items():
        if name not in PHASES:
            problems.append(f"unknown phase {name!r}")
            continue
        if not isinstance(phase, dict):
            problems.append(f"phase {name} is not a mapping")
            continue
        keys = PHASE_KEYS if name == "install" else PHASE_KEYS - {"runtime-versions"}
        problems += [f"unknown key {key!r} in phase {name}" for key in sorted(set(phase) - keys)]
        if not string_list(phase.get("commands")) or not phase.get("commands"):
            problems.append(f"phase {name}: commands is not a list of commands (strings)")
        if "finally" in phase and not string_list(phase["finally"]):
            problems.append(f"phase {name}: finally is not a list of commands (strings)")
    return problems


def report_problems(reports, environment):
    if not isinstance(reports, dict) or not reports:
        return ["no reports section: the scan's JUnit report is published nowhere"]
    problems = []
    report_file = environment.get("REPORT_FILE") or "scan-report.xml"
    listed = False
    for name, report in reports.items():
        if not isinstance(report, dict):
            problems.append(f"report {name} is not a mapping")
            continue
        problems += [
            f"unknown key {key!r} in report {name}" for key in sorted(set(report) - REPORT_KEYS)
        ]
        if not string_list(report.get("files")):
            problems.append(f"report {name}: files is not a list of files")
        elif report_file in report["files"]:
            listed = True
        if report.get("file-format") != "JUNITXML":
            file_format = report.get("file-format")
            problems.append(f"report {name}: file-format is {file_format!r}, not JUNITXML")
    if not listed:
        problems.append(f"no report lists {report_file}, the file the scan script writes")
    return problems


def commands_of(spec):
    """(phase, number, command) of every command that can be read, in the order CodeBuild runs
    them."""
    phases = spec.get("phases") if isinstance(spec.get("phases"), dict) else {}
    commands = []
    for phase in PHASES:
        body = phases.get(phase)
        listed = body.get("commands") if isinstance(body, dict) else None
        if string_list(listed):
            commands += [(phase, number, command) for number, command in enumerate(listed, 1)]
    return commands


def embedding_problems(stage, commands):
    """The command that writes the script out must hold the file, byte for byte, and the next
    command must run what it wrote."""
    writes = [i for i, (_, _, command) in enumerate(commands) if WRITE_SCRIPT.match(command)]
    if len(writes) != 1:
        return [f"{len(writes)} commands write a script out with cat > PATH <<'DELIMITER', not 1"]
    index = writes[0]
    command = commands[index][2]
    match = WRITE_SCRIPT.match(command)
    path, delimiter = match["path"], match["delimiter"]
    # The heredoc ends at the first line that is its delimiter, as bash reads it.
    lines = command[match.end() :].splitlines(keepends=True)
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == delimiter]
    if not ends:
        return [f"the heredoc writing {path} has no closing {delimiter} line"]
    problems = []
    embedded = "".join(lines[: ends[0]])
    if embedded.encode() != stage.script.read_bytes():
        problems.append(f"the script written to {path} is not {stage.script.relative_to(ROOT)}")
    if "".join(lines[ends[0] + 1 :]).strip():
        problems.append(f"the command writing {path} goes on after its heredoc")
    run = f"{INTERPRETERS[stage.script.suffix]} {path}"
    following = commands[index + 1][2].strip() if index + 1 < len(commands) else None
    if following != run:
        problems.append(f"the command after writing {path} is {following!r}, not {run!r}")
    return problems


def shellcheck_problems(commands):
    """Each command as a bash script of its own; one shellcheck run for all of them."""
    if not commands:
        return []
    with tempfile.TemporaryDirectory(prefix="delivery-operator-shellcheck.") as tmp:
        files = {}
        for phase, number, command in commands:
            path = Path(tmp) / f"{phase}-command-{number}"
            path.write_text("#!/bin/bash\n" + command)
            files[str(path)] = f"{phase} command {number}"
        result = subprocess.run(
            [shellcheck(), "--format=gcc", *files], capture_output=True, text=True, check=False
        )
    problems = []
    for line in result.stdout.splitlines():
        match = SHELLCHECK_LINE.match(line)
        if match and match["file"] in files:
            # Lines counted within the command, without the #! line.
            where = f"{files[match['file']]}, line {int(match['line']) - 1}"
            problems.append(f"shellcheck: {where}: {match['message']}")
        else:
            problems.append(f"shellcheck: {line}")
    if result.returncode != 0 and not problems:
        problems.append(f"shellcheck failed: {result.stderr.strip()}")
    return problems


def environment_problems(stage, environment):
    return [
        f"the project's environment lacks {name}, an input of {stage.script.name}"
        for name in stage.project_inputs
        if not environment.get(name)
    ]


def run_buildspec(spec, variables, sandbox):
    """Runs the commands as CodeBuild's one shell would, then saves the environment the build
    ends with (what exported-variables are read from). Returns the run and that environment."""
    lines = []
    for phase, number, command in commands_of(spec):
        lines.append(command.rstrip("\n"))
        lines.append(
            f'codebuild_status=$?; if [ "$codebuild_status" -ne 0 ]; then '
            f'echo "{phase} command {number} failed: exit status $codebuild_status" >&2; '
            'exit "$codebuild_status"; fi'
        )
    final_environment = sandbox.root / "final-environment"
    lines.append(f"env -0 > {shlex.quote(str(final_environment))}")
    try:
        result = sandbox.run(["bash", "-c", "\n".join(lines) + "\n"], variables)
    finally:
        for _, _, command in commands_of(spec):
            match = WRITE_SCRIPT.match(command)
            if match:
                Path(match["path"]).unlink(missing_ok=True)
    environment = {}
    if final_environment.exists():
        for entry in final_environment.read_text().split("\0"):
            name, _, value = entry.partition("=")
            environment[name] = value
    return result, environment


def run_environment(plan, environment):
    """The project's environment for a run: each value known only after an earlier step is
    replaced by a stand-in of its form. Returns it and the values that have no stand-in."""
    stand_ins = {}
    # A condition of several steps (the repository, its lifecycle policy) renders as a list.
    group = plan["groups"].get("ImageRepositoryReady") or []
    parts = group if isinstance(group, list) else [group]
    repository = next((p["name"] for p in parts if isinstance(p, dict) and p.get("name")), None)
    if repository:
        registry = f"{plan.get('accountId')}.dkr.ecr.{plan.get('region')}.amazonaws.com"
        stand_ins["RepositoryUri"] = f"{registry}/{repository}"
    resolved, problems = {}, []
    for name, value in environment.items():
        match = UNKNOWN_VALUE.fullmatch(str(value))
        if match and match["key"] not in stand_ins:
            problems.append(f"{name} is {value}, and the check has no stand-in for {match['key']}")
        resolved[name] = stand_ins.get(match["key"], value) if match else str(value)
    return resolved, problems


def failed_run(what, result):
    """One line: the exit status and the last lines of the errors, which say why."""
    errors = " / ".join(line for line in result.stderr.splitlines()[-3:] if line.strip())
    return f"the {what} failed (exit status {result.returncode}): {errors}"


def build_run_problems(spec, project_environment, region):
    with Sandbox() as sandbox:
        variables = {"AWS_REGION": region, **CODEBUILD_VARIABLES, **project_environment}
        result, final = run_buildspec(spec, variables, sandbox)
        if result.returncode != 0:
            return [failed_run("build", result)]
        problems = []
        image = f"{project_environment['REPOSITORY_URI']}:{IMAGE_TAG}"
        expected = [{"name": project_environment["CONTAINER_NAME"], "imageUri": image}]
        try:
            definitions = json.loads((sandbox.dir / "imagedefinitions.json").read_text())
        except (OSError, ValueError) as error:
            definitions = f"unreadable ({error})"
        if definitions != expected:
            problems.append(f"imagedefinitions.json is {definitions!r}, not {expected!r}")
        pushes = [call["argv"] for call in sandbox.calls("docker") if call["argv"][0] == "push"]
        if ["push", image] not in pushes:
            problems.append(f"the build did not push {image}")
        problems += [
            f"the build wrote no artifact {name}"
            for name in spec["artifacts"]["files"]
            if not (sandbox.dir / name).exists()
        ]
        for name in spec["env"]["exported-variables"]:
            if name not in final:
                problems.append(f"{name} is not exported when the build ends")
            elif name == "IMAGE_TAG" and final[name] != IMAGE_TAG:
                problems.append(f"IMAGE_TAG is exported as {final[name]!r}, not {IMAGE_TAG!r}")
        return problems


def scan_run_problems(spec, project_environment, region):
    with Sandbox() as sandbox:
        variables = {
            "AWS_REGION": region,
            **CODEBUILD_VARIABLES,
            "IMAGE_TAG": IMAGE_TAG,  # the pipeline's scan action passes the build's
            **sandbox.scan_scenario(["complete-no-findings.json"]),
            **project_environment,
        }
        result, _ = run_buildspec(spec, variables, sandbox)
        if result.returncode != 0:
            return [failed_run("scan", result)]
        problems = []
        for name, report in spec["reports"].items():
            for file in report["files"]:
                try:
                    suites = JUnitXml.fromfile(str(sandbox.dir / file))
                    cases = [case for suite in suites for case in suite]
                except (OSError, ValueError) as error:
                    problems.append(f"report {name}: {file} is no JUnit XML: {error}")
                    continue
                if not cases or not all(case.is_passed for case in cases):
                    problems.append(f"report {name}: {file} should list passing cases only")
        return problems


def check_stage(stage, plan, findings):
    group = plan["groups"][stage.group]
    if not isinstance(group, dict) or not isinstance(group.get("buildspec"), str):
        findings.problem(stage, "no buildspec")
        return
    environment = group.get("environment")
    if not isinstance(environment, dict):
        findings.problem(stage, "no environment (the project's environment variables)")
        environment = {}
    try:
        spec = yaml.safe_load(group["buildspec"])
    except yaml.YAMLError as error:
        findings.problem(stage, f"the buildspec is not YAML: {error}")
        return
    if not isinstance(spec, dict):
        findings.problem(stage, "the buildspec is not a YAML mapping")
        return
    commands = commands_of(spec)
    problems = structure_problems(stage, spec, environment)
    problems += phase_problems(spec.get("phases"))
    problems += environment_problems(stage, environment)
    problems += shellcheck_problems(commands)
    problems += embedding_problems(stage, commands)
    if not problems:
        environment, problems = run_environment(plan, environment)
    if not problems:
        run_problems = build_run_problems if stage is BUILD else scan_run_problems
        problems += run_problems(spec, environment, plan.get("region") or "us-east-1")
    for problem in problems:
        findings.problem(stage, problem)


def load_plan(path):
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    plan = json.loads(text)
    if not isinstance(plan, dict):
        raise ValueError("not a JSON object")
    return plan


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans", nargs="+", metavar="PLAN.json")
    args = parser.parse_args()
    total = 0
    for path in args.plans:
        try:
            plan = load_plan(path)
        except (OSError, ValueError) as error:
            print(f"{path}: cannot read the plan: {error}", file=sys.stderr)
            return 2
        findings = Findings()
        if not isinstance(plan.get("groups"), dict):
            plan["groups"] = {}
        for stage in (BUILD, SCAN):
            if stage.group not in plan["groups"]:
                findings.problem(stage, "not in the plan's groups")
            else:
                check_stage(stage, plan, findings)
        for finding in findings:
            print(f"{path}: {finding}")
        total += len(findings)
    checked = f"{len(args.plans)} plan(s), build and scan buildspecs checked and run"
    print(f"{checked}: {total} finding(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
