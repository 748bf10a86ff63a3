"""A fake Artifactory for the integration tests (Python standard library only).

``FakeArtifactory(dir, tls=True)`` listens on 127.0.0.1 (HTTPS with a
throwaway CA made by fakeapi.make_pki, or plain HTTP with ``tls=False``) and
takes ``PUT <path>`` with HTTP basic authentication: a right username and
password stores the body under the path (``objects[path]``), anything else is
401 with Artifactory's JSON error body. ``GET <path>`` gives a stored body
back.

Faults, set on the instance before or during a run:
  fail_puts = N     the next N PUTs are answered 503 (after their body is read)
  stall_puts = True a PUT is held without an answer until ``release()`` or
                    ``stop()`` (an upload that never finishes)

``requests`` lists (method, path, authorization_ok, status) for every request
and ``auth_headers`` the raw Authorization values seen, so tests can check
what was sent.
"""
import base64
import http.server
import json
import os
import ssl
import threading

from fakeapi import make_pki

ERROR_401 = {"errors": [{"status": 401, "message": "Bad credentials"}]}
ERROR_503 = {"errors": [{"status": 503, "message": "Service temporarily unavailable (injected)"}]}
BODY_CAP = 512 * 1024 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeartifactory/1"
    sys_version = ""
    timeout = 60

    def setup(self):
        fa = self.server.fa
        self.fa = fa
        self.ok = True
        self.request.settimeout(self.timeout)
        if fa.ssl_ctx is not None:
            try:
                self.request = fa.ssl_ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                fa.tls_failures.append(str(e))
                self.ok = False
                return
        super().setup()

    def handle(self):
        if self.ok:
            try:
                super().handle()
            except (OSError, ValueError):
                pass

    def finish(self):
        if self.ok:
            try:
                super().finish()
            except (OSError, ValueError):
                pass
        try:
            self.request.close()  # the TLS socket: the server closes only the plain one
        except OSError:
            pass

    def log_message(self, fmt, *args):
        pass

    def _auth_ok(self):
        value = self.headers.get("Authorization")
        self.fa.auth_headers.append(value)
        if not value or not value.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.fa.username and password == self.fa.password

    def _answer(self, code, obj=None, body=None):
        data = body if body is not None else json.dumps(obj or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > BODY_CAP:
            raise ValueError("body too large for the fake")
        chunks, left = [], n
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def do_PUT(self):
        fa = self.fa
        auth_ok = self._auth_ok()
        with fa.lock:
            stall = fa.stall_puts
            fail = auth_ok and fa.fail_puts > 0
            if fail:
                fa.fail_puts -= 1
        if stall:
            fa.requests.append(("PUT", self.path, auth_ok, None))
            fa.stalled.set()
            fa.release_event.wait(60)
            self.close_connection = True
            return
        body = self._read_body()
        if not auth_ok:
            status = 401
            self._answer(401, ERROR_401)
        elif fail:
            status = 503
            self._answer(503, ERROR_503)
        else:
            status = 201
            with fa.lock:
                fa.objects[self.path] = body
            self._answer(201, {"repo": "generic-local", "path": self.path, "size": str(len(body))})
        fa.requests.append(("PUT", self.path, auth_ok, status))

    def do_GET(self):
        auth_ok = self._auth_ok()
        data = self.fa.objects.get(self.path)
        status = 401 if not auth_ok else 200 if data is not None else 404
        self.fa.requests.append(("GET", self.path, auth_ok, status))
        if status == 200:
            self._answer(200, body=data)
        else:
            self._answer(status, ERROR_401 if status == 401 else {"errors": [{"status": 404}]})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fa):
        self.fa = fa
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address):
        pass


class FakeArtifactory:
    def __init__(self, dir, tls=True, username="ci-deployer", password=None):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.username = username
        self.password = password or base64.urlsafe_b64encode(os.urandom(18)).decode()
        self.ssl_ctx = None
        self.ca_file = None
        if tls:
            pki = make_pki(os.path.join(dir, "pki"), prefix="artifactory-")
            self.ca_file = pki["ca_cert"]
            self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
        self.lock = threading.Lock()
        self.objects = {}
        self.requests = []
        self.auth_headers = []
        self.tls_failures = []
        self.fail_puts = 0
        self.stall_puts = False
        self.stalled = threading.Event()
        self.release_event = threading.Event()
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self.base_url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fakeartifactory-%d" % self.port)
        self._thread.start()

    def release(self):
        self.release_event.set()

    def puts(self):
        return [r for r in self.requests if r[0] == "PUT"]

    def stop(self):
        self.release_event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


if __name__ == "__main__":  # a quick look by hand: python3 fakeartifactory.py
    import tempfile
    fa = FakeArtifactory(tempfile.mkdtemp(), tls=False)
    print("listening on", fa.base_url, "user", fa.username, "password", fa.password)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fa.stop()
