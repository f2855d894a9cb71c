// common.h: errors, checks and small utilities shared by every layer of ventral.
//
// Two kinds of failure:
//   CHECK(cond, fmt, ...)  a broken invariant (a programming error or a bad argument to a
//                          library call); the message carries file:line.
//   vt::fail(fmt, ...)     bad user input (a missing file, a corrupt npz, a wrong flag);
//                          the message names the file or flag, what was expected and what
//                          was found.
// Both throw vt::Error. Tools catch it in main, print one line and exit non-zero, so a
// user never sees a crash and tests can assert on the message.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vt {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrfmt(const char* fmt, va_list ap);

[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fail_check(const char* file, int line, const char* cond, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));

// Runs body, turning a vt::Error (or std::exception) into "error: ..." on stderr and exit
// code 1. Every tool's main is `return vt::run_main([&]{ ... });`.
template <class F>
int run_main(F&& body);

}  // namespace vt

#define VT_CHECK(cond, ...)                                                      \
    do {                                                                         \
        if (!(cond)) ::vt::fail_check(__FILE__, __LINE__, #cond, __VA_ARGS__);   \
    } while (0)
// Tests use doctest's CHECK; the engine's is VT_CHECK under any name clash.
#ifndef DOCTEST_LIBRARY_INCLUDED
#define CHECK VT_CHECK
#endif

// ---------------------------------------------------------------------------------------
#include <cstdio>
template <class F>
int vt::run_main(F&& body) {
    try {
        return body();
    } catch (const vt::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "error: out of memory\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    }
    return 1;
}
