// sweep.cpp: grids, the paired t-test and the report of ./bin/sweep (results.json is read
// through models/fit/results.h; models/fit/sweep.h has the what and why).
#include "models/fit/sweep.h"

#include "engine/io/json.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/common.h"
#include "engine/io/npy.h"
#include "engine/io/plot.h"
#include "engine/progress.h"
#include "models/cells.h"
#include "models/fit/fit_flags.h"
#include "models/fit/scoring.h"

namespace vt {
namespace fs = std::filesystem;

// ---- grids -----------------------------------------------------------------------------

namespace {

// The flags a grid line may set and those the sweep gives every fit alike: fit_dynamics' own
// table (models/fit/fit_flags.h), each flag's SweepRole as its tag. A private copy per call:
// checking a value parses it into the copy's variables.
struct FitTable {
    FitFlags values;
    Cli cli = fit_cli(values, "cpu");
    std::vector<std::string> names(int role) const {
        std::vector<std::string> v;
        for (const Cli::Flag& f : cli.flags)
            if (f.tag == role) v.push_back(f.name);
        return v;
    }
};

bool valid_name(const std::string& s) {
    if (s.empty() || s == "." || s == "..") return false;  // DIR/runs/.. would be DIR itself
    for (char c : s)
        if (!(std::isalnum((unsigned char)c) || std::strchr("_.+-", c))) return false;
    return true;
}

SweepConfig config(const std::string& name, std::vector<std::string> flags) { return {name, std::move(flags)}; }

void add_baselines(SweepGrid& g) {
    g.configs.push_back(config("ff", {"--motif", "none", "--feedback", "none"}));
    // motif and feedback play no part in the time-varied baseline; "none" records that (and
    // keeps the default conv5:conv2 from failing on backbones without conv5)
    g.configs.push_back(config("time_varied", {"--time-varied", "--motif", "none", "--feedback", "none"}));
}

}  // namespace

std::vector<std::string> sweep_builtin_grids() { return {"motifs", "feedback", "paper"}; }

std::vector<std::string> sweep_grid_flags() { return FitTable().names(kSweepConfig); }

std::vector<std::string> sweep_fixed_flags() { return FitTable().names(kSweepShared); }

bool sweep_grid_flag_is_switch(const std::string& name) {
    FitTable t;
    const Cli::Flag* f = t.cli.find(name);
    return f && f->tag == kSweepConfig && f->is_switch;
}

SweepGrid sweep_grid_builtin(const std::string& name) {
    SweepGrid g;
    g.name = name;
    g.source = "built-in";
    if (name == "motifs") {
        for (const std::string& m : motif_names()) g.configs.push_back(config(m, {"--motif", m, "--feedback", "conv5:conv2"}));
        add_baselines(g);
    } else if (name == "feedback") {
        // lstm alone (conv5:conv2) keeps the motifs grid's name, so the paper grid runs it once.
        const char* edges[][2] = {{"lstm", "conv5:conv2"}, {"lstm_5to3", "conv5:conv3"}, {"lstm_5to4", "conv5:conv4"},
                                  {"lstm_4to2", "conv4:conv2"}, {"lstm_4to3", "conv4:conv3"}, {"lstm_3to2", "conv3:conv2"}};
        g.configs.push_back(config("lstm_nofb", {"--motif", "lstm", "--feedback", "none"}));
        std::string all;
        for (auto& e : edges) {
            g.configs.push_back(config(e[0], {"--motif", "lstm", "--feedback", e[1]}));
            all += (all.empty() ? "" : ",") + std::string(e[1]);
        }
        g.configs.push_back(config("lstm_allfb", {"--motif", "lstm", "--feedback", all}));
        add_baselines(g);
    } else if (name == "paper") {
        for (const char* part : {"motifs", "feedback"})
            for (const SweepConfig& c : sweep_grid_builtin(part).configs) {
                bool seen = false;
                for (const SweepConfig& o : g.configs) seen |= o.name == c.name;
                if (!seen) g.configs.push_back(c);
            }
    } else {
        fail("--grid: unknown built-in grid '%s' (built in: motifs, feedback, paper; or a grid file)", name.c_str());
    }
    return g;
}

SweepGrid sweep_grid_parse(const std::string& text, const std::string& path) {
    SweepGrid g;
    g.name = fs::path(path).stem().string();
    g.source = path;
    std::vector<int> defined_on;  // line of each configuration, for duplicate names
    FitTable table;
    std::istringstream in(text);
    std::string line;
    for (int ln = 1; std::getline(in, line); ln++) {
        const char* P = path.c_str();
        size_t hash = line.find('#');
        if (hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::vector<std::string> w;
        for (std::string x; words >> x;) w.push_back(x);
        if (w.empty()) continue;

        SweepConfig c;
        c.name = w[0];
        if (c.name.rfind("--", 0) == 0)
            fail("%s:%d: expected a configuration name before the flags, found '%s'", P, ln, c.name.c_str());
        if (!valid_name(c.name))
            fail("%s:%d: bad configuration name '%s' (letters, digits and _ . + - only, not . or ..: it names a folder)", P, ln,
                 c.name.c_str());
        for (size_t k = 0; k < g.configs.size(); k++)
            if (g.configs[k].name == c.name)
                fail("%s:%d: configuration '%s' is already defined on line %d", P, ln, c.name.c_str(), defined_on[k]);

        std::vector<std::string> given;
        for (size_t i = 1; i < w.size(); i++) {
            std::string name = w[i], value;
            if (name.rfind("--", 0) != 0) fail("%s:%d: expected a flag (--name), found '%s'", P, ln, name.c_str());
            size_t eq = name.find('=');
            bool inline_value = eq != std::string::npos;
            if (inline_value) value = name.substr(eq + 1), name.erase(eq);
            const Cli::Flag* f = table.cli.find(name);
            if (f && f->tag == kSweepShared)
                fail("%s:%d: %s is not a per-configuration flag: it is the same for the whole sweep (%s)", P, ln,
                     name.c_str(),
                     name == "--data" ? "the sweep's --data" : name == "--out" || name == "--threads"
                                                                   ? "the sweep sets it"
                                                                   : "give it after `--` on the sweep's command line");
            if (!f || f->tag != kSweepConfig)
                fail("%s:%d: %s flag '%s' (a grid line may set: %s)", P, ln, f ? "the sweep decides the" : "unknown",
                     name.c_str(), list_join(table.names(kSweepConfig), " ").c_str());
            if (std::find(given.begin(), given.end(), name) != given.end())
                fail("%s:%d: %s is given twice", P, ln, name.c_str());
            given.push_back(name);
            c.flags.push_back(name);
            if (f->is_switch) {
                if (inline_value) fail("%s:%d: %s is a switch and takes no value (found '=%s')", P, ln, name.c_str(), value.c_str());
                continue;
            }
            if (!inline_value) {
                // a value may be negative (--onset-ms -10) but never another flag
                if (i + 1 >= w.size() || w[i + 1].rfind("--", 0) == 0) fail("%s:%d: %s needs a value", P, ln, name.c_str());
                value = w[++i];
            }
            try {
                table.cli.check(*f, value);  // as fit_dynamics would judge it
            } catch (const Error& e) {
                fail("%s:%d: %s", P, ln, e.what());
            }
            c.flags.push_back(value);
        }
        g.configs.push_back(c);
        defined_on.push_back(ln);
    }
    if (g.configs.empty()) fail("%s: no configurations (expected one per line: NAME FLAGS...)", path.c_str());
    return g;
}

SweepGrid sweep_grid_load(const std::string& name_or_path) {
    for (const std::string& b : sweep_builtin_grids())
        if (name_or_path == b) return sweep_grid_builtin(b);
    std::error_code ec;
    if (!fs::is_regular_file(name_or_path, ec))
        fail("--grid: '%s' is neither a built-in grid (motifs, feedback, paper) nor a grid file", name_or_path.c_str());
    std::vector<uint8_t> bytes = file_read_all(name_or_path);
    return sweep_grid_parse(std::string(bytes.begin(), bytes.end()), name_or_path);
}

// ---- JSON ------------------------------------------------------------------------------

// ---- statistics ------------------------------------------------------------------------

namespace {

// The continued fraction of I_x(a, b), evaluated by the modified Lentz method; it converges
// fast for x < (a + 1) / (a + b + 2) (incomplete_beta uses the symmetry otherwise).
double beta_continued_fraction(double a, double b, double x) {
    const double tiny = 1e-300, eps = 1e-15;
    auto guard = [&](double v) { return std::fabs(v) < tiny ? tiny : v; };
    double c = 1, d = 1 / guard(1 - (a + b) * x / (a + 1)), h = d;
    for (int m = 1; m <= 10000; m++) {
        // even step: d_2m = m (b - m) x / ((a + 2m - 1)(a + 2m))
        double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
        d = 1 / guard(1 + num * d), c = guard(1 + num / c), h *= d * c;
        // odd step: d_2m+1 = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
        d = 1 / guard(1 + num * d), c = guard(1 + num / c);
        double step = d * c;
        h *= step;
        if (std::fabs(step - 1) < eps) break;
    }
    return h;
}

}  // namespace

double incomplete_beta(double a, double b, double x) {
    VT_CHECK(a > 0 && b > 0, "incomplete_beta: a and b must be > 0 (got %g, %g)", a, b);
    if (std::isnan(x)) return NAN;
    VT_CHECK(x >= 0 && x <= 1, "incomplete_beta: x must be in [0, 1] (got %g)", x);
    if (x == 0 || x == 1) return x;
    // x^a (1-x)^b / (a B(a, b)), in logs
    double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
    if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
    return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

// P(|T| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2).
double student_t_p_two_sided(double t, double df) {
    VT_CHECK(df > 0, "student_t_p_two_sided: df must be > 0 (got %g)", df);
    if (std::isnan(t)) return NAN;
    if (std::isinf(t)) return 0;
    return incomplete_beta(df / 2, 0.5, df / (df + t * t));
}

PairedTest paired_t_test(const std::vector<double>& a, const std::vector<double>& b) {
    PairedTest r;
    if (a.size() != b.size()) return r;  // not the same splits: nothing to pair
    for (size_t s = 0; s < a.size(); s++)
        if (std::isfinite(a[s]) && std::isfinite(b[s])) r.diff.push_back(a[s] - b[s]);
    const int n = (int)r.diff.size();
    if (n == 0) return r;
    double sum = 0;
    for (double d : r.diff) sum += d;
    r.mean = sum / n;
    r.df = n - 1;
    if (n < 2) return r;
    double ss = 0;
    for (double d : r.diff) ss += (d - r.mean) * (d - r.mean);
    double se = std::sqrt(ss / (n - 1) / n);
    if (se == 0) {  // every split moved by the same amount: a certain difference, or none at all
        r.t = r.mean == 0 ? 0 : std::copysign(INFINITY, r.mean);
        r.p = r.mean == 0 ? 1 : 0;
        return r;
    }
    r.t = r.mean / se;
    r.p = student_t_p_two_sided(r.t, r.df);
    return r;
}

// ---- the report ------------------------------------------------------------------------

namespace {

bool done(const SweepRun& r) { return r.status == SweepStatus::Done; }

const char* status_word(const SweepRun& r) {
    switch (r.status) {
        case SweepStatus::Done: return r.reused ? "reused" : "ran";
        case SweepStatus::Failed: return "FAILED";
        default: return "not run";
    }
}

// Areas in order of first appearance over the finished runs.
std::vector<std::string> report_areas(const SweepReport& r) {
    std::vector<std::string> v;
    for (const SweepRun& run : r.runs)
        if (done(run))
            for (const SweepArea& a : run.result.areas)
                if (std::find(v.begin(), v.end(), a.area) == v.end()) v.push_back(a.area);
    return v;
}

std::string pm(const SweepEv& e) {
    return std::isfinite(e.mean) ? strfmt("%.3f +- %.3f", e.mean, std::isfinite(e.sem) ? e.sem : 0.0) : "n/a";
}

std::string model_name(const SweepResult& R) {
    return R.time_varied ? std::string("time-varied, a readout per bin") : R.motif + ", fb " + R.feedback;
}

// The teacher ceiling of an area (the same for every configuration on the same splits).
double teacher_ceiling(const SweepReport& r, const std::string& area) {
    for (const SweepRun& run : r.runs)
        if (done(run))
            if (const SweepArea* a = run.result.area(area))
                if (std::isfinite(a->teacher.mean)) return a->teacher.mean;
    return NAN;
}

std::string fmt_num(double v, const char* f = "%.3f") { return std::isfinite(v) ? strfmt(f, v) : std::string("n/a"); }

std::string fmt_p(double p) {
    if (!std::isfinite(p)) return "n/a";
    return p < 1e-4 ? strfmt("%.1e", p) : strfmt("%.4f", p);
}

std::string diffs(const PairedTest& t) {
    std::string s;
    for (double d : t.diff) s += (s.empty() ? "" : ", ") + strfmt("%+.3f", d);
    return s.empty() ? "n/a" : s;
}

// A text table with columns padded to their widest cell.
std::string text_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w;
    for (const auto& r : rows)
        for (size_t c = 0; c < r.size(); c++) {
            if (w.size() <= c) w.push_back(0);
            w[c] = std::max(w[c], r[c].size());
        }
    std::string s;
    for (const auto& r : rows) {
        std::string line;
        for (size_t c = 0; c < r.size(); c++) line += r[c] + std::string(c + 1 < r.size() ? w[c] - r[c].size() + 2 : 0, ' ');
        s += line + "\n";
    }
    return s;
}

// A Markdown table: rows[0] is the header; the first `text_cols` columns left-aligned, numbers right.
std::string md_table(const std::vector<std::vector<std::string>>& rows, size_t text_cols) {
    std::string s;
    for (size_t i = 0; i < rows.size(); i++) {
        s += "|";
        for (const std::string& c : rows[i]) s += " " + c + " |";
        s += "\n";
        if (i == 0) {
            s += "|";
            for (size_t c = 0; c < rows[i].size(); c++) s += c < text_cols ? "---|" : "---:|";
            s += "\n";
        }
    }
    return s;
}

// The summary as rows: a header, then one row per configuration.
std::vector<std::vector<std::string>> summary_rows(const SweepReport& r) {
    std::vector<std::string> areas = report_areas(r);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> h = {"config", "model", "params"};
    for (const std::string& a : areas) h.push_back(a + " EV"), h.push_back(a + " held-out units");
    h.push_back("fit time"), h.push_back("status");
    rows.push_back(h);
    for (const SweepRun& run : r.runs) {
        std::vector<std::string> row = {run.config.name};
        if (!done(run)) {
            row.push_back("");
            row.push_back("");
            for (size_t k = 0; k < areas.size(); k++) row.push_back(""), row.push_back("");
            row.push_back("");
            row.push_back(run.status == SweepStatus::Failed ? strfmt("FAILED (exit code %d; %s)", run.exit_code, run.log.c_str())
                                                            : std::string("not run"));
        } else {
            const SweepResult& R = run.result;
            row.push_back(model_name(R));
            row.push_back(std::to_string((long long)R.trainable_params));
            for (const std::string& a : areas) {
                const SweepArea* x = R.area(a);
                row.push_back(x ? pm(x->ev) : "n/a");
                row.push_back(x && x->heldout_units > 0 ? pm(x->heldout) : "n/a");
            }
            row.push_back(format_duration(R.seconds));
            row.push_back(status_word(run));
        }
        rows.push_back(row);
    }
    return rows;
}

std::string csv_num(double v) { return json_number(v) == "null" ? "" : json_number(v); }

Json json_ev(const SweepEv& e) {
    return Json{{"mean", json_num(e.mean)}, {"sem", json_num(e.sem)}, {"per_split", json_nums(e.per_split)}};
}

void write_text(const std::string& path, const std::string& s) { file_write_atomic(path, s.data(), s.size()); }

void write_summary_csv(const std::string& path, const SweepReport& r) {
    std::vector<std::string> areas = report_areas(r);
    std::string s = "config,area,layer,motif,feedback,time_varied,ev_mean,ev_sem,heldout_ev_mean,heldout_ev_sem,"
                    "teacher_ev_mean,trainable_params,seconds,status\n";
    for (const SweepRun& run : r.runs)
        for (const std::string& a : areas) {
            const SweepResult& R = run.result;
            const SweepArea* x = done(run) ? R.area(a) : nullptr;
            if (done(run) && !x) continue;  // this configuration has no such area
            s += run.config.name + "," + a + ",";
            if (x)
                s += strfmt("%s,%s,%s,%d,%s,%s,%s,%s,%s,%lld,%s,", x->layer.c_str(), R.motif.c_str(), R.feedback.c_str(),
                            (int)R.time_varied, csv_num(x->ev.mean).c_str(), csv_num(x->ev.sem).c_str(),
                            csv_num(x->heldout.mean).c_str(), csv_num(x->heldout.sem).c_str(),
                            csv_num(x->teacher.mean).c_str(), (long long)R.trainable_params, csv_num(R.seconds).c_str());
            else
                s += ",,,,,,,,,,,";
            s += std::string(status_word(run)) + "\n";
        }
    write_text(path, s);
}

// What the runs are, not how this invocation got them: the same file whether one sweep fitted
// everything, or --index tasks did and --collect gathered them (only the fits' own wall times,
// `seconds`, differ between two fits of the same configuration).
void write_summary_json(const std::string& dir, const SweepReport& r, const std::vector<SweepComparison>& cmp) {
    Json js = {{"format", kSweepSummaryFormat}, {"settings", Json::object()}, {"configurations", Json::array()},
               {"comparisons", Json::array()}};
    for (const auto& kv : r.settings) js["settings"][kv.first] = kv.second;
    for (const SweepRun& run : r.runs) {
        const std::string log = run.log.rfind(dir + "/", 0) == 0 ? run.log.substr(dir.size() + 1) : run.log;
        Json c = {{"name", run.config.name}, {"flags", run.config.flags},
                  {"status", done(run) ? "done" : run.status == SweepStatus::Failed ? "FAILED" : "not run"},
                  {"log", log}};
        if (run.status == SweepStatus::Failed) c["exit_code"] = run.exit_code;
        if (done(run)) {
            const SweepResult& R = run.result;
            c["motif"] = R.motif, c["feedback"] = R.feedback, c["time_varied"] = R.time_varied;
            c["trainable_params"] = R.trainable_params, c["seconds"] = json_num(R.seconds);
            c["areas"] = Json::object();
            for (const SweepArea& x : R.areas)
                c["areas"][x.area] = {{"layer", x.layer},           {"units", x.units},
                                      {"ev", json_ev(x.ev)},        {"heldout_units", x.heldout_units},
                                      {"heldout_ev", json_ev(x.heldout)}, {"teacher_ev", json_ev(x.teacher)}};
        }
        js["configurations"].push_back(c);
    }
    for (const SweepComparison& c : cmp)
        js["comparisons"].push_back({{"a", c.a}, {"b", c.b}, {"area", c.area}, {"why", c.why},
                                     {"diff_per_split", json_nums(c.test.diff)}, {"mean", json_num(c.test.mean)},
                                     {"t", json_num(c.test.t)}, {"df", c.test.df}, {"p", json_num(c.test.p)}});
    json_write(dir + "/summary.json", js);
}

// Grouped bars like the paper's Figs. 3 and 4: groups = configurations, a bar per area.
void write_bars(const std::string& path, const SweepReport& r, const std::vector<std::string>& areas) {
    BarPlot bp;
    int splits = 0;
    for (const SweepRun& run : r.runs) {
        bp.groups.push_back(run.config.name);
        if (done(run)) splits = std::max(splits, run.result.splits);
    }
    bp.title = strfmt("%s: EV, mean +- SEM over %d splits", r.grid.name.c_str(), splits);  // short: titles do not wrap
    bp.xlabel = "configuration";
    bp.ylabel = "noise-corrected EV (fit units)";
    bp.width = std::max(800, 160 + 70 * (int)r.runs.size());
    for (size_t a = 0; a < areas.size(); a++) {
        BarSeries s;
        s.label = areas[a];
        s.color = (int)a;
        for (const SweepRun& run : r.runs) {
            const SweepArea* x = done(run) ? run.result.area(areas[a]) : nullptr;
            s.value.push_back(x ? (float)x->ev.mean : NAN);
            s.err.push_back(x ? (float)x->ev.sem : NAN);
        }
        bp.series.push_back(s);
        double ceiling = teacher_ceiling(r, areas[a]);
        if (std::isfinite(ceiling)) bp.hlines.push_back({(float)ceiling, areas[a] + " teacher ceiling", palette_color((int)a)});
    }
    // headroom above the highest mark, so that a ceiling's label sits above its line
    float top = 0;
    for (const BarSeries& s : bp.series)
        for (size_t g = 0; g < s.value.size(); g++)
            if (std::isfinite(s.value[g])) top = std::max(top, s.value[g] + (std::isfinite(s.err[g]) ? s.err[g] : 0.f));
    for (const RefLine& h : bp.hlines) top = std::max(top, h.y);
    if (top > 0) bp.ymax = 1.15f * top;
    plot_bars(path, bp);
}

// EV per bin of the best three configurations and the time-varied baseline, a panel per area.
void write_ev_over_time(const std::string& path, const SweepReport& r, const std::vector<std::string>& areas) {
    std::vector<const SweepRun*> shown;
    for (const SweepRun* run : sweep_ranking(r))
        if (!run->result.time_varied && shown.size() < 3) shown.push_back(run);
    for (const SweepRun& run : r.runs)
        if (done(run) && run.result.time_varied) {
            shown.push_back(&run);
            break;
        }
    GridPlot gp;
    gp.title = "EV over time: the best three and time_varied";
    gp.xlabel = "time after image onset (ms, bin centres)";
    gp.ylabel = "noise-corrected EV";
    gp.cols = (int)areas.size();
    gp.panel_width = 420, gp.panel_height = 280;
    gp.share_y = true;
    for (const SweepRun* run : shown) {
        const SweepResult& R = run->result;
        if (std::isfinite(R.ms_per_step) && R.image_steps > 0) {
            gp.xspans.push_back({(float)R.onset_ms, (float)(R.onset_ms + R.image_steps * R.ms_per_step), "image on"});
            break;
        }
    }
    for (const std::string& area : areas) {
        GridPanel p;
        p.title = area;
        std::vector<SweepBin> teacher;
        for (size_t k = 0; k < shown.size(); k++) {
            LineSeries s;
            s.label = shown[k]->config.name;
            s.markers = true;
            if (shown[k]->result.time_varied) s.dash = 8;
            if (const SweepArea* x = shown[k]->result.area(area)) {
                for (const SweepBin& b : x->bins) {
                    s.x.push_back((float)(0.5 * (b.start_ms + b.end_ms)));
                    s.y.push_back((float)b.mean);
                    s.y_err.push_back((float)b.sem);
                }
                if (teacher.empty()) teacher = x->teacher_bins;
            }
            p.series.push_back(s);
        }
        LineSeries t;  // the ceiling: what the teacher itself scores
        t.label = "teacher (ceiling)", t.color = 7, t.dash = 3, t.width = 1.5f;
        for (const SweepBin& b : teacher) t.x.push_back((float)(0.5 * (b.start_ms + b.end_ms))), t.y.push_back((float)b.mean);
        if (!teacher.empty()) p.series.push_back(t);
        gp.panels.push_back(p);
    }
    plot_grid_lines(path, gp);
}

// A file name part from a grid's name: [A-Za-z0-9_.+-], anything else '_'.
std::string file_part(const std::string& s) {
    std::string o = s.empty() ? "grid" : s;
    for (char& c : o)
        if (!(std::isalnum((unsigned char)c) || std::strchr("_.+-", c))) c = '_';
    return o;
}

}  // namespace

std::vector<const SweepRun*> sweep_ranking(const SweepReport& r) {
    std::vector<const SweepRun*> v;
    for (const SweepRun& run : r.runs)
        if (done(run)) v.push_back(&run);
    auto key = [](const SweepRun* x) {
        double m = x->result.mean_ev();
        return std::isfinite(m) ? m : -std::numeric_limits<double>::infinity();
    };
    std::stable_sort(v.begin(), v.end(), [&](const SweepRun* a, const SweepRun* b) { return key(a) > key(b); });
    return v;
}

std::vector<SweepComparison> sweep_comparisons(const SweepReport& r) {
    std::vector<SweepComparison> v;
    std::vector<std::string> areas = report_areas(r);
    auto compare = [&](const SweepRun& a, const SweepRun& b, const std::string& why) {
        for (const std::string& area : areas) {
            const SweepArea *x = a.result.area(area), *y = b.result.area(area);
            if (x && y) v.push_back({a.config.name, b.config.name, area, why, paired_t_test(x->ev.per_split, y->ev.per_split)});
        }
    };
    const SweepRun* ff = nullptr;
    for (const SweepRun& run : r.runs)
        if (done(run) && run.config.name == "ff") ff = &run;
    if (ff)
        for (const SweepRun& run : r.runs)
            if (done(run) && &run != ff) compare(run, *ff, "vs ff");
    std::vector<const SweepRun*> rank = sweep_ranking(r);
    if (rank.size() >= 2) compare(*rank[0], *rank[1], "best vs second best");
    return v;
}

std::string sweep_table(const SweepReport& r) { return text_table(summary_rows(r)); }

void sweep_write_report(const std::string& dir, const SweepReport& r) {
    fs::create_directories(dir);
    std::vector<std::string> areas = report_areas(r);
    std::vector<SweepComparison> cmp = sweep_comparisons(r);
    write_summary_csv(dir + "/summary.csv", r);
    write_summary_json(dir, r, cmp);

    // The plots need at least one finished configuration with a finite EV.
    bool plottable = false;
    for (const SweepRun& run : r.runs) plottable |= done(run) && std::isfinite(run.result.mean_ev());
    const std::string bars = "bars_" + file_part(r.grid.name) + ".png";
    if (plottable) {
        write_bars(dir + "/" + bars, r, areas);
        write_ev_over_time(dir + "/ev_over_time.png", r, areas);
    }

    std::string md = "# Sweep `" + r.grid.name + "`\n\n";
    md += "Each configuration is one `fit_dynamics` run (its folder: `runs/NAME/`, with `log.txt`, `results.json` and "
          "its own plots). EV: noise-corrected explained variance of the fit units on held-out images, the mean over "
          "time bins, mean +- SEM over splits; held-out units: units left out of the BPTT fit, read out in closed "
          "form (the fits' `--readout-solver`, ridge by default) on the trained network.\n\n## Settings\n\n";
    for (const auto& kv : r.settings) md += "- " + kv.first + ": " + kv.second + "\n";
    for (const auto& kv : r.invocation) md += "- " + kv.first + ": " + kv.second + "\n";
    md += "\n## Summary\n\n" + md_table(summary_rows(r), 2) + "\n";
    if (plottable) {
        md += "![EV per configuration](" + bars + ")\n\n";
        md += "[`" + bars + "`](" + bars + "): bars = mean over splits, error bars = SEM over splits; dashed lines: the "
              "teacher's own score (the ceiling), where the data have a teacher.\n\n";
        md += "![EV over time](ev_over_time.png)\n\n";
        md += "[`ev_over_time.png`](ev_over_time.png): the three best configurations by EV averaged over areas, and the "
              "time-varied baseline (dashed).\n\n";
    } else {
        md += "No plots: no configuration finished with a finite EV.\n\n";
    }
    std::vector<const SweepRun*> rank = sweep_ranking(r);
    if (!rank.empty()) {
        md += "Ranking by EV averaged over areas: ";
        for (size_t i = 0; i < rank.size(); i++)
            md += (i ? ", " : "") + rank[i]->config.name + " (" + fmt_num(rank[i]->result.mean_ev()) + ")";
        md += ".\n\n";
    }
    md += "## Paired comparisons\n\n"
          "A - B per split (the same images and splits for every configuration), their mean, t = mean / (sd / sqrt(S)) "
          "with S - 1 degrees of freedom and the two-sided p of Student's t. The splits share training images, so "
          "they are not independent: read p as a guide (it tends to be too small), not an exact level.\n\n";
    if (cmp.empty()) {
        md += "None: the grid needs a finished `ff` configuration, or two finished configurations.\n";
    } else {
        std::vector<std::vector<std::string>> rows = {{"A", "B", "area", "A - B per split", "mean", "t (df)", "p"}};
        for (const SweepComparison& c : cmp)
            rows.push_back({c.a + (c.why == "vs ff" ? "" : " (best)"), c.b, c.area, diffs(c.test), fmt_num(c.test.mean, "%+.4f"),
                            !std::isnan(c.test.t) ? strfmt("%.3f (%d)", c.test.t, c.test.df) : "n/a",
                            fmt_p(c.test.p)});
        md += md_table(rows, 4);
    }
    std::string failed;
    for (const SweepRun& run : r.runs)
        if (run.status == SweepStatus::Failed)
            failed += strfmt("- %s: exit code %d, log `%s`\n", run.config.name.c_str(), run.exit_code, run.log.c_str());
    if (!failed.empty()) md += "\n## Failed\n\n" + failed;
    write_text(dir + "/report.md", md);
}

}  // namespace vt
