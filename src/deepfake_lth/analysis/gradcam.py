"""Grad-CAM heatmaps of one model at several sparsities, and how far they move (§III-E).

For a face x and the model's last convolutional stage with activations A^k (k = channels),

    α_k = mean over (i, j) of ∂y/∂A^k_ij,      L = ReLU(Σ_k α_k A^k),

upsampled bilinearly to the input size. ``y`` is the explained score (see ``TARGETS``).
The change of attention at sparsity p is ΔL(p) = ||L_0 − L_p||_F, the Frobenius norm of the
difference between the dense model's map and the pruned model's map of the same face, both
*normalised* (each map divided by its maximum, so in [0, 1]): the raw maps scale with the
logit and the network's activation sizes, which pruning changes, so ΔL on raw maps mixes a
change of scale with a change of place. ``delta_l_raw`` in delta.csv keeps the raw version,
and ``delta_l_raw_per_pixel`` divides it by √(H·W) (the Frobenius norm grows with the map's
size, so raw ΔL of two input sizes cannot be compared). The faces are the same for every
seed, so ΔL between two seeds' dense networks is the noise floor of ΔL (the report's).

The implementation is our own, a few lines over autograd, rather than the PyPI ``grad-cam``
package: that package pulls the GUI build of OpenCV (clashing with opencv-python-headless),
and here every detail that ΔL depends on is explicit:

* a forward hook on the target layer keeps the layer's output tensor and hands a *clone* on
  to the rest of the network, so an in-place op downstream (``ReLU(inplace=True)``,
  ``out += identity``) can never overwrite the captured activation; CPU and CUDA agree;
* the gradient is taken with ``torch.autograd.grad(score, activation)``: no hooks left on
  tensors, no ``.grad`` accumulated in the parameters, nothing to reset between batches;
* the model is in ``eval()`` mode throughout, so a face's map does not depend on its batch.

The faces explained are chosen once per dataset and seed (:func:`select_eval_set`), so every
model, method and sparsity is compared on the same images.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution

log = logging.getLogger(__name__)

# Which score Grad-CAM explains, for a model with one logit z (positive = fake):
#   label     : the face's true class: z for a fake face, −z for a real face (default)
#   fake      : always z
#   real      : always −z
#   predicted : the class the model predicts; it may flip between sparsities, so ΔL then
#               measures a change of class as well as of attention (not recommended for ΔL)
# ``label`` is the default: it is fixed per face, so every sparsity explains the same score
# (like with like for ΔL), and a real face is explained by its evidence for "real". With
# ``fake`` a real face that the model rejects confidently gets an almost empty map, because
# the ReLU removes all evidence against "fake".
TARGETS = ("label", "fake", "real", "predicted")
TOP_FRACTION = 0.1  # concentration: share of the heat in the hottest 10 % of pixels


class GradCAM:
    """Grad-CAM of ``model`` at the module named ``target_layer`` (dotted, for get_submodule).

    Use as a context manager (or call :meth:`close`) so the forward hook is removed.
    """

    def __init__(self, model, target_layer: str, target: str = "label") -> None:
        if target not in TARGETS:
            raise UserError(f"Grad-CAM target {target!r} is not one of {', '.join(TARGETS)}")
        self.model = model
        self.target = target
        try:
            self.layer = model.get_submodule(target_layer)
        except AttributeError:
            raise UserError(
                f"target layer {target_layer!r} is not a module of {type(model).__name__}; "
                "fix target_layer in the model registry"
            ) from None
        self._activation = None
        self._handle = self.layer.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        if not hasattr(output, "clone"):
            raise UserError(
                f"Grad-CAM target layer {type(module).__name__} returns "
                f"{type(output).__name__}, not a tensor; choose a convolutional stage"
            )
        self._activation = output  # never modified: the network continues on the clone
        return output.clone()

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, x, labels=None):
        """Maps ``(n, H, W)`` at the input size (float32, ≥ 0) and logits ``(n,)`` for ``x``.

        ``labels`` (0 real, 1 fake) is needed for ``target="label"``.
        """
        import torch
        import torch.nn.functional as F

        self.model.eval()
        x = x.detach().clone().requires_grad_(True)  # a graph even with frozen parameters
        with torch.enable_grad():
            self._activation = None
            logits = self.model(x)
            if self._activation is None:
                raise UserError("the Grad-CAM target layer was not reached in the forward pass")
            act = self._activation
            self._activation = None
            if act.dim() != 4:
                raise UserError(
                    f"Grad-CAM needs a (B, C, H, W) activation; the target layer gives "
                    f"{tuple(act.shape)}; choose a convolutional stage"
                )
            z = logits.reshape(len(x), -1)[:, 0]
            sign = self._sign(z, labels)
            score = (sign * z).sum()  # samples are independent in eval mode
            (grad,) = torch.autograd.grad(score, act)
        with torch.no_grad():
            alpha = grad.mean(dim=(2, 3), keepdim=True)  # (n, C, 1, 1)
            cam = torch.relu((alpha * act).sum(dim=1, keepdim=True))  # (n, 1, h, w)
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            cam = cam.clamp_min(0)  # bilinear is a convex combination; guard rounding only
        return cam[:, 0].float(), z.detach().float()

    def _sign(self, z, labels):
        import torch

        if self.target == "fake":
            return torch.ones_like(z)
        if self.target == "real":
            return -torch.ones_like(z)
        if self.target == "predicted":
            return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
        if labels is None:
            raise ValueError('target="label" needs the labels of the faces')
        lab = torch.tensor(np.array(labels), device=z.device)
        return torch.where(lab > 0, 1.0, -1.0).to(z.dtype)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (maps are ≥ 0), so in [0, 1]; an all-zero map stays 0."""
    maps = np.asarray(maps, dtype=np.float32)
    peak = maps.reshape(*maps.shape[:-2], -1).max(axis=-1)[..., None, None]
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def concentration(maps: np.ndarray, top: float = TOP_FRACTION) -> np.ndarray:
    """Share of each map's heat in its hottest ``top`` fraction of pixels, in [top, 1].

    NaN for a map with no heat at all (nothing to share out).
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(*maps.shape[:-2], -1)
    k = max(1, math.ceil(top * flat.shape[-1]))
    hottest = np.sort(flat, axis=-1)[..., -k:].sum(axis=-1)
    total = flat.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hottest / np.where(total > 0, total, 1.0), np.nan)


def delta_l(reference: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """ΔL = ||reference − map||_F per map (over the last two axes)."""
    diff = np.asarray(maps, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return np.sqrt((diff**2).sum(axis=(-2, -1)))


EVAL_SET_SEED = 0  # the test faces Grad-CAM explains: one set per dataset, whatever the seed


def select_eval_set(faces_dir: str | Path, n_per_class: int, seed: int) -> np.ndarray:
    """Rows (of faces.npy / manifest.csv) of ``n_per_class`` real then fake TEST faces.

    Chosen once per dataset (the stage passes ``EVAL_SET_SEED``, whatever the training seed),
    shared by every model, seed and sparsity: videos of each class
    are shuffled by ``seed`` and one face is drawn from each in turn, so the faces come from
    different videos while there are enough; only then a second face of a video is taken.
    The result does not depend on the order of the manifest. Fewer faces than asked are
    returned (with a warning) when the test split has fewer.
    """
    from deepfake_lth.data.store import load_manifest

    if n_per_class < 1:
        raise UserError(f"gradcam.samples_per_class must be at least 1, got {n_per_class}")
    manifest = load_manifest(faces_dir)
    test = manifest[manifest["split"] == "test"]
    if test.empty:
        raise UserError(
            f"{Path(faces_dir) / 'manifest.csv'} has no test faces; Grad-CAM explains test "
            "faces only: check faces.split or the dataset"
        )
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in (0, 1):
        part = test[test["label"] == label]
        by_video = {
            vid: np.sort(g["index"].to_numpy(dtype=np.int64))
            for vid, g in part.groupby("video_id", sort=True)
        }
        videos = sorted(by_video)
        order = [videos[i] for i in rng.permutation(len(videos))]
        queues = {v: list(rng.permutation(by_video[v])) for v in order}
        picked: list[int] = []
        while len(picked) < n_per_class and any(queues.values()):
            for v in order:
                if queues[v] and len(picked) < n_per_class:
                    picked.append(int(queues[v].pop(0)))
        if len(picked) < n_per_class:
            log.warning(
                "%s: only %d %s test faces for Grad-CAM (asked for %d)",
                faces_dir, len(picked), "fake" if label else "real", n_per_class,
            )
        chosen += picked
    return np.asarray(chosen, dtype=np.int64)


def compute_maps(
    models: Iterable,
    target_layer: str,
    x,
    labels: np.ndarray,
    target: str = "label",
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw maps ``(levels, n, H, W)`` and fake probabilities ``(levels, n)`` of every model
    (``models`` may be a generator, so only one network is in memory at a time)."""
    import torch

    raws, probs = [], []
    for model in models:
        level_maps, level_probs = [], []
        with GradCAM(model, target_layer, target=target) as cam:
            for start in range(0, len(x), batch_size):
                sl = slice(start, start + batch_size)
                maps, z = cam(x[sl], labels[sl])
                level_maps.append(maps.cpu().numpy())
                level_probs.append(torch.sigmoid(z).cpu().numpy())
        raws.append(np.concatenate(level_maps))
        probs.append(np.concatenate(level_probs))
    return np.stack(raws).astype(np.float32), np.stack(probs).astype(np.float32)


def _registry_model(model_name: str, input_size: int | None) -> tuple[Callable, str, int]:
    from deepfake_lth.models import build_model, get_spec

    spec = get_spec(model_name)
    size = input_size or spec.input_size
    return (lambda: build_model(model_name, input_size=size)), spec.target_layer, size


def load_checkpoint(model, path: str | Path):
    """Load a plain state_dict file into ``model``; UserError naming the file otherwise."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: run the training stage that makes it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError,
            pickle.UnpicklingError) as exc:
        raise UserError(
            f"{path} does not load into {type(model).__name__} "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
            "was it trained with another model or input size?"
        ) from None
    return model


def gradcam_stage(
    faces_dir: str | Path,
    levels: Sequence[tuple[float, str, str | Path]],
    model_name: str,
    input_size: int | None,
    n_per_class: int,
    seed: int,
    device: str | None,
    out_dir: str | Path,
    target: str = "label",
    batch_size: int = 32,
    model_factory: Callable | None = None,
    target_layer: str | None = None,
) -> Path:
    """Grad-CAM of the same test faces at every level; writes heatmaps.npz and delta CSVs.

    ``levels``: ``(actual sparsity, method label, checkpoint path)``; one must be the dense
    model (sparsity 0), the reference of ΔL. ``model_factory``/``target_layer`` replace the
    registry lookup of ``model_name`` (for models outside the registry).
    """
    import torch

    if target not in TARGETS:
        raise UserError(f"Grad-CAM target {target!r} is not one of {', '.join(TARGETS)}")
    levels = check_levels(levels)
    if model_factory is None:
        model_factory, layer, input_size = _registry_model(model_name, input_size)
    else:
        if target_layer is None:
            raise ValueError("target_layer is needed with model_factory")
        layer = target_layer
    from deepfake_lth.training.device import resolve_device

    dev = resolve_device(device or "auto")
    faces = eval_faces(Path(faces_dir), n_per_class, input_size, dev)

    def networks():
        for sparsity, method, ckpt in levels:
            log.info("level %s at sparsity %.3f: %s", method, sparsity, ckpt)
            yield load_checkpoint(model_factory(), ckpt).to(dev).eval()

    torch.manual_seed(seed)
    raw, probs = compute_maps(networks(), layer, faces["x"], faces["labels"], target=target,
                              batch_size=batch_size)
    return write_maps(Path(out_dir), levels, faces, raw, probs, target)


def check_levels(levels) -> list[tuple[float, str, Path]]:
    """The levels sorted by sparsity, the dense one first, every checkpoint on disk."""
    levels = sorted(((float(s), str(m), Path(c)) for s, m, c in levels), key=lambda t: t[0])
    if not levels:
        raise UserError("--levels is empty: give at least the dense model (sparsity 0)")
    if levels[0][0] != 0.0:
        raise UserError(
            "--levels has no level at sparsity 0: ΔL compares every map with the dense "
            "model's, so add {\"sparsity\": 0, \"method\": \"dense\", \"checkpoint\": ...}"
        )
    for _, _, ckpt in levels:  # a missing checkpoint fails before any work
        if not ckpt.is_file():
            raise UserError(f"checkpoint {ckpt} does not exist: run the stage that makes it")
    return levels


def eval_faces(faces_dir: Path, n_per_class: int, input_size: int, device) -> dict[str, Any]:
    """The fixed test faces every level's maps are of: rows, labels, videos, images, tensor."""
    from deepfake_lth.data.store import load_manifest, read_rows, to_tensor

    if not (faces_dir / "faces.npy").is_file():
        raise UserError(f"{faces_dir / 'faces.npy'} is missing: run the pack stage first")
    # the same faces for every seed: ΔL between the dense networks of two seeds (the noise
    # floor of ΔL) and the Grad-CAM claim pair them by face
    rows = select_eval_set(faces_dir, n_per_class, EVAL_SET_SEED)
    manifest = load_manifest(faces_dir).set_index("index")
    images = read_rows(np.load(faces_dir / "faces.npy", mmap_mode="r"), rows)  # just these
    return {"rows": rows, "labels": manifest.loc[rows, "label"].to_numpy(dtype=np.int64),
            "video_ids": manifest.loc[rows, "video_id"].to_numpy(dtype=str), "images": images,
            "x": to_tensor(images, size=input_size, device=device)}


def write_maps(out_dir: Path, levels, faces: Mapping[str, Any], raw, probs, target: str) -> Path:
    """heatmaps.npz (images, maps, probabilities), delta.csv (ΔL, concentration per face and
    level) and delta_summary.csv."""
    import pandas as pd

    norm = normalise(raw)
    conc = concentration(norm)
    d_norm = delta_l(norm[0], norm)
    d_raw = delta_l(raw[0], raw)
    per_pixel = 1.0 / math.sqrt(raw.shape[-1] * raw.shape[-2])  # ΔL comparable across sizes
    rows, labels, video_ids = faces["rows"], faces["labels"], faces["video_ids"]
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_dir / "heatmaps.npz", images=faces["images"].astype(np.uint8), labels=labels,
        rows=rows, video_ids=video_ids,
        sparsities=np.array([s for s, _, _ in levels], dtype=np.float64),
        methods=np.array([m for _, m, _ in levels]), raw=raw, norm=norm.astype(np.float32),
        probs=probs, target=np.array(target),
    )
    records = [
        {"row": int(rows[i]), "label": int(labels[i]), "video_id": video_ids[i],
         "sparsity": sparsity, "method": method, "delta_l": float(d_norm[j, i]),
         "delta_l_raw": float(d_raw[j, i]),
         "delta_l_raw_per_pixel": float(d_raw[j, i]) * per_pixel,
         "concentration": float(conc[j, i]), "prob_fake": float(probs[j, i])}
        for j, (sparsity, method, _) in enumerate(levels)
        for i in range(len(rows))
    ]
    table = pd.DataFrame.from_records(records)
    table.to_csv(out_dir / "delta.csv", index=False)
    summarise(table).to_csv(out_dir / "delta_summary.csv", index=False)
    log.info("wrote %s (%d faces × %d levels)", out_dir / "heatmaps.npz", len(rows), len(levels))
    return out_dir


def summarise(table):
    """Mean and std of ΔL, concentration and fake probability per level (delta.csv rows)."""
    grouped = table.groupby(["sparsity", "method"], sort=True)
    out = grouped.agg(
        n=("delta_l", "size"),
        delta_l_mean=("delta_l", "mean"),
        delta_l_std=("delta_l", "std"),
        concentration_mean=("concentration", "mean"),
        concentration_std=("concentration", "std"),
        prob_fake_mean=("prob_fake", "mean"),
    ).reset_index()
    return out.fillna({"delta_l_std": 0.0, "concentration_std": 0.0})


def _json_arg(text: str, name: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name} is not valid JSON ({exc}): {text[:80]!r}") from None


def parse_levels(text: str) -> list[tuple[float, str, str]]:
    """``--levels`` JSON: a list of ``{sparsity, method, checkpoint}``."""
    data = _json_arg(text, "--levels")
    if not isinstance(data, list):
        raise UserError('--levels must be a JSON list of {"sparsity", "method", "checkpoint"}')
    out = []
    for i, item in enumerate(data):
        missing = {"sparsity", "method", "checkpoint"} - set(item if isinstance(item, dict) else ())
        if missing:
            raise UserError(f"--levels[{i}] lacks {', '.join(sorted(missing))}")
        out.append((float(item["sparsity"]), str(item["method"]), str(item["checkpoint"])))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", required=True, help="packed dataset folder (faces.npy)")
    parser.add_argument("--model", required=True, help="registry model name")
    parser.add_argument("--seed", type=int, default=0, help="seed of the face selection")
    parser.add_argument(
        "--levels", required=True, help='JSON list of {"sparsity", "method", "checkpoint"}'
    )
    parser.add_argument(
        "--spec",
        default="{}",
        help='JSON {"input_size", "samples_per_class", "device", "threads", '
        '"target" (label|fake|real|predicted), "batch_size"}',
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_execution_arguments(parser)


# what a Grad-CAM job's spec holds besides its section's samples_per_class
SPEC_EXTRA = {"input_size": None, "device": "auto", "threads": 1, "target": "label",
              "batch_size": 32}


def job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The config slice a Grad-CAM job computes from (the rule's ``--spec``)."""
    return {"input_size": config["models"][model].get("input_size"),
            "samples_per_class": config["gradcam"]["samples_per_class"]}


def run(args: argparse.Namespace) -> int:
    import torch

    from deepfake_lth.core.schema import read_spec, stage_spec

    spec = stage_spec(apply_execution(read_spec(args.spec), args), "gradcam", SPEC_EXTRA,
                      drop=("methods", "sparsities"))
    torch.set_num_threads(int(spec["threads"]))
    gradcam_stage(
        faces_dir=args.faces,
        levels=parse_levels(args.levels),
        model_name=args.model,
        input_size=spec["input_size"],
        n_per_class=int(spec["samples_per_class"]),
        seed=args.seed,
        device=spec["device"],
        out_dir=args.out,
        target=spec["target"],
        batch_size=int(spec["batch_size"]),
    )
    return 0
