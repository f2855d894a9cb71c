// npy.h: NumPy .npy and .npz files, read and written without Python.
//
// An NpyArray is the raw content of one .npy: a dtype, a shape and the element bytes,
// little-endian and in C order. Reading accepts header versions 1.0/2.0/3.0, big-endian
// dtypes (byte-swapped on load) and fortran_order arrays (transposed to C order on load).
// An Npz is a zip of .npy members (stored or deflated, ZIP64 when large), read through the
// central directory.
//
// Every malformed input (truncated, corrupt, lying sizes, zip bombs) ends in vt::fail with
// one line that names the file and member and says what was expected and what was found.
// Sizes are checked against the bytes actually present before anything is allocated.
//
// This file depends on engine/common.* only (the fuzz targets link it without the tensor
// engine). Loaders that build Tensors convert with to_f32().
#pragma once
#include <cstdint>
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

// ---- whole files (shared with engine/image.cpp) ----------------------------------------
std::vector<uint8_t> file_read_all(const std::string& path);  // missing: "cannot open 'X': ..."
void file_write_atomic(const std::string& path,  // path.tmp.<pid> + fsync + rename
                       const void* data,         // bytes to write
                       size_t n);                // their count

}  // namespace vt
