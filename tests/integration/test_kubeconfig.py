"""--kubeconfig: the API server, CA and credentials come from a kubeconfig
file instead of the in-cluster service account (the controller passes it
when it is configured for a remote cluster)."""

import base64
import os
import shutil
import tempfile

from fakeapi import FakeApi, make_client_cert
from harness import script_template
from test_lifecycle import LBL_DONE, PARAMS, STAGED, STAGED_VALUE, LifecycleCase, labels

SA = "var/run/secrets/kubernetes.io/serviceaccount/"
REMOTE_NS = "remote-ns"


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


class TestKubeconfig(LifecycleCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="argowait-kc-")
        self.api = FakeApi(os.path.join(self.tmp, "api"), client_auth=True).start()
        self.pods = []

    def remote_pod(self, user_yaml, cluster_extra="", files=None):
        """A pod without in-cluster configuration: no KUBERNETES_SERVICE_*,
        no service-account files; only the kubeconfig says where to go."""
        pod = self.pod(template=script_template(PARAMS),
                       env={"KUBERNETES_SERVICE_HOST": None, "KUBERNETES_SERVICE_PORT": None,
                            "KUBERNETES_SERVICE_PORT_HTTPS": None})
        shutil.rmtree(pod.path(SA))
        kube_dir = os.path.join(pod.dir, "kube")
        os.makedirs(kube_dir)
        for name, src in (files or {}).items():
            shutil.copy(src, os.path.join(kube_dir, name))
        path = os.path.join(kube_dir, "config")
        with open(path, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: remote\n"
                    "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:%d\n%s"
                    "contexts:\n- name: remote\n  context: {cluster: c, user: u, namespace: %s}\n"
                    "users:\n- name: u\n  user:\n%s"
                    % (self.api.port, cluster_extra, REMOTE_NS, user_yaml))
        return pod, path

    def run_lifecycle(self, pod, kubeconfig, flag_form="separate"):
        args = (["wait", "--kubeconfig", kubeconfig] if flag_form == "separate"
                else ["wait", "--kubeconfig=" + kubeconfig])
        pod.start(args=args + ["--loglevel", "debug"])
        pod.stage_param("/tmp/out.txt", STAGED)
        pod.finish("main", 0)
        self.assert_exit(pod, 0)
        obj = self.api.objects.get((REMOTE_NS, pod.node_id))
        self.assertIsNotNone(obj, "the task result lives in the context's namespace" + self.info(pod))
        self.assertEqual(labels(obj).get(LBL_DONE), "true")
        self.assertEqual(obj["outputs"]["parameters"][0]["value"], STAGED_VALUE)
        self.assertEqual([r.method for r in self.api.writes()], ["POST", "PATCH"])
        self.assert_writes_valid()
        return obj

    def test_token_and_ca_data(self):
        pod, path = self.remote_pod("    token: %s\n" % self.api.token,
                                    "    certificate-authority-data: %s\n" % b64(self.api.ca_file))
        self.run_lifecycle(pod, path)
        for r in self.api.writes():
            self.assertEqual(r.token, self.api.token)

    def test_client_certificate_files_relative_to_the_kubeconfig(self):
        cert, key = make_client_cert(self.api.pki, "argowait-remote")
        self.api.accepted_client_cns.add("argowait-remote")
        pod, path = self.remote_pod("    client-certificate: client.crt\n    client-key: client.key\n",
                                    "    certificate-authority: ca.crt\n",
                                    files={"client.crt": cert, "client.key": key,
                                           "ca.crt": self.api.ca_file})
        self.run_lifecycle(pod, path, flag_form="equals")
        for r in self.api.writes():
            self.assertEqual(r.client_cn, "argowait-remote")
            self.assertIsNone(r.header("Authorization"), "no token to send")

    def test_client_certificate_data(self):
        cert, key = make_client_cert(self.api.pki, "argowait-data")
        self.api.accepted_client_cns.add("argowait-data")
        pod, path = self.remote_pod("    client-certificate-data: %s\n    client-key-data: %s\n"
                                    % (b64(cert), b64(key)),
                                    "    certificate-authority-data: %s\n" % b64(self.api.ca_file))
        self.run_lifecycle(pod, path)
        self.assertEqual({r.client_cn for r in self.api.writes()}, {"argowait-data"})
        with open(key) as f:
            key_text = f.read().strip().splitlines()[1]
        self.assertNotIn(key_text, pod.log_text(), "the client key never reaches a log line")

    def test_token_file(self):
        pod, path = self.remote_pod("    tokenFile: token\n",
                                    "    certificate-authority-data: %s\n" % b64(self.api.ca_file))
        with open(os.path.join(os.path.dirname(path), "token"), "w") as f:
            f.write(self.api.token + "\n")
        self.run_lifecycle(pod, path)

    def test_unsupported_exec_plugin_is_a_clear_error(self):
        pod, path = self.remote_pod("    exec:\n      command: aws\n      apiVersion: v1\n",
                                    "    certificate-authority-data: %s\n" % b64(self.api.ca_file))
        pod.start(args=["wait", "--kubeconfig", path])
        self.assert_exit(pod, 64)
        tl = pod.termination_log() or ""
        self.assertIn('kubeconfig: the user setting "exec" is not supported', tl)
        self.assertEqual(self.api.requests, [], "no API server is known")

    def test_missing_kubeconfig_file(self):
        pod, _ = self.remote_pod("    token: t\n")
        pod.start(args=["wait", "--kubeconfig", os.path.join(self.tmp, "nope")])
        self.assert_exit(pod, 64)
        self.assertIn("kubeconfig: cannot read", pod.termination_log() or "")
