"""Inputs of the Kubernetes training job: config/cloud/training.yaml, validated.

The file says how ``aiprod-train`` runs on a cluster: how many nodes and GPUs per node,
which training config, the GPU node pool and compute of a node, the shared volume that
holds the data and the checkpoints, and how failures are retried. The image, namespace
and log level come from the server's deployment inputs (``load_cloud_config``), so the job
runs the same image as the server. Like every config/cloud file, unknown keys are errors
and every problem becomes one ConfigError naming the file and key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aiprod_core.config.cloud import CLOUD_DIR, DnsLabel, Quantity
from aiprod_core.config.loader import _describe, _display, _read_mapping
from aiprod_core.errors import ConfigError

TRAINING_FILE = "training.yaml"
#: Longest name a pod's host name (``<job_name>-<index>``) may have: an RFC 1123 label.
MAX_HOSTNAME = 63

#: A YAML file's path inside the repository, written with ``/``: no segment starts with a
#: dot, so the path neither leaves the repository (``..``) nor starts at the root.
RepoPath = Annotated[
    str, Field(pattern=r"^[-_a-zA-Z0-9][-._a-zA-Z0-9]*(/[-_a-zA-Z0-9][-._a-zA-Z0-9]*)*\.ya?ml$")
]
#: A Kubernetes object name that may hold dots (a DNS subdomain), such as a StorageClass.
DnsSubdomain = Annotated[
    str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeResources(_Strict):
    """One training node: its GPU node pool and what the pod reserves of it."""

    accelerator: str = Field(pattern=r"^nvidia-[a-z0-9-]+$")
    cpu: Quantity
    memory: Quantity
    shared_memory: Quantity


class SharedStorage(_Strict):
    """The ReadWriteMany volume every node mounts: data, starting weights, checkpoints."""

    storage_class: DnsSubdomain = Field(max_length=253)
    size: Quantity


class TrainingJobConfig(_Strict):
    """config/cloud/training.yaml."""

    job_name: DnsLabel
    config: RepoPath
    nodes: int = Field(ge=1, le=512)
    gpus_per_node: int = Field(ge=1, le=16)
    resources: NodeResources
    storage: SharedStorage
    rendezvous_port: int = Field(ge=1024, le=65535)
    max_restarts: int = Field(ge=0, le=100)
    backoff_limit: int = Field(ge=0, le=1000)

    @model_validator(mode="after")
    def _hostnames_fit(self) -> TrainingJobConfig:
        longest = f"{self.job_name}-{self.nodes - 1}"
        if len(longest) > MAX_HOSTNAME:
            raise ValueError(
                f"job_name {self.job_name!r} is too long for {self.nodes} nodes: the last "
                f"pod's host name {longest!r} has {len(longest)} characters, at most "
                f"{MAX_HOSTNAME} are allowed"
            )
        return self

    @property
    def world_size(self) -> int:
        """Training processes of the whole job: one per GPU."""
        return self.nodes * self.gpus_per_node


def load_training_job_config(config_dir: Path) -> TrainingJobConfig:
    """Read and validate ``config_dir/cloud/training.yaml``.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, not a mapping, or breaks
            the schema; the message names the file and every failing key path.
    """
    path = config_dir / CLOUD_DIR / TRAINING_FILE
    try:
        return TrainingJobConfig.model_validate(_read_mapping(path, "yaml"))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, {}, _display(path))) from None
