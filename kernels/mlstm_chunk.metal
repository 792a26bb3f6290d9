// The inter-chunk recurrence of the chunkwise mLSTM, its sequential part: a scan over chunk boundaries, every entry
// of every (batch, head)'s C and n in a thread of its own. Body of mx.fast.metal_kernel. xlstm_viz/model/mlstm_kernels.py
// builds the call and computes the parallel part first (MLX matmuls over all chunks at once); the reference is
// mlstm_cell.chunk_states. kernels/mlstm_chunk.cu and kernels/mlstm_chunk.metal differ only in the lines up to
// "--- common ---" (thread indices).
//
// With a_cs = b_last_c - b_cs + i_s (the log weight of token s in the chunk-end state) and M_c = max_s a_cs, the
// parallel part gives U_c = sum_s exp(a_cs - M_c) k_s v_s^T and u_c = sum_s exp(a_cs - M_c) k_s for every chunk; this
// kernel carries the state across the chunks, rescaling by the chunk-end stabiliser. The work per chunk is two
// exponentials and one multiply-add per entry, so the scan is bound by reading U and writing C_in.
//
// Inputs (row-contiguous): U [B*NH, nc, DQK*DV] (float32, or bf16/fp16: the product's rounding, read as it is),
// Un [B*NH, nc, DQK], M [B*NH, nc], b_last [B*NH, nc]; C0 [B*NH, DQK*DV], n0 [B*NH, DQK], m0 [B*NH] (the state
// entering the first chunk), all float32; dims [1] = nc (int32).
// Outputs: C_in [B*NH, nc, DQK*DV] (float32, or bf16/fp16 when the intra-chunk product q C_in takes bf16 operands:
// the store rounds once), n_in [B*NH, nc, DQK], m_in [B*NH, nc] (the state entering each chunk), C_out, n_out, m_out
// (the state after the last chunk); all but C_in float32. Template constants: DQK, DV, THREADS; T_U and T_CIN name
// U's and C_in's dtypes (the module cache's key; loads and stores convert through the pointer types).
// Geometry: threadgroup (THREADS, 1, 1); grid (ceil((DQK * DV + DQK) / THREADS) * THREADS, B * NH, 1). Every thread
// recomputes the stabiliser m_c (nc scalars, read by a whole warp at once); entry 0 writes it.
const int tid = static_cast<int>(thread_position_in_threadgroup.x);
const int block = static_cast<int>(threadgroup_position_in_grid.x);
const int bh = static_cast<int>(threadgroup_position_in_grid.y);
// --- common ---
const int CE = DQK * DV;  // entries of one head's C
const int e = block * THREADS + tid;  // this thread's entry: C[e / DV][e % DV], or n[e - CE] past the end of C
const bool is_c = e < CE;
const bool is_n = !is_c && e < CE + DQK;
const int nc = dims[0];  // chunks: a runtime number, so one compile serves every sequence length
const size_t head = static_cast<size_t>(bh);

// U_c (or u_c for n) of chunk c at this thread's entry: what chunk c adds before the chunk-end rescaling
#define UPDATE(c) (is_c ? static_cast<float>(U[(head * nc + (c)) * CE + e]) \
                         : (is_n ? Un[(head * nc + (c)) * DQK + (e - CE)] : 0.0f))

float acc = is_c ? C0[head * CE + e] : (is_n ? n0[head * DQK + (e - CE)] : 0.0f);
float m_run = m0[bh];
float u_next = nc > 0 ? UPDATE(0) : 0.0f;  // one chunk ahead: the loads do not wait on the recurrence
for (int c = 0; c < nc; ++c) {
  const size_t hc = head * nc + c;
  // The state entering chunk c: C_in[c], n_in[c], m_in[c] (what the intra-chunk part reads).
  if (is_c) {
    C_in[hc * CE + e] = acc;
  } else if (is_n) {
    n_in[hc * DQK + (e - CE)] = acc;
  }
  if (e == 0) {
    m_in[hc] = m_run;
  }
  const float u = u_next;
  if (c + 1 < nc) {
    u_next = UPDATE(c + 1);
  }
  // m_c = max(b_last_c + m_{c-1}, M_c)                                       (stabiliser at the chunk end)
  const float g = b_last[hc];
  const float M_c = M[hc];
  const float m_new = max(g + m_run, M_c);
  // C_c = exp(b_last_c + m_{c-1} - m_c) C_{c-1} + exp(M_c - m_c) U_c        (and n_c with u_c)
  acc = exp(g + m_run - m_new) * acc + exp(M_c - m_new) * u;
  m_run = m_new;
}
// The state after the last chunk.
if (is_c) {
  C_out[head * CE + e] = acc;
} else if (is_n) {
  n_out[head * DQK + (e - CE)] = acc;
}
if (e == 0) {
  m_out[bh] = m_run;
}
