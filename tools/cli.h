// cli.h: the command-line flags of the tools, declared as a table (name, variable, help)
// from which parsing, validation and --help come. Header-only, shared by tools/*.cpp.
//
//   Cli cli("pretrain", "DIR", "Pretrain a backbone on an image-classification folder.");
//   cli.flag("--epochs", &epochs, "training epochs");
//   cli.parse(argc, argv);          // exits 0 after --help; vt::fail on a bad flag or value
#pragma once
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/common.h"

namespace vt {

// "a,b,,c" -> {"a", "b", "c"}: the value of a comma-separated list flag.
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> v;
    for (size_t a = 0, e; a < s.size(); a = e + 1) {
        e = s.find(',', a);
        if (e == std::string::npos) e = s.size();
        if (e > a) v.push_back(s.substr(a, e - a));
    }
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

struct Cli {
    struct Flag {
        std::string name, help, def;
        bool is_switch;
        std::function<void(const std::string&)> set;  // parses and stores a value
    };
    std::string prog, positional_name, about;
    std::vector<Flag> flags;
    std::vector<std::string> positional;
    std::vector<std::string> given;  // flags the user passed, for "was it set?"

    Cli(std::string p, std::string pos, std::string a) : prog(std::move(p)), positional_name(std::move(pos)), about(std::move(a)) {}

    void flag(const std::string& name, int* v, const std::string& help) {
        flags.push_back({name, help, std::to_string(*v), false, [=](const std::string& s) { *v = (int)parse_int(name, s); }});
    }
    void flag(const std::string& name, int64_t* v, const std::string& help) {
        flags.push_back({name, help, std::to_string(*v), false, [=](const std::string& s) { *v = parse_int(name, s); }});
    }
    void flag(const std::string& name, uint64_t* v, const std::string& help) {
        flags.push_back({name, help, std::to_string(*v), false, [=](const std::string& s) { *v = (uint64_t)parse_int(name, s); }});
    }
    void flag(const std::string& name, float* v, const std::string& help) {
        flags.push_back({name, help, strfmt("%g", *v), false, [=](const std::string& s) { *v = (float)parse_float(name, s); }});
    }
    void flag(const std::string& name, std::string* v, const std::string& help) {
        flags.push_back({name, help, *v, false, [=](const std::string& s) { *v = s; }});
    }
    void flag(const std::string& name, Device* v, const std::string& help) {  // parse_device, as it is given
        flags.push_back({name, help, device_name(*v), false, [=](const std::string& s) { *v = parse_device(s); }});
    }
    void flag(const std::string& name, bool* v, const std::string& help) {  // a switch
        flags.push_back({name, help, "", true, [=](const std::string&) { *v = true; }});
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
            std::printf("  %-22s %s%s\n", left.c_str(), f.help.c_str(),
                        f.is_switch || f.def.empty() ? "" : (" (default " + f.def + ")").c_str());
        }
        std::printf("  %-22s %s\n", "--help", "this message");
    }

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
                if (!f->is_switch && !inline_value) {
                    if (i + 1 >= argc) fail("%s: %s needs a value (%s)", prog.c_str(), name.c_str(), f->help.c_str());
                    value = argv[++i];
                }
                f->set(value);
                given.push_back(name);
            } else {
                positional.push_back(a);
            }
        }
    }

  private:
    const Flag* find(const std::string& name) const {
        for (const Flag& f : flags)
            if (f.name == name) return &f;
        return nullptr;
    }
    static int64_t parse_int(const std::string& name, const std::string& s) {
        char* end = nullptr;
        errno = 0;
        long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end || errno) fail("%s: expected an integer, got '%s'", name.c_str(), s.c_str());
        return v;
    }
    static double parse_float(const std::string& name, const std::string& s) {
        char* end = nullptr;
        errno = 0;
        double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end || errno) fail("%s: expected a number, got '%s'", name.c_str(), s.c_str());
        return v;
    }
};

}  // namespace vt
