"""ventral from Python: load what the C++ tools write, and rebuild their models in PyTorch.

    import ventral
    res = ventral.load_results("runs/fit_dynamics/lstm_conv5-conv2/results.json")
    pred = ventral.load_predictions("runs/fit_dynamics/lstm_conv5-conv2/predictions.npz")
    units = ventral.units_table(pred)            # pandas: one row per (split, unit, bin)
    ck = ventral.load_checkpoint("runs/fit_dynamics/lstm_conv5-conv2/checkpoints/split0.npz")

    from ventral.torch_model import ConvRNN      # needs PyTorch
    model = ConvRNN.from_checkpoint("runs/fit_dynamics/lstm_conv5-conv2/checkpoints/split0.npz")
    out = model.predict(images_uint8)            # {"V4": (N, U, B) sp/s, "IT": ...}

Only numpy is required; pandas and torch are imported where they are used. The file formats
are in the repository's docs/results.md.
"""
from .io import (load_checkpoint, load_features, load_npz, load_predictions, load_results, units_table,
                 FIT_RESULTS_FORMAT)
from .arch import ARCHS, LayerSpec, arch_spec

__all__ = ["load_checkpoint", "load_features", "load_npz", "load_predictions", "load_results", "units_table",
           "FIT_RESULTS_FORMAT", "ARCHS", "LayerSpec", "arch_spec"]
