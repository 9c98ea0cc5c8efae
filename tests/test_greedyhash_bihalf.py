"""GreedyHash-unsupervised and BiHalf (methods.greedyhash, methods.bihalf, their shared
methods._cosine_hash and methods._cosine_hash_model)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from hashbench.methods._cosine_hash_model import (
    BiHalf,
    CosineHashHead,
    SignStraightThrough,
    batch_losses,
    bihalf_codes,
    cosine_preservation_loss,
    cubic_quantization_loss,
)
from hashbench.methods._torch_device import cpu_generator
from hashbench.methods.base import InputError
from hashbench.methods.bihalf import BiHalfHash
from hashbench.methods.greedyhash import GreedyHash
from retrieval_reference import mean_average_precision


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The CI machines have 2 shared cores: threaded BLAS/OpenMP on these small problems only contends.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def clustered(n=600, d=32, k=8, seed=0, non_negative=False):
    """Clustered features around zero (cosines of pairs span [-1, 1]) or, with ``non_negative``, their
    absolute values (like pooled CNN features: every pair has a positive cosine)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 2
    labels = rng.integers(0, k, n)
    X = centres[labels] + 0.5 * rng.standard_normal((n, d))
    return (np.abs(X) if non_negative else X).astype(np.float32), labels


# ----------------------------------------------------------------------------- layers and losses


def test_cosine_preservation_loss_matches_numpy_reference():
    rng = np.random.default_rng(1)
    b, x = rng.standard_normal((7, 5)), rng.random((7, 9))  # odd batch: the last row is in no pair
    cos = lambda u, v: np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)  # noqa: E731
    expected = np.mean((cos(b[:3], b[3:6]) - cos(x[:3], x[3:6])) ** 2)
    got = cosine_preservation_loss(torch.from_numpy(b), torch.from_numpy(x)).item()
    assert got == pytest.approx(expected, rel=1e-12)
    h = rng.standard_normal((4, 3))
    assert cubic_quantization_loss(torch.from_numpy(h)).item() == pytest.approx(np.mean(np.abs(np.abs(h) - 1) ** 3))


def test_bihalf_layer_codes_exactly_half_of_an_even_batch_plus_one_per_bit():
    h = torch.randn(10, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = bihalf_codes(h)
    assert set(b.unique().tolist()) == {-1.0, 1.0}
    np.testing.assert_array_equal((b == 1).sum(dim=0).numpy(), np.full(6, 5))
    # the +1 rows are the upper half of each column
    for j in range(6):
        assert h[b[:, j] == 1, j].min() > h[b[:, j] == -1, j].max()
    # odd batch: floor(N/2) rows are +1
    np.testing.assert_array_equal((bihalf_codes(h[:7]) == 1).sum(dim=0).numpy(), np.full(6, 3))


def test_sign_layer_gradient_is_the_identity():
    h = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    g = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = SignStraightThrough.apply(h)
    np.testing.assert_array_equal(out.detach().numpy(), np.sign(h.detach().numpy()))
    (out * g).sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), g.numpy())


def test_bihalf_layer_gradient_is_the_authors_formula():
    gamma = 6.0
    h = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    g = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    b = BiHalf.apply(h, gamma)
    (b * g).sum().backward()
    U, B = h.detach().numpy(), b.detach().numpy()
    np.testing.assert_allclose(h.grad.numpy(), g.numpy() + gamma * (U - B) / B.size, rtol=1e-12, atol=0)


def test_greedyhash_loss_is_similarity_plus_weighted_cubic_term():
    X, _ = clustered(n=16, d=8)
    head = CosineHashHead(8, 4, torch.Generator().manual_seed(0))
    x = torch.from_numpy(X)
    loss, similarity, quantization = batch_losses(head, x, "sign", 0.0, 0.1)
    h = head(x).detach()
    assert similarity.item() == pytest.approx(cosine_preservation_loss(torch.sign(h), x).item())
    assert quantization.item() == pytest.approx(cubic_quantization_loss(h).item())
    assert loss.item() == pytest.approx(similarity.item() + 0.1 * quantization.item())
    loss, similarity, _ = batch_losses(head, x, "bihalf", 6.0, 0.0)
    assert loss.item() == similarity.item() == pytest.approx(cosine_preservation_loss(bihalf_codes(h), x).item())


# ----------------------------------------------------------------------------- fitting

FAST = {"epochs": 40, "batch_size": 50, "lr": 0.05, "lr_step_epochs": 30, "device": "cpu"}


@pytest.fixture(scope="module", params=[GreedyHash, BiHalfHash], ids=["greedyhash", "bihalf"])
def fitted(request):
    X, labels = clustered()
    return request.param(16, seed=0, **FAST).fit(X[:500]), X, labels


def _full_batch_loss(model, X, weight, bias):
    """The training loss of ``model``'s layer with the given ``W``, ``b`` on all of ``X`` as one batch."""
    gamma, alpha = model._layer_options()
    head = CosineHashHead(X.shape[1], model.n_bits, cpu_generator(model.seed))
    with torch.no_grad():
        if weight is not None:
            head.linear.weight.copy_(torch.from_numpy(weight.T))
            head.linear.bias.copy_(torch.from_numpy(bias))
        return batch_losses(head, torch.from_numpy(X), model.layer, gamma, alpha)[0].item()


def test_loss_decreases(fitted):
    model, X, _ = fitted
    assert len(model.history_["loss"]) == 40 == model.n_iter_
    initial = _full_batch_loss(model, X[:500], None, None)  # the seed's initial layer
    final = _full_batch_loss(model, X[:500], model.weight_, model.bias_)
    assert final < 0.9 * initial, (initial, final)


def test_bits_are_balanced_and_retrieval_beats_chance(fitted):
    model, X, labels = fitted
    bits = model.project(X) >= 0
    means = bits[:500].mean(axis=0)
    assert np.all((means >= 0.1) & (means <= 0.9)), means
    score = mean_average_precision(bits[500:], bits[:500], labels[500:], labels[:500])
    assert score > 0.5  # chance is about 1/8


def test_bihalf_bits_are_nearly_even_on_the_training_rows():
    X, _ = clustered(non_negative=True)
    model = BiHalfHash(16, seed=0, **FAST).fit(X[:500])
    means = (model.project(X[:500]) >= 0).mean(axis=0)
    assert np.all(np.abs(means - 0.5) <= 0.1), means


def test_greedyhash_wastes_bits_on_non_negative_features_unless_centred():
    # Every pair of non-negative features has a positive cosine; sign codes meet such targets with bits
    # shared by all rows (on CIFAR-10's features 20 of 64 bits, the README's GreedyHash section).
    X, _ = clustered(non_negative=True)
    raw = GreedyHash(16, seed=0, **FAST).fit(X[:500])
    centred = GreedyHash(16, seed=0, center_features=True, **FAST).fit(X[:500])
    raw_means = (raw.project(X[:500]) >= 0).mean(axis=0)
    centred_means = (centred.project(X[:500]) >= 0).mean(axis=0)
    assert np.sum(np.abs(raw_means - 0.5) > 0.4) >= 4, raw_means
    assert np.sum(np.abs(centred_means - 0.5) > 0.4) == 0, centred_means


def test_centring_is_folded_into_the_bias():
    X, _ = clustered(n=200, d=12, non_negative=True)
    params = dict(epochs=3, batch_size=50, lr=0.01, device="cpu")
    folded = BiHalfHash(8, seed=2, center_features=True, **params).fit(X)
    plain = BiHalfHash(8, seed=2, **params).fit(X - X.mean(axis=0, dtype=np.float64).astype(np.float32))
    np.testing.assert_allclose(folded.project(X), plain.project(X - folded.input_mean_.astype(np.float32)),
                               rtol=1e-5, atol=1e-5)
    assert folded.n_parameters() == 12 * 8 + 8


def test_schedule_and_rate_steps_are_resolved(fitted):
    model, _, _ = fitted
    assert model.resolved_params() == {"batch_size": 50, "epochs": 40, "lr": 0.05, "lr_step_epochs": 30,
                                       "device": "cpu"}
    lr = model.history_["lr"]
    assert lr[29] == 0.05 and lr[30] == pytest.approx(0.005)


@pytest.mark.parametrize("cls, authors", [
    (GreedyHash, {"batch_size": 64, "epochs": 200, "lr": 1e-4, "lr_step_epochs": 30}),
    (BiHalfHash, {"batch_size": 32, "epochs": 300, "lr": 1e-4, "lr_step_epochs": 120}),
])
def test_authors_schedule_preset_and_explicit_values_win(cls, authors):
    assert cls(8, schedule="authors").resolved_schedule() == authors
    assert cls(8, schedule="authors", epochs=3).resolved_schedule() == {**authors, "epochs": 3}


@pytest.mark.parametrize("cls", [GreedyHash, BiHalfHash])
def test_n_parameters_counts_the_layer(cls):
    X, _ = clustered(n=40, d=12)
    model = cls(8, epochs=1, batch_size=20, device="cpu").fit(X)
    assert model.n_parameters() == 12 * 8 + 8
    assert model.weight_.shape == (12, 8) and model.bias_.shape == (8,)
    np.testing.assert_allclose(model.project(X), X.astype(np.float64) @ model.weight_ + model.bias_)


@pytest.mark.parametrize("cls", [GreedyHash, BiHalfHash])
def test_seed_determines_the_model_on_cpu(cls):
    X, _ = clustered(n=200, d=10)
    params = dict(epochs=3, batch_size=32, lr=0.01, device="cpu")
    a = cls(8, seed=4, **params).fit(X).weight_
    b = cls(8, seed=4, **params).fit(X).weight_
    c = cls(8, seed=5, **params).fit(X).weight_
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("cls", [GreedyHash, BiHalfHash])
@pytest.mark.parametrize("bad", [{"schedule": "gpu"}, {"lr": 0.0}, {"batch_size": 1}, {"epochs": 0},
                                 {"lr_step_epochs": 0}, {"momentum": 1.0}, {"device": "tpu"}])
def test_bad_hyper_parameters_raise_input_error(cls, bad):
    X, _ = clustered(n=50, d=4)
    with pytest.raises(InputError):
        cls(4, **{"epochs": 1, **bad}).fit(X)


@pytest.mark.parametrize("cls, bad", [(GreedyHash, {"alpha": -0.1}), (BiHalfHash, {"gamma": -1.0})])
def test_own_hyper_parameters_are_validated(cls, bad):
    with pytest.raises(InputError):
        cls(4, **bad).fit(np.ones((10, 3), dtype=np.float32))


def test_choosing_and_validating_the_methods_does_not_import_torch():
    code = (
        "import sys, hashbench.methods.registry as r; "
        "[r.get_method(n)(64).validate_params() for n in ('greedyhash', 'bihalf')]; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
