#!/usr/bin/env python3
"""src/groups/projects/scripts/scan.py, run with a fake `aws` (fakes/aws) that answers
describe-image-scan-findings from fixtures/scan/, files shaped as ECR's responses: the wait for
the scan, the thresholds, paged findings, basic and enhanced findings, failed and unfinished
scans, starting a scan; and the JUnit report of each, read back with junitparser.

Run with the pinned stages virtualenv: "$BIN/stages-python" tests/stages/test_scan.py
"""

import json
import sys
import time
import unittest
import xml.etree.ElementTree as ET

from junitparser import Failure, JUnitXml

from stagekit import SCAN_FIXTURES, SCAN_SCRIPT, Sandbox

INPUTS = {
    "REPOSITORY_NAME": "delivery-operator/hello-1234abcd",
    "IMAGE_TAG": "abcdef12",
    "AWS_REGION": "us-east-1",
    "FAIL_ON": '{"CRITICAL": 0, "HIGH": 5}',
    "SCAN_TIMEOUT_SECONDS": "30",
    "POLL_INTERVAL_SECONDS": "0.05",
}
DESCRIBE = "describe-image-scan-findings"
SCAN_NOT_FOUND = {
    "error": "ScanNotFoundException",
    "message": "Image scan does not exist for the image with '{imageTag:abcdef12}' "
    "in the repository with name 'delivery-operator/hello-1234abcd' in the registry with id "
    "'123456789012'",
}
# ECR's tokens are long opaque strings; the first page's is one, the second's a short one.
PAGES = {
    json.loads((SCAN_FIXTURES / "paged-1.json").read_text())["nextToken"]: "paged-2.json",
    "page-3": "paged-3.json",
}
DESCRIBE_ARGV = [
    *("ecr", DESCRIBE, "--region", "us-east-1"),
    *("--repository-name", "delivery-operator/hello-1234abcd", "--image-id", "imageTag=abcdef12"),
    *("--output", "json", "--no-paginate"),
]


class ScanScriptTest(unittest.TestCase):
    def scan(self, polls, pages=None, **overrides):
        """Runs scan.py in a new sandbox against the given describe-image-scan-findings answers;
        None in overrides leaves that input out."""
        sandbox = self.enterContext(Sandbox())
        variables = {**INPUTS, **sandbox.scan_scenario(polls, pages), **overrides}
        variables = {name: value for name, value in variables.items() if value is not None}
        return sandbox, sandbox.run([sys.executable, str(SCAN_SCRIPT)], variables)

    def report(self, sandbox, name="scan-report.xml"):
        """The report's test cases: (classname, name, failure message or None)."""
        xml = JUnitXml.fromfile(str(sandbox.dir / name))
        cases = []
        for suite in xml:
            for case in suite:
                failures = [result for result in case.result if isinstance(result, Failure)]
                self.assertLessEqual(len(failures), 1)
                self.assertEqual(len(case.result), len(failures), "only failures, no errors")
                message = failures[0].message if failures else None
                cases.append((case.classname, case.name, message))
            self.assertEqual(suite.tests, len(list(suite)))
            self.assertEqual(suite.failures, sum(1 for case in cases if case[2] is not None))
        return cases

    def describe_calls(self, sandbox):
        return [call["argv"] for call in sandbox.calls("aws") if call["argv"][1] == DESCRIBE]

    def assertExit(self, result, status):
        self.assertEqual(result.returncode, status, result.stdout + result.stderr)

    def test_waits_while_the_scan_runs_and_passes_below_the_thresholds(self):
        polls = ["in-progress.json", "in-progress.json", "complete-below-thresholds.json"]
        sandbox, result = self.scan(polls)
        self.assertExit(result, 0)
        calls = self.describe_calls(sandbox)
        self.assertEqual(len(calls), 3)
        self.assertEqual(calls, [DESCRIBE_ARGV] * 3)
        self.assertEqual(result.stdout.count("scan: IN_PROGRESS; polling again in 0.05s"), 2)
        # The table: every severity, its count and its threshold.
        table = [line.split() for line in result.stdout.splitlines()]
        self.assertIn(["severity", "found", "allowed"], table)
        for row in [
            ["CRITICAL", "0", "0"],
            ["HIGH", "1", "5"],
            ["MEDIUM", "2", "-"],
            ["LOW", "1", "-"],
            ["INFORMATIONAL", "0", "-"],
            ["UNDEFINED", "0", "-"],
        ]:
            self.assertIn(row, table)
        self.assertEqual(
            self.report(sandbox),
            [
                ("image-scan.thresholds", "CRITICAL: at most 0 findings", None),
                ("image-scan.thresholds", "HIGH: at most 5 findings", None),
            ],
        )

    def test_one_high_finding_over_a_threshold_of_zero_fails(self):
        sandbox, result = self.scan(["complete-one-high.json"], FAIL_ON='{"HIGH": 0}')
        self.assertExit(result, 1)
        table = [line.split() for line in result.stdout.splitlines()]
        self.assertIn(["HIGH", "1", "0", "OVER"], table)
        self.assertIn("more findings than FAIL_ON allows", result.stderr)
        self.assertEqual(
            self.report(sandbox),
            [
                (
                    "image-scan.thresholds",
                    "HIGH: at most 0 findings",
                    "1 HIGH findings, at most 0 allowed",
                ),
                (
                    "image-scan.findings.HIGH",
                    "CVE-2024-2961 in glibc 2.36-9+deb12u4",
                    "HIGH finding CVE-2024-2961 in glibc 2.36-9+deb12u4",
                ),
            ],
        )

    def test_the_report_escapes_what_the_findings_say(self):
        # The fixture's description holds <, &, quotes and a control character (BEL), which
        # XML 1.0 cannot hold at all: it is replaced.
        sandbox, result = self.scan(["complete-one-high.json"], FAIL_ON='{"HIGH": 0}')
        self.assertExit(result, 1)
        failures = ET.parse(sandbox.dir / "scan-report.xml").getroot().iter("failure")
        details = [failure.text for failure in failures if failure.text]
        self.assertEqual(
            details,
            [
                "https://security-tracker.debian.org/tracker/CVE-2024-2961\n"
                "The iconv() function in the GNU C Library <= 2.39 may overflow the output buffer "
                '& write up to 4 "out-of-bounds" bytes\ufffd when converting to ISO-2022-CN-EXT.'
            ],
        )

    def test_reads_the_findings_of_every_page(self):
        sandbox, result = self.scan(["paged-1.json"], PAGES, FAIL_ON='{"CRITICAL": 0, "HIGH": 2}')
        self.assertExit(result, 1)
        self.assertEqual(
            self.describe_calls(sandbox),
            [DESCRIBE_ARGV] + [[*DESCRIBE_ARGV, "--next-token", token] for token in PAGES],
        )
        # The findings over a threshold, from all three pages, the most severe first.
        self.assertEqual(
            [case[1] for case in self.report(sandbox)],
            [
                "CRITICAL: at most 0 findings",
                "HIGH: at most 2 findings",
                "CVE-2024-0004 in zlib1g 1:1.2.13.dfsg-1",  # page 2
                "CVE-2024-0001 in libexpat1 2.5.0-1",  # page 1
                "CVE-2024-0003 in zlib1g 1:1.2.13.dfsg-1",  # page 2
                "CVE-2024-0006 in libssl3 3.0.11-1~deb12u2",  # page 3
            ],
        )

    def test_lists_at_most_max_reported_findings(self):
        sandbox, result = self.scan(
            ["paged-1.json"], PAGES, FAIL_ON='{"HIGH": 0}', MAX_REPORTED_FINDINGS="2"
        )
        self.assertExit(result, 1)
        cases = self.report(sandbox)
        self.assertEqual(len(cases), 1 + 2)
        self.assertEqual(cases[0][2], "3 HIGH findings, at most 0 allowed")
        self.assertIn("... and 1 more (MAX_REPORTED_FINDINGS)", result.stdout)

    def test_enhanced_scanning_findings_are_read(self):
        sandbox, result = self.scan(["enhanced-active.json"], FAIL_ON='{"HIGH": 0, "MEDIUM": 1}')
        self.assertExit(result, 1)
        self.assertEqual(
            self.report(sandbox),
            [
                (
                    "image-scan.thresholds",
                    "HIGH: at most 0 findings",
                    "1 HIGH findings, at most 0 allowed",
                ),
                ("image-scan.thresholds", "MEDIUM: at most 1 findings", None),
                (
                    "image-scan.findings.HIGH",
                    "CVE-2024-28757 in libexpat1 2.5.0",
                    "HIGH finding CVE-2024-28757 in libexpat1 2.5.0",
                ),
            ],
        )

    def test_a_scan_that_ends_without_findings_fails_naming_status_and_description(self):
        for fixture, status, description in [
            ("failed.json", "FAILED", "Scan failed: unable to read the image manifest layers."),
            (
                "unsupported-image.json",
                "UNSUPPORTED_IMAGE",
                "UnsupportedImageError: The operating system and/or package manager are not "
                "supported.",
            ),
        ]:
            with self.subTest(status):
                sandbox, result = self.scan(["in-progress.json", fixture])
                self.assertExit(result, 2)
                message = (
                    "the scan of delivery-operator/hello-1234abcd:abcdef12 ended "
                    f"{status}: {description}"
                )
                self.assertIn(f"scan: {message}", result.stderr)
                self.assertEqual(
                    self.report(sandbox),
                    [("image-scan", "scan of delivery-operator/hello-1234abcd:abcdef12", message)],
                )

    def test_a_scan_that_never_finishes_fails_after_the_timeout(self):
        started = time.monotonic()
        sandbox, result = self.scan(
            ["in-progress.json"], SCAN_TIMEOUT_SECONDS="2", POLL_INTERVAL_SECONDS="0.2"
        )
        elapsed = time.monotonic() - started
        self.assertExit(result, 2)
        self.assertGreaterEqual(elapsed, 2)
        self.assertLess(elapsed, 8)
        message = (
            "the scan of delivery-operator/hello-1234abcd:abcdef12 did not finish in time: "
            "still IN_PROGRESS after 2 seconds (SCAN_TIMEOUT_SECONDS)"
        )
        self.assertIn(message, result.stderr)
        # A poll each interval (each poll takes a little time too), the last at the deadline.
        self.assertGreaterEqual(len(self.describe_calls(sandbox)), 5)
        self.assertLessEqual(len(self.describe_calls(sandbox)), 11)
        self.assertEqual(len(self.report(sandbox)), 1)
        self.assertEqual(self.report(sandbox)[0][2], message)

    def test_start_scan_starts_it_and_waits_while_it_is_not_found(self):
        polls = [SCAN_NOT_FOUND, "in-progress.json", "complete-below-thresholds.json"]
        for start_error in [None, "LimitExceededException"]:
            with self.subTest(start_error=start_error):
                sandbox, result = self.scan(
                    polls, START_SCAN="true", FAKE_START_SCAN_ERROR=start_error
                )
                self.assertExit(result, 0)
                start = [word.replace(DESCRIBE, "start-image-scan") for word in DESCRIBE_ARGV]
                self.assertEqual(
                    [call["argv"] for call in sandbox.calls("aws")],
                    [start[:-1]] + [DESCRIBE_ARGV] * 3,
                )
                if start_error:
                    self.assertIn("was already scanned today", result.stdout)
                self.assertEqual(
                    [failure for _, _, failure in self.report(sandbox)], [None, None]
                )

    def test_other_start_scan_errors_fail(self):
        sandbox, result = self.scan(
            ["complete-below-thresholds.json"],
            START_SCAN="true",
            FAKE_START_SCAN_ERROR="RepositoryNotFoundException",
        )
        self.assertExit(result, 2)
        self.assertIn("(RepositoryNotFoundException)", result.stderr)
        self.assertEqual(self.describe_calls(sandbox), [])
        self.assertIn("RepositoryNotFoundException", self.report(sandbox)[0][2])

    def test_no_scan_without_start_scan_fails_at_once(self):
        sandbox, result = self.scan([SCAN_NOT_FOUND, "complete-below-thresholds.json"])
        self.assertExit(result, 2)
        self.assertIn("START_SCAN is false: does the repository scan on push?", result.stderr)
        self.assertEqual(len(self.describe_calls(sandbox)), 1)

    def test_other_errors_of_describe_fail(self):
        denied = {"error": "AccessDeniedException", "message": "not authorized"}
        sandbox, result = self.scan([denied], START_SCAN="true")
        self.assertExit(result, 2)
        self.assertIn(
            "aws ecr describe-image-scan-findings failed: An error occurred "
            "(AccessDeniedException) when calling the DescribeImageScanFindings operation: "
            "not authorized",
            result.stderr,
        )

    def test_no_findings_at_all_pass(self):
        sandbox, result = self.scan(["complete-no-findings.json"], FAIL_ON='{"LOW": 0}')
        self.assertExit(result, 0)
        self.assertEqual(
            self.report(sandbox), [("image-scan.thresholds", "LOW: at most 0 findings", None)]
        )

    def test_the_report_goes_to_report_file(self):
        sandbox, result = self.scan(["complete-no-findings.json"], REPORT_FILE="gate.xml")
        self.assertExit(result, 0)
        self.assertEqual(len(self.report(sandbox, "gate.xml")), 2)
        self.assertFalse((sandbox.dir / "scan-report.xml").exists())

    def test_a_report_that_cannot_be_written_fails_the_gate(self):
        sandbox, result = self.scan(["complete-no-findings.json"], REPORT_FILE="missing/gate.xml")
        self.assertExit(result, 2)
        self.assertIn("scan: cannot write the report missing/gate.xml", result.stderr)

    def test_bad_inputs_fail_with_a_report_saying_why(self):
        cases = [
            ({"FAIL_ON": "CRITICAL=0"}, "FAIL_ON is not JSON"),
            ({"FAIL_ON": "[0]"}, "FAIL_ON must be a JSON object of severity to count"),
            ({"FAIL_ON": '{"SEVERE": 0}'}, "FAIL_ON: 'SEVERE' is none of CRITICAL, HIGH"),
            ({"FAIL_ON": '{"HIGH": -1}'}, "FAIL_ON: HIGH must be a count of 0 or more, not -1"),
            ({"FAIL_ON": '{"HIGH": true}'}, "FAIL_ON: HIGH must be a count of 0 or more, not True"),
            ({"FAIL_ON": '{"HIGH": 1.5}'}, "FAIL_ON: HIGH must be a count of 0 or more, not 1.5"),
            ({"IMAGE_TAG": None}, "environment variable IMAGE_TAG is required"),
            ({"IMAGE_TAG": "-x"}, "IMAGE_TAG '-x' is not an image tag"),
            ({"SCAN_TIMEOUT_SECONDS": ""}, "environment variable SCAN_TIMEOUT_SECONDS is required"),
            ({"SCAN_TIMEOUT_SECONDS": "soon"}, "SCAN_TIMEOUT_SECONDS must be a number, 0 or more"),
            ({"POLL_INTERVAL_SECONDS": "0"}, "POLL_INTERVAL_SECONDS must be a number, more than 0"),
            ({"POLL_INTERVAL_SECONDS": "nan"}, "POLL_INTERVAL_SECONDS must be a number"),
            ({"MAX_REPORTED_FINDINGS": "1.5"}, "MAX_REPORTED_FINDINGS must be a number, 0 or more"),
            ({"START_SCAN": "yes"}, "START_SCAN must be true or false, not 'yes'"),
        ]
        for overrides, message in cases:
            with self.subTest(message):
                sandbox, result = self.scan(["complete-no-findings.json"], **overrides)
                self.assertExit(result, 2)
                self.assertIn(message, result.stderr)
                self.assertEqual(sandbox.calls("aws"), [])
                [(_, _, failure)] = self.report(sandbox)
                self.assertIn(message, failure)


if __name__ == "__main__":
    unittest.main()
