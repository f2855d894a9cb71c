// npz_stream.h: one member of a large .npz at a time, without reading the whole file.
//
// engine/io/npy.h's npz_read holds the file's bytes and the parsed arrays at once (twice the
// file). Model features (N, T, D) run to several GB, and the neural data's per-trial
// responses too, so ./bin/score and the neural-data loader index the zip's central
// directory first and then stream single members: a large float array goes straight into
// the caller's buffer (float32 as is, float64 converted chunk by chunk), with the CRC-32
// checked on the way; a small member is read whole and parsed by engine's zip_member_array,
// so it gets its full validation. The directory is read and checked by engine's one zip
// reader (zip_directory: ZIP64, duplicate names, overlaps, bombs), and headers by its .npy
// header parser, so both paths accept and refuse the same files. (A candidate for engine/.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/npy.h"

namespace vt {

struct NpzIndex {
    std::string path;
    uint64_t size = 0;                // bytes in the file
    std::vector<ZipMember> members;   // in central-directory order, names unique

    bool has(const std::string& name) const;
    const ZipMember& member(const std::string& name) const;  // fails naming the file and listing the members
};

NpzIndex npz_index(const std::string& path);                       // reads the central directory only
// Reads only the member's header; fails when its shape needs more data than the member holds,
// so a size from a header can be allocated once this returns (after mem_check).
NpyHeader npz_head(const NpzIndex& z, const std::string& name);
NpyArray npz_array(const NpzIndex& z, const std::string& name);    // one whole member, mem_check'd
// Streams a float32 or float64 member of `numel` elements into dst as float32, in C order:
// big-endian elements are swapped and a Fortran-order member (numpy's file of a transposed
// array) is reordered as numpy.load does (a second copy in memory, checked). Another dtype or
// size fails naming the member.
void npz_read_f32(const NpzIndex& z, const std::string& name, float* dst, int64_t numel);

}  // namespace vt
