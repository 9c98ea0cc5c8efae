"""DeepBit on fixed features (methods.deepbit, methods.deepbit_model)."""
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from hashbench.methods.base import InputError
from hashbench.methods.deepbit import DeepBit, head_outputs
from hashbench.methods.deepbit_model import (
    DeepBitHead,
    balance_loss,
    quantization_loss,
    rotation_loss,
    rotation_weights,
)
from retrieval_reference import mean_average_precision

ANGLES = (-10.0, -5.0, 5.0, 10.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def clustered_with_views(n=600, d=32, k=8, seed=0):
    """Clustered features; a view at angle θ moves the row along a fixed random direction per row,
    further for larger |θ| (a stand-in for the features of a rotated image)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 2
    labels = rng.integers(0, k, n)
    X = 1.0 + centres[labels] + 0.5 * rng.standard_normal((n, d))
    drift = rng.standard_normal((n, d))
    views = np.stack([X + 0.05 * abs(a) * drift for a in ANGLES], axis=1)
    return X.astype(np.float32), views.astype(np.float32), labels




# ----------------------------------------------------------------------------- the losses


def test_losses_match_numpy_references():
    rng = np.random.default_rng(1)
    F = rng.random((7, 5))
    Fv = rng.random((7, 4, 5))
    b = (F > 0.5).astype(float)
    assert quantization_loss(torch.from_numpy(F)).item() == pytest.approx(np.sum((b - F) ** 2) / (2 * 7), rel=1e-12)
    mu = b.mean(0)
    assert balance_loss(torch.from_numpy(F), "straight-through").item() == pytest.approx(0.5 * np.sum((mu - 0.5) ** 2))
    assert balance_loss(torch.from_numpy(F), "activation").item() == pytest.approx(0.5 * np.sum((F.mean(0) - 0.5) ** 2))
    C = np.exp(-0.5 * (np.array(ANGLES) / 5) ** 2)
    np.testing.assert_allclose(rotation_weights(ANGLES, 5.0).numpy(), C, rtol=1e-6)
    expected = sum(C[v] * np.sum((F[n] - Fv[n, v]) ** 2) for n in range(7) for v in range(4)) / (2 * 7 * 5)
    got = rotation_loss(torch.from_numpy(F), torch.from_numpy(Fv), torch.from_numpy(C)).item()
    assert got == pytest.approx(expected, rel=1e-12)


def _head(d=16, r=8, bias=0.0):
    head = DeepBitHead(d, r, "sigmoid", 0.3, torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        head.linear.bias.fill_(bias)
    return head


def _step(head, loss, lr):
    head.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in head.parameters():
            p -= lr * p.grad


def test_rotation_term_pulls_a_views_code_toward_its_image():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((20, 16)))
    views = x[:, None, :] + torch.from_numpy(0.5 * rng.standard_normal((20, 4, 16)))
    head = _head()
    C = rotation_weights(ANGLES, 5.0).double()

    def gap():
        with torch.no_grad():
            return (head(views) - head(x)[:, None, :]).pow(2).sum(-1).sum().item()

    before = gap()
    _step(head, rotation_loss(head(x), head(views), C), lr=5.0)
    after_one = gap()
    assert after_one < before
    for _ in range(50):
        _step(head, rotation_loss(head(x), head(views), C), lr=5.0)
    assert gap() < 0.5 * after_one


def test_quantization_term_pushes_outputs_away_from_one_half():
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((30, 16)))
    head = _head()
    before = (head(x) - 0.5).abs().sum().item()
    _step(head, quantization_loss(head(x)), lr=1.0)
    assert (head(x) - 0.5).abs().sum().item() > before


def test_balance_term_evens_out_skewed_bits():
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((64, 16)))
    head = _head(bias=1.0)  # most outputs above 0.5: every bit is mostly 1
    imbalance = lambda: ((head(x) > 0.5).double().mean(0) - 0.5).abs().sum().item()  # noqa: E731
    before = imbalance()
    for _ in range(20):
        _step(head, balance_loss(head(x), "straight-through"), lr=20.0)
    assert imbalance() < 0.5 * before


# ----------------------------------------------------------------------------- fitting

# The paper's sigmoid head at a rate 50x the default: the loss terms' mechanics in a few passes (a ReLU head
# at this rate loses every unit below zero on these inputs; its default rate is tested below).
FAST = {"stage1_epochs": 30.0, "stage1_step_epochs": 20.0, "stage1_lr": 0.05, "stage2_epochs": 2.0,
        "stage2_lr": 0.005, "activation": "sigmoid", "device": "cpu"}


@pytest.fixture(scope="module")
def fitted():
    X, views, labels = clustered_with_views()
    model = DeepBit(16, seed=0, **FAST).fit(X[:500], views=views[:500])
    return model, X, views, labels


def test_stage_one_loss_decreases_and_both_stages_are_logged(fitted):
    model, _, _, _ = fitted
    h = model.history_
    stage = np.array(h["stage"])
    loss = np.array(h["loss"])[stage == 1]
    assert len(loss) == 30 and np.sum(stage == 2) == 2  # one entry per pass over the 500 rows
    assert np.mean(loss[-3:]) < 0.7 * loss[0]
    assert set(h) == {"loss", "quantization", "balance", "rotation", "stage", "lr"}
    assert all(len(v) == len(stage) for v in h.values())


def test_iterations_scale_with_the_training_set(fitted):
    model, _, _, _ = fitted
    # stage 1: 30 passes × 500 rows / 32; stage 2: 2 passes × 500 rows / (30 pairs // 5 angles = 6 images)
    assert model.n_iter_ == (round(30 * 500 / 32), round(2 * 500 / 6))
    resolved = model.resolved_params()
    assert (resolved["stage1_iterations"], resolved["stage2_iterations"]) == model.n_iter_
    assert resolved["stage2_images_per_batch"] == 6 and resolved["device"] == "cpu"
    info = model.run_info()
    assert info["loss_impl"] == "paper-autograd" and not set(info) & set(resolved)


def test_bits_are_balanced_and_retrieval_beats_chance(fitted):
    model, X, _, labels = fitted
    bits = model.encode(X)
    unpacked = np.unpackbits(bits, axis=1, count=16, bitorder="little")
    means = unpacked[:500].mean(axis=0)
    assert np.all((means >= 0.1) & (means <= 0.9)), means
    score = mean_average_precision(unpacked[500:], unpacked[:500], labels[500:], labels[:500])
    assert score > 0.6  # chance is about 1/8


def test_threshold_is_the_training_mean_activation(fitted):
    model, X, _, _ = fitted
    F = head_outputs(X[:500], model.weight_, model.bias_, model.activation)
    np.testing.assert_allclose(model.threshold_, np.full(16, F.mean()))
    np.testing.assert_allclose(model.project(X[:500]), F - F.mean())
    assert model.n_parameters() == 32 * 16 + 16 + 1


def test_other_threshold_rules():
    X, views, _ = clustered_with_views(n=120, d=8)
    params = dict(stage1_epochs=2.0, stage2_epochs=1.0, device="cpu")
    per_bit = DeepBit(6, threshold="train-bit-mean", **params).fit(X, views=views)
    F = head_outputs(X, per_bit.weight_, per_bit.bias_, per_bit.activation)
    np.testing.assert_allclose(per_bit.threshold_, F.mean(0))
    assert per_bit.n_parameters() == 8 * 6 + 6 + 6
    half = DeepBit(6, threshold=0.5, **params).fit(X, views=views)
    np.testing.assert_array_equal(half.threshold_, np.full(6, 0.5))


def test_views_are_needed_to_fit_but_not_to_encode(fitted):
    model, X, views, _ = fitted
    np.testing.assert_array_equal(model.encode(X), model.encode(X, views=views))
    with pytest.raises(InputError, match="views"):
        DeepBit(8).fit(X)


@pytest.mark.parametrize("shape", [(600, 3, 32), (600, 4, 31), (600, 32)])
def test_views_of_the_wrong_shape_raise_input_error(shape):
    X, _, _ = clustered_with_views()
    with pytest.raises(InputError, match="views"):
        DeepBit(8, stage1_epochs=1.0, device="cpu").fit(X, views=np.zeros(shape, np.float32))


def test_the_default_is_the_releases_relu_and_the_papers_sigmoid_trains_too():
    assert DeepBit(8).activation == "relu"  # chosen on the validation split (module docstring)
    X, views, labels = clustered_with_views(n=300, d=16, seed=5)
    relu = DeepBit(8, stage1_epochs=10.0, stage1_lr=0.02, stage2_epochs=1.0, device="cpu").fit(X, views=views)
    F = head_outputs(X, relu.weight_, relu.bias_, "relu")
    assert F.min() >= 0 and np.isfinite(relu.history_["loss"]).all()
    sigmoid = DeepBit(8, activation="sigmoid", stage1_epochs=10.0, stage1_lr=0.02, stage2_epochs=1.0,
                      device="cpu").fit(X, views=views)
    F = head_outputs(X, sigmoid.weight_, sigmoid.bias_, "sigmoid")
    assert ((F > 0) & (F < 1)).all() and np.isfinite(sigmoid.history_["loss"]).all()


@pytest.mark.parametrize("bad", [{"activation": "tanh"}, {"threshold": "median"}, {"balance_estimator": "x"},
                                 {"stage1_lr": 0.0}, {"batch_size": 0}, {"view_angles": ()}])
def test_bad_hyper_parameters_raise_input_error(bad):
    X, views, _ = clustered_with_views(n=40, d=4)
    with pytest.raises(InputError):
        DeepBit(4, **{"stage1_epochs": 1.0, **bad}).fit(X, views=views)
