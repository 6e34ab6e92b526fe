// `llmtrain tokenize INPUT... --out DIR`: text corpora to llm.c token shards. A thin layer over
// tokenize_corpus() (tools/tokenize.h): option parsing, size suffixes, separator escapes and
// the closing report.
#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdio>

#include "cli/commands.h"
#include "llmtrain/error.h"
#include "tools/tokenize.h"

namespace llmtrain::cli {
namespace {

// "100M", "1.5G", "250k", "100000" -> a token count.
uint64_t parse_count(const std::string& flag, const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw InputError(flag + ": '" + s + "' is not a number");
  }
  std::string suffix = s.substr(used);
  double mult = 1;
  if (suffix == "k" || suffix == "K") mult = 1e3;
  else if (suffix == "M" || suffix == "m") mult = 1e6;
  else if (suffix == "G" || suffix == "g") mult = 1e9;
  else if (!suffix.empty()) throw InputError(flag + ": '" + s + "': unknown suffix (use k, M or G)");
  if (v < 0) throw InputError(flag + ": '" + s + "' is negative");
  return static_cast<uint64_t>(v * mult + 0.5);
}

// Backslash escapes in --doc-separator: \n \r \t \\ .
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    if (c == 'n') out += '\n';
    else if (c == 'r') out += '\r';
    else if (c == 't') out += '\t';
    else if (c == '\\') out += '\\';
    else throw InputError("--doc-separator: unknown escape '\\" + std::string(1, c) + "' (\\n, \\r, \\t, \\\\)");
  }
  return out;
}

}  // namespace

Command add_tokenize_command(CLI::App& app) {
  struct Opts {
    TokenizeOptions t;
    std::string val_tokens = "0", shard_tokens = "100M", separator;
    bool eos = false, no_bos = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("tokenize", "Tokenize text / jsonl / Parquet corpora into llm.c token shards");
  sub->footer(
      "Inputs: .txt (one document per file, or split with --doc-separator), .jsonl/.json/.ndjson (one\n"
      "JSON object per line, text in --text-field), .parquet (column --text-field); .gz and .zst\n"
      "compressed text and jsonl are read as streams. Directories are read recursively, in sorted order.\n"
      "Output: OUT/NAME_val_000000.bin (the first documents, at least --val-tokens tokens) and\n"
      "OUT/NAME_train_000001.bin, ... (--shard-tokens each). Every document starts with the delimiter\n"
      "(GPT-2 <|endoftext|> 50256, SentencePiece BOS). OUT/NAME_manifest.json lists tokenizer, counts,\n"
      "sources and shards with SHA-256. An interrupted run (killed, Ctrl-C) continues where it stopped\n"
      "when the same command is run again; --overwrite starts over.\n\n"
      "Examples:\n"
      "  llmtrain tokenize corpus.jsonl.zst --out data/mycorpus --name mycorpus --val-tokens 10M\n"
      "  llmtrain tokenize books/ --out data/books --doc-separator '\\n\\n\\n' --shard-tokens 50M\n"
      "  llmtrain tokenize fineweb/*.parquet --out data/fineweb --tokenizer gpt2 --val-tokens 100M\n"
      "  llmtrain tokenize c4.jsonl.gz --out data/c4 --tokenizer llama.model --skip-bad");
  sub->add_option("inputs", o->t.inputs, "Input files, directories or glob patterns")->required();
  sub->add_option("--out,-o", o->t.out_dir, "Output directory (created if missing)")->required();
  sub->add_option("--name", o->t.name, "Shard name prefix")->capture_default_str();
  sub->add_option("--tokenizer", o->t.tokenizer,
                  "gpt2, a GPT-2 vocabulary directory (encoder.json + vocab.bpe, or vocab.json + merges.txt), "
                  "or a SentencePiece .model")
      ->capture_default_str();
  sub->add_option("--format", o->t.format, "auto (by extension), text, jsonl or parquet")->capture_default_str();
  sub->add_option("--text-field", o->t.text_field, "JSON field / Parquet column with the text")->capture_default_str();
  sub->add_option("--doc-separator", o->separator, "Split text files into documents at this string (escapes \\n \\t)");
  sub->add_option("--val-tokens", o->val_tokens, "Tokens of whole documents for the validation shard (k/M/G suffixes; 0 = none)")
      ->capture_default_str();
  sub->add_option("--shard-tokens", o->shard_tokens, "Tokens per train shard (k/M/G suffixes)")->capture_default_str();
  sub->add_option("--threads", o->t.threads, "Encoding threads (0 = all cores)")->capture_default_str();
  sub->add_option("--max-docs", o->t.max_docs, "Stop after this many documents (-1 = all)")->capture_default_str();
  sub->add_flag("--skip-bad", o->t.skip_bad, "Skip malformed JSON lines and records without text (counted) instead of stopping");
  sub->add_flag("--overwrite", o->t.overwrite, "Replace existing shards of the same name in the output directory");
  sub->add_flag("--eos", o->eos, "SentencePiece: also end every document with EOS");
  sub->add_flag("--no-bos", o->no_bos,
                "SentencePiece: start every document with EOS instead of BOS (automatic for models without BOS, e.g. T5)");
  return {sub, [o]() {
            TokenizeOptions t = o->t;
            t.val_tokens = parse_count("--val-tokens", o->val_tokens);
            t.shard_tokens = parse_count("--shard-tokens", o->shard_tokens);
            t.doc_separator = unescape(o->separator);
            t.sentencepiece.add_eos = o->eos;
            t.sentencepiece.add_bos = !o->no_bos;
            TokenizeStats st = tokenize_corpus(t);
            const double mb = st.text_bytes / 1e6;
            std::printf("tokenize: %llu file(s), %llu documents", (unsigned long long)st.files, (unsigned long long)st.docs);
            if (st.empty_docs) std::printf(", %llu empty skipped", (unsigned long long)st.empty_docs);
            if (st.bad_records) std::printf(", %llu bad skipped", (unsigned long long)st.bad_records);
            std::printf("\ntokenize: %.2f MB of text -> %llu tokens (%.2f bytes/token) in %.2f s: %.2f MB/s, %.0f tokens/s\n", mb,
                        (unsigned long long)(st.val_tokens + st.train_tokens),
                        st.val_tokens + st.train_tokens ? st.text_bytes / double(st.val_tokens + st.train_tokens) : 0.0,
                        st.seconds, st.seconds > 0 ? mb / st.seconds : 0.0,
                        st.seconds > 0 ? (st.val_tokens + st.train_tokens) / st.seconds : 0.0);
            std::printf("tokenize: val %llu tokens, train %llu tokens, %s tokens, %zu shard(s):\n",
                        (unsigned long long)st.val_tokens, (unsigned long long)st.train_tokens,
                        st.token_bytes == 2 ? "uint16" : "uint32", st.shards.size());
            for (size_t i = 0; i < st.shards.size(); ++i) {
              if (st.shards.size() > 12 && i == 5) {
                std::printf("  ... (%zu more)\n", st.shards.size() - 10);
                i = st.shards.size() - 5;
              }
              std::printf("  %s\n", st.shards[i].c_str());
            }
            std::printf("tokenize: manifest %s%s\n", st.manifest.c_str(),
                        st.resumed ? " (resumed an interrupted run)" : "");
            if (st.train_tokens == 0)
              spdlog::warn("no train shard written: all {} documents ({} tokens) fit in the validation shard "
                           "(--val-tokens {}); lower --val-tokens to leave documents for training",
                           st.docs, st.val_tokens, t.val_tokens);
            return 0;
          }};
}

}  // namespace llmtrain::cli
