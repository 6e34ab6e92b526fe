// Tests of ParquetReader against files written by independent writers (DuckDB and hyparquet-writer,
// see scripts/make_parquet_fixtures.mjs): every fixture must read back exactly the strings the
// generator put in, in row order with nulls skipped; unknown, non-string and repeated columns must
// be refused by name; and damaged files (truncated, bad magic, bad footer length, corrupt page
// headers and compressed data, plus a few thousand random byte flips) must end in an InputError,
// never a crash or an out-of-bounds read (build with -fsanitize=address,undefined to check the
// latter). A hidden "[parquet_bench]" case reports decode throughput on a large file named by
// LLMTRAIN_PARQUET_BENCH.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmtrain/error.h"
#include "tools/parquet.h"

#ifndef LLMTRAIN_FIXTURES_DIR
#define LLMTRAIN_FIXTURES_DIR "tests/fixtures"
#endif

namespace fs = std::filesystem;
using llmtrain::InputError;
using llmtrain::ParquetReader;
using Catch::Matchers::Contains;

namespace {

const std::string kDir = std::string(LLMTRAIN_FIXTURES_DIR) + "/parquet";

std::string fixture(const std::string& name) { return kDir + "/" + name; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(kDir))
    if (e.path().extension() == ".parquet") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

using Rows = std::vector<std::pair<int64_t, std::string>>;

Rows read_column(ParquetReader& r, const std::string& column) {
  Rows rows;
  r.for_each_string(column, [&](std::string_view v, int64_t row) { rows.emplace_back(row, std::string(v)); });
  return rows;
}

// A scratch directory for damaged copies, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "llmtrain_parquet_XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

uint32_t footer_length(const std::string& bytes) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + bytes.size() - 8, 4);
  return v;
}

std::string with_footer_length(std::string bytes, uint32_t len) {
  std::memcpy(&bytes[bytes.size() - 8], &len, 4);
  return bytes;
}

// Opens `path` and reads every column; anything but success or InputError fails the test.
// Returns true when an InputError was thrown.
bool read_everything(const std::string& path) {
  try {
    ParquetReader r(path);
    for (const std::string& c : r.column_names()) {
      try {
        r.for_each_string(c, [](std::string_view, int64_t) {});
      } catch (const InputError& e) {
        // Non-string and repeated columns are refused with InputError too; keep going so that the
        // other columns of a damaged file are also exercised.
        if (std::string(e.what()).find("not BYTE_ARRAY") == std::string::npos &&
            std::string(e.what()).find("repeated") == std::string::npos)
          return true;
      }
    }
  } catch (const InputError&) {
    return true;
  }
  return false;
}

}  // namespace

TEST_CASE("every Parquet fixture reads back its expected strings", "[parquet]") {
  std::vector<std::string> names = fixture_names();
  REQUIRE(names.size() >= 12);  // an empty or misplaced fixture dir must not pass vacuously
  for (const std::string& name : names) {
    INFO("fixture " << name);
    std::string json_path = fixture(name.substr(0, name.size() - 8) + ".expected.json");
    nlohmann::json expected = nlohmann::json::parse(slurp(json_path));
    ParquetReader r(fixture(name));
    CHECK(r.num_rows() == expected["num_rows"].get<int64_t>());
    CHECK(r.column_names() == expected["columns"].get<std::vector<std::string>>());
    for (const auto& [column, values] : expected["strings"].items()) {
      INFO("column " << column);
      REQUIRE(static_cast<int64_t>(values.size()) == r.num_rows());
      Rows want;
      for (size_t i = 0; i < values.size(); ++i)
        if (!values[i].is_null()) want.emplace_back(static_cast<int64_t>(i), values[i].get<std::string>());
      Rows got = read_column(r, column);
      REQUIRE(got.size() == want.size());
      size_t mismatches = 0, first = 0;
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != want[i] && mismatches++ == 0) first = i;
      INFO("first mismatch at value " << first << ": row " << got[first].first << " '" << got[first].second
                                      << "' vs row " << want[first].first << " '" << want[first].second << "'");
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("Parquet column names, including nested leaves", "[parquet]") {
  ParquetReader r(fixture("duckdb_nested.parquet"));
  CHECK(r.num_rows() == 20);
  CHECK(r.column_names() == std::vector<std::string>{"text", "meta.url", "meta.lang", "n", "tags.list.element"});
  Rows lang = read_column(r, "meta.lang");
  REQUIRE(lang.size() == 13);  // rows 0, 3, ..., 18 are null
  CHECK(lang[0] == std::make_pair(int64_t(1), std::string("en")));
  CHECK(lang[2] == std::make_pair(int64_t(4), std::string("en")));
}

TEST_CASE("Parquet reader refuses unknown, non-string and repeated columns by name", "[parquet]") {
  std::string path = fixture("duckdb_nested.parquet");
  ParquetReader r(path);
  auto nop = [](std::string_view, int64_t) {};
  CHECK_THROWS_AS(r.for_each_string("no_such_column", nop), InputError);
  CHECK_THROWS_WITH(r.for_each_string("no_such_column", nop), Contains("no_such_column") && Contains(path));
  CHECK_THROWS_WITH(r.for_each_string("n", nop), Contains("INT64") && Contains("'n'"));
  CHECK_THROWS_WITH(r.for_each_string("tags.list.element", nop), Contains("repeated"));
  CHECK_THROWS_WITH(ParquetReader(fixture("does_not_exist.parquet")), Contains("does_not_exist.parquet"));
}

TEST_CASE("Parquet reader rejects damaged footers with InputError", "[parquet]") {
  TempDir tmp;
  const std::string original = slurp(fixture("duckdb_zstd.parquet"));
  const std::string path = tmp.file("damaged.parquet");

  SECTION("truncated files") {
    for (size_t keep : {size_t(0), size_t(3), size_t(11), original.size() / 2, original.size() - 1, original.size() - 5}) {
      INFO("truncated to " << keep << " bytes");
      spit(path, original.substr(0, keep));
      CHECK_THROWS_WITH(ParquetReader(path), Contains(path));
    }
  }
  SECTION("bad magic at either end") {
    std::string head = original;
    head[0] = 'X';
    spit(path, head);
    CHECK_THROWS_WITH(ParquetReader(path), Contains("PAR1") && Contains(path));
    std::string tail = original;
    tail[tail.size() - 1] = 'X';
    spit(path, tail);
    CHECK_THROWS_WITH(ParquetReader(path), Contains("PAR1") && Contains(path));
  }
  SECTION("mangled footer length") {
    uint32_t real = footer_length(original);
    for (uint32_t len : {0u, 0xFFFFFFF0u, static_cast<uint32_t>(original.size()), static_cast<uint32_t>(original.size() - 11)}) {
      INFO("footer length " << len);
      spit(path, with_footer_length(original, len));
      CHECK_THROWS_WITH(ParquetReader(path), Contains("footer length") && Contains(path));
    }
    // Lengths that still fit start the decoder mid-stream: an InputError or, by luck, a file
    // whose every column still reads or is refused cleanly; never a crash.
    for (uint32_t len : {real - 1, real + 1, real / 2, real - 40, real + 100}) {
      INFO("footer length " << len);
      spit(path, with_footer_length(original, len));
      read_everything(path);
    }
  }
  SECTION("garbage inside the footer") {
    uint32_t real = footer_length(original);
    size_t footer_start = original.size() - 8 - real;
    std::string bad = original;
    // 0xff as a field header names wire type 15, which does not exist.
    for (size_t i = 0; i < 16; ++i) bad[footer_start + i] = '\xff';
    spit(path, bad);
    CHECK_THROWS_WITH(ParquetReader(path), Contains("footer") && Contains(path));
  }
}

TEST_CASE("Parquet reader reports corrupt pages with file, column, row group and page", "[parquet]") {
  TempDir tmp;
  const std::string path = tmp.file("damaged.parquet");
  auto nop = [](std::string_view, int64_t) {};

  SECTION("garbage page header") {
    // The first column chunk of a DuckDB file starts right after the leading magic.
    std::string bad = slurp(fixture("duckdb_zstd.parquet"));
    for (size_t i = 4; i < 12; ++i) bad[i] = '\xff';
    spit(path, bad);
    ParquetReader r(path);
    CHECK_THROWS_WITH(r.for_each_string("text", nop), Contains(path) && Contains("column 'text'") &&
                                                          Contains("row group 0") && Contains("page 0") &&
                                                          Contains("page header"));
  }
  SECTION("corrupt zstd frame") {
    std::string bad = slurp(fixture("duckdb_zstd.parquet"));
    size_t at = bad.find("\x28\xb5\x2f\xfd", 4);
    REQUIRE(at != std::string::npos);
    bad[at] = 0;
    spit(path, bad);
    ParquetReader r(path);
    CHECK_THROWS_WITH(r.for_each_string("text", nop), Contains("zstd") && Contains("row group 0"));
  }
  SECTION("corrupt gzip stream") {
    std::string bad = slurp(fixture("duckdb_gzip.parquet"));
    size_t at = bad.find("\x1f\x8b", 4);
    REQUIRE(at != std::string::npos);
    bad[at] = 0;
    spit(path, bad);
    ParquetReader r(path);
    CHECK_THROWS_WITH(r.for_each_string("text", nop), Contains("gzip") && Contains("column 'text'"));
  }
  SECTION("corrupt snappy stream") {
    std::string bad = slurp(fixture("duckdb_snappy.parquet"));
    // Long enough to run past any literal into a tag: 0xff is a copy from 4 GiB back.
    for (size_t i = 0; i < 1000; ++i) bad[400 + i] = '\xff';
    spit(path, bad);
    ParquetReader r(path);
    CHECK_THROWS_WITH(r.for_each_string("text", nop), Contains("snappy") && Contains("column 'text'"));
  }
  SECTION("PLAIN value length past the end of the page") {
    std::string bad = slurp(fixture("duckdb_uncompressed.parquet"));
    const std::string first = "h\xc3\xa9llo w\xc3\xb6rld";  // the first row, length-prefixed in the page
    std::string needle = std::string(1, static_cast<char>(first.size())) + std::string(3, '\0') + first;
    size_t at = bad.find(needle);
    REQUIRE(at != std::string::npos);
    bad[at] = '\xff';
    bad[at + 1] = '\xff';
    bad[at + 2] = '\xff';
    bad[at + 3] = '\x7f';
    spit(path, bad);
    ParquetReader r(path);
    CHECK_THROWS_WITH(r.for_each_string("text", nop), Contains("PLAIN value") && Contains("page 0"));
  }
}

TEST_CASE("Parquet reader survives random damage to every fixture", "[parquet]") {
  TempDir tmp;
  const std::string path = tmp.file("fuzzed.parquet");
  std::mt19937 gen(1234);
  // LLMTRAIN_PARQUET_FUZZ_TRIALS raises the trials per fixture for a longer (sanitizer) run.
  const char* env = std::getenv("LLMTRAIN_PARQUET_FUZZ_TRIALS");
  const int trials = env ? std::atoi(env) : 150;
  int errors = 0, runs = 0;
  for (const std::string& name : fixture_names()) {
    const std::string original = slurp(fixture(name));
    const size_t footer_start = original.size() - 8 - footer_length(original);
    for (int trial = 0; trial < trials; ++trial) {
      std::string bad = original;
      // Half the damage lands in the footer, where one byte changes the whole structure.
      std::uniform_int_distribution<size_t> anywhere(0, bad.size() - 1), footer(footer_start, bad.size() - 9);
      int flips = 1 + trial % 4;
      for (int k = 0; k < flips; ++k) {
        size_t at = (trial % 2) ? footer(gen) : anywhere(gen);
        bad[at] = static_cast<char>(gen());
      }
      if (trial % 10 == 9) bad.resize(std::uniform_int_distribution<size_t>(0, bad.size())(gen));
      INFO("fixture " << name << " trial " << trial);
      spit(path, bad);
      errors += read_everything(path);
      ++runs;
    }
  }
  // Most random damage is caught; the rest lands in string bytes and reads as different text.
  INFO(errors << " of " << runs << " damaged files raised InputError");
  CHECK(errors > runs / 3);
}

TEST_CASE("Parquet decode throughput", "[.][bench][parquet_bench]") {
  const char* path = std::getenv("LLMTRAIN_PARQUET_BENCH");
  if (!path) {
    WARN("set LLMTRAIN_PARQUET_BENCH to a large zstd Parquet file with a 'text' column "
         "(scripts/make_parquet_fixtures.mjs --bench writes one)");
    return;
  }
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    ParquetReader r(path);
    uint64_t bytes = 0, values = 0, checksum = 0;
    r.for_each_string("text", [&](std::string_view v, int64_t row) {
      bytes += v.size();
      ++values;
      checksum += static_cast<uint64_t>(row) + (v.empty() ? 0 : static_cast<unsigned char>(v[0]));
    });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    WARN("run " << rep << ": " << values << " strings, " << bytes / 1e6 << " MB of text in " << s << " s = "
                << bytes / 1e6 / s << " MB/s (file " << fs::file_size(path) / 1e6 << " MB, checksum " << checksum << ")");
    CHECK(values == static_cast<uint64_t>(r.num_rows()));
  }
}
