// Tests of the tokenizers and of `tokenize` (the library behind the CLI): GPT-2 ids equal to
// tiktoken's on a varied fixture (tests/fixtures/gpt2_tokens, made by
// scripts/make_tokenizer_fixture.js), special tokens, lossless decode on random UTF-8 and invalid
// bytes, the pre-tokenizer's corner cases (expected pieces taken from GPT-2's regex), SentencePiece
// ids equal to spm_encode's (tests/fixtures/spm), and corpus -> shards on text, jsonl, .gz, .zst and
// Parquet inputs, including the errors for malformed lines, missing fields and broken streams.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "llmtrain/error.h"
#include "llmtrain/shard.h"
#include "tools/tokenize.h"
#include "llmtrain/tokenizer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode_tables.h"

#ifndef LLMTRAIN_FIXTURES_DIR
#define LLMTRAIN_FIXTURES_DIR "tests/fixtures"
#endif

namespace fs = std::filesystem;
using namespace llmtrain;
using test::error_of;
using Catch::Matchers::Contains;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("tok") {}
};

std::string fixture(const std::string& rel) { return std::string(LLMTRAIN_FIXTURES_DIR) + "/" + rel; }

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

std::string gzip(const std::string& data) {
  uLongf cap = compressBound(data.size()) + 64;
  std::string out(cap, '\0');
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(&out[0]);
  zs.avail_out = static_cast<uInt>(cap);
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string zstd(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(&out[0], out.size(), data.data(), data.size(), 3);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

const Tokenizer& gpt2() {
  static std::unique_ptr<Tokenizer> tok = load_tokenizer("gpt2");
  return *tok;
}

std::vector<std::string> pieces(const std::string& s) {
  std::vector<std::string> out;
  for (auto p : gpt2_pretokenize(s)) out.emplace_back(p);
  return out;
}

// All tokens of the shards, in order.
std::vector<int32_t> read_shards(const std::vector<std::string>& paths) {
  std::vector<int32_t> all;
  for (const auto& p : paths) {
    ShardView v(p);
    size_t n = all.size();
    all.resize(n + v.size());
    v.copy(0, v.size(), all.data() + n);
  }
  return all;
}

// Every regular file in dir (to check nothing is left behind).
std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Number of shards in dir.
size_t existing_count(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".bin";
  return n;
}

std::string json_line(const std::string& text) { return nlohmann::json{{"text", text}, {"id", 7}}.dump() + "\n"; }

// The ids tokenize must write for these documents: delimiter + encode(text) each, empty ones skipped.
std::vector<int32_t> expected_ids(const Tokenizer& tok, const std::vector<std::string>& docs) {
  std::vector<int32_t> out;
  for (const auto& d : docs) {
    if (d.empty()) continue;
    out.push_back(tok.doc_delimiter());
    auto ids = tok.encode(d);
    out.insert(out.end(), ids.begin(), ids.end());
    if (tok.doc_end() >= 0) out.push_back(tok.doc_end());
  }
  return out;
}

std::vector<std::string> sample_docs(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  const char* words[] = {"the", "Union", "of", "Congress", "it's", "peace", "2024", "naïve", "日本", "😀", "\n", "  ", "tax",
                         "America", "we've", "world", "é", "—", "budget", "1,234"};
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i) {
    std::string d;
    int len = 5 + static_cast<int>(rng() % 200);
    for (int k = 0; k < len; ++k) {
      d += words[rng() % 20];
      d += (rng() % 7 == 0) ? "\n" : " ";
    }
    docs.push_back(d);
  }
  return docs;
}

}  // namespace

// ------------------------------------------------------------------ GPT-2

TEST_CASE("gpt2: ids equal tiktoken's on the fixture text", "[tokenizer]") {
  const std::string text = read_all(fixture("gpt2_tokens/sample.txt"));
  std::istringstream ids_in(read_all(fixture("gpt2_tokens/sample.ids")));
  std::vector<int32_t> expect;
  for (int32_t id; ids_in >> id;) expect.push_back(id);
  REQUIRE(expect.size() > 50000);
  const auto got = gpt2().encode(text);
  REQUIRE(got.size() == expect.size());
  size_t first_diff = 0;
  while (first_diff < got.size() && got[first_diff] == expect[first_diff]) ++first_diff;
  INFO("first difference at token " << first_diff);
  CHECK(first_diff == got.size());
  CHECK(gpt2().decode(got) == text);
  // Encoding is the same in pieces split at line ends (the cache must not leak between calls).
  std::vector<int32_t> by_parts;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && i + 1 < text.size() && text[i + 1] != '\n' && text[i + 1] != ' ' && text[i + 1] != '\t' &&
        text[i + 1] != '\r') {
      auto part = gpt2().encode(std::string_view(text).substr(start, i + 1 - start));
      by_parts.insert(by_parts.end(), part.begin(), part.end());
      start = i + 1;
    }
  }
  CHECK(gpt2().decode(by_parts) + text.substr(start) == text);
}

TEST_CASE("gpt2: vocabulary, known ids and decode", "[tokenizer]") {
  const Tokenizer& t = gpt2();
  CHECK(t.name() == "gpt2");
  CHECK(t.vocab_size() == 50257);
  CHECK(t.doc_delimiter() == 50256);
  CHECK(t.doc_end() == -1);
  CHECK(t.encode("Hello world") == std::vector<int32_t>{15496, 995});
  CHECK(t.encode("") .empty());
  CHECK(t.encode("\n") == std::vector<int32_t>{198});
  CHECK(t.encode(" the") == std::vector<int32_t>{262});
  CHECK(t.decode(std::vector<int32_t>{15496, 995, 50256}) == "Hello world<|endoftext|>");
  // Ids past the vocabulary (padded model rows) decode to a visible marker instead of throwing.
  CHECK(t.decode(std::vector<int32_t>{50300, -1}) == "<|unk_50300|><|unk_-1|>");
}

TEST_CASE("gpt2: special tokens only with allow_special", "[tokenizer]") {
  const Tokenizer& t = gpt2();
  const std::string s = "a<|endoftext|>b <|endoftext|>";
  auto plain = t.encode(s);
  CHECK(std::find(plain.begin(), plain.end(), 50256) == plain.end());
  CHECK(t.decode(plain) == s);
  auto special = t.encode(s, true);
  std::vector<int32_t> expect = t.encode("a");
  expect.push_back(50256);
  for (int32_t id : t.encode("b ")) expect.push_back(id);
  expect.push_back(50256);
  CHECK(special == expect);
  CHECK(t.decode(special) == s);
  CHECK(t.encode("<|endoftext|>", true) == std::vector<int32_t>{50256});
  CHECK(t.encode("<|endoftext|", true) == t.encode("<|endoftext|"));
}

TEST_CASE("gpt2: decode(encode(x)) == x on random UTF-8 and invalid bytes", "[tokenizer]") {
  const Tokenizer& t = gpt2();
  std::mt19937 rng(1234);
  auto append_utf8 = [](std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  };
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    int len = static_cast<int>(rng() % 300);
    for (int i = 0; i < len; ++i) {
      uint32_t r = rng() % 10, cp;
      if (r < 4) cp = 0x20 + rng() % 0x5F;           // ASCII printable
      else if (r < 5) cp = "\t\n\r  "[rng() % 5];     // white space
      else if (r < 7) cp = 0x80 + rng() % 0x780;      // 2-byte
      else if (r < 9) cp = 0x800 + rng() % 0xF800;    // 3-byte
      else cp = 0x10000 + rng() % 0x100000;           // 4-byte
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // no surrogates in valid UTF-8
      append_utf8(s, cp);
    }
    auto ids = t.encode(s);
    for (int32_t id : ids) REQUIRE((id >= 0 && id < 50256));
    REQUIRE(t.decode(ids) == s);
  }
  // Arbitrary bytes, and the classic malformed sequences: each byte is kept.
  for (int iter = 0; iter < 200; ++iter) {
    std::string s;
    int len = static_cast<int>(rng() % 200);
    for (int i = 0; i < len; ++i) s += static_cast<char>(rng() % 256);
    REQUIRE(t.decode(t.encode(s)) == s);
  }
  for (std::string s : {"\xff\xfe", "ab\xe2\x82", "\xe2\x82x", "\xc0\xaf", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80",
                        "caf\xe9 latin-1", " \x80\x81 x", "\xf0\x9f\x98"}) {
    auto ids = t.encode(s);
    CHECK(t.decode(ids) == s);
  }
}

TEST_CASE("gpt2 pre-tokenizer: corner cases of the GPT-2 regex", "[tokenizer]") {
  using V = std::vector<std::string>;
  CHECK(pieces("") == V{});
  CHECK(pieces("Hello world") == V{"Hello", " world"});
  CHECK(pieces(" 's") == V{" '", "s"});
  CHECK(pieces("it's") == V{"it", "'s"});
  CHECK(pieces("don't") == V{"don", "'t"});
  CHECK(pieces("'S") == V{"'", "S"});
  CHECK(pieces("'''s") == V{"'''", "s"});
  CHECK(pieces("x 's") == V{"x", " '", "s"});
  CHECK(pieces("I'VE we've") == V{"I", "'", "VE", " we", "'ve"});
  CHECK(pieces("  \n") == V{"  \n"});
  CHECK(pieces("a  b") == V{"a", " ", " b"});
  CHECK(pieces("a\n\nb") == V{"a", "\n", "\n", "b"});
  CHECK(pieces("a\r\n\r\nb") == V{"a", "\r\n\r", "\n", "b"});
  CHECK(pieces("hello   ") == V{"hello", "   "});
  CHECK(pieces("  foo") == V{" ", " foo"});
  CHECK(pieces("\n x") == V{"\n", " x"});
  CHECK(pieces("tab\tx") == V{"tab", "\t", "x"});
  CHECK(pieces("12345") == V{"12345"});
  CHECK(pieces(" 123abc") == V{" 123", "abc"});
  CHECK(pieces("1.5 -2") == V{"1", ".", "5", " -", "2"});
  CHECK(pieces("\xd9\xa3 \xd9\xa3x") == V{"\xd9\xa3", " \xd9\xa3", "x"});                  // Arabic-Indic digit 3
  CHECK(pieces("abc\xd0\xb0\xd0\xb1\xd0\xb2\xe6\x97\xa5\xe6\x9c\xac") == V{"abc\xd0\xb0\xd0\xb1\xd0\xb2\xe6\x97\xa5\xe6\x9c\xac"});
  CHECK(pieces("x\xc2\xb2") == V{"x", "\xc2\xb2"});                                            // superscript two is N
  CHECK(pieces("\xc2\xa0x") == V{"\xc2\xa0", "x"});                                            // NBSP is white space
  CHECK(pieces(" \xcc\x81") == V{" \xcc\x81"});                                                // combining acute: other
  CHECK(pieces("a \xe3\x80\x80" "b") == V{"a", " ", "\xe3\x80\x80", "b"});                     // ideographic space
  CHECK(pieces("\xf0\x9f\x98\x80\xf0\x9f\x91\x8d!") == V{"\xf0\x9f\x98\x80\xf0\x9f\x91\x8d!"});  // emoji are "other"
  CHECK(pieces("a\xff\xfe b") == V{"a", "\xff\xfe", " b"});                                    // invalid bytes: "other"
  CHECK(pieces("x\xe2\x82") == V{"x", "\xe2\x82"});
}

// Unicode 17.0 made 4,657 code points letters or numbers that Unicode 16.0, the version tiktoken
// classifies with, leaves as "other" (e.g. Telugu U+0C5C, Latin U+A7CE, Tulu-Tigalari digit
// U+11DE0). Before an apostrophe the class decides the split: as "other" the apostrophe joins the
// run ("\u0C5C'" + "s"); as a letter, "'s" would be a contraction token (338). Expected ids are
// tiktoken 1.0.22's encode_ordinary.
TEST_CASE("gpt2: code points new in Unicode 17 are classified as Unicode 16 (tiktoken) does", "[tokenizer]") {
  using V = std::vector<std::string>;
  using I = std::vector<int32_t>;
  CHECK(std::string(unicode::kUnicodeVersion) == "16.0.0");
  for (uint32_t cp : {0x088Fu, 0x0C5Cu, 0x0CDCu, 0xA7CEu, 0xA7F1u, 0x10940u, 0x11DE0u})
    CHECK(unicode::char_class(cp) == unicode::kOther);
  CHECK(unicode::char_class(0x0C58) == unicode::kLetter);   // assigned before 16.0: still a letter
  CHECK(unicode::char_class(0x11F50) == unicode::kNumber);  // Kawi digit zero (15.0)
  CHECK(pieces("\xe0\xb1\x9c's") == V{"\xe0\xb1\x9c'", "s"});  // U+0C5C
  CHECK(pieces("a\xe0\xb1\x9c" "b") == V{"a", "\xe0\xb1\x9c", "b"});
  const Tokenizer& t = gpt2();
  CHECK(t.encode("\xe0\xb1\x9c's") == I{156, 109, 250, 6, 82});                    // U+0C5C
  CHECK(t.encode("\xf0\x91\xb7\xa0's") == I{172, 239, 115, 254, 6, 82});          // U+11DE0
  CHECK(t.encode("x\xe0\xb3\x9c's") == I{87, 156, 111, 250, 6, 82});               // U+0CDC
  CHECK(t.encode(" \xea\x9f\x8e's ok") == I{220, 166, 253, 236, 6, 82, 12876});   // U+A7CE
  CHECK(t.encode("the\xe0\xa2\x8f's") == I{1169, 156, 95, 237, 6, 82});            // U+088F
}

// ------------------------------------------------------------------ SentencePiece

TEST_CASE("sentencepiece: ids equal spm_encode's; BOS/EOS conventions", "[tokenizer]") {
  const std::string model = fixture("spm/tiny.model");
  auto tok = load_tokenizer(model);
  CHECK(tok->name() == "sentencepiece:" + model);
  CHECK(tok->vocab_size() == 1000);
  CHECK(tok->doc_delimiter() == 1);
  CHECK(tok->doc_end() == -1);
  std::istringstream text(read_all(fixture("spm/sample.txt")));
  std::istringstream ids(read_all(fixture("spm/sample.ids")));
  std::string line, id_line;
  int lines = 0;
  while (std::getline(text, line)) {
    REQUIRE(std::getline(ids, id_line));
    std::vector<int32_t> expect;
    std::istringstream ls(id_line);
    for (int32_t id; ls >> id;) expect.push_back(id);
    INFO("line " << lines + 1 << ": " << line);
    CHECK(tok->encode(line) == expect);
    CHECK(tok->decode(tok->encode(line)) == line);
    ++lines;
  }
  CHECK(lines >= 5);
  // Control pieces are text unless allow_special.
  auto plain = tok->encode("a <s> b");
  CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());
  auto special = tok->encode("a <s> b", true);
  CHECK(std::count(special.begin(), special.end(), 1) == 1);

  SentencePieceOptions eos;
  eos.add_eos = true;
  CHECK(make_sentencepiece_tokenizer(model, eos)->doc_end() == 2);
  SentencePieceOptions no_bos;
  no_bos.add_bos = false;
  CHECK(make_sentencepiece_tokenizer(model, no_bos)->doc_delimiter() == 2);
}

TEST_CASE("load_tokenizer: errors name the spec", "[tokenizer]") {
  TempDir d;
  CHECK_THAT(error_of([&] { load_tokenizer(d.file("nope.model")); }), Contains("nope.model"));
  CHECK_THAT(error_of([&] { load_tokenizer(d.path); }), Contains("no encoder.json"));
  write_all(d.file("garbage.model"), "this is not a protobuf");
  CHECK_THAT(error_of([&] { load_tokenizer(d.file("garbage.model")); }), Contains("garbage.model"));
  fs::create_directories(d.file("vocab"));
  write_all(d.file("vocab/encoder.json"), "{\"a\": 0,");
  write_all(d.file("vocab/vocab.bpe"), "#version: 0.2\n");
  CHECK_THAT(error_of([&] { load_tokenizer(d.file("vocab")); }), Contains("encoder.json") && Contains("not valid JSON"));
}

// ------------------------------------------------------------------ tokenize

TEST_CASE("tokenize: jsonl, .gz and .zst give the same shards; val/train split; any thread count", "[tokenizer]") {
  TempDir d;
  const auto docs = sample_docs(120, 7);
  std::string jsonl;
  for (const auto& t : docs) jsonl += json_line(t);
  jsonl += "\n   \n";  // blank lines are ignored
  write_all(d.file("c.jsonl"), jsonl);
  write_all(d.file("c.jsonl.gz"), gzip(jsonl));
  write_all(d.file("c.jsonl.zst"), zstd(jsonl));
  const auto expect = expected_ids(gpt2(), docs);

  std::vector<std::string> first_bytes;
  for (std::string in : {"c.jsonl", "c.jsonl.gz", "c.jsonl.zst"}) {
    for (int threads : {1, 3}) {
      TokenizeOptions o;
      o.inputs = {d.file(in)};
      o.out_dir = d.file("out_" + in + std::to_string(threads));
      o.name = "t";
      o.val_tokens = 1000;
      o.shard_tokens = 4000;
      o.threads = threads;
      o.progress = false;
      TokenizeStats st = tokenize_corpus(o);
      CHECK(st.docs == docs.size());
      CHECK(st.token_bytes == 2);
      CHECK(st.val_tokens + st.train_tokens == expect.size());
      REQUIRE(st.shards.size() >= 3);
      CHECK(st.shards[0] == val_shard_path(o.out_dir, "t"));
      CHECK(st.shards[1] == train_shard_path(o.out_dir, "t", 1));
      CHECK(read_shards(st.shards) == expect);
      // The val shard holds whole documents, at least val_tokens; train shards are exactly full but the last.
      ShardView val(st.shards[0]);
      CHECK(val.size() >= 1000);
      CHECK(val.size() == st.val_tokens);
      CHECK(ShardView(st.shards[1]).token(0) == 50256);
      for (size_t i = 1; i + 1 < st.shards.size(); ++i) CHECK(ShardView(st.shards[i]).size() == 4000);
      std::string all;
      for (const auto& p : st.shards) all += read_all(p);
      first_bytes.push_back(all);
    }
  }
  for (const auto& b : first_bytes) CHECK(b == first_bytes[0]);
}

TEST_CASE("tokenize: text files, separators, SentencePiece, max_docs, overwrite", "[tokenizer]") {
  TempDir d;
  fs::create_directories(d.file("txt/sub"));
  write_all(d.file("txt/a.txt"), "First document.\nStill the first.");
  write_all(d.file("txt/sub/b.txt.gz"), gzip("Second document, gzipped."));
  write_all(d.file("txt/c.txt"), "");  // empty: skipped
  TokenizeOptions o;
  o.inputs = {d.file("txt")};
  o.out_dir = d.file("out");
  o.progress = false;
  TokenizeStats st = tokenize_corpus(o);
  CHECK(st.files == 3);
  CHECK(st.docs == 2);
  CHECK(st.empty_docs == 1);
  // Directory order is sorted by path: a.txt, c.txt, sub/b.txt.gz.
  CHECK(read_shards(st.shards) ==
        expected_ids(gpt2(), {"First document.\nStill the first.", "Second document, gzipped."}));
  CHECK(st.shards == std::vector<std::string>{train_shard_path(o.out_dir, "data", 1)});

  // Input without documents writes nothing and says so, naming the file and what was skipped.
  TokenizeOptions e = o;
  e.inputs = {d.file("txt/c.txt")};
  e.out_dir = d.file("out_empty");
  CHECK(error_of([&] { tokenize_corpus(e); }) ==
        "tokenize: no documents found in " + d.file("txt/c.txt") + " (1 empty document(s)); no shards written");
  CHECK(files_in(e.out_dir).empty());

  // Existing shards are not replaced silently.
  CHECK_THAT(error_of([&] { tokenize_corpus(o); }), Contains("--overwrite"));
  o.overwrite = true;
  o.max_docs = 1;
  st = tokenize_corpus(o);
  CHECK(st.docs == 1);

  // --doc-separator splits a text file; the separator is not part of any document.
  write_all(d.file("sep.txt.zst"), zstd("one\n<doc>\ntwo\n<doc>\n\n<doc>\nthree"));
  TokenizeOptions s;
  s.inputs = {d.file("sep.txt.zst")};
  s.out_dir = d.file("out_sep");
  s.doc_separator = "\n<doc>\n";
  s.progress = false;
  st = tokenize_corpus(s);
  CHECK(st.docs == 3);
  CHECK(st.empty_docs == 1);
  CHECK(read_shards(st.shards) == expected_ids(gpt2(), {"one", "two", "three"}));

  // SentencePiece: BOS starts each document, EOS ends it with add_eos.
  s.tokenizer = fixture("spm/tiny.model");
  s.sentencepiece.add_eos = true;
  s.overwrite = true;
  st = tokenize_corpus(s);
  auto sp = load_tokenizer(fixture("spm/tiny.model"));
  std::vector<int32_t> expect;
  for (std::string t : {"one", "two", "three"}) {
    expect.push_back(1);
    for (int32_t id : sp->encode(t)) expect.push_back(id);
    expect.push_back(2);
  }
  CHECK(read_shards(st.shards) == expect);
}

#if __has_include("tools/parquet.h")
TEST_CASE("tokenize: Parquet input", "[tokenizer]") {
  TempDir d;
  const std::string pq = fixture("parquet/duckdb_zstd.parquet");
  const std::string expected_json = fixture("parquet/duckdb_zstd.expected.json");
  if (!fs::exists(pq) || !fs::exists(expected_json)) return;
  auto ex = nlohmann::json::parse(read_all(expected_json));
  std::vector<std::string> texts;
  for (const auto& v : ex["strings"]["text"])
    if (v.is_string()) texts.push_back(v.get<std::string>());
  TokenizeOptions o;
  o.inputs = {pq};
  o.out_dir = d.file("out");
  o.progress = false;
  TokenizeStats st = tokenize_corpus(o);
  CHECK(read_shards(st.shards) == expected_ids(gpt2(), texts));
  o.text_field = "no_such_column";
  o.overwrite = true;
  CHECK_THAT(error_of([&] { tokenize_corpus(o); }), Contains("no_such_column"));

  // Null texts are bad records, named by row: they stop the run, or are skipped and counted.
  const std::string nulls = fixture("parquet/duckdb_nulls.parquet");
  auto nx = nlohmann::json::parse(read_all(fixture("parquet/duckdb_nulls.expected.json")));
  std::vector<std::string> present;
  size_t first_null = 0, null_count = 0;
  for (size_t i = 0; i < nx["strings"]["text"].size(); ++i) {
    const auto& v = nx["strings"]["text"][i];
    if (v.is_string()) {
      present.push_back(v.get<std::string>());
    } else if (null_count++ == 0) {
      first_null = i;
    }
  }
  REQUIRE(null_count > 0);
  o.inputs = {nulls};
  o.text_field = "text";
  CHECK_THAT(error_of([&] { tokenize_corpus(o); }),
             Contains("duckdb_nulls.parquet: row " + std::to_string(first_null + 1) + ": column 'text' is null"));
  CHECK(files_in(o.out_dir).empty());
  o.skip_bad = true;
  st = tokenize_corpus(o);
  CHECK(st.bad_records == null_count);
  CHECK(read_shards(st.shards) == expected_ids(gpt2(), present));
}
#endif

TEST_CASE("tokenize: bad records name file and line; nothing partial is left", "[tokenizer]") {
  TempDir d;
  const auto docs = sample_docs(60, 3);
  std::string good;
  for (const auto& t : docs) good += json_line(t);
  auto run = [&](const std::string& file, bool skip_bad) {
    TokenizeOptions o;
    o.inputs = {d.file(file)};
    o.out_dir = d.file("out");
    o.val_tokens = 500;
    o.shard_tokens = 2000;  // several shards are complete before the bad line
    o.skip_bad = skip_bad;
    o.overwrite = true;
    o.progress = false;
    o.threads = 2;
    return tokenize_corpus(o);
  };

  write_all(d.file("bad.jsonl"), good + "{\"text\": \"unterminated\n" + json_line("after"));
  std::string err = error_of([&] { run("bad.jsonl", false); });
  CHECK_THAT(err, Contains("bad.jsonl:61:") && Contains("malformed JSON") && Contains("--skip-bad"));
  CHECK(files_in(d.file("out")).empty());
  TokenizeStats st = run("bad.jsonl", true);
  CHECK(st.bad_records == 1);
  CHECK(st.docs == docs.size() + 1);

  write_all(d.file("missing.jsonl.gz"), gzip(json_line("a") + "{\"content\": \"b\"}\n" + json_line("c")));
  CHECK_THAT(error_of([&] { run("missing.jsonl.gz", false); }), Contains("missing.jsonl.gz:2:") && Contains("no field 'text'"));
  CHECK(files_in(d.file("out")).empty());

  write_all(d.file("types.jsonl"), json_line("a") + "{\"text\": 5}\n[1, 2]\n");
  CHECK_THAT(error_of([&] { run("types.jsonl", false); }), Contains("types.jsonl:2:") && Contains("not a string"));
  st = run("types.jsonl", true);
  CHECK(st.bad_records == 2);
  CHECK(st.docs == 1);

  // Broken compressed streams always stop the run (not skippable).
  const std::string gz = gzip(good);
  write_all(d.file("trunc.jsonl.gz"), gz.substr(0, gz.size() * 2 / 3));
  CHECK_THAT(error_of([&] { run("trunc.jsonl.gz", true); }), Contains("trunc.jsonl.gz") && Contains("truncated gzip"));
  CHECK(files_in(d.file("out")).empty());
  std::string corrupt = gz;
  for (size_t i = 20; i < 60; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5A);
  write_all(d.file("corrupt.jsonl.gz"), corrupt);
  CHECK_THAT(error_of([&] { run("corrupt.jsonl.gz", true); }), Contains("corrupt.jsonl.gz") && Contains("gzip"));
  const std::string zs = zstd(good);
  write_all(d.file("trunc.jsonl.zst"), zs.substr(0, zs.size() / 2));
  CHECK_THAT(error_of([&] { run("trunc.jsonl.zst", true); }), Contains("trunc.jsonl.zst") && Contains("truncated zstd"));
  CHECK(files_in(d.file("out")).empty());
  write_all(d.file("empty.jsonl.zst"), "");
  CHECK_THAT(error_of([&] { run("empty.jsonl.zst", true); }), Contains("truncated zstd"));

  // Options and inputs.
  CHECK_THAT(error_of([&] { run("does_not_exist.jsonl", false); }), Contains("does_not_exist.jsonl"));
  TokenizeOptions o;
  o.inputs = {d.file("bad.jsonl")};
  o.out_dir = d.file("out");
  o.shard_tokens = 0;
  CHECK_THAT(error_of([&] { tokenize_corpus(o); }), Contains("--shard-tokens"));
  o.shard_tokens = 10;
  o.tokenizer = d.file("missing.model");
  CHECK_THAT(error_of([&] { tokenize_corpus(o); }), Contains("missing.model"));
}

// ------------------------------------------------------------------ resume and manifest

TEST_CASE("tokenize: an interrupted run continues to the same shards, counts and manifest", "[tokenizer]") {
  TempDir d;
  const auto docs = sample_docs(150, 11);
  std::string a, b;
  for (size_t i = 0; i < docs.size(); ++i) {
    std::string& s = i < 70 ? a : b;
    s += json_line(docs[i]);
    if (i == 30) s += "{\"text\": \"\"}\n";        // empty document
    if (i == 100) s += "{\"text\": broken}\n";      // bad record, skipped
  }
  fs::create_directories(d.file("in"));
  write_all(d.file("in/a.jsonl"), a);
  write_all(d.file("in/b.jsonl.gz"), gzip(b));
  auto opts = [&](const std::string& out, int threads) {
    TokenizeOptions o;
    o.inputs = {d.file("in")};
    o.out_dir = d.file(out);
    o.name = "r";
    o.val_tokens = 700;
    o.shard_tokens = 1500;  // documents straddle shard boundaries
    o.skip_bad = true;
    o.threads = threads;
    o.progress = false;
    return o;
  };
  const TokenizeStats ref = tokenize_corpus(opts("ref", 2));
  REQUIRE(ref.shards.size() >= 8);
  CHECK(ref.bad_records == 1);
  CHECK(ref.empty_docs == 1);
  CHECK_FALSE(ref.resumed);
  CHECK_FALSE(fs::exists(d.file("ref/r_tokenize_progress.json")));
  auto bytes_of = [](const std::vector<std::string>& paths) {
    std::vector<std::string> out;
    for (const auto& p : paths) out.push_back(fs::path(p).filename().string() + ":" + read_all(p));
    return out;
  };
  const auto ref_bytes = bytes_of(ref.shards);
  const auto ref_man = nlohmann::json::parse(read_all(ref.manifest));

  auto check_same = [&](const TokenizeStats& st, const std::string& out) {
    CHECK(bytes_of(st.shards) == ref_bytes);
    CHECK(st.docs == ref.docs);
    CHECK(st.empty_docs == ref.empty_docs);
    CHECK(st.bad_records == ref.bad_records);
    CHECK(st.text_bytes == ref.text_bytes);
    CHECK(st.val_tokens == ref.val_tokens);
    CHECK(st.train_tokens == ref.train_tokens);
    auto man = nlohmann::json::parse(read_all(st.manifest));
    CHECK(man["shards"] == ref_man["shards"]);
    CHECK(man["counts"] == ref_man["counts"]);
    CHECK(man["sources"] == ref_man["sources"]);
    CHECK(man["resumed"] == true);
    CHECK_FALSE(fs::exists(d.file(out + "/r_tokenize_progress.json")));
    auto left = files_in(d.file(out));
    CHECK(std::none_of(left.begin(), left.end(), [](const std::string& f) { return f.find(".tmp") != std::string::npos; }));
  };

  for (int64_t k : {int64_t(1), int64_t(2), int64_t(5), static_cast<int64_t>(ref.shards.size() - 1)}) {
    DYNAMIC_SECTION("interrupted after " << k << " shard(s)") {
      const std::string out = "int" + std::to_string(k);
      TokenizeOptions o = opts(out, 1 + static_cast<int>(k % 3));
      o.interrupt_after_shards = k;
      CHECK_THROWS_AS(tokenize_corpus(o), TokenizeInterrupted);
      CHECK(fs::exists(d.file(out + "/r_tokenize_progress.json")));
      CHECK(existing_count(d.file(out)) == static_cast<size_t>(k));
      o.interrupt_after_shards = -1;
      o.threads = 2;
      const TokenizeStats st = tokenize_corpus(o);
      CHECK(st.resumed);
      check_same(st, out);
    }
  }

  SECTION("interrupted twice, and a shard finished after the last progress update") {
    TokenizeOptions o = opts("twice", 1);
    o.interrupt_after_shards = 2;
    CHECK_THROWS_AS(tokenize_corpus(o), TokenizeInterrupted);
    CHECK_THROWS_AS(tokenize_corpus(o), TokenizeInterrupted);
    // A kill between a shard's rename and the progress update leaves an unlisted shard: rewritten.
    write_all(train_shard_path(d.file("twice"), "r", 4), "stale");
    o.interrupt_after_shards = -1;
    check_same(tokenize_corpus(o), "twice");
  }

  SECTION("other settings or changed inputs are refused; --overwrite starts over") {
    TokenizeOptions o = opts("changed", 2);
    o.interrupt_after_shards = 3;
    CHECK_THROWS_AS(tokenize_corpus(o), TokenizeInterrupted);
    o.interrupt_after_shards = -1;
    TokenizeOptions other = o;
    other.shard_tokens = 1600;
    CHECK_THAT(error_of([&] { tokenize_corpus(other); }),
               Contains("interrupted run") && Contains("shard_tokens") && Contains("--overwrite"));
    // A finished shard that was damaged after the interruption.
    const std::string s2 = train_shard_path(d.file("changed"), "r", 2);
    const std::string keep = read_all(s2);
    write_all(s2, keep.substr(0, 2000));
    CHECK_THAT(error_of([&] { tokenize_corpus(o); }), Contains("cannot resume") && Contains("r_train_000002.bin"));
    write_all(s2, keep);
    other = o;
    other.overwrite = true;
    const TokenizeStats st = tokenize_corpus(other);
    CHECK_FALSE(st.resumed);
    CHECK(bytes_of(st.shards) == ref_bytes);
  }
}

TEST_CASE("tokenize: the manifest lists tokenizer, counts, sources and shards with SHA-256", "[tokenizer]") {
  TempDir d;
  write_all(d.file("abc.txt"), "abc");  // SHA-256 test vector of FIPS 180-2
  std::string big;
  for (int i = 0; i < 300; ++i) big += "Line " + std::to_string(i) + " of a document that spans several SHA-256 blocks.\n";
  write_all(d.file("big.txt"), big);
  TokenizeOptions o;
  o.inputs = {d.file("abc.txt"), d.file("big.txt")};
  o.out_dir = d.file("out");
  o.name = "m";
  o.shard_tokens = 100;
  o.progress = false;
  const TokenizeStats st = tokenize_corpus(o);
  REQUIRE(st.manifest == manifest_path(o.out_dir, "m"));
  const auto man = nlohmann::json::parse(read_all(st.manifest));
  CHECK(man["tokenizer"]["name"] == "gpt2");
  CHECK(man["tokenizer"]["vocab_size"] == 50257);
  CHECK(man["tokenizer"]["doc_delimiter"] == 50256);
  CHECK(man["tokenizer"]["token_bytes"] == 2);
  CHECK(man["counts"]["documents"] == 2);
  CHECK(man["counts"]["tokens"] == st.train_tokens);
  CHECK(man["counts"]["text_bytes"] == 3 + big.size());
  REQUIRE(man["sources"].size() == 2);
  CHECK(man["sources"][0]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(man["sources"][0]["bytes"] == 3);
  REQUIRE(man["shards"].size() == st.shards.size());
  uint64_t total = 0;
  for (size_t i = 0; i < st.shards.size(); ++i) {
    const auto& s = man["shards"][i];
    CHECK(s["file"] == fs::path(st.shards[i]).filename().string());
    CHECK(s["bytes"] == fs::file_size(st.shards[i]));
    CHECK(s["sha256"].get<std::string>().size() == 64);
    total += s["tokens"].get<uint64_t>();
  }
  CHECK(total == st.train_tokens);
  // Shard checksums differ when shard contents do.
  CHECK(man["shards"][0]["sha256"] != man["shards"][1]["sha256"]);
}

TEST_CASE("sentencepiece: a T5-style model without BOS is delimited by EOS; ids equal spm_encode's", "[tokenizer]") {
  const std::string model = fixture("spm/t5style.model");
  auto tok = load_tokenizer(model);  // what training and inspect do with the config's tokenizer
  CHECK(tok->vocab_size() == 500);
  CHECK(tok->doc_delimiter() == 1);  // EOS, as T5's </s>
  CHECK(tok->doc_end() == -1);
  std::istringstream text(read_all(fixture("spm/sample.txt")));
  std::istringstream ids(read_all(fixture("spm/t5style.ids")));
  std::string line, id_line;
  int lines = 0;
  while (std::getline(text, line)) {
    REQUIRE(std::getline(ids, id_line));
    std::vector<int32_t> expect;
    std::istringstream ls(id_line);
    for (int32_t id; ls >> id;) expect.push_back(id);
    INFO("line " << lines + 1 << ": " << line);
    CHECK(tok->encode(line) == expect);
    ++lines;
  }
  CHECK(lines >= 5);
  // Asked for strictly (no fallback), the missing BOS is an error naming the model.
  SentencePieceOptions strict;
  strict.eos_without_bos = false;
  CHECK_THAT(error_of([&] { make_sentencepiece_tokenizer(model, strict); }), Contains("t5style.model") && Contains("BOS"));
  // tokenize: every document starts with EOS; --eos adds nothing more.
  TempDir d;
  write_all(d.file("c.jsonl"), json_line("one two") + json_line("three"));
  TokenizeOptions o;
  o.inputs = {d.file("c.jsonl")};
  o.out_dir = d.file("out");
  o.tokenizer = model;
  o.sentencepiece.add_eos = true;
  o.progress = false;
  const TokenizeStats st = tokenize_corpus(o);
  std::vector<int32_t> expect{1};
  for (int32_t id : tok->encode("one two")) expect.push_back(id);
  expect.push_back(1);
  for (int32_t id : tok->encode("three")) expect.push_back(id);
  CHECK(read_shards(st.shards) == expect);
}
