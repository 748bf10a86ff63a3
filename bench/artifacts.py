#!/usr/bin/env python3
"""Artifacts: upload throughput and memory of a big multipart upload, and
tar+gzip throughput, by the real binary in whole lifecycles, each next to
the usual command-line tool on the same input in the same run.

    python3 bench/artifacts.py [--size-mib 1024] [--runs 3] [--bin build/argowait]
                               [--work DIR] [--keep-inputs] [--skip-upload] [--skip-tar]

(a) Upload. A staged .tgz of --size-mib (tar + gzip -1 of random bytes:
    incompressible) is the base-image artifact of a pod; argowait uploads it
    as a multipart upload (default 16 MiB parts, 4 in flight) in a whole
    lifecycle (fake API server, placeholder, exitcode, upload, final report).
    Figures: upload time from argowait's own log lines ("uploading output
    artifact" -> "saved to", ms resolution) -> MiB/s; exitcode written ->
    process exit; peak RSS (GNU time -v). Next to it: curl -T of the same
    file, one SigV4-signed PutObject (x-amz-content-sha256: UNSIGNED-PAYLOAD),
    curl's own time_total. Both against (1) moto_server and (2) a discard
    sink (a Python HTTP server that answers like S3 and drops every body),
    so that the ratio reflects the clients when moto is the bottleneck.
(b) tar+gzip. A folder of --size-mib (half random bytes, half text that
    gzip compresses about 4x, plus 2,000 4 KiB files) on a volume mount is
    the artifact (archive tar, default compression level); argowait tars and
    gzips it with libarchive, then uploads to the sink. Figure: exitcode
    written -> "uploading output artifact" log line (the staging step), next
    to `tar czf` of the same folder (GNU tar piping to gzip -6).

Runs are interleaved (argowait, curl, argowait, ...) so that load drift hits
both sides. The machine's load average is printed with every figure: on a
shared machine only the ratios mean something. Inputs are made once under
--work (default a temp folder) and removed at the end unless --keep-inputs."""

import argparse
import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from common import DEFAULT_BIN, machine, setup_bin, spawn, summary, wait4

from fakeapi import FakeApi
from harness import Pod, script_template

MIB = 1024 * 1024
BUCKET = "artifacts"


# ---------------------------------------------------------------------------
# the discard sink


class DiscardSink:
    """An HTTP/1.1 server on 127.0.0.1 that answers the S3 calls of an upload
    (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, PutObject,
    HeadBucket, AbortMultipartUpload) and reads every body into one reused
    buffer: nothing is stored, no signature is checked."""

    ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.bytes = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self._stop = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        pending = b""
        try:
            while True:
                while b"\r\n\r\n" not in pending:
                    piece = c.recv(65536)
                    if not piece:
                        return
                    pending += piece
                head, _, pending = pending.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                hdr = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdr[k.strip().lower()] = v.strip()
                left = int(hdr.get("content-length", "0"))
                if hdr.get("expect", "").lower() == "100-continue" and left:
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                take = min(left, len(pending))
                pending = pending[take:]
                left -= take
                got = take
                while left:
                    n = c.recv_into(view, min(left, len(buf)))
                    if not n:
                        return
                    left -= n
                    got += n
                with self._lock:
                    self.bytes += got
                    self.requests += 1
                body, extra = b"", ""
                status = "200 OK"
                query = {q.partition("=")[0] for q in target.partition("?")[2].split("&")}
                if method == "POST" and "uploads" in query:
                    body = (b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
                            b"<Bucket>b</Bucket><Key>k</Key><UploadId>sink-upload</UploadId>"
                            b"</InitiateMultipartUploadResult>")
                elif method == "POST":
                    body = (b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult>'
                            b"<ETag>&quot;00-1&quot;</ETag></CompleteMultipartUploadResult>")
                elif method == "PUT":
                    extra = "ETag: %s\r\n" % self.ETAG
                elif method == "DELETE":
                    status = "204 No Content"
                c.sendall(("HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n" % (status, extra, len(body))).encode()
                          + body)
        except OSError:
            pass
        finally:
            c.close()


# ---------------------------------------------------------------------------
# inputs


def make_tgz(path, size_mib):
    """tar + gzip -1 of size_mib MiB of random bytes (the gzip is incompressible data)."""
    if os.path.exists(path):
        return
    d = path + ".d"
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "payload.bin"), "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))
    tmp = path + ".part"
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(["tar", "cf", "-", "-C", d, "payload.bin"], stdout=subprocess.PIPE)
        subprocess.run(["gzip", "-1"], stdin=tar.stdout, stdout=out, check=True)
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    shutil.rmtree(d)
    os.rename(tmp, path)


def make_folder(path, size_mib):
    """Half random bytes (32 MiB files), half text gzip compresses ~4x (16 MiB
    files), plus 2,000 files of 4 KiB (8 MiB): size_mib in all."""
    done = os.path.join(path, ".complete")
    if os.path.exists(done):
        return
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(path, "random"))
    os.makedirs(os.path.join(path, "text"))
    os.makedirs(os.path.join(path, "small"))
    import random
    rng = random.Random(5)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    lines = []
    n = 0
    while n < 4 * MIB:
        line = "%s level=%s msg=\"%s\" n=%d\n" % (
            "2026-11-22T17:%02d:%02d.%03dZ" % (rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999)),
            rng.choice(["info", "debug", "warning"]), " ".join(rng.choice(words) for _ in range(10)),
            rng.randint(0, 10 ** 6))
        lines.append(line)
        n += len(line)
    text = "".join(lines).encode()[: 4 * MIB]
    small_total = 2000 * 4096
    half = (size_mib * MIB - small_total) // 2
    i = 0
    left = half
    while left > 0:
        k = min(left, 32 * MIB)
        with open(os.path.join(path, "random", "r%03d.bin" % i), "wb") as f:
            for _ in range(k // MIB):
                f.write(os.urandom(MIB))
            f.write(os.urandom(k % MIB))
        left -= k
        i += 1
    i = 0
    left = half
    while left > 0:
        k = min(left, 16 * MIB)
        with open(os.path.join(path, "text", "t%03d.log" % i), "wb") as f:
            w = 0
            while w < k:
                piece = text[: min(len(text), k - w)]
                f.write(piece)
                w += len(piece)
        left -= k
        i += 1
    for j in range(2000):
        with open(os.path.join(path, "small", "s%04d.txt" % j), "wb") as f:
            f.write((words[j % len(words)] + " ").encode() * (4096 // (len(words[j % len(words)]) + 1))
                    + b"\n" * (4096 - (4096 // (len(words[j % len(words)]) + 1)) * (len(words[j % len(words)]) + 1)))
    open(done, "w").close()


def folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# ---------------------------------------------------------------------------
# argowait in a lifecycle

_TS = re.compile(r'time="([0-9T:.\-]+)Z"')


def log_time(line):
    m = _TS.search(line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def first_line(lines, needle):
    for line in lines:
        if needle in line:
            return line
    raise SystemExit("no log line with %r:\n%s" % (needle, "\n".join(lines[-20:])))


def location(endpoint, key, moto=None):
    return {"s3": {"bucket": BUCKET, "endpoint": endpoint, "insecure": True, "key": key,
                   "accessKeySecret": {"name": "cred", "key": "accesskey"},
                   "secretKeySecret": {"name": "cred", "key": "secretkey"}}}


def gnu_time(path):
    """Peak RSS (MiB) and CPU user+sys (s) from a GNU time -v report."""
    with open(path) as f:
        text = f.read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024.0
    cpu = sum(float(re.search(r"%s time \(seconds\): ([0-9.]+)" % k, text).group(1)) for k in ("User", "System"))
    return rss, cpu


def lifecycle(tmp, api, name, template, creds, prepare, timeout=1800, wrap=(), env=None):
    """Runs one lifecycle under GNU time (itself under ``wrap``, e.g. perf
    record); returns a dict of figures."""
    pod = Pod(os.path.join(tmp, name), api, template=template, env=env)
    pod.secret_file("cred", "accesskey", creds[0])
    pod.secret_file("cred", "secretkey", creds[1])
    prepare(pod)
    tfile = os.path.join(tmp, name + ".time")
    proc = spawn(pod, args=("wait", "--loglevel", "debug"), prefix=(*wrap, "/usr/bin/time", "-v", "-o", tfile))
    try:
        api.wait_for(lambda r: r.method == "POST" and r.json["metadata"]["name"] == pod.node_id, timeout=60)
        t0 = time.time()
        m0 = time.monotonic()
        pod.finish("main", 0)
        rc, _, t_exit = wait4(proc, timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    lines = pod.logs()
    if rc != 0:
        raise SystemExit("%s exited %d:\n%s" % (name, rc, "\n".join(lines[-30:])))
    rss, cpu = gnu_time(tfile)
    up = log_time(first_line(lines, 'msg="uploading output artifact'))
    saved_line = first_line(lines, 'saved to s3://')
    saved = log_time(saved_line)
    m = re.search(r"saved to s3://\S+ \((\d+) bytes", saved_line)
    parts = [log_time(line) for line in lines if 'msg="UploadPart ' in line and " -> 200 " in line]
    shutil.rmtree(pod.dir, ignore_errors=True)
    return {"exit_s": t_exit - m0, "stage_s": up - t0, "upload_s": saved - up, "rss_mib": rss, "cpu_s": cpu,
            "parts_s": (max(parts) - up) if parts else None, "bytes": int(m.group(1)) if m else None,
            "load": os.getloadavg()[0]}


def upload_template(endpoint, key):
    art = {"name": "big", "path": "/tmp/big"}
    return script_template(artifacts=[art], archiveLocation=dict(location(endpoint, key), archiveLogs=False))


def tar_template(endpoint, key):
    art = {"name": "big", "path": "/data/folder"}
    return script_template(artifacts=[art], volume_mounts=[{"name": "data", "mountPath": "/data"}],
                           archiveLocation=dict(location(endpoint, key), archiveLogs=False))


def curl_put(path, endpoint, key, creds):
    """curl -T: one SigV4 PutObject; returns (seconds by curl, peak RSS MiB)."""
    tfile = path + ".curltime"
    out = subprocess.run(
        ["/usr/bin/time", "-v", "-o", tfile, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
         "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "%s:%s" % creds,
         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", path,
         "http://%s/%s/%s" % (endpoint, BUCKET, key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=3600)
    code, secs = out.stdout.split()
    if code != "200":
        raise SystemExit("curl: HTTP %s %s" % (code, out.stderr))
    rss, cpu = gnu_time(tfile)
    os.unlink(tfile)
    return float(secs), rss, cpu


def tar_czf(src_parent, name, out):
    """tar czf (GNU tar piping to gzip -6): seconds, CPU of both (s)."""
    tfile = out + ".time"
    t0 = time.monotonic()
    subprocess.run(["/usr/bin/time", "-v", "-o", tfile, "tar", "czf", out, "-C", src_parent, name], check=True)
    secs = time.monotonic() - t0
    _, cpu = gnu_time(tfile)
    os.unlink(tfile)
    return secs, cpu


# ---------------------------------------------------------------------------


def measure(size_mib, runs, bin_path, work=None, keep_inputs=False, upload=True, tar=True, log=print,
            targets=("moto", "sink")):
    setup_bin(bin_path)
    own_work = work is None
    work = work or tempfile.mkdtemp(prefix="argowait-bench-art-")
    os.makedirs(work, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="run-", dir=work)
    res = {"size_mib": size_mib, "runs": runs, "load_start": os.getloadavg()}
    moto = sink = None
    try:
        with FakeApi(os.path.join(tmp, "api")) as api:
            sink = DiscardSink()
            sink_ep = "127.0.0.1:%d" % sink.port
            fake = ("AKIASINK", "sink-secret")
            moto_ep = creds = None
            if upload and "moto" in targets:
                from test_s3 import Moto
                moto = Moto()
                moto_ep = "127.0.0.1:%d" % moto.port
                creds = (moto.access_key, moto.secret_key)
            if upload:
                tgz = os.path.join(work, "staged-%d.tgz" % size_mib)
                t = time.monotonic()
                make_tgz(tgz, size_mib)
                log("input: %s, %d bytes (made in %.0f s)" % (tgz, os.path.getsize(tgz), time.monotonic() - t))
                res["tgz_bytes"] = os.path.getsize(tgz)

                def stage(pod):
                    dst = pod.path("var/run/argo/outputs/artifacts/tmp/big.tgz")
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    os.link(tgz, dst)

                for target in targets:
                    ep, cr = (moto_ep, creds) if target == "moto" else (sink_ep, fake)
                    aw, cu = [], []
                    for i in range(runs):
                        key = "bench/%s-aw" % target
                        r = lifecycle(tmp, api, "%s-aw%d" % (target, i), upload_template(ep, key), cr, stage)
                        r["mib_s"] = res["tgz_bytes"] / MIB / r["upload_s"]
                        aw.append(r)
                        log("argowait -> %s run %d: upload %.2f s = %.1f MiB/s (parts done after %.2f s), "
                            "exitcode->exit %.2f s, CPU %.2f s, peak RSS %.2f MiB, load %.1f"
                            % (target, i, r["upload_s"], r["mib_s"], r["parts_s"] or 0, r["exit_s"], r["cpu_s"],
                               r["rss_mib"], r["load"]))
                        if moto and target == "moto":
                            moto.s3.delete_object(Bucket=BUCKET, Key=key + "/big.tgz")
                        secs, rss, cpu = curl_put(tgz, ep, "bench/%s-curl.tgz" % target, cr)
                        c = {"secs": secs, "mib_s": res["tgz_bytes"] / MIB / secs, "rss_mib": rss, "cpu_s": cpu,
                             "load": os.getloadavg()[0]}
                        cu.append(c)
                        log("curl -T   -> %s run %d: %.2f s = %.1f MiB/s, CPU %.2f s, peak RSS %.2f MiB, load %.1f"
                            % (target, i, secs, c["mib_s"], cpu, rss, c["load"]))
                        if moto and target == "moto":
                            moto.s3.delete_object(Bucket=BUCKET, Key="bench/%s-curl.tgz" % target)
                    res["upload_" + target] = {"argowait": aw, "curl": cu}
                if not keep_inputs:
                    os.unlink(tgz)
            if tar:
                folder_parent = os.path.join(work, "folder-%d" % size_mib)
                folder = os.path.join(folder_parent, "folder")
                t = time.monotonic()
                make_folder(folder, size_mib)
                res["folder_bytes"] = folder_bytes(folder)
                log("input: %s, %d bytes in %d files (made in %.0f s)" % (
                    folder, res["folder_bytes"], sum(len(f) for _, _, f in os.walk(folder)), time.monotonic() - t))

                def mount(pod):
                    dst = pod.path("mainctrfs/data")
                    os.makedirs(dst, exist_ok=True)
                    # (no bind mount here: the tree is hard-linked, not copied)
                    shutil.copytree(folder, os.path.join(dst, "folder"), copy_function=os.link)

                aw, gt = [], []
                for i in range(runs):
                    r = lifecycle(tmp, api, "tar-aw%d" % i, tar_template(sink_ep, "bench/tar"), fake, mount)
                    r["mib_s"] = res["folder_bytes"] / MIB / r["stage_s"]
                    aw.append(r)
                    log("argowait tar+gzip run %d: %.2f s = %.1f MiB/s (upload to the sink %.2f s), CPU %.2f s, "
                        "peak RSS %.2f MiB, load %.1f" % (i, r["stage_s"], r["mib_s"], r["upload_s"], r["cpu_s"],
                                                         r["rss_mib"], r["load"]))
                    out = os.path.join(tmp, "gnutar.tgz")
                    secs, cpu = tar_czf(folder_parent, "folder", out)
                    g = {"secs": secs, "mib_s": res["folder_bytes"] / MIB / secs, "out_bytes": os.path.getsize(out),
                         "cpu_s": cpu, "load": os.getloadavg()[0]}
                    os.unlink(out)
                    gt.append(g)
                    log("tar czf           run %d: %.2f s = %.1f MiB/s, CPU %.2f s, %d bytes out, load %.1f"
                        % (i, secs, g["mib_s"], cpu, g["out_bytes"], g["load"]))
                res["tar"] = {"argowait": aw, "gnutar": gt}
                if not keep_inputs:
                    shutil.rmtree(folder_parent, ignore_errors=True)
    finally:
        if moto:
            moto.stop()
        if sink:
            sink.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if own_work and not keep_inputs:
            shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = os.getloadavg()
    return res


def mmm(values, prec=1):
    s = summary(values)
    f = "%%.%df" % prec
    return (f + " / " + f + " / " + f) % (s["min"], s["median"], s["max"])


def report(res):
    out = []
    out.append("machine: %s" % machine())
    out.append("load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f" % (*res["load_start"], *res["load_end"]))
    out.append("size %d MiB, %d runs; figures min / median / max" % (res["size_mib"], res["runs"]))
    for target in ("moto", "sink"):
        u = res.get("upload_" + target)
        if not u:
            continue
        a, c = u["argowait"], u["curl"]
        aw = [r["mib_s"] for r in a]
        cu = [r["mib_s"] for r in c]
        out.append("upload to %s: argowait %s MiB/s (upload %s s, of which parts %s s; exitcode->exit %s s); "
                   "CPU %s s; peak RSS %s MiB"
                   % (target, mmm(aw), mmm([r["upload_s"] for r in a], 2), mmm([r["parts_s"] for r in a], 2),
                      mmm([r["exit_s"] for r in a], 2), mmm([r["cpu_s"] for r in a], 2),
                      mmm([r["rss_mib"] for r in a], 2)))
        out.append("upload to %s: curl -T  %s MiB/s (%s s); CPU %s s; peak RSS %s MiB"
                   % (target, mmm(cu), mmm([r["secs"] for r in c], 2), mmm([r["cpu_s"] for r in c], 2),
                      mmm([r["rss_mib"] for r in c], 2)))
        out.append("upload to %s: ratio argowait/curl (medians) %.2f" % (target, summary(aw)["median"] / summary(cu)["median"]))
    t = res.get("tar")
    if t:
        a, g = t["argowait"], t["gnutar"]
        aw = [r["mib_s"] for r in a]
        gt = [r["mib_s"] for r in g]
        out.append("tar+gzip of %d bytes: argowait %s MiB/s (%s s); CPU of the lifecycle %s s; peak RSS %s MiB; "
                   "%s bytes out" % (res["folder_bytes"], mmm(aw), mmm([r["stage_s"] for r in a], 2),
                                     mmm([r["cpu_s"] for r in a], 2), mmm([r["rss_mib"] for r in a], 2), a[0]["bytes"]))
        out.append("tar+gzip: tar czf  %s MiB/s (%s s); CPU of tar and gzip %s s; %d bytes out" % (
            mmm(gt), mmm([r["secs"] for r in g], 2), mmm([r["cpu_s"] for r in g], 2), g[0]["out_bytes"]))
        out.append("tar+gzip: ratio argowait/tar (medians) %.2f; CPU ratio tar/argowait (medians) %.2f" % (
            summary(aw)["median"] / summary(gt)["median"],
            summary([r["cpu_s"] for r in g])["median"] / summary([r["cpu_s"] for r in a])["median"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--work", default=None, help="folder for the inputs (default: a temp folder)")
    ap.add_argument("--keep-inputs", action="store_true")
    ap.add_argument("--skip-upload", action="store_true")
    ap.add_argument("--skip-tar", action="store_true")
    ap.add_argument("--targets", default="moto,sink", help="upload targets, of moto and sink")
    args = ap.parse_args()
    res = measure(args.size_mib, args.runs, args.bin, args.work, args.keep_inputs,
                  upload=not args.skip_upload, tar=not args.skip_tar, log=lambda s: print(s, flush=True),
                  targets=tuple(args.targets.split(",")))
    print(report(res))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
