// CPU OpKernels of the sparse-weight matmul ops: input validation, ISA dispatch, thread pool.
#include <algorithm>
#include <cstdlib>
#include <deque>
#include <string>

#include "sparse_matmul.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/threadpool.h"

namespace sos {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

namespace {

struct Kernels {
  decltype(&generic::SpMM) spmm;
  decltype(&generic::SDDMM) sddmm;
  decltype(&generic::SpMMGrad) grad;
  decltype(&generic::AllBelow) all_below;
  decltype(&generic::SpMMBf16) spmm_bf16;
  decltype(&generic::SpMMGradBf16) grad_bf16;
};

// The widest instruction set this CPU runs; the library holds all three builds.
// SOS_SPARSE_MATMUL_ISA=avx2|generic caps it (to test the fallbacks).
const Kernels& Dispatch() {
  static const Kernels kernels = [] {
    const char* cap = std::getenv("SOS_SPARSE_MATMUL_ISA");
    const std::string isa = cap == nullptr ? "avx512" : cap;
#if defined(__x86_64__) && defined(SOS_HAVE_X86_KERNELS)
    __builtin_cpu_init();
    if (isa == "avx512" && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
      return Kernels{avx512::SpMM, avx512::SDDMM, avx512::SpMMGrad, avx512::AllBelow,
                     avx512::SpMMBf16, avx512::SpMMGradBf16};
    if (isa != "generic" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Kernels{avx2::SpMM, avx2::SDDMM, avx2::SpMMGrad, avx2::AllBelow,
                     avx2::SpMMBf16, avx2::SpMMGradBf16};
#endif
    return Kernels{generic::SpMM, generic::SDDMM, generic::SpMMGrad, generic::AllBelow,
                     generic::SpMMBf16, generic::SpMMGradBf16};
  }();
  return kernels;
}

// The kernels for each activation dtype (float32, or bfloat16 as raw bits).
template <typename T>
struct Typed;
template <>
struct Typed<float> {
  using Raw = float;
  static auto Spmm() { return Dispatch().spmm; }
  static auto Grad() { return Dispatch().grad; }
};
template <>
struct Typed<tensorflow::bfloat16> {
  using Raw = bf16;
  static auto Spmm() { return Dispatch().spmm_bf16; }
  static auto Grad() { return Dispatch().grad_bf16; }
};

template <typename T>
const typename Typed<T>::Raw* RawData(const Tensor& t) {
  return reinterpret_cast<const typename Typed<T>::Raw*>(t.flat<T>().data());
}
template <typename T>
typename Typed<T>::Raw* RawData(Tensor* t) {
  return reinterpret_cast<typename Typed<T>::Raw*>(t->flat<T>().data());
}

struct Pool {
  int num_threads;
  ParallelFor pfor;
};

Pool ThreadPool(OpKernelContext* ctx) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return Pool{std::max(1, workers->NumThreads()),
              [workers](int64_t total, const std::function<void(int64_t, int64_t)>& fn) {
                workers->ParallelFor(
                    total, tsl::thread::ThreadPool::SchedulingParams::Fixed(1), fn);
              }};
}

// Scratch from TF's allocator (cached, so no page faults per call), alive until Compute returns.
class TempAllocator {
 public:
  explicit TempAllocator(OpKernelContext* ctx) : ctx_(ctx) {}
  float* operator()(int64_t n) {
    temps_.emplace_back();
    absl::Status status = ctx_->allocate_temp(tensorflow::DT_FLOAT,
                                              TensorShape({std::max<int64_t>(n, 1)}),
                                              &temps_.back());
    if (!status.ok()) {
      ctx_->SetStatus(status);
      return nullptr;
    }
    return temps_.back().flat<float>().data();
  }

 private:
  OpKernelContext* ctx_;
  std::deque<Tensor> temps_;  // a deque keeps earlier tensors in place
};

// x: rank >= 2, last dimension `features` (or any when features < 0); returns rows.
absl::Status CheckActivations(const char* name, const Tensor& t, int64_t features,
                              const char* feature_source) {
  if (t.dims() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("`", name, "` must have rank >= 2 ([..., features]). Received: ",
                     name, ".shape=", t.shape().DebugString()));
  }
  if (features >= 0 && t.dim_size(t.dims() - 1) != features) {
    return absl::InvalidArgumentError(absl::StrCat(
        "The last dimension of `", name, "` must be ", features, " (", feature_source,
        "). Received: ", name, ".shape=", t.shape().DebugString()));
  }
  return absl::OkStatus();
}

absl::Status CheckVector(const char* name, const Tensor& t) {
  if (t.dims() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be a vector. Received: ",
                                                   name, ".shape=", t.shape().DebugString()));
  }
  return absl::OkStatus();
}

absl::Status CheckSameLength(const char* name, const Tensor& t, const char* ref_name,
                             int64_t nnz) {
  TF_RETURN_IF_ERROR(CheckVector(name, t));
  if (t.dim_size(0) != nnz) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`", name, "` must have one entry per nonzero, like `", ref_name, "` (", nnz,
        "). Received: ", name, ".shape=", t.shape().DebugString()));
  }
  return absl::OkStatus();
}

// ptr [outer + 1]: starts at 0, non-decreasing, ends at nnz. The checks below
// run on every call over O(nnz) entries, so each first makes one branch-free
// (vectorised) pass and only looks for the offending entry when there is one.
absl::Status CheckPointer(const char* name, const Tensor& t, int64_t nnz) {
  TF_RETURN_IF_ERROR(CheckVector(name, t));
  if (t.dim_size(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`", name, "` must have at least one entry (size = rows + 1). Received: ", name,
        ".shape=", t.shape().DebugString()));
  }
  const int32_t* p = t.flat<int32_t>().data();
  const int64_t outer = t.dim_size(0) - 1;
  if (p[0] != 0 || p[outer] != nnz) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`", name, "` must start at 0 and end at the number of nonzeros (", nnz,
        "). Received: ", name, "[0]=", p[0], ", ", name, "[", outer, "]=", p[outer]));
  }
  bool decreasing = false;
  for (int64_t i = 0; i < outer; ++i) decreasing |= p[i] > p[i + 1];
  for (int64_t i = 0; decreasing && i < outer; ++i) {
    if (p[i] > p[i + 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`", name, "` must be non-decreasing. Received: ", name, "[", i, "]=", p[i], " > ",
          name, "[", i + 1, "]=", p[i + 1]));
    }
  }
  return absl::OkStatus();
}

// Every entry in [0, bound).
absl::Status CheckIndices(OpKernelContext* ctx, const char* name, const Tensor& t,
                          int64_t bound, const char* bound_name) {
  const int32_t* v = t.flat<int32_t>().data();
  const int64_t size = t.NumElements();
  // As unsigned, negative entries are >= 2^31, so one comparison covers both ends.
  const uint32_t limit = static_cast<uint32_t>(std::min<int64_t>(bound, int64_t{1} << 31));
  Pool pool = ThreadPool(ctx);
  if (Dispatch().all_below(v, size, limit, pool.num_threads, pool.pfor)) return absl::OkStatus();
  int64_t j = 0;
  while (static_cast<uint32_t>(v[j]) < limit) ++j;
  return absl::InvalidArgumentError(absl::StrCat("`", name, "` entries must be in [0, ", bound,
                                                 ") (", bound_name, "). Received: ", name, "[",
                                                 j, "]=", v[j]));
}

// W's CSR structure (gradients, gather/scatter): row_ptr over nnz entries
// (counted by the input `nnz_source`), columns in [0, n) (`n_source` says what
// n is), perm into the nnz values.
absl::Status CheckCsrStructure(OpKernelContext* ctx, const Tensor& row_ptr,
                               const Tensor& col_idx, const Tensor& perm, int64_t nnz,
                               const char* nnz_source, int64_t n, const char* n_source) {
  TF_RETURN_IF_ERROR(CheckSameLength("col_idx", col_idx, nnz_source, nnz));
  TF_RETURN_IF_ERROR(CheckSameLength("perm", perm, nnz_source, nnz));
  TF_RETURN_IF_ERROR(CheckPointer("row_ptr", row_ptr, nnz));
  TF_RETURN_IF_ERROR(CheckIndices(ctx, "col_idx", col_idx, n, n_source));
  return CheckIndices(ctx, "perm", perm, nnz, "number of nonzeros");
}

// Product of the leading dimensions (the op treats [..., features] as [rows, features]).
int64_t Rows(const Tensor& t) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < t.dims(); ++i) rows *= t.dim_size(i);
  return rows;
}

TensorShape WithLastDim(const TensorShape& shape, int64_t last) {
  TensorShape out = shape;
  out.set_dim(out.dims() - 1, last);
  return out;
}

absl::Status CheckSameBatch(const Tensor& x, const Tensor& dy) {
  if (WithLastDim(x.shape(), 1) == WithLastDim(dy.shape(), 1)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "`x` and `dy` must have the same leading (batch) dimensions. Received: x.shape=",
      x.shape().DebugString(), ", dy.shape=", dy.shape().DebugString()));
}

}  // namespace

// SosSparseMatmul, and SosSparseMatmulBiasActivation (an 8th input `bias`,
// attr `activation`) which adds the bias and applies the activation to each
// output tile before it is written, saving two passes over the output.
template <typename T>
class SparseMatmulOp : public OpKernel {
 public:
  explicit SparseMatmulOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    fused_ = ctx->num_inputs() == 8;
    if (fused_) {
      std::string activation;
      OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &activation));
      relu_ = activation == "relu";
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& values = ctx->input(1);
    const Tensor& col_ptr = ctx->input(2);
    const Tensor& row_idx = ctx->input(3);
    const Tensor& row_ptr = ctx->input(4);
    OP_REQUIRES_OK(ctx, CheckVector("values", values));
    const int64_t nnz = values.dim_size(0);
    OP_REQUIRES_OK(ctx, CheckVector("row_ptr", row_ptr));
    const int64_t k = row_ptr.dim_size(0) - 1;
    OP_REQUIRES_OK(ctx, CheckActivations("x", x, k, "rows of W: row_ptr.shape[0] - 1"));
    OP_REQUIRES_OK(ctx, CheckSameLength("row_idx", row_idx, "values", nnz));
    // The CSR structure is only read by the gradient, which validates it; check its shape here.
    OP_REQUIRES_OK(ctx, CheckSameLength("col_idx", ctx->input(5), "values", nnz));
    OP_REQUIRES_OK(ctx, CheckSameLength("perm", ctx->input(6), "values", nnz));
    OP_REQUIRES_OK(ctx, CheckPointer("col_ptr", col_ptr, nnz));
    OP_REQUIRES_OK(ctx, CheckIndices(ctx, "row_idx", row_idx, k, "rows of W"));
    const int64_t n = col_ptr.dim_size(0) - 1;

    Epilogue epilogue;
    if (fused_) {
      const Tensor& bias = ctx->input(7);
      OP_REQUIRES_OK(ctx, CheckVector("bias", bias));
      OP_REQUIRES(ctx, bias.dim_size(0) == n || bias.dim_size(0) == 0,
                  absl::InvalidArgumentError(absl::StrCat(
                      "`bias` must have one entry per column of W (", n,
                      ") or none. Received: bias.shape=", bias.shape().DebugString())));
      if (bias.dim_size(0) > 0) epilogue.bias = bias.flat<float>().data();
      epilogue.relu = relu_;
    }

    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, WithLastDim(x.shape(), n), &y));
    const Compressed w{col_ptr.flat<int32_t>().data(), row_idx.flat<int32_t>().data(),
                       values.flat<float>().data(), nullptr, n, k, nnz};
    Pool pool = ThreadPool(ctx);
    TempAllocator temps(ctx);
    Typed<T>::Spmm()(RawData<T>(x), Rows(x), w, RawData<T>(y), pool.num_threads, pool.pfor,
                     std::ref(temps), epilogue);
  }

 private:
  bool fused_ = false;
  bool relu_ = false;
};

class SparseMatmulGradInputOp : public OpKernel {
 public:
  explicit SparseMatmulGradInputOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& values = ctx->input(1);
    const Tensor& row_ptr = ctx->input(2);
    const Tensor& col_idx = ctx->input(3);
    const Tensor& perm = ctx->input(4);
    OP_REQUIRES_OK(ctx, CheckVector("values", values));
    const int64_t nnz = values.dim_size(0);
    OP_REQUIRES_OK(ctx, CheckActivations("dy", dy, -1, ""));
    const int64_t n = dy.dim_size(dy.dims() - 1);
    OP_REQUIRES_OK(ctx, CheckCsrStructure(ctx, row_ptr, col_idx, perm, nnz, "values", n,
                                          "columns of W: dy.shape[-1]"));
    const int64_t k = row_ptr.dim_size(0) - 1;

    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, WithLastDim(dy.shape(), k), &dx));
    const Compressed wt{row_ptr.flat<int32_t>().data(), col_idx.flat<int32_t>().data(),
                        values.flat<float>().data(), perm.flat<int32_t>().data(), k, n, nnz};
    Pool pool = ThreadPool(ctx);
    TempAllocator temps(ctx);
    Dispatch().spmm(dy.flat<float>().data(), Rows(dy), wt, dx->flat<float>().data(),
                    pool.num_threads, pool.pfor, std::ref(temps), Epilogue{});
  }
};

class SparseMatmulGradValuesOp : public OpKernel {
 public:
  explicit SparseMatmulGradValuesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    const Tensor& col_ptr = ctx->input(2);
    const Tensor& row_idx = ctx->input(3);
    OP_REQUIRES_OK(ctx, CheckActivations("x", x, -1, ""));
    OP_REQUIRES_OK(ctx, CheckVector("col_ptr", col_ptr));
    const int64_t n = col_ptr.dim_size(0) - 1;
    OP_REQUIRES_OK(ctx, CheckActivations("dy", dy, n, "columns of W: col_ptr.shape[0] - 1"));
    OP_REQUIRES_OK(ctx, CheckSameBatch(x, dy));
    OP_REQUIRES_OK(ctx, CheckVector("row_idx", row_idx));
    const int64_t nnz = row_idx.dim_size(0);
    const int64_t k = x.dim_size(x.dims() - 1);
    OP_REQUIRES_OK(ctx, CheckPointer("col_ptr", col_ptr, nnz));
    OP_REQUIRES_OK(ctx, CheckIndices(ctx, "row_idx", row_idx, k, "rows of W: x.shape[-1]"));

    Tensor* dvalues = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({nnz}), &dvalues));
    const Compressed w{col_ptr.flat<int32_t>().data(), row_idx.flat<int32_t>().data(), nullptr,
                       nullptr, n, k, nnz};
    Pool pool = ThreadPool(ctx);
    TempAllocator temps(ctx);
    Dispatch().sddmm(x.flat<float>().data(), dy.flat<float>().data(), Rows(x), w,
                     dvalues->flat<float>().data(), pool.num_threads, pool.pfor,
                     std::ref(temps));
  }
};

template <typename T>
class SparseMatmulGradOp : public OpKernel {
 public:
  explicit SparseMatmulGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    const Tensor& values = ctx->input(2);
    const Tensor& row_ptr = ctx->input(3);
    const Tensor& col_idx = ctx->input(4);
    const Tensor& perm = ctx->input(5);
    OP_REQUIRES_OK(ctx, CheckVector("values", values));
    const int64_t nnz = values.dim_size(0);
    OP_REQUIRES_OK(ctx, CheckVector("row_ptr", row_ptr));
    const int64_t k = row_ptr.dim_size(0) - 1;
    OP_REQUIRES_OK(ctx, CheckActivations("x", x, k, "rows of W: row_ptr.shape[0] - 1"));
    OP_REQUIRES_OK(ctx, CheckActivations("dy", dy, -1, ""));
    OP_REQUIRES_OK(ctx, CheckSameBatch(x, dy));
    const int64_t n = dy.dim_size(dy.dims() - 1);
    OP_REQUIRES_OK(ctx, CheckCsrStructure(ctx, row_ptr, col_idx, perm, nnz, "values", n,
                                          "columns of W: dy.shape[-1]"));

    Tensor* dx = nullptr;
    Tensor* dvalues = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({nnz}), &dvalues));
    const Compressed wt{row_ptr.flat<int32_t>().data(), col_idx.flat<int32_t>().data(),
                        values.flat<float>().data(), perm.flat<int32_t>().data(), k, n, nnz};
    Pool pool = ThreadPool(ctx);
    TempAllocator temps(ctx);
    Typed<T>::Grad()(RawData<T>(x), RawData<T>(dy), Rows(x), wt, RawData<T>(dx),
                     dvalues->flat<float>().data(), pool.num_threads, pool.pfor,
                     std::ref(temps));
  }
};

#define SOS_REGISTER_TYPED(T)                                                          \
  REGISTER_KERNEL_BUILDER(Name("SosSparseMatmul").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
                          SparseMatmulOp<T>);                                          \
  REGISTER_KERNEL_BUILDER(                                                             \
      Name("SosSparseMatmulBiasActivation").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
      SparseMatmulOp<T>);                                                              \
  REGISTER_KERNEL_BUILDER(                                                             \
      Name("SosSparseMatmulGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),           \
      SparseMatmulGradOp<T>);
SOS_REGISTER_TYPED(float)
SOS_REGISTER_TYPED(tensorflow::bfloat16)
#undef SOS_REGISTER_TYPED
REGISTER_KERNEL_BUILDER(Name("SosSparseMatmulGradInput").Device(DEVICE_CPU),
                        SparseMatmulGradInputOp);
REGISTER_KERNEL_BUILDER(Name("SosSparseMatmulGradValues").Device(DEVICE_CPU),
                        SparseMatmulGradValuesOp);

absl::Status CheckMatrix(const char* name, const Tensor& t) {
  if (t.dims() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be a matrix [K, N]. Received: ",
                                                   name, ".shape=", t.shape().DebugString()));
  }
  return absl::OkStatus();
}

// A [K, N] matrix and W's CSR structure with perm, all validated.
absl::Status CheckKernelStructure(OpKernelContext* ctx, int kernel_input, int64_t nnz) {
  const Tensor& kernel = ctx->input(kernel_input);
  TF_RETURN_IF_ERROR(CheckMatrix(kernel_input == 0 ? "kernel" : "kernel_like", kernel));
  const Tensor& row_ptr = ctx->input(1);  // row_ptr, col_idx, perm are inputs 1-3
  TF_RETURN_IF_ERROR(CheckCsrStructure(ctx, row_ptr, ctx->input(2), ctx->input(3), nnz,
                                       kernel_input == 0 ? "col_idx" : "values",
                                       kernel.dim_size(1), "columns of the kernel"));
  if (row_ptr.dim_size(0) - 1 != kernel.dim_size(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`row_ptr` must have rows + 1 = ", kernel.dim_size(0) + 1, " entries. Received: "
        "row_ptr.shape=", row_ptr.shape().DebugString(), ", kernel.shape=",
        kernel.shape().DebugString()));
  }
  return absl::OkStatus();
}

// Runs fn(row) for every kernel row, split over the pool by equal row counts.
void ForEachRow(OpKernelContext* ctx, int64_t rows, const std::function<void(int64_t)>& fn) {
  Pool pool = ThreadPool(ctx);
  const int64_t per = (rows + pool.num_threads - 1) / pool.num_threads;
  if (rows == 0) return;
  pool.pfor((rows + per - 1) / per, [&](int64_t t0, int64_t t1) {
    for (int64_t r = t0 * per; r < std::min(rows, t1 * per); ++r) fn(r);
  });
}

class GatherNonzerosOp : public OpKernel {
 public:
  explicit GatherNonzerosOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckVector("col_idx", ctx->input(2)));
    const int64_t nnz = ctx->input(2).dim_size(0);
    OP_REQUIRES_OK(ctx, CheckKernelStructure(ctx, 0, nnz));
    const Tensor& kernel = ctx->input(0);
    Tensor* values = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({nnz}), &values));
    const float* src = kernel.flat<float>().data();
    const int32_t* ptr = ctx->input(1).flat<int32_t>().data();
    const int32_t* col = ctx->input(2).flat<int32_t>().data();
    const int32_t* perm = ctx->input(3).flat<int32_t>().data();
    float* dst = values->flat<float>().data();
    const int64_t n = kernel.dim_size(1);
    // perm need not be a permutation: zero first so no output is left unset.
    std::fill(dst, dst + nnz, 0.0f);
    ForEachRow(ctx, kernel.dim_size(0), [&](int64_t k) {
      for (int32_t i = ptr[k]; i < ptr[k + 1]; ++i) dst[perm[i]] = src[k * n + col[i]];
    });
  }
};

class ScatterNonzerosOp : public OpKernel {
 public:
  explicit ScatterNonzerosOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& values = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckVector("values", values));
    OP_REQUIRES_OK(ctx, CheckKernelStructure(ctx, 4, values.dim_size(0)));
    const Tensor& like = ctx->input(4);
    Tensor* kernel = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, like.shape(), &kernel));
    const float* src = values.flat<float>().data();
    const int32_t* ptr = ctx->input(1).flat<int32_t>().data();
    const int32_t* col = ctx->input(2).flat<int32_t>().data();
    const int32_t* perm = ctx->input(3).flat<int32_t>().data();
    float* dst = kernel->flat<float>().data();
    const int64_t n = like.dim_size(1);
    // One pass per row: zero it, then add its entries (duplicates add up).
    ForEachRow(ctx, like.dim_size(0), [&](int64_t k) {
      float* row = dst + k * n;
      std::fill(row, row + n, 0.0f);
      for (int32_t i = ptr[k]; i < ptr[k + 1]; ++i) row[col[i]] += src[perm[i]];
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("SosGatherNonzeros").Device(DEVICE_CPU), GatherNonzerosOp);
REGISTER_KERNEL_BUILDER(Name("SosScatterNonzeros").Device(DEVICE_CPU), ScatterNonzerosOp);

}  // namespace sos
