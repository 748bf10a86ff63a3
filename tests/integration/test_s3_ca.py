"""caSecret: S3 over HTTPS with a private CA, through the real binary.

moto_server speaks plain HTTP, so ``TlsFront`` terminates TLS in front of it
with a throwaway CA's server certificate (fakeapi.make_pki: SAN IP:127.0.0.1)
and pipes the bytes through unchanged (the Host header, and so the SigV4
signature, arrive as sent). The upload must succeed with that CA in
/argo/secret/<name>/<key>, and fail at once, permanently, with a clear TLS
message without it or with another CA.
"""
import os
import socket
import ssl
import threading
import unittest
import uuid

import test_lifecycle as tl
from fakeapi import make_pki
from harness import script_template, tgz_of
from test_s3 import HAVE_BOTO, MOTO, Moto

BUCKET = "artifacts"


class TlsFront:
    """TLS on 127.0.0.1:<port>, plain TCP to the upstream port."""

    def __init__(self, cert, key, upstream_port):
        self.upstream = upstream_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.handshakes_ok = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(30)
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        self.handshakes_ok += 1
        up = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)

        def pipe(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pipe, args=(up, tls), daemon=True)
        t.start()
        pipe(tls, up)
        t.join(30)
        tls.close()
        up.close()

    def stop(self):
        self.stopping = True
        self.sock.close()


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
class CaSecretTests(tl.LifecycleCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.moto = Moto()

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    def setUp(self):
        super().setUp()
        self.pki = make_pki(os.path.join(self.tmp, "pki"))
        self.front = TlsFront(self.pki["server_cert"], self.pki["server_key"], self.moto.port)
        self.addCleanup(self.front.stop)

    def run_pod(self, ca_pem=None, code=0):
        self.prefix = "tls-%s" % uuid.uuid4().hex[:8]
        loc = {"bucket": BUCKET, "endpoint": "127.0.0.1:%d" % self.front.port, "key": self.prefix,
               "accessKeySecret": {"name": "my-cred", "key": "accesskey"},
               "secretKeySecret": {"name": "my-cred", "key": "secretkey"}}
        if ca_pem is not None:
            loc["caSecret"] = {"name": "my-ca", "key": "ca.crt"}
        pod = self.pod(template=script_template(artifacts=[{"name": "out", "path": "/tmp/out.txt"}],
                                                archiveLocation={"s3": loc}))
        pod.secret_file("my-cred", "accesskey", self.moto.access_key)
        pod.secret_file("my-cred", "secretkey", self.moto.secret_key)
        if ca_pem is not None:
            pod.secret_file("my-ca", "ca.crt", ca_pem)
        self.blob = tgz_of({"out.txt": b"over TLS\n"})
        pod.stage_artifact("/tmp/out.txt", self.blob)
        pod.start()
        pod.finish()
        self.assert_exit(pod, code, timeout=30)
        self.assert_no_leak(pod, self.moto.secret_key)
        return pod

    def ca(self, pki=None):
        with open((pki or self.pki)["ca_cert"]) as f:
            return f.read()

    def test_upload_with_the_right_ca(self):
        pod = self.run_pod(self.ca())
        key = self.prefix + "/out.tgz"
        self.assertEqual(self.moto.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), self.blob)
        self.assertGreaterEqual(self.front.handshakes_ok, 1)
        self.assert_termination_log_empty(pod)

    def test_without_a_ca_the_server_is_not_trusted(self):
        pod = self.run_pod(None, code=64)
        self.assert_failure_marker(pod, 'output artifact "out"', "certificate")
        self.assertEqual(self.front.handshakes_ok, 0)
        self.assertEqual(self.front.accepted, 1, "a TLS verification failure is not retried")

    def test_another_ca_is_refused(self):
        other = make_pki(os.path.join(self.tmp, "pki"), prefix="other-")
        pod = self.run_pod(self.ca(other), code=64)
        self.assert_failure_marker(pod, 'output artifact "out"', "certificate")
        self.assertEqual(self.front.handshakes_ok, 0)
        self.assertEqual(self.front.accepted, 1, "a TLS verification failure is not retried")

    def test_missing_ca_file(self):
        self.prefix = "tls-missing"
        loc = {"bucket": BUCKET, "endpoint": "127.0.0.1:%d" % self.front.port, "key": self.prefix,
               "accessKeySecret": {"name": "my-cred", "key": "accesskey"},
               "secretKeySecret": {"name": "my-cred", "key": "secretkey"},
               "caSecret": {"name": "my-ca", "key": "ca.crt"}}
        pod = self.pod(template=script_template(artifacts=[{"name": "out", "path": "/tmp/out.txt"}],
                                                archiveLocation={"s3": loc}))
        pod.secret_file("my-cred", "accesskey", self.moto.access_key)
        pod.secret_file("my-cred", "secretkey", self.moto.secret_key)
        pod.stage_artifact("/tmp/out.txt", tgz_of({"out.txt": b"x"}))
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, 'output artifact "out"', "CA", "/argo/secret/my-ca/ca.crt")
        self.assertEqual(self.front.accepted, 0)


if __name__ == "__main__":
    unittest.main()
