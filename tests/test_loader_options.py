"""Loader options are checked before anything is read (`datasets.registry.check_loader_options`): by name, and
the values of on/off (plain `bool`) options."""
from __future__ import annotations

import inspect

import pytest

from hashbench.datasets import DataError, UnknownDatasetError, check_loader_options, dataset_names, load_dataset
from hashbench.datasets import registry


def test_data_root_for_a_dataset_that_reads_no_files_is_an_error():
    with pytest.raises(DataError) as err:
        load_dataset("digits", data_root="/somewhere")
    assert str(err.value) == ("digits reads no files (it ships with scikit-learn): data_root (--data-root) "
                              "is not used by it")
    assert len(load_dataset("digits")) == 1797  # without it, digits loads as before


@pytest.fixture
def loaders_must_not_run(monkeypatch):
    """Loaders keep their signatures but fail if called: what is checked, is checked before loading."""
    real = registry.get_loader

    def stand_in_for(name):
        loader = real(name)

        def must_not_run(*args, **kwargs):
            raise AssertionError(f"the {name} loader ran before its options were checked")
        must_not_run.__signature__ = inspect.signature(loader)
        return must_not_run

    monkeypatch.setattr(registry, "get_loader", stand_in_for)


def test_options_a_loader_does_not_read_are_named_with_their_flag_and_the_dataset(loaders_must_not_run):
    with pytest.raises(DataError, match=r"^cifar10 does not read the option\(s\) colour \(--data-option "
                                        r"colour=\.\.\.\); it takes no options$"):
        load_dataset("cifar10", data_root="/does/not/matter", colour="red")
    with pytest.raises(DataError, match=r"^fashion-mnist does not read the option\(s\) allow_pickle "
                                        r"\(--allow-pickle\)"):
        load_dataset("fashion-mnist", allow_pickle=True)
    with pytest.raises(DataError, match=r"^listfile does not read the option\(s\) image_dir \(--data-option "
                                        r"image_dir=\.\.\.\); it reads: name, image_root, check_images, n_labels$"):
        load_dataset("listfile", data_root="/lists", image_dir="/images")
    # a preset fixes its name and label count: those are not options of it
    with pytest.raises(DataError, match=r"^coco does not read the option\(s\) n_labels .*; it reads: image_root, "
                                        r"check_images$"):
        load_dataset("coco", data_root="/lists", n_labels=3)
    with pytest.raises(DataError, match="^digits reads no files"):
        load_dataset("digits", data_root="/somewhere")
    with pytest.raises(AssertionError, match="the listfile loader ran"):  # the stand-in is live
        load_dataset("listfile", data_root="/lists", image_root="/images")


def test_check_reads_nothing_and_accepts_what_loaders_read(tmp_path):
    absent = str(tmp_path / "absent")
    check_loader_options("listfile", absent, {"image_root": absent, "check_images": False})
    check_loader_options("nus-wide-21", absent, {"image_root": absent})
    check_loader_options("features", absent, {"allow_pickle": True})
    check_loader_options("cifar10", None, {})
    check_loader_options("digits", None, {})
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'cifar100'"):
        check_loader_options("cifar100", None, {})


def test_every_loader_that_ignores_data_root_says_why():
    """A loader takes ``data_root`` exactly when it reads files; the others are listed with a reason."""
    for name in dataset_names():
        takes = "data_root" in inspect.signature(registry.get_loader(name)).parameters
        assert takes == (name not in registry.NO_FILES), name
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD
                       for p in inspect.signature(registry.get_loader(name)).parameters.values()), name


# ---------------------------------------------------------------- values of on/off options


@pytest.mark.parametrize("value", ["False", "false", "True", "no", 0, 1, None, 0.0, [False]])
def test_a_bool_option_takes_only_true_or_false(loaders_must_not_run, value):
    """``--data-option check_images=False`` once arrived as the string "False", which counted as true."""
    for name, option in (("listfile", "check_images"), ("coco", "check_images"), ("features", "allow_pickle")):
        with pytest.raises(DataError) as err:
            load_dataset(name, data_root="/lists", **{option: value})
        flag = "--allow-pickle" if option == "allow_pickle" else f"--data-option {option}=..."
        assert str(err.value) == f"option {option} ({flag}) of {name} must be True or False, got {value!r}"


def test_true_false_and_numpy_booleans_pass_and_other_options_are_the_loaders_to_check(tmp_path):
    import numpy as np

    for value in (True, False, np.bool_(False)):
        check_loader_options("listfile", None, {"check_images": value})
        check_loader_options("features", None, {"allow_pickle": value})
    check_loader_options("listfile", None, {"image_root": 3, "name": None, "n_labels": "x"})  # not plain bools


def test_every_plain_bool_option_of_every_loader_is_checked(loaders_must_not_run):
    """Whatever loader gains an on/off option later, its value is checked before loading."""
    seen = 0
    for name in dataset_names():
        for option, param in inspect.signature(registry.get_loader(name)).parameters.items():
            if param.annotation in (bool, "bool"):
                seen += 1
                with pytest.raises(DataError, match=f"^option {option} .* of {name} must be True or False"):
                    check_loader_options(name, None, {option: "False"})
    assert seen >= 5  # listfile and its three presets (check_images), features (allow_pickle)


def test_the_loaders_refuse_a_non_bool_themselves(tmp_path):
    from hashbench.datasets.feature_file import load_feature_file
    from hashbench.datasets.listfile import load_coco, load_listfile

    with pytest.raises(DataError, match=r"^option check_images .* of listfile must be True or False, got 'False'$"):
        load_listfile(str(tmp_path), check_images="False")
    with pytest.raises(DataError, match=r"^option check_images .* of coco must be True or False, got 0$"):
        load_coco(str(tmp_path), check_images=0)
    with pytest.raises(DataError, match=r"^option allow_pickle \(--allow-pickle\) of features must be True or "
                                        r"False, got 'False'$"):
        load_feature_file(str(tmp_path), allow_pickle="False")
