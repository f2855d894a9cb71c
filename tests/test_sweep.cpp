// test_sweep.cpp: ./bin/sweep and models/fit/sweep.h: grid files and the built-in grids, the JSON
// reader, the paired t-test against scipy's values, the report from hand-made results, and the
// sweep end to end on a tiny virtual primate: a full run, resuming after a deleted result, and
// resuming after a SIGTERM midway.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/io/npy.h"
#include "models/convrnn.h"
#include "engine/io/json.h"
#include "models/fit/fit_flags.h"
#include "models/fit/results.h"
#include "models/fit/sweep.h"
#include "models/datasets/virtual_primate.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::slurp;
using vt_test::error_of;
using vt_test::has;
namespace fs = std::filesystem;

namespace {

using vt_test::count_lines;

// The line of `text` that contains `key`, or "".
std::string line_with(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        if (has(l, key)) return l;
    return "";
}

// A hand-made fit_dynamics results.json: per-split EVs for V4 and IT, 2 bins, a teacher.
std::string fake_results(const std::string& motif, const std::vector<double>& v4, const std::vector<double>& it) {
    auto ev = [](const std::vector<double>& s) {
        double m = 0;
        for (double x : s) m += x;
        m /= s.size();
        std::string o = strfmt("{\"mean\": %g, \"sem\": 0.01, \"per_split\": [", m);
        for (size_t i = 0; i < s.size(); i++) o += strfmt("%s%g", i ? ", " : "", s[i]);
        o += "]}, \"ev_per_bin\": [";
        o += strfmt("{\"bin_start_ms\": 0, \"bin_end_ms\": 20, \"mean\": %g, \"sem\": 0.02, \"units\": 8}, ", m - 0.1);
        o += strfmt("{\"bin_start_ms\": 20, \"bin_end_ms\": 40, \"mean\": %g, \"sem\": null, \"units\": 8}]", m + 0.1);
        return o;
    };
    auto area = [&](const char* layer, const std::vector<double>& s) {
        return strfmt("{\"layer\": \"%s\", \"units\": 6, \"ev\": %s, \"heldout_units\": {\"units\": 2, \"ev\": %s}, "
                      "\"reliability\": [], \"teacher\": {\"units\": 8, \"ev\": %s}, \"fit_units\": [0, 1]}",
                      layer, ev(s).c_str(), ev(s).c_str(), ev({0.9, 0.9, 0.9, 0.9}).c_str());
    };
    return strfmt("{\"format\": \"ventral-fit-dynamics-2\", \"settings\": {\"motif\": \"%s\", \"feedback\": \"none\", \"time_varied\": false, \"trainable_params\": 1234, "
                  "\"splits\": %zu, \"ms_per_step\": 10, \"onset_ms\": 0, \"image_steps\": 10},\n"
                  "\"areas\": {\"V4\": %s, \"IT\": %s}, \"splits\": [], \"notes\": [\"a \\\"note\\\"\"], \"seconds\": 12.5}\n",
                  motif.c_str(), v4.size(), area("conv3", v4).c_str(), area("conv5", it).c_str());
}

// ---- the binaries ----------------------------------------------------------------------

bool have_bins() {
    return fs::exists(std::string(VT_ROOT) + "/bin/sweep") && fs::exists(std::string(VT_ROOT) + "/bin/fit_dynamics");
}

using Run = vt_test::ShellRun;
Run run_sweep(const std::string& args) { return vt_test::run_tool("sweep", args); }

// A tiny virtual primate (the tiny3 teacher of test_dynamics.cpp's recovery test, smaller) and a
// random tiny3 backbone for the student, made once.
struct Fixture {
    std::string dir, data, backbone;
};

const Fixture& fixture() {
    static const Fixture f = [] {
        Fixture x;
        x.dir = vt_test::temp_dir();
        VirtualPrimateConfig c = vt_test::tiny_primate("tiny3");
        x.data = x.dir + "/vp_tiny.npz";
        npz_write(x.data, virtual_primate_generate(c));
        x.backbone = x.dir + "/tiny3_backbone.npz";
        vt_test::save_random_backbone(x.backbone, "tiny3");
        return x;
    }();
    return f;
}

const char* const kNames[] = {"ff", "time_varied", "lstm"};

// A grid of three cheap configurations and the sweep's arguments for it.
std::string tiny_sweep_args(const std::string& out, const std::string& grid_lines, const std::string& extra) {
    const Fixture& f = fixture();
    std::string grid = out + "_grid.txt";
    std::ofstream(grid) << grid_lines;
    return "--grid " + grid + " --data " + f.data + " --out " + out + " -- --backbone " + f.backbone +
           " --readout V4=conv2,IT=conv3 --heldout-fit-images 0 " + extra;
}

const char* kTinyGrid =
    "# three cheap configurations\n"
    "ff          --motif none --feedback none\n"
    "time_varied --time-varied --feedback none\n"
    "lstm        --motif lstm --feedback conv3:conv1   # the teacher's structure\n";

std::set<std::string> finished(const std::string& out) {
    std::set<std::string> s;
    for (const char* n : kNames)
        if (fs::exists(out + "/runs/" + n + "/results.json")) s.insert(n);
    return s;
}

}  // namespace

TEST_CASE("fit_flags: one table, every flag with a sweep role; the preset gives the defaults and a given flag wins") {
    auto parse = [](FitFlags& v, std::vector<std::string> args) {
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(&a[0]);
        Cli cli = fit_cli(v, fit_preset_of((int)argv.size(), argv.data()));
        cli.parse((int)argv.size(), argv.data());
        fit_flags_finish(cli, v);
        return cli;
    };
    FitFlags cpu;
    Cli cli = parse(cpu, {"fit_dynamics", "--backbone", "b.npz"});
    REQUIRE(cli.flags.size() > 30);
    for (const Cli::Flag& f : cli.flags) {
        CAPTURE(f.name);
        CHECK((f.tag == kSweepConfig || f.tag == kSweepShared || f.tag == kSweepOwn));
    }
    CHECK(cpu.c.iters == 96);
    CHECK(cpu.c.score.folds == 2);
    CHECK(cpu.c.memory_init);
    CHECK(!cpu.c.residual);
    CHECK(std::isnan(cpu.c.onset_ms));  // auto
    CHECK(cpu.c.lr == 0.03f);
    CHECK(cpu.c.lr_schedule == "cosine");
    CHECK(cpu.c.warmup == 8);

    FitFlags gpu;
    parse(gpu, {"fit_dynamics", "--backbone", "b.npz", "--preset", "gpu", "--iters", "7"});
    CHECK(gpu.c.iters == 7);  // given: wins over the preset
    CHECK(gpu.c.batch == 32);
    CHECK(gpu.c.score.folds == 4);
    CHECK(gpu.c.lr == 0.05f);
    CHECK(gpu.c.lr_schedule == "cosine");
    CHECK(gpu.c.warmup == 0);  // the preset's 20, at most a tenth of the 7 iterations given
    FitFlags gpu_full;
    parse(gpu_full, {"fit_dynamics", "--backbone", "b.npz", "--preset", "gpu"});
    CHECK(gpu_full.c.iters == 400);
    CHECK(gpu_full.c.warmup == 20);
    CHECK(!gpu.c.residual);  // the cpu preset's start
    CHECK(gpu.c.memory_init);
    CHECK(std::isnan(gpu.c.onset_ms));
    FitFlags given;
    parse(given, {"fit_dynamics", "--backbone=b.npz", "--no-memory-init", "--cells", "residual", "--onset-ms", "-10",
                  "--pls", "simpls", "--no-readout-refit"});
    CHECK(!given.c.memory_init);
    CHECK(given.c.residual);
    CHECK(given.c.onset_ms == -10.f);
    CHECK(given.c.score.pls == PlsAlgorithm::Simpls);
    CHECK(given.c.readout_lr == doctest::Approx(1e-4f));  // Adam alone moves the readouts then

    FitFlags bad;
    CHECK(has(error_of([&] { parse(bad, {"fit_dynamics", "--preset", "tpu"}); }), "--preset: expected cpu or gpu, got 'tpu'"));
    CHECK(has(error_of([&] { parse(bad, {"fit_dynamics", "--onset-ms", "soon"}); }), "--onset-ms: expected a time in ms or auto"));
    CHECK(has(error_of([&] { parse(bad, {"fit_dynamics", "--pls", "svd"}); }), "--pls: expected nipals or simpls, got 'svd'"));
}

TEST_CASE("sweep: its flags are fit_dynamics' flags, each either per configuration or shared") {
    if (!vt_test::have_tool("fit_dynamics")) { MESSAGE("bin/fit_dynamics not built: skipped"); return; }
    vt_test::ShellRun r = vt_test::run_tool("fit_dynamics", "--help");
    REQUIRE(r.rc == 0);
    // "  --name X   help" takes a value, "  --name   help" is a switch
    std::map<std::string, bool> fit;  // flag -> is a switch
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("  --", 0) != 0) continue;
        std::istringstream w(line);
        std::string name, next;
        w >> name >> next;
        fit[name] = next != "X";
    }
    REQUIRE(fit.size() > 30);
    std::set<std::string> sweep;
    for (const std::string& f : sweep_grid_flags()) {
        CAPTURE(f);
        sweep.insert(f);
        REQUIRE(fit.count(f) == 1);  // a grid flag fit_dynamics does not know would fail every run
        CHECK(fit[f] == sweep_grid_flag_is_switch(f));
    }
    for (const std::string& f : sweep_fixed_flags()) {
        CAPTURE(f);
        sweep.insert(f);
        CHECK(fit.count(f) == 1);
    }
    sweep.insert("--overwrite"), sweep.insert("--resume"), sweep.insert("--split"), sweep.insert("--help");  // the sweep's own business
    for (const auto& kv : fit) {
        CAPTURE(kv.first);
        CHECK(sweep.count(kv.first) == 1);  // a new fit_dynamics flag must be placed in the sweep
    }
}

TEST_CASE("sweep: grid files") {
    SweepGrid g = sweep_grid_parse("# a comment\n\n"
                                   "lstm   --motif lstm --feedback conv5:conv2   # trailing comment\n"
                                   "  tv --time-varied\n"
                                   "gru.slow+1 --motif=gru --lr 0.003 --onset-ms -10 --model-seed 3\n",
                                   "/x/mine.grid");
    CHECK(g.name == "mine");
    CHECK(g.source == "/x/mine.grid");
    REQUIRE(g.configs.size() == 3);
    CHECK(g.configs[0].name == "lstm");
    CHECK(g.configs[0].flags == std::vector<std::string>{"--motif", "lstm", "--feedback", "conv5:conv2"});
    CHECK(g.configs[1].flags == std::vector<std::string>{"--time-varied"});
    CHECK(g.configs[2].name == "gru.slow+1");
    CHECK(g.configs[2].flags ==
          std::vector<std::string>{"--motif", "gru", "--lr", "0.003", "--onset-ms", "-10", "--model-seed", "3"});

    struct Bad {
        std::string text, says;
    };
    for (const Bad& b : {Bad{"ok --motif lstm\nbad/name --motif lstm\n", "g.txt:2: bad configuration name 'bad/name'"},
                         Bad{"..  --motif lstm\n", "g.txt:1: bad configuration name '..'"},
                         Bad{"a --motif lstm\n\n# x\na --motif gru\n", "g.txt:4: configuration 'a' is already defined on line 1"},
                         Bad{"a --motif lstm --frobnicate 3\n", "g.txt:1: unknown flag '--frobnicate'"},
                         Bad{"a --motif lstm --lr\n", "g.txt:1: --lr needs a value"},
                         Bad{"a --lr --iters 3\n", "g.txt:1: --lr needs a value"},
                         Bad{"a\nb --motif lsmt\n", "g.txt:2: --motif: expected none, timedecay"},
                         Bad{"a --iters many\n", "g.txt:1: --iters: expected an integer from 0 to 10000000, got 'many'"},
                         Bad{"a --lr fast\n", "g.txt:1: --lr: expected a finite number above 0 and at most 10, got 'fast'"},
                         Bad{"a --batch 0\n", "g.txt:1: --batch: expected an integer from 1"},  // fit_dynamics' own range
                         Bad{"a --onset-ms soon\n", "g.txt:1: --onset-ms: expected a time in ms or auto, got 'soon'"},
                         Bad{"a --cells gated\n", "g.txt:1: --cells: expected plain or residual, got 'gated'"},
                         Bad{"a --device tpu\n", "g.txt:1: --device: expected cpu or cuda, got 'tpu'"},
                         Bad{"a --overwrite\n", "g.txt:1: the sweep decides the flag '--overwrite'"},
                         Bad{"a --motif lstm --motif gru\n", "g.txt:1: --motif is given twice"},
                         Bad{"a --time-varied=yes\n", "g.txt:1: --time-varied is a switch"},
                         Bad{"a lstm\n", "g.txt:1: expected a flag (--name), found 'lstm'"},
                         Bad{"--motif lstm\n", "g.txt:1: expected a configuration name before the flags"},
                         Bad{"a --splits 3\n", "g.txt:1: --splits is not a per-configuration flag"},
                         Bad{"a --data x.npz\n", "g.txt:1: --data is not a per-configuration flag"},
                         Bad{"# nothing\n\n", "g.txt: no configurations"}}) {
        CAPTURE(b.text);
        std::string e = error_of([&] { sweep_grid_parse(b.text, "g.txt"); });
        CHECK_MESSAGE(has(e, b.says), e);
    }
    CHECK(has(error_of([] { sweep_grid_load("/nonexistent/grid.txt"); }), "neither a built-in grid"));
    // a device is named, not opened: a grid for GPU nodes can be checked (and listed) on a machine without one
    CHECK(sweep_grid_parse("a --device cuda --lr 0.003\n", "g.txt").configs[0].flags ==
          std::vector<std::string>{"--device", "cuda", "--lr", "0.003"});
    // the preset sets the splits, which every configuration shares: it goes after `--`
    CHECK(has(error_of([] { sweep_grid_parse("a --preset gpu\n", "g.txt"); }), "--preset is not a per-configuration flag"));
    // a file on disk: the error names it
    std::string dir = vt_test::temp_dir();
    std::ofstream(dir + "/g.txt") << "a --motif lstm\nb --motif lstm --batch\n";
    CHECK(has(error_of([&] { sweep_grid_load(dir + "/g.txt"); }), dir + "/g.txt:2: --batch needs a value"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: the flags a grid line may set are fit_dynamics' own, and every model/training flag of it is one") {
    // The sweep reads fit_dynamics' table (models/fit/fit_flags.h); this ties that table to the
    // binary's --help, so a flag the tool declares outside the table fails here.
    if (!vt_test::have_tool("fit_dynamics")) {
        MESSAGE("bin/fit_dynamics not built: skipped");
        return;
    }
    vt_test::ShellRun r = vt_test::run_tool("fit_dynamics", "--help");
    REQUIRE(r.rc == 0);
    std::vector<std::string> tool;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("  --", 0) == 0) tool.push_back(line.substr(2, line.find_first_of(" \t", 2) - 2));
    REQUIRE(tool.size() > 20);
    // the sweep's own (equal for every configuration) and the tool's housekeeping
    const std::vector<std::string> not_grid = {"--data", "--out", "--threads", "--splits", "--seed", "--ceiling-splits",
                                               "--min-reliability", "--preset", "--help", "--overwrite",
                                               "--resume", "--split"};
    std::vector<std::string> grid = sweep_grid_flags();
    for (const std::string& f : tool) {
        CAPTURE(f);
        bool known = std::find(grid.begin(), grid.end(), f) != grid.end() ||
                     std::find(not_grid.begin(), not_grid.end(), f) != not_grid.end();
        CHECK(known);
    }
    for (const std::string& f : grid) {
        CAPTURE(f);
        CHECK(std::find(tool.begin(), tool.end(), f) != tool.end());
    }
}

TEST_CASE("sweep: built-in grids") {
    auto names = [](const SweepGrid& g) {
        std::vector<std::string> v;
        for (const SweepConfig& c : g.configs) v.push_back(c.name);
        return v;
    };
    auto flags = [](const SweepGrid& g, const std::string& name) {
        for (const SweepConfig& c : g.configs)
            if (c.name == name) return c.flags;
        FAIL("no configuration " << name);
        return std::vector<std::string>{};
    };
    SweepGrid m = sweep_grid_load("motifs");
    CHECK(m.source == "built-in");
    CHECK(names(m) == std::vector<std::string>{"none", "timedecay", "rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc", "ff",
                                               "time_varied"});
    CHECK(flags(m, "rnn-large") == std::vector<std::string>{"--motif", "rnn-large", "--feedback", "conv5:conv2"});
    CHECK(flags(m, "ff") == std::vector<std::string>{"--motif", "none", "--feedback", "none"});
    CHECK(flags(m, "time_varied") == std::vector<std::string>{"--time-varied", "--motif", "none", "--feedback", "none"});

    SweepGrid f = sweep_grid_load("feedback");
    CHECK(names(f) == std::vector<std::string>{"lstm_nofb", "lstm", "lstm_5to3", "lstm_5to4", "lstm_4to2", "lstm_4to3",
                                               "lstm_3to2", "lstm_allfb", "ff", "time_varied"});
    CHECK(flags(f, "lstm_nofb") == std::vector<std::string>{"--motif", "lstm", "--feedback", "none"});
    CHECK(flags(f, "lstm_4to3") == std::vector<std::string>{"--motif", "lstm", "--feedback", "conv4:conv3"});
    CHECK(flags(f, "lstm_allfb") == std::vector<std::string>{"--motif", "lstm", "--feedback",
                                                             "conv5:conv2,conv5:conv3,conv5:conv4,conv4:conv2,conv4:conv3,conv3:conv2"});
    CHECK(flags(f, "lstm") == flags(m, "lstm"));  // the same configuration under one name

    SweepGrid p = sweep_grid_load("paper");
    CHECK(p.configs.size() == 17);  // 10 + 10 - {lstm, ff, time_varied}
    std::set<std::string> uniq;
    for (const std::string& n : names(p)) uniq.insert(n);
    CHECK(uniq.size() == p.configs.size());
    CHECK(names(p)[10] == "lstm_nofb");
    CHECK(has(error_of([] { sweep_grid_builtin("motif"); }), "unknown built-in grid 'motif'"));
}

TEST_CASE("sweep: the paired t-test and Student's t against scipy") {
    // scipy.stats.ttest_1samp([1, 2, 3, 4], 0): t = 3.872983346207417, p = 0.030466291662170977
    PairedTest t = paired_t_test({1, 2, 3, 4}, {0, 0, 0, 0});
    CHECK(t.diff == std::vector<double>{1, 2, 3, 4});
    CHECK(t.mean == doctest::Approx(2.5));
    CHECK(t.df == 3);
    CHECK(t.t == doctest::Approx(3.872983346207417).epsilon(1e-9));
    CHECK(std::fabs(t.p - 0.030466291662170977) < 1e-6);
    // scipy.stats.ttest_rel([.61, .58, .65, .60], [.55, .56, .60, .52]): t = 4.2, p = 0.024632078176939316
    t = paired_t_test({0.61, 0.58, 0.65, 0.60}, {0.55, 0.56, 0.60, 0.52});
    CHECK(t.t == doctest::Approx(4.2).epsilon(1e-9));
    CHECK(std::fabs(t.p - 0.024632078176939316) < 1e-6);
    // the sign of the difference does not change p
    PairedTest r = paired_t_test({0.55, 0.56, 0.60, 0.52}, {0.61, 0.58, 0.65, 0.60});
    CHECK(r.t == doctest::Approx(-4.2).epsilon(1e-9));
    CHECK(r.p == doctest::Approx(t.p));

    // 2 * scipy.stats.t.sf(t, df)
    CHECK(std::fabs(student_t_p_two_sided(1.0, 1) - 0.5) < 1e-9);
    CHECK(std::fabs(student_t_p_two_sided(2.0, 7) - 0.08561932856297605) < 1e-9);
    CHECK(std::fabs(student_t_p_two_sided(10, 2) - 0.00985245702332569) < 1e-9);
    CHECK(std::fabs(student_t_p_two_sided(-0.5, 30) - 0.6207230048851272) < 1e-9);
    CHECK(student_t_p_two_sided(0, 5) == doctest::Approx(1));
    // scipy.special.betainc(a, b, x)
    CHECK(std::fabs(incomplete_beta(2, 3, 0.5) - 0.6875) < 1e-12);
    CHECK(std::fabs(incomplete_beta(0.5, 0.5, 0.3) - 0.36901011956554536) < 1e-10);
    CHECK(std::fabs(incomplete_beta(5, 0.5, 0.9) - 0.3166429150200122) < 1e-10);
    CHECK(std::fabs(incomplete_beta(50, 60, 0.45) - 0.4642352914306031) < 1e-9);

    // edge cases: NaN splits are left out; fewer than two differences give no test
    t = paired_t_test({1, NAN, 3, 4}, {0, 0, NAN, 1});
    CHECK(t.diff == std::vector<double>{1, 3});
    CHECK(t.df == 1);
    t = paired_t_test({1}, {0});
    CHECK(t.mean == 1);
    CHECK(std::isnan(t.t));
    CHECK(std::isnan(t.p));
    t = paired_t_test({1, 2}, {0, 1, 2});  // different splits: nothing pairs
    CHECK(t.diff.empty());
    CHECK(std::isnan(t.p));
    t = paired_t_test({1, 2, 3}, {0.5, 1.5, 2.5});  // the same shift in every split
    CHECK(std::isinf(t.t));
    CHECK(t.p == 0);
}

TEST_CASE("sweep: results.json summaries, comparisons and the report files") {
    std::string dir = vt_test::temp_dir();
    std::ofstream(dir + "/ff.json") << fake_results("none", {0.50, 0.52, 0.49, 0.51}, {0.40, 0.41, 0.42, 0.40});
    std::ofstream(dir + "/lstm.json") << fake_results("lstm", {0.60, 0.63, 0.58, 0.62}, {0.45, 0.44, 0.47, 0.46});
    std::ofstream(dir + "/broken.json") << "{\"format\": \"ventral-fit-dynamics-2\", \"settings\": {\"motif\": \"lstm\"}}";
    std::ofstream(dir + "/old.json") << "{\"format\": \"ventral-fit-dynamics-1\", \"settings\": {\"motif\": \"lstm\"}}";
    CHECK(has(error_of([&] { sweep_result_load(dir + "/old.json"); }),
              "holds \"ventral-fit-dynamics-1\", expected \"ventral-fit-dynamics-2\""));

    SweepResult R = sweep_result_load(dir + "/lstm.json");
    CHECK(R.motif == "lstm");
    CHECK(R.trainable_params == 1234);
    CHECK(R.splits == 4);
    CHECK(R.seconds == 12.5);
    REQUIRE(R.areas.size() == 2);
    const SweepArea* v4 = R.area("V4");
    REQUIRE(v4);
    CHECK(v4->layer == "conv3");
    CHECK(v4->ev.mean == doctest::Approx(0.6075));
    CHECK(v4->ev.per_split.size() == 4);
    CHECK(v4->heldout_units == 2);
    CHECK(v4->teacher.mean == doctest::Approx(0.9));
    REQUIRE(v4->bins.size() == 2);
    CHECK(std::isnan(v4->bins[1].sem));  // null
    CHECK(R.mean_ev() == doctest::Approx((0.6075 + 0.455) / 2));
    CHECK(has(error_of([&] { sweep_result_load(dir + "/broken.json"); }), "broken.json: no \"settings.feedback\""));

    SweepReport rep;
    rep.grid = sweep_grid_parse("lstm --motif lstm\nff --motif none --feedback none\nbad --motif gru\n", dir + "/g.txt");
    rep.settings = {{"data", "test"}};
    for (const SweepConfig& c : rep.grid.configs) {
        SweepRun run;
        run.config = c;
        run.log = dir + "/" + c.name + ".log";
        if (c.name == "bad") run.status = SweepStatus::Failed, run.exit_code = 1;
        else run.status = SweepStatus::Done, run.result = sweep_result_load(dir + "/" + c.name + ".json");
        run.reused = c.name == "ff";
        rep.runs.push_back(run);
    }
    std::vector<const SweepRun*> rank = sweep_ranking(rep);
    REQUIRE(rank.size() == 2);
    CHECK(rank[0]->config.name == "lstm");
    std::vector<SweepComparison> cmp = sweep_comparisons(rep);
    REQUIRE(cmp.size() == 4);  // lstm vs ff, best vs second: V4 and IT each
    CHECK(cmp[0].a == "lstm");
    CHECK(cmp[0].b == "ff");
    CHECK(cmp[0].area == "V4");
    CHECK(cmp[0].test.diff.size() == 4);
    CHECK(cmp[0].test.mean == doctest::Approx(0.1025));
    PairedTest want = paired_t_test({0.60, 0.63, 0.58, 0.62}, {0.50, 0.52, 0.49, 0.51});
    CHECK(cmp[0].test.p == doctest::Approx(want.p));
    CHECK(cmp[2].why == "best vs second best");

    sweep_write_report(dir + "/out", rep);
    for (const char* f : {"summary.csv", "summary.json", "report.md", "bars_g.png", "ev_over_time.png"}) {
        CAPTURE(f);
        CHECK(fs::exists(dir + "/out/" + f));
    }
    std::string csv = slurp(dir + "/out/summary.csv");
    CHECK(count_lines(csv) == 1 + 3 * 2);  // header, 3 configurations x 2 areas
    CHECK(has(csv, "lstm,V4,conv3,lstm,none,0,0.6075,0.01,"));
    CHECK(has(csv, "ff,IT,conv5,none,none,0,0.4075,"));
    CHECK(has(csv, ",reused\n"));
    CHECK(has(csv, "bad,V4,,,,,,,,,,,,FAILED\n"));
    Json js = json_read(dir + "/out/summary.json");  // our own output parses
    json_format_check(js, kSweepSummaryFormat, "summary.json");
    CHECK(js["configurations"].size() == 3);
    CHECK(js["comparisons"].size() == 4);
    std::string md = slurp(dir + "/out/report.md");
    CHECK(has(md, "![EV per configuration](bars_g.png)"));
    CHECK(has(md, "(ev_over_time.png)"));
    CHECK(has(md, "| lstm | ff | V4 | +0.100, +0.110, +0.090, +0.110 | +0.1025 |"));
    CHECK(has(md, "## Failed"));
    std::string table = sweep_table(rep);
    CHECK(has(line_with(table, "lstm "), "0.608 +- 0.010"));
    CHECK(has(line_with(table, "bad "), "FAILED (exit code 1"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: a bad grid file or command line fails before any fit, in one line") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    std::string dir = vt_test::temp_dir();
    std::ofstream(dir + "/g.txt") << "ok --motif lstm\n\nbroken --motif lstm --iters\n";
    struct Case {
        std::string args, says;
    };
    for (const Case& c : {Case{"--grid " + dir + "/g.txt --out " + dir + "/o", dir + "/g.txt:3: --iters needs a value"},
                          Case{"--grid motifs --out " + dir + "/o -- --threads 3", "--threads after `--` is the sweep's"},
                          Case{"--grid motifs --out " + dir + "/o -- --resume", "--resume after `--` is the sweep's to set "
                               "(rerunning the sweep resumes each fit it was stopped in)"},
                          Case{"--grid motifs --out " + dir + "/o -- --split 2", "--split after `--` is the sweep's to set "
                               "(it fits whole runs: one task per configuration with --index)"},
                          Case{"--grid motifs --out " + dir + "/o --jobs 0", "--jobs: expected an integer from 1 to 1024, got '0'"},
                          Case{"--grid motifs --out " + dir + "/o --data " + dir + "/none.npz", "none.npz' does not exist"},
                          Case{"--grid motifz --out " + dir + "/o", "'motifz' is neither a built-in grid"},
                          Case{"--grid motifs", "--grid and --out are required"}}) {
        CAPTURE(c.args);
        Run r = run_sweep(c.args);
        CAPTURE(r.out);
        CHECK(r.rc == 1);
        CHECK(count_lines(r.out) == 1);
        CHECK(has(r.out, "error: "));
        CHECK(has(r.out, c.says));
    }
    CHECK(!fs::exists(dir + "/o/runs"));
    fs::remove_all(dir);
}

TEST_CASE("sweep: end to end; a deleted result is rerun and the others reused untouched") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    std::string out = vt_test::temp_dir() + "/sweep";
    std::string args = tiny_sweep_args(out, kTinyGrid, "--iters 2 --val-every 2");
    Run r = run_sweep(args);
    CAPTURE(r.out);
    REQUIRE(r.rc == 0);
    for (const char* f : {"summary.csv", "summary.json", "report.md", "bars_sweep_grid.png", "ev_over_time.png"}) {
        CAPTURE(f);
        CHECK(fs::exists(out + "/" + f));
    }
    CHECK(count_lines(slurp(out + "/summary.csv")) == 1 + 3 * 2);
    for (const char* n : kNames) {
        CAPTURE(n);
        CHECK(has(line_with(r.out, std::string("] ") + n + ":"), ", ran"));
        CHECK(fs::exists(out + "/runs/" + n + "/log.txt"));
        CHECK(fs::exists(out + "/claims/" + n));  // the claim file stays (unlocked)
    }
    CHECK(has(slurp(out + "/report.md"), "| lstm | ff | V4 |"));
    CHECK(has(r.out, "time_varied"));

    // delete one result: only that one reruns; the others' results.json stay as they were
    std::map<std::string, std::pair<fs::file_time_type, std::string>> before;
    for (const char* n : {"ff", "lstm"}) {
        std::string p = out + "/runs/" + n + "/results.json";
        before[n] = {fs::last_write_time(p), slurp(p)};
    }
    fs::remove(out + "/runs/time_varied/results.json");
    Run again = run_sweep(args);
    CAPTURE(again.out);
    REQUIRE(again.rc == 0);
    CHECK(has(again.out, "3 configurations, 2 finished earlier, 1 to fit"));
    CHECK(has(line_with(again.out, "] ff:"), ", reused"));
    CHECK(has(line_with(again.out, "] lstm:"), ", reused"));
    CHECK(has(line_with(again.out, "] time_varied:"), ", ran"));
    CHECK(fs::exists(out + "/runs/time_varied/results.json"));
    for (const auto& kv : before) {
        std::string p = out + "/runs/" + kv.first + "/results.json";
        CHECK(fs::last_write_time(p) == kv.second.first);
        CHECK(slurp(p) == kv.second.second);
    }

    // reusing under other flags is refused, naming the folder and each difference
    Run other = run_sweep(tiny_sweep_args(out, kTinyGrid, "--iters 3 --val-every 3"));
    CAPTURE(other.out);
    CHECK(other.rc == 1);
    CHECK(count_lines(other.out) == 1);
    CHECK(has(other.out, out + "/runs/ff holds a finished run that is not what this sweep would run"));
    CHECK(has(other.out, "--iters: 2 in the run, 3 here; --val-every: 2 in the run, 3 here"));
    fs::remove_all(fs::path(out).parent_path());
}

TEST_CASE("sweep: killed midway with SIGTERM, a rerun fits only the unfinished configurations") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    std::string out = vt_test::temp_dir() + "/sweep";
    // each line sets its own length: lstm, second, takes a few seconds, so the kill lands inside it
    std::string grid = "ff          --motif none --feedback none --iters 2 --val-every 2\n"
                       "lstm        --motif lstm --feedback conv3:conv1 --iters 60 --val-every 20 --patience 9\n"
                       "time_varied --time-varied --feedback none\n";
    std::string args = tiny_sweep_args(out, grid, "--splits 4");
    std::string log = out + "_first.txt";
    std::string cmd = std::string(VT_ROOT) + "/bin/sweep " + args + " > " + log + " 2>&1";

    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);  // its own process group, like a job started from a shell
        execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), (char*)nullptr);
        _exit(127);
    }
    setpgid(pid, pid);
    // wait until ff has finished and lstm has started (its record for --resume written), then
    // stop the sweep
    auto t0 = std::chrono::steady_clock::now();
    while (!(finished(out).count("ff") && fs::exists(out + "/runs/lstm/.unfinished/run.json")) &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(finished(out).count("ff"));
    kill(pid, SIGTERM);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    std::string first = slurp(log);
    CAPTURE(first);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 128 + SIGTERM);
    CHECK(has(first, "interrupted"));
    std::set<std::string> done = finished(out);
    CHECK(done == std::set<std::string>{"ff"});  // lstm was stopped before it finished; time_varied never started
    CHECK(has(first, "stopped lstm"));
    CHECK(!fs::exists(out + "/runs/time_varied"));
    // the stopped fit is gone: nothing finishes behind the sweep's back
    std::this_thread::sleep_for(std::chrono::seconds(2));
    CHECK(finished(out) == done);

    Run again = run_sweep(args);
    CAPTURE(again.out);
    REQUIRE(again.rc == 0);
    for (const char* n : kNames) {
        CAPTURE(n);
        CHECK(has(line_with(again.out, std::string("] ") + n + ":"), done.count(n) ? ", reused" : ", ran"));
    }
    CHECK(finished(out).size() == 3);
    // the stopped fit was resumed (fit_dynamics --resume: its finished splits kept)
    CHECK(has(slurp(out + "/runs/lstm/log.txt"), "--resume"));
    CHECK(has(slurp(out + "/runs/lstm/log.txt"), "fit_dynamics: resuming the unfinished run in " + out + "/runs/lstm"));
    CHECK(!fs::exists(out + "/runs/lstm/.unfinished"));
    fs::remove_all(fs::path(out).parent_path());
}

TEST_CASE("sweep: a fit left unfinished with other settings is started over, not resumed") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    std::string out = vt_test::temp_dir() + "/sweep";
    // what a fit of other data and flags, stopped before its end, leaves behind
    fs::create_directories(out + "/runs/ff/.unfinished");
    FitRun other;
    other.flags = {{"--iters", "7"}};
    json_write(out + "/runs/ff/.unfinished/run.json", fit_run_json(other));
    Run r = run_sweep(tiny_sweep_args(out, "ff --motif none --feedback none\n", "--iters 2 --val-every 2"));
    CAPTURE(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, out + "/runs/ff: the fit left unfinished there was started otherwise (data: it fitted"));
    CHECK(has(r.out, "--iters: 7 in the run, 2 here"));
    CHECK(has(r.out, "starting it over"));
    CHECK(has(line_with(r.out, "] ff:"), ", ran"));
    CHECK(!has(slurp(out + "/runs/ff/log.txt"), "--resume"));
    CHECK(!fs::exists(out + "/runs/ff/.unfinished"));
    fs::remove_all(fs::path(out).parent_path());
}

TEST_CASE("sweep: a failing configuration is reported, the others finish, the exit code says so") {
    if (!have_bins()) { MESSAGE("bin/sweep or bin/fit_dynamics not built: skipped"); return; }
    std::string out = vt_test::temp_dir() + "/sweep";
    // tiny3 has no conv5: fit_dynamics refuses the feedback edge
    std::string grid = "ff  --motif none --feedback none\n"
                       "bad --motif lstm --feedback conv5:conv2\n";
    Run r = run_sweep("--jobs 2 " + tiny_sweep_args(out, grid, "--iters 2 --val-every 2"));
    CAPTURE(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "2 at a time"));
    CHECK(has(line_with(r.out, "] ff:"), ", ran"));
    std::string bad = line_with(r.out, "] bad:");
    CHECK(has(bad, "FAILED (exit code 1)"));
    CHECK(has(bad, out + "/runs/bad/log.txt"));
    CHECK(has(bad, "conv5"));  // the log's last line: fit_dynamics' error
    CHECK(has(r.out, "1 of 2 configurations failed: bad"));
    std::string csv = slurp(out + "/summary.csv");
    CHECK(count_lines(csv) == 1 + 2 * 2);
    CHECK(has(csv, "bad,V4,"));
    CHECK(has(slurp(out + "/report.md"), "## Failed"));
    fs::remove_all(fs::path(out).parent_path());
}
