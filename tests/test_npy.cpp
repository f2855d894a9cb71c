// test_npy.cpp: .npy/.npz round trips of every dtype, numpy compatibility in both directions
// (fixtures from tests/fixtures/make_npz_fixture.py; numpy's own reader when python3 and
// numpy are installed), and malformed input that must end in a vt::Error naming the file.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "engine/io/npy.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

bool same_array(const NpyArray& a, const NpyArray& b) {
    return a.dtype == b.dtype && a.shape == b.shape && a.str_len == b.str_len && a.bytes == b.bytes;
}

// One array of every dtype, plus the corner cases: 0-d, empty, non-ASCII strings.
Npz all_dtypes() {
    Npz z;
    float f32[24];
    for (int i = 0; i < 24; i++) f32[i] = i * 0.5f - 3;
    double f64[] = {0.1, -2.5, 1e300, -0.0, M_PI};
    uint8_t u8[] = {0, 1, 255, 128, 7, 42};
    int32_t i32[] = {INT32_MIN, -1, 0, INT32_MAX};
    int64_t i64[] = {INT64_MIN, INT64_MAX, 12345678901234};
    bool flags[] = {true, false, true, true};
    z.set("f32", NpyArray::from_f32({2, 3, 4}, f32));
    z.set("f64", NpyArray::from_f64({5}, f64));
    z.set("u8", NpyArray::from_u8({2, 3}, u8));
    z.set("i32", NpyArray::from_i32({4}, i32));
    z.set("i64", NpyArray::from_i64({3}, i64));
    z.set("flags", NpyArray::from_bool({4}, flags));
    z.set("names", NpyArray::from_strings({"cat", "h\xc3\xa9llo", "\xe6\x97\xa5\xe6\x9c\xac", "", "a\xf0\x9f\x98\x80" "b"}));
    z.set("scalar", NpyArray::scalar_f32(3.25f));
    z.set("empty", NpyArray::from_f32({0, 3}, nullptr));
    z.set("grid", NpyArray::from_strings({"a", "bb", "ccc", "dddd"}, {2, 2}));
    return z;
}

// The values make_npz_fixture.py's expected() holds, as numpy wrote them.
void check_expected(const Npz& z) {
    std::vector<std::string> names = {"f32", "f64", "u8", "i32", "i64", "flags", "names",
                                      "scalar", "empty", "fortran", "big_f4", "big_i8"};
    REQUIRE(z.names == names);
    const NpyArray& f32 = z.get("f32");
    CHECK(f32.dtype == DType::F32);
    CHECK(f32.shape == Shape{2, 3, 4});
    std::vector<float> v = f32.to_f32();
    for (int i = 0; i < 24; i++) CHECK(v[i] == i * 0.5f - 3);

    const NpyArray& f64 = z.get("f64");
    double f64_ref[] = {0.1, -2.5, 1e300, -0.0, M_PI};
    CHECK(f64.dtype == DType::F64);
    REQUIRE(f64.bytes.size() == sizeof f64_ref);
    CHECK(memcmp(f64.bytes.data(), f64_ref, sizeof f64_ref) == 0);  // bit-exact, -0.0 included

    CHECK(z.get("u8").dtype == DType::U8);
    CHECK(z.get("u8").shape == Shape{2, 3});
    CHECK(z.get("u8").to_i64() == std::vector<int64_t>{0, 1, 255, 128, 7, 42});
    CHECK(z.get("i32").dtype == DType::I32);
    CHECK(z.get("i32").to_i64() == std::vector<int64_t>{INT32_MIN, -1, 0, INT32_MAX});
    CHECK(z.get("i64").dtype == DType::I64);
    CHECK(z.get("i64").to_i64() == std::vector<int64_t>{INT64_MIN, INT64_MAX, 12345678901234});
    CHECK(z.get("flags").dtype == DType::Bool);
    CHECK(z.get("flags").to_i64() == std::vector<int64_t>{1, 0, 1, 1});

    const NpyArray& names_a = z.get("names");
    CHECK(names_a.dtype == DType::Unicode);
    CHECK(names_a.str_len == 5);
    CHECK(names_a.to_strings() == std::vector<std::string>{"cat", "h\xc3\xa9llo", "\xe6\x97\xa5\xe6\x9c\xac", "",
                                                            "a\xf0\x9f\x98\x80" "b"});

    CHECK(z.get("scalar").dtype == DType::F64);
    CHECK(z.get("scalar").shape.empty());
    CHECK(z.get("scalar").to_f64() == std::vector<double>{3.25});
    CHECK(z.get("empty").shape == Shape{0, 3});
    CHECK(z.get("empty").bytes.empty());

    const NpyArray& fo = z.get("fortran");  // written column-major by numpy: read back in C order
    CHECK(fo.dtype == DType::I32);
    CHECK(fo.shape == Shape{2, 3, 4});
    std::vector<int64_t> fv = fo.to_i64();
    for (int i = 0; i < 24; i++) CHECK(fv[i] == i);

    CHECK(z.get("big_f4").dtype == DType::F32);  // '>f4' byte-swapped on load
    CHECK(z.get("big_f4").to_f32() == std::vector<float>{1.5f, -2.0f, 3.0e10f});
    CHECK(z.get("big_i8").dtype == DType::I64);
    CHECK(z.get("big_i8").to_i64() == std::vector<int64_t>{-2, -1, 0, 1, 2});
}

// A .npy image from a header dict and raw data, for hand-made versions and corruptions.
std::vector<uint8_t> make_npy(int major, const std::string& dict, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', (uint8_t)major, 0};
    std::string h = dict + "\n";
    for (int i = 0; i < (major == 1 ? 2 : 4); i++) out.push_back((uint8_t)(h.size() >> 8 * i));
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

std::vector<uint8_t> bytes_of(const void* p, size_t n) { return std::vector<uint8_t>((const uint8_t*)p, (const uint8_t*)p + n); }

size_t find_bytes(const std::vector<uint8_t>& hay, const char* needle, size_t from = 0) {
    size_t n = strlen(needle);
    for (size_t i = from; i + n <= hay.size(); i++)
        if (memcmp(hay.data() + i, needle, n) == 0) return i;
    FAIL("byte pattern not found");
    return 0;
}

void put32_at(std::vector<uint8_t>& v, size_t at, uint32_t x) {
    for (int i = 0; i < 4; i++) v[at + i] = (uint8_t)(x >> 8 * i);
}

bool python_numpy_available() { return std::system("python3 -c 'import numpy' > /dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("npy: every dtype round-trips through .npy") {
    Npz z = all_dtypes();
    for (const std::string& k : z.names) {
        CAPTURE(k);
        const NpyArray& a = z.get(k);
        std::vector<uint8_t> bytes = npy_serialize(a);
        CHECK((bytes.size() - a.bytes.size()) % 64 == 0);  // data 64-byte aligned, as numpy
        CHECK(same_array(npy_parse(bytes.data(), bytes.size(), k), a));
    }
    std::string dir = vt_test::temp_dir(), path = dir + "/f32.npy";
    npy_write(path, z.get("f32"));
    CHECK(same_array(npy_read(path), z.get("f32")));
    CHECK(access((path + ".tmp." + std::to_string(getpid())).c_str(), F_OK) != 0);
    std::remove(path.c_str());
    rmdir(dir.c_str());
}

TEST_CASE("npy: every dtype round-trips through .npz, stored, deflated and ZIP64") {
    Npz z = all_dtypes();
    for (bool compress : {false, true})
        for (bool zip64 : {false, true}) {
            CAPTURE(compress);
            CAPTURE(zip64);
            std::vector<uint8_t> bytes = npz_serialize(z, compress, zip64);
            Npz back = npz_parse(bytes.data(), bytes.size(), "mem.npz");
            REQUIRE(back.names == z.names);
            for (const std::string& k : z.names) CHECK(same_array(back.get(k), z.get(k)));
        }
    std::string dir = vt_test::temp_dir();
    for (bool compress : {false, true}) {
        std::string path = dir + (compress ? "/deflated.npz" : "/stored.npz");
        npz_write(path, z, compress);
        Npz back = npz_read(path);
        CHECK(back.path == path);
        REQUIRE(back.names == z.names);
        for (const std::string& k : z.names) CHECK(same_array(back.get(k), z.get(k)));
        CHECK(back.get("names").to_strings()[4] == "a\xf0\x9f\x98\x80" "b");
        std::remove(path.c_str());
    }
    CHECK(rmdir(dir.c_str()) == 0);  // no temporary files left behind
}

TEST_CASE("npy: reads numpy's .npz files exactly (deflated, stored, ZIP64) and its .npy") {
    for (const char* name : {"numpy_arrays.npz", "numpy_arrays_stored.npz"}) {
        CAPTURE(name);
        check_expected(npz_read(vt_test::fixture(name)));
    }
    Npz z64 = npz_read(vt_test::fixture("numpy_zip64.npz"));  // ZIP64 extras + ZIP64 end record
    CHECK(z64.names == std::vector<std::string>{"f32", "names", "scalar"});
    CHECK(z64.get("f32").to_f32()[23] == 23 * 0.5f - 3);
    CHECK(z64.get("names").to_strings()[1] == "h\xc3\xa9llo");
    CHECK(z64.get("scalar").to_f64() == std::vector<double>{3.25});
    NpyArray f32 = npy_read(vt_test::fixture("numpy_f32.npy"));
    CHECK(f32.shape == Shape{2, 3, 4});
    CHECK(f32.to_f32()[5] == 5 * 0.5f - 3);
}

TEST_CASE("npy: header versions 2.0 and 3.0, big-endian, fortran order") {
    float v[2] = {1.5f, -4.0f};
    for (int major : {1, 2, 3}) {
        CAPTURE(major);
        std::vector<uint8_t> b = make_npy(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", bytes_of(v, 8));
        CHECK(npy_parse(b.data(), b.size(), "v.npy").to_f32() == std::vector<float>{1.5f, -4.0f});
    }
    uint8_t be[8] = {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe};  // '>i4' 1, -2
    std::vector<uint8_t> b = make_npy(1, "{\"descr\": \">i4\", \"fortran_order\": False, \"shape\": (2,)}", bytes_of(be, 8));
    NpyArray a = npy_parse(b.data(), b.size(), "be.npy");
    CHECK(a.dtype == DType::I32);
    CHECK(a.to_i64() == std::vector<int64_t>{1, -2});
    double col_major[6] = {0, 3, 1, 4, 2, 5};  // the (2, 3) matrix [[0 1 2] [3 4 5]] in Fortran order
    b = make_npy(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", bytes_of(col_major, 48));
    a = npy_parse(b.data(), b.size(), "f.npy");
    CHECK(a.shape == Shape{2, 3});
    CHECK(a.to_f64() == std::vector<double>{0, 1, 2, 3, 4, 5});
    b = make_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }", {200});
    CHECK(npy_parse(b.data(), b.size(), "s.npy").to_f32() == std::vector<float>{200});
}

TEST_CASE("npy: conversions and their refusals") {
    Npz z = all_dtypes();
    CHECK(z.get("u8").to_f32()[2] == 255.f);
    CHECK(z.get("flags").to_f64() == std::vector<double>{1, 0, 1, 1});
    CHECK(z.get("i64").to_f64()[2] == 12345678901234.0);
    CHECK(z.get("grid").shape == Shape{2, 2});
    CHECK(z.get("grid").to_strings()[3] == "dddd");
    CHECK(has(error_of([&] { z.get("f32").to_i64(); }), "expected an integer or bool dtype"));
    CHECK(has(error_of([&] { z.get("names").to_f32(); }), "the array is str"));
    CHECK(has(error_of([&] { z.get("f32").to_strings(); }), "expected a str dtype"));
    CHECK(has(error_of([&] { NpyArray::from_strings({"ok", "bad \xc3"}); }), "string 1 is not valid UTF-8"));
    CHECK(has(error_of([&] { NpyArray::from_strings({"\xed\xa0\x80"}); }), "not valid UTF-8"));  // a surrogate
}

TEST_CASE("npy: numpy reads what ventral writes") {
    if (!python_numpy_available()) {
        MESSAGE("skipped: python3 with numpy not found");
        return;
    }
    Npz z = npz_read(vt_test::fixture("numpy_arrays_stored.npz"));  // big-endian and fortran inside
    std::string dir = vt_test::temp_dir(), script = vt_test::fixture("make_npz_fixture.py");
    std::vector<std::string> files = {dir + "/deflated.npz", dir + "/stored.npz", dir + "/zip64.npz", dir + "/bad.npz"};
    npz_write(files[0], z, true);
    npz_write(files[1], z, false);
    std::vector<uint8_t> z64 = npz_serialize(z, true, true);
    file_write_atomic(files[2], z64.data(), z64.size());
    Npz wrong = z;
    int32_t seven = 7;
    wrong.set("i32", NpyArray::from_i32({1}, &seven));
    npz_write(files[3], wrong);
    for (size_t i = 0; i < files.size(); i++) {
        CAPTURE(files[i]);
        int rc = std::system(("python3 '" + script + "' --check '" + files[i] + "' > /dev/null").c_str());
        CHECK((rc == 0) == (i < 3));  // the checker accepts ventral's files and refuses a wrong one
        std::remove(files[i].c_str());
    }
    rmdir(dir.c_str());
}

TEST_CASE("npy: malformed files fail with the file name and what was expected") {
    std::string dir = vt_test::temp_dir();
    std::string fixture = vt_test::fixture("numpy_arrays.npz"), stored = vt_test::fixture("numpy_arrays_stored.npz");

    SUBCASE("missing file") {
        CHECK(error_of([] { npz_read("/nonexistent/x.npz"); }) == "cannot open '/nonexistent/x.npz': No such file or directory");
        CHECK(error_of([] { npy_read("/nonexistent/x.npy"); }) == "cannot open '/nonexistent/x.npy': No such file or directory");
    }
    SUBCASE("truncated npz") {
        std::vector<uint8_t> d = file_read_all(fixture);
        d.resize(d.size() / 2);
        std::string path = dir + "/half.npz";
        file_write_atomic(path, d.data(), d.size());
        std::string e = error_of([&] { npz_read(path); });
        CHECK(has(e, "'" + path + "'"));
        CHECK(has(e, "truncated"));
        std::remove(path.c_str());
    }
    SUBCASE("a corrupted byte in a stored member fails its CRC") {
        std::vector<uint8_t> d = file_read_all(stored);
        d[find_bytes(d, "\x93NUMPY") + 130] ^= 0x40;  // inside f32.npy's float data
        std::string path = dir + "/crc.npz";
        file_write_atomic(path, d.data(), d.size());
        std::string e = error_of([&] { npz_read(path); });
        CHECK(has(e, "'" + path + "' member 'f32.npy'"));
        CHECK(has(e, "CRC-32 mismatch"));
        std::remove(path.c_str());
    }
    SUBCASE("every corrupted byte of a deflated member fails or changes nothing") {
        std::vector<uint8_t> d = file_read_all(fixture);
        Npz good = npz_parse(d.data(), d.size(), "good.npz");
        size_t cd = find_bytes(d, "PK\x01\x02");  // f32.npy's compressed bytes: from its local header to csize
        size_t start = 30 + 7 + (d[28] | d[29] << 8), csize = d[cd + 20] | d[cd + 21] << 8;
        int failed = 0;
        for (size_t at = start; at < start + csize; at++) {
            std::vector<uint8_t> c = d;
            c[at] ^= 0x55;
            try {
                Npz z = npz_parse(c.data(), c.size(), "flip.npz");
                CHECK(z.get("f32").bytes == good.get("f32").bytes);  // e.g. an unused Huffman code length
            } catch (const vt::Error& e) {
                failed++;
                if (!has(e.what(), "'flip.npz' member 'f32.npy': ")) CHECK(std::string(e.what()) == "");
            }
        }
        CHECK(failed > (int)csize * 9 / 10);
        std::string path = dir + "/deflate.npz";
        d[start + csize / 2] ^= 0x55;
        file_write_atomic(path, d.data(), d.size());
        CHECK(has(error_of([&] { npz_read(path); }), "'" + path + "' member 'f32.npy': "));
        std::remove(path.c_str());
    }
    SUBCASE("unsupported compression method, overlapping members") {
        std::vector<uint8_t> d = file_read_all(stored);
        size_t cd = find_bytes(d, "PK\x01\x02");
        std::vector<uint8_t> m = d;
        m[cd + 10] = 12;  // bzip2
        std::string e = error_of([&] { npz_parse(m.data(), m.size(), "m.npz"); });
        CHECK(has(e, "'m.npz' member 'f32.npy': unsupported compression method 12 (expected 0 stored or 8 deflate)"));
        m = d;
        size_t cd2 = find_bytes(d, "PK\x01\x02", cd + 4);
        put32_at(m, cd2 + 42, 0);  // the second member's local header offset -> the first's
        CHECK(has(error_of([&] { npz_parse(m.data(), m.size(), "o.npz"); }), "overlap"));
    }
    SUBCASE("zip bombs and lying sizes") {
        std::vector<float> zeros(100000, 0.f);
        Npz z;
        z.set("zeros", NpyArray::from_f32({100000}, zeros.data()));
        std::vector<uint8_t> d = npz_serialize(z, true);
        size_t cd = find_bytes(d, "PK\x01\x02");
        std::vector<uint8_t> m = d;
        put32_at(m, cd + 24, 1000);  // declares 1000 bytes, inflates to 400128
        CHECK(has(error_of([&] { npz_parse(m.data(), m.size(), "bomb.npz"); }),
                  "'bomb.npz' member 'zeros.npy': inflates to more than the declared 1000 bytes"));
        put32_at(m, cd + 24, 0x7fffffff);
        CHECK(has(error_of([&] { npz_parse(m.data(), m.size(), "bomb.npz"); }), "beyond deflate's 1032:1 limit"));
        put32_at(m, cd + 24, 400200);
        CHECK(has(error_of([&] { npz_parse(m.data(), m.size(), "bomb.npz"); }),
                  "inflates to 400128 bytes, the central directory declares 400200"));
        m = file_read_all(fixture);
        cd = find_bytes(m, "PK\x01\x02");
        put32_at(m, cd + 20, (m[cd + 20] | m[cd + 21] << 8) / 2);  // f32.npy: half its compressed bytes
        CHECK(has(error_of([&] { npz_parse(m.data(), m.size(), "cut.npz"); }),
                  "'cut.npz' member 'f32.npy': deflate stream ends early"));
    }
    SUBCASE("wrong magic, bad header, lying shapes") {
        std::vector<uint8_t> d = {'N', 'O', 'T', 'N', 'U', 'M', 'P', 'Y', 0, 0, 0, 0};
        std::string path = dir + "/magic.npy";
        file_write_atomic(path, d.data(), d.size());
        CHECK(error_of([&] { npy_read(path); }) ==
              "'" + path + "': not a .npy file (expected magic \\x93NUMPY, found \"NOTNUMPY\" in a 12-byte file)");
        std::remove(path.c_str());
        std::vector<uint8_t> npz = file_read_all(fixture);
        CHECK(has(error_of([&] { npy_parse(npz.data(), npz.size(), "z"); }), "is a zip (.npz) archive"));
        std::vector<uint8_t> npy = file_read_all(vt_test::fixture("numpy_f32.npy"));
        CHECK(has(error_of([&] { npz_parse(npy.data(), npy.size(), "y"); }), "is a .npy file"));

        auto err = [](const std::string& dict, size_t nbytes) {
            std::vector<uint8_t> b = make_npy(1, dict, std::vector<uint8_t>(nbytes, 0));
            return error_of([&] { npy_parse(b.data(), b.size(), "h.npy"); });
        };
        CHECK(has(err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) ", 24), "'h.npy': bad .npy header dict"));
        CHECK(has(err("{'descr': '<f4', 'shape': (2,), }", 8), "missing key 'fortran_order'"));
        CHECK(has(err("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16), "unsupported dtype '<c8'"));
        CHECK(has(err("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }", 8),
                  "overflows"));
        CHECK(has(err("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8), "overflows int64"));
        CHECK(has(err("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }", 8),
                  "data too short for float32 (1000000000000,): expected 4000000000000 bytes"));
        CHECK(has(err("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8),
                  "'h.npy': data too short for float32 (3,): expected 12 bytes after the 68-byte header, found 8"));
        std::vector<uint8_t> v4 = make_npy(4, "{}", {});
        CHECK(has(error_of([&] { npy_parse(v4.data(), v4.size(), "v4"); }), "unsupported .npy format version 4.0"));
    }
    SUBCASE("missing key names the file and the keys") {
        Npz z = npz_read(fixture);
        std::string e = error_of([&] { z.get("nope"); });
        CHECK(has(e, "'" + fixture + "' has no array 'nope' (available: f32, f64, u8"));
    }
    rmdir(dir.c_str());
}
