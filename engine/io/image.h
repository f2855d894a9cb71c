// image.h: 8-bit RGB images: decoding (stb_image), resizing, cropping, and conversion to
// the normalised (3, H, W) float planes a network reads.
//
// Decoding accepts JPEG, PNG and BMP (stb_image's other formats are refused: they are not
// dataset formats and carry most of its known decoder bugs). Every channel count becomes
// RGB (grey is replicated, alpha dropped). The size is read from the header before anything
// is decoded, and images above the pixel limit are refused (decompression bombs), as are
// images whose decoding would need more memory than the process may use (mem_check). JPEG
// segments are checked first: no end-of-image marker means truncated, and Huffman tables
// that would overflow stb_image 2.27's buffers are refused.
//
// Functions take raw pointers and std types only: this file depends on engine/common.* and
// engine/io/npy.* (whole-file I/O), not on the tensor engine, so the fuzz targets link it alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/common.h"

namespace vt {

constexpr int IMAGE_MAX_SIDE = 16384;              // largest width or height accepted
constexpr int64_t IMAGE_MAX_PIXELS = 1LL << 28;    // largest W*H accepted by default

struct Image {
    int H = 0, W = 0;
    std::vector<uint8_t> rgb;  // (H, W, 3) interleaved, row-major
};

// What an image file's header says, checked as image_decode checks it, without decoding.
struct ImageInfo {
    int W = 0, H = 0, channels = 0;
    const char* format = "";       // "JPEG", "PNG", "BMP"
    int64_t decode_bytes = 0;      // memory image_decode needs at its peak (mem_check'd there)
};

Image image_load(const std::string& path);          // "cannot read image 'X': <reason>" on failure
ImageInfo image_info(const std::string& path);      // the header only (./bin/inspect)
ImageInfo image_probe(const uint8_t* data,          // an encoded JPEG/PNG/BMP file in memory
                      size_t n,                     // its length in bytes
                      const std::string& what,      // file name, for messages
                      int64_t max_pixels = IMAGE_MAX_PIXELS);  // refuse larger images
Image image_decode(const uint8_t* data,             // an encoded JPEG/PNG/BMP file in memory
                   size_t n,                        // its length in bytes
                   const std::string& what,         // file name, for messages
                   int64_t max_pixels = IMAGE_MAX_PIXELS);  // refuse larger images

Image image_resize(const Image& img,                // bilinear (pixel centres aligned, as
                   int H, int W);                   // PIL/torchvision); area average along an
                                                    // axis shrunk by more than 2x
Image image_center_crop(const Image& img,           // the central H x W window; the top-left
                        int H, int W);              // corner is floor((img.H - H) / 2), ...
Image image_resize_short_side(const Image& img,     // short side to S, long side to
                              int S);               // floor(S * long / short), as torchvision

void image_to_chw(float* out,                       // (3, H, W) = (rgb / 255 - mean[c]) / std[c]
                  const Image& img,                 // (H, W, 3) source
                  const float mean[3],              // per-channel mean, on the 0..1 scale
                  const float std[3]);              // per-channel std, on the 0..1 scale

void image_write_png(const std::string& path,       // written as path.tmp.<pid>, fsynced, renamed
                     const Image& img);

}  // namespace vt
