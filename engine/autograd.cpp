// autograd.cpp: the tape (see autograd.h).
#include "engine/autograd.h"

#include "engine/backend.h"

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

void Tape::backward(const Tensor& out, const Tensor& dout) {
    check_same_shape(out, dout, "Tape::backward: dout");
    CHECK(out.requires_grad(), "backward(%s): the output does not depend on anything that requires a gradient",
          out.desc().c_str());
    zero_grad();
    kernels_for(out.device()).axpy(out.grad(), dout.data(), out.numel(), 1.f);
    for (size_t i = nodes.size(); i-- > 0;)
        if (nodes[i].out.requires_grad()) nodes[i].backward();
}

}  // namespace vt
