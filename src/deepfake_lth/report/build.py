"""The report's sections, in one registry, and the page built from them.

A section is one function ``(ctx: Context) -> Section | None`` in the module of its topic,
which decides itself whether it has something to show (None: the config does not ask for
it), plus one line in :data:`SECTIONS`; docs/ARCHITECTURE.md has the checklist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from deepfake_lth.report import (
    ablations,
    claims,
    compression,
    curves,
    generalisation,
    gradcam_maps,
    provenance,
    robustness,
    separability_latency,
    tables,
)
from deepfake_lth.report.collect import (
    LeftOut,
    collect_gradcam,
    collect_metrics,
    fill_test_videos,
    planned,
    test_counts,
)
from deepfake_lth.report.common import (
    DEFAULT_TITLE,
    NOT_RUN,
    SYNTHETIC_SENTENCE,
    Context,
    Figures,
    Section,
)

log = logging.getLogger(__name__)

Builder = Callable[[Context], "Section | None"]
# The report's sections in order: one line per section.
SECTIONS: list[Builder] = [
    curves.section,
    tables.results,
    tables.transfer,
    gradcam_maps.section,
    ablations.controls,
    ablations.pai,
    ablations.step_sizes,
    ablations.seeds,
    separability_latency.separability,
    separability_latency.latency,
    compression.section,
    generalisation.shown,
    robustness.section,
    claims.section,
    provenance.section,
]


def group_parts(section: Section, datasets: list[str]) -> None:
    """Name each part's dataset as its group, so that the page shows a tab per dataset."""
    for part in section.parts:
        if part.group:
            continue
        head = part.heading.removeprefix("Trained on ").split(" / ")[0].strip()
        if head in datasets:
            part.group = head


# --------------------------------------------------------------------------- the page


def _validated(config: dict) -> dict:
    """The config as the workflow validated it (defaults filled), so that the registry can
    say which runs it plans; a config that does not validate is used as given."""
    from deepfake_lth.core.errors import UserError
    from deepfake_lth.workflow.config import validate

    if planned(config):
        return config
    try:
        return validate(config)
    except UserError as exc:
        log.warning("the config does not validate (%s): every run found is included", exc)
        return config


def build_report(
    results_dir: str | Path,
    config: dict,
    out_path: str | Path,
    benchmarks_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    command: str | None = None,
) -> Path:
    """Write the study's report to ``out_path``; figures also as PNG in ``figures_dir``."""
    import jinja2

    from deepfake_lth.analysis.tickets import baseline_flags
    from deepfake_lth.core.files import write_text
    from deepfake_lth.data.dataset_kind import dataset_kind

    results_dir = Path(results_dir)
    config = _validated(dict(config or {}))
    left_out = LeftOut()
    runs, transfers = collect_metrics(results_dir, config, left_out)
    fill_test_videos(runs, results_dir)
    configured = list(config["datasets"]) if isinstance(config.get("datasets"), dict) else []
    datasets = list(dict.fromkeys(configured + sorted(runs["dataset"].unique())))
    ctx = Context(
        results_dir=results_dir, config=config, runs=runs, transfers=transfers,
        gradcam_runs=collect_gradcam(results_dir, config), figures=Figures(figures_dir),
        model_order=list(config["models"]) if isinstance(config.get("models"), dict) else None,
        datasets=datasets, kinds={d: dataset_kind(config, d) for d in datasets},
        flags=baseline_flags(runs) if len(runs) else {}, left_out=left_out,
        benchmarks_dir=Path(benchmarks_dir) if benchmarks_dir else None,
        extra={"command": command},
    )
    for d in datasets:
        counts = test_counts(results_dir, d, ctx.kinds[d])
        scored = runs[runs["dataset"] == d]["test_samples"].dropna()
        if counts is not None and (scored.empty or sum(counts.frames) == scored.max()):
            ctx.figures.counts[d] = counts
    sections = [s for s in (build(ctx) for build in SECTIONS) if s is not None]
    for number, section in enumerate(sections, start=1):
        section.number = number
        group_parts(section, datasets)
        for part in section.parts:  # a column with nothing in any row says nothing
            for table in part.tables:
                table.drop_empty_columns()
    rows, rules, decisions = claims.summary_rows(claims.all_claims(sections))
    start = 0
    for section in sorted(sections, key=lambda s: s.id != "claims"):
        section.claim_rows = rows[start:start + len(section.claims or [])]
        start += len(section.claims or [])
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deepfake_lth", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        title=(config.get("report") or {}).get("title") or DEFAULT_TITLE,
        synthetic_notice=bool(config.get("synthetic_notice")),
        synthetic_sentence=SYNTHETIC_SENTENCE,
        not_run=NOT_RUN,
        n_runs=len(runs),
        n_transfers=len(transfers),
        sections=sections,
        summary=rows,
        rules=rules,
        decisions=decisions,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_path, html)
    log.info("wrote %s (%d runs, %d transfer runs, %d Grad-CAM folders)",
             out_path, len(runs), len(transfers), len(ctx.gradcam_runs))
    return out_path
