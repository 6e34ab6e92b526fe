// Internal to src/optim: the device Muon class, shared with device Newton-Muon (Muon on a
// right-preconditioned gradient) through the gradient_for hook, as src/optim/muon.h is on the CPU.
// One momentum launch writes U for every matrix into a scratch laid out by shape group; each group
// of same-shape matrices (a split fused QKV counts as three [C, C] blocks) runs Newton-Schulz as
// strided-batched bf16 GEMMs (NsEngine) and one update launch.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "optim/matrix_common_cuda.h"
#include "util/util.h"

namespace llmtrain::cuda::optim {

class DeviceMuon : public DeviceMatrixOptimizer {
 public:
  DeviceMuon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : DeviceMatrixOptimizer(cfg, o, params), ns_(ctx_) {
    nsc_ = &ns_coefficients(o.at("coefficients").get<std::string>());
    ns_steps_ = o.at("ns_steps").get<int>();
    ns_.set_symmetric(o.at("ns_symmetric").get<bool>());
    scale_ = o.at("scale").get<std::string>();
    const bool split = o.value("split_qkv", false);
    std::vector<int> blocks;
    for (const ParamInfo* info : infos_)
      blocks.push_back(split && ends_with(info->name, "attn.c_attn.weight") && info->rows() % 3 == 0 ? 3 : 1);
    layout_ = make_layout(infos_, blocks, std::vector<bool>(infos_.size(), true));
    std::vector<float> scales((size_t)layout_.units);
    for (auto& g : layout_.groups) {
      g.plan = ns_.add_plan(g.rows, g.cols, (int)g.units.size());
      for (int id : g.unit_ids) scales[(size_t)id] = orth_scale(scale_, g.rows, g.cols);
    }
    ns_.finalize();
    u_.reset(std::max<size_t>(layout_.total, 1));
    scales_.reset(std::max<size_t>(scales.size(), 1));
    if (!scales.empty()) scales_.upload(scales.data(), scales.size());
  }
  std::string type() const override { return "muon"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    check_params(params);
    last_ = params;
    if (rebind(params))
      for (auto& g : layout_.groups) build_update(g, params, ns_.result_buffer(ns_steps_), true, ctx_.stream());
    momentum(params);
    const float keep = 1.0f - lr * wd_;
    for (auto& g : layout_.groups) {
      ns_.run(g.plan, u_.data() + g.u_off, *nsc_, ns_steps_);
      update_multi(g.upd.data(), g.chunks.data(), g.chunks.size(), true, scales_.data(), keep, lr, ctx_.stream());
    }
  }

  bool bench_precondition() override {
    for (auto& g : layout_.groups) ns_.run(g.plan, u_.data() + g.u_off, *nsc_, ns_steps_);
    return true;
  }
  double bench_precondition_work() const override {
    double f = 0;
    for (const auto& g : layout_.groups) f += ns_.flops(g.plan, ns_steps_ > 0 ? ns_steps_ : nsc_->default_steps);
    return f;
  }

 protected:
  // The gradient fed to the momentum for tensor i (device memory; Newton-Muon: G K^{-1}).
  virtual const float* gradient_for(size_t i, const ParamRef& p) { return p.g; }

  void momentum(const std::vector<ParamRef>& params) {
    std::vector<const float*> src(params.size());
    for (size_t i = 0; i < params.size(); ++i) src[i] = gradient_for(i, params[i]);
    if (src != mom_src_) {
      mom_src_ = src;
      std::vector<float*> dst;
      for (size_t i = 0; i < params.size(); ++i) dst.push_back(u_.data() + layout_.u_off[i]);
      set_momentum(src, dst);
    }
    run_momentum();
  }

  NsEngine ns_;
  const NsCoefficients* nsc_ = nullptr;
  int ns_steps_ = 5;
  std::string scale_;
  Layout layout_;
  DeviceBuffer<float> u_, scales_;
  std::vector<const float*> mom_src_;
};

}  // namespace llmtrain::cuda::optim
