#!/usr/bin/env python3
"""The README demo: one argowait run against the fake API server.

Usage: python3 tests/integration/demo.py [--bin build/argowait] [--keep]

It starts the fake Kubernetes API (HTTPS, a throwaway CA), builds a sandbox
pod, runs argowait with a script template, plays the emissary (the script's
stdout, one staged output parameter, main's exitcode), then prints what the
API server received, the final WorkflowTaskResult and the exit code.
Exits 0 when the result is labelled "true" and carries the outputs.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakeapi import FakeApi  # noqa: E402
from harness import Pod, binary_path, script_template  # noqa: E402

LBL_DONE = "workflows.argoproj.io/report-outputs-completed"


def show(title, obj):
    print("\n== %s" % title)
    print(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=binary_path(), help="the argowait binary (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox folder")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print("demo: no executable at %s (build it first, or pass --bin)" % binary, file=sys.stderr)
        return 2

    tmp = tempfile.mkdtemp(prefix="argowait-demo-")
    try:
        with FakeApi(os.path.join(tmp, "api")) as api:
            print("fake API server: %s (CA %s)" % (api.url, api.ca_file))
            template = script_template(
                parameters=[{"name": "greeting", "valueFrom": {"path": "/tmp/greeting.txt"}},
                            {"name": "color", "valueFrom": {"path": "/tmp/color.txt", "default": "blue"}}],
                name="hello")
            pod = Pod(os.path.join(tmp, "pod"), api, template=template, include_script_output=True,
                      workflow="hello-world", node_id="hello-world-1234567890", grace=10, bin=binary)
            print("sandbox pod: ARGOWAIT_ROOT=%s" % pod.root)
            show("template (/var/run/argo/template)", template)
            pod.start()
            try:
                api.wait_for(lambda r: r.method == "POST", timeout=15)
                print("\nargowait created its placeholder; playing the emissary: main prints, stages, exits 0")
                pod.write_stdout("main", "Hello from the script!\n")
                pod.stage_param("/tmp/greeting.txt", "hello, world\n")
                pod.finish("main", 0)
                rc = pod.wait_exit(30)
            finally:
                pod.close()

            print("\n== requests the API server received")
            for r in api.requests:
                print("%s %s  [%s]  -> %s" % (r.method, r.target, r.content_type or "-", r.status))
                if r.json is not None:
                    print("  " + json.dumps(r.json, ensure_ascii=False))
            obj = pod.task_result()
            show("final WorkflowTaskResult %s/%s" % (pod.namespace, pod.node_id), obj)
            tl = pod.termination_log()
            print("\n== termination log: %r" % (tl or ""))
            print("== exit code: %d" % rc)
            outputs = (obj or {}).get("outputs") or {}
            ok = (((obj or {}).get("metadata") or {}).get("labels") or {}).get(LBL_DONE) == "true" and \
                outputs.get("result") == "Hello from the script!" and \
                {p.get("name"): p.get("value") for p in outputs.get("parameters") or []} == \
                {"greeting": "hello, world", "color": "blue"}
            if not ok or rc != 0:
                print("\n== argowait log (stderr)")
                print("\n".join(pod.logs()))
            print("\nRESULT: %s" % ("OK: labelled \"true\" with the outputs" if ok else "NOT OK"))
            return 0 if ok else 1
    finally:
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
