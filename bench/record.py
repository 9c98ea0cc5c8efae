"""What a run is: its identity, its keys, and how it is laid out in MLflow. Decided here and nowhere else.

Identity
--------
A run is one (method, code length, seed) trained and evaluated on one prepared dataset. Two runs are
the same run exactly when these agree (`RunIdentity`):

* ``method``: the registry name;
* ``params``: the hyper-parameters as given (``get_params()``: what the user chose, ``n_bits`` and
  ``seed`` included, before the method derives anything), except those the method declares as
  ``execution_params`` (where it runs: ``device``);
* ``data``: a fingerprint of the bytes the method actually saw (`DataDigests`): every split's
  features, labels and indices, and the side inputs *this* method reads (ITQ beside LAGNH is the same
  run as ITQ alone);
* ``code``: a fingerprint of the source text of the method's module and of the project modules it
  imports, of the evaluation engine and of the feature layer (`code_fingerprint`). Any edit to those
  files, a comment included, makes new runs: simple and safe. Other files (the README, tests, the
  CLI) do not.

Not part of identity, but recorded: library versions (a new numpy does not void a run), paths (where
files sit says nothing about a result), the device and the extractor's batch size (they change
results by float rounding only; a content change of the features shows in ``data`` anyway, because
that fingerprint hashes the feature bytes themselves).

Keys (sha256 hex of the identity's canonical JSON):

==============  ============================================  ===========================================
key             identity without                              use
==============  ============================================  ===========================================
``run_key``     nothing                                       reuse of a finished run; claims
``config_key``  seed, n_bits                                  a table row: seeds are averaged, bits are
                                                              columns
``setting_key`` seed, n_bits, code                            one configuration across code versions:
                                                              reports show its latest code by default
``row_key``     seed, n_bits, the split (``data`` replaced    a table row over several split seeds
                by ``data_setting``)                          (``--split-seeds``)
``row_setting`` seed, n_bits, code, the split                 ``setting_key`` over split seeds
==============  ============================================  ===========================================

``data_setting`` (`data_setting`) says what the data are apart from the split: dataset, protocol
without its seed, the extractor's and side inputs' settings. Runs recorded before it existed have no
row keys; reports use their config and setting keys instead.

Layout
------
Every value of a run lives under one namespace, so nothing can collide or overwrite another:

* params ``method``; ``hp.<name>`` (hyper-parameters as given); ``resolved.<name>`` (values the method
  derived and used, e.g. LAGNH's batch size from its schedule); ``data.<name>`` (dataset, protocol,
  split and data fingerprints, sizes, K, overlap counts, loader options); ``features.<name>`` (the
  extractor's facts); ``side.<input>.<name>``; ``env.<name>`` (versions, git commit, platform);
  ``code.fingerprint``; ``info.<name>`` (a method's own non-numeric facts);
* metrics: the harness's measurements under the names of `bench.metrics` (no prefix; only the harness
  writes them); ``info.<name>`` (a method's own numeric facts); ``train.<name>`` (per-epoch curves,
  step = epoch).

Names are cleaned to what MLflow accepts by one rule (`clean_name`); the original names are kept in the
run's ``run_config.json``. Two names of one run that clean to the same key are a `RecordError` naming
both. A parameter value longer than MLflow's limit is stored whole as an artifact
``params/<key>.txt`` and the parameter holds its sha256.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

# ----------------------------------------------------------------------------------------------- tags
TAG_SPLIT = "hashbench.split"              # "protocol" or "validation" (`datasets.protocols.validation_split`)
TAG_KIND = "hashbench.kind"                # "run" (one method, bits, seed) or "sweep" (the parent run)
TAG_LAYOUT = "hashbench.layout"            # LAYOUT_VERSION for runs written by this module
TAG_RUN_KEY = "hashbench.run_key"
TAG_CONFIG_KEY = "hashbench.config_key"
TAG_SETTING_KEY = "hashbench.setting_key"
TAG_ROW_KEY = "hashbench.row_key"          # config_key with the data's split left out: a table row over split seeds
TAG_ROW_SETTING_KEY = "hashbench.row_setting_key"  # setting_key with the split left out
TAG_CODE = "hashbench.code"                # the code fingerprint (also the param code.fingerprint)
TAG_METHOD = "hashbench.method"
TAG_ERROR = "hashbench.error"              # the one-line message of a FAILED run
TAG_FAILED_IN = "hashbench.failed_in"      # "method", "harness" or "record": whose fault a failure is
TAG_HEARTBEAT = "hashbench.heartbeat"      # unix seconds, refreshed while a run or sweep is open
TAG_HEARTBEAT_EVERY = "hashbench.heartbeat_every"  # seconds between the beats of the sweep that owns it
LAYOUT_VERSION = "2"

# MLflow's limits (mlflow.utils.validation): key length, parameter value length.
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000

NAMESPACES = ("hp", "resolved", "data", "features", "side", "env", "code", "info", "train")


class RecordError(ValueError):
    """A run's values cannot be recorded as given (two names that clean to one key)."""


# ------------------------------------------------------------------------------------------- names
_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def clean_name(name: str) -> str:
    """``name`` as an MLflow key: every character outside ``A-Z a-z 0-9 _ . -`` becomes ``_``.

    One deterministic rule (MLflow also admits spaces, slashes and, off Windows, colons; they are
    replaced too, so a key never reads as a path and means the same on every platform). Keys longer
    than MLflow's 250 characters keep their first 237 and end in ``_`` plus 12 hex of the original's
    sha256. ``"recall@2"`` -> ``"recall_2"``; ``"loss(rec)"`` -> ``"loss_rec_"``.
    """
    key = _BAD.sub("_", str(name))
    if len(key) > MAX_KEY_LENGTH:
        key = key[:237] + "_" + hashlib.sha256(str(name).encode()).hexdigest()[:12]
    return key


def param_text(value: Any) -> str:
    """A parameter value as text: strings as they are, everything else as canonical JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(plain(value), sort_keys=True)


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and non-finite floats made JSON-safe, types kept."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def is_number(value: Any) -> bool:
    """Real numbers (not booleans): what MLflow can hold as a metric."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass
class Layout:
    """The MLflow params and metrics of one run, every value under its namespace.

    ``add_param(namespace, name, value)`` / ``add_metric(...)`` check that the cleaned key is new
    across both params and metrics of the run; a clash raises `RecordError` naming both originals.
    ``namespace`` is ``""`` for the top-level ``method`` and the harness's measurements.
    """

    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    long_values: dict[str, str] = field(default_factory=dict)     # key -> full text, stored as artifacts
    originals: dict[str, str] = field(default_factory=dict)       # key -> "namespace:original name"

    def _claim(self, namespace: str, name: str) -> str:
        key = clean_name(f"{namespace}.{name}" if namespace else name)
        origin = f"{namespace}:{name}"
        if key in self.originals and self.originals[key] != origin:
            raise RecordError(f"{self.originals[key]!r} and {origin!r} are both recorded as {key!r}; "
                              "rename one of them")
        if key in self.originals:
            raise RecordError(f"{origin!r} is recorded twice")
        self.originals[key] = origin
        return key

    def add_param(self, namespace: str, name: str, value: Any) -> str:
        key = self._claim(namespace, name)
        text = param_text(value)
        if len(text) > MAX_PARAM_LENGTH:
            self.long_values[key] = text
            text = (f"sha256:{hashlib.sha256(text.encode()).hexdigest()} "
                    f"({len(text)} characters, whole value in artifact params/{key}.txt)")
        self.params[key] = text
        return key

    def add_params(self, namespace: str, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            self.add_param(namespace, name, value)

    def add_metric(self, namespace: str, name: str, value: Any) -> str:
        key = self._claim(namespace, name)
        self.metrics[key] = float(value)
        return key

    def add_facts(self, namespace: str, values: Mapping[str, Any]) -> None:
        """A method's own facts: numbers as metrics, everything else as params (nothing dropped)."""
        for name, value in values.items():
            if is_number(value):
                self.add_metric(namespace, name, value)
            else:
                self.add_param(namespace, name, value)

    def history_keys(self, history: Mapping[str, Any]) -> dict[str, str]:
        """Keys of per-epoch curves (``train.<name>``), checked against the run's other keys."""
        return {name: self._claim("train", name) for name in history}


# ----------------------------------------------------------------------------------------- identity
def digest(obj: Any) -> str:
    """sha256 hex of ``obj``'s canonical JSON (sorted keys, numpy made plain)."""
    return hashlib.sha256(json.dumps(plain(obj), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    """Everything that determines a run's numbers (see the module docstring)."""

    method: str
    params: Mapping[str, Any]
    data: str
    code: str
    data_setting: str = ""  # not part of run_key/config_key/setting_key: see the row keys
    # which split the run was scored on: "protocol" or "validation" (tagged; the split's digest in ``data``
    # already makes the two different runs)
    split: str = "protocol"

    def _payload(self, *, seed: bool = True, bits: bool = True, code: bool = True) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items()
                  if (seed or k != "seed") and (bits or k != "n_bits")}
        payload = {"method": self.method, "params": params, "data": self.data}
        if code:
            payload["code"] = self.code
        return payload

    @property
    def run_key(self) -> str:
        return digest(self._payload())

    @property
    def config_key(self) -> str:
        return digest(self._payload(seed=False, bits=False))

    @property
    def setting_key(self) -> str:
        return digest(self._payload(seed=False, bits=False, code=False))

    def _row_payload(self, *, code: bool) -> dict[str, Any]:
        payload = self._payload(seed=False, bits=False, code=code)
        payload["data"] = {"setting": self.data_setting}
        return payload

    @property
    def row_key(self) -> str:
        """The table row of this run over split seeds (``config_key`` when no ``data_setting`` is set)."""
        return digest(self._row_payload(code=True)) if self.data_setting else self.config_key

    @property
    def row_setting_key(self) -> str:
        return digest(self._row_payload(code=False)) if self.data_setting else self.setting_key

    def tags(self) -> dict[str, str]:
        return {TAG_RUN_KEY: self.run_key, TAG_CONFIG_KEY: self.config_key, TAG_SETTING_KEY: self.setting_key,
                TAG_ROW_KEY: self.row_key, TAG_ROW_SETTING_KEY: self.row_setting_key,
                TAG_CODE: self.code, TAG_METHOD: self.method, TAG_LAYOUT: LAYOUT_VERSION, TAG_KIND: "run",
                TAG_SPLIT: self.split}


# Facts that do not make data different (where files sit, how fast they were computed) and facts that
# belong to the split (a validation split's parent split included); `data_setting` leaves them out.
_NOT_SETTING = re.compile(r"(^|\.)(batch_size|device|path|paths|root|data_root|file|source|cache\w*)$")
SPLIT_FACTS = ("split_digest", "protocol_digest", "split_seed", "fingerprint", "validation.of_digest")


def data_setting(data: Mapping[str, Any], features: Mapping[str, Any],
                 side: Mapping[str, Mapping[str, Any]]) -> str:
    """sha256 of what the data are apart from the split: ``data`` facts (``data.<name>``) without the
    split's digests, overlap counts and the protocol's seed; the extractor's facts; the facts of the side
    inputs a method reads (``{input: facts}``); paths, batch sizes and devices left out."""
    keep = lambda facts: {k: v for k, v in facts.items() if not _NOT_SETTING.search(k)}  # noqa: E731
    facts = {k: v for k, v in keep(data).items() if k not in SPLIT_FACTS and not k.startswith("overlap.")}
    spec = dict(facts.get("protocol_spec") or {})
    spec.pop("seed", None)
    facts["protocol_spec"] = spec
    return digest({"data": facts, "features": keep(features), "side": {n: keep(f) for n, f in side.items()}})


# ------------------------------------------------------------------------------------ data fingerprint
def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order)."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(memoryview(arr).cast("B") if arr.size else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class DataDigests:
    """Digests of the prepared arrays, computed once per sweep (`data_digests`).

    ``base``: every split's features, labels and indices; ``side[input][split]``: a side input's array
    for one split. `fingerprint` combines the base with the side-input splits one method reads, so a
    method's fingerprint does not depend on what other methods of the sweep needed.
    """

    base: str
    side: Mapping[str, Mapping[str, str]]

    def fingerprint(self, reads: Mapping[str, Iterable[str]] | None = None) -> str:
        """The data fingerprint of a method that reads ``reads`` = ``{side input: splits}``.

        Raises KeyError for a side input or split that was not prepared."""
        chosen = {}
        for name, splits in sorted((reads or {}).items()):
            chosen[name] = {s: self.side[name][s] for s in sorted(set(splits))}
        return digest({"base": self.base, "side": chosen})


def data_digests(features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                 indices: Mapping[str, np.ndarray], side: Mapping[str, Mapping[str, np.ndarray]]) -> DataDigests:
    """Hash the arrays a sweep's methods see: ``features[split]`` ``(n_split, d)``, ``labels[split]``,
    ``indices[split]`` (rows of the dataset), ``side[input][split]``. About 1 GB/s on one core."""
    base = {s: {"features": array_digest(features[s]), "labels": array_digest(labels[s]),
                "indices": array_digest(np.asarray(indices[s], dtype=np.int64))} for s in sorted(features)}
    side_digests = {name: {s: array_digest(a) for s, a in parts.items()} for name, parts in side.items()}
    return DataDigests(digest(base), side_digests)


# ------------------------------------------------------------------------------------ code fingerprint
PROJECT_PACKAGES = ("bench", "hashbench")
ENGINE_MODULES = ("bench.evaluation",)
FEATURE_LAYER = "hashbench.datasets.features"


def _module_file(name: str) -> Path | None:
    """The ``.py`` file of module ``name``, found on disk without importing it (nor its parents, which
    `importlib.util.find_spec` would do: finding a method's files must not import torch). Where a parent
    package is already imported, its ``__path__`` says where its modules are (``hashbench`` finds its
    subpackages beside itself in a checkout)."""
    parts = name.split(".")
    folders = None
    for i in range(len(parts) - 1, 0, -1):
        package = sys.modules.get(".".join(parts[:i]))
        if package is not None and hasattr(package, "__path__"):
            folders, rest = list(package.__path__), parts[i:]
            break
    if folders is None and parts[0] == "hashbench" and len(parts) > 1:
        # In a checkout hashbench's subpackages sit beside it, which only its imported __path__ says; the
        # import is light (its __init__ maps the folders and imports nothing).
        import hashbench

        folders, rest = list(hashbench.__path__), parts[1:]
    if folders is None:
        try:
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        if len(parts) == 1:
            path = Path(spec.origin) if spec.origin and spec.origin not in ("built-in", "frozen") else None
            return path if path is not None and path.suffix == ".py" and path.is_file() else None
        folders, rest = list(spec.submodule_search_locations or ()), parts[1:]
    for folder in folders:
        base = Path(folder).joinpath(*rest[:-1])
        for candidate in (base / f"{rest[-1]}.py", base / rest[-1] / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _module_source(name: str) -> tuple[str, tuple[str, ...]]:
    """(sha256 of the module's source, the modules its code imports, resolved to absolute names).

    The file is read every time (an edited file counts at once, even in a long-lived process); only the
    parse is cached, by the source text."""
    path = _module_file(name)
    if path is None:
        return "unavailable", ()
    source = path.read_bytes()
    sha = hashlib.sha256(source).hexdigest()
    return sha, _imports(name, path.name == "__init__.py", source)


@lru_cache(maxsize=None)
def _imports(name: str, is_package: bool, source: bytes) -> tuple[str, ...]:
    """The absolute names of the modules that ``source`` (module ``name``) imports, in order."""
    package = name if is_package else name.rpartition(".")[0]
    imported: list[str] = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            imported.append(module)
            # ``from hashbench.methods import lagnh_model`` imports a module by its attribute name
            imported += [f"{module}.{alias.name}" for alias in node.names if alias.name != "*"]
    return tuple(dict.fromkeys(imported))


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def module_closure(roots: Iterable[str], packages: Iterable[str] = PROJECT_PACKAGES) -> dict[str, str]:
    """``{module: sha256 of its source}`` for ``roots``, their parent packages and every module of
    ``packages`` they import, transitively (imports inside functions included: read from the source
    with `ast`, nothing is imported). Modules without a ``.py`` source map to ``"unavailable"``."""
    packages = tuple(packages)
    inside = lambda mod: mod.split(".")[0] in packages  # noqa: E731
    out: dict[str, str] = {}
    todo = [m for r in roots for m in _with_parents(r)]
    while todo:
        name = todo.pop()
        if name in out or not inside(name) or _module_file(name) is None and name not in roots:
            continue
        sha, imports = _module_source(name)
        out[name] = sha
        todo += [m for imp in imports if inside(imp) for m in _with_parents(imp) if _module_file(m) is not None]
    return dict(sorted(out.items()))


def feature_layer_modules() -> list[str]:
    """Every module of the feature layer package, by file (extractors are imported by name at run time,
    so an import walk alone would miss them)."""
    path = _module_file(FEATURE_LAYER)
    if path is None:
        return [FEATURE_LAYER]
    return [FEATURE_LAYER] + [f"{FEATURE_LAYER}.{p.stem}" for p in sorted(path.parent.glob("*.py"))
                              if p.stem != "__init__"]


def code_fingerprint(method_module: str) -> tuple[str, dict[str, str]]:
    """(fingerprint, ``{module: sha256}``) of the code that produces a run's numbers: the method's module
    and what it imports of ``hashbench`` (or of its own top-level package, for a plug-in), the engine,
    and the feature layer with what it imports.

    The harness (``bench``) is not followed beyond the engine: its modules decide how runs are recorded,
    reported and plotted, not the numbers (data enter the identity by content, `DataDigests`). Without this
    rule the ``hashbench`` package, whose Python API imports ``bench.runner`` inside its functions, pulled
    every harness module in, and an edit to the report's layout made every finished run stale."""
    packages = ("hashbench", method_module.split(".")[0])
    modules = module_closure([method_module, *feature_layer_modules()], packages)
    modules.update(module_closure(ENGINE_MODULES, ("bench",)))  # the engine imports nothing of the project
    return digest(dict(sorted(modules.items()))), dict(sorted(modules.items()))
