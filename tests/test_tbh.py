"""Auto-Encoding Twin-Bottleneck Hashing (methods.tbh, methods.tbh_model).

The stochastic neuron is SGH's (`methods.sgh_model.DoublyStochasticNeuron`), whose forward and
backward are tested in tests/test_sgh.py; here: the code-driven graph, the graph convolution, the
losses, the two-player training step, and the fitted hasher.
"""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from threadpoolctl import threadpool_limits

from hashbench.methods.base import InputError
from hashbench.methods.tbh import SCHEDULES, TBH
from hashbench.methods.tbh_model import (
    TBHNet,
    adversarial_loss,
    hamming_affinity,
    sample_priors,
    tbh_losses,
)
from retrieval_reference import mean_average_precision


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The CI machines have 2 shared cores: threaded BLAS/OpenMP on these small problems only contends.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def clustered(n=600, d=32, k=8, seed=0, spread=0.5):
    # Non-negative, as the post-ReLU features the authors' ReLU output reconstructs.
    rng = np.random.default_rng(seed)
    centres = rng.random((k, d)) * 3
    labels = rng.integers(0, k, n)
    X = np.abs(centres[labels] + spread * rng.standard_normal((n, d)))
    return X.astype(np.float32), labels


SMALL = dict(iterations=400, batch_size=100, hidden=64, continuous_dim=32, lr=1e-3, device="cpu")


def small_net(d=12, r=8, c=6, seed=0):
    return TBHNet(d, r, hidden=16, continuous_dim=c, graph_power=1.4, output="relu",
                  generator=torch.Generator().manual_seed(seed)).double()


# ----------------------------------------------------------------------------- graph and convolution


def test_affinity_is_one_minus_normalised_hamming_to_the_power_1_4():
    rng = np.random.default_rng(0)
    b = (rng.random((9, 16)) < 0.5).astype(np.float64)
    b[3] = 1.0 - b[0]  # complementary codes: distance 1, affinity 0
    b[5] = b[1]  # identical codes: affinity 1
    A = hamming_affinity(torch.from_numpy(b)).numpy()
    hamming = cdist(b, b, metric="hamming")  # fraction of differing bits
    np.testing.assert_allclose(A, (1.0 - hamming) ** 1.4, rtol=1e-12, atol=1e-15)
    assert A[0, 3] == 0.0 and A[1, 5] == 1.0 and np.all(np.diag(A) == 1.0)
    np.testing.assert_allclose(hamming_affinity(torch.from_numpy(b), 2.0).numpy(), (1.0 - hamming) ** 2, rtol=1e-12)


def test_affinity_gradient_reaches_the_codes_as_the_authors_formula():
    # d/db_ik of (1 - |b_i (b_j - 1)' + (b_i - 1) b_j'| / r)^p for i != j, away from equal codes:
    # |.| = Hamming h_ij, dh/db_ik = 1 - 2 b_jk, so dA_ij/db_ik = -p (1 - h/r)^(p-1) (1 - 2 b_jk) / r.
    rng = np.random.default_rng(1)
    n, r, p = 5, 10, 1.4
    b = (rng.random((n, r)) < 0.5).astype(np.float64)
    tb = torch.from_numpy(b).requires_grad_(True)
    weight = rng.standard_normal((n, n))
    np.fill_diagonal(weight, 0.0)
    (hamming_affinity(tb, p) * torch.from_numpy(weight)).sum().backward()
    h = cdist(b, b, metric="cityblock")
    expected = np.zeros_like(b)
    for i in range(n):
        for j in range(n):
            if i != j and h[i, j] > 0:
                g = -p * (1 - h[i, j] / r) ** (p - 1) * (1 - 2 * b[j]) / r
                expected[i] += (weight[i, j] + weight[j, i]) * g  # A is symmetric in i, j
    np.testing.assert_allclose(tb.grad.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_twin_bottleneck_is_the_normalised_convolution_with_the_bias_propagated():
    net = small_net()
    rng = np.random.default_rng(2)
    with torch.no_grad():  # a non-zero bias column, to see that the graph propagates it
        net.graph_conv.lin.weight.copy_(torch.from_numpy(rng.standard_normal(net.graph_conv.lin.weight.shape)))
    b = (rng.random((7, 8)) < 0.5).astype(np.float64)
    y = rng.random((7, 6))
    got = net.twin_bottleneck(torch.from_numpy(b), torch.from_numpy(y)).detach().numpy()

    A = (1.0 - cdist(b, b, metric="hamming")) ** 1.4
    deg = A.sum(axis=1)
    L = A / np.sqrt(np.outer(deg, deg))
    W = net.graph_conv.lin.weight.detach().numpy()  # (c, c + 1): the last column is the Dense bias
    expected = 1.0 / (1.0 + np.exp(-(L @ (y @ W[:, :6].T + W[:, 6]))))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # The propagated bias differs from a bias added after the convolution (rows of L do not sum to 1).
    assert not np.allclose(L.sum(axis=1), 1.0)


def test_binary_bottleneck_at_xi_one_half_is_the_sign_of_the_logits():
    net = small_net()
    x = torch.from_numpy(np.random.default_rng(3).random((20, 12)))
    logits = net.logits(x)
    b, _, _ = net(x, torch.zeros(20, 8, dtype=torch.float64))
    np.testing.assert_array_equal(b.detach().numpy(), (logits >= 0).double().detach().numpy())
    # ... through SGH's neuron: the gradient reaching the logits is sigma(1 - sigma) times the upstream
    # gradient, so the bottleneck's bias gets the column sums of that product.
    upstream = torch.from_numpy(np.random.default_rng(4).standard_normal((20, 8)))
    (b * upstream).sum().backward()
    prob = torch.sigmoid(logits).detach().numpy()
    np.testing.assert_allclose(net.binary_head.bias.grad.numpy(), (prob * (1 - prob) * upstream.numpy()).sum(0),
                               rtol=1e-12)


# ----------------------------------------------------------------------------- losses


def test_losses_restate_the_authors_train_step():
    net = small_net()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(10, 12, generator=g, dtype=torch.float64)
    prior_b, prior_c = (s.double() for s in sample_priors(10, 8, 6, g))
    losses = tbh_losses(net, x, torch.zeros(10, 8, dtype=torch.float64), prior_b, prior_c)
    b, t, x_hat = net(x, torch.zeros(10, 8, dtype=torch.float64))

    def bce_pair(disc, real, fake):
        w, a = disc.weight.detach().numpy().ravel(), disc.bias.detach().numpy()
        p_real = 1 / (1 + np.exp(-(real.detach().numpy() @ w + a)))
        p_fake = 1 / (1 + np.exp(-(fake.detach().numpy() @ w + a)))
        return -np.mean(np.log(p_real)) - np.mean(np.log(1 - p_fake))

    rec = 0.5 * np.sum((x_hat.detach().numpy() - x.numpy()) ** 2)
    adv_b = bce_pair(net.discriminator_binary, prior_b, b)
    adv_c = bce_pair(net.discriminator_continuous, prior_c, t)
    np.testing.assert_allclose(losses["reconstruction"].item(), rec, rtol=1e-12)
    np.testing.assert_allclose(losses["adv_binary"].item(), adv_b, rtol=1e-12)
    np.testing.assert_allclose(losses["adv_continuous"].item(), adv_c, rtol=1e-12)
    np.testing.assert_allclose(losses["actor"].item(), rec - adv_b - adv_c, rtol=1e-12)
    np.testing.assert_allclose(losses["critic"].item(), adv_b + adv_c, rtol=1e-12)
    assert set(np.unique(prior_b.numpy())) <= {0.0, 1.0}
    assert prior_c.min() >= 0 and prior_c.max() < 1


def _batch(seed=5, rows=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, 12, generator=g, dtype=torch.float64) * 2
    prior_b, prior_c = (s.double() for s in sample_priors(rows, 8, 6, g))
    return x, torch.zeros(rows, 8, dtype=torch.float64), prior_b, prior_c


def _minimise(net, objective, params, steps, lr=1e-2):
    """Adam on ``objective(losses)`` over ``params`` only; the objective's values before each step."""
    batch = _batch()
    opt = torch.optim.Adam(params, lr=lr)
    values = []
    for _ in range(steps):
        value = objective(tbh_losses(net, *batch))
        values.append(value.item())
        opt.zero_grad()
        value.backward()
        opt.step()
    values.append(objective(tbh_losses(net, *batch)).item())
    return values


def test_critic_loss_decreases_when_the_discriminators_train():
    net = small_net()
    values = _minimise(net, lambda losses: losses["critic"], net.critic_parameters(), steps=60)
    assert values[-1] < 0.9 * values[0], (values[0], values[-1])


def test_actor_adversarial_part_decreases_against_fixed_discriminators():
    # The actor's adversarial part, -adv_binary - adv_continuous, falls when the auto-encoder trains on it.
    net = small_net()
    with torch.no_grad():  # discriminators that currently tell the two kinds of vectors apart
        net.discriminator_continuous.weight.fill_(-1.0)
        net.discriminator_binary.weight.fill_(0.5)
    values = _minimise(net, lambda losses: -losses["adv_binary"] - losses["adv_continuous"],
                       net.actor_parameters(), steps=40)
    assert values[-1] < values[0] - 0.05, (values[0], values[-1])


def test_reconstruction_decreases_when_the_auto_encoder_trains():
    net = small_net()
    values = _minimise(net, lambda losses: losses["reconstruction"], net.actor_parameters(), steps=60)
    assert values[-1] < 0.75 * values[0], (values[0], values[-1])


# ----------------------------------------------------------------------------- the fitted hasher


@pytest.fixture(scope="module")
def fitted():
    X, labels = clustered()
    return TBH(16, seed=0, **SMALL).fit(X[:500]), X, labels


def test_losses_decrease_during_training(fitted):
    model, _, _ = fitted
    history = model.history_
    assert set(history) == {"actor", "critic", "reconstruction", "adv_binary", "adv_continuous"}
    assert len(history["actor"]) == 400 // 5  # one entry per ceil(500 / 100) = 5 steps
    rec = history["reconstruction"]
    assert np.mean(rec[-5:]) < 0.7 * rec[0], (rec[0], rec[-5:])
    assert np.mean(history["actor"][-5:]) < 0.7 * history["actor"][0]


def test_bits_are_balanced_and_retrieval_beats_chance(fitted):
    model, X, labels = fitted
    bits = model.project(X) >= 0
    means = bits[:500].mean(axis=0)
    assert np.all((means >= 0.1) & (means <= 0.9)), means
    score = mean_average_precision(bits[500:], bits[:500], labels[500:], labels[:500])
    assert score > 0.3  # chance is about 1/8 (0.43 measured with these settings)


def test_codes_are_the_encoders_binary_bottleneck(fitted):
    model, X, _ = fitted
    hidden = np.maximum(X.astype(np.float64) @ model.hidden_weight_ + model.hidden_bias_, 0.0)
    np.testing.assert_allclose(model.project(X), hidden @ model.code_weight_ + model.code_bias_, rtol=1e-10,
                               atol=1e-10)


def test_n_parameters_counts_the_encoder_only(fitted):
    model, _, _ = fitted
    d, m, r, c = 32, 64, 16, 32
    assert model.n_parameters() == d * m + m + m * r + r
    info = model.run_info()
    # continuous bottleneck, graph layer (with its bias column), decoder
    assert info["decoder_parameters"] == (m * c + c) + (c + 1) * c + (c * m + m) + (m * d + d)
    assert info["discriminator_parameters"] == (r + 1) + (c + 1)
    assert info["trained_parameters"] == model.n_parameters() + info["decoder_parameters"] + (r + 1) + (c + 1)
    assert model.resolved_params() == {"iterations": 400, "batch_size": 100, "lr": 1e-3, "device": "cpu"}


def test_seed_determines_the_model():
    X, _ = clustered(n=200, d=10)
    params = dict(iterations=15, batch_size=50, hidden=16, continuous_dim=8, xi="stochastic", device="cpu")
    a = TBH(8, seed=4, **params).fit(X)
    b = TBH(8, seed=4, **params).fit(X)
    c = TBH(8, seed=5, **params).fit(X)
    np.testing.assert_array_equal(a.code_weight_, b.code_weight_)
    np.testing.assert_array_equal(a.hidden_weight_, b.hidden_weight_)
    assert a.history_ == b.history_
    assert not np.allclose(a.code_weight_, c.code_weight_)


def test_schedule_presets_fill_what_is_left_as_none():
    assert TBH(8, schedule="authors").resolved_schedule() == {"iterations": 100_000, "batch_size": 400, "lr": 1e-4}
    assert TBH(8).resolved_schedule() == SCHEDULES["cpu"]
    assert TBH(8, schedule="authors", iterations=7).resolved_schedule()["iterations"] == 7
    X, _ = clustered(n=60, d=6)
    model = TBH(4, iterations=2, hidden=8, continuous_dim=4, device="cpu").fit(X)
    assert model.resolved_params()["batch_size"] == 60  # the preset's 400 cut to the training rows


@pytest.mark.parametrize("bad", [{"schedule": "gpu"}, {"lr": 0.0}, {"batch_size": 1}, {"iterations": 0},
                                 {"graph_power": 0.0}, {"output": "tanh"}, {"xi": "sometimes"},
                                 {"device": "tpu"}])
def test_bad_hyper_parameters_raise_input_error(bad):
    X, _ = clustered(n=50, d=4)
    with pytest.raises(InputError):
        TBH(4, **{"iterations": 1, **bad}).fit(X)


def test_the_default_schedule_does_not_collapse_the_codes_on_small_scale_inputs():
    """The former default rate (1e-3) gave every digits image the same 16-bit code (pixels in [0, 1]): the
    binary discriminator's shared gradient moved every row's logits together within 50 steps. The default
    (1,500 x 400 at 4e-4, chosen on CIFAR-10's validation split) keeps the codes apart."""
    from sklearn.datasets import load_digits

    X = (load_digits().data / 16.0).astype(np.float32)
    codes = TBH(16, seed=0, device="cpu").fit(X).encode(X)
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, :16]
    assert len({row.tobytes() for row in codes}) > 20
    assert np.count_nonzero(bits.min(axis=0) == bits.max(axis=0)) < 16
