// Shared host-side machinery of the device optimizers (plain C++, compiled into the CUDA plugin):
// checked CUDA / cuBLAS / cuSOLVER calls, the per-optimizer handles and stream, device
// tables for the multi-tensor kernels, the batched bf16 GEMM (cuBLASLt, with a cuBLAS fallback),
// the batched Newton-Schulz engine, and the base class of the device matrix optimizers (momentum
// buffers, state views, diagnostics).
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/cuda_device.h"
#include "cuda/errors.h"
#include "cuda/optim.h"
#include "llmtrain/error.h"
#include "optim/optimizers.h"

namespace llmtrain::cuda::optim {

#define OPT_CUDA(call)                                                                          \
  do {                                                                                          \
    cudaError_t e_ = (call);                                                                    \
    if (e_ != cudaSuccess)                                                                      \
      ::llmtrain::cuda::throw_cuda_error("CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(e_)); \
  } while (0)
#define OPT_CUBLAS(call)                                                                        \
  do {                                                                                          \
    cublasStatus_t s_ = (call);                                                                 \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                            \
      ::llmtrain::cuda::throw_cuda_error("cuBLAS", #call, __FILE__, __LINE__,                   \
                                         ::llmtrain::cuda::cublas_status_name(s_));             \
  } while (0)
#define OPT_CUSOLVER(call)                                                                      \
  do {                                                                                          \
    cusolverStatus_t s_ = (call);                                                               \
    if (s_ != CUSOLVER_STATUS_SUCCESS)                                                          \
      ::llmtrain::cuda::throw_cuda_error("cuSOLVER", #call, __FILE__, __LINE__,                 \
                                         "status " + std::to_string(static_cast<int>(s_)));     \
  } while (0)

// Handles and the stream of one optimizer (created lazily, destroyed with it).
class DeviceCtx {
 public:
  DeviceCtx() = default;
  ~DeviceCtx();
  DeviceCtx(const DeviceCtx&) = delete;
  DeviceCtx& operator=(const DeviceCtx&) = delete;
  cudaStream_t stream() const { return stream_; }
  void set_stream(cudaStream_t s);
  cublasHandle_t blas();
  cublasLtHandle_t lt();
  cusolverDnHandle_t solver();
  void* lt_workspace() { return ws_.data(); }
  size_t lt_workspace_bytes() const { return ws_.bytes(); }
  void sync() { OPT_CUDA(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  DeviceBuffer<char> ws_;
};

// A host vector mirrored in device memory (the unit and chunk tables of the kernels).
template <typename T>
struct DeviceTable {
  std::vector<T> host;
  DeviceBuffer<T> dev;
  void upload(cudaStream_t s) {
    if (host.empty()) return;
    if (dev.size() < host.size()) dev.reset(host.size());
    OPT_CUDA(cudaMemcpyAsync(dev.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  const T* data() const { return dev.data(); }
  int size() const { return (int)host.size(); }
};

// Chunks of kChunk elements over units of the given sizes, in unit order.
std::vector<Chunk> make_chunks(const std::vector<int64_t>& sizes);
bool aligned(const void* p, size_t bytes);
// Elements rounded up to a multiple of 4 (keeps every sub-buffer 16-byte aligned).
inline size_t pad4(size_t n) { return (n + 3) & ~size_t(3); }

// Strided-batched bf16 GEMM with fp32 accumulation, column-major (cuBLAS conventions):
// D_i = alpha op(A_i) op(B_i) + beta C_i, i < batch. C and D may differ (cuBLASLt); when no
// cuBLASLt algorithm fits, cublasGemmStridedBatchedEx runs after copying C into D.
struct GemmSpec {
  cublasOperation_t opA = CUBLAS_OP_N, opB = CUBLAS_OP_N;
  int m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  long long sA = 0, sB = 0, sC = 0;
  int batch = 1;
  // The alignment (bytes, a power of two <= 256) that every A/B/C pointer passed to run() promises
  // before batch strides: 256 for buffer bases, less for a block at an element offset.
  uint32_t base_align = 256;
};
class BatchedGemm {
 public:
  BatchedGemm() = default;
  ~BatchedGemm();
  BatchedGemm(const BatchedGemm&) = delete;
  BatchedGemm& operator=(const BatchedGemm&) = delete;
  void prepare(DeviceCtx& ctx, const GemmSpec& spec);
  void run(DeviceCtx& ctx, float alpha, const void* A, const void* B, float beta, const void* C, void* D);
  double flops() const { return 2.0 * spec_.m * (double)spec_.n * spec_.k * spec_.batch; }

 private:
  GemmSpec spec_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t lA_ = nullptr, lB_ = nullptr, lC_ = nullptr, lD_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  bool use_lt_ = false;
};

// Newton-Schulz on batches of same-shape fp32 matrices, in bf16 (fp32 accumulation) on the short
// side with no transposes: a row-major [r, c] buffer is, to cuBLAS, the column-major [c, r]
// matrix. Tall (r > c): that is X [s, l] (s = c) and X <- a X + (b A + c A^2) X, A = X X^T. Wide
// or square: it is Z = X^T [l, s] and Z <- a Z + Z (b A + c A^2)^T, A = Z^T Z. Either way the
// result buffer is the row-major [r, c] NS(G). Plans are added first, then finalize() allocates.
//
// Symmetric mode (set_symmetric before add_plan; the optimizers' "ns_symmetric" key): A and
// B = b A + c A^2 are symmetric, so each is built from two GEMMs over a split s = h + (s - h), the
// block column [s, h] and the trailing diagonal block [s-h, s-h], and the missing upper block is
// mirrored (mirror_block_bf16). That is 3/4 of the two symmetric products for h = s/2: 1/6 fewer
// FLOPs per step for square matrices, 5/36 for [s, 4s], at the price of two smaller GEMMs and a
// memory-bound mirror per product. Whether it pays is a property of the GPU and the shapes (bench
// optim --ns-symmetric both measures it); it is off by default. Shapes with s < 16 run unsplit.
class NsEngine {
 public:
  explicit NsEngine(DeviceCtx& ctx) : ctx_(ctx) {}
  void set_symmetric(bool on);
  bool symmetric() const { return symmetric_; }
  int add_plan(int64_t rows, int64_t cols, int count);
  void finalize();
  // Pre-normalises (Frobenius, per matrix), casts to bf16 and runs `steps` steps on the `count`
  // contiguous [rows, cols] fp32 matrices at src; returns the bf16 result (result_buffer(steps)).
  const void* run(int plan, const float* src, const NsCoefficients& c, int steps);
  const void* result_buffer(int steps) const { return steps % 2 == 0 ? xa_.data() : xb_.data(); }
  // Nominal FLOPs of one run (4 s^2 l + 2 s^3 per matrix per step, the unsplit products, in
  // either mode: the symmetric mode's saving shows as a higher effective rate).
  double flops(int plan, int steps) const;
  // The split of a plan's short side in symmetric mode (0: unsplit).
  int split(int plan) const { return plans_[(size_t)plan].h; }
  size_t bytes() const { return xa_.bytes() + xb_.bytes() + a_.bytes() + b_.bytes() + partials_.bytes(); }

 private:
  struct Plan {
    int64_t rows, cols, s, l;
    int count;
    bool tall;
    int h = 0;  // symmetric split (0: unsplit; g1b and g2b unused)
    std::unique_ptr<BatchedGemm> g1, g1b, g2, g2b, g3;
  };
  DeviceCtx& ctx_;
  std::vector<Plan> plans_;
  bool symmetric_ = false;
  DeviceBuffer<uint16_t> xa_, xb_, a_, b_;
  DeviceBuffer<float> partials_;
  bool final_ = false;
};

// Base of the device matrix methods: the momentum buffer of every tensor (one allocation,
// "m/<name>"), the momentum rule's options, decoupled decay, state views and diagnostics.
class DeviceMatrixOptimizer : public Optimizer {
 public:
  DeviceMatrixOptimizer(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params);
  std::vector<StateTensor> state() override;
  nlohmann::json diagnostics() override;
  bool on_device() const override { return true; }
  void set_stream(void* s) override { ctx_.set_stream(static_cast<cudaStream_t>(s)); }

 protected:
  void check_params(const std::vector<ParamRef>& params) const { check_step_tensors(group_, infos_, params); }
  // True when a ParamRef pointer differs from the last bound set (tables must be rebuilt).
  bool rebind(const std::vector<ParamRef>& params);
  float* m_ptr(size_t i) const { return m_.data() + off_[i]; }
  MomArgs mom_args() const { return {rule_.beta, 1.0f - rule_.beta, rule_.sum_form ? 1 : 0, rule_.nesterov ? 1 : 0}; }
  // The momentum launch of every tensor (M_i from g[i], U_i into u[i]; one multi-tensor kernel):
  // set_momentum uploads its tables, run_momentum() enqueues it.
  void set_momentum(const std::vector<const float*>& g, const std::vector<float*>& u);
  void run_momentum() { momentum_multi(mom_.data(), mom_chunks_.data(), mom_chunks_.size(), mom_args(), ctx_.stream()); }
  // The gradient the momentum saw for tensor i (Newton-Muon: preconditioned), device memory.
  virtual const float* effective_gradient(size_t i, const float* g) { return g; }
  virtual std::vector<StateTensor> extra_state() { return {}; }

 public:
  // For `bench optim`: enqueue only the preconditioning (Newton-Schulz of every U, or RMNP's row
  // normalisation) on the current buffers, after at least one step; false when the type has none.
  virtual bool bench_precondition() { return false; }
  // Its nominal work: FLOPs (Newton-Schulz) or the fewest bytes moved (row normalisation).
  virtual double bench_precondition_work() const { return 0.0; }

 protected:

  DeviceCtx ctx_;
  std::string group_, type_;
  float wd_ = 0;
  MomentumRule rule_;
  bool diag_rows_ = false;
  std::vector<const ParamInfo*> infos_;
  std::vector<size_t> off_;  // element offsets into m_ (and into any per-tensor scratch)
  size_t total_ = 0;         // padded elements
  DeviceBuffer<float> m_;
  std::vector<ParamRef> bound_, last_;
  DeviceTable<MomUnit> mom_;
  DeviceTable<Chunk> mom_chunks_;
};

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
                   const std::vector<bool>& include);

// Update tables of a group whose direction D lives at `d` (bf16 or fp32, the group's units
// consecutive, [rows, cols] each).
void build_update(ShapeGroup& g, const std::vector<ParamRef>& params, const void* d, bool d_bf16, cudaStream_t s);

// Device twins (one per CPU optimizer type, src/optim/<type>_cuda.cpp).
std::unique_ptr<Optimizer> make_adamw_device(const GroupConfig& cfg, const nlohmann::json& o,
                                             const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_rmnp_device(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_newton_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                   const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_lowrank_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                    const std::vector<ParamRef>& p, uint64_t seed);
std::unique_ptr<Optimizer> make_polargrad_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                 const std::vector<ParamRef>& p);

}  // namespace llmtrain::cuda::optim
