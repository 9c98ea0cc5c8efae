"""Each method's declared hyper-parameter constraints, checked through `Hasher.validate_params`.

For every built-in method (ablations included) and every parameter: a few bad values (wrong type, out of
range, a string for a number, NaN or inf where a finite value is needed, True for an int) raise a one-line
`InputError` naming the method and the parameter; good values, numpy scalars included, pass. A parameter
missing from these tables fails `test_the_tables_cover_every_parameter`, so a new parameter gets its bad
values here.
"""
import subprocess
import sys
from numbers import Integral
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils._param_validation import Interval as SklearnInterval

from hashbench.methods import lagnh
from hashbench.methods.base import InputError
from hashbench.methods.constraints import DeviceName, FiniteRealSequence, Interval, Real
from hashbench.methods.itq import ITQ
from hashbench.methods.lagnh import LAGNH, LAGNHNoAux
from hashbench.methods.lsh import LSH
from hashbench.methods.registry import BUILTIN, get_method

NAN, INF = float("nan"), float("inf")

POSITIVE_INT = [0, -1, True, 2.5, "abc", np.float64(3.0)]
NON_NEGATIVE_INT = [-1, True, 2.5, "abc"]
POSITIVE_REAL = [0, 0.0, -1e-3, NAN, INF, "abc", True, None]
NON_NEGATIVE_REAL = [-1e-3, -INF, NAN, INF, "abc", True, None]
OPTIONS = ["bogus", "", 1, None]
BOOLEAN = [1, 0, "yes", None]
DEVICE = ["tpu", "", "cuda:", "cuda:x", "CPU", 0, None]
TORCH_SEED = [2**64]

COMMON_BAD = {
    "n_bits": [0, 1025, -8, True, 16.0, "16", None, np.float64(16.0)],
    "seed": [-1, True, 1.5, "0", None, np.float64(1.0)],
}
COMMON_GOOD = {
    "n_bits": [1, 1024, np.int64(16), np.int32(8), np.uint8(20)],
    "seed": [0, 2**40, np.int64(3)],
}

BAD = {
    "lsh": {},
    "pcah": {},
    "sh": {},
    "itq": {"n_iter": NON_NEGATIVE_INT + [None]},
    "sgh": {
        "seed": TORCH_SEED,
        "xi": OPTIONS,
        "alpha": NON_NEGATIVE_REAL,
        "beta": NON_NEGATIVE_REAL,
        "lr": POSITIVE_REAL,
        "batch_size": POSITIVE_INT + [None],
        "epochs": POSITIVE_REAL,
        "halve_every_epochs": [0.0, -1.0, NAN, INF, "abc", True],
        "standardize": BOOLEAN,
        "device": DEVICE,
    },
    "sgh-graph": {
        "n_anchors": POSITIVE_INT + [None],
        "rho": POSITIVE_REAL,
        "gamma": NON_NEGATIVE_REAL,
        "refine_passes": NON_NEGATIVE_INT + [None],
        "input_scaling": OPTIONS + ["l2"],
    },
    "cibhash": {
        "seed": TORCH_SEED,
        "schedule": OPTIONS + ["fast"],
        "epochs": POSITIVE_INT,  # None: the preset's
        "batch_size": POSITIVE_INT + [1],  # NT-Xent needs another row for negatives
        "lr": POSITIVE_REAL,
        "hidden": POSITIVE_INT + [None],
        "temperature": POSITIVE_REAL,
        "weight": NON_NEGATIVE_REAL,
        "device": DEVICE,
    },
    "deepbit": {
        "seed": TORCH_SEED,
        "activation": OPTIONS + ["tanh"],
        "threshold": ["median", "", NAN, INF, -INF, True, None],
        "balance_estimator": OPTIONS,
        "view_angles": [(), [], [NAN], [1.0, INF], "10", [True, 5.0], ["5"], 5.0, None, np.zeros((2, 2)),
                        np.array([])],
        "angle_scale": POSITIVE_REAL,
        "quantization_weight": NON_NEGATIVE_REAL,
        "balance_weight": NON_NEGATIVE_REAL,
        "rotation_weight": NON_NEGATIVE_REAL,
        "batch_size": POSITIVE_INT + [None],
        "stage1_lr": POSITIVE_REAL,
        "stage1_epochs": NON_NEGATIVE_REAL,
        "stage1_step_epochs": POSITIVE_REAL,
        "stage2_batch_pairs": POSITIVE_INT + [None],
        "stage2_lr": POSITIVE_REAL,
        "stage2_epochs": NON_NEGATIVE_REAL,
        "stage2_step_epochs": POSITIVE_REAL,
        "lr_gamma": POSITIVE_REAL,
        "momentum": NON_NEGATIVE_REAL,
        "weight_decay": NON_NEGATIVE_REAL,
        "init_std": POSITIVE_REAL,
        "device": DEVICE,
    },
    "tbh": {
        "seed": TORCH_SEED,
        "schedule": OPTIONS + ["gpu"],
        "iterations": POSITIVE_INT,
        "batch_size": POSITIVE_INT + [1],  # the graph needs two rows
        "lr": [0, 0.0, -1e-3, NAN, INF, "abc", True],
        "hidden": POSITIVE_INT + [None],
        "continuous_dim": POSITIVE_INT + [None],
        "graph_power": POSITIVE_REAL,
        "output": OPTIONS + ["sigmoid"],
        "xi": OPTIONS,
        "device": DEVICE,
    },
    "greedyhash": {
        "seed": TORCH_SEED,
        "alpha": NON_NEGATIVE_REAL,
        "schedule": OPTIONS + ["fast"],
        "batch_size": POSITIVE_INT + [1],
        "epochs": POSITIVE_INT,
        "lr": [0, 0.0, -1e-3, NAN, INF, "abc", True],
        "lr_step_epochs": POSITIVE_INT,
        "lr_gamma": POSITIVE_REAL,
        "momentum": [-0.1, 1.0, NAN, "abc", True, None],
        "weight_decay": NON_NEGATIVE_REAL,
        "center_features": BOOLEAN,
        "device": DEVICE,
    },
    "bihalf": {
        "seed": TORCH_SEED,
        "gamma": NON_NEGATIVE_REAL,
        "schedule": OPTIONS + ["fast"],
        "batch_size": POSITIVE_INT + [1],
        "epochs": POSITIVE_INT,
        "lr": [0, 0.0, -1e-3, NAN, INF, "abc", True],
        "lr_step_epochs": POSITIVE_INT,
        "lr_gamma": POSITIVE_REAL,
        "momentum": [-0.1, 1.0, NAN, "abc", True, None],
        "weight_decay": NON_NEGATIVE_REAL,
        "center_features": BOOLEAN,
        "device": DEVICE,
    },
    "lagnh": {
        "seed": [2**64 - 1],  # the prior's generator takes seed + 1
        "schedule": OPTIONS + ["slow"],
        "epochs": POSITIVE_INT,
        "batch_size": POSITIVE_INT,
        "g_steps": POSITIVE_INT,
        "early_stop_patience": NON_NEGATIVE_INT,
        "early_stop_tol": [-1e-3, NAN, INF, "abc", True],
        "lr": POSITIVE_REAL,
        "hidden": POSITIVE_INT + [None],
        "embed_dim": POSITIVE_INT + [None],
        "dropout": [1.0, 1, -0.1, NAN, "0.5", True, None],
        "adv_weight": NON_NEGATIVE_REAL,
        "lamda": NON_NEGATIVE_REAL,
        "alpha": NON_NEGATIVE_REAL,
        "beta": NON_NEGATIVE_REAL,
        "sigma": [0, -1.0, NAN, INF, "mean", "", True, None],
        "median_fraction": POSITIVE_REAL,
        "rec_target": OPTIONS + ["features"],  # "features" is the no-tags ablation's own, not a choice
        "tag_graph_weight": NON_NEGATIVE_REAL,
        "normalize_input": BOOLEAN,
        "encode_mode": OPTIONS,
        "encode_batch_size": POSITIVE_INT + [None],
        "n_anchors": POSITIVE_INT,
        "device": DEVICE,
    },
}

GOOD = {
    "itq": {"n_iter": [0, 50, np.int64(7)]},
    "sgh": {
        "seed": [2**64 - 1],
        "xi": ["stochastic", "deterministic"],
        "alpha": [0, 0.0, np.float32(1e-3)],
        "lr": [1, np.float64(0.5)],
        "batch_size": [1, np.int64(7)],
        "epochs": [3, np.float32(2.5)],
        "halve_every_epochs": [None, 2, np.float64(0.5)],
        "standardize": [True, False, np.bool_(True)],
        "device": ["auto", "cpu", "cuda", "cuda:1", "mps"],
    },
    "sgh-graph": {"n_anchors": [1, np.int64(300)], "rho": [np.float32(2.0), 1], "gamma": [0, 1e-6],
                  "refine_passes": [0, np.int64(2)], "input_scaling": ["row-l2", "max-norm"]},
    "cibhash": {
        "seed": [2**64 - 1],
        "schedule": ["cpu", "authors"],
        "epochs": [None, 1, np.int64(60)],
        "batch_size": [None, 2, np.int64(64)],
        "hidden": [1, np.int64(1024)],
        "temperature": [0.3, np.float32(1.0)],
        "weight": [0, 0.0, np.float64(1e-3)],
    },
    "deepbit": {
        "seed": [2**64 - 1],
        "threshold": ["train-mean", "train-bit-mean", 0.5, -1, 0, np.float32(0.25)],
        "view_angles": [(-10.0, -5.0, 5.0, 10.0), [5], np.array([1.0, 2.0]), (np.float32(3.0), np.int64(4))],
        "stage1_epochs": [0, 0.0, np.float64(1.5)],
        "stage2_batch_pairs": [1, np.int64(30)],
        "momentum": [0, np.float32(0.9)],
    },
    "tbh": {
        "seed": [2**64 - 1],
        "schedule": ["cpu", "authors"],
        "iterations": [None, 1, np.int64(100_000)],
        "batch_size": [None, 2, np.int64(400)],
        "lr": [None, 1e-4, np.float32(1e-3)],
        "graph_power": [1.4, 1, np.float64(2.0)],
        "output": ["relu", "linear"],
        "xi": ["deterministic", "stochastic"],
    },
    "greedyhash": {
        "alpha": [0, np.float64(0.1)],
        "seed": [2**64 - 1],
        "schedule": ["cpu", "authors"],
        "batch_size": [None, 2, np.int64(64)],
        "epochs": [None, 1, np.int64(5)],
        "lr": [None, 1, np.float32(1e-2)],
        "lr_step_epochs": [None, 1, np.int64(8)],
        "momentum": [0, np.float32(0.9)],
        "center_features": [False, np.bool_(True)],
    },
    "bihalf": {
        "gamma": [0, 6, np.float32(6.0)],
        "seed": [2**64 - 1],
        "schedule": ["cpu", "authors"],
        "batch_size": [None, 2, np.int64(64)],
        "epochs": [None, 1, np.int64(5)],
        "lr": [None, 1, np.float32(1e-2)],
        "lr_step_epochs": [None, 1, np.int64(8)],
        "momentum": [0, np.float32(0.9)],
        "center_features": [False, np.bool_(True)],
    },
    "lagnh": {
        "seed": [2**64 - 2],
        "schedule": ["fast", "authors"],
        "epochs": [None, 1, np.int64(5)],
        "early_stop_patience": [None, 0, np.int64(2)],
        "early_stop_tol": [None, 0, 0.0, np.float32(1e-3)],
        "dropout": [0, 0.0, 0.99, np.float32(0.5)],
        "sigma": ["median", 0.5, 1, np.float32(2.0)],
        "tag_graph_weight": [0, 0.0],
        "normalize_input": [False, np.bool_(True)],
        "n_anchors": [None, 1, np.int64(99)],
    },
}


def _table_key(name: str) -> str:
    return "lagnh" if name.startswith("lagnh") else name


def _cases(table, common):
    for name in sorted(BUILTIN):
        own = table.get(_table_key(name), {})
        for param in dict.fromkeys([*common, *own]):
            yield pytest.param(name, param, [*common.get(param, []), *own.get(param, [])], id=f"{name}-{param}")


@pytest.mark.parametrize("name, param, values", list(_cases(BAD, COMMON_BAD)))
def test_bad_values_raise_input_error_naming_the_parameter(name, param, values):
    cls = get_method(name)
    for value in values:
        est = cls(**{"n_bits": 16, param: value})
        with pytest.raises(InputError) as raised:
            est.validate_params()
        message = str(raised.value)
        assert message.startswith(f"{name}: {param} must be "), (value, message)
        assert " got " in message and "\n" not in message, (value, message)


@pytest.mark.parametrize("name, param, values", list(_cases(GOOD, COMMON_GOOD)))
def test_good_values_pass(name, param, values):
    cls = get_method(name)
    for value in values:
        cls(**{"n_bits": 16, param: value}).validate_params()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_the_tables_cover_every_parameter(name):
    cls = get_method(name)
    covered = set(COMMON_BAD) | set(BAD[_table_key(name)])
    missing = sorted(set(cls(16).get_params()) - covered)
    assert not missing, f"add bad values for {name}'s parameter(s) {missing} to BAD"
    assert set(cls._parameter_constraints) == set(cls(16).get_params())


def test_the_message_names_method_parameter_value_and_what_is_allowed():
    with pytest.raises(InputError) as raised:
        ITQ(16, n_iter="abc").validate_params()
    assert str(raised.value) == "itq: n_iter must be an int in the range [0, inf), got 'abc'"
    with pytest.raises(InputError) as raised:
        LAGNH(16, sigma=-1.0).validate_params()
    message = str(raised.value)
    assert message.startswith("lagnh: sigma must be a float in the range (0.0, inf) or a str among {'median'}")
    assert message.endswith("got -1.0")


def test_an_array_value_is_reported_on_one_line():
    with pytest.raises(InputError) as raised:
        get_method("deepbit")(16, view_angles=np.zeros((30, 30))).validate_params()
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 250


def test_validation_is_not_sklearns_exception_type():
    """Callers catch `InputError`; sklearn's InvalidParameterError (a ValueError and TypeError) must not leak."""
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InputError) as raised:
        LSH(0).validate_params()
    assert not isinstance(raised.value, InvalidParameterError)


def test_sklearn_interval_takes_true_for_an_int_ours_does_not():
    assert SklearnInterval(Integral, 1, 1024, closed="both").is_satisfied_by(True)
    assert not Interval(Integral, 1, 1024, closed="both").is_satisfied_by(True)
    assert not Interval(Real, 0, None, closed="left").is_satisfied_by(np.bool_(True))
    assert not Interval(Real, 0, None, closed="left").is_satisfied_by(INF)
    assert Interval(Real, 0, None, closed="both").is_satisfied_by(INF)  # sklearn's reading of a closed unbounded side


def test_custom_constraints():
    assert FiniteRealSequence().is_satisfied_by(range(3))
    assert not FiniteRealSequence().is_satisfied_by(b"ab")
    assert DeviceName().is_satisfied_by("cuda:12") and not DeviceName().is_satisfied_by("cuda:1 ")


# ----------------------------------------------------------------------------- cross-parameter rules


def test_no_tags_ablation_refuses_a_tag_graph_weight():
    LAGNH(16, tag_graph_weight=1.0).validate_params()
    with pytest.raises(InputError, match=r"^lagnh-noaux: tag_graph_weight must be 0 .*got 1\.0$"):
        LAGNHNoAux(16, tag_graph_weight=1.0).validate_params()


def test_schedule_preset_values_pass_the_declared_constraints(monkeypatch):
    for schedule in lagnh.SCHEDULES:
        assert LAGNH(16, schedule=schedule).resolved_schedule()
    monkeypatch.setitem(lagnh.SCHEDULES["fast"], "batch_size", 0)
    with pytest.raises(InputError, match=r"^lagnh: the 'fast' schedule sets batch_size=0, which must be an int"):
        LAGNH(16).validate_params()
    LAGNH(16, batch_size=64).validate_params()  # a given value replaces the preset's
    monkeypatch.setitem(lagnh.SCHEDULES["authors"], "epochs", 2.5)  # checked as written, not as int() makes it
    with pytest.raises(InputError, match=r"^lagnh: the 'authors' schedule sets epochs=2\.5"):
        LAGNH(16, schedule="authors").validate_params()


def test_resolved_schedule_validates():
    with pytest.raises(InputError, match="schedule"):
        LAGNH(16, schedule="slow").resolved_schedule()
    assert LAGNH(16, epochs=np.int64(3)).resolved_schedule()["epochs"] == 3


# ----------------------------------------------------------------------------- declarations


def test_constraints_are_merged_along_the_class_hierarchy():
    assert LAGNHNoAux._parameter_constraints == LAGNH._parameter_constraints
    assert {"n_bits", "seed", "n_iter"} == set(ITQ._parameter_constraints)
    # a subclass's own declaration wins over its base's
    assert LAGNH._parameter_constraints["seed"] is not LSH._parameter_constraints["seed"]

    class Wider(LSH):
        _parameter_constraints = {"n_bits": [Interval(Integral, 1, 4096, closed="both")]}

    Wider(2048).validate_params()
    assert set(Wider._parameter_constraints) == {"n_bits", "seed"}
    with pytest.raises(InputError):
        LSH(2048).validate_params()


def test_a_malformed_declaration_fails_when_the_class_is_made():
    with pytest.raises(ValueError, match="Unknown constraint"):
        type("Typo", (LSH,), {"_parameter_constraints": {"seed": ["positive"]}})
    with pytest.raises(TypeError, match="list of constraints"):
        type("NotAList", (LSH,), {"_parameter_constraints": {"seed": Interval(Integral, 0, None, closed="left")}})


def test_validate_params_needs_neither_data_nor_torch():
    code = (
        "import sys\n"
        "from hashbench.methods.registry import method_names, get_method\n"
        "for name in method_names(): get_method(name)(16).validate_params()\n"
        "bad = [m for m in ('torch', 'torch_geometric') if m in sys.modules]; assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("name", ["itq", "lagnh", "cibhash"])
def test_a_side_input_the_method_does_not_read_is_refused_by_name(name):
    # A misspelt or foreign side input used to reach _fit/_project as an unexpected keyword (TypeError).
    from hashbench.methods import InputError, get_method

    cls = get_method(name)
    X = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)
    reads = f"it reads {', '.join(cls.side_inputs)}" if cls.side_inputs else "it reads none"
    with pytest.raises(InputError, match=rf"^{name} has no side input 'captions' \({reads}\)$"):
        cls(8).fit(X, captions=np.zeros((20, 3)))
