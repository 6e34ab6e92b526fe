// Resolves a tokenizer spec to a Tokenizer: "gpt2" (the bundled vocabulary), a directory holding
// a GPT-2 vocabulary (OpenAI's encoder.json + vocab.bpe, or the same files under Hugging Face's
// names vocab.json + merges.txt, so an exported or downloaded HF GPT-2 directory works as is), or a
// SentencePiece .model file. The bundled vocabulary is looked up in $LLMTRAIN_DATA_DIR/gpt2, then
// the source tree's data/gpt2 (so a build runs without installing), then ./data/gpt2.
#include <sys/stat.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "llmtrain/error.h"
#include "llmtrain/tokenizer.h"

namespace llmtrain {
namespace {

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::optional<Gpt2VocabFiles> files_in(const std::string& dir) {
  if (is_file(dir + "/encoder.json") && is_file(dir + "/vocab.bpe")) return Gpt2VocabFiles{dir + "/encoder.json", dir + "/vocab.bpe"};
  if (is_file(dir + "/vocab.json") && is_file(dir + "/merges.txt")) return Gpt2VocabFiles{dir + "/vocab.json", dir + "/merges.txt"};
  return std::nullopt;
}

}  // namespace

std::optional<Gpt2VocabFiles> gpt2_vocab_files(const std::string& spec) {
  if (spec == "gpt2") {
    std::vector<std::string> tried;
    if (const char* d = std::getenv("LLMTRAIN_DATA_DIR"); d && *d) tried.push_back(std::string(d) + "/gpt2");
#ifdef LLMTRAIN_SOURCE_DIR
    tried.push_back(std::string(LLMTRAIN_SOURCE_DIR) + "/data/gpt2");
#endif
    tried.push_back("data/gpt2");
    for (const auto& dir : tried)
      if (auto f = files_in(dir)) return f;
    std::string where;
    for (const auto& dir : tried) where += (where.empty() ? "" : ", ") + dir;
    throw InputError("tokenizer 'gpt2': encoder.json + vocab.bpe not found in " + where +
                     " (set LLMTRAIN_DATA_DIR to the directory that holds gpt2/)");
  }
  if (is_dir(spec)) return files_in(spec);
  return std::nullopt;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "gpt2") return make_gpt2_tokenizer(*gpt2_vocab_files(spec));
  if (is_dir(spec)) {
    auto files = files_in(spec);
    if (!files)
      throw InputError("tokenizer '" + spec + "': directory has no encoder.json + vocab.bpe (or vocab.json + merges.txt)");
    return make_gpt2_tokenizer(*files);
  }
  if (is_file(spec)) return make_sentencepiece_tokenizer(spec);
  throw InputError("tokenizer '" + spec +
                   "': not 'gpt2', a directory with a GPT-2 vocabulary (encoder.json + vocab.bpe, or vocab.json + "
                   "merges.txt), or a SentencePiece .model file");
}

}  // namespace llmtrain
