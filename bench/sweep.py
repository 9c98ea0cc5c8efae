"""A sweep declared as data: which methods, on which data and protocol, at which bits and seeds."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.errors import UsageError

MAX_BITS = 1024


@dataclass(frozen=True)
class SweepSpec:
    methods: tuple[str, ...]
    dataset: str = "fashion-mnist"
    bits: tuple[int, ...] = (16, 32, 64, 128)
    seeds: tuple[int, ...] = (0,)
    protocol: str | None = None
    features: str | None = None
    data_root: str | None = None
    allow_pickle: bool = False
    # loader options by name, e.g. {"image_root": "/data/nus/images"} for list-file datasets
    data_options: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    # per-method hyper-parameter overrides: {"lagnh": {"epochs": 50}}
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # settings of side inputs by input name: {"tags": {"tag_model": "efficientnet-lite2", "k": 10}}
    side_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # settings of the feature extractor: {"input_size": 128}
    feature_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.methods:
            raise UsageError("no method given: pass --methods, e.g. --methods itq,sh (see `python -m bench list`)")
        bad = [b for b in self.bits if not 1 <= b <= MAX_BITS]
        if bad:
            raise UsageError(f"bits must be in 1..{MAX_BITS}, got {bad}")
        if not self.bits:
            raise UsageError("no code length given: pass --bits, e.g. --bits 16,32,64")
        if not self.seeds:
            raise UsageError("no seed given: pass --seeds, e.g. --seeds 0,1,2")
        unknown = sorted(set(self.overrides) - set(self.methods))
        if unknown:
            raise UsageError(f"--param names method(s) {unknown} that are not in --methods {list(self.methods)}")

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True, default=str).encode()).hexdigest()


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    return values


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_data_options(items: list[str] | None, flag: str = "--data-option") -> dict[str, Any]:
    """``["image_root=/data/img", "check_images=false"]`` -> ``{"image_root": "/data/img", "check_images": False}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects NAME=VALUE, got {item!r}")
        out[key.strip()] = _json_or_text(raw)
    return out


def parse_side_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["tags.tag_model=efficientnet-lite2", "tags.k=5"]`` -> ``{"tags": {"tag_model": ..., "k": 5}}``."""
    return _dotted(items, "--side-option", "INPUT.NAME=VALUE")


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["lagnh.epochs=50", "itq.n_iter=10"]`` -> ``{"lagnh": {"epochs": 50}, "itq": {"n_iter": 10}}``.

    Values are read as JSON when they parse (numbers, true/false, null, lists), else kept as strings.
    """
    return _dotted(items, "--param", "METHOD.NAME=VALUE")


def _dotted(items: list[str] | None, flag: str, form: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        owner, dot, name = key.partition(".")
        if not sep or not dot or not owner.strip() or not name.strip():
            raise UsageError(f"{flag} expects {form}, got {item!r}")
        out.setdefault(owner.strip(), {})[name.strip()] = _json_or_text(raw)
    return out
