"""Compact tickets: only the surviving weights of a pruned network, in a deployable file.

An 80 % sparse checkpoint saved as a dense ``state_dict`` is as large as the dense model. A
ticket file keeps, for the prunable weights (Conv2d and Linear), one bitmask over all of
them (``numpy.packbits``, one bit a weight) and the surviving values in order; every other
tensor (biases, BatchNorm parameters and statistics) is kept dense, all in one flat tensor
(a tensor record costs hundreds of bytes in a torch.save file, as much as a small layer).
Values are float32 or, with ``fp16``, float16. The file is a ``torch.save`` of plain tensors,
lists and dicts (read with ``weights_only=True``; no pickled modules)::

    {"format": "deepfake-lth-ticket", "version": 1,
     "model": str, "input_size": int, "num_outputs": int, "dtype": "float32" | "float16",
     "layers": [{"name": str, "shape": [int, ...]}, ...],   # prunable weights, in order
     "bits": uint8 tensor,     # packbits of the concatenated flattened masks
     "values": tensor,         # the surviving weights, in the same order
     "dense_layers": [{"name": str, "shape": [int, ...]}, ...],  # other float tensors
     "dense_values": tensor,   # their values, flattened and concatenated in that order
     "buffers": {name: {"dtype": str, "shape": [int, ...], "data": [int, ...]}},  # int buffers
     "channels": {conv: bool tensor} | absent,   # structured tickets (deepfake_lth.pruning.structured)
     "ranks": {layer: int} | absent,  # factorized layers (deepfake_lth.pruning.lowrank)
     "meta": {str: str | int | float | bool | None}}

``deepfake-lth export <run folder>`` reads what the workflow's run folder records (the
model, input size, mask, channel mask and the ranks of a low-rank factorization
(``ranks.json``) beside the checkpoint, in ``metrics.json``, and the
dataset's face settings in ``results/{dataset}/faces/summary.json``): a flag is needed only
where nothing is recorded, and one that contradicts the folder is an error naming both.

:func:`load_ticket` rebuilds the registry model (physically compacted when the ticket has a
channel mask). :func:`to_onnx` writes any ticket as ONNX for runtimes without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.runfolder import resolve_run
from deepfake_lth.deploy.onnx_export import (  # noqa: F401 - the ticket as ONNX, re-exported
    check_onnx,
    onnx_missing,
    to_onnx,
)
from deepfake_lth.pruning.lowrank import RANKS_FILE, read_ranks

log = logging.getLogger(__name__)

TICKET_FORMAT = "deepfake-lth-ticket"
TICKET_VERSION = 1
DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class Ticket:
    """A ticket file's content, with the full-shape state dict rebuilt."""

    model_name: str
    input_size: int
    num_outputs: int
    dtype: str
    state: dict[str, torch.Tensor]  # full-shape float32 state dict, pruned weights zero
    mask: dict[str, torch.Tensor]  # weight mask of the prunable weights
    channels: dict[str, torch.Tensor] | None = None  # channel mask of a structured ticket
    meta: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, int] | None = None  # the factorized layers of a low-rank network

    def build(self, compact: bool = True, device: torch.device | str = "cpu") -> nn.Module:
        """The registry model with the ticket's weights, in eval mode; physically smaller
        when ``compact`` and the ticket has a channel mask."""
        from deepfake_lth.models import build_model

        model = build_model(self.model_name, self.input_size, num_outputs=self.num_outputs)
        if self.ranks:
            from deepfake_lth.pruning.lowrank import lowrank_like

            model = lowrank_like(model, self.ranks)
        model.load_state_dict(self.state)
        if compact and self.channels is not None:
            from deepfake_lth.pruning.structured import compact_model

            model = compact_model(model, self.channels)
        return model.to(device).eval()


# --------------------------------------------------------------------------- packing


def _registry_model(model_name: str, size: int, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The registry model at side ``size`` with as many outputs as ``state``'s head has."""
    from deepfake_lth.models import build_model

    model = build_model(model_name, input_size=size)
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    w = state.get(f"{heads[-1]}.weight") if heads else None
    if isinstance(w, torch.Tensor) and w.dim() == 2 and w.shape[0] != 1:
        model = build_model(model_name, input_size=size, num_outputs=int(w.shape[0]))
    return model


def _check_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        raise UserError(
            f"{source} does not fit this model: {len(missing)} missing keys {missing[:3]}, "
            f"{len(extra)} unexpected keys {extra[:3]}, {len(wrong)} shape mismatches "
            f"{wrong[:3]}; check --model and --input-size (it must be the model the "
            "checkpoint was trained as)"
        )


def _ticket_mask(model: nn.Module, model_name: str, state: Mapping[str, torch.Tensor],
                 mask: Mapping[str, torch.Tensor] | None) -> tuple[list[str], dict]:
    """The prunable weights' names of ``model`` and ``mask`` checked against them (default:
    the nonzero weights of ``state``)."""
    from deepfake_lth.models import prunable_parameters
    from deepfake_lth.pruning.masks import check_mask, mask_from_state

    names = list(prunable_parameters(model))
    if mask is None:
        mask = mask_from_state(state, names)
    mask = check_mask(dict(mask), "mask")
    if set(mask) != set(names):
        raise UserError(
            f"the mask names {len(mask)} weights but {model_name} has {len(names)} prunable "
            f"weights (e.g. missing {sorted(set(names) - set(mask))[:3]}); the mask belongs to "
            "another architecture"
        )
    return names, mask


def _pack_weights(state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                  names: list[str], dtype: torch.dtype, source: str) -> dict[str, Any]:
    """``layers``, ``bits`` and ``values`` of a ticket: the prunable weights under ``mask``."""
    bits, values, layers, stray = [], [], [], 0
    for name in names:
        w, m = state[name].detach().cpu(), mask[name].cpu()
        if tuple(w.shape) != tuple(m.shape):
            raise UserError(
                f"weight {name!r} has shape {tuple(w.shape)} but its mask {tuple(m.shape)}; "
                "the mask belongs to another architecture"
            )
        stray += int(((w != 0) & ~m).sum())
        layers.append({"name": name, "shape": [int(s) for s in w.shape]})
        bits.append(m.flatten().numpy())
        values.append(w.flatten()[m.flatten()].to(dtype))
    if stray:
        log.warning(
            "%d weights the mask prunes are nonzero in %s; the ticket drops them "
            "(are checkpoint and mask from the same run?)",
            stray,
            source,
        )
    return {"layers": layers, "bits": torch.from_numpy(np.packbits(np.concatenate(bits))),
            "values": torch.cat(values) if values else torch.zeros(0, dtype=dtype)}


def _pack_rest(state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
               dtype: torch.dtype) -> dict[str, Any]:
    """``dense_layers``, ``dense_values`` and ``buffers`` of a ticket: every other tensor."""
    dense_layers, dense_values, buffers = [], [], {}
    for k, v in state.items():
        if k in mask:
            continue
        t = v.detach().cpu()
        if t.is_floating_point():
            dense_layers.append({"name": k, "shape": [int(s) for s in t.shape]})
            dense_values.append(t.flatten().to(dtype))
        else:  # integer buffers (BatchNorm's num_batches_tracked): plain lists
            buffers[k] = {
                "dtype": str(t.dtype).removeprefix("torch."),
                "shape": [int(s) for s in t.shape],
                "data": t.flatten().tolist(),
            }
    return {"dense_layers": dense_layers,
            "dense_values": torch.cat(dense_values) if dense_values
            else torch.zeros(0, dtype=dtype),
            "buffers": buffers}


def pack_ticket(
    state: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor] | None,
    model_name: str,
    input_size: int | None = None,
    fp16: bool = False,
    channels: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, Any] | None = None,
    source: str = "the checkpoint",
    ranks: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The ticket dict of ``state`` under ``mask`` (default: its nonzero weights); ``ranks``:
    the layers ``state`` holds factorized (:mod:`deepfake_lth.pruning.lowrank`).

    Weights that the mask prunes but ``state`` has nonzero are dropped (a warning counts
    them): the ticket is always ``mask ⊙ state``.
    """
    from deepfake_lth.models import get_spec

    spec = get_spec(model_name)
    size = int(input_size or spec.input_size)
    model = _registry_model(model_name, size, state)
    if ranks:
        from deepfake_lth.pruning.lowrank import lowrank_like

        model = lowrank_like(model, ranks)
    num_outputs = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    _check_state(model, state, source)
    names, mask = _ticket_mask(model, model_name, state, mask)
    dtype = torch.float16 if fp16 else torch.float32
    ticket: dict[str, Any] = {
        "format": TICKET_FORMAT,
        "version": TICKET_VERSION,
        "model": model_name,
        "input_size": size,
        "num_outputs": num_outputs,
        "dtype": "float16" if fp16 else "float32",
        **_pack_weights(state, mask, names, dtype, source),
        **_pack_rest(state, mask, dtype),
        "meta": {str(k): v for k, v in (meta or {}).items()},
    }
    if ranks:
        ticket["ranks"] = {str(k): int(v) for k, v in ranks.items()}
    if channels is not None:
        from deepfake_lth.pruning.structured import check_channel_mask

        ticket["channels"] = check_channel_mask(model, channels, "channel mask")
    return ticket


def unpack_ticket(ticket: Mapping[str, Any], source: str = "ticket") -> Ticket:
    """A :class:`Ticket` (full-shape float32 state dict) from a ticket dict."""
    if not isinstance(ticket, Mapping) or ticket.get("format") != TICKET_FORMAT:
        raise UserError(
            f"{source} is not a ticket file; write one with `deepfake-lth export "
            "<run folder> -o ticket.pt`"
        )
    if ticket.get("version") != TICKET_VERSION:
        raise UserError(
            f"{source} is ticket format version {ticket.get('version')}, this code reads "
            f"version {TICKET_VERSION}; export the ticket again with this version"
        )
    try:
        layers = ticket["layers"]
        total = sum(int(np.prod(layer["shape"])) for layer in layers)
        flags = np.unpackbits(ticket["bits"].numpy(), count=total).astype(bool)
        values = ticket["values"].float()
        if int(flags.sum()) != values.numel():
            raise ValueError(f"{int(flags.sum())} mask bits set but {values.numel()} values")
        state: dict[str, torch.Tensor] = {}
        mask: dict[str, torch.Tensor] = {}
        offset = used = 0
        for layer in layers:
            shape = tuple(int(s) for s in layer["shape"])
            n = int(np.prod(shape))
            m = torch.from_numpy(flags[offset : offset + n].copy())
            k = int(m.sum())
            w = torch.zeros(n, dtype=torch.float32)
            w[m] = values[used : used + k]
            state[layer["name"]] = w.view(shape)
            mask[layer["name"]] = m.view(shape)
            offset += n
            used += k
        dense_values = ticket["dense_values"].float()
        offset = 0
        for layer in ticket["dense_layers"]:
            shape = tuple(int(s) for s in layer["shape"])
            n = int(np.prod(shape))
            state[layer["name"]] = dense_values[offset : offset + n].clone().view(shape)
            offset += n
        if offset != dense_values.numel():
            raise ValueError(f"{dense_values.numel()} dense values for {offset} entries")
        for k, b in ticket["buffers"].items():
            dtype = getattr(torch, b["dtype"])
            state[k] = torch.tensor(b["data"], dtype=dtype).view(tuple(b["shape"]))
        return Ticket(
            model_name=str(ticket["model"]),
            input_size=int(ticket["input_size"]),
            num_outputs=int(ticket["num_outputs"]),
            dtype=str(ticket["dtype"]),
            state=state,
            mask=mask,
            channels=ticket.get("channels"),
            meta=dict(ticket.get("meta") or {}),
            ranks=dict(ticket["ranks"]) if ticket.get("ranks") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UserError(
            f"{source} is a damaged ticket file ({exc.__class__.__name__}: {exc}); export it again"
        ) from None


# --------------------------------------------------------------------------- files


def load_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; UserError naming the file when it is
    missing or not a torch.save file (truncated, a text file, a foreign pickle)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many types on foreign bytes
        raise UserError(
            f"{path} is not a file written by torch.save that torch.load(weights_only=True) "
            f"reads ({exc.__class__.__name__}: {exc}); check the path, or write it again"
        ) from None


def is_ticket_file(path: str | Path) -> bool:
    """Whether ``path`` holds a ticket (as opposed to a plain state dict)."""
    obj = load_file(path)
    return isinstance(obj, Mapping) and obj.get("format") == TICKET_FORMAT


def save_ticket(path: str | Path, ticket: Mapping[str, Any]) -> int:
    """Write a ticket dict atomically; returns the file's size in bytes."""
    from deepfake_lth.pruning.checkpoints import atomic_torch_save

    atomic_torch_save(dict(ticket), path)
    return Path(path).stat().st_size


def read_ticket(path: str | Path) -> Ticket:
    """A ticket file written by :func:`export_ticket` (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ticket file {path} does not exist; write it with `deepfake-lth export`")
    return unpack_ticket(load_file(path), str(path))


def load_ticket(
    path: str | Path, device: torch.device | str = "cpu", compact: bool = True
) -> nn.Module:
    """The registry model of a ticket file, in eval mode (physically compacted when the ticket
    carries a channel mask and ``compact``)."""
    return read_ticket(path).build(compact=compact, device=device)


def export_ticket(
    checkpoint: str | Path,
    mask: str | Path | None,
    out: str | Path,
    model_name: str | None = None,
    input_size: int | None = None,
    fp16: bool = False,
    channels: str | Path | None = None,
    faces: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the ticket of ``checkpoint`` (a run folder or its checkpoint.pt) to ``out``;
    returns sizes, sparsity and what was read from the run folder.

    The model, input size, mask (``mask.pt``; without one, the checkpoint's nonzero
    weights), channel mask and the dataset's face settings come from the run folder
    (:func:`deepfake_lth.core.runfolder.resolve_run`); ``mask``, ``model_name``, ``input_size``,
    ``channels`` and ``faces`` may be given, and must agree with what the folder records. The face settings
    are stored so that ``deepfake-lth detect`` crops faces the way the run's data was cropped.
    """
    from deepfake_lth.pruning.checkpoints import load_mask, load_state
    from deepfake_lth.pruning.masks import sparsity

    run, model, size, settings = resolve_run(checkpoint, mask, model_name, input_size,
                                             channels, faces)
    state = load_state(run.checkpoint)
    weight_mask = load_mask(run.mask) if run.mask else None
    cmask = None
    if run.channels:
        from deepfake_lth.pruning.structured import load_channels

        cmask = load_channels(run.channels)
    from deepfake_lth.deploy.decisions import run_meta

    ranks = read_ranks(run.checkpoint.parent / RANKS_FILE)
    meta = run_meta(run, settings)
    ticket = pack_ticket(
        state, weight_mask, model, size, fp16, cmask, meta, source=str(run.checkpoint),
        ranks=ranks,
    )
    nbytes = save_ticket(out, ticket)
    dense_size = run.checkpoint.stat().st_size
    t = unpack_ticket(ticket)
    return {
        "ticket": str(out),
        "ticket_bytes": nbytes,
        "checkpoint_bytes": dense_size,
        "ratio": nbytes / dense_size,
        "sparsity": sparsity(t.mask),
        "dtype": ticket["dtype"],
        "model": model,
        "input_size": size,
        "mask": str(run.mask) if run.mask else None,
        "channels": str(run.channels) if run.channels else None,
        "ranks": ranks,
        "faces": str(run.faces_path) if run.faces_path else ("--faces" if faces else None),
        "meta": meta,
    }


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        help="a run folder of the workflow (e.g. results/demo-videos/cnn5/seed0/imp-global/"
        "round7) or its checkpoint.pt; its mask.pt, channels.pt, metrics.json (model, input "
        "size) and the dataset's face settings are read from there",
    )
    parser.add_argument(
        "mask", nargs="?",
        help="mask.pt of the checkpoint (default: the folder's mask.pt, else the nonzero weights)",
    )
    parser.add_argument("-o", "--out", required=True, help="ticket file to write, e.g. ticket.pt")
    parser.add_argument(
        "--model",
        help="registry model name, e.g. cnn5 (default: the run folder's; needed without one)",
    )
    parser.add_argument(
        "--input-size", type=int,
        help="input side the model was trained at (default: the run folder's; needed without one)",
    )
    parser.add_argument("--fp16", action="store_true", help="store weights as float16")
    parser.add_argument(
        "--channels",
        help="channels.pt of a structured round (default: the folder's): load_ticket compacts "
        "the model",
    )
    parser.add_argument(
        "--faces",
        help="face settings as JSON, recorded for `deepfake-lth detect` (default: the ones the "
        "run's dataset was packed with; keys given here must agree with those)",
    )
    parser.add_argument("--onnx", help="also write the ticket as ONNX to this path")


ONNX_SUFFIXES = (".onnx", ".onnxz")


def _outputs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The ticket file and the ONNX file to write, checked before any work: ``-o x.onnx``
    (or ``.onnxz``) without ``--onnx`` writes the fp32 ONNX model there (no ticket file)."""
    from deepfake_lth.core.files import check_output

    out = check_output(args.out)
    onnx_out = None
    if out.suffix in ONNX_SUFFIXES:
        if args.onnx:
            raise UserError(f"-o {out} names an ONNX file and --onnx another; give -o "
                            "ticket.pt --onnx model.onnx, or only -o model.onnx")
        onnx_out = out
    elif args.onnx:
        onnx_out = check_output(args.onnx, "--onnx")
        if onnx_out.suffix not in ONNX_SUFFIXES:
            raise UserError(f"--onnx {onnx_out}: name the ONNX file .onnx (plain) or .onnxz "
                            "(sparse and coded)")
    if onnx_out is not None:
        missing = onnx_missing()
        if missing:
            raise UserError(f"ONNX output needs the onnx and onnxruntime packages ({missing})")
    return out, onnx_out


def run(args: argparse.Namespace) -> int:
    import tempfile

    from deepfake_lth.core.runfolder import parse_faces
    from deepfake_lth.deploy.decisions import decisions_line, onnx_meta, synthetic_notice
    from deepfake_lth.deploy.onnx_export import write_onnx

    faces = parse_faces(args.faces)
    out, onnx_out = _outputs(args)
    with tempfile.TemporaryDirectory() as tmp:
        ticket_path = Path(tmp) / "ticket.pt" if out == onnx_out else out
        info = export_ticket(args.checkpoint, args.mask, ticket_path, args.model,
                             args.input_size, args.fp16, args.channels, faces)
        if out != onnx_out:
            print(f"{info['ticket']}: {info['ticket_bytes']:,} bytes ({info['ratio']:.3f}× of "
                  f"{args.checkpoint}, {info['checkpoint_bytes']:,} bytes); {info['model']} at "
                  f"{info['input_size']} px, sparsity {info['sparsity']:.4f}, {info['dtype']}")
        if onnx_out is not None:
            ticket = read_ticket(ticket_path)
            diff = write_onnx(ticket.build(), onnx_out, ticket.input_size, onnx_meta(ticket))
            print(f"{onnx_out}: fp32 ONNX{' (sparse, coded)' if onnx_out.suffix == '.onnxz' else ''}"
                  f", {onnx_out.stat().st_size:,} bytes; {info['model']} at {info['input_size']} "
                  f"px, sparsity {info['sparsity']:.4f}; max |Δlogit| vs torch {diff:.1e}"
                  + (" (--int8 writes the INT8 model where it is faster)" if out == onnx_out
                     else ""))
    if info["faces"]:
        print(f"face settings for detect: {info['faces']}")
    else:
        print("no face settings recorded for this run's dataset (pack it again, or give "
              "--faces); detect will use its defaults", file=sys.stderr)
    print(decisions_line(info["meta"]))
    notice = synthetic_notice(info["meta"])
    if notice:
        print(notice, file=sys.stderr)
    return 0
