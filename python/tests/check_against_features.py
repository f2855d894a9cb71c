"""The golden check of the PyTorch twin (ventral/torch_model.py) against ./bin/features.

    python3 python/tests/check_against_features.py CKPT FEATURES.npz IMAGES.npz [--steps T --image-steps K]

Rebuilds the checkpoint in PyTorch, runs it on the images' `images` array, and compares every
layer that FEATURES.npz holds at every step ((N, T, C, H, W); a silent layer must be exactly
zero there) and, for a fitted checkpoint, every `prediction.<area>` (N, U, B). Prints the
worst error relative to each array's largest magnitude and exits 1 above --tol.
Run by tests/test_python.cpp.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ventral.torch_model import ConvRNN  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("features")
ap.add_argument("images")
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--image-steps", type=int, default=None)
ap.add_argument("--tol", type=float, default=1e-5)
a = ap.parse_args()

torch.set_num_threads(1)
model = ConvRNN.from_checkpoint(a.checkpoint)
feats = np.load(a.features)
x = model.preprocess(np.load(a.images)["images"])
outs = model(x, steps=a.steps, image_steps=a.image_steps)
worst, compared = 0.0, 0
for layer in [l.name for l in model.layers]:
    if layer not in feats.files:
        continue
    ref = feats[layer]
    assert ref.shape[1] == len(outs), (layer, ref.shape, len(outs))
    scale = max(float(np.abs(ref).max()), 1e-30)
    for t in range(len(outs)):
        o = outs[t][layer]
        if o is None:
            assert not ref[:, t].any(), "%s is silent at step %d in PyTorch but not in ventral" % (layer, t)
            continue
        assert np.isfinite(o.numpy()).all(), "%s at step %d: non-finite values" % (layer, t)
        err = float(np.abs(o.numpy() - ref[:, t]).max()) / scale
        worst = max(worst, err)
        compared += 1
    print("%s: %d steps, scale %.3g, worst relative error so far %.2e" % (layer, ref.shape[1], scale, worst))
if model.fitted:
    pred = model.predict(x)
    for area, p in pred.items():
        ref = feats["prediction." + area]
        assert list(feats["unit_id." + area]) == model.unit_ids(area)
        assert np.isfinite(p.numpy()).all(), "prediction.%s: non-finite values" % area
        err = float(np.abs(p.numpy() - ref).max()) / max(float(np.abs(ref).max()), 1e-30)
        worst = max(worst, err)
        compared += 1
        print("prediction.%s %s: relative error %.2e" % (area, ref.shape, err))
print("compared %d arrays; worst relative error %.2e (tolerance %.0e)" % (compared, worst, a.tol))
sys.exit(0 if compared > 0 and worst <= a.tol else 1)
