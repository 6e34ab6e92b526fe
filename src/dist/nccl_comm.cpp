// NCCL communicator: the collectives of comm.h on device buffers. Every operation is enqueued on
// the legacy default stream (which orders it after the backend's kernels on blocking streams)
// and waited for, so the blocking semantics match the Gloo communicator. The trainer also reduces
// a few host scalars (token counts, loss sums); pointers that CUDA does not know as device memory
// are staged through a device scratch buffer, so either kind of pointer works. Gradient buckets
// (start_all_reduce_sum) are the exception: they go on the communicator's own stream, each after
// an event recorded on the backend's (producer) stream, so they overlap the rest of backward;
// wait_all_reduces() makes the producer stream wait for them, without blocking the host.
#include "dist/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "llmtrain/error.h"

namespace llmtrain::dist {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw RuntimeError(std::string("nccl communicator: ") + what + ": " + cudaGetErrorString(e));
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();  // older runtimes flag plain host pointers as an error: clear it
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(NcclOptions o)
      : server_(std::move(o.server)), store_(std::move(o.store)), rank_(o.rank), world_(o.world) {
    int devices = 0;
    const cudaError_t de = cudaGetDeviceCount(&devices);
    if (de != cudaSuccess || devices == 0)
      throw RuntimeError("nccl communicator (rank " + std::to_string(rank_) + "/" + std::to_string(world_) +
                         "): no CUDA device is visible" + (de != cudaSuccess ? std::string(" (") + cudaGetErrorString(de) + ")" : "") +
                         "; use run.backend=cpu for Gloo data parallelism");
    device_ = o.local_rank % devices;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");

    ncclUniqueId id;
    const std::string key = o.prefix + "nccl_unique_id";
    if (rank_ == 0) {
      check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      store_->set(key, std::string(reinterpret_cast<const char*>(&id), sizeof id));
    } else {
      const std::string v = store_->get(key, o.timeout);
      if (v.size() != sizeof id)
        throw RuntimeError("nccl communicator: the unique id under " + key + " has " + std::to_string(v.size()) +
                           " bytes, expected " + std::to_string(sizeof id) + " (different NCCL versions?)");
      std::memcpy(&id, v.data(), sizeof id);
    }
    check(ncclCommInitRank(&comm_, world_, id, rank_), "ncclCommInitRank");
    cuda_check(cudaMalloc(&scratch_, kScratchBytes), "cudaMalloc");
  }

  ~NcclCommunicator() override {
    if (comm_stream_) cudaStreamSynchronize(comm_stream_);
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    if (comm_) ncclCommDestroy(comm_);
    if (scratch_) cudaFree(scratch_);
  }

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int world() const override { return world_; }

  void all_reduce_sum(float* data, size_t n) override { reduce(data, n, ncclFloat, sizeof(float)); }
  void all_reduce_sum(double* data, size_t n) override { reduce(data, n, ncclDouble, sizeof(double)); }

  void all_gather(const float* in, float* out, size_t n) override {
    if (n == 0) return;
    if (!is_device_pointer(out) || !is_device_pointer(in))
      throw RuntimeError("nccl all_gather: buffers must be device memory");
    check(ncclAllGather(in, out, n, ncclFloat, comm_, stream()), "ncclAllGather");
    sync("all_gather");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= world_)
      throw RuntimeError("broadcast: root " + std::to_string(root) + " is not a rank of a world of " +
                         std::to_string(world_));
    if (bytes == 0) return;
    staged(data, bytes, [&](void* d) {
      check(ncclBroadcast(d, d, bytes, ncclUint8, root, comm_, stream()), "ncclBroadcast");
    });
  }

  void barrier() override {
    float one = 1.0f;
    all_reduce_sum(&one, 1);
  }

  void set_producer_stream(void* s) override { producer_ = static_cast<cudaStream_t>(s); }

  void start_all_reduce_sum(float* data, size_t n) override {
    if (n == 0) return;
    if (!is_device_pointer(data)) {
      all_reduce_sum(data, n);
      return;
    }
    if (!comm_stream_) {
      cuda_check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
      cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
      cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    }
    // The bucket's gradients are queued, not necessarily written: start after them.
    cuda_check(cudaEventRecord(ready_, producer()), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(comm_stream_, ready_, 0), "cudaStreamWaitEvent");
    check(ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, comm_stream_), "ncclAllReduce (bucket)");
    pending_ = true;
  }

  void wait_all_reduces() override {
    if (!pending_) return;
    cuda_check(cudaEventRecord(done_, comm_stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(producer(), done_, 0), "cudaStreamWaitEvent");
    pending_ = false;
  }

 private:
  static constexpr size_t kScratchBytes = 1 << 20;

  static cudaStream_t stream() { return cudaStreamLegacy; }
  cudaStream_t producer() const { return producer_ ? producer_ : cudaStreamLegacy; }

  void check(ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return;
    std::string msg = std::string("nccl ") + what + " (rank " + std::to_string(rank_) + "/" + std::to_string(world_) +
                      ", device " + std::to_string(device_) + ") failed: " + ncclGetErrorString(r);
    if (comm_) {
      const char* last = ncclGetLastError(comm_);
      if (last && *last) msg += std::string(": ") + last;
    }
    throw RuntimeError(msg + " (did another rank exit? set NCCL_DEBUG=INFO for details)");
  }

  void sync(const char* what) { cuda_check(cudaStreamSynchronize(stream()), what); }

  void reduce(void* data, size_t n, ncclDataType_t type, size_t elem) {
    if (n == 0) return;
    staged(data, n * elem, [&](void* d) { check(ncclAllReduce(d, d, n, type, ncclSum, comm_, stream()), "ncclAllReduce"); });
  }

  // Runs op on `data` directly when it is device memory, else on a device copy (the scratch
  // buffer, or a temporary allocation when larger), copying the result back.
  template <typename Op>
  void staged(void* data, size_t bytes, Op&& op) {
    if (is_device_pointer(data)) {
      op(data);
      sync("collective");
      return;
    }
    void* dev = scratch_;
    void* owned = nullptr;
    if (bytes > kScratchBytes) {
      cuda_check(cudaMalloc(&owned, bytes), "cudaMalloc");
      dev = owned;
    }
    try {
      cuda_check(cudaMemcpy(dev, data, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
      op(dev);
      sync("collective");
      cuda_check(cudaMemcpy(data, dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    } catch (...) {
      if (owned) cudaFree(owned);
      throw;
    }
    if (owned) cudaFree(owned);
  }

  std::unique_ptr<TcpStoreServer> server_;
  std::shared_ptr<TcpStoreClient> store_;
  int rank_;
  int world_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  void* scratch_ = nullptr;
  cudaStream_t producer_ = nullptr;     // the backend's stream (null: the legacy default stream)
  cudaStream_t comm_stream_ = nullptr;  // gradient buckets, created on first use
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  bool pending_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(NcclOptions opts) {
  if (!opts.store) throw RuntimeError("make_nccl_communicator: no store");
  return std::make_unique<NcclCommunicator>(std::move(opts));
}

}  // namespace llmtrain::dist
