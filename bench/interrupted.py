#!/usr/bin/env python3
"""Interrupted finalize: SIGTERM arriving when main has just finished, to
process exit with the final report received by the fake API server.

    python3 bench/interrupted.py [--runs N] [--bin build/argowait]

Why this is the measurement: when main ends, the kubelet (pod deletion, spot
reclaim, node drain) or the controller sends SIGTERM to every container at
once, so the wait container gets SIGTERM within microseconds of the exitcode
file appearing. SIGTERM must then neither stop the report nor delay the exit.
Scenarios, each after the placeholder POST was received:

  together   t0; exitcode written; SIGTERM sent at once (a few us later).
             Figures: t0 -> final PATCH received, t0 -> process reaped.
  term-first SIGTERM sent; 50 ms later (main still shutting down) t0 and the
             exitcode written. Figure: t0 -> process reaped.
  reserve    SIGTERM sent and main never finishes (grace 2 s, reserve 1000 ms):
             the report (failure marker) must go out when the reserve begins.
             Figure: exit time minus (SIGTERM + grace - reserve), i.e. how long
             the reserve-time report and exit take.

Every run must exit 0 (64 in ``reserve``) with the label "true" stored."""

import argparse
import os
import shutil
import sys
import tempfile
import time

from common import DEFAULT_BIN, PARAMS, fmt_summary, machine, setup_bin, summary

from fakeapi import FakeApi
from harness import Pod, script_template

DONE = "workflows.argoproj.io/report-outputs-completed"


def run(tmp, api, i, scenario):
    grace, reserve = (2, 1000) if scenario == "reserve" else (10, None)
    pod = Pod(os.path.join(tmp, "%s%d" % (scenario, i)), api, template=script_template(PARAMS),
              include_script_output=True, grace=grace, reserve_ms=reserve)
    try:
        pod.start(args=("wait", "--loglevel", "info"))
        api.wait_for(lambda r: r.method == "POST" and r.status in (201, 409)
                     and r.json["metadata"]["name"] == pod.node_id)
        pod.write_stdout("main", "result\n")
        pod.stage_param("/tmp/out.txt", "value\n")
        if scenario == "together":
            t0 = time.monotonic()
            pod.finish("main", 0)
            pod.sigterm()
        elif scenario == "term-first":
            pod.sigterm()
            time.sleep(0.05)
            t0 = time.monotonic()
            pod.finish("main", 0)
        else:
            pod.sigterm()
            t0 = pod.t_sigterm[0] + grace - reserve / 1000.0
        rc = pod.wait_exit(15)
        patch = api.wait_for(lambda r: r.method == "PATCH" and pod.node_id in r.path and r.status == 200,
                             timeout=5)
        obj = pod.task_result()
        want = 64 if scenario == "reserve" else 0
        if rc != want or obj["metadata"]["labels"].get(DONE) != "true":
            raise SystemExit("%s run %d: exit %s, label %r\n%s" % (scenario, i, rc,
                             obj["metadata"]["labels"].get(DONE), pod.log_text()))
        if patch.t_recv > pod.t_exit:
            raise SystemExit("%s run %d: PATCH after exit?" % (scenario, i))
        return (patch.t_recv - t0) * 1000.0, (pod.t_exit - t0) * 1000.0, (pod.t_exit - patch.t_sent) * 1000.0
    finally:
        pod.close()


def measure(runs, reserve_runs, bin_path):
    setup_bin(bin_path)
    tmp = tempfile.mkdtemp(prefix="argowait-bench-int-")
    out = {}
    try:
        with FakeApi(os.path.join(tmp, "api")) as api:
            for sc, n in (("together", runs), ("term-first", runs), ("reserve", reserve_runs)):
                res = [run(tmp, api, i, sc) for i in range(n)]
                out[sc] = {"patch": [r[0] for r in res], "exit": [r[1] for r in res],
                           "tail": [r[2] for r in res]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--reserve-runs", type=int, default=10)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    args = ap.parse_args()
    out = measure(args.runs, args.reserve_runs, args.bin)
    print("machine: %s" % machine())
    for sc, d in out.items():
        print("%-10s t0 -> final PATCH received: %s" % (sc, fmt_summary(d["patch"])))
        print("%-10s t0 -> process exit:         %s" % (sc, fmt_summary(d["exit"])))
        print("%-10s PATCH answer sent -> exit:  %s" % (sc, fmt_summary(d["tail"])))
    return out


if __name__ == "__main__":
    main()
