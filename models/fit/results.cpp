// results.cpp: fit_dynamics' results.json, written and read (see results.h).
#include "models/fit/results.h"

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "engine/io/npy.h"
#include "kernels/error.h"
#include "models/fit/fit_flags.h"

namespace vt {

namespace {

Json json_ev_bins(const Targets& tg, const AreaScore& a) {
    Json bins = Json::array();
    for (int64_t b = 0; b < tg.B; b++)
        bins.push_back({{"bin_start_ms", json_num(tg.bin_start_ms[b])}, {"bin_end_ms", json_num(tg.bin_end_ms[b])},
                        {"mean", json_num(a.ev_bin_mean[b])}, {"sem", json_num(a.ev_bin_sem[b])},
                        {"units", a.units_per_bin[b]}});
    return bins;
}

// {"mean", "sem", "per_split"}: per split the mean over bins with scoring units.
Json json_ev(const Targets& tg, const AreaScore& a) {
    std::vector<double> per_split;
    for (int k = 0; k < tg.folds.k; k++) {
        double sum = 0;
        int c = 0;
        for (int64_t b = 0; b < tg.B; b++) {
            float v = a.ev[k * tg.B + b];
            if (v == v) sum += v, c++;
        }
        per_split.push_back(c ? sum / c : NAN);
    }
    return {{"mean", json_num(a.ev_mean)}, {"sem", json_num(a.ev_sem)}, {"per_split", json_nums(per_split)}};
}

Json json_score(const Targets& tg, const AreaScore& a, int units) {
    return {{"units", units}, {"ev", json_ev(tg, a)}, {"ev_per_bin", json_ev_bins(tg, a)}};
}

}  // namespace

Json fit_results_json(const FitConfig& c, const FitResult& R, const FitRun& run) {
    const Targets& tg = R.targets;
    Json st = {
        {"preset", run.preset},
        {"tool", "fit_dynamics"},
        {"data", run.data},
        {"data_crc32", strfmt("%08x", run.data_crc32)},
        {"data_bytes", run.data_bytes},
        {"backbone_crc32", strfmt("%08x", run.backbone_crc32)},
        {"virtual_primate", run.virtual_primate},
        {"backbone", c.backbone},
        {"init", c.init.empty() ? Json(nullptr) : Json(c.init)},
        {"motif", c.motif},
        {"feedback", c.feedback},
        {"readout", c.readout},
        {"time_varied", c.time_varied},
        {"residual_cells", R.residual_cells},
        {"ms_per_step", json_num(c.ms_per_step)},
        {"onset_ms", json_num(R.onset_ms)},
        {"steps", R.T},
        {"image_steps", R.image_steps},
        {"steps_per_bin", R.steps_of_bin},
        {"onset_chosen", std::isnan(c.onset_ms)},
        {"readout_components", c.readout_components},
        {"readout_solver", c.readout_solver},
        {"memory_init", c.init.empty() ? Json(c.memory_init) : Json(nullptr)},  // --init: the checkpoint's cells
        {"cell_scale_init", c.init.empty() ? json_num(c.cell_scale_init) : Json(nullptr)},
        {"readout_refit", c.readout_refit},
        {"stop_on", c.stop_on_score ? "score" : "loss"},
        {"batch", c.batch},
        {"iters", c.iters},
        {"val_every", c.val_every},
        {"patience", c.patience},
        {"val_fraction", json_num(c.val_fraction)},
        {"lr", json_num(c.lr)},
        {"readout_lr", json_num(c.readout_lr)},
        {"feedback_lr", json_num(c.feedback_lr)},
        {"lr_schedule", c.lr_schedule},
        {"warmup", c.warmup},
        {"weight_decay", json_num(c.weight_decay)},
        {"clip_grad", json_num(c.clip_grad)},
        {"truncate_bptt", c.truncate_bptt},
        {"truncate_until", c.truncate_until},
        {"mean_weight", json_num(c.mean_weight)},
        {"heldout_fraction", json_num(c.heldout_fraction)},
        {"heldout_fit_images", c.heldout_fit_images},
        {"splits", c.score.folds},
        {"pls", c.score.pls == PlsAlgorithm::Nipals ? "nipals" : "simpls"},
        {"seed", c.score.seed},
        {"model_seed", c.seed},
        {"ceiling_splits", c.score.ceiling_splits},
        {"min_reliability", json_num(c.score.min_reliability)},
        {"stratified", tg.folds.stratified},
        {"device", device_name(c.device)},
        {"precision", precision_name(c.precision)},
        {"trainable_params", R.trainable_params},
    };
    st["flags"] = Json::object();
    for (const auto& kv : run.flags) st["flags"][kv.first] = kv.second;
    Json areas = Json::object();
    for (const AreaFit& af : R.areas) {
        Json rel = Json::array();
        for (int64_t b = 0; b < tg.B; b++)
            rel.push_back({{"bin_start_ms", json_num(tg.bin_start_ms[b])}, {"bin_end_ms", json_num(tg.bin_end_ms[b])},
                           {"median_rho", json_num(af.fit.ceiling.empty() ? NAN : af.fit.ceiling[b])}});
        Json a = {{"layer", af.layer},
                  {"units", (int)af.fit_units.size()},
                  {"ev", json_ev(tg, af.fit)},
                  {"ev_per_bin", json_ev_bins(tg, af.fit)},
                  {"heldout_units", json_score(tg, af.heldout, (int)af.heldout_units.size())},
                  {"reliability", rel}};
        if (af.has_teacher) a["teacher"] = json_score(tg, af.teacher, (int)(af.fit_units.size() + af.heldout_units.size()));
        a["fit_units"] = af.fit_units, a["heldout_unit_ids"] = af.heldout_units;
        areas[af.area] = a;
    }
    Json splits = Json::array();
    for (const SplitLog& L : R.splits)
        splits.push_back({{"onset_ms", json_num(L.onset_ms)},
                          {"steps", L.steps},
                          {"iterations", L.iters_done},
                          {"best_iteration", L.best_iter},
                          {"init_val_loss", json_num(L.init_val_loss)},
                          {"init_val_score", json_num(L.init_val_score)},
                          {"seconds", json_num(L.seconds)},
                          {"refits", L.refits},
                          {"val_iterations", L.val_iter},
                          {"val_loss", json_nums(L.val_loss)},
                          {"val_score", json_nums(L.val_score)},
                          {"train_loss", json_nums(L.train_loss)},
                          {"lr", json_nums(L.lr)}});
    return {{"format", kFitResultsFormat}, {"settings", st}, {"areas", areas}, {"splits", splits},
            {"notes", R.notes}, {"seconds", json_num(R.seconds)}};
}

// ---- reading it back ---------------------------------------------------------------------------

namespace {

// Field access for one results.json: a missing or mistyped field fails naming file and field.
struct ResultReader {
    std::string path;

    const Json& get(const Json& o, const std::string& key, const std::string& ctx) const {
        if (!o.is_object() || !o.contains(key))
            fail("%s: no \"%s%s\" (expected fit_dynamics' results.json)", path.c_str(), ctx.empty() ? "" : (ctx + ".").c_str(),
                 key.c_str());
        return o[key];
    }
    // A number, or NaN for null.
    double num(const Json& o, const std::string& key, const std::string& ctx) const {
        const Json& v = get(o, key, ctx);
        if (v.is_null()) return NAN;
        if (!v.is_number()) fail("%s: \"%s.%s\" is not a number", path.c_str(), ctx.c_str(), key.c_str());
        return v.get<double>();
    }
    // A whole number within [-2^53, 2^53]; null or a fraction fails.
    int64_t integer(const Json& o, const std::string& key, const std::string& ctx) const {
        const double v = num(o, key, ctx);
        if (!(std::fabs(v) <= 9007199254740992.0) || v != std::floor(v))
            fail("%s: \"%s.%s\" is not a whole number", path.c_str(), ctx.c_str(), key.c_str());
        return (int64_t)v;
    }
    std::string str(const Json& o, const std::string& key, const std::string& ctx) const {
        const Json& v = get(o, key, ctx);
        if (!v.is_string()) fail("%s: \"%s.%s\" is not a string", path.c_str(), ctx.c_str(), key.c_str());
        return v.get<std::string>();
    }
    bool boolean(const Json& o, const std::string& key, const std::string& ctx) const {
        const Json& v = get(o, key, ctx);
        if (!v.is_boolean()) fail("%s: \"%s.%s\" is not true or false", path.c_str(), ctx.c_str(), key.c_str());
        return v.get<bool>();
    }
    const Json& array(const Json& o, const std::string& key, const std::string& ctx) const {
        const Json& v = get(o, key, ctx);
        if (!v.is_array()) fail("%s: \"%s.%s\" is not an array", path.c_str(), ctx.c_str(), key.c_str());
        return v;
    }
    SweepEv ev(const Json& o, const std::string& ctx) const {
        const Json& e = get(o, "ev", ctx);
        SweepEv r;
        r.mean = num(e, "mean", ctx + ".ev");
        r.sem = num(e, "sem", ctx + ".ev");
        if (e.is_object() && e.contains("per_split"))  // older results.json lack it: no paired tests then
            for (const Json& x : array(e, "per_split", ctx + ".ev")) r.per_split.push_back(x.is_number() ? x.get<double>() : NAN);
        return r;
    }
    std::vector<SweepBin> bins(const Json& o, const std::string& ctx) const {
        std::vector<SweepBin> v;
        const std::string c = ctx + ".ev_per_bin";
        for (const Json& b : array(o, "ev_per_bin", ctx))
            v.push_back({num(b, "bin_start_ms", c), num(b, "bin_end_ms", c), num(b, "mean", c), num(b, "sem", c)});
        return v;
    }
};

}  // namespace

const SweepArea* SweepResult::area(const std::string& name) const {
    for (const SweepArea& a : areas)
        if (a.area == name) return &a;
    return nullptr;
}

double SweepResult::mean_ev() const {
    double s = 0;
    int n = 0;
    for (const SweepArea& a : areas)
        if (std::isfinite(a.ev.mean)) s += a.ev.mean, n++;
    return n ? s / n : NAN;
}

SweepResult sweep_result_load(const std::string& path) {
    Json j = json_read(path);
    json_format_check(j, kFitResultsFormat, path);
    ResultReader r{path};
    SweepResult R;
    const Json& st = r.get(j, "settings", "");
    R.motif = r.str(st, "motif", "settings");
    R.feedback = r.str(st, "feedback", "settings");
    R.time_varied = r.boolean(st, "time_varied", "settings");
    R.trainable_params = r.integer(st, "trainable_params", "settings");
    R.splits = (int)std::clamp<int64_t>(r.integer(st, "splits", "settings"), 0, 1 << 20);
    R.ms_per_step = r.num(st, "ms_per_step", "settings");
    R.onset_ms = r.num(st, "onset_ms", "settings");
    R.image_steps = (int)std::clamp<int64_t>(r.integer(st, "image_steps", "settings"), -1, 1 << 20);
    R.seconds = r.num(j, "seconds", "");
    if (st.is_object() && st.contains("flags")) {  // written since the sweep checks reuse by them
        R.data = r.str(st, "data", "settings");
        R.data_crc32 = r.str(st, "data_crc32", "settings");
        R.data_bytes = r.integer(st, "data_bytes", "settings");
        R.backbone_crc32 = r.str(st, "backbone_crc32", "settings");
        const Json& fl = st["flags"];
        if (!fl.is_object()) fail("%s: \"settings.flags\" is not an object", path.c_str());
        for (const auto& kv : fl.items()) R.flags.push_back({kv.key(), r.str(fl, kv.key(), "settings.flags")});
    }
    const Json& areas = r.get(j, "areas", "");
    if (!areas.is_object()) fail("%s: \"areas\" is not an object", path.c_str());
    for (const auto& kv : areas.items()) {
        const std::string ctx = "areas." + kv.key();
        const Json& x = kv.value();
        SweepArea a;
        a.area = kv.key();
        a.layer = r.str(x, "layer", ctx);
        a.units = (int)std::clamp<int64_t>(r.integer(x, "units", ctx), 0, INT_MAX);
        a.ev = r.ev(x, ctx);
        a.bins = r.bins(x, ctx);
        const Json& h = r.get(x, "heldout_units", ctx);
        a.heldout_units = (int)std::clamp<int64_t>(r.integer(h, "units", ctx + ".heldout_units"), 0, INT_MAX);
        a.heldout = r.ev(h, ctx + ".heldout_units");
        if (x.is_object() && x.contains("teacher")) {
            a.teacher = r.ev(x["teacher"], ctx + ".teacher");
            a.teacher_bins = r.bins(x["teacher"], ctx + ".teacher");
        }
        R.areas.push_back(a);
    }
    return R;
}

// ---- an unfinished run's fingerprint (fit_dynamics --resume) ------------------------------------

Json fit_run_json(const FitRun& run) {
    Json j = {{"format", kFitRunFormat},
              {"preset", run.preset},
              {"data", run.data},
              {"virtual_primate", run.virtual_primate},
              {"data_crc32", strfmt("%08x", run.data_crc32)},
              {"data_bytes", run.data_bytes},
              {"backbone_crc32", strfmt("%08x", run.backbone_crc32)},
              {"flags", Json::object()}};
    for (const auto& kv : run.flags) j["flags"][kv.first] = kv.second;
    return j;
}

uint32_t fit_run_id(const FitRun& run) {
    std::string t = strfmt("%s\n%08x %llu %08x\n", run.preset.c_str(), run.data_crc32, (unsigned long long)run.data_bytes,
                           run.backbone_crc32);
    for (const auto& kv : run.flags) t += kv.first + "=" + kv.second + "\n";
    return std::max<uint32_t>(1, crc32_bytes(0, (const uint8_t*)t.data(), t.size()));  // 0 means "not checked"
}

FitRun fit_run_read(const std::string& path) {
    const Json j = json_read(path);
    json_format_check(j, kFitRunFormat, path);
    auto bad = [&](const char* key) {
        fail("%s: \"%s\" is missing or of the wrong type (expected what fit_dynamics writes when a run starts)",
             path.c_str(), key);
    };
    auto text = [&](const char* key) {
        if (!j.contains(key) || !j[key].is_string()) bad(key);
        return j[key].get<std::string>();
    };
    auto crc = [&](const char* key) {
        const std::string t = text(key);
        char* end = nullptr;
        const unsigned long v = std::strtoul(t.c_str(), &end, 16);
        if (t.size() != 8 || *end) bad(key);
        return (uint32_t)v;
    };
    FitRun run;
    run.preset = text("preset"), run.data = text("data");
    if (!j.contains("virtual_primate") || !j["virtual_primate"].is_boolean()) bad("virtual_primate");
    run.virtual_primate = j["virtual_primate"].get<bool>();
    run.data_crc32 = crc("data_crc32"), run.backbone_crc32 = crc("backbone_crc32");
    if (!j.contains("data_bytes") || !j["data_bytes"].is_number_unsigned()) bad("data_bytes");
    run.data_bytes = j["data_bytes"].get<uint64_t>();
    if (!j.contains("flags") || !j["flags"].is_object()) bad("flags");
    for (const auto& kv : j["flags"].items()) {
        if (!kv.value().is_string()) bad("flags");
        run.flags.push_back({kv.key(), kv.value().get<std::string>()});
    }
    return run;
}

std::string fit_run_mismatch(const FitRun& was, const FitRun& now) {
    std::vector<std::string> diffs;
    if (was.data_crc32 != now.data_crc32 || was.data_bytes != now.data_bytes)
        diffs.push_back(strfmt("data: it fitted %s (crc32 %08x, %llu bytes), this run %s (crc32 %08x, %llu bytes)",
                               was.data.c_str(), was.data_crc32, (unsigned long long)was.data_bytes, now.data.c_str(),
                               now.data_crc32, (unsigned long long)now.data_bytes));
    if (was.backbone_crc32 != now.backbone_crc32)
        diffs.push_back(strfmt("the backbone (or --init) checkpoint: crc32 %08x in the run, %08x here", was.backbone_crc32,
                               now.backbone_crc32));
    for (const std::string& d : flag_value_diffs(was.flags, now.flags)) diffs.push_back(d);
    std::string s;
    for (const std::string& d : diffs) s += (s.empty() ? "" : "; ") + d;
    return s;
}

}  // namespace vt
