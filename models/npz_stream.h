// npz_stream.h: one member of a large .npz at a time, without reading the whole file.
//
// engine/npy.h's npz_read holds the file's bytes and the parsed arrays at once (twice the
// file). Model features (N, T, D) run to several GB, and the neural data's per-trial
// responses too, so ./bin/score and the neural-data loader index the zip's central
// directory first and then stream single members: a large float array goes straight into
// the caller's buffer (float32 as is, float64 converted chunk by chunk), with the CRC-32
// checked on the way; a small member is read whole and parsed by engine's npy_parse, so it
// gets its full validation. Stored and deflated members, ZIP64. (A candidate for engine/.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/npy.h"

namespace vt {

struct NpzMember {
    std::string name;                // without ".npy"
    uint16_t method = 0;             // 0 stored, 8 deflate
    uint32_t crc = 0;
    uint64_t csize = 0, usize = 0;   // compressed / uncompressed bytes
    uint64_t local_offset = 0;       // the member's local header
};

struct NpzIndex {
    std::string path;
    std::vector<NpzMember> members;  // in central-directory order

    bool has(const std::string& name) const;
    const NpzMember& member(const std::string& name) const;  // fails naming the file and listing the members
};

// The header of one .npy member: element type and shape.
struct NpyHead {
    DType dtype = DType::F32;
    bool big_endian = false;
    bool fortran = false;
    int str_len = 0;                 // Unicode only
    Shape shape;
    int64_t numel() const;
};

NpzIndex npz_index(const std::string& path);                               // reads the central directory only
NpyHead npz_head(const NpzIndex& z, const std::string& name);              // reads only the member's header
NpyArray npz_array(const NpzIndex& z, const std::string& name);            // one whole member (npy_parse)
// Streams a float32 or float64 (little-endian, C-order) member of `numel` elements into dst
// as float32. Any other dtype, order or size fails naming the member.
void npz_read_f32(const NpzIndex& z, const std::string& name, float* dst, int64_t numel);

}  // namespace vt
