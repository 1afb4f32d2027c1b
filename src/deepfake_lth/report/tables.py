"""The paper's tables: results per dataset and Table I (transfer tickets), and their
sections."""

from __future__ import annotations

import math

import numpy as np

from deepfake_lth.pruning.plan import pct
from deepfake_lth.report.collect import planned
from deepfake_lth.report.common import (
    Context,
    Part,
    Section,
    Table,
    int_text,
    mean_sd,
    method_key,
    method_label,
    millions,
    ordered,
    pct_text,
)
from deepfake_lth.stages import methods


def test_set_words(df, kind: str | None) -> str:
    """"1,234 test images" or "6 test videos (240 frames)"."""
    frames = df["test_samples"].dropna()
    videos = df["test_videos"].dropna() if "test_videos" in df else []
    n = int(frames.iloc[0]) if len(frames) else None
    if kind == "videos":
        v = int(videos.iloc[0]) if len(videos) else None
        if v is not None and n is not None:
            return f"{v:,} test {'video' if v == 1 else 'videos'} ({n:,} frames)"
        return f"{n:,} test frames" if n is not None else "test set size unknown"
    return f"{n:,} test images" if n is not None else "test set size unknown"


def results_tables(runs, model_order: list[str] | None = None,
                   kinds: dict | None = None, flags: dict | None = None) -> dict[str, Table]:
    """A table per dataset: every network with its accuracy at the threshold 0.5 (the
    paper's) and at the threshold chosen on the validation split, its AUC, video accuracy
    (video sets only) and the share of dense accuracy."""
    kinds = kinds or {}
    flags = flags or {}
    out = {}
    for dataset, df in runs.groupby("dataset", sort=True):
        kind = kinds.get(dataset)
        dense = df[df["method"] == "dense"].groupby(["model", "seed"])["test_acc"].mean()
        table = Table(
            f"{dataset}: {test_set_words(df, kind)}",
            ["Model", "Method", "Sparsity (%)", "Params remaining", "Test acc at 0.5 (%)",
             "Test acc at val. threshold (%)", "Frame AUC"]
            + (["Video acc (%)", "Video AUC"] if kind == "videos" else [])
            + ["Frame EER", "Frame AP"]
            + ["Retained (% of dense)", "Seeds"],
            note="Accuracy at 0.5: the paper's threshold on p(fake); at val. threshold: the "
            "threshold that maximises validation accuracy, applied to the test set. Retained: "
            "test accuracy at 0.5 over the dense network's (same model and seed). With several "
            "seeds: mean ± sd over seeds (95 % t-intervals in the section on seeds)."
            + (" Video acc: the share of test videos whose mean p(fake) is on the right side "
               "of 0.5." if kind == "videos" else "") + " EER: the error rate where false "
            "positives equal false negatives, on the ROC interpolated between its points "
            "(DeepfakeBench takes the nearest ROC point). AP: average precision, fake the "
            "positive class.",
            text_columns=2,
        )
        keys = []
        for (model, method, level), g in df.groupby(["model", "method", "level"]):
            keys.append((model, method_key(method), g["sparsity"].mean(), method, level, g))
        rank = {m: i for i, m in enumerate(ordered(df["model"], model_order))}
        for model, _, _, method, level, g in sorted(keys, key=lambda k: (rank[k[0]], *k[1:3])):
            ref = [dense.get((model, s), math.nan) for s in g["seed"]]
            retained = [a / r if r and np.isfinite(r) else math.nan
                        for a, r in zip(g["test_acc"], ref, strict=True)]
            flagged = method == "dense" and (dataset, model) in flags
            table.rows.append([
                model,
                method_label(method) + (" (miscalibrated: see below)" if flagged else ""),
                pct_text(g["sparsity"].mean()),  # seeds differ by a few weights at most
                int_text(g["params_nonzero"].mean()),
                mean_sd(g["test_acc"]),
                mean_sd(g["test_acc_val_threshold"]),
                mean_sd(g["test_auc"], scale=1.0, digits=3),
                *([mean_sd(g["video_acc"]), mean_sd(g["video_auc"], scale=1.0, digits=3)]
                  if kind == "videos" else []),
                mean_sd(g["test_eer"], scale=1.0, digits=3),
                mean_sd(g["test_ap"], scale=1.0, digits=3),
                mean_sd(retained),
                str(g["seed"].nunique()),
            ])
        if not df["test_acc_val_threshold"].notna().any():
            table.note += (" The accuracy at the validation threshold is not shown: these run "
                           "folders predate it (their metrics.json has no "
                           "test_acc_val_threshold).")
        out[dataset] = table.drop_empty_columns()
    return out


FINETUNED = methods.DENSE_FINETUNED  # the source's dense network fine-tuned on the target


def finetuned_gap(transfers, pair: str, model: str, method: str, pr: float,
                  kind: str | None, baseline: str = FINETUNED):
    """Ticket − the source's dense network fine-tuned on the target, on the target's test
    split: paired by seed, and by test video on a video set (each run's predictions.csv);
    None when the fine-tuned baseline did not run."""
    from deepfake_lth.analysis.stats import estimate_diff

    part = transfers[(transfers["pair"] == pair) & (transfers["model"] == model)]
    ticket = f"{method}-sparsity{int(pr)}"
    if baseline not in set(part["method"]) or ticket not in set(part["method"]):
        return None
    frame = part.assign(dataset=pair, level=part["method"])
    return estimate_diff(frame, pair, model, ticket, baseline, [(ticket, baseline)], kind)


def gap_text(d) -> str:
    """"+2.1 [+0.4, +3.8]" in points, the interval clipped to what a difference of two
    accuracies can be (±100); "–" without one."""
    if d is None or not np.isfinite(d.mean):
        return "–"
    if not np.isfinite(d.se):
        return f"{100 * d.mean:+.1f}"
    low, high = max(-1.0, d.low), min(1.0, d.high)
    return f"{100 * d.mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def transfer_tables(transfers, config: dict, kinds: dict | None = None) -> list[Table]:
    """Table I per transfer pair: Model, PR (nominal and actual), Params (M), Base, the
    source's dense network fine-tuned on the target (when it ran), then one column per
    transferred method (IMP-Global, IMP-Local, One-shot Global …) and each ticket's
    difference from the fine-tuned baseline, paired by video."""
    kinds = kinds or {}
    out = []
    nominal = {}
    if planned(config):
        for s in config["transfer"]["sparsities"]:
            for m in config["transfer"]["methods"]:
                nominal[(m, pct(methods.transfer_level(config, m, s)))] = s
    for pair, df in transfers.groupby("pair", sort=True):
        src, dst = df["source"].iloc[0], df["target"].iloc[0]
        parsed = df["method"].str.extract(r"^(?P<src_method>.+)-sparsity(?P<pr>\d+)$")
        df = df.assign(src_method=parsed["src_method"], pr=parsed["pr"].astype(float))
        shown = sorted(df["src_method"].dropna().unique(), key=method_key)
        tuned = FINETUNED in set(df["method"])
        gaps = [f"{method_label(m)} − base (pp)" for m in shown]
        gaps += [f"{method_label(m)} − fine-tuned (pp)" for m in shown] if tuned else []
        table = Table(
            f"{src} → {dst}",
            ["Model", "PR", "Params (M)", "Base"] + (["Fine-tuned dense"] if tuned else [])
            + [method_label(m) for m in shown] + gaps,
            note=f"Test accuracy (%) on {dst}. Base: the dense network; the other columns: "
            f"tickets found on {src} (mask and weights) trained on {dst}. "
            "PR: pruning rate, the percentage of prunable weights removed: as configured, "
            "and in brackets the actual sparsity of the IMP round (or one-shot level) used."
            + " − base: each ticket minus the target's own dense network (the baseline the "
            "claim judges against), with the 95 % interval, paired by seed and by test video."
            + (f" Fine-tuned dense: {src}'s dense network trained on {dst} the way the tickets "
               "are, so pretraining on the source is not mistaken for the ticket; − "
               "fine-tuned: each ticket minus it, the same way." if tuned else ""),
        )
        for model in ordered(df["model"], list(config.get("models") or {})):
            part = df[df["model"] == model]
            dense = part[part["method"] == "dense"]
            blank = ["-"] * (len(shown) + len(gaps))
            base = part[part["method"] == FINETUNED]
            table.rows.append([model, "0 %", millions(dense["params_nonzero"]),
                               mean_sd(dense["test_acc"])]
                              + ([mean_sd(base["test_acc"])] if tuned else []) + blank)
            tickets = part.dropna(subset=["pr"])
            for pr in sorted(tickets["pr"].unique()):
                at = tickets[tickets["pr"] == pr]
                first = at[at["src_method"] == shown[0]] if shown else at
                params = first["params_nonzero"] if not first.empty else at["params_nonzero"]
                actual = at["sparsity"].dropna()
                actual_text = (f"{100 * actual.mean():.1f} %" if len(actual)
                               else f"{int(pr)} %")
                want = next((v for (m, p), v in nominal.items() if p == int(pr)), None)
                label = (f"{100 * want:.0f} % ({actual_text})" if want is not None
                         else actual_text)
                cells = [mean_sd(at[at["src_method"] == m]["test_acc"]) for m in shown]
                diffs = [finetuned_gap(df, pair, model, m, pr, kinds.get(dst), "dense")
                         for m in shown]
                if tuned:
                    diffs += [finetuned_gap(df, pair, model, m, pr, kinds.get(dst))
                              for m in shown]
                cells += [gap_text(d) for d in diffs]
                table.rows.append(["Ticket", label, millions(params), "-"]
                                  + (["-"] if tuned else []) + cells)
        out.append(table)
    return out


def below_majority(ctx: Context, dataset: str) -> list[str]:
    """A sentence per model whose dense network is no better than always answering the
    larger class: its "Retained" shares then say nothing (they can pass 100 %)."""
    counts = ctx.figures.counts.get(dataset)
    if counts is None or ctx.runs.empty:
        return []
    majority, cls = counts.majority
    dense = ctx.runs[(ctx.runs["dataset"] == dataset) & (ctx.runs["method"] == "dense")]
    out = []
    for model, g in dense.groupby("model", sort=True):
        acc = float(g["test_acc"].mean())
        if np.isfinite(acc) and acc <= majority + 1e-9:
            out.append(f"{model}'s dense network ({100 * acc:.1f} %) is no better than always "
                       f"answering “{cls}” ({100 * majority:.1f} % of {counts.words()}): "
                       "its tickets' Retained shares say nothing.")
    return out


def results(ctx: Context) -> Section:
    """Results per dataset: every network's accuracy, AUC and share of dense accuracy."""
    from deepfake_lth.report.collect import face_warnings

    tables = (results_tables(ctx.runs, ctx.model_order, ctx.kinds, ctx.flags)
              if not ctx.runs.empty else {})
    section = Section("results", "Results per dataset", "", empty="no metrics.json found.")
    for d in ctx.datasets:
        notes = [text for (ds, _), text in sorted(ctx.flags.items()) if ds == d]
        notes += face_warnings(ctx.results_dir, [d])
        notes += below_majority(ctx, d)
        counts = ctx.figures.counts.get(d)
        if d in tables and counts is not None:
            tables[d].title = f"{d}: {counts.words()}"
        section.parts.append(Part(d, None, [tables[d]] if d in tables else [],
                                  notes=notes, notrun="" if d in tables else " "))
    return section


def transfer(ctx: Context) -> Section:
    """Table I: tickets found on one dataset, trained on another."""
    pairs = (ctx.config.get("transfer") or {}).get("pairs") or []
    tables = (transfer_tables(ctx.transfers, ctx.config, ctx.kinds)
              if not ctx.transfers.empty else [])
    section = Section("transfer", "Transfer tickets (Table I)",
                      "Tickets found on one dataset, trained on another, laid out as the "
                      "paper's Table I." if tables else "")
    for table in tables:  # the target's test split, per class, in the title
        counts = ctx.figures.counts.get(table.title.split(" → ")[-1])
        if counts is not None:
            table.title += f" (target: {counts.words()})"
    if tables:
        section.parts.append(Part("", None, tables))
    elif pairs:
        section.parts.append(Part("", notrun="transfer pairs are configured, but no transfer "
                                  "results exist yet."))
    else:
        section.parts.append(Part("", notrun="no transfer pairs are configured "
                                  "(transfer.pairs)."))
    return section
