"""Choose a method's settings on a carve of the training items, never on the test queries.

A seeded fifth of the dataset's training items serve as pseudo-queries
(never trained on), the other four fifths as training set and database; each
candidate setting trains on that and is scored by MAP@all (mean of I->T and
T->I over the code lengths asked). The test queries of the dataset are not
read. Labels are read to score the carve only, so the procedure serves the
unsupervised methods too (their training never sees a label).

    python scripts/select_preset.py --method dbrc --dataset synthetic --bits 16 64 \\
        --candidate epochs=8 --candidate epochs=12 --candidate "epochs=8 agreement=true"

Each ``--candidate`` is a space-separated list of KEY=VALUE method settings;
``epochs=N`` sets the epochs. Prints one markdown row per candidate.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def carve(ds, seed: int, fraction: float = 0.2):
    """The training items only: ``fraction`` of them pseudo-queries, the rest training set and database."""
    from trainer.data import Split

    rows = ds.split.train
    perm = np.random.default_rng([seed, 0xC4]).permutation(rows.size)
    nq = max(1, int(round(fraction * rows.size)))
    query, rest = np.sort(rows[perm[:nq]]), np.sort(rows[perm[nq:]])
    return dataclasses.replace(ds, split=Split(query, rest, rest.copy()))


def main(argv: Sequence[str] = ()) -> int:
    from trainer import cli, engine
    from trainer.config import parse_assignments
    from trainer.data import load_dataset
    from trainer.encoder import encode_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data", default=None)
    p.add_argument("--bits", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidate", action="append", required=True)
    args = p.parse_args(list(argv) or None)

    ds = load_dataset(args.dataset, args.data, seed=args.seed, centre=False)
    cds = carve(ds, args.seed).centre()  # centred on the carve's own training items
    print(f"carve of {ds.name}'s {ds.split.train.size} training items: {cds.split.query.size} pseudo-queries, "
          f"{cds.split.train.size} training and database items; bits {args.bits}\n")
    print("| candidate | " + " | ".join(f"{b} bits I->T / T->I" for b in args.bits) + " | mean | s |")
    print("|---|" + "---|" * len(args.bits) + "---:|---:|")
    for cand in args.candidate:
        settings: Dict[str, str] = parse_assignments(cand.split())
        epochs = int(settings.pop("epochs")) if "epochs" in settings else None
        t0 = time.perf_counter()
        scores: List[float] = []
        cells = []
        for bits in args.bits:
            fr = engine.fit(args.method, cds, bits, config=settings, epochs=epochs, seed=args.seed, progress=False,
                            preset=False)
            res = cli.evaluate_codes(encode_dataset(fr.method, cds), bits, seed=args.seed, curves=False)
            i2t, t2i = (e["map"] for e in res)
            scores += [i2t, t2i]
            cells.append(f"{i2t:.4f} / {t2i:.4f}")
        print(f"| {cand} | " + " | ".join(cells) + f" | {np.mean(scores):.4f} | {time.perf_counter() - t0:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
