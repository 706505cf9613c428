#!/usr/bin/env python3
"""src/groups/projects/scripts/build.sh, run under bash with fake `aws` and `docker` (fakes/):
the ECR login, the docker build's options, the pushes, the artifacts, the image tag of each kind
of source version, and failures.

Run with the pinned stages virtualenv: "$BIN/stages-python" tests/stages/test_build.py
"""

import datetime
import json
import subprocess
import unittest

from stagekit import BUILD_SCRIPT, IMAGE_TAG_PATTERN, Sandbox, shellcheck

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPOSITORY_URI = f"{REGISTRY}/delivery-operator/hello-1234abcd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
INPUTS = {
    "REPOSITORY_URI": REPOSITORY_URI,
    "AWS_REGION": "us-east-1",
    "CONTAINER_NAME": "app",
    "DOCKERFILE": "docker/Dockerfile",
    "BUILD_CONTEXT": "services/app",
    "TAG_LATEST": "true",
    "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT,
    "CODEBUILD_BUILD_NUMBER": "42",
}


def options(argv, name):
    """Every value of a repeated `--name value` option, in order."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == name]


class BuildScriptTest(unittest.TestCase):
    def build(self, **overrides):
        """Runs build.sh in a new sandbox; None in overrides leaves that input out."""
        sandbox = self.enterContext(Sandbox())
        variables = {**INPUTS, **overrides}
        variables = {name: value for name, value in variables.items() if value is not None}
        return sandbox, sandbox.run(["bash", str(BUILD_SCRIPT)], variables)

    def assertSucceeded(self, result):
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def docker_build(self, sandbox):
        builds = [call["argv"] for call in sandbox.calls("docker") if call["argv"][0] == "build"]
        self.assertEqual(len(builds), 1, sandbox.calls())
        return builds[0]

    def test_logs_in_to_the_registry_builds_pushes_and_writes_the_artifacts(self):
        sandbox, result = self.build()
        self.assertSucceeded(result)
        image = f"{REPOSITORY_URI}:01234567"

        # The login: a password from ECR for this region, piped to docker for this registry only.
        aws = [call["argv"] for call in sandbox.calls("aws")]
        self.assertEqual(
            aws,
            [
                ["ecr", "get-login-password", "--region", "us-east-1"],
                # Not built before: the tag is looked up, then built and pushed.
                [
                    "ecr", "describe-images", "--region", "us-east-1",
                    "--repository-name", "delivery-operator/hello-1234abcd",
                    "--image-ids", "imageTag=01234567",
                    "--query", "imageDetails[0].imageDigest", "--output", "text",
                ],
            ],
        )
        docker = sandbox.calls("docker")
        self.assertEqual(
            docker[0]["argv"], ["login", "--username", "AWS", "--password-stdin", REGISTRY]
        )
        self.assertEqual(docker[0]["stdin"].strip(), "fake-ecr-password")

        build = self.docker_build(sandbox)
        self.assertEqual(options(build, "--file"), ["docker/Dockerfile"])
        self.assertEqual(options(build, "--tag"), [image, f"{REPOSITORY_URI}:latest"])
        self.assertEqual(build[-1], "services/app", "the context is the last argument")
        build_args = dict(arg.split("=", 1) for arg in options(build, "--build-arg"))
        labels = dict(label.split("=", 1) for label in options(build, "--label"))
        self.assertEqual(build_args["VCS_REF"], COMMIT)
        self.assertEqual(labels["org.opencontainers.image.revision"], COMMIT)
        created = build_args["BUILD_DATE"]
        self.assertEqual(labels["org.opencontainers.image.created"], created)
        self.assertRegex(created, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", "RFC 3339, UTC")
        age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.strptime(
            created, "%Y-%m-%dT%H:%M:%S%z"
        )
        self.assertLess(abs(age.total_seconds()), 120)

        # Pushed after the build, the source's tag first.
        self.assertEqual(
            [call["argv"] for call in docker[2:]],
            [["push", image], ["push", f"{REPOSITORY_URI}:latest"]],
        )
        self.assertEqual(
            json.loads((sandbox.dir / "imagedefinitions.json").read_text()),
            [{"name": "app", "imageUri": image}],
        )
        self.assertEqual((sandbox.dir / "image-tag").read_text(), "01234567\n")

    def test_immutable_tags_build_and_push_no_latest(self):
        sandbox, result = self.build(TAG_LATEST="false")
        self.assertSucceeded(result)
        image = f"{REPOSITORY_URI}:01234567"
        self.assertEqual(options(self.docker_build(sandbox), "--tag"), [image])
        pushes = [call["argv"] for call in sandbox.calls("docker") if call["argv"][0] == "push"]
        self.assertEqual(pushes, [["push", image]])

    def test_imagedefinitions_is_json_whatever_the_container_name(self):
        for name in ['we"b', "back\\slash", "app\nnext-line", "ünïcode"]:
            with self.subTest(name=name):
                sandbox, result = self.build(CONTAINER_NAME=name)
                self.assertSucceeded(result)
                definitions = json.loads((sandbox.dir / "imagedefinitions.json").read_text())
                image = f"{REPOSITORY_URI}:01234567"
                self.assertEqual(definitions, [{"name": name, "imageUri": image}])

    def test_the_image_tag_of_each_kind_of_source_version(self):
        cases = [
            ("a commit ID: its first 8 characters", COMMIT, "01234567"),
            (
                "an S3 version ID: unsafe characters become '-'",
                "3/L4kqtJl40Nr8X8gdRQBpUMLUo.Zk~",
                "3-L4kqtJl40Nr8X8gdRQBpUMLUo.Zk-",
            ),
            ("a version ID starting with '.'", ".Ab3_xyz", "_Ab3_xyz"),
            ("a version ID starting with a character made '-'", "+Ab3", "_Ab3"),
            ("a version ID of 300 characters: 128 kept", "A1b2+" * 60, ("A1b2-" * 60)[:128]),
            ("hex, but not a whole commit ID", COMMIT[:39], COMMIT[:39]),
            ("no source version: the build number", "", "build-42"),
        ]
        for description, version, tag in cases:
            with self.subTest(description):
                sandbox, result = self.build(CODEBUILD_RESOLVED_SOURCE_VERSION=version)
                self.assertSucceeded(result)
                self.assertTrue(IMAGE_TAG_PATTERN.fullmatch(tag), "the expectation is a tag")
                self.assertEqual((sandbox.dir / "image-tag").read_text(), tag + "\n")
                build = self.docker_build(sandbox)
                self.assertEqual(options(build, "--tag")[0], f"{REPOSITORY_URI}:{tag}")
                build_args = dict(arg.split("=", 1) for arg in options(build, "--build-arg"))
                self.assertEqual(build_args["VCS_REF"], version, "the full source version")

    def test_an_unset_source_version_is_an_empty_one(self):
        sandbox, result = self.build(CODEBUILD_RESOLVED_SOURCE_VERSION=None)
        self.assertSucceeded(result)
        self.assertEqual((sandbox.dir / "image-tag").read_text(), "build-42\n")

    def test_a_rerun_of_a_source_version_reuses_its_image(self):
        # A retry, "Release change" or the restart after a pipeline update: the tag exists and
        # is immutable; pushing a rebuilt image under it would be refused.
        sandbox, result = self.build(FAKE_EXISTING_TAGS="01234567")
        self.assertSucceeded(result)
        docker = [call["argv"][0] for call in sandbox.calls("docker")]
        self.assertEqual(docker, ["login"], "no build, no push")
        image = f"{REPOSITORY_URI}:01234567"
        self.assertEqual(
            json.loads((sandbox.dir / "imagedefinitions.json").read_text()),
            [{"name": "app", "imageUri": image}],
        )
        self.assertEqual((sandbox.dir / "image-tag").read_text(), "01234567\n")
        self.assertIn("reusing it", result.stdout)

    def test_another_tag_in_the_repository_does_not_count(self):
        sandbox, result = self.build(FAKE_EXISTING_TAGS="89abcdef,latest")
        self.assertSucceeded(result)
        self.docker_build(sandbox)

    def test_a_lookup_that_fails_otherwise_fails_the_build_before_docker_builds(self):
        sandbox, result = self.build(FAKE_AWS_FAIL="describe-images")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("could not look up", result.stderr)
        self.assertIn("AccessDeniedException", result.stderr)
        self.assertFalse(any(call["argv"][0] == "build" for call in sandbox.calls("docker")))

    def test_a_failing_push_fails_the_build_and_writes_no_artifacts(self):
        sandbox, result = self.build(FAKE_DOCKER_FAIL="push")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("fake docker: push failed", result.stderr)
        self.assertFalse((sandbox.dir / "imagedefinitions.json").exists())
        self.assertFalse((sandbox.dir / "image-tag").exists())

    def test_a_failing_login_password_fails_the_build_before_docker_builds(self):
        # The password is piped into docker login, which succeeds here: only pipefail catches it.
        sandbox, result = self.build(FAKE_AWS_FAIL="get-login-password")
        self.assertNotEqual(result.returncode, 0)
        self.assertFalse(any(call["argv"][0] == "build" for call in sandbox.calls("docker")))

    def test_a_failing_docker_build_fails_before_pushing(self):
        sandbox, result = self.build(FAKE_DOCKER_FAIL="build")
        self.assertNotEqual(result.returncode, 0)
        self.assertFalse(any(call["argv"][0] == "push" for call in sandbox.calls("docker")))

    def test_missing_or_bad_inputs_are_named_before_anything_runs(self):
        cases = [
            ({"REPOSITORY_URI": None}, "environment variable REPOSITORY_URI is required"),
            ({"CONTAINER_NAME": ""}, "environment variable CONTAINER_NAME is required"),
            ({"AWS_REGION": None}, "environment variable AWS_REGION is required"),
            ({"TAG_LATEST": "yes"}, "TAG_LATEST must be true or false, not 'yes'"),
            ({"REPOSITORY_URI": "hello"}, "REPOSITORY_URI must be <registry>/<repository>"),
        ]
        for overrides, message in cases:
            with self.subTest(message):
                sandbox, result = self.build(**overrides)
                self.assertNotEqual(result.returncode, 0)
                self.assertIn(f"build: {message}", result.stderr)
                self.assertEqual(sandbox.calls(), [])

    def test_shellcheck_passes(self):
        result = subprocess.run(
            [shellcheck(), str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
