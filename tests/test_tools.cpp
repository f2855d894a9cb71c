// test_tools.cpp: the tools as a user meets them: bad files and flags give one line naming
// the file or flag, and a non-zero exit code.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "engine/io/json.h"
#include "engine/io/npy.h"
#include "engine/progress.h"
#include "models/convrnn.h"
#include "models/datasets/virtual_primate.h"
#include "models/fit/fit_flags.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::has;

namespace {

using Run = vt_test::ShellRun;
using vt_test::have_tool;
using vt_test::run_tool;
int lines(const std::string& s) { return vt_test::count_lines(s); }

// DIR/vp.npz, a tiny3 virtual primate of 24 images (8 V4 sites on conv2, 8 IT on conv3,
// feedback conv3:conv2), and its teacher's backbone DIR/bb.npz: the fits of the tool tests.
Run tiny_primate_24(const std::string& dir) {
    return run_tool("make_virtual_primate", "--out " + dir + "/vp.npz --images 24 --teacher-arch tiny3 --v4-layer conv2 "
                    "--it-layer conv3 --teacher-feedback conv3:conv2 --size 32 --v4 8 --it 8 --reps 6 "
                    "--write-teacher-backbone " + dir + "/bb.npz");
}

}  // namespace

TEST_CASE("tools: one list parser: items in order, empty ones kept for the caller to refuse") {
    using V = std::vector<std::string>;
    CHECK(list_items("V4=conv3,IT=conv5") == V{"V4=conv3", "IT=conv5"});
    CHECK(list_items("a,,b,") == V{"a", "", "b", ""});
    CHECK(list_items("") == V{""});
    CHECK(list_items("conv5:conv2+conv4:conv3", '+') == V{"conv5:conv2", "conv4:conv3"});
    CHECK(list_join({"a", "b", "c"}) == "a, b, c");
    CHECK(list_join({}) == "");
    // the flags built on it: an empty item is an error naming the flag
    CHECK(has(vt_test::error_of([&] { feedback_parse("conv5:conv2,", backbone_spec("hcnn5-s")); }), "--feedback"));
    CHECK(feedback_parse("conv5:conv2,conv4:conv3", backbone_spec("hcnn5-s")).size() == 2);
}

TEST_CASE("tools: the progress bar's rate reads at every speed") {
    CHECK(format_rate(250, "img") == "250 img/s");
    CHECK(format_rate(12.4, "it") == "12 it/s");
    CHECK(format_rate(2.46, "it") == "2.5 it/s");
    CHECK(format_rate(0.5, "it") == "2.0 s/it");  // a CPU BPTT iteration: not "0 it/s"
    CHECK(format_rate(1 / 3.24, "it") == "3.2 s/it");
    CHECK(format_rate(0, "it") == "- it/s");      // nothing done yet
    CHECK(format_rate(NAN, "it") == "- it/s");
}

TEST_CASE("tools: bad files give one line naming the file and a non-zero exit") {
    if (!have_tool("inspect")) { MESSAGE("bin/inspect not built: skipped"); return; }
    std::string dir = vt_test::temp_dir();
    // a valid checkpoint, then a truncated copy of it
    ModelConfig mc;
    mc.arch = "tiny3";
    Model m(mc, 1);
    checkpoint_save(dir + "/good.npz", m.params);
    Run ok = run_tool("inspect", dir + "/good.npz --arch tiny3");
    CHECK(ok.rc == 0);
    CHECK(ok.out.find("loads as tiny3") != std::string::npos);
    {
        std::ifstream in(dir + "/good.npz", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(dir + "/truncated.npz", std::ios::binary).write(bytes.data(), bytes.size() / 2);
    }
    // a checkpoint whose conv1.weight is int32
    Npz bad;
    for (const auto& e : m.params.entries) {
        std::vector<float> v = e.view.to_vector();
        if (e.name == "conv1.weight") {
            std::vector<int32_t> iv(v.size(), 1);
            bad.set(e.name, NpyArray::from_i32(e.shape, iv.data()));
        } else {
            bad.set(e.name, NpyArray::from_f32(e.shape, v.data()));
        }
    }
    npz_write(dir + "/int_weights.npz", bad);
    std::ofstream(dir + "/notes.png") << "not an image at all\n";

    struct Case { std::string args, file, says; };
    for (const Case& c : {Case{dir + "/truncated.npz", "truncated.npz", ""},
                          Case{dir + "/int_weights.npz --arch tiny3", "int_weights.npz", "dtype int32, expected float32"},
                          Case{dir + "/missing.npz", "missing.npz", "No such file"},
                          Case{dir + "/notes.png", "notes.png", "cannot read image"},
                          Case{dir + "/good.npz --arch hcnn5-s", "good.npz", "expects"}}) {
        CAPTURE(c.args);
        Run r = run_tool("inspect", c.args, /*stderr_only=*/true);
        CAPTURE(r.out);
        CHECK(r.rc != 0);
        CHECK(r.out.rfind("error: ", 0) == 0);
        CHECK(lines(r.out) == 1);
        CHECK(r.out.find(c.file) != std::string::npos);
        CHECK(r.out.find(c.says) != std::string::npos);
    }
    for (const char* f : {"good.npz", "truncated.npz", "int_weights.npz", "notes.png"}) std::remove((dir + "/" + f).c_str());
    std::remove(dir.c_str());
}

TEST_CASE("tools: bad flags name the flag and exit non-zero") {
    if (!have_tool("pretrain")) { MESSAGE("bin/pretrain not built: skipped"); return; }
    Run r = run_tool("pretrain", "--epochs many /tmp");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--epochs: expected an integer from 1 to"));
    CHECK(has(r.out, "got 'many'"));
    r = run_tool("pretrain", "--frobnicate /tmp");
    CHECK(r.rc != 0);
    CHECK(r.out.find("unknown flag '--frobnicate'") != std::string::npos);
    r = run_tool("pretrain", "/nonexistent/dir");
    CHECK(r.rc != 0);
    CHECK(r.out.find("/nonexistent/dir") != std::string::npos);
    r = run_tool("bench", "--workload W9");
    CHECK(r.rc != 0);
    CHECK(r.out.find("unknown workload 'W9'") != std::string::npos);
    r = run_tool("bench", "--conv fft --workload W3");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--conv: expected auto, im2col, implicit, winograd2, winograd4 or fused-winograd, got 'fft'"));
    r = run_tool("pretrain", "--help");
    CHECK(r.rc == 0);
    CHECK(r.out.find("--resume") != std::string::npos);
}

TEST_CASE("tools: fit_dynamics writes strictly valid results.json and a predictions.npz numpy reads") {
    if (!have_tool("fit_dynamics") || !have_tool("make_virtual_primate")) { MESSAGE("tools not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    Run r = tiny_primate_24(dir);
    REQUIRE(r.rc == 0);
    r = run_tool("fit_dynamics", "--data " + dir + "/vp.npz --backbone " + dir + "/bb.npz --arch tiny3 --readout "
                 "V4=conv2,IT=conv3 --feedback conv3:conv2 --iters 2 --splits 2 --batch 2 --threads 1 --out " + dir + "/fit");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    // Python's json with hooks that refuse a repeated key and NaN/Infinity; numpy reads the npz
    r = vt_test::shell_run(
        "cd " + vt_test::shell_quote(dir + "/fit") + " && " +
        vt_test::python_strict_json("import numpy as np\n"
                                    "j = json.load(open(\"results.json\"), object_pairs_hook=pairs, parse_constant=bad)\n"
                                    "z = np.load(\"predictions.npz\")\n"
                                    "print(j[\"format\"], z[\"predictions\"].shape, z[\"unit_ev\"].shape, "
                                    "\",\".join(sorted(set(map(str, z[\"unit_role\"])))))") + " 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "ventral-fit-dynamics-2 (24, 16, 13) (2, 16, 13) fit,heldout"));
    // results.csv: each row's reliability is the median ceiling of its own unit set in its bin
    // (the teacher's: all of the area's units), as predictions.npz's ceilings give it
    r = vt_test::shell_run(
        "cd " + vt_test::shell_quote(dir + "/fit") + " && python3 -c 'import csv, numpy as np\n"
        "z = np.load(\"predictions.npz\")\n"
        "rows = list(csv.DictReader(open(\"results.csv\")))\n"
        "starts = list(z[\"bin_start_ms\"])\n"
        "seen, differ = set(), 0\n"
        "for row in rows:\n"
        "    b = starts.index(float(row[\"bin_start_ms\"]))\n"
        "    area = z[\"unit_area\"] == row[\"area\"]\n"
        "    mine = area if row[\"units\"] == \"teacher\" else area & (z[\"unit_role\"] == row[\"units\"])\n"
        "    want = np.nanmedian(z[\"ceiling\"][mine, b])\n"
        "    got = float(row[\"reliability\"]) if row[\"reliability\"] not in (\"\", \"null\") else float(\"nan\")\n"
        "    assert np.isnan(want) == np.isnan(got) and (np.isnan(want) or abs(want - got) < 1e-5), (row, want)\n"
        "    seen.add(row[\"units\"])\n"
        "    fit = np.nanmedian(z[\"ceiling\"][area & (z[\"unit_role\"] == \"fit\"), b])\n"
        "    differ += row[\"units\"] != \"fit\" and abs(fit - got) > 1e-6\n"
        "print(\"rows\", len(rows), \",\".join(sorted(seen)), \"differ\", differ > 0)' 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "rows 78 fit,heldout,teacher differ True"));
}

TEST_CASE("tools: fit_dynamics' default folder names the run's preset, data and backbone, so runs of others do not meet") {
    if (!have_tool("fit_dynamics") || !have_tool("make_virtual_primate")) { MESSAGE("tools not built: skipped"); return; }
    namespace fs = std::filesystem;
    const std::string dir = vt_test::temp_dir();
    REQUIRE(tiny_primate_24(dir).rc == 0);
    const std::string fit = "cd " + vt_test::shell_quote(dir) + " && " + vt_test::tool_path("fit_dynamics") +
                            " --data vp.npz --arch tiny3 --readout V4=conv2,IT=conv3 --splits 2 --threads 1 ";
    struct Case {
        std::string flags, folder;
    };
    for (const Case& c : {Case{"--backbone bb.npz --feedback conv3:conv2 --iters 0", "lstm_conv3-conv2_vp_on_bb"},
                          Case{"--backbone bb.npz --feedback conv3:conv2 --iters 0 --preset gpu", "lstm_conv3-conv2_gpu_vp_on_bb"},
                          Case{"--backbone bb.npz --motif none --feedback none --iters 0", "none_none_vp_on_bb"},
                          Case{"--backbone bb.npz --time-varied", "time_varied_vp_on_bb"}}) {
        CAPTURE(c.flags);
        Run r = vt_test::shell_run(fit + c.flags + " 2>&1");
        CAPTURE(r.out);
        CHECK(r.rc == 0);
        CHECK(fs::exists(dir + "/runs/fit_dynamics/" + c.folder + "/results.json"));
    }
    int folders = 0;
    for (const auto& e : fs::directory_iterator(dir + "/runs/fit_dynamics")) folders += e.is_directory();
    CHECK(folders == 4);
    fs::remove_all(dir);
}

TEST_CASE("tools: fit_dynamics --resume continues a killed run to the results of an uninterrupted one") {
    if (!have_tool("fit_dynamics") || !have_tool("make_virtual_primate")) { MESSAGE("tools not built: skipped"); return; }
    namespace fs = std::filesystem;
    const std::string dir = vt_test::temp_dir();
    Run r = tiny_primate_24(dir);
    REQUIRE(r.rc == 0);
    // 3 splits of 600 iterations: a second or more each, time enough to kill the run in split 2
    const std::string flags = "--data " + dir + "/vp.npz --backbone " + dir + "/bb.npz --arch tiny3 --readout "
                              "V4=conv2,IT=conv3 --feedback conv3:conv2 --splits 3 --batch 2 --val-every 50 --threads 1 ";
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + dir + "/whole");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(!fs::exists(dir + "/whole/.unfinished"));  // a finished run keeps nothing to resume
    for (int s = 0; s < 3; s++) CHECK(fs::exists(dir + "/whole/checkpoints/split" + std::to_string(s) + ".npz"));

    // the same run, killed (SIGKILL: no handler runs) once split 1 has ended
    const std::string out = dir + "/killed", log = dir + "/killed.txt";
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const std::string cmd = "exec " + vt_test::tool_path("fit_dynamics") + " " + flags + "--iters 600 --out " + out + " > " + log + " 2>&1";
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
        _exit(127);
    }
    bool split1 = false;
    for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120);) {
        if ((split1 = fs::exists(out + "/.unfinished/split0.done.npz"))) break;
        if (waitpid(pid, nullptr, WNOHANG) == pid) break;  // ended early: the checks below say how
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    INFO(vt_test::slurp(log));
    REQUIRE(split1);
    REQUIRE(!fs::exists(out + "/results.json"));  // killed before its end (else this machine outran the test)
    CHECK(fs::exists(out + "/.unfinished/run.json"));
    CHECK(fs::exists(out + "/.unfinished/split0.npz"));

    // refused in one line that says why
    auto refused = [&](const std::string& args, const std::string& says) {
        Run x = run_tool("fit_dynamics", flags + args, true);
        CAPTURE(args);
        CAPTURE(x.out);
        CHECK(x.rc != 0);
        CHECK(has(x.out, says));
        CHECK(has(x.out, "error: "));
        return x.out;
    };
    // without --resume the unfinished run is neither clobbered nor silently restarted
    const std::string again = refused("--iters 600 --out " + out, "holds an unfinished run (split 1 finished");
    CHECK(has(again, "pass --resume (or --split N) to continue it, --overwrite to start over"));
    CHECK(lines(again) == 1);
    // with other flags (or data) --resume refuses, naming what differs
    refused("--iters 500 --out " + out + " --resume", "--iters: 600 in the run, 500 here");
    refused("--iters 600 --model-seed 3 --out " + out + " --resume", "--model-seed: 0 in the run, 3 here");
    // a damaged record of a finished split fails naming it (copies: the original is resumed below)
    fs::copy(out, dir + "/damaged", fs::copy_options::recursive);
    fs::resize_file(dir + "/damaged/.unfinished/split0.done.npz", 100);
    refused("--iters 600 --out " + dir + "/damaged --resume", "error: '" + dir + "/damaged/.unfinished/split0.done.npz': truncated");
    // so does a foreign run.json
    fs::copy(out, dir + "/badjson", fs::copy_options::recursive);
    std::ofstream(dir + "/badjson/.unfinished/run.json") << "{\"format\": \"ventral-fit-dynamics-2\"}\n";
    const std::string foreign = refused("--iters 600 --out " + dir + "/badjson --resume", "ventral-fit-unfinished-1");
    CHECK(has(foreign, dir + "/badjson/.unfinished/run.json"));
    CHECK(lines(foreign) == 1);
    // --overwrite starts over (any flags)
    r = run_tool("fit_dynamics", flags + "--iters 2 --out " + dir + "/damaged --overwrite");
    CHECK(r.rc == 0);
    CHECK(!fs::exists(dir + "/damaged/.unfinished"));
    CHECK(fs::exists(dir + "/damaged/results.json"));

    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + out + " --resume");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "resuming the unfinished run in " + out + " (split 1 finished)"));
    CHECK(has(r.out, "split 1/3: resumed (fitted by an earlier run: 600 iterations"));
    CHECK(!has(r.out, "split 1/3 ["));  // split 1 was not trained again
    CHECK(has(r.out, "split 2/3 ["));
    CHECK(!fs::exists(out + "/.unfinished"));
    for (int s = 0; s < 3; s++) CHECK(fs::exists(out + "/checkpoints/split" + std::to_string(s) + ".npz"));
    // every held-out prediction and score is the uninterrupted run's, bit for bit
    auto same_as_whole = [&](const std::string& run) {
        CAPTURE(run);
        const Npz a = npz_read(dir + "/whole/predictions.npz"), b = npz_read(run + "/predictions.npz");
        for (const char* k : {"predictions", "unit_r", "unit_ev"}) {
            CAPTURE(k);
            const std::vector<float> x = a.get(k).to_f32(), y = b.get(k).to_f32();
            REQUIRE(x.size() == y.size());
            size_t same = 0;
            for (size_t i = 0; i < x.size(); i++) same += (x[i] == y[i]) || (std::isnan(x[i]) && std::isnan(y[i]));
            CHECK(same == x.size());
        }
        const Json ja = json_read(dir + "/whole/results.json"), jb = json_read(run + "/results.json");
        CHECK(ja["areas"] == jb["areas"]);
        CHECK(ja["notes"] == jb["notes"]);
        CHECK(ja["splits"].size() == jb["splits"].size());
        for (size_t s = 0; s < ja["splits"].size(); s++) {
            Json x = ja["splits"][s], y = jb["splits"][s];
            x.erase("seconds"), y.erase("seconds");
            CHECK(x == y);  // the resumed split's log too (its loss curve, validations, onset)
        }
    };
    same_as_whole(out);

    // --split: the splits fitted by separate calls, in any order, into one folder; the last
    // call publishes the uninterrupted run's results
    const std::string parts = dir + "/parts";
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + parts + " --split 2");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "split 2 of 3 finished; the run in " + parts + " stays unfinished (split 2 finished)"));
    CHECK(has(r.out, "split 2/3: 600 iterations"));
    CHECK(!has(r.out, "split 1/3"));
    CHECK(!fs::exists(parts + "/results.json"));
    CHECK(fs::exists(parts + "/.unfinished/split1.done.npz"));
    CHECK(!fs::exists(parts + "/.unfinished/split0.npz"));
    refused("--iters 600 --out " + parts + " --split 4", "--split: split 4 of a run of 3 splits (--splits): expected 1 to 3");
    refused("--iters 500 --out " + parts + " --split 1",
            "--split: the unfinished run in '" + parts + "' was started otherwise (--iters: 600 in the run, 500 here)");
    refused("--time-varied --out " + dir + "/tv --split 1", "--split: the time-varied baseline has no BPTT to split");
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + parts + " --split 3");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "stays unfinished (splits 2, 3 finished)"));
    CHECK(!fs::exists(parts + "/results.json"));
    // the same splits fitted in separate folders (several machines at once) and gathered
    // into one, then --resume: it reads them all
    auto gather_split1 = [&](const std::string& iters, const std::string& name) {  // parts + split 1 fitted alone
        const std::string to = dir + "/" + name, alone = to + "_alone";
        fs::copy(parts, to, fs::copy_options::recursive);
        Run x = run_tool("fit_dynamics", flags + "--iters " + iters + " --out " + alone + " --split 1");
        REQUIRE(x.rc == 0);
        for (const char* f : {"split0.npz", "split0.done.npz"})
            fs::copy_file(alone + "/.unfinished/" + f, to + "/.unfinished/" + f);
        return to;
    };
    const std::string gathered = gather_split1("600", "gathered");
    // (a split of another run, here other --iters, is refused by its fingerprint)
    const std::string mixed = gather_split1("500", "mixed");
    refused("--iters 600 --out " + mixed + " --resume",
            "split0.done.npz' does not hold this run's split 1 (a run with other flags, data or backbone");
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + gathered + " --resume");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "(splits 1, 2, 3 finished)"));
    same_as_whole(gathered);
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + parts + " --split 1");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "split 2/3: resumed"));
    CHECK(!fs::exists(parts + "/.unfinished"));
    same_as_whole(parts);
    refused("--iters 600 --out " + parts + " --split 1", "holds a finished run");  // published: nothing to continue

    // over a finished run: the first call's --overwrite starts a new one, which later calls
    // continue (a plain run is refused, an --overwrite would lose splits), and the last call
    // replaces the finished run
    const std::string refit = dir + "/refit";
    fs::copy(dir + "/whole", refit, fs::copy_options::recursive);
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + refit + " --split 1 --overwrite");
    REQUIRE(r.rc == 0);
    CHECK(fs::exists(refit + "/results.json"));  // the finished run stays until the new one is
    refused("--iters 600 --out " + refit, "pass --resume (or --split N) to continue it");
    refused("--iters 600 --out " + refit + " --split 3 --overwrite",
            "--split 3 --overwrite: '" + refit + "' holds an unfinished run (split 1 finished) that --overwrite would discard");
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + refit + " --split 2");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "split 2 of 3 finished; the run in " + refit + " stays unfinished (splits 1, 2 finished)"));
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + refit + " --split 2");
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "split 2 of 3 was already finished (nothing fitted)"));
    r = run_tool("fit_dynamics", flags + "--iters 600 --out " + refit + " --split 3");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "split 3/3 ["));
    CHECK(!fs::exists(refit + "/.unfinished"));
    same_as_whole(refit);

    // a run that fails inside the fit, before any split has finished, leaves nothing to resume
    // (the next run into the folder is not refused), and a record without a finished split
    // (killed in split 1) is replaced
    const std::string failed = dir + "/failed";
    refused("--steps 3 --out " + failed, "--steps");
    CHECK(!fs::exists(failed + "/.unfinished"));
    fs::create_directories(failed + "/.unfinished");
    fs::copy_file(dir + "/badjson/.unfinished/split0.npz", failed + "/.unfinished/split0.npz");  // a checkpoint, no record
    std::ofstream(failed + "/.unfinished/run.json") << "{}";
    r = run_tool("fit_dynamics", flags + "--iters 2 --out " + failed);
    CHECK(r.rc == 0);
    CHECK(!fs::exists(failed + "/.unfinished"));

    // --resume where there is nothing to resume, or with --overwrite, or for the baseline
    refused("--iters 600 --out " + dir + "/none --resume", "holds no unfinished run to continue");
    refused("--out " + out + " --resume --overwrite", "--resume and --overwrite: pick one");
    refused("--time-varied --out " + dir + "/tv --resume", "the time-varied baseline has nothing to resume");
    fs::remove_all(dir);
}

TEST_CASE("tools: without --data fit_dynamics reads its preset's virtual primate") {
    // the gpu preset's is the cpu preset's teacher, sites and recording on 6x the images
    const DefaultPrimate cpu = fit_default_primate("cpu"), gpu = fit_default_primate("gpu");
    const VirtualPrimateConfig def;
    CHECK(cpu.path == "data/virtual_primate.npz");
    CHECK(cpu.config.images == def.images);
    CHECK(gpu.path == "data/virtual_primate_1920.npz");
    CHECK(gpu.config.images == 1920);
    for (const VirtualPrimateConfig* c : {&cpu.config, &gpu.config}) {
        CHECK(c->teacher_seed == def.teacher_seed);
        CHECK(c->seed == def.seed);
        CHECK(c->teacher_arch == def.teacher_arch);
        CHECK(c->teacher_motif == def.teacher_motif);
        CHECK(c->teacher_feedback == def.teacher_feedback);
        CHECK(c->v4_units == def.v4_units);
        CHECK(c->it_units == def.it_units);
        CHECK(c->reps == def.reps);
        CHECK(c->size == def.size);
    }
    // the tool: run in a folder whose data/ holds a small virtual primate under both names
    if (!have_tool("fit_dynamics") || !have_tool("make_virtual_primate")) { MESSAGE("tools not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    std::filesystem::create_directories(dir + "/data");
    Run r = run_tool("make_virtual_primate", "--out " + dir + "/data/virtual_primate_1920.npz --images 24 --teacher-arch "
                     "tiny3 --v4-layer conv2 --it-layer conv3 --teacher-feedback conv3:conv2 --size 32 --v4 8 --it 8 "
                     "--reps 6 --write-teacher-backbone " + dir + "/bb.npz");
    REQUIRE(r.rc == 0);
    std::filesystem::copy_file(dir + "/data/virtual_primate_1920.npz", dir + "/data/virtual_primate.npz");
    for (const char* preset : {"gpu", "cpu"}) {
        CAPTURE(preset);
        r = vt_test::shell_run("cd " + vt_test::shell_quote(dir) + " && " + vt_test::tool_path("fit_dynamics") +
                               " --preset " + preset + " --backbone bb.npz --arch tiny3 --readout V4=conv2,IT=conv3 "
                               "--feedback conv3:conv2 --iters 1 --splits 2 --batch 2 --threads 1 --out fit_" + preset + " 2>&1");
        INFO(r.out);
        REQUIRE(r.rc == 0);
        const std::string want = fit_default_primate(preset).path;
        CHECK(has(r.out, "using the virtual primate in " + want));
        CHECK(json_read(dir + "/fit_" + std::string(preset) + "/results.json")["settings"]["data"].get<std::string>() == want);
    }
}

TEST_CASE("tools: fit_dynamics refuses bad flags and input before any fitting") {
    if (!have_tool("fit_dynamics")) { MESSAGE("bin/fit_dynamics not built: skipped"); return; }
    Run r = run_tool("fit_dynamics", "--frobnicate");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "unknown flag '--frobnicate'"));
    r = run_tool("fit_dynamics", "--components 5");  // the scoring tools' flag; the readouts choose their own
    CHECK(r.rc != 0);
    CHECK(has(r.out, "unknown flag '--components'"));
    r = run_tool("fit_dynamics", "--help");
    CHECK(has(r.out, "--readout-components"));
    CHECK(!has(r.out, " --components "));
    r = run_tool("fit_dynamics", "--motif lsmt --data /nonexistent.npz");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--motif: expected none, timedecay, rnn"));
    CHECK(has(r.out, "got 'lsmt'"));
    r = run_tool("fit_dynamics", "--device tpu");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--device: expected cpu or cuda"));
    r = run_tool("fit_dynamics", "--data /nonexistent.npz --out " + vt_test::temp_dir());
    CHECK(r.rc != 0);
    CHECK(has(r.out, "/nonexistent.npz"));
    CHECK(lines(r.out) == 1);
    if (!cuda_available()) {
        r = run_tool("fit_dynamics", "--device cuda");
        CHECK(r.rc != 0);
        CHECK(has(r.out, "no usable CUDA device"));
    }
    r = run_tool("fit_dynamics", "--init /nonexistent.npz --backbone x.npz");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--init: '/nonexistent.npz' holds its own backbone; drop --backbone"));
    r = run_tool("fit_dynamics", "--init /nonexistent.npz --cells plain");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "decides whether its cells are residual; drop --cells"));
    r = run_tool("fit_dynamics", "--init /nonexistent.npz --cell-scale-init 0.3");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "start as they are in it; drop --cell-scale-init"));
    r = run_tool("fit_dynamics", "--stop-on accuracy");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--stop-on: expected score or loss, got 'accuracy'"));
    r = run_tool("fit_dynamics", "--cells gated");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "--cells: expected plain or residual, got 'gated'"));
    r = run_tool("fit_dynamics", "--init /nonexistent.npz");
    CHECK(r.rc != 0);
    CHECK(has(r.out, "/nonexistent.npz"));
    CHECK(lines(r.out) == 1);
    r = run_tool("fit_dynamics", "--help");
    CHECK(r.rc == 0);
    CHECK(has(r.out, "--time-varied"));
    CHECK(has(r.out, "--readout"));
}

TEST_CASE("tools: pretrain refuses bad model flags before reading any image") {
    if (!have_tool("pretrain")) { MESSAGE("bin/pretrain not built: skipped"); return; }
    std::string dir = vt_test::temp_dir();
    // the smallest valid folder: two classes of two tiny PNG images
    for (const char* split : {"train", "val"})
        for (const char* cls : {"a", "b"}) {
            std::string d = dir + "/" + split + "/" + cls;
            REQUIRE(std::system(("mkdir -p " + d).c_str()) == 0);
        }
    Run r = run_tool("pretrain", dir + " --feedback conv2:conv5");
    CHECK(r.rc != 0);  // empty class folders, or the bad edge: either way a clear message
    CHECK(lines(r.out) == 1);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("tools: features runs a fit's split checkpoint on the data's images and reproduces its held-out predictions") {
    if (!have_tool("fit_dynamics") || !have_tool("make_virtual_primate") || !have_tool("features")) {
        MESSAGE("tools not built: skipped");
        return;
    }
    const std::string dir = vt_test::temp_dir();
    Run r = vt_test::tiny_fitted_run(dir, "--images 24 --teacher-feedback conv3:conv2 --size 32 --v4 8 --it 8",
                                     "--arch tiny3 --feedback conv3:conv2 --iters 4 --val-every 2 --batch 2");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    const Npz fit = npz_read(dir + "/fit/predictions.npz");
    const std::vector<float> P = fit.get("predictions").to_f32();
    const std::vector<int64_t> split = fit.get("test_split").to_i64();
    const std::vector<std::string> ids = fit.get("unit_id").to_strings(), role = fit.get("unit_role").to_strings();
    const int64_t N = 24, U = (int64_t)ids.size(), B = fit.get("bin_start_ms").numel();
    for (int s = 0; s < 2; s++) {
        CAPTURE(s);
        const std::string out = dir + strfmt("/f%d.npz", s);
        r = run_tool("features", strfmt("--checkpoint %s/fit/checkpoints/split%d.npz --images %s/vp.npz --out %s "
                                        "--threads 1 --batch 5", dir.c_str(), s, dir.c_str(), out.c_str()));
        INFO(r.out);
        REQUIRE(r.rc == 0);
        const Npz f = npz_read(out);
        int64_t compared = 0;
        double worst = 0;
        for (const char* area : {"V4", "IT"}) {
            const std::vector<std::string> aid = f.get(std::string("unit_id.") + area).to_strings();
            const std::vector<float> Q = f.get(std::string("prediction.") + area).to_f32();  // (N, Ua, B)
            REQUIRE(f.get(std::string("prediction.") + area).shape == Shape{N, (int64_t)aid.size(), B});
            for (size_t k = 0; k < aid.size(); k++) {
                const int64_t u = std::find(ids.begin(), ids.end(), aid[k]) - ids.begin();
                REQUIRE(u < U);
                CHECK(role[u] == "fit");  // the readout's rows are the fit units
                for (int64_t i = 0; i < N; i++) {
                    if (split[i] != s) continue;  // the images this checkpoint held out
                    for (int64_t b = 0; b < B; b++) {
                        const double p = P[(i * U + u) * B + b], q = Q[(i * aid.size() + k) * B + b];
                        REQUIRE(std::isfinite(q));  // a NaN would slip past max()
                        worst = std::max(worst, std::fabs(p - q) / (1.0 + std::fabs(p)));
                        compared++;
                    }
                }
            }
        }
        CHECK(compared > 100);
        CHECK(worst < 1e-4);
        // the readout layers at every step: (N, T, C, H, W), silent before the image arrives
        const NpyArray& c2 = f.get("conv2");
        REQUIRE(c2.shape.size() == 5);
        CHECK(c2.shape[0] == N);
        CHECK(f.get("step_ms").numel() == c2.shape[1]);
        std::vector<float> v = c2.to_f32();
        const int64_t per_step = c2.shape[2] * c2.shape[3] * c2.shape[4];
        double early = 0, late = 0;
        for (int64_t e = 0; e < per_step; e++) early += std::fabs(v[e]), late += std::fabs(v[3 * per_step + e]);
        CHECK(early == 0);  // conv2 at step 0 (and 1): nothing has reached it
        CHECK(late > 0);
        CHECK(f.get("image").to_strings().size() == (size_t)N);
    }
    // --bins: the fit's bin means, (N, B, D), which ./bin/score reads as they are
    r = run_tool("features", "--checkpoint " + dir + "/fit/checkpoints/split0.npz --images " + dir + "/vp.npz --out " +
                 dir + "/bins.npz --bins --layers conv2,conv3 --threads 1");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    const Npz fb = npz_read(dir + "/bins.npz");
    CHECK(fb.get("conv3").shape.size() == 3);
    CHECK(fb.get("conv3").shape[1] == B);
    r = run_tool("score", "--features " + dir + "/bins.npz --data " + dir + "/vp.npz --layers conv2,conv3 --splits 2 "
                 "--threads 1 --out " + dir + "/score");
    INFO(r.out);
    CHECK(r.rc == 0);
    // a backbone: its last layer at every step (layers + 1 steps: the image reaches conv3 at step 3)
    r = run_tool("features", "--checkpoint " + dir + "/bb.npz --images " + dir + "/vp.npz --out " + dir + "/bb_f.npz");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(npz_read(dir + "/bb_f.npz").get("conv3").shape[1] == 4);
    // a folder of images, found below it and taken in path order; any size (resized to the input)
    std::filesystem::create_directories(dir + "/imgs/b");
    Image img;
    img.H = 20, img.W = 30, img.rgb.assign(20 * 30 * 3, 0);
    for (size_t e = 0; e < img.rgb.size(); e++) img.rgb[e] = (uint8_t)(e * 7 % 251);
    image_write_png(dir + "/imgs/b/one.png", img);
    image_write_png(dir + "/imgs/a.png", img);
    std::ofstream(dir + "/imgs/notes.txt") << "not an image";
    r = run_tool("features", "--checkpoint " + dir + "/bb.npz --images " + dir + "/imgs --out " + dir + "/folder.npz");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    const Npz ff = npz_read(dir + "/folder.npz");
    CHECK(ff.get("image").to_strings() == std::vector<std::string>{"a.png", "b/one.png"});
    CHECK(ff.get("conv3").shape[0] == 2);
    const std::vector<float> fv = ff.get("conv3").to_f32();
    CHECK(std::equal(fv.begin(), fv.begin() + fv.size() / 2, fv.begin() + fv.size() / 2));  // the same image twice

    // bad input: one line naming the flag or file, nothing written
    struct Bad {
        std::string args, says;
    };
    const std::string ck = " --checkpoint " + dir + "/fit/checkpoints/split0.npz";
    for (const Bad& b : {Bad{"--images " + dir + "/vp.npz --out " + dir + "/x.npz", "--checkpoint is required"},
                         Bad{ck + " --out " + dir + "/x.npz", "--images is required"},
                         Bad{ck + " --images " + dir + "/vp.npz", "--out is required"},
                         Bad{ck + " --images " + dir + "/nope --out " + dir + "/x.npz", "'" + dir + "/nope' does not exist"},
                         Bad{ck + " --images " + dir + "/bb.npz --out " + dir + "/x.npz", "has no 'images' array"},
                         Bad{ck + " --images " + dir + "/vp.npz --out " + dir + "/x.npz --layers conv9", "no layer 'conv9' in tiny3"},
                         Bad{ck + " --images " + dir + "/vp.npz --out " + dir + "/f0.npz", "exists (pass --overwrite"},
                         Bad{" --checkpoint " + dir + "/bb.npz --images " + dir + "/vp.npz --out " + dir + "/x.npz --bins",
                             "is not a fit's checkpoint, so it has no time bins"},
                         Bad{" --checkpoint " + dir + "/vp.npz --images " + dir + "/vp.npz --out " + dir + "/x.npz", "meta.arch"}}) {
        CAPTURE(b.args);
        r = run_tool("features", b.args);
        CHECK(r.rc == 1);
        CHECK(has(r.out, b.says));
        CHECK(!std::filesystem::exists(dir + "/x.npz"));
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("tools: lesion re-scores a fitted run: intact is the fit's score, each edge and each layer's recurrence removed") {
    if (!have_tool("fit_dynamics") || !have_tool("make_virtual_primate") || !have_tool("lesion")) {
        MESSAGE("tools not built: skipped");
        return;
    }
    const std::string dir = vt_test::temp_dir();
    Run r = vt_test::tiny_fitted_run(dir, "--images 32 --teacher-feedback conv3:conv1 --size 8 --v4 6 --it 6",
                                     "--feedback conv3:conv1 --iters 6 --val-every 3 --batch 4");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    r = run_tool("lesion", dir + "/fit --threads 1");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    for (const char* v : {"intact", "feedback conv3:conv1", "recurrence conv1", "recurrence conv2", "recurrence conv3"})
        CHECK(has(r.out, v));
    const Json fit = json_read(dir + "/fit/results.json"), les = json_read(dir + "/fit/lesion/lesion.json");
    CHECK(les["format"] == "ventral-lesion-1");
    REQUIRE(les["variants"].size() == 5);
    for (const char* area : {"V4", "IT"}) {
        CAPTURE(area);
        const Json& a = fit["areas"][area]["ev"]["per_split"];
        const Json& b = les["variants"][0]["areas"][area]["ev"]["per_split"];
        REQUIRE(a.size() == 2);
        for (int s = 0; s < 2; s++) CHECK(b[s].get<double>() == doctest::Approx(a[s].get<double>()).epsilon(1e-5));
        CHECK(les["variants"][0]["areas"][area]["drop"]["mean"].get<double>() == 0);
    }
    // removing conv2's recurrence changes what V4 (read from conv2) sees: its score moves in
    // some split (the mean over the 2 splits can cancel: +-0.006 per split with ridge readouts)
    double moved = 0;
    for (int sp = 0; sp < 2; sp++)
        moved = std::max(moved, std::fabs(les["variants"][3]["areas"]["V4"]["ev"]["per_split"][sp].get<double>() -
                                          les["variants"][0]["areas"]["V4"]["ev"]["per_split"][sp].get<double>()));
    CHECK(moved > 1e-4);
    // strictly valid for Python too: no repeated key, no NaN literal
    r = vt_test::shell_run(vt_test::python_strict_json("j = json.load(open(sys.argv[1]), object_pairs_hook=pairs, "
                                                       "parse_constant=bad)\n"
                                                       "print(j[\"format\"], len(j[\"variants\"]))") +
                           " " + dir + "/fit/lesion/lesion.json 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "ventral-lesion-1 5"));
    CHECK(std::filesystem::exists(dir + "/fit/lesion/lesion.png"));
    CHECK(std::filesystem::exists(dir + "/fit/lesion/lesion.csv"));
    // bad input
    r = run_tool("lesion", "");
    CHECK(r.rc == 1);
    CHECK(has(r.out, "expected one RUN folder"));
    r = run_tool("lesion", dir + "/nope");
    CHECK(r.rc == 1);
    CHECK(has(r.out, "no results.json"));
    r = run_tool("fit_dynamics", "--data " + dir + "/vp.npz --backbone " + dir + "/bb.npz --readout V4=conv2,IT=conv3 "
                 "--time-varied --motif none --feedback none --splits 2 --threads 1 --out " + dir + "/tv");
    REQUIRE(r.rc == 0);
    r = run_tool("lesion", dir + "/tv");
    CHECK(r.rc == 1);
    CHECK(has(r.out, "the time-varied baseline has no network to lesion"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("tools: bench's and pretrain's JSON lines are strict JSON for Python too") {
    if (!have_tool("bench") || !have_tool("pretrain")) { MESSAGE("tools not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    // a tiny two-class folder of 8x8 images for one epoch of tiny3
    for (const char* split : {"train", "val"})
        for (int c = 0; c < 2; c++) {
            std::filesystem::create_directories(dir + "/imgs/" + split + "/class" + std::to_string(c));
            for (int i = 0; i < 4; i++) {
                Image img;
                img.H = img.W = 8, img.rgb.assign(8 * 8 * 3, 0);
                for (size_t e = 0; e < img.rgb.size(); e++) img.rgb[e] = (uint8_t)((e * (c + 3) + i * 17) % 251);
                image_write_png(dir + "/imgs/" + split + "/class" + std::to_string(c) + "/" + std::to_string(i) + ".png", img);
            }
        }
    Run p = run_tool("pretrain", dir + "/imgs --arch tiny3 --epochs 2 --batch 4 --threads 1 --loader-threads 1 --out " +
                                 dir + "/bb.npz", /*stderr_only=*/false);
    INFO(p.out);
    REQUIRE(p.rc == 0);
    Run b = run_tool("bench", "--workload W3 --reps 1 --threads 1");
    INFO(b.out);
    REQUIRE(b.rc == 0);
    std::ofstream(dir + "/lines.txt") << p.out << "\n" << b.out;
    // every line that starts with '{' must parse strictly: no repeated key, no NaN/Infinity
    Run r = vt_test::shell_run(vt_test::python_strict_json(
                               "n = {\"epoch\": 0, \"workload\": 0}\n"
                               "for line in open(sys.argv[1]):\n"
                               "    line = line.strip()\n"
                               "    if not line.startswith(\"{\"): continue\n"
                               "    j = json.loads(line, object_pairs_hook=pairs, parse_constant=bad)\n"
                               "    for k in n: n[k] += k in j\n"
                               "print(\"epochs\", n[\"epoch\"], \"workloads\", n[\"workload\"])") + " " + dir + "/lines.txt 2>&1");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "epochs 2 workloads 2"));  // two epochs; W3 and the same-run sgemm it is measured against
    std::filesystem::remove_all(dir);
}

TEST_CASE("tools: make_cifar_folder.sh unpacks CIFAR-10 into train/ + val/, and refuses what it cannot use") {
    const std::string dir = vt_test::temp_dir(), script = std::string(VT_ROOT) + "/tools/make_cifar_folder.sh";
    auto sh = [&](const std::string& src, const std::string& out) {
        return vt_test::shell_run("CIFAR_SRC=" + vt_test::shell_quote(src) + " sh " + vt_test::shell_quote(script) + " " +
                                  vt_test::shell_quote(out) + " 2>&1");
    };
    // a source without the archive or the two folders: refused before OUT is made
    Run r = sh(dir + "/nothing", dir + "/out0");
    INFO(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "holds neither cifar10_jpg.tar.gz nor train/ and test/ folders"));
    CHECK(!std::filesystem::exists(dir + "/out0"));
    // an archive whose checksum is not its SOURCE.md's: refused, nothing unpacked
    std::filesystem::create_directories(dir + "/bad/train/cat");
    std::filesystem::create_directories(dir + "/bad/test/cat");
    std::ofstream(dir + "/bad/train/cat/1.jpg") << "x";
    REQUIRE(vt_test::shell_run("cd " + dir + "/bad && tar -czf cifar10_jpg.tar.gz train test").rc == 0);
    std::ofstream(dir + "/bad/SOURCE.md") << "sha256 " << std::string(64, '0') << "\n";
    r = sh(dir + "/bad", dir + "/out1");
    INFO(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "has sha256"));
    CHECK(has(r.out, "a damaged or different copy"));
    CHECK(!std::filesystem::exists(dir + "/out1"));
    // unpacked folders of the wrong size: refused naming the counts
    std::filesystem::remove(dir + "/bad/cifar10_jpg.tar.gz");  // the folders alone
    r = sh(dir + "/bad", dir + "/out3");
    INFO(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "gave 1 train and 0 val images (expected 50000 and 10000; nothing kept in"));
    CHECK(!std::filesystem::exists(dir + "/out3"));
    // an OUT with a partial train/ or val/: refused, untouched
    std::filesystem::create_directories(dir + "/out4/val");
    r = sh(dir + "/bad", dir + "/out4");
    INFO(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "already has a train/ or val/ folder that is not a complete CIFAR-10 copy"));
    CHECK(std::filesystem::is_empty(dir + "/out4/val"));
    // the real thing, where this project's shared copy is (the product does not need it)
    const std::string shared = vt_test::shared_data("cifar10_jpg");
    if (!std::filesystem::exists(shared + "/cifar10_jpg.tar.gz")) {
        MESSAGE("no " << shared << ": the unpacking of the real archive is not tested here");
    } else {
        r = sh(shared, dir + "/cifar");
        INFO(r.out);
        REQUIRE(r.rc == 0);
        CHECK(has(r.out, "50000 train and 10000 val images in 10 classes"));
        CHECK(std::filesystem::is_regular_file(dir + "/cifar/val/airplane/0000.jpg"));
        CHECK(!std::filesystem::exists(dir + "/cifar/test"));
        r = sh(shared, dir + "/cifar");  // a complete copy: nothing to do
        INFO(r.out);
        CHECK(r.rc == 0);
        CHECK(has(r.out, "nothing to do"));
        // an unpacked copy (train/ and test/) as the source: OUT gets links to its files
        std::filesystem::rename(dir + "/cifar", dir + "/unpacked");
        std::filesystem::rename(dir + "/unpacked/val", dir + "/unpacked/test");
        r = sh(dir + "/unpacked", dir + "/linked");
        INFO(r.out);
        REQUIRE(r.rc == 0);
        CHECK(has(r.out, "symlinked to"));
        CHECK(std::filesystem::is_symlink(dir + "/linked/val/airplane/0000.jpg"));
    }
    std::filesystem::remove_all(dir);
}
