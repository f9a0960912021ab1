"""Large graph weights move out of the .onnx files into .npy files beside them (docs/bundle.md, "Graph weights").

Inlined in a graph, an initializer is copied by onnxruntime into every process that loads it: an id model's
embedding table (a million 64-d items: 256 MB) then costs each worker its own copy. Moved to a .npy, the
service maps it read-only from the descriptor it hashed and hands the mapped array to onnxruntime
(`SessionOptions.add_initializer`), which uses those pages in place: one copy in the page cache for every
worker on the machine.

The graph keeps naming the tensor as standard ONNX external data (the .npy file, offset past its header), so
an .onnx file still loads by path in onnxruntime or `onnx.load` with no help from us. Files are named by
their contents: a table that two graphs hold (BERT4Rec's item embedding, in both encoders) is written once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bundle.reader import read_npy_header

# Initializers of this size or more leave the graph. Below it a per-process copy costs little and keeps
# small bundles (the demo's, transformer layers) to the three graph files.
EXTERNAL_MIN_BYTES = 1 << 20
WEIGHTS_PREFIX = "weights-"


def externalize(graph_path: Path, min_bytes: int = EXTERNAL_MIN_BYTES) -> dict[str, str]:
    """Move the initializers of `min_bytes` or more of the graph at `graph_path` into .npy files in its
    folder; rewrite the graph to name them as external data. Returns {initializer name: file name}."""
    graph = onnx.load(str(graph_path))
    moved: dict[str, str] = {}
    for tensor in graph.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.nbytes < min_bytes or array.dtype.hasobject:
            continue
        array = np.ascontiguousarray(array)
        file = f"{WEIGHTS_PREFIX}{hashlib.sha256(array.data).hexdigest()[:16]}.npy"
        path = graph_path.parent / file
        if not path.exists():  # the same contents, already written for another tensor or graph
            np.save(path, array, allow_pickle=False)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", file), ("offset", str(npy_data_offset(path))), ("length", str(array.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        moved[tensor.name] = file
    if moved:
        onnx.save(graph, str(graph_path))
    return moved


def npy_data_offset(path: Path) -> int:
    """Where the array's bytes start in the .npy file at `path` (after its magic and header)."""
    with open(path, "rb") as f:
        read_npy_header(f)
        return f.tell()
