// rundir.cpp: claiming, publishing and cleaning a run's outputs (see rundir.h).
#include "engine/io/rundir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "engine/common.h"
#include "engine/io/npy.h"  // file_write_atomic

namespace fs = std::filesystem;

namespace vt {
namespace {

const char* kManifest = ".run-complete";

// A pid that no longer runs (kill(pid, 0) says ESRCH). Anything else, alive or not ours to
// signal, counts as alive.
bool pid_gone(long pid) { return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

// The pid after `tag` in `name` ("x.tmp.123" with tag ".tmp." -> 123), or -1.
long pid_after(const std::string& name, const std::string& tag) {
    size_t at = name.rfind(tag);
    if (at == std::string::npos) return -1;
    std::string digits = name.substr(at + tag.size());
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stol(digits);
}

// Opens and flocks `lock_path`, writing our pid in it; `what` names the claimed thing.
int lock_take(const std::string& lock_path, const std::string& what) {
    for (int tries = 0; tries < 10; tries++) {
        int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) fail("%s: cannot create the lock file '%s': %s", what.c_str(), lock_path.c_str(), std::strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = {0};
            ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
            std::string holder = got > 0 ? std::string(buf, strcspn(buf, "\n")) : "unknown";
            close(fd);
            if (e == EWOULDBLOCK)
                fail("%s is in use by another run (pid %s, holding '%s'): wait for it to finish, or choose another "
                     "output", what.c_str(), holder.c_str(), lock_path.c_str());
            fail("%s: cannot lock '%s': %s", what.c_str(), lock_path.c_str(), std::strerror(e));
        }
        // The previous holder removes the file when it lets go: make sure ours is still the one
        // at lock_path, else a third run could lock a new file beside us.
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(lock_path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            std::string me = std::to_string(getpid()) + "\n";
            if (ftruncate(fd, 0) != 0 || pwrite(fd, me.data(), me.size(), 0) != (ssize_t)me.size())
                fail("%s: cannot write the lock file '%s': %s", what.c_str(), lock_path.c_str(), std::strerror(errno));
            return fd;
        }
        close(fd);
    }
    fail("%s: cannot lock '%s': it keeps being replaced", what.c_str(), lock_path.c_str());
}

void lock_release(int& fd, const std::string& lock_path) {
    if (fd < 0) return;
    unlink(lock_path.c_str());  // while still holding it: see lock_take
    close(fd);
    fd = -1;
}

// Creates `dir` (and parents) and checks that files can be made in it.
void make_writable_folder(const std::string& dir, const std::string& what) {
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
        fail("%s: '%s' exists and is not a folder", what.c_str(), dir.c_str());
    fs::create_directories(dir, ec);
    if (ec) fail("%s: cannot create the folder '%s': %s", what.c_str(), dir.c_str(), ec.message().c_str());
    if (access(dir.c_str(), W_OK | X_OK) != 0)
        fail("%s: the folder '%s' is not writable: %s", what.c_str(), dir.c_str(), std::strerror(errno));
}

std::string mtime_text(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return "?";
    char buf[64];
    struct tm tmv;
    localtime_r(&st.st_mtime, &tmv);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tmv);
    return buf;
}

// The files a finished run published, from its manifest ("file NAME" lines).
std::vector<std::string> manifest_files(const std::string& dir) {
    std::vector<std::string> out;
    std::ifstream in(dir + "/" + kManifest);
    for (std::string line; std::getline(in, line);)
        if (line.compare(0, 5, "file ") == 0 && line.size() > 5 && line.find('/') == std::string::npos &&
            line.substr(5) != "." && line.substr(5) != "..")
            out.push_back(line.substr(5));
    return out;
}

}  // namespace

std::vector<std::string> remove_stale_temps(const std::string& dir, const std::string& prefix) {
    std::vector<std::string> removed;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0 || !it->is_regular_file(ec)) continue;
        long pid = pid_after(name, ".tmp.");
        if (pid_gone(pid) && fs::remove(it->path(), ec)) removed.push_back(name);
    }
    return removed;
}

// ---- folders ----------------------------------------------------------------------------------
RunDir::RunDir(RunDir&& o) noexcept { *this = std::move(o); }

RunDir& RunDir::operator=(RunDir&& o) noexcept {
    std::swap(dir, o.dir), std::swap(partial, o.partial), std::swap(tool, o.tool), std::swap(marker, o.marker);
    std::swap(lock_fd, o.lock_fd), std::swap(lock_path, o.lock_path), std::swap(published, o.published);
    return *this;
}

RunDir::~RunDir() {
    std::error_code ec;
    if (!published && !partial.empty()) fs::remove_all(partial, ec);
    lock_release(lock_fd, lock_path);
}

// ---- shared claims ----------------------------------------------------------------------------
SharedClaim::SharedClaim(SharedClaim&& o) noexcept { *this = std::move(o); }

SharedClaim& SharedClaim::operator=(SharedClaim&& o) noexcept {
    std::swap(fd, o.fd), std::swap(path, o.path);
    return *this;
}

void SharedClaim::release() {
    if (fd >= 0) close(fd);  // closing the last descriptor drops the flock
    fd = -1;
}

std::string claim_note_self() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "?");
    return strfmt("pid %d on %s", (int)getpid(), host);
}

SharedClaim claim_try(const std::string& path, const std::string& note, std::string* holder) {
    std::error_code ec;
    fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    SharedClaim c;
    c.path = path;
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);  // CLOEXEC: a child never holds it
    if (fd < 0) fail("cannot create the claim file '%s': %s", path.c_str(), std::strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[256] = {0};
        ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK) fail("cannot lock the claim file '%s': %s", path.c_str(), std::strerror(e));
        if (holder) *holder = got > 0 ? std::string(buf, strcspn(buf, "\n")) : "another process";
        return c;
    }
    std::string line = note + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line.data(), line.size(), 0) != (ssize_t)line.size()) {
        int e = errno;
        close(fd);
        fail("cannot write the claim file '%s': %s", path.c_str(), std::strerror(e));
    }
    c.fd = fd;
    return c;
}

RunDir rundir_claim(const std::string& dir, const RunDirOptions& opt) {
    const std::string what = strfmt("the output folder '%s'", dir.c_str());
    make_writable_folder(dir, "--out");
    RunDir rd;
    rd.dir = dir, rd.tool = opt.tool, rd.marker = opt.finished_marker;
    rd.lock_path = dir + "/.lock";
    rd.lock_fd = lock_take(rd.lock_path, what);

    std::error_code ec;
    if (opt.lock_only) {
        remove_stale_temps(dir, "");
        return rd;
    }
    std::string done = fs::exists(dir + "/" + kManifest, ec) ? dir + "/" + kManifest
                     : !rd.marker.empty() && fs::exists(dir + "/" + rd.marker, ec) ? dir + "/" + rd.marker : "";
    if (!done.empty() && !opt.overwrite)
        fail("%s holds a finished run ('%s', %s): pass --overwrite to replace it, or choose another --out", what.c_str(),
             done.c_str(), mtime_text(done).c_str());

    // What killed runs left: partial folders and temporaries of processes that are gone.
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        std::error_code ec2;
        if (name.compare(0, 9, ".partial-") == 0 && pid_gone(pid_after(name, ".partial-"))) fs::remove_all(it->path(), ec2);
    }
    remove_stale_temps(dir, "");
    rd.partial = dir + "/.partial-" + std::to_string(getpid());
    fs::remove_all(rd.partial, ec);
    if (!fs::create_directory(rd.partial, ec))
        fail("%s: cannot create '%s': %s", what.c_str(), rd.partial.c_str(), ec.message().c_str());
    return rd;
}

void rundir_publish(RunDir& rd, const std::function<void()>& then) {
    CHECK(!rd.published && !rd.partial.empty(), "rundir_publish: '%s' is not claimed or already published", rd.dir.c_str());
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(rd.partial, ec), end; !ec && it != end; it.increment(ec))
        names.push_back(it->path().filename().string());
    if (ec) fail("cannot list '%s': %s", rd.partial.c_str(), ec.message().c_str());
    std::sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
        return std::make_pair(a == rd.marker, a) < std::make_pair(b == rd.marker, b);  // the marker last
    });

    // The previous run's files go first (its marker and manifest before anything else), so
    // a publish cut short never shows the old run as finished beside the new files.
    std::vector<std::string> old = manifest_files(rd.dir);
    if (!rd.marker.empty()) fs::remove(rd.dir + "/" + rd.marker, ec);
    fs::remove(rd.dir + "/" + kManifest, ec);
    for (const std::string& n : old)
        if (std::find(names.begin(), names.end(), n) == names.end()) fs::remove_all(rd.dir + "/" + n, ec);

    std::string manifest = strfmt("tool %s\npid %d\n", rd.tool.c_str(), (int)getpid());
    for (const std::string& n : names) {
        std::string src = rd.partial + "/" + n, dst = rd.dir + "/" + n;
        if (fs::is_directory(src, ec) && fs::exists(dst, ec)) fs::remove_all(dst, ec);
        if (std::rename(src.c_str(), dst.c_str()) != 0)
            fail("cannot move '%s' to '%s': %s", src.c_str(), dst.c_str(), std::strerror(errno));
        manifest += "file " + n + "\n";
    }
    file_write_atomic(rd.dir + "/" + kManifest, manifest.data(), manifest.size());
    fs::remove(rd.partial, ec);
    rd.published = true;
    if (then) then();
    lock_release(rd.lock_fd, rd.lock_path);
}

// ---- single files -----------------------------------------------------------------------------
FileClaim::FileClaim(FileClaim&& o) noexcept { *this = std::move(o); }

FileClaim& FileClaim::operator=(FileClaim&& o) noexcept {
    std::swap(path, o.path), std::swap(lock_path, o.lock_path), std::swap(lock_fd, o.lock_fd);
    return *this;
}

FileClaim::~FileClaim() { lock_release(lock_fd, lock_path); }

FileClaim file_claim(const std::string& path, const std::string& what) {
    if (path.empty() || path.back() == '/')
        fail("%s '%s': expected a file path such as runs/pretrain/backbone.npz", what.c_str(), path.c_str());
    std::error_code ec;
    if (fs::is_directory(path, ec))
        fail("%s '%s' is a folder; expected a file path such as %s/backbone.npz", what.c_str(), path.c_str(), path.c_str());
    fs::path p(path);
    std::string dir = p.parent_path().empty() ? "." : p.parent_path().string();
    make_writable_folder(dir, what + " '" + path + "'");
    FileClaim c;
    c.path = path;
    c.lock_path = path + ".lock";
    c.lock_fd = lock_take(c.lock_path, strfmt("%s '%s'", what.c_str(), path.c_str()));
    for (const std::string& n : remove_stale_temps(dir, p.filename().string() + ".tmp."))
        std::fprintf(stderr, "note: removed '%s/%s', left by a save that was killed (its process is gone)\n", dir.c_str(),
                     n.c_str());
    return c;
}

}  // namespace vt
