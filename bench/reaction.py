#!/usr/bin/env python3
"""Reaction time: main's exitcode file written -> final PATCH received by the
fake API server (HTTPS on loopback), over repeated whole lifecycles.

    python3 bench/reaction.py [--runs N] [--bin build/argowait]

t0 is taken just before the fake emissary writes the exitcode file; t1 is
when the server has read the whole PATCH request. Also counts the API writes
of each lifecycle (no progress file: the target is 2)."""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from fakeapi import FakeApi  # noqa: E402
from harness import Pod, script_template  # noqa: E402


def percentile(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def one_run(tmp, api, i):
    params = [{"name": "out", "valueFrom": {"path": "/tmp/out.txt"}}]
    pod = Pod(os.path.join(tmp, "pod%d" % i), api, template=script_template(params),
              include_script_output=True)
    n_before = len(api.writes())
    pod.start(args=("wait", "--loglevel", "info"))
    api.wait_for(lambda r: r.method == "POST" and r.json["metadata"]["name"] == pod.node_id)
    pod.write_stdout("main", "result\n")
    pod.stage_param("/tmp/out.txt", "value\n")
    t0 = time.monotonic()
    pod.finish("main", 0)
    patch = api.wait_for(lambda r: r.method == "PATCH" and pod.node_id in r.path)
    rc = pod.wait_exit(15)
    writes = len(api.writes()) - n_before
    pod.close()
    if rc != 0:
        raise SystemExit("run %d exited %d" % (i, rc))
    return (patch.t_recv - t0) * 1000.0, writes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "argowait"))
    args = ap.parse_args()
    os.environ["ARGOWAIT_BIN"] = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="argowait-bench-")
    try:
        with FakeApi(os.path.join(tmp, "api")) as api:
            results = [one_run(tmp, api, i) for i in range(args.runs)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ms = [r[0] for r in results]
    writes = sorted({r[1] for r in results})
    print("runs: %d" % len(ms))
    print("exitcode written -> final PATCH received (ms): min %.2f  median %.2f  p99 %.2f  max %.2f"
          % (min(ms), statistics.median(ms), percentile(ms, 99), max(ms)))
    print("API writes per lifecycle: %s" % ", ".join(str(w) for w in writes))


if __name__ == "__main__":
    main()
