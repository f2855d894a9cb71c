// fuzz_npz_stream.cpp: libFuzzer target for the streaming .npz reader (models/datasets/npz_stream.h),
// the path neural data and features load through (`make fuzz`).
//
// Each input is written to a file (the streaming reader reads files: $TMPDIR, /dev/shm when
// there is one) and read member by member: npz_index, npz_head, npz_array and, for float
// members, npz_read_f32. Bad input must end in vt::Error. The two readers must agree, since
// they share one zip reader: when npz_parse accepts the bytes the stream must give the same
// arrays, and when every streamed member parses, npz_parse must accept the bytes too; a
// disagreement aborts (a finding), as does a header that disagrees with its array.
//
// Seeds: fuzz/corpus/fuzz_npz_stream (the npz seeds of fuzz_npz, plus a small dataset in the
// neural-data layout).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/io/npy.h"
#include "models/datasets/npz_stream.h"

using namespace vt;

static std::string scratch_path() {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = tmp && *tmp ? tmp : access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return dir + "/fuzz_npz_stream." + std::to_string(getpid()) + ".npz";
}

static bool same(const NpyArray& a, const NpyArray& b) {
    return a.dtype == b.dtype && a.shape == b.shape && a.str_len == b.str_len && a.bytes == b.bytes;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    static const std::string path = scratch_path();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data, 1, n, f) != n) abort();
    std::fclose(f);

    bool parsed = true;
    Npz z;
    try {
        z = npz_parse(data, n, path);
    } catch (const Error&) {
        parsed = false;
    }
    NpzIndex idx;
    try {
        idx = npz_index(path);
    } catch (const Error&) {
        if (parsed) abort();  // npz_parse read the same directory
        return 0;
    }
    bool all_members = true;
    for (const ZipMember& m : idx.members) {
        NpyArray a;
        try {
            a = npz_array(idx, m.name);
        } catch (const Error&) {
            all_members = false;
            if (parsed) abort();
        }
        NpyHeader h;
        bool head_ok = true;
        try {
            h = npz_head(idx, m.name);
        } catch (const Error&) {
            head_ok = false;
        }
        if (!all_members) continue;
        if (!head_ok || h.dtype != a.dtype || h.shape != a.shape || h.str_len != a.str_len) abort();
        if (parsed && (!z.has(m.name) || !same(z.get(m.name), a))) abort();
        // A little-endian C-order float member that fills its member exactly streams as float32.
        bool plain = (a.dtype == DType::F32 || a.dtype == DType::F64) && h.swap_width == 0 &&
                     !(h.fortran && h.shape.size() > 1) && h.data_offset + (uint64_t)h.nbytes == m.usize;
        if (plain && a.numel() <= (1 << 16)) {
            std::vector<float> got((size_t)a.numel()), want = a.to_f32();
            try {
                npz_read_f32(idx, m.name, got.data(), a.numel());
            } catch (const Error&) {
                abort();
            }
            if (!got.empty() && std::memcmp(got.data(), want.data(), got.size() * 4) != 0) abort();
        }
    }
    if (all_members && !parsed) abort();  // every member read: the whole file must parse too
    if (parsed && z.names.size() != idx.members.size()) abort();
    return 0;
}
