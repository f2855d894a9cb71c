// tensor.h: the engine's one data type.
//
// A Tensor is a handle on a contiguous float32 buffer, row-major (NCHW for images), with a
// shape and a device tag. Copies of a Tensor share the buffer; reshape/flatten return views
// of the same buffer (and of the same gradient buffer, so gradients flow through views
// without copying). The gradient lives beside the data in the Buffer, allocated when the
// tensor requires a gradient.
//
// Storage is allocated and freed in one place (buffer_alloc/buffer_free in tensor.cpp),
// which is where the CUDA backend plugs in its device allocator.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/common.h"

namespace vt {

enum class Device { CPU, CUDA };
const char* device_name(Device d);

// A block of float storage (data and, optionally, its gradient) on one device.
struct Buffer {
    float* data = nullptr;
    float* grad = nullptr;     // nullptr until a gradient is needed
    int64_t size = 0;          // number of floats
    Device device = Device::CPU;
    float* external = nullptr; // non-null: data is borrowed (e.g. a view into an arena)
    bool requires_grad = false;  // shared by all views of this buffer

    ~Buffer();
    void ensure_grad();        // allocate (zeroed) gradient storage if absent
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);   // "(16, 3, 64, 64)"
int64_t shape_numel(const Shape& s);

struct Tensor {
    std::shared_ptr<Buffer> buf;
    int64_t offset = 0;          // in floats, into buf
    Shape shape;
    std::string name;            // optional, for messages and checkpoints

    bool defined() const { return buf != nullptr; }
    int ndim() const { return (int)shape.size(); }
    int64_t numel() const { return shape_numel(shape); }
    int64_t dim(int i) const;    // negative i counts from the end
    Device device() const { return buf ? buf->device : Device::CPU; }
    // Gradients are accumulated into grad() by backward only for tensors that require them.
    // A frozen parameter does not; gradients still flow through it to its inputs.
    bool requires_grad() const { return buf && buf->requires_grad; }
    void set_requires_grad(bool on) const;  // allocates the gradient when turned on

    float* data() const { return buf->data + offset; }
    float* grad() const { return buf->grad ? buf->grad + offset : nullptr; }

    // A view with another shape of the same numel (-1 in one place is inferred).
    Tensor reshape(Shape s) const;
    Tensor flatten() const;      // (N, ...) -> (N, prod(...))
    // A view of numel(s) elements starting `offset` elements into this tensor (a sub-block,
    // e.g. one half of a cell's (2, N, C, H, W) state); shares data and gradient.
    Tensor view_at(int64_t offset, Shape s) const;

    // Host-side element access (CPU tensors only), mainly for tests and tools.
    float& at(int64_t i) const;
    std::vector<float> to_vector() const;
    std::string desc() const;    // "name (16, 3, 64, 64)"
};

// Constructors. All are contiguous, on `dev`.
Tensor tensor_empty(const Shape& s, Device dev = Device::CPU, bool requires_grad = false);
Tensor tensor_zeros(const Shape& s, Device dev = Device::CPU, bool requires_grad = false);
Tensor tensor_full(const Shape& s, float v, Device dev = Device::CPU);
Tensor tensor_from(const Shape& s, const std::vector<float>& v, bool requires_grad = false);
// A tensor over memory it does not own (an arena slice); `keep` keeps the owner alive.
Tensor tensor_borrow(const Shape& s, float* data, float* grad, std::shared_ptr<void> keep,
                     Device dev = Device::CPU);

// An arena for the activations of a whole recorded graph (e.g. all T steps of an unrolled
// model): while an ArenaScope is active, tensor_empty takes data and gradient from large
// chunks of the arena instead of one allocation each; the chunks live as long as any tensor
// in them. The graph is planned once and its buffers reused by every replay.
struct MemoryArena {
    Device device = Device::CPU;
    std::vector<std::shared_ptr<Buffer>> chunks;   // each a plain Buffer of >= chunk_floats
    int64_t used = 0;                              // floats used in the last chunk
    int64_t chunk_floats = int64_t(1) << 24;       // 64 MiB
    int64_t total_floats() const;                  // all chunks together
    float* alloc(int64_t n);                       // 64-byte aligned
};
struct ArenaScope {
    MemoryArena* prev;
    explicit ArenaScope(MemoryArena& a);
    ~ArenaScope();
};

void tensor_fill(const Tensor& t, float v);
void tensor_copy(const Tensor& dst, const Tensor& src);   // same numel
void grad_zero(const Tensor& t);                          // allocates if absent
void grad_fill(const Tensor& t, float v);

// Shape checks with messages that say what was expected and what was found.
void check_shape(const Tensor& t, const Shape& expected, const char* what);
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);
void check_ndim(const Tensor& t, int nd, const char* what);

// Deterministic random numbers (xorshift + Box-Muller); one generator per use, seeded.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed = 1);
    uint32_t next_u32();
    float uniform();                  // [0, 1)
    float normal();                   // N(0, 1)
    int64_t randint(int64_t n);       // [0, n)
};
void tensor_randn(const Tensor& t, Rng& rng, float std = 1.f);
void tensor_uniform(const Tensor& t, Rng& rng, float lo, float hi);

}  // namespace vt
