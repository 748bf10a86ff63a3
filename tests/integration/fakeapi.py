#!/usr/bin/env python3
"""A fake Kubernetes API server for WorkflowTaskResults, over real HTTPS.

Used by the integration tests (``with FakeApi(tmpdir) as api:``) and by the
README demo (``python3 fakeapi.py --dir D [--port P]``).

What it does:
  * makes a throwaway CA and a server certificate with the ``openssl`` CLI
    (``make_pki``), and serves HTTP/1.1 with keep-alive over TLS on 127.0.0.1;
  * serves ``POST``/``PATCH``/``GET``/``DELETE`` of
    ``/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflowtaskresults[/{name}]``
    with Kubernetes semantics (201/409 AlreadyExists, RFC 7386 merge patch,
    404 NotFound, 415, 422 Invalid against the CRD schema, 400 for bad JSON,
    401 for a token that is not in ``accepted_tokens``);
  * records every request (``requests``, ``wait_for``, ``wait_count``);
  * injects faults (``add_fault``): status answers, TCP reset, hang, a
    half-sent body, a slow body, garbage, a delayed answer, and a close during
    the TLS handshake; ``down()``/``up()`` take the whole server off the port
    and back on the same port;
  * throttles like an overloaded API server when asked (``throttle``): a
    token bucket; a request beyond it gets 429 TooManyRequests with
    ``Retry-After`` (off by default).

Only the Python standard library and PyYAML are used.
"""

import argparse
import copy
import datetime
import http.server
import json
import os
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid

import crdcheck

GROUP = "argoproj.io"
VERSION = "v1alpha1"
API_VERSION = GROUP + "/" + VERSION
KIND = "WorkflowTaskResult"
PLURAL = "workflowtaskresults"
RESOURCE = PLURAL + "." + GROUP

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CRD = os.environ.get("ARGOWAIT_CRD") or os.path.normpath(
    os.path.join(HERE, "..", "fixtures", "crds", "argoproj.io_workflowtaskresults.yaml"))

_ROUTE = re.compile(r"^/apis/argoproj\.io/v1alpha1/namespaces/([^/]+)/workflowtaskresults(?:/([^/]+))?/?$")

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Gone",
    413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 502: "BadGateway",
    503: "ServiceUnavailable", 504: "Timeout",
}


# --------------------------------------------------------------------------
# PKI

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
"""

_CLIENT_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""

_SERVER_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def _openssl(*args):
    r = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.decode(errors="replace")))


def make_pki(dir, prefix="", cn=None):
    """Make a throwaway CA and a server certificate signed by it.

    The server certificate has SAN IP:127.0.0.1 and DNS:localhost. Call again
    with another ``prefix`` (e.g. ``"other-"``) for a second, unrelated CA.
    Returns dict(ca_cert, ca_key, server_cert, server_key) of file paths."""
    os.makedirs(dir, exist_ok=True)

    def p(name):
        return os.path.join(dir, prefix + name)

    cnf = p("openssl.cnf")
    with open(cnf, "w") as f:
        f.write(_OPENSSL_CNF)
    ext = p("server.ext")
    with open(ext, "w") as f:
        f.write(_SERVER_EXT)
    out = dict(ca_cert=p("ca.crt"), ca_key=p("ca.key"),
               server_cert=p("server.crt"), server_key=p("server.key"))
    cn = cn or ("fakeapi test CA %s%s" % (prefix, secrets.token_hex(4)))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-config", cnf, "-x509", *ec, "-keyout", out["ca_key"], "-out", out["ca_cert"],
             "-days", "3", "-subj", "/CN=" + cn, "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    csr = p("server.csr")
    _openssl("req", "-config", cnf, "-new", *ec, "-keyout", out["server_key"], "-out", csr,
             "-subj", "/CN=localhost")
    _openssl("x509", "-req", "-in", csr, "-CA", out["ca_cert"], "-CAkey", out["ca_key"],
             "-set_serial", str(random.getrandbits(62) + 1), "-days", "3", "-sha256",
             "-extfile", ext, "-out", out["server_cert"])
    return out


def make_client_cert(pki, cn, dir=None):
    """A client certificate with CN ``cn`` signed by the CA of ``pki`` (as a
    kubeconfig's client-certificate). Returns (cert_path, key_path)."""
    dir = dir or os.path.dirname(pki["ca_cert"])
    ext = os.path.join(dir, "client.ext")
    with open(ext, "w") as f:
        f.write(_CLIENT_EXT)
    cert, key, csr = (os.path.join(dir, "client-%s.%s" % (cn, x)) for x in ("crt", "key", "csr"))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    _openssl("x509", "-req", "-in", csr, "-CA", pki["ca_cert"], "-CAkey", pki["ca_key"],
             "-set_serial", str(random.getrandbits(62) + 1), "-days", "3", "-sha256",
             "-extfile", ext, "-out", cert)
    return cert, key


# --------------------------------------------------------------------------
# Kubernetes Status bodies

def status_body(code, message=None, reason=None, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message if message is not None else REASONS.get(code, "Error"),
            "reason": reason if reason is not None else REASONS.get(code, "Unknown"),
            "code": code}
    if details is not None:
        body["details"] = details
    return body


def _details(name, causes=None):
    d = {"name": name, "group": GROUP, "kind": PLURAL}
    if causes:
        d["causes"] = causes
    return d


# --------------------------------------------------------------------------
# Merge patch and schema validation

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def load_schema(crd_path=DEFAULT_CRD):
    """Checks that the CRD serves our version (crdcheck caches the file)."""
    versions = [v["name"] for v in crdcheck._load_crd(str(crd_path))["spec"]["versions"]]
    if VERSION not in versions:
        raise ValueError("no version %s in %s" % (VERSION, crd_path))


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _metadata_errors(md):
    """The part of ObjectMeta validation that matters to a task result."""
    errs = []
    if not isinstance(md, dict):
        return ["metadata: Invalid value: must be an object"]
    name = md.get("name")
    if not isinstance(name, str) or not name:
        errs.append("metadata.name: Required value: name or generateName is required")
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errs.append("metadata.name: Invalid value: %r: must be a lowercase RFC 1123 subdomain" % name)
    for field in ("labels", "annotations"):
        m = md.get(field)
        if m is None:
            continue
        if not isinstance(m, dict):
            errs.append("metadata.%s: Invalid value: must be a map of strings" % field)
            continue
        for k, v in m.items():
            if not isinstance(v, str):
                errs.append("metadata.%s[%s]: Invalid value: %s: must be a string" % (field, k, json.dumps(v)))
            elif field == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                errs.append("metadata.labels: Invalid value: %r: a valid label value" % v)
            if field == "labels":
                prefix, _, lname = k.rpartition("/")
                if not lname or len(lname) > 63 or not _LABEL_NAME.match(lname) or \
                        (prefix and not _DNS_SUBDOMAIN.match(prefix)):
                    errs.append("metadata.labels: Invalid value: %r: a valid label key" % k)
    refs = md.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list):
            errs.append("metadata.ownerReferences: Invalid value: must be a list")
        else:
            for i, ref in enumerate(refs):
                p = "metadata.ownerReferences[%d]" % i
                if not isinstance(ref, dict):
                    errs.append(p + ": Invalid value: must be an object")
                    continue
                for req in ("apiVersion", "kind", "name", "uid"):
                    if not isinstance(ref.get(req), str) or not ref.get(req):
                        errs.append("%s.%s: Required value" % (p, req))
                for b in ("controller", "blockOwnerDeletion"):
                    if b in ref and not isinstance(ref[b], bool):
                        errs.append("%s.%s: Invalid value: must be a boolean" % (p, b))
    for k in ("namespace", "uid", "resourceVersion", "generateName"):
        if k in md and not isinstance(md[k], str):
            errs.append("metadata.%s: Invalid value: must be a string" % k)
    return errs


def validate_object(obj, crd_path=DEFAULT_CRD, strict=True):
    """All errors of a whole WorkflowTaskResult object: the CRD's schema
    (crdcheck, the one validator) plus the ObjectMeta rules a server applies."""
    errs = crdcheck.validate(obj, crd_path, strict=strict)
    if isinstance(obj, dict):
        if obj.get("apiVersion") != API_VERSION:
            errs.append("apiVersion: Invalid value: %r" % obj.get("apiVersion"))
        if obj.get("kind") != KIND:
            errs.append("kind: Invalid value: %r" % obj.get("kind"))
        if "metadata" in obj:
            errs += _metadata_errors(obj["metadata"])
    return errs


# --------------------------------------------------------------------------
# Request log and faults

class Request:
    """One request as the server saw it."""

    def __init__(self, seq, conn_id, method, target, headers, body, t_recv):
        self.seq = seq
        self.conn_id = conn_id
        self.method = method
        self.target = target                  # path with query
        self.path = target.split("?", 1)[0]
        self.query = target.split("?", 1)[1] if "?" in target else ""
        self.headers = headers                # http.client.HTTPMessage
        self.body = body                      # raw bytes
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None
        self.t_recv = t_recv                  # monotonic, request fully read
        self.t_sent = None                    # monotonic, response fully sent (or connection dropped)
        self.status = None                    # status code sent, None if none
        self.response = None                  # parsed response body (when JSON)
        self.fault = None                     # the fault rule applied, if any
        self.client_cn = None                 # CN of a verified client certificate
        self.throttled = False                # answered 429 by the throttle (FakeApi.throttle)
        self.done = False

    def header(self, name, default=None):
        return self.headers.get(name, default)

    @property
    def token(self):
        a = self.headers.get("Authorization", "")
        return a[7:] if a.startswith("Bearer ") else None

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def raw(self):
        """Request line, headers and body as bytes (for leak checks)."""
        return ("%s %s HTTP/1.1\r\n%s\r\n" % (self.method, self.target, str(self.headers))).encode(
            "latin-1", "replace") + self.body

    def __repr__(self):
        return "<Request #%d conn=%d %s %s -> %s%s>" % (
            self.seq, self.conn_id, self.method, self.target, self.status,
            " fault=%s" % self.fault.action if self.fault else "")


class Fault:
    """A fault rule. Matches requests by method and path regex (``re.search``
    on the path without query). ``skip`` lets the first matches through;
    ``times`` limits how many matches it applies to (None = all);
    ``nth=k`` is ``skip=k-1, times=1``. Connection-level actions
    (``tls_close``) match new connections, not requests.

    Actions and their options:
      status:    code, body (dict → JSON; default a Kubernetes Status),
                 raw (bytes sent as the body verbatim), retry_after,
                 content_type, headers (dict)
      reset:     close the TCP connection with SO_LINGER 0 after reading the request
      hang:      hold the connection; seconds (None = until stop()/down());
                 then: "close" (default), "reset" or "answer" (process normally)
      half:      headers with the full Content-Length, then ``fraction`` of the
                 body; tls_eof "notify" (close_notify first, default) or "abrupt"
      slow:      send the answer ``chunk`` bytes at a time, ``delay`` s apart
      garbage:   send ``raw`` (default non-HTTP bytes), then close
      delay:     wait ``seconds`` then answer normally
      tls_close: during the TLS handshake, read the ClientHello and close
                 (``linger0=True`` for a reset)
    """

    ACTIONS = ("status", "reset", "hang", "half", "slow", "garbage", "delay", "tls_close")

    def __init__(self, action, method=None, path=None, skip=0, times=None, nth=None, **opts):
        if action not in self.ACTIONS:
            raise ValueError("unknown fault action %r" % action)
        if nth is not None:
            skip, times = nth - 1, 1
        self.action = action
        self.method = method.upper() if method else None
        self.path = re.compile(path) if isinstance(path, str) else path
        self.skip = skip
        self.times = times
        self.opts = opts
        self.seen = 0
        self.applied = 0

    def matches(self, method, path):
        if self.action == "tls_close":
            return method is None
        if method is None:
            return False
        if self.method and self.method != method:
            return False
        return not self.path or bool(self.path.search(path))

    @property
    def exhausted(self):
        return self.times is not None and self.applied >= self.times

    def __repr__(self):
        return "<Fault %s %s %s skip=%d times=%s applied=%d>" % (
            self.action, self.method or "*", self.path.pattern if self.path else "*",
            self.skip, self.times, self.applied)


class FaultList:
    """Thread-safe ordered list of Fault rules; the first active match applies."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []

    def add(self, action, **kw):
        rule = action if isinstance(action, Fault) else Fault(action, **kw)
        with self._lock:
            self._rules.append(rule)
        return rule

    append = add

    def remove(self, rule):
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self):
        with self._lock:
            self._rules.clear()

    def take(self, method, path):
        """The rule to apply to this request (or new connection when
        method is None), counting it; None when none applies."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path) or rule.exhausted:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.applied += 1
                return rule
        return None

    def __iter__(self):
        with self._lock:
            return iter(list(self._rules))

    def __len__(self):
        with self._lock:
            return len(self._rules)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` spends
    one token when there is one (thread-safe, monotonic clock)."""

    def __init__(self, rate, burst=None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.tokens = self.burst
        self.t = time.monotonic()
        self.allowed = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self, now=None):
        with self._lock:
            now = time.monotonic() if now is None else now
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                self.allowed += 1
                return True
            self.refused += 1
            return False


# --------------------------------------------------------------------------
# HTTP handling

def _peer_cn(sock):
    """The CN of a verified client certificate, or None."""
    try:
        cert = sock.getpeercert()
    except (ValueError, OSError):
        return None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeapi/1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections

    # -- connection set-up: TLS by hand, so that faults can act before it
    def setup(self):
        api = self.server.api
        self.api = api
        self.ssl_ok = False
        plain = self.request
        self.conn_id = api._new_conn_id()
        plain.settimeout(10)
        sock = None
        if api._reset_new_connections:
            api._event("conn", self.conn_id, "reset (server down)")
            _hard_close(plain, linger0=True)
            return
        rule = api.faults.take(None, None)
        if rule is not None:
            try:
                socket.socket.recv(plain, 16384)  # the ClientHello
            except OSError:
                pass
            api._event("tls", self.conn_id, "tls_close fault")
            _hard_close(plain, linger0=rule.opts.get("linger0", False))
            return
        try:
            sock = api._ssl_ctx.wrap_socket(plain, server_side=True, do_handshake_on_connect=False)
            sock.do_handshake()
        except (ssl.SSLError, OSError) as e:
            api._event("tls", self.conn_id, "handshake failed: %s" % e)
            for s in (sock, plain):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass
            return
        sock.settimeout(self.timeout)
        self.client_cn = _peer_cn(sock)
        api._event("tls", self.conn_id, "handshake ok %s" % sock.version())
        self.request = sock
        self.ssl_ok = True
        api._track(sock, True)
        super().setup()

    def handle(self):
        if self.ssl_ok:
            try:
                super().handle()
            except (OSError, ssl.SSLError, ValueError):
                pass

    def finish(self):
        if not self.ssl_ok:
            return
        try:
            super().finish()
        except (OSError, ValueError):
            pass
        self.api._track(self.request, False)
        try:
            self.request.close()
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.api.verbose:
            sys.stderr.write("fakeapi: conn %d: %s\n" % (self.conn_id, fmt % args))

    # -- every method goes through _serve
    def do_GET(self):
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("EOF in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _serve(self):
        api = self.api
        try:
            body = self._read_body()
        except (ValueError, ConnectionError, OSError):
            self.close_connection = True
            return
        if self.server.is_down or api._reset_new_connections:
            # the server went down while this connection was open: the request never arrives
            api._event("conn", self.conn_id, "reset (server down)")
            self._drop(linger0=True)
            return
        req = api._record(self.conn_id, self.command, self.path, self.headers, body)
        req.client_cn = getattr(self, "client_cn", None)
        throttle = api._throttle
        if throttle is not None and (throttle["methods"] is None or self.command in throttle["methods"]) \
                and not throttle["bucket"].take():
            req.throttled = True
            ra = throttle["retry_after"]
            try:
                self._answer(req, 429, status_body(429, "Too many requests, please try again later.",
                                                   "TooManyRequests", {"retryAfterSeconds": int(ra)}),
                             {"Retry-After": ra})
            except (OSError, ssl.SSLError, ValueError):
                self.close_connection = True
            finally:
                api._complete(req)
            return
        rule = api.faults.take(self.command, req.path)
        req.fault = rule
        try:
            if rule is not None and self._fault(req, rule):
                return
            code, obj, extra = api._route(req)
            self._answer(req, code, obj, extra)
        except (OSError, ssl.SSLError, ValueError):
            self.close_connection = True
        finally:
            api._complete(req)

    # -- answers
    def _answer(self, req, code, obj, extra=None, raw=None, slow=None):
        payload = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(code)
        ctype = "application/json"
        for k, v in (extra or {}).items():
            if k.lower() == "content-type":
                ctype = v
            else:
                self.send_header(k, str(v))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        req.status = code
        req.response = obj if raw is None else None
        if slow:
            chunk, delay = slow
            for i in range(0, len(payload), chunk):
                self.wfile.write(payload[i:i + chunk])
                if self.api._release.wait(delay):
                    raise ConnectionError("server stopping")
        else:
            self.wfile.write(payload)
        req.t_sent = time.monotonic()

    def _fault(self, req, rule):
        """Apply a fault; True when the request has been dealt with."""
        o = rule.opts
        a = rule.action
        if a == "status":
            code = o.get("code", 500)
            extra = dict(o.get("headers") or {})
            if o.get("retry_after") is not None:
                extra["Retry-After"] = o["retry_after"]
            if o.get("content_type"):
                extra["Content-Type"] = o["content_type"]
            if "raw" in o:
                self._answer(req, code, None, extra, raw=o["raw"])
            else:
                body = o.get("body")
                if body is None:
                    name = _ROUTE.match(req.path)
                    body = status_body(code, o.get("message"), o.get("reason"),
                                       _details(name.group(2) or "") if name else None)
                self._answer(req, code, body, extra)
            return True
        if a == "reset":
            self._drop(linger0=True)
            return True
        if a == "delay":
            if self.api._release.wait(o.get("seconds", 1.0)):
                self._drop(linger0=True)
                return True
            return False
        if a == "hang":
            released = self.api._release.wait(o.get("seconds"))
            then = o.get("then", "close")
            if released or then != "answer":
                self._drop(linger0=released or then == "reset")
                return True
            return False
        if a == "slow":
            code, obj, extra = self.api._route(req)
            self._answer(req, code, obj, extra, slow=(o.get("chunk", 4), o.get("delay", 0.05)))
            return True
        if a == "half":
            if "raw" in o:
                code, payload = o.get("code", 200), o["raw"]
            else:
                code, obj, _ = self.api._route(req)
                payload = json.dumps(obj).encode()
            cut = max(0, min(len(payload) - 1, int(len(payload) * o.get("fraction", 0.5))))
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[:cut])
            req.status = code
            self._drop(linger0=False, notify=o.get("tls_eof", "notify") == "notify")
            return True
        if a == "garbage":
            self.wfile.write(o.get("raw", b"\x00\x01\x02\xff\xfe garbage, not HTTP \x1b[0m\r\n\r\n"))
            self._drop(linger0=False, notify=o.get("tls_eof", "notify") == "notify")
            return True
        raise ValueError("fault %s does not apply to requests" % a)

    def _drop(self, linger0, notify=False):
        """End the connection now: a TCP reset, or a close (with a TLS
        close_notify first when ``notify``)."""
        self.close_connection = True
        sock = self.request
        try:
            self.rfile.close()  # drop the makefile() reference so close() is real
        except Exception:
            pass
        if notify and not linger0:
            try:
                sock.setblocking(False)
                sock.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
        self.api._track(sock, False)
        _hard_close(sock, linger0)


def _hard_close(sock, linger0):
    try:
        if linger0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        socket.socket.close(sock)
    except OSError:
        pass


def _port_holder(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    return s


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = True  # lets _PortHolder keep the port while the server is down
    request_queue_size = 64

    def __init__(self, addr, api):
        self.api = api
        self.is_down = False
        self.request_queue_size = api.backlog  # listen() backlog, read by server_activate
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address):
        if self.api.verbose:
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------
# The server object tests use

class FakeApi:
    """The fake API server. Use as a context manager::

        with FakeApi(tmpdir) as api:
            ... api.url, api.ca_file, api.token, api.port
            api.wait_for(lambda r: r.method == "PATCH")
            api.objects[("argo", "wf-1")]

    State survives ``down()``/``up()``; ``stop()`` ends it for good."""

    def __init__(self, dir, port=0, token=None, pki=None, strict=True, crd_path=DEFAULT_CRD,
                 verbose=False, client_auth=False, backlog=64):
        self.dir = dir
        self.backlog = backlog      # listen() backlog: raise it when many clients connect at once
        os.makedirs(dir, exist_ok=True)
        self.pki = pki or make_pki(os.path.join(dir, "pki"))
        self.ca_file = self.pki["ca_cert"]
        self.token = token or secrets.token_urlsafe(24)
        self.accepted_tokens = {self.token}
        self.strict = strict
        self.crd_path = crd_path
        self.verbose = verbose
        self.faults = FaultList()
        self.objects = {}           # (ns, name) -> object
        self.requests = []          # Request, in arrival order
        self.events = []            # (monotonic, conn_id, kind, text): TLS and connection events
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        self._conn_ids = 0
        self._rv = 1000
        self._conns = set()
        self._release = threading.Event()
        self._reset_new_connections = False
        self._throttle = None
        self._server = None
        self._thread = None
        self._requested_port = port
        self.port = None
        self._ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl_ctx.load_cert_chain(self.pki["server_cert"], self.pki["server_key"])
        # Client certificates signed by our CA authenticate their CN (as a
        # kube-apiserver does); asked for, never required.
        self.accepted_client_cns = set()
        if client_auth:
            self._ssl_ctx.verify_mode = ssl.CERT_OPTIONAL
            self._ssl_ctx.load_verify_locations(self.pki["ca_cert"])
        load_schema(crd_path)

    # -- life cycle
    def start(self):
        self._start_server(self._requested_port)
        return self

    def _start_server(self, port):
        self._release = threading.Event()
        self._reset_new_connections = False
        self._server = _Server(("127.0.0.1", port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakeapi-%d" % self.port, daemon=True)
        self._thread.start()

    def _stop_server(self):
        srv = self._server
        if srv is None:
            return
        self._server = None
        srv.is_down = True
        srv.shutdown()
        srv.server_close()
        self._thread.join(5)
        self._release.set()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for s in conns:  # reset what is still open; wake blocked readers
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                socket.socket.shutdown(s, socket.SHUT_RD)
            except OSError:
                pass

    def stop(self):
        self._stop_server()
        holder, self._holder = getattr(self, "_holder", None), None
        if holder is not None:
            holder.close()

    def down(self, mode="refuse"):
        """Take the server off the network. ``refuse``: close the listening
        socket (connection refused) and reset open connections; ``reset``:
        keep listening but reset every new connection at once."""
        if mode == "reset":
            self._reset_new_connections = True
            self._release.set()
            with self._lock:
                conns = list(self._conns)
            for s in conns:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    socket.socket.shutdown(s, socket.SHUT_RD)
                except OSError:
                    pass
            return
        # Hold the port while nothing listens on it: connections are still
        # refused (a bound socket that does not listen answers SYN with RST),
        # but no other process's connect() can take it as its ephemeral port,
        # so up() can always bind it again.
        self._holder = _port_holder(self.port)
        self._stop_server()

    def up(self):
        """Back on the same port (after ``down``)."""
        if self._server is not None:
            self._reset_new_connections = False
            self._release = threading.Event()
            return
        self._start_server(self.port)
        holder, self._holder = getattr(self, "_holder", None), None
        if holder is not None:
            holder.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def server(self):  # so tests may say api.server.faults as in the brief
        return self

    def ssl_context(self, ca_file=None):
        """A client context that trusts this server's CA (or ``ca_file``)."""
        ctx = ssl.create_default_context(cafile=ca_file or self.ca_file)
        return ctx

    def make_other_pki(self):
        """A second, unrelated CA and server certificate (for wrong-CA tests)."""
        return make_pki(os.path.join(self.dir, "pki"), prefix="other-")

    # -- bookkeeping
    def _new_conn_id(self):
        with self._lock:
            self._conn_ids += 1
            return self._conn_ids

    def _event(self, kind, conn_id, text):
        with self.cond:
            self.events.append((time.monotonic(), conn_id, kind, text))
            self.cond.notify_all()
        if self.verbose:
            sys.stderr.write("fakeapi: conn %d: %s %s\n" % (conn_id, kind, text))

    def _track(self, sock, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _record(self, conn_id, method, target, headers, body):
        with self.cond:
            r = Request(len(self.requests), conn_id, method, target, headers, body, time.monotonic())
            self.requests.append(r)
            self.cond.notify_all()
            return r

    def _complete(self, req):
        with self.cond:
            if req.t_sent is None:
                req.t_sent = time.monotonic()
            req.done = True
            self.cond.notify_all()
        if self.verbose:
            sys.stderr.write("fakeapi: %s %s -> %s%s\n" % (
                req.method, req.target, req.status, " (fault %s)" % req.fault.action if req.fault else ""))

    # -- waiting
    def wait_for(self, predicate=lambda r: True, timeout=15.0, done=True):
        """The first recorded request matching ``predicate``; waits for it.
        With ``done`` (default) only requests whose handling has finished
        (answer sent or connection dropped) count. Raises TimeoutError."""
        return self.wait_count(predicate, 1, timeout, done)[0]

    def wait_count(self, predicate, n, timeout=15.0, done=True):
        """The first ``n`` matching requests; waits until there are ``n``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [r for r in self.requests if (r.done or not done) and predicate(r)]
                if len(found) >= n:
                    return found[:n]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fakeapi: %d of %d matching requests after %.1f s; seen: %r"
                                       % (len(found), n, timeout, self.requests))
                self.cond.wait(left)

    def wait_until(self, condition, timeout=15.0):
        """Wait until ``condition()`` (called under the lock, re-evaluated at
        every request, object change and connection event) is true."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = condition()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fakeapi: condition not met after %.1f s; seen: %r"
                                       % (timeout, self.requests))
                self.cond.wait(left)

    def wait_object(self, ns, name, predicate=lambda o: True, timeout=15.0):
        """A copy of the stored object once ``predicate(obj)`` holds."""
        def cond():
            o = self.objects.get((ns, name))
            return copy.deepcopy(o) if o is not None and predicate(o) else None
        return self.wait_until(cond, timeout)

    def writes(self):
        """The POST and PATCH requests so far."""
        with self._lock:
            return [r for r in self.requests if r.method in ("POST", "PATCH")]

    def add_fault(self, action, **kw):
        return self.faults.add(action, **kw)

    def throttle(self, rate, burst=None, retry_after=1, methods=None):
        """Switch on throttling as an overloaded API server does it: a token
        bucket of ``rate`` requests a second and ``burst`` saved up (default
        ``rate``); a request beyond it is answered 429 TooManyRequests with
        ``Retry-After: <retry_after>`` (seconds) before faults and routing,
        and recorded with ``throttled = True``. ``methods`` (e.g.
        ``{"PATCH"}``) limits it to those; ``rate=None`` switches it off.
        Returns the bucket (``allowed``/``refused`` counters)."""
        if rate is None:
            self._throttle = None
            return None
        bucket = TokenBucket(rate, burst)
        self._throttle = {"bucket": bucket, "retry_after": str(retry_after),
                          "methods": set(methods) if methods else None}
        return bucket

    # -- objects
    def get_object(self, ns, name):
        with self._lock:
            o = self.objects.get((ns, name))
            return copy.deepcopy(o)

    def put_object(self, obj):
        """Store an object as if created earlier (e.g. a previous run's placeholder)."""
        with self.cond:
            obj = copy.deepcopy(obj)
            md = obj.setdefault("metadata", {})
            self._system_fields(md)
            self.objects[(md["namespace"], md["name"])] = obj
            self.cond.notify_all()
            return copy.deepcopy(obj)

    def delete_object(self, ns, name):
        with self.cond:
            o = self.objects.pop((ns, name), None)
            self.cond.notify_all()
            return o

    def _system_fields(self, md, old=None):
        self._rv += 1
        md.setdefault("namespace", "default")
        md["resourceVersion"] = str(self._rv)
        if old:
            for k in ("uid", "creationTimestamp", "namespace", "generation"):
                if k in old:
                    md[k] = old[k]
        else:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            md["generation"] = 1

    # -- routing (called with a recorded Request; returns code, body, headers)
    def _route(self, req):
        by_cert = req.client_cn is not None and req.client_cn in self.accepted_client_cns
        if not by_cert and (req.token is None or req.token not in self.accepted_tokens):
            return 401, status_body(401, "Unauthorized", "Unauthorized"), {}
        m = _ROUTE.match(req.path)
        if not m:
            return 404, status_body(404, "the server could not find the requested resource", "NotFound",
                                    {}), {}
        ns, name = m.group(1), m.group(2)
        method = req.method
        with self.cond:
            try:
                if method == "POST" and name is None:
                    return self._create(req, ns)
                if method == "PATCH" and name:
                    return self._patch(req, ns, name)
                if method == "GET" and name:
                    o = self.objects.get((ns, name))
                    if o is None:
                        return self._not_found(name)
                    return 200, copy.deepcopy(o), {}
                if method == "GET":
                    items = [copy.deepcopy(o) for (n, _), o in sorted(self.objects.items()) if n == ns]
                    return 200, {"kind": KIND + "List", "apiVersion": API_VERSION,
                                 "metadata": {"resourceVersion": str(self._rv)}, "items": items}, {}
                if method == "DELETE" and name:
                    if self.objects.pop((ns, name), None) is None:
                        return self._not_found(name)
                    return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                 "details": _details(name)}, {}
                return 405, status_body(405, "the server does not allow this method on the requested resource",
                                        "MethodNotAllowed"), {}
            finally:
                self.cond.notify_all()

    def _not_found(self, name):
        return 404, status_body(404, '%s "%s" not found' % (RESOURCE, name), "NotFound", _details(name)), {}

    def _bad_json(self, req):
        try:
            return json.loads(req.body.decode("utf-8")), None
        except (ValueError, UnicodeDecodeError) as e:
            return None, (400, status_body(400, "the body of the request was in an unknown format: %s" % e,
                                           "BadRequest"), {})

    def _invalid(self, name, errs):
        causes = [{"reason": "FieldValueInvalid", "message": e, "field": e.split(":")[0]} for e in errs]
        return 422, status_body(422, '%s.%s "%s" is invalid: %s' % (KIND, GROUP, name, "; ".join(errs)),
                                "Invalid", {"name": name, "group": GROUP, "kind": KIND, "causes": causes}), {}

    def _create(self, req, ns):
        if req.content_type != "application/json":
            return 415, status_body(415, 'the body of the request was in an unknown format - accepted media '
                                         'types include: application/json, application/yaml, '
                                         'application/vnd.kubernetes.protobuf', "UnsupportedMediaType"), {}
        obj, err = self._bad_json(req)
        if err:
            return err
        if not isinstance(obj, dict):
            return 400, status_body(400, "the body of the request must be a JSON object", "BadRequest"), {}
        if obj.get("kind") != KIND or obj.get("apiVersion") != API_VERSION:
            return 400, status_body(400, "the API version (%r) or kind (%r) of the provided object is wrong"
                                    % (obj.get("apiVersion"), obj.get("kind")), "BadRequest"), {}
        md = obj.get("metadata")
        if not isinstance(md, dict):
            return self._invalid("", ["metadata: Required value"])
        if md.get("namespace") not in (None, ns):
            return 400, status_body(400, "the namespace of the provided object does not match the namespace "
                                         "sent on the request", "BadRequest"), {}
        name = md.get("name") if isinstance(md.get("name"), str) else ""
        if "resourceVersion" in md:
            return self._invalid(name, ["metadata.resourceVersion: Invalid value: "
                                        "resourceVersion should not be set on objects to be created"])
        if md.get("creationTimestamp", 0) is None:
            del md["creationTimestamp"]
        md["namespace"] = ns
        errs = validate_object(obj, self.crd_path, self.strict)
        if errs:
            return self._invalid(name, errs)
        if (ns, name) in self.objects:
            return 409, status_body(409, '%s "%s" already exists' % (RESOURCE, name), "AlreadyExists",
                                    _details(name)), {}
        self._system_fields(md)
        self.objects[(ns, name)] = obj
        return 201, copy.deepcopy(obj), {}

    def _patch(self, req, ns, name):
        if req.content_type != "application/merge-patch+json":
            return 415, status_body(415, "the body of the request was in an unknown format - accepted media "
                                         "types include: application/json-patch+json, "
                                         "application/merge-patch+json, application/apply-patch+yaml",
                                    "UnsupportedMediaType"), {}
        patch, err = self._bad_json(req)
        if err:
            return err
        old = self.objects.get((ns, name))
        if old is None:
            return self._not_found(name)
        new = merge_patch(old, patch)
        if not isinstance(new, dict):
            return 400, status_body(400, "the patched object must be a JSON object", "BadRequest"), {}
        md = new.get("metadata")
        if not isinstance(md, dict):
            return self._invalid(name, ["metadata: Required value"])
        if md.get("name") != name:
            return 400, status_body(400, "the name of the object (%s) does not match the name on the URL (%s)"
                                    % (md.get("name"), name), "BadRequest"), {}
        if md.get("namespace", ns) != ns:
            return 400, status_body(400, "the namespace of the provided object does not match the namespace "
                                         "sent on the request", "BadRequest"), {}
        self._system_fields(md, old["metadata"])
        new.setdefault("apiVersion", API_VERSION)
        new.setdefault("kind", KIND)
        errs = validate_object(new, self.crd_path, self.strict)
        if errs:
            return self._invalid(name, errs)
        self.objects[(ns, name)] = new
        return 200, copy.deepcopy(new), {}


# --------------------------------------------------------------------------
# CLI (for the README demo)

def main(argv=None):
    ap = argparse.ArgumentParser(description="A fake Kubernetes API server for WorkflowTaskResults.")
    ap.add_argument("--dir", required=True, help="writes ca.crt and token here")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None)
    ap.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    api = FakeApi(args.dir, port=args.port, token=args.token, verbose=not args.quiet)
    with open(os.path.join(args.dir, "ca.crt"), "wb") as out, open(api.ca_file, "rb") as src:
        out.write(src.read())
    with open(os.path.join(args.dir, "token"), "w") as f:
        f.write(api.token)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    api.start()
    print(api.url, flush=True)
    try:
        while not stop.wait(3600):
            pass
    finally:
        api.stop()
    for (ns, name), obj in sorted(api.objects.items()):
        sys.stderr.write("fakeapi: final %s/%s: %s\n" % (ns, name, json.dumps(obj, sort_keys=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
