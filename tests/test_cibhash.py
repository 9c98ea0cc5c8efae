"""CIBHash on fixed features (methods.cibhash, methods.cibhash_model)."""
import math

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from hashbench.methods.base import InputError
from hashbench.methods.cibhash import CIBHash, check_aug_views
from hashbench.methods.cibhash_model import (
    CIBHashEncoder,
    bernoulli_kl,
    cibhash_losses,
    draw_view_pairs,
    nt_xent,
    sign_straight_through,
)
from hashbench.methods._torch_device import cpu_generator
from retrieval_reference import mean_average_precision


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def clustered_with_aug_views(n=400, d=32, k=6, n_views=6, seed=0):
    """Clustered features and, per row, ``n_views`` views: the row scaled by U(0.8, 1.2) plus noise
    (a stand-in for the features of augmented images, which stay near their image)."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((k, d))
    labels = rng.integers(0, k, n)
    X = 1.0 + centres[labels] + 0.5 * rng.standard_normal((n, d))
    scale = rng.uniform(0.8, 1.2, (n, n_views, 1))
    views = X[:, None, :] * scale + 0.5 * rng.standard_normal((n, n_views, d))
    return X.astype(np.float32), views.astype(np.float32), labels


SMALL = {"epochs": 15, "batch_size": 32, "hidden": 64}


@pytest.fixture(scope="module")
def fitted():
    X, views, labels = clustered_with_aug_views()
    model = CIBHash(16, seed=0, **SMALL).fit(X, aug_views=views)
    return model, X, views, labels


# ----------------------------------------------------------------------------- losses and estimator


def test_sign_straight_through_gradient_is_the_incoming_gradient():
    x = torch.tensor([-2.0, -0.1, 0.3, 5.0], requires_grad=True)
    upstream = torch.tensor([0.7, -1.5, 2.0, 0.25])
    z = sign_straight_through(x)
    assert torch.equal(z, torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    (z * upstream).sum().backward()
    assert torch.equal(x.grad, upstream)


def test_code_gradient_through_the_sigmoid_is_its_formula():
    """``z = sign(σ(a) - 1/2)`` with the straight-through: ``∂L/∂a = ∂L/∂z · σ(a)(1 - σ(a))``."""
    a = torch.randn(5, 7, generator=cpu_generator(1), dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 7, generator=cpu_generator(2), dtype=torch.float64)
    (sign_straight_through(torch.sigmoid(a) - 0.5) * upstream).sum().backward()
    s = torch.sigmoid(a.detach())
    torch.testing.assert_close(a.grad, upstream * s * (1 - s), rtol=1e-12, atol=1e-12)


def _nt_xent_restated(z_i, z_j, tau):
    """The authors' NtXentLoss written out anchor by anchor: positive = the other view of the same row,
    negatives = the 2(B - 1) views of the other rows; summed cross-entropy divided by 2B."""
    z = torch.cat([z_i, z_j]).double()
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for k in range(n):
        partner = (k + b) % n
        sims = {m: float(torch.dot(z[k], z[m]) / (z[k].norm() * z[m].norm())) / tau for m in range(n)}
        logits = [sims[partner]] + [sims[m] for m in range(n) if m not in (k, partner)]
        total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    return total / n


def test_nt_xent_equals_the_authors_formula_on_a_tiny_batch():
    g = cpu_generator(3)
    z_i = torch.sign(torch.randn(3, 5, generator=g, dtype=torch.float64))
    z_j = torch.sign(torch.randn(3, 5, generator=g, dtype=torch.float64))
    for tau in (0.3, 1.0):
        assert nt_xent(z_i, z_j, tau).item() == pytest.approx(_nt_xent_restated(z_i, z_j, tau), rel=1e-12)
    real_i, real_j = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    assert nt_xent(real_i, real_j, 0.3).item() == pytest.approx(_nt_xent_restated(real_i, real_j, 0.3), rel=1e-12)


def test_nt_xent_is_low_when_views_agree_and_rows_differ():
    codes = torch.tensor([[1.0, 1, 1, 1], [-1.0, -1, 1, 1], [1.0, -1, -1, 1]])
    matched = nt_xent(codes, codes.clone(), 0.3).item()
    collapsed = nt_xent(torch.ones(3, 4), torch.ones(3, 4), 0.3).item()
    assert collapsed == pytest.approx(math.log(5))  # every candidate equally similar: log(2B - 1)
    assert matched < collapsed


def test_bernoulli_kl_equals_its_formula_and_stops_the_target_gradient():
    p = torch.tensor([[0.2, 0.9], [0.5, 0.6]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.3, 0.7], [0.5, 0.1]], dtype=torch.float64, requires_grad=True)
    expected = np.mean([sum(a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
                            for a, b in zip(pr, qr)) for pr, qr in ([(0.2, 0.9), (0.3, 0.7)], [(0.5, 0.6), (0.5, 0.1)])])
    kl = bernoulli_kl(p, q)
    assert kl.item() == pytest.approx(expected, rel=1e-6)
    kl.backward()
    assert q.grad is None and p.grad is not None
    assert bernoulli_kl(q.detach(), q.detach()).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_is_the_contrastive_term_plus_the_weighted_kl():
    g = cpu_generator(4)
    enc = CIBHashEncoder(8, 16, 6, g)
    x_i, x_j = torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)
    loss, contrastive, kl = cibhash_losses(enc, x_i, x_j, 0.3, 0.5)
    p_i, p_j = torch.sigmoid(enc(x_i)), torch.sigmoid(enc(x_j))
    torch.testing.assert_close(contrastive, nt_xent(torch.sign(p_i - 0.5), torch.sign(p_j - 0.5), 0.3))
    torch.testing.assert_close(kl, 0.5 * (bernoulli_kl(p_i, p_j) + bernoulli_kl(p_j, p_i)))
    torch.testing.assert_close(loss, contrastive + 0.5 * kl)


def test_view_pairs_are_two_different_views_covering_the_pool():
    first, second = draw_view_pairs(20000, 4, cpu_generator(0))
    assert (first != second).all() and first.min() >= 0 and second.max() < 4
    pairs = np.bincount((first * 4 + second).numpy(), minlength=16).reshape(4, 4)
    off = pairs[~np.eye(4, dtype=bool)]
    assert np.all(np.diag(pairs) == 0) and abs(off / off.sum() - 1 / 12).max() < 0.01


# ----------------------------------------------------------------------------- training


def test_losses_decrease_on_small_data(fitted):
    model, *_ = fitted
    h = model.history_
    assert len(h["loss"]) == SMALL["epochs"] and set(h) == {"loss", "contrastive", "kl"}
    assert np.mean(h["loss"][-3:]) < h["loss"][0] - 0.1
    assert np.mean(h["contrastive"][-3:]) < h["contrastive"][0] - 0.1


def test_bits_are_balanced_and_codes_keep_clusters(fitted):
    model, X, views, labels = fitted
    bits = np.unpackbits(model.encode(X), axis=1, bitorder="little")[:, :16]
    share = bits.mean(axis=0)
    assert share.min() > 0.1 and share.max() < 0.9, share
    chance = sum(np.mean(labels == c) ** 2 for c in np.unique(labels))  # a random ranking's precision
    assert mean_average_precision(bits, bits, labels, labels) > chance + 0.3


def test_code_is_the_sign_of_the_probability_minus_a_half(fitted):
    model, X, _, _ = fitted
    enc = torch.nn.Sequential(torch.nn.Linear(X.shape[1], SMALL["hidden"]), torch.nn.ReLU(),
                              torch.nn.Linear(SMALL["hidden"], 16)).double()
    with torch.no_grad():
        enc[0].weight.copy_(torch.from_numpy(model.hidden_weight_.T))
        enc[0].bias.copy_(torch.from_numpy(model.hidden_bias_))
        enc[2].weight.copy_(torch.from_numpy(model.out_weight_.T))
        enc[2].bias.copy_(torch.from_numpy(model.out_bias_))
        p = torch.sigmoid(enc(torch.from_numpy(X).double())).numpy()
    np.testing.assert_array_equal(model.project(X) >= 0, p >= 0.5)


def test_determinism_for_a_seed_on_cpu():
    X, views, _ = clustered_with_aug_views(n=120, d=8)
    params = {"epochs": 2, "batch_size": 16, "hidden": 16, "device": "cpu"}
    a = CIBHash(8, seed=5, **params).fit(X, aug_views=views)
    b = CIBHash(8, seed=5, **params).fit(X, aug_views=views)
    c = CIBHash(8, seed=6, **params).fit(X, aug_views=views)
    for name in ("hidden_weight_", "hidden_bias_", "out_weight_", "out_bias_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.history_ == b.history_
    assert not np.array_equal(a.out_weight_, c.out_weight_)


def test_n_parameters_is_the_mlp_encoder(fitted):
    model, X, _, _ = fitted
    d, h, r = X.shape[1], SMALL["hidden"], 16
    assert model.n_parameters() == d * h + h + h * r + r
    encoder = CIBHashEncoder(d, h, r, cpu_generator(0))
    assert model.n_parameters() == sum(p.numel() for p in encoder.parameters())


def test_schedule_presets_and_the_recorded_pool_size(fitted):
    model, *_ = fitted
    assert model.resolved_params() == {"epochs": 15, "batch_size": 32, "view_pool_size": 6, "device": "cpu"}
    assert CIBHash(64, schedule="authors").resolved_schedule() == {"epochs": 60, "batch_size": 64}
    assert CIBHash(16, schedule="authors").resolved_schedule() == {"epochs": 80, "batch_size": 64}
    assert CIBHash(16, schedule="authors", epochs=5).resolved_schedule()["epochs"] == 5
    from hashbench.methods.cibhash import SCHEDULES

    assert CIBHash(16).resolved_schedule() == SCHEDULES["cpu"]


def test_aug_views_are_needed_to_fit_but_not_to_encode(fitted):
    model, X, views, _ = fitted
    np.testing.assert_array_equal(model.encode(X), model.encode(X, aug_views=views))
    with pytest.raises(InputError, match="aug_views"):
        CIBHash(8, **SMALL).fit(X)


@pytest.mark.parametrize("shape, message", [
    ((10, 1, 4), r"V >= 2"), ((9, 3, 4), r"\(10, V >= 2, 4\)"), ((10, 3, 5), r"got \(10, 3, 5\)"), ((10, 12), "shape"),
])
def test_aug_views_of_the_wrong_shape_are_refused(shape, message):
    with pytest.raises(InputError, match=message):
        check_aug_views(np.zeros(shape, np.float32), 10, 4)
    bad = np.zeros((10, 2, 4), np.float32)
    bad[3, 1, 2] = np.nan
    with pytest.raises(InputError, match="1 NaN"):
        check_aug_views(bad, 10, 4)
