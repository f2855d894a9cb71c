// dynamics.cpp: the BPTT fit of a ConvRNN to neural time courses (see dynamics.h).
#include "models/dynamics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/linalg.h"
#include "engine/ops.h"
#include "engine/progress.h"
#include "models/features.h"

namespace vt {

// ---- time and readouts ---------------------------------------------------------------------

std::vector<std::vector<int>> bin_steps(const std::vector<float>& bs, const std::vector<float>& be, float ms,
                                        float onset, int T) {
    CHECK(ms > 0, "ms_per_step %g", ms);
    std::vector<std::vector<int>> steps(bs.size());
    for (size_t b = 0; b < bs.size(); b++)
        for (int t = 0; t < T; t++) {
            double time = (double)t * ms + onset;
            if (time >= bs[b] && time < be[b]) steps[b].push_back(t);
        }
    return steps;
}

int steps_needed(const std::vector<float>& bs, const std::vector<float>& be, float ms, float onset) {
    int T = 1;
    for (size_t b = 0; b < bs.size(); b++) {
        // the last t with t*ms + onset < be[b], if it is also >= bs[b]
        double last = std::ceil((be[b] - onset) / ms) - 1;
        while (last >= 0 && last * ms + onset >= be[b]) last--;
        if (last >= 0 && last * ms + onset >= bs[b]) T = std::max(T, (int)last + 1);
    }
    return T;
}

std::vector<std::pair<std::string, std::string>> readout_parse(const std::string& s) {
    std::vector<std::pair<std::string, std::string>> out;
    size_t a = 0;
    while (a <= s.size()) {
        size_t e = s.find(',', a);
        if (e == std::string::npos) e = s.size();
        std::string item = s.substr(a, e - a);
        size_t eq = item.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
            fail("--readout: '%s' is not of the form AREA=LAYER (e.g. V4=conv3,IT=conv5)", item.c_str());
        std::string area = item.substr(0, eq), layer = item.substr(eq + 1);
        for (const auto& p : out)
            if (p.first == area) fail("--readout: area '%s' given twice", area.c_str());
        out.push_back({area, layer});
        a = e + 1;
    }
    return out;
}

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// ---- the plan: everything fixed before any split --------------------------------------------

struct AreaPlan {
    std::string area, layer;
    int layer_index = 0;
    int64_t D = 0;
    const AreaUnits* units = nullptr;  // all scored units of the area (targets)
    AreaUnits fit, heldout;            // the two unit sets (same area name)
};

struct Plan {
    int T = 0, image_steps = 0;
    int64_t N = 0, B = 0, S = 0;        // S: input side
    std::vector<std::vector<int>> steps;  // per bin
    std::vector<int64_t> bins_fitted;   // bins with at least one step
    std::vector<float> inputs;          // (N, 3, S, S) normalised
    std::vector<AreaPlan> areas;
};

// ---- the recorded graph: unroll, bin features, readouts, loss --------------------------------

struct Graph {
    Unrolled u;
    std::vector<std::vector<Tensor>> feat;    // [area][bin] (n, D)
    std::vector<std::vector<Tensor>> target;  // [area][bin] (n, Ua) standardised targets
    Tensor loss;                              // (1,) when built with readouts
    int n = 0;
};

std::string ro_name(const std::string& area, const char* what) { return "readout." + area + "." + what; }

void graph_build(Graph& g, const Model& m, const Plan& P, int n, const ParamArena* ro, float mean_weight) {
    g.n = n;
    unroll_build(g.u, m, UnrollConfig{P.T, P.image_steps, n}, true);
    TapeScope rec(g.u.tape);
    ArenaScope arena(g.u.arena);
    const Device dev = m.params.device;
    g.feat.assign(P.areas.size(), {});
    g.target.assign(P.areas.size(), {});
    std::vector<Tensor> terms;
    for (size_t a = 0; a < P.areas.size(); a++) {
        const AreaPlan& ap = P.areas[a];
        for (int64_t b = 0; b < P.B; b++) {
            Tensor f;
            int count = 0;
            for (int t : P.steps[b]) {
                const Tensor& o = g.u.out[t][ap.layer_index];
                if (!o.defined()) continue;  // silent: contributes zero to the mean
                Tensor of = o.reshape({n, ap.D});
                f = count++ ? add(f, of) : of;
            }
            if (!f.defined()) f = tensor_zeros({n, ap.D}, dev);
            else if (P.steps[b].size() > 1) f = mul_scalar(f, 1.f / (float)P.steps[b].size());
            g.feat[a].push_back(f);
        }
        if (!ro) continue;
        const int64_t Ua = (int64_t)ap.fit.units.size();
        const Tensor &W = (*ro)[ro_name(ap.area, "weight")], &bias = (*ro)[ro_name(ap.area, "bias")];
        for (int64_t b = 0; b < P.B; b++) {
            Tensor y = tensor_zeros({n, Ua}, dev);
            g.target[a].push_back(y);
            if (P.steps[b].empty() || Ua == 0) continue;
            Tensor zero = tensor_zeros({n, Ua}, dev);
            Tensor e = sub(linear(g.feat[a][b], W, bias), y);
            terms.push_back(add(mul_scalar(mse_loss(center_rows(e), zero), 1.f - mean_weight),
                                mul_scalar(mse_loss(e, zero), mean_weight)));
        }
    }
    if (!ro) return;
    CHECK(!terms.empty(), "fit: nothing to fit (no bin has a step, or no fit units)");
    Tensor L = terms[0];
    for (size_t i = 1; i < terms.size(); i++) L = add(L, terms[i]);
    g.loss = mul_scalar(L, 1.f / (float)P.bins_fitted.size());
}

void upload(const Tensor& t, const float* src, int64_t n) { backend_copy_from_host(t.device(), t.data(), src, n); }
void download(float* dst, const Tensor& t, int64_t n) { backend_copy_to_host(t.device(), dst, t.data(), n); }

// Loads a batch (idx[i0 .. i0+n), the last image repeated to fill the graph's batch) into the
// graph's image and, with Y (N, U, B) standardised targets, its target tensors.
void graph_load(Graph& g, const Plan& P, const std::vector<int64_t>& idx, size_t i0, const std::vector<float>* Y,
                int64_t U) {
    const int64_t isz = 3 * P.S * P.S;
    std::vector<float> img((size_t)(g.n * isz));
    std::vector<int64_t> rows;
    for (int j = 0; j < g.n; j++) rows.push_back(idx[std::min(i0 + j, idx.size() - 1)]);
    for (int j = 0; j < g.n; j++) std::memcpy(&img[(size_t)(j * isz)], &P.inputs[(size_t)(rows[j] * isz)], isz * sizeof(float));
    upload(g.u.image, img.data(), (int64_t)img.size());
    if (!Y) return;
    for (size_t a = 0; a < P.areas.size(); a++) {
        const std::vector<int>& units = P.areas[a].fit.units;
        const int64_t Ua = (int64_t)units.size();
        std::vector<float> y((size_t)(g.n * Ua));
        for (int64_t b = 0; b < P.B; b++) {
            for (int j = 0; j < g.n; j++)
                for (int64_t k = 0; k < Ua; k++) y[j * Ua + k] = (*Y)[(rows[j] * U + units[k]) * P.B + b];
            upload(g.target[a][b], y.data(), g.n * Ua);
        }
    }
}

// Features of the images idx: out[a] is (|idx|, B, D_a).
std::vector<std::vector<float>> graph_features(Graph& g, const Plan& P, const std::vector<int64_t>& idx,
                                               Progress* bar = nullptr, int64_t* done = nullptr) {
    std::vector<std::vector<float>> out(P.areas.size());
    for (size_t a = 0; a < P.areas.size(); a++) out[a].assign(idx.size() * P.B * P.areas[a].D, 0.f);
    for (size_t i0 = 0; i0 < idx.size(); i0 += g.n) {
        graph_load(g, P, idx, i0, nullptr, 0);
        g.u.tape.forward();
        const size_t cnt = std::min((size_t)g.n, idx.size() - i0);
        for (size_t a = 0; a < P.areas.size(); a++) {
            const int64_t D = P.areas[a].D;
            std::vector<float> f((size_t)(g.n * D));
            for (int64_t b = 0; b < P.B; b++) {
                download(f.data(), g.feat[a][b], g.n * D);
                for (size_t j = 0; j < cnt; j++)
                    std::memcpy(&out[a][((i0 + j) * P.B + b) * D], &f[j * D], D * sizeof(float));
            }
        }
        if (bar && done) bar->update(*done += (int64_t)cnt);
    }
    return out;
}

// Gathers the rows (image, bin) of images `which` (positions into the feature array's image
// order) from F (n_img, B, D) into a contiguous (|which| * B, D) array.
std::vector<float> gather_rows(const std::vector<float>& F, const std::vector<size_t>& which, int64_t B, int64_t D) {
    std::vector<float> X(which.size() * B * D);
    for (size_t j = 0; j < which.size(); j++)
        std::memcpy(&X[j * B * D], &F[which[j] * B * D], B * D * sizeof(float));
    return X;
}

// Targets Y (n * B, Ua) of units (standardised array Ys (N, U, B)) for images idx.
std::vector<float> gather_targets(const std::vector<float>& Ys, int64_t U, int64_t B, const std::vector<int>& units,
                                  const std::vector<int64_t>& idx) {
    const int64_t Ua = (int64_t)units.size();
    std::vector<float> Y(idx.size() * B * Ua);
    for (size_t j = 0; j < idx.size(); j++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < Ua; k++) Y[(j * B + b) * Ua + k] = Ys[(idx[j] * U + units[k]) * B + b];
    return Y;
}

// Per-split standardisation of the trial means: for each unit, (y - m_u) / s_u with m_u its
// mean over training images and bins and s_u the root mean over bins of its variance over
// training images; NaN trial means become the unit's training mean of that bin.
struct Standardised {
    std::vector<float> Y;       // (N, U, B)
    std::vector<float> mu, sd;  // (U): y = Y * sd + mu
};
Standardised standardise(const Targets& tg, const std::vector<int64_t>& train) {
    const int64_t U = tg.U, B = tg.B;
    Standardised st;
    st.mu.assign((size_t)U, 0.f), st.sd.assign((size_t)U, 1.f);
    std::vector<float>& Ys = st.Y;
    Ys.assign(tg.mean.size(), 0.f);
    for (int64_t u = 0; u < U; u++) {
        std::vector<double> bm((size_t)B, 0.0), bv((size_t)B, 0.0);
        double all = 0, var = 0;
        for (int64_t b = 0; b < B; b++) {
            double s = 0, ss = 0;
            int64_t c = 0;
            for (int64_t i : train) {
                float y = tg.mean[(i * U + u) * B + b];
                if (y == y) s += y, ss += (double)y * y, c++;
            }
            bm[b] = c ? s / c : 0;
            bv[b] = c ? std::max(0.0, ss / c - bm[b] * bm[b]) : 0;
            all += bm[b], var += bv[b];
        }
        double mu = all / B, sd = std::sqrt(var / B);
        if (!(sd > 1e-12)) sd = 1;
        st.mu[u] = (float)mu, st.sd[u] = (float)sd;
        for (int64_t i = 0; i < tg.N; i++)
            for (int64_t b = 0; b < B; b++) {
                float y = tg.mean[(i * U + u) * B + b];
                Ys[(i * U + u) * B + b] = (float)(((y == y) ? y : bm[b]) - mu) / (float)sd;
            }
    }
    return st;
}

// P (rows, Ua) = X (rows, D) W^T + bias.
void readout_apply(float* P, const std::vector<float>& W, const std::vector<float>& bias, const float* X, int64_t rows,
                   int64_t D, int64_t Ua) {
    kernels_for(Device::CPU).gemm(false, true, (int)rows, (int)Ua, (int)D, 1.f, X, (int)D, W.data(), (int)D, 0.f, P, (int)Ua);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t k = 0; k < Ua; k++) P[i * Ua + k] += bias[k];
}

// Removes from rows (image, bin) of A (n, B, W) the mean over the n images of each bin.
void center_within_bins(std::vector<float>& A, int64_t n, int64_t B, int64_t W) {
    std::vector<double> m((size_t)(B * W), 0.0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < B * W; q++) m[q] += A[i * B * W + q];
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < B * W; q++) A[i * B * W + q] -= (float)(m[q] / n);
}

// The time-shared linear readout in closed form: W (Ua, D), bias (Ua) from rows (image, bin)
// X (n*B, D) -> Y (n*B, Ua): PLS on X and Y centred within each bin, then the bias that
// zeroes the mean residual (dynamics.h, step 3).
void fit_shared_readout(std::vector<float>& W, std::vector<float>& bias, const std::vector<float>& X,
                        const std::vector<float>& Y, int64_t n, int64_t B, int64_t D, int64_t Ua, int comps,
                        PlsAlgorithm algo) {
    std::vector<float> Xc = X, Yc = Y;
    center_within_bins(Xc, n, B, D), center_within_bins(Yc, n, B, Ua);
    PlsModel pm = pls_fit(Xc.data(), Yc.data(), n * B, (int)D, (int)Ua, comps, algo);
    std::vector<float>().swap(Xc);
    W.assign((size_t)(Ua * D), 0.f), bias.assign((size_t)Ua, 0.f);
    for (int64_t k = 0; k < Ua; k++)
        for (int64_t j = 0; j < D; j++) W[k * D + j] = pm.coef[j * Ua + k];
    std::vector<float> P((size_t)(n * B * Ua));
    readout_apply(P.data(), W, bias, X.data(), n * B, D, Ua);
    std::vector<double> r((size_t)Ua, 0.0);
    for (int64_t i = 0; i < n * B; i++)
        for (int64_t k = 0; k < Ua; k++) r[k] += Y[i * Ua + k] - P[i * Ua + k];
    for (int64_t k = 0; k < Ua; k++) bias[k] = (float)(r[k] / (double)(n * B));
}

void copy_backbone(Model& dst, const Model& src) {
    for (const auto& e : src.params.entries) {
        if (!dst.params.has(e.name)) continue;
        const Tensor& d = dst.params[e.name];
        if (d.numel() != e.view.numel()) fail("backbone parameter %s: shapes differ", e.name.c_str());
        backend_copy(d.device(), d.data(), e.view.device(), e.view.data(), d.numel());
    }
    dst.norm = src.norm;
}

std::vector<float> snapshot(const ParamArena& p) {
    std::vector<float> v((size_t)p.numel());
    if (!v.empty()) download(v.data(), p.data, p.numel());
    return v;
}
void restore(ParamArena& p, const std::vector<float>& v) {
    if (!v.empty()) upload(p.data, v.data(), p.numel());
}

float loss_value(const Graph& g) {
    float v;
    download(&v, g.loss, 1);
    return v;
}

}  // namespace

// ---- the protocol ----------------------------------------------------------------------------

FitResult fit_dynamics(const NeuralData& d, const FitConfig& cfg, const std::vector<float>& teacher,
                       const std::function<void(const std::string&)>& log_fn) {
    auto log = [&](const std::string& s) {
        if (log_fn) log_fn(s);
    };
    const double t_start = now_s();
    FitResult R;
    if (cfg.batch < 1) fail("--batch: need at least 1 image, got %d", cfg.batch);
    if (cfg.iters < 0) fail("--iters: expected >= 0, got %d", cfg.iters);
    if (cfg.val_every < 1) fail("--val-every: expected >= 1, got %d", cfg.val_every);
    if (!(cfg.ms_per_step > 0)) fail("--ms-per-step: expected > 0, got %g", cfg.ms_per_step);
    if (!(cfg.heldout_fraction >= 0 && cfg.heldout_fraction < 1))
        fail("--heldout-units: expected a fraction in [0, 1), got %g", cfg.heldout_fraction);
    if (!(cfg.val_fraction > 0 && cfg.val_fraction < 1))
        fail("--val-fraction: expected a fraction in (0, 1), got %g", cfg.val_fraction);
    if (!(cfg.mean_weight >= 0 && cfg.mean_weight <= 1))
        fail("--mean-weight: expected a weight in [0, 1], got %g", cfg.mean_weight);
    if (d.images.empty()) fail("'%s': the dataset has no images to show the network", d.path.c_str());
    if (!teacher.empty() && (int64_t)teacher.size() != d.N * d.U * d.B)
        fail("teacher responses: expected %lld values (N, U, B), found %zu", (long long)(d.N * d.U * d.B), teacher.size());

    // the backbone and the student's structure
    std::unique_ptr<Model> bb = backbone_load(cfg.backbone, cfg.arch);
    const BackboneSpec& spec = bb->spec;
    ModelConfig mc;
    mc.arch = spec.arch;
    mc.motifs.assign(spec.layers.size(), motif_parse(cfg.motif));
    if (!cfg.time_varied) mc.feedback = feedback_parse(cfg.feedback, spec);  // the baseline has no network
    mc.residual = true;

    // areas: the readouts the data can feed
    std::vector<std::string> known = neural_areas(d);
    std::vector<std::pair<std::string, std::string>> ro_pairs, wanted = readout_parse(cfg.readout);
    for (const auto& p : wanted) {
        spec.layer_index(p.second);  // fails on an unknown layer
        if (std::find(known.begin(), known.end(), p.first) == known.end())
            R.notes.push_back(strfmt("the data have no %s units: fitting without them", p.first.c_str()));
        else ro_pairs.push_back(p);
    }
    for (const std::string& a : known) {
        bool used = false;
        for (const auto& p : ro_pairs) used |= p.first == a;
        if (!used) R.notes.push_back(strfmt("area %s has no --readout layer: ignored", a.c_str()));
    }
    if (ro_pairs.empty()) {
        std::string k;
        for (const std::string& a : known) k += (k.empty() ? "" : ", ") + a;
        fail("'%s': none of the --readout areas (%s) is in the data, which has: %s", d.path.c_str(), cfg.readout.c_str(),
             k.c_str());
    }
    ScoreConfig sc = cfg.score;
    sc.areas.clear();
    for (const auto& p : ro_pairs) sc.areas.push_back(p.first);
    R.targets = targets_prepare(d, sc);
    const Targets& tg = R.targets;

    // time
    Plan P;
    P.N = d.N, P.B = d.B, P.S = spec.in_size;
    const int need = steps_needed(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, cfg.onset_ms);
    P.T = cfg.steps > 0 ? cfg.steps : need;
    if (P.T < need) {
        int64_t last = 0;
        for (int64_t b = 0; b < d.B; b++)
            if (d.bin_end_ms[b] > d.bin_end_ms[last]) last = b;
        fail("--steps %d: the unroll ends at %g ms but the data's bins reach %g ms (bin [%g, %g) ms); at %g ms per step "
             "(onset %g ms) they need --steps %d, or leave --steps out to use that",
             cfg.steps, (P.T - 1) * cfg.ms_per_step + cfg.onset_ms, d.bin_end_ms[last], d.bin_start_ms[last],
             d.bin_end_ms[last], cfg.ms_per_step, cfg.onset_ms, need);
    }
    P.image_steps = cfg.image_steps >= 0 ? cfg.image_steps : (int)std::lround(d.presentation_ms / cfg.ms_per_step);
    P.steps = bin_steps(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, cfg.onset_ms, P.T);
    std::string empty_bins;
    for (int64_t b = 0; b < d.B; b++) {
        if (!P.steps[b].empty()) P.bins_fitted.push_back(b);
        else empty_bins += strfmt("%s[%g, %g)", empty_bins.empty() ? "" : ", ", d.bin_start_ms[b], d.bin_end_ms[b]);
    }
    if (P.bins_fitted.empty())
        fail("no bin of '%s' contains a model step (steps at %g ms + t * %g ms, t < %d): check --ms-per-step / --onset-ms",
             d.path.c_str(), cfg.onset_ms, cfg.ms_per_step, P.T);
    if (!empty_bins.empty())
        R.notes.push_back("bins with no model step (constant prediction, not fitted): " + empty_bins);
    R.T = P.T, R.image_steps = P.image_steps, R.steps_of_bin = P.steps;

    // inputs
    const int64_t isz = 3 * P.S * P.S;
    P.inputs.resize((size_t)(d.N * isz));
    for (int64_t i = 0; i < d.N; i++)
        stimulus_to_input(&P.inputs[(size_t)(i * isz)], &d.images[(size_t)(i * d.H * d.W * 3)], d.H, d.W, (int)P.S, bb->norm);

    // areas and their unit split
    for (const auto& p : ro_pairs) {
        AreaPlan ap;
        ap.area = p.first, ap.layer = p.second;
        ap.layer_index = spec.layer_index(p.second);
        const LayerSpec& ls = spec.layers[ap.layer_index];
        ap.D = (int64_t)ls.out_ch * ls.out_size * ls.out_size;
        for (const AreaUnits& au : tg.areas)
            if (au.area == p.first) ap.units = &au;
        std::vector<int> u = ap.units->units;
        Rng rng(cfg.seed * 7919 + 17 + P.areas.size());
        for (size_t i = u.size(); i > 1; i--) std::swap(u[i - 1], u[(size_t)rng.randint((int64_t)i)]);
        size_t nh = (size_t)std::lround(cfg.heldout_fraction * (double)u.size());
        if (u.size() >= 2 && nh >= u.size()) nh = u.size() - 1;
        ap.fit.area = ap.heldout.area = ap.area;
        ap.heldout.units.assign(u.begin(), u.begin() + (int64_t)nh);
        ap.fit.units.assign(u.begin() + (int64_t)nh, u.end());
        std::sort(ap.fit.units.begin(), ap.fit.units.end());
        std::sort(ap.heldout.units.begin(), ap.heldout.units.end());
        if (ap.fit.units.empty())
            fail("area %s: no unit passes the reliability criterion of '%s', nothing to fit", ap.area.c_str(), d.path.c_str());
        P.areas.push_back(std::move(ap));
    }
    for (const AreaPlan& ap : P.areas) {
        AreaFit af;
        af.area = ap.area, af.layer = ap.layer, af.fit_units = ap.fit.units, af.heldout_units = ap.heldout.units;
        Mapping mp = cfg.time_varied ? Mapping::PerBin : Mapping::Shared;
        af.fit = area_score_new(tg, ap.fit, mp);
        af.heldout = area_score_new(tg, ap.heldout, mp);
        af.has_teacher = !teacher.empty();
        if (af.has_teacher) af.teacher = area_score_new(tg, *ap.units, Mapping::Shared);
        R.areas.push_back(std::move(af));
    }
    R.predictions.assign((size_t)(d.N * d.U * d.B), NAN);
    const int S = tg.folds.k;

    // the teacher, scored like a model on each split's held-out images
    if (!teacher.empty())
        for (int s = 0; s < S; s++) {
            std::vector<int64_t> test;
            for (int64_t i = 0; i < d.N; i++)
                if (tg.folds.fold[i] == s) test.push_back(i);
            for (size_t a = 0; a < P.areas.size(); a++) {
                const std::vector<int>& units = P.areas[a].units->units;
                std::vector<float> p(test.size() * units.size() * d.B);
                for (size_t j = 0; j < test.size(); j++)
                    for (size_t k = 0; k < units.size(); k++)
                        for (int64_t b = 0; b < d.B; b++)
                            p[(j * units.size() + k) * d.B + b] = teacher[(test[j] * d.U + units[k]) * d.B + b];
                score_predictions(tg, *P.areas[a].units, s, test, p.data(), R.areas[a].teacher);
            }
        }

    // time-varied baseline: static backbone features, an independent PLS per bin
    if (cfg.time_varied) {
        log("time-varied baseline: feedforward " + spec.arch + " features, an independent PLS per bin");
        std::vector<std::vector<float>> feats = backbone_features(*bb, d.images.data(), d.N, d.H, d.W, 32, nullptr, cfg.device);
        for (size_t a = 0; a < P.areas.size(); a++) {
            const AreaPlan& ap = P.areas[a];
            for (int which = 0; which < 2; which++) {
                const AreaUnits& au = which == 0 ? ap.fit : ap.heldout;
                if (au.units.empty()) continue;
                Targets t2 = tg;
                t2.areas = {au};
                LayerScore ls = score_layer(t2, ap.layer, feats[ap.layer_index].data(), 1, ap.D, {Mapping::PerBin});
                (which == 0 ? R.areas[a].fit : R.areas[a].heldout) = ls.scores[0];
            }
        }
        for (AreaFit& af : R.areas)
            if (af.has_teacher) area_score_summarise(af.teacher, S, d.B);
        R.seconds = now_s() - t_start;
        return R;
    }

    // the fresh student's features = its feedforward unroll's (residual cells at a = 0, zero
    // feedback): computed once, with the cheap feedforward model, for every split's PLS init
    std::vector<int64_t> all((size_t)d.N);
    std::iota(all.begin(), all.end(), 0);
    std::vector<std::vector<float>> F0;
    {
        ModelConfig ff;
        ff.arch = spec.arch;
        Model mff(ff, cfg.seed, cfg.device);
        copy_backbone(mff, *bb);
        mff.freeze_backbone();
        Graph g;
        graph_build(g, mff, P, std::min<int>(16, (int)d.N), nullptr, 0);
        Progress bar("features of the fresh network", d.N, "img");
        int64_t done = 0;
        F0 = graph_features(g, P, all, &bar, &done);
        bar.finish();
    }

    R.splits.resize(S);
    for (int s = 0; s < S; s++) {
        SplitLog& L = R.splits[s];
        const double t_split = now_s();
        std::vector<int64_t> test, pool;
        for (int64_t i = 0; i < d.N; i++) (tg.folds.fold[i] == s ? test : pool).push_back(i);
        Rng rng(cfg.seed * 1000003 + 31 * s + 5);
        for (size_t i = pool.size(); i > 1; i--) std::swap(pool[i - 1], pool[(size_t)rng.randint((int64_t)i)]);
        size_t nval = std::max<size_t>(1, (size_t)std::lround(cfg.val_fraction * (double)pool.size()));
        if (pool.size() < 2) fail("split %d: %zu training images; need at least 2", s, pool.size());
        nval = std::min(nval, pool.size() - 1);
        std::vector<int64_t> val(pool.begin(), pool.begin() + (int64_t)nval), train(pool.begin() + (int64_t)nval, pool.end());
        std::vector<int64_t> fit_imgs = train;  // PLS and readout init: training images proper
        std::sort(fit_imgs.begin(), fit_imgs.end());
        std::vector<int64_t> train_all = pool;  // held-out units' PLS: (a subset of) the training images
        if (cfg.heldout_fit_images > 0 && train_all.size() > (size_t)cfg.heldout_fit_images)
            train_all.resize((size_t)cfg.heldout_fit_images);  // pool is shuffled: a seeded subset
        std::sort(train_all.begin(), train_all.end());
        const Standardised st = standardise(tg, train);
        const std::vector<float>& Ys = st.Y;

        // the student and its readouts
        Model m(mc, cfg.seed + 101, cfg.device);
        copy_backbone(m, *bb);
        m.freeze_backbone();
        std::vector<ParamSpec> rs;
        for (const AreaPlan& ap : P.areas) {
            rs.push_back({ro_name(ap.area, "weight"), {(int64_t)ap.fit.units.size(), ap.D}, Init::Zeros});
            rs.push_back({ro_name(ap.area, "bias"), {(int64_t)ap.fit.units.size()}, Init::Zeros});
        }
        ParamArena ro(rs, cfg.seed, cfg.device);
        for (const AreaPlan& ap : P.areas) {  // closed-form start
            std::vector<size_t> pos(fit_imgs.begin(), fit_imgs.end());
            const int64_t Ua = (int64_t)ap.fit.units.size(), D = ap.D;
            std::vector<float> X = gather_rows(F0[&ap - &P.areas[0]], pos, d.B, D);
            std::vector<float> Y = gather_targets(Ys, d.U, d.B, ap.fit.units, fit_imgs);
            std::vector<float> W, bias;
            fit_shared_readout(W, bias, X, Y, (int64_t)fit_imgs.size(), d.B, D, Ua, sc.components, sc.pls);
            upload(ro[ro_name(ap.area, "weight")], W.data(), Ua * D);
            upload(ro[ro_name(ap.area, "bias")], bias.data(), Ua);
        }
        R.trainable_params = m.params.numel_trainable() + ro.numel_trainable();

        // BPTT
        Graph g;
        graph_build(g, m, P, cfg.batch, &ro, cfg.mean_weight);
        Adam opt_m, opt_r;
        opt_m.lr = cfg.lr, opt_r.lr = cfg.readout_lr;
        for (const auto& e : m.params.entries) {  // weights step lr / sqrt(fan_in) (see dynamics.h)
            int64_t fan_in = 1;
            for (size_t k = 1; k < e.shape.size(); k++) fan_in *= e.shape[k];
            opt_m.lr_scale.push_back(1.f / std::sqrt((float)fan_in));
        }
        opt_m.weight_decay = opt_r.weight_decay = cfg.weight_decay;
        auto val_loss = [&] {
            double sum = 0;
            int cnt = 0;
            for (size_t i0 = 0; i0 < val.size(); i0 += (size_t)g.n) {
                graph_load(g, P, val, i0, &Ys, d.U);
                g.u.tape.forward();
                sum += loss_value(g), cnt++;
            }
            return (float)(sum / cnt);
        };
        L.init_val_loss = val_loss();
        float best = L.init_val_loss;
        std::vector<float> best_m = snapshot(m.params), best_r = snapshot(ro);
        std::string ckpt = cfg.checkpoint_dir.empty() ? "" : cfg.checkpoint_dir + strfmt("/split%d.npz", s);
        auto save = [&](int iter) {
            if (ckpt.empty()) return;
            Npz meta;
            meta_set_string(meta, "meta.arch", spec.arch);
            meta_set_string(meta, "meta.motif", cfg.motif);
            meta_set_string(meta, "meta.feedback", feedback_str(mc.feedback, spec));
            meta_set_string(meta, "meta.readout", cfg.readout);
            meta_set_floats(meta, "meta.mean", {m.norm.mean[0], m.norm.mean[1], m.norm.mean[2]});
            meta_set_floats(meta, "meta.std", {m.norm.std[0], m.norm.std[1], m.norm.std[2]});
            meta_set_floats(meta, "meta.split", {(float)s});
            meta_set_floats(meta, "meta.iteration", {(float)iter});
            meta_set_floats(meta, "meta.val_loss", {best});
            for (const auto& e : ro.entries) {  // the readouts beside the model's parameters
                std::vector<float> v((size_t)e.view.numel());
                download(v.data(), e.view, e.view.numel());
                meta.set(e.name, NpyArray::from_f32(e.shape, v.data()));
            }
            checkpoint_save(ckpt, m.params, meta);
        };
        save(0);
        int bad = 0;
        TapeGraph step(g.u.tape, g.loss);
        std::vector<int64_t> order = train;
        size_t cursor = order.size();
        Progress bar(strfmt("split %d/%d", s + 1, S), cfg.iters, "it");
        for (int it = 1; it <= cfg.iters; it++) {
            if (cursor + (size_t)g.n > order.size()) {  // a new epoch: reshuffle
                for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[(size_t)rng.randint((int64_t)i)]);
                cursor = 0;
            }
            graph_load(g, P, order, cursor, &Ys, d.U);
            cursor += (size_t)g.n;
            m.params.zero_grad(), ro.zero_grad();
            step.run();  // forward + BPTT: on a GPU one captured CUDA graph after the first runs
            float lv = loss_value(g);
            if (!std::isfinite(lv)) {  // before the update: the parameters are still the last finite ones
                bar.finish("stopped");
                restore(m.params, best_m), restore(ro, best_r);
                fail("split %d: the loss became %s at iteration %d (lower --lr?); stopped. %s", s, std::isnan(lv) ? "NaN" : "infinite", it,
                     ckpt.empty() ? "No checkpoint was asked for (--out)."
                                  : strfmt("The last good checkpoint (iteration %d) is kept in %s", L.best_iter, ckpt.c_str()).c_str());
            }
            L.train_loss.push_back(lv);
            opt_m.step(m.params), opt_r.step(ro);
            L.iters_done = it;
            if (it % cfg.val_every == 0 || it == cfg.iters) {
                float v = val_loss();
                L.val_iter.push_back(it), L.val_loss.push_back(v);
                if (!std::isfinite(v)) continue;  // caught as a training loss next
                if (v < best) {
                    best = v, L.best_iter = it, bad = 0;
                    best_m = snapshot(m.params), best_r = snapshot(ro);
                    save(it);
                } else if (++bad >= cfg.patience) {
                    bar.update(it, strfmt("loss %.4f val %.4f (best %.4f @%d), early stop", lv, v, best, L.best_iter));
                    break;
                }
            }
            bar.update(it, strfmt("loss %.4f val %.4f", lv, best));
        }
        bar.finish(strfmt("best val %.4f at iteration %d (start %.4f)", best, L.best_iter, L.init_val_loss));
        restore(m.params, best_m), restore(ro, best_r);

        // evaluation: the trained network's features of the test and training images
        std::vector<int64_t> eval = test;
        eval.insert(eval.end(), train_all.begin(), train_all.end());
        Graph ge;
        graph_build(ge, m, P, std::min<int>(16, (int)d.N), nullptr, 0);
        Progress ebar(strfmt("split %d/%d eval", s + 1, S), (int64_t)eval.size(), "img");
        int64_t done = 0;
        std::vector<std::vector<float>> F = graph_features(ge, P, eval, &ebar, &done);
        ebar.finish();
        const int64_t B = d.B, nte = (int64_t)test.size();
        for (size_t a = 0; a < P.areas.size(); a++) {
            const AreaPlan& ap = P.areas[a];
            const int64_t D = ap.D;
            // fit units: the trained readout
            const int64_t Ua = (int64_t)ap.fit.units.size();
            std::vector<float> W((size_t)(Ua * D)), bias((size_t)Ua);
            download(W.data(), ro[ro_name(ap.area, "weight")], Ua * D);
            download(bias.data(), ro[ro_name(ap.area, "bias")], Ua);
            std::vector<float> P1((size_t)(nte * B * Ua)), pred((size_t)(nte * Ua * B));
            readout_apply(P1.data(), W, bias, F[a].data(), nte * B, D, Ua);  // test images come first in F
            for (int64_t j = 0; j < nte; j++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t k = 0; k < Ua; k++) pred[(j * Ua + k) * B + b] = P1[(j * B + b) * Ua + k];
            score_predictions(tg, ap.fit, s, test, pred.data(), R.areas[a].fit);
            for (int64_t j = 0; j < nte; j++)
                for (int64_t k = 0; k < Ua; k++)
                    for (int64_t b = 0; b < B; b++)
                        R.predictions[(test[j] * d.U + ap.fit.units[k]) * B + b] =
                            pred[(j * Ua + k) * B + b] * st.sd[ap.fit.units[k]] + st.mu[ap.fit.units[k]];
            // held-out units: a time-shared PLS on the trained features of the training images
            const int64_t Uh = (int64_t)ap.heldout.units.size();
            if (Uh == 0) continue;
            std::vector<size_t> tr_pos, te_pos;
            for (size_t j = 0; j < eval.size(); j++) (j < (size_t)nte ? te_pos : tr_pos).push_back(j);
            std::vector<float> X = gather_rows(F[a], tr_pos, B, D), Xt = gather_rows(F[a], te_pos, B, D);
            std::vector<float> Y((size_t)(train_all.size() * B * Uh));
            for (size_t j = 0; j < train_all.size(); j++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t k = 0; k < Uh; k++) Y[(j * B + b) * Uh + k] = Ys[(train_all[j] * d.U + ap.heldout.units[k]) * B + b];
            std::vector<float> Wh, bh;
            fit_shared_readout(Wh, bh, X, Y, (int64_t)train_all.size(), B, D, Uh, sc.components, sc.pls);
            std::vector<float> P2((size_t)(nte * B * Uh)), ph((size_t)(nte * Uh * B));
            readout_apply(P2.data(), Wh, bh, Xt.data(), nte * B, D, Uh);
            for (int64_t j = 0; j < nte; j++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t k = 0; k < Uh; k++) {
                        ph[(j * Uh + k) * B + b] = P2[(j * B + b) * Uh + k];
                        const int u = ap.heldout.units[k];
                        R.predictions[(test[j] * d.U + u) * B + b] = P2[(j * B + b) * Uh + k] * st.sd[u] + st.mu[u];
                    }
            score_predictions(tg, ap.heldout, s, test, ph.data(), R.areas[a].heldout);
        }
        L.seconds = now_s() - t_split;
        std::string line = strfmt("split %d/%d: %d iterations (best %d), %s;", s + 1, S, L.iters_done, L.best_iter,
                                  format_duration(L.seconds).c_str());
        for (const AreaFit& af : R.areas) {
            std::vector<float> e(af.fit.ev.begin() + s * d.B, af.fit.ev.begin() + (s + 1) * d.B);
            double sum = 0;
            int c = 0;
            for (float v : e)
                if (v == v) sum += v, c++;
            line += strfmt(" %s EV %.3f", af.area.c_str(), c ? sum / c : NAN);
        }
        log(line);
    }
    for (AreaFit& af : R.areas) {
        area_score_summarise(af.fit, S, d.B);
        area_score_summarise(af.heldout, S, d.B);
        if (af.has_teacher) area_score_summarise(af.teacher, S, d.B);
    }
    R.seconds = now_s() - t_start;
    return R;
}

}  // namespace vt
