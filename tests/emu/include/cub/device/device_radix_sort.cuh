// Shadow of CUB's device radix sort for the CPU emulator (tests/emu): the emu build puts
// tests/emu/include before the toolkit on the include path. Implements the documented contract of
// cub::DeviceRadixSort::SortPairs, not CUB's algorithm: a first call with d_temp_storage == nullptr
// only reports temp_storage_bytes; a real call with less temporary storage than reported fails;
// the sort is stable and orders by key bits [begin_bit, end_bit) only, moving whole keys.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

namespace cub {

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out, NumItemsT num_items,
                               int begin_bit = 0, int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    static_assert(std::is_unsigned<KeyT>::value, "the emulated sort handles unsigned integer keys");
    (void)stream;
    const size_t n = static_cast<size_t>(num_items);
    // Some storage, proportional to n like the real thing, so a caller that skips the query fails.
    const size_t need = 2 * n * (sizeof(KeyT) + sizeof(ValueT)) + 512;
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = need;
      return cudaSuccess;
    }
    if (temp_storage_bytes < need || begin_bit < 0 || end_bit > static_cast<int>(sizeof(KeyT) * 8) ||
        begin_bit > end_bit)
      return cudaErrorInvalidValue;
    std::memset(d_temp_storage, 0xA5, need);  // scratch contents are garbage afterwards
    const int width = end_bit - begin_bit;
    const KeyT mask = width >= static_cast<int>(sizeof(KeyT) * 8) ? static_cast<KeyT>(~KeyT(0))
                                                                  : static_cast<KeyT>((KeyT(1) << width) - 1);
    auto digit = [&](KeyT k) { return static_cast<KeyT>((k >> begin_bit) & mask); };
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return digit(d_keys_in[a]) < digit(d_keys_in[b]); });
    std::vector<KeyT> keys(n);
    std::vector<ValueT> vals(n);
    for (size_t i = 0; i < n; ++i) {
      keys[i] = d_keys_in[order[i]];
      vals[i] = d_values_in[order[i]];
    }
    std::copy(keys.begin(), keys.end(), d_keys_out);
    std::copy(vals.begin(), vals.end(), d_values_out);
    return cudaSuccess;
  }
};

}  // namespace cub
