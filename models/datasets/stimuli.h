// stimuli.h: HvM-like object images rendered by the project itself, offline and
// deterministically (the stimuli of the virtual primate, virtual_primate.h).
//
// 8 categories x 8 objects = 64 objects, named after the HvM categories (Majaj et al. 2015):
// animals, boats, cars, chairs, faces, fruits, planes, tables. Each object is a flat 2D
// shape built from ellipses and polygons by its category's recipe (a quadruped of
// ellipses and bars, a hull with a sail or a cabin, a body on two wheels, ...); the eight
// objects of a category differ in proportions, parts and colours. The 64 shapes are fixed
// (they do not depend on the seed); the seed draws the poses and backgrounds.
//
// Each image shows one object over a textured background (1/f value noise in two random
// colours, a grating mixed with noise, or a horizon scene), anti-aliased by supersampling.
// Variation levels, as HvM's (which varied pose in depth; ours is in-plane):
//   V0  centred, scale 1, upright
//   V3  position +-0.2 of the image half-width, scale x [0.8, 1.25], rotation +-45 deg
//   V6  position +-0.45, scale x [0.625, 1.6], rotation +-90 deg
// At scale 1 an object spans about 60% of the image width.
// Image i shows object o = i mod 64 (the categories interleave: object o is number o / 8
// of category o mod 8, so any 8 consecutive images cover all 8 categories); the k-th image
// of an object has the level of position k mod 10 in (3, 6, 0, 3, 6, 3, 6, 0, 3, 6): per
// 10 images, 2 at V0, 4 at V3, 4 at V6.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/image.h"
#include "engine/tensor.h"

namespace vt {

struct StimulusConfig {
    int images = 640;     // N
    int size = 64;        // side in pixels (square RGB)
    uint64_t seed = 1;    // poses and backgrounds (the object shapes are fixed)
    int supersample = 3;  // anti-aliasing: samples per pixel along each axis
};

struct Stimulus {
    Image image;           // (size, size, 3)
    std::string id;        // "img0007"
    std::string object;    // "car3"
    std::string category;  // "cars"
    int variation = 0;     // 0, 3 or 6
};

std::vector<std::string> stimulus_categories();                   // the 8 category names, in order
std::vector<Stimulus> stimuli_render(const StimulusConfig& cfg);  // cfg.images stimuli, in order

// A grid of the images (cols per row, 2 px grey gaps), for looking at a stimulus set.
Image stimuli_contact_sheet(const std::vector<Stimulus>& s, int cols);

// Seeding helpers shared by the stimulus renderer and the virtual primate: splitmix64 of a
// pair (an independent stream per purpose and index), and a uniform draw in [a, b).
uint64_t seed_mix(uint64_t a, uint64_t b);
float U(Rng& r, float a, float b);

}  // namespace vt
