// Tests of token shards and the DataLoader: the shard writer/reader round trip and its error messages,
// glob resolution, packed and document rows, deterministic shuffling that visits every row once per
// epoch, exact resume from state(), the data-parallel rank slicing property, and vocab checks.
// Shards are tiny and written under a unique /tmp directory removed at the end of each test.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"
#include "llmtrain/data.h"
#include "llmtrain/error.h"
#include "llmtrain/shard.h"

namespace fs = std::filesystem;
using namespace llmtrain;
using test::error_of;
using Catch::Matchers::Contains;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("data") {}
};

void write_shard(const std::string& path, const std::vector<int32_t>& toks, bool u32 = false) {
  ShardWriter w(path, u32);
  w.write(toks.data(), toks.size());
  w.close();
}

std::vector<int32_t> iota_tokens(size_t n, int32_t base) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = base + static_cast<int32_t>(i);
  return v;
}

struct Batch {
  std::vector<int32_t> in, tg;
  bool operator==(const Batch& o) const { return in == o.in && tg == o.tg; }
};

Batch next(DataLoader& l) {
  const auto& o = l.options();
  Batch b{std::vector<int32_t>((size_t)o.B * o.T), std::vector<int32_t>((size_t)o.B * o.T)};
  l.next_batch(b.in.data(), b.tg.data());
  return b;
}

// Three uint32 shards whose tokens identify their position: shard k, offset i -> k*10000 + i.
// With T = 8: 10, 7 and 3 packed windows (the trailing tokens of shard 1 form no full window).
std::vector<std::string> make_packed_shards(const TempDir& d) {
  std::vector<std::string> files = {d.file("p_train_000001.bin"), d.file("p_train_000002.bin"),
                                    d.file("p_train_000003.bin")};
  write_shard(files[0], iota_tokens(8 * 10 + 1, 0), true);
  write_shard(files[1], iota_tokens(8 * 7 + 5, 10000), true);
  write_shard(files[2], iota_tokens(8 * 3 + 1, 20000), true);
  return files;
}

LoaderOptions packed_opts(const std::vector<std::string>& files, int B, bool shuffle = true) {
  LoaderOptions o;
  o.files = files;
  o.B = B;
  o.T = 8;
  o.seed = 1234;
  o.shuffle = shuffle;
  return o;
}

// Documents (D = delimiter) of lengths 4, 11, 2, 1 and, in a second shard, a leading partial
// document without a delimiter followed by two more documents. The second token of each
// document identifies it.
constexpr int32_t D = 50256;
std::vector<std::string> make_doc_shards(const TempDir& d) {
  std::vector<std::string> files = {d.file("d_train_000001.bin"), d.file("d_train_000002.bin")};
  write_shard(files[0], {D, 1, 2, 3, D, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, D, 14, D});
  write_shard(files[1], {77, 78, D, 20, 21, D, 30, 31, 32});
  return files;
}

LoaderOptions doc_opts(const std::vector<std::string>& files, int B, bool shuffle) {
  LoaderOptions o;
  o.files = files;
  o.mode = "document";
  o.B = B;
  o.T = 6;
  o.seed = 99;
  o.shuffle = shuffle;
  o.delimiter = D;
  return o;
}

}  // namespace

TEST_CASE("shard writer and view round trip, uint16 and uint32", "[data]") {
  TempDir d;
  const std::string p16 = d.file("a_000000.bin"), p32 = d.file("b_000000.bin");
  std::vector<int32_t> toks = iota_tokens(1000, 0);
  toks[5] = 65535;
  {
    ShardWriter w(p16, false);
    w.write(toks.data(), 600);
    CHECK_FALSE(fs::exists(p16));  // nothing visible before close()
    CHECK(fs::exists(p16 + ".tmp"));
    w.write(toks.data() + 600, 400);
    w.close();
  }
  CHECK_FALSE(fs::exists(p16 + ".tmp"));
  ShardInfo h = read_shard_header(p16);
  CHECK(h.version == 1);
  CHECK(h.token_bytes == 2);
  CHECK(h.num_tokens == 1000);
  CHECK(fs::file_size(p16) == 1024 + 2 * 1000);
  ShardView v(p16);
  REQUIRE(v.size() == 1000);
  for (size_t i = 0; i < toks.size(); ++i) REQUIRE(v.token(i) == (uint32_t)toks[i]);
  std::vector<int32_t> out(10);
  v.copy(3, 10, out.data());
  CHECK(out == std::vector<int32_t>(toks.begin() + 3, toks.begin() + 13));

  toks[7] = 1 << 20;
  write_shard(p32, toks, true);
  ShardInfo h32 = read_shard_header(p32);
  CHECK(h32.version == 7);
  CHECK(h32.token_bytes == 4);
  CHECK(fs::file_size(p32) == 1024 + 4 * 1000);
  ShardView v32(p32);
  CHECK(v32.token(7) == (1u << 20));
  CHECK(v32.token(999) == 999);

  // A uint16 shard cannot hold ids >= 65536; an abandoned writer leaves no temp file behind.
  {
    ShardWriter w(d.file("c_000000.bin"), false);
    std::vector<int32_t> bad = {1, 2, 70000};
    std::string msg = error_of([&] { w.write(bad.data(), bad.size()); });
    CHECK_THAT(msg, Contains("token id 70000 at offset 2") && Contains("uint16"));
  }
  CHECK_FALSE(fs::exists(d.file("c_000000.bin.tmp")));
  CHECK_FALSE(fs::exists(d.file("c_000000.bin")));
}

TEST_CASE("shard header errors name the file and the problem", "[data]") {
  TempDir d;
  const std::string p = d.file("x_train_000001.bin");
  write_shard(p, iota_tokens(1000, 0));
  fs::resize_file(p, 2500);
  CHECK(error_of([&] { read_shard_header(p); }) ==
        p + ": truncated shard: header says 1000 tokens (3024 bytes) but file has 2500 bytes");
  CHECK_THAT(error_of([&] { ShardView v(p); }), Contains("truncated shard"));

  fs::resize_file(p, 3030);
  CHECK_THAT(error_of([&] { read_shard_header(p); }), Contains("oversized shard") && Contains("3030 bytes"));

  {
    std::vector<int32_t> hdr(256, 0);
    hdr[0] = 12345;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(hdr.data()), 1024);
  }
  CHECK(error_of([&] { read_shard_header(p); }) == p + ": bad magic 12345 (expected 20240520 or 20240801)");
  {
    std::vector<int32_t> hdr(256, 0);
    hdr[0] = 20240801;
    hdr[1] = 1;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(hdr.data()), 1024);
  }
  CHECK_THAT(error_of([&] { read_shard_header(p); }), Contains("bad version 1 for magic 20240801 (expected 7)"));
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << "tiny";
  }
  CHECK_THAT(error_of([&] { read_shard_header(p); }), Contains(p) && Contains("truncated shard: file has 4 bytes"));

  const std::string missing = d.file("nope_000001.bin");
  CHECK_THAT(error_of([&] { read_shard_header(missing); }), Contains(missing) && Contains("No such file"));
  LoaderOptions o;
  o.files = {missing};
  o.B = 1;
  o.T = 4;
  CHECK_THAT(error_of([&] { DataLoader l(o); }), Contains(missing) && Contains("No such file"));
}

TEST_CASE("resolve_shards expands globs, sorts, and names what is missing", "[data]") {
  TempDir d;
  write_shard(d.file("demo_train_000002.bin"), {1, 2});
  write_shard(d.file("demo_train_000001.bin"), {1, 2});
  write_shard(d.file("demo_val_000000.bin"), {1, 2});
  auto files = resolve_shards(d.path + "/demo_train_*.bin", "data.train");
  REQUIRE(files.size() == 2);
  CHECK(files[0] == d.file("demo_train_000001.bin"));
  CHECK(files[1] == d.file("demo_train_000002.bin"));
  CHECK(resolve_shards(d.file("demo_val_000000.bin"), "data.val") ==
        std::vector<std::string>{d.file("demo_val_000000.bin")});
  const std::string pat = d.path + "/other_train_*.bin";
  CHECK(error_of([&] { resolve_shards(pat, "data.train"); }) == "data.train: no files match '" + pat + "'");
  CHECK_THAT(error_of([&] { resolve_shards(d.file("missing.bin"), "data.val"); }),
             Contains("data.val") && Contains("missing.bin") && Contains("No such file"));
}

TEST_CASE("packed mode without shuffle reads consecutive windows shard by shard", "[data]") {
  TempDir d;
  auto files = make_packed_shards(d);
  DataLoader l(packed_opts(files, 2, false));
  CHECK(l.total_tokens() == 81 + 61 + 25);
  Batch b = next(l);
  CHECK(std::vector<int32_t>(b.in.begin(), b.in.begin() + 8) == iota_tokens(8, 0));
  CHECK(std::vector<int32_t>(b.tg.begin(), b.tg.begin() + 8) == iota_tokens(8, 1));
  CHECK(std::vector<int32_t>(b.in.begin() + 8, b.in.end()) == iota_tokens(8, 8));
  CHECK(std::vector<int32_t>(b.tg.begin() + 8, b.tg.end()) == iota_tokens(8, 9));
  for (int i = 0; i < 4; ++i) next(l);  // windows 2..9 of shard 0
  b = next(l);                          // shard 1 starts here
  CHECK(b.in[0] == 10000);
  CHECK(b.in[8] == 10008);
  CHECK(l.epoch() == 0);
  for (int i = 0; i < 4; ++i) next(l);  // rows 12..19: the rest of shard 1, all of shard 2
  CHECK(l.epoch() == 1);                // 20 windows consumed: the next row starts epoch 1
  b = next(l);
  CHECK(b.in[0] == 0);
}

TEST_CASE("packed shuffle visits every window exactly once per epoch, deterministically", "[data]") {
  TempDir d;
  auto files = make_packed_shards(d);
  std::set<int32_t> expected;
  for (int w = 0; w < 10; ++w) expected.insert(w * 8);
  for (int w = 0; w < 7; ++w) expected.insert(10000 + w * 8);
  for (int w = 0; w < 3; ++w) expected.insert(20000 + w * 8);

  DataLoader l(packed_opts(files, 1));
  std::vector<int32_t> epochs[2];
  for (int e = 0; e < 2; ++e) {
    for (int i = 0; i < 20; ++i) {
      CHECK(l.epoch() == e);
      Batch b = next(l);
      // A window is T+1 consecutive tokens of one shard.
      for (int t = 0; t < 8; ++t) REQUIRE(b.tg[t] == b.in[0] + t + 1);
      epochs[e].push_back(b.in[0]);
    }
    CHECK(std::set<int32_t>(epochs[e].begin(), epochs[e].end()) == expected);
  }
  CHECK(l.epoch() == 2);
  CHECK(epochs[0] != epochs[1]);  // each epoch has its own order
  std::vector<int32_t> sorted0 = epochs[0];
  std::sort(sorted0.begin(), sorted0.end());
  CHECK(epochs[0] != sorted0);  // and it is shuffled

  // Same options -> same stream; another seed -> another stream.
  DataLoader same(packed_opts(files, 1));
  for (int32_t w : epochs[0]) REQUIRE(next(same).in[0] == w);
  LoaderOptions o = packed_opts(files, 1);
  o.seed = 1235;
  DataLoader other(o);
  std::vector<int32_t> other0;
  for (int i = 0; i < 20; ++i) other0.push_back(next(other).in[0]);
  CHECK(other0 != epochs[0]);
}

TEST_CASE("state() and load_state() resume mid-epoch exactly", "[data]") {
  TempDir d;
  SECTION("packed") {
    auto files = make_packed_shards(d);
    DataLoader a(packed_opts(files, 3));
    for (int i = 0; i < 4; ++i) next(a);  // 12 of 20 rows: mid-epoch, mid-shard
    const std::string saved = a.state().dump();
    std::vector<Batch> expect;
    for (int i = 0; i < 15; ++i) expect.push_back(next(a));  // crosses two epoch boundaries
    DataLoader b(packed_opts(files, 3));
    next(b);
    b.load_state(nlohmann::json::parse(saved));
    CHECK(b.epoch() == 0);
    for (const auto& e : expect) REQUIRE(next(b) == e);
    CHECK(b.state() == a.state());
  }
  SECTION("document") {
    auto files = make_doc_shards(d);
    DataLoader a(doc_opts(files, 2, true));
    next(a);
    next(a);
    const std::string saved = a.state().dump();
    std::vector<Batch> expect;
    for (int i = 0; i < 12; ++i) expect.push_back(next(a));
    DataLoader b(doc_opts(files, 2, true));
    b.load_state(nlohmann::json::parse(saved));
    for (const auto& e : expect) REQUIRE(next(b) == e);
  }
}

TEST_CASE("load_state rejects a state from a different setup and says what differs", "[data]") {
  TempDir d;
  auto files = make_packed_shards(d);
  DataLoader a(packed_opts(files, 2));
  next(a);
  nlohmann::json st = a.state();

  LoaderOptions o = packed_opts(files, 2);
  o.T = 4;
  DataLoader b(o);
  std::string msg = error_of([&] { b.load_state(st); });
  CHECK_THAT(msg, Contains("loader state does not match this run") && Contains("T 8 (checkpoint) vs 4 (now)"));

  DataLoader c(packed_opts(files, 2));
  nlohmann::json bad = st;
  bad["world"] = 4;
  bad["seed"] = 7;
  msg = error_of([&] { c.load_state(bad); });
  CHECK_THAT(msg, Contains("seed 7 (checkpoint) vs 1234 (now)") && Contains("world 4 (checkpoint) vs 1 (now)"));
  bad = st;
  bad.erase("row_pos");
  CHECK_THAT(error_of([&] { c.load_state(bad); }), Contains("missing field 'row_pos'"));
  bad = st;
  bad["row_pos"] = 1000;
  CHECK_THAT(error_of([&] { c.load_state(bad); }), Contains("row_pos 1000 out of range"));
  // A rejected state leaves the loader usable at the start.
  DataLoader fresh(packed_opts(files, 2));
  CHECK(next(c) == next(fresh));
}

TEST_CASE("1 rank x 2B sees the same rows per call as 2 ranks x B", "[data]") {
  TempDir d;
  auto check = [](LoaderOptions one, int B) {
    one.B = 2 * B;
    one.world = 1;
    LoaderOptions r0 = one, r1 = one;
    r0.B = r1.B = B;
    r0.world = r1.world = 2;
    r0.rank = 0;
    r1.rank = 1;
    DataLoader l1(one), l0(r0), l1r(r1);
    const size_t half = (size_t)B * one.T;
    for (int call = 0; call < 25; ++call) {
      Batch all = next(l1), a = next(l0), b = next(l1r);
      REQUIRE(std::vector<int32_t>(all.in.begin(), all.in.begin() + half) == a.in);
      REQUIRE(std::vector<int32_t>(all.in.begin() + half, all.in.end()) == b.in);
      REQUIRE(std::vector<int32_t>(all.tg.begin(), all.tg.begin() + half) == a.tg);
      REQUIRE(std::vector<int32_t>(all.tg.begin() + half, all.tg.end()) == b.tg);
    }
    CHECK(l0.state() == l1r.state());  // the position is global: any rank's state resumes all
  };
  SECTION("packed") { check(packed_opts(make_packed_shards(d), 1), 3); }
  SECTION("document") { check(doc_opts(make_doc_shards(d), 1, true), 2); }
}

TEST_CASE("document mode: one document per row, truncated or padded with ignored targets", "[data]") {
  TempDir d;
  auto files = make_doc_shards(d);
  DataLoader l(doc_opts(files, 1, false));
  using V = std::vector<int32_t>;
  std::vector<std::pair<V, V>> expect = {
      {{D, 1, 2, 3, D, D}, {1, 2, 3, -1, -1, -1}},        // padded
      {{D, 4, 5, 6, 7, 8}, {4, 5, 6, 7, 8, 9}},           // truncated to T+1 tokens
      {{D, 14, D, D, D, D}, {14, -1, -1, -1, -1, -1}},    //
      {{D, D, D, D, D, D}, {-1, -1, -1, -1, -1, -1}},     // a lone delimiter: nothing to predict
      {{77, 78, D, D, D, D}, {78, -1, -1, -1, -1, -1}},   // shard 2 starts mid-document
      {{D, 20, 21, D, D, D}, {20, 21, -1, -1, -1, -1}},   //
      {{D, 30, 31, 32, D, D}, {30, 31, 32, -1, -1, -1}},  // last document runs to the shard end
  };
  for (size_t i = 0; i < expect.size(); ++i) {
    CHECK(l.epoch() == 0);
    Batch b = next(l);
    INFO("row " << i);
    CHECK(b.in == expect[i].first);
    CHECK(b.tg == expect[i].second);
  }
  CHECK(l.epoch() == 1);
  CHECK(next(l).in == expect[0].first);

  // Shuffled: every document once per epoch, in a new order each epoch.
  DataLoader s(doc_opts(files, 1, true));
  std::vector<int32_t> order[2];
  for (int e = 0; e < 2; ++e) {
    for (size_t i = 0; i < expect.size(); ++i) {
      Batch b = next(s);
      order[e].push_back(b.in[0] * 1000 + b.in[1]);
    }
    std::multiset<int32_t> seen(order[e].begin(), order[e].end()), want;
    for (const auto& x : expect) want.insert(x.first[0] * 1000 + x.first[1]);
    CHECK(seen == want);
  }
  CHECK(order[0] != order[1]);
}

TEST_CASE("reset() returns to the start of epoch 0", "[data]") {
  TempDir d;
  auto files = make_packed_shards(d);
  DataLoader a(packed_opts(files, 4)), fresh(packed_opts(files, 4));
  for (int i = 0; i < 7; ++i) next(a);
  CHECK(a.epoch() == 1);
  a.reset();
  CHECK(a.epoch() == 0);
  for (int i = 0; i < 6; ++i) REQUIRE(next(a) == next(fresh));
}

TEST_CASE("loader input errors: vocab_limit, too-short shards, bad options", "[data]") {
  TempDir d;
  const std::string p = d.file("v_train_000001.bin");
  std::vector<int32_t> toks = iota_tokens(100, 0);
  toks[37] = 60000;
  write_shard(p, toks);
  LoaderOptions o = packed_opts({p}, 1, false);
  o.vocab_limit = 50257;
  CHECK(error_of([&] { DataLoader l(o); }) ==
        p + ": token id 60000 at token offset 37 is >= vocab_limit 50257 (the model's vocab_size; was the shard "
            "made with another tokenizer?)");
  o.vocab_limit = 60001;
  CHECK_NOTHROW(DataLoader(o));

  const std::string small = d.file("s_train_000001.bin");
  write_shard(small, {1, 2, 3, 4, 5});
  LoaderOptions so = packed_opts({small}, 1);
  CHECK_THAT(error_of([&] { DataLoader l(so); }),
             Contains(small) && Contains("the largest shard has 5 tokens but a window needs T+1 = 9"));
  so.mode = "documents";
  CHECK_THAT(error_of([&] { DataLoader l(so); }), Contains("data.mode: unknown mode 'documents'"));
  so = packed_opts({p}, 1);
  so.rank = 2;
  so.world = 2;
  CHECK_THAT(error_of([&] { DataLoader l(so); }), Contains("rank 2 is not in [0, world=2)"));
}
