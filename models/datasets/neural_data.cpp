// neural_data.cpp: loading, validating and saving the neural dataset (see neural_data.h).
#include "models/datasets/neural_data.h"

#include <cmath>

#include "engine/common.h"
#include "engine/io/image.h"
#include "engine/io/npy.h"
#include "models/datasets/npz_stream.h"

namespace vt {
namespace {

std::string shape_text(const Shape& s) {
    std::string t = "(";
    for (size_t i = 0; i < s.size(); i++) t += (i ? ", " : "") + std::to_string(s[i]);
    return t + (s.size() == 1 ? ",)" : ")");
}

// A 1-D array of `n` elements named `key`, or a failure naming it.
void expect_1d(const std::string& path, const std::string& key, const Shape& s, int64_t n, const char* what) {
    if (s.size() != 1 || s[0] != n)
        fail("'%s': '%s' must have shape (%lld,) (%s), found %s", path.c_str(), key.c_str(), (long long)n, what,
             shape_text(s).c_str());
}

std::vector<std::string> load_strings(const NpzIndex& z, const std::string& key, int64_t n, const char* what) {
    NpyArray a = npz_array(z, key);
    if (a.dtype != DType::Unicode)
        fail("'%s': '%s' must be a unicode string array (numpy dtype '<U...'), found %s", z.path.c_str(), key.c_str(),
             dtype_name(a.dtype));
    expect_1d(z.path, key, a.shape, n, what);
    return a.to_strings();
}

std::vector<float> load_floats(const NpzIndex& z, const std::string& key, int64_t n) {
    NpyArray a = npz_array(z, key);
    if (a.dtype == DType::Unicode || a.dtype == DType::Bool)
        fail("'%s': '%s' must be numeric (float32), found %s", z.path.c_str(), key.c_str(), dtype_name(a.dtype));
    expect_1d(z.path, key, a.shape, n, "one value per time bin");
    return a.to_f32();
}

}  // namespace

NeuralData neural_data_load(const std::string& path, bool with_images) {
    NpzIndex z = npz_index(path);
    for (const char* key : {"images", "responses", "unit_area", "bin_start_ms", "bin_end_ms"})
        if (!z.has(key))
            fail("'%s' is not a ventral neural dataset: the required array '%s' is missing (required: images, "
                 "responses, unit_area, bin_start_ms, bin_end_ms; see models/datasets/neural_data.h)", path.c_str(), key);
    NeuralData d;
    d.path = path;

    NpyHeader rh = npz_head(z, "responses");
    if (rh.dtype != DType::F32)
        fail("'%s': 'responses' must be float32, found %s (convert with responses.astype(numpy.float32))", path.c_str(),
             dtype_name(rh.dtype));
    if (rh.shape.size() != 4)
        fail("'%s': 'responses' must have 4 dimensions (R repetitions, N images, U units, B bins), found %s",
             path.c_str(), shape_text(rh.shape).c_str());
    d.R = rh.shape[0], d.N = rh.shape[1], d.U = rh.shape[2], d.B = rh.shape[3];
    if (d.R < 1 || d.N < 1 || d.U < 1 || d.B < 1)
        fail("'%s': 'responses' %s has an empty dimension (R, N, U, B must all be >= 1)", path.c_str(),
             shape_text(rh.shape).c_str());

    NpyHeader ih = npz_head(z, "images");
    if (ih.dtype != DType::U8)
        fail("'%s': 'images' must be uint8 RGB, found %s", path.c_str(), dtype_name(ih.dtype));
    if (ih.shape.size() != 4 || ih.shape[3] != 3)
        fail("'%s': 'images' must have shape (N, H, W, 3), found %s", path.c_str(), shape_text(ih.shape).c_str());
    if (ih.shape[0] != d.N)
        fail("'%s': 'images' holds %lld images but 'responses' %s has N = %lld", path.c_str(), (long long)ih.shape[0],
             shape_text(rh.shape).c_str(), (long long)d.N);
    if (ih.shape[1] < 1 || ih.shape[2] < 1) fail("'%s': 'images' has an empty side: %s", path.c_str(), shape_text(ih.shape).c_str());
    if (ih.shape[1] > IMAGE_MAX_SIDE || ih.shape[2] > IMAGE_MAX_SIDE)
        fail("'%s': 'images' %s has a side above %d pixels (the image limit of engine/io/image.h)", path.c_str(),
             shape_text(ih.shape).c_str(), IMAGE_MAX_SIDE);
    if (with_images) {
        NpyArray a = npz_array(z, "images");
        d.H = (int)ih.shape[1], d.W = (int)ih.shape[2];
        d.images = std::move(a.bytes);
    }

    // npz_head checked that the shape's bytes (in 64-bit checked arithmetic) are in the member
    mem_check(strfmt("'%s': 'responses' float32 %s", path.c_str(), shape_text(rh.shape).c_str()), (uint64_t)rh.nbytes);
    d.responses.resize((size_t)rh.numel);
    npz_read_f32(z, "responses", d.responses.data(), rh.numel);

    d.unit_area = load_strings(z, "unit_area", d.U, "one area per unit");
    d.bin_start_ms = load_floats(z, "bin_start_ms", d.B);
    d.bin_end_ms = load_floats(z, "bin_end_ms", d.B);
    if (z.has("unit_id")) d.unit_id = load_strings(z, "unit_id", d.U, "one id per unit");
    if (z.has("image_id")) d.image_id = load_strings(z, "image_id", d.N, "one id per image");
    if (z.has("image_object")) d.image_object = load_strings(z, "image_object", d.N, "one object label per image");
    if (z.has("image_category")) d.image_category = load_strings(z, "image_category", d.N, "one category per image");
    if (z.has("image_variation")) {
        NpyArray a = npz_array(z, "image_variation");
        if (a.dtype != DType::I32 && a.dtype != DType::I64 && a.dtype != DType::U8)
            fail("'%s': 'image_variation' must be an integer array (int32), found %s", path.c_str(), dtype_name(a.dtype));
        expect_1d(path, "image_variation", a.shape, d.N, "one variation level per image");
        for (int64_t v : a.to_i64()) d.image_variation.push_back((int32_t)v);
    }
    if (z.has("presentation_ms")) {
        NpyArray a = npz_array(z, "presentation_ms");
        if (a.numel() != 1 || a.dtype == DType::Unicode)
            fail("'%s': 'presentation_ms' must be a numeric scalar, found %s %s", path.c_str(), dtype_name(a.dtype),
                 shape_text(a.shape).c_str());
        d.presentation_ms = a.to_f32()[0];
    }
    if (d.unit_id.empty())
        for (int64_t u = 0; u < d.U; u++) d.unit_id.push_back("unit" + std::to_string(u));
    if (d.image_id.empty())
        for (int64_t i = 0; i < d.N; i++) d.image_id.push_back("image" + std::to_string(i));
    neural_data_validate(d);
    return d;
}

void neural_data_validate(const NeuralData& d) {
    const char* p = d.path.c_str();
    if (d.R < 1 || d.N < 1 || d.U < 1 || d.B < 1)
        fail("'%s': empty dataset: R=%lld N=%lld U=%lld B=%lld (all must be >= 1)", p, (long long)d.R, (long long)d.N,
             (long long)d.U, (long long)d.B);
    const int64_t RNUB = checked_bytes({d.R, d.N, d.U, d.B}, 1, strfmt("'%s': responses (R, N, U, B)", p));
    if ((int64_t)d.responses.size() != RNUB)
        fail("'%s': responses hold %zu values, expected R*N*U*B = %lld", p, d.responses.size(), (long long)RNUB);
    if (!d.images.empty()) {
        const int64_t NHW3 = checked_bytes({d.N, d.H, d.W, 3}, 1, strfmt("'%s': images (N, H, W, 3)", p));
        if ((int64_t)d.images.size() != NHW3)
            fail("'%s': images hold %zu bytes, expected N*H*W*3 = %lld", p, d.images.size(), (long long)NHW3);
    }
    auto sized = [&](const char* key, size_t n, int64_t want, bool optional) {
        if ((optional && n == 0) || (int64_t)n == want) return;
        fail("'%s': '%s' has %zu entries, expected %lld", p, key, n, (long long)want);
    };
    sized("unit_area", d.unit_area.size(), d.U, false);
    sized("unit_id", d.unit_id.size(), d.U, true);
    sized("image_id", d.image_id.size(), d.N, true);
    sized("image_object", d.image_object.size(), d.N, true);
    sized("image_category", d.image_category.size(), d.N, true);
    sized("image_variation", d.image_variation.size(), d.N, true);
    sized("bin_start_ms", d.bin_start_ms.size(), d.B, false);
    sized("bin_end_ms", d.bin_end_ms.size(), d.B, false);
    for (int64_t u = 0; u < d.U; u++)
        if (d.unit_area[u].empty()) fail("'%s': unit_area[%lld] is empty: every unit needs an area name", p, (long long)u);
    for (int64_t b = 0; b < d.B; b++)
        if (!std::isfinite(d.bin_start_ms[b]) || !std::isfinite(d.bin_end_ms[b]) || !(d.bin_start_ms[b] < d.bin_end_ms[b]))
            fail("'%s': time bin %lld is [%g, %g) ms: bin_start_ms must be finite and below bin_end_ms", p, (long long)b,
                 d.bin_start_ms[b], d.bin_end_ms[b]);
    if (!(d.presentation_ms > 0)) fail("'%s': presentation_ms must be > 0, found %g", p, d.presentation_ms);

    // Values: NaN marks a missing trial; infinities are errors; every image needs a response.
    const int64_t per_image = d.U * d.B;
    std::vector<char> seen(d.N, 0);
    for (int64_t r = 0; r < d.R; r++)
        for (int64_t i = 0; i < d.N; i++) {
            const float* x = &d.responses[(r * d.N + i) * per_image];
            for (int64_t k = 0; k < per_image; k++) {
                if (std::isinf(x[k]))
                    fail("'%s': responses[%lld, %lld, %lld, %lld] is %g: only finite values or NaN (missing trial) "
                         "are allowed", p, (long long)r, (long long)i, (long long)(k / d.B), (long long)(k % d.B), x[k]);
                if (!seen[i] && x[k] == x[k]) seen[i] = 1;
            }
        }
    for (int64_t i = 0; i < d.N; i++)
        if (!seen[i])
            fail("'%s': image %lld ('%s') has no response at all (every repetition, unit and bin is NaN); drop it from "
                 "the dataset", p, (long long)i, d.image_id.empty() ? "" : d.image_id[i].c_str());
}

void neural_data_save(const std::string& path, const NeuralData& d) {
    neural_data_validate(d);
    CHECK(!d.images.empty(), "neural_data_save: '%s' needs the images", path.c_str());
    Npz z;
    z.set("images", NpyArray::from_u8({d.N, d.H, d.W, 3}, d.images.data()));
    z.set("responses", NpyArray::from_f32({d.R, d.N, d.U, d.B}, d.responses.data()));
    z.set("unit_area", NpyArray::from_strings(d.unit_area));
    z.set("bin_start_ms", NpyArray::from_f32({d.B}, d.bin_start_ms.data()));
    z.set("bin_end_ms", NpyArray::from_f32({d.B}, d.bin_end_ms.data()));
    if (!d.unit_id.empty()) z.set("unit_id", NpyArray::from_strings(d.unit_id));
    if (!d.image_id.empty()) z.set("image_id", NpyArray::from_strings(d.image_id));
    if (!d.image_object.empty()) z.set("image_object", NpyArray::from_strings(d.image_object));
    if (!d.image_category.empty()) z.set("image_category", NpyArray::from_strings(d.image_category));
    if (!d.image_variation.empty()) z.set("image_variation", NpyArray::from_i32({d.N}, d.image_variation.data()));
    z.set("presentation_ms", NpyArray::scalar_f32(d.presentation_ms));
    npz_write(path, z, false);
}

std::vector<std::string> neural_areas(const NeuralData& d) {
    std::vector<std::string> areas;
    for (const std::string& a : d.unit_area) {
        bool known = false;
        for (const std::string& k : areas) known = known || k == a;
        if (!known) areas.push_back(a);
    }
    return areas;
}

std::vector<float> neural_trial_mean(const NeuralData& d) {
    const int64_t per_image = d.U * d.B, n = d.N * per_image;
    std::vector<float> mean((size_t)n);
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; k++) {
        double s = 0;
        int c = 0;
        for (int64_t r = 0; r < d.R; r++) {
            float x = d.responses[r * n + k];
            if (x == x) s += x, c++;
        }
        mean[k] = c ? (float)(s / c) : NAN;
    }
    return mean;
}

}  // namespace vt
