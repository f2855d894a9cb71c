// test_bad_input.cpp: the bad-input and fault matrix of issue 12, as a table.
//
// Every input is generated here, in a temporary folder: neural datasets whose headers lie
// (a shape whose element count wraps to 0, a huge shape in a small file, a deflate bomb just
// under the ratio guard), duplicate npz members, a 16384 x 16384 PNG, unreadable images,
// outputs that cannot be written, flags out of range. Each case runs a tool under
// `ulimit -v` (1 GB) and a timeout, and must exit 1 with one `error: ...` line as the last
// line of stderr (notes and warnings may come before it), say what the case expects, and
// leave the folder as it was (no file written). The README's "What is guaranteed" lists
// these rows. A few rows are documented correct behaviour instead (exit 0): they are
// checked after the table.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "engine/io/npy.h"
#include "engine/io/rundir.h"
#include "models/datasets/neural_data.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::has;
namespace fs = std::filesystem;

namespace {

constexpr long kMemKB = 1 << 20;  // ulimit -v for every run: 1 GB
constexpr int kSeconds = 60;      // timeout per run (a hang fails the case with 124)

// ---- raw file builders: what npz_write would refuse to write -------------------------------
void put16(std::string& s, uint32_t x) { s += (char)(x & 255), s += (char)(x >> 8 & 255); }
void put32(std::string& s, uint32_t x) { put16(s, x & 0xffff), put16(s, x >> 16); }

// A .npy version 1.0 header for `descr` and `shape` (as Python writes the tuple), padded to 64.
std::string npy_head(const std::string& descr, const std::string& shape) {
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    while ((10 + dict.size() + 1) % 64) dict += ' ';
    dict += '\n';
    std::string h = "\x93NUMPY\x01";
    h += '\0';
    put16(h, (uint32_t)dict.size());
    return h + dict;
}

struct RawMember {
    std::string name;       // as stored ("responses.npy")
    std::string data;       // stored bytes, or the raw deflate stream when method == 8
    uint16_t method = 0;
    uint32_t crc = 0;
    uint32_t usize = 0;
};

RawMember stored(const std::string& name, const std::string& bytes) {
    return {name, bytes, 0, (uint32_t)crc32(0, (const Bytef*)bytes.data(), (uInt)bytes.size()), (uint32_t)bytes.size()};
}

// `head` followed by `zeros` zero bytes, deflated chunk by chunk (nothing that size in memory).
RawMember deflated_zeros(const std::string& name, const std::string& head, uint64_t zeros) {
    RawMember m;
    m.name = name, m.method = 8;
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::vector<uint8_t> zero(1 << 20, 0), out(1 << 20);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef*)head.data(), (uInt)head.size());
    auto feed = [&](const uint8_t* p, size_t n, int flush) {
        zs.next_in = (Bytef*)p, zs.avail_in = (uInt)n;
        do {
            zs.next_out = out.data(), zs.avail_out = (uInt)out.size();
            deflate(&zs, flush);
            m.data.append((const char*)out.data(), out.size() - zs.avail_out);
        } while (zs.avail_out == 0);
    };
    feed((const uint8_t*)head.data(), head.size(), Z_NO_FLUSH);
    for (uint64_t left = zeros; left > 0;) {
        size_t c = (size_t)std::min<uint64_t>(left, zero.size());
        crc = (uint32_t)crc32(crc, zero.data(), (uInt)c);
        feed(zero.data(), c, Z_NO_FLUSH);
        left -= c;
    }
    feed(nullptr, 0, Z_FINISH);
    deflateEnd(&zs);
    m.crc = crc;
    m.usize = (uint32_t)(head.size() + zeros);
    return m;
}

// A zip of `members` in the order given (no ZIP64: every size < 4 GB).
void write_zip(const std::string& path, const std::vector<RawMember>& members) {
    std::string out, cd;
    for (const RawMember& m : members) {
        uint32_t off = (uint32_t)out.size();
        put32(out, 0x04034b50), put16(out, 20), put16(out, 0), put16(out, m.method), put32(out, 0), put32(out, m.crc);
        put32(out, (uint32_t)m.data.size()), put32(out, m.usize), put16(out, (uint32_t)m.name.size()), put16(out, 0);
        out += m.name + m.data;
        put32(cd, 0x02014b50), put16(cd, 20), put16(cd, 20), put16(cd, 0), put16(cd, m.method), put32(cd, 0);
        put32(cd, m.crc), put32(cd, (uint32_t)m.data.size()), put32(cd, m.usize), put16(cd, (uint32_t)m.name.size());
        put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0), put32(cd, 0), put32(cd, off);
        cd += m.name;
    }
    uint32_t cd_off = (uint32_t)out.size();
    out += cd;
    put32(out, 0x06054b50), put16(out, 0), put16(out, 0), put16(out, (uint32_t)members.size());
    put16(out, (uint32_t)members.size()), put32(out, (uint32_t)cd.size()), put32(out, cd_off), put16(out, 0);
    std::ofstream(path, std::ios::binary).write(out.data(), (std::streamsize)out.size());
}

// The members of a valid npz as raw stored members (to add or replace some).
std::vector<RawMember> raw_members(const std::string& npz) {
    Npz z = npz_read(npz);
    std::vector<RawMember> v;
    for (const std::string& k : z.names) {
        std::vector<uint8_t> b = npy_serialize(z.get(k));
        v.push_back(stored(k + ".npy", std::string(b.begin(), b.end())));
    }
    return v;
}

std::vector<RawMember> replace(std::vector<RawMember> v, const RawMember& m) {
    for (RawMember& x : v)
        if (x.name == m.name) x = m;
    return v;
}

// A greyscale PNG of W x H black pixels (IDAT: zlib of zero rows, streamed).
void write_black_png(const std::string& path, uint32_t W, uint32_t H) {
    auto chunk = [](std::string& out, const char* type, const std::string& body) {
        put32(out, 0);  // length, big-endian: patched below
        uint32_t n = (uint32_t)body.size();
        out[out.size() - 4] = (char)(n >> 24), out[out.size() - 3] = (char)(n >> 16);
        out[out.size() - 2] = (char)(n >> 8), out[out.size() - 1] = (char)n;
        std::string tb = std::string(type, 4) + body;
        out += tb;
        uint32_t c = (uint32_t)crc32(0, (const Bytef*)tb.data(), (uInt)tb.size());
        out += (char)(c >> 24), out += (char)(c >> 16), out += (char)(c >> 8), out += (char)c;
    };
    std::string ihdr;
    for (uint32_t v : {W, H}) ihdr += (char)(v >> 24), ihdr += (char)(v >> 16), ihdr += (char)(v >> 8), ihdr += (char)v;
    ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit grey, deflate, no filter, no interlace
    z_stream zs{};
    REQUIRE(deflateInit(&zs, 6) == Z_OK);
    std::string idat;
    std::vector<uint8_t> row(W + 1, 0), out(1 << 20);
    for (uint32_t y = 0; y <= H; y++) {
        zs.next_in = row.data(), zs.avail_in = y < H ? (uInt)row.size() : 0;
        int flush = y < H ? Z_NO_FLUSH : Z_FINISH;
        do {
            zs.next_out = out.data(), zs.avail_out = (uInt)out.size();
            deflate(&zs, flush);
            idat.append((const char*)out.data(), out.size() - zs.avail_out);
        } while (zs.avail_out == 0);
    }
    deflateEnd(&zs);
    std::string png = "\x89PNG\r\n\x1a\n";
    chunk(png, "IHDR", ihdr);
    chunk(png, "IDAT", idat);
    chunk(png, "IEND", "");
    std::ofstream(path, std::ios::binary).write(png.data(), (std::streamsize)png.size());
}

NeuralData small_data() {
    NeuralData d;
    d.R = 2, d.N = 8, d.U = 4, d.B = 2, d.H = 8, d.W = 8;
    d.images.resize((size_t)d.N * d.H * d.W * 3);
    for (size_t i = 0; i < d.images.size(); i++) d.images[i] = (uint8_t)(i * 37 % 251);
    d.responses.resize((size_t)(d.R * d.N * d.U * d.B));
    for (size_t i = 0; i < d.responses.size(); i++) d.responses[i] = (float)(i % 13);
    d.unit_area = {"V4", "V4", "IT", "IT"};
    d.bin_start_ms = {0, 50}, d.bin_end_ms = {50, 100};
    return d;
}

// Every path under `dir`, for "nothing was written".
std::set<std::string> tree(const std::string& dir) {
    std::set<std::string> s;
    for (auto& e : fs::recursive_directory_iterator(dir)) s.insert(e.path().string());
    return s;
}

std::string last_line(std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    size_t nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

int error_lines(const std::string& s) {
    int n = 0;
    for (size_t p = 0; p < s.size(); p = s.find('\n', p) + 1) {
        n += s.compare(p, 7, "error: ") == 0;
        if (s.find('\n', p) == std::string::npos) break;
    }
    return n;
}

}  // namespace

TEST_CASE("bad input: every row of the matrix exits 1 with one error line, writes nothing, in bounded memory") {
    for (const char* t : {"score", "select_layers", "inspect", "pretrain", "sweep", "fit_dynamics"})
        if (!vt_test::have_tool(t)) { MESSAGE("bin/" << t << " not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    const std::string good = dir + "/good.npz", feats = dir + "/features.npz";
    neural_data_save(good, small_data());
    {
        Npz f;
        std::vector<float> v(8 * 5);
        for (size_t i = 0; i < v.size(); i++) v[i] = (float)((i * 7) % 11);
        f.set("conv1", NpyArray::from_f32({8, 5}, v.data()));
        npz_write(feats, f);
    }
    std::vector<RawMember> base = raw_members(good);
    // 1: R*N*U*B wraps to 0 in int64 (2^64 elements)
    write_zip(dir + "/wrap.npz", replace(base, stored("responses.npy", npy_head("<f4", "(65536, 65536, 65536, 65536)"))));
    // 4: a huge shape in a small file; a deflate bomb of 896 MB just under the 1032:1 guard
    write_zip(dir + "/huge.npz",
              replace(base, stored("responses.npy", npy_head("<f4", "(1000, 8, 1000, 1000000)") + std::string(16, '\0'))));
    const uint64_t bomb_floats = 224ull << 20;
    write_zip(dir + "/bomb.npz",
              replace(base, deflated_zeros("responses.npy", npy_head("<f4", "(1, 8, 1, " + std::to_string(bomb_floats / 8) + ")"),
                                           bomb_floats * 4)));
    REQUIRE(fs::file_size(dir + "/bomb.npz") < (1u << 20));
    // 7: duplicate member names ("responses" twice; "unit_area" and "unit_area.npy")
    {
        std::vector<RawMember> dup = base;
        dup.push_back(stored("responses.npy", dup[1].data));
        write_zip(dir + "/dup.npz", dup);
        std::vector<RawMember> dup2 = base;
        for (const RawMember& m : base)
            if (m.name == "unit_area.npy") dup2.push_back(stored("unit_area", m.data));
        write_zip(dir + "/dup2.npz", dup2);
    }
    // image folders: a good one, one whose class b is all unreadable, one whose class a is one
    // 16384 x 16384 PNG (268 M pixels in a ~300 KB file)
    vt_test::image_folder(dir + "/imgs", 4);
    vt_test::image_folder(dir + "/unreadable", 4);
    for (int i = 0; i < 4; i++) std::ofstream(dir + "/unreadable/train/b/" + std::to_string(i) + ".png") << "not a png";
    vt_test::image_folder(dir + "/bigimg", 4);
    for (int i = 0; i < 4; i++) fs::remove(dir + "/bigimg/train/a/" + std::to_string(i) + ".png");
    write_black_png(dir + "/bigimg/train/a/huge.png", 16384, 16384);
    REQUIRE(fs::file_size(dir + "/bigimg/train/a/huge.png") < (1u << 20));
    std::ofstream(dir + "/a_file") << "x";
    // 3: a trained lstm checkpoint (tiny3) to --resume with other flags
    const std::string ck = dir + "/ck/lstm.npz";
    const std::string tiny = " --arch tiny3 --epochs 1 --batch 4 --loader-threads 1 --threads 1 ";
    {
        vt_test::ShellRun r = vt_test::run_tool_limited("pretrain", dir + "/imgs" + tiny + "--motif lstm --steps 4 --out " + ck,
                                                        kMemKB, kSeconds);
        CAPTURE(r.out);
        REQUIRE(r.rc == 0);
        REQUIRE(fs::exists(ck));
    }

    const std::string O = " --out " + dir + "/out";  // never created by a failing run
    const std::string data_flags = " --features " + feats + O + " --data ";
    struct Case {
        const char* row;
        std::string tool, args, says;
    };
    const std::vector<Case> cases = {
        {"1", "score", data_flags + dir + "/wrap.npz", "overflows a 64-bit byte count"},
        {"1", "select_layers", " --data " + dir + "/wrap.npz" + O, "overflows a 64-bit byte count"},
        {"1", "inspect", dir + "/wrap.npz", "overflows a 64-bit byte count"},
        {"4", "score", data_flags + dir + "/huge.npz", "but the member holds 16"},
        {"4", "select_layers", " --data " + dir + "/huge.npz" + O, "but the member holds 16"},
        {"4", "inspect", dir + "/huge.npz", "data too short"},
        {"4", "score", data_flags + dir + "/bomb.npz", "of memory, more than"},
        {"4", "inspect", dir + "/bomb.npz", "of memory, more than"},
        {"4", "pretrain", dir + "/bigimg" + tiny + "--out " + dir + "/out/ck.npz", "of memory, more than"},
        {"4", "pretrain", dir + "/imgs" + tiny + "--steps 100000 --motif lstm --out " + dir + "/out/ck.npz",
         "--steps: expected an integer from 1 to 1000, got '100000'"},
        {"5", "score", " --threads 64 --features " + dir + "/none.npz" + O + " --data " + dir + "/none.npz", "none.npz"},
        {"7", "score", data_flags + dir + "/dup.npz", "duplicate member name"},
        {"7", "select_layers", " --data " + dir + "/dup.npz" + O, "duplicate member name"},
        {"7", "inspect", dir + "/dup.npz", "duplicate member name"},
        {"7", "inspect", dir + "/dup2.npz", "array 'unit_area' twice"},
        {"2", "pretrain", dir + "/unreadable" + tiny + "--out " + vt_test::shell_quote(dir + "/x';touch " + dir + "/PWNED;'y/ck.npz"),
         "has no readable image"},
        {"3", "pretrain", dir + "/imgs" + tiny + "--resume --out " + ck, "--motif lstm, not none"},
        {"3", "pretrain", dir + "/imgs" + tiny + "--resume --motif lstm --steps 6 --out " + ck, "--steps 4, not 6"},
        {"3", "pretrain", dir + "/imgs" + tiny + "--resume --motif gru --steps 4 --feedback conv3:conv2 --out " + ck,
         "--motif lstm, not gru; --feedback none, not conv3:conv2"},
        {"3", "pretrain", dir + "/imgs" + tiny + "--motif lstm --steps 4 --out " + ck, "holds a checkpoint of an earlier run"},
        {"9", "score", data_flags + good + " --min-reliability nan", "--min-reliability: expected a finite number"},
        {"9", "pretrain", dir + "/imgs --lr nan", "--lr: expected a finite number above 0"},
        {"9", "pretrain", dir + "/imgs --lr inf", "--lr: expected a finite number above 0"},
        {"9", "pretrain", dir + "/imgs --lr -1", "--lr: expected a finite number above 0 and at most 100, got '-1'"},
        {"9", "pretrain", dir + "/imgs --wd -5", "--wd: expected a finite number from 0 to 1, got '-5'"},
        {"9", "pretrain", dir + "/imgs --warmup -3", "--warmup: expected an integer from 0 to"},
        {"9", "pretrain", dir + "/imgs --steps -4", "--steps: expected an integer from 1 to 1000"},
        {"9", "fit_dynamics", " --lr nan" + O, "--lr: expected a finite number"},
        {"9", "fit_dynamics", " --min-reliability nan" + O, "--min-reliability: expected a finite number"},
        {"10", "pretrain", dir + "/imgs --batch 4294967298", "--batch: expected an integer from 1 to 65536, got '4294967298'"},
        {"10", "fit_dynamics", " --batch 4294967298" + O, "--batch: expected an integer"},
        {"10", "fit_dynamics", " --model-seed -1" + O, "--model-seed: expected an integer from 0 to"},
        {"10", "score", data_flags + good + " --seed -1", "--seed: expected an integer from 0 to"},
        {"10", "sweep", " --grid motifs --jobs 0" + O, "--jobs: expected an integer from 1 to 1024, got '0'"},
        {"11", "pretrain", dir + "/unreadable" + tiny + "--out " + dir + "/out/ck.npz", "class 'b' in"},
        {"12", "pretrain", dir + "/imgs" + tiny + "--out " + dir + "/a_file/sub/ck.npz", "cannot create the folder"},
        {"12", "pretrain", dir + "/imgs" + tiny + "--out " + dir + "/imgs", "is a folder; expected a file path"},
        {"13", "fit_dynamics", " --time-varied=maybe" + O, "--time-varied: a switch takes no value, or =true/=false"},
        {"13", "pretrain", dir + "/imgs --resume=yes", "--resume: a switch takes no value, or =true/=false"},
    };
    const std::set<std::string> before = tree(dir);
    for (const Case& c : cases) {
        CAPTURE(c.row);
        CAPTURE(c.tool);
        CAPTURE(c.args);
        vt_test::ShellRun r = vt_test::run_tool_limited(c.tool, c.args, kMemKB, kSeconds);
        CAPTURE(r.out);
        CHECK(r.rc == 1);
        CHECK(error_lines(r.out) == 1);
        CHECK(last_line(r.out).rfind("error: ", 0) == 0);
        CHECK(has(r.out, c.says));
        CHECK(tree(dir) == before);
    }
    CHECK(!fs::exists(dir + "/PWNED"));
    fs::remove_all(dir);
}

TEST_CASE("bad input: rows whose answer is documented behaviour (exit 0)") {
    for (const char* t : {"inspect", "pretrain"})
        if (!vt_test::have_tool(t)) { MESSAGE("bin/" << t << " not built: skipped"); return; }
    const std::string dir = vt_test::temp_dir();
    vt_test::image_folder(dir + "/imgs", 4);
    const std::string tiny = " --arch tiny3 --epochs 1 --batch 4 --threads 1 ";

    // 4: a valid 16384 x 16384 PNG: inspect reads its header only (a few MB, not 2.3 GB)
    write_black_png(dir + "/huge.png", 16384, 16384);
    vt_test::ShellRun r = vt_test::shell_run("ulimit -v " + std::to_string(kMemKB) + " && " + vt_test::tool_path("inspect") +
                                             " " + dir + "/huge.png 2>&1");
    CHECK(r.rc == 0);
    CHECK(has(r.out, "image 16384 x 16384 (PNG, 1 channels)"));

    // 2: a path with a shell command in it is only a path: the checkpoint lands there, nothing runs
    std::string evil = dir + "/x';touch " + dir + "/PWNED;'y/ck.npz";
    r = vt_test::run_tool_limited("pretrain", dir + "/imgs" + tiny + "--out " + vt_test::shell_quote(evil), kMemKB, kSeconds);
    CAPTURE(r.out);
    CHECK(r.rc == 0);
    CHECK(fs::exists(evil));
    CHECK(!fs::exists(dir + "/PWNED"));

    // 6: --loader-threads 1000 is clamped to the hardware threads, with a note
    // 14: a *.tmp.<pid> left by a killed save is removed when its process is gone
    const std::string out = dir + "/o/ck.npz";
    fs::create_directories(dir + "/o");
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, nullptr, 0);
    const std::string stale = out + ".tmp." + std::to_string(dead), live = out + ".tmp." + std::to_string(getpid());
    std::ofstream(stale) << "half a checkpoint";
    std::ofstream(live) << "a save in progress";
    r = vt_test::run_tool_limited("pretrain", dir + "/imgs" + tiny + "--loader-threads 1000 --out " + out, kMemKB, kSeconds);
    CAPTURE(r.out);
    CHECK(r.rc == 0);
    CHECK(has(r.out, "note: --loader-threads 1000 is more than the"));
    CHECK(has(r.out, "note: removed '" + stale + "'"));
    CHECK(!fs::exists(stale));
    CHECK(fs::exists(live));  // its writer is alive: kept
    CHECK(fs::exists(out));
    CHECK(!fs::exists(out + ".lock"));  // the claim is released

    // 13: switches take =true/=false (and =1/=0)
    r = vt_test::run_tool_limited("pretrain", dir + "/imgs" + tiny + "--overwrite=true --resume=false --out " + out, kMemKB,
                                  kSeconds);
    CHECK(r.rc == 0);
    r = vt_test::run_tool_limited("pretrain", dir + "/imgs" + tiny + "--overwrite=0 --out " + out, kMemKB, kSeconds);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "holds a checkpoint of an earlier run"));
    fs::remove_all(dir);
}
