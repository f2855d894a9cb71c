// error.h: vt::Error and the two ways to raise it, shared by every layer of ventral.
//
// It lives in kernels/, the lowest layer, so that the kernels (the CPU size helpers, the CUDA
// error checks) can fail the same way as the rest without including anything above them;
// engine/common.h includes it, so code above the kernels gets it from there.
//
// Two kinds of failure:
//   CHECK(cond, fmt, ...)  a broken invariant (a programming error or a bad argument to a
//                          library call); the message carries file:line.
//   vt::fail(fmt, ...)     bad user input (a missing file, a corrupt npz, a wrong flag);
//                          the message names the file or flag, what was expected and what
//                          was found.
// Both throw vt::Error. Tools catch it in main (vt::run_main, engine/common.h), print one
// line and exit non-zero, so a user never sees a crash and tests can assert on the message.
#pragma once
#include <cstdarg>
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

}  // namespace vt

#define VT_CHECK(cond, ...)                                                      \
    do {                                                                         \
        if (!(cond)) ::vt::fail_check(__FILE__, __LINE__, #cond, __VA_ARGS__);   \
    } while (0)
// Tests use doctest's CHECK; the engine's is VT_CHECK under any name clash.
#ifndef DOCTEST_LIBRARY_INCLUDED
#define CHECK VT_CHECK
#endif
