"""The lottery-ticket stages, one public module each, all built on one runner.

=====================  ============================  ======================================
subcommand             module                        writes
=====================  ============================  ======================================
``train``              :mod:`.dense`                 dense/ (init.pt = θ0, checkpoint.pt)
``imp-round``          :mod:`.imp`                   imp-{criterion}[-rate{r}]/round{k}/
``oneshot``            :mod:`.oneshot`               oneshot-{criterion}/sparsity{pct}/
``control``            :mod:`.control`               control-{name}/round{k}/
``prune-init``         :mod:`.pai`                   snip|grasp/sparsity{pct}/
``structured-round``   :mod:`.structured`            structured-{criterion}/round{k}/
``kd-round``           :mod:`.distill`               kd-{criterion}/round{k}/ (IMP + teacher)
``transfer``           :mod:`.transfer`              transfer/{A}-to-{B}/…/{method}/
=====================  ============================  ======================================

:mod:`.spec` parses the config slice a stage depends on; :mod:`.runner` trains, evaluates and
writes a run folder (``checkpoint.pt``, ``mask.pt``, ``metrics.json``, ``predictions.csv``).
docs/ARCHITECTURE.md has the path contract and how to add a stage.
"""

from deepfake_lth.stages.control import control
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.distill import kd_round
from deepfake_lth.stages.imp import imp_round, imp_round_at_rate
from deepfake_lth.stages.oneshot import oneshot
from deepfake_lth.stages.pai import prune_at_init, score_batches
from deepfake_lth.stages.spec import parse_spec
from deepfake_lth.stages.structured import structured_round
from deepfake_lth.stages.transfer import finetune_dense, transfer, transfer_dense

__all__ = [
    "control",
    "finetune_dense",
    "imp_round",
    "kd_round",
    "imp_round_at_rate",
    "oneshot",
    "parse_spec",
    "prune_at_init",
    "score_batches",
    "structured_round",
    "train_dense",
    "transfer",
    "transfer_dense",
]
