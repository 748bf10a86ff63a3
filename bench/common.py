"""Shared helpers of the benchmark scripts (no third-party modules)."""

import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

DEFAULT_BIN = os.path.join(REPO, "build", "argowait")
PARAMS = [{"name": "out", "valueFrom": {"path": "/tmp/out.txt"}}]


def percentile(values, p):
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values):
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "p99": percentile(values, 99), "max": max(values)}


def fmt_summary(values, unit="ms", prec=2):
    s = summary(values)
    f = "%%.%df" % prec
    return ("n %d  min " + f + "  median " + f + "  p99 " + f + "  max " + f + " %s") % (
        s["n"], s["min"], s["median"], s["p99"], s["max"], unit)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return "%d cores (%s), %.0f GiB, %s" % (os.cpu_count(), cpu, mem, platform.platform())


def setup_bin(path):
    os.environ["ARGOWAIT_BIN"] = os.path.abspath(path)
    return os.environ["ARGOWAIT_BIN"]


def spawn(pod, args=("wait", "--loglevel", "info"), prefix=()):
    """Start argowait for ``pod`` without the harness's reaper thread, so that
    the caller can reap it with os.wait4 (rusage). Returns the Popen."""
    pod.stdout_path = os.path.join(pod.dir, "stdout.txt")
    pod.stderr_path = os.path.join(pod.dir, "stderr.txt")
    out = open(pod.stdout_path, "wb")
    err = open(pod.stderr_path, "wb")
    try:
        pod.t_start = time.monotonic()
        return subprocess.Popen([*prefix, pod.bin, *args], env=pod.env, cwd=pod.dir,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, umask=pod.umask)
    finally:
        out.close()
        err.close()


def wait4(proc, timeout):
    """Reap ``proc`` with os.wait4; returns (exit status, rusage, t_exit).
    Kills it when it outlives ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            t = time.monotonic()
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru, t
        if time.monotonic() > deadline:
            proc.kill()
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise TimeoutError("argowait pid %d still running after %.1f s" % (proc.pid, timeout))
        time.sleep(0.0005)


def smaps_rollup(pid):
    """kB figures of /proc/PID/smaps_rollup (Rss, Pss, Anonymous, ...)."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out
