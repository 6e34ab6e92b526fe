// Corpus -> llm.c token shards (the library behind `llmtrain tokenize`). Reads plain text, JSON
// lines and Parquet files, each optionally gzip (.gz) or zstd (.zst) compressed, encodes the
// documents on several threads and writes them, in input order, to
//   <out_dir>/<name>_val_000000.bin    whole documents until it holds at least val_tokens tokens
//   <out_dir>/<name>_train_000001.bin  then the rest, split every shard_tokens tokens
//   <out_dir>/<name>_train_000002.bin  ...
// Every document starts with the tokenizer's delimiter (GPT-2 <|endoftext|>, SentencePiece BOS)
// and ends with doc_end() when the tokenizer has one; a train shard may begin in the middle of a
// document, as llm.c's do. Tokens are uint16 when the vocabulary fits (<= 65536 ids), else uint32.
// The output is the same whatever the thread count. A bad input (malformed JSON line, missing or
// non-string text field, truncated or corrupt compressed stream) stops the run with an InputError
// naming file and line, and removes every shard this run wrote; with skip_bad, bad JSON lines and
// records are counted and skipped instead (a broken compressed stream always stops the run).
// Finished shards are listed, with the input position reached, in <name>_tokenize_progress.json;
// a run that was killed is continued by running the same command again (same options and
// unchanged inputs), giving the same shards as an uninterrupted run. A finished run writes
// <name>_manifest.json (tokenizer, options, counts, sources and shards with SHA-256) and removes
// the progress file.
#pragma once
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "llmtrain/tokenizer.h"

namespace llmtrain {

struct TokenizeOptions {
  std::vector<std::string> inputs;  // files, directories (all regular files below, sorted) or globs
  std::string out_dir;
  std::string name = "data";        // shard name prefix
  std::string tokenizer = "gpt2";   // see load_tokenizer()
  SentencePieceOptions sentencepiece;  // used when `tokenizer` is a SentencePiece model
  std::string format = "auto";      // auto (by extension), text, jsonl or parquet
  std::string text_field = "text";  // jsonl / parquet column holding the document
  // Plain text: split each file into documents at every occurrence of this string; empty = the
  // whole file is one document.
  std::string doc_separator;
  uint64_t val_tokens = 0;                 // 0 = no validation shard
  uint64_t shard_tokens = 100'000'000;     // train shard size
  int threads = 0;                         // 0 = all hardware threads
  bool skip_bad = false;
  bool overwrite = false;  // replace existing <name>_{val,train}_*.bin in out_dir (else InputError)
  int64_t max_docs = -1;   // stop after this many documents (-1 = all)
  bool progress = true;    // progress bar on a terminal (else a log line every 30 s)
  // Tests only: after this many finished shards, stop as a kill would (throws TokenizeInterrupted,
  // leaving the finished shards and the progress file for a rerun). -1 = never.
  int64_t interrupt_after_shards = -1;
};

// Thrown by tokenize_corpus() when TokenizeOptions::interrupt_after_shards is reached.
struct TokenizeInterrupted : std::exception {
  const char* what() const noexcept override { return "tokenize: interrupted (test hook)"; }
};

struct TokenizeStats {
  uint64_t files = 0;
  uint64_t docs = 0;          // documents written
  uint64_t empty_docs = 0;    // empty documents (not written)
  uint64_t bad_records = 0;   // skipped with skip_bad
  uint64_t text_bytes = 0;    // bytes of document text encoded
  uint64_t val_tokens = 0, train_tokens = 0;  // including delimiters
  int token_bytes = 2;
  std::vector<std::string> shards;  // paths written, val first
  double seconds = 0;
  std::string manifest;             // path of the JSON manifest
  bool resumed = false;             // continued an interrupted run
  uint64_t resumed_tokens = 0;      // tokens that were already in finished shards then
};

TokenizeStats tokenize_corpus(const TokenizeOptions& opts);

// Shard file names, so that callers and tests agree with the writer.
std::string val_shard_path(const std::string& out_dir, const std::string& name);
std::string train_shard_path(const std::string& out_dir, const std::string& name, int index);
// <out_dir>/<name>_manifest.json: tokenizer, options, counts, sources and shards with SHA-256.
std::string manifest_path(const std::string& out_dir, const std::string& name);

}  // namespace llmtrain
