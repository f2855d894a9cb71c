// test_python.cpp: the Python package (python/ventral) against the C++ engine: its PyTorch
// twin of a ConvRNN reproduces ./bin/features (every layer at every step, and a fitted
// model's per-bin predictions) for every cell motif, with feedback and with residual cells;
// its architecture table is the C++ one; its loaders read what the tools write.
#include <filesystem>
#include <sstream>

#include "models/backbone.h"
#include "models/cells.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::has;
using vt_test::run_tool;
using vt_test::ShellRun;

namespace {

// A Python 3 with numpy, PyTorch and pandas: Debian's (first) or `python3` (third_party/install-deps.sh
// installs python3-torch and python3-pandas); "" if none.
std::string python_with_torch() {
    for (const char* p : {"/usr/bin/python3", "python3"})
        if (vt_test::shell_run(std::string(p) + " -c 'import numpy, torch, pandas' 2>/dev/null").rc == 0) return p;
    return "";
}

std::string py() {
    static const std::string p = python_with_torch();
    return p;
}

}  // namespace

TEST_CASE("python: the PyTorch twin reproduces ./bin/features for every cell, with feedback, at every step") {
    REQUIRE_MESSAGE(!py().empty(), "no python3 with numpy, torch and pandas (third_party/install-deps.sh installs them)");
    if (!vt_test::have_tool("features") || !vt_test::have_tool("make_virtual_primate")) {
        MESSAGE("tools not built: skipped");
        return;
    }
    const std::string dir = vt_test::temp_dir();
    for (const std::string& m : motif_names()) {
        CAPTURE(m);
        // a random tiny3 teacher of this cell (two feedback edges into conv1), its images at the input size
        const std::string vp = dir + "/vp_" + m + ".npz";  // one dataset per cell (another cell's is other data)
        ShellRun r = run_tool("make_virtual_primate", "--out " + vp + " --images 6 --teacher-arch tiny3 --v4-layer "
                              "conv2 --it-layer conv3 --teacher-feedback conv3:conv1,conv2:conv1 --teacher-motif " + m +
                              " --size 8 --v4 4 --it 4 --reps 4 --write-teacher " + dir + "/t.npz");
        INFO(r.out);
        REQUIRE(r.rc == 0);
        r = run_tool("features", "--checkpoint " + dir + "/t.npz --images " + vp + " --layers conv1,conv2,conv3 "
                     "--steps 7 --image-steps 3 --threads 1 --overwrite --out " + dir + "/f.npz");
        INFO(r.out);
        REQUIRE(r.rc == 0);
        r = vt_test::shell_run(py() + " python/tests/check_against_features.py " + dir + "/t.npz " + dir + "/f.npz " + vp +
                               " --steps 7 --image-steps 3 --tol 1e-5 2>&1");
        INFO(r.out);
        CHECK(r.rc == 0);
        CHECK(has(r.out, "compared 15 arrays"));  // 3 layers x 5 active steps (the others silent in both)
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("python: the PyTorch twin of a fitted ConvRNN (residual cells) predicts what ./bin/features predicts") {
    REQUIRE_MESSAGE(!py().empty(), "no python3 with numpy, torch and pandas (third_party/install-deps.sh installs them)");
    if (!vt_test::have_tool("features") || !vt_test::have_tool("fit_dynamics")) {
        MESSAGE("tools not built: skipped");
        return;
    }
    const std::string dir = vt_test::temp_dir();
    ShellRun r = vt_test::tiny_fitted_run(dir, "--images 24 --teacher-feedback conv3:conv2 --size 8 --v4 6 --it 6",
                                          "--motif gru --feedback conv3:conv1 --cells residual --cell-scale-init 0.5 "
                                          "--iters 4 --val-every 2 --batch 4");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    r = run_tool("features", "--checkpoint " + dir + "/fit/checkpoints/split1.npz --images " + dir + "/vp.npz --layers "
                 "conv1,conv2,conv3 --threads 1 --out " + dir + "/f.npz");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    r = vt_test::shell_run(py() + " python/tests/check_against_features.py " + dir + "/fit/checkpoints/split1.npz " + dir +
                           "/f.npz " + dir + "/vp.npz --tol 1e-5 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "prediction.V4"));
    CHECK(has(r.out, "prediction.IT"));
    // the Brain-Score adapter on these images as a local StimulusSet (brainscore-vision from PyPI in
    // third_party/pydeps, installed by install-deps.sh; nothing is downloaded here)
    const std::string bs = "PYTHONPATH=third_party/pydeps " + py();
    REQUIRE_MESSAGE(vt_test::shell_run(bs + " -c 'import brainscore_vision.model_interface' 2>/dev/null").rc == 0,
                    "brainscore-vision is not installed in third_party/pydeps (run third_party/install-deps.sh)");
    std::filesystem::create_directories(dir + "/stimuli");
    r = vt_test::shell_run(bs + " python/tests/check_brainscore.py " + dir + "/fit/checkpoints/split1.npz " + dir +
                           "/f.npz " + dir + "/vp.npz " + dir + "/stimuli 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "V4 (conv2)"));
    CHECK(has(r.out, "IT (conv3)"));
    CHECK(has(r.out, "refused: region 'V1'"));
    // the loaders: results.json strictly, predictions.npz as a pandas table whose EVs are the file's
    r = vt_test::shell_run(
        "cd python && " + py() + " -c 'import ventral, numpy as np\n"
        "res = ventral.load_results(\"" + dir + "/fit/results.json\")\n"
        "pred = ventral.load_predictions(\"" + dir + "/fit/predictions.npz\")\n"
        "params, meta = ventral.load_checkpoint(\"" + dir + "/fit/checkpoints/split0.npz\")\n"
        "assert meta[\"motif\"] == \"gru\" and meta[\"arch\"] == \"tiny3\" and \"readout.V4.weight\" in params\n"
        "t = ventral.units_table(pred)\n"
        "assert set(t[\"role\"]) == {\"fit\", \"heldout\"}, set(t[\"role\"])\n"
        "assert len(t) == pred[\"unit_ev\"].shape[0] * 12 * 13\n"
        "assert np.allclose(np.nanmax(t[\"ev\"]), np.nanmax(pred[\"unit_ev\"]))\n"
        "print(res[\"format\"], pred[\"predictions\"].shape)' 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "ventral-fit-dynamics-2 (24, 12, 13)"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("python: ventral/arch.py is the C++ architecture table") {
    REQUIRE_MESSAGE(!py().empty(), "no python3 with numpy, torch and pandas (third_party/install-deps.sh installs them)");
    ShellRun r = vt_test::shell_run(py() + " python/tests/print_archs.py 2>&1");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    std::ostringstream want;
    for (const std::string& a : backbone_archs()) {
        BackboneSpec b = backbone_spec(a);
        for (const LayerSpec& l : b.layers)
            want << a << " " << b.in_size << " " << l.name << " " << l.in_ch << " " << l.out_ch << " " << l.kernel << " "
                 << l.stride << " " << l.pad << " " << (l.act == Act::ELU ? "elu" : "relu") << " " << l.pool_k << " "
                 << l.pool_s << " " << l.pool_p << " " << l.in_size << " " << l.conv_size << " " << l.out_size << "\n";
    }
    CHECK(r.out == want.str());
}

TEST_CASE("python: tools/bench_torch.py's --hoist is the same function as its plain model (--check); bad flags refused") {
    REQUIRE_MESSAGE(!py().empty(), "no python3 with numpy, torch and pandas (third_party/install-deps.sh installs them)");
    const std::string script = std::string("cd ") + VT_ROOT + " && " + py() + " tools/bench_torch.py ";
    ShellRun r = vt_test::shell_run(script + "--check --workload W1,W2,W5 --threads 2 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    int ok = 0;
    for (size_t at = r.out.find("\"check\": \"ok\""); at != std::string::npos; at = r.out.find("\"check\": \"ok\"", at + 1)) ok++;
    CHECK(ok == 3);
    ShellRun bad = vt_test::shell_run(script + "--workload W9 2>&1");
    CHECK(bad.rc == 2);
    CHECK(has(bad.out, "unknown workload 'W9'"));
}
