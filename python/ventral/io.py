"""Loaders for the files ventral's tools write (docs/results.md has every key)."""
import json

import numpy as np

FIT_RESULTS_FORMAT = "ventral-fit-dynamics-2"
KNOWN_FORMATS = (FIT_RESULTS_FORMAT, "ventral-scores-1", "ventral-sweep-summary-2", "ventral-lesion-1")


def load_npz(path):
    """Every array of an .npz as a dict of numpy arrays (no pickles: ventral never writes any)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _strict_pairs(kv):
    keys = [k for k, _ in kv]
    if len(keys) != len(set(keys)):
        raise ValueError("repeated key in a ventral JSON file: %s" % keys)
    return dict(kv)


def _no_constant(c):
    raise ValueError("non-finite number %s in a ventral JSON file (ventral writes null)" % c)


def load_results(path):
    """A results.json / summary.json as a dict, read strictly (no repeated keys, no NaN
    literals); its "format" must be one this package knows."""
    with open(path) as f:
        res = json.load(f, object_pairs_hook=_strict_pairs, parse_constant=_no_constant)
    fmt = res.get("format")
    if fmt not in KNOWN_FORMATS:
        raise ValueError("%s: format %r, expected one of %s" % (path, fmt, ", ".join(KNOWN_FORMATS)))
    return res


def load_predictions(path):
    """fit_dynamics' predictions.npz (models/fit/predictions.h) as a dict of arrays."""
    z = load_npz(path)
    for k in ("predictions", "observed", "test_split", "unit_id", "unit_ev"):
        if k not in z:
            raise ValueError("%s: no %r: not a fit_dynamics predictions.npz" % (path, k))
    return z


def units_table(pred):
    """Per split, unit and bin: r, EV and ceiling of every fitted unit, as a pandas DataFrame
    (long format: split, unit_id, area, role, bin_start_ms, bin_end_ms, r, ev, ceiling).
    `pred` is load_predictions' dict or a path."""
    import pandas as pd
    if isinstance(pred, str):
        pred = load_predictions(pred)
    S, U, B = pred["unit_ev"].shape
    s, u, b = np.meshgrid(np.arange(S), np.arange(U), np.arange(B), indexing="ij")
    df = pd.DataFrame({
        "split": s.ravel(),
        "unit_id": pred["unit_id"][u.ravel()],
        "area": pred["unit_area"][u.ravel()],
        "role": pred["unit_role"][u.ravel()],
        "bin_start_ms": pred["bin_start_ms"][b.ravel()],
        "bin_end_ms": pred["bin_end_ms"][b.ravel()],
        "r": pred["unit_r"].ravel(),
        "ev": pred["unit_ev"].ravel(),
        "ceiling": pred["ceiling"][u.ravel(), b.ravel()],
    })
    return df[df["role"] != ""].reset_index(drop=True)


def load_features(path):
    """./bin/features' .npz as a dict of arrays."""
    return load_npz(path)


def _scalar(v):
    v = np.asarray(v).ravel()
    if v.dtype.kind == "U":
        return str(v[0]) if v.size == 1 else [str(x) for x in v]
    return float(v[0]) if v.size == 1 else v


def load_checkpoint(path):
    """A checkpoint as (params, meta): params maps each parameter name to its float32 array
    ("conv1.weight", "conv3.cell.weight", "conv2.fb.conv5.weight", "readout.V4.weight", ...);
    meta maps each "meta.*" key, without the prefix, to a str, a float or an array."""
    z = load_npz(path)
    params = {k: v for k, v in z.items() if not k.startswith("meta.")}
    meta = {k[5:]: _scalar(v) for k, v in z.items() if k.startswith("meta.")}
    return params, meta
