// testutil.cpp: temporary directories for tests.
#include "tests/testutil.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace vt_test {

std::string temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ventral_test_XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    return tmpl;
}

}  // namespace vt_test
