"""The S3 client (src/s3.c) through tests/tools/s3tool against moto_server.

moto checks SigV4 signatures (a wrong secret is 403 SignatureDoesNotMatch)
once its first INITIAL_NO_AUTH_ACTION_COUNT requests, used here to create an
IAM user, its access key and policy, and a bucket, have been made.

Needs moto_server and boto3 (the pyenv python3 on PATH has both) and the
s3tool binary (S3TOOL_BIN, default <repo>/build/tests/s3tool); skipped
otherwise. The 256 MiB upload runs only with S3_SLOW=1 (ctest label slow).

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
import threading
import time
import unittest
import http.client
import http.server

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


class FaultProxy:
    """A stand-in in front of moto: forwards every request as it came (the
    Host header too, so signatures still match) and answers 500
    InternalError instead for the requests that `fail(request)` picks."""

    def __init__(self, upstream_port, fail):
        self.requests = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                proxy.requests.append((self.command, self.path))
                if fail(self.command, self.path, len(proxy.requests)):
                    data = (b'<?xml version="1.0"?><Error><Code>InternalError</Code>'
                            b"<Message>injected</Message></Error>")
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The client drops connections when it gives up: not an error here.
        self.server.handle_error = lambda request, address: None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


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


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
@unittest.skipUnless(os.path.exists(S3TOOL), "s3tool is not built")
class S3Tests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = Moto()
        cls.tmp = tempfile.mkdtemp(prefix="aw-s3-")

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()
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

    def test_injected_5xx_on_a_part_is_retried(self):
        path = os.path.join(self.tmp, "faulty.bin")
        sha = write_random(path, 12 * MIB, seed=7)
        # Part 2's first attempt and the first CompleteMultipartUpload fail.
        seen = {"part2": 0, "complete": 0}

        def fail(method, p, n):
            if method == "PUT" and "partNumber=2&" in p:
                seen["part2"] += 1
                return seen["part2"] == 1
            if method == "POST" and "uploadId=" in p:
                seen["complete"] += 1
                return seen["complete"] == 1
            return False

        proxy = FaultProxy(self.moto.port, fail)
        try:
            rc, res, out, _ = self.run_tool(
                ["put", path, "s3://artifacts/faulty.bin"],
                self.env(S3_ENDPOINT=f"127.0.0.1:{proxy.port}", ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=5))
        finally:
            proxy.stop()
        self.assertEqual(rc, 0, out)
        self.assertEqual(res["parts"], "3")
        self.assertEqual(res["retries"], "2", out)
        self.assertEqual(self.sha_of_object("faulty.bin"), sha)

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

    def test_permanent_error_mid_multipart_aborts(self):
        path = os.path.join(self.tmp, "m11.bin")
        write_random(path, 11 * MIB, seed=6)

        def fail(method, p, n):
            return False

        # Part 3 answers 403 AccessDenied: the upload must be aborted.
        proxy = FaultProxy(self.moto.port, fail)
        handler = proxy.server.RequestHandlerClass
        orig = handler._any

        def deny_part3(self_):
            if self_.command == "PUT" and "partNumber=3&" in self_.path:
                n = int(self_.headers.get("Content-Length") or 0)
                self_.rfile.read(n)
                data = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                self_.send_response(403)
                self_.send_header("Content-Length", str(len(data)))
                self_.end_headers()
                self_.wfile.write(data)
                return
            orig(self_)

        handler.do_PUT = deny_part3
        try:
            rc, res, out, _ = self.run_tool(
                ["put", path, "s3://artifacts/denied.bin"],
                self.env(S3_ENDPOINT=f"127.0.0.1:{proxy.port}", ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=5))
        finally:
            proxy.stop()
        os.unlink(path)
        self.assertEqual(rc, 1, out)
        self.assertEqual(res["code"], "AccessDenied")
        self.assertIn("UploadPart 3", res["message"])
        self.assertEqual(res["aborts"], "1")
        uploads = self.moto.s3.list_multipart_uploads(Bucket="artifacts").get("Uploads", [])
        self.assertEqual([u for u in uploads if u["Key"] == "denied.bin"], [])


@unittest.skipUnless(os.environ.get("S3_SLOW") == "1", "S3_SLOW=1 runs the 256 MiB upload")
@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
@unittest.skipUnless(os.path.exists(S3TOOL), "s3tool is not built")
class S3SlowTests(unittest.TestCase):
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
