// pretrain.cpp: the classification training loop (see pretrain.h).
#include "models/fit/pretrain.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <vector>

#include "engine/io/json.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/dist.h"
#include "engine/io/image.h"
#include "engine/io/npy.h"
#include "engine/io/rundir.h"
#include "engine/ops.h"
#include "engine/progress.h"
#include "models/convrnn.h"
#include "models/datasets/image_folder.h"
#include "models/datasets/npz_stream.h"

namespace vt {

static std::atomic<bool> g_stop{false};
static void on_sigint(int) { g_stop = true; }

// Whether to stop, the same answer on every rank: Ctrl-C reaches the ranks at different
// moments (one may be validating while the others train), so every decision combines all
// ranks' flags at a point they all pass in the same order.
static bool stop_agreed() {
    double s = g_stop ? 1 : 0;
    dist_allreduce_sum(&s, 1);
    if (s > 0) g_stop = true;
    return s > 0;
}

// A graph recorded once for a fixed batch on the model's device: copy inputs in, replay, read
// logits/loss. On a GPU the loader fills pinned host buffers (hx, hy) that are then uploaded
// into x and y; on the CPU it writes into x and y directly.
struct ClassifierGraph {
    Unrolled unroll;  // the ConvRNN's unroll, when pretraining a recurrent model
    Tape tape;
    MemoryArena arena;
    Tensor x, y, logits, loss;
    Device dev = Device::CPU;
    PinnedBuffer hx, hy;             // staging (GPU only)
    std::vector<float> logits_host;  // (B, K) on the host (GPU only)

    float* x_in() { return dev == Device::CPU ? x.data() : hx.data(); }
    float* y_in() { return dev == Device::CPU ? y.data() : hy.data(); }
    // After the loader filled x_in()/y_in() with `count` rows: zero labels for the padding
    // rows of a short batch, then upload.
    void upload(int count) {
        const int64_t B = y.numel();
        for (int64_t i = count; i < B; i++) y_in()[i] = 0;
        if (dev == Device::CPU) return;
        backend_copy_from_host(dev, x.data(), hx.data(), x.numel());
        backend_copy_from_host(dev, y.data(), hy.data(), B);
    }
    const float* logits_out() {
        if (dev == Device::CPU) return logits.data();
        logits_host.resize((size_t)logits.numel());
        backend_copy_to_host(dev, logits_host.data(), logits.data(), logits.numel());
        return logits_host.data();
    }
    float loss_out() const {
        float v = 0;
        backend_copy_to_host(dev, &v, loss.data(), 1);
        return v;
    }
};

static void graph_build(ClassifierGraph& g, const Model& m, const PretrainConfig& cfg, int B, bool training) {
    const int S = m.spec.in_size;
    g.dev = m.params.device;
    g.x = tensor_zeros({B, 3, S, S}, g.dev);
    g.y = tensor_zeros({B}, g.dev);
    if (g.dev != Device::CPU) {
        g.hx = PinnedBuffer(g.x.numel());
        g.hy = PinnedBuffer(B);
        std::fill(g.hx.data(), g.hx.data() + g.x.numel(), 0.f);
        std::fill(g.hy.data(), g.hy.data() + B, 0.f);
    }
    bool recurrent = m.cfg.feedback.size() || std::any_of(m.cfg.motifs.begin(), m.cfg.motifs.end(),
                                                           [](Motif mo) { return mo != Motif::None; });
    TapeScope scope(g.tape);
    Tensor features;
    if (recurrent) {
        UnrollConfig uc;
        uc.steps = cfg.steps;
        uc.image_steps = cfg.steps;
        uc.batch = B;
        unroll_build(g.unroll, m, uc, /*record=*/false, g.x);
        features = g.unroll.out[cfg.steps - 1].back();
        if (!features.defined())
            fail("--steps %d is too short: the last layer first responds at step %zu", cfg.steps, m.spec.layers.size());
    } else {
        ArenaScope arena(g.arena);
        features = backbone_forward(m, g.x).back();
    }
    ArenaScope arena(g.arena);
    // dropout (alexnet's head): each rank its own masks (mixing the rank in), else every rank
    // would drop the same units of its rows
    g.logits = classifier_forward(m, features, training, cfg.seed + 17 + 7919 * (uint64_t)dist().rank);
    g.loss = softmax_cross_entropy(g.logits, g.y);
}

// Per-channel mean and std of the training images on the 0..1 scale (up to 2048 images).
static Normalisation measure_normalisation(const ImageFolder& train, int size, int threads) {
    LoaderConfig lc;
    lc.size = size;
    lc.train = false;
    lc.batch = 64;
    lc.threads = threads;
    for (int c = 0; c < 3; c++) lc.mean[c] = 0.f, lc.std[c] = 1.f;
    ImageFolder sub = train;
    if (sub.paths.size() > 2048) {  // an evenly spread subset, every class represented
        ImageFolder s2 = train;
        s2.paths.clear();
        s2.labels.clear();
        size_t stride = train.paths.size() / 2048;
        for (size_t i = 0; i < train.paths.size(); i += stride) {
            s2.paths.push_back(train.paths[i]);
            s2.labels.push_back(train.labels[i]);
        }
        sub = s2;
    }
    BatchLoader loader(sub, lc);
    loader.start_epoch(0);
    std::vector<float> buf((size_t)64 * 3 * size * size), lab(64);
    double s[3] = {0, 0, 0}, s2[3] = {0, 0, 0}, n = 0;
    int count = 0;
    while (loader.next(buf.data(), lab.data(), &count)) {
        for (int i = 0; i < count; i++)
            for (int c = 0; c < 3; c++) {
                const float* p = buf.data() + ((size_t)i * 3 + c) * size * size;
                for (int k = 0; k < size * size; k++) s[c] += p[k], s2[c] += (double)p[k] * p[k];
            }
        n += (double)count * size * size;
    }
    Normalisation norm;
    for (int c = 0; c < 3; c++) {
        norm.mean[c] = (float)(s[c] / n);
        norm.std[c] = (float)std::sqrt(std::max(s2[c] / n - (s[c] / n) * (s[c] / n), 1e-6));
    }
    return norm;
}

static float lr_at(const PretrainConfig& cfg, double epoch) {  // epoch: fractional
    if (epoch < cfg.warmup_epochs) return cfg.lr * (0.1f + 0.9f * (float)(epoch / cfg.warmup_epochs));
    if (cfg.schedule == "step") return cfg.lr * (epoch < 0.5 * cfg.epochs ? 1.f : epoch < 0.75 * cfg.epochs ? 0.1f : 0.01f);
    double t = (epoch - cfg.warmup_epochs) / std::max(1.0, (double)cfg.epochs - cfg.warmup_epochs);
    return cfg.lr * (float)(0.5 * (1 + std::cos(M_PI * std::min(1.0, t))));
}

struct Accuracy {
    int64_t n = 0, top1 = 0, top5 = 0;
    double loss = 0;
};

static void accumulate(Accuracy& a, const float* logits, const float* labels, int count, int K) {
    for (int i = 0; i < count; i++) {
        const float* z = logits + (size_t)i * K;
        int y = (int)labels[i], rank = 0;
        for (int k = 0; k < K; k++) rank += z[k] > z[y];
        a.top1 += rank == 0;
        a.top5 += rank < 5;
        a.n++;
    }
}

static Accuracy evaluate(ClassifierGraph& g, const ImageFolder& val, const Model& m, const PretrainConfig& cfg, int B) {
    LoaderConfig lc;
    lc.size = m.spec.in_size;
    lc.train = false;
    lc.batch = B;
    lc.threads = cfg.loader_threads;
    std::copy(m.norm.mean, m.norm.mean + 3, lc.mean);
    std::copy(m.norm.std, m.norm.std + 3, lc.std);
    BatchLoader loader(val, lc);
    loader.start_epoch(0);
    Accuracy acc;
    int count = 0, K = m.cfg.num_classes;
    Progress bar("  val", (int64_t)val.paths.size(), "img");
    while (loader.next(g.x_in(), g.y_in(), &count)) {
        g.upload(count);
        g.tape.forward();
        accumulate(acc, g.logits_out(), g.y_in(), count, K);
        bar.update(acc.n);
    }
    return acc;
}

// Every class of `f` must have at least one image that decodes: a class whose every file is
// unreadable would silently train a classifier without it. Stops at each class's first
// readable image, so this costs about one decode per class.
static void check_classes_readable(const ImageFolder& f) {
    std::vector<uint8_t> ok(f.classes.size(), 0), tried(f.classes.size(), 0);
    std::vector<std::string> first_error(f.classes.size());
    for (size_t i = 0; i < f.paths.size(); i++) {
        int c = f.labels[i];
        if (ok[c]) continue;
        try {
            image_load(f.paths[i]);
            ok[c] = 1;
        } catch (const Error& e) {
            if (first_error[c].empty()) first_error[c] = e.what();
        }
        tried[c]++;
    }
    for (size_t c = 0; c < f.classes.size(); c++)
        if (!ok[c] && tried[c] > 0)
            fail("class '%s' in '%s' has no readable image: all %d of its files fail to decode (the first: %s)",
                 f.classes[c].c_str(), f.root.c_str(), (int)tried[c], first_error[c].c_str());
}

// --resume: the checkpoint at cfg.out must be of this run's architecture, motif, feedback,
// steps and classes; else one line naming every difference.
static void check_resume(const PretrainConfig& cfg, const std::string& feedback, bool recurrent,
                         const std::vector<std::string>& classes) {
    NpzIndex z = npz_index(cfg.out);
    auto text = [&](const char* key, const std::string& dflt) -> std::string {
        if (!z.has(key)) return dflt;
        NpyArray a = npz_array(z, key);
        std::vector<std::string> v = a.dtype == DType::Unicode ? a.to_strings() : std::vector<std::string>{};
        if (v.size() != 1) fail("--resume: '%s': '%s' should hold one string", cfg.out.c_str(), key);
        return v[0];
    };
    std::string diff;
    auto differ = [&](const char* flag, const std::string& then, const std::string& now) {
        if (then != now) diff += strfmt("%s%s %s, not %s", diff.empty() ? "" : "; ", flag, then.c_str(), now.c_str());
    };
    differ("--arch", text("meta.arch", "(none)"), cfg.arch);
    differ("--motif", text("meta.motif", "none"), cfg.motif);
    differ("--feedback", text("meta.feedback", "none"), feedback);
    if (recurrent && z.has("meta.steps")) {
        std::vector<float> v = npz_array(z, "meta.steps").to_f32();
        differ("--steps", v.size() == 1 ? strfmt("%g", v[0]) : "?", std::to_string(cfg.steps));
    } else if (recurrent) {
        std::fprintf(stderr, "pretrain: note: '%s' does not record its --steps (an older checkpoint): resuming with "
                             "--steps %d unchecked\n", cfg.out.c_str(), cfg.steps);
    }
    if (z.has("meta.classes")) {
        std::vector<std::string> then = npz_array(z, "meta.classes").to_strings();
        if (then != classes)
            diff += strfmt("%s%zu classes (first '%s'), not the %zu class folders of this data (first '%s')",
                           diff.empty() ? "" : "; ", then.size(), then.empty() ? "" : then[0].c_str(), classes.size(),
                           classes.empty() ? "" : classes[0].c_str());
    }
    if (!diff.empty())
        fail("--resume: '%s' was trained with %s: resume with the checkpoint's flags, or train into another --out",
             cfg.out.c_str(), diff.c_str());
}

// The flags' ranges; more loader threads than the hardware runs are cut down, with a note.
static void config_check(PretrainConfig& cfg) {
    if (cfg.epochs < 1) fail("--epochs: expected at least 1, got %d", cfg.epochs);
    if (cfg.batch < 1) fail("--batch: expected at least 1, got %d", cfg.batch);
    if (!(cfg.lr > 0)) fail("--lr: expected a positive learning rate, got %g", cfg.lr);
    if (cfg.steps < 1) fail("--steps: expected at least 1, got %d", cfg.steps);
    if (cfg.loader_threads < 1) fail("--loader-threads: expected at least 1, got %d", cfg.loader_threads);
    if (cfg.schedule != "cosine" && cfg.schedule != "step")
        fail("--schedule: expected cosine or step, got '%s'", cfg.schedule.c_str());
    if (cfg.resume && cfg.overwrite) fail("--resume and --overwrite: pick one (continue the checkpoint, or replace it)");
    const int K = dist().size;
    if (cfg.batch % K)
        fail("--batch %d: with %d ranks each takes an equal share of a batch; use a multiple of %d", cfg.batch, K, K);
    if (cfg.loader_threads > hardware_threads()) {
        std::fprintf(stderr, "note: --loader-threads %d is more than the %d hardware threads this process may run on; "
                             "using %d\n", cfg.loader_threads, hardware_threads(), hardware_threads());
        cfg.loader_threads = hardware_threads();
    }
}

// The training and validation images of cfg.data; with --max-train, a fixed, class-balanced
// subset of the training images: every k-th of the sorted list.
static FolderSplits folders_load(const PretrainConfig& cfg) {
    FolderSplits data = image_folder_splits(cfg.data, cfg.holdout, cfg.seed);
    if (!data.note.empty()) std::fprintf(stderr, "pretrain: %s\n", data.note.c_str());
    if (cfg.max_train > 0 && (int64_t)data.train.paths.size() > cfg.max_train) {
        ImageFolder sub = data.train;
        sub.paths.clear();
        sub.labels.clear();
        double stride = (double)data.train.paths.size() / cfg.max_train;
        for (int64_t i = 0; i < cfg.max_train; i++) {
            size_t j = (size_t)(i * stride);
            sub.paths.push_back(data.train.paths[j]);
            sub.labels.push_back(data.train.labels[j]);
        }
        data.train = sub;
    }
    return data;
}

// The output, before any work: not another run's checkpoint unless resumed or replaced, and,
// resumed, one of this run's kind.
static void out_check(const PretrainConfig& cfg, const std::string& feedback, bool recurrent,
                      const std::vector<std::string>& classes) {
    std::error_code ec;
    bool exists = std::filesystem::exists(cfg.out, ec);
    if (cfg.resume && !exists) fail("--resume: there is no checkpoint at --out '%s' to continue", cfg.out.c_str());
    if (!cfg.resume && !cfg.overwrite && exists)
        fail("--out '%s' holds a checkpoint of an earlier run: pass --resume to continue it, --overwrite to replace "
             "it, or choose another --out", cfg.out.c_str());
    if (cfg.resume) check_resume(cfg, feedback, recurrent, classes);
}

// What the epochs of a run share: its flags, images, model and optimiser, and the validation
// top-1 of every epoch so far.
struct Trainer {
    Trainer(const PretrainConfig& cfg, const FolderSplits& data, const std::string& feedback, Model& m)
        : cfg(cfg), data(data), feedback(feedback), m(m) {}
    const PretrainConfig& cfg;
    const FolderSplits& data;
    const std::string feedback;  // the model's feedback edges, as --feedback writes them
    Model& m;
    SGD sgd;
    std::vector<float> history;  // val top-1 per epoch
};

// The run's start: resumed, the checkpoint's parameters, normalisation, momentum and history
// (returns the epochs it had done); else the normalisation of the training images (returns 0).
static int trainer_start(Trainer& t, int in_size) {
    const PretrainConfig& cfg = t.cfg;
    Model& m = t.m;
    t.sgd.momentum = cfg.momentum;
    t.sgd.weight_decay = cfg.weight_decay;
    if (!cfg.resume) {
        m.norm = measure_normalisation(t.data.train, in_size, cfg.loader_threads);
        if (dist().rank == 0)
            std::fprintf(stderr, "pretrain: normalisation mean (%.3f, %.3f, %.3f) std (%.3f, %.3f, %.3f)\n", m.norm.mean[0],
                     m.norm.mean[1], m.norm.mean[2], m.norm.std[0], m.norm.std[1], m.norm.std[2]);
        return 0;
    }
    Npz z = checkpoint_load(cfg.out, m.params);
    if (meta_string(z, "meta.arch") != cfg.arch)
        fail("--resume: '%s' is a checkpoint of %s, not --arch %s", cfg.out.c_str(), meta_string(z, "meta.arch").c_str(),
             cfg.arch.c_str());
    std::vector<float> mean = meta_floats(z, "meta.mean"), sd = meta_floats(z, "meta.std");
    std::copy(mean.begin(), mean.end(), m.norm.mean);
    std::copy(sd.begin(), sd.end(), m.norm.std);
    const int start_epoch = (int)meta_floats(z, "meta.epochs_done")[0];
    if (z.has("meta.val_top1")) t.history = meta_floats(z, "meta.val_top1");
    if (z.has("optim.momentum")) {
        t.sgd.mom = tensor_zeros({m.params.numel()}, m.params.device);
        std::vector<float> mom = z.get("optim.momentum").to_f32();
        if ((int64_t)mom.size() == m.params.numel())
            backend_copy_from_host(t.sgd.mom.device(), t.sgd.mom.data(), mom.data(), t.sgd.mom.numel());
    }
    std::fprintf(stderr, "pretrain: resuming '%s' after epoch %d\n", cfg.out.c_str(), start_epoch);
    return start_epoch;
}

// Data-parallel: every rank starts from rank 0's parameters, normalisation and momentum (they
// are equal by construction, seeded alike or read from one checkpoint; this makes it so).
static void trainer_sync(Trainer& t) {
    if (!dist_active()) return;
    Model& m = t.m;
    dist_broadcast(m.params.data.data(), m.params.numel(), m.params.device, 0);
    float norm[6] = {m.norm.mean[0], m.norm.mean[1], m.norm.mean[2], m.norm.std[0], m.norm.std[1], m.norm.std[2]};
    dist_broadcast(norm, 6, Device::CPU, 0);
    std::copy(norm, norm + 3, m.norm.mean), std::copy(norm + 3, norm + 6, m.norm.std);
    if (t.sgd.mom.defined()) dist_broadcast(t.sgd.mom.data(), t.sgd.mom.numel(), t.sgd.mom.device(), 0);
}

// The checkpoint at --out after `epochs_done` epochs: parameters, what the model is, the
// history and the optimiser's momentum.
static void trainer_save(const Trainer& t, int epochs_done) {
    const PretrainConfig& cfg = t.cfg;
    const Model& m = t.m;
    Npz meta;
    meta_set_string(meta, "meta.arch", cfg.arch);
    meta_set_string(meta, "meta.motif", cfg.motif);
    meta_set_string(meta, "meta.feedback", t.feedback);
    meta.set("meta.classes", NpyArray::from_strings(t.data.train.classes));
    meta_set_floats(meta, "meta.mean", {m.norm.mean[0], m.norm.mean[1], m.norm.mean[2]});
    meta_set_floats(meta, "meta.std", {m.norm.std[0], m.norm.std[1], m.norm.std[2]});
    meta_set_floats(meta, "meta.epochs_done", {(float)epochs_done});
    meta_set_floats(meta, "meta.steps", {(float)cfg.steps});
    meta_set_floats(meta, "meta.val_top1", t.history);
    if (t.sgd.mom.defined()) {
        std::vector<float> mom = t.sgd.mom.to_vector();
        meta.set("optim.momentum", NpyArray::from_f32({t.sgd.mom.numel()}, mom.data()));
    }
    checkpoint_save(cfg.out, m.params, meta);  // its folder was made (and checked) by file_claim
}

// The loader of the training images: shuffled and augmented batches, normalised as the model.
static LoaderConfig train_loader_config(const PretrainConfig& cfg, int in_size, const Normalisation& norm) {
    LoaderConfig lc;
    lc.size = in_size;
    lc.train = true;
    lc.batch = cfg.batch;
    lc.threads = cfg.loader_threads;
    lc.seed = cfg.seed;
    lc.crop_scale_min = cfg.crop_scale;
    lc.shards = dist().size, lc.shard = dist().rank;  // each rank its share of every batch
    std::copy(norm.mean, norm.mean + 3, lc.mean);
    std::copy(norm.std, norm.std + 3, lc.std);
    return lc;
}

// One epoch's SGD steps, until the loader is done or Ctrl-C: the summed loss and accuracy of
// its batches; `b` counts them (nb in a full epoch). Data-parallel, each rank runs its share
// of every batch (Bl = B / ranks images), the gradients are averaged over the ranks before the
// step (the gradient of the whole batch's mean loss), and the ranks agree on the loss, the
// accuracy and whether to stop (Ctrl-C reaches every rank; they stop after the same batch).
static Accuracy train_epoch(Trainer& t, BatchLoader& loader, ClassifierGraph& g, int epoch, int64_t nb, Progress& bar,
                            int64_t& b) {
    const PretrainConfig& cfg = t.cfg;
    const int B = cfg.batch, K = (int)t.data.train.classes.size();
    Accuracy tr;
    int count = 0;
    while (loader.next(g.x_in(), g.y_in(), &count)) {
        g.upload(count);
        t.sgd.lr = lr_at(cfg, epoch + (double)b / nb);
        g.tape.forward();
        t.m.params.zero_grad();
        g.tape.backward(g.loss);
        dist_allreduce_mean(t.m.params.grad.data(), t.m.params.numel(), t.m.params.device);
        t.sgd.step(t.m.params);
        Accuracy step;
        accumulate(step, g.logits_out(), g.y_in(), count, K);
        double agree[5] = {g.loss_out(), (double)step.n, (double)step.top1, (double)step.top5, g_stop ? 1.0 : 0.0};
        dist_allreduce_sum(agree, 5);
        const double loss = agree[0] / dist().size;
        if (!std::isfinite(loss))
            fail("the training loss became %g at epoch %d batch %lld (lr %g): lower --lr; the last good checkpoint "
                 "is '%s'", loss, epoch + 1, (long long)b, t.sgd.lr, cfg.out.c_str());
        tr.loss += loss;
        tr.n += (int64_t)agree[1], tr.top1 += (int64_t)agree[2], tr.top5 += (int64_t)agree[3];
        b++;
        bar.update(b * B, strfmt("loss %.3f acc %.3f lr %.4f", tr.loss / b, (double)tr.top1 / tr.n, t.sgd.lr));
        if (agree[4] > 0) {
            g_stop = true;
            break;
        }
    }
    return tr;
}

// After a finished epoch (b batches, training accuracy tr): the validation accuracy into res
// and the history, the checkpoint, the epoch's line on stderr and its JSON line on stdout.
static void epoch_finish(Trainer& t, ClassifierGraph& eval_g, int epoch, const Accuracy& tr, int64_t b,
                         double train_seconds, Progress& bar, PretrainResult& res) {
    const PretrainConfig& cfg = t.cfg;
    const int B = cfg.batch;
    if (dist().rank != 0) {  // rank 0 validates, saves and reports; the others go on to the next epoch
        res.epochs_done = epoch + 1;
        return;
    }
    Accuracy va = evaluate(eval_g, t.data.val, t.m, cfg, B);
    res.val_top1 = (float)va.top1 / std::max<int64_t>(1, va.n);
    res.val_top5 = (float)va.top5 / std::max<int64_t>(1, va.n);
    t.history.push_back(res.val_top1);
    res.epochs_done = epoch + 1;
    trainer_save(t, epoch + 1);
    bar.finish(strfmt("loss %.3f train acc %.3f | val top-1 %.4f top-5 %.4f (%lld images) | saved %s",
                      tr.loss / std::max<int64_t>(1, b), (double)tr.top1 / std::max<int64_t>(1, tr.n), res.val_top1,
                      res.val_top5, (long long)va.n, cfg.out.c_str()));
    const Json line = {{"epoch", epoch + 1},
                       {"train_loss", json_num(tr.loss / std::max<int64_t>(1, b))},
                       {"train_top1", json_num((double)tr.top1 / std::max<int64_t>(1, tr.n))},
                       {"val_top1", json_num(res.val_top1)},
                       {"val_top5", json_num(res.val_top5)},
                       {"images_per_second", json_num(b * B / std::max(1e-9, train_seconds))}};
    std::printf("%s\n", line.dump().c_str());  // one JSON object per line (a NaN loss: null)
    std::fflush(stdout);
}

// Epochs start_epoch .. cfg.epochs - 1, each saved; Ctrl-C saves the epochs done and stops.
static PretrainResult train_epochs(Trainer& t, int start_epoch) {
    const PretrainConfig& cfg = t.cfg;
    const int B = cfg.batch;
    LoaderConfig lc = train_loader_config(cfg, t.m.spec.in_size, t.m.norm);
    if ((int64_t)t.data.train.paths.size() < B)
        fail("--batch %d is larger than the %zu training images", B, t.data.train.paths.size());
    BatchLoader loader(t.data.train, lc);
    ClassifierGraph train_g, eval_g;
    graph_build(train_g, t.m, cfg, B / dist().size, true);
    if (dist().rank == 0) graph_build(eval_g, t.m, cfg, B, false);

    auto prev_handler = std::signal(SIGINT, on_sigint);
    PretrainResult res;
    Progress total_clock("", 0, "");
    int64_t images_seen = 0;
    double train_seconds = 0;
    g_stop = false;
    for (int epoch = start_epoch; epoch < cfg.epochs; epoch++) {
        if (stop_agreed()) {  // between epochs: the last one is saved already
            res.interrupted = true;
            res.epochs_done = epoch;
            break;
        }
        loader.start_epoch(epoch);
        int64_t nb = loader.batches_per_epoch(), b = 0;
        Progress bar(strfmt("epoch %d/%d", epoch + 1, cfg.epochs), nb * B, "img");
        Accuracy tr = train_epoch(t, loader, train_g, epoch, nb, bar, b);
        double epoch_train_seconds = bar.elapsed();
        train_seconds += epoch_train_seconds;
        images_seen += b * B;
        if (stop_agreed()) {
            if (dist().rank == 0)
                std::fprintf(stderr, "\npretrain: interrupted in epoch %d; saving '%s' (resume repeats that epoch)\n",
                             epoch + 1, cfg.out.c_str());
            if (dist().rank == 0) trainer_save(t, epoch);
            dist_barrier();  // the others wait for the save before they exit
            res.interrupted = true;
            res.epochs_done = epoch;
            break;
        }
        epoch_finish(t, eval_g, epoch, tr, b, epoch_train_seconds, bar, res);
    }
    std::signal(SIGINT, prev_handler);
    res.seconds = total_clock.elapsed();
    res.images_per_second = images_seen / std::max(1e-9, train_seconds);
    return res;
}

PretrainResult pretrain_run(const PretrainConfig& cfg_in) {
    PretrainConfig cfg = cfg_in;
    const DistInfo& D = dist();
    config_check(cfg);
    if (cfg.threads == 0 && D.local_size > 1) cfg.threads = std::max(1, hardware_threads() / D.local_size);
    backend_set_threads(cfg.threads);
    if (D.rank > 0) progress_set_enabled(false);  // one progress bar: rank 0's

    FolderSplits data = folders_load(cfg);
    if (D.size > 1) {  // every rank must read the same images in the same order, with the same flags
        uint32_t h = 0;  // the CRC-32 of the training paths and labels
        for (size_t i = 0; i < data.train.paths.size(); i++) {
            const std::string& path = data.train.paths[i];
            const int32_t label = (int32_t)data.train.labels[i];
            h = crc32_bytes(h, (const uint8_t*)path.c_str(), path.size() + 1);  // with its NUL: "ab"+"c" != "a"+"bc"
            h = crc32_bytes(h, (const uint8_t*)&label, sizeof label);
        }
        dist_check_same({(int64_t)data.train.paths.size(), (int64_t)data.val.paths.size(),
                         (int64_t)data.train.classes.size(), (int64_t)h, cfg.batch, cfg.epochs, (int64_t)cfg.seed},
                        {"the number of training images", "the number of validation images", "the number of classes",
                         "the training image list (a hash of its paths)", "--batch", "--epochs", "--seed"},
                        "pretrain");
    }
    const int K = (int)data.train.classes.size();
    if (K < 2) fail("'%s': found %d class folder in train/; classification needs at least 2", cfg.data.c_str(), K);

    ModelConfig mc;
    mc.arch = cfg.arch;
    BackboneSpec spec = backbone_spec(cfg.arch);
    mc.motifs.assign(spec.layers.size(), motif_parse(cfg.motif));
    mc.feedback = feedback_parse(cfg.feedback, spec);
    mc.num_classes = K;
    const bool recurrent = cfg.motif != "none" || !mc.feedback.empty();
    check_classes_readable(data.train);

    // The output, before any work: writable, ours alone, and not another run's checkpoint.
    FileClaim claim;
    if (D.rank == 0) claim = file_claim(cfg.out, "--out");  // rank 0 writes the checkpoints
    const std::string feedback = feedback_str(mc.feedback, spec);
    out_check(cfg, feedback, recurrent, data.train.classes);
    Model m(mc, cfg.seed, cfg.device);
    if (D.rank == 0)
        std::fprintf(stderr,
                 "pretrain: %s, motif %s, feedback %s, %d classes, %zu train / %zu val images, %lld parameters, on %s\n",
                 cfg.arch.c_str(), cfg.motif.c_str(), feedback.c_str(), K, data.train.paths.size(),
                 data.val.paths.size(), (long long)m.params.numel(), device_name(cfg.device));
    if (D.size > 1)
        std::fprintf(stderr, "pretrain: rank %d of %d (pid %d, %d threads): images %d..%d of every batch of %d\n", D.rank,
                     D.size, (int)getpid(), backend_threads(), D.rank * cfg.batch / D.size,
                     (D.rank + 1) * cfg.batch / D.size - 1, cfg.batch);
    Trainer t(cfg, data, feedback, m);
    const int start_epoch = trainer_start(t, spec.in_size);
    trainer_sync(t);
    return train_epochs(t, start_epoch);
}

}  // namespace vt
