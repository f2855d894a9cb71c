// pretrain.cpp: ./bin/pretrain DIR, classification pretraining of a backbone (or a ConvRNN).
// Data-parallel under `mpirun -np K` in a `make MPI=1` build (engine/dist.h): each rank takes
// its share of every batch, the gradients are averaged, rank 0 writes the checkpoints and logs.
#include <cstdio>

#include "engine/backend.h"
#include "engine/dist.h"
#include "models/backbone.h"
#include "models/fit/pretrain.h"
#include "engine/cli.h"

using namespace vt;

int main(int argc, char** argv) {
    runtime_init(argv);
    const int rc = run_main([&] {
        const DistInfo& D = dist_init();  // before any work: every rank parses the same flags
        PretrainConfig c;
        Precision precision = Precision::FP32;
        Cli cli("pretrain", "DIR",
                "Train a backbone for image classification on an ImageNet-style folder:\n"
                "DIR/train/<class>/*.{jpg,png} and DIR/val/<class>/... (DIR/test/ serves as val; with\n"
                "neither, --holdout of train/ is held out). Writes a checkpoint after every epoch.\n"
                "Ctrl-C saves and stops; --resume continues. Data-parallel over K processes (a `make MPI=1`\n"
                "build): mpirun -np K ./bin/pretrain DIR ... (--batch is the whole batch, a multiple of K).");
        cli.flag("--arch", &c.arch, "backbone: " + list_join(backbone_archs()));
        cli.flag("--epochs", &c.epochs, "training epochs").range(1, 100000);
        cli.flag("--batch", &c.batch, "images per batch").range(1, 1 << 16);
        cli.flag("--lr", &c.lr, "peak learning rate (SGD)").positive().range(0, 100);
        cli.flag("--momentum", &c.momentum, "SGD momentum").range(0, 0.999f);
        cli.flag("--wd", &c.weight_decay, "weight decay").range(0, 1);
        cli.flag("--schedule", &c.schedule, "learning-rate schedule after warm-up: cosine or step");
        cli.flag("--warmup", &c.warmup_epochs, "epochs of linear warm-up").range(0, 100000);
        cli.flag("--crop-scale", &c.crop_scale, "> 0: random-resized crops of area [X, 1] (ImageNet style)").range(0, 1);
        cli.flag("--holdout", &c.holdout, "fraction of train/ held out as val when there is no val/ or test/").positive().range(0, 0.99f);
        cli.flag("--max-train", &c.max_train, "> 0: train on this many images only (quick runs)").range(0, INT64_MAX / 2);
        cli.flag("--motif", &c.motif, "recurrent cell at every layer (pretrain the ConvRNN end to end)");
        cli.flag("--feedback", &c.feedback, "feedback edges, e.g. conv5:conv2");
        cli.flag("--steps", &c.steps, "unroll length for a ConvRNN (classify its last step)").range(1, 1000);
        cli.flag("--device", &c.device, "cpu or cuda: where the model trains (batches go through pinned host buffers)");
        cli.flag("--precision", &precision, kPrecisionHelp);
        cli.flag("--threads", &c.threads, "compute threads (0 = all cores; at most the hardware threads)").range(0, 1 << 16);
        cli.flag("--loader-threads", &c.loader_threads, "image decoding threads (at most the hardware threads)").range(1, 1 << 16);
        cli.flag("--seed", &c.seed, "seed of initialisation, shuffling and augmentation");
        cli.flag("--out", &c.out, "checkpoint path (.npz)");
        cli.flag("--resume", &c.resume, "continue training from the checkpoint at --out (same arch, motif, feedback, steps)");
        cli.flag("--overwrite", &c.overwrite, "replace the checkpoint at --out (an existing one is refused otherwise)");
        cli.parse(argc, argv);
        if (cli.positional.size() != 1) fail("pretrain: expected one DIR argument, got %zu (see --help)", cli.positional.size());
        c.data = cli.positional[0];
        backend_set_precision(c.device, precision);
        PretrainResult r = pretrain_run(c);
        if (D.rank == 0)
            std::printf("{\"done\": true, \"epochs\": %d, \"val_top1\": %.4f, \"val_top5\": %.4f, \"seconds\": %.1f, "
                    "\"images_per_second\": %.1f, \"interrupted\": %s, \"device\": \"%s\", \"checkpoint\": \"%s\"}\n",
                    r.epochs_done, r.val_top1, r.val_top5, r.seconds, r.images_per_second,
                    r.interrupted ? "true" : "false", device_name(c.device), c.out.c_str());
        return r.interrupted ? 130 : 0;
    });
    return dist_exit(rc, rc == 0 || rc == 130);  // MPI: finalise, or abort every rank when this one failed
}
