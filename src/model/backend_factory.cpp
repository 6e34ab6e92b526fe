// Backend selection by name. The CPU reference backend is always built; "cuda" needs a CUDA build
// that includes the model-level CUDA backend.
#include "llmtrain/backend.h"
#include "llmtrain/error.h"

namespace llmtrain {

#if defined(LLMTRAIN_HAVE_CUDA_BACKEND)
std::unique_ptr<Backend> make_cuda_backend(const Model& model, int max_B, int max_T);
#endif

std::unique_ptr<Backend> make_backend(const std::string& name, const Model& model, int max_B, int max_T) {
  if (name == "cpu") return make_cpu_backend(model, max_B, max_T);
  if (name == "cuda") {
#if defined(LLMTRAIN_HAVE_CUDA_BACKEND)
    return make_cuda_backend(model, max_B, max_T);
#elif defined(LLMTRAIN_HAVE_CUDA)
    throw InputError("run.backend: \"cuda\": this version has the CUDA kernels but not yet the CUDA training "
                     "backend; use \"cpu\"");
#else
    throw InputError("run.backend: \"cuda\": this build has no CUDA support (nvcc was not found at configure time)");
#endif
  }
  throw InputError("run.backend: unknown backend \"" + name + "\" (expected cpu or cuda)");
}

}  // namespace llmtrain
