"""IAM's eventual consistency, emulated for the roles a test chooses.

AWS: "IAM is eventually consistent ... changes that you make in IAM ... might take some time to
become visible" and "we recommend that you do not include IAM changes in the critical,
high-availability code paths" (IAM User Guide, "Troubleshoot IAM", "Changes that I make are not
always immediately visible"). A role just created, or whose trust policy just changed, is not yet
seen by STS (AssumeRole is denied), by the services that assume it (CodeBuild, CodePipeline,
EventBridge refuse it as not assumable) or by resource policies naming it (KMS, S3, ECR and IAM
trust policies refuse it as an invalid principal). moto makes every change visible at once.

`POST /_harness/iam-propagation` with {"match": "<fragment of role names>", "seconds": N} makes a
create or trust-policy change of every role whose name contains the fragment invisible for N
seconds (scoped by name so parallel tests are unaffected); `DELETE` clears the settings; `GET`
lists every refusal made because a role was not visible yet: {"refusals": [{"role", "use",
"time"}]}, the emulator's own record of what propagation cost."""

from __future__ import annotations

import threading
import time
from typing import Any

from emu_harness import log

_LOCK = threading.Lock()
# Name fragment -> seconds a change of a matching role takes to be seen.
DELAYS: dict[str, float] = {}
# Role ARN -> Unix time from which its last change is seen.
VISIBLE_AT: dict[str, float] = {}
REFUSALS: list[dict[str, Any]] = []


def role_changed(arn: str, name: str) -> None:
    """A role was created or its trust policy replaced: hidden for the longest matching delay."""
    with _LOCK:
        delay = max((s for fragment, s in DELAYS.items() if fragment in name), default=0.0)
        if delay > 0:
            VISIBLE_AT[arn] = time.time() + delay


def not_visible_yet(arn: str, use: str) -> bool:
    """Whether the role's last change is still propagating; a refusal is recorded when it is."""
    now = time.time()
    with _LOCK:
        until = VISIBLE_AT.get(arn)
        if until is None or now >= until:
            return False
        REFUSALS.append({"role": arn, "use": use, "time": now})
    log(f"IAM propagation: {arn} not visible to {use} for {until - now:.1f} s more")
    return True


def endpoint(method: str, query: dict, body: bytes):
    import json

    if method == "POST":
        request = json.loads(body or b"{}")
        fragment, seconds = request.get("match"), request.get("seconds")
        if not isinstance(fragment, str) or not fragment or not isinstance(seconds, (int, float)) or seconds < 0:
            return 400, {"error": "want {\"match\": non-empty string, \"seconds\": number >= 0}"}
        with _LOCK:
            DELAYS[fragment] = float(seconds)
        return 200, {"match": fragment, "seconds": float(seconds)}
    if method == "DELETE":
        with _LOCK:
            DELAYS.clear()
            VISIBLE_AT.clear()
            REFUSALS.clear()
        return 200, {}
    if method == "GET":
        fragment = query.get("match", "")
        with _LOCK:
            refusals = [r for r in REFUSALS if not fragment or fragment in r["role"]]
        return 200, {"refusals": refusals}
    return 405, {"error": "GET, POST or DELETE"}


def install() -> None:
    """Every role create and trust-policy change goes through role_changed."""
    from moto.iam.models import IAMBackend

    original_create = IAMBackend.create_role
    original_update = IAMBackend.update_assume_role_policy

    def create_role(self, role_name, *args, **kwargs):
        role = original_create(self, role_name, *args, **kwargs)
        role_changed(role.arn, role.name)
        return role

    def update_assume_role_policy(self, role_name, policy_document):
        result = original_update(self, role_name, policy_document)
        role = self.get_role(role_name)
        role_changed(role.arn, role.name)
        return result

    IAMBackend.create_role = create_role
    IAMBackend.update_assume_role_policy = update_assume_role_policy
