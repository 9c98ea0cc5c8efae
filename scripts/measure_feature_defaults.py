"""Measure what the feature layer's defaults rest on: input size of `effnet-lite0`, tag classifier size and k.

Reads a class-balanced subset of the CIFAR-10 *test* images from the shared JPEG archive (lossy copy of
CIFAR-10: numbers are close to, not identical with, the official pixels) and prints:

1. per input size: extraction speed (img/s, best of ``--repeats`` timings of one batch, so other
   processes on a shared machine bias it least) and retrieval quality of the features,
   * P@100 cos: mean precision of the 100 nearest neighbours by cosine similarity (leave-one-out),
   * mAP PCA-b: mAP of Hamming ranking of ``sign(PCA_b(x - mean))`` codes over all other images
     (b = 32, 64), a training-free stand-in for the hashing methods that run on these features;
2. per tag classifier (network, input size) and k: speed, and how well tags predict "same class" over all
   pairs of images: AUC of the tags' Jaccard overlap, the share of pairs with at least one common tag and
   the precision of that event.

Run: ``.venv/bin/python scripts/measure_feature_defaults.py --threads 1`` (about 30 min of one core; the
computed arrays are cached under a private folder, ``--cache``, so a rerun only redoes the timings). The
numbers in the docstrings of `datasets.features.effnet` and `datasets.features.side` come from it.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ARCHIVE = Path("/work/shared/data/cifar10-images.tar.gz")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def read_cifar_subset(archive: Path, split: str, per_class: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``per_class`` images of each class (file names 0000.jpg...), as uint8 (n, 32, 32, 3) and labels."""
    from PIL import Image

    found: dict[str, dict[int, np.ndarray]] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[1] != split or not member.isfile():
                continue
            number = int(parts[3].split(".")[0])
            if number < per_class:
                data = tar.extractfile(member).read()
                found.setdefault(parts[2], {})[number] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    classes = sorted(found)
    images = np.stack([found[c][i] for c in classes for i in range(per_class)])
    labels = np.repeat(np.arange(len(classes)), per_class)
    return images, labels, classes


def precision_at_k_cosine(features: np.ndarray, labels: np.ndarray, k: int = 100) -> float:
    k = min(k, len(features) - 2)
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argpartition(-sim, k, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def pca_sign_map(features: np.ndarray, labels: np.ndarray, bits: int) -> float:
    """mAP over all other items of Hamming ranking by sign-of-PCA codes (ties: by index)."""
    x = features - features.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    codes = (x @ vt[:bits].T >= 0).astype(np.float32)
    hamming = bits - (codes @ codes.T + (1 - codes) @ (1 - codes).T)
    aps = []
    for i in range(len(x)):
        order = np.argsort(hamming[i], kind="stable")
        order = order[order != i]
        rel = labels[order] == labels[i]
        hits = np.cumsum(rel)
        aps.append(float((hits[rel] / (np.flatnonzero(rel) + 1)).mean()) if rel.any() else 0.0)
    return float(np.mean(aps))


def tag_pair_scores(tags: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import roc_auc_score

    t = tags.astype(np.float32)
    inter = t @ t.T
    size = t.sum(1)
    jaccard = inter / np.maximum(size[:, None] + size[None, :] - inter, 1)
    iu = np.triu_indices(len(t), 1)
    same = (labels[:, None] == labels[None, :])[iu]
    share = inter[iu] > 0
    return (float(roc_auc_score(same, jaccard[iu])), float(share.mean()),
            float(same[share].mean()) if share.any() else float("nan"))


def feature_pair_auc(features: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    iu = np.triu_indices(len(x), 1)
    return float(roc_auc_score((labels[:, None] == labels[None, :])[iu], (x @ x.T)[iu]))


def speed_table(specs: list[tuple[str, int, str]], images: np.ndarray, rounds: int) -> dict:
    """img/s of each (network, size, 'pooled'|'logits') on ``images``: best of ``rounds`` timings.

    The images go through the network in chunks of the extractor's default batch size for that size.
    The specs are timed round-robin, so a burst of load from other processes hits every spec alike
    rather than the one that happened to run during it. With ``--threads 1`` the timing is CPU time
    (``time.process_time``), which other processes on a shared machine barely disturb; with more
    threads it is wall time (CPU time would add up the threads' spinning).
    """
    import torch

    from hashbench.datasets.features.backbone import Backbone, auto_batch_size

    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter

    def chunked(batch, bb, fn, step):
        for lo in range(0, len(batch), step):
            fn(bb.normalize(bb.prepare(batch[lo:lo + step])))

    runs = {}
    for network, size, head in specs:
        backbone = Backbone(network, size)
        fn = backbone.pooled if head == "pooled" else backbone.logits
        step = auto_batch_size(size, backbone.device)
        runs[(network, size, head)] = lambda b, bb=backbone, fn=fn, step=step: chunked(b, bb, fn, step)
        runs[(network, size, head)](images[:step])  # warm-up: first-call allocations
    best = {spec: float("inf") for spec in runs}
    for _ in range(rounds):
        for spec, run in runs.items():
            t0 = clock()
            run(images)
            best[spec] = min(best[spec], clock() - t0)
    return {spec: len(images) / t for spec, t in best.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, default=ARCHIVE)
    ap.add_argument("--per-class", type=int, default=200, help="images per class for the feature part")
    ap.add_argument("--tag-per-class", type=int, default=100, help="images per class for the tag part")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 224])
    ap.add_argument("--tag-models", nargs="+", default=["efficientnet-lite2:96", "efficientnet-lite2:128",
                                                        "efficientnet-lite2:160", "efficientnet-lite2:224",
                                                        "efficientnet-lite2:260", "same:128"],
                    help="network:input_size pairs; 'same' is the feature network (efficientnet-lite0)")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 10, 20])
    ap.add_argument("--timing-batch", type=int, default=64, help="images per timing (in default-size batches)")
    ap.add_argument("--repeats", type=int, default=5, help="timing rounds (best one is kept)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hashbench-measure-cache")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--skip-features", action="store_true")
    ap.add_argument("--skip-tags", action="store_true")
    args = ap.parse_args(argv)
    os.environ["HASHBENCH_DATA"] = str(args.cache)

    import torch

    from hashbench.datasets.base import Dataset
    from hashbench.datasets.features import compute_features, compute_side

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = "CPU time" if torch.get_num_threads() == 1 else "wall time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads ({clock}), load average {os.getloadavg()}")
    per = max(args.per_class, args.tag_per_class)
    images, labels, classes = read_cifar_subset(args.archive, "test", per)
    print(f"read {len(images)} CIFAR-10 test images ({per} per class) from {args.archive}", flush=True)

    def subset(n_per: int) -> Dataset:
        keep = np.concatenate([np.arange(c * per, c * per + n_per) for c in range(len(classes))])
        return Dataset(name=f"cifar10-jpeg-test-{n_per}pc", labels=labels[keep], images=images[keep],
                       classes=tuple(classes), source=f"{args.archive} (test, {n_per} per class)")

    timing_batch = images[: args.timing_batch]
    if not args.skip_features:
        data = subset(args.per_class)
        print(f"\n## effnet-lite0 features, {len(data)} images\n")
        rates = speed_table([("efficientnet-lite0", size, "pooled") for size in args.sizes], timing_batch,
                            args.repeats)
        print("| size | img/s (best of %d) | P@100 cos | mAP PCA-32 | mAP PCA-64 | extract s |" % args.repeats)
        print("|---|---|---|---|---|---|")
        for size in args.sizes:
            rate = rates[("efficientnet-lite0", size, "pooled")]
            t0 = time.perf_counter()
            feats, _ = compute_features(data, "effnet-lite0", input_size=size)
            took = time.perf_counter() - t0
            print(f"| {size} | {rate:.0f} | {precision_at_k_cosine(feats, data.labels):.4f} | "
                  f"{pca_sign_map(feats, data.labels, 32):.4f} | {pca_sign_map(feats, data.labels, 64):.4f} | "
                  f"{took:.0f} |", flush=True)

    if not args.skip_tags:
        data = subset(args.tag_per_class)
        print(f"\n## imagenet-topk tags, {len(data)} images: AUC of Jaccard for same class / "
              "share of pairs with a common tag / P(same class | common tag)\n")
        print("| model | size | img/s | " + " | ".join(f"k={k}" for k in args.ks) + " |")
        print("|---|---|---|" + "---|" * len(args.ks))
        specs = [(model, int(size)) for model, _, size in (spec.partition(":") for spec in args.tag_models)]
        network = {model: "efficientnet-lite0" if model == "same" else model for model, _ in specs}
        rates = speed_table([(network[m], size, "logits") for m, size in specs], timing_batch, args.repeats)
        for model, size in specs:
            rate = rates[(network[model], size, "logits")]
            cells = []
            for k in args.ks:
                tags, _ = compute_side(data, "tags", k=k, tag_model=model, input_size=size)
                assert (tags.sum(1) == k).all()
                auc, share, prec = tag_pair_scores(tags, data.labels)
                cells.append(f"{auc:.3f} / {share:.3f} / {prec:.3f}")
            print(f"| {model} | {size} | {rate:.0f} | " + " | ".join(cells) + " |", flush=True)
        chance = (args.tag_per_class - 1) / (len(data) - 1)  # P(same class) of a random pair
        print(f"\n(chance P(same class) = {chance:.3f})")
        for size in args.sizes:  # for scale: how well the features' own similarity separates the pairs
            feats, _ = compute_features(data, "effnet-lite0", input_size=size)
            print(f"effnet-lite0 features at {size} px, AUC of cosine similarity for same class: "
                  f"{feature_pair_auc(feats, data.labels):.3f}")


if __name__ == "__main__":
    main()
