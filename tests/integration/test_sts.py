"""Credentials from STS (src/sts.c) and the session token, through the real binary.

moto_server is both STS and S3. What moto does here (moto 5.x, found by
experiment):

* AssumeRoleWithWebIdentity works and its temporary credentials pass moto's
  SigV4 checks for S3 (with x-amz-security-token; a wrong token is 403
  InvalidToken, a missing one 403 InvalidAccessKeyId), so the upload proves
  the session token was sent.
* Once INITIAL_NO_AUTH_ACTION_COUNT is reached, moto demands a signature on
  every action, AssumeRoleWithWebIdentity too, which AWS serves unsigned:
  the request fails with a 500 (KeyError on the Authorization header). So
  argowait talks to ``StsFront``, a small proxy that records what argowait
  sent (unsigned, the token, the role), signs the unsigned
  AssumeRoleWithWebIdentity with the IAM user's key and forwards it, and
  passes signed requests (AssumeRole) through untouched. It can also answer
  in moto's place (errors, throttling).
* AssumeRole signed by curl (service sts) with the web identity's temporary
  credentials passes moto's checks; GetSessionToken answers a fixed key id
  that moto's own S3 does not know, so session-token tests use AssumeRole.
"""
import http.client
import http.server
import json
import os
import re
import threading
import time
import unittest
import urllib.parse
import uuid

import test_lifecycle as tl
from harness import script_template, tgz_of, wait_until
from test_s3 import HAVE_BOTO, MOTO, Moto, free_port

BUCKET = "artifacts"
ACCOUNT = "123456789012"
WEB_ROLE = "arn:aws:iam::%s:role/argo-irsa" % ACCOUNT
TARGET_ROLE = "arn:aws:iam::%s:role/argo-target" % ACCOUNT
TOKEN_REL = "var/run/secrets/eks.amazonaws.com/serviceaccount/token"


def setup_roles(moto):
    """Two roles any principal may assume, allowed S3 and sts:AssumeRole."""
    import boto3
    iam = boto3.client("iam", endpoint_url=moto.url, region_name="us-east-1",
                       aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "*", "Federated": "oidc"},
        "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]}]})
    allow = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}]})
    for name in ("argo-irsa", "argo-target"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=allow)


class StsFront:
    """An STS endpoint in front of moto (see the module docstring).

    ``answer(form, n)`` may return (status, body) to answer request n
    (1-based) in moto's place, or None to forward it."""

    def __init__(self, moto, answer=None):
        self.moto = moto
        self.requests = []      # dicts: method, headers, form
        self.responses = []     # (status, body) sent back
        self.answer = answer or (lambda form, n: None)
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
                front.requests.append({"method": "POST", "headers": dict(self.headers.items()),
                                       "form": form, "raw": body})
                canned = front.answer(form, len(front.requests))
                status, data = canned if canned else front.forward(self, body, form)
                data = data.encode() if isinstance(data, str) else data
                front.responses.append((status, data))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, handler, body, form):
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("expect", "host")}
        if "Authorization" not in handler.headers:
            # moto wants a signature even here: sign as the IAM user.
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            req = AWSRequest(method="POST", url=self.moto.url + "/", data=body,
                             headers={"Content-Type": headers.get("Content-Type")})
            SigV4Auth(Credentials(self.moto.access_key, self.moto.secret_key), "sts", "us-east-1").add_auth(req)
            headers = dict(req.headers.items())
        else:
            headers["Host"] = handler.headers["Host"]  # what the signature covers
        conn = http.client.HTTPConnection("127.0.0.1", self.moto.port, timeout=30)
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def credentials(self):
        """Every secret STS handed out through this front."""
        out = []
        for status, data in self.responses:
            for tag in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
                out += re.findall(r"<%s>([^<]+)</%s>" % (tag, tag), data.decode("utf-8", "replace"))
        return out

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def sts_error(code, message, status=400):
    return status, ("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
                    "<Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
                    "<RequestId>4d6f-test</RequestId></ErrorResponse>" % (code, message))


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
class StsTests(tl.LifecycleCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.moto = Moto()
        setup_roles(cls.moto)

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    def setUp(self):
        super().setUp()
        self.token = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.%s.c2lnbmF0dXJl" % uuid.uuid4().hex

    def front(self, answer=None):
        f = StsFront(self.moto, answer)
        self.addCleanup(f.stop)
        return f

    def template(self, artifacts, role_arn=None, archive_logs=False, mounts=None, **s3):
        self.prefix = "irsa-%s/pod" % uuid.uuid4().hex[:8]
        loc = {"bucket": BUCKET, "endpoint": "127.0.0.1:%d" % self.moto.port, "insecure": True,
               "key": self.prefix}
        if role_arn:
            loc["roleARN"] = role_arn
        loc.update(s3)
        return script_template(artifacts=artifacts, volume_mounts=mounts,
                               archiveLocation={"s3": loc, "archiveLogs": archive_logs})

    def irsa_pod(self, template, sts_url, token_file=True, env=None, **kw):
        pod_env = {"AWS_ROLE_ARN": WEB_ROLE, "AWS_REGION": "us-east-1",
                   "AWS_STS_REGIONAL_ENDPOINTS": "regional"}
        if sts_url:
            pod_env["AWS_ENDPOINT_URL_STS"] = sts_url
        pod = self.pod(template=template, env=dict(pod_env, **(env or {})), **kw)
        pod.env["AWS_WEB_IDENTITY_TOKEN_FILE"] = pod.path(TOKEN_REL)
        if token_file:
            pod.write(TOKEN_REL, self.token + "\n")
        return pod

    def stage(self, pod, data=b"irsa bytes\n"):
        blob = tgz_of({"out.txt": data})
        pod.stage_artifact("/tmp/out.txt", blob)
        return blob

    def assert_no_secrets(self, pod, front):
        self.assert_no_leak(pod, self.token)
        for secret in front.credentials():
            self.assert_no_leak(pod, secret)

    def get(self, key):
        return self.moto.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def web_requests(self, front):
        return [r for r in front.requests if r["form"].get("Action") == "AssumeRoleWithWebIdentity"]

    # ---- the web identity, end to end

    def test_irsa_round_trip(self):
        front = self.front()
        art = {"name": "out", "path": "/tmp/out.txt"}
        pod = self.irsa_pod(self.template([art]), front.url)
        blob = self.stage(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 0)
        key = self.prefix + "/out.tgz"
        self.assertEqual(self.get(key), blob)
        obj = pod.task_result()
        self.assertEqual(obj["outputs"]["artifacts"], [dict(art, s3={"key": key})])
        reqs = self.web_requests(front)
        self.assertEqual(len(reqs), 1, front.requests)
        r = reqs[0]
        self.assertNotIn("Authorization", r["headers"], "AssumeRoleWithWebIdentity is unsigned")
        self.assertEqual(r["form"]["WebIdentityToken"], self.token)
        self.assertEqual(r["form"]["RoleArn"], WEB_ROLE)
        self.assertEqual(r["form"]["Version"], "2011-06-15")
        self.assertEqual(r["form"]["RoleSessionName"], ("argowait-" + pod.pod_name)[:64])
        self.assertIn("credentials for role " + WEB_ROLE, pod.log_text())
        self.assert_no_secrets(pod, front)
        self.assert_termination_log_empty(pod)

    def test_role_arn_is_assumed_with_the_web_identity(self):
        front = self.front()
        art = {"name": "out", "path": "/tmp/out.txt"}
        pod = self.irsa_pod(self.template([art], role_arn=TARGET_ROLE), front.url,
                            env={"AWS_ROLE_SESSION_NAME": "chain-test"})
        blob = self.stage(pod, b"chained\n")
        pod.start()
        pod.finish()
        self.assert_exit(pod, 0)
        self.assertEqual(self.get(self.prefix + "/out.tgz"), blob)
        actions = [r["form"].get("Action") for r in front.requests]
        self.assertEqual(actions, ["AssumeRoleWithWebIdentity", "AssumeRole"])
        ar = front.requests[1]
        self.assertEqual(ar["form"]["RoleArn"], TARGET_ROLE)
        self.assertEqual(ar["form"]["RoleSessionName"], "chain-test")
        self.assertNotIn("WebIdentityToken", ar["form"])
        # Signed (SigV4, service sts) with the web identity's temporary key.
        web_key = re.search(r"<AccessKeyId>([^<]+)<", front.responses[0][1].decode()).group(1)
        self.assertRegex(ar["headers"]["Authorization"],
                         r"^AWS4-HMAC-SHA256 Credential=%s/\d{8}/us-east-1/sts/aws4_request" % web_key)
        self.assertIn("x-amz-security-token", {k.lower() for k in ar["headers"]})
        self.assert_no_secrets(pod, front)

    # ---- with the other stores: STS belongs to the S3 store alone

    def artifactory(self):
        """A plain-HTTP Artifactory fake (see art_secrets)."""
        from fakeartifactory import FakeArtifactory
        fa = FakeArtifactory(os.path.join(self.tmp, "artifactory"), tls=False)
        self.addCleanup(fa.stop)
        return fa

    def art_secrets(self, pod, fa):
        pod.secret_file("art-cred", "username", fa.username + "\n")
        pod.secret_file("art-cred", "password", fa.password + "\n")

    def own_artifactory_artifact(self, fa):
        url = fa.base_url + "/artifactory/generic-local/own/%s/own.tgz" % uuid.uuid4().hex[:6]
        return {"name": "own", "path": "/tmp/own", "artifactory": {
            "url": url, "usernameSecret": {"name": "art-cred", "key": "username"},
            "passwordSecret": {"name": "art-cred", "key": "password"}}}

    def test_irsa_folder_without_archive_and_an_own_artifactory_location(self):
        front = self.front()
        mounts = [{"name": "w", "mountPath": "/work"}]
        files = {"a.txt": b"A" * 100, "sub/b.txt": b"bee"}
        own_data = tgz_of({"own": b"mine"})
        fa = self.artifactory()
        arts = [{"name": "dir", "path": "/work/dir", "archive": {"none": {}}},
                self.own_artifactory_artifact(fa)]
        pod = self.irsa_pod(self.template(arts, mounts=mounts), front.url)
        self.art_secrets(pod, fa)
        for rel, data in files.items():
            pod.mount_file("/work", "dir/" + rel, data)
        pod.stage_artifact("/tmp/own", own_data)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 0)
        key = self.prefix + "/dir"
        for rel, data in files.items():
            self.assertEqual(self.get(key + "/" + rel), data, rel)
        own_path = urllib.parse.urlsplit(arts[1]["artifactory"]["url"]).path
        self.assertEqual(fa.objects.get(own_path), own_data)
        self.assertEqual(pod.task_result()["outputs"]["artifacts"], [dict(arts[0], s3={"key": key}), arts[1]])
        self.assertEqual(len(self.web_requests(front)), 1, "one STS call for the S3 store")
        self.assert_no_secrets(pod, front)
        self.assert_no_leak(pod, fa.password)
        self.assert_termination_log_empty(pod)

    def test_sts_refusal_fails_only_the_s3_artifacts(self):
        front = self.front(lambda form, n: sts_error("AccessDenied", "not allowed", 403))
        fa = self.artifactory()
        own = self.own_artifactory_artifact(fa)
        arts = [{"name": "out", "path": "/tmp/out.txt"}, own]
        pod = self.irsa_pod(self.template(arts), front.url)
        self.art_secrets(pod, fa)
        self.stage(pod)
        own_data = tgz_of({"own": b"mine"})
        pod.stage_artifact("/tmp/own", own_data)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, 'output artifact "out"', "S3 credentials",
                                   "STS AssumeRoleWithWebIdentity", "AccessDenied", "HTTP 403")
        self.assertNotIn('output artifact "own"', pod.termination_log() or "")
        self.assertEqual(fa.objects.get(urllib.parse.urlsplit(own["artifactory"]["url"]).path), own_data)
        self.assert_no_leak(pod, self.token)
        self.assert_no_leak(pod, fa.password)

    # ---- failures

    def test_sts_down_is_retried_until_the_reserve(self):
        dead = "http://127.0.0.1:%d" % free_port()
        art = {"name": "out", "path": "/tmp/out.txt"}
        pod = self.irsa_pod(self.template([art]), dead, grace=3, reserve_ms=1000)
        self.stage(pod)
        pod.start()
        pod.finish()
        wait_until(lambda: pod.log_text().count("retrying in") >= 3, timeout=20, what="three STS retries")
        self.assertTrue(pod.running(), "P1: no giving up on a transient error before the reserve")
        pod.sigterm()
        self.assert_exit(pod, 64, timeout=10)
        self.assertLess(pod.since_sigterm(), 3.0 - 0.1)
        self.assert_failure_marker(pod, 'output artifact "out"', "S3 credentials", "reserve", "STS",
                                   "AssumeRoleWithWebIdentity", WEB_ROLE)
        self.assertNotIn("artifacts", pod.task_result().get("outputs") or {})
        self.assert_no_leak(pod, self.token)

    def test_throttling_and_5xx_are_retried(self):
        def flaky(form, n):
            if n == 1:
                return sts_error("Throttling", "Rate exceeded")
            if n == 2:
                return 503, "<html>unavailable</html>"
            if n == 3:
                return sts_error("IDPCommunicationError", "the IdP did not answer")
            return None
        front = self.front(flaky)
        art = {"name": "out", "path": "/tmp/out.txt"}
        pod = self.irsa_pod(self.template([art]), front.url)
        blob = self.stage(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 0, timeout=30)
        self.assertEqual(self.get(self.prefix + "/out.tgz"), blob)
        self.assertEqual(len(front.requests), 4)
        log = pod.log_text()
        self.assertIn("Throttling", log)
        self.assertIn("IDPCommunicationError", log)
        self.assert_no_secrets(pod, front)

    def test_sts_error_is_permanent_and_names_the_code(self):
        front = self.front(lambda form, n: sts_error(
            "InvalidIdentityToken", "Incorrect token audience for &quot;sts.amazonaws.com&quot;"))
        arts = [{"name": "out", "path": "/tmp/out.txt"}]
        pod = self.irsa_pod(self.template(arts, archive_logs=True), front.url)
        self.stage(pod)
        pod.write_stdout("main", "log line\n")
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assertEqual(len(front.requests), 1, "a permanent error is not retried")
        self.assert_failure_marker(pod, 'output artifact "out"', "logs of container main",
                                   "STS AssumeRoleWithWebIdentity", WEB_ROLE, "InvalidIdentityToken",
                                   'Incorrect token audience for "sts.amazonaws.com"', "HTTP 400")
        self.assert_no_leak(pod, self.token)

    def test_access_denied_on_assume_role(self):
        def deny_second(form, n):
            if form.get("Action") == "AssumeRole":
                return sts_error("AccessDenied", "not authorized to perform sts:AssumeRole", 403)
            return None
        front = self.front(deny_second)
        pod = self.irsa_pod(self.template([{"name": "out", "path": "/tmp/out.txt"}], role_arn=TARGET_ROLE),
                            front.url)
        self.stage(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "STS AssumeRole (role " + TARGET_ROLE, "AccessDenied", "HTTP 403")
        self.assert_no_secrets(pod, front)

    def test_token_file_missing(self):
        front = self.front()
        pod = self.irsa_pod(self.template([{"name": "out", "path": "/tmp/out.txt"}]), front.url,
                            token_file=False)
        self.stage(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, 'output artifact "out"', "web identity token",
                                   "AWS_WEB_IDENTITY_TOKEN_FILE", "no such file")
        self.assertEqual(front.requests, [])

    def test_no_credential_source(self):
        pod = self.pod(template=self.template([{"name": "out", "path": "/tmp/out.txt"}], useSDKCreds=True))
        self.stage(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, 'output artifact "out"', "useSDKCreds", "AWS_WEB_IDENTITY_TOKEN_FILE",
                                   "not supported yet")

    def test_malformed_sts_answer(self):
        front = self.front(lambda form, n: (200, "<AssumeRoleWithWebIdentityResponse><AssumeRoleWith"
                                                 "WebIdentityResult><Credentials><AccessKeyId>ASIA"))
        pod = self.irsa_pod(self.template([{"name": "out", "path": "/tmp/out.txt"}]), front.url)
        self.stage(pod)
        pod.start()
        pod.finish()
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, "STS AssumeRoleWithWebIdentity", "not STS's", "truncated")


@unittest.skipUnless(MOTO and HAVE_BOTO, "moto_server and boto3 are needed")
class SessionTokenTests(tl.LifecycleCase):
    """sessionTokenSecret: temporary keys from AssumeRole work only with their
    token, so the upload proves argowait sends x-amz-security-token."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.moto = Moto()
        setup_roles(cls.moto)
        import boto3
        sts = boto3.client("sts", endpoint_url=cls.moto.url, region_name="us-east-1",
                           aws_access_key_id=cls.moto.access_key, aws_secret_access_key=cls.moto.secret_key)
        cls.creds = sts.assume_role(RoleArn=WEB_ROLE, RoleSessionName="session-token-test")["Credentials"]

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    def run_with(self, token, with_token_secret=True):
        prefix = "st-%s" % uuid.uuid4().hex[:8]
        loc = {"bucket": BUCKET, "endpoint": "127.0.0.1:%d" % self.moto.port, "insecure": True,
               "key": prefix,
               "accessKeySecret": {"name": "tmp-cred", "key": "accesskey"},
               "secretKeySecret": {"name": "tmp-cred", "key": "secretkey"}}
        if with_token_secret:
            loc["sessionTokenSecret"] = {"name": "tmp-cred", "key": "sessiontoken"}
        pod = self.pod(template=script_template(artifacts=[{"name": "out", "path": "/tmp/out.txt"}],
                                                archiveLocation={"s3": loc}))
        pod.secret_file("tmp-cred", "accesskey", self.creds["AccessKeyId"])
        pod.secret_file("tmp-cred", "secretkey", self.creds["SecretAccessKey"] + "\n")
        pod.secret_file("tmp-cred", "sessiontoken", token + "\n")
        blob = tgz_of({"out.txt": b"with a session token\n"})
        pod.stage_artifact("/tmp/out.txt", blob)
        pod.start()
        pod.finish()
        return pod, prefix + "/out.tgz", blob

    def assert_no_secrets(self, pod, *extra):
        for s in (self.creds["SecretAccessKey"], self.creds["SessionToken"]) + extra:
            self.assert_no_leak(pod, s)

    def test_session_token_is_sent(self):
        pod, key, blob = self.run_with(self.creds["SessionToken"])
        self.assert_exit(pod, 0)
        self.assertEqual(self.moto.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), blob)
        self.assert_no_secrets(pod)

    def test_wrong_session_token_is_rejected(self):
        wrong = self.creds["SessionToken"][:-8] + "AAAAAAA="
        pod, key, _ = self.run_with(wrong)
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, 'output artifact "out"', "InvalidToken")
        self.assert_no_secrets(pod, wrong)

    def test_without_the_token_the_key_is_unknown(self):
        pod, key, _ = self.run_with(self.creds["SessionToken"], with_token_secret=False)
        self.assert_exit(pod, 64)
        self.assert_failure_marker(pod, 'output artifact "out"', "InvalidAccessKeyId")
        self.assert_no_secrets(pod)


if __name__ == "__main__":
    unittest.main()
