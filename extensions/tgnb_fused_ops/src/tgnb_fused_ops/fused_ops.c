/*
 * tgnb_fused_ops: an example tinygrad_nb plugin (ABI 1.0, see extensions/c_abi/tgnb_plugin.h).
 *
 * One op, "fused::gelu_tanh": GELU with the tanh approximation, forward and backward each in one pass over memory,
 *
 *     y  = 0.5 x (1 + tanh(u)),   u = sqrt(2/pi) (x + 0.044715 x^3)
 *     dx = g [0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)],   t = tanh(u)
 *
 * where composing it from primitives takes about eight passes forward and a dozen backward. float32 uses a
 * branch-free tanh built on a Cephes-style expf that the compiler vectorises (absolute error below 1e-7, which is
 * what 1 + tanh needs); float64 uses libm's tanh. Any other dtype is refused with an error message (the host raises
 * it as a Python exception).
 */
#include <math.h>
#include <string.h>

#include "tgnb_plugin.h"

/* Lets gcc vectorise the float32 loops (their clamps are selects); NaN still propagates. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#ifndef TGNB_FUSED_OPS_VERSION
#define TGNB_FUSED_OPS_VERSION "1.0.0"
#endif

TGNB_DEFINE_ERRORS()

static const float kC = 0.7978845608028654f; /* sqrt(2/pi) */
static const float kA = 0.044715f;

/* exp(x) for float32 without branches or libm calls (so loops over it vectorise): round x/ln2 to n with the
 * 1.5 * 2^23 trick, a degree-6 polynomial on the remainder, and 2^n built in the exponent bits. */
static inline float exp_f32(float x) {
    union { float f; int32_t i; } scale;
    float n, r, p;
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    r = x - n * 0.693359375f + n * 2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

static inline float tanh_f32(float u) { return 1.0f - 2.0f / (exp_f32(2.0f * u) + 1.0f); }

/* The float32 loops are compiled twice, for AVX2 and for the x86-64 baseline, and the loader picks one at run time
 * (gcc's target_clones). The results are the same bits either way: -std=c99 turns off FMA contraction. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

SIMD_CLONES static void forward_f32(const float *restrict x, float *restrict y, int64_t n) {
    int64_t i;
    for (i = 0; i < n; ++i) {
        float v = x[i];
        float t = tanh_f32(kC * (v + kA * v * v * v));
        y[i] = 0.5f * v * (1.0f + t);
    }
}

SIMD_CLONES static void backward_f32(const float *restrict x, const float *restrict g, float *restrict dx, int64_t n) {
    int64_t i;
    for (i = 0; i < n; ++i) {
        float v = x[i];
        float t = tanh_f32(kC * (v + kA * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kC * (1.0f + 3.0f * kA * v * v);
        dx[i] = g[i] * d;
    }
}

static void forward_f64(const double *x, double *y, int64_t n) {
    const double c = 0.7978845608028654, a = 0.044715;
    int64_t i;
    for (i = 0; i < n; ++i) {
        double v = x[i];
        y[i] = 0.5 * v * (1.0 + tanh(c * (v + a * v * v * v)));
    }
}

static void backward_f64(const double *x, const double *g, double *dx, int64_t n) {
    const double c = 0.7978845608028654, a = 0.044715;
    int64_t i;
    for (i = 0; i < n; ++i) {
        double v = x[i];
        double t = tanh(c * (v + a * v * v * v));
        dx[i] = g[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * a * v * v));
    }
}

static int32_t check_input(const DLTensor *x) {
    if (x->device.device_type != kDLCPU) return tgnb_fail("fused::gelu_tanh: only cpu tensors are supported");
    if (!tgnb_is_dtype(x, kDLFloat, 32) && !tgnb_is_dtype(x, kDLFloat, 64))
        return tgnb_fail("fused::gelu_tanh: expected a float32 or float64 tensor, got another dtype "
                         "(convert it with .float() first)");
    return 0;
}

static int32_t gelu_forward(const DLTensor *const *inputs, int32_t n_inputs, DLTensor *const *outputs,
                            int32_t n_outputs) {
    const DLTensor *x = inputs[0];
    (void)n_inputs;
    (void)n_outputs;
    if (check_input(x)) return 1;
    if (x->dtype.bits == 32)
        forward_f32((const float *)tgnb_data(x), (float *)tgnb_data(outputs[0]), tgnb_numel(x));
    else
        forward_f64((const double *)tgnb_data(x), (double *)tgnb_data(outputs[0]), tgnb_numel(x));
    return 0;
}

static int32_t gelu_backward(const DLTensor *const *grad_outputs, int32_t n_outputs, const DLTensor *const *inputs,
                             int32_t n_inputs, DLTensor *const *grad_inputs) {
    const DLTensor *x = inputs[0], *g = grad_outputs[0];
    (void)n_outputs;
    (void)n_inputs;
    if (check_input(x)) return 1;
    if (g->dtype.bits != x->dtype.bits || g->dtype.code != x->dtype.code || tgnb_numel(g) != tgnb_numel(x))
        return tgnb_fail("fused::gelu_tanh backward: the gradient must match the input's shape and dtype");
    if (x->dtype.bits == 32)
        backward_f32((const float *)tgnb_data(x), (const float *)tgnb_data(g), (float *)tgnb_data(grad_inputs[0]),
                     tgnb_numel(x));
    else
        backward_f64((const double *)tgnb_data(x), (const double *)tgnb_data(g), (double *)tgnb_data(grad_inputs[0]),
                     tgnb_numel(x));
    return 0;
}

static const tgnb_op gelu_tanh_op = {
    sizeof(tgnb_op), "fused::gelu_tanh", 1, 1, tgnb_shape_like_input0, gelu_forward, gelu_backward,
    "GELU (tanh approximation), forward and backward fused into one pass each",
};

static const tgnb_op *const ops[] = {&gelu_tanh_op};

static const tgnb_plugin plugin = {
    sizeof(tgnb_plugin), TGNB_ABI_MAJOR, TGNB_ABI_MINOR, "tgnb_fused_ops", TGNB_FUSED_OPS_VERSION,
    (int32_t)(sizeof ops / sizeof ops[0]), ops, tgnb_last_error,
};

TGNB_EXPORT const tgnb_plugin *tgnb_plugin_init(uint32_t host_abi_major, uint32_t host_abi_minor) {
    (void)host_abi_major; /* the host checks the versions; a plugin could refuse an old host by returning NULL */
    (void)host_abi_minor;
    return &plugin;
}
