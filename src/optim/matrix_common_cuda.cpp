// Host-side machinery shared by the device optimizers (see optim_common.h): handles, tables, the
// batched bf16 GEMM, the Newton-Schulz engine and the matrix-optimizer base, plus the factory
// (make_device_optimizer) and the checkpoint copies (device_state_copy) that src/optim calls.
#include "optim/matrix_common_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>

namespace llmtrain {

std::unique_ptr<Optimizer> make_device_optimizer(const GroupConfig& cfg, const nlohmann::json& o,
                                                 const std::vector<ParamRef>& p, uint64_t seed) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    throw InputError("optimizer." + cfg.name + ": a device optimizer needs a CUDA GPU, and none is visible");
  }
  using namespace cuda::optim;
  if (cfg.type == "adamw") return make_adamw_device(cfg, o, p);
  if (cfg.type == "rmnp") return make_rmnp_device(cfg, o, p);
  if (cfg.type == "muon") return make_muon_device(cfg, o, p);
  if (cfg.type == "newton_muon") return make_newton_muon_device(cfg, o, p);
  if (cfg.type == "lowrank_muon") return make_lowrank_muon_device(cfg, o, p, seed);
  if (cfg.type == "polargrad") return make_polargrad_device(cfg, o, p);
  throw InputError("optimizer." + cfg.name + ".type: unknown optimizer type \"" + cfg.type + "\"");
}

void device_state_copy(void* dst, const void* src, size_t bytes, bool to_host) {
  // Every optimizer stream must be drained: updates may be in flight on a non-blocking stream.
  OPT_CUDA(cudaDeviceSynchronize());
  if (bytes == 0) return;
  OPT_CUDA(cudaMemcpy(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice));
  OPT_CUDA(cudaDeviceSynchronize());
}

namespace cuda::optim {

// ---------------------------------------------------------------- DeviceCtx

constexpr size_t kLtWorkspace = 32ull << 20;

DeviceCtx::~DeviceCtx() {
  if (solver_) cusolverDnDestroy(solver_);
  if (lt_) cublasLtDestroy(lt_);
  if (blas_) cublasDestroy(blas_);
}

void DeviceCtx::set_stream(cudaStream_t s) {
  stream_ = s;
  if (blas_) OPT_CUBLAS(cublasSetStream(blas_, s));
  if (solver_) OPT_CUSOLVER(cusolverDnSetStream(solver_, s));
}

cublasHandle_t DeviceCtx::blas() {
  if (!blas_) {
    OPT_CUBLAS(cublasCreate(&blas_));
    OPT_CUBLAS(cublasSetStream(blas_, stream_));
    // Plain fp32 (no TF32) for the fp32 GEMMs: they stand in for the CPU's fp32 / fp64 math.
    OPT_CUBLAS(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  }
  return blas_;
}

cublasLtHandle_t DeviceCtx::lt() {
  if (!lt_) {
    OPT_CUBLAS(cublasLtCreate(&lt_));
    ws_.reset(kLtWorkspace);
  }
  return lt_;
}

cusolverDnHandle_t DeviceCtx::solver() {
  if (!solver_) {
    OPT_CUSOLVER(cusolverDnCreate(&solver_));
    OPT_CUSOLVER(cusolverDnSetStream(solver_, stream_));
  }
  return solver_;
}

std::vector<Chunk> make_chunks(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> c;
  for (size_t u = 0; u < sizes.size(); ++u)
    for (int64_t s = 0; s < sizes[u]; s += kChunk) c.push_back({(int32_t)u, 0, s});
  return c;
}

bool aligned(const void* p, size_t bytes) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// ---------------------------------------------------------------- BatchedGemm

BatchedGemm::~BatchedGemm() {
  if (lD_) cublasLtMatrixLayoutDestroy(lD_);
  if (lC_) cublasLtMatrixLayoutDestroy(lC_);
  if (lB_) cublasLtMatrixLayoutDestroy(lB_);
  if (lA_) cublasLtMatrixLayoutDestroy(lA_);
  if (desc_) cublasLtMatmulDescDestroy(desc_);
}

namespace {
// The largest power of two <= 256 dividing the byte offset of a bf16 element `elems` in (leading
// dimensions, batch strides and block offsets alike): what cuBLASLt may assume of the address.
uint32_t offset_align(long long elems) {
  uint32_t a = 256;
  while (a > 2 && (2 * elems) % a != 0) a >>= 1;
  return a;
}

cublasLtMatrixLayout_t make_layout(int rows, int cols, int ld, int batch, long long stride) {
  cublasLtMatrixLayout_t l = nullptr;
  OPT_CUBLAS(cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, rows, cols, ld));
  OPT_CUBLAS(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
  OPT_CUBLAS(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  return l;
}
}  // namespace

void BatchedGemm::prepare(DeviceCtx& ctx, const GemmSpec& sp) {
  spec_ = sp;
  OPT_CUBLAS(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  OPT_CUBLAS(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &sp.opA, sizeof sp.opA));
  OPT_CUBLAS(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &sp.opB, sizeof sp.opB));
  const int rA = sp.opA == CUBLAS_OP_N ? sp.m : sp.k, cA = sp.opA == CUBLAS_OP_N ? sp.k : sp.m;
  const int rB = sp.opB == CUBLAS_OP_N ? sp.k : sp.n, cB = sp.opB == CUBLAS_OP_N ? sp.n : sp.k;
  lA_ = make_layout(rA, cA, sp.lda, sp.batch, sp.sA);
  lB_ = make_layout(rB, cB, sp.ldb, sp.batch, sp.sB);
  lC_ = make_layout(sp.m, sp.n, sp.ldc, sp.batch, sp.sC);
  lD_ = make_layout(sp.m, sp.n, sp.ldc, sp.batch, sp.sC);
  cublasLtMatmulPreference_t pref = nullptr;
  OPT_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  ctx.lt();
  const size_t ws = ctx.lt_workspace_bytes();
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  // Base pointers promise sp.base_align (256 for buffer bases); batch strides and leading
  // dimensions of odd shapes lower it, so tell the heuristic what every member's address promises.
  auto align = [&](int ld, long long stride) {
    return std::min({sp.base_align, offset_align(ld), sp.batch > 1 ? offset_align(stride) : 256u});
  };
  const uint32_t aA = align(sp.lda, sp.sA), aB = align(sp.ldb, sp.sB), aC = align(sp.ldc, sp.sC);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aA, sizeof aA);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &aB, sizeof aB);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &aC, sizeof aC);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &aC, sizeof aC);
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(ctx.lt(), desc_, lA_, lB_, lC_, lD_, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  use_lt_ = st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS;
  if (use_lt_) algo_ = res.algo;
  ctx.blas();  // the fallback needs it; create it now, outside any timed region
}

void BatchedGemm::run(DeviceCtx& ctx, float alpha, const void* A, const void* B, float beta, const void* C, void* D) {
  if (use_lt_) {
    OPT_CUBLAS(cublasLtMatmul(ctx.lt(), desc_, &alpha, A, lA_, B, lB_, &beta, C, lC_, D, lD_, &algo_,
                              ctx.lt_workspace(), ctx.lt_workspace_bytes(), ctx.stream()));
    return;
  }
  if (beta != 0.0f && C != D) {
    // Only the [m, n] part of each member: the rest of D (past m rows when ldc > m, or the
    // neighbouring blocks of a split product) may hold results that must stay.
    for (int i = 0; i < spec_.batch; ++i)
      OPT_CUDA(cudaMemcpy2DAsync(static_cast<uint16_t*>(D) + i * spec_.sC, (size_t)spec_.ldc * 2,
                                 static_cast<const uint16_t*>(C) + i * spec_.sC, (size_t)spec_.ldc * 2,
                                 (size_t)spec_.m * 2, (size_t)spec_.n, cudaMemcpyDeviceToDevice, ctx.stream()));
  }
  OPT_CUBLAS(cublasGemmStridedBatchedEx(ctx.blas(), spec_.opA, spec_.opB, spec_.m, spec_.n, spec_.k, &alpha, A,
                                        CUDA_R_16BF, spec_.lda, spec_.sA, B, CUDA_R_16BF, spec_.ldb, spec_.sB, &beta,
                                        D, CUDA_R_16BF, spec_.ldc, spec_.sC, spec_.batch, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
}

// ---------------------------------------------------------------- NsEngine

void NsEngine::set_symmetric(bool on) {
  if (!plans_.empty()) throw RuntimeError("NsEngine: set_symmetric after add_plan");
  symmetric_ = on;
}

int NsEngine::add_plan(int64_t rows, int64_t cols, int count) {
  if (final_) throw RuntimeError("NsEngine: add_plan after finalize");
  for (size_t i = 0; i < plans_.size(); ++i)
    if (plans_[i].rows == rows && plans_[i].cols == cols && plans_[i].count == count) return (int)i;
  if (rows > INT32_MAX || cols > INT32_MAX) throw RuntimeError("NsEngine: matrix too large");
  Plan p;
  p.rows = rows;
  p.cols = cols;
  p.count = count;
  p.tall = rows > cols;
  p.s = std::min(rows, cols);
  p.l = std::max(rows, cols);
  const int s = (int)p.s, l = (int)p.l;
  const long long sX = (long long)s * l, sA = (long long)s * s;
  p.g1 = std::make_unique<BatchedGemm>();
  p.g2 = std::make_unique<BatchedGemm>();
  p.g3 = std::make_unique<BatchedGemm>();
  GemmSpec g1, g2, g3;
  if (p.tall) {
    // X column-major [s, l], ld s.   A = X X^T;   X' = B X + a X.
    g1 = {CUBLAS_OP_N, CUBLAS_OP_T, s, s, l, s, s, s, sX, sX, sA, count};
    g3 = {CUBLAS_OP_N, CUBLAS_OP_N, s, l, s, s, s, s, sA, sX, sX, count};
  } else {
    // Z = X^T column-major [l, s], ld l.   A = Z^T Z;   Z' = Z B^T + a Z.
    g1 = {CUBLAS_OP_T, CUBLAS_OP_N, s, s, l, l, l, s, sX, sX, sA, count};
    g3 = {CUBLAS_OP_N, CUBLAS_OP_T, l, s, s, l, s, l, sX, sA, sX, count};
  }
  g2 = {CUBLAS_OP_N, CUBLAS_OP_N, s, s, s, s, s, s, sA, sA, sA, count};  // B = c A A + b A
  // Symmetric split: h a multiple of 64 (GEMM tile friendly) from s = 256 up, of 8 below, so every
  // block offset keeps 16-byte alignment.
  const int unit = s >= 256 ? 64 : 8;
  if (symmetric_ && s >= 16) p.h = (s / 2) / unit * unit;
  if (p.h > 0) {
    const int h = p.h, h2 = s - h;
    GemmSpec g1b, g2b;
    if (p.tall) {
      // A[:, :h] = X X[:h, :]^T;   A[h:, h:] = X[h:, :] X[h:, :]^T (X at +h).
      g1 = {CUBLAS_OP_N, CUBLAS_OP_T, s, h, l, s, s, s, sX, sX, sA, count};
      g1b = {CUBLAS_OP_N, CUBLAS_OP_T, h2, h2, l, s, s, s, sX, sX, sA, count};
      g1b.base_align = std::min(offset_align(h), offset_align((long long)h * s + h));
    } else {
      // A[:, :h] = Z^T Z[:, :h];   A[h:, h:] = Z[:, h:]^T Z[:, h:] (Z at +h l).
      g1 = {CUBLAS_OP_T, CUBLAS_OP_N, s, h, l, l, l, s, sX, sX, sA, count};
      g1b = {CUBLAS_OP_T, CUBLAS_OP_N, h2, h2, l, l, l, s, sX, sX, sA, count};
      g1b.base_align = std::min(offset_align((long long)h * l), offset_align((long long)h * s + h));
    }
    // B[:, :h] = c A A[:, :h] + b A[:, :h];   B[h:, h:] = c A[h:, :] A[h:, :]^T + b A[h:, h:].
    g2 = {CUBLAS_OP_N, CUBLAS_OP_N, s, h, s, s, s, s, sA, sA, sA, count};
    g2b = {CUBLAS_OP_N, CUBLAS_OP_T, h2, h2, s, s, s, s, sA, sA, sA, count};
    g2b.base_align = std::min(offset_align(h), offset_align((long long)h * s + h));
    p.g1b = std::make_unique<BatchedGemm>();
    p.g2b = std::make_unique<BatchedGemm>();
    p.g1b->prepare(ctx_, g1b);
    p.g2b->prepare(ctx_, g2b);
  }
  p.g1->prepare(ctx_, g1);
  p.g2->prepare(ctx_, g2);
  p.g3->prepare(ctx_, g3);
  plans_.push_back(std::move(p));
  return (int)plans_.size() - 1;
}

void NsEngine::finalize() {
  size_t x = 0, a = 0;
  int cnt = 0;
  for (const Plan& p : plans_) {
    x = std::max(x, (size_t)(p.count * p.s * p.l));
    a = std::max(a, (size_t)(p.count * p.s * p.s));
    cnt = std::max(cnt, p.count);
  }
  xa_.reset(x);
  xb_.reset(x);
  a_.reset(a);
  b_.reset(a);
  partials_.reset((size_t)cnt * kNormParts);
  final_ = true;
}

const void* NsEngine::run(int plan, const float* src, const NsCoefficients& c, int steps) {
  if (!final_) finalize();
  if (steps <= 0) steps = c.default_steps;
  Plan& p = plans_[(size_t)plan];
  const int64_t n_each = p.rows * p.cols;
  sumsq_partials(src, p.count, n_each, partials_.data(), ctx_.stream());
  cast_scaled_bf16(src, xa_.data(), p.count, n_each, partials_.data(), (float)c.norm_factor, ctx_.stream());
  uint16_t* x = xa_.data();
  uint16_t* y = xb_.data();
  for (int t = 0; t < steps; ++t) {
    const auto& abc = c.steps[std::min<size_t>((size_t)t, c.steps.size() - 1)];
    const float a = (float)abc[0], b = (float)abc[1], cc = (float)abc[2];
    uint16_t* A = a_.data();
    uint16_t* B = b_.data();
    p.g1->run(ctx_, 1.0f, x, x, 0.0f, A, A);  // A = X X^T (tall) or Z^T Z; split: A[:, :h]
    if (p.h > 0) {
      const int s = (int)p.s, h = p.h;
      const long long d = (long long)h * s + h;  // the trailing diagonal block
      const uint16_t* x2 = x + (p.tall ? (long long)h : (long long)h * p.l);  // X[h:, :] or Z[:, h:]
      p.g1b->run(ctx_, 1.0f, x2, x2, 0.0f, A + d, A + d);  // A[h:, h:]
      mirror_block_bf16(A, s, h, p.count, p.s * p.s, ctx_.stream());
      p.g2->run(ctx_, cc, A, A, b, A, B);                   // B[:, :h]
      p.g2b->run(ctx_, cc, A + h, A + h, b, A + d, B + d);  // B[h:, h:]
      mirror_block_bf16(B, s, h, p.count, p.s * p.s, ctx_.stream());
    } else {
      p.g2->run(ctx_, cc, A, A, b, A, B);  // B = c A^2 + b A
    }
    if (p.tall)
      p.g3->run(ctx_, 1.0f, B, x, a, x, y);  // X' = B X + a X
    else
      p.g3->run(ctx_, 1.0f, x, B, a, x, y);  // Z' = Z B^T + a Z
    std::swap(x, y);
  }
  return x;
}

double NsEngine::flops(int plan, int steps) const {
  const Plan& p = plans_[(size_t)plan];
  const double s = (double)p.s, l = (double)p.l;
  return (double)p.count * steps * (4.0 * s * s * l + 2.0 * s * s * s);
}

// ---------------------------------------------------------------- DeviceMatrixOptimizer

DeviceMatrixOptimizer::DeviceMatrixOptimizer(const GroupConfig& cfg, const nlohmann::json& o,
                                             const std::vector<ParamRef>& params)
    : group_(cfg.name), type_(cfg.type), wd_(cfg.weight_decay), rule_(momentum_rule(o)) {
  diag_rows_ = o.at("diagnostics_side").get<std::string>() == "rows";
  for (const auto& p : params) {
    require_matrix(cfg, *p.info);
    infos_.push_back(p.info);
    off_.push_back(total_);
    total_ += pad4(p.info->numel);
  }
  m_.reset(total_);
  if (total_) OPT_CUDA(cudaMemset(m_.data(), 0, total_ * sizeof(float)));
}

void DeviceMatrixOptimizer::set_momentum(const std::vector<const float*>& g, const std::vector<float*>& u) {
  mom_.host.clear();
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < infos_.size(); ++i) {
    MomUnit x{};
    x.g = g[i];
    x.m = m_ptr(i);
    x.u = u[i];
    x.n = (int64_t)infos_[i]->numel;
    x.vec = x.n % 4 == 0 && aligned(x.g, 16) && aligned(x.m, 16) && aligned(x.u, 16);
    mom_.host.push_back(x);
    sizes.push_back(x.n);
  }
  mom_chunks_.host = make_chunks(sizes);
  mom_.upload(ctx_.stream());
  mom_chunks_.upload(ctx_.stream());
}

bool DeviceMatrixOptimizer::rebind(const std::vector<ParamRef>& params) {
  bool same = bound_.size() == params.size();
  for (size_t i = 0; same && i < params.size(); ++i)
    same = bound_[i].w == params[i].w && bound_[i].g == params[i].g && bound_[i].w_bf16 == params[i].w_bf16;
  if (!same) bound_ = params;
  return !same;
}

std::vector<StateTensor> DeviceMatrixOptimizer::state() {
  std::vector<StateTensor> s;
  for (size_t i = 0; i < infos_.size(); ++i)
    s.push_back({"m/" + infos_[i]->name, infos_[i]->shape, m_ptr(i), infos_[i]->numel, true});
  for (auto& t : extra_state()) s.push_back(t);
  return s;
}

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

nlohmann::json DeviceMatrixOptimizer::diagnostics() {
  if (last_.size() != infos_.size()) return nullptr;  // no step yet
  std::vector<float> m, g;
  return dominance_diagnostics(infos_, diag_rows_, [&](size_t i, std::vector<float>& u) {
    const size_t n = u.size();
    m.resize(n);
    g.resize(n);
    const float* ge = effective_gradient(i, last_[i].g);
    OPT_CUDA(cudaStreamSynchronize(ctx_.stream()));
    OPT_CUDA(cudaMemcpy(m.data(), m_ptr(i), n * sizeof(float), cudaMemcpyDeviceToHost));
    OPT_CUDA(cudaMemcpy(g.data(), ge, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t j = 0; j < n; ++j) u[j] = rule_.u(m[j], g[j]);
  });
}

}  // namespace cuda::optim
}  // namespace llmtrain
