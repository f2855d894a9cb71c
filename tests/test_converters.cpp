// test_converters.cpp: the Python converters (tools/convert_*.py) on tiny inputs in the
// published layouts, built by tests/fixtures/make_converter_inputs.py; their outputs are
// loaded by the C++ loader and checked value by value, and each converter's validation is
// checked on broken inputs (wrong layouts, and files that are not what they should be: a Git
// LFS pointer, text, a truncated file, a pickle, an image that is not one). Skipped when
// python3 with numpy, h5py, netCDF4 and Pillow is not available (third_party/install-deps.sh
// installs them).
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "models/datasets/neural_data.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

using Run = vt_test::ShellRun;
Run sh(const std::string& cmd) { return vt_test::shell_run(cmd + " 2>&1"); }

std::string root() { return std::string(VT_ROOT); }

// The good inputs, built once into a temp dir shared by the tests; "" when python3 with
// numpy, h5py, netCDF4 and Pillow is not available (the builder exits 3).
const std::string& inputs() {
    static std::string dir;
    static bool tried = false;
    if (!tried) {
        tried = true;
        const std::string made = vt_test::temp_dir();  // removed at exit (testutil.h)
        Run r = sh("python3 " + root() + "/tests/fixtures/make_converter_inputs.py " + made);
        if (r.rc == 0) dir = made;
        else if (r.rc != 3) FAIL("make_converter_inputs.py failed: " << r.out);
    }
    return dir;
}

#define NEED_PYTHON()                                                                                 \
    if (inputs().empty()) {                                                                           \
        MESSAGE("python3 with numpy, h5py, netCDF4 and Pillow not available: skipped");               \
        return;                                                                                       \
    }

std::string bs_cmd(const std::string& dir, const std::string& out) {
    return "python3 " + root() + "/tools/convert_brainscore_majaj.py --assembly " + dir + "/bs/assembly.nc --stimuli-csv " +
           dir + "/bs/stimuli.csv --stimuli-zip " + dir + "/bs/stimuli.zip --out " + out;
}
std::string hvm_cmd(const std::string& dir, const std::string& out, const std::string& extra = "") {
    return "python3 " + root() + "/tools/convert_hvm_hdf5.py --hdf5 " + dir + "/hvm.hdf5 --out " + out + " " + extra;
}
std::string cowley_cmd(const std::string& dir, const std::string& out_dir) {
    return "python3 " + root() + "/tools/convert_cowley.py --src " + dir + "/cowley --out-dir " + out_dir;
}

}  // namespace

TEST_CASE("converters: Brain-Score MajajHong2015 assembly keeps repetitions, regions, labels and bins") {
    NEED_PYTHON();
    const std::string& dir = inputs();
    Run r = sh(bs_cmd(dir, dir + "/out.npz"));
    REQUIRE_MESSAGE(r.rc == 0, r.out);
    NeuralData d = neural_data_load(dir + "/out.npz");
    // Images in order of first appearance: s1, s0, s2 (shown 3, 4, 2 times) -> R = 4.
    CHECK(d.R == 4);
    CHECK(d.N == 3);
    CHECK(d.U == 3);
    CHECK(d.B == 2);
    CHECK(d.image_id == std::vector<std::string>{"s1", "s0", "s2"});
    CHECK(d.unit_area == std::vector<std::string>{"V4", "IT", "IT"});
    CHECK(d.unit_id[2] == "n2");
    CHECK(d.image_object == std::vector<std::string>{"obj1", "obj0", "obj2"});
    CHECK(d.image_category[1] == "cat0");
    CHECK(d.image_variation == std::vector<int32_t>{3, 0, 6});
    CHECK(d.bin_start_ms == std::vector<float>{70, 90});
    CHECK(d.bin_end_ms == std::vector<float>{90, 110});
    const int64_t k_of[3] = {1, 0, 2}, reps[3] = {3, 4, 2};
    for (int64_t i = 0; i < 3; i++)
        for (int64_t r2 = 0; r2 < 4; r2++)
            for (int64_t u = 0; u < 3; u++)
                for (int64_t b = 0; b < 2; b++) {
                    float v = d.at(r2, i, u, b);
                    if (r2 < reps[i]) CHECK(v == doctest::Approx(100 * u + 10 * k_of[i] + r2 + 0.1 * b));
                    else CHECK(std::isnan(v));
                }
    // Image k is RGB (40k, 100, 200).
    CHECK(d.images[(1 * 8 * 8) * 3 + 0] == 0);
    CHECK(d.images[(0 * 8 * 8) * 3 + 0] == 40);
    CHECK(d.images[(2 * 8 * 8 + 5) * 3 + 2] == 200);
}

TEST_CASE("converters: ventral_neural_data.hdf5 per trial, binned, and trial-averaged") {
    NEED_PYTHON();
    const std::string& dir = inputs();
    Run r = sh(hvm_cmd(dir, dir + "/avg.npz"));
    REQUIRE_MESSAGE(r.rc == 0, r.out);
    NeuralData d = neural_data_load(dir + "/avg.npz");
    // Levels V0 V3 V0 V3 V3 V6 with 2, 3, 1 trials; units V4 = neurons 3, 1; IT = neuron 0.
    CHECK(d.R == 3);
    CHECK(d.N == 6);
    CHECK(d.B == 1);
    CHECK(d.unit_area == std::vector<std::string>{"V4", "V4", "IT"});
    CHECK(d.unit_id == std::vector<std::string>{"n3", "n1", "n0"});
    CHECK(d.image_variation == std::vector<int32_t>{0, 3, 0, 3, 3, 6});
    CHECK(d.image_id[5] == "h5");
    CHECK(d.bin_start_ms[0] == 70.f);
    CHECK(d.bin_end_ms[0] == 170.f);
    CHECK(d.at(1, 4, 0, 0) == 341.f);  // neuron 3, image 4, trial 1
    CHECK(d.at(1, 2, 2, 0) == 21.f);   // neuron 0, image 2, trial 1
    CHECK(std::isnan(d.at(2, 0, 0, 0)));  // V0 images have 2 trials
    CHECK(std::isnan(d.at(1, 5, 1, 0)));  // the V6 image has 1
    CHECK(d.images[(3 * 64 + 10) * 3 + 1] == 30);  // grey image 3 = 30, replicated to RGB

    r = sh(hvm_cmd(dir, dir + "/binned.npz", "--responses time_binned"));
    CHECK(r.rc != 0);
    CHECK(has(r.out, "pass --bins START:WIDTH:STEP"));
    r = sh(hvm_cmd(dir, dir + "/binned.npz", "--responses time_binned --bins=-100:20:10"));
    REQUIRE_MESSAGE(r.rc == 0, r.out);
    NeuralData e = neural_data_load(dir + "/binned.npz");
    CHECK(e.B == 2);
    CHECK(e.bin_start_ms == std::vector<float>{-100, -90});
    CHECK(e.bin_end_ms == std::vector<float>{-80, -70});
    CHECK(e.at(2, 1, 1, 1) == doctest::Approx(112.1f));

    r = sh(hvm_cmd(dir, dir + "/ta.npz", "--trial-averaged"));
    REQUIRE_MESSAGE(r.rc == 0, r.out);
    NeuralData t = neural_data_load(dir + "/ta.npz");
    CHECK(t.R == 1);
    CHECK(t.at(0, 1, 0, 0) == doctest::Approx(311.f));  // neuron 3, image 1 (V3: mean trial 1)
}

TEST_CASE("converters: Cowley et al. 2023 sessions become R = 1, one 0-100 ms bin, area V4") {
    NEED_PYTHON();
    const std::string& dir = inputs();
    Run r = sh(cowley_cmd(dir, dir + "/out"));
    REQUIRE_MESSAGE(r.rc == 0, r.out);
    NeuralData d = neural_data_load(dir + "/out/cowley_123456.npz");
    CHECK(d.R == 1);
    CHECK(d.N == 4);
    CHECK(d.U == 3);
    CHECK(d.B == 1);
    CHECK(d.unit_area == std::vector<std::string>{"V4", "V4", "V4"});
    CHECK(d.bin_start_ms[0] == 0.f);
    CHECK(d.bin_end_ms[0] == 100.f);
    CHECK(d.image_id[3] == "image0004.jpg");
    CHECK(d.at(0, 3, 2, 0) == 23.f);  // neuron 2, image 4
    CHECK(std::abs((int)d.images[(2 * 36) * 3] - 100) <= 2);  // JPEG of a flat 100
    // a session published without its images: skipped by default, and said; an error when asked for
    CHECK(has(r.out, "note: skipped 1 session without images/images_<session>.zip: 654321"));
    CHECK(!std::filesystem::exists(dir + "/out/cowley_654321.npz"));
    r = sh(cowley_cmd(dir, dir + "/out") + " --sessions 654321");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "session 654321: missing"));
    r = sh(cowley_cmd(dir, dir + "/out") + " --sessions 999999");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "session 999999 is not in"));
}

TEST_CASE("converters: broken inputs fail with a message naming the problem") {
    NEED_PYTHON();
    // Every variant is built and converted in one Python process (start-up dominates).
    std::string dir = vt_test::temp_dir();
    // (under a time limit: a converter that hangs fails the test instead of stalling it)
    Run r = sh("VT_NETCDF_OPEN_SECONDS=10 timeout 600 python3 " + root() + "/tests/fixtures/make_converter_inputs.py " +
               dir + " --errors");
    REQUIRE_MESSAGE(r.rc == 0, r.out);
    const std::pair<const char*, const char*> cases[] = {
        {"bs_no_region", "no coordinate 'region' along 'neuroid'"},
        {"bs_missing_stimulus", "1 stimuli of the assembly are not in"},
        {"bs_missing_file", "file 'img_0.png' is not in"},
        {"bs_not_netcdf", "bs/assembly.nc: expected a netCDF assembly, found something else"},
        {"bs_csv_not_utf8", "bs/stimuli.csv: expected a UTF-8 CSV, found"},
        {"bs_bad_window", "--window: expected START,END in ms, got '70-170'"},
        {"bs_netcdf_hangs", "bs/assembly.nc: expected a netCDF assembly, found"},  // here: "did not finish in 10 s"
        {"bs_time_average_bins", "the data variable has no time_bin dimension, but time_bin_start and time_bin_end "
                                 "hold 2 and 2 values (expected 1 each)"},
        {"hvm_no_v4", "neural_meta has no V4_NEURONS"},
        {"hvm_level_mismatch", "with 3 images (those of level V3)"},
        {"hvm_not_hdf5", "hvm.hdf5: expected an HDF5 file, found something else"},
        {"hvm_images_group", "hvm.hdf5: images is an HDF5 group, expected a dataset"},
        {"hvm_negative_index", "neural_meta/IT_NEURONS: expected neuron indices (integers >= 0), found -1"},
        {"hvm_out_under_file", "hvm.hdf5 is a file, expected a folder"},
        {"cowley_count", "holds 3 images but"},
        {"cowley_huge_value", "responses contain infinities or values beyond float32"},
        {"cowley_no_images", "no session has both responses_repeat_averaged/responses_<session>.npy and images/"},
        {"cowley_lfs_zip", "images_123456.zip: expected a zip archive, found a Git LFS pointer"},
        {"cowley_truncated_zip", "images_123456.zip: expected a zip archive, found something else"},
        {"cowley_not_image", "images_123456.zip:images_123456/image0005.jpg: expected an image (PNG/JPEG), found 22 bytes"},
        {"cowley_not_npy", "responses_123456.npy: expected a .npy array, found a file starting b'0.5"},
        {"cowley_pickle_npy", "responses_123456.npy: expected a .npy array of numbers, found a damaged or object array"},
        {"cowley_truncated_npy", "responses_123456.npy: expected a .npy array of numbers, found a damaged"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.first);
        size_t at = r.out.find(std::string("CASE ") + c.first + ": error: ");
        REQUIRE_MESSAGE(at != std::string::npos, r.out);
        std::string line = r.out.substr(at, r.out.find('\n', at) - at);
        CHECK_MESSAGE(has(line, c.second), line);
    }
    CHECK(!has(r.out, "Traceback"));
    CHECK_MESSAGE(!has(r.out, "LEFT "), r.out);  // a failed conversion leaves no output, not even a temporary file
    Run missing = sh(hvm_cmd(dir, dir + "/o.npz"));
    CHECK(missing.rc == 1);
    CHECK(has(missing.out, "hvm.hdf5 does not exist"));
    std::filesystem::remove_all(dir);
}
