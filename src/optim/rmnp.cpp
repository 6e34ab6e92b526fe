// RMNP (Deng et al. 2026, "Row-Momentum Normalized Preconditioning"): Muon's momentum, but the
// Newton-Schulz orthogonalization is replaced by normalizing each row of U (one output neuron's
// fan-in, [out, in] layout, no transpose):
//   D_i = U_i / max(||U_i||_2, eps),  W = W (1 - lr wd) - lr max(1, sqrt(out/in)) D.
// O(out*in) per matrix instead of O(out*in*min(out, in)); rows are independent, so the update
// shards by rows with no communication.
#include "optim/optimizers.h"

#include "llmtrain/error.h"

namespace llmtrain {
namespace {

class Rmnp : public MatrixOptimizer {
 public:
  Rmnp(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : MatrixOptimizer(cfg, o, params), eps_(o.at("eps").get<float>()) {
    // Under ZeRO-1 a tensor may be a block of rows of a matrix; its scale is the whole matrix's.
    for (const auto& p : params) scale_rows_.push_back(p.whole ? p.whole->rows() : p.info->rows());
  }
  std::string type() const override { return "rmnp"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    begin_step(params);
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t rows = infos_[i]->rows(), cols = infos_[i]->cols();
      float* u = scratch(2, m_[i].size());
      momentum_step(i, params[i].g, u);
      normalize_rows(u, rows, cols, eps_, u);
      apply_update(params[i], u, lr, orth_scale("max1", scale_rows_[i], cols));
    }
  }

 private:
  float eps_;
  std::vector<int64_t> scale_rows_;
};

}  // namespace

std::unique_ptr<Optimizer> make_rmnp(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& p) {
  return std::make_unique<Rmnp>(cfg, o, p);
}

}  // namespace llmtrain
