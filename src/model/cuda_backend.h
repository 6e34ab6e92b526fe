// The CUDA training backend: GPT-2 and LLaMA forward/backward on one GPU, the device twin of the
// CPU reference model (src/model/cpu_model.h) with the same parameter layout, the same op order and
// the same accumulate-into-grads contract. Precision (DESIGN.md section 4): fp32 master parameters
// and fp32 gradients in the model's ParamLayout (params()/grads() are device pointers), a bf16
// working copy of the parameters that every GEMM and kernel reads, bf16 activations, fp32
// statistics and fp32 accumulation everywhere. Deterministic: every kernel is atomic-free and the
// GEMMs are cuBLASLt with cached algorithms, so the same inputs give the same bits run to run.
//
// The bf16 copy. The optimizer updates the fp32 masters in place through params(); the bf16 copy
// must then be refreshed (fp32 -> bf16). Since the backend-agnostic training loop cannot tell the
// backend when it stepped, the default policy refreshes at the start of every forward() (one fused
// cast, 6 bytes per parameter: ~0.25 ms for GPT-2 124M on an H100). A loop that knows better sets
// ParamRefresh::explicit_only and calls refresh_params() after each optimizer step (upload_params()
// always refreshes). A device optimizer that writes the bf16 copy itself can use bf16_params().
//
// Rounding (BackendOptions::bf16_rounding). "nearest": round to nearest even. "stochastic": round
// up with probability equal to the discarded fraction, unbiased in expectation; the random bits
// are a pure hash of (seed, step, element index) (kernels/cuda/cast.cu), with the seed from the options
// and the step from begin_step(), so every refresh within one optimizer step gives the same copy,
// every rank of a data-parallel run gets the same copy, and a resumed run repeats the bits of an
// uninterrupted one. The device optimizers' own bf16 write rounds to nearest, so bf16_params() is
// refused (RuntimeError) with stochastic rounding: the refresh is then the copy's only writer.
//
// Recomputation (BackendOptions::recompute). 1: the MLP activation (GELU / SwiGLU output) is not
// kept per layer; forward writes it to one shared [N, H] scratch and backward recomputes it from
// the kept pre-activation(s) (fch, and up for LLaMA) with the same kernel. 2: also the normalised
// ln1/ln2 outputs go to one shared [N, C] scratch; backward re-runs the norm forward kernel on the
// kept residual-stream input (res2, or the previous block's res3 / the embedding), which yields
// the saved mean/rstd again (its statistics go to a scratch; backward keeps using the saved ones).
// The forward forms res3 + ln1 with the fused residual+norm kernel and backward uses the plain
// norm kernel on the stored res3; both normalise the bf16-rounded residual with the same code, so
// the bits agree. Results are therefore bitwise identical to recompute 0 (the tests check it).
// Not with fuse_gelu: the cuBLASLt GELU epilogue is not bitwise equal to the standalone kernel.
//
// Limits of the kernels: head size 64 or 128, n_embd a multiple of 8 and <= 4096, GPT-2's
// intermediate size a multiple of 8 (LLaMA's may be anything). The constructor says which one a
// model breaks (InputError).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "llmtrain/backend.h"

namespace llmtrain {

enum class ParamRefresh { every_forward, explicit_only };

struct CudaBackendOptions : BackendOptions {
  // GELU fused into the c_fc GEMM's cuBLASLt epilogue (saves one pass over the [N, 4C] MLP
  // activation). Off by default: the standalone kernel is the one tested op-by-op against the CPU.
  bool fuse_gelu = false;
  ParamRefresh refresh = ParamRefresh::every_forward;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const Model& model, int max_B, int max_T, const CudaBackendOptions& opts = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  const Model& model() const override;
  bool on_device() const override { return true; }
  float* params() override;
  float* grads() override;
  void upload_params(const float* host) override;
  void download_params(float* host) const override;
  void download_grads(float* host) const override;
  double forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid) override;
  void zero_grad() override;
  void backward(float dloss) override;
  // Valid between a forward() and the next backward(): backward overwrites the logits with their
  // gradients in place (RuntimeError after that).
  void logits_at(int b, int t, float* out) override;
  double grad_sq_norm() override;
  void scale_grads(float s) override;
  // A host fp32 copy of the bf16 activation that multiplied the matrix in the last forward
  // (downloaded on each call, valid until the next call); nullptr for non-matrix parameters and
  // for a tied lm_head, as on the CPU.
  const float* matrix_input(size_t param_index, int64_t* rows) override;
  void set_grad_ready(GradReadyFn fn) override;
  void* stream_handle() const override;
  // Device memory; copies are queued on stream().
  std::shared_ptr<float> alloc_floats(size_t n) override;
  void copy_floats(float* dst, const float* src, size_t n) override;
  // Sets the step that keys stochastic rounding (no effect with nearest rounding).
  void begin_step(int64_t step) override;
  // The detected GPU's nominal dense bf16 peak (device.cu's table), FLOP/s; 0 if not in the table.
  double peak_flops() const override;
  size_t memory_bytes() const override { return device_bytes(); }

  // ---- CUDA-specific ----
  // bf16 working copy <- fp32 masters, with the configured rounding.
  void refresh_params();
  void set_param_refresh(ParamRefresh p);
  // The bf16 working copy (device, __nv_bfloat16, model.layout() order), for a device optimizer
  // that writes it itself; RuntimeError with stochastic rounding (see above).
  void* bf16_params();
  const CudaBackendOptions& options() const;
  // The stream all of this backend's work is queued on (a blocking stream: ordered with the legacy
  // default stream). Device optimizers should queue their updates on it.
  cudaStream_t stream() const;
  // Device bytes this backend allocated (parameters, gradients, activations, scratch).
  size_t device_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<Backend> make_cuda_backend(const Model& model, int max_B, int max_T, const BackendOptions& opts = {});

}  // namespace llmtrain
