// image_folder.cpp: scanning ImageNet-style folders, the held-out val split, and the
// threaded prefetching batch loader. See image_folder.h.
//
// The loader's unit of work is one image at one position of the epoch (position p is row
// p % B of batch p / B). Workers take positions in order, but only of the `depth` batches
// after the last one the caller took, and write straight into that batch's slot; the
// caller waits for its slot to be complete and copies it out. All randomness of position p
// comes from its own generator seeded by (seed, epoch, p), so results do not depend on the
// number of threads or which thread does what. A shard of a data-parallel run works on its
// own positions q (row q % Bl of its batch q / Bl, Bl = B / shards): global position
// p = (q / Bl) * B + shard * Bl + q % Bl, with p's image and generator.
#include "models/datasets/image_folder.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>

#include "engine/common.h"
#include "engine/io/image.h"
#include "engine/tensor.h"  // Rng

namespace fs = std::filesystem;

namespace vt {
namespace {

// ---- scanning ---------------------------------------------------------------------------

bool is_image_name(const std::string& name) {
    size_t dot = name.rfind('.');
    if (dot == std::string::npos) return false;
    std::string ext = name.substr(dot + 1);
    for (char& c : ext) c = (char)std::tolower((unsigned char)c);
    return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "bmp";
}

bool is_folder(const std::string& path) {
    std::error_code ec;
    return fs::is_directory(path, ec);  // follows symlinks
}

// Sorted names of the sub-folders (want_folders) or regular files in `path`, symlinks
// followed, dot-names skipped.
std::vector<std::string> folder_list(const std::string& path, bool want_folders) {
    std::vector<std::string> names;
    std::error_code ec;
    fs::directory_iterator it(path, ec), end;
    if (ec) fail("cannot list folder '%s': %s", path.c_str(), ec.message().c_str());
    for (; it != end; it.increment(ec)) {
        if (ec) fail("cannot list folder '%s': %s", path.c_str(), ec.message().c_str());
        std::string name = it->path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        std::error_code ec2;
        fs::file_status st = fs::status(it->path(), ec2);
        if (want_folders ? fs::is_directory(st) : fs::is_regular_file(st)) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

int count_images(const std::string& path) {
    int n = 0;
    for (const std::string& f : folder_list(path, false)) n += is_image_name(f);
    return n;
}

std::string strip_slashes(std::string dir) {
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return dir;
}

void require_folder(const std::string& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) fail("dataset folder '%s' does not exist", dir.c_str());
    if (!is_folder(dir)) fail("dataset folder '%s' is not a folder (expected DIR with DIR/train/<class>/*.jpg)", dir.c_str());
}

const char* IMAGE_EXTS = ".jpg/.jpeg/.png/.bmp";

// splitmix64 of a combined with b: independent streams for (seed, epoch, position).
uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

}  // namespace

ImageFolder image_folder_scan(const std::string& dir, const std::string& split) {
    std::string d = strip_slashes(dir);
    require_folder(d);
    ImageFolder f;
    f.root = d + "/" + split;
    const char* root = f.root.c_str();
    if (!is_folder(f.root)) fail("'%s' does not exist (expected %s/<class>/ folders of %s images)", root, root, IMAGE_EXTS);
    f.classes = folder_list(f.root, true);
    if (f.classes.empty()) {
        int loose = count_images(f.root);
        fail("'%s' has no class folders (expected %s/<class>/ folders of %s images)%s", root, root, IMAGE_EXTS,
             loose ? strfmt("; it holds %d image file(s) directly: put them in one folder per class", loose).c_str() : "");
    }
    for (size_t c = 0; c < f.classes.size(); c++) {
        std::string cdir = f.root + "/" + f.classes[c];
        size_t before = f.paths.size();
        for (const std::string& name : folder_list(cdir, false)) {
            if (!is_image_name(name)) continue;
            f.paths.push_back(cdir + "/" + name);
            f.labels.push_back((int)c);
        }
        if (f.paths.size() == before) fail("class folder '%s' has no images (%s)", cdir.c_str(), IMAGE_EXTS);
    }
    return f;
}

FolderSplits image_folder_splits(const std::string& dir, float holdout, uint64_t seed) {
    if (!(holdout > 0 && holdout < 1)) fail("holdout fraction %g (expected 0 < holdout < 1)", holdout);
    std::string d = strip_slashes(dir);
    require_folder(d);
    if (!is_folder(d + "/train")) {
        std::string hint;
        for (const std::string& sub : folder_list(d, true))
            if (count_images(d + "/" + sub) > 0) {
                hint = strfmt("; it holds class folders directly (e.g. '%s'): move them into '%s/train/'", sub.c_str(),
                              d.c_str());
                break;
            }
        fail("dataset folder '%s' has no train/ folder (expected %s/train/<class>/ folders of %s images, and "
             "optionally %s/val/<class>/)%s", d.c_str(), d.c_str(), IMAGE_EXTS, d.c_str(), hint.c_str());
    }
    FolderSplits s;
    s.train = image_folder_scan(d, "train");
    if (is_folder(d + "/val") || is_folder(d + "/test")) {
        bool val = is_folder(d + "/val");
        s.val = image_folder_scan(d, val ? "val" : "test");
        if (!val) s.note = strfmt("no val/ in '%s': using its test/ as val", d.c_str());
        const std::vector<std::string>& a = s.train.classes;
        const std::vector<std::string>& b = s.val.classes;
        if (a != b) {
            std::string only;
            for (const std::string& c : a)
                if (!std::binary_search(b.begin(), b.end(), c)) only = strfmt("'%s' is only in '%s'", c.c_str(), s.train.root.c_str());
            for (const std::string& c : b)
                if (!std::binary_search(a.begin(), a.end(), c)) only = strfmt("'%s' is only in '%s'", c.c_str(), s.val.root.c_str());
            fail("'%s' has %zu class folders and '%s' has %zu, not the same ones (%s); expected the same class folders in both",
                 s.train.root.c_str(), a.size(), s.val.root.c_str(), b.size(), only.c_str());
        }
        return s;
    }

    // No val/ or test/: hold out round(holdout * n) images of every class (n >= 2).
    ImageFolder all = s.train;
    s.train.paths.clear(), s.train.labels.clear();
    s.val.root = all.root, s.val.classes = all.classes;
    size_t start = 0;
    for (size_t c = 0; c < all.classes.size(); c++) {
        size_t end = start;
        while (end < all.paths.size() && all.labels[end] == (int)c) end++;
        int64_t n = (int64_t)(end - start);
        int64_t k = n < 2 ? 0 : std::min<int64_t>(n - 1, std::max<int64_t>(1, std::llround(holdout * n)));
        std::vector<int64_t> pick(n);
        for (int64_t i = 0; i < n; i++) pick[i] = i;
        Rng rng(mix(seed, c));
        for (int64_t i = n - 1; i > 0; i--) std::swap(pick[i], pick[rng.randint(i + 1)]);
        std::vector<uint8_t> held(n, 0);
        for (int64_t i = 0; i < k; i++) held[pick[i]] = 1;
        for (int64_t i = 0; i < n; i++) {
            ImageFolder& to = held[i] ? s.val : s.train;
            to.paths.push_back(all.paths[start + i]);
            to.labels.push_back((int)c);
        }
        start = end;
    }
    if (s.val.paths.empty())
        fail("dataset folder '%s' has no val/ or test/ folder, and its train/ is too small to hold one out "
             "(every class has a single image; expected at least 2 in some class)", d.c_str());
    s.note = strfmt("no val/ or test/ in '%s': held out %g%% of train/ as val (%zu of %zu images, stratified by class, "
                    "seed %llu)", d.c_str(), holdout * 100.0, s.val.paths.size(), all.paths.size(),
                    (unsigned long long)seed);
    return s;
}

// ---- the batch loader -------------------------------------------------------------------

struct LoaderSlot {                    // one batch being prepared
    std::vector<float> images;         // (B, 3, S, S)
    std::vector<float> labels;         // (B,)
    std::vector<uint8_t> valid;        // (B,) 0 where eval left out an unreadable image
    int64_t done = 0;                  // positions finished
    std::exception_ptr error;          // the first failure of a worker on this batch
};

struct LoaderState {
    ImageFolder data;
    LoaderConfig cfg;
    int64_t n = 0, batches = 0, total = 0;  // images, batches and (this shard's) positions per epoch
    int64_t rows = 0;                  // Bl: rows of a batch in this shard (B without shards)
    std::vector<int64_t> order;        // image index at each global position of this epoch

    std::mutex mu;                     // guards everything below
    std::condition_variable work_cv;   // workers: a position may be free
    std::condition_variable ready_cv;  // caller: a slot may be complete
    std::condition_variable idle_cv;   // start_epoch: no worker busy
    bool started = false, active = false, quit = false;
    int epoch = 0;
    int64_t next_pos = 0;              // next position to hand to a worker
    int64_t taken = 0;                 // batches handed to the caller
    int in_flight = 0;                 // workers busy on a position
    std::vector<LoaderSlot> slots;     // (depth,) batch k lives in slots[k % depth]
    std::vector<uint8_t> bad;          // (n,) 1 = known unreadable
    int64_t nbad = 0;
    std::vector<std::thread> threads;

    int64_t batch_rows(int64_t k) const { return std::min<int64_t>(rows, total - k * rows); }
    int64_t global(int64_t q) const { return (q / rows) * cfg.batch + cfg.shard * rows + q % rows; }
};

namespace {

Image crop(const Image& img, int top, int left, int H, int W) {
    Image out;
    out.H = H, out.W = W;
    out.rgb.resize((size_t)H * W * 3);
    for (int y = 0; y < H; y++)
        memcpy(&out.rgb[(size_t)y * W * 3], &img.rgb[((size_t)(top + y) * img.W + left) * 3], (size_t)W * 3);
    return out;
}

void flip_horizontal(Image& img) {
    for (int y = 0; y < img.H; y++) {
        uint8_t* row = &img.rgb[(size_t)y * img.W * 3];
        for (int a = 0, b = img.W - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) std::swap(row[a * 3 + c], row[b * 3 + c]);
    }
}

// The S x S network input of one decoded image (see image_folder.h for the recipe).
Image loader_augment(const Image& img, const LoaderConfig& cfg, Rng& rng) {
    int S = cfg.size, R = (int)std::lround(S * LOADER_RESIZE_RATIO);
    if (!cfg.train) return image_center_crop(image_resize_short_side(img, R), S, S);
    Image out;
    if (cfg.crop_scale_min > 0) {  // random-resized crop; torchvision's 10 tries, then the central square
        int h = std::min(img.H, img.W), w = h, top = (img.H - h) / 2, left = (img.W - w) / 2;
        for (int t = 0; t < 10; t++) {
            double area = img.H * (double)img.W * (cfg.crop_scale_min + (1 - cfg.crop_scale_min) * rng.uniform());
            double aspect = std::exp(std::log(3.0 / 4) + (std::log(4.0 / 3) - std::log(3.0 / 4)) * rng.uniform());
            int cw = (int)std::lround(std::sqrt(area * aspect)), ch = (int)std::lround(std::sqrt(area / aspect));
            if (cw < 1 || ch < 1 || cw > img.W || ch > img.H) continue;
            h = ch, w = cw, top = (int)rng.randint(img.H - h + 1), left = (int)rng.randint(img.W - w + 1);
            break;
        }
        out = image_resize(crop(img, top, left, h, w), S, S);
    } else {
        Image r = image_resize_short_side(img, R);
        out = crop(r, (int)rng.randint(r.H - S + 1), (int)rng.randint(r.W - S + 1), S, S);
    }
    if (rng.uniform() < 0.5f) flip_horizontal(out);
    return out;
}

// Decodes and augments image idx into out; false (with one warning per file) if it is unreadable.
bool loader_prepare(LoaderState* s, int64_t idx, Rng& rng, Image& out) {
    {
        std::lock_guard<std::mutex> lk(s->mu);
        if (s->bad[idx]) return false;
    }
    const std::string& path = s->data.paths[idx];
    try {
        Image img = image_load(path);
        try {
            out = loader_augment(img, s->cfg, rng);
        } catch (const Error& e) {
            fail("cannot use image '%s': %s", path.c_str(), e.what());
        }
        return true;
    } catch (const Error& e) {
        std::lock_guard<std::mutex> lk(s->mu);
        if (!s->bad[idx]) {
            s->bad[idx] = 1, s->nbad++;
            std::fprintf(stderr, "warning: skipping an unreadable image (%lld so far): %s\n", (long long)s->nbad, e.what());
        }
        return false;
    }
}

// Fills row q % Bl of batch q / Bl's slot (q: this shard's position).
void loader_fill(LoaderState* s, int64_t q) {
    const LoaderConfig& cfg = s->cfg;
    int64_t k = q / s->rows, row = q % s->rows, S = cfg.size, p = s->global(q);
    LoaderSlot& slot = s->slots[k % cfg.depth];
    Rng rng(mix(mix(cfg.seed, (uint64_t)s->epoch), (uint64_t)p));
    int64_t idx = s->order[p];
    Image img;
    if (!loader_prepare(s, idx, rng, img)) {
        if (!cfg.train) {
            slot.valid[row] = 0;
            return;
        }
        for (int tries = 0;; tries++) {  // train: a random readable image takes its place
            if (tries == 100) {
                std::unique_lock<std::mutex> lk(s->mu);
                long long nbad = s->nbad;
                lk.unlock();
                fail("'%s': no readable image found in 100 random draws (%lld of %lld files unreadable so far)",
                     s->data.root.c_str(), nbad, (long long)s->n);
            }
            idx = rng.randint(s->n);
            if (loader_prepare(s, idx, rng, img)) break;
        }
    }
    image_to_chw(slot.images.data() + row * 3 * S * S, img, cfg.mean, cfg.std);
    slot.labels[row] = (float)s->data.labels[idx];
    slot.valid[row] = 1;
}

void loader_worker(LoaderState* s) {
    const int64_t B = s->rows;
    std::unique_lock<std::mutex> lk(s->mu);
    for (;;) {
        s->work_cv.wait(lk, [&] {
            return s->quit || (s->active && s->next_pos < s->total && s->next_pos / B < s->taken + s->cfg.depth);
        });
        if (s->quit) return;
        int64_t p = s->next_pos++;
        s->in_flight++;
        lk.unlock();
        std::exception_ptr err;
        try {
            loader_fill(s, p);
        } catch (...) {
            err = std::current_exception();
        }
        lk.lock();
        s->in_flight--;
        LoaderSlot& slot = s->slots[(p / B) % s->cfg.depth];
        if (err && !slot.error) slot.error = err;
        if (++slot.done == s->batch_rows(p / B)) s->ready_cv.notify_all();
        if (s->in_flight == 0) s->idle_cv.notify_all();
    }
}

}  // namespace

BatchLoader::BatchLoader(const ImageFolder& data, const LoaderConfig& cfg) : s(new LoaderState) {
    const char* root = data.root.c_str();
    if (data.paths.empty()) fail("'%s' has no images to load", root);
    CHECK(data.labels.size() == data.paths.size(), "BatchLoader: %zu labels for %zu paths", data.labels.size(),
          data.paths.size());
    if (cfg.size < 1) fail("loader: image size %d (expected >= 1)", cfg.size);
    if (cfg.batch < 1) fail("loader: batch size %d (expected >= 1)", cfg.batch);
    if (cfg.threads < 1) fail("loader: %d decoding threads (expected >= 1)", cfg.threads);
    if (cfg.depth < 1) fail("loader: prefetch depth %d (expected >= 1)", cfg.depth);
    if (cfg.shards < 1 || cfg.shard < 0 || cfg.shard >= cfg.shards)
        fail("loader: shard %d of %d (expected 0 <= shard < shards)", cfg.shard, cfg.shards);
    if (cfg.shards > 1 && (!cfg.train || !cfg.drop_last || cfg.batch % cfg.shards))
        fail("loader: %d shards need training batches (drop_last) of a multiple of %d images, got %d", cfg.shards,
             cfg.shards, cfg.batch);
    if (!(cfg.crop_scale_min >= 0 && cfg.crop_scale_min <= 1))
        fail("loader: crop scale minimum %g (expected 0 = off, or in (0, 1])", cfg.crop_scale_min);
    for (int c = 0; c < 3; c++)
        if (!(cfg.std[c] > 0)) fail("loader: std[%d] = %g (expected > 0)", c, cfg.std[c]);
    s->data = data;
    s->cfg = cfg;
    s->n = (int64_t)data.paths.size();
    bool drop = cfg.train && cfg.drop_last;
    s->batches = drop ? s->n / cfg.batch : (s->n + cfg.batch - 1) / cfg.batch;
    s->rows = cfg.batch / cfg.shards;
    s->total = drop ? s->batches * s->rows : s->n;
    if (s->batches == 0)
        fail("'%s' has %lld images, fewer than one batch of %d (lower the batch size)", root, (long long)s->n, cfg.batch);
    s->bad.assign(s->n, 0);
    s->slots.resize(cfg.depth);
    for (LoaderSlot& slot : s->slots) {
        slot.images.resize((size_t)s->rows * 3 * cfg.size * cfg.size);
        slot.labels.resize(s->rows);
        slot.valid.resize(s->rows);
    }
    try {
        for (int t = 0; t < cfg.threads; t++) s->threads.emplace_back(loader_worker, s.get());
    } catch (const std::system_error& e) {  // out of threads: stop those started, then say so
        {
            std::lock_guard<std::mutex> lk(s->mu);
            s->quit = true;
        }
        s->work_cv.notify_all();
        for (std::thread& t : s->threads) t.join();
        fail("loader: cannot start decoding thread %zu of %d (%s); use fewer loader threads", s->threads.size() + 1,
             cfg.threads, e.what());
    }
}

BatchLoader::~BatchLoader() {
    {
        std::lock_guard<std::mutex> lk(s->mu);
        s->quit = true;
    }
    s->work_cv.notify_all();
    for (std::thread& t : s->threads) t.join();
}

void BatchLoader::start_epoch(int epoch) {
    std::unique_lock<std::mutex> lk(s->mu);
    s->active = false;  // abandon the rest of the previous epoch
    s->idle_cv.wait(lk, [&] { return s->in_flight == 0; });
    s->order.resize(s->n);
    for (int64_t i = 0; i < s->n; i++) s->order[i] = i;
    if (s->cfg.train) {
        Rng rng(mix(mix(s->cfg.seed, (uint64_t)epoch), ~0ull));
        for (int64_t i = s->n - 1; i > 0; i--) std::swap(s->order[i], s->order[rng.randint(i + 1)]);
    }
    s->order.resize(s->cfg.train && s->cfg.drop_last ? s->batches * s->cfg.batch : s->n);
    for (LoaderSlot& slot : s->slots) slot.done = 0, slot.error = nullptr;
    s->epoch = epoch;
    s->next_pos = 0, s->taken = 0;
    s->started = s->active = true;
    lk.unlock();
    s->work_cv.notify_all();
}

bool BatchLoader::next(float* images, float* labels, int* count) {
    const int64_t row_size = 3 * (int64_t)s->cfg.size * s->cfg.size;
    std::unique_lock<std::mutex> lk(s->mu);
    CHECK(s->started, "BatchLoader::next: call start_epoch first");
    for (;;) {
        if (s->taken >= s->batches) return false;
        int64_t k = s->taken, rows = s->batch_rows(k);
        LoaderSlot& slot = s->slots[k % s->cfg.depth];
        s->ready_cv.wait(lk, [&] { return slot.done == rows; });
        lk.unlock();  // no worker touches this slot until taken moves past k
        int n = 0;
        if (!slot.error)
            for (int64_t r = 0; r < rows; r++) {
                if (!slot.valid[r]) continue;
                memcpy(images + n * row_size, slot.images.data() + r * row_size, row_size * sizeof(float));
                labels[n++] = slot.labels[r];
            }
        lk.lock();
        std::exception_ptr err = slot.error;
        slot.done = 0, slot.error = nullptr;
        s->taken++;
        s->work_cv.notify_all();
        if (err) std::rethrow_exception(err);
        if (n > 0) {
            *count = n;
            return true;
        }
    }
}

int64_t BatchLoader::batches_per_epoch() const { return s->batches; }

int64_t BatchLoader::skipped() const {
    std::lock_guard<std::mutex> lk(s->mu);
    return s->nbad;
}

}  // namespace vt
