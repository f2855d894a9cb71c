// main.cpp: the doctest runner behind ./bin/tests (every tests/*.cpp links into it).
// The OpenBLAS kernel choice is left as the environment has it (tests check results, not speed).
#include "engine/backend.h"
#include "engine/progress.h"

#undef CHECK
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

int main(int argc, char** argv) {
    vt::RuntimeOptions rt;
    rt.native_blas = false;
    vt::runtime_init(argv, rt);
    vt::progress_set_enabled(false);  // library code's progress bars would bury doctest's output
    return doctest::Context(argc, argv).run();
}
