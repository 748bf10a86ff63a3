"""Integration tests of the real argowait binary against the contract
(/work/shared/reference/contract.md), with the fake API server.

Run: cd tests/integration && ARGOWAIT_BIN=../../build/argowait python3 -m unittest -v test_lifecycle
Skipped only when the binary does not exist (set ARGOWAIT_REQUIRE_BIN=1 to
make that a failure). ARGOWAIT_TEST_KEEP=1 keeps the sandbox folders.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from fakeapi import FakeApi, validate_object
from harness import Pod, binary_path, rfc3339, script_template, wait_until

BIN = binary_path()
NS = "argo"
COLL = "/apis/argoproj.io/v1alpha1/namespaces/%s/workflowtaskresults" % NS
LBL_WF = "workflows.argoproj.io/workflow"
LBL_DONE = "workflows.argoproj.io/report-outputs-completed"
LBL_IID = "workflows.argoproj.io/controller-instanceid"
WAIT = 15.0          # generous timeout for events
# A text log line as argowait writes it (logrus style).
TEXT_LOG_LINE = re.compile(r'^time="[0-9T:.\-]+Z" level=(debug|info|warning|error) msg=".*"$')


def labels(obj):
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def is_write(r):
    return r.method in ("POST", "PATCH")


def require_binary():
    if os.path.isfile(BIN) and os.access(BIN, os.X_OK):
        return
    msg = ("argowait binary not found at %s: build it (cmake -S . -B build && cmake --build build) "
           "or set ARGOWAIT_BIN" % BIN)
    if os.environ.get("ARGOWAIT_REQUIRE_BIN"):
        raise AssertionError(msg)
    raise unittest.SkipTest(msg)



class LifecycleCase(unittest.TestCase):
    """One fake API server per test; pods made with self.pod()."""

    @classmethod
    def setUpClass(cls):
        require_binary()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="argowait-it-")
        self.api = FakeApi(os.path.join(self.tmp, "api")).start()
        self.pods = []

    def tearDown(self):
        for pod in self.pods:
            pod.close()
            if pod.proc is not None:
                self.assert_no_leak(pod, pod.token, headers_ok=True)
                self.assert_stderr_is_log_lines(pod)
        self.api.stop()
        if os.environ.get("ARGOWAIT_TEST_KEEP"):
            print("\nkept sandbox: %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def pod(self, **kw):
        pod = Pod(os.path.join(self.tmp, "pod%d" % len(self.pods)), self.api, **kw)
        self.pods.append(pod)
        return pod

    # -- helpers
    def info(self, pod):
        """Context for failure messages."""
        return "\n--- termination log: %r\n--- requests: %r\n--- log tail:\n%s" % (
            pod.termination_log(), self.api.requests, "\n".join(pod.logs()[-40:]))

    def assert_stderr_is_log_lines(self, pod):
        """Contract §1: every stderr line follows --log-format. A sanitizer
        report, a crash message or raw library output fails here."""
        for line in pod.logs():
            if TEXT_LOG_LINE.match(line):
                continue
            try:
                obj = json.loads(line)
                if isinstance(obj, dict) and {"time", "level", "msg"} <= set(obj):
                    continue
            except ValueError:
                pass
            self.fail("stderr line is not a log line: %r%s" % (line, self.info(pod)))

    def assert_exit(self, pod, code, timeout=WAIT):
        try:
            rc = pod.wait_exit(timeout)
        except TimeoutError as e:
            self.fail("%s%s" % (e, self.info(pod)))
        self.assertEqual(rc, code, "exit code" + self.info(pod))
        return rc

    def placeholder(self, pod):
        r = self.api.wait_for(lambda r: r.method == "POST", timeout=WAIT)
        return r

    def final_writes(self, pod):
        """Writes that set report-outputs-completed to "true"."""
        return [r for r in self.api.writes() if labels(r.json).get(LBL_DONE) == "true"]

    def assert_writes_valid(self, allowed=(200, 201, 404, 409)):
        """Every write was well-formed: POST bodies are whole valid objects,
        and the server never answered 400/415/422 (bad body, media type,
        CRD violation)."""
        for r in self.api.writes():
            if r.fault is not None:
                continue
            self.assertNotIn(r.status, (400, 415, 422), "malformed write %r: %r" % (r, r.response))
            if r.method == "POST":
                self.assertEqual(r.content_type, "application/json", r)
                self.assertEqual(validate_object(r.json), [], "POST body violates the CRD: %r" % r.json)
            else:
                self.assertEqual(r.content_type, "application/merge-patch+json", r)
            if allowed is not None and r.status is not None:
                self.assertIn(r.status, allowed, r)
        for obj in self.api.objects.values():
            self.assertEqual(validate_object(obj), [], obj)

    def assert_no_leak(self, pod, secret, headers_ok=False):
        """``secret`` is in no request (body; headers too unless
        ``headers_ok``), log line, termination log, stdout or stored object."""
        if not secret:
            return
        sb = secret.encode()
        for r in self.api.requests:
            self.assertNotIn(sb, r.body, "secret in the body of %r" % r)
            if not headers_ok:
                self.assertNotIn(sb, r.raw, "secret in %r" % r)
        self.assertNotIn(secret, pod.log_text(), "secret in a log line")
        self.assertNotIn(secret, pod.termination_log() or "", "secret in the termination log")
        self.assertNotIn(secret, pod.stdout_text(), "secret on stdout")
        self.assertNotIn(secret, json.dumps(list(self.api.objects.values())), "secret in a stored object")

    def assert_failure_marker(self, pod, *needles):
        obj = pod.task_result()
        self.assertIsNotNone(obj, "no task result" + self.info(pod))
        self.assertEqual(labels(obj).get(LBL_DONE), "true", self.info(pod))
        self.assertEqual(obj.get("phase"), "Error", self.info(pod))
        msg = obj.get("message") or ""
        self.assertLessEqual(len(msg.encode()), 1024)
        for n in needles:
            self.assertIn(n.lower(), msg.lower(), "failure marker message %r" % msg)
        tl = pod.termination_log() or ""
        self.assertLessEqual(len(tl.encode()), 4096)
        for n in needles:
            self.assertIn(n.lower(), tl.lower(), "termination log %r" % tl)
        return obj

    def assert_termination_log_empty(self, pod):
        tl = pod.termination_log()
        self.assertIn(tl, (None, ""), "termination log: %r" % tl)


# ---------------------------------------------------------------------------

PARAMS = [
    {"name": "staged", "valueFrom": {"path": "/tmp/out.txt"}},
    {"name": "defaulted", "valueFrom": {"path": "/tmp/missing.txt", "default": "fallback"}},
    {"name": "constant", "value": "fixed"},
]
STAGED = 'line1\n"quoted" \\ tab\t é ✓\n\n'
STAGED_VALUE = 'line1\n"quoted" \\ tab\t é ✓\n'


class TestReport(LifecycleCase):
    def check_outputs(self, outputs, result="hello world"):
        params = outputs.get("parameters") or []
        self.assertEqual([p.get("name") for p in params], ["staged", "defaulted", "constant"], outputs)
        by = {p["name"]: p for p in params}
        self.assertEqual(by["staged"].get("value"), STAGED_VALUE, "exactly one trailing newline removed")
        self.assertEqual(by["defaulted"].get("value"), "fallback")
        self.assertEqual(by["constant"].get("value"), "fixed")
        if result is not None:
            self.assertEqual(outputs.get("result"), result)

    def test_happy_path(self):
        pod = self.pod(template=script_template(PARAMS), include_script_output=True)
        pod.start()
        post = self.placeholder(pod)
        self.assertEqual(post.status, 201, post.response)
        self.assertEqual(post.path, COLL)
        self.assertEqual(post.content_type, "application/json")
        body = post.json
        self.assertEqual(body.get("apiVersion"), "argoproj.io/v1alpha1")
        self.assertEqual(body.get("kind"), "WorkflowTaskResult")
        md = body["metadata"]
        self.assertEqual(md.get("name"), pod.node_id)
        self.assertEqual(md.get("namespace"), NS)
        self.assertEqual(md.get("labels"), {LBL_WF: pod.workflow, LBL_DONE: "false"})
        refs = md.get("ownerReferences") or []
        self.assertEqual(len(refs), 1, refs)
        self.assertEqual({k: refs[0].get(k) for k in ("apiVersion", "kind", "name", "uid")},
                         {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                          "name": pod.workflow, "uid": pod.workflow_uid})
        self.assertNotIn("outputs", body, "the placeholder carries no outputs")
        self.assertTrue(pod.running(), "still waiting for main after the placeholder")

        pod.write_stdout("main", "hello world\n")
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)

        writes = self.api.writes()
        self.assertEqual([r.method for r in writes], ["POST", "PATCH"], writes)
        patch = writes[1]
        self.assertEqual(patch.path, COLL + "/" + pod.node_id)
        self.assertEqual(patch.content_type, "application/merge-patch+json")
        self.assertEqual(patch.status, 200, patch.response)
        self.assertEqual(labels(patch.json).get(LBL_DONE), "true", "label and outputs in the same request")
        self.check_outputs(patch.json["outputs"])
        self.assertNotEqual(patch.json.get("phase"), "Error")
        obj = pod.task_result()
        self.assertEqual(labels(obj), {LBL_WF: pod.workflow, LBL_DONE: "true"})
        self.check_outputs(obj["outputs"])
        self.assertNotEqual(obj.get("phase"), "Error")
        self.assert_writes_valid()
        self.assert_termination_log_empty(pod)
        for line in pod.logs():
            self.assertRegex(line, TEXT_LOG_LINE, "every stderr line follows --log-format text")

    def test_instance_id_label(self):
        pod = self.pod(instance_id="ctl-7")
        pod.start()
        post = self.placeholder(pod)
        self.assertEqual(labels(post.json).get(LBL_IID), "ctl-7")
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        self.assertEqual(labels(pod.task_result()),
                         {LBL_WF: pod.workflow, LBL_DONE: "true", LBL_IID: "ctl-7"})
        self.assert_writes_valid()

    def test_torn_exitcode_write(self):
        pod = self.pod(template=script_template(PARAMS))
        pod.start()
        self.placeholder(pod)
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0, torn=True, torn_delay=0.5)
        self.assert_exit(pod, 0)
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        self.assertNotEqual(obj.get("phase"), "Error", "an empty exitcode file is 'not yet written', not malformed")
        self.check_outputs(obj["outputs"], result=None)
        self.assert_termination_log_empty(pod)

    def test_placeholder_exists_409_and_exitcode_already_there(self):
        # A restart: the placeholder exists and main finished before we started.
        pod = self.pod(template=script_template(PARAMS), include_script_output=True)
        self.api.put_object({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
                             "metadata": {"name": pod.node_id, "namespace": NS,
                                          "labels": {LBL_WF: pod.workflow, LBL_DONE: "false"}}})
        pod.write_stdout("main", "hello world\n")
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        pod.start()
        self.assert_exit(pod, 0)
        writes = self.api.writes()
        self.assertEqual((writes[0].method, writes[0].status), ("POST", 409),
                         "placeholder POSTed even though exitcode exists: %r" % writes)
        self.assertEqual(labels(writes[0].json).get(LBL_DONE), "false")
        self.assertEqual(writes[-1].status, 200)
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        self.check_outputs(obj["outputs"])
        self.assert_writes_valid()

    def test_restart_converges(self):
        wf_uid = "3f1c2b7a-1111-4222-8333-444455556666"
        first = self.pod(template=script_template(PARAMS), include_script_output=True, workflow="wf-conv",
                         node_id="wf-conv-123456", workflow_uid=wf_uid)
        for p in (first,):
            p.write_stdout("main", "hello world\n")
            p.stage_param("/tmp/out.txt", STAGED)
            p.finish("main", 0)
        first.start()
        self.assert_exit(first, 0)
        obj1 = first.task_result()
        second = self.pod(template=script_template(PARAMS), include_script_output=True, workflow="wf-conv",
                          node_id="wf-conv-123456", workflow_uid=wf_uid)
        second.write_stdout("main", "hello world\n")
        second.stage_param("/tmp/out.txt", STAGED)
        second.finish("main", 0)
        n = len(self.api.requests)
        second.start()
        self.assert_exit(second, 0)
        self.assertEqual(self.api.requests[n].status, 409)
        obj2 = second.task_result()
        for o in (obj1, obj2):
            del o["metadata"]["resourceVersion"]
        self.assertEqual(obj1, obj2, "a second run converges on the same object")
        self.assert_writes_valid()

    def test_patch_404_recreates_with_post(self):
        pod = self.pod(template=script_template(PARAMS), include_script_output=True)
        pod.start()
        post = self.placeholder(pod)
        self.assertEqual(post.status, 201)
        self.api.delete_object(NS, pod.node_id)
        pod.write_stdout("main", "hello world\n")
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        writes = self.api.writes()
        self.assertEqual([(r.method, r.status) for r in writes], [("POST", 201), ("PATCH", 404), ("POST", 201)])
        again = writes[2].json
        self.assertEqual(labels(again), {LBL_WF: pod.workflow, LBL_DONE: "true"})
        self.assertEqual(len(again["metadata"].get("ownerReferences") or []), 1)
        self.check_outputs(again["outputs"])
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        self.check_outputs(obj["outputs"])
        self.assert_writes_valid()

    def test_template_sources(self):
        tmpl = script_template([{"name": "p", "valueFrom": {"path": "/tmp/p"}}])
        for how in ("env", "offloaded"):
            with self.subTest(how=how):
                if how == "env":
                    pod = self.pod(template_raw=b"{not used}", env={"ARGO_TEMPLATE": json.dumps(tmpl)})
                else:
                    pod = self.pod(template_raw=b"{not used}", env={"ARGO_TEMPLATE": "offloaded"})
                    pod.write("argo/config/ARGO_TEMPLATE", json.dumps(tmpl))
                pod.stage_param("/tmp/p", "v\n")
                pod.finish("main", 0)
                pod.start()
                self.assert_exit(pod, 0)
                obj = pod.task_result()
                self.assertEqual([(p["name"], p.get("value")) for p in obj["outputs"]["parameters"]], [("p", "v")])
                self.assertEqual(labels(obj).get(LBL_DONE), "true")


class TestSignalsAndFaults(LifecycleCase):
    def test_sigterm_while_main_runs_p1_p5(self):
        pod = self.pod(template=script_template(PARAMS), include_script_output=True, grace=10)
        pod.start()
        self.placeholder(pod)
        pod.sigterm()
        time.sleep(0.5)   # the scenario's timeline, not synchronisation
        pod.sigterm()     # a second SIGTERM changes nothing
        time.sleep(0.5)
        self.assertTrue(pod.running(), "SIGTERM is not 'stop now'" + self.info(pod))
        self.assertEqual([r.method for r in self.api.writes()], ["POST"], "no report before main finishes")
        pod.write_stdout("main", "hello world\n")
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        patches = [r for r in self.api.writes() if r.method == "PATCH"]
        self.assertEqual(len(patches), 1, patches)
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        TestReport.check_outputs(self, obj["outputs"])
        self.assertLess(pod.since_sigterm(), 10 - 0.1)
        self.assert_termination_log_empty(pod)
        self.assert_writes_valid()

    def test_transient_503_and_429_p1(self):
        self.api.add_fault("status", method="POST", code=503, times=2)
        self.api.add_fault("status", method="PATCH", code=429, retry_after=1, times=1)
        pod = self.pod(template=script_template(PARAMS))
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        pod.start()
        self.assert_exit(pod, 0, timeout=30)
        self.assertEqual([(r.method, r.status) for r in self.api.writes()],
                         [("POST", 503), ("POST", 503), ("POST", 201), ("PATCH", 429), ("PATCH", 200)])
        throttled, retried = self.api.writes()[3:5]
        # Retry-After: 1 is honoured; the backoff alone would retry within 200 ms.
        self.assertGreaterEqual(retried.t_recv - throttled.t_sent, 0.9)
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        TestReport.check_outputs(self, obj["outputs"], result=None)
        self.assert_writes_valid(allowed=None)

    def test_p4_exit_inside_grace_whatever_the_api_does(self):
        grace = 3
        for fault, opts in (("hang", {}), ("reset", {}), ("status", {"code": 503}), ("tls_close", {})):
            with self.subTest(fault=fault):
                self.api.faults.clear()
                self.api.add_fault(fault, **opts)
                pod = self.pod(template=script_template(PARAMS), grace=grace)
                pod.stage_param("/tmp/out.txt", STAGED)
                pod.finish("main", 0)
                n = len(self.api.events)
                pod.start()
                if fault == "tls_close":
                    self.api.wait_until(lambda: len(self.api.events) > n, timeout=WAIT)
                else:
                    self.api.wait_for(lambda r: r.method == "POST" and
                                      ((r.json or {}).get("metadata") or {}).get("name") == pod.node_id,
                                      done=False, timeout=WAIT)
                pod.sigterm()
                rc = pod.wait_exit(grace + 5)
                self.assertLessEqual(pod.since_sigterm(), grace - 0.1,
                                     "P4: exit at least 100 ms before the grace period ends" + self.info(pod))
                self.assertEqual(rc, 64, self.info(pod))
                self.assertTrue(pod.termination_log(), "termination log empty" + self.info(pod))

    def test_reserve_final_report_when_main_never_finishes(self):
        grace = 4
        reserve = 0.8  # default: 20% of 4 s (within [0.5, 5] s)
        params = [{"name": "early", "valueFrom": {"path": "/tmp/early.txt"}},
                  {"name": "never", "valueFrom": {"path": "/tmp/never.txt"}}]
        pod = self.pod(template=script_template(params), grace=grace)
        pod.start()
        self.placeholder(pod)
        pod.sigterm()
        time.sleep(0.5)
        pod.stage_param("/tmp/early.txt", "staged late\n")  # P2: staged before the final report
        rc = pod.wait_exit(grace + 5)
        self.assertEqual(rc, 64, self.info(pod))
        finals = self.final_writes(pod)
        self.assertTrue(finals, "no final report" + self.info(pod))
        final = finals[0]
        t_reserve = pod.t_sigterm[0] + grace - reserve
        self.assertGreaterEqual(final.t_recv, t_reserve - 0.05,
                                "P5: the final report waited for the reserve (%.3f s early)"
                                % (t_reserve - final.t_recv))
        self.assertLess(final.t_recv, pod.t_exit)
        self.assertEqual(final.status, 200 if final.method == "PATCH" else 201)
        self.assertLessEqual(pod.since_sigterm(), grace - 0.1)
        obj = self.assert_failure_marker(pod, "main")
        by = {p["name"]: p for p in obj["outputs"]["parameters"]}
        self.assertEqual(by["early"].get("value"), "staged late", "P2: what was staged is reported")
        self.assertNotIn("value", by.get("never", {}))
        self.assert_writes_valid()

    def test_starved_reserve_is_named_and_p4_holds(self):
        """A node that gives the process no CPU when its reserve is due (here
        SIGSTOP across the reserve) makes the reserve timer fire late; the log
        says by how much, and the exit still comes before the grace period
        ends (P4)."""
        grace, reserve = 4, 0.8
        pod = self.pod(grace=grace)
        pod.ctr_dir("main")
        pod.start()
        self.placeholder(pod)
        pod.sigterm()
        wait_until(lambda: any("received SIGTERM" in l for l in pod.logs()), timeout=WAIT)
        t_reserve = pod.t_sigterm[0] + grace - reserve
        os.kill(pod.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(max(0.0, t_reserve + 0.25 - time.monotonic()))  # the starvation itself
        finally:
            os.kill(pod.proc.pid, signal.SIGCONT)
        rc = pod.wait_exit(grace + 5)
        self.assertEqual(rc, 64, self.info(pod))
        late = [l for l in pod.logs() if "the reserve began" in l]
        self.assertTrue(late, "no lateness warning" + self.info(pod))
        m = re.search(r"began (\d+) ms late .* (-?\d+) ms are left", late[0])
        self.assertTrue(m, late[0])
        self.assertGreaterEqual(int(m.group(1)), 200, late[0])
        self.assertLess(int(m.group(2)), 400 - 200 + 50, late[0])
        self.assertLessEqual(pod.since_sigterm(), grace - 0.1, "P4" + self.info(pod))

    def test_deadline(self):
        grace = 2
        deadline_epoch = math.ceil(time.time()) + 1
        pod = self.pod(deadline=rfc3339(deadline_epoch), grace=grace)
        t_deadline = time.monotonic() + (deadline_epoch - time.time())
        pod.ctr_dir("main")  # main is running: its emissary has made ctr/main
        pod.start()
        self.placeholder(pod)
        wait_until(lambda: "Step exceeded its deadline" in (pod.termination_log() or ""),
                   timeout=WAIT, what="deadline note in the termination log")
        t_note = time.monotonic()
        self.assertGreaterEqual(t_note, t_deadline - 0.05, "deadline note before the deadline")
        self.assertLessEqual(t_note, t_deadline + 1.0, "deadline note 'at once'")
        wait_until(lambda: pod.signal_file("main") == b"15", timeout=WAIT, what="15 in ctr/main/signal")
        t15 = time.monotonic()
        self.assertEqual(pod.signal_file_mode("main"), 0o666)
        wait_until(lambda: pod.signal_file("main") == b"9", timeout=grace + WAIT, what="9 in ctr/main/signal")
        self.assertGreaterEqual(time.monotonic() - t15, grace - 0.1, "9 only after the grace period")
        self.assertEqual(pod.signal_file_mode("main"), 0o666)
        self.assertTrue(pod.running(), "keeps waiting for the exitcode files")
        pod.finish("main", 137)
        self.assert_exit(pod, 0)
        self.assertEqual(labels(pod.task_result()).get(LBL_DONE), "true")
        self.assertIn("Step exceeded its deadline", pod.termination_log())
        self.assert_writes_valid()

    def test_token_rotation(self):
        pod = self.pod(template=script_template(PARAMS))
        pod.start()
        post = self.placeholder(pod)
        old = self.api.token
        self.assertEqual((post.status, post.token), (201, old))
        new = "rotated-" + os.urandom(8).hex()
        n = len(self.api.requests)
        pod.rotate_token(new)
        self.api.accepted_tokens = {new}
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        after = [r for r in self.api.requests[n:] if is_write(r)]
        self.assertTrue(after, self.info(pod))
        for r in after:
            if r.status == 401:
                self.assertEqual(r.token, old, "a 401 only with the old token")
            else:
                self.assertEqual(r.token, new)
        self.assertEqual(after[-1].status, 200)
        self.assertEqual(labels(pod.task_result()).get(LBL_DONE), "true")
        self.assert_no_leak(pod, new, headers_ok=True)
        self.assert_no_leak(pod, old, headers_ok=True)

    def test_401_surviving_a_token_reread_is_permanent(self):
        pod = self.pod(template=script_template(PARAMS))
        pod.start()
        self.placeholder(pod)
        self.api.accepted_tokens = {"a-token-the-pod-never-gets"}
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        t0 = time.monotonic()
        self.assert_exit(pod, 64)
        self.assertLess(time.monotonic() - t0, 10, "a permanent error is not retried for long")
        self.assertRegex(pod.termination_log() or "", r"(?i)401|unauthori")

    def test_wrong_ca_is_permanent(self):
        other = self.api.make_other_pki()
        pod = self.pod(ca_file=other["ca_cert"])
        pod.finish("main", 0)
        pod.start()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.t_exit - pod.t_start, 5, "prompt exit on a TLS verification failure")
        self.assertRegex(pod.termination_log() or "", r"(?i)tls|ssl|certificate|verif",
                         "the termination log names the TLS failure")
        self.assertEqual(self.api.requests, [], "no request (and no token) to an unverified server")
        self.assertTrue(any("handshake failed" in e[3] for e in self.api.events), self.api.events)


class TestBadInput(LifecycleCase):
    def test_p3_missing_parameter_without_default(self):
        params = [{"name": "needed-param", "valueFrom": {"path": "/tmp/absent.txt"}}]
        pod = self.pod(template=script_template(params))
        pod.start()
        self.placeholder(pod)
        pod.finish("main", 0)
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "needed-param")
        self.assert_writes_valid()

    def test_p7_malformed_template(self):
        for raw in (b'{"name": "t", "outputs": {"parameters": [', b'["not", "an", "object"]'):
            with self.subTest(template=raw):
                pod = self.pod(template_raw=raw)
                pod.finish("main", 0)
                pod.start()
                self.assert_exit(pod, 64)
                self.assert_failure_marker(pod, "template")
                self.assert_writes_valid()

    def test_p7_missing_pod_name(self):
        pod = self.pod(env={"ARGO_POD_NAME": None})
        pod.finish("main", 0)
        pod.start()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "ARGO_POD_NAME")

    def test_p7_bad_deadline(self):
        pod = self.pod(deadline="tomorrow at noon")
        pod.finish("main", 0)
        pod.start()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "ARGO_DEADLINE")

    def test_p7_malformed_exitcode(self):
        pod = self.pod()
        pod.start()
        self.placeholder(pod)
        pod.finish("main", content="abc")
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "main")
        self.assert_writes_valid()

    def test_p8_symlinks_to_secrets_are_not_followed(self):
        secret = "S3CRET-" + os.urandom(12).hex()
        params = [{"name": "rel-link", "valueFrom": {"path": "/work/rel.txt"}},
                  {"name": "abs-link", "valueFrom": {"path": "/work/abs.txt"}},
                  {"name": "staged-link", "valueFrom": {"path": "/tmp/staged.txt"}},
                  {"name": "dir-link", "valueFrom": {"path": "/work/dir/secretkey"}}]
        pod = self.pod(template=script_template(params, volume_mounts=[{"name": "work", "mountPath": "/work"}]))
        target = pod.secret_file("s3", "secretkey", secret)
        pod.mount_symlink("/work", "rel.txt", "../../argo/secret/s3/secretkey")
        pod.mount_symlink("/work", "abs.txt", target)
        pod.mount_symlink("/work", "dir", "../../argo/secret/s3")  # a directory component, not the last one
        os.makedirs(pod.path("var/run/argo/outputs/parameters/tmp"), exist_ok=True)
        os.symlink(target, pod.path("var/run/argo/outputs/parameters/tmp/staged.txt"))
        with open(pod.path("mainctrfs/work/rel.txt")) as f:
            self.assertEqual(f.read(), secret, "the sandbox symlink really leads to the secret")
        pod.start()
        self.placeholder(pod)
        pod.finish("main", 0)
        self.assert_exit(pod, 64)
        self.assert_no_leak(pod, secret)
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        self.assertEqual(obj.get("phase"), "Error")
        self.assert_writes_valid()


class TestCommands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_binary()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="argowait-cmd-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_bin(self, *args, exe=BIN):
        return subprocess.run([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})

    def test_version(self):
        r = self.run_bin("version")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertRegex(lines[0], r"^argowait \S+")
        text = r.stdout.decode().lower()
        for lib in ("libuv", "curl", "cjson"):
            self.assertIn(lib, text)

    def test_kill(self):
        sleeper = subprocess.Popen(["sleep", "30"])
        try:
            self.assertEqual(self.run_bin("kill", "0", str(sleeper.pid)).returncode, 0)
            self.assertIsNone(sleeper.poll())
            self.assertEqual(self.run_bin("kill", "15", str(sleeper.pid)).returncode, 0)
            self.assertEqual(sleeper.wait(5), -15)
        finally:
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()
        gone = subprocess.Popen(["true"])
        gone.wait()
        r = self.run_bin("kill", "0", str(gone.pid))
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.strip(), "exits 1 with a message")

    def test_argoexec_symlink(self):
        link = os.path.join(self.tmp, "argoexec")
        os.symlink(BIN, link)
        r = self.run_bin("version", exe=link)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.decode().splitlines()[0], r"^argowait \S+")
        sleeper = subprocess.Popen(["sleep", "30"])
        try:
            self.assertEqual(self.run_bin("kill", "15", str(sleeper.pid), exe=link).returncode, 0)
            self.assertEqual(sleeper.wait(5), -15)
        finally:
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()


class TestWaitCommandLine(LifecycleCase):
    def test_argoexec_symlink_wait(self):
        link = os.path.join(self.tmp, "argoexec")
        os.symlink(BIN, link)
        pod = self.pod()
        pod.finish("main", 0)
        pod.start(argv0=link)
        self.assert_exit(pod, 0)
        self.assertEqual(labels(pod.task_result()).get(LBL_DONE), "true")

    def test_unknown_flags_are_tolerated(self):
        pod = self.pod()
        pod.finish("main", 0)
        pod.start(["wait", "--loglevel", "debug", "--log-format", "text", "--foo=bar", "--gloglevel", "0"])
        self.assert_exit(pod, 0)
        self.assertEqual(labels(pod.task_result()).get(LBL_DONE), "true")
        warn = [l for l in pod.logs() if re.search(r"level=warn", l) and "foo" in l]
        self.assertTrue(warn, "unknown flag logged at warn level" + self.info(pod))
        for line in pod.logs():
            self.assertRegex(line, TEXT_LOG_LINE)

    def test_json_log_format(self):
        pod = self.pod()
        pod.finish("main", 0)
        pod.start(["wait", "--loglevel", "debug", "--log-format", "json"])
        self.assert_exit(pod, 0)
        lines = pod.logs()
        self.assertTrue(lines)
        for line in lines:
            rec = json.loads(line)
            self.assertIsInstance(rec, dict)
            for k in ("time", "level", "msg"):
                self.assertIn(k, rec, line)


if __name__ == "__main__":
    unittest.main()
