// checkpoint.cpp: parameter arenas as .npz (see checkpoint.h).
#include "engine/checkpoint.h"

#include "engine/backend.h"

namespace vt {

void checkpoint_save(const std::string& path, const ParamArena& p, const Npz& extra) {
    Npz z;
    for (const ParamArena::Entry& e : p.entries) {
        std::vector<float> host = e.view.to_vector();
        z.set(e.name, NpyArray::from_f32(e.shape, host.data()));
    }
    for (const std::string& k : extra.names) {
        if (p.has(k)) fail("checkpoint '%s': metadata key '%s' collides with a parameter", path.c_str(), k.c_str());
        z.set(k, extra.get(k));
    }
    npz_write(path, z, /*compress=*/false);
}

static bool has_prefix(const std::string& s, const std::vector<std::string>& prefixes) {
    for (const std::string& pre : prefixes)
        if (s.compare(0, pre.size(), pre) == 0) return true;
    return false;
}

Npz checkpoint_load(const std::string& path, ParamArena& p, const std::vector<std::string>& optional_prefixes) {
    Npz z = npz_read(path);
    for (const ParamArena::Entry& e : p.entries) {
        if (!z.has(e.name)) {
            if (has_prefix(e.name, optional_prefixes)) continue;
            fail("checkpoint '%s' has no parameter '%s' %s (is it a checkpoint of another architecture?)",
                 path.c_str(), e.name.c_str(), shape_str(e.shape).c_str());
        }
        const NpyArray& a = z.get(e.name);
        if (a.shape != e.shape)
            fail("checkpoint '%s': parameter '%s' has shape %s, the model expects %s", path.c_str(), e.name.c_str(),
                 shape_str(a.shape).c_str(), shape_str(e.shape).c_str());
        if (a.dtype != DType::F32 && a.dtype != DType::F64)
            fail("checkpoint '%s': parameter '%s' has dtype %s, expected float32", path.c_str(), e.name.c_str(),
                 dtype_name(a.dtype));
        std::vector<float> v = a.to_f32();
        backend_copy_from_host(e.view.device(), e.view.data(), v.data(), e.view.numel());
    }
    return z;
}

void meta_set_string(Npz& z, const std::string& key, const std::string& v) {
    z.set(key, NpyArray::from_strings({v}));
}

void meta_set_floats(Npz& z, const std::string& key, const std::vector<float>& v) {
    z.set(key, NpyArray::from_f32({(int64_t)v.size()}, v.data()));
}

std::string meta_string(const Npz& z, const std::string& key) {
    std::vector<std::string> v = z.get(key).to_strings();
    if (v.size() != 1) fail("'%s': '%s' should hold one string, has %zu", z.path.c_str(), key.c_str(), v.size());
    return v[0];
}

std::vector<float> meta_floats(const Npz& z, const std::string& key) { return z.get(key).to_f32(); }

}  // namespace vt
