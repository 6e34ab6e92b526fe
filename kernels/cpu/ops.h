// CPU reference ops: the source of truth every other backend is tested against.
// Each op has <op>_forward and <op>_backward, implemented side by side in kernels/cpu/<op>.cpp as
// templates explicitly instantiated for float (training) and double (finite-difference tests).
//
// Conventions (shared with the CUDA kernels in kernels/, which use the same layouts):
// - Sizes: B batch, T sequence, C channels, NH query heads, NKV key/value heads, HS head size,
//   V real vocabulary, Vp padded vocabulary, N = B*T rows, OC output channels.
// - Row-major everywhere; activations are [B, T, C] (= [N, C]); weights are [out, in].
// - Every *_backward ACCUMULATES (+=) into all of its gradient outputs (input and parameter
//   grads), so residual branches and grad accumulation need no extra adds; callers zero buffers.
//   The one exception is softmax_xent_backward, which overwrites dlogits (it is the first grad).
// - Optional pointers (bias, wpe, ...) may be nullptr and are then skipped, forward and backward.
// - Parallel with OpenMP over independent rows; results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace llmtrain::cpu {

// ---- embedding: out[b,t,:] = wte[inp[b,t],:] + (wpe ? wpe[t,:] : 0) ----
template <typename F>
void embedding_forward(F* out, const int32_t* inp, const F* wte, const F* wpe, int B, int T, int C);
template <typename F>
void embedding_backward(F* dwte, F* dwpe, const F* dout, const int32_t* inp, int B, int T, int C);

// ---- layernorm over the last dim; saves mean and rstd [N] for backward ----
template <typename F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias, int N,
                       int C, float eps);
template <typename F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                        const F* mean, const F* rstd, int N, int C);

// ---- rmsnorm: out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps); saves rstd [N] ----
template <typename F>
void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* weight, int N, int C, float eps);
template <typename F>
void rmsnorm_backward(F* dinp, F* dweight, const F* dout, const F* inp, const F* weight, const F* rstd,
                      int N, int C);

// ---- matmul (Linear): out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] ----
template <typename F>
void matmul_forward(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC);
template <typename F>
void matmul_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, int N,
                     int C, int OC);

// ---- causal self-attention with grouped KV heads (NH % NKV == 0; head h uses kv head h/(NH/NKV)).
// q is [B, T, NH, HS] with `q_stride` elements between consecutive tokens, k and v are
// [B, T, NKV, HS] with `kv_stride` (GPT-2's fused qkv buffer [B,T,3C]: q=qkv, k=qkv+C, v=qkv+2C,
// both strides 3C). out is [B, T, NH, HS] dense (stride NH*HS). `scale` multiplies q.k (usually
// 1/sqrt(HS)). lse [B, NH, T] keeps the row log-sum-exp so backward recomputes the probabilities
// (no T x T matrix is kept, as in flash attention). dq/dk/dv use the same strides as q/k/v.
template <typename F>
void attention_forward(F* out, F* lse, const F* q, const F* k, const F* v, int B, int T, int NH, int NKV,
                       int HS, int q_stride, int kv_stride, float scale);
template <typename F>
void attention_backward(F* dq, F* dk, F* dv, const F* dout, const F* q, const F* k, const F* v,
                        const F* out, const F* lse, int B, int T, int NH, int NKV, int HS, int q_stride,
                        int kv_stride, float scale);

// ---- GELU, tanh approximation (GPT-2) ----
template <typename F>
void gelu_forward(F* out, const F* inp, int64_t N);
template <typename F>
void gelu_backward(F* dinp, const F* dout, const F* inp, int64_t N);

// ---- SwiGLU: out = silu(gate) * up (LLaMA MLP) ----
template <typename F>
void swiglu_forward(F* out, const F* gate, const F* up, int64_t N);
template <typename F>
void swiglu_backward(F* dgate, F* dup, const F* dout, const F* gate, const F* up, int64_t N);

// ---- RoPE, Hugging Face "rotate_half" pairing: dims (i, i + HS/2), i < HS/2, frequency
// theta^(-2i/HS), position t. x is [B, T, H, HS] with `stride` elements between tokens.
// In place (forward rotates by +angle, backward rotates the gradient by -angle, which is its
// exact adjoint). cos/sin tables are [T, HS/2], built by rope_tables.
void rope_tables(float* cos_t, float* sin_t, int T, int HS, float theta);
template <typename F>
void rope_forward(F* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride);
template <typename F>
void rope_backward(F* dx, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride);

// ---- residual: out = a + b ----
template <typename F>
void residual_forward(F* out, const F* a, const F* b, int64_t N);

// ---- fused softmax + cross-entropy over the padded vocabulary. logits [N, Vp]; only the first V
// columns are real (padding columns are ignored and get zero gradient). targets[i] < 0 means
// "ignore this row": loss 0. losses [N] gets -log p(target). backward writes
// dlogits = dloss[i] * (softmax - onehot) for the first V columns, 0 for padding and ignored rows.
template <typename F>
void softmax_xent_forward(F* losses, const F* logits, const int32_t* targets, int N, int V, int Vp);
template <typename F>
void softmax_xent_backward(F* dlogits, const F* logits, const int32_t* targets, const F* dloss, int N,
                           int V, int Vp);

}  // namespace llmtrain::cpu
