// Linear layers on cuBLASLt: bf16 A/B, fp32 accumulation (CUBLAS_COMPUTE_32F), bias and GELU fused
// into the epilogue where they pay, fp32 weight gradients accumulated in place (beta = 1), and the
// bias gradient through our deterministic column sum (bias_grad). One cuBLASLt handle per device
// and one 32 MiB workspace per (device, stream), created on first use and cached; the chosen
// algorithm is cached per shape / epilogue / alignment, so steady-state calls only build
// descriptors.
//
// Layout mapping. cuBLASLt is column-major; our tensors are row-major. A row-major [R, Cc] matrix
// with leading dimension Cc is, byte for byte, the column-major [Cc, R] matrix with ld = Cc: its
// transpose. So every row-major product X = Y @ Z is computed as the column-major X^T = Z^T Y^T.
//   forward  out[N,OC] = inp[N,C] @ W[OC,C]^T     ->  out^T[OC,N] = W[OC,C] . inp^T[C,N]
//            W row-major [OC,C] = col-major [C,OC] ld=C, used transposed (op A = T): m=OC, k=C
//            inp row-major [N,C] = col-major [C,N] ld=C, used as is (op B = N): n=N
//            D = out as col-major [OC,N] ld=OC; the bias (length m = OC) broadcasts along n, which is
//            exactly "one bias per output channel".
//   dinp[N,C] = dout[N,OC] @ W[OC,C]              ->  dinp^T[C,N] = W^T[C,OC] . dout^T[OC,N]
//            A = W as col-major [C,OC] ld=C, op N: m=C, k=OC; B = dout as col-major [OC,N] ld=OC,
//            op N: n=N; D = dinp col-major [C,N] ld=C; beta = 1 accumulates.
//   dW[OC,C] += dout^T[OC,N] @ inp[N,C]           ->  dW^T[C,OC] += inp^T[C,N] . dout[N,OC]
//            A = inp as col-major [C,N] ld=C, op N: m=C, k=N; B = dout as col-major [OC,N] ld=OC,
//            op T gives [N,OC]: n=OC; D = dW (fp32) col-major [C,OC] ld=C, beta = 1.
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32ull << 20;

struct LtState {
  std::mutex mu;
  std::map<int, cublasLtHandle_t> handles;                        // per device
  std::map<std::pair<int, cudaStream_t>, void*> workspaces;        // per (device, stream)
  using AlgoKey = std::tuple<int, int, int, int, int, int, int, int, int, int>;
  std::map<AlgoKey, cublasLtMatmulAlgo_t> algos;
};

LtState& lt_state() {
  static LtState* s = new LtState();  // never destroyed: avoids teardown after the CUDA context
  return *s;
}

// Largest power of two (<= 256) dividing the address: what the heuristic may assume.
int alignment_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

struct Gemm {
  cublasOperation_t opA, opB;
  int m, n, k;
  const void* A;
  cudaDataType_t typeA;
  int lda;
  const void* B;
  cudaDataType_t typeB;
  int ldb;
  void* D;
  cudaDataType_t typeD;
  int ldd;
  float beta;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  void* aux = nullptr;
  int ld_aux = 0;
};

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)));
}

void run_gemm(const Gemm& g, cudaStream_t stream) {
  LtState& st = lt_state();
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cublasLtHandle_t handle;
  void* workspace;
  cublasLtMatmulAlgo_t algo;
  bool have_algo = false;
  const int alA = alignment_of(g.A), alB = alignment_of(g.B), alD = alignment_of(g.D);
  const LtState::AlgoKey key{dev,        static_cast<int>(g.opA) * 4 + static_cast<int>(g.opB),
                             g.m,        g.n,
                             g.k,        static_cast<int>(g.epilogue) * 2 + (g.beta != 0.0f ? 1 : 0),
                             static_cast<int>(g.typeD),
                             alA,        alB,
                             alD};
  {
    std::lock_guard<std::mutex> lock(st.mu);
    auto h = st.handles.find(dev);
    if (h == st.handles.end()) {
      cublasLtHandle_t nh;
      CUBLAS_CHECK(cublasLtCreate(&nh));
      h = st.handles.emplace(dev, nh).first;
    }
    handle = h->second;
    auto w = st.workspaces.find({dev, stream});
    if (w == st.workspaces.end()) {
      void* p = nullptr;
      CUDA_CHECK(cudaMalloc(&p, kWorkspaceBytes));
      w = st.workspaces.emplace(std::make_pair(dev, stream), p).first;
    }
    workspace = w->second;
    auto a = st.algos.find(key);
    if (a != st.algos.end()) {
      algo = a->second;
      have_algo = true;
    }
  }

  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t lA = nullptr, lB = nullptr, lD = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  // Release the descriptors on every path, including a throw from a check below.
  struct Cleanup {
    cublasLtMatmulDesc_t& desc;
    cublasLtMatrixLayout_t &lA, &lB, &lD;
    cublasLtMatmulPreference_t& pref;
    ~Cleanup() {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (lD) cublasLtMatrixLayoutDestroy(lD);
      if (lB) cublasLtMatrixLayoutDestroy(lB);
      if (lA) cublasLtMatrixLayoutDestroy(lA);
      if (desc) cublasLtMatmulDescDestroy(desc);
    }
  } cleanup{desc, lA, lB, lD, pref};

  CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, g.opA);
  set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSB, g.opB);
  // Stored shapes: op N stores [rows = m or k, ...]; op T stores the transpose.
  const int rowsA = g.opA == CUBLAS_OP_N ? g.m : g.k, colsA = g.opA == CUBLAS_OP_N ? g.k : g.m;
  const int rowsB = g.opB == CUBLAS_OP_N ? g.k : g.n, colsB = g.opB == CUBLAS_OP_N ? g.n : g.k;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lA, g.typeA, rowsA, colsA, g.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lB, g.typeB, rowsB, colsB, g.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lD, g.typeD, g.m, g.n, g.ldd));
  if (g.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, g.epilogue);
    if (g.bias != nullptr) {
      set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
      set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, CUDA_R_16BF);
    }
    if (g.aux != nullptr) {
      set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux);
      set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, static_cast<int64_t>(g.ld_aux));
      set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, CUDA_R_16BF);
    }
  }
  if (!have_algo) {
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const uint32_t a32 = alA, b32 = alB, d32 = alD;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32, sizeof(a32)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b32, sizeof(b32)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &d32, sizeof(d32)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &d32, sizeof(d32)));
    cublasLtMatmulHeuristicResult_t res{};
    int count = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, desc, lA, lB, lD, lD, pref, 1, &res, &count));
    if (count == 0) {
      throw_cuda_error("cuBLASLt", "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__,
                       "no algorithm for m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) +
                           " k=" + std::to_string(g.k) + " epilogue=" + std::to_string(static_cast<int>(g.epilogue)));
    }
    algo = res.algo;
    std::lock_guard<std::mutex> lock(st.mu);
    st.algos.emplace(key, algo);
  }
  const float alpha = 1.0f, beta = g.beta;
  CUBLAS_CHECK(cublasLtMatmul(handle, desc, &alpha, g.A, lA, g.B, lB, &beta, g.D, lD, g.D, lD, &algo, workspace,
                              kWorkspaceBytes, stream));
}

}  // namespace

// ================================ launchers ================================

void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC,
                    cudaStream_t stream, bf16* gelu_pre) {
  LLMTRAIN_CUDA_REQUIRE(N > 0 && C > 0 && OC > 0, "matmul_forward: sizes must be positive");
  // Any C and OC work (cuBLASLt picks an algorithm for the actual alignment; multiples of 8 are
  // fastest), except that the GELU epilogue's aux buffer needs a leading dimension multiple of 8.
  LLMTRAIN_CUDA_REQUIRE(gelu_pre == nullptr || OC % 8 == 0, "matmul_forward: fused GELU needs OC % 8 == 0");
  Gemm g{};
  g.opA = CUBLAS_OP_T;
  g.opB = CUBLAS_OP_N;
  g.m = OC;
  g.n = N;
  g.k = C;
  g.A = weight;
  g.typeA = CUDA_R_16BF;
  g.lda = C;
  g.B = inp;
  g.typeB = CUDA_R_16BF;
  g.ldb = C;
  g.D = out;
  g.typeD = CUDA_R_16BF;
  g.ldd = OC;
  g.beta = 0.0f;
  g.bias = bias;
  if (gelu_pre != nullptr) {
    g.epilogue = bias != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    g.aux = gelu_pre;
    g.ld_aux = OC;
  } else if (bias != nullptr) {
    g.epilogue = CUBLASLT_EPILOGUE_BIAS;
  }
  run_gemm(g, stream);
}

void matmul_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int N, int C, int OC, void* scratch, cudaStream_t stream,
                     bool accumulate_dinp) {
  LLMTRAIN_CUDA_REQUIRE(N > 0 && C > 0 && OC > 0, "matmul_backward: sizes must be positive");
  if (dinp != nullptr) {
    Gemm g{};
    g.opA = CUBLAS_OP_N;
    g.opB = CUBLAS_OP_N;
    g.m = C;
    g.n = N;
    g.k = OC;
    g.A = weight;
    g.typeA = CUDA_R_16BF;
    g.lda = C;
    g.B = dout;
    g.typeB = CUDA_R_16BF;
    g.ldb = OC;
    g.D = dinp;
    g.typeD = CUDA_R_16BF;
    g.ldd = C;
    g.beta = accumulate_dinp ? 1.0f : 0.0f;
    run_gemm(g, stream);
  }
  if (dweight != nullptr) {
    Gemm g{};
    g.opA = CUBLAS_OP_N;
    g.opB = CUBLAS_OP_T;
    g.m = C;
    g.n = OC;
    g.k = N;
    g.A = inp;
    g.typeA = CUDA_R_16BF;
    g.lda = C;
    g.B = dout;
    g.typeB = CUDA_R_16BF;
    g.ldb = OC;
    g.D = dweight;
    g.typeD = CUDA_R_32F;
    g.ldd = C;
    g.beta = 1.0f;
    run_gemm(g, stream);
  }
  if (dbias != nullptr) bias_grad(dbias, dout, N, OC, scratch, stream);
}

void matmul_release() {
  LtState& st = lt_state();
  std::lock_guard<std::mutex> lock(st.mu);
  for (auto& w : st.workspaces) cudaFree(w.second);
  st.workspaces.clear();
  for (auto& h : st.handles) cublasLtDestroy(h.second);
  st.handles.clear();
  st.algos.clear();
}

}  // namespace llmtrain::cuda
