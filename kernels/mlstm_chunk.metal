// The inter-chunk recurrence of the chunkwise mLSTM (every chunk of every batch and head in one launch), body of
// mx.fast.metal_kernel. xlstm_viz/model/mlstm_kernels.py builds the call; the reference is mlstm_cell.chunk_states.
// kernels/mlstm_chunk.cu and kernels/mlstm_chunk.metal differ only in the lines up to "--- common ---" (thread
// indices, shared memory, barrier).
//
// Inputs (row-contiguous): k [B*NH, nc*L, DQK], v [B*NH, nc*L, DV] (float32 or bfloat16, widened to float);
// a [B*NH, nc, L], b_last [B*NH, nc] (float32); C0 [B*NH, DQK, DV], n0 [B*NH, DQK], m0 [B*NH] (float32, the state
// entering the first chunk); dims [1] = nc (int32). Outputs (float32): C_in [B*NH, nc, DQK, DV], n_in [B*NH, nc, DQK],
// m_in [B*NH, nc] (the state entering each chunk), C_out, n_out, m_out (the state after the last chunk).
// Template constants: DQK, DV, CHUNK (= L), THREADS (= COLS * SPLIT), COLS, ROWS (= SPLIT * PER), SPLIT, PER.
// Geometry: threadgroup (THREADS, 1, 1); grid (ceil(DV / COLS) * THREADS, ceil(DQK / ROWS), B * NH). A threadgroup
// owns a ROWS x COLS tile of one head's C for the whole sequence and walks the chunks in order; each thread keeps PER
// entries of the tile in registers. Every threadgroup recomputes the chunk's stabiliser (L numbers); column block 0
// carries n, and its row block 0 carries m.
// The intra-chunk part (h from C_in and the chunk's own tokens) stays in MLX: it is matmuls, which MLX runs on cuBLAS.
const int tid = static_cast<int>(thread_position_in_threadgroup.x);
const int col_block = static_cast<int>(threadgroup_position_in_grid.x);
const int row_block = static_cast<int>(threadgroup_position_in_grid.y);
const int bh = static_cast<int>(threadgroup_position_in_grid.z);
#define BARRIER threadgroup_barrier(mem_flags::mem_threadgroup)
threadgroup float kw_s[CHUNK * ROWS];
threadgroup float v_s[CHUNK * COLS];
threadgroup float w_s[CHUNK];
threadgroup float red[THREADS];
// --- common ---
const int tx = tid % COLS;  // column of the tile this thread updates
const int ty = tid / COLS;  // first row; the thread's rows are ty, ty + SPLIT, ..., PER of them
const int col = col_block * COLS + tx;
const int row0 = row_block * ROWS;
const int nc = dims[0];  // chunks: a runtime number, so one compile serves every sequence length
const int L = CHUNK;
const size_t bh_tokens = static_cast<size_t>(bh) * nc * L;  // first token of this (batch, head) in k and v
const bool writes_n = col_block == 0 && tid < ROWS && row0 + tid < DQK;  // column block 0 carries n
const bool writes_m = col_block == 0 && row_block == 0 && tid == 0;

// The tile of C (rows row0 + ty + SPLIT * j, column col) and, in column block 0, one entry of n, in registers.
float acc[PER];
for (int j = 0; j < PER; ++j) {
  const int r = row0 + ty + SPLIT * j;
  acc[j] = (r < DQK && col < DV) ? C0[(static_cast<size_t>(bh) * DQK + r) * DV + col] : 0.0f;
}
float n_reg = writes_n ? n0[bh * DQK + row0 + tid] : 0.0f;
float m_run = m0[bh];

for (int c = 0; c < nc; ++c) {
  // The state entering chunk c: C_in[c], n_in[c], m_in[c] (what the intra-chunk part reads).
  for (int j = 0; j < PER; ++j) {
    const int r = row0 + ty + SPLIT * j;
    if (r < DQK && col < DV) {
      C_in[((static_cast<size_t>(bh) * nc + c) * DQK + r) * DV + col] = acc[j];
    }
  }
  if (writes_n) {
    n_in[(static_cast<size_t>(bh) * nc + c) * DQK + row0 + tid] = n_reg;
  }
  if (writes_m) {
    m_in[bh * nc + c] = m_run;
  }
  // M_c = max_s a_cs (a_cs = b_last_c - b_cs + i_s: the log weight of token s in the chunk-end state)
  float local = -3.0e38f;
  for (int s = tid; s < L; s += THREADS) {
    const float a_cs = a[(static_cast<size_t>(bh) * nc + c) * L + s];
    w_s[s] = a_cs;
    local = max(local, a_cs);
  }
  red[tid] = local;
  BARRIER;
  for (int half = THREADS / 2; half > 0; half >>= 1) {
    if (tid < half) {
      red[tid] = max(red[tid], red[tid + half]);
    }
    BARRIER;
  }
  // m_c = max(b_last_c + m_{c-1}, M_c)                                       (stabiliser at the chunk end)
  // decay = exp(b_last_c + m_{c-1} - m_c),  w_s = exp(a_cs - m_c)
  const float g = b_last[bh * nc + c];
  const float m_new = max(g + m_run, red[0]);
  const float decay = exp(g + m_run - m_new);
  BARRIER;  // every thread has read red[0] and a_cs before w_s is overwritten
  for (int s = tid; s < L; s += THREADS) {
    w_s[s] = exp(w_s[s] - m_new);
  }
  BARRIER;
  // Stage (w_s k_s) for the tile's ROWS rows and v_s for its COLS columns, every token of the chunk, as float.
  for (int idx = tid; idx < L * ROWS; idx += THREADS) {
    const int s = idx / ROWS;
    const int r = idx % ROWS;
    kw_s[idx] = (row0 + r < DQK) ? static_cast<float>(k[(bh_tokens + c * L + s) * DQK + row0 + r]) * w_s[s] : 0.0f;
  }
  for (int idx = tid; idx < L * COLS; idx += THREADS) {
    const int s = idx / COLS;
    const int cc = idx % COLS;
    const int vc = col_block * COLS + cc;
    v_s[idx] = (vc < DV) ? static_cast<float>(v[(bh_tokens + c * L + s) * DV + vc]) : 0.0f;
  }
  BARRIER;
  // C_c = decay C_{c-1} + sum_s (w_s k_s) v_s^T,  n_c = decay n_{c-1} + sum_s w_s k_s
  for (int j = 0; j < PER; ++j) {
    acc[j] *= decay;
  }
  for (int s = 0; s < L; ++s) {
    const float v_sc = v_s[s * COLS + tx];
    #pragma unroll
    for (int j = 0; j < PER; ++j) {
      acc[j] += kw_s[s * ROWS + ty + SPLIT * j] * v_sc;
    }
  }
  if (writes_n) {
    float kw_sum = 0.0f;
    for (int s = 0; s < L; ++s) {
      kw_sum += kw_s[s * ROWS + tid];
    }
    n_reg = decay * n_reg + kw_sum;
  }
  m_run = m_new;
  BARRIER;  // the next chunk restages w_s, kw_s and v_s
}
// The state after the last chunk.
for (int j = 0; j < PER; ++j) {
  const int r = row0 + ty + SPLIT * j;
  if (r < DQK && col < DV) {
    C_out[(static_cast<size_t>(bh) * DQK + r) * DV + col] = acc[j];
  }
}
if (writes_n) {
  n_out[bh * DQK + row0 + tid] = n_reg;
}
if (writes_m) {
  m_out[bh] = m_run;
}
