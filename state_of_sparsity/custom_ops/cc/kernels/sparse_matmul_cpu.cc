// CPU math of the sparse-weight matmul, compiled once per instruction set (SOS_KERNEL_NS).
//
// Layout (see reference/spmm_limit.md): activations are packed into
// batch-contiguous panels P[chunk][feature][BC] so every nonzero w of S does
// `acc[0..BC) += w * P[feature][0..BC)`: BC/16 vector FMAs on one contiguous
// row, accumulators in registers. A panel (features x BC floats) is sized to
// stay in L2. Outputs go through a [16][BC] tile and a 16x16 transpose back
// to row-major.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "sparse_matmul.h"

#ifndef SOS_KERNEL_NS
#error "compile with -DSOS_KERNEL_NS=avx512|avx2|generic"
#endif

namespace sos {
namespace SOS_KERNEL_NS {
namespace {

// The native vector of each build: wider GCC vectors than the registers get
// split badly (and go through memory), so AVX2 and SSE use their own width.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float vec __attribute__((vector_size(kLanes * 4)));

inline vec Load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, vec v) { std::memcpy(p, &v, sizeof(v)); }
inline vec Splat(float w) { return vec{} + w; }

// Makes the compiler load `v` once into a register rather than folding the load
// into each FMA that uses it: a 512-bit load per FMA is the bottleneck on CPUs
// with one 512-bit load port (AMD Zen 4).
inline void KeepInRegister(vec& v) {
#if defined(__AVX512F__) || defined(__AVX2__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

inline float HorizontalSum(vec v) {
#if defined(__AVX512F__)
  __m512 m;
  std::memcpy(&m, &v, sizeof(m));
  return _mm512_reduce_add_ps(m);
#else
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
#endif
}

// out[i] (+)= sum of the lanes of a[i] for i < count (count <= kLanes). With
// AVX-512, 16 sums take 15 unpack/shuffle+add steps (2 shuffles per vector
// instead of the 4 of a horizontal sum each, which compete with FMAs for port 5).
inline void ReduceGroup(const vec* a, int count, float* out, bool accumulate) {
#if defined(__AVX512F__)
  __m512 r[16];
  for (int i = 0; i < 16; ++i) {
    if (i < count) std::memcpy(&r[i], &a[i], sizeof(r[i]));
    else r[i] = _mm512_setzero_ps();
  }
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [p(2i), p(2i+1), q(2i), q(2i+1)]
    r[i] = _mm512_add_ps(_mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]),
                         _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: sums of vectors 4i..4i+3 over that lane
    r[i] = _mm512_add_ps(_mm512_shuffle_ps(r[2 * i], r[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(r[2 * i], r[2 * i + 1], 0xEE));
  for (int i = 0; i < 2; ++i)  // fold 128-bit lanes pairwise
    r[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0xDD));
  __m512 sums = _mm512_add_ps(_mm512_shuffle_f32x4(r[0], r[1], 0x88),
                              _mm512_shuffle_f32x4(r[0], r[1], 0xDD));
  const __mmask16 valid = static_cast<__mmask16>((1u << count) - 1);
  if (accumulate) sums = _mm512_add_ps(sums, _mm512_maskz_loadu_ps(valid, out));
  _mm512_mask_storeu_ps(out, valid, sums);
#else
  for (int i = 0; i < count; ++i) out[i] = (accumulate ? out[i] : 0.f) + HorizontalSum(a[i]);
#endif
}

// dst[c][r] = src[r][c] for a rows x cols block (rows, cols <= 16). `stream`:
// write whole 64-byte lines of dst with non-temporal stores when aligned (op
// outputs: no read-for-ownership of lines about to be overwritten, and the
// output does not evict the panels from cache).
inline void TransposeBlock(const float* src, int64_t src_stride, float* dst,
                           int64_t dst_stride, int rows, int cols, bool stream = false) {
#if defined(__AVX512F__)
  if (rows == 16 && cols == 16) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * src_stride);
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
      t[i + 8] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
      t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm512_shuffle_f32x4(t[i], t[i + 4], 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 4], 0xDD);
      r[i + 4] = _mm512_shuffle_f32x4(t[i + 8], t[i + 12], 0x88);
      r[i + 12] = _mm512_shuffle_f32x4(t[i + 8], t[i + 12], 0xDD);
    }
    if (stream && reinterpret_cast<uintptr_t>(dst) % 64 == 0 && dst_stride % 16 == 0) {
      for (int i = 0; i < 16; ++i) _mm512_stream_ps(dst + i * dst_stride, r[i]);
    } else {
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * dst_stride, r[i]);
    }
    return;
  }
#endif
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r) dst[c * dst_stride + r] = src[r * src_stride + c];
}

// Batch chunk: a panel of `features` x BC floats should fit L2 (1 MB/core here).
// Halving it (down to min_bc) to give every thread its own chunk pays off for
// SpMM (min_bc 32, see SpMMImpl); SDDMM prefers longer rows (min_bc 64).
// The BC/kLanes accumulators must fit the vector registers: 8 of 32 zmm
// (AVX-512), 8 of 16 ymm (AVX2), 8 of 16 xmm (SSE). GradChunk holds three
// such sets (x row, dx sums, dy row), hence its smaller maximum off AVX-512.
#if defined(__AVX512F__)
constexpr int kMaxChunk = 128, kMaxGradChunk = 128;
#elif defined(__AVX2__)
constexpr int kMaxChunk = 64, kMaxGradChunk = 32;
#else
constexpr int kMaxChunk = 32, kMaxGradChunk = 16;
#endif
constexpr int kMinGradChunk = 64;

int ChooseChunk(int64_t batch, int64_t features, int num_threads, int min_bc,
                int max_bc = kMaxChunk) {
  int bc = std::min(max_bc, features * 128 * 4 <= (512 << 10) ? 128 : 64);
  min_bc = std::min(min_bc, bc);
  while (bc > 16 && bc / 2 >= batch) bc /= 2;
  while (bc > min_bc && (batch + bc - 1) / bc < num_threads) bc /= 2;
  return bc;
}

// Calls f(std::integral_constant<int, bc>{}) for a chunk size from ChooseChunk:
// each size is its own instantiation (BC/kLanes accumulators in registers).
template <typename F>
void WithChunk(int bc, F&& f) {
  switch (bc) {
    case 16: return f(std::integral_constant<int, 16>{});
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    default: return f(std::integral_constant<int, 128>{});
  }
}

// bfloat16 <-> float32 (bfloat16 is the top half of a float32; rounding to
// nearest even, NaN kept quiet, as TensorFlow's casts do).
inline float ToFloat(float v) { return v; }
inline float ToFloat(bf16 v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
inline void FromFloat(float v, float* out) { *out = v; }
inline void FromFloat(float v, bf16* out) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    *out = static_cast<bf16>((bits >> 16) | 0x40);
    return;
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  *out = static_cast<bf16>(bits >> 16);
}

// dst[c][r] = src[r][c] (rows, cols <= 16) from float32 or bfloat16 src.
inline void TransposeIn(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                        int rows, int cols) {
  TransposeBlock(src, src_stride, dst, dst_stride, rows, cols);
}
inline void TransposeIn(const bf16* src, int64_t src_stride, float* dst, int64_t dst_stride,
                        int rows, int cols) {
  alignas(64) float block[16 * 16];
  for (int r = 0; r < rows; ++r) {
#if defined(__AVX512F__)
    if (cols == 16) {  // widen 16 bfloat16 to float32: zero-extend and shift left 16
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + r * src_stride));
      _mm512_store_ps(block + r * 16,
                      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
      continue;
    }
#endif
    for (int c = 0; c < 16; ++c) block[r * 16 + c] = c < cols ? ToFloat(src[r * src_stride + c]) : 0.f;
  }
  TransposeBlock(block, 16, dst, dst_stride, rows, cols);
}

// dst[c][r] = src[r][c] (rows, cols <= 16) into a float32 op output (streamed)
// or a bfloat16 one.
inline void TransposeOut(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                         int rows, int cols) {
  TransposeBlock(src, src_stride, dst, dst_stride, rows, cols, true);
}
inline void TransposeOut(const float* src, int64_t src_stride, bf16* dst, int64_t dst_stride,
                         int rows, int cols) {
  alignas(64) float block[16 * 16];
  TransposeBlock(src, src_stride, block, 16, rows, cols);
  for (int c = 0; c < cols; ++c) {
#if defined(__AVX512F__)
    if (rows == 16) {  // FromFloat on 16 lanes: round to nearest even, quiet NaNs
      const __m512 v = _mm512_load_ps(block + c * 16);
      const __m512i bits = _mm512_castps_si512(v);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
      __m512i rounded = _mm512_srli_epi32(
          _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
      const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      rounded = _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(bits, 16),
                                     _mm512_set1_epi32(0x40));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c * dst_stride),
                          _mm512_cvtepi32_epi16(rounded));
      continue;
    }
#endif
    for (int r = 0; r < rows; ++r) FromFloat(block[c * 16 + r], dst + c * dst_stride + r);
  }
}

// dst[f][r] = src[r][f] for f < features and r < 16 (zero for r >= rows):
// one 16-row group of a panel. Reading whole rows keeps the reads to 16
// sequential streams the prefetchers follow (a 16-feature block of all BC
// rows would be BC streams, mostly demand misses).
template <typename T>
void PackGroup(const T* src, int64_t src_stride, int64_t rows, int64_t features, int bc,
               float* dst) {
  for (int64_t f0 = 0; f0 < features; f0 += 16) {
    const int cols = static_cast<int>(std::min<int64_t>(16, features - f0));
    float* d = dst + f0 * bc;
    if (rows < 16)
      for (int f = 0; f < cols; ++f) std::memset(d + f * bc, 0, 16 * sizeof(float));
    if (rows > 0) TransposeIn(src + f0, src_stride, d, bc, static_cast<int>(rows), cols);
  }
}

// Groups [g0, g1) of the panels P[chunk][f][bc] = in[chunk * bc + b][f] (zero
// past the batch); group g is rows 16g..16g+15 of the batch.
template <typename T>
void PackGroups(const T* in, int64_t batch, int64_t features, int bc, float* panel,
                int64_t g0, int64_t g1) {
  const int64_t per_chunk = bc / 16;
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t c = g / per_chunk, b0 = (g % per_chunk) * 16, row = c * bc + b0;
    const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, batch - row));
    PackGroup(in + std::min(row, batch - 1) * features, features, rows, features, bc,
              panel + c * features * bc + b0);
  }
}

// All panels, the 16-row groups split over the threads.
template <typename T>
void Pack(const T* in, int64_t batch, int64_t features, int bc, float* panel,
          int num_threads, const ParallelFor& pfor) {
  const int64_t groups = (batch + bc - 1) / bc * (bc / 16);
  const int64_t tasks = std::min<int64_t>(num_threads, groups);
  pfor(tasks, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      PackGroups(in, batch, features, bc, panel, groups * t / tasks, groups * (t + 1) / tasks);
  });
}

// Splits [0, outer) into `parts` ranges of about equal nonzeros + per-column
// overhead, at multiples of 16 so output tiles stay whole.
std::vector<int64_t> Split(const int32_t* ptr, int64_t outer, int parts) {
  std::vector<int64_t> bounds(parts + 1, outer);
  bounds[0] = 0;
  const double overhead = 4.0;  // cost of one column in units of one nonzero
  const double total = ptr[outer] + overhead * outer;
  int64_t o = 0;
  for (int p = 1; p < parts; ++p) {
    const double target = total * p / parts;
    while (o < outer && ptr[o] + overhead * o < target) ++o;
    bounds[p] = std::min(outer, (o + 15) / 16 * 16);
  }
  for (int p = 1; p <= parts; ++p) bounds[p] = std::max(bounds[p], bounds[p - 1]);
  return bounds;
}

template <int BC, typename T>
void SpMMRange(const float* panel, int64_t batch, const Compressed& s,
               const float* values, int64_t o0, int64_t o1, T* out,
               const Epilogue& epilogue) {
  constexpr int NV = BC / kLanes;
  alignas(64) float tile[16 * BC];
  const int64_t chunks = (batch + BC - 1) / BC;
  for (int64_t c = 0; c < chunks; ++c) {
    const float* p = panel + c * s.inner * BC;
    const int64_t b_begin = c * BC;
    const int64_t rows = std::min<int64_t>(BC, batch - b_begin);
    for (int64_t ob = o0; ob < o1; ob += 16) {
      const int cols = static_cast<int>(std::min<int64_t>(16, o1 - ob));
      for (int i = 0; i < cols; ++i) {
        vec acc[NV];
        for (int v = 0; v < NV; ++v) acc[v] = vec{};
        const int32_t end = s.ptr[ob + i + 1];
        for (int32_t j = s.ptr[ob + i]; j < end; ++j) {
          const vec w = Splat(values[j]);
          const float* x = p + static_cast<int64_t>(s.idx[j]) * BC;
          for (int v = 0; v < NV; ++v) acc[v] += w * Load(x + kLanes * v);
        }
        if (epilogue.bias != nullptr) {
          const vec b = Splat(epilogue.bias[ob + i]);
          for (int v = 0; v < NV; ++v) acc[v] += b;
        }
        if (epilogue.relu)
          for (int v = 0; v < NV; ++v) acc[v] = acc[v] > vec{} ? acc[v] : vec{};
        for (int v = 0; v < NV; ++v) Store(tile + i * BC + kLanes * v, acc[v]);
      }
      for (int64_t b0 = 0; b0 < rows; b0 += 16)
        TransposeOut(tile + b0, BC, out + (b_begin + b0) * s.outer + ob, s.outer, cols,
                     static_cast<int>(std::min<int64_t>(16, rows - b0)));
    }
  }
}

// dvalues[j] (+)= P_x[idx[j]] · P_dy[o] for the entries j of outputs [o0, o1),
// reduced kLanes entries at a time (ReduceGroup), in entry order.
template <int BC>
void SDDMMRange(const float* xpanel, const float* dypanel, int64_t batch,
                const Compressed& s, int64_t o0, int64_t o1, float* dvalues,
                bool accumulate) {
  constexpr int NV = BC / kLanes;
  const int64_t chunks = (batch + BC - 1) / BC;
  for (int64_t c = 0; c < chunks; ++c) {
    const float* xp = xpanel + c * s.inner * BC;
    const float* dp = dypanel + c * s.outer * BC;
    const bool add = c > 0 || accumulate;
    vec group[kLanes];
    int filled = 0;
    int64_t first = s.ptr[o0];
    for (int64_t o = o0; o < o1; ++o) {
      vec dy[NV];
      for (int v = 0; v < NV; ++v) dy[v] = Load(dp + o * BC + kLanes * v);
      const int32_t end = s.ptr[o + 1];
      for (int32_t j = s.ptr[o]; j < end; ++j) {
        const float* x = xp + static_cast<int64_t>(s.idx[j]) * BC;
        vec acc = dy[0] * Load(x);
        for (int v = 1; v < NV; ++v) acc += dy[v] * Load(x + kLanes * v);
        group[filled++] = acc;
        if (filled == kLanes) {
          ReduceGroup(group, kLanes, dvalues + first, add);
          first += kLanes;
          filled = 0;
        }
      }
    }
    if (filled > 0) ReduceGroup(group, filled, dvalues + first, add);
  }
}

// Values of S in S's own entry order (CSR entries read their CSC value through perm).
const float* GatherValues(const Compressed& s, int num_threads, const ParallelFor& pfor,
                          const Allocate& allocate) {
  float* g = allocate(s.nnz);
  if (g == nullptr) return nullptr;
  const int64_t per = (s.nnz + num_threads - 1) / num_threads;
  pfor(num_threads, [&](int64_t t0, int64_t t1) {
    for (int64_t j = t0 * per; j < std::min(s.nnz, t1 * per); ++j) g[j] = s.values[s.perm[j]];
  });
  return g;
}

// Threads split the batch chunks when there are enough of them: each thread
// packs the panel it alone reads (it stays in its core's L2) and no barrier is
// needed between packing and multiplying. Otherwise they split the outputs.
template <int BC, typename T>
void SpMMImpl(const T* in, int64_t batch, const Compressed& s, T* out,
              int num_threads, const ParallelFor& pfor, const Allocate& allocate,
              const Epilogue& epilogue) {
  const int64_t chunks = (batch + BC - 1) / BC;
  float* panel = allocate(chunks * s.inner * BC);
  // CSR entries read their CSC value through perm: gather them once, in order
  // (reading values[perm[j]] in the kernel misses cache when nnz is large).
  const float* values =
      s.perm != nullptr ? GatherValues(s, num_threads, pfor, allocate) : s.values;
  if (panel == nullptr || values == nullptr) return;  // allocation failed: status is set
  if (chunks >= num_threads) {
    pfor(chunks, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t rows = std::min<int64_t>(BC, batch - c * BC);
        float* p = panel + c * s.inner * BC;
        PackGroups(in + c * BC * s.inner, rows, s.inner, BC, p, 0, BC / 16);
        SpMMRange<BC>(p, rows, s, values, 0, s.outer, out + c * BC * s.outer, epilogue);
      }
    });
    return;
  }
  Pack(in, batch, s.inner, BC, panel, num_threads, pfor);
  const std::vector<int64_t> bounds = Split(s.ptr, s.outer, num_threads);
  pfor(num_threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      SpMMRange<BC>(panel, batch, s, values, bounds[t], bounds[t + 1], out, epilogue);
  });
}

template <int BC>
void SDDMMImpl(const float* x, const float* dy, int64_t batch, const Compressed& s,
               float* dvalues, int num_threads, const ParallelFor& pfor,
               const Allocate& allocate) {
  const int64_t chunks = (batch + BC - 1) / BC;
  float* xpanel = allocate(chunks * s.inner * BC);
  float* dypanel = allocate(chunks * s.outer * BC);
  if (xpanel == nullptr || dypanel == nullptr) return;
  if (chunks >= num_threads) {
    // Each task sums its chunks into its own buffer; the buffers are added at the end.
    const int64_t tasks = num_threads;
    const int64_t per = (chunks + tasks - 1) / tasks;
    float* partial = allocate(tasks * s.nnz);
    if (partial == nullptr) return;
    pfor(tasks, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* dst = t == 0 ? dvalues : partial + t * s.nnz;
        const int64_t c_end = std::min(chunks, (t + 1) * per);
        if (t * per >= c_end) std::memset(dst, 0, s.nnz * sizeof(float));
        for (int64_t c = t * per; c < c_end; ++c) {
          const int64_t rows = std::min<int64_t>(BC, batch - c * BC);
          float* xp = xpanel + c * s.inner * BC;
          float* dp = dypanel + c * s.outer * BC;
          PackGroups(x + c * BC * s.inner, rows, s.inner, BC, xp, 0, BC / 16);
          PackGroups(dy + c * BC * s.outer, rows, s.outer, BC, dp, 0, BC / 16);
          SDDMMRange<BC>(xp, dp, rows, s, 0, s.outer, dst, c > t * per);
        }
      }
    });
    if (tasks > 1) {
      const int64_t vper = (s.nnz + 16 * num_threads - 1) / (16 * num_threads) * 16;
      pfor(num_threads, [&](int64_t t0, int64_t t1) {
        for (int64_t j = t0 * vper; j < std::min(s.nnz, t1 * vper); ++j) {
          float sum = dvalues[j];
          for (int64_t t = 1; t < tasks; ++t) sum += partial[t * s.nnz + j];
          dvalues[j] = sum;
        }
      });
    }
    return;
  }
  Pack(x, batch, s.inner, BC, xpanel, num_threads, pfor);
  Pack(dy, batch, s.outer, BC, dypanel, num_threads, pfor);
  const std::vector<int64_t> bounds = Split(s.ptr, s.outer, num_threads);
  pfor(num_threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      SDDMMRange<BC>(xpanel, dypanel, batch, s, bounds[t], bounds[t + 1],
                     dvalues, false);
  });
}

// Backward pass of one batch chunk (rows <= BC rows of x and dy, both packed
// into panels) over W's rows [k0, k1) (k0 a multiple of 16), from W's CSR
// structure `wt`:
//   dx[b][k] = sum_i vals[i] * dy[b][idx[i]]      (vals in CSR order)
//   dw[i]   (+)= sum_b x[b][k] * dy[b][idx[i]]    (CSR order)
// Each dy panel row P_dy[n] is loaded once per nonzero and feeds both sums,
// so dX and dW cost about one pass over the panel instead of two; the x row
// of k stays in registers. dx goes out through a [16][BC] tile like SpMMRange's.
template <int BC, typename T>
void GradChunk(const float* xpanel, const float* dypanel, int64_t rows, const Compressed& wt,
               const float* vals, int64_t k0, int64_t k1, T* dx, float* dw,
               bool accumulate) {
  constexpr int NV = BC / kLanes;
  const int64_t k = wt.outer;
  alignas(64) float tile[16 * BC];
  vec group[kLanes];
  int filled = 0;
  int64_t first = wt.ptr[k0];
  for (int64_t kb = k0; kb < k1; kb += 16) {
    const int cols = static_cast<int>(std::min<int64_t>(16, k1 - kb));
    for (int r = 0; r < cols; ++r) {
      vec xr[NV], acc[NV];
      for (int v = 0; v < NV; ++v) {
        xr[v] = Load(xpanel + (kb + r) * BC + kLanes * v);
        acc[v] = vec{};
      }
      const int32_t end = wt.ptr[kb + r + 1];
      for (int32_t i = wt.ptr[kb + r]; i < end; ++i) {
        const float* d = dypanel + static_cast<int64_t>(wt.idx[i]) * BC;
        const vec w = Splat(vals[i]);
        vec dot[2] = {vec{}, vec{}};  // two chains halve the FMA latency per entry
        for (int v = 0; v < NV; ++v) {
          vec dv = Load(d + kLanes * v);
          KeepInRegister(dv);
          acc[v] += w * dv;
          dot[v & 1] += xr[v] * dv;
        }
        group[filled++] = dot[0] + dot[1];
        if (filled == kLanes) {
          ReduceGroup(group, kLanes, dw + first, accumulate);
          first += kLanes;
          filled = 0;
        }
      }
      for (int v = 0; v < NV; ++v) Store(tile + r * BC + kLanes * v, acc[v]);
    }
    for (int64_t b0 = 0; b0 < rows; b0 += 16)
      TransposeOut(tile + b0, BC, dx + b0 * k + kb, k, cols,
                   static_cast<int>(std::min<int64_t>(16, rows - b0)));
  }
  if (filled > 0) ReduceGroup(group, filled, dw + first, accumulate);
}

// dx = dy·Wᵀ and dvalues = (xᵀ·dy) at W's nonzeros in one sweep (GradChunk).
// Threads split W's rows (balanced by nonzeros) and run every batch chunk, so
// each owns a contiguous range of CSR entries: it gathers their values,
// computes their dW and scatters it to CSC order itself, and dx columns are
// disjoint. Two fork-joins in all (packing dy and x, then the rest), no partial sums.
template <int BC, typename T>
void GradImpl(const T* x, const T* dy, int64_t batch, const Compressed& wt,
              T* dx, float* dvalues, int num_threads, const ParallelFor& pfor,
              const Allocate& allocate) {
  const int64_t chunks = (batch + BC - 1) / BC;
  const int64_t k = wt.outer, n = wt.inner;
  float* vals = allocate(wt.nnz);  // CSR order
  float* dw = allocate(wt.nnz);    // CSR order
  float* dypanel = allocate(chunks * n * BC);
  float* xpanel = allocate(chunks * k * BC);
  if (vals == nullptr || dw == nullptr || dypanel == nullptr || xpanel == nullptr) return;
  // perm need not be a permutation (the op does not check that), so dvalues
  // starts from zeros; each thread clears a slice while packing.
  const int64_t groups = chunks * (BC / 16);
  pfor(num_threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t z0 = wt.nnz * t / num_threads, z1 = wt.nnz * (t + 1) / num_threads;
      std::memset(dvalues + z0, 0, (z1 - z0) * sizeof(float));
      const int64_t g0 = groups * t / num_threads, g1 = groups * (t + 1) / num_threads;
      PackGroups(dy, batch, n, BC, dypanel, g0, g1);
      PackGroups(x, batch, k, BC, xpanel, g0, g1);
    }
  });
  const std::vector<int64_t> bounds = Split(wt.ptr, k, num_threads);
  pfor(num_threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (bounds[t] == bounds[t + 1]) continue;
      const int32_t i0 = wt.ptr[bounds[t]], i1 = wt.ptr[bounds[t + 1]];
      for (int32_t i = i0; i < i1; ++i) vals[i] = wt.values[wt.perm[i]];
      for (int64_t c = 0; c < chunks; ++c)
        GradChunk<BC>(xpanel + c * k * BC, dypanel + c * n * BC,
                      std::min<int64_t>(BC, batch - c * BC), wt, vals, bounds[t],
                      bounds[t + 1], dx + c * BC * k, dw, c > 0);
      for (int32_t i = i0; i < i1; ++i) dvalues[wt.perm[i]] = dw[i];
    }
  });
}

template <typename T>
void SpMMTyped(const T* in, int64_t batch, const Compressed& s, T* out,
               int num_threads, const ParallelFor& pfor, const Allocate& allocate,
               const Epilogue& epilogue) {
  if (batch == 0 || s.outer == 0) return;
  if (s.nnz == 0 || s.inner == 0) {  // out = act(bias), or zeros
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t o = 0; o < s.outer; ++o) {
        const float v = epilogue.bias != nullptr ? epilogue.bias[o] : 0.f;
        FromFloat(epilogue.relu && !(v > 0.f) ? 0.f : v, out + b * s.outer + o);
      }
    return;
  }
  num_threads = std::max(1, num_threads);
  WithChunk(ChooseChunk(batch, s.inner, num_threads, 32), [&](auto bc) {
    SpMMImpl<decltype(bc)::value>(in, batch, s, out, num_threads, pfor, allocate, epilogue);
  });
}

template <typename T>
void SpMMGradTyped(const T* x, const T* dy, int64_t batch, const Compressed& wt, T* dx,
                   float* dvalues, int num_threads, const ParallelFor& pfor,
                   const Allocate& allocate) {
  if (batch == 0 || wt.nnz == 0) {
    for (int64_t i = 0; i < batch * wt.outer; ++i) FromFloat(0.f, dx + i);
    std::memset(dvalues, 0, wt.nnz * sizeof(float));
    return;
  }
  num_threads = std::max(1, num_threads);
  WithChunk(ChooseChunk(batch, wt.inner, num_threads, kMinGradChunk, kMaxGradChunk),
            [&](auto bc) {
              GradImpl<decltype(bc)::value>(x, dy, batch, wt, dx, dvalues, num_threads, pfor,
                                            allocate);
            });
}

}  // namespace

void SpMM(const float* in, int64_t batch, const Compressed& s, float* out,
          int num_threads, const ParallelFor& pfor, const Allocate& allocate,
          const Epilogue& epilogue) {
  SpMMTyped(in, batch, s, out, num_threads, pfor, allocate, epilogue);
}

void SpMMBf16(const bf16* in, int64_t batch, const Compressed& s, bf16* out,
              int num_threads, const ParallelFor& pfor, const Allocate& allocate,
              const Epilogue& epilogue) {
  SpMMTyped(in, batch, s, out, num_threads, pfor, allocate, epilogue);
}

void SpMMGrad(const float* x, const float* dy, int64_t batch, const Compressed& wt, float* dx,
              float* dvalues, int num_threads, const ParallelFor& pfor,
              const Allocate& allocate) {
  SpMMGradTyped(x, dy, batch, wt, dx, dvalues, num_threads, pfor, allocate);
}

void SpMMGradBf16(const bf16* x, const bf16* dy, int64_t batch, const Compressed& wt,
                  bf16* dx, float* dvalues, int num_threads, const ParallelFor& pfor,
                  const Allocate& allocate) {
  SpMMGradTyped(x, dy, batch, wt, dx, dvalues, num_threads, pfor, allocate);
}

void SDDMM(const float* x, const float* dy, int64_t batch, const Compressed& s,
           float* dvalues, int num_threads, const ParallelFor& pfor,
           const Allocate& allocate) {
  if (s.nnz == 0) return;
  if (batch == 0) {
    std::memset(dvalues, 0, s.nnz * sizeof(float));
    return;
  }
  num_threads = std::max(1, num_threads);
  WithChunk(ChooseChunk(batch, std::max(s.inner, s.outer), num_threads, 64), [&](auto bc) {
    SDDMMImpl<decltype(bc)::value>(x, dy, batch, s, dvalues, num_threads, pfor, allocate);
  });
}

bool AllBelow(const int32_t* v, int64_t size, uint32_t limit, int num_threads,
              const ParallelFor& pfor) {
  num_threads = std::max(1, num_threads);
  // One thread reads ~10 GB/s here; a fork-join only pays off for megabytes.
  const int64_t per = std::max<int64_t>(1 << 18, (size + num_threads - 1) / num_threads);
  const int64_t tasks = (size + per - 1) / per;
  std::vector<char> bad(std::max<int64_t>(tasks, 1), 0);
  pfor(tasks, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      uint32_t largest = 0;  // a max reduction vectorises (vpmaxud), a bool |= does not
      const int64_t end = std::min(size, (t + 1) * per);
      for (int64_t j = t * per; j < end; ++j)
        largest = std::max(largest, static_cast<uint32_t>(v[j]));
      bad[t] = largest >= limit;
    }
  });
  return std::none_of(bad.begin(), bad.end(), [](char b) { return b != 0; });
}

}  // namespace SOS_KERNEL_NS
}  // namespace sos
