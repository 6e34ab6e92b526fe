// The training data loader (DESIGN.md section 6). It turns llm.c token shards into a global stream of
// rows, each T+1 tokens giving T inputs and T shifted targets:
//   packed   - windows of T+1 tokens starting at multiples of T within each shard (llm.c / nanoGPT);
//   document - one document per row (a run of tokens starting with the delimiter token), truncated
//              to T+1 tokens or padded: padded inputs hold the delimiter, padded targets are -1
//              (ignored by the loss). The GaLore / RMNP C4 setup.
// With shuffle, each epoch visits the shards in an order permuted by (seed, epoch) and the rows of
// each shard in an order permuted by (seed, epoch, shard): a two-level shuffle, so only one shard's
// row permutation and document index live in memory. The permutations use our own splitmix64
// Fisher-Yates (not std::shuffle, whose results differ between standard libraries), so a given seed
// gives the same data order on every machine.
// Data parallel: each next_batch() consumes B*world rows of the global stream and rank r gets rows
// [r*B, (r+1)*B) of them, so 1 rank x 2B and 2 ranks x B see the same rows per step. The position
// (state()) is global, hence identical on every rank; load_state() restores it exactly.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmtrain/shard.h"

namespace llmtrain {

struct LoaderOptions {
  std::vector<std::string> files;  // shard paths (see resolve_shards)
  std::string mode = "packed";     // "packed" or "document"
  int B = 0, T = 0;                // rows per rank per call, tokens per row
  uint64_t seed = 0;
  bool shuffle = true;
  int rank = 0, world = 1;
  int32_t delimiter = 50256;  // document delimiter token (GPT-2 EOT; SentencePiece BOS)
  int32_t vocab_limit = 0;    // > 0: every token must be < vocab_limit, else InputError naming shard and offset
};

class DataLoader {
 public:
  explicit DataLoader(LoaderOptions opts);

  // Fills this rank's B x T inputs and targets (row-major; target -1 = ignored).
  void next_batch(int32_t* inputs, int32_t* targets);

  // The exact stream position plus the options it depends on; load_state() checks those options
  // against this loader's and throws InputError naming every difference.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);

  void reset();  // back to the start of epoch 0 (validation passes)

  uint64_t total_tokens() const { return total_tokens_; }
  int64_t epoch() const { return epoch_; }
  const LoaderOptions& options() const { return opts_; }

 private:
  uint64_t shard_rows(size_t shard);  // packed: from the header; document: indexes the shard
  void enter_shard();                 // prepares the row order of order_[shard_pos_] for this epoch
  void settle();                      // moves the cursor past exhausted or empty shards
  void begin_epoch(int64_t epoch);
  void skip_rows(uint64_t n);
  void read_row(int32_t* inputs, int32_t* targets);
  void check_vocab(const ShardView& s, uint64_t start, size_t n) const;
  void index_documents(size_t shard);
  uint64_t fingerprint() const;

  LoaderOptions opts_;
  bool mode_doc_ = false;
  std::vector<ShardView> shards_;
  uint64_t total_tokens_ = 0;
  std::vector<int32_t> row_buf_;

  // Position: epoch, index into this epoch's shard order, index into that shard's row order.
  int64_t epoch_ = 0;
  uint64_t shard_pos_ = 0, row_pos_ = 0;
  std::vector<uint32_t> order_;      // shard visiting order of the current epoch
  int64_t prepared_epoch_ = -1;      // (epoch, shard) whose row order perm_ holds
  int64_t prepared_shard_ = -1;
  uint64_t cur_rows_ = 0;            // rows in the prepared shard
  std::vector<uint64_t> perm_;       // row order of the prepared shard (empty = sequential)
  int64_t doc_shard_ = -1;           // shard whose document starts doc_starts_ holds
  std::vector<uint64_t> doc_starts_;
};

}  // namespace llmtrain
