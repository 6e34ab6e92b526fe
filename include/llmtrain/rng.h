// Portable random numbers: splitmix64 streams and Box-Muller normals. Our own so that results are
// identical across compilers and standard libraries (std::normal_distribution is not specified
// bit-for-bit), which init reproducibility and exact resume depend on.
#pragma once
#include <cmath>
#include <cstdint>

namespace llmtrain {

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}
  uint64_t next_u64() { return splitmix64(state_); }
  // Uniform in [0, 1) with 53 bits.
  double uniform() { return (next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal (Box-Muller; one value per call keeps the stream position simple).
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

// A deterministic seed for a sub-stream, e.g. (run seed, parameter index).
inline uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t s = a ^ (b * 0xD6E8FEB86659FD93ull);
  return splitmix64(s);
}

}  // namespace llmtrain
