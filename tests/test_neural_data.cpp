// test_neural_data.cpp: the neural dataset format (models/datasets/neural_data.h) and the
// member-at-a-time .npz reader under it (models/datasets/npz_stream.h): round trips, NaN handling,
// and every validation error, each on a small file built here.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>

#include "engine/io/npy.h"
#include "models/datasets/neural_data.h"
#include "models/datasets/npz_stream.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

// R=3, N=5, U=4, B=2 with labels; responses r*100 + i*10 + u + b/10, trial 2 of image 1 missing.
NeuralData small_dataset() {
    NeuralData d;
    d.path = "small";
    d.R = 3, d.N = 5, d.U = 4, d.B = 2, d.H = 4, d.W = 6;
    d.images.resize(d.N * d.H * d.W * 3);
    for (size_t k = 0; k < d.images.size(); k++) d.images[k] = (uint8_t)(k * 7);
    d.responses.resize(d.R * d.N * d.U * d.B);
    for (int64_t r = 0; r < d.R; r++)
        for (int64_t i = 0; i < d.N; i++)
            for (int64_t u = 0; u < d.U; u++)
                for (int64_t b = 0; b < d.B; b++) d.at(r, i, u, b) = r * 100.f + i * 10.f + u + b / 10.f;
    for (int64_t u = 0; u < d.U; u++)
        for (int64_t b = 0; b < d.B; b++) d.at(2, 1, u, b) = NAN;
    d.unit_area = {"V4", "IT", "V4", "IT"};
    d.unit_id = {"a", "b", "c", "d"};
    d.image_id = {"i0", "i1", "i2", "i3", "i4"};
    d.image_object = {"car", "car", "dog", "dog", "dog"};
    d.image_category = {"vehicle", "vehicle", "animal", "animal", "animal"};
    d.image_variation = {0, 3, 6, 0, 3};
    d.bin_start_ms = {70, 90};
    d.bin_end_ms = {90, 110};
    d.presentation_ms = 100;
    return d;
}

// The npz of small_dataset() as arrays, for corrupting one at a time.
Npz small_npz() {
    NeuralData d = small_dataset();
    Npz z;
    z.set("images", NpyArray::from_u8({d.N, d.H, d.W, 3}, d.images.data()));
    z.set("responses", NpyArray::from_f32({d.R, d.N, d.U, d.B}, d.responses.data()));
    z.set("unit_area", NpyArray::from_strings(d.unit_area));
    z.set("bin_start_ms", NpyArray::from_f32({d.B}, d.bin_start_ms.data()));
    z.set("bin_end_ms", NpyArray::from_f32({d.B}, d.bin_end_ms.data()));
    z.set("image_variation", NpyArray::from_i32({d.N}, d.image_variation.data()));
    return z;
}

std::string load_error(const std::string& dir, const Npz& z) {
    std::string p = dir + "/bad.npz";
    npz_write(p, z);
    return error_of([&] { neural_data_load(p); });
}

}  // namespace

TEST_CASE("neural: a dataset round-trips through save and load, with and without images") {
    std::string dir = vt_test::temp_dir(), path = dir + "/d.npz";
    NeuralData d = small_dataset();
    neural_data_save(path, d);
    NeuralData e = neural_data_load(path);
    CHECK(e.R == 3);
    CHECK(e.N == 5);
    CHECK(e.U == 4);
    CHECK(e.B == 2);
    CHECK(e.H == 4);
    CHECK(e.W == 6);
    CHECK(e.images == d.images);
    REQUIRE(e.responses.size() == d.responses.size());
    for (size_t k = 0; k < d.responses.size(); k++)
        CHECK((std::isnan(d.responses[k]) ? std::isnan(e.responses[k]) : e.responses[k] == d.responses[k]));
    CHECK(e.unit_area == d.unit_area);
    CHECK(e.unit_id == d.unit_id);
    CHECK(e.image_object == d.image_object);
    CHECK(e.image_category == d.image_category);
    CHECK(e.image_variation == d.image_variation);
    CHECK(e.bin_end_ms[1] == 110.f);
    CHECK(neural_areas(e) == std::vector<std::string>{"V4", "IT"});

    NeuralData f = neural_data_load(path, false);
    CHECK(f.images.empty());
    CHECK(f.responses.size() == d.responses.size());

    // Optional arrays absent: ids get defaults, labels stay empty.
    Npz z = small_npz();
    npz_write(path, z);
    NeuralData g = neural_data_load(path);
    CHECK(g.unit_id[3] == "unit3");
    CHECK(g.image_id[4] == "image4");
    CHECK(g.image_object.empty());
    CHECK(g.presentation_ms == 100.f);
    std::remove(path.c_str());
    std::remove(dir.c_str());
}

TEST_CASE("neural: responses numpy saved transposed (Fortran order) or big-endian load as numpy.load reads them") {
    REQUIRE_MESSAGE(vt_test::shell_run("python3 -c 'import numpy' 2>&1").rc == 0, "numpy is needed (third_party/install-deps.sh)");
    const std::string dir = vt_test::temp_dir(), path = dir + "/c.npz";
    NeuralData d = small_dataset();
    neural_data_save(path, d);
    // responses rewritten by numpy: in Fortran order (a transposed array's layout: the file's
    // header says fortran_order True), big-endian, and both
    const char* kinds[][2] = {{"f", "np.asfortranarray(r)"},
                              {"be", "r.astype(\">f4\")"},
                              {"fbe", "np.asfortranarray(r.astype(\">f4\"))"}};
    for (const auto& k : kinds) {
        const std::string out = dir + "/" + k[0] + ".npz";
        vt_test::ShellRun r = vt_test::shell_run(
            "python3 -c 'import numpy as np, sys\n"
            "z = dict(np.load(sys.argv[1]))\n"
            "r = z[\"responses\"]\n"
            "z[\"responses\"] = " + std::string(k[1]) + "\n"
            "np.savez(sys.argv[2], **z)' " + vt_test::shell_quote(path) + " " + vt_test::shell_quote(out) + " " + k[0] + " 2>&1");
        INFO(k[0] << ": " << r.out);
        REQUIRE(r.rc == 0);
        if (std::string(k[0]).find('f') == 0) CHECK(npz_head(npz_index(out), "responses").fortran);
        NeuralData e = neural_data_load(out);
        REQUIRE(e.responses.size() == d.responses.size());
        size_t same = 0;
        for (size_t i = 0; i < d.responses.size(); i++)
            same += std::isnan(d.responses[i]) ? std::isnan(e.responses[i]) : e.responses[i] == d.responses[i];
        CHECK(same == d.responses.size());
    }
}

TEST_CASE("neural: the trial average skips NaN trials") {
    NeuralData d = small_dataset();
    std::vector<float> m = neural_trial_mean(d);
    // image 0 unit 1 bin 1: trials 0, 100, 200 (+ 0 + 1 + 0.1) -> 101.1
    CHECK(m[(0 * d.U + 1) * d.B + 1] == doctest::Approx(101.1f));
    // image 1 lost trial 2: mean of trials 0 and 1 = 50 + 10 + u
    CHECK(m[(1 * d.U + 2) * d.B + 0] == doctest::Approx(62.f));
    for (int64_t u = 0; u < d.U; u++)
        for (int64_t r = 0; r < d.R; r++) d.at(r, 3, u, 0) = NAN;
    m = neural_trial_mean(d);
    CHECK(std::isnan(m[(3 * d.U + 0) * d.B + 0]));
    CHECK(!std::isnan(m[(3 * d.U + 0) * d.B + 1]));
}

TEST_CASE("neural: npz_stream reads members like npz_read, stored, deflated and ZIP64") {
    for (const char* name : {"numpy_arrays.npz", "numpy_arrays_stored.npz", "numpy_zip64.npz"}) {
        CAPTURE(name);
        std::string path = vt_test::fixture(name);
        Npz ref = npz_read(path);
        NpzIndex z = npz_index(path);
        REQUIRE(z.members.size() == ref.names.size());
        for (const std::string& k : ref.names) {
            CAPTURE(k);
            NpyArray a = npz_array(z, k);
            CHECK(a.bytes == ref.get(k).bytes);
            CHECK(a.shape == ref.get(k).shape);
            NpyHeader h = npz_head(z, k);
            CHECK(h.shape == ref.get(k).shape);
            CHECK(h.dtype == ref.get(k).dtype);
        }
    }
    // float32 streamed as is, float64 converted; a wrong count or dtype fails naming the member.
    std::string dir = vt_test::temp_dir(), path = dir + "/f.npz";
    std::vector<float> f(1000);
    std::vector<double> g(1000);
    for (int i = 0; i < 1000; i++) f[i] = i * 0.5f, g[i] = i * 0.25;
    Npz z;
    z.set("f", NpyArray::from_f32({10, 100}, f.data()));
    z.set("g", NpyArray::from_f64({1000}, g.data()));
    z.set("s", NpyArray::from_strings({"x"}));
    for (bool compress : {false, true}) {
        npz_write(path, z, compress);
        NpzIndex zi = npz_index(path);
        std::vector<float> out(1000);
        npz_read_f32(zi, "f", out.data(), 1000);
        CHECK(out == f);
        npz_read_f32(zi, "g", out.data(), 1000);
        CHECK(out[999] == 249.75f);
        CHECK(has(error_of([&] { npz_read_f32(zi, "f", out.data(), 999); }), "holds 1000 elements, expected 999"));
        CHECK(has(error_of([&] { npz_read_f32(zi, "s", out.data(), 1); }), "member 's.npy'"));
        CHECK(has(error_of([&] { npz_index(path).member("nope"); }), "has no array 'nope' (it has: f, g, s)"));
    }
    // A flipped byte in the data is caught by the CRC.
    npz_write(path, z, false);
    {
        std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
        io.seekp(200);
        io.put('\x55');
    }
    std::vector<float> out(1000);
    CHECK(has(error_of([&] { npz_read_f32(npz_index(path), "f", out.data(), 1000); }), "CRC-32 mismatch"));
    std::ofstream(path, std::ios::binary) << "not a zip at all, just text";
    CHECK(has(error_of([&] { npz_index(path); }), "not an .npz (zip) file"));
    std::remove(path.c_str());
    std::remove(dir.c_str());
}

TEST_CASE("neural: every validation error names the array and what is wrong") {
    std::string dir = vt_test::temp_dir();
    NeuralData d = small_dataset();
    struct Case {
        const char* what;
        std::function<void(Npz&)> corrupt;
        const char* message;
    };
    std::vector<float> f64src(d.responses);
    const Case cases[] = {
        {"missing responses", [](Npz& z) { z.arrays.erase("responses"); z.names.erase(z.names.begin() + 1); },
         "the required array 'responses' is missing"},
        {"responses float64",
         [&](Npz& z) {
             std::vector<double> v(f64src.begin(), f64src.end());
             z.set("responses", NpyArray::from_f64({3, 5, 4, 2}, v.data()));
         },
         "'responses' must be float32, found float64"},
        {"responses 3-d", [&](Npz& z) { z.set("responses", NpyArray::from_f32({15, 4, 2}, f64src.data())); },
         "'responses' must have 4 dimensions"},
        {"images float", [&](Npz& z) { z.set("images", NpyArray::from_f32({5, 2, 2, 3}, f64src.data())); },
         "'images' must be uint8 RGB, found float32"},
        {"images grey", [&](Npz& z) { z.set("images", NpyArray::from_u8({5, 4, 6}, d.images.data())); },
         "'images' must have shape (N, H, W, 3)"},
        {"images N", [&](Npz& z) { z.set("images", NpyArray::from_u8({4, 4, 6, 3}, d.images.data())); },
         "'images' holds 4 images but 'responses' (3, 5, 4, 2) has N = 5"},
        {"unit_area length", [](Npz& z) { z.set("unit_area", NpyArray::from_strings({"V4", "IT"})); },
         "'unit_area' must have shape (4,) (one area per unit), found (2,)"},
        {"unit_area numeric", [&](Npz& z) { z.set("unit_area", NpyArray::from_f32({4}, f64src.data())); },
         "'unit_area' must be a unicode string array"},
        {"unit_area empty name", [](Npz& z) { z.set("unit_area", NpyArray::from_strings({"V4", "", "V4", "IT"})); },
         "unit_area[1] is empty"},
        {"bins length", [](Npz& z) { float v[3] = {0, 1, 2}; z.set("bin_end_ms", NpyArray::from_f32({3}, v)); },
         "'bin_end_ms' must have shape (2,)"},
        {"bins order", [](Npz& z) { float v[2] = {90, 90}; z.set("bin_end_ms", NpyArray::from_f32({2}, v)); },
         "time bin 1 is [90, 90) ms"},
        {"variation float", [&](Npz& z) { z.set("image_variation", NpyArray::from_f32({5}, f64src.data())); },
         "'image_variation' must be an integer array"},
        {"image_object length", [](Npz& z) { z.set("image_object", NpyArray::from_strings({"a", "b"})); },
         "'image_object' must have shape (5,)"},
        {"presentation", [](Npz& z) { z.set("presentation_ms", NpyArray::scalar_f32(-5)); },
         "presentation_ms must be > 0"},
        {"infinite response",
         [&](Npz& z) {
             std::vector<float> v = f64src;
             v[7] = INFINITY;
             z.set("responses", NpyArray::from_f32({3, 5, 4, 2}, v.data()));
         },
         "responses[0, 0, 3, 1] is inf"},
        {"image without responses",
         [&](Npz& z) {
             std::vector<float> v = f64src;
             for (int r = 0; r < 3; r++)
                 for (int k = 0; k < 8; k++) v[(r * 5 + 4) * 8 + k] = NAN;
             z.set("responses", NpyArray::from_f32({3, 5, 4, 2}, v.data()));
         },
         "image 4 ('image4') has no response at all"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.what);
        Npz z = small_npz();
        c.corrupt(z);
        std::string e = load_error(dir, z);
        CHECK_MESSAGE(has(e, c.message), e);
        CHECK(has(e, "bad.npz"));
    }
    CHECK(has(error_of([&] { neural_data_load(dir + "/absent.npz"); }), "cannot open"));
    std::remove((dir + "/bad.npz").c_str());
    std::remove(dir.c_str());
}
