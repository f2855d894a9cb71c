#!/usr/bin/env python3
"""convert_cowley.py: Cowley et al. (2023) V4 sessions -> ventral neural datasets (.npz).

  python3 tools/convert_cowley.py --src V4_compact_models/data_V4_responses --out-dir data/cowley
  python3 tools/convert_cowley.py --src DIR --out-dir OUT --sessions 190925,210224

--src: the data_V4_responses/ folder of the authors' repository (github.com/cowleygroup/
V4_compact_models). Without --sessions, every session with both its responses and its images
(the repository has responses of more sessions than images; those are skipped, and named).

Input (the layout of the authors' data_V4_responses/ folder; see SOURCE.md there):
  images/images_<session>.zip               images_<session>/imageNNNN.jpg, 1-based, RGB
  responses_repeat_averaged/responses_<session>.npy
                                            float (neurons, images): spike counts in one
                                            100 ms window, averaged over repeats
Image k in name order is response column k-1. Output OUT_DIR/cowley_<session>.npz:
responses (R=1, N, U, B=1) float32, one bin 0-100 ms, every unit in area "V4",
unit_id "<session>_n<k>", image_id the file name. R = 1 means no noise ceiling: ventral
scores such data with raw r^2. Cite Cowley, Stan, Pillow & Smith (2023) when using it.
"""
import argparse
import glob
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ventral_format import FormatError, check_output, load_npy, open_zip, write_dataset, zip_image  # noqa: E402


def sessions_in(src):
    found = []
    for p in sorted(glob.glob(os.path.join(src, "responses_repeat_averaged", "responses_*.npy"))):
        found.append(re.sub(r"^responses_|\.npy$", "", os.path.basename(p)))
    return found


def convert(src, session, out_path):
    rpath = os.path.join(src, "responses_repeat_averaged", f"responses_{session}.npy")
    zpath = os.path.join(src, "images", f"images_{session}.zip")
    for p in (rpath, zpath):
        if not os.path.isfile(p):
            raise FormatError(f"session {session}: missing {p}")
    resp = load_npy(rpath)
    if resp.ndim != 2 or resp.dtype.kind != "f":
        raise FormatError(f"{rpath}: expected a float array (neurons, images), found {resp.dtype} {resp.shape}")
    U, N = resp.shape
    with open_zip(zpath) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png")))
        if len(names) != N:
            raise FormatError(f"{zpath} holds {len(names)} images but {rpath} has {N} image columns")
        imgs = [zip_image(z, zpath, n) for n in names]
    shapes = {im.shape for im in imgs}
    if len(shapes) != 1:
        raise FormatError(f"{zpath}: images of different sizes {sorted(shapes)}")
    images = np.stack(imgs)
    responses = resp.T.astype(np.float32)[None, :, :, None]  # (1, N, U, 1)
    write_dataset(out_path, images, responses, ["V4"] * U, [0.0], [100.0],
                  unit_id=[f"{session}_n{k}" for k in range(U)],
                  image_id=[os.path.basename(n) for n in names], presentation_ms=100.0)
    return N, U, images.shape[1:3]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="the data_V4_responses folder (images/, responses_repeat_averaged/)")
    ap.add_argument("--out-dir", required=True, help="where cowley_<session>.npz files go")
    ap.add_argument("--sessions", default="", help="comma-separated session ids (default: every session in --src)")
    a = ap.parse_args()
    np.seterr(over="ignore")  # a value beyond float32 becomes inf, which write_dataset reports
    if not os.path.isdir(a.src):
        raise FormatError(f"--src {a.src} is not a folder")
    have = sessions_in(a.src)
    if not have:
        raise FormatError(f"--src {a.src}: no responses_repeat_averaged/responses_<session>.npy found")
    want = [s for s in a.sessions.split(",") if s]
    if not want:  # every session whose images are there too (the authors' repository has responses without them)
        want = [s for s in have if os.path.isfile(os.path.join(a.src, "images", f"images_{s}.zip"))]
        if not want:
            raise FormatError(f"--src {a.src}: no session has both responses_repeat_averaged/responses_<session>.npy "
                              f"and images/images_<session>.zip (responses of {', '.join(have)})")
        if len(want) < len(have):
            n = len(have) - len(want)
            print(f"note: skipped {n} session{'s' if n > 1 else ''} without images/images_<session>.zip: "
                  f"{', '.join(s for s in have if s not in want)}", file=sys.stderr)
    for s in want:
        if s not in have:
            raise FormatError(f"session {s} is not in {a.src} (it has: {', '.join(have)})")
        check_output(os.path.join(a.out_dir, f"cowley_{s}.npz"))  # before any conversion
    for s in want:
        out = os.path.join(a.out_dir, f"cowley_{s}.npz")
        N, U, hw = convert(a.src, s, out)
        print(f"{out}: {N} images {hw[0]}x{hw[1]}, {U} V4 units, 1 bin (0-100 ms), R = 1")


if __name__ == "__main__":
    main()
