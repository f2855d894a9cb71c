// test_rundir.cpp: claiming, publishing and cleaning output folders (engine/io/rundir.h).
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/io/rundir.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::slurp;
using vt_test::error_of;
using vt_test::has;
namespace fs = std::filesystem;

namespace {

RunDirOptions opts(bool overwrite = false) {
    RunDirOptions o;
    o.tool = "test";
    o.overwrite = overwrite;
    return o;
}

}  // namespace

TEST_CASE("rundir: a claim locks the folder, publishes its files together, and a finished run is refused") {
    const std::string base = vt_test::temp_dir(), dir = base + "/run";
    {
        RunDir rd = rundir_claim(dir, opts());
        CHECK(fs::is_directory(rd.partial));
        CHECK(has(rd.partial, "/.partial-" + std::to_string(getpid())));
        // a second run into the same folder, while the first holds it, is refused naming its pid
        CHECK(has(error_of([&] { rundir_claim(dir, opts()); }), "is in use by another run (pid " + std::to_string(getpid())));
        std::ofstream(rd.partial + "/results.csv") << "a,b\n";
        std::ofstream(rd.partial + "/results.json") << "{}\n";
        fs::create_directories(rd.partial + "/checkpoints");
        std::ofstream(rd.partial + "/checkpoints/split0.npz") << "ck";
        CHECK(!fs::exists(dir + "/results.json"));  // nothing in DIR before publishing
        rundir_publish(rd);
        CHECK(slurp(dir + "/results.csv") == "a,b\n");
        CHECK(fs::exists(dir + "/results.json"));
        CHECK(fs::exists(dir + "/checkpoints/split0.npz"));
        CHECK(!fs::exists(rd.partial));
        CHECK(!fs::exists(dir + "/.lock"));
        CHECK(has(slurp(dir + "/.run-complete"), "file results.json\n"));
    }
    // finished: refused without --overwrite, naming the folder
    std::string e = error_of([&] { rundir_claim(dir, opts()); });
    CHECK(has(e, "the output folder '" + dir + "' holds a finished run"));
    CHECK(has(e, "--overwrite"));
    // with --overwrite the new run's files replace the old run's, and the old ones it does not
    // write again go; until it publishes, the old run stays whole
    {
        RunDir rd = rundir_claim(dir, opts(true));
        std::ofstream(rd.partial + "/results.json") << "{\"new\": 1}\n";
        CHECK(fs::exists(dir + "/results.csv"));
        rundir_publish(rd);
    }
    CHECK(slurp(dir + "/results.json") == "{\"new\": 1}\n");
    CHECK(!fs::exists(dir + "/results.csv"));
    CHECK(!fs::exists(dir + "/checkpoints"));
    // a failed run (not published) leaves nothing behind
    {
        RunDir rd = rundir_claim(dir, opts(true));
        std::ofstream(rd.partial + "/half.png") << "x";
    }
    CHECK(!fs::exists(dir + "/half.png"));
    CHECK(slurp(dir + "/results.json") == "{\"new\": 1}\n");
    for (auto& entry : fs::directory_iterator(dir)) CHECK(entry.path().filename().string().rfind(".partial-", 0) != 0);
    fs::remove_all(base);
}

TEST_CASE("rundir: a killed run's lock is taken over and its partial folder and temporaries removed") {
    const std::string base = vt_test::temp_dir(), dir = base + "/run";
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t child = fork();
    if (child == 0) {  // claims, writes half its outputs, then dies without publishing
        try {
            RunDir rd = rundir_claim(dir, opts());
            std::ofstream(rd.partial + "/results.csv") << "half";
            std::ofstream(dir + "/model.npz.tmp." + std::to_string(getpid())) << "half a checkpoint";
            char c = 1;
            if (write(ready[1], &c, 1) != 1) _exit(2);
            pause();  // until killed: the lock is held
        } catch (...) {
        }
        _exit(1);
    }
    close(ready[1]);
    char c = 0;
    REQUIRE(read(ready[0], &c, 1) == 1);
    close(ready[0]);
    // while the child lives, its claim stands
    CHECK(has(error_of([&] { rundir_claim(dir, opts()); }), "is in use by another run (pid " + std::to_string(child)));
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    CHECK(fs::exists(dir + "/.partial-" + std::to_string(child)));
    {
        RunDir rd = rundir_claim(dir, opts());  // not finished: no --overwrite needed
        CHECK(!fs::exists(dir + "/.partial-" + std::to_string(child)));
        CHECK(!fs::exists(dir + "/model.npz.tmp." + std::to_string(child)));
    }
    fs::remove_all(base);
}

TEST_CASE("rundir: folders of earlier runs, lock-only claims and file claims") {
    const std::string base = vt_test::temp_dir();
    // a folder a run wrote before rundir existed: its results.json marks it finished
    fs::create_directories(base + "/old");
    std::ofstream(base + "/old/results.json") << "{}";
    CHECK(has(error_of([&] { rundir_claim(base + "/old", opts()); }), "holds a finished run ('" + base + "/old/results.json'"));
    RunDirOptions lock_only = opts();
    lock_only.lock_only = true;  // a resumable tool (sweep): the lock only
    {
        RunDir rd = rundir_claim(base + "/old", lock_only);
        CHECK(rd.partial.empty());
        CHECK(has(error_of([&] { rundir_claim(base + "/old", lock_only); }), "is in use by another run"));
    }
    CHECK(!fs::exists(base + "/old/.lock"));
    // --out is a regular file, or under one
    std::ofstream(base + "/f") << "x";
    CHECK(has(error_of([&] { rundir_claim(base + "/f", opts()); }), "'" + base + "/f' exists and is not a folder"));
    CHECK(has(error_of([&] { rundir_claim(base + "/f/sub", opts()); }), "cannot create the folder"));
    // file claims: one run per path; stale temporaries of dead processes go, live ones stay
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, nullptr, 0);
    const std::string ck = base + "/cks/a.npz";
    fs::create_directories(base + "/cks");
    std::ofstream(ck + ".tmp." + std::to_string(dead)) << "stale";
    std::ofstream(ck + ".tmp." + std::to_string(getpid())) << "live";
    std::ofstream(base + "/cks/b.npz.tmp." + std::to_string(dead)) << "another output's";
    {
        FileClaim c = file_claim(ck, "--out");
        CHECK(has(error_of([&] { file_claim(ck, "--out"); }), "--out '" + ck + "' is in use by another run"));
        FileClaim other = file_claim(base + "/cks/b.npz", "--out");  // another path: its own claim
    }
    CHECK(!fs::exists(ck + ".tmp." + std::to_string(dead)));
    CHECK(fs::exists(ck + ".tmp." + std::to_string(getpid())));
    CHECK(!fs::exists(base + "/cks/b.npz.tmp." + std::to_string(dead)));  // cleaned by b's claim
    CHECK(!fs::exists(ck + ".lock"));
    CHECK(has(error_of([&] { file_claim(base + "/cks", "--out"); }), "is a folder; expected a file path"));
    fs::remove_all(base);
}
