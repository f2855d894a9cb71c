// pretrain.cpp: ./bin/pretrain DIR, classification pretraining of a backbone (or a ConvRNN).
#include <cstdio>

#include "engine/backend.h"
#include "models/pretrain.h"
#include "tools/cli.h"

using namespace vt;

int main(int argc, char** argv) {
    runtime_init(argv);
    return run_main([&] {
        PretrainConfig c;
        Cli cli("pretrain", "DIR",
                "Train a backbone for image classification on an ImageNet-style folder:\n"
                "DIR/train/<class>/*.{jpg,png} and DIR/val/<class>/... (DIR/test/ serves as val; with\n"
                "neither, --holdout of train/ is held out). Writes a checkpoint after every epoch.\n"
                "Ctrl-C saves and stops; --resume continues.");
        cli.flag("--arch", &c.arch, "backbone: hcnn5-s, hcnn5, alexnet, tiny3");
        cli.flag("--epochs", &c.epochs, "training epochs");
        cli.flag("--batch", &c.batch, "images per batch");
        cli.flag("--lr", &c.lr, "peak learning rate (SGD)");
        cli.flag("--momentum", &c.momentum, "SGD momentum");
        cli.flag("--wd", &c.weight_decay, "weight decay");
        cli.flag("--schedule", &c.schedule, "learning-rate schedule after warm-up: cosine or step");
        cli.flag("--warmup", &c.warmup_epochs, "epochs of linear warm-up");
        cli.flag("--crop-scale", &c.crop_scale, "> 0: random-resized crops of area [X, 1] (ImageNet style)");
        cli.flag("--holdout", &c.holdout, "fraction of train/ held out as val when there is no val/ or test/");
        cli.flag("--max-train", &c.max_train, "> 0: train on this many images only (quick runs)");
        cli.flag("--motif", &c.motif, "recurrent cell at every layer (pretrain the ConvRNN end to end)");
        cli.flag("--feedback", &c.feedback, "feedback edges, e.g. conv5:conv2");
        cli.flag("--steps", &c.steps, "unroll length for a ConvRNN (classify its last step)");
        cli.flag("--device", &c.device, "cpu or cuda: where the model trains (batches go through pinned host buffers)");
        cli.flag("--threads", &c.threads, "compute threads (0 = all cores)");
        cli.flag("--loader-threads", &c.loader_threads, "image decoding threads");
        cli.flag("--seed", &c.seed, "seed of initialisation, shuffling and augmentation");
        cli.flag("--out", &c.out, "checkpoint path (.npz)");
        cli.flag("--resume", &c.resume, "continue training from the checkpoint at --out");
        cli.parse(argc, argv);
        if (cli.positional.size() != 1) fail("pretrain: expected one DIR argument, got %zu (see --help)", cli.positional.size());
        c.data = cli.positional[0];
        PretrainResult r = pretrain_run(c);
        std::printf("{\"done\": true, \"epochs\": %d, \"val_top1\": %.4f, \"val_top5\": %.4f, \"seconds\": %.1f, "
                    "\"images_per_second\": %.1f, \"interrupted\": %s, \"device\": \"%s\", \"checkpoint\": \"%s\"}\n",
                    r.epochs_done, r.val_top1, r.val_top5, r.seconds, r.images_per_second,
                    r.interrupted ? "true" : "false", device_name(c.device), c.out.c_str());
        return r.interrupted ? 130 : 0;
    });
}
