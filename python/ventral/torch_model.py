"""A ventral ConvRNN rebuilt in PyTorch from a ventral checkpoint: the backbone, the eight
cells, feedback, the time convention and (for a fit's split checkpoint) the readouts. The
same computation as the C++ engine (models/convrnn.cpp, models/cells.h, docs/science.md);
tests/test_python.cpp checks every layer at every step and the per-bin predictions against
./bin/features.

    model = ConvRNN.from_checkpoint("runs/fit_dynamics/lstm_conv5-conv2/checkpoints/split0.npz")
    x = model.preprocess(images_uint8)          # (N, H, W, 3) uint8 -> (N, 3, S, S) normalised
    outs = model(x)                             # outs[t][layer name]: (N, C, H, W), None = silent
    pred = model.predict(x)                     # {"V4": (N, U, B) in sp/s, ...} (fitted checkpoints)

Time: step t = 0..T-1; every output and state is zero at t = 0; the image is shown for
image_steps steps, then the mean-grey frame; layer l at step t reads layer l-1 at step t-1
(and feedback sources at t-1), so conv k first sees the image at step k. A layer nothing has
reached yet is silent (None here, exactly zero in the C++ engine's outputs).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .arch import arch_spec
from .io import load_checkpoint

MOTIFS = ("none", "timedecay", "rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc")


def rnn_large_depth(C):
    return int(math.floor(C * (math.sqrt(33.0) - 1.0) / 2.0 + 0.5))


def _steps_of_bins(bin_start, bin_end, ms_per_step, onset_ms, T):
    """Steps feeding each bin: step t is at onset_ms + t * ms_per_step (models/fit/dynamics.h)."""
    out = []
    onset_ms, ms_per_step = float(onset_ms), float(ms_per_step)  # in double, as bin_steps in C++
    for s, e in zip(bin_start, bin_end):
        out.append([t for t in range(T) if float(s) <= t * ms_per_step + onset_ms < float(e)])
    return out


class ConvRNN(torch.nn.Module):
    def __init__(self, params, meta):
        super().__init__()
        self.meta = meta
        self.arch = meta["arch"]
        self.in_size, self.layers = arch_spec(self.arch)
        self.motif = meta.get("motif", "none")
        if self.motif not in MOTIFS:
            raise ValueError("unknown motif %r" % self.motif)
        self.residual = bool(meta.get("residual", 1.0 if self.motif != "none" else 0.0))
        names = [l.name for l in self.layers]
        self.feedback = []
        fb = meta.get("feedback", "none")
        if fb and fb != "none":
            for e in fb.split(","):
                src, dst = e.split(":")
                self.feedback.append((names.index(src), names.index(dst)))
        self.mean = torch.tensor(np.asarray(meta["mean"], dtype=np.float32)).view(1, 3, 1, 1)
        self.std = torch.tensor(np.asarray(meta["std"], dtype=np.float32)).view(1, 3, 1, 1)
        self.p = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items()}
        self.fitted = "split" in meta
        if self.fitted:
            self.steps = int(meta["steps"])
            self.image_steps = int(meta["image_steps"])
            self.bins = _steps_of_bins(np.atleast_1d(meta["bin_start_ms"]), np.atleast_1d(meta["bin_end_ms"]),
                                       meta["ms_per_step"], meta["onset_ms"], self.steps)
            self.readouts = []
            for pair in meta["readout"].split(","):
                area, layer = pair.split("=")
                ids = np.load(meta["_path"], allow_pickle=False)["meta.unit_id." + area]
                if len(ids) == 0:
                    continue
                self.readouts.append((area, names.index(layer), [str(i) for i in ids],
                                      self.p["readout.%s.weight" % area], self.p["readout.%s.bias" % area],
                                      torch.tensor(np.atleast_1d(meta["unit_mean." + area]), dtype=torch.float32),
                                      torch.tensor(np.atleast_1d(meta["unit_sd." + area]), dtype=torch.float32)))
        else:
            self.steps, self.image_steps = len(self.layers) + 1, None  # None: the image at every step

    @classmethod
    def from_checkpoint(cls, path):
        params, meta = load_checkpoint(path)
        meta["_path"] = path
        return cls(params, meta)

    # ---- input -------------------------------------------------------------------------
    def preprocess(self, images):
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S). Images of the input size are
        exact; others are resized (short side to S, centre crop) with PyTorch's antialiased
        bilinear resize, close to but not bit-identical with the C++ resize."""
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
        S = self.in_size
        if x.shape[2] != S or x.shape[3] != S:
            H, W = x.shape[2], x.shape[3]
            scale = S / min(H, W)
            h, w = max(S, round(H * scale)), max(S, round(W * scale))
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            top, left = (h - S) // 2, (w - S) // 2
            x = x[:, :, top:top + S, left:left + S]
        return (x - self.mean) / self.std

    # ---- one cell step (models/cells.h) ------------------------------------------------
    def _conv(self, x, name):
        return F.conv2d(x, self.p[name + "weight"], self.p[name + "bias"], stride=1, padding=1)

    def _cell(self, l, x, st):
        m, n = self.motif, self.layers[l].name + ".cell."
        C = x.shape[1]
        zeros = lambda c: torch.zeros(x.shape[0], c, x.shape[2], x.shape[3])
        if m == "none":
            return x
        if m == "timedecay":
            h = x if st.get("h") is None else st["h"] * torch.sigmoid(self.p[n + "tau"]).view(1, -1, 1, 1) + x
            st["h"] = h
            return h
        if m in ("rnn", "rnn-large"):
            D = C if m == "rnn" else rnn_large_depth(C)
            hp = st.get("h") if st.get("h") is not None else zeros(D)
            st["h"] = F.elu(self._conv(torch.cat([x, hp], 1), n))
            return st["h"][:, :C]
        if m == "gru":
            hp = st.get("h") if st.get("h") is not None else zeros(C)
            g1 = self._conv(torch.cat([x, hp], 1), n + "gates.")
            r, u = torch.sigmoid(g1[:, :C] + 1), torch.sigmoid(g1[:, C:] + 1)
            cand = torch.tanh(self._conv(torch.cat([x, r * hp], 1), n + "cand."))
            st["h"] = u * hp + (1 - u) * cand
            return st["h"]
        if m == "lstm":
            hp = st.get("h") if st.get("h") is not None else zeros(C)
            cp = st.get("c") if st.get("c") is not None else zeros(C)
            g = self._conv(torch.cat([x, hp], 1), n)
            i, j, f, o = torch.sigmoid(g[:, :C]), torch.tanh(g[:, C:2 * C]), torch.sigmoid(g[:, 2 * C:3 * C] + 1), \
                torch.sigmoid(g[:, 3 * C:])
            st["c"] = cp * f + i * j
            st["h"] = torch.tanh(st["c"]) * o
            return st["h"]
        if m == "ugrnn":
            hp = st.get("h") if st.get("h") is not None else zeros(C)
            g = self._conv(torch.cat([x, hp], 1), n)
            gate, cand = torch.sigmoid(g[:, :C] + 1), torch.tanh(g[:, C:])
            st["h"] = gate * hp + (1 - gate) * cand
            return st["h"]
        if m == "rgc":
            hp = st.get("h") if st.get("h") is not None else zeros(C)
            cp = st.get("c") if st.get("c") is not None else zeros(C)
            a, b, xc = self._conv(cp, n + "c."), self._conv(hp, n + "h."), self._conv(x, n + "x.")
            sa, sgh = torch.sigmoid(a[:, :C]), torch.sigmoid(a[:, C:])
            sgc, sth = torch.sigmoid(b[:, :C]), torch.sigmoid(b[:, C:])
            st["c"] = F.elu((1 - sa) * cp + (1 - sgc) * xc)
            st["h"] = F.elu((1 - sth) * hp + (1 - sgh) * x)
            return st["h"]
        raise ValueError(m)

    # ---- the unroll (models/convrnn.cpp unroll_build) ----------------------------------
    @torch.no_grad()
    def forward(self, x, steps=None, image_steps=None):
        """x: normalised (N, 3, S, S). Returns outs[t][layer name] for t < T: (N, C, H, W), or
        None where the layer is silent (nothing has reached it yet)."""
        T = self.steps if steps is None else steps
        K = image_steps if image_steps is not None else self.image_steps if self.image_steps is not None else T
        N, S = x.shape[0], self.in_size
        grey = ((0.5 - self.mean) / self.std).expand(N, 3, S, S)
        L = len(self.layers)
        outs = [[None] * L for _ in range(T)]
        state = [dict() for _ in range(L)]
        for t in range(1, T):
            frame = x if (t - 1) < K else grey
            for l, ls in enumerate(self.layers):
                ff = frame if l == 0 else outs[t - 1][l - 1]
                if ff is None:
                    continue
                inputs, weights = [ff], [self.p[ls.name + ".weight"]]
                for src, dst in self.feedback:
                    if dst != l or outs[t - 1][src] is None:
                        continue
                    s = outs[t - 1][src]
                    if s.shape[2:] != ff.shape[2:]:
                        s = F.interpolate(s, size=tuple(ff.shape[2:]), mode="bilinear", align_corners=True)
                    inputs.append(s)
                    weights.append(self.p["%s.fb.%s.weight" % (ls.name, self.layers[src].name)])
                xin = F.conv2d(torch.cat(inputs, 1), torch.cat(weights, 1), self.p[ls.name + ".bias"],
                               stride=ls.stride, padding=ls.pad)
                h = self._cell(l, xin, state[l])
                if self.residual and self.motif != "none":
                    h = xin + h * self.p[ls.name + ".cell.scale"].view(1, -1, 1, 1)
                h = F.elu(h) if ls.act == "elu" else F.relu(h)
                if ls.pool_k:
                    h = F.max_pool2d(h, ls.pool_k, ls.pool_s, ls.pool_p)
                outs[t][l] = h
        return [{self.layers[l].name: o[l] for l in range(L)} for o in outs]

    @torch.no_grad()
    def predict(self, x):
        """A fitted checkpoint's readouts: {area: (N, U, B) in the data's units}; x is uint8
        images (N, H, W, 3) or normalised (N, 3, S, S)."""
        if not self.fitted:
            raise ValueError("not a fit's split checkpoint: no readouts")
        if x.dtype == torch.uint8 or (isinstance(x, np.ndarray) and x.dtype == np.uint8):
            x = self.preprocess(x)
        outs = self.forward(x)
        res = {}
        for area, l, ids, W, b, mu, sd in self.readouts:
            name = self.layers[l].name
            N = x.shape[0]
            per_bin = []
            for steps in self.bins:
                f = torch.zeros(N, W.shape[1])
                for t in steps:
                    if outs[t][name] is not None:
                        f = f + outs[t][name].reshape(N, -1)
                if len(steps) > 1:
                    f = f / len(steps)
                per_bin.append((f @ W.T + b) * sd + mu)
            res[area] = torch.stack(per_bin, 2)
        return res

    def unit_ids(self, area):
        for a, _, ids, *_ in self.readouts:
            if a == area:
                return ids
        raise KeyError(area)
