"""Compression that compounds, every figure with the accuracy and AUC of its artifact.

    python bench/compression.py [--quick]

Data: synthetic face crops of the project's generator (deepfake_lth.data.acquire.synthetic:
face swaps of 40 identities at difficulty 0.3, rendered at 96 px and stored at 64 px like
the demo's packed faces; TRAIN faces to train, TEST other faces to score), fed to each
model at its input size by the project's to_tensor (so ResNet-18 sees them upsampled to
224 px). A short fixed training, not the study's: its accuracy is a check that a
compression keeps what the network learnt, to read against the dense row.

Per model (ResNet-18 at 224 px, the targets; MesoNet at 64 and CNN-5 at 48, the demo's
sizes) the artifacts are:

- a base network trained (FULL: 8 epochs; ResNet-18 8 at 64 px, then 2 at 224 px), and from
  it, each trained for the same further epochs (2; ResNet-18 1 at 224 px):
- dense: the base, trained on without a change;
- ticket: 59.04 % of the weights pruned by global magnitude (the level of IMP round 4),
  trained with its mask;
- structured: 50 % of the channels of every group removed by L1 norm (local), trained with
  its mask, compacted (deepfake_lth.pruning.structured);
- low-rank: every conv and linear layer factorized by truncated SVD to LOWRANK_BUDGET of the
  parameters (uniform, deepfake_lth.pruning.lowrank), trained;

each as fp32 and as INT8 (ONNX Runtime QDQ; which operators, measured on this CPU:
deepfake_lth.deploy.serve.search_int8), each file plain ONNX and sparse, zstd-coded .onnxz
(deepfake_lth.deploy.onnxz). Each row: test accuracy and AUC of that file through
onnxruntime, its bytes, its median batch-1 latency on one onnxruntime thread. The served
form follows the quantize stage's rule (INT8 only where its paired ratio to fp32 is below 1
at 95 %; operators searched node by node for models of at most 8 convolutions and matrix
products: MesoNet and CNN-5, by operator type for ResNet-18); every file of a model is then
timed again, side by side with the dense fp32 model (round-robin), for the table: a served
INT8 file must not be slower than its fp32 file in that fresh measurement, and an INT8 file
left unserved not faster. The ticket's INT8 weights are also stored as ONNX sparse
initializers (COO, int64 indices: the only index type the ONNX checker accepts) to compare
with .onnxz.
"""

from __future__ import annotations

import copy
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import main as cli_main  # noqa: E402

from deepfake_lth.deploy import export, onnxz, quantize, serve  # noqa: E402
from deepfake_lth.models import build_model  # noqa: E402
from deepfake_lth.pruning import lowrank, masks, structured  # noqa: E402

MODELS = [("resnet18", 224), ("mesonet", 64), ("cnn5", 48)]
FACE, DIFFICULTY, IDENTITIES = 64, 0.3, 40
TICKET_SPARSITY = 0.5904  # IMP round 4 at rate 0.2
CHANNEL_RATE = 0.5
LOWRANK_BUDGET = 0.3  # of the parameters
FULL = {"train": 480, "test": 200, "epochs": 8, "epochs_224": 2, "finetune": 2,
        "finetune_224": 1, "repeats": 20, "search_nodes": 8, "calibration": 64}
QUICK = {"train": 64, "test": 64, "epochs": 1, "epochs_224": 1, "finetune": 1,
         "finetune_224": 1, "repeats": 8, "search_nodes": 0, "calibration": 16}


# --------------------------------------------------------------------------- data, training


def make_faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` face crops (uint8, n×64×64×3 RGB), real and fake alternating."""
    import cv2

    from deepfake_lth.data.acquire import synthetic as syn

    rng = np.random.default_rng(seed)
    idents = [syn.sample_identity(rng) for _ in range(IDENTITIES)]
    images, labels = [], []
    for i in range(n):
        label = i % 2
        t = int(rng.integers(IDENTITIES))
        donor = idents[(t + 1 + int(rng.integers(IDENTITIES - 1))) % IDENTITIES] if label else None
        img = syn.render_image(idents[t], donor, 96, 96, np.random.default_rng([seed, i]),
                               DIFFICULTY)
        img = cv2.resize(img, (FACE, FACE), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


def train(model, data, size: int, epochs: int, lr: float, mask=None, seed: int = 0):
    """Adam on BCE, batches of 32, random horizontal flips; ``mask`` kept (MaskEnforcer)."""
    from deepfake_lth.data.store import to_tensor

    images, labels = data
    enforcer = masks.MaskEnforcer(model, mask) if mask else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), 32):
            idx = np.sort(order[start : start + 32])
            x = to_tensor(images[idx], size)
            if rng.random() < 0.5:
                x = x.flip(3)
            y = torch.from_numpy(labels[idx]).float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
            opt.zero_grad()
            loss.backward()
            if enforcer:
                enforcer.mask_grads()
            opt.step()
        if enforcer:
            enforcer.mask_weights()
    return model.eval()


def networks(name: str, size: int, data, cfg: dict) -> dict[str, torch.nn.Module]:
    """The dense network and its compressed forms, each derived from the same trained base
    and then trained for the same epochs (the dense one too, so that all have as many)."""
    torch.manual_seed(0)
    if name == "resnet18":  # 64 px first (cheap), then the input size
        base = train(build_model(name, input_size=FACE), data, FACE, cfg["epochs"], 2e-3)
        base = train(base, data, size, cfg["epochs_224"], 5e-4, seed=1)
        ft = cfg["finetune_224"]
    else:
        base = train(build_model(name, input_size=size), data, size, cfg["epochs"], 2e-3)
        ft = cfg["finetune"]
    out = {"dense": train(copy.deepcopy(base), data, size, ft, 5e-4, seed=2)}
    ticket = copy.deepcopy(base)
    mask = masks.prune_to_sparsity(ticket, TICKET_SPARSITY, "global")
    masks.apply_mask(ticket, mask)
    out["ticket59"] = train(ticket, data, size, ft, 5e-4, mask, seed=2)
    chan = copy.deepcopy(base)
    cmask = structured.channel_mask(chan, None, CHANNEL_RATE, "local")
    wmask = structured.apply_channel_mask(chan, cmask)
    chan = train(chan, data, size, ft, 5e-4, wmask, seed=2)
    out["structured50"] = structured.compact_model(chan, cmask).eval()
    low = lowrank.factorize(base, lowrank.plan_ranks(base, LOWRANK_BUDGET))
    out["lowrank"] = train(low, data, size, ft, 5e-4, seed=2)
    return out


# --------------------------------------------------------------------------- artifacts


def scores(path: Path, data, size: int) -> dict:
    from sklearn.metrics import roc_auc_score

    images, labels = data
    p = quantize.probabilities(quantize.OnnxModule(path, 1), images, size)
    return {"acc": float(np.mean((p >= 0.5) == labels)), "auc": float(roc_auc_score(labels, p))}


def sparse_initializer_bytes(int8: Path, level: int = onnxz.ZSTD_LEVEL) -> dict:
    """The INT8 model with every int8 weight as an ONNX sparse initializer (COO, int64
    linear indices), and that file zstd-coded; onnxruntime loads it (checked by a session)."""
    import onnx
    import zstandard
    from onnx import helper, numpy_helper

    model = onnx.load(str(int8))
    keep, sparse = [], []
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.int8 and a.size >= onnxz.MIN_ELEMENTS:
            nz = np.flatnonzero(a)
            sparse.append(helper.make_sparse_tensor(
                numpy_helper.from_array(a.reshape(-1)[nz], init.name),
                numpy_helper.from_array(nz.astype(np.int64), f"{init.name}_indices"),
                list(a.shape)))
        else:
            keep.append(init)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    model.graph.sparse_initializer.extend(sparse)
    data = model.SerializeToString()
    import onnxruntime as ort

    ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return {"bytes": len(data),
            "zstd": len(zstandard.ZstdCompressor(level=level).compress(data))}


def artifact(variant: str, model, size: int, calib, data, work: Path, cfg: dict) -> dict:
    """fp32 and INT8 files of one network: bytes, scores, the INT8 search and the choice."""
    fp32 = export.to_onnx(model, work / f"{variant}.onnx", size)
    quantize.set_metadata(fp32, {"variant": variant})
    q = quantize.Quantizer(fp32, calib, True, quantize.resolve_reduce_range("auto"))
    spec = {"threads": 1, "warmup": 3, "repeats": cfg["repeats"], "batch_sizes": [1],
            "search_nodes": cfg["search_nodes"]}
    (work / variant).mkdir(exist_ok=True)
    best, search = serve.search_int8(q, fp32, work / variant, size, spec)
    int8 = work / f"{variant}.int8.onnx"
    shutil.copyfile(best, int8)
    quantize.set_metadata(int8, {"variant": variant})
    files = {"fp32": fp32, "int8": int8}
    out = {"variant": variant, "params": sum(p.numel() for p in model.parameters()),
           "search": {k: search["candidates"][search["chosen"]].get(k)
                      for k in ("op_types", "nodes", "exclude")},
           "chosen": search["chosen"]}
    for form, path in files.items():
        z = path.with_suffix(".onnxz")
        onnxz.write(path, z)
        out[form] = {"onnx": path.stat().st_size, "onnxz": z.stat().st_size,
                     "coding": onnxz.info(z)["sections"], **scores(z, data, size),
                     "path": str(z)}
    rows = serve.latency_rows(out["fp32"]["path"], out["int8"]["path"], size, spec)
    out["serve"] = serve.decide(rows)
    if variant == "ticket59":
        out["sparse_initializers"] = sparse_initializer_bytes(int8)
    return out


def side_by_side(arts: list[dict], size: int, repeats: int) -> dict:
    """Every file of one model timed round-robin at batch 1: median ms, the ratio to the
    dense fp32 file and to the variant's own fp32 file (95 % intervals)."""
    paths = [(a["variant"], form, a[form]["path"]) for a in arts for form in ("fp32", "int8")]
    mods = [quantize.OnnxModule(p, 1) for _, _, p in paths]
    x = np.random.default_rng(2).standard_normal((1, 3, size, size)).astype(np.float32)
    times = quantize.time_sessions(mods, x, 3, repeats)
    by = {(v, f): t for (v, f, _), t in zip(paths, times, strict=True)}
    out = {}
    for v, f, _ in paths:
        out[f"{v} {f}"] = {"ms": 1e3 * statistics.median(by[(v, f)]),
                           "vs_dense": serve.compare(by[("dense", "fp32")], by[(v, f)]),
                           "vs_own_fp32": serve.compare(by[(v, "fp32")], by[(v, f)])}
    return out


def bench_model(name: str, size: int, data, test, work: Path, cfg: dict) -> dict:
    torch.set_num_threads(1)
    nets = networks(name, size, data, cfg)
    from deepfake_lth.data.store import to_tensor

    calib = to_tensor(data[0][: cfg["calibration"]], size).contiguous().numpy()
    arts = [artifact(v, m, size, calib, test, work, cfg) for v, m in nets.items()]
    timing = side_by_side(arts, size, cfg["repeats"])
    return {"model": name, "size": size, "artifacts": arts, "timing": timing}


# --------------------------------------------------------------------------- run, table


def run(quick: bool) -> dict:
    import onnxruntime

    cfg = QUICK if quick else FULL
    flags = quantize.cpu_flags()
    out = {"cpu_vnni": quantize.has_vnni(flags), "onnxruntime": onnxruntime.__version__,
           "torch": torch.__version__, "config": cfg, "models": []}
    data = make_faces(cfg["train"], seed=1)
    test = make_faces(cfg["test"], seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in MODELS[:1] if quick else MODELS:
            out["models"].append(bench_model(name, size, data, test, Path(tmp), cfg))
    out["targets"] = targets(out["models"])
    return out


def _served(a: dict) -> str:
    return a["serve"]["form"]


def targets(models: list[dict]) -> list[dict]:
    out = []
    for m in models:
        arts = {a["variant"]: a for a in m["artifacts"]}
        tag = f"{m['model']}@{m['size']}"
        dense32 = arts["dense"]["fp32"]["onnx"]
        for a in m["artifacts"]:
            own = m["timing"][f"{a['variant']} int8"]["vs_own_fp32"]
            if _served(a) == "int8":  # the served INT8 file, timed again: not slower
                out.append({"title": f"served INT8 of {a['variant']} not slower than its fp32 "
                            f"file, {tag}, batch 1", "goal": "not slower",
                            "measured": serve.ratio_text(own),
                            "met": own["verdict"] != serve.SLOWER})
            else:  # fp32 served: its INT8, timed again, is not faster (the choice holds)
                out.append({"title": f"fp32 served for {a['variant']}: its INT8 file not "
                            f"faster, {tag}, batch 1", "goal": "not faster",
                            "measured": serve.ratio_text(own),
                            "met": own["verdict"] != serve.FASTER})
        if m["model"] != "resnet18":
            continue
        t = arts["ticket59"]["int8"]["onnxz"] / dense32
        out.append({"title": f"ticket 59 % + INT8 + coding / dense fp32 ONNX bytes, {tag}",
                    "goal": "<= 0.15x", "measured": t, "met": t <= 0.15})
        low = m["timing"]["lowrank fp32"]["vs_dense"]
        out.append({"title": f"dense fp32 / low-rank ({LOWRANK_BUDGET:.0%} of the parameters) "
                    f"fp32 latency, {tag}, batch 1, 1 thread", "goal": ">= 1.50x",
                    "measured": 1 / low["ratio"], "met": 1 / low["ratio_high"] >= 1.5})
    return out


def table(result: dict) -> str:
    lines = [f"CPU VNNI: {result['cpu_vnni']}; onnxruntime {result['onnxruntime']}, torch "
             f"{result['torch']}; {result['config']}", ""]
    for m in result["models"]:
        dense32 = next(a for a in m["artifacts"] if a["variant"] == "dense")["fp32"]["onnx"]
        lines += [f"### {m['model']}@{m['size']}", "",
                  "| artifact | served | params | test acc | AUC | ONNX kB | .onnxz kB | "
                  "× dense fp32 | ms batch 1 | speed-up vs dense fp32 (95 %) | vs own fp32 |",
                  "|---|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for a in m["artifacts"]:
            for form in ("fp32", "int8"):
                f, t = a[form], m["timing"][f"{a['variant']} {form}"]
                vd, vo = t["vs_dense"], t["vs_own_fp32"]
                lines.append(
                    f"| {a['variant']} {form} | {'✓' if _served(a) == form else ''} | "
                    f"{a['params']:,} | {f['acc']:.3f} | {f['auc']:.3f} | {f['onnx'] / 1e3:,.0f} | "
                    f"{f['onnxz'] / 1e3:,.0f} | {f['onnxz'] / dense32:.3f} | {t['ms']:.2f} | "
                    f"{1 / vd['ratio']:.2f}× ({1 / vd['ratio_high']:.2f}–"
                    f"{1 / vd['ratio_low']:.2f}) | "
                    f"{'–' if form == 'fp32' else vo['verdict']} |")
        lines.append("")
        for a in m["artifacts"]:
            lines.append(f"- {a['variant']}: INT8 candidate `{a['chosen']}` {a['search']}; "
                         f"serves {_served(a)}: {a['serve']['reason']}")
            if "sparse_initializers" in a:
                s = a["sparse_initializers"]
                lines.append(f"- {a['variant']} INT8 as ONNX sparse initializers (int64 COO): "
                             f"{s['bytes'] / 1e3:,.0f} kB, zstd {s['zstd'] / 1e3:,.0f} kB; "
                             f".onnxz {a['int8']['onnxz'] / 1e3:,.0f} kB "
                             f"({onnxz.summary(a['int8']['coding'])})")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli_main(__doc__, run, table, "ResNet-18 only, a few faces and epochs (a smoke "
                      "run: its accuracy means nothing)"))
