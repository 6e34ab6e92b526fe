// Our CPU backend against an independent implementation: PyTorch (float64) logits, loss and every
// parameter gradient for tiny GPT-2 and LLaMA models on a fixed batch, stored in
// tests/fixtures/reference by scripts/make_reference.py. Relative error < 1e-4 everywhere.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "llmtrain/backend.h"
#include "llmtrain/config.h"
#include "llmtrain/model.h"
#include "llmtrain/safetensors.h"

using namespace llmtrain;

namespace {

double rel_err(const float* a, const std::vector<float>& ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
    den += (double)ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

std::vector<float> read_all(SafetensorsReader& r, const std::string& name) {
  auto info = r.get(name);
  size_t n = 1;
  for (auto d : info.shape) n *= (size_t)d;
  std::vector<float> v(n);
  r.read_f32(name, v.data(), n);
  return v;
}

void check_case(const std::string& name) {
  const std::string path = std::string(LLMTRAIN_FIXTURES_DIR) + "/reference/" + name + ".safetensors";
  SafetensorsReader r(path);
  nlohmann::json model = nlohmann::json::parse(r.metadata().at("model"));
  model.erase("preset");
  auto ids = r.get("input_ids").shape;
  const int B = (int)ids[0], T = (int)ids[1];
  nlohmann::json cfgj{{"model", model}, {"data", {{"train", "unused"}, {"seq_len", T}, {"micro_batch", B}, {"delimiter", 0}}}};
  RunConfig cfg = config_from_json(cfgj, path);
  Model m(cfg.model);
  std::vector<float> params(m.num_params());
  for (const auto& p : m.layout().params()) r.read_f32("param." + p.name, params.data() + p.offset, p.numel);
  auto be = make_cpu_backend(m, B, T);
  be->upload_params(params.data());

  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  r.read_raw("input_ids", DType::I32, in.data(), in.size());
  r.read_raw("targets", DType::I32, tg.data(), tg.size());
  int64_t valid = 0;
  double loss = be->forward(in.data(), tg.data(), B, T, &valid) / (double)valid;
  std::vector<float> ref_loss = read_all(r, "loss");
  INFO(name << ": loss " << loss << " reference " << ref_loss[0]);
  CHECK(std::fabs(loss - ref_loss[0]) / std::fabs(ref_loss[0]) < 1e-5);

  const int V = cfg.model.vocab_size;
  std::vector<float> ref_logits = read_all(r, "logits"), logits((size_t)B * T * V);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) be->logits_at(b, t, logits.data() + ((size_t)b * T + t) * V);
  CHECK(rel_err(logits.data(), ref_logits, logits.size()) < 1e-4);

  be->zero_grad();
  be->backward(1.0f / (float)valid);
  std::vector<float> grads(m.num_params());
  be->download_grads(grads.data());
  double worst = 0;
  for (const auto& p : m.layout().params()) {
    std::vector<float> ref = read_all(r, "grad." + p.name);
    REQUIRE(ref.size() == p.numel);
    double e = rel_err(grads.data() + p.offset, ref, p.numel);
    INFO(name << ": gradient of " << p.name << " relative error " << e);
    CHECK(e < 1e-4);
    worst = std::max(worst, e);
  }
  WARN(name << ": loss " << loss << ", worst gradient relative error vs PyTorch " << worst);
}

}  // namespace

TEST_CASE("CPU backend matches PyTorch on a tiny GPT-2", "[reference]") {
  check_case("gpt2_tiny");
  check_case("gpt2_nobias_untied");
}

TEST_CASE("CPU backend matches PyTorch on a tiny LLaMA with GQA", "[reference]") { check_case("llama_tiny"); }
