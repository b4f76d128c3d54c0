/*
 * tgnb_plugin.h - the binary plugin ABI of tinygrad_nb, version 1.0 (clean C99, no other header needed).
 *
 * A plugin is a shared library that exports one function:
 *
 *     const tgnb_plugin *tgnb_plugin_init(uint32_t host_abi_major, uint32_t host_abi_minor);
 *
 * It returns a pointer to a table (static storage, valid until the library is unloaded) describing the plugin and
 * its ops, or NULL to refuse the host. Tensors cross the boundary as DLPack DLTensors (the struct below is DLPack's
 * layout, so numpy, cupy, PyTorch and JAX arrays map onto it without copies).
 *
 * Versioning rules (see extensions/c_abi/ABI.md; the host tests every one of them):
 *   1. abi_major must equal the host's major; otherwise the host refuses the plugin with a message naming both
 *      versions. A major bump may change or remove anything.
 *   2. A minor bump may only ADD fields at the END of a struct. Every versioned struct starts with struct_size
 *      (sizeof the struct as the plugin compiled it): the host reads only the fields that lie inside struct_size and
 *      treats the missing ones as absent (NULL / 0). A plugin built for a newer minor therefore loads in an older
 *      host (the new fields are ignored), and an older plugin loads in a newer host.
 *   3. Fields are never reordered, resized or re-purposed within one major version.
 *   4. Strings are NUL-terminated UTF-8 with static storage duration.
 *   5. Every callback returns 0 on success and non-zero on failure; after a failure the host calls last_error()
 *      on the same thread and raises a Python exception carrying that message. Callbacks must not abort, exit or
 *      longjmp out, and must be safe to call from several threads at once (the host releases the GIL).
 */
#ifndef TGNB_PLUGIN_H
#define TGNB_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version this header describes. TGNB_ABI_MAJOR may be predefined only by the host's own tests (to build a plugin
 * that claims a future major version and check that it is refused); plugins must not define it. */
#ifndef TGNB_ABI_MAJOR
#define TGNB_ABI_MAJOR 1
#endif
#ifndef TGNB_ABI_MINOR
#define TGNB_ABI_MINOR 0
#endif

/* The largest ndim a shape function may report (the host provides output shape buffers of this length). */
#define TGNB_MAX_NDIM 32

/* Symbol visibility for the one exported function. */
#if defined(_WIN32)
#define TGNB_EXPORT __declspec(dllexport)
#else
#define TGNB_EXPORT __attribute__((visibility("default")))
#endif

/* ---- DLPack (v0.8 layout; defined here so that no DLPack header is needed) ------------------------------------ */
#ifndef DLPACK_VERSION
typedef enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 } DLDeviceType;
typedef enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6 } DLDataTypeCode;

typedef struct {
    int32_t device_type; /* a DLDeviceType */
    int32_t device_id;
} DLDevice;

typedef struct {
    uint8_t code;   /* a DLDataTypeCode */
    uint8_t bits;   /* 32 for float32 */
    uint16_t lanes; /* 1 */
} DLDataType;

typedef struct {
    void *data;           /* for kDLCPU: the address of element 0 minus byte_offset */
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;       /* ndim entries */
    int64_t *strides;     /* in elements; NULL means compact row-major (C-contiguous) */
    uint64_t byte_offset;
} DLTensor;
#endif

/* ---- callbacks ---------------------------------------------------------------------------------------------------
 * In ABI 1.x the host passes CPU tensors (device_type kDLCPU) that are C-contiguous; strides may be NULL.
 * Outputs and gradients are allocated by the host (C-contiguous, shape and dtype from the shape function, or the
 * matching input for gradients); kernels write every element of them and must not keep the pointers after returning.
 */

/* Fill outputs[i]->ndim, ->shape[0..ndim) (a host buffer of TGNB_MAX_NDIM entries) and ->dtype from the inputs'
 * metadata. Must not read inputs[i]->data (it may be NULL) and must be a pure function of the metadata: the host
 * caches its answers per input shapes and dtypes. */
typedef int32_t (*tgnb_shape_fn)(const DLTensor *const *inputs, int32_t n_inputs,
                                 DLTensor *const *outputs, int32_t n_outputs);

/* Compute outputs from inputs. Inputs are read-only. */
typedef int32_t (*tgnb_forward_fn)(const DLTensor *const *inputs, int32_t n_inputs,
                                   DLTensor *const *outputs, int32_t n_outputs);

/* Vector-Jacobian product: given d(loss)/d(outputs) and the forward's inputs, write d(loss)/d(inputs). */
typedef int32_t (*tgnb_backward_fn)(const DLTensor *const *grad_outputs, int32_t n_outputs,
                                    const DLTensor *const *inputs, int32_t n_inputs,
                                    DLTensor *const *grad_inputs);

/* The message of the calling thread's last failed callback (static or thread-local storage). */
typedef const char *(*tgnb_error_fn)(void);

/* ---- the tables ------------------------------------------------------------------------------------------------ */
typedef struct tgnb_op {
    uint32_t struct_size;      /* sizeof(tgnb_op) as the plugin compiled it: rule 2 */
    const char *name;          /* "namespace::name", e.g. "fused::gelu_tanh" */
    int32_t n_inputs;          /* tensor inputs, >= 1 */
    int32_t n_outputs;         /* 1 in ABI 1.x (the host refuses other values) */
    tgnb_shape_fn shape;       /* required */
    tgnb_forward_fn forward;   /* required */
    tgnb_backward_fn backward; /* NULL: the op is not differentiable */
    const char *doc;           /* one line; may be NULL */
    /* ABI 1.1+ fields go here, after every 1.0 field. */
} tgnb_op;

typedef struct tgnb_plugin {
    uint32_t struct_size;      /* sizeof(tgnb_plugin) as the plugin compiled it: rule 2 */
    uint32_t abi_major;        /* TGNB_ABI_MAJOR the plugin was compiled against: rule 1 */
    uint32_t abi_minor;        /* TGNB_ABI_MINOR the plugin was compiled against */
    const char *name;          /* the plugin's name, e.g. "tgnb_fused_ops" */
    const char *version;       /* the plugin's own version string */
    int32_t n_ops;
    const tgnb_op *const *ops; /* n_ops pointers (pointers, so each op struct carries its own struct_size) */
    tgnb_error_fn last_error;  /* required */
    /* ABI 1.1+ fields go here, after every 1.0 field. */
} tgnb_plugin;

typedef const tgnb_plugin *(*tgnb_plugin_init_fn)(uint32_t host_abi_major, uint32_t host_abi_minor);

/* ---- optional helpers for plugin authors (static: each plugin gets its own copy) ------------------------------- */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define TGNB_THREAD_LOCAL _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define TGNB_THREAD_LOCAL __thread
#elif defined(_MSC_VER)
#define TGNB_THREAD_LOCAL __declspec(thread)
#else
#define TGNB_THREAD_LOCAL /* no thread-local storage: the error message is shared by all threads */
#endif

/* Number of elements of a tensor. */
static inline int64_t tgnb_numel(const DLTensor *t) {
    int64_t n = 1;
    int32_t i;
    for (i = 0; i < t->ndim; ++i) n *= t->shape[i];
    return n;
}

/* Non-zero when t has the given DLPack type code and bit width (lanes 1). */
static inline int tgnb_is_dtype(const DLTensor *t, uint8_t code, uint8_t bits) {
    return t->dtype.code == code && t->dtype.bits == bits && t->dtype.lanes == 1;
}

/* Address of element 0 (data + byte_offset). */
static inline void *tgnb_data(const DLTensor *t) { return (char *)t->data + t->byte_offset; }

/* A shape function for elementwise ops: the output has input 0's shape and dtype. */
static inline int32_t tgnb_shape_like_input0(const DLTensor *const *inputs, int32_t n_inputs,
                                             DLTensor *const *outputs, int32_t n_outputs) {
    int32_t i;
    (void)n_inputs;
    (void)n_outputs;
    outputs[0]->ndim = inputs[0]->ndim;
    for (i = 0; i < inputs[0]->ndim; ++i) outputs[0]->shape[i] = inputs[0]->shape[i];
    outputs[0]->dtype = inputs[0]->dtype;
    return 0;
}

#if defined(__GNUC__) || defined(__clang__)
#define TGNB_MAYBE_UNUSED __attribute__((unused))
#else
#define TGNB_MAYBE_UNUSED
#endif

/* TGNB_DEFINE_ERRORS() defines, once per plugin, a thread-local message buffer, tgnb_fail(message) (stores the message
 * and returns 1, so `return tgnb_fail("...")` reports an error) and tgnb_last_error (for tgnb_plugin.last_error). */
#define TGNB_DEFINE_ERRORS()                                                                  \
    static TGNB_THREAD_LOCAL char tgnb_error_buffer_[512];                                   \
    static TGNB_MAYBE_UNUSED int32_t tgnb_fail(const char *message) {                        \
        size_t i = 0;                                                                         \
        for (; message[i] != '\0' && i + 1 < sizeof tgnb_error_buffer_; ++i)                 \
            tgnb_error_buffer_[i] = message[i];                                               \
        tgnb_error_buffer_[i] = '\0';                                                         \
        return 1;                                                                             \
    }                                                                                         \
    static TGNB_MAYBE_UNUSED const char *tgnb_last_error(void) { return tgnb_error_buffer_; }

#ifdef __cplusplus
}
#endif
#endif /* TGNB_PLUGIN_H */
