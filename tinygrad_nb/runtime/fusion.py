"""Load-time fusion of ``Conv -> Relu -> MaxPool`` chains into one kernel (exact: no change of arithmetic order).

At batch 1 a small CNN's latency is mostly numpy calls and data movement, not arithmetic. The batch-1 convolution
(``Conv.bind_single``) computes its output over the *padded width*: a (O, Ho*Wp) product whose columns j >= Wo of
each row are junk. Unfused, it must write only the valid columns into a (O, Ho, Wo) output (a matmul batched over
the Ho rows, or one matmul and a strided copy), then Relu passes over that output and MaxPool over Relu's. Fused,
the padded-width result stays where it is:

1. im2col into the convolution's persistent columns (the same copy as ``Conv.bind_single``; with one input
   channel, from a zero-bordered padded image of its own, which the image's writer or the program's input copy
   fills: every row of the columns is then one long contiguous run of it, all rows one copy);
2. one matmul ``f = W_ext @ cols``, f of shape (O, Ho*Wp) (the bias rides as a row of ones, as in Conv);
3. ``t[p] = max(f[p + k] for k < kw)`` and ``v[p] = max(t[p + k*Wp] for k < kh)`` on flat contiguous slices
   (MaxPool's separable path with row length Wp instead of Wo: a window never reaches a junk column, since the
   windows tile the Wo valid columns);
4. one strided copy of the window starts into the output, then ``relu`` on it in place (when the output is
   contiguous; else relu on f before pooling).

``relu(max(window)) == max(relu(window))`` for every input, NaN included (np.maximum propagates NaN both ways), and
max is exact, so the only arithmetic is the matmul's: the fused kernel's reference at batch 1 runs these same steps
(like Conv's), so first and planned calls agree to the bit. At every other shape (batch > 1, a pooling that is not
separable, weights that are not constants) the Session runs and plans the three original nodes (``unfused``):
the same bits, steps and memory plan as the unfused graph. (The kernel's own general path, the three kernels
through a scratch buffer, serves direct calls only.)
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .kernels import Conv, Kernel, MaxPool, Relu, Step, _interior, _same_view, zeros_like_shape


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
        if self.fast(inputs):  # the convolution's (persistent columns, padded input), then f and t (and the image)
            x, w = inputs[0], inputs[1]
            specs = self.conv.scratch(inputs, [self.conv_output(x, w)])
            hp, wp = self.padded_width(inputs)
            kh, kw = self.conv.parts(x, w)[0]
            size = w.shape[0] * self.conv.parts(x, w)[-1][0] * wp
            specs = specs + [((size,), x.dtype, False)] * 2
            if self.conv.direct(x):  # the padded image, flat, with room for the last taps' overrun (zeros)
                specs.append((((hp + kh - 1) * wp + kw - 1,), x.dtype, True))
            return specs
        c, conv_specs, pool_specs = self.parts_of(inputs)
        return conv_specs + [(c.shape, c.dtype, False)] + pool_specs

    def padded_width(self, inputs: list[Any]) -> tuple[int, int]:
        x, w = inputs[0], inputs[1]
        kernel, strides, dilations, pads, ends, out = self.conv.parts(x, w)
        return self.conv.padded_shape(x.shape, pads, ends)[2:]

    def writes_strided(self, inputs: list[Any], outputs: list[np.ndarray]) -> bool:
        if self.fast(inputs):
            return True  # ends with one copy (and a relu on f, not on the output, when the output is strided)
        c = self.conv_output(inputs[0], inputs[1])
        return self.pool.writes_strided([c], [self.pool_output(c)])

    def input_target(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        x, w = inputs[0], inputs[1]
        count = len(self.conv.scratch(inputs, [self.conv_output(x, w)]))
        if self.fast(inputs) and self.conv.direct(x):
            return self.image_view(inputs, scratch[count + 2])
        return self.conv.input_target(inputs, scratch[:count])

    def image_view(self, inputs: list[Any], image: np.ndarray) -> np.ndarray:
        """The (1, 1, H, W) interior of the one-input-channel path's flat padded image (rows of length Wp)."""
        x, w = inputs[0], inputs[1]
        pads = self.conv.parts(x, w)[3]
        wp = self.padded_width(inputs)[1]
        it = image.itemsize
        return np.lib.stride_tricks.as_strided(image[pads[0] * wp + pads[1]:], shape=x.shape,
                                               strides=(image.nbytes, image.nbytes, wp * it, it))

    def persistent_init(self, index: int, buffer: np.ndarray) -> Step:
        # the scratch list is the convolution's buffers, then (f, t, the flat padded image) or (the conv's output,
        # the pooling's buffers); the Program asks right after bind, which recorded which path it bound
        if index < self.conv_scratch_count:
            return self.conv.persistent_init(index, buffer)
        if self.bound_fast:
            return lambda: buffer.fill(0)  # the padded image's border and overrun
        return self.pool.persistent_init(index - self.conv_scratch_count - 1, buffer)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        x, w = inputs[0], inputs[1]
        self.conv_scratch_count = len(self.conv.scratch(inputs, [self.conv_output(x, w)]))
        self.bound_fast = self.fast(inputs)
        if self.bound_fast:
            return self.bind_fused(inputs, outputs[0], scratch)
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

    def bind_fused(self, inputs: list[Any], o: np.ndarray, scratch: list[np.ndarray]) -> Step:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        conv = self.conv
        kernel, strides, dilations, pads, ends, out = conv.parts(x, w)
        hp, wp = self.padded_width(inputs)
        kh, kw = kernel
        ho = hp - kh + 1
        c = x.shape[1]
        k = c * kh * kw
        it = x.itemsize
        n = self.conv_scratch_count
        cols, f, t = scratch[0], scratch[n], scratch[n + 1]
        wg = conv.extended_weight(w, b, 1, k)[0]  # (O, K + 1): the bias as the last column
        steps: list[Step] = []
        if conv.direct(x):  # one input channel: no im2col of a (C, Hp, Wp) image, see below
            # Row (ki, kj) of the columns holds the flat padded image from ki*Wp + kj on (as in Conv.bind_direct),
            # so with the padded image in its own zero-bordered buffer, all rows are one copy of long contiguous
            # runs (a strided copy of the image into each row would be kh*kw*H short runs)
            image = scratch[n + 2]
            image.fill(0)  # persistent: the border (and the overrun the last taps read) stays zero
            cols[-1].fill(1)
            inner = self.image_view(inputs, image)
            if not _same_view(inner, x):  # else x's writer (or the program's input copy) writes it there
                steps.append(partial(np.copyto, inner, x))
            base = (kh - 1) * wp + kw - 1
            length = cols.shape[1]
            positions = ho * wp
            rows = np.lib.stride_tricks.as_strided(cols.reshape(-1)[base:], shape=(kh, kw, positions),
                                                   strides=(kw * length * it, length * it, it))
            shifted = np.lib.stride_tricks.as_strided(image, shape=(kh, kw, positions), strides=(wp * it, it, it),
                                                      writeable=False)
            steps.append(partial(np.copyto, rows, shifted))
            columns = cols[:, base:base + ho * wp]
        else:  # im2col over the padded width (see Conv.bind_single)
            padded = scratch[1] if n > 1 else x
            if padded is x and not x.flags.c_contiguous:
                raise self.fail("internal: the batch-1 convolution needs a contiguous input")
            if padded is not x:
                padded.fill(conv.fill)  # persistent: only the interior is written on each call
                inner = _interior(padded, pads, x.shape)
                if not _same_view(inner, x):  # else x's writer writes into the interior (Kernel.input_target)
                    steps.append(partial(np.copyto, inner, x))
            cols.fill(1)  # persistent: the last row (ones) carries the bias
            wo = wp - kw + 1
            span = (ho - 1) * wp + wo
            pflat = padded.reshape(-1)
            windows = np.lib.stride_tricks.as_strided(pflat, shape=(c, kh, kw, span),
                                                      strides=(hp * wp * it, wp * it, it, it), writeable=False)
            target = cols[:k, :span].reshape((c, kh, kw, span), copy=False)
            steps.append(partial(np.copyto, target, windows))
            columns = cols
        o_channels = w.shape[0]
        full = f.reshape(o_channels, ho * wp)
        steps.append(_out(np.matmul, wg, columns, full))
        contiguous_out = o.flags.c_contiguous
        if not contiguous_out:  # relu before pooling, on the contiguous f (relu and max commute exactly)
            zeros_f = zeros_like_shape(f.shape, f.dtype)
            steps.append(_out(np.maximum, f, zeros_f, f))
        # separable pooling over rows of length wp (MaxPool.bind_separable, batch-1 variant)
        pkernel, pstrides = self.pool.parts(self.conv_output(x, w))[:2]
        ph, pw = pkernel
        size = f.size
        src = f
        if pw > 1:
            m1 = size - (pw - 1)
            head_t = t[:m1]
            steps.append(_out(np.maximum, f[:m1], f[1:1 + m1], head_t))
            steps += [_out(np.maximum, head_t, f[j:j + m1], head_t) for j in range(2, pw)]
            src, size = t, m1
        if ph > 1:
            m2 = size - (ph - 1) * wp
            dst = f if src is t else t  # f is free once t holds the row maxima
            head_v = dst[:m2]
            steps.append(_out(np.maximum, src[:m2], src[wp:wp + m2], head_v))
            steps += [_out(np.maximum, head_v, src[j * wp:j * wp + m2], head_v) for j in range(2, ph)]
            src = dst
        picked = np.lib.stride_tricks.as_strided(src, shape=o.shape,
                                                 strides=(o_channels * ho * wp * it, ho * wp * it,
                                                          pstrides[0] * wp * it, pw * it), writeable=False)
        steps.append(partial(np.copyto, o, picked))
        if contiguous_out:
            o_flat = o.reshape(-1)
            zeros_o = zeros_like_shape(o_flat.shape, o.dtype)
            steps.append(_out(np.maximum, o_flat, zeros_o, o_flat))
        return _sequence(steps)


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


def fuse(nodes: list[Any], output_names: list[str]) -> list[Any]:
    """``nodes`` with every ``Conv -> Relu -> MaxPool`` chain whose intermediates have no other reader (and are not
    graph outputs) replaced by one :class:`ConvReluMaxPool` node (same inputs as the Conv, same output as the
    MaxPool)."""
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            if name:
                readers[name] = readers.get(name, 0) + 1
    producer = {o: i for i, node in enumerate(nodes) for o in node.outputs if o}
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
    return [replaced.get(i, node) for i, node in enumerate(nodes) if i not in dropped]
