// testutil.h: helpers shared by the tests: fixture paths, temporary folders, tolerances.
#pragma once
#undef CHECK  // the engine's CHECK (engine/common.h) gives way to doctest's
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "engine/common.h"
#include "kernels/kernels.h"
#include "models/datasets/virtual_primate.h"

#ifndef VT_ROOT
#define VT_ROOT "."
#endif

namespace vt_test {

// tests/fixtures/<name> in the source tree.
inline std::string fixture(const std::string& name) { return std::string(VT_ROOT) + "/tests/fixtures/" + name; }

// ../shared/data/<name> beside the checkout (may be absent: tests that need it skip).
inline std::string shared_data(const std::string& name) { return std::string(VT_ROOT) + "/../shared/data/" + name; }

// A fresh temporary directory ($TMPDIR or /tmp, ventral_test_*), removed with everything in it
// when the test binary exits (VT_KEEP_TEST_DIRS=1 keeps them).
std::string temp_dir();

// The message of the vt::Error that f throws, or "(no vt::Error thrown)".
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const vt::Error& e) {
        return e.what();
    }
    return "(no vt::Error thrown)";
}

inline bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// The CPU's 3x3 convolution path for a scope (kernels.h CpuConvPath), restored on the way out.
struct ConvPathScope {
    vt::CpuConvPath prev = vt::cpu_conv_path();
    explicit ConvPathScope(vt::CpuConvPath p) { vt::cpu_set_conv_path(p); }
    ~ConvPathScope() { vt::cpu_set_conv_path(prev); }
};

// A shell command's exit code and output (what the command line sends to stdout; add 2>&1
// to it for stderr too).
struct ShellRun {
    int rc = -1;
    std::string out;
};
ShellRun shell_run(const std::string& cmd);

// bin/<tool> in the source tree; whether it is built; running it with `args`, capturing
// stdout and stderr together, or stderr alone.
std::string tool_path(const std::string& tool);
bool have_tool(const std::string& tool);
ShellRun run_tool(const std::string& tool, const std::string& args, bool stderr_only = false);

// Runs bin/<tool> with `args` under an address-space limit (ulimit -v, in KB) and a
// wall-clock limit (timeout: exit code 124 when it runs out), capturing stderr only.
ShellRun run_tool_limited(const std::string& tool, const std::string& args, long mem_kb, int seconds);

// `s` as one word for /bin/sh: 'it'"'"'s'.
std::string shell_quote(const std::string& s);

// A `python3 -c '...'` command whose script starts with JSON hooks that refuse a repeated key
// (`pairs`, for object_pairs_hook) and a NaN/Infinity literal (`bad`, for parse_constant),
// then runs `body` (no single quotes in it): Python's strict reading of ventral's JSON.
std::string python_strict_json(const std::string& body);

// A small fitted run for the tools' tests: a tiny3 virtual primate (DIR/vp.npz and its
// teacher's backbone DIR/bb.npz; V4 sites on conv2, IT on conv3, 6 repetitions, plus `vp_args`)
// and a 2-split fit_dynamics run on that backbone into DIR/fit (`fit_args` added). Returns
// the first step that failed, or the fit's run.
ShellRun tiny_fitted_run(const std::string& dir, const std::string& vp_args, const std::string& fit_args);

// A backbone checkpoint of `arch` with random He-initialised weights (seed 2 by default: not
// the virtual primate's seed-1 teacher), for the students of the fitting tests.
void save_random_backbone(const std::string& path, const std::string& arch, uint64_t seed = 2);

// A small virtual primate for the fitting tests: an `arch` teacher (tiny3: feedback conv3:conv1,
// V4 on conv2, IT on conv3; tiny5: conv5:conv2, V4 on conv3, IT on conv5) with lstm cells,
// 32 images of 32 x 32, 8 V4 and 8 IT sites, 20 repetitions, bins to 100 ms.
vt::VirtualPrimateConfig tiny_primate(const std::string& arch);

// A train/ (and val/) folder of 16 x 16 PNGs: classes a and b, n images each, all different.
void image_folder(const std::string& root, int n);

// The whole file as bytes ("" if it cannot be read).
inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline int count_lines(const std::string& s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

// |a - b| <= atol + rtol * |b|
inline bool close(double a, double b, double atol, double rtol) { return std::fabs(a - b) <= atol + rtol * std::fabs(b); }

}  // namespace vt_test
