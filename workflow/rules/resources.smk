# Resources of the jobs that run a network: every such rule says `resources: **gpu_job()`.
# gpu=1 (one whole GPU on SLURM), gpu_share (the model's percent of one GPU, capped locally
# by profiles/default) and the SLURM partition, wall time, memory and warning signal of a
# GPU job: see src/deepfake_lth/workflow/job_resources.py.
# extract_faces says `resources: **extract_job(detect_flag)`: the share its MTCNN claims.
from deepfake_lth.workflow.job_resources import extract_job, gpu_job
