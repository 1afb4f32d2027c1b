"""Snakemake resources of the jobs that run a network (train, prune, transfer, Grad-CAM,
separability), declared once here; every such rule says ``resources: **gpu_job()``
(workflow/rules/resources.smk).

- ``gpu=1``: a GPU job. On SLURM the executor plugin turns it into ``sbatch --gpus=1``
  (``--gpus=MODEL:1`` with ``gpu_model``), so a job holds one whole GPU there.
- ``gpu_share``: the job's share of one GPU in percent, from the model registry
  (:func:`deepfake_lth.models.registry.gpu_share_percent`: Xception 100, ResNet-18 50,
  CNN-5 and MesoNet 25). Locally, profiles/default caps ``gpu_share`` at 100 per visible
  GPU: four MesoNet jobs share a GPU, two Xception jobs never do.
- ``slurm_partition``, ``gpu_model``, ``slurm_extra``, ``runtime``, ``mem_mb``: what SLURM
  needs for a GPU job, from the site settings documented in profiles/slurm
  (``DLTH_SLURM_GPU_PARTITION``, ``DLTH_SLURM_GPU_MODEL``, ``DLTH_SLURM_GPU_EXTRA``,
  ``DLTH_SLURM_GPU_HOURS``, ``DLTH_SLURM_SIGNAL``). They sit next to ``gpu=1`` so that the
  partition follows from a rule's own resources and no list of rule names can drift; a
  local run ignores them. ``slurm_extra`` asks SLURM for SIGTERM 120 s before the time limit
  (``--signal=TERM@120``, sent to the job step, so the training process itself receives
  it, keeps its resume state and exits; the retry resumes: :mod:`deepfake_lth.training.resume`).
- ``extract_job``: an extraction job's ``gpu_share`` (MTCNN: ``EXTRACT_SHARE``, 25 %; none
  with ``--detect no``), as much as the job claims (:func:`deepfake_lth.cli.gpu_share`).
  No ``gpu=1``: on SLURM extraction stays off the GPU partition.
- GPU sharing on SLURM: where the site configures GRES sharding (``shard``), set
  ``DLTH_SLURM_GPU_SHARDS`` to the shards of one GPU; a job then asks for
  ``--gres=shard:N`` (N: its ``gpu_share`` of those shards, at least 1) instead of a whole
  GPU (``gpu=0``, no ``gpu_model``), still in the GPU partition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepfake_lth.core.execution import site_setting
from deepfake_lth.core.gpus import EXTRACT_SHARE
from deepfake_lth.models.registry import gpu_share_percent

SIGNAL = "TERM@120"  # sbatch --signal: SIGTERM to the job step 120 s before the time limit


def gpu_share(wildcards: Any) -> int:
    """The job's GPU share in percent of one GPU (an integer: Snakemake resources are);
    100 for a job without a ``{model}`` wildcard."""
    model = wildcards.get("model")
    return gpu_share_percent(model) if model else 100


def slurm_gpu_partition() -> str:
    """The partition of GPU jobs: DLTH_SLURM_GPU_PARTITION, else DLTH_SLURM_PARTITION, else
    empty (the cluster's default partition)."""
    return site_setting("DLTH_SLURM_GPU_PARTITION") or site_setting("DLTH_SLURM_PARTITION")


def _runtime(minutes: int) -> Callable[[Any, int], int]:
    def runtime(wildcards: Any, attempt: int) -> int:
        return minutes * attempt

    return runtime


def _shards(per_gpu: int) -> Callable[[Any], str]:
    def gres(wildcards: Any) -> str:
        return f"shard:{max(1, round(gpu_share(wildcards) * per_gpu / 100))}"

    return gres


def _mem_mb(wildcards: Any, input: Any, attempt: int) -> int:
    # the packed faces are memory-mapped: the page cache grows with the input
    return (8000 + int(1.5 * input.size_mb)) * attempt


def gpu_job(minutes: int | None = None) -> dict[str, Any]:
    """Resources of a job that runs a network on the GPU (on the CPU where there is none).

    ``minutes``: SLURM wall time of the first attempt (default: DLTH_SLURM_GPU_HOURS, 6 h);
    attempt n gets n times as much."""
    if minutes is None:
        minutes = int(float(site_setting("DLTH_SLURM_GPU_HOURS", "6")) * 60)
    res: dict[str, Any] = {"gpu": 1, "gpu_share": gpu_share, "runtime": _runtime(minutes),
                           "mem_mb": _mem_mb}
    partition = slurm_gpu_partition()
    if partition:
        res["slurm_partition"] = partition
    shards = int(site_setting("DLTH_SLURM_GPU_SHARDS", "0") or 0)
    model = site_setting("DLTH_SLURM_GPU_MODEL")
    if shards > 0:
        res["gpu"] = 0
        res["gres"] = _shards(shards)
    elif model:
        res["gpu_model"] = model
    signal = site_setting("DLTH_SLURM_SIGNAL", SIGNAL)
    extra = [f"--signal={signal}" if signal else "", site_setting("DLTH_SLURM_GPU_EXTRA")]
    if any(extra):
        res["slurm_extra"] = " ".join(e for e in extra if e)
    return res


def extract_job(detect: Callable[[Any], str]) -> dict[str, Any]:
    """Resources of an extraction job: the GPU share it claims, 0 where ``detect(wildcards)``
    is ``no`` (no face detector: the job runs on the CPU)."""

    def share(wildcards: Any) -> int:
        return 0 if detect(wildcards) == "no" else EXTRACT_SHARE

    return {"gpu_share": share}
