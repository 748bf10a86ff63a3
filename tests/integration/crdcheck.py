"""Checks a JSON object against a CustomResourceDefinition's openAPIV3Schema.

A small stand-in for the API server's validation, for tests: it covers
type, properties, required, items, additionalProperties, enum, format
int32/int64, minimum/maximum, minItems, pattern, nullable,
x-kubernetes-preserve-unknown-fields and x-kubernetes-int-or-string, plus
the ObjectMeta fields the server itself checks under the root `metadata`.

A key the schema does not declare is reported as an error: the server
would silently prune it (structural schemas), so a test must notice.

    python3 crdcheck.py CRD FILE.json [--patch]

`--patch` (or validate(..., patch=True)) checks a JSON merge patch: no
required fields, and null (delete) allowed anywhere.
"""

import functools
import json
import re
import sys

import yaml

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The part of ObjectMeta a client may send, as the server validates it.
_OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": "string", "nullable": True},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                    "uid": {"type": "string"},
                    "controller": {"type": "boolean"},
                    "blockOwnerDeletion": {"type": "boolean"},
                },
            },
        },
    },
}


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_matches(value, want):
    got = _json_type(value)
    return got == want or (want == "number" and got == "integer")


class _Checker:
    def __init__(self, patch, strict=True):
        self.patch = patch
        self.strict = strict
        self.errors = []

    def error(self, path, message):
        self.errors.append(f"{path}: {message}")

    def check(self, value, schema, path):
        if value is None:
            if not (self.patch or schema.get("nullable")):
                self.error(path, "is null (the server would drop it)")
            return
        if schema.get("x-kubernetes-int-or-string"):
            if _json_type(value) not in ("integer", "string"):
                self.error(path, f"expected integer or string, got {_json_type(value)}")
            return
        want = schema.get("type")
        if want and not _type_matches(value, want):
            self.error(path, f"expected {want}, got {_json_type(value)}")
            return
        if "enum" in schema and value not in schema["enum"]:
            self.error(path, f"{value!r} is not one of {schema['enum']!r}")
        self.check_scalar_limits(value, schema, path)
        if isinstance(value, dict):
            self.check_object(value, schema, path)
        elif isinstance(value, list):
            self.check_array(value, schema, path)

    def check_scalar_limits(self, value, schema, path):
        if _json_type(value) in ("integer", "number"):
            low, high = _INT_RANGES.get(schema.get("format"), (None, None))
            low = schema.get("minimum", low)
            high = schema.get("maximum", high)
            if low is not None and value < low:
                self.error(path, f"{value} is less than {low}")
            if high is not None and value > high:
                self.error(path, f"{value} is more than {high}")
        if isinstance(value, str) and "pattern" in schema:
            if not re.search(schema["pattern"], value):
                self.error(path, f"does not match {schema['pattern']!r}")

    def check_object(self, value, schema, path):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields")
        if not self.patch:
            for key in schema.get("required", []):
                if key not in value:
                    self.error(f"{path}.{key}", "required field is missing")
        for key, item in value.items():
            item_path = f"{path}.{key}"
            if key in properties:
                self.check(item, properties[key], item_path)
            elif isinstance(extra, dict):
                self.check(item, extra, item_path)
            elif self.strict and not (extra is True or keep_unknown):
                self.error(item_path, "is not in the schema (the server would prune it)")

    def check_array(self, value, schema, path):
        if len(value) < schema.get("minItems", 0):
            self.error(path, f"has fewer than {schema['minItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                self.check(item, items, f"{path}[{i}]")

    def check_labels(self, metadata):
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        if not isinstance(labels, dict):
            return
        for key, value in labels.items():
            if isinstance(value, str) and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                self.error(f"$.metadata.labels.{key}", "is not a valid label value")


@functools.lru_cache(maxsize=None)
def _load_crd(crd_path):
    with open(crd_path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _schema_for(crd, api_version):
    versions = crd["spec"]["versions"]
    wanted = api_version.rsplit("/", 1)[-1] if isinstance(api_version, str) else None
    for version in versions:
        if version["name"] == wanted:
            return version["schema"]["openAPIV3Schema"]
    served = [v for v in versions if v.get("served", True)]
    return (served or versions)[0]["schema"]["openAPIV3Schema"]


def validate(obj, crd_path, patch=False, strict=True):
    """Returns the list of problems of obj (empty when it is valid). With
    strict False, fields the schema does not know are not reported (a real
    API server prunes them silently)."""
    crd = _load_crd(str(crd_path))
    api_version = obj.get("apiVersion") if isinstance(obj, dict) else None
    schema = dict(_schema_for(crd, api_version))
    # The server validates metadata as ObjectMeta, whatever the CRD says.
    schema["properties"] = dict(schema.get("properties", {}), metadata=_OBJECT_META)
    checker = _Checker(patch, strict)
    checker.check(obj, schema, "$")
    if isinstance(obj, dict):
        checker.check_labels(obj.get("metadata"))
    return checker.errors


def main(argv):
    args = [a for a in argv[1:] if a != "--patch"]
    if len(args) != 2:
        print("usage: crdcheck.py CRD FILE.json [--patch]", file=sys.stderr)
        return 2
    with open(args[1], encoding="utf-8") as f:
        obj = json.load(f)
    errors = validate(obj, args[0], patch="--patch" in argv)
    for line in errors:
        print(line)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
