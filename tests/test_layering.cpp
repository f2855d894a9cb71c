// test_layering.cpp: the layering rule of `make check` (tools/check_layering.py): the tree
// as it is passes, and an upward include planted in a scratch copy of it is named by
// file:line and the rule it breaks, with exit code 1.
#include <filesystem>
#include <fstream>

#include "tests/testutil.h"

using vt_test::has;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(VT_ROOT) + "/tools/check_layering.py";

vt_test::ShellRun check_layering(const std::string& root) {
    return vt_test::shell_run("python3 " + vt_test::shell_quote(kScript) + " " + vt_test::shell_quote(root) + " 2>&1");
}

// The C++/CUDA sources of the layered folders, copied under dst (the fixtures are left out).
void copy_sources(const std::string& dst) {
    for (const char* top : {"kernels", "engine", "models", "tools", "tests", "fuzz"}) {
        for (const auto& e : fs::recursive_directory_iterator(std::string(VT_ROOT) + "/" + top)) {
            const std::string ext = e.path().extension().string();
            if (!e.is_regular_file() || (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh")) continue;
            fs::path to = fs::path(dst) / fs::relative(e.path(), VT_ROOT);
            fs::create_directories(to.parent_path());
            fs::copy_file(e.path(), to);
        }
    }
}

// Appends `line` to root/path; returns the 1-based line number it lands on.
int append_line(const std::string& root, const std::string& path, const std::string& line) {
    std::ifstream in(root + "/" + path);
    int n = 0;
    for (std::string s; std::getline(in, s);) n++;
    in.close();
    std::ofstream(root + "/" + path, std::ios::app) << line << "\n";
    return n + 1;
}

}  // namespace

TEST_CASE("layering: the tree has no upward include") {
    REQUIRE_MESSAGE(std::system("python3 --version >/dev/null 2>&1") == 0, "python3 is needed (third_party/install-deps.sh)");
    vt_test::ShellRun r = check_layering(VT_ROOT);
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "no upward include"));
}

TEST_CASE("layering: an upward include planted in a copy of the tree is named, with exit code 1") {
    REQUIRE_MESSAGE(std::system("python3 --version >/dev/null 2>&1") == 0, "python3 is needed (third_party/install-deps.sh)");
    const std::string root = vt_test::temp_dir();
    copy_sources(root);
    vt_test::ShellRun clean = check_layering(root);
    INFO(clean.out);
    REQUIRE(clean.rc == 0);

    // a kernel that sees a cell; the engine's file I/O that sees a Tensor; neural data that
    // reaches the fitting layer through a relative path
    int l1 = append_line(root, "kernels/cpu/conv.cpp", "#include \"models/cells.h\"");
    int l2 = append_line(root, "engine/io/npy.h", "#include \"engine/tensor.h\"");
    int l3 = append_line(root, "models/datasets/stimuli.cpp", "#include \"../fit/scoring.h\"");
    vt_test::ShellRun r = check_layering(root);
    INFO(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "kernels/cpu/conv.cpp:" + std::to_string(l1) + ": includes \"models/cells.h\": kernels may not include models (networks)"));
    CHECK(has(r.out, "engine/io/npy.h:" + std::to_string(l2) + ": includes \"engine/tensor.h\": engine/io may not include engine,"));
    CHECK(has(r.out, "models/datasets/stimuli.cpp:" + std::to_string(l3) + ": includes \"../fit/scoring.h\": models/datasets may not include models/fit"));
    CHECK(has(r.out, "3 upward include(s)"));
    fs::remove_all(root);
}
