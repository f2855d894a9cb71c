// cells.h: the local recurrent cells (docs/science.md section 2), one step at a time.
//
// A cell turns a layer's pre-memory x (N, C, H, W) and its state into the layer's memory
// output h (N, C, H, W). Convolutions are 3x3 'same', stride 1, state depth C. Gated cells
// run their gate nonlinearities and state update as one fused kernel (kernels.h), recorded
// as one op. Parameters are named "<layer>.cell.*".
//   none       h = x
//   timedecay  h = a*h_prev + x, a = sigmoid(tau) per channel, tau trainable
//   rnn        h = elu(conv([x, h_prev]))
//   rnn-large  rnn with D > C state channels (rnn_large_depth): the first C are the output,
//              the rest recur only; D makes the parameter count match lstm within 5%
//   gru        [r,u] = s(conv([x,h_prev]) + 1); cand = tanh(conv([x, r*h_prev]));
//              h = u*h_prev + (1-u)*cand
//   lstm       [i,j,f,o] = conv([x,h_prev]); c = c_prev*s(f+1) + s(i)*tanh(j); h = tanh(c)*s(o)
//   ugrnn      [g,m] = conv([x,h_prev]); g = s(g+1); h = g*h_prev + (1-g)*tanh(m)
//   rgc        c = elu((1 - s(W_tc*c_prev))*c_prev + (1 - s(W_gc*h_prev))*(W_xc*x)),
//              h = elu((1 - s(W_th*h_prev))*h_prev + (1 - s(W_gh*c_prev))*x)
#pragma once
#include <string>
#include <vector>

#include "engine/params.h"

namespace vt {

enum class Motif { None, TimeDecay, RNN, RNNLarge, GRU, LSTM, UGRNN, RGC };

Motif motif_parse(const std::string& s);  // fails listing the motifs
const char* motif_name(Motif m);
std::vector<std::string> motif_names();
int rnn_large_depth(int C);               // D = round(C (sqrt(33) - 1) / 2): 9D(C+D) ~ 72 C^2

void cell_param_specs(std::vector<ParamSpec>& specs,  // appended to
                      Motif m,                        // the cell
                      const std::string& layer,       // "conv3": parameters "conv3.cell.*"
                      int C);                         // layer depth

// A start with memory (fit_dynamics' default, dynamics.h): every channel c of the cell
// becomes a leaky integrator of its own input x_c, h_c ~ r_c h_c + (1 - r_c) f(x_c), with a
// retention r_c = 1 - 1/tau_c per step, tau_c log-uniform in [tau_min, tau_max] steps (seeded),
// set through the gate biases and a centre-tap identity on x_c in the candidate's conv (the
// conv's random weights are halved: channels stay mostly themselves). A fresh network then
// keeps a fading trace of the image after it has gone, which a time-shared readout can use
// from the start. Returns the retentions (C). timedecay: tau = logit(r); rnn/rnn-large: the
// centre taps (1 - r) on x_c and r on h_c; gru/ugrnn: the keep gate's bias; lstm: forget bias
// logit(r) - 1, input bias logit(1 - r), output bias 2; rgc: c and h both retain r (c from W_xc x).
std::vector<float> cell_init_memory(ParamArena& p,              // the cell's parameters are set
                                    Motif m,                    // the cell
                                    const std::string& layer,   // "conv3"
                                    int C,                      // layer depth
                                    uint64_t seed,              // timescales and random weights
                                    float tau_min = 1.5f, float tau_max = 20.f);

struct CellState {
    Tensor c;  // memory (lstm, rgc), (N, C, H, W); undefined = zero
    Tensor h;  // hidden state, (N, C or D, H, W); undefined = zero
    // With x_repeats: the input part of each cell conv, W_x x + b, kept for x_last and reused
    // while x is the same tensor (one per conv: gru has two).
    Tensor x_last;
    std::vector<Tensor> x_proj;
    // With x_repeats: the state half W_h of each cell conv's weight, sliced once per unroll and
    // shared by every step (one tensor, so one transformed weight in the convolutions' caches).
    std::vector<Tensor> w_state;
};

// One step: returns h (N, C, H, W) and replaces st with the new state. A cell conv over
// [x, h_prev] is W_x x + W_h h_prev + b: an undefined (zero) state skips W_h, and with
// x_repeats (the caller's promise that x will often be the same tensor as at the step
// before, e.g. the first layer's input while the frame stays) W_x x + b is computed once per
// distinct x and only W_h h_prev at each step. Both are the same function as the conv over
// the concatenation, up to float rounding (tested).
Tensor cell_step(Motif m, const ParamArena& p, const std::string& layer, const Tensor& x, CellState& st,
                 bool x_repeats = false);

}  // namespace vt
