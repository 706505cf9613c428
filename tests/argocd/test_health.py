"""The Argo CD health check (deploy/argocd/health.lua), run by gopher-lua as Argo CD runs it.

The runner is tests/toolchain/argocd-health (built by scripts/toolchain): its path comes from
the first argument or $ARGOCD_HEALTH. Each fixture in fixtures/ is a DeliveryPipeline shaped as
the operator writes it; a few more states are derived from them here.

    ARGOCD_HEALTH="$(scripts/toolchain)/argocd-health" python3 tests/argocd/test_health.py
"""

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(ROOT, "deploy", "argocd", "health.lua")
FIXTURES = os.path.join(HERE, "fixtures")
RUNNER = os.environ.get("ARGOCD_HEALTH", "")


def fixture(name):
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def condition(obj, type_):
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def health_of_file(path):
    out = subprocess.run([RUNNER, SCRIPT, path], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AssertionError(f"argocd-health failed on {path}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def health(obj):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(obj, f)
    try:
        return health_of_file(f.name)
    finally:
        os.unlink(f.name)


class Fixtures(unittest.TestCase):
    """One fixture per state."""

    def check(self, name, status):
        hs = health_of_file(os.path.join(FIXTURES, name + ".json"))
        self.assertEqual(hs["status"], status, f"{name}: {hs}")
        self.assertTrue(hs["message"], f"{name}: no message")
        return hs

    def test_every_fixture_is_covered(self):
        names = sorted(n[: -len(".json")] for n in os.listdir(FIXTURES) if n.endswith(".json"))
        tested = sorted(n[len("test_"):].replace("_", "-") for n in dir(self) if n.startswith("test_"))
        self.assertEqual([n for n in names if n not in tested], [])

    def test_healthy(self):
        self.check("healthy", "Healthy")

    def test_progressing_never_observed(self):
        hs = self.check("progressing-never-observed", "Progressing")
        self.assertIn("generation 1", hs["message"])

    def test_progressing_dependency_not_ready(self):
        hs = self.check("progressing-dependency-not-ready", "Progressing")
        self.assertEqual(hs["message"], condition(fixture("progressing-dependency-not-ready"), "Ready")["message"])

    def test_progressing_generation_ahead(self):
        hs = self.check("progressing-generation-ahead", "Progressing")
        self.assertIn("generation 4", hs["message"])

    def test_degraded_access_denied(self):
        hs = self.check("degraded-access-denied", "Degraded")
        # The group's condition (it names the resource), not Synced's.
        group = condition(fixture("degraded-access-denied"), "ArtifactStoreReady")
        self.assertEqual(group["reason"], "AccessDenied")
        self.assertEqual(hs["message"], group["message"])

    def test_degraded_rollout_failed(self):
        hs = self.check("degraded-rollout-failed", "Degraded")
        obj = fixture("degraded-rollout-failed")
        self.assertEqual(condition(obj, "Synced")["status"], "True")
        self.assertEqual(hs["message"], condition(obj, "ProductionServiceReady")["message"])

    def test_suspended_paused(self):
        hs = self.check("suspended-paused", "Suspended")
        self.assertIn("paused", hs["message"])


class DerivedStates(unittest.TestCase):
    """States the operator writes that the fixtures do not show directly."""

    def test_failure_without_a_group_condition_shows_synced_message(self):
        # failed_before_aws: no session, every group Unknown, Ready and Synced False.
        obj = fixture("healthy")
        msg = "spec.credentials.roleArn arn:aws:iam::123456789012:role/x: AccessDenied"
        for c in obj["status"]["conditions"]:
            if c["type"] in ("Ready", "Synced"):
                c.update(status="False", reason="CredentialsRoleNotAssumable", message=msg)
            else:
                c.update(status="Unknown", reason="CredentialsUnavailable",
                         message="no AWS session could be established")
        self.assertEqual(health(obj), {"status": "Degraded", "message": msg})

    def test_paused_by_synced_reason_alone(self):
        obj = fixture("suspended-paused")
        del obj["metadata"]["annotations"]
        self.assertEqual(health(obj)["status"], "Suspended")

    def test_paused_annotation_other_than_true_is_not_paused(self):
        obj = fixture("healthy")
        obj["metadata"]["annotations"] = {"delivery-operator.dev/paused": "false"}
        self.assertEqual(health(obj)["status"], "Healthy")

    def test_deleting_is_progressing(self):
        obj = fixture("healthy")
        condition(obj, "Ready").update(status="False", reason="Deleting",
                                       message="the pipeline is being deleted")
        condition(obj, "Synced").update(status="Unknown", reason="Deleting",
                                        message="deleting AWS resources")
        self.assertEqual(health(obj), {"status": "Progressing", "message": "the pipeline is being deleted"})

    def test_rollout_in_progress_and_key_not_usable_are_progressing(self):
        for group, reason in (("StagingServiceReady", "RolloutInProgress"),
                              ("EncryptionKeyReady", "KeyNotUsable")):
            obj = fixture("healthy")
            condition(obj, group).update(status="False", reason=reason, message="wait")
            condition(obj, "Ready").update(status="False", reason="ResourcesNotReady",
                                           message=f"not ready: {group} ({reason})")
            self.assertEqual(health(obj)["status"], "Progressing", reason)

    def test_ready_of_an_older_generation_is_progressing(self):
        obj = fixture("healthy")
        condition(obj, "Ready")["observedGeneration"] = 2
        self.assertEqual(health(obj)["status"], "Progressing")

    def test_status_without_conditions_is_progressing(self):
        obj = fixture("healthy")
        obj["status"] = {}
        self.assertEqual(health(obj)["status"], "Progressing")


class Script(unittest.TestCase):
    def test_uses_only_the_libraries_argo_cd_opens(self):
        # argocd-cm scripts get base, table and package only (no string, math, os, io).
        with open(SCRIPT, encoding="utf-8") as f:
            code = "\n".join(line.split("--", 1)[0] for line in f)
        self.assertEqual(re.findall(r"\b(?:string|math|os|io|debug)\s*\.|:\s*(?:format|match|find|gsub|sub)\s*\(", code), [])


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        RUNNER = sys.argv.pop(1)
    if not RUNNER or not os.access(RUNNER, os.X_OK):
        sys.exit("usage: test_health.py ARGOCD_HEALTH_BINARY (or set $ARGOCD_HEALTH)")
    unittest.main(verbosity=2)
