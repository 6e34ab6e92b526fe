// Glue between the emulator's scheduler (emu_scheduler.cpp) and its CUDA runtime API
// (emu_runtime.cpp): launch validation against the emulated device's limits and the error a
// failed launch leaves for the next cudaGetLastError / synchronising call.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "cuda_emu.h"

namespace emu::internal {

// Empty when the configuration would launch on an H100; otherwise why not.
std::string check_launch(const LaunchConfig& cfg);
// Records a launch failure (printed to stderr at once, returned by the next error query).
void set_launch_error(cudaError_t err, const std::string& detail);
// Seed of the thread-order shuffles: LLMTRAIN_EMU_SEED, default fixed (reproducible failures).
uint64_t seed();

}  // namespace emu::internal
