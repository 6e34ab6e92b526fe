// A reference cuBLASLt for the CPU emulator: the descriptor API and cublasLtMatmul as the cuBLAS
// documentation defines them, written from the documentation and not from our wrapper
// (kernels/cuda/matmul.cu), so that a misunderstanding of the API there shows up as a failing test.
//   D = epilogue(alpha * op(A) op(B) + beta * C), column-major, op = N or T, leading dimensions,
//   strided batches (BATCH_COUNT, STRIDED_BATCH_OFFSET in elements), fp32 compute and scale type,
//   A/B bf16 or fp32, C/D bf16 or fp32; beta == 0 never reads C (it may hold NaN).
//   Epilogues: DEFAULT, BIAS (bias of length rows(D), broadcast over columns, added before the
//   activation), GELU, GELU_BIAS, GELU_AUX, GELU_AUX_BIAS (aux receives the GELU input, after bias,
//   with its own leading dimension, which must be a multiple of 8 and >= rows(D)).
// Checks that return CUBLAS_STATUS_INVALID_VALUE / NOT_SUPPORTED instead of computing: inconsistent
// shapes between op(A), op(B), C and D, ld < rows, an in-place C == D with different layouts, a
// missing bias / aux pointer, and pointers less aligned than the preference an algorithm was
// chosen under (the heuristic may assume that alignment), or an algorithm reused for another shape.
#include <cublasLt.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "cuda_emu.h"

namespace {

struct Layout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct Desc {
  cublasComputeType_t compute;
  cudaDataType scale;
  cublasOperation_t opA = CUBLAS_OP_N, opB = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  bool bias_type_set = false;  // default: the type of D
  cudaDataType bias_type = CUDA_R_32F;
  void* aux = nullptr;
  int64_t aux_ld = 0;
  bool aux_type_set = false;
  cudaDataType aux_type = CUDA_R_32F;
  cublasLtPointerMode_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
};
struct Pref {
  uint64_t max_workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: the documented default
};
// What an algorithm was chosen for, kept inside the opaque cublasLtMatmulAlgo_t.
struct AlgoInfo {
  uint32_t magic;
  uint32_t align[4];
  uint64_t m, n, k;
  int32_t epilogue;
  int32_t typeD;
};
constexpr uint32_t kAlgoMagic = 0xE3B0C442u;
static_assert(sizeof(AlgoInfo) <= sizeof(cublasLtMatmulAlgo_t), "algo info fits the opaque algo");

template <class T, class O>
T* as(O* p) {
  return reinterpret_cast<T*>(p);
}

bool supported_type(cudaDataType t) { return t == CUDA_R_16BF || t == CUDA_R_32F; }

float load(const void* p, cudaDataType t, size_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(p)[i];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}
void store(void* p, cudaDataType t, size_t i, float v) {
  if (t == CUDA_R_32F)
    static_cast<float*>(p)[i] = v;
  else
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

float gelu_tanh(float x) {
  const float c = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

bool has_bias(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}
bool has_gelu(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_GELU || e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX ||
         e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}
bool has_aux(cublasLtEpilogue_t e) { return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS; }

cublasStatus_t complain(const char* why) {
  std::fprintf(stderr, "emu cuBLASLt: %s\n", why);
  return CUBLAS_STATUS_INVALID_VALUE;
}

// Shapes and types of one problem; m, n, k out. Empty string = fine.
const char* validate(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dd, uint64_t& m,
                     uint64_t& n, uint64_t& k) {
  if (d.compute != CUBLAS_COMPUTE_32F || d.scale != CUDA_R_32F) return "only CUBLAS_COMPUTE_32F with fp32 scale is emulated";
  if (!supported_type(a.type) || !supported_type(b.type) || !supported_type(c.type) || !supported_type(dd.type))
    return "only bf16 / fp32 matrices are emulated";
  if (a.type != b.type) return "A and B must have the same type";
  if (a.type == CUDA_R_32F && dd.type != CUDA_R_32F) return "fp32 A/B need fp32 C/D";
  if (c.type != dd.type) return "C and D must have the same type";
  m = d.opA == CUBLAS_OP_N ? a.rows : a.cols;
  k = d.opA == CUBLAS_OP_N ? a.cols : a.rows;
  const uint64_t kb = d.opB == CUBLAS_OP_N ? b.rows : b.cols;
  n = d.opB == CUBLAS_OP_N ? b.cols : b.rows;
  if (kb != k) return "op(A) columns != op(B) rows";
  if (dd.rows != m || dd.cols != n || c.rows != m || c.cols != n) return "C/D shape is not rows(op(A)) x cols(op(B))";
  for (const Layout* l : {&a, &b, &c, &dd})
    if (l->ld < static_cast<int64_t>(l->rows) || l->ld < 1) return "leading dimension smaller than the row count";
  if (a.batch != dd.batch || b.batch != dd.batch || c.batch != dd.batch) return "batch counts differ";
  if (d.opA != CUBLAS_OP_N && d.opA != CUBLAS_OP_T) return "op must be N or T";
  if (d.opB != CUBLAS_OP_N && d.opB != CUBLAS_OP_T) return "op must be N or T";
  const cublasLtEpilogue_t e = d.epilogue;
  if (e != CUBLASLT_EPILOGUE_DEFAULT && !has_bias(e) && !has_gelu(e)) return "epilogue not emulated";
  if (has_aux(e)) {
    if (d.aux_ld < static_cast<int64_t>(m) || d.aux_ld % 8 != 0)
      return "EPILOGUE_AUX_LD must be >= rows(D) and a multiple of 8";
  }
  return nullptr;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = reinterpret_cast<cublasLtHandle_t>(new char(0));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete reinterpret_cast<char*>(h);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  auto* x = new Layout{type, rows, cols, ld};
  *l = as<cublasLtMatrixLayoutOpaque_t>(x);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete as<Layout>(l);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  Layout* x = as<Layout>(l);
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      if (size != sizeof(int32_t)) return complain("BATCH_COUNT is an int32_t");
      std::memcpy(&x->batch, buf, 4);
      return x->batch >= 1 ? CUBLAS_STATUS_SUCCESS : complain("BATCH_COUNT < 1");
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      if (size != sizeof(int64_t)) return complain("STRIDED_BATCH_OFFSET is an int64_t");
      std::memcpy(&x->stride, buf, 8);
      return CUBLAS_STATUS_SUCCESS;
    default: return complain("matrix layout attribute not emulated");
  }
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  auto* x = new Desc();
  x->compute = compute;
  x->scale = scale;
  *d = as<cublasLtMatmulDescOpaque_t>(x);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete as<Desc>(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  Desc* x = as<Desc>(d);
  auto get = [&](auto& field) {
    if (size != sizeof(field)) return complain("matmul desc attribute of the wrong size");
    std::memcpy(&field, buf, size);
    return CUBLAS_STATUS_SUCCESS;
  };
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return get(x->opA);
    case CUBLASLT_MATMUL_DESC_TRANSB: return get(x->opB);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return get(x->epilogue);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return get(x->bias);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: x->bias_type_set = true; return get(x->bias_type);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return get(x->aux);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return get(x->aux_ld);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: x->aux_type_set = true; return get(x->aux_type);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: return get(x->pointer_mode);
    default: return complain("matmul desc attribute not emulated");
  }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = as<cublasLtMatmulPreferenceOpaque_t>(new Pref());
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete as<Pref>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  Pref* x = as<Pref>(p);
  auto get = [&](auto& field) {
    if (size != sizeof(field)) return complain("preference attribute of the wrong size");
    std::memcpy(&field, buf, size);
    return CUBLAS_STATUS_SUCCESS;
  };
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return get(x->max_workspace);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return get(x->align[0]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return get(x->align[1]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return get(x->align[2]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return get(x->align[3]);
    default: return complain("preference attribute not emulated");
  }
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* count) {
  if (requested < 1) return complain("requestedAlgoCount < 1");
  uint64_t m, n, k;
  const Desc& dx = *as<Desc>(desc);
  if (const char* why = validate(dx, *as<Layout>(a), *as<Layout>(b), *as<Layout>(c), *as<Layout>(d), m, n, k)) {
    *count = 0;
    std::fprintf(stderr, "emu cuBLASLt heuristic: %s\n", why);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const Pref px = pref ? *as<Pref>(pref) : Pref();
  std::memset(&results[0], 0, sizeof(results[0]));
  AlgoInfo info{kAlgoMagic, {px.align[0], px.align[1], px.align[2], px.align[3]}, m, n, k,
                static_cast<int32_t>(dx.epilogue), static_cast<int32_t>(as<Layout>(d)->type)};
  std::memcpy(&results[0].algo, &info, sizeof(info));
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *count = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha_p, const void* A,
                              cublasLtMatrixLayout_t adesc, const void* B, cublasLtMatrixLayout_t bdesc,
                              const void* beta_p, const void* C, cublasLtMatrixLayout_t cdesc, void* D,
                              cublasLtMatrixLayout_t ddesc, const cublasLtMatmulAlgo_t* algo, void*, size_t,
                              cudaStream_t) {
  const Desc& dx = *as<Desc>(desc);
  const Layout &la = *as<Layout>(adesc), &lb = *as<Layout>(bdesc), &lc = *as<Layout>(cdesc), &ld = *as<Layout>(ddesc);
  uint64_t m, n, k;
  if (const char* why = validate(dx, la, lb, lc, ld, m, n, k)) return complain(why);
  if (C == D && cdesc != ddesc &&
      (lc.ld != ld.ld || lc.type != ld.type || lc.stride != ld.stride))
    return complain("in-place matmul (C == D) needs identical C and D layouts");
  if (has_bias(dx.epilogue) && dx.bias == nullptr) return complain("bias epilogue without BIAS_POINTER");
  if (has_aux(dx.epilogue) && dx.aux == nullptr) return complain("aux epilogue without EPILOGUE_AUX_POINTER");
  if (dx.pointer_mode != CUBLASLT_POINTER_MODE_HOST) return complain("only host alpha/beta are emulated");
  if (algo != nullptr) {
    AlgoInfo info;
    std::memcpy(&info, algo, sizeof(info));
    if (info.magic != kAlgoMagic) return complain("algo was not produced by cublasLtMatmulAlgoGetHeuristic");
    if (info.m != m || info.n != n || info.k != k || info.epilogue != static_cast<int32_t>(dx.epilogue) ||
        info.typeD != static_cast<int32_t>(ld.type))
      return complain("algo was chosen for another problem (shape, epilogue or D type)");
    const void* ptrs[4] = {A, B, C, D};
    for (int i = 0; i < 4; ++i)
      if (reinterpret_cast<uintptr_t>(ptrs[i]) % info.align[i] != 0)
        return complain("a matrix pointer is less aligned than the preference the algo was chosen under");
  }
  const float alpha = *static_cast<const float*>(alpha_p), beta = *static_cast<const float*>(beta_p);
  const cudaDataType bias_type = dx.bias_type_set ? dx.bias_type : ld.type;
  const cudaDataType aux_type = dx.aux_type_set ? dx.aux_type : ld.type;
  const bool ta = dx.opA == CUBLAS_OP_T, tb = dx.opB == CUBLAS_OP_T;
  for (int32_t bt = 0; bt < ld.batch; ++bt) {
    const size_t oa = static_cast<size_t>(bt * la.stride), ob = static_cast<size_t>(bt * lb.stride);
    const size_t oc = static_cast<size_t>(bt * lc.stride), od = static_cast<size_t>(bt * ld.stride);
    for (uint64_t j = 0; j < n; ++j) {
      for (uint64_t i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (uint64_t p = 0; p < k; ++p) {
          // op(A)(i, p) and op(B)(p, j) in column-major storage.
          const size_t ia = ta ? p + i * la.ld : i + p * la.ld;
          const size_t ib = tb ? j + p * lb.ld : p + j * lb.ld;
          acc += load(A, la.type, oa + ia) * load(B, lb.type, ob + ib);
        }
        float v = alpha * acc;
        if (beta != 0.0f) v += beta * load(C, lc.type, oc + i + j * lc.ld);
        if (has_bias(dx.epilogue)) v += load(dx.bias, bias_type, i);
        if (has_aux(dx.epilogue)) store(dx.aux, aux_type, i + j * dx.aux_ld, v);
        if (has_gelu(dx.epilogue)) v = gelu_tanh(v);
        store(D, ld.type, od + i + j * ld.ld, v);
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
