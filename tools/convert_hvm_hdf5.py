#!/usr/bin/env python3
"""convert_hvm_hdf5.py: the lab's ventral_neural_data.hdf5 (HvM, Majaj et al. 2015) -> ventral .npz.

  python3 tools/convert_hvm_hdf5.py --hdf5 ventral_neural_data.hdf5 --out data/hvm_70-170.npz
  python3 tools/convert_hvm_hdf5.py --hdf5 ventral_neural_data.hdf5 --out data/hvm_binned.npz \
      --responses time_binned --bins -100:20:10

The layout assumed (the file distributed with the DiCarlo/Yamins course material; no copy
could be checked here, so every assumption is validated and a mismatch fails naming it):
  images                     (N, H, W) grey or (N, H, W, 3); uint8, or float in [0, 1]
  image_meta/<field>         (N,) per image: object_name, category, variation_level
                             ("V0"/"V3"/"V6" or 0/3/6), optional id
  neural_meta/V4_NEURONS     integer indices of the V4 sites into the neuron axis
  neural_meta/IT_NEURONS     integer indices of the IT sites
  time_averaged/variation_level_<v>    (R_v, N_v, U_all)     trials x images x neurons
  time_binned/variation_level_<v>      (R_v, N_v, U_all, B)  trials x images x neurons x bins
  time_averaged_trial_averaged         (N, U_all)            used with --trial-averaged or
  time_binned_trial_averaged           (N, U_all, B)         when the per-trial groups are absent
Images of level v are the images whose variation_level is v, in file order; N_v must match.
Trials beyond an image's level's R_v are NaN (R = max R_v). A 2-d time_averaged dataset
(N, U_all) is read as trial-averaged data. Bin times are not stored in the known copies:
time_averaged is one bin --window (default 70,170 ms, Majaj et al.'s window); time_binned
needs --bins START:WIDTH:STEP (ms) unless the file has bin_start_ms/bin_end_ms datasets
(at the root or in neural_meta). Units: V4 sites then IT sites, unit_id "n<index>".
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ventral_format import (FormatError, check_output, level_of, need_file, not_a, numeric, reading,  # noqa: E402
                            window_ms, write_dataset)


def node(g, key, kind):
    """g[key], which must be an h5py.Dataset or h5py.Group (kind); a FormatError naming it otherwise."""
    x = g[key] if key in g else None  # g[key] of a damaged object raises KeyError (see reading())
    where = "the top level" if g.name == "/" else g.name.lstrip("/")
    if x is None:
        raise FormatError(f"{g.file.filename}: {where} has no {key} (it has: {', '.join(map(str, g.keys()))})")
    if not isinstance(x, kind):
        raise FormatError(f"{g.file.filename}: {x.name.lstrip('/')} is an HDF5 {type(x).__name__.lower()}, "
                          f"expected a {kind.__name__.lower()}")
    return x


def numbers(ds):
    """The values of dataset ds, which must be numbers."""
    return numeric(ds[()], f"{ds.file.filename}: {ds.name.lstrip('/')}")


def strings(ds):
    v = np.asarray(ds[()])
    try:
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v.ravel()])
    except UnicodeDecodeError as e:
        raise FormatError(f"{ds.file.filename}: {ds.name.lstrip('/')}: expected UTF-8 strings, found {e.object[:40]!r}")


def images_rgb(ds):
    x = numbers(ds)
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=3)
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise FormatError(f"images: expected (N, H, W) or (N, H, W, 3), found {x.shape}")
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise FormatError("images: float pixels must be finite, found NaN or infinity")
        hi = float(x.max()) if x.size else 0.0
        x = x * 255.0 if hi <= 1.0 + 1e-6 else x
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    raise FormatError(f"images: expected uint8 or float pixels, found {x.dtype}")


def bins_arg(text):
    """--bins START:WIDTH:STEP (ms) -> (start, width, step), or None when not given."""
    if not text:
        return None
    try:
        start, width, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise FormatError(f"--bins: expected START:WIDTH:STEP in ms, got '{text}'")
    return start, width, step


def find_bins(f, B, bins):
    import h5py
    for g in (f, f["neural_meta"]):
        if "bin_start_ms" in g and "bin_end_ms" in g:
            return (numbers(node(g, "bin_start_ms", h5py.Dataset)).astype(np.float32),
                    numbers(node(g, "bin_end_ms", h5py.Dataset)).astype(np.float32))
    if bins is None:
        raise FormatError(f"the file stores {B} time bins but no bin times; pass --bins START:WIDTH:STEP in ms "
                          f"(e.g. --bins=-100:20:10 for 20 ms windows every 10 ms from -100 ms)")
    start, width, step = bins
    bs = start + step * np.arange(B)
    return bs.astype(np.float32), (bs + width).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hdf5", required=True, help="ventral_neural_data.hdf5")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--responses", default="time_averaged", choices=["time_averaged", "time_binned"])
    ap.add_argument("--trial-averaged", action="store_true", help="use the *_trial_averaged datasets (R = 1)")
    ap.add_argument("--window", default="70,170", help="bin edges START,END (ms) of time_averaged")
    ap.add_argument("--bins", default="", help="time_binned bin times START:WIDTH:STEP (ms)")
    a = ap.parse_args()
    np.seterr(over="ignore")  # a value beyond float32 becomes inf, which write_dataset reports
    try:
        import h5py
    except ImportError:
        raise FormatError("reading HDF5 needs h5py: python3 -m pip install h5py")
    need_file(a.hdf5, "--hdf5")
    window = window_ms("--window", a.window)
    bins = bins_arg(a.bins)
    check_output(a.out)
    try:
        f = h5py.File(a.hdf5, "r")
    except OSError as e:
        raise not_a(a.hdf5, "an HDF5 file", e)
    with reading(a.hdf5, "an HDF5 file", OSError, RuntimeError, KeyError), f:  # KeyError: a damaged object
        images = images_rgb(node(f, "images", h5py.Dataset))
        N = images.shape[0]
        meta = node(f, "image_meta", h5py.Group)
        neural_meta = node(f, "neural_meta", h5py.Group)
        fields = {k: strings(meta[k]) for k in map(str, meta.keys()) if isinstance(meta[k], h5py.Dataset)}
        for k, v in fields.items():
            if len(v) != N:
                raise FormatError(f"image_meta/{k} has {len(v)} entries for {N} images")
        if "variation_level" not in fields:
            raise FormatError(f"image_meta has no variation_level (fields: {', '.join(fields)})")
        level = np.array([level_of(v, "image_meta/variation_level value") for v in fields["variation_level"]])
        units, areas = [], []
        for area in ("V4", "IT"):
            idx = numbers(node(neural_meta, f"{area}_NEURONS", h5py.Dataset)).ravel()
            bad = ~np.isfinite(idx) | (idx < 0) | (idx != np.floor(idx))
            if bad.any():
                raise FormatError(f"neural_meta/{area}_NEURONS: expected neuron indices (integers >= 0), "
                                  f"found {idx[bad][0]}")
            units += list(idx.astype(np.int64))
            areas += [area] * len(idx)
        units = np.array(units, dtype=np.int64)
        if not len(units):
            raise FormatError("neural_meta: V4_NEURONS and IT_NEURONS are both empty")
        name = a.responses
        avg_name = name + "_trial_averaged"
        binned = name == "time_binned"
        per_trial = not a.trial_averaged and name in f and isinstance(f[name], h5py.Group)
        if per_trial:
            g = f[name]
            groups = sorted(map(str, g.keys()))  # str(): h5py gives bytes for a name it cannot decode
            if not groups:
                raise FormatError(f"{a.hdf5}: {name} is an empty group, expected variation_level_<v> datasets")
            blocks, R, seen = [], 0, set()
            for k in groups:
                if not k.startswith("variation_level_"):
                    raise FormatError(f"{name}/{k}: expected datasets named variation_level_<v>")
                v = level_of(k[len("variation_level_"):], f"{name}/{k}: level")
                if v in seen:
                    raise FormatError(f"{name}/{k}: a second dataset for level V{v}")
                seen.add(v)
                imgs = np.nonzero(level == v)[0]
                x = node(g, k, h5py.Dataset)
                want = 4 if binned else 3
                if x.dtype.kind not in "iuf":
                    raise FormatError(f"{name}/{k} holds {x.dtype}, expected numbers")
                if x.ndim != want or x.shape[1] != len(imgs):
                    raise FormatError(f"{name}/{k} has shape {x.shape}; expected {want} dims (trials, images, neurons"
                                      f"{', bins' if binned else ''}) with {len(imgs)} images (those of level V{v})")
                blocks.append((imgs, x))
                R = max(R, x.shape[0])
            covered = np.concatenate([b[0] for b in blocks])
            if len(np.unique(covered)) != N:
                raise FormatError(f"{name}: its variation levels cover {len(np.unique(covered))} of the {N} images")
            U_all = blocks[0][1].shape[2]
            B = blocks[0][1].shape[3] if binned else 1
            responses = np.full((R, N, len(units), B), np.nan, dtype=np.float32)
            for imgs, x in blocks:
                if x.shape[2] != U_all or (binned and x.shape[3] != B):
                    raise FormatError(f"{name}: levels disagree on neurons/bins: {x.shape}")
                if units.max() >= U_all:
                    raise FormatError(f"neural_meta indices reach {units.max()}, but {name} has {U_all} neurons")
                y = np.asarray(x[()], dtype=np.float32)[:, :, units]
                responses[: y.shape[0], imgs] = y if binned else y[..., None]
        else:
            src = avg_name if avg_name in f else name
            if src not in f or not isinstance(f[src], h5py.Dataset):
                raise FormatError(f"{a.hdf5}: neither per-trial '{name}' groups nor a '{avg_name}' dataset")
            x = numbers(f[src]).astype(np.float32)
            want = 3 if binned else 2
            if x.ndim != want or x.shape[0] != N:
                raise FormatError(f"{src} has shape {x.shape}; expected (images={N}, neurons{', bins' if binned else ''})")
            if units.max() >= x.shape[1]:
                raise FormatError(f"neural_meta indices reach {units.max()}, but {src} has {x.shape[1]} neurons")
            y = x[:, units]
            responses = (y if binned else y[..., None])[None]
            B = responses.shape[3]
        if binned:
            bs, be = find_bins(f, B, bins)
        else:
            bs, be = window
    ids = fields.get("id", fields.get("_id"))
    write_dataset(a.out, images, responses, areas, bs, be, unit_id=[f"n{k}" for k in units],
                  image_id=ids, image_object=fields.get("object_name"),
                  image_category=fields.get("category", fields.get("category_name")),
                  image_variation=level, presentation_ms=100.0)
    R = responses.shape[0]
    print(f"{a.out}: {N} images {images.shape[1]}x{images.shape[2]}, {areas.count('V4')} V4 + {areas.count('IT')} IT "
          f"units, {len(bs)} bins, R = {R}")


if __name__ == "__main__":
    main()
