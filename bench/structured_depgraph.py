"""Structured pruning: channel groups traced by Torch-Pruning's DepGraph (Fang et al., CVPR
2023), which deepfake_lth.pruning.structured uses, against the groups the project wrote by
hand per architecture until then (kept here as the reference: HAND_WRITTEN).

    python bench/structured_depgraph.py [--quick]

For MesoNet, CNN-5, ResNet-18 and Xception (random weights, BatchNorm statistics away from
identity: which channels are coupled, and which filters are smallest, do not depend on
training), at a channel rate of 50 % (local, as the structured rounds prune):

1. groups: the traced groups (names, writers with their BatchNorm, readers with their
   inputs per channel) against the hand-written ones;
2. channels: the channels the project's criterion removes (a filter's L1 norm over the mean
   of its layer's, averaged over a group's writers) on the traced groups and on the
   hand-written ones; and how many of them Torch-Pruning's own group L1 importance
   (filters, BatchNorm scales and the readers' input weights) would remove too;
3. the compacted model: ``compact_model`` against Torch-Pruning removing the same channels
   physically (``Group.prune``): parameters, and the largest logit difference on the same
   inputs (equal functions have equal accuracy: no training is needed where it is zero);
   and the largest difference between the compacted model and the channel-masked one;
4. the time each takes to find the groups (tracing the model, uncached).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import main as cli_main  # noqa: E402
from latency import make_model  # noqa: E402

from deepfake_lth.pruning import structured  # noqa: E402

MODELS = [("mesonet", 64), ("cnn5", 48), ("resnet18", 64), ("xception", 96)]
RATE = 0.5


def _graph(model: nn.Module, size: int):
    import torch_pruning as tp

    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, size,
                                                                                 size))
    groups = list(dg.get_all_groups(ignored_layers=[head], root_module_types=[nn.Conv2d]))
    return dg, groups


def _single(conv: str, norm: str, reader: tuple[str, int]) -> structured.ChannelGroup:
    return structured.ChannelGroup(conv, ((conv, norm),), (reader,))


def _cnn5(model) -> list:
    names = [f"features.{n}" for n, _ in model.features.named_children()]
    return [_single(f"{b}.conv", f"{b}.bn", (f"{names[i + 1]}.conv", 1) if i + 1 < len(names)
                    else ("fc", 1)) for i, b in enumerate(names)]


def _mesonet(model) -> list:
    blocks = ["block1", "block2", "block3", "block4"]
    per = model.classifier.fc1.in_features // model.block4.conv.out_channels
    return [_single(f"{b}.conv", f"{b}.bn", (f"{blocks[i + 1]}.conv", 1) if i < 3
                    else ("classifier.fc1", per)) for i, b in enumerate(blocks)]


def _resnet(model) -> list:
    """Inner groups of every BasicBlock, then the residual stream of every stage."""
    inner, streams = [], []
    name, writers, readers = "layer1", [("conv1", "bn1")], []
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for idx, block in getattr(model, layer).named_children():
            p = f"{layer}.{idx}"
            inner.append(_single(f"{p}.conv1", f"{p}.bn1", (f"{p}.conv2", 1)))
            readers.append((f"{p}.conv1", 1))
            if block.downsample is not None:  # the block starts a new stream
                readers.append((f"{p}.downsample.0", 1))
                streams.append(structured.ChannelGroup(name, tuple(writers), tuple(readers)))
                name, writers, readers = layer, [(f"{p}.downsample.0", f"{p}.downsample.1")], []
            writers.append((f"{p}.conv2", f"{p}.bn2"))
    readers.append(("fc", 1))
    streams.append(structured.ChannelGroup(name, tuple(writers), tuple(readers)))
    return inner + streams


HAND_WRITTEN = {"cnn5": _cnn5, "mesonet": _mesonet, "resnet18": _resnet}


def _key(g: structured.ChannelGroup) -> tuple:
    """A group as sets: its name, writers (with norms), readers (with inputs per channel)."""
    return (g.name, frozenset(g.writers), frozenset(g.consumers), frozenset(g.passthrough))


def _writers(g, names) -> list[str]:
    import torch_pruning as tp

    return [names[d.target.module] for d, _ in g if d.handler == tp.prune_conv_out_channels]


def _project_scores(model: nn.Module, writers: list[str]) -> torch.Tensor:
    """The project's channel score: each writer's filter L1 norms over their mean, averaged."""
    total = 0
    for w in writers:
        norm = model.get_submodule(w).weight.detach().abs().flatten(1).sum(1)
        total = total + norm / norm.mean()
    return total / len(writers)


def _pruned(scores: torch.Tensor) -> list[int]:
    n = int(RATE * len(scores) + 0.5)
    return sorted(torch.sort(scores, stable=True).indices[:n].tolist())


def depgraph_prune(model: nn.Module, size: int, own_importance: bool) -> tuple[nn.Module, dict]:
    """A copy of ``model`` with RATE of every DepGraph group's channels removed physically;
    and the removed channels by group (keyed by the group's sorted writers)."""
    import torch_pruning as tp

    model = copy.deepcopy(model)
    dg, groups = _graph(model, size)
    names = {m: n for n, m in model.named_modules()}
    imp = tp.importance.GroupMagnitudeImportance(p=1)
    plan = []
    for g in groups:
        writers = _writers(g, names)
        scores = _project_scores(model, writers) if own_importance else imp(g)
        plan.append((tuple(sorted(writers)), g[0].dep.target.module, g[0].dep.handler,
                     _pruned(scores)))
    removed = {}
    for key, root, handler, idxs in plan:
        dg.get_pruning_group(root, handler, idxs).prune()
        removed[key] = idxs
    return model.eval(), removed


def project_prune(model: nn.Module, size: int) -> tuple[nn.Module, dict, float]:
    """The compacted model, the removed channels by group (keyed by sorted writers) and the
    largest logit difference between the compacted and the channel-masked model."""
    cmask = structured.channel_mask(model, None, RATE, "local")
    masked = copy.deepcopy(model)
    structured.apply_channel_mask(masked, cmask)
    removed = {tuple(sorted(c for c, _ in g.writers)): (~cmask[g.name]).nonzero()[:, 0].tolist()
               for g in structured.channel_groups(model)}
    compact = structured.compact_model(masked, cmask).eval()
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        diff = float((compact(x) - masked.eval()(x)).abs().max())
    return compact, removed, diff


def hand_written_removed(model: nn.Module, groups: list) -> dict:
    """The channels the project's criterion removes on the hand-written groups."""
    return {tuple(sorted(c for c, _ in g.writers)): _pruned(_project_scores(
        model, [c for c, _ in g.writers])) for g in groups}


def _agreement(a: dict, b: dict) -> float:
    """Share of the removed channels that both remove (groups matched by their writers)."""
    both = sum(len(set(a[k]) & set(b.get(k, ()))) for k in a)
    total = sum(len(v) for v in a.values())
    return both / total if total else 1.0


def compare(name: str, size: int) -> dict:
    torch.manual_seed(0)
    model = make_model(name, size)
    structured._GROUPS.clear()  # noqa: SLF001 - time the tracing itself, not the cache
    t0 = time.perf_counter()
    traced = structured.channel_groups(model)
    t_traced = time.perf_counter() - t0
    row = {"model": name, "size": size, "params": sum(p.numel() for p in model.parameters()),
           "traced_groups": len(traced), "traced_s": t_traced}
    if name in HAND_WRITTEN:
        t0 = time.perf_counter()
        hand = HAND_WRITTEN[name](model)
        row["hand_s"] = time.perf_counter() - t0
        row["hand_groups"] = len(hand)
        row["same_groups"] = [_key(g) for g in traced] == [_key(g) for g in hand]
    tp_model, tp_removed = depgraph_prune(model, size, own_importance=True)
    _, tp_default = depgraph_prune(model, size, own_importance=False)
    ours, ours_removed, row["masked_vs_compact"] = project_prune(model, size)
    if name in HAND_WRITTEN:
        row["same_channels"] = ours_removed == hand_written_removed(model, hand) == tp_removed
    x = torch.randn(4, 3, size, size)
    with torch.inference_mode():
        row["max_logit_diff"] = float((ours(x) - tp_model(x)).abs().max())
    row["compact_params"] = sum(p.numel() for p in ours.parameters())
    row["tp_params"] = sum(p.numel() for p in tp_model.parameters())
    row["tp_default_agreement"] = _agreement(ours_removed, tp_default)
    return row


def run(quick: bool) -> dict:
    import torch_pruning

    torch.set_num_threads(1)
    rows = [compare(n, s) for n, s in (MODELS[:2] if quick else MODELS)]
    targets = []
    for r in rows:
        same = r.get("same_groups", True) and r.get("same_channels", True)
        ok = (same and r["compact_params"] == r["tp_params"] and r["max_logit_diff"] < 1e-4
              and r["masked_vs_compact"] < 1e-4)
        targets.append({"title": f"traced groups = hand-written ones; compact_model = "
                        f"Torch-Pruning's pruning, {r['model']}", "goal": "identical",
                        "measured": f"groups {r.get('same_groups', 'no hand-written')}, channels "
                        f"{r.get('same_channels', '–')}, params {r['compact_params']:,} vs "
                        f"{r['tp_params']:,}, max |Δlogit| {r['max_logit_diff']:.1e}",
                        "met": bool(ok)})
    return {"torch_pruning": torch_pruning.__version__, "torch": torch.__version__,
            "rows": rows, "targets": targets}


def table(result: dict) -> str:
    lines = [f"torch-pruning {result['torch_pruning']}, torch {result['torch']}; channel rate "
             f"{RATE:.0%} (local)", "",
             "| model | params | groups traced / hand-written | same groups (names, writers, "
             "readers) | same channels | compacted params: project / Torch-Pruning | max "
             "\\|Δlogit\\| project vs TP | max \\|Δlogit\\| compact vs masked | TP's default L1 "
             "picks the same | find groups s: traced / hand-written |",
             "|---|---:|---:|:---:|:---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        hand = "hand_groups" in r
        lines.append(
            f"| {r['model']}@{r['size']} | {r['params']:,} | {r['traced_groups']} / "
            f"{r['hand_groups'] if hand else 'none'} | {r.get('same_groups', '–')} | "
            f"{r.get('same_channels', '–')} | {r['compact_params']:,} / {r['tp_params']:,} | "
            f"{r['max_logit_diff']:.1e} | {r['masked_vs_compact']:.1e} | "
            f"{r['tp_default_agreement']:.0%} | {r['traced_s']:.2f} / "
            f"{r['hand_s']:.4f} |" if hand else
            f"| {r['model']}@{r['size']} | {r['params']:,} | {r['traced_groups']} / none | – | "
            f"– | {r['compact_params']:,} / {r['tp_params']:,} | {r['max_logit_diff']:.1e} | "
            f"{r['masked_vs_compact']:.1e} | {r['tp_default_agreement']:.0%} | "
            f"{r['traced_s']:.2f} / – |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli_main(__doc__, run, table, "MesoNet and CNN-5 only"))
