"""The Brain-Score adapter (ventral/brainscore.py) on a small local stimulus set, no downloads.

    python3 python/tests/check_brainscore.py CKPT FEATURES.npz IMAGES.npz WORKDIR

CKPT is a fit's split checkpoint, FEATURES.npz what ./bin/features wrote for it on the
`images` of IMAGES.npz (per step, the readout layers). Writes the images as PNG files into
WORKDIR, wraps them in a StimulusSet and checks the assemblies `look_at` returns: dims and
coords, the layer neuroids against the bin means of ./bin/features' steps, the fitted units
against its predictions, and the errors. Run by tests/test_python.cpp.
"""
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet  # noqa: E402
from brainscore_vision.model_interface import BrainModel  # noqa: E402
from ventral.brainscore import VentralBrainModel  # noqa: E402

ckpt, feats_path, images_path, work = sys.argv[1:5]
feats = np.load(feats_path)
images = np.load(images_path)["images"]
ids = []
for i, img in enumerate(images):
    Image.fromarray(img).save(os.path.join(work, "stim%02d.png" % i))
    ids.append("stim%02d" % i)
stimuli = StimulusSet({"stimulus_id": ids, "filename": [s + ".png" for s in ids]})
stimuli.stimulus_paths = {s: os.path.join(work, s + ".png") for s in ids}
stimuli.identifier = "ventral-test-local"

model = VentralBrainModel(ckpt)
assert model.identifier().startswith("ventral-tiny3-gru"), model.identifier()
model.start_task(BrainModel.Task.passive)
step_ms = feats["step_ms"]
worst = 0.0
for region, layer in model.regions.items():
    bins = [(int(s), int(e)) for s, e in zip(feats["bin_start_ms"], feats["bin_end_ms"])]
    bins = [b for b in bins if any(b[0] <= t < b[1] for t in step_ms)]  # bins with a step
    model.start_recording(region, bins)
    a = model.look_at(stimuli)
    assert a.dims == ("presentation", "neuroid", "time_bin"), a.dims
    assert list(a["stimulus_id"].values) == ids
    assert set(a["region"].values) == {region}
    assert list(a["time_bin_start"].values) == [s for s, _ in bins]
    assert np.isfinite(a.values).all()
    ref = feats[layer].reshape(len(ids), len(step_ms), -1)
    for k, (s, e) in enumerate(bins):
        want = ref[:, (step_ms >= s) & (step_ms < e)].mean(1)
        worst = max(worst, float(np.abs(a.values[:, :, k] - want).max()) / float(np.abs(ref).max()))
    # the fitted units: ./bin/features' predictions in the fit's bins
    fitted = VentralBrainModel(ckpt, fitted_units=True)
    fitted.start_task(BrainModel.Task.passive)
    all_bins = list(zip(feats["bin_start_ms"].astype(int), feats["bin_end_ms"].astype(int)))
    keep = [k for k, b in enumerate(all_bins) if any(b[0] <= t < b[1] for t in step_ms)]
    fitted.start_recording(region, [all_bins[k] for k in keep])
    p = fitted.look_at(stimuli)
    assert np.isfinite(p.values).all()
    assert list(p["neuroid_id"].values) == list(feats["unit_id." + region])
    want = feats["prediction." + region][:, :, keep]
    worst = max(worst, float(np.abs(p.values - want).max()) / float(np.abs(want).max()))
    print("%s (%s): %d neuroids x %d bins, fitted units %s" % (region, layer, a.shape[1], a.shape[2], p.shape))

early = VentralBrainModel(ckpt)
early.start_task(BrainModel.Task.passive)
early.start_recording("IT", [(float(step_ms[0]), float(step_ms[1]) + 1)])  # IT's layer (conv3) is silent then
assert not early.look_at(stimuli).values.any()
for bad, what in ((lambda: model.start_task(BrainModel.Task.label, "imagenet"), NotImplementedError),
                  (lambda: model.start_recording("V1", [(70, 170)]), ValueError),
                  (lambda: model.start_recording("IT", [(170, 70)]), ValueError),
                  (lambda: model.start_recording("IT", [(float(step_ms[2]) + 1, float(step_ms[2]) + 5)])
                   or model.look_at(stimuli), ValueError)):
    try:
        bad()
        raise AssertionError("no %s" % what.__name__)
    except what as e:
        print("refused:", e)
print("worst relative error %.2e" % worst)
sys.exit(0 if worst < 1e-5 else 1)
