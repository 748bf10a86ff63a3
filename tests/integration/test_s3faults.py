"""Self-tests of s3faults.py, the fault-injecting S3 proxy (standard library
only: the upstream here is a tiny recording server, not moto)."""
import hashlib
import http.client
import http.server
import socket
import threading
import unittest
import xml.etree.ElementTree as ET

from s3faults import S3FaultProxy, error_xml, request_problems, s3_operation

AUTH = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, Signature=0"


class Upstream:
    """Answers everything 200 with an ETag (HEAD: Content-Length 1234) and
    records what reached it."""

    def __init__(self):
        self.seen = []
        up = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                up.seen.append((self.command, self.path, body))
                data = b"" if self.command == "HEAD" else b"<Ok>" + self.path.encode() + b"</Ok>"
                self.send_response(200)
                self.send_header("ETag", '"%s"' % hashlib.md5(body).hexdigest())
                self.send_header("Content-Length", "1234" if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class S3FaultsTests(unittest.TestCase):
    def setUp(self):
        self.up = Upstream()
        self.proxy = S3FaultProxy(self.up.port)
        self.addCleanup(self.up.stop)
        self.addCleanup(self.proxy.stop)

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        try:
            h = {"Authorization": AUTH, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    def test_operations(self):
        cases = [("PUT", "b", "k", {"partNumber": "1", "uploadId": "u"}, "UploadPart"),
                 ("PUT", "b", "k", {}, "PutObject"), ("PUT", "b", "", {}, "CreateBucket"),
                 ("POST", "b", "k", {"uploads": ""}, "CreateMultipartUpload"),
                 ("POST", "b", "k", {"uploadId": "u"}, "CompleteMultipartUpload"),
                 ("DELETE", "b", "k", {"uploadId": "u"}, "AbortMultipartUpload"),
                 ("HEAD", "b", "k", {}, "HeadObject"), ("HEAD", "b", "", {}, "HeadBucket"),
                 ("GET", "b", "k", {"uploadId": "u"}, "ListParts")]
        for m, b, k, q, op in cases:
            self.assertEqual(s3_operation(m, b, k, q), op)

    def test_forwards_and_records(self):
        body = b"x" * 1000
        st, h, data = self.request("PUT", "/bucket/a/b.bin?partNumber=3&uploadId=U1", body)
        self.assertEqual(st, 200)
        self.assertEqual(h["etag"], '"%s"' % hashlib.md5(body).hexdigest())
        self.assertEqual(data, b"<Ok>/bucket/a/b.bin?partNumber=3&uploadId=U1</Ok>")
        r = self.proxy.wait_for(lambda r: True, done=True)
        self.assertEqual((r.op, r.bucket, r.key, r.part, r.upload_id, r.attempt), ("UploadPart", "bucket",
                         "a/b.bin", 3, "U1", 1))
        self.assertEqual((r.content_length, r.body_read, r.body_md5, r.status),
                         (1000, 1000, hashlib.md5(body).hexdigest(), 200))
        # HEAD: the upstream's Content-Length (the object's size) is kept.
        st, h, _ = self.request("HEAD", "/bucket/a/b.bin")
        self.assertEqual(h["content-length"], "1234")

    def test_virtual_host_request(self):
        self.request("PUT", "/dir/k.txt", b"1", {"Host": "mybucket.s3.test:9000"})
        r = self.proxy.recorded()[0]
        self.assertEqual((r.bucket, r.key, r.op), ("mybucket", "dir/k.txt", "PutObject"))

    def test_error_xml_and_attempts(self):
        f = self.proxy.add("error", op="UploadPart", part=2, attempt=1, code="SlowDown", retry_after=3)
        path = "/b/k?partNumber=2&uploadId=U"
        st, h, data = self.request("PUT", path, b"abc")
        self.assertEqual(st, 503)
        self.assertEqual(h["retry-after"], "3")
        root = ET.fromstring(data)
        self.assertEqual(root.tag, "Error")
        self.assertEqual(root.findtext("Code"), "SlowDown")
        self.assertEqual(root.findtext("Resource"), "/b/k")
        self.assertTrue(root.findtext("RequestId"))
        self.assertEqual(self.up.seen, [], "not forwarded")
        st, _, _ = self.request("PUT", path, b"abc")
        self.assertEqual(st, 200, "the second attempt passes")
        self.assertEqual(f.applied, 1)
        self.assertEqual([r.attempt for r in self.proxy.recorded()], [1, 2])
        self.assertEqual(self.proxy.parts_sent(), {2: 2})
        for code, status in (("InternalError", 500), ("RequestTimeout", 400), ("AccessDenied", 403),
                             ("NoSuchUpload", 404)):
            self.assertEqual(ET.fromstring(error_xml(code)).findtext("Code"), code)
            self.proxy.clear()
            self.proxy.add("error", code=code)
            self.assertEqual(self.request("DELETE", "/b/k?uploadId=U")[0], status)

    def test_error_200_after_forward(self):
        self.proxy.add("error", op="CompleteMultipartUpload", code="InternalError", status200=True,
                       when="after_forward")
        st, _, data = self.request("POST", "/b/k?uploadId=U", b"<C/>")
        self.assertEqual(st, 200)
        self.assertIn(b"<Code>InternalError</Code>", data)
        self.assertEqual(len(self.up.seen), 1, "the store took it")

    def test_lost_answer(self):
        self.proxy.add("reset", op="CompleteMultipartUpload", when="after_forward")
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.request("POST", "/b/k?uploadId=U", b"<C/>")
        self.assertEqual(len(self.up.seen), 1, "the store took it")
        r = self.proxy.wait_for(lambda r: True, done=True)
        self.assertEqual((r.fault, r.status, r.answered), ("reset:after_forward", None, False))

    def test_reset_mid_body(self):
        self.proxy.add("reset", op="PutObject", when="mid_body", after_bytes=100000)
        with self.assertRaises((ConnectionError, http.client.HTTPException, BrokenPipeError)):
            self.request("PUT", "/b/k", b"y" * 1000000)
        r = self.proxy.wait_for(lambda r: True, done=True)
        self.assertEqual(r.body_read, 100000)
        self.assertEqual(self.up.seen, [])

    def test_before_body_answer_skips_100_continue(self):
        self.proxy.add("error", op="PutObject", code="AccessDenied", when="before_body")
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        s.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        got = b""
        while b"</Error>" not in got:
            piece = s.recv(65536)
            if not piece:
                break
            got += piece
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 403 "), got[:40])
        self.assertNotIn(b"100 Continue", got)
        self.assertIn(b"Connection: close", got)
        self.assertEqual(self.proxy.recorded()[0].body_read, 0)

    def test_request_problems(self):
        self.request("PUT", "/b/k?partNumber=1&uploadId=U", b"z" * 10)
        self.request("GET", "/b/k?X-Amz-Credential=AKIAEXAMPLE", headers={"Authorization": "",
                     "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        probs = request_problems(self.proxy.recorded(), "AKIAEXAMPLE", "SECRET", part_size=10, size=10)
        self.assertEqual(len(probs), 3, probs)  # not SigV4, key in the URL, presigned
        self.assertTrue(all("GetObject" in p for p in probs), probs)
        probs = request_problems(self.proxy.recorded("UploadPart"), "AKIAEXAMPLE", "SECRET", part_size=8, size=10)
        self.assertEqual(len(probs), 2, probs)  # Content-Length and body length


if __name__ == "__main__":
    unittest.main()
