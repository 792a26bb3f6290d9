// A whole stats trace in one launch (mx.fast.cuda_kernel; xlstm_viz/execution/stats_gpu.py builds the call).
//
// Inputs: in0 ... in<N-1> (the probes' outputs and the raw columns: gate values, memory norms), each read where it
// lies, in its own dtype (float32, bfloat16 or float16: a 7B trace's probes are 12 GB of bf16, which a float32 copy
// would double and then read again), and accumulated in float32. `tasks` (int32 [T, 6]: input, offset, width,
// destination, kind, dtype) lists one task per warp. Output: out (float32), one buffer for one copy to the host.
// Template constant: THREADS (block size).
//
//   kind 1, stats: the mean, std, absmax and l2 of one head row, to out[dest .. dest + 3]. std is centred (a second
//     pass over the row, which the first pass left in L1/L2); absmax is the integer max of the float bits with the
//     sign bit cleared: it orders like |x| and every NaN lies above inf, so NaN propagates as in numpy. The reference
//     is stats.numpy_stats.
//   kind 0, copy: `width` numbers taken as they are (gate values, memory norms) to out[dest ...].
//   width 0: padding, nothing written.
// dtype: 0 float32, 1 bfloat16, 2 float16.
// SELECT_INPUTS is replaced by one `case j: return inj;` per input (the number of inputs varies per trace).
// The part above the `--- body ---` line is the kernel's header (functions at namespace scope), the rest its body.

__device__ __forceinline__ float xv_float(float x) { return x; }
__device__ __forceinline__ float xv_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float xv_float(__half x) { return __half2float(x); }

template <typename T>
__device__ void xv_task(const T* src, int width, int kind, int lane, float* dst) {
  if (kind == 0) {
    for (int j = lane; j < width; j += 32) {
      dst[j] = xv_float(src[j]);
    }
    return;
  }
  float total = 0.0f;
  float squares = 0.0f;
  unsigned int top = 0u;
  for (int j = lane; j < width; j += 32) {
    float x = xv_float(src[j]);
    total += x;
    squares += x * x;
    unsigned int bits = __float_as_uint(x) & 0x7fffffffu;
    top = bits > top ? bits : top;
  }
  for (int step = 16; step > 0; step >>= 1) {
    total += __shfl_down_sync(0xffffffffu, total, step);
    squares += __shfl_down_sync(0xffffffffu, squares, step);
    unsigned int other = __shfl_down_sync(0xffffffffu, top, step);
    top = other > top ? other : top;
  }
  float mean = __shfl_sync(0xffffffffu, total, 0) / (float)width;
  float centred = 0.0f;
  for (int j = lane; j < width; j += 32) {
    float d = xv_float(src[j]) - mean;
    centred += d * d;
  }
  for (int step = 16; step > 0; step >>= 1) {
    centred += __shfl_down_sync(0xffffffffu, centred, step);
  }
  if (lane == 0) {
    dst[0] = mean;
    dst[1] = sqrtf(centred / (float)width);
    dst[2] = __uint_as_float(top);
    dst[3] = sqrtf(squares);
  }
}

// --- body ---
constexpr int WARPS = THREADS / 32;
auto input_at = [=](int index) -> const void* {
  switch (index) {
    SELECT_INPUTS
  }
  return nullptr;
};
const int lane = threadIdx.x % 32;
const int* task = tasks + 6 * ((size_t)blockIdx.x * WARPS + threadIdx.x / 32);
const int width = task[2];
if (width == 0) {
  return;
}
const void* base = input_at(task[0]);
float* dst = out + task[3];
if (task[5] == 1) {
  xv_task(static_cast<const __nv_bfloat16*>(base) + task[1], width, task[4], lane, dst);
} else if (task[5] == 2) {
  xv_task(static_cast<const __half*>(base) + task[1], width, task[4], lane, dst);
} else {
  xv_task(static_cast<const float*>(base) + task[1], width, task[4], lane, dst);
}
