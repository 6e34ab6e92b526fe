// DataLoader: a cursor (epoch, position in the epoch's shard order, position in the shard's row
// order) over memory-mapped shards. The cursor is always "settled" on a readable row, so state() can
// be saved at any call boundary and load_state() can check it exactly. Rows are packed windows or
// documents; only the shard under the cursor has its row permutation (and, in document mode, its
// document start offsets, 8 bytes per document) in memory, which keeps 100 GB datasets cheap.
//
// Shuffling is defined here, not by the standard library, so a seed means the same order everywhere:
//   key(shards)    = mix(mix(seed, 0x5348), epoch)
//   key(rows of s) = mix(mix(mix(seed, 0x524f), epoch), s)       (s = index of the shard in `files`)
// where mix(a, b) = splitmix64 applied to a ^ (b * 0xD6E8FEB86659FD93). A permutation of n items is
// Fisher-Yates from the back, i = n-1 .. 1, swapping i with j = bounded(i + 1), drawing from the
// splitmix64 stream seeded with the key; bounded(m) rejects draws below 2^64 mod m and returns
// draw mod m, which is exactly uniform.
#include "llmtrain/data.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "llmtrain/error.h"

namespace llmtrain {
namespace {

using nlohmann::json;

constexpr int kStateVersion = 1;
// Shards up to this many tokens in total are checked against vocab_limit when the loader opens
// (a fraction of a second); larger datasets are checked row by row as they are read.
constexpr uint64_t kEagerVocabCheckTokens = 1ull << 28;

uint64_t splitmix_next(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t s = a ^ (b * 0xD6E8FEB86659FD93ull);
  return splitmix_next(s);
}

// Uniform in [0, m), m > 0, without modulo bias.
uint64_t bounded(uint64_t& s, uint64_t m) {
  const uint64_t threshold = (0 - m) % m;  // 2^64 mod m
  for (;;) {
    const uint64_t r = splitmix_next(s);
    if (r >= threshold) return r % m;
  }
}

template <typename V>
void permute(std::vector<V>& v, uint64_t key) {
  uint64_t s = key;
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(bounded(s, i));
    std::swap(v[i - 1], v[j]);
  }
}

std::string basename_of(const std::string& p) { return std::filesystem::path(p).filename().string(); }

}  // namespace

DataLoader::DataLoader(LoaderOptions opts) : opts_(std::move(opts)) {
  if (opts_.mode != "packed" && opts_.mode != "document")
    throw InputError("data.mode: unknown mode '" + opts_.mode + "' (expected packed or document)");
  mode_doc_ = opts_.mode == "document";
  if (opts_.B <= 0 || opts_.T <= 0)
    throw InputError("data loader: B and T must be positive, got B=" + std::to_string(opts_.B) +
                     " T=" + std::to_string(opts_.T));
  if (opts_.world <= 0 || opts_.rank < 0 || opts_.rank >= opts_.world)
    throw InputError("data loader: rank " + std::to_string(opts_.rank) + " is not in [0, world=" +
                     std::to_string(opts_.world) + ")");
  if (opts_.files.empty()) throw InputError("data loader: no shard files given");
  if (opts_.delimiter < 0 || (opts_.vocab_limit > 0 && opts_.delimiter >= opts_.vocab_limit))
    throw InputError("data.delimiter: " + std::to_string(opts_.delimiter) + " is not a valid token id" +
                     (opts_.vocab_limit > 0 ? " for vocab size " + std::to_string(opts_.vocab_limit) : std::string()));

  if (opts_.files.size() > UINT32_MAX) throw InputError("data loader: too many shards");
  shards_.reserve(opts_.files.size());
  for (const auto& f : opts_.files) {
    shards_.emplace_back(f);
    total_tokens_ += shards_.back().size();
  }

  bool any_rows = false;
  uint64_t largest = 0;
  for (const auto& s : shards_) {
    largest = std::max<uint64_t>(largest, s.size());
    any_rows |= mode_doc_ ? s.size() > 0 : s.size() >= static_cast<uint64_t>(opts_.T) + 1;
  }
  if (!any_rows) {
    throw InputError(opts_.files.front() + (opts_.files.size() > 1 ? " (and " + std::to_string(opts_.files.size() - 1) + " more)" : "") +
                     ": no " + (mode_doc_ ? "documents" : "windows") + ": the largest shard has " +
                     std::to_string(largest) + " tokens" +
                     (mode_doc_ ? std::string() : " but a window needs T+1 = " + std::to_string(opts_.T + 1)));
  }
  if (opts_.vocab_limit > 0 && total_tokens_ <= kEagerVocabCheckTokens)
    for (const auto& s : shards_) check_vocab(s, 0, s.size());

  row_buf_.resize(static_cast<size_t>(opts_.T) + 1);
  begin_epoch(0);
  settle();
  spdlog::debug("data loader: {} shards, {} tokens, mode {}, B={} T={} rank {}/{}", shards_.size(), total_tokens_,
                opts_.mode, opts_.B, opts_.T, opts_.rank, opts_.world);
}

void DataLoader::check_vocab(const ShardView& s, uint64_t start, size_t n) const {
  if (opts_.vocab_limit <= 0) return;
  const uint32_t limit = static_cast<uint32_t>(opts_.vocab_limit);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t t = s.token(start + i);
    if (t >= limit)
      throw InputError(s.path() + ": token id " + std::to_string(t) + " at token offset " + std::to_string(start + i) +
                       " is >= vocab_limit " + std::to_string(opts_.vocab_limit) +
                       " (the model's vocab_size; was the shard made with another tokenizer?)");
  }
}

void DataLoader::index_documents(size_t shard) {
  if (doc_shard_ == static_cast<int64_t>(shard)) return;
  const ShardView& s = shards_[shard];
  doc_starts_.clear();
  doc_starts_.shrink_to_fit();
  const uint64_t n = s.size();
  // A shard may begin mid-document (writers split the stream at size limits): that tail is a row too.
  if (n > 0) doc_starts_.push_back(0);
  const uint32_t delim = static_cast<uint32_t>(opts_.delimiter);
  for (uint64_t i = 1; i < n; ++i)
    if (s.token(i) == delim) doc_starts_.push_back(i);
  doc_shard_ = static_cast<int64_t>(shard);
}

uint64_t DataLoader::shard_rows(size_t shard) {
  if (mode_doc_) {
    index_documents(shard);
    return doc_starts_.size();
  }
  const uint64_t n = shards_[shard].size(), T = static_cast<uint64_t>(opts_.T);
  return n >= T + 1 ? (n - 1) / T : 0;
}

void DataLoader::begin_epoch(int64_t epoch) {
  epoch_ = epoch;
  order_.resize(shards_.size());
  std::iota(order_.begin(), order_.end(), 0u);
  if (opts_.shuffle) permute(order_, mix(mix(opts_.seed, 0x5348), static_cast<uint64_t>(epoch)));
  shard_pos_ = 0;
  row_pos_ = 0;
}

void DataLoader::enter_shard() {
  const uint32_t s = order_[shard_pos_];
  if (prepared_epoch_ == epoch_ && prepared_shard_ == static_cast<int64_t>(s)) return;
  cur_rows_ = shard_rows(s);
  perm_.clear();
  if (opts_.shuffle && cur_rows_ > 1) {
    perm_.resize(cur_rows_);
    std::iota(perm_.begin(), perm_.end(), uint64_t{0});
    permute(perm_, mix(mix(mix(opts_.seed, 0x524f), static_cast<uint64_t>(epoch_)), s));
  }
  prepared_epoch_ = epoch_;
  prepared_shard_ = s;
}

void DataLoader::settle() {
  // Terminates: the constructor checked that some shard has at least one row.
  for (;;) {
    if (shard_pos_ >= order_.size()) {
      begin_epoch(epoch_ + 1);
      continue;
    }
    enter_shard();
    if (row_pos_ < cur_rows_) return;
    ++shard_pos_;
    row_pos_ = 0;
  }
}

void DataLoader::skip_rows(uint64_t n) {
  while (n > 0) {
    const uint64_t avail = cur_rows_ - row_pos_;
    if (n < avail) {
      row_pos_ += n;
      return;
    }
    n -= avail;
    row_pos_ = cur_rows_;
    settle();
  }
}

void DataLoader::read_row(int32_t* inputs, int32_t* targets) {
  const uint32_t s = order_[shard_pos_];
  const ShardView& shard = shards_[s];
  const uint64_t r = perm_.empty() ? row_pos_ : perm_[row_pos_];
  const size_t T = static_cast<size_t>(opts_.T);
  if (!mode_doc_) {
    const uint64_t start = r * T;
    check_vocab(shard, start, T + 1);
    shard.copy(start, T + 1, row_buf_.data());
    std::copy(row_buf_.begin(), row_buf_.begin() + T, inputs);
    std::copy(row_buf_.begin() + 1, row_buf_.begin() + T + 1, targets);
  } else {
    const uint64_t start = doc_starts_[r];
    const uint64_t end = r + 1 < doc_starts_.size() ? doc_starts_[r + 1] : shard.size();
    const size_t len = static_cast<size_t>(std::min<uint64_t>(end - start, T + 1));
    check_vocab(shard, start, len);
    shard.copy(start, len, row_buf_.data());
    for (size_t i = 0; i < T; ++i) {
      inputs[i] = i < len ? row_buf_[i] : opts_.delimiter;
      targets[i] = i + 1 < len ? row_buf_[i + 1] : -1;
    }
  }
  ++row_pos_;
  settle();
}

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  const uint64_t B = static_cast<uint64_t>(opts_.B);
  const size_t T = static_cast<size_t>(opts_.T);
  skip_rows(static_cast<uint64_t>(opts_.rank) * B);
  for (uint64_t b = 0; b < B; ++b) read_row(inputs + b * T, targets + b * T);
  skip_rows(static_cast<uint64_t>(opts_.world - 1 - opts_.rank) * B);
}

void DataLoader::reset() {
  begin_epoch(0);
  settle();
}

uint64_t DataLoader::fingerprint() const {
  // FNV-1a over each shard's token width and count: catches a changed dataset, not a moved one.
  uint64_t h = 1469598103934665603ull;
  auto feed = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (const auto& s : shards_) {
    feed(static_cast<uint64_t>(s.info().token_bytes));
    feed(s.size());
  }
  return h;
}

json DataLoader::state() const {
  char fp[17];
  std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(fingerprint()));
  return json{{"version", kStateVersion},
              {"mode", opts_.mode},
              {"seed", opts_.seed},
              {"shuffle", opts_.shuffle},
              {"B", opts_.B},
              {"T", opts_.T},
              {"world", opts_.world},
              {"num_shards", shards_.size()},
              {"total_tokens", total_tokens_},
              {"fingerprint", fp},
              {"epoch", epoch_},
              {"shard_pos", shard_pos_},
              {"row_pos", row_pos_},
              {"shard_file", basename_of(opts_.files[order_[shard_pos_]])}};  // for people reading state.json
}

void DataLoader::load_state(const json& st) {
  if (!st.is_object()) throw InputError("loader state: expected a JSON object, got " + std::string(st.type_name()));
  const json now = state();
  for (const char* k : {"version", "mode", "seed", "shuffle", "B", "T", "world", "num_shards", "total_tokens",
                        "fingerprint", "epoch", "shard_pos", "row_pos"})
    if (!st.contains(k)) throw InputError(std::string("loader state: missing field '") + k + "'");
  std::string diffs;
  for (const char* k : {"version", "mode", "seed", "shuffle", "B", "T", "world", "num_shards", "total_tokens",
                        "fingerprint"}) {
    if (st[k] != now[k]) diffs += std::string(diffs.empty() ? "" : "; ") + k + " " + st[k].dump() + " (checkpoint) vs " +
                                  now[k].dump() + " (now)";
  }
  if (!diffs.empty()) throw InputError("loader state does not match this run: " + diffs);
  for (const char* k : {"epoch", "shard_pos", "row_pos"})
    if (!st[k].is_number_integer() || st[k].get<int64_t>() < 0)
      throw InputError(std::string("loader state: bad ") + k + " " + st[k].dump());
  const int64_t epoch = st["epoch"].get<int64_t>();
  const uint64_t shard_pos = st["shard_pos"].get<uint64_t>(), row_pos = st["row_pos"].get<uint64_t>();
  if (shard_pos >= shards_.size())
    throw InputError("loader state: shard_pos " + std::to_string(shard_pos) + " out of range (" +
                     std::to_string(shards_.size()) + " shards)");
  begin_epoch(epoch);
  shard_pos_ = shard_pos;
  enter_shard();
  if (row_pos >= cur_rows_) {
    const std::string msg = "loader state: row_pos " + std::to_string(row_pos) + " out of range (shard " +
                            opts_.files[order_[shard_pos]] + " has " + std::to_string(cur_rows_) + " rows)";
    reset();  // leave the loader in a valid position before reporting
    throw InputError(msg);
  }
  row_pos_ = row_pos;
}

}  // namespace llmtrain
