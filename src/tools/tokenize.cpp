// `llmtrain tokenize` as a library (tokenize.h): input discovery, streaming decompression (zlib,
// zstd), record extraction (text files, JSON lines, Parquet), parallel encoding and ordered shard
// writing. Three stages run at once: one reader thread turns files into batches of raw records,
// worker threads parse and encode whole batches, and the calling thread writes finished batches
// strictly in reading order, so the shards do not depend on the thread count or on timing. The
// number of batches between reading and writing is bounded, which bounds memory.
#include "tools/tokenize.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>
#include <spdlog/spdlog.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "llmtrain/error.h"
#include "llmtrain/shard.h"

#if __has_include("tools/parquet.h")
#include "tools/parquet.h"
#include "util/util.h"
#define LLMTRAIN_TOKENIZE_PARQUET 1
#endif

namespace llmtrain {

std::string val_shard_path(const std::string& out_dir, const std::string& name) {
  return out_dir + "/" + name + "_val_000000.bin";
}

std::string train_shard_path(const std::string& out_dir, const std::string& name, int index) {
  char num[32];
  std::snprintf(num, sizeof num, "%06d", index);
  return out_dir + "/" + name + "_train_" + num + ".bin";
}

namespace {

namespace fs = std::filesystem;

// ------------------------------------------------------------------ SHA-256

// SHA-256 (FIPS 180-4), for the checksums of sources and shards in the manifest, so that they can
// be checked with `sha256sum`.
class Sha256 {
 public:
  Sha256() { reset(); }
  void reset() {
    static const uint32_t init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::memcpy(h_, init, sizeof h_);
    len_ = 0;
    fill_ = 0;
  }
  void update(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    len_ += n;
    if (fill_) {
      size_t take = std::min(n, sizeof buf_ - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ < sizeof buf_) return;
      block(buf_);
      fill_ = 0;
    }
    for (; n >= 64; p += 64, n -= 64) block(p);
    std::memcpy(buf_, p, n);
    fill_ = n;
  }
  std::string hex() {
    const uint64_t bits = len_ * 8;
    const unsigned char pad = 0x80, zero = 0;
    update(&pad, 1);
    while (fill_ != 56) update(&zero, 1);
    unsigned char lenbe[8];
    for (int i = 0; i < 8; ++i) lenbe[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(lenbe, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t w : h_)
      for (int i = 28; i >= 0; i -= 4) out += digits[(w >> i) & 15];
    reset();
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const unsigned char* p) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }
  uint32_t h_[8];
  unsigned char buf_[64];
  size_t fill_ = 0;
  uint64_t len_ = 0;
};

std::string sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError(path + ": " + std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n);
  const bool err = std::ferror(f);
  std::fclose(f);
  if (err) throw InputError(path + ": read error");
  return h.hex();
}

// ------------------------------------------------------------------ byte sources

// A file's bytes, decompressed on the fly. read() returns 0 only at the clean end of the data and
// throws InputError naming the file on read errors and corrupt or truncated streams.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) throw InputError(path + ": " + std::strerror(errno));
  }
  virtual ~ByteSource() {
    if (f_) std::fclose(f_);
  }
  virtual size_t read(char* buf, size_t cap) = 0;
  // Every raw (compressed) byte read from the file is added to `consumed` (progress) and to `hash`
  // (the manifest's source checksum) when these are set.
  void observe(std::atomic<uint64_t>* consumed, Sha256* hash) {
    consumed_ = consumed;
    hash_ = hash;
  }
  // Reads what is left of the file (into the hash), e.g. after --max-docs stopped early.
  void drain() {
    std::vector<char> buf(1 << 20);
    while (raw_read(buf.data(), buf.size()) > 0) {
    }
  }

 protected:
  size_t raw_read(void* buf, size_t cap) {
    size_t n = std::fread(buf, 1, cap, f_);
    if (n < cap && std::ferror(f_)) throw InputError(path_ + ": read error: " + std::strerror(errno));
    if (consumed_) consumed_->fetch_add(n, std::memory_order_relaxed);
    if (hash_) hash_->update(buf, n);
    return n;
  }
  std::string path_;
  std::FILE* f_ = nullptr;
  std::atomic<uint64_t>* consumed_ = nullptr;
  Sha256* hash_ = nullptr;
};

class PlainSource final : public ByteSource {
 public:
  using ByteSource::ByteSource;
  size_t read(char* buf, size_t cap) override { return raw_read(buf, cap); }
};

// gzip or zlib data (auto-detected), including several concatenated gzip members (pigz, cat).
class GzipSource final : public ByteSource {
 public:
  explicit GzipSource(const std::string& path) : ByteSource(path), in_(1 << 17) {
    std::memset(&zs_, 0, sizeof zs_);
    if (inflateInit2(&zs_, 15 + 32) != Z_OK) throw RuntimeError(path + ": cannot initialise zlib");
  }
  ~GzipSource() override { inflateEnd(&zs_); }

  size_t read(char* buf, size_t cap) override {
    zs_.next_out = reinterpret_cast<Bytef*>(buf);
    zs_.avail_out = static_cast<uInt>(std::min<size_t>(cap, 1u << 30));
    const uInt want = zs_.avail_out;
    for (;;) {
      if (zs_.avail_in == 0 && !eof_) {
        size_t n = raw_read(in_.data(), in_.size());
        if (n == 0) eof_ = true;
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(n);
      }
      if (member_done_) {
        if (zs_.avail_in == 0) {
          if (eof_) return want - zs_.avail_out;
          continue;
        }
        inflateReset(&zs_);  // another gzip member follows
        member_done_ = false;
      }
      if (zs_.avail_in == 0 && eof_) throw InputError(path_ + ": truncated gzip stream (unexpected end of file)");
      int ret = inflate(&zs_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        member_done_ = true;
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        throw InputError(path_ + ": corrupt gzip stream: " + (zs_.msg ? zs_.msg : "error " + std::to_string(ret)));
      }
      if (zs_.avail_out < want) return want - zs_.avail_out;
    }
  }

 private:
  z_stream zs_;
  std::vector<unsigned char> in_;
  bool eof_ = false, member_done_ = false;
};

class ZstdSource final : public ByteSource {
 public:
  explicit ZstdSource(const std::string& path) : ByteSource(path), in_(ZSTD_DStreamInSize()) {
    d_ = ZSTD_createDCtx();
    if (!d_) throw RuntimeError(path + ": cannot initialise zstd");
  }
  ~ZstdSource() override { ZSTD_freeDCtx(d_); }

  size_t read(char* buf, size_t cap) override {
    ZSTD_outBuffer out{buf, cap, 0};
    for (;;) {
      if (ib_.pos == ib_.size && !eof_) {
        size_t n = raw_read(in_.data(), in_.size());
        if (n == 0) eof_ = true;
        saw_input_ |= n > 0;
        ib_ = ZSTD_inBuffer{in_.data(), n, 0};
      }
      if (ib_.pos == ib_.size && eof_ && pending_ == 0) {
        if (!saw_input_) throw InputError(path_ + ": truncated zstd stream (empty file)");
        return 0;  // every frame complete and flushed
      }
      const size_t in_before = ib_.pos;
      size_t ret = ZSTD_decompressStream(d_, &out, &ib_);
      if (ZSTD_isError(ret)) throw InputError(path_ + ": corrupt zstd stream: " + ZSTD_getErrorName(ret));
      pending_ = ret;  // 0 once a frame is complete and flushed
      if (out.pos > 0) return out.pos;
      if (ib_.pos == ib_.size && eof_ && ib_.pos == in_before)
        throw InputError(path_ + ": truncated zstd stream (unexpected end of file)");
    }
  }

 private:
  ZSTD_DCtx* d_ = nullptr;
  std::vector<char> in_;
  ZSTD_inBuffer ib_{nullptr, 0, 0};
  bool eof_ = false, saw_input_ = false;
  size_t pending_ = 0;
};


enum class Compression { kNone, kGzip, kZstd };
enum class Format { kText, kJsonl, kParquet };

struct InputFile {
  std::string path;
  Compression comp = Compression::kNone;
  Format format = Format::kText;
  uint64_t size = 0;      // bytes on disk
  int64_t mtime_ns = 0;   // modification time, part of the resume fingerprint
};

std::unique_ptr<ByteSource> open_source(const InputFile& in) {
  switch (in.comp) {
    case Compression::kGzip: return std::make_unique<GzipSource>(in.path);
    case Compression::kZstd: return std::make_unique<ZstdSource>(in.path);
    default: return std::make_unique<PlainSource>(in.path);
  }
}

// Splits a byte source into lines (without "\n" or "\r\n").
class LineReader {
 public:
  explicit LineReader(ByteSource& src) : src_(src), buf_(1 << 20) {}
  bool next(std::string& line) {
    line.clear();
    for (;;) {
      if (pos_ == len_) {
        if (eof_) {
          if (line.empty()) return false;
          break;
        }
        len_ = src_.read(buf_.data(), buf_.size());
        pos_ = 0;
        if (len_ == 0) {
          eof_ = true;
          continue;
        }
      }
      const char* start = buf_.data() + pos_;
      const char* nl = static_cast<const char*>(std::memchr(start, '\n', len_ - pos_));
      if (nl) {
        line.append(start, nl - start);
        pos_ += (nl - start) + 1;
        break;
      }
      line.append(start, len_ - pos_);
      pos_ = len_;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

 private:
  ByteSource& src_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
};

// ------------------------------------------------------------------ inputs

std::vector<InputFile> list_inputs(const TokenizeOptions& o) {
  std::vector<std::string> paths;
  for (const auto& spec : o.inputs) {
    std::vector<std::string> found;
    std::error_code ec;
    if (spec.find_first_of("*?[") != std::string::npos && !fs::exists(spec, ec)) {
      glob_t g;
      std::memset(&g, 0, sizeof g);
      int rc = ::glob(spec.c_str(), 0, nullptr, &g);
      for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i)
        if (fs::is_regular_file(g.gl_pathv[i], ec)) found.emplace_back(g.gl_pathv[i]);
      ::globfree(&g);
      if (found.empty()) throw InputError("input '" + spec + "': no files match");
    } else if (fs::is_directory(spec, ec)) {
      for (auto it = fs::recursive_directory_iterator(spec, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        const std::string fname = it->path().filename().string();
        if (!fname.empty() && fname[0] == '.') {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec)) found.push_back(it->path().string());
      }
      if (ec) throw InputError("input '" + spec + "': " + ec.message());
      if (found.empty()) throw InputError("input '" + spec + "': directory has no files");
    } else if (fs::is_regular_file(spec, ec)) {
      found.push_back(spec);
    } else {
      throw InputError("input '" + spec + "': no such file or directory");
    }
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }

  std::vector<InputFile> files;
  for (const auto& p : paths) {
    InputFile f;
    f.path = p;
    std::string base = p;
    if (ends_with(base, ".gz")) {
      f.comp = Compression::kGzip;
      base.resize(base.size() - 3);
    } else if (ends_with(base, ".zst") || ends_with(base, ".zstd")) {
      f.comp = Compression::kZstd;
      base.resize(base.rfind('.'));
    }
    if (o.format == "text") {
      f.format = Format::kText;
    } else if (o.format == "jsonl") {
      f.format = Format::kJsonl;
    } else if (o.format == "parquet") {
      f.format = Format::kParquet;
    } else if (ends_with(base, ".jsonl") || ends_with(base, ".json") || ends_with(base, ".ndjson")) {
      f.format = Format::kJsonl;
    } else if (ends_with(base, ".parquet")) {
      f.format = Format::kParquet;
    } else {
      f.format = Format::kText;
    }
    if (f.format == Format::kParquet) {
#ifndef LLMTRAIN_TOKENIZE_PARQUET
      throw InputError(p + ": Parquet input is not supported by this build");
#endif
      if (f.comp != Compression::kNone)
        throw InputError(p + ": a Parquet file compresses its pages itself; decompress the file first");
    }
    struct stat sb;
    if (::stat(p.c_str(), &sb) != 0) throw InputError(p + ": " + std::strerror(errno));
    f.size = static_cast<uint64_t>(sb.st_size);
    f.mtime_ns = static_cast<int64_t>(sb.st_mtim.tv_sec) * 1000000000 + sb.st_mtim.tv_nsec;
    files.push_back(std::move(f));
  }
  return files;
}

// ------------------------------------------------------------------ records and batches

enum class RecKind : uint8_t { kPending, kDoc, kEmpty, kBad };

struct Record {
  std::string data;       // document text, or one JSON line (freed once encoded)
  uint64_t index = 0;     // position among all records of the run (bad and empty ones included)
  uint64_t file_rec = 0;  // position among the records of its file
  uint32_t file = 0;      // index into the input list
  uint64_t line = 0;      // JSON line number (1-based), Parquet row (1-based), or document number in a text file
  bool json = false;
  bool null_value = false;  // a Parquet row whose text is null: a bad record, like a JSON line without text
  // Filled by a worker:
  RecKind kind = RecKind::kPending;
  size_t tok_end = 0;        // kDoc: end offset of its ids in Batch::tokens
  uint64_t text_bytes = 0;   // kDoc: bytes of text
  std::string error;         // kBad: file:line: what is wrong
};

struct Batch {
  uint64_t seq = 0;
  std::vector<Record> recs;
  size_t raw_bytes = 0;
  std::vector<int32_t> tokens;  // filled by a worker: every document's ids, delimiters included
};

constexpr size_t kBatchBytes = 1 << 20;  // text per batch: small enough to spread, big enough to amortise
constexpr size_t kBatchRecords = 4096;

// Strips nlohmann's "[json.exception.parse_error.101] " prefix.
std::string json_error_text(const std::exception& e) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0) {
    size_t close = s.find("] ");
    if (close != std::string::npos) s = s.substr(close + 2);
  }
  return s;
}

// Parses and encodes one batch (a worker's job). Without skip_bad it stops at the first bad record
// (the writer then stops the run there).
void encode_batch(Batch& b, const Tokenizer& tok, const std::vector<InputFile>& files, const TokenizeOptions& o) {
  const int32_t delim = tok.doc_delimiter(), end = tok.doc_end();
  std::string text_store;
  for (Record& r : b.recs) {
    std::string_view text;
    auto bad = [&](const std::string& what) {
      r.kind = RecKind::kBad;
      r.error = files[r.file].path + (files[r.file].format == Format::kParquet ? ": row " : ":") + std::to_string(r.line) +
                ": " + what;
    };
    if (r.null_value) {
      bad("column '" + o.text_field + "' is null");
      if (!o.skip_bad) return;
      continue;
    }
    if (r.json) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(r.data);
      } catch (const nlohmann::json::exception& e) {
        bad("malformed JSON: " + json_error_text(e));
      }
      if (r.kind == RecKind::kPending) {
        auto it = j.is_object() ? j.find(o.text_field) : j.end();
        if (!j.is_object())
          bad(std::string("expected a JSON object, got ") + j.type_name());
        else if (it == j.end())
          bad("no field '" + o.text_field + "'");
        else if (!it->is_string())
          bad("field '" + o.text_field + "' is " + it->type_name() + ", not a string");
        else
          text_store = std::move(it->get_ref<std::string&>());
      }
      if (r.kind == RecKind::kBad) {
        std::string().swap(r.data);
        if (!o.skip_bad) return;
        continue;
      }
      text = text_store;
    } else {
      text = r.data;
    }
    if (text.empty()) {
      r.kind = RecKind::kEmpty;
    } else {
      b.tokens.push_back(delim);
      std::vector<int32_t> ids = tok.encode(text, false);
      b.tokens.insert(b.tokens.end(), ids.begin(), ids.end());
      if (end >= 0) b.tokens.push_back(end);
      r.kind = RecKind::kDoc;
      r.text_bytes = text.size();
    }
    r.tok_end = b.tokens.size();
    std::string().swap(r.data);
  }
}

// Where a resumed run picks up: records of files before `file` are skipped whole, then the first
// `file_rec` records of `file`; `record` is the global index of that next record and `skip_tokens`
// how many ids of its document are already in finished shards.
struct ResumePoint {
  uint32_t file = 0;
  uint64_t file_rec = 0;
  uint64_t record = 0;
  uint64_t skip_tokens = 0;
};

// The three-stage pipeline's shared state.
class Pipeline {
 public:
  Pipeline(const Tokenizer& tok, const std::vector<InputFile>& files, const TokenizeOptions& o, int workers,
           const ResumePoint& from)
      : tok_(tok), files_(files), o_(o), from_(from), max_in_flight_(static_cast<size_t>(2 * workers + 2)),
        hashes_(files.size()) {
    records_ = from.record;
    threads_.emplace_back([this] { guarded([this] { read_all(); }); });
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { guarded([this] { work(); }); });
  }
  ~Pipeline() { stop(); }

  // The next batch in reading order, or nullptr when all input is done. Rethrows a reader/worker
  // failure.
  std::unique_ptr<Batch> next() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return error_ || done_.count(next_seq_) || (reader_done_ && next_seq_ == batches_read_); });
    if (error_) std::rethrow_exception(error_);
    auto it = done_.find(next_seq_);
    if (it == done_.end()) return nullptr;
    auto b = std::move(it->second);
    done_.erase(it);
    ++next_seq_;
    --in_flight_;
    cv_.notify_all();
    return b;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      abort_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  uint64_t files_read() const { return files_read_; }
  // Raw input bytes read so far (skipped files count whole): the progress bar's position.
  uint64_t consumed_bytes() const { return consumed_.load(std::memory_order_relaxed); }
  // SHA-256 of input file i once the reader has read all of it, else "".
  std::string source_hash(size_t i) {
    std::lock_guard<std::mutex> lk(mu_);
    return hashes_[i];
  }
  void set_known_hash(size_t i, const std::string& h) {
    std::lock_guard<std::mutex> lk(mu_);
    hashes_[i] = h;
  }

 private:
  void guarded(const std::function<void()>& fn) {
    try {
      fn();
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_ && !abort_) error_ = std::current_exception();
      abort_ = true;
      cv_.notify_all();
    }
  }

  // Hands a full batch to the workers; false when the run is being aborted.
  bool submit(std::unique_ptr<Batch>& b) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return abort_ || in_flight_ < max_in_flight_; });
    if (abort_) return false;
    b->seq = batches_read_++;
    ++in_flight_;
    todo_.push_back(std::move(b));
    cv_.notify_all();
    b = std::make_unique<Batch>();
    return true;
  }

  // Adds one record (unless resuming skips it); submits the batch when full. False when reading
  // should stop.
  bool add(std::unique_ptr<Batch>& b, Record&& r, uint64_t& file_rec) {
    r.file_rec = file_rec++;
    if (r.file == from_.file && r.file_rec < from_.file_rec) return true;  // done before the interruption
    if (o_.max_docs >= 0 && records_ >= static_cast<uint64_t>(o_.max_docs)) return false;
    r.index = records_++;
    b->raw_bytes += r.data.size();
    b->recs.push_back(std::move(r));
    if (b->raw_bytes >= kBatchBytes || b->recs.size() >= kBatchRecords) return submit(b);
    return true;
  }

  void read_all() {
    auto b = std::make_unique<Batch>();
    bool go = true;
    for (uint32_t fi = 0; go && fi < files_.size(); ++fi) {
      const InputFile& f = files_[fi];
      ++files_read_;
      if (fi < from_.file) {  // finished before the interruption
        consumed_ += f.size;
        continue;
      }
      uint64_t file_rec = 0;
      if (f.format == Format::kParquet) {
#ifdef LLMTRAIN_TOKENIZE_PARQUET
        const std::string hash = sha256_file(f.path);
        ParquetReader pq(f.path);
        const uint64_t base = consumed_.load();
        const double rows = std::max<double>(1, static_cast<double>(pq.num_rows()));
        struct Stop {};
        int64_t next_row = 0;  // rows skipped by for_each_string are nulls
        auto add_nulls = [&](int64_t upto) {
          for (; next_row < upto; ++next_row) {
            Record r;
            r.file = fi;
            r.line = static_cast<uint64_t>(next_row) + 1;
            r.null_value = true;
            if (!add(b, std::move(r), file_rec)) throw Stop{};
          }
        };
        try {
          pq.for_each_string(o_.text_field, [&](std::string_view v, int64_t row) {
            add_nulls(row);
            next_row = row + 1;
            Record r;
            r.data.assign(v.data(), v.size());
            r.file = fi;
            r.line = static_cast<uint64_t>(row) + 1;
            consumed_.store(base + static_cast<uint64_t>(f.size * ((row + 1) / rows)), std::memory_order_relaxed);
            if (!add(b, std::move(r), file_rec)) throw Stop{};
          });
          add_nulls(pq.num_rows());
        } catch (const Stop&) {
          go = false;
        }
        consumed_.store(base + f.size);
        set_known_hash(fi, hash);
#endif
        continue;
      }
      Sha256 hash;
      auto src = open_source(f);
      src->observe(&consumed_, &hash);
      if (f.format == Format::kJsonl) {
        LineReader lines(*src);
        std::string line;
        uint64_t line_no = 0;
        while (go && lines.next(line)) {
          ++line_no;
          if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
          Record r;
          r.data = std::move(line);
          r.file = fi;
          r.line = line_no;
          r.json = true;
          go = add(b, std::move(r), file_rec);
          line = std::string();
        }
      } else if (o_.doc_separator.empty()) {
        Record r;
        r.file = fi;
        r.line = 1;
        std::vector<char> buf(1 << 20);
        while (size_t n = src->read(buf.data(), buf.size())) r.data.append(buf.data(), n);
        go = add(b, std::move(r), file_rec);
      } else {
        const std::string& sep = o_.doc_separator;
        std::string acc;
        std::vector<char> buf(1 << 20);
        uint64_t doc_no = 0;
        size_t scan = 0;
        auto emit = [&](std::string&& text) {
          Record r;
          r.file = fi;
          r.line = ++doc_no;
          r.data = std::move(text);
          return add(b, std::move(r), file_rec);
        };
        while (go) {
          size_t n = src->read(buf.data(), buf.size());
          if (n == 0) break;
          acc.append(buf.data(), n);
          size_t start = 0;
          for (size_t at; go && (at = acc.find(sep, scan)) != std::string::npos;) {
            go = emit(acc.substr(start, at - start));
            start = scan = at + sep.size();
          }
          acc.erase(0, start);
          scan = acc.size() >= sep.size() ? acc.size() - sep.size() + 1 : 0;
        }
        if (go && !acc.empty()) go = emit(std::move(acc));
      }
      if (go) set_known_hash(fi, hash.hex());  // whole file read (a --max-docs stop leaves it unhashed)
    }
    if (!b->recs.empty()) submit(b);
    std::lock_guard<std::mutex> lk(mu_);
    reader_done_ = true;
    cv_.notify_all();
  }

  void work() {
    for (;;) {
      std::unique_ptr<Batch> b;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return abort_ || !todo_.empty() || (reader_done_ && todo_.empty()); });
        if (abort_ || todo_.empty()) return;
        b = std::move(todo_.front());
        todo_.pop_front();
      }
      encode_batch(*b, tok_, files_, o_);
      std::lock_guard<std::mutex> lk(mu_);
      const uint64_t seq = b->seq;
      done_[seq] = std::move(b);
      cv_.notify_all();
    }
  }

  const Tokenizer& tok_;
  const std::vector<InputFile>& files_;
  const TokenizeOptions& o_;
  const ResumePoint from_;
  const size_t max_in_flight_;
  std::vector<std::thread> threads_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Batch>> todo_;
  std::map<uint64_t, std::unique_ptr<Batch>> done_;
  uint64_t batches_read_ = 0, next_seq_ = 0;
  size_t in_flight_ = 0;
  bool reader_done_ = false, abort_ = false;
  std::exception_ptr error_;
  std::vector<std::string> hashes_;      // guarded by mu_
  uint64_t records_ = 0;                 // reader thread only
  std::atomic<uint64_t> files_read_{0};
  std::atomic<uint64_t> consumed_{0};
};

// ------------------------------------------------------------------ output

bool is_shard_name(const std::string& f, const std::string& name) {
  for (const char* kind : {"_val_", "_train_"}) {
    const std::string prefix = name + kind;
    if (f.size() == prefix.size() + 10 && f.compare(0, prefix.size(), prefix) == 0 && ends_with(f, ".bin") &&
        std::all_of(f.begin() + prefix.size(), f.end() - 4, [](char c) { return c >= '0' && c <= '9'; }))
      return true;
  }
  return false;
}

// Existing shards of this name in out_dir: <name>_val_NNNNNN.bin / <name>_train_NNNNNN.bin.
std::vector<std::string> existing_shards(const std::string& dir, const std::string& name) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (is_shard_name(e.path().filename().string(), name)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string progress_path(const TokenizeOptions& o) { return o.out_dir + "/" + o.name + "_tokenize_progress.json"; }


// What must be equal for a rerun to continue an interrupted one: every option that changes the
// output, and the inputs with their sizes and modification times.
nlohmann::json fingerprint(const TokenizeOptions& o, const Tokenizer& tok, const std::vector<InputFile>& files) {
  nlohmann::json inputs = nlohmann::json::array();
  for (const auto& f : files) inputs.push_back({{"path", f.path}, {"bytes", f.size}, {"mtime_ns", f.mtime_ns}});
  return {{"name", o.name},
          {"tokenizer", o.tokenizer},
          {"tokenizer_name", tok.name()},
          {"vocab_size", tok.vocab_size()},
          {"doc_delimiter", tok.doc_delimiter()},
          {"doc_end", tok.doc_end()},
          {"format", o.format},
          {"text_field", o.text_field},
          {"doc_separator", o.doc_separator},
          {"val_tokens", o.val_tokens},
          {"shard_tokens", o.shard_tokens},
          {"skip_bad", o.skip_bad},
          {"max_docs", o.max_docs},
          {"inputs", inputs}};
}

std::string first_difference(const nlohmann::json& a, const nlohmann::json& b) {
  for (auto it = a.begin(); it != a.end(); ++it)
    if (!b.contains(it.key()) || b[it.key()] != it.value()) {
      if (it.key() == "inputs") return "the input files (names, sizes or modification times)";
      return "'" + it.key() + "' was " + (b.contains(it.key()) ? b[it.key()].dump() : "unset") + ", now " + it.value().dump();
    }
  return "the progress file's format";
}

// Everything a resumed run needs: the fingerprint, where to continue, the counts so far and the
// finished shards. Written after every finished shard.
struct Progress {
  ResumePoint at;
  uint64_t docs = 0, empty_docs = 0, bad_records = 0, text_bytes = 0, val_tokens = 0, train_tokens = 0;
  bool val_done = false;
  int next_train_index = 1;
  std::vector<std::pair<std::string, uint64_t>> shards;  // file name (in out_dir), tokens
  std::vector<std::string> source_sha256;                  // of input files before at.file

  nlohmann::json to_json(const nlohmann::json& fp) const {
    nlohmann::json sh = nlohmann::json::array();
    for (const auto& [f, n] : shards) sh.push_back({{"file", f}, {"tokens", n}});
    return {{"format", "llmtrain-tokenize-progress"},
            {"version", 1},
            {"fingerprint", fp},
            {"resume", {{"file", at.file}, {"file_record", at.file_rec}, {"record", at.record}, {"skip_tokens", at.skip_tokens}}},
            {"counts",
             {{"documents", docs}, {"empty_documents", empty_docs}, {"bad_records", bad_records}, {"text_bytes", text_bytes},
              {"val_tokens", val_tokens}, {"train_tokens", train_tokens}}},
            {"val_done", val_done},
            {"next_train_index", next_train_index},
            {"shards", sh},
            {"source_sha256", source_sha256}};
  }
  static Progress from_json(const nlohmann::json& j) {
    Progress p;
    const auto& r = j.at("resume");
    p.at.file = r.at("file").get<uint32_t>();
    p.at.file_rec = r.at("file_record").get<uint64_t>();
    p.at.record = r.at("record").get<uint64_t>();
    p.at.skip_tokens = r.at("skip_tokens").get<uint64_t>();
    const auto& c = j.at("counts");
    p.docs = c.at("documents").get<uint64_t>();
    p.empty_docs = c.at("empty_documents").get<uint64_t>();
    p.bad_records = c.at("bad_records").get<uint64_t>();
    p.text_bytes = c.at("text_bytes").get<uint64_t>();
    p.val_tokens = c.at("val_tokens").get<uint64_t>();
    p.train_tokens = c.at("train_tokens").get<uint64_t>();
    p.val_done = j.at("val_done").get<bool>();
    p.next_train_index = j.at("next_train_index").get<int>();
    for (const auto& s : j.at("shards")) p.shards.emplace_back(s.at("file").get<std::string>(), s.at("tokens").get<uint64_t>());
    p.source_sha256 = j.at("source_sha256").get<std::vector<std::string>>();
    return p;
  }
};

// Routes documents to the validation shard, then to train shards of shard_tokens each. After each
// finished shard it calls on_close(k): k = how many ids of the current document() call are in
// finished shards by then.
class ShardSink {
 public:
  ShardSink(const TokenizeOptions& o, bool uint32_tokens, TokenizeStats& st) : o_(o), u32_(uint32_tokens), st_(st) {
    val_open_ = o.val_tokens > 0;
  }

  // Continues after the finished shards of an interrupted run.
  void resume(const Progress& p) {
    val_open_ = o_.val_tokens > 0 && !p.val_done;
    next_index_ = p.next_train_index;
    for (const auto& [f, n] : p.shards) {
      written_.push_back(o_.out_dir + "/" + f);
      written_tokens_.push_back(n);
    }
    closed_val_ = st_.val_tokens = p.val_tokens;
    closed_train_ = st_.train_tokens = p.train_tokens;
  }

  template <class OnClose>
  void document(const int32_t* ids, size_t n, OnClose&& on_close) {
    if (val_open_) {
      if (!val_) val_ = std::make_unique<ShardWriter>(val_shard_path(o_.out_dir, o_.name), u32_);
      val_->write(ids, n);
      st_.val_tokens += n;
      if (val_->count() >= o_.val_tokens) {
        close_val();
        on_close(n);
      }
      return;
    }
    size_t done = 0;
    while (done < n) {
      if (!train_) train_ = std::make_unique<ShardWriter>(train_shard_path(o_.out_dir, o_.name, next_index_++), u32_);
      size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, o_.shard_tokens - train_->count()));
      train_->write(ids + done, take);
      st_.train_tokens += take;
      done += take;
      if (train_->count() == o_.shard_tokens) {
        close_train();
        on_close(done);
      }
    }
  }

  void finish() {
    if (val_open_ && val_) close_val();
    if (train_) close_train();
  }

  // Removes every shard of the run, resumed ones included (after a failure).
  void discard() {
    val_.reset();
    train_.reset();  // a writer destroyed before close() removes its temp file
    for (const auto& p : written_) std::remove(p.c_str());
    written_.clear();
    written_tokens_.clear();
  }
  const std::vector<std::string>& written() const { return written_; }
  const std::vector<uint64_t>& written_tokens() const { return written_tokens_; }
  uint64_t closed_val_tokens() const { return closed_val_; }
  uint64_t closed_train_tokens() const { return closed_train_; }
  bool val_done() const { return !val_open_; }
  int next_index() const { return next_index_; }

 private:
  void close_val() {
    val_->close();
    closed_val_ += val_->count();
    written_.push_back(val_->path());
    written_tokens_.push_back(val_->count());
    val_.reset();
    val_open_ = false;
  }
  void close_train() {
    train_->close();
    closed_train_ += train_->count();
    written_.push_back(train_->path());
    written_tokens_.push_back(train_->count());
    train_.reset();
  }

  const TokenizeOptions& o_;
  bool u32_;
  TokenizeStats& st_;
  bool val_open_ = false;
  std::unique_ptr<ShardWriter> val_, train_;
  int next_index_ = 1;
  uint64_t closed_val_ = 0, closed_train_ = 0;
  std::vector<std::string> written_;
  std::vector<uint64_t> written_tokens_;
};

// ------------------------------------------------------------------ progress display


std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  return buf;
}

// A progress bar on a terminal (redrawn twice a second), a log line every 30 s otherwise. The
// position is the share of input bytes (compressed, as on disk) read; the ETA extrapolates the rate
// of this run.
class ProgressDisplay {
 public:
  ProgressDisplay(bool enabled, uint64_t total_bytes, uint64_t start_bytes)
      : enabled_(enabled), tty_(enabled && ::isatty(2)), total_(total_bytes), start_bytes_(start_bytes),
        t0_(Clock::now()), last_(t0_) {}

  void update(uint64_t consumed, const TokenizeStats& st, uint64_t text_bytes_this_run) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_).count() < (tty_ ? 0.5 : 30.0)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - t0_).count();
    const double frac = total_ ? std::min(1.0, double(consumed) / double(total_)) : 1.0;
    const double rate = consumed > start_bytes_ ? (consumed - start_bytes_) / secs : 0;
    const double eta = rate > 0 ? (double(total_) - double(consumed)) / rate : -1;
    const double text_mbs = text_bytes_this_run / 1e6 / secs;
    char line[256];
    if (tty_) {
      constexpr int kWidth = 28;
      std::string bar(kWidth, ' ');
      const int full = static_cast<int>(frac * kWidth);
      for (int i = 0; i < full; ++i) bar[i] = '=';
      if (full < kWidth) bar[full] = '>';
      std::snprintf(line, sizeof line, "\r[%s] %5.1f%%  %s / %s  %.1f MB/s text  %llu tokens  ETA %s   ", bar.c_str(),
                    frac * 100, human_bytes(double(consumed)).c_str(), human_bytes(double(total_)).c_str(), text_mbs,
                    (unsigned long long)(st.val_tokens + st.train_tokens), format_duration(eta).c_str());
      std::fputs(line, stderr);
      std::fflush(stderr);
      drawn_ = true;
    } else {
      spdlog::info("tokenize: {:.1f}% of {} read, {} documents, {} tokens, {:.1f} MB/s text, ETA {}", frac * 100,
                   human_bytes(double(total_)), st.docs, st.val_tokens + st.train_tokens, text_mbs, format_duration(eta));
    }
  }
  // Ends the bar's line so that later output starts on a fresh one.
  void done() {
    if (drawn_) std::fputs("\n", stderr);
    drawn_ = false;
  }
  ~ProgressDisplay() { done(); }

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_, tty_;
  uint64_t total_, start_bytes_;
  Clock::time_point t0_, last_;
  bool drawn_ = false;
};

std::string basename_of(const std::string& p) { return fs::path(p).filename().string(); }

// SHA-256 of every shard, on `threads` threads.
std::vector<std::string> hash_files(const std::vector<std::string>& paths, int threads) {
  std::vector<std::string> out(paths.size());
  std::atomic<size_t> next{0};
  std::exception_ptr err;
  std::mutex mu;
  auto run = [&] {
    for (size_t i; (i = next++) < paths.size();) {
      try {
        out[i] = sha256_file(paths[i]);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!err) err = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::min<int>(threads, static_cast<int>(paths.size())); ++t) pool.emplace_back(run);
  run();
  for (auto& t : pool) t.join();
  if (err) std::rethrow_exception(err);
  return out;
}

std::string vocab_hash(const Tokenizer& tok) {
  Sha256 h;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string s = tok.decode(&id, 1);
    const uint32_t n = static_cast<uint32_t>(s.size());
    h.update(&n, sizeof n);
    h.update(s.data(), s.size());
  }
  return h.hex();
}

}  // namespace

std::string manifest_path(const std::string& out_dir, const std::string& name) {
  return out_dir + "/" + name + "_manifest.json";
}

// An input that yields no document (empty files, only empty or skipped records) writes nothing:
// say so, naming the inputs and what was skipped, rather than leave a manifest of zero shards.
std::string no_documents_message(const std::vector<InputFile>& files, const TokenizeStats& st, const TokenizeOptions& o) {
  std::string names;
  for (size_t i = 0; i < files.size() && i < 3; ++i) names += (i ? ", " : "") + files[i].path;
  if (files.size() > 3) names += " and " + std::to_string(files.size() - 3) + " more file(s)";
  std::string why;
  if (st.empty_docs) why += std::to_string(st.empty_docs) + " empty document(s)";
  if (st.bad_records) why += (why.empty() ? "" : ", ") + std::to_string(st.bad_records) + " bad record(s) skipped";
  if (o.max_docs == 0) why += (why.empty() ? "" : ", ") + std::string("--max-docs 0");
  return "tokenize: no documents found in " + names + (why.empty() ? "" : " (" + why + ")") + "; no shards written";
}

TokenizeStats tokenize_corpus(const TokenizeOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  if (o.inputs.empty()) throw InputError("tokenize: no input files given");
  if (o.out_dir.empty()) throw InputError("tokenize: no output directory given");
  if (o.name.empty() || o.name.find('/') != std::string::npos)
    throw InputError("tokenize: bad shard name '" + o.name + "' (non-empty, no '/')");
  if (o.shard_tokens == 0) throw InputError("tokenize: --shard-tokens must be positive");
  if (o.shard_tokens > static_cast<uint64_t>(INT32_MAX))
    throw InputError("tokenize: --shard-tokens " + std::to_string(o.shard_tokens) +
                     " exceeds the llm.c header's int32 token count");
  if (o.val_tokens >= static_cast<uint64_t>(INT32_MAX) / 2)
    throw InputError("tokenize: --val-tokens " + std::to_string(o.val_tokens) + " is too large for one shard");
  if (o.threads < 0) throw InputError("tokenize: --threads must be >= 0");
  if (o.format != "auto" && o.format != "text" && o.format != "jsonl" && o.format != "parquet")
    throw InputError("tokenize: unknown --format '" + o.format + "' (auto, text, jsonl or parquet)");
  if (o.text_field.empty()) throw InputError("tokenize: empty --text-field");

  const std::vector<InputFile> files = list_inputs(o);

  std::unique_ptr<Tokenizer> tok;
  std::error_code ec;
  if (o.tokenizer != "gpt2" && fs::is_regular_file(o.tokenizer, ec))
    tok = make_sentencepiece_tokenizer(o.tokenizer, o.sentencepiece);
  else
    tok = load_tokenizer(o.tokenizer);
  const nlohmann::json fp = fingerprint(o, *tok, files);

  fs::create_directories(o.out_dir, ec);
  if (!fs::is_directory(o.out_dir)) throw InputError(o.out_dir + ": cannot create output directory: " + ec.message());
  const std::string prog_path = progress_path(o), man_path = manifest_path(o.out_dir, o.name);

  // A fresh run, or the continuation of an interrupted one (a progress file with the same fingerprint).
  bool resuming = false;
  Progress prog;
  auto old = existing_shards(o.out_dir, o.name);
  if (o.overwrite) {
    for (const auto& p : old) fs::remove(p, ec);
    fs::remove(prog_path, ec);
    fs::remove(man_path, ec);
  } else if (fs::exists(prog_path)) {
    nlohmann::json pj;
    try {
      std::ifstream in(prog_path, std::ios::binary);
      pj = nlohmann::json::parse(in);
      if (pj.value("format", "") != "llmtrain-tokenize-progress" || pj.value("version", 0) != 1)
        throw InputError("not a progress file of this version");
      prog = Progress::from_json(pj);
    } catch (const std::exception& e) {
      throw InputError(prog_path + ": cannot resume from it (" + json_error_text(e) + "); pass --overwrite to start over");
    }
    if (pj.at("fingerprint") != fp)
      throw InputError(o.out_dir + " holds an interrupted run of '" + o.name + "' with different settings (" +
                       first_difference(fp, pj.at("fingerprint")) +
                       "); rerun the same command to resume it, or pass --overwrite to start over");
    std::vector<std::string> keep;
    for (const auto& [f, n] : prog.shards) {
      const std::string p = o.out_dir + "/" + f;
      ShardInfo info;
      try {
        info = read_shard_header(p);
      } catch (const InputError& e) {
        throw InputError(std::string("cannot resume: ") + e.what() + "; pass --overwrite to start over");
      }
      if (info.num_tokens != n)
        throw InputError("cannot resume: " + p + " holds " + std::to_string(info.num_tokens) + " tokens, the progress file says " +
                         std::to_string(n) + "; pass --overwrite to start over");
      keep.push_back(p);
    }
    // Shards finished after the last progress update are written again.
    for (const auto& p : old)
      if (std::find(keep.begin(), keep.end(), p) == keep.end()) fs::remove(p, ec);
    if (prog.at.file > files.size() || prog.source_sha256.size() != prog.at.file)
      throw InputError(prog_path + ": inconsistent resume position; pass --overwrite to start over");
    resuming = true;
  } else if (!old.empty()) {
    throw InputError(o.out_dir + " already holds " + std::to_string(old.size()) + " shard(s) named '" + o.name + "' (" +
                     old.front() + ", ...); pass --overwrite to replace them");
  }

  TokenizeStats st;
  st.token_bytes = tok->vocab_size() <= 65536 ? 2 : 4;
  st.resumed = resuming;
  int workers = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  ShardSink sink(o, st.token_bytes == 4, st);
  if (resuming) {
    sink.resume(prog);
    st.docs = prog.docs;
    st.empty_docs = prog.empty_docs;
    st.bad_records = prog.bad_records;
    st.text_bytes = prog.text_bytes;
    st.resumed_tokens = prog.val_tokens + prog.train_tokens;
    spdlog::info("tokenize: resuming an interrupted run: {} shard(s), {} tokens done; continuing at {} (record {})",
                 prog.shards.size(), st.resumed_tokens, prog.at.file < files.size() ? files[prog.at.file].path : "the end",
                 prog.at.file_rec + 1);
  }
  uint64_t total_bytes = 0, skipped_bytes = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    total_bytes += files[i].size;
    if (i < prog.at.file) skipped_bytes += files[i].size;
  }

  std::vector<std::string> source_hashes;
  try {
    Pipeline pipe(*tok, files, o, workers, prog.at);
    for (size_t i = 0; i < prog.source_sha256.size(); ++i) pipe.set_known_hash(i, prog.source_sha256[i]);
    ProgressDisplay display(o.progress, total_bytes, skipped_bytes);
    const uint64_t text_bytes_before = st.text_bytes;
    int bad_logged = 0;
    int64_t shards_this_run = 0;
    while (auto b = pipe.next()) {
      size_t begin = 0;
      for (const Record& r : b->recs) {
        if (r.kind == RecKind::kBad) {
          if (!o.skip_bad) throw InputError(r.error + " (pass --skip-bad to skip bad records)");
          if (bad_logged++ < 10) spdlog::warn("skipping {}", r.error);
          ++st.bad_records;
        } else if (r.kind == RecKind::kEmpty) {
          ++st.empty_docs;
        } else if (r.kind == RecKind::kDoc) {
          const size_t n = r.tok_end - begin;
          const size_t skip = r.index == prog.at.record ? static_cast<size_t>(std::min<uint64_t>(prog.at.skip_tokens, n)) : 0;
          // After each finished shard, record where a rerun would continue.
          auto on_close = [&](size_t written) {
            const bool complete = skip + written == n;
            Progress p;
            p.at.file = r.file;
            p.at.file_rec = complete ? r.file_rec + 1 : r.file_rec;
            p.at.record = complete ? r.index + 1 : r.index;
            p.at.skip_tokens = complete ? 0 : skip + written;
            p.docs = st.docs + (complete ? 1 : 0);
            p.empty_docs = st.empty_docs;
            p.bad_records = st.bad_records;
            p.text_bytes = st.text_bytes + (complete ? r.text_bytes : 0);
            p.val_tokens = sink.closed_val_tokens();
            p.train_tokens = sink.closed_train_tokens();
            p.val_done = sink.val_done();
            p.next_train_index = sink.next_index();
            for (size_t i = 0; i < sink.written().size(); ++i)
              p.shards.emplace_back(basename_of(sink.written()[i]), sink.written_tokens()[i]);
            for (uint32_t i = 0; i < r.file; ++i) p.source_sha256.push_back(pipe.source_hash(i));
            write_file_atomic(prog_path, p.to_json(fp).dump(1) + "\n");
            if (o.interrupt_after_shards >= 0 && ++shards_this_run >= o.interrupt_after_shards)
              throw TokenizeInterrupted();
          };
          sink.document(b->tokens.data() + begin + skip, n - skip, on_close);
          ++st.docs;
          st.text_bytes += r.text_bytes;
        } else {
          break;  // after a bad record that stopped the worker
        }
        if (r.kind == RecKind::kDoc) begin = r.tok_end;
      }
      display.update(pipe.consumed_bytes(), st, st.text_bytes - text_bytes_before);
    }
    display.done();
    st.files = pipe.files_read();
    sink.finish();
    if (st.docs == 0) throw InputError(no_documents_message(files, st, o));
    for (size_t i = 0; i < files.size(); ++i) source_hashes.push_back(pipe.source_hash(i));
  } catch (const TokenizeInterrupted&) {
    throw;  // as if killed: finished shards and the progress file stay for a rerun
  } catch (...) {
    if (!sink.written().empty())
      spdlog::warn("tokenize failed: removing the {} shard(s) this run had written", sink.written().size());
    sink.discard();
    fs::remove(prog_path, ec);
    throw;
  }
  st.shards = sink.written();

  // The manifest: what was made from what, with checksums.
  const std::vector<std::string> shard_hashes = hash_files(st.shards, workers);
  nlohmann::json shards = nlohmann::json::array();
  for (size_t i = 0; i < st.shards.size(); ++i) {
    const ShardInfo info = read_shard_header(st.shards[i]);
    shards.push_back({{"file", basename_of(st.shards[i])},
                      {"split", basename_of(st.shards[i]).find("_val_") != std::string::npos ? "val" : "train"},
                      {"tokens", info.num_tokens},
                      {"bytes", kShardHeaderBytes + info.num_tokens * info.token_bytes},
                      {"sha256", shard_hashes[i]}});
  }
  nlohmann::json sources = nlohmann::json::array();
  for (size_t i = 0; i < files.size(); ++i) {
    nlohmann::json s = {{"path", files[i].path}, {"bytes", files[i].size}};
    s["sha256"] = source_hashes[i].empty() ? nlohmann::json(nullptr) : nlohmann::json(source_hashes[i]);
    sources.push_back(s);
  }
  st.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  nlohmann::json man = {
      {"format", "llmtrain-tokenize-manifest"},
      {"version", 1},
      {"tokenizer",
       {{"spec", o.tokenizer},
        {"name", tok->name()},
        {"vocab_size", tok->vocab_size()},
        {"vocab_sha256", vocab_hash(*tok)},
        {"doc_delimiter", tok->doc_delimiter()},
        {"doc_end", tok->doc_end()},
        {"token_bytes", st.token_bytes}}},
      {"options",
       {{"format", o.format},
        {"text_field", o.text_field},
        {"doc_separator", o.doc_separator},
        {"val_tokens", o.val_tokens},
        {"shard_tokens", o.shard_tokens},
        {"skip_bad", o.skip_bad},
        {"max_docs", o.max_docs}}},
      {"counts",
       {{"files", st.files},
        {"documents", st.docs},
        {"empty_documents", st.empty_docs},
        {"bad_records", st.bad_records},
        {"text_bytes", st.text_bytes},
        {"tokens", st.val_tokens + st.train_tokens},
        {"val_tokens", st.val_tokens},
        {"train_tokens", st.train_tokens}}},
      {"sources", sources},
      {"shards", shards},
      {"resumed", resuming},
      {"seconds", st.seconds}};
  write_file_atomic(man_path, man.dump(2) + "\n");
  fs::remove(prog_path, ec);
  st.manifest = man_path;
  return st;
}

}  // namespace llmtrain
