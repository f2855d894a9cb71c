// autograd.h: reverse-mode autodiff as a tape of recorded ops.
//
// While a Tape is active (TapeScope), every op appends a Node holding two closures over
// its tensors: forward (recomputes the output from the inputs, in place) and backward
// (accumulates the inputs' gradients from the output's gradient). Then:
//   tape.backward(loss)   zeroes the gradients of every recorded output, seeds d(loss) = 1
//                         and runs the nodes in reverse. Leaf gradients (parameters, inputs)
//                         ACCUMULATE across calls; clear them with ParamArena::zero_grad.
//   tape.forward()        replays the recorded forward closures on the same buffers: build a
//                         graph once, then per iteration copy new data into its input tensors
//                         and call forward() and backward(). No allocation per iteration.
// With no active tape, ops just compute (inference): nothing is recorded, no gradient
// memory is allocated. Views (Tensor::reshape) share data and gradient with their source
// and need no node.
#pragma once
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace vt {

struct Node {
    const char* op;                  // e.g. "conv2d", for messages and profiles
    Tensor out;                      // the output; its gradient is zeroed before backward
    std::function<void()> forward;   // recompute out from the inputs
    std::function<void()> backward;  // += into the inputs' gradients (skips those not wanted)
};

struct Tape {
    std::vector<Node> nodes;

    void forward();                                      // replay every forward in order
    void backward(const Tensor& out);                    // out: a scalar; d(out) = 1
    void backward(const Tensor& out, const Tensor& dout);// d(out) = dout (same shape)
    void zero_grad();                                    // zero every recorded output's gradient
    void fill_grad(float v);                             // (tests: NaN-fill to catch unzeroed reads)
    void clear() { nodes.clear(); }
    size_t size() const { return nodes.size(); }
};

Tape* tape_active();  // the tape ops record into, or nullptr (inference)

// Records into `tape` for its lifetime (nests; restores the previous tape).
struct TapeScope {
    Tape* prev;
    explicit TapeScope(Tape& tape);
    ~TapeScope();
};

// Stops recording for its lifetime (inference inside a recorded region).
struct NoGradScope {
    Tape* prev;
    NoGradScope();
    ~NoGradScope();
};

// While a FrozenChoices scope is active, replayed forwards keep the discrete choices of
// their last run: max-pool winners and dropout masks. The function then stays on one smooth
// piece, the one whose derivative backward computes (the gradient checker uses this).
bool choices_frozen();
struct FrozenChoices {
    bool prev;
    FrozenChoices();
    ~FrozenChoices();
};

// For op implementations: an output tensor that requires a gradient when a tape is active
// and any input does; then run forward once and, if a tape is active, record the node.
Tensor op_output(const Shape& s, const std::vector<const Tensor*>& inputs);
// The gradient a backward should accumulate into, or nullptr if t does not want one.
inline float* grad_or_null(const Tensor& t) { return t.defined() && t.requires_grad() ? t.grad() : nullptr; }
Tensor op_record(const char* op, const Tensor& out, std::function<void()> forward, std::function<void()> backward);

}  // namespace vt
