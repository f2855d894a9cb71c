#!/usr/bin/env python3
"""make_synthetic_neural.py: a synthetic neural dataset and matching (N, T, D) features, for
checking ./bin/score at full size (run time, peak memory) without real data.

  python3 tools/make_synthetic_neural.py --out-dir /tmp/synth [--n 3200 --t 39 --d 8192]
  /usr/bin/time -v ./bin/score --features /tmp/synth/features.npz --data /tmp/synth/data.npz \
      --out /tmp/synth/res --mapping shared

Model: per image i and bin t a latent z (K = 16) drives both the features
F[i, t] = z A + 0.5 noise (D dims) and each unit's response z w_u + trial noise (R trials,
about 10% missing, NaN). Units: --v4 in "V4", --it in "IT". Images are 8x8 grey noise (the
scorer never looks at them). The features array is written through a memory map, so making
a 4 GB file needs little memory; the .npz is stored (uncompressed, ZIP64).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ventral_format import write_dataset  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--n", type=int, default=3200)
    ap.add_argument("--t", type=int, default=39, help="time bins (= feature time steps)")
    ap.add_argument("--d", type=int, default=8192)
    ap.add_argument("--v4", type=int, default=88)
    ap.add_argument("--it", type=int, default=168)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)
    K, U = 16, a.v4 + a.it
    z = rng.standard_normal((a.n, a.t, K)).astype(np.float32)
    A = rng.standard_normal((K, a.d)).astype(np.float32)
    w = (rng.standard_normal((K, U)) / np.sqrt(K)).astype(np.float32)
    sig = np.einsum("itk,ku->iut", z, w)  # (N, U, T)
    resp = sig[None] + rng.standard_normal((a.reps, a.n, U, a.t)).astype(np.float32)
    missing = rng.random((a.reps, a.n)) < 0.1
    missing[0] = False  # every image keeps a trial
    resp[missing] = np.nan
    images = rng.integers(0, 256, (a.n, 8, 8, 3), dtype=np.uint8)
    starts = -100.0 + 10.0 * np.arange(a.t)
    write_dataset(os.path.join(a.out_dir, "data.npz"), images, resp, ["V4"] * a.v4 + ["IT"] * a.it, starts,
                  starts + 20.0)
    del resp
    mm_path = os.path.join(a.out_dir, "features.tmp.npy")
    F = np.lib.format.open_memmap(mm_path, mode="w+", dtype=np.float32, shape=(a.n, a.t, a.d))
    for i0 in range(0, a.n, 64):
        i1 = min(a.n, i0 + 64)
        F[i0:i1] = z[i0:i1] @ A + 0.5 * rng.standard_normal((i1 - i0, a.t, a.d), dtype=np.float32)
    F.flush()
    np.savez(os.path.join(a.out_dir, "features.npz"), conv=F)
    del F
    os.remove(mm_path)
    print(f"{a.out_dir}: data.npz ({a.reps} x {a.n} x {U} x {a.t}), features.npz conv ({a.n}, {a.t}, {a.d}) "
          f"= {a.n * a.t * a.d * 4 / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
