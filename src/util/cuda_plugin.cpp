// Loading the CUDA plugin (see cuda_plugin.h): once per process, under a mutex, the outcome cached
// (a failed load is not retried: the answer would not change).
#include "util/cuda_plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "llmtrain/error.h"

// Weak: null unless this binary links the plugin's code statically.
extern "C" const llmtrain::CudaPlugin* llmtrain_cuda_plugin() __attribute__((weak));

namespace llmtrain {
namespace {

struct Loaded {
  const CudaPlugin* plugin = nullptr;
  std::string why;
};

std::string executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

Loaded load() {
  Loaded r;
  if (llmtrain_cuda_plugin) {
    r.plugin = llmtrain_cuda_plugin();
    return r;
  }
  const char* env = std::getenv("LLMTRAIN_CUDA_PLUGIN");
  const std::string path = env && *env ? std::string(env) : executable_dir() + "/libllmtrain_cuda.so";
  if (!std::filesystem::exists(path)) {
    r.why = env && *env ? "LLMTRAIN_CUDA_PLUGIN=" + path + " does not exist"
                        : "this build has no CUDA (" + path +
                              " is not there; the CUDA plugin is built when nvcc is found at configure time)";
    return r;
  }
  // RTLD_GLOBAL: NCCL and cuBLAS symbols stay visible to later loads; RTLD_NOW: a missing library
  // or symbol fails here, with the name, rather than at the first call.
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char* e = ::dlerror();
    r.why = "cannot load the CUDA plugin: " + std::string(e ? e : path);
    return r;
  }
  using Entry = const CudaPlugin* (*)();
  auto entry = reinterpret_cast<Entry>(::dlsym(h, "llmtrain_cuda_plugin"));
  if (!entry) {
    r.why = path + " is not an llmtrain CUDA plugin (no llmtrain_cuda_plugin symbol)";
    return r;
  }
  const CudaPlugin* p = entry();
  if (!p || p->abi != kCudaPluginAbi) {
    r.why = path + " was built from another version of llmtrain (plugin ABI " + std::to_string(p ? p->abi : -1) +
            ", this binary " + std::to_string(kCudaPluginAbi) + ")";
    return r;
  }
  r.plugin = p;
  return r;
}

const Loaded& loaded() {
  static std::once_flag once;
  static Loaded r;
  std::call_once(once, [] { r = load(); });
  return r;
}

}  // namespace

const CudaPlugin* try_cuda_plugin(std::string* why) {
  const Loaded& l = loaded();
  if (!l.plugin && why) *why = l.why;
  return l.plugin;
}

const CudaPlugin& cuda_plugin(const std::string& what) {
  const Loaded& l = loaded();
  if (!l.plugin) throw InputError(what + ": " + l.why);
  return *l.plugin;
}

int cuda_device_count() {
  const CudaPlugin* p = try_cuda_plugin();
  return p ? p->device_count() : 0;
}

}  // namespace llmtrain
