"""A Brain-Score BrainModel over a ventral ConvRNN (brainscore-vision from PyPI).

    from ventral.brainscore import VentralBrainModel
    model = VentralBrainModel("runs/fit_dynamics/lstm_conv5-conv2/checkpoints/split0.npz")
    model.start_task(BrainModel.Task.passive)
    model.start_recording("IT", time_bins=[(70, 170), (170, 270)])
    assembly = model.look_at(stimulus_set)       # NeuroidAssembly (presentation, neuroid, time_bin)

A region is recorded from the layer the checkpoint's readout maps it from (meta.readout, e.g.
V4 = conv3, IT = conv5; `regions=` overrides): the model's neuroids are that layer's units
(channel, y, x), and a time bin [start, end) ms is the mean of the layer over the model steps
that fall in it (step t is at onset_ms + t * ms_per_step after image onset, the fit's time
convention; a checkpoint without one is taken at onset 0 ms, 10 ms per step). Brain-Score's
benchmarks then fit their own map from these neuroids to their neurons, as for any model.
With `fitted_units=True` the neuroids are instead the fitted readout's predictions of the
units ventral was fitted to (in sp/s), for comparing with those same recordings.
"""
import numpy as np
import torch
from PIL import Image

from brainscore_vision.model_interface import BrainModel
from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

from .torch_model import ConvRNN, _steps_of_bins


class VentralBrainModel(BrainModel):
    def __init__(self, checkpoint, identifier=None, visual_degrees=8, regions=None, fitted_units=False, batch=32):
        self.model = checkpoint if isinstance(checkpoint, ConvRNN) else ConvRNN.from_checkpoint(checkpoint)
        self._identifier = identifier or "ventral-%s-%s-%s" % (self.model.arch, self.model.motif,
                                                              self.model.meta.get("feedback", "none"))
        self._visual_degrees = visual_degrees
        names = [l.name for l in self.model.layers]
        if regions is None:
            regions = {}
            for pair in str(self.model.meta.get("readout", "")).split(","):
                if "=" in pair:
                    area, layer = pair.split("=")
                    regions[area] = layer
        for area, layer in regions.items():
            if layer not in names:
                raise ValueError("region %s: no layer %r (layers: %s)" % (area, layer, ", ".join(names)))
        self.regions = regions
        self.fitted_units = fitted_units
        self.batch = batch
        self.onset_ms = float(self.model.meta.get("onset_ms", 0.0))
        self.ms_per_step = float(self.model.meta.get("ms_per_step", 10.0))
        self.image_steps = self.model.image_steps
        self._region, self._time_bins, self._task = None, None, None

    def identifier(self):
        return self._identifier

    def visual_degrees(self):
        return self._visual_degrees

    def start_task(self, task, fitting_stimuli=None):
        if task != BrainModel.Task.passive:
            raise NotImplementedError("ventral models record neural activity (Task.passive); %r is not supported" % task)
        self._task = task

    def start_recording(self, recording_target, time_bins):
        if recording_target not in self.regions:
            raise ValueError("region %r: this model maps %s" % (recording_target, ", ".join(sorted(self.regions)) or "none"))
        bins = [(float(s), float(e)) for s, e in time_bins]
        if not bins or any(e <= s for s, e in bins):
            raise ValueError("time_bins: expected (start, end) pairs with start < end, got %r" % (time_bins,))
        if self.fitted_units and not self.model.fitted:
            raise ValueError("fitted_units: the checkpoint is not a fit's split checkpoint")
        if self.fitted_units and recording_target not in [r[0] for r in self.model.readouts]:
            raise ValueError("fitted_units: the fit has no readout for %r" % recording_target)
        self._region, self._time_bins = recording_target, bins

    def _images(self, stimuli):
        if isinstance(stimuli, (list, tuple)):
            paths = [str(p) for p in stimuli]
            ids = paths
        else:
            ids = [str(s) for s in stimuli["stimulus_id"]]
            paths = [str(stimuli.get_stimulus(s)) for s in ids]
        return ids, paths

    def look_at(self, stimuli, number_of_trials=1):
        if self._region is None:
            raise RuntimeError("call start_recording(region, time_bins) before look_at")
        ids, paths = self._images(stimuli)
        m = self.model
        layer = self.regions[self._region]
        if self.fitted_units:  # the readout's own layer
            layer = m.layers[next(r[1] for r in m.readouts if r[0] == self._region)].name
        need = max(e for _, e in self._time_bins)
        T = max(1, int(np.ceil((need - self.onset_ms) / self.ms_per_step)))
        steps = _steps_of_bins([s for s, _ in self._time_bins], [e for _, e in self._time_bins], self.ms_per_step,
                               self.onset_ms, T)
        empty = [b for b, st in zip(self._time_bins, steps) if not st]
        if empty:
            raise ValueError("time bins %s hold no model step (one every %g ms from %g ms)" % (empty, self.ms_per_step,
                                                                                               self.onset_ms))
        chunks = []
        for i0 in range(0, len(paths), self.batch):
            x = torch.cat([m.preprocess(np.asarray(Image.open(p).convert("RGB"))[None]) for p in paths[i0:i0 + self.batch]])
            outs = m.forward(x, steps=T, image_steps=T if self.image_steps is None else min(self.image_steps, T))
            spec = next(l for l in m.layers if l.name == layer)
            per_bin = []
            for st in steps:
                acc = None
                for t in st:
                    o = outs[t][layer]
                    o = torch.zeros(x.shape[0], spec.out_ch, spec.out_size, spec.out_size) if o is None else o  # silent
                    acc = o if acc is None else acc + o
                feat = (acc / len(st)).reshape(x.shape[0], -1)
                if self.fitted_units:
                    _, _, _, W, b, mu, sd = next(r for r in m.readouts if r[0] == self._region)
                    feat = (feat @ W.T + b) * sd + mu
                per_bin.append(feat.numpy())
            chunks.append(np.stack(per_bin, 2))  # (n, neuroids, bins)
        values = np.concatenate(chunks, 0)
        if self.fitted_units:
            neuroid_id = m.unit_ids(self._region)
        else:
            spec = next(l for l in m.layers if l.name == layer)
            neuroid_id = ["%s.%d.%d.%d" % (layer, c, y, x) for c in range(spec.out_ch) for y in range(spec.out_size)
                          for x in range(spec.out_size)]
        return NeuroidAssembly(values, coords={
            "stimulus_id": ("presentation", ids),
            "stimulus_path": ("presentation", paths),
            "neuroid_id": ("neuroid", neuroid_id),
            "region": ("neuroid", [self._region] * len(neuroid_id)),
            "layer": ("neuroid", [layer] * len(neuroid_id)),
            "time_bin_start": ("time_bin", [s for s, _ in self._time_bins]),
            "time_bin_end": ("time_bin", [e for _, e in self._time_bins]),
        }, dims=["presentation", "neuroid", "time_bin"])
