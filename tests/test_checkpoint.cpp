// test_checkpoint.cpp: parameter arenas through .npz checkpoints, numpy compatibility and
// the errors a wrong checkpoint gives.
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "engine/checkpoint.h"
#include "tests/testutil.h"

using namespace vt;

static std::vector<ParamSpec> specs() {
    return {{"conv1.weight", {4, 3, 3, 3}}, {"conv1.bias", {4}, Init::Uniform, 0.5f}, {"fc.weight", {2, 4}}};
}

TEST_CASE("checkpoint: save and load restore every parameter and the metadata") {
    std::string dir = vt_test::temp_dir(), path = dir + "/ck.npz";
    ParamArena a(specs(), 1), b(specs(), 2);
    Npz meta;
    meta_set_string(meta, "meta.arch", "hcnn5-s");
    meta_set_floats(meta, "meta.mean", {0.4f, 0.5f, 0.6f});
    checkpoint_save(path, a, meta);
    Npz z = checkpoint_load(path, b);
    for (int64_t i = 0; i < a.numel(); i++) CHECK(a.data.data()[i] == b.data.data()[i]);
    CHECK(meta_string(z, "meta.arch") == "hcnn5-s");
    CHECK(meta_floats(z, "meta.mean")[2] == doctest::Approx(0.6f));
    std::remove(path.c_str());
    std::remove(dir.c_str());
}

TEST_CASE("checkpoint: numpy opens it and a checkpoint written by numpy loads") {
    if (std::system("python3 -c 'import numpy' 2>/dev/null") != 0) {
        MESSAGE("python3 with numpy not available: skipping the numpy interoperability check");
        return;
    }
    std::string dir = vt_test::temp_dir(), path = dir + "/ck.npz", back = dir + "/back.npz";
    ParamArena a(specs(), 3);
    checkpoint_save(path, a);
    // numpy reads ours, doubles conv1.bias and writes it back with savez_compressed.
    std::string cmd = "python3 -c \"import numpy as np; z = dict(np.load('" + path +
                      "')); assert z['conv1.weight'].shape == (4, 3, 3, 3) and z['conv1.weight'].dtype == np.float32;"
                      " z['conv1.bias'] = z['conv1.bias'] * 2; np.savez_compressed('" + back + "', **z)\"";
    REQUIRE(std::system(cmd.c_str()) == 0);
    ParamArena b(specs(), 4);
    checkpoint_load(back, b);
    for (int i = 0; i < 4; i++) CHECK(b["conv1.bias"].data()[i] == doctest::Approx(2 * a["conv1.bias"].data()[i]));
    CHECK(b["fc.weight"].data()[5] == a["fc.weight"].data()[5]);
    std::remove(path.c_str());
    std::remove(back.c_str());
    std::remove(dir.c_str());
}

TEST_CASE("checkpoint: another architecture's file is refused with the parameter and shapes named") {
    std::string dir = vt_test::temp_dir(), path = dir + "/ck.npz";
    ParamArena a(specs(), 5);
    checkpoint_save(path, a);
    ParamArena wider({{"conv1.weight", {8, 3, 3, 3}}, {"conv1.bias", {8}}, {"fc.weight", {2, 8}}}, 6);
    CHECK_THROWS_WITH_AS(checkpoint_load(path, wider),
                         doctest::Contains("'conv1.weight' has shape (4, 3, 3, 3), the model expects (8, 3, 3, 3)"),
                         vt::Error);
    ParamArena more({{"conv1.weight", {4, 3, 3, 3}}, {"conv1.bias", {4}}, {"fc.weight", {2, 4}}, {"cell.w", {3}}}, 7);
    CHECK_THROWS_WITH_AS(checkpoint_load(path, more), doctest::Contains("no parameter 'cell.w'"), vt::Error);
    CHECK_NOTHROW(checkpoint_load(path, more, {"cell."}));  // optional: keeps its initial value
    CHECK_THROWS_WITH_AS(checkpoint_load(dir + "/missing.npz", more), doctest::Contains("missing.npz"), vt::Error);
    std::remove(path.c_str());
    std::remove(dir.c_str());
}
