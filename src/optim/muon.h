// Internal to src/optim: the Muon optimizer class, shared with Newton-Muon (which is Muon with a
// right preconditioner on the gradient) through the gradient_for hook.
#pragma once
#include "optim/optimizers.h"

namespace llmtrain {

// Muon (Jordan et al. 2024): U from the momentum rule of MatrixOptimizer, O = NS(U) on the short
// side, W = W (1 - lr wd) - lr s O with s = orth_scale(scale, out, in). With split_qkv, a GPT-2
// fused attention projection (name ending "attn.c_attn.weight", [3C, C]) is orthogonalized as
// its three [C, C] row blocks q, k, v (and scaled per block).
class Muon : public MatrixOptimizer {
 public:
  Muon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params);
  std::string type() const override { return "muon"; }
  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override;

 protected:
  // The gradient fed to the momentum (Newton-Muon returns G K^{-1}).
  virtual const float* gradient_for(size_t i, const ParamRef& p) { return p.g; }
  // O = NS(U) for tensor i (per row block when split); returns the update scale s.
  float orthogonalize(size_t i, const float* u, float* o) const;

  const NsCoefficients* ns_ = nullptr;
  int ns_steps_ = 5;
  std::string scale_;
  std::vector<int> blocks_;  // row blocks per tensor: 3 for a split fused QKV, else 1
};

}  // namespace llmtrain
