"""The frozen networks run by ONNX Runtime: export once per (network, input size), cached, atomic.

Why: on CPU, ONNX Runtime runs EfficientNet-Lite0 about three times faster than torch's eager loop
over the same weights (measured on the 2-core machine at 128 px, batch 16, one thread: torch 114
img/s, ONNX Runtime 342-384 img/s; the features agree to 3e-6 relative). `bench/benchmarks/extraction.py`
measures the ratio on the machine at hand.

One graph per (network, input size) takes the resized batch in ``[0, 255]`` (it applies the network's
normalisation ``(x - 127) / 128`` itself, so `Backbone.normalize` is the identity for it) and has two
outputs, ``pooled`` (``(B, C)``, the global average of the last convolutional map) and ``logits`` (``(B, 1000)``, ``fc(pooled)``: the network's dropout is off in
evaluation), with a dynamic batch axis. It is exported with torch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``, opset `OPSET`) into::

    cache_dir()/onnx/<network>-s<size>-<16 hex of the key>/
        model.onnx      the graph with its weights (one file: the networks are far below 2 GB)
        key.json        what the graph was made from: the key below, and the graph file's sha256

The key is everything that changes the graph's bytes or meaning: the weights' sha256, the network
library's and torch's versions, the exporter, the opset, onnx's version and `GRAPH_VERSION`. The export
is atomic: it is written into a temporary folder beside the final one, which is renamed into place
only when complete (a rename of a folder is atomic; a process that loses the race discards its copy
and uses the winner's). A folder without ``key.json`` is never used: it is replaced.

Threads: a session uses ``torch.get_num_threads()`` intra-op threads, so the harness's one thread
setting (``--threads``) governs both runtimes.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.datasets.cache import cache_dir
from hashbench.datasets.errors import DataError
from hashbench.datasets.features.backbone import installed_version

OPSET = 17
EXPORTER = "torchscript"  # torch.onnx.export(..., dynamo=False): needs no onnxscript
GRAPH_VERSION = "normalised-in-graph+pooled+logits-v2"  # bump when the exported module below changes
INSTALL_HINT = "install the optional feature packages: pip install 'hashbench[features]'"
log = logging.getLogger("hashbench.datasets.features")


def _versions() -> dict[str, str]:
    out = {}
    for package in ("onnx", "onnxruntime"):
        if (version := installed_version(package)) is None:
            raise DataError(f"runtime 'onnxruntime' needs the package {package!r}; {INSTALL_HINT}")
        out[package] = version
    return out


def graph_key(network: str, input_size: int, weights_sha256: str, library_version: str) -> dict[str, Any]:
    """The facts the exported graph depends on (see the module docstring), as a JSON-able dict."""
    import torch

    return {"network": network, "input_size": int(input_size), "weights_sha256": weights_sha256,
            "library": library_version, "torch": torch.__version__, "exporter": EXPORTER, "opset": OPSET,
            "onnx": _versions()["onnx"], "graph": GRAPH_VERSION}


def _key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _export(model: Any, input_size: int, path: Path) -> None:
    import torch

    class PooledAndLogits(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            # the network's input normalisation inside the graph: one pass less over every batch in Python
            pooled = self.net.extract_features((x - 127.0) / 128.0).mean((2, 3))
            return pooled, self.net._fc(pooled)

    example = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        # the TorchScript exporter announces its deprecation in favour of dynamo, which needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(PooledAndLogits(model).eval(), (example,), str(path), dynamo=False,
                          opset_version=OPSET, input_names=["x"], output_names=["pooled", "logits"],
                          dynamic_axes={"x": {0: "batch"}, "pooled": {0: "batch"}, "logits": {0: "batch"}})


def graph_path(model: Any, key: dict[str, Any]) -> tuple[Path, bool]:
    """The cached graph for ``key`` (exported from ``model`` when missing) and whether it was exported now.

    Raises:
        DataError: the export failed (the message says why; nothing is left in the cache).
    """
    root = cache_dir() / "onnx"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{key['network']}-s{key['input_size']}-{_key_hash(key)}"
    if (final / "key.json").is_file():
        return final / "model.onnx", False
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        try:
            _export(model, int(key["input_size"]), tmp / "model.onnx")
        except Exception as err:  # noqa: BLE001 -- any exporter failure is one clear line
            raise DataError(f"exporting {key['network']} at {key['input_size']} px to ONNX failed: "
                            f"{type(err).__name__}: {err}; use the feature option runtime=torch") from err
        (tmp / "key.json").write_text(json.dumps({**key, "sha256": _file_sha256(tmp / "model.onnx")},
                                                 indent=1, sort_keys=True))
        if final.exists() and not (final / "key.json").is_file():
            # never one of ours (ours appear whole, by rename): a damaged copy; replace it
            log.warning("replacing %s: it has no key.json", final)
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "key.json").is_file():
                raise DataError(f"cannot move the exported graph into {final}; delete that folder") from None
            log.info("another process exported %s first; using its graph", final.name)
            return final / "model.onnx", False
        log.info("exported %s at %d px to ONNX (%s)", key["network"], key["input_size"], final)
        return final / "model.onnx", True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=4)
def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxNetwork:
    """A cached ONNX graph of a frozen network, run by ONNX Runtime on the CPU."""

    def __init__(self, model: Any, key: dict[str, Any]):
        self.key = key
        path, self.exported_now = graph_path(model, key)
        self.path = str(path)

    def _run(self, output: str, x_batch: Any) -> np.ndarray:
        import torch

        x = x_batch.detach().cpu().numpy() if isinstance(x_batch, torch.Tensor) else x_batch
        x = np.ascontiguousarray(x, dtype=np.float32)
        (out,) = _session(self.path, max(1, torch.get_num_threads())).run([output], {"x": x})
        return out

    def pooled(self, x: Any) -> np.ndarray:
        """``(B, C)`` float32 pooled features of a ``(B, 3, s, s)`` batch in ``[0, 255]``."""
        return self._run("pooled", x)

    def logits(self, x: Any) -> np.ndarray:
        """``(B, 1000)`` float32 ImageNet class scores of a ``(B, 3, s, s)`` batch in ``[0, 255]``."""
        return self._run("logits", x)

    def describe(self) -> dict[str, Any]:
        return {"onnx_opset": OPSET, "onnx_exporter": EXPORTER, **_versions()}
