"""Prints ventral/arch.py's table, one layer per line, for tests/test_python.cpp to compare with
the C++ table (models/backbone.cpp)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ventral.arch import ARCHS, arch_spec  # noqa: E402

for arch in ARCHS:
    size, layers = arch_spec(arch)
    for l in layers:
        print(arch, size, l.name, l.in_ch, l.out_ch, l.kernel, l.stride, l.pad, l.act, l.pool_k, l.pool_s, l.pool_p,
              l.in_size, l.conv_size, l.out_size)
