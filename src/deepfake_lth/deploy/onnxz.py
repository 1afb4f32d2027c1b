"""Sparse, entropy-coded ONNX files (``.onnxz``): only the nonzero weights of a ticket, stored
so that it still loads into an ONNX Runtime session.

ONNX has sparse initializers (``graph.sparse_initializer``, which ONNX Runtime densifies at
load), but the ONNX checker requires their indices to be int64: 8 bytes of index for every
surviving int8 weight, so a sparse INT8 tensor is smaller than its dense form only below
about 11 % density (``bench/compression.py`` measures it on ResNet-18). This container keeps
instead, for every initializer where it pays, one bit per element (``numpy.packbits`` of
``value != 0``) and the nonzero values in order (the other initializers of 64 elements or
more: all their values), and codes each stream with zstd where that is smaller than the
stream itself::

    b"DLTONNXZ" | u32 little-endian header length | header (JSON) | section payloads

    header = {"format": "deepfake-lth-onnxz", "version": 1,
              "tensors": [{"name", "dtype" (numpy), "shape", "nnz" (null: stored dense)}, ...],
              "sections": [{"name", "codec": "zstd" | "raw", "size", "stored"}, ...]}

The sections, in order: ``graph`` (the ONNX model with the listed initializers' data
removed), ``bits`` (the packed masks of the sparse ones, concatenated), and ``values-{dtype}``
per value type (their values in order, only the nonzero ones of a sparse tensor; multi-byte types byte-shuffled, all first bytes then all
second bytes …, which zstd codes better). :func:`load_bytes` rebuilds the exact ONNX model
in memory; no file is written at load. Bytes per stream: :func:`info`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.core.errors import UserError

MAGIC = b"DLTONNXZ"
FORMAT = "deepfake-lth-onnxz"
VERSION = 1
SUFFIX = ".onnxz"
MIN_ELEMENTS = 64  # smaller tensors stay in the graph: their mask costs more than it saves
ZSTD_LEVEL = 19


def _zstd():
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency of the package
        raise UserError("the zstandard package is needed for .onnxz files: "
                        "pip install zstandard") from None
    return zstandard


def _shuffle(values: np.ndarray) -> bytes:
    """Bytes of ``values`` grouped by byte position (all first bytes, then all second …)."""
    raw = np.ascontiguousarray(values).view(np.uint8)
    return raw.reshape(-1, values.dtype.itemsize).T.tobytes() if values.dtype.itemsize > 1 \
        else raw.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    if dtype.itemsize > 1:
        raw = raw.reshape(dtype.itemsize, -1).T
    return np.ascontiguousarray(raw).view(dtype).reshape(-1)


def _sparse_pays(n: int, nnz: int, itemsize: int) -> bool:
    """Whether a bitmask and the nonzero values are smaller than the dense tensor."""
    return n >= MIN_ELEMENTS and (n + 7) // 8 + nnz * itemsize < n * itemsize


def _code(name: str, data: bytes, level: int) -> tuple[dict[str, Any], bytes]:
    """The section record and payload of ``data``: zstd where it is smaller."""
    coded = _zstd().ZstdCompressor(level=level).compress(data) if data else b""
    codec, payload = ("zstd", coded) if len(coded) < len(data) else ("raw", data)
    return {"name": name, "codec": codec, "size": len(data), "stored": len(payload)}, payload


def encode(model, level: int = ZSTD_LEVEL) -> bytes:
    """The ``.onnxz`` bytes of an ONNX ``ModelProto`` (not modified)."""
    from onnx import numpy_helper

    model = type(model).FromString(model.SerializeToString())  # a copy to strip
    tensors, bits, values = [], [], {}
    for init in model.graph.initializer:
        if init.data_location == 1:  # external data: not in this file
            raise UserError(f"initializer {init.name!r} is stored outside the ONNX file; "
                            "save the model with its weights inside")
        arr = numpy_helper.to_array(init)
        flat = arr.reshape(-1)
        nz = flat != 0
        nnz = int(nz.sum())
        if arr.dtype.kind not in "fiu" or flat.size < MIN_ELEMENTS:
            continue
        sparse = _sparse_pays(flat.size, nnz, arr.dtype.itemsize)
        tensors.append({"name": init.name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                        "nnz": nnz if sparse else None})
        if sparse:
            bits.append(nz)
        values.setdefault(arr.dtype.str, []).append(flat[nz] if sparse else flat)
        data_type, dims = init.data_type, list(init.dims)
        init.Clear()
        init.name, init.data_type = tensors[-1]["name"], data_type
        init.dims.extend(dims)
    streams = [("graph", model.SerializeToString()),
               ("bits", np.packbits(np.concatenate(bits)).tobytes() if bits else b"")]
    streams += [(f"values-{dt}", _shuffle(np.concatenate(v))) for dt, v in values.items()]
    sections, payloads = [], []
    for name, data in streams:
        record, payload = _code(name, data, level)
        sections.append(record)
        payloads.append(payload)
    header = json.dumps({"format": FORMAT, "version": VERSION, "tensors": tensors,
                         "sections": sections}, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(payloads)


def is_onnxz(path: str | Path) -> bool:
    """Whether ``path`` starts with the ``.onnxz`` magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _read(data: bytes, source: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and the decoded sections of ``.onnxz`` bytes."""
    if data[: len(MAGIC)] != MAGIC:
        raise UserError(f"{source} is not an .onnxz file; write one with "
                        "`deepfake-lth export <run folder> --int8 -o model.onnxz`")
    try:
        (n,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start : start + n])
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"format {header.get('format')} version {header.get('version')}")
        offset, sections = start + n, {}
        for s in header["sections"]:
            payload = data[offset : offset + s["stored"]]
            offset += s["stored"]
            raw = _zstd().ZstdDecompressor().decompress(payload, max_output_size=s["size"]) \
                if s["codec"] == "zstd" else payload
            if len(raw) != s["size"]:
                raise ValueError(f"section {s['name']}: {len(raw)} bytes, header says {s['size']}")
            sections[s["name"]] = raw
        if offset != len(data):
            raise ValueError(f"{len(data) - offset} bytes after the last section")
        return header, sections
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise UserError(f"{source} is a damaged .onnxz file ({exc.__class__.__name__}: {exc}); "
                        "write it again") from None
    except Exception as exc:  # noqa: BLE001 - zstandard raises its own error type
        raise UserError(f"{source} is a damaged .onnxz file ({exc}); write it again") from None


def decode(data: bytes, source: str = ".onnxz data"):
    """The ONNX ``ModelProto`` of ``.onnxz`` bytes, every weight restored."""
    import onnx
    from onnx import numpy_helper

    header, sections = _read(data, source)
    try:
        model = onnx.load_from_string(sections["graph"])
        total = sum(int(np.prod(t["shape"])) for t in header["tensors"] if t["nnz"] is not None)
        flags = np.unpackbits(np.frombuffer(sections["bits"], np.uint8), count=total).astype(bool)
        streams = {dt: _unshuffle(sections[f"values-{dt}"], np.dtype(dt))
                   for dt in {t["dtype"] for t in header["tensors"]}}
        used = dict.fromkeys(streams, 0)
        inits = {i.name: i for i in model.graph.initializer}
        offset = 0
        for t in header["tensors"]:
            n, dt, nnz = int(np.prod(t["shape"])), t["dtype"], t["nnz"]
            if nnz is None:  # stored dense
                dense = streams[dt][used[dt] : used[dt] + n].copy()
                if len(dense) != n:
                    raise ValueError(f"{t['name']}: {len(dense)} values for {n} elements")
                used[dt] += n
            else:
                dense = np.zeros(n, dtype=np.dtype(dt))
                mask = flags[offset : offset + n]
                if int(mask.sum()) != nnz:
                    raise ValueError(f"{t['name']}: {int(mask.sum())} mask bits, {nnz} values")
                dense[mask] = streams[dt][used[dt] : used[dt] + nnz]
                offset, used[dt] = offset + n, used[dt] + nnz
            inits[t["name"]].CopyFrom(
                numpy_helper.from_array(dense.reshape(t["shape"]), t["name"]))
        if any(used[dt] != len(streams[dt]) for dt in streams):
            raise ValueError("values left over after the last tensor")
        return model
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"{source} is a damaged .onnxz file ({exc.__class__.__name__}: {exc}); "
                        "write it again") from None
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError on a damaged graph
        raise UserError(f"{source} is a damaged .onnxz file ({exc}); write it again") from None


def load_bytes(path: str | Path) -> bytes:
    """The serialized ONNX model of ``path``: an ``.onnxz`` file expanded in memory, or an
    ONNX file as it is."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    data = path.read_bytes()
    if data[: len(MAGIC)] != MAGIC:
        return data
    return decode(data, str(path)).SerializeToString()


def write(onnx_path: str | Path, out: str | Path, level: int = ZSTD_LEVEL) -> int:
    """Write ``onnx_path`` (an ONNX file) as ``.onnxz`` to ``out``, atomically; its bytes."""
    import onnx

    from deepfake_lth.core.files import atomic_write

    data = encode(onnx.load(str(onnx_path)), level)
    atomic_write(out, lambda f: f.write(data), binary=True)
    return len(data)


def info(path: str | Path) -> dict[str, Any]:
    """Bytes of an ``.onnxz`` file: in all, the header, and per stream before and after
    coding; the weights stored sparse and their nonzero count."""
    data = Path(path).read_bytes()
    header, _ = _read(data, str(path))
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    sparse = [t for t in header["tensors"] if t["nnz"] is not None]
    return {"bytes": len(data), "header": len(MAGIC) + 4 + n,
            "sections": {s["name"]: {"raw": s["size"], "stored": s["stored"], "codec": s["codec"]}
                         for s in header["sections"]},
            "sparse_tensors": len(sparse),
            "sparse_elements": sum(int(np.prod(t["shape"])) for t in sparse),
            "nonzero": sum(t["nnz"] for t in sparse)}


def summary(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: each stream's bytes before → after coding."""
    return ", ".join(f"{k} {v['raw']:,}→{v['stored']:,}" for k, v in sections.items())
