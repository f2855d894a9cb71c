// test_image.cpp: decoding a real CIFAR-10 JPEG, PNG round trips, refusals (non-images,
// truncated JPEGs, oversized headers), and resize/crop/normalise on synthetic images with
// hand-computed values.
#include <stb/stb_image_write.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "engine/io/image.h"
#include "engine/io/npy.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

// The first JPEG of ../shared/data/cifar10_jpg: the unpacked file when there is one, else
// read out of the tarball (gzip, then 512-byte tar headers). Empty when the data is absent.
std::vector<uint8_t> cifar_jpeg(std::string& name) {
    std::string dir = vt_test::shared_data("cifar10_jpg");
    name = dir + "/test/airplane/0000.jpg";
    if (access(name.c_str(), R_OK) == 0) return file_read_all(name);
    gzFile g = gzopen((dir + "/cifar10_jpg.tar.gz").c_str(), "rb");
    if (!g) return {};
    std::vector<uint8_t> found;
    for (int k = 0; k < 64 && found.empty(); k++) {
        char hdr[512];
        if (gzread(g, hdr, 512) != 512 || hdr[0] == 0) break;
        std::string member(hdr, strnlen(hdr, 100));
        size_t size = strtoull(std::string(hdr + 124, 12).c_str(), nullptr, 8), padded = (size + 511) / 512 * 512;
        std::vector<uint8_t> body(padded);
        if (padded > (1u << 24) || gzread(g, body.data(), (unsigned)padded) != (int)padded) break;
        if (member.size() > 4 && member.compare(member.size() - 4, 4, ".jpg") == 0) {
            body.resize(size);
            found = body;
            name = dir + "/cifar10_jpg.tar.gz:" + member;
        }
    }
    gzclose(g);
    return found;
}

Image synthetic(int H, int W) {  // R = 10y + x, G = 255 - R, B = 7x
    Image img;
    img.H = H, img.W = W;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (uint8_t v : {(uint8_t)(10 * y + x), (uint8_t)(255 - 10 * y - x), (uint8_t)(7 * x)}) img.rgb.push_back(v);
    return img;
}

std::vector<uint8_t> encode(const Image& img, bool jpeg) {
    std::vector<uint8_t> out;
    auto append = [](void* ctx, void* data, int size) {
        auto* v = (std::vector<uint8_t>*)ctx;
        v->insert(v->end(), (uint8_t*)data, (uint8_t*)data + size);
    };
    int ok = jpeg ? stbi_write_jpg_to_func(append, &out, img.W, img.H, 3, img.rgb.data(), 95)
                  : stbi_write_png_to_func(append, &out, img.W, img.H, 3, img.rgb.data(), img.W * 3);
    REQUIRE(ok);
    return out;
}

uint8_t px(const Image& img, int y, int x, int c) { return img.rgb[((size_t)y * img.W + x) * 3 + c]; }

}  // namespace

TEST_CASE("image: decodes a real CIFAR-10 JPEG") {
    std::string name;
    std::vector<uint8_t> jpg = cifar_jpeg(name);
    if (jpg.empty()) {
        MESSAGE("skipped: ../shared/data/cifar10_jpg not found");
        return;
    }
    CAPTURE(name);
    Image img = image_decode(jpg.data(), jpg.size(), name);
    CHECK(img.H == 32);
    CHECK(img.W == 32);
    double mean = 0, var = 0;
    for (uint8_t v : img.rgb) mean += v;
    mean /= img.rgb.size();
    for (uint8_t v : img.rgb) var += (v - mean) * (v - mean);
    CHECK(std::sqrt(var / img.rgb.size()) > 10);  // a photograph, not a flat or failed decode

    std::string dir = vt_test::temp_dir(), path = dir + "/plane.jpg";  // the same bytes through image_load
    file_write_atomic(path, jpg.data(), jpg.size());
    CHECK(image_load(path).rgb == img.rgb);
    std::vector<uint8_t> cut(jpg.begin(), jpg.begin() + jpg.size() * 2 / 3);
    file_write_atomic(path, cut.data(), cut.size());
    CHECK(error_of([&] { image_load(path); }) ==
          "cannot read image '" + path + "': truncated JPEG (no end-of-image marker after the last scan)");
    std::remove(path.c_str());
    rmdir(dir.c_str());

    Image big = image_resize(img, 64, 96);
    CHECK(big.H == 64);
    CHECK(big.W == 96);
}

TEST_CASE("image: PNG round trip and JPEG decode of synthetic images") {
    Image img = synthetic(5, 7);
    std::string dir = vt_test::temp_dir(), path = dir + "/s.png";
    image_write_png(path, img);
    Image back = image_load(path);
    CHECK(back.H == 5);
    CHECK(back.W == 7);
    CHECK(back.rgb == img.rgb);
    std::remove(path.c_str());
    CHECK(rmdir(dir.c_str()) == 0);  // no temporary file left behind

    Image grad = synthetic(16, 16);
    std::vector<uint8_t> jpg = encode(grad, true);
    Image dec = image_decode(jpg.data(), jpg.size(), "g.jpg");
    REQUIRE(dec.rgb.size() == grad.rgb.size());
    int worst = 0;
    for (size_t i = 0; i < dec.rgb.size(); i++) worst = std::max(worst, std::abs(dec.rgb[i] - grad.rgb[i]));
    CHECK(worst < 24);  // lossy, but the same picture
}

TEST_CASE("image: refuses non-images, truncated files and oversized headers") {
    std::string dir = vt_test::temp_dir(), path = dir + "/notes.jpg";
    const char text[] = "hello, this is not an image\n";
    file_write_atomic(path, text, sizeof text - 1);
    CHECK(error_of([&] { image_load(path); }) ==
          "cannot read image '" + path + "': unknown image type (expected JPEG, PNG or BMP; file starts 0x68656c6c6f2c2074)");
    std::remove(path.c_str());
    CHECK(error_of([] { image_load("/nonexistent/a.png"); }) ==
          "cannot read image '/nonexistent/a.png': No such file or directory");
    CHECK(error_of([&] { image_load(dir); }) == "cannot read image '" + dir + "': Is a directory");
    CHECK(error_of([] { image_decode(nullptr, 0, "e.png"); }) == "cannot read image 'e.png': the file is empty");
    rmdir(dir.c_str());

    std::vector<uint8_t> jpg = encode(synthetic(16, 16), true);
    for (size_t n : {size_t(3), size_t(20), jpg.size() / 2, jpg.size() - 2}) {
        CAPTURE(n);
        std::string e = error_of([&] { image_decode(jpg.data(), n, "t.jpg"); });
        CHECK(has(e, "cannot read image 't.jpg': "));
    }
    std::vector<uint8_t> dht = jpg;  // 16 x 255 Huffman codes: would overflow stb_image 2.27's tables
    size_t at = 2;
    while (!(dht[at] == 0xff && dht[at + 1] == 0xc4)) at++;
    for (int k = 0; k < 16; k++) dht[at + 5 + k] = 255;
    CHECK(has(error_of([&] { image_decode(dht.data(), dht.size(), "h.jpg"); }),
              "cannot read image 'h.jpg': corrupt JPEG (Huffman table at offset"));
    std::vector<uint8_t> png = encode(synthetic(8, 8), false);
    CHECK(has(error_of([&] { image_decode(png.data(), png.size() - 20, "t.png"); }), "cannot read image 't.png': "));
    CHECK(has(error_of([&] { image_decode(png.data(), png.size(), "p.png", 32); }),
              "its header says width 8, height 8, beyond the limit of 16384 per side and 32 pixels in all"));
    std::vector<uint8_t> wide = png;  // IHDR width (big-endian, at byte 16) -> 20000
    wide[16] = 0, wide[17] = 0, wide[18] = 0x4e, wide[19] = 0x20;
    CHECK(has(error_of([&] { image_decode(wide.data(), wide.size(), "w.png"); }), "says width 20000, height 8, beyond the limit"));
}

TEST_CASE("image: resize, crop and short-side geometry and values") {
    Image flat;
    flat.H = 10, flat.W = 13;
    for (int i = 0; i < 130; i++) flat.rgb.insert(flat.rgb.end(), {10, 200, 77});
    for (auto hw : {std::pair<int, int>{7, 29}, {3, 4}, {25, 40}, {1, 1}}) {
        Image r = image_resize(flat, hw.first, hw.second);
        CHECK(r.H == hw.first);
        CHECK(r.W == hw.second);
        bool constant = true;
        for (size_t i = 0; i < r.rgb.size(); i++) constant = constant && r.rgb[i] == flat.rgb[i % 3];
        CHECK(constant);
    }
    Image ramp;  // one grey row [0, 255] -> 4 wide: sample points -0.25 0.25 0.75 1.25 (clamped)
    ramp.H = 1, ramp.W = 2, ramp.rgb = {0, 0, 0, 255, 255, 255};
    Image up = image_resize(ramp, 1, 4);
    CHECK(up.rgb == std::vector<uint8_t>{0, 0, 0, 64, 64, 64, 191, 191, 191, 255, 255, 255});

    Image blocks;  // 8x8 of four 4x4 blocks; shrinking 4x averages each block exactly
    blocks.H = 8, blocks.W = 8;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            uint8_t v = y < 4 ? (x < 4 ? 0 : 100) : (x < 4 ? 200 : 40);
            uint8_t noise = (uint8_t)((x + y) % 2 ? 3 : 0);  // averages to +1.5 within a block
            blocks.rgb.insert(blocks.rgb.end(), {v, (uint8_t)(v + noise), (uint8_t)(255 - v)});
        }
    Image down = image_resize(blocks, 2, 2);
    CHECK(down.rgb == std::vector<uint8_t>{0, 2, 255, 100, 102, 155, 200, 202, 55, 40, 42, 215});
    Image half = image_resize(synthetic(4, 4), 2, 2);  // 2x: the mean of each 2x2 block
    CHECK(px(half, 0, 0, 0) == 6);    // (0 + 1 + 10 + 11) / 4 = 5.5 -> 6
    CHECK(px(half, 1, 1, 0) == 28);   // (22 + 23 + 32 + 33) / 4 = 27.5 -> 28
    CHECK(px(half, 1, 0, 2) == 4);    // 7 * (0 + 1 + 0 + 1) / 4 = 3.5 -> 4
    Image same = synthetic(6, 9);
    CHECK(image_resize(same, 6, 9).rgb == same.rgb);

    Image s = image_resize_short_side(synthetic(30, 60), 15);
    CHECK((s.H == 15 && s.W == 30));
    s = image_resize_short_side(synthetic(60, 30), 15);
    CHECK((s.H == 30 && s.W == 15));
    s = image_resize_short_side(synthetic(30, 47), 20);  // floor(20 * 47 / 30) = 31
    CHECK((s.H == 20 && s.W == 31));

    Image c = image_center_crop(synthetic(5, 6), 3, 2);  // top = 1, left = 2
    CHECK((c.H == 3 && c.W == 2));
    CHECK(px(c, 0, 0, 0) == 12);
    CHECK(px(c, 2, 1, 0) == 33);
    CHECK(px(c, 2, 1, 2) == 21);
    CHECK(has(error_of([] { image_center_crop(synthetic(5, 6), 6, 2); }), "a 6x2 crop does not fit in a 5x6 image"));
}

TEST_CASE("image: to_chw normalises into (3, H, W) planes") {
    Image img = synthetic(2, 3);
    float mean[3] = {0.5f, 0.4f, 0.3f}, stdv[3] = {0.2f, 0.25f, 0.5f};
    std::vector<float> out(3 * 2 * 3, NAN);
    image_to_chw(out.data(), img, mean, stdv);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++) {
                double want = (px(img, y, x, c) / 255.0 - mean[c]) / stdv[c];
                CHECK(vt_test::close(out[c * 6 + y * 3 + x], want, 1e-6, 1e-6));
            }
}
