#!/usr/bin/env python3
"""check_layering.py: nothing includes upward. Run by `make check`; exit 1 names each upward include.

    python3 tools/check_layering.py [ROOT]     (ROOT: the source tree, default this checkout)

The folders are the layers, lowest first (README, ## Layout). A C++/CUDA file may include
(`#include "..."`) files of its own layer or of a lower one, never of a higher one:

    kernels/          raw-pointer kernels and vt::Error/CHECK (kernels/error.h)
    engine/common.*   checked sizes, the memory limit, run_main
    engine/io/        files on disk: npy/npz, JSON, images, plots, run folders (no Tensor)
    engine/           tensors, autodiff, ops, parameters, backends, linear algebra
    models/           networks: backbones, cells, the unrolled ConvRNN
    models/datasets/  neural data, stimuli, image folders, the virtual primate
    models/fit/       scoring, features, fitting dynamics, pretraining, sweeps
    tools/            one main per binary
    tests/ fuzz/      may use everything

A file belongs to the layer of the longest prefix above that its path starts with. Quoted
includes that resolve to no file of the tree (a system header written with quotes) are
not ours and are skipped.
"""
import os
import re
import sys

# (layer name, path prefixes), lowest first; a file may include its own layer and those below.
LAYERS = [
    ("kernels", ["kernels/"]),
    ("engine/common", ["engine/common."]),
    ("engine/io", ["engine/io/"]),
    ("engine", ["engine/"]),
    ("models (networks)", ["models/"]),
    ("models/datasets", ["models/datasets/"]),
    ("models/fit", ["models/fit/"]),
    ("tools", ["tools/"]),
    ("tests and fuzz", ["tests/", "fuzz/"]),
]
SOURCE_EXTS = (".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def layer_of(path):
    """The index into LAYERS of a root-relative path ('/'-separated), or None."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if path.startswith(p) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def resolve(root, includer, name):
    """The root-relative path an include names: beside the includer first, then from the root (-I.)."""
    for base in (os.path.dirname(includer), ""):
        rel = os.path.normpath(os.path.join(base, name)).replace(os.sep, "/")
        if not rel.startswith("../") and os.path.isfile(os.path.join(root, rel)):
            return rel
    return None


def source_files(root):
    tops = sorted({p.split("/")[0] for _, prefixes in LAYERS for p in prefixes})
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith(SOURCE_EXTS):
                    yield os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    if len(argv) > 2 or not os.path.isdir(os.path.join(root, "kernels")):
        sys.stderr.write("usage: check_layering.py [ROOT]  (ROOT: a ventral source tree, with kernels/ in it)\n")
        return 2
    order = " <- ".join(name for name, _ in LAYERS)
    broken, files = 0, 0
    for path in source_files(root):
        files += 1
        own = layer_of(path)
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = resolve(root, path, m.group(1))
                if target is None:
                    continue
                theirs = layer_of(target)
                if theirs is None or theirs <= own:
                    continue
                broken += 1
                print(f'{path}:{lineno}: includes "{m.group(1)}": {LAYERS[own][0]} may not include '
                      f'{LAYERS[theirs][0]}, a higher layer (nothing includes upward: {order})')
    if broken:
        print(f"check_layering: {broken} upward include(s) in {files} files")
        return 1
    print(f"check_layering: {files} files, no upward include")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
