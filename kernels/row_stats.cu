// Probe statistics of every head row of a stats trace, one warp per row, in one launch (mx.fast.cuda_kernel body).
// Inputs: flat (float32, every probe packed one after another), rows (int32 [R, 2]: offset into flat, width; padding
// rows have width 0). Output: out (float32 [R, 4]: mean, std, absmax, l2). The reference is stats.numpy_stats.
// std is centred (a second pass over the row); absmax is the integer max of the float bits with the sign bit
// cleared: it orders like |x| and every NaN lies above inf, so NaN propagates as in numpy.
auto thread = cooperative_groups::this_grid().thread_rank();
int row = thread / 32;
int lane = thread % 32;
int offset = rows[2 * row];
int width = rows[2 * row + 1];
float total = 0.0f;
float squares = 0.0f;
unsigned int top = 0u;
for (int j = lane; j < width; j += 32) {
  float v = flat[offset + j];
  total += v;
  squares += v * v;
  unsigned int bits = __float_as_uint(v) & 0x7fffffffu;
  top = bits > top ? bits : top;
}
for (int step = 16; step > 0; step >>= 1) {
  total += __shfl_down_sync(0xffffffffu, total, step);
  squares += __shfl_down_sync(0xffffffffu, squares, step);
  unsigned int other = __shfl_down_sync(0xffffffffu, top, step);
  top = other > top ? other : top;
}
float mean = __shfl_sync(0xffffffffu, total, 0) / (width > 0 ? (float)width : 1.0f);
float centred = 0.0f;
for (int j = lane; j < width; j += 32) {
  float d = flat[offset + j] - mean;
  centred += d * d;
}
for (int step = 16; step > 0; step >>= 1) {
  centred += __shfl_down_sync(0xffffffffu, centred, step);
}
if (lane == 0 && width > 0) {
  out[4 * row + 0] = mean;
  out[4 * row + 1] = sqrtf(centred / (float)width);
  out[4 * row + 2] = __uint_as_float(top);
  out[4 * row + 3] = sqrtf(squares);
}
