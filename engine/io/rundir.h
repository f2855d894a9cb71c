// rundir.h: a run's claim on its outputs, so that runs never clobber each other.
//
// A tool that writes a folder of results claims it first, writes into a private folder, and
// publishes everything together at the end:
//
//   RunDir rd = rundir_claim(out, {"fit_dynamics", overwrite});  // lock; refuse a finished run
//   write(rd.partial + "/results.csv"); ...                       // DIR/.partial-<pid>/...
//   rundir_publish(rd);                                           // rename all into DIR, unlock
//
// - Lock: DIR/.lock held with flock() for the life of the claim. A second run into the same
//   DIR fails naming the pid that holds it. The kernel drops a flock when its process dies,
//   so a killed run's lock is simply taken over; the lock file is removed on release.
// - A finished run: DIR holds the tool's finished marker (e.g. results.json, which is
//   published last) or a DIR/.run-complete manifest. It is refused unless `overwrite`; with
//   it, publishing replaces the old run's files (those its manifest lists) by the new ones.
// - A failed or killed run leaves nothing in DIR: an unpublished claim removes its partial
//   folder; stale DIR/.partial-<pid> folders and *.tmp.<pid> files (engine/io/npy.h writes
//   path.tmp.<pid>, then renames) of processes that are gone are removed by the next claim.
//
// A tool whose output is one file that grows over the run (pretrain's checkpoint) claims the
// file instead: file_claim locks PATH.lock beside it and cleans PATH.tmp.<pid> leftovers.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace vt {

struct RunDirOptions {
    std::string tool;                              // for messages and the manifest ("fit_dynamics")
    bool overwrite = false;                        // replace a finished run (else refuse it)
    std::string finished_marker = "results.json";  // a file whose presence means "finished"; published last
    bool lock_only = false;                        // a resumable tool's folder: lock and clean, no finished-run
                                                   // check and no partial folder (rundir_publish not used)
};

struct RunDir {
    std::string dir;      // the claimed folder (created)
    std::string partial;  // dir/.partial-<pid>: outputs go here until rundir_publish
    std::string tool;
    std::string marker;   // RunDirOptions::finished_marker
    int lock_fd = -1;
    std::string lock_path;
    bool published = false;

    RunDir() = default;
    RunDir(RunDir&& o) noexcept;
    RunDir& operator=(RunDir&& o) noexcept;
    RunDir(const RunDir&) = delete;
    RunDir& operator=(const RunDir&) = delete;
    ~RunDir();  // unpublished: removes the partial folder; releases the lock
};

// Creates `dir` if needed and claims it (see above). Fails, naming the folder, when it cannot
// be created or written, when another live run holds it, or when it holds a finished run
// and !opt.overwrite.
RunDir rundir_claim(const std::string& dir,        // the tool's --out folder
                    const RunDirOptions& opt);     // tool name, overwrite, finished marker
// Moves every entry of rd.partial into rd.dir (the finished marker last), writes
// dir/.run-complete listing them, removes the partial folder, calls `then` (if given: what is
// to be done while the folder is still locked, e.g. removing what a resumable run kept for
// --resume) and releases the lock.
void rundir_publish(RunDir& rd, const std::function<void()>& then = nullptr);

struct FileClaim {
    std::string path;      // the output file
    std::string lock_path; // path + ".lock"
    int lock_fd = -1;

    FileClaim() = default;
    FileClaim(FileClaim&& o) noexcept;
    FileClaim& operator=(FileClaim&& o) noexcept;
    FileClaim(const FileClaim&) = delete;
    FileClaim& operator=(const FileClaim&) = delete;
    ~FileClaim();  // releases the lock and removes the lock file
};

// Creates path's folder if needed, checks it is writable, locks path.lock (a second run onto
// the same path fails naming the pid holding it) and removes path.tmp.<pid> files of dead
// processes, saying so on stderr. `what` names the flag for messages ("--out").
FileClaim file_claim(const std::string& path, const std::string& what);

// A claim others wait on instead of failing at (the sweep's per-configuration claims, which
// concurrent sweeps and Slurm array tasks share): flock() on a file that stays in place
// (removing it would let a third process lock a new file beside a holder). The kernel drops
// the lock when its process dies, so a killed holder's claim is simply taken over; the file
// holds the holder's note ("pid 123 on node7") for messages. Works across the nodes of a
// cluster where the file system supports flock (NFSv4 maps it to POSIX locks; Lustre with
// -o flock).
struct SharedClaim {
    int fd = -1;
    std::string path;
    bool held() const { return fd >= 0; }
    void release();  // unlocks (the file stays)

    SharedClaim() = default;
    SharedClaim(SharedClaim&& o) noexcept;
    SharedClaim& operator=(SharedClaim&& o) noexcept;
    SharedClaim(const SharedClaim&) = delete;
    SharedClaim& operator=(const SharedClaim&) = delete;
    ~SharedClaim() { release(); }
};
// Takes the claim at `path` (created, with its folder) if no live process holds it, writing
// `note` in it; else returns an unheld claim and the holder's note in *holder. Fails, naming
// the path, when it cannot be created or locked for another reason.
SharedClaim claim_try(const std::string& path, const std::string& note, std::string* holder);
// "pid 123 on HOST": who we are, for a claim's note.
std::string claim_note_self();

// Removes the files in `dir` named <prefix>*.tmp.<pid> (prefix "" = any) whose process is
// gone; returns their names. Only safe for a caller that holds the claim on what they belong to.
std::vector<std::string> remove_stale_temps(const std::string& dir, const std::string& prefix);

}  // namespace vt
