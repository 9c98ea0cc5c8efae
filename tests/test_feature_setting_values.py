"""Values of feature-layer settings: refused up front by `check_settings`, with one line naming the
extractor or side input, the setting, the value and what is allowed; refused the same way where they
are used; a device this machine lacks refused before anything runs."""
from __future__ import annotations

import inspect
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hashbench.datasets import DataError, Dataset, compute_features
from hashbench.datasets.features import check_settings, compute_side
from hashbench.datasets.features import constraints as C
from hashbench.datasets.features.defaults import DATASET_SETTINGS
from hashbench.datasets.features.registry import EXTRACTORS, extractor_function
from hashbench.datasets.features.side import TAG_CACHE_K, side_function, side_names

REPO = Path(__file__).resolve().parents[1]
EFFNET = "the 'effnet-lite0' extractor"
TAGS, VIEWS, AUG = "side input 'tags'", "side input 'views'", "side input 'aug_views'"
INPUT_SIZE = "an int in the range [32, 1024]"
BATCH = "None or an int in the range [1, inf)"
DEVICE = "None or one of 'auto', 'cpu', 'cuda', 'cuda:<k>', 'mps'"
ANGLES = "a non-empty sequence of finite real numbers"


def _check(where: str, name: str, value):
    """`check_settings` on cifar10 with one setting of the extractor (``where`` "features") or of a side input."""
    if where == "features":
        check_settings("cifar10", None, {name: value}, {})
    else:
        check_settings("cifar10", None, {}, {where: {name: value}})


REFUSED = [
    # (where, setting, value, owner, shown value, allowed)
    ("features", "input_size", 100000, EFFNET, "100000", INPUT_SIZE),  # once a 40 GB torch allocation
    ("features", "input_size", 1025, EFFNET, "1025", INPUT_SIZE),
    ("features", "input_size", 31, EFFNET, "31", INPUT_SIZE),
    ("features", "input_size", 0, EFFNET, "0", INPUT_SIZE),
    ("features", "input_size", "abc", EFFNET, "'abc'", INPUT_SIZE),
    ("features", "input_size", True, EFFNET, "True", INPUT_SIZE),  # a boolean is not the integer 1
    ("features", "input_size", 128.0, EFFNET, "128.0", INPUT_SIZE),
    ("features", "input_size", None, EFFNET, "None", INPUT_SIZE),
    ("features", "batch_size", 0, EFFNET, "0", BATCH),  # was silently "auto"
    ("features", "batch_size", -4, EFFNET, "-4", BATCH),
    ("features", "batch_size", True, EFFNET, "True", BATCH),
    ("features", "batch_size", 8.0, EFFNET, "8.0", BATCH),
    ("features", "batch_size", "8", EFFNET, "'8'", BATCH),
    ("features", "device", "banana", EFFNET, "'banana'", DEVICE),
    ("features", "device", "CPU", EFFNET, "'CPU'", DEVICE),
    ("features", "device", "cuda:x", EFFNET, "'cuda:x'", DEVICE),
    ("features", "device", 0, EFFNET, "0", DEVICE),
    ("features", "cache", "False", EFFNET, "'False'", "a bool"),  # the string a CLI may pass
    ("features", "cache", 0, EFFNET, "0", "a bool"),
    ("features", "cache", None, EFFNET, "None", "a bool"),
    ("tags", "k", 0, TAGS, "0", f"an int in the range [1, {TAG_CACHE_K}]"),  # was refused only after extraction
    ("tags", "k", TAG_CACHE_K + 1, TAGS, str(TAG_CACHE_K + 1), f"an int in the range [1, {TAG_CACHE_K}]"),
    ("tags", "k", True, TAGS, "True", f"an int in the range [1, {TAG_CACHE_K}]"),
    ("tags", "k", 2.5, TAGS, "2.5", f"an int in the range [1, {TAG_CACHE_K}]"),
    ("tags", "k", "3", TAGS, "'3'", f"an int in the range [1, {TAG_CACHE_K}]"),
    ("tags", "tag_model", "vgg16", TAGS, "'vgg16'", "a str among {'efficientnet-lite0', 'efficientnet-lite2', 'same'}"),
    ("tags", "provider", "coco", TAGS, "'coco'", "None or a str among {'dataset', 'imagenet-topk'}"),
    ("tags", "input_size", 2048, TAGS, "2048", f"None or {INPUT_SIZE}"),
    ("tags", "features_input_size", 16, TAGS, "16", f"None or {INPUT_SIZE}"),
    ("tags", "batch_size", 0, TAGS, "0", BATCH),
    ("tags", "device", "gpu", TAGS, "'gpu'", DEVICE),
    ("tags", "cache", "yes", TAGS, "'yes'", "a bool"),
    ("views", "angles", [], VIEWS, "[]", ANGLES),
    ("views", "angles", (), VIEWS, "()", ANGLES),
    ("views", "angles", 5, VIEWS, "5", ANGLES),
    ("views", "angles", "5,10", VIEWS, "'5,10'", ANGLES),
    ("views", "angles", [5, math.nan], VIEWS, "[5, nan]", ANGLES),
    ("views", "angles", [math.inf], VIEWS, "[inf]", ANGLES),
    ("views", "angles", [True, 5], VIEWS, "[True, 5]", ANGLES),
    ("views", "angles", [[5, 10]], VIEWS, "[[5, 10]]", ANGLES),
    ("views", "extractor", "pixels", VIEWS, "'pixels'", "a str among {'effnet-lite0'}"),
    ("views", "input_size", 8, VIEWS, "8", INPUT_SIZE),
    ("views", "batch_size", 0, VIEWS, "0", BATCH),
    ("views", "device", "tpu", VIEWS, "'tpu'", DEVICE),
    ("views", "cache", 1, VIEWS, "1", "a bool"),
    ("views", "rotation", "crop", VIEWS, "'crop'", "a str among {'black-corners', 'inscribed-crop'}"),
    ("views", "rotation", None, VIEWS, "None", "a str among {'black-corners', 'inscribed-crop'}"),
    ("aug_views", "n_views", 1, AUG, "1", "an int in the range [2, inf)"),  # a method draws two different views
    ("aug_views", "n_views", 0, AUG, "0", "an int in the range [2, inf)"),
    ("aug_views", "n_views", 8.0, AUG, "8.0", "an int in the range [2, inf)"),
    ("aug_views", "n_views", True, AUG, "True", "an int in the range [2, inf)"),
    ("aug_views", "seed", -1, AUG, "-1", "an int in the range [0, 4294967295]"),
    ("aug_views", "seed", 2 ** 32, AUG, "4294967296", "an int in the range [0, 4294967295]"),
    ("aug_views", "seed", "0", AUG, "'0'", "an int in the range [0, 4294967295]"),
    ("aug_views", "extractor", "pixels", AUG, "'pixels'", "a str among {'effnet-lite0'}"),
    ("aug_views", "input_size", 8, AUG, "8", INPUT_SIZE),
    ("aug_views", "batch_size", 0, AUG, "0", BATCH),
    ("aug_views", "cache", 1, AUG, "1", "a bool"),
]


@pytest.mark.parametrize("where, name, value, owner, shown, allowed", REFUSED)
def test_check_settings_refuses_bad_values_with_one_line(where, name, value, owner, shown, allowed):
    with pytest.raises(DataError) as err:
        _check(where, name, value)
    assert str(err.value) == f"{name}={shown} is not a valid setting of {owner}: {name} must be {allowed}"


ACCEPTED = [
    ("features", "input_size", 32), ("features", "input_size", 1024), ("features", "input_size", np.int64(160)),
    ("features", "batch_size", None), ("features", "batch_size", 1), ("features", "batch_size", np.int32(4096)),
    ("features", "device", None), ("features", "device", "auto"), ("features", "device", "cpu"),
    ("features", "cache", True), ("features", "cache", False), ("features", "cache", np.bool_(False)),
    ("tags", "k", 1), ("tags", "k", TAG_CACHE_K), ("tags", "k", np.int16(3)),
    ("tags", "tag_model", "same"), ("tags", "tag_model", "efficientnet-lite0"),
    ("tags", "provider", None), ("tags", "provider", "dataset"), ("tags", "provider", "imagenet-topk"),
    ("tags", "input_size", None), ("tags", "input_size", 96), ("tags", "features_input_size", None),
    ("views", "angles", (0,)), ("views", "angles", [-10.5, 3]), ("views", "angles", np.array([1.0, -1.0])),
    ("views", "angles", (np.float32(2), np.int64(-2))), ("views", "extractor", "effnet-lite0"),
    ("views", "rotation", "black-corners"), ("views", "rotation", "inscribed-crop"),
    ("aug_views", "n_views", 2), ("aug_views", "n_views", np.int64(8)), ("aug_views", "seed", 0),
    ("aug_views", "seed", 2 ** 32 - 1), ("aug_views", "extractor", "effnet-lite0"),
]


@pytest.mark.parametrize("where, name, value", ACCEPTED)
def test_check_settings_accepts_allowed_values(where, name, value):
    _check(where, name, value)


def test_a_long_value_is_shown_cut_on_one_line():
    with pytest.raises(DataError) as err:
        check_settings("cifar10", None, {}, {"views": {"angles": {"a": "x" * 100, "b": "line\nbreak"}}})
    message = str(err.value)
    assert "\n" not in message and len(message) < 200
    assert message.startswith("angles={'a': 'xxx") and "... is not a valid setting of side input 'views'" in message


def test_values_are_checked_after_names_and_only_for_given_settings():
    with pytest.raises(DataError, match=r"unknown setting\(s\) \['kk'\]"):
        check_settings("cifar10", None, {}, {"tags": {"kk": 0, "k": 0}})
    check_settings("features", None, {}, {"tags": {"provider": "dataset", "k": 3}})


def test_bad_values_are_refused_without_importing_torch_or_loading_data():
    code = textwrap.dedent("""
        import sys
        from hashbench.datasets.features import check_settings
        for features, side in (({"input_size": 100000}, {}), ({"batch_size": 0}, {}), ({"device": "banana"}, {}),
                               ({}, {"tags": {"k": 0}}), ({}, {"views": {"angles": []}})):
            try:
                check_settings("cifar10", None, features, side)
            except Exception as err:
                print(type(err).__name__)
        print(sorted(m for m in sys.modules if m in ("torch", "sklearn", "scipy", "PIL")
                     or m.startswith(("hashbench.datasets.cifar10", "hashbench.datasets.listfile"))))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DataError"] * 5 + ["[]"]


# ---------------------------------------------------------------- devices this machine lacks


@pytest.fixture
def torch_without_gpus(monkeypatch):
    """torch as on a CPU-only machine (whatever this machine has)."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    return torch


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3", "mps"])
def test_a_device_this_machine_lacks_is_refused_up_front(torch_without_gpus, device):
    with pytest.raises(DataError) as err:
        check_settings("cifar10", None, {"device": device}, {})
    message = str(err.value)
    assert message.startswith(f"device={device!r} of {EFFNET} is not available on this machine (")
    assert message.endswith("use device='cpu' (or 'auto': a GPU when there is one)") and "\n" not in message
    with pytest.raises(DataError, match=f"^device={device!r} of {TAGS} is not available on this machine"):
        check_settings("cifar10", None, {}, {"tags": {"device": device}})
    check_settings("cifar10", None, {"device": "auto"}, {"views": {"device": "cpu"}})  # always there


def test_cuda_beyond_the_visible_devices_is_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_settings("cifar10", None, {"device": "cuda:1"}, {"tags": {"device": "cuda"}})
    with pytest.raises(DataError, match=r"^device='cuda:2' of the 'effnet-lite0' extractor is not available on "
                                        r"this machine: torch sees 2 CUDA device\(s\), numbered from 0; use"):
        check_settings("cifar10", None, {"device": "cuda:2"}, {})


def test_a_cuda_device_this_machine_has_passes():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    check_settings("cifar10", None, {"device": "cuda"}, {"tags": {"device": "cuda:0"}})


def test_the_use_sites_refuse_an_absent_device_the_same_way(torch_without_gpus):
    from hashbench.datasets.features.backbone import resolve_device

    data = Dataset(name="tiny", labels=np.zeros(2, int), images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DataError) as early:
        check_settings("cifar10", None, {"device": "cuda"}, {})
    with pytest.raises(DataError) as late:
        compute_features(data, "effnet-lite0", device="cuda", cache=False)
    assert str(late.value) == str(early.value)
    with pytest.raises(DataError, match="^device='mps' of the feature network is not available"):
        resolve_device("mps")
    with pytest.raises(DataError, match="^device='banana' is not a valid setting of the feature network"):
        resolve_device("banana")
    assert resolve_device("cpu") == torch_without_gpus.device("cpu")
    assert resolve_device(None) == resolve_device("auto") == torch_without_gpus.device("cpu")


# ---------------------------------------------------------------- the same refusal where values are used


@pytest.mark.parametrize("where, name, value, owner, shown, allowed", REFUSED)
def test_compute_refuses_what_check_settings_refuses_with_the_same_message(where, name, value, owner, shown,
                                                                             allowed):
    """Before any network is loaded: these run without torch and allocate nothing."""
    data = Dataset(name="tiny", labels=np.zeros(2, int), images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DataError) as early:
        _check(where, name, value)
    with pytest.raises(DataError) as late:
        if where == "features":
            compute_features(data, "effnet-lite0", **{name: value})
        else:
            compute_side(data, where, **{name: value})
    assert str(late.value) == str(early.value)


def test_dataset_defaults_pass_the_declared_constraints():
    functions = {**{name: extractor_function(name) for name in EXTRACTORS},
                 **{name: side_function(name) for name in side_names()}}
    assert DATASET_SETTINGS  # the table is not empty: the loop below checks something
    for dataset, per_name in DATASET_SETTINGS.items():
        for name, settings in per_name.items():
            fn = functions[name]
            assert set(settings) <= set(fn.setting_constraints), (dataset, name)
            C.check_values(fn.setting_constraints, settings, fn.setting_owner)
            check_settings(dataset, name if name in EXTRACTORS else None,
                           settings if name in EXTRACTORS else {},
                           {} if name in EXTRACTORS else {name: settings})


def test_every_extractor_and_side_input_declares_exactly_its_settings_and_its_defaults_pass():
    functions = [extractor_function(n) for n in EXTRACTORS] + [side_function(n) for n in side_names()]
    for fn in functions:
        params = inspect.signature(fn).parameters
        settings = {p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and p != "indices"}
        assert set(fn.setting_constraints) == settings, fn.__qualname__
        assert fn.setting_owner in (f"the {n!r} extractor" for n in EXTRACTORS) or \
            fn.setting_owner in (f"side input {n!r}" for n in side_names())
        defaults = {p: params[p].default for p in settings}
        C.check_values(fn.setting_constraints, defaults, fn.setting_owner)


def test_declare_settings_refuses_a_table_that_misses_or_invents_settings():
    def fn(data, *, indices=None, size: int = 3, flag: bool = True):
        return size

    with pytest.raises(TypeError, match=r"declared for \['size'\], but its settings are \['flag', 'size'\]"):
        C.declare_settings("f", {"size": [C.Interval(C.Integral, 1, 4)]})(fn)
    with pytest.raises(TypeError, match=r"declared for \['flag', 'size', 'zoom'\]"):
        C.declare_settings("f", {"size": [None], "flag": ["boolean"], "zoom": [None]})(fn)
    with pytest.raises(TypeError, match="non-empty list"):
        C.declare_settings("f", {"size": [], "flag": ["boolean"]})(fn)
    checked = C.declare_settings("thing f", {"size": [C.Interval(C.Integral, 1, 4)], "flag": ["boolean"]})(fn)
    assert checked(None, size=4) == 4 and inspect.signature(checked) == inspect.signature(fn)
    with pytest.raises(DataError, match=r"^size=5 is not a valid setting of thing f: size must be an int in the "
                                        r"range \[1, 4\]$"):
        checked(None, size=5)
    with pytest.raises(DataError, match="^flag='no' is not"):
        checked(None, flag="no")
    with pytest.raises(TypeError):  # a wrong call stays a programming error
        checked(None, sise=3)


# ---------------------------------------------------------------- the constraint vocabulary


def test_interval_refuses_booleans_and_nan_and_reads_as_sklearn_words():
    ints = C.Interval(C.Integral, 1, 20)
    assert [ints.is_satisfied_by(v) for v in (1, 20, np.int8(7), 0, 21, True, np.bool_(True), 3.0, "3", None)] == \
        [True, True, True, False, False, False, False, False, False, False]
    reals = C.Interval(C.Real, 0, None)
    assert [reals.is_satisfied_by(v) for v in (0, 0.5, math.inf, np.float32(2), -1e-9, math.nan, False)] == \
        [True, True, True, True, False, False, False]
    assert str(ints) == "an int in the range [1, 20]" and str(C.Interval(C.Integral, 1, None)) == \
        "an int in the range [1, inf)"
    with pytest.raises(ValueError):
        C.Interval(C.Integral, 3, 2)


def test_the_constraints_decide_as_sklearn_would_but_for_booleans():
    """The tables are in scikit-learn's ``_parameter_constraints`` format; where sklearn has the same
    constraint, it decides the same on every non-boolean value, and intervals read the same."""
    pv = pytest.importorskip("sklearn.utils._param_validation")
    from numbers import Integral

    pairs = [([C.Interval(C.Integral, 32, 1024)], [pv.Interval(Integral, 32, 1024, closed="both")]),
             ([None, C.Interval(C.Integral, 1, None)], [None, pv.Interval(Integral, 1, None, closed="left")]),
             ([None, C.Choices({"dataset", "imagenet-topk"})], [None, pv.StrOptions({"dataset", "imagenet-topk"})]),
             (["boolean"], ["boolean"])]
    values = [None, 0, 1, 31, 32, 1024, 1025, 10**6, -3, 2.0, np.int64(64), "abc", "dataset", "imagenet-topk",
              "cuda", [], (1,), np.float32(1), np.bool_(False), False]
    for ours, theirs in pairs:
        for value in values:
            try:
                pv.validate_parameter_constraints({"x": theirs}, {"x": value}, caller_name="f")
                sklearn_allows = True
            except pv.InvalidParameterError:
                sklearn_allows = False
            if isinstance(value, (bool, np.bool_)) and ours != ["boolean"]:
                assert not C.is_allowed(value, ours), (ours, value)  # sklearn takes True for the integer 1
            else:
                assert C.is_allowed(value, ours) == sklearn_allows, (ours, value)
    for ours, theirs in pairs[:2]:
        with pytest.raises(pv.InvalidParameterError) as err:
            pv.validate_parameter_constraints({"x": theirs}, {"x": "?"}, caller_name="f")
        assert f"must be {C.allowed(ours)}. Got" in str(err.value)
