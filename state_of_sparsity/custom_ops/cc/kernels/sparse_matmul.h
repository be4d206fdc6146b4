// Sparse-weight matmul functors: Y = X·W, dX = dY·Wᵀ and dW at W's nonzeros.
//
// Plain C++ (no TensorFlow headers) so the math compiles quickly and once per
// instruction set (AVX-512, AVX2, generic); `sparse_matmul_kernels.cc` picks
// the build the CPU supports at run time and supplies TF's thread pool.
//
// W [K, N] is stored as CSC (`ptr` [N+1], `idx` [nnz] rows, `values` [nnz]).
// dX uses the CSR structure of the same W (`ptr` [K+1], `idx` [nnz] columns)
// with `perm` mapping each CSR entry to its CSC value, so values exist once.
#ifndef STATE_OF_SPARSITY_CUSTOM_OPS_CC_KERNELS_SPARSE_MATMUL_H_
#define STATE_OF_SPARSITY_CUSTOM_OPS_CC_KERNELS_SPARSE_MATMUL_H_

#include <cstdint>
#include <functional>

namespace sos {

// Raw bits of a bfloat16 (the top 16 bits of a float32), as TF stores it.
using bf16 = uint16_t;

// Runs fn(begin, end) over [0, total) on the caller's thread pool.
using ParallelFor =
    std::function<void(int64_t total, const std::function<void(int64_t, int64_t)>& fn)>;

// Returns n floats of 64-byte aligned scratch that live until the op returns,
// or nullptr when allocation failed (the caller's status then says why).
using Allocate = std::function<float*(int64_t n)>;

struct Compressed {
  const int32_t* ptr;     // [outer + 1], non-decreasing, ptr[0] = 0
  const int32_t* idx;     // [nnz], each in [0, inner)
  const float* values;    // [nnz] (CSC order)
  const int32_t* perm;    // [nnz] or nullptr: values[perm[j]] is entry j's value
  int64_t outer;          // compressed dimension (output features)
  int64_t inner;          // indexed dimension (input features)
  int64_t nnz;
};

// Applied to each output column of SpMM before it is written (fused like
// TF's _FusedMatMul): out = act(in · S + bias).
struct Epilogue {
  const float* bias = nullptr;  // [s.outer] or nullptr
  bool relu = false;
};

// out[B, s.outer] = in[B, s.inner] · S with S[idx[j], o] = value j for ptr[o] <= j < ptr[o + 1].
// Used for the forward pass (S = W as CSC) and for dX (S = Wᵀ, i.e. W as CSR).
// SDDMM: dvalues[j] = (xᵀ·dy)[idx[j], o] for S's entries j (the update pass).
// AllBelow: every (unsigned) v[j] < limit; the op's index validation, which runs
// over O(nnz) entries on every call, vectorised and threaded like the math.
// SpMMGrad: both gradients in one sweep from W's CSR structure `wt`
// (values in CSC order, read through perm): dx = dy·Wᵀ and dvalues in CSC order.
// The *Bf16 variants take and return bfloat16 activations (weights, their
// gradient and all arithmetic stay float32; panels are float32).
#define SOS_DECLARE_KERNELS(ns)                                                   \
  namespace ns {                                                                \
  void SpMM(const float* in, int64_t batch, const Compressed& s, float* out,     \
            int num_threads, const ParallelFor& pfor, const Allocate& allocate,   \
            const Epilogue& epilogue);                                          \
  void SpMMBf16(const bf16* in, int64_t batch, const Compressed& s, bf16* out,   \
                int num_threads, const ParallelFor& pfor, const Allocate& allocate, \
                const Epilogue& epilogue);                                      \
  void SDDMM(const float* x, const float* dy, int64_t batch, const Compressed& s, \
             float* dvalues, int num_threads, const ParallelFor& pfor,           \
             const Allocate& allocate);                                         \
  bool AllBelow(const int32_t* v, int64_t size, uint32_t limit, int num_threads,  \
                const ParallelFor& pfor);                                           \
  void SpMMGrad(const float* x, const float* dy, int64_t batch, const Compressed& wt, \
                float* dx, float* dvalues, int num_threads, const ParallelFor& pfor,  \
                const Allocate& allocate);                                         \
  void SpMMGradBf16(const bf16* x, const bf16* dy, int64_t batch, const Compressed& wt, \
                    bf16* dx, float* dvalues, int num_threads, const ParallelFor& pfor, \
                    const Allocate& allocate);                                     \
  }

SOS_DECLARE_KERNELS(avx512)
SOS_DECLARE_KERNELS(avx2)
SOS_DECLARE_KERNELS(generic)

#undef SOS_DECLARE_KERNELS

}  // namespace sos

#endif  // STATE_OF_SPARSITY_CUSTOM_OPS_CC_KERNELS_SPARSE_MATMUL_H_
