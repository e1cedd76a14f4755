"""What every piece that runs on the cluster agrees on, defined once: the Secret holding the object-storage keys and
how a pod lands on a GPU node. The pipeline (pipelines/), the Katib trials (waveforms/tuning) and the docs use these;
the hand-written manifests under manifests/ spell the same names and tests/test_manifests.py compares them.
"""

# Kubernetes Secret with the object-storage keys; each key becomes the environment variable of the same name.
CREDENTIALS_SECRET = "waveforms-s3-credentials"
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

GPU_RESOURCE = "nvidia.com/gpu"  # the extended resource a GPU pod requests (NVIDIA device plugin)
# Node-selector label of the GPU pool, by platform (KFP's set_accelerator_type adds no node selector of its own).
GPU_POOL_SELECTORS = {
    "gke": "cloud.google.com/gke-accelerator",  # value: the accelerator type, e.g. nvidia-l4
    "eks": "karpenter.sh/nodepool",  # value: the Karpenter NodePool name (manifests/gpu/eks: gpu)
    "generic": "nvidia.com/gpu.present",  # value: true (NVIDIA GPU feature discovery / the GPU operator)
}
GENERIC_GPU_SELECTOR = {GPU_POOL_SELECTORS["generic"]: "true"}
# GPU pools are tainted (Karpenter/EKS always, GKE on request): a GPU pod tolerates the taint.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
