// main.cpp: the doctest runner behind ./bin/tests (every tests/*.cpp links into it).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
