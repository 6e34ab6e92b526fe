// The orthogonalizing device optimizers: Muon (and Newton-Muon, Muon on a right-preconditioned
// gradient), low-rank Muon and PolarGrad. One momentum launch writes U for every matrix into a
// scratch laid out by shape group; each group of same-shape matrices (a split fused QKV counts as
// three [C, C] blocks) then runs Newton-Schulz as strided-batched bf16 GEMMs (NsEngine) and one
// update launch. Low-rank sketches (column gather, QR by cuSOLVER in fp32, two fp32 GEMMs) and
// QDWH (cuSOLVER QR / Cholesky in fp64) go matrix by matrix. Options, state names and the RNG
// stream are those of src/optim/{muon,newton_muon,lowrank_muon,polargrad}.cpp.
#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "cuda/optim_common.h"
#include "llmtrain/rng.h"

namespace llmtrain::cuda::optim {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Matrices (or row blocks) of one shape, contiguous in the U scratch, orthogonalized together.
struct ShapeGroup {
  int64_t rows = 0, cols = 0;
  std::vector<std::pair<size_t, int>> units;  // (tensor, row block)
  std::vector<int> unit_ids;                  // global unit index (scale slot)
  size_t u_off = 0;                           // first element in the U scratch
  int plan = -1;
  DeviceTable<UpdUnit> upd;
  DeviceTable<Chunk> chunks;
};

// The shared layout logic: tensors (split into `blocks[i]` row blocks) grouped by block shape;
// `u_ptr[i]` is where tensor i's U begins. Tensors with include[i] == false are left out.
struct Layout {
  std::vector<ShapeGroup> groups;
  std::vector<size_t> u_off;  // per tensor, or SIZE_MAX when not in a group
  size_t total = 0;
  int units = 0;
};

Layout make_layout(const std::vector<const ParamInfo*>& infos, const std::vector<int>& blocks,
                   const std::vector<bool>& include) {
  Layout L;
  std::map<std::pair<int64_t, int64_t>, size_t> index;
  for (size_t i = 0; i < infos.size(); ++i) {
    if (!include[i]) continue;
    const int64_t br = infos[i]->rows() / blocks[i], cols = infos[i]->cols();
    auto it = index.find({br, cols});
    if (it == index.end()) {
      it = index.emplace(std::make_pair(br, cols), L.groups.size()).first;
      L.groups.emplace_back();
      L.groups.back().rows = br;
      L.groups.back().cols = cols;
    }
    for (int b = 0; b < blocks[i]; ++b) {
      L.groups[it->second].units.push_back({i, b});
      L.groups[it->second].unit_ids.push_back(L.units++);
    }
  }
  L.u_off.assign(infos.size(), SIZE_MAX);
  for (auto& g : L.groups) {
    g.u_off = L.total;
    for (size_t k = 0; k < g.units.size(); ++k)
      if (g.units[k].second == 0) L.u_off[g.units[k].first] = L.total + k * (size_t)(g.rows * g.cols);
    L.total += pad4(g.units.size() * (size_t)(g.rows * g.cols));
  }
  return L;
}

// Update tables of a group whose direction D lives at `d` (bf16 or fp32, the group's units
// consecutive, [rows, cols] each).
void build_update(ShapeGroup& g, const std::vector<ParamRef>& params, const void* d, bool d_bf16, cudaStream_t s) {
  g.upd.host.clear();
  std::vector<int64_t> sizes;
  const int64_t n = g.rows * g.cols;
  for (size_t k = 0; k < g.units.size(); ++k) {
    const auto [i, b] = g.units[k];
    UpdUnit u{};
    u.w = params[i].w + (size_t)b * n;
    u.wbf = params[i].w_bf16 ? static_cast<char*>(params[i].w_bf16) + 2 * (size_t)b * n : nullptr;
    u.d = static_cast<const char*>(d) + (d_bf16 ? 2 : 4) * k * (size_t)n;
    u.n = n;
    u.scale_idx = g.unit_ids[k];
    u.vec = n % 4 == 0 && aligned(u.w, 16) && aligned(u.wbf, 8) && aligned(u.d, d_bf16 ? 8 : 16);
    g.upd.host.push_back(u);
    sizes.push_back(n);
  }
  g.chunks.host = make_chunks(sizes);
  g.upd.upload(s);
  g.chunks.upload(s);
}

// ---------------------------------------------------------------- Muon / Newton-Muon

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

class DeviceNewtonMuon : public DeviceMuon {
 public:
  DeviceNewtonMuon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : DeviceMuon(cfg, o, params) {
    refresh_ = o.at("refresh_every").get<int64_t>();
    beta2_ = o.at("beta2").get<double>();
    damping_ = o.at("damping").get<double>();
    const int64_t block = o.at("block").get<int64_t>();
    size_t ktotal = 0;
    int64_t bmax = 1;
    for (size_t i = 0; i < infos_.size(); ++i) {
      const int64_t in = infos_[i]->cols();
      const int64_t b = block > 0 && in > block ? block : in;
      if (in % b != 0)
        throw InputError("optimizer." + group_ + ".block: " + std::to_string(b) + " does not divide the input size " +
                         std::to_string(in) + " of " + infos_[i]->name);
      bs_.push_back(b);
      koff_.push_back(ktotal);
      ktotal += pad4((size_t)(in * b));
      bmax = std::max(bmax, b);
      count_.push_back(0);
      dirty_.push_back(true);
      index_[infos_[i]->name] = i;
    }
    K_.reset(std::max<size_t>(ktotal, 1));
    Kinv_.reset(std::max<size_t>(ktotal, 1));
    OPT_CUDA(cudaMemset(K_.data(), 0, K_.bytes()));
    OPT_CUDA(cudaMemset(Kinv_.data(), 0, Kinv_.bytes()));
    gp_.reset(std::max<size_t>(total_, 1));
    kd_.reset((size_t)(bmax * bmax));
    trs_.reset(1);
    info_.reset(1);
    int lwork = 0;
    OPT_CUSOLVER(cusolverDnDpotrf_bufferSize(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)bmax, kd_.data(), (int)bmax,
                                             &lwork));
    int lwork2 = 0;
    OPT_CUSOLVER(cusolverDnDpotri_bufferSize(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)bmax, kd_.data(), (int)bmax,
                                             &lwork2));
    work_.reset((size_t)std::max({lwork, lwork2, 1}));
  }
  std::string type() const override { return "newton_muon"; }

  bool wants_inputs(int64_t step) const override { return step >= 1 && (step - 1) % refresh_ == 0; }

  void observe_inputs(const ParamInfo& info, const float* z, int64_t rows, int64_t cols) override {
    auto it = index_.find(info.name);
    if (it == index_.end()) return;  // not one of ours
    const size_t i = it->second;
    const int64_t in = infos_[i]->cols(), b = bs_[i];
    if (cols != in)
      throw RuntimeError("optimizer." + group_ + ": inputs of " + info.name + " have " + std::to_string(cols) +
                         " columns, the matrix has " + std::to_string(in));
    if (rows <= 0 || !z) return;
    // The activations arrive on the host: upload, then K = b2 K + (1 - b2) Z_b^T Z_b / N per block
    // (column-major, z is Z^T [in, N] with ld in; block k is rows k b .. of it).
    if (zdev_.size() < (size_t)(rows * in)) zdev_.reset((size_t)(rows * in));
    OPT_CUDA(cudaMemcpyAsync(zdev_.data(), z, sizeof(float) * (size_t)(rows * in), cudaMemcpyHostToDevice,
                             ctx_.stream()));
    const float inv_n = 1.0f / (float)rows, b2 = (float)beta2_;
    const float alpha = count_[i] == 0 ? inv_n : (1.0f - b2) * inv_n, beta = count_[i] == 0 ? 0.0f : b2;
    OPT_CUBLAS(cublasSgemmStridedBatched(ctx_.blas(), CUBLAS_OP_N, CUBLAS_OP_T, (int)b, (int)b, (int)rows, &alpha,
                                         zdev_.data(), (int)in, b, zdev_.data(), (int)in, b, &beta,
                                         K_.data() + koff_[i], (int)b, b * b, (int)(in / b)));
    ++count_[i];
    dirty_[i] = true;
  }

  nlohmann::json scalar_state() const override { return {{"observed", count_}}; }
  void load_scalar_state(const nlohmann::json& j) override {
    if (!j.is_object() || !j.contains("observed") || !j["observed"].is_array() || j["observed"].size() != count_.size())
      throw InputError("optimizer." + group_ + ": newton_muon scalar state needs \"observed\" with " +
                       std::to_string(count_.size()) + " counts");
    for (size_t i = 0; i < count_.size(); ++i) {
      count_[i] = j["observed"][i].get<int64_t>();
      dirty_[i] = true;
    }
  }

 protected:
  std::vector<StateTensor> extra_state() override {
    std::vector<StateTensor> s;
    for (size_t i = 0; i < infos_.size(); ++i) {
      const int64_t in = infos_[i]->cols(), b = bs_[i];
      std::vector<int64_t> shape = b == in ? std::vector<int64_t>{in, in} : std::vector<int64_t>{in / b, b, b};
      s.push_back({"K/" + infos_[i]->name, shape, K_.data() + koff_[i], (size_t)(in * b), true});
    }
    return s;
  }

  const float* gradient_for(size_t i, const ParamRef& p) override {
    if (count_[i] == 0) return p.g;
    refresh_inverse(i);
    float* out = gp_.data() + off_[i];
    precondition(i, p.g, out);
    return out;
  }

  const float* effective_gradient(size_t i, const float* g) override {
    if (count_[i] == 0 || dirty_[i]) return g;
    float* out = gp_.data() + off_[i];
    precondition(i, g, out);
    return out;
  }

 private:
  void precondition(size_t i, const float* g, float* out) {
    const int64_t rows = infos_[i]->rows(), in = infos_[i]->cols(), b = bs_[i];
    const float one = 1.0f, zero = 0.0f;
    // out[:, blk] = G[:, blk] Kinv_blk: column-major out^T_blk [b, rows] = Kinv_blk (symmetric) G^T_blk.
    OPT_CUBLAS(cublasSgemmStridedBatched(ctx_.blas(), CUBLAS_OP_N, CUBLAS_OP_N, (int)b, (int)rows, (int)b, &one,
                                         Kinv_.data() + koff_[i], (int)b, b * b, g, (int)in, b, &zero, out, (int)in, b,
                                         (int)(in / b)));
  }

  void refresh_inverse(size_t i) {
    if (!dirty_[i]) return;
    const int64_t in = infos_[i]->cols(), b = bs_[i];
    for (int64_t blk = 0; blk < in / b; ++blk) {
      const float* K = K_.data() + koff_[i] + blk * b * b;
      float* out = Kinv_.data() + koff_[i] + blk * b * b;
      ridge_to_f64(K, kd_.data(), b, damping_, trs_.data(), ctx_.stream());
      OPT_CUSOLVER(cusolverDnDpotrf(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)b, kd_.data(), (int)b, work_.data(),
                                    (int)work_.size(), info_.data()));
      int info = 0;
      OPT_CUDA(cudaMemcpyAsync(&info, info_.data(), sizeof(int), cudaMemcpyDeviceToHost, ctx_.stream()));
      OPT_CUDA(cudaStreamSynchronize(ctx_.stream()));
      if (info == 0) {
        OPT_CUSOLVER(cusolverDnDpotri(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)b, kd_.data(), (int)b, work_.data(),
                                      (int)work_.size(), info_.data()));
        sym_lower_to_f32(kd_.data(), out, b, ctx_.stream());
      } else {  // not positive definite (e.g. all-zero inputs): leave this block unpreconditioned
        set_identity(out, b, ctx_.stream());
      }
    }
    dirty_[i] = false;
  }

  int64_t refresh_ = 32;
  double beta2_ = 0.95, damping_ = 0.2;
  std::vector<int64_t> bs_;
  std::vector<size_t> koff_;
  DeviceBuffer<float> K_, Kinv_, gp_, zdev_;
  DeviceBuffer<double> kd_, trs_, work_;
  DeviceBuffer<int> info_;
  std::vector<int64_t> count_;
  std::vector<bool> dirty_;
  std::unordered_map<std::string, size_t> index_;
};

// ---------------------------------------------------------------- low-rank Muon

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

// ---------------------------------------------------------------- PolarGrad

// QDWH in double on the device, the same iteration and stopping rule as polar_qdwh (CPU).
class Qdwh {
 public:
  Qdwh(DeviceCtx& ctx, const std::vector<const ParamInfo*>& infos) : ctx_(ctx) {
    size_t x = 1, z = 1, c = 1;
    int64_t cmax = 1;
    for (const ParamInfo* p : infos) {
      const int64_t R = std::max(p->rows(), p->cols()), C = std::min(p->rows(), p->cols());
      x = std::max(x, (size_t)(R * C));
      z = std::max(z, (size_t)((R + C) * C));
      c = std::max(c, (size_t)(C * C));
      cmax = std::max(cmax, C);
    }
    X_.reset(x);
    Xn_.reset(x);
    D_.reset(x);
    Z_.reset(z);
    C_.reset(c);
    tau_.reset((size_t)cmax);
    info_.reset(1);
    int lw = 1;
    for (const ParamInfo* p : infos) {
      const int R = (int)std::max(p->rows(), p->cols()), C = (int)std::min(p->rows(), p->cols()), zr = R + C;
      int a = 0, b = 0, d = 0, e = 0;
      OPT_CUSOLVER(cusolverDnDgeqrf_bufferSize(ctx_.solver(), zr, C, Z_.data(), zr, &a));
      OPT_CUSOLVER(cusolverDnDorgqr_bufferSize(ctx_.solver(), zr, C, C, Z_.data(), zr, tau_.data(), &b));
      OPT_CUSOLVER(cusolverDnDpotrf_bufferSize(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, C, C_.data(), C, &d));
      OPT_CUSOLVER(cusolverDnDpotri_bufferSize(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, C, C_.data(), C, &e));
      lw = std::max({lw, a, b, d, e});
    }
    work_.reset((size_t)lw);
  }

  // out [m, n] (fp32 row-major) = polar factor of G [m, n].
  void run(const float* G, int64_t m, int64_t n, float* out) {
    cudaStream_t s = ctx_.stream();
    cublasHandle_t h = ctx_.blas();
    // Column-major tall X [R, C]: a wide G's buffer already is G^T; a tall G is transposed.
    const bool wide = m < n;
    const int64_t R = wide ? n : m, C = wide ? m : n, zr = R + C;
    const int nel = (int)(R * C);
    f32_to_f64(G, X_.data(), m, n, !wide, s);
    double alpha = 0;
    OPT_CUBLAS(cublasDnrm2(h, nel, X_.data(), 1, &alpha));  // >= ||G||_2; synchronises
    if (!(alpha > 0)) {
      OPT_CUDA(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)(m * n), s));
      return;
    }
    const double inv = 1.0 / alpha;
    OPT_CUBLAS(cublasDscal(h, nel, &inv, X_.data(), 1));
    double l = 1e-12;
    const double eps = 2.220446049250313e-16;
    double* X = X_.data();
    double* Xn = Xn_.data();
    for (int it = 0; it < 40; ++it) {
      const double l2 = l * l;
      const double gam = std::cbrt(4.0 * (1.0 - l2) / (l2 * l2));
      const double sq = std::sqrt(1.0 + gam);
      const double a = sq + 0.5 * std::sqrt(8.0 - 4.0 * gam + 8.0 * (2.0 - l2) / (l2 * sq));
      const double b = (a - 1.0) * (a - 1.0) / 4.0;
      const double c = a + b - 1.0;
      const double zero = 0.0, bc = b / c;
      if (c > 100) {
        const double sc = std::sqrt(c), w = (a - b / c) / sc;
        qdwh_stack(X, Z_.data(), R, C, sc, s);
        OPT_CUSOLVER(cusolverDnDgeqrf(ctx_.solver(), (int)zr, (int)C, Z_.data(), (int)zr, tau_.data(), work_.data(),
                                      (int)work_.size(), info_.data()));
        OPT_CUSOLVER(cusolverDnDorgqr(ctx_.solver(), (int)zr, (int)C, (int)C, Z_.data(), (int)zr, tau_.data(),
                                      work_.data(), (int)work_.size(), info_.data()));
        // Xn = w Q1 Q2^T + (b/c) X.
        OPT_CUBLAS(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)R, (int)C, (int)C, &w, Z_.data(), (int)zr,
                               Z_.data() + R, (int)zr, &zero, Xn, (int)R));
      } else {
        const double w = a - b / c;
        OPT_CUBLAS(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)C, (int)C, (int)R, &c, X, (int)R, X, (int)R, &zero,
                               C_.data(), (int)C));
        add_diag(C_.data(), C, 1.0, s);
        OPT_CUSOLVER(cusolverDnDpotrf(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)C, C_.data(), (int)C, work_.data(),
                                      (int)work_.size(), info_.data()));
        int info = 0;
        OPT_CUDA(cudaMemcpyAsync(&info, info_.data(), sizeof(int), cudaMemcpyDeviceToHost, s));
        OPT_CUDA(cudaStreamSynchronize(s));
        if (info != 0) throw RuntimeError("QDWH (device): Cholesky of I + cX^TX failed");
        OPT_CUSOLVER(cusolverDnDpotri(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)C, C_.data(), (int)C, work_.data(),
                                      (int)work_.size(), info_.data()));
        // Xn = w X (I + c X^T X)^{-1} + (b/c) X, the inverse read from its lower triangle.
        OPT_CUBLAS(cublasDsymm(h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, (int)R, (int)C, &w, C_.data(), (int)C, X,
                               (int)R, &zero, Xn, (int)R));
      }
      OPT_CUBLAS(cublasDaxpy(h, nel, &bc, X, 1, Xn, 1));
      l = std::min(1.0, l * (a + b * l2) / (1.0 + c * l2));
      bool stop = false;
      if (1.0 - l <= 5 * eps) {  // l is data-independent: only then is the change worth measuring
        const double one = 1.0, minus = -1.0;
        OPT_CUBLAS(cublasDgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)R, (int)C, &one, Xn, (int)R, &minus, X, (int)R,
                               D_.data(), (int)R));
        double diff = 0;
        OPT_CUBLAS(cublasDnrm2(h, nel, D_.data(), 1, &diff));
        stop = diff <= std::cbrt(5 * eps);
      }
      std::swap(X, Xn);
      if (stop) break;
    }
    f64_to_f32(X, out, m, n, !wide, s);
  }

 private:
  DeviceCtx& ctx_;
  DeviceBuffer<double> X_, Xn_, D_, Z_, C_, tau_, work_;
  DeviceBuffer<int> info_;
};

class DevicePolarGrad : public DeviceMatrixOptimizer {
 public:
  DevicePolarGrad(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : DeviceMatrixOptimizer(cfg, o, params), ns_(ctx_) {
    qdwh_ = o.at("polar").get<std::string>() == "qdwh";
    nsc_ = &ns_coefficients(o.at("coefficients").get<std::string>());
    ns_steps_ = o.at("ns_steps").get<int>();
    ns_.set_symmetric(o.at("ns_symmetric").get<bool>());
    layout_ = make_layout(infos_, std::vector<int>(infos_.size(), 1), std::vector<bool>(infos_.size(), true));
    if (qdwh_) {
      qdwh_impl_ = std::make_unique<Qdwh>(ctx_, infos_);
      p_.reset(std::max<size_t>(layout_.total, 1));
    } else {
      for (auto& g : layout_.groups) g.plan = ns_.add_plan(g.rows, g.cols, (int)g.units.size());
      ns_.finalize();
    }
    u_.reset(std::max<size_t>(layout_.total, 1));
    scales_.reset(std::max<size_t>(infos_.size(), 1));
    partials_.reset(kNormParts);
  }
  std::string type() const override { return "polargrad"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    check_params(params);
    last_ = params;
    if (rebind(params)) build(params);
    run_momentum();
    const float keep = 1.0f - lr * wd_;
    for (auto& g : layout_.groups) {
      const int64_t n = g.rows * g.cols;
      const float* U = u_.data() + g.u_off;
      if (qdwh_) {
        float* P = p_.data() + g.u_off;
        for (size_t k = 0; k < g.units.size(); ++k) qdwh_impl_->run(U + k * n, g.rows, g.cols, P + k * n);
        for (size_t k = 0; k < g.units.size(); ++k)
          dot_to_scale(U + k * n, P + k * n, false, n, partials_.data(), scales_.data() + g.unit_ids[k], ctx_.stream());
      } else {
        const uint16_t* P = static_cast<const uint16_t*>(ns_.run(g.plan, U, *nsc_, ns_steps_));
        for (size_t k = 0; k < g.units.size(); ++k)
          dot_to_scale(U + k * n, P + k * n, true, n, partials_.data(), scales_.data() + g.unit_ids[k], ctx_.stream());
      }
      // nu = <U, P> is the scale: W = W (1 - lr wd) - lr nu P.
      update_multi(g.upd.data(), g.chunks.data(), g.chunks.size(), !qdwh_, scales_.data(), keep, lr, ctx_.stream());
    }
  }

 private:
  void build(const std::vector<ParamRef>& params) {
    for (auto& g : layout_.groups) {
      const void* d = qdwh_ ? static_cast<const void*>(p_.data() + g.u_off) : ns_.result_buffer(ns_steps_);
      build_update(g, params, d, !qdwh_, ctx_.stream());
    }
    std::vector<const float*> src;
    std::vector<float*> dst;
    for (size_t i = 0; i < params.size(); ++i) {
      src.push_back(params[i].g);
      dst.push_back(u_.data() + layout_.u_off[i]);
    }
    set_momentum(src, dst);
  }

  NsEngine ns_;
  bool qdwh_ = true;
  const NsCoefficients* nsc_ = nullptr;
  int ns_steps_ = 8;
  Layout layout_;
  std::unique_ptr<Qdwh> qdwh_impl_;
  DeviceBuffer<float> u_, p_, scales_;
  DeviceBuffer<double> partials_;
};

}  // namespace

std::unique_ptr<Optimizer> make_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p, bool newton) {
  if (newton) return std::make_unique<DeviceNewtonMuon>(cfg, o, p);
  return std::make_unique<DeviceMuon>(cfg, o, p);
}

std::unique_ptr<Optimizer> make_lowrank_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                    const std::vector<ParamRef>& p, uint64_t seed) {
  return std::make_unique<DeviceLowRankMuon>(cfg, o, p, seed);
}

std::unique_ptr<Optimizer> make_polargrad_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                 const std::vector<ParamRef>& p) {
  return std::make_unique<DevicePolarGrad>(cfg, o, p);
}

}  // namespace llmtrain::cuda::optim
