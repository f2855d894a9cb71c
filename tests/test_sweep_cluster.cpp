// test_sweep_cluster.cpp: ./bin/sweep beyond one command on one machine (issue 16): --list,
// --index (through tools/sweep_slurm.sh, as a Slurm array runs it) and --collect against one
// whole sweep of the paper grid; the reuse check on a hand-run fit; concurrent sweeps on one
// folder; a claim held elsewhere, waited for and taken over; fits spread over GPUs. All on a
// tiny5 virtual primate (hcnn5's five layers at 32x32), where a fit takes about a second.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/io/json.h"
#include "engine/io/npy.h"
#include "engine/io/rundir.h"
#include "models/convrnn.h"
#include "models/datasets/virtual_primate.h"
#include "models/fit/fit_flags.h"
#include "models/fit/sweep.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::slurp;
using vt_test::count_lines;
using vt_test::has;
namespace fs = std::filesystem;

namespace {

bool have_bins() { return vt_test::have_tool("sweep") && vt_test::have_tool("fit_dynamics"); }

// A tiny5 virtual primate (an lstm teacher with conv5:conv2 feedback; V4 on conv3, IT on conv5,
// the defaults' layers), a second one with other trial noise, and a random tiny5 backbone.
struct Fixture {
    std::string dir, data, other_data, backbone;
};

const Fixture& fixture() {
    static const Fixture f = [] {
        Fixture x;
        x.dir = vt_test::temp_dir();
        VirtualPrimateConfig c = vt_test::tiny_primate("tiny5");
        x.data = x.dir + "/vp_tiny5.npz";
        npz_write(x.data, virtual_primate_generate(c));
        c.seed = 2;
        x.other_data = x.dir + "/vp_tiny5_other.npz";
        npz_write(x.other_data, virtual_primate_generate(c));
        x.backbone = x.dir + "/tiny5_backbone.npz";
        vt_test::save_random_backbone(x.backbone, "tiny5");
        return x;
    }();
    return f;
}

// The flags after `--` for every fit: the tiny backbone, a short fit.
std::string fit_flags() {
    return "--backbone " + fixture().backbone + " --heldout-fit-images 0 --iters 2 --val-every 2";
}

// Sweep arguments: a grid (a built-in name or grid lines written beside `out`), the data, out.
std::string sweep_args(const std::string& out, const std::string& grid) {
    std::string g = grid;
    if (grid.find('\n') != std::string::npos) {
        g = out + "_grid.txt";
        std::ofstream(g) << grid;
    }
    return "--grid " + g + " --data " + fixture().data + " --out " + out;
}

const char* kGrid =
    "ff          --motif none --feedback none\n"
    "time_varied --time-varied --feedback none\n"
    "lstm        --motif lstm --feedback conv5:conv2\n"
    "gru         --motif gru --feedback conv5:conv2\n";

vt_test::ShellRun sweep(const std::string& args) { return vt_test::run_tool("sweep", args); }

// Each configuration's summary.json entry without its wall time, in order.
Json summary_without_times(const std::string& path) {
    Json j = json_read(path);
    for (Json& c : j["configurations"]) c.erase("seconds");
    return j;
}

// How many lines of `text` contain both a and b.
int lines_with(const std::string& text, const std::string& a, const std::string& b) {
    std::istringstream in(text);
    int n = 0;
    for (std::string l; std::getline(in, l);) n += has(l, a) && has(l, b);
    return n;
}

// Runs `cmd` through /bin/sh in its own process group, in the background; its output in `log`.
pid_t start_bg(const std::string& cmd, const std::string& log) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > " + log + " 2>&1").c_str(), (char*)nullptr);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

bool wait_for(const std::function<bool()>& ok, int seconds) {
    auto t0 = std::chrono::steady_clock::now();
    while (!ok()) {
        if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(seconds)) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

}  // namespace

TEST_CASE("fit_flag_values: resolved, normalised flag values; the preset's defaults; nothing that leaves the numbers alone") {
    auto value = [](const FlagValues& v, const std::string& name) {
        for (const auto& kv : v)
            if (kv.first == name) return kv.second;
        return std::string("(absent)");
    };
    const FlagValues d = fit_flag_values({});
    CHECK(value(d, "--iters") == "96");  // the cpu preset
    CHECK(value(d, "--splits") == "2");
    CHECK(value(d, "--motif") == "lstm");
    CHECK(value(d, "--no-memory-init") == "false");
    CHECK(value(d, "--precision") == "fp32");  // recorded: a tf32 or bf16 fit is not reused as an fp32 one
    CHECK(value(fit_flag_values({"--precision", "bf16"}), "--precision") == "bf16");
    for (const char* f : {"--data", "--out", "--threads", "--overwrite", "--device"}) CHECK(value(d, f) == "(absent)");
    const FlagValues g = fit_flag_values({"--preset", "gpu", "--lr=0.0200", "--no-readout-refit", "--iters", "7"});
    CHECK(value(g, "--preset") == "gpu");
    CHECK(value(g, "--iters") == "7");  // given wins
    CHECK(value(g, "--batch") == "32");  // the gpu preset's
    CHECK(value(g, "--warmup") == "0");  // the preset's 20, at most a tenth of --iters, as the fit runs it
    CHECK(value(fit_flag_values({"--preset", "gpu"}), "--warmup") == "20");
    CHECK(value(fit_flag_values({"--preset", "gpu", "--iters", "7", "--warmup", "3"}), "--warmup") == "3");
    CHECK(value(g, "--readout-lr") == "0.0001");  // without re-solves Adam moves the readouts, as the fit does
    CHECK(value(d, "--readout-lr") == "0");
    CHECK(value(d, "--warmup") == "8");
    CHECK(value(fit_flag_values({"--iters", "abc"}), "--iters") == "abc");  // unparsed: compared as given, no throw
    CHECK(value(g, "--no-memory-init") == "false");
    CHECK(value(g, "--no-readout-refit") == "true");
    CHECK(value(g, "--lr") == "0.02");
    CHECK(value(g, "--lr") == value(fit_flag_values({"--lr", "2e-2"}), "--lr"));  // one value, two spellings
    CHECK(value(g, "--lr") != value(d, "--lr"));
    CHECK(value(fit_flag_values({"--no-memory-init=false"}), "--no-memory-init") == "false");
    CHECK(g.size() == d.size());
    // seeds beyond 2^63 stay distinct (no wrap through a signed conversion)
    CHECK(value(fit_flag_values({"--model-seed", "18446744073709551615"}), "--model-seed") == "18446744073709551615");
    CHECK(value(fit_flag_values({"--model-seed", "9223372036854775808"}), "--model-seed") == "9223372036854775808");
}

TEST_CASE("sweep: --list, then every --index through tools/sweep_slurm.sh, then --collect = one whole sweep of the paper grid") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    const std::string tasks = dir + "/tasks", whole = dir + "/whole";
    const std::string after = " --quick -- " + fit_flags();
    const SweepGrid paper = sweep_grid_builtin("paper");
    const size_t G = paper.configs.size();
    REQUIRE(G == 17);

    // --list: index, name, the exact command; nothing is fitted or written
    vt_test::ShellRun list = sweep(sweep_args(tasks, "paper") + " --list" + after);
    CAPTURE(list.out);
    REQUIRE(list.rc == 0);
    CHECK(count_lines(list.out) == (int)G);
    std::istringstream in(list.out);
    size_t k = 0;
    for (std::string line; std::getline(in, line); k++) {
        CAPTURE(line);
        CHECK(line.rfind(std::to_string(k) + "\t" + paper.configs[k].name + "\t", 0) == 0);
        CHECK(has(line, "/bin/fit_dynamics --out " + tasks + "/runs/" + paper.configs[k].name + " --threads "));
        CHECK(has(line, "--data " + fixture().data));
        CHECK(has(line, "--iters 2 --val-every 2"));  // --quick's 4, then the flags after `--` (the later wins)
    }
    CHECK(!fs::exists(tasks));

    // each index as a Slurm array task would run it
    for (size_t i = 0; i < G; i++) {
        CAPTURE(i);
        vt_test::ShellRun t = vt_test::shell_run(strfmt("cd %s && SLURM_ARRAY_TASK_ID=%zu SLURM_SUBMIT_DIR=%s bash tools/sweep_slurm.sh %s%s 2>&1",
                                                        VT_ROOT, i, VT_ROOT, sweep_args(tasks, "paper").c_str(), after.c_str()));
        CAPTURE(t.out);
        REQUIRE(t.rc == 0);
        CHECK(has(t.out, strfmt("configuration %zu of 0-16 (%s)", i, paper.configs[i].name.c_str())));
        CHECK(has(t.out, "[1/1] " + paper.configs[i].name + ": "));
        CHECK(!fs::exists(tasks + "/summary.json"));  // the report is --collect's
    }
    // an index already done is reused, not refitted
    vt_test::ShellRun again = sweep(sweep_args(tasks, "paper") + " --index 5" + after);
    CHECK(again.rc == 0);
    CHECK(has(again.out, "finished earlier"));
    CHECK(has(again.out, ", reused"));

    vt_test::ShellRun collect = sweep(sweep_args(tasks, "paper") + " --collect" + after);
    CAPTURE(collect.out);
    REQUIRE(collect.rc == 0);
    CHECK(has(collect.out, "17 configurations, 17 finished, 0 not (--collect fits nothing)"));

    vt_test::ShellRun one = sweep(sweep_args(whole, "paper") + after);
    CAPTURE(one.out);
    REQUIRE(one.rc == 0);
    CHECK(lines_with(one.out, "] ", ", ran") == (int)G);

    // the same summary.json, but for the fits' own wall times
    const Json a = summary_without_times(tasks + "/summary.json"), b = summary_without_times(whole + "/summary.json");
    CHECK(a["configurations"].size() == G);
    CHECK(a["configurations"][0]["status"] == "done");
    CHECK(a["configurations"][0]["log"] == "runs/" + paper.configs[0].name + "/log.txt");
    CHECK(a.dump() == b.dump());

    // --collect with a run missing reports it, and says which index fits it
    fs::remove(tasks + "/runs/gru/results.json");
    vt_test::ShellRun partial = sweep(sweep_args(tasks, "paper") + " --collect" + after);
    CHECK(partial.rc == 1);
    CHECK(has(partial.out, "1 of 17 configurations have no finished run yet: 4 gru"));
    CHECK(summary_without_times(tasks + "/summary.json")["configurations"][4]["status"] == "not run");
    fs::remove_all(dir);
}

TEST_CASE("sweep: a finished run is reused only if it ran the same data and flag values; else refused, naming each difference") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir(), out = dir + "/sweep";
    // a hand-run fit with another dataset, --splits 3 and --seed 7, placed where the sweep's ff goes
    vt_test::ShellRun hand = vt_test::run_tool(
        "fit_dynamics", "--out " + out + "/runs/ff --data " + fixture().other_data + " --splits 3 --seed 7 --motif none "
                        "--feedback none " + fit_flags());
    CAPTURE(hand.out);
    REQUIRE(hand.rc == 0);
    vt_test::ShellRun r = sweep(sweep_args(out, kGrid) + " -- " + fit_flags());
    CAPTURE(r.out);
    CHECK(r.rc == 1);
    CHECK(count_lines(r.out) == 1);
    CHECK(has(r.out, out + "/runs/ff holds a finished run that is not what this sweep would run"));
    CHECK(has(r.out, "data: it fitted " + fixture().other_data));
    CHECK(has(r.out, "this sweep fits " + fixture().data));
    CHECK(has(r.out, "--splits: 3 in the run, 2 here"));
    CHECK(has(r.out, "--seed: 7 in the run, 0 here"));
    CHECK(!has(r.out, "--iters"));  // the same: not named
    CHECK(!fs::exists(out + "/runs/lstm"));  // refused before any fit

    // the same data and flags: reused
    fs::remove_all(out + "/runs/ff");
    vt_test::ShellRun same = vt_test::run_tool("fit_dynamics", "--out " + out + "/runs/ff --data " + fixture().data +
                                                                   " --motif none --feedback none " + fit_flags());
    REQUIRE(same.rc == 0);
    vt_test::ShellRun ok = sweep(sweep_args(out, kGrid) + " -- " + fit_flags());
    CAPTURE(ok.out);
    CHECK(ok.rc == 0);
    CHECK(lines_with(ok.out, "] ff:", ", reused") == 1);

    // the same path, another backbone in it (retrained since): refused, naming the checkpoint
    const std::string saved = slurp(fixture().backbone);
    vt_test::save_random_backbone(dir + "/other_backbone.npz", "tiny5", 5);
    fs::copy_file(dir + "/other_backbone.npz", fixture().backbone, fs::copy_options::overwrite_existing);
    vt_test::ShellRun retrained = sweep(sweep_args(out, kGrid) + " -- " + fit_flags());
    std::ofstream(fixture().backbone, std::ios::binary) << saved;  // as it was, for the other tests
    CAPTURE(retrained.out);
    CHECK(retrained.rc == 1);
    CHECK(has(retrained.out, "the backbone checkpoint: crc32 "));

    // a results.json from before runs recorded their flags: refused, saying so
    Json old = json_read(out + "/runs/ff/results.json");
    old["settings"].erase("flags");
    json_write(out + "/runs/ff/results.json", old);
    vt_test::ShellRun stale = sweep(sweep_args(out, kGrid) + " -- " + fit_flags());
    CHECK(stale.rc == 1);
    CHECK(has(stale.out, "does not record its flag values and data checksum"));
    fs::remove_all(dir);
}

TEST_CASE("fit_dynamics: an onset after the first bins (no model step in them) fits, the readout predicting their mean") {
    if (!have_bins()) { MESSAGE("bin/fit_dynamics not built: skipped"); return; }
    // bins [0, 50) ms have no model step at onset 50: their features are zero for every image
    // (this failed in the readout's PLS with "need at least 1 component, got 0")
    const std::string dir = vt_test::temp_dir();
    vt_test::ShellRun r = vt_test::run_tool("fit_dynamics", "--out " + dir + "/fit --data " + fixture().data +
                                                                " --motif none --feedback none --onset-ms 50 " + fit_flags());
    CAPTURE(r.out);
    CHECK(r.rc == 0);
    CHECK(fs::exists(dir + "/fit/results.json"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: two sweeps at once on one folder fit every configuration exactly once, and both report all") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir(), out = dir + "/sweep";
    const std::string args = sweep_args(out, kGrid) + " -- " + fit_flags();
    const std::string bin = vt_test::tool_path("sweep");
    pid_t a = start_bg(bin + " " + args, dir + "/a.txt");
    pid_t b = start_bg(bin + " " + args, dir + "/b.txt");
    int sa = 0, sb = 0;
    REQUIRE(waitpid(a, &sa, 0) == a);
    REQUIRE(waitpid(b, &sb, 0) == b);
    const std::string oa = slurp(dir + "/a.txt"), ob = slurp(dir + "/b.txt");
    CAPTURE(oa);
    CAPTURE(ob);
    CHECK(WIFEXITED(sa));
    CHECK(WEXITSTATUS(sa) == 0);
    CHECK(WIFEXITED(sb));
    CHECK(WEXITSTATUS(sb) == 0);
    for (const char* n : {"ff", "time_varied", "lstm", "gru"}) {
        CAPTURE(n);
        const std::string tag = std::string("] ") + n + ":";
        CHECK(lines_with(oa + ob, tag, ", ran") == 1);  // fitted by one of them, once
        CHECK(lines_with(oa, tag, "") == 1);            // and in both reports
        CHECK(lines_with(ob, tag, "") == 1);
        CHECK(count_lines(slurp(out + "/runs/" + n + "/log.txt")) > 1);
        CHECK(lines_with(slurp(out + "/runs/" + n + "/log.txt"), "sweep: ", "fit_dynamics --out") == 1);
    }
    CHECK(json_read(out + "/summary.json")["configurations"].size() == 4);
    fs::remove_all(dir);
}

TEST_CASE("sweep: a configuration claimed elsewhere is waited for; when its holder goes without a result, it is fitted here") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir(), out = dir + "/sweep";
    // this test process holds lstm's claim, as a sweep on another node would
    std::string holder;
    SharedClaim mine = claim_try(out + "/claims/lstm", "pid 99999 on node7", &holder);
    REQUIRE(mine.held());
    const std::string log = dir + "/sweep.txt";
    pid_t pid = start_bg(vt_test::tool_path("sweep") + " " + sweep_args(out, kGrid) + " -- " + fit_flags(), log);
    const bool waiting = wait_for([&] { return has(slurp(log), "lstm is being fitted by pid 99999 on node7"); }, 120);
    CHECK(waiting);
    // the others go on meanwhile
    CHECK(wait_for([&] { return fs::exists(out + "/runs/gru/results.json"); }, 120));
    CHECK(!fs::exists(out + "/runs/lstm/results.json"));
    int st = 0;
    CHECK(waitpid(pid, &st, WNOHANG) == 0);  // still waiting for lstm
    mine.release();  // the holder dies: the kernel lets its flock go
    REQUIRE(waitpid(pid, &st, 0) == pid);
    const std::string o = slurp(log);
    CAPTURE(o);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    CHECK(has(o, "lstm: its claim was let go without a result"));
    CHECK(lines_with(o, "] lstm:", ", ran") == 1);
    CHECK(fs::exists(out + "/runs/lstm/results.json"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: --device cuda spreads the fits over CUDA_VISIBLE_DEVICES, at most --fits-per-gpu each") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir(), out = dir + "/sweep";
    // GPUs 3 and 5 do not exist here (nor, as these numbers, on a one-GPU machine): each fit fails
    // at its start, after the sweep has placed it; the logs say where
    vt_test::ShellRun r = vt_test::shell_run("CUDA_VISIBLE_DEVICES=3,5 " + vt_test::tool_path("sweep") + " " +
                                             sweep_args(out, kGrid) + " --device cuda --precision tf32 --jobs 4 -- " +
                                             fit_flags() + " 2>&1");
    CAPTURE(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "--jobs 4: 2 GPUs x --fits-per-gpu 1 allow 2 fits at a time; running 2"));
    CHECK(has(r.out, "2 at a time"));
    std::map<std::string, int> used;
    for (const char* n : {"ff", "time_varied", "lstm", "gru"}) {
        std::string first = slurp(out + "/runs/" + n + "/log.txt");
        first = first.substr(0, first.find('\n'));
        CAPTURE(first);
        CHECK(has(first, " --device cuda --precision tf32"));
        for (const char* g : {"3", "5"})
            if (first.rfind(std::string("sweep: CUDA_VISIBLE_DEVICES=") + g + " ", 0) == 0) used[g]++;
    }
    CHECK(used["3"] + used["5"] == 4);
    CHECK(used["3"] >= 1);
    CHECK(used["5"] >= 1);

    vt_test::ShellRun two = vt_test::shell_run("CUDA_VISIBLE_DEVICES=3,5 " + vt_test::tool_path("sweep") + " " +
                                               sweep_args(dir + "/two", kGrid) + " --device cuda --jobs 4 --fits-per-gpu 2 -- " +
                                               fit_flags() + " 2>&1");
    CHECK(has(two.out, "4 at a time"));
    CHECK(!has(two.out, "allow"));
    vt_test::ShellRun none = vt_test::shell_run("CUDA_VISIBLE_DEVICES= " + vt_test::tool_path("sweep") + " " +
                                                sweep_args(dir + "/none", kGrid) + " --device cuda 2>&1");
    CHECK(none.rc == 1);
    CHECK(has(none.out, "CUDA_VISIBLE_DEVICES is set but empty"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: cluster flags and tools/sweep_slurm.sh refuse bad input in one line") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir(), out = dir + "/o";
    struct Case {
        std::string args, says;
    };
    for (const Case& c : {Case{"--grid paper --out " + out + " --list --collect", "--list, --index and --collect exclude each other"},
                          Case{"--grid paper --out " + out + " --index 17", "--index: expected 0 to 16 (grid paper has 17 configurations"},
                          Case{"--grid paper --out " + out + " --index -2", "--index: expected an integer from -1 to"},
                          Case{"--grid paper --out " + out + " --fits-per-gpu 0", "--fits-per-gpu: expected an integer from 1 to 64"},
                          Case{"--grid paper --out " + out + " --device tpu", "--device: expected cpu or cuda, got 'tpu'"},
                          Case{"--grid paper --out " + out + " --precision fp16", "--precision: expected fp32, tf32 or bf16, got 'fp16'"},
                          Case{"--grid paper --out " + out + " --precision bf16", "--precision bf16: the CPU computes in fp32 only"},
                          Case{"--grid paper --out " + out + " --jobs 2 -- --preset gpu --device cuda",
                               "--device after `--` is the sweep's to set (give it before `--`"},
                          Case{"--grid paper --out " + out + " --device cuda --precision bf16 -- --precision tf32",
                               "--precision is given twice, as the sweep's flag and after `--`"},
                          Case{"--grid paper --out " + out + " --collect --data " + dir + "/gone.npz", "gone.npz' does not exist"}}) {
        CAPTURE(c.args);
        vt_test::ShellRun r = sweep(c.args);
        CAPTURE(r.out);
        CHECK(r.rc == 1);
        CHECK(count_lines(r.out) == 1);
        CHECK(has(r.out, c.says));
    }
    CHECK(!fs::exists(out + "/runs"));
    const std::string script = std::string("cd ") + VT_ROOT + " && env -u SLURM_ARRAY_TASK_ID bash tools/sweep_slurm.sh ";
    vt_test::ShellRun no_task = vt_test::shell_run(script + "--grid paper --out " + out + " 2>&1");
    CHECK(no_task.rc == 2);
    CHECK(has(no_task.out, "SLURM_ARRAY_TASK_ID is not set: submit it as an array job"));
    vt_test::ShellRun bad_task = vt_test::shell_run(std::string("cd ") + VT_ROOT +
                                                    " && SLURM_ARRAY_TASK_ID=x bash tools/sweep_slurm.sh --grid paper 2>&1");
    CHECK(bad_task.rc == 2);
    CHECK(has(bad_task.out, "SLURM_ARRAY_TASK_ID must be a number, got 'x'"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: without --data the fits read the virtual primate of their preset, as fit_dynamics does") {
    if (!vt_test::have_tool("sweep")) { MESSAGE("bin/sweep not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();  // --list plans only: nothing is generated there
    struct Case { std::string fit_flags, data; };
    for (const Case& c : {Case{"", fit_default_primate("cpu").path}, Case{"-- --preset gpu", fit_default_primate("gpu").path},
                          Case{"-- --preset=gpu --iters 8", fit_default_primate("gpu").path},
                          Case{"-- --preset cpu", fit_default_primate("cpu").path}}) {
        CAPTURE(c.fit_flags);
        vt_test::ShellRun r = vt_test::shell_run("cd " + vt_test::shell_quote(dir) + " && " + vt_test::tool_path("sweep") +
                                                 " --grid motifs --out s --list " + c.fit_flags + " 2>&1");
        INFO(r.out);
        REQUIRE(r.rc == 0);
        int with = 0;  // every configuration's command line reads it
        for (size_t at = 0; (at = r.out.find("--data " + c.data + " ", at)) != std::string::npos; at++) with++;
        CHECK(with == count_lines(r.out));
        CHECK(with >= 8);
        CHECK(!std::filesystem::exists(dir + "/data"));
    }
}
