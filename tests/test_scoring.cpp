// test_scoring.cpp: the fitting protocol (models/fit/scoring.h) on synthetic data with known
// answers: folds, split-half ceilings (noiseless unit = 1, Spearman-Brown value for noisy
// units, NaN trials), unit exclusions, the shared and per-bin PLS mappings (stacked fit
// without copies, features restored), raw r^2 without a ceiling, the features-file checks
// (models/fit/features.h) and ./bin/score end to end.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "engine/io/npy.h"
#include "models/fit/features.h"
#include "models/datasets/neural_data.h"
#include "models/fit/scoring.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

// Responses = signal + noise * N(0, 1) per trial, signal(i, u, b) = (X W)(i, u*B + b) with
// X (N, D) and W (D, U*B) standard normal, scaled to unit variance. Units alternate V4, IT.
struct Synth {
    NeuralData d;
    std::vector<float> X;  // (N, D)
};

Synth synth(int64_t N, int64_t U, int64_t B, int64_t R, int64_t D, float noise, uint64_t seed) {
    std::mt19937 rng((unsigned)seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    Synth s;
    s.X.resize(N * D);
    for (float& x : s.X) x = nd(rng);
    std::vector<float> W(D * U * B);
    for (float& w : W) w = nd(rng) / std::sqrt((float)D);
    NeuralData& d = s.d;
    d.path = "synthetic";
    d.R = R, d.N = N, d.U = U, d.B = B, d.H = 2, d.W = 2;
    d.images.assign(N * 2 * 2 * 3, 128);
    d.responses.resize(R * N * U * B);
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < U * B; k++) {
            double sig = 0;
            for (int64_t j = 0; j < D; j++) sig += s.X[i * D + j] * W[j * U * B + k];
            for (int64_t r = 0; r < R; r++) d.responses[(r * N + i) * U * B + k] = 5.f + (float)sig + noise * nd(rng);
        }
    for (int64_t u = 0; u < U; u++) d.unit_area.push_back(u % 2 ? "IT" : "V4");
    for (int64_t u = 0; u < U; u++) d.unit_id.push_back("u" + std::to_string(u));
    for (int64_t b = 0; b < B; b++) d.bin_start_ms.push_back(70.f + 20 * b), d.bin_end_ms.push_back(90.f + 20 * b);
    return s;
}

const AreaScore& score_for(const LayerScore& L, Mapping m, const std::string& area) {
    for (const AreaScore& a : L.scores)
        if (a.mapping == m && a.area == area) return a;
    FAIL("no score for the mapping and area");
    return L.scores[0];
}

}  // namespace

TEST_CASE("scoring: folds are balanced, seeded and stratified by object") {
    Folds f = folds_make(103, 4, 7, {});
    std::vector<int> size(4, 0);
    for (int x : f.fold) size[x]++;
    for (int s : size) CHECK((s == 25 || s == 26));
    CHECK(folds_make(103, 4, 7, {}).fold == f.fold);
    CHECK(folds_make(103, 4, 8, {}).fold != f.fold);
    CHECK(!f.stratified);

    std::vector<std::string> obj;
    for (int i = 0; i < 80; i++) obj.push_back("object" + std::to_string(i % 10));
    Folds g = folds_make(80, 4, 1, obj);
    CHECK(g.stratified);
    for (int o = 0; o < 10; o++)
        for (int k = 0; k < 4; k++) {
            int c = 0;
            for (int i = 0; i < 80; i++) c += i % 10 == o && g.fold[i] == k;
            CHECK(c == 2);  // each object's 8 images spread 2 per fold
        }
    CHECK(has(error_of([] { folds_make(3, 4, 0, {}); }), "3 images, fewer than the 4 folds"));
    CHECK(has(error_of([] { folds_make(10, 1, 0, {}); }), "at least 2 folds"));
}

TEST_CASE("scoring: split-half ceiling is 1 without noise and Spearman-Brown's value with it") {
    // N = 400 images, R = 8 trials; signal variance 1. Unit 0 noiseless, unit 1 trial noise
    // variance 1 (reliability of an 8-trial mean = 1 / (1 + 1/8) = 0.889), unit 2 noise only.
    const int64_t N = 400, R = 8;
    NeuralData d;
    d.path = "ceiling";
    d.R = R, d.N = N, d.U = 3, d.B = 1;
    d.responses.resize(R * N * 3);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t i = 0; i < N; i++) {
        float sig = nd(rng);
        for (int64_t r = 0; r < R; r++) {
            d.at(r, i, 0, 0) = 3 + sig;
            d.at(r, i, 1, 0) = 3 + sig + nd(rng);
            d.at(r, i, 2, 0) = 3 + nd(rng);
        }
    }
    std::vector<float> rho = ceiling_split_half(d, 10, 0);
    CHECK(rho[0] == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(rho[1] == doctest::Approx(8.0 / 9.0).epsilon(0.04));
    CHECK(std::fabs(rho[2]) < 0.15);
    CHECK(ceiling_split_half(d, 10, 0) == rho);  // seeded

    // Missing trials (NaN) are skipped per image: the noiseless unit stays at 1, the noisy one
    // drops a little (fewer trials), images left with one trial drop out of that unit.
    std::uniform_real_distribution<float> ud(0.f, 1.f);
    for (int64_t i = 0; i < N; i++)
        for (int64_t r = 0; r < R; r++)
            if (ud(rng) < 0.3f || (i < 20 && r > 0))
                for (int u = 0; u < 3; u++) d.at(r, i, u, 0) = NAN;
    rho = ceiling_split_half(d, 10, 0);
    CHECK(rho[0] == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(rho[1] > 0.75f);
    CHECK(rho[1] < 0.92f);
}

TEST_CASE("scoring: all-NaN, zero-variance and unreliable units are excluded and reported, not a crash") {
    Synth s = synth(60, 6, 2, 4, 10, 0.3f, 3);
    NeuralData& d = s.d;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t r = 0; r < d.R; r++)
        for (int64_t i = 0; i < d.N; i++)
            for (int64_t b = 0; b < d.B; b++) {
                d.at(r, i, 0, b) = NAN;      // unit 0 (V4): no trial at all
                d.at(r, i, 2, b) = 7.f;      // unit 2 (V4): the same response to everything
                d.at(r, i, 3, b) = nd(rng);  // unit 3 (IT): trial noise, no image signal
            }
    ScoreConfig c;
    c.components = 5;
    Targets tg = targets_prepare(d, c);
    REQUIRE(tg.areas.size() == 2);
    const AreaUnits& v4 = tg.areas[0];
    CHECK(v4.area == "V4");
    CHECK(v4.units_total == 3);
    CHECK(v4.units == std::vector<int>{4});
    REQUIRE(v4.excluded.size() == 2);
    CHECK(v4.excluded[0].unit == 0);
    CHECK(has(v4.excluded[0].reason, "all trials are NaN"));
    CHECK(v4.excluded[1].unit == 2);
    CHECK(has(v4.excluded[1].reason, "zero variance"));
    const AreaUnits& it = tg.areas[1];
    CHECK(it.units == std::vector<int>{1, 5});
    REQUIRE(it.excluded.size() == 1);
    CHECK(has(it.excluded[0].reason, "split-half reliability"));

    LayerScore L = score_layer(tg, "x", s.X.data(), 1, 10, {Mapping::PerBin});
    CHECK(std::isfinite(score_for(L, Mapping::PerBin, "V4").ev_mean));
    CHECK(std::isfinite(score_for(L, Mapping::PerBin, "IT").ev_mean));
    const Json js = scores_json(tg, {L}, {});
    const std::string json = json_dump(js);
    CHECK(js["areas"][0]["excluded"][0] == Json({{"unit", "u0"}, {"reason", "all trials are NaN"}}));
    // strictly valid JSON: no key twice in an object, no NaN/Infinity literals (Python's json
    // with hooks that refuse both); the PLS that ran is the one named
    {
        const std::string path = vt_test::temp_dir() + "/scores.json";
        std::ofstream(path) << json;
        vt_test::ShellRun r = vt_test::shell_run(
            "python3 -c 'import json, sys\n"
            "def pairs(kv):\n"
            "    keys = [k for k, _ in kv]\n"
            "    assert len(keys) == len(set(keys)), keys\n"
            "    return dict(kv)\n"
            "def bad(c): raise ValueError(c)\n"
            "j = json.load(open(sys.argv[1]), object_pairs_hook=pairs, parse_constant=bad)\n"
            "print(j[\"format\"], j[\"settings\"][\"pls\"], j[\"settings\"][\"pls_fit\"])' " +
            vt_test::shell_quote(path) + " 2>&1");
        INFO(r.out);
        CHECK(r.rc == 0);
        CHECK(has(r.out, c.pls == PlsAlgorithm::Nipals ? "nipals NIPALS" : "simpls SIMPLS"));
    }
    CHECK(has(scores_table(tg, {L}), "V4: 2 of 3 units excluded"));

    // An area whose units are all excluded scores null, without failing.
    ScoreConfig only_v4 = c;
    for (int64_t r = 0; r < d.R; r++)
        for (int64_t i = 0; i < d.N; i++)
            for (int64_t b = 0; b < d.B; b++) d.at(r, i, 4, b) = 1.f;
    only_v4.areas = {"V4"};
    Targets t2 = targets_prepare(d, only_v4);
    CHECK(t2.areas[0].units.empty());
    LayerScore L2 = score_layer(t2, "x", s.X.data(), 1, 10, {Mapping::Shared, Mapping::PerBin});
    CHECK(std::isnan(L2.scores[0].ev_mean));
    const Json j2 = scores_json(t2, {L2}, {});
    CHECK(j2["layers"][0]["scores"][0]["ev"] == Json({{"mean", nullptr}, {"sem", nullptr}}));
}

TEST_CASE("scoring: bad settings fail with a clear message") {
    Synth s = synth(10, 2, 1, 3, 4, 0.5f, 5);
    ScoreConfig c;
    c.areas = {"V4", "V1"};
    CHECK(has(error_of([&] { targets_prepare(s.d, c); }), "unknown area 'V1' (the data 'synthetic' has: V4, IT)"));
    c.areas = {"IT", "IT"};
    CHECK(has(error_of([&] { targets_prepare(s.d, c); }), "area 'IT' given twice"));
    c.areas = {};
    c.folds = 12;
    CHECK(has(error_of([&] { targets_prepare(s.d, c); }), "10 images, fewer than the 12 folds"));
    c.folds = 4;
    c.components = 0;
    CHECK(has(error_of([&] { targets_prepare(s.d, c); }), "at least 1 PLS component"));
    c.components = 3;
    // R = 3 but every image has one trial only: no ceiling possible.
    NeuralData one = s.d;
    for (int64_t r = 1; r < one.R; r++)
        for (int64_t k = 0; k < one.N * one.U * one.B; k++) one.responses[r * one.N * one.U * one.B + k] = NAN;
    CHECK(has(error_of([&] { targets_prepare(one, c); }), "no image has two non-NaN trials"));
    Targets tg = targets_prepare(s.d, c);
    std::vector<float> F(10 * 3 * 4);
    CHECK(has(error_of([&] { score_layer(tg, "conv9", F.data(), 3, 4, {Mapping::Shared}); }),
              "features 'conv9' have T = 3 time steps but the data has B = 1 bins"));
    CHECK(has(error_of([] { mappings_parse("sometimes"); }), "expected shared, per-bin or both"));
}

TEST_CASE("scoring: a linear ground truth scores near the ceiling, held out") {
    // 240 images, responses linear in 12 features plus trial noise: the per-bin PLS recovers
    // the map, so the noise-corrected EV is near 1; random features score near 0.
    Synth s = synth(240, 4, 2, 6, 12, 0.8f, 9);
    ScoreConfig c;
    c.components = 12;
    Targets tg = targets_prepare(s.d, c);
    REQUIRE(tg.has_ceiling());
    LayerScore L = score_layer(tg, "truth", s.X.data(), 1, 12, {Mapping::PerBin, Mapping::Shared});
    for (const char* area : {"V4", "IT"}) {
        const AreaScore& a = score_for(L, Mapping::PerBin, area);
        CAPTURE(area);
        CHECK(a.ev_mean > 0.85f);
        CHECK(a.ev_mean < 1.15f);
        CHECK(a.ev_sem < 0.1f);
        CHECK(a.bins_scored == 2);
        CHECK(a.ceiling.size() == 2);
        // The shared map predicts the bin average for both bins: worse, as the bins differ.
        CHECK(score_for(L, Mapping::Shared, area).ev_mean < a.ev_mean);
    }
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> noise(240 * 12);
    for (float& x : noise) x = nd(rng);
    LayerScore N0 = score_layer(tg, "noise", noise.data(), 1, 12, {Mapping::PerBin});
    CHECK(score_for(N0, Mapping::PerBin, "V4").ev_mean < 0.15f);
}

TEST_CASE("scoring: the shared map fits (image, bin) rows in place, equals the T = 1 fit, and restores F") {
    // Features identical in every bin: stacking them over bins is the same regression as one
    // PLS onto the bin-averaged response (scoring.h), and the per-bin fits equal T = 1 too.
    Synth s = synth(80, 4, 3, 4, 8, 0.5f, 4);
    ScoreConfig c;
    c.components = 6;
    Targets tg = targets_prepare(s.d, c);
    const int64_t N = 80, B = 3, D = 8;
    std::vector<float> F3(N * B * D);
    for (int64_t i = 0; i < N; i++)
        for (int64_t b = 0; b < B; b++) std::memcpy(&F3[(i * B + b) * D], &s.X[i * D], D * sizeof(float));
    const std::vector<float> F3_before = F3, X_before = s.X;
    LayerScore L3 = score_layer(tg, "f3", F3.data(), B, D, {Mapping::Shared, Mapping::PerBin});
    LayerScore L1 = score_layer(tg, "f1", s.X.data(), 1, D, {Mapping::Shared, Mapping::PerBin});
    CHECK(F3 == F3_before);
    CHECK(s.X == X_before);
    REQUIRE(L3.scores.size() == L1.scores.size());
    for (size_t k = 0; k < L3.scores.size(); k++)
        for (size_t j = 0; j < L3.scores[k].ev.size(); j++)
            CHECK(L3.scores[k].ev[j] == doctest::Approx(L1.scores[k].ev[j]).epsilon(1e-3));

    // With bin-specific features, the shared map on (N, T, D) sees each bin's rows.
    Synth t = synth(80, 4, 3, 4, 8, 0.5f, 4);  // same targets
    for (int64_t i = 0; i < N; i++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < D; j++) F3[(i * B + b) * D + j] = s.X[i * D + j] * (1.f + 0.5f * b);
    LayerScore Lb = score_layer(tg, "scaled", F3.data(), B, D, {Mapping::Shared});
    CHECK(std::isfinite(Lb.scores[0].ev_mean));
}

TEST_CASE("scoring: features constant over the images in a bin explain nothing there (EV 0, not left out)") {
    // Bin 1's features are the same for every image (a layer the stimulus has not reached):
    // its prediction is constant, so the bin scores 0 (as fit_dynamics scores it), instead of
    // dropping out of the mean over bins and flattering the model.
    Synth s = synth(120, 4, 2, 6, 6, 0.5f, 12);
    ScoreConfig c;
    c.components = 6;
    Targets tg = targets_prepare(s.d, c);
    const int64_t N = 120, B = 2, D = 6;
    std::vector<float> F(N * B * D, 0.25f);
    for (int64_t i = 0; i < N; i++) std::memcpy(&F[(i * B + 0) * D], &s.X[i * D], D * sizeof(float));
    LayerScore L = score_layer(tg, "half_silent", F.data(), B, D, {Mapping::PerBin});
    for (const char* area : {"V4", "IT"}) {
        const AreaScore& a = score_for(L, Mapping::PerBin, area);
        CAPTURE(area);
        CHECK(a.ev_bin_mean[0] > 0.5f);
        CHECK(a.ev_bin_mean[1] == 0.f);
        CHECK(a.bins_scored == 2);
        CHECK(a.ev_mean == doctest::Approx(a.ev_bin_mean[0] / 2).epsilon(1e-4));
    }
}

TEST_CASE("scoring: without a ceiling (R = 1) EV is raw r^2 and every output says so") {
    Synth s = synth(100, 2, 1, 1, 6, 0.f, 6);
    ScoreConfig c;
    c.components = 6;
    Targets tg = targets_prepare(s.d, c);
    CHECK(!tg.has_ceiling());
    LayerScore L = score_layer(tg, "truth", s.X.data(), 1, 6, {Mapping::PerBin});
    CHECK(L.scores[0].ev_mean == doctest::Approx(1.0).epsilon(1e-3));  // noiseless and linear: r = 1
    std::string json = json_dump(scores_json(tg, {L}, {}));
    CHECK(has(json, "no ceiling (R = 1): ev is raw r^2"));
    CHECK(has(json, "\"noise_corrected\": false"));
    CHECK(has(json, "\"ceiling\": null"));
    CHECK(scores_table(tg, {L}).rfind("no ceiling (R = 1)", 0) == 0);
}

TEST_CASE("scoring: a features file is checked against the data before anything is read") {
    std::string dir = vt_test::temp_dir(), path = dir + "/f.npz";
    std::vector<float> v(20 * 3 * 4, 0.5f);
    std::vector<int32_t> iv(20 * 4, 1);
    auto write = [&](const std::string& name, NpyArray a) {
        Npz z;
        z.set("meta.model", NpyArray::from_strings({"mine"}));
        z.set(name, std::move(a));
        npz_write(path, z);
    };
    write("conv3", NpyArray::from_f32({20, 3, 4}, v.data()));
    std::vector<FeatureArray> fa = features_inspect(path, 20, 3);
    REQUIRE(fa.size() == 1);
    CHECK(fa[0].name == "conv3");
    CHECK(fa[0].T == 3);
    CHECK(fa[0].D == 4);
    CHECK(has(error_of([&] { features_inspect(path, 21, 3); }), "array 'conv3' has N = 20 images, the data has 21"));
    CHECK(has(error_of([&] { features_inspect(path, 20, 5); }), "has T = 3 time steps, the data has B = 5 bins"));
    CHECK(has(error_of([&] { features_inspect(path, 20, 3, {"conv4"}); }), "no array 'conv4'"));
    write("conv3", NpyArray::from_i32({20, 4}, iv.data()));
    CHECK(has(error_of([&] { features_inspect(path, 20, 3); }), "is int32, expected float32"));
    write("conv3", NpyArray::from_f32({20, 1, 3, 4}, v.data()));
    CHECK(has(error_of([&] { features_inspect(path, 20, 3); }), "has 4 dimensions"));
    Npz only_meta;
    only_meta.set("meta.model", NpyArray::from_strings({"mine"}));
    npz_write(path, only_meta);
    CHECK(has(error_of([&] { features_inspect(path, 20, 3); }), "holds no feature arrays"));
    std::remove(path.c_str());
    std::remove(dir.c_str());
}

TEST_CASE("scoring: ./bin/score end to end, and its errors") {
    std::string bin = std::string(VT_ROOT) + "/bin/score";
    if (!std::ifstream(bin).good()) { MESSAGE("bin/score not built: skipped"); return; }
    std::string dir = vt_test::temp_dir();
    Synth s = synth(60, 4, 2, 4, 6, 0.5f, 8);
    neural_data_save(dir + "/d.npz", s.d);
    Npz f;
    f.set("good", NpyArray::from_f32({60, 6}, s.X.data()));
    npz_write(dir + "/f.npz", f);
    Npz short_f;
    short_f.set("good", NpyArray::from_f32({50, 6}, s.X.data()));
    npz_write(dir + "/short.npz", short_f);
    auto run = [&](const std::string& args, std::string& out) {
        std::string cmd = bin + " " + args + " 2>&1";
        FILE* p = popen(cmd.c_str(), "r");
        char buf[4096];
        size_t n;
        out.clear();
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        int st = pclose(p);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    };
    std::string out;
    std::string base = "--features " + dir + "/f.npz --data " + dir + "/d.npz --out " + dir + "/res --components 5";
    CHECK(run(base, out) == 0);
    CHECK(has(out, "good"));
    std::ifstream js(dir + "/res/results.json");
    std::string json((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());
    CHECK(has(json, "\"mapping\": \"shared\""));
    CHECK(has(json, "\"mapping\": \"per_bin\""));
    CHECK(has(json, "\"bin_start_ms\": 90"));
    CHECK(run(base + " --areas V4,V2", out) == 1);
    CHECK(has(out, "unknown area 'V2'"));
    CHECK(run("--features " + dir + "/short.npz --data " + dir + "/d.npz --out " + dir + "/res", out) == 1);
    CHECK(has(out, "has N = 50 images, the data has 60"));
    CHECK(run(base + " --splits 61", out) == 1);
    CHECK(has(out, "fewer than the 61 folds"));
    for (const char* p : {"/res/results.json", "/d.npz", "/f.npz", "/short.npz"}) std::remove((dir + p).c_str());
    std::remove((dir + "/res").c_str());
    std::remove(dir.c_str());
}
