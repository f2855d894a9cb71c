// params.h: all parameters of a model in one arena, with a table of named views
// (llm.c's malloc_and_point_parameters). Zeroing gradients, optimiser steps, checkpoints
// and device copies are single loops over the arena.
//
// Two phases: collect ParamSpecs (name, shape, init), then build the arena, which allocates
// data and gradients once and hands out views by name.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vt {

enum class Init { Zeros, Ones, HeNormal, Uniform, Const };

struct ParamSpec {
    std::string name;    // e.g. "conv3.cell.weight"
    Shape shape;
    Init init = Init::HeNormal;
    float value = 0.f;   // Uniform: bound (+-value); Const: the value; HeNormal: gain (0 = 1)
    bool trainable = true;
};

struct ParamArena {
    struct Entry {
        std::string name;
        Shape shape;
        int64_t offset;  // in floats, into data/grad
        bool trainable;
        Tensor view;     // borrows the arena's memory
    };
    std::vector<Entry> entries;
    Tensor data;         // (total,) all parameters
    Tensor grad;         // (total,) their gradients (grad.data() is the gradient arena)
    Device device = Device::CPU;

    ParamArena() = default;
    ParamArena(const std::vector<ParamSpec>& specs, uint64_t seed, Device dev = Device::CPU);

    const Tensor& operator[](const std::string& name) const;  // fails with the list of names
    bool has(const std::string& name) const;
    int64_t numel() const { return data.defined() ? data.numel() : 0; }
    int64_t numel_trainable() const;

    void zero_grad();
    // The L2 norm of the trainable entries' gradients (in double; on a GPU one copy to the host).
    double grad_norm() const;
    // Freeze (no gradient, not updated) or unfreeze every parameter whose name starts with prefix.
    // Returns how many matched.
    int set_trainable(const std::string& prefix, bool on);

   private:
    std::map<std::string, size_t> index_;
};

// Optimisers keep their state in arena-sized buffers and update trainable entries only.
struct SGD {
    float lr = 0.01f, momentum = 0.9f, weight_decay = 0.f;
    Tensor mom;  // (total,)
    void step(ParamArena& p);
};

struct Adam {
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;  // decoupled (AdamW)
    std::vector<float> lr_scale;  // per arena entry (empty = 1): entry e steps with lr * lr_scale[e]
    float clip_norm = 0.f;        // > 0: gradients whose norm (grad_norm) exceeds it are scaled down to it first
    double last_norm = NAN;       // with clip_norm: the gradient norm of the last step, before clipping
    Tensor m, v;  // (total,)
    int t = 0;    // steps taken
    void step(ParamArena& p);
};

}  // namespace vt
