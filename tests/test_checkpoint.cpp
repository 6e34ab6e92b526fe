// Tests of safetensors (round trip of every dtype, conversions, strict rejection of corrupt headers,
// bad offsets and truncated data) and of atomic checkpoint directories (save / prune / latest, a
// crash left mid-write, a `latest` pointing at a deleted directory, --resume resolution). Files live
// under a unique /tmp directory removed at the end of each test.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/error.h"
#include "llmtrain/safetensors.h"
#include "util/util.h"

namespace fs = std::filesystem;
using namespace llmtrain;
using test::error_of;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("ckpt") {}
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A hand-made safetensors file: 8-byte length, the given header text, then `data_bytes` bytes.
void craft(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header;
  f << std::string(data_bytes, '\0');
}

std::vector<std::string> step_dirs(const std::string& ckpt) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(ckpt)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A checkpoint writer like the trainer's: a payload file and state.json.
std::function<void(const std::string&)> writer(int64_t step) {
  return [step](const std::string& dir) {
    std::ofstream(dir + "/model.bin") << "weights at " << step;
    std::ofstream(dir + "/state.json") << nlohmann::json{{"step", step}}.dump();
  };
}

}  // namespace

TEST_CASE("safetensors round trip of every dtype with metadata", "[checkpoint]") {
  TempDir d;
  const std::string p = d.file("t.safetensors");
  std::vector<float> f32 = {1.f, -2.f, 3.5f, 0.25f, -0.f, 1e-3f};
  std::vector<uint16_t> bf16 = {f32_to_bf16(1.f), f32_to_bf16(-2.5f), f32_to_bf16(0.15625f), f32_to_bf16(3.f)};
  std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7C00};  // 1, -2, ~1/3, smallest subnormal, inf
  std::vector<int32_t> i32 = {-1, 0, 7};
  std::vector<int64_t> i64 = {int64_t(1) << 40, -5};
  std::vector<double> f64 = {0.5, -1.25, 1e10, 3.0};
  std::vector<uint8_t> u8 = {0, 1, 255};
  std::vector<SafetensorsEntry> ts = {
      {"bf", DType::BF16, {4}, bf16.data(), bf16.size() * 2},
      {"model.w", DType::F32, {2, 3}, f32.data(), f32.size() * 4},
      {"half", DType::F16, {5}, f16.data(), f16.size() * 2},
      {"ints", DType::I32, {3}, i32.data(), i32.size() * 4},
      {"longs", DType::I64, {2}, i64.data(), i64.size() * 8},
      {"dbl", DType::F64, {2, 2}, f64.data(), f64.size() * 8},
      {"bytes", DType::U8, {3}, u8.data(), u8.size()},
      {"scalar", DType::F32, {}, f32.data(), 4},
  };
  write_safetensors(p, ts, {{"format", "pt"}, {"step", "12"}});
  CHECK_FALSE(fs::exists(p + ".tmp"));

  // The layout: the data section starts 8-aligned, so every tensor is naturally aligned.
  const std::string raw = slurp(p);
  uint64_t hlen;
  std::memcpy(&hlen, raw.data(), 8);
  CHECK((8 + hlen) % 8 == 0);
  auto header = nlohmann::json::parse(raw.substr(8, hlen));
  CHECK(header["model.w"]["dtype"] == "F32");
  CHECK(header["__metadata__"]["format"] == "pt");

  SafetensorsReader r(p);
  CHECK(r.names().size() == 8);
  CHECK(r.metadata().at("step") == "12");
  const auto& w = r.get("model.w");
  CHECK(w.dtype == DType::F32);
  CHECK(w.shape == std::vector<int64_t>{2, 3});
  CHECK(w.numel() == 6);
  CHECK(reinterpret_cast<uintptr_t>(r.get("dbl").data) % 8 == 0);
  CHECK(reinterpret_cast<uintptr_t>(w.data) % 4 == 0);

  std::vector<float> out(6);
  r.read_f32("model.w", out.data(), 6);
  CHECK(out == f32);
  r.read_f32("bf", out.data(), 4);
  CHECK(std::vector<float>(out.begin(), out.begin() + 4) == std::vector<float>{1.f, -2.5f, 0.15625f, 3.f});
  r.read_f32("half", out.data(), 5);
  CHECK(out[0] == 1.f);
  CHECK(out[1] == -2.f);
  CHECK(out[2] == Approx(1.f / 3).epsilon(1e-3));
  CHECK(out[3] == std::ldexp(1.f, -24));
  CHECK(std::isinf(out[4]));
  r.read_f32("dbl", out.data(), 4);
  CHECK(std::vector<float>(out.begin(), out.begin() + 4) == std::vector<float>{0.5f, -1.25f, 1e10f, 3.f});
  r.read_f32("scalar", out.data(), 1);
  CHECK(out[0] == 1.f);
  std::vector<int64_t> l(2);
  r.read_raw("longs", DType::I64, l.data(), 2);
  CHECK(l == i64);
  std::vector<uint8_t> b(3);
  r.read_raw("bytes", DType::U8, b.data(), 3);
  CHECK(b == u8);

  CHECK(error_of([&] { r.read_f32("model.w", out.data(), 5); }) ==
        p + ": tensor 'model.w' has 6 elements (shape [2, 3]) but 5 were expected");
  CHECK_THAT(error_of([&] { r.read_f32("ints", out.data(), 3); }), Contains("has dtype I32, not a floating-point type"));
  CHECK_THAT(error_of([&] { r.read_raw("ints", DType::I64, l.data(), 3); }), Contains("dtype I32 but I64"));
  CHECK(error_of([&] { r.get("nope"); }) == p + ": no tensor named 'nope'");

  // Writer-side validation.
  std::vector<SafetensorsEntry> dup = {ts[1], ts[1]};
  CHECK_THROWS_WITH(write_safetensors(d.file("dup.safetensors"), dup), Contains("duplicate tensor 'model.w'"));
  std::vector<SafetensorsEntry> wrong = {{"x", DType::F32, {3}, f32.data(), 8}};
  CHECK_THROWS_WITH(write_safetensors(d.file("w.safetensors"), wrong), Contains("8 bytes given but F32 [3] needs 12"));
}

TEST_CASE("bf16 conversion rounds to nearest even", "[checkpoint]") {
  CHECK(bf16_to_f32(f32_to_bf16(1.f + std::ldexp(1.f, -8))) == 1.f);  // tie -> even (down)
  CHECK(bf16_to_f32(f32_to_bf16(1.f + 3 * std::ldexp(1.f, -9))) == 1.f + std::ldexp(1.f, -7));
  CHECK(bf16_to_f32(f32_to_bf16(1.f + 3 * std::ldexp(1.f, -8))) == 1.f + std::ldexp(1.f, -6));  // tie -> even (up)
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("safetensors reader rejects corrupt headers, bad offsets and truncated data", "[checkpoint]") {
  TempDir d;
  const std::string p = d.file("bad.safetensors");

  craft(p, "{not json at all}", 0);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains(p + ": corrupt header"));

  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    uint64_t n = 1ull << 40;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{}";
  }
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("corrupt header: header length 1099511627776"));
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << "abc";
  }
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("too short"));

  craft(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", 12);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }),
             Contains("tensor 'a': data_offsets [0,12] span 12 bytes but F32 [2] needs 8"));
  craft(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
        8);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("tensors 'a' and 'b' overlap"));
  craft(p, R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("tensor 'a': unsupported dtype 'Q4'"));
  craft(p, R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("tensor 'a': bad shape [-2]"));
  craft(p, R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("overflows"));
  craft(p, R"({"a":{"dtype":"F32","shape":[2]}})", 8);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("needs dtype, shape, data_offsets"));
  craft(p, R"({"__metadata__":{"k":1}})", 0);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }), Contains("__metadata__ value 'k' is not a string"));

  // A file cut short inside its data section.
  std::vector<float> v(100, 1.f), u(10, 2.f);
  write_safetensors(p, {{"big", DType::F32, {100}, v.data(), 400}, {"small", DType::F32, {10}, u.data(), 40}});
  CHECK_NOTHROW(SafetensorsReader(p));
  fs::resize_file(p, fs::file_size(p) - 10);
  CHECK_THAT(error_of([&] { SafetensorsReader r(p); }),
             Contains(p + ": tensor 'small': truncated data section: needs bytes [400, 440) but the data section has 430 bytes"));
  CHECK_THAT(error_of([&] { SafetensorsReader r(d.file("missing.safetensors")); }), Contains("No such file"));
}

TEST_CASE("checkpoint save writes step dirs, updates latest and prunes to keep_last", "[checkpoint]") {
  TempDir d;
  CheckpointManager m(d.path, 2);
  CHECK_FALSE(m.find_latest());
  for (int64_t s : {100, 200, 300}) {
    std::string dir = m.save(s, writer(s));
    CHECK(dir == d.path + "/ckpt/" + CheckpointManager::step_dir_name(s));
  }
  CHECK(step_dirs(d.path + "/ckpt") == std::vector<std::string>{"latest", "step_00000200", "step_00000300"});
  CHECK(slurp(d.path + "/ckpt/latest") == "step_00000300\n");
  REQUIRE(m.find_latest());
  CHECK(*m.find_latest() == d.path + "/ckpt/step_00000300");
  CHECK(slurp(*m.find_latest() + "/model.bin") == "weights at 300");

  // Re-saving an existing step replaces it.
  m.save(300, [](const std::string& dir) {
    std::ofstream(dir + "/model.bin") << "second";
    std::ofstream(dir + "/state.json") << "{}";
  });
  CHECK(slurp(d.path + "/ckpt/step_00000300/model.bin") == "second");
  CHECK(step_dirs(d.path + "/ckpt") == std::vector<std::string>{"latest", "step_00000200", "step_00000300"});

  // Saving an older step (a run resumed from an older checkpoint) drops the newer ones: they belong
  // to the continuation that run abandoned, and the step just saved is the newest.
  m.save(150, writer(150));
  CHECK(step_dirs(d.path + "/ckpt") == std::vector<std::string>{"latest", "step_00000150"});
  CHECK(*m.find_latest() == d.path + "/ckpt/step_00000150");

  // A writer that fails leaves nothing behind and `latest` untouched; so does one that forgets state.json.
  CHECK_THROWS_WITH(m.save(400, [](const std::string& dir) {
    std::ofstream(dir + "/model.bin") << "partial";
    throw RuntimeError("disk full");
  }),
                    "disk full");
  CHECK_THROWS_WITH(m.save(500, [](const std::string& dir) { std::ofstream(dir + "/model.bin") << "x"; }),
                    Contains("state.json missing"));
  CHECK(step_dirs(d.path + "/ckpt") == std::vector<std::string>{"latest", "step_00000150"});
  CHECK(slurp(d.path + "/ckpt/latest") == "step_00000150\n");

  CheckpointManager keep_all(d.file("all"), 0);
  for (int64_t s = 1; s <= 5; ++s) keep_all.save(s, writer(s));
  CHECK(keep_all.list_complete().size() == 5);
}

TEST_CASE("a crash mid-write leaves the previous checkpoint as the latest", "[checkpoint]") {
  TempDir d;
  CheckpointManager m(d.path, 3);
  m.save(100, writer(100));
  // The crash: a temp dir with a half-written state.json and no rename, `latest` not updated.
  const std::string tmp = d.path + "/ckpt/.tmp_step_00000200_99999";
  fs::create_directories(tmp);
  std::ofstream(tmp + "/model.bin") << "half";
  std::ofstream(tmp + "/state.json") << "{\"step\": 2";
  // A step dir without a parsable state.json is not complete either.
  fs::create_directories(d.path + "/ckpt/step_00000300");
  std::ofstream(d.path + "/ckpt/step_00000300/state.json") << "{\"step\":";

  REQUIRE(m.find_latest());
  CHECK(*m.find_latest() == d.path + "/ckpt/step_00000100");
  auto r = resolve_resume("auto", d.path);
  REQUIRE(r);
  CHECK(*r == d.path + "/ckpt/step_00000100");
  CHECK(nlohmann::json::parse(slurp(*r + "/state.json"))["step"] == 100);

  // The next save clears the stale temp dir.
  m.save(200, writer(200));
  CHECK_FALSE(fs::exists(tmp));
  CHECK(*m.find_latest() == d.path + "/ckpt/step_00000200");
}

TEST_CASE("latest pointing to a deleted or bogus dir falls back to the newest complete one", "[checkpoint]") {
  TempDir d;
  CheckpointManager m(d.path, 0);
  m.save(100, writer(100));
  m.save(99999999, writer(99999999));
  m.save(123456789, writer(123456789));  // wider than the 8-digit padding: newest by number, not by name
  m.save(200000000, writer(200000000));
  fs::remove_all(d.path + "/ckpt/step_200000000");
  const std::string newest = d.path + "/ckpt/step_123456789";
  CHECK(*m.find_latest() == newest);
  write_file_atomic(d.path + "/ckpt/latest", "../../elsewhere\n");
  CHECK(*m.find_latest() == newest);
  fs::remove(d.path + "/ckpt/latest");
  CHECK(*m.find_latest() == newest);
}

TEST_CASE("resolve_resume: auto, a checkpoint dir, a run dir, and bad paths", "[checkpoint]") {
  TempDir d;
  CHECK_FALSE(resolve_resume("auto", d.path));
  CHECK_FALSE(resolve_resume("", d.path));
  CheckpointManager m(d.path, 0);
  const std::string dir = m.save(7, writer(7));
  CHECK(*resolve_resume(dir, "/unused") == dir);
  CHECK(*resolve_resume(d.path, "/unused") == dir);
  CHECK(error_of([&] { resolve_resume(d.file("nope"), d.path); }) ==
        "--resume: " + d.file("nope") + ": no such checkpoint directory");
  fs::create_directories(d.file("empty"));
  CHECK(error_of([&] { resolve_resume(d.file("empty"), d.path); }) == "--resume: " + d.file("empty") + "/state.json: missing");
  fs::create_directories(d.file("run2/ckpt"));
  CHECK_THAT(error_of([&] { resolve_resume(d.file("run2"), d.path); }), Contains("run directory has no complete checkpoint"));
}

TEST_CASE("write_file_atomic replaces content and leaves no temp files", "[checkpoint]") {
  TempDir d;
  const std::string p = d.file("metrics.jsonl");
  write_file_atomic(p, "one\n");
  write_file_atomic(p, "two\n");
  CHECK(slurp(p) == "two\n");
  CHECK(step_dirs(d.path) == std::vector<std::string>{"metrics.jsonl"});
  CHECK_THROWS_AS(write_file_atomic(d.file("no/such/dir/f"), "x"), RuntimeError);
}
