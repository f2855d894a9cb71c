// cudnn.cu: convolution through cuDNN (CUDNN=1 builds, selected by cuda_set_conv_path or
// VT_CONV=cudnn); the same contract as conv2d_forward/backward in conv.cu.
//
// Backward receives the input (kernels.h), which is what cuDNN's backward-filter needs, so
// every shape can take this path. Forward and backward of one convolution must take the
// same path: switch paths only between graphs.
//
// Numerics: at fp32 precision FP32 FMA math (no TF32), so cuDNN and im2col compute the same
// function to float rounding; at tf32 cuDNN's default math (TF32 tensor cores allowed); bf16
// is not offered here (its operand rounding is the im2col path's). Algorithms come from
// cuDNN's heuristics (the _v7 queries), preferring deterministic ones, within the scratch the
// engine passes (d.scratch_size() floats) as workspace. Backward accumulates (beta = 1), as
// every backward kernel does. Descriptors and algorithm choices are cached per shape and
// precision.
#ifdef VT_CUDNN
#include <cudnn.h>

#include <array>
#include <map>
#include <mutex>

#include "kernels/cuda/internal.cuh"

#define CUDNN_CHECK(call)                                                                                        \
    do {                                                                                                         \
        cudnnStatus_t st_ = (call);                                                                              \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                                         \
            ::vt::fail_check(__FILE__, __LINE__, #call, "cuDNN error %d: %s", (int)st_, cudnnGetErrorString(st_)); \
    } while (0)

namespace vt::cuda {

namespace {

struct Plan {
    cudnnTensorDescriptor_t x, y;  // (N, C, H, W), (N, OC, OH, OW)
    cudnnFilterDescriptor_t w;     // (OC, C, KH, KW)
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws;  // workspace bytes
};

cudnnHandle_t handle() {
    static cudnnHandle_t h = [] {
        cudnnHandle_t c;
        CUDNN_CHECK(cudnnCreate(&c));
        CUDNN_CHECK(cudnnSetStream(c, stream()));
        return c;
    }();
    return h;
}

std::string dims_str(const ConvDims& d) {
    return strfmt("in (%d, %d, %d, %d) weight (%d, %d, %d, %d) stride %dx%d pad %dx%d", d.N, d.C, d.H, d.W, d.OC, d.C,
                  d.KH, d.KW, d.SH, d.SW, d.PH, d.PW);
}

// The first usable algorithm of cuDNN's ranked list: it ran the query successfully, fits in
// the workspace and uses FP32 math (at tf32: tensor-op math too, never the down-conversion to
// FP16 that CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION means for FP32 data); deterministic if any.
template <class Perf>
Perf pick(const Perf* perf, int n, size_t limit, const char* what, const ConvDims& d, bool tensor_ops) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            const Perf& p = perf[i];
            if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) continue;
            if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
            if (p.mathType == CUDNN_TENSOR_OP_MATH && !tensor_ops) continue;
            if (pass == 0 && p.determinism != CUDNN_DETERMINISTIC) continue;
            return p;
        }
    fail("cuDNN offers no %s %s algorithm within %zu bytes of workspace for the convolution %s; "
         "use the im2col path (VT_CONV=im2col)", tensor_ops ? "TF32" : "FP32", what, limit, dims_str(d).c_str());
}

Plan make_plan(const ConvDims& d, Precision prec) {
    const bool tf32 = prec == Precision::TF32;
    Plan p;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.N, d.C, d.H, d.W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.N, d.OC, d.OH, d.OW));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d.OC, d.C, d.KH, d.KW));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv, d.PH, d.PW, d.SH, d.SW, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int on, oc, oh, ow;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, p.w, &on, &oc, &oh, &ow));
    CHECK(on == d.N && oc == d.OC && oh == d.OH && ow == d.OW,
          "cuDNN's output (%d, %d, %d, %d) differs from the engine's (%d, %d, %d, %d) for %s", on, oc, oh, ow, d.N,
          d.OC, d.OH, d.OW, dims_str(d).c_str());

    const size_t limit = (size_t)d.scratch_size() * sizeof(float);
    cudnnHandle_t h = handle();
    int n = 0;
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n,
                                                       fwd));
    cudnnConvolutionFwdAlgoPerf_t f = pick(fwd, n, limit, "forward", d, tf32);
    cudnnConvolutionBwdDataAlgoPerf_t bd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, bd));
    cudnnConvolutionBwdDataAlgoPerf_t b = pick(bd, n, limit, "backward-data", d, tf32);
    cudnnConvolutionBwdFilterAlgoPerf_t bf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w,
                                                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, bf));
    cudnnConvolutionBwdFilterAlgoPerf_t w = pick(bf, n, limit, "backward-filter", d, tf32);
    p.fwd = f.algo;
    p.bwd_data = b.algo;
    p.bwd_filter = w.algo;
    // The query's memory figure, checked against the exact size for the chosen algorithm.
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, p.fwd, &p.fwd_ws));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x, p.bwd_data, &p.bwd_data_ws));
    CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w, p.bwd_filter, &p.bwd_filter_ws));
    CHECK(p.fwd_ws <= limit && p.bwd_data_ws <= limit && p.bwd_filter_ws <= limit,
          "cuDNN workspace (%zu, %zu, %zu bytes) exceeds the scratch (%zu bytes) for %s", p.fwd_ws, p.bwd_data_ws,
          p.bwd_filter_ws, limit, dims_str(d).c_str());
    return p;
}

// Plans are made once per shape and precision and kept for the life of the process.
const Plan& plan_for(const ConvDims& d) {
    const Precision prec = cuda_precision();
    if (prec == Precision::BF16)
        fail("precision bf16 runs on the im2col path only; the cuDNN path (VT_CONV=cudnn) takes fp32 or tf32");
    using Key = std::array<int, 12>;
    static std::mutex mu;
    static auto* plans = new std::map<Key, Plan>;  // never destroyed, like the handles
    Key k = {d.N, d.C, d.H, d.W, d.OC, d.KH, d.KW, d.SH, d.SW, d.PH, d.PW, (int)prec};
    std::lock_guard<std::mutex> lock(mu);
    auto it = plans->find(k);
    if (it == plans->end()) it = plans->emplace(k, make_plan(d, prec)).first;
    return it->second;
}

}  // namespace

bool cudnn_conv_applies(const ConvDims& d) { return true; }

void cudnn_conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                          const ConvDims& d) {
    const Plan& p = plan_for(d);
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnConvolutionForward(handle(), &one, p.x, inp, p.w, weight, p.conv, p.fwd, scratch, p.fwd_ws,
                                        &zero, p.y, out));
    if (bias) bias_add_planes(out, bias, d.N, d.OC, (int64_t)d.OH * d.OW);
}

void cudnn_conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                           const float* weight, float* scratch, const ConvDims& d) {
    const Plan& p = plan_for(d);
    const float one = 1.f;
    if (dbias) bias_backward_planes(dbias, dout, d.N, d.OC, (int64_t)d.OH * d.OW);
    if (dweight)
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle(), &one, p.x, inp, p.y, dout, p.conv, p.bwd_filter, scratch,
                                                   p.bwd_filter_ws, &one, p.w, dweight));
    if (dinp)
        CUDNN_CHECK(cudnnConvolutionBackwardData(handle(), &one, p.w, weight, p.y, dout, p.conv, p.bwd_data, scratch,
                                                 p.bwd_data_ws, &one, p.x, dinp));
}

}  // namespace vt::cuda

#endif  // VT_CUDNN
