// testutil.h: helpers shared by the tests: fixture paths, temporary folders, tolerances.
#pragma once
#undef CHECK  // the engine's CHECK (engine/common.h) gives way to doctest's
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>

#include "engine/common.h"

#ifndef VT_ROOT
#define VT_ROOT "."
#endif

namespace vt_test {

// tests/fixtures/<name> in the source tree.
inline std::string fixture(const std::string& name) { return std::string(VT_ROOT) + "/tests/fixtures/" + name; }

// ../shared/data/<name> beside the checkout (may be absent: tests that need it skip).
inline std::string shared_data(const std::string& name) { return std::string(VT_ROOT) + "/../shared/data/" + name; }

// A fresh temporary directory, removed by the OS's tmp cleaning (tests remove what they write).
std::string temp_dir();

// The message of the vt::Error that f throws, or "(no vt::Error thrown)".
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const vt::Error& e) {
        return e.what();
    }
    return "(no vt::Error thrown)";
}

inline bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// |a - b| <= atol + rtol * |b|
inline bool close(double a, double b, double atol, double rtol) { return std::fabs(a - b) <= atol + rtol * std::fabs(b); }

}  // namespace vt_test
