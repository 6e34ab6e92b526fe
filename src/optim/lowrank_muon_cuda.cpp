// Device low-rank Muon (the CPU twin is src/optim/lowrank_muon.cpp): matrices above the full
// threshold are sketched matrix by matrix (column gather, QR by cuSOLVER in fp32, two fp32 GEMMs);
// the others run batched Newton-Schulz like Muon. Same options, state names and RNG stream.
#include <algorithm>
#include <cmath>

#include "llmtrain/rng.h"
#include "optim/matrix_common_cuda.h"

namespace llmtrain::cuda::optim {
namespace {

class DeviceLowRankMuon : public DeviceMatrixOptimizer {
 public:
  DeviceLowRankMuon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params,
                    uint64_t seed)
      : DeviceMatrixOptimizer(cfg, o, params), ns_(ctx_), rng_(seed) {
    nsc_ = &ns_coefficients(o.at("coefficients").get<std::string>());
    ns_steps_ = o.at("ns_steps").get<int>();
    ns_.set_symmetric(o.at("ns_symmetric").get<bool>());
    scale_ = o.at("scale").get<std::string>();
    rank_ = o.at("rank").get<int64_t>();
    full_threshold_ = o.at("full_threshold").get<int64_t>();
    std::vector<bool> full(infos_.size());
    int64_t qmax = 1, pmax = 1;
    for (size_t i = 0; i < infos_.size(); ++i) {
      const int64_t rows = infos_[i]->rows(), cols = infos_[i]->cols();
      full[i] = std::min(rows, cols) <= full_threshold_ || rank_ >= std::min(rows, cols);
      if (!full[i]) {
        lowrank_.push_back(i);
        qmax = std::max(qmax, rows * rank_);
        pmax = std::max(pmax, rank_ * cols);
      }
    }
    layout_ = make_layout(infos_, std::vector<int>(infos_.size(), 1), full);
    std::vector<float> scales(infos_.size());
    for (auto& g : layout_.groups) g.plan = ns_.add_plan(g.rows, g.cols, (int)g.units.size());
    // Full matrices: scale slot = their unit id; low-rank ones take the slots after them.
    for (auto& g : layout_.groups)
      for (size_t k = 0; k < g.units.size(); ++k)
        scales[(size_t)g.unit_ids[k]] = orth_scale(scale_, g.rows, g.cols);
    int slot = layout_.units;
    size_t lr_total = 0;
    for (size_t i : lowrank_) {
      lr_slot_.push_back(slot);
      scales[(size_t)slot++] = orth_scale(scale_, infos_[i]->rows(), infos_[i]->cols());
      plans_lr_.push_back(ns_.add_plan(rank_, infos_[i]->cols(), 1));
      lr_u_off_.push_back(layout_.total + lr_total);
      lr_total += pad4(infos_[i]->numel);
    }
    ns_.finalize();
    u_.reset(std::max<size_t>(layout_.total + lr_total, 1));
    o_.reset(std::max<size_t>(lr_total, 1));
    scales_.reset(std::max<size_t>(scales.size(), 1));
    if (!scales.empty()) scales_.upload(scales.data(), scales.size());
    if (!lowrank_.empty()) {
      q_.reset((size_t)qmax);
      p_.reset((size_t)pmax);
      tau_.reset((size_t)rank_);
      idx_.reset((size_t)rank_);
      info_.reset(1);
      int lw = 1;
      for (size_t i : lowrank_) {
        const int m = (int)infos_[i]->rows(), k = (int)rank_;
        int a = 0, b = 0;
        OPT_CUSOLVER(cusolverDnSgeqrf_bufferSize(ctx_.solver(), m, k, q_.data(), m, &a));
        OPT_CUSOLVER(cusolverDnSorgqr_bufferSize(ctx_.solver(), m, k, k, q_.data(), m, tau_.data(), &b));
        lw = std::max({lw, a, b});
      }
      work_.reset((size_t)lw);
    }
  }
  std::string type() const override { return "lowrank_muon"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    check_params(params);
    last_ = params;
    if (rebind(params)) build(params);
    run_momentum();
    const float keep = 1.0f - lr * wd_;
    for (auto& g : layout_.groups) {
      ns_.run(g.plan, u_.data() + g.u_off, *nsc_, ns_steps_);
      update_multi(g.upd.data(), g.chunks.data(), g.chunks.size(), true, scales_.data(), keep, lr, ctx_.stream());
    }
    // The sketches, in tensor order: the RNG draws exactly as on the CPU.
    for (size_t k = 0; k < lowrank_.size(); ++k) {
      const size_t i = lowrank_[k];
      const int64_t m = infos_[i]->rows(), n = infos_[i]->cols(), r = rank_;
      const std::vector<int64_t> idx = sample_columns(rng_, n, r);
      OPT_CUDA(cudaMemcpyAsync(idx_.data(), idx.data(), sizeof(int64_t) * (size_t)r, cudaMemcpyHostToDevice,
                               ctx_.stream()));
      const float* U = u_.data() + lr_u_off_[k];
      gather_cols_colmajor(U, m, n, idx_.data(), r, q_.data(), ctx_.stream());
      OPT_CUSOLVER(cusolverDnSgeqrf(ctx_.solver(), (int)m, (int)r, q_.data(), (int)m, tau_.data(), work_.data(),
                                    (int)work_.size(), info_.data()));
      OPT_CUSOLVER(cusolverDnSorgqr(ctx_.solver(), (int)m, (int)r, (int)r, q_.data(), (int)m, tau_.data(),
                                    work_.data(), (int)work_.size(), info_.data()));
      const float one = 1.0f, zero = 0.0f;
      // P [r, n] row-major = Q^T U: column-major P^T [n, r] = U^T [n, m] Q [m, r].
      OPT_CUBLAS(cublasSgemm(ctx_.blas(), CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)r, (int)m, &one, U, (int)n,
                             q_.data(), (int)m, &zero, p_.data(), (int)n));
      const void* nsp = ns_.run(plans_lr_[k], p_.data(), *nsc_, ns_steps_);
      cast_bf16_to_f32(nsp, p_.data(), r * n, ctx_.stream());
      // O [m, n] = Q NS(P): column-major O^T [n, m] = NS(P)^T [n, r] Q^T.
      OPT_CUBLAS(cublasSgemm(ctx_.blas(), CUBLAS_OP_N, CUBLAS_OP_T, (int)n, (int)m, (int)r, &one, p_.data(), (int)n,
                             q_.data(), (int)m, &zero, o_.data() + (lr_u_off_[k] - layout_.total), (int)n));
    }
    update_multi(lr_upd_.data(), lr_chunks_.data(), lr_chunks_.size(), false, scales_.data(), keep, lr,
                 ctx_.stream());
  }

  nlohmann::json scalar_state() const override { return {{"rng", std::to_string(rng_.state())}}; }
  void load_scalar_state(const nlohmann::json& j) override {
    if (!j.is_object() || !j.contains("rng") || !j["rng"].is_string())
      throw InputError("optimizer." + group_ + ": lowrank_muon scalar state has no \"rng\" string");
    rng_.set_state(std::stoull(j["rng"].get<std::string>()));
  }

 private:
  void build(const std::vector<ParamRef>& params) {
    for (auto& g : layout_.groups) build_update(g, params, ns_.result_buffer(ns_steps_), true, ctx_.stream());
    std::vector<const float*> src;
    std::vector<float*> dst;
    size_t next_lr = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const bool low = next_lr < lowrank_.size() && lowrank_[next_lr] == i;
      src.push_back(params[i].g);
      dst.push_back(u_.data() + (low ? lr_u_off_[next_lr] : layout_.u_off[i]));
      if (low) ++next_lr;
    }
    set_momentum(src, dst);
    lr_upd_.host.clear();
    std::vector<int64_t> sizes;
    for (size_t k = 0; k < lowrank_.size(); ++k) {
      const size_t i = lowrank_[k];
      UpdUnit u{};
      u.w = params[i].w;
      u.wbf = params[i].w_bf16;
      u.d = o_.data() + (lr_u_off_[k] - layout_.total);
      u.n = (int64_t)infos_[i]->numel;
      u.scale_idx = lr_slot_[k];
      u.vec = u.n % 4 == 0 && aligned(u.w, 16) && aligned(u.wbf, 8) && aligned(u.d, 16);
      lr_upd_.host.push_back(u);
      sizes.push_back(u.n);
    }
    lr_chunks_.host = make_chunks(sizes);
    lr_upd_.upload(ctx_.stream());
    lr_chunks_.upload(ctx_.stream());
  }

  NsEngine ns_;
  Rng rng_;
  const NsCoefficients* nsc_ = nullptr;
  int ns_steps_ = 5;
  std::string scale_;
  int64_t rank_ = 128, full_threshold_ = 500;
  Layout layout_;
  std::vector<size_t> lowrank_, lr_u_off_;
  std::vector<int> lr_slot_, plans_lr_;
  DeviceBuffer<float> u_, o_, scales_, q_, p_, tau_, work_;
  DeviceBuffer<int64_t> idx_;
  DeviceBuffer<int> info_;
  DeviceTable<UpdUnit> lr_upd_;
  DeviceTable<Chunk> lr_chunks_;
};

}  // namespace

std::unique_ptr<Optimizer> make_lowrank_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                    const std::vector<ParamRef>& p, uint64_t seed) {
  return std::make_unique<DeviceLowRankMuon>(cfg, o, p, seed);
}

}  // namespace llmtrain::cuda::optim
