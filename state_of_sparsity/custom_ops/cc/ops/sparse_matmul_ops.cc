// Interfaces of the sparse-weight matmul ops (kernels in ../kernels/).
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace sos {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

// All [nnz] inputs must agree; returns nnz.
absl::Status MergeNnz(InferenceContext* c, std::initializer_list<int> inputs,
                      DimensionHandle* nnz) {
  *nnz = c->UnknownDim();
  for (int i : inputs) {
    ShapeHandle s;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &s));
    TF_RETURN_IF_ERROR(c->Merge(*nnz, c->Dim(s, 0), nnz));
  }
  return absl::OkStatus();
}

// Size of the dimension compressed by a [size + 1] pointer input.
absl::Status PointerDim(InferenceContext* c, int input, DimensionHandle* dim) {
  ShapeHandle s;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(input), 1, &s));
  return c->Subtract(c->Dim(s, 0), 1, dim);
}

// [..., from] -> [..., to].
absl::Status ReplaceLastDim(InferenceContext* c, ShapeHandle s, DimensionHandle to,
                            ShapeHandle* out) {
  ShapeHandle batch;
  TF_RETURN_IF_ERROR(c->Subshape(s, 0, -1, &batch));
  return c->Concatenate(batch, c->Vector(to), out);
}

// x = input 0 and dy = input 1, both [..., features] with the same leading dimensions.
absl::Status ActivationsWithSameBatch(InferenceContext* c, ShapeHandle* x, ShapeHandle* dy) {
  ShapeHandle batch_x, batch_dy, batch;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, x));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 2, dy));
  TF_RETURN_IF_ERROR(c->Subshape(*x, 0, -1, &batch_x));
  TF_RETURN_IF_ERROR(c->Subshape(*dy, 0, -1, &batch_dy));
  return c->Merge(batch_x, batch_dy, &batch);
}

// y [..., N] of the forward ops (inputs 0-6: x, values, col_ptr, row_idx, row_ptr, col_idx, perm).
absl::Status SparseMatmulShape(InferenceContext* c) {
  ShapeHandle x, y;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &x));
  DimensionHandle nnz, n, k, unused;
  TF_RETURN_IF_ERROR(MergeNnz(c, {1, 3, 5, 6}, &nnz));
  TF_RETURN_IF_ERROR(PointerDim(c, 2, &n));
  TF_RETURN_IF_ERROR(PointerDim(c, 4, &k));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, -1), k, &unused));
  TF_RETURN_IF_ERROR(ReplaceLastDim(c, x, n, &y));
  c->set_output(0, y);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("SosSparseMatmul")
    .Attr("T: {float, bfloat16} = DT_FLOAT")  // activations; weights stay float32
    .Input("x: T")          // [..., K]
    .Input("values: float")     // [nnz], CSC order
    .Input("col_ptr: int32")    // [N + 1]
    .Input("row_idx: int32")    // [nnz]
    .Input("row_ptr: int32")    // [K + 1] (CSR, for the gradient)
    .Input("col_idx: int32")    // [nnz]
    .Input("perm: int32")       // [nnz], CSR entry -> CSC value
    .Output("y: T")         // [..., N]
    .SetShapeFn(SparseMatmulShape)
    .Doc("Y = X·W for dense X [..., K] and sparse W [K, N] given as CSC (+ CSR for the gradient).");

REGISTER_OP("SosSparseMatmulBiasActivation")
    .Attr("T: {float, bfloat16} = DT_FLOAT")  // activations; weights stay float32
    .Input("x: T")          // [..., K]
    .Input("values: float")     // [nnz], CSC order
    .Input("col_ptr: int32")    // [N + 1]
    .Input("row_idx: int32")    // [nnz]
    .Input("row_ptr: int32")    // [K + 1] (CSR, for the gradient)
    .Input("col_idx: int32")    // [nnz]
    .Input("perm: int32")       // [nnz], CSR entry -> CSC value
    .Input("bias: float")       // [N], or [0] for none
    .Attr("activation: {'linear', 'relu'} = 'linear'")
    .Output("y: T")         // [..., N]
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle bias;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(7), 1, &bias));
      return SparseMatmulShape(c);
    })
    .Doc("Y = activation(X·W + bias): SosSparseMatmul with the bias and activation "
         "applied to each output tile before it is written.");

REGISTER_OP("SosSparseMatmulGradInput")
    .Input("dy: float")         // [..., N]
    .Input("values: float")     // [nnz], CSC order
    .Input("row_ptr: int32")    // [K + 1]
    .Input("col_idx: int32")    // [nnz]
    .Input("perm: int32")       // [nnz]
    .Output("dx: float")        // [..., K]
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle dy, dx;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &dy));
      DimensionHandle nnz, k;
      TF_RETURN_IF_ERROR(MergeNnz(c, {1, 3, 4}, &nnz));
      TF_RETURN_IF_ERROR(PointerDim(c, 2, &k));
      TF_RETURN_IF_ERROR(ReplaceLastDim(c, dy, k, &dx));
      c->set_output(0, dx);
      return absl::OkStatus();
    })
    .Doc("dX = dY·Wᵀ for sparse W [K, N] given as CSR with values in CSC order.");

REGISTER_OP("SosSparseMatmulGradValues")
    .Input("x: float")          // [..., K]
    .Input("dy: float")         // [..., N]
    .Input("col_ptr: int32")    // [N + 1]
    .Input("row_idx: int32")    // [nnz]
    .Output("dvalues: float")   // [nnz], CSC order
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, dy;
      TF_RETURN_IF_ERROR(ActivationsWithSameBatch(c, &x, &dy));
      DimensionHandle nnz, n, unused;
      TF_RETURN_IF_ERROR(MergeNnz(c, {3}, &nnz));
      TF_RETURN_IF_ERROR(PointerDim(c, 2, &n));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(dy, -1), n, &unused));
      c->set_output(0, c->Vector(nnz));
      return absl::OkStatus();
    })
    .Doc("dW at W's nonzeros (sampled Xᵀ·dY), in CSC order.");

REGISTER_OP("SosSparseMatmulGrad")
    .Attr("T: {float, bfloat16} = DT_FLOAT")  // activations; weights stay float32
    .Input("x: T")          // [..., K]
    .Input("dy: T")         // [..., N]
    .Input("values: float")     // [nnz], CSC order
    .Input("row_ptr: int32")    // [K + 1]
    .Input("col_idx: int32")    // [nnz]
    .Input("perm: int32")       // [nnz], CSR entry -> CSC value
    .Output("dx: T")        // [..., K]
    .Output("dvalues: float")   // [nnz], CSC order
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, dy;
      TF_RETURN_IF_ERROR(ActivationsWithSameBatch(c, &x, &dy));
      DimensionHandle nnz, k, unused;
      TF_RETURN_IF_ERROR(MergeNnz(c, {2, 4, 5}, &nnz));
      TF_RETURN_IF_ERROR(PointerDim(c, 3, &k));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, -1), k, &unused));
      c->set_output(0, x);
      c->set_output(1, c->Vector(nnz));
      return absl::OkStatus();
    })
    .Doc("Both gradients of SosSparseMatmul in one sweep: dX = dY·Wᵀ and dW at W's "
         "nonzeros (CSC order), reading each dY panel row once for both.");

// The kept weights of a dense kernel and back: OpSparseDense keeps Keras's
// dense `kernel` variable, and tf.gather / its IndexedSlices gradient cost
// more than the matmul itself at these sizes. Both walk W's CSR structure, so
// the kernel is read or written row by row.
REGISTER_OP("SosGatherNonzeros")
    .Input("kernel: float")     // [K, N]
    .Input("row_ptr: int32")    // [K + 1]
    .Input("col_idx: int32")    // [nnz]
    .Input("perm: int32")       // [nnz], CSR entry -> CSC value
    .Output("values: float")    // [nnz], CSC order
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle kernel;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &kernel));
      DimensionHandle nnz;
      TF_RETURN_IF_ERROR(MergeNnz(c, {2, 3}, &nnz));
      c->set_output(0, c->Vector(nnz));
      return absl::OkStatus();
    })
    .Doc("values[perm[i]] = kernel[k, col_idx[i]] for row_ptr[k] <= i < row_ptr[k + 1].");

REGISTER_OP("SosScatterNonzeros")
    .Input("values: float")       // [nnz], CSC order
    .Input("row_ptr: int32")      // [K + 1]
    .Input("col_idx: int32")      // [nnz]
    .Input("perm: int32")         // [nnz]
    .Input("kernel_like: float")  // [K, N], only its shape is read
    .Output("kernel: float")      // [K, N], zero off the nonzeros
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle like;
      DimensionHandle nnz;
      TF_RETURN_IF_ERROR(MergeNnz(c, {0, 2, 3}, &nnz));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 2, &like));
      c->set_output(0, like);
      return absl::OkStatus();
    })
    .Doc("The dense [K, N] matrix of the nonzeros (the gradient of SosGatherNonzeros).");

}  // namespace sos
