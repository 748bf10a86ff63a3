#!/usr/bin/env python3
"""Footprint of one whole lifecycle: peak RSS and CPU time (os.wait4 rusage),
RSS/PSS split during the idle wait (/proc/PID/smaps_rollup), a cross-check
with GNU time, and under valgrind: massif peak heap and callgrind
instruction count.

    python3 bench/footprint.py [--runs N] [--idle S] [--valgrind-runs N] [--bin build/argowait]

A lifecycle: start -> placeholder POST -> idle wait of --idle seconds (main
"running") -> stdout, a staged parameter and the exitcode written -> final
PATCH -> exit 0. The fake API server runs in this process, on loopback."""

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

from common import DEFAULT_BIN, PARAMS, fmt_summary, machine, setup_bin, smaps_rollup, spawn, summary, wait4

from fakeapi import FakeApi
from harness import Pod, script_template


def lifecycle(tmp, api, name, idle, prefix=(), timeout=60):
    pod = Pod(os.path.join(tmp, name), api, template=script_template(PARAMS), include_script_output=True)
    proc = spawn(pod, prefix=prefix)
    try:
        api.wait_for(lambda r: r.method == "POST" and r.json["metadata"]["name"] == pod.node_id,
                     timeout=timeout)
        time.sleep(idle)
        smaps = smaps_rollup(proc.pid) if not prefix else {}
        pod.write_stdout("main", "result\n")
        pod.stage_param("/tmp/out.txt", "value\n")
        pod.finish("main", 0)
        rc, ru, _ = wait4(proc, timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        raise SystemExit("%s exited %d:\n%s" % (name, rc, pod.log_text()))
    return ru, smaps, pod


def gnu_time(tmp, api, idle, i):
    """Peak RSS in kB from GNU time -v. (ru_maxrss of a child forked by this
    Python process is useless: Linux carries the pre-exec high-water mark of
    the forked Python image over exec, so it reads ~27 MiB whatever runs.)"""
    out = os.path.join(tmp, "time%d.txt" % i)
    lifecycle(tmp, api, "gnutime%d" % i, idle, prefix=("/usr/bin/time", "-v", "-o", out))
    with open(out) as f:
        text = f.read()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1))


def massif(tmp, api):
    out = os.path.join(tmp, "massif.out")
    lifecycle(tmp, api, "massif", 0.5, prefix=("valgrind", "--tool=massif", "--massif-out-file=" + out))
    peak = 0
    heap = extra = 0
    with open(out) as f:
        for line in f:
            if line.startswith("mem_heap_B="):
                heap = int(line.split("=")[1])
            elif line.startswith("mem_heap_extra_B="):
                extra = int(line.split("=")[1])
                peak = max(peak, heap + extra)
    ms = subprocess.run(["ms_print", out], stdout=subprocess.PIPE, text=True).stdout
    return peak, ms


def callgrind(tmp, api, i):
    out = os.path.join(tmp, "callgrind.%d.out" % i)
    lifecycle(tmp, api, "callgrind%d" % i, 0.5,
              prefix=("valgrind", "--tool=callgrind", "--callgrind-out-file=" + out))
    with open(out) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1]), out
    raise SystemExit("no totals in " + out)


def baseline(bin_path, runs):
    """CPU (ms) and page faults of ``argowait version`` (load the 35 shared
    libraries, print, exit): the process start-up floor of any lifecycle."""
    cpu, flt = [], []
    for _ in range(runs):
        p = subprocess.Popen([bin_path, "version"], stdout=subprocess.DEVNULL)
        _, ru, _ = wait4(p, 10)
        cpu.append((ru.ru_utime + ru.ru_stime) * 1000.0)
        flt.append(ru.ru_minflt)
    return cpu, flt


def measure(runs, idle, valgrind_runs, bin_path, keep=None):
    setup_bin(bin_path)
    tmp = tempfile.mkdtemp(prefix="argowait-bench-fp-")
    res = {}
    try:
        with FakeApi(os.path.join(tmp, "api")) as api:
            cpu, smaps = [], []
            for i in range(runs):
                ru, sm, _ = lifecycle(tmp, api, "run%d" % i, idle)
                cpu.append((ru.ru_utime + ru.ru_stime) * 1000.0)
                smaps.append(sm)
            res["cpu_ms"] = cpu
            res["version_cpu_ms"], res["version_faults"] = baseline(os.environ["ARGOWAIT_BIN"], max(runs, 10))
            res["smaps_kb"] = smaps
            res["rss_mib"] = [gnu_time(tmp, api, idle, i) / 1024.0 for i in range(runs)]
            if valgrind_runs:
                res["massif_peak_b"], res["ms_print"] = massif(tmp, api)
                irs = []
                for i in range(valgrind_runs):
                    ir, out = callgrind(tmp, api, i)
                    irs.append(ir)
                res["callgrind_ir"] = irs
                if keep:
                    shutil.copy(out, os.path.join(keep, "callgrind.out"))
                    with open(os.path.join(keep, "ms_print.txt"), "w") as f:
                        f.write(res["ms_print"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--valgrind-runs", type=int, default=3)
    ap.add_argument("--keep", default=None, help="copy callgrind.out and ms_print.txt into this folder")
    ap.add_argument("--bin", default=DEFAULT_BIN)
    args = ap.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    r = measure(args.runs, args.idle, args.valgrind_runs, args.bin, args.keep)
    print("machine: %s" % machine())
    print("lifecycle with an idle wait of %.1f s, %d runs" % (args.idle, args.runs))
    print("peak RSS (GNU time -v): %s" % fmt_summary(r["rss_mib"], "MiB"))
    print("CPU user+sys (wait4):   %s" % fmt_summary(r["cpu_ms"], "ms", 1))
    print("  of which start-up: CPU of `argowait version`: %s; minor faults median %d"
          % (fmt_summary(r["version_cpu_ms"], "ms", 1), sorted(r["version_faults"])[len(r["version_faults"]) // 2]))
    for key, label in (("Rss", "Rss"), ("Anonymous", "Anonymous"), ("Pss", "Pss")):
        print("idle wait %-10s     %s" % (label, fmt_summary([m.get(key, 0) / 1024.0 for m in r["smaps_kb"]],
                                                          "MiB")))
    print("idle wait USS (Private_Clean+Private_Dirty): %s" % fmt_summary(
        [(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)) / 1024.0 for m in r["smaps_kb"]], "MiB"))
    if "massif_peak_b" in r:
        print("massif peak heap (heap + allocator overhead): %.1f KiB" % (r["massif_peak_b"] / 1024.0))
        irs = r["callgrind_ir"]
        print("callgrind instructions per lifecycle: min %d  median %d  max %d (%d runs)"
              % (min(irs), sorted(irs)[len(irs) // 2], max(irs), len(irs)))
    return r


if __name__ == "__main__":
    main()
