// test_mpi.cpp: data-parallel pretraining (engine/dist.h, issue 16). The loader's shards make
// up the unsharded batch exactly (every build). In a `make MPI=1` build (make check builds one
// in build-mpi/ and runs these), `mpirun -np 2 pretrain` against one process with the same
// global batch, a killed rank, and --resume after it. In a build without MPI, a pretrain
// started by mpirun with two ranks refuses to run alone.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/dist.h"
#include "engine/io/npy.h"
#include "models/datasets/image_folder.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::slurp;
using vt_test::has;
namespace fs = std::filesystem;

namespace {

// The pretrain beside this test binary (bin/ or build-mpi/bin/).
std::string pretrain_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "pretrain").string(); }

bool have_mpirun() { return vt_test::shell_run("command -v mpirun >/dev/null 2>&1").rc == 0; }

// mpirun with two ranks on this machine, whatever its core count, as root too (CI).
std::string mpirun2() { return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "; }

// Flags of a small, deterministic pretraining run on tiny3 (8 x 8 inputs).
std::string train_flags(const std::string& data, const std::string& out, int epochs) {
    return data + " --arch tiny3 --batch 8 --lr 0.05 --warmup 0 --threads 1 --loader-threads 1 --epochs " +
           std::to_string(epochs) + " --out " + out;
}

// The model parameters of a checkpoint (no meta.*, no optimiser state), by name.
std::map<std::string, std::vector<float>> params_of(const std::string& path) {
    Npz z = npz_read(path);
    std::map<std::string, std::vector<float>> p;
    for (const std::string& n : z.names)
        if (n.rfind("meta.", 0) != 0 && n.rfind("optim.", 0) != 0) p[n] = z.get(n).to_f32();
    return p;
}

double epochs_done(const std::string& path) { return meta_floats(npz_read(path), "meta.epochs_done")[0]; }

}  // namespace

TEST_CASE("loader: the shards of a data-parallel run make up the unsharded batch, image for image") {
    const std::string dir = vt_test::temp_dir();
    vt_test::image_folder(dir + "/imgs", 6);  // 12 training images
    ImageFolder f = image_folder_scan(dir + "/imgs", "train");
    LoaderConfig lc;
    lc.size = 8, lc.batch = 4, lc.threads = 2, lc.seed = 3, lc.crop_scale_min = 0.5f;
    const int64_t row = 3 * 8 * 8;
    BatchLoader whole(f, lc);
    std::vector<std::unique_ptr<BatchLoader>> shards;
    for (int s = 0; s < 2; s++) {
        LoaderConfig c = lc;
        c.shards = 2, c.shard = s;
        shards.emplace_back(new BatchLoader(f, c));
    }
    for (int epoch = 0; epoch < 2; epoch++) {
        whole.start_epoch(epoch);
        for (auto& s : shards) s->start_epoch(epoch);
        CHECK(shards[0]->batches_per_epoch() == whole.batches_per_epoch());
        std::vector<float> x(4 * row), y(4), xs(2 * row), ys(2);
        int count = 0, batches = 0;
        while (whole.next(x.data(), y.data(), &count)) {
            REQUIRE(count == 4);
            for (int s = 0; s < 2; s++) {
                CAPTURE(s);
                int c = 0;
                REQUIRE(shards[s]->next(xs.data(), ys.data(), &c));
                REQUIRE(c == 2);
                CHECK(std::equal(xs.begin(), xs.end(), x.begin() + s * 2 * row));  // the same crops and flips
                CHECK(std::equal(ys.begin(), ys.end(), y.begin() + s * 2));
            }
            batches++;
        }
        CHECK(batches == 3);
        int c = 0;
        CHECK(!shards[0]->next(xs.data(), ys.data(), &c));
    }
    LoaderConfig bad = lc;
    bad.shards = 3;
    CHECK(has(vt_test::error_of([&] { BatchLoader l(f, bad); }), "3 shards need training batches (drop_last) of a multiple of 3"));
    bad.shards = 2, bad.shard = 2;
    CHECK(has(vt_test::error_of([&] { BatchLoader l(f, bad); }), "shard 2 of 2"));
    fs::remove_all(dir);
}

TEST_CASE("mpi: a pretrain built without MPI, started by mpirun with two ranks, refuses to train alone") {
    if (dist_built()) { MESSAGE("an MPI build: the refusal is for builds without MPI"); return; }
    if (!have_mpirun() || !fs::exists(pretrain_bin())) { MESSAGE("mpirun or pretrain not here: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    vt_test::image_folder(dir + "/imgs", 8);
    vt_test::ShellRun r = vt_test::shell_run(mpirun2() + pretrain_bin() + " " + train_flags(dir + "/imgs", dir + "/a.npz", 1) + " 2>&1");
    CAPTURE(r.out);
    CHECK(r.rc != 0);
    CHECK(has(r.out, "built without MPI: rebuild with `make MPI=1`"));
    CHECK(!fs::exists(dir + "/a.npz"));
    fs::remove_all(dir);
}

TEST_CASE("mpi: two ranks train the parameters one process trains with the same global batch") {
    if (!dist_built()) { MESSAGE("built without MPI=1: skipped (make check runs these in build-mpi/)"); return; }
    REQUIRE(have_mpirun());
    const std::string dir = vt_test::temp_dir(), data = dir + "/imgs";
    vt_test::image_folder(data, 16);  // 32 training images: 4 batches of 8 per epoch
    vt_test::ShellRun one = vt_test::shell_run(pretrain_bin() + " " + train_flags(data, dir + "/one.npz", 3) + " 2>&1");
    CAPTURE(one.out);
    REQUIRE(one.rc == 0);
    vt_test::ShellRun two = vt_test::shell_run(mpirun2() + pretrain_bin() + " " + train_flags(data, dir + "/two.npz", 3) + " 2>&1");
    CAPTURE(two.out);
    REQUIRE(two.rc == 0);
    CHECK(has(two.out, "rank 0 of 2"));
    CHECK(has(two.out, "rank 1 of 2"));
    CHECK(has(two.out, "images 4..7 of every batch of 8"));
    CHECK(vt_test::count_lines(two.out) > 0);
    int json_lines = 0;
    for (size_t at = 0; (at = two.out.find("{\"epoch\":", at)) != std::string::npos; at++) json_lines++;
    CHECK(json_lines == 3);  // rank 0 alone reports

    const auto a = params_of(dir + "/one.npz"), b = params_of(dir + "/two.npz");
    REQUIRE(a.size() == b.size());
    REQUIRE(a.size() >= 8);  // tiny3's convs and the classifier
    double worst = 0, scale = 0;
    for (const auto& kv : a) {
        CAPTURE(kv.first);
        const std::vector<float>& y = b.at(kv.first);
        REQUIRE(y.size() == kv.second.size());
        for (size_t i = 0; i < y.size(); i++)
            worst = std::max(worst, (double)std::fabs(kv.second[i] - y[i])), scale = std::max(scale, (double)std::fabs(kv.second[i]));
    }
    MESSAGE("largest parameter difference after 12 steps: " << worst << " (largest parameter " << scale << ")");
    CHECK(worst <= 1e-5 * scale);  // float round-off: the batch's gradient summed in two halves
    // and the two are not trivially equal: another seed trains other parameters
    vt_test::ShellRun other = vt_test::shell_run(pretrain_bin() + " " + train_flags(data, dir + "/seed1.npz", 3) + " --seed 1 2>&1");
    REQUIRE(other.rc == 0);
    const auto c = params_of(dir + "/seed1.npz");
    double moved = 0;
    for (const auto& kv : a)
        for (size_t i = 0; i < kv.second.size(); i++) moved = std::max(moved, (double)std::fabs(kv.second[i] - c.at(kv.first)[i]));
    CHECK(moved > 1000 * worst);

    // a batch the ranks cannot share equally is refused by every rank, in one line each
    vt_test::ShellRun odd = vt_test::shell_run(mpirun2() + pretrain_bin() + " " + train_flags(data, dir + "/odd.npz", 1) + " --batch 7 2>&1");
    CAPTURE(odd.out);
    CHECK(odd.rc != 0);
    CHECK(has(odd.out, "--batch 7: with 2 ranks each takes an equal share of a batch; use a multiple of 2"));
    CHECK(!fs::exists(dir + "/odd.npz"));

    // ranks started with other flags (mpirun's MPMD form) stop, naming what differs, instead of
    // falling out of step in their collectives
    const std::string launch = "mpirun --allow-run-as-root --oversubscribe --bind-to none -np 1 " + pretrain_bin() + " " +
                               train_flags(data, dir + "/mixed.npz", 1) + " : -np 1 " + pretrain_bin() + " " +
                               train_flags(data, dir + "/mixed.npz", 2) + " 2>&1";
    vt_test::ShellRun mixed = vt_test::shell_run(launch);
    CAPTURE(mixed.out);
    CHECK(mixed.rc != 0);
    CHECK(has(mixed.out, "pretrain: the ranks disagree on --epochs (from 1 to 2"));
    fs::remove_all(dir);
}

TEST_CASE("mpi: a killed rank stops the job with a clear error, the last checkpoint stays, and --resume continues") {
    if (!dist_built()) { MESSAGE("built without MPI=1: skipped (make check runs these in build-mpi/)"); return; }
    REQUIRE(have_mpirun());
    const std::string dir = vt_test::temp_dir(), data = dir + "/imgs", ck = dir + "/ck.npz", log = dir + "/log.txt";
    vt_test::image_folder(data, 16);
    const std::string cmd = mpirun2() + pretrain_bin() + " " + train_flags(data, ck, 100000);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > " + log + " 2>&1").c_str(), (char*)nullptr);
        _exit(127);
    }
    setpgid(pid, pid);
    // wait for rank 1's pid and a first checkpoint, then kill rank 1
    long rank1 = -1;
    for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120);) {
        const std::string s = slurp(log);
        const std::string key = "rank 1 of 2 (pid ";
        size_t at = s.find(key);
        if (at != std::string::npos) rank1 = std::atol(s.c_str() + at + key.size());
        if (rank1 > 0 && fs::exists(ck)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(rank1 > 0);
    REQUIRE(fs::exists(ck));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // mid-training, checkpoints being rewritten
    REQUIRE(kill((pid_t)rank1, SIGKILL) == 0);
    int st = 0;
    bool ended = false;
    for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60);) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            ended = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!ended) kill(-pid, SIGKILL), waitpid(pid, &st, 0);
    const std::string out = slurp(log);
    CAPTURE(out);
    CHECK(ended);  // the job stopped by itself: no rank left waiting for the dead one
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) != 0);
    CHECK(has(out, "rank 1"));
    CHECK(has(out, "signal 9"));  // mpirun: "... process rank 1 with PID N ... exited on signal 9 (Killed)"
    // the last checkpoint is whole: it loads, with its epochs
    const double done = epochs_done(ck);
    CHECK(done >= 1);
    CHECK(params_of(ck).size() >= 8);
    // and the job resumes from it, on two ranks again
    vt_test::ShellRun resumed = vt_test::shell_run(mpirun2() + pretrain_bin() + " " +
                                                   train_flags(data, ck, (int)done + 2) + " --resume 2>&1");
    CAPTURE(resumed.out);
    CHECK(resumed.rc == 0);
    CHECK(has(resumed.out, "resuming"));
    CHECK(epochs_done(ck) == done + 2);
    fs::remove_all(dir);
}
