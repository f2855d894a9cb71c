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

ConvUpDims conv_up_dims(int N, int Cs, int h, int w, int H, int W, int OC, int KH, int KW, int S, int P) {
    CHECK(N > 0 && Cs > 0 && h > 0 && w > 0 && H > 0 && W > 0 && OC > 0 && KH > 0 && KW > 0,
          "conv_up: bad sizes (source %dx%dx%dx%d, resized %dx%d, weight %dx%dx%dx%d)", N, Cs, h, w, H, W, OC, Cs, KH, KW);
    CHECK(S > 0 && P >= 0, "conv_up: bad stride %d / padding %d", S, P);
    CHECK(H + 2 * P >= KH && W + 2 * P >= KW, "conv_up: kernel %dx%d larger than padded input %dx%d", KH, KW,
          H + 2 * P, W + 2 * P);
    return ConvUpDims{N, Cs, h, w, H, W, OC, KH, KW, S, P, (H + 2 * P - KH) / S + 1, (W + 2 * P - KW) / S + 1};
}

PoolDims pool_dims(int N, int C, int H, int W, int K, int S, int P) {
    CHECK(K > 0 && S > 0 && P >= 0 && 2 * P <= K, "maxpool: bad kernel %d / stride %d / padding %d", K, S, P);
    CHECK(H + 2 * P >= K && W + 2 * P >= K, "maxpool: kernel %d larger than padded input %dx%d", K, H + 2 * P,
          W + 2 * P);
    return PoolDims{N, C, H, W, K, S, P, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1};
}

const KernelTable& cpu_kernels() {
    static const KernelTable t = [] {
        KernelTable k{};
        k.name = "cpu";
#define VT_SET_KERNEL(kernel) k.kernel = cpu::kernel;
        VT_KERNELS(VT_SET_KERNEL)
#undef VT_SET_KERNEL
        return k;
    }();
    return t;
}

}  // namespace vt
