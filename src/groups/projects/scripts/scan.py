#!/usr/bin/env python3
"""The pipeline's image-scan gate: waits for ECR's scan of the image the build stage pushed, and
fails when its findings of some severity outnumber what FAIL_ON allows.

Embedded verbatim in the scan project's inline buildspec (src/groups/projects/desired.rs) and
run there as `python3 scan.py`; tests/stages runs this same file. Standard library only, plus
the AWS CLI (both on the CodeBuild standard image).

Environment variables:
  REPOSITORY_NAME        ECR repository name
  IMAGE_TAG              tag of the image to gate (the build stage's exported IMAGE_TAG)
  AWS_REGION             region of the repository (CodeBuild sets it)
  FAIL_ON                JSON object, severity -> most findings allowed: {"CRITICAL":0,"HIGH":5}
  START_SCAN             true: start the scan first (the repository does not scan on push);
                         default false
  SCAN_TIMEOUT_SECONDS   how long to wait for the scan to finish
  POLL_INTERVAL_SECONDS  seconds between status polls, default 5
  REPORT_FILE            JUnit XML report to write, default scan-report.xml
  MAX_REPORTED_FINDINGS  findings over a threshold listed one by one in the report, default 100

The report has one test case per threshold and one per finding of a severity over its
threshold (the most severe first); a scan that cannot be evaluated (bad input, scan failed or
timed out, AWS error) gets a report of one failing test case saying why.

Exit status: 0 when every count is within its threshold, 1 when some count is over, 2 when the
scan could not be evaluated or the report could not be written.
"""

import collections
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

# ECR's severities, the most severe first: the order of the table and of the listed findings.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
# ACTIVE: enhanced scanning monitors the image continuously; its findings are there to read.
FINISHED = ("COMPLETE", "ACTIVE")
STILL_SCANNING = ("IN_PROGRESS", "PENDING")
# Every other status (FAILED, UNSUPPORTED_IMAGE, SCAN_ELIGIBILITY_EXPIRED, FINDINGS_UNAVAILABLE,
# ...) will not turn into findings by waiting: the gate fails at once rather than at the timeout.

IMAGE_TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# The AWS CLI's message for an error the service returned.
AWS_ERROR_CODE = re.compile(r"An error occurred \((\w+)\)")
# Characters XML 1.0 cannot hold, even escaped; a finding's description might contain some.
XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
SUITE = "image-scan"


class GateError(Exception):
    """The scan cannot be evaluated; the message says why."""


class AwsError(GateError):
    """An AWS CLI call failed; code is the service's error code, when it returned one."""

    def __init__(self, operation, stderr):
        match = AWS_ERROR_CODE.search(stderr)
        self.code = match.group(1) if match else None
        super().__init__(f"aws ecr {operation} failed: {stderr.strip() or 'no message'}")


@dataclasses.dataclass
class Config:
    repository: str
    tag: str
    region: str
    fail_on: dict
    start_scan: bool
    timeout: float
    poll_interval: float
    max_reported_findings: int

    @property
    def image(self):
        return f"{self.repository}:{self.tag}"


@dataclasses.dataclass
class Finding:
    name: str
    severity: str
    packages: list  # "name version" of each affected package
    uri: str
    description: str

    def title(self):
        return f"{self.name} in {', '.join(self.packages)}" if self.packages else self.name


@dataclasses.dataclass
class Case:
    """A JUnit test case; failure is None for a passing one."""

    classname: str
    name: str
    failure: "str | None" = None
    details: str = ""


def read_config(env):
    def required(name):
        value = env.get(name, "")
        if not value:
            raise GateError(f"environment variable {name} is required")
        return value

    def number(name, default, convert, zero_allowed):
        raw = env.get(name) or default
        if raw is None:
            raise GateError(f"environment variable {name} is required")
        try:
            value = convert(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
            least = "0 or more" if zero_allowed else "more than 0"
            raise GateError(f"{name} must be a number, {least}, not {raw!r}")
        return value

    tag = required("IMAGE_TAG")
    if not IMAGE_TAG_PATTERN.fullmatch(tag):
        raise GateError(f"IMAGE_TAG {tag!r} is not an image tag")
    start_scan = env.get("START_SCAN") or "false"
    if start_scan not in ("true", "false"):
        raise GateError(f"START_SCAN must be true or false, not {start_scan!r}")
    return Config(
        repository=required("REPOSITORY_NAME"),
        tag=tag,
        region=required("AWS_REGION"),
        fail_on=parse_fail_on(required("FAIL_ON")),
        start_scan=start_scan == "true",
        timeout=number("SCAN_TIMEOUT_SECONDS", None, float, zero_allowed=True),
        poll_interval=number("POLL_INTERVAL_SECONDS", "5", float, zero_allowed=False),
        max_reported_findings=number("MAX_REPORTED_FINDINGS", "100", int, zero_allowed=True),
    )


def parse_fail_on(raw):
    try:
        fail_on = json.loads(raw)
    except json.JSONDecodeError as error:
        raise GateError(f"FAIL_ON is not JSON ({error}): {raw!r}") from None
    if not isinstance(fail_on, dict):
        raise GateError(f"FAIL_ON must be a JSON object of severity to count, not {raw!r}")
    for severity, limit in fail_on.items():
        if severity not in SEVERITIES:
            raise GateError(f"FAIL_ON: {severity!r} is none of {', '.join(SEVERITIES)}")
        # bool is an int in Python, and true is no count.
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise GateError(f"FAIL_ON: {severity} must be a count of 0 or more, not {limit!r}")
    return {severity: fail_on[severity] for severity in SEVERITIES if severity in fail_on}


def aws(config, operation, *arguments):
    # A tag holds no ',' nor '=' (IMAGE_TAG_PATTERN): the --image-id shorthand is safe.
    command = ["aws", "ecr", operation, "--region", config.region]
    command += ["--repository-name", config.repository, "--image-id", f"imageTag={config.tag}"]
    command += ["--output", "json", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise AwsError(operation, result.stderr)
    try:
        return json.loads(result.stdout or "{}")
    except json.JSONDecodeError as error:
        raise GateError(f"aws ecr {operation} printed no JSON ({error})") from None


def describe(config, next_token=None):
    """One page of DescribeImageScanFindings. --no-paginate: the CLI would otherwise fetch every
    page on each status poll; the pages are read once, when the scan has finished."""
    arguments = ["--no-paginate"]
    if next_token:
        arguments += ["--next-token", next_token]
    return aws(config, "describe-image-scan-findings", *arguments)


def start_scan(config):
    print(f"scan: starting a scan of {config.image}")
    try:
        aws(config, "start-image-scan")
    except AwsError as error:
        # Basic scanning scans an image at most once a day: the scan an earlier attempt of this
        # stage started is the one to wait for.
        if error.code != "LimitExceededException":
            raise
        print(f"scan: {config.image} was already scanned today; reading that scan")


def wait_for_scan(config):
    """Polls until the scan has finished (ECR's ImageScanComplete waiter, with a time bound) and
    returns the first page of its findings."""
    deadline = time.monotonic() + config.timeout
    while True:
        try:
            response = describe(config)
        except AwsError as error:
            if error.code != "ScanNotFoundException":
                raise
            if not config.start_scan:
                raise GateError(
                    f"ECR has no scan of {config.image} and START_SCAN is false: "
                    "does the repository scan on push?"
                ) from None
            # The scan just started is not visible yet.
            status = "not found yet"
        else:
            scan_status = response.get("imageScanStatus") or {}
            status = scan_status.get("status")
            if status in FINISHED:
                return response
            if status not in STILL_SCANNING:
                description = scan_status.get("description") or "no description"
                raise GateError(f"the scan of {config.image} ended {status}: {description}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GateError(
                f"the scan of {config.image} did not finish in time: "
                f"still {status} after {config.timeout:g} seconds (SCAN_TIMEOUT_SECONDS)"
            )
        print(f"scan: {status}; polling again in {config.poll_interval:g}s")
        time.sleep(min(config.poll_interval, remaining))


def collect_findings(config, first_page):
    """The findings of every page, basic (findings) and enhanced (enhancedFindings) alike."""
    findings = []
    page = first_page
    while True:
        scan = page.get("imageScanFindings") or {}
        findings += [basic_finding(raw) for raw in scan.get("findings") or []]
        findings += [enhanced_finding(raw) for raw in scan.get("enhancedFindings") or []]
        token = page.get("nextToken")
        if not token:
            return findings
        page = describe(config, token)


def basic_finding(raw):
    attributes = {a.get("key"): a.get("value") for a in raw.get("attributes") or []}
    package = " ".join(
        value
        for value in (attributes.get("package_name"), attributes.get("package_version"))
        if value
    )
    return Finding(
        name=raw.get("name") or "unnamed finding",
        severity=raw.get("severity") or "UNDEFINED",
        packages=[package] if package else [],
        uri=raw.get("uri") or "",
        description=raw.get("description") or "",
    )


def enhanced_finding(raw):
    details = raw.get("packageVulnerabilityDetails") or {}
    packages = [
        " ".join(value for value in (package.get("name"), package.get("version")) if value)
        for package in details.get("vulnerablePackages") or []
    ]
    return Finding(
        name=details.get("vulnerabilityId") or raw.get("title") or "unnamed finding",
        severity=raw.get("severity") or "UNDEFINED",
        packages=[package for package in packages if package],
        uri=details.get("sourceUrl") or "",
        description=raw.get("description") or "",
    )


def severity_counts(first_page, findings):
    """ECR's own counts; when it sends none (an older scan, no findings), the findings'."""
    counts = (first_page.get("imageScanFindings") or {}).get("findingSeverityCounts")
    if counts is None:
        counts = collections.Counter(finding.severity for finding in findings)
    return counts


def evaluate(config, counts, findings):
    """Prints the table of counts against thresholds and the findings over them; returns the
    report's test cases and whether any threshold is exceeded."""
    over = {
        severity for severity, limit in config.fail_on.items() if counts.get(severity, 0) > limit
    }
    print(f"{'severity':<15}{'found':>7}{'allowed':>9}")
    for severity in SEVERITIES + tuple(sorted(set(counts) - set(SEVERITIES))):
        limit = config.fail_on.get(severity)
        allowed = "-" if limit is None else str(limit)
        verdict = "  OVER" if severity in over else ""
        print(f"{severity:<15}{counts.get(severity, 0):>7}{allowed:>9}{verdict}")

    cases = []
    for severity, limit in config.fail_on.items():
        failure = None
        if severity in over:
            failure = f"{counts.get(severity, 0)} {severity} findings, at most {limit} allowed"
        cases.append(Case(f"{SUITE}.thresholds", f"{severity}: at most {limit} findings", failure))

    offending = sorted(
        (finding for finding in findings if finding.severity in over),
        key=lambda finding: (SEVERITIES.index(finding.severity), finding.name),
    )
    listed = offending[: config.max_reported_findings]
    for finding in listed:
        print(f"  {finding.severity} {finding.title()} {finding.uri}".rstrip())
        cases.append(
            Case(
                f"{SUITE}.findings.{finding.severity}",
                finding.title(),
                f"{finding.severity} finding {finding.title()}",
                "\n".join(text for text in (finding.uri, finding.description) if text),
            )
        )
    if len(offending) > len(listed):
        print(f"  ... and {len(offending) - len(listed)} more (MAX_REPORTED_FINDINGS)")
    return cases, bool(over)


def xml_text(text):
    return XML_INVALID.sub("\ufffd", text)


def write_report(path, cases):
    failures = sum(1 for case in cases if case.failure is not None)
    suites = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=SUITE, tests=str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    for case in cases:
        element = ET.SubElement(
            suite, "testcase", classname=xml_text(case.classname), name=xml_text(case.name)
        )
        if case.failure is not None:
            failure = ET.SubElement(element, "failure", message=xml_text(case.failure))
            failure.text = xml_text(case.details)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def main():
    # Progress lines reach the build log as they happen, in order with the errors.
    sys.stdout.reconfigure(line_buffering=True)
    env = os.environ
    report_file = env.get("REPORT_FILE") or "scan-report.xml"
    try:
        config = read_config(env)
        if config.start_scan:
            start_scan(config)
        first_page = wait_for_scan(config)
        findings = collect_findings(config, first_page)
        cases, exceeded = evaluate(config, severity_counts(first_page, findings), findings)
        status = 1 if exceeded else 0
    except GateError as error:
        print(f"scan: {error}", file=sys.stderr)
        image = f"{env.get('REPOSITORY_NAME', '')}:{env.get('IMAGE_TAG', '')}"
        cases, status = [Case(SUITE, f"scan of {image}", str(error))], 2
    try:
        write_report(report_file, cases)
    except OSError as error:
        print(f"scan: cannot write the report {report_file}: {error}", file=sys.stderr)
        return 2
    if status == 1:
        print("scan: the image has more findings than FAIL_ON allows", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
