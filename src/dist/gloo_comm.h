// The Gloo communicator (CPU data parallelism over TCP), built only when libgloo is found
// (LLMTRAIN_HAVE_GLOO). Gloo's rendezvous runs through our TCP store behind an adapter that
// implements gloo::rendezvous::Store with a key prefix per job attempt and communicator.
#pragma once
#include <memory>
#include <string>

#include "dist/tcp_store.h"
#include "llmtrain/comm.h"

namespace llmtrain::dist {

struct GlooOptions {
  int rank = 0;
  int world = 1;
  std::shared_ptr<TcpStoreClient> store;   // where ranks exchange their Gloo addresses
  std::unique_ptr<TcpStoreServer> server;  // kept alive with the communicator when this rank hosts the store
  std::string prefix;                      // key namespace of this communicator, the same on every rank
  Millis timeout{1800000};                 // rendezvous and per-collective timeout
  // Where Gloo's sockets listen: a network interface (GLOO_SOCKET_IFNAME) or else a host address;
  // both empty = the address this machine uses to reach `peer_host` (127.0.0.1 on one node).
  std::string iface;
  std::string host;
  std::string peer_host = "127.0.0.1";
};

// Connects the full mesh (blocks until every rank arrived or the timeout passed: RuntimeError).
std::unique_ptr<Communicator> make_gloo_communicator(GlooOptions opts);

}  // namespace llmtrain::dist
