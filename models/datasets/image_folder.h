// image_folder.h: ImageNet-style image-classification folders and a multi-threaded batch
// loader for ./bin/pretrain.
//
// Layout: DIR/train/<class>/*.{jpg,jpeg,png,bmp} and DIR/val/<class>/... (DIR/test/ serves
// as val when there is no val/; with neither, a seeded stratified fraction of train/ is
// held out). DIR/train/ is required: a DIR that holds class folders directly is refused
// with a message saying to move them into DIR/train/. Class folders are sorted by name and
// numbered from 0; files within a class are sorted by name; extensions are matched without
// regard to case; other files, dot-files and dot-folders are ignored; class folders are
// not searched recursively. A class folder without images is an error, not a warning.
//
// Sizes: B = batch, S = LoaderConfig.size (output height = width).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vt {

struct ImageFolder {
    std::string root;                 // the folder whose class folders were scanned (DIR/train, DIR/val)
    std::vector<std::string> classes; // sorted class folder names; label = index
    std::vector<std::string> paths;   // every image file, by class then by name
    std::vector<int> labels;          // (paths.size(),) class index per image
};

// Scans dir/split/<class>/. Fails (naming the folder) when dir/split is missing, has no
// class folders, or has a class folder without images.
ImageFolder image_folder_scan(const std::string& dir,     // dataset root DIR
                              const std::string& split);  // "train", "val", "test"

struct FolderSplits {
    ImageFolder train, val;
    std::string note;                 // non-empty when val is not DIR/val: says where it came from
};

// train = DIR/train; val = DIR/val, else DIR/test, else a held-out part of DIR/train: in
// every class, round(holdout * n) of its n images (at least 1, leaving at least 1), picked
// by a shuffle seeded with (seed, class index). The val classes must equal the train ones.
FolderSplits image_folder_splits(const std::string& dir,  // dataset root DIR
                                 float holdout = 0.1f,    // fraction held out when there is no val/ or test/
                                 uint64_t seed = 0);      // seed of the held-out pick

// Augmentation, with R = lround(S * LOADER_RESIZE_RATIO) (S=32 -> 37, S=64 -> 74, S=224 -> 258):
//   eval:  resize the short side to R (bilinear; small images are upscaled), centre crop S x S.
//   train: resize the short side to R, take a uniformly placed S x S crop, flip horizontally
//          with probability 1/2. With crop_scale_min > 0 the crop is instead ImageNet's
//          random-resized crop: a window of area fraction in [crop_scale_min, 1] and aspect
//          ratio in [3/4, 4/3] (log-uniform) of the original image, resized to S x S.
constexpr float LOADER_RESIZE_RATIO = 1.15f;

struct LoaderConfig {
    int size = 64;                    // S: output height = width
    bool train = true;                // augment and shuffle (else: centre crop, folder order)
    float mean[3] = {0.485f, 0.456f, 0.406f};  // per-channel normalisation on the 0..1 scale
    float std[3] = {0.229f, 0.224f, 0.225f};   // (ImageNet statistics by default)
    int threads = 2;                  // decoding threads; each decodes whole images
    int batch = 64;                   // B
    uint64_t seed = 0;                // shuffle, crops and flips depend only on (seed, epoch, position)
    bool drop_last = true;            // train only: drop the last short batch; eval keeps every image
    float crop_scale_min = 0.f;       // train: > 0 turns on the random-resized crop (e.g. 0.35)
    int depth = 3;                    // prepared batches held ahead of the caller
    // Data-parallel training (train only, drop_last, batch % shards == 0): this loader yields
    // rows [shard * batch / shards, (shard + 1) * batch / shards) of every batch of `batch`,
    // each image exactly as an unsharded loader makes it (same order, crops and flips), so
    // the shards of all ranks together are the unsharded batch.
    int shards = 1, shard = 0;
};

// Worker threads decode and augment the next `depth` batches while the caller trains on
// the current one; next() copies a finished batch out, in order. Results do not depend on
// the number of threads or their timing. One caller thread drives start_epoch and next().
//
// An unreadable image prints one warning line naming it (once per file, however many
// epochs) and counts in skipped(). In train mode its place in the batch is taken by a
// randomly chosen readable image, so batches stay full; in eval mode it is left out (the
// batch is shorter), so every readable image is scored once. A worker that cannot find a
// readable image in 100 draws fails; the error is rethrown by next().
struct LoaderState;
struct BatchLoader {
    BatchLoader(const ImageFolder& data, const LoaderConfig& cfg);  // starts the threads
    ~BatchLoader();                                                 // stops and joins them
    BatchLoader(const BatchLoader&) = delete;
    BatchLoader& operator=(const BatchLoader&) = delete;

    // Begins epoch `epoch` (train: shuffled by (seed, epoch)), abandoning any batches of the
    // previous one not yet taken.
    void start_epoch(int epoch);
    // false at the end of the epoch; else fills the first *count rows of (B = batch / shards)
    bool next(float* images,          // (B, 3, S, S) normalised pixels
              float* labels,          // (B,) class index as float
              int* count);            // rows filled: B, less for eval's last or skipping batches
    int64_t batches_per_epoch() const;  // train: N / B (drop_last) or ceil(N / B); eval: ceil(N / B),
                                        // less any batch of only unreadable images, which next() passes over
    int64_t skipped() const;          // distinct unreadable files met so far

  private:
    std::unique_ptr<LoaderState> s;
};

}  // namespace vt
