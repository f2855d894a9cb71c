// predictions.cpp: see predictions.h.
#include "models/fit/predictions.h"

#include <cmath>

namespace vt {

Npz fit_predictions_npz(const FitResult& R) {
    const Targets& tg = R.targets;
    const int64_t N = tg.N, U = tg.U, B = tg.B;
    CHECK((int64_t)R.predictions.size() == N * U * B, "fit_predictions_npz: %zu predictions for (%lld, %lld, %lld)",
          R.predictions.size(), (long long)N, (long long)U, (long long)B);
    std::vector<std::string> area((size_t)U), role((size_t)U);
    for (const AreaFit& a : R.areas) {
        for (int u : a.fit_units) area[u] = a.area, role[u] = "fit";
        for (int u : a.heldout_units) area[u] = a.area, role[u] = "heldout";
    }
    std::vector<float> ceiling = tg.has_ceiling() ? tg.ceiling : std::vector<float>((size_t)(U * B), NAN);
    std::vector<int32_t> split(tg.folds.fold.begin(), tg.folds.fold.end());
    const float min_rel = tg.cfg.min_reliability;
    // per split, unit and bin: r and EV as the scorer counts them (NaN: not scored there)
    const int S = tg.folds.k;
    std::vector<float> r_su((size_t)(S * U * B), NAN), ev_su((size_t)(S * U * B), NAN);  // (S, U, B)
    for (int s = 0; s < S; s++) {
        std::vector<int64_t> test;
        for (int64_t i = 0; i < N; i++)
            if (tg.folds.fold[i] == s) test.push_back(i);
        std::vector<float> p(test.size()), y(test.size());
        for (int64_t u = 0; u < U; u++) {
            if (role[u].empty()) continue;
            for (int64_t b = 0; b < B; b++) {
                for (size_t j = 0; j < test.size(); j++)
                    p[j] = R.predictions[(test[j] * U + u) * B + b], y[j] = tg.mean[(test[j] * U + u) * B + b];
                const double r = held_out_r(p.data(), 1, y.data(), (int64_t)test.size());
                const size_t k = (size_t)((s * U + u) * B + b);
                r_su[k] = (float)r, ev_su[k] = unit_ev(tg, (int)u, b, r);
            }
        }
    }
    Npz z;
    z.set("predictions", NpyArray::from_f32({N, U, B}, R.predictions.data()));
    z.set("observed", NpyArray::from_f32({N, U, B}, tg.mean.data()));
    z.set("ceiling", NpyArray::from_f32({U, B}, ceiling.data()));
    z.set("test_split", NpyArray::from_i32({N}, split.data()));
    z.set("unit_id", NpyArray::from_strings(tg.unit_id));
    z.set("unit_area", NpyArray::from_strings(area));
    z.set("unit_role", NpyArray::from_strings(role));
    z.set("bin_start_ms", NpyArray::from_f32({B}, tg.bin_start_ms.data()));
    z.set("bin_end_ms", NpyArray::from_f32({B}, tg.bin_end_ms.data()));
    z.set("min_reliability", NpyArray::from_f32({1}, &min_rel));
    z.set("unit_r", NpyArray::from_f32({S, U, B}, r_su.data()));
    z.set("unit_ev", NpyArray::from_f32({S, U, B}, ev_su.data()));
    return z;
}

}  // namespace vt
