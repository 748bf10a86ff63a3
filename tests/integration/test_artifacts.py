"""Output artifacts and archived logs saved to S3, through the real binary.

moto_server (started once per class, with an IAM user, its key and a bucket,
as in test_s3) is the store; the fake API server takes the reports. Skipped
without moto_server and boto3.
"""
import hashlib
import io
import os
import tarfile
import unittest
import uuid
import zipfile

import test_lifecycle as tl
from harness import script_template, tgz_of, wait_until
from s3faults import DeadPort, S3FaultProxy, request_problems
from test_s3 import HAVE_BOTO, MOTO, Moto

MIB = 1024 * 1024
BUCKET = "artifacts"


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
class ArtifactTests(tl.LifecycleCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.moto = Moto()

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    # -- helpers
    def template(self, artifacts, archive_logs=False, location=None, mounts=None, port=None):
        self.prefix = "wf-%s/pod" % uuid.uuid4().hex[:8]
        if location is None:
            location = {"s3": {
                "bucket": BUCKET, "endpoint": "127.0.0.1:%d" % (port or self.moto.port),
                "insecure": True, "key": self.prefix,
                "accessKeySecret": {"name": "my-cred", "key": "accesskey"},
                "secretKeySecret": {"name": "my-cred", "key": "secretkey"}}}
        location = dict(location, archiveLogs=archive_logs)
        return script_template(artifacts=artifacts, volume_mounts=mounts, archiveLocation=location)

    def run_pod(self, template, code, secret=None, before_finish=None, **kw):
        pod = self.pod(template=template, **kw)
        pod.secret_file("my-cred", "accesskey", self.moto.access_key + "\n")
        pod.secret_file("my-cred", "secretkey", (secret or self.moto.secret_key) + "\n")
        if before_finish:
            before_finish(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, code, timeout=60)
        self.assert_writes_valid()
        self.assert_no_leak(pod, self.moto.secret_key)
        return pod

    def get(self, key):
        return self.moto.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def reported(self, pod):
        obj = pod.task_result()
        self.assertEqual(tl.labels(obj).get(tl.LBL_DONE), "true", self.info(pod))
        return (obj.get("outputs") or {}).get("artifacts") or []

    # -- tests
    def test_base_image_tgz_uploaded_as_is(self):
        art = {"name": "out", "path": "/tmp/out.txt", "globalName": "g-out"}
        data = tgz_of({"out.txt": b"hello artifact\n"})
        pod = self.run_pod(self.template([art]), 0,
                           before_finish=lambda p: p.stage_artifact("/tmp/out.txt", data))
        key = self.prefix + "/out.tgz"
        self.assertEqual(self.get(key), data)
        self.assertEqual(self.reported(pod), [dict(art, s3={"key": key})])
        self.assert_termination_log_empty(pod)

    def stage_dir(self, pod):
        pod.mount_file("/work", "dir/a.txt", "A" * 1000)
        pod.mount_file("/work", "dir/sub/b.txt", "bee")
        pod.mount_symlink("/work", "dir/link", "a.txt")

    def test_mounted_folder_tarred(self):
        art = {"name": "dir", "path": "/work/dir", "archive": {"tar": {"compressionLevel": 9}}}
        pod = self.run_pod(self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]), 0,
                           before_finish=self.stage_dir)
        key = self.prefix + "/dir.tgz"
        self.assertEqual(self.reported(pod), [dict(art, s3={"key": key})])
        with tarfile.open(fileobj=io.BytesIO(self.get(key)), mode="r:gz") as tf:
            members = {m.name.rstrip("/"): m for m in tf.getmembers()}
            self.assertEqual(set(members), {"dir", "dir/a.txt", "dir/sub", "dir/sub/b.txt", "dir/link"})
            self.assertEqual(tf.extractfile(members["dir/a.txt"]).read(), b"A" * 1000)
            self.assertEqual(tf.extractfile(members["dir/sub/b.txt"]).read(), b"bee")
            self.assertTrue(members["dir/link"].issym())
            self.assertEqual(members["dir/link"].linkname, "a.txt")

    def test_reserve_abandons_a_long_archive_and_exits_in_time(self):
        """The reserve begins while tar+gzip of a large folder still runs on
        the thread pool, with seconds of the grace period left (so not the
        last second's fast exit): the failure marker goes out and the process
        exits before the hard stop instead of waiting for the archive (P4)."""
        grace = 10
        art = {"name": "big", "path": "/work/big", "archive": {"tar": {"compressionLevel": 9}}}
        pod = self.pod(template=self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]),
                       grace=grace, reserve_ms=4000)
        pod.secret_file("my-cred", "accesskey", self.moto.access_key + "\n")
        pod.secret_file("my-cred", "secretkey", self.moto.secret_key + "\n")
        block = os.urandom(MIB)  # repeats 1 MiB apart: beyond gzip's window, so no shrinking
        for i in range(32):      # 512 MiB: far more than 6 s of gzip -9 on this machine
            pod.mount_file("/work", "big/part%02d.bin" % i, block * 16)
        pod.start()
        pod.finish()
        wait_until(lambda: any("outputs collected" in l for l in pod.logs()), timeout=30)
        pod.sigterm()
        rc = pod.wait_exit(grace + 90)
        self.assertEqual(rc, 64, self.info(pod))
        self.assertLessEqual(pod.since_sigterm(), grace - 0.1,
                             "P4: waited for the abandoned archive" + self.info(pod))
        self.assert_failure_marker(pod, "big")

    def test_a_line_break_inside_a_key_is_refused(self):
        """A credential goes into an HTTP header: one with a line break inside
        would inject a header; it is refused before any request."""
        art = {"name": "rep", "path": "/work/report.txt", "archive": {"none": {}}}
        pod = self.pod(template=self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]))
        pod.secret_file("my-cred", "accesskey", self.moto.access_key + "\r\nX-Injected: 1\n")
        pod.secret_file("my-cred", "secretkey", self.moto.secret_key + "\n")
        pod.mount_file("/work", "report.txt", "r")
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64, timeout=60)
        self.assert_failure_marker(pod, "rep", "control character")
        self.assertNotIn("X-Injected", pod.log_text())

    def test_none_of_a_file(self):
        art = {"name": "rep", "path": "/work/report.txt", "archive": {"none": {}}}
        pod = self.run_pod(self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]), 0,
                           before_finish=lambda p: p.mount_file("/work", "report.txt", b"raw bytes\x00\xff"))
        key = self.prefix + "/report.txt"
        self.assertEqual(self.get(key), b"raw bytes\x00\xff")
        self.assertEqual(self.reported(pod), [dict(art, s3={"key": key})])

    def keys_under(self, prefix):
        # (no Prefix: moto signs a '/' in the query differently from boto3)
        out = []
        for page in self.moto.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            out += [o["Key"] for o in page.get("Contents", []) if o["Key"].startswith(prefix)]
        return sorted(out)

    def test_none_of_a_mounted_folder(self):
        # One object per regular file under <key>/<relative path>; symlinks
        # (one pointing at the store's own credentials) and a FIFO are
        # skipped, never followed; an empty file is an empty object.
        art = {"name": "dir", "path": "/work/dir", "archive": {"none": {}}}
        files = {"a.txt": b"A" * 1000, "sub/b.txt": b"bee", "sub/deeper/c.bin": bytes(range(256)) * 3,
                 "empty": b"", "sub/with space.txt": b"sp"}

        def stage(p):
            for rel, data in files.items():
                p.mount_file("/work", "dir/" + rel, data)
            p.mount_symlink("/work", "dir/escape", "../../../argo/secret/my-cred/secretkey")
            p.mount_symlink("/work", "dir/abs", "/etc/passwd")
            p.mount_symlink("/work", "dir/linkdir", "sub")
            os.mkfifo(p.path("mainctrfs/work/dir/fifo"))
        pod = self.run_pod(self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]), 0,
                           before_finish=stage)
        key = self.prefix + "/dir"
        self.assertEqual(self.reported(pod), [dict(art, s3={"key": key})])
        self.assertEqual(self.keys_under(self.prefix + "/"), sorted(key + "/" + r for r in files))
        for rel, data in files.items():
            self.assertEqual(self.get(key + "/" + rel), data, rel)
        log = pod.log_text()
        self.assertIn("escape is a symlink: skipped", log)
        self.assertIn("fifo is not a regular file", log)
        self.assert_termination_log_empty(pod)

    def test_none_of_an_empty_folder(self):
        # Argo uploads nothing and still reports the artifact.
        art = {"name": "nothing", "path": "/work/empty", "archive": {"none": {}}}
        pod = self.run_pod(self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]), 0,
                           before_finish=lambda p: os.makedirs(p.path("mainctrfs/work/empty")))
        self.assertEqual(self.reported(pod), [dict(art, s3={"key": self.prefix + "/empty"})])
        self.assertEqual(self.keys_under(self.prefix + "/"), [])
        self.assertIn("is empty: nothing uploaded", pod.log_text())

    def test_none_of_a_base_image_folder(self):
        art = {"name": "bf", "path": "/tmp/base", "archive": {"none": {}}}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in {"base/x.txt": b"x", "base/y/z.txt": b"zz", "base/e": b""}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("base/link")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tf.addfile(link)
        pod = self.run_pod(self.template([art]), 0,
                           before_finish=lambda p: p.stage_artifact("/tmp/base", buf.getvalue()))
        key = self.prefix + "/base"
        self.assertEqual(self.reported(pod), [dict(art, s3={"key": key})])
        self.assertEqual(self.keys_under(self.prefix + "/"), [key + "/e", key + "/x.txt", key + "/y/z.txt"])
        self.assertEqual(self.get(key + "/y/z.txt"), b"zz")
        self.assertEqual(self.get(key + "/e"), b"")

    def test_none_of_a_folder_with_too_many_files(self):
        art = {"name": "many", "path": "/work/many", "archive": {"none": {}}}

        def stage(p):
            d = p.path("mainctrfs/work/many")
            for i in range(4):
                os.makedirs(os.path.join(d, "s%d" % i))
            for i in range(10001):
                with open(os.path.join(d, "s%d" % (i % 4), "f%05d" % i), "wb"):
                    pass
        pod = self.run_pod(self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]), 64,
                           before_finish=stage)
        self.assert_failure_marker(pod, 'output artifact "many"', self.prefix + "/many",
                                   "more than 10000 files")
        self.assertEqual(self.reported(pod), [])
        self.assertEqual(self.keys_under(self.prefix + "/"), [])

    def test_none_of_a_folder_that_cannot_be_uploaded(self):
        wrong = "wrong-secret-" + uuid.uuid4().hex
        art = {"name": "dir", "path": "/work/dir", "archive": {"none": {}}}
        pod = self.run_pod(self.template([art], mounts=[{"name": "w", "mountPath": "/work"}]), 64,
                           secret=wrong, before_finish=lambda p: p.mount_file("/work", "dir/a/one.txt", "1"))
        self.assert_failure_marker(pod, 'output artifact "dir"', "a/one.txt", "SignatureDoesNotMatch")
        self.assert_no_leak(pod, wrong)
        self.assertEqual(self.reported(pod), [])

    def test_zip_of_mounted_folder_and_base_image(self):
        arts = [{"name": "z", "path": "/work/dir", "archive": {"zip": {}}},
                {"name": "zb", "path": "/tmp/base", "archive": {"zip": {}}}]
        data = tgz_of({"base/x.txt": b"x", "base/y/z.txt": b"zz"})

        def stage(p):
            self.stage_dir(p)
            p.stage_artifact("/tmp/base", data)
        pod = self.run_pod(self.template(arts, mounts=[{"name": "w", "mountPath": "/work"}]), 0,
                           before_finish=stage)
        with zipfile.ZipFile(io.BytesIO(self.get(self.prefix + "/z.zip"))) as zf:
            names = set(zf.namelist())
            self.assertIn("dir/a.txt", names)
            self.assertIn("dir/sub/b.txt", names)
            self.assertNotIn("dir/link", names)
            self.assertEqual(zf.read("dir/sub/b.txt"), b"bee")
        with zipfile.ZipFile(io.BytesIO(self.get(self.prefix + "/zb.zip"))) as zf:
            self.assertEqual(zf.read("base/y/z.txt"), b"zz")
        self.assertEqual([a["name"] for a in self.reported(pod)], ["z", "zb"])

    def test_own_key_is_used_as_is(self):
        own = "custom/%s/thing.tgz" % uuid.uuid4().hex[:6]
        art = {"name": "o", "path": "/tmp/o", "s3": {"key": own}}
        data = tgz_of({"o": b"own"})
        pod = self.run_pod(self.template([art]), 0,
                           before_finish=lambda p: p.stage_artifact("/tmp/o", data))
        self.assertEqual(self.get(own), data)
        self.assertEqual(self.reported(pod), [art])

    def test_optional_missing_is_dropped(self):
        arts = [{"name": "opt", "path": "/tmp/nothing", "optional": True}]
        pod = self.run_pod(self.template(arts), 0)
        self.assertEqual(self.reported(pod), [])
        self.assert_termination_log_empty(pod)

    def test_nested_mirror_replaced_by_a_symlink_is_refused(self):
        # P8: an input artifact under a volume mount (/work/in under /work) is
        # a folder main can swap for a symlink, here to the S3 credentials.
        # The artifact must be read beneath the real mount, /mainctrfs/work,
        # so the link is refused and the secret never reaches the store.
        art = {"name": "leak", "path": "/work/in/secretkey", "archive": {"none": {}}}
        template = self.template([art], mounts=[{"name": "w", "mountPath": "/work"}])
        template["inputs"] = {"artifacts": [{"name": "in", "path": "/work/in", "s3": {"key": "in.tgz"}}]}
        pod = self.run_pod(template, 64, before_finish=lambda p: p.mount_symlink(
            "/work", "in", "../../argo/secret/my-cred"))
        self.assertEqual(self.reported(pod), [])
        self.assert_failure_marker(pod, 'output artifact "leak"')
        # (moto rejects the signature of a listing with Prefix: filter here.)
        keys = [o["Key"] for o in self.moto.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        self.assertEqual([k for k in keys if k.startswith(self.prefix + "/")], [], "nothing uploaded")

    def test_missing_is_a_failure(self):
        arts = [{"name": "must", "path": "/tmp/nothing"}]
        pod = self.run_pod(self.template(arts), 64)
        self.assert_failure_marker(pod, 'output artifact "must"', self.prefix + "/must.tgz", "not found")
        self.assertEqual(self.reported(pod), [])

    def test_archived_logs(self):
        def logs(p):
            p.write_stdout("main", "line one\nline two\n")
        pod = self.run_pod(self.template([], archive_logs=True), 0, before_finish=logs)
        key = self.prefix + "/main.log"
        self.assertEqual(self.get(key), b"line one\nline two\n")
        self.assertEqual(self.reported(pod), [{"name": "main-logs", "s3": {"key": key}}])

    def test_missing_logs_only_warn(self):
        pod = self.run_pod(self.template([], archive_logs=True), 0)
        self.assertEqual(self.reported(pod), [])
        self.assertIn("were not archived", pod.log_text())

    def test_wrong_secret(self):
        wrong = "wrong-secret-" + uuid.uuid4().hex
        art = {"name": "out", "path": "/tmp/out"}
        pod = self.run_pod(self.template([art]), 64, secret=wrong,
                           before_finish=lambda p: p.stage_artifact("/tmp/out", tgz_of({"out": b"1"})))
        self.assert_failure_marker(pod, 'output artifact "out"', "SignatureDoesNotMatch",
                                   "s3://%s/%s/out.tgz" % (BUCKET, self.prefix))
        self.assert_no_leak(pod, wrong)
        self.assertEqual(self.reported(pod), [])

    def test_unsupported_repository_type(self):
        art = {"name": "out", "path": "/tmp/out"}
        tmpl = self.template([art], location={"gcs": {"bucket": "b", "key": "k"}})
        pod = self.run_pod(tmpl, 64,
                           before_finish=lambda p: p.stage_artifact("/tmp/out", tgz_of({"out": b"1"})))
        self.assert_failure_marker(pod, 'output artifact "out"', "gcs", "not supported")

    # -- against tests/integration/s3faults.py: the store fails on demand
    PART = 5 * MIB
    BIG = 2 * 5 * MIB + 4096  # three parts: 5 MiB, 5 MiB, 4 KiB

    def faulty_pod(self, proxy_or_port, size=None, grace=10, reserve_ms=None, threads=2, sparse=False):
        """A pod whose artifact "big" (archive none, a mounted file of
        ``size`` bytes, random unless ``sparse``) goes to the store at
        ``proxy_or_port``, in 5 MiB parts; main has finished."""
        port = getattr(proxy_or_port, "port", proxy_or_port)
        art = {"name": "big", "path": "/work/big.bin", "archive": {"none": {}}}
        tmpl = self.template([art], mounts=[{"name": "w", "mountPath": "/work"}], port=port)
        pod = self.pod(template=tmpl, grace=grace, reserve_ms=reserve_ms,
                       env={"ARTIFACT_S3_UPLOAD_PART_SIZE_MIB": "5", "ARTIFACT_S3_UPLOAD_THREADS": str(threads)})
        pod.secret_file("my-cred", "accesskey", self.moto.access_key)
        pod.secret_file("my-cred", "secretkey", self.moto.secret_key)
        p = pod.path("mainctrfs/work/big.bin")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        size = size or self.BIG
        with open(p, "wb") as f:
            if sparse:
                f.truncate(size)
            else:
                f.write(os.urandom(size))
        with open(p, "rb") as f:
            pod.big_sha = hashlib.sha256(f.read()).hexdigest() if not sparse else None
        pod.big_key = self.prefix + "/big.bin"
        pod.start()
        pod.finish()
        return pod

    def proxy(self):
        proxy = S3FaultProxy(self.moto.port)
        self.addCleanup(proxy.stop)
        return proxy

    def assert_saved(self, pod, proxy):
        self.assert_exit(pod, 0, timeout=60)
        key = pod.big_key
        self.assertEqual(hashlib.sha256(self.get(key)).hexdigest(), pod.big_sha)
        self.assertEqual([a["name"] for a in self.reported(pod)], ["big"])
        self.assert_termination_log_empty(pod)
        self.assertEqual(request_problems(proxy.recorded(key=key), self.moto.access_key,
                                          self.moto.secret_key, self.PART, self.BIG), [])
        self.assertEqual(proxy.attempts("AbortMultipartUpload", key=key), 0)
        self.assert_writes_valid()
        self.assert_no_leak(pod, self.moto.secret_key)

    def assert_aborted(self, pod, proxy):
        key = pod.big_key
        abort = proxy.wait_for(lambda r: r.op == "AbortMultipartUpload" and r.key == key, done=True)
        ids = {r.upload_id for r in proxy.recorded("UploadPart", key=key)}
        self.assertEqual(ids, {abort.upload_id})
        self.assertEqual(abort.status, 204)
        self.assertEqual(proxy.attempts("CompleteMultipartUpload", key=key), 0)
        # (no Prefix: moto signs a '/' in the query differently from boto3)
        ups = self.moto.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        self.assertEqual([u for u in ups if u["Key"].startswith(self.prefix)], [])
        with self.assertRaises(Exception):
            self.moto.s3.head_object(Bucket=BUCKET, Key=key)

    def test_5xx_on_part_n_is_retried_alone(self):
        proxy = self.proxy()
        proxy.add("error", op="UploadPart", part=2, attempt=1, code="InternalError")
        pod = self.faulty_pod(proxy)
        self.assert_saved(pod, proxy)
        self.assertEqual(proxy.parts_sent(pod.big_key), {1: 1, 2: 2, 3: 1})
        self.assertIn("UploadPart 2 of s3://%s/%s failed (attempt 1): HTTP 500: InternalError"
                      % (BUCKET, pod.big_key), pod.log_text())

    def test_reset_mid_part_is_retried_alone(self):
        proxy = self.proxy()
        proxy.add("reset", op="UploadPart", part=1, attempt=1, when="mid_body")
        pod = self.faulty_pod(proxy)
        self.assert_saved(pod, proxy)
        self.assertEqual(proxy.parts_sent(pod.big_key), {1: 2, 2: 1, 3: 1})
        self.assertEqual(proxy.recorded("UploadPart", part=1)[0].body_read, self.PART // 2)

    def test_lost_complete_answer_then_nosuchupload_is_saved(self):
        # The store completed the upload but the answer was lost; MinIO and
        # S3 answer the retry NoSuchUpload. The object is there: saved.
        proxy = self.proxy()
        proxy.add("reset", op="CompleteMultipartUpload", attempt=1, when="after_forward")
        proxy.add("error", op="CompleteMultipartUpload", attempt=2, code="NoSuchUpload")
        pod = self.faulty_pod(proxy)
        self.assert_saved(pod, proxy)
        self.assertEqual(proxy.recorded("HeadObject", key=pod.big_key)[0].status, 200)

    def test_permanent_403_on_part_n_aborts(self):
        proxy = self.proxy()
        proxy.add("error", op="UploadPart", part=2, code="AccessDenied", when="before_body")
        pod = self.faulty_pod(proxy)
        self.assert_exit(pod, 64, timeout=60)
        self.assert_failure_marker(pod, 'output artifact "big"', "s3://%s/%s" % (BUCKET, pod.big_key),
                                   "AccessDenied", "UploadPart 2")
        self.assertEqual(self.reported(pod), [])
        self.assertEqual(proxy.attempts("UploadPart", part=2), 1)
        self.assert_aborted(pod, proxy)
        self.assert_writes_valid()

    def test_slow_part_when_the_reserve_begins_is_aborted(self):
        # The store reads part 2 at 128 KiB/s (40 s for 5 MiB); SIGTERM; at
        # the reserve the upload is cancelled and aborted, and the failure
        # marker says so.
        proxy = self.proxy()
        proxy.add("slow_body", op="UploadPart", part=2, rate=128 * 1024)
        # A 1 s reserve leaves room for a loaded CI machine (ASan, 2 cores).
        pod = self.faulty_pod(proxy, grace=3, reserve_ms=1000)
        proxy.wait_for(lambda r: r.op == "UploadPart" and r.part == 2, timeout=30)
        pod.sigterm()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.since_sigterm(), 3.0 - 0.1)
        obj = self.assert_failure_marker(pod, 'output artifact "big"', pod.big_key, "reserve")
        self.assertNotIn("artifacts", obj.get("outputs") or {})
        self.assert_aborted(pod, proxy)
        slow = proxy.recorded("UploadPart", part=2)[0]
        self.assertLess(slow.body_read, self.PART, "part 2 never finished")
        self.assert_writes_valid()
        self.assert_no_leak(pod, self.moto.secret_key)

    def test_sigterm_during_multipart_upload(self):
        # Each UploadPart is held 1 s: 13 parts take far longer than the
        # grace period, so the reserve arrives mid-upload.
        proxy = self.proxy()
        proxy.add("delay", op="UploadPart", seconds=1.0)
        pod = self.faulty_pod(proxy, size=64 * MIB, grace=3, reserve_ms=1000, threads=1, sparse=True)
        proxy.wait_for(lambda r: r.op == "UploadPart", timeout=20)
        pod.sigterm()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.since_sigterm(), 3.0 - 0.1)
        obj = self.assert_failure_marker(pod, 'output artifact "big"', pod.big_key, "reserve")
        self.assertNotIn("artifacts", obj.get("outputs") or {})
        self.assert_aborted(pod, proxy)
        self.assert_writes_valid()
        self.assert_no_leak(pod, self.moto.secret_key)

    def test_store_down_is_an_honest_failure(self):
        # Connection refused: retried (transient, P1) until the reserve, then
        # the failure marker names the artifact; exit 64 inside the grace.
        pod = self.faulty_pod(DeadPort().port, grace=3, reserve_ms=1000)
        wait_until(lambda: "retrying" in pod.log_text(), timeout=20, what="a retry in the log")
        pod.sigterm()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.since_sigterm(), 3.0 - 0.1)
        self.assert_failure_marker(pod, 'output artifact "big"', pod.big_key, "reserve")
        self.assertEqual(self.reported(pod), [])
        self.assert_writes_valid()
        self.assert_no_leak(pod, self.moto.secret_key)


if __name__ == "__main__":
    unittest.main()
