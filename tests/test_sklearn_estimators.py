"""Hashers are scikit-learn estimators: sklearn's own checks pass on every registered method; clone,
Pipeline and GridSearchCV (with the retrieval scorer) work.

sklearn's checks run on ``cls(2, **cls.conformance_params)`` (2 bits: the checks' data can have as
few as 2 features, and PCA-based methods need ``n_bits <= d``); methods that need side inputs run
inside `SyntheticSideInputs`, which gives them side inputs of the right shape computed from each row.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from bench import evaluation
from bench.scoring import leave_one_out_scores, retrieval_scorer
from hashbench.methods import get_method, method_names
from hashbench.methods.testing import SyntheticSideInputs, make_features, sklearn_check_estimator

# Checks that cannot apply to a hasher, by method name (None: every method), each with its reason.
# Empty today: every check of scikit-learn applies and passes. Checks about packed-code output are
# not run for hashers because of their tags (``transformer_tags.preserves_dtype = []``: codes are
# uint8 whatever the input), which sklearn reads itself. sklearn skips ``check_array_api_input`` on
# its own unless SCIPY_ARRAY_API=1 (its reason is shown in pytest's summary).
EXPECTED_FAILED_CHECKS: dict[str | None, dict[str, str]] = {}


def _expected_failed(estimator) -> dict[str, str]:
    hasher = estimator.hasher if isinstance(estimator, SyntheticSideInputs) else estimator
    return {**EXPECTED_FAILED_CHECKS.get(None, {}), **EXPECTED_FAILED_CHECKS.get(hasher.name, {})}


@parametrize_with_checks([sklearn_check_estimator(get_method(name)) for name in method_names()],
                         expected_failed_checks=_expected_failed, xfail_strict=True)
def test_sklearn_check(estimator, check):
    check(estimator)


def test_every_registered_method_is_checked():
    names = {(e.hasher if isinstance(e, SyntheticSideInputs) else e).name
             for e in (sklearn_check_estimator(get_method(n)) for n in method_names())}
    assert names == set(method_names())


@pytest.mark.parametrize("name", ["itq", "lagnh", "deepbit"])
def test_clone_gives_an_unfitted_copy_with_the_same_parameters(name):
    cls = get_method(name)
    est = cls(16, seed=3, **cls.conformance_params)
    copy = clone(est)
    assert type(copy) is cls and copy is not est and copy.get_params(deep=True) == est.get_params(deep=True)
    assert not copy.is_fitted()


def test_get_params_deep_adds_nothing_for_a_hasher():
    """Run identities hash get_params(): deep=True (sklearn's default) must give the same dict."""
    for name in method_names():
        cls = get_method(name)
        est = cls(32, **cls.conformance_params)
        assert est.get_params(deep=True) == est.get_params(deep=False)


def test_set_params_refuses_an_unknown_name_with_an_input_error():
    from hashbench.methods import InputError

    with pytest.raises(InputError, match="no parameter 'n_iters'"):
        get_method("itq")(8).set_params(n_iters=3)


def test_transform_is_encode_and_fit_transform_passes_side_inputs():
    from hashbench.methods.testing import make_side_inputs

    cls = get_method("lagnh")
    X, clusters = make_features(200, 16)
    side = make_side_inputs(("tags",), X, clusters)
    est = cls(8, **cls.conformance_params)
    codes = est.fit_transform(X, None, **side)
    assert np.array_equal(codes, est.encode(X, **side)) and np.array_equal(codes, est.transform(X, **side))
    assert codes.dtype == np.uint8 and codes.shape == (200, 1)


def test_a_hasher_is_the_last_step_of_a_pipeline():
    X, _ = make_features(300, 32)
    itq = get_method("itq")
    pipe = Pipeline([("scale", StandardScaler()), ("itq", itq(16))]).fit(X)
    scaled = StandardScaler().fit(X).transform(X)
    assert np.array_equal(pipe.transform(X), itq(16).fit(scaled).encode(scaled))


def test_leave_one_out_scores_leave_the_query_out_of_its_database():
    """Hand-made case: 3 rows, two of one class with equal codes, one of another class."""
    codes = np.array([[0b0000], [0b0000], [0b1111]], dtype=np.uint8)
    labels = np.array([0, 0, 1])
    scores = leave_one_out_scores(codes, labels, topk=2)
    # rows 0 and 1 find each other first (AP 1); row 2 has no relevant item among the others (AP 0)
    assert scores["map_at_2"] == pytest.approx(2 / 3)
    # each row alone against the others, by the engine itself
    for i in range(3):
        others = [j for j in range(3) if j != i]
        single = evaluation.evaluate(codes[[i]], codes[others], labels[[i]], labels[others], topk=2)
        assert single["map_at_2"] == (1.0 if i < 2 else 0.0)


def test_the_scorer_refuses_bad_settings():
    with pytest.raises(ValueError, match="topk"):
        retrieval_scorer(topk=0)
    with pytest.raises(ValueError, match="unknown metric"):
        retrieval_scorer(metric="accuracy")


def test_grid_search_with_the_retrieval_scorer_picks_by_fold_scores():
    X, clusters = make_features(240, 16, n_clusters=4)
    itq = get_method("itq")
    pipe = Pipeline([("scale", StandardScaler()), ("itq", itq(8))])
    cv = KFold(3, shuffle=True, random_state=0)
    scorer = retrieval_scorer(topk=20)
    search = GridSearchCV(pipe, {"itq__n_iter": [0, 20]}, scoring=scorer, cv=cv).fit(X, clusters)
    # the search's fold scores are the scorer's on each held-out fold, computed by hand here
    for point, params in enumerate(search.cv_results_["params"]):
        for fold, (train, test) in enumerate(cv.split(X)):
            model = clone(pipe).set_params(**params).fit(X[train])
            expected = leave_one_out_scores(model.transform(X[test]), clusters[test], topk=20)["map_at_20"]
            assert search.cv_results_[f"split{fold}_test_score"][point] == pytest.approx(expected)
    best = int(np.argmax(search.cv_results_["mean_test_score"]))
    assert search.best_params_ == search.cv_results_["params"][best]
    assert search.best_estimator_.transform(X).shape == (240, 1)
