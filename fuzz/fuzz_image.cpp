// fuzz_image.cpp: libFuzzer target for image decoding and the geometry after it (`make fuzz`).
//
// Each input is decoded with a 65536-pixel limit (larger headers are refused up front, as a
// decompression bomb would be); whatever decodes is resized, cropped and normalised with sizes
// drawn from the input. Bad input must end in vt::Error; a crash, a sanitizer report, a leak,
// a timeout or an out-of-memory is a finding.
//
// The decoder is compiled here from the same <stb/stb_image.h> that libstb is built from
// (Debian's libstb-dev), so the sanitizers and libFuzzer's coverage see inside it: the
// executable's definitions take precedence over libstb.so's, and engine/io/image.cpp's calls bind
// to them. (The engine itself links libstb and never defines STB_IMAGE_IMPLEMENTATION.) This is
// how the stb_image 2.27 Huffman-table overflow guarded in engine/io/image.cpp was found.
//
// Seeds (fuzz/corpus/fuzz_image): small images written by stb_image_write (RGB and grey
// JPEG, RGB and grey+alpha PNG, BMP) and hand-made PNGs (palette with tRNS, 16-bit RGB,
// 1-bit grey, Adam7-interlaced).
#include <algorithm>

#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include "engine/io/image.h"

using namespace vt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    Image img;
    try {
        img = image_decode(data, n, "fuzz.img", 1 << 16);
    } catch (const Error&) {
        return 0;
    }
    int h = 1 + data[n - 1] % 64, w = 1 + data[n / 2] % 64;
    try {
        Image r = image_resize(img, h, w);
        Image c = image_center_crop(img, std::min(img.H, h), std::min(img.W, w));
        std::vector<float> chw((size_t)3 * c.H * c.W);
        const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
        image_to_chw(chw.data(), c, mean, stdv);
        Image s = image_resize_short_side(img, 1 + (int)(n % 48));  // may refuse an extreme aspect ratio
    } catch (const Error&) {
    }
    return 0;
}
