"""The S3 client (src/s3.c) through tests/tools/s3tool against moto_server.

moto checks SigV4 signatures (a wrong secret is 403 SignatureDoesNotMatch)
once its first INITIAL_NO_AUTH_ACTION_COUNT requests, used here to create an
IAM user, its access key and policy, and a bucket, have been made.

Needs moto_server and boto3 (the pyenv python3 on PATH has both) and the
s3tool binary (S3TOOL_BIN, default <repo>/build/tests/s3tool); skipped
otherwise. The 64 MiB upload with faults on many parts and the 256 MiB
upload run only with S3_SLOW=1 (ctest label slow).

S3FaultTests put tests/integration/s3faults.py between s3tool and moto: the
store fails on demand (5xx, resets, stalls, slow parts, lost answers) and
every request is recorded, so the tests check what was sent, attempt by
attempt.

Keys here use unreserved characters and '/': moto computes the signature of
keys with '+', '=', ',' or non-ASCII differently from AWS (boto3's own
requests fail the same way against it), so those cannot be checked here.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from s3faults import DeadPort, S3FaultProxy, request_problems

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
S3TOOL = os.environ.get("S3TOOL_BIN", os.path.join(REPO, "build", "tests", "s3tool"))
MIB = 1024 * 1024

try:
    import boto3  # noqa: F401
    HAVE_BOTO = True
except ImportError:
    HAVE_BOTO = False
MOTO = shutil.which("moto_server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ASAN = {}


def is_asan(path):
    if path not in _ASAN:
        try:
            with open(path, "rb") as f:
                _ASAN[path] = b"__asan_init" in f.read()
        except OSError:
            _ASAN[path] = False
    return _ASAN[path]


class Moto:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4")
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        import boto3
        iam = boto3.client("iam", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="argowait")
        iam.put_user_policy(UserName="argowait", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="argowait")["AccessKey"]
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        self.s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                               aws_access_key_id=self.access_key,
                               aws_secret_access_key=self.secret_key)
        self.s3.create_bucket(Bucket="artifacts")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_random(path, size, seed=1):
    """A file of size bytes, streamed; returns its SHA-256."""
    h = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    with open(path, "wb") as f:
        left, i = size, 0
        while left:
            chunk = block[: min(left, len(block))]
            chunk = bytes([i & 0xFF]) + chunk[1:] if chunk else chunk
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


def parse_result(out):
    line = out.strip().splitlines()[-1] if out.strip() else ""
    res = {}
    head, _, message = line.partition(" message=")
    for tok in head.split():
        k, _, v = tok.partition("=")
        res[k] = v
    if message:
        res["message"] = message
    return res


_MOTO = []


def shared_moto():
    """One moto_server for the classes of this module (stopped at its end)."""
    if not _MOTO:
        _MOTO.append(Moto())
    return _MOTO[0]


def tearDownModule():
    while _MOTO:
        _MOTO.pop().stop()


class S3Case(unittest.TestCase):
    """Helpers; the moto_server is shared by the classes of this module."""

    @classmethod
    def setUpClass(cls):
        cls.moto = shared_moto()
        cls.tmp = tempfile.mkdtemp(prefix="aw-s3-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def env(self, **over):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("S3_") or k.startswith("ARTIFACT_S3_") or k.startswith("S3TOOL_"):
                del env[k]
        env.update(S3_ENDPOINT=f"127.0.0.1:{self.moto.port}", S3_INSECURE="1",
                   S3_ACCESS_KEY=self.moto.access_key, S3_SECRET_KEY=self.moto.secret_key)
        env.update({k: str(v) for k, v in over.items()})
        if is_asan(S3TOOL):
            # ASan keeps freed memory in a 256 MiB quarantine: RSS would
            # follow the bytes that went through curl, not what is held.
            opts = env.get("ASAN_OPTIONS", "")
            env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "quarantine_size_mb=4"
        return env

    def run_tool(self, args, env, timeout=300):
        """Runs s3tool; returns (exit code, result dict, stdout+stderr, peak RSS in KiB, seconds)."""
        t0 = time.monotonic()
        p = subprocess.Popen([S3TOOL] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        out, err = p.communicate(timeout=timeout)
        # communicate() reaped it; ask the kernel for the children's peak instead.
        elapsed = time.monotonic() - t0
        out, err = out.decode(), err.decode()
        return p.returncode, parse_result(out), out + err, elapsed

    def run_tool_rss(self, args, env):
        """Like run_tool, plus s3tool's own peak RSS in KiB (VmHWM since exec:
        a forked child's rusage would count the Python parent's pages)."""
        rc, res, out, elapsed = self.run_tool(args, env)
        return rc, res, out, elapsed, int(res.get("rss_peak_kib", "-1"))

    def get(self, key):
        return self.moto.s3.get_object(Bucket="artifacts", Key=key)["Body"].read()

    def sha_of_object(self, key):
        h = hashlib.sha256()
        body = self.moto.s3.get_object(Bucket="artifacts", Key=key)["Body"]
        for chunk in iter(lambda: body.read(MIB), b""):
            h.update(chunk)
        return h.hexdigest()

    def assert_no_secret(self, text):
        self.assertNotIn(self.moto.secret_key, text)
        self.assertNotIn(self.moto.access_key, text)


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
@unittest.skipUnless(os.path.exists(S3TOOL), "s3tool is not built")
class S3Tests(S3Case):

    # ---- single PutObject ----

    def test_small_put_round_trip(self):
        path = os.path.join(self.tmp, "small.bin")
        data = os.urandom(100_000)
        with open(path, "wb") as f:
            f.write(data)
        rc, res, out, _ = self.run_tool(["put", path, "s3://artifacts/wf/pod/small.bin"], self.env())
        self.assertEqual(rc, 0, out)
        self.assertEqual(res["status"], "ok")
        self.assertEqual(res["parts"], "0")
        self.assertEqual(self.get("wf/pod/small.bin"), data)
        self.assert_no_secret(out)

    def test_empty_file(self):
        path = os.path.join(self.tmp, "empty")
        open(path, "wb").close()
        rc, res, out, _ = self.run_tool(["put", path, "s3://artifacts/wf/empty"], self.env())
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.get("wf/empty"), b"")

    def test_symlink_not_followed(self):
        secret = os.path.join(self.tmp, "secret-token")
        with open(secret, "w") as f:
            f.write("TOPSECRET")
        link = os.path.join(self.tmp, "link")
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(secret, link)
        rc, res, out, _ = self.run_tool(["put", link, "s3://artifacts/wf/link"], self.env())
        self.assertEqual(rc, 1, out)
        self.assertIn("symlink", res["message"])
        with self.assertRaises(Exception):
            self.get("wf/link")

    def test_virtual_host_addressing(self):
        # bucket.s3.test:PORT is not resolvable: CONNECT_TO sends every
        # connection to moto, which reads the bucket from the Host header.
        path = os.path.join(self.tmp, "vhost.txt")
        with open(path, "wb") as f:
            f.write(b"virtual host\n")
        env = self.env(S3_ENDPOINT=f"s3.test:{self.moto.port}", S3_ADDRESSING="virtual",
                       S3_CONNECT_TO=f"::127.0.0.1:{self.moto.port}")
        rc, res, out, _ = self.run_tool(["put", path, "s3://artifacts/vhost/a.txt"], env)
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.get("vhost/a.txt"), b"virtual host\n")

    # ---- permanent errors ----

    def test_wrong_secret_is_permanent_and_not_leaked(self):
        path = os.path.join(self.tmp, "small2.bin")
        with open(path, "wb") as f:
            f.write(b"x" * 1000)
        wrong = "WRONG" + self.moto.secret_key[5:]
        rc, res, out, _ = self.run_tool(["put", path, "s3://artifacts/wf/x"],
                                        self.env(S3_SECRET_KEY=wrong, S3TOOL_LOGLEVEL="debug"))
        self.assertEqual(rc, 1, out)
        self.assertEqual(res["code"], "SignatureDoesNotMatch")
        self.assertEqual(res["attempts"], "1")
        self.assertIn("s3://artifacts/wf/x: SignatureDoesNotMatch", res["message"])
        self.assertNotIn(wrong, out)
        self.assert_no_secret(out)

    def test_unknown_access_key(self):
        path = os.path.join(self.tmp, "small3.bin")
        with open(path, "wb") as f:
            f.write(b"y")
        rc, res, out, _ = self.run_tool(["put", path, "s3://artifacts/wf/y"],
                                        self.env(S3_ACCESS_KEY="AKIANOTAREALKEY00000"))
        self.assertEqual(rc, 1, out)
        self.assertEqual(res["code"], "InvalidAccessKeyId")
        self.assert_no_secret(out)

    def test_missing_bucket(self):
        path = os.path.join(self.tmp, "small4.bin")
        with open(path, "wb") as f:
            f.write(b"z")
        rc, res, out, _ = self.run_tool(["put", path, "s3://no-such-bucket/k"], self.env())
        self.assertEqual(rc, 1, out)
        self.assertEqual(res["code"], "NoSuchBucket")
        self.assertIn("s3://no-such-bucket/k: NoSuchBucket", res["message"])

    def test_missing_file(self):
        rc, res, out, _ = self.run_tool(["put", os.path.join(self.tmp, "nope"), "s3://artifacts/k"], self.env())
        self.assertEqual(rc, 1, out)
        self.assertIn("nope", res["message"])

    def test_bucket_head_and_create(self):
        rc, res, out, _ = self.run_tool(["bucket", "s3://artifacts"], self.env())
        self.assertEqual(rc, 0, out)
        rc, res, out, _ = self.run_tool(["bucket", "s3://fresh-bucket"], self.env())
        self.assertEqual(rc, 1, out)
        self.assertEqual(res["code"], "NoSuchBucket")
        rc, res, out, _ = self.run_tool(["bucket", "s3://fresh-bucket", "--create"], self.env())
        self.assertEqual(rc, 0, out)
        self.assertEqual(res["created"], "1")
        rc, res, out, _ = self.run_tool(["bucket", "s3://fresh-bucket", "--create"], self.env())
        self.assertEqual(rc, 0, out)
        self.assertEqual(res["created"], "0")
        self.moto.s3.head_bucket(Bucket="fresh-bucket")

    # ---- transient errors and the budget ----

    def test_store_down_retries_within_budget(self):
        path = os.path.join(self.tmp, "small5.bin")
        with open(path, "wb") as f:
            f.write(b"w" * 10)
        dead = free_port()
        rc, res, out, elapsed = self.run_tool(["put", path, "s3://artifacts/k"],
                                              self.env(S3_ENDPOINT=f"127.0.0.1:{dead}", S3TOOL_BUDGET_MS=1500))
        self.assertEqual(rc, 2, out)
        self.assertEqual(res["status"], "transient")
        self.assertGreaterEqual(int(res["retries"]), 3, out)
        self.assertLess(elapsed, 3.0)
        self.assertIn("retrying", out)

    # ---- multipart ----

    def test_multipart_64mib_and_memory(self):
        small = os.path.join(self.tmp, "m6.bin")
        write_random(small, 6 * MIB, seed=3)
        rc, res, out, _, rss_small = self.run_tool_rss(
            ["put", small, "s3://artifacts/m6.bin"], self.env(ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=5))
        self.assertEqual(rc, 0, out)
        self.assertEqual(res["parts"], "2")

        path = os.path.join(self.tmp, "m64.bin")
        sha = write_random(path, 64 * MIB, seed=4)
        rc, res, out, elapsed, rss = self.run_tool_rss(
            ["put", path, "s3://artifacts/big/m64.bin"],
            self.env(ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=5, ARTIFACT_S3_UPLOAD_THREADS=4))
        os.unlink(path)
        self.assertEqual(rc, 0, out)
        self.assertEqual(res["parts"], "13")
        self.assertLessEqual(int(res["buffer_peak"]), 4 * 4 * 256 * 1024)
        self.assertEqual(self.sha_of_object("big/m64.bin"), sha)
        sys.stderr.write(f"\n64 MiB multipart: {elapsed:.1f} s, peak RSS {rss} KiB (6 MiB: {rss_small} KiB)\n")
        # Memory does not follow the file: 10x the data, at most 8 MiB more.
        self.assertLess(rss, rss_small + 8 * 1024)
        if not is_asan(S3TOOL):
            self.assertLess(rss, 32 * 1024)

    def test_cancel_mid_multipart_aborts(self):
        path = os.path.join(self.tmp, "m40.bin")
        write_random(path, 40 * MIB, seed=5)
        rc, res, out, _ = self.run_tool(
            ["put", path, "s3://artifacts/cancelled.bin", "--cancel-after-ms", "700"],
            self.env(ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=5, ARTIFACT_S3_UPLOAD_THREADS=2))
        os.unlink(path)
        self.assertEqual(rc, 3, out)
        self.assertEqual(res["status"], "cancelled")
        self.assertEqual(res["aborts"], "1", out)
        uploads = self.moto.s3.list_multipart_uploads(Bucket="artifacts").get("Uploads", [])
        self.assertEqual([u for u in uploads if u["Key"] == "cancelled.bin"], [])
        with self.assertRaises(Exception):
            self.get("cancelled.bin")


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
@unittest.skipUnless(os.path.exists(S3TOOL), "s3tool is not built")
class S3FaultTests(S3Case):
    """The client against tests/integration/s3faults.py in front of moto:
    what it sent, attempt by attempt, when the store fails on demand."""

    PART = 5 * MIB
    SIZE = 2 * 5 * MIB + 4096        # three parts: 5 MiB, 5 MiB, 4 KiB

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.file = os.path.join(cls.tmp, "three-parts.bin")
        cls.sha = write_random(cls.file, cls.SIZE, seed=11)

    def put(self, proxy, key, *extra, **over):
        over.setdefault("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB", 5)
        over.setdefault("ARTIFACT_S3_UPLOAD_THREADS", 2)
        rc, res, out, elapsed = self.run_tool(["put", self.file, "s3://artifacts/" + key, *extra],
                                              self.env(S3_ENDPOINT=proxy.endpoint, **over))
        self.assert_no_secret(out)
        return rc, res, out, elapsed

    def assert_sent_well(self, proxy, key):
        probs = request_problems(proxy.recorded(key=key), self.moto.access_key, self.moto.secret_key,
                                 self.PART, self.SIZE)
        self.assertEqual(probs, [])

    def assert_no_pending_upload(self, key):
        # (no Prefix: moto signs a '/' in the query differently from boto3)
        ups = self.moto.s3.list_multipart_uploads(Bucket="artifacts").get("Uploads", [])
        self.assertEqual([u for u in ups if u["Key"] == key], [])

    def assert_absent(self, key):
        with self.assertRaises(Exception):
            self.moto.s3.head_object(Bucket="artifacts", Key=key)

    def assert_uploaded_once_but(self, proxy, key, retried, out):
        """Every part sent once, except ``retried`` twice, with the same bytes;
        one Complete, no Abort; the object is the file."""
        want = {1: 1, 2: 1, 3: 1}
        want[retried] = 2
        self.assertEqual(proxy.parts_sent(key), want, out)
        again = proxy.recorded("UploadPart", part=retried, key=key)
        self.assertEqual(again[1].body_md5, hashlib.md5(self.part_bytes(retried)).hexdigest())
        self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 1)
        self.assertEqual(proxy.attempts("AbortMultipartUpload", key=key), 0)
        self.assertEqual(proxy.attempts("CreateMultipartUpload", key=key), 1)
        self.assertEqual(self.sha_of_object(key), self.sha)
        self.assert_sent_well(proxy, key)

    def part_bytes(self, n):
        with open(self.file, "rb") as f:
            f.seek((n - 1) * self.PART)
            return f.read(self.PART)

    # ---- transient answers on one part: only that part is sent again ----

    def test_5xx_on_part_n_is_retried_alone(self):
        cases = [("InternalError", {}), ("SlowDown", {}), ("ServiceUnavailable", {}),
                 ("RequestTimeout", {}),
                 # the part reached the store, then the answer was a 500
                 ("InternalError", {"when": "after_forward"})]
        for i, (code, kw) in enumerate(cases):
            with self.subTest(code=code, **kw), S3FaultProxy(self.moto.port) as proxy:
                key = "fault/5xx-%d.bin" % i
                f = proxy.add("error", op="UploadPart", part=2, attempt=1, code=code, **kw)
                rc, res, out, _ = self.put(proxy, key)
                self.assertEqual(rc, 0, out)
                self.assertEqual(f.applied, 1)
                self.assertEqual(res["retries"], "1", out)
                self.assertIn("UploadPart 2 of s3://artifacts/%s failed (attempt 1): HTTP %d: %s"
                              % (key, proxy.recorded("UploadPart", part=2)[0].status, code), out)
                self.assert_uploaded_once_but(proxy, key, 2, out)

    def test_reset_on_part_n_is_retried_alone(self):
        for when in ("before_body", "mid_body", "after_body", "after_forward"):
            with self.subTest(when=when), S3FaultProxy(self.moto.port) as proxy:
                key = "fault/reset-%s.bin" % when
                proxy.add("reset", op="UploadPart", part=1, attempt=1, when=when)
                rc, res, out, _ = self.put(proxy, key)
                self.assertEqual(rc, 0, out)
                # A reset before any byte of the body on a kept-alive
                # connection is retried by curl itself on a new one (it had
                # nothing to rewind): not an attempt of s3.c's own.
                self.assertIn(res["retries"], ("0", "1") if when == "before_body" else ("1",), out)
                first = proxy.recorded("UploadPart", part=1)[0]
                self.assertIsNone(first.status)
                self.assertEqual(first.body_read, {"before_body": 0, "mid_body": self.PART // 2}.get(
                    when, self.PART))
                self.assert_uploaded_once_but(proxy, key, 1, out)

    def test_complete_200_with_an_error_body_and_a_slow_answer(self):
        # CompleteMultipartUpload may answer 200 with <Error> (retried when
        # the code is transient), and S3 sends spaces while it assembles.
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/complete-200-error.bin"
            proxy.add("error", op="CompleteMultipartUpload", attempt=1, code="InternalError",
                      status200=True)
            proxy.add("drip", op="CompleteMultipartUpload", attempt=2, spaces=5, chunk=64, delay=0.05)
            rc, res, out, _ = self.put(proxy, key)
            self.assertEqual(rc, 0, out)
            self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 2)
            self.assertEqual(proxy.parts_sent(key), {1: 1, 2: 1, 3: 1})
            self.assertEqual(self.sha_of_object(key), self.sha)

    # ---- permanent answers: the upload is aborted ----

    def test_permanent_answer_on_part_n_aborts(self):
        for code, when in (("AccessDenied", "before_body"), ("AccessDenied", "after_body"),
                           ("NoSuchUpload", "after_body")):
            with self.subTest(code=code, when=when), S3FaultProxy(self.moto.port) as proxy:
                key = "fault/perm-%s-%s.bin" % (code, when)
                proxy.add("error", op="UploadPart", part=2, code=code, when=when)
                # One part in flight: part 3 could only be sent after part 2's answer.
                rc, res, out, _ = self.put(proxy, key, ARTIFACT_S3_UPLOAD_THREADS=1)
                self.assertEqual(rc, 1, out)
                self.assertEqual(res["code"], code)
                self.assertIn("UploadPart 2", res["message"])
                self.assertEqual(res["aborts"], "1")
                self.assertEqual(proxy.attempts("UploadPart", part=2, key=key), 1, "a 4xx is not retried")
                denied = proxy.recorded("UploadPart", part=2, key=key)[0]
                if when == "before_body":
                    self.assertEqual(denied.body_read, 0)
                abort = proxy.wait_for(lambda r: r.op == "AbortMultipartUpload" and r.key == key, done=True)
                created = proxy.recorded("CreateMultipartUpload", key=key)[0]
                self.assertEqual(abort.upload_id, proxy_upload_id(proxy, key))
                self.assertGreater(abort.seq, created.seq)
                self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 0)
                # Nothing new starts once the 4xx was answered, but the abort.
                self.assertEqual(proxy.parts_sent(key), {1: 1, 2: 1})
                self.assertEqual(proxy.recorded(key=key)[-1].op, "AbortMultipartUpload")
                self.assert_no_pending_upload(key)
                self.assert_absent(key)
                self.assert_sent_well(proxy, key)

    # ---- the budget (SIGTERM): a slow part, a stalled store ----

    def test_slow_part_when_the_reserve_begins_is_aborted(self):
        # s3tool's budget starts at once (SIGTERM came); --cancel-after-ms is
        # the reserve beginning, as the executor cancels then.
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/slow-part.bin"
            proxy.add("slow_body", op="UploadPart", part=2, rate=64 * 1024)
            rc, res, out, elapsed = self.put(proxy, key, "--cancel-after-ms", "2500", S3TOOL_BUDGET_MS=8000)
            self.assertEqual(rc, 3, out)
            self.assertEqual(res["status"], "cancelled")
            self.assertLess(elapsed, 8.0, out)
            slow = proxy.recorded("UploadPart", part=2, key=key)[0]
            self.assertGreater(slow.body_read, 0)
            self.assertLess(slow.body_read, self.PART, "the slow part never finished")
            abort = proxy.wait_for(lambda r: r.op == "AbortMultipartUpload" and r.key == key, done=True)
            self.assertEqual(abort.status, 204)
            self.assertEqual(abort.upload_id, proxy_upload_id(proxy, key))
            self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 0)
            self.assert_no_pending_upload(key)
            self.assert_absent(key)

    def test_stalled_part_gives_up_within_the_budget(self):
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/stalled.bin"
            proxy.add("stall", op="UploadPart", part=1, when="before_body")
            rc, res, out, elapsed = self.put(proxy, key, S3TOOL_BUDGET_MS=2000)
            self.assertEqual(rc, 2, out)
            self.assertEqual(res["status"], "transient")
            self.assertIn("gave up", res["message"])
            self.assertLess(elapsed, 2.0 + 1.5, out)  # the stall lasts until the proxy stops
            self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 0)
            self.assert_absent(key)

    def test_store_answers_503_to_everything(self):
        with S3FaultProxy(self.moto.port) as proxy:
            proxy.add("error", code="SlowDown")
            rc, res, out, elapsed = self.put(proxy, "fault/down.bin", S3TOOL_BUDGET_MS=1500)
            self.assertEqual(rc, 2, out)
            self.assertIn("gave up on CreateMultipartUpload: HTTP 503: SlowDown", res["message"])
            self.assertLess(elapsed, 1.5 + 1.5, out)
            sent = proxy.recorded()
            self.assertGreaterEqual(len(sent), 3)
            self.assertEqual({r.op for r in sent}, {"CreateMultipartUpload"})

    def test_store_down_is_an_honest_failure(self):
        rc, res, out, elapsed = self.run_tool(
            ["put", self.file, "s3://artifacts/fault/refused.bin"],
            self.env(S3_ENDPOINT=DeadPort().endpoint, S3TOOL_BUDGET_MS=1500,
                     ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=5))
        self.assertEqual(rc, 2, out)
        self.assertEqual(res["status"], "transient")
        self.assertIn("gave up on CreateMultipartUpload", res["message"])
        self.assertLess(elapsed, 1.5 + 1.5, out)

    # ---- a lost CompleteMultipartUpload answer ----

    def test_lost_complete_answer_retry_succeeds(self):
        # moto (and AWS S3 for a while) answers a repeated Complete with 200.
        # "mid_response": the status line, headers and half the XML arrived.
        for when in ("after_forward", "mid_response"):
            with self.subTest(when=when), S3FaultProxy(self.moto.port) as proxy:
                key = "fault/lost-complete-200-%s.bin" % when
                proxy.add("reset", op="CompleteMultipartUpload", attempt=1, when=when)
                rc, res, out, _ = self.put(proxy, key)
                self.assertEqual(rc, 0, out)
                self.assertEqual(res["retries"], "1", out)
                self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 2)
                self.assertEqual(proxy.attempts("AbortMultipartUpload", key=key), 0)
                self.assertEqual(self.sha_of_object(key), self.sha)

    def test_lost_complete_answer_then_nosuchupload_checks_the_object(self):
        # MinIO (and S3 after a while) answer the retry NoSuchUpload: the
        # upload completed. The object, with its size and multipart ETag,
        # shows it; reporting a failure would be wrong.
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/lost-complete-404.bin"
            proxy.add("reset", op="CompleteMultipartUpload", attempt=1, when="after_forward")
            proxy.add("error", op="CompleteMultipartUpload", attempt=2, code="NoSuchUpload")
            rc, res, out, _ = self.put(proxy, key)
            self.assertEqual(rc, 0, out)
            self.assertEqual(res["status"], "ok")
            head = proxy.wait_for(lambda r: r.op == "HeadObject" and r.key == key, done=True)
            self.assertEqual(head.status, 200)
            self.assertEqual(proxy.attempts("AbortMultipartUpload", key=key), 0)
            self.assertIn("its answer was lost", out)
            self.assertEqual(self.sha_of_object(key), self.sha)
            self.assert_sent_well(proxy, key)

    def test_nosuchupload_on_complete_without_the_object_is_a_failure(self):
        # The first Complete failed before it reached the store, the retry is
        # told NoSuchUpload (the upload was aborted meanwhile): no object,
        # so a permanent failure, never a false success.
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/complete-gone.bin"
            proxy.add("error", op="CompleteMultipartUpload", attempt=1, code="InternalError")
            proxy.add("error", op="CompleteMultipartUpload", attempt=2, code="NoSuchUpload")
            rc, res, out, _ = self.put(proxy, key)
            self.assertEqual(rc, 1, out)
            self.assertEqual(res["code"], "NoSuchUpload")
            self.assertIn("the object is not there either", res["message"])
            self.assertEqual(proxy.attempts("HeadObject", key=key), 1)
            # The upload still exists at the store: the abort cleans it up.
            self.assertEqual(res["aborts"], "1")
            self.assert_no_pending_upload(key)
            self.assert_absent(key)

    def test_lost_complete_answer_and_another_object_is_a_failure(self):
        # HeadObject finds an object of another size at the key: not ours.
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/complete-other.bin"

            def overwrite(r):
                self.moto.s3.put_object(Bucket="artifacts", Key=key, Body=b"someone else's")
                return True
            proxy.add("reset", op="CompleteMultipartUpload", attempt=1, when="after_forward")
            proxy.add("error", op="CompleteMultipartUpload", attempt=2, code="NoSuchUpload",
                      match=overwrite)
            rc, res, out, _ = self.put(proxy, key)
            self.assertEqual(rc, 1, out)
            self.assertEqual(res["code"], "NoSuchUpload")
            self.assertIn("HeadObject found another object (14 bytes", res["message"])

    def test_first_complete_nosuchupload_is_not_checked(self):
        # No earlier attempt could have completed it: no HeadObject.
        with S3FaultProxy(self.moto.port) as proxy:
            key = "fault/complete-first-404.bin"
            proxy.add("error", op="CompleteMultipartUpload", code="NoSuchUpload")
            rc, res, out, _ = self.put(proxy, key)
            self.assertEqual(rc, 1, out)
            self.assertEqual(res["code"], "NoSuchUpload")
            self.assertEqual(proxy.attempts("HeadObject", key=key), 0)
            self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 1)


def proxy_upload_id(proxy, key):
    """The UploadId the parts of ``key`` were sent with."""
    ids = {r.upload_id for r in proxy.recorded("UploadPart", key=key)}
    assert len(ids) == 1, ids
    return ids.pop()


@unittest.skipUnless(os.environ.get("S3_SLOW") == "1", "S3_SLOW=1 runs the 64 and 256 MiB uploads")
@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
@unittest.skipUnless(os.path.exists(S3TOOL), "s3tool is not built")
class S3SlowTests(unittest.TestCase):
    def test_64mib_with_faults_on_many_parts(self):
        # 13 parts, 4 in flight; five of them fail once each in a different
        # way: only those are sent again, and the object is the file.
        moto = Moto()
        tmp = tempfile.mkdtemp(prefix="aw-s3-slow-")
        try:
            path = os.path.join(tmp, "m64.bin")
            size = 64 * MIB
            sha = write_random(path, size, seed=12)
            with S3FaultProxy(moto.port) as proxy:
                proxy.add("error", op="UploadPart", part=1, attempt=1, code="InternalError")
                proxy.add("error", op="UploadPart", part=4, attempt=1, code="SlowDown", when="before_body")
                proxy.add("reset", op="UploadPart", part=6, attempt=1, when="mid_body")
                proxy.add("reset", op="UploadPart", part=9, attempt=1, when="after_forward")
                proxy.add("error", op="UploadPart", part=13, attempt=1, code="RequestTimeout")
                proxy.add("reset", op="CompleteMultipartUpload", attempt=1, when="after_forward")
                proxy.add("error", op="CompleteMultipartUpload", attempt=2, code="NoSuchUpload")
                env = dict(os.environ, S3_ENDPOINT=proxy.endpoint, S3_INSECURE="1",
                           S3_ACCESS_KEY=moto.access_key, S3_SECRET_KEY=moto.secret_key,
                           ARTIFACT_S3_UPLOAD_PART_SIZE_MIB="5", ARTIFACT_S3_UPLOAD_THREADS="4")
                p = subprocess.run([S3TOOL, "put", path, "s3://artifacts/m64-faults.bin"], capture_output=True,
                                   env=env, timeout=600)
                out = p.stdout.decode() + p.stderr.decode()
                self.assertEqual(p.returncode, 0, out)
                want = {n: 1 for n in range(1, 14)}
                for n in (1, 4, 6, 9, 13):
                    want[n] = 2
                self.assertEqual(proxy.parts_sent(), want)
                self.assertEqual(proxy.attempts("HeadObject"), 1)
                self.assertEqual(proxy.attempts("AbortMultipartUpload"), 0)
                self.assertEqual(request_problems(proxy.recorded(), moto.access_key, moto.secret_key,
                                                  5 * MIB, size), [])
            h = hashlib.sha256()
            body = moto.s3.get_object(Bucket="artifacts", Key="m64-faults.bin")["Body"]
            for chunk in iter(lambda: body.read(MIB), b""):
                h.update(chunk)
            self.assertEqual(h.hexdigest(), sha)
        finally:
            moto.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_256mib_multipart_memory(self):
        moto = Moto()
        tmp = tempfile.mkdtemp(prefix="aw-s3-slow-")
        try:
            path = os.path.join(tmp, "m256.bin")
            sha = write_random(path, 256 * MIB, seed=9)
            env = dict(os.environ, S3_ENDPOINT=f"127.0.0.1:{moto.port}", S3_INSECURE="1",
                       S3_ACCESS_KEY=moto.access_key, S3_SECRET_KEY=moto.secret_key,
                       ARTIFACT_S3_UPLOAD_PART_SIZE_MIB="16", ARTIFACT_S3_UPLOAD_THREADS="4")
            t0 = time.monotonic()
            p = subprocess.run([S3TOOL, "put", path, "s3://artifacts/m256.bin"], capture_output=True,
                               env=env, timeout=900)
            elapsed = time.monotonic() - t0
            out = p.stdout.decode() + p.stderr.decode()
            self.assertEqual(p.returncode, 0, out)
            res = parse_result(p.stdout.decode())
            self.assertEqual(res.get("parts"), "16", out)
            rss = int(res["rss_peak_kib"])
            sys.stderr.write(f"\n256 MiB multipart: {elapsed:.1f} s, peak RSS {rss} KiB\n")
            if not is_asan(S3TOOL):
                self.assertLess(rss, 32 * 1024)
            h = hashlib.sha256()
            body = moto.s3.get_object(Bucket="artifacts", Key="m256.bin")["Body"]
            for chunk in iter(lambda: body.read(MIB), b""):
                h.update(chunk)
            self.assertEqual(h.hexdigest(), sha)
        finally:
            moto.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
