// Communicators for data parallelism: one interface, three implementations (single process,
// Gloo over TCP for CPU runs and CI, NCCL for the CUDA backend). The training loop only calls
// these collectives; the rendezvous (who is rank 0, where to connect) comes from the environment
// set by `llmtrain launch` (or torchrun, srun, mpirun) and a small TCP key-value store.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llmtrain {

// Where this process sits in the job, read from the environment: RANK/WORLD_SIZE/LOCAL_RANK/
// LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT (launch, torchrun), else SLURM_PROCID/SLURM_NTASKS/
// SLURM_LOCALID, else OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK; none set = a single process.
struct DistEnv {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  int local_world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // LLMTRAIN_FORCE_COMM=1: use the gloo/nccl communicator even for a world of one, so that a single
  // GPU (or CPU) can run those code paths (gpu_check.sh's NCCL stage, the e2e launch test).
  bool force_comm = false;
};
DistEnv dist_env_from_environment();

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;  // "single", "gloo", "nccl"
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // In-place sum over ranks of n floats / doubles (host pointers for single and gloo; device
  // pointers for nccl). Deterministic for a fixed world size.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  virtual void all_reduce_sum(double* data, size_t n) = 0;
  // out[r*n .. (r+1)*n) = in of rank r; in and out may not alias except in == out + rank*n.
  virtual void all_gather(const float* in, float* out, size_t n) = 0;
  // Rank `root`'s buffer to everyone.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

  // Gradient all-reduce overlapped with backward (src/train/grad_reducer.h). start_all_reduce_sum
  // queues an in-place sum of data[0..n) and returns at once; the sum begins once the work queued
  // so far on the producer stream has written the data (nccl; the host already has it for gloo).
  // wait_all_reduces() returns when every queued sum is done (nccl: when the producer stream is
  // ordered after them). Between the first start and the wait, no other collective may be called.
  // The defaults run each sum synchronously.
  virtual void start_all_reduce_sum(float* data, size_t n) { all_reduce_sum(data, n); }
  virtual void wait_all_reduces() {}
  // The CUDA stream (a cudaStream_t) on which the backend produces gradients and that must see
  // the sums; ignored by host communicators.
  virtual void set_producer_stream(void* /*stream*/) {}
};

// Single process: every collective is a no-op (or a copy).
std::unique_ptr<Communicator> make_single_communicator();
// Chooses from the environment: world 1 -> single (unless env.force_comm); else "gloo" (CPU) or
// "nccl" (CUDA) as asked.
// Throws InputError when the requested kind is not built in (e.g. gloo without libgloo).
std::unique_ptr<Communicator> make_communicator(const std::string& kind, const DistEnv& env);

}  // namespace llmtrain
