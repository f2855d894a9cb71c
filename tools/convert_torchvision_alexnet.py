#!/usr/bin/env python3
"""convert_torchvision_alexnet.py: a torchvision AlexNet state dict -> a ventral checkpoint.

Turns ImageNet weights people already have (torchvision's `alexnet-owt-7be5be79.pth`, or
any AlexNet trained with torchvision's model definition) into the .npz checkpoint that
ventral's `alexnet` backbone loads (engine/checkpoint.h): one float32 array per parameter,
named as ventral names it, plus the metadata ventral's tools read:

    features.0   -> conv1   (64, 3, 11, 11)      classifier.1 -> fc1  (4096, 9216)
    features.3   -> conv2   (192, 64, 5, 5)      classifier.4 -> fc2  (4096, 4096)
    features.6   -> conv3   (384, 192, 3, 3)     classifier.6 -> fc3  (K, 4096), K classes
    features.8   -> conv4   (256, 384, 3, 3)
    features.10  -> conv5   (256, 256, 3, 3)
    meta.arch = "alexnet", meta.mean / meta.std = torchvision's ImageNet normalisation,
    meta.classes = the class names, if --classes is given.

The layouts already agree (conv weights (OC, C, K, K), linear weights (out, in), the
flattened conv5 output in (C, H, W) order), so the arrays are copied, never transposed.
torch is needed by this script only, never by the engine.
"""
import argparse
import os
import sys

import numpy as np

# torchvision name -> (ventral name, expected shape; None: the class count, read from the file)
LAYERS = [
    ("features.0", "conv1", (64, 3, 11, 11)),
    ("features.3", "conv2", (192, 64, 5, 5)),
    ("features.6", "conv3", (384, 192, 3, 3)),
    ("features.8", "conv4", (256, 384, 3, 3)),
    ("features.10", "conv5", (256, 256, 3, 3)),
    ("classifier.1", "fc1", (4096, 256 * 6 * 6)),
    ("classifier.4", "fc2", (4096, 4096)),
    ("classifier.6", "fc3", (None, 4096)),
]
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # torchvision's normalisation, on the 0..1 scale
IMAGENET_STD = [0.229, 0.224, 0.225]


class ConvertError(Exception):
    """A bad input file: the message says which file, what was expected and what was found."""


def load_state_dict(path, trust_pickle=False):
    """Reads `path` with torch.load and returns a {name: tensor} dict.

    Accepts a bare state dict, a {"state_dict": ...} or {"model": ...} wrapper (training
    checkpoints), or (with trust_pickle) a whole pickled nn.Module. Prefixes added by
    DataParallel ("module.", and "features.module." from torchvision's reference training
    script) are removed."""
    try:
        import torch
    except ImportError:
        raise ConvertError("this converter needs PyTorch: pip install torch (or apt-get install python3-torch)")
    if not os.path.isfile(path):
        raise ConvertError(f"cannot open '{path}': no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except TypeError:  # a torch older than 1.13 has no weights_only
        obj = torch.load(path, map_location="cpu")
    except Exception as e:
        if not trust_pickle and ("Weights only load failed" in str(e) or "weights_only" in str(e)):
            raise ConvertError(f"'{path}' holds pickled Python objects (a whole model?), not only tensors; "
                               f"loading it runs code from the file: pass --trust-pickle if you trust its source "
                               f"({type(e).__name__}: {str(e).splitlines()[0]})")
        raise ConvertError(f"cannot read '{path}' with torch.load: {type(e).__name__}: {e}")
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise ConvertError(f"'{path}' holds a {type(obj).__name__}, expected a state dict (a dict of tensors)")
    sd = {}
    for k, v in obj.items():
        name = k[len("module."):] if k.startswith("module.") else k
        name = name.replace("features.module.", "features.", 1)
        if not hasattr(v, "detach"):
            raise ConvertError(f"'{path}': entry '{k}' is a {type(v).__name__}, expected a tensor")
        sd[name] = v
    return sd


def convert(sd, path="<state dict>"):
    """{torchvision name: tensor} -> {ventral name: float32 array}; fails on any mismatch."""
    expected = {f"{tv}.{p}" for tv, _, _ in LAYERS for p in ("weight", "bias")}
    unknown = sorted(set(sd) - expected)
    missing = sorted(expected - set(sd))
    if unknown or missing:
        msg = f"'{path}' is not a torchvision AlexNet state dict:"
        if missing:
            msg += f" missing {', '.join(missing)};"
        if unknown:
            msg += f" unexpected {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''};"
        raise ConvertError(msg + " expected features.{0,3,6,8,10} and classifier.{1,4,6} weights and biases")
    fc3 = tuple(sd["classifier.6.weight"].shape)
    num_classes = fc3[0] if len(fc3) == 2 and fc3[0] > 0 else None  # None: reported as K below
    out = {}
    for tv, ours, shape in LAYERS:
        wshape = tuple(num_classes if s is None else s for s in shape)
        for p, want in (("weight", wshape), ("bias", wshape[:1])):
            t = sd[f"{tv}.{p}"]
            got = tuple(t.shape)
            if got != want:
                shown = "(" + ", ".join("K" if s is None else str(s) for s in want) + (",)" if len(want) == 1 else ")")
                raise ConvertError(f"'{path}': {tv}.{p} (ventral {ours}.{p}) has shape {got}, expected {shown}")
            if not t.is_floating_point():
                raise ConvertError(f"'{path}': {tv}.{p} has dtype {t.dtype}, expected a floating-point tensor")
            a = np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype=np.float32)
            if not np.all(np.isfinite(a)):
                raise ConvertError(f"'{path}': {tv}.{p} holds NaN or infinite values")
            out[f"{ours}.{p}"] = a
    return out


def read_classes(path, num_classes):
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != num_classes:
        raise ConvertError(f"--classes '{path}' has {len(names)} names, the classifier has {num_classes} outputs")
    return names


def write_checkpoint(out_path, params, classes=None, compress=False):
    """Writes params + metadata to out_path through a temporary file and a rename."""
    arrays = dict(params)
    arrays["meta.arch"] = np.array(["alexnet"])
    arrays["meta.mean"] = np.array(IMAGENET_MEAN, dtype=np.float32)
    arrays["meta.std"] = np.array(IMAGENET_STD, dtype=np.float32)
    if classes is not None:
        arrays["meta.classes"] = np.array(classes)
    tmp = f"{out_path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:  # a file object: numpy does not append ".npz" to the name
            (np.savez_compressed if compress else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert a torchvision AlexNet state dict (.pth/.pt) into a ventral checkpoint (.npz) "
                    "of the 'alexnet' backbone and its classifier.",
        epilog="example (torchvision's ImageNet weights, as downloaded by torchvision into ~/.cache/torch/hub/checkpoints/):\n"
               "  python3 tools/convert_torchvision_alexnet.py alexnet-owt-7be5be79.pth alexnet_imagenet.npz\n"
               "The .pth may be a bare state dict, a {'state_dict': ...} training checkpoint, or (with\n"
               "--trust-pickle) a whole pickled model. The output loads with checkpoint_load into\n"
               "Model(ModelConfig{arch = \"alexnet\", num_classes = K}), K = rows of classifier.6.weight;\n"
               "inputs are 3x224x224 RGB normalised with the stored meta.mean / meta.std.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("state_dict", help="torchvision AlexNet weights (.pth or .pt)")
    ap.add_argument("out", help="ventral checkpoint to write (.npz; written atomically)")
    ap.add_argument("--classes", metavar="FILE", help="class names, one per line, stored as meta.classes")
    ap.add_argument("--compress", action="store_true", help="deflate the arrays (smaller, slower to load)")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="allow a file holding a whole pickled model (runs code from the file: trusted sources only)")
    args = ap.parse_args(argv)
    try:
        params = convert(load_state_dict(args.state_dict, args.trust_pickle), args.state_dict)
        classes = read_classes(args.classes, params["fc3.weight"].shape[0]) if args.classes else None
        write_checkpoint(args.out, params, classes, args.compress)
    except (ConvertError, OSError) as e:
        print(f"convert_torchvision_alexnet: error: {e}", file=sys.stderr)
        return 1
    n = sum(a.size for a in params.values())
    print(f"wrote {args.out}: alexnet, {params['fc3.weight'].shape[0]} classes, {n} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
