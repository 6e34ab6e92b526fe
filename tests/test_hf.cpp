// Hugging Face interop: the export's tensor names against HF GPT-2's state dict, export -> import bit
// for bit (GPT-2 with and without biases, tied and untied; LLaMA with GQA, untied), reading what
// other writers produce (OpenAI's names, mask buffers, bf16, shards), the errors for what cannot be
// read, model.init_from, and the tokenizer files of an export.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "llmtrain/hf.h"
#include "llmtrain/json_float.h"
#include "llmtrain/safetensors.h"
#include "llmtrain/tokenizer.h"
#include "test_util.h"
#include "tools/export.h"

using namespace llmtrain;
using llmtrain::test::error_of;
using llmtrain::test::TempDir;
using Catch::Matchers::Contains;
using nlohmann::json;
namespace fs = std::filesystem;

#ifndef LLMTRAIN_FIXTURES_DIR
#define LLMTRAIN_FIXTURES_DIR "tests/fixtures"
#endif

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json read_json(const std::string& path) { return json::parse(read_text(path)); }

void write_text(const std::string& path, const std::string& s) { std::ofstream(path, std::ios::binary) << s; }

RunConfig run_config(const json& model, const std::string& tokenizer = "none", int delimiter = 0) {
  json j{{"model", model}, {"data", {{"train", "unused"}, {"delimiter", delimiter}, {"tokenizer", tokenizer}}}};
  return config_from_json(j, "test.json");
}

// Every parameter random (gains and biases included), padded vocabulary rows zero: what a trained
// model looks like, so that a transposition or an offset error cannot hide behind ones and zeros.
std::vector<float> random_weights(const Model& m, uint32_t seed) {
  std::vector<float> w(m.num_params());
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.5f);
  for (auto& v : w) v = nd(rng);
  for (const auto& p : m.layout().params())
    if (has_vocab_rows(p))
      std::fill(w.begin() + p.offset + (size_t)m.config().vocab_size * p.cols(), w.begin() + p.offset + p.numel, 0.f);
  return w;
}

const json kGpt2 = {{"arch", "gpt2"},       {"n_layer", 2},      {"n_embd", 16}, {"n_head", 4},
                    {"vocab_size", 50},     {"max_seq_len", 8}, {"bias", true}, {"scale_attn_by_inverse_layer_idx", true}};
const json kLlama = {{"arch", "llama"},     {"n_layer", 2},      {"n_embd", 16}, {"n_head", 4}, {"n_kv_head", 2},
                     {"vocab_size", 50},    {"max_seq_len", 8}, {"intermediate_size", 24}, {"rope_theta", 500000.0},
                     {"norm_eps", 1e-5}};

json with(json base, const json& extra) {
  for (auto it = extra.begin(); it != extra.end(); ++it) base[it.key()] = it.value();
  return base;
}

void check_same_config(const ModelConfig& a, const ModelConfig& b) {
  CHECK(a.arch == b.arch);
  CHECK(a.n_layer == b.n_layer);
  CHECK(a.n_embd == b.n_embd);
  CHECK(a.n_head == b.n_head);
  CHECK(a.n_kv_head == b.n_kv_head);
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.padded_vocab_size == b.padded_vocab_size);
  CHECK(a.max_seq_len == b.max_seq_len);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.bias == b.bias);
  CHECK(a.tie_embeddings == b.tie_embeddings);
  CHECK(a.norm_eps == b.norm_eps);
  CHECK(a.scale_attn_by_inverse_layer_idx == b.scale_attn_by_inverse_layer_idx);
  CHECK(a.init_std == b.init_std);
  if (a.is_llama()) CHECK(a.rope_theta == b.rope_theta);
}

}  // namespace

TEST_CASE("hf export: a bias-free GPT-2 has exactly HF GPT-2's state-dict keys and shapes", "[hf]") {
  const bool tied = GENERATE(true, false);
  const bool bias = GENERATE(false, true);
  RunConfig cfg = run_config(with(kGpt2, {{"bias", bias}, {"tie_embeddings", tied}, {"n_layer", 3}}));
  Model m(cfg.model);
  std::vector<float> w(m.num_params());
  m.init_params(w.data(), 1);
  TempDir d("hfkeys");
  export_hf(d.path, cfg, m, w.data());

  // GPT2LMHeadModel's state dict (transformers 4.31+: the attention mask buffers attn.bias and
  // attn.masked_bias are not persistent, so not in it); save_pretrained leaves out the tied lm_head.
  const int64_t C = 16, H = 64, V = 50, P = 8;
  std::map<std::string, std::vector<int64_t>> want{{"transformer.wte.weight", {V, C}},
                                                   {"transformer.wpe.weight", {P, C}},
                                                   {"transformer.ln_f.weight", {C}},
                                                   {"transformer.ln_f.bias", {C}}};
  for (int l = 0; l < 3; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    want[p + "ln_1.weight"] = {C};
    want[p + "ln_1.bias"] = {C};
    want[p + "attn.c_attn.weight"] = {C, 3 * C};
    want[p + "attn.c_attn.bias"] = {3 * C};
    want[p + "attn.c_proj.weight"] = {C, C};
    want[p + "attn.c_proj.bias"] = {C};
    want[p + "ln_2.weight"] = {C};
    want[p + "ln_2.bias"] = {C};
    want[p + "mlp.c_fc.weight"] = {C, H};
    want[p + "mlp.c_fc.bias"] = {H};
    want[p + "mlp.c_proj.weight"] = {H, C};
    want[p + "mlp.c_proj.bias"] = {C};
  }
  if (!tied) want["lm_head.weight"] = {V, C};
  SafetensorsReader r(d.file("model.safetensors"));
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& n : r.names()) got[n] = r.get(n).shape;
  CHECK(got == want);
  CHECK(r.get("transformer.wte.weight").dtype == DType::F32);
  std::vector<float> b(3 * C, 1.f);
  r.read_f32("transformer.h.1.attn.c_attn.bias", b.data(), b.size());
  CHECK(std::all_of(b.begin(), b.end(), [](float v) { return v == 0.f; }));  // zeros (init or bias-free)

  const json hc = read_json(d.file("config.json"));
  CHECK(hc.at("model_type") == "gpt2");
  CHECK(hc.at("tie_word_embeddings") == tied);
  CHECK(hc.contains("bias") == !bias);  // our key, only for the bias-free model
  CHECK(hc.at("layer_norm_epsilon").dump() == "1e-05");
  CHECK(hc.at("initializer_range").dump() == "0.02");
  CHECK(read_text(d.file("config.json")).find("99999") == std::string::npos);
  CHECK(hc.at("bos_token_id") == 0);  // the run's document delimiter (no tokenizer)
  CHECK(hc.at("eos_token_id") == 0);
  CHECK(hc.at("pad_token_id").is_null());
  const json gen = read_json(d.file("generation_config.json"));
  CHECK(gen == json{{"bos_token_id", 0}, {"eos_token_id", 0}, {"pad_token_id", 0}});
  CHECK_FALSE(fs::exists(d.file("tokenizer_config.json")));
}

TEST_CASE("hf export -> import round-trips bit for bit", "[hf]") {
  json model;
  SECTION("gpt2, biases, tied") { model = kGpt2; }
  SECTION("gpt2, no biases, tied") { model = with(kGpt2, {{"bias", false}}); }
  SECTION("gpt2, no biases, untied, own padding") {
    model = with(kGpt2, {{"bias", false}, {"tie_embeddings", false}, {"padded_vocab_size", 256}});
  }
  SECTION("llama, GQA, untied") { model = kLlama; }
  SECTION("llama, no GQA, tied") { model = with(kLlama, {{"n_kv_head", 0}, {"tie_embeddings", true}}); }
  RunConfig cfg = run_config(model);
  Model m(cfg.model);
  const std::vector<float> w = random_weights(m, 11);
  TempDir d("hfrt");
  export_hf(d.path, cfg, m, w.data());
  REQUIRE(is_hf_model_dir(d.path));

  // Into a model of the HF config's own (default-padded) layout...
  HfModel h = load_hf_model(d.path);
  ModelConfig want = cfg.model;
  want.padded_vocab_size = (want.vocab_size + 127) / 128 * 128;
  check_same_config(h.config, want);
  Model hm(h.config);
  for (const auto& p : m.layout().params()) {
    const ParamInfo& q = hm.layout().find(p.name);
    const size_t n = has_vocab_rows(p) ? (size_t)cfg.model.vocab_size * p.cols() : p.numel;
    INFO(p.name);
    CHECK(std::memcmp(w.data() + p.offset, h.weights.data() + q.offset, n * sizeof(float)) == 0);
  }
  CHECK(hm.num_params_unpadded() == m.num_params_unpadded());
  // ... and into the run's own layout: every bit, padding included.
  std::vector<float> back(m.num_params(), 1.f);
  read_hf_weights(d.path, m, back.data());
  CHECK(std::memcmp(back.data(), w.data(), w.size() * sizeof(float)) == 0);
}

TEST_CASE("hf import: OpenAI's tensor names, mask buffers, bf16 and sharded files", "[hf]") {
  RunConfig cfg = run_config(kGpt2);
  Model m(cfg.model);
  const std::vector<float> w = random_weights(m, 5);
  TempDir d("hfin");
  export_hf(d.file("ours"), cfg, m, w.data());
  SafetensorsReader r(d.file("ours/model.safetensors"));

  // Rewrite as OpenAI's files name GPT2Model's tensors (no "transformer."), in bf16, with the old
  // persistent mask buffers, split over two shards listed by an index.
  fs::create_directories(d.file("theirs"));
  fs::copy_file(d.file("ours/config.json"), d.file("theirs/config.json"));
  std::vector<std::vector<uint16_t>> store;
  std::vector<SafetensorsEntry> shard[2];
  json weight_map;
  int i = 0;
  for (const auto& name : r.names()) {
    const auto& e = r.get(name);
    std::vector<float> f(e.numel());
    r.read_f32(name, f.data(), f.size());
    store.emplace_back(f.size());
    for (size_t k = 0; k < f.size(); ++k) store.back()[k] = f32_to_bf16(f[k]);
    const std::string n = name.substr(std::string("transformer.").size());
    shard[i % 2].push_back({n, DType::BF16, e.shape, store.back().data(), f.size() * 2});
    weight_map[n] = "model-0000" + std::to_string(i % 2 + 1) + "-of-00002.safetensors";
    ++i;
  }
  std::vector<uint8_t> mask(64, 1);
  std::vector<float> masked_bias{-1e4f};
  shard[0].push_back({"h.0.attn.bias", DType::U8, {1, 1, 8, 8}, mask.data(), mask.size()});
  shard[0].push_back({"h.0.attn.masked_bias", DType::F32, {}, masked_bias.data(), 4});
  weight_map["h.0.attn.bias"] = weight_map["h.0.attn.masked_bias"] = "model-00001-of-00002.safetensors";
  write_safetensors(d.file("theirs/model-00001-of-00002.safetensors"), shard[0]);
  write_safetensors(d.file("theirs/model-00002-of-00002.safetensors"), shard[1]);
  write_text(d.file("theirs/model.safetensors.index.json"), json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());

  HfModel h = load_hf_model(d.file("theirs"));
  for (const auto& p : m.layout().params())
    for (size_t k = 0; k < p.numel; ++k) {
      const float want = bf16_to_f32(f32_to_bf16(w[p.offset + k]));
      if (h.weights[p.offset + k] != want) {
        FAIL_CHECK(p.name << "[" << k << "]: " << h.weights[p.offset + k] << " != " << want);
        break;
      }
    }
}

TEST_CASE("hf import: what our models cannot hold is an InputError naming the file and key", "[hf]") {
  RunConfig cfg = run_config(with(kGpt2, {{"bias", false}}));
  Model m(cfg.model);
  const std::vector<float> w = random_weights(m, 3);
  TempDir d("hferr");
  export_hf(d.path, cfg, m, w.data());
  const json hc = read_json(d.file("config.json"));
  auto with_config = [&](const json& c) {
    write_text(d.file("config.json"), c.dump());
    return error_of([&] { load_hf_model(d.path); });
  };
  CHECK_THAT(with_config(with(hc, {{"model_type", "bert"}})), Contains("config.json: model_type: \"bert\""));
  CHECK_THAT(with_config(with(hc, {{"activation_function", "relu"}})), Contains("activation_function"));
  CHECK_THAT(with_config(with(hc, {{"n_head", 5}})), Contains("config.json: n_head: 5 does not divide n_embd 16"));
  CHECK_THAT(with_config(with(hc, {{"n_layer", 3}})), Contains("no tensor transformer.h.2.ln_1.weight"));
  CHECK_THAT(with_config(with(hc, {{"n_inner", 32}})),
             Contains("transformer.h.0.mlp.c_fc.weight has shape [16, 64], config.json implies [16, 32]"));
  // Our bias-free GPT-2 holds zero biases; non-zero ones do not load as bias-free...
  CHECK_THAT(with_config(with(hc, {{"n_layer", 1}})), Contains("transformer.h.1.") && Contains("has no place"));
  SafetensorsReader r(d.file("model.safetensors"));
  std::vector<SafetensorsEntry> ts;
  std::vector<std::vector<float>> store;
  for (const auto& n : r.names()) {
    store.emplace_back(r.get(n).numel());
    r.read_f32(n, store.back().data(), store.back().size());
    if (n == "transformer.h.1.mlp.c_fc.bias") store.back()[3] = 0.5f;
    ts.push_back({n, DType::F32, r.get(n).shape, store.back().data(), store.back().size() * 4});
  }
  TempDir d2("hferr2");
  write_safetensors(d2.file("model.safetensors"), ts);
  write_text(d2.file("config.json"), hc.dump());
  CHECK_THAT(error_of([&] { load_hf_model(d2.path); }),
             Contains("transformer.h.1.mlp.c_fc.bias holds non-zero values but config.json says \"bias\": false"));
  // ... but do as the HF model they are, when the key is gone.
  json biased = hc;
  biased.erase("bias");
  write_text(d2.file("config.json"), biased.dump());
  HfModel h = load_hf_model(d2.path);
  CHECK(h.config.bias);
  CHECK(h.weights[Model(h.config).layout().find("transformer.h.1.mlp.c_fc.bias").offset + 3] == 0.5f);

  RunConfig lc = run_config(kLlama);
  Model lm(lc.model);
  const std::vector<float> lw = random_weights(lm, 4);
  TempDir d3("hferr3");
  export_hf(d3.path, lc, lm, lw.data());
  const json lj = read_json(d3.file("config.json"));
  auto llama_error = [&](const json& c) {
    write_text(d3.file("config.json"), c.dump());
    return error_of([&] { load_hf_model(d3.path); });
  };
  CHECK_THAT(llama_error(with(lj, {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}})), Contains("rope_scaling"));
  CHECK_THAT(llama_error(with(lj, {{"hidden_act", "gelu"}})), Contains("config.json: hidden_act: \"gelu\""));
  CHECK_THAT(llama_error(with(lj, {{"attention_bias", true}})), Contains("attention_bias"));
  CHECK_THAT(llama_error(with(lj, {{"head_dim", 8}})), Contains("head_dim: 8"));
  CHECK_THAT(llama_error(with(lj, {{"num_key_value_heads", 3}})), Contains("num_key_value_heads: 3 does not divide"));
  CHECK_THAT(llama_error(with(lj, {{"tie_word_embeddings", true}})), Contains("lm_head.weight differs from the token embeddings"));
  fs::remove(d3.file("model.safetensors"));
  CHECK_THAT(llama_error(lj), Contains("no model.safetensors or model.safetensors.index.json"));
}

TEST_CASE("model.init_from: the architecture comes from config.json; a conflicting key names both values", "[hf]") {
  RunConfig src = run_config(kLlama);
  Model sm(src.model);
  const std::vector<float> w = random_weights(sm, 9);
  TempDir d("hfinit");
  export_hf(d.path, src, sm, w.data());

  RunConfig cfg = run_config({{"init_from", d.path}});
  check_same_config(cfg.model, src.model);
  CHECK(cfg.model.init_from == d.path);
  CHECK(cfg.resolved["model"]["init_from"] == d.path);
  CHECK(cfg.resolved["model"]["n_kv_head"] == 2);
  Model m(cfg.model);
  std::vector<float> host(m.num_params(), 1.f);
  init_run_params(cfg, m, host.data());
  CHECK(std::memcmp(host.data(), w.data(), w.size() * sizeof(float)) == 0);

  // Keys the run sets must agree (resolved values: n_kv_head 0 means "as many as heads").
  CHECK_NOTHROW(run_config({{"init_from", d.path}, {"arch", "llama"}, {"n_layer", 2}, {"norm_eps", 1e-5}, {"init_std", 0.5}}));
  CHECK_THAT(error_of([&] { run_config({{"init_from", d.path}, {"n_layer", 3}}); }),
             Contains("test.json: model.n_layer: 3, but model.init_from " + d.path + "/config.json has 2 (num_hidden_layers)"));
  CHECK_THAT(error_of([&] { run_config({{"init_from", d.path}, {"n_kv_head", 0}}); }),
             Contains("model.n_kv_head: 0, but") && Contains("has 2 (num_key_value_heads)"));
  CHECK_THAT(error_of([&] { run_config({{"init_from", d.path}, {"norm_eps", 1e-6}}); }),
             Contains("model.norm_eps: 1e-06, but") && Contains("has 1e-05 (rms_norm_eps)"));
  CHECK_THAT(error_of([&] { run_config({{"init_from", d.path}, {"arch", "gpt2"}}); }), Contains("model.arch: gpt2, but"));
  CHECK_THAT(error_of([&] { run_config({{"init_from", d.path}, {"preset", "llama-60m"}}); }), Contains("model.intermediate_size: 1376, but"));
  CHECK_THAT(error_of([&] { run_config({{"init_from", d.file("nope")}}); }), Contains("test.json: model.init_from: " + d.path + "/nope/config.json: cannot open"));
  CHECK_THAT(error_of([&] { run_config({{"init_from", 5}}); }), Contains("test.json: model.init_from: expected the path"));

  // The run may pad the vocabulary its own way: the weights land in its layout.
  RunConfig padded = run_config({{"init_from", d.path}, {"padded_vocab_size", 256}});
  Model pm(padded.model);
  std::vector<float> ph(pm.num_params(), 1.f);
  init_run_params(padded, pm, ph.data());
  for (const auto& p : pm.layout().params()) {
    const ParamInfo& q = sm.layout().find(p.name);
    const size_t n = has_vocab_rows(p) ? (size_t)50 * p.cols() : p.numel;
    CHECK(std::memcmp(ph.data() + p.offset, w.data() + q.offset, n * sizeof(float)) == 0);
    CHECK(std::all_of(ph.begin() + p.offset + n, ph.begin() + p.offset + p.numel, [](float v) { return v == 0.f; }));
  }
  // Without init_from: the seeded initialisation.
  RunConfig plain = run_config(kLlama);
  std::vector<float> a(m.num_params()), b(m.num_params());
  init_run_params(plain, m, a.data());
  m.init_params(b.data(), plain.run.seed);
  CHECK(a == b);
}

TEST_CASE("hf export: tokenizer files HF loads, and the ids they imply", "[hf]") {
  TempDir d("hftok");
  SECTION("GPT-2 BPE: vocab.json + merges.txt, readable by our loader too") {
    RunConfig cfg = run_config({{"arch", "gpt2"}, {"n_layer", 1}, {"n_embd", 8}, {"n_head", 2}, {"max_seq_len", 8}}, "gpt2",
                               50256);
    Model m(cfg.model);
    std::vector<float> w(m.num_params());
    m.init_params(w.data(), 1);
    export_hf(d.path, cfg, m, w.data());
    const auto files = gpt2_vocab_files("gpt2");
    REQUIRE(files);
    CHECK(read_text(d.file("vocab.json")) == read_text(files->encoder));
    CHECK(read_text(d.file("merges.txt")) == read_text(files->merges));
    const json tc = read_json(d.file("tokenizer_config.json"));
    CHECK(tc.at("tokenizer_class") == "GPT2Tokenizer");
    CHECK(tc.at("eos_token") == "<|endoftext|>");
    CHECK(tc.at("model_max_length") == 8);
    const json hc = read_json(d.file("config.json"));
    CHECK(hc.at("bos_token_id") == 50256);
    CHECK(hc.at("eos_token_id") == 50256);
    CHECK(read_json(d.file("generation_config.json")).at("pad_token_id") == 50256);
    auto tok = load_tokenizer(d.path);
    CHECK(tok->encode("Hello world") == std::vector<int32_t>{15496, 995});
  }
  SECTION("SentencePiece: tokenizer.model") {
    const std::string spm = std::string(LLMTRAIN_FIXTURES_DIR) + "/spm/tiny.model";
    RunConfig cfg = run_config(with(kLlama, {{"vocab_size", 1000}}), spm, 1);
    Model m(cfg.model);
    std::vector<float> w(m.num_params());
    m.init_params(w.data(), 1);
    export_hf(d.path, cfg, m, w.data());
    CHECK(read_text(d.file("tokenizer.model")) == read_text(spm));
    const json tc = read_json(d.file("tokenizer_config.json"));
    CHECK(tc.at("tokenizer_class") == "LlamaTokenizer");
    CHECK(tc.at("bos_token") == "<s>");
    CHECK(tc.at("eos_token") == "</s>");
    CHECK(tc.at("pad_token").is_null());
    CHECK(tc.at("add_bos_token") == true);
    const json hc = read_json(d.file("config.json"));
    CHECK(hc.at("bos_token_id") == 1);
    CHECK(hc.at("eos_token_id") == 2);
    CHECK(hc.at("pad_token_id").is_null());
    CHECK(hc.at("rope_theta").dump() == "500000.0");
    CHECK(load_tokenizer(d.file("tokenizer.model"))->encode("hello") == load_tokenizer(spm)->encode("hello"));
  }
  SECTION("a tokenizer larger than the model's vocabulary is left out") {
    RunConfig cfg = run_config(kGpt2, "gpt2");
    Model m(cfg.model);
    std::vector<float> w(m.num_params());
    m.init_params(w.data(), 1);
    CHECK(export_hf(d.path, cfg, m, w.data()).tokenizer.empty());
    CHECK_FALSE(fs::exists(d.file("vocab.json")));
  }
}
