// npy.cpp: NumPy .npy/.npz reading and writing (see npy.h).
//
// The formats, for a reader of this file:
//   .npy  "\x93NUMPY", major, minor, header length (u16 in 1.0; u32 in 2.0 and 3.0), a Python
//         dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
//         spaces and ending in '\n', then the raw elements.
//   .npz  a zip: per member a local header and its data; then the central directory (one
//         record per member: sizes, CRC-32, offset of the local header); then the
//         end-of-central-directory record (EOCD). When counts, sizes or offsets overflow
//         16/32 bits, ZIP64 extra fields carry the 64-bit values and a ZIP64 EOCD record plus
//         its locator sit just before the EOCD.
// All multi-byte fields are little-endian.
#include "engine/io/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <set>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.cpp assumes a little-endian host");

namespace vt {
namespace {

constexpr int kMaxDims = 64;                    // numpy 2's NPY_MAXDIMS
constexpr uint64_t kChunk = 1u << 30;           // zlib counts in 32-bit uInt: feed <= 1 GiB at a time
constexpr uint32_t kSigLocal = 0x04034b50, kSigCentral = 0x02014b50, kSigEocd = 0x06054b50,
                   kSigEocd64 = 0x06064b50, kSigLocator64 = 0x07064b50;

// ---- small helpers ----------------------------------------------------------------------
uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t* p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
uint64_t rd64(const uint8_t* p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
void put16(std::vector<uint8_t>& v, uint64_t x) { for (int i = 0; i < 2; i++) v.push_back((uint8_t)(x >> 8 * i)); }
void put32(std::vector<uint8_t>& v, uint64_t x) { for (int i = 0; i < 4; i++) v.push_back((uint8_t)(x >> 8 * i)); }
void put64(std::vector<uint8_t>& v, uint64_t x) { for (int i = 0; i < 8; i++) v.push_back((uint8_t)(x >> 8 * i)); }

// A printable one-line excerpt of untrusted bytes, for messages.
std::string excerpt(const void* p, size_t n, size_t max = 32) {
    const uint8_t* s = (const uint8_t*)p;
    std::string out;
    for (size_t i = 0; i < n && i < max; i++) {
        if (s[i] >= 32 && s[i] < 127 && s[i] != '\\') out += (char)s[i];
        else out += strfmt("\\x%02x", s[i]);
    }
    if (n > max) out += "...";
    return out;
}

// `label: message`, where label already names the file (and member), quoted.
[[noreturn]] __attribute__((format(printf, 2, 3))) void failf(const std::string& label, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string s = vstrfmt(fmt, ap);
    va_end(ap);
    fail("%s: %s", label.c_str(), s.c_str());
}

std::string shape_text(const Shape& s) {  // Python's repr of the tuple: (), (5,), (2, 3)
    std::string r = "(";
    for (size_t i = 0; i < s.size(); i++) r += strfmt(i ? ", %lld" : "%lld", (long long)s[i]);
    return r + (s.size() == 1 ? ",)" : ")");
}

// numel and byte count of shape `s` with `itemsize`-byte elements. False when a dim is
// negative or the byte count overflows int64 (zero dims left out of that test, as numpy).
bool shape_bytes(const Shape& s, int64_t itemsize, int64_t& numel, int64_t& nbytes) {
    int64_t prod = 1, total = 0;
    bool zero = false;
    for (int64_t d : s) {
        if (d < 0) return false;
        if (d == 0) zero = true;
        else if (__builtin_mul_overflow(prod, d, &prod)) return false;
    }
    if (__builtin_mul_overflow(prod, itemsize, &total)) return false;
    numel = zero ? 0 : prod;
    nbytes = zero ? 0 : total;
    return true;
}

int64_t dtype_itemsize(DType d, int str_len) {
    switch (d) {
        case DType::F32: case DType::I32: return 4;
        case DType::F64: case DType::I64: return 8;
        case DType::U8: case DType::Bool: return 1;
        case DType::Unicode: return 4 * (int64_t)str_len;
    }
    return 0;
}

std::string dtype_descr(DType d, int str_len) {
    switch (d) {
        case DType::F32: return "<f4";
        case DType::F64: return "<f8";
        case DType::U8: return "|u1";
        case DType::I32: return "<i4";
        case DType::I64: return "<i8";
        case DType::Bool: return "|b1";
        case DType::Unicode: return strfmt("<U%d", str_len);
    }
    return "?";
}

}  // namespace

uint32_t crc32_bytes(uint32_t crc, const uint8_t* p, uint64_t n) {
    while (n > 0) {
        uInt c = (uInt)std::min<uint64_t>(n, kChunk);
        crc = (uint32_t)crc32(crc, p, c);
        p += c, n -= c;
    }
    return crc;
}

namespace {

// ---- UTF-8 <-> code points ------------------------------------------------------------------
std::vector<uint32_t> utf8_decode(const std::string& s, size_t index) {
    std::vector<uint32_t> cps;
    const uint8_t* p = (const uint8_t*)s.data();
    size_t n = s.size(), i = 0;
    while (i < n) {
        uint32_t c = p[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        if (ok && len > 1) {
            c &= 0x7f >> len;
            for (int k = 1; k < len; k++) {
                ok = ok && (p[i + k] & 0xc0) == 0x80;
                c = c << 6 | (p[i + k] & 0x3f);
            }
            static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = ok && c >= min_cp[len] && c <= 0x10ffff && !(c >= 0xd800 && c <= 0xdfff);
        }
        if (!ok)
            fail("NpyArray::from_strings: string %zu is not valid UTF-8 (bad byte 0x%02x at offset %zu); "
                 "pass UTF-8 text", index, p[i], i);
        cps.push_back(c);
        i += len;
    }
    return cps;
}

void utf8_append(std::string& out, uint32_t c) {
    if (c < 0x80) out += (char)c;
    else if (c < 0x800) out += (char)(0xc0 | c >> 6), out += (char)(0x80 | (c & 0x3f));
    else if (c < 0x10000)
        out += (char)(0xe0 | c >> 12), out += (char)(0x80 | (c >> 6 & 0x3f)), out += (char)(0x80 | (c & 0x3f));
    else
        out += (char)(0xf0 | c >> 18), out += (char)(0x80 | (c >> 12 & 0x3f)),
            out += (char)(0x80 | (c >> 6 & 0x3f)), out += (char)(0x80 | (c & 0x3f));
}

// ---- .npy header ---------------------------------------------------------------------------
// A parser for the one dict literal numpy writes: string keys; string, bool and int-tuple values.
struct DictParser {
    const char* begin;
    const char* p;
    const char* end;
    const std::string& label;

    [[noreturn]] void bad(const char* expected) {
        failf(label, "bad .npy header dict: expected %s at offset %zu, found \"%s\" (header \"%s\")", expected,
              (size_t)(p - begin), excerpt(p, end - p, 16).c_str(), excerpt(begin, end - begin, 80).c_str());
    }
    void ws() { while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++; }
    bool eat(char c) {
        ws();
        if (p < end && *p == c) return p++, true;
        return false;
    }
    std::string str() {
        ws();
        if (p >= end || (*p != '\'' && *p != '"')) bad("a quoted string");
        char q = *p++;
        const char* s = p;
        while (p < end && *p != q) {
            if (*p == '\\') bad("a string without escapes");
            p++;
        }
        if (p >= end) bad("a closing quote");
        return std::string(s, p++);
    }
    bool boolean() {
        ws();
        if (end - p >= 4 && !memcmp(p, "True", 4)) return p += 4, true;
        if (end - p >= 5 && !memcmp(p, "False", 5)) return p += 5, false;
        bad("True or False");
    }
    int64_t integer() {
        ws();
        if (p >= end || *p < '0' || *p > '9') bad("a non-negative integer");
        int64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
                failf(label, "bad .npy header: a dimension of the shape overflows int64");
            p++;
        }
        if (p < end && *p == 'L') p++;  // Python 2 longs
        return v;
    }
    Shape tuple() {
        if (!eat('(')) bad("'(' opening the shape tuple");
        Shape s;
        if (eat(')')) return s;
        for (;;) {
            s.push_back(integer());
            if (s.size() > (size_t)kMaxDims) failf(label, "bad .npy header: more than %d dimensions", kMaxDims);
            if (eat(')')) return s;
            if (!eat(',')) bad("',' or ')' in the shape tuple");
            if (eat(')')) return s;
        }
    }
};

void parse_descr(const std::string& descr, NpyHeader& h, const std::string& label) {
    char order = descr.empty() ? 0 : descr[0];
    std::string t = descr.size() > 1 ? descr.substr(1) : "";
    bool known_order = order == '<' || order == '>' || order == '|' || order == '=';
    int width = 0;  // byte-swap unit
    if (known_order && t == "f4") h.dtype = DType::F32, width = 4;
    else if (known_order && t == "f8") h.dtype = DType::F64, width = 8;
    else if (known_order && t == "i4") h.dtype = DType::I32, width = 4;
    else if (known_order && t == "i8") h.dtype = DType::I64, width = 8;
    else if (known_order && t == "u1") h.dtype = DType::U8, width = 1;
    else if (known_order && t == "b1") h.dtype = DType::Bool, width = 1;
    else if (known_order && t.size() >= 2 && t.size() <= 10 && t[0] == 'U' &&
             t.find_first_not_of("0123456789", 1) == std::string::npos) {
        long long n = std::atoll(t.c_str() + 1);
        if (n < 1 || n > (1 << 28))
            failf(label, "unsupported string dtype '%s' (expected <U1 to <U%d)", descr.c_str(), 1 << 28);
        h.dtype = DType::Unicode, h.str_len = (int)n, width = 4;
    } else {
        failf(label, "unsupported dtype '%s' (expected one of <f4 <f8 |u1 <i4 <i8 |b1 <U<n>, "
              "little- or big-endian; convert the array with astype)", excerpt(descr.data(), descr.size()).c_str());
    }
    h.swap_width = order == '>' && width > 1 ? width : 0;
}

}  // namespace

NpyHeader npy_parse_header(const uint8_t* d, size_t n, const std::string& label) {
    static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (n < 6 || memcmp(d, magic, 6) != 0) {
        if (n >= 4 && !memcmp(d, "PK\x03\x04", 4))
            failf(label, "is a zip (.npz) archive, not a .npy file (read it with npz_read)");
        failf(label, "not a .npy file (expected magic \\x93NUMPY, found \"%s\" in a %zu-byte file)",
              excerpt(d, std::min<size_t>(n, 8)).c_str(), n);
    }
    NpyHeader h;
    int major = n > 6 ? d[6] : -1, minor = n > 7 ? d[7] : -1;
    size_t len_bytes = major == 1 ? 2 : 4;
    if (n < 8 + len_bytes) failf(label, "truncated .npy preamble (%zu bytes)", n);
    if (major < 1 || major > 3)
        failf(label, "unsupported .npy format version %d.%d (expected 1.0, 2.0 or 3.0)", major, minor);
    size_t hlen = major == 1 ? rd16(d + 8) : rd32(d + 8);
    size_t off = 8 + len_bytes;
    if (hlen > n - off)
        failf(label, "truncated .npy header (expected %zu header bytes, found %zu)", hlen, n - off);
    h.data_offset = off + hlen;

    DictParser ps{(const char*)d + off, (const char*)d + off, (const char*)d + off + hlen, label};
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    if (!ps.eat('{')) ps.bad("'{'");
    while (!ps.eat('}')) {
        std::string key = ps.str();
        if (!ps.eat(':')) ps.bad("':'");
        bool* seen = key == "descr" ? &seen_descr : key == "fortran_order" ? &seen_fortran
                   : key == "shape" ? &seen_shape : nullptr;
        if (!seen) failf(label, "bad .npy header dict: unexpected key '%s' (expected descr, fortran_order, shape)",
                         excerpt(key.data(), key.size()).c_str());
        if (*seen) failf(label, "bad .npy header dict: key '%s' appears twice", key.c_str());
        *seen = true;
        if (key == "descr") {
            ps.ws();
            if (ps.p < ps.end && *ps.p == '[') failf(label, "structured dtypes are not supported (expected a plain dtype such as '<f4')");
            parse_descr(ps.str(), h, label);
        } else if (key == "fortran_order") {
            h.fortran = ps.boolean();
        } else {
            h.shape = ps.tuple();
        }
        if (!ps.eat(',')) {
            if (!ps.eat('}')) ps.bad("',' or '}'");
            break;
        }
    }
    ps.ws();
    if (ps.p != ps.end) ps.bad("only spaces after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        failf(label, "bad .npy header dict: missing key '%s' (header \"%s\")",
              !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape",
              excerpt(ps.begin, ps.end - ps.begin, 80).c_str());
    if (!shape_bytes(h.shape, dtype_itemsize(h.dtype, h.str_len), h.numel, h.nbytes))
        failf(label, "shape %s of %s overflows a 64-bit byte count (corrupt header)", shape_text(h.shape).c_str(),
              dtype_name(h.dtype));
    return h;
}

// (d0, ..., dk) column-major -> row-major, elements of `w` bytes. numel(s) > 0.
void npy_fortran_to_c(uint8_t* dst, const uint8_t* src, const Shape& s, int64_t numel, size_t w) {
    int nd = (int)s.size();
    std::vector<int64_t> idx(nd, 0), fstride(nd);
    int64_t st = 1;
    for (int k = 0; k < nd; k++) fstride[k] = st, st *= s[k];
    int64_t off = 0;  // element index in src of C-order element i
    for (int64_t i = 0; i < numel; i++) {
        memcpy(dst + i * w, src + off * w, w);
        for (int k = nd - 1; k >= 0; k--) {
            off += fstride[k];
            if (++idx[k] < s[k]) break;
            off -= idx[k] * fstride[k];
            idx[k] = 0;
        }
    }
}

namespace {

NpyArray npy_parse_labeled(const uint8_t* d, size_t n, const std::string& label) {
    NpyHeader h = npy_parse_header(d, n, label);
    const int64_t itemsize = dtype_itemsize(h.dtype, h.str_len), numel = h.numel, nbytes = h.nbytes;
    size_t avail = n - h.data_offset;
    if ((uint64_t)nbytes > avail)
        failf(label, "data too short for %s %s: expected %lld bytes after the %zu-byte header, found %zu (truncated?)",
              dtype_name(h.dtype), shape_text(h.shape).c_str(), (long long)nbytes, h.data_offset, avail);
    NpyArray a;
    a.dtype = h.dtype;
    a.shape = h.shape;
    a.str_len = h.str_len;
    const uint8_t* src = d + h.data_offset;
    if (h.fortran && h.shape.size() > 1 && numel > 0) {
        a.bytes.resize((size_t)nbytes);
        npy_fortran_to_c(a.bytes.data(), src, h.shape, numel, (size_t)itemsize);
    } else {
        a.bytes.assign(src, src + nbytes);
    }
    if (h.swap_width > 0)
        for (size_t i = 0; i + h.swap_width <= a.bytes.size(); i += h.swap_width)
            std::reverse(a.bytes.begin() + i, a.bytes.begin() + i + h.swap_width);
    return a;
}

std::vector<uint8_t> npy_header(const NpyArray& a) {
    int64_t numel = 0, nbytes = 0;
    CHECK(a.dtype != DType::Unicode || a.str_len >= 1, "Unicode array with str_len %d (expected >= 1)", a.str_len);
    CHECK(a.shape.size() <= (size_t)kMaxDims && shape_bytes(a.shape, a.itemsize(), numel, nbytes) &&
              (uint64_t)nbytes == a.bytes.size(),
          "NpyArray %s %s holds %zu bytes (expected numel * itemsize)", dtype_name(a.dtype),
          shape_text(a.shape).c_str(), a.bytes.size());
    std::string dict = strfmt("{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                              dtype_descr(a.dtype, a.str_len).c_str(), shape_text(a.shape).c_str());
    int major = dict.size() + 11 > 65535 ? 2 : 1;
    size_t pre = major == 1 ? 10 : 12;
    dict.append((64 - (pre + dict.size() + 1) % 64) % 64, ' ');  // data starts 64-aligned, as numpy
    dict += '\n';
    std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', (uint8_t)major, 0};
    if (major == 1) put16(out, dict.size());
    else put32(out, dict.size());
    out.insert(out.end(), dict.begin(), dict.end());
    return out;
}

// ---- files --------------------------------------------------------------------------------
// Writes go to path.tmp.<pid>; commit() fsyncs and renames; an uncommitted file is removed.
struct AtomicFile {
    std::string path, tmp;
    FILE* f = nullptr;
    bool committed = false;

    explicit AtomicFile(const std::string& p) : path(p), tmp(p + ".tmp." + std::to_string(getpid())) {
        f = fopen(tmp.c_str(), "wb");
        if (!f) fail("cannot write '%s': %s", path.c_str(), strerror(errno));
    }
    ~AtomicFile() {
        if (f) fclose(f);
        if (!committed) remove(tmp.c_str());
    }
    void write(const void* d, size_t n) {
        if (n > 0 && fwrite(d, 1, n, f) != n) fail("cannot write '%s': %s", path.c_str(), strerror(errno));
    }
    void commit() {
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) fail("cannot write '%s': %s", path.c_str(), strerror(errno));
        int rc = fclose(f);
        f = nullptr;
        if (rc != 0) fail("cannot write '%s': %s", path.c_str(), strerror(errno));
        if (rename(tmp.c_str(), path.c_str()) != 0)
            fail("cannot rename '%s' to '%s': %s", tmp.c_str(), path.c_str(), strerror(errno));
        committed = true;
        size_t slash = path.rfind('/');  // make the rename itself durable
        std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
        int fd = open(dir.c_str(), O_RDONLY);
        if (fd >= 0) fsync(fd), close(fd);
    }
};

// ---- zip ------------------------------------------------------------------------------------
std::string member_label(const std::string& what, const std::string& name) {
    std::string safe;
    for (unsigned char c : name.substr(0, 200)) safe += c < 32 || c == 127 ? '?' : (char)c;
    return strfmt("'%s' member '%s'", what.c_str(), safe.c_str());
}

// Inflates raw deflate data into exactly `usize` bytes. The buffer grows with the output
// actually produced, so a lying size costs no memory, and output past `usize` is an error.
std::vector<uint8_t> zip_inflate(const uint8_t* src, uint64_t csize, uint64_t usize, const std::string& label) {
    if (usize / 1032 > csize + 1)  // deflate expands at most ~1032:1
        failf(label, "declares %llu uncompressed bytes from %llu compressed, beyond deflate's 1032:1 limit "
              "(corrupt or a zip bomb)", (unsigned long long)usize, (unsigned long long)csize);
    struct Stream {
        z_stream zs{};
        ~Stream() { inflateEnd(&zs); }
    } s;
    if (inflateInit2(&s.zs, -15) != Z_OK) failf(label, "zlib inflateInit2 failed");
    std::vector<uint8_t> out((size_t)std::min<uint64_t>(usize, 1 << 20));
    uint64_t in_left = csize;
    size_t produced = 0;
    uint8_t spill;
    for (;;) {
        if (s.zs.avail_in == 0 && in_left > 0) {
            uInt c = (uInt)std::min<uint64_t>(in_left, kChunk);
            s.zs.next_in = (Bytef*)src;
            s.zs.avail_in = c;
            src += c, in_left -= c;
        }
        bool full = produced == usize;
        if (!full && produced == out.size()) out.resize((size_t)std::min<uint64_t>(usize, 2 * (uint64_t)out.size()));
        s.zs.next_out = full ? &spill : out.data() + produced;
        s.zs.avail_out = full ? 1 : (uInt)std::min<uint64_t>(out.size() - produced, kChunk);
        uInt before = s.zs.avail_out;
        int ret = inflate(&s.zs, Z_NO_FLUSH);
        size_t got = before - s.zs.avail_out;
        if (full && got > 0)
            failf(label, "inflates to more than the declared %llu bytes (corrupt or a zip bomb)",
                  (unsigned long long)usize);
        produced += got;
        if (ret == Z_STREAM_END) break;
        if (ret == Z_BUF_ERROR && s.zs.avail_in == 0 && in_left == 0)
            failf(label, "deflate stream ends early: %zu of %llu bytes inflated (truncated member)", produced,
                  (unsigned long long)usize);
        if (ret != Z_OK && ret != Z_BUF_ERROR)
            failf(label, "corrupt deflate data after %zu inflated bytes (zlib: %s)", produced,
                  s.zs.msg ? s.zs.msg : "error");
    }
    if (produced != usize)
        failf(label, "inflates to %zu bytes, the central directory declares %llu", produced,
              (unsigned long long)usize);
    return out;
}

struct ZipEntry {
    std::string name;
    uint16_t flags = 0, method = 0;
    uint32_t crc = 0;
    uint64_t csize = 0, usize = 0, offset = 0;
    uint64_t data = 0;  // where the member's bytes start
};

// Raw deflate of the concatenation of `pieces`.
std::vector<uint8_t> deflate_pieces(const std::vector<std::pair<const uint8_t*, size_t>>& pieces) {
    struct Stream {
        z_stream zs{};
        ~Stream() { deflateEnd(&zs); }
    } s;
    CHECK(deflateInit2(&s.zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK,
          "zlib deflateInit2 failed");
    uint64_t total = 0;
    for (auto& pc : pieces) total += pc.second;
    std::vector<uint8_t> out((size_t)deflateBound(&s.zs, (uLong)total) + 64);
    size_t produced = 0;
    for (size_t i = 0; i < pieces.size(); i++) {
        const uint8_t* p = pieces[i].first;
        uint64_t left = pieces[i].second;
        do {
            uInt c = (uInt)std::min<uint64_t>(left, kChunk);
            s.zs.next_in = (Bytef*)p;
            s.zs.avail_in = c;
            p += c, left -= c;
            int flush = i + 1 == pieces.size() && left == 0 ? Z_FINISH : Z_NO_FLUSH;
            int ret;
            do {
                if (produced == out.size()) out.resize(2 * out.size());
                s.zs.next_out = out.data() + produced;
                s.zs.avail_out = (uInt)std::min<uint64_t>(out.size() - produced, kChunk);
                uInt before = s.zs.avail_out;
                ret = deflate(&s.zs, flush);
                CHECK(ret != Z_STREAM_ERROR, "zlib deflate failed");
                produced += before - s.zs.avail_out;
            } while (s.zs.avail_out == 0 || s.zs.avail_in > 0 || (flush == Z_FINISH && ret != Z_STREAM_END));
        } while (left > 0);
    }
    out.resize(produced);
    return out;
}

// Where zip bytes go: memory (npz_serialize) or an AtomicFile (npz_write).
struct ZipOut {
    std::vector<uint8_t>* mem = nullptr;
    AtomicFile* file = nullptr;
    uint64_t pos = 0;
    void write(const void* p, size_t n) {
        if (mem) mem->insert(mem->end(), (const uint8_t*)p, (const uint8_t*)p + n);
        else file->write(p, n);
        pos += n;
    }
    void write(const std::vector<uint8_t>& v) { write(v.data(), v.size()); }
};

void zip_write(ZipOut& out, const Npz& z, bool compress, bool force_zip64) {
    const uint16_t dos_time = 0, dos_date = (0 << 9) | (1 << 5) | 1;  // 1980-01-01: reproducible files
    const uint64_t m32 = 0xffffffffu;
    std::vector<ZipEntry> entries;
    for (const std::string& k : z.names) {
        auto it = z.arrays.find(k);
        CHECK(it != z.arrays.end(), "Npz name '%s' has no array (use Npz::set)", k.c_str());
        const NpyArray& a = it->second;
        std::vector<uint8_t> head = npy_header(a);
        ZipEntry e;
        e.name = k + ".npy";
        CHECK(e.name.size() <= 0xffff, "npz member name of %zu bytes (expected <= 65535)", e.name.size());
        e.method = compress ? 8 : 0;
        e.flags = std::any_of(e.name.begin(), e.name.end(), [](char c) { return (unsigned char)c >= 0x80; }) ? 0x800 : 0;
        e.usize = head.size() + a.bytes.size();
        e.crc = crc32_bytes(crc32_bytes(0, head.data(), head.size()), a.bytes.data(), a.bytes.size());
        std::vector<uint8_t> packed;
        if (compress) packed = deflate_pieces({{head.data(), head.size()}, {a.bytes.data(), a.bytes.size()}});
        e.csize = compress ? packed.size() : e.usize;
        e.offset = out.pos;
        bool z64 = force_zip64 || e.usize >= m32 || e.csize >= m32;
        std::vector<uint8_t> h;
        put32(h, kSigLocal), put16(h, z64 ? 45 : 20), put16(h, e.flags), put16(h, e.method);
        put16(h, dos_time), put16(h, dos_date), put32(h, e.crc);
        put32(h, z64 ? m32 : e.csize), put32(h, z64 ? m32 : e.usize);
        put16(h, e.name.size()), put16(h, z64 ? 20 : 0);
        h.insert(h.end(), e.name.begin(), e.name.end());
        if (z64) put16(h, 1), put16(h, 16), put64(h, e.usize), put64(h, e.csize);
        out.write(h);
        if (compress) out.write(packed);
        else out.write(head), out.write(a.bytes);
        entries.push_back(e);
    }
    uint64_t cd_offset = out.pos;
    for (const ZipEntry& e : entries) {
        bool u64 = force_zip64 || e.usize >= m32, c64 = force_zip64 || e.csize >= m32,
             o64 = force_zip64 || e.offset >= m32;
        std::vector<uint8_t> extra;
        if (u64 || c64 || o64) {
            put16(extra, 1), put16(extra, 8 * (u64 + c64 + o64));
            if (u64) put64(extra, e.usize);
            if (c64) put64(extra, e.csize);
            if (o64) put64(extra, e.offset);
        }
        std::vector<uint8_t> h;
        put32(h, kSigCentral), put16(h, 3 << 8 | 45), put16(h, extra.empty() ? 20 : 45);
        put16(h, e.flags), put16(h, e.method), put16(h, dos_time), put16(h, dos_date), put32(h, e.crc);
        put32(h, c64 ? m32 : e.csize), put32(h, u64 ? m32 : e.usize);
        put16(h, e.name.size()), put16(h, extra.size()), put16(h, 0);  // comment length
        put16(h, 0), put16(h, 0), put32(h, 0644u << 16);                // disk, internal, external attrs
        put32(h, o64 ? m32 : e.offset);
        h.insert(h.end(), e.name.begin(), e.name.end());
        h.insert(h.end(), extra.begin(), extra.end());
        out.write(h);
    }
    uint64_t cd_size = out.pos - cd_offset, count = entries.size();
    bool z64 = force_zip64 || count >= 0xffff || cd_size >= m32 || cd_offset >= m32;
    std::vector<uint8_t> h;
    if (z64) {
        uint64_t rec = out.pos;
        put32(h, kSigEocd64), put64(h, 44), put16(h, 3 << 8 | 45), put16(h, 45), put32(h, 0), put32(h, 0);
        put64(h, count), put64(h, count), put64(h, cd_size), put64(h, cd_offset);
        put32(h, kSigLocator64), put32(h, 0), put64(h, rec), put32(h, 1);
    }
    put32(h, kSigEocd), put16(h, 0), put16(h, 0);
    put16(h, z64 ? 0xffff : count), put16(h, z64 ? 0xffff : count);
    put32(h, z64 ? m32 : cd_size), put32(h, z64 ? m32 : cd_offset), put16(h, 0);
    out.write(h);
}

}  // namespace

// ---- NpyArray -------------------------------------------------------------------------------
const char* dtype_name(DType d) {
    switch (d) {
        case DType::F32: return "float32";
        case DType::F64: return "float64";
        case DType::U8: return "uint8";
        case DType::I32: return "int32";
        case DType::I64: return "int64";
        case DType::Bool: return "bool";
        case DType::Unicode: return "str";
    }
    return "?";
}

int64_t NpyArray::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

int64_t NpyArray::itemsize() const { return dtype_itemsize(dtype, str_len); }

static NpyArray npy_from(DType dt, const Shape& s, const void* v, int64_t itemsize) {
    int64_t numel = 0, nbytes = 0;
    CHECK(shape_bytes(s, itemsize, numel, nbytes), "bad shape %s (negative or overflowing)", shape_text(s).c_str());
    NpyArray a;
    a.dtype = dt;
    a.shape = s;
    if (nbytes > 0) a.bytes.assign((const uint8_t*)v, (const uint8_t*)v + nbytes);
    return a;
}

NpyArray NpyArray::from_f32(const Shape& s, const float* v) { return npy_from(DType::F32, s, v, 4); }
NpyArray NpyArray::from_f64(const Shape& s, const double* v) { return npy_from(DType::F64, s, v, 8); }
NpyArray NpyArray::from_u8(const Shape& s, const uint8_t* v) { return npy_from(DType::U8, s, v, 1); }
NpyArray NpyArray::from_i32(const Shape& s, const int32_t* v) { return npy_from(DType::I32, s, v, 4); }
NpyArray NpyArray::from_i64(const Shape& s, const int64_t* v) { return npy_from(DType::I64, s, v, 8); }
NpyArray NpyArray::from_bool(const Shape& s, const bool* v) {
    NpyArray a = npy_from(DType::Bool, s, nullptr, 0);  // validates the shape
    a.bytes.resize((size_t)a.numel());
    for (size_t i = 0; i < a.bytes.size(); i++) a.bytes[i] = v[i] ? 1 : 0;
    return a;
}
NpyArray NpyArray::scalar_f32(float v) { return from_f32({}, &v); }

NpyArray NpyArray::from_strings(const std::vector<std::string>& v, const Shape& s) {
    Shape shape = s.empty() ? Shape{(int64_t)v.size()} : s;
    NpyArray a = npy_from(DType::Unicode, shape, nullptr, 0);
    CHECK(a.numel() == (int64_t)v.size(), "from_strings: %zu strings for shape %s", v.size(), shape_text(shape).c_str());
    std::vector<std::vector<uint32_t>> cps;
    size_t longest = 1;
    for (size_t i = 0; i < v.size(); i++) {
        cps.push_back(utf8_decode(v[i], i));
        longest = std::max(longest, cps.back().size());
    }
    CHECK(longest <= (1u << 28), "from_strings: a string of %zu code points is too long", longest);
    a.str_len = (int)longest;
    a.bytes.assign(v.size() * longest * 4, 0);
    for (size_t i = 0; i < cps.size(); i++)
        if (!cps[i].empty()) memcpy(a.bytes.data() + i * longest * 4, cps[i].data(), cps[i].size() * 4);
    return a;
}

template <class T>
static std::vector<T> npy_convert(const NpyArray& a, const char* fn, bool allow_float) {
    bool is_float = a.dtype == DType::F32 || a.dtype == DType::F64;
    if (a.dtype == DType::Unicode || (is_float && !allow_float))
        fail("NpyArray::%s: the array is %s (expected %s)", fn, dtype_name(a.dtype),
             allow_float ? "a numeric or bool dtype" : "an integer or bool dtype");
    int64_t n = a.numel(), w = a.itemsize();
    CHECK((int64_t)a.bytes.size() == n * w, "NpyArray holds %zu bytes for %lld elements", a.bytes.size(), (long long)n);
    std::vector<T> out((size_t)n);
    const uint8_t* p = a.bytes.data();
    for (int64_t i = 0; i < n; i++, p += w) {
        switch (a.dtype) {
            case DType::F32: { float x; memcpy(&x, p, 4); out[i] = (T)x; break; }
            case DType::F64: { double x; memcpy(&x, p, 8); out[i] = (T)x; break; }
            case DType::I32: { int32_t x; memcpy(&x, p, 4); out[i] = (T)x; break; }
            case DType::I64: { int64_t x; memcpy(&x, p, 8); out[i] = (T)x; break; }
            case DType::U8: out[i] = (T)*p; break;
            case DType::Bool: out[i] = (T)(*p != 0); break;
            case DType::Unicode: break;
        }
    }
    return out;
}

std::vector<float> NpyArray::to_f32() const { return npy_convert<float>(*this, "to_f32", true); }
std::vector<double> NpyArray::to_f64() const { return npy_convert<double>(*this, "to_f64", true); }
std::vector<int64_t> NpyArray::to_i64() const { return npy_convert<int64_t>(*this, "to_i64", false); }

std::vector<std::string> NpyArray::to_strings() const {
    if (dtype != DType::Unicode) fail("NpyArray::to_strings: the array is %s (expected a str dtype)", dtype_name(dtype));
    int64_t n = numel();
    CHECK((int64_t)bytes.size() == n * itemsize(), "NpyArray holds %zu bytes for %lld elements", bytes.size(), (long long)n);
    std::vector<std::string> out((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t* p = bytes.data() + i * itemsize();
        int len = str_len;
        while (len > 0 && rd32(p + 4 * (len - 1)) == 0) len--;  // numpy drops trailing NULs
        for (int k = 0; k < len; k++) {
            uint32_t c = rd32(p + 4 * k);
            if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                fail("NpyArray::to_strings: element %lld holds invalid code point 0x%x", (long long)i, c);
            utf8_append(out[i], c);
        }
    }
    return out;
}

// ---- .npy -----------------------------------------------------------------------------------
NpyArray npy_parse(const uint8_t* data, size_t n, const std::string& what) {
    return npy_parse_labeled(data, n, "'" + what + "'");
}

std::vector<uint8_t> npy_serialize(const NpyArray& a) {
    std::vector<uint8_t> out = npy_header(a);
    out.insert(out.end(), a.bytes.begin(), a.bytes.end());
    return out;
}

NpyArray npy_read(const std::string& path) {
    std::vector<uint8_t> d = file_read_all(path);
    return npy_parse(d.data(), d.size(), path);
}

void npy_write(const std::string& path, const NpyArray& a) {
    std::vector<uint8_t> head = npy_header(a);
    AtomicFile f(path);
    f.write(head.data(), head.size());
    f.write(a.bytes.data(), a.bytes.size());
    f.commit();
}

// ---- .npz -----------------------------------------------------------------------------------
bool Npz::has(const std::string& k) const { return arrays.count(k) > 0; }

const NpyArray& Npz::get(const std::string& k) const {
    auto it = arrays.find(k);
    if (it != arrays.end()) return it->second;
    std::string keys;
    for (size_t i = 0; i < names.size() && i < 20; i++) keys += (i ? ", " : "") + names[i];
    if (names.size() > 20) keys += strfmt(", ... (%zu in all)", names.size());
    fail("'%s' has no array '%s' (available: %s)", path.empty() ? "<npz in memory>" : path.c_str(), k.c_str(),
         names.empty() ? "none" : keys.c_str());
}

void Npz::set(const std::string& k, NpyArray a) {
    if (!has(k)) names.push_back(k);
    arrays[k] = std::move(a);
}

// ---- zip: the one reader of .npz archives (npz_parse here, models/datasets/npz_stream streams) ------
std::string npz_member_label(const std::string& what, const std::string& name) { return member_label(what, name); }

std::vector<ZipMember> zip_directory(const ZipReadAt& read_at, uint64_t n, const std::string& what) {
    std::string label = "'" + what + "'";

    // 1. The EOCD: the last signature in the final 64 KiB whose comment fits in the file.
    if (n < 22)
        failf(label, "truncated or not an .npz (zip) file: %llu bytes, less than the 22-byte end record",
              (unsigned long long)n);
    const uint64_t tail_n = std::min<uint64_t>(n, 22 + 0xffff), tail_off = n - tail_n;
    std::vector<uint8_t> tail((size_t)tail_n);
    read_at(tail_off, tail.data(), tail.size());
    const uint8_t* t = tail.data();
    uint64_t eocd = UINT64_MAX;
    for (uint64_t i = tail_n - 22 + 1; i-- > 0;)
        if (rd32(t + i) == kSigEocd && i + 22 + rd16(t + i + 20) <= tail_n) { eocd = i; break; }
    if (eocd == UINT64_MAX) {
        uint8_t head[8] = {0};
        read_at(0, head, (size_t)std::min<uint64_t>(n, 8));
        if (n >= 6 && !memcmp(head, "\x93NUMPY", 6))
            failf(label, "is a .npy file, not an .npz archive (read it with npy_read; numpy.savez writes .npz)");
        failf(label, "truncated or not an .npz (zip) file: no end-of-central-directory record in its last "
              "%llu bytes (file starts \"%s\")", (unsigned long long)tail_n,
              excerpt(head, (size_t)std::min<uint64_t>(n, 8)).c_str());
    }
    const uint8_t* e = t + eocd;
    eocd += tail_off;  // from here on, offsets in the file
    uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), count = rd16(e + 10);
    uint64_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16), cd_limit = eocd;
    uint8_t loc[20];
    if (eocd >= 20 && (read_at(eocd - 20, loc, 20), rd32(loc) == kSigLocator64)) {  // ZIP64: the 64-bit values
        uint64_t rec = rd64(loc + 8);
        uint8_t r[56];
        if (rec > eocd - 20 || eocd - 20 - rec < 56 || (read_at(rec, r, 56), rd32(r) != kSigEocd64))
            failf(label, "corrupt zip: the ZIP64 locator points at offset %llu, where no ZIP64 end record "
                  "(signature 0x%08x, 56 bytes) lies before offset %llu", (unsigned long long)rec, kSigEocd64,
                  (unsigned long long)(eocd - 20));
        disk = rd32(r + 16), cd_disk = rd32(r + 20), count = rd64(r + 32);
        cd_size = rd64(r + 40), cd_offset = rd64(r + 48), cd_limit = rec;
    }
    if (disk != 0 || cd_disk != 0)
        failf(label, "multi-disk zip archives are not supported (disk %llu, central directory on disk %llu)",
              (unsigned long long)disk, (unsigned long long)cd_disk);
    if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
        failf(label, "truncated or corrupt zip: central directory of %llu bytes at offset %llu does not fit "
              "before the end record at offset %llu", (unsigned long long)cd_size, (unsigned long long)cd_offset,
              (unsigned long long)cd_limit);
    if (count > cd_size / 46)
        failf(label, "corrupt zip: %llu entries cannot fit in a %llu-byte central directory",
              (unsigned long long)count, (unsigned long long)cd_size);

    // 2. The central directory (its bytes are in the file: cd_size <= n).
    mem_check(label + ": the zip central directory", cd_size);
    std::vector<uint8_t> cd((size_t)cd_size);
    read_at(cd_offset, cd.data(), cd.size());
    std::vector<ZipMember> members;
    std::set<std::string> keys;
    uint64_t p = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (cd_size - p < 46 || rd32(&cd[p]) != kSigCentral)
            failf(label, "corrupt zip: central directory entry %llu at offset %llu (expected signature 0x%08x, found \"%s\")",
                  (unsigned long long)i, (unsigned long long)(cd_offset + p), kSigCentral,
                  excerpt(&cd[p], (size_t)std::min<uint64_t>(cd_size - p, 4)).c_str());
        const uint8_t* c = &cd[p];
        ZipMember m;
        uint16_t flags = rd16(c + 8);
        m.method = rd16(c + 10), m.crc = rd32(c + 16);
        m.csize = rd32(c + 20), m.usize = rd32(c + 24), m.offset = rd32(c + 42);
        uint32_t disk_start = rd16(c + 34);
        size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
        if (46 + nlen + xlen + clen > cd_size - p)
            failf(label, "corrupt zip: central directory entry %llu overruns the directory", (unsigned long long)i);
        std::string raw_name((const char*)c + 46, nlen);
        std::string mlabel = member_label(what, raw_name);
        for (const uint8_t *x = c + 46 + nlen, *xend = x + xlen; xend - x >= 4;) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if (sz > xend - x - 4) failf(mlabel, "corrupt zip: extra field 0x%04x of %u bytes overruns its entry", id, sz);
            if (id == 1) {  // ZIP64: the 64-bit values of the fields set to 0xffffffff, in this order
                const uint8_t *q = x + 4, *qend = q + sz;
                for (uint64_t* f : {&m.usize, &m.csize, &m.offset}) {
                    if (*f != 0xffffffffu) continue;
                    if (qend - q < 8) failf(mlabel, "corrupt zip: ZIP64 extra field of %u bytes is too short", sz);
                    *f = rd64(q), q += 8;
                }
                if (disk_start == 0xffff && qend - q >= 4) disk_start = rd32(q);
            }
            x += 4 + sz;
        }
        p += 46 + nlen + xlen + clen;
        if (disk_start != 0) failf(mlabel, "multi-disk zip archives are not supported");
        if (!raw_name.empty() && raw_name.back() == '/' && m.usize == 0) continue;  // a directory entry
        if (flags & 1) failf(mlabel, "encrypted zip members are not supported");
        if (m.method != 0 && m.method != 8)
            failf(mlabel, "unsupported compression method %u (expected 0 stored or 8 deflate)", m.method);
        if (m.method == 0 && m.csize != m.usize)
            failf(mlabel, "stored member of %llu bytes declares %llu uncompressed bytes", (unsigned long long)m.csize,
                  (unsigned long long)m.usize);
        if (m.method == 8 && m.usize / 1032 > m.csize + 1)  // deflate expands at most ~1032:1
            failf(mlabel, "declares %llu uncompressed bytes from %llu compressed, beyond deflate's 1032:1 limit "
                  "(corrupt or a zip bomb)", (unsigned long long)m.usize, (unsigned long long)m.csize);
        m.name = raw_name;
        if (m.name.size() >= 4 && m.name.compare(m.name.size() - 4, 4, ".npy") == 0) m.name.resize(m.name.size() - 4);
        if (!keys.insert(m.name).second)
            failf(mlabel, "duplicate member name: the archive holds array '%s' twice (numpy would silently take the "
                  "last one; rewrite the file with one array per name)", excerpt(m.name.data(), m.name.size(), 100).c_str());
        m.raw_name = raw_name;
        members.push_back(std::move(m));
    }

    // 3. Local headers: each member's data must lie before the directory, without overlap
    // (overlapping members are the classic way to build a zip bomb).
    for (ZipMember& m : members) {
        std::string mlabel = member_label(what, m.raw_name);
        uint8_t h[30];
        if (m.offset > cd_offset || cd_offset - m.offset < 30 || (read_at(m.offset, h, 30), rd32(h) != kSigLocal))
            failf(mlabel, "corrupt zip: no local header at offset %llu (expected signature 0x%08x before the "
                  "central directory at %llu)", (unsigned long long)m.offset, kSigLocal, (unsigned long long)cd_offset);
        m.data = m.offset + 30 + rd16(h + 26) + rd16(h + 28);
        if (m.data > cd_offset || m.csize > cd_offset - m.data)
            failf(mlabel, "member data (%llu bytes at offset %llu) runs past the central directory at offset %llu "
                  "(truncated?)", (unsigned long long)m.csize, (unsigned long long)m.data, (unsigned long long)cd_offset);
    }
    std::vector<const ZipMember*> order;
    for (const ZipMember& m : members) order.push_back(&m);
    std::sort(order.begin(), order.end(), [](const ZipMember* a, const ZipMember* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); i++) {
        const ZipMember &a = *order[i - 1], &b = *order[i];
        if (a.data + a.csize > b.offset)
            failf(label, "corrupt zip: members '%s' and '%s' overlap (a zip bomb or a damaged file)",
                  excerpt(a.raw_name.data(), a.raw_name.size(), 100).c_str(),
                  excerpt(b.raw_name.data(), b.raw_name.size(), 100).c_str());
    }
    return members;
}

NpyArray zip_member_array(const uint8_t* raw, const ZipMember& m, const std::string& what) {
    std::string mlabel = member_label(what, m.raw_name);
    std::vector<uint8_t> inflated;
    const uint8_t* mem = raw;
    if (m.method == 8) {
        inflated = zip_inflate(raw, m.csize, m.usize, mlabel);
        mem = inflated.data();
    }
    uint32_t crc = crc32_bytes(0, mem, m.usize);
    if (crc != m.crc)
        failf(mlabel, "CRC-32 mismatch (central directory says 0x%08x, data gives 0x%08x): the file is corrupt",
              m.crc, crc);
    return npy_parse_labeled(mem, (size_t)m.usize, mlabel);
}

Npz npz_parse(const uint8_t* d, size_t n, const std::string& what) {
    std::string label = "'" + what + "'";
    std::vector<ZipMember> members = zip_directory(
        [&](uint64_t off, void* dst, size_t len) {
            if (off > n || len > n - off)
                failf(label, "truncated: needs bytes [%llu, %llu) of a %zu-byte file", (unsigned long long)off,
                      (unsigned long long)(off + len), n);
            if (len > 0) memcpy(dst, d + off, len);  // an empty directory reads nothing
        },
        n, what);
    // Memory: every array kept, plus the largest member while it is inflated.
    uint64_t total = 0, largest = 0;
    for (const ZipMember& m : members) {
        if (__builtin_add_overflow(total, m.usize, &total)) total = UINT64_MAX;
        largest = std::max(largest, m.usize);
    }
    mem_check(label + strfmt(" (%zu arrays)", members.size()), total > UINT64_MAX - largest ? UINT64_MAX : total + largest);
    Npz z;
    z.path = what;
    for (const ZipMember& m : members) {
        z.names.push_back(m.name);
        z.arrays.emplace(m.name, zip_member_array(d + m.data, m, what));
    }
    return z;
}

Npz npz_read(const std::string& path) {
    std::vector<uint8_t> d = file_read_all(path);
    return npz_parse(d.data(), d.size(), path);
}

std::vector<uint8_t> npz_serialize(const Npz& z, bool compress, bool force_zip64) {
    std::vector<uint8_t> bytes;
    ZipOut out;
    out.mem = &bytes;
    zip_write(out, z, compress, force_zip64);
    return bytes;
}

void npz_write(const std::string& path, const Npz& z, bool compress) {
    AtomicFile f(path);
    ZipOut out;
    out.file = &f;
    zip_write(out, z, compress, false);
    f.commit();
}

// ---- whole files ----------------------------------------------------------------------------
std::vector<uint8_t> file_read_all(const std::string& path) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("cannot open '%s': %s", path.c_str(), strerror(errno));
    struct Closer {
        FILE* f;
        ~Closer() { fclose(f); }
    } closer{f};
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) fail("cannot open '%s': %s", path.c_str(), strerror(EISDIR));
    std::vector<uint8_t> d;
    if (st.st_size > 0) mem_check("'" + path + "'", (uint64_t)st.st_size), d.reserve((size_t)st.st_size);
    uint8_t buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) d.insert(d.end(), buf, buf + got);
    if (ferror(f)) fail("cannot read '%s': %s", path.c_str(), strerror(errno));
    return d;
}

uint32_t file_crc32(const std::string& path, uint64_t* bytes) {
    std::unique_ptr<FILE, int (*)(FILE*)> file(fopen(path.c_str(), "rb"), fclose);
    FILE* f = file.get();
    if (!f) fail("cannot open '%s': %s", path.c_str(), strerror(errno));
    std::vector<uint8_t> buf((size_t)1 << 20);
    uint32_t crc = 0;
    uint64_t n = 0;
    size_t got;
    while ((got = fread(buf.data(), 1, buf.size(), f)) > 0) crc = crc32_bytes(crc, buf.data(), got), n += got;
    if (ferror(f)) fail("cannot read '%s': %s", path.c_str(), strerror(errno));
    if (bytes) *bytes = n;
    return crc;
}

void file_write_atomic(const std::string& path, const void* data, size_t n) {
    AtomicFile f(path);
    f.write(data, n);
    f.commit();
}

}  // namespace vt
