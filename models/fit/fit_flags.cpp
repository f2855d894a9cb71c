// fit_flags.cpp: fit_dynamics' flags (models/fit/fit_flags.h has the what and why).
#include "models/fit/fit_flags.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "models/cells.h"
#include "models/fit/features.h"

namespace vt {

namespace {

// --preset: settings for a compute budget, the defaults of the flags (a flag given wins).
//   cpu  the default: a 10-minute run on 2 cores, generation of the virtual primate included.
//        Two splits (halves of the images, each predicted by a model trained on the other)
//        with 96 BPTT iterations of 4 images each: measured, BPTT pays from ~30 iterations on
//        (the validation score still rises at 96), and 4 splits x 96 would take ~15 minutes
//        (docs/fit_quality.md, "The default fit"). The student starts where a short fit does best: plain
//        cells as leaky integrators (memory of the image after it goes) and the onset chosen
//        on training images.
//        The lr starts at 0.03 and decays as a half cosine after 8 iterations of warm-up:
//        measured on the default virtual primate, V4 0.316 -> 0.351, IT 0.114 -> 0.135 against
//        a constant 0.01.
//   gpu  the paper-scale fit: 4 splits, 400 iterations of 32 images per split, lr 0.05
//        decaying as a half cosine after 20 iterations of warm-up, from the cpu preset's
//        start. Measured (docs/fit_quality.md, "What limits the fit"): what a fit needs is images seen,
//        and a larger batch gives them cheaply on a GPU if the step is larger and decays; on
//        a tiny5 virtual primate of 1024 images this preset reached V4 0.445 / IT 0.334 on
//        the teacher's backbone and 0.417 / 0.278 on another, against 0.348 / 0.139 and
//        0.313 / 0.141 for the previous one (16 images, lr 0.01, the residual feedforward
//        unroll at onset 0). Without --data it fits the 1920-image virtual primate
//        (fit_default_primate, fit_flags.h): on the cpu preset's 320 images it overfits first.
void preset_apply(FitFlags& v) {
    FitConfig& c = v.c;
    if (v.preset == "cpu") {
        c.iters = 96, c.val_every = 16, c.patience = 6;
        c.lr = 0.03f, c.lr_schedule = "cosine", c.warmup = 8;
        c.score.folds = 2;
        return;
    }
    if (v.preset != "gpu") fail("--preset: expected cpu or gpu, got '%s'", v.preset.c_str());
    c.batch = 32, c.iters = 400, c.val_every = 20, c.patience = 4;
    c.lr = 0.05f, c.lr_schedule = "cosine", c.warmup = 20;
    c.score.folds = 4;
}

// The ungated cells (rnn, rnn-large: an elu state, unbounded) step at a third of a preset's lr
// unless --lr is given. Measured at the cpu preset on the default virtual primate (V4 / IT):
// rnn 0.204 / 0.056 at lr 0.03 -> 0.303 / 0.110 at 0.01, rnn-large 0.194 / 0.045 -> 0.325 /
// 0.123 (both cosine); at the gpu preset (tiny5 proxy, 1024 images) rnn 0.374 / 0.233 at 0.05
// -> 0.400 / 0.252 at 0.0167. The gated cells do best at the preset's own.
float motif_lr(float preset_lr, const std::string& motif) {
    return motif == "rnn" || motif == "rnn-large" ? preset_lr / 3 : preset_lr;
}

// --onset-ms: a time in ms or auto (checked at parse, so a sweep's grid line is checked too).
void onset_check(const std::string& s) {
    if (s == "auto") return;
    char* end = nullptr;
    float v = std::strtof(s.c_str(), &end);
    if (s.empty() || *end || !std::isfinite(v)) fail("--onset-ms: expected a time in ms or auto, got '%s'", s.c_str());
}

}  // namespace

DefaultPrimate fit_default_primate(const std::string& preset) {
    DefaultPrimate d{"data/virtual_primate.npz", VirtualPrimateConfig{}};
    if (preset == "gpu") d.path = "data/virtual_primate_1920.npz", d.config.images = 1920;
    return d;
}

std::string fit_preset_of(const std::vector<std::string>& args) {
    std::string p = "cpu";
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "--preset" && i + 1 < args.size()) p = args[i + 1];
        else if (a.rfind("--preset=", 0) == 0) p = a.substr(9);
    }
    return p;
}

std::string fit_preset_of(int argc, char** argv) { return fit_preset_of(std::vector<std::string>(argv + 1, argv + argc)); }

Cli fit_cli(FitFlags& v, const std::string& preset) {
    FitConfig& c = v.c;
    v.preset = preset;
    preset_apply(v);  // first: the flags' defaults (and --help) are the preset's values
    Cli cli("fit_dynamics", "",
            "Fit a ConvRNN to the time course of V4 and IT responses by backpropagation through time (the\n"
            "paper's dynamics fit): frozen backbone, `--motif` cells at every layer, `--feedback` edges, one\n"
            "time-shared linear readout per area; scored on held-out images (noise-corrected EV per bin) and\n"
            "on held-out units. Without --data: the embedded virtual primate (a SIMULATED dataset with a known\n"
            "teacher), generated on first use into " + fit_default_primate("cpu").path + " (320 images; with --preset\n"
            "gpu the same teacher on 1920 images, " + fit_default_primate("gpu").path + ").\n"
            "Writes DIR/results.json, results.csv, predictions.npz (every image's held-out prediction), ev_over_time.png,\n"
            "units.png, loss.png, checkpoints/.");
    const int C = kSweepConfig, S = kSweepShared;
    cli.flag("--data", &v.data, "neural dataset .npz (default: the virtual primate, " + fit_default_primate(preset).path + ")").tag(S);
    cli.flag("--out", &v.out, "output folder (default runs/fit_dynamics/<motif>_<feedback>, time_varied or init_<checkpoint name>, "
             "then _gpu at that preset, _<data name> with --data, _on_<backbone name> with --backbone)").tag(S);
    cli.flag("--backbone", &c.backbone, strfmt("backbone checkpoint (default %s)", kDefaultBackbone)).tag(C);
    cli.flag("--init", &c.init, "start the student from this model checkpoint (e.g. make_virtual_primate --write-teacher; "
             "not a fit's split checkpoint): its backbone, cells and feedback; --motif and --feedback default to "
             "its own").tag(C);
    cli.flag("--arch", &c.arch, "expected architecture (checked against the checkpoint's meta.arch)").tag(C);
    cli.flag("--motif", &c.motif, "cell at every layer: " + list_join(motif_names())).choices(motif_names()).tag(C);
    cli.flag("--feedback", &c.feedback, "feedback edges src:dst, comma-separated, or none").tag(C);
    cli.flag("--readout", &c.readout, "area=layer pairs: the layer each area is read from").tag(C);
    cli.flag("--time-varied", &c.time_varied,
             "the paper's baseline instead of BPTT: feedforward features, an independent readout per bin (--readout-solver)").tag(C);
    cli.flag("--ms-per-step", &c.ms_per_step, "milliseconds per model step").positive().range(0, 1000).tag(C);
    cli.flag("--onset-ms", &v.onset, "time of model step 0 after image onset (ms), or auto: chosen among 0-6 steps "
             "on training images with the fresh network").validate(onset_check).tag(C);
    cli.flag("--steps", &c.steps, "model steps T (0 = what the latest bin needs)").range(0, 1000).tag(C);
    cli.flag("--image-steps", &c.image_steps, "steps the image is shown (-1 = the data's presentation_ms / ms-per-step)")
        .range(-1, 1000).tag(C);
    cli.flag("--batch", &c.batch, "images per BPTT minibatch").range(1, 1 << 16).tag(C);
    cli.flag("--iters", &c.iters, "BPTT iterations per split, at most").range(0, 10000000).tag(C);
    cli.flag("--val-every", &c.val_every, "iterations between validations (early stopping)").range(1, 10000000).tag(C);
    cli.flag("--patience", &c.patience, "validations without improvement before stopping (0: never; the best validated parameters "
             "are kept either way)").range(0, 1000000).tag(C);
    cli.flag("--val-fraction", &c.val_fraction, "fraction of the training images held out for validation")
        .positive().range(0, 0.9f).tag(C);
    cli.flag("--lr", &c.lr, "Adam learning rate of cells and feedback (a cell's weight tensor: lr / sqrt(fan-in)); "
             "not given: the preset's, a third of it for rnn and rnn-large")
        .positive().range(0, 10).tag(C);
    cli.flag("--feedback-lr", &c.feedback_lr, "a feedback conv's weights step with lr x this / fan-in (they start at "
             "zero and move together)").positive().range(0, 10000).tag(C);
    cli.flag("--lr-schedule", &c.lr_schedule, "the lr over the iterations: constant, or cosine (a half cosine from "
             "--lr after the warm-up to 0 at --iters)").choices({"constant", "cosine"}).tag(C);
    cli.flag("--warmup", &c.warmup, "iterations of linear warm-up of the lr (lr x iteration / warmup); below --iters "
             "(not given: the preset's, at most a tenth of --iters)")
        .range(0, 10000000).tag(C);
    cli.flag("--readout-lr", &c.readout_lr, "Adam learning rate of the readouts between closed-form re-solves (0: they "
             "stay as solved; 1e-4 with --no-readout-refit)").range(0, 10).tag(C);
    cli.flag("--readout-components", &c.readout_components,
             "PLS readouts (--readout-solver pls, or where ridge would be too large): at most this many "
             "components per readout; each unit's count is chosen on validation images")
        .range(1, 100000).tag(C);
    cli.flag("--readout-solver", &c.readout_solver,
             "the readouts' closed form: ridge (each unit's penalty chosen on validation images, from one "
             "eigendecomposition) or pls (each unit's number of components chosen there; docs/fit_quality.md)")
        .choices({"pls", "ridge"}).tag(C);
    cli.flag("--weight-decay", &c.weight_decay, "decoupled weight decay (AdamW)").range(0, 1).tag(C);
    cli.flag("--clip-grad", &c.clip_grad, "scale the cells' and feedback's gradient down to at most this global norm "
             "before each step (0: never)").range(0, 1e6).tag(C);
    cli.flag("--truncate-bptt", &c.truncate_bptt, "truncated BPTT: cut the gradient through the cells' state and the "
             "feedback every this many steps (the feedforward path is never cut; 0: full BPTT)")
        .range(0, 100000).tag(C);
    cli.flag("--truncate-until", &c.truncate_until, "with --truncate-bptt: full BPTT after this iteration (truncated, "
             "then full; 0: truncated throughout)").range(0, 10000000).tag(C);
    cli.flag("--stop-on", &v.stop_on, "what early stopping and the readout re-solves watch on the validation images: "
             "score (a median r^2 per bin, as scored) or loss").choices({"score", "loss"}).tag(C);
    cli.flag("--no-readout-refit", &v.no_refit,
             "never re-solve the readouts in closed form during training (Adam alone moves them)").tag(C);
    cli.flag("--cells", &v.cells, "plain (the paper's, h = cell(x)) or residual (h = x + a * cell(x), a per channel; "
             "a = 0 at the start is the feedforward unroll)").choices({"plain", "residual"}).tag(C);
    cli.flag("--cell-scale-init", &c.cell_scale_init,
             "residual cells: the scale a of every cell at the start (0: the fresh student is its feedforward "
             "unroll)").range(0, 10).tag(C);
    cli.flag("--no-memory-init", &v.no_memory_init,
             "cells start with PyTorch's default init instead of leaky integrators of a spread of timescales").tag(C);
    cli.flag("--mean-weight", &c.mean_weight, "loss weight of each unit's mean time course (vs image-to-image variation)")
        .range(0, 1).tag(C);
    cli.flag("--heldout-units", &c.heldout_fraction, "fraction of each area's units held out of the fit").range(0, 0.9f).tag(C);
    cli.flag("--heldout-fit-images", &c.heldout_fit_images,
             "training images the held-out units' readout is fitted on (0 = all, as for the time-varied baseline; "
             "N: a seeded subset of N, to bound the cost)").range(0, 1 << 30).tag(C);
    const size_t before = cli.flags.size();
    v.scoring.add(cli, c.score);
    for (size_t i = before; i < cli.flags.size(); i++)  // the protocol pairs splits up: shared, but for the mapping's own
        cli.flags[i].tag = cli.flags[i].name == "--pls" ? C : S;
    // The readouts choose each unit's components themselves (--readout-components caps them), so
    // the scoring tools' fixed --components would be a flag that changes nothing: not taken.
    cli.flags.erase(std::remove_if(cli.flags.begin() + (std::ptrdiff_t)before, cli.flags.end(),
                                   [](const Cli::Flag& f) { return f.name == "--components"; }),
                    cli.flags.end());
    cli.flag("--model-seed", &c.seed, "seed of the student's cells, the unit hold-out and the minibatches").tag(C);
    cli.flag("--device", &c.device, "cpu or cuda").tag(C);
    cli.flag("--precision", &c.precision, kPrecisionHelp).tag(C);
    cli.flag("--threads", &v.threads, "compute threads (0 = all cores)").range(0, 1 << 16).tag(S);
    cli.flag("--overwrite", &v.overwrite, "replace the finished (or unfinished) run in --out (refused otherwise)").tag(kSweepOwn);
    cli.flag("--resume", &v.resume, "continue the unfinished run in --out (one stopped or killed before its end): its "
             "finished splits are kept, the rest fitted; the same flags and data only").tag(kSweepOwn);
    cli.flag("--split", &v.split, "fit this split alone (1 to --splits; 0 = all), e.g. one job each: it starts the "
             "run in --out, or continues the unfinished one started there with the same flags and data; the call "
             "that leaves every split finished writes the results").range(0, 1000).tag(kSweepOwn);
    cli.flag("--preset", &v.preset, "cpu (a 10-minute CPU fit) or gpu (400 iterations of 32 images: the paper-scale "
             "fit; with --device cuda); other flags win wherever they are given").choices({"cpu", "gpu"}).tag(S);  // it sets the splits
    return cli;
}

void fit_flags_finish(const Cli& cli, FitFlags& v) {
    FitConfig& c = v.c;
    v.scoring.apply(c.score);
    c.memory_init = !v.no_memory_init;
    c.readout_refit = !v.no_refit;
    c.residual = v.cells == "residual";
    c.stop_on_score = v.stop_on == "score";
    precision_check(c.device, c.precision);
    if (!c.readout_refit && !cli.was_given("--readout-lr")) c.readout_lr = 1e-4f;  // Adam alone moves them
    if (!cli.was_given("--warmup")) c.warmup = std::min(c.warmup, c.iters / 10);  // the preset's, scaled to --iters
    if (c.warmup > 0 && c.warmup >= c.iters)
        fail("--warmup: %d iterations of warm-up leave none of the %d of --iters at the full lr; give fewer",
             c.warmup, c.iters);
    if (c.truncate_until > 0 && c.truncate_bptt == 0)
        fail("--truncate-until %d: full BPTT after iteration %d needs --truncate-bptt K (the steps between cuts) as well",
             c.truncate_until, c.truncate_until);
    if (v.onset != "auto") {
        char* end = nullptr;
        c.onset_ms = std::strtof(v.onset.c_str(), &end);
        if (v.onset.empty() || *end || !std::isfinite(c.onset_ms))
            fail("--onset-ms: expected a time in ms or auto, got '%s'", v.onset.c_str());
    }
    if (!c.init.empty()) {  // the checkpoint's structure unless the flags say otherwise (then they must agree)
        if (cli.was_given("--backbone")) fail("--init: '%s' holds its own backbone; drop --backbone", c.init.c_str());
        if (cli.was_given("--cells")) fail("--init: '%s' decides whether its cells are residual; drop --cells", c.init.c_str());
        for (const char* f : {"--cell-scale-init", "--no-memory-init"})
            if (cli.was_given(f)) fail("--init: the cells of '%s' start as they are in it; drop %s", c.init.c_str(), f);
        const InitStructure st = init_structure(c.init);
        if (!cli.was_given("--motif")) c.motif = st.motif;
        if (!cli.was_given("--feedback")) c.feedback = st.feedback;
        c.backbone = c.init;
    }
    if (c.backbone.empty()) c.backbone = find_default_backbone("fit_dynamics");
    motif_parse(c.motif);  // the checkpoint's motif too, before any data work
    if (!cli.was_given("--lr")) c.lr = motif_lr(c.lr, c.motif);
}

namespace {

std::string flag_text(const Cli::Flag& f, const std::string& v) {
    if (f.is_switch) return v == "true" || v == "1" ? "true" : "false";
    if (!f.numeric) return v;
    char* end = nullptr;
    long double x = std::strtold(v.c_str(), &end);
    if (v.empty() || *end) return v;  // not a number: compared as given
    if (!f.integral) return strfmt("%.9Lg", x);
    return v[0] == '-' ? std::to_string(std::strtoll(v.c_str(), nullptr, 10))
                       : std::to_string(std::strtoull(v.c_str(), nullptr, 10));
}

}  // namespace

FlagValues fit_flag_values(const std::vector<std::string>& args) {
    std::vector<char*> argv = {const_cast<char*>("fit_dynamics")};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    FitFlags v;
    const Cli cli = fit_cli(v, fit_preset_of(args));
    auto kept = [](const std::string& n) {
        return n != "--data" && n != "--out" && n != "--threads" && n != "--overwrite" && n != "--resume" &&
               n != "--split" && n != "--device";
    };
    FlagValues out;
    std::vector<std::string> given;
    for (const Cli::Flag& f : cli.flags)
        if (kept(f.name)) out.push_back({f.name, flag_text(f, f.def)});
    for (size_t i = 0; i < args.size(); i++) {
        std::string name = args[i], value;
        if (name.rfind("--", 0) != 0) continue;
        const size_t eq = name.find('=');
        const bool inline_value = eq != std::string::npos;
        if (inline_value) value = name.substr(eq + 1), name.erase(eq);
        const Cli::Flag* f = cli.find(name);
        if (!f) continue;
        if (f->is_switch && !inline_value) value = "true";
        else if (!inline_value) {
            if (i + 1 >= args.size()) break;
            value = args[++i];
        }
        for (auto& kv : out)
            if (kv.first == name) kv.second = flag_text(*f, value);
        given.push_back(name);
    }
    // what fit_flags_finish derives from the others, as it derives it
    auto was_given = [&](const char* n) { return std::find(given.begin(), given.end(), n) != given.end(); };
    auto at = [&](const char* n) -> std::string& {
        for (auto& kv : out)
            if (kv.first == n) return kv.second;
        VT_CHECK(false, "fit_flag_values: no flag %s", n);
        return out[0].second;
    };
    if (was_given("--init") && !at("--init").empty()) {  // the checkpoint's structure (fit_dynamics refuses a bad one)
        try {
            const InitStructure st = init_structure(at("--init"));
            if (!was_given("--motif")) at("--motif") = st.motif;
            if (!was_given("--feedback")) at("--feedback") = st.feedback;
        } catch (const Error&) {
        }
    }
    if (!was_given("--lr"))  // the motif's share of the preset's lr
        at("--lr") = flag_text(*cli.find("--lr"), strfmt("%.6g", motif_lr(v.c.lr, at("--motif"))));
    char *end_w = nullptr, *end_i = nullptr;
    const long long warmup = std::strtoll(at("--warmup").c_str(), &end_w, 10), iters = std::strtoll(at("--iters").c_str(), &end_i, 10);
    if (!was_given("--warmup") && !*end_w && !*end_i)  // the preset's, at most a tenth of --iters (a bad --iters: as given)
        at("--warmup") = std::to_string(std::min(warmup, iters / 10));
    if (!was_given("--readout-lr") && at("--no-readout-refit") == "true")  // Adam alone moves the readouts
        at("--readout-lr") = flag_text(*cli.find("--readout-lr"), "1e-4");
    return out;
}

std::vector<std::string> flag_value_diffs(const FlagValues& was, const FlagValues& now) {
    std::vector<std::string> diffs;
    auto find = [](const FlagValues& v, const std::string& k) {
        return std::find_if(v.begin(), v.end(), [&](const auto& x) { return x.first == k; });
    };
    for (const auto& kv : now) {
        auto it = find(was, kv.first);
        if (it == was.end()) diffs.push_back(kv.first + ": not recorded by the run, " + kv.second + " here");
        else if (it->second != kv.second) diffs.push_back(kv.first + ": " + it->second + " in the run, " + kv.second + " here");
    }
    for (const auto& kv : was)
        if (find(now, kv.first) == now.end())
            diffs.push_back(kv.first + ": " + kv.second + " in the run, a flag this fit_dynamics does not have");
    return diffs;
}

}  // namespace vt
