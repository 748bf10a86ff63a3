#!/usr/bin/env python3
"""Scale: N argowait processes at once against one fake API server that
throttles (token bucket; beyond it 429 TooManyRequests, Retry-After: 1).

    python3 bench/scale.py [--n 1000] [--rate 200] [--burst 100] [--bin build/argowait]

Phases: start all N as fast as possible (each POSTs its placeholder); wait
until every placeholder is stored and sample memory (sum of RSS, PSS and USS
over the N processes, and the drop in MemAvailable); write every exitcode at
once (t0 per pod) and wait for every process to exit. Figures: total memory,
requests by kind and status, time to finalize (t0 -> the 200 answer to the
final PATCH was received... i.e. the request that succeeded was fully read)
and to exit, and a histogram of requests over time (attempts per 250 ms,
with how many were throttled) to show whether retries spread out or come in
waves. Bounded: --timeout seconds for everything (default 300), then the
rest is killed."""

import argparse
import collections
import os
import re
import resource
import shutil
import tempfile
import threading
import time

from common import DEFAULT_BIN, PARAMS, fmt_summary, machine, setup_bin, smaps_rollup, spawn, summary

from fakeapi import FakeApi
from harness import Pod, script_template


def meminfo(key="MemAvailable"):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Reaper(threading.Thread):
    """One thread that reaps every child with os.wait4(-1)."""

    def __init__(self, expected):
        super().__init__(daemon=True, name="reaper")
        self.expected = expected
        self.done = {}                     # pid -> (t_exit, exit code, rusage)
        self.cond = threading.Condition()
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                pid, status, ru = os.wait4(-1, 0)
            except ChildProcessError:
                time.sleep(0.01)
                continue
            t = time.monotonic()
            with self.cond:
                self.done[pid] = (t, os.waitstatus_to_exitcode(status), ru)
                self.cond.notify_all()

    def wait_all(self, pids, deadline):
        with self.cond:
            while not all(p in self.done for p in pids):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True


def histogram(reqs, t_base, bin_s, width=50):
    if not reqs:
        return []
    last = max(r.t_recv for r in reqs)
    nbins = int((last - t_base) / bin_s) + 1
    tot = [0] * nbins
    thr = [0] * nbins
    for r in reqs:
        k = int((r.t_recv - t_base) / bin_s)
        if 0 <= k < nbins:
            tot[k] += 1
            thr[k] += 1 if r.throttled else 0
    peak = max(tot) or 1
    lines = ["%8s %6s %6s  %s" % ("t (s)", "reqs", "429", "# = answered, x = 429 (scaled to the peak bin)")]
    for k in range(nbins):
        okn = tot[k] - thr[k]
        a = int(round(okn * width / peak))
        b = int(round(thr[k] * width / peak))
        lines.append("%8.2f %6d %6d  %s" % (k * bin_s, tot[k], thr[k], "#" * a + "x" * b))
    return lines


def norm_log(line):
    m = re.search(r'level=(\w+) msg="(.*?)"(?: |$)', line)
    if not m:
        return None
    msg = re.sub(r"\d+", "N", m.group(2))
    msg = re.sub(r"/workflowtaskresults/[^ ]+", "/workflowtaskresults/NAME", msg)
    return m.group(1), msg


def measure(n, rate, burst, retry_after, bin_path, timeout, bin_s=0.25, keep_logs=False):
    setup_bin(bin_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * n + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        raise SystemExit("RLIMIT_NOFILE %d is below the %d this N needs" % (soft, need))
    tmp = tempfile.mkdtemp(prefix="argowait-bench-scale-")
    deadline = time.monotonic() + timeout
    res = {"n": n, "rate": rate, "burst": burst, "retry_after": retry_after}
    procs = {}
    reaper = Reaper(n)
    try:
        with FakeApi(os.path.join(tmp, "api"), backlog=min(4096, max(64, n))) as api:
            bucket = api.throttle(rate, burst, retry_after=retry_after, methods={"POST", "PATCH", "GET"})
            # unique names: the harness's default (5 random hex digits) collides at this N
            pods = [Pod(os.path.join(tmp, "p%04d" % i), api, template=script_template(PARAMS),
                        workflow="wf-scale-%05d" % i, node_id="wf-scale-%05d-%d" % (i, 1000000000 + i),
                        include_script_output=True, grace=30) for i in range(n)]
            for p in pods:
                p.write_stdout("main", "result\n")
                p.stage_param("/tmp/out.txt", "value\n")
                p.ctr_dir("main")
            mem0 = meminfo()
            reaper.start()
            t_base = time.monotonic()
            for p in pods:
                procs[p] = spawn(p)
            res["spawn_s"] = time.monotonic() - t_base
            names = {p.node_id for p in pods}

            def all_placeholders():
                return sum(1 for (ns, name) in api.objects if name in names) >= n

            try:
                api.wait_until(all_placeholders, timeout=max(1, deadline - time.monotonic()))
            except TimeoutError:
                res["error"] = "not every placeholder stored in time"
            t_ph = time.monotonic()
            res["placeholders_s"] = t_ph - t_base
            time.sleep(1.0)   # every process idle in its wait
            mem1 = meminfo()
            sm = [smaps_rollup(pr.pid) for pr in procs.values()]
            sm = [m for m in sm if m]
            res["sampled"] = len(sm)
            res["sum_rss_mib"] = sum(m.get("Rss", 0) for m in sm) / 1024.0
            res["sum_pss_mib"] = sum(m.get("Pss", 0) for m in sm) / 1024.0
            res["sum_uss_mib"] = sum(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) for m in sm) / 1024.0
            res["memavailable_drop_mib"] = (mem0 - mem1) / 1024.0
            res["server_rss_mib"] = smaps_rollup(os.getpid()).get("Rss", 0) / 1024.0
            with api.cond:
                first_phase = len(api.requests)
            t0 = {}
            t_exit_phase = time.monotonic()
            for p in pods:
                t0[p.node_id] = time.monotonic()
                p.finish("main", 0)
            res["finish_write_s"] = time.monotonic() - t_exit_phase
            ok = reaper.wait_all([pr.pid for pr in procs.values()], deadline)
            if not ok:
                res["error"] = "not every process exited in time"
            time.sleep(0.2)
            with api.cond:
                reqs = list(api.requests)
            res["requests_total"] = len(reqs)
            res["by_kind"] = dict(collections.Counter(
                (r.method, r.status if r.status is not None else "none") for r in reqs))
            res["throttled"] = bucket.refused
            res["connections"] = sum(1 for e in api.events if e[2] == "tls" and "handshake ok" in e[3])
            res["handshake_failures"] = sum(1 for e in api.events if e[2] == "tls" and "handshake failed" in e[3])
            # per pod: placeholder and finalize times
            final_ok = {}
            ph_ok = {}
            for r in reqs:
                if r.status == 200 and r.method == "PATCH":
                    name = r.path.rsplit("/", 1)[-1]
                    final_ok.setdefault(name, r.t_recv)
                if r.method == "POST" and r.status in (201, 409) and r.json:
                    ph_ok.setdefault(r.json["metadata"]["name"], r.t_recv)
            start = {p.node_id: p.t_start for p in pods}
            res["placeholder_ms"] = [(ph_ok[k] - start[k]) * 1000.0 for k in ph_ok if k in start]
            res["finalize_ms"] = [(final_ok[k] - t0[k]) * 1000.0 for k in final_ok if k in t0]
            exits = []
            codes = collections.Counter()
            cpu = []
            for p, pr in procs.items():
                d = reaper.done.get(pr.pid)
                if d:
                    exits.append((d[0] - t0[p.node_id]) * 1000.0)
                    codes[d[1]] += 1
                    cpu.append((d[2].ru_utime + d[2].ru_stime) * 1000.0)
            res["exit_ms"] = exits
            res["exit_codes"] = dict(codes)
            res["cpu_ms"] = cpu
            # retry spacing: a 429 answer sent -> the same pod's next attempt of the same kind
            by_pod = collections.defaultdict(list)
            for r in reqs:
                name = r.json["metadata"]["name"] if r.method == "POST" and r.json else r.path.rsplit("/", 1)[-1]
                by_pod[(name, r.method)].append(r)
            gaps = []
            for lst in by_pod.values():
                for a, b in zip(lst, lst[1:]):
                    if a.throttled and a.t_sent is not None:
                        gaps.append((b.t_recv - a.t_sent) * 1000.0)
            res["retry_gap_ms"] = gaps
            res["attempts_per_pod"] = dict(collections.Counter(
                sum(len(v) for (nm, _), v in by_pod.items() if nm == p.node_id) for p in pods))
            res["hist_start"] = histogram(reqs[:first_phase], t_base, bin_s)
            res["hist_finish"] = histogram(reqs[first_phase:], t_exit_phase, bin_s)
            # logs
            levels = collections.Counter()
            msgs = collections.Counter()
            for p in pods:
                for line in p.logs():
                    k = norm_log(line)
                    if k and k[0] in ("warning", "warn", "error", "fatal"):
                        levels[k[0]] += 1
                        msgs[k] += 1
            res["log_levels"] = dict(levels)
            res["log_top"] = msgs.most_common(6)
    finally:
        for pr in procs.values():
            if pr.pid not in reaper.done:
                try:
                    pr.kill()
                except OSError:
                    pass
        reaper.wait_all([pr.pid for pr in procs.values()], time.monotonic() + 10)
        reaper.stop = True
        if not keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def report(r):
    lines = ["N %d, throttle %g req/s burst %d, Retry-After %s s" % (r["n"], r["rate"], r["burst"],
                                                                     r["retry_after"])]
    if "error" in r:
        lines.append("ERROR: %s" % r["error"])
    lines.append("spawn all: %.2f s; all placeholders stored after %.2f s; exitcodes written in %.3f s"
                 % (r["spawn_s"], r["placeholders_s"], r["finish_write_s"]))
    lines.append("memory while idle (%d processes sampled): sum RSS %.0f MiB, sum PSS %.0f MiB, sum USS %.0f MiB, "
                 "MemAvailable drop %.0f MiB; fake server (python) RSS %.0f MiB"
                 % (r["sampled"], r["sum_rss_mib"], r["sum_pss_mib"], r["sum_uss_mib"],
                    r["memavailable_drop_mib"], r["server_rss_mib"]))
    kinds = ", ".join("%s %s: %d" % (m, s, c) for (m, s), c in sorted(r["by_kind"].items(), key=str))
    lines.append("requests: %d total (%.2f per pod); %s; TLS connections %d (handshake failures %d)"
                 % (r["requests_total"], r["requests_total"] / float(r["n"]), kinds, r["connections"],
                    r["handshake_failures"]))
    lines.append("attempts per pod -> pods: %s" % ", ".join("%d: %d" % kv for kv in sorted(r["attempts_per_pod"].items())))
    lines.append("exit codes: %s" % r["exit_codes"])
    if r["placeholder_ms"]:
        lines.append("start -> placeholder stored: %s" % fmt_summary(r["placeholder_ms"], "ms", 0))
    if r["finalize_ms"]:
        lines.append("exitcode -> final PATCH 200:  %s" % fmt_summary(r["finalize_ms"], "ms", 0))
    if r["exit_ms"]:
        lines.append("exitcode -> process exit:    %s" % fmt_summary(r["exit_ms"], "ms", 0))
    if r["cpu_ms"]:
        lines.append("CPU per process (user+sys):  %s" % fmt_summary(r["cpu_ms"], "ms", 1))
    if r["retry_gap_ms"]:
        lines.append("429 answer -> next attempt:  %s" % fmt_summary(r["retry_gap_ms"], "ms", 0))
    lines.append("warn/error log lines: %s" % (r["log_levels"] or "none"))
    for (lvl, msg), c in r["log_top"]:
        lines.append("  %5d x %s: %s" % (c, lvl, msg[:150]))
    lines.append("requests over time, start phase (t from the first spawn):")
    lines += ["  " + x for x in r["hist_start"]]
    lines.append("requests over time, finish phase (t from the first exitcode write):")
    lines += ["  " + x for x in r["hist_finish"]]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--retry-after", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--bin-width", type=float, default=0.25)
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--bin", default=DEFAULT_BIN)
    args = ap.parse_args()
    r = measure(args.n, args.rate, args.burst, args.retry_after, args.bin, args.timeout, args.bin_width,
                args.keep_logs)
    print("machine: %s" % machine())
    print(report(r))
    return r


if __name__ == "__main__":
    main()
