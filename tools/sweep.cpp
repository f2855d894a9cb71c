// sweep.cpp: ./bin/sweep, the paper's architecture comparison (Figs. 3 and 4) as one resumable
// command with a report (issue 6; grids, tests and the report in models/fit/sweep.h).
//
//   ./bin/sweep --grid GRID [--data D.npz] --out DIR [--jobs N] [--quick] [-- FIT_DYNAMICS FLAGS]
//
// Every configuration of the grid runs bin/fit_dynamics (beside this binary) as a child process:
//   fit_dynamics --out DIR/runs/NAME --threads T --data D  CONFIG FLAGS  [QUICK FLAGS]  [FLAGS after --]
// (a later flag wins), its output in DIR/runs/NAME/log.txt. fit_dynamics writes results.json
// last and atomically, so a configuration is finished iff DIR/runs/NAME/results.json exists:
// finished ones are reused, the others rerun from an emptied folder. That makes the sweep
// resumable: Ctrl-C or SIGTERM stops the running fits (each in its own process group) and
// rerunning the same command redoes only what had not finished. DIR/runs/NAME/flags.txt records
// the flags a configuration ran with; reusing it under other flags is refused, since its
// numbers would not compare. --jobs N runs N fits at once with cores / N threads each.
//
// Without --data the fits use the virtual primate (SIMULATED), generated here once before any
// fit starts so that parallel fits do not race to write it. DIR is locked for the sweep's life
// (engine/io/rundir.h): a second sweep into the same DIR is refused while the first runs.
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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/backend.h"
#include "engine/io/npy.h"
#include "engine/progress.h"
#include "engine/io/rundir.h"
#include "models/datasets/npz_stream.h"
#include "models/fit/sweep.h"
#include "models/datasets/virtual_primate.h"
#include "engine/cli.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

const char* kDefaultData = "data/virtual_primate.npz";  // fit_dynamics' default
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
pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::string& log) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail("sweep: cannot open '%s': %s", log.c_str(), std::strerror(errno));
    std::vector<char*> av = {const_cast<char*>(exe.c_str())};  // built before fork: the child only execs
    for (const std::string& a : args) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
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
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0), dup2(fd, 1), dup2(fd, 2);
        execv(exe.c_str(), av.data());
        dprintf(2, "error: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);  // in the parent too: a kill(-pid) right after fork must find the group
    close(fd);
    return pid;
}

struct Job {
    size_t run;  // index into the report's runs
    pid_t pid;
    double t0;
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
    int jobs = 1;
    bool quick = false;
    Device device = Device::CPU;
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
            "Without --data: the virtual primate, a SIMULATED dataset (generated once into " + std::string(kDefaultData) + ").");
    cli.flag("--grid", &a.grid_arg, "motifs, feedback, paper, or a grid file");
    cli.flag("--data", &a.data, "neural dataset .npz (default: the virtual primate, " + std::string(kDefaultData) + ")");
    cli.flag("--out", &a.out, "output folder: the report, and runs/NAME/ per configuration");
    cli.flag("--jobs", &a.jobs, "configurations fitted at once (each with cores / jobs threads)").range(1, 1024);
    cli.flag("--quick", &a.quick,
             "reduced size for CI: " + std::string(kQuickData) + " (128 images to 200 ms, 32 V4 + 64 IT sites) and " +
                 join(kQuickFlags) + " for every fit");
    cli.flag("--device", &a.device, "cpu or cuda: where every fit runs (passed to fit_dynamics)");
    cli.parse(own, argv);
    if (!cli.positional.empty()) fail("sweep: unexpected argument '%s' (fit_dynamics flags go after `--`)", cli.positional[0].c_str());
    if (a.grid_arg.empty() || a.out.empty()) fail("sweep: --grid and --out are required (see --help)");
    if (a.jobs < 1) fail("--jobs: need at least 1, got %d", a.jobs);
    for (const std::string& e : a.extra) {
        std::string name = e.substr(0, e.find('='));
        if (name == "--data" || name == "--out" || name == "--threads")
            fail("sweep: %s after `--` is the sweep's to set (%s)", name.c_str(),
                 name == "--data" ? "use the sweep's --data" : name == "--out" ? "DIR/runs/NAME" : "cores / --jobs");
    }
    return a;
}

// A sweep under way: its flags and data, the flags of every fit, the report with a run per
// configuration, and the configurations still to fit.
struct Sweep {
    SweepArgs args;
    bool simulated = false;  // the data is the virtual primate
    std::string fit;         // the fit_dynamics binary
    int threads = 1;         // per fit
    // A fit's flags: `shared`, the configuration's own, then `after` (--quick's, then the
    // user's after `--`); fit_dynamics takes the last of a repeated flag.
    std::vector<std::string> shared, after;
    SweepReport rep;
    std::vector<std::vector<std::string>> flags_of;  // [configuration]
    std::vector<size_t> todo;                        // configurations to fit
    int finished = 0;                                // runs reported so far
};

// Each configuration's flags and run: reused when DIR/runs/NAME/results.json exists (only if it
// ran with the same flags: other flags give numbers that do not compare), else to fit.
void runs_plan(Sweep& w) {
    const SweepGrid& grid = w.rep.grid;
    w.flags_of.assign(grid.configs.size(), {});
    for (size_t i = 0; i < grid.configs.size(); i++) {
        const SweepConfig& c = grid.configs[i];
        SweepRun run;
        run.config = c;
        const std::string dir = w.args.out + "/runs/" + c.name;
        run.log = dir + "/log.txt";
        std::vector<std::string>& f = w.flags_of[i];
        f = w.shared;
        f.insert(f.end(), c.flags.begin(), c.flags.end());
        f.insert(f.end(), w.after.begin(), w.after.end());
        if (fs::exists(dir + "/results.json")) {
            std::string then = read_text(dir + "/flags.txt"), now = join(f) + "\n";
            if (!then.empty() && then != now)
                fail("sweep: %s finished with other flags (then: %s; now: %s): use another --out, or delete that folder "
                     "to rerun it", dir.c_str(), then.substr(0, then.size() - 1).c_str(), join(f).c_str());
            run.result = sweep_result_load(dir + "/results.json");
            run.status = SweepStatus::Done;
            run.reused = true;
        } else {
            w.todo.push_back(i);
        }
        w.rep.runs.push_back(run);
    }
}

// Without --data, the virtual primate is generated once, before the fits, if a fit needs it;
// then the plan and the reused runs are announced.
void sweep_announce(Sweep& w) {
    const std::string& data = w.args.data;
    const bool quick = w.args.quick;
    if (w.simulated && !w.todo.empty() && !fs::exists(data)) {
        std::fprintf(stderr, "sweep: no --data: generating the %svirtual primate (SIMULATED responses of a known teacher "
                             "network, not recordings) into %s, once, before the fits ...\n", quick ? "quick " : "", data.c_str());
        Npz z = virtual_primate_generate(quick ? quick_primate() : VirtualPrimateConfig{}, true);
        fs::create_directories(fs::path(data).parent_path());
        npz_write(data, z);
    }
    const SweepGrid& grid = w.rep.grid;
    const size_t G = grid.configs.size();
    std::fprintf(stderr, "sweep: grid %s (%s): %zu configurations, %zu finished earlier, %zu to fit, %d at a time with "
                         "%d threads each; data %s%s\n",
                 grid.name.c_str(), grid.source.c_str(), G, G - w.todo.size(), w.todo.size(), w.args.jobs, w.threads,
                 data.c_str(), w.simulated ? " (virtual primate: SIMULATED)" : "");
    for (const SweepRun& run : w.rep.runs)
        if (run.reused)
            std::fprintf(stderr, "sweep: [%d/%zu] %s: %s; %s, reused\n", ++w.finished, G, run.config.name.c_str(),
                         ev_line(run.result).c_str(), format_duration(run.result.seconds).c_str());
}

// Starts the fit of configuration i in an emptied DIR/runs/NAME, its flags in flags.txt and
// its output in log.txt.
Job job_start(Sweep& w, size_t i) {
    SweepRun& run = w.rep.runs[i];
    const std::string dir = w.args.out + "/runs/" + run.config.name;
    fs::remove_all(dir);  // an unfinished run starts from scratch
    fs::create_directories(dir);
    write_text(dir + "/flags.txt", join(w.flags_of[i]) + "\n");
    std::vector<std::string> args = {"--out", dir, "--threads", std::to_string(w.threads)};
    args.insert(args.end(), w.flags_of[i].begin(), w.flags_of[i].end());
    write_text(run.log, "sweep: " + w.fit + " " + join(args) + "\n");
    return {i, spawn(w.fit, args, run.log), now_s()};
}

// A fit that exited with status st after `wall` seconds: done with its results.json, or failed.
void job_done(Sweep& w, const Job& j, int st, double wall) {
    SweepRun& run = w.rep.runs[j.run];
    const size_t G = w.rep.grid.configs.size();
    const std::string res = w.args.out + "/runs/" + run.config.name + "/results.json";
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && fs::exists(res)) {
        run.result = sweep_result_load(res);
        run.status = SweepStatus::Done;
        std::fprintf(stderr, "sweep: [%d/%zu] %s: %s; %s, ran\n", ++w.finished, G, run.config.name.c_str(),
                     ev_line(run.result).c_str(), format_duration(wall).c_str());
    } else {
        run.status = SweepStatus::Failed;
        run.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        std::fprintf(stderr, "sweep: [%d/%zu] %s: FAILED (exit code %d) after %s; log %s: %s\n", ++w.finished, G,
                     run.config.name.c_str(), run.exit_code, format_duration(wall).c_str(), run.log.c_str(),
                     last_line(run.log).c_str());
    }
}

// Runs what is left, `jobs` at a time; a signal stops them all. Returns 0, or 128 + the signal.
int runs_execute(Sweep& w) {
    struct sigaction sa = {};
    sa.sa_handler = on_signal;  // no SA_RESTART: the wait below wakes up
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
    std::vector<Job> running;
    size_t next = 0;
    while (next < w.todo.size() || !running.empty()) {
        if (g_signal) {
            std::string names;
            for (const Job& j : running) names += (names.empty() ? "" : ", ") + w.rep.runs[j.run].config.name;
            stop_all(running);
            std::fprintf(stderr, "sweep: interrupted (%s): stopped %s; rerun the same command to resume (finished "
                                 "configurations are reused)\n", strsignal(g_signal), names.empty() ? "nothing" : names.c_str());
            return 128 + (int)g_signal;
        }
        while (running.size() < (size_t)w.args.jobs && next < w.todo.size()) running.push_back(job_start(w, w.todo[next++]));
        int st = 0;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno != EINTR) fail("sweep: waitpid: %s", std::strerror(errno));
        if (p <= 0) {
            usleep(100000);  // interrupted by a signal: the loop's top handles it
            continue;
        }
        auto it = std::find_if(running.begin(), running.end(), [&](const Job& j) { return j.pid == p; });
        if (it == running.end()) continue;
        const Job j = *it;
        const double wall = now_s() - j.t0;
        running.erase(it);
        job_done(w, j, st, wall);
    }
    return 0;
}

// The report (DIR/report.md, summary.csv, summary.json, plots) and the table on stdout; returns
// 1 when a configuration failed, else 0.
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
        {"size", a.quick ? "--quick: reduced data and every fit with " + join(kQuickFlags) : std::string("full")},
        {"flags of every fit", join(w.shared) + ", the configuration's own, then " + (w.after.empty() ? std::string("nothing more") : join(w.after))},
        {"splits", strfmt("%d, the same images and folds for every configuration", splits)},
        {"parallel", strfmt("--jobs %d (fits at a time), --threads %d each (%d cores)", a.jobs, w.threads, cores())},
        {"fit_dynamics", w.fit},
        {"this sweep's fitting time", format_duration(now_s() - t_start)},
    };
    sweep_write_report(a.out, w.rep);
    std::printf("\n%s: EV on held-out images (mean over bins; mean +- SEM over splits)\n%s", grid.name.c_str(),
                sweep_table(w.rep).c_str());
    std::fprintf(stderr, "sweep: wrote %s/report.md, with summary.csv, summary.json and the plots beside it\n", a.out.c_str());
    std::string failed;
    int nfail = 0;
    for (const SweepRun& run : w.rep.runs)
        if (run.status == SweepStatus::Failed) failed += (nfail++ ? ", " : "") + run.config.name + " (" + run.log + ")";
    if (nfail) {
        std::fprintf(stderr, "sweep: %d of %zu configurations failed: %s\n", nfail, G, failed.c_str());
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        Sweep w;
        w.args = args_parse(argc, argv);
        SweepArgs& a = w.args;
        w.rep.grid = sweep_grid_load(a.grid_arg);
        w.fit = (fs::read_symlink("/proc/self/exe").parent_path() / "fit_dynamics").string();
        if (!fs::exists(w.fit)) fail("sweep: %s not found (the sweep runs the fit_dynamics beside it: make bin/fit_dynamics)", w.fit.c_str());

        // The data every fit reads.
        w.simulated = a.data.empty();
        if (w.simulated) a.data = a.quick ? kQuickData : kDefaultData;
        else if (!fs::exists(a.data)) fail("--data: '%s' does not exist", a.data.c_str());
        else w.simulated = npz_index(a.data).has("teacher_config");

        // One sweep at a time in DIR (a second one would remove the first's unfinished runs):
        // the lock is held until exit; a rerun of the same command resumes (finished runs reused).
        RunDirOptions claim_opt;
        claim_opt.tool = "sweep";
        claim_opt.lock_only = true;
        RunDir claim = rundir_claim(a.out, claim_opt);

        w.threads = std::max(1, cores() / a.jobs);
        w.shared = {"--data", a.data};
        if (a.device != Device::CPU) w.shared.insert(w.shared.end(), {"--device", device_name(a.device)});
        w.after = a.quick ? kQuickFlags : std::vector<std::string>{};
        w.after.insert(w.after.end(), a.extra.begin(), a.extra.end());

        runs_plan(w);
        sweep_announce(w);
        const double t_start = now_s();
        const int stopped = runs_execute(w);
        if (stopped) return stopped;
        return report_write(w, t_start);
    });
}
