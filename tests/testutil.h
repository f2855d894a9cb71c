// testutil.h: helpers shared by the tests: fixture paths, temporary folders, tolerances.
#pragma once
#undef CHECK  // the engine's CHECK (engine/common.h) gives way to doctest's
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <string>

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

// |a - b| <= atol + rtol * |b|
inline bool close(double a, double b, double atol, double rtol) { return std::fabs(a - b) <= atol + rtol * std::fabs(b); }

}  // namespace vt_test
