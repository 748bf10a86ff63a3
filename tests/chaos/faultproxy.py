"""A TCP fault proxy on 127.0.0.1, between argowait and the fake API server.

The binary connects to the proxy (``KUBERNETES_SERVICE_PORT`` = ``proxy.port``);
the proxy forwards bytes to the fake API on 127.0.0.1. TLS is end to end (the
server certificate has SAN 127.0.0.1, so it still verifies through the proxy).

Modes, set at any moment with ``set_mode`` (they act on open connections as
well as on new ones):

  pass       forward both ways (the default)
  stall      forward nothing (bytes wait in the kernel buffers); ``pass``
             again lets them through: a partition that heals
  drip       server->client bytes go ``chunk`` bytes every ``interval`` s
  cut        every connection is reset once ``after`` server->client bytes
             have gone through (0: at once); new connections too
  blackhole  new connections are accepted, their bytes read and dropped,
             and nothing is ever answered; open connections are reset

``heal()`` returns to ``pass`` and resets every connection that was
blackholed or cut, so that nothing keeps hanging once the fault is over
(a stalled connection resumes instead). One selector thread per proxy;
every connection is closed by ``stop()``. Standard library only.
"""

import selectors
import socket
import struct
import threading
import time

MODES = ("pass", "stall", "drip", "cut", "blackhole")
_BUF = 65536
_MAX_CONNS = 256


def _rst(sock):
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    def __init__(self, cid, client, upstream, blackholed):
        self.cid = cid
        self.client = client
        self.upstream = upstream
        self.blackholed = blackholed
        self.to_client = bytearray()    # read from upstream, not yet sent
        self.to_upstream = bytearray()  # read from client, not yet sent
        self.down_bytes = 0             # server->client bytes forwarded
        self.next_drip = 0.0
        self.closed = False
        self.registered = False


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = "pass"
        self._opts = {}
        self._opts_cache = {}
        self._conns = {}
        self._ids = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.events = []                # (monotonic, conn id, text)
        self._thread = None

    # -- control
    def start(self):
        self._thread = threading.Thread(target=self._loop, name="faultproxy-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def set_mode(self, mode, **opts):
        if mode not in MODES:
            raise ValueError("unknown proxy mode %r" % mode)
        with self._lock:
            self._mode = mode
            self._opts = dict(opts)
            self._event(0, "mode %s %r" % (mode, opts))
        self._wake()

    def heal(self):
        """Back to pass; connections hurt by blackhole/cut are reset."""
        with self._lock:
            self._mode = "pass"
            self._opts = {}
            self._heal_pending = True
            self._event(0, "heal")
        self._wake()

    @property
    def mode(self):
        with self._lock:
            return self._mode

    def stop(self):
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(5)
        for c in list(self._conns.values()):
            _rst(c.client)
            _rst(c.upstream)
        self._conns.clear()
        for s in (self._lsock, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals
    _heal_pending = False

    def _event(self, cid, text):
        self.events.append((time.monotonic(), cid, text))

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    @staticmethod
    def _register(sel, c):
        if c.registered or c.closed:
            return
        c.registered = True
        sel.register(c.client, selectors.EVENT_READ, ("client", c))
        if c.upstream is not None:
            sel.register(c.upstream, selectors.EVENT_READ, ("upstream", c))

    @staticmethod
    def _unregister(sel, c):
        if not c.registered:
            return
        c.registered = False
        for s in (c.client, c.upstream):
            if s is None:
                continue
            try:
                sel.unregister(s)
            except (KeyError, ValueError, OSError):
                pass

    def _close(self, sel, c, why):
        if c.closed:
            return
        self._unregister(sel, c)
        c.closed = True
        _rst(c.client)
        _rst(c.upstream)
        self._conns.pop(c.cid, None)
        self._event(c.cid, "closed: %s" % why)

    def _accept(self, sel, mode):
        try:
            client, _ = self._lsock.accept()
        except OSError:
            return
        client.setblocking(False)
        if len(self._conns) >= _MAX_CONNS:
            _rst(client)
            return
        self._ids += 1
        cid = self._ids
        upstream = None
        if mode != "blackhole":
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.setblocking(False)
            except OSError as e:
                self._event(cid, "upstream connect failed: %s" % e)
                _rst(client)  # as a refused connection would be seen
                return
        c = _Conn(cid, client, upstream, mode == "blackhole")
        self._conns[cid] = c
        if mode != "stall":
            self._register(sel, c)
        self._event(cid, "accepted (%s)" % mode)
        if mode == "cut" and self._opts.get("after", 0) <= 0:
            self._close(sel, c, "cut at accept")

    def _loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self._lsock, selectors.EVENT_READ, ("listen", None))
        sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        applied_mode = "pass"
        deadline = time.monotonic() + 3600  # bounded: a proxy never lives longer than an hour
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                mode, opts = self._mode, dict(self._opts)
                heal, self._heal_pending = self._heal_pending, False
            self._opts_cache = opts
            if heal:
                for c in list(self._conns.values()):
                    if c.blackholed or c.upstream is None:
                        self._close(sel, c, "healed (was blackholed)")
            if mode != applied_mode:
                if mode in ("blackhole",):
                    for c in list(self._conns.values()):
                        self._close(sel, c, "blackhole begins")
                if mode == "cut":
                    for c in list(self._conns.values()):
                        if c.down_bytes >= opts.get("after", 0):
                            self._close(sel, c, "cut")
                for c in list(self._conns.values()):
                    (self._unregister if mode == "stall" else self._register)(sel, c)
                applied_mode = mode
            timeout = 0.01 if mode == "drip" else 0.2
            for key, _ in sel.select(timeout):
                kind, c = key.data
                if kind == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                if kind == "listen":
                    self._accept(sel, mode)
                    continue
                if c.closed:
                    continue
                sock = key.fileobj
                try:
                    data = sock.recv(_BUF)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self._close(sel, c, "%s read error %s" % (kind, e))
                    continue
                if not data:
                    self._close(sel, c, "%s EOF" % kind)
                    continue
                if c.blackholed or c.upstream is None:
                    continue  # dropped
                if kind == "client":
                    c.to_upstream += data
                else:
                    c.to_client += data
            if mode == "stall":
                continue
            now = time.monotonic()
            for c in list(self._conns.values()):
                if c.closed:
                    continue
                try:
                    if c.to_upstream:
                        n = c.upstream.send(c.to_upstream)
                        del c.to_upstream[:n]
                    if c.to_client:
                        limit = len(c.to_client)
                        if mode == "drip":
                            if now < c.next_drip:
                                continue
                            limit = min(limit, opts.get("chunk", 1))
                            c.next_drip = now + opts.get("interval", 0.02)
                        if mode == "cut":
                            limit = min(limit, max(0, opts.get("after", 0) - c.down_bytes))
                        if limit:
                            n = c.client.send(c.to_client[:limit])
                            del c.to_client[:n]
                            c.down_bytes += n
                        if mode == "cut" and c.down_bytes >= opts.get("after", 0):
                            self._close(sel, c, "cut after %d bytes" % c.down_bytes)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    self._close(sel, c, "write error %s" % e)
        for c in list(self._conns.values()):
            self._close(sel, c, "proxy stopped")
        sel.close()
