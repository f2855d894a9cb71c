// gradcheck.cpp: finite-difference gradient checking (see gradcheck.h).
#include "engine/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/autograd.h"
#include "engine/backend.h"

namespace vt {

static double dot_g(const Tensor& out, const std::vector<float>& g) {
    std::vector<float> y = out.to_vector();
    double s = 0;
    for (size_t i = 0; i < y.size(); i++) s += (double)y[i] * g[i];
    return s;
}

// Two derivative estimates agree when within tol of each other, relative to the larger of
// them or to `floor` (the scale below which values are judged absolutely).
static bool agree(double a, double b, double tol, double floor) {
    return std::fabs(a - b) <= tol * std::max({std::fabs(a), std::fabs(b), floor, 1e-12});
}

// The derivative of L along a direction, by the fourth-order central difference
//   L'(0) ~ (8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h,   error O(h^4 L^(5)),
// where move(s) sets the parameters to base + s * direction and L() replays the forward.
template <class Move, class Eval>
static double derivative4(Move move, Eval L, double h) {
    double v[4], s[4] = {h, -h, 2 * h, -2 * h};
    for (int k = 0; k < 4; k++) {
        move(s[k]);
        v[k] = L();
    }
    move(0);
    return (8 * (v[0] - v[1]) - (v[2] - v[3])) / (12 * h);
}

GradCheckResult grad_check(const std::function<Tensor()>& f, const std::vector<Tensor>& wrt,
                           const GradCheckOptions& opt) {
    GradCheckResult res;
    Rng rng(opt.seed);
    for (const Tensor& w : wrt)
        CHECK(w.requires_grad() && w.device() == Device::CPU, "grad_check: %s must be a CPU tensor requiring a gradient",
              w.desc().c_str());

    // Analytic: record the graph (and the branch every ELU/ReLU element takes), seed each
    // gradient, NaN-fill intermediates, backward, subtract the seed.
    Tape tape;
    Tensor out;
    {
        TapeScope scope(tape);
        RecordChoices record;
        out = f();
    }
    std::vector<float> g((size_t)out.numel());
    for (auto& v : g) v = rng.normal();
    std::vector<std::vector<float>> seeds;
    for (const Tensor& w : wrt) {
        std::vector<float> s((size_t)w.numel());
        for (auto& v : s) v = rng.normal();
        backend_copy_from_host(w.device(), w.grad(), s.data(), w.numel());
        seeds.push_back(std::move(s));
    }
    tape.fill_grad(NAN);
    tape.backward(out, tensor_from(out.shape, g));
    std::vector<std::vector<float>> analytic;
    for (size_t k = 0; k < wrt.size(); k++) {
        std::vector<float> a((size_t)wrt[k].numel());
        backend_copy_to_host(Device::CPU, a.data(), wrt[k].grad(), wrt[k].numel());
        for (size_t i = 0; i < a.size(); i++) a[i] -= seeds[k][i];
        analytic.push_back(std::move(a));
    }

    // Numeric: replay the recorded forward with parameters moved, every discrete choice
    // (max-pool winners, dropout masks, ELU/ReLU branches) held as in the analytic pass.
    FrozenChoices frozen;
    auto L = [&] {
        tape.forward();
        return dot_g(out, g);
    };
    auto note = [&](double err, const std::string& where) {
        res.checked++;
        if (err > res.max_err || !std::isfinite(err)) {
            res.max_err = err;
            res.worst = where;
        }
    };
    for (size_t k = 0; k < wrt.size(); k++) {
        const Tensor& w = wrt[k];
        const std::vector<float>& a = analytic[k];
        std::string name = w.name.empty() ? strfmt("wrt#%zu", k) : w.name;
        int64_t n = w.numel();
        std::vector<float> base(w.data(), w.data() + n);
        double scale = 0;  // the tensor's largest gradient
        for (float v : a)
            if (std::isfinite(v)) scale = std::max(scale, (double)std::fabs(v));

        // 1. Along one direction through every element: d = a + r * rms(a), r = +-1 at
        //    random, of unit length, so that the step moves the parameters as far as one
        //    element's step does. Its derivative a.d gathers the whole tensor's gradient
        //    (~|a|, against ~|a_i| for one element), far above the round-off in L.
        if (n > 1 && scale > 0) {
            double ss = 0;
            for (float v : a) ss += std::isfinite(v) ? (double)v * v : 0;
            double rms = std::sqrt(ss / n), dd = 0;
            std::vector<double> d((size_t)n);
            for (int64_t i = 0; i < n; i++) {
                d[i] = (std::isfinite(a[i]) ? a[i] : 0.) + (rng.uniform() < 0.5 ? -rms : rms);
                dd += d[i] * d[i];
            }
            double ad = 0;
            for (int64_t i = 0; i < n; i++) {
                d[i] /= std::sqrt(dd);
                ad += (double)a[i] * d[i];
            }
            auto move = [&](double s) {
                for (int64_t i = 0; i < n; i++) w.data()[i] = (float)(base[i] + s * d[i]);
            };
            double d1 = derivative4(move, L, opt.eps), d2 = derivative4(move, L, opt.eps / 2);
            if (!agree(d1, d2, opt.kink_tol, 0) && std::isfinite(ad)) {
                res.skipped++;
            } else {
                double err = std::isfinite(ad) ? std::fabs(ad - d1) / std::max({std::fabs(ad), std::fabs(d1), 1e-12})
                                               : INFINITY;
                note(err, strfmt("%s along a direction: analytic %.6g numeric %.6g", name.c_str(), ad, d1));
            }
        }

        // 2. Element by element, at sampled elements (all of them for small tensors).
        std::vector<int64_t> idx;
        if (n <= opt.max_samples) {
            idx.resize((size_t)n);
            std::iota(idx.begin(), idx.end(), 0);
        } else {
            idx = {0, n - 1};
            while ((int)idx.size() < opt.max_samples) idx.push_back(rng.randint(n));
        }
        std::vector<double> num(idx.size()), half(idx.size());  // steps eps and eps/2
        for (size_t j = 0; j < idx.size(); j++) {
            float& x = w.data()[idx[j]];
            float orig = x;
            auto move = [&](double s) { x = (float)(orig + s); };
            num[j] = derivative4(move, L, opt.eps);
            half[j] = derivative4(move, L, opt.eps / 2);
            scale = std::max(scale, std::fabs(num[j]));
        }
        for (size_t j = 0; j < idx.size(); j++) {
            double an = a[idx[j]], nm = num[j];
            double denom = std::max({std::fabs(an), std::fabs(nm), opt.floor * scale, 1e-12});
            double err = std::isfinite(an) ? std::fabs(an - nm) / denom : INFINITY;
            if (!agree(nm, half[j], opt.kink_tol, opt.floor * scale) && std::isfinite(an)) {
                res.skipped++;
                continue;
            }
            note(err, strfmt("%s[%lld]: analytic %.6g numeric %.6g", name.c_str(), (long long)idx[j], an, nm));
        }
    }
    tape.forward();  // leave the outputs as they were
    res.ok = res.max_err < opt.tol && res.skipped <= opt.max_skip * (res.checked + res.skipped);
    return res;
}

}  // namespace vt
