#!/usr/bin/env python3
"""check_buildspecs.py on hand-written plans: the sample (buildspecs of the shape the operator
renders) passes, checked and run; the broken plan and broken runs fail, with a finding for each
problem planted in them, so a silent checker cannot pass.

The fixtures' buildspecs hold a line {{build.sh}} or {{scan.py}} where the stage script goes:
render() puts the current file there, indented as the line, so the sample stays byte-identical
to the scripts as they change.

Run with the pinned stages virtualenv: "$BIN/stages-python" tests/stages/test_check_buildspecs.py
"""

import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from stagekit import FIXTURES, HERE, SCRIPTS

CHECKER = HERE / "check_buildspecs.py"
SAMPLE = FIXTURES / "plans" / "sample-plan.json"
BROKEN = FIXTURES / "plans" / "broken-plan.json"
PLACEHOLDER = re.compile(r"^(?P<indent> *)\{\{(?P<script>[\w.]+)\}\}\n", re.MULTILINE)

# Each planted problem: (group, words of the finding).
PLANTED = [
    ("BuildProjectReady", "unknown phase 'deploy'"),
    ("BuildProjectReady", "env.exported-variables lacks IMAGE_TAG"),
    ("BuildProjectReady", "artifacts.files lacks image-tag"),
    (
        "BuildProjectReady",
        "shellcheck: build command 1, line 1: note: Double quote to prevent globbing and word "
        "splitting. [SC2086]",
    ),
    (
        "BuildProjectReady",
        "the script written to /tmp/delivery-operator-build.sh is not "
        "src/groups/projects/scripts/build.sh",
    ),
    (
        "BuildProjectReady",
        "the command after writing /tmp/delivery-operator-build.sh is "
        "'sh /tmp/delivery-operator-build.sh', not 'bash /tmp/delivery-operator-build.sh'",
    ),
    ("ScanProjectReady", "unknown buildspec key 'artifact'"),
    ("ScanProjectReady", "version is 0.1, not 0.2"),
    ("ScanProjectReady", "env.shell is 'sh', not bash"),
    ("ScanProjectReady", "no reports section"),
    ("ScanProjectReady", "the project's environment lacks FAIL_ON, an input of scan.py"),
    ("ScanProjectReady", "the command writing /tmp/delivery-operator-scan.py goes on after its"),
]


def render(plan_file):
    """The plan, each buildspec's placeholder line replaced by its script."""

    def script(match):
        text = (SCRIPTS / match["script"]).read_text()
        return "".join(
            match["indent"] + line if line.strip() else line
            for line in text.splitlines(keepends=True)
        )

    plan = json.loads(plan_file.read_text())
    for name in ("BuildProjectReady", "ScanProjectReady"):
        group = plan["groups"][name]
        group["buildspec"] = PLACEHOLDER.sub(script, group["buildspec"])
    return plan


def run_checker(*plans):
    """Runs the checker on the plans, written to temporary files."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for number, plan in enumerate(plans):
            path = Path(tmp) / f"plan-{number}.json"
            path.write_text(json.dumps(plan))
            paths.append(str(path))
        result = subprocess.run(
            [sys.executable, str(CHECKER), *paths], capture_output=True, text=True, check=False
        )
    # The temporary names, out of the way of the assertions.
    result.stdout = result.stdout.replace(tmp + "/", "")
    return result


class CheckerTest(unittest.TestCase):
    def assertFindings(self, result, expected):
        """Exit status 1 and, for each (group, words), a finding line of that group with them."""
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        for group, words in expected:
            with self.subTest(group=group, words=words):
                self.assertTrue(
                    any(
                        line.startswith(f"plan-0.json: [{group}] ") and words in line
                        for line in result.stdout.splitlines()
                    ),
                    f"no finding [{group}] {words}:\n{result.stdout}",
                )

    def test_the_sample_plan_passes(self):
        result = run_checker(render(SAMPLE), render(SAMPLE))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(
            result.stdout,
            "2 plan(s), build and scan buildspecs checked and run: 0 finding(s)\n",
        )

    def test_the_sample_leaves_no_script_in_tmp(self):
        run_checker(render(SAMPLE))
        for name in ("delivery-operator-build.sh", "delivery-operator-scan.py"):
            self.assertFalse((Path("/tmp") / name).exists(), name)

    def test_the_broken_plan_fails_naming_each_planted_problem(self):
        result = run_checker(render(BROKEN))
        self.assertFindings(result, PLANTED)
        self.assertTrue(result.stdout.endswith(f": {len(PLANTED)} finding(s)\n"), result.stdout)

    def test_a_plan_without_the_projects_fails(self):
        plan = render(SAMPLE)
        del plan["groups"]["ScanProjectReady"]
        del plan["groups"]["BuildProjectReady"]["environment"]
        self.assertFindings(
            run_checker(plan),
            [
                ("ScanProjectReady", "not in the plan's groups"),
                ("BuildProjectReady", "no environment"),
            ],
        )

    def test_a_value_known_after_an_earlier_step_needs_a_stand_in(self):
        plan = render(SAMPLE)
        unknown = "<BuildContext: known after the step that provides it>"
        plan["groups"]["BuildProjectReady"]["environment"]["BUILD_CONTEXT"] = unknown
        del plan["groups"]["ImageRepositoryReady"]
        self.assertFindings(
            run_checker(plan),
            [
                (
                    "BuildProjectReady",
                    f"BUILD_CONTEXT is {unknown}, and the check has no stand-in for BuildContext",
                ),
                (
                    "BuildProjectReady",
                    "REPOSITORY_URI is <RepositoryUri: known after the step that provides it>, "
                    "and the check has no stand-in for RepositoryUri",
                ),
            ],
        )

    def test_a_build_that_fails_when_run_fails(self):
        plan = render(SAMPLE)
        plan["groups"]["BuildProjectReady"]["environment"]["TAG_LATEST"] = "maybe"
        self.assertFindings(
            run_checker(plan),
            [
                (
                    "BuildProjectReady",
                    "the build failed (exit status 1): build: TAG_LATEST must be true or false, "
                    "not 'maybe' / build command 2 failed: exit status 1",
                )
            ],
        )

    def test_an_image_tag_that_is_not_exported_fails(self):
        plan = render(SAMPLE)
        build = plan["groups"]["BuildProjectReady"]
        build["buildspec"] = build["buildspec"].replace(
            'IMAGE_TAG="$(cat image-tag)" && export IMAGE_TAG', "cat image-tag"
        )
        self.assertFindings(
            run_checker(plan),
            [("BuildProjectReady", "IMAGE_TAG is not exported when the build ends")],
        )

    def test_a_scan_that_fails_when_run_fails(self):
        plan = render(SAMPLE)
        plan["groups"]["ScanProjectReady"]["environment"]["FAIL_ON"] = '{"SEVERE": 0}'
        self.assertFindings(
            run_checker(plan),
            [("ScanProjectReady", "the scan failed (exit status 2): scan: FAIL_ON: 'SEVERE'")],
        )

    def test_an_unreadable_plan_is_exit_status_2(self):
        result = subprocess.run(
            [sys.executable, str(CHECKER), "-"],
            input="{not json",
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn("-: cannot read the plan", result.stderr)


if __name__ == "__main__":
    unittest.main()
