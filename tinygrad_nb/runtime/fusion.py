"""Load-time fusion: ``Conv -> Relu -> MaxPool`` chains into one kernel (exact: no change of arithmetic order), and
``Reshape/Flatten -> Gemm`` of a Linear layer into one matrix-vector product (:class:`FlattenGemm`).

At batch 1 a small CNN's latency is mostly numpy calls and data movement, not arithmetic. The batch-1 convolution
(``Conv.bind_single``) computes its output over the *padded width*: a (O, Ho*Wp) product whose columns j >= Wo of
each row are junk. Unfused, it must write only the valid columns into a (O, Ho, Wo) output (a matmul batched over
the Ho rows, or one matmul and a strided copy), then Relu passes over that output and MaxPool over Relu's. Fused,
the padded-width result stays where it is:

1. im2col into persistent contiguous columns from the flat padded input (see ``ConvReluMaxPool.flat_layout``: one
   zero column per row serves as the right padding of a row and the left padding of the next, so rows are
   W + max(left, right) long); the input's writer (the previous block, or the program's input copy) writes the
   padded input's interior, and every row of the columns is one long contiguous run of it, all rows one copy;
2. one product ``f = W_ext @ cols`` (np.dot), f of shape (O, Ho*Wp) (the bias rides as a row of ones, as in Conv);
3. ``t[p] = max(f[p + k] for k < kw)`` and ``v[p] = max(t[p + k*Wp] for k < kh)`` on flat contiguous slices
   (MaxPool's separable path with row length Wp instead of Wo: a window never reaches a junk column, since the
   windows tile the Wo valid columns);
4. one strided copy of the window starts into the output, then ``relu`` in place on the output when it is
   contiguous, or on the whole zero-bordered padded input of the next convolution when the output is that
   buffer's interior (``bind_zero_bordered``: zeros stay zeros), else on f before pooling.

The usual six numpy calls run in one closure (:func:`_six_calls`). ``relu(max(window)) == max(relu(window))`` for
every input, NaN included (np.maximum propagates NaN both ways), and max is exact, so the only arithmetic is the
product's: the fused kernel's reference at batch 1 runs these same steps (like Conv's), so first and planned calls
agree to the bit. At every other shape (batch > 1, a pooling that is not separable, weights that are not
constants) the Session runs and plans the three original nodes (``unfused``): the same bits, steps and memory plan
as the unfused graph. (The kernel's own general path, the three kernels through a scratch buffer, serves direct
calls only.)
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .kernels import Conv, Flatten, Gemm, Kernel, MaxPool, Relu, Reshape, Step, _same_view, zeros_like_shape


class ConvReluMaxPool(Kernel):
    """``MaxPool(Relu(Conv(x, w, b)))`` as one step (see the module docstring); built by :func:`fuse`."""

    allocates = False
    unfused: list[Any] | None = None  # the three nodes, which the Session runs at shapes without the fused path
    conv_scratch_count = 0
    bound_fast = False

    def __init__(self, conv: Conv, relu: Relu, pool: MaxPool):
        self.conv, self.relu, self.pool = conv, relu, pool
        super().__init__("Conv+Relu+MaxPool", {}, conv.opset, f"{conv.name}+{relu.name}+{pool.name}", 1)

    # the Session sets these on the fused node: they are the convolution's inputs
    @property
    def static_inputs(self) -> list[bool]:  # type: ignore[override]
        return self.conv.static_inputs

    @static_inputs.setter
    def static_inputs(self, value: list[bool]) -> None:
        self.conv.static_inputs = value
        self.relu.static_inputs = self.pool.static_inputs = [False]

    @property
    def shape_inputs(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.conv.shape_inputs

    # -- shapes and paths -------------------------------------------------------------------------------------
    def conv_output(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """An (uninitialised) array of the convolution's output shape: what the pooling kernel's methods look at."""
        out = self.conv.parts(x, w)[-1]
        return np.empty((x.shape[0], w.shape[0]) + tuple(out), dtype=x.dtype)

    def fast(self, inputs: list[Any]) -> bool:
        """The fused batch-1 path: the convolution's own batch-1 path with constant weights, a separable pooling."""
        x, w = inputs[0], inputs[1]
        if not (self.conv.all_static((1, 2)) and w.dtype == x.dtype and x.dtype.kind == "f"
                and self.conv.single(x, w)):
            return False
        return self.pool.separable(self.conv_output(x, w)) and self.pool.outputs == 1

    def parts_of(self, inputs: list[Any]) -> tuple[np.ndarray, list[tuple[tuple[int, ...], Any, bool]],
                                                   list[tuple[tuple[int, ...], Any, bool]]]:
        """The general path's convolution output, and the convolution's and pooling's scratch specs."""
        x, w = inputs[0], inputs[1]
        c = self.conv_output(x, w)
        return c, self.conv.scratch(inputs, [c]), self.pool.scratch([c], [self.pool_output(c)])

    def pool_output(self, c: np.ndarray) -> np.ndarray:
        out = self.pool.parts(c)[-1]
        return np.empty(c.shape[:2] + tuple(out), dtype=c.dtype)

    # -- the kernel -------------------------------------------------------------------------------------------
    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        if self.fast(inputs):  # run bind's own steps, so that the first call and the planned calls agree
            x, w = inputs[0], inputs[1]
            o = self.pool_output(self.conv_output(x, w))
            scratch = [np.empty(shape, dtype) for shape, dtype, _ in self.scratch(inputs, [o])]
            self.bind(list(inputs), [o], scratch)()
            return [o]
        c = self.conv.ref(inputs)[0]
        r = self.relu.ref([c])[0]
        del c  # (freed before the pooling allocates, as an unfused run would)
        return self.pool.ref([r])

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        if self.fast(inputs):  # the columns and the flat padded input (persistent), f and t (and the padded image)
            x, w = inputs[0], inputs[1]
            specs = self.conv.scratch(inputs, [self.conv_output(x, w)])
            hp, ws, lead = self.flat_layout(inputs)
            kh, kw = self.conv.parts(x, w)[0]
            ho = hp - kh + 1
            specs[0] = ((x.shape[1] * kh * kw + 1, ho * ws), x.dtype, True)  # contiguous (not Conv.bind_direct's)
            if len(specs) > 1:  # the padded input, flat (see flat_layout)
                specs[1] = ((x.shape[1] * hp * ws + kw - 1,), x.dtype, True)
            specs = specs + [((w.shape[0] * ho * ws,), x.dtype, False)] * 2
            if self.conv.direct(x):  # the padded image, flat
                specs.append(((hp * ws + kw - 1,), x.dtype, True))
            return specs
        c, conv_specs, pool_specs = self.parts_of(inputs)
        return conv_specs + [(c.shape, c.dtype, False)] + pool_specs

    def flat_layout(self, inputs: list[Any]) -> tuple[int, int, int]:
        """(Hp, row stride, lead) of the fused path's flat padded input: channel planes of Hp rows, each row the W
        values and then ``row stride - W`` zeros, the planes after ``lead`` zeros; value (c, a, b) is at
        ``lead + (c*Hp + top + a)*stride + b``. One run of zeros serves as the right padding of a row and the left
        padding of the next (a tap left of column 0 reads the previous row's tail), so the stride is
        W + max(left, right) instead of W + left + right: 1/15 junk columns instead of 2/16 for the small CNN's
        second convolution, whose product and pooling then cover 6% fewer columns. (The plain padded layout when
        the output would be wider than that stride.) Tap (c, ki, kj) of output (i, j) is element
        (c*Hp + i + ki)*stride + j + kj: the im2col rows are runs of the flat buffer, as in Conv.bind_single."""
        x, w = inputs[0], inputs[1]
        kernel, strides, dilations, pads, ends, out = self.conv.parts(x, w)
        hp, wp = self.conv.padded_shape(x.shape, pads, ends)[2:]
        ws = x.shape[3] + max(pads[1], ends[1])
        if out[1] > ws:
            ws = wp
        return hp, ws, pads[1]

    def interior(self, inputs: list[Any], flat: np.ndarray) -> np.ndarray:
        """The (1, C, H, W) view of the input's values in a flat padded buffer (see flat_layout)."""
        x, w = inputs[0], inputs[1]
        top = self.conv.parts(x, w)[3][0]
        hp, ws, lead = self.flat_layout(inputs)
        it = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat[lead + top * ws:], shape=x.shape,
                                               strides=(flat.nbytes, hp * ws * it, ws * it, it))

    def writes_strided(self, inputs: list[Any], outputs: list[np.ndarray]) -> bool:
        if self.fast(inputs):
            return True  # ends with one copy (and a relu on f, not on the output, when the output is strided)
        c = self.conv_output(inputs[0], inputs[1])
        return self.pool.writes_strided([c], [self.pool_output(c)])

    def padded_buffer(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        """The fused path's flat padded input (the padded image of the one-channel path), or None."""
        x, w = inputs[0], inputs[1]
        count = len(self.conv.scratch(inputs, [self.conv_output(x, w)]))
        if not self.fast(inputs):
            return None
        if self.conv.direct(x):
            return scratch[count + 2]
        return scratch[1] if count > 1 else None

    def input_target(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        if not self.fast(inputs):
            count = len(self.conv.scratch(inputs, [self.conv_output(inputs[0], inputs[1])]))
            return self.conv.input_target(inputs, scratch[:count])
        flat = self.padded_buffer(inputs, scratch)
        return None if flat is None else self.interior(inputs, flat)

    def input_target_buffer(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        """The flat zero-bordered buffer :meth:`input_target` lies in (see ``Conv.input_target_buffer``)."""
        if not self.fast(inputs):
            count = len(self.conv.scratch(inputs, [self.conv_output(inputs[0], inputs[1])]))
            return self.conv.input_target_buffer(inputs, scratch[:count])
        return self.padded_buffer(inputs, scratch)  # zeros but for the interior

    def persistent_init(self, index: int, buffer: np.ndarray) -> Step:
        # the scratch list is the convolution's buffers, then (f, t, the flat padded image) or (the conv's output,
        # the pooling's buffers); the Program asks right after bind, which recorded which path it bound
        if index < self.conv_scratch_count:
            return self.conv.persistent_init(index, buffer)
        if self.bound_fast:
            return lambda: buffer.fill(0)  # the padded image's border and overrun
        return self.pool.persistent_init(index - self.conv_scratch_count - 1, buffer)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        return self.bind_zero_bordered(inputs, outputs, scratch, None)

    def bind_zero_bordered(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray],
                           border: np.ndarray | None) -> Step:
        """:meth:`bind`, where ``outputs[0]`` is the interior of ``border``: a flat persistent buffer whose every
        other element stays +0 (the next convolution's padded input, see ``Conv.input_target_buffer``). The fused
        batch-1 path then runs its relu over that contiguous buffer (zeros stay zeros) instead of over the 4x
        larger convolution result (relu on the strided output itself would make numpy allocate a buffer)."""
        x, w = inputs[0], inputs[1]
        self.conv_scratch_count = len(self.conv.scratch(inputs, [self.conv_output(x, w)]))
        self.bound_fast = self.fast(inputs)
        if self.bound_fast:
            return self.bind_fused(inputs, outputs[0], scratch, border)
        c, conv_specs, pool_specs = self.parts_of(inputs)
        n = len(conv_specs)
        buffer = scratch[n]
        conv = self.conv.bind(inputs, [buffer], scratch[:n])
        relu = self.relu.bind([buffer], [buffer], [])
        pool = self.pool.bind([buffer], outputs, scratch[n + 1:])
        self.allocates = self.conv.allocates or self.pool.allocates

        def conv_relu_pool() -> None:
            conv()
            relu()
            pool()
        return conv_relu_pool

    def bind_fused(self, inputs: list[Any], o: np.ndarray, scratch: list[np.ndarray],
                   border: np.ndarray | None = None) -> Step:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        conv = self.conv
        kernel, strides, dilations, pads, ends, out = conv.parts(x, w)
        hp, wp, lead = self.flat_layout(inputs)  # (wp: the row stride of the flat layout)
        kh, kw = kernel
        ho = hp - kh + 1
        c = x.shape[1]
        k = c * kh * kw
        it = x.itemsize
        n = self.conv_scratch_count
        cols, f, t = scratch[0], scratch[n], scratch[n + 1]
        wg = conv.extended_weight(w, b, 1, k)[0]  # (O, K + 1): the bias as the last column
        copies: list[tuple[np.ndarray, np.ndarray]] = []  # (target, source), in order
        positions = ho * wp
        if conv.direct(x):  # one input channel: the padded image in a buffer of its own
            padded = scratch[n + 2]
        else:
            padded = scratch[1] if n > 1 else x
            if padded is x and not x.flags.c_contiguous:
                raise self.fail("internal: the batch-1 convolution needs a contiguous input")
        if padded is not x:
            padded.fill(conv.fill)  # persistent: the padding (and the last taps' overrun) stays zero
            inner = self.interior(inputs, padded)
            if not _same_view(inner, x):  # else x's writer (or the program's input copy) writes it there
                copies.append((inner, x))
        cols.fill(0)  # persistent: the last row (ones) carries the bias; the tail past the copied runs stays 0
        cols[-1].fill(1)
        # Row (c, ki, kj) of the columns is the flat padded input from (c*Hp + ki)*Wp + kj on (see flat_layout):
        # all rows are one copy of long contiguous runs. With one channel the positions past the last valid one
        # read the zeros after the image; with more, the copy stops at the last valid position of each row
        if conv.direct(x):
            rows = cols[:k].reshape((kh, kw, positions), copy=False)
            shifted = np.lib.stride_tricks.as_strided(padded, shape=(kh, kw, positions), strides=(wp * it, it, it),
                                                      writeable=False)
            copies.append((rows, shifted))
        else:
            wo = out[1]
            span = (ho - 1) * wp + wo  # the positions any valid output reads
            pflat = padded.reshape(-1)
            windows = np.lib.stride_tricks.as_strided(pflat, shape=(c, kh, kw, span),
                                                      strides=(hp * wp * it, wp * it, it, it), writeable=False)
            target = cols[:k, :span].reshape((c, kh, kw, span), copy=False)
            copies.append((target, windows))
        o_channels = w.shape[0]
        full = f.reshape(o_channels, ho * wp)
        if not cols.flags.c_contiguous:
            raise self.fail("internal: the fused convolution's columns must be contiguous")
        # relu once, where it is cheapest: on the contiguous output; on the zero-bordered buffer the output is the
        # interior of (relu keeps its zeros: 2-3x fewer elements than f); else on f before pooling
        if o.flags.c_contiguous:
            relu_last: np.ndarray | None = o.reshape(-1)
        elif border is not None and _inside(o, border):
            relu_last = border
        else:
            relu_last = None
        # separable pooling over rows of length wp (MaxPool.bind_separable, batch-1 variant)
        pkernel, pstrides = self.pool.parts(self.conv_output(x, w))[:2]
        ph, pw = pkernel
        maxima: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # np.maximum(a, b, out=o)
        size = f.size
        src = f
        if pw > 1:
            m1 = size - (pw - 1)
            head_t = t[:m1]
            maxima.append((f[:m1], f[1:1 + m1], head_t))
            maxima += [(head_t, f[j:j + m1], head_t) for j in range(2, pw)]
            src, size = t, m1
        if ph > 1:
            m2 = size - (ph - 1) * wp
            dst = f if src is t else t  # f is free once t holds the row maxima
            head_v = dst[:m2]
            maxima.append((src[:m2], src[wp:wp + m2], head_v))
            maxima += [(head_v, src[j * wp:j * wp + m2], head_v) for j in range(2, ph)]
            src = dst
        picked = np.lib.stride_tricks.as_strided(src, shape=o.shape,
                                                 strides=(o_channels * ho * wp * it, ho * wp * it,
                                                          pstrides[0] * wp * it, pw * it), writeable=False)
        if len(copies) == 1 and len(maxima) == 2:  # the usual case: six numpy calls, no Python frame between them
            return _six_calls(copies[0], wg, cols, full, maxima, (o, picked), relu_last, f)
        steps: list[Step] = [partial(np.copyto, target, source) for target, source in copies]
        steps.append(_out(np.dot, wg, cols, full))
        if relu_last is None:  # relu before pooling, on the contiguous f (relu and max commute exactly)
            steps.append(_out(np.maximum, f, zeros_like_shape(f.shape, f.dtype), f))
        steps += [_out(np.maximum, a, b_, out_) for a, b_, out_ in maxima]
        steps.append(partial(np.copyto, o, picked))
        if relu_last is not None:
            steps.append(_out(np.maximum, relu_last, zeros_like_shape(relu_last.shape, o.dtype), relu_last))
        return _sequence(steps)


def _inside(a: np.ndarray, buffer: np.ndarray) -> bool:
    """True when every element of the view ``a`` lies in the contiguous 1-d ``buffer``."""
    if not buffer.flags.c_contiguous or buffer.ndim != 1 or a.size == 0:
        return False
    start = buffer.__array_interface__["data"][0]
    first = a.__array_interface__["data"][0]
    low = first + sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s < 0)
    high = first + sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s > 0) + a.itemsize
    return start <= low and high <= start + buffer.nbytes


def _six_calls(copy: tuple[np.ndarray, np.ndarray], wg: np.ndarray, cols: np.ndarray, full: np.ndarray,
               maxima: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pick: tuple[np.ndarray, np.ndarray],
               relu_last: np.ndarray | None, f: np.ndarray) -> Step:
    """The fused batch-1 kernel's usual six numpy calls in one closure (im2col, the product, relu, two maxima, the
    strided copy out): at ~0.5 us per numpy call on these small arrays, a Python frame per call would cost ~10%.
    The copies are ``target[...] = source`` (cheaper to call than np.copyto; the same copy)."""
    set_target, source = copy[0].__setitem__, copy[1]
    (a1, b1, t1), (a2, b2, t2) = maxima
    set_out, picked = pick[0].__setitem__, pick[1]
    dot, maximum = np.dot, np.maximum
    if relu_last is not None:
        r, zeros = relu_last, zeros_like_shape(relu_last.shape, relu_last.dtype)

        def conv_relu_pool() -> None:
            set_target(Ellipsis, source)
            dot(wg, cols, full)
            maximum(a1, b1, out=t1)
            maximum(a2, b2, out=t2)
            set_out(Ellipsis, picked)
            maximum(r, zeros, out=r)
        return conv_relu_pool
    zeros_f = zeros_like_shape(f.shape, f.dtype)

    def conv_relu_pool_early() -> None:  # relu on f, before the pooling
        set_target(Ellipsis, source)
        dot(wg, cols, full)
        maximum(f, zeros_f, out=f)
        maximum(a1, b1, out=t1)
        maximum(a2, b2, out=t2)
        set_out(Ellipsis, picked)
    return conv_relu_pool_early


class FlattenGemm(Kernel):
    """``Gemm(Reshape(x) or Flatten(x), W, C)`` of a Linear layer (transB, alpha = beta = 1, constant W and C) as
    one step at batch 1: ``[W C] @ [x; 1]``, one matrix-vector product with the bias as the weight's last column
    and a persistent 1 after the flattened input in a buffer of the kernel's own. The input's writer (a fused
    convolution block, or the program's input copy) writes straight into that buffer (``input_target``), so the
    step is one numpy call instead of the product and a bias add. Built by :func:`fuse`; at every other shape the
    Session runs the two original nodes (``unfused``). The folded bias rounds like one more product term, so the
    batch-1 result may differ from the unfused graph's in the last bit; the first (reference) call runs this same
    step, so first and planned calls agree to the bit."""

    allocates = False
    unfused: list[Any] | None = None
    bound_fast = False

    def __init__(self, flatten: Kernel, gemm: Gemm, extra: int):
        self.flatten, self.gemm, self.extra = flatten, gemm, extra  # extra: the Reshape's shape input (1) or none
        super().__init__("Flatten+Gemm", {}, gemm.opset, f"{flatten.name}+{gemm.name}", 1)

    # the fused node's inputs: x, W, C, then the Reshape's shape
    @property
    def static_inputs(self) -> list[bool]:  # type: ignore[override]
        return self.flatten.static_inputs[:1] + self.gemm.static_inputs[1:] + self.flatten.static_inputs[1:]

    @static_inputs.setter
    def static_inputs(self, value: list[bool]) -> None:
        self.gemm.static_inputs = [False] + list(value[1:3])
        self.flatten.static_inputs = [value[0]] + list(value[3:])

    @property
    def shape_inputs(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(3 + i - 1 for i in self.flatten.shape_inputs)

    def split(self, inputs: list[Any]) -> tuple[list[Any], list[Any]]:
        """The Reshape's (or Flatten's) inputs and the Gemm's, the flattened x in place of the Gemm's first."""
        flat_inputs = [inputs[0]] + list(inputs[3:3 + self.extra])
        flat = self.flatten.ref(flat_inputs)[0]
        return flat_inputs, [flat] + list(inputs[1:3])

    def fast(self, inputs: list[Any]) -> bool:
        x, w = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        if c is None or not self.gemm.all_static((1, 2)) or any(self.gemm.attrs.get(a, 1.0) != 1.0
                                                                 for a in ("alpha", "beta")):
            return False
        flat = self.split(inputs)[1][0]  # (transB and no transA: checked by fuse)
        return (flat.ndim == 2 and flat.shape[0] == 1 and w.ndim == 2 and w.flags.c_contiguous
                and flat.shape[1] == w.shape[1] and c.size == w.shape[0] and x.dtype == w.dtype == c.dtype
                and x.dtype.kind == "f")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        if self.fast(inputs):  # run bind's own step, so that the first call and the planned calls agree
            o = np.empty((1, inputs[1].shape[0]), inputs[0].dtype)
            scratch = [np.empty(shape, dtype) for shape, dtype, _ in self.scratch(inputs, [o])]
            for buffer in scratch:
                buffer.fill(self.persistent_fill(buffer.dtype))
            self.bind(list(inputs), [o], scratch)()
            return [o]
        return self.gemm.ref(self.split(inputs)[1])

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        if self.fast(inputs):  # the flattened input followed by a 1 (persistent)
            return [((inputs[0].size + 1,), inputs[0].dtype, True)]
        return self.gemm.scratch(self.split(inputs)[1], outputs)

    def persistent_fill(self, dtype: np.dtype) -> Any:
        return 1  # the last element; the others are rewritten on every call

    def input_target(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        if not self.fast(inputs) or not scratch:
            return None
        x = inputs[0]
        return scratch[0][:x.size].reshape(x.shape)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        self.bound_fast = self.fast(inputs)
        if not self.bound_fast:  # (direct calls only: the Session runs the two nodes at these shapes)
            flat_inputs, gemm_inputs = self.split(inputs)
            return self.gemm.bind(gemm_inputs, outputs, scratch)
        x, w, c = inputs[0], inputs[1], inputs[2]
        (o,) = outputs
        extended = scratch[0]
        extended[-1] = 1
        weight = np.ascontiguousarray(np.concatenate([w, c.reshape(-1, 1)], axis=1))  # (N, K + 1)
        row = o.reshape(-1)
        dot = np.dot
        inner = extended[:x.size].reshape(x.shape)
        if _same_view(inner, x):  # x's writer (or the program's input copy) writes it there
            return lambda: dot(weight, extended, row)
        set_inner = inner.__setitem__

        def flatten_gemm() -> None:
            set_inner(Ellipsis, x)
            dot(weight, extended, row)
        return flatten_gemm


def _out(fn: Any, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Step:
    """``fn(a, b, out=out)`` as a step: the function and arrays are the lambda's own locals (no global or
    attribute lookup per call, which at ~1 us per numpy call on small arrays is worth the few percent)."""
    return lambda fn=fn, a=a, b=b, out=out: fn(a, b, out=out)


def _sequence(steps: list[Step]) -> Step:
    """One closure that runs ``steps`` (unrolled for the usual 6 or 7, to spare the loop)."""
    if len(steps) == 6:
        s0, s1, s2, s3, s4, s5 = steps

        def conv_relu_pool6() -> None:
            s0()
            s1()
            s2()
            s3()
            s4()
            s5()
        return conv_relu_pool6

    def conv_relu_pool() -> None:
        for step in steps:
            step()
    return conv_relu_pool


def _readers_and_producers(nodes: list[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """How many nodes read each value, and the index of the node that writes it."""
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            if name:
                readers[name] = readers.get(name, 0) + 1
    producer = {o: i for i, node in enumerate(nodes) for o in node.outputs if o}
    return readers, producer


def fuse(nodes: list[Any], output_names: list[str]) -> list[Any]:
    """``nodes`` with every ``Conv -> Relu -> MaxPool`` chain whose intermediates have no other reader (and are not
    graph outputs) replaced by one :class:`ConvReluMaxPool` node (same inputs as the Conv, same output as the
    MaxPool)."""
    readers, producer = _readers_and_producers(nodes)
    outputs = set(output_names)
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for i, node in enumerate(nodes):
        pool = node.kernel
        if type(pool) is not MaxPool or len([o for o in node.outputs if o]) != 1 or not node.inputs:
            continue
        r = node.inputs[0]
        j = producer.get(r)
        if j is None or type(nodes[j].kernel) is not Relu or readers.get(r) != 1 or r in outputs:
            continue
        c = nodes[j].inputs[0] if nodes[j].inputs else ""
        k = producer.get(c)
        if (k is None or type(nodes[k].kernel) is not Conv or len(nodes[k].outputs) != 1 or readers.get(c) != 1
                or c in outputs or k in dropped or j in dropped):
            continue
        conv_node = nodes[k]
        fused = ConvReluMaxPool(conv_node.kernel, nodes[j].kernel, pool)
        fused.unfused = [conv_node, nodes[j], type(node)(pool, list(node.inputs), [node.outputs[0]])]
        replaced[i] = type(node)(fused, list(conv_node.inputs), [node.outputs[0]])
        dropped.update((k, j))
    # the fused node takes the pooling's place: every input of the Conv is computed before the Conv, hence before it
    nodes = [replaced.get(i, node) for i, node in enumerate(nodes) if i not in dropped]
    return _fuse_flatten_gemm(nodes, output_names)


def _fuse_flatten_gemm(nodes: list[Any], output_names: list[str]) -> list[Any]:
    """``nodes`` with every ``Reshape or Flatten -> Gemm`` pair (the Gemm the only reader of the flattened value,
    which is not a graph output; a bias; no transA, alpha or beta) replaced by one :class:`FlattenGemm` node."""
    readers, producer = _readers_and_producers(nodes)
    outputs = set(output_names)
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for i, node in enumerate(nodes):
        gemm = node.kernel
        if (type(gemm) is not Gemm or len(node.inputs) < 3 or not node.inputs[2] or gemm.attrs.get("transA", 0)
                or not gemm.attrs.get("transB", 0) or gemm.attrs.get("alpha", 1.0) != 1.0
                or gemm.attrs.get("beta", 1.0) != 1.0):
            continue
        a = node.inputs[0]
        j = producer.get(a)
        if (j is None or j in dropped or type(nodes[j].kernel) not in (Reshape, Flatten) or readers.get(a) != 1
                or a in outputs):
            continue
        flat_node = nodes[j]
        extra = list(flat_node.inputs[1:2]) if type(flat_node.kernel) is Reshape else []
        fused = FlattenGemm(flat_node.kernel, gemm, len(extra))
        fused.unfused = [flat_node, node]
        replaced[i] = type(node)(fused, [flat_node.inputs[0]] + list(node.inputs[1:3]) + extra, [node.outputs[0]])
        dropped.add(j)
    # the fused node takes the Gemm's place: the Reshape's input is computed before the Reshape, hence before it
    return [replaced.get(i, node) for i, node in enumerate(nodes) if i not in dropped]
