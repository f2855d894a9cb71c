// common.cpp: checked sizes, the memory limit and the thread count (see common.h).
#include "engine/common.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <thread>
#include <vector>

namespace vt {

// ---- sizes and memory ------------------------------------------------------------------------

int64_t checked_bytes(const std::vector<int64_t>& dims, int64_t itemsize, const std::string& what) {
    std::string text = "(";
    for (size_t i = 0; i < dims.size(); i++) text += strfmt(i ? ", %lld" : "%lld", (long long)dims[i]);
    text += dims.size() == 1 ? ",)" : ")";
    int64_t n = itemsize;
    if (itemsize < 0) fail("%s: negative element size %lld", what.c_str(), (long long)itemsize);
    for (int64_t d : dims) {
        if (d < 0) fail("%s: size %s has a negative dimension", what.c_str(), text.c_str());
        if (__builtin_mul_overflow(n, d, &n))
            fail("%s: size %s x %lld bytes overflows a 64-bit byte count (corrupt header or wrong value)", what.c_str(),
                 text.c_str(), (long long)itemsize);
    }
    return n;
}

std::vector<std::string> list_items(const std::string& s, char sep) {
    std::vector<std::string> items;
    for (size_t a = 0;;) {
        size_t e = s.find(sep, a);
        items.push_back(s.substr(a, e == std::string::npos ? std::string::npos : e - a));
        if (e == std::string::npos) return items;
        a = e + 1;
    }
}

std::string list_join(const std::vector<std::string>& items, const std::string& sep) {
    std::string out;
    for (size_t k = 0; k < items.size(); k++) out += (k ? sep : "") + items[k];
    return out;
}

std::string format_bytes(uint64_t b) {
    if (b < 1024) return strfmt("%llu B", (unsigned long long)b);
    const char* unit[] = {"KB", "MB", "GB", "TB", "PB", "EB"};
    double v = (double)b / 1024;
    int u = 0;
    while (v >= 1024 && u < 5) v /= 1024, u++;
    return strfmt("%.1f %s", v, unit[u]);
}

MemoryLimit memory_limit() {
    MemoryLimit lim;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    lim.bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
    lim.what = strfmt("the %s of RAM of this machine", format_bytes(lim.bytes).c_str());
    {  // a cgroup v2 limit (containers): "max" or a byte count
        std::ifstream in("/sys/fs/cgroup/memory.max");
        unsigned long long v = 0;
        if (in >> v && v < lim.bytes) {
            lim.bytes = v;
            lim.what = strfmt("the %s memory limit of this container (/sys/fs/cgroup/memory.max)", format_bytes(v).c_str());
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        unsigned long long vm_pages = 0;  // the address space in use: first field of statm
        std::ifstream("/proc/self/statm") >> vm_pages;
        uint64_t used = (uint64_t)vm_pages * (uint64_t)(page > 0 ? page : 4096), cap = rl.rlim_cur;
        uint64_t left = cap > used ? cap - used : 0;
        if (left < lim.bytes) {
            lim.bytes = left;
            lim.what = strfmt("the %s of address space left under this process's limit (ulimit -v %llu, %s in use)",
                              format_bytes(left).c_str(), (unsigned long long)(cap / 1024), format_bytes(used).c_str());
        }
    }
    return lim;
}

void mem_check(const std::string& what, uint64_t bytes) {
    MemoryLimit lim = memory_limit();
    if (bytes > lim.bytes)
        fail("%s needs %s of memory, more than %s", what.c_str(), format_bytes(bytes).c_str(), lim.what.c_str());
}

int hardware_threads() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    int n = (int)std::thread::hardware_concurrency();
    return n > 0 ? n : 1;
}

}  // namespace vt
