// results.h: the one home of fit_dynamics' results.json ("format": "ventral-fit-dynamics-2",
// every key in docs/results.md): written here from a FitResult, read back here (by the sweep,
// and by anyone in C++), tested as a round trip (tests/test_dynamics.cpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/io/json.h"
#include "models/fit/dynamics.h"

namespace vt {

// -2: plain cells and stopping on the score became the default (with -1 files, a sweep would
// pair runs of the two procedures); -1 files are refused.
constexpr const char* kFitResultsFormat = "ventral-fit-dynamics-2";

// What the tool knows beside the fit's own settings.
struct FitRun {
    std::string preset;          // "cpu" or "gpu"
    std::string data;            // the dataset's path
    bool virtual_primate = false;
    std::vector<std::pair<std::string, std::string>> flags;  // fit_flag_values of its arguments
    uint32_t data_crc32 = 0;     // file_crc32 of the data, taken when it was loaded
    uint64_t data_bytes = 0;
    uint32_t backbone_crc32 = 0; // file_crc32 of the backbone (or --init) checkpoint
};

// The whole results.json of a fit.
Json fit_results_json(const FitConfig& c, const FitResult& R, const FitRun& run);

// ---- an unfinished run's fingerprint (fit_dynamics --resume) ------------------------------------
// DIR/.unfinished/run.json: the FitRun a run started with ("format": kFitRunFormat), so that
// --resume continues it only on the same data and checkpoint with the same flag values.
constexpr const char* kFitRunFormat = "ventral-fit-unfinished-1";
Json fit_run_json(const FitRun& run);
FitRun fit_run_read(const std::string& path);  // fails naming the file and the key when malformed
// What differs between the run that was started (`was`) and this one ("; "-joined; "" when
// nothing does): the data's checksum and size, the checkpoint's checksum, every flag value.
std::string fit_run_mismatch(const FitRun& was, const FitRun& now);
// A fingerprint of what the run fits (CRC-32 over the preset, the data's and the checkpoint's
// checksums and sizes and every flag value; not the data's path), kept in each finished
// split's record (FitConfig::run_id), so that a record gathered from another run is refused.
uint32_t fit_run_id(const FitRun& run);

// ---- reading it back ---------------------------------------------------------------------------

struct SweepEv {                             // an EV summary; NaN where results.json has null
    double mean = NAN, sem = NAN;            // over splits
    std::vector<double> per_split;           // (S) mean over bins per split; empty if not recorded
};

struct SweepBin {                            // one bin of an EV time course
    double start_ms = 0, end_ms = 0, mean = NAN, sem = NAN;
};

struct SweepArea {
    std::string area, layer;
    int units = 0, heldout_units = 0;
    SweepEv ev;                              // fit units on held-out images
    SweepEv heldout;                         // held-out units
    SweepEv teacher;                         // the virtual primate's teacher (the ceiling); NaN if none
    std::vector<SweepBin> bins;              // (B) fit units
    std::vector<SweepBin> teacher_bins;      // (B) or empty
};

struct SweepResult {                         // one configuration's results.json
    std::string motif, feedback;
    bool time_varied = false;
    int64_t trainable_params = 0;
    int splits = 0;
    double seconds = NAN;                    // wall time of the fit as results.json records it
    double ms_per_step = NAN, onset_ms = 0;  // for "image on" in the time-course plot
    int image_steps = -1;
    std::vector<SweepArea> areas;            // (A) in file order
    // What the run was, for the sweep's reuse check; empty / -1 in a file written before
    // they were recorded.
    std::string data, data_crc32;            // the dataset's path and its CRC-32 ("%08x")
    std::string backbone_crc32;              // the backbone (or --init) checkpoint's CRC-32
    int64_t data_bytes = -1;
    std::vector<std::pair<std::string, std::string>> flags;  // settings.flags (fit_flag_values)

    const SweepArea* area(const std::string& name) const;  // or nullptr
    double mean_ev() const;                  // mean over areas with a finite EV (NaN if none)
};

// Reads a fit_dynamics results.json of kFitResultsFormat (another format, or none, is refused
// naming it); a missing or mistyped required field fails naming the file and the field.
SweepResult sweep_result_load(const std::string& path);

}  // namespace vt
