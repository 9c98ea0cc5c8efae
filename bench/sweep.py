"""A sweep declared as data, and its validation before anything runs.

`SweepSpec` says which methods, on which data and protocol, at which bits and seeds. `validate` checks
all of it against the methods' declared parameter constraints, the dataset's loader, protocol, feature
extractor and side inputs, and the table metric, and returns the `Plan` the runner executes: every
mistake a user can make in a command is found here, before data is loaded or anything is recorded.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import metrics
from bench.errors import UsageError

MAX_BITS = 1024


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: every (method, bits, seed) of ``methods`` x ``bits`` x ``seeds`` on one dataset/protocol.

    ``overrides`` holds hyper-parameters per method (``{"lagnh": {"epochs": 50}}``), ``data_options``
    the loader's options, ``feature_options`` the extractor's settings, ``side_options`` settings per
    side input (``{"tags": {"k": 5}}``). ``table_metric`` is the metric of the printed table (None: mAP@K
    of the protocol). ``allow_query_overlap`` evaluates queries that are also database or training
    items (refused by default). ``force`` redoes runs that already finished. ``validation`` fits and
    evaluates on the protocol's validation split instead of its queries and database
    (`datasets.protocols.validation_split`; experiment ``<dataset>/<protocol>-validation``).

    Raises `UsageError` for an empty method list, bits outside 1..1024, negative seeds, or overrides
    of methods that are not in the sweep.
    """

    methods: tuple[str, ...]
    dataset: str = "fashion-mnist"
    bits: tuple[int, ...] = (16, 32, 64, 128)
    seeds: tuple[int, ...] = (0,)
    protocol: str | None = None
    features: str | None = None
    data_root: str | None = None
    allow_pickle: bool = False
    data_options: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    side_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    feature_options: dict[str, Any] = field(default_factory=dict)
    table_metric: str | None = None
    allow_query_overlap: bool = False
    # per-method parameter grids, every combination a configuration of its own: {"itq": {"n_iter": [10, 50]}}
    grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    # seeds of the protocol's split (None: the protocol's own seed); each draws another split
    split_seeds: tuple[int, ...] | None = None
    # keep each run's fitted hasher (MLflow pyfunc model) and database codes (faiss index); not identity
    save_models: bool = True
    # fit and evaluate on the protocol's validation split (carved from its training split) instead
    validation: bool = False

    def __post_init__(self):
        if not self.methods:
            raise UsageError("no method given: pass --methods, e.g. --methods itq,sh (see `python -m bench list`)")
        if not self.bits:
            raise UsageError("no code length given: pass --bits, e.g. --bits 16,32,64")
        bad = [b for b in self.bits if not 1 <= b <= MAX_BITS]
        if bad:
            raise UsageError(f"bits must be in 1..{MAX_BITS}, got {bad}")
        if not self.seeds:
            raise UsageError("no seed given: pass --seeds, e.g. --seeds 0,1,2")
        negative = [s for s in self.seeds if s < 0]
        if negative:
            raise UsageError(f"seeds must be integers >= 0, got {negative}")
        if self.split_seeds is not None:
            if not self.split_seeds or any(s < 0 for s in self.split_seeds):
                raise UsageError(f"split seeds must be integers >= 0, got {list(self.split_seeds)}")
        for flag, values in (("--methods", self.methods), ("--bits", self.bits), ("--seeds", self.seeds),
                             ("--split-seeds", self.split_seeds or ())):
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:  # a repeated seed would be one run counted twice in every mean
                raise UsageError(f"{flag} names {', '.join(map(str, duplicates))} more than once")
        unknown = sorted(set(self.overrides) - set(self.methods))
        if unknown:
            raise UsageError(f"--param names method(s) {unknown} that are not in --methods {list(self.methods)}")
        unknown = sorted(set(self.grid) - set(self.methods))
        if unknown:
            raise UsageError(f"the grid names method(s) {unknown} that are not in the methods {list(self.methods)}")
        for method, axes in self.grid.items():
            for name, values in axes.items():
                if not isinstance(values, (list, tuple)) or not values:
                    raise UsageError(f"grid {method}.{name} must be a non-empty list of values, got {values!r}")
                if name in self.overrides.get(method, {}):
                    raise UsageError(f"{method}.{name} is given both as a parameter and as a grid axis")

    def configurations(self, method: str) -> list[tuple[str, dict[str, Any]]]:
        """(label, hyper-parameters) of every configuration of ``method``: its fixed parameters merged with
        each point of its grid; the label is the method's name, with the grid point when it has a grid
        (``itq[n_iter=10]``)."""
        fixed = dict(self.overrides.get(method, {}))
        axes = self.grid.get(method, {})
        if not axes:
            return [(method, fixed)]
        names = list(axes)
        out = []
        for point in itertools.product(*(axes[n] for n in names)):
            chosen = dict(zip(names, point))
            label = f"{method}[{', '.join(f'{k}={json.dumps(v)}' for k, v in chosen.items())}]"
            out.append((label, {**fixed, **chosen}))
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        data = self.as_dict()
        if data["split_seeds"] is None:  # sweeps without split seeds keep the digest they had before
            del data["split_seeds"]
        if data["save_models"]:  # the default leaves the digest of sweeps from before the field unchanged
            del data["save_models"]
        if not data["validation"]:  # as save_models
            del data["validation"]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class PlannedRun:
    """One (method, bits, seed) of a sweep with its hyper-parameters as given (``get_params()``)."""

    method: str
    cls: type
    n_bits: int
    seed: int
    params: dict[str, Any]
    label: str = ""  # the configuration's name in tables: the method, or the method and its grid point

    @property
    def identity_params(self) -> dict[str, Any]:
        """The hyper-parameters that determine the result: all but the method's ``execution_params``."""
        return {k: v for k, v in self.params.items() if k not in self.cls.execution_params}


@dataclass(frozen=True)
class Plan:
    """A validated sweep: the runs in order, the protocol, the side inputs the methods need (and those
    only their ``fit`` needs) and the table metric."""

    spec: SweepSpec
    runs: tuple[PlannedRun, ...]
    protocol: Any
    side_inputs: tuple[str, ...]
    fit_only_side_inputs: tuple[str, ...]
    table_metric: str | None  # None for a validation sweep until its data are loaded

    @property
    def classes(self) -> dict[str, type]:
        return {r.method: r.cls for r in self.runs}


def side_inputs_needed(classes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every side input the methods need, those only their ``fit`` needs), each once, in order."""
    side = tuple(dict.fromkeys(s for c in classes for s in c.side_inputs))
    fit_only = tuple(dict.fromkeys(s for c in classes for s in c.fit_only_side_inputs
                                   if all(s in k.fit_only_side_inputs for k in classes if s in k.side_inputs)))
    return side, fit_only


def validate(spec: SweepSpec) -> Plan:
    """Check everything a sweep needs that can be checked without data, in the order a user reads a
    command: methods and their parameter values (each (method, bits, seed) against the constraints
    the method declares), the dataset's loader options, the protocol, the extractor and side-input
    settings, the table metric.

    Raises `UsageError`, `methods.InputError`, `methods.UnknownMethodError` or `datasets.DataError`
    with one line; returns the `Plan`.
    """
    from hashbench.datasets import get_protocol
    from hashbench.datasets.features import check_settings
    from hashbench.datasets.registry import check_loader_options
    from hashbench.methods import InputError, get_method

    classes = {name: get_method(name) for name in spec.methods}
    runs = []
    for name, cls in classes.items():
        for label, given in spec.configurations(name):
            for key in ("n_bits", "seed"):
                if key in given:
                    raise UsageError(f"--param {name}.{key} is set by --bits/--seeds, not by --param")
            for bits in spec.bits:
                for seed in spec.seeds:
                    try:
                        hasher = cls(n_bits=bits, seed=seed, **given)
                    except TypeError as exc:
                        raise UsageError(f"bad --param for {name}: {exc}") from None
                    hasher.validate_params()
                    runs.append(PlannedRun(name, cls, bits, seed, hasher.get_params(), label))
            if "device" in cls.execution_params:
                device = cls(n_bits=spec.bits[0], seed=spec.seeds[0], **given).get_params()["device"]
                if device not in ("auto", "cpu"):  # only then is torch imported to ask what the machine has
                    from hashbench.methods._torch_device import check_device

                    try:
                        check_device(device)
                    except InputError as exc:
                        raise InputError(f"{name}: {exc}") from None
    side, fit_only = side_inputs_needed(classes.values())
    options = dict(spec.data_options)
    if spec.allow_pickle:
        options["allow_pickle"] = True
    check_loader_options(spec.dataset, spec.data_root, options)
    protocol = get_protocol(spec.dataset, spec.protocol)
    unused = sorted(set(spec.side_options) - set(side))
    if unused:
        raise UsageError(f"--side-option names {unused}, which no chosen method uses "
                         f"(side inputs used: {list(side) or 'none'})")
    check_settings(spec.dataset, spec.features, dict(spec.feature_options),
                   {name: dict(spec.side_options.get(name, {})) for name in side})
    if spec.validation:  # K follows the validation database's size, known once the data are loaded
        return Plan(spec, tuple(runs), protocol, side, fit_only, None)
    return Plan(spec, tuple(runs), protocol, side, fit_only, check_table_metric(spec.table_metric, protocol))


def check_table_metric(name: str | None, protocol: Any) -> str:
    """The table's metric: ``name``, or mAP@K of ``protocol`` when None.

    Raises:
        UsageError: ``name`` is not a metric a run of ``protocol`` records.
    """
    table_metric = name or metrics.default_metric(protocol.topk)
    known = metrics.run_metrics(protocol.topk)
    if table_metric not in known:
        raise UsageError(f"unknown metric {table_metric!r} for --metric; a run of protocol "
                         f"{protocol.name!r} records: {', '.join(known)}")
    return table_metric


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    return values


_PYTHON_WORDS = {"true": True, "false": False, "none": None}


def _json_or_text(raw: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, null, lists), Python's spellings
    True/False/None (any case) as what they say, else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return _PYTHON_WORDS.get(raw.strip().lower(), raw)


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


# --------------------------------------------------------------------------------------- sweep files
# Keys of a sweep file (``python -m bench run --config sweep.yaml``): the same as the flags of ``run``.
SWEEP_KEYS = ("methods", "dataset", "bits", "seeds", "protocol", "features", "data_root", "allow_pickle",
              "data_options", "feature_options", "side_options", "params", "grid", "force", "metric",
              "allow_query_overlap", "split_seeds", "save_models", "validation")
# Keys that say how to run a sweep, not what it is: accepted in a file, never part of the logged sweep.
RUN_KEYS = ("tracking_uri", "stale_after", "format", "threads", "executor", "ray_address")
_DEFAULTS = {"dataset": "fashion-mnist", "bits": (16, 32, 64, 128), "seeds": (0,), "save_models": True,
             "validation": False}


def read_sweep_file(path: str) -> dict[str, Any]:
    """The keys of a YAML sweep file, checked: a mapping whose keys are `SWEEP_KEYS` or `RUN_KEYS`.

    Raises `UsageError` (one line) for a missing or unreadable file, YAML that is not a mapping, or an
    unknown key (named, with the keys that exist)."""
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read the sweep file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"the sweep file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"the sweep file {path} must hold a mapping of keys (methods, dataset, bits ...), "
                         f"not a {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in SWEEP_KEYS + RUN_KEYS)
    if unknown:
        raise UsageError(f"unknown key(s) {', '.join(unknown)} in the sweep file {path}; "
                         f"known: {', '.join(SWEEP_KEYS + RUN_KEYS)}")
    return data


def _as_ints(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, str):
        return parse_int_list(value, what)
    values = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UsageError(f"{what} must be integers, got {value!r}")
    return tuple(values)


def _as_names(value: Any) -> tuple[str, ...]:
    values = value.split(",") if isinstance(value, str) else list(value or [])
    return tuple(str(v).strip() for v in values if str(v).strip())


def _mapping(value: Any, what: str, depth: int = 1) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or (depth == 2 and not all(isinstance(v, dict) for v in value.values())):
        shape = "a mapping" if depth == 1 else "a mapping of mappings (name: {setting: value})"
        raise UsageError(f"{what} must be {shape}, got {value!r}")
    return {str(k): (dict(v) if depth == 2 else v) for k, v in value.items()}


def build_spec(file: dict[str, Any] | None = None, flags: dict[str, Any] | None = None) -> SweepSpec:
    """A `SweepSpec` from a sweep file's keys and the command's flags (same names, None = not given): a
    flag overrides the file's key; for the mappings (``params``, ``data_options``, ``feature_options``,
    ``side_options``) a flag overrides the file entry by entry.

    Raises `UsageError` for values of the wrong shape (and as `SweepSpec`)."""
    file, flags = dict(file or {}), {k: v for k, v in (flags or {}).items() if v is not None}

    def pick(key: str) -> Any:
        return flags.get(key, file.get(key, _DEFAULTS.get(key)))

    def merged(key: str, depth: int) -> dict[str, Any]:
        out = _mapping(file.get(key), f"{key} in the sweep file", depth)
        for name, value in _mapping(flags.get(key), key, depth).items():
            out[name] = {**out.get(name, {}), **value} if depth == 2 else value
        return out

    if pick("methods") is None:
        raise UsageError("no method given: pass --methods, e.g. --methods itq,sh, or methods: in a sweep file")
    return SweepSpec(
        methods=_as_names(pick("methods")), dataset=str(pick("dataset")), bits=_as_ints(pick("bits"), "bits"),
        seeds=_as_ints(pick("seeds"), "seeds"), protocol=pick("protocol"), features=pick("features"),
        data_root=None if pick("data_root") is None else str(pick("data_root")),
        allow_pickle=bool(pick("allow_pickle")), data_options=merged("data_options", 1),
        force=bool(pick("force")), overrides=merged("params", 2), side_options=merged("side_options", 2),
        feature_options=merged("feature_options", 1), table_metric=pick("metric"),
        allow_query_overlap=bool(pick("allow_query_overlap")), grid=_mapping(file.get("grid"), "grid", 2),
        split_seeds=None if pick("split_seeds") is None else _as_ints(pick("split_seeds"), "split_seeds"),
        save_models=_as_bool(pick("save_models"), "save_models"),
        validation=_as_bool(pick("validation"), "validation"),
    )


def _as_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be true or false, got {value!r}")
    return bool(value)


def sweep_file_of(spec: SweepSpec) -> dict[str, Any]:
    """The sweep file that replays ``spec`` exactly (what each sweep logs as ``sweep.yaml``); keys whose
    value is the default are left out. ``force`` is left out too: a replay reuses what exists."""
    out = {"methods": list(spec.methods), "dataset": spec.dataset, "bits": list(spec.bits), "seeds": list(spec.seeds),
           "protocol": spec.protocol, "features": spec.features, "data_root": spec.data_root,
           "allow_pickle": spec.allow_pickle or None, "data_options": spec.data_options or None,
           "feature_options": spec.feature_options or None, "side_options": spec.side_options or None,
           "params": spec.overrides or None, "grid": spec.grid or None, "metric": spec.table_metric,
           "allow_query_overlap": spec.allow_query_overlap or None,
           "split_seeds": None if spec.split_seeds is None else list(spec.split_seeds),
           "save_models": None if spec.save_models else False, "validation": spec.validation or None}
    return {k: v for k, v in out.items() if v is not None}
