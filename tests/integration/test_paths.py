"""More of the executor's paths, against the real binary: containerSet with
several mains, SIGINT, an API server that is down and comes back (before and
after SIGTERM), the poll fallback when inotify cannot be had, progress
reporting, and connection reuse."""

import os
import shutil
import stat
import time
import unittest

from harness import script_template
import test_lifecycle
from test_lifecycle import LBL_DONE, PARAMS, STAGED, STAGED_VALUE, LifecycleCase, labels

# Not imported by name: unittest would run its tests a second time here.
check_outputs = test_lifecycle.TestReport.check_outputs


def container_set_template(names, parameters=()):
    t = {"name": "cs", "inputs": {}, "metadata": {}, "outputs": {},
         "containerSet": {"containers": [{"name": n, "image": "alpine", "command": ["sh", "-c", "true"]}
                                         for n in names]}}
    if parameters:
        t["outputs"]["parameters"] = list(parameters)
    return t


class TestContainersAndSignals(LifecycleCase):
    def test_container_set_waits_for_every_main(self):
        params = [{"name": "staged", "valueFrom": {"path": "/tmp/out.txt"}}]
        pod = self.pod(template=container_set_template(["main", "b", "c"], params),
                       include_script_output=True)
        pod.start()
        self.placeholder(pod)
        pod.write_stdout("main", "from main\n")
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        pod.finish("c", 3)
        # The report needs all three; give it a moment to (wrongly) go early.
        time.sleep(0.3)
        self.assertEqual([r.method for r in self.api.writes()], ["POST"],
                         "reported before container b finished" + self.info(pod))
        t_last = time.monotonic()
        pod.finish("b", 1)
        self.assert_exit(pod, 0)
        final = self.final_writes(pod)[0]
        self.assertGreater(final.t_recv, t_last)
        obj = pod.task_result()
        self.assertEqual(obj["outputs"]["result"], "from main")
        self.assertEqual(obj["outputs"]["parameters"][0]["value"], STAGED_VALUE)
        for name in ("main", "b", "c"):
            mode = stat.S_IMODE(os.stat(pod.ctr_dir(name)).st_mode)
            self.assertEqual(mode, 0o777, "ctr/%s is created with mode 0777" % name)
        self.assert_writes_valid()

    def test_sigint_behaves_like_sigterm(self):
        grace = 2
        pod = self.pod(template=script_template(PARAMS), grace=grace)
        pod.start()
        self.placeholder(pod)
        pod.stage_param("/tmp/out.txt", STAGED)
        t0 = time.monotonic()
        pod.sigint()
        rc = pod.wait_exit(grace + 5)
        self.assertEqual(rc, 64, self.info(pod))
        self.assertLessEqual(time.monotonic() - t0, grace - 0.1)
        final = self.final_writes(pod)[0]
        reserve = 0.5  # 20% of 2 s is below the 500 ms floor
        self.assertGreaterEqual(final.t_recv, t0 + grace - reserve - 0.05, "waited for the reserve")
        obj = self.assert_failure_marker(pod, "container main")
        self.assertEqual(obj["outputs"]["parameters"][0]["value"], STAGED_VALUE)


class TestApiDown(LifecycleCase):
    def test_down_before_sigterm_retries_until_it_is_back(self):
        self.api.down()
        pod = self.pod(template=script_template(PARAMS))
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.start()
        pod.finish("main", 0)
        # Connection refused for a while: no SIGTERM, so it must not give up.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            self.assertTrue(pod.running(), "gave up while the API was down" + self.info(pod))
            time.sleep(0.1)
        self.assertIn("retrying", pod.log_text())
        self.api.up()
        self.assert_exit(pod, 0, timeout=40)
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        check_outputs(self, obj["outputs"], result=None)
        self.assert_termination_log_empty(pod)
        self.assert_writes_valid()

    def test_p1_back_before_the_reserve_after_sigterm(self):
        grace = 4   # the reserve begins 0.8 s before the end
        self.api.down()
        pod = self.pod(template=script_template(PARAMS), grace=grace)
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        pod.start()
        time.sleep(1.0)   # the scenario: down since before SIGTERM
        pod.sigterm()
        time.sleep(2.0)   # still down, well into the grace period
        self.assertTrue(pod.running())
        self.api.up()     # answers normally from 1.2 s before the reserve
        rc = pod.wait_exit(grace + 5)
        self.assertLessEqual(pod.since_sigterm(), grace - 0.1, "P4" + self.info(pod))
        self.assertEqual(rc, 0, "P1: the API came back before the reserve" + self.info(pod))
        obj = pod.task_result()
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        check_outputs(self, obj["outputs"], result=None)


@unittest.skipUnless(shutil.which("strace"), "strace is needed to take inotify away")
class TestPollFallback(LifecycleCase):
    def test_no_inotify_polls_the_exitcode_files(self):
        # strace makes every inotify_init1 fail with EMFILE, as when the
        # node's inotify instances are used up.
        wrapper = os.path.join(self.tmp, "no-inotify.sh")
        with open(wrapper, "w") as f:
            # LeakSanitizer cannot stop the world under ptrace; leaks are
            # checked by every other test of the sanitizer build.
            f.write('#!/bin/sh\nASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" '
                    'exec strace -f -qq -o /dev/null -e trace=inotify_init1 '
                    '-e inject=inotify_init1:error=EMFILE "%s" "$@"\n' % self.bin_path())
        os.chmod(wrapper, 0o755)
        pod = self.pod(template=script_template(PARAMS), bin=wrapper)
        pod.start()
        self.placeholder(pod)
        pod.stage_param("/tmp/out.txt", STAGED)
        t0 = time.monotonic()
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        final = self.final_writes(pod)[0]
        self.assertIn("polling the exitcode file", pod.log_text())
        self.assertLess(final.t_recv - t0, 0.5 + 1.0, "the poll interval is 500 ms")
        check_outputs(self, pod.task_result()["outputs"], result=None)

    def bin_path(self):
        from harness import binary_path
        return binary_path()


class TestRetrySpread(LifecycleCase):
    def test_retry_after_is_a_floor_with_jitter(self):
        # Ten pods throttled with Retry-After: 1. Each waits at least the
        # second; if all waited exactly it, throttled pods would come back in
        # synchronized waves.
        self.api.add_fault("status", method="PATCH", code=429, retry_after=1, times=10)
        pods = [self.pod(template=script_template(PARAMS)) for _ in range(10)]
        for pod in pods:
            pod.stage_param("/tmp/out.txt", STAGED)
            pod.finish("main", 0)
            pod.start()
        for pod in pods:
            self.assert_exit(pod, 0, timeout=30)
        delays = []
        for pod in pods:
            patches = [r for r in self.api.writes() if r.method == "PATCH" and pod.node_id in r.path]
            self.assertEqual([r.status for r in patches], [429, 200], patches)
            delays.append(patches[1].t_recv - patches[0].t_sent)
        self.assertGreaterEqual(min(delays), 0.95, "Retry-After is a floor: %r" % delays)
        self.assertLessEqual(max(delays), 1.5 + 0.5, delays)
        self.assertGreaterEqual(max(delays) - min(delays), 0.1,
                                "retries are spread, not synchronized: %r" % sorted(delays))


class TestProgressAndConnections(LifecycleCase):
    def test_progress_patches(self):
        env = {"ARGO_PROGRESS_FILE": "/var/run/argo/progress",
               "ARGO_PROGRESS_PATCH_TICK_DURATION": "200ms",
               "ARGO_PROGRESS_FILE_TICK_DURATION": "50ms"}
        pod = self.pod(template=script_template(PARAMS), env=env)
        pod.start()
        self.placeholder(pod)
        pod.write("var/run/argo/progress", "1/10\n")
        first = self.api.wait_for(lambda r: r.method == "PATCH" and (r.json or {}).get("progress"))
        self.assertEqual(first.json, {"progress": "1/10"})
        self.assertEqual(first.content_type, "application/merge-patch+json")
        pod.write("var/run/argo/progress", "1/10\nnot progress\n")   # the last line decides: ignored
        pod.write("var/run/argo/progress", "1/10\n5/10\n")
        self.api.wait_for(lambda r: r.method == "PATCH" and (r.json or {}).get("progress") == "5/10")
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        sent = [r.json["progress"] for r in self.api.writes() if (r.json or {}).get("progress")]
        self.assertEqual(sent, ["1/10", "5/10"], "one patch per change, nothing invalid")
        obj = pod.task_result()
        self.assertEqual(obj.get("progress"), "5/10")
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        self.assert_writes_valid()

    def test_one_kept_alive_connection_and_user_agent(self):
        pod = self.pod(template=script_template(PARAMS))
        pod.start()
        self.placeholder(pod)
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        writes = self.api.writes()
        self.assertEqual([r.method for r in writes], ["POST", "PATCH"], "exactly two writes")
        self.assertEqual(writes[0].conn_id, writes[1].conn_id, "the report reuses the connection")
        for r in writes:
            self.assertRegex(r.header("User-Agent", ""), r"^argowait/\d+\.\d+\.\d+ ")
            self.assertEqual(r.header("Accept"), "application/json")


if __name__ == "__main__":
    unittest.main()
