"""The sandbox "pod" the integration tests run argowait in.

``Pod(tmpdir, api, **opts)`` builds an ``ARGOWAIT_ROOT`` folder tree with the
service-account files, the template, the emissary's folders and a
termination-log folder, and the environment the Argo controller gives the
wait container. It starts the binary (``ARGOWAIT_BIN``, default
``<repo>/build/argowait``), sends signals, measures exit time precisely, and
plays the emissary (stdout, staged parameters, exitcode files, mounts).
"""

import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))


def tgz_of(files):
    """A .tgz as the emissary stages it: {member name: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def binary_path():
    """The argowait binary under test: $ARGOWAIT_BIN, else <repo>/build/argowait."""
    p = os.environ.get("ARGOWAIT_BIN") or os.path.join(REPO, "build", "argowait")
    return os.path.abspath(p)


ZERO_DEADLINE = "0001-01-01T00:00:00Z"

# Passed through from the test's environment (sanitizers, coverage); nothing else is.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
             "TSAN_OPTIONS", "MSAN_OPTIONS", "GCOV_PREFIX", "GCOV_PREFIX_STRIP", "LLVM_PROFILE_FILE",
             "VALGRIND_OPTS")


def rfc3339(epoch_seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def script_template(parameters=(), name="main-tmpl", volume_mounts=None, artifacts=None, **extra):
    """A script template as the controller writes it to /var/run/argo/template."""
    script = {"name": "", "image": "python:3-alpine", "command": ["python"],
              "source": "print('hello')\n", "resources": {}}
    if volume_mounts:
        script["volumeMounts"] = list(volume_mounts)
    t = {"name": name, "inputs": {}, "outputs": {}, "metadata": {}, "script": script}
    if parameters:
        t["outputs"]["parameters"] = list(parameters)
    if artifacts:
        t["outputs"]["artifacts"] = list(artifacts)
    t.update(extra)
    return t


class Pod:
    """A sandbox pod for one argowait run.

    Options (all keyword):
      template        dict written as JSON to var/run/argo/template (default: a
                      script template without outputs); template_raw: bytes
                      written verbatim instead (malformed-template tests)
      namespace       service-account namespace file (default "argo")
      workflow        ARGO_WORKFLOW_NAME (default "wf-<random>")
      node_id         ARGO_NODE_ID (default "<workflow>-<digits>")
      token, ca_file  service-account token / CA (default: the api's)
      grace           ARGO_TERMINATION_GRACE_PERIOD_SECONDS (default 10; None = unset)
      include_script_output  bool (default False)
      deadline        ARGO_DEADLINE string (default the zero time)
      instance_id     ARGO_INSTANCE_ID (default unset)
      reserve_ms      ARGOWAIT_FINALIZE_RESERVE_MS (default unset)
      env             dict of overrides; a value None removes the variable
      bin             binary (default binary_path())
      umask           umask of the process (default 0o022, as in a container)
      workflow_uid    ARGO_WORKFLOW_UID (default a random UUID)
    """

    def __init__(self, tmpdir, api, template=None, template_raw=None, namespace="argo", workflow=None,
                 node_id=None, token=None, ca_file=None, grace=10, include_script_output=False,
                 deadline=ZERO_DEADLINE, instance_id=None, reserve_ms=None, env=None, bin=None,
                 umask=0o022, workflow_uid=None):
        self.dir = tmpdir
        self.api = api
        self.root = os.path.join(tmpdir, "root")
        self.namespace = namespace
        suffix = uuid.uuid4().hex[:8]   # unique across a thousand pods at once
        self.workflow = workflow or "wf-" + suffix
        self.node_id = node_id or "%s-%d" % (self.workflow, 1000000000 + int(suffix, 16))
        self.pod_name = "%s-main-%d" % (self.workflow, 1000000000 + int(suffix, 16))
        self.workflow_uid = workflow_uid or str(uuid.uuid4())
        self.pod_uid = str(uuid.uuid4())
        self.bin = bin or binary_path()
        self.umask = umask
        self.token = token if token is not None else api.token
        self.template = template if template is not None else script_template()
        self.proc = None
        self.t_start = None
        self.t_sigterm = []         # monotonic times of sigterm() calls
        self.t_exit = None          # monotonic time the process was reaped
        self._exited = threading.Event()
        self.returncode = None

        for d in ("var/run/secrets/kubernetes.io/serviceaccount", "var/run/argo/ctr",
                  "var/run/argo/outputs/parameters", "var/run/argo/outputs/artifacts", "mainctrfs",
                  "argo/secret", "argo/config", "dev", "tmp"):
            os.makedirs(self.path(d), exist_ok=True)
        os.chmod(self.path("var/run/argo/ctr"), 0o777)
        sa = "var/run/secrets/kubernetes.io/serviceaccount/"
        self.write(sa + "token", self.token)
        with open(ca_file or api.ca_file, "rb") as f:
            self.write(sa + "ca.crt", f.read())
        self.write(sa + "namespace", namespace)
        if template_raw is not None:
            self.write("var/run/argo/template", template_raw)
        else:
            self.write("var/run/argo/template", json.dumps(self.template))
        os.chmod(self.path("var/run/argo/template"), 0o444)

        e = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        e.update({
            "ARGO_POD_NAME": self.pod_name,
            "ARGO_POD_UID": self.pod_uid,
            "ARGO_WORKFLOW_NAME": self.workflow,
            "ARGO_WORKFLOW_UID": self.workflow_uid,
            "ARGO_NODE_ID": self.node_id,
            "ARGO_CONTAINER_NAME": "wait",
            "ARGO_INCLUDE_SCRIPT_OUTPUT": "true" if include_script_output else "false",
            "ARGO_DEADLINE": deadline,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(api.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(api.port),
            "ARGOWAIT_ROOT": self.root,
        })
        if grace is not None:
            e["ARGO_TERMINATION_GRACE_PERIOD_SECONDS"] = str(grace)
        if instance_id is not None:
            e["ARGO_INSTANCE_ID"] = instance_id
        if reserve_ms is not None:
            e["ARGOWAIT_FINALIZE_RESERVE_MS"] = str(reserve_ms)
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
        self.env = e
        self.grace = float(e.get("ARGO_TERMINATION_GRACE_PERIOD_SECONDS", 30))

    # -- files
    def path(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def write(self, rel, data, mode=None):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(p, mode)
        return p

    def read(self, rel):
        try:
            with open(self.path(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    # -- the process
    def start(self, args=("wait", "--loglevel", "debug"), argv0=None):
        """Start the binary (``argv0``: run it through this path instead,
        e.g. a symlink named argoexec)."""
        self.stdout_path = os.path.join(self.dir, "stdout.txt")
        self.stderr_path = os.path.join(self.dir, "stderr.txt")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen([argv0 or self.bin, *args], env=self.env, cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     umask=self.umask)
        threading.Thread(target=self._reap, name="reap-%d" % self.proc.pid, daemon=True).start()
        return self

    def _reap(self):
        rc = self.proc.wait()
        self.t_exit = time.monotonic()
        self.returncode = rc
        self._exited.set()

    def running(self):
        return self.proc is not None and not self._exited.is_set()

    def _signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def sigterm(self):
        """Send SIGTERM; its time is recorded (before sending, so measured
        durations are never shorter than the program's own)."""
        self.t_sigterm.append(time.monotonic())
        self._signal(signal.SIGTERM)

    def sigint(self):
        self._signal(signal.SIGINT)

    def sigkill(self):
        self._signal(signal.SIGKILL)

    def wait_exit(self, timeout=15.0):
        """The exit code; raises TimeoutError (the process keeps running)."""
        if not self._exited.wait(timeout):
            raise TimeoutError("argowait still running after %.1f s; log tail:\n%s"
                               % (timeout, "\n".join(self.logs()[-30:])))
        return self.returncode

    def exited_within(self, timeout):
        return self._exited.wait(timeout)

    def since_sigterm(self):
        """Seconds from the first sigterm() to exit."""
        return self.t_exit - self.t_sigterm[0]

    def close(self):
        if self.running():
            self.proc.kill()
            self._exited.wait(10)
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- outputs of the program
    def termination_log(self):
        """The termination log as text, None when the file does not exist."""
        b = self.read("dev/termination-log")
        return None if b is None else b.decode("utf-8", "replace")

    def logs(self):
        """stderr lines so far."""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except (AttributeError, FileNotFoundError):
            return []

    def log_text(self):
        return "\n".join(self.logs())

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (AttributeError, FileNotFoundError):
            return ""

    def signal_file(self, container="main"):
        """Content of var/run/argo/ctr/<c>/signal (bytes), None if absent."""
        return self.read("var/run/argo/ctr/%s/signal" % container)

    def signal_file_mode(self, container="main"):
        return os.stat(self.path("var/run/argo/ctr/%s/signal" % container)).st_mode & 0o7777

    def task_result(self):
        """The stored WorkflowTaskResult of this pod (a copy) or None."""
        return self.api.get_object(self.namespace, self.node_id)

    # -- the fake emissary
    def ctr_dir(self, container):
        d = self.path("var/run/argo/ctr/" + container)
        if not os.path.isdir(d):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o777)
        return d

    def stage_param(self, path, data):
        """The emissary's copy of output parameter file ``path``."""
        return self.write("var/run/argo/outputs/parameters/" + path.lstrip("/"), data)

    def stage_artifact(self, path, tgz_bytes):
        return self.write("var/run/argo/outputs/artifacts/" + path.strip("/") + ".tgz", tgz_bytes)

    def write_stdout(self, container, data, combined=True):
        """Append to ctr/<c>/stdout (and combined) as the emissary does."""
        d = self.ctr_dir(container)
        data = data.encode() if isinstance(data, str) else data
        for name in ("stdout", "combined") if combined else ("stdout",):
            with open(os.path.join(d, name), "ab") as f:
                f.write(data)

    def finish(self, container="main", code=0, torn=False, torn_delay=0.3, content=None):
        """Write ctr/<c>/exitcode. ``content`` (bytes/str) is written verbatim
        (malformed files); ``torn`` first creates the file empty, waits
        ``torn_delay`` seconds, then writes the number (the emissary's write
        is not atomic)."""
        data = content if content is not None else str(code)
        data = data.encode() if isinstance(data, str) else data
        p = os.path.join(self.ctr_dir(container), "exitcode")
        if torn:
            self.finish_begin(container)
            time.sleep(torn_delay)  # the gap between open(O_TRUNC) and write(), on purpose
        with open(p, "wb") as f:
            f.write(data)
        return p

    def finish_begin(self, container="main"):
        """First half of a torn exitcode write: the file exists and is empty."""
        p = os.path.join(self.ctr_dir(container), "exitcode")
        with open(p, "wb"):
            pass
        return p

    def mount_file(self, mount_path, rel, data):
        """A file on one of main's volume mounts, mirrored at /mainctrfs/<mountPath>/<rel>."""
        return self.write("mainctrfs/%s/%s" % (mount_path.strip("/"), rel.lstrip("/")), data)

    def mount_symlink(self, mount_path, rel, target):
        p = self.path("mainctrfs/%s/%s" % (mount_path.strip("/"), rel.lstrip("/")))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.symlink(target, p)
        return p

    def secret_file(self, secret, key, data):
        """An artifact-repository credential at /argo/secret/<secret>/<key>."""
        return self.write("argo/secret/%s/%s" % (secret, key), data)

    def rotate_token(self, token):
        """Replace the token file atomically (as the kubelet does)."""
        p = self.path("var/run/secrets/kubernetes.io/serviceaccount/token")
        tmp = p + ".new"
        with open(tmp, "w") as f:
            f.write(token)
        os.replace(tmp, p)
        self.token = token


def wait_until(fn, timeout=15.0, interval=0.01, what="condition"):
    """Poll ``fn`` (for files another process writes, where no event exists)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("%s not met after %.1f s" % (what, timeout))
        time.sleep(interval)
