// npz_stream.cpp: member-at-a-time .npz reading (see npz_stream.h).
//
// Zip layout read here: the end-of-central-directory record (and the ZIP64 locator and end
// record before it when present), the central directory (names, sizes, CRCs, offsets; ZIP64
// extra fields), then each member's local header to find where its bytes start.
#include "models/npz_stream.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "engine/common.h"

namespace vt {
namespace {

constexpr uint32_t kSigLocal = 0x04034b50, kSigCentral = 0x02014b50, kSigEocd = 0x06054b50,
                   kSigEocd64 = 0x06064b50, kSigLocator64 = 0x07064b50;
constexpr size_t kIoChunk = 8u << 20;  // bytes read (or inflated) per step

uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
uint64_t rd64(const uint8_t* p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

struct File {
    FILE* f = nullptr;
    std::string path;
    uint64_t size = 0;
    explicit File(const std::string& p) : path(p) {
        f = std::fopen(p.c_str(), "rb");
        if (!f) fail("cannot open '%s': %s", p.c_str(), std::strerror(errno));
        if (fseeko(f, 0, SEEK_END) != 0) fail("cannot seek in '%s': %s", p.c_str(), std::strerror(errno));
        size = (uint64_t)ftello(f);
    }
    ~File() { std::fclose(f); }
    void read_at(uint64_t off, void* dst, size_t n) {
        if (off > size || n > size - off)
            fail("'%s': truncated: needs bytes [%llu, %llu) of a %llu-byte file", path.c_str(), (unsigned long long)off,
                 (unsigned long long)(off + n), (unsigned long long)size);
        if (fseeko(f, (off_t)off, SEEK_SET) != 0 || std::fread(dst, 1, n, f) != n)
            fail("cannot read '%s' at offset %llu: %s", path.c_str(), (unsigned long long)off, std::strerror(errno));
    }
};

// A member's uncompressed bytes, read front to back; the CRC is checked when all were read.
struct MemberReader {
    File file;
    const NpzMember& m;
    std::string label;
    uint64_t in_pos = 0, in_left = 0, produced = 0;
    uint32_t crc = 0;
    z_stream zs{};
    bool inflating = false;
    std::vector<uint8_t> inbuf;

    MemberReader(const NpzIndex& z, const NpzMember& mem) : file(z.path), m(mem) {
        label = strfmt("'%s' member '%s'", z.path.c_str(), m.name.c_str());
        uint8_t h[30];
        file.read_at(m.local_offset, h, 30);
        if (rd32(h) != kSigLocal)
            fail("%s: corrupt zip: no local header at offset %llu", label.c_str(), (unsigned long long)m.local_offset);
        in_pos = m.local_offset + 30 + rd16(h + 26) + rd16(h + 28);
        in_left = m.csize;
        if (in_pos > file.size || in_left > file.size - in_pos)
            fail("%s: member data (%llu bytes at offset %llu) runs past the end of the file (truncated?)", label.c_str(),
                 (unsigned long long)m.csize, (unsigned long long)in_pos);
        if (m.method == 8) {
            if (m.usize / 1032 > m.csize + 1)  // deflate expands at most ~1032:1
                fail("%s: declares %llu bytes from %llu compressed, beyond deflate's 1032:1 limit (corrupt or a "
                     "zip bomb)", label.c_str(), (unsigned long long)m.usize, (unsigned long long)m.csize);
            if (inflateInit2(&zs, -15) != Z_OK) fail("%s: zlib inflateInit2 failed", label.c_str());
            inflating = true;
        } else if (m.method != 0) {
            fail("%s: unsupported compression method %u (expected 0 stored or 8 deflate)", label.c_str(), m.method);
        } else if (m.csize != m.usize) {
            fail("%s: stored member of %llu bytes declares %llu uncompressed bytes", label.c_str(),
                 (unsigned long long)m.csize, (unsigned long long)m.usize);
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

// The npy header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
NpyHead parse_head(const std::string& dict, const std::string& label) {
    NpyHead h;
    auto bad = [&](const char* what) -> void {
        fail("%s: bad .npy header (%s): \"%s\"", label.c_str(), what, dict.substr(0, 120).c_str());
    };
    auto value_of = [&](const char* key) -> size_t {
        size_t k = dict.find(std::string("'") + key + "'");
        if (k == std::string::npos) bad(key);
        size_t colon = dict.find(':', k);
        if (colon == std::string::npos) bad(key);
        size_t v = dict.find_first_not_of(" ", colon + 1);
        if (v == std::string::npos) bad(key);
        return v;
    };
    size_t d = value_of("descr");
    char q = dict[d];
    size_t e = dict.find(q, d + 1);
    if ((q != '\'' && q != '"') || e == std::string::npos) bad("descr");
    std::string descr = dict.substr(d + 1, e - d - 1);
    if (descr.size() < 3) bad("descr");
    h.big_endian = descr[0] == '>';
    std::string t = descr.substr(1);
    if (t == "f4") h.dtype = DType::F32;
    else if (t == "f8") h.dtype = DType::F64;
    else if (t == "u1") h.dtype = DType::U8;
    else if (t == "i4") h.dtype = DType::I32;
    else if (t == "i8") h.dtype = DType::I64;
    else if (t == "b1") h.dtype = DType::Bool;
    else if (t[0] == 'U') h.dtype = DType::Unicode, h.str_len = std::atoi(t.c_str() + 1);
    else fail("%s: unsupported dtype '%s' (expected <f4 <f8 |u1 <i4 <i8 |b1 <U<n>)", label.c_str(), descr.c_str());
    h.fortran = dict.compare(value_of("fortran_order"), 4, "True") == 0;
    size_t s = value_of("shape");
    if (dict[s] != '(') bad("shape");
    size_t close = dict.find(')', s);
    if (close == std::string::npos) bad("shape");
    for (size_t p = s + 1; p < close;) {
        while (p < close && (dict[p] == ' ' || dict[p] == ',')) p++;
        if (p >= close) break;
        char* end = nullptr;
        long long v = std::strtoll(dict.c_str() + p, &end, 10);
        if (end == dict.c_str() + p || v < 0) bad("shape");
        h.shape.push_back(v);
        p = (size_t)(end - dict.c_str());
        if (p < close && dict[p] == 'L') p++;
    }
    return h;
}

// Reads the magic, version and dict of a .npy stream.
NpyHead read_head(MemberReader& r) {
    uint8_t pre[12];
    r.read(pre, 10);
    if (std::memcmp(pre, "\x93NUMPY", 6) != 0) fail("%s: not a .npy member (no \\x93NUMPY magic)", r.label.c_str());
    uint32_t hlen = rd16(pre + 8);
    if (pre[6] >= 2) {
        r.read(pre + 10, 2);
        hlen = rd32(pre + 8);
    }
    if (hlen > (1u << 24)) fail("%s: .npy header of %u bytes is implausible (corrupt file)", r.label.c_str(), hlen);
    std::string dict(hlen, '\0');
    r.read(&dict[0], hlen);
    return parse_head(dict, r.label);
}

}  // namespace

int64_t NpyHead::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

bool NpzIndex::has(const std::string& name) const {
    for (const NpzMember& m : members)
        if (m.name == name) return true;
    return false;
}

const NpzMember& NpzIndex::member(const std::string& name) const {
    for (const NpzMember& m : members)
        if (m.name == name) return m;
    std::string all;
    for (const NpzMember& m : members) all += (all.empty() ? "" : ", ") + m.name;
    fail("'%s' has no array '%s' (it has: %s)", path.c_str(), name.c_str(), all.empty() ? "nothing" : all.c_str());
}

NpzIndex npz_index(const std::string& path) {
    File f(path);
    NpzIndex z;
    z.path = path;
    // The end record lies in the last 22 + 65535 bytes (the comment can be up to 64 KiB).
    uint64_t tail_n = std::min<uint64_t>(f.size, 22 + 0xffff + 20);
    if (f.size < 22) fail("'%s' is not an .npz (zip) file: %llu bytes", path.c_str(), (unsigned long long)f.size);
    std::vector<uint8_t> tail(tail_n);
    uint64_t tail_off = f.size - tail_n;
    f.read_at(tail_off, tail.data(), tail_n);
    int64_t eocd = -1;
    for (int64_t i = (int64_t)tail_n - 22; i >= 0; i--)
        if (rd32(&tail[i]) == kSigEocd) { eocd = i; break; }
    if (eocd < 0) {
        if (tail_n >= 6 && f.size >= 6) {
            uint8_t head[6];
            f.read_at(0, head, 6);
            if (!std::memcmp(head, "\x93NUMPY", 6))
                fail("'%s' is a .npy file, not an .npz archive (save with numpy.savez)", path.c_str());
        }
        fail("'%s' is not an .npz (zip) file: no end-of-central-directory record", path.c_str());
    }
    const uint8_t* e = &tail[eocd];
    uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    if (eocd >= 20 && rd32(&tail[eocd - 20]) == kSigLocator64) {
        uint64_t rec = rd64(&tail[eocd - 20 + 8]);
        uint8_t r[56];
        f.read_at(rec, r, 56);
        if (rd32(r) != kSigEocd64) fail("'%s': corrupt zip: no ZIP64 end record at offset %llu", path.c_str(), (unsigned long long)rec);
        count = rd64(r + 32), cd_size = rd64(r + 40), cd_off = rd64(r + 48);
    }
    if (cd_size > f.size || count > cd_size / 46)
        fail("'%s': corrupt zip: %llu entries in a %llu-byte central directory", path.c_str(), (unsigned long long)count,
             (unsigned long long)cd_size);
    std::vector<uint8_t> cd(cd_size);
    f.read_at(cd_off, cd.data(), cd_size);
    size_t p = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (cd_size - p < 46 || rd32(&cd[p]) != kSigCentral)
            fail("'%s': corrupt zip: bad central directory entry %llu", path.c_str(), (unsigned long long)i);
        const uint8_t* c = &cd[p];
        NpzMember m;
        m.method = rd16(c + 10), m.crc = rd32(c + 16);
        m.csize = rd32(c + 20), m.usize = rd32(c + 24), m.local_offset = rd32(c + 42);
        size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
        if (46 + nlen + xlen + clen > cd_size - p)
            fail("'%s': corrupt zip: central directory entry %llu overruns the directory", path.c_str(), (unsigned long long)i);
        m.name.assign((const char*)c + 46, nlen);
        for (const uint8_t *x = c + 46 + nlen, *xend = x + xlen; xend - x >= 4;) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if (sz > xend - x - 4) break;
            if (id == 1) {  // ZIP64: the 64-bit values of the fields that are 0xffffffff, in this order
                const uint8_t *q = x + 4, *qend = q + sz;
                for (uint64_t* fld : {&m.usize, &m.csize, &m.local_offset})
                    if (*fld == 0xffffffffu && qend - q >= 8) *fld = rd64(q), q += 8;
            }
            x += 4 + sz;
        }
        p += 46 + nlen + xlen + clen;
        if (!m.name.empty() && m.name.back() == '/') continue;  // a directory entry
        if (m.name.size() >= 4 && m.name.compare(m.name.size() - 4, 4, ".npy") == 0) m.name.resize(m.name.size() - 4);
        z.members.push_back(std::move(m));
    }
    return z;
}

NpyHead npz_head(const NpzIndex& z, const std::string& name) {
    MemberReader r(z, z.member(name));
    return read_head(r);
}

NpyArray npz_array(const NpzIndex& z, const std::string& name) {
    const NpzMember& m = z.member(name);
    MemberReader r(z, m);
    std::vector<uint8_t> bytes((size_t)m.usize);
    r.read(bytes.data(), bytes.size());
    return npy_parse(bytes.data(), bytes.size(), r.label);
}

void npz_read_f32(const NpzIndex& z, const std::string& name, float* dst, int64_t numel) {
    MemberReader r(z, z.member(name));
    NpyHead h = read_head(r);
    if ((h.dtype != DType::F32 && h.dtype != DType::F64) || h.big_endian || (h.fortran && h.shape.size() > 1))
        fail("%s: expected a little-endian, C-order float32 or float64 array, found %s%s%s (convert it with "
             "numpy.ascontiguousarray(a, dtype='<f4'))", r.label.c_str(), h.big_endian ? "big-endian " : "",
             dtype_name(h.dtype), h.fortran ? " in Fortran order" : "");
    if (h.numel() != numel)
        fail("%s: holds %lld elements, expected %lld", r.label.c_str(), (long long)h.numel(), (long long)numel);
    if (h.dtype == DType::F32) {
        // In chunks, so a huge read does not hold one giant stdio request.
        for (int64_t i = 0; i < numel; i += (int64_t)(kIoChunk / 4)) {
            int64_t c = std::min<int64_t>(numel - i, (int64_t)(kIoChunk / 4));
            r.read(dst + i, (size_t)c * 4);
        }
    } else {
        std::vector<double> buf(kIoChunk / 8);
        for (int64_t i = 0; i < numel; i += (int64_t)buf.size()) {
            int64_t c = std::min<int64_t>(numel - i, (int64_t)buf.size());
            r.read(buf.data(), (size_t)c * 8);
            for (int64_t j = 0; j < c; j++) dst[i + j] = (float)buf[j];
        }
    }
    if (r.produced != r.m.usize)
        fail("%s: %llu bytes follow the array's data (corrupt member)", r.label.c_str(),
             (unsigned long long)(r.m.usize - r.produced));
}

}  // namespace vt
