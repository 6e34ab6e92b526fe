// The CPU reference model: GPT-2 and LLaMA forward and backward composed from the ops of
// src/cpu/ops.h, templated on the float type so that the fp32 training backend and the fp64
// whole-model finite-difference tests run the very same code. Activations of every layer are kept
// for backward; gradient scratch is one layer's worth, reused from the last layer to the first,
// with a single residual-gradient buffer since every block is x + attn(x) + mlp(x + attn(x)).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "llmtrain/error.h"
#include "llmtrain/model.h"

namespace llmtrain::cpu {

template <typename F>
inline void zero_fill(F* p, size_t n) {
  std::fill(p, p + n, F(0));
}


template <typename F>
struct LayerActs {
  using Buf = std::vector<F>;
  Buf ln1, ln1_mean, ln1_rstd;  // norm 1 output and statistics (LLaMA uses rstd only)
  Buf qkv;                      // GPT-2 fused [N, 3C]
  Buf q, k, v;                  // LLaMA [N, NH*HS], [N, NKV*HS] x2 (after RoPE for q, k)
  Buf atty, lse;                // attention output [N, NH*HS], log-sum-exp [B, NH, T]
  Buf attproj, res2;            // attention projection and residual after attention
  Buf ln2, ln2_mean, ln2_rstd;
  Buf fch, fch_act;             // GPT-2: c_fc output and GELU; LLaMA: gate output and SwiGLU
  Buf up;                       // LLaMA up projection
  Buf mlp_out, res3;            // MLP projection and block output
};

template <typename F>
class CpuModel {
 public:
  using Buf = std::vector<F>;
  CpuModel(const Model& model, int max_B, int max_T) : model_(model), maxB_(max_B), maxT_(max_T) {
    const auto& c = model.config();
    if (max_T > c.max_seq_len)
      throw InputError("sequence length " + std::to_string(max_T) + " exceeds model.max_seq_len " +
                       std::to_string(c.max_seq_len));
    C_ = c.n_embd;
    L_ = c.n_layer;
    NH_ = c.n_head;
    NKV_ = c.kv_heads();
    HS_ = c.head_size();
    H_ = c.intermediate_size;
    V_ = c.vocab_size;
    Vp_ = c.padded_vocab_size;
    llama_ = c.is_llama();
    params_.assign(model.num_params(), F(0));
    grads_.assign(model.num_params(), F(0));
    const size_t N = (size_t)max_B * max_T;
    const size_t QD = (size_t)NH_ * HS_, KD = (size_t)NKV_ * HS_;
    encoded_.resize(N * C_);
    layers_.resize(L_);
    for (auto& a : layers_) {
      a.ln1.resize(N * C_);
      a.ln1_rstd.resize(N);
      a.atty.resize(N * QD);
      a.lse.resize((size_t)max_B * NH_ * max_T);
      a.attproj.resize(N * C_);
      a.res2.resize(N * C_);
      a.ln2.resize(N * C_);
      a.ln2_rstd.resize(N);
      a.fch.resize(N * H_);
      a.fch_act.resize(N * H_);
      a.mlp_out.resize(N * C_);
      a.res3.resize(N * C_);
      if (llama_) {
        a.q.resize(N * QD);
        a.k.resize(N * KD);
        a.v.resize(N * KD);
        a.up.resize(N * H_);
      } else {
        a.ln1_mean.resize(N);
        a.ln2_mean.resize(N);
        a.qkv.resize(N * 3 * C_);
      }
    }
    lnf_.resize(N * C_);
    lnf_mean_.resize(N);
    lnf_rstd_.resize(N);
    logits_.resize(N * Vp_);
    dlogits_.resize(N * Vp_);
    losses_.resize(N);
    dloss_.resize(N);
    targets_.resize(N);
    inputs_.resize(N);
    // Backward scratch, one layer's worth.
    dres_.resize(N * C_);
    dln_.resize(N * C_);
    datty_.resize(N * QD);
    dqkv_.resize(llama_ ? N * (QD + 2 * KD) : N * 3 * C_);
    dfch_.resize(N * H_);
    dfch_act_.resize(N * H_);
    dup_.resize(N * H_);
    if (llama_) {
      rope_cos_.resize((size_t)c.max_seq_len * HS_ / 2);
      rope_sin_.resize((size_t)c.max_seq_len * HS_ / 2);
      rope_tables(rope_cos_.data(), rope_sin_.data(), c.max_seq_len, HS_, c.rope_theta);
    }
  }

  const Model& model() const { return model_; }
  F* params() { return params_.data(); }
  F* grads() { return grads_.data(); }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), F(0)); }

  double forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid);
  void backward(F dloss);
  // Called by backward() with each gradient range as it becomes final (Backend::set_grad_ready).
  std::function<void(size_t offset, size_t count)> grad_ready;

  const F* logits(int b, int t) const { return logits_.data() + ((size_t)b * curT_ + t) * Vp_; }
  int V() const { return V_; }

  double grad_sq_norm() {
    // Per-tensor partial sums in parallel, combined in layout order: thread-count independent.
    const auto& ps = model_.layout().params();
    std::vector<double> part(ps.size(), 0.0);
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < ps.size(); ++i) {
      const F* g = grads_.data() + ps[i].offset;
      double s = 0;
      for (size_t j = 0; j < ps[i].numel; ++j) s += (double)g[j] * g[j];
      part[i] = s;
    }
    double s = 0;
    for (double x : part) s += x;
    return s;
  }

  void scale_grads(F s) {
    const int64_t n = (int64_t)grads_.size();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) grads_[i] *= s;
  }

  const F* matrix_input(size_t pi, int64_t* rows) {
    *rows = (int64_t)curB_ * curT_;
    const auto& idx = model_.index();
    if ((int)pi == idx.lm_head) return lnf_.data();
    for (int l = 0; l < L_; ++l) {
      const BlockParams& b = idx.blocks[l];
      const LayerActs<F>& a = layers_[l];
      const int p = (int)pi;
      if (p == b.qkv_w || p == b.q_w || p == b.k_w || p == b.v_w) return a.ln1.data();
      if (p == b.attn_proj_w || p == b.o_w) return a.atty.data();
      if (p == b.fc_w || p == b.gate_w || p == b.up_w) return a.ln2.data();
      if (p == b.fc_proj_w || p == b.down_w) return a.fch_act.data();
    }
    return nullptr;
  }

 private:
  void report_ready(size_t lo, size_t hi) {
    if (grad_ready && hi > lo) grad_ready(lo, hi - lo);
  }
  const F* P(int i) const { return i < 0 ? nullptr : params_.data() + model_.layout()[i].offset; }
  F* G(int i) { return i < 0 ? nullptr : grads_.data() + model_.layout()[i].offset; }
  float attn_scale(int l) const {
    float s = 1.0f / std::sqrt((float)HS_);
    if (model_.config().scale_attn_by_inverse_layer_idx) s /= (float)(l + 1);
    return s;
  }
  const F* lm_head_w() const { return P(model_.index().lm_head >= 0 ? model_.index().lm_head : model_.index().wte); }
  F* lm_head_g() { return G(model_.index().lm_head >= 0 ? model_.index().lm_head : model_.index().wte); }

  const Model& model_;
  int maxB_, maxT_;
  int C_, L_, NH_, NKV_, HS_, H_, V_, Vp_;
  bool llama_;
  int curB_ = 0, curT_ = 0;
  bool have_targets_ = false;
  Buf params_, grads_;
  Buf encoded_;
  std::vector<LayerActs<F>> layers_;
  Buf lnf_, lnf_mean_, lnf_rstd_, logits_, dlogits_, losses_, dloss_;
  std::vector<int32_t> targets_, inputs_;
  Buf dres_, dln_, datty_, dqkv_, dfch_, dfch_act_, dup_;
  std::vector<float> rope_cos_, rope_sin_;
};

template <typename F>
double CpuModel<F>::forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid) {
  if (B > maxB_ || T > maxT_)
    throw RuntimeError("cpu backend: batch " + std::to_string(B) + "x" + std::to_string(T) +
                       " exceeds the allocated " + std::to_string(maxB_) + "x" + std::to_string(maxT_));
  const auto& idx = model_.index();
  const auto& cfg = model_.config();
  const int N = B * T;
  curB_ = B;
  curT_ = T;
  for (int i = 0; i < N; ++i) {
    if (inputs[i] < 0 || inputs[i] >= V_)
      throw InputError("token id " + std::to_string(inputs[i]) + " is outside the model vocabulary (" +
                       std::to_string(V_) + ")");
  }
  std::memcpy(inputs_.data(), inputs, (size_t)N * sizeof(int32_t));

  embedding_forward<F>(encoded_.data(), inputs, P(idx.wte), P(idx.wpe), B, T, C_);
  const F* x = encoded_.data();
  const int QD = NH_ * HS_, KD = NKV_ * HS_;
  for (int l = 0; l < L_; ++l) {
    const BlockParams& bp = idx.blocks[l];
    LayerActs<F>& a = layers_[l];
    if (!llama_) {
      layernorm_forward<F>(a.ln1.data(), a.ln1_mean.data(), a.ln1_rstd.data(), x, P(bp.ln1_w), P(bp.ln1_b), N, C_,
                             cfg.norm_eps);
      matmul_forward<F>(a.qkv.data(), a.ln1.data(), P(bp.qkv_w), P(bp.qkv_b), N, C_, 3 * C_);
      const F* qkv = a.qkv.data();
      attention_forward<F>(a.atty.data(), a.lse.data(), qkv, qkv + C_, qkv + 2 * C_, B, T, NH_, NH_, HS_, 3 * C_,
                             3 * C_, attn_scale(l));
      matmul_forward<F>(a.attproj.data(), a.atty.data(), P(bp.attn_proj_w), P(bp.attn_proj_b), N, C_, C_);
      residual_forward<F>(a.res2.data(), x, a.attproj.data(), (int64_t)N * C_);
      layernorm_forward<F>(a.ln2.data(), a.ln2_mean.data(), a.ln2_rstd.data(), a.res2.data(), P(bp.ln2_w),
                             P(bp.ln2_b), N, C_, cfg.norm_eps);
      matmul_forward<F>(a.fch.data(), a.ln2.data(), P(bp.fc_w), P(bp.fc_b), N, C_, H_);
      gelu_forward<F>(a.fch_act.data(), a.fch.data(), (int64_t)N * H_);
      matmul_forward<F>(a.mlp_out.data(), a.fch_act.data(), P(bp.fc_proj_w), P(bp.fc_proj_b), N, H_, C_);
    } else {
      rmsnorm_forward<F>(a.ln1.data(), a.ln1_rstd.data(), x, P(bp.ln1_w), N, C_, cfg.norm_eps);
      matmul_forward<F>(a.q.data(), a.ln1.data(), P(bp.q_w), nullptr, N, C_, QD);
      matmul_forward<F>(a.k.data(), a.ln1.data(), P(bp.k_w), nullptr, N, C_, KD);
      matmul_forward<F>(a.v.data(), a.ln1.data(), P(bp.v_w), nullptr, N, C_, KD);
      rope_forward<F>(a.q.data(), rope_cos_.data(), rope_sin_.data(), B, T, NH_, HS_, QD);
      rope_forward<F>(a.k.data(), rope_cos_.data(), rope_sin_.data(), B, T, NKV_, HS_, KD);
      attention_forward<F>(a.atty.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, T, NH_, NKV_, HS_,
                             QD, KD, attn_scale(l));
      matmul_forward<F>(a.attproj.data(), a.atty.data(), P(bp.o_w), nullptr, N, QD, C_);
      residual_forward<F>(a.res2.data(), x, a.attproj.data(), (int64_t)N * C_);
      rmsnorm_forward<F>(a.ln2.data(), a.ln2_rstd.data(), a.res2.data(), P(bp.ln2_w), N, C_, cfg.norm_eps);
      matmul_forward<F>(a.fch.data(), a.ln2.data(), P(bp.gate_w), nullptr, N, C_, H_);
      matmul_forward<F>(a.up.data(), a.ln2.data(), P(bp.up_w), nullptr, N, C_, H_);
      swiglu_forward<F>(a.fch_act.data(), a.fch.data(), a.up.data(), (int64_t)N * H_);
      matmul_forward<F>(a.mlp_out.data(), a.fch_act.data(), P(bp.down_w), nullptr, N, H_, C_);
    }
    residual_forward<F>(a.res3.data(), a.res2.data(), a.mlp_out.data(), (int64_t)N * C_);
    x = a.res3.data();
  }
  if (!llama_)
    layernorm_forward<F>(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), x, P(idx.lnf_w), P(idx.lnf_b), N, C_,
                           cfg.norm_eps);
  else
    rmsnorm_forward<F>(lnf_.data(), lnf_rstd_.data(), x, P(idx.lnf_w), N, C_, cfg.norm_eps);
  matmul_forward<F>(logits_.data(), lnf_.data(), lm_head_w(), nullptr, N, C_, Vp_);

  have_targets_ = targets != nullptr;
  if (!targets) {
    if (valid) *valid = 0;
    return 0.0;
  }
  for (int i = 0; i < N; ++i) {
    if (targets[i] >= V_)
      throw InputError("target token id " + std::to_string(targets[i]) + " is outside the model vocabulary (" +
                       std::to_string(V_) + ")");
  }
  std::memcpy(targets_.data(), targets, (size_t)N * sizeof(int32_t));
  softmax_xent_forward<F>(losses_.data(), logits_.data(), targets, N, V_, Vp_);
  double sum = 0;
  int64_t count = 0;
  for (int i = 0; i < N; ++i)
    if (targets[i] >= 0) {
      sum += losses_[i];
      ++count;
    }
  if (valid) *valid = count;
  return sum;
}

template <typename F>
void CpuModel<F>::backward(F dloss) {
  if (!have_targets_) throw RuntimeError("cpu backend: backward() needs a forward() with targets");
  const auto& idx = model_.index();
  const int B = curB_, T = curT_, N = B * T;
  const int QD = NH_ * HS_, KD = NKV_ * HS_;
  const size_t NC = (size_t)N * C_;
  for (int i = 0; i < N; ++i) dloss_[i] = dloss;
  softmax_xent_backward<F>(dlogits_.data(), logits_.data(), targets_.data(), dloss_.data(), N, V_, Vp_);

  // lm_head: logits = lnf @ W^T
  zero_fill(dln_.data(), NC);
  matmul_backward<F>(dln_.data(), lm_head_g(), nullptr, dlogits_.data(), lnf_.data(), lm_head_w(), N, C_, Vp_);
  zero_fill(dres_.data(), NC);
  const F* xL = L_ > 0 ? layers_[L_ - 1].res3.data() : encoded_.data();
  if (!llama_)
    layernorm_backward<F>(dres_.data(), G(idx.lnf_w), G(idx.lnf_b), dln_.data(), xL, P(idx.lnf_w), lnf_mean_.data(),
                            lnf_rstd_.data(), N, C_);
  else
    rmsnorm_backward<F>(dres_.data(), G(idx.lnf_w), dln_.data(), xL, P(idx.lnf_w), lnf_rstd_.data(), N, C_);
  report_ready(model_.block_begin(L_), model_.num_params());

  for (int l = L_ - 1; l >= 0; --l) {
    const BlockParams& bp = idx.blocks[l];
    LayerActs<F>& a = layers_[l];
    const F* x = l == 0 ? encoded_.data() : layers_[l - 1].res3.data();
    // dres holds d(res3); the MLP branch sees it as d(mlp_out).
    zero_fill(dfch_act_.data(), (size_t)N * H_);
    zero_fill(dfch_.data(), (size_t)N * H_);
    zero_fill(dln_.data(), NC);
    if (!llama_) {
      matmul_backward<F>(dfch_act_.data(), G(bp.fc_proj_w), G(bp.fc_proj_b), dres_.data(), a.fch_act.data(),
                           P(bp.fc_proj_w), N, H_, C_);
      gelu_backward<F>(dfch_.data(), dfch_act_.data(), a.fch.data(), (int64_t)N * H_);
      matmul_backward<F>(dln_.data(), G(bp.fc_w), G(bp.fc_b), dfch_.data(), a.ln2.data(), P(bp.fc_w), N, C_, H_);
      layernorm_backward<F>(dres_.data(), G(bp.ln2_w), G(bp.ln2_b), dln_.data(), a.res2.data(), P(bp.ln2_w),
                              a.ln2_mean.data(), a.ln2_rstd.data(), N, C_);
      // dres now holds d(res2) = d(x) from the identity path + d(attproj).
      zero_fill(datty_.data(), (size_t)N * QD);
      matmul_backward<F>(datty_.data(), G(bp.attn_proj_w), G(bp.attn_proj_b), dres_.data(), a.atty.data(),
                           P(bp.attn_proj_w), N, C_, C_);
      zero_fill(dqkv_.data(), (size_t)N * 3 * C_);
      const F* qkv = a.qkv.data();
      F* dqkv = dqkv_.data();
      attention_backward<F>(dqkv, dqkv + C_, dqkv + 2 * C_, datty_.data(), qkv, qkv + C_, qkv + 2 * C_, a.atty.data(),
                              a.lse.data(), B, T, NH_, NH_, HS_, 3 * C_, 3 * C_, attn_scale(l));
      zero_fill(dln_.data(), NC);
      matmul_backward<F>(dln_.data(), G(bp.qkv_w), G(bp.qkv_b), dqkv, a.ln1.data(), P(bp.qkv_w), N, C_, 3 * C_);
      layernorm_backward<F>(dres_.data(), G(bp.ln1_w), G(bp.ln1_b), dln_.data(), x, P(bp.ln1_w), a.ln1_mean.data(),
                              a.ln1_rstd.data(), N, C_);
    } else {
      zero_fill(dup_.data(), (size_t)N * H_);
      matmul_backward<F>(dfch_act_.data(), G(bp.down_w), nullptr, dres_.data(), a.fch_act.data(), P(bp.down_w), N, H_,
                           C_);
      swiglu_backward<F>(dfch_.data(), dup_.data(), dfch_act_.data(), a.fch.data(), a.up.data(), (int64_t)N * H_);
      matmul_backward<F>(dln_.data(), G(bp.gate_w), nullptr, dfch_.data(), a.ln2.data(), P(bp.gate_w), N, C_, H_);
      matmul_backward<F>(dln_.data(), G(bp.up_w), nullptr, dup_.data(), a.ln2.data(), P(bp.up_w), N, C_, H_);
      rmsnorm_backward<F>(dres_.data(), G(bp.ln2_w), dln_.data(), a.res2.data(), P(bp.ln2_w), a.ln2_rstd.data(), N, C_);
      zero_fill(datty_.data(), (size_t)N * QD);
      matmul_backward<F>(datty_.data(), G(bp.o_w), nullptr, dres_.data(), a.atty.data(), P(bp.o_w), N, QD, C_);
      zero_fill(dqkv_.data(), dqkv_.size());
      F* dq = dqkv_.data();
      F* dk = dq + (size_t)N * QD;
      F* dv = dk + (size_t)N * KD;
      attention_backward<F>(dq, dk, dv, datty_.data(), a.q.data(), a.k.data(), a.v.data(), a.atty.data(), a.lse.data(),
                              B, T, NH_, NKV_, HS_, QD, KD, attn_scale(l));
      rope_backward<F>(dq, rope_cos_.data(), rope_sin_.data(), B, T, NH_, HS_, QD);
      rope_backward<F>(dk, rope_cos_.data(), rope_sin_.data(), B, T, NKV_, HS_, KD);
      zero_fill(dln_.data(), NC);
      matmul_backward<F>(dln_.data(), G(bp.q_w), nullptr, dq, a.ln1.data(), P(bp.q_w), N, C_, QD);
      matmul_backward<F>(dln_.data(), G(bp.k_w), nullptr, dk, a.ln1.data(), P(bp.k_w), N, C_, KD);
      matmul_backward<F>(dln_.data(), G(bp.v_w), nullptr, dv, a.ln1.data(), P(bp.v_w), N, C_, KD);
      rmsnorm_backward<F>(dres_.data(), G(bp.ln1_w), dln_.data(), x, P(bp.ln1_w), a.ln1_rstd.data(), N, C_);
    }
    report_ready(model_.block_begin(l), model_.block_begin(l + 1));
  }
  embedding_backward<F>(G(idx.wte), G(idx.wpe), dres_.data(), inputs_.data(), B, T, C_);
  report_ready(0, model_.block_begin(0));
}


}  // namespace llmtrain::cpu
