// Newton-Muon (Du & Su 2026): Muon on a right-preconditioned gradient. Every refresh_every steps
// (steps 1, 1 + k, 1 + 2k, ...) the trainer hands over each matrix's input activations Z [N, in];
// the second moment C = Z^T Z / N updates K = beta2 K + (1 - beta2) C (the first observation sets
// K = C). Before the momentum, G <- G (K + damping tr(K)/n I)^{-1}, where the inverse comes from a
// Cholesky factorization (double precision) when K changes and is reused until the next refresh.
// With "block": b > 0, K is block-diagonal with [b, b] blocks on the input dimension (the
// reference implementation splits GPT-2's 4C-wide MLP projection into four C blocks); damping is
// per block. A matrix never observed (or whose factorization fails) is not preconditioned.
// State: m/<name> and K/<name>; the inverse is recomputed from K after a load (same bits).
#include <unordered_map>

#include "llmtrain/error.h"
#include "cpu/linalg.h"
#include "optim/muon.h"

namespace llmtrain {
namespace {

class NewtonMuon : public Muon {
 public:
  NewtonMuon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : Muon(cfg, o, params) {
    refresh_ = o.at("refresh_every").get<int64_t>();
    beta2_ = o.at("beta2").get<double>();
    damping_ = o.at("damping").get<double>();
    const int64_t block = o.at("block").get<int64_t>();
    for (size_t i = 0; i < infos_.size(); ++i) {
      const int64_t in = infos_[i]->cols();
      const int64_t b = block > 0 && in > block ? block : in;
      if (in % b != 0)
        throw InputError("optimizer." + group_ + ".block: " + std::to_string(b) + " does not divide the input size " +
                         std::to_string(in) + " of " + infos_[i]->name);
      bs_.push_back(b);
      K_.emplace_back((size_t)(in * b), 0.0f);  // in/b blocks of [b, b]
      Kinv_.emplace_back((size_t)(in * b), 0.0f);
      count_.push_back(0);
      dirty_.push_back(true);
      index_[infos_[i]->name] = i;
    }
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
    std::vector<float> Zb((size_t)(rows * b)), Zt((size_t)(b * rows)), C((size_t)(b * b));
    const float inv_n = 1.0f / (float)rows, b2 = (float)beta2_, omb2 = 1.0f - b2;
    for (int64_t blk = 0; blk < in / b; ++blk) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < b; ++c) Zb[r * b + c] = z[r * in + blk * b + c];
      linalg::transpose(Zb.data(), Zt.data(), rows, b);
      linalg::matmul(Zt.data(), Zb.data(), C.data(), b, rows, b);
      float* K = K_[i].data() + blk * b * b;
      for (int64_t e = 0; e < b * b; ++e) {
        const float ce = C[e] * inv_n;
        K[e] = count_[i] == 0 ? ce : b2 * K[e] + omb2 * ce;
      }
    }
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
      dirty_[i] = true;  // the inverse is a function of the loaded K: recompute it
    }
  }

 protected:
  std::vector<StateTensor> extra_state() override {
    std::vector<StateTensor> s;
    for (size_t i = 0; i < infos_.size(); ++i) {
      const int64_t in = infos_[i]->cols(), b = bs_[i];
      std::vector<int64_t> shape = b == in ? std::vector<int64_t>{in, in} : std::vector<int64_t>{in / b, b, b};
      s.push_back({"K/" + infos_[i]->name, shape, K_[i].data(), K_[i].size()});
    }
    return s;
  }

  const float* gradient_for(size_t i, const ParamRef& p) override {
    if (count_[i] == 0) return p.g;
    refresh_inverse(i);
    float* out = scratch(4, m_[i].size());
    precondition(i, p.g, out);
    return out;
  }

  void effective_gradient(size_t i, const float* g, float* out) const override {
    if (count_[i] == 0 || dirty_[i])
      MatrixOptimizer::effective_gradient(i, g, out);
    else
      precondition(i, g, out);
  }

 private:
  void precondition(size_t i, const float* g, float* out) const {
    const int64_t rows = infos_[i]->rows(), in = infos_[i]->cols(), b = bs_[i];
    for (int64_t blk = 0; blk < in / b; ++blk)
      linalg::gemm<float>(rows, b, b, g + blk * b, in, Kinv_[i].data() + blk * b * b, b, out + blk * b, in);
  }

  void refresh_inverse(size_t i) {
    if (!dirty_[i]) return;
    const int64_t in = infos_[i]->cols(), b = bs_[i];
    std::vector<double> Kd((size_t)(b * b)), Ki((size_t)(b * b));
    for (int64_t blk = 0; blk < in / b; ++blk) {
      const float* K = K_[i].data() + blk * b * b;
      float* out = Kinv_[i].data() + blk * b * b;
      double tr = 0;
      for (int64_t e = 0; e < b * b; ++e) Kd[e] = K[e];
      for (int64_t d = 0; d < b; ++d) tr += Kd[d * b + d];
      const double ridge = damping_ * tr / (double)b;
      for (int64_t d = 0; d < b; ++d) Kd[d * b + d] += ridge;
      if (linalg::cholesky(Kd.data(), b)) {
        linalg::cholesky_inverse(Kd.data(), Ki.data(), b);
        for (int64_t e = 0; e < b * b; ++e) out[e] = (float)Ki[e];
      } else {  // not positive definite (e.g. all-zero inputs): leave this block unpreconditioned
        for (int64_t e = 0; e < b * b; ++e) out[e] = 0.0f;
        for (int64_t d = 0; d < b; ++d) out[d * b + d] = 1.0f;
      }
    }
    dirty_[i] = false;
  }

  int64_t refresh_ = 32;
  double beta2_ = 0.95, damping_ = 0.2;
  std::vector<int64_t> bs_;
  std::vector<std::vector<float>> K_, Kinv_;
  std::vector<int64_t> count_;
  std::vector<bool> dirty_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace

std::unique_ptr<Optimizer> make_newton_muon(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p) {
  return std::make_unique<NewtonMuon>(cfg, o, p);
}

}  // namespace llmtrain
