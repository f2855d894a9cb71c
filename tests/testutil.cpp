// testutil.cpp: temporary directories and running the tools, for tests.
#include "tests/testutil.h"

#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "models/convrnn.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace vt_test {

namespace {

// The folders temp_dir made; removed when the test binary exits (VT_KEEP_TEST_DIRS=1 keeps them
// for a look at what a failing test wrote). A crash leaves them, named ventral_test_*.
std::vector<std::string>& temp_dirs_made() {
    static std::vector<std::string> made;
    return made;
}

void temp_dirs_remove() {
    const char* keep = std::getenv("VT_KEEP_TEST_DIRS");
    if (keep && *keep && std::string(keep) != "0") return;
    for (const std::string& d : temp_dirs_made()) {
        std::error_code ec;  // best effort: a folder a test removed itself is fine
        std::filesystem::remove_all(d, ec);
    }
}

}  // namespace

std::string temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ventral_test_XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    std::vector<std::string>& made = temp_dirs_made();  // constructed before the handler is registered,
    static const bool registered = std::atexit(temp_dirs_remove) == 0;  // so it is destroyed after it runs
    (void)registered;
    made.push_back(tmpl);
    return tmpl;
}

ShellRun shell_run(const std::string& cmd) {
    ShellRun r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
    int st = pclose(p);
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

std::string tool_path(const std::string& tool) { return std::string(VT_ROOT) + "/bin/" + tool; }

bool have_tool(const std::string& tool) { return std::ifstream(tool_path(tool)).good(); }

ShellRun run_tool(const std::string& tool, const std::string& args, bool stderr_only) {
    return shell_run(tool_path(tool) + " " + args + (stderr_only ? " 2>&1 >/dev/null" : " 2>&1"));
}

ShellRun run_tool_limited(const std::string& tool, const std::string& args, long mem_kb, int seconds) {
    return shell_run("ulimit -v " + std::to_string(mem_kb) + " && timeout " + std::to_string(seconds) + " " +
                     tool_path(tool) + " " + args + " 2>&1 >/dev/null");
}

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\"'\"'") : std::string(1, c);
    return q + "'";
}

}  // namespace vt_test

namespace vt_test {

std::string python_strict_json(const std::string& body) {
    return "python3 -c 'import json, sys\n"
           "def pairs(kv):\n"
           "    keys = [k for k, _ in kv]\n"
           "    assert len(keys) == len(set(keys)), keys\n"
           "    return dict(kv)\n"
           "def bad(c): raise ValueError(c)\n" +
           body + "'";
}

ShellRun tiny_fitted_run(const std::string& dir, const std::string& vp_args, const std::string& fit_args) {
    ShellRun r = run_tool("make_virtual_primate", "--out " + dir + "/vp.npz --teacher-arch tiny3 --v4-layer conv2 "
                          "--it-layer conv3 --reps 6 --write-teacher-backbone " + dir + "/bb.npz " + vp_args);
    if (r.rc != 0) return r;
    return run_tool("fit_dynamics", "--data " + dir + "/vp.npz --backbone " + dir + "/bb.npz --readout V4=conv2,IT=conv3 "
                    "--splits 2 --threads 1 --out " + dir + "/fit " + fit_args);
}

void save_random_backbone(const std::string& path, const std::string& arch, uint64_t seed) {
    vt::ModelConfig mc;
    mc.arch = arch;
    vt::Model m(mc, seed);
    vt::Npz meta;
    vt::meta_set_string(meta, "meta.arch", arch);
    vt::checkpoint_save(path, m.params, meta);
}

vt::VirtualPrimateConfig tiny_primate(const std::string& arch) {
    vt::VirtualPrimateConfig c;
    c.images = 32;
    c.size = 32;
    c.teacher_arch = arch;
    c.teacher_motif = "lstm";
    if (arch == "tiny3") c.teacher_feedback = "conv3:conv1", c.v4_layer = "conv2", c.it_layer = "conv3";
    else c.teacher_feedback = "conv5:conv2";
    c.v4_units = 8;
    c.it_units = 8;
    c.reps = 20;
    c.t_max_ms = 100;
    return c;
}

void image_folder(const std::string& root, int n) {
    for (const char* split : {"train", "val"})
        for (const char* c : {"a", "b"}) {
            std::string dir = root + "/" + split + "/" + c;
            std::filesystem::create_directories(dir);
            for (int i = 0; i < n; i++) {
                vt::Image img;
                img.H = img.W = 16;
                img.rgb.resize(16 * 16 * 3);
                for (size_t k = 0; k < img.rgb.size(); k++) img.rgb[k] = (uint8_t)((k * 7 + i * 31 + (c[0] - 'a') * 101) % 256);
                vt::image_write_png(dir + "/" + std::to_string(i) + ".png", img);
            }
        }
}

}  // namespace vt_test
