// A whole stats trace in one launch (mx.fast.cuda_kernel body; xlstm_viz/execution/stats_gpu.py builds the call).
//
// Inputs: in0 ... in<N-1> (float32, row-contiguous: the probes' outputs, the gate values, the memory cells' inputs
// and entering states, the logits), read where they lie: no packing copy. `tasks` (int32 [T, 5]: input, offset,
// width, destination, kind) lists the warp tasks; `memory` (int32: a 16-int header whose first entry is the number
// of memory jobs M, then 16 ints per memory job, see below) the block tasks. Output: out (float32), one buffer for one
// copy to the host. Template constants: THREADS (block size); for memory jobs DV (the value head width), ROWS (rows
// of C per block), ELEMS (entries of C per thread) and CHUNK (tokens staged in shared memory at a time).
//
// Blocks M and up (row blocks) run one warp task per warp:
//   kind 1, stats: the mean, std, absmax and l2 of one head row, to out[dest .. dest + 3]. std is centred (a second
//     pass over the row); absmax is the integer max of the float bits with the sign bit cleared: it orders like |x|
//     and every NaN lies above inf, so NaN propagates as in numpy. The reference is stats.numpy_stats.
//   kind 0, copy: `width` numbers taken as they are (gate values, logits) to out[dest ...].
//   width 0: padding, nothing written.
// Blocks below M run the memory jobs first: each is a serial chain over the tokens, so it starts at once and the
// row blocks fill the GPU around it. A job is the mLSTM memory recurrence (mlstm_cell.recurrent_step; the reference is
// stats_kernel.memory_stats) for ROWS rows of C and n of one (batch, head): rows are independent given the gates, so
// a head is split over G blocks, and each writes its rows' sums of squares per token; the host adds the G parts and
// takes the square roots. Block g = 0 also writes m_t. Output of a memory: [G, B, S, NH] sums for C, the same for n,
// then m [B, S, NH].
// A memory job: k, v, i, f, C0, n0, m0 (input numbers; C0 = -1: the zero state), B, b, h, S, NH, DQK, g, G, dest.
// Per chunk of tokens: the gates are computed in parallel and the chunk's k rows and v staged in shared memory
// (coalesced loads); one thread runs the stabiliser m (a scalar scan); then each token updates the state, which
// lives in registers (entry e = tid + r * THREADS: row e / DV, column e % DV), and leaves one partial sum per warp
// in shared memory; the per-token totals are summed after the chunk, so no barrier per token. The gate arithmetic
// is double, as on the host.
// SELECT_INPUTS is replaced by one `case j: return inj;` per input (the number of inputs varies per trace).

constexpr int WARPS = THREADS / 32;
auto input_at = [=](int index) -> const float* {
  switch (index) {
    SELECT_INPUTS
  }
  return nullptr;
};
const int lane = threadIdx.x % 32;
const int warp = threadIdx.x / 32;
const int jobs = memory[0];

if ((int)blockIdx.x >= jobs) {
  const int* task = tasks + 5 * ((blockIdx.x - jobs) * WARPS + warp);
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

// -- ROWS rows of C and n of one (batch, head) of one memory cell --
const int* job = memory + 16 + 16 * blockIdx.x;
const float* k = input_at(job[0]);
const float* v = input_at(job[1]);
const float* ig = input_at(job[2]);
const float* fg = input_at(job[3]);
const int B = job[7], b = job[8], h = job[9], S = job[10], NH = job[11], DQK = job[12], g = job[13], G = job[14];
float* dst = out + job[15];
const int tid = threadIdx.x;
const int first_row = g * ROWS;
const int rows = DQK - first_row < ROWS ? DQK - first_row : ROWS;
float C[ELEMS];
float n = 0.0f;  // thread tid < rows: row first_row + tid
double m = 0.0;  // thread 0's running stabiliser
{
  const bool given = job[4] >= 0;
  const float* C0 = given ? input_at(job[4]) + ((size_t)(b * NH + h) * DQK + first_row) * DV : nullptr;
#pragma unroll
  for (int r = 0; r < ELEMS; ++r) {
    const int e = tid + r * THREADS;
    C[r] = (given && e < rows * DV) ? C0[e] : 0.0f;
  }
  if (given && tid < rows) {
    n = input_at(job[5])[(size_t)(b * NH + h) * DQK + first_row + tid];
  }
  if (given) {
    m = (double)input_at(job[6])[b * NH + h];
  }
}
__shared__ double logf_s[CHUNK];
__shared__ double i_s[CHUNK];
__shared__ double m_s[CHUNK + 1];  // m before the chunk, then after each of its tokens
__shared__ float fa_s[CHUNK];
__shared__ float ia_s[CHUNK];
__shared__ float k_s[CHUNK][ROWS];
__shared__ float v_s[CHUNK][DV];
__shared__ float partial[CHUNK][2][WARPS];  // [token][C, n][warp]
for (int t0 = 0; t0 < S; t0 += CHUNK) {
  const int len = S - t0 < CHUNK ? S - t0 : CHUNK;
  if (tid < len) {
    const size_t at = ((size_t)b * S + t0 + tid) * NH + h;
    const double ft = (double)fg[at];
    logf_s[tid] = fmin(ft, 0.0) - log1p(exp(-fabs(ft)));  // log sigmoid(f), stable
    i_s[tid] = (double)ig[at];
  }
  for (int e = tid; e < len * DV; e += THREADS) {
    const int j = e / DV;
    v_s[j][e % DV] = v[(((size_t)b * S + t0 + j) * NH + h) * DV + e % DV];
  }
  for (int e = tid; e < len * ROWS; e += THREADS) {
    const int j = e / ROWS;
    const int p = e % ROWS;
    k_s[j][p] = p < rows ? k[(((size_t)b * S + t0 + j) * NH + h) * DQK + first_row + p] : 0.0f;
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
    const float fa = fa_s[j];
    const float ia = ia_s[j];
    float c_sq = 0.0f;
#pragma unroll
    for (int r = 0; r < ELEMS; ++r) {
      const int e = tid + r * THREADS;
      if (e < rows * DV) {
        const float c = fa * C[r] + (ia * k_s[j][e / DV]) * v_s[j][e % DV];
        C[r] = c;
        c_sq += c * c;
      }
    }
    float n_sq = 0.0f;
    if (tid < rows) {
      n = fa * n + ia * k_s[j][tid];
      n_sq = n * n;
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
    dst[g * plane + at] = c_total;
    dst[(G + g) * plane + at] = n_total;
    if (g == 0) {
      dst[2 * G * plane + at] = (float)m_s[tid + 1];
    }
  }
  __syncthreads();  // the next chunk rewrites the shared arrays
}
