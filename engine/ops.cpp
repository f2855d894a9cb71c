// ops.cpp: forward/backward pairs of the differentiable ops (see ops.h).
//
// Pattern of every op: check shapes; out = op_output(...); a forward closure that calls the
// device kernel; a backward closure that accumulates into each input's gradient if that
// input requires one; op_record(...) runs forward once and records both under a Tape.
// Closures capture Tensors by value, which keeps every buffer the backward needs alive
// (what forward keeps for backward is named: cols, argmax, probs, mask).
#include "engine/ops.h"

#include <cmath>
#include <memory>

#include "engine/backend.h"

namespace vt {


float* workspace(Device dev, int64_t n) {
    struct Ws {
        Tensor t;
    };
    static thread_local Ws ws[2];
    Ws& w = ws[dev == Device::CPU ? 0 : 1];
    if (!w.t.defined() || w.t.numel() < n) w.t = tensor_empty({n}, dev);
    return w.t.data();
}

// ---- conv2d ------------------------------------------------------------------------------------

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad) {
    check_ndim(x, 4, "conv2d input");
    check_ndim(w, 4, "conv2d weight");
    if (x.dim(1) != w.dim(1))
        fail("conv2d: input %s has %lld channels but weight %s expects %lld", x.desc().c_str(),
             (long long)x.dim(1), w.desc().c_str(), (long long)w.dim(1));
    if (b.defined()) check_shape(b, {w.dim(0)}, "conv2d bias");
    ConvDims d = conv_dims((int)x.dim(0), (int)x.dim(1), (int)x.dim(2), (int)x.dim(3), (int)w.dim(0), (int)w.dim(2),
                           (int)w.dim(3), stride, stride, pad, pad);
    Tensor out = op_output({d.N, d.OC, d.OH, d.OW}, {&x, &w, &b});
    const KernelTable& K = kernels_for(x.device());
    auto fwd = [=, &K] {
        K.conv2d_forward(out.data(), x.data(), w.data(), b.defined() ? b.data() : nullptr,
                         workspace(x.device(), d.scratch_size()), d);
    };
    auto bwd = [=, &K] {  // recomputes the im2col of x (kernels.h): only x is kept
        K.conv2d_backward(grad_or_null(x), grad_or_null(w), grad_or_null(b), out.grad(), x.data(), w.data(),
                          workspace(x.device(), d.scratch_size()), d);
    };
    return op_record("conv2d", out, fwd, bwd);
}

// ---- maxpool2d ---------------------------------------------------------------------------------

Tensor maxpool2d(const Tensor& x, int k, int s, int p) {
    check_ndim(x, 4, "maxpool2d input");
    PoolDims d = pool_dims((int)x.dim(0), (int)x.dim(1), (int)x.dim(2), (int)x.dim(3), k, s, p);
    Tensor out = op_output({d.N, d.C, d.OH, d.OW}, {&x});
    Tensor argmax = tensor_empty({out.numel()}, x.device());  // int32 indices in float-sized slots
    static_assert(sizeof(int32_t) == sizeof(float), "argmax shares float storage");
    const KernelTable& K = kernels_for(x.device());
    auto fwd = [=, &K] {
        if (choices_frozen()) K.maxpool_gather(out.data(), (const int32_t*)argmax.data(), x.data(), d);
        else K.maxpool_forward(out.data(), (int32_t*)argmax.data(), x.data(), d);
    };
    auto bwd = [=, &K] {
        if (x.requires_grad()) K.maxpool_backward(x.grad(), out.grad(), (const int32_t*)argmax.data(), d);
    };
    return op_record("maxpool2d", out, fwd, bwd);
}

// ---- resize ------------------------------------------------------------------------------------

Tensor resize_bilinear(const Tensor& x, int OH, int OW) {
    check_ndim(x, 4, "resize_bilinear input");
    CHECK(OH > 0 && OW > 0, "resize_bilinear to %dx%d", OH, OW);
    int NC = (int)(x.dim(0) * x.dim(1)), H = (int)x.dim(2), W = (int)x.dim(3);
    Tensor out = op_output({x.dim(0), x.dim(1), OH, OW}, {&x});
    const KernelTable& K = kernels_for(x.device());
    auto fwd = [=, &K] { K.resize_forward(out.data(), x.data(), NC, H, W, OH, OW); };
    auto bwd = [=, &K] {
        if (x.requires_grad()) K.resize_backward(x.grad(), out.grad(), NC, H, W, OH, OW);
    };
    return op_record("resize_bilinear", out, fwd, bwd);
}

Tensor conv2d_upsampled(const Tensor& s, const Tensor& w, int H, int W, int stride, int pad) {
    check_ndim(s, 4, "conv2d_upsampled input");
    check_ndim(w, 4, "conv2d_upsampled weight");
    if (s.dim(1) != w.dim(1))
        fail("conv2d_upsampled: input %s has %lld channels but weight %s expects %lld", s.desc().c_str(),
             (long long)s.dim(1), w.desc().c_str(), (long long)w.dim(1));
    if (s.device() != Device::CPU) return conv2d(resize_bilinear(s, H, W), w, Tensor(), stride, pad);
    ConvUpDims d = conv_up_dims((int)s.dim(0), (int)s.dim(1), (int)s.dim(2), (int)s.dim(3), H, W, (int)w.dim(0),
                                (int)w.dim(2), (int)w.dim(3), stride, pad);
    Tensor out = op_output({d.N, d.OC, d.OH, d.OW}, {&s, &w});
    auto fwd = [=] { cpu::conv_up_forward(out.data(), s.data(), w.data(), d); };
    auto bwd = [=] { cpu::conv_up_backward(grad_or_null(s), grad_or_null(w), out.grad(), s.data(), w.data(), d); };
    return op_record("conv2d_upsampled", out, fwd, bwd);
}

// ---- activations -------------------------------------------------------------------------------

// ELU and ReLU have two branches; under RecordChoices the branch of each element is noted
// (x > 0) and frozen replays keep it: y = x on the positive branch, exp(x) - 1 (ELU) or 0
// (ReLU) on the other, whatever the sign of x now (autograd.h; CPU only, as recording is).
static void act_forward_on_branch(Act act, float* out, const float* inp, const uint8_t* pos, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = pos[i] ? inp[i] : act == Act::ELU ? std::expm1(inp[i]) : 0.f;
}

static Tensor activation(const char* name, Act act, const Tensor& x) {
    Tensor out = op_output(x.shape, {&x});
    const KernelTable& K = kernels_for(x.device());
    int64_t n = x.numel();
    bool branches = act == Act::ELU || act == Act::ReLU;
    auto pos = std::make_shared<std::vector<uint8_t>>();  // (n) x > 0 in the recorded run; empty unless recorded
    auto fwd = [=, &K] {
        if (branches && choices_frozen() && !pos->empty()) return act_forward_on_branch(act, out.data(), x.data(), pos->data(), n);
        K.act_forward(act, out.data(), x.data(), n);
        if (branches && choices_recording()) {
            CHECK(x.device() == Device::CPU, "RecordChoices: %s is on %s; recording runs on the CPU", x.desc().c_str(),
                  device_name(x.device()));
            pos->resize((size_t)n);
            for (int64_t i = 0; i < n; i++) (*pos)[i] = x.data()[i] > 0;
        }
    };
    auto bwd = [=, &K] {
        if (x.requires_grad()) K.act_backward(act, x.grad(), out.grad(), out.data(), n);
    };
    return op_record(name, out, fwd, bwd);
}

Tensor elu(const Tensor& x) { return activation("elu", Act::ELU, x); }
Tensor relu(const Tensor& x) { return activation("relu", Act::ReLU, x); }
Tensor sigmoid(const Tensor& x) { return activation("sigmoid", Act::Sigmoid, x); }
Tensor tanh(const Tensor& x) { return activation("tanh", Act::Tanh, x); }

// ---- elementwise -------------------------------------------------------------------------------

static Tensor add_scaled(const char* name, const Tensor& a, const Tensor& b, float alpha, float beta) {
    check_same_shape(a, b, name);
    Tensor out = op_output(a.shape, {&a, &b});
    const KernelTable& K = kernels_for(a.device());
    int64_t n = a.numel();
    auto fwd = [=, &K] { K.add(out.data(), a.data(), b.data(), n, alpha, beta); };
    auto bwd = [=, &K] {
        if (a.requires_grad()) K.axpy(a.grad(), out.grad(), n, alpha);
        if (b.requires_grad()) K.axpy(b.grad(), out.grad(), n, beta);
    };
    return op_record(name, out, fwd, bwd);
}

Tensor add(const Tensor& a, const Tensor& b) { return add_scaled("add", a, b, 1.f, 1.f); }
Tensor sub(const Tensor& a, const Tensor& b) { return add_scaled("sub", a, b, 1.f, -1.f); }

Tensor mul(const Tensor& a, const Tensor& b) {
    check_same_shape(a, b, "mul");
    Tensor out = op_output(a.shape, {&a, &b});
    const KernelTable& K = kernels_for(a.device());
    int64_t n = a.numel();
    auto fwd = [=, &K] { K.mul(out.data(), a.data(), b.data(), n); };
    auto bwd = [=, &K] { K.mul_backward(grad_or_null(a), grad_or_null(b), out.grad(), a.data(), b.data(), n); };
    return op_record("mul", out, fwd, bwd);
}

static Tensor affine(const char* name, const Tensor& a, float scale, float shift) {
    Tensor out = op_output(a.shape, {&a});
    const KernelTable& K = kernels_for(a.device());
    int64_t n = a.numel();
    auto fwd = [=, &K] { K.affine(out.data(), a.data(), n, scale, shift); };
    auto bwd = [=, &K] {
        if (a.requires_grad()) K.axpy(a.grad(), out.grad(), n, scale);
    };
    return op_record(name, out, fwd, bwd);
}

Tensor add_scalar(const Tensor& a, float s) { return affine("add_scalar", a, 1.f, s); }
Tensor mul_scalar(const Tensor& a, float s) { return affine("mul_scalar", a, s, 0.f); }

// ---- channels ----------------------------------------------------------------------------------

Tensor scale_channels(const Tensor& x, const Tensor& a) {
    CHECK(x.ndim() >= 2, "scale_channels: %s has no channel dimension", x.desc().c_str());
    check_shape(a, {x.dim(1)}, "scale_channels scale");
    Tensor out = op_output(x.shape, {&x, &a});
    const KernelTable& K = kernels_for(x.device());
    int N = (int)x.dim(0), C = (int)x.dim(1);
    int64_t P = x.numel() / ((int64_t)N * C);
    auto fwd = [=, &K] { K.chan_scale_forward(out.data(), x.data(), a.data(), N, C, P); };
    auto bwd = [=, &K] { K.chan_scale_backward(grad_or_null(x), grad_or_null(a), out.grad(), x.data(), a.data(), N, C, P); };
    return op_record("scale_channels", out, fwd, bwd);
}

static int64_t plane(const Tensor& x) { return x.numel() / (x.dim(0) * x.dim(1)); }

Tensor concat_channels(const std::vector<Tensor>& xs) {
    CHECK(!xs.empty(), "concat_channels of nothing");
    int64_t C = 0;
    std::vector<const Tensor*> ins;
    for (const Tensor& x : xs) {
        CHECK(x.ndim() >= 2, "concat_channels: %s has no channel dimension", x.desc().c_str());
        Shape a = x.shape, b = xs[0].shape;
        a[1] = b[1] = 0;
        if (a != b)
            fail("concat_channels: %s and %s differ outside the channel dimension", xs[0].desc().c_str(),
                 x.desc().c_str());
        C += x.dim(1);
        ins.push_back(&x);
    }
    Shape s = xs[0].shape;
    s[1] = C;
    Tensor out = op_output(s, ins);
    const KernelTable& K = kernels_for(out.device());
    int N = (int)s[0];
    int64_t HW = plane(xs[0]);
    auto fwd = [=, &K] {
        int c0 = 0;
        for (const Tensor& x : xs) {
            K.chan_copy(out.data(), (int)C, c0, x.data(), (int)x.dim(1), 0, (int)x.dim(1), N, HW, false);
            c0 += (int)x.dim(1);
        }
    };
    auto bwd = [=, &K] {
        int c0 = 0;
        for (const Tensor& x : xs) {
            if (x.requires_grad())
                K.chan_copy(x.grad(), (int)x.dim(1), 0, out.grad(), (int)C, c0, (int)x.dim(1), N, HW, true);
            c0 += (int)x.dim(1);
        }
    };
    return op_record("concat_channels", out, fwd, bwd);
}

Tensor slice_channels(const Tensor& x, int c0, int C) {
    CHECK(x.ndim() >= 2, "slice_channels: %s has no channel dimension", x.desc().c_str());
    if (c0 < 0 || C < 0 || c0 + C > x.dim(1))
        fail("slice_channels: channels [%d, %d) out of range for %s", c0, c0 + C, x.desc().c_str());
    Shape s = x.shape;
    s[1] = C;
    Tensor out = op_output(s, {&x});
    const KernelTable& K = kernels_for(x.device());
    int N = (int)s[0], XC = (int)x.dim(1);
    int64_t HW = plane(x);
    auto fwd = [=, &K] { K.chan_copy(out.data(), C, 0, x.data(), XC, c0, C, N, HW, false); };
    auto bwd = [=, &K] {
        if (x.requires_grad()) K.chan_copy(x.grad(), XC, c0, out.grad(), C, 0, C, N, HW, true);
    };
    return op_record("slice_channels", out, fwd, bwd);
}

std::vector<Tensor> split_channels(const Tensor& x, const std::vector<int>& sizes) {
    int total = 0;
    for (int s : sizes) total += s;
    if (total != x.dim(1)) fail("split_channels: sizes add up to %d but %s has %lld channels", total,
                                x.desc().c_str(), (long long)x.dim(1));
    std::vector<Tensor> parts;
    int c0 = 0;
    for (int s : sizes) {
        parts.push_back(slice_channels(x, c0, s));
        c0 += s;
    }
    return parts;
}

// ---- linear ------------------------------------------------------------------------------------

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
    check_ndim(x, 2, "linear input");
    check_ndim(w, 2, "linear weight");
    if (x.dim(1) != w.dim(1))
        fail("linear: input %s has %lld features but weight %s expects %lld", x.desc().c_str(), (long long)x.dim(1),
             w.desc().c_str(), (long long)w.dim(1));
    if (b.defined()) check_shape(b, {w.dim(0)}, "linear bias");
    int N = (int)x.dim(0), Din = (int)x.dim(1), Dout = (int)w.dim(0);
    Tensor out = op_output({N, Dout}, {&x, &w, &b});
    const KernelTable& K = kernels_for(x.device());
    auto fwd = [=, &K] {  // out (N, Dout) = x (N, Din) w^T + b
        K.gemm(false, true, N, Dout, Din, 1.f, x.data(), Din, w.data(), Din, 0.f, out.data(), Dout);
        if (b.defined()) K.bias_add_rows(out.data(), b.data(), N, Dout);
    };
    auto bwd = [=, &K] {
        if (x.requires_grad())  // dx (N, Din) += dout (N, Dout) w (Dout, Din)
            K.gemm(false, false, N, Din, Dout, 1.f, out.grad(), Dout, w.data(), Din, 1.f, x.grad(), Din);
        if (w.requires_grad())  // dw (Dout, Din) += dout^T x
            K.gemm(true, false, Dout, Din, N, 1.f, out.grad(), Dout, x.data(), Din, 1.f, w.grad(), Din);
        if (b.defined() && b.requires_grad()) K.sum_rows(b.grad(), out.grad(), N, Dout);
    };
    return op_record("linear", out, fwd, bwd);
}

Tensor center_rows(const Tensor& x) {
    check_ndim(x, 2, "center_rows input");
    int N = (int)x.dim(0), D = (int)x.dim(1);
    Tensor out = op_output(x.shape, {&x});
    const KernelTable& K = kernels_for(x.device());
    Device dev = x.device();
    auto centre = [=, &K](float* dst, const float* src, bool accumulate) {  // dst (+)= src - mean_rows(src)
        float* m = workspace(dev, D);
        K.fill(m, D, 0.f);
        K.sum_rows(m, src, N, D);
        K.affine(m, m, D, -1.f / (float)N, 0.f);
        if (!accumulate) K.fill(dst, (int64_t)N * D, 0.f);
        K.axpy(dst, src, (int64_t)N * D, 1.f);
        K.bias_add_rows(dst, m, N, D);
    };
    auto fwd = [=] { centre(out.data(), x.data(), false); };
    auto bwd = [=] {
        if (x.requires_grad()) centre(x.grad(), out.grad(), true);
    };
    return op_record("center_rows", out, fwd, bwd);
}

// ---- reductions and losses ---------------------------------------------------------------------

static Tensor sum_scaled(const char* name, const Tensor& x, float scale) {
    Tensor out = op_output({1}, {&x});
    const KernelTable& K = kernels_for(x.device());
    int64_t n = x.numel();
    auto fwd = [=, &K] { K.sum(out.data(), x.data(), n, scale); };
    auto bwd = [=, &K] {
        if (x.requires_grad()) K.sum_backward(x.grad(), out.grad(), n, scale);
    };
    return op_record(name, out, fwd, bwd);
}

Tensor sum(const Tensor& x) { return sum_scaled("sum", x, 1.f); }
Tensor mean(const Tensor& x) { return sum_scaled("mean", x, x.numel() ? 1.f / (float)x.numel() : 0.f); }

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
    check_same_shape(pred, target, "mse_loss: prediction vs target");
    Tensor out = op_output({1}, {&pred, &target});
    const KernelTable& K = kernels_for(pred.device());
    int64_t n = pred.numel();
    auto fwd = [=, &K] { K.mse_forward(out.data(), pred.data(), target.data(), n); };
    auto bwd = [=, &K] { K.mse_backward(grad_or_null(pred), grad_or_null(target), out.grad(), pred.data(), target.data(), n); };
    return op_record("mse_loss", out, fwd, bwd);
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
    check_ndim(logits, 2, "softmax_cross_entropy logits");
    int N = (int)logits.dim(0), Kc = (int)logits.dim(1);
    check_shape(labels, {N}, "softmax_cross_entropy labels");
    if (labels.device() == Device::CPU)
        for (int i = 0; i < N; i++) {
            float y = labels.data()[i];
            if (!(y >= 0 && y < Kc && y == std::floor(y)))
                fail("softmax_cross_entropy: label %g at %d is not a class index in [0, %d)", y, i, Kc);
        }
    Tensor out = op_output({1}, {&logits});
    Tensor probs = tensor_empty(logits.shape, logits.device());
    const KernelTable& K = kernels_for(logits.device());
    auto fwd = [=, &K] { K.xent_forward(out.data(), probs.data(), logits.data(), labels.data(), N, Kc); };
    auto bwd = [=, &K] {
        if (logits.requires_grad()) K.xent_backward(logits.grad(), out.grad(), probs.data(), labels.data(), N, Kc);
    };
    return op_record("softmax_cross_entropy", out, fwd, bwd);
}

// ---- dropout -----------------------------------------------------------------------------------

Tensor dropout(const Tensor& x, float p, uint64_t seed, bool training) {
    CHECK(p >= 0.f && p < 1.f, "dropout probability %g not in [0, 1)", p);
    if (!training || p == 0.f) return x;
    Tensor out = op_output(x.shape, {&x});
    Tensor mask = tensor_empty(x.shape, x.device());
    auto rng = std::make_shared<Rng>(seed);
    const KernelTable& K = kernels_for(x.device());
    int64_t n = x.numel();
    auto fwd = [=, &K] {
        if (!choices_frozen()) {  // a new mask at every forward, replays included
            std::vector<float> m((size_t)n);
            float keep = 1.f / (1.f - p);
            for (auto& v : m) v = rng->uniform() < p ? 0.f : keep;
            backend_copy_from_host(mask.device(), mask.data(), m.data(), n);
        }
        K.mul(out.data(), x.data(), mask.data(), n);
    };
    auto bwd = [=, &K] {
        if (x.requires_grad()) K.mul_backward(x.grad(), nullptr, out.grad(), x.data(), mask.data(), n);
    };
    return op_record("dropout", out, fwd, bwd);
}

// ---- gradient flow -------------------------------------------------------------------------------

Tensor grad_gate(const Tensor& x, std::shared_ptr<const bool> cut) {
    CHECK(cut != nullptr, "grad_gate without its switch");
    Tensor out = op_output(x.shape, {&x});
    const KernelTable& K = kernels_for(x.device());
    int64_t n = x.numel();
    auto fwd = [=, &K] { K.affine(out.data(), x.data(), n, 1.f, 0.f); };
    auto bwd = [=, &K] {  // *cut read here, at every backward
        if (!*cut && x.requires_grad()) K.axpy(x.grad(), out.grad(), n, 1.f);
    };
    return op_record("grad_gate", out, fwd, bwd);
}

}  // namespace vt
