// inspect.cpp: ./bin/inspect FILE..., what is in a .npy/.npz (arrays, dtypes, shapes, ranges),
// an image (size) or a checkpoint (--arch: does it load into that architecture?).
#include <cmath>
#include <cstdio>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "engine/io/npy.h"
#include "models/convrnn.h"
#include "engine/cli.h"

using namespace vt;

static bool ends_with(const std::string& s, const std::string& e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

static void print_array(const std::string& name, const NpyArray& a) {
    std::printf("  %-28s %-8s %-20s", name.c_str(), dtype_name(a.dtype), shape_str(a.shape).c_str());
    if (a.dtype == DType::Unicode) {
        std::vector<std::string> v = a.to_strings();
        std::printf(" %s%s", v.empty() ? "" : ("'" + v[0] + "'").c_str(), v.size() > 1 ? ", ..." : "");
    } else if (a.numel() > 0) {
        std::vector<double> v = a.to_f64();
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        int64_t nan = 0;
        for (double x : v) {
            if (std::isnan(x)) { nan++; continue; }
            lo = std::min(lo, x), hi = std::max(hi, x), sum += x;
        }
        std::printf(" min %.4g max %.4g mean %.4g", lo, hi, v.size() > (size_t)nan ? sum / (v.size() - nan) : NAN);
        if (nan) std::printf(" (%lld NaN)", (long long)nan);
    }
    std::printf("\n");
}

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        std::string arch;
        Cli cli("inspect", "FILE...",
                "Print what a .npy/.npz holds (arrays, dtypes, shapes, ranges) or an image's size.\n"
                "With --arch, also load a checkpoint into that architecture and say whether it fits.");
        cli.flag("--arch", &arch, "check that each .npz is a checkpoint of this architecture");
        cli.parse(argc, argv);
        if (cli.positional.empty()) fail("inspect: expected at least one FILE (see --help)");
        for (const std::string& path : cli.positional) {
            if (ends_with(path, ".npz")) {
                Npz z = npz_read(path);
                std::printf("%s: npz, %zu arrays\n", path.c_str(), z.names.size());
                for (const std::string& n : z.names) print_array(n, z.get(n));
                if (!arch.empty()) {
                    ModelConfig mc;
                    mc.arch = arch;
                    Model m(mc, 0);
                    checkpoint_load(path, m.params, {"fc"});
                    std::printf("  loads as %s: %lld parameters\n", arch.c_str(), (long long)m.params.numel());
                }
            } else if (ends_with(path, ".npy")) {
                std::printf("%s: npy\n", path.c_str());
                print_array("", npy_read(path));
            } else {
                ImageInfo im = image_info(path);  // the header only: a huge image costs no memory here
                std::printf("%s: image %d x %d (%s, %d channels)\n", path.c_str(), im.W, im.H, im.format, im.channels);
            }
        }
        return 0;
    });
}
