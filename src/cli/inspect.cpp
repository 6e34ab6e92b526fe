// `llmtrain inspect PATH...`: what is inside llm.c token shards (header, file-size check, number of
// documents, token range against the vocabulary, the first tokens decoded), and what a directory
// holds: a shard directory (every *.bin shard), a checkpoint (state.json, every file's size and
// CRC-32C against the manifest, non-finite weights) or a run directory (lock holder, metrics,
// checkpoints and which one `--resume auto` would take).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/error.h"
#include "llmtrain/safetensors.h"
#include "llmtrain/shard.h"
#include "llmtrain/tokenizer.h"
#include "train/checkpoint_io.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain::cli {
namespace {

// Every tensor of a safetensors file that holds a NaN or infinity, as "name" (float dtypes only).
std::vector<std::string> nonfinite_tensors(const std::string& path, uint64_t* params) {
  SafetensorsReader r(path);
  std::vector<std::string> bad;
  std::vector<float> buf;
  for (const auto& name : r.names()) {
    const auto& e = r.get(name);
    if (e.dtype != DType::F32 && e.dtype != DType::BF16 && e.dtype != DType::F16 && e.dtype != DType::F64) continue;
    buf.resize(e.numel());
    r.read_f32(name, buf.data(), buf.size());
    *params += buf.size();
    if (first_nonfinite(buf.data(), buf.size()) >= 0) bad.push_back(name);
  }
  return bad;
}

// A checkpoint directory: state.json summary, each manifest file verified, weights checked.
// Appends what is wrong to `problems`.
void inspect_checkpoint(const std::string& dir, std::vector<std::string>& problems) {
  std::printf("%s (checkpoint)\n", dir.c_str());
  json st;
  try {
    st = read_state_json(dir);
  } catch (const InputError& e) {
    std::printf("  state.json: %s\n", e.what());
    problems.push_back(e.what());
    return;
  }
  const json& m = st["config"]["model"];
  std::printf("  step:       %lld (code version %s, %d rank(s), run.zero=%d)\n", (long long)st["step"].get<int64_t>(),
              st.value("code_version", std::string("?")).c_str(), st.value("zero", json::object()).value("world", 1),
              st.value("zero", json::object()).value("stage", 0));
  std::printf("  model:      %s, %s layers, n_embd %s\n", m.value("arch", std::string("?")).c_str(),
              m.value("n_layer", json()).dump().c_str(), m.value("n_embd", json()).dump().c_str());
  for (auto it = st["optimizers"].begin(); it != st["optimizers"].end(); ++it)
    std::printf("  optimizer:  group %s: %s\n", it.key().c_str(), (*it)["type"].get<std::string>().c_str());
  if (st.contains("nonfinite") && st["nonfinite"]["skipped"].get<int64_t>() > 0)
    std::printf("  non-finite: %lld step(s) skipped so far\n", (long long)st["nonfinite"]["skipped"].get<int64_t>());
  if (!st.contains("files")) {
    std::printf("  files:      no manifest (written before checksums were recorded): not verified\n");
  } else {
    uint64_t total = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (auto it = st["files"].begin(); it != st["files"].end(); ++it) {
      const std::string path = (fs::path(dir) / it.key()).string();
      std::string status = "ok";
      std::error_code ec;
      if (!fs::is_regular_file(path, ec)) {
        status = "MISSING";
      } else {
        const FileSum got = checksum_file(path);
        total += got.bytes;
        const json want = *it;
        if (!want.is_object() || want.value("bytes", json()) != json(got.bytes))
          status = "SIZE DIFFERS (" + std::to_string(got.bytes) + " bytes)";
        else if (want.value("crc32c", std::string()) != file_sum_json(got)["crc32c"].get<std::string>())
          status = "CHECKSUM MISMATCH (file has " + file_sum_json(got)["crc32c"].get<std::string>() + ")";
      }
      std::printf("  file:       %-32s %s: %s\n", it.key().c_str(), it->dump().c_str(), status.c_str());
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  checksums:  %.1f MB in %.3f s (%.2f GB/s, CRC-32C)\n", total / 1e6, s,
                s > 0 ? total / s / 1e9 : 0.0);
  }
  const std::string problem = checkpoint_problem(dir, /*checksums=*/true);
  if (!problem.empty()) {
    problems.push_back(problem);
    return;
  }
  const std::string model_path = (fs::path(dir) / "model.safetensors").string();
  std::error_code ec;
  if (!fs::is_regular_file(model_path, ec)) {
    problems.push_back(model_path + ": missing");
    return;
  }
  uint64_t params = 0;
  const auto bad = nonfinite_tensors(model_path, &params);
  std::printf("  weights:    %.2fM values, %s\n", params / 1e6,
              bad.empty() ? "all finite" : ("NON-FINITE in " + std::to_string(bad.size()) + " tensor(s)").c_str());
  if (!bad.empty()) problems.push_back(model_path + ": tensor " + bad.front() + " holds non-finite values");
}

// Who holds a run directory's lock: "" when nobody does.
std::string lock_holder(const std::string& dir) {
  const std::string path = (fs::path(dir) / ".lock").string();
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return "";
  std::string holder;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    char buf[256];
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    holder = n > 0 ? std::string(buf, (size_t)n) : "a process";
    while (!holder.empty() && holder.back() == '\n') holder.pop_back();
  }
  ::close(fd);
  return holder;
}

// A run directory: lock, metrics, every checkpoint's state and the one --resume auto would take.
void inspect_run(const std::string& dir, std::vector<std::string>& problems) {
  std::printf("%s (run directory)\n", dir.c_str());
  const std::string holder = lock_holder(dir);
  std::printf("  lock:       %s\n", holder.empty() ? "free" : ("held by " + holder).c_str());
  std::ifstream mf(fs::path(dir) / "metrics.jsonl");
  if (mf) {
    int64_t lines = 0, torn = 0;
    json last;
    std::string line;
    while (std::getline(mf, line)) {
      if (line.empty()) continue;
      ++lines;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded()) ++torn;
      else last = j;
    }
    std::printf("  metrics:    %lld line(s)%s", (long long)lines,
                torn ? (", " + std::to_string(torn) + " torn").c_str() : "");
    if (last.is_object())
      std::printf(", last step %s loss %s%s", last.value("step", json()).dump().c_str(),
                  last.value("loss", json()).dump().c_str(),
                  last.contains("nonfinite_skips")
                      ? (", " + last["nonfinite_skips"].dump() + " non-finite step(s) skipped").c_str()
                      : "");
    std::printf("\n");
  } else {
    std::printf("  metrics:    none\n");
  }
  CheckpointManager mgr(dir, 0);
  std::vector<std::pair<std::string, std::string>> dirs;  // name, problem without checksums
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(mgr.ckpt_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) == 0) dirs.emplace_back(name, checkpoint_problem(e.path().string(), false));
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) std::printf("  checkpoints: none\n");
  for (const auto& [name, problem] : dirs)
    std::printf("  checkpoint: %s  %s\n", name.c_str(),
                problem.empty() ? "complete" : ("INCOMPLETE: " + problem).c_str());
  std::vector<std::string> skipped;
  const auto newest = mgr.find_latest(/*verify=*/true, &skipped);
  for (const auto& s : skipped) {
    std::printf("  damaged:    %s\n", s.c_str());
    problems.push_back(s);
  }
  if (!dirs.empty())
    std::printf("  resume:     --resume auto takes %s\n",
                newest ? fs::path(*newest).filename().c_str() : "nothing (no intact checkpoint)");
}

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
  CLI::App* sub = app.add_subcommand("inspect", "Show what is inside token shards, checkpoints and run directories");
  sub->footer(
      "A directory is a shard directory (its *.bin files), a checkpoint (state.json, each file's size\n"
      "and CRC-32C against the manifest, weights finite) or a run directory (lock holder, metrics,\n"
      "checkpoints, what --resume auto would take).\n"
      "Exit code 2 (with the first problem on stderr) when a shard's header or size is wrong, a token\n"
      "is outside the tokenizer's vocabulary, or a checkpoint is damaged or holds non-finite weights.\n\n"
      "Examples:\n"
      "  llmtrain inspect data/demo/demo_val_000000.bin\n"
      "  llmtrain inspect data/demo/*.bin --tokens 0            # headers and counts only\n"
      "  llmtrain inspect data/demo --tokens 0                  # every shard of a directory\n"
      "  llmtrain inspect runs/demo-gpt2-tiny                   # a run: lock, metrics, checkpoints\n"
      "  llmtrain inspect runs/demo-gpt2-tiny/ckpt/step_00000200   # a checkpoint, checksums verified\n"
      "  llmtrain inspect shard.bin --tokenizer llama.model --ids\n"
      "  llmtrain inspect shard.bin --tokenizer none            # no decoding (ids only)");
  sub->add_option("paths", o->shards, "Shard files, shard directories, checkpoint or run directories")->required();
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
            // Directories: checkpoint and run directories are reported here; a shard directory
            // stands for its *.bin files.
            std::vector<std::string> shards;
            bool first = true;
            for (const auto& path : o->shards) {
              std::error_code ec;
              if (!fs::is_directory(path, ec)) {
                shards.push_back(path);
                continue;
              }
              if (fs::exists(fs::path(path) / "state.json", ec) || fs::is_directory(fs::path(path) / "ckpt", ec) ||
                  fs::exists(fs::path(path) / "metrics.jsonl", ec)) {
                if (!first) std::printf("\n");
                first = false;
                if (fs::exists(fs::path(path) / "state.json", ec)) inspect_checkpoint(path, problems);
                else inspect_run(path, problems);
                continue;
              }
              std::vector<std::string> bins;
              for (const auto& e : fs::directory_iterator(path, ec))
                if (e.path().extension() == ".bin" && e.is_regular_file(ec)) bins.push_back(e.path().string());
              if (bins.empty())
                throw InputError(path + ": a directory with no state.json, ckpt/, metrics.jsonl or *.bin shards: "
                                 "nothing to inspect");
              std::sort(bins.begin(), bins.end());
              shards.insert(shards.end(), bins.begin(), bins.end());
            }
            for (size_t si = 0; si < shards.size(); ++si) {
              const std::string& path = shards[si];
              if (!first) std::printf("\n");
              first = false;
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
