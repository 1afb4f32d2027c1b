"""The claims: the verdict summary on the report's first screen (one row per claim: verdict,
estimate with its direction and interval, what would decide it) and the claims section, whose
rules and evidence sit in collapsed ``<details>``, each rule written once.

Claims come from ``deepfake_lth.analysis.claims`` (and the sections that judge one of their
own, e.g. generalisation). A claim may carry ``needs`` (what would decide it); where it does
not, the summary says it from the verdict and the evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markupsafe import Markup

from deepfake_lth.report.common import Context, Section

DECISION_START = "Decision: "
ONE_SEED_NEEDS = Markup("≥ 2 seeds: <code>seeds: [0, 1, 2]</code>")
UNCLEAR_NEEDS = "a narrower interval: more seeds or more test videos"
# "A − B = +2.0 pp [+1.0, +3.0]", "video AUC − dense = −0.012 [−0.050, +0.020]",
# "changes by +0.200": a number, optionally its unit, optionally its interval
ESTIMATE = re.compile(
    r"(?:=|changes by)\s*(?P<mean>[+\-−]?\d+(?:\.\d+)?)\s*(?P<unit>pp|%)?"
    r"(?:\s*\[(?P<low>[+\-−]?\d+(?:\.\d+)?),\s*(?P<high>[+\-−]?\d+(?:\.\d+)?)\])?")
SIDES = (("counts for the claim", "for"), ("counts against", "against"),
         ("within the noise", "unclear"), ("not judged", "one seed"))


@dataclass
class Row:
    """One claim as the summary shows it."""

    id: str
    text: str
    short: str
    source: str
    verdict: str
    why: str
    estimate: str
    where: str  # which comparison the estimate is (dataset, model, level)
    direction: str  # "up", "down" or ""
    side: str  # "for", "against", "unclear", "one seed" or ""
    tally: str
    needs: str | Markup
    rule: int  # 1-based index into the rules, 0 without one
    evidence: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _clip(value: float, unit: str | None) -> float:
    """A difference of accuracies (pp) lies in [−100, 100], of AUCs or shares in [−1, 1]."""
    bound = 100.0 if unit in ("pp", "%") else 1.0
    return max(-bound, min(bound, value))


def parse_estimate(line: str) -> tuple[str, str, float, str] | None:
    """(estimate text, direction, |mean|, where) from one evidence line, the interval clipped
    to what a difference can be; None when the line holds no estimate."""
    m = ESTIMATE.search(line)
    if not m:
        return None
    unit = m["unit"]
    mean = _clip(_num(m["mean"]), unit)
    digits = len(m["mean"].split(".")[1]) if "." in m["mean"] else 0
    fmt = f"{{:+.{digits}f}}"
    text = fmt.format(mean) + (f" {unit}" if unit else "")
    if m["low"] is not None:
        low, high = _clip(_num(m["low"]), unit), _clip(_num(m["high"]), unit)
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    text = text.replace("-", "−")
    where = line.split(":")[0] if ":" in line[:60] else ""
    return text, "up" if mean > 0 else "down" if mean < 0 else "", abs(mean), where


def side_of(line: str) -> str:
    return next((side for words, side in SIDES if words in line), "")


def needs_of(claim, evidence_without_estimate: list[str]) -> str | Markup:
    """What would decide the claim: its own ``needs`` where it has one."""
    own = claim.get("needs") if isinstance(claim, dict) else getattr(claim, "needs", None)
    if own:
        return own
    verdict, why = str(_get(claim, "verdict")), str(_get(claim, "why") or "")
    if verdict in ("holds", "does not hold"):
        return ""
    if why == "one seed" or "one seed" in verdict:
        return ONE_SEED_NEEDS
    if verdict == "not run":
        return (shortened(evidence_without_estimate[0]) if evidence_without_estimate
                else "the methods and data the claim compares")
    return UNCLEAR_NEEDS


def shortened(line: str) -> str:
    """An evidence line without its place ("mesonet on dsA, round4: ") and its asides."""
    head, sep, rest = line.partition(": ")
    if sep and len(head) < 60 and " on " in head:
        line = rest[:1].upper() + rest[1:]
    line = re.sub(r"\s*\([^()]*\)", "", line).strip()
    return line if line.endswith(".") else line + "."


def _get(claim, name: str):
    return claim.get(name) if isinstance(claim, dict) else getattr(claim, name, None)


def split_rule(rule: str) -> tuple[str, str]:
    """(the claim's own rule, the decision text shared by every claim)."""
    i = rule.find(DECISION_START)
    return (rule, "") if i < 0 else (rule[:i].strip(), rule[i:].strip())


def summary_rows(claims: list) -> tuple[list[Row], list[str], list[str]]:
    """The rows, the distinct rules (each once) and the distinct decision texts."""
    rows, rules, decisions = [], [], []
    for i, claim in enumerate(claims, start=1):
        rule, decision = split_rule(str(_get(claim, "rule") or ""))
        if rule and rule not in rules:
            rules.append(rule)
        if decision and decision not in decisions:
            decisions.append(decision)
        evidence = [str(e) for e in (_get(claim, "evidence") or [])]
        parsed = [(e, parse_estimate(e)) for e in evidence]
        estimates = [(e, p) for e, p in parsed if p is not None]
        plain = [e for e, p in parsed if p is None]
        sides = [side_of(e) for e, _ in estimates]
        verdict = str(_get(claim, "verdict"))
        # the comparison that tells most: one against a claim that does not hold, else the
        # one nearest to deciding against (the smallest estimate in the claim's direction)
        pick = None
        if estimates:
            against = [k for k, s in enumerate(sides) if s == "against"]
            pick = estimates[against[0]] if against else min(
                estimates, key=lambda ep: ep[1][2])
        tally = ", ".join(f"{sides.count(s)} {s}" for s in ("for", "against", "unclear",
                                                          "one seed") if sides.count(s))
        text = str(_get(claim, "text"))
        rows.append(Row(
            id=f"claim-{i}", text=text, short=text.split(" (")[0].split(": ")[0], source=str(
                _get(claim, "source") or ""), verdict=verdict,
            why=str(_get(claim, "why") or ""),
            estimate=pick[1][0] if pick else "–", where=pick[1][3] if pick else "",
            direction=pick[1][1] if pick else "",
            side=side_of(pick[0]) if pick else "",
            tally=(f"{len(estimates)} comparisons: {tally}" if len(estimates) > 1 else ""),
            needs=needs_of(claim, plain), rule=rules.index(rule) + 1 if rule else 0,
            evidence=evidence, caveats=[str(c) for c in (_get(claim, "caveats") or [])]))
    return rows, rules, decisions


def all_claims(sections: list[Section]) -> list:
    """Every claim the report judges, in the order of the sections."""
    ordered_sections = sorted(sections, key=lambda s: s.id != "claims")  # the paper's first
    out = []
    for s in ordered_sections:
        out.extend(s.claims or [])
    return out


def one_seed_words(claims) -> Markup:
    """Which claims this run cannot judge for want of seeds, in a sentence ("" if none)."""
    short = [str(_get(c, "text")).split(" (")[0] for c in claims
             if _get(c, "why") == "one seed"]
    if not short:
        return Markup("")
    return Markup("This run has one seed per network: {} claim{} need{} two or more "
                  "(<code>seeds: [0, 1, 2]</code>, as config/paper.yaml and "
                  "config/controls.yaml run). ").format(
        len(short), "s" if len(short) != 1 else "", "" if len(short) != 1 else "s")


def section(ctx: Context) -> Section:
    """The paper's claims judged on this run; the report's summary shows their verdicts."""
    from deepfake_lth.report.provenance import claims_rows

    claims = claims_rows(ctx.runs, ctx.transfers, ctx.gradcam_runs, ctx.config, ctx.kinds)
    margin = 100 * float((ctx.config.get("claims") or {}).get("margin", 0.02))
    return Section(
        "claims", "The paper's claims on this run",
        Markup("Each claim of the paper, and some it names as future work, checked against "
               "this run's numbers by its stated rule: <em>holds</em>, <em>does not "
               "hold</em>, <em>not enough evidence</em> (an interval straddles 0 or the "
               "margin, or one seed), or <em>not run</em>. Claims that a ticket "
               "<em>keeps</em> an accuracy are non-inferiority tests against δ = {:.0f} "
               "points (<code>claims.margin</code>), corrected with Holm's method over a "
               "claim's comparisons. {}The verdicts speak for this run's data and settings "
               "only; the summary at the top shows them all.").format(
                   margin, one_seed_words(claims)),
        claims=claims)
