// A whole stats trace in one launch (mx.fast.cuda_kernel; xlstm_viz/execution/stats_gpu.py builds the call).
//
// Inputs: in0 ... in<N-1> (the probes' outputs and the raw columns: gate values, memory norms), each read where it
// lies, in its own dtype (float32, bfloat16 or float16: a 7B trace's probes are 12 GB of bf16, which a float32 copy
// would double and then read again), and accumulated in float32. `tasks` (int32 [T, 7]: input, offset, width, rows,
// destination, kind, dtype) lists one task per warp. Output: out (float32), one buffer for one copy to the host.
// Template constant: THREADS (block size).
//
//   kind 1, stats: for each of `rows` consecutive head rows of `width` numbers (row r starts at offset + r * width),
//     the mean, std, absmax and l2, to out[dest + 4 r .. dest + 4 r + 3]. std is centred (the sum of squared
//     deviations from the mean, never E[x^2] - E[x]^2, which loses a small spread under a large mean); absmax is the integer
//     max of the float bits with the sign bit cleared: it orders like |x| and every NaN lies above inf, so NaN
//     propagates as in numpy. The reference is stats.numpy_stats.
//   kind 0, copy: `width` numbers taken as they are (gate values, memory norms) to out[dest ...]; rows is 1.
//   width 0: padding, nothing written.
// dtype: 0 float32, 1 bfloat16, 2 float16.
// SELECT_INPUTS is replaced by one `case j: return inj;` per input (the number of inputs varies per trace).
// The part above the `--- body ---` line is the kernel's header (functions at namespace scope), the rest its body.
//
// Why a task holds many rows and a warp loads several rows before it reduces any: a 7B trace is ~4M head rows of
// 256-512 numbers (0.5-1 KB). With one row per warp, each warp's work was a chain of dependent memory trips (task,
// row, write) for 1 KB, and 64 resident warps per SM kept too few bytes in flight: the launch read 1.1-1.4 TB/s
// (H200), whether its loads were 2 or 16 bytes wide. Here a lane keeps eight 16-byte loads in flight (4 KB per
// warp), a short row stays in registers for its centred second pass, a wide row is read once (Chan's merge of
// per-load moments), and one task covers ~8K numbers.

constexpr int NARROW = 8;  // rows of at most this many numbers take a lane each

__device__ __forceinline__ float xv_float(float x) { return x; }
__device__ __forceinline__ float xv_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float xv_float(__half x) { return __half2float(x); }

// 16 bytes as floats: 4 float32, or 8 bfloat16 / float16 (little endian: a word's lower half is the first number).
template <typename T>
struct xv_vec;
template <>
struct xv_vec<float> {
  static constexpr int N = 4;
  static __device__ __forceinline__ void widen(const uint4& r, float* x) {
    x[0] = __uint_as_float(r.x);
    x[1] = __uint_as_float(r.y);
    x[2] = __uint_as_float(r.z);
    x[3] = __uint_as_float(r.w);
  }
};
template <>
struct xv_vec<__nv_bfloat16> {
  static constexpr int N = 8;
  static __device__ __forceinline__ void widen(const uint4& r, float* x) {
    const unsigned int w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[2 * i] = __uint_as_float(w[i] << 16);  // a bf16 is the upper half of its float32
      x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
};
template <>
struct xv_vec<__half> {
  static constexpr int N = 8;
  static __device__ __forceinline__ void widen(const uint4& r, float* x) {
    const unsigned int w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[2 * i] = __half2float(__ushort_as_half((unsigned short)(w[i] & 0xffffu)));
      x[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)(w[i] >> 16)));
    }
  }
};

struct xv_acc {
  float total;
  float squares;
  unsigned int top;  // max of |x|'s bits
};

__device__ __forceinline__ void xv_add(xv_acc& a, float x) {
  a.total += x;
  a.squares += x * x;
  const unsigned int bits = __float_as_uint(x) & 0x7fffffffu;
  a.top = bits > a.top ? bits : a.top;
}

// Butterfly reductions: every lane ends with the warp's result (so the mean needs no broadcast).
__device__ __forceinline__ float xv_sum(float v) {
#pragma unroll
  for (int step = 16; step > 0; step >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, step);
  }
  return v;
}

__device__ __forceinline__ unsigned int xv_max(unsigned int v) {
#pragma unroll
  for (int step = 16; step > 0; step >>= 1) {
    const unsigned int other = __shfl_xor_sync(0xffffffffu, v, step);
    v = other > v ? other : v;
  }
  return v;
}

__device__ __forceinline__ void xv_write(float* dst, float mean, float centred, unsigned int top, float squares,
                                         int width) {
  dst[0] = mean;
  dst[1] = sqrtf(centred / (float)width);
  dst[2] = __uint_as_float(top);
  dst[3] = sqrtf(squares);
}

// Rows of at most 32 * P loads: each lane holds P loads of G = 8 / P rows at once, so eight 16-byte loads per lane
// are in flight before the first reduction; the centred pass reads the registers again.
template <typename T, int P>
__device__ void xv_rows_held(const T* src, int width, int rows, int lane, float* dst) {
  constexpr int N = xv_vec<T>::N;
  constexpr int G = 8 / P;
  const int chunks = width / N;
  const uint4* base = reinterpret_cast<const uint4*>(src);
  for (int r0 = 0; r0 < rows; r0 += G) {
    uint4 raw[G][P];
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        const int c = lane + 32 * p;
        raw[g][p] = (r0 + g < rows && c < chunks) ? __ldg(base + (size_t)(r0 + g) * chunks + c)
                                                  : make_uint4(0u, 0u, 0u, 0u);
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (r0 + g < rows) {  // the same for every lane: the shuffles below see the whole warp
        xv_acc a = {0.0f, 0.0f, 0u};
        float x[N];
#pragma unroll
        for (int p = 0; p < P; ++p) {
          if (lane + 32 * p < chunks) {
            xv_vec<T>::widen(raw[g][p], x);
#pragma unroll
            for (int e = 0; e < N; ++e) {
              xv_add(a, x[e]);
            }
          }
        }
        const float mean = xv_sum(a.total) / (float)width;
        float centred = 0.0f;
#pragma unroll
        for (int p = 0; p < P; ++p) {
          if (lane + 32 * p < chunks) {
            xv_vec<T>::widen(raw[g][p], x);
#pragma unroll
            for (int e = 0; e < N; ++e) {
              const float d = x[e] - mean;
              centred += d * d;
            }
          }
        }
        const float c = xv_sum(centred);
        const unsigned int top = xv_max(a.top);
        const float squares = xv_sum(a.squares);
        if (lane == 0) {
          xv_write(dst + 4 * (r0 + g), mean, c, top, squares, width);
        }
      }
    }
  }
}

// Running (count, mean, M2) of a lane's numbers, merged by Chan et al.'s formula: M2 = sum (x - mean)^2 without a
// second pass over the row and without E[x^2] - E[x]^2's cancellation.
struct xv_moments {
  float n;
  float mean;
  float m2;
};

__device__ __forceinline__ void xv_merge(xv_moments& a, float n, float mean, float m2) {
  const float total = a.n + n;
  if (total == 0.0f) {
    return;
  }
  const float d = mean - a.mean;
  const float w = n / total;
  a.mean += d * w;
  a.m2 += m2 + d * d * a.n * w;
  a.n = total;
}

// Wider rows (the FFN's 10,944 features, whole-model rows of 4,096): one pass with U loads in flight per lane. Each
// 16-byte load's numbers give their own mean and M2 (from registers), merged into the lane's running moments,
// then the lanes' moments are merged across the warp. A second pass (the centred sum of the held rows) would read
// a row again: with ~24 warps per SM each on a 8-22 KB row, that no longer fits in L2.
template <typename T>
__device__ void xv_rows_wide(const T* src, int width, int rows, int lane, float* dst) {
  constexpr int N = xv_vec<T>::N;
  constexpr int U = 8;
  const int chunks = width / N;
  for (int r = 0; r < rows; ++r) {
    const uint4* row = reinterpret_cast<const uint4*>(src) + (size_t)r * chunks;
    xv_acc a = {0.0f, 0.0f, 0u};
    xv_moments m = {0.0f, 0.0f, 0.0f};
    float x[N];
    for (int c0 = lane; c0 < chunks; c0 += 32 * U) {
      uint4 raw[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        raw[u] = c0 + 32 * u < chunks ? __ldg(row + c0 + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (c0 + 32 * u < chunks) {
          xv_vec<T>::widen(raw[u], x);
          float part = 0.0f;
#pragma unroll
          for (int e = 0; e < N; ++e) {
            xv_add(a, x[e]);
            part += x[e];
          }
          const float part_mean = part * (1.0f / N);
          float part_m2 = 0.0f;
#pragma unroll
          for (int e = 0; e < N; ++e) {
            const float d = x[e] - part_mean;
            part_m2 += d * d;
          }
          xv_merge(m, (float)N, part_mean, part_m2);
        }
      }
    }
#pragma unroll
    for (int step = 16; step > 0; step >>= 1) {
      const float n = __shfl_xor_sync(0xffffffffu, m.n, step);
      const float mean = __shfl_xor_sync(0xffffffffu, m.mean, step);
      const float m2 = __shfl_xor_sync(0xffffffffu, m.m2, step);
      xv_merge(m, n, mean, m2);
    }
    const float total = xv_sum(a.total);
    const unsigned int top = xv_max(a.top);
    const float squares = xv_sum(a.squares);
    if (lane == 0) {
      xv_write(dst + 4 * r, total / (float)width, m.m2, top, squares, width);
    }
  }
}

// Rows that are not 16-byte loads (odd widths, unaligned views): one number a load, a warp per row.
template <typename T>
__device__ void xv_rows_scalar(const T* src, int width, int rows, int lane, float* dst) {
  for (int r = 0; r < rows; ++r) {
    const T* row = src + (size_t)r * width;
    xv_acc a = {0.0f, 0.0f, 0u};
    for (int j = lane; j < width; j += 32) {
      xv_add(a, xv_float(row[j]));
    }
    const float mean = xv_sum(a.total) / (float)width;
    float centred = 0.0f;
    for (int j = lane; j < width; j += 32) {
      const float d = xv_float(row[j]) - mean;
      centred += d * d;
    }
    const float c = xv_sum(centred);
    const unsigned int top = xv_max(a.top);
    const float squares = xv_sum(a.squares);
    if (lane == 0) {
      xv_write(dst + 4 * r, mean, c, top, squares, width);
    }
  }
}

// Rows of a few numbers (a gate's one value per head): a lane per row, no shuffles.
template <typename T>
__device__ void xv_rows_narrow(const T* src, int width, int rows, int lane, float* dst) {
  for (int r = lane; r < rows; r += 32) {
    const T* row = src + (size_t)r * width;
    xv_acc a = {0.0f, 0.0f, 0u};
    for (int j = 0; j < width; ++j) {
      xv_add(a, xv_float(row[j]));
    }
    const float mean = a.total / (float)width;
    float centred = 0.0f;
    for (int j = 0; j < width; ++j) {
      const float d = xv_float(row[j]) - mean;
      centred += d * d;
    }
    xv_write(dst + 4 * r, mean, centred, a.top, a.squares, width);
  }
}

template <typename T>
__device__ void xv_task(const T* src, int width, int rows, int kind, int lane, float* dst) {
  if (kind == 0) {
    for (int j = lane; j < width; j += 32) {
      dst[j] = xv_float(src[j]);
    }
    return;
  }
  constexpr int N = xv_vec<T>::N;
  if (width <= NARROW) {
    xv_rows_narrow(src, width, rows, lane, dst);
    return;
  }
  // every row of the task starts 16-byte aligned when the first does and the width is a whole number of loads
  if (width % N != 0 || (reinterpret_cast<unsigned long long>(src) & 15ull) != 0) {
    xv_rows_scalar(src, width, rows, lane, dst);
    return;
  }
  const int chunks = width / N;
  if (chunks <= 32) {
    xv_rows_held<T, 1>(src, width, rows, lane, dst);
  } else if (chunks <= 64) {
    xv_rows_held<T, 2>(src, width, rows, lane, dst);
  } else if (chunks <= 128) {
    xv_rows_held<T, 4>(src, width, rows, lane, dst);
  } else {
    xv_rows_wide(src, width, rows, lane, dst);
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
const int* task = tasks + 7 * ((size_t)blockIdx.x * WARPS + threadIdx.x / 32);
const int width = task[2];
if (width == 0) {
  return;
}
const void* base = input_at(task[0]);
const int rows = task[3];
float* dst = out + task[4];
if (task[6] == 1) {
  xv_task(static_cast<const __nv_bfloat16*>(base) + task[1], width, rows, task[5], lane, dst);
} else if (task[6] == 2) {
  xv_task(static_cast<const __half*>(base) + task[1], width, rows, task[5], lane, dst);
} else {
  xv_task(static_cast<const float*>(base) + task[1], width, rows, task[5], lane, dst);
}
