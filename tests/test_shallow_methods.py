"""Behaviour of the shallow hashers (LSH, PCAH, ITQ, SH) against independent slow references."""
from fractions import Fraction

import numpy as np
import pytest
import scipy.linalg
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from hashbench.methods.base import InputError, pack_bits, unpack_bits
from hashbench.methods.itq import ITQ, itq_rotation, procrustes_rotation, quantization_loss, random_rotation, sign_codes
from hashbench.methods.lsh import LSH
from hashbench.methods.pcah import PCAH
from hashbench.methods.sh import SH, spectral_modes

SHALLOW = [LSH, PCAH, ITQ, SH]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def anisotropic(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.geomspace(3.0, 0.3, d) + 5.0


def same_class_rate_at_k(codes, n_bits, labels, k=10):
    """Mean fraction of same-class items among each point's k nearest codes in Hamming distance (self excluded)."""
    signs = unpack_bits(codes, n_bits).astype(np.float64) * 2 - 1
    dist = np.rint((n_bits - signs @ signs.T) / 2).astype(np.int64)
    np.fill_diagonal(dist, n_bits + 1)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


# ----------------------------------------------------------------------------- ITQ


def test_itq_loss_never_increases(digits):
    X, _ = digits
    model = ITQ(32, seed=3).fit(X)
    loss = np.array(model.quantization_loss_)
    assert loss.shape == (51,)
    assert np.all(np.diff(loss) <= 1e-9 * loss[0]), np.diff(loss).max()
    assert loss[-1] < 0.97 * loss[0]


def test_itq_loss_matches_fitted_state(digits):
    X, _ = digits
    model = ITQ(16, seed=0, n_iter=7).fit(X)
    V = (X - model.mean_) @ model.components_
    R = model.rotation_
    assert model.quantization_loss_[-1] == pytest.approx(quantization_loss(sign_codes(V @ R), V, R), rel=1e-10)
    assert np.array_equal(model.encode(X), pack_bits(V @ R))


def test_procrustes_update_is_the_optimum():
    rng = np.random.default_rng(0)
    V = rng.standard_normal((500, 8)) * np.geomspace(2.0, 0.5, 8)
    B = sign_codes(V @ random_rotation(8, rng))
    R = procrustes_rotation(B, V)
    reference, _ = scipy.linalg.orthogonal_procrustes(V, B)
    np.testing.assert_allclose(R, reference, atol=1e-10)
    best = quantization_loss(B, V, R)
    for _ in range(50):
        skew = rng.standard_normal((8, 8)) * 0.05
        nearby = R @ scipy.linalg.expm(skew - skew.T)
        assert quantization_loss(B, V, nearby) > best
    # torch.svd returns Ṽ where numpy returns Ṽᵀ: the ported update computes Ṽᵀ Uᵀ.
    U, _, Vt = np.linalg.svd(B.T @ V)
    assert quantization_loss(B, V, Vt @ U.T) > best + 1.0


def test_buggy_itq_update_ends_with_higher_loss():
    X = anisotropic(2000, 64, seed=1)
    V = (X - X.mean(0)) @ np.linalg.svd(X - X.mean(0), full_matrices=False)[2][:16].T
    R, losses = itq_rotation(V, 50, np.random.default_rng(5))
    buggy = random_rotation(16, np.random.default_rng(5))
    for _ in range(50):
        U, _, Vt = np.linalg.svd(sign_codes(V @ buggy).T @ V)
        buggy = Vt @ U.T
    assert quantization_loss(sign_codes(V @ buggy), V, buggy) > losses[-1] * 1.005


def test_itq_rotation_is_orthogonal(digits):
    X, _ = digits
    model = ITQ(24, seed=1).fit(X)
    np.testing.assert_allclose(model.rotation_ @ model.rotation_.T, np.eye(24), atol=1e-10)
    np.testing.assert_allclose(model.components_.T @ model.components_, np.eye(24), atol=1e-10)


def test_itq_seed_changes_rotation(digits):
    X, _ = digits
    assert not np.allclose(ITQ(16, seed=0).fit(X).rotation_, ITQ(16, seed=1).fit(X).rotation_)


# ----------------------------------------------------------------------------- SH


def slow_modes(ranges, n_bits):
    """Every single-axis mode k = 1..n_bits on every axis, sorted exactly by (k / R_j, axis, k)."""
    modes = [(Fraction(k) / Fraction(float(r)), j, k) for j, r in enumerate(ranges) for k in range(1, n_bits + 1)]
    chosen = sorted(modes)[:n_bits]
    return np.array([m[1] for m in chosen]), np.array([m[2] for m in chosen])


@pytest.mark.parametrize(
    "ranges, n_bits",
    [
        ([4.0, 2.0, 1.0], 6),  # exact ties between axes: 2/4 == 1/2, 4/4 == 2/2 == 1/1
        ([3.0, 1.0], 5),  # ties at 3/3 == 1/1, 6/3 == 2/1
        ([1.0, 1.0, 1.0, 1.0], 9),  # all axes equal: ties broken by axis, then order
        ([2.5, 5.0, 2.5], 7),
        ([1e-15, 2.0, 0.3], 4),  # a degenerate axis is never used
    ],
)
def test_sh_modes_match_slow_enumeration_with_ties(ranges, n_bits):
    axes, orders = spectral_modes(np.array(ranges), n_bits)
    ref_axes, ref_orders = slow_modes(ranges, n_bits)
    np.testing.assert_array_equal(axes, ref_axes)
    np.testing.assert_array_equal(orders, ref_orders)


@pytest.mark.parametrize("seed", range(5))
def test_sh_modes_match_slow_enumeration_random(seed):
    rng = np.random.default_rng(seed)
    n_bits = int(rng.integers(1, 40))
    ranges = rng.uniform(0.1, 10.0, size=int(rng.integers(1, n_bits + 1)))
    axes, orders = spectral_modes(ranges, n_bits)
    ref_axes, ref_orders = slow_modes(ranges, n_bits)
    np.testing.assert_array_equal(axes, ref_axes)
    np.testing.assert_array_equal(orders, ref_orders)


def test_sh_fitted_modes_follow_the_box(digits):
    X, _ = digits
    model = SH(32).fit(X)
    ref_axes, ref_orders = slow_modes(model.mx_ - model.mn_, 32)
    np.testing.assert_array_equal(model.mode_axes_, ref_axes)
    np.testing.assert_array_equal(model.mode_orders_, ref_orders)
    assert len(set(zip(model.mode_axes_, model.mode_orders_))) == 32


@pytest.mark.parametrize("n_bits", [3, 7])
def test_sh_codes_match_direct_formula(n_bits):
    X = anisotropic(40, 5, seed=2)
    queries = anisotropic(25, 5, seed=3) * 1.3
    model = SH(n_bits).fit(X)
    # Independent PCA, signs aligned with the model's (the sign of a principal direction is arbitrary
    # and flips the box).
    mean = X.mean(0)
    pcs = np.linalg.svd(X - mean, full_matrices=False)[2][: min(n_bits, 5)].T
    pcs *= np.sign(np.sum(pcs * model.components_, axis=0))
    P = (X - mean) @ pcs
    mn = P.min(0) - np.finfo(float).eps
    mx = P.max(0) + np.finfo(float).eps
    axes, orders = slow_modes(mx - mn, n_bits)
    # MATLAB compressSH: the product over all PCA axes with a full mode matrix (zeros off-axis).
    modes = np.zeros((n_bits, P.shape[1]))
    modes[np.arange(n_bits), axes] = orders
    omegas = modes * np.pi / (mx - mn)
    for data in (X, queries):
        Pd = (data - mean) @ pcs
        y = np.stack([np.prod(np.sin(np.pi / 2 + (Pd - mn) * omegas[b]), axis=1) for b in range(n_bits)], axis=1)
        assert np.min(np.abs(y)) > 1e-9
        np.testing.assert_array_equal(model.encode(data), pack_bits(y))


def test_sh_accepts_more_bits_than_features():
    X = anisotropic(100, 4, seed=0)
    model = SH(12).fit(X)
    assert model.components_.shape == (4, 4)
    assert model.encode(X).shape == (100, 2)
    assert model.mode_orders_.max() > 1


# ----------------------------------------------------------------------------- PCAH, LSH


def test_pcah_is_sign_of_sklearn_pca(digits):
    X, _ = digits
    model = PCAH(16).fit(X)
    reference = PCA(n_components=16, svd_solver="full").fit(X).transform(X)
    z = model.project(X)
    signs = np.sign(np.sum(z * reference, axis=0))
    np.testing.assert_allclose(z, reference * signs, atol=1e-8)
    assert np.min(np.abs(z)) > 1e-8
    np.testing.assert_array_equal(model.encode(X), pack_bits(reference * signs))


def test_lsh_is_centred_on_training_mean(digits):
    X, _ = digits
    model = LSH(32, seed=4).fit(X)
    np.testing.assert_allclose(model.mean_, X.mean(0), atol=1e-12)
    np.testing.assert_allclose(model.project(X).mean(0), 0.0, atol=1e-9)
    # Without centring, non-negative pixels would put most points on one side of each hyperplane.
    balance = unpack_bits(model.encode(X), 32).mean(0)
    assert np.all((balance > 0.15) & (balance < 0.85)), balance


def test_lsh_seed_controls_projection(digits):
    X, _ = digits
    assert np.array_equal(LSH(16, seed=2).fit(X).projection_, LSH(16, seed=2).fit(X).projection_)
    assert not np.array_equal(LSH(16, seed=2).fit(X).projection_, LSH(16, seed=3).fit(X).projection_)


@pytest.mark.parametrize("cls", SHALLOW, ids=lambda c: c.name)
def test_translation_invariance(cls):
    X = anisotropic(300, 12, seed=4)
    shift = np.random.default_rng(0).uniform(-50, 50, size=12)
    z = cls(8, seed=1).fit(X).project(X)
    z_shifted = cls(8, seed=1).fit(X + shift).project(X + shift)
    np.testing.assert_allclose(z_shifted, z, atol=1e-7)


# ----------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("cls", [PCAH, ITQ], ids=lambda c: c.name)
def test_pca_methods_refuse_more_bits_than_features(cls, digits):
    X, _ = digits
    with pytest.raises(InputError, match="n_bits=65"):
        cls(65).fit(X)


def test_lsh_accepts_more_bits_than_features():
    X = anisotropic(50, 4, seed=0)
    assert LSH(20).fit(X).encode(X).shape == (50, 3)


def test_n_parameters_count_what_encoding_needs(digits):
    X, _ = digits
    d, b = X.shape[1], 16
    assert LSH(b).fit(X).n_parameters() == d + d * b
    assert PCAH(b).fit(X).n_parameters() == d + d * b
    assert ITQ(b).fit(X).n_parameters() == d + d * b + b * b
    assert SH(b).fit(X).n_parameters() == d + d * b + 3 * b
    assert SH(100).fit(X).n_parameters() == d + d * d + 3 * 100


@pytest.mark.parametrize("cls", SHALLOW, ids=lambda c: c.name)
def test_retrieval_beats_random_codes(cls, digits):
    X, y = digits
    n_bits = 32
    random_codes = pack_bits(np.random.default_rng(0).standard_normal((len(X), n_bits)))
    chance = same_class_rate_at_k(random_codes, n_bits, y)
    rate = same_class_rate_at_k(cls(n_bits).fit(X).encode(X), n_bits, y)
    assert rate > chance + 0.4, (rate, chance)


def test_itq_rotation_beats_plain_pca(digits):
    X, y = digits
    pcah = same_class_rate_at_k(PCAH(32).fit(X).encode(X), 32, y)
    itq = same_class_rate_at_k(ITQ(32).fit(X).encode(X), 32, y)
    assert itq > pcah + 0.05, (itq, pcah)
