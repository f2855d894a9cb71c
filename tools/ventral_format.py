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
with a clear message instead of producing a file ./bin/score refuses later. The readers below
turn a bad input file into one "error: FILE: expected ..., found ..." line (no traceback).
"""
import contextlib
import os
import tokenize
import zipfile
import zlib

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
        raise FormatError("responses contain infinities or values beyond float32 (only finite values or NaN "
                          "for missing trials)")
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
    check_output(path)
    tmp = path + ".tmp.npz"
    try:  # written under a temporary name and renamed: a failed write leaves no output
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.savez(tmp, **out)  # stored (uncompressed): ventral streams large members straight from the file
        os.replace(tmp, path)
    except OSError as e:
        raise FormatError(f"cannot write {path}: {e.strerror or e}")
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
    return out


def check_output(path):
    """Fails, naming it, when the output file PATH cannot be made: a folder there, or a file above it."""
    if os.path.isdir(path):
        raise FormatError(f"output {path} is a folder, expected a file name")
    up = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(up):
        up = os.path.dirname(up)
    if not os.path.isdir(up):
        raise FormatError(f"cannot write {path}: {up} is a file, expected a folder")


def numeric(x, what):
    """x as a numpy array of numbers; a FormatError naming WHAT when it holds anything else (strings, objects)."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise FormatError(f"{what} holds {x.dtype}, expected numbers")
    return x


def level_of(v, what):
    """A variation level, 3 or 'V3' (a whole number), -> int; WHAT names the value in the error."""
    s = str(v).strip()
    s = s[1:] if s[:1] in "Vv" else s
    try:
        x = float(s)
        if x == int(x):
            return int(x)
    except (ValueError, OverflowError):  # not a number; inf
        pass
    raise FormatError(f"{what} '{v}' is not a level like 'V3' or 3")


def window_ms(flag, text):
    """'START,END' (ms) -> bin_start_ms, bin_end_ms of one bin."""
    try:
        start, end = (float(x) for x in text.split(","))
    except ValueError:
        raise FormatError(f"{flag}: expected START,END in ms, got '{text}'")
    return np.array([start], np.float32), np.array([end], np.float32)


def need_file(path, flag):
    if not os.path.isfile(path):
        found = "is a folder, expected a file" if os.path.isdir(path) else "does not exist"
        raise FormatError(f"{flag} {path} {found}")


def not_a(path, expected, e=None):
    """The FormatError for a file PATH that is not EXPECTED (e: the reader's exception); names the usual
    causes, a Git LFS pointer (a clone without git lfs pull) or an empty file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as oe:
        return FormatError(f"{path}: cannot read it ({oe.strerror})")
    if head.startswith(b"version https://git-lfs"):
        found = "a Git LFS pointer (a small text file standing for it; fetch the real one with git lfs pull)"
    elif not head:
        found = "an empty file"
    elif e is not None:
        found = f"something else ({e})"
    else:
        found = f"a file starting {head[:12]!r}"
    return FormatError(f"{path}: expected {expected}, found {found}")


@contextlib.contextmanager
def reading(path, expected, *errors):
    """`with reading(path, "an HDF5 file", OSError, ...):` turns the reader's errors in the block into a
    FormatError naming PATH (h5py and netCDF4 report a damaged file late, as they read it)."""
    try:
        yield
    except errors as e:
        raise FormatError(f"{path}: expected {expected}, found a damaged file ({e})")


def load_npy(path):
    """A .npy file of numbers -> array. Memory-mapped, so a header claiming more data than the file holds
    fails instead of allocating it."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise FormatError(f"{path}: cannot read it ({e.strerror})")
    if magic != b"\x93NUMPY":
        raise not_a(path, "a .npy array")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError) as e:  # damaged, or objects (a pickle)
        raise FormatError(f"{path}: expected a .npy array of numbers, found a damaged or object array ({e})")


def open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, NotImplementedError) as e:  # NotImplementedError: a newer zip version
        raise not_a(path, "a zip archive", e)


def zip_image(z, zpath, name):
    """Member NAME of the open zip archive Z (read from ZPATH) -> uint8 (H, W, 3) RGB."""
    try:
        data = z.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        raise FormatError(f"{zpath}: member {name} is damaged or unreadable ({e})")  # bad CRC, truncated, encrypted
    return decode_image(data, f"{zpath}:{name}")


def decode_image(data, what):
    """Encoded PNG/JPEG bytes -> uint8 (H, W, 3) RGB (Pillow)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise FormatError("decoding stimulus images needs Pillow: python3 -m pip install Pillow")
    import io
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise FormatError(f"{what}: expected an image (PNG/JPEG), found {len(data)} bytes starting {data[:12]!r}")
    except Exception as e:  # Pillow raises many types for a damaged image (OSError, SyntaxError, ValueError, ...)
        raise FormatError(f"cannot decode image {what}: {e}")
