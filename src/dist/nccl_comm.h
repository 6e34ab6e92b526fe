// The NCCL communicator (GPU data parallelism), built only when CUDA and NCCL are found
// (LLMTRAIN_HAVE_NCCL). Rank 0 creates the NCCL unique id and publishes it through our TCP store;
// every rank selects GPU local_rank (modulo the visible devices) and joins with ncclCommInitRank.
#pragma once
#include <memory>
#include <string>

#include "dist/tcp_store.h"
#include "llmtrain/comm.h"

namespace llmtrain::dist {

struct NcclOptions {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::shared_ptr<TcpStoreClient> store;   // carries the unique id
  std::unique_ptr<TcpStoreServer> server;  // kept alive with the communicator when this rank hosts the store
  std::string prefix;                      // key namespace of this communicator, the same on every rank
  Millis timeout{1800000};                 // how long ranks wait for rank 0's unique id
};

// RuntimeError when no GPU is visible, the id does not arrive in time, or NCCL fails to connect.
std::unique_ptr<Communicator> make_nccl_communicator(NcclOptions opts);

}  // namespace llmtrain::dist
