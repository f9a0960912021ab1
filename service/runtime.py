"""onnxruntime: choose the execution provider once, then one InferenceSession per graph."""
from __future__ import annotations

import base64
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger("recserve.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# A one-node Identity graph (opset 17), used only to find out whether a CUDA session really works.
_PROBE_MODEL = base64.b64decode(
    "CAgSDnJlY3NlcnZlLXByb2JlOjsKEAoBeBIBeSIISWRlbnRpdHkSBXByb2JlWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQEQ=="
)


class ProviderError(RuntimeError):
    """RECSERVE_PROVIDERS=cuda on a machine where CUDA does not work."""


def _quiet_cuda_probe() -> tuple[bool, str]:
    """Create a tiny CUDA session with onnxruntime's stderr captured; (works, why not)."""
    if CUDA not in ort.get_available_providers():
        return False, "not in this onnxruntime build"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            session = ort.InferenceSession(_PROBE_MODEL, options, providers=[CUDA, CPU])
            works, reason = session.get_providers()[0] == CUDA, ""
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
            works, reason = False, str(exc)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = re.sub(r"\x1b\[[0-9;]*m", "", captured.read().decode(errors="replace"))
    found = re.search(r"with error: ([^\n]+)", text) or re.search(r"\] ([^\n]*(?:CUDA|cuda)[^\n]*)", text)
    return works, reason or (found.group(1).strip() if found else "session fell back to CPU")


@lru_cache(maxsize=None)
def choose_providers(setting: str) -> tuple[str, ...]:
    """Providers for every session, probed once per process; logs one line saying which and why."""
    if setting == "cpu":
        log.info("onnxruntime: serving on %s (RECSERVE_PROVIDERS=cpu)", CPU)
        return (CPU,)
    works, reason = _quiet_cuda_probe()
    if works:
        log.info("onnxruntime: serving on %s", CUDA)
        return (CUDA, CPU)
    if setting == "cuda":
        raise ProviderError(f"RECSERVE_PROVIDERS=cuda but the CUDA provider is not usable: {reason}")
    log.info("onnxruntime: serving on %s (CUDA provider not usable: %s)", CPU, reason)
    return (CPU,)


class Graph:
    """One ONNX graph in one session; `run` returns the first output and reports its duration."""

    def __init__(self, name: str, model: bytes, providers: tuple[str, ...], intra: int = 0, inter: int = 0,
                 observe: Callable[[str, float], None] | None = None, weights: Mapping[str, np.ndarray] | None = None,
                 folder: Path | None = None):
        """`weights`: the graph's initializers kept outside it (docs/bundle.md, "Graph weights"), as arrays
        mapped from the bundle's verified files; `folder` the bundle's, where the graph says they are."""
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = intra
        options.inter_op_num_threads = inter
        # Its worker threads would otherwise spin after each run, waiting for the next: on a server they take
        # the cores the other requests, the index search and the client need, and set the latency tail
        # (1M bench, cold /recommend at concurrency 1, three alternated runs each: p99 8.1-8.4 ms against
        # 8.7-9.8 spinning; docs/benchmarks.md 6.6).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime uses an initializer given as an OrtValue in place (SessionOptions.add_initializer; its
        # add_external_initializers copies): the mapped pages, shared by every worker. The values must outlive
        # the session. It still checks that the files the graph names exist, so it is told the bundle's folder
        # (the graph is loaded from the verified bytes, not by path), but it reads none of them.
        self._weights = {n: ort.OrtValue.ortvalue_from_numpy(a) for n, a in (weights or {}).items()}
        for tensor, value in self._weights.items():
            options.add_initializer(tensor, value)
        if self._weights:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
        self.name = name
        self.session = ort.InferenceSession(model, options, providers=list(providers))
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name
        self.provider = self.session.get_providers()[0]
        self._observe = observe

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        out = self.session.run([self.output], feeds)[0]
        if self._observe is not None:
            self._observe(self.name, time.perf_counter() - start)
        return out
