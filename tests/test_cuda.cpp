// test_cuda.cpp: every CUDA kernel against its CPU twin (kernels/cpu/, the reference), and a
// small conv -> elu -> maxpool -> linear -> mse graph on the GPU against the same graph on
// the CPU. Every test skips where no CUDA device is present (and in builds without
// CUDA=1, where cuda_available() is false); then only the no-device message is checked.
//
// Method (llm.c dev/cuda; the device tool's METHOD.md): fresh random inputs, the same bytes
// on both sides; outputs poisoned with NaN first, so an unwritten element fails; gradients
// seeded with random non-zero values, so a kernel that overwrites instead of accumulating
// fails. Each result must pass, per element, |gpu - cpu| <= atol + rtol * |cpu| and, over
// the tensor, ||gpu - cpu|| / ||cpu|| <= rel_l2; NaN never passes. Tolerances, all FP32
// (no TF32 anywhere: cuBLAS in its default math mode, cuDNN in FMA math):
//   ELEMENTWISE  atol 1e-6, rtol 1e-5, rel_l2 1e-6: one rounding per operation, CUDA's
//                expf/tanhf/expm1f within 2 ulp of the C library's (~2.4e-7 relative);
//   REDUCTION    atol 1e-4, rtol 1e-4, rel_l2 1e-5: sums over up to ~600 terms of size ~1
//                in another order (GEMM, convolution, bias gradients); METHOD.md expects
//                FP32 arithmetic "far under 1e-3" relative, and an indexing bug gives O(1);
//   SCALAR       atol 1e-6, rtol 1e-5: losses and sums, accumulated in double on both sides.
//   MODEL        atol 1e-4 x the tensor's largest |value|, rtol 1e-3, rel_l2 1e-4: gradients of a
//                whole unrolled model, each the end of a chain of some 20 REDUCTION-class steps
//                (convolutions, cells, pools over T steps and back), whose float32 errors add
//                along the chain: REDUCTION's bounds widened tenfold, atol scaled per tensor
//                because a model's gradients span orders of magnitude between parameters. An
//                indexing or accumulation bug still gives O(1). (A numeric gradient check in
//                float32 on the GPU is no sharper than the CPU's; the CPU's analytic gradients
//                are themselves checked numerically in test_models.cpp.)
//
// Also here: the pieces around the kernels that tools use, in CPU builds too: --device
// parsing (engine/cli.h) and each tool's one-line refusal without a GPU, pinned staging
// buffers, and TapeGraph (engine/autograd.h), which on the CPU is plain forward + backward.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "models/convrnn.h"
#include "models/fit/features.h"
#include "tests/testutil.h"
#include "engine/cli.h"
#ifdef VT_CUDA
#include "kernels/cuda/cuda.h"
#endif

using namespace vt;

namespace {

struct Tol {
    double atol, rtol, rel_l2;
};
constexpr Tol ELEMENTWISE{1e-6, 1e-5, 1e-6};
constexpr Tol REDUCTION{1e-4, 1e-4, 1e-5};
constexpr Tol SCALAR{1e-6, 1e-5, 1e-5};

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, Tol tol, const std::string& what) {
    REQUIRE(got.size() == ref.size());
    int64_t bad = 0, worst = -1;
    double worst_excess = 0, d2 = 0, r2 = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double g = got[i], r = ref[i], e = std::fabs(g - r), lim = tol.atol + tol.rtol * std::fabs(r);
        if (!(e <= lim)) {  // NaN lands here too
            bad++;
            if (worst < 0 || !(e - lim <= worst_excess)) {
                worst = (int64_t)i;
                worst_excess = std::isfinite(e) ? e - lim : INFINITY;
            }
        }
        d2 += (g - r) * (g - r);
        r2 += r * r;
    }
    double rel = r2 > 0 ? std::sqrt(d2 / r2) : std::sqrt(d2);
    INFO(what << ": " << bad << " of " << ref.size() << " elements outside atol + rtol*|ref|"
              << (worst >= 0 ? "; worst at " + std::to_string(worst) + ": gpu " + std::to_string(got[worst]) +
                                   " cpu " + std::to_string(ref[worst])
                             : std::string())
              << "; relative L2 error " << rel);
    CHECK(bad == 0);
    CHECK(rel <= tol.rel_l2);
}

std::vector<float> randv(int64_t n, Rng& r, float std = 1.f) {
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = r.normal() * std;
    return v;
}

std::vector<float> nanv(int64_t n) { return std::vector<float>((size_t)n, NAN); }

Tensor to_gpu(const std::vector<float>& v) {
    Tensor t = tensor_empty({(int64_t)v.size()}, Device::CUDA);
    backend_copy_from_host(Device::CUDA, t.data(), v.data(), (int64_t)v.size());
    return t;
}

// Named buffers holding the same values on the CPU (vectors) and on the GPU (tensors).
// p(name) gives the side's pointer, or nullptr for a name never added (a null argument).
struct Twin {
    std::map<std::string, std::vector<float>> cpu;
    std::map<std::string, Tensor> gpu;

    void add(const std::string& k, std::vector<float> v) {
        gpu[k] = to_gpu(v);
        cpu[k] = std::move(v);
    }
    float* c(const std::string& k) { return cpu.count(k) ? cpu[k].data() : nullptr; }
    float* g(const std::string& k) { return gpu.count(k) ? gpu[k].data() : nullptr; }
    std::vector<float> gpu_values(const std::string& k) { return gpu.at(k).to_vector(); }
    void expect(const std::string& k, Tol tol, const std::string& what) {
        expect_close(gpu_values(k), cpu.at(k), tol, what + ": " + k);
    }
    // the argmax buffers hold int32 in float-sized slots; compare them exactly
    void expect_ints(const std::string& k, const std::string& what) {
        std::vector<float> gv = gpu_values(k);
        const std::vector<float>& cv = cpu.at(k);
        REQUIRE(gv.size() == cv.size());
        int64_t bad = 0, first = -1;
        for (size_t i = 0; i < cv.size(); i++)
            if (std::memcmp(&gv[i], &cv[i], sizeof(float))) {
                bad++;
                if (first < 0) first = (int64_t)i;
            }
        INFO(what << ": " << bad << " of " << cv.size() << " differ; first at " << first);
        CHECK(bad == 0);
    }
};

// Runs f once with the CPU table and the CPU buffers, once with the CUDA ones. f takes the
// table and a name -> float* accessor.
using Ptr = std::function<float*(const std::string&)>;
void on_both(Twin& t, const std::function<void(const KernelTable&, const Ptr&)>& f) {
    f(cpu_kernels(), [&](const std::string& k) { return t.c(k); });
    f(kernels_for(Device::CUDA), [&](const std::string& k) { return t.g(k); });
}

}  // namespace

// ---- without a device ----------------------------------------------------------------------------

TEST_CASE("cuda: without a device, asking for it fails with a clear message") {
    if (vt::cuda_available()) {
        MESSAGE("a CUDA device is present: this test is for machines without one");
        return;
    }
    CHECK_THROWS_AS(tensor_empty({4}, Device::CUDA), vt::Error);
    try {
        kernels_for(Device::CUDA);
        FAIL("kernels_for(CUDA) did not fail");
    } catch (const vt::Error& e) {
        std::string m = e.what();
        INFO(m);
        CHECK(m.find("--device cuda") != std::string::npos);
    }
}

// ---- memory and elementwise ----------------------------------------------------------------------

TEST_CASE("cuda: fill, axpy, add, mul and affine match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(11);
    for (int64_t n : {1, 1000, 300001}) {
        CAPTURE(n);
        Twin t;
        t.add("a", randv(n, r));
        t.add("b", randv(n, r));
        t.add("y", randv(n, r));
        for (const char* k : {"fill", "add", "mul", "affine"}) t.add(k, nanv(n));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.fill(p("fill"), n, -2.5f);
            K.axpy(p("y"), p("a"), n, 0.3f);
            K.add(p("add"), p("a"), p("b"), n, 0.7f, -1.3f);
            K.mul(p("mul"), p("a"), p("b"), n);
            K.affine(p("affine"), p("a"), n, 1.5f, -0.25f);
        });
        for (const char* k : {"fill", "y", "add", "mul", "affine"}) t.expect(k, ELEMENTWISE, "elementwise");
    }
}

TEST_CASE("cuda: mul_backward accumulates like the CPU, either gradient may be null") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(12);
    const int64_t n = 5003;
    for (int mask : {1, 2, 3}) {
        CAPTURE(mask);
        Twin t;
        t.add("a", randv(n, r));
        t.add("b", randv(n, r));
        t.add("dout", randv(n, r));
        if (mask & 1) t.add("da", randv(n, r));
        if (mask & 2) t.add("db", randv(n, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.mul_backward(p("da"), p("db"), p("dout"), p("a"), p("b"), n);
        });
        if (mask & 1) t.expect("da", ELEMENTWISE, "mul_backward");
        if (mask & 2) t.expect("db", ELEMENTWISE, "mul_backward");
    }
}

TEST_CASE("cuda: activations forward and backward match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(13);
    const int64_t n = 70001;
    for (Act act : {Act::ELU, Act::ReLU, Act::Sigmoid, Act::Tanh}) {
        CAPTURE((int)act);
        Twin t;
        t.add("x", randv(n, r, 2.f));
        t.add("out", nanv(n));
        on_both(t, [&](const KernelTable& K, const Ptr& p) { K.act_forward(act, p("out"), p("x"), n); });
        t.expect("out", ELEMENTWISE, "act_forward");
        // backward on the same forward output (the CPU's) on both sides
        t.add("y", t.cpu["out"]);
        t.add("dout", randv(n, r));
        t.add("dinp", randv(n, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) { K.act_backward(act, p("dinp"), p("dout"), p("y"), n); });
        t.expect("dinp", ELEMENTWISE, "act_backward");
    }
}

// ---- dense algebra -------------------------------------------------------------------------------

TEST_CASE("cuda: gemm matches cblas for every transpose, padded leading dimensions, alpha and beta") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(14);
    const int M = 37, N = 29, K = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            CAPTURE(ta);
            CAPTURE(tb);
            // row-major storage: op(A) (M, K), op(B) (K, N), C (M, N), each row padded
            int a_rows = ta ? K : M, a_cols = ta ? M : K, lda = a_cols + 3;
            int b_rows = tb ? N : K, b_cols = tb ? K : N, ldb = b_cols + 2;
            int ldc = N + 5;
            Twin t;
            t.add("A", randv((int64_t)a_rows * lda, r));
            t.add("B", randv((int64_t)b_rows * ldb, r));
            t.add("C", randv((int64_t)M * ldc, r));  // beta != 0: C is read too
            on_both(t, [&](const KernelTable& Kt, const Ptr& p) {
                Kt.gemm(ta, tb, M, N, K, 0.75f, p("A"), lda, p("B"), ldb, -0.5f, p("C"), ldc);
            });
            t.expect("C", REDUCTION, "gemm");
        }
}

TEST_CASE("cuda: bias_add_rows and sum_rows match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(15);
    const int rows = 67, cols = 301;
    Twin t;
    t.add("out", randv((int64_t)rows * cols, r));
    t.add("bias", randv(cols, r));
    t.add("dout", randv((int64_t)rows * cols, r));
    t.add("dbias", randv(cols, r));
    on_both(t, [&](const KernelTable& K, const Ptr& p) {
        K.bias_add_rows(p("out"), p("bias"), rows, cols);
        K.sum_rows(p("dbias"), p("dout"), rows, cols);
    });
    t.expect("out", ELEMENTWISE, "bias_add_rows");
    t.expect("dbias", REDUCTION, "sum_rows");
}

// ---- convolution ---------------------------------------------------------------------------------

namespace {

struct ConvCase {
    int N, C, H, W, OC, KH, KW, SH, SW, PH, PW;
};

const ConvCase CONV_CASES[] = {
    {2, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1},     // 3x3, same padding
    {1, 2, 11, 11, 3, 7, 7, 2, 2, 3, 3},   // 7x7 stride 2 (the backbones' stem)
    {2, 4, 6, 5, 5, 1, 1, 1, 1, 0, 0},     // pointwise: the input is its own im2col
    {1, 3, 8, 8, 2, 5, 5, 3, 3, 0, 0},     // stride 3, no padding
    {3, 2, 4, 4, 2, 1, 1, 2, 2, 0, 0},     // 1x1 stride 2: not pointwise
    {1, 1, 5, 6, 1, 2, 2, 1, 1, 1, 1},     // even kernel
    {2, 3, 10, 8, 4, 3, 5, 2, 1, 1, 2},    // non-square kernel, stride and padding
    {2, 16, 16, 16, 24, 3, 3, 1, 1, 1, 1}, // CKK = 144, N*P = 512
};

#ifdef VT_CUDA
// Selects a convolution path for its lifetime (VT_CONV may have picked another).
struct ConvPathScope {
    ConvPath prev = cuda_conv_path();
    explicit ConvPathScope(ConvPath p) { cuda_set_conv_path(p); }
    ~ConvPathScope() { cuda_set_conv_path(prev); }
};
#endif

// Forward and backward of one convolution on both sides. Backward runs twice: every
// gradient wanted, then dinp alone (dweight and dbias null). `tol` (default REDUCTION) may
// depend on the reference's values (the precision tests scale atol by its largest |value|).
void check_conv(const ConvCase& c, uint64_t seed,
                const std::function<Tol(const std::vector<float>&)>& tol = [](const std::vector<float>&) {
                    return REDUCTION;
                }) {
    ConvDims d = conv_dims(c.N, c.C, c.H, c.W, c.OC, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW);
    const int64_t in_n = (int64_t)d.N * d.C * d.H * d.W, out_n = (int64_t)d.N * d.OC * d.OH * d.OW;
    const int64_t w_n = (int64_t)d.OC * d.C * d.KH * d.KW;
    Rng r(seed);
    Twin t;
    t.add("x", randv(in_n, r));
    t.add("w", randv(w_n, r, 0.5f));
    t.add("b", randv(d.OC, r));
    t.add("out", nanv(out_n));
    t.add("scratch", nanv(d.scratch_size()));
    on_both(t, [&](const KernelTable& K, const Ptr& p) {
        K.conv2d_forward(p("out"), p("x"), p("w"), p("b"), p("scratch"), d);
    });
    t.expect("out", tol(t.cpu.at("out")), "conv2d_forward");

    t.add("dout", randv(out_n, r));
    t.add("dx", randv(in_n, r));
    t.add("dw", randv(w_n, r));
    t.add("db", randv(d.OC, r));
    on_both(t, [&](const KernelTable& K, const Ptr& p) {
        K.conv2d_backward(p("dx"), p("dw"), p("db"), p("dout"), p("x"), p("w"), p("scratch"), d);
        K.conv2d_backward(p("dx"), nullptr, nullptr, p("dout"), p("x"), p("w"), p("scratch"), d);
    });
    for (const char* k : {"dx", "dw", "db"}) t.expect(k, tol(t.cpu.at(k)), "conv2d_backward");
}

// ---- reduced precision (--precision tf32 | bf16) against the FP32 CPU twin ------------------
// A product of operands rounded to p mantissa bits is off by at most 2u relative, u = 2^-p-1
// (TF32: 10 bits, u = 4.9e-4; BF16: 7 bits, u = 3.9e-3); summed over K terms of random sign
// the errors add in quadrature, like the terms themselves, so the result is off by ~u
// relative in L2 (rounding errors are ~uniform: rms u / sqrt(3) per operand). The bounds:
// relative L2 <= 8u, and per element <= 16u x the tensor's largest |value| (an element may
// be a sum that cancels to near 0). An indexing bug still gives O(1).
#ifdef VT_CUDA
Tol precision_tol(Precision p, const std::vector<float>& ref) {
    const double u = p == Precision::TF32 ? 0x1p-11 : 0x1p-8;
    double mx = 0;
    for (float v : ref) mx = std::max(mx, (double)std::fabs(v));
    return Tol{16 * u * mx, 0, 8 * u};
}

struct PrecisionScopeCuda {
    Precision prev = cuda_precision();
    explicit PrecisionScopeCuda(Precision p) { cuda_set_precision(p); }
    ~PrecisionScopeCuda() { cuda_set_precision(prev); }
};
#endif

}  // namespace

TEST_CASE("cuda: conv2d forward and backward (im2col + cuBLAS) match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
#ifdef VT_CUDA
    ConvPathScope path(ConvPath::Im2col);
#endif
    uint64_t seed = 100;
    for (const ConvCase& c : CONV_CASES) {
        CAPTURE(c.KH); CAPTURE(c.KW); CAPTURE(c.SH); CAPTURE(c.PH); CAPTURE(c.C); CAPTURE(c.OC);
        check_conv(c, seed++);
    }
}

TEST_CASE("cuda: conv2d through cuDNN matches the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
#ifdef VT_CUDA
    if (!cuda_has_cudnn()) { MESSAGE("built without CUDNN=1: skipped"); return; }
    ConvPathScope path(ConvPath::Cudnn);
    uint64_t seed = 200;
    for (const ConvCase& c : CONV_CASES) {
        CAPTURE(c.KH); CAPTURE(c.KW); CAPTURE(c.SH); CAPTURE(c.PH); CAPTURE(c.C); CAPTURE(c.OC);
        check_conv(c, seed++);
    }
#endif
}

TEST_CASE("cuda: gemm and conv2d at tf32 and bf16 match the FP32 CPU within the precision's rounding") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
#ifdef VT_CUDA
    ConvPathScope path(ConvPath::Im2col);
    for (Precision prec : {Precision::TF32, Precision::BF16}) {
        CAPTURE(precision_name(prec));
        PrecisionScopeCuda scope(prec);
        Rng r(prec == Precision::TF32 ? 31 : 32);
        const int M = 64, N = 96, K = 288;  // a cell conv's shape, small
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                CAPTURE(ta);
                CAPTURE(tb);
                const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
                Twin t;
                t.add("A", randv((int64_t)(ta ? K : M) * lda, r));
                t.add("B", randv((int64_t)(tb ? N : K) * ldb, r));
                t.add("C", randv((int64_t)M * ldc, r));
                on_both(t, [&](const KernelTable& Kt, const Ptr& p) {
                    Kt.gemm(ta, tb, M, N, K, 0.75f, p("A"), lda, p("B"), ldb, -0.5f, p("C"), ldc);
                });
                t.expect("C", precision_tol(prec, t.cpu.at("C")), "gemm");
                if (prec == Precision::BF16) {  // the operands really were rounded: not the FP32 result
                    std::vector<float> g = t.gpu_values("C");
                    double d2 = 0, r2 = 0;
                    for (size_t i = 0; i < g.size(); i++)
                        d2 += (g[i] - t.cpu.at("C")[i]) * (g[i] - t.cpu.at("C")[i]), r2 += g[i] * g[i];
                    CHECK(std::sqrt(d2 / r2) > 1e-4);
                }
            }
        uint64_t seed = 300;
        for (const ConvCase& c : CONV_CASES) {
            CAPTURE(c.KH); CAPTURE(c.KW); CAPTURE(c.SH); CAPTURE(c.PH); CAPTURE(c.C); CAPTURE(c.OC);
            check_conv(c, seed++, [&](const std::vector<float>& ref) { return precision_tol(prec, ref); });
        }
    }
    CHECK(cuda_precision() == Precision::FP32);  // the scopes restored it
#endif
}

TEST_CASE("cuda: conv2d through cuDNN at tf32 matches the CPU; bf16 there fails with a message") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
#ifdef VT_CUDA
    if (!cuda_has_cudnn()) { MESSAGE("built without CUDNN=1: skipped"); return; }
    ConvPathScope path(ConvPath::Cudnn);
    {
        PrecisionScopeCuda scope(Precision::TF32);
        uint64_t seed = 400;
        for (const ConvCase& c : CONV_CASES) {
            CAPTURE(c.KH); CAPTURE(c.KW); CAPTURE(c.SH); CAPTURE(c.PH); CAPTURE(c.C); CAPTURE(c.OC);
            check_conv(c, seed++, [](const std::vector<float>& ref) { return precision_tol(Precision::TF32, ref); });
        }
    }
    PrecisionScopeCuda scope(Precision::BF16);
    const ConvCase& c = CONV_CASES[0];
    ConvDims d = conv_dims(c.N, c.C, c.H, c.W, c.OC, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW);
    Tensor x = tensor_zeros({(int64_t)d.N * d.C * d.H * d.W}, Device::CUDA);
    Tensor w = tensor_zeros({(int64_t)d.OC * d.C * d.KH * d.KW}, Device::CUDA);
    Tensor out = tensor_empty({(int64_t)d.N * d.OC * d.OH * d.OW}, Device::CUDA);
    Tensor scratch = tensor_empty({d.scratch_size()}, Device::CUDA);
    const KernelTable& K = kernels_for(Device::CUDA);
    CHECK_THROWS_WITH_AS(K.conv2d_forward(out.data(), x.data(), w.data(), nullptr, scratch.data(), d),
                         doctest::Contains("bf16 runs on the im2col path only"), vt::Error);
#endif
}

TEST_CASE("cuda: asking for cuDNN in a build without it fails with a message") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
#ifdef VT_CUDA
    if (cuda_has_cudnn()) { MESSAGE("built with CUDNN=1: skipped"); return; }
    CHECK_THROWS_AS(cuda_set_conv_path(ConvPath::Cudnn), vt::Error);
    CHECK(cuda_conv_path() == ConvPath::Im2col);
#endif
}

// ---- max-pool, channel copies, resize ------------------------------------------------------------

TEST_CASE("cuda: maxpool forward (ties, padding), backward and gather match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    struct Case { int N, C, H, W, K, S, P; };
    Rng r(16);
    for (Case c : {Case{2, 3, 9, 9, 3, 2, 1}, Case{1, 2, 8, 8, 2, 2, 0}, Case{2, 2, 7, 5, 3, 1, 1},
                   Case{1, 1, 6, 6, 3, 3, 0}, Case{2, 4, 13, 11, 5, 2, 2}}) {
        for (bool ties : {false, true}) {
            CAPTURE(c.K); CAPTURE(c.S); CAPTURE(c.P); CAPTURE(ties);
            PoolDims d = pool_dims(c.N, c.C, c.H, c.W, c.K, c.S, c.P);
            const int64_t in_n = (int64_t)d.N * d.C * d.H * d.W, out_n = (int64_t)d.N * d.C * d.OH * d.OW;
            std::vector<float> x = randv(in_n, r);
            if (ties)  // few distinct values, negative ones too: many ties, and padding must not win
                for (auto& v : x) v = std::floor(v * 1.5f);
            Twin t;
            t.add("x", x);
            t.add("out", nanv(out_n));
            t.add("argmax", nanv(out_n));
            on_both(t, [&](const KernelTable& K, const Ptr& p) {
                K.maxpool_forward(p("out"), (int32_t*)p("argmax"), p("x"), d);
            });
            t.expect("out", ELEMENTWISE, "maxpool_forward");
            t.expect_ints("argmax", "maxpool_forward argmax");

            t.add("am", t.cpu["argmax"]);  // the same argmax on both sides
            t.add("dout", randv(out_n, r));
            t.add("dx", randv(in_n, r));
            t.add("gathered", nanv(out_n));
            on_both(t, [&](const KernelTable& K, const Ptr& p) {
                K.maxpool_backward(p("dx"), p("dout"), (const int32_t*)p("am"), d);
                K.maxpool_gather(p("gathered"), (const int32_t*)p("am"), p("x"), d);
            });
            t.expect("dx", ELEMENTWISE, "maxpool_backward");
            t.expect("gathered", ELEMENTWISE, "maxpool_gather");
        }
    }
}

TEST_CASE("cuda: chan_copy copies and accumulates channel blocks like the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(17);
    const int N = 3, SC = 7, DC = 9, C = 4, sc0 = 2, dc0 = 3;
    const int64_t HW = 37;
    for (bool acc : {false, true}) {
        CAPTURE(acc);
        Twin t;
        t.add("src", randv(N * SC * HW, r));
        t.add("dst", randv(N * DC * HW, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.chan_copy(p("dst"), DC, dc0, p("src"), SC, sc0, C, N, HW, acc);
        });
        t.expect("dst", ELEMENTWISE, "chan_copy");
    }
}

TEST_CASE("cuda: bilinear resize forward and backward, up and down, match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    struct Case { int NC, H, W, OH, OW; };
    Rng r(18);
    for (Case c : {Case{3, 5, 7, 9, 13}, Case{2, 9, 13, 4, 5}, Case{2, 1, 6, 3, 4}, Case{1, 4, 4, 1, 1},
                   Case{2, 6, 6, 6, 6}, Case{1, 16, 16, 64, 64}, Case{1, 64, 48, 7, 5}, Case{2, 7, 3, 29, 2}}) {
        CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.OH); CAPTURE(c.OW);
        const int64_t in_n = (int64_t)c.NC * c.H * c.W, out_n = (int64_t)c.NC * c.OH * c.OW;
        Twin t;
        t.add("x", randv(in_n, r));
        t.add("out", nanv(out_n));
        t.add("dout", randv(out_n, r));
        t.add("dx", randv(in_n, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.resize_forward(p("out"), p("x"), c.NC, c.H, c.W, c.OH, c.OW);
            K.resize_backward(p("dx"), p("dout"), c.NC, c.H, c.W, c.OH, c.OW);
        });
        t.expect("out", ELEMENTWISE, "resize_forward");
        t.expect("dx", ELEMENTWISE, "resize_backward");
    }
}

// ---- reductions and losses -----------------------------------------------------------------------

TEST_CASE("cuda: sum and mse forward (device scalars) and backward match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(19);
    for (int64_t n : {1, 1000, 3000001}) {
        CAPTURE(n);
        Twin t;
        t.add("a", randv(n, r));
        t.add("b", randv(n, r));
        t.add("sum", nanv(1));
        t.add("mse", nanv(1));
        t.add("dout", {1.7f});
        t.add("da_sum", randv(n, r));
        t.add("da", randv(n, r));
        t.add("db", randv(n, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.sum(p("sum"), p("a"), n, 0.37f);
            K.mse_forward(p("mse"), p("a"), p("b"), n);
            K.sum_backward(p("da_sum"), p("dout"), n, 0.37f);
            K.mse_backward(p("da"), p("db"), p("dout"), p("a"), p("b"), n);
            K.mse_backward(p("da"), nullptr, p("dout"), p("a"), p("b"), n);
        });
        t.expect("sum", SCALAR, "sum");
        t.expect("mse", SCALAR, "mse_forward");
        t.expect("da_sum", ELEMENTWISE, "sum_backward");
        t.expect("da", ELEMENTWISE, "mse_backward");
        t.expect("db", ELEMENTWISE, "mse_backward");
    }
}

TEST_CASE("cuda: softmax cross-entropy forward and backward match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(20);
    for (int N : {1, 7, 300})
        for (int K : {1, 5, 1000}) {
            CAPTURE(N); CAPTURE(K);
            std::vector<float> labels((size_t)N);
            for (auto& y : labels) y = (float)r.randint(K);
            Twin t;
            t.add("logits", randv((int64_t)N * K, r, 3.f));
            t.add("labels", labels);
            t.add("probs", nanv((int64_t)N * K));
            t.add("loss", nanv(1));
            t.add("dout", {0.8f});
            t.add("dlogits", randv((int64_t)N * K, r));
            on_both(t, [&](const KernelTable& Kt, const Ptr& p) {
                Kt.xent_forward(p("loss"), p("probs"), p("logits"), p("labels"), N, K);
            });
            t.expect("loss", SCALAR, "xent_forward");
            t.expect("probs", ELEMENTWISE, "xent_forward");
            t.add("p", t.cpu["probs"]);  // the same probabilities on both sides
            on_both(t, [&](const KernelTable& Kt, const Ptr& p) {
                Kt.xent_backward(p("dlogits"), p("dout"), p("p"), p("labels"), N, K);
            });
            t.expect("dlogits", ELEMENTWISE, "xent_backward");
        }
}

// ---- optimisers ----------------------------------------------------------------------------------

TEST_CASE("cuda: sgd and adam updates match the CPU over several steps") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(21);
    const int64_t n = 10007;
    Twin t;
    t.add("p_sgd", randv(n, r));
    t.add("mom", randv(n, r, 0.1f));
    t.add("p_adam", randv(n, r));
    t.add("m", randv(n, r, 0.1f));
    t.add("v", std::vector<float>((size_t)n, 0.01f));
    for (int step = 1; step <= 3; step++) {
        t.add("g", randv(n, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.sgd_update(p("p_sgd"), p("g"), p("mom"), n, 0.05f, 0.9f, 1e-3f);
            K.adam_update(p("p_adam"), p("g"), p("m"), p("v"), n, 1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, step);
        });
    }
    for (const char* k : {"p_sgd", "mom", "p_adam", "m", "v"}) t.expect(k, ELEMENTWISE, "optimiser");
}

// ---- per-channel scale and fused cells -----------------------------------------------------------

TEST_CASE("cuda: chan_scale forward and backward match the CPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(22);
    const int N = 3, C = 5;
    const int64_t P = 41, n = N * C * P;
    Twin t;
    t.add("x", randv(n, r));
    t.add("a", randv(C, r));
    t.add("out", nanv(n));
    t.add("dout", randv(n, r));
    t.add("dx", randv(n, r));
    t.add("da", randv(C, r));
    on_both(t, [&](const KernelTable& K, const Ptr& p) {
        K.chan_scale_forward(p("out"), p("x"), p("a"), N, C, P);
        K.chan_scale_backward(p("dx"), p("da"), p("dout"), p("x"), p("a"), N, C, P);
    });
    t.expect("out", ELEMENTWISE, "chan_scale_forward");
    t.expect("dx", ELEMENTWISE, "chan_scale_backward");
    t.expect("da", REDUCTION, "chan_scale_backward");
}

TEST_CASE("cuda: fused lstm, gru, ugrnn and rgc cells match the CPU, with and without previous state") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(23);
    const int N = 2, C = 3;
    const int64_t P = 29, n = N * C * P;
    for (bool prev : {true, false}) {
        CAPTURE(prev);
        Twin t;
        t.add("G4", randv(4 * n, r, 1.5f));
        t.add("G2", randv(2 * n, r, 1.5f));
        t.add("B2", randv(2 * n, r, 1.5f));
        t.add("Gc", randv(n, r, 1.5f));
        t.add("X", randv(n, r));
        t.add("x", randv(n, r));
        if (prev) {
            t.add("c_prev", randv(n, r));
            t.add("h_prev", randv(n, r));
        }
        for (const char* k : {"c", "h", "rh", "h_gru", "h_ug", "c_rgc", "h_rgc"}) t.add(k, nanv(n));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.lstm_forward(p("c"), p("h"), p("G4"), p("c_prev"), N, C, P);
            K.gru_gates_forward(p("rh"), p("G2"), p("h_prev"), N, C, P);
            K.gru_update_forward(p("h_gru"), p("G2"), p("Gc"), p("h_prev"), N, C, P);
            K.ugrnn_forward(p("h_ug"), p("G2"), p("h_prev"), N, C, P);
            K.rgc_gates_forward(p("c_rgc"), p("h_rgc"), p("G2"), p("B2"), p("X"), p("x"), p("c_prev"), p("h_prev"), N, C, P);
        });
        for (const char* k : {"c", "h", "rh", "h_gru", "h_ug", "c_rgc", "h_rgc"})
            t.expect(k, ELEMENTWISE, "cell forward");

        // backward from the CPU's forward states, with seeded gradients
        for (const char* k : {"c", "h"}) t.add(std::string("s_") + k, t.cpu[k]);
        for (const char* k : {"dc", "dh", "drh"}) t.add(k, randv(n, r));
        t.add("dG4", randv(4 * n, r));
        for (const char* k : {"dG1_gates", "dG1_upd", "dG_ug", "dA", "dB"}) t.add(k, randv(2 * n, r));
        for (const char* k : {"dGc", "dXc", "dx"}) t.add(k, randv(n, r));
        if (prev)
            for (const char* k : {"dc_prev", "dh_gates", "dh_upd", "dh_ug", "dc_rgc", "dh_rgc"}) t.add(k, randv(n, r));
        on_both(t, [&](const KernelTable& K, const Ptr& p) {
            K.lstm_backward(p("dG4"), p("dc_prev"), p("dc"), p("dh"), p("G4"), p("c_prev"), p("s_c"), N, C, P);
            K.gru_gates_backward(p("dG1_gates"), p("dh_gates"), p("drh"), p("G2"), p("h_prev"), N, C, P);
            K.gru_update_backward(p("dG1_upd"), p("dGc"), p("dh_upd"), p("dh"), p("G2"), p("Gc"), p("h_prev"), N, C, P);
            K.ugrnn_backward(p("dG_ug"), p("dh_ug"), p("dh"), p("G2"), p("h_prev"), N, C, P);
            K.rgc_gates_backward(p("dA"), p("dB"), p("dXc"), p("dx"), p("dc_rgc"), p("dh_rgc"), p("dc"), p("dh"),
                                 p("G2"), p("B2"), p("X"), p("x"), p("c_prev"), p("h_prev"), N, C, P);
            // a null gradient is skipped: only dc_prev wanted
            K.lstm_backward(nullptr, p("dc_prev"), p("dc"), p("dh"), p("G4"), p("c_prev"), p("s_c"), N, C, P);
        });
        for (const char* k : {"dG4", "dG1_gates", "dG1_upd", "dGc", "dG_ug", "dA", "dB", "dXc", "dx"})
            t.expect(k, ELEMENTWISE, "cell backward");
        if (prev)
            for (const char* k : {"dc_prev", "dh_gates", "dh_upd", "dh_ug", "dc_rgc", "dh_rgc"})
                t.expect(k, ELEMENTWISE, "cell backward");
    }
}

// ---- a whole graph through the engine --------------------------------------------------------------

namespace {

struct Graph {
    Tensor x, w1, b1, w2, b2, target, loss;
    Tape tape;
};

Tensor make(const Shape& s, const std::vector<float>& v, Device dev, bool grad) {
    Tensor t = tensor_empty(s, dev, grad);
    backend_copy_from_host(dev, t.data(), v.data(), t.numel());
    return t;
}

std::vector<float> grad_host(const Tensor& t) {
    std::vector<float> v((size_t)t.numel());
    backend_copy_to_host(t.device(), v.data(), t.grad(), t.numel());
    return v;
}

// conv 3x3 (pad 1) -> elu -> maxpool 3/2 (pad 1) -> flatten -> linear -> mse, on `dev`, from
// the same host values on every device.
void build(Graph& g, Device dev, uint64_t seed) {
    Rng r(seed);
    g.x = make({2, 3, 12, 12}, randv(2 * 3 * 12 * 12, r), dev, true);
    g.w1 = make({4, 3, 3, 3}, randv(4 * 3 * 3 * 3, r, 0.4f), dev, true);
    g.b1 = make({4}, randv(4, r, 0.1f), dev, true);
    g.w2 = make({5, 4 * 6 * 6}, randv(5 * 144, r, 0.1f), dev, true);
    g.b2 = make({5}, randv(5, r, 0.1f), dev, true);
    g.target = make({2, 5}, randv(10, r), dev, false);
    TapeScope scope(g.tape);
    Tensor h = maxpool2d(elu(conv2d(g.x, g.w1, g.b1, 1, 1)), 3, 2, 1);
    g.loss = mse_loss(linear(h.flatten(), g.w2, g.b2), g.target);
}

void expect_same_grads(Graph& gpu, Graph& cpu, const std::string& when) {
    expect_close(gpu.loss.to_vector(), cpu.loss.to_vector(), SCALAR, when + ": loss");
    const char* names[] = {"x", "w1", "b1", "w2", "b2"};
    Tensor Graph::*fields[] = {&Graph::x, &Graph::w1, &Graph::b1, &Graph::w2, &Graph::b2};
    for (int i = 0; i < 5; i++)
        expect_close(grad_host(gpu.*fields[i]), grad_host(cpu.*fields[i]), REDUCTION, when + ": d" + names[i]);
}

}  // namespace

TEST_CASE("cuda: a conv-elu-maxpool-linear-mse graph on the GPU gives the CPU's loss and gradients") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Graph cpu, gpu;
    build(cpu, Device::CPU, 31);
    build(gpu, Device::CUDA, 31);
    REQUIRE(gpu.loss.device() == Device::CUDA);
    cpu.tape.backward(cpu.loss);
    gpu.tape.backward(gpu.loss);
    expect_same_grads(gpu, cpu, "first pass");

    // Replay: forward again on the same buffers, backward again; leaf gradients accumulate.
    // In steady state the caching allocator serves every request from its free lists.
#ifdef VT_CUDA
    int64_t mallocs = cuda_mem_stats().mallocs;
#endif
    for (Graph* g : {&cpu, &gpu}) {
        g->tape.forward();
        g->tape.backward(g->loss);
    }
    expect_same_grads(gpu, cpu, "replayed, accumulated");
#ifdef VT_CUDA
    CHECK(cuda_mem_stats().mallocs == mallocs);
#endif
}

#ifdef VT_CUDA
TEST_CASE("cuda: the caching allocator reuses freed blocks of the same size class") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    float* a = cuda_cached_alloc(1000);
    cuda_cached_free(a);
    int64_t mallocs = cuda_mem_stats().mallocs;
    float* b = cuda_cached_alloc(990);  // same 512-byte class as 1000 floats
    CHECK(b == a);
    CHECK(cuda_mem_stats().mallocs == mallocs);
    CudaMemStats s = cuda_mem_stats();
    CHECK(s.live_bytes >= 990 * 4);
    cuda_cached_free(b);
    CHECK(cuda_mem_stats().live_bytes == s.live_bytes - 4096);
}
#endif

// ---- pinned staging buffers and device synchronisation -------------------------------------------

TEST_CASE("cuda: pinned host buffers work in every build (page-locked only with a GPU)") {
    float* p = backend_host_alloc_pinned(1000);
    REQUIRE(p != nullptr);
    CHECK((uintptr_t)p % 64 == 0);
    CHECK(backend_host_is_pinned(p) == cuda_available());
    for (int i = 0; i < 1000; i++) p[i] = (float)i;
    std::vector<float> back(1000);
    backend_copy_to_host(Device::CPU, back.data(), p, 1000);
    CHECK(back[999] == 999.f);
    backend_host_free_pinned(p);
    float* z = backend_host_alloc_pinned(0);  // a valid, freeable pointer
    CHECK(z != nullptr);
    backend_host_free_pinned(z);
    backend_host_free_pinned(nullptr);
    CHECK_FALSE(backend_host_is_pinned(nullptr));

    PinnedBuffer a(16);
    float* ad = a.data();
    a.data()[3] = 7.f;
    PinnedBuffer b = std::move(a);  // ownership moves, nothing is freed twice
    CHECK(a.data() == nullptr);
    CHECK(b.data() == ad);
    CHECK(b.size() == 16);
    CHECK(b.data()[3] == 7.f);
    b = PinnedBuffer(8);
    CHECK(b.size() == 8);
}

TEST_CASE("cuda: backend_synchronize is a no-op on the CPU and needs a device for CUDA") {
    backend_synchronize(Device::CPU);
    if (cuda_available()) {
        backend_synchronize(Device::CUDA);
        CHECK(std::string(backend_device_name(Device::CUDA)).size() > 0);
    } else {
        CHECK(vt_test::has(vt_test::error_of([] { backend_synchronize(Device::CUDA); }), "--device cuda"));
    }
    CHECK(std::string(backend_device_name(Device::CPU)) == "cpu");
    CHECK(vt_test::has(vt_test::error_of([] { backend_graph_capture_begin(Device::CPU); }), "CUDA feature"));
    backend_graph_capture_abort(Device::CPU);  // nothing to abort: no-op
    backend_graph_destroy(nullptr);
}

TEST_CASE("cuda: a pinned buffer round-trips through the GPU") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    const int64_t n = 3 * 64 * 64 * 16 + 5;
    PinnedBuffer up(n), down(n);
    CHECK(backend_host_is_pinned(up.data()));
    Rng r(5);
    for (int64_t i = 0; i < n; i++) up.data()[i] = r.normal();
    Tensor t = tensor_empty({n}, Device::CUDA);
    backend_copy_from_host(Device::CUDA, t.data(), up.data(), n);
    Tensor t2 = tensor_empty({n}, Device::CUDA);
    tensor_copy(t2, t);  // device -> device
    std::fill(down.data(), down.data() + n, NAN);
    backend_copy_to_host(Device::CUDA, down.data(), t2.data(), n);
    CHECK(std::memcmp(up.data(), down.data(), (size_t)n * sizeof(float)) == 0);
}

// ---- the --device flag and the tools without a GPU ----------------------------------------------

TEST_CASE("cuda: parse_device accepts cpu and cuda and refuses the rest with one line") {
    CHECK(parse_device("cpu") == Device::CPU);
    CHECK(vt_test::error_of([] { parse_device("tpu"); }) == "--device: expected cpu or cuda, got 'tpu'");
    CHECK(vt_test::has(vt_test::error_of([] { parse_device(""); }), "expected cpu or cuda"));
    if (cuda_available()) {
        CHECK(parse_device("cuda") == Device::CUDA);
    } else {
        CHECK(vt_test::error_of([] { parse_device("cuda"); }) ==
              "--device cuda: no usable CUDA device (built without CUDA=1, or no GPU visible); use --device cpu");
    }
    // through the flag table: parsed as it is given, "cpu" by default
    Device d = Device::CPU;
    Cli cli("t", "", "");
    cli.flag("--device", &d, "cpu or cuda");
    CHECK(cli.flags[0].def == "cpu");
    char a0[] = "t", a1[] = "--device=cpu";
    char* argv[] = {a0, a1};
    cli.parse(2, argv);
    CHECK(d == Device::CPU);
    char b1[] = "--device", b2[] = "gpu";
    char* argv2[] = {a0, b1, b2};
    CHECK(vt_test::has(vt_test::error_of([&] { cli.parse(3, argv2); }), "got 'gpu'"));
}

namespace {

// bin/<tool> of the source tree, as tests/test_tools.cpp runs them. (The CUDA check builds
// only its tests; without a device in this process there is none for the tools either.)
using ToolRun = vt_test::ShellRun;
using vt_test::count_lines;
ToolRun run_tool_cmd(const std::string& tool, const std::string& args) { return vt_test::run_tool(tool, args); }

}  // namespace

namespace {

// Each (arguments, what the error says) run as `tool ARGS REST` ends in exit 1 and one line
// saying it; `tool --help` names `flag`. A tool not built is skipped with a message.
struct Refusal {
    std::string args, says;
};

// Every tool that takes --device (and --precision), with the other input it requires, so that
// the flag under test is what it stops at.
const std::pair<const char*, const char*> kToolsWithDevice[] = {
    {"pretrain", "/nonexistent_dir"},
    {"select_layers", "--data /nonexistent.npz --out /tmp/unused"},
    {"score", "--features /nonexistent.npz --data /nonexistent.npz --out /tmp/unused"},
    {"bench", "--workload conv"},
    {"features", "--checkpoint /nonexistent.npz --images /nonexistent --out /tmp/unused"},
    {"lesion", "/nonexistent_run"},
    {"fit_dynamics", "--data /nonexistent.npz"},
};

void expect_tool_refusals(const char* tool, const std::string& rest, const std::string& flag,
                          const std::vector<Refusal>& cases) {
    INFO(tool);
    if (access(vt_test::tool_path(tool).c_str(), X_OK) != 0) {
        MESSAGE(vt_test::tool_path(tool) << " not built: skipped");
        return;
    }
    for (const Refusal& c : cases) {
        ToolRun r = run_tool_cmd(tool, c.args + " " + rest);
        INFO(c.args << ": " << r.out);
        CHECK(r.rc == 1);
        CHECK(vt_test::has(r.out, c.says));
        CHECK(count_lines(r.out) == 1);
    }
    ToolRun h = run_tool_cmd(tool, "--help");
    CHECK(h.rc == 0);
    CHECK(vt_test::has(h.out, flag));
}

}  // namespace

TEST_CASE("cuda: every tool's --device cuda gives one clear line without a GPU, and --device is checked") {
    if (cuda_available()) { MESSAGE("a CUDA device is present: this test is for machines without one"); return; }
    for (const auto& [tool, rest] : kToolsWithDevice)
        expect_tool_refusals(tool, rest, "--device",
                             {{"--device cuda", "error: --device cuda: no usable CUDA device (built without CUDA=1, or "
                                                "no GPU visible); use --device cpu\n"},
                              {"--device tpu", "--device: expected cpu or cuda, got 'tpu'"}});
}

TEST_CASE("precision: fp32/tf32/bf16 by name; the CPU is fp32 only; every tool refuses tf32/bf16 there in one line") {
    CHECK(precision_parse("fp32") == Precision::FP32);
    CHECK(precision_parse("tf32") == Precision::TF32);
    CHECK(precision_parse("bf16") == Precision::BF16);
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16})
        CHECK(precision_parse(precision_name(p)) == p);
    CHECK(vt_test::error_of([] { precision_parse("fp16"); }) == "--precision: expected fp32, tf32 or bf16, got 'fp16'");
    CHECK(backend_precision(Device::CPU) == Precision::FP32);
    backend_set_precision(Device::CPU, Precision::FP32);  // accepted: nothing to set
    CHECK(vt_test::error_of([] { backend_set_precision(Device::CPU, Precision::BF16); }) ==
          "--precision bf16: the CPU computes in fp32 only; tf32 and bf16 are GPU precisions (--device cuda)");
    for (const auto& [tool, rest] : kToolsWithDevice)
        expect_tool_refusals(tool, rest, "--precision",
                             {{"--precision tf32", "--precision tf32: the CPU computes in fp32 only"},
                              {"--precision fp16", "--precision: expected fp32, tf32 or bf16, got 'fp16'"}});
}

// ---- a whole unrolled model on the GPU ---------------------------------------------------------

namespace {

constexpr Tol MODEL{1e-4, 1e-3, 1e-4};

// expect_close with atol scaled by the reference's largest |value| (MODEL, see the top).
void expect_close_scaled(const std::vector<float>& got, const std::vector<float>& ref, Tol tol,
                         const std::string& what) {
    double scale = 0;
    for (float v : ref) scale = std::max(scale, (double)std::fabs(v));
    Tol t = tol;
    t.atol = tol.atol * (scale > 0 ? scale : 1.0);
    expect_close(got, ref, t, what + " (atol " + std::to_string(t.atol) + ")");
}

// tiny3 with lstm cells at every layer and conv3 -> conv1 feedback, unrolled 6 steps (image for
// 3) at batch 2, every parameter randomised (feedback convs too, which start at zero), and a
// loss over every output of every step: the same host values on any device.
struct ModelRun {
    std::unique_ptr<Model> m;
    Unrolled u;
    Tensor image, target, loss;
};

std::vector<float> host_grad(const Tensor& t) {
    std::vector<float> v((size_t)t.numel());
    backend_copy_to_host(t.device(), v.data(), t.grad(), t.numel());
    return v;
}

float host_scalar(const Tensor& t) {
    float v = 0;
    backend_copy_to_host(t.device(), &v, t.data(), 1);
    return v;
}

void build_model_run(ModelRun& r, Device dev, uint64_t seed = 7, int truncate = 0) {
    ModelConfig cfg;
    cfg.arch = "tiny3";
    BackboneSpec b = backbone_spec("tiny3");
    cfg.motifs.assign(b.layers.size(), Motif::LSTM);
    cfg.feedback = feedback_parse("conv3:conv1", b);
    r.m = std::make_unique<Model>(cfg, 1, dev);
    Rng rng(seed);
    for (auto& e : r.m->params.entries) {
        int64_t fan_in = e.shape.size() > 1 ? shape_numel(e.shape) / e.shape[0] : 0;
        std::vector<float> v = randv(e.view.numel(), rng, fan_in ? 1.f / std::sqrt((float)fan_in) : 0.3f);
        backend_copy_from_host(dev, e.view.data(), v.data(), e.view.numel());
    }
    const int N = 2, S = b.in_size;
    r.image = make({N, 3, S, S}, randv(N * 3 * S * S, rng), dev, true);
    UnrollConfig uc;
    uc.steps = 6;
    uc.image_steps = 3;
    uc.batch = N;
    uc.truncate = truncate;
    unroll_build(r.u, *r.m, uc, /*record=*/true, r.image);
    TapeScope scope(r.u.tape);
    ArenaScope arena(r.u.arena);
    std::vector<Tensor> parts;
    for (const auto& step : r.u.out)
        for (const Tensor& o : step)
            if (o.defined()) parts.push_back(o.flatten());
    Tensor all = concat_channels(parts);
    r.target = make(all.shape, randv(all.numel(), rng, 0.5f), dev, false);
    r.loss = mse_loss(all, r.target);
}

void zero_grads(ModelRun& r) {
    r.m->params.zero_grad();
    grad_zero(r.image);
}

struct Grads {
    float loss = 0;
    std::vector<float> params, image;
};

Grads grads_of(const ModelRun& r) {
    return {host_scalar(r.loss), r.m->params.grad.to_vector(), host_grad(r.image)};  // params.grad holds the gradients as data
}

// expect_grads without the loss (compared by the caller at its own tolerance).
void expect_grads_at(const ModelRun& run, const Grads& got, const Grads& ref, Tol tol, const std::string& when) {
    for (const auto& e : run.m->params.entries) {
        if (!e.trainable) continue;
        std::vector<float> g(got.params.begin() + e.offset, got.params.begin() + e.offset + e.view.numel());
        std::vector<float> c(ref.params.begin() + e.offset, ref.params.begin() + e.offset + e.view.numel());
        expect_close_scaled(g, c, tol, when + ": d" + e.name);
    }
    expect_close_scaled(got.image, ref.image, tol, when + ": dimage");
}

// The arena's gradient entry by entry (names in the messages), and the image's.
void expect_grads(const ModelRun& run, const Grads& got, const Grads& ref, Tol tol, const std::string& when) {
    expect_close({got.loss}, {ref.loss}, SCALAR, when + ": loss");
    expect_grads_at(run, got, ref, tol, when);
}

}  // namespace

TEST_CASE("cuda: the whole-model reference (CPU) has a gradient in every parameter") {
    // What the GPU comparison below compares: not vacuous, on every build.
    ModelRun cpu;
    build_model_run(cpu, Device::CPU);
    zero_grads(cpu);
    cpu.u.tape.backward(cpu.loss);
    Grads g = grads_of(cpu);
    CHECK(std::isfinite(g.loss));
    CHECK(g.loss > 0);
    for (const auto& e : cpu.m->params.entries) {
        double m = 0;
        for (int64_t i = 0; i < e.view.numel(); i++) m = std::max(m, (double)std::fabs(g.params[e.offset + i]));
        INFO(e.name);
        CHECK(std::isfinite(m));
        CHECK(m > 0);
    }
}

TEST_CASE("cuda: whole-model gradients (tiny3, lstm, conv3:conv1 feedback, 6 steps) on the GPU equal the CPU's") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    ModelRun cpu, gpu;
    build_model_run(cpu, Device::CPU);
    build_model_run(gpu, Device::CUDA);
    REQUIRE(gpu.loss.device() == Device::CUDA);
    REQUIRE(gpu.m->params.device == Device::CUDA);
    for (ModelRun* r : {&cpu, &gpu}) {
        zero_grads(*r);
        r->u.tape.backward(r->loss);
    }
    expect_grads(gpu, grads_of(gpu), grads_of(cpu), MODEL, "first pass");
    // replayed on a new image (copied into the recorded input), gradients zeroed in between
    Rng rng(99);
    std::vector<float> img = randv(cpu.image.numel(), rng);
    for (ModelRun* r : {&cpu, &gpu}) {
        backend_copy_from_host(r->image.device(), r->image.data(), img.data(), r->image.numel());
        zero_grads(*r);
        r->u.tape.forward();
        r->u.tape.backward(r->loss);
    }
    expect_grads(gpu, grads_of(gpu), grads_of(cpu), MODEL, "replayed on a new image");
}

TEST_CASE("cuda: whole-model gradients at tf32 and bf16 stay within the precision's rounding of the FP32 CPU's") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
#ifdef VT_CUDA
    ConvPathScope path(ConvPath::Im2col);
    ModelRun cpu;
    build_model_run(cpu, Device::CPU);
    zero_grads(cpu);
    cpu.u.tape.backward(cpu.loss);
    const Grads ref = grads_of(cpu);
    for (Precision prec : {Precision::TF32, Precision::BF16}) {
        CAPTURE(precision_name(prec));
        PrecisionScopeCuda scope(prec);
        ModelRun gpu;
        build_model_run(gpu, Device::CUDA);
        zero_grads(gpu);
        gpu.u.tape.backward(gpu.loss);
        const Grads got = grads_of(gpu);
        // MODEL's chain of ~20 rounding steps, each now off by ~u (precision_tol): 32u, relative
        const double u = prec == Precision::TF32 ? 0x1p-11 : 0x1p-8;
        CHECK(std::fabs(got.loss - ref.loss) <= 32 * u * std::fabs(ref.loss));
        expect_grads_at(gpu, got, ref, Tol{32 * u, 0, 32 * u}, precision_name(prec));
    }
#endif
}

// ---- TapeGraph: one iteration replayed as a CUDA Graph ------------------------------------------

TEST_CASE("cuda: TapeGraph on the CPU is plain forward + backward") {
    ModelRun a, b;
    build_model_run(a, Device::CPU);
    build_model_run(b, Device::CPU);
    TapeGraph g(b.u.tape, b.loss);
    CHECK(g.device() == Device::CPU);
    for (int it = 0; it < 3; it++) {
        zero_grads(a);
        a.u.tape.forward();
        a.u.tape.backward(a.loss);
        zero_grads(b);
        g.run();
        expect_grads(b, grads_of(b), grads_of(a), REDUCTION, "TapeGraph run " + std::to_string(it + 1));
    }
    CHECK_FALSE(g.captured());
    CHECK(g.launches() == 0);
    CHECK(g.fallback_reason().empty());
    // forward only: the loss is computed, no gradient is touched
    TapeGraph fwd(b.u.tape, Tensor());
    zero_grads(b);
    fwd.run();
    expect_close({host_scalar(b.loss)}, {grads_of(a).loss}, SCALAR, "forward-only TapeGraph");
    std::vector<float> untouched = grads_of(b).params;
    CHECK(std::count(untouched.begin(), untouched.end(), 0.f) == (long)untouched.size());
}

TEST_CASE("cuda: TapeGraph replay on the GPU equals plain forward + backward, on new inputs too") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    ModelRun r;
    build_model_run(r, Device::CUDA);
    auto plain = [&] {
        zero_grads(r);
        r.u.tape.forward();
        r.u.tape.backward(r.loss);
        return grads_of(r);
    };
    Grads ref = plain();
    TapeGraph g(r.u.tape, r.loss);
    REQUIRE(g.device() == Device::CUDA);
#ifdef VT_CUDA
    int64_t mallocs = 0;
#endif
    for (int it = 0; it < 5; it++) {  // warm-up, capture + launch, then launches
        zero_grads(r);
        g.run();
        INFO("run " << it + 1 << "; fallback: " << g.fallback_reason());
        expect_grads(r, grads_of(r), ref, REDUCTION, "graph run " + std::to_string(it + 1));
#ifdef VT_CUDA
        if (it == 1) mallocs = cuda_mem_stats().mallocs;
        if (it > 1) CHECK(cuda_mem_stats().mallocs == mallocs);  // replays allocate nothing
#endif
    }
    CHECK(g.fallback_reason().empty());
    CHECK(g.captured());
    CHECK(g.launches() == 4);
    // The graph reads the recorded buffers as they are at launch: a new image copied in.
    Rng rng(123);
    std::vector<float> img = randv(r.image.numel(), rng);
    backend_copy_from_host(Device::CUDA, r.image.data(), img.data(), r.image.numel());
    zero_grads(r);
    g.run();
    Grads replayed = grads_of(r);
    Grads fresh = plain();
    CHECK(replayed.loss != ref.loss);
    expect_grads(r, replayed, fresh, REDUCTION, "graph on a new image");
    CHECK(g.launches() == 5);
    // forward-only graphs
    TapeGraph fwd(r.u.tape, Tensor());
    for (int it = 0; it < 3; it++) {
        fwd.run();
        expect_close({host_scalar(r.loss)}, {fresh.loss}, SCALAR, "forward-only graph");
    }
    CHECK(fwd.captured());
    // invalidate(): warm-up and capture again, same results
    g.invalidate();
    CHECK_FALSE(g.captured());
    for (int it = 0; it < 3; it++) {
        zero_grads(r);
        g.run();
    }
    CHECK(g.captured());
    expect_grads(r, grads_of(r), fresh, REDUCTION, "graph after invalidate()");
}

TEST_CASE("cuda: truncated BPTT on the GPU, captured, equals the CPU's; invalidate() after switching the cuts") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    ModelRun cpu, gpu;  // 6 steps cut every 2: between steps 2|3 and 4|5
    build_model_run(cpu, Device::CPU, 7, 2);
    build_model_run(gpu, Device::CUDA, 7, 2);
    TapeGraph g(gpu.u.tape, gpu.loss);
    REQUIRE(g.device() == Device::CUDA);
    for (bool cut : {true, false, true}) {
        *cpu.u.cut = *gpu.u.cut = cut;
        g.invalidate();  // the graph bakes the switch in at capture
        zero_grads(cpu);
        cpu.u.tape.forward();
        cpu.u.tape.backward(cpu.loss);
        const Grads ref = grads_of(cpu);
        for (int it = 0; it < 3; it++) {  // warm-up, capture + launch, launch
            zero_grads(gpu);
            g.run();
            expect_grads(gpu, grads_of(gpu), ref, MODEL, std::string(cut ? "cut" : "open") + ", graph run " +
                                                              std::to_string(it + 1));
        }
        CHECK(g.captured());
    }
}

TEST_CASE("cuda: TapeGraph falls back to plain runs when an op cannot be captured (dropout's host mask)") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    Rng r(4);
    Tensor x = make({4, 16}, randv(64, r), Device::CUDA, true);
    Tape tape;
    Tensor loss;
    {
        TapeScope scope(tape);
        loss = sum(dropout(x, 0.5f, 11, true));
    }
    TapeGraph g(tape, loss);
    for (int it = 0; it < 3; it++) {
        grad_zero(x);
        g.run();
        CHECK(std::isfinite(host_scalar(loss)));
    }
    CHECK_FALSE(g.captured());
    INFO(g.fallback_reason());
    CHECK(vt_test::has(g.fallback_reason(), "dropout"));
    CHECK(vt_test::has(g.fallback_reason(), "host->device copy"));
    // the stream is usable afterwards: a capturable tape still captures
    ModelRun m;
    build_model_run(m, Device::CUDA);
    TapeGraph g2(m.u.tape, m.loss);
    for (int it = 0; it < 3; it++) {
        zero_grads(m);
        g2.run();
    }
    CHECK(g2.captured());
}

// ---- features and pretraining pieces on the GPU --------------------------------------------------

TEST_CASE("cuda: backbone_features on the GPU equal the CPU's") {
    if (!vt::cuda_available()) { MESSAGE("no CUDA device: skipped"); return; }
    ModelConfig cfg;
    cfg.arch = "tiny3";
    Model m(cfg, 3);  // on the CPU: backbone_features copies it to the GPU
    const int64_t N = 5;
    const int H = 11, W = 9;
    std::vector<uint8_t> images((size_t)N * H * W * 3);
    Rng r(8);
    for (auto& v : images) v = (uint8_t)r.randint(256);
    auto cpu = backbone_features(m, images.data(), N, H, W, 2);
    auto gpu = backbone_features(m, images.data(), N, H, W, 2, nullptr, Device::CUDA);
    REQUIRE(cpu.size() == gpu.size());
    for (size_t l = 0; l < cpu.size(); l++) expect_close(gpu[l], cpu[l], REDUCTION, "features of layer " + std::to_string(l));
    Model mg(cfg, 3, Device::CUDA);  // a model already on the GPU is used as it is
    backend_copy_from_host(Device::CUDA, mg.params.data.data(), m.params.data.data(), m.params.numel());
    auto gpu2 = backbone_features(mg, images.data(), N, H, W, 3, nullptr, Device::CUDA);
    for (size_t l = 0; l < cpu.size(); l++) expect_close(gpu2[l], cpu[l], REDUCTION, "features (GPU model)");
}
