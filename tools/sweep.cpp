// sweep.cpp: ./bin/sweep, the paper's architecture comparison (Figs. 3 and 4) as one resumable
// command with a report (issue 6; grids, tests and the report in models/fit/sweep.h), on one
// machine or as the tasks of a cluster job (issue 16).
//
//   ./bin/sweep --grid GRID [--data D.npz] --out DIR [--jobs N] [--quick] [-- FIT_DYNAMICS FLAGS]
//   ./bin/sweep ... --list          one line per configuration: index, name, fit_dynamics command
//   ./bin/sweep ... --index K       fit configuration K only (a Slurm array task); no report
//   ./bin/sweep ... --collect       the report from the finished runs, fitting nothing
//
// Every configuration of the grid runs bin/fit_dynamics (beside this binary) as a child process:
//   fit_dynamics --out DIR/runs/NAME --threads T --data D  CONFIG FLAGS  [QUICK FLAGS]  [FLAGS after --]
// (a later flag wins), its output in DIR/runs/NAME/log.txt. fit_dynamics writes results.json
// last and atomically, so a configuration is finished iff DIR/runs/NAME/results.json exists.
//
// Reuse. A finished run is reused only if its results.json says it ran what this sweep would
// run: the same data (CRC-32 and size) and the same value of every flag that decides the
// numbers (fit_flag_values: the resolved values, defaults included, so a default changed since
// the run shows up too). Otherwise the sweep stops, naming each difference. Ctrl-C or SIGTERM
// stops the running fits (each in its own process group); rerunning the same command redoes
// only what had not finished.
//
// Claims. Before fitting configuration NAME a sweep takes DIR/claims/NAME (flock; engine/io/
// rundir.h's SharedClaim) and holds it until the fit ends. Concurrent sweeps and array tasks on
// one DIR therefore split the grid: a configuration another process holds is waited for and
// then read (or fitted here, if its holder died without a result; the kernel drops a dead
// holder's lock). --jobs N runs N fits at once with cores / N threads each; with --device cuda
// on a machine with several GPUs each fit gets its own (CUDA_VISIBLE_DEVICES), at most
// --fits-per-gpu per GPU.
//
// Without --data the fits use the virtual primate (SIMULATED) of their preset, fit_dynamics'
// own (models/fit/fit_flags.h fit_default_primate), generated here once (under a lock beside
// the file, so that array tasks do not race to write it) before any fit starts.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "engine/backend.h"
#include "engine/io/npy.h"
#include "engine/progress.h"
#include "engine/io/rundir.h"
#include "models/fit/features.h"  // find_default_backbone
#include "models/fit/fit_flags.h"
#include "models/fit/results.h"
#include "models/datasets/npz_stream.h"
#include "models/fit/sweep.h"
#include "models/datasets/virtual_primate.h"
#include "engine/cli.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

const char* kQuickData = "data/virtual_primate_quick.npz";
// --quick: a few BPTT steps on two splits; with the quick data the motifs grid takes minutes.
const std::vector<std::string> kQuickFlags = {"--iters", "4", "--val-every", "4", "--heldout-fit-images", "32", "--splits", "2"};

VirtualPrimateConfig quick_primate() {
    VirtualPrimateConfig c;
    c.images = 128;
    c.t_max_ms = 200;
    c.v4_units = 32;
    c.it_units = 64;
    return c;
}

volatile sig_atomic_t g_signal = 0;
void on_signal(int s) { g_signal = s; }

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1, (int)std::thread::hardware_concurrency());
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& a : v) s += (s.empty() ? "" : " ") + a;
    return s;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& s) { file_write_atomic(path, s.data(), s.size()); }

// The last non-empty line of a log: where fit_dynamics says what went wrong.
std::string last_line(const std::string& path) {
    std::string s = read_text(path);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    size_t nl = s.find_last_of("\n\r");
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

// Starts `exe args` in its own process group (so a Ctrl-C meant for the sweep reaches it only
// through the sweep, which then stops it cleanly), stdout and stderr appended to `log`.
// `env` is added to (or replaces in) the environment.
// `keep_fd` (a claim) stays open in the child: the claim then lasts until the fit is gone,
// even if the sweep itself is killed first.
pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::string& log,
            const std::vector<std::string>& env, int keep_fd) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail("sweep: cannot open '%s': %s", log.c_str(), std::strerror(errno));
    std::vector<char*> av = {const_cast<char*>(exe.c_str())};  // built before fork: the child only execs
    for (const std::string& a : args) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e; e++) {
        std::string kv = *e;
        bool replaced = false;
        for (const std::string& n : env) replaced |= kv.compare(0, n.find('=') + 1, n, 0, n.find('=') + 1) == 0;
        if (!replaced) envs.push_back(kv);
    }
    envs.insert(envs.end(), env.begin(), env.end());
    std::vector<char*> ev;
    for (std::string& e : envs) ev.push_back(const_cast<char*>(e.c_str()));
    ev.push_back(nullptr);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        fail("sweep: fork failed: %s", std::strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);  // dies with the sweep, even a SIGKILLed one
        if (getppid() != parent) _exit(1);
        if (keep_fd >= 0) fcntl(keep_fd, F_SETFD, 0);  // not close-on-exec in the child
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0), dup2(fd, 1), dup2(fd, 2);
        execve(exe.c_str(), av.data(), ev.data());
        dprintf(2, "error: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);  // in the parent too: a kill(-pid) right after fork must find the group
    close(fd);
    return pid;
}

struct Job {
    size_t run;         // index into the report's runs
    pid_t pid;
    double t0;
    int gpu;            // index into Sweep::gpus, or -1
    SharedClaim claim;  // DIR/claims/NAME, held until the fit ends
};

// SIGTERM to every running fit's group; SIGKILL to those still there after 10 s.
void stop_all(const std::vector<Job>& running) {
    for (const Job& j : running) kill(-j.pid, SIGTERM);
    std::vector<pid_t> left;
    for (const Job& j : running) left.push_back(j.pid);
    for (double t0 = now_s(); !left.empty();) {
        if (now_s() - t0 > 10)
            for (pid_t p : left) kill(-p, SIGKILL);
        left.erase(std::remove_if(left.begin(), left.end(), [](pid_t p) { return waitpid(p, nullptr, WNOHANG) != 0; }),
                   left.end());
        if (!left.empty()) usleep(50000);
    }
}

// "V4 0.512 +- 0.010, IT 0.430 +- 0.020"
std::string ev_line(const SweepResult& R) {
    std::string s;
    for (const SweepArea& a : R.areas)
        s += (s.empty() ? "" : ", ") + a.area + " " +
             (std::isfinite(a.ev.mean) ? strfmt("%.3f +- %.3f", a.ev.mean, a.ev.sem) : std::string("n/a"));
    return s;
}

// The sweep's own flags, and after "--" the flags passed to every fit.
struct SweepArgs {
    std::string grid_arg, data, out;
    int jobs = 1, fits_per_gpu = 1, index = -1;
    bool quick = false, list = false, collect = false;
    std::string device = "cpu";      // passed on: the fits look for the GPU, not the sweep (--list, --collect
                                     // and the planning run on a machine without one)
    std::string precision = "fp32";  // passed on as well
    std::vector<std::string> extra;  // after "--"
};

// The command line, checked: the sweep's flags, then after "--" the flags passed to every fit
// (except those the sweep sets itself).
SweepArgs args_parse(int argc, char** argv) {
    SweepArgs a;
    int own = argc;
    for (int i = 1; i < argc; i++)
        if (std::string(argv[i]) == "--") {
            own = i;
            a.extra.assign(argv + i + 1, argv + argc);
            break;
        }
    Cli cli("sweep", "[-- FIT_DYNAMICS FLAGS]",
            "Run a grid of fit_dynamics configurations on the same data, splits and seeds (the paper's architecture\n"
            "comparison, Figs. 3 and 4), reusing finished ones, and write a report: DIR/summary.csv, summary.json,\n"
            "bars_<grid>.png, ev_over_time.png, report.md (paired tests vs ff and between the best two).\n"
            "Built-in grids: motifs (each motif with feedback conv5:conv2), feedback (lstm with each feedback\n"
            "edge, none and all), paper (both); plus ff (feedforward) and time_varied in each. Or a grid file:\n"
            "one `NAME FLAGS...` per line, # comments. Flags after `--` go to every fit (e.g. -- --iters 48).\n"
            "On a cluster: --list, then one --index K per task (e.g. --index $SLURM_ARRAY_TASK_ID; see\n"
            "tools/sweep_slurm.sh), then --collect, all with the same --grid, --data, --out, --quick and `--` flags.\n"
            "Sweeps sharing one DIR split the work (claim files in DIR/claims/). A finished run is reused only if\n"
            "its results.json shows the same data (checksum) and flag values; otherwise the sweep stops, naming them.\n"
            "Without --data: the virtual primate, a SIMULATED dataset (generated once into " + fit_default_primate("cpu").path +
                ", or with `-- --preset gpu` " + fit_default_primate("gpu").path + ": fit_dynamics' own).");
    cli.flag("--grid", &a.grid_arg, "motifs, feedback, paper, or a grid file");
    cli.flag("--data", &a.data, "neural dataset .npz (default: the virtual primate of the fits' --preset, as fit_dynamics)");
    cli.flag("--out", &a.out, "output folder: the report, and runs/NAME/ per configuration");
    cli.flag("--jobs", &a.jobs, "configurations fitted at once (each with cores / jobs threads)").range(1, 1024);
    cli.flag("--quick", &a.quick,
             "reduced size for CI: " + std::string(kQuickData) + " (128 images to 200 ms, 32 V4 + 64 IT sites) and " +
                 join(kQuickFlags) + " for every fit");
    cli.flag("--device", &a.device, "cpu or cuda: where every fit runs (passed to fit_dynamics)").choices({"cpu", "cuda"});
    cli.flag("--precision", &a.precision, std::string(kPrecisionHelp) + " (passed to fit_dynamics)")
        .choices({"fp32", "tf32", "bf16"});
    cli.flag("--fits-per-gpu", &a.fits_per_gpu,
             "with --device cuda: fits sharing one GPU; the GPUs are CUDA_VISIBLE_DEVICES's, else all visible").range(1, 64);
    cli.flag("--list", &a.list, "print one line per configuration (index, name, fit_dynamics command) and exit");
    cli.flag("--index", &a.index, "fit configuration K only (0-based, as --list numbers them; e.g. $SLURM_ARRAY_TASK_ID); "
             "no report (see --collect)").range(-1, 1 << 20);
    cli.flag("--collect", &a.collect, "fit nothing: the report from the finished runs in DIR (exit code 1 if some are missing)");
    cli.parse(own, argv);
    if (!cli.positional.empty()) fail("sweep: unexpected argument '%s' (fit_dynamics flags go after `--`)", cli.positional[0].c_str());
    if (a.grid_arg.empty() || a.out.empty()) fail("sweep: --grid and --out are required (see --help)");
    if (a.jobs < 1) fail("--jobs: need at least 1, got %d", a.jobs);
    if ((int)a.list + (int)a.collect + (int)(a.index >= 0) > 1) fail("sweep: --list, --index and --collect exclude each other");
    if (a.device == "cpu") precision_check(Device::CPU, precision_parse(a.precision));  // (no GPU needed to plan)
    for (const std::string& e : a.extra) {
        std::string name = e.substr(0, e.find('='));
        if (name == "--precision" && a.precision != "fp32")
            fail("sweep: %s is given twice, as the sweep's flag and after `--` (give it once)", name.c_str());
        if (name == "--data" || name == "--out" || name == "--threads" || name == "--resume" || name == "--split" ||
            name == "--device")
            fail("sweep: %s after `--` is the sweep's to set (%s)", name.c_str(),
                 name == "--data"      ? "use the sweep's --data"
                 : name == "--device"  ? "give it before `--`: the sweep spreads the fits over the GPUs"
                 : name == "--out"     ? "DIR/runs/NAME"
                 : name == "--threads" ? "cores / --jobs"
                 : name == "--split"   ? "it fits whole runs: one task per configuration with --index"
                                       : "rerunning the sweep resumes each fit it was stopped in");
    }
    return a;
}

// A sweep under way: its flags and data, the flags of every fit, the report with a run per
// configuration, and the configurations still to fit.
struct Sweep {
    SweepArgs args;
    bool simulated = false;  // the data is the virtual primate
    VirtualPrimateConfig primate;  // without --data: the one generated (fit_default_primate, or --quick's)
    std::string fit;         // the fit_dynamics binary
    int threads = 1;         // per fit
    uint32_t data_crc = 0;   // of the data file (file_crc32)
    uint64_t data_bytes = 0;
    std::vector<std::string> gpus;  // --device cuda: the GPUs fits are spread over
    std::vector<int> gpu_fits;      // fits running on each
    // A fit's flags: `shared`, the configuration's own, then `after` (--quick's, then the
    // user's after `--`); fit_dynamics takes the last of a repeated flag.
    std::vector<std::string> shared, after;
    SweepReport rep;
    std::vector<std::vector<std::string>> flags_of;  // [configuration]
    std::vector<size_t> todo;                        // configurations to fit
    int finished = 0;                                // runs reported so far
    size_t reporting = 0;                            // configurations this invocation reports on
    std::map<std::string, std::string> checkpoint_crc;  // path -> crc32 ("%08x"), for the reuse check
};

std::string run_dir(const Sweep& w, size_t i) { return w.args.out + "/runs/" + w.rep.grid.configs[i].name; }
std::string claim_path(const Sweep& w, size_t i) { return w.args.out + "/claims/" + w.rep.grid.configs[i].name; }

// A word for the shell: as is when it is plain, else in single quotes.
std::string shell_word(const std::string& s) {
    bool plain = !s.empty();
    for (char c : s) plain &= std::isalnum((unsigned char)c) || std::strchr("_./:,=+-@%", c);
    if (plain) return s;
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// fit_dynamics' arguments for configuration i.
std::vector<std::string> fit_args(const Sweep& w, size_t i) {
    std::vector<std::string> args = {"--out", run_dir(w, i), "--threads", std::to_string(w.threads)};
    args.insert(args.end(), w.flags_of[i].begin(), w.flags_of[i].end());
    return args;
}

// The CRC-32 of the checkpoint a fit with these flag values starts from: --init's, else
// --backbone's, else the shipped default (as fit_dynamics resolves it); cached by path.
std::string backbone_crc(Sweep& w, const FlagValues& v) {
    std::string init, backbone;
    for (const auto& kv : v) {
        if (kv.first == "--init") init = kv.second;
        if (kv.first == "--backbone") backbone = kv.second;
    }
    const std::string path = !init.empty() ? init : !backbone.empty() ? backbone : find_default_backbone("sweep");
    auto it = w.checkpoint_crc.find(path);
    if (it == w.checkpoint_crc.end())
        it = w.checkpoint_crc.emplace(path, strfmt("%08x", file_crc32(path, nullptr))).first;
    return it->second;
}

// Why DIR/runs/NAME's finished run is not what configuration i would run ("" if it is): its
// data (checksum and size) and every flag value that decides the numbers.
std::string reuse_mismatch(Sweep& w, size_t i, const SweepResult& R) {
    if (R.flags.empty())
        return "its results.json does not record its flag values and data checksum (written by an older fit_dynamics)";
    std::vector<std::string> diffs;
    const std::string crc = strfmt("%08x", w.data_crc);
    if (R.data_crc32 != crc || R.data_bytes != (int64_t)w.data_bytes)
        diffs.push_back(strfmt("data: it fitted %s (crc32 %s, %lld bytes), this sweep fits %s (crc32 %s, %llu bytes)",
                               R.data.c_str(), R.data_crc32.c_str(), (long long)R.data_bytes, w.args.data.c_str(),
                               crc.c_str(), (unsigned long long)w.data_bytes));
    const FlagValues want = fit_flag_values(w.flags_of[i]);
    const std::string bb = backbone_crc(w, want);
    if (R.backbone_crc32 != bb)
        diffs.push_back(strfmt("the backbone checkpoint: crc32 %s in the run, %s here (retrained or replaced since?)",
                               R.backbone_crc32.empty() ? "not recorded" : R.backbone_crc32.c_str(), bb.c_str()));
    for (const std::string& d : flag_value_diffs(R.flags, want)) diffs.push_back(d);
    std::string s;
    for (const std::string& d : diffs) s += (s.empty() ? "" : "; ") + d;
    return s;
}

// Why the fit DIR/runs/NAME/.unfinished holds (stopped before its end) is not what configuration
// i would run ("" if it is): fit_dynamics --resume's own check, made here so that the sweep can
// start such a fit over instead of failing it.
std::string resume_mismatch(Sweep& w, size_t i) {
    FitRun now;
    now.data = w.args.data, now.data_crc32 = w.data_crc, now.data_bytes = w.data_bytes;
    now.flags = fit_flag_values(w.flags_of[i]);
    now.backbone_crc32 = (uint32_t)std::strtoul(backbone_crc(w, now.flags).c_str(), nullptr, 16);
    try {
        return fit_run_mismatch(fit_run_read(run_dir(w, i) + "/.unfinished/run.json"), now);
    } catch (const Error& e) {
        return e.what();
    }
}

// Reads DIR/runs/NAME/results.json into run i if it is there: true when it is. A run made with
// other data or flags fails the sweep, naming the differences.
bool result_take(Sweep& w, size_t i) {
    const std::string dir = run_dir(w, i), res = dir + "/results.json";
    if (!fs::exists(res)) return false;
    SweepRun& run = w.rep.runs[i];
    SweepResult R = sweep_result_load(res);
    std::string why = reuse_mismatch(w, i, R);
    if (!why.empty())
        fail("sweep: %s holds a finished run that is not what this sweep would run (%s): use another --out, or delete "
             "that folder to rerun it", dir.c_str(), why.c_str());
    run.result = R;
    run.status = SweepStatus::Done;
    run.reused = true;
    return true;
}

// Each configuration's flags and run: reused when DIR/runs/NAME/results.json exists and ran
// the same, else to fit. With --index only configuration K is planned.
void runs_plan(Sweep& w) {
    const SweepGrid& grid = w.rep.grid;
    const size_t G = grid.configs.size();
    w.flags_of.assign(G, {});
    w.rep.runs.assign(G, SweepRun{});
    for (size_t i = 0; i < G; i++) {
        std::vector<std::string>& f = w.flags_of[i];
        f = w.shared;
        f.insert(f.end(), grid.configs[i].flags.begin(), grid.configs[i].flags.end());
        f.insert(f.end(), w.after.begin(), w.after.end());
        w.rep.runs[i].config = grid.configs[i];
        w.rep.runs[i].log = run_dir(w, i) + "/log.txt";
    }
    if (w.args.list) return;
    for (size_t i = 0; i < G; i++) {
        if (w.args.index >= 0 && (int)i != w.args.index) continue;
        if (!result_take(w, i) && !w.args.collect) w.todo.push_back(i);
    }
    w.reporting = w.args.index >= 0 ? 1 : G;
}

// The data every fit reads, there before any fit starts: without --data the virtual primate,
// generated once (under DATA.lock: concurrent sweeps and array tasks wait for the first);
// then its checksum.
void data_prepare(Sweep& w) {
    const std::string& data = w.args.data;
    if (w.simulated && !fs::exists(data) && !w.args.collect) {
        for (bool said = false;;) {
            std::string holder;
            SharedClaim gen = claim_try(data + ".lock", claim_note_self(), &holder);
            if (gen.held()) {
                if (!fs::exists(data)) {
                    std::fprintf(stderr, "sweep: no --data: generating the %svirtual primate (SIMULATED responses of a "
                                         "known teacher network, not recordings) into %s, once, before the fits ...\n",
                                 w.args.quick ? "quick " : "", data.c_str());
                    Npz z = virtual_primate_generate(w.primate, true);
                    npz_write(data, z);
                }
                break;
            }
            if (!said) std::fprintf(stderr, "sweep: waiting for %s to generate %s ...\n", holder.c_str(), data.c_str());
            said = true;
            if (g_signal) fail("sweep: interrupted (%s) while waiting for %s", strsignal(g_signal), data.c_str());
            sleep(1);
        }
    }
    if (!fs::exists(data))
        fail("--data: '%s' does not exist%s", data.c_str(), w.args.collect ? " (--collect checks each run's data against it)" : "");
    w.data_crc = file_crc32(data, &w.data_bytes);
}

// --device cuda: the GPUs (CUDA_VISIBLE_DEVICES's entries, else every visible one) and the
// fits at a time they allow.
void gpus_plan(Sweep& w) {
    if (w.args.device != "cuda") return;
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
        w.gpus = split_list(v);
        if (w.gpus.empty()) fail("--device cuda: CUDA_VISIBLE_DEVICES is set but empty: no GPU to run the fits on");
    } else {
        for (int g = 0; g < cuda_devices(); g++) w.gpus.push_back(std::to_string(g));
    }
    w.gpu_fits.assign(w.gpus.size(), 0);
    const int most = (int)w.gpus.size() * w.args.fits_per_gpu;
    if (!w.gpus.empty() && w.args.jobs > most) {
        std::fprintf(stderr, "sweep: --jobs %d: %zu GPU%s x --fits-per-gpu %d allow %d fits at a time; running %d\n",
                     w.args.jobs, w.gpus.size(), w.gpus.size() == 1 ? "" : "s", w.args.fits_per_gpu, most, most);
        w.args.jobs = most;
    }
}

// --list: index, name and the fit_dynamics command of each configuration, tab-separated.
void list_print(const Sweep& w) {
    for (size_t i = 0; i < w.rep.grid.configs.size(); i++) {
        std::string cmd = shell_word(w.fit);
        for (const std::string& a : fit_args(w, i)) cmd += " " + shell_word(a);
        std::printf("%zu\t%s\t%s\n", i, w.rep.grid.configs[i].name.c_str(), cmd.c_str());
    }
}

// The plan and the reused runs, announced.
void sweep_announce(Sweep& w) {
    const SweepGrid& grid = w.rep.grid;
    const size_t G = grid.configs.size();
    size_t earlier = 0;
    for (const SweepRun& run : w.rep.runs) earlier += run.reused;
    if (w.args.index >= 0)
        std::fprintf(stderr, "sweep: grid %s (%s): configuration %d of 0-%zu (%s), %s; data %s%s\n", grid.name.c_str(),
                     grid.source.c_str(), w.args.index, G - 1, grid.configs[w.args.index].name.c_str(),
                     w.todo.empty() ? "finished earlier" : strfmt("to fit with %d threads", w.threads).c_str(),
                     w.args.data.c_str(), w.simulated ? " (virtual primate: SIMULATED)" : "");
    else if (w.args.collect)
        std::fprintf(stderr, "sweep: grid %s (%s): %zu configurations, %zu finished, %zu not (--collect fits nothing); "
                             "data %s%s\n", grid.name.c_str(), grid.source.c_str(), G, earlier, G - earlier,
                     w.args.data.c_str(), w.simulated ? " (virtual primate: SIMULATED)" : "");
    else
        std::fprintf(stderr, "sweep: grid %s (%s): %zu configurations, %zu finished earlier, %zu to fit, %d at a time with "
                             "%d threads each; data %s%s\n", grid.name.c_str(), grid.source.c_str(), G, earlier,
                     w.todo.size(), w.args.jobs, w.threads, w.args.data.c_str(), w.simulated ? " (virtual primate: SIMULATED)" : "");
    for (const SweepRun& run : w.rep.runs)
        if (run.reused)
            std::fprintf(stderr, "sweep: [%d/%zu] %s: %s; %s, reused\n", ++w.finished, w.reporting, run.config.name.c_str(),
                         ev_line(run.result).c_str(), format_duration(run.result.seconds).c_str());
}

// Starts the fit of configuration i (its claim held) in an emptied DIR/runs/NAME, its output in
// log.txt, on the least busy GPU when there are GPUs. A fit an earlier sweep left unfinished
// (stopped or killed: DIR/runs/NAME/.unfinished) is resumed, its finished splits kept
// (fit_dynamics --resume), if it was started with what this sweep would run; else started over.
Job job_start(Sweep& w, size_t i, SharedClaim claim) {
    SweepRun& run = w.rep.runs[i];
    const std::string dir = run_dir(w, i);
    bool resume = fs::exists(dir + "/.unfinished/run.json");
    if (resume) {
        const std::string why = resume_mismatch(w, i);
        if (!why.empty())
            std::fprintf(stderr, "sweep: %s: the fit left unfinished there was started otherwise (%s): starting it over\n",
                         dir.c_str(), why.c_str());
        resume = why.empty();
    }
    if (resume) {
        for (const auto& e : fs::directory_iterator(dir))
            if (e.path().filename() != ".unfinished") fs::remove_all(e.path());
    } else {
        fs::remove_all(dir);
    }
    fs::create_directories(dir);
    std::vector<std::string> env;
    int gpu = -1;
    if (!w.gpus.empty()) {
        gpu = (int)(std::min_element(w.gpu_fits.begin(), w.gpu_fits.end()) - w.gpu_fits.begin());
        w.gpu_fits[gpu]++;
        env.push_back("CUDA_VISIBLE_DEVICES=" + w.gpus[gpu]);
    }
    std::vector<std::string> args = fit_args(w, i);
    if (resume) args.push_back("--resume");
    write_text(run.log, "sweep: " + (env.empty() ? std::string() : env[0] + " ") + w.fit + " " + join(args) + "\n");
    const int claim_fd = claim.fd;
    return {i, spawn(w.fit, args, run.log, env, claim_fd), now_s(), gpu, std::move(claim)};
}

// A fit that exited with status st after `wall` seconds: done with its results.json, or failed.
void job_done(Sweep& w, Job& j, int st, double wall) {
    SweepRun& run = w.rep.runs[j.run];
    if (j.gpu >= 0) w.gpu_fits[j.gpu]--;
    const std::string res = run_dir(w, j.run) + "/results.json";
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && fs::exists(res)) {
        run.result = sweep_result_load(res);
        run.status = SweepStatus::Done;
        std::fprintf(stderr, "sweep: [%d/%zu] %s: %s; %s, ran\n", ++w.finished, w.reporting, run.config.name.c_str(),
                     ev_line(run.result).c_str(), format_duration(wall).c_str());
    } else {
        run.status = SweepStatus::Failed;
        run.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        std::fprintf(stderr, "sweep: [%d/%zu] %s: FAILED (exit code %d) after %s; log %s: %s\n", ++w.finished, w.reporting,
                     run.config.name.c_str(), run.exit_code, format_duration(wall).c_str(), run.log.c_str(),
                     last_line(run.log).c_str());
    }
    j.claim.release();  // after results.json is in place: a waiting sweep reads it
}

// Claims configuration i and starts its fit; false if another process holds it (said once per
// configuration). A run another sweep finished meanwhile is read instead of fitted.
bool job_try(Sweep& w, size_t i, std::vector<Job>& running, std::vector<bool>& said) {
    std::string holder;
    SharedClaim claim = claim_try(claim_path(w, i), claim_note_self() + " (sweep)", &holder);
    SweepRun& run = w.rep.runs[i];
    if (!claim.held()) {
        if (!said[i])
            std::fprintf(stderr, "sweep: %s is being fitted by %s (claim %s): waiting for it\n", run.config.name.c_str(),
                         holder.c_str(), claim_path(w, i).c_str());
        said[i] = true;
        return false;
    }
    if (result_take(w, i)) {  // finished by another sweep since the plan
        std::fprintf(stderr, "sweep: [%d/%zu] %s: %s; %s, fitted by another sweep\n", ++w.finished, w.reporting,
                     run.config.name.c_str(), ev_line(run.result).c_str(), format_duration(run.result.seconds).c_str());
        return true;
    }
    if (said[i])
        std::fprintf(stderr, "sweep: %s: its claim was let go without a result (the other sweep failed or was killed): "
                             "fitting it here\n", run.config.name.c_str());
    running.push_back(job_start(w, i, std::move(claim)));
    return true;
}

int runs_loop(Sweep& w, std::vector<Job>& running);

// Runs what is left, `jobs` at a time; a signal stops them all. Returns 0, or 128 + the signal.
// A failure of the sweep itself (a finished run another sweep left that does not match) stops
// the running fits before their claims are let go.
int runs_execute(Sweep& w) {
    std::vector<Job> running;
    try {
        return runs_loop(w, running);
    } catch (...) {
        stop_all(running);
        throw;
    }
}

int runs_loop(Sweep& w, std::vector<Job>& running) {
    std::vector<size_t> queue = w.todo, waiting;
    std::vector<bool> said(w.rep.runs.size(), false);
    double last_retry = 0;
    while (!queue.empty() || !running.empty() || !waiting.empty()) {
        if (g_signal) {
            std::string names;
            for (const Job& j : running) names += (names.empty() ? "" : ", ") + w.rep.runs[j.run].config.name;
            stop_all(running);
            std::fprintf(stderr, "sweep: interrupted (%s): stopped %s; rerun the same command to resume (finished "
                                 "configurations are reused)\n", strsignal(g_signal), names.empty() ? "nothing" : names.c_str());
            return 128 + (int)g_signal;
        }
        while (running.size() < (size_t)w.args.jobs && !queue.empty()) {
            size_t i = queue.front();
            queue.erase(queue.begin());
            if (!job_try(w, i, running, said)) waiting.push_back(i);
        }
        // configurations others hold: tried again every second once this sweep has room
        if (queue.empty() && !waiting.empty() && running.size() < (size_t)w.args.jobs && now_s() - last_retry > 1) {
            queue.swap(waiting);
            last_retry = now_s();
            continue;
        }
        int st = 0;
        pid_t p = running.empty() ? 0 : waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno != EINTR) fail("sweep: waitpid: %s", std::strerror(errno));
        if (p <= 0) {
            usleep(100000);  // interrupted by a signal: the loop's top handles it
            continue;
        }
        auto it = std::find_if(running.begin(), running.end(), [&](const Job& j) { return j.pid == p; });
        if (it == running.end()) continue;
        Job j = std::move(*it);
        const double wall = now_s() - j.t0;
        running.erase(it);
        job_done(w, j, st, wall);
    }
    return 0;
}

// The report (DIR/report.md, summary.csv, summary.json, plots) and the table on stdout; returns
// 1 when a configuration failed (or, with --collect, is missing), else 0.
int report_write(Sweep& w, double t_start) {
    const SweepArgs& a = w.args;
    const SweepGrid& grid = w.rep.grid;
    const size_t G = grid.configs.size();
    int splits = 0;
    for (const SweepRun& run : w.rep.runs)
        if (run.status == SweepStatus::Done) splits = std::max(splits, run.result.splits);
    w.rep.settings = {
        {"grid", strfmt("%s (%s, %zu configurations)", grid.name.c_str(), grid.source.c_str(), G)},
        {"data", a.data + (w.simulated ? " (virtual primate: SIMULATED responses of a known teacher network, not recordings)" : "")},
        {"data crc32", strfmt("%08x (%llu bytes): every reused run was checked against it", w.data_crc, (unsigned long long)w.data_bytes)},
        {"size", a.quick ? "--quick: reduced data and every fit with " + join(kQuickFlags) : std::string("full")},
        {"flags of every fit", join(w.shared) + ", the configuration's own, then " + (w.after.empty() ? std::string("nothing more") : join(w.after))},
        {"splits", strfmt("%d, the same images and folds for every configuration", splits)},
        {"fit_dynamics", w.fit},
    };
    w.rep.invocation = {
        {"this invocation", a.collect ? std::string("--collect (fitted nothing)")
                                      : strfmt("--jobs %d (fits at a time), --threads %d each (%d cores); fitting time %s",
                                               a.jobs, w.threads, cores(), format_duration(now_s() - t_start).c_str())},
    };
    sweep_write_report(a.out, w.rep);
    std::printf("\n%s: EV on held-out images (mean over bins; mean +- SEM over splits)\n%s", grid.name.c_str(),
                sweep_table(w.rep).c_str());
    std::fprintf(stderr, "sweep: wrote %s/report.md, with summary.csv, summary.json and the plots beside it\n", a.out.c_str());
    std::string failed, missing;
    int nfail = 0, nmissing = 0;
    for (size_t i = 0; i < G; i++) {
        const SweepRun& run = w.rep.runs[i];
        if (run.status == SweepStatus::Failed) failed += (nfail++ ? ", " : "") + run.config.name + " (" + run.log + ")";
        if (run.status == SweepStatus::NotRun) missing += (nmissing++ ? ", " : "") + strfmt("%zu %s", i, run.config.name.c_str());
    }
    if (nmissing)
        std::fprintf(stderr, "sweep: --collect: %d of %zu configurations have no finished run yet: %s (fit them with "
                             "--index K, or run the sweep without --collect)\n", nmissing, G, missing.c_str());
    if (nfail) std::fprintf(stderr, "sweep: %d of %zu configurations failed: %s\n", nfail, G, failed.c_str());
    return nfail || nmissing ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        Sweep w;
        w.args = args_parse(argc, argv);
        SweepArgs& a = w.args;
        w.rep.grid = sweep_grid_load(a.grid_arg);
        const size_t G = w.rep.grid.configs.size();
        if (a.index >= (int)G)
            fail("--index: expected 0 to %zu (grid %s has %zu configurations; see --list), got %d", G - 1,
                 w.rep.grid.name.c_str(), G, a.index);
        w.fit = (fs::read_symlink("/proc/self/exe").parent_path() / "fit_dynamics").string();
        if (!fs::exists(w.fit)) fail("sweep: %s not found (the sweep runs the fit_dynamics beside it: make bin/fit_dynamics)", w.fit.c_str());

        // The data every fit reads.
        w.simulated = a.data.empty();
        if (w.simulated) {  // fit_dynamics' own default for the fits' preset (after "--"), or the quick one
            const DefaultPrimate vp = fit_default_primate(fit_preset_of(a.extra));
            a.data = a.quick ? kQuickData : vp.path;
            w.primate = a.quick ? quick_primate() : vp.config;
        }
        else if (!fs::exists(a.data)) fail("--data: '%s' does not exist", a.data.c_str());
        else w.simulated = npz_index(a.data).has("teacher_config");

        gpus_plan(w);
        w.threads = std::max(1, cores() / a.jobs);
        w.shared = {"--data", a.data};
        if (a.device != "cpu") w.shared.insert(w.shared.end(), {"--device", a.device});
        if (a.precision != "fp32") w.shared.insert(w.shared.end(), {"--precision", a.precision});
        w.after = a.quick ? kQuickFlags : std::vector<std::string>{};
        w.after.insert(w.after.end(), a.extra.begin(), a.extra.end());

        if (a.list) {
            runs_plan(w);
            list_print(w);
            return 0;
        }
        fs::create_directories(a.out + "/runs");
        data_prepare(w);  // a Ctrl-C here just stops the sweep: no fit runs yet
        struct sigaction sa = {};
        sa.sa_handler = on_signal;  // no SA_RESTART: waits wake up
        for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
        runs_plan(w);
        sweep_announce(w);
        const double t_start = now_s();
        const int stopped = a.collect ? 0 : runs_execute(w);
        if (stopped) return stopped;
        if (a.index >= 0) {  // one configuration of many: the report is --collect's
            const SweepRun& run = w.rep.runs[a.index];
            if (run.status != SweepStatus::Done) return 1;
            std::fprintf(stderr, "sweep: configuration %d (%s) finished: %s/runs/%s; the report: the same command with "
                                 "--collect instead of --index\n", a.index, run.config.name.c_str(), a.out.c_str(),
                         run.config.name.c_str());
            return 0;
        }
        return report_write(w, t_start);
    });
}
