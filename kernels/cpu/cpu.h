// cpu.h: the CPU kernels behind cpu_kernels() (internal to kernels/cpu/).
// Each file implements one family; table.cpp gathers them into the KernelTable.
#pragma once
#include "kernels/kernels.h"

namespace vt::cpu {

// Loops are OpenMP-parallel above PAR_MIN elements of work: below it waking the pool's
// (passive, sleeping) threads costs more than the loop (a tiny3 gradient check spent 95% of
// its time in the kernel's futex calls before im2col and the transposes had this guard).
constexpr int64_t PAR_MIN = 1 << 15;

// elementwise.cpp
void fill(float* p, int64_t n, float v);
void axpy(float* y, const float* x, int64_t n, float a);
void add(float* out, const float* a, const float* b, int64_t n, float alpha, float beta);
void mul(float* out, const float* a, const float* b, int64_t n);
void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
void affine(float* out, const float* a, int64_t n, float scale, float shift);
void act_forward(Act act, float* out, const float* inp, int64_t n);
void act_backward(Act act, float* dinp, const float* dout, const float* out, int64_t n);
void sum(float* out, const float* inp, int64_t n, float scale);
void sum_backward(float* dinp, const float* dout, int64_t n, float scale);
void mse_forward(float* out, const float* a, const float* b, int64_t n);
void mse_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
void xent_forward(float* out, float* probs, const float* logits, const float* labels, int N, int K);
void xent_backward(float* dlogits, const float* dout, const float* probs, const float* labels, int N, int K);
void sgd_update(float* p, const float* g, float* mom, int64_t n, float lr, float momentum, float wd);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                 float eps, float wd, int step);

// conv.cpp
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);
void bias_add_rows(float* out, const float* bias, int rows, int cols);
void sum_rows(float* dbias, const float* dout, int rows, int cols);
void im2col(float* cols, const float* inp, const ConvDims& d);
void col2im(float* dinp, const float* dcols, const ConvDims& d);  // accumulates
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                    const ConvDims& d);
void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* scratch, const ConvDims& d);

// spatial.cpp
void maxpool_forward(float* out, int32_t* argmax, const float* inp, const PoolDims& d);
void maxpool_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolDims& d);
void maxpool_gather(float* out, const int32_t* argmax, const float* inp, const PoolDims& d);
void chan_copy(float* dst, int DC, int dc0, const float* src, int SC, int sc0, int C, int N, int64_t HW,
               bool accumulate);
void resize_forward(float* out, const float* inp, int NC, int H, int W, int OH, int OW);
void resize_backward(float* dinp, const float* dout, int NC, int H, int W, int OH, int OW);

// cells.cpp
void chan_scale_forward(float* out, const float* x, const float* a, int N, int C, int64_t P);
void chan_scale_backward(float* dx, float* da, const float* dout, const float* x, const float* a, int N, int C,
                         int64_t P);
void lstm_forward(float* c, float* h, const float* G, const float* c_prev, int N, int C, int64_t P);
void lstm_backward(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G, const float* c_prev,
                   const float* c, int N, int C, int64_t P);
void gru_gates_forward(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P);
void gru_gates_backward(float* dG1, float* dh_prev, const float* drh, const float* G1, const float* h_prev, int N,
                        int C, int64_t P);
void gru_update_forward(float* h, const float* G1, const float* Gc, const float* h_prev, int N, int C, int64_t P);
void gru_update_backward(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1, const float* Gc,
                         const float* h_prev, int N, int C, int64_t P);
void ugrnn_forward(float* h, const float* G, const float* h_prev, int N, int C, int64_t P);
void ugrnn_backward(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev, int N, int C,
                    int64_t P);
void rgc_gates_forward(float* pc, float* ph, const float* A, const float* B, const float* Xc, const float* x,
                       const float* c_prev, const float* h_prev, int N, int C, int64_t P);
void rgc_gates_backward(float* dA, float* dB, float* dXc, float* dx, float* dc_prev, float* dh_prev, const float* dpc,
                        const float* dph, const float* A, const float* B, const float* Xc, const float* x,
                        const float* c_prev, const float* h_prev, int N, int C, int64_t P);

}  // namespace vt::cpu
