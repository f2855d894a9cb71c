// image.cpp: image decoding (stb_image from libstb), resizing, cropping, normalisation and
// PNG writing (stb_image_write from libstb). See image.h.
#include "engine/io/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>

#include "engine/io/npy.h"  // file_read_all, file_write_atomic

namespace vt {
namespace {

enum class Format { Unknown, JPEG, PNG, BMP };

// The format from the magic bytes. stb_image tries its decoders in turn; none of the others
// (GIF, PSD, PIC, PNM, HDR, TGA) accepts data that starts like these three, so sniffing
// first keeps every other decoder out of reach.
Format image_sniff(const uint8_t* d, size_t n) {
    if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff) return Format::JPEG;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return Format::PNG;
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return Format::BMP;
    return Format::Unknown;
}

// Walks a JPEG's marker segments up to its end-of-image marker (EOI). Returns "" when they
// hold together, else what is wrong. Two things are checked before stb_image sees the data:
//  - the end is there: stb_image decodes a cut-off JPEG without complaint (grey below the cut);
//  - each Huffman table (DHT) has at most 256 codes: stb_image 2.27 (Debian's libstb) trusts
//    the 16 code counts and writes past its tables when they sum above 256 (a heap overflow
//    found by fuzz/fuzz_image.cpp; upstream 2.28 rejects such tables).
// Stray bytes between segments are skipped, as stb_image and libjpeg do.
std::string jpeg_check(const uint8_t* d, size_t n) {
    const std::string truncated = "truncated JPEG (no end-of-image marker after the last scan)";
    size_t i = 2;  // after SOI
    for (;;) {
        while (i < n && d[i] != 0xff) i++;
        while (i < n && d[i] == 0xff) i++;  // fill bytes
        if (i >= n) return truncated;
        uint8_t m = d[i++];
        if (m == 0xd9) return "";                             // EOI
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) continue;  // TEM, RSTn: no length field
        if (n - i < 2) return truncated;
        size_t len = (size_t)d[i] << 8 | d[i + 1];
        if (len < 2) return strfmt("corrupt JPEG (segment 0xff%02x at offset %zu has length %zu)", m, i - 2, len);
        if (len > n - i) return truncated;
        for (size_t p = i + 2, end = i + len; m == 0xc4 && p < end;) {  // DHT: tables of 1 + 16 + codes bytes
            size_t codes = 0;
            for (size_t k = 1; k <= 16 && p + k < end; k++) codes += d[p + k];
            if (end - p < 17 || codes > 256 || end - p - 17 < codes)
                return strfmt("corrupt JPEG (Huffman table at offset %zu: %zu codes in %zu bytes; at most 256 codes)", p,
                              codes, end - p);
            p += 17 + codes;
        }
        i += len;
        if (m == 0xda)  // entropy-coded data: up to a marker that is not a stuffed 00 or a restart
            while (i < n && !(d[i] == 0xff && i + 1 < n && d[i + 1] != 0 && (d[i + 1] < 0xd0 || d[i + 1] > 0xd7))) i++;
    }
}

const char* stb_reason() {
    const char* r = stbi_failure_reason();
    return r ? r : "unknown decoder error";
}

// For each output index along one axis, the input indices and weights (summing to 1) that
// make it: bilinear with pixel centres aligned, or the area average when shrinking > 2x.
struct Taps {
    std::vector<int> first, count;  // (out,)  taps of output o: idx/w[first[o] .. first[o] + count[o])
    std::vector<int> idx;
    std::vector<float> w;
};

Taps resize_taps(int in, int out) {
    Taps t;
    double scale = (double)in / out;
    for (int o = 0; o < out; o++) {
        t.first.push_back((int)t.idx.size());
        if (scale > 2) {
            double a = o * scale, b = (o + 1) * scale;
            for (int i = (int)a; i < in && i < b; i++) {
                double cover = std::min<double>(b, i + 1) - std::max<double>(a, i);
                if (cover > 0) t.idx.push_back(i), t.w.push_back((float)(cover / scale));
            }
        } else {
            double x = std::min<double>(std::max((o + 0.5) * scale - 0.5, 0.0), in - 1);
            int i0 = (int)x;
            double f = x - i0;
            t.idx.push_back(i0), t.w.push_back((float)(1 - f));
            if (f > 0) t.idx.push_back(std::min(i0 + 1, in - 1)), t.w.push_back((float)f);
        }
        t.count.push_back((int)t.idx.size() - t.first.back());
    }
    return t;
}

void check_image(const Image& img, const char* fn) {
    CHECK(img.H > 0 && img.W > 0 && img.rgb.size() == (size_t)img.H * img.W * 3,
          "%s: malformed Image %dx%d holding %zu bytes (expected H*W*3)", fn, img.H, img.W, img.rgb.size());
}

}  // namespace

ImageInfo image_probe(const uint8_t* data, size_t n, const std::string& what, int64_t max_pixels) {
    const char* name = what.c_str();
    if (n == 0) fail("cannot read image '%s': the file is empty", name);
    Format fmt = image_sniff(data, n);
    if (fmt == Format::Unknown) {
        std::string head;
        for (size_t i = 0; i < n && i < 8; i++) head += strfmt("%02x", data[i]);
        fail("cannot read image '%s': unknown image type (expected JPEG, PNG or BMP; file starts 0x%s)", name,
             head.c_str());
    }
    if (n > INT_MAX) fail("cannot read image '%s': %zu bytes is beyond stb_image's 2 GiB limit", name, n);
    if (fmt == Format::JPEG) {
        std::string bad = jpeg_check(data, n);
        if (!bad.empty()) fail("cannot read image '%s': %s", name, bad.c_str());
    }
    ImageInfo info;
    info.format = fmt == Format::JPEG ? "JPEG" : fmt == Format::PNG ? "PNG" : "BMP";
    if (!stbi_info_from_memory(data, (int)n, &info.W, &info.H, &info.channels))
        fail("cannot read image '%s': %s", name, stb_reason());
    if (info.W <= 0 || info.H <= 0 || info.W > IMAGE_MAX_SIDE || info.H > IMAGE_MAX_SIDE ||
        (int64_t)info.W * info.H > max_pixels)
        fail("cannot read image '%s': its header says width %d, height %d, beyond the limit of %d per side and %lld pixels "
             "in all (corrupt, or a decompression bomb)", name, info.W, info.H, IMAGE_MAX_SIDE, (long long)max_pixels);
    // What decoding holds at its peak: stb_image's decoded and converted buffers (16-bit PNGs
    // at two bytes a channel, and zlib's raw rows before that) and our RGB copy.
    const int64_t depth = stbi_is_16_bit_from_memory(data, (int)n) ? 2 : 1;
    info.decode_bytes = (int64_t)info.W * info.H * (2 * info.channels * depth + 6);
    return info;
}

Image image_decode(const uint8_t* data, size_t n, const std::string& what, int64_t max_pixels) {
    const char* name = what.c_str();
    ImageInfo info = image_probe(data, n, what, max_pixels);
    const int w = info.W, h = info.H;
    mem_check(strfmt("image '%s' (%s, %d x %d, %d channels) to decode", name, info.format, w, h, info.channels),
              (uint64_t)info.decode_bytes);
    int w2 = 0, h2 = 0, comp = 0;
    uint8_t* px = stbi_load_from_memory(data, (int)n, &w2, &h2, &comp, 3);
    if (!px) fail("cannot read image '%s': %s", name, stb_reason());
    Image img;
    img.H = h2, img.W = w2;
    if (w2 == w && h2 == h) img.rgb.assign(px, px + (size_t)w * h * 3);
    stbi_image_free(px);
    if (w2 != w || h2 != h)
        fail("cannot read image '%s': header says %dx%d, decoder produced %dx%d", name, w, h, w2, h2);
    return img;
}

Image image_load(const std::string& path) {
    struct stat st;
    if (access(path.c_str(), R_OK) != 0 || stat(path.c_str(), &st) != 0)
        fail("cannot read image '%s': %s", path.c_str(), strerror(errno));
    if (S_ISDIR(st.st_mode)) fail("cannot read image '%s': %s", path.c_str(), strerror(EISDIR));
    std::vector<uint8_t> d = file_read_all(path);
    return image_decode(d.data(), d.size(), path);
}

ImageInfo image_info(const std::string& path) {
    struct stat st;
    if (access(path.c_str(), R_OK) != 0 || stat(path.c_str(), &st) != 0)
        fail("cannot read image '%s': %s", path.c_str(), strerror(errno));
    if (S_ISDIR(st.st_mode)) fail("cannot read image '%s': %s", path.c_str(), strerror(EISDIR));
    std::vector<uint8_t> d = file_read_all(path);
    return image_probe(d.data(), d.size(), path);
}

Image image_resize(const Image& img, int H, int W) {
    check_image(img, "image_resize");
    CHECK(H > 0 && W > 0, "image_resize: target %dx%d (expected positive sizes)", H, W);
    Taps tx = resize_taps(img.W, W), ty = resize_taps(img.H, H);
    std::vector<float> tmp((size_t)img.H * W * 3);  // (img.H, W, 3) after the horizontal pass
    for (int y = 0; y < img.H; y++) {
        const uint8_t* src = img.rgb.data() + (size_t)y * img.W * 3;
        float* dst = tmp.data() + (size_t)y * W * 3;
        for (int x = 0; x < W; x++) {
            float acc[3] = {0, 0, 0};
            for (int k = tx.first[x]; k < tx.first[x] + tx.count[x]; k++)
                for (int c = 0; c < 3; c++) acc[c] += tx.w[k] * src[tx.idx[k] * 3 + c];
            for (int c = 0; c < 3; c++) dst[x * 3 + c] = acc[c];
        }
    }
    Image out;
    out.H = H, out.W = W;
    out.rgb.resize((size_t)H * W * 3);
    for (int y = 0; y < H; y++) {
        uint8_t* dst = out.rgb.data() + (size_t)y * W * 3;
        for (int i = 0; i < W * 3; i++) {
            float acc = 0;
            for (int k = ty.first[y]; k < ty.first[y] + ty.count[y]; k++) acc += ty.w[k] * tmp[(size_t)ty.idx[k] * W * 3 + i];
            dst[i] = (uint8_t)std::min(255.f, std::max(0.f, std::floor(acc + 0.5f)));
        }
    }
    return out;
}

Image image_center_crop(const Image& img, int H, int W) {
    check_image(img, "image_center_crop");
    if (H <= 0 || W <= 0 || H > img.H || W > img.W)
        fail("image_center_crop: a %dx%d crop does not fit in a %dx%d image (resize it first, e.g. with "
             "image_resize_short_side)", H, W, img.H, img.W);
    int top = (img.H - H) / 2, left = (img.W - W) / 2;
    Image out;
    out.H = H, out.W = W;
    out.rgb.resize((size_t)H * W * 3);
    for (int y = 0; y < H; y++)
        memcpy(out.rgb.data() + (size_t)y * W * 3, img.rgb.data() + ((size_t)(top + y) * img.W + left) * 3, (size_t)W * 3);
    return out;
}

Image image_resize_short_side(const Image& img, int S) {
    check_image(img, "image_resize_short_side");
    CHECK(S > 0, "image_resize_short_side: short side %d (expected > 0)", S);
    int shorter = std::min(img.H, img.W), longer = std::max(img.H, img.W);
    int64_t new_long = std::max<int64_t>(1, (int64_t)S * longer / shorter);
    if (new_long > IMAGE_MAX_SIDE)
        fail("image_resize_short_side: %dx%d with short side %d would be %lld pixels long (limit %d)", img.H, img.W,
             S, (long long)new_long, IMAGE_MAX_SIDE);
    return img.H <= img.W ? image_resize(img, S, (int)new_long) : image_resize(img, (int)new_long, S);
}

void image_to_chw(float* out, const Image& img, const float mean[3], const float std[3]) {
    check_image(img, "image_to_chw");
    size_t HW = (size_t)img.H * img.W;
    for (int c = 0; c < 3; c++) {
        CHECK(std[c] != 0, "image_to_chw: std[%d] is 0", c);
        float* plane = out + c * HW;
        for (size_t i = 0; i < HW; i++) plane[i] = (img.rgb[i * 3 + c] / 255.f - mean[c]) / std[c];
    }
}

void image_write_png(const std::string& path, const Image& img) {
    check_image(img, "image_write_png");
    std::vector<uint8_t> png;
    auto append = [](void* ctx, void* data, int size) {
        auto* v = (std::vector<uint8_t>*)ctx;
        v->insert(v->end(), (uint8_t*)data, (uint8_t*)data + size);
    };
    if (!stbi_write_png_to_func(append, &png, img.W, img.H, 3, img.rgb.data(), img.W * 3))
        fail("cannot write '%s': PNG encoding of a %dx%d image failed", path.c_str(), img.H, img.W);
    file_write_atomic(path, png.data(), png.size());
}

}  // namespace vt
