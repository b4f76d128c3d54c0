"""The cuda kernels of ``fused::gelu_tanh``: a ``cupy.RawKernel`` pair (forward, backward) per float dtype.

:func:`register` adds them to the op registered by the C plugin: ``op.register_kernel("cuda", ...)`` (selected by
dispatch for cuda tensors) and a backward that runs the cuda kernel for cuda tensors and the C one for cpu tensors.
Without cupy (or without a GPU) it does nothing and returns False.
"""
from __future__ import annotations

from typing import Any

SOURCE = r"""
template <typename T>
__device__ void gelu_fwd(const T* x, T* y, long long n) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    T v = x[i];
    T t = tanh((T)0.7978845608028654 * (v + (T)0.044715 * v * v * v));
    y[i] = (T)0.5 * v * ((T)1 + t);
}
template <typename T>
__device__ void gelu_bwd(const T* x, const T* g, T* dx, long long n) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    const T c = (T)0.7978845608028654, a = (T)0.044715;
    T v = x[i];
    T t = tanh(c * (v + a * v * v * v));
    dx[i] = g[i] * ((T)0.5 * ((T)1 + t) + (T)0.5 * v * ((T)1 - t * t) * c * ((T)1 + (T)3 * a * v * v));
}
extern "C" __global__ void gelu_fwd_f32(const float* x, float* y, long long n) { gelu_fwd<float>(x, y, n); }
extern "C" __global__ void gelu_fwd_f64(const double* x, double* y, long long n) { gelu_fwd<double>(x, y, n); }
extern "C" __global__ void gelu_bwd_f32(const float* x, const float* g, float* dx, long long n) {
    gelu_bwd<float>(x, g, dx, n);
}
extern "C" __global__ void gelu_bwd_f64(const double* x, const double* g, double* dx, long long n) {
    gelu_bwd<double>(x, g, dx, n);
}
"""
THREADS = 256


def register() -> bool:
    """Register the cuda kernels on ``fused::gelu_tanh`` (True), or do nothing without cupy/a GPU (False)."""
    try:
        import cupy  # noqa: PLC0415
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
    except Exception:  # noqa: BLE001 - no cupy, no driver, no device: the op stays cpu-only
        return False
    from tinygrad_nb import library  # noqa: PLC0415

    op = library.lookup("fused::gelu_tanh")
    suffix = {cupy.dtype("float32"): "f32", cupy.dtype("float64"): "f64"}
    kernels = {f"gelu_{which}_{s}": cupy.RawKernel(SOURCE, f"gelu_{which}_{s}", options=("--std=c++14",))
               for which in ("fwd", "bwd") for s in ("f32", "f64")}

    def kernel_name(dtype: Any, which: str) -> Any:
        if cupy.dtype(dtype) not in suffix:
            raise TypeError(f"fused::gelu_tanh: expected a float32 or float64 tensor, got {dtype}")
        return kernels[f"gelu_{which}_{suffix[cupy.dtype(dtype)]}"]

    def forward(x: Any) -> Any:
        x = cupy.ascontiguousarray(x)
        y = cupy.empty_like(x)
        n = x.size
        kernel = kernel_name(x.dtype, "fwd")
        if n:  # a launch with zero blocks is an error
            kernel(((n + THREADS - 1) // THREADS,), (THREADS,), (x, y, cupy.int64(n)))
        return y

    cpu_backward = op.backward_fn
    setup = op.setup_context

    def backward(ctx: Any, grad: Any) -> Any:
        if ctx.device.type != "cuda":
            return cpu_backward(ctx, grad)
        (x,) = ctx.saved_tensors
        x = cupy.ascontiguousarray(x)
        g = cupy.ascontiguousarray(grad, dtype=x.dtype)
        dx = cupy.empty_like(x)
        n = x.size
        kernel = kernel_name(x.dtype, "bwd")
        if n:
            kernel(((n + THREADS - 1) // THREADS,), (THREADS,), (x, g, dx, cupy.int64(n)))
        return (dx,)

    op.register_kernel("cuda", forward)
    op.register_autograd(backward, setup)
    return True
