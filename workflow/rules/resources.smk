# Resources of the jobs that run a network (train, prune, transfer, Grad-CAM, separability),
# declared once here and used by every such rule as `resources: **gpu_job()`:
#
#   gpu=1          a GPU job. On SLURM the executor plugin turns it into `sbatch --gpus=1`
#                  (--gpus=MODEL:1 with gpu_model), so a job holds one whole GPU there.
#   gpu_share=P    the job's share of one GPU in percent, from the model registry
#                  (deepfake_lth.models.registry: Xception 100, ResNet-18 50, CNN-5 and
#                  MesoNet 25). Locally, profiles/default caps gpu_share at 100 per visible
#                  GPU: four MesoNet jobs share a GPU, two Xception jobs never do.
#   slurm_partition, gpu_model, slurm_extra, runtime, mem_mb
#                  what SLURM needs for a GPU job, from the site settings of profiles/slurm
#                  (DLTH_SLURM_GPU_PARTITION, DLTH_SLURM_GPU_MODEL, DLTH_SLURM_GPU_EXTRA,
#                  DLTH_SLURM_GPU_HOURS, DLTH_SLURM_SIGNAL). They are declared here, next to
#                  gpu=1, so that the partition follows from a rule's own resources and no
#                  list of rule names can drift; a local run ignores them. slurm_extra asks
#                  SLURM for SIGTERM 120 s before the time limit (`--signal=TERM@120`, sent
#                  to the job step, so the training process itself gets it, saves its state
#                  and exits; the retry resumes: src/deepfake_lth/resume.py).
import os

from deepfake_lth.models.registry import gpu_share_percent


def gpu_share(wildcards):
    """The job's GPU share in percent of one GPU (integer: Snakemake resources are)."""
    model = wildcards.get("model")
    return gpu_share_percent(model) if model else 100


def slurm_gpu_partition():
    """The partition of GPU jobs: DLTH_SLURM_GPU_PARTITION, else DLTH_SLURM_PARTITION, else
    none (the cluster's default partition)."""
    return (os.environ.get("DLTH_SLURM_GPU_PARTITION")
            or os.environ.get("DLTH_SLURM_PARTITION", ""))


def _gpu_runtime(minutes):
    def runtime(wildcards, attempt):
        return minutes * attempt

    return runtime


def _gpu_mem_mb(wildcards, input, attempt):
    # the packed faces of a dataset are memory-mapped: page cache grows with the input
    return (8000 + int(1.5 * input.size_mb)) * attempt


def gpu_job(minutes=None):
    """Resources of a job that runs a network on the GPU (or the CPU where there is none).

    ``minutes``: SLURM wall time of the first attempt (default DLTH_SLURM_GPU_HOURS, 6 h);
    later attempts get a multiple of it."""
    if minutes is None:
        minutes = int(float(os.environ.get("DLTH_SLURM_GPU_HOURS", "6")) * 60)
    res = {"gpu": 1, "gpu_share": gpu_share, "runtime": _gpu_runtime(minutes),
           "mem_mb": _gpu_mem_mb}
    partition = slurm_gpu_partition()
    if partition:
        res["slurm_partition"] = partition
    if os.environ.get("DLTH_SLURM_GPU_MODEL"):
        res["gpu_model"] = os.environ["DLTH_SLURM_GPU_MODEL"]
    signal = os.environ.get("DLTH_SLURM_SIGNAL", "TERM@120")
    extra = [f"--signal={signal}" if signal else "", os.environ.get("DLTH_SLURM_GPU_EXTRA", "")]
    if any(extra):
        res["slurm_extra"] = " ".join(e for e in extra if e)
    return res
