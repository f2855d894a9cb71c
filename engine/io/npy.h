// npy.h: NumPy .npy and .npz files, read and written without Python.
//
// An NpyArray is the raw content of one .npy: a dtype, a shape and the element bytes,
// little-endian and in C order. Reading accepts header versions 1.0/2.0/3.0, big-endian
// dtypes (byte-swapped on load) and fortran_order arrays (transposed to C order on load).
// An Npz is a zip of .npy members (stored or deflated, ZIP64 when large), read through the
// central directory.
//
// Every malformed input (truncated, corrupt, lying sizes, zip bombs, duplicate member names)
// ends in vt::fail with one line that names the file and member and says what was expected
// and what was found. Sizes are multiplied in checked 64-bit arithmetic and checked against
// the bytes actually present and the memory the process may use (engine/common.h mem_check)
// before anything is allocated.
//
// There is one zip reader, zip_directory: npz_parse reads through it from memory and
// models/datasets/npz_stream.h from a file, member by member.
//
// This file depends on engine/common.* only (the fuzz targets link it without the tensor
// engine). Loaders that build Tensors convert with to_f32().
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/common.h"

namespace vt {

using Shape = std::vector<int64_t>;  // same alias as engine/tensor.h

enum class DType { F32, F64, U8, I32, I64, Bool, Unicode };
const char* dtype_name(DType d);     // "float32", "float64", "uint8", "int32", "int64", "bool", "str"

struct NpyArray {
    DType dtype = DType::F32;
    Shape shape;                     // () for a 0-d scalar
    int str_len = 0;                 // Unicode only: code points per element ('<U5' -> 5)
    std::vector<uint8_t> bytes;      // numel * itemsize, little-endian, C order (Unicode: UCS-4)

    int64_t numel() const;           // product of shape (1 for 0-d)
    int64_t itemsize() const;        // bytes per element

    // Copies numel(shape) elements from `v`.
    static NpyArray from_f32(const Shape& s, const float* v);
    static NpyArray from_f64(const Shape& s, const double* v);
    static NpyArray from_u8(const Shape& s, const uint8_t* v);
    static NpyArray from_i32(const Shape& s, const int32_t* v);
    static NpyArray from_i64(const Shape& s, const int64_t* v);
    static NpyArray from_bool(const Shape& s, const bool* v);
    // UTF-8 strings -> '<U n' with n the longest string in code points (at least 1);
    // s empty => shape (v.size(),). Invalid UTF-8: vt::fail.
    static NpyArray from_strings(const std::vector<std::string>& v, const Shape& s = {});
    static NpyArray scalar_f32(float v);  // 0-d

    std::vector<float> to_f32() const;    // any numeric dtype or bool; Unicode: vt::fail
    std::vector<double> to_f64() const;   // any numeric dtype or bool; Unicode: vt::fail
    std::vector<int64_t> to_i64() const;  // integer and bool dtypes only, else vt::fail
    std::vector<std::string> to_strings() const;  // Unicode only (UTF-8, trailing NULs cut)
};

// ---- .npy -----------------------------------------------------------------------------
struct NpyHeader {
    DType dtype = DType::F32;
    int str_len = 0;                 // Unicode only
    int swap_width = 0;              // > 0: big-endian data, swap groups of this many bytes
    bool fortran = false;            // fortran_order
    Shape shape;
    size_t data_offset = 0;          // where the elements start (preamble + dict)
    int64_t numel = 0;               // product of shape, checked
    int64_t nbytes = 0;              // numel * itemsize, checked (no int64 overflow)
};
// The preamble and dict at the start of a .npy; the data need not follow.
NpyHeader npy_parse_header(const uint8_t* data,       // the first n bytes of a .npy
                           size_t n,                  // at least preamble + dict
                           const std::string& label); // message prefix, quoted: "'f.npz' member 'x'"
// Elements of `w` bytes of an array of shape s (numel > 0) from column-major (fortran_order)
// to row-major order; dst and src do not overlap.
void npy_fortran_to_c(uint8_t* dst, const uint8_t* src, const Shape& s, int64_t numel, size_t w);

NpyArray npy_parse(const uint8_t* data,      // a whole .npy image
                   size_t n,                 // its length in bytes
                   const std::string& what); // file or member name, for messages
std::vector<uint8_t> npy_serialize(const NpyArray& a);  // version 1.0 (2.0 if the header is huge)
NpyArray npy_read(const std::string& path);             // missing: "cannot open 'X': ..."
void npy_write(const std::string& path,      // written as path.tmp.<pid>, fsynced, renamed
               const NpyArray& a);

// ---- .npz -----------------------------------------------------------------------------
struct Npz {
    std::vector<std::string> names;          // member order as in the file, without ".npy"
    std::map<std::string, NpyArray> arrays;  // by name
    std::string path;                        // set by npz_read, for messages

    bool has(const std::string& k) const;
    const NpyArray& get(const std::string& k) const;  // missing: vt::fail naming the file and the keys
    void set(const std::string& k, NpyArray a);       // replaces in place or appends to names
};

Npz npz_parse(const uint8_t* data,           // a whole .npz (zip) image
              size_t n,                      // its length in bytes
              const std::string& what);      // file name, for messages
Npz npz_read(const std::string& path);
void npz_write(const std::string& path,      // written as path.tmp.<pid>, fsynced, renamed
               const Npz& z,                 // members written in z.names order
               bool compress = true);        // deflate (method 8) or stored (method 0)
std::vector<uint8_t> npz_serialize(const Npz& z,              // the bytes npz_write writes
                                   bool compress = true,      // deflate or stored
                                   bool force_zip64 = false); // ZIP64 records even when small (tests)

// ---- zip: the central directory, checked ------------------------------------------------
struct ZipMember {
    std::string name;                // the array name: the member name without ".npy", unique
    std::string raw_name;            // the member name as stored, for messages
    uint16_t method = 0;             // 0 stored, 8 deflate
    uint32_t crc = 0;                // CRC-32 of the uncompressed bytes
    uint64_t csize = 0, usize = 0;   // compressed / uncompressed bytes (usize <= 1032 csize + 1032)
    uint64_t offset = 0;             // the member's local header
    uint64_t data = 0;               // its compressed bytes: [data, data + csize), before the directory
};
// Reads n bytes at offset `off` of the archive into dst, or fails (truncated).
using ZipReadAt = std::function<void(uint64_t off, void* dst, size_t n)>;

// The members of a zip of `size` bytes, in central-directory order (directory entries left
// out). Fails naming the file (and member) on anything malformed: no end record, a directory
// that does not fit, ZIP64 records that lie, multi-disk, encrypted or unsupported compression,
// stored sizes that differ, a ratio beyond deflate's, members past the directory or
// overlapping, and duplicate array names.
std::vector<ZipMember> zip_directory(const ZipReadAt& read_at,  // the archive's bytes
                                     uint64_t size,             // its length
                                     const std::string& what);  // file name, for messages
// One member's array from its compressed bytes: inflated (growing with the output, at most
// m.usize), CRC-checked, parsed.
NpyArray zip_member_array(const uint8_t* raw,        // m.csize bytes read from m.data
                          const ZipMember& m,        // from zip_directory
                          const std::string& what);  // file name, for messages
std::string npz_member_label(const std::string& what,  // "'f.npz' member 'x.npy'", control
                             const std::string& raw_name);  // characters replaced, for messages

// ---- whole files (shared with engine/io/image.cpp) ----------------------------------------
std::vector<uint8_t> file_read_all(const std::string& path);  // missing: "cannot open 'X': ..."; mem_check'd
// zlib's CRC-32 of n bytes continued from `crc` (0 to start), in chunks zlib's uInt can count.
uint32_t crc32_bytes(uint32_t crc, const uint8_t* p, uint64_t n);
// The CRC-32 (zlib's) of a whole file, read in chunks, and its size in *bytes: a data file's
// fingerprint (the sweep reuses a run only on the same data). Fails naming a missing file.
uint32_t file_crc32(const std::string& path, uint64_t* bytes);
void file_write_atomic(const std::string& path,  // path.tmp.<pid> + fsync + rename
                       const void* data,         // bytes to write
                       size_t n);                // their count

}  // namespace vt
