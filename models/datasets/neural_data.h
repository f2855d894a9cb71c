// neural_data.h: the neural dataset (.npz) that ventral fits and scores against.
//
// Sizes: R repetitions, N images, U units (recording sites), B time bins.
// Arrays of the file (docs/science.md section 3; tools/convert_*.py write them):
//   images          uint8 (N, H, W, 3)   RGB stimuli                              required
//   responses       float32 (R, N, U, B) firing rates; NaN where an image has
//                                         fewer than R repetitions                 required
//   unit_area       str (U,)             "V4", "IT", ...                          required
//   bin_start_ms    float32 (B,)         bin edges relative to image onset         required
//   bin_end_ms      float32 (B,)         (start < end)                             required
//   unit_id         str (U,)             optional (default "unit<k>")
//   image_id        str (N,)             optional (default "image<i>")
//   image_object    str (N,)             optional; the folds are stratified by it
//   image_category  str (N,)             optional
//   image_variation int (N,)             optional (HvM: 0, 3, 6)
//   presentation_ms scalar               optional (default 100)
// R = 1 is trial-averaged data: no noise ceiling exists and scores are raw r^2.
// Other members are ignored. Every violation fails with the file, the array, what was
// expected and what was found.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vt {

struct NeuralData {
    std::string path;                         // for messages
    int64_t R = 0, N = 0, U = 0, B = 0;
    int H = 0, W = 0;                         // image size (0 when loaded without images)
    std::vector<uint8_t> images;              // (N, H, W, 3); empty when loaded without images
    std::vector<float> responses;             // (R, N, U, B), NaN = missing trial
    std::vector<std::string> unit_area;       // (U)
    std::vector<std::string> unit_id;         // (U), filled with defaults when absent
    std::vector<std::string> image_id;        // (N), filled with defaults when absent
    std::vector<std::string> image_object;    // (N) or empty
    std::vector<std::string> image_category;  // (N) or empty
    std::vector<int32_t> image_variation;     // (N) or empty
    std::vector<float> bin_start_ms, bin_end_ms;  // (B)
    float presentation_ms = 100.f;

    float& at(int64_t r, int64_t i, int64_t u, int64_t b) { return responses[((r * N + i) * U + u) * B + b]; }
    float at(int64_t r, int64_t i, int64_t u, int64_t b) const { return responses[((r * N + i) * U + u) * B + b]; }
};

// Loads and validates a dataset. Without images the `images` member is checked (dtype,
// shape) from its header but not read: scoring needs only the responses.
NeuralData neural_data_load(const std::string& path, bool with_images = true);

// Checks sizes and values of an in-memory dataset (neural_data_load calls it).
void neural_data_validate(const NeuralData& d);

// Writes `d` in the format above (tests, and tools that derive datasets).
void neural_data_save(const std::string& path, const NeuralData& d);

// The areas in order of first appearance in unit_area.
std::vector<std::string> neural_areas(const NeuralData& d);

// Trial average (N, U, B): mean over the non-NaN repetitions, NaN where there are none.
std::vector<float> neural_trial_mean(const NeuralData& d);

}  // namespace vt
