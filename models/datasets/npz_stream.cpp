// npz_stream.cpp: member-at-a-time .npz reading (see npz_stream.h).
//
// The zip's directory comes from engine's zip_directory, read through a File; here each
// member's bytes are read (stored) or inflated (deflate) front to back from where its data
// starts, with the CRC checked when the last byte has been read.
#include "models/datasets/npz_stream.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/common.h"

namespace vt {
namespace {

constexpr size_t kIoChunk = 8u << 20;  // bytes read (or inflated) per step

std::string shape_str_npy(const Shape& s) {  // Python's tuple: (), (5,), (2, 3)
    std::string t = "(";
    for (size_t i = 0; i < s.size(); i++) t += (i ? ", " : "") + std::to_string(s[i]);
    return t + (s.size() == 1 ? ",)" : ")");
}

uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

struct File {
    FILE* f = nullptr;
    std::string path;
    uint64_t size = 0;
    explicit File(const std::string& p) : path(p) {
        struct stat st;
        if (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) fail("cannot open '%s': %s", p.c_str(), std::strerror(EISDIR));
        f = std::fopen(p.c_str(), "rb");
        if (!f) fail("cannot open '%s': %s", p.c_str(), std::strerror(errno));
        if (fseeko(f, 0, SEEK_END) != 0) {
            std::fclose(f);
            fail("cannot seek in '%s': %s", p.c_str(), std::strerror(errno));
        }
        size = (uint64_t)ftello(f);
    }
    ~File() { std::fclose(f); }
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    void read_at(uint64_t off, void* dst, size_t n) {
        if (off > size || n > size - off)
            fail("'%s': truncated: needs bytes [%llu, %llu) of a %llu-byte file", path.c_str(), (unsigned long long)off,
                 (unsigned long long)(off + n), (unsigned long long)size);
        if (n == 0) return;
        if (fseeko(f, (off_t)off, SEEK_SET) != 0 || std::fread(dst, 1, n, f) != n)
            fail("cannot read '%s' at offset %llu: %s", path.c_str(), (unsigned long long)off,
                 ferror(f) ? std::strerror(errno) : "the file changed while it was read");
    }
};

// A member's uncompressed bytes, read front to back; the CRC is checked when all were read.
struct MemberReader {
    File file;
    const ZipMember& m;
    std::string label;
    uint64_t in_pos = 0, in_left = 0, produced = 0;
    uint32_t crc = 0;
    z_stream zs{};
    bool inflating = false;
    std::vector<uint8_t> inbuf;

    // zip_directory checked the method, the sizes and that [m.data, m.data + m.csize) lies in the file.
    MemberReader(const NpzIndex& z, const ZipMember& mem) : file(z.path), m(mem) {
        label = npz_member_label(z.path, m.raw_name);
        if (file.size != z.size) fail("'%s' changed since its directory was read (%llu bytes, now %llu)", z.path.c_str(),
                                      (unsigned long long)z.size, (unsigned long long)file.size);
        in_pos = m.data;
        in_left = m.csize;
        if (m.method == 8) {
            if (inflateInit2(&zs, -15) != Z_OK) fail("%s: zlib inflateInit2 failed", label.c_str());
            inflating = true;
        }
    }
    ~MemberReader() {
        if (inflating) inflateEnd(&zs);
    }

    // Exactly n more bytes into dst.
    void read(void* dst, size_t n) {
        if (n > m.usize - produced)
            fail("%s: needs %zu more bytes, only %llu of %llu are left (truncated array?)", label.c_str(), n,
                 (unsigned long long)(m.usize - produced), (unsigned long long)m.usize);
        uint8_t* out = (uint8_t*)dst;
        if (!inflating) {
            file.read_at(in_pos, out, n);
            in_pos += n, in_left -= n;
        } else {
            size_t done = 0;
            while (done < n) {
                if (zs.avail_in == 0 && in_left > 0) {
                    size_t c = (size_t)std::min<uint64_t>(in_left, kIoChunk);
                    inbuf.resize(c);
                    file.read_at(in_pos, inbuf.data(), c);
                    in_pos += c, in_left -= c;
                    zs.next_in = inbuf.data();
                    zs.avail_in = (uInt)c;
                }
                zs.next_out = out + done;
                zs.avail_out = (uInt)std::min<size_t>(n - done, 1u << 30);
                uInt before = zs.avail_out;
                int ret = inflate(&zs, Z_NO_FLUSH);
                done += before - zs.avail_out;
                if (ret == Z_STREAM_END && done < n)
                    fail("%s: deflate stream ends after %llu of %llu bytes (truncated member)", label.c_str(),
                         (unsigned long long)(produced + done), (unsigned long long)m.usize);
                if (ret != Z_OK && ret != Z_STREAM_END && !(ret == Z_BUF_ERROR && (zs.avail_in > 0 || in_left > 0)))
                    fail("%s: corrupt deflate data after %llu inflated bytes (zlib: %s)", label.c_str(),
                         (unsigned long long)(produced + done), zs.msg ? zs.msg : "truncated");
            }
        }
        for (size_t off = 0; off < n; off += 1u << 30) {
            uInt c = (uInt)std::min<size_t>(n - off, 1u << 30);
            crc = (uint32_t)crc32(crc, out + off, c);
        }
        produced += n;
        if (produced == m.usize && crc != m.crc)
            fail("%s: CRC-32 mismatch (central directory says 0x%08x, data gives 0x%08x): the file is corrupt",
                 label.c_str(), m.crc, crc);
    }
};

// Reads the magic, version and dict of a .npy stream and parses them with engine's parser;
// the shape's data must fit in what the member holds.
NpyHeader read_head(MemberReader& r) {
    std::vector<uint8_t> head(12);
    r.read(head.data(), 10);
    if (std::memcmp(head.data(), "\x93NUMPY", 6) != 0) fail("%s: not a .npy member (no \\x93NUMPY magic)", r.label.c_str());
    size_t pre = 10;
    uint32_t hlen = (uint32_t)head[8] | (uint32_t)head[9] << 8;
    if (head[6] >= 2) {
        r.read(head.data() + 10, 2);
        hlen = rd32(head.data() + 8);
        pre = 12;
    }
    if (hlen > (1u << 24)) fail("%s: .npy header of %u bytes is implausible (corrupt file)", r.label.c_str(), hlen);
    head.resize(pre + hlen);
    r.read(head.data() + pre, hlen);
    NpyHeader h = npy_parse_header(head.data(), head.size(), r.label);
    if ((uint64_t)h.nbytes > r.m.usize - h.data_offset)
        fail("%s: its header declares %s %s, %lld bytes of data, but the member holds %llu (corrupt or truncated)",
             r.label.c_str(), dtype_name(h.dtype), shape_str_npy(h.shape).c_str(), (long long)h.nbytes,
             (unsigned long long)(r.m.usize - h.data_offset));
    return h;
}

}  // namespace

bool NpzIndex::has(const std::string& name) const {
    for (const ZipMember& m : members)
        if (m.name == name) return true;
    return false;
}

const ZipMember& NpzIndex::member(const std::string& name) const {
    for (const ZipMember& m : members)
        if (m.name == name) return m;
    std::string all;
    for (const ZipMember& m : members) all += (all.empty() ? "" : ", ") + m.name;
    fail("'%s' has no array '%s' (it has: %s)", path.c_str(), name.c_str(), all.empty() ? "nothing" : all.c_str());
}

NpzIndex npz_index(const std::string& path) {
    File f(path);
    NpzIndex z;
    z.path = path;
    z.size = f.size;
    z.members = zip_directory([&](uint64_t off, void* dst, size_t n) { f.read_at(off, dst, n); }, f.size, path);
    return z;
}

NpyHeader npz_head(const NpzIndex& z, const std::string& name) {
    MemberReader r(z, z.member(name));
    return read_head(r);
}

NpyArray npz_array(const NpzIndex& z, const std::string& name) {
    const ZipMember& m = z.member(name);
    // the compressed bytes, the inflated ones and the parsed array
    uint64_t need = m.csize;
    for (int k = 0; k < 2; k++) need = need > UINT64_MAX - m.usize ? UINT64_MAX : need + m.usize;
    mem_check(npz_member_label(z.path, m.raw_name), need);
    File f(z.path);
    std::vector<uint8_t> raw((size_t)m.csize);
    f.read_at(m.data, raw.data(), raw.size());
    return zip_member_array(raw.data(), m, z.path);
}

void npz_read_f32(const NpzIndex& z, const std::string& name, float* dst, int64_t numel) {
    MemberReader r(z, z.member(name));
    NpyHeader h = read_head(r);
    if (h.dtype != DType::F32 && h.dtype != DType::F64)
        fail("%s: expected a float32 or float64 array, found %s (convert it with a.astype('<f4'))", r.label.c_str(),
             dtype_name(h.dtype));
    if (h.numel != numel)
        fail("%s: holds %lld elements, expected %lld", r.label.c_str(), (long long)h.numel, (long long)numel);
    const bool fortran = h.fortran && h.shape.size() > 1 && numel > 0;
    if (fortran) mem_check(r.label + " (in Fortran order: a second copy to reorder it)", (uint64_t)numel * 4);
    // In chunks, so a huge read does not hold one giant stdio request; big-endian elements
    // (numpy's '>f4', '>f8') are byte-swapped as they arrive.
    auto swap = [&](uint8_t* p, int64_t n, int w) {
        if (h.swap_width > 0)
            for (int64_t i = 0; i < n; i++) std::reverse(p + i * w, p + (i + 1) * w);
    };
    if (h.dtype == DType::F32) {
        for (int64_t i = 0; i < numel; i += (int64_t)(kIoChunk / 4)) {
            int64_t c = std::min<int64_t>(numel - i, (int64_t)(kIoChunk / 4));
            r.read(dst + i, (size_t)c * 4);
            swap((uint8_t*)(dst + i), c, 4);
        }
    } else {
        std::vector<double> buf(kIoChunk / 8);
        for (int64_t i = 0; i < numel; i += (int64_t)buf.size()) {
            int64_t c = std::min<int64_t>(numel - i, (int64_t)buf.size());
            r.read(buf.data(), (size_t)c * 8);
            swap((uint8_t*)buf.data(), c, 8);
            for (int64_t j = 0; j < c; j++) dst[i + j] = (float)buf[j];
        }
    }
    if (r.produced != r.m.usize)
        fail("%s: %llu bytes follow the array's data (corrupt member)", r.label.c_str(),
             (unsigned long long)(r.m.usize - r.produced));
    if (fortran) {  // what numpy writes for a transposed array: reorder to C order, as numpy.load does
        std::vector<float> col(dst, dst + numel);
        npy_fortran_to_c((uint8_t*)dst, (const uint8_t*)col.data(), h.shape, numel, 4);
    }
}

}  // namespace vt
