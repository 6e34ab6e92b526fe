// Token shards in the llm.c format (DESIGN.md section 6): a 256 x int32 header ([0] magic, [1]
// version, [2] token count) followed by the tokens, uint16 (magic 20240520, version 1) or uint32
// (magic 20240801, version 7), little-endian. Readers check the header and the exact file size so a
// half-written or foreign file is reported instead of silently training on garbage; ShardView maps
// the file read-only so datasets far larger than RAM cost only page cache. ShardWriter is what the
// tokenizer uses: it writes to `<path>.tmp` and renames only once the shard is complete and on disk.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace llmtrain {

constexpr int32_t kShardMagicU16 = 20240520;
constexpr int32_t kShardVersionU16 = 1;
constexpr int32_t kShardMagicU32 = 20240801;
constexpr int32_t kShardVersionU32 = 7;
constexpr size_t kShardHeaderInts = 256;
constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);

struct ShardInfo {
  std::string path;
  int version = 0;      // 1 (uint16 tokens) or 7 (uint32 tokens)
  int token_bytes = 0;  // 2 or 4
  uint64_t num_tokens = 0;
};

// Reads and validates the header of one shard: magic, version, and that the file is exactly
// header + count * token_bytes long. InputError naming the file on any mismatch.
ShardInfo read_shard_header(const std::string& path);

// A read-only memory map of one validated shard. Move-only; unmapped on destruction.
class ShardView {
 public:
  explicit ShardView(const std::string& path);
  ~ShardView();
  ShardView(ShardView&& o) noexcept;
  ShardView& operator=(ShardView&& o) noexcept;
  ShardView(const ShardView&) = delete;
  ShardView& operator=(const ShardView&) = delete;

  const ShardInfo& info() const { return info_; }
  const std::string& path() const { return info_.path; }
  uint64_t size() const { return info_.num_tokens; }
  // Token i (unchecked: callers index within size()).
  uint32_t token(uint64_t i) const {
    return info_.token_bytes == 2 ? static_cast<const uint16_t*>(tokens_)[i] : static_cast<const uint32_t*>(tokens_)[i];
  }
  // Copies tokens [start, start + n) to dst as int32 (unchecked range, like token()).
  void copy(uint64_t start, size_t n, int32_t* dst) const;

 private:
  void release();
  ShardInfo info_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const void* tokens_ = nullptr;
};

// Streams token ids into a new shard. Nothing appears at `path` until close() succeeds: the data
// goes to `path.tmp`, the header count is rewritten, the file is fsynced and renamed atomically.
// A writer destroyed without close() (an exception upstream) removes its temp file.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, bool uint32_tokens);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends n ids; each must fit the token width (0..65535 for uint16) or InputError.
  void write(const int32_t* ids, size_t n);
  void close();
  uint64_t count() const { return count_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_path_;
  bool uint32_;
  std::FILE* f_ = nullptr;
  uint64_t count_ = 0;
  std::vector<unsigned char> buf_;
};

// Expands a glob pattern (`data/demo/demo_train_*.bin`) or a single file name into a sorted list of
// shard paths. InputError naming `what` (e.g. "data.train") and the pattern when nothing matches.
std::vector<std::string> resolve_shards(const std::string& pattern, const std::string& what);

}  // namespace llmtrain
