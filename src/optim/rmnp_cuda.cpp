// Device RMNP (the CPU twin is src/optim/rmnp.cpp): one fused launch per row width
// (kernels/cuda/rmnp.cu: momentum, Nesterov, row l2 norm, shape scale, decoupled decay and the update
// with the row held in registers: 20 bytes per parameter, 22 with the bf16 copy). Same options and
// state names as the CPU optimizer.
#include <cmath>
#include <map>
#include "optim/matrix_common_cuda.h"

namespace llmtrain::cuda::optim {
namespace {

class DeviceRmnp : public DeviceMatrixOptimizer {
 public:
  DeviceRmnp(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : DeviceMatrixOptimizer(cfg, o, params), eps_(o.at("eps").get<float>()) {
    // Under ZeRO-1 a tensor may be a block of rows of a matrix; its scale is the whole matrix's.
    for (const auto& p : params)
      scales_.push_back(orth_scale("max1", p.whole ? p.whole->rows() : p.info->rows(), p.info->cols()));
  }
  std::string type() const override { return "rmnp"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    check_params(params);
    last_ = params;
    if (rebind(params)) build(params);
    RmnpArgs a{rule_.beta, 1.0f - rule_.beta, rule_.sum_form ? 1 : 0, rule_.nesterov ? 1 : 0, eps_, 1.0f - lr * wd_, lr};
    for (auto& l : launches_) rmnp_rows(l.units.data(), l.units.size(), l.rows, l.cols, l.vec, a, ctx_.stream());
  }

  bool bench_precondition() override {
    // The bare row normalisation of the momentum (the RMNP paper's timed part): D = M / ||M_row||.
    if (launches_.empty()) return false;
    if (norm_launches_.empty()) build_norm();
    for (auto& l : norm_launches_)
      normalize_rows_multi(l.units.data(), l.units.size(), l.rows, l.cols, eps_, ctx_.stream());
    return true;
  }
  double bench_precondition_work() const override {
    double n = 0;
    for (const ParamInfo* p : infos_) n += (double)p->numel;
    return 8.0 * n;  // read M, write D
  }

 private:
  struct Launch {
    int cols = 0;
    int64_t rows = 0;
    bool vec = true;
    DeviceTable<RowUnit> units;
  };

  void build_norm() {
    d_.reset(total_);
    for (const auto& l : launches_) {
      norm_launches_.emplace_back();
      Launch& nl = norm_launches_.back();
      nl.cols = l.cols;
      nl.rows = l.rows;
      for (const RowUnit& u : l.units.host) {
        RowUnit v = u;
        v.g = u.m;
        v.w = d_.data() + (u.m - m_.data());
        v.m = nullptr;
        v.wbf = nullptr;
        nl.units.host.push_back(v);
      }
      nl.units.upload(ctx_.stream());
    }
  }

  void build(const std::vector<ParamRef>& params) {
    std::map<int64_t, size_t> by_cols;
    launches_.clear();
    norm_launches_.clear();
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t cols = infos_[i]->cols(), rows = infos_[i]->rows();
      auto it = by_cols.find(cols);
      if (it == by_cols.end()) {
        it = by_cols.emplace(cols, launches_.size()).first;
        launches_.emplace_back();
        launches_.back().cols = (int)cols;
      }
      Launch& l = launches_[it->second];
      RowUnit u{};
      u.w = params[i].w;
      u.g = params[i].g;
      u.m = m_ptr(i);
      u.wbf = params[i].w_bf16;
      u.row0 = l.rows;
      u.rows = (int32_t)rows;
      u.cols = (int32_t)cols;
      u.scale = scales_[i];
      u.vec = cols % 4 == 0 && aligned(u.w, 16) && aligned(u.g, 16) && aligned(u.m, 16) && aligned(u.wbf, 8);
      l.vec = l.vec && u.vec;
      l.units.host.push_back(u);
      l.rows += rows;
    }
    for (auto& l : launches_) l.units.upload(ctx_.stream());
  }

  float eps_;
  std::vector<float> scales_;
  std::vector<Launch> launches_, norm_launches_;
  DeviceBuffer<float> d_;  // bench only
};

}  // namespace

std::unique_ptr<Optimizer> make_rmnp_device(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p) {
  return std::make_unique<DeviceRmnp>(cfg, o, p);
}

}  // namespace llmtrain::cuda::optim
