// json.h: the one home of ventral's JSON (results.json, summary.json, ...), on nlohmann/json
// (Debian's nlohmann-json3-dev, header only).
//
// Json is nlohmann::ordered_json: members keep the order they were set in, so files read
// top-down as they are written. Writing: a non-finite number (NaN, Inf) is written as null,
// as strict JSON requires; json_write is atomic (a temporary name, then rename). Reading is
// strict RFC 8259 (no comments, NaN or trailing commas) and also refuses an object that
// names a member twice (which readers resolve differently: Python keeps the last). Errors
// name the file, the line and column and what was wrong.
//
// Every tool's results file carries "format": "<tool>-<version>" (json_format_check), and
// docs/results.md documents each schema.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vt {

using Json = nlohmann::ordered_json;

// A number rounded to 7 significant digits (about a float's precision, so that files stay
// legible; not an exact round trip), or null when it is not finite (strict JSON has no NaN/Inf).
Json json_num(double v);
// An array of numbers, each as json_num.
template <class T>
Json json_nums(const std::vector<T>& v) {
    Json a = Json::array();
    for (const T& x : v) a.push_back(json_num((double)x));
    return a;
}

// Parses `text` strictly (see the top); `where` names it in errors:
// "WHERE: malformed JSON at line L, column C: ...".
Json json_parse(const std::string& text, const std::string& where);
Json json_read(const std::string& path);  // json_parse of the file's bytes

// Writes j with 2-space indents and a final newline, atomically.
void json_write(const std::string& path, const Json& j);
std::string json_dump(const Json& j);     // the same text

// Fails unless j["format"] is `format` ("ventral-fit-dynamics-2"): names the file, what it
// holds and what was expected.
void json_format_check(const Json& j, const std::string& format, const std::string& path);

}  // namespace vt
