// Muon: momentum, Newton-Schulz orthogonalization on the short side, decoupled weight decay and
// the shape scale (see muon.h for the rule, optimizers.h for the momentum forms).
#include "optim/muon.h"

#include "llmtrain/error.h"
#include "util/util.h"

namespace llmtrain {

Muon::Muon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
    : MatrixOptimizer(cfg, o, params) {
  ns_ = &ns_coefficients(o.at("coefficients").get<std::string>());
  ns_steps_ = o.at("ns_steps").get<int>();
  scale_ = o.at("scale").get<std::string>();
  const bool split = o.value("split_qkv", false);
  for (const ParamInfo* info : infos_)
    blocks_.push_back(split && ends_with(info->name, "attn.c_attn.weight") && info->rows() % 3 == 0 ? 3 : 1);
}

float Muon::orthogonalize(size_t i, const float* u, float* o) const {
  const int64_t rows = infos_[i]->rows(), cols = infos_[i]->cols();
  const int nb = blocks_[i];
  const int64_t br = rows / nb;
  for (int b = 0; b < nb; ++b) newton_schulz(u + b * br * cols, br, cols, *ns_, ns_steps_, o + b * br * cols);
  return orth_scale(scale_, br, cols);
}

void Muon::step(const std::vector<ParamRef>& params, float lr, int64_t step) {
  begin_step(params);
  for (size_t i = 0; i < params.size(); ++i) {
    const size_t n = m_[i].size();
    float* u = scratch(2, n);
    float* o = scratch(3, n);
    momentum_step(i, gradient_for(i, params[i]), u);
    const float s = orthogonalize(i, u, o);
    apply_update(params[i], o, lr, s);
  }
}

std::unique_ptr<Optimizer> make_muon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& p) {
  return std::make_unique<Muon>(cfg, o, p);
}

}  // namespace llmtrain
