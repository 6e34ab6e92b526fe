// PolarGrad (Lau, Long & Su 2025, momentum-first form): U from the momentum rule, the polar
// decomposition U = P H (P = polar factor, H symmetric PSD), and a step along P scaled by the
// nuclear norm of U, nu = tr(H) = <U, P>_F:
//   W = W (1 - lr wd) - lr nu P.
// P comes from QDWH ("polar": "qdwh", exact to fp32, so nu is the nuclear norm) or from a
// Newton-Schulz set ("polar": "ns"; nu = <U, P> is then the nuclear norm of the approximation).
// Unlike Muon there is no shape scale: nu already carries the magnitude of the momentum.
#include "llmtrain/error.h"
#include "cpu/linalg.h"
#include "optim/optimizers.h"

namespace llmtrain {
namespace {

class PolarGrad : public MatrixOptimizer {
 public:
  PolarGrad(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : MatrixOptimizer(cfg, o, params) {
    qdwh_ = o.at("polar").get<std::string>() == "qdwh";
    ns_ = &ns_coefficients(o.at("coefficients").get<std::string>());
    ns_steps_ = o.at("ns_steps").get<int>();
  }
  std::string type() const override { return "polargrad"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    begin_step(params);
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t rows = infos_[i]->rows(), cols = infos_[i]->cols();
      float* u = scratch(2, m_[i].size());
      float* p = scratch(3, m_[i].size());
      momentum_step(i, params[i].g, u);
      if (qdwh_)
        polar_qdwh(u, rows, cols, p);
      else
        newton_schulz(u, rows, cols, *ns_, ns_steps_, p);
      const double nu = linalg::frobenius_dot(u, p, rows * cols);
      apply_update(params[i], p, lr, (float)nu);
    }
  }

 private:
  bool qdwh_ = true;
  const NsCoefficients* ns_ = nullptr;
  int ns_steps_ = 8;
};

}  // namespace

std::unique_ptr<Optimizer> make_polargrad(const GroupConfig& cfg, const nlohmann::json& o,
                                          const std::vector<ParamRef>& p) {
  return std::make_unique<PolarGrad>(cfg, o, p);
}

}  // namespace llmtrain
