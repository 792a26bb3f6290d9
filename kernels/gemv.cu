// Several matrix-vector products with one input in one launch (body of mx.fast.cuda_kernel; CUDA only, see
// kernels/README.md): y_m = W_m x (+ b_m) for up to six matrices W_m [N_m, K] sharing x [B, K]. A decode step of
// xLSTM-7B multiplies one normed vector by q, k, v, o, i and f (and by the FFN's two up projections); one launch
// reads all their weights without a concatenated copy (a copy goes stale when a weight is edited in place).
// xlstm_viz/model/gemv_kernels.py builds the call; the reference is cells.linear.
//
// Inputs: x [B, K] (float32 or bf16), W0..W5 (one dtype; unused ones are 1-element placeholders), b0..b5 (the
// weights' dtype, placeholders where dims says there is no bias), dims int32 [14]: K, number of matrices, N_0..N_5,
// has_bias_0..has_bias_5. Outputs y0..y5 [B, N_m] in the activations' dtype.
// Template constants: THREADS (block size, a multiple of 32), UNROLL (16-byte loads in flight per lane).
// Geometry: grid (blocks * THREADS, B, 1), dynamic shared memory 4 * roundup(K, 256) bytes: x of batch row
// blockIdx.y staged as float (see gv_xpos). One warp per output row (rows of all matrices numbered one after
// another, blocks striding over them); each lane reads 8 consecutive weights per 16-byte load and accumulates in float32; the warp sums by shuffles.
// --- header ---
__device__ __forceinline__ float gv_f(float x) { return x; }
__device__ __forceinline__ float gv_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float gv_f(__half x) { return __half2float(x); }
__device__ __forceinline__ void gv_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void gv_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ void gv_store(__half* p, float v) { *p = __float2half(v); }

// Eight weights from 16 bytes (bf16: one load) or 32 bytes (float32: two); streaming loads, each weight is read
// once per step.
__device__ __forceinline__ void gv_load8(const __nv_bfloat16* p, float* w) {
  const uint4 u = __ldcs(reinterpret_cast<const uint4*>(p));
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    w[2 * i] = f.x;
    w[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void gv_load8(const __half* p, float* w) {
  const uint4 u = __ldcs(reinterpret_cast<const uint4*>(p));
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    w[2 * i] = f.x;
    w[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void gv_load8(const float* p, float* w) {
  const float4 a = __ldcs(reinterpret_cast<const float4*>(p));
  const float4 b = __ldcs(reinterpret_cast<const float4*>(p) + 1);
  w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
  w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
}

// Where x[j] sits in shared memory. In each 256-column pass a lane multiplies 8 consecutive columns (lane * 8 ..
// lane * 8 + 7); read in place those would be float loads 32 bytes apart across the warp, an 8-way bank conflict on
// every one, which capped the kernel at ~1.5 TB/s on the H200. So each pass's x is stored as two halves: the
// columns lane * 8 + 0..3 of all 32 lanes, then lane * 8 + 4..7, and a lane reads its eight as two float4 that
// sit next to its neighbours' (conflict-free 16-byte loads). The buffer is K rounded up to 256 floats.
__device__ __forceinline__ int gv_xpos(int j) {
  const int within = j & 255;
  return (j & ~255) + ((within & 4) << 5) + ((within >> 3) << 2) + (within & 3);
}

template <typename T>
__device__ __forceinline__ T gv_pick(int m, T a, T b, T c, T d, T e, T f) {
  return m == 0 ? a : m == 1 ? b : m == 2 ? c : m == 3 ? d : m == 4 ? e : f;
}
// --- body ---
const int lane = threadIdx.x & 31;
const int warp = threadIdx.x >> 5;
constexpr int WARPS = THREADS / 32;
const int batch = blockIdx.y;
const int K = dims[0];
const int nmat = dims[1];
extern __shared__ float xs[];
for (int j = threadIdx.x; j < K; j += THREADS) {
  xs[gv_xpos(j)] = gv_f(x[static_cast<size_t>(batch) * K + j]);
}
__syncthreads();
int rows[6];
int total = 0;
#pragma unroll
for (int m = 0; m < 6; ++m) {
  rows[m] = m < nmat ? dims[2 + m] : 0;
  total += rows[m];
}
for (int row = blockIdx.x * WARPS + warp; row < total; row += gridDim.x * WARPS) {
  int m = 0;
  int r = row;
  while (r >= rows[m]) {
    r -= rows[m];
    ++m;
  }
  const auto* W = gv_pick(m, W0, W1, W2, W3, W4, W5);
  const auto* wr = W + static_cast<size_t>(r) * K;
  float acc = 0.0f;
  // 16-byte loads need K % 8 == 0 and an aligned matrix (MLX allocations are; a row-offset view may not be)
  const bool vec = (K % 8 == 0) && ((reinterpret_cast<unsigned long long>(W) & 15ull) == 0ull);
  if (vec) {
    for (int c0 = lane * 8; c0 < K; c0 += 256 * UNROLL) {
      float w[UNROLL][8];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int c = c0 + u * 256;
        if (c < K) {
          gv_load8(wr + c, w[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int c = c0 + u * 256;
        if (c < K) {
          const float4 xa = *reinterpret_cast<const float4*>(xs + (c & ~255) + lane * 4);
          const float4 xb = *reinterpret_cast<const float4*>(xs + (c & ~255) + 128 + lane * 4);
          acc += w[u][0] * xa.x;
          acc += w[u][1] * xa.y;
          acc += w[u][2] * xa.z;
          acc += w[u][3] * xa.w;
          acc += w[u][4] * xb.x;
          acc += w[u][5] * xb.y;
          acc += w[u][6] * xb.z;
          acc += w[u][7] * xb.w;
        }
      }
    }
  } else {
    for (int c = lane; c < K; c += 32) {
      acc += gv_f(wr[c]) * xs[gv_xpos(c)];
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    acc += __shfl_xor_sync(0xffffffffu, acc, o);
  }
  if (lane == 0) {
    if (dims[8 + m]) {
      acc += gv_f(gv_pick(m, b0, b1, b2, b3, b4, b5)[r]);
    }
    gv_store(gv_pick(m, y0, y1, y2, y3, y4, y5) + static_cast<size_t>(batch) * rows[m] + r, acc);
  }
}
