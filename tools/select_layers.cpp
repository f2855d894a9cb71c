// select_layers.cpp: ./bin/select_layers, the layer-to-area analysis of the paper's Fig. 2.
//
//   ./bin/select_layers --data D.npz --out DIR [--backbone CKPT] [--areas V4,IT] [--splits 4]
//
// Features of every backbone layer for the dataset's images (feedforward pass, batched;
// stimulus preprocessing in models/fit/features.h), each scored against every area and bin with
// an independent PLS per bin ("time-varied" mapping; protocol in models/fit/scoring.h). Writes
// DIR/results.json, DIR/layers.csv (one row per layer, area and bin) and DIR/heatmap.png
// (layers x bins, one panel per area), and prints the table and the best layer per area
// (highest EV averaged over bins).
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/io/npy.h"
#include "engine/io/plot.h"
#include "engine/progress.h"
#include "models/fit/features.h"
#include "models/datasets/neural_data.h"
#include "models/fit/scoring.h"
#include "engine/cli.h"
#include "models/fit/scoring_flags.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

std::string bin_label(float a, float b) { return strfmt("%g..%g", a, b); }

// The command line.
struct SelectArgs {
    std::string backbone, arch, data, out, areas;
    int batch = 64, threads = 0;
    Device device = Device::CPU;
    Precision precision = Precision::FP32;
    ScoreConfig c;  // the scoring protocol (models/fit/scoring_flags.h), areas included
};

// The flags, checked; sets the compute threads and, without --backbone, finds the default one.
SelectArgs args_parse(int argc, char** argv) {
    SelectArgs a;
    Cli cli("select_layers", "",
            "Score every layer of a pretrained backbone against every area and time bin of a neural dataset\n"
            "(feedforward features, an independent PLS per bin, held-out images): the paper's Fig. 2.\n"
            "Writes DIR/results.json, DIR/layers.csv, DIR/heatmap.png; prints the best layer per area.");
    cli.flag("--backbone", &a.backbone, strfmt("backbone checkpoint (default %s)", kDefaultBackbone));
    cli.flag("--arch", &a.arch, "expected architecture (checked against the checkpoint's meta.arch)");
    cli.flag("--data", &a.data, "neural dataset .npz (models/datasets/neural_data.h)");
    cli.flag("--out", &a.out, "output folder");
    cli.flag("--areas", &a.areas, "comma-separated areas (default: all of the data's)");
    ScoringFlags scoring;
    scoring.add(cli, a.c);
    cli.flag("--batch", &a.batch, "images per forward pass").range(1, 1 << 16);
    cli.flag("--device", &a.device, "cpu or cuda: where the backbone's forward passes run (the PLS fits run on the CPU)");
    cli.flag("--precision", &a.precision, kPrecisionHelp);
    cli.flag("--threads", &a.threads, "compute threads (0 = all cores; at most the hardware threads)").range(0, 1 << 16);
    cli.parse(argc, argv);
    backend_set_precision(a.device, a.precision);
    scoring.apply(a.c);
    if (!cli.positional.empty()) fail("select_layers: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
    if (a.data.empty() || a.out.empty()) fail("select_layers: --data and --out are required (see --help)");
    if (a.batch < 1) fail("--batch: need at least 1, got %d", a.batch);
    backend_set_threads(a.threads);
    a.c.areas = split_list(a.areas);
    if (a.backbone.empty()) a.backbone = find_default_backbone("select_layers");
    return a;
}

// Every layer's scores against every area and bin, from its features feats[l] (N, D); each
// layer's features are freed once scored.
std::vector<LayerScore> layers_score(const Targets& tg, const BackboneSpec& spec, std::vector<std::vector<float>>& feats,
                                     int64_t N) {
    std::vector<LayerScore> results;
    for (size_t l = 0; l < spec.layers.size(); l++) {
        const int64_t D = (int64_t)feats[l].size() / N;
        Progress bar("score " + spec.layers[l].name, score_layer_fits(tg, 1, {Mapping::PerBin}), "fits");
        int64_t fits = 0;
        results.push_back(score_layer(tg, spec.layers[l].name, feats[l].data(), 1, D, {Mapping::PerBin},
                                      [&] { bar.update(++fits); }));
        bar.finish();
        std::vector<float>().swap(feats[l]);
    }
    return results;
}

// layers.csv: one row per layer, area and bin.
std::string layers_csv(const Targets& tg, const std::vector<LayerScore>& results) {
    std::string csv = "layer,area,bin_start_ms,bin_end_ms,ev_mean,ev_sem,r_median,ceiling,units\n";
    for (const LayerScore& L : results)
        for (const AreaScore& a : L.scores)
            for (int64_t b = 0; b < tg.B; b++)
                csv += strfmt("%s,%s,%g,%g,%s,%s,%s,%s,%d\n", L.layer.c_str(), a.area.c_str(), tg.bin_start_ms[b],
                              tg.bin_end_ms[b], json_number(a.ev_bin_mean[b]).c_str(),
                              json_number(a.ev_bin_sem[b]).c_str(), json_number(a.r_bin[b]).c_str(),
                              json_number(a.ceiling.empty() ? NAN : a.ceiling[b]).c_str(), a.units_per_bin[b]);
    return csv;
}

// Heatmap: rows = layers, columns = bins, one panel per area; the best layer of each bin outlined.
void heatmap_write(const std::string& path, const Targets& tg, const std::vector<LayerScore>& results,
                   const std::string& arch, const std::string& data) {
    std::vector<Heatmap> panels;
    for (size_t a = 0; a < tg.areas.size(); a++) {
        Heatmap h;
        h.title = tg.areas[a].area;
        h.rows = (int)results.size(), h.cols = (int)tg.B;
        for (const LayerScore& L : results) {
            h.row_labels.push_back(L.layer);
            h.values.insert(h.values.end(), L.scores[a].ev_bin_mean.begin(), L.scores[a].ev_bin_mean.end());
        }
        for (int64_t b = 0; b < tg.B; b++) h.col_labels.push_back(bin_label(tg.bin_start_ms[b], tg.bin_end_ms[b]));
        panels.push_back(std::move(h));
    }
    HeatmapStyle st;
    st.title = strfmt("%s layers vs %s", arch.c_str(), fs::path(data).filename().c_str());
    st.xlabel = "time bin (ms)";
    st.ylabel = "layer";
    st.colorbar_label = tg.has_ceiling() ? "noise-corrected EV" : "raw r^2 (no ceiling)";
    st.best = HeatmapBest::PerColumn;
    st.value_labels = tg.B <= 12;
    plot_heatmap_panels(path, panels, st);
}

// The table, then the best layer of each area (highest EV averaged over bins), on stdout.
void best_layers_print(const Targets& tg, const std::vector<LayerScore>& results) {
    std::printf("%s", scores_table(tg, results).c_str());
    for (size_t a = 0; a < tg.areas.size(); a++) {
        int best = -1;
        for (size_t l = 0; l < results.size(); l++) {
            float e = results[l].scores[a].ev_mean;
            if (std::isfinite(e) && (best < 0 || e > results[best].scores[a].ev_mean)) best = (int)l;
        }
        if (best < 0) std::printf("best layer for %s: none (no scoring units)\n", tg.areas[a].area.c_str());
        else
            std::printf("best layer for %s: %s (%s %.4f +- %.4f)\n", tg.areas[a].area.c_str(), results[best].layer.c_str(),
                        tg.has_ceiling() ? "EV" : "raw r^2", results[best].scores[a].ev_mean,
                        results[best].scores[a].ev_sem);
    }
}

}  // namespace

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        const SelectArgs a = args_parse(argc, argv);
        std::unique_ptr<Model> model = backbone_load(a.backbone, a.arch, a.device);
        NeuralData d = neural_data_load(a.data, true);
        Targets tg = targets_prepare(d, a.c);
        std::vector<float>().swap(d.responses);
        const BackboneSpec& spec = model->spec;
        std::fprintf(stderr,
                     "select_layers: %s (%s, input %dx%d, on %s) on %s: %lld images %dx%d, %lld units, %lld bins, %s\n",
                     a.backbone.c_str(), spec.arch.c_str(), spec.in_size, spec.in_size, device_name(a.device),
                     a.data.c_str(), (long long)d.N, d.H, d.W, (long long)d.U, (long long)d.B,
                     tg.has_ceiling() ? "noise-corrected" : "no ceiling: raw r^2");

        std::vector<std::vector<float>> feats;
        {
            Progress bar("features", d.N, "img");
            feats = backbone_features(*model, d.images.data(), d.N, d.H, d.W, a.batch, [&](int64_t n) { bar.update(n); },
                                      a.device);
            bar.finish();
        }
        std::vector<uint8_t>().swap(d.images);
        const std::vector<LayerScore> results = layers_score(tg, spec, feats, d.N);

        fs::create_directories(a.out);
        json_write(a.out + "/results.json",
                   scores_json(tg, results,
                               {{"backbone", a.backbone}, {"arch", spec.arch}, {"mapping", "per_bin"},
                                {"device", device_name(a.device)},
                                {"input", strfmt("%dx%d: short side resized to %d, centre crop, per-channel "
                                                 "normalisation from the checkpoint", spec.in_size, spec.in_size,
                                                 spec.in_size)}}));
        const std::string csv = layers_csv(tg, results);
        file_write_atomic(a.out + "/layers.csv", csv.data(), csv.size());
        heatmap_write(a.out + "/heatmap.png", tg, results, spec.arch, a.data);
        best_layers_print(tg, results);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        std::fprintf(stderr, "select_layers: wrote %s/{results.json,layers.csv,heatmap.png}; peak RSS %.0f MB\n",
                     a.out.c_str(), ru.ru_maxrss / 1024.0);
        return 0;
    });
}
