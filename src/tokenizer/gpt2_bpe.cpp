// GPT-2 byte-level BPE: OpenAI's encoder.json + vocab.bpe, encoding ids identical to tiktoken's
// "gpt2" encoding. Text is split by the GPT-2 pre-tokenizer (pretokenize.h); each piece that is
// itself a token is looked up directly, the rest are merged byte by byte, always joining the
// adjacent pair whose concatenation is the lowest-ranked token (leftmost on ties), which is
// tiktoken's rule. Merged pieces are cached per thread. Bytes that are not valid UTF-8 are encoded
// as bytes, so decode(encode(x)) == x for any byte string.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "llmtrain/error.h"
#include "llmtrain/tokenizer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/specials.h"

namespace llmtrain {
namespace {

constexpr int32_t kNoRank = std::numeric_limits<int32_t>::max();
// Pieces longer than this use the heap-based merge loop (n log n) instead of the quadratic scan.
constexpr size_t kLongPiece = 96;

// GPT-2's reversible byte -> printable code point map used in encoder.json / vocab.bpe: printable
// Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 upwards in byte order.
std::vector<uint32_t> byte_to_code_point() {
  std::vector<uint32_t> m(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    m[b] = printable ? b : next++;
  }
  return m;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Decodes a vocabulary string in GPT-2's printable form back to raw bytes; false if it contains a
// character outside the 256 that the map produces.
bool unmap_token(const std::string& s, const std::vector<int>& cp_to_byte, std::string* out) {
  out->clear();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    if (p[i] < 0x80) {
      cp = p[i++];
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
      i += 2;
    } else {
      return false;  // every mapped code point is below U+0800
    }
    if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0) return false;
    out->push_back(static_cast<char>(cp_to_byte[cp]));
  }
  return true;
}

inline uint64_t hash_bytes(const unsigned char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

// Per-thread cache of merged pieces: piece bytes -> ids. Bounded; cleared when full. `owner` is the
// serial number of the tokenizer that filled it, so two tokenizers never share entries.
struct PieceCache {
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, key_len = 0, val_off = 0, val_len = 0;
    bool used = false;
  };
  static constexpr size_t kSlots = 1 << 15;
  static constexpr size_t kMaxEntries = kSlots / 2;
  static constexpr size_t kMaxKeyLen = 64;  // longer pieces are rare and not worth keeping
  uint64_t owner = 0;
  size_t entries = 0;
  std::vector<Slot> slots;
  std::string keys;
  std::vector<int32_t> vals;

  void reset(uint64_t new_owner) {
    owner = new_owner;
    entries = 0;
    slots.assign(kSlots, Slot{});
    keys.clear();
    vals.clear();
  }
  const Slot* find(const unsigned char* p, size_t n, uint64_t h) const {
    for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      const Slot& s = slots[i];
      if (!s.used) return nullptr;
      if (s.hash == h && s.key_len == n && std::memcmp(keys.data() + s.key_off, p, n) == 0) return &s;
    }
  }
  void insert(const unsigned char* p, size_t n, uint64_t h, const int32_t* ids, size_t m) {
    if (n > kMaxKeyLen) return;
    if (entries >= kMaxEntries) reset(owner);
    size_t i = h & (kSlots - 1);
    while (slots[i].used) i = (i + 1) & (kSlots - 1);
    Slot& s = slots[i];
    s.used = true;
    s.hash = h;
    s.key_off = static_cast<uint32_t>(keys.size());
    s.key_len = static_cast<uint32_t>(n);
    s.val_off = static_cast<uint32_t>(vals.size());
    s.val_len = static_cast<uint32_t>(m);
    keys.append(reinterpret_cast<const char*>(p), n);
    vals.insert(vals.end(), ids, ids + m);
    ++entries;
  }
};

thread_local PieceCache t_cache;
std::atomic<uint64_t> g_serial{1};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(const Gpt2VocabFiles& files);

  std::string name() const override { return "gpt2"; }
  int32_t vocab_size() const override { return static_cast<int32_t>(off_.size() - 1); }
  int32_t doc_delimiter() const override { return eot_; }

  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (!allow_special) {
      encode_ordinary(text, out);
      return out;
    }
    split_on_specials(
        text, specials_, [&](std::string_view seg) { encode_ordinary(seg, out); },
        [&](int32_t id) { out.push_back(id); });
    return out;
  }

  std::string decode(const int32_t* ids, size_t n) const override {
    std::string s;
    s.reserve(n * 4);
    const int32_t V = vocab_size();
    for (size_t i = 0; i < n; ++i) {
      int32_t id = ids[i];
      if (id >= 0 && id < V) {
        s.append(bytes_.data() + off_[id], off_[id + 1] - off_[id]);
      } else {
        // Ids past the vocabulary (a model's padded rows) have no text; show them rather than throw
        // so that sampling from an untrained model still prints.
        s += "<|unk_" + std::to_string(id) + "|>";
      }
    }
    return s;
  }

 private:
  struct Slot {
    uint32_t hash;
    int32_t id;  // -1: empty
  };

  // Id of the ordinary (non-special) token whose bytes are p[0..n), or -1.
  int32_t lookup(const unsigned char* p, size_t n, uint64_t h) const {
    const uint32_t h32 = static_cast<uint32_t>(h);
    for (size_t i = (h >> 32) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = table_[i];
      if (s.id < 0) return -1;
      if (s.hash == h32 && off_[s.id + 1] - off_[s.id] == n && std::memcmp(bytes_.data() + off_[s.id], p, n) == 0)
        return s.id;
    }
  }
  int32_t lookup(const unsigned char* p, size_t n) const { return lookup(p, n, hash_bytes(p, n)); }
  // Merge priority of the token spelled p[0..n): its rank in vocab.bpe, or kNoRank.
  int32_t rank(const unsigned char* p, size_t n) const {
    int32_t id = lookup(p, n);
    return id < 0 ? kNoRank : merge_rank_[id];
  }

  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
    PieceCache& cache = t_cache;
    if (cache.owner != serial_) cache.reset(serial_);
    const auto* base = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t pos = 0; pos < text.size();) {
      const size_t end = gpt2_next_piece(text, pos);
      const unsigned char* p = base + pos;
      const size_t n = end - pos;
      pos = end;
      const uint64_t h = hash_bytes(p, n);
      int32_t id = lookup(p, n, h);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      if (const PieceCache::Slot* s = cache.find(p, n, h)) {
        out.insert(out.end(), cache.vals.begin() + s->val_off, cache.vals.begin() + s->val_off + s->val_len);
        continue;
      }
      const size_t before = out.size();
      if (n <= kLongPiece)
        merge_short(p, n, out);
      else
        merge_long(p, n, out);
      cache.insert(p, n, h, out.data() + before, out.size() - before);
    }
  }

  // tiktoken's merge loop: boundaries start[0..m), rank[i] = rank of the pair (part i, part i+1).
  void merge_short(const unsigned char* p, size_t n, std::vector<int32_t>& out) const {
    uint32_t start[kLongPiece + 1];
    int32_t rk[kLongPiece + 1];
    size_t m = n + 1;
    for (size_t i = 0; i <= n; ++i) start[i] = static_cast<uint32_t>(i);
    for (size_t i = 0; i + 2 < m; ++i) rk[i] = rank(p + i, 2);
    rk[m - 2] = kNoRank;
    // rank of parts i and i+1 joined, if part i+1 reaches start[i + 2]
    auto pair_rank = [&](size_t i) { return i + 2 < m ? rank(p + start[i], start[i + 2] - start[i]) : kNoRank; };
    while (m > 2) {
      size_t best = 0;
      int32_t best_rank = rk[0];
      for (size_t i = 1; i + 1 < m; ++i)
        if (rk[i] < best_rank) {
          best_rank = rk[i];
          best = i;
        }
      if (best_rank == kNoRank) break;
      // Remove boundary best+1, then refresh the two pairs that changed.
      for (size_t i = best + 1; i + 1 < m; ++i) {
        start[i] = start[i + 1];
        rk[i] = rk[i + 1];
      }
      --m;
      rk[best] = pair_rank(best);
      if (best > 0) rk[best - 1] = pair_rank(best - 1);
    }
    for (size_t i = 0; i + 1 < m; ++i) out.push_back(lookup(p + start[i], start[i + 1] - start[i]));
  }

  // The same merge order for long pieces with a heap keyed by (rank, position) and a linked list of
  // parts; stale heap entries are recognised by their rank no longer matching.
  void merge_long(const unsigned char* p, size_t n, std::vector<int32_t>& out) const {
    std::vector<uint32_t> next(n), prev(n);
    std::vector<int32_t> rk(n, kNoRank);
    std::vector<char> alive(n, 1);
    for (size_t i = 0; i < n; ++i) {
      next[i] = static_cast<uint32_t>(i + 1);
      prev[i] = static_cast<uint32_t>(i - 1);  // wraps for i == 0, never read then
    }
    using Entry = std::pair<int32_t, uint32_t>;  // (rank, part start)
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    auto end_of = [&](uint32_t i) -> uint32_t { return next[i]; };  // part i spans [i, next[i])
    auto refresh = [&](uint32_t i) {
      uint32_t j = next[i];
      rk[i] = j < n ? rank(p + i, end_of(j) - i) : kNoRank;
      if (rk[i] != kNoRank) heap.push({rk[i], i});
    };
    for (uint32_t i = 0; i < n; ++i) refresh(i);
    while (!heap.empty()) {
      auto [r, i] = heap.top();
      heap.pop();
      if (!alive[i] || rk[i] != r) continue;
      uint32_t j = next[i];
      alive[j] = 0;
      next[i] = next[j];
      if (next[i] < n) prev[next[i]] = i;
      refresh(i);
      if (i > 0) refresh(prev[i]);
    }
    for (uint32_t i = 0; i < n; i = next[i]) out.push_back(lookup(p + i, next[i] - i));
  }

  uint64_t serial_;
  std::string bytes_;               // all token bytes, concatenated in id order
  std::vector<uint32_t> off_;       // token id -> offset in bytes_ (size V + 1)
  std::vector<int32_t> merge_rank_; // token id -> line of vocab.bpe that makes it, or kNoRank
  std::vector<Slot> table_;         // open addressing: ordinary token bytes -> id
  size_t mask_ = 0;
  std::vector<std::pair<std::string, int32_t>> specials_;
  int32_t eot_ = -1;
};

Gpt2Tokenizer::Gpt2Tokenizer(const Gpt2VocabFiles& files) : serial_(g_serial.fetch_add(1)) {
  const std::string &enc_path = files.encoder, &bpe_path = files.merges;
  const std::vector<uint32_t> b2c = byte_to_code_point();
  std::vector<int> c2b(512, -1);
  for (int b = 0; b < 256; ++b) c2b[b2c[b]] = b;

  nlohmann::json enc;
  try {
    enc = nlohmann::json::parse(read_file(enc_path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(enc_path + ": not valid JSON: " + e.what());
  }
  if (!enc.is_object() || enc.empty()) throw InputError(enc_path + ": expected a JSON object of token -> id");
  const size_t V = enc.size();
  std::vector<std::string> tok(V);
  std::vector<char> seen(V, 0);
  std::string raw;
  for (auto it = enc.begin(); it != enc.end(); ++it) {
    if (!it.value().is_number_integer()) throw InputError(enc_path + ": id of token '" + it.key() + "' is not an integer");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || static_cast<size_t>(id) >= V || seen[id])
      throw InputError(enc_path + ": token '" + it.key() + "' has id " + std::to_string(id) +
                       " (ids must be 0.." + std::to_string(V - 1) + ", each once)");
    seen[id] = 1;
    // Special tokens such as <|endoftext|> are spelled in plain ASCII, which unmaps to itself.
    if (!unmap_token(it.key(), c2b, &raw)) throw InputError(enc_path + ": token '" + it.key() + "' is not in GPT-2's byte alphabet");
    tok[id] = raw;
  }
  off_.resize(V + 1);
  for (size_t id = 0; id < V; ++id) {
    off_[id] = static_cast<uint32_t>(bytes_.size());
    bytes_ += tok[id];
  }
  off_[V] = static_cast<uint32_t>(bytes_.size());

  // Temporary map (bytes -> id) to resolve merges; the fast table is built once specials are known.
  std::unordered_map<std::string, int32_t> by_bytes;
  by_bytes.reserve(V * 2);
  for (size_t id = 0; id < V; ++id) by_bytes.emplace(tok[id], static_cast<int32_t>(id));
  std::vector<char> ordinary(V, 0);
  for (int b = 0; b < 256; ++b) {
    auto it = by_bytes.find(std::string(1, static_cast<char>(b)));
    if (it == by_bytes.end()) throw InputError(enc_path + ": no token for byte " + std::to_string(b));
    ordinary[it->second] = 1;
  }

  merge_rank_.assign(V, kNoRank);
  const std::string bpe = read_file(bpe_path);
  std::istringstream lines(bpe);
  std::string line, a, b;
  int32_t rank = 0;
  size_t line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    size_t sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
      throw InputError(bpe_path + ":" + std::to_string(line_no) + ": expected two tokens separated by one space");
    if (!unmap_token(line.substr(0, sp), c2b, &a) || !unmap_token(line.substr(sp + 1), c2b, &b))
      throw InputError(bpe_path + ":" + std::to_string(line_no) + ": token not in GPT-2's byte alphabet");
    auto it = by_bytes.find(a + b);
    if (it == by_bytes.end())
      throw InputError(bpe_path + ":" + std::to_string(line_no) + ": merge result '" + line + "' is not in encoder.json");
    if (merge_rank_[it->second] == kNoRank) merge_rank_[it->second] = rank;
    ordinary[it->second] = 1;
    ++rank;
  }
  if (rank == 0) throw InputError(bpe_path + ": no merges");

  // Every token that is neither a byte nor made by a merge is special (GPT-2: <|endoftext|> only).
  size_t cap = 1;
  while (cap < V * 3) cap <<= 1;
  table_.assign(cap, Slot{0, -1});
  mask_ = cap - 1;
  for (size_t id = 0; id < V; ++id) {
    if (!ordinary[id]) {
      specials_.emplace_back(tok[id], static_cast<int32_t>(id));
      continue;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(tok[id].data());
    uint64_t h = hash_bytes(p, tok[id].size());
    size_t i = (h >> 32) & mask_;
    while (table_[i].id >= 0) i = (i + 1) & mask_;
    table_[i] = Slot{static_cast<uint32_t>(h), static_cast<int32_t>(id)};
  }
  for (const auto& [s, id] : specials_)
    if (s == "<|endoftext|>") eot_ = id;
  if (eot_ < 0) throw InputError(enc_path + ": no <|endoftext|> token (needed as the document delimiter)");
}

}  // namespace

std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const Gpt2VocabFiles& files) { return std::make_unique<Gpt2Tokenizer>(files); }

}  // namespace llmtrain
