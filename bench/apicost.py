#!/usr/bin/env python3
"""API cost: requests per lifecycle by method (every attempt counts), and
TLS connections, against the fake API server.

    python3 bench/apicost.py [--runs N] [--bin build/argowait]

Scenarios:
  plain     no progress reporting: placeholder, main runs ~0.3 s, report.
  progress  progress on (patch tick 200ms, file tick 50ms); main writes 5
            progress lines 300 ms apart (1/5 .. 5/5), then finishes.
  faults    plain, but the server answers the first POST 429 (Retry-After: 1)
            and the first PATCH 503: shows that retries are extra attempts
            of the same writes, not extra writes."""

import argparse
import collections
import os
import shutil
import tempfile
import time

from common import DEFAULT_BIN, PARAMS, machine, setup_bin

from fakeapi import FakeApi
from harness import Pod, script_template

PROGRESS_ENV = {"ARGO_PROGRESS_FILE": "/var/run/argo/progress",
                "ARGO_PROGRESS_PATCH_TICK_DURATION": "200ms",
                "ARGO_PROGRESS_FILE_TICK_DURATION": "50ms"}


def mine(r, pod):
    if r.method == "POST":
        return bool(r.json) and (r.json.get("metadata") or {}).get("name") == pod.node_id
    return r.path.endswith("/" + pod.node_id)


def lifecycle(tmp, api, scenario, i):
    env = PROGRESS_ENV if scenario == "progress" else None
    pod = Pod(os.path.join(tmp, "%s%d" % (scenario, i)), api, template=script_template(PARAMS), env=env)
    if scenario == "faults":
        api.add_fault("status", method="POST", code=429, retry_after=1, times=1)
        api.add_fault("status", method="PATCH", code=503, times=1)
    with api.cond:
        first_req, first_ev = len(api.requests), len(api.events)
    try:
        pod.start(args=("wait", "--loglevel", "info"))
        api.wait_for(lambda r: mine(r, pod) and r.method == "POST" and r.status in (201, 409), timeout=15)
        if scenario == "progress":
            for k in range(1, 6):
                with open(pod.path("var/run/argo/progress"), "a") as f:
                    f.write("%d/5\n" % k)
                time.sleep(0.3)
        else:
            time.sleep(0.3)
        pod.stage_param("/tmp/out.txt", "value\n")
        pod.finish("main", 0)
        rc = pod.wait_exit(15)
        if rc != 0:
            raise SystemExit("%s %d exited %d\n%s" % (scenario, i, rc, pod.log_text()))
    finally:
        pod.close()
    with api.cond:
        reqs = [r for r in api.requests[first_req:] if mine(r, pod)]
        conns = {cid for (_, cid, kind, text) in api.events[first_ev:] if kind == "tls" and "handshake ok" in text}
        conn_of_mine = {r.conn_id for r in reqs}
    c = collections.Counter(r.method for r in reqs)
    ok = collections.Counter(r.method for r in reqs if r.status is not None and r.status < 300)
    prog = sum(1 for r in reqs if r.method == "PATCH" and set((r.json or {}).keys()) == {"progress"})
    return {"POST": c["POST"], "PATCH": c["PATCH"], "GET": c["GET"], "attempts": len(reqs),
            "writes_ok": ok["POST"] + ok["PATCH"], "progress_patches": prog,
            "connections": len(conns & conn_of_mine)}


def measure(runs, bin_path):
    setup_bin(bin_path)
    tmp = tempfile.mkdtemp(prefix="argowait-bench-api-")
    out = {}
    try:
        with FakeApi(os.path.join(tmp, "api")) as api:
            for sc in ("plain", "progress", "faults"):
                out[sc] = [lifecycle(tmp, api, sc, i) for i in range(runs)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def spread(rows, key):
    vals = sorted({r[key] for r in rows})
    return "/".join(str(v) for v in vals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    args = ap.parse_args()
    out = measure(args.runs, args.bin)
    print("machine: %s" % machine())
    print("per lifecycle (values seen over %d runs each)" % args.runs)
    print("%-9s %5s %5s %4s %9s %10s %9s %12s" % ("scenario", "POST", "PATCH", "GET", "attempts", "writes ok",
                                                  "progress", "connections"))
    for sc, rows in out.items():
        print("%-9s %5s %5s %4s %9s %10s %9s %12s" % (sc, spread(rows, "POST"), spread(rows, "PATCH"),
                                                      spread(rows, "GET"), spread(rows, "attempts"),
                                                      spread(rows, "writes_ok"), spread(rows, "progress_patches"),
                                                      spread(rows, "connections")))
    return out


if __name__ == "__main__":
    main()
