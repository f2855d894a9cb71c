#!/usr/bin/env python3
"""bench_simpls.py: reference timing of scikit-learn's PLSRegression for the PLS benchmark.

Times PLSRegression(n_components=25, scale=False) (NIPALS, float64) on synthetic data of the
acceptance shape: train X (N, D) = (3200, 8192), Y (N, Q) = (3200, 256), plus held-out rows.
Prints one JSON line per fit. With --save DIR it also writes the data and sklearn's held-out
predictions as raw float32 files (DIR/{xtr,ytr,xte,yte,yhat_sklearn}.f32, row-major, shapes
in DIR/meta.json) so the C++ side can be timed and compared on exactly the same data.
The engine's pls_fit(..., PlsAlgorithm::Nipals) is the same estimator as this sklearn fit
(it reproduces sklearn's power-method truncation, tol 1e-6, max_iter 500): compare it with
yhat_sklearn.f32. With --numpy-simpls it also fits a plain float64 numpy SIMPLS (de Jong
1993), the engine's default PlsAlgorithm::Simpls, prints its gap to sklearn and saves
DIR/yhat_simpls_numpy.f32. SIMPLS and NIPALS are different estimators when Q > 1: their
predictions differ.

Data ("--kind", fixed seed):
  lowrank  X has a decaying spectrum (64 latent factors + isotropic noise), Y = X W + noise
           with W of rank 16: the covariance between X and Y is concentrated in a few
           directions, as with CNN features regressed onto neurons (default).
  dense    X iid normal, Y = X W + noise with W dense (p, q): a flat cross-covariance
           spectrum, the hard case for agreement between NIPALS and SIMPLS.

Run (both sides with the same BLAS settings):
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 tools/bench_simpls.py [--save /tmp/simpls_bench]
"""
import argparse
import json
import os
import time

import numpy as np


def make_data(kind, n, n_test, p, q, seed):
    rng = np.random.default_rng(seed)
    m = n + n_test
    if kind == "lowrank":
        k = 64
        scale = 1.0 / np.sqrt(1.0 + np.arange(k))               # decaying factor variances
        Z = rng.standard_normal((m, k)) * scale
        X = Z @ rng.standard_normal((k, p)) + 0.3 * rng.standard_normal((m, p))
        W = rng.standard_normal((p, 16)) @ rng.standard_normal((16, q)) / np.sqrt(16 * p)
    elif kind == "dense":
        X = rng.standard_normal((m, p))
        W = rng.standard_normal((p, q)) / np.sqrt(p)
    else:
        raise SystemExit(f"bench_simpls: unknown --kind {kind!r} (expected lowrank or dense)")
    Y = X @ W
    Y += 0.5 * Y.std() * rng.standard_normal((m, q))
    X = X.astype(np.float32).astype(np.float64)                 # both sides see float32 values
    Y = Y.astype(np.float32).astype(np.float64)
    return X[:n], Y[:n], X[n:], Y[n:]


def simpls_numpy(X, Y, ncomp):
    """Plain SIMPLS, centred, not scaled, float64. Returns x_mean, y_mean, coef (p, q)."""
    xm, ym = X.mean(0), Y.mean(0)
    X0, Y0 = X - xm, Y - ym
    S = X0.T @ Y0
    R = np.zeros((X.shape[1], ncomp))
    V = np.zeros((X.shape[1], ncomp))
    Q = np.zeros((Y.shape[1], ncomp))
    for a in range(ncomp):
        _, U = np.linalg.eigh(S.T @ S)
        r = S @ U[:, -1]
        t = X0 @ r
        t -= t.mean()
        nt = np.linalg.norm(t)
        t /= nt
        r /= nt
        pl = X0.T @ t
        Q[:, a] = Y0.T @ t
        v = pl - V[:, :a] @ (V[:, :a].T @ pl)
        v /= np.linalg.norm(v)
        S -= np.outer(v, v @ S)
        R[:, a] = r
        V[:, a] = v
    return xm, ym, R @ Q.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3200)
    ap.add_argument("--n-test", type=int, default=800)
    ap.add_argument("--p", type=int, default=8192)
    ap.add_argument("--q", type=int, default=256)
    ap.add_argument("--ncomp", type=int, default=25)
    ap.add_argument("--kind", default="lowrank")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--save", default="", help="folder for the data and sklearn's predictions")
    ap.add_argument("--numpy-simpls", action="store_true", help="also fit a numpy SIMPLS reference")
    a = ap.parse_args()

    from sklearn import __version__ as skver
    from sklearn.cross_decomposition import PLSRegression

    Xtr, Ytr, Xte, Yte = make_data(a.kind, a.n, a.n_test, a.p, a.q, a.seed)
    for rep in range(a.repeats):
        pls = PLSRegression(n_components=a.ncomp, scale=False)
        t0 = time.perf_counter()
        pls.fit(Xtr, Ytr)
        t1 = time.perf_counter()
        Yhat = pls.predict(Xte)
        t2 = time.perf_counter()
        r2 = 1.0 - ((Yhat - Yte) ** 2).sum() / ((Yte - Ytr.mean(0)) ** 2).sum()
        print(json.dumps({"bench": "simpls", "impl": "sklearn-" + skver, "kind": a.kind, "n": a.n,
                          "p": a.p, "q": a.q, "ncomp": a.ncomp, "rep": rep,
                          "fit_s": round(t1 - t0, 4), "predict_s": round(t2 - t1, 4),
                          "heldout_r2": round(float(r2), 5),
                          "power_iters": [int(i) for i in pls.n_iter_]}), flush=True)
    arrays = [("xtr", Xtr), ("ytr", Ytr), ("xte", Xte), ("yte", Yte), ("yhat_sklearn", Yhat)]
    if a.numpy_simpls:
        t0 = time.perf_counter()
        xm, ym, B = simpls_numpy(Xtr, Ytr, a.ncomp)
        t1 = time.perf_counter()
        Ys = (Xte - xm) @ B + ym
        print(json.dumps({"bench": "simpls", "impl": "numpy-simpls-f64", "kind": a.kind,
                          "fit_s": round(t1 - t0, 4),
                          "rel_fro_vs_sklearn": float(np.linalg.norm(Ys - Yhat) / np.linalg.norm(Yhat)),
                          "max_vs_sklearn": float(np.abs(Ys - Yhat).max() / np.abs(Yhat).max())}),
              flush=True)
        arrays.append(("yhat_simpls_numpy", Ys))
    if a.save:
        os.makedirs(a.save, exist_ok=True)
        for name, arr in arrays:
            arr.astype("<f4").tofile(os.path.join(a.save, name + ".f32"))
        with open(os.path.join(a.save, "meta.json"), "w") as f:
            json.dump({"n": a.n, "n_test": a.n_test, "p": a.p, "q": a.q, "ncomp": a.ncomp,
                       "kind": a.kind, "seed": a.seed}, f)


if __name__ == "__main__":
    main()
