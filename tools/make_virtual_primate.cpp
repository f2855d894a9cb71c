// make_virtual_primate.cpp: ./bin/make_virtual_primate, writes the simulated "virtual
// primate" dataset (models/datasets/virtual_primate.h): HvM-like stimuli and the V4/IT responses of a
// known teacher ConvRNN, in the project's .npz interchange format.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/progress.h"
#include "models/datasets/virtual_primate.h"
#include "engine/cli.h"

using namespace vt;

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        VirtualPrimateConfig c;
        std::string out = "data/virtual_primate.npz", examples, teacher_backbone, teacher_model;
        int threads = 0;
        bool overwrite = false;
        Cli cli("make_virtual_primate", "",
                "Write a SIMULATED neural dataset: HvM-like images (8 categories x 8 objects, variation V0/V3/V6)\n"
                "and the trial-by-trial V4 and IT responses of a known ground-truth ConvRNN teacher (default: lstm\n"
                "at every layer, feedback conv5:conv2, on a randomly initialised hcnn5-s that is not the student's\n"
                "pretrained backbone). Per-site latencies, Poisson-like trial noise, NaN for missing trials.\n"
                "The same settings give a byte-identical file.");
        cli.flag("--out", &out, "output .npz (an existing one is replaced only by the same settings' file, or with --overwrite)");
        cli.flag("--images", &c.images, "number of images").range(1, 1 << 20);
        cli.flag("--size", &c.size, "image side in pixels (the teacher sees them resized to its input)").range(8, 1024);
        cli.flag("--teacher-arch", &c.teacher_arch, "teacher backbone: " + list_join(backbone_archs()));
        cli.flag("--teacher-motif", &c.teacher_motif,
                 "teacher cell at every layer: " + list_join(motif_names()));
        cli.flag("--teacher-feedback", &c.teacher_feedback, "teacher feedback edges, e.g. conv5:conv2 (none: none)");
        cli.flag("--teacher-seed", &c.teacher_seed,
                 "seed of the teacher's He-initialised backbone and cell/feedback weights");
        cli.flag("--teacher-backbone", &c.teacher_backbone,
                 "checkpoint with the teacher's backbone weights (instead of He init)");
        cli.flag("--v4-layer", &c.v4_layer, "teacher layer the V4 sites read");
        cli.flag("--it-layer", &c.it_layer, "teacher layer the IT sites read");
        cli.flag("--v4", &c.v4_units, "number of V4 sites").range(0, 1 << 20);
        cli.flag("--it", &c.it_units, "number of IT sites").range(0, 1 << 20);
        cli.flag("--reps", &c.reps, "repetitions per image").range(2, 10000);
        cli.flag("--fano", &c.fano, "Fano factor of the spike counts (0: noiseless trials)").range(0, 100);
        cli.flag("--missing", &c.missing, "fraction of images recorded with fewer repetitions (NaN trials)").range(0, 1);
        cli.flag("--ms-per-step", &c.ms_per_step, "milliseconds per model step").range(1, 1000);
        cli.flag("--presentation-ms", &c.presentation_ms, "image on for this long, then mean grey").range(1, 100000);
        cli.flag("--bin-ms", &c.bin_ms, "time-bin width (a multiple of --ms-per-step)").range(1, 100000);
        cli.flag("--t-max-ms", &c.t_max_ms, "end of the last bin (a multiple of --bin-ms)").range(1, 100000);
        cli.flag("--seed", &c.seed, "seed of the stimuli, recording sites and trial noise");
        cli.flag("--latencies", &c.latencies,
                 "sites answer 50-70 ms (V4) / 70-100 ms (IT) after onset; =false: with their layer (a control)");
        cli.flag("--linear-sites", &c.linear_sites,
                 "each site's rate is its baseline plus a gain times its drive, held for each step (no softplus, no "
                 "saturation); with --latencies=false the fit's linear readout expresses the sites exactly (the "
                 "identifiability test's control)");
        cli.flag("--batch", &c.batch, "images per teacher forward pass").range(1, 1 << 16);
        cli.flag("--threads", &threads, "compute threads (0 = all cores)").range(0, 1 << 16);
        cli.flag("--overwrite", &overwrite, "replace an existing --out made with other settings (or not a virtual primate)");
        cli.flag("--examples", &examples, "also write a contact sheet of the first 64 images to this PNG");
        cli.flag("--write-teacher-backbone", &teacher_backbone,
                 "also write the teacher's backbone (as calibrated) as a checkpoint for fit_dynamics --backbone");
        cli.flag("--write-teacher", &teacher_model,
                 "also write the whole teacher (backbone, cells, feedback) as a model checkpoint for fit_dynamics "
                 "--init (with --iters 0: the best the fit's readouts can do with the teacher's own features)");
        cli.parse(argc, argv);
        if (!cli.positional.empty())
            fail("make_virtual_primate: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
        virtual_primate_check(c);
        backend_set_threads(threads);

        auto t0 = std::chrono::steady_clock::now();
        if (!teacher_backbone.empty() && std::filesystem::path(teacher_backbone).extension() != ".npz")
            fail("--write-teacher-backbone: expected a .npz path, got '%s'", teacher_backbone.c_str());
        if (!teacher_model.empty() && std::filesystem::path(teacher_model).extension() != ".npz")
            fail("--write-teacher: expected a .npz path, got '%s'", teacher_model.c_str());
        // An existing --out is data someone may rely on (the fits' default data is one): it is
        // replaced only by the same file, so the settings are compared before the work and,
        // with what only the teacher decides, after it.
        auto keep_other = [&](const Npz* made) {
            if (overwrite || !std::filesystem::exists(out)) return;
            const std::vector<std::string> d = virtual_primate_differences(out, c, made);
            if (!d.empty())
                fail("--out: '%s' exists and holds other data (%s); --overwrite replaces it, or choose another --out",
                     out.c_str(), list_join(d, "; ").c_str());
        };
        keep_other(nullptr);
        Model teacher{ModelConfig{}, 0};
        Npz z = virtual_primate_generate(c, /*progress=*/true, &teacher);
        keep_other(&z);
        std::filesystem::path dir = std::filesystem::path(out).parent_path();
        if (!dir.empty()) std::filesystem::create_directories(dir);
        npz_write(out, z);
        // the teacher's checkpoints, where asked: path, writer, what it is, the flag that reads it
        auto save = [&](const std::string& path, void (*write)(const Model&, const std::string&), const char* what,
                        const char* reader) {
            if (path.empty()) return;
            std::filesystem::path tdir = std::filesystem::path(path).parent_path();
            if (!tdir.empty()) std::filesystem::create_directories(tdir);
            write(teacher, path);
            std::fprintf(stderr, "make_virtual_primate: wrote %s to %s (fit_dynamics %s %s)\n", what, path.c_str(), reader,
                         path.c_str());
        };
        save(teacher_backbone, virtual_primate_save_backbone, "the teacher's backbone", "--backbone");
        save(teacher_model, virtual_primate_save_teacher, "the whole teacher", "--init");
        if (!examples.empty()) {
            StimulusConfig sc;
            sc.images = std::min(c.images, 64), sc.size = c.size, sc.seed = c.seed;
            image_write_png(examples, stimuli_contact_sheet(stimuli_render(sc), 16));
        }
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        VirtualPrimateStats st = virtual_primate_stats(z);
        std::printf("SIMULATED data (a virtual primate), not recordings: responses of a known teacher ConvRNN.\n");
        for (const std::string& kv : z.get("teacher_config").to_strings()) std::printf("  %s", kv.c_str());
        std::printf("\n%d images (%dx%d), ", c.images, c.size, c.size);
        for (size_t a = 0; a < st.areas.size(); a++)
            std::printf("%d %s%s", st.units[a], st.areas[a].c_str(), a + 1 < st.areas.size() ? " + " : " sites, ");
        std::printf("%d repetitions (%d images with fewer: NaN trials), %zu bins of %d ms\n", c.reps,
                    st.images_with_missing, st.bin_start_ms.size(), c.bin_ms);
        std::printf("\n%-10s", "");
        for (const std::string& a : st.areas) {  // "------- V4 -------" over each area's columns
            std::string label = " " + a + " ";
            size_t left = (22 - std::min<size_t>(label.size(), 22)) / 2;
            std::printf("  %s%s%s", std::string(left, '-').c_str(), label.c_str(),
                        std::string(22 - left - std::min<size_t>(label.size(), 22 - left), '-').c_str());
        }
        std::printf("\n%-10s", "bin (ms)");
        for (size_t a = 0; a < st.areas.size(); a++) std::printf("  %6s %8s %6s", "rate", "sd(img)", "rho");
        std::printf("\n");
        for (size_t b = 0; b < st.bin_start_ms.size(); b++) {
            std::printf("%4.0f-%-5.0f", st.bin_start_ms[b], st.bin_end_ms[b]);
            for (size_t a = 0; a < st.areas.size(); a++)
                std::printf("  %6.1f %8.1f %6.2f", st.rate[a][b], st.image_sd[a][b], st.rho[a][b]);
            std::printf("\n");
        }
        std::printf(
            "(rate: mean sp/s; sd(img): median over sites of the std over images of the trial mean; rho: median\n"
            " split-half reliability, odd/even trials, Spearman-Brown)\n");
        std::printf("\nwrote %s (%.1f MB) in %s%s%s\n", out.c_str(), std::filesystem::file_size(out) / 1e6,
                    format_duration(seconds).c_str(), examples.empty() ? "" : "; examples: ", examples.c_str());
        return 0;
    });
}
