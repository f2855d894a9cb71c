#!/usr/bin/env python3
"""convert_brainscore_majaj.py: a Brain-Score MajajHong2015 assembly -> ventral neural dataset (.npz).

  python3 tools/convert_brainscore_majaj.py --assembly assy_dicarlo_MajajHong2015_public.nc \
      --stimuli-csv stimulus_hvm-public.csv --stimuli-zip stimulus_hvm-public.zip --out data/majaj_public.npz

Input (Brain-Score / BrainIO's published layout):
  --assembly     netCDF (netCDF4/HDF5) written by xarray: one data variable with dims neuroid,
                 presentation and time_bin (any order; a 2-d neuroid x presentation variable is
                 taken as one bin, edges from scalar time_bin_start/time_bin_end variables or
                 --window). Coordinates are 1-d variables along their dimension:
                   neuroid:      neuroid_id, region
                   presentation: stimulus_id (older files: image_id), repetition,
                                 object_name, category_name, variation (optional)
                   time_bin:     time_bin_start, time_bin_end (ms)
                 Strings may be variable-length or char arrays.
  --stimuli-csv  the stimulus set's metadata: a stimulus_id (or image_id) column and a file
                 name column (filename, image_file_name or file_name); object_name,
                 category_name, variation are taken from here when the assembly lacks them.
  --stimuli-zip  the stimulus images (PNG/JPEG), matched to the CSV's file names by base name.

Output: images in order of first appearance in the assembly; responses (R, N, U, B) with
R the largest number of presentations of one image, each image's trials ordered by the
repetition coordinate and NaN after its last one; unit_area = region, unit_id = neuroid_id;
image_id = stimulus_id; image_object/category/variation ("V3" -> 3); bins from the coords.
Memory: the output array (R*N*U*B float32: the full temporal HvM assembly is ~6 GB) plus
one chunk of presentations at a time from the assembly.
"""
import argparse
import csv
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ventral_format import (FormatError, check_output, level_of, need_file, not_a, numeric, open_zip,  # noqa: E402
                            reading, window_ms, write_dataset, zip_image)

DIMS = ("neuroid", "presentation", "time_bin")


def netcdf_opens(path):
    """netCDF-C never returns from opening some damaged files (netCDF 4.10 on HDF5 2.2): the file is
    opened first in a child process with a time limit (VT_NETCDF_OPEN_SECONDS, default 60; the open
    reads only the header, well under a second for an intact file)."""
    seconds = float(os.environ.get("VT_NETCDF_OPEN_SECONDS", "60"))
    try:
        subprocess.run([sys.executable, "-c", "import sys, netCDF4; netCDF4.Dataset(sys.argv[1]).close()", path],
                       capture_output=True, timeout=seconds)  # an error there is met again, and named, below
    except subprocess.TimeoutExpired:
        raise FormatError(f"{path}: expected a netCDF assembly, found a damaged file (opening it did not finish in "
                          f"{seconds:g} s)")


def as_strings(var):
    """A netCDF variable of strings (vlen or char array) -> numpy str array."""
    import netCDF4
    try:
        v = np.asarray(var[...])
        if v.dtype.kind == "S" and v.ndim == 2:  # a char array (presentation, string_length)
            v = netCDF4.chartostring(v)
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v.ravel()])
    except UnicodeDecodeError as e:
        raise FormatError(f"assembly: variable '{var.name}': expected UTF-8 strings, found {e.object[:40]!r}")


def coord(ds, name, dim, required=True, aliases=()):
    for n in (name,) + tuple(aliases):
        v = ds.variables.get(n)
        if v is not None and (v.dimensions == (dim,) or v.dimensions[:1] == (dim,) and v.dtype == "S1" and v.ndim == 2):
            return v  # 1-d, or a char array (dim, string_length)
    if required:
        raise FormatError(f"assembly: no coordinate '{name}' along '{dim}' (expected a 1-d variable {name}({dim}); "
                          f"variables present: {', '.join(sorted(ds.variables))})")
    return None


def numbers(var):
    return numeric(var[...], f"assembly: variable '{var.name}'").astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assembly", required=True, help="the assembly's netCDF file")
    ap.add_argument("--stimuli-csv", required=True, help="the stimulus set's CSV")
    ap.add_argument("--stimuli-zip", required=True, help="the stimulus set's image zip")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--window", default="70,170", help="bin edges START,END (ms) for an assembly without time bins")
    ap.add_argument("--chunk", type=int, default=4096, help="presentations read at a time")
    a = ap.parse_args()
    np.seterr(over="ignore")  # a value beyond float32 becomes inf, which write_dataset reports
    try:
        import netCDF4
    except ImportError:
        raise FormatError("reading the assembly needs netCDF4: python3 -m pip install netCDF4")
    for flag, p in (("--assembly", a.assembly), ("--stimuli-csv", a.stimuli_csv), ("--stimuli-zip", a.stimuli_zip)):
        need_file(p, flag)
    if a.chunk < 1:
        raise FormatError(f"--chunk: expected a positive number of presentations, got {a.chunk}")
    window = window_ms("--window", a.window)
    check_output(a.out)

    netcdf_opens(a.assembly)
    try:
        ds = netCDF4.Dataset(a.assembly)
    except (OSError, RuntimeError) as e:
        raise not_a(a.assembly, "a netCDF assembly", e)
    with reading(a.assembly, "a netCDF assembly", OSError, RuntimeError), ds:
        ds.set_auto_mask(False)
        data = [v for v in ds.variables.values() if "neuroid" in v.dimensions and "presentation" in v.dimensions]
        if len(data) != 1:
            raise FormatError(f"assembly {a.assembly}: expected one data variable over (neuroid, presentation"
                              f"[, time_bin]), found {len(data)}: {[v.name for v in data]}")
        var = data[0]
        if set(var.dimensions) - set(DIMS):
            raise FormatError(f"assembly: data variable '{var.name}' has dims {var.dimensions}, expected {DIMS}")
        if getattr(var.dtype, "kind", "str") not in "iuf":
            raise FormatError(f"assembly: data variable '{var.name}' holds {var.dtype}, expected numbers")
        U, P = len(ds.dimensions["neuroid"]), len(ds.dimensions["presentation"])
        if P == 0:
            raise FormatError(f"assembly {a.assembly} has no presentations")
        region = as_strings(coord(ds, "region", "neuroid"))
        nid = coord(ds, "neuroid_id", "neuroid", required=False)
        unit_id = as_strings(nid) if nid is not None else np.array([f"neuroid{k}" for k in range(U)])
        stim = as_strings(coord(ds, "stimulus_id", "presentation", aliases=("image_id",)))
        rep_var = coord(ds, "repetition", "presentation", required=False)
        rep = numbers(rep_var) if rep_var is not None else np.zeros(P)
        labels = {}
        for key in ("object_name", "category_name", "variation"):
            v = coord(ds, key, "presentation", required=False)
            if v is not None:
                labels[key] = as_strings(v)
        if "time_bin" in var.dimensions:
            bs = numbers(coord(ds, "time_bin_start", "time_bin"))
            be = numbers(coord(ds, "time_bin_end", "time_bin"))
        elif "time_bin_start" in ds.variables and "time_bin_end" in ds.variables:
            bs = numbers(ds.variables["time_bin_start"]).reshape(-1)
            be = numbers(ds.variables["time_bin_end"]).reshape(-1)
            if bs.size != 1 or be.size != 1:  # one time-averaged response is one bin
                raise FormatError(f"assembly: the data variable has no time_bin dimension, but time_bin_start and "
                                  f"time_bin_end hold {bs.size} and {be.size} values (expected 1 each)")
        else:
            bs, be = window
        B = len(bs)

        # Images in order of first appearance; trials of an image ordered by repetition.
        order, first = [], {}
        for s in stim:
            if s not in first:
                first[s] = len(order)
                order.append(s)
        img_of = np.array([first[s] for s in stim])
        N = len(order)
        slot = np.zeros(P, dtype=np.int64)
        count = np.zeros(N, dtype=np.int64)
        for p in np.lexsort((np.arange(P), rep, img_of)):
            slot[p] = count[img_of[p]]
            count[img_of[p]] += 1
        R = int(count.max())
        responses = np.full((R, N, U, B), np.nan, dtype=np.float32)
        perm = [var.dimensions.index(d) for d in DIMS if d in var.dimensions]
        for p0 in range(0, P, a.chunk):
            p1 = min(P, p0 + a.chunk)
            idx = tuple(slice(p0, p1) if d == "presentation" else slice(None) for d in var.dimensions)
            x = np.asarray(var[idx], dtype=np.float32).transpose(perm)  # (U, p, [B])
            if x.ndim == 2:
                x = x[:, :, None]
            responses[slot[p0:p1], img_of[p0:p1]] = x.transpose(1, 0, 2)

    # Stimulus set: labels fallback and the images.
    try:
        with open(a.stimuli_csv, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise not_a(a.stimuli_csv, "a UTF-8 CSV", e)
    if not rows:
        raise FormatError(f"{a.stimuli_csv} has no rows")
    cols = rows[0].keys()
    id_col = next((c for c in ("stimulus_id", "image_id") if c in cols), None)
    file_col = next((c for c in ("filename", "image_file_name", "file_name") if c in cols), None)
    if id_col is None or file_col is None:
        raise FormatError(f"{a.stimuli_csv}: expected a stimulus_id (or image_id) column and a filename (or "
                          f"image_file_name) column, found {list(cols)}")
    meta = {r[id_col]: r for r in rows}
    missing = [s for s in order if s not in meta]
    if missing:
        raise FormatError(f"{len(missing)} stimuli of the assembly are not in {a.stimuli_csv}, e.g. '{missing[0]}'")
    for key in ("object_name", "category_name", "variation"):
        if key not in labels and key in cols:
            labels[key] = None  # from the CSV, per image below
    with open_zip(a.stimuli_zip) as z:
        by_base = {os.path.basename(n): n for n in z.namelist() if not n.endswith("/")}
        imgs = []
        for s in order:
            fn = os.path.basename(meta[s][file_col] or "")  # None: a short row
            if not fn:
                raise FormatError(f"{a.stimuli_csv}: stimulus '{s}' has no {file_col}")
            if fn not in by_base:
                raise FormatError(f"stimulus '{s}': file '{fn}' is not in {a.stimuli_zip}")
            imgs.append(zip_image(z, a.stimuli_zip, by_base[fn]))
    sizes = {im.shape for im in imgs}
    if len(sizes) != 1:
        raise FormatError(f"stimulus images have different sizes {sorted(sizes)}; resize them to one size first")

    def per_image(key):
        if key not in labels:
            return None
        if labels[key] is None:
            return [meta[s][key] for s in order]
        first_pres = {}
        for p, s in enumerate(stim):
            first_pres.setdefault(s, p)
        return [labels[key][first_pres[s]] for s in order]

    var_lab = per_image("variation")
    write_dataset(a.out, np.stack(imgs), responses, region, bs, be, unit_id=unit_id, image_id=order,
                  image_object=per_image("object_name"), image_category=per_image("category_name"),
                  image_variation=None if var_lab is None else np.array([level_of(v, "variation") for v in var_lab]),
                  presentation_ms=100.0)
    print(f"{a.out}: {N} images {imgs[0].shape[0]}x{imgs[0].shape[1]}, {U} units "
          f"({', '.join(f'{r} {int((region == r).sum())}' for r in dict.fromkeys(region))}), {B} bins, "
          f"R = {R} ({int(np.isnan(responses[:, :, 0, 0]).sum())} missing trials padded with NaN)")


if __name__ == "__main__":
    main()
