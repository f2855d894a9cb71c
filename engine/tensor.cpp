// tensor.cpp: storage, constructors, views and shape checks (see tensor.h).
#include "engine/tensor.h"

#include <cmath>
#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "engine/backend.h"

namespace vt {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

// ---- storage: the one place memory is allocated ----------------------------------------

static float* buffer_alloc(int64_t n, Device dev) {
    if (n == 0) n = 1;
    if (dev == Device::CUDA) return backend_cuda_alloc(n);
    void* p = nullptr;
    if (posix_memalign(&p, 64, (size_t)n * sizeof(float)) != 0) throw std::bad_alloc();
    return (float*)p;
}

static void buffer_free(float* p, Device dev) {
    if (!p) return;
    if (dev == Device::CUDA) backend_cuda_free(p);
    else std::free(p);
}

Buffer::~Buffer() {
    if (!external) buffer_free(data, device);
    buffer_free(grad, device);
}

void Buffer::ensure_grad() {
    if (grad) return;
    grad = buffer_alloc(size, device);
    backend_fill(device, grad, size, 0.f);
}

// ---- shapes ---------------------------------------------------------------------------

std::string shape_str(const Shape& s) {
    std::string r = "(";
    for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + (s.size() == 1 ? ",)" : ")");
}

int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

int64_t Tensor::dim(int i) const {
    int nd = ndim();
    CHECK(i >= -nd && i < nd, "dim %d out of range for %s", i, desc().c_str());
    return shape[i < 0 ? i + nd : i];
}

Tensor Tensor::reshape(Shape s) const {
    int infer = -1;
    int64_t known = 1;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == -1) {
            CHECK(infer < 0, "reshape %s to %s: more than one -1", desc().c_str(), shape_str(s).c_str());
            infer = (int)i;
        } else {
            known *= s[i];
        }
    }
    if (infer >= 0 && known > 0) s[infer] = numel() / known;
    CHECK(shape_numel(s) == numel(), "reshape %s to %s: element counts differ", desc().c_str(),
          shape_str(s).c_str());
    Tensor v = *this;
    v.shape = s;
    return v;
}

Tensor Tensor::view_at(int64_t off, Shape s) const {
    CHECK(off >= 0 && off + shape_numel(s) <= numel(), "view_at(%lld, %s) out of range of %s", (long long)off,
          shape_str(s).c_str(), desc().c_str());
    Tensor v = *this;
    v.offset += off;
    v.shape = s;
    return v;
}

Tensor Tensor::flatten() const {
    CHECK(ndim() >= 1, "flatten of a scalar %s", desc().c_str());
    return reshape({shape[0], -1});
}

void Tensor::set_requires_grad(bool on) const {
    buf->requires_grad = on;
    if (on) buf->ensure_grad();
}

float& Tensor::at(int64_t i) const {
    CHECK(device() == Device::CPU, "at() on a %s tensor", device_name(device()));
    CHECK(i >= 0 && i < numel(), "index %lld out of range for %s", (long long)i, desc().c_str());
    return data()[i];
}

std::vector<float> Tensor::to_vector() const {
    std::vector<float> v((size_t)numel());
    backend_copy_to_host(device(), v.data(), data(), numel());
    return v;
}

std::string Tensor::desc() const { return (name.empty() ? std::string("tensor") : name) + " " + shape_str(shape); }

// ---- constructors ---------------------------------------------------------------------

// ---- arenas ---------------------------------------------------------------------------

static thread_local MemoryArena* g_arena = nullptr;

ArenaScope::ArenaScope(MemoryArena& a) : prev(g_arena) { g_arena = &a; }
ArenaScope::~ArenaScope() { g_arena = prev; }

int64_t MemoryArena::total_floats() const {
    int64_t n = 0;
    for (const auto& c : chunks) n += c->size;
    return n;
}

float* MemoryArena::alloc(int64_t n) {
    n = (n + 15) / 16 * 16;  // keep 64-byte alignment
    if (chunks.empty() || used + n > chunks.back()->size) {
        auto b = std::make_shared<Buffer>();
        b->size = std::max(n, chunk_floats);
        b->device = device;
        b->data = buffer_alloc(b->size, device);
        chunks.push_back(b);
        used = 0;
    }
    float* p = chunks.back()->data + used;
    used += n;
    return p;
}

Tensor tensor_empty(const Shape& s, Device dev, bool requires_grad) {
    for (int64_t d : s) CHECK(d >= 0, "negative dimension in shape %s", shape_str(s).c_str());
    if (g_arena && g_arena->device == dev) {
        // data and gradient in one piece, so both sit in the chunk the tensor keeps alive
        int64_t n = (shape_numel(s) + 15) / 16 * 16;
        float* data = g_arena->alloc(requires_grad ? 2 * n : n);
        Tensor t = tensor_borrow(s, data, requires_grad ? data + n : nullptr, g_arena->chunks.back(), dev);
        t.buf->requires_grad = requires_grad;
        if (requires_grad) backend_fill(dev, t.grad(), n, 0.f);
        return t;
    }
    Tensor t;
    t.buf = std::make_shared<Buffer>();
    t.buf->size = shape_numel(s);
    t.buf->device = dev;
    t.buf->data = buffer_alloc(t.buf->size, dev);
    t.shape = s;
    t.set_requires_grad(requires_grad);
    return t;
}

Tensor tensor_zeros(const Shape& s, Device dev, bool requires_grad) {
    Tensor t = tensor_empty(s, dev, requires_grad);
    tensor_fill(t, 0.f);
    return t;
}

Tensor tensor_full(const Shape& s, float v, Device dev) {
    Tensor t = tensor_empty(s, dev);
    tensor_fill(t, v);
    return t;
}

Tensor tensor_from(const Shape& s, const std::vector<float>& v, bool requires_grad) {
    CHECK((int64_t)v.size() == shape_numel(s), "tensor_from: %zu values for shape %s", v.size(),
          shape_str(s).c_str());
    Tensor t = tensor_empty(s, Device::CPU, requires_grad);
    if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(float));
    return t;
}

namespace {
// A Buffer that borrows memory and keeps its owner alive.
struct BorrowedBuffer : Buffer {
    std::shared_ptr<void> keep;
    float* borrowed_grad = nullptr;
    ~BorrowedBuffer() { if (grad == borrowed_grad) grad = nullptr; }
};
}  // namespace

Tensor tensor_borrow(const Shape& s, float* data, float* grad, std::shared_ptr<void> keep, Device dev) {
    auto b = std::make_shared<BorrowedBuffer>();
    b->data = data;
    b->external = data;
    b->grad = grad;
    b->borrowed_grad = grad;
    b->size = shape_numel(s);
    b->device = dev;
    b->keep = std::move(keep);
    Tensor t;
    t.buf = b;
    t.shape = s;
    return t;
}

void tensor_fill(const Tensor& t, float v) { backend_fill(t.device(), t.data(), t.numel(), v); }

void tensor_copy(const Tensor& dst, const Tensor& src) {
    CHECK(dst.numel() == src.numel(), "copy %s into %s: sizes differ", src.desc().c_str(), dst.desc().c_str());
    backend_copy(dst.device(), dst.data(), src.device(), src.data(), src.numel());
}

void grad_zero(const Tensor& t) { grad_fill(t, 0.f); }

void grad_fill(const Tensor& t, float v) {
    t.buf->ensure_grad();
    backend_fill(t.device(), t.grad(), t.numel(), v);
}

// ---- checks ---------------------------------------------------------------------------

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
    if (t.shape != expected)
        fail("%s: expected shape %s, got %s", what, shape_str(expected).c_str(), shape_str(t.shape).c_str());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
    if (a.shape != b.shape)
        fail("%s: shapes differ: %s vs %s", what, shape_str(a.shape).c_str(), shape_str(b.shape).c_str());
}

void check_ndim(const Tensor& t, int nd, const char* what) {
    if (t.ndim() != nd)
        fail("%s: expected a %d-d tensor, got %s", what, nd, shape_str(t.shape).c_str());
}

// ---- random numbers -------------------------------------------------------------------

Rng::Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
    if (s == 0) s = 1;
    for (int i = 0; i < 4; i++) next_u32();
}

uint32_t Rng::next_u32() {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (uint32_t)((s * 0x2545F4914F6CDD1Dull) >> 32);
}

float Rng::uniform() { return (next_u32() >> 8) * (1.0f / 16777216.0f); }

float Rng::normal() {
    float u1 = uniform(), u2 = uniform();
    if (u1 < 1e-12f) u1 = 1e-12f;
    return std::sqrt(-2.f * std::log(u1)) * std::cos(6.2831853f * u2);
}

int64_t Rng::randint(int64_t n) { return (int64_t)(((uint64_t)next_u32() << 32 | next_u32()) % (uint64_t)n); }

void tensor_randn(const Tensor& t, Rng& rng, float std) {
    std::vector<float> v((size_t)t.numel());
    for (auto& x : v) x = rng.normal() * std;
    backend_copy_from_host(t.device(), t.data(), v.data(), t.numel());
}

void tensor_uniform(const Tensor& t, Rng& rng, float lo, float hi) {
    std::vector<float> v((size_t)t.numel());
    for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
    backend_copy_from_host(t.device(), t.data(), v.data(), t.numel());
}

}  // namespace vt
