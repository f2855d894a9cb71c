// table.cpp: the CPU kernel table and the size helpers shared by every backend.
#include "kernels/error.h"
#include "kernels/cpu/cpu.h"

namespace vt {

ConvDims conv_dims(int N, int C, int H, int W, int OC, int KH, int KW, int SH, int SW, int PH, int PW) {
    ConvDims d{N, C, H, W, OC, KH, KW, SH, SW, PH, PW, 0, 0};
    CHECK(SH > 0 && SW > 0 && PH >= 0 && PW >= 0, "conv: bad stride %dx%d / padding %dx%d", SH, SW, PH, PW);
    d.OH = (H + 2 * PH - KH) / SH + 1;
    d.OW = (W + 2 * PW - KW) / SW + 1;
    CHECK(H + 2 * PH >= KH && W + 2 * PW >= KW, "conv: kernel %dx%d larger than padded input %dx%d", KH, KW,
          H + 2 * PH, W + 2 * PW);
    return d;
}

PoolDims pool_dims(int N, int C, int H, int W, int K, int S, int P) {
    CHECK(K > 0 && S > 0 && P >= 0 && 2 * P <= K, "maxpool: bad kernel %d / stride %d / padding %d", K, S, P);
    CHECK(H + 2 * P >= K && W + 2 * P >= K, "maxpool: kernel %d larger than padded input %dx%d", K, H + 2 * P,
          W + 2 * P);
    return PoolDims{N, C, H, W, K, S, P, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1};
}

const KernelTable& cpu_kernels() {
    static const KernelTable t = {
        "cpu",
        cpu::fill, cpu::axpy, cpu::add, cpu::mul, cpu::mul_backward, cpu::affine,
        cpu::act_forward, cpu::act_backward,
        cpu::gemm, cpu::bias_add_rows, cpu::sum_rows,
        cpu::conv2d_forward, cpu::conv2d_backward,
        cpu::maxpool_forward, cpu::maxpool_backward, cpu::maxpool_gather,
        cpu::chan_copy,
        cpu::resize_forward, cpu::resize_backward,
        cpu::sum, cpu::sum_backward, cpu::mse_forward, cpu::mse_backward, cpu::xent_forward, cpu::xent_backward,
        cpu::chan_scale_forward, cpu::chan_scale_backward,
        cpu::lstm_forward, cpu::lstm_backward,
        cpu::gru_gates_forward, cpu::gru_gates_backward, cpu::gru_update_forward, cpu::gru_update_backward,
        cpu::ugrnn_forward, cpu::ugrnn_backward,
        cpu::rgc_gates_forward, cpu::rgc_gates_backward,
        cpu::sgd_update, cpu::adam_update,
    };
    return t;
}

}  // namespace vt
