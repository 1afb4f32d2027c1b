# deepfake-lth: the lottery-ticket study of deepfake detectors as one cached workflow.
#   snakemake --cores 8 results/report.html                         (the default demo, config.yaml)
#   snakemake --cores 8 results/paper/report.html --configfile config/paper.yaml
# Rules are thin: each calls one `deepfake-lth <stage>` subcommand; the logic lives in src/.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from deepfake_lth.workflow import config as study_config
from deepfake_lth.pruning import plan

# config.yaml is the default; a --configfile replaces it (rather than merging into the demo's
# datasets), and --config key=value overrides apply on top of either, merged as
# study_config.merge does (a source given with another type replaces the old one whole).
_raw = study_config.merge_files(
    workflow.config_settings.configfiles or [Path(workflow.basedir) / "config.yaml"],
    workflow.config_settings.config,
)

_checked = study_config.validate(_raw)  # stops here, naming the key, on a bad config
config.clear()
config.update(_checked)


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/compression.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        REPORT,
