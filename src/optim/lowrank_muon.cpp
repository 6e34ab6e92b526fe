// Low-rank Muon: Muon whose orthogonalization runs on a random rank-k sketch. Each step and for
// each matrix X = U [m, n] (the momentum-rule output), k distinct columns idx are drawn afresh,
// Q = qr(X[:, idx]) [m, k], and the update direction is O = Q NS(Q^T X) = NS(Q Q^T X): the
// orthogonalized projection of X on the span of the sampled columns, rank <= k, at O(m n k)
// instead of O(m n min(m, n)). Matrices with min(m, n) <= full_threshold (or k >= min(m, n))
// take plain Muon. The sampling RNG is the optimizer's scalar state, so a resume is exact.
#include <string>

#include "llmtrain/error.h"
#include "llmtrain/rng.h"
#include "optim/optimizers.h"

namespace llmtrain {
namespace {

class LowRankMuon : public MatrixOptimizer {
 public:
  LowRankMuon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params, uint64_t seed)
      : MatrixOptimizer(cfg, o, params), rng_(seed) {
    ns_ = &ns_coefficients(o.at("coefficients").get<std::string>());
    ns_steps_ = o.at("ns_steps").get<int>();
    scale_ = o.at("scale").get<std::string>();
    rank_ = o.at("rank").get<int64_t>();
    full_threshold_ = o.at("full_threshold").get<int64_t>();
  }
  std::string type() const override { return "lowrank_muon"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    begin_step(params);
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t rows = infos_[i]->rows(), cols = infos_[i]->cols();
      float* u = scratch(2, m_[i].size());
      float* o = scratch(3, m_[i].size());
      momentum_step(i, params[i].g, u);
      if (std::min(rows, cols) <= full_threshold_ || rank_ >= std::min(rows, cols)) {
        newton_schulz(u, rows, cols, *ns_, ns_steps_, o);
      } else {
        const std::vector<int64_t> idx = sample_columns(rng_, cols, rank_);
        lowrank_orthogonalize(u, rows, cols, idx, *ns_, ns_steps_, o);
      }
      apply_update(params[i], o, lr, orth_scale(scale_, rows, cols));
    }
  }

  nlohmann::json scalar_state() const override { return {{"rng", std::to_string(rng_.state())}}; }
  void load_scalar_state(const nlohmann::json& j) override {
    if (!j.is_object() || !j.contains("rng") || !j["rng"].is_string())
      throw InputError("optimizer." + group_ + ": lowrank_muon scalar state has no \"rng\" string");
    rng_.set_state(std::stoull(j["rng"].get<std::string>()));
  }

 private:
  Rng rng_;
  const NsCoefficients* ns_ = nullptr;
  int ns_steps_ = 5;
  std::string scale_;
  int64_t rank_ = 128, full_threshold_ = 500;
};

}  // namespace

std::unique_ptr<Optimizer> make_lowrank_muon(const GroupConfig& cfg, const nlohmann::json& o,
                                             const std::vector<ParamRef>& p, uint64_t seed) {
  return std::make_unique<LowRankMuon>(cfg, o, p, seed);
}

}  // namespace llmtrain
