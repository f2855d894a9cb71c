// progress.cpp: the progress bar (see progress.h).
#include "engine/progress.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "kernels/error.h"

namespace vt {

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double s) {
    if (!(s >= 0) || s > 1e7) return "?";
    long t = (long)(s + 0.5), h = t / 3600, m = t / 60 % 60, sec = t % 60;
    char buf[32];
    if (h) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", h, m, sec);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", m, sec);
    return buf;
}

static bool g_enabled = true;
void progress_set_enabled(bool on) { g_enabled = on; }

Progress::Progress(std::string l, int64_t n, std::string u)
    : label(std::move(l)), unit(std::move(u)), total(n), t0(now_s()), tty(isatty(2)) {}

double Progress::elapsed() const { return now_s() - t0; }

void Progress::update(int64_t done, const std::string& info) {
    if (!g_enabled) return;
    double t = now_s(), dt = t - t0;
    int decile = total > 0 ? (int)(10 * done / total) : 0;
    if (tty ? (t - last_draw < 0.12 && done < total) : decile == last_decile) return;
    last_draw = t;
    last_decile = decile;
    double rate = dt > 0 ? done / dt : 0, frac = total > 0 ? (double)done / total : 0;
    std::string eta = rate > 0 && done < total ? format_duration((total - done) / rate) : "0:00";
    const int W = 24;
    std::string bar(W, ' ');
    for (int i = 0; i < (int)(frac * W + 0.5) && i < W; i++) bar[i] = '=';
    std::fprintf(stderr, "%s%s [%s] %3.0f%% %lld/%lld %s ETA %s %s%s", tty ? "\r\033[K" : "", label.c_str(),
                 bar.c_str(), 100 * frac, (long long)done, (long long)total, format_rate(rate, unit).c_str(),
                 eta.c_str(), info.c_str(), tty ? "" : "\n");
    std::fflush(stderr);
}

std::string format_rate(double per_second, const std::string& unit) {
    if (!(per_second > 0) || !std::isfinite(per_second)) return "- " + unit + "/s";
    if (per_second >= 10) return strfmt("%.0f %s/s", per_second, unit.c_str());
    if (per_second >= 1) return strfmt("%.1f %s/s", per_second, unit.c_str());
    return strfmt("%.1f s/%s", 1 / per_second, unit.c_str());
}

void Progress::finish(const std::string& info) {
    if (!g_enabled) return;
    std::fprintf(stderr, "%s%s done in %s %s\n", tty ? "\r\033[K" : "", label.c_str(), format_duration(elapsed()).c_str(),
                 info.c_str());
}

}  // namespace vt
