"""P8 regression tests: the main container is untrusted.

Every folder the executor reads from is attacked with symlinks and "..":
the emissary's staged parameters, the volume-mount and input-artifact
mirrors under /mainctrfs, ctr/main/stdout and exitcode, the progress file,
the template, and /dev/termination-log (written, not read). Each test plants
a recognisable secret in /argo/secret/s3/secretkey (the service-account token
is checked by LifecycleCase.tearDown) and asserts it is in no request, log
line, termination log, stdout or stored object, then checks how the run ends:
exit 64 and a failure marker that names the output, or, where a refusal is
not a failure (progress), what the contract says happens instead.

Each attack is built so that a broken implementation really would fail the
test: the symlinks resolve to the secret inside the sandbox (checked), and
where a leak would not show in the outputs (exitcode, template) the target is
a file that would change the outcome if it were followed.

Run: cd tests/integration && ARGOWAIT_BIN=../../build/argowait python3 -m unittest -v test_p8
"""

import json
import os
import resource
import time
import unittest

import test_lifecycle as lc
from harness import script_template

WAIT = lc.WAIT
SECRET_REL = "argo/secret/s3/secretkey"
REFUSED = "refusing a symlink or path that leaves its folder"
# From var/run/argo/outputs/parameters/tmp up to the sandbox root.
UP_FROM_PARAMS_TMP = "../" * 6


def param(name, path, **value_from):
    return {"name": name, "valueFrom": dict(path=path, **value_from)}


class P8Case(lc.LifecycleCase):
    """LifecycleCase plus a planted secret and the common run-and-check."""

    def setUp(self):
        super().setUp()
        self.secret = "S3CRET-" + os.urandom(12).hex()

    def make_pod(self, params=(), mounts=None, inputs=None, **kw):
        extra = {}
        if inputs:
            extra["inputs"] = {"artifacts": list(inputs)}
        pod = self.pod(template=script_template(list(params), volume_mounts=mounts, **extra), **kw)
        pod.secret_file("s3", "secretkey", self.secret)
        return pod

    def assert_leads_to_secret(self, pod, link_path):
        """The planted link really reaches the secret (else the test proves nothing)."""
        with open(link_path) as f:
            self.assertEqual(f.read(), self.secret, "sandbox link %s does not reach the secret" % link_path)

    def run_to_end(self, pod, code=64, before_finish=None):
        pod.start()
        self.placeholder(pod)
        if before_finish:
            before_finish()
        pod.finish("main", 0)
        self.assert_exit(pod, code)
        self.assert_no_leak(pod, self.secret)
        self.assert_writes_valid()

    def reported_params(self, pod):
        obj = pod.task_result() or {}
        return {p["name"]: p for p in (obj.get("outputs") or {}).get("parameters") or []}

    def assert_refused(self, pod, name, why=REFUSED):
        """Exit 64 was checked; the marker names the parameter (and why), the
        parameter has no value, and a clean control parameter was reported."""
        self.assert_failure_marker(pod, '"%s"' % name, why)
        by = self.reported_params(pod)
        self.assertNotIn("value", by.get(name, {}), "refused parameter has a value: %r" % by.get(name))
        self.assertEqual((by.get("control") or {}).get("value"), "ok", "P2: the clean parameter is reported")


# ---------------------------------------------------------------------------
# var/run/argo/outputs/parameters/<path>: the emissary's staged copies.

class TestStagedParameters(P8Case):
    CONTROL = param("control", "/tmp/control.txt")

    def stage_control(self, pod):
        pod.stage_param("/tmp/control.txt", "ok\n")

    def test_symlinked_file_absolute(self):
        pod = self.make_pod([param("abs-link", "/tmp/out.txt"), self.CONTROL])
        self.stage_control(pod)
        link = pod.path("var/run/argo/outputs/parameters/tmp/out.txt")
        os.symlink(pod.path(SECRET_REL), link)
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        self.assert_refused(pod, "abs-link")

    def test_symlinked_file_relative(self):
        pod = self.make_pod([param("rel-link", "/tmp/out.txt"), self.CONTROL])
        self.stage_control(pod)
        link = pod.path("var/run/argo/outputs/parameters/tmp/out.txt")
        os.symlink(UP_FROM_PARAMS_TMP + SECRET_REL, link)
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        self.assert_refused(pod, "rel-link")

    def test_symlinked_token(self):
        pod = self.make_pod([param("token-link", "/tmp/token"), self.CONTROL])
        self.stage_control(pod)
        os.symlink(UP_FROM_PARAMS_TMP + "var/run/secrets/kubernetes.io/serviceaccount/token",
                   pod.path("var/run/argo/outputs/parameters/tmp/token"))
        self.run_to_end(pod)
        self.assert_refused(pod, "token-link")
        self.assert_no_leak(pod, pod.token, headers_ok=True)

    def test_symlinked_intermediate_dir(self):
        pod = self.make_pod([param("dir-link", "/sec/secretkey"), self.CONTROL])
        self.stage_control(pod)
        link = pod.path("var/run/argo/outputs/parameters/sec")
        os.symlink("../../../../../argo/secret/s3", link)
        self.assert_leads_to_secret(pod, os.path.join(link, "secretkey"))
        self.run_to_end(pod)
        self.assert_refused(pod, "dir-link")

    def test_dotdot_in_declared_path(self):
        # The brief's example, and one with enough ".." that a naive join of
        # outputs/parameters + path would land on the sandbox's secret.
        for path in ("/tmp/../../argo/secret/s3/secretkey",
                     "/tmp/" + UP_FROM_PARAMS_TMP + SECRET_REL):
            with self.subTest(path=path):
                pod = self.make_pod([param("dotdot", path), self.CONTROL])
                self.stage_control(pod)
                naive = pod.path("var/run/argo/outputs/parameters") + path
                if path.count("..") > 2:
                    self.assert_leads_to_secret(pod, naive)
                self.run_to_end(pod)
                # Cleaned lexically (/argo/secret/s3/secretkey), then looked
                # up among the staged copies, where nothing was staged.
                self.assert_refused(pod, "dotdot", why="no such file")

    def test_parameters_folder_itself_is_a_symlink(self):
        # /var/run/argo is shared with main, so main can replace
        # outputs/parameters itself with a symlink (here to the pod's root,
        # where the declared path names the secret). The staged copy must be
        # resolved beneath the trusted mount point, /var/run/argo, so the
        # link is refused rather than followed.
        pod = self.make_pod([param("base-link", "/" + SECRET_REL)])
        base = pod.path("var/run/argo/outputs/parameters")
        os.rmdir(base)
        os.symlink("../../../..", base)
        self.assert_leads_to_secret(pod, os.path.join(base, SECRET_REL))
        pod.start()
        self.placeholder(pod)
        pod.finish("main", 0)
        pod.wait_exit(WAIT)
        self.assert_no_leak(pod, self.secret)
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, '"base-link"')

    def test_fifo_is_refused_without_hanging(self):
        pod = self.make_pod([param("fifo", "/tmp/fifo.txt"), self.CONTROL])
        self.stage_control(pod)
        os.mkfifo(pod.path("var/run/argo/outputs/parameters/tmp/fifo.txt"))
        t0 = time.monotonic()
        self.run_to_end(pod)  # assert_exit fails after WAIT s if it hangs
        self.assertLess(time.monotonic() - t0, 5, "a FIFO must not block the collection")
        self.assert_refused(pod, "fifo", why="not a regular file")

    def test_huge_file_is_refused_and_memory_stays_bounded(self):
        limit = 1024 * 1024
        pod = self.make_pod([param("exact", "/tmp/exact.txt"), param("over", "/tmp/over.txt"),
                             param("sparse", "/tmp/sparse.txt"), self.CONTROL])
        self.stage_control(pod)
        pod.stage_param("/tmp/exact.txt", b"a" * limit)        # at the limit: reported
        pod.stage_param("/tmp/over.txt", b"b" * (limit + 1))   # one byte over: refused
        # 4 GiB that take no disk: an implementation that reads it all (or
        # sizes a buffer from st_size) needs gigabytes of memory.
        with open(pod.path("var/run/argo/outputs/parameters/tmp/sparse.txt"), "wb") as f:
            f.truncate(4 << 30)
        self.run_to_end(pod)
        self.assert_failure_marker(pod, '"over"', '"sparse"', "larger than the read limit")
        by = self.reported_params(pod)
        self.assertEqual(len(by["exact"].get("value", "")), limit, "a file of exactly 1 MiB is reported")
        self.assertNotIn("value", by["over"])
        self.assertNotIn("value", by["sparse"])
        # ru_maxrss (KiB) of the largest child reaped so far: every child of
        # this process is argowait (or a tiny openssl run).
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        self.assertLess(peak_mib, 400, "peak RSS %.0f MiB: reads are not capped" % peak_mib)


# ---------------------------------------------------------------------------
# /mainctrfs/<mountPath>/...: main's volume mounts, mirrored.

class TestMountMirror(P8Case):
    MOUNTS = [{"name": "work", "mountPath": "/work"}]
    CONTROL = param("control", "/work/control.txt")

    def make(self, name, path):
        pod = self.make_pod([param(name, path), self.CONTROL], mounts=self.MOUNTS)
        pod.mount_file("/work", "control.txt", "ok\n")
        return pod

    def test_absolute_symlink(self):
        pod = self.make("abs", "/work/abs.txt")
        link = pod.mount_symlink("/work", "abs.txt", pod.path(SECRET_REL))
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        self.assert_refused(pod, "abs")

    def test_relative_symlink_escaping(self):
        pod = self.make("rel", "/work/sub/rel.txt")
        link = pod.mount_symlink("/work", "sub/rel.txt", "../../../" + SECRET_REL)
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        self.assert_refused(pod, "rel")

    def test_symlinked_dir(self):
        pod = self.make("dir", "/work/dir/secretkey")
        link = pod.mount_symlink("/work", "dir", "../../argo/secret/s3")
        self.assert_leads_to_secret(pod, os.path.join(link, "secretkey"))
        self.run_to_end(pod)
        self.assert_refused(pod, "dir")

    def test_dotdot_out_of_the_mount(self):
        # Lexically /argo/secret/s3/secretkey: not on the mount, so it is
        # looked up among the staged copies (none). A naive join of
        # /mainctrfs + path would read the secret.
        path = "/work/../../" + SECRET_REL
        pod = self.make("dotdot", path)
        self.assert_leads_to_secret(pod, pod.path("mainctrfs") + path)
        self.run_to_end(pod)
        self.assert_refused(pod, "dotdot", why="no such file")

    def test_fifo_on_the_mount(self):
        pod = self.make("fifo", "/work/fifo")
        os.mkfifo(pod.path("mainctrfs/work/fifo"))
        self.run_to_end(pod)
        self.assert_refused(pod, "fifo", why="not a regular file")


# ---------------------------------------------------------------------------
# Input artifacts: their paths are mirrored under /mainctrfs too.

class TestInputArtifactMirror(P8Case):
    def test_symlink_inside_an_input_artifact(self):
        inputs = [{"name": "data", "path": "/tmp/in", "s3": {"key": "data.tgz"}}]
        pod = self.make_pod([param("art-link", "/tmp/in/secret.txt"), param("control", "/tmp/in/ok.txt")],
                            inputs=inputs)
        pod.write("mainctrfs/tmp/in/ok.txt", "ok\n")
        link = pod.path("mainctrfs/tmp/in/secret.txt")
        os.symlink("../../../" + SECRET_REL, link)
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        self.assert_refused(pod, "art-link")

    def test_optional_artifact_fallback_does_not_follow_symlinks(self):
        # An optional input artifact that was not supplied: nothing at the
        # mirror, so the parameter is read from the staged copies instead.
        inputs = [{"name": "opt", "path": "/tmp/opt", "optional": True, "s3": {"key": "o.tgz"}}]
        pod = self.make_pod([param("opt-link", "/tmp/opt/x"), param("control", "/tmp/control.txt")],
                            inputs=inputs)
        pod.stage_param("/tmp/control.txt", "ok\n")
        os.makedirs(pod.path("var/run/argo/outputs/parameters/tmp/opt"))
        link = pod.path("var/run/argo/outputs/parameters/tmp/opt/x")
        os.symlink("../" + UP_FROM_PARAMS_TMP + SECRET_REL, link)
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        self.assert_refused(pod, "opt-link")

    def test_nested_artifact_folder_replaced_by_a_symlink(self):
        # An input artifact placed under a volume mount (/work/in under /work)
        # is not a mount of its own: Argo's init container writes it into the
        # volume, which main can change. Main replaces /work/in with a
        # symlink; the file must be resolved beneath the outermost mirror
        # (/mainctrfs/work, a real mount), so the link is refused.
        mounts = [{"name": "work", "mountPath": "/work"}]
        inputs = [{"name": "nested", "path": "/work/in", "s3": {"key": "n.tgz"}}]
        pod = self.make_pod([param("nested-link", "/work/in/secretkey")], mounts=mounts, inputs=inputs)
        link = pod.mount_symlink("/work", "in", "../../argo/secret/s3")
        self.assert_leads_to_secret(pod, os.path.join(link, "secretkey"))
        pod.start()
        self.placeholder(pod)
        pod.finish("main", 0)
        pod.wait_exit(WAIT)
        self.assert_no_leak(pod, self.secret)
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, '"nested-link"')


# ---------------------------------------------------------------------------
# var/run/argo/ctr/main/{stdout,exitcode}, var/run/argo/progress, template.

class TestCtrFiles(P8Case):
    def test_stdout_symlink_with_script_output(self):
        pod = self.make_pod([param("control", "/tmp/control.txt")], include_script_output=True)
        pod.stage_param("/tmp/control.txt", "ok\n")
        link = os.path.join(pod.ctr_dir("main"), "stdout")
        os.symlink("../../../../../" + SECRET_REL, link)
        self.assert_leads_to_secret(pod, link)
        self.run_to_end(pod)
        # The result cannot be read: that is a failure naming it, not an
        # empty result (which is only for a stdout that does not exist).
        self.assert_failure_marker(pod, "result", "stdout", REFUSED)
        obj = pod.task_result()
        self.assertNotIn("result", obj.get("outputs") or {}, "a refused stdout is not reported as a result")
        self.assertEqual(self.reported_params(pod)["control"].get("value"), "ok")

    def test_exitcode_symlink(self):
        # The link leads out of ctr/main to a file that says "0". Followed,
        # it would end the wait as a clean success; refused, main's exit is
        # unknown: a failure naming the container (P7), and never a hang.
        pod = self.make_pod()
        fake = pod.write("tmp/fake-exitcode", "0")
        pod.start()
        self.placeholder(pod)
        link = os.path.join(pod.ctr_dir("main"), "exitcode")
        os.symlink("../../../../../tmp/fake-exitcode", link)
        with open(link) as f:
            self.assertEqual(f.read(), "0")
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "main", REFUSED)
        self.assert_no_leak(pod, self.secret)
        self.assert_writes_valid()
        with open(fake) as f:
            self.assertEqual(f.read(), "0")

    def test_exitcode_symlink_to_the_secret(self):
        pod = self.make_pod()
        pod.start()
        self.placeholder(pod)
        os.symlink(pod.path(SECRET_REL), os.path.join(pod.ctr_dir("main"), "exitcode"))
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "main")
        self.assert_no_leak(pod, self.secret)

    def test_progress_symlink_never_reports_the_target(self):
        # The secret here is progress-shaped, so a followed symlink would be
        # PATCHed as {"progress": "<secret>"}. A regular progress file first
        # proves that ticks run; then it becomes a symlink.
        secret = "271828182/314159265"
        pod = self.make_pod(env={"ARGO_PROGRESS_PATCH_TICK_DURATION": "100ms",
                                 "ARGO_PROGRESS_FILE_TICK_DURATION": "50ms"})
        pod.secret_file("s3", "progress", secret + "\n")
        pod.write("var/run/argo/progress", "1/2\n")
        pod.start()
        self.placeholder(pod)
        self.api.wait_for(lambda r: r.method == "PATCH" and (r.json or {}).get("progress") == "1/2",
                          timeout=WAIT)
        link = pod.path("var/run/argo/progress")
        os.unlink(link)
        os.symlink("../../../" + "argo/secret/s3/progress", link)
        with open(link) as f:
            self.assertEqual(f.read().strip(), secret)
        time.sleep(1.0)  # ten patch ticks, twenty file ticks
        pod.finish("main", 0)
        self.assert_exit(pod, 0)  # progress is not an output: a refusal is no failure
        self.assert_no_leak(pod, secret)
        self.assert_no_leak(pod, self.secret)
        progress = [(r.json or {}).get("progress") for r in self.api.writes() if r.method == "PATCH"]
        self.assertNotIn(secret, progress)
        self.assertEqual((pod.task_result() or {}).get("progress"), "1/2",
                         "the last readable progress stays")
        self.assert_writes_valid()

    def test_template_symlink_is_refused(self):
        # /var/run/argo/template is written by Argo's init container, but the
        # folder is shared with main, which starts alongside wait and can
        # swap it. The template decides what is read and reported, so a
        # symlink out of /var/run/argo is refused like any other (init never
        # writes one): exit 64 and a failure marker (the identity is known
        # from the environment), with no outputs. A link that stays inside
        # /var/run/argo may resolve where openat2 exists; that is not tested
        # here because the walking fallback refuses it.
        evil = script_template([{"name": "evil", "valueFrom": {"path": "/tmp/evil"}}])
        for target in ("outside-template", "secret"):
            with self.subTest(target=target):
                pod = self.make_pod()
                pod.stage_param("/tmp/evil", "evil\n")
                tpl = pod.path("var/run/argo/template")
                os.chmod(tpl, 0o644)
                os.unlink(tpl)
                if target == "secret":
                    os.symlink("../../../" + SECRET_REL, tpl)
                    self.assert_leads_to_secret(pod, tpl)
                else:
                    pod.write("tmp/evil-template.json", json.dumps(evil))
                    os.symlink("../../../tmp/evil-template.json", tpl)
                pod.finish("main", 0)
                pod.start()
                self.assert_exit(pod, 64)
                self.assert_failure_marker(pod, "template", REFUSED)
                self.assertNotIn("evil", json.dumps(pod.task_result()), "the linked template was used")
                self.assert_no_leak(pod, self.secret)
                self.assert_writes_valid()


# ---------------------------------------------------------------------------
# /dev/termination-log: written, with O_NOFOLLOW.

class TestTerminationLog(P8Case):
    def check(self, existing):
        pod = self.make_pod([param("missing", "/tmp/missing.txt")])
        target = pod.path("tmp/termlog-target")
        if existing:
            pod.write("tmp/termlog-target", "ORIGINAL")
        os.symlink("../tmp/termlog-target", pod.path("dev/termination-log"))
        self.run_to_end(pod)
        if existing:
            with open(target) as f:
                self.assertEqual(f.read(), "ORIGINAL", "written through the symlink")
        else:
            self.assertFalse(os.path.exists(target), "created through a dangling symlink")
        self.assertTrue(os.path.islink(pod.path("dev/termination-log")), "the link was replaced")
        # The reasons still reach the API: the failure marker is the record.
        obj = pod.task_result()
        self.assertEqual(obj.get("phase"), "Error")
        self.assertIn('"missing"', obj.get("message", ""))
        self.assertTrue(any("termination log" in l for l in pod.logs()), "the refusal is logged")

    def test_symlink_to_an_existing_file(self):
        self.check(existing=True)

    def test_dangling_symlink(self):
        self.check(existing=False)


if __name__ == "__main__":
    unittest.main()
