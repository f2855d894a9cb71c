// features.cpp: ./bin/features, a checkpoint's layers at every step (or per time bin) and, for
// a fitted ConvRNN, its per-bin predictions, on images of a folder or an .npz
// (models/fit/model_features.h).
//
//   ./bin/features --checkpoint runs/fit_dynamics/lstm_conv5-conv2/checkpoints/split0.npz
//       --images data/virtual_primate.npz --out feats.npz
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/cli.h"
#include "engine/io/image.h"
#include "engine/io/npy.h"
#include "engine/progress.h"
#include "models/fit/features.h"
#include "models/fit/model_features.h"
#include "models/datasets/npz_stream.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

// The stimuli: every image file below a folder (sorted by path), or the `images` array of an
// .npz (uint8 (N, H, W, 3), as the neural data holds them).
struct Stimuli {
    std::vector<std::string> files;  // a folder's
    NpyArray rgb;                    // an npz's (N, H, W, 3)
    std::vector<std::string> names;  // per image: its path relative to the folder, or image_id / row<i>
    int64_t N = 0;
};

bool is_image(const fs::path& p) {
    std::string e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return e == ".jpg" || e == ".jpeg" || e == ".png" || e == ".bmp";
}

Stimuli stimuli_open(const std::string& path) {
    Stimuli s;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec))
            if (it->is_regular_file(ec) && is_image(it->path())) s.files.push_back(it->path().string());
        if (ec) fail("--images: cannot list '%s': %s", path.c_str(), ec.message().c_str());
        std::sort(s.files.begin(), s.files.end());
        if (s.files.empty()) fail("--images: no image files (.jpg, .jpeg, .png, .bmp) below '%s'", path.c_str());
        for (const std::string& f : s.files) s.names.push_back(fs::relative(f, path).string());
        s.N = (int64_t)s.files.size();
        return s;
    }
    if (!fs::exists(path, ec)) fail("--images: '%s' does not exist (expected a folder of images or an .npz)", path.c_str());
    NpzIndex z = npz_index(path);
    if (!z.has("images")) fail("--images: '%s' has no 'images' array (expected uint8 (N, H, W, 3))", path.c_str());
    s.rgb = npz_array(z, "images");
    if (s.rgb.dtype != DType::U8 || s.rgb.shape.size() != 4 || s.rgb.shape[3] != 3 || s.rgb.shape[0] < 1 ||
        s.rgb.shape[1] < 1 || s.rgb.shape[2] < 1)
        fail("--images: '%s': 'images' must be uint8 (N, H, W, 3) with N, H, W >= 1, found %s %s", path.c_str(),
             dtype_name(s.rgb.dtype), shape_str(s.rgb.shape).c_str());
    s.N = s.rgb.shape[0];
    if (z.has("image_id")) {
        NpyArray ids = npz_array(z, "image_id");
        if (ids.dtype == DType::Unicode && (int64_t)ids.numel() == s.N) s.names = ids.to_strings();
    }
    if (s.names.empty())
        for (int64_t i = 0; i < s.N; i++) s.names.push_back("row" + std::to_string(i));
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        std::string checkpoint, images, out, layers;
        FeatureRequest req;
        Device device = Device::CPU;
        Precision precision = Precision::FP32;
        int threads = 0;
        bool overwrite = false;
        Cli cli("features", "",
                "Run a checkpoint's network on images: every requested layer at every model step (or averaged over\n"
                "each time bin of the fit), and for a fitted ConvRNN (fit_dynamics' checkpoints/split<s>.npz) its\n"
                "readouts' predictions per area and bin, in the data's units. Writes one .npz (numpy.load opens it;\n"
                "docs/results.md lists its keys); with --bins, the layer arrays are what ./bin/score --features reads.");
        cli.flag("--checkpoint", &checkpoint, "a checkpoint: a backbone (pretrain), a whole ConvRNN (make_virtual_primate "
                 "--write-teacher) or a fit's split checkpoint");
        cli.flag("--images", &images, "a folder of images (.jpg/.png/.bmp, all below it, sorted by path) or an .npz with "
                 "'images' uint8 (N, H, W, 3)");
        cli.flag("--out", &out, "the output .npz");
        cli.flag("--layers", &layers, "comma-separated layers (default: a fitted model's readout layers, else the last)");
        cli.flag("--steps", &req.steps, "model steps T (0: a fitted model's, else layers + 1)").range(0, 1000);
        cli.flag("--image-steps", &req.image_steps, "steps the image is shown, then mean grey (-1: a fitted model's, "
                 "else all)").range(-1, 1000);
        cli.flag("--bins", &req.bins, "average each layer over the fit's time bins, (N, B, D), instead of per step");
        cli.flag("--batch", &req.batch, "images per forward pass").range(1, 4096);
        cli.flag("--device", &device, "cpu or cuda");
        cli.flag("--precision", &precision, kPrecisionHelp);
        cli.flag("--threads", &threads, "compute threads (0 = all cores)").range(0, 1 << 16);
        cli.flag("--overwrite", &overwrite, "replace an existing --out");
        cli.parse(argc, argv);
        backend_set_precision(device, precision);
        if (!cli.positional.empty()) fail("features: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
        if (checkpoint.empty()) fail("features: --checkpoint is required (see --help)");
        if (images.empty()) fail("features: --images is required (see --help)");
        if (out.empty()) fail("features: --out is required (see --help)");
        if (fs::exists(out) && !overwrite) fail("--out: '%s' exists (pass --overwrite to replace it)", out.c_str());
        req.layers = split_list(layers);
        backend_set_threads(threads);

        CheckpointModel cm = checkpoint_model_load(checkpoint, device);
        Stimuli st = stimuli_open(images);
        const int S = cm.model->spec.in_size;
        auto input = [&](int64_t i, float* dst) {
            if (!st.files.empty()) {
                Image img = image_load(st.files[i]);
                stimulus_to_input(dst, img.rgb.data(), img.H, img.W, S, cm.model->norm);
            } else {
                const int H = (int)st.rgb.shape[1], W = (int)st.rgb.shape[2];
                stimulus_to_input(dst, st.rgb.bytes.data() + i * (int64_t)H * W * 3, H, W, S, cm.model->norm);
            }
        };
        std::fprintf(stderr, "features: %s (%s, %s cells, feedback %s%s) on %lld images of %s\n", checkpoint.c_str(),
                     cm.model->spec.arch.c_str(), cm.motif.c_str(), cm.feedback.c_str(), cm.fitted ? ", fitted" : "",
                     (long long)st.N, images.c_str());
        Progress bar("features", st.N, "img");
        Npz z = model_features(cm, st.N, input, req, [&](int64_t done) { bar.update(done); });
        bar.finish();
        z.set("image", NpyArray::from_strings(st.names));
        if (fs::path(out).has_parent_path()) fs::create_directories(fs::path(out).parent_path());
        npz_write(out, z);
        std::fprintf(stderr, "features: wrote %s:", out.c_str());
        for (const std::string& n : z.names)
            if (n.rfind("meta.", 0) != 0) std::fprintf(stderr, " %s %s", n.c_str(), shape_str(z.get(n).shape).c_str());
        std::fprintf(stderr, "\n");
        return 0;
    });
}
