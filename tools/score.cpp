// score.cpp: ./bin/score, bring-your-own-model scoring against a neural dataset.
//
//   ./bin/score --features F.npz --data D.npz --out DIR [--areas V4,IT] [--splits 4]
//               [--components 25] [--seed S] [--mapping shared|per-bin|both]
//
// F.npz holds one float32 (or float64) array per layer, named by the layer, each (N, D) or
// (N, T, D) for the data's N images in the data's order; T must equal the data's B bins
// (one feature vector per bin) or be 1 (time-invariant features used for every bin).
// Arrays whose names start with "meta." are ignored. The protocol is in models/fit/scoring.h.
// Memory: the data's per-trial responses are reduced to trial averages and ceilings before
// any feature is read, then layers are read one at a time (streamed from the .npz) and
// fitted in place, so the peak is about one layer's feature array plus the trial averages.
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/io/npy.h"
#include "engine/progress.h"
#include "models/fit/features.h"
#include "models/datasets/neural_data.h"
#include "models/datasets/npz_stream.h"
#include "models/fit/scoring.h"
#include "engine/cli.h"
#include "models/fit/scoring_flags.h"

using namespace vt;

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        std::string features, data, out, areas, mapping = "both", layers;
        int threads = 0;
        Device device = Device::CPU;
        Precision precision = Precision::FP32;
        ScoreConfig c;
        Cli cli("score", "",
                "Score model features against a neural dataset: PLS from each layer's features to each area's\n"
                "units on held-out images, noise-corrected explained variance per bin (models/fit/scoring.h).\n"
                "Writes DIR/results.json and prints a table.");
        cli.flag("--features", &features, "features .npz: one (N, D) or (N, T, D) array per layer");
        cli.flag("--data", &data, "neural dataset .npz (models/datasets/neural_data.h)");
        cli.flag("--out", &out, "output folder (results.json)");
        cli.flag("--areas", &areas, "comma-separated areas to score (default: all of the data's)");
        cli.flag("--layers", &layers, "comma-separated feature arrays to score (default: all)");
        cli.flag("--mapping", &mapping, "shared (one map for all bins), per-bin, or both");
        ScoringFlags scoring;
        scoring.add(cli, c);
        cli.flag("--device", &device,
                 "cpu or cuda (accepted and checked for scripts that pass it to every tool; score runs no model, and "
                 "its PLS fits run on the CPU either way)");
        cli.flag("--precision", &precision, "accepted and checked like --device (fp32; tf32, bf16: --device cuda)");
        cli.flag("--threads", &threads, "compute threads (0 = all cores; at most the hardware threads)").range(0, 1 << 16);
        cli.parse(argc, argv);
        scoring.apply(c);
        if (!cli.positional.empty()) fail("score: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
        if (features.empty() || data.empty() || out.empty())
            fail("score: --features, --data and --out are required (see --help)");
        backend_set_threads(threads);
        precision_check(device, precision);  // no model runs here: nothing to set
        if (device == Device::CUDA)
            std::fprintf(stderr, "score: --device cuda: there is no model to run here; the PLS fits run on the CPU\n");
        c.areas = split_list(areas);
        const std::vector<Mapping> mappings = mappings_parse(mapping);

        // 1. The data without its images; 2. the feature arrays' shapes (headers only), so a
        // mismatch fails before any heavy work.
        NeuralData d = neural_data_load(data, false);
        std::vector<FeatureArray> todo = features_inspect(features, d.N, d.B, split_list(layers));

        // 3. Trial averages, ceilings, folds; then the per-trial responses go.
        Targets tg = targets_prepare(d, c);
        std::vector<float>().swap(d.responses);
        std::fprintf(stderr, "score: %lld images, %lld units, %lld bins, %lld repetitions (%s); %zu layers\n",
                     (long long)tg.N, (long long)tg.U, (long long)tg.B, (long long)tg.R,
                     tg.has_ceiling() ? "noise-corrected" : "no ceiling: raw r^2", todo.size());

        // 4. One layer at a time.
        std::vector<LayerScore> results;
        NpzIndex fz = npz_index(features);
        for (const FeatureArray& li : todo) {
            const int64_t fbytes = checked_bytes({tg.N, li.T, li.D}, 4, strfmt("features '%s': array '%s'", features.c_str(), li.name.c_str()));
            mem_check(strfmt("features '%s': array '%s' (N, T, D) = (%lld, %lld, %lld) as float32", features.c_str(),
                             li.name.c_str(), (long long)tg.N, (long long)li.T, (long long)li.D), (uint64_t)fbytes);
            std::vector<float> F((size_t)(fbytes / 4));
            npz_read_f32(fz, li.name, F.data(), (int64_t)F.size());
            Progress bar("score " + li.name, score_layer_fits(tg, li.T, mappings), "fits");
            int64_t fits = 0;
            results.push_back(score_layer(tg, li.name, F.data(), li.T, li.D, mappings, [&] { bar.update(++fits); }));
            bar.finish();
        }

        std::filesystem::create_directories(out);
        json_write(out + "/results.json", scores_json(tg, results, {{"features", features}, {"mapping", mapping}}));
        std::printf("%s", scores_table(tg, results).c_str());
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        std::fprintf(stderr, "score: wrote %s/results.json; peak RSS %.0f MB\n", out.c_str(), ru.ru_maxrss / 1024.0);
        return 0;
    });
}
