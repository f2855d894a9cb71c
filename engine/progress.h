// progress.h: a one-line progress bar with rate and ETA for long loops (stderr).
//
//   Progress bar("epoch 3/30", total_items, "img");
//   bar.update(done_items, "loss 1.23");   // redraws at most ~8 times a second
//   bar.finish("val top-1 0.71");
// On a terminal it redraws in place; otherwise (logs, CI) it prints a line every ~10%.
#pragma once
#include <string>

namespace vt {

struct Progress {
    std::string label, unit;
    int64_t total;
    double t0, last_draw = -1;
    int last_decile = -1;
    bool tty;

    Progress(std::string label, int64_t total, std::string unit);
    void update(int64_t done, const std::string& info = "");
    void finish(const std::string& info = "");
    double elapsed() const;  // seconds since construction
};

std::string format_duration(double seconds);

// The rate of `per_second` units a second as the bar shows it: "12 img/s", "2.5 it/s", and
// below one a second the time per unit, "3.2 s/it" (a BPTT iteration on the CPU), "-" when
// nothing is done yet.
std::string format_rate(double per_second, const std::string& unit);

// Silences every bar (the unit tests, whose logs would otherwise fill with them).
void progress_set_enabled(bool on);  // "1:02:03", "4:05"

}  // namespace vt
