// The fused mLSTM recurrent step (one token, all batches and heads in one launch), body of mx.fast.cuda_kernel.
// xlstm_viz/model/mlstm_kernels.py builds the call; the reference is mlstm_cell.recurrent_step. kernels/mlstm_step.cu
// and kernels/mlstm_step.metal differ only in the lines up to "--- common ---" (thread indices, shared memory, barrier).
//
// Inputs (row-contiguous): q, k [B*NH, DQK]; v [B*NH, DV]; i, f [B*NH] (float32 or bfloat16, widened to float);
// C [B*NH, DQK, DV], n [B*NH, DQK], m [B*NH] (float32); eps [1]. Outputs (float32): h [B*NH, DV], C_out, n_out, m_out.
// Template constants: DQK, DV, THREADS (= COLS * SPLIT, a power of two), COLS, SPLIT.
// Geometry: threadgroup (THREADS, 1, 1); grid (ceil(DV / COLS) * THREADS, B * NH, 1). A threadgroup owns COLS
// columns of one head's C; its SPLIT row groups share them. Every threadgroup recomputes the gates and q . n_t (DQK
// numbers, cheap next to its DQK * COLS entries of C); column block 0 writes n_t and m_t.
const int tid = threadIdx.x;
const int col_block = blockIdx.x;
const int bh = blockIdx.y;
#define BARRIER __syncthreads()
__shared__ float q_s[DQK];
__shared__ float k_s[DQK];
__shared__ float red[THREADS];
__shared__ float part[THREADS];
// --- common ---
const int tx = tid % COLS;
const int ty = tid / COLS;
const int col = col_block * COLS + tx;

// Gates, the same scalars in every thread (as mlstm_cell.recurrent_step; m_0 = 0 is the caller's zero state):
//   log sigma(f) = min(f, 0) - log(1 + exp(-|f|))
//   m_t = max(log sigma(f_t) + m_{t-1}, i_t)                                   (stabiliser)
//   f' = exp(log sigma(f_t) + m_{t-1} - m_t),  i' = exp(i_t - m_t)
const float f_raw = static_cast<float>(f[bh]);
const float i_raw = static_cast<float>(i[bh]);
const float m_prev = m[bh];
const float log_f = min(f_raw, 0.0f) - log(1.0f + exp(-fabs(f_raw)));
const float m_new = max(log_f + m_prev, i_raw);
const float f_act = exp(log_f + m_prev - m_new);
const float i_act = exp(i_raw - m_new);
const float q_scale = 1.0f / sqrt(static_cast<float>(DQK));

// n_t = f' n_{t-1} + i' k_t (k unscaled), and the partial sums of (q_t / sqrt(DQK)) . n_t; q and k staged as float.
float qn_part = 0.0f;
for (int r = tid; r < DQK; r += THREADS) {
  const float k_r = static_cast<float>(k[bh * DQK + r]);
  const float q_r = static_cast<float>(q[bh * DQK + r]) * q_scale;
  const float n_r = f_act * n[bh * DQK + r] + i_act * k_r;
  q_s[r] = q_r;
  k_s[r] = k_r;
  qn_part += q_r * n_r;
  if (col_block == 0) {
    n_out[bh * DQK + r] = n_r;
  }
}
red[tid] = qn_part;
BARRIER;
for (int s = THREADS / 2; s > 0; s >>= 1) {
  if (tid < s) {
    red[tid] += red[tid + s];
  }
  BARRIER;
}
const float qn = red[0];

// C_t = f' C_{t-1} + i' k_t v_t^T for column `col`, rows ty, ty + SPLIT, ...: coalesced over the COLS columns of a
// warp; the SPLIT row groups' partial numerators (q_t / sqrt(DQK))^T C_t are summed in shared memory.
float num = 0.0f;
if (col < DV) {
  const float v_c = static_cast<float>(v[bh * DV + col]);
  const size_t base = static_cast<size_t>(bh) * DQK * DV + col;
  // unrolled: several independent loads of C in flight per thread (the step is bound by one pass over C)
  #pragma unroll 8
  for (int r = ty; r < DQK; r += SPLIT) {
    const float c = f_act * C[base + static_cast<size_t>(r) * DV] + i_act * k_s[r] * v_c;
    C_out[base + static_cast<size_t>(r) * DV] = c;
    num += q_s[r] * c;
  }
}
part[tid] = num;
BARRIER;
// h_t = numerator / (max(|q . n_t|, exp(-m_t)) + eps)
if (ty == 0 && col < DV) {
  float total = 0.0f;
  for (int g = 0; g < SPLIT; ++g) {
    total += part[g * COLS + tx];
  }
  h[bh * DV + col] = total / (max(fabs(qn), exp(-m_new)) + eps[0]);
}
if (col_block == 0 && tid == 0) {
  m_out[bh] = m_new;
}
