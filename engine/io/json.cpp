// json.cpp: strict reading and atomic writing of JSON (see json.h).
#include "engine/io/json.h"

#include <cstdlib>
#include <set>

#include "engine/io/npy.h"
#include "kernels/error.h"

namespace vt {

Json json_num(double v) {
    if (!std::isfinite(v)) return Json(nullptr);
    // 7 significant digits (about a float's precision; not every float round-trips exactly),
    // so that the files stay legible
    return Json(std::strtod(strfmt("%.7g", v).c_str(), nullptr));
}

namespace {

// "line L, column C" of byte offset `at` in `text` (1-based).
std::string line_column(const std::string& text, size_t at) {
    int line = 1, col = 1;
    for (size_t k = 0; k < at && k < text.size(); k++) {
        if (text[k] == '\n') line++, col = 1;
        else col++;
    }
    return strfmt("line %d, column %d", line, col);
}

}  // namespace

Json json_parse(const std::string& text, const std::string& where) {
    // The parser's callback sees every key: one set of names per open object refuses a repeat.
    std::vector<std::set<std::string>> open;
    std::string repeated;
    auto cb = [&](int depth, Json::parse_event_t ev, Json& parsed) {
        (void)depth;
        if (ev == Json::parse_event_t::object_start) open.emplace_back();
        else if (ev == Json::parse_event_t::object_end && !open.empty()) open.pop_back();
        else if (ev == Json::parse_event_t::key && !open.empty() && !open.back().insert(parsed.get<std::string>()).second &&
                 repeated.empty())
            repeated = parsed.get<std::string>();
        return true;
    };
    Json j;
    try {
        j = Json::parse(text, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const Json::parse_error& e) {
        std::string what = e.what();  // "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
        const size_t colon = what.find(": ");
        fail("%s: malformed JSON at %s: %s", where.c_str(), line_column(text, e.byte ? e.byte - 1 : 0).c_str(),
             colon == std::string::npos ? what.c_str() : what.substr(colon + 2).c_str());
    } catch (const Json::exception& e) {  // e.g. a number beyond double's range (out_of_range.406)
        std::string what = e.what();
        const size_t end = what.find("] ");
        fail("%s: malformed JSON: %s", where.c_str(), end == std::string::npos ? what.c_str() : what.substr(end + 2).c_str());
    }
    if (!repeated.empty())
        fail("%s: malformed JSON: an object names the member \"%s\" twice (member names must differ)", where.c_str(),
             repeated.c_str());
    return j;
}

Json json_read(const std::string& path) {
    std::vector<uint8_t> bytes = file_read_all(path);
    return json_parse(std::string(bytes.begin(), bytes.end()), path);
}

std::string json_dump(const Json& j) {
    // error_handler replace: a string that is not UTF-8 is written with U+FFFD, never refused
    return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

void json_write(const std::string& path, const Json& j) {
    const std::string s = json_dump(j);
    file_write_atomic(path, s.data(), s.size());
}

void json_format_check(const Json& j, const std::string& format, const std::string& path) {
    const Json* f = j.is_object() && j.contains("format") ? &j["format"] : nullptr;
    if (!f || !f->is_string())
        fail("%s: no \"format\" naming what the file holds (expected \"%s\")", path.c_str(), format.c_str());
    if (f->get<std::string>() != format)
        fail("%s: holds \"%s\", expected \"%s\"", path.c_str(), f->get<std::string>().c_str(), format.c_str());
}

}  // namespace vt
