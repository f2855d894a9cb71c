"""The backbone architectures (models/backbone.cpp's table, the same numbers; tests/test_python.cpp
checks this table against the C++ one for every architecture)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerSpec:
    name: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    pad: int
    act: str          # "elu" or "relu"
    pool_k: int       # 0: no pool
    pool_s: int
    pool_p: int
    in_size: int
    conv_size: int
    out_size: int


def _layer(name, in_ch, out_ch, k, s, act, pool_k, pool_s, pool_p, in_size, pad=None):
    pad = k // 2 if pad is None else pad
    conv = (in_size + 2 * pad - k) // s + 1
    out = (conv + 2 * pool_p - pool_k) // pool_s + 1 if pool_k else conv
    return LayerSpec(name, in_ch, out_ch, k, s, pad, act, pool_k, pool_s, pool_p, in_size, conv, out)


def _hcnn5(size, ch):
    layers, in_ch, s = [], 3, size
    for i in range(5):
        layers.append(_layer("conv%d" % (i + 1), in_ch, ch[i], 7 if i == 0 else 3, 2 if i == 0 else 1, "elu", 3, 2, 1, s))
        in_ch, s = ch[i], layers[-1].out_size
    return size, layers


def _tiny3():
    return 8, [_layer("conv1", 3, 3, 3, 1, "elu", 3, 2, 1, 8), _layer("conv2", 3, 4, 3, 1, "elu", 3, 2, 1, 4),
               _layer("conv3", 4, 5, 3, 1, "elu", 3, 2, 1, 2)]


def _alexnet():
    l1 = _layer("conv1", 3, 64, 11, 4, "relu", 3, 2, 0, 224, pad=2)
    l2 = _layer("conv2", 64, 192, 5, 1, "relu", 3, 2, 0, l1.out_size)
    l3 = _layer("conv3", 192, 384, 3, 1, "relu", 0, 0, 0, l2.out_size)
    l4 = _layer("conv4", 384, 256, 3, 1, "relu", 0, 0, 0, l3.out_size)
    l5 = _layer("conv5", 256, 256, 3, 1, "relu", 3, 2, 0, l4.out_size)
    return 224, [l1, l2, l3, l4, l5]


ARCHS = {
    "hcnn5": lambda: _hcnn5(128, [64, 128, 256, 256, 512]),
    "hcnn5-s": lambda: _hcnn5(64, [32, 64, 128, 128, 256]),
    "alexnet": _alexnet,
    "tiny3": _tiny3,
    "tiny5": lambda: _hcnn5(32, [4, 6, 8, 8, 8]),
}


def arch_spec(arch):
    """(input side, [LayerSpec]) of an architecture name (a checkpoint's meta.arch)."""
    if arch not in ARCHS:
        raise ValueError("unknown architecture %r (known: %s)" % (arch, ", ".join(ARCHS)))
    return ARCHS[arch]()
