// cli.h: the command-line flags of the tools, declared as a table (name, variable, help)
// from which parsing, validation and --help come. Header-only, used by tools/*.cpp and by
// the flag tables that more than one tool reads (models/fit/fit_flags.h: fit_dynamics'
// flags, which the sweep also checks its grid lines against).
//
//   Cli cli("pretrain", "DIR", "Pretrain a backbone on an image-classification folder.");
//   cli.flag("--epochs", &epochs, "training epochs").range(1, 100000);
//   cli.flag("--schedule", &schedule, "cosine or step").choices({"cosine", "step"});
//   cli.parse(argc, argv);          // exits 0 after --help; vt::fail on a bad flag or value
#pragma once
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/common.h"

namespace vt {

// "a,b,,c" -> {"a", "b", "c"}: the value of a comma-separated list flag, empty items dropped.
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> v;
    for (std::string& item : list_items(s))
        if (!item.empty()) v.push_back(std::move(item));
    return v;
}

// The value of --device: `cpu`, or `cuda` where a usable CUDA device exists. Every tool's
// --device goes through here, so the error a user without a GPU meets is the same line:
//   --device cuda: no usable CUDA device (built without CUDA=1, or no GPU visible); use --device cpu
inline Device parse_device(const std::string& flag_value) {
    if (flag_value == "cpu") return Device::CPU;
    if (flag_value == "cuda") {
        if (!cuda_available())
            fail("--device cuda: no usable CUDA device (built without CUDA=1, or no GPU visible); use --device cpu");
        return Device::CUDA;
    }
    fail("--device: expected cpu or cuda, got '%s'", flag_value.c_str());
}

// Numeric flags are parsed whole and without wrap-around: an int flag refuses values outside
// int's range, a uint64 flag refuses negatives, a float flag refuses nan, inf and values
// beyond float's range. A flag may also carry its own range, checked at parse time:
//   cli.flag("--batch", &batch, "images per batch").range(1, 1 << 20);
//   cli.flag("--lr", &lr, "learning rate").positive().range(0, 10);   // 0 < lr <= 10
// Switches (bool) take no value, or =true/=false (=1/=0); any other =value is refused.
struct Cli {
    struct Flag {
        std::string name, help, def;
        bool is_switch = false, numeric = false, integral = false;
        bool ranged = false, open_below = false;  // a user range; lo excluded (positive())
        long double lo = 0, hi = 0;               // the range (the type's own when not ranged)
        std::function<void(const std::string&, const Flag&)> set;  // parses, checks and stores a value
        std::vector<std::string> choices;  // the values a text flag takes (empty: any)
        int tag = 0;                       // what the declaring table means by it (e.g. fit_flags.h's SweepRole)
    };
    // What flag() returns: the flag just declared, to give it a range.
    struct FlagRef {
        Cli* cli;
        size_t index;
        FlagRef& range(long double lo, long double hi) {  // inclusive; numeric flags only
            Flag& f = cli->flags[index];
            VT_CHECK(f.numeric && lo <= hi && lo >= f.lo && hi <= f.hi, "Cli: bad range [%Lg, %Lg] for %s", lo, hi, f.name.c_str());
            f.ranged = true, f.lo = lo, f.hi = hi;
            return *this;
        }
        FlagRef& positive() {  // > 0 (with range(0, hi): 0 < x <= hi)
            Flag& f = cli->flags[index];
            VT_CHECK(f.numeric, "Cli: positive() on the non-numeric flag %s", f.name.c_str());
            f.ranged = true, f.open_below = true, f.lo = 0;
            return *this;
        }
        FlagRef& choices(std::vector<std::string> values) {  // text flags: one of these, checked at parse
            Flag& f = cli->flags[index];
            VT_CHECK(!f.numeric && !f.is_switch && !values.empty(), "Cli: choices() on the flag %s", f.name.c_str());
            f.choices = std::move(values);
            auto store = f.set;
            f.set = [store](const std::string& s, const Flag& fl) {
                check_choice(fl, s);
                store(s, fl);
            };
            return *this;
        }
        FlagRef& validate(std::function<void(const std::string&)> ok) {  // text flags: fails on a bad value
            Flag& f = cli->flags[index];
            VT_CHECK(!f.numeric && !f.is_switch, "Cli: validate() on the flag %s", f.name.c_str());
            auto store = f.set;
            f.set = [store, ok](const std::string& s, const Flag& fl) {
                ok(s);
                store(s, fl);
            };
            return *this;
        }
        FlagRef& tag(int t) {
            cli->flags[index].tag = t;
            return *this;
        }
    };
    std::string prog, positional_name, about;
    std::vector<Flag> flags;
    std::vector<std::string> positional;
    std::vector<std::string> given;  // flags the user passed, for "was it set?"

    Cli(std::string p, std::string pos, std::string a) : prog(std::move(p)), positional_name(std::move(pos)), about(std::move(a)) {}

    FlagRef flag(const std::string& name, int* v, const std::string& help) {
        return number(name, help, std::to_string(*v), true, INT_MIN, INT_MAX,
                      [=](const std::string& s, const Flag& f) { *v = (int)parse_int(s, f); });
    }
    FlagRef flag(const std::string& name, int64_t* v, const std::string& help) {
        return number(name, help, std::to_string(*v), true, (long double)INT64_MIN, (long double)INT64_MAX,
                      [=](const std::string& s, const Flag& f) { *v = parse_int(s, f); });
    }
    FlagRef flag(const std::string& name, uint64_t* v, const std::string& help) {
        return number(name, help, std::to_string(*v), true, 0, (long double)UINT64_MAX,
                      [=](const std::string& s, const Flag& f) { *v = parse_uint(s, f); });
    }
    FlagRef flag(const std::string& name, float* v, const std::string& help) {
        return number(name, help, strfmt("%g", *v), false, -FLT_MAX, FLT_MAX,
                      [=](const std::string& s, const Flag& f) { *v = (float)parse_float(s, f); });
    }
    FlagRef flag(const std::string& name, std::string* v, const std::string& help) {
        return add({name, help, *v, false, false, false, false, false, 0, 0, [=](const std::string& s, const Flag&) { *v = s; }, {}, 0});
    }
    FlagRef flag(const std::string& name, Device* v, const std::string& help) {  // parse_device, as it is given
        FlagRef r = add({name, help, device_name(*v), false, false, false, false, false, 0, 0,
                         [=](const std::string& s, const Flag&) { *v = parse_device(s); },
                         {"cpu", "cuda"}, 0});  // check() looks no further: no device is needed to name one
        return r;
    }
    FlagRef flag(const std::string& name, Precision* v, const std::string& help) {  // precision_parse
        return add({name, help, precision_name(*v), false, false, false, false, false, 0, 0,
                    [=](const std::string& s, const Flag&) { *v = precision_parse(s); }, {"fp32", "tf32", "bf16"}, 0});
    }
    FlagRef flag(const std::string& name, bool* v, const std::string& help) {  // a switch (def: its value then)
        return add({name, help, *v ? "true" : "false", true, false, false, false, false, 0, 0,
                    [=](const std::string& s, const Flag& f) { *v = parse_switch(s, f); }, {}, 0});
    }
    const Flag* find(const std::string& name) const {
        for (const Flag& f : flags)
            if (f.name == name) return &f;
        return nullptr;
    }
    // Whether `value` is one the flag takes, as parse() would judge it (vt::fail if not), without
    // needing what it names to exist here (--device cuda on a machine without a GPU passes):
    // the sweep checks its grid lines with this before any fit runs.
    void check(const Flag& f, const std::string& value) const {
        if (!f.choices.empty()) check_choice(f, value);
        else f.set(value, f);  // numbers and switches: parsed into the table's own variables
    }
    // "a", "a or b", "a, b or c"
    static std::string choice_list(const std::vector<std::string>& v) {
        std::string s;
        for (size_t i = 0; i < v.size(); i++) s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
        return s;
    }
    static void check_choice(const Flag& f, const std::string& s) {
        for (const std::string& c : f.choices)
            if (s == c) return;
        fail("%s: expected %s, got '%s'", f.name.c_str(), choice_list(f.choices).c_str(), s.c_str());
    }
    bool was_given(const std::string& name) const {
        for (const std::string& g : given)
            if (g == name) return true;
        return false;
    }

    void usage() const {
        std::printf("usage: %s [flags]%s%s\n\n%s\n\nflags:\n", prog.c_str(), positional_name.empty() ? "" : " ",
                    positional_name.c_str(), about.c_str());
        for (const Flag& f : flags) {
            std::string left = f.name + (f.is_switch ? "" : " X");
            std::string right = f.help;
            if (!f.is_switch && !f.def.empty()) right += " (default " + f.def + (f.ranged ? "; " + range_text(f) : "") + ")";
            std::printf("  %-22s %s\n", left.c_str(), right.c_str());
        }
        std::printf("  %-22s %s\n", "--help", "this message");
    }

    // `--flag value`, `--flag=value`, `--switch`, `--switch=true|false|1|0`, positionals.
    void parse(int argc, char** argv) {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            if (a == "--help" || a == "-h") {
                usage();
                std::exit(0);
            }
            if (a.size() > 1 && a[0] == '-') {
                std::string name = a, value;
                size_t eq = a.find('=');
                bool inline_value = eq != std::string::npos;
                if (inline_value) name = a.substr(0, eq), value = a.substr(eq + 1);
                const Flag* f = find(name);
                if (!f) fail("%s: unknown flag '%s' (see %s --help)", prog.c_str(), name.c_str(), prog.c_str());
                if (f->is_switch && !inline_value) value = "true";
                if (!f->is_switch && !inline_value) {
                    if (i + 1 >= argc) fail("%s: %s needs a value (%s)", prog.c_str(), name.c_str(), f->help.c_str());
                    value = argv[++i];
                }
                f->set(value, *f);
                given.push_back(name);
            } else {
                positional.push_back(a);
            }
        }
    }

  private:
    FlagRef add(Flag f) {
        VT_CHECK(!find(f.name), "Cli: flag %s declared twice", f.name.c_str());
        flags.push_back(std::move(f));
        return FlagRef{this, flags.size() - 1};
    }
    FlagRef number(const std::string& name, const std::string& help, const std::string& def, bool integral,
                   long double lo, long double hi, std::function<void(const std::string&, const Flag&)> set) {
        return add({name, help, def, false, true, integral, false, false, lo, hi, std::move(set), {}, 0});
    }
    static std::string num_text(long double x, bool integral) {
        if (integral && x == (long double)UINT64_MAX) return std::to_string(UINT64_MAX);
        if (integral) return std::to_string((long long)x);
        return strfmt("%Lg", x);
    }
    // "from 1 to 1000", "above 0 and at most 10", ...
    static std::string range_text(const Flag& f) {
        if (!f.ranged && !f.integral) return "(within float32's range)";
        std::string hi = num_text(f.hi, f.integral);
        if (f.open_below) return "above " + num_text(f.lo, f.integral) + " and at most " + hi;
        return "from " + num_text(f.lo, f.integral) + " to " + hi;
    }
    [[noreturn]] static void bad(const Flag& f, const std::string& s) {
        fail("%s: expected %s %s, got '%s'", f.name.c_str(), f.integral ? "an integer" : "a finite number",
             range_text(f).c_str(), s.c_str());
    }
    static void check_range(long double v, const std::string& s, const Flag& f) {
        if (v < f.lo || v > f.hi || (f.open_below && v <= f.lo)) bad(f, s);
    }
    static int64_t parse_int(const std::string& s, const Flag& f) {
        char* end = nullptr;
        errno = 0;
        long long v = s.empty() || !(std::isdigit((unsigned char)s[0]) || s[0] == '-') ? 0 : std::strtoll(s.c_str(), &end, 10);
        if (!end || *end || errno) bad(f, s);
        check_range((long double)v, s, f);
        return v;
    }
    static uint64_t parse_uint(const std::string& s, const Flag& f) {
        char* end = nullptr;
        errno = 0;
        unsigned long long v = s.empty() || !std::isdigit((unsigned char)s[0]) ? 0 : std::strtoull(s.c_str(), &end, 10);
        if (!end || *end || errno) bad(f, s);  // "-1" included: strtoull would wrap it
        check_range((long double)v, s, f);
        return v;
    }
    static double parse_float(const std::string& s, const Flag& f) {
        char* end = nullptr;
        errno = 0;
        double v = s.empty() || std::isspace((unsigned char)s[0]) ? 0 : std::strtod(s.c_str(), &end);
        if (!end || *end || errno || !std::isfinite(v)) bad(f, s);  // nan, inf, 1e999
        check_range((long double)v, s, f);
        return v;
    }
    static bool parse_switch(const std::string& s, const Flag& f) {
        if (s == "true" || s == "1") return true;
        if (s == "false" || s == "0") return false;
        fail("%s: a switch takes no value, or =true/=false (=1/=0), got '%s=%s'", f.name.c_str(), f.name.c_str(), s.c_str());
    }
};

}  // namespace vt
