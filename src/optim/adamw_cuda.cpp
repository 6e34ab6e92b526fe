// Device AdamW (the CPU twin is src/optim/adamw.cpp): one fused multi-tensor launch per step
// (kernels/cuda/adamw.cu) reads w, g, m, v and writes w, m, v, and optionally the bf16 copy of w: 28
// bytes per parameter, 30 with the bf16 copy. Same options, decay rule and state names as the CPU.
#include <cmath>
#include <map>
#include "optim/matrix_common_cuda.h"

namespace llmtrain::cuda::optim {
namespace {

class DeviceAdamW : public Optimizer {
 public:
  DeviceAdamW(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : group_(cfg.name), wd_(cfg.weight_decay) {
    beta1_ = o.at("beta1").get<double>();
    beta2_ = o.at("beta2").get<double>();
    eps_ = o.at("eps").get<double>();
    uncorrected_ = o.at("eps_mode").get<std::string>() == "uncorrected";
    for (const auto& p : params) {
      infos_.push_back(p.info);
      off_.push_back(total_);
      total_ += pad4(p.info->numel);
    }
    m_.reset(total_);
    v_.reset(total_);
    if (total_) {
      OPT_CUDA(cudaMemset(m_.data(), 0, total_ * sizeof(float)));
      OPT_CUDA(cudaMemset(v_.data(), 0, total_ * sizeof(float)));
    }
  }
  std::string type() const override { return "adamw"; }
  bool on_device() const override { return true; }
  void set_stream(void* s) override { ctx_.set_stream(static_cast<cudaStream_t>(s)); }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    if (params.size() != infos_.size())
      throw RuntimeError("optimizer." + group_ + ": step() got a different tensor list than at creation");
    if (step < 1) throw RuntimeError("optimizer." + group_ + ": AdamW steps count from 1, got " + std::to_string(step));
    bind(params);
    const double bc1 = 1.0 - std::pow(beta1_, (double)step), bc2 = 1.0 - std::pow(beta2_, (double)step);
    AdamArgs a;
    a.b1 = (float)beta1_;
    a.b2 = (float)beta2_;
    a.omb1 = 1.0f - a.b1;
    a.omb2 = 1.0f - a.b2;
    a.eps = (float)eps_;
    a.ibc1 = (float)(1.0 / bc1);
    a.ibc2 = (float)(1.0 / bc2);
    a.step_size = uncorrected_ ? (float)(lr * std::sqrt(bc2) / bc1) : lr;
    a.keep = 1.0f - lr * wd_;
    a.uncorrected = uncorrected_ ? 1 : 0;
    adamw_multi(units_.data(), chunks_.data(), chunks_.size(), a, ctx_.stream());
  }

  std::vector<StateTensor> state() override {
    std::vector<StateTensor> s;
    for (size_t i = 0; i < infos_.size(); ++i)
      s.push_back({"m/" + infos_[i]->name, infos_[i]->shape, m_.data() + off_[i], infos_[i]->numel, true});
    for (size_t i = 0; i < infos_.size(); ++i)
      s.push_back({"v/" + infos_[i]->name, infos_[i]->shape, v_.data() + off_[i], infos_[i]->numel, true});
    return s;
  }

 private:
  void bind(const std::vector<ParamRef>& params) {
    bool same = bound_.size() == params.size();
    for (size_t i = 0; same && i < params.size(); ++i)
      same = bound_[i].w == params[i].w && bound_[i].g == params[i].g && bound_[i].w_bf16 == params[i].w_bf16;
    if (same) return;
    bound_ = params;
    units_.host.clear();
    std::vector<int64_t> sizes;
    for (size_t i = 0; i < params.size(); ++i) {
      AdamUnit u{};
      u.w = params[i].w;
      u.g = params[i].g;
      u.m = m_.data() + off_[i];
      u.v = v_.data() + off_[i];
      u.wbf = params[i].w_bf16;
      u.n = (int64_t)infos_[i]->numel;
      u.decay = adamw_decays(infos_[i]->role) ? 1 : 0;
      u.vec = u.n % 4 == 0 && aligned(u.w, 16) && aligned(u.g, 16) && aligned(u.m, 16) && aligned(u.v, 16) &&
                      aligned(u.wbf, 8)
                  ? 1
                  : 0;
      units_.host.push_back(u);
      sizes.push_back(u.n);
    }
    chunks_.host = make_chunks(sizes);
    units_.upload(ctx_.stream());
    chunks_.upload(ctx_.stream());
  }

  DeviceCtx ctx_;
  std::string group_;
  float wd_;
  double beta1_ = 0.9, beta2_ = 0.95, eps_ = 1e-8;
  bool uncorrected_ = false;
  std::vector<const ParamInfo*> infos_;
  std::vector<size_t> off_;
  size_t total_ = 0;
  DeviceBuffer<float> m_, v_;
  std::vector<ParamRef> bound_;
  DeviceTable<AdamUnit> units_;
  DeviceTable<Chunk> chunks_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw_device(const GroupConfig& cfg, const nlohmann::json& o,
                                             const std::vector<ParamRef>& p) {
  return std::make_unique<DeviceAdamW>(cfg, o, p);
}

}  // namespace llmtrain::cuda::optim
