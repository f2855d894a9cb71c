// checkpoint.h: parameter arenas to and from .npz files that numpy.load opens as they are.
//
// One float32 array per parameter, named as in the arena ("conv3.weight"), shaped as
// declared; metadata arrays (architecture name, normalisation, epoch, ...) sit beside them
// under names starting with "meta." ; optimiser state under "optim.". Files are written to a
// temporary name and renamed, so an interrupted save leaves the previous checkpoint intact.
#pragma once
#include <string>

#include "engine/io/npy.h"
#include "engine/params.h"

namespace vt {

// Writes every parameter of `p`, then every array of `extra` (its names kept as given).
void checkpoint_save(const std::string& path, const ParamArena& p, const Npz& extra = {});

// Loads parameters into `p` by name. Every parameter of `p` must be in the file with its
// shape, unless it starts with one of `optional_prefixes` (then it keeps its value); an
// absent parameter or a shape mismatch fails naming the file, the parameter and both shapes.
// Returns the whole file, for the caller's metadata.
Npz checkpoint_load(const std::string& path, ParamArena& p, const std::vector<std::string>& optional_prefixes = {});

// Metadata helpers: a string or float stored as a 1-element array.
void meta_set_string(Npz& z, const std::string& key, const std::string& v);
void meta_set_floats(Npz& z, const std::string& key, const std::vector<float>& v);
std::string meta_string(const Npz& z, const std::string& key);   // fails naming the file if absent
std::vector<float> meta_floats(const Npz& z, const std::string& key);

}  // namespace vt
