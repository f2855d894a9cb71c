// test_alexnet.cpp: golden test of torchvision AlexNet weights converted into ventral.
//
// Fixtures (made by tests/fixtures/make_alexnet_fixture.py, which says how and why the
// weights are quantised and sparse):
//   alexnet_golden_weights.npz  a seeded torchvision AlexNet (10 classes) converted by
//                               tools/convert_torchvision_alexnet.py: a ventral checkpoint
//   alexnet_golden.npz          two uint8 224x224 images; PyTorch's (float64) conv1..conv5
//                               activations at sampled positions, their per-image sums and
//                               sums of squares; the eval-mode logits
// An element passes when |a - b| <= RTOL * (|b| + 1e-2 * max|b|), max over the reference
// tensor: 1e-4 relative, with a floor of 1e-6 of the tensor's largest value for elements
// near zero (where float32 sums of cancelling terms have no relative accuracy).
#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "models/convrnn.h"
#include "tests/testutil.h"

using namespace vt;

namespace {

constexpr double RTOL = 1e-4;

bool file_exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

// max over i of |a_i - b_i| / (|b_i| + 1e-2 max|b|): the test passes when this is <= RTOL.
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double bmax = 0, e = 0;
    for (double v : b) bmax = std::max(bmax, std::fabs(v));
    for (size_t i = 0; i < a.size(); i++) e = std::max(e, std::fabs(a[i] - b[i]) / (std::fabs(b[i]) + 1e-2 * bmax));
    return e;
}

}  // namespace

TEST_CASE("alexnet: converted torchvision weights give PyTorch's conv1..conv5 activations and logits") {
    const std::string golden_path = vt_test::fixture("alexnet_golden.npz");
    const std::string weights_path = vt_test::fixture("alexnet_golden_weights.npz");
    if (!file_exists(golden_path) || !file_exists(weights_path)) {
        MESSAGE("skipped: tests/fixtures/alexnet_golden*.npz absent (make_alexnet_fixture.py makes them)");
        return;
    }
    Npz g = npz_read(golden_path);
    REQUIRE(g.get("fixture.format").to_strings() == std::vector<std::string>{"ventral-alexnet-golden"});
    REQUIRE(g.get("fixture.version").to_i64() == std::vector<int64_t>{1});
    const NpyArray& images = g.get("images");  // (N, 224, 224, 3) uint8
    const NpyArray& logits_ref = g.get("logits");  // (N, K)
    REQUIRE(images.dtype == DType::U8);
    REQUIRE(images.shape.size() == 4);
    REQUIRE(logits_ref.shape.size() == 2);
    const int N = (int)images.shape[0], S = (int)images.shape[1], K = (int)logits_ref.shape[1];

    // The converter's output loads as an alexnet checkpoint, with torchvision's normalisation.
    ModelConfig cfg;
    cfg.arch = "alexnet";
    cfg.num_classes = K;
    Model m(cfg, 1);
    REQUIRE(S == m.spec.in_size);
    Npz meta = checkpoint_load(weights_path, m.params);
    CHECK(meta_string(meta, "meta.arch") == "alexnet");
    std::vector<float> mean = meta_floats(meta, "meta.mean"), sd = meta_floats(meta, "meta.std");
    REQUIRE(mean.size() == 3);
    REQUIRE(sd.size() == 3);
    for (int c = 0; c < 3; c++) {
        CHECK(mean[c] == m.norm.mean[c]);
        CHECK(sd[c] == m.norm.std[c]);
    }

    // The images, normalised as every ventral loader does.
    Tensor x = tensor_empty({N, 3, S, S});
    for (int n = 0; n < N; n++) {
        Image img;
        img.H = img.W = S;
        img.rgb.assign(images.bytes.begin() + (size_t)n * S * S * 3, images.bytes.begin() + (size_t)(n + 1) * S * S * 3);
        image_to_chw(x.data() + (size_t)n * 3 * S * S, img, mean.data(), sd.data());
    }
    NoGradScope no_grad;
    std::vector<Tensor> acts = backbone_forward(m, x);
    Tensor logits = classifier_forward(m, acts.back(), /*training=*/false, 0);

    REQUIRE(acts.size() == 5);
    for (int l = 0; l < 5; l++) {
        const std::string name = m.spec.layers[l].name, key = "act." + name;
        INFO("layer " << name);
        const Tensor& a = acts[l];
        REQUIRE(a.shape == g.get(key + ".shape").to_i64());
        // sampled elements
        std::vector<int64_t> idx = g.get(key + ".index").to_i64();
        std::vector<double> ref = g.get(key + ".value").to_f64(), got(idx.size());
        int64_t bad_index = 0;
        for (size_t i = 0; i < idx.size(); i++) {
            bool ok = idx[i] >= 0 && idx[i] < a.numel();
            bad_index += !ok;
            got[i] = ok ? a.data()[idx[i]] : NAN;
        }
        REQUIRE(bad_index == 0);
        double e_sample = rel_err(got, ref);
        // per-image sums and sums of squares: every element of the tensor counts
        std::vector<double> sum_ref = g.get(key + ".sum").to_f64(), sumsq_ref = g.get(key + ".sumsq").to_f64();
        std::vector<double> sum(N, 0.0), sumsq(N, 0.0);
        const int64_t per = a.numel() / N;
        for (int n = 0; n < N; n++)
            for (int64_t i = 0; i < per; i++) {
                double v = a.data()[n * per + i];
                sum[n] += v;
                sumsq[n] += v * v;
            }
        double e_sum = std::max(rel_err(sum, sum_ref), rel_err(sumsq, sumsq_ref));
        INFO("sampled elements: max relative error " << e_sample << ", sums: " << e_sum);
        CHECK(e_sample <= RTOL);
        CHECK(e_sum <= RTOL);
    }
    REQUIRE(logits.shape == logits_ref.shape);
    std::vector<double> got(logits.data(), logits.data() + logits.numel());
    double e_logits = rel_err(got, logits_ref.to_f64());
    INFO("logits: max relative error " << e_logits);
    CHECK(e_logits <= RTOL);
}
