// `llmtrain inspect SHARD...`: what is inside llm.c token shards: header, file-size check, number of
// documents (delimiter tokens), token range against the vocabulary, and the first tokens decoded.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "cli/commands.h"
#include "llmtrain/error.h"
#include "llmtrain/shard.h"
#include "llmtrain/tokenizer.h"

namespace llmtrain::cli {
namespace {

// Prints the raw header and size check; returns what is wrong with the file ("" if nothing).
std::string print_header(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError(path + ": " + std::strerror(errno));
  int32_t hdr[kShardHeaderInts] = {};
  size_t got = std::fread(hdr, 1, kShardHeaderBytes, f);
  std::fclose(f);
  struct stat st;
  ::stat(path.c_str(), &st);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::printf("%s\n", path.c_str());
  if (got < kShardHeaderBytes) {
    std::printf("  file:      %llu bytes, shorter than the %zu-byte header\n", (unsigned long long)size, kShardHeaderBytes);
    return "truncated shard: shorter than the header";
  }
  int width = hdr[0] == kShardMagicU16 && hdr[1] == kShardVersionU16   ? 2
              : hdr[0] == kShardMagicU32 && hdr[1] == kShardVersionU32 ? 4
                                                                       : 0;
  std::printf("  header:    magic %d, version %d (%s), %d tokens\n", hdr[0], hdr[1],
              width == 2 ? "uint16 tokens" : width == 4 ? "uint32 tokens" : "UNKNOWN magic/version", hdr[2]);
  if (!width) return "not a shard: magic " + std::to_string(hdr[0]) + ", version " + std::to_string(hdr[1]);
  const uint64_t expect = kShardHeaderBytes + static_cast<uint64_t>(std::max(hdr[2], 0)) * width;
  std::printf("  file:      %llu bytes, expected %zu + %d x %d = %llu: %s\n", (unsigned long long)size, kShardHeaderBytes,
              hdr[2], width, (unsigned long long)expect,
              size == expect ? "ok" : size < expect ? "TRUNCATED" : "OVERSIZED");
  if (hdr[2] < 0) return "bad token count " + std::to_string(hdr[2]);
  if (size != expect)
    return std::string(size < expect ? "truncated" : "oversized") + " shard: " + std::to_string(size) + " bytes, expected " +
           std::to_string(expect);
  return "";
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
  struct Opts {
    std::vector<std::string> shards;
    std::string tokenizer = "gpt2";
    int tokens = 200;
    int64_t delimiter = -1;
    bool ids = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("inspect", "Show what is inside llm.c token shards");
  sub->footer(
      "Exit code 2 (with the first problem on stderr) when a shard's header or size is wrong or a token\n"
      "is outside the tokenizer's vocabulary.\n\n"
      "Examples:\n"
      "  llmtrain inspect data/demo/demo_val_000000.bin\n"
      "  llmtrain inspect data/demo/*.bin --tokens 0            # headers and counts only\n"
      "  llmtrain inspect shard.bin --tokenizer llama.model --ids\n"
      "  llmtrain inspect shard.bin --tokenizer none            # no decoding (ids only)");
  sub->add_option("shards", o->shards, "Shard files")->required();
  sub->add_option("--tokenizer", o->tokenizer, "gpt2, a GPT-2 vocabulary directory, a SentencePiece .model, or none")
      ->capture_default_str();
  sub->add_option("--tokens", o->tokens, "Tokens to decode from the start of each shard")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  sub->add_option("--delimiter", o->delimiter, "Document delimiter id (default: the tokenizer's; 50256 without one)");
  sub->add_flag("--ids", o->ids, "Also print the sampled token ids");
  return {sub, [o]() {
            std::unique_ptr<Tokenizer> tok;
            if (o->tokenizer != "none") tok = load_tokenizer(o->tokenizer);
            const int64_t delim = o->delimiter >= 0 ? o->delimiter : tok ? tok->doc_delimiter() : 50256;
            std::vector<std::string> problems;
            for (size_t si = 0; si < o->shards.size(); ++si) {
              const std::string& path = o->shards[si];
              if (si) std::printf("\n");
              std::string problem = print_header(path);
              if (!problem.empty()) {
                problems.push_back(path + ": " + problem);
                continue;
              }
              ShardView v(path);
              const uint64_t n = v.size();
              uint64_t docs = 0;
              uint32_t lo = UINT32_MAX, hi = 0;
              for (uint64_t i = 0; i < n; ++i) {
                uint32_t t = v.token(i);
                docs += t == static_cast<uint64_t>(delim);
                lo = std::min(lo, t);
                hi = std::max(hi, t);
              }
              std::printf("  documents: %llu (tokens equal to delimiter %lld)%s\n", (unsigned long long)docs, (long long)delim,
                          n == 0 ? "" : v.token(0) == delim ? "; starts with the delimiter" : "; starts mid-document");
              if (n) {
                std::printf("  tokens:    min %u, max %u", lo, hi);
                if (tok) {
                  std::printf(" (vocabulary %d: %s)", tok->vocab_size(),
                              hi < static_cast<uint32_t>(tok->vocab_size()) ? "ok" : "OUT OF RANGE");
                  if (hi >= static_cast<uint32_t>(tok->vocab_size()))
                    problems.push_back(path + ": token " + std::to_string(hi) + " is outside the " + tok->name() +
                                       " vocabulary (" + std::to_string(tok->vocab_size()) + ")");
                }
                std::printf(", mean document %.1f tokens\n", docs ? double(n) / docs : double(n));
              }
              const size_t k = static_cast<size_t>(std::min<uint64_t>(n, static_cast<uint64_t>(o->tokens)));
              if (k == 0) continue;
              std::vector<int32_t> ids(k);
              v.copy(0, k, ids.data());
              if (o->ids || !tok) {
                std::printf("  ids[0:%zu]:", k);
                for (int32_t id : ids) std::printf(" %d", id);
                std::printf("\n");
              }
              if (tok) {
                std::printf("  text[0:%zu tokens] (%s):\n", k, tok->name().c_str());
                std::string text = tok->decode(ids);
                std::printf("%s\n", text.c_str());
              }
            }
            if (!problems.empty()) {
              std::fflush(stdout);
              std::string more = problems.size() > 1 ? " (and " + std::to_string(problems.size() - 1) + " more)" : "";
              throw InputError(problems.front() + more);
            }
            return 0;
          }};
}

}  // namespace llmtrain::cli
