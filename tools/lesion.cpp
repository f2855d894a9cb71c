// lesion.cpp: ./bin/lesion RUN, a fitted run re-scored with each feedback edge removed and each
// layer's recurrence switched off (models/fit/lesion.h).
//
//   ./bin/lesion runs/fit_dynamics/lstm_conv5-conv2
#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/cli.h"
#include "engine/io/json.h"
#include "engine/io/npy.h"
#include "models/fit/lesion.h"

using namespace vt;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        std::string out;
        Device device = Device::CPU;
        Precision precision = Precision::FP32;
        int threads = 0;
        Cli cli("lesion", "RUN",
                "Re-score a finished fit_dynamics run (folder RUN) on each split's held-out images with one part of\n"
                "the fitted network removed at a time, its readouts as fitted: each feedback edge (weights zero) and\n"
                "each layer's recurrence (the cell's state reset every step). Reports each variant's EV and its drop\n"
                "from the intact model per bin (mean +- SEM over splits). Writes OUT/lesion.json, lesion.csv,\n"
                "lesion.png (default OUT = RUN/lesion).");
        cli.flag("--out", &out, "output folder (default RUN/lesion)");
        cli.flag("--device", &device, "cpu or cuda");
        cli.flag("--precision", &precision, kPrecisionHelp);
        cli.flag("--threads", &threads, "compute threads (0 = all cores)").range(0, 1 << 16);
        cli.parse(argc, argv);
        backend_set_precision(device, precision);
        if (cli.positional.size() != 1) fail("lesion: expected one RUN folder (a fit_dynamics --out), got %zu arguments",
                                             cli.positional.size());
        const std::string run = cli.positional[0];
        backend_set_threads(threads);
        if (out.empty()) out = run + "/lesion";
        LesionReport r = lesion_run(run, device, [](const std::string& s) { std::fprintf(stderr, "lesion: %s\n", s.c_str()); });
        fs::create_directories(out);
        json_write(out + "/lesion.json", lesion_json(r));
        std::string csv = "variant,kind,area,bin_start_ms,bin_end_ms,drop_mean,drop_sem\n";
        for (const LesionVariant& v : r.variants)
            for (const LesionVariant::Area& a : v.areas)
                for (size_t b = 0; b < r.bin_start_ms.size(); b++)
                    csv += strfmt("%s,%s,%s,%g,%g,%s,%s\n", v.name.c_str(), v.kind.c_str(), a.area.c_str(), r.bin_start_ms[b],
                                  r.bin_end_ms[b], json_dump(json_num(a.drop_bin_mean[b])).c_str(),
                                  json_dump(json_num(a.drop_bin_sem[b])).c_str());
        file_write_atomic(out + "/lesion.csv", csv.data(), csv.size());
        lesion_plot(out + "/lesion.png", r);
        std::printf("%s", lesion_table(r).c_str());
        std::fprintf(stderr, "lesion: wrote %s/{lesion.json,lesion.csv,lesion.png}\n", out.c_str());
        return 0;
    });
}
