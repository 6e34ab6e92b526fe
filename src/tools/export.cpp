// Hugging Face export: weights in HF layout, config.json, generation_config.json and the
// tokenizer's files (see export.h for what each holds).
#include "tools/export.h"

#include <sentencepiece_processor.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "llmtrain/error.h"
#include "llmtrain/hf.h"
#include "llmtrain/safetensors.h"
#include "llmtrain/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {
namespace {

void write_json(const fs::path& path, const json& j) {
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  if (!f.flush()) throw RuntimeError(path.string() + ": write failed");
}

void copy_into(const std::string& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw RuntimeError(to.string() + ": cannot copy " + from + " there: " + ec.message());
}

struct TokenizerExport {
  HfTokenIds ids;
  std::string what;
};

// Writes the tokenizer of data.tokenizer in HF form and returns the special-token ids. Without a
// usable tokenizer the ids are the document delimiter, which starts every training document and so
// is what the model predicts at a document's end.
TokenizerExport export_tokenizer(const fs::path& out, const RunConfig& cfg) {
  const std::string& spec = cfg.data.tokenizer;
  TokenizerExport t;
  t.ids.bos = t.ids.eos = cfg.data.delimiter;
  if (spec.empty() || spec == "none") return t;  // the run has no tokenizer: nothing to write
  std::unique_ptr<Tokenizer> tok;
  std::optional<Gpt2VocabFiles> gpt2;
  try {
    tok = load_tokenizer(spec);
    gpt2 = gpt2_vocab_files(spec);
  } catch (const std::exception& e) {
    spdlog::warn("export: no tokenizer files ({})", e.what());
    return t;
  }
  if (tok->vocab_size() > cfg.model.vocab_size) {
    spdlog::warn("export: no tokenizer files: data.tokenizer '{}' has {} tokens, more than the model's vocab_size {}", spec,
                 tok->vocab_size(), cfg.model.vocab_size);
    return t;
  }
  if (gpt2) {
    copy_into(gpt2->encoder, out / "vocab.json");
    copy_into(gpt2->merges, out / "merges.txt");
    const int32_t eot = tok->doc_delimiter();
    const std::string eot_text = tok->decode(&eot, 1);
    // GPT2Tokenizer adds no BOS; training documents start with <|endoftext|>, which callers prepend.
    write_json(out / "tokenizer_config.json", {{"tokenizer_class", "GPT2Tokenizer"},
                                               {"bos_token", eot_text},
                                               {"eos_token", eot_text},
                                               {"unk_token", eot_text},
                                               {"add_prefix_space", false},
                                               {"add_bos_token", false},
                                               {"clean_up_tokenization_spaces", false},
                                               {"model_max_length", cfg.model.max_seq_len}});
    t.ids = {eot, eot, -1};
    t.what = "vocab.json + merges.txt";
    return t;
  }
  sentencepiece::SentencePieceProcessor sp;
  if (!sp.Load(spec).ok()) throw InputError(spec + ": not a SentencePiece model");  // load_tokenizer read it already
  copy_into(spec, out / "tokenizer.model");
  auto piece = [&](int id) { return id >= 0 ? json(sp.IdToPiece(id)) : json(nullptr); };
  t.ids = {sp.bos_id(), sp.eos_id(), sp.pad_id()};
  // "legacy" keeps LlamaTokenizer's plain SentencePiece encoding, which is what our tokenizer does.
  write_json(out / "tokenizer_config.json", {{"tokenizer_class", "LlamaTokenizer"},
                                             {"bos_token", piece(sp.bos_id())},
                                             {"eos_token", piece(sp.eos_id())},
                                             {"unk_token", piece(sp.unk_id())},
                                             {"pad_token", piece(sp.pad_id())},
                                             {"add_bos_token", sp.bos_id() >= 0 && tok->doc_delimiter() == sp.bos_id()},
                                             {"add_eos_token", tok->doc_end() >= 0},
                                             {"legacy", true},
                                             {"clean_up_tokenization_spaces", false},
                                             {"model_max_length", cfg.model.max_seq_len}});
  t.what = "tokenizer.model";
  return t;
}

}  // namespace

HfExportResult export_hf(const std::string& out_dir, const RunConfig& cfg, const Model& model, const float* host) {
  const ModelConfig& c = model.config();
  const fs::path out(out_dir);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (!fs::is_directory(out)) throw InputError(out_dir + ": cannot create the output directory: " + ec.message());

  std::vector<std::vector<float>> storage;
  std::vector<SafetensorsEntry> ts;
  for (const auto& p : model.layout().params()) {
    const float* src = host + p.offset;
    std::vector<int64_t> shape = p.shape;
    if (has_vocab_rows(p)) shape[0] = c.vocab_size;  // drop the padding rows (row-major: a prefix)
    if (is_hf_conv1d(c, p)) {
      const int64_t R = p.shape[0], K = p.shape[1];
      storage.emplace_back((size_t)R * K);
      auto& t = storage.back();
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < K; ++j) t[(size_t)j * R + i] = src[(size_t)i * K + j];
      src = t.data();
      shape = {K, R};
    }
    size_t n = 1;
    for (auto d : shape) n *= (size_t)d;
    ts.push_back({p.name, DType::F32, shape, src, n * sizeof(float)});
  }
  if (!c.is_llama() && !c.bias) {
    // HF's GPT-2 has every bias; zeros make the bias-free model load strictly and compute the same.
    const int64_t C = c.n_embd, H = c.intermediate_size;
    std::vector<std::pair<std::string, int64_t>> zeros;
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      for (auto [name, n] : std::vector<std::pair<const char*, int64_t>>{
               {"ln_1.bias", C}, {"attn.c_attn.bias", 3 * C}, {"attn.c_proj.bias", C},
               {"ln_2.bias", C}, {"mlp.c_fc.bias", H},       {"mlp.c_proj.bias", C}})
        zeros.emplace_back(p + name, n);
    }
    zeros.emplace_back("transformer.ln_f.bias", C);
    storage.emplace_back((size_t)std::max(3 * C, H), 0.0f);
    for (const auto& [name, n] : zeros) ts.push_back({name, DType::F32, {n}, storage.back().data(), (size_t)n * sizeof(float)});
  }
  write_safetensors((out / "model.safetensors").string(), ts, {{"format", "pt"}});

  TokenizerExport tok = export_tokenizer(out, cfg);
  write_json(out / "config.json", hf_config_json(c, tok.ids));
  json gen = json::object();
  if (tok.ids.bos >= 0) gen["bos_token_id"] = tok.ids.bos;
  if (tok.ids.eos >= 0) gen["eos_token_id"] = tok.ids.eos;
  // Without a pad token, generate() pads with EOS anyway (and warns that it does).
  const int32_t pad = tok.ids.pad >= 0 ? tok.ids.pad : tok.ids.eos;
  if (pad >= 0) gen["pad_token_id"] = pad;
  write_json(out / "generation_config.json", gen);
  return {tok.what};
}

}  // namespace llmtrain
