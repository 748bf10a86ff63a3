"""Self-test of crdcheck against the WorkflowTaskResult CRD.

The good samples are the bodies src/taskresult.c prints (same keys, same
order), so the check also says the C bodies would pass the API server.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest

import crdcheck

HERE = os.path.dirname(os.path.abspath(__file__))
CRD = os.environ.get("ARGOWAIT_CRD") or os.path.join(
    HERE, "..", "fixtures", "crds", "argoproj.io_workflowtaskresults.yaml")

LABELS_FALSE = {
    "workflows.argoproj.io/workflow": "hello-abc",
    "workflows.argoproj.io/report-outputs-completed": "false",
    "workflows.argoproj.io/controller-instanceid": "blue",
}
LABELS_TRUE = dict(LABELS_FALSE, **{"workflows.argoproj.io/report-outputs-completed": "true"})

PLACEHOLDER = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "WorkflowTaskResult",
    "metadata": {
        "name": "hello-abc-1234",
        "namespace": "argo",
        "labels": LABELS_FALSE,
        "ownerReferences": [{
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "name": "hello-abc",
            "uid": "0b6c7e9c-2f41-4a1f-9a56-1f7d5e3c2b10",
        }],
    },
}

OUTPUTS = {
    "parameters": [{"name": "p", "valueFrom": {"path": "/tmp/p", "default": "d"},
                    "value": "42\n\u0000x"}],
    "artifacts": [{"name": "a", "path": "/tmp/a",
                   "s3": {"key": "hello-abc/hello-abc-1234/a.tgz"}},
                  {"name": "main-logs", "s3": {"key": "hello-abc/hello-abc-1234/main.log"}}],
    "result": "hi",
}

FAILURE = {"phase": "Error", "message": "parameter p: open /tmp/p: no such file"}

CREATE_FAILED = dict(copy.deepcopy(PLACEHOLDER), outputs=OUTPUTS, **FAILURE)
CREATE_FAILED["metadata"]["labels"] = LABELS_TRUE

FINAL_PATCH = {"metadata": {"labels": LABELS_TRUE}, "outputs": OUTPUTS}
FAILURE_PATCH = dict(FINAL_PATCH, outputs={}, **FAILURE)
PROGRESS_PATCH = {"progress": "1/3"}


def mutated(obj, change):
    obj = copy.deepcopy(obj)
    change(obj)
    return obj


class GoodBodies(unittest.TestCase):
    def test_objects(self):
        for body in (PLACEHOLDER, CREATE_FAILED):
            self.assertEqual(crdcheck.validate(body, CRD), [])

    def test_patches(self):
        for body in (FINAL_PATCH, FAILURE_PATCH, PROGRESS_PATCH):
            self.assertEqual(crdcheck.validate(body, CRD, patch=True), [])

    def test_patch_may_delete_with_null(self):
        body = {"metadata": {"labels": {"x": None}}, "outputs": {"result": None}}
        self.assertEqual(crdcheck.validate(body, CRD, patch=True), [])

    def test_patch_lacks_required_metadata_only_as_object(self):
        self.assertEqual(crdcheck.validate(PROGRESS_PATCH, CRD),
                         ["$.metadata: required field is missing"])


class BadBodies(unittest.TestCase):
    def assert_errors(self, body, *fragments, patch=False):
        errors = crdcheck.validate(body, CRD, patch=patch)
        self.assertEqual(len(errors), len(fragments), errors)
        for error, fragment in zip(errors, fragments):
            self.assertIn(fragment, error)

    def test_parameter_without_name(self):
        body = mutated(CREATE_FAILED, lambda b: b["outputs"]["parameters"][0].pop("name"))
        self.assert_errors(body, "$.outputs.parameters[0].name: required field")

    def test_parameter_value_must_be_string(self):
        body = mutated(FINAL_PATCH, lambda b: b["outputs"]["parameters"][0].update(value=42))
        self.assert_errors(body, "$.outputs.parameters[0].value: expected string, got integer",
                           patch=True)

    def test_unknown_keys_would_be_pruned(self):
        def change(b):
            b["status"] = {}
            b["outputs"]["extra"] = 1
            b["outputs"]["parameters"][0]["valueFrom"]["supplied"] = {"x": 1}
            b["metadata"]["labelz"] = {}
        self.assert_errors(mutated(CREATE_FAILED, change),
                           "$.metadata.labelz: is not in the schema",
                           "$.outputs.parameters[0].valueFrom.supplied.x: is not in the schema",
                           "$.outputs.extra: is not in the schema",
                           "$.status: is not in the schema")

    def test_metadata_is_checked_as_object_meta(self):
        def change(b):
            b["metadata"]["labels"]["workflows.argoproj.io/workflow"] = 7
            del b["metadata"]["ownerReferences"][0]["uid"]
        self.assert_errors(mutated(PLACEHOLDER, change),
                           "$.metadata.labels.workflows.argoproj.io/workflow: expected string",
                           "$.metadata.ownerReferences[0].uid: required field")

    def test_label_value_syntax(self):
        body = mutated(PLACEHOLDER, lambda b: b["metadata"]["labels"].update(
            {"workflows.argoproj.io/workflow": "x" * 64}))
        self.assert_errors(body, "is not a valid label value")

    def test_scalars_enum_and_int32(self):
        def change(b):
            art = b["outputs"]["artifacts"][0]
            art["artifactGC"] = {"strategy": "Sometimes"}
            art["archive"] = {"tar": {"compressionLevel": 2**40}}
            art["optional"] = "yes"
            b["progress"] = 3
            b["phase"] = None
        self.assert_errors(mutated(CREATE_FAILED, change),
                           "$.outputs.artifacts[0].artifactGC.strategy: 'Sometimes' is not one of",
                           "$.outputs.artifacts[0].archive.tar.compressionLevel: 1099511627776 is more",
                           "$.outputs.artifacts[0].optional: expected boolean, got string",
                           "$.phase: is null",
                           "$.progress: expected string, got integer")

    def test_not_an_object(self):
        self.assert_errors([PLACEHOLDER], "$: expected object, got array")


class CommandLine(unittest.TestCase):
    def run_cli(self, body, *flags):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(body, f)
        try:
            return subprocess.run(
                [sys.executable, os.path.join(HERE, "crdcheck.py"), CRD, f.name, *flags],
                capture_output=True, text=True, check=False)
        finally:
            os.unlink(f.name)

    def test_exit_codes(self):
        self.assertEqual(self.run_cli(PLACEHOLDER).returncode, 0)
        self.assertEqual(self.run_cli(PROGRESS_PATCH, "--patch").returncode, 0)
        bad = self.run_cli(PROGRESS_PATCH)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("$.metadata: required field", bad.stdout)


if __name__ == "__main__":
    unittest.main()
