"""The low-rank family's claim, judged by the same rule as every other
(:mod:`deepfake_lth.analysis.evidence`): IMP against low-rank factorization at equal parameter
count.

A low-rank level (``lowrank-{allocation}/sparsity{pct}``, :mod:`deepfake_lth.stages.lowrank`)
has at most the parameters of an IMP ticket at its level's sparsity: its recorded sparsity is
the parameter-equivalent one, the ranks rounding down puts it up to a few points above the
IMP level it was matched to (:data:`TOLERANCE`). Each is compared with the main IMP method's
level nearest it, which then has as many parameters or more.
"""

from __future__ import annotations

from deepfake_lth.analysis.evidence import Claim, diff_at, main_imp, make_claim
from deepfake_lth.analysis.stats import levels_of, superiority
from deepfake_lth.stages import methods
from deepfake_lth.stages.lowrank import LOWRANK

# a low-rank level's parameter-equivalent sparsity lies above the IMP level it matches by the
# rounding of its ranks: up to one rank of each factorized layer (≈ 1.6 points on MesoNet)
TOLERANCE = 0.03


def lowrank_methods(runs) -> list[str]:
    return sorted(methods.with_role(runs["method"].unique(), LOWRANK), key=methods.sort_key)


def claim_lowrank(runs, kinds) -> Claim:
    """IMP − low-rank test accuracy at each low-rank level, against the IMP level with at
    least its parameters, per dataset, model and allocation."""
    present = lowrank_methods(runs)
    imp = main_imp(runs)
    comparisons = []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for method in present if imp is not None else ():
            levels = levels_of(runs, dataset, model, method)
            for _, s in sorted(levels.items(), key=lambda kv: kv[1]):
                res = diff_at(runs, kinds, dataset, model, imp, method, target=s,
                              tol=TOLERANCE)
                if res:
                    comparisons.append(superiority(res[1], res[0]))
    notes = ([] if comparisons else
             ["Low-rank factorization (lowrank.models) was not run."] if not present else
             ["No IMP run to compare the low-rank networks with."] if imp is None else
             ["No IMP level within 3 points of a low-rank level yet."])
    return make_claim(
        "At equal parameter count, IMP tickets are more accurate than low-rank factorizations "
        "(truncated SVD of every conv and linear layer, fine-tuned)",
        "compression review (Karathanasis et al. 2025): low-rank factorization",
        "Per dataset, model and allocation: IMP − low-rank test accuracy at each low-rank "
        "level, against the IMP level nearest it (within 3 points; the low-rank network has "
        "at most that ticket's parameters), paired by seed (and video), with the cumulative "
        "epochs of each beside (the low-rank network is fine-tuned once from the dense one); "
        "for the claim when the interval lies above 0, against it when it lies below 0.",
        comparisons, notes,
        caveats=["Equal parameters are not equal speed: the factorized network's "
                 "multiply-adds fall with its parameters, a ticket's only on sparse kernels "
                 "(the Compression section times both)."] if comparisons else [])
