// Device Newton-Muon (the CPU twin is src/optim/newton_muon.cpp): device Muon on G K^{-1}, with the
// input second moment K = E[z z^T] of each matrix accumulated by cuBLAS from the activations the
// trainer hands over, and its damped inverse refreshed by cuSOLVER Cholesky in fp64.
#include <algorithm>
#include <unordered_map>

#include "optim/muon_cuda.h"

namespace llmtrain::cuda::optim {
namespace {

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

}  // namespace

std::unique_ptr<Optimizer> make_newton_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                   const std::vector<ParamRef>& p) {
  return std::make_unique<DeviceNewtonMuon>(cfg, o, p);
}

}  // namespace llmtrain::cuda::optim
