// Shadow of <cub/cub.cuh> for the CPU emulator: only what llmtrain uses (see device/).
#pragma once
#include "device/device_radix_sort.cuh"
