// The error reporting every CUDA-side file shares (cuda/common.cuh for the .cu files, the
// optimizers' OPT_* macros for plain C++): a failing call throws RuntimeError naming the library,
// the call and its file:line. Plain C++: no device code, so g++ and nvcc both include it.
#pragma once
#include <cublas_api.h>

#include <sstream>
#include <string>

#include "llmtrain/error.h"

namespace llmtrain::cuda {

[[noreturn]] inline void throw_cuda_error(const char* what, const char* call, const char* file, int line,
                                          const std::string& detail) {
  std::ostringstream os;
  os << what << " failed: " << call << " at " << file << ":" << line << ": " << detail;
  throw RuntimeError(os.str());
}

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_<unknown>";
  }
}

}  // namespace llmtrain::cuda
