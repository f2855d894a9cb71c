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

// Two finite differences agree when within tol of each other (relative, floored at 1e-3).
static bool agree(double a, double b, double tol) {
    return std::fabs(a - b) <= tol * std::max({std::fabs(a), std::fabs(b), 1e-3});
}

GradCheckResult grad_check(const std::function<Tensor()>& f, const std::vector<Tensor>& wrt,
                           const GradCheckOptions& opt) {
    GradCheckResult res;
    Rng rng(opt.seed);
    for (const Tensor& w : wrt)
        CHECK(w.requires_grad() && w.device() == Device::CPU, "grad_check: %s must be a CPU tensor requiring a gradient",
              w.desc().c_str());

    // Analytic: seed each gradient, NaN-fill intermediates, backward, subtract the seed.
    Tape tape;
    Tensor out;
    {
        TapeScope scope(tape);
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

    // Numeric, at sampled elements: replay the recorded forward with the element moved,
    // max-pool winners and dropout masks held as in the analytic pass.
    FrozenChoices frozen;
    auto L = [&] {
        tape.forward();
        return dot_g(out, g);
    };
    for (size_t k = 0; k < wrt.size(); k++) {
        const Tensor& w = wrt[k];
        int64_t n = w.numel();
        std::vector<int64_t> idx;
        if (n <= opt.max_samples) {
            idx.resize((size_t)n);
            std::iota(idx.begin(), idx.end(), 0);
        } else {
            idx = {0, n - 1};
            while ((int)idx.size() < opt.max_samples) idx.push_back(rng.randint(n));
        }
        // central difference at element i with step h (the actual float steps taken)
        auto central = [&](int64_t i, double h) {
            float& x = w.data()[i];
            float orig = x;
            x = (float)(orig + h);
            double up = (double)x - orig, lp = L();
            x = (float)(orig - h);
            double dn = orig - (double)x, lm = L();
            x = orig;
            return (lp - lm) / (up + dn);
        };
        std::vector<double> num(idx.size());
        std::vector<bool> kink(idx.size());
        double scale = 0;  // the tensor's largest gradient: all analytic ones, sampled numeric ones
        for (float a : analytic[k])
            if (std::isfinite(a)) scale = std::max(scale, (double)std::fabs(a));
        for (size_t j = 0; j < idx.size(); j++) {
            double d1 = central(idx[j], opt.eps), d2 = central(idx[j], opt.eps / 2);
            num[j] = d2;
            kink[j] = !agree(d1, d2, opt.kink_tol);
            scale = std::max(scale, std::fabs(num[j]));
        }
        for (size_t j = 0; j < idx.size(); j++) {
            double a = analytic[k][idx[j]], nm = num[j];
            double denom = std::max({std::fabs(a), std::fabs(nm), opt.floor * scale, 1e-12});
            double err = std::isfinite(a) ? std::fabs(a - nm) / denom : INFINITY;
            if (kink[j] && std::isfinite(a) && std::fabs(num[j]) > opt.floor * scale) {
                res.skipped++;
                continue;
            }
            res.checked++;
            if (err > res.max_err || !std::isfinite(err)) {
                res.max_err = err;
                std::string name = w.name.empty() ? strfmt("wrt#%zu", k) : w.name;
                res.worst = strfmt("%s[%lld]: analytic %.6g numeric %.6g", name.c_str(), (long long)idx[j], a, nm);
            }
        }
    }
    tape.forward();  // leave the outputs as they were
    res.ok = res.max_err < opt.tol && res.skipped <= opt.max_skip * (res.checked + res.skipped);
    return res;
}

}  // namespace vt
