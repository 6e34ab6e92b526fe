// AdamW (Loshchilov & Hutter) with bias correction and decoupled weight decay. Decay applies to
// the weight roles (hidden_matrix, embedding, lm_head), never to norm gains or biases. With
// t = step (from 1), bc1 = 1 - beta1^t, bc2 = 1 - beta2^t:
//   m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2,  w = w (1 - lr wd) - lr u
//   eps_mode "standard":    u = (m / bc1) / (sqrt(v / bc2) + eps)                  (PyTorch AdamW)
//   eps_mode "uncorrected": u = (sqrt(bc2) / bc1) m / (sqrt(v) + eps)             (eps added to the
//     uncorrected sqrt(v): the original Adam paper's efficient form, used by the MARS / RMNP code;
//     it equals "standard" with eps replaced by eps / sqrt(bc2), so eps matters more early on).
#include <cmath>

#include "llmtrain/error.h"
#include "optim/optimizers.h"

namespace llmtrain {
namespace {

class AdamW : public Optimizer {
 public:
  AdamW(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : group_(cfg.name), wd_(cfg.weight_decay) {
    beta1_ = o.at("beta1").get<double>();
    beta2_ = o.at("beta2").get<double>();
    eps_ = o.at("eps").get<double>();
    uncorrected_ = o.at("eps_mode").get<std::string>() == "uncorrected";
    for (const auto& p : params) {
      infos_.push_back(p.info);
      m_.emplace_back(p.info->numel, 0.0f);
      v_.emplace_back(p.info->numel, 0.0f);
    }
  }
  std::string type() const override { return "adamw"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    if (params.size() != infos_.size())
      throw RuntimeError("optimizer." + group_ + ": step() got a different tensor list than at creation");
    if (step < 1) throw RuntimeError("optimizer." + group_ + ": AdamW steps count from 1, got " + std::to_string(step));
    const double bc1 = 1.0 - std::pow(beta1_, (double)step), bc2 = 1.0 - std::pow(beta2_, (double)step);
    AdamArgs a;
    a.b1 = (float)beta1_;
    a.b2 = (float)beta2_;
    a.eps = (float)eps_;
    a.ibc1 = (float)(1.0 / bc1);
    a.ibc2 = (float)(1.0 / bc2);
    a.step_size = uncorrected_ ? (float)(lr * std::sqrt(bc2) / bc1) : lr;
    a.uncorrected = uncorrected_;
    for (size_t i = 0; i < params.size(); ++i) {
      a.keep = adamw_decays(infos_[i]->role) ? 1.0f - lr * wd_ : 1.0f;
      adamw_update(params[i].w, params[i].g, m_[i].data(), v_[i].data(), (int64_t)m_[i].size(), a);
    }
  }

  std::vector<StateTensor> state() override {
    std::vector<StateTensor> s;
    for (size_t i = 0; i < infos_.size(); ++i) s.push_back({"m/" + infos_[i]->name, infos_[i]->shape, m_[i].data(), m_[i].size()});
    for (size_t i = 0; i < infos_.size(); ++i) s.push_back({"v/" + infos_[i]->name, infos_[i]->shape, v_[i].data(), v_[i].size()});
    return s;
  }

 private:
  std::string group_;
  float wd_;
  double beta1_ = 0.9, beta2_ = 0.95, eps_ = 1e-8;
  bool uncorrected_ = false;
  std::vector<const ParamInfo*> infos_;
  std::vector<std::vector<float>> m_, v_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& p) {
  return std::make_unique<AdamW>(cfg, o, p);
}

}  // namespace llmtrain
