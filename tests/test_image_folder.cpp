// test_image_folder.cpp: ImageNet-style folder scanning, the held-out val split, and the
// threaded batch loader (shapes, labels, normalisation, seeded shuffling independent of the
// thread count, the eval recipe, unreadable images skipped with one warning, every refusal).
// Folders of tiny synthetic PNG/JPEG/BMP files are built in a temp dir; no shared data needed.
#include <fcntl.h>
#include <stb/stb_image_write.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "engine/io/image.h"
#include "models/datasets/image_folder.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;
namespace fs = std::filesystem;

namespace {

Image solid(int H, int W, uint8_t r, uint8_t g, uint8_t b) {
    Image img;
    img.H = H, img.W = W;
    for (int i = 0; i < H * W; i++) img.rgb.insert(img.rgb.end(), {r, g, b});
    return img;
}

// Writes img at path, creating folders; the format follows the extension (any case).
// stb_image_write directly, not image_write_png, whose fsync would make the tests slow.
void write_image(const std::string& path, const Image& img) {
    fs::create_directories(fs::path(path).parent_path());
    std::string ext = fs::path(path).extension().string();
    for (char& c : ext) c = (char)std::tolower((unsigned char)c);
    int ok = 0;
    if (ext == ".png") ok = stbi_write_png(path.c_str(), img.W, img.H, 3, img.rgb.data(), img.W * 3);
    else if (ext == ".jpg" || ext == ".jpeg") ok = stbi_write_jpg(path.c_str(), img.W, img.H, 3, img.rgb.data(), 95);
    else if (ext == ".bmp") ok = stbi_write_bmp(path.c_str(), img.W, img.H, 3, img.rgb.data());
    REQUIRE(ok);
}

void write_text(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
}

// A temp folder removed (with everything in it) when the test ends.
struct TempFolder {
    std::string path = vt_test::temp_dir();
    ~TempFolder() { fs::remove_all(path); }
};

// root/<split>/c<k>/i<j>.png for counts[k] images each; image number v (counting over all
// classes) is a solid grey of 10 + 20 * v, so a pixel identifies the file.
void make_split(const std::string& root, const std::string& split, const std::vector<int>& counts, int side = 8) {
    int v = 0;
    for (size_t k = 0; k < counts.size(); k++)
        for (int j = 0; j < counts[k]; j++, v++) {
            uint8_t g = (uint8_t)(10 + 20 * v);
            write_image(root + "/" + split + "/c" + std::to_string(k) + "/i" + std::to_string(j) + ".png",
                        solid(side, side, g, g, g));
        }
}

// Everything one epoch of a loader gives: the images, labels and row counts of every batch.
struct Epoch {
    std::vector<float> images, labels;
    std::vector<int> counts;
};

Epoch run_epoch(BatchLoader& loader, const LoaderConfig& cfg, int epoch) {
    Epoch e;
    size_t row = 3 * (size_t)cfg.size * cfg.size;
    std::vector<float> images(cfg.batch * row), labels(cfg.batch);
    loader.start_epoch(epoch);
    int count = 0;
    while (loader.next(images.data(), labels.data(), &count)) {
        e.images.insert(e.images.end(), images.begin(), images.begin() + count * row);
        e.labels.insert(e.labels.end(), labels.begin(), labels.begin() + count);
        e.counts.push_back(count);
    }
    return e;
}

// Identity grey level (10 + 20 v) of each row, read from its first pixel (mean 0, std 1).
std::vector<int> greys(const Epoch& e, int size) {
    std::vector<int> g;
    for (size_t r = 0; r < e.labels.size(); r++) g.push_back((int)std::lround(e.images[r * 3 * size * size] * 255));
    return g;
}

LoaderConfig plain_config(int size, int batch, bool train) {
    LoaderConfig cfg;
    cfg.size = size, cfg.batch = batch, cfg.train = train;
    for (int c = 0; c < 3; c++) cfg.mean[c] = 0, cfg.std[c] = 1;
    return cfg;
}

// Redirects stderr (fd 2) to a file until text() is called.
struct StderrCapture {
    std::string path;
    int saved;
    explicit StderrCapture(const std::string& p) : path(p) {
        std::fflush(stderr);
        saved = dup(2);
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        close(fd);
    }
    std::string text() {
        std::fflush(stderr);
        dup2(saved, 2);
        close(saved);
        std::stringstream ss;
        ss << std::ifstream(path).rdbuf();
        return ss.str();
    }
};

int count_of(const std::string& s, const std::string& sub) {
    int n = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + 1)) n++;
    return n;
}

}  // namespace

TEST_CASE("image_folder: scan sorts classes and files, matches extensions in any case, ignores the rest") {
    TempFolder tmp;
    std::string d = tmp.path, t = d + "/train";
    Image img = solid(6, 5, 200, 100, 50);
    write_image(t + "/zebra/b.jpg", img);
    write_image(t + "/zebra/a.PNG", img);
    write_image(t + "/ant/x.JpEg", img);
    write_image(t + "/ant/y.bmp", img);
    write_image(t + "/Moose/m.png", img);
    write_text(t + "/ant/notes.txt", "not an image");
    write_image(t + "/ant/.hidden.png", img);
    write_image(t + "/ant/nested/deep.png", img);   // class folders are not searched recursively
    write_image(t + "/.cache/c.png", img);          // dot-folders are not classes
    write_text(t + "/README", "loose file beside the class folders");

    ImageFolder f = image_folder_scan(d + "/", "train");
    CHECK(f.root == t);
    CHECK(f.classes == std::vector<std::string>{"Moose", "ant", "zebra"});
    CHECK(f.paths == std::vector<std::string>{t + "/Moose/m.png", t + "/ant/x.JpEg", t + "/ant/y.bmp",
                                              t + "/zebra/a.PNG", t + "/zebra/b.jpg"});
    CHECK(f.labels == std::vector<int>{0, 1, 1, 2, 2});
}

TEST_CASE("image_folder: splits use val/, else test/, and refuse differing classes") {
    TempFolder tmp;
    std::string d = tmp.path;
    make_split(d, "train", {3, 2});
    make_split(d, "test", {1, 1});
    FolderSplits s = image_folder_splits(d);
    CHECK(s.train.paths.size() == 5);
    CHECK(s.val.root == d + "/test");
    CHECK(s.val.labels == std::vector<int>{0, 1});
    CHECK(s.note == "no val/ in '" + d + "': using its test/ as val");

    make_split(d, "val", {2, 1});
    s = image_folder_splits(d);
    CHECK(s.val.root == d + "/val");
    CHECK(s.val.paths.size() == 3);
    CHECK(s.note.empty());

    write_image(d + "/val/c9/x.png", solid(4, 4, 0, 0, 0));
    CHECK(error_of([&] { image_folder_splits(d); }) ==
          "'" + d + "/train' has 2 class folders and '" + d + "/val' has 3, not the same ones ('c9' is only in '" + d +
              "/val'); expected the same class folders in both");
}

TEST_CASE("image_folder: the held-out val is seeded, stratified and disjoint from train") {
    TempFolder tmp;
    std::string d = tmp.path;
    make_split(d, "train", {10, 1, 5, 3}, 2);
    FolderSplits a = image_folder_splits(d, 0.2f, 7), b = image_folder_splits(d, 0.2f, 7), c = image_folder_splits(d, 0.2f, 8);
    CHECK(a.train.paths == b.train.paths);
    CHECK(a.val.paths == b.val.paths);
    CHECK(a.val.paths != c.val.paths);  // another seed, another pick
    CHECK(a.val.root == d + "/train");
    CHECK(a.val.classes == a.train.classes);
    // round(0.2 n) per class, at least 1 and leaving at least 1: 10 -> 2, 1 -> 0, 5 -> 1, 3 -> 1.
    std::vector<int> per_class(4, 0);
    for (int l : a.val.labels) per_class[l]++;
    CHECK(per_class == std::vector<int>{2, 0, 1, 1});
    std::set<std::string> seen(a.train.paths.begin(), a.train.paths.end());
    for (const std::string& p : a.val.paths) CHECK(seen.insert(p).second);
    CHECK(seen.size() == 19);
    CHECK(a.train.paths.size() + a.val.paths.size() == 19);
    CHECK(std::is_sorted(a.val.paths.begin(), a.val.paths.end()));
    CHECK(a.note == "no val/ or test/ in '" + d +
                        "': held out 20% of train/ as val (4 of 19 images, stratified by class, seed 7)");
}

TEST_CASE("image_folder: bad folders are refused with messages naming them") {
    TempFolder tmp;
    std::string d = tmp.path;
    CHECK(error_of([&] { image_folder_splits(d + "/nope"); }) == "dataset folder '" + d + "/nope' does not exist");
    write_text(d + "/file", "x");
    CHECK(error_of([&] { image_folder_splits(d + "/file"); }) ==
          "dataset folder '" + d + "/file' is not a folder (expected DIR with DIR/train/<class>/*.jpg)");

    std::string e = d + "/empty";  // an empty folder
    fs::create_directories(e);
    CHECK(error_of([&] { image_folder_splits(e); }) ==
          "dataset folder '" + e + "' has no train/ folder (expected " + e +
              "/train/<class>/ folders of .jpg/.jpeg/.png/.bmp images, and optionally " + e + "/val/<class>/)");
    CHECK(error_of([&] { image_folder_scan(e, "val"); }) ==
          "'" + e + "/val' does not exist (expected " + e + "/val/<class>/ folders of .jpg/.jpeg/.png/.bmp images)");

    std::string flat = d + "/flat";  // class folders directly in DIR
    write_image(flat + "/cat/1.png", solid(4, 4, 1, 2, 3));
    CHECK(has(error_of([&] { image_folder_splits(flat); }),
              "has no train/ folder (expected " + flat + "/train/<class>/ folders of .jpg/.jpeg/.png/.bmp images, and "
              "optionally " + flat + "/val/<class>/); it holds class folders directly (e.g. 'cat'): move them into '" +
              flat + "/train/'"));

    fs::create_directories(e + "/train");  // train/ without class folders
    CHECK(error_of([&] { image_folder_splits(e); }) ==
          "'" + e + "/train' has no class folders (expected " + e + "/train/<class>/ folders of .jpg/.jpeg/.png/.bmp images)");
    write_image(e + "/train/loose.png", solid(4, 4, 1, 2, 3));
    CHECK(has(error_of([&] { image_folder_splits(e); }), "; it holds 1 image file(s) directly: put them in one folder per class"));

    std::string noimg = d + "/noimg";  // a class folder without images
    write_image(noimg + "/train/cat/1.png", solid(4, 4, 1, 2, 3));
    write_text(noimg + "/train/dog/readme.txt", "dogs go here");
    CHECK(error_of([&] { image_folder_splits(noimg); }) ==
          "class folder '" + noimg + "/train/dog' has no images (.jpg/.jpeg/.png/.bmp)");
    fs::create_directories(noimg + "/val/cat");
    fs::create_directories(noimg + "/val/dog");
    CHECK(error_of([&] { image_folder_scan(noimg, "val"); }) ==
          "class folder '" + noimg + "/val/cat' has no images (.jpg/.jpeg/.png/.bmp)");

    std::string single = d + "/single";  // nothing to hold out
    write_image(single + "/train/a/1.png", solid(4, 4, 1, 2, 3));
    write_image(single + "/train/b/1.png", solid(4, 4, 1, 2, 3));
    CHECK(has(error_of([&] { image_folder_splits(single); }), "too small to hold one out"));
    CHECK(error_of([&] { image_folder_splits(single, 1.5f); }) == "holdout fraction 1.5 (expected 0 < holdout < 1)");

    ImageFolder f = image_folder_scan(single, "train");
    LoaderConfig cfg = plain_config(4, 8, true);
    CHECK(error_of([&] { BatchLoader l(f, cfg); }) ==
          "'" + single + "/train' has 2 images, fewer than one batch of 8 (lower the batch size)");
    cfg.batch = 0;
    CHECK(error_of([&] { BatchLoader l(f, cfg); }) == "loader: batch size 0 (expected >= 1)");
    ImageFolder none;
    none.root = "somewhere";
    CHECK(error_of([&] { BatchLoader l(none, plain_config(4, 1, true)); }) == "'somewhere' has no images to load");
}

TEST_CASE("image_folder: eval batches have the documented shapes, labels, normalisation and recipe") {
    TempFolder tmp;
    std::string d = tmp.path;
    make_split(d, "val", {4, 3});
    ImageFolder f = image_folder_scan(d, "val");
    LoaderConfig cfg = plain_config(8, 3, false);
    cfg.mean[0] = 0.5f, cfg.mean[1] = 0.25f, cfg.mean[2] = 0.f;
    cfg.std[0] = 0.5f, cfg.std[1] = 2.f, cfg.std[2] = 0.25f;
    cfg.drop_last = true;  // ignored in eval: every image is scored
    BatchLoader loader(f, cfg);
    CHECK(loader.batches_per_epoch() == 3);
    Epoch e = run_epoch(loader, cfg, 0);
    CHECK(e.counts == std::vector<int>{3, 3, 1});
    CHECK(e.labels == std::vector<float>{0, 0, 0, 0, 1, 1, 1});
    const int HW = 8 * 8;
    for (int r = 0; r < 7; r++) {  // solid grey 10 + 20 r in folder order, normalised per channel
        float v = (10 + 20 * r) / 255.f;
        const float* img = e.images.data() + r * 3 * HW;
        for (int c = 0; c < 3; c++) {
            float want = (v - cfg.mean[c]) / cfg.std[c];
            CHECK(std::fabs(img[c * HW] - want) < 1e-6f);
            CHECK(std::fabs(img[c * HW + HW - 1] - want) < 1e-6f);
        }
    }
    Epoch again = run_epoch(loader, cfg, 5);  // eval does not depend on the epoch
    CHECK(again.images == e.images);

    // The recipe on a non-square, non-uniform image: short side to lround(8 * 1.15) = 9, centre 8x8.
    Image grad;
    grad.H = 12, grad.W = 20;
    for (int i = 0; i < 12 * 20; i++) grad.rgb.insert(grad.rgb.end(), {(uint8_t)(i % 20 * 12), (uint8_t)(i / 20 * 20), 77});
    write_image(d + "/g/val/only/g.png", grad);
    ImageFolder g = image_folder_scan(d + "/g", "val");
    BatchLoader one(g, cfg);
    Epoch ge = run_epoch(one, cfg, 0);
    std::vector<float> want(3 * HW);
    image_to_chw(want.data(), image_center_crop(image_resize_short_side(grad, 9), 8, 8), cfg.mean, cfg.std);
    CHECK(ge.images == want);
}

TEST_CASE("image_folder: train shuffling is seeded, per-epoch, and independent of the thread count") {
    TempFolder tmp;
    std::string d = tmp.path;
    make_split(d, "train", {5, 4, 4}, 6);  // 13 images
    ImageFolder f = image_folder_scan(d, "train");
    LoaderConfig cfg = plain_config(5, 4, true);
    cfg.seed = 3;
    cfg.threads = 1;
    BatchLoader a(f, cfg);
    cfg.threads = 3, cfg.depth = 2;
    BatchLoader b(f, cfg);
    CHECK(a.batches_per_epoch() == 3);  // drop_last: 13 / 4
    Epoch a0 = run_epoch(a, cfg, 0), b0 = run_epoch(b, cfg, 0), a1 = run_epoch(a, cfg, 1);
    CHECK(a0.counts == std::vector<int>{4, 4, 4});
    CHECK(a0.images == b0.images);  // same crops, flips and order with 1 or 3 threads
    CHECK(a0.labels == b0.labels);
    std::vector<int> g0 = greys(a0, 5), g1 = greys(a1, 5);
    CHECK(g0 != g1);  // reshuffled each epoch
    CHECK(std::set<int>(g0.begin(), g0.end()).size() == 12);  // each image at most once
    for (size_t r = 0; r < g0.size(); r++) {  // images 0-4 are class 0, 5-8 class 1, 9-12 class 2
        int v = (g0[r] - 10) / 20;
        CHECK(a0.labels[r] == (v < 5 ? 0 : v < 9 ? 1 : 2));
    }
    std::vector<int> sorted = g0;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted != g0);  // shuffled, not folder order

    Epoch a0_again = run_epoch(a, cfg, 0);  // an epoch replays exactly
    CHECK(a0_again.images == a0.images);
    cfg.seed = 4;
    BatchLoader c(f, cfg);
    CHECK(greys(run_epoch(c, cfg, 0), 5) != g0);

    cfg.drop_last = false;
    BatchLoader all(f, cfg);
    Epoch e = run_epoch(all, cfg, 0);
    CHECK(e.counts == std::vector<int>{4, 4, 4, 1});
    std::vector<int> g = greys(e, 5);
    CHECK(std::set<int>(g.begin(), g.end()).size() == 13);
}

TEST_CASE("image_folder: train crops are windows of the resized image, flipped half the time") {
    TempFolder tmp;
    std::string d = tmp.path;
    Image ramp;  // 10 x 10, red rises along x
    ramp.H = ramp.W = 10;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 10; x++) ramp.rgb.insert(ramp.rgb.end(), {(uint8_t)(x * 25), 0, 0});
    for (int i = 0; i < 40; i++) write_image(d + "/train/a/" + std::to_string(100 + i) + ".png", ramp);
    ImageFolder f = image_folder_scan(d, "train");
    LoaderConfig cfg = plain_config(8, 40, true);  // resized to 9 x 9, 2 x 2 possible windows
    BatchLoader loader(f, cfg);
    Epoch e = run_epoch(loader, cfg, 0);
    Image big = image_resize_short_side(ramp, 9);
    int flipped = 0;
    std::set<int> lefts;
    for (int r = 0; r < 40; r++) {
        const float* red = e.images.data() + r * 3 * 64;
        bool flip = red[0] > red[7];
        flipped += flip;
        int found = -1;
        for (int left = 0; left < 2; left++) {
            bool same = true;
            for (int x = 0; x < 8; x++) {
                int sx = left + (flip ? 7 - x : x);
                same = same && std::lround(red[x] * 255) == big.rgb[sx * 3];
            }
            if (same) found = left;
        }
        CHECK(found >= 0);
        lefts.insert(found);
    }
    CHECK(flipped > 5);
    CHECK(flipped < 35);
    CHECK(lefts.size() == 2);

    cfg.crop_scale_min = 0.35f;  // random-resized crop: still S x S, still finite
    BatchLoader rrc(f, cfg);
    Epoch r = run_epoch(rrc, cfg, 0);
    CHECK(r.images.size() == 40 * 3 * 64);
    for (float v : r.images) CHECK(std::isfinite(v));
}

TEST_CASE("image_folder: a corrupt JPEG among good ones is skipped with one warning") {
    TempFolder tmp;
    std::string d = tmp.path;
    make_split(d, "train", {4, 4});
    write_image(d + "/train/c1/good.jpg", solid(8, 8, 90, 90, 90));
    std::string bad = d + "/train/c0/broken.jpg";
    write_text(bad, "\xff\xd8\xff\xe0 this JPEG stops here");
    ImageFolder f = image_folder_scan(d, "train");
    REQUIRE(f.paths.size() == 10);

    LoaderConfig cfg = plain_config(6, 5, true);
    StderrCapture cap(d + "/stderr.txt");
    BatchLoader loader(f, cfg);
    Epoch e0 = run_epoch(loader, cfg, 0), e1 = run_epoch(loader, cfg, 1);
    std::string err = cap.text();
    CHECK(loader.skipped() == 1);
    CHECK(e0.counts == std::vector<int>{5, 5});  // the corrupt file's place is taken by another image
    CHECK(e1.counts == std::vector<int>{5, 5});
    CHECK(count_of(err, "\n") == 1);  // one line, however many epochs meet the file
    CHECK(count_of(err, bad) == 1);
    CHECK(has(err, "warning: skipping an unreadable image (1 so far): cannot read image '" + bad + "'"));

    cfg.train = false;  // eval leaves it out instead, so every readable image is scored once
    StderrCapture cap2(d + "/stderr2.txt");
    BatchLoader val(f, cfg);
    Epoch v = run_epoch(val, cfg, 0);
    CHECK(count_of(cap2.text(), bad) == 1);
    CHECK(val.skipped() == 1);
    int total = 0;
    for (int c : v.counts) total += c;
    CHECK(total == 9);
    CHECK(v.labels.size() == 9);
}

TEST_CASE("image_folder: a folder of unreadable images fails in next(), and loaders stop mid-epoch") {
    TempFolder tmp;
    std::string d = tmp.path;
    for (int i = 0; i < 3; i++) write_text(d + "/train/a/" + std::to_string(i) + ".png", "not a png");
    ImageFolder f = image_folder_scan(d, "train");
    LoaderConfig cfg = plain_config(4, 2, true);
    StderrCapture cap(d + "/stderr.txt");
    {
        BatchLoader loader(f, cfg);
        std::vector<float> images(2 * 3 * 16), labels(2);
        int count = 0;
        loader.start_epoch(0);
        CHECK(has(error_of([&] { loader.next(images.data(), labels.data(), &count); }),
                  "'" + d + "/train': no readable image found in 100 random draws (3 of 3 files unreadable so far)"));
    }
    CHECK(count_of(cap.text(), "warning: skipping") == 3);

    make_split(d + "/ok", "train", {20, 20}, 4);
    ImageFolder g = image_folder_scan(d + "/ok", "train");
    cfg.threads = 3;
    for (int round = 0; round < 3; round++) {  // take one batch, then restart or destroy mid-epoch
        BatchLoader loader(g, cfg);
        std::vector<float> images(2 * 3 * 16), labels(2);
        int count = 0;
        loader.start_epoch(0);
        CHECK(loader.next(images.data(), labels.data(), &count));
        loader.start_epoch(1);
        CHECK(loader.next(images.data(), labels.data(), &count));
        CHECK(count == 2);
    }
}
