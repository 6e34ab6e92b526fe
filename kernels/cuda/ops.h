// CUDA ops: the device twins of kernels/cpu/ops.h, with the SAME layouts, strides and semantics (read
// that file first). Precision: activations and parameters are bf16, every kernel accumulates in
// fp32, statistics (mean, rstd, lse) are fp32, parameter gradients are fp32 (so accumulation over
// micro-steps stays exact enough), activation gradients are bf16. Every launcher is asynchronous on
// the given stream, validates its arguments on the host (RuntimeError on a broken precondition) and
// checks the launch.
//
// Conventions beyond the CPU contract:
// - Backward ops ACCUMULATE into parameter gradients (fp32 +=), always, as on the CPU. Activation
//   gradients (bf16) accumulate too by default (`accumulate = true`, the CPU semantics); passing
//   false overwrites instead, which saves a read when the caller knows the buffer is fresh.
// - Deterministic: no floating-point atomics anywhere; column reductions (parameter gradients of
//   norms, biases, embeddings) go through fixed-shape partial sums in a caller-provided scratch
//   buffer whose size the matching *_scratch_bytes() function gives. Results are bitwise identical
//   run to run on the same GPU and launch shapes.
// - Row widths C (and HS) must be multiples of 8 and tensors 16-byte aligned: kernels move 8 bf16
//   per 128-bit access.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace llmtrain::cuda {

using bf16 = __nv_bfloat16;

// ---- embedding: out[b,t,:] = wte[inp[b,t],:] + (wpe ? wpe[t,:] : 0). Token ids must be < Vp. ----
void embedding_forward(bf16* out, const int32_t* inp, const bf16* wte, const bf16* wpe, int B, int T, int C,
                       cudaStream_t stream);
// dwte[Vp,C] and dwpe[T,C] (fp32, +=). Deterministic: token positions are radix-sorted by id (a
// stable sort keeps positions in increasing order) and each vocab row is summed by one block in
// that order. `scratch` holds the sort: embedding_backward_scratch_bytes(B*T, Vp) bytes.
size_t embedding_backward_scratch_bytes(int N, int Vp);
void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* inp, int B, int T, int C,
                        int Vp, void* scratch, size_t scratch_bytes, cudaStream_t stream);

// ---- column sums used for parameter gradients (bias, norm gains): fixed partials, then one
// ordered pass. Scratch for `nsums` simultaneous column sums over width C: ----
size_t colsum_scratch_bytes(int C, int nsums);

// ---- layernorm over the last dim; mean and rstd [N] fp32 ----
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                       const bf16* bias, int N, int C, float eps, cudaStream_t stream);
// Fused residual add + layernorm: residual = a + b (rounded to bf16), then out = LN(residual).
// Saves a full read of the residual stream per layer.
void fused_residual_layernorm_forward(bf16* residual, bf16* out, float* mean, float* rstd, const bf16* a,
                                      const bf16* b, const bf16* weight, const bf16* bias, int N, int C,
                                      float eps, cudaStream_t stream);
// dinp (bf16, += unless !accumulate), dweight/dbias (fp32 +=, either may be nullptr).
// scratch: colsum_scratch_bytes(C, 2).
void layernorm_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int N, int C, void* scratch,
                        cudaStream_t stream, bool accumulate = true);

// ---- rmsnorm: out = inp * rstd * weight; rstd [N] fp32 ----
void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* weight, int N, int C, float eps,
                     cudaStream_t stream);
void fused_residual_rmsnorm_forward(bf16* residual, bf16* out, float* rstd, const bf16* a, const bf16* b,
                                    const bf16* weight, int N, int C, float eps, cudaStream_t stream);
// scratch: colsum_scratch_bytes(C, 1).
void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp, const bf16* weight,
                      const float* rstd, int N, int C, void* scratch, cudaStream_t stream,
                      bool accumulate = true);

// ---- bias gradient: dbias[OC] += sum_n dout[n, oc]. scratch: colsum_scratch_bytes(OC, 1). ----
void bias_grad(float* dbias, const bf16* dout, int N, int OC, void* scratch, cudaStream_t stream);

// ---- matmul (Linear) through cuBLASLt, weights [OC, C] (see kernels/cuda/matmul.cu for the mapping).
// Any C and OC (multiples of 8 are the fast path); the bias gradient needs OC % 8 == 0. ----
// out[N,OC] = inp[N,C] @ weight[OC,C]^T (+ bias[OC]). With gelu_pre != nullptr the GELU (tanh)
// epilogue is fused: gelu_pre receives the pre-activation (inp @ W^T + bias) and out = gelu(pre).
void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC,
                    cudaStream_t stream, bf16* gelu_pre = nullptr);
// dinp[N,C] (bf16, += unless !accumulate_dinp; may be nullptr), dweight[OC,C] (fp32 +=, may be
// nullptr), dbias[OC] (fp32 +=, may be nullptr; needs scratch of colsum_scratch_bytes(OC, 1)).
void matmul_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int N, int C, int OC, void* scratch, cudaStream_t stream,
                     bool accumulate_dinp = true);
// Frees the cached cuBLASLt handle and per-stream workspaces (before cudaDeviceReset or exit).
void matmul_release();

// ---- causal flash attention (layouts and GQA as in cpu::attention_forward). HS must be 64 or
// 128; q_stride and kv_stride multiples of 8; NH % NKV == 0. lse [B, NH, T] fp32 (natural log).
void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH,
                       int NKV, int HS, int q_stride, int kv_stride, float scale, cudaStream_t stream);
// dq/dk/dv (bf16, same strides as q/k/v; += unless !accumulate). Deterministic: dK/dV of a KV
// tile are owned by one block (looping over the query heads of its group), dQ of a Q tile by one
// block in a second pass. scratch: attention_backward_scratch_bytes(B, NH, T).
size_t attention_backward_scratch_bytes(int B, int NH, int T);
void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                        const bf16* v, const bf16* out, const float* lse, int B, int T, int NH, int NKV, int HS,
                        int q_stride, int kv_stride, float scale, void* scratch, cudaStream_t stream,
                        bool accumulate = true);

// ---- GELU (tanh approximation) ----
void gelu_forward(bf16* out, const bf16* inp, int64_t N, cudaStream_t stream);
void gelu_backward(bf16* dinp, const bf16* dout, const bf16* inp, int64_t N, cudaStream_t stream,
                   bool accumulate = true);

// ---- SwiGLU: out = silu(gate) * up ----
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t N, cudaStream_t stream);
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t N,
                     cudaStream_t stream, bool accumulate = true);

// ---- RoPE (HF rotate_half pairing, in place); cos/sin tables [T, HS/2] fp32 on the device ----
void rope_tables(float* cos_t, float* sin_t, int T, int HS, float theta, cudaStream_t stream);
void rope_forward(bf16* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride,
                  cudaStream_t stream);
void rope_backward(bf16* dx, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride,
                   cudaStream_t stream);

// ---- residual: out = a + b (out may alias a or b) ----
void residual_forward(bf16* out, const bf16* a, const bf16* b, int64_t N, cudaStream_t stream);

// ---- fused softmax + cross-entropy over the padded vocabulary (cpu::softmax_xent_*). logits
// [N, Vp] bf16; targets < 0 are ignored (loss 0, zero gradient row); a target >= V gives a NaN
// loss so the bug surfaces. dloss: per-row fp32 [N], or nullptr to use `dloss_scale` for all rows.
void softmax_xent_forward(float* losses, const bf16* logits, const int32_t* targets, int N, int V, int Vp,
                          cudaStream_t stream);
// Overwrites dlogits (may alias logits: each element is read before it is overwritten).
void softmax_xent_backward(bf16* dlogits, const bf16* logits, const int32_t* targets, const float* dloss,
                           float dloss_scale, int N, int V, int Vp, cudaStream_t stream);
// One pass over the logits for both: losses and dlogits written in place over logits.
void softmax_xent_forward_backward(float* losses, bf16* logits_to_dlogits, const int32_t* targets,
                                   const float* dloss, float dloss_scale, int N, int V, int Vp,
                                   cudaStream_t stream);

// ---- gradient norm: *out = sum of squares of x[0..n) (fp32 grads), in double, deterministic
// (fixed-grid partials then one ordered pass). scratch: global_norm_scratch_bytes(). ----
size_t global_norm_scratch_bytes();
void global_norm_squared(double* out, const float* x, int64_t n, void* scratch, cudaStream_t stream);
// Multiply fp32 grads in place (clipping).
void scale_inplace(float* x, float s, int64_t n, cudaStream_t stream);

// ---- casts: fp32 master -> bf16 working copy. Round to nearest even, or stochastic rounding with
// the random bits a pure function of (seed, step, index) so a run and its resume agree. ----
void cast_f32_to_bf16(bf16* out, const float* inp, int64_t n, cudaStream_t stream);
void cast_f32_to_bf16_stochastic(bf16* out, const float* inp, int64_t n, uint64_t seed, uint64_t step,
                                 cudaStream_t stream);
void cast_bf16_to_f32(float* out, const bf16* inp, int64_t n, cudaStream_t stream);

}  // namespace llmtrain::cuda
