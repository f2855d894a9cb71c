// fit_dynamics.cpp: ./bin/fit_dynamics, the paper's dynamics fit (models/fit/dynamics.h).
//
//   ./bin/fit_dynamics --motif lstm --feedback conv5:conv2 [--data D.npz] [--out DIR]
//
// Without --data it fits the embedded virtual primate (models/datasets/virtual_primate.h), generating
// data/virtual_primate.npz with the default settings when the file is not there yet.
// Writes DIR/results.json, DIR/results.csv, DIR/predictions.npz (models/fit/predictions.h),
// DIR/ev_over_time.png, DIR/units.png, DIR/loss.png and DIR/checkpoints/split<s>.npz; prints
// a table per area at the end.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/io/json.h"
#include "engine/io/npy.h"
#include "engine/io/plot.h"
#include "engine/progress.h"
#include "engine/io/rundir.h"
#include "models/fit/dynamics.h"
#include "models/fit/features.h"
#include "models/fit/predictions.h"
#include "models/fit/results.h"
#include "models/datasets/npz_stream.h"
#include "models/datasets/virtual_primate.h"
#include "tools/cli.h"
#include "tools/scoring_flags.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

const char* kDefaultData = "data/virtual_primate.npz";

// --preset: settings for a compute budget, applied before the flags (a flag given wins).
//   cpu  the default: a 10-minute run on 2 cores. 24 BPTT iterations of 4 images per split
//        teach little (the closed-form readout on the start does nearly all of it), so the
//        student starts where a short fit does best (measured, README): plain cells as leaky
//        integrators (memory of the image after it goes) and the onset chosen on training
//        images.
//   gpu  the paper-scale fit: 400 iterations of 16 images per split; the student starts as
//        its feedforward unroll (residual cells, a = 0) at onset 0 and learns its own
//        dynamics and delays (measured on the recovery data: long fits on a mismatched
//        backbone do better from there).
void preset_apply(const std::string& name, FitConfig& c, std::string& onset, std::string& cells) {
    if (name == "cpu") return;
    if (name != "gpu") fail("--preset: expected cpu or gpu, got '%s'", name.c_str());
    c.batch = 16, c.iters = 400, c.val_every = 20, c.patience = 4;
    c.memory_init = false, c.cell_scale_init = 0.f;
    cells = "residual";
    onset = "0";
}

std::string preset_of(int argc, char** argv) {
    std::string p = "cpu";
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--preset" && i + 1 < argc) p = argv[i + 1];
        else if (a.rfind("--preset=", 0) == 0) p = a.substr(9);
    }
    return p;
}

// runs/fit_dynamics/<motif>_<feedback> (feedback edges as conv5-conv2+conv4-conv3);
// init_<checkpoint name> with --init.
std::string default_out(const FitConfig& c) {
    if (c.time_varied) return "runs/fit_dynamics/time_varied";
    if (!c.init.empty()) return "runs/fit_dynamics/init_" + fs::path(c.init).stem().string();
    std::string fb = c.feedback;
    std::replace(fb.begin(), fb.end(), ':', '-');
    std::replace(fb.begin(), fb.end(), ',', '+');
    return "runs/fit_dynamics/" + c.motif + "_" + fb;
}

// The ev table printed at the end.
std::string table(const FitResult& R, bool time_varied) {
    std::string s = strfmt("%-5s %-7s %5s  %-18s %-18s %-18s\n", "area", "layer", "units", time_varied ? "EV time-varied" : "EV (fit units)",
                           "EV (held-out units)", "teacher ceiling");
    for (const AreaFit& a : R.areas) {
        auto cell = [](const AreaScore& sc) {
            return std::isfinite(sc.ev_mean) ? strfmt("%.3f +- %.3f", sc.ev_mean, sc.ev_sem) : std::string("n/a");
        };
        s += strfmt("%-5s %-7s %5zu  %-18s %-18s %-18s\n", a.area.c_str(), a.layer.c_str(),
                    a.fit_units.size() + a.heldout_units.size(), cell(a.fit).c_str(),
                    a.heldout_units.empty() ? "n/a" : cell(a.heldout).c_str(),
                    a.has_teacher ? cell(a.teacher).c_str() : "(no teacher)");
    }
    return s;
}

// The data: --data, or the virtual primate (generated into kDefaultData on first use); the
// teacher's noiseless rates where the file has them (the ceiling).
// What was fitted to what, and the table.
std::string summary(const FitConfig& c, const FitResult& R, const std::string& data, bool virtual_primate) {
    return strfmt("\n%s%s on %s (%s): %s\n", c.time_varied ? "time-varied baseline" : c.motif.c_str(),
                  c.time_varied ? "" : (" + feedback " + c.feedback).c_str(), data.c_str(),
                  virtual_primate ? "virtual primate, simulated" : "neural data",
                  R.targets.has_ceiling() ? "noise-corrected EV on held-out images, mean over bins, mean +- SEM over splits"
                                          : "raw r^2 (no ceiling)") +
           table(R, c.time_varied);
}

NeuralData data_load(std::string& data, bool virtual_primate, std::vector<float>& teacher) {
    if (virtual_primate) {
        data = kDefaultData;
        if (fs::exists(data)) {
            std::fprintf(stderr, "fit_dynamics: no --data: using the virtual primate in %s (SIMULATED responses of a "
                                 "known teacher network, not recordings; delete the file to regenerate it)\n", data.c_str());
        } else {
            std::fprintf(stderr, "fit_dynamics: no --data: generating the virtual primate (SIMULATED responses of a "
                                 "known teacher network, not recordings) into %s, once; about 1-2 minutes ...\n", data.c_str());
            VirtualPrimateConfig vc;
            Npz z = virtual_primate_generate(vc, true);
            fs::create_directories(fs::path(data).parent_path());
            npz_write(data, z);
        }
    }
    NeuralData d = neural_data_load(data, true);
    NpzIndex zi = npz_index(data);
    if (zi.has("teacher_responses")) {
        NpyArray t = npz_array(zi, "teacher_responses");
        if (t.shape != Shape{d.N, d.U, d.B})
            fail("'%s': teacher_responses has shape %s, expected (N, U, B) = (%lld, %lld, %lld)", data.c_str(),
                 shape_str(t.shape).c_str(), (long long)d.N, (long long)d.U, (long long)d.B);
        teacher = t.to_f32();
    }
    return d;
}

// results.csv: one row per area, unit set (fit, heldout, teacher) and bin.
void results_csv_write(const std::string& path, const FitResult& R) {
    const Targets& tg = R.targets;
    std::string csv = "area,layer,units,bin_start_ms,bin_end_ms,ev_mean,ev_sem,scoring_units,reliability\n";
    for (const AreaFit& af : R.areas) {
        std::vector<std::pair<const char*, const AreaScore*>> sets = {{"fit", &af.fit}, {"heldout", &af.heldout}};
        if (af.has_teacher) sets.push_back({"teacher", &af.teacher});
        for (const auto& st : sets)
            for (int64_t b = 0; b < tg.B; b++)
                csv += strfmt("%s,%s,%s,%g,%g,%s,%s,%d,%s\n", af.area.c_str(), af.layer.c_str(), st.first,
                              tg.bin_start_ms[b], tg.bin_end_ms[b], json_number(st.second->ev_bin_mean[b]).c_str(),
                              json_number(st.second->ev_bin_sem[b]).c_str(), st.second->units_per_bin[b],
                              json_number(af.fit.ceiling.empty() ? NAN : af.fit.ceiling[b]).c_str());
    }
    file_write_atomic(path, csv.data(), csv.size());

}

std::vector<float> bin_centres(const Targets& tg) {
    std::vector<float> mid;
    for (int64_t b = 0; b < tg.B; b++) mid.push_back(0.5f * (tg.bin_start_ms[b] + tg.bin_end_ms[b]));
    return mid;
}

// ev_over_time.png: per area, fit units (solid, +- SEM) and held-out units (dashed); teacher (dotted).
void plot_ev_over_time(const std::string& path, const FitConfig& c, const FitResult& R, float presentation_ms) {
    const Targets& tg = R.targets;
    const std::vector<float> mid = bin_centres(tg);
    LinePlot lp;
    lp.title = c.time_varied ? std::string("time-varied PLS baseline") : c.motif + " + feedback " + c.feedback;
    lp.xlabel = "time after image onset (ms, bin centres)";
    lp.ylabel = tg.has_ceiling() ? "noise-corrected EV (median over units)" : "raw r^2";
    for (size_t a = 0; a < R.areas.size(); a++) {
        const AreaFit& af = R.areas[a];
        LineSeries s;
        s.label = af.area + " (" + af.layer + ")", s.x = mid, s.y = af.fit.ev_bin_mean, s.y_err = af.fit.ev_bin_sem;
        s.color = (int)a, s.markers = true;
        lp.series.push_back(s);
        if (!af.heldout_units.empty()) {
            LineSeries h;
            h.label = af.area + " held-out units", h.x = mid, h.y = af.heldout.ev_bin_mean, h.color = (int)a, h.dash = 8, h.width = 1.5f;
            lp.series.push_back(h);
        }
        if (af.has_teacher) {
            LineSeries t;
            t.label = af.area + " teacher (ceiling)", t.x = mid, t.y = af.teacher.ev_bin_mean, t.color = (int)a, t.dash = 3, t.width = 1.5f;
            lp.series.push_back(t);
        }
    }
    lp.xspans.push_back({0.f, presentation_ms, "image on"});
    plot_lines(path, lp);

}

// units.png: the two most reliable units of each area, observed vs predicted on their best and
// worst held-out image.
void plot_units(const std::string& path, const FitResult& R, float presentation_ms) {
    const Targets& tg = R.targets;
    const std::vector<float> mid = bin_centres(tg);
    GridPlot gp;
    gp.title = "held-out images: observed trial mean (blue) vs model (vermillion), sp/s";
    gp.xlabel = "time after image onset (ms)";
    gp.cols = 4;
    for (const AreaFit& af : R.areas) {
        std::vector<std::pair<float, int>> rel;
        for (int u : af.fit_units) {
            double r = 0;
            for (int64_t b = 0; b < tg.B; b++) r += tg.has_ceiling() && std::isfinite(tg.ceiling[u * tg.B + b]) ? tg.ceiling[u * tg.B + b] : 0;
            rel.push_back({(float)r, u});
        }
        std::sort(rel.rbegin(), rel.rend());
        for (size_t k = 0; k < std::min<size_t>(2, rel.size()); k++) {
            int u = rel[k].second;
            // two images: the unit's strongest and weakest mean response
            std::vector<std::pair<float, int64_t>> by;
            for (int64_t i = 0; i < tg.N; i++) {
                double m = 0;
                for (int64_t b = 0; b < tg.B; b++) m += std::isfinite(tg.mean[(i * tg.U + u) * tg.B + b]) ? tg.mean[(i * tg.U + u) * tg.B + b] : 0;
                by.push_back({(float)m, i});
            }
            std::sort(by.begin(), by.end());
            for (int64_t i : {by.back().second, by.front().second}) {
                GridPanel p;
                p.title = strfmt("%s %s, %s", af.area.c_str(), tg.unit_id[u].c_str(), i == by.back().second ? "best image" : "worst image");
                LineSeries o, m;
                o.label = "observed", m.label = "model (held-out prediction)";
                o.x = m.x = mid;
                for (int64_t b = 0; b < tg.B; b++) {
                    o.y.push_back(tg.mean[(i * tg.U + u) * tg.B + b]);
                    m.y.push_back(R.predictions[(i * tg.U + u) * tg.B + b]);
                }
                o.markers = true;
                p.series = {o, m};
                gp.panels.push_back(p);
            }
        }
    }
    gp.xspans.push_back({0.f, presentation_ms, ""});
    plot_grid_lines(path, gp);
}

// loss.png: the training loss per split, validations as markers.
void plot_loss(const std::string& path, const FitResult& R) {
    LinePlot loss;
    loss.title = "BPTT training loss per split (validation: markers)";
    loss.xlabel = "iteration";
    loss.ylabel = "loss (standardised units)";
    for (size_t s = 0; s < R.splits.size(); s++) {
        const SplitLog& L = R.splits[s];
        LineSeries tr, va;
        tr.label = strfmt("split %zu train", s + 1), tr.color = (int)s, tr.width = 1.f;
        for (size_t i = 0; i < L.train_loss.size(); i++) tr.x.push_back((float)(i + 1)), tr.y.push_back(L.train_loss[i]);
        va.label = "", va.color = (int)s, va.markers = true, va.width = 2.f;
        va.x.push_back(0), va.y.push_back(L.init_val_loss);
        for (size_t i = 0; i < L.val_iter.size(); i++) va.x.push_back((float)L.val_iter[i]), va.y.push_back(L.val_loss[i]);
        if (!tr.x.empty()) loss.series.push_back(tr);
        loss.series.push_back(va);
    }
    plot_lines(path, loss);
}

}  // namespace

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        FitConfig c;
        std::string data, out, onset = "auto", cells = "plain", stop_on = "score";
        bool no_memory_init = false, overwrite = false, no_refit = false;
        int threads = 0;
        Cli cli("fit_dynamics", "",
                "Fit a ConvRNN to the time course of V4 and IT responses by backpropagation through time (the\n"
                "paper's dynamics fit): frozen backbone, `--motif` cells at every layer, `--feedback` edges, one\n"
                "time-shared linear readout per area; scored on held-out images (noise-corrected EV per bin) and\n"
                "on held-out units. Without --data: the embedded virtual primate (a SIMULATED dataset with a known\n"
                "teacher), generated into " + std::string(kDefaultData) + " on first use.\n"
                "Writes DIR/results.json, results.csv, predictions.npz (every image's held-out prediction), ev_over_time.png,\n"
                "units.png, loss.png, checkpoints/.");
        cli.flag("--data", &data, "neural dataset .npz (default: the virtual primate, " + std::string(kDefaultData) + ")");
        cli.flag("--out", &out, "output folder (default runs/fit_dynamics/<motif>_<feedback>, or init_<checkpoint name> with --init)");
        cli.flag("--backbone", &c.backbone, strfmt("backbone checkpoint (default %s)", kDefaultBackbone));
        cli.flag("--init", &c.init, "start the student from this model checkpoint (e.g. make_virtual_primate --write-teacher; "
                 "not a fit's split checkpoint): its backbone, cells and feedback; --motif and --feedback default to "
                 "its own");
        cli.flag("--arch", &c.arch, "expected architecture (checked against the checkpoint's meta.arch)");
        cli.flag("--motif", &c.motif, "cell at every layer: " + list_join(motif_names()));
        cli.flag("--feedback", &c.feedback, "feedback edges src:dst, comma-separated, or none");
        cli.flag("--readout", &c.readout, "area=layer pairs: the layer each area is read from");
        cli.flag("--time-varied", &c.time_varied,
                 "the paper's baseline instead of BPTT: feedforward features, an independent PLS per bin");
        cli.flag("--ms-per-step", &c.ms_per_step, "milliseconds per model step").positive().range(0, 1000);
        cli.flag("--onset-ms", &onset, "time of model step 0 after image onset (ms), or auto: chosen among 0-6 steps "
                 "on training images with the fresh network");
        cli.flag("--steps", &c.steps, "model steps T (0 = what the latest bin needs)").range(0, 1000);
        cli.flag("--image-steps", &c.image_steps, "steps the image is shown (-1 = the data's presentation_ms / ms-per-step)").range(-1, 1000);
        cli.flag("--batch", &c.batch, "images per BPTT minibatch").range(1, 1 << 16);
        cli.flag("--iters", &c.iters, "BPTT iterations per split, at most").range(0, 10000000);
        cli.flag("--val-every", &c.val_every, "iterations between validations (early stopping)").range(1, 10000000);
        cli.flag("--patience", &c.patience, "validations without improvement before stopping").range(0, 1000000);
        cli.flag("--val-fraction", &c.val_fraction, "fraction of the training images held out for validation").positive().range(0, 0.9f);
        cli.flag("--lr", &c.lr, "Adam learning rate of cells and feedback (a weight tensor: lr / sqrt(fan-in))").positive().range(0, 10);
        cli.flag("--readout-lr", &c.readout_lr, "Adam learning rate of the readouts between closed-form re-solves (0: they stay as solved; "
                 "1e-4 with --no-readout-refit)").range(0, 10);
        cli.flag("--readout-components", &c.readout_components,
                 "at most this many PLS components per readout; each unit's count is chosen on validation images").range(1, 100000);
        cli.flag("--weight-decay", &c.weight_decay, "decoupled weight decay (AdamW)").range(0, 1);
        cli.flag("--stop-on", &stop_on, "what early stopping and the readout re-solves watch on the validation images: "
                 "score (a median r^2 per bin, as scored) or loss");
        cli.flag("--no-readout-refit", &no_refit,
                 "never re-solve the readouts in closed form during training (Adam alone moves them)");
        cli.flag("--cells", &cells, "plain (the paper's, h = cell(x)) or residual (h = x + a * cell(x), a per channel; "
                 "a = 0 at the start is the feedforward unroll)");
        cli.flag("--cell-scale-init", &c.cell_scale_init,
                 "residual cells: the scale a of every cell at the start (0: the fresh student is its feedforward "
                 "unroll)").range(0, 10);
        cli.flag("--no-memory-init", &no_memory_init,
                 "cells start with PyTorch's default init instead of leaky integrators of a spread of timescales");
        cli.flag("--mean-weight", &c.mean_weight, "loss weight of each unit's mean time course (vs image-to-image variation)").range(0, 1);
        cli.flag("--heldout-units", &c.heldout_fraction, "fraction of each area's units held out of the fit").range(0, 0.9f);
        cli.flag("--heldout-fit-images", &c.heldout_fit_images,
                 "training images the held-out units' PLS is fitted on (a seeded subset; 0 = all)").range(0, 1 << 30);
        ScoringFlags scoring;
        scoring.add(cli, c.score);
        cli.flag("--model-seed", &c.seed, "seed of the student's cells, the unit hold-out and the minibatches");
        cli.flag("--device", &c.device, "cpu or cuda");
        cli.flag("--threads", &threads, "compute threads (0 = all cores)").range(0, 1 << 16);
        cli.flag("--overwrite", &overwrite, "replace the finished run in --out (refused otherwise)");
        std::string preset = preset_of(argc, argv);
        preset_apply(preset, c, onset, cells);
        no_memory_init = !c.memory_init;  // the preset's start; --no-memory-init after it wins
        cli.flag("--preset", &preset, "cpu (a 10-minute CPU fit) or gpu (400 iterations of 16 images: the paper-scale "
                 "fit; with --device cuda); other flags win wherever they are given");
        cli.parse(argc, argv);
        scoring.apply(c.score);
        c.memory_init = !no_memory_init;
        c.readout_refit = !no_refit;
        if (cells != "plain" && cells != "residual") fail("--cells: expected plain or residual, got '%s'", cells.c_str());
        c.residual = cells == "residual";
        if (stop_on != "score" && stop_on != "loss") fail("--stop-on: expected score or loss, got '%s'", stop_on.c_str());
        c.stop_on_score = stop_on == "score";
        if (!c.readout_refit && !cli.was_given("--readout-lr")) c.readout_lr = 1e-4f;  // Adam alone moves them
        if (onset != "auto") {
            char* end = nullptr;
            c.onset_ms = std::strtof(onset.c_str(), &end);
            if (onset.empty() || *end || !std::isfinite(c.onset_ms))
                fail("--onset-ms: expected a time in ms or auto, got '%s'", onset.c_str());
        }
        if (!cli.positional.empty()) fail("fit_dynamics: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
        backend_set_threads(threads);
        if (!c.init.empty()) {  // the checkpoint's structure unless the flags say otherwise (then they must agree)
            if (cli.was_given("--backbone"))
                fail("--init: '%s' holds its own backbone; drop --backbone", c.init.c_str());
            if (cli.was_given("--cells"))
                fail("--init: '%s' decides whether its cells are residual; drop --cells", c.init.c_str());
            for (const char* f : {"--cell-scale-init", "--no-memory-init"})
                if (cli.was_given(f))
                    fail("--init: the cells of '%s' start as they are in it; drop %s", c.init.c_str(), f);
            const InitStructure st = init_structure(c.init);
            if (!cli.was_given("--motif")) c.motif = st.motif;
            if (!cli.was_given("--feedback")) c.feedback = st.feedback;
            c.backbone = c.init;
        }
        if (c.backbone.empty()) c.backbone = find_default_backbone("fit_dynamics");
        motif_parse(c.motif);  // fail early on a bad flag, before any data work
        if (out.empty()) out = default_out(c);
        // The run claims its folder (a second run into it is refused while this one runs; a
        // finished run in it is refused unless --overwrite), writes into a private partial
        // folder and publishes everything together at the end (engine/io/rundir.h).
        RunDirOptions claim_opt;
        claim_opt.tool = "fit_dynamics";
        claim_opt.overwrite = overwrite;
        RunDir claim = rundir_claim(out, claim_opt);
        const std::string final_out = out;
        out = claim.partial;

        const bool virtual_primate = data.empty();
        std::vector<float> teacher;
        NeuralData d = data_load(data, virtual_primate, teacher);
        fs::create_directories(out);
        if (!c.time_varied) {
            c.checkpoint_dir = out + "/checkpoints";
            fs::create_directories(c.checkpoint_dir);
        }
        std::fprintf(stderr, "fit_dynamics: %s: %lld images %dx%d, %lld units, %lld bins [%g, %g) ms, R = %lld; backbone %s\n",
                     data.c_str(), (long long)d.N, d.H, d.W, (long long)d.U, (long long)d.B, d.bin_start_ms.front(),
                     d.bin_end_ms.back(), (long long)d.R, c.backbone.c_str());

        FitResult R = fit_dynamics(d, c, teacher, [](const std::string& s) { std::fprintf(stderr, "fit_dynamics: %s\n", s.c_str()); });
        for (const std::string& n : R.notes) std::fprintf(stderr, "fit_dynamics: note: %s\n", n.c_str());
        const Json js = fit_results_json(c, R, {preset, data, virtual_primate});
        results_csv_write(out + "/results.csv", R);
        npz_write(out + "/predictions.npz", fit_predictions_npz(R));
        plot_ev_over_time(out + "/ev_over_time.png", c, R, d.presentation_ms);
        if (!c.time_varied) {
            plot_units(out + "/units.png", R, d.presentation_ms);
            plot_loss(out + "/loss.png", R);
        }

        // results.json last: a run is finished (the sweep reuses it) iff this file exists
        json_write(out + "/results.json", js);
        rundir_publish(claim);  // every file into the folder, results.json last
        out = final_out;

        std::printf("%s", summary(c, R, data, virtual_primate).c_str());
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        std::fprintf(stderr, "fit_dynamics: wrote %s/{results.json,results.csv,predictions.npz,ev_over_time.png%s} in %s; peak RSS %.0f MB\n",
                     out.c_str(), c.time_varied ? "" : ",units.png,loss.png,checkpoints/", format_duration(R.seconds).c_str(),
                     ru.ru_maxrss / 1024.0);
        return 0;
    });
}
