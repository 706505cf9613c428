"""The operator's container image as scripts/image writes it: an OCI image layout archive.

Reads it the way a runtime does (index -> manifest -> config -> layer, every blob checked against
its digest), asserts what the image runs with and what it holds (a static binary, CA
certificates, uid/gid 65532, no shell), that deploy/Dockerfile describes the same image, and runs
the binary from the unpacked layer: chrooted into it when run as root (CI is), so nothing outside
the image can help it start.

    python3 tests/image/test_image.py "$(scripts/image --profile dev)"
"""

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import socket
import tarfile
import tempfile
import threading
import time
import tomllib
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
ARCHIVE = os.environ.get("IMAGE_ARCHIVE", "")

with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
    VERSION = tomllib.load(f)["package"]["version"]

# Everything the image holds. A shell, a package manager or a stray file is a failure.
EXPECTED_PATHS = {
    "delivery-operator",
    "etc",
    "etc/group",
    "etc/nsswitch.conf",
    "etc/passwd",
    "etc/ssl",
    "etc/ssl/certs",
    "etc/ssl/certs/ca-certificates.crt",
}
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
# A loopback address of its own for the name-resolution test's DNS server and API endpoint.
STUB_ADDRESS = "127.0.0.77"


class Archive:
    """An OCI image layout in a tar archive, every blob verified against its descriptor."""

    def __init__(self, path):
        with tarfile.open(path) as tar:
            self.files = {
                m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
            }

    def json(self, name):
        return json.loads(self.files[name])

    def blob(self, descriptor):
        algorithm, digest = descriptor["digest"].split(":", 1)
        if algorithm != "sha256":
            raise AssertionError(f"unexpected digest algorithm {algorithm}")
        data = self.files[f"blobs/sha256/{digest}"]
        if hashlib.sha256(data).hexdigest() != digest or len(data) != descriptor["size"]:
            raise AssertionError(f"blob {digest} does not match its descriptor")
        return data


def elf_dependencies(data):
    """(program interpreter or None, DT_NEEDED count) of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise AssertionError("not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    interpreter, needed = None, 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            interpreter = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
        elif p_type == 2:  # PT_DYNAMIC
            for offset in range(p_offset, p_offset + p_filesz, 16):
                tag, _ = struct.unpack_from("<qQ", data, offset)
                if tag == 0:  # DT_NULL
                    break
                needed += tag == 1  # DT_NEEDED
    return interpreter, needed


def dockerfile_final_stage():
    """The final stage's instructions of deploy/Dockerfile: [(INSTRUCTION, arguments)]."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            instructions = []
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


class StubDns(threading.Thread):
    """Answers A queries for one name with STUB_ADDRESS (NXDOMAIN for any other) and records
    every name asked; just enough DNS to see a resolver use it."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.name, self.asked = name, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((STUB_ADDRESS, 53))

    def run(self):
        while True:
            try:
                query, client = self.sock.recvfrom(512)
            except OSError:
                return
            labels, i = [], 12
            while query[i]:
                labels.append(query[i + 1 : i + 1 + query[i]].decode())
                i += 1 + query[i]
            (qtype,) = struct.unpack_from(">H", query, i + 1)
            name = ".".join(labels)
            self.asked.append(name)
            answer = b""
            if name == self.name and qtype == 1:  # A
                answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(STUB_ADDRESS)
            rcode = 0 if name == self.name else 3
            header = struct.pack(">HHHHHH", struct.unpack_from(">H", query)[0], 0x8180 | rcode, 1, int(bool(answer)), 0, 0)
            self.sock.sendto(header + query[12 : i + 5] + answer, client)

    def close(self):
        self.sock.close()


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.archive = Archive(ARCHIVE)
        index = cls.archive.json("index.json")
        (cls.descriptor,) = index["manifests"]
        cls.manifest = json.loads(cls.archive.blob(cls.descriptor))
        cls.config = json.loads(cls.archive.blob(cls.manifest["config"]))
        (layer,) = cls.manifest["layers"]
        cls.layer_descriptor = layer
        cls.layer_tar = gzip.decompress(cls.archive.blob(layer))
        with tarfile.open(fileobj=io.BytesIO(cls.layer_tar)) as tar:
            cls.members = {m.name.removeprefix("./").rstrip("/"): m for m in tar.getmembers()}
            cls.contents = {
                name: tar.extractfile(m).read() for name, m in cls.members.items() if m.isfile()
            }
        cls.root = tempfile.mkdtemp(prefix="delivery-operator-image-root.")
        # mkdtemp makes it 0700: as the image's root directory it must be traversable by the
        # non-root user, as a container runtime's rootfs is.
        os.chmod(cls.root, 0o755)
        if os.geteuid() == 0:
            # The devices every OCI runtime creates in a container ("Default Devices" of the
            # runtime spec). The static binary needs /dev/urandom: in a static program dlsym
            # finds no getrandom(3), so the getrandom crate reads randomness from that file.
            os.mkdir(os.path.join(cls.root, "dev"), 0o755)
            for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
                path = os.path.join(cls.root, "dev", name)
                os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
                os.chmod(path, 0o666)
        with tarfile.open(fileobj=io.BytesIO(cls.layer_tar)) as tar:
            # The "tar" filter (Python 3.12, backported) keeps modes and refuses paths outside root.
            tar.extractall(cls.root, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def enter_image(self):
        """In the child before exec: the unpacked image as root directory, as uid/gid 65532."""
        os.chroot(self.root)
        os.chdir("/")
        os.setgroups([])
        os.setgid(65532)
        os.setuid(65532)

    def test_archive_is_an_oci_layout_named_like_docker_save(self):
        self.assertEqual(self.archive.json("oci-layout"), {"imageLayoutVersion": "1.0.0"})
        self.assertEqual(self.descriptor["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(self.manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(self.manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json")
        self.assertEqual(self.layer_descriptor["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip")
        annotations = self.descriptor["annotations"]
        self.assertEqual(annotations["org.opencontainers.image.ref.name"], VERSION)
        self.assertEqual(annotations["io.containerd.image.name"], f"docker.io/library/delivery-operator:{VERSION}")
        # manifest.json (docker load) names the same blobs.
        (legacy,) = self.archive.json("manifest.json")
        self.assertEqual(legacy["RepoTags"], [f"delivery-operator:{VERSION}"])
        self.assertEqual(legacy["Config"], "blobs/sha256/" + self.manifest["config"]["digest"][7:])
        self.assertEqual(legacy["Layers"], ["blobs/sha256/" + self.layer_descriptor["digest"][7:]])

    def test_config_runs_the_operator_as_nonroot(self):
        machine = os.uname().machine
        self.assertEqual((self.config["os"], self.config["architecture"]), ("linux", ARCHITECTURES[machine]))
        run = self.config["config"]
        self.assertEqual(run["User"], "65532:65532")
        self.assertEqual(run["Entrypoint"], ["/delivery-operator"])
        self.assertEqual(run["Cmd"], ["run"])
        self.assertEqual(run["ExposedPorts"], {"8080/tcp": {}})
        self.assertNotIn("Env", run)
        self.assertEqual(run["Labels"]["org.opencontainers.image.title"], "delivery-operator")
        self.assertEqual(run["Labels"]["org.opencontainers.image.licenses"], "Apache-2.0")
        diff_id = "sha256:" + hashlib.sha256(self.layer_tar).hexdigest()
        self.assertEqual(self.config["rootfs"], {"type": "layers", "diff_ids": [diff_id]})

    def test_dockerfile_builds_the_same_image(self):
        stage = dockerfile_final_stage()
        self.assertEqual(stage[0], ("FROM", "scratch"))
        values = {}
        for keyword, rest in stage:
            values.setdefault(keyword, []).append(rest)
        run = self.config["config"]
        labels = dict(pair.split("=", 1) for rest in values["LABEL"] for pair in shlex.split(rest))
        self.assertEqual(labels, run["Labels"])
        self.assertEqual(values["USER"], [run["User"]])
        self.assertEqual([json.loads(v) for v in values["ENTRYPOINT"]], [run["Entrypoint"]])
        self.assertEqual([json.loads(v) for v in values["CMD"]], [run["Cmd"]])
        self.assertEqual({p if "/" in p else p + "/tcp" for v in values["EXPOSE"] for p in v.split()},
                         set(run["ExposedPorts"]))
        self.assertNotIn("ENV", values)
        # Every file of the layer is copied by the Dockerfile, to the same place.
        destinations = [shlex.split(rest)[-1] for rest in values["COPY"]]
        for name, member in self.members.items():
            if member.isfile():
                self.assertTrue(
                    any("/" + name == d or (d.endswith("/") and ("/" + name).startswith(d)) for d in destinations),
                    f"deploy/Dockerfile copies nothing to /{name}",
                )

    def test_layer_holds_only_the_binary_certificates_and_users(self):
        self.assertEqual(set(self.members), EXPECTED_PATHS)
        for shell in ("bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"):
            self.assertNotIn(shell, self.members)
        binary = self.members["delivery-operator"]
        self.assertTrue(binary.isfile())
        self.assertEqual(binary.mode, 0o755)
        # Reproducible: every entry owned by root, one mtime.
        self.assertEqual({(m.uid, m.gid) for m in self.members.values()}, {(0, 0)})
        self.assertEqual(len({m.mtime for m in self.members.values()}), 1)

    def test_nonroot_user_and_group_are_named(self):
        passwd = [line.split(":") for line in self.contents["etc/passwd"].decode().splitlines()]
        group = [line.split(":") for line in self.contents["etc/group"].decode().splitlines()]
        self.assertIn(["nonroot", "x", "65532", "65532"], [entry[:4] for entry in passwd])
        self.assertIn(["nonroot", "x", "65532"], [entry[:3] for entry in group])

    def test_ca_certificates_are_a_pem_bundle(self):
        bundle = self.contents["etc/ssl/certs/ca-certificates.crt"].decode("ascii")
        count = bundle.count("-----BEGIN CERTIFICATE-----")
        self.assertEqual(count, bundle.count("-----END CERTIFICATE-----"))
        self.assertGreater(count, 50, "the bundle should hold the public roots")

    def test_binary_is_fully_static(self):
        interpreter, needed = elf_dependencies(self.contents["delivery-operator"])
        self.assertIsNone(interpreter, "a program interpreter means a dynamically linked binary")
        self.assertEqual(needed, 0, "DT_NEEDED entries mean shared libraries at run time")

    def test_binary_reports_the_crate_version_from_the_unpacked_root(self):
        out = subprocess.run(
            [os.path.join(self.root, "delivery-operator"), "--version"],
            capture_output=True, text=True, check=True, env={},
        )
        self.assertEqual(out.stdout, f"delivery-operator {VERSION}\n")

    @unittest.skipUnless(os.geteuid() == 0, "chroot needs root")
    def test_binary_starts_chrooted_into_the_image_as_nonroot(self):
        out = subprocess.run(
            ["/delivery-operator", "--version"],
            capture_output=True, text=True, check=True, env={}, preexec_fn=self.enter_image,
        )
        self.assertEqual(out.stdout, f"delivery-operator {VERSION}\n")

    @unittest.skipUnless(os.geteuid() == 0, "chroot needs root")
    def test_operator_in_the_image_finds_the_api_server_through_dns(self):
        # Static glibc resolves with its built-in files and dns sources (no libnss_*.so in the
        # image). Chrooted into the image with only a resolv.conf added (the kubelet mounts one
        # into every pod), `run` must look the API server's name up over DNS and open a TLS
        # connection to the address the answer gave. The same lookup serves AWS endpoints.
        name = "kubernetes.image-test"
        try:
            dns = StubDns(name)
        except OSError as e:
            self.skipTest(f"cannot serve DNS on {STUB_ADDRESS}:53: {e}")
        dns.start()
        self.addCleanup(dns.close)
        api = socket.create_server((STUB_ADDRESS, 0))
        self.addCleanup(api.close)
        api.settimeout(0.5)
        port = api.getsockname()[1]
        with open(os.path.join(self.root, "etc", "resolv.conf"), "w") as f:
            f.write(f"nameserver {STUB_ADDRESS}\n")
        with open(os.path.join(self.root, "kubeconfig"), "w") as f:
            json.dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "image",
                "clusters": [{"name": "image", "cluster": {"server": f"https://{name}:{port}"}}],
                "users": [{"name": "image", "user": {"token": "image-test"}}],
                "contexts": [{"name": "image", "context": {"cluster": "image", "user": "image"}}],
            }, f)
        env = {
            "KUBECONFIG": "/kubeconfig", "METRICS_ADDR": "127.0.0.1:0", "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "image-test",
            "AWS_SECRET_ACCESS_KEY": "image-test",
        }
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)

        operator = subprocess.Popen(["/delivery-operator", "run"], env=env, preexec_fn=self.enter_image,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            connection = None
            while connection is None:
                if operator.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    self.fail(f"the operator did not connect to {name}:{port} (exit {operator.returncode}); "
                              f"DNS asked {dns.asked}; its log:\n{log.read().decode(errors='replace')}")
                try:
                    connection, _ = api.accept()
                except TimeoutError:
                    pass
            with connection:
                connection.settimeout(30)
                first = connection.recv(1)
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
        self.assertIn(name, dns.asked)
        self.assertEqual(first, b"\x16", "a TLS handshake record opens the connection")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        ARCHIVE = sys.argv.pop(1)
    if not ARCHIVE:
        sys.exit("usage: test_image.py IMAGE_ARCHIVE (or IMAGE_ARCHIVE=...)")
    unittest.main(verbosity=2)
