"""Sections beyond the paper that compare methods: controls and winning tickets, pruning at
initialization, pruning step sizes, seeds with confidence intervals."""

from __future__ import annotations

import numpy as np
from markupsafe import Markup

from deepfake_lth.analysis.stats import FAILS, GREATER, LESS, MARGIN
from deepfake_lth.pruning.plan import parse_step_size_method
from deepfake_lth.report.common import (
    Context,
    Figures,
    Part,
    Section,
    Table,
    asks_for,
    ci_text,
    method_key,
    method_label,
    ordered,
    p_text,
    pct_text,
    safe_name,
    seeds_words,
)
from deepfake_lth.report.curves import curves
from deepfake_lth.stages import methods


def main_imp(runs) -> str | None:
    imps = sorted(methods.with_role(runs["method"].unique(), methods.TICKET), key=method_key)
    return imps[0] if imps else None


def datasets_with(runs, methods) -> list[str]:
    return sorted(runs[runs["method"].isin(list(methods))]["dataset"].unique())


def comparison_table(runs, dataset: str, pairs: list[tuple[str, str]], title: str,
                      model_order: list[str] | None) -> Table | None:
    """Paired differences A − B (percentage points) over seeds at every shared sparsity."""
    from deepfake_lth.analysis.stats import paired_comparisons

    table = Table(title, ["Model", "Comparison", "Sparsity (%)", "Seeds", "Difference (pp)",
                          "95 % CI (pp)", "t", "p"], text_columns=2,
                  note="Difference: mean over seeds of A − B test accuracy, paired by seed "
                  "(the same seed's dense network, split and data order); 95 % t-interval and "
                  "paired t-test (scipy.stats.ttest_rel). Fewer than two seeds: not enough "
                  "seeds for a test.")
    part = runs[runs["dataset"] == dataset]
    rank = {m: i for i, m in enumerate(ordered(part["model"], model_order))}
    rows = []
    for i, (a, b) in enumerate(pairs):
        comp = paired_comparisons(part, a, b)
        for _, r in comp.iterrows():
            ci = None if not np.isfinite(r["low"]) else r
            rows.append((rank[r["model"]], i, r["sparsity"], [
                r["model"], f"{method_label(a)} − {method_label(b)}", pct_text(r["sparsity"]),
                str(int(r["n_pairs"])),
                "–" if not np.isfinite(r["mean_diff"]) else f"{100 * r['mean_diff']:+.1f}",
                "–" if ci is None else f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]",
                "–" if not np.isfinite(r["t"]) else f"{r['t']:.2f}",
                p_text(r["p"], r["note"]),
            ]))
    if not rows:
        return None
    table.rows = [row for *_, row in sorted(rows, key=lambda t: t[:3])]
    return table


def verdict_text(row) -> str:
    """A round's winning-ticket verdict by the claims' rule, with its reason."""
    return row["verdict"] + (f": {row['why']}" if row["why"] else "")


def controls_section(runs, config: dict, figures: Figures, model_order: list[str] | None,
                     kinds: dict | None = None) -> Section:
    """Winning tickets: the IMP ticket against the dense network and the controls."""
    from deepfake_lth.analysis.tickets import ticket_method, winning_tickets, winning_up_to

    controls = list(config.get("controls") or [])
    imp = ticket_method(runs, config) or "imp-global"
    matched = methods.MATCHED_CONTROL
    margin = float((config.get("claims") or {}).get("margin", MARGIN))
    section = Section(
        "controls", "Controls and winning tickets",
        Markup("The {} ticket at each round against its controls at the same per-layer "
               "sparsity, each named in the table; the <em>matched</em> control ({}) has the "
               "ticket's training schedule, so only it isolates the choice of weights. Rule: a "
               "ticket is a <em>winning ticket</em> at a round when the 95 % interval of its "
               "accuracy minus the dense accuracy lies above −δ (δ = {:.0f} points, "
               "<code>claims.margin</code>: not worse than dense by the margin; paired by seed "
               "and by test unit) and the 95 % interval of ticket − matched control lies above "
               "0, judged by the claims' rule (two or more seeds; without the matched control "
               "it is not judged, the other controls are shown by their means). The paper's "
               "own criterion, a′ ≥ a (ticket at least as accurate as dense), is shown beside "
               "it.").format(
                   method_label(imp), method_label(f"control-{matched}"), 100 * margin),
        empty="no control runs yet (results/…/control-*/).",
    )
    for dataset in datasets_with(runs, [f"control-{c}" for c in controls] + [imp]):
        part = runs[runs["dataset"] == dataset]
        shown = [imp] + [f"control-{c}" for c in controls]
        prune = config.get("prune") or {}
        figure = curves(
            runs, dataset, shown, f"{dataset}: ticket vs controls", figures,
            f"controls_{safe_name(dataset)}",
            f"{method_label(imp)} and the controls on {dataset} ({seeds_words(part)}); the "
            f"grey band runs from the dense accuracy − δ ({100 * margin:.0f} points) to the dense "
            "accuracy.", model_order, margin=margin, rate=prune.get("rate"),
            rounds=prune.get("rounds"))
        wt = winning_tickets(part, imp, controls, kinds or {}, matched, margin)
        labels = {c: method_label(f"control-{c}") for c in controls}
        table = Table(f"{dataset}: winning tickets",
                      ["Model", "Round", "Sparsity (%)", "Seeds", "Ticket acc (%)",
                       "Dense (%)", "a′ ≥ a (paper)", "Ticket − dense (pp)", "SE from"]
                      + [labels[c] + " (%)" for c in controls]
                      + ["Ticket − matched control (pp)", f"Within δ = {100 * margin:.0f} pp",
                         "Against controls",
                         "Winning ticket"], text_columns=2)
        rank = {m: i for i, m in enumerate(ordered(part["model"], model_order))}
        for _, r in wt.sort_values(["model", "sparsity"], key=lambda c: c.map(rank)
                                   if c.name == "model" else c).iterrows():
            vs = r["vs_matched"]
            against = ("beats the matched control" if r["matched_outcome"] == GREATER
                       else "below the matched control" if r["matched_outcome"] == LESS
                       else "level with the matched control" if vs is not None
                       else ("above the other controls" if r["above_controls"]
                             else "below a control") if r["controls_present"] else "–")
            table.rows.append(
                [r["model"], r["level"], pct_text(r["sparsity"]), str(r["n_seeds"]),
                 pct_text(r["ticket"]), pct_text(r["dense"]), "yes" if r["paper"] else "no",
                 "–" if r["vs_dense"] is None else r["vs_dense"].text().replace(" pp", ""),
                 r["se_how"]]
                + [pct_text(r[c]) for c in controls]
                + ["–" if vs is None else vs.text().replace(" pp", ""),
                   "yes" if r["within_margin"] else "no", against,
                   verdict_text(r)])
        table.drop_empty_columns()
        lines = []
        for (_, model), s in sorted(winning_up_to(wt).items(), key=lambda kv: rank[kv[0][1]]):
            first = wt[wt["model"] == model].nsmallest(1, "sparsity").iloc[0]
            lines.append(f"{model}: {method_label(imp)} is "
                         + (f"a winning ticket at every round up to {100 * s:.1f} % sparsity"
                            if s is not None else "not a winning ticket at its first round"
                            if first["verdict"] == FAILS else
                            f"not judged at its first round ({verdict_text(first)})"))
        section.parts.append(Part(dataset, figure, [table] if table.rows else [], lines))
    return section


def pai_section(runs, config: dict, figures: Figures, model_order: list[str] | None
                ) -> Section:
    """SNIP and GraSP (pruning at initialization) against IMP and one-shot pruning."""
    pai = [m for m in ((config.get("prune_init") or {}).get("methods") or [])
           if methods.with_role([m], methods.PRUNE_INIT)]
    imp = main_imp(runs)
    section = Section(
        "pai", "Pruning at initialization: SNIP and GraSP",
        "SNIP (Lee et al. 2019) keeps the weights of θ<sub>0</sub> with the largest "
        "connection sensitivity |g ⊙ w|; GraSP (Wang et al. 2020) removes those with the "
        "largest −θ ⊙ Hg (the weights whose removal reduces the gradient flow least), both "
        "scored on a few training batches and ranked over the whole network. The mask is "
        "fixed before any training and m ⊙ θ<sub>0</sub> is trained once, at the same "
        "sparsities as one-shot pruning. The paper names both as future comparisons (§VI).",
        empty="no SNIP or GraSP runs yet (results/…/snip/, results/…/grasp/).",
    )
    for dataset in datasets_with(runs, pai):
        part = runs[runs["dataset"] == dataset]
        shown = sorted(methods.with_role(part["method"].unique(), methods.TICKET)
                         + methods.with_role(part["method"].unique(), methods.ONESHOT),
                         key=method_key) + pai
        figure = curves(
            runs, dataset, shown, f"{dataset}: pruning at initialization", figures,
            f"pai_{safe_name(dataset)}",
            f"SNIP and GraSP against IMP and one-shot pruning on {dataset} "
            f"({seeds_words(part)}).", model_order,
            rate=(config.get("prune") or {}).get("rate"),
            rounds=(config.get("prune") or {}).get("rounds"))
        oneshots = sorted(methods.with_role(part["method"].unique(), methods.ONESHOT),
                          key=method_key)
        pairs = [(imp, m) for m in pai if imp] + [(o, m) for o in oneshots[:1] for m in pai]
        table = comparison_table(runs, dataset, pairs, f"{dataset}: paired differences",
                                  model_order)
        section.parts.append(Part(dataset, figure, [table] if table else []))
    return section


def step_size_section(runs, config: dict, figures: Figures, model_order: list[str] | None
                      ) -> Section:
    """IMP at several pruning rates reaching the same final sparsity."""
    from deepfake_lth.analysis.stats import mean_ci

    rate = float((config.get("prune") or {}).get("rate", 0.2))
    variants = sorted(methods.with_role(runs["method"].unique(), methods.STEP_SIZE),
                      key=method_key)
    section = Section(
        "step-sizes", "Pruning step size",
        Markup("IMP removes a fixed share of the surviving weights per round: {} in the "
               "config (the paper's 20 %), and the other rates below, each run for as many "
               "rounds as it needs to reach the same final sparsity, "
               "⌈log(1 − s)/log(1 − rate)⌉. The paper suggests (§VI) that smaller steps of "
               "5–10 % may preserve rare features better.").format(f"{rate:g}"),
        empty="no IMP runs at other step sizes yet (results/…/imp-*-rate*/).",
    )
    for dataset in datasets_with(runs, variants):
        part = runs[runs["dataset"] == dataset]
        criteria = sorted({parse_step_size_method(v)[0] for v in variants})
        shown = [f"imp-{c}" for c in criteria] + variants
        figure = curves(
            runs, dataset, shown, f"{dataset}: pruning step size", figures,
            f"step_sizes_{safe_name(dataset)}",
            f"IMP at several pruning rates on {dataset} ({seeds_words(part)}).", model_order,
            rate=(config.get("prune") or {}).get("rate"),
            rounds=(config.get("prune") or {}).get("rounds"))
        table = Table(f"{dataset}: final level per rate",
                      ["Model", "Method", "Rate", "Rounds", "Final sparsity (%)", "Seeds",
                       "Test acc (%)", "95 % CI (%)"], text_columns=2,
                      note="The last round of each rate; rounds = the levels it trained.")
        for model in ordered(part["model"], model_order):
            mp = part[part["model"] == model]
            for method in shown:
                g = mp[mp["method"] == method]
                if g.empty:
                    continue
                final = g.groupby("level")["sparsity"].mean().idxmax()
                at = g[g["level"] == final]
                ci = mean_ci(at["test_acc"])
                step = parse_step_size_method(method)
                table.rows.append([model, method_label(method), f"{step[1] if step else rate:g}",
                                   str(g["level"].nunique()), pct_text(at["sparsity"].mean()),
                                   str(ci.n), pct_text(ci.mean), ci_text(ci)])
        pairs = [(v, f"imp-{parse_step_size_method(v)[0]}") for v in variants]
        comp = comparison_table(runs, dataset, pairs, f"{dataset}: paired differences",
                                 model_order)
        section.parts.append(Part(dataset, figure, [table] + ([comp] if comp else [])))
    return section


def seeds_section(runs, config: dict, model_order: list[str] | None) -> Section:
    """Mean and 95 % t-interval over seeds of every network, and IMP vs one-shot tests."""
    from deepfake_lth.analysis.stats import summarize

    n = len(set(runs["seed"])) if len(runs) else len(config.get("seeds") or [])
    section = Section(
        "seeds", "Seeds and confidence intervals",
        f"The config runs {n} seeds (each its own θ<sub>0</sub>, data order and "
        "controls; the split is shared). Means are over seeds, with two-sided 95 % "
        "t-intervals (n − 1 degrees of freedom, scale sd/√n); the bands in the figures are "
        "the same intervals. IMP and one-shot pruning are compared by a paired t-test over "
        "seeds at each sparsity both reach.",
        empty="no trained networks yet.",
    )
    for dataset in sorted(runs["dataset"].unique()):
        part = runs[runs["dataset"] == dataset]
        summary = summarize(part)
        rank = {m: i for i, m in enumerate(ordered(part["model"], model_order))}
        summary = summary.assign(_r=summary["model"].map(rank),
                                 _m=summary["method"].map(method_key))
        table = Table(f"{dataset}: test accuracy over seeds",
                      ["Model", "Method", "Sparsity (%)", "Seeds", "Mean (%)",
                       "95 % CI (%)", "sd (pp)"], text_columns=2)
        for _, r in summary.sort_values(["_r", "_m", "sparsity"]).iterrows():
            table.rows.append([r["model"], method_label(r["method"]), pct_text(r["sparsity"]),
                               str(r["n"]), pct_text(r["mean"]), ci_text(r),
                               pct_text(r["sd"])])
        criteria = [methods.criterion_of(m) for m in sorted(
            methods.with_role(part["method"].unique(), methods.TICKET), key=method_key)
            if f"oneshot-{methods.criterion_of(m)}" in set(part["method"])]
        comp = comparison_table(runs, dataset, [(f"imp-{c}", f"oneshot-{c}") for c in criteria],
                                 f"{dataset}: IMP vs one-shot", model_order)
        section.parts.append(Part(dataset, None, [comp] if comp else [], lines=[] if comp else
                                  ["No IMP criterion with its one-shot counterpart here."]))
        section.parts.append(Part(f"{dataset}: every network's mean and 95 % interval over "
                                  "seeds", None, [table], folded=True, group=dataset))
    return section


def controls(ctx: Context) -> Section | None:
    if not asks_for(ctx.config, "controls"):
        return None
    return controls_section(ctx.runs, ctx.config, ctx.figures, ctx.model_order, ctx.kinds)


def pai(ctx: Context) -> Section | None:
    if not asks_for(ctx.config, "pai"):
        return None
    return pai_section(ctx.runs, ctx.config, ctx.figures, ctx.model_order)


def step_sizes(ctx: Context) -> Section | None:
    if not asks_for(ctx.config, "step-sizes"):
        return None
    return step_size_section(ctx.runs, ctx.config, ctx.figures, ctx.model_order)


def seeds(ctx: Context) -> Section | None:
    if not asks_for(ctx.config, "seeds"):
        return None
    return seeds_section(ctx.runs, ctx.config, ctx.model_order)
