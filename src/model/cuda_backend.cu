// The CUDA backend (see cuda_backend.h): CpuModel's forward and backward (src/model/cpu_model.h)
// step for step on the device ops of kernels/cuda/ops.h. Differences from the CPU code are only in
// how buffers are used, never in the math:
// - Residual adds are fused into the following norm (fused_residual_*norm_forward computes
//   res = a + b, rounds it to bf16, normalises it): the same values as a separate add.
// - LLaMA's q/k/v (and their gradients) are adjacent in the layout, so they run as one GEMM with a
//   [QD + 2 KD, C] weight into one [N, QD + 2 KD] buffer that rope and attention read with strides.
// - The softmax/cross-entropy backward overwrites the logits with their gradients in place.
// - Activation gradients are bf16 and the first write into each scratch gradient overwrites
//   (accumulate = false) instead of zero-filling and adding; the residual-stream gradient then
//   accumulates exactly as on the CPU.
// Parameter gradients are fp32 and always accumulate (+=), so micro-steps add up as on the CPU.
// With recompute the activations it drops live in one shared scratch per kind (ln_out, act_out)
// and come back in backward through recompute_ln / recompute_act (see cuda_backend.h).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "model/cuda_backend.h"
#include "model/cuda_device.h"
#include "cuda/ops.h"

namespace llmtrain {

using cuda::bf16;
using cuda::DeviceBuffer;

namespace {

// bf16 bits -> float on the host (exact).
inline float bf16_bits_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

struct LayerBufs {
  DeviceBuffer<bf16> ln1, qkv, atty, res2, ln2, fch, fch_act, up, res3;
  DeviceBuffer<float> ln1_mean, ln1_rstd, lse, ln2_mean, ln2_rstd;
};

}  // namespace

struct CudaBackend::Impl {
  const Model& model;
  CudaBackendOptions opts;
  int maxB, maxT;
  int C, L, NH, NKV, HS, H, V, Vp, QD, KD, QKD;
  bool llama;
  int curB = 0, curT = 0;
  bool have_targets = false, logits_valid = false;
  size_t nparams;
  size_t allocated = 0;
  cudaStream_t st = nullptr;

  DeviceBuffer<float> params, grads;
  DeviceBuffer<bf16> wbf;
  DeviceBuffer<int32_t> d_inputs, d_targets;
  DeviceBuffer<bf16> encoded, attproj, mlp_out, lnf, logits;
  DeviceBuffer<float> lnf_mean, lnf_rstd, losses;
  std::vector<LayerBufs> layers;
  // Backward scratch, one layer's worth.
  DeviceBuffer<bf16> dres, dln, datty, dqkv, dfch, dfch_act, dup;
  // recompute's shared scratch: the MLP activation [N, H] (>= 1), the ln1/ln2 output [N, C] and
  // the statistics of a re-run norm [N] (2).
  DeviceBuffer<bf16> act_scratch, ln_scratch;
  DeviceBuffer<float> stat_mean, stat_rstd;
  int64_t sr_step = 0;  // begin_step(): the step that keys stochastic rounding
  double peak = 0;      // nominal dense bf16 FLOP/s of this GPU, 0 if unknown
  DeviceBuffer<float> rope_cos, rope_sin;
  DeviceBuffer<unsigned char> colsum_scratch, attn_scratch, emb_scratch, norm_scratch, gn_scratch;
  DeviceBuffer<double> d_norm;
  float* h_losses = nullptr;  // pinned [maxB * maxT]
  std::vector<int32_t> h_targets;
  std::vector<float> mi_host;
  std::vector<uint16_t> staging;

  Impl(const Model& m, int max_B, int max_T, const CudaBackendOptions& o);
  ~Impl();

  template <typename T>
  void alloc(DeviceBuffer<T>& b, size_t n) {
    b.reset(std::max<size_t>(n, 1));
    allocated += b.bytes();
  }
  const bf16* W(int i) const { return i < 0 ? nullptr : wbf.data() + model.layout()[i].offset; }
  float* G(int i) { return i < 0 ? nullptr : grads.data() + model.layout()[i].offset; }
  int head_index() const { return model.index().lm_head >= 0 ? model.index().lm_head : model.index().wte; }
  float attn_scale(int l) const {
    float s = 1.0f / std::sqrt(static_cast<float>(HS));
    if (model.config().scale_attn_by_inverse_layer_idx) s /= static_cast<float>(l + 1);
    return s;
  }

  // ---- norms: LayerNorm (GPT-2) or RMSNorm (LLaMA; mean unused) ----
  void norm_fwd(bf16* out, float* mean, float* rstd, const bf16* in, int wi, int bi, int N) {
    const float eps = model.config().norm_eps;
    if (!llama)
      cuda::layernorm_forward(out, mean, rstd, in, W(wi), W(bi), N, C, eps, st);
    else
      cuda::rmsnorm_forward(out, rstd, in, W(wi), N, C, eps, st);
  }
  void norm_fwd_fused(bf16* residual, bf16* out, float* mean, float* rstd, const bf16* a, const bf16* b, int wi,
                      int bi, int N) {
    const float eps = model.config().norm_eps;
    if (!llama)
      cuda::fused_residual_layernorm_forward(residual, out, mean, rstd, a, b, W(wi), W(bi), N, C, eps, st);
    else
      cuda::fused_residual_rmsnorm_forward(residual, out, rstd, a, b, W(wi), N, C, eps, st);
  }
  void norm_bwd(bf16* dinp, int wi, int bi, const bf16* dout, const bf16* inp, const float* mean, const float* rstd,
                int N, bool accumulate) {
    if (!llama)
      cuda::layernorm_backward(dinp, G(wi), G(bi), dout, inp, W(wi), mean, rstd, N, C, norm_scratch.data(), st,
                               accumulate);
    else
      cuda::rmsnorm_backward(dinp, G(wi), dout, inp, W(wi), rstd, N, C, norm_scratch.data(), st, accumulate);
  }

  void refresh() {
    if (opts.bf16_rounding == Bf16Rounding::stochastic)
      cuda::cast_f32_to_bf16_stochastic(wbf.data(), params.data(), static_cast<int64_t>(nparams), opts.seed,
                                        static_cast<uint64_t>(sr_step), st);
    else
      cuda::cast_f32_to_bf16(wbf.data(), params.data(), static_cast<int64_t>(nparams), st);
  }

  // ---- recomputation (cuda_backend.h): where forward writes, what backward reads ----
  bf16* ln_out(int l, int which) {
    if (opts.recompute >= 2) return ln_scratch.data();
    return which == 1 ? layers[l].ln1.data() : layers[l].ln2.data();
  }
  bf16* act_out(int l) { return opts.recompute >= 1 ? act_scratch.data() : layers[l].fch_act.data(); }
  const bf16* block_input(int l) const { return l == 0 ? encoded.data() : layers[l - 1].res3.data(); }
  // ln1 (which = 1) or ln2 (which = 2) of layer l: kept, or the plain norm kernel re-run on the
  // kept input (the forward's fused residual+norm normalises the same bf16 residual).
  const bf16* recompute_ln(int l, int which, int N) {
    if (opts.recompute < 2) return ln_out(l, which);
    const BlockParams& bp = model.index().blocks[l];
    const bf16* x = which == 1 ? block_input(l) : layers[l].res2.data();
    norm_fwd(ln_scratch.data(), stat_mean.data(), stat_rstd.data(), x, which == 1 ? bp.ln1_w : bp.ln2_w,
             which == 1 ? bp.ln1_b : bp.ln2_b, N);
    return ln_scratch.data();
  }
  // The MLP activation of layer l: kept, or GELU / SwiGLU re-run on the kept fch (and up).
  const bf16* recompute_act(int l, int N) {
    if (opts.recompute < 1) return layers[l].fch_act.data();
    const LayerBufs& a = layers[l];
    const int64_t n = static_cast<int64_t>(N) * H;
    if (!llama)
      cuda::gelu_forward(act_scratch.data(), a.fch.data(), n, st);
    else
      cuda::swiglu_forward(act_scratch.data(), a.fch.data(), a.up.data(), n, st);
    return act_scratch.data();
  }

  // Backend::set_grad_ready: [lo, hi) of the gradients is queued (the hook may start a collective
  // that waits on this stream).
  Backend::GradReadyFn grad_ready;
  void report_ready(size_t lo, size_t hi) {
    if (grad_ready && hi > lo) grad_ready(lo, hi - lo);
  }

  double forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid);
  void backward(float dloss);
  void ensure_emb_scratch(int N);
};

CudaBackend::Impl::Impl(const Model& m, int max_B, int max_T, const CudaBackendOptions& o)
    : model(m), opts(o), maxB(max_B), maxT(max_T) {
  const auto& c = m.config();
  C = c.n_embd;
  L = c.n_layer;
  NH = c.n_head;
  NKV = c.kv_heads();
  HS = c.head_size();
  H = c.intermediate_size;
  V = c.vocab_size;
  Vp = c.padded_vocab_size;
  llama = c.is_llama();
  QD = NH * HS;
  KD = NKV * HS;
  QKD = llama ? QD + 2 * KD : 3 * C;
  nparams = m.num_params();
  const std::string who = "cuda backend: ";
  if (max_B <= 0 || max_T <= 0) throw InputError(who + "batch and sequence length must be positive");
  if (max_T > c.max_seq_len)
    throw InputError("sequence length " + std::to_string(max_T) + " exceeds model.max_seq_len " +
                     std::to_string(c.max_seq_len));
  if (HS != 64 && HS != 128)
    throw InputError(who + "head size n_embd/n_head = " + std::to_string(HS) +
                     " is not supported by the flash-attention kernels (64 or 128)");
  if (C % 8 != 0 || C > 4096) throw InputError(who + "model.n_embd must be a multiple of 8 and <= 4096, got " + std::to_string(C));
  // GPT-2's MLP biases go through the 8-wide column reduction; LLaMA's intermediate size may be
  // anything (e.g. 5461 for LLaMA 1B: cuBLASLt then uses less aligned, slower GEMMs).
  if (!llama && H % 8 != 0)
    throw InputError(who + "model.intermediate_size must be a multiple of 8 for GPT-2, got " + std::to_string(H));
  if (Vp % 8 != 0 || Vp < V) throw InputError(who + "model.padded_vocab_size must be a multiple of 8 and >= vocab_size");
  if (NH % NKV != 0) throw InputError(who + "model.n_head must be a multiple of model.n_kv_head");
  if (!llama && QD != C) throw InputError(who + "GPT-2 needs n_embd divisible by n_head");
  if (o.recompute < 0 || o.recompute > 2)
    throw InputError(who + "run.recompute must be 0, 1 or 2, got " + std::to_string(o.recompute));
  if (o.recompute >= 1 && o.fuse_gelu && !llama)
    throw InputError(who + "run.recompute " + std::to_string(o.recompute) +
                     " needs the standalone GELU kernel (fuse_gelu off): the cuBLASLt epilogue's GELU is not "
                     "bitwise equal to it, so the recomputed activation would differ");
  // Every tensor's bf16 slice must be 16-byte aligned for the 128-bit loads of the kernels.
  for (const auto& p : m.layout().params())
    if (p.offset % 8 != 0)
      throw RuntimeError(who + "parameter " + p.name + " starts at element " + std::to_string(p.offset) +
                         ", not a multiple of 8 (bf16 slices must be 16-byte aligned)");
  if (llama) {
    for (const auto& b : m.index().blocks) {
      const auto& ly = m.layout();
      if (ly[b.k_w].offset != ly[b.q_w].offset + static_cast<size_t>(QD) * C ||
          ly[b.v_w].offset != ly[b.k_w].offset + static_cast<size_t>(KD) * C)
        throw RuntimeError(who + "q/k/v projections are not adjacent in the parameter layout (fused QKV GEMM)");
    }
  }

  CUDA_CHECK(cudaStreamCreate(&st));
  alloc(params, nparams);
  alloc(grads, nparams);
  alloc(wbf, nparams);
  CUDA_CHECK(cudaMemsetAsync(params.data(), 0, params.bytes(), st));
  CUDA_CHECK(cudaMemsetAsync(grads.data(), 0, grads.bytes(), st));
  CUDA_CHECK(cudaMemsetAsync(wbf.data(), 0, wbf.bytes(), st));

  const size_t N = static_cast<size_t>(max_B) * max_T;
  alloc(d_inputs, N);
  alloc(d_targets, N);
  alloc(encoded, N * C);
  alloc(attproj, N * C);
  alloc(mlp_out, N * C);
  alloc(lnf, N * C);
  alloc(lnf_mean, N);
  alloc(lnf_rstd, N);
  alloc(logits, N * Vp);
  alloc(losses, N);
  layers.resize(L);
  // With recompute the dropped tensors stay unallocated (DeviceBuffer is empty, data() null).
  for (auto& a : layers) {
    if (o.recompute < 2) alloc(a.ln1, N * C);
    alloc(a.ln1_rstd, N);
    alloc(a.qkv, N * QKD);
    alloc(a.atty, N * QD);
    alloc(a.lse, static_cast<size_t>(max_B) * NH * max_T);
    alloc(a.res2, N * C);
    if (o.recompute < 2) alloc(a.ln2, N * C);
    alloc(a.ln2_rstd, N);
    alloc(a.fch, N * H);
    if (o.recompute < 1) alloc(a.fch_act, N * H);
    alloc(a.res3, N * C);
    if (llama) {
      alloc(a.up, N * H);
    } else {
      alloc(a.ln1_mean, N);
      alloc(a.ln2_mean, N);
    }
  }
  if (o.recompute >= 1) alloc(act_scratch, N * H);
  if (o.recompute >= 2) {
    alloc(ln_scratch, N * C);
    if (!llama) alloc(stat_mean, N);
    alloc(stat_rstd, N);
  }
  alloc(dres, N * C);
  alloc(dln, N * C);
  alloc(datty, N * QD);
  alloc(dqkv, N * QKD);
  alloc(dfch, N * H);
  alloc(dfch_act, N * H);
  if (llama) alloc(dup, N * H);
  const int widest = std::max({C, QKD, H, QD});
  alloc(colsum_scratch, cuda::colsum_scratch_bytes(widest, 1));
  alloc(norm_scratch, cuda::colsum_scratch_bytes(C, 2));
  alloc(attn_scratch, cuda::attention_backward_scratch_bytes(max_B, NH, max_T));
  alloc(emb_scratch, cuda::embedding_backward_scratch_bytes(static_cast<int>(N), Vp));
  alloc(d_norm, 1);
  alloc(gn_scratch, cuda::global_norm_scratch_bytes());
  if (llama) {
    const size_t nt = static_cast<size_t>(c.max_seq_len) * HS / 2;
    alloc(rope_cos, nt);
    alloc(rope_sin, nt);
    cuda::rope_tables(rope_cos.data(), rope_sin.data(), c.max_seq_len, HS, c.rope_theta, st);
  }
  peak = cuda::device_info().peak_bf16_tflops * 1e12;
  CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_losses), N * sizeof(float)));
  h_targets.resize(N);
  CUDA_CHECK(cudaStreamSynchronize(st));
}

CudaBackend::Impl::~Impl() {
  if (st) cudaStreamSynchronize(st);
  if (h_losses) cudaFreeHost(h_losses);
  if (st) cudaStreamDestroy(st);
}

void CudaBackend::Impl::ensure_emb_scratch(int N) {
  const size_t need = cuda::embedding_backward_scratch_bytes(N, Vp);
  if (need > emb_scratch.bytes()) {
    CUDA_CHECK(cudaStreamSynchronize(st));
    allocated -= emb_scratch.bytes();
    alloc(emb_scratch, need);
  }
}

double CudaBackend::Impl::forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid) {
  if (B <= 0 || T <= 0 || B > maxB || T > maxT)
    throw RuntimeError("cuda backend: batch " + std::to_string(B) + "x" + std::to_string(T) +
                       " is empty or exceeds the allocated " + std::to_string(maxB) + "x" + std::to_string(maxT));
  const auto& idx = model.index();
  const int N = B * T;
  for (int i = 0; i < N; ++i)
    if (inputs[i] < 0 || inputs[i] >= V)
      throw InputError("token id " + std::to_string(inputs[i]) + " is outside the model vocabulary (" +
                       std::to_string(V) + ")");
  if (targets) {
    for (int i = 0; i < N; ++i)
      if (targets[i] >= V)
        throw InputError("target token id " + std::to_string(targets[i]) + " is outside the model vocabulary (" +
                         std::to_string(V) + ")");
  }
  curB = B;
  curT = T;
  if (opts.refresh == ParamRefresh::every_forward) refresh();
  CUDA_CHECK(cudaMemcpyAsync(d_inputs.data(), inputs, static_cast<size_t>(N) * sizeof(int32_t),
                             cudaMemcpyHostToDevice, st));

  cuda::embedding_forward(encoded.data(), d_inputs.data(), W(idx.wte), W(idx.wpe), B, T, C, st);
  for (int l = 0; l < L; ++l) {
    const BlockParams& bp = idx.blocks[l];
    LayerBufs& a = layers[l];
    bf16* ln1 = ln_out(l, 1);
    bf16* ln2 = ln_out(l, 2);
    bf16* act = act_out(l);
    // x = this block's input: the embedding, or the previous block's output res3 = res2 + mlp_out,
    // which is formed here by the fused residual + norm.
    const bf16* x;
    if (l == 0) {
      norm_fwd(ln1, a.ln1_mean.data(), a.ln1_rstd.data(), encoded.data(), bp.ln1_w, bp.ln1_b, N);
      x = encoded.data();
    } else {
      LayerBufs& p = layers[l - 1];
      norm_fwd_fused(p.res3.data(), ln1, a.ln1_mean.data(), a.ln1_rstd.data(), p.res2.data(),
                     mlp_out.data(), bp.ln1_w, bp.ln1_b, N);
      x = p.res3.data();
    }
    bf16* qkv = a.qkv.data();
    if (!llama) {
      cuda::matmul_forward(qkv, ln1, W(bp.qkv_w), W(bp.qkv_b), N, C, 3 * C, st);
      cuda::attention_forward(a.atty.data(), a.lse.data(), qkv, qkv + C, qkv + 2 * C, B, T, NH, NH, HS, 3 * C, 3 * C,
                              attn_scale(l), st);
      cuda::matmul_forward(attproj.data(), a.atty.data(), W(bp.attn_proj_w), W(bp.attn_proj_b), N, C, C, st);
      norm_fwd_fused(a.res2.data(), ln2, a.ln2_mean.data(), a.ln2_rstd.data(), x, attproj.data(), bp.ln2_w,
                     bp.ln2_b, N);
      if (opts.fuse_gelu) {
        cuda::matmul_forward(act, ln2, W(bp.fc_w), W(bp.fc_b), N, C, H, st, a.fch.data());
      } else {
        cuda::matmul_forward(a.fch.data(), ln2, W(bp.fc_w), W(bp.fc_b), N, C, H, st);
        cuda::gelu_forward(act, a.fch.data(), static_cast<int64_t>(N) * H, st);
      }
      cuda::matmul_forward(mlp_out.data(), act, W(bp.fc_proj_w), W(bp.fc_proj_b), N, H, C, st);
    } else {
      // q_proj, k_proj, v_proj as one [QD + 2 KD, C] weight (adjacency checked at construction).
      cuda::matmul_forward(qkv, ln1, W(bp.q_w), nullptr, N, C, QKD, st);
      cuda::rope_forward(qkv, rope_cos.data(), rope_sin.data(), B, T, NH, HS, QKD, st);
      cuda::rope_forward(qkv + QD, rope_cos.data(), rope_sin.data(), B, T, NKV, HS, QKD, st);
      cuda::attention_forward(a.atty.data(), a.lse.data(), qkv, qkv + QD, qkv + QD + KD, B, T, NH, NKV, HS, QKD, QKD,
                              attn_scale(l), st);
      cuda::matmul_forward(attproj.data(), a.atty.data(), W(bp.o_w), nullptr, N, QD, C, st);
      norm_fwd_fused(a.res2.data(), ln2, nullptr, a.ln2_rstd.data(), x, attproj.data(), bp.ln2_w, -1, N);
      cuda::matmul_forward(a.fch.data(), ln2, W(bp.gate_w), nullptr, N, C, H, st);
      cuda::matmul_forward(a.up.data(), ln2, W(bp.up_w), nullptr, N, C, H, st);
      cuda::swiglu_forward(act, a.fch.data(), a.up.data(), static_cast<int64_t>(N) * H, st);
      cuda::matmul_forward(mlp_out.data(), act, W(bp.down_w), nullptr, N, H, C, st);
    }
  }
  if (L == 0) {
    norm_fwd(lnf.data(), lnf_mean.data(), lnf_rstd.data(), encoded.data(), idx.lnf_w, idx.lnf_b, N);
  } else {
    LayerBufs& p = layers[L - 1];
    norm_fwd_fused(p.res3.data(), lnf.data(), lnf_mean.data(), lnf_rstd.data(), p.res2.data(), mlp_out.data(),
                   idx.lnf_w, idx.lnf_b, N);
  }
  cuda::matmul_forward(logits.data(), lnf.data(), W(head_index()), nullptr, N, C, Vp, st);
  logits_valid = true;

  have_targets = targets != nullptr;
  if (!targets) {
    CUDA_CHECK(cudaStreamSynchronize(st));
    if (valid) *valid = 0;
    return 0.0;
  }
  std::memcpy(h_targets.data(), targets, static_cast<size_t>(N) * sizeof(int32_t));
  CUDA_CHECK(cudaMemcpyAsync(d_targets.data(), targets, static_cast<size_t>(N) * sizeof(int32_t),
                             cudaMemcpyHostToDevice, st));
  cuda::softmax_xent_forward(losses.data(), logits.data(), d_targets.data(), N, V, Vp, st);
  CUDA_CHECK(cudaMemcpyAsync(h_losses, losses.data(), static_cast<size_t>(N) * sizeof(float), cudaMemcpyDeviceToHost,
                             st));
  CUDA_CHECK(cudaStreamSynchronize(st));
  // Summed on the host in token order, in double, exactly as the CPU backend does.
  double sum = 0;
  int64_t count = 0;
  for (int i = 0; i < N; ++i)
    if (targets[i] >= 0) {
      sum += h_losses[i];
      ++count;
    }
  if (valid) *valid = count;
  return sum;
}

void CudaBackend::Impl::backward(float dloss) {
  if (!have_targets) throw RuntimeError("cuda backend: backward() needs a forward() with targets");
  if (!logits_valid)
    throw RuntimeError("cuda backend: backward() needs a new forward(): the last backward() overwrote the logits");
  const auto& idx = model.index();
  const int B = curB, T = curT, N = B * T;
  const int64_t NHs = static_cast<int64_t>(N) * H;
  void* scratch = colsum_scratch.data();

  // dlogits = dloss * (softmax - onehot), in place over the logits.
  cuda::softmax_xent_backward(logits.data(), logits.data(), d_targets.data(), nullptr, dloss, N, V, Vp, st);
  logits_valid = false;
  // lm_head: logits = lnf @ W^T.
  cuda::matmul_backward(dln.data(), G(head_index()), nullptr, logits.data(), lnf.data(), W(head_index()), N, C, Vp,
                        scratch, st, false);
  const bf16* xL = L > 0 ? layers[L - 1].res3.data() : encoded.data();
  norm_bwd(dres.data(), idx.lnf_w, idx.lnf_b, dln.data(), xL, lnf_mean.data(), lnf_rstd.data(), N, false);
  report_ready(model.block_begin(L), nparams);

  for (int l = L - 1; l >= 0; --l) {
    const BlockParams& bp = idx.blocks[l];
    LayerBufs& a = layers[l];
    const bf16* x = block_input(l);
    // Dropped activations come back just before their first use: the MLP activation, then ln2;
    // ln1 only after ln2's last use, since with recompute 2 they share one scratch.
    const bf16* act = recompute_act(l, N);
    const bf16* ln2 = recompute_ln(l, 2, N);
    // dres holds d(res3); the MLP branch sees it as d(mlp_out).
    if (!llama) {
      cuda::matmul_backward(dfch_act.data(), G(bp.fc_proj_w), G(bp.fc_proj_b), dres.data(), act,
                            W(bp.fc_proj_w), N, H, C, scratch, st, false);
      cuda::gelu_backward(dfch.data(), dfch_act.data(), a.fch.data(), NHs, st, false);
      cuda::matmul_backward(dln.data(), G(bp.fc_w), G(bp.fc_b), dfch.data(), ln2, W(bp.fc_w), N, C, H,
                            scratch, st, false);
      norm_bwd(dres.data(), bp.ln2_w, bp.ln2_b, dln.data(), a.res2.data(), a.ln2_mean.data(), a.ln2_rstd.data(), N,
               true);
      // dres now holds d(res2) = d(x) from the identity path + d(attproj).
      cuda::matmul_backward(datty.data(), G(bp.attn_proj_w), G(bp.attn_proj_b), dres.data(), a.atty.data(),
                            W(bp.attn_proj_w), N, C, C, scratch, st, false);
      const bf16* qkv = a.qkv.data();
      bf16* dq = dqkv.data();
      cuda::attention_backward(dq, dq + C, dq + 2 * C, datty.data(), qkv, qkv + C, qkv + 2 * C, a.atty.data(),
                               a.lse.data(), B, T, NH, NH, HS, 3 * C, 3 * C, attn_scale(l), attn_scratch.data(), st,
                               false);
      const bf16* ln1 = recompute_ln(l, 1, N);
      cuda::matmul_backward(dln.data(), G(bp.qkv_w), G(bp.qkv_b), dq, ln1, W(bp.qkv_w), N, C, 3 * C, scratch,
                            st, false);
      norm_bwd(dres.data(), bp.ln1_w, bp.ln1_b, dln.data(), x, a.ln1_mean.data(), a.ln1_rstd.data(), N, true);
    } else {
      cuda::matmul_backward(dfch_act.data(), G(bp.down_w), nullptr, dres.data(), act, W(bp.down_w), N, H,
                            C, scratch, st, false);
      cuda::swiglu_backward(dfch.data(), dup.data(), dfch_act.data(), a.fch.data(), a.up.data(), NHs, st, false);
      cuda::matmul_backward(dln.data(), G(bp.gate_w), nullptr, dfch.data(), ln2, W(bp.gate_w), N, C, H,
                            scratch, st, false);
      cuda::matmul_backward(dln.data(), G(bp.up_w), nullptr, dup.data(), ln2, W(bp.up_w), N, C, H, scratch,
                            st, true);
      norm_bwd(dres.data(), bp.ln2_w, -1, dln.data(), a.res2.data(), nullptr, a.ln2_rstd.data(), N, true);
      cuda::matmul_backward(datty.data(), G(bp.o_w), nullptr, dres.data(), a.atty.data(), W(bp.o_w), N, QD, C,
                            scratch, st, false);
      const bf16* qkv = a.qkv.data();
      bf16* dq = dqkv.data();
      cuda::attention_backward(dq, dq + QD, dq + QD + KD, datty.data(), qkv, qkv + QD, qkv + QD + KD, a.atty.data(),
                               a.lse.data(), B, T, NH, NKV, HS, QKD, QKD, attn_scale(l), attn_scratch.data(), st,
                               false);
      cuda::rope_backward(dq, rope_cos.data(), rope_sin.data(), B, T, NH, HS, QKD, st);
      cuda::rope_backward(dq + QD, rope_cos.data(), rope_sin.data(), B, T, NKV, HS, QKD, st);
      // q/k/v weight gradients as one [QD + 2 KD, C] block (adjacent in the fp32 gradients too).
      const bf16* ln1 = recompute_ln(l, 1, N);
      cuda::matmul_backward(dln.data(), G(bp.q_w), nullptr, dq, ln1, W(bp.q_w), N, C, QKD, scratch, st,
                            false);
      norm_bwd(dres.data(), bp.ln1_w, -1, dln.data(), x, nullptr, a.ln1_rstd.data(), N, true);
    }
    report_ready(model.block_begin(l), model.block_begin(l + 1));
  }
  ensure_emb_scratch(N);
  cuda::embedding_backward(G(idx.wte), G(idx.wpe), dres.data(), d_inputs.data(), B, T, C, Vp, emb_scratch.data(),
                           emb_scratch.bytes(), st);
  report_ready(0, model.block_begin(0));
}

// ================================ CudaBackend ================================

CudaBackend::CudaBackend(const Model& model, int max_B, int max_T, const CudaBackendOptions& opts)
    : impl_(std::make_unique<Impl>(model, max_B, max_T, opts)) {}
CudaBackend::~CudaBackend() = default;

const Model& CudaBackend::model() const { return impl_->model; }
float* CudaBackend::params() { return impl_->params.data(); }
float* CudaBackend::grads() { return impl_->grads.data(); }

void CudaBackend::upload_params(const float* host) {
  Impl& m = *impl_;
  CUDA_CHECK(cudaMemcpyAsync(m.params.data(), host, m.params.bytes(), cudaMemcpyHostToDevice, m.st));
  m.refresh();
  CUDA_CHECK(cudaStreamSynchronize(m.st));
}
void CudaBackend::download_params(float* host) const {
  const Impl& m = *impl_;
  CUDA_CHECK(cudaMemcpyAsync(host, m.params.data(), m.params.bytes(), cudaMemcpyDeviceToHost, m.st));
  CUDA_CHECK(cudaStreamSynchronize(m.st));
}
void CudaBackend::download_grads(float* host) const {
  const Impl& m = *impl_;
  CUDA_CHECK(cudaMemcpyAsync(host, m.grads.data(), m.grads.bytes(), cudaMemcpyDeviceToHost, m.st));
  CUDA_CHECK(cudaStreamSynchronize(m.st));
}

double CudaBackend::forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid) {
  return impl_->forward(inputs, targets, B, T, valid);
}
void CudaBackend::zero_grad() {
  CUDA_CHECK(cudaMemsetAsync(impl_->grads.data(), 0, impl_->grads.bytes(), impl_->st));
}
void CudaBackend::backward(float dloss) { impl_->backward(dloss); }

void CudaBackend::logits_at(int b, int t, float* out) {
  Impl& m = *impl_;
  if (!m.logits_valid)
    throw RuntimeError("cuda backend: logits_at() after backward(): the logits were overwritten by their gradients");
  if (b < 0 || b >= m.curB || t < 0 || t >= m.curT)
    throw RuntimeError("cuda backend: logits_at(" + std::to_string(b) + ", " + std::to_string(t) +
                       ") outside the last forward's batch");
  m.staging.resize(m.V);
  const bf16* row = m.logits.data() + (static_cast<size_t>(b) * m.curT + t) * m.Vp;
  CUDA_CHECK(cudaMemcpyAsync(m.staging.data(), row, static_cast<size_t>(m.V) * sizeof(bf16), cudaMemcpyDeviceToHost,
                             m.st));
  CUDA_CHECK(cudaStreamSynchronize(m.st));
  for (int i = 0; i < m.V; ++i) out[i] = bf16_bits_to_float(m.staging[i]);
}

double CudaBackend::grad_sq_norm() {
  Impl& m = *impl_;
  cuda::global_norm_squared(m.d_norm.data(), m.grads.data(), static_cast<int64_t>(m.nparams), m.gn_scratch.data(),
                            m.st);
  double h = 0;
  CUDA_CHECK(cudaMemcpyAsync(&h, m.d_norm.data(), sizeof(double), cudaMemcpyDeviceToHost, m.st));
  CUDA_CHECK(cudaStreamSynchronize(m.st));
  return h;
}

void CudaBackend::scale_grads(float s) {
  cuda::scale_inplace(impl_->grads.data(), s, static_cast<int64_t>(impl_->nparams), impl_->st);
}

const float* CudaBackend::matrix_input(size_t pi, int64_t* rows) {
  Impl& m = *impl_;
  *rows = static_cast<int64_t>(m.curB) * m.curT;
  const auto& idx = m.model.index();
  const int p = static_cast<int>(pi);
  const bf16* src = nullptr;
  int width = 0;
  if (p == idx.lm_head && idx.lm_head >= 0) {
    src = m.lnf.data();
    width = m.C;
  }
  // With recompute a dropped input is recomputed into its shared scratch first.
  const int N = m.curB * m.curT;
  for (int l = 0; l < m.L && src == nullptr; ++l) {
    const BlockParams& b = idx.blocks[l];
    const LayerBufs& a = m.layers[l];
    if (p == b.qkv_w || p == b.q_w || p == b.k_w || p == b.v_w) {
      src = m.recompute_ln(l, 1, N);
      width = m.C;
    } else if (p == b.attn_proj_w || p == b.o_w) {
      src = a.atty.data();
      width = m.QD;
    } else if (p == b.fc_w || p == b.gate_w || p == b.up_w) {
      src = m.recompute_ln(l, 2, N);
      width = m.C;
    } else if (p == b.fc_proj_w || p == b.down_w) {
      src = m.recompute_act(l, N);
      width = m.H;
    }
  }
  if (src == nullptr || *rows == 0) return nullptr;
  const size_t n = static_cast<size_t>(*rows) * width;
  m.staging.resize(n);
  m.mi_host.resize(n);
  CUDA_CHECK(cudaMemcpyAsync(m.staging.data(), src, n * sizeof(bf16), cudaMemcpyDeviceToHost, m.st));
  CUDA_CHECK(cudaStreamSynchronize(m.st));
  for (size_t i = 0; i < n; ++i) m.mi_host[i] = bf16_bits_to_float(m.staging[i]);
  return m.mi_host.data();
}

void CudaBackend::refresh_params() { impl_->refresh(); }
void CudaBackend::set_param_refresh(ParamRefresh p) { impl_->opts.refresh = p; }
void* CudaBackend::bf16_params() {
  if (impl_->opts.bf16_rounding == Bf16Rounding::stochastic)
    throw RuntimeError("cuda backend: bf16_params(): with run.bf16_rounding \"stochastic\" only the backend's refresh "
                       "writes the bf16 weights (a device optimizer's own bf16 write rounds to nearest)");
  return impl_->wbf.data();
}
const CudaBackendOptions& CudaBackend::options() const { return impl_->opts; }
void CudaBackend::begin_step(int64_t step) { impl_->sr_step = step; }
double CudaBackend::peak_flops() const { return impl_->peak; }
cudaStream_t CudaBackend::stream() const { return impl_->st; }
size_t CudaBackend::device_bytes() const { return impl_->allocated; }

void CudaBackend::set_grad_ready(GradReadyFn fn) { impl_->grad_ready = std::move(fn); }
void* CudaBackend::stream_handle() const { return impl_->st; }
std::shared_ptr<float> CudaBackend::alloc_floats(size_t n) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)));
  CUDA_CHECK(cudaMemsetAsync(p, 0, std::max<size_t>(n, 1) * sizeof(float), impl_->st));
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { cudaFree(q); });
}
void CudaBackend::copy_floats(float* dst, const float* src, size_t n) {
  if (n == 0 || dst == src) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, impl_->st));
}

std::unique_ptr<Backend> make_cuda_backend(const Model& model, int max_B, int max_T, const BackendOptions& opts) {
  // Under `llmtrain launch` (torchrun conventions) each local rank takes its own GPU.
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  if (count == 0) throw RuntimeError("cuda backend: no CUDA device is visible");
  if (const char* lr = std::getenv("LOCAL_RANK")) {
    const int r = std::atoi(lr);
    if (r >= 0) CUDA_CHECK(cudaSetDevice(r % count));
  }
  CudaBackendOptions o;
  static_cast<BackendOptions&>(o) = opts;
  return std::make_unique<CudaBackend>(model, max_B, max_T, o);
}

}  // namespace llmtrain
