// ops.h: the differentiable ops. Each op checks its shapes, allocates its output, runs the
// device's kernel and (under a Tape) records its forward/backward pair; ops.cpp keeps each
// pair together. Shapes: x (N, C, H, W) for images, (N, D) for vectors.
#pragma once
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace vt {

// ---- convolution and pooling --------------------------------------------------------------
// x (N, C, H, W), w (OC, C, KH, KW), b (OC) or undefined -> (N, OC, OH, OW)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride = 1, int pad = 0);
// square window k, stride s, zero padding p (padded cells never win) -> (N, C, OH, OW)
Tensor maxpool2d(const Tensor& x, int k, int s, int p = 0);
// bilinear, align_corners = true -> (N, C, OH, OW)
Tensor resize_bilinear(const Tensor& x, int OH, int OW);
// conv2d(resize_bilinear(s, H, W), w, no bias, stride, pad): on the CPU without building the
// resized map (kernels.h, ConvUpDims), cheaper the smaller s is (a feedback source); elsewhere
// that composition. The same function up to float rounding.
Tensor conv2d_upsampled(const Tensor& s, const Tensor& w, int H, int W, int stride = 1, int pad = 0);

// ---- activations ---------------------------------------------------------------------------
Tensor elu(const Tensor& x);  // alpha = 1
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);

// ---- elementwise (same shapes) -----------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, float s);
Tensor mul_scalar(const Tensor& a, float s);

// ---- channels ----------------------------------------------------------------------------------
Tensor scale_channels(const Tensor& x, const Tensor& a);           // x (N, C, ...) * a (C)
Tensor concat_channels(const std::vector<Tensor>& xs);             // along dim 1
Tensor slice_channels(const Tensor& x, int c0, int C);             // x[:, c0:c0+C]
std::vector<Tensor> split_channels(const Tensor& x, const std::vector<int>& sizes);

// ---- dense -------------------------------------------------------------------------------------
// x (N, Din), w (Dout, Din), b (Dout) or undefined -> (N, Dout)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);

// x (N, D) -> x minus its mean over the N rows (per column); self-adjoint, so the backward
// centres the gradient the same way
Tensor center_rows(const Tensor& x);

// ---- reductions and losses (scalars have shape (1,)) ------------------------------------------
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);
Tensor mse_loss(const Tensor& pred, const Tensor& target);        // mean over elements
// logits (N, K); labels (N,) class indices stored as floats -> mean cross-entropy
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);

// ---- regularisation ----------------------------------------------------------------------------
// Inverted dropout: zero with probability p, scale the rest by 1/(1-p). A new mask is drawn
// from `seed`'s stream at every forward (replays included). Identity when !training or p = 0.
Tensor dropout(const Tensor& x, float p, uint64_t seed, bool training = true);

// ---- gradient flow -----------------------------------------------------------------------------
// The identity, whose backward passes the gradient on unless *cut (read at every backward, so
// one recorded graph can switch between cut and not): truncated BPTT's cut through a
// recurrent state. On a captured CUDA graph the value is baked in at capture: invalidate the
// TapeGraph after changing it (autograd.h).
Tensor grad_gate(const Tensor& x, std::shared_ptr<const bool> cut);

// ---- helpers -----------------------------------------------------------------------------------
// Grow-only per-device scratch memory for kernels' temporaries (never kept across ops).
float* workspace(Device dev, int64_t n);

}  // namespace vt
