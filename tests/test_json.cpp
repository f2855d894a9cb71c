// test_json.cpp: the one JSON home (engine/io/json.h): strict reading, atomic writing with
// null for non-finite numbers, the round trip, and the format check.
#include <cmath>
#include <filesystem>
#include <limits>

#include "engine/io/json.h"
#include "engine/io/npy.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

TEST_CASE("json: strict RFC 8259 reading") {
    Json j = json_parse(" {\"a\": [1, -2.5, 3e2, 1E-3, -0, 0.5e+1, null, true, false],\n"
                        "  \"b\": {\"c\": {\"d\": \"x\\\"y\\\\z\\n\\u00e9\\ud83d\\ude00\"}}, \"e\": [], \"f\": {}} ",
                        "t.json");
    REQUIRE(j.is_object());
    const Json& a = j["a"];
    REQUIRE(a.size() == 9);
    CHECK(a[0].get<double>() == 1);
    CHECK(a[1].get<double>() == -2.5);
    CHECK(a[2].get<double>() == 300);
    CHECK(a[3].get<double>() == doctest::Approx(1e-3));
    CHECK(a[5].get<double>() == 5);
    CHECK(a[6].is_null());
    CHECK(a[7].get<bool>());
    CHECK(!a[8].get<bool>());
    CHECK(j["b"]["c"]["d"].get<std::string>() == "x\"y\\z\n\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(j["e"].empty());
    CHECK(j["f"].empty());
    CHECK(!j.contains("zz"));
    // members keep the file's order
    std::vector<std::string> keys;
    for (const auto& kv : j.items()) keys.push_back(kv.key());
    CHECK(keys == std::vector<std::string>{"a", "b", "e", "f"});

    struct Bad {
        std::string text, says;
    };
    for (const Bad& b : {Bad{"{\"a\": 1,}", "line 1, column 9"},
                         Bad{"[1, 2,]", "line 1, column 7"},
                         Bad{"{\"a\": NaN}", "line 1, column 7"},
                         Bad{"{\"a\": 1}\n{}", "line 2, column 1"},
                         Bad{"{\"a\": \"open", "malformed JSON"},
                         Bad{"[1e]", "malformed JSON"},
                         Bad{"[01]", "malformed JSON"},
                         Bad{"// a comment\n{}", "line 1, column 1"},
                         Bad{"{\"a\": 1, \"a\": 2}", "names the member \"a\" twice"},
                         Bad{"{\"x\": {\"a\": 1, \"b\": {\"a\": 2}, \"a\": 3}}", "names the member \"a\" twice"},
                         Bad{"[\"\\x\"]", "malformed JSON"},
                         Bad{"[\"\\ud800\"]", "malformed JSON"},
                         Bad{"[tru]", "malformed JSON"},
                         Bad{"[1e999]", "number overflow"},
                         Bad{"", "line 1, column 1"}}) {
        CAPTURE(b.text);
        std::string e = error_of([&] { json_parse(b.text, "bad.json"); });
        CHECK(has(e, "bad.json: malformed JSON"));
        CHECK(has(e, b.says));
    }
    // the same name in two different objects is fine
    CHECK(json_parse("{\"x\": {\"a\": 1}, \"y\": {\"a\": 2}}", "t")["y"]["a"].get<int>() == 2);
    // deep nesting is refused or parsed, never a crash
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK(json_parse(deep, "deep.json").is_array());
}

TEST_CASE("json: written atomically, strictly valid (null for NaN/Inf), and read back") {
    const std::string dir = vt_test::temp_dir(), path = dir + "/r.json";
    Json j = {{"format", "ventral-test-1"},
              {"nan", json_num(NAN)},
              {"inf", json_num(std::numeric_limits<double>::infinity())},
              {"x", json_num(0.1f)},
              {"big", (int64_t)1 << 40},
              {"list", json_nums(std::vector<float>{1.5f, NAN, -2.f})},
              {"text", "tab\there \"quoted\" \xc3\xa9"}};
    json_write(path, j);
    const std::vector<uint8_t> bytes = file_read_all(path);
    const std::string text(bytes.begin(), bytes.end());
    CHECK(!has(text, "NaN"));
    CHECK(!has(text, ": nan"));
    CHECK(has(text, "\"nan\": null"));
    CHECK(!has(text, "Infinity"));
    CHECK(has(text, "\"x\": 0.1,"));  // 7 significant digits: the float 0.1 reads 0.1
    CHECK(text.back() == '\n');
    Json r = json_read(path);
    CHECK(r == json_parse(json_dump(j), "dump"));
    CHECK(r["nan"].is_null());
    CHECK(r["inf"].is_null());
    CHECK(r["big"].get<int64_t>() == ((int64_t)1 << 40));
    CHECK(r["list"][1].is_null());
    CHECK(r["list"][2].get<double>() == -2);
    CHECK(r["text"].get<std::string>() == "tab\there \"quoted\" \xc3\xa9");
    json_format_check(r, "ventral-test-1", path);
    CHECK(has(error_of([&] { json_format_check(r, "ventral-fit-dynamics-1", path); }),
              "holds \"ventral-test-1\", expected \"ventral-fit-dynamics-1\""));
    CHECK(has(error_of([&] { json_format_check(Json::object(), "ventral-test-1", path); }), "no \"format\""));
    // a missing file names itself; no temporary is left behind
    CHECK(has(error_of([&] { json_read(dir + "/absent.json"); }), "absent.json"));
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.path().filename() != "r.json";
    CHECK(files == 0);
}

TEST_CASE("tests: the temporary folders a test binary makes are removed when it exits") {
    // runs this binary on the test above, with TMPDIR a fresh folder, and looks at what is left
    namespace fs = std::filesystem;
    const std::string base = vt_test::temp_dir();
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    auto leftovers = [&] {
        int n = 0;
        for (const auto& e : fs::directory_iterator(base)) n += e.path().filename().string().rfind("ventral_test_", 0) == 0;
        return n;
    };
    const std::string run = "TMPDIR=" + vt_test::shell_quote(base) + " timeout 120 " + vt_test::shell_quote(self) +
                            " -tc='json: written atomically*' 2>&1";
    auto r = vt_test::shell_run("VT_KEEP_TEST_DIRS=1 " + run);
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(leftovers() == 1);  // kept on request: the inner run did make one
    for (const auto& e : fs::directory_iterator(base)) fs::remove_all(e.path());
    r = vt_test::shell_run("VT_KEEP_TEST_DIRS= " + run);
    INFO(r.out);
    REQUIRE(r.rc == 0);
    CHECK(leftovers() == 0);
}
