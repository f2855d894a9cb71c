// kernels.h: the raw-pointer compute kernels, one table per device.
//
// Kernels know nothing of tensors or autodiff: they take float pointers and sizes. Every
// forward has its backward beside it. Conventions (llm.c): outputs first, then inputs, then
// sizes; gradients carry a `d` prefix; backward kernels ACCUMULATE (+=) into every gradient
// they write, so contributions from several uses of a tensor (time steps, feedback paths)
// add up. The engine picks a table with kernels_for(device); kernels/cpu/ is the reference,
// kernels/cuda/ (built with CUDA=1) is tested against it.
//
// Size names: N batch, C channels, H/W height/width, OC output channels, K kernel size,
// OH/OW output height/width, P = OH*OW.
#pragma once
#include <cstdint>
#include <type_traits>

namespace vt {

struct ConvDims {
    int N, C, H, W;      // input (N, C, H, W)
    int OC, KH, KW;      // weight (OC, C, KH, KW)
    int SH, SW, PH, PW;  // stride, zero padding
    int OH, OW;          // output (N, OC, OH, OW)
    int64_t cols_size() const { return (int64_t)C * KH * KW * N * OH * OW; }      // im2col (C*KH*KW, N*OH*OW)
    int64_t scratch_size() const { return (int64_t)OC * N * OH * OW + cols_size(); }  // workspace of a conv
    bool is_pointwise() const { return KH == 1 && KW == 1 && SH == 1 && SW == 1 && PH == 0 && PW == 0; }
};
ConvDims conv_dims(int N, int C, int H, int W, int OC, int KH, int KW, int SH, int SW, int PH, int PW);

struct PoolDims {
    int N, C, H, W;      // input
    int K, S, P;         // square window, stride, padding (padded cells never win)
    int OH, OW;
};
PoolDims pool_dims(int N, int C, int H, int W, int K, int S, int P);

enum class Act { ELU, ReLU, Sigmoid, Tanh };

// GEMM precision on the GPU (engine/backend.h's backend_set_precision; the CPU is FP32 only).
enum class Precision { FP32, TF32, BF16 };

// The CPU's path for stride-1 convolutions: Auto picks per shape by the measured rule in
// kernels/cpu/conv.cpp; the others force one path (tests, bench) where it applies, else
// im2col: im2col + GEMM, Winograd F(2x2, 3x3) / F(4x4, 3x3) (kernels/cpu/winograd.cpp; 3x3),
// the implicit GEMM (kernels/cpu/igemm.cpp; kernels wider than 1x1 and padded by less than
// their size, in builds for a CPU with AVX2+FMA or AVX-512, tensors under 2^31 elements), or
// Winograd F(2x2, 3x3) fused into that GEMM's micro-kernel (igemm.cpp; 3x3, padding <= 2; forced,
// its weight gradient too; under Auto that one by Winograd or the implicit GEMM, by shape).
enum class CpuConvPath { Auto, Im2col, Winograd2, Winograd4, Implicit, FusedWinograd };
void cpu_set_conv_path(CpuConvPath p);
CpuConvPath cpu_conv_path();

struct KernelTable {
    const char* name;

    // ---- memory and elementwise -------------------------------------------------------
    void (*fill)(float* p, int64_t n, float v);
    void (*axpy)(float* y, const float* x, int64_t n, float a);                 // y += a*x
    void (*add)(float* out, const float* a, const float* b, int64_t n, float alpha, float beta);  // out = alpha*a + beta*b
    void (*mul)(float* out, const float* a, const float* b, int64_t n);
    void (*mul_backward)(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);  // either grad may be null
    void (*affine)(float* out, const float* a, int64_t n, float scale, float shift);  // out = scale*a + shift

    // ---- activations: backward reads the forward OUTPUT (elu: alpha = 1) --------------
    void (*act_forward)(Act act, float* out, const float* inp, int64_t n);
    void (*act_backward)(Act act, float* dinp, const float* dout, const float* out, int64_t n);

    // ---- dense algebra ----------------------------------------------------------------
    // C (M, N) = alpha * op(A) op(B) + beta * C, row-major; op = transpose if ta/tb.
    void (*gemm)(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc);
    void (*bias_add_rows)(float* out, const float* bias, int rows, int cols);  // out[r, c] += bias[c]
    void (*sum_rows)(float* dbias, const float* dout, int rows, int cols);     // dbias[c] += sum_r dout[r, c]

    // ---- convolution (im2col + GEMM) --------------------------------------------------
    // Nothing but the input is kept for backward: backward recomputes the im2col buffer
    // (C*KH*KW, N*OH*OW) in its scratch, which costs an im2col but not K*K copies of every
    // activation of every time step. scratch: d.scratch_size() floats of workspace,
    // contents undefined on return. dinp/dweight/dbias may be null (not wanted).
    void (*conv2d_forward)(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                           const ConvDims& d);
    void (*conv2d_backward)(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, float* scratch, const ConvDims& d);

    // ---- max-pool: argmax (flat index into the input plane) kept for backward ---------
    void (*maxpool_forward)(float* out, int32_t* argmax, const float* inp, const PoolDims& d);
    void (*maxpool_backward)(float* dinp, const float* dout, const int32_t* argmax, const PoolDims& d);
    // out = inp at the given argmax (the pool with its winners held fixed: gradient checks)
    void (*maxpool_gather)(float* out, const int32_t* argmax, const float* inp, const PoolDims& d);

    // ---- channel blocks: dst[n, c0 + c, :] (=/+=) src[n, c, :]; src (N, SC, HW), dst (N, DC, HW)
    void (*chan_copy)(float* dst, int DC, int dc0, const float* src, int SC, int sc0, int C, int N,
                      int64_t HW, bool accumulate);

    // ---- bilinear resize, align_corners = true ----------------------------------------
    void (*resize_forward)(float* out, const float* inp, int NC, int H, int W, int OH, int OW);
    void (*resize_backward)(float* dinp, const float* dout, int NC, int H, int W, int OH, int OW);

    // ---- reductions and losses (scalars are 1-element device buffers) -----------------
    void (*sum)(float* out, const float* inp, int64_t n, float scale);           // out[0] = scale*sum
    void (*sum_backward)(float* dinp, const float* dout, int64_t n, float scale); // dinp += scale*dout[0]
    void (*mse_forward)(float* out, const float* a, const float* b, int64_t n);  // mean (a-b)^2
    void (*mse_backward)(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
    // logits (N, K), labels (N,) class indices stored as floats; probs kept for backward;
    // out[0] = mean loss.
    void (*xent_forward)(float* out, float* probs, const float* logits, const float* labels, int N, int K);
    void (*xent_backward)(float* dlogits, const float* dout, const float* probs, const float* labels, int N, int K);

    // ---- dropout: mask (n) holds 0 or 1/(1-p), drawn by the engine ---------------------
    // (forward and backward are `mul` and `mul_backward` with the mask)

    // ---- per-channel scale: out[n, c, p] = x[n, c, p] * a[c]; x (N, C, P), a (C) ---------
    void (*chan_scale_forward)(float* out, const float* x, const float* a, int N, int C, int64_t P);
    void (*chan_scale_backward)(float* dx, float* da, const float* dout, const float* x, const float* a, int N, int C,
                                int64_t P);

    // ---- fused recurrent cells (docs/science.md section 2) ----------------------------------
    // One pass computes every gate nonlinearity and the state update from the gate
    // pre-activations G, laid out as the conv that made them: G (N, k*C, P), gate g of
    // channel c at G[n, g*C + c, p]. States are (N, C, P). A null previous state means zero;
    // a null gradient means not wanted. s = sigmoid; the +1 offsets bias gates to remember.
    // lstm: G = [i, j, f, o]; c = c_prev*s(f+1) + s(i)*tanh(j); h = tanh(c)*s(o).
    void (*lstm_forward)(float* c, float* h, const float* G, const float* c_prev, int N, int C, int64_t P);
    void (*lstm_backward)(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G,
                          const float* c_prev, const float* c, int N, int C, int64_t P);
    // gru, in two fused passes around the candidate conv:
    //   gates:  G1 = [r, u]; rh = s(r+1) * h_prev                      (input of the candidate conv)
    //   update: h = s(u+1)*h_prev + (1 - s(u+1))*tanh(Gc)              (Gc: candidate pre-activation)
    void (*gru_gates_forward)(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P);
    void (*gru_gates_backward)(float* dG1, float* dh_prev, const float* drh, const float* G1, const float* h_prev,
                               int N, int C, int64_t P);
    void (*gru_update_forward)(float* h, const float* G1, const float* Gc, const float* h_prev, int N, int C, int64_t P);
    void (*gru_update_backward)(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1,
                                const float* Gc, const float* h_prev, int N, int C, int64_t P);
    // ugrnn: G = [g, m]; h = s(g+1)*h_prev + (1 - s(g+1))*tanh(m).
    void (*ugrnn_forward)(float* h, const float* G, const float* h_prev, int N, int C, int64_t P);
    void (*ugrnn_backward)(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev, int N,
                           int C, int64_t P);
    // rgc (reciprocal gated cell): A = conv(c_prev) = [tc, gh], B = conv(h_prev) = [gc, th],
    // Xc = conv(x); the gates' part, before the ELUs (the caller applies elu: c = elu(pc), h = elu(ph)):
    // pc = (1 - s(tc))*c_prev + (1 - s(gc))*Xc, ph = (1 - s(th))*h_prev + (1 - s(gh))*x.
    void (*rgc_gates_forward)(float* pc, float* ph, const float* A, const float* B, const float* Xc, const float* x,
                              const float* c_prev, const float* h_prev, int N, int C, int64_t P);
    void (*rgc_gates_backward)(float* dA, float* dB, float* dXc, float* dx, float* dc_prev, float* dh_prev,
                               const float* dpc, const float* dph, const float* A, const float* B, const float* Xc,
                               const float* x, const float* c_prev, const float* h_prev, int N, int C, int64_t P);

    // ---- optimiser updates over a flat parameter arena ---------------------------------
    void (*sgd_update)(float* p, const float* g, float* mom, int64_t n, float lr, float momentum, float wd);
    void (*adam_update)(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1,
                        float b2, float eps, float wd, int step);
};

// ---- every kernel, named once ---------------------------------------------------------
// The members of KernelTable after `name`, in order. A backend declares its kernels from this
// list with the table's signatures (VT_DECLARE_KERNEL: kernels/cpu/cpu.h,
// kernels/cuda/internal.cuh) and fills its table by name (kernels/cpu/table.cpp,
// kernels/cuda/device.cu), so two kernels of one signature cannot trade places and a
// definition whose signature drifts from the table's fails to link.
#define VT_KERNELS(X)                                                                                  \
    X(fill) X(axpy) X(add) X(mul) X(mul_backward) X(affine)                                            \
    X(act_forward) X(act_backward)                                                                     \
    X(gemm) X(bias_add_rows) X(sum_rows)                                                               \
    X(conv2d_forward) X(conv2d_backward)                                                               \
    X(maxpool_forward) X(maxpool_backward) X(maxpool_gather)                                           \
    X(chan_copy)                                                                                       \
    X(resize_forward) X(resize_backward)                                                               \
    X(sum) X(sum_backward) X(mse_forward) X(mse_backward) X(xent_forward) X(xent_backward)             \
    X(chan_scale_forward) X(chan_scale_backward)                                                       \
    X(lstm_forward) X(lstm_backward)                                                                   \
    X(gru_gates_forward) X(gru_gates_backward) X(gru_update_forward) X(gru_update_backward)            \
    X(ugrnn_forward) X(ugrnn_backward)                                                                 \
    X(rgc_gates_forward) X(rgc_gates_backward)                                                         \
    X(sgd_update) X(adam_update)

// Declares, in a backend's namespace, the function `name` with the signature of
// KernelTable::name.
#define VT_DECLARE_KERNEL(kernel) std::remove_pointer_t<decltype(::vt::KernelTable::kernel)> kernel;

#define VT_KERNEL_NAME(name) #name,
inline constexpr const char* KERNEL_NAMES[] = {VT_KERNELS(VT_KERNEL_NAME)};
#undef VT_KERNEL_NAME
inline constexpr int KERNEL_COUNT = sizeof(KERNEL_NAMES) / sizeof(KERNEL_NAMES[0]);

constexpr bool kernel_names_distinct() {
    for (int i = 0; i < KERNEL_COUNT; i++)
        for (int j = i + 1; j < KERNEL_COUNT; j++) {
            const char *a = KERNEL_NAMES[i], *b = KERNEL_NAMES[j];
            while (*a && *a == *b) a++, b++;
            if (*a == *b) return false;
        }
    return true;
}
// Together: the list names every member once (a name that is not a member fails to compile
// where a table is filled), so a table filled from it has every kernel set.
static_assert(kernel_names_distinct(), "VT_KERNELS names a kernel twice");
static_assert(sizeof(KernelTable) == sizeof(const char*) + KERNEL_COUNT * sizeof(void (*)()),
              "KernelTable and VT_KERNELS differ: add the new kernel to VT_KERNELS (and to each backend)");

const KernelTable& cpu_kernels();

// ---- CPU-only kernels (no table entry: on other devices their op composes table kernels) ----
// conv2d of a bilinearly resized (align_corners) map, without the resized map: s (N, Cs, h, w)
// is resized to (H, W) and convolved with weight (OC, Cs, KH, KW), stride S, zero padding P,
// no bias -> out (N, OC, OH, OW). The resize and the conv are both linear, so out =
// U @ Phi: U (N*OC, KH*KW*h*w) holds each tap's weights applied to each source pixel, Phi
// (KH*KW*h*w, OH*OW) each source pixel's bilinear weight under each tap at each output pixel.
// O(OC Cs KK h w N + N OC KK h w OH OW) instead of O(N OC Cs KK OH OW): for a conv5 map of 1x1
// or 2x2 fed back into conv2 (16x16, 32x32) one to three orders of magnitude less.
struct ConvUpDims {
    int N, Cs, h, w;     // the source
    int H, W;            // the resized map the conv reads
    int OC, KH, KW, S, P;
    int OH, OW;
};
ConvUpDims conv_up_dims(int N, int Cs, int h, int w, int H, int W, int OC, int KH, int KW, int S, int P);
namespace cpu {
void conv_up_forward(float* out, const float* src, const float* weight, const ConvUpDims& d);
// dsrc / dweight accumulate; either may be null (not wanted)
void conv_up_backward(float* dsrc, float* dweight, const float* dout, const float* src, const float* weight,
                      const ConvUpDims& d);
}  // namespace cpu

#ifdef VT_CUDA
const KernelTable& cuda_kernels();
#endif

}  // namespace vt
