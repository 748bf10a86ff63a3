"""deploy/: every manifest is valid YAML and carries the fields it must, and
they all name the same image. (No cluster here: this is what CI can check.)"""

import os
import unittest

import yaml

DEPLOY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy"))


def load_all(name):
    with open(os.path.join(DEPLOY, name), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def wait_image_of_patch(test, patch_text):
    """The image a podSpecPatch gives the wait container (and nothing else)."""
    patch = yaml.safe_load(patch_text)
    test.assertEqual(list(patch), ["containers"], "the patch touches only containers")
    containers = patch["containers"]
    test.assertEqual([c["name"] for c in containers], ["wait"], "only the wait container is swapped")
    test.assertEqual(set(containers[0]), {"name", "image"})
    return containers[0]["image"]


class TestDeploy(unittest.TestCase):
    def test_every_file_is_valid_yaml_with_kind_and_name(self):
        files = sorted(f for f in os.listdir(DEPLOY) if f.endswith(".yaml"))
        self.assertEqual(files, ["controller-configmap.yaml", "kyverno-policy.yaml", "rbac.yaml",
                                 "workflow-podspecpatch.yaml"])
        for name in files:
            for doc in load_all(name):
                self.assertIn("apiVersion", doc, name)
                self.assertIn("kind", doc, name)
                md = doc.get("metadata") or {}
                self.assertTrue(md.get("name") or md.get("generateName"), name)

    def test_rbac_grants_exactly_create_and_patch_of_task_results(self):
        docs = {d["kind"]: d for d in load_all("rbac.yaml")}
        self.assertEqual(set(docs), {"Role", "RoleBinding"})
        role, binding = docs["Role"], docs["RoleBinding"]
        self.assertEqual(role["rules"], [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                                          "verbs": ["create", "patch"]}])
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                              "name": role["metadata"]["name"]})
        self.assertEqual(binding["metadata"]["namespace"], role["metadata"]["namespace"])
        self.assertEqual(binding["subjects"][0]["kind"], "ServiceAccount")

    def test_controller_configmap_swaps_only_the_wait_container(self):
        (cm,) = load_all("controller-configmap.yaml")
        self.assertEqual((cm["kind"], cm["metadata"]["name"]), ("ConfigMap", "workflow-controller-configmap"))
        defaults = yaml.safe_load(cm["data"]["workflowDefaults"])
        self.assertEqual(list(defaults), ["spec"])
        wait_image_of_patch(self, defaults["spec"]["podSpecPatch"])

    def test_workflow_example(self):
        (wf,) = load_all("workflow-podspecpatch.yaml")
        self.assertEqual((wf["apiVersion"], wf["kind"]), ("argoproj.io/v1alpha1", "Workflow"))
        templates = {t["name"]: t for t in wf["spec"]["templates"]}
        self.assertIn(wf["spec"]["entrypoint"], templates)
        wait_image_of_patch(self, wf["spec"]["podSpecPatch"])
        params = templates["hello"]["outputs"]["parameters"]
        self.assertTrue(all(p["valueFrom"]["path"].startswith("/") for p in params))

    def test_kyverno_policy_matches_workflow_pods_and_patches_wait(self):
        (pol,) = load_all("kyverno-policy.yaml")
        self.assertEqual((pol["apiVersion"], pol["kind"]), ("kyverno.io/v1", "ClusterPolicy"))
        (rule,) = pol["spec"]["rules"]
        (res,) = rule["match"]["any"]
        self.assertEqual(res["resources"]["kinds"], ["Pod"])
        self.assertEqual(res["resources"]["selector"]["matchExpressions"],
                         [{"key": "workflows.argoproj.io/workflow", "operator": "Exists"}])
        (container,) = rule["mutate"]["patchStrategicMerge"]["spec"]["containers"]
        self.assertEqual(container["(name)"], "wait", "a conditional anchor on the wait container")
        self.assertEqual(set(container), {"(name)", "image"})

    def test_one_image_everywhere(self):
        (cm,) = load_all("controller-configmap.yaml")
        (wf,) = load_all("workflow-podspecpatch.yaml")
        (pol,) = load_all("kyverno-policy.yaml")
        images = {
            wait_image_of_patch(self, yaml.safe_load(cm["data"]["workflowDefaults"])["spec"]["podSpecPatch"]),
            wait_image_of_patch(self, wf["spec"]["podSpecPatch"]),
            pol["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["spec"]["containers"][0]["image"],
        }
        self.assertEqual(len(images), 1, images)


if __name__ == "__main__":
    unittest.main()
