// fuzz_npz.cpp: libFuzzer target for the .npy and .npz readers (`make fuzz`).
//
// Every input goes to both npy_parse and npz_parse. Bad input must end in vt::Error; a crash,
// a sanitizer report, a leak, a timeout or an out-of-memory is a finding. Whatever parses is
// converted (to_f32/to_i64/to_strings) and re-serialised, and must parse back to the same
// arrays: a failure there aborts, since it is a bug rather than bad input.
//
// Seeds (fuzz/corpus/fuzz_npz): the numpy-written fixtures of tests/fixtures (deflated,
// stored, ZIP64, plain .npy), an .npz written by ventral with forced ZIP64 records, and a
// hand-made version-2.0 big-endian fortran-order .npy.
#include <cstdlib>

#include "engine/io/npy.h"

using namespace vt;

static bool same(const NpyArray& a, const NpyArray& b) {
    return a.dtype == b.dtype && a.shape == b.shape && a.str_len == b.str_len && a.bytes == b.bytes;
}

static void exercise(const NpyArray& a) {
    if (a.numel() <= (1 << 16)) {  // conversions widen 8x at most: keep them cheap
        try {
            if (a.dtype == DType::Unicode) a.to_strings();
            else a.to_f32(), a.to_f64();
        } catch (const Error&) {
        }
        try {
            a.to_i64();
        } catch (const Error&) {
        }
    }
    try {
        std::vector<uint8_t> b = npy_serialize(a);
        if (!same(npy_parse(b.data(), b.size(), "reserialized.npy"), a)) abort();
    } catch (...) {
        abort();  // what was parsed must serialise and parse back
    }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    try {
        exercise(npy_parse(data, n, "fuzz.npy"));
    } catch (const Error&) {
    }
    Npz z;
    try {
        z = npz_parse(data, n, "fuzz.npz");
    } catch (const Error&) {
        return 0;
    }
    for (const std::string& k : z.names) exercise(z.get(k));
    try {
        for (bool compress : {false, true}) {
            std::vector<uint8_t> b = npz_serialize(z, compress, compress);
            Npz back = npz_parse(b.data(), b.size(), "reserialized.npz");
            if (back.names != z.names) abort();
            for (const std::string& k : z.names)
                if (!same(back.get(k), z.get(k))) abort();
        }
    } catch (...) {
        abort();
    }
    return 0;
}
