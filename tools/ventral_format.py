"""ventral_format.py: writes the ventral neural dataset (.npz) for the converters in tools/.

The format (read by models/datasets/neural_data.h, which documents it):
  images          uint8 (N, H, W, 3)      RGB stimuli                         required
  responses       float32 (R, N, U, B)    NaN for missing repetitions         required
  unit_area       str (U,)                e.g. "V4", "IT"                     required
  bin_start_ms    float32 (B,)            relative to image onset             required
  bin_end_ms      float32 (B,)                                                required
  unit_id (U,), image_id (N,), image_object (N,), image_category (N,) str; image_variation
  int32 (N,); presentation_ms float32 scalar                                  optional

write_dataset checks the same things the C++ loader checks, so a converter fails at once
with a clear message instead of producing a file ./bin/score refuses later.
"""
import os

import numpy as np


class FormatError(SystemExit):
    """A converter's input or output violates the expected layout (exits non-zero)."""

    def __init__(self, msg):
        super().__init__("error: " + msg)


def _strings(name, v, n):
    a = np.asarray(v)
    if a.dtype.kind in "SO":
        a = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel()]).reshape(a.shape)
    a = a.astype(str)
    if a.shape != (n,):
        raise FormatError(f"{name} must have shape ({n},), found {a.shape}")
    return a


def write_dataset(path, images, responses, unit_area, bin_start_ms, bin_end_ms, unit_id=None, image_id=None,
                  image_object=None, image_category=None, image_variation=None, presentation_ms=None):
    images = np.asarray(images)
    responses = np.asarray(responses, dtype=np.float32)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise FormatError(f"images must be uint8 (N, H, W, 3), found {images.dtype} {images.shape}")
    if responses.ndim != 4 or min(responses.shape) < 1:
        raise FormatError(f"responses must be (R, N, U, B) with every size >= 1, found {responses.shape}")
    R, N, U, B = responses.shape
    if images.shape[0] != N:
        raise FormatError(f"{images.shape[0]} images but responses have N = {N}")
    if np.isinf(responses).any():
        raise FormatError("responses contain infinities (only finite values or NaN for missing trials)")
    empty = np.isnan(responses).all(axis=(0, 2, 3))
    if empty.any():
        raise FormatError(f"image {int(np.argmax(empty))} has no response at all (all NaN)")
    out = {"images": images, "responses": responses, "unit_area": _strings("unit_area", unit_area, U)}
    if any(len(a) == 0 for a in out["unit_area"]):
        raise FormatError("unit_area has an empty name")
    bs = np.asarray(bin_start_ms, dtype=np.float32).reshape(-1)
    be = np.asarray(bin_end_ms, dtype=np.float32).reshape(-1)
    if bs.shape != (B,) or be.shape != (B,):
        raise FormatError(f"bin_start_ms / bin_end_ms must have shape ({B},), found {bs.shape} / {be.shape}")
    if not (np.isfinite(bs).all() and np.isfinite(be).all() and (bs < be).all()):
        raise FormatError("every time bin needs finite edges with bin_start_ms < bin_end_ms")
    out["bin_start_ms"], out["bin_end_ms"] = bs, be
    for name, v, n in (("unit_id", unit_id, U), ("image_id", image_id, N), ("image_object", image_object, N),
                       ("image_category", image_category, N)):
        if v is not None:
            out[name] = _strings(name, v, n)
    if image_variation is not None:
        v = np.asarray(image_variation)
        if v.shape != (N,) or v.dtype.kind not in "iu":
            raise FormatError(f"image_variation must be integers of shape ({N},), found {v.dtype} {v.shape}")
        out["image_variation"] = v.astype(np.int32)
    if presentation_ms is not None:
        out["presentation_ms"] = np.float32(presentation_ms)
    out = {k: np.ascontiguousarray(v) if np.ndim(v) else v for k, v in out.items()}  # C order: ventral streams members
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **out)  # stored (uncompressed): ventral streams large members straight from the file
    os.replace(tmp, path)
    return out


def decode_image(data, what):
    """Encoded PNG/JPEG bytes -> uint8 (H, W, 3) RGB (Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise FormatError("decoding stimulus images needs Pillow: python3 -m pip install Pillow")
    import io
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # Pillow raises many types for a bad file
        raise FormatError(f"cannot decode image {what}: {e}")
