// bench.cpp: ./bin/bench, the performance benchmarks (JSON lines on stdout).
//
//   ./bin/bench                      every workload
//   ./bin/bench --workload conv      one (see --list)
//   ./bin/bench --reps 9             repetitions per measurement (the median is reported)
//   ./bin/bench --device cuda        conv and W1-W5 on the GPU (simpls stays on the CPU)
//
// Performance is only comparable within one run on a shared machine, so every workload
// reports its rate next to the OpenBLAS sgemm rate measured in the same run. OpenBLAS is
// benchmarked with its native kernels: if OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set
// (some machines set them for old builds), bench re-executes itself without them, and
// names the CPU's kernel family where OpenBLAS cannot identify the CPU (see backend.h).
//
// On the GPU (--device cuda) the same-run reference is cuBLAS's sgemm on the device, every
// timing waits for the device (backend_synchronize) before reading the clock, and W1-W5
// replay their iteration as a CUDA Graph (engine/autograd.h's TapeGraph; --no-graph for
// plain launches). Every line names its device.
#include <cblas.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/io/json.h"
#include "engine/io/plot.h"
#include "engine/linalg.h"
#include "engine/ops.h"
#include "engine/params.h"
#include "models/convrnn.h"
#include "engine/cli.h"
#ifdef VT_CUDA
#include "kernels/cuda/cuda.h"  // conv path and memory statistics (reported, not required)
#endif

using namespace vt;

namespace {

struct Opts {
    std::vector<std::string> workloads;
    int reps = 5;
    int threads = 0;
    Device device = Device::CPU;  // conv and W1-W5 (simpls is CPU work)
    Precision precision = Precision::FP32;  // of the GEMMs and convolutions on `device` (backend.h)
    bool graph = true;            // W1-W5 on the GPU: replay a captured CUDA Graph
    double sgemm = 0;             // the same-run sgemm rate on `device`, GFLOP/s
    int batch = 0, steps = 0;     // W1-W5: override the workload's batch and T (0 = its own)
    std::vector<int> sweep;       // W1-W5: run at each of these batches (--batch-sweep)
    std::string plot;             // --batch-sweep: images/s vs batch, a PNG here
    struct Point {                // --batch-sweep's measurements, for the plot
        std::string workload;
        int batch;
        double images_per_s;
    };
    std::vector<Point>* points = nullptr;
};

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median wall time of fn over reps runs, after one warm-up run. Work queued on `dev` is
// waited for before the clock is read.
double median_ms(int reps, const std::function<void()>& fn, Device dev = Device::CPU) {
    fn();
    backend_synchronize(dev);
    std::vector<double> t;
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        fn();
        backend_synchronize(dev);
        t.push_back(now_ms() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

double peak_rss_mb() {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

// Prints one result as a JSON line (engine/io/json.h: NaN as null), with the machine's fields last.
void emit(Json line, Device dev = Device::CPU) {
    line["device"] = device_name(dev);
    if (dev != Device::CPU) line["gpu"] = backend_device_name(dev);
    line["precision"] = precision_name(backend_precision(dev));
    line["openblas_core"] = blas_core_name(), line["threads"] = backend_threads();
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
}

// The size of the same-run sgemm reference: 2048 on the CPU, 8192 on a GPU (smaller ones do
// not fill a large GPU).
int sgemm_n(Device dev) { return dev == Device::CPU ? 2048 : 8192; }

// The same-run reference: a large square sgemm (OpenBLAS, or cuBLAS on the device).
double sgemm_gflops(int reps, Device dev) {
    const int n = sgemm_n(dev);
    if (dev == Device::CPU) {
        std::vector<float> a((size_t)n * n, 0.5f), b((size_t)n * n, 0.25f), c((size_t)n * n);
        double ms = median_ms(reps, [&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f,
                        c.data(), n);
        });
        return 2.0 * n * n * n / (ms * 1e6);
    }
    Tensor a = tensor_full({n, n}, 0.5f, dev), b = tensor_full({n, n}, 0.25f, dev), c = tensor_empty({n, n}, dev);
    const KernelTable& K = kernels_for(dev);
    double ms = median_ms(
        reps, [&] { K.gemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); }, dev);
    return 2.0 * n * n * n / (ms * 1e6);
}

// The convolution paths to time: the CPU's (im2col + OpenBLAS, the implicit GEMM, Winograd
// F(2x2) and F(4x4), F(2x2) on the implicit GEMM's micro-kernel); the GPU's im2col + cuBLAS,
// and cuDNN in CUDNN=1 builds.
std::vector<std::string> conv_paths(Device dev) {
    if (dev == Device::CPU) return {"im2col", "implicit", "winograd2", "winograd4", "fused-winograd"};
#ifdef VT_CUDA
    if (cuda_has_cudnn()) return {"im2col", "cudnn"};
#endif
    return {"im2col"};
}

// The CPU's paths by name (--conv, the conv workload's rows).
const std::pair<const char*, CpuConvPath> kCpuConvPaths[] = {
    {"auto", CpuConvPath::Auto},           {"im2col", CpuConvPath::Im2col},
    {"implicit", CpuConvPath::Implicit},   {"winograd2", CpuConvPath::Winograd2},
    {"winograd4", CpuConvPath::Winograd4}, {"fused-winograd", CpuConvPath::FusedWinograd}};

// "a, b, ... or z": the names above, for --conv's error.
std::string cpu_conv_path_names() {
    std::string s;
    const size_t n = sizeof kCpuConvPaths / sizeof kCpuConvPaths[0];
    for (size_t i = 0; i < n; i++) s += std::string(i == 0 ? "" : i + 1 == n ? " or " : ", ") + kCpuConvPaths[i].first;
    return s;
}

bool is_cpu_conv_path(const std::string& name) {
    for (const auto& [n, p] : kCpuConvPaths)
        if (name == n) return true;
    return false;
}

void set_conv_path(Device dev, const std::string& path) {
    if (dev == Device::CPU) {
        for (const auto& [n, p] : kCpuConvPaths)
            if (path == n) cpu_set_conv_path(p);
        return;
    }
#ifdef VT_CUDA
    if (dev != Device::CPU) cuda_set_conv_path(path == "cudnn" ? ConvPath::Cudnn : ConvPath::Im2col);
#endif
}

std::string current_conv_path(Device dev) {
#ifdef VT_CUDA
    if (dev != Device::CPU) return cuda_conv_path() == ConvPath::Cudnn ? "cudnn" : "im2col";
#endif
    for (const auto& [n, p] : kCpuConvPaths)
        if (p == cpu_conv_path()) return n;
    return "auto";
}

// Device memory held at its peak (GPU: the caching allocator's peak, in MiB), or null.
Json device_peak_mb(Device dev) {
#ifdef VT_CUDA
    if (dev != Device::CPU) return json_num(std::round(cuda_mem_stats().peak_bytes / 1048576.0));
#endif
    (void)dev;
    return nullptr;
}

// ---- workload: conv ------------------------------------------------------------------------
// conv2d forward + backward on the conv layers of hcnn5-s and hcnn5 (docs/science.md section 1)
// and the lstm cells' convs of both, batch 16 (or --batch), on each convolution path (the CPU: im2col,
// the implicit GEMM, Winograd F(2x2) and F(4x4); a GPU: im2col, cuDNN), the paths alternated within each rep so
// that the machine's load hits them alike. FLOPs: forward 2*N*OC*OH*OW*C*K*K, backward twice
// that (weights and input).
struct ConvLayer {
    const char* arch;
    const char* layer;
    int C, H, OC, K, S, P;
};

void bench_conv(const Opts& o) {
    const ConvLayer layers[] = {
        {"hcnn5-s", "conv1", 3, 64, 32, 7, 2, 3},   {"hcnn5-s", "conv2", 32, 16, 64, 3, 1, 1},
        {"hcnn5-s", "conv3", 64, 8, 128, 3, 1, 1},  {"hcnn5-s", "conv4", 128, 4, 128, 3, 1, 1},
        {"hcnn5-s", "conv5", 128, 2, 256, 3, 1, 1}, {"hcnn5", "conv1", 3, 128, 64, 7, 2, 3},
        {"hcnn5", "conv2", 64, 32, 128, 3, 1, 1},   {"hcnn5", "conv3", 128, 16, 256, 3, 1, 1},
        {"hcnn5", "conv4", 256, 8, 256, 3, 1, 1},   {"hcnn5", "conv5", 256, 4, 512, 3, 1, 1},
        // the lstm cells' convs of hcnn5-s (input and state, 2C -> 4 gates x C, at the conv's output)
        {"hcnn5-s", "conv1.lstm", 64, 32, 128, 3, 1, 1},  {"hcnn5-s", "conv2.lstm", 128, 16, 256, 3, 1, 1},
        {"hcnn5-s", "conv3.lstm", 256, 8, 512, 3, 1, 1},  {"hcnn5-s", "conv4.lstm", 256, 4, 512, 3, 1, 1},
        {"hcnn5-s", "conv5.lstm", 512, 2, 1024, 3, 1, 1},
        // the gru cells' gate convs of hcnn5-s (2C -> 2C; the candidate's, 2C -> C, is half of it), W2's
        {"hcnn5-s", "conv2.gru", 128, 16, 128, 3, 1, 1},  {"hcnn5-s", "conv3.gru", 256, 8, 256, 3, 1, 1},
        // hcnn5's (W5): the state half of a cell conv, W_h h (C -> 4C), where W5's time goes
        {"hcnn5", "conv1.lstm.h", 64, 64, 256, 3, 1, 1},  {"hcnn5", "conv2.lstm.h", 128, 32, 512, 3, 1, 1},
        {"hcnn5", "conv3.lstm.h", 256, 16, 1024, 3, 1, 1}, {"hcnn5", "conv4.lstm.h", 256, 8, 1024, 3, 1, 1},
    };
    const int N = o.batch ? o.batch : 16;
    const Device dev = o.device;
    double peak = o.sgemm;
    Rng rng(1);
    const std::string default_path = current_conv_path(dev);
    for (const ConvLayer& l : layers) {
        Tensor x = tensor_empty({N, l.C, l.H, l.H}, dev, true);
        Tensor w = tensor_empty({l.OC, l.C, l.K, l.K}, dev, true);
        Tensor b = tensor_zeros({l.OC}, dev, true);
        tensor_randn(x, rng);
        tensor_randn(w, rng, 0.05f);
        Tape tape;
        Tensor y;
        {
            TapeScope scope(tape);
            y = conv2d(x, w, b, l.S, l.P);
        }
        Tensor dy = tensor_full(y.shape, 0.01f, dev);
        std::vector<std::string> paths = conv_paths(dev);
        if (dev == Device::CPU && !(l.K == 3 && l.S == 1)) paths = {"im2col"};  // the others: 3x3 stride 1 here
        std::vector<std::vector<double>> fwds(paths.size()), bwds(paths.size());
        for (int r = -1; r < o.reps; r++)  // r = -1: warm-up (buffers, caches)
            for (size_t i = 0; i < paths.size(); i++) {
                set_conv_path(dev, paths[i]);
                double t0 = now_ms();
                tape.forward();
                backend_synchronize(dev);
                double t1 = now_ms();
                tape.backward(y, dy);
                backend_synchronize(dev);
                if (r >= 0) fwds[i].push_back(t1 - t0), bwds[i].push_back(now_ms() - t1);
            }
        for (size_t i = 0; i < paths.size(); i++) {
            const std::string& path = paths[i];
            std::sort(fwds[i].begin(), fwds[i].end());
            std::sort(bwds[i].begin(), bwds[i].end());
            double fwd = fwds[i][fwds[i].size() / 2], bwd = bwds[i][bwds[i].size() / 2];
            double flops = 2.0 * N * l.OC * y.dim(2) * y.dim(3) * l.C * l.K * l.K;
            double gf = 3 * flops / ((fwd + bwd) * 1e6);
            emit({{"workload", "conv"}, {"arch", l.arch}, {"layer", l.layer}, {"input", shape_str(x.shape)},
                  {"weight", shape_str(w.shape)}, {"conv_path", path}, {"fwd_ms", json_num(fwd)}, {"bwd_ms", json_num(bwd)},
                  {"fwd_gflops", json_num(flops / (fwd * 1e6))}, {"bwd_gflops", json_num(2 * flops / (bwd * 1e6))},
                  {"gflops", json_num(gf)}, {"sgemm_gflops", json_num(peak)}, {"fraction_of_sgemm", json_num(gf / peak)}},
                 dev);
        }
        set_conv_path(dev, default_path);
    }
}

// ---- workloads W1-W5: the unrolled recurrent model --------------------------------------------
// One training iteration (forward, backward, Adam) of the ConvRNN: the image shown at every
// step, cells at all five layers, linear readouts of 64 "V4" units from conv3 and 128 "IT"
// units from conv5 at every step they are active, MSE against fixed targets, backbone
// frozen. GFLOP/s counts the forward convolutions of all T steps analytically, as if no
// silent layer were skipped and conv1 and its cells' input half ran at every step (the unroll
// runs them once per image: models/convrnn.cpp), times 3 for forward + backward (times 1 for
// inference): a rate of the model as written, not of the multiplies done.
// Forward + backward (forward alone for inference) run through a TapeGraph: on the GPU one
// captured CUDA Graph launch per iteration after the first two (warm-up, capture; both
// before the clock starts); Adam runs outside the graph.
struct RecurrentWorkload {
    const char* name;
    const char* arch;
    const char* motif;
    const char* feedback;
    int batch, steps;
    bool train;
};

// Forward conv FLOPs of one step with every layer active.
double step_conv_flops(const Model& m, int N) {
    double f = 0;
    for (size_t l = 0; l < m.spec.layers.size(); l++) {
        const LayerSpec& ls = m.spec.layers[l];
        double P = (double)ls.conv_size * ls.conv_size, C = ls.out_ch;
        double cin = ls.in_ch;
        for (const FeedbackEdge& e : m.cfg.feedback)
            if (e.dst == (int)l) cin += m.spec.layers[e.src].out_ch;
        f += 2.0 * N * C * P * cin * ls.kernel * ls.kernel;  // pre-memory conv
        double cell = 0;                                     // cell convs as (out channels, in channels), 3x3
        switch (m.motif((int)l)) {
            case Motif::RNN:
                cell = C * 2 * C;
                break;
            case Motif::RNNLarge: {
                double D = rnn_large_depth((int)C);
                cell = D * (C + D);
                break;
            }
            case Motif::GRU:
                cell = 2 * C * 2 * C + C * 2 * C;
                break;
            case Motif::LSTM:
                cell = 4 * C * 2 * C;
                break;
            case Motif::UGRNN:
                cell = 2 * C * 2 * C;
                break;
            case Motif::RGC:
                cell = 2 * C * C * 2 + C * C;
                break;
            default:
                break;
        }
        f += 2.0 * N * P * cell * 9;
    }
    return f;
}

void bench_recurrent(const Opts& o, const RecurrentWorkload& w_in) {
    RecurrentWorkload w = w_in;
    if (o.batch) w.batch = o.batch;
    if (o.steps) w.steps = o.steps;
    ModelConfig mc;
    mc.arch = w.arch;
    BackboneSpec spec = backbone_spec(w.arch);
    mc.motifs.assign(spec.layers.size(), motif_parse(w.motif));
    mc.feedback = feedback_parse(w.feedback, spec);
    const Device dev = o.device;
    Model m(mc, 1, dev);
    m.freeze_backbone();
    if (!w.train) m.params.set_trainable("", false);  // inference: no gradient memory at all
    const int N = w.batch, T = w.steps;
    const int v4 = 2, it = 4, U4 = 64, UIT = 128;  // readouts from conv3 and conv5
    auto dim = [&](int l) {
        return (int64_t)spec.layers[l].out_ch * spec.layers[l].out_size * spec.layers[l].out_size;
    };
    ParamArena readout({{"v4.weight", {U4, dim(v4)}, Init::Uniform, 0.01f},
                        {"v4.bias", {U4}, Init::Zeros},
                        {"it.weight", {UIT, dim(it)}, Init::Uniform, 0.01f},
                        {"it.bias", {UIT}, Init::Zeros}},
                       2, dev);
    Tensor target4 = tensor_full({N, U4}, 0.1f, dev), target_it = tensor_full({N, UIT}, 0.2f, dev);
    Unrolled u;
    UnrollConfig uc;
    uc.steps = T;
    uc.image_steps = T;  // the image at every step
    uc.batch = N;
    Rng rng(3);
    Tensor image = tensor_empty({N, 3, spec.in_size, spec.in_size}, dev);
    tensor_randn(image, rng);
    unroll_build(u, m, uc, /*record=*/true, image);
    Tensor loss;
    {
        TapeScope scope(u.tape);
        ArenaScope arena(u.arena);
        for (int t = 0; t < T; t++)
            for (auto [l, name, target] : {std::tuple{v4, "v4", target4}, std::tuple{it, "it", target_it}}) {
                const Tensor& h = u.out[t][l];
                if (!h.defined()) continue;
                std::string n = name;
                Tensor term = mse_loss(linear(h.flatten(), readout[n + ".weight"], readout[n + ".bias"]), target);
                loss = loss.defined() ? add(loss, term) : term;
            }
    }
    Adam opt;
    opt.lr = 1e-4f;
    TapeGraph graph(u.tape, w.train ? loss : Tensor(), o.graph);
    auto iteration = [&] {
        if (w.train) {
            m.params.zero_grad();
            readout.zero_grad();
        }
        graph.run();  // forward (+ backward)
        if (w.train) opt.step(m.params);
    };
    if (dev != Device::CPU && o.graph) iteration();  // TapeGraph's warm-up; median_ms's own one then captures
    double ms = median_ms(o.reps, iteration, dev);
    double flops = step_conv_flops(m, N) * T * (w.train ? 3 : 1);
    const Json graph_field = dev == Device::CPU ? Json(nullptr) : Json(graph.captured());
    if (!graph.fallback_reason().empty())
        std::fprintf(stderr, "bench %s: not replayed as a CUDA Graph: %s\n", w.name, graph.fallback_reason().c_str());
    emit({{"workload", w.name}, {"arch", w.arch}, {"motif", w.motif}, {"feedback", w.feedback[0] ? w.feedback : "none"},
          {"batch", N}, {"steps", T}, {"mode", w.train ? "train" : "inference"}, {"ms_per_iter", json_num(ms)},
          {"gflops", json_num(flops / (ms * 1e6))}, {"sgemm_gflops", json_num(o.sgemm)},
          {"fraction_of_sgemm", json_num(flops / (ms * 1e6) / o.sgemm)},
          {"activation_arena_mb", json_num(std::round(u.arena.total_floats() * 4.0 / (1 << 20)))},
          {"peak_rss_mb", json_num(std::round(peak_rss_mb()))}, {"cuda_graph", graph_field},
          {"conv_path", current_conv_path(dev)}, {"device_peak_mb", device_peak_mb(dev)},
          {"images_per_second", json_num(N / (ms * 1e-3))}},
         dev);
    if (o.points) o.points->push_back({w.name, N, N / (ms * 1e-3)});
}

const RecurrentWorkload RECURRENT[] = {
    {"W1", "hcnn5-s", "lstm", "conv5:conv2", 16, 16, true},
    {"W2", "hcnn5-s", "gru", "conv5:conv2", 16, 16, true},
    {"W3", "hcnn5-s", "none", "", 16, 16, true},
    {"W4", "hcnn5-s", "lstm", "conv5:conv2", 64, 26, false},
    {"W5", "hcnn5", "lstm", "conv5:conv2", 8, 16, true},
};

// One workload, or with --batch-sweep one run per batch.
void bench_w(const Opts& o, const char* name) {
    for (const RecurrentWorkload& w : RECURRENT) {
        if (std::strcmp(w.name, name)) continue;
        if (o.sweep.empty()) {
            bench_recurrent(o, w);
            continue;
        }
        Opts one = o;
        for (int b : o.sweep) {
            one.batch = b;
            bench_recurrent(one, w);
        }
    }
}

// --plot: images/s against batch, one line per workload (log2 batch axis as ticks 1, 2, 4, ...).
void sweep_plot(const Opts& o) {
    LinePlot lp;
    lp.title = strfmt("throughput vs batch (%s, %d threads)", device_name(o.device), backend_threads());
    lp.xlabel = "batch (log2)";
    lp.ylabel = "images/s";
    std::vector<std::string> names;
    for (const Opts::Point& p : *o.points)
        if (std::find(names.begin(), names.end(), p.workload) == names.end()) names.push_back(p.workload);
    for (size_t k = 0; k < names.size(); k++) {
        LineSeries s;
        s.label = names[k], s.color = (int)k, s.markers = true;
        for (const Opts::Point& p : *o.points)
            if (p.workload == names[k]) s.x.push_back((float)std::log2((double)p.batch)), s.y.push_back((float)p.images_per_s);
        lp.series.push_back(s);
    }
    plot_lines(o.plot, lp);
    std::fprintf(stderr, "bench: wrote %s\n", o.plot.c_str());
}
void bench_w1(const Opts& o) {
    bench_w(o, "W1");
}
void bench_w2(const Opts& o) {
    bench_w(o, "W2");
}
void bench_w3(const Opts& o) {
    bench_w(o, "W3");
}
void bench_w4(const Opts& o) {
    bench_w(o, "W4");
}
void bench_w5(const Opts& o) {
    bench_w(o, "W5");
}

// ---- workload: simpls ----------------------------------------------------------------------
// SIMPLS (engine/linalg.h) at the acceptance size: train X (3200, 8192) -> Y (3200, 256), 25
// components, predictions on 800 held-out rows, against scikit-learn's PLSRegression
// (scale=False, NIPALS) on the same machine and data. tools/bench_simpls.py makes the data,
// times sklearn and saves data and predictions (float32) to a temp folder that this workload
// reads, so both sides fit exactly the same numbers. Agreement is reported two ways, because
// for Q > 1 SIMPLS and NIPALS are different estimators (engine/linalg.h): the Q = 256 fit
// against a float64 numpy SIMPLS (the same estimator) and, as information, against sklearn;
// and a Q = 1 fit (same X, one output), where the two estimators coincide, against sklearn.
// Without python3 + scikit-learn it times the C++ fit alone on similar data made here and
// says how to get the sklearn time.
struct SimplsData {
    int64_t n = 0, nte = 0;
    int p = 0, q = 0;
    std::vector<float> xtr, ytr, xte, yhat_sklearn, yhat_numpy;
};

std::vector<float> read_f32_file(const std::string& path, size_t n) {
    std::vector<float> v(n);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("bench simpls: cannot open '%s'", path.c_str());
    size_t got = std::fread(v.data(), sizeof(float), n, f);
    std::fclose(f);
    if (got != n) fail("bench simpls: '%s' holds %zu floats, expected %zu", path.c_str(), got, n);
    return v;
}

// |a - b|_F / |b|_F, and the same per output column (median and max over the q columns).
void rel_errors(const std::vector<float>& a, const std::vector<float>& b, int64_t n, int q, double& fro,
                double& col_median, double& col_max) {
    double num = 0, den = 0;
    std::vector<double> cn(q, 0.0), cd(q, 0.0);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < q; j++) {
            double d = (double)a[i * q + j] - b[i * q + j];
            cn[j] += d * d, cd[j] += (double)b[i * q + j] * b[i * q + j];
        }
    std::vector<double> col(q);
    for (int j = 0; j < q; j++) num += cn[j], den += cd[j], col[j] = std::sqrt(cn[j] / std::max(cd[j], 1e-300));
    fro = std::sqrt(num / std::max(den, 1e-300));
    std::sort(col.begin(), col.end());
    col_median = col[q / 2], col_max = col.back();
}

// Runs a program found in PATH with `args` (argv[0] first), without a shell: its stdout into
// *out, its stderr to /dev/null. Returns its exit code, or -1 if it could not be started.
int run_program(const std::vector<std::string>& args, std::string* out) {
    std::vector<char*> av;
    for (const std::string& a : args) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc != 0) {
        close(fd[0]);
        return -1;
    }
    char buf[4096];
    for (ssize_t got; (got = read(fd[0], buf, sizeof buf)) != 0;) {
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;
        out->append(buf, (size_t)got);
    }
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void bench_simpls(const Opts& o) {
    const int n = 3200, nte = 800, p = 8192, q = 256, ncomp = 25;
    std::string script = "tools/bench_simpls.py";
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        std::string root = std::string(exe).substr(0, std::string(exe).rfind('/'));  // bin/
        root = root.substr(0, root.rfind('/'));
        if (access((root + "/tools/bench_simpls.py").c_str(), R_OK) == 0) script = root + "/tools/bench_simpls.py";
    }
    std::string ignored;
    const bool sklearn =
        access(script.c_str(), R_OK) == 0 && run_program({"python3", "-c", "import numpy, sklearn"}, &ignored) == 0;
    auto fit_time = [&](const std::vector<float>& X, const std::vector<float>& Y, int qq, PlsModel& m,
                        PlsAlgorithm algo = PlsAlgorithm::Simpls) {
        return median_ms(o.reps, [&] { m = pls_fit(X.data(), Y.data(), n, p, qq, ncomp, algo); });
    };
    if (!sklearn) {
        Rng rng(7);
        Tensor X = tensor_empty({n, p}), W = tensor_empty({p, q}), Y = tensor_empty({n, q});
        tensor_randn(X, rng);
        tensor_randn(W, rng, 1.f / std::sqrt((float)p));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, q, p, 1.f, X.data(), p, W.data(), q, 0.f, Y.data(),
                    q);
        std::vector<float> xv = X.to_vector(), yv = Y.to_vector();
        PlsModel m;
        double ms = fit_time(xv, yv, q, m);
        emit({{"workload", "simpls"}, {"n", n}, {"p", p}, {"q", q}, {"ncomp", ncomp}, {"fit_ms", json_num(ms)},
              {"sklearn_fit_s", nullptr},
              {"note", "python3 with scikit-learn not found: time sklearn with python3 tools/bench_simpls.py (same "
                       "shape) and compare fit_s"}});
        return;
    }
    char tmpl[] = "/tmp/ventral_bench_simpls_XXXXXX";
    if (!mkdtemp(tmpl)) fail("bench simpls: mkdtemp failed");
    const std::string dir = tmpl;
    for (int qq : {q, 1}) {
        const std::string sub = dir + "/q" + std::to_string(qq);
        // Same seed and kind: X is identical for both q (bench_simpls.py draws X before W).
        std::vector<std::string> cmd = {"python3", script, "--n", std::to_string(n), "--n-test", std::to_string(nte),
                                        "--p", std::to_string(p), "--q", std::to_string(qq), "--ncomp",
                                        std::to_string(ncomp), "--save", sub};
        if (qq > 1) cmd.push_back("--numpy-simpls");
        std::string out;
        if (run_program(cmd, &out) != 0) {
            std::string line;
            for (const std::string& a : cmd) line += (line.empty() ? "" : " ") + a;
            fail("bench simpls: '%s' failed:\n%s", line.c_str(), out.c_str());
        }
        const Json sk = json_parse(out.substr(0, out.find('\n')), script + "'s first line");
        const double sk_fit_s = sk.contains("fit_s") && sk["fit_s"].is_number() ? sk["fit_s"].get<double>() : NAN;
        const std::string sk_impl = sk.contains("impl") && sk["impl"].is_string() ? sk["impl"].get<std::string>() : "sklearn";

        std::vector<float> xtr = read_f32_file(sub + "/xtr.f32", (size_t)n * p);
        std::vector<float> ytr = read_f32_file(sub + "/ytr.f32", (size_t)n * qq);
        std::vector<float> xte = read_f32_file(sub + "/xte.f32", (size_t)nte * p);
        std::vector<float> ysk = read_f32_file(sub + "/yhat_sklearn.f32", (size_t)nte * qq);
        for (PlsAlgorithm algo : {PlsAlgorithm::Simpls, PlsAlgorithm::Nipals}) {
            const bool nipals = algo == PlsAlgorithm::Nipals;
            PlsModel m;
            const double fit_ms = fit_time(xtr, ytr, qq, m, algo);
            std::vector<float> yhat((size_t)nte * qq);
            const double pred_ms = median_ms(o.reps, [&] { pls_predict(yhat.data(), m, xte.data(), nte); });
            double sk_fro, sk_med, sk_max;
            rel_errors(yhat, ysk, nte, qq, sk_fro, sk_med, sk_max);
            Json line = {{"workload", "simpls"},   {"algorithm", nipals ? "nipals" : "simpls"},
                         {"n", n},                  {"n_test", nte},
                         {"p", p},                  {"q", qq},
                         {"ncomp", m.ncomp},        {"fit_ms", json_num(fit_ms)},
                         {"predict_ms", json_num(pred_ms)}, {"sklearn", sk_impl},
                         {"sklearn_fit_s", json_num(sk_fit_s)}, {"speedup_vs_sklearn", json_num(sk_fit_s * 1e3 / fit_ms)}};
            if (qq > 1 && !nipals) {
                std::vector<float> ynp = read_f32_file(sub + "/yhat_simpls_numpy.f32", (size_t)nte * qq);
                double np_fro, np_med, np_max;
                rel_errors(yhat, ynp, nte, qq, np_fro, np_med, np_max);
                line["rel_vs_numpy_simpls"] = json_num(np_fro), line["rel_vs_numpy_simpls_max_output"] = json_num(np_max);
            }
            line["rel_vs_sklearn"] = json_num(sk_fro), line["rel_vs_sklearn_median_output"] = json_num(sk_med);
            line["rel_vs_sklearn_max_output"] = json_num(sk_max), line["same_estimator_as_sklearn"] = qq == 1 || nipals;
            emit(line);
        }
        for (const char* f : {"xtr", "ytr", "xte", "yte", "yhat_sklearn", "yhat_simpls_numpy"})
            std::remove((sub + "/" + f + ".f32").c_str());
        std::remove((sub + "/meta.json").c_str());
        rmdir(sub.c_str());
    }
    rmdir(dir.c_str());
}

struct Workload {
    const char* name;
    const char* what;
    void (*run)(const Opts&);
};

const Workload WORKLOADS[] = {
    {"conv", "conv2d forward+backward on hcnn5-s and hcnn5 layers and their lstm and gru cells, batch 16, vs same-run sgemm",
     bench_conv},
    {"W1", "train step: hcnn5-s, lstm everywhere + conv5:conv2, batch 16, T=16", bench_w1},
    {"W2", "train step: hcnn5-s, gru everywhere + conv5:conv2, batch 16, T=16", bench_w2},
    {"W3", "train step: hcnn5-s, no cells, no feedback, batch 16, T=16", bench_w3},
    {"W4", "inference: hcnn5-s, lstm + conv5:conv2, batch 64, T=26", bench_w4},
    {"W5", "train step: hcnn5, lstm + conv5:conv2, batch 8, T=16", bench_w5},
    {"simpls", "PLS fit (SIMPLS and NIPALS) 3200x8192 -> 256, 25 components, vs scikit-learn (tools/bench_simpls.py)",
     bench_simpls},
};

}  // namespace

int main(int argc, char** argv) {
    RuntimeOptions rt;
    rt.drop_blas_overrides = true;
    runtime_init(argv, rt);
    return run_main([&] {
        Opts o;
        std::string workloads, listing;
        bool list = false, no_graph = false;
        for (const Workload& w : WORKLOADS) listing += strfmt("\n  %-8s %s", w.name, w.what);
        Cli cli("bench", "",
                "Benchmarks, one JSON line per measurement; the median of --reps runs.\n"
                "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed for the run (native kernels).\n"
                "--device cuda runs conv and W1-W5 on the GPU (simpls stays on the CPU), against cuBLAS's sgemm;\n"
                "W1-W5 replay each iteration as a CUDA Graph unless --no-graph.\n\nworkloads:" + listing);
        cli.flag("--workload", &workloads, "comma-separated workloads to run (default: all)");
        cli.flag("--reps", &o.reps, "runs per measurement (the median is reported)").range(1, 100000);
        cli.flag("--threads", &o.threads, "compute threads (0 = all cores)").range(0, 1 << 16);
        cli.flag("--device", &o.device, "cpu or cuda");
        cli.flag("--precision", &o.precision, std::string(kPrecisionHelp) + "; the sgemm reference runs at it too");
        cli.flag("--no-graph", &no_graph, "W1-W5 on the GPU: plain runs instead of a captured CUDA Graph");
        std::string conv = "auto";
        cli.flag("--conv", &conv, "CPU: the path of stride-1 convolutions in W1-W5: auto (by shape), im2col, implicit (the implicit GEMM; on CPUs with AVX2), winograd2 or winograd4 (3x3), fused-winograd (F(2x2) on the implicit GEMM's micro-kernel; 3x3, on CPUs with AVX2)");
        cli.flag("--list", &list, "print the workload names and exit");
        cli.flag("--batch", &o.batch, "W1-W5 and conv: this batch instead of the workload's (0 = its own)").range(0, 1 << 16);
        cli.flag("--steps", &o.steps, "W1-W5: this many steps T instead of the workload's (0 = its own)").range(0, 10000);
        std::string sweep;
        cli.flag("--batch-sweep", &sweep, "W1-W5: one run per batch of this comma-separated list (e.g. 1,2,4,8,16,32)");
        cli.flag("--plot", &o.plot, "with --batch-sweep: images/s vs batch as a PNG here");
        cli.parse(argc, argv);
        for (const std::string& b : split_list(sweep)) {
            char* end = nullptr;
            long v = std::strtol(b.c_str(), &end, 10);
            if (*end || v < 1 || v > (1 << 16)) fail("--batch-sweep: expected batches from 1 to 65536, got '%s'", b.c_str());
            o.sweep.push_back((int)v);
        }
        if (!o.sweep.empty() && o.batch) fail("--batch-sweep and --batch: pick one");
        if (!o.plot.empty() && o.sweep.empty()) fail("--plot: draws a --batch-sweep; give one");
        std::vector<Opts::Point> points;
        if (!o.plot.empty()) o.points = &points;
        if (!cli.positional.empty()) fail("bench: unexpected argument '%s' (see --help)", cli.positional[0].c_str());
        if (list) {
            for (const Workload& w : WORKLOADS) std::printf("%s\n", w.name);
            return 0;
        }
        if (!is_cpu_conv_path(conv))
            fail("--conv: expected %s, got '%s'", cpu_conv_path_names().c_str(), conv.c_str());
        set_conv_path(Device::CPU, conv);
        o.graph = !no_graph;
        o.workloads = split_list(workloads);
        for (const std::string& name : o.workloads) {
            bool found = false;
            for (const Workload& w : WORKLOADS) found = found || name == w.name;
            if (!found) fail("--workload: unknown workload '%s' (see --list)", name.c_str());
        }
        backend_set_threads(o.threads);
        backend_set_precision(o.device, o.precision);
        o.sgemm = sgemm_gflops(o.reps, o.device);
        emit({{"workload", "sgemm"}, {"n", sgemm_n(o.device)}, {"gflops", json_num(o.sgemm)}}, o.device);
        for (const Workload& w : WORKLOADS)
            if (o.workloads.empty() || std::find(o.workloads.begin(), o.workloads.end(), w.name) != o.workloads.end())
                w.run(o);
        if (o.points && !points.empty()) sweep_plot(o);
        std::fprintf(stderr, "bench: peak RSS %.0f MB\n", peak_rss_mb());
        return 0;
    });
}
