// test_dynamics.cpp: the dynamics fit (models/fit/dynamics.h, ./bin/fit_dynamics): time-to-step
// mapping, the residual (pass-through) start, the readout flags, model recovery on a small
// virtual primate, and bad input.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/ops.h"
#include "models/fit/dynamics.h"
#include "models/fit/predictions.h"
#include "models/fit/fit_flags.h"
#include "models/fit/results.h"
#include "models/datasets/virtual_primate.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

// The small virtual primate of the recovery test: the tiny3 teacher with lstm cells and
// feedback conv3:conv1; V4 reads conv2, IT conv3.
VirtualPrimateConfig recovery_config() {
    VirtualPrimateConfig c = vt_test::tiny_primate("tiny3");
    c.images = 128;
    c.v4_units = 24;
    c.it_units = 24;
    c.t_max_ms = 200;
    return c;
}

struct Dataset {
    std::string path;
    NeuralData d;
    std::vector<float> teacher;
};

const Dataset& recovery_data() {
    static const Dataset ds = [] {
        Dataset x;
        x.path = vt_test::temp_dir() + "/vp_recovery.npz";
        Npz z = virtual_primate_generate(recovery_config());
        npz_write(x.path, z);
        x.d = neural_data_load(x.path, true);
        x.teacher = z.get("teacher_responses").to_f32();
        return x;
    }();
    return ds;
}

// A randomly initialised tiny3 backbone checkpoint (seed 2: not the teacher's seed-1 network).
const std::string& tiny3_backbone() {
    static const std::string path = [] {
        std::string p = vt_test::temp_dir() + "/tiny3_backbone.npz";
        vt_test::save_random_backbone(p, "tiny3");
        return p;
    }();
    return path;
}

FitConfig small_fit(const std::string& motif, const std::string& feedback) {
    FitConfig c;
    c.backbone = tiny3_backbone();
    c.motif = motif;
    c.feedback = feedback;
    c.readout = "V4=conv2,IT=conv3";
    c.batch = 8;
    c.iters = 150;
    c.val_every = 25;
    c.patience = 3;
    c.heldout_fit_images = 0;
    // the feedforward unroll at onset 0 (--cells residual --cell-scale-init 0 --onset-ms 0; the
    // gpu preset's start until it was measured worse on 1024 images): on these 128 images it
    // does better than plain cells, and the student learns its own dynamics and delays over
    // 150 iterations (readout re-solved at every validation)
    c.onset_ms = 0;
    c.residual = true;
    c.memory_init = false;
    c.cell_scale_init = 0;
    return c;
}

const AreaFit& area(const FitResult& r, const std::string& a) {
    for (const AreaFit& x : r.areas)
        if (x.area == a) return x;
    FAIL("no area " << a);
    return r.areas[0];
}

// A dataset with only the units of `keep`, written beside the recovery data.
std::string subset_areas(const Dataset& ds, const std::string& keep) {
    NeuralData d = ds.d;
    std::vector<int> units;
    for (int64_t u = 0; u < d.U; u++)
        if (d.unit_area[u] == keep) units.push_back((int)u);
    NeuralData o = d;
    o.U = (int64_t)units.size();
    o.unit_area.clear(), o.unit_id.clear();
    o.responses.assign((size_t)(o.R * o.N * o.U * o.B), 0.f);
    for (int64_t r = 0; r < d.R; r++)
        for (int64_t i = 0; i < d.N; i++)
            for (size_t k = 0; k < units.size(); k++)
                for (int64_t b = 0; b < d.B; b++) o.at(r, i, (int64_t)k, b) = d.at(r, i, units[k], b);
    for (int u : units) o.unit_area.push_back(d.unit_area[u]), o.unit_id.push_back(d.unit_id[u]);
    std::string p = vt_test::temp_dir() + "/only_" + keep + ".npz";
    neural_data_save(p, o);
    return p;
}

// The recovery pair: the teacher's structure and the feedforward student on recovery_data().
const std::pair<FitResult, FitResult>& recovery_fits() {
    static const std::pair<FitResult, FitResult> r = [] {
        const Dataset& ds = recovery_data();
        return std::make_pair(fit_dynamics(ds.d, small_fit("lstm", "conv3:conv1"), ds.teacher),
                              fit_dynamics(ds.d, small_fit("none", "none"), ds.teacher));
    }();
    return r;
}

// fit_dynamics' flags parsed as the tool does (the cpu preset), into v.
void parse_fit_flags(FitFlags& v, std::vector<const char*> args) {
    std::vector<char*> argv = {(char*)"fit_dynamics"};
    for (const char* a : args) argv.push_back((char*)a);
    Cli cli = fit_cli(v, "cpu");
    cli.parse((int)argv.size(), argv.data());
    fit_flags_finish(cli, v);
}

// The value fit_flag_values records for `flag`, "(absent)" if none.
std::string flag_value(const FlagValues& fv, const std::string& flag) {
    for (const auto& kv : fv)
        if (kv.first == flag) return kv.second;
    return "(absent)";
}

}  // namespace

TEST_CASE("dynamics: bins take the steps whose time falls in them") {
    std::vector<float> s = {0, 20, 40}, e = {20, 40, 60};
    auto st = bin_steps(s, e, 10, 0, 6);
    CHECK(st[0] == std::vector<int>{0, 1});
    CHECK(st[1] == std::vector<int>{2, 3});
    CHECK(st[2] == std::vector<int>{4, 5});
    CHECK(steps_needed(s, e, 10, 0) == 6);
    // an onset offset shifts the steps: step t at 5 + 10 t ms
    st = bin_steps(s, e, 10, 5, 6);
    CHECK(st[0] == std::vector<int>{0, 1});
    CHECK(st[2] == std::vector<int>{4, 5});
    CHECK(steps_needed(s, e, 10, 5) == 6);
    CHECK(steps_needed(s, e, 10, 25) == 4);  // steps at 25, 35, 45, 55
    // a short unroll leaves the late bins empty; bins narrower than a step may get none
    st = bin_steps(s, e, 10, 0, 3);
    CHECK(st[1] == std::vector<int>{2});
    CHECK(st[2].empty());
    st = bin_steps({0, 5, 10}, {5, 10, 15}, 10, 0, 2);
    CHECK(st[0] == std::vector<int>{0});
    CHECK(st[1].empty());
    CHECK(st[2] == std::vector<int>{1});
    // the virtual primate's 20 ms bins to 300 ms need 30 steps of 10 ms
    std::vector<float> a, b;
    for (int k = 0; k < 15; k++) a.push_back(20.f * k), b.push_back(20.f * k + 20);
    CHECK(steps_needed(a, b, 10, 0) == 30);
    // bins before step 0 are never reached; they do not change T
    CHECK(steps_needed({-40, 0}, {-20, 20}, 10, 0) == 2);
}

TEST_CASE("dynamics: --readout pairs and their errors") {
    auto r = readout_parse("V4=conv3,IT=conv5");
    REQUIRE(r.size() == 2);
    CHECK(r[0].first == "V4");
    CHECK(r[1].second == "conv5");
    CHECK(has(error_of([] { readout_parse("V4conv3"); }), "AREA=LAYER"));
    CHECK(has(error_of([] { readout_parse("V4=conv3,V4=conv4"); }), "given twice"));
    CHECK(has(error_of([] { readout_parse("=conv3"); }), "AREA=LAYER"));
}

TEST_CASE("dynamics: Adam's steps: a cell weight lr / sqrt(fan-in), a feedback conv lr x --feedback-lr / fan-in") {
    FitConfig c;
    CHECK(c.feedback_lr == 1.f);
    CHECK(param_lr_scale("conv2.cell.weight", {24, 12, 3, 3}, c) == doctest::Approx(1 / std::sqrt(108.)));
    CHECK(param_lr_scale("conv2.cell.bias", {24}, c) == doctest::Approx(1.));
    CHECK(param_lr_scale("conv2.fb.conv5.weight", {6, 8, 3, 3}, c) == doctest::Approx(1 / 72.));
    c.feedback_lr = 30;  // the feedback alone
    CHECK(param_lr_scale("conv2.fb.conv5.weight", {6, 8, 3, 3}, c) == doctest::Approx(30 / 72.));
    CHECK(param_lr_scale("conv2.cell.weight", {24, 12, 3, 3}, c) == doctest::Approx(1 / std::sqrt(108.)));
    // the flag reaches the config, counts for the sweep's reuse, and is range-checked
    auto parse = [](FitFlags& v, const char* value) { parse_fit_flags(v, {"--feedback-lr", value}); };
    FitFlags v;
    parse(v, "30");
    CHECK(v.c.feedback_lr == 30.f);
    auto value = [](const FlagValues& fv) { return flag_value(fv, "--feedback-lr"); };
    CHECK(value(fit_flag_values({})) == "1");
    CHECK(value(fit_flag_values({"--feedback-lr", "30"})) == "30");
    for (const char* bad : {"0", "-1", "x"}) {
        FitFlags w;
        CHECK(has(error_of([&] { parse(w, bad); }), "--feedback-lr"));
    }
}

TEST_CASE("dynamics: --clip-grad: a clip below the gradient's norm changes the fit, one far above it does not") {
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.iters = 4, c.val_every = 4, c.score.folds = 2;
    REQUIRE(c.clip_grad == 0.f);  // the default: never
    const FitResult plain = fit_dynamics(ds.d, c);
    c.clip_grad = 1e5f;
    const FitResult above = fit_dynamics(ds.d, c);
    c.clip_grad = 1e-6f;  // every gradient scaled to 1e-6: per weight far below Adam's eps, so the steps shrink
    const FitResult below = fit_dynamics(ds.d, c);
    const std::vector<float>&p = plain.splits[0].train_loss, &a = above.splits[0].train_loss, &b = below.splits[0].train_loss;
    REQUIRE(p.size() == 4);
    REQUIRE(a.size() == 4);
    REQUIRE(b.size() == 4);
    CHECK(a == p);           // never clipped: the same steps
    CHECK(b[0] == p[0]);     // the first loss comes before any step
    CHECK(b.back() != p.back());
    // the flag reaches the config and results.json; bad values name it
    FitFlags v;
    parse_fit_flags(v, {"--clip-grad", "2.5"});
    CHECK(v.c.clip_grad == 2.5f);
    CHECK(fit_results_json(c, below, FitRun{})["settings"]["clip_grad"].get<double>() == doctest::Approx(1e-6));
    for (const char* bad : {"-1", "x", "nan"}) {
        FitFlags w;
        CHECK(has(error_of([&] { parse_fit_flags(w, {"--clip-grad", bad}); }), "--clip-grad"));
    }
}

TEST_CASE("dynamics: --truncate-bptt cuts the fit's gradients; --truncate-until switches to full BPTT after it") {
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.iters = 5, c.val_every = 5, c.score.folds = 2;
    c.residual = false, c.memory_init = true;  // plain cells with memory: their state matters from the start
    REQUIRE(c.truncate_bptt == 0);  // the default: full BPTT
    const FitResult full = fit_dynamics(ds.d, c);
    c.truncate_bptt = 1000;  // longer than the unroll: nothing cut
    const FitResult none_cut = fit_dynamics(ds.d, c);
    c.truncate_bptt = 2;
    const FitResult cut = fit_dynamics(ds.d, c);
    c.truncate_until = 2;  // truncated for iterations 1-2, then full
    const FitResult then_full = fit_dynamics(ds.d, c);
    const std::vector<float>&f = full.splits[0].train_loss, &n = none_cut.splits[0].train_loss,
                           &t = cut.splits[0].train_loss, &tf = then_full.splits[0].train_loss;
    REQUIRE(f.size() == 5);
    REQUIRE(t.size() == 5);
    REQUIRE(tf.size() == 5);
    CHECK(n == f);
    CHECK(t[0] == f[0]);  // the first loss comes before any step
    CHECK(t[1] != f[1]);
    for (int i = 0; i < 3; i++) CHECK(tf[i] == t[i]);  // the losses before the first full step
    CHECK(tf[3] != t[3]);
    // the flags reach the config and results.json; bad values name them
    FitFlags v;
    parse_fit_flags(v, {"--truncate-bptt", "4", "--truncate-until", "100"});
    CHECK(v.c.truncate_bptt == 4);
    CHECK(v.c.truncate_until == 100);
    const Json j = fit_results_json(c, then_full, FitRun{});
    CHECK(j["settings"]["truncate_bptt"].get<int>() == 2);
    CHECK(j["settings"]["truncate_until"].get<int>() == 2);
    for (const char* bad : {"-1", "x", "2.5"}) {
        FitFlags w;
        CHECK(has(error_of([&] { parse_fit_flags(w, {"--truncate-bptt", bad}); }), "--truncate-bptt"));
    }
    FitFlags w;
    CHECK(has(error_of([&] { parse_fit_flags(w, {"--truncate-until", "10"}); }), "needs --truncate-bptt"));
}

TEST_CASE("dynamics: --patience stops after that many validations without a better one; 0 never stops early") {
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.iters = 12, c.val_every = 1, c.score.folds = 2, c.lr = 0.3f;  // a large step: some validations get worse
    c.patience = 0;
    const FitResult never = fit_dynamics(ds.d, c);
    c.patience = 1;
    const FitResult one = fit_dynamics(ds.d, c);
    for (int s = 0; s < 2; s++) {
        CAPTURE(s);
        const SplitLog &n = never.splits[s], &o = one.splits[s];
        CHECK(n.iters_done == 12);
        REQUIRE(n.val_iter.size() == 12);
        // the first validation not better than the best before it (the score decides, higher is better)
        float best = n.init_val_score;
        int first_worse = 0;
        for (size_t k = 0; k < n.val_score.size() && !first_worse; k++) {
            if (n.val_score[k] > best) best = n.val_score[k];
            else first_worse = n.val_iter[k];
        }
        REQUIRE(first_worse > 0);         // else this test shows nothing: patience 1 would not stop either
        CHECK(o.iters_done == first_worse);  // patience 1 stops right there; patience 0 went on
        CHECK(n.best_iter >= o.best_iter);  // the same steps up to there: what was best then is kept or beaten
    }
}

TEST_CASE("dynamics: held-out units are read out from every training image unless --heldout-fit-images caps them") {
    REQUIRE(FitConfig{}.heldout_fit_images == 0);  // all: as the time-varied baseline's held-out units
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.iters = 0, c.score.folds = 2;
    std::vector<std::string> lines;
    const FitResult all = fit_dynamics(ds.d, c, {}, [&](const std::string& l) { lines.push_back(l); });
    // each split's line gives both scores, as they are scored: the mean over bins of the split's EV
    auto split_mean = [&](const AreaScore& a, int s) {
        double sum = 0;
        int n = 0;
        for (int64_t b = 0; b < ds.d.B; b++)
            if (std::isfinite(a.ev[s * ds.d.B + b])) sum += a.ev[s * ds.d.B + b], n++;
        return sum / n;
    };
    for (int s = 0; s < 2; s++) {
        const std::string want = strfmt("split %d/2: 0 iterations (best 0), ", s + 1);
        auto line = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return has(l, want); });
        REQUIRE(line != lines.end());
        const AreaFit &v4 = area(all, "V4"), &it = area(all, "IT");
        CHECK(has(*line, strfmt("V4 EV %.3f (held-out units %.3f) IT EV %.3f (held-out units %.3f)", split_mean(v4.fit, s),
                                split_mean(v4.heldout, s), split_mean(it.fit, s), split_mean(it.heldout, s))));
    }
    c.heldout_fit_images = 8;  // 8 images x 13 bins for a readout of conv2's features
    const FitResult few = fit_dynamics(ds.d, c);
    for (const char* a : {"V4", "IT"}) {
        const AreaFit &x = area(all, a), &y = area(few, a);
        MESSAGE(std::string(a) << ": held-out units from all training images " << x.heldout.ev_mean << ", from 8 "
                               << y.heldout.ev_mean);
        CHECK(x.fit.ev_mean == y.fit.ev_mean);                // the fit units do not depend on it
        CHECK(x.heldout.ev_mean > y.heldout.ev_mean + 0.01);  // more images, a better readout (0.13 / 0.07, 0.026 / 0.005)
    }
    FitFlags v;
    parse_fit_flags(v, {"--heldout-fit-images", "64"});
    CHECK(v.c.heldout_fit_images == 64);
    FitFlags w;
    CHECK(has(error_of([&] { parse_fit_flags(w, {"--heldout-fit-images", "-1"}); }), "--heldout-fit-images"));
}

// Each split's onset, its unroll length and its checkpoint's meta.onset_ms, as fit_dynamics
// records them; every onset one of the candidates 0, 10, ... 60 ms.
void check_split_onsets(const FitResult& R, const FitConfig& c, const NeuralData& d) {
    REQUIRE(R.splits.size() == (size_t)c.score.folds);
    const Json j = fit_results_json(c, R, FitRun{});
    CHECK(R.onset_ms == R.splits[0].onset_ms);
    for (size_t s = 0; s < R.splits.size(); s++) {
        CAPTURE(s);
        const float o = R.splits[s].onset_ms;
        CHECK(o >= 0.f);
        CHECK(o <= 60.f);
        CHECK(std::fmod(o, 10.f) == 0.f);
        CHECK(R.splits[s].steps == steps_needed(d.bin_start_ms, d.bin_end_ms, c.ms_per_step, o));
        CHECK(j["splits"][s]["onset_ms"].get<double>() == (double)o);
        CHECK(j["splits"][s]["steps"].get<int>() == R.splits[s].steps);
        const Npz z = npz_read(c.checkpoint_dir + strfmt("/split%zu.npz", s));
        CHECK(meta_floats(z, "meta.onset_ms") == std::vector<float>{o});
    }
}

TEST_CASE("dynamics: --onset-ms auto chooses each split's onset on that split's training images, never its test images") {
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("none", "none");
    c.onset_ms = NAN;
    c.iters = 0;
    for (int k : {2, 4}) {
        c.score.folds = k;
        const Targets tg = targets_prepare(ds.d, c.score);
        for (int s = 0; s < k; s++) {
            CAPTURE(k);
            CAPTURE(s);
            std::vector<int64_t> imgs = onset_images(tg, c, s), pool;
            for (int64_t i = 0; i < tg.N; i++)
                if (tg.folds.fold[i] != s) pool.push_back(i);
            std::sort(imgs.begin(), imgs.end());
            CHECK(imgs == pool);  // under 256 training images: all of them, and no test image
        }
    }
    SUBCASE("few images: each split's onset and start from one pass over every image") {
        c.score.folds = 4;
        c.checkpoint_dir = vt_test::temp_dir() + "/onset_ck4";
        std::filesystem::create_directories(c.checkpoint_dir);
        const FitResult R = fit_dynamics(ds.d, c, ds.teacher);
        check_split_onsets(R, c, ds.d);
        for (const AreaFit& a : R.areas) CHECK(a.fit.ev_mean > 0);
    }
    SUBCASE("with --steps, only the onsets whose bins those steps reach are candidates") {
        c.score.folds = 2;
        const int full = steps_needed(ds.d.bin_start_ms, ds.d.bin_end_ms, c.ms_per_step, 0.f);
        c.steps = full - 3;  // onsets 0-20 ms need more steps than these
        const float least = 30.f;
        REQUIRE(steps_needed(ds.d.bin_start_ms, ds.d.bin_end_ms, c.ms_per_step, 20.f) > c.steps);
        REQUIRE(steps_needed(ds.d.bin_start_ms, ds.d.bin_end_ms, c.ms_per_step, least) <= c.steps);
        std::vector<std::string> lines;
        const FitResult R = fit_dynamics(ds.d, c, {}, [&](const std::string& l) { lines.push_back(l); });
        for (const SplitLog& L : R.splits) {
            CHECK(L.onset_ms >= least);
            CHECK(L.steps == c.steps);
        }
        CHECK(std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
            return has(l, strfmt("0: (needs more than --steps %d)", c.steps));
        }));
    }
    SUBCASE("over 512 images: each split's own features for the onset; at most 256 of its training images") {
        VirtualPrimateConfig vc = recovery_config();
        vc.images = 600;
        const std::string path = vt_test::temp_dir() + "/vp_600.npz";
        npz_write(path, virtual_primate_generate(vc));
        const NeuralData d = neural_data_load(path, true);
        c.score.folds = 2;
        const Targets tg = targets_prepare(d, c.score);
        for (int s = 0; s < 2; s++) {
            const std::vector<int64_t> imgs = onset_images(tg, c, s);
            CHECK(imgs.size() == 256);
            CHECK(std::none_of(imgs.begin(), imgs.end(), [&](int64_t i) { return tg.folds.fold[i] == s; }));
        }
        c.checkpoint_dir = vt_test::temp_dir() + "/onset_ck600";
        std::filesystem::create_directories(c.checkpoint_dir);
        const FitResult R = fit_dynamics(d, c);
        check_split_onsets(R, c, d);
        for (const AreaFit& a : R.areas) CHECK(a.fit.ev_mean > 0);
    }
}

TEST_CASE("dynamics: the validation loss counts each validation image once, however the batches fall") {
    // 2 splits of the 128 images: 64 training images each, 6 of them for validation. One batch
    // of 6 holds them exactly; a batch of 9 repeats the last one 3 times to fill the graph,
    // which must not count; batches of 4 (4 + a short 2) weight each batch by its images.
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.iters = 0;
    c.score.folds = 2;
    auto val_loss = [&](int batch) {
        FitConfig f = c;
        f.batch = batch;
        const FitResult R = fit_dynamics(ds.d, f);
        std::vector<float> v;
        for (const SplitLog& L : R.splits) v.push_back(L.init_val_loss);
        return v;
    };
    const std::vector<float> exact = val_loss(6), padded = val_loss(9), two = val_loss(3), short_last = val_loss(4);
    REQUIRE(exact.size() == 2);
    for (size_t s = 0; s < 2; s++) {
        CAPTURE(s);
        CHECK(std::isfinite(exact[s]));
        CHECK(padded[s] == doctest::Approx(exact[s]).epsilon(1e-5));  // one short batch: the same images
        CHECK(two[s] != doctest::Approx(exact[s]).epsilon(1e-3));  // two batches of 3 centre each on its own
        // 4 + 2: each batch centred on its own images, weighted 4 : 2
        CHECK(std::isfinite(short_last[s]));
        CHECK(short_last[s] != doctest::Approx(exact[s]).epsilon(1e-3));
    }
}

TEST_CASE("dynamics: the lr schedule: linear warm-up, then constant or a half cosine to 0 at --iters") {
    FitConfig c;
    c.iters = 100;
    CHECK(c.lr_schedule == "constant");
    CHECK(c.warmup == 0);
    for (int it : {1, 50, 100}) CHECK(lr_factor(c, it) == 1.f);
    c.warmup = 10;
    CHECK(lr_factor(c, 1) == doctest::Approx(0.1));
    CHECK(lr_factor(c, 5) == doctest::Approx(0.5));
    CHECK(lr_factor(c, 10) == doctest::Approx(1.));
    CHECK(lr_factor(c, 11) == 1.f);
    c.lr_schedule = "cosine";
    CHECK(lr_factor(c, 5) == doctest::Approx(0.5));  // the warm-up is the same
    CHECK(lr_factor(c, 11) == doctest::Approx(1.));   // the first step after it: the full lr
    CHECK(lr_factor(c, 56) == doctest::Approx(0.5));  // half way through the 90 after it
    CHECK(lr_factor(c, 100) == doctest::Approx(0.5 * (1 + std::cos(M_PI * 89 / 90.))));
    CHECK(lr_factor(c, 100) > 0.f);
    for (int it = 11; it < 100; it++) CHECK(lr_factor(c, it + 1) < lr_factor(c, it));
    c.warmup = 0;
    CHECK(lr_factor(c, 1) == doctest::Approx(1.));
    CHECK(lr_factor(c, 51) == doctest::Approx(0.5));
    // the flags reach the config, count for the sweep's reuse, and bad values are refused by name
    FitFlags v;
    parse_fit_flags(v, {"--lr-schedule", "cosine", "--warmup", "8"});
    CHECK(v.c.lr_schedule == "cosine");
    CHECK(v.c.warmup == 8);
    CHECK(flag_value(fit_flag_values({}), "--lr-schedule") == "cosine");  // the cpu preset's
    CHECK(flag_value(fit_flag_values({"--lr-schedule", "constant"}), "--lr-schedule") == "constant");
    CHECK(flag_value(fit_flag_values({"--warmup", "3"}), "--warmup") == "3");
    // not given, the preset's warm-up is at most a tenth of --iters; given, it must leave iterations
    FitFlags p8, p2, p0;
    parse_fit_flags(p8, {});
    CHECK(p8.c.warmup == 8);  // the cpu preset's, of 96
    parse_fit_flags(p2, {"--iters", "25"});
    CHECK(p2.c.warmup == 2);
    parse_fit_flags(p0, {"--iters", "0"});
    CHECK(p0.c.warmup == 0);
    // the ungated cells step at a third of the preset's lr unless --lr is given; the sweep's
    // record of the flags says the lr each fit ran with
    for (const char* m : {"lstm", "gru", "ugrnn", "rgc", "none", "timedecay", "rnn", "rnn-large"}) {
        CAPTURE(m);
        const bool ungated = std::string(m) == "rnn" || std::string(m) == "rnn-large";
        FitFlags f, given;
        parse_fit_flags(f, {"--motif", m});
        CHECK(f.c.lr == doctest::Approx(ungated ? 0.01 : 0.03));
        CHECK(flag_value(fit_flag_values({"--motif", m}), "--lr") == (ungated ? "0.01" : "0.03"));
        parse_fit_flags(given, {"--motif", m, "--lr", "0.03"});
        CHECK(given.c.lr == doctest::Approx(0.03));
        CHECK(flag_value(fit_flag_values({"--motif", m, "--lr=0.03"}), "--lr") == "0.03");
    }
    CHECK(flag_value(fit_flag_values({"--preset", "gpu", "--motif", "rnn"}), "--lr") == "0.0166667");
    FitFlags w;
    FitFlags gpu_only;
    CHECK(error_of([&] { parse_fit_flags(gpu_only, {"--precision", "bf16"}); }) ==
          "--precision bf16: the CPU computes in fp32 only; tf32 and bf16 are GPU precisions (--device cuda)");
    CHECK(has(error_of([&] { parse_fit_flags(w, {"--lr-schedule", "linear"}); }), "--lr-schedule"));
    CHECK(has(error_of([&] { parse_fit_flags(w, {"--warmup", "-1"}); }), "--warmup"));
    CHECK(has(error_of([&] { parse_fit_flags(w, {"--warmup", "96"}); }),
              "--warmup: 96 iterations of warm-up leave none of the 96"));
    CHECK(has(error_of([&] { parse_fit_flags(w, {"--warmup", "10", "--iters", "5"}); }), "--warmup"));
    SUBCASE("the optimiser steps with it") {
        const Dataset& ds = recovery_data();
        FitConfig f = small_fit("lstm", "conv3:conv1");
        f.iters = 6, f.val_every = 3, f.patience = 10, f.lr = 0.02f;
        f.lr_schedule = "cosine", f.warmup = 2;
        f.score.folds = 2;
        FitResult r = fit_dynamics(ds.d, f);
        for (const SplitLog& L : r.splits) {
            REQUIRE(L.lr.size() == 6);
            for (int it = 1; it <= 6; it++) CHECK(L.lr[it - 1] == doctest::Approx(0.02 * lr_factor(f, it)));
        }
        // results.json records the schedule and each split's lr curve
        const FlagValues flags = fit_flag_values({"--lr-schedule", "cosine", "--warmup", "2"});
        FitRun run{"cpu", recovery_data().path, true, flags, 1, 1};
        const Json j = fit_results_json(f, r, run);
        CHECK(j["settings"]["lr_schedule"].get<std::string>() == "cosine");
        CHECK(j["settings"]["warmup"].get<int>() == 2);
        CHECK(j["settings"]["precision"].get<std::string>() == "fp32");
        const Json& lr = j["splits"][0]["lr"];
        REQUIRE(lr.size() == 6);
        CHECK(lr[0].get<double>() == doctest::Approx(0.01));  // half way through the warm-up
        CHECK(lr[2].get<double>() == doctest::Approx(0.02));  // the first step after it
    }
}

TEST_CASE("dynamics: a fresh residual student is its feedforward unroll; training the scale changes it") {
    for (const char* motif : {"lstm", "gru", "rgc", "timedecay"}) {
        ModelConfig ff, rc;
        ff.arch = rc.arch = "tiny3";
        rc.motifs.assign(3, motif_parse(motif));
        rc.feedback = feedback_parse("conv3:conv1,conv2:conv1", backbone_spec("tiny3"));
        rc.residual = true;
        Model mf(ff, 3), mr(rc, 4);
        for (const auto& e : mf.params.entries) tensor_copy(mr.params[e.name], e.view);
        Rng rng(9);
        Tensor img = tensor_empty({2, 3, 8, 8});
        tensor_randn(img, rng);
        Unrolled uf, ur;
        UnrollConfig uc{9, 4, 2};
        unroll_build(uf, mf, uc, false, img);
        unroll_build(ur, mr, uc, false, img);
        double diff = 0, scale = 0;
        for (int t = 0; t < uc.steps; t++)
            for (int l = 0; l < 3; l++) {
                REQUIRE(uf.out[t][l].defined() == ur.out[t][l].defined());
                if (!uf.out[t][l].defined()) continue;
                std::vector<float> a = uf.out[t][l].to_vector(), b = ur.out[t][l].to_vector();
                for (size_t i = 0; i < a.size(); i++) diff = std::max(diff, (double)std::fabs(a[i] - b[i])), scale = std::max(scale, (double)std::fabs(a[i]));
            }
        // equal up to summation order (the zero feedback weights join the conv's sum)
        CHECK_MESSAGE(diff < 1e-5 * scale, std::string(motif));
        CHECK(scale > 0.1);
        tensor_fill(mr.params["conv2.cell.scale"], 0.5f);
        Unrolled u2;
        unroll_build(u2, mr, uc, false, img);
        std::vector<float> a = uf.out[6][1].to_vector(), b = u2.out[6][1].to_vector();
        double moved = 0;
        for (size_t i = 0; i < a.size(); i++) moved = std::max(moved, (double)std::fabs(a[i] - b[i]));
        CHECK_MESSAGE(moved > 1e-3, std::string(motif));
    }
}

TEST_CASE("dynamics: the memory start makes every cell channel a leaky integrator of a spread of timescales") {
    // cells.h cell_init_memory: the gate biases that set each channel's retention r, and the
    // effect: a fresh student keeps image-specific activity after the image has gone, which
    // the feedforward unroll (and the residual student at a = 0) does not.
    for (const char* motif : {"timedecay", "lstm", "gru", "ugrnn", "rnn", "rgc"}) {
        CAPTURE(std::string(motif));
        ModelConfig mc;
        mc.arch = "tiny3";
        mc.motifs.assign(3, motif_parse(motif));
        mc.residual = true;
        Model m(mc, 5);
        const int C = m.spec.layers[1].out_ch;
        CHECK(has(error_of([&] { cell_init_memory(m.params, motif_parse(motif), "conv2", C + 1, 11); }), "expected"));
        std::vector<float> r = cell_init_memory(m.params, motif_parse(motif), "conv2", C, 11);
        REQUIRE(r.size() == (size_t)C);
        const float lo = *std::min_element(r.begin(), r.end()), hi = *std::max_element(r.begin(), r.end());
        CHECK(lo >= 1 - 1 / 1.5f - 1e-5f);
        CHECK(hi <= 1 - 1 / 20.f + 1e-5f);
        CHECK(hi - lo > 0.2f);  // a spread, not one timescale
        const int Cs = C;
        auto sig = [](float x) { return 1 / (1 + std::exp(-x)); };
        if (std::string(motif) == "timedecay")
            for (int c = 0; c < Cs; c++) CHECK(sig(m.params["conv2.cell.tau"].data()[c]) == doctest::Approx(r[c]).epsilon(1e-4));
        if (std::string(motif) == "lstm")  // [i, j, f, o]: s(f + 1) = r, s(i) = 1 - r
            for (int c = 0; c < Cs; c++) {
                CHECK(sig(m.params["conv2.cell.bias"].data()[2 * Cs + c] + 1) == doctest::Approx(r[c]).epsilon(1e-4));
                CHECK(sig(m.params["conv2.cell.bias"].data()[c]) == doctest::Approx(1 - r[c]).epsilon(1e-4));
            }
        if (std::string(motif) == "gru" || std::string(motif) == "ugrnn") {  // the keep gate s(g + 1) = r
            const Tensor& b = m.params[std::string(motif) == "gru" ? "conv2.cell.gates.bias" : "conv2.cell.bias"];
            const int off = std::string(motif) == "gru" ? Cs : 0;
            for (int c = 0; c < Cs; c++) CHECK(sig(b.data()[off + c] + 1) == doctest::Approx(r[c]).epsilon(1e-4));
        }
    }
    // image memory after offset: outputs at the last step vary across images with the memory
    // start and a = 0.5, and not without cells
    ModelConfig mc;
    mc.arch = "tiny3";
    mc.motifs.assign(3, Motif::LSTM);
    mc.residual = true;
    Model mem(mc, 5);
    for (int l = 0; l < 3; l++) {
        const LayerSpec& ls = mem.spec.layers[l];
        cell_init_memory(mem.params, Motif::LSTM, ls.name, ls.out_ch, 20 + l);
        tensor_fill(mem.params[ls.name + ".cell.scale"], 0.5f);
    }
    ModelConfig ffc;
    ffc.arch = "tiny3";
    Model ff(ffc, 5);
    for (const auto& e : ff.params.entries) tensor_copy(mem.params[e.name], e.view);
    Rng rng(3);
    Tensor img = tensor_empty({4, 3, 8, 8});
    tensor_randn(img, rng);
    auto late_spread = [&](const Model& m) {  // SD across images of conv2's output, 8 steps after the image
        Unrolled u;
        unroll_build(u, m, UnrollConfig{14, 3, 4}, false, img);
        std::vector<float> v = u.out[13][1].to_vector();
        const size_t per = v.size() / 4;
        double s = 0;
        for (size_t k = 0; k < per; k++) {
            double mean = 0, var = 0;
            for (int i = 0; i < 4; i++) mean += v[i * per + k] / 4;
            for (int i = 0; i < 4; i++) var += (v[i * per + k] - mean) * (v[i * per + k] - mean) / 4;
            s += std::sqrt(var) / per;
        }
        return s;
    };
    CHECK(late_spread(ff) < 1e-6);
    CHECK(late_spread(mem) > 1e-3);
}

TEST_CASE("dynamics: model recovery: the teacher's structure beats the feedforward student in V4 and IT") {
    const FitResult &rec = recovery_fits().first, &ff = recovery_fits().second;
    for (const char* a : {"V4", "IT"}) {
        const AreaFit &r = area(rec, a), &f = area(ff, a);
        MESSAGE(std::string(a) << ": lstm + feedback " << r.fit.ev_mean << " +- " << r.fit.ev_sem << " (held-out units "
                  << r.heldout.ev_mean << "), feedforward " << f.fit.ev_mean << " +- " << f.fit.ev_sem << " (held-out units "
                  << f.heldout.ev_mean << "), teacher " << r.teacher.ev_mean);
        CHECK(r.fit.ev_mean > f.fit.ev_mean);
        CHECK(r.teacher.ev_mean > r.fit.ev_mean);  // the teacher is the ceiling
        CHECK(std::isfinite(r.heldout.ev_mean));
        CHECK(r.fit_units.size() + r.heldout_units.size() == (size_t)r.fit.units + (size_t)r.heldout.units);
    }
    // training improved on the closed-form start in every split, and the closed-form re-solve
    // of the readouts was kept at validations
    int refits = 0;
    for (const SplitLog& L : rec.splits) {
        refits += L.refits;
        CHECK(L.iters_done > 0);
        CHECK(*std::min_element(L.val_loss.begin(), L.val_loss.end()) < L.init_val_loss);
        // early stopping kept the validation with the best score (stop_on_score)
        REQUIRE(L.val_score.size() == L.val_iter.size());
        float best = L.init_val_score, kept = L.init_val_score;
        for (size_t k = 0; k < L.val_iter.size(); k++) {
            CHECK(L.val_score[k] >= 0);
            CHECK(L.val_score[k] <= 1);
            best = std::max(best, L.val_score[k]);
            if (L.val_iter[k] == L.best_iter) kept = L.val_score[k];
        }
        CHECK(kept == best);
    }
    CHECK(refits > 0);
    // every image has a held-out prediction of every unit fitted
    size_t nan = 0;
    for (float v : rec.predictions) nan += std::isnan(v);
    CHECK(nan == 0);
}

TEST_CASE("dynamics: --init starts from a model checkpoint; the teacher itself bounds what the readouts can reach") {
    // The recovery data's teacher, written whole (make_virtual_primate --write-teacher), as the
    // student with no training: its own features through the fit's time-shared readouts. It
    // must score above the trained students (it has the true dynamics) and below its ceiling
    // (the readouts are linear; the sites' rates are not).
    const Dataset& ds = recovery_data();
    Model teacher{ModelConfig{}, 0};
    virtual_primate_generate(recovery_config(), false, &teacher);
    const std::string path = vt_test::temp_dir() + "/teacher_model.npz";
    virtual_primate_save_teacher(teacher, path);
    InitStructure st = init_structure(path);
    CHECK(st.motif == "lstm");
    CHECK(st.feedback == "conv3:conv1");
    CHECK(!st.residual);
    {  // results.json's settings.flags: the checkpoint's structure, as the fit takes it
        const FlagValues fv = fit_flag_values({"--init", path, "--iters", "0"});
        auto value = [&](const char* n) {
            for (const auto& kv : fv)
                if (kv.first == n) return kv.second;
            return std::string("(absent)");
        };
        CHECK(value("--feedback") == "conv3:conv1");
        CHECK(value("--motif") == "lstm");
        CHECK(value("--warmup") == "0");
    }
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.init = path;
    c.iters = 0;
    c.onset_ms = NAN;  // chosen: the teacher's features have the layers' latencies, not the sites'
    FitResult oracle = fit_dynamics(ds.d, c, ds.teacher);
    const FitResult& rec = recovery_fits().first;
    for (const char* a : {"V4", "IT"}) {
        const AreaFit &o = area(oracle, a), &r = area(rec, a);
        MESSAGE(std::string(a) << ": the teacher's own features " << o.fit.ev_mean << " +- " << o.fit.ev_sem << ", trained lstm student "
                  << r.fit.ev_mean << ", ceiling " << o.teacher.ev_mean);
        CHECK(o.fit.ev_mean > r.fit.ev_mean + 0.1);
        CHECK(o.fit.ev_mean < o.teacher.ev_mean);
    }
    SUBCASE("--readout-solver pls: the same bound through PLS readouts, each unit's components chosen") {
        REQUIRE(c.readout_solver == "ridge");  // the default
        FitConfig pc = c;
        pc.readout_solver = "pls";
        FitResult po = fit_dynamics(ds.d, pc, ds.teacher);
        for (const char* a : {"V4", "IT"}) {
            const AreaFit &p = area(po, a), &o = area(oracle, a), &r = area(rec, a);
            MESSAGE(std::string(a) << ": the teacher's own features, PLS " << p.fit.ev_mean << " (held-out units "
                      << p.heldout.ev_mean << "), ridge " << o.fit.ev_mean << " (" << o.heldout.ev_mean << ")");
            CHECK(p.fit.ev_mean > r.fit.ev_mean + 0.1);
            CHECK(p.fit.ev_mean < p.teacher.ev_mean);
            CHECK(p.fit.ev_mean != o.fit.ev_mean);                    // another estimator...
            CHECK(std::fabs(p.fit.ev_mean - o.fit.ev_mean) < 0.05);  // ...of one linear map
            CHECK(p.heldout.ev_mean > 0.5 * o.heldout.ev_mean);
        }
    }
    SUBCASE("linear sites without latencies: within the readouts, the teacher's features come nearer its ceiling") {
        // make_virtual_primate --linear-sites --latencies=false: every site's rate is linear in
        // its layer's output at the step, held for the step, so each bin is the mean of its
        // steps' rates: what the time-shared linear readout expresses exactly (at onset 0). The
        // teacher's own features then reach its ceiling up to the readouts' estimation; the
        // same sites with the softplus rate (also without latencies) do not.
        auto bound = [&](bool linear) {
            VirtualPrimateConfig vc = recovery_config();
            vc.linear_sites = linear, vc.latencies = false;
            Model t{ModelConfig{}, 0};
            const std::string tag = linear ? "linear" : "softplus";
            const std::string dpath = vt_test::temp_dir() + "/vp_recovery_" + tag + ".npz";
            const std::string tpath = vt_test::temp_dir() + "/teacher_model_" + tag + ".npz";
            Npz z = virtual_primate_generate(vc, false, &t);
            npz_write(dpath, z);
            const std::vector<std::string> kv = z.get("teacher_config").to_strings();
            CHECK((std::find(kv.begin(), kv.end(), "sites=linear") != kv.end()) == linear);
            virtual_primate_save_teacher(t, tpath);
            FitConfig bc = c;
            bc.init = tpath;
            return fit_dynamics(neural_data_load(dpath, true), bc, z.get("teacher_responses").to_f32());
        };
        const FitResult lin = bound(true), soft = bound(false);
        for (const char* a : {"V4", "IT"}) {
            const AreaFit &l = area(lin, a), &s = area(soft, a);
            const double fl = l.fit.ev_mean / l.teacher.ev_mean, fs = s.fit.ev_mean / s.teacher.ev_mean;
            MESSAGE(std::string(a) << ": the teacher's own features, linear sites " << l.fit.ev_mean << " of ceiling "
                      << l.teacher.ev_mean << " (" << fl << "), softplus sites " << s.fit.ev_mean << " of "
                      << s.teacher.ev_mean << " (" << fs << ")");
            CHECK(fl > 0.97);
            CHECK(fl > fs + 0.05);
        }
    }
    SUBCASE("plain cells (the CPU default's start): no residual scale, and so recorded in the checkpoint") {
        FitConfig f = small_fit("lstm", "conv3:conv1");
        f.residual = false, f.memory_init = true, f.onset_ms = NAN;
        f.iters = 2, f.val_every = 1;
        f.checkpoint_dir = vt_test::temp_dir() + "/plain_ck";
        std::filesystem::create_directories(f.checkpoint_dir);
        FitResult r = fit_dynamics(ds.d, f, ds.teacher);
        for (const AreaFit& x : r.areas) CHECK(x.fit.ev_mean > 0);
        Npz z = npz_read(f.checkpoint_dir + "/split0.npz");
        CHECK(!z.has("conv2.cell.scale"));
        CHECK(z.has("conv2.cell.weight"));
        CHECK(meta_floats(z, "meta.residual") == std::vector<float>{0.f});
    }
    SUBCASE("a fit's split checkpoint is refused: it has seen the other splits' held-out images") {
        FitConfig f = small_fit("lstm", "conv3:conv1");
        f.iters = 2, f.val_every = 1;
        f.checkpoint_dir = vt_test::temp_dir() + "/init_ck";
        std::filesystem::create_directories(f.checkpoint_dir);
        fit_dynamics(ds.d, f);
        const std::string ck = f.checkpoint_dir + "/split0.npz";
        f.init = ck, f.checkpoint_dir.clear(), f.iters = 0;
        CHECK(has(error_of([&] { fit_dynamics(ds.d, f); }), "is a fit's split checkpoint"));
    }
    SUBCASE("bad input") {
        FitConfig b = c;
        b.motif = "gru";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, b); }), "holds lstm cells with feedback conv3:conv1, not --motif gru"));
        b = c, b.feedback = "none";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, b); }), "--init"));
        b = c, b.init = tiny3_backbone();  // a backbone has no cells
        CHECK(has(error_of([&] { fit_dynamics(ds.d, b); }), "not a backbone"));
        b = c, b.time_varied = true;
        CHECK(has(error_of([&] { fit_dynamics(ds.d, b); }), "--init"));
        b = c, b.init = vt_test::temp_dir() + "/absent.npz";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, b); }), "absent.npz"));
    }
}

TEST_CASE("dynamics: results.json round trip: what fit_results_json writes, sweep_result_load reads back") {
    const FitResult& R = recovery_fits().first;
    const FitConfig c = small_fit("lstm", "conv3:conv1");
    const std::string path = vt_test::temp_dir() + "/results.json";
    FitRun run{"gpu", recovery_data().path, true, fit_flag_values({"--motif", "lstm", "--lr=0.0100"}), 0xdeadbeef, 1234};
    json_write(path, fit_results_json(c, R, run));
    const SweepResult back = sweep_result_load(path);
    CHECK(back.motif == "lstm");
    CHECK(back.data == recovery_data().path);
    CHECK(back.data_crc32 == "deadbeef");
    CHECK(back.data_bytes == 1234);
    CHECK(back.flags.size() == run.flags.size());
    for (const auto& kv : run.flags) {
        CAPTURE(kv.first);
        auto it = std::find_if(back.flags.begin(), back.flags.end(), [&](const auto& x) { return x.first == kv.first; });
        REQUIRE(it != back.flags.end());
        CHECK(it->second == kv.second);
    }
    CHECK(back.feedback == "conv3:conv1");
    CHECK(!back.time_varied);
    CHECK(back.splits == c.score.folds);
    CHECK(back.trainable_params == R.trainable_params);
    CHECK(back.onset_ms == R.onset_ms);
    CHECK(back.image_steps == R.image_steps);
    REQUIRE(back.areas.size() == R.areas.size());
    for (size_t a = 0; a < R.areas.size(); a++) {
        const AreaFit& f = R.areas[a];
        const SweepArea& b = back.areas[a];
        CAPTURE(f.area);
        CHECK(b.area == f.area);
        CHECK(b.layer == f.layer);
        CHECK(b.units == (int)f.fit_units.size());
        CHECK(b.heldout_units == (int)f.heldout_units.size());
        CHECK(b.ev.mean == doctest::Approx(f.fit.ev_mean).epsilon(1e-6));
        CHECK(b.ev.sem == doctest::Approx(f.fit.ev_sem).epsilon(1e-6));
        CHECK(b.heldout.mean == doctest::Approx(f.heldout.ev_mean).epsilon(1e-6));
        CHECK(b.teacher.mean == doctest::Approx(f.teacher.ev_mean).epsilon(1e-6));
        REQUIRE(b.ev.per_split.size() == (size_t)c.score.folds);
        REQUIRE(b.bins.size() == f.fit.ev_bin_mean.size());
        for (size_t k = 0; k < b.bins.size(); k++) {
            if (std::isnan(f.fit.ev_bin_mean[k])) CHECK(std::isnan(b.bins[k].mean));  // NaN went out as null
            else CHECK(b.bins[k].mean == doctest::Approx(f.fit.ev_bin_mean[k]).epsilon(1e-6));
        }
    }
    // a results file of another kind is refused, naming what it holds
    Json other = json_read(path);
    other["format"] = "ventral-scores-1";
    json_write(path, other);
    CHECK(has(error_of([&] { sweep_result_load(path); }), "holds \"ventral-scores-1\", expected \"ventral-fit-dynamics-2\""));
}

TEST_CASE("dynamics: the time-varied baseline scores without BPTT") {
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.time_varied = true;
    for (const char* solver : {"pls", "ridge"}) {
        c.readout_solver = solver;
        FitResult r = fit_dynamics(ds.d, c, ds.teacher);
        CHECK(r.splits.empty());
        for (const AreaFit& a : r.areas) {
            INFO(solver << " " << a.area);
            CHECK(a.fit.mapping == Mapping::PerBin);
            CHECK(std::isfinite(a.fit.ev_mean));
            CHECK(a.fit.ev_mean > 0);
        }
    }
}

TEST_CASE("dynamics: bad input") {
    const Dataset& ds = recovery_data();
    SUBCASE("a dataset without V4 fits IT and says so") {
        NeuralData d = neural_data_load(subset_areas(ds, "IT"), true);
        FitConfig c = small_fit("none", "none");
        c.iters = 4;
        FitResult r = fit_dynamics(d, c);
        REQUIRE(r.areas.size() == 1);
        CHECK(r.areas[0].area == "IT");
        bool said = false;
        for (const std::string& n : r.notes) said |= has(n, "no V4 units");
        CHECK(said);
    }
    SUBCASE("a dataset without IT fits V4") {
        NeuralData d = neural_data_load(subset_areas(ds, "V4"), true);
        FitConfig c = small_fit("none", "none");
        c.iters = 4;
        FitResult r = fit_dynamics(d, c);
        REQUIRE(r.areas.size() == 1);
        CHECK(r.areas[0].area == "V4");
    }
    SUBCASE("no readout area in the data") {
        FitConfig c = small_fit("none", "none");
        c.readout = "V1=conv1";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "none of the --readout areas"));
    }
    SUBCASE("bins later than the unroll") {
        FitConfig c = small_fit("none", "none");
        c.onset_ms = 0;
        c.steps = 8;  // 0..70 ms, the bins reach 200 ms
        std::string e = error_of([&] { fit_dynamics(ds.d, c); });
        CHECK(has(e, "--steps 8"));
        CHECK(has(e, "[180, 200)"));
        CHECK(has(e, "--steps 20"));
    }
    SUBCASE("a backbone of another architecture than --arch") {
        FitConfig c = small_fit("none", "none");
        c.arch = "hcnn5-s";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "is a tiny3 backbone"));
    }
    SUBCASE("a readout layer the backbone lacks") {
        FitConfig c = small_fit("none", "none");
        c.readout = "V4=conv2,IT=conv5";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "conv5"));
    }
    SUBCASE("NaN in the loss stops the fit; the checkpoint of the start stays as it was") {
        FitConfig c = small_fit("lstm", "conv3:conv1");
        c.lr = c.readout_lr = 1e30f;
        c.checkpoint_dir = vt_test::temp_dir();
        std::string e = error_of([&] { fit_dynamics(ds.d, c); });
        CHECK(has(e, "the loss became"));
        CHECK(has(e, "Lower --lr"));
        std::string ck = c.checkpoint_dir + "/split0.npz";
        REQUIRE(std::filesystem::exists(ck));
        Npz z = npz_read(ck);
        CHECK(meta_floats(z, "meta.iteration")[0] == 0.f);
        for (const std::string& n : z.names) {
            if (n.rfind("meta.", 0) == 0) continue;
            for (float v : z.get(n).to_f32()) REQUIRE(std::isfinite(v));
        }
    }
    SUBCASE("flags out of range") {
        FitConfig c = small_fit("none", "none");
        c.heldout_fraction = 1.f;
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "--heldout-units"));
        c = small_fit("bogus", "none");
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "unknown motif"));
        c = small_fit("lstm", "conv1:conv3");
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "earlier to a later"));
        c = small_fit("none", "none");
        c.readout_solver = "lasso";
        CHECK(has(error_of([&] { fit_dynamics(ds.d, c); }), "--readout-solver: expected pls or ridge, got 'lasso'"));
    }
}

TEST_CASE("dynamics: --device cuda gives the CPU's loss curve") {
    if (!cuda_available()) {
        MESSAGE("no CUDA device: skipped");
        return;
    }
    const Dataset& ds = recovery_data();
    FitConfig c = small_fit("lstm", "conv3:conv1");
    c.iters = 5;
    c.val_every = 5;
    c.score.folds = 2;
    FitResult cpu = fit_dynamics(ds.d, c);
    c.device = Device::CUDA;
    FitResult gpu = fit_dynamics(ds.d, c);
    REQUIRE(cpu.splits.size() == gpu.splits.size());
    for (size_t s = 0; s < cpu.splits.size(); s++) {
        CHECK(gpu.splits[s].init_val_loss == doctest::Approx(cpu.splits[s].init_val_loss).epsilon(1e-4));
        REQUIRE(cpu.splits[s].train_loss.size() == gpu.splits[s].train_loss.size());
        for (size_t i = 0; i < cpu.splits[s].train_loss.size(); i++)  // float32 sums in another order: drift grows slowly
            CHECK(gpu.splits[s].train_loss[i] == doctest::Approx(cpu.splits[s].train_loss[i]).epsilon(1e-3));
    }
}

TEST_CASE("dynamics: null control: the recurrent student's gain is specific to a recurrent teacher") {
    // docs/science.md section 6. Two teachers that differ only in their structure, both
    // without site latencies: the recovery teacher (lstm, conv3:conv1) and a feedforward one
    // (no cells, no feedback). With latencies (the recovery data: sites fire 50-100 ms after
    // onset, the student's layers from 20 ms) any recurrent student gains on either teacher by
    // learning to delay its answer, which confounds the control (measured at onset 0: lstm
    // gains V4 +0.18 / IT +0.15 on the recurrent teacher and +0.18 / +0.09 on the feedforward
    // one). Without them, measured: +0.095 / +0.13 on the recurrent teacher, +0.054 / +0.038 on
    // the feedforward one (the student's cells are still extra nonlinear convolutions on a
    // backbone that is not the teacher's), which must be smaller.
    auto gains = [](const std::string& motif, const std::string& feedback) {
        VirtualPrimateConfig vc = recovery_config();
        vc.teacher_motif = motif, vc.teacher_feedback = feedback, vc.latencies = false;
        std::string path = vt_test::temp_dir() + "/vp_nolat_" + motif + ".npz";
        npz_write(path, virtual_primate_generate(vc));
        NeuralData d = neural_data_load(path, true);
        FitResult rec = fit_dynamics(d, small_fit("lstm", "conv3:conv1"));
        FitResult ff = fit_dynamics(d, small_fit("none", "none"));
        std::vector<double> g;
        for (const char* a : {"V4", "IT"}) g.push_back(area(rec, a).fit.ev_mean - area(ff, a).fit.ev_mean);
        return g;
    };
    std::vector<double> gain = gains("lstm", "conv3:conv1"), null_gain = gains("none", "none");
    for (int a = 0; a < 2; a++) {
        MESSAGE((a ? "IT" : "V4") << ": lstm gain over feedforward: " << gain[a] << " on the recurrent teacher, "
                                  << null_gain[a] << " on the feedforward teacher");
        CHECK(gain[a] > 0);
        CHECK(gain[a] > null_gain[a]);
    }
}

TEST_CASE("dynamics: predictions.npz holds every image's held-out prediction, and the scores recompute from it") {
    const FitResult& R = recovery_fits().first;
    const std::string path = vt_test::temp_dir() + "/predictions.npz";
    npz_write(path, fit_predictions_npz(R));
    Npz z = npz_read(path);
    const Targets& tg = R.targets;
    const int64_t N = tg.N, U = tg.U, B = tg.B;
    REQUIRE(z.get("predictions").shape == Shape{N, U, B});
    REQUIRE(z.get("observed").shape == Shape{N, U, B});
    std::vector<float> P = z.get("predictions").to_f32(), Y = z.get("observed").to_f32(), rho = z.get("ceiling").to_f32();
    std::vector<float> split = z.get("test_split").to_f32();
    std::vector<std::string> area = z.get("unit_area").to_strings(), role = z.get("unit_role").to_strings();
    const float min_rel = z.get("min_reliability").to_f32()[0];
    REQUIRE(z.get("unit_ev").shape == Shape{tg.folds.k, U, B});
    std::vector<float> unit_ev = z.get("unit_ev").to_f32();
    CHECK(z.get("unit_id").to_strings() == tg.unit_id);
    CHECK(min_rel == tg.cfg.min_reliability);
    // every fitted unit has a prediction of every image (each from the split it was held out of)
    for (int64_t u = 0; u < U; u++)
        for (int64_t i = 0; i < N; i++)
            for (int64_t b = 0; b < B; b++)
                if (!role[u].empty()) REQUIRE(std::isfinite(P[(i * U + u) * B + b]));
    // the score of results.json, recomputed from the file alone: per split and bin the median
    // over reliable units of max(r, 0)^2 / rho (predictions.h)
    auto r_of = [&](int64_t u, int64_t b, int s) {
        double sp = 0, sy = 0, spp = 0, syy = 0, spy = 0, ymin = INFINITY, ymax = -INFINITY;
        int n = 0;
        for (int64_t i = 0; i < N; i++) {
            double y = Y[(i * U + u) * B + b], p = P[(i * U + u) * B + b];
            if ((int)split[i] != s || y != y) continue;
            sp += p, sy += y, spp += p * p, syy += y * y, spy += p * y, n++;
            ymin = std::min(ymin, y), ymax = std::max(ymax, y);
        }
        double vp = spp - sp * sp / n, vy = syy - sy * sy / n;
        if (vp <= 1e-9 * (spp + 1)) return ymax > ymin ? 0.0 : NAN;  // a constant prediction
        return (spy - sp * sy / n) / std::sqrt(vp * vy);
    };
    int compared = 0;
    for (const AreaFit& a : R.areas)
        for (const char* which : {"fit", "heldout"}) {
            const AreaScore& sc = std::string(which) == "fit" ? a.fit : a.heldout;
            for (int s = 0; s < tg.folds.k; s++)
                for (int64_t b = 0; b < B; b++) {
                    std::vector<float> ev;
                    for (int64_t u = 0; u < U; u++) {
                        if (area[u] != a.area || role[u] != which || !(rho[u * B + b] > min_rel)) continue;
                        double r = r_of(u, b, s);
                        if (r == r) ev.push_back((float)(std::max(r, 0.0) * std::max(r, 0.0) / rho[u * B + b]));
                    }
                    const float want = sc.ev[s * B + b];
                    if (ev.empty()) {
                        CHECK(std::isnan(want));
                        continue;
                    }
                    std::sort(ev.begin(), ev.end());
                    const size_t h = ev.size() / 2;
                    const float median = ev.size() % 2 ? ev[h] : 0.5f * (ev[h - 1] + ev[h]);
                    CHECK(median == doctest::Approx(want).epsilon(1e-4).scale(1));
                    // and the file's own per-unit EV gives the same median
                    std::vector<float> kept;
                    for (int64_t u = 0; u < U; u++)
                        if (area[u] == a.area && role[u] == which && std::isfinite(unit_ev[(s * U + u) * B + b]))
                            kept.push_back(unit_ev[(s * U + u) * B + b]);
                    REQUIRE(kept.size() == ev.size());
                    std::sort(kept.begin(), kept.end());
                    CHECK((kept.size() % 2 ? kept[h] : 0.5f * (kept[h - 1] + kept[h])) == doctest::Approx(want).epsilon(1e-6).scale(1));
                    compared++;
                }
        }
    CHECK(compared > 20);
}
