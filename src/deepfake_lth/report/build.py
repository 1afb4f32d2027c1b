"""The report's sections, in one registry, and the page built from them.

A section is one function ``(ctx: Context) -> Section | None`` (None: the config does not ask
for it) plus one line in :data:`SECTIONS`; docs/ARCHITECTURE.md has the checklist.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from deepfake_lth.report import (
    beyond,
    compression,
    generalisation,
    measures,
    paper,
    provenance,
    robustness,
)
from deepfake_lth.report.collect import (
    LeftOut,
    collect_gradcam,
    collect_metrics,
    face_warnings,
    fill_test_videos,
    planned,
)
from deepfake_lth.report.common import (
    DEFAULT_TITLE,
    NOT_RUN,
    SYNTHETIC_SENTENCE,
    Figures,
    Part,
    Section,
)
from deepfake_lth.report.curves import accuracy_figures, layer_sparsity_figure
from deepfake_lth.stages import methods

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every section reads: the config, the runs it plans, and shared facts."""

    results_dir: Path
    config: dict
    runs: Any
    transfers: Any
    gradcam_runs: list
    figures: Figures
    model_order: list[str] | None
    datasets: list[str]
    kinds: dict[str, str | None]
    flags: dict
    left_out: LeftOut
    benchmarks_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def _enabled(ctx: Context, name: str) -> bool:
    return provenance.enabled_sections(ctx.config)[name]


# --------------------------------------------------------------------------- sections


def accuracy_section(ctx: Context) -> Section:
    own: set[str] = set()  # methods plotted in a section of their own, not in Fig. 2
    if _enabled(ctx, "pai"):
        own |= set(methods.with_role(ctx.runs["method"].unique(), methods.PRUNE_INIT))
    if _enabled(ctx, "step-sizes"):
        own |= set(methods.with_role(ctx.runs["method"].unique(), methods.STEP_SIZE))
    prune = ctx.config.get("prune") or {}
    figs = (accuracy_figures(ctx.runs, ctx.figures, ctx.model_order, own, prune.get("rate"),
                             prune.get("rounds")) if not ctx.runs.empty else {})
    section = Section("accuracy", "Accuracy vs sparsity",
                      "Test accuracy of each model against the fraction of prunable weights "
                      "removed, one line per pruning method (the paper's Fig. 2); then, per "
                      "model, where IMP prunes: the share of each layer removed at each round.",
                      empty="no metrics.json found.")
    for d in ctx.datasets:
        part = Part(d, figs.get(d), notrun="" if d in figs else
                    f"no trained networks for {d} yet.")
        for model in ctx.model_order or sorted(ctx.runs["model"].unique()):
            fig = layer_sparsity_figure(ctx.runs, d, model, ctx.figures)
            if fig is not None:
                part.figures.append(fig)
        section.parts.append(part)
    return section


def results_section(ctx: Context) -> Section:
    tables = (paper.results_tables(ctx.runs, ctx.model_order, ctx.kinds, ctx.flags)
              if not ctx.runs.empty else {})
    section = Section("results", "Results per dataset", "", empty="no metrics.json found.")
    for d in ctx.datasets:
        notes = [text for (ds, _), text in sorted(ctx.flags.items()) if ds == d]
        notes += face_warnings(ctx.results_dir, [d])
        section.parts.append(Part(d, None, [tables[d]] if d in tables else [],
                                  notes=notes, notrun="" if d in tables else " "))
    return section


def transfer_section(ctx: Context) -> Section:
    pairs = (ctx.config.get("transfer") or {}).get("pairs") or []
    tables = (paper.transfer_tables(ctx.transfers, ctx.config, ctx.kinds)
              if not ctx.transfers.empty else [])
    section = Section("transfer", "Transfer tickets (Table I)",
                      "Tickets found on one dataset, trained on another, laid out as the "
                      "paper's Table I." if tables else "")
    if tables:
        section.parts.append(Part("", None, tables))
    elif pairs:
        section.parts.append(Part("", notrun="transfer pairs are configured, but no transfer "
                                  "results exist yet."))
    else:
        section.parts.append(Part("", notrun="no transfer pairs are configured "
                                  "(transfer.pairs)."))
    return section


def gradcam_section(ctx: Context) -> Section:
    runs = ctx.gradcam_runs
    targets = sorted({paper.TARGET_WORDS.get(str(r.npz["target"]), str(r.npz["target"]))
                      for r in runs if r.npz is not None and "target" in r.npz})
    intro = Markup(
        "Grad-CAM maps L = ReLU(&Sigma;<sub>k</sub> &alpha;<sub>k</sub> A<sup>k</sup>) of each "
        "model's last convolutional stage for the same test faces at every sparsity (the "
        "paper's Fig. 3), and the change of attention &Delta;L(p) = ||L<sub>0</sub> &minus; "
        "L<sub>p</sub>||<sub>F</sub> between the dense network's map and the pruned "
        "network's, raw (the paper's) and on maps scaled to [0, 1]. Concentration is the share "
        "of a map's heat in its hottest 10&nbsp;% of pixels (0.1 for a uniform map, 1 for a "
        "single spot).") if runs else ""
    if targets:
        intro += Markup(" Explained score: {}.").format(", ".join(targets))
    section = Section("gradcam", "Grad-CAM under pruning", intro,
                      empty="no Grad-CAM results yet (results/gradcam/).")
    for key in sorted({(r.dataset, r.model) for r in runs}):
        part_runs = [r for r in runs if (r.dataset, r.model) == key]
        grid = paper.gradcam_grid(part_runs, *key, ctx.figures)
        delta_fig, delta_table = paper.delta_figure(part_runs, *key, ctx.figures)
        part = Part(f"{key[0]} / {key[1]}", grid, [delta_table] if delta_table else [],
                    figures=[delta_fig] if delta_fig else [])
        if grid is None:
            part.lines.append(f"{NOT_RUN}: no heatmaps.npz.")
        if delta_table is None:
            part.lines.append(f"{NOT_RUN}: no delta.csv.")
        else:
            part.lines.append(paper.noise_floor_line(part_runs))
        section.parts.append(part)
    return section


def controls_section(ctx: Context) -> Section | None:
    if not _enabled(ctx, "controls"):
        return None
    return beyond.controls_section(ctx.runs, ctx.config, ctx.figures, ctx.model_order, ctx.kinds)


def pai_section(ctx: Context) -> Section | None:
    if not _enabled(ctx, "pai"):
        return None
    return beyond.pai_section(ctx.runs, ctx.config, ctx.figures, ctx.model_order)


def step_size_section(ctx: Context) -> Section | None:
    if not _enabled(ctx, "step-sizes"):
        return None
    return beyond.step_size_section(ctx.runs, ctx.config, ctx.figures, ctx.model_order)


def seeds_section(ctx: Context) -> Section | None:
    if not _enabled(ctx, "seeds"):
        return None
    return beyond.seeds_section(ctx.runs, ctx.config, ctx.model_order)


def separability_section(ctx: Context) -> Section | None:
    if not _enabled(ctx, "separability"):
        return None
    return measures.separability_section(ctx.results_dir, ctx.config, ctx.figures)


def latency_section(ctx: Context) -> Section | None:
    if not _enabled(ctx, "latency"):
        return None
    return measures.latency_section(ctx.results_dir, ctx.config)


def one_seed_words(claims) -> Markup:
    """Which claims this run cannot judge for want of seeds, in a sentence ("" if none)."""
    from deepfake_lth.analysis.claims import ONE_SEED

    short = [c.text.split(" (")[0] for c in claims if c.why == ONE_SEED]
    if not short:
        return Markup("")
    return Markup("This run has one seed per network: {} claim{} need{} two or more "
                  "(<code>seeds: [0, 1, 2]</code>, as config/paper.yaml and "
                  "config/controls.yaml run): {}. ").format(
        len(short), "s" if len(short) != 1 else "", "" if len(short) != 1 else "s",
        "; ".join(short))


def compression_section(ctx: Context) -> Section | None:
    if not (ctx.config.get("compression") or {}).get("models"):
        return None
    return compression.compression_section(ctx.results_dir, ctx.config, ctx.figures)


def generalisation_section(ctx: Context) -> Section | None:
    return generalisation.section(ctx.results_dir, ctx.runs, ctx.config, ctx.figures,
                                  ctx.model_order)


def claims_section(ctx: Context) -> Section:
    claims = provenance.claims_rows(ctx.runs, ctx.transfers, ctx.gradcam_runs, ctx.config,
                                    ctx.kinds)
    return Section(
        "claims", "The paper's claims on this run",
        Markup("Each claim of the paper, and some it names as future work, checked against "
               "this run's numbers by the stated rule: <em>holds</em>, <em>does not "
               "hold</em>, <em>not enough evidence</em> (it ran, and an interval straddles "
               "0 or the margin; or it rests on one training run per network: <em>one "
               "seed</em>), or <em>not run</em> (the method or data was not in this run). "
               "Comparisons of trained networks need two or more seeds: their 95 % intervals "
               "include the variance between training runs (paired by seed) and, on a video "
               "set, the variance between test videos (per-video accuracies from each run's "
               "predictions.csv, paired by video). Claims that a ticket <em>keeps</em> an "
               "accuracy are non-inferiority tests against a fixed margin δ = {:.0f} points "
               "(<code>claims.margin</code>). The comparisons of one claim (datasets × "
               "models) are corrected with Holm's method. {}The verdicts speak for this run's "
               "data and settings only.").format(
                   100 * float((ctx.config.get("claims") or {}).get("margin", 0.02)),
                   one_seed_words(claims)),
        claims=claims)


def provenance_section(ctx: Context) -> Section:
    devices = Counter(d for d in ctx.runs["device"].tolist() + ctx.transfers["device"].tolist()
                      if d)
    sizes, statuses = provenance.dataset_tables(ctx.results_dir, ctx.datasets)
    from deepfake_lth.report.common import Table

    run = Table("This report", ["Fact", "Value"], text_columns=0,
                rows=[list(f) for f in provenance.run_facts(ctx.extra.get("command"))])
    software = Table("Software", ["Package", "Version"], text_columns=0,
                     rows=[list(v) for v in provenance.package_versions()])
    section = Section("provenance", "Provenance", "")
    section.parts.append(Part("Run", None, [run]))
    section.parts.append(Part("Software", None, [software]))
    if devices:
        section.parts.append(Part("Devices", None, [Table(
            "Devices", ["Device", "Runs"], text_columns=0,
            rows=[[d, str(n)] for d, n in sorted(devices.items())])]))
    else:
        section.parts.append(Part("Devices", notrun="no device recorded in metrics.json."))
    left = ctx.left_out.sentences()
    section.parts.append(Part(
        "Runs included", lines=[f"{len(ctx.runs)} trained networks and {len(ctx.transfers)} "
                                "transfer runs that the config plans are included."]
        + ([f"Left out of every figure, table and claim ({sum(ctx.left_out.values())} run "
            "folders found under results/): " + "; ".join(left) + "."] if left else
           ["No other run folders were found under results/."])))
    warnings = face_warnings(ctx.results_dir, ctx.datasets)
    section.parts.append(Part("Data", None, [sizes, statuses], notes=warnings))
    bench = provenance.benchmark_table(ctx.benchmarks_dir)
    section.parts.append(Part("Wall time", None, [bench] if bench else [],
                              notrun="" if bench else "no Snakemake benchmark files."))
    section.parts.append(Part("Config as run", pre=provenance.config_yaml(ctx.config)))
    return section


Builder = Callable[[Context], "Section | None"]
# The report's sections in order: one line per section.
SECTIONS: list[Builder] = [
    accuracy_section,
    results_section,
    transfer_section,
    gradcam_section,
    controls_section,
    pai_section,
    step_size_section,
    seeds_section,
    separability_section,
    latency_section,
    compression_section,
    generalisation_section,
    robustness.section,
    claims_section,
    provenance_section,
]


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
    sections = [s for s in (build(ctx) for build in SECTIONS) if s is not None]
    for number, section in enumerate(sections, start=1):
        section.number = number
        for part in section.parts:  # a column with nothing in any row says nothing
            for table in part.tables:
                table.drop_empty_columns()
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
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_path, html)
    log.info("wrote %s (%d runs, %d transfer runs, %d Grad-CAM folders)",
             out_path, len(runs), len(transfers), len(ctx.gradcam_runs))
    return out_path
