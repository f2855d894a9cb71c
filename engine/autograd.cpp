// autograd.cpp: the tape (see autograd.h).
#include "engine/autograd.h"

#include "engine/backend.h"
#include "engine/ops.h"  // workspace()

namespace vt {

static thread_local Tape* g_tape = nullptr;

Tape* tape_active() { return g_tape; }

TapeScope::TapeScope(Tape& tape) : prev(g_tape) { g_tape = &tape; }
TapeScope::~TapeScope() { g_tape = prev; }
NoGradScope::NoGradScope() : prev(g_tape) { g_tape = nullptr; }
NoGradScope::~NoGradScope() { g_tape = prev; }

static thread_local bool g_frozen = false;
bool choices_frozen() { return g_frozen; }
FrozenChoices::FrozenChoices() : prev(g_frozen) { g_frozen = true; }
FrozenChoices::~FrozenChoices() { g_frozen = prev; }
static thread_local bool g_recording = false;
bool choices_recording() { return g_recording; }
RecordChoices::RecordChoices() : prev(g_recording) { g_recording = true; }
RecordChoices::~RecordChoices() { g_recording = prev; }

Tensor op_output(const Shape& s, const std::vector<const Tensor*>& inputs) {
    CHECK(!inputs.empty(), "op_output without inputs");
    Device dev = inputs[0]->device();
    bool grad = false;
    for (const Tensor* t : inputs) {
        if (!t->defined()) continue;
        CHECK(t->device() == dev, "op inputs on different devices: %s on %s, %s on %s", inputs[0]->desc().c_str(),
              device_name(dev), t->desc().c_str(), device_name(t->device()));
        grad = grad || t->requires_grad();
    }
    return tensor_empty(s, dev, grad && g_tape != nullptr);
}

Tensor op_record(const char* op, const Tensor& out, std::function<void()> forward, std::function<void()> backward) {
    forward();
    if (g_tape) g_tape->nodes.push_back(Node{op, out, std::move(forward), std::move(backward)});
    return out;
}

void Tape::forward() {
    for (Node& n : nodes) n.forward();
}

void Tape::zero_grad() {
    for (Node& n : nodes)
        if (n.out.requires_grad()) grad_zero(n.out);
}

void Tape::fill_grad(float v) {
    for (Node& n : nodes)
        if (n.out.requires_grad()) grad_fill(n.out, v);
}

void Tape::backward(const Tensor& out) {
    CHECK(out.numel() == 1, "backward(%s): a scalar is needed; pass dout for other shapes", out.desc().c_str());
    Tensor one = tensor_full(out.shape, 1.f, out.device());
    backward(out, one);
}

// Tape::backward; *at follows the node running (for TapeGraph's messages).
static void run_backward(Tape& tape, const Tensor& out, const Tensor& dout, size_t* at) {
    check_same_shape(out, dout, "Tape::backward: dout");
    CHECK(out.requires_grad(), "backward(%s): the output does not depend on anything that requires a gradient",
          out.desc().c_str());
    tape.zero_grad();
    kernels_for(out.device()).axpy(out.grad(), dout.data(), out.numel(), 1.f);
    for (size_t i = tape.nodes.size(); i-- > 0;) {
        *at = i;
        if (tape.nodes[i].out.requires_grad()) tape.nodes[i].backward();
    }
}

void Tape::backward(const Tensor& out, const Tensor& dout) {
    size_t at = 0;
    run_backward(*this, out, dout, &at);
}

// ---- TapeGraph ----------------------------------------------------------------------------

TapeGraph::TapeGraph(Tape& tape, const Tensor& loss, bool use_graph) : tape_(tape), loss_(loss), use_graph_(use_graph) {
    if (loss_.defined()) {
        CHECK(loss_.numel() == 1, "TapeGraph(%s): the loss must be a scalar", loss_.desc().c_str());
        CHECK(loss_.requires_grad(), "TapeGraph(%s): the loss does not depend on anything that requires a gradient",
              loss_.desc().c_str());
        dev_ = loss_.device();
        one_ = tensor_full(loss_.shape, 1.f, dev_);
    } else if (!tape_.nodes.empty()) {
        dev_ = tape_.nodes.front().out.device();
    }
}

TapeGraph::~TapeGraph() { backend_graph_destroy(graph_); }

void TapeGraph::plain() {
    tape_.forward();
    if (loss_.defined()) tape_.backward(loss_, one_);
}

void TapeGraph::invalidate() {
    backend_graph_destroy(graph_);
    graph_ = nullptr;
    warmed_ = false;
}

// The conv workspace (ops.h) is the one buffer ops take at run time rather than at record
// time; it only grows, and a grown one is a new block (the old one freed, to be reused).
void TapeGraph::snapshot() {
    nodes_ = tape_.nodes.size();
    workspace_ = workspace(dev_, 0);
}

bool TapeGraph::unchanged() const { return tape_.nodes.size() == nodes_ && workspace(dev_, 0) == workspace_; }

void TapeGraph::capture() {
    size_t at = 0;
    bool backward = false;
    backend_graph_capture_begin(dev_);
    try {
        for (at = 0; at < tape_.nodes.size(); at++) tape_.nodes[at].forward();
        if (loss_.defined()) {
            backward = true;
            run_backward(tape_, loss_, one_, &at);
        }
        at = tape_.nodes.size();  // past the nodes: an error now is the capture's as a whole
        graph_ = backend_graph_capture_end(dev_);
    } catch (const Error& e) {
        backend_graph_capture_abort(dev_);
        graph_ = nullptr;
        fallback_ = at < tape_.nodes.size()
                        ? strfmt("node %zu (%s) %s: %s", at, tape_.nodes[at].op, backward ? "backward" : "forward", e.what())
                        : std::string(e.what());
    } catch (...) {
        backend_graph_capture_abort(dev_);
        graph_ = nullptr;
        throw;
    }
}

void TapeGraph::run() {
    if (dev_ == Device::CPU || !use_graph_ || !fallback_.empty() || tape_.nodes.empty()) {
        plain();
        return;
    }
    if (graph_ && !unchanged()) invalidate();
    if (!graph_) {
        if (!warmed_ || !unchanged()) {  // warm up (again)
            plain();
            warmed_ = true;
            snapshot();
            return;
        }
        capture();
        if (!graph_) {  // not capturable: plain from now on (fallback_ says why)
            plain();
            return;
        }
    }
    backend_graph_launch(graph_);
    launches_++;
}

}  // namespace vt
