"""Why TBH collapses to one code on the digits pixels: the balance of its loss depends on the input's scale.

TBH's actor loss is ½ Σ ||x̂ − x||² (grows with the square of the input's scale) minus two adversarial terms
(scale-free). The one-layer binary discriminator gives every row of a batch the same gradient on each bit,
so when the reconstruction term is small the encoder moves every row's logit the same way until each bit
is constant. This study fits the harness's `tbh` on the 8x8 digits pixels at their extractor's scale
([0, 1]) and multiplied by 16 (the dataset's own 0..16 intensities), and counts the distinct codes of the
validation database. Split: the harness's `hashbench.datasets.protocols.validation_split` of the digits
protocol's training split (`_training_validation.training_validation`; ``--val-fraction`` of it, default
10 %, as validation queries, the other training rows both the fitting set and the validation database); the
protocol's queries and evaluation database are never read. mAP@all of the validation queries over the
validation database (``map_all``) is printed only as a diagnostic of the collapse (no default is chosen
from it).

    python scripts/tbh_scale_study.py --out /tmp/tbh_scale.jsonl
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.evaluation import evaluate
from hashbench.methods import get_method

from _training_validation import add_split_arguments, emit, rule_from, training_validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="16,32,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scales", default="1,16")
    add_split_arguments(parser)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tv = training_validation("digits", rule_from(args), features="pixels")
    X, y = tv.X, tv.y
    for scale in (float(s) for s in args.scales.split(",")):
        for bits in (int(b) for b in args.bits.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                model = get_method("tbh")(n_bits=bits, seed=seed, device="cpu").fit(X[tv.fit] * scale)
                codes = model.encode(X[tv.database] * scale)
                health = {"distinct_codes": len({row.tobytes() for row in codes}),
                          "constant_bits": int(np.sum(np.all(np.unpackbits(codes, axis=1, bitorder="little")[:, :bits]
                                                             == np.unpackbits(codes[:1], axis=1, bitorder="little")[:, :bits],
                                                             axis=0)))}
                m = evaluate(model.encode(X[tv.query] * scale), codes, y[tv.query], y[tv.database], topk=tv.topk)
                emit({"scale": scale, "bits": bits, "seed": seed, **tv.describe(), **health,
                      "map_all": round(m["map_all"], 4),
                      "reconstruction_per_row_last": round(model.history_["reconstruction"][-1], 3)}, args.out)


if __name__ == "__main__":
    main()
