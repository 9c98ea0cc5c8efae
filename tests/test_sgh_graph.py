"""Scalable Graph Hashing (methods.sgh_graph)."""
import math

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist
from threadpoolctl import threadpool_limits

from hashbench.methods.base import InputError
from hashbench.methods.sgh_graph import (
    ScalableGraphHashing,
    approximate_similarity,
    rbf_features,
    sequential_bits,
    shared_features,
    transformed_features,
)
from retrieval_reference import mean_average_precision


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with threadpool_limits(1):
        yield


def clustered(n=600, d=32, k=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 2
    labels = rng.integers(0, k, n)
    X = 3.0 + centres[labels] + 0.5 * rng.standard_normal((n, d))
    return X.astype(np.float32), labels




def in_unit_ball(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True) * rng.random((n, 1))


def test_transformed_features_reproduce_the_approximated_similarity():
    X, Y = in_unit_ball(40, 6, 0), in_unit_ball(30, 6, 1)
    rho = 2.0
    P, _ = transformed_features(X, rho)
    _, Q = transformed_features(Y, rho)
    # Independent element-wise evaluation of S̃(x, y) = 2 e^{-|x|²/ρ} e^{-|y|²/ρ} (sinh1 · 2xᵀy/ρ + cosh1) - 1
    direct = np.array([[2 * math.exp(-(x @ x + y @ y) / rho) * (math.sinh(1) * 2 * (x @ y) / rho + math.cosh(1)) - 1
                        for y in Y] for x in X])
    np.testing.assert_allclose(P @ Q.T, direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(approximate_similarity(X, Y, rho), direct, rtol=1e-12, atol=1e-12)
    # S̃ approximates S = 2 exp(-||x - y||²/ρ) - 1 within the error of the linear fit to exp on [-1, 1]
    # (largest at t = ln sinh 1), scaled by 2 e^{-(|x|² + |y|²)/ρ}.
    exact = 2 * np.exp(-cdist(X, Y, "sqeuclidean") / rho) - 1
    t = np.linspace(-1, 1, 200001)
    linear_error = np.max(np.abs(np.exp(t) - (math.sinh(1) * t + math.cosh(1))))
    bound = 2 * np.exp(-((X**2).sum(1)[:, None] + (Y**2).sum(1)[None, :]) / rho) * linear_error
    assert np.all(np.abs(direct - exact) <= bound + 1e-12)
    # Symmetric: the graph S̃ = P Qᵀ the learner uses is a similarity.
    P, Q = transformed_features(X, rho)
    np.testing.assert_allclose(P @ Q.T, (P @ Q.T).T, atol=1e-12)


@pytest.fixture(scope="module")
def small_problem():
    X, _ = clustered(n=150, d=10, k=4, seed=3)
    X = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0), axis=1).max()
    anchors = X[:40]
    K = rbf_features(X, anchors, float(cdist(X, anchors, "sqeuclidean").mean()))
    K -= K.mean(0)
    return X, K, shared_features(X, 2.0)


def test_each_sequential_bit_solves_the_generalised_eigenproblem_of_its_residual(small_problem):
    X, K, G = small_problem
    n_bits, gamma = 4, 1e-6
    W, _ = sequential_bits(K, G, n_bits, gamma, 0, np.random.default_rng(0))
    S = approximate_similarity(X, X, 2.0)  # dense n × n, formed here only
    Z = K.T @ K + gamma * np.eye(K.shape[1])
    residual = n_bits * S
    for k in range(n_bits):
        M = K.T @ residual @ K
        values = np.linalg.eigvals(np.linalg.solve(Z, M)).real
        w = W[:, k]
        rayleigh = (w @ M @ w) / (w @ Z @ w)
        assert rayleigh == pytest.approx(values.max(), rel=1e-6)
        np.testing.assert_allclose(M @ w, rayleigh * Z @ w, rtol=1e-5, atol=1e-8 * np.abs(M).max())
        b = np.where(K @ w >= 0, 1.0, -1.0)
        residual = residual - np.outer(b, b)


@pytest.mark.parametrize("refine_passes", [0, 1])
def test_logged_objective_equals_the_dense_residual(small_problem, refine_passes):
    X, K, G = small_problem
    n_bits = 5
    W, losses = sequential_bits(K, G, n_bits, 1e-6, refine_passes, np.random.default_rng(1))
    assert len(losses) == n_bits * (1 + refine_passes)
    S = approximate_similarity(X, X, 2.0)
    B = np.where(K @ W >= 0, 1.0, -1.0)
    n = X.shape[0]
    dense = (np.sum((n_bits * S - B @ B.T) ** 2) - np.sum((n_bits * S) ** 2)) / n**2
    assert losses[-1] == pytest.approx(dense, rel=1e-9)
    assert losses[-1] < losses[0] < 0  # each bit lowers ||cS̃ - BBᵀ||² below the empty code's


@pytest.fixture(scope="module")
def fitted():
    X, labels = clustered()
    return ScalableGraphHashing(16, seed=0, n_anchors=100).fit(X[:500]), X, labels


def test_anchor_count_is_capped_at_the_training_rows_and_resolved():
    X, _ = clustered(n=40, d=6)
    model = ScalableGraphHashing(4).fit(X)
    assert model.anchors_.shape[0] == 40
    assert model.resolved_params() == {"n_anchors": 40}
    assert model.run_info() == {}


def authors_scaling(rows, mean):
    """Centred by the training mean, then every row divided by its own L2 norm (``sgh_demo.py``)."""
    rows = np.asarray(rows, np.float64) - mean
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_bandwidth_and_anchors_come_from_the_training_data(fitted):
    model, X, _ = fitted
    np.testing.assert_allclose(model.mean_, X[:500].astype(np.float64).mean(0), rtol=1e-12)
    train = authors_scaling(X[:500], model.mean_)
    assert model.anchors_.shape == (100, 32)
    assert cdist(model.anchors_, train).min(axis=1).max() == 0  # anchors are training rows
    assert len(np.unique(model.anchors_, axis=0)) == 100
    assert model.bandwidth_ == pytest.approx(cdist(train, model.anchors_, "sqeuclidean").mean(), rel=1e-9)
    K = np.exp(-cdist(train, model.anchors_, "sqeuclidean") / (2 * model.bandwidth_))
    np.testing.assert_allclose(model.kernel_mean_, K.mean(0), rtol=1e-9)
    np.testing.assert_allclose(model.project(X[:500]), (K - K.mean(0)) @ model.projection_, rtol=1e-7, atol=1e-9)
    assert model.n_parameters() == 32 + 1 + 100 * 32 + 1 + 100 + 100 * 16


def test_max_norm_scaling_divides_every_row_by_the_largest_training_norm():
    X, _ = clustered(n=300, d=8, seed=2)
    model = ScalableGraphHashing(8, n_anchors=40, input_scaling="max-norm").fit(X)
    centred = X.astype(np.float64) - X.astype(np.float64).mean(0)
    assert model.scale_ == pytest.approx(np.linalg.norm(centred, axis=1).max(), rel=1e-12)
    assert cdist(model.anchors_, centred / model.scale_).min(axis=1).max() < 1e-12
    default = ScalableGraphHashing(8, n_anchors=40).fit(X)
    assert default.scale_ == 1.0
    assert not np.array_equal(model.encode(X), default.encode(X))  # the option changes the learner's input


def test_objective_decreases_bits_are_balanced_and_retrieval_beats_chance(fitted):
    model, X, labels = fitted
    loss = model.history_["loss"]
    assert loss[15] < loss[0] < 0 and loss[-1] < loss[0]  # 16 sequential bits, then one refinement pass
    bits = model.project(X) >= 0
    means = bits[:500].mean(axis=0)
    assert np.all((means >= 0.1) & (means <= 0.9)), means
    score = mean_average_precision(bits[500:], bits[:500], labels[500:], labels[:500])
    assert score > 0.6  # chance is about 1/8


def test_codes_do_not_depend_on_the_data_offset_or_scale():
    X, _ = clustered(n=200, d=8, seed=4)
    a = ScalableGraphHashing(8, n_anchors=50).fit(X)
    b = ScalableGraphHashing(8, n_anchors=50).fit(10.0 * X.astype(np.float64) - 7.0)
    np.testing.assert_array_equal(a.encode(X), b.encode(10.0 * X.astype(np.float64) - 7.0))


@pytest.mark.parametrize("bad", [{"n_anchors": 0}, {"rho": 0.0}, {"gamma": -1.0}, {"refine_passes": -1}])
def test_bad_hyper_parameters_raise_input_error(bad):
    X, _ = clustered(n=50, d=4)
    with pytest.raises(InputError):
        ScalableGraphHashing(4, **bad).fit(X)


def test_identical_rows_raise_input_error():
    with pytest.raises(InputError, match="identical"):
        ScalableGraphHashing(4).fit(np.ones((20, 3)))


def faithful_sgh_codes(train, queries, n_bits, seed):
    """The authors' ``sgh_demo.py`` restated densely: centre by the training mean, L2-normalise every row,
    300 anchors drawn from the training rows, ρ = 2, the exact P and Q, δ the mean squared distance, the
    centred RBF kernel, ``trainSGH_seq`` (bit by bit, then one pass in a random order), signs of K W.
    The anchors and the pass order are drawn as the harness draws them, so that only the computation is
    compared, not two samples of anchors (which move mAP by ~0.005 between seeds on this split)."""
    rng = np.random.default_rng(seed)
    mean = train.mean(0)
    train, queries = authors_scaling(train, mean), authors_scaling(queries, mean)
    anchors = train[np.sort(rng.choice(len(train), size=300, replace=False))]
    decay = np.exp(-(train**2).sum(1, keepdims=True) / 2.0)
    first = math.sqrt(2 * (math.e**2 - 1) / (math.e * 2.0)) * decay * train
    second = math.sqrt((math.e**2 + 1) / math.e) * decay
    P = np.hstack([first, second, np.ones((len(train), 1))])
    Q = np.hstack([first, second, -np.ones((len(train), 1))])
    d2 = cdist(train, anchors, "sqeuclidean")
    delta = d2.mean()
    K = np.exp(-d2 / (2 * delta))
    kernel_mean = K.mean(0)
    K -= kernel_mean
    m = K.shape[1]
    A = n_bits * (K.T @ P) @ (K.T @ Q).T
    Z = K.T @ K + 1e-6 * np.eye(m)

    def top(A):
        w = scipy.linalg.eigh(0.5 * (A + A.T), Z, subset_by_index=[m - 1, m - 1])[1][:, 0]
        return w

    W = np.zeros((m, n_bits))
    for k in range(n_bits):
        W[:, k] = top(A)
        v = K.T @ np.sign(K @ W[:, k])
        A -= np.outer(v, v)
    for k in rng.permutation(n_bits):
        v = K.T @ np.sign(K @ W[:, k])
        A += np.outer(v, v)
        W[:, k] = top(A)
        v = K.T @ np.sign(K @ W[:, k])
        A -= np.outer(v, v)
    K_query = np.exp(-cdist(queries, anchors, "sqeuclidean") / (2 * delta)) - kernel_mean
    return K @ W >= 0, K_query @ W >= 0


@pytest.mark.parametrize("n_bits", [16, 32, 64])
def test_default_matches_a_faithful_restatement_of_the_authors_code_on_digits(n_bits):
    # The split of the fidelity issue: 8x8 digits pixels / 16, 297 queries, the other 1,500 rows as the
    # training set and database, 300 anchors, mAP over the whole database, mean of 3 seeds.
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    X, y = digits.data[order] / 16.0, digits.target[order]
    q, db = slice(0, 297), slice(297, None)
    ours, faithful = [], []
    for seed in range(3):
        model = ScalableGraphHashing(n_bits, seed=seed, n_anchors=300).fit(X[db])
        ours.append(mean_average_precision(model.project(X[q]) >= 0, model.project(X[db]) >= 0, y[q], y[db]))
        db_bits, q_bits = faithful_sgh_codes(X[db], X[q], n_bits, seed)
        faithful.append(mean_average_precision(q_bits, db_bits, y[q], y[db]))
    assert abs(np.mean(ours) - np.mean(faithful)) <= 0.003, (ours, faithful)
