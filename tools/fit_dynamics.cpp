// fit_dynamics.cpp: ./bin/fit_dynamics, the paper's dynamics fit (models/fit/dynamics.h).
//
//   ./bin/fit_dynamics --motif lstm --feedback conv5:conv2 [--data D.npz] [--out DIR]
//
// Without --data it fits the embedded virtual primate (models/datasets/virtual_primate.h), generating
// it when the file is not there yet: data/virtual_primate.npz (320 images), or with --preset gpu
// data/virtual_primate_1920.npz (models/fit/fit_flags.h fit_default_primate).
// Writes DIR/results.json, DIR/results.csv, DIR/predictions.npz (models/fit/predictions.h),
// DIR/ev_over_time.png, DIR/units.png, DIR/loss.png and DIR/checkpoints/split<s>.npz; prints
// a table per area at the end. While it runs, each split's checkpoint, and when it ends its
// results, are kept in DIR/.unfinished/ (with run.json, what the run is), which a run stopped
// or killed leaves behind: --resume continues it from there (the same flags and data only).
// --split K fits split K alone into that folder (starting the run, or joining it), so that
// separate calls (one job each, one after another on one folder) fit the splits; the call that
// leaves every split finished publishes the results.
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
#include "models/fit/fit_flags.h"
#include "models/fit/predictions.h"
#include "models/fit/results.h"
#include "models/datasets/npz_stream.h"
#include "models/datasets/virtual_primate.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

// runs/fit_dynamics/<motif>_<feedback> (feedback edges as conv5-conv2+conv4-conv3), or
// time_varied, or init_<checkpoint name> with --init; then what else the run is of, so that
// fits of other data or presets do not meet in one folder (where the second would be refused):
// _gpu at the gpu preset, _<data name> with --data, _on_<backbone name> with --backbone.
std::string default_out(const FitConfig& c, const std::string& preset, const std::string& data, bool own_backbone) {
    std::string name;
    if (c.time_varied) name = "time_varied";
    else if (!c.init.empty()) name = "init_" + fs::path(c.init).stem().string();
    else {
        std::string fb = c.feedback;
        std::replace(fb.begin(), fb.end(), ':', '-');
        std::replace(fb.begin(), fb.end(), ',', '+');
        name = c.motif + "_" + fb;
    }
    if (preset != "cpu") name += "_" + preset;
    if (!data.empty()) name += "_" + fs::path(data).stem().string();
    if (own_backbone) name += "_on_" + fs::path(c.backbone).stem().string();
    return "runs/fit_dynamics/" + name;
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

// The data: --data, or the preset's virtual primate (fit_default_primate: generated on first
// use); the teacher's noiseless rates where the file has them (the ceiling).
// What was fitted to what, and the table.
std::string summary(const FitConfig& c, const FitResult& R, const std::string& data, bool virtual_primate) {
    return strfmt("\n%s%s on %s (%s): %s\n", c.time_varied ? "time-varied baseline" : c.motif.c_str(),
                  c.time_varied ? "" : (" + feedback " + c.feedback).c_str(), data.c_str(),
                  virtual_primate ? "virtual primate, simulated" : "neural data",
                  R.targets.has_ceiling() ? "noise-corrected EV on held-out images, mean over bins, mean +- SEM over splits"
                                          : "raw r^2 (no ceiling)") +
           table(R, c.time_varied);
}

NeuralData data_load(std::string& data, bool virtual_primate, const std::string& preset, std::vector<float>& teacher) {
    if (virtual_primate) {
        const DefaultPrimate vp = fit_default_primate(preset);
        data = vp.path;
        if (fs::exists(data)) {
            std::fprintf(stderr, "fit_dynamics: no --data: using the virtual primate in %s (SIMULATED responses of a "
                                 "known teacher network, not recordings; delete the file to regenerate it)\n", data.c_str());
        } else {
            const int minutes = (vp.config.images + 399) / 400;  // measured: 320 images 0:30-1:00, 1920 4:52
            std::fprintf(stderr, "fit_dynamics: no --data: generating the virtual primate (SIMULATED responses of a "
                                 "known teacher network, not recordings; %d images) into %s, once; about %d minute%s on 2 "
                                 "cores ...\n", vp.config.images, data.c_str(), minutes, minutes > 1 ? "s" : "");
            Npz z = virtual_primate_generate(vp.config, true);
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

// results.csv: one row per area, unit set (fit, heldout, teacher) and bin; `reliability` is the
// median ceiling rho of that set's units in that bin (the teacher: all of the area's units).
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
                              json_number(st.second->ceiling.empty() ? NAN : st.second->ceiling[b]).c_str());
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
    lp.title = c.time_varied ? std::string("time-varied baseline") : c.motif + " + feedback " + c.feedback;
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

// The splits DIR/.unfinished holds finished (their record and checkpoint, dynamics.h
// split_finished), counted from 1.
std::vector<int> unfinished_splits(const std::string& dir) {
    std::vector<int> done;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        int s = -1, end = 0;
        if (std::sscanf(name.c_str(), "split%d.done.npz%n", &s, &end) == 1 && end == (int)name.size() && s >= 0 &&
            split_finished(dir, s))
            done.push_back(s + 1);
    }
    std::sort(done.begin(), done.end());
    return done;
}

// "splits 1, 2 finished" (or "no split finished yet")
std::string unfinished_state(const std::vector<int>& done) {
    if (done.empty()) return "no split finished yet";
    std::string s = done.size() == 1 ? "split " : "splits ";
    for (size_t k = 0; k < done.size(); k++) s += strfmt("%s%d", k ? ", " : "", done[k]);
    return s + " finished";
}

// Leftover temporary files (npy.h's path.tmp.<pid>) of the killed run in DIR/.unfinished:
// the claim on --out is held, so no live run writes there.
void unfinished_clean(const std::string& dir) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
}

}  // namespace

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        FitFlags flags;
        Cli cli = fit_cli(flags, fit_preset_of(argc, argv));  // models/fit/fit_flags.h, shared with the sweep
        cli.parse(argc, argv);
        if (!cli.positional.empty()) fail("fit_dynamics: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
        fit_flags_finish(cli, flags);
        backend_set_threads(flags.threads);
        FitConfig& c = flags.c;
        std::string data = flags.data, out = flags.out;
        const std::string preset = flags.preset;
        // the default run is shrunk to fit 10 minutes on 2 cores: say so, and how to run the full one
        const std::string shrunk =
            preset == "cpu" && !cli.was_given("--splits")
                ? strfmt("fit_dynamics: the cpu preset (a 10-minute run on 2 cores): %d splits (each half of the images "
                         "predicted by a model fitted on the other half) x %d BPTT iterations of %d images; the "
                         "paper-scale fit: --preset gpu --device cuda (4 splits x 400 iterations of 32 images%s)\n",
                         c.score.folds, c.iters, c.batch,
                         data.empty() ? strfmt("; without --data, on %d images", fit_default_primate("gpu").config.images).c_str()
                                      : "")
                : "";
        if (out.empty()) out = default_out(c, preset, data, cli.was_given("--backbone"));
        // The run claims its folder (a second run into it is refused while this one runs; a
        // finished run in it is refused unless --overwrite), writes into a private partial
        // folder and publishes everything together at the end (engine/io/rundir.h).
        RunDirOptions claim_opt;
        claim_opt.tool = "fit_dynamics";
        claim_opt.overwrite = flags.overwrite;
        if (flags.resume && flags.overwrite)
            fail("--resume and --overwrite: pick one (continue the unfinished run in --out, or start it over)");
        if (flags.resume && c.time_varied)
            fail("--resume: the time-varied baseline has nothing to resume (no BPTT; it takes seconds): drop --resume");
        if (flags.split > 0 && c.time_varied)
            fail("--split: the time-varied baseline has no BPTT to split (it takes seconds): drop --split");
        if (flags.split > c.score.folds)
            fail("--split: split %d of a run of %d splits (--splits): expected 1 to %d", flags.split, c.score.folds,
                 c.score.folds);
        c.only_split = flags.split - 1;
        // An unfinished run beside a finished one (an --overwrite started it): continuing it (--resume,
        // --split; run.json says whether it is this run) replaces the finished one when it publishes,
        // and a new run is refused below, naming the unfinished run, rather than by the claim
        if (fs::exists(out + "/.unfinished/run.json") &&
            (flags.resume || flags.split > 0 || !unfinished_splits(out + "/.unfinished").empty()))
            claim_opt.overwrite = true;
        RunDir claim = rundir_claim(out, claim_opt);
        const std::string final_out = out;
        out = claim.partial;
        // An interrupted run's finished splits (and the running one's checkpoints): kept out of
        // the partial folder, so that a stopped or killed run leaves them for --resume.
        const std::string unfinished = final_out + "/.unfinished";
        if (fs::exists(unfinished)) {
            const std::vector<int> done = unfinished_splits(unfinished);
            if (flags.split > 0 && flags.overwrite && !done.empty())  // a job script's flags on every call: refused
                fail("--split %d --overwrite: '%s' holds an unfinished run (%s) that --overwrite would discard: drop "
                     "--overwrite to continue it, or remove %s to start over", flags.split, final_out.c_str(),
                     unfinished_state(done).c_str(), unfinished.c_str());
            if (flags.overwrite || (!flags.resume && done.empty())) {  // nothing finished: nothing to lose
                fs::remove_all(unfinished);
            } else if (!flags.resume && flags.split == 0) {  // (--split joins it)
                fail("--out '%s' holds an unfinished run (%s; stopped, killed, or fitted in part with --split): %s, or "
                     "another --out", final_out.c_str(), unfinished_state(done).c_str(),
                     c.time_varied ? "pass --overwrite to replace it"
                                   : "pass --resume (or --split N) to continue it, --overwrite to start over");
            }
        } else if (flags.resume) {
            fail("--resume: --out '%s' holds no unfinished run to continue (no %s/.unfinished/)", final_out.c_str(),
                 final_out.c_str());
        }

        const bool virtual_primate = data.empty();
        std::vector<float> teacher;
        NeuralData d = data_load(data, virtual_primate, preset, teacher);
        // what this run fits, fingerprinted as it is loaded (the sweep reuses a run only on the same files)
        FitRun run{preset, data, virtual_primate, fit_flag_values(std::vector<std::string>(argv + 1, argv + argc)),
                   0, 0, 0};
        run.data_crc32 = file_crc32(data, &run.data_bytes);
        run.backbone_crc32 = file_crc32(c.backbone, nullptr);
        fs::create_directories(out);
        const bool join = !c.time_varied && fs::exists(unfinished);  // --resume, or --split's later calls
        if (join) {  // only the run that was started, on the same data and checkpoint
            const std::string why = fit_run_mismatch(fit_run_read(unfinished + "/run.json"), run);
            if (!why.empty())
                fail("%s: the unfinished run in '%s' was started otherwise (%s): %s it with its own flags and "
                     "data, or pass --overwrite to start over", flags.resume ? "--resume" : "--split", final_out.c_str(),
                     why.c_str(), flags.resume ? "resume" : "continue");
            unfinished_clean(unfinished);
            std::fprintf(stderr, "fit_dynamics: resuming the unfinished run in %s (%s)\n", final_out.c_str(),
                         unfinished_state(unfinished_splits(unfinished)).c_str());
        } else if (!c.time_varied) {
            fs::create_directories(unfinished);
            json_write(unfinished + "/run.json", fit_run_json(run));
        }
        if (!c.time_varied) c.checkpoint_dir = unfinished, c.resume = join, c.run_id = fit_run_id(run);
        const bool split_was_done = flags.split > 0 && join && split_finished(unfinished, flags.split - 1);
        std::fprintf(stderr, "fit_dynamics: %s: %lld images %dx%d, %lld units, %lld bins [%g, %g) ms, R = %lld; backbone %s\n",
                     data.c_str(), (long long)d.N, d.H, d.W, (long long)d.U, (long long)d.B, d.bin_start_ms.front(),
                     d.bin_end_ms.back(), (long long)d.R, c.backbone.c_str());
        std::fprintf(stderr, "%s", shrunk.c_str());  // once the inputs are known good (a bad one is one error line)

        FitResult R;
        try {
            R = fit_dynamics(d, c, teacher, [](const std::string& s) { std::fprintf(stderr, "fit_dynamics: %s\n", s.c_str()); });
        } catch (...) {  // a run that failed before any split finished leaves nothing to resume
            std::error_code ec;
            if (!c.time_varied && unfinished_splits(unfinished).empty()) fs::remove_all(unfinished, ec);
            throw;
        }
        if (R.partial) {  // --split: the other splits are other calls'; nothing is published yet
            std::fprintf(stderr, "fit_dynamics: split %d of %d %s; the run in %s stays unfinished (%s): fit the "
                         "others with --split N (or all that are left with --resume), the same flags and data; the "
                         "call that finishes the last one writes the results\n", flags.split, c.score.folds,
                         split_was_done ? "was already finished (nothing fitted)" : "finished", final_out.c_str(),
                         unfinished_state(unfinished_splits(unfinished)).c_str());
            return 0;
        }
        for (const std::string& n : R.notes) std::fprintf(stderr, "fit_dynamics: note: %s\n", n.c_str());
        const Json js = fit_results_json(c, R, run);
        results_csv_write(out + "/results.csv", R);
        npz_write(out + "/predictions.npz", fit_predictions_npz(R));
        plot_ev_over_time(out + "/ev_over_time.png", c, R, d.presentation_ms);
        if (!c.time_varied) {
            plot_units(out + "/units.png", R, d.presentation_ms);
            plot_loss(out + "/loss.png", R);
        }

        if (!c.time_varied) {  // the splits' checkpoints join the run's files (linked: .unfinished stays whole until published)
            fs::create_directories(out + "/checkpoints");
            for (size_t s = 0; s < R.splits.size(); s++) {
                const std::string src = split_checkpoint_path(unfinished, (int)s), dst = split_checkpoint_path(out + "/checkpoints", (int)s);
                std::error_code ec;
                fs::create_hard_link(src, dst, ec);
                if (ec) fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
            }
        }
        // results.json last: a run is finished (the sweep reuses it) iff this file exists; once
        // published, and before the folder is unlocked, nothing is left to resume
        json_write(out + "/results.json", js);
        rundir_publish(claim, [&] {
            std::error_code ec;
            fs::remove_all(unfinished, ec);
        });
        out = final_out;

        std::printf("%s", summary(c, R, data, virtual_primate).c_str());
        std::fprintf(stderr, "%s", shrunk.c_str());
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        std::fprintf(stderr, "fit_dynamics: wrote %s/{results.json,results.csv,predictions.npz,ev_over_time.png%s} in %s; peak RSS %.0f MB\n",
                     out.c_str(), c.time_varied ? "" : ",units.png,loss.png,checkpoints/", format_duration(R.seconds).c_str(),
                     ru.ru_maxrss / 1024.0);
        return 0;
    });
}
