// `llmtrain tokenize` as a library (tokenize.h): input discovery, streaming decompression (zlib,
// zstd), record extraction (text files, JSON lines, Parquet), parallel encoding and ordered shard
// writing. Three stages run at once: one reader thread turns files into batches of raw records,
// worker threads parse and encode whole batches, and the calling thread writes finished batches
// strictly in reading order, so the shards do not depend on the thread count or on timing. The
// number of batches between reading and writing is bounded, which bounds memory.
#include "llmtrain/tokenize.h"

#include <glob.h>
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
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "llmtrain/error.h"
#include "llmtrain/shard.h"

#if __has_include("llmtrain/parquet.h")
#include "llmtrain/parquet.h"
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

 protected:
  size_t raw_read(void* buf, size_t cap) {
    size_t n = std::fread(buf, 1, cap, f_);
    if (n < cap && std::ferror(f_)) throw InputError(path_ + ": read error: " + std::strerror(errno));
    return n;
  }
  std::string path_;
  std::FILE* f_ = nullptr;
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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

enum class Compression { kNone, kGzip, kZstd };
enum class Format { kText, kJsonl, kParquet };

struct InputFile {
  std::string path;
  Compression comp = Compression::kNone;
  Format format = Format::kText;
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
    files.push_back(std::move(f));
  }
  return files;
}

// ------------------------------------------------------------------ records and batches

struct Record {
  std::string data;   // document text, or one JSON line
  uint32_t file = 0;  // index into the input list
  uint64_t line = 0;  // JSON line number (1-based), or document number within a text/Parquet file
  bool json = false;
};

struct Batch {
  uint64_t seq = 0;
  std::vector<Record> recs;
  size_t raw_bytes = 0;
  // Filled by a worker:
  std::vector<int32_t> tokens;
  std::vector<size_t> doc_ends;  // end offset in `tokens` of each encoded document
  std::vector<std::string> bad;  // messages of bad records, in order
  uint64_t text_bytes = 0, empty = 0;
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

const char* json_type_name(const nlohmann::json& v) { return v.type_name(); }

// Parses and encodes one batch (a worker's job).
void encode_batch(Batch& b, const Tokenizer& tok, const std::vector<InputFile>& files, const TokenizeOptions& o) {
  const int32_t delim = tok.doc_delimiter(), end = tok.doc_end();
  std::string text_store;
  for (Record& r : b.recs) {
    std::string_view text;
    if (r.json) {
      const std::string where = files[r.file].path + ":" + std::to_string(r.line) + ": ";
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(r.data);
      } catch (const nlohmann::json::exception& e) {
        b.bad.push_back(where + "malformed JSON: " + json_error_text(e));
        if (!o.skip_bad) return;
        continue;
      }
      if (!j.is_object()) {
        b.bad.push_back(where + "expected a JSON object, got " + json_type_name(j));
        if (!o.skip_bad) return;
        continue;
      }
      auto it = j.find(o.text_field);
      if (it == j.end()) {
        b.bad.push_back(where + "no field '" + o.text_field + "'");
        if (!o.skip_bad) return;
        continue;
      }
      if (!it->is_string()) {
        b.bad.push_back(where + "field '" + o.text_field + "' is " + json_type_name(*it) + ", not a string");
        if (!o.skip_bad) return;
        continue;
      }
      text_store = std::move(it->get_ref<std::string&>());
      text = text_store;
    } else {
      text = r.data;
    }
    if (text.empty()) {
      ++b.empty;
      continue;
    }
    b.tokens.push_back(delim);
    std::vector<int32_t> ids = tok.encode(text, false);
    b.tokens.insert(b.tokens.end(), ids.begin(), ids.end());
    if (end >= 0) b.tokens.push_back(end);
    b.doc_ends.push_back(b.tokens.size());
    b.text_bytes += text.size();
  }
  b.recs.clear();
  b.recs.shrink_to_fit();
}

// The three-stage pipeline's shared state.
class Pipeline {
 public:
  Pipeline(const Tokenizer& tok, const std::vector<InputFile>& files, const TokenizeOptions& o, int workers)
      : tok_(tok), files_(files), o_(o), max_in_flight_(static_cast<size_t>(2 * workers + 2)) {
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

  // Adds one record; submits the batch when full. False when reading should stop.
  bool add(std::unique_ptr<Batch>& b, Record&& r) {
    if (o_.max_docs >= 0 && records_ >= static_cast<uint64_t>(o_.max_docs)) return false;
    ++records_;
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
      if (f.format == Format::kParquet) {
#ifdef LLMTRAIN_TOKENIZE_PARQUET
        ParquetReader pq(f.path);
        struct Stop {};
        try {
          pq.for_each_string(o_.text_field, [&](std::string_view v, int64_t row) {
            Record r;
            r.data.assign(v.data(), v.size());
            r.file = fi;
            r.line = static_cast<uint64_t>(row) + 1;
            if (!add(b, std::move(r))) throw Stop{};
          });
        } catch (const Stop&) {
          go = false;
        }
#endif
        continue;
      }
      auto src = open_source(f);
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
          go = add(b, std::move(r));
          line = std::string();
        }
      } else if (o_.doc_separator.empty()) {
        Record r;
        r.file = fi;
        r.line = 1;
        std::vector<char> buf(1 << 20);
        while (size_t n = src->read(buf.data(), buf.size())) r.data.append(buf.data(), n);
        go = add(b, std::move(r));
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
          return add(b, std::move(r));
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
  uint64_t records_ = 0;                 // reader thread only
  std::atomic<uint64_t> files_read_{0};
};

// Existing shards of this name in out_dir: <name>_val_NNNNNN.bin / <name>_train_NNNNNN.bin.
std::vector<std::string> existing_shards(const std::string& dir, const std::string& name) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    for (const char* kind : {"_val_", "_train_"}) {
      const std::string prefix = name + kind;
      if (f.size() == prefix.size() + 10 && f.compare(0, prefix.size(), prefix) == 0 && ends_with(f, ".bin") &&
          std::all_of(f.begin() + prefix.size(), f.end() - 4, [](char c) { return c >= '0' && c <= '9'; }))
        out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Routes documents to the validation shard, then to train shards of shard_tokens each.
class ShardSink {
 public:
  ShardSink(const TokenizeOptions& o, bool uint32_tokens, TokenizeStats& st) : o_(o), u32_(uint32_tokens), st_(st) {
    val_open_ = o.val_tokens > 0;
    if (val_open_) val_ = std::make_unique<ShardWriter>(val_shard_path(o.out_dir, o.name), u32_);
  }

  void document(const int32_t* ids, size_t n) {
    if (val_open_) {
      val_->write(ids, n);
      st_.val_tokens += n;
      if (val_->count() >= o_.val_tokens) close_val();
      return;
    }
    while (n > 0) {
      if (!train_) train_ = std::make_unique<ShardWriter>(train_shard_path(o_.out_dir, o_.name, next_index_++), u32_);
      size_t take = static_cast<size_t>(std::min<uint64_t>(n, o_.shard_tokens - train_->count()));
      train_->write(ids, take);
      st_.train_tokens += take;
      ids += take;
      n -= take;
      if (train_->count() == o_.shard_tokens) close_train();
    }
  }

  void finish() {
    if (val_open_) close_val();
    if (train_) close_train();
  }

  // Removes the shards this run completed (after a failure).
  void discard() {
    for (const auto& p : written_) std::remove(p.c_str());
    written_.clear();
  }
  const std::vector<std::string>& written() const { return written_; }

 private:
  void close_val() {
    val_->close();
    written_.push_back(val_->path());
    val_.reset();
    val_open_ = false;
  }
  void close_train() {
    train_->close();
    written_.push_back(train_->path());
    train_.reset();
  }

  const TokenizeOptions& o_;
  bool u32_;
  TokenizeStats& st_;
  bool val_open_ = false;
  std::unique_ptr<ShardWriter> val_, train_;
  int next_index_ = 1;
  std::vector<std::string> written_;
};

}  // namespace

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

  fs::create_directories(o.out_dir, ec);
  if (!fs::is_directory(o.out_dir)) throw InputError(o.out_dir + ": cannot create output directory: " + ec.message());
  auto old = existing_shards(o.out_dir, o.name);
  if (!old.empty()) {
    if (!o.overwrite)
      throw InputError(o.out_dir + " already holds " + std::to_string(old.size()) + " shard(s) named '" + o.name +
                       "' (" + old.front() + ", ...); pass --overwrite to replace them");
    for (const auto& p : old) fs::remove(p, ec);
  }

  TokenizeStats st;
  st.token_bytes = tok->vocab_size() <= 65536 ? 2 : 4;
  int workers = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  ShardSink sink(o, st.token_bytes == 4, st);
  try {
    Pipeline pipe(*tok, files, o, workers);
    auto last_log = Clock::now();
    int bad_logged = 0;
    while (auto b = pipe.next()) {
      for (const auto& msg : b->bad) {
        if (!o.skip_bad) throw InputError(msg + " (pass --skip-bad to skip bad records)");
        if (bad_logged++ < 10) spdlog::warn("skipping {}", msg);
      }
      st.bad_records += b->bad.size();
      st.empty_docs += b->empty;
      st.text_bytes += b->text_bytes;
      size_t begin = 0;
      for (size_t end : b->doc_ends) {
        sink.document(b->tokens.data() + begin, end - begin);
        begin = end;
      }
      st.docs += b->doc_ends.size();
      if (o.progress && std::chrono::duration<double>(Clock::now() - last_log).count() > 10) {
        last_log = Clock::now();
        double s = std::chrono::duration<double>(last_log - t0).count();
        spdlog::info("tokenize: {} documents, {:.1f} MB of text, {} tokens, {:.1f} MB/s", st.docs, st.text_bytes / 1e6,
                     st.val_tokens + st.train_tokens, st.text_bytes / 1e6 / s);
      }
    }
    st.files = pipe.files_read();
    sink.finish();
  } catch (...) {
    if (!sink.written().empty())
      spdlog::warn("tokenize failed: removing the {} shard(s) this run had written", sink.written().size());
    sink.discard();
    throw;
  }
  st.shards = sink.written();
  st.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return st;
}

}  // namespace llmtrain
