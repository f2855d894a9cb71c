// fastmath.h: exp-based activations that the compiler vectorises (libm's scalar expf,
// expm1f and tanhf were 20% of a training step). exp uses the Cephes range reduction
// x = n ln2 + r and a degree-6 polynomial for e^r: relative error < 1e-7 on [-87, 88];
// tanh, sigmoid and e^x - 1 are within 1e-7 absolute. Loops over these vectorise when built
// with -fno-trapping-math -fno-math-errno (the Makefile's flags) and when every call is inlined
// (VT_INLINE: a loop with many calls exceeds the inliner's budget, and one call left scalar
// keeps the whole loop scalar; the lstm kernels ran 4x slower so).
#pragma once
#include <cmath>
#include <cstdint>

#define VT_INLINE [[gnu::always_inline]] inline

namespace vt::cpu {

VT_INLINE static float fast_exp(float x) {
    x = x < -87.3f ? -87.3f : x;  // (ternaries, not fmin/fmax: these vectorise)
    x = x > 88.7f ? 88.7f : x;
    float n = std::floor(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.f;
    // 2^n from its exponent bits. n is in [-126, 128] for every number; a NaN x leaves n NaN,
    // whose conversion to int is undefined, so n is clamped (NaN fails both tests and becomes
    // -127) while e stays NaN and carries it to the result.
    n = n > -127.f ? n : -127.f;
    n = n < 128.f ? n : 128.f;
    return e * __builtin_bit_cast(float, (uint32_t)((int32_t)n + 127) << 23);
}

// e^x - 1 for x <= 0 (ELU): a series near 0, where e^x - 1 would cancel.
VT_INLINE static float fast_expm1_neg(float x) {
    float s = x * (1.f + x * (0.5f + x * (1.f / 6 + x * (1.f / 24 + x * (1.f / 120 + x * (1.f / 720))))));
    return x > -0.25f ? s : fast_exp(x) - 1.f;
}

VT_INLINE static float fast_sigmoid(float x) { return 1.f / (1.f + fast_exp(-x)); }

// tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)), with a series near 0.
VT_INLINE static float fast_tanh(float x) {
    float a = std::fabs(x), x2 = x * x;
    float s = x * (1.f + x2 * (-1.f / 3 + x2 * (2.f / 15 + x2 * (-17.f / 315))));
    float t = 1.f - 2.f / (fast_exp(2.f * a) + 1.f);
    return a < 0.125f ? s : std::copysign(t, x);
}

}  // namespace vt::cpu
