"""Self-tests of the fake API server (no C binary needed).

Run: cd tests/integration && python3 -m unittest -v test_fakeapi
"""

import errno
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import fakeapi
from fakeapi import FakeApi, merge_patch, validate_object

NS = "argo"
COLL = "/apis/argoproj.io/v1alpha1/namespaces/%s/workflowtaskresults" % NS
HERE = os.path.dirname(os.path.abspath(__file__))


def placeholder(name="wf-abc-123", wf="wf-abc", completed="false"):
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTaskResult",
        "metadata": {
            "name": name,
            "labels": {"workflows.argoproj.io/workflow": wf,
                       "workflows.argoproj.io/report-outputs-completed": completed},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                 "name": wf, "uid": "5c1c6e4b-0000-4000-8000-000000000001"}],
        },
    }


class Client:
    """A tiny HTTPS client on one kept-alive connection."""

    def __init__(self, api, token=None, ca_file=None, timeout=5.0, host="127.0.0.1"):
        self.api = api
        self.token = api.token if token is None else token
        self.ctx = ssl.create_default_context(cafile=ca_file or api.ca_file)
        self.conn = http.client.HTTPSConnection(host, api.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, ctype=None, token=None, raw=False):
        headers = {"Authorization": "Bearer " + (self.token if token is None else token)}
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            headers["Content-Type"] = ctype or ("application/json" if method == "POST"
                                                else "application/merge-patch+json")
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if raw:
            return resp, data
        return resp.status, (json.loads(data) if data else None), resp

    def create(self, obj, **kw):
        return self.request("POST", COLL, obj, **kw)

    def patch(self, name, patch, **kw):
        return self.request("PATCH", COLL + "/" + name, patch, **kw)

    def get(self, name):
        return self.request("GET", COLL + "/" + name)

    def close(self):
        self.conn.close()


class FakeApiTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fakeapi-test-")
        self.api = FakeApi(self.tmp).start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.api.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def client(self, **kw):
        c = Client(self.api, **kw)
        self.clients.append(c)
        return c


class TestObjects(FakeApiTestCase):
    def test_create_get_and_request_log(self):
        c = self.client()
        code, body, resp = c.create(placeholder())
        self.assertEqual(code, 201)
        self.assertEqual(resp.getheader("Content-Type"), "application/json")
        self.assertEqual(body["metadata"]["name"], "wf-abc-123")
        self.assertEqual(body["metadata"]["namespace"], NS)
        self.assertIn("uid", body["metadata"])
        self.assertIn("resourceVersion", body["metadata"])
        self.assertEqual(self.api.objects[(NS, "wf-abc-123")]["metadata"]["labels"]
                         ["workflows.argoproj.io/report-outputs-completed"], "false")
        code, got, _ = c.get("wf-abc-123")
        self.assertEqual(code, 200)
        self.assertEqual(got, body)

        r0, r1 = self.api.requests
        self.assertEqual((r0.method, r0.path, r0.status), ("POST", COLL, 201))
        self.assertEqual(r0.header("Content-Type"), "application/json")
        self.assertEqual(r0.token, self.api.token)
        self.assertEqual(r0.json, placeholder())
        self.assertEqual(json.loads(r0.body), placeholder())
        self.assertLessEqual(r0.t_recv, r0.t_sent)
        self.assertTrue(r0.done)
        self.assertEqual(r0.conn_id, r1.conn_id, "keep-alive: both requests on one connection")
        self.assertEqual((r1.method, r1.status), ("GET", 200))
        self.assertIs(self.api.wait_for(lambda r: r.method == "GET"), r1)

    def test_409_already_exists(self):
        c = self.client()
        self.assertEqual(c.create(placeholder())[0], 201)
        code, body, _ = c.create(placeholder())
        self.assertEqual(code, 409)
        self.assertEqual(body["kind"], "Status")
        self.assertEqual(body["apiVersion"], "v1")
        self.assertEqual(body["status"], "Failure")
        self.assertEqual(body["reason"], "AlreadyExists")
        self.assertEqual(body["code"], 409)
        self.assertEqual(body["message"], 'workflowtaskresults.argoproj.io "wf-abc-123" already exists')
        self.assertEqual(body["details"], {"name": "wf-abc-123", "group": "argoproj.io",
                                           "kind": "workflowtaskresults"})

    def test_merge_patch_semantics(self):
        c = self.client()
        obj = placeholder()
        obj["metadata"]["labels"]["extra"] = "x"
        obj["outputs"] = {"parameters": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}],
                          "result": "old"}
        code, created, _ = c.create(obj)
        self.assertEqual(code, 201)
        patch = {"metadata": {"creationTimestamp": None,
                              "labels": {"workflows.argoproj.io/report-outputs-completed": "true",
                                         "extra": None}},
                 "outputs": {"parameters": [{"name": "c", "value": "3"}], "result": None},
                 "phase": "Error", "message": "m"}
        code, new, _ = c.patch("wf-abc-123", patch)
        self.assertEqual(code, 200, new)
        labels = new["metadata"]["labels"]
        self.assertEqual(labels, {"workflows.argoproj.io/workflow": "wf-abc",
                                  "workflows.argoproj.io/report-outputs-completed": "true"})
        self.assertEqual(new["outputs"], {"parameters": [{"name": "c", "value": "3"}]}, "list replaced, null deletes")
        self.assertEqual(new["metadata"]["ownerReferences"], obj["metadata"]["ownerReferences"], "untouched kept")
        self.assertEqual((new["phase"], new["message"]), ("Error", "m"))
        self.assertEqual(new["metadata"]["uid"], created["metadata"]["uid"])
        self.assertEqual(new["metadata"]["creationTimestamp"], created["metadata"]["creationTimestamp"],
                         "system fields survive a null in the patch")
        self.assertNotEqual(new["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"])
        self.assertEqual(self.api.get_object(NS, "wf-abc-123"), new)

    def test_merge_patch_function_rfc7386_examples(self):
        cases = [
            ({"a": "b"}, {"a": "c"}, {"a": "c"}),
            ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
            ({"a": "b"}, {"a": None}, {}),
            ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
            ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
            ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
            ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
            ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
            (["a", "b"], ["c", "d"], ["c", "d"]),
            ({"a": "b"}, ["c"], ["c"]),
            ({"a": "foo"}, None, None),
            ({"a": "foo"}, "bar", "bar"),
            ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
            ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
            ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ]
        for target, patch, want in cases:
            self.assertEqual(merge_patch(target, patch), want, (target, patch))

    def test_patch_404(self):
        code, body, _ = self.client().patch("nope", {"outputs": {}})
        self.assertEqual(code, 404)
        self.assertEqual(body["reason"], "NotFound")
        self.assertEqual(body["message"], 'workflowtaskresults.argoproj.io "nope" not found')

    def test_content_types(self):
        c = self.client()
        self.assertEqual(c.create(placeholder(), ctype="application/merge-patch+json")[0], 415)
        self.assertEqual(c.create(placeholder(), ctype="application/json; charset=utf-8")[0], 201)
        for ct in ("application/json", "application/strategic-merge-patch+json", "application/json-patch+json"):
            code, body, _ = c.patch("wf-abc-123", {"phase": "x"}, ctype=ct)
            self.assertEqual(code, 415, ct)
            self.assertEqual(body["reason"], "UnsupportedMediaType")
        self.assertEqual(c.patch("wf-abc-123", {"phase": "x"})[0], 200)

    def test_bad_json_and_names(self):
        c = self.client()
        code, body, _ = c.create(b'{"apiVersion": ', ctype="application/json")
        self.assertEqual((code, body["reason"]), (400, "BadRequest"))
        self.assertEqual(c.create(placeholder())[0], 201)
        self.assertEqual(c.patch("wf-abc-123", b"{nope")[0], 400)
        code, body, _ = c.patch("wf-abc-123", {"metadata": {"name": "other"}})
        self.assertEqual(code, 400, body)
        self.assertIn("does not match the name on the URL", body["message"])
        other = placeholder("wf-2")
        other["metadata"]["namespace"] = "elsewhere"
        self.assertEqual(c.create(other)[0], 400)
        other["metadata"]["namespace"] = NS
        self.assertEqual(c.create(other)[0], 201)
        wrong_kind = placeholder("wf-3")
        wrong_kind["kind"] = "Workflow"
        self.assertEqual(c.create(wrong_kind)[0], 400)
        with_rv = placeholder("wf-4")
        with_rv["metadata"]["resourceVersion"] = "1"
        self.assertEqual(c.create(with_rv)[0], 422)

    def test_401_then_accepted(self):
        c = self.client(token="wrong-token")
        code, body, _ = c.create(placeholder())
        self.assertEqual(code, 401)
        self.assertEqual((body["kind"], body["reason"], body["code"]), ("Status", "Unauthorized", 401))
        code, _, _ = c.create(placeholder(), token="")
        self.assertEqual(code, 401)
        self.assertNotIn((NS, "wf-abc-123"), self.api.objects)
        self.api.accepted_tokens.add("wrong-token")
        self.assertEqual(c.create(placeholder())[0], 201)
        self.api.accepted_tokens.discard(self.api.token)
        self.assertEqual(c.get("wf-abc-123")[0], 200)
        self.assertEqual(c.get("wf-abc-123")[0], 200)
        self.assertEqual(c.request("GET", COLL + "/wf-abc-123", token=self.api.token)[0], 401)

    def test_422_crd_violations(self):
        c = self.client()
        bad_label = placeholder()
        bad_label["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"] = False
        bad_param = placeholder()
        bad_param["outputs"] = {"parameters": [{"value": "no name"}]}
        bad_type = placeholder()
        bad_type["outputs"] = {"result": 42}
        unknown = placeholder()
        unknown["outputs"] = {"results": "typo"}
        bad_owner = placeholder()
        del bad_owner["metadata"]["ownerReferences"][0]["uid"]
        no_name = placeholder()
        del no_name["metadata"]["name"]
        for obj, field in ((bad_label, "metadata.labels"), (bad_param, "outputs.parameters[0].name"),
                           (bad_type, "outputs.result"), (unknown, "outputs.results"),
                           (bad_owner, "metadata.ownerReferences[0].uid"), (no_name, "metadata.name")):
            code, body, _ = c.create(obj)
            self.assertEqual(code, 422, field)
            self.assertEqual(body["reason"], "Invalid")
            self.assertIn(field, body["message"])
        self.assertEqual(self.api.objects, {})
        self.assertEqual(c.create(placeholder())[0], 201)
        before = self.api.get_object(NS, "wf-abc-123")
        code, body, _ = c.patch("wf-abc-123", {"outputs": {"parameters": [{"name": "bad name!", "value": "v"}]}})
        self.assertEqual(code, 422)
        self.assertIn("outputs.parameters[0].name", body["message"])
        code, body, _ = c.patch("wf-abc-123", {"progress": 1})
        self.assertEqual(code, 422)
        self.assertEqual(self.api.get_object(NS, "wf-abc-123"), before, "a rejected patch changes nothing")

    def test_validate_full_report(self):
        obj = placeholder(completed="true")
        obj["metadata"]["labels"]["workflows.argoproj.io/controller-instanceid"] = "ctl-1"
        obj["outputs"] = {
            "parameters": [{"name": "p", "value": "v", "valueFrom": {"path": "/tmp/p", "default": "d"}},
                           {"name": "q", "value": "constant"}],
            "artifacts": [{"name": "out", "path": "/tmp/out", "s3": {"key": "wf/pod/out.tgz"}},
                          {"name": "main-logs", "s3": {"key": "wf/pod/main.log"}}],
            "result": "hello",
        }
        obj["phase"] = "Error"
        obj["message"] = "parameter x: missing"
        obj["progress"] = "1/2"
        self.assertEqual(validate_object(obj), [])
        obj["outputs"]["artifacts"][0]["archive"] = {"none": {"x": 1}}
        self.assertEqual(len(validate_object(obj)), 1)
        self.assertEqual(validate_object(obj, strict=False), [])


class TestChunkedAndWaiting(FakeApiTestCase):
    def test_chunked_request_body(self):
        ctx = ssl.create_default_context(cafile=self.api.ca_file)
        conn = http.client.HTTPSConnection("127.0.0.1", self.api.port, context=ctx, timeout=5)
        body = json.dumps(placeholder()).encode()
        conn.request("POST", COLL, body=iter([body[:10], body[10:]]),
                     headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.api.token},
                     encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        self.assertEqual(resp.status, 201)
        self.assertEqual(self.api.requests[0].json, placeholder())

    def test_wait_for_wakes_on_request_and_times_out(self):
        got = {}
        started = threading.Event()

        def waiter():
            started.set()
            got["r"] = self.api.wait_for(lambda r: r.method == "POST", timeout=10)

        t = threading.Thread(target=waiter)
        t.start()
        started.wait()
        self.client().create(placeholder())
        t.join(10)
        self.assertEqual(got["r"].status, 201)
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            self.api.wait_for(lambda r: r.method == "DELETE", timeout=0.2)
        self.assertLess(time.monotonic() - t0, 2)
        c = self.client()
        c.create(placeholder("wf-2"))
        c.create(placeholder("wf-3"))
        self.assertEqual([r.json["metadata"]["name"] for r in
                          self.api.wait_count(lambda r: r.method == "POST", 3, timeout=1)],
                         ["wf-abc-123", "wf-2", "wf-3"])
        obj = self.api.wait_object(NS, "wf-3", timeout=1)
        self.assertEqual(obj["metadata"]["name"], "wf-3")


class TestFaults(FakeApiTestCase):
    def test_status_with_retry_after_and_counting(self):
        self.api.add_fault("status", method="POST", path=r"/workflowtaskresults$", code=429, retry_after=1, times=2)
        self.api.add_fault("status", method="PATCH", nth=2, code=503)
        c = self.client()
        for _ in range(2):
            code, body, resp = c.create(placeholder())
            self.assertEqual(code, 429)
            self.assertEqual(resp.getheader("Retry-After"), "1")
            self.assertEqual((body["kind"], body["reason"], body["code"]), ("Status", "TooManyRequests", 429))
        self.assertEqual(c.create(placeholder())[0], 201)
        self.assertEqual(c.patch("wf-abc-123", {"phase": "a"})[0], 200)
        code, body, _ = c.patch("wf-abc-123", {"phase": "b"})
        self.assertEqual((code, body["reason"]), (503, "ServiceUnavailable"))
        self.assertEqual(c.patch("wf-abc-123", {"phase": "c"})[0], 200)
        self.assertEqual(self.api.objects[(NS, "wf-abc-123")]["phase"], "c")
        self.assertEqual([r.status for r in self.api.requests], [429, 429, 201, 200, 503, 200])
        self.assertEqual([r.fault.action if r.fault else None for r in self.api.requests],
                         ["status", "status", None, None, "status", None])

    def test_status_raw_malformed_body(self):
        self.api.add_fault("status", method="POST", code=201, raw=b'{"kind": "WorkflowTaskRes')
        resp, data = self.client().request("POST", COLL, placeholder(), raw=True)
        self.assertEqual(resp.status, 201)
        self.assertEqual(data, b'{"kind": "WorkflowTaskRes')
        self.assertEqual(self.api.objects, {}, "a faulted request is not processed")

    def test_reset(self):
        self.api.add_fault("reset", method="POST", times=1)
        c = self.client()
        with self.assertRaises(ConnectionResetError):
            c.create(placeholder())
        r = self.api.wait_for(lambda r: r.method == "POST")
        self.assertIsNone(r.status)
        self.assertEqual(r.json, placeholder(), "the request was read before the reset")
        self.assertEqual(self.client().create(placeholder())[0], 201)

    def test_half(self):
        self.api.add_fault("half", method="POST")
        with self.assertRaises(http.client.IncompleteRead):
            self.client().create(placeholder())
        self.assertIn((NS, "wf-abc-123"), self.api.objects, "half: the request was processed")

    def test_hang_times_out_and_stop_releases(self):
        self.api.add_fault("hang", method="POST")
        c = self.client(timeout=0.3)
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            c.create(placeholder())
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)
        r = self.api.wait_for(lambda r: r.method == "POST", done=False, timeout=1)
        self.assertFalse(r.done)
        t0 = time.monotonic()
        self.api.stop()
        self.api.wait_for(lambda r: r.method == "POST" and r.done, timeout=3)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertIsNone(r.status)

    def test_hang_for_a_time_then_answer(self):
        self.api.add_fault("hang", method="POST", seconds=0.3, then="answer")
        t0 = time.monotonic()
        code, _, _ = self.client().create(placeholder())
        self.assertEqual(code, 201)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_delay(self):
        self.api.add_fault("delay", method="POST", seconds=0.2)
        t0 = time.monotonic()
        self.assertEqual(self.client().create(placeholder())[0], 201)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)

    def test_slow(self):
        self.api.add_fault("slow", method="POST", chunk=64, delay=0.02)
        t0 = time.monotonic()
        code, body, _ = self.client().create(placeholder())
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 201)
        self.assertEqual(body["metadata"]["name"], "wf-abc-123")
        n = len(json.dumps(body))
        self.assertGreaterEqual(elapsed, 0.02 * (n // 64 - 1))

    def test_garbage(self):
        self.api.add_fault("garbage", method="POST")
        with self.assertRaises(http.client.HTTPException):
            self.client().create(placeholder())

    def test_tls_close(self):
        self.api.add_fault("tls_close", times=2)
        for _ in range(2):
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                self.client().create(placeholder())
        self.assertEqual(self.client().create(placeholder())[0], 201)
        tls = [e for e in self.api.events if e[2] == "tls"]
        self.assertEqual([e[3] for e in tls][:2], ["tls_close fault"] * 2)
        self.assertEqual(len(self.api.requests), 1, "no request reached HTTP on the closed connections")

    def test_tls_close_with_reset(self):
        self.api.add_fault("tls_close", times=1, linger0=True)
        with self.assertRaises(ConnectionResetError):
            self.client().create(placeholder())

    def test_fault_list_is_mutable(self):
        rule = self.api.add_fault("status", code=500)
        c = self.client()
        self.assertEqual(c.create(placeholder())[0], 500)
        self.api.faults.remove(rule)
        self.assertEqual(c.create(placeholder())[0], 201)
        self.api.faults.add("status", code=503, method="GET")
        self.assertEqual(len(self.api.faults), 1)
        self.api.faults.clear()
        self.assertEqual(c.get("wf-abc-123")[0], 200)


class TestThrottle(FakeApiTestCase):
    def test_token_bucket_refill(self):
        b = fakeapi.TokenBucket(rate=10, burst=2)
        t = b.t
        self.assertEqual([b.take(t), b.take(t), b.take(t)], [True, True, False])
        self.assertFalse(b.take(t + 0.05))       # half a token
        self.assertTrue(b.take(t + 0.11))        # a whole token after 110 ms at 10/s
        self.assertTrue(b.take(t + 100) and b.take(t + 100))
        self.assertFalse(b.take(t + 100))        # never more than burst saved up
        self.assertEqual((b.allowed, b.refused), (5, 3))

    def test_429_with_retry_after_beyond_the_bucket(self):
        bucket = self.api.throttle(rate=0.001, burst=2, retry_after=3)
        c = self.client()
        self.assertEqual(c.create(placeholder("a-1"))[0], 201)
        self.assertEqual(c.create(placeholder("a-2"))[0], 201)
        code, body, resp = c.create(placeholder("a-3"))
        self.assertEqual(code, 429)
        self.assertEqual(resp.getheader("Retry-After"), "3")
        self.assertEqual((body["reason"], body["code"], body["details"]["retryAfterSeconds"]),
                         ("TooManyRequests", 429, 3))
        self.assertIsNone(self.api.get_object(NS, "a-3"), "a throttled request changes nothing")
        self.assertEqual([r.throttled for r in self.api.requests], [False, False, True])
        self.assertEqual([r.status for r in self.api.requests], [201, 201, 429])
        self.assertEqual((bucket.allowed, bucket.refused), (2, 1))
        self.api.throttle(None)                  # off again: served normally
        self.assertEqual(c.create(placeholder("a-3"))[0], 201)

    def test_methods_and_before_faults(self):
        self.api.throttle(rate=0.001, burst=1, methods={"PATCH"})
        self.api.add_fault("status", method="PATCH", code=503, times=1)
        c = self.client()
        for i in range(3):
            self.assertEqual(c.create(placeholder("b-%d" % i))[0], 201)   # POST not throttled
        self.assertEqual(c.patch("b-0", {"metadata": {"labels": {"x": "y"}}})[0], 503)  # the fault
        self.assertEqual(c.patch("b-0", {"metadata": {"labels": {"x": "y"}}})[0], 429)

    def test_backlog_option(self):
        api = FakeApi(os.path.join(self.tmp, "b"), backlog=2048).start()
        try:
            self.assertEqual(api._server.request_queue_size, 2048)
            self.assertEqual(self.api._server.request_queue_size, 64)   # the default is unchanged
        finally:
            api.stop()


class TestTlsAndNetwork(FakeApiTestCase):
    def test_hostname_and_san(self):
        self.assertEqual(self.client(host="localhost").create(placeholder())[0], 201)

    def test_wrong_ca_client_fails(self):
        other = self.api.make_other_pki()
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.client(ca_file=other["ca_cert"]).create(placeholder())
        self.assertEqual(self.api.requests, [], "nothing (and no token) reached the server")
        self.api.wait_until(lambda: any("handshake failed" in e[3] for e in self.api.events), timeout=3)

    def test_server_with_other_ca(self):
        other = fakeapi.make_pki(os.path.join(self.tmp, "x"), prefix="other-")
        with FakeApi(os.path.join(self.tmp, "srv2"), pki=other) as api2:
            ctx = ssl.create_default_context(cafile=self.api.ca_file)
            conn = http.client.HTTPSConnection("127.0.0.1", api2.port, context=ctx, timeout=5)
            with self.assertRaises(ssl.SSLCertVerificationError):
                conn.request("GET", COLL)
            conn.close()

    def test_down_and_up_on_same_port(self):
        c = self.client()
        self.assertEqual(c.create(placeholder())[0], 201)
        port = self.api.port
        self.api.down()
        with self.assertRaises(ConnectionRefusedError):
            self.client().create(placeholder("wf-2"))
        with self.assertRaises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
            c.get("wf-abc-123")  # the kept-alive connection was reset
        # While down the port stays reserved, so no other socket (e.g. some
        # process's ephemeral port) can take it and make up() fail.
        other = socket.socket()
        try:
            with self.assertRaises(OSError) as ctx:
                other.bind(("127.0.0.1", port))
            self.assertEqual(ctx.exception.errno, errno.EADDRINUSE)
        finally:
            other.close()
        self.api.up()
        self.assertEqual(self.api.port, port)
        self.assertEqual(self.client().get("wf-abc-123")[0], 200, "state kept across down/up")

    def test_down_reset_mode(self):
        self.api.down(mode="reset")
        with self.assertRaises((ConnectionResetError, ssl.SSLError)):
            self.client().create(placeholder())
        self.api.up()
        self.assertEqual(self.client().create(placeholder())[0], 201)


class TestCli(unittest.TestCase):
    def test_cli_serves_until_sigterm(self):
        tmp = tempfile.mkdtemp(prefix="fakeapi-cli-")
        self.addCleanup(shutil.rmtree, tmp, True)
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "fakeapi.py"), "--dir", tmp, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = p.stdout.readline().strip()
            self.assertRegex(url, r"^https://127\.0\.0\.1:\d+$")
            port = int(url.rsplit(":", 1)[1])
            with open(os.path.join(tmp, "token")) as f:
                token = f.read()
            ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.crt"))
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
            conn.request("POST", COLL, body=json.dumps(placeholder()),
                         headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
            self.assertEqual(conn.getresponse().status, 201)
            conn.close()
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            self.assertIn("wf-abc-123", p.stderr.read())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()


if __name__ == "__main__":
    unittest.main()
