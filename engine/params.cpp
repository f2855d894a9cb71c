// params.cpp: the parameter arena and the optimisers (see params.h).
#include "engine/params.h"

#include <cmath>

#include "engine/backend.h"

namespace vt {

ParamArena::ParamArena(const std::vector<ParamSpec>& specs, uint64_t seed, Device dev) : device(dev) {
    int64_t total = 0;
    for (const ParamSpec& s : specs) {
        if (index_.count(s.name)) fail("parameter '%s' declared twice", s.name.c_str());
        index_[s.name] = entries.size();
        entries.push_back(Entry{s.name, s.shape, total, s.trainable, Tensor()});
        total += shape_numel(s.shape);
    }
    data = tensor_zeros({total}, dev);
    grad = tensor_zeros({total}, dev);
    data.name = "params";
    Rng rng(seed);
    std::shared_ptr<void> keep_data = data.buf, keep_grad = grad.buf;
    for (size_t i = 0; i < entries.size(); i++) {
        Entry& e = entries[i];
        const ParamSpec& s = specs[i];
        e.view = tensor_borrow(e.shape, data.data() + e.offset, grad.data() + e.offset,
                               std::make_shared<std::pair<std::shared_ptr<void>, std::shared_ptr<void>>>(keep_data, keep_grad),
                               dev);
        e.view.name = e.name;
        e.view.set_requires_grad(e.trainable);
        // fan_in = prod(shape[1:]) for weights (OC, C, KH, KW) and (Dout, Din).
        int64_t fan_in = e.shape.size() > 1 ? shape_numel(e.shape) / e.shape[0] : 1;
        switch (s.init) {
        case Init::Zeros: break;
        case Init::Ones: tensor_fill(e.view, 1.f); break;
        case Init::Const: tensor_fill(e.view, s.value); break;
        case Init::Uniform: tensor_uniform(e.view, rng, -s.value, s.value); break;
        case Init::HeNormal:
            tensor_randn(e.view, rng, (s.value > 0 ? s.value : 1.f) * std::sqrt(2.f / (float)fan_in));
            break;
        }
    }
}

const Tensor& ParamArena::operator[](const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) {
        std::string names;
        for (const Entry& e : entries) names += (names.empty() ? "" : ", ") + e.name;
        fail("no parameter named '%s' (have: %s)", name.c_str(), names.c_str());
    }
    return entries[it->second].view;
}

bool ParamArena::has(const std::string& name) const { return index_.count(name) > 0; }

int64_t ParamArena::numel_trainable() const {
    int64_t n = 0;
    for (const Entry& e : entries)
        if (e.trainable) n += shape_numel(e.shape);
    return n;
}

void ParamArena::zero_grad() {
    if (grad.defined()) tensor_fill(grad, 0.f);
}

double ParamArena::grad_norm() const {
    if (!grad.defined()) return 0.0;
    std::vector<float> g((size_t)grad.numel());
    backend_copy_to_host(device, g.data(), grad.data(), grad.numel());
    double ss = 0;
    for (const Entry& e : entries)
        if (e.trainable)
            for (int64_t k = 0; k < shape_numel(e.shape); k++) ss += (double)g[e.offset + k] * g[e.offset + k];
    return std::sqrt(ss);
}

int ParamArena::set_trainable(const std::string& prefix, bool on) {
    int n = 0;
    for (Entry& e : entries)
        if (e.name.compare(0, prefix.size(), prefix) == 0) {
            e.trainable = on;
            e.view.set_requires_grad(on);
            n++;
        }
    return n;
}

void SGD::step(ParamArena& p) {
    if (!mom.defined()) mom = tensor_zeros({p.numel()}, p.device);
    const KernelTable& K = kernels_for(p.device);
    for (const ParamArena::Entry& e : p.entries)
        if (e.trainable)
            K.sgd_update(p.data.data() + e.offset, p.grad.data() + e.offset, mom.data() + e.offset,
                         shape_numel(e.shape), lr, momentum, weight_decay);
}

void Adam::step(ParamArena& p) {
    if (!m.defined()) {
        m = tensor_zeros({p.numel()}, p.device);
        v = tensor_zeros({p.numel()}, p.device);
    }
    t++;
    const KernelTable& K = kernels_for(p.device);
    if (clip_norm > 0) {  // global-norm clipping (Pascanu et al. 2013), before the moments see the gradient
        last_norm = p.grad_norm();
        if (last_norm > clip_norm) K.affine(p.grad.data(), p.grad.data(), p.numel(), (float)(clip_norm / last_norm), 0.f);
    }
    CHECK(lr_scale.empty() || lr_scale.size() == p.entries.size(), "Adam: %zu lr scales for %zu parameters",
          lr_scale.size(), p.entries.size());
    for (size_t i = 0; i < p.entries.size(); i++) {
        const ParamArena::Entry& e = p.entries[i];
        if (e.trainable)
            K.adam_update(p.data.data() + e.offset, p.grad.data() + e.offset, m.data() + e.offset, v.data() + e.offset,
                          shape_numel(e.shape), lr * (lr_scale.empty() ? 1.f : lr_scale[i]), b1, b2, eps, weight_decay, t);
    }
}

}  // namespace vt
