// The CPU reference model: GPT-2 and LLaMA forward and backward composed from the ops of
// kernels/cpu/ops.h, templated on the float type so that the fp32 training backend and the fp64
// whole-model finite-difference tests run the very same code. Activations of every layer are kept
// for backward; gradient scratch is one layer's worth, reused from the last layer to the first,
// with a single residual-gradient buffer since every block is x + attn(x) + mlp(x + attn(x)).
//
// Recomputation (BackendOptions::recompute, the CUDA backend's twin): with 1 the MLP activation
// (GELU / SwiGLU output) of each layer is not kept but written to one shared [N, H] scratch, and
// backward recomputes it from the kept pre-activation(s) just before it is needed; with 2 the
// normalised ln1/ln2 outputs also go to one shared [N, C] scratch and backward re-runs the norm
// forward on the kept residual-stream input (into a scratch for the statistics, which come out
// equal to the saved mean/rstd that backward keeps using). Recomputation calls the very same op
// on the very same inputs, so losses and gradients are identical bit for bit at every setting.
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
  CpuModel(const Model& model, int max_B, int max_T, int recompute = 0)
      : model_(model), maxB_(max_B), maxT_(max_T), recompute_(recompute) {
    const auto& c = model.config();
    if (recompute < 0 || recompute > 2)
      throw InputError("recompute: must be 0, 1 or 2, got " + std::to_string(recompute));
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
      if (recompute_ < 2) a.ln1.resize(N * C_);
      a.ln1_rstd.resize(N);
      a.atty.resize(N * QD);
      a.lse.resize((size_t)max_B * NH_ * max_T);
      a.attproj.resize(N * C_);
      a.res2.resize(N * C_);
      if (recompute_ < 2) a.ln2.resize(N * C_);
      a.ln2_rstd.resize(N);
      a.fch.resize(N * H_);
      if (recompute_ < 1) a.fch_act.resize(N * H_);
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
    if (recompute_ >= 1) act_scratch_.resize(N * H_);
    if (recompute_ >= 2) {
      ln_scratch_.resize(N * C_);
      if (!llama_) stat_scratch_mean_.resize(N);
      stat_scratch_rstd_.resize(N);
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
  int recompute() const { return recompute_; }

  // Host bytes of parameters, gradients, activations and scratch (what recompute saves shows here).
  size_t memory_bytes() const {
    size_t n = 0;
    auto add = [&n](const auto& v) { n += v.size() * sizeof(v[0]); };
    for (const auto& a : layers_)
      for (const Buf* b : {&a.ln1, &a.ln1_mean, &a.ln1_rstd, &a.qkv, &a.q, &a.k, &a.v, &a.atty, &a.lse, &a.attproj,
                           &a.res2, &a.ln2, &a.ln2_mean, &a.ln2_rstd, &a.fch, &a.fch_act, &a.up, &a.mlp_out, &a.res3})
        add(*b);
    for (const Buf* b : {&params_, &grads_, &encoded_, &lnf_, &lnf_mean_, &lnf_rstd_, &logits_, &dlogits_, &losses_,
                         &dloss_, &dres_, &dln_, &datty_, &dqkv_, &dfch_, &dfch_act_, &dup_, &act_scratch_,
                         &ln_scratch_, &stat_scratch_mean_, &stat_scratch_rstd_})
      add(*b);
    add(targets_);
    add(inputs_);
    add(rope_cos_);
    add(rope_sin_);
    return n;
  }

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

  // With recompute, a dropped input is recomputed into the shared scratch: valid until the next
  // call, forward or backward.
  const F* matrix_input(size_t pi, int64_t* rows) {
    *rows = (int64_t)curB_ * curT_;
    const int N = curB_ * curT_;
    const auto& idx = model_.index();
    if ((int)pi == idx.lm_head) return lnf_.data();
    for (int l = 0; l < L_; ++l) {
      const BlockParams& b = idx.blocks[l];
      const int p = (int)pi;
      if (p == b.qkv_w || p == b.q_w || p == b.k_w || p == b.v_w) return recompute_ln(l, 1, N);
      if (p == b.attn_proj_w || p == b.o_w) return layers_[l].atty.data();
      if (p == b.fc_w || p == b.gate_w || p == b.up_w) return recompute_ln(l, 2, N);
      if (p == b.fc_proj_w || p == b.down_w) return recompute_act(l, N);
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

  // Where layer l's forward writes its norm outputs and MLP activation: its own buffers, or the
  // shared scratch of the tensors recompute drops.
  F* ln_out(int l, int which) {
    if (recompute_ >= 2) return ln_scratch_.data();
    return which == 1 ? layers_[l].ln1.data() : layers_[l].ln2.data();
  }
  F* act_out(int l) { return recompute_ >= 1 ? act_scratch_.data() : layers_[l].fch_act.data(); }
  const F* block_input(int l) const { return l == 0 ? encoded_.data() : layers_[l - 1].res3.data(); }

  // Layer l's normalised ln1 (which = 1) or ln2 (which = 2) output for backward: kept, or the norm
  // forward re-run on the kept input (statistics to a scratch: they equal the saved ones).
  const F* recompute_ln(int l, int which, int N) {
    if (recompute_ < 2) return ln_out(l, which);
    const BlockParams& bp = model_.index().blocks[l];
    const LayerActs<F>& a = layers_[l];
    const F* x = which == 1 ? block_input(l) : a.res2.data();
    const int wi = which == 1 ? bp.ln1_w : bp.ln2_w, bi = which == 1 ? bp.ln1_b : bp.ln2_b;
    const float eps = model_.config().norm_eps;
    if (!llama_)
      layernorm_forward<F>(ln_scratch_.data(), stat_scratch_mean_.data(), stat_scratch_rstd_.data(), x, P(wi), P(bi),
                           N, C_, eps);
    else
      rmsnorm_forward<F>(ln_scratch_.data(), stat_scratch_rstd_.data(), x, P(wi), N, C_, eps);
    return ln_scratch_.data();
  }
  // Layer l's MLP activation for backward: kept, or GELU / SwiGLU re-run on the kept fch (and up).
  const F* recompute_act(int l, int N) {
    if (recompute_ < 1) return layers_[l].fch_act.data();
    const LayerActs<F>& a = layers_[l];
    if (!llama_)
      gelu_forward<F>(act_scratch_.data(), a.fch.data(), (int64_t)N * H_);
    else
      swiglu_forward<F>(act_scratch_.data(), a.fch.data(), a.up.data(), (int64_t)N * H_);
    return act_scratch_.data();
  }

  const Model& model_;
  int maxB_, maxT_;
  int recompute_;
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
  Buf act_scratch_, ln_scratch_, stat_scratch_mean_, stat_scratch_rstd_;  // recompute's shared scratch
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
    F* ln1 = ln_out(l, 1);
    F* ln2 = ln_out(l, 2);
    F* act = act_out(l);
    if (!llama_) {
      layernorm_forward<F>(ln1, a.ln1_mean.data(), a.ln1_rstd.data(), x, P(bp.ln1_w), P(bp.ln1_b), N, C_,
                             cfg.norm_eps);
      matmul_forward<F>(a.qkv.data(), ln1, P(bp.qkv_w), P(bp.qkv_b), N, C_, 3 * C_);
      const F* qkv = a.qkv.data();
      attention_forward<F>(a.atty.data(), a.lse.data(), qkv, qkv + C_, qkv + 2 * C_, B, T, NH_, NH_, HS_, 3 * C_,
                             3 * C_, attn_scale(l));
      matmul_forward<F>(a.attproj.data(), a.atty.data(), P(bp.attn_proj_w), P(bp.attn_proj_b), N, C_, C_);
      residual_forward<F>(a.res2.data(), x, a.attproj.data(), (int64_t)N * C_);
      layernorm_forward<F>(ln2, a.ln2_mean.data(), a.ln2_rstd.data(), a.res2.data(), P(bp.ln2_w),
                             P(bp.ln2_b), N, C_, cfg.norm_eps);
      matmul_forward<F>(a.fch.data(), ln2, P(bp.fc_w), P(bp.fc_b), N, C_, H_);
      gelu_forward<F>(act, a.fch.data(), (int64_t)N * H_);
      matmul_forward<F>(a.mlp_out.data(), act, P(bp.fc_proj_w), P(bp.fc_proj_b), N, H_, C_);
    } else {
      rmsnorm_forward<F>(ln1, a.ln1_rstd.data(), x, P(bp.ln1_w), N, C_, cfg.norm_eps);
      matmul_forward<F>(a.q.data(), ln1, P(bp.q_w), nullptr, N, C_, QD);
      matmul_forward<F>(a.k.data(), ln1, P(bp.k_w), nullptr, N, C_, KD);
      matmul_forward<F>(a.v.data(), ln1, P(bp.v_w), nullptr, N, C_, KD);
      rope_forward<F>(a.q.data(), rope_cos_.data(), rope_sin_.data(), B, T, NH_, HS_, QD);
      rope_forward<F>(a.k.data(), rope_cos_.data(), rope_sin_.data(), B, T, NKV_, HS_, KD);
      attention_forward<F>(a.atty.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, T, NH_, NKV_, HS_,
                             QD, KD, attn_scale(l));
      matmul_forward<F>(a.attproj.data(), a.atty.data(), P(bp.o_w), nullptr, N, QD, C_);
      residual_forward<F>(a.res2.data(), x, a.attproj.data(), (int64_t)N * C_);
      rmsnorm_forward<F>(ln2, a.ln2_rstd.data(), a.res2.data(), P(bp.ln2_w), N, C_, cfg.norm_eps);
      matmul_forward<F>(a.fch.data(), ln2, P(bp.gate_w), nullptr, N, C_, H_);
      matmul_forward<F>(a.up.data(), ln2, P(bp.up_w), nullptr, N, C_, H_);
      swiglu_forward<F>(act, a.fch.data(), a.up.data(), (int64_t)N * H_);
      matmul_forward<F>(a.mlp_out.data(), act, P(bp.down_w), nullptr, N, H_, C_);
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
    const F* x = block_input(l);
    // Dropped activations come back just before their first use: the MLP activation, then ln2;
    // ln1 only after ln2's last use, since with recompute 2 they share one scratch.
    const F* act = recompute_act(l, N);
    const F* ln2 = recompute_ln(l, 2, N);
    // dres holds d(res3); the MLP branch sees it as d(mlp_out).
    zero_fill(dfch_act_.data(), (size_t)N * H_);
    zero_fill(dfch_.data(), (size_t)N * H_);
    zero_fill(dln_.data(), NC);
    if (!llama_) {
      matmul_backward<F>(dfch_act_.data(), G(bp.fc_proj_w), G(bp.fc_proj_b), dres_.data(), act,
                           P(bp.fc_proj_w), N, H_, C_);
      gelu_backward<F>(dfch_.data(), dfch_act_.data(), a.fch.data(), (int64_t)N * H_);
      matmul_backward<F>(dln_.data(), G(bp.fc_w), G(bp.fc_b), dfch_.data(), ln2, P(bp.fc_w), N, C_, H_);
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
      const F* ln1 = recompute_ln(l, 1, N);
      matmul_backward<F>(dln_.data(), G(bp.qkv_w), G(bp.qkv_b), dqkv, ln1, P(bp.qkv_w), N, C_, 3 * C_);
      layernorm_backward<F>(dres_.data(), G(bp.ln1_w), G(bp.ln1_b), dln_.data(), x, P(bp.ln1_w), a.ln1_mean.data(),
                              a.ln1_rstd.data(), N, C_);
    } else {
      zero_fill(dup_.data(), (size_t)N * H_);
      matmul_backward<F>(dfch_act_.data(), G(bp.down_w), nullptr, dres_.data(), act, P(bp.down_w), N, H_,
                           C_);
      swiglu_backward<F>(dfch_.data(), dup_.data(), dfch_act_.data(), a.fch.data(), a.up.data(), (int64_t)N * H_);
      matmul_backward<F>(dln_.data(), G(bp.gate_w), nullptr, dfch_.data(), ln2, P(bp.gate_w), N, C_, H_);
      matmul_backward<F>(dln_.data(), G(bp.up_w), nullptr, dup_.data(), ln2, P(bp.up_w), N, C_, H_);
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
      const F* ln1 = recompute_ln(l, 1, N);
      matmul_backward<F>(dln_.data(), G(bp.q_w), nullptr, dq, ln1, P(bp.q_w), N, C_, QD);
      matmul_backward<F>(dln_.data(), G(bp.k_w), nullptr, dk, ln1, P(bp.k_w), N, C_, KD);
      matmul_backward<F>(dln_.data(), G(bp.v_w), nullptr, dv, ln1, P(bp.v_w), N, C_, KD);
      rmsnorm_backward<F>(dres_.data(), G(bp.ln1_w), dln_.data(), x, P(bp.ln1_w), a.ln1_rstd.data(), N, C_);
    }
    report_ready(model_.block_begin(l), model_.block_begin(l + 1));
  }
  embedding_backward<F>(G(idx.wte), G(idx.wpe), dres_.data(), inputs_.data(), B, T, C_);
  report_ready(0, model_.block_begin(0));
}


}  // namespace llmtrain::cpu
