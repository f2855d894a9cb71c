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
#include <string>
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

struct DeviceGraph;  // engine/backend.h

// One iteration of a recorded tape, tape.forward() then tape.backward(loss) (forward() alone
// when loss is undefined): the same as calling them, except that on a CUDA tape the iteration
// is recorded once as a CUDA Graph and then replayed with one launch, which saves the host
// the thousands of kernel launches of an unrolled model (T steps x layers x ops, each way).
//   1st run()   plain forward + backward: the warm-up. Workspaces grow to their final size,
//               the caching allocator's free lists fill, cuBLAS/cuDNN plans are made and
//               lazily loaded kernels load, so that the capture allocates nothing.
//   2nd run()   captures forward + backward into a graph (capturing runs nothing), launches it
//   later       launches the graph
// Valid only while the tape, its buffers and their shapes stay as they are: per iteration,
// copy new data INTO the recorded input tensors (outside run()), never re-record. run()
// re-captures by itself when the tape's length or the engine's conv workspace (ops.h) has
// changed; call invalidate() after any other change that the graph cannot see (a new conv
// path, a tensor re-bound). Host-side values are baked in at capture: an op whose forward
// copies from the host (dropout draws its mask on the host) cannot be captured; run() then
// falls back to plain forward + backward for good and fallback_reason() names the op.
// run(), like tape.backward, ACCUMULATES into leaf gradients: zero them between runs (outside
// run(), e.g. ParamArena::zero_grad). Drive it from one thread (the workspace is per thread).
// On the CPU, and with use_graph = false, run() is always plain forward + backward.
class TapeGraph {
  public:
    TapeGraph(Tape& tape, const Tensor& loss, bool use_graph = true);  // loss: scalar, or {} (forward only)
    ~TapeGraph();
    TapeGraph(const TapeGraph&) = delete;
    TapeGraph& operator=(const TapeGraph&) = delete;

    void run();
    void invalidate();                          // drop the graph: the next run() warms up again
    bool captured() const { return graph_ != nullptr; }
    int64_t launches() const { return launches_; }   // graph launches so far
    const std::string& fallback_reason() const { return fallback_; }  // "" unless capture failed
    Device device() const { return dev_; }

  private:
    void plain();
    void capture();
    bool unchanged() const;
    void snapshot();

    Tape& tape_;
    Tensor loss_, one_;           // one_: d(loss) = 1, kept so the graph can read it
    Device dev_ = Device::CPU;
    bool use_graph_ = true, warmed_ = false;
    DeviceGraph* graph_ = nullptr;
    size_t nodes_ = 0;            // the tape's length when warmed up
    const float* workspace_ = nullptr;  // the conv workspace then
    int64_t launches_ = 0;
    std::string fallback_;
};

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

// The discrete choices of a forward (max-pool winners, dropout masks, which branch of ELU and
// ReLU each element took) can be held, so that replays stay on one smooth piece of the
// function, the one whose derivative backward computes (the gradient checker's numeric side):
//   RecordChoices  while active, ops that have branches also note the branch of every
//                  element (CPU only; costs memory, so nothing else records);
//   FrozenChoices  while active, replayed forwards keep the choices of the recorded run
//                  (max-pool: of their last unfrozen run; ELU/ReLU: of the recorded run, when
//                  there was one) and only the smooth parts move.
bool choices_frozen();
bool choices_recording();
struct FrozenChoices {
    bool prev;
    FrozenChoices();
    ~FrozenChoices();
};
struct RecordChoices {
    bool prev;
    RecordChoices();
    ~RecordChoices();
};

// For op implementations: an output tensor that requires a gradient when a tape is active
// and any input does; then run forward once and, if a tape is active, record the node.
Tensor op_output(const Shape& s, const std::vector<const Tensor*>& inputs);
// The gradient a backward should accumulate into, or nullptr if t does not want one.
inline float* grad_or_null(const Tensor& t) { return t.defined() && t.requires_grad() ? t.grad() : nullptr; }
Tensor op_record(const char* op, const Tensor& out, std::function<void()> forward, std::function<void()> backward);

}  // namespace vt
