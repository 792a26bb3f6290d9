// A whole stats trace in one launch (mx.fast.cuda_kernel body; xlstm_viz/execution/stats_gpu.py builds the call).
//
// Inputs: in0 ... in<N-1> (float32, row-contiguous: the probes' outputs, the gate values, the memory cells' inputs
// and entering states, the logits), read where they lie: no packing copy. `tasks` (int32 [T, 5]: input, offset,
// width, destination, kind) lists the warp tasks; `memory` (int32: a 16-int header whose first entry is the number
// of row blocks, then 16 ints per memory job, see below) the block tasks. Output: out (float32), one buffer for one
// copy to the host. Template constants: THREADS (block size), ELEMS and NELEMS (entries of C and n per thread).
//
// Row blocks run one warp task per warp:
//   kind 1, stats: the mean, std, absmax and l2 of one head row, to out[dest .. dest + 3]. std is centred (a second
//     pass over the row); absmax is the integer max of the float bits with the sign bit cleared: it orders like |x|
//     and every NaN lies above inf, so NaN propagates as in numpy. The reference is stats.numpy_stats.
//   kind 0, copy: `width` numbers taken as they are (gate values, logits) to out[dest ...].
//   width 0: padding, nothing written.
// Each later block runs the mLSTM memory recurrence of one (batch, head) (mlstm_cell.recurrent_step; the reference
// is stats_kernel.memory_stats) and writes ||C_t||_F, ||n_t|| and m_t per token to out[dest ...] as [3, B, S, NH].
// A memory job: k, v, i, f, C0, n0, m0 (input numbers; C0 = -1: the zero state), B, b, h, S, NH, DQK, DV, dest.
// The state lives in registers: entry e = tid + r * THREADS of C (row p = e / DV, column q = e % DV), row
// tid + r * THREADS of n. Tokens go in chunks of CHUNK: the gates of a chunk are computed in parallel, the
// stabiliser m (a scalar scan) by one thread, then each token updates the state and leaves one partial sum of
// squares per warp in shared memory; the per-token totals are summed after the chunk, so no barrier per token.
// The gate arithmetic is double, as on the host.
// SELECT_INPUTS is replaced by one `case j: return inj;` per input (the number of inputs varies per trace).

constexpr int CHUNK = 64;
constexpr int WARPS = THREADS / 32;
auto input_at = [=](int index) -> const float* {
  switch (index) {
    SELECT_INPUTS
  }
  return nullptr;
};
const int lane = threadIdx.x % 32;
const int warp = threadIdx.x / 32;
const int row_blocks = memory[0];

if ((int)blockIdx.x < row_blocks) {
  const int* task = tasks + 5 * (blockIdx.x * WARPS + warp);
  const int width = task[2];
  if (width == 0) {
    return;
  }
  const float* src = input_at(task[0]) + task[1];
  float* dst = out + task[3];
  if (task[4] == 0) {
    for (int j = lane; j < width; j += 32) {
      dst[j] = src[j];
    }
    return;
  }
  float total = 0.0f;
  float squares = 0.0f;
  unsigned int top = 0u;
  for (int j = lane; j < width; j += 32) {
    float x = src[j];
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
    float d = src[j] - mean;
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
  return;
}

// -- one (batch, head) of one memory cell --
const int* job = memory + 16 + 16 * (blockIdx.x - row_blocks);
const float* k = input_at(job[0]);
const float* v = input_at(job[1]);
const float* ig = input_at(job[2]);
const float* fg = input_at(job[3]);
const int B = job[7], b = job[8], h = job[9], S = job[10], NH = job[11], DQK = job[12], DV = job[13];
float* dst = out + job[14];
const int tid = threadIdx.x;
// C entries walk by THREADS: a step of dp rows and dq columns, with a carry
const int p_first = tid / DV, q_first = tid % DV, dp = THREADS / DV, dq = THREADS % DV;
float C[ELEMS];
float n[NELEMS];
double m = 0.0;  // thread 0's running stabiliser
{
  const float* C0 = job[4] < 0 ? nullptr : input_at(job[4]) + (size_t)(b * NH + h) * DQK * DV;
  const float* n0 = job[4] < 0 ? nullptr : input_at(job[5]) + (size_t)(b * NH + h) * DQK;
  int p = p_first, q = q_first;
#pragma unroll
  for (int r = 0; r < ELEMS; ++r) {
    C[r] = (C0 != nullptr && p < DQK) ? C0[p * DV + q] : 0.0f;
    q += dq;
    p += dp;
    if (q >= DV) {
      q -= DV;
      ++p;
    }
  }
#pragma unroll
  for (int r = 0; r < NELEMS; ++r) {
    int row = tid + r * THREADS;
    n[r] = (n0 != nullptr && row < DQK) ? n0[row] : 0.0f;
  }
  if (C0 != nullptr) {
    m = (double)input_at(job[6])[b * NH + h];
  }
}
__shared__ double logf_s[CHUNK];
__shared__ double i_s[CHUNK];
__shared__ double m_s[CHUNK + 1];  // m before the chunk, then after each of its tokens
__shared__ float fa_s[CHUNK];
__shared__ float ia_s[CHUNK];
__shared__ float partial[CHUNK][2][WARPS];  // [token][C, n][warp]
for (int t0 = 0; t0 < S; t0 += CHUNK) {
  const int len = S - t0 < CHUNK ? S - t0 : CHUNK;
  if (tid < len) {
    const size_t at = ((size_t)b * S + t0 + tid) * NH + h;
    const double ft = (double)fg[at];
    logf_s[tid] = fmin(ft, 0.0) - log1p(exp(-fabs(ft)));  // log sigmoid(f), stable
    i_s[tid] = (double)ig[at];
  }
  __syncthreads();
  if (tid == 0) {
    m_s[0] = m;
    for (int j = 0; j < len; ++j) {
      const double logf = logf_s[j];
      const double it = i_s[j];
      double m_new = fmax(logf + m, it);  // the stabiliser
      if (isnan(it) || isnan(logf) || isnan(m)) {
        m_new = nan("");  // fmax drops a NaN; mx.maximum propagates it
      }
      m = m_new;
      m_s[j + 1] = m;
    }
  }
  __syncthreads();
  if (tid < len) {
    fa_s[tid] = (float)exp(logf_s[tid] + m_s[tid] - m_s[tid + 1]);
    ia_s[tid] = (float)exp(i_s[tid] - m_s[tid + 1]);
  }
  __syncthreads();
  for (int j = 0; j < len; ++j) {
    const size_t token = ((size_t)b * S + t0 + j) * NH + h;
    const float fa = fa_s[j];
    const float ia = ia_s[j];
    const float* kt = k + token * DQK;
    const float* vt = v + token * DV;
    float c_sq = 0.0f;
    int p = p_first, q = q_first;
#pragma unroll
    for (int r = 0; r < ELEMS; ++r) {
      if (p < DQK) {
        const float c = fa * C[r] + (ia * kt[p]) * vt[q];
        C[r] = c;
        c_sq += c * c;
      }
      q += dq;
      p += dp;
      if (q >= DV) {
        q -= DV;
        ++p;
      }
    }
    float n_sq = 0.0f;
#pragma unroll
    for (int r = 0; r < NELEMS; ++r) {
      const int row = tid + r * THREADS;
      if (row < DQK) {
        n[r] = fa * n[r] + ia * kt[row];
        n_sq += n[r] * n[r];
      }
    }
    for (int step = 16; step > 0; step >>= 1) {
      c_sq += __shfl_down_sync(0xffffffffu, c_sq, step);
      n_sq += __shfl_down_sync(0xffffffffu, n_sq, step);
    }
    if (lane == 0) {
      partial[j][0][warp] = c_sq;
      partial[j][1][warp] = n_sq;
    }
  }
  __syncthreads();
  if (tid < len) {
    float c_total = 0.0f;
    float n_total = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      c_total += partial[tid][0][w];
      n_total += partial[tid][1][w];
    }
    const size_t at = ((size_t)b * S + t0 + tid) * NH + h;
    const size_t plane = (size_t)B * S * NH;
    dst[at] = sqrtf(c_total);
    dst[plane + at] = sqrtf(n_total);
    dst[2 * plane + at] = (float)m_s[tid + 1];
  }
  __syncthreads();  // the next chunk rewrites the shared arrays
}
