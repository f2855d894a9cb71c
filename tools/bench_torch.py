#!/usr/bin/env python3
"""bench_torch.py: the PyTorch reference of ./bin/bench's W1-W5 (issue 14), to measure ventral
against PyTorch eager on the same machine with the same batch, steps and precision.

    python3 tools/bench_torch.py                          # W1-W5 on the CPU, all cores
    python3 tools/bench_torch.py --workload W1 --threads 2 --reps 5
    python3 tools/bench_torch.py --device cuda --precision tf32 --batch 64 --steps 26
    tools/bench_compare.sh                                # both, alternated, with the ratios

One JSON line per workload, like ./bin/bench's: {"workload", "impl": "pytorch", "ms_per_iter"
(the median of --reps timed iterations after --warmup untimed ones), "batch", "steps", ...}.

The same computation as ventral's (tools/bench.cpp, RecurrentWorkload; models/convrnn.cpp):
hcnn5-s (W1-W4) or hcnn5 (W5) with random He-initialised convs, a cell at every layer (`lstm`,
`gru` or none), feedback conv5:conv2 (the source bilinearly resized to the destination's
input, aligned corners, concatenated to its input channels before the layer's conv), each
layer conv -> cell -> ELU -> max-pool 3x3/2; layer l reads layer l-1 of the previous step, so
conv k first responds at step k; the image at every step. Readouts of 64 units from conv3 and
128 from conv5 at every step they respond, MSE against constant targets summed over steps;
one iteration = forward, backward, Adam (lr 1e-4) over the cells, feedback and readouts
(backbone frozen). W4 is inference (forward only, no gradients) at batch 64, T = 26.

Precision (PyTorch's policies, to compare with ventral's --precision): fp32 (TF32 off
everywhere), tf32 (TF32 matmuls and cuDNN convolutions: PyTorch's default for cuDNN
convolutions on Ampere and later), bf16 (autocast to bfloat16, FP32 master weights); the
default, `default`, is what PyTorch does untouched (cuDNN convs in TF32, matmuls in FP32).
PyTorch is needed by this script only, never by the engine.

--hoist does in PyTorch what ventral's unroll does (models/convrnn.cpp, its shortcuts): conv1,
fed by the same image at every step, runs once, and its cells' input half W_x x + b is
computed once and only W_h h added per step; a zero state's half of a cell conv is skipped; a
feedback source of at most 1/16 of the destination's pixels is convolved through its resize
taps (conv_upsampled below) instead of resized and concatenated. Without it the model is
written as the equations read (every conv over [x, h] at every step), as a PyTorch user would
write it. The same function either way, up to float rounding.
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("bench_torch.py: needs PyTorch (Debian: apt-get install python3-torch; or pip install torch)")

ARCHS = {  # (input side, channels of conv1..conv5); conv1 7x7/2, the rest 3x3/1, pool 3x3/2 pad 1
    "hcnn5": (128, [64, 128, 256, 256, 512]),
    "hcnn5-s": (64, [32, 64, 128, 128, 256]),
}
WORKLOADS = {  # name: (arch, motif, feedback edges (src, dst) 0-based, batch, steps, train)
    "W1": ("hcnn5-s", "lstm", [(4, 1)], 16, 16, True),
    "W2": ("hcnn5-s", "gru", [(4, 1)], 16, 16, True),
    "W3": ("hcnn5-s", "none", [], 16, 16, True),
    "W4": ("hcnn5-s", "lstm", [(4, 1)], 64, 26, False),
    "W5": ("hcnn5", "lstm", [(4, 1)], 8, 16, True),
}


def he(shape, gen, device):
    fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else shape[1]
    return (torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)).to(device)


def upsample_taps(h, w, H, W, k, stride, pad, device):
    """Phi (k*k*h*w, OH*OW): the weight of source pixel q under tap (kh, kw) at each output pixel
    of a k x k conv (stride, pad) over the (H, W) bilinear (align_corners) resize of an h x w map."""
    basis = torch.eye(h * w, device=device).reshape(h * w, 1, h, w)
    up = F.interpolate(basis, size=(H, W), mode="bilinear", align_corners=True)
    cols = F.unfold(up, k, padding=pad, stride=stride)  # (q, k*k, OH*OW)
    return cols.permute(1, 0, 2).reshape(k * k * h * w, -1)


def conv_upsampled(s, w, phi, OH, OW):
    """conv2d(resize(s), w) without the resized map: each tap's weights on the source's pixels, spread by phi."""
    N, C, h, wd = s.shape
    OC, _, k, _ = w.shape
    u = torch.einsum("ock,ncq->nokq", w.reshape(OC, C, k * k), s.reshape(N, C, h * wd))
    return (u.reshape(N * OC, -1) @ phi).reshape(N, OC, OH, OW)


class Workload(torch.nn.Module):
    def __init__(self, arch, motif, feedback, device, hoist=False):
        super().__init__()
        self.hoist = hoist
        self.phis = {}  # --hoist: conv_upsampled's taps per (layer, source size)
        gen = torch.Generator().manual_seed(1)
        self.size, self.ch = ARCHS[arch]
        self.motif, self.feedback = motif, feedback
        self.backbone = []  # frozen: plain tensors
        in_ch = 3
        for l, c in enumerate(self.ch):
            k = 7 if l == 0 else 3
            self.backbone.append((he((c, in_ch, k, k), gen, device), torch.zeros(c, device=device), 2 if l == 0 else 1, k // 2))
            in_ch = c
        self.fb = torch.nn.ParameterDict()
        for src, dst in feedback:  # "<dst>.fb.<src>.weight": the source's channels into the destination's conv
            k = 7 if dst == 0 else 3
            self.fb["%d_%d" % (src, dst)] = torch.nn.Parameter(he((self.ch[dst], self.ch[src], k, k), gen, device))
        self.cells = torch.nn.ParameterList()
        for c in self.ch:
            if motif == "lstm":
                self.cells.append(torch.nn.Parameter(he((4 * c, 2 * c, 3, 3), gen, device)))
                self.cells.append(torch.nn.Parameter(torch.zeros(4 * c, device=device)))
            elif motif == "gru":
                self.cells.append(torch.nn.Parameter(he((2 * c, 2 * c, 3, 3), gen, device)))
                self.cells.append(torch.nn.Parameter(torch.zeros(2 * c, device=device)))
                self.cells.append(torch.nn.Parameter(he((c, 2 * c, 3, 3), gen, device)))
                self.cells.append(torch.nn.Parameter(torch.zeros(c, device=device)))
        # readouts: 64 units from conv3, 128 from conv5 (flattened C*H*W)
        sides = []
        s = self.size
        for l in range(5):
            s = (s + 2 * (3 if l == 0 else 1) - (7 if l == 0 else 3)) // (2 if l == 0 else 1) + 1
            s = (s + 2 - 3) // 2 + 1
            sides.append(s)
        self.sides = sides
        self.v4 = torch.nn.Linear(self.ch[2] * sides[2] ** 2, 64).to(device)
        self.it = torch.nn.Linear(self.ch[4] * sides[4] ** 2, 128).to(device)

    def conv_xs(self, x, s, w, b, st, key, repeats):
        """conv over [x, s] (s None: a zero state); with --hoist W_x x + b is kept in st while x repeats."""
        if not self.hoist:
            return F.conv2d(torch.cat([x, s if s is not None else torch.zeros_like(x)], 1), w, b, padding=1)
        C = x.shape[1]
        if repeats:
            if key not in st:
                st[key] = F.conv2d(x, w[:, :C], b, padding=1)
            gx = st[key]
        else:
            gx = None if s is not None else F.conv2d(x, w[:, :C], b, padding=1)
        if s is None:
            return gx
        if gx is None:
            return F.conv2d(torch.cat([x, s], 1), w, b, padding=1)
        return gx + F.conv2d(s, w[:, C:], None, padding=1)

    def cell(self, l, x, st, repeats=False):
        C = x.shape[1]
        if self.motif == "lstm":
            w, b = self.cells[2 * l], self.cells[2 * l + 1]
            cp = st.get("c", torch.zeros_like(x))
            g = self.conv_xs(x, st.get("h"), w, b, st, "gx", repeats)
            i, j, f, o = torch.sigmoid(g[:, :C]), torch.tanh(g[:, C:2 * C]), torch.sigmoid(g[:, 2 * C:3 * C] + 1), \
                torch.sigmoid(g[:, 3 * C:])
            st["c"] = cp * f + i * j
            st["h"] = torch.tanh(st["c"]) * o
            return st["h"]
        if self.motif == "gru":
            wg, bg, wc, bc = self.cells[4 * l:4 * l + 4]
            hs = st.get("h")
            hp = hs if hs is not None else torch.zeros_like(x)
            g1 = self.conv_xs(x, hs, wg, bg, st, "gx", repeats)
            r, u = torch.sigmoid(g1[:, :C] + 1), torch.sigmoid(g1[:, C:] + 1)
            cand = torch.tanh(self.conv_xs(x, r * hs if hs is not None else None, wc, bc, st, "cx", repeats))
            st["h"] = u * hp + (1 - u) * cand
            return st["h"]
        return x

    def forward(self, image, T):
        L = len(self.ch)
        prev = [None] * L
        state = [dict() for _ in range(L)]
        loss = None
        for t in range(1, T):
            out = [None] * L
            for l in range(L):
                ff = image if l == 0 else prev[l - 1]
                if ff is None:
                    continue
                w, b, stride, pad = self.backbone[l]
                inputs, weights, small = [ff], [w], []
                for src, dst in self.feedback:
                    if dst == l and prev[src] is not None:
                        s = prev[src]
                        if self.hoist and s.shape[2] * s.shape[3] * 16 <= ff.shape[2] * ff.shape[3]:
                            small.append((s, self.fb["%d_%d" % (src, dst)]))
                            continue
                        if s.shape[2:] != ff.shape[2:]:
                            s = F.interpolate(s, size=tuple(ff.shape[2:]), mode="bilinear", align_corners=True)
                        inputs.append(s)
                        weights.append(self.fb["%d_%d" % (src, dst)])
                repeats = self.hoist and l == 0 and len(inputs) == 1 and not small  # the image alone, at every step
                if repeats and "x" in state[l]:
                    x = state[l]["x"]
                else:
                    x = F.conv2d(torch.cat(inputs, 1) if len(inputs) > 1 else ff,
                                 torch.cat(weights, 1) if len(weights) > 1 else w, b, stride=stride, padding=pad)
                    if repeats:
                        state[l]["x"] = x
                for s, wf in small:
                    key = (l, s.shape[2], s.shape[3])
                    if key not in self.phis:
                        self.phis[key] = upsample_taps(s.shape[2], s.shape[3], ff.shape[2], ff.shape[3], wf.shape[2],
                                                       stride, pad, ff.device)
                    x = x + conv_upsampled(s, wf, self.phis[key], x.shape[2], x.shape[3])
                h = F.max_pool2d(F.elu(self.cell(l, x, state[l], repeats)), 3, 2, 1)
                out[l] = h
            for l, head, target in ((2, self.v4, 0.1), (4, self.it, 0.2)):
                if out[l] is not None:
                    term = F.mse_loss(head(out[l].flatten(1)), torch.full((image.shape[0], head.out_features), target,
                                                                          device=image.device))
                    loss = term if loss is None else loss + term
            prev = out
        return loss


def set_precision(p, device):
    if p == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif p in ("tf32", "bf16"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # "default": leave PyTorch's own policy


def run(name, args):
    arch, motif, feedback, batch, steps, train = WORKLOADS[name]
    batch = args.batch or batch
    steps = args.steps or steps
    device = torch.device(args.device)
    model = Workload(arch, motif, feedback, device, args.hoist)
    size = model.size
    image = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(3)).to(device)
    opt = torch.optim.Adam([p for p in model.parameters()], lr=1e-4) if train else None
    autocast = args.precision == "bf16"

    def iteration():
        if train:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = model(image, steps)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                model(image, steps)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        iteration()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        iteration()
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"workload": name, "impl": "pytorch", "torch": torch.__version__, "device": args.device,
                      "threads": torch.get_num_threads(), "precision": args.precision, "arch": arch, "motif": motif,
                      "batch": batch, "steps": steps, "mode": "train" if train else "inference", "hoist": args.hoist,
                      "ms_per_iter": round(statistics.median(times), 3), "ms_best": round(min(times), 3)}), flush=True)


def check(name, args):
    """--check: the workload's loss and gradients with and without --hoist (the same function)."""
    arch, motif, feedback, _, _, train = WORKLOADS[name]
    device = torch.device(args.device)
    out = []
    for hoist in (False, True):
        torch.manual_seed(0)  # the same readouts (torch.nn.Linear draws from the global generator)
        model = Workload(arch, motif, feedback, device, hoist)
        image = torch.randn(2, 3, model.size, model.size, generator=torch.Generator().manual_seed(3)).to(device)
        loss = model(image, 8)
        loss.backward()
        out.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    (l0, g0), (l1, g1) = out
    err = (g0 - g1).abs().max().item() / max(1.0, g0.abs().max().item())
    ok = abs(l0 - l1) <= 1e-5 * max(1.0, abs(l0)) and err <= 1e-5 and g0.abs().max().item() > 0
    print(json.dumps({"workload": name, "check": "ok" if ok else "FAILED", "loss": l0, "loss_hoist": l1,
                      "max_grad_rel_diff": err}), flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="W1,W2,W3,W4,W5", help="comma-separated, of W1-W5 (default: all)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default, all cores)")
    ap.add_argument("--batch", type=int, default=0, help="override the workload's batch")
    ap.add_argument("--steps", type=int, default=0, help="override the workload's steps T")
    ap.add_argument("--precision", default="default", choices=["default", "fp32", "tf32", "bf16"])
    ap.add_argument("--reps", type=int, default=5, help="timed iterations (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    ap.add_argument("--hoist", action="store_true",
                    help="the shortcuts of ventral's unroll: conv1 and its cells' input half once per image, zero "
                         "states skipped, a small feedback source through its resize taps")
    ap.add_argument("--check", action="store_true",
                    help="instead of timing: each workload at batch 2, T = 8, with and without --hoist; the loss and "
                         "every gradient must agree (exit 1 if not)")
    args = ap.parse_args()
    names = [w for w in args.workload.split(",") if w]
    for n in names:
        if n not in WORKLOADS:
            ap.error("--workload: unknown workload %r (known: %s)" % (n, ", ".join(WORKLOADS)))
    for flag in ("batch", "steps", "threads"):
        if getattr(args, flag) < 0:
            ap.error("--%s: expected >= 0, got %d" % (flag, getattr(args, flag)))
    if args.reps < 1:
        ap.error("--reps: expected >= 1, got %d" % args.reps)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: PyTorch sees no CUDA device")
    if args.device == "cpu" and args.precision in ("tf32",):
        ap.error("--precision tf32: a GPU policy (use fp32, bf16 or default on the CPU)")
    if args.threads:
        torch.set_num_threads(args.threads)
    set_precision(args.precision, args.device)
    if args.check:
        sys.exit(0 if all(check(n, args) for n in names) else 1)
    for n in names:
        run(n, args)


if __name__ == "__main__":
    main()
