// common.h: errors, checks and small utilities shared by every layer above the kernels.
//
// vt::Error, CHECK(cond, fmt, ...) for a broken invariant and vt::fail(fmt, ...) for bad user
// input are declared in kernels/error.h (the kernels throw them too) and come with this
// header. Here: run_main, which turns them into one line and a non-zero exit, and the checks
// on sizes and memory that come from files and flags.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace vt {

// Runs body, turning a vt::Error (or std::exception) into "error: ..." on stderr and exit
// code 1. Every tool's main is `return vt::run_main([&]{ ... });`.
template <class F>
int run_main(F&& body);

// ---- sizes read from files and flags ------------------------------------------------------
// Every size that comes from outside (a file header, a flag) is multiplied in checked 64-bit
// arithmetic and its memory compared with what the process may still allocate, before the
// allocation: a bad size is one error line naming the file or flag, not a crash or a wrap.

// The product of `dims` times `itemsize`; fails with "<what>: ..." when a factor is negative
// or the product overflows int64.
int64_t checked_bytes(const std::vector<int64_t>& dims,  // e.g. a shape
                      int64_t itemsize,                   // bytes per element (1 for a count)
                      const std::string& what);           // the file/array or flag, for the message

// What this process may still allocate: the least of the machine's physical memory, the
// cgroup's memory.max, and what RLIMIT_AS (ulimit -v) leaves above the current address space.
struct MemoryLimit {
    uint64_t bytes = 0;
    std::string what;  // "the 23.4 GB of RAM of this machine", "the 0.6 GB left under ulimit -v 1.0 GB", ...
};
MemoryLimit memory_limit();

// Fails with "<what> needs X of memory, more than <limit>" when bytes > memory_limit().bytes.
void mem_check(const std::string& what, uint64_t bytes);

std::string format_bytes(uint64_t bytes);  // "512 B", "3.2 MB", "1.5 GB" (powers of 1024)

// Hardware threads this process may run on (sched_getaffinity), at least 1.
int hardware_threads();

// ---- lists in flags and messages ----------------------------------------------------------
// The one parser of comma-separated values (--readout, --feedback, --layers, ...): the items
// in order, empty ones kept so the caller decides whether "a,,b" is an error;
// "" -> {""}.
std::vector<std::string> list_items(const std::string& s, char sep = ',');
// {"a", "b"} -> "a, b": the known names in an error or a --help line.
std::string list_join(const std::vector<std::string>& items, const std::string& sep = ", ");

}  // namespace vt

// ---------------------------------------------------------------------------------------
#include <cstdio>
template <class F>
int vt::run_main(F&& body) {
    try {
        return body();
    } catch (const vt::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "error: out of memory (the limit is %s)\n", vt::memory_limit().what.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    }
    return 1;
}
