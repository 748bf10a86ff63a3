"""A fault-injecting S3 stand-in: an HTTP proxy in front of moto_server.

moto answers every request correctly; it cannot fail on demand. This proxy
forwards each request to it as it came (the Host header too, so SigV4
signatures still match), except the requests a fault picks, and records
everything it saw, so that a test asserts on what the client really sent:
which parts, how many attempts of each, whether AbortMultipartUpload went
out, Content-Length, x-amz-content-sha256, no credential in a URL.

    with S3FaultProxy(moto.port) as proxy:
        proxy.add("error", op="UploadPart", part=2, attempt=1, code="InternalError")
        proxy.add("reset", op="UploadPart", part=3, attempt=1, when="mid_body")
        ... run the client against 127.0.0.1:proxy.port ...
        proxy.attempts("UploadPart", part=2)   # -> 2
        proxy.wait_for(lambda r: r.op == "AbortMultipartUpload")

A fault matches on the S3 operation (``op``, derived from method, path and
query: UploadPart, PutObject, CreateMultipartUpload,
CompleteMultipartUpload, AbortMultipartUpload, HeadObject, HeadBucket,
CreateBucket, GetObject, ListParts, ...), ``part`` (partNumber), ``key``
(exact object key), ``attempt`` (the nth request for the same operation,
key, upload and part: 1 is the first try; an int, a collection or a
callable), ``match`` (any callable taking the Request), and applies at
most ``times`` times (default: every match). The first matching fault wins.

Actions (keyword parameters in brackets):
  error   answer S3 error XML (Code, Message, Resource, RequestId) with the
          code's usual status: InternalError 500, SlowDown 503,
          ServiceUnavailable 503, RequestTimeout 400, AccessDenied 403,
          NoSuchUpload 404, NoSuchKey 404, NoSuchBucket 404, ... [code,
          status=override, message, retry_after, when="after_body" (read the
          body, then answer) | "before_body" (answer without reading the body
          nor sending 100 Continue, then close, as S3 does for an early
          rejection) | "after_forward" (the request reached moto and took
          effect, then the error is answered instead of moto's answer),
          status200=True: HTTP 200 with the <Error> body, as
          CompleteMultipartUpload may answer]
  reset   TCP RST (SO_LINGER 0) [when="before_body" (after the headers) |
          "mid_body" (after ``after_bytes``, default half the body) |
          "after_body" (whole body read, nothing forwarded) |
          "after_forward" (moto took the request; the answer is lost) |
          "mid_response" (moto's answer: status, headers and half the body
          sent)]
  stall   hold the request without answering for ``seconds`` (default: until
          stop()) [when="before_body" | "after_body"]; then forward and answer
  slow_body  read the request body at ``rate`` bytes/s (small socket
          buffer), then forward and answer
  drip    forward, then send moto's answer ``chunk`` bytes every ``delay``
          seconds [spaces=N: N leading spaces first (S3's keep-alive while
          it assembles a CompleteMultipartUpload)]
  delay   wait ``seconds``, then forward

Everything is standard library; used by test_s3.py, test_artifacts.py and
test_s3faults.py.
"""

import hashlib
import http.client
import http.server
import ipaddress
import socket
import struct
import threading
import time
import urllib.parse
import uuid

ERRORS = {
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "SlowDown": (503, "Please reduce your request rate."),
    "ServiceUnavailable": (503, "Reduce your request rate."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to "
                            "within the timeout period. Idle connections will be closed."),
    "AccessDenied": (403, "Access Denied"),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature "
                                   "you provided. Check your key and signing method."),
    "NoSuchUpload": (404, "The specified multipart upload does not exist. The upload ID may be invalid, "
                          "or the upload may have been aborted or completed."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "InvalidPart": (400, "One or more of the specified parts could not be found. The part may not have "
                         "been uploaded, or the specified entity tag may not match the part's entity tag."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
}

ACTIONS = ("error", "reset", "stall", "slow_body", "drip", "delay")

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "expect", "date", "server"}


def error_xml(code, message=None, resource="/", request_id=None):
    """An S3 error document, as S3 and MinIO write it."""
    message = message if message is not None else ERRORS.get(code, (500, code))[1]
    rid = request_id or uuid.uuid4().hex[:16].upper()

    def esc(s):
        return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            "<Resource>%s</Resource><RequestId>%s</RequestId><HostId>%s</HostId></Error>"
            % (esc(code), esc(message), esc(resource), rid, uuid.uuid4().hex)).encode()


def s3_operation(method, bucket, key, query):
    """The S3 API operation of a request (path-style or virtual-host)."""
    if not bucket:
        return "ListBuckets" if method == "GET" else "Unknown"
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        if method == "PUT":
            return "CreateBucket"
        if method == "DELETE":
            return "DeleteBucket"
        if method == "GET":
            return "ListMultipartUploads" if "uploads" in query else "ListObjects"
        return "Unknown"
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPart"
        return "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "Unknown"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    return "Unknown"


class Request:
    """One request as the proxy saw it."""

    def __init__(self, seq, method, target, headers, client):
        self.seq = seq
        self.method = method
        self.target = target                # path and query as sent
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.client = client                # (host, port): the connection
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        host = self.headers.get("host", "").rsplit(":", 1)[0].strip("[]")
        virtual = host and host != "localhost" and not _is_ip(host) and "." in host
        parts = urllib.parse.unquote(u.path).lstrip("/")
        if virtual:
            self.bucket, self.key = host.split(".", 1)[0], parts
        else:
            self.bucket, _, self.key = parts.partition("/")
        self.op = s3_operation(method, self.bucket, self.key, self.query)
        self.part = int(self.query["partNumber"]) if self.query.get("partNumber", "").isdigit() else None
        self.upload_id = self.query.get("uploadId")
        cl = self.headers.get("content-length")
        self.content_length = int(cl) if cl and cl.isdigit() else None
        self.attempt = 0             # set by the proxy: nth request of this identity
        self.fault = None            # "action[:when]" applied, or None
        self.body_read = 0           # request body bytes the proxy read
        self.body_md5 = None         # hex MD5 of the whole body, when read
        self.status = None           # HTTP status answered (None: no answer)
        self.answered = False        # a whole answer went out
        self.t_start = time.monotonic()
        self.t_end = None
        self.done = False

    @property
    def identity(self):
        return (self.op, self.bucket, self.key, self.upload_id, self.part)

    def __repr__(self):
        return "<%d %s %s part=%s attempt=%d fault=%s status=%s>" % (
            self.seq, self.op, self.key, self.part, self.attempt, self.fault, self.status)


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class Fault:
    def __init__(self, action, op=None, part=None, key=None, method=None, attempt=None, match=None,
                 times=None, **params):
        if action not in ACTIONS:
            raise ValueError("unknown action %r" % action)
        self.action = action
        self.op, self.part, self.key, self.method = op, part, key, method
        self.attempt, self.match, self.times = attempt, match, times
        self.params = params
        self.applied = 0

    def matches(self, r):
        if self.times is not None and self.applied >= self.times:
            return False
        if self.op is not None and r.op != self.op:
            return False
        if self.part is not None and r.part != self.part:
            return False
        if self.key is not None and r.key != self.key:
            return False
        if self.method is not None and r.method != self.method:
            return False
        if self.attempt is not None:
            a = self.attempt
            if callable(a):
                if not a(r.attempt):
                    return False
            elif isinstance(a, int):
                if r.attempt != a:
                    return False
            elif r.attempt not in a:
                return False
        if self.match is not None and not self.match(r):
            return False
        return True

    def label(self):
        when = self.params.get("when")
        return self.action + (":" + when if when else "")


class _Reset(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_expect_100(self):
        # Decided per request: a fault may answer before the body is sent.
        return True

    def _any(self):
        self.server.proxy._handle(self)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        pass  # a client that gives up drops its connection: not an error here


class S3FaultProxy:
    """See the module docstring. ``upstream_port``: moto_server on 127.0.0.1."""

    def __init__(self, upstream_port, upstream_host="127.0.0.1", port=0):
        self.upstream = (upstream_host, upstream_port)
        self.faults = []
        self.requests = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._ids = {}
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.proxy = self
        self.port = self.server.server_address[1]
        self.endpoint = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="s3faults",
                                       daemon=True)
        self.thread.start()

    # -- set-up
    def add(self, action, **kw):
        """Adds a fault (see the module docstring); returns it (``.applied``)."""
        f = Fault(action, **kw)
        with self.cond:
            self.faults.append(f)
        return f

    def clear(self):
        with self.cond:
            self.faults = []

    def stop(self):
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- the recording
    def recorded(self, op=None, part=None, key=None, faulted=None):
        """Copies of the recorded requests, filtered."""
        with self.cond:
            out = list(self.requests)
        return [r for r in out if (op is None or r.op == op) and (part is None or r.part == part)
                and (key is None or r.key == key)
                and (faulted is None or (r.fault is not None) == faulted)]

    def attempts(self, op, part=None, key=None):
        return len(self.recorded(op, part, key))

    def parts_sent(self, key=None):
        """{part number: attempts} of UploadPart."""
        out = {}
        for r in self.recorded("UploadPart", key=key):
            out[r.part] = out.get(r.part, 0) + 1
        return out

    def wait_for(self, predicate, timeout=15.0, done=False):
        """The first recorded request matching ``predicate`` (with ``done``:
        only once its handling ended); waits on the recording, no polling."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests:
                    if (r.done or not done) and predicate(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("s3faults: no matching request after %.1f s; seen: %r"
                                       % (timeout, self.requests))
                self.cond.wait(left)

    # -- serving
    def _handle(self, h):
        with self.cond:
            r = Request(len(self.requests) + 1, h.command, h.path, h.headers, h.client_address)
            n = self._ids.get(r.identity, 0) + 1
            self._ids[r.identity] = n
            r.attempt = n
            fault = next((f for f in self.faults if f.matches(r)), None)
            if fault:
                fault.applied += 1
                r.fault = fault.label()
            self.requests.append(r)
            self.cond.notify_all()
        h._expect_pending = h.headers.get("Expect", "").lower() == "100-continue"
        try:
            self._serve(h, r, fault)
        except _Reset:
            pass
        except (OSError, http.client.HTTPException):
            h.close_connection = True
        finally:
            with self.cond:
                r.t_end = time.monotonic()
                r.done = True
                self.cond.notify_all()

    def _serve(self, h, r, f):
        p = f.params if f else {}
        when = p.get("when")
        a = f.action if f else None
        if a == "error" and when == "before_body":
            return self._answer_error(h, r, p, close=True)
        if a == "reset" and when == "before_body":
            return self._reset(h)
        if a == "stall" and when == "before_body":
            self._stop.wait(p.get("seconds"))
        if a == "reset" and when == "mid_body":
            n = p.get("after_bytes", (r.content_length or 0) // 2)
            self._read_body(h, r, limit=n)
            return self._reset(h)
        if a == "slow_body":
            try:
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            except OSError:
                pass
        body = self._read_body(h, r, rate=p.get("rate") if a == "slow_body" else None)
        if a == "reset" and when == "after_body":
            return self._reset(h)
        if a == "error" and when != "after_forward":
            return self._answer_error(h, r, p)
        if a == "stall" and when != "before_body":
            self._stop.wait(p.get("seconds"))
        if a == "delay":
            self._stop.wait(p.get("seconds", 1.0))
        status, headers, data = self._forward(h, r, body)
        if a == "reset" and when == "after_forward":
            return self._reset(h)
        if a == "error":  # after_forward
            return self._answer_error(h, r, p)
        if a == "reset" and when == "mid_response":
            self._send_head(h, r, status, headers, len(data))
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            return self._reset(h)
        if a == "drip":
            spaces = b" " * p.get("spaces", 0)
            self._send_head(h, r, status, headers, len(spaces) + len(data))
            chunk, delay = p.get("chunk", 16), p.get("delay", 0.05)
            for i in range(0, len(spaces), 1):
                h.wfile.write(spaces[i:i + 1])
                h.wfile.flush()
                self._stop.wait(delay)
            for i in range(0, len(data), chunk):
                h.wfile.write(data[i:i + chunk])
                h.wfile.flush()
                self._stop.wait(delay)
            r.answered = True
            return
        self._send_head(h, r, status, headers, len(data))
        if h.command != "HEAD":
            h.wfile.write(data)
        h.wfile.flush()
        r.answered = True

    def _continue(self, h):
        if h._expect_pending:
            h._expect_pending = False
            h.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            h.wfile.flush()

    def _read_body(self, h, r, limit=None, rate=None):
        n = r.content_length or 0
        chunked = "chunked" in h.headers.get("Transfer-Encoding", "").lower()
        if not n and not chunked:
            return b""
        self._continue(h)
        md5 = hashlib.md5()
        out = bytearray()
        if chunked:
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                piece = h.rfile.read(size)
                h.rfile.readline()
                out += piece
                md5.update(piece)
                r.body_read += len(piece)
            r.body_md5 = md5.hexdigest()
            return bytes(out)
        want = n if limit is None else min(limit, n)
        step = 65536 if rate is None else max(1024, int(rate / 10))
        t0 = time.monotonic()
        while len(out) < want:
            piece = h.rfile.read(min(step, want - len(out)))
            if not piece:
                raise _Reset()  # the client went away
            out += piece
            md5.update(piece)
            r.body_read = len(out)
            if rate:
                ahead = len(out) / float(rate) - (time.monotonic() - t0)
                if ahead > 0 and self._stop.wait(ahead):
                    raise _Reset()
        if len(out) == n:
            r.body_md5 = md5.hexdigest()
        return bytes(out)

    def _forward(self, h, r, body):
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in ("expect", "connection")}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def _send_head(self, h, r, status, headers, length):
        h.send_response(status)
        content_length = None
        for k, v in headers:
            lk = k.lower()
            if lk == "content-length":
                content_length = v
                continue
            if lk not in _HOP:
                h.send_header(k, v)
        # HEAD: moto's Content-Length is the object's size, not this body's.
        h.send_header("Content-Length", content_length if h.command == "HEAD" and content_length
                      else str(length))
        h.end_headers()
        r.status = status

    def _answer_error(self, h, r, p, close=False):
        code = p.get("code", "InternalError")
        status = p.get("status") or ERRORS.get(code, (500, ""))[0]
        if p.get("status200"):
            status = 200
        data = error_xml(code, p.get("message"), resource=r.path)
        h.send_response(status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        if p.get("retry_after") is not None:
            h.send_header("Retry-After", str(p["retry_after"]))
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.send_header("Content-Length", str(0 if h.command == "HEAD" else len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        h.wfile.flush()
        r.status = status
        r.answered = True

    def _reset(self, h):
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.close_connection = True
        # The descriptor really closes (with an RST) once the file objects
        # made from the socket are closed too.
        for f in (h.rfile, h.wfile):
            try:
                f.close()
            except OSError:
                pass
        try:
            h.connection.close()
        except OSError:
            pass
        raise _Reset()


class DeadPort:
    """A port on 127.0.0.1 where nothing listens (connection refused)."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = "127.0.0.1:%d" % self.port


def request_problems(requests, access_key, secret_key, part_size=None, size=None):
    """What is wrong with what a client sent, as a list of strings (empty:
    nothing): every request signed with SigV4 in the Authorization header
    (never a presigned URL) and carrying x-amz-content-sha256; no credential
    in any URL; with ``part_size`` and ``size``: each UploadPart's
    Content-Length is its part's length and a part the proxy read whole is
    that long."""
    out = []
    for r in requests:
        auth = r.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 Credential=%s/" % access_key):
            out.append("%r: Authorization is not SigV4 for the access key: %.40r" % (r, auth))
        if "x-amz-content-sha256" not in r.headers:
            out.append("%r: no x-amz-content-sha256" % r)
        for secret in (access_key, secret_key):
            if secret in r.target or urllib.parse.quote(secret, safe="") in r.target:
                out.append("%r: a credential in the URL" % r)
        if "X-Amz-Credential" in r.target or "X-Amz-Signature" in r.target:
            out.append("%r: a presigned URL" % r)
        if secret_key in str(r.headers):
            out.append("%r: the secret key in a header" % r)
        if r.op == "UploadPart" and part_size and size is not None:
            want = min(part_size, size - (r.part - 1) * part_size)
            if r.content_length != want:
                out.append("%r: Content-Length %s, part is %d bytes" % (r, r.content_length, want))
            if r.body_md5 is not None and r.body_read != want:
                out.append("%r: %d body bytes, part is %d" % (r, r.body_read, want))
    return out
