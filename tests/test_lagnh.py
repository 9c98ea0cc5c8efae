"""LAGNH (methods/lagnh.py, methods/lagnh_model.py) against independent NumPy references.

Small synthetic data throughout: 3 clusters, tags owned by the clusters, 16 bits, narrow layers.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hashbench.methods.base import unpack_bits
from hashbench.methods.lagnh import LAGNH, LAGNHNoAdv, LAGNHNoAtt, LAGNHNoAux, LAGNHNoRec
from hashbench.methods.registry import get_method

torch = pytest.importorskip("torch")
lagnh_model = pytest.importorskip("hashbench.methods.lagnh_model")

SMALL = {"batch_size": 200, "g_steps": 2, "hidden": 64, "embed_dim": 32, "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The project's machines are shared: one intra-op thread avoids oversubscribed spinning on tiny matrices.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clustered(n=400, d=32, n_tags=12, seed=0):
    """3 Gaussian clusters; each owns 4 tags (present w.p. 0.8), other tags w.p. 0.05."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((3, d))
    labels = rng.integers(0, 3, size=n)
    X = (centres[labels] + rng.standard_normal((n, d))).astype(np.float32)
    owned = np.zeros((3, n_tags), dtype=bool)
    for c in range(3):
        owned[c, 4 * c:4 * c + 4] = True
    P = (rng.random((n, n_tags)) < np.where(owned[labels], 0.8, 0.05)).astype(np.float32)
    return X, P, labels


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def trained(data):
    X, P, _ = data
    return LAGNH(16, epochs=15, **{**SMALL, "g_steps": 5}).fit(X, tags=P)


FRACTION = 0.3  # median_fraction of graph_model: the references must apply it


@pytest.fixture(scope="module")
def graph_model(data):
    """Briefly trained, with a graph that is far from the identity and the tag-graph fusion on."""
    X, P, _ = data
    return LAGNH(16, epochs=1, sigma="median", median_fraction=FRACTION, tag_graph_weight=0.5, n_anchors=30,
                 **SMALL).fit(X, tags=P)


# ----------------------------------------------------------------------------- NumPy references


def weights(net):
    return {k: v.detach().double().numpy() for k, v in net.state_dict().items()}


def np_normalize(a, p=2):
    norm = np.linalg.norm(a, ord=p, axis=1, keepdims=True)
    return a / np.maximum(norm, 1e-12)


def np_attention(u, t, mask=None):
    a = np.maximum(np_normalize(u) @ np_normalize(t).T, 0.0)
    if mask is not None:
        a = a * mask
    return u + np_normalize(a) @ t


def np_graph(f, sigma2, tag_graph=None, mask=None):
    d2 = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)  # direct differences, not the Gram expansion
    S = np.exp(-d2 / (2.0 * sigma2))
    if tag_graph is not None:
        S = S + tag_graph
    if mask is not None:
        S = S * mask
    return S / S.sum(1, keepdims=True)


def np_median_sigma2(f):
    d2 = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
    iu = np.triu_indices(len(f), 1)
    return float(np.sort(d2[iu])[(len(iu[0]) - 1) // 2])  # lower median, as torch.median


def np_forward(w, X, P, sigma, tag_weight, mask=None, fraction=1.0):
    """Eval-mode LAGNH on one graph; ``mask`` (n × n, 0/1) removes attention and graph edges."""
    u = X @ w["img.weight"].T + w["img.bias"]
    if "tag.weight" in w:
        t = P @ w["tag.weight"].T + w["tag.bias"]
        f = np_attention(u, t, mask)
    else:
        f = u
    sigma2 = fraction * np_median_sigma2(f) if sigma == "median" else sigma**2
    A = np_graph(f, sigma2, tag_weight * (P @ P.T) if tag_weight else None, mask)
    H = np.maximum(A @ f @ w["gc1.lin.weight"].T, 0.0)
    return A @ H @ w["gc2.lin.weight"].T, sigma2


def mean_average_precision(codes, labels, n_bits, n_queries=100):
    B = 2.0 * unpack_bits(codes, n_bits) - 1.0
    q, db = np.arange(n_queries), np.arange(n_queries, len(B))
    dist = (n_bits - B[q] @ B[db].T) / 2
    aps = []
    for i in q:
        rel = labels[db][np.argsort(dist[i], kind="stable")] == labels[i]
        hits = np.cumsum(rel)
        aps.append(np.mean(hits[rel] / (np.flatnonzero(rel) + 1)))
    return float(np.mean(aps))


# ----------------------------------------------------------------------------- architecture


def formula(d, T, bits, e=512, hidden=1024, *, tags=True, classifier=True):
    return d * e + e + (T * e + e if tags else 0) + e * hidden + hidden * bits + (bits * T + T if classifier else 0)


@pytest.mark.parametrize("bits, expected", [(16, 2_681_168), (32, 2_698_832), (64, 2_734_160), (128, 2_804_816)])
def test_parameter_count_matches_formula_and_dossier(bits, expected):
    assert formula(4096, 80, bits) == expected  # the dossier's table (§1.8, hidden 1024)
    net = lagnh_model.LAGNHNet(4096, 80, bits, embed_dim=512, hidden=1024)
    assert lagnh_model.count_parameters(net) == expected
    assert lagnh_model.count_parameters(lagnh_model.Discriminator(bits)) == bits * 64 + 64 + 64 * 32 + 32 + 33


def test_fitted_parameter_counts(data):
    X, P, _ = data
    d, T, e, h = X.shape[1], P.shape[1], SMALL["embed_dim"], SMALL["hidden"]
    expected = {
        LAGNH: formula(d, T, 16, e, h),
        LAGNHNoAdv: formula(d, T, 16, e, h),
        LAGNHNoRec: formula(d, T, 16, e, h),
        LAGNHNoAtt: formula(d, T, 16, e, h, tags=False),
        LAGNHNoAux: formula(d, T, 16, e, h, tags=False, classifier=False),
    }
    for cls, trained in expected.items():
        side = {"tags": P[:100]} if "tags" in cls.side_inputs else {}  # the no-aux ablation reads no tags
        model = cls(16, epochs=1, n_anchors=20, **SMALL).fit(X[:100], **side)
        info = model.run_info()
        classifier = 0 if cls is LAGNHNoAux else 16 * T + T
        anchors = 20 * d + (0 if cls is LAGNHNoAux else 20 * T)
        disc = 0 if cls is LAGNHNoAdv else 16 * 64 + 64 + 64 * 32 + 32 + 33
        assert info["discriminator_parameters"] == disc and info["classifier_parameters"] == classifier
        assert info["anchor_values"] == anchors and info["trained_parameters"] == trained + disc
        # what encoding needs: the encoder without its training-only classifier, and the stored anchors
        assert model.n_parameters() == trained - classifier + anchors, cls.name
        model.set_params(encode_mode="transductive")  # propagates within the encoded set: no anchors
        assert model.n_parameters() == trained - classifier and model.run_info()["anchor_values"] == 0


def test_parameter_count_at_the_cifar10_settings():
    """The dossier's CIFAR-10 case: d = 1280, T = 1000, 64 bits, 255 anchors stored for encoding."""
    encoder = (1280 * 512 + 512) + (1000 * 512 + 512) + 512 * 1024 + 1024 * 64
    assert encoder + 255 * (1280 + 1000) == 2_339_608 and 255 * (1280 + 1000) == 581_400
    rng = np.random.default_rng(0)
    X = rng.random((256, 1280), dtype=np.float32)
    P = (rng.random((256, 1000)) < 0.01).astype(np.float32)
    model = LAGNH(64, epochs=1, seed=0).fit(X, tags=P)
    assert model.resolved_params()["n_anchors"] == 255 and model.n_parameters() == 2_339_608


def test_dense_gcn_conv_computes_row_normalised_propagation():
    from torch_geometric.nn import DenseGCNConv

    rng = np.random.default_rng(0)
    S = np.exp(-rng.random((7, 7)) * 3)
    A = S / S.sum(1, keepdims=True)  # LAGNH's D^-1 S, not symmetric
    X = rng.standard_normal((7, 5))
    conv = DenseGCNConv(5, 3, bias=False).double()
    W = conv.lin.weight.detach().numpy()
    out = conv(torch.from_numpy(X), torch.from_numpy(A), add_loop=False)[0].detach().numpy()
    np.testing.assert_allclose(out, A @ X @ W.T, rtol=1e-12, atol=1e-13)
    # the layer's defaults would not: added self-loops (diagonal set to 1) change the propagation
    with_loops = conv(torch.from_numpy(X), torch.from_numpy(A))[0].detach().numpy()
    assert not np.allclose(with_loops, A @ X @ W.T, atol=1e-3)
    # and its own symmetric normalisation differs from D^-1 S on the unnormalised kernel
    raw = conv(torch.from_numpy(X), torch.from_numpy(S), add_loop=False)[0].detach().numpy()
    assert not np.allclose(raw, A @ X @ W.T, atol=1e-3)


def test_attention_matches_numpy():
    rng = np.random.default_rng(1)
    u, t = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    # loop form of the formula, independent of the vectorised reference
    expected = np.empty_like(u)
    for i in range(6):
        a = np.array([max(0.0, u[i] @ t[j] / np.linalg.norm(u[i]) / np.linalg.norm(t[j])) for j in range(6)])
        a = a / max(np.sqrt((a**2).sum()), 1e-12)
        expected[i] = u[i] + sum(a[j] * t[j] for j in range(6))
    got = lagnh_model.cross_modal_attention(torch.from_numpy(u), torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma, fraction", [(1.0, 1.0), (2.5, 0.3), ("median", 1.0), ("median", 0.05)])
def test_graph_is_gaussian_kernel_row_normalised(sigma, fraction):
    rng = np.random.default_rng(2)
    f = rng.standard_normal((9, 5))
    P = (rng.random((9, 4)) < 0.5).astype(float)
    A, sigma2 = lagnh_model.semantic_graph(torch.from_numpy(f), sigma, 0.3 * torch.from_numpy(P @ P.T), fraction)
    A = A.numpy()
    # the fraction scales the median only; a fixed sigma ignores it
    expected_sigma2 = fraction * np_median_sigma2(f) if sigma == "median" else sigma**2
    assert float(sigma2) == pytest.approx(expected_sigma2, rel=1e-12)
    np.testing.assert_allclose(A, np_graph(f, expected_sigma2, 0.3 * (P @ P.T)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(A.sum(1), 1.0, rtol=1e-12)


def test_graph_rows_sum_to_one_during_training(trained, graph_model):
    for model in (trained, graph_model):
        assert all(0 < w <= 1 for w in model.history_["graph_self_weight"])
        n = SMALL["batch_size"]
        for self_w, off in zip(model.history_["graph_self_weight"], model.history_["graph_offdiag_mean"]):
            assert off == pytest.approx((1 - self_w) / (n - 1), rel=1e-5, abs=1e-12)
    # the median bandwidth puts most of each row's mass off the diagonal
    assert graph_model.history_["graph_self_weight"][-1] < 0.5


# ----------------------------------------------------------------------------- encoding


def test_transductive_matches_numpy_forward(data, graph_model):
    X, P, _ = data
    model = graph_model
    model.set_params(encode_mode="transductive", encode_batch_size=64)
    try:
        z = model.project(X[:100], tags=P[:100])
    finally:
        model.set_params(encode_mode="anchored", encode_batch_size=256)
    w = weights(model.net_)
    for start in (0, 64):  # the authors' consecutive batches, the last one smaller
        stop = min(start + 64, 100)
        Xb, Pb = X[start:stop].astype(float), P[start:stop].astype(float)
        expected, _ = np_forward(w, Xb, Pb, "median", 0.5, fraction=FRACTION)
        np.testing.assert_allclose(z[start:stop], expected, rtol=1e-4, atol=1e-4)


def test_anchored_matches_explicit_one_way_graph(data, graph_model):
    """Each query's z is the last row of the explicit graph on [anchors; query] in which the anchors
    neither attend to nor link to the query."""
    X, P, _ = data
    model = graph_model
    z = model.project(X[:5], tags=P[:5])
    w = weights(model.net_)
    XA, PA = model.anchor_features_.astype(float), model.anchor_tags_.astype(float)
    m = len(XA)
    _, anchor_sigma2 = np_forward(w, XA, PA, "median", 0.5, fraction=FRACTION)
    mask = np.ones((m + 1, m + 1))
    mask[:m, m] = 0.0
    for i in range(5):
        Xq = np.vstack([XA, X[i:i + 1]])
        Pq = np.vstack([PA, P[i:i + 1]])
        expected, _ = np_forward(w, Xq, Pq, np.sqrt(anchor_sigma2), 0.5, mask)
        np.testing.assert_allclose(z[i], expected[m], rtol=1e-4, atol=1e-4)


def test_anchored_codes_are_row_independent(data, graph_model):
    X, P, _ = data
    z = graph_model.project(X, tags=P)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(graph_model.project(X[perm], tags=P[perm]), z[perm], rtol=1e-5, atol=1e-5)
    singles = np.vstack([graph_model.project(X[i:i + 1], tags=P[i:i + 1]) for i in range(10)])
    np.testing.assert_allclose(singles, z[:10], rtol=1e-5, atol=1e-5)
    codes = graph_model.encode(X, tags=P)
    assert np.array_equal(np.vstack([graph_model.encode(X[i:i + 7], tags=P[i:i + 7]) for i in range(0, 70, 7)]),
                          codes[:70])


def test_transductive_codes_depend_on_batch_mates(data, graph_model):
    X, P, _ = data
    graph_model.set_params(encode_mode="transductive")
    try:
        first = graph_model.project(X[:50], tags=P[:50])
        other = graph_model.project(np.vstack([X[:1], X[200:249]]), tags=np.vstack([P[:1], P[200:249]]))
    finally:
        graph_model.set_params(encode_mode="anchored")
    assert np.abs(first[0] - other[0]).max() > 1e-3


# ----------------------------------------------------------------------------- training


def test_training_loss_decreases(trained):
    h = trained.history_
    assert len(h["loss_g"]) == 15 and trained.run_info()["epochs_run"] == 15
    for key in ("loss_d", "loss_g", "loss_adv", "loss_quant", "loss_cls", "loss_rec"):
        assert len(h[key]) == 15 and all(np.isfinite(h[key])), key
    assert h["loss_g"][-1] < 0.9 * h["loss_g"][0]
    assert h["loss_rec"][-1] < h["loss_rec"][0]
    assert h["loss_cls"][-1] < h["loss_cls"][0]
    assert h["loss_g"][0] == pytest.approx(
        h["loss_adv"][0] + h["loss_quant"][0] + h["loss_cls"][0] + h["loss_rec"][0], rel=1e-5
    )


def test_retrieval_well_above_random(data, trained):
    X, P, labels = data
    codes = trained.encode(X, tags=P)
    chance = np.mean([np.mean(labels[100:] == labels[i]) for i in range(100)])
    assert mean_average_precision(codes, labels, 16) > chance + 0.4


def test_same_seed_same_codes_other_seed_other_codes(data):
    X, P, _ = data
    X, P = X[:150], P[:150]
    a = LAGNH(16, epochs=2, seed=3, n_anchors=20, **SMALL).fit(X, tags=P)
    b = LAGNH(16, epochs=2, seed=3, n_anchors=20, **SMALL).fit(X, tags=P)
    c = LAGNH(16, epochs=2, seed=4, n_anchors=20, **SMALL).fit(X, tags=P)
    assert np.array_equal(a.project(X, tags=P), b.project(X, tags=P))
    assert a.history_ == b.history_
    assert not np.allclose(a.project(X, tags=P), c.project(X, tags=P))


def test_schedule_presets_and_early_stopping(data):
    X, P, _ = data
    model = LAGNH(16, schedule="authors")
    assert model.resolved_schedule() == {
        "epochs": 300, "batch_size": 1024, "g_steps": 5, "early_stop_patience": 0, "early_stop_tol": 0.0
    }
    assert LAGNH(16, schedule="authors", epochs=7).resolved_schedule()["epochs"] == 7
    # a tolerance no epoch can meet stops after `patience` epochs without improvement
    stopped = LAGNH(16, epochs=20, early_stop_patience=2, early_stop_tol=10.0, n_anchors=20, **SMALL)
    stopped.fit(X[:150], tags=P[:150])
    assert stopped.run_info()["epochs_run"] == 3 and len(stopped.history_["loss_g"]) == 3
    # what was used: the given schedule values over the preset's, the anchors drawn, the device
    assert stopped.resolved_params() == {
        "epochs": 20, "batch_size": 200, "g_steps": 2, "early_stop_patience": 2, "early_stop_tol": 10.0,
        "n_anchors": 20, "device": "cpu",
    }
    assert not set(stopped.run_info()) & (set(stopped.get_params()) | set(stopped.resolved_params()))


@pytest.mark.parametrize("cls", [LAGNHNoAux, LAGNHNoAdv, LAGNHNoRec, LAGNHNoAtt])
def test_ablations_train_and_encode(cls, data):
    X, P, labels = data
    assert get_method(cls.name) is cls
    side = {} if cls is LAGNHNoAux else {"tags": P}
    model = cls(16, epochs=3, n_anchors=30, **SMALL).fit(X, **side)
    codes = model.encode(X, **side)
    assert codes.shape == (len(X), 2) and len(np.unique(codes, axis=0)) > 1
    h = model.history_
    assert ("loss_d" in h) == (cls is not LAGNHNoAdv) and ("loss_adv" in h) == (cls is not LAGNHNoAdv)
    assert ("loss_rec" in h) == (cls is not LAGNHNoRec)
    assert ("loss_cls" in h) == (cls is not LAGNHNoAux)
    assert (model.net_.tag is None) == (cls in (LAGNHNoAux, LAGNHNoAtt))
    # run_info names the reconstruction target only where the ablation overrides the given rec_target
    assert model.get_params()["rec_target"] == "cosine"
    assert model.run_info().get("rec_target_used") == ("features" if cls is LAGNHNoAux else None)


def test_noaux_target_is_feature_cosine():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 4))
    got = lagnh_model.reconstruction_target("features", None, torch.from_numpy(X)).numpy()
    Xn = np_normalize(X)
    np.testing.assert_allclose(got, np.maximum(Xn @ Xn.T, 0), rtol=1e-12, atol=1e-12)
    P = (rng.random((6, 5)) < 0.6).astype(float)
    Pt = torch.from_numpy(P)
    np.testing.assert_allclose(lagnh_model.reconstruction_target("raw", Pt, None).numpy(), P @ P.T)
    np.testing.assert_allclose(lagnh_model.reconstruction_target("clipped", Pt, None).numpy(), np.minimum(P @ P.T, 1))
    Pn = np_normalize(P)
    np.testing.assert_allclose(lagnh_model.reconstruction_target("cosine", Pt, None).numpy(), Pn @ Pn.T, atol=1e-12)


def test_bad_inputs_raise_input_error(data, trained):
    from hashbench.methods.base import InputError

    X, P, _ = data
    with pytest.raises(InputError, match="tags"):
        trained.encode(X, tags=P[:, :-1])
    with pytest.raises(InputError, match="0/1"):
        trained.encode(X, tags=P * 3)
    with pytest.raises(InputError, match="sigma"):
        LAGNH(16, sigma=-1.0, **SMALL).fit(X, tags=P)
    with pytest.raises(InputError, match="median_fraction"):
        LAGNH(16, sigma="median", median_fraction=0.0, **SMALL).fit(X, tags=P)
    with pytest.raises(InputError, match="rec_target"):
        LAGNH(16, rec_target="bogus", **SMALL).fit(X, tags=P)
    with pytest.raises(InputError, match="schedule"):
        LAGNH(16, schedule="slow", **SMALL).fit(X, tags=P)
    with pytest.raises(InputError, match="tag_graph_weight"):
        LAGNHNoAux(16, tag_graph_weight=1.0, **SMALL).fit(X)


def test_import_does_not_load_torch_geometric():
    code = (
        "import sys, hashbench.methods.lagnh, hashbench.methods.registry as r; r.get_method('lagnh-noaux'); "
        "bad = [m for m in ('torch', 'torch_geometric') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_anchored_mode_passes_the_conformance_row_independence_check():
    """`methods.testing` skips the check for batch-dependent classes; run it on anchored LAGNH."""
    from hashbench.methods.testing import check_row_independence, make_case

    class AnchoredLAGNH(LAGNH):  # not registered: only the check's view of the class changes
        batch_dependent = False

    check_row_independence(make_case(AnchoredLAGNH, encode_mode="anchored", sigma="median"))



def test_semantic_graph_has_no_subnormal_values_and_matches_the_exact_kernel():
    """Distances that put exp(-d²/2σ²) into float32's subnormal range (d² of 170-210 at σ = 1) are the
    slow case on CPUs; the graph drops kernel values < 1e-12 and must equal the exact one to float32
    resolution, with no subnormal value in it or in its gradient."""
    from hashbench.methods.lagnh_model import semantic_graph

    g = torch.Generator().manual_seed(0)
    f = (torch.randn(64, 16, generator=g) * 3.4).requires_grad_(True)  # pairwise d² spread over ~[100, 600]
    adj, _ = semantic_graph(f, 1.0)
    with torch.no_grad():
        d2 = torch.cdist(f.double(), f.double()) ** 2
        exact = torch.exp(-d2 / 2.0)
        exact = exact / exact.sum(1, keepdim=True)
        kernel = torch.exp(-d2 / 2.0).float()
    assert ((kernel > 0) & (kernel < torch.finfo(torch.float32).tiny)).any()  # the case is really there
    torch.testing.assert_close(adj.double(), exact, atol=1e-7, rtol=1e-6)
    tiny = torch.finfo(torch.float32).tiny
    assert not ((adj != 0) & (adj.abs() < tiny)).any()
    (adj * torch.randn(adj.shape, generator=g)).sum().backward()
    assert not ((f.grad != 0) & (f.grad.abs() < tiny)).any()


def test_prior_samples_and_dropout_masks_come_from_cpu_generators(data, monkeypatch):
    # One seed must give the same random draws on every device (as SGH's and DeepBit's): every draw of
    # training is made on a CPU generator and moved to the device, never on the device's generator
    # nor through torch's global-RNG dropout.
    import torch.nn.functional as F

    X, P, _ = data
    draws, dropouts = [], []
    real_randn, real_rand, real_dropout = torch.randn, torch.rand, F.dropout

    def spy(real):
        def draw(*args, **kwargs):
            draws.append((real.__name__, kwargs.get("generator"), kwargs.get("device")))
            return real(*args, **kwargs)
        return draw

    def spy_dropout(x, p=0.5, training=True, *args, **kwargs):
        if training and p > 0:
            dropouts.append(p)
        return real_dropout(x, p, training, *args, **kwargs)

    monkeypatch.setattr(torch, "randn", spy(real_randn))
    monkeypatch.setattr(torch, "rand", spy(real_rand))
    monkeypatch.setattr(F, "dropout", spy_dropout)
    LAGNH(16, epochs=1, n_anchors=20, **SMALL).fit(X[:200], tags=P[:200])
    assert dropouts == []  # no mask drawn by torch's dropout (the device's global generator)
    names = {name for name, _, _ in draws}
    assert {"randn", "rand"} <= names, names  # the prior's samples and the dropout masks were drawn here
    for name, generator, device in draws:
        assert generator is not None and generator.device.type == "cpu" and device is None, (name, generator, device)
