"""Output artifacts and archived logs saved to Artifactory, through the real binary.

The store is tests/integration/fakeartifactory.py (HTTPS with a throwaway CA,
trusted through SSL_CERT_FILE as Go's client, and so Argo's driver, would
trust it; or plain HTTP); the fake API server takes the reports and checks
them against the CRD. Every run also checks that neither the password nor
the username appears in a log line, the termination log or a report.
"""
import os
import unittest
import urllib.parse
import uuid

import test_lifecycle as tl
from fakeartifactory import FakeArtifactory
from harness import script_template, tgz_of, wait_until

MIB = 1024 * 1024
MOUNTS = [{"name": "w", "mountPath": "/work"}]


class ArtifactoryCase(tl.LifecycleCase):
    tls = True

    def setUp(self):
        super().setUp()
        self.art = FakeArtifactory(os.path.join(self.tmp, "artifactory"), tls=self.tls)
        self.addCleanup(self.art.stop)

    # -- helpers
    def template(self, artifacts, archive_logs=False, url=None, mounts=None):
        self.repo_path = "/artifactory/generic-local/wf-%s/pod" % uuid.uuid4().hex[:8]
        location = {"archiveLogs": archive_logs, "artifactory": {
            "url": url or self.art.base_url + self.repo_path,
            "usernameSecret": {"name": "art-cred", "key": "username"},
            "passwordSecret": {"name": "art-cred", "key": "password"}}}
        return script_template(artifacts=artifacts, volume_mounts=mounts, archiveLocation=location)

    def url_of(self, name):
        return self.art.base_url + self.repo_path + "/" + urllib.parse.quote(name)

    def make_pod(self, template, password=None, trust=True, **kw):
        env = dict(kw.pop("env", {}))
        if trust and self.art.ca_file:
            env["SSL_CERT_FILE"] = self.art.ca_file
        pod = self.pod(template=template, env=env, **kw)
        pod.secret_file("art-cred", "username", self.art.username + "\n")
        pod.secret_file("art-cred", "password", (password or self.art.password) + "\n")
        return pod

    def run_pod(self, template, code, password=None, before_finish=None, trust=True, **kw):
        pod = self.make_pod(template, password=password, trust=trust, **kw)
        if before_finish:
            before_finish(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, code, timeout=60)
        self.assert_writes_valid()
        self.assert_credentials_kept(pod, password)
        return pod

    def assert_credentials_kept(self, pod, password=None):
        for secret in (self.art.password, password, self.art.username):
            self.assert_no_leak(pod, secret)

    def stored(self, name):
        return self.art.objects.get(self.repo_path + "/" + urllib.parse.quote(name))

    def reported(self, pod):
        obj = pod.task_result()
        self.assertEqual(tl.labels(obj).get(tl.LBL_DONE), "true", self.info(pod))
        return (obj.get("outputs") or {}).get("artifacts") or []


class ArtifactoryTests(ArtifactoryCase):
    def test_upload_round_trip(self):
        arts = [{"name": "out", "path": "/tmp/out.txt", "globalName": "g-out"},
                {"name": "raw", "path": "/work/raw data.bin", "archive": {"none": {}}}]
        tgz = tgz_of({"out.txt": b"hello artifactory\n"})
        raw = bytes(range(256)) * 1000

        def stage(p):
            p.stage_artifact("/tmp/out.txt", tgz)
            p.mount_file("/work", "raw data.bin", raw)
        pod = self.run_pod(self.template(arts, mounts=MOUNTS), 0, before_finish=stage)
        self.assertEqual(self.stored("out.tgz"), tgz)
        self.assertEqual(self.stored("raw data.bin"), raw)
        self.assertEqual(self.reported(pod), [
            dict(arts[0], artifactory={"url": self.url_of("out.tgz")}),
            dict(arts[1], artifactory={"url": self.url_of("raw data.bin")})])
        self.assertTrue(all(ok for _, _, ok, _ in self.art.requests), self.art.requests)
        self.assert_termination_log_empty(pod)

    def test_large_file_is_streamed(self):
        # 24 MiB: many chunks through the ring of buffers, paused and resumed.
        art = {"name": "big", "path": "/work/big.bin", "archive": {"none": {}}}
        data = os.urandom(MIB) * 24

        pod = self.run_pod(self.template([art], mounts=MOUNTS), 0,
                           before_finish=lambda p: p.mount_file("/work", "big.bin", data))
        self.assertEqual(self.stored("big.bin"), data)
        self.assertEqual(len(self.art.puts()), 1)
        self.assertEqual(self.reported(pod), [dict(art, artifactory={"url": self.url_of("big.bin")})])

    def test_wrong_password(self):
        wrong = "wrong-" + uuid.uuid4().hex
        art = {"name": "out", "path": "/tmp/out"}
        pod = self.run_pod(self.template([art]), 64, password=wrong,
                           before_finish=lambda p: p.stage_artifact("/tmp/out", tgz_of({"out": b"1"})))
        self.assert_failure_marker(pod, 'output artifact "out"', self.url_of("out.tgz"), "HTTP 401",
                                   "Bad credentials")
        self.assertEqual(self.reported(pod), [])
        self.assertEqual(len(self.art.puts()), 1, "a 401 is not retried")
        self.assertEqual(self.art.objects, {})

    def test_transient_503_is_retried(self):
        self.art.fail_puts = 2
        art = {"name": "out", "path": "/tmp/out"}
        data = tgz_of({"out": b"retried"})
        pod = self.run_pod(self.template([art]), 0,
                           before_finish=lambda p: p.stage_artifact("/tmp/out", data))
        self.assertEqual([s for _, _, _, s in self.art.puts()], [503, 503, 201])
        self.assertEqual(self.stored("out.tgz"), data)
        self.assertIn("retrying in", pod.log_text())
        self.assertEqual(self.reported(pod), [dict(art, artifactory={"url": self.url_of("out.tgz")})])

    def test_archived_logs(self):
        def logs(p):
            p.write_stdout("main", "line one\nline two\n")
        pod = self.run_pod(self.template([], archive_logs=True), 0, before_finish=logs)
        self.assertEqual(self.stored("main.log"), b"line one\nline two\n")
        self.assertEqual(self.reported(pod),
                         [{"name": "main-logs", "artifactory": {"url": self.url_of("main.log")}}])

    def test_sigterm_during_a_stalled_upload(self):
        self.art.stall_puts = True
        art = {"name": "out", "path": "/tmp/out"}
        pod = self.make_pod(self.template([art]), grace=3, reserve_ms=1000)
        pod.stage_artifact("/tmp/out", tgz_of({"out": b"never lands"}))
        pod.start()
        pod.finish()
        self.assertTrue(self.art.stalled.wait(20), "the PUT never arrived" + self.info(pod))
        pod.sigterm()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.since_sigterm(), 3.0 - 0.1)
        obj = self.assert_failure_marker(pod, 'output artifact "out"', self.url_of("out.tgz"), "reserve")
        self.assertNotIn("artifacts", obj.get("outputs") or {})
        self.assertEqual(self.art.objects, {})
        self.assert_writes_valid()
        self.assert_credentials_kept(pod)

    def test_503_until_sigterm_is_retried_then_cancelled(self):
        # P1: a transient failure is retried for as long as it lasts until the
        # reserve begins; then the upload stops and the marker says why, in time.
        self.art.fail_puts = 10 ** 6
        art = {"name": "out", "path": "/tmp/out"}
        pod = self.make_pod(self.template([art]), grace=3, reserve_ms=1000)
        pod.stage_artifact("/tmp/out", tgz_of({"out": b"1"}))
        pod.start()
        pod.finish()
        wait_until(lambda: len(self.art.puts()) >= 3, timeout=20, what="three PUTs")
        self.assertTrue(pod.running(), "gave up before SIGTERM" + self.info(pod))
        pod.sigterm()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.since_sigterm(), 3.0 - 0.1)
        self.assert_failure_marker(pod, 'output artifact "out"', self.url_of("out.tgz"))
        self.assertEqual(self.art.objects, {})
        self.assert_writes_valid()
        self.assert_credentials_kept(pod)

    def test_untrusted_certificate_is_permanent(self):
        # No SSL_CERT_FILE: the fake's CA is not in the system's store.
        art = {"name": "out", "path": "/tmp/out"}
        pod = self.run_pod(self.template([art]), 64, trust=False,
                           before_finish=lambda p: p.stage_artifact("/tmp/out", tgz_of({"out": b"1"})))
        self.assert_failure_marker(pod, 'output artifact "out"', self.url_of("out.tgz"), "certificate")
        self.assertEqual(self.art.objects, {})
        self.assertNotIn("retrying", pod.log_text())

    def test_url_with_credentials_is_refused(self):
        secret = "pw-" + uuid.uuid4().hex
        url = "https://someone:%s@127.0.0.1:%d/artifactory/generic-local/x" % (secret, self.art.port)
        art = {"name": "out", "path": "/tmp/out"}
        pod = self.run_pod(self.template([art], url=url), 64,
                           before_finish=lambda p: p.stage_artifact("/tmp/out", tgz_of({"out": b"1"})))
        self.assert_failure_marker(pod, 'output artifact "out"', "must not hold a user or password")
        self.assert_no_leak(pod, secret)
        self.assertEqual(self.art.requests, [])

    def test_own_artifactory_location(self):
        own_url = self.art.base_url + "/artifactory/generic-local/own/%s/report.tgz" % uuid.uuid4().hex[:6]
        art = {"name": "own", "path": "/tmp/own", "artifactory": {
            "url": own_url,
            "usernameSecret": {"name": "art-cred", "key": "username"},
            "passwordSecret": {"name": "art-cred", "key": "password"}}}
        data = tgz_of({"own": b"mine"})
        pod = self.run_pod(self.template([art]), 0,
                           before_finish=lambda p: p.stage_artifact("/tmp/own", data))
        self.assertEqual(self.art.objects.get(urllib.parse.urlsplit(own_url).path), data)
        self.assertEqual(self.reported(pod), [art])

    def test_folder_without_archive_is_refused(self):
        # Artifactory holds one file per artifact (Argo's driver PUTs the path
        # as one body and cannot read a folder back): a clear failure.
        art = {"name": "dir", "path": "/work/dir", "archive": {"none": {}}}
        pod = self.run_pod(self.template([art], mounts=MOUNTS), 64,
                           before_finish=lambda p: p.mount_file("/work", "dir/a.txt", "a"))
        self.assert_failure_marker(pod, 'output artifact "dir"', "one file per artifact", "tar or zip")
        self.assertEqual(self.art.requests, [])

    def test_other_repository_types_name_the_type(self):
        for kind in ("gcs", "azure", "oss", "hdfs", "plugin"):
            with self.subTest(kind=kind):
                art = {"name": "out", "path": "/tmp/out"}
                tmpl = script_template(artifacts=[art], archiveLocation={kind: {"key": "k"}})
                pod = self.run_pod(tmpl, 64,
                                   before_finish=lambda p: p.stage_artifact("/tmp/out", tgz_of({"out": b"1"})))
                self.assert_failure_marker(pod, 'output artifact "out"',
                                           "repository type %s is not supported" % kind)


class PlainHttpArtifactoryTests(ArtifactoryCase):
    tls = False

    def test_plain_http_round_trip(self):
        art = {"name": "out", "path": "/tmp/out"}
        data = tgz_of({"out": b"over plain http"})
        pod = self.run_pod(self.template([art], archive_logs=True), 0,
                           before_finish=lambda p: (p.stage_artifact("/tmp/out", data),
                                                    p.write_stdout("main", "log\n")))
        self.assertEqual(self.stored("out.tgz"), data)
        self.assertEqual(self.stored("main.log"), b"log\n")
        self.assertEqual([a["name"] for a in self.reported(pod)], ["out", "main-logs"])
        self.assertTrue(self.art.base_url.startswith("http://"))


if __name__ == "__main__":
    unittest.main()
