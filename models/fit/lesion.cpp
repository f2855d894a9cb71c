// lesion.cpp: re-scoring a fitted run with parts removed (lesion.h has the what and why).
#include "models/fit/lesion.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/io/npy.h"
#include "engine/io/plot.h"
#include "engine/progress.h"
#include "models/datasets/neural_data.h"
#include "models/fit/features.h"
#include "models/fit/model_features.h"
#include "models/fit/results.h"
#include "models/fit/scoring.h"

namespace vt {

namespace {

// The fit's scoring protocol from results.json's settings (the same folds and ceilings).
ScoreConfig score_config_of(const Json& s, const std::string& path) {
    auto need = [&](const char* key) -> const Json& {
        if (!s.contains(key) || s[key].is_null()) fail("'%s': settings.%s is missing", path.c_str(), key);
        return s[key];
    };
    ScoreConfig c;
    c.folds = need("splits").get<int>();
    c.pls = need("pls").get<std::string>() == "simpls" ? PlsAlgorithm::Simpls : PlsAlgorithm::Nipals;
    c.seed = need("seed").get<uint64_t>();
    c.ceiling_splits = need("ceiling_splits").get<int>();
    c.min_reliability = need("min_reliability").get<float>();
    return c;
}

float mean_finite(const float* v, int64_t n) {
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (std::isfinite(v[i])) s += v[i], k++;
    return k ? (float)(s / k) : NAN;
}

void mean_sem(const std::vector<float>& v, float& mean, float& sem) {
    std::vector<double> f;
    for (float x : v)
        if (std::isfinite(x)) f.push_back(x);
    mean = sem = NAN;
    if (f.empty()) return;
    double m = 0, ss = 0;
    for (double x : f) m += x;
    m /= f.size();
    for (double x : f) ss += (x - m) * (x - m);
    mean = (float)m;
    sem = f.size() > 1 ? (float)std::sqrt(ss / (f.size() - 1) / f.size()) : 0.f;
}

}  // namespace

LesionReport lesion_run(const std::string& run, Device dev, const std::function<void(const std::string&)>& log) {
    namespace fs = std::filesystem;
    const std::string rpath = run + "/results.json";
    if (!fs::exists(rpath)) fail("'%s': no results.json (expected a finished fit_dynamics run folder)", run.c_str());
    const Json res = json_read(rpath);
    if (!res.contains("format") || res["format"] != kFitResultsFormat)
        fail("'%s': not a %s results.json", rpath.c_str(), kFitResultsFormat);
    const Json& set = res["settings"];
    if (set.contains("time_varied") && set["time_varied"].is_boolean() && set["time_varied"].get<bool>())
        fail("'%s': the time-varied baseline has no network to lesion", run.c_str());
    LesionReport R;
    R.run = run;
    R.data = set.value("data", std::string());
    ScoreConfig sc = score_config_of(set, rpath);
    R.splits = sc.folds;

    NeuralData d = neural_data_load(R.data, true);
    R.presentation_ms = d.presentation_ms;
    Targets tg = targets_prepare(d, sc);
    R.bin_start_ms = tg.bin_start_ms, R.bin_end_ms = tg.bin_end_ms;
    const int64_t B = tg.B, S = sc.folds;
    const Npz pred = npz_read(run + "/predictions.npz");
    const std::vector<int64_t> test_split = pred.get("test_split").to_i64();
    if ((int64_t)test_split.size() != d.N)
        fail("'%s/predictions.npz': test_split has %zu images, the data %lld", run.c_str(), test_split.size(), (long long)d.N);

    std::vector<CheckpointModel> models;  // one per split
    for (int s = 0; s < S; s++) models.push_back(checkpoint_model_load(run + strfmt("/checkpoints/split%d.npz", s), dev));
    R.motif = models[0].motif, R.feedback = models[0].feedback;
    const Model& m0 = *models[0].model;

    // the variants: intact, each feedback edge, each layer with a cell
    struct Lesion {
        LesionVariant v;
        std::string fb_weight;  // zeroed
        int layer = -1;         // stateless
    };
    std::vector<Lesion> lesions(1);
    lesions[0].v.name = lesions[0].v.kind = "intact";
    for (const FeedbackEdge& e : m0.cfg.feedback) {
        Lesion l;
        const std::string src = m0.spec.layers[e.src].name, dst = m0.spec.layers[e.dst].name;
        l.v.name = "feedback " + src + ":" + dst, l.v.kind = "feedback";
        l.fb_weight = dst + ".fb." + src + ".weight";
        lesions.push_back(l);
    }
    for (size_t k = 0; k < m0.spec.layers.size(); k++)
        if (m0.motif((int)k) != Motif::None) {
            Lesion l;
            l.v.name = "recurrence " + m0.spec.layers[k].name, l.v.kind = "recurrence";
            l.layer = (int)k;
            lesions.push_back(l);
        }

    const int S_in = m0.spec.in_size;
    Progress bar("lesion", (int64_t)(lesions.size() * S), "fit");
    int64_t done = 0;
    for (Lesion& les : lesions) {
        std::vector<AreaScore> scores;
        for (int s = 0; s < S; s++) {
            CheckpointModel& cm = models[s];
            std::vector<float> saved;  // the zeroed edge's weights, put back after
            if (!les.fb_weight.empty()) {
                const Tensor& w = cm.model->params[les.fb_weight];
                saved = w.to_vector();
                std::vector<float> z(saved.size(), 0.f);
                backend_copy_from_host(w.device(), w.data(), z.data(), w.numel());
            }
            if (les.layer >= 0) cm.model->cfg.stateless = {les.layer};
            std::vector<int64_t> test;
            for (int64_t i = 0; i < d.N; i++)
                if (test_split[i] == s) test.push_back(i);
            auto input = [&](int64_t j, float* out) {
                stimulus_to_input(out, d.images.data() + test[j] * (int64_t)d.H * d.W * 3, d.H, d.W, S_in, cm.model->norm);
            };
            FeatureRequest req;
            req.predictions_only = true;
            Npz f = model_features(cm, (int64_t)test.size(), input, req);
            cm.model->cfg.stateless.clear();
            if (!saved.empty()) {
                const Tensor& w = cm.model->params[les.fb_weight];
                backend_copy_from_host(w.device(), w.data(), saved.data(), w.numel());
            }
            for (const CheckpointModel::Readout& rd : cm.readouts) {
                AreaUnits au;
                au.area = rd.area;
                for (const std::string& id : rd.unit_id) {
                    auto it = std::find(tg.unit_id.begin(), tg.unit_id.end(), id);
                    if (it == tg.unit_id.end()) fail("'%s': unit '%s' of split %d is not in the data", R.data.c_str(), id.c_str(), s);
                    au.units.push_back((int)(it - tg.unit_id.begin()));
                }
                size_t a = 0;
                while (a < scores.size() && scores[a].area != rd.area) a++;
                if (a == scores.size()) scores.push_back(area_score_new(tg, au, Mapping::Shared));
                const std::vector<float> p = f.get("prediction." + rd.area).to_f32();  // (nte, Ua, B)
                score_predictions(tg, au, s, test, p.data(), scores[a]);
            }
            bar.update(++done);
        }
        for (AreaScore& sc_a : scores) {
            area_score_summarise(sc_a, S, B);
            LesionVariant::Area va;
            va.area = sc_a.area;
            va.ev = sc_a.ev;
            for (int s = 0; s < S; s++) va.ev_split.push_back(mean_finite(&sc_a.ev[(size_t)(s * B)], B));
            mean_sem(va.ev_split, va.ev_mean, va.ev_sem);
            les.v.areas.push_back(va);
        }
        R.variants.push_back(les.v);
    }
    bar.finish();
    // drops against intact, split by split
    const LesionVariant& intact = R.variants[0];
    for (LesionVariant& v : R.variants)
        for (size_t a = 0; a < v.areas.size(); a++) {
            LesionVariant::Area& va = v.areas[a];
            const LesionVariant::Area& ia = intact.areas[a];
            std::vector<float> d_split;
            for (int s = 0; s < S; s++) d_split.push_back(ia.ev_split[s] - va.ev_split[s]);
            mean_sem(d_split, va.drop_mean, va.drop_sem);
            va.drop_bin_mean.assign(B, NAN), va.drop_bin_sem.assign(B, NAN);
            for (int64_t b = 0; b < B; b++) {
                std::vector<float> db;
                for (int s = 0; s < S; s++) db.push_back(ia.ev[(size_t)(s * B + b)] - va.ev[(size_t)(s * B + b)]);
                mean_sem(db, va.drop_bin_mean[b], va.drop_bin_sem[b]);
            }
            if (log && &v != &intact)
                log(strfmt("%s: %s EV %.3f (drop %.3f +- %.3f)", v.name.c_str(), va.area.c_str(), va.ev_mean, va.drop_mean,
                           va.drop_sem));
        }
    return R;
}

Json lesion_json(const LesionReport& r) {
    Json j = Json::object();
    j["format"] = "ventral-lesion-1";
    j["run"] = r.run;
    j["data"] = r.data;
    j["motif"] = r.motif;
    j["feedback"] = r.feedback;
    j["splits"] = r.splits;
    j["bin_start_ms"] = json_nums(r.bin_start_ms);
    j["bin_end_ms"] = json_nums(r.bin_end_ms);
    Json vs = Json::array();
    for (const LesionVariant& v : r.variants) {
        Json jv = Json::object();
        jv["name"] = v.name;
        jv["kind"] = v.kind;
        Json areas = Json::object();
        for (const LesionVariant::Area& a : v.areas) {
            Json ja = Json::object();
            ja["ev"] = {{"mean", json_num(a.ev_mean)}, {"sem", json_num(a.ev_sem)}, {"per_split", json_nums(a.ev_split)}};
            ja["drop"] = {{"mean", json_num(a.drop_mean)}, {"sem", json_num(a.drop_sem)}};
            ja["drop_per_bin"] = {{"mean", json_nums(a.drop_bin_mean)}, {"sem", json_nums(a.drop_bin_sem)}};
            areas[a.area] = ja;
        }
        jv["areas"] = areas;
        vs.push_back(jv);
    }
    j["variants"] = vs;
    return j;
}

std::string lesion_table(const LesionReport& r) {
    std::string t = strfmt("%-26s", "variant");
    for (const auto& a : r.variants[0].areas) t += strfmt(" %-26s", (a.area + " EV (change +- SEM)").c_str());
    t += "\n";
    for (const LesionVariant& v : r.variants) {
        t += strfmt("%-26s", v.name.c_str());
        for (const auto& a : v.areas)
            t += v.kind == "intact" ? strfmt(" %-26s", strfmt("%.3f +- %.3f", a.ev_mean, a.ev_sem).c_str())
                                    : strfmt(" %-26s", strfmt("%.3f (%+.3f +- %.3f)", a.ev_mean, -a.drop_mean, a.drop_sem).c_str());
        t += "\n";
    }
    return t;
}

void lesion_plot(const std::string& path, const LesionReport& r) {
    GridPlot gp;
    gp.title = "EV drop per bin with one part removed (intact - lesioned, +- SEM over splits)";
    gp.xlabel = "time after image onset (ms, bin centres)";
    gp.ylabel = "EV drop";
    gp.cols = (int)r.variants[0].areas.size();
    gp.panel_width = 420, gp.panel_height = 260;
    gp.share_y = true;
    std::vector<float> mid;
    for (size_t b = 0; b < r.bin_start_ms.size(); b++) mid.push_back(0.5f * (r.bin_start_ms[b] + r.bin_end_ms[b]));
    for (size_t a = 0; a < r.variants[0].areas.size(); a++) {
        GridPanel p;
        p.title = r.variants[0].areas[a].area;
        for (size_t k = 1; k < r.variants.size(); k++) {
            LineSeries s;
            s.label = r.variants[k].name;
            s.x = mid, s.y = r.variants[k].areas[a].drop_bin_mean, s.y_err = r.variants[k].areas[a].drop_bin_sem;
            s.markers = true;
            p.series.push_back(s);
        }
        gp.panels.push_back(p);
    }
    gp.xspans.push_back({0.f, r.presentation_ms, "image on"});
    plot_grid_lines(path, gp);
}

}  // namespace vt
