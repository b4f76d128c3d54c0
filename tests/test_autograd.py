"""The autograd engine: accumulation, retain_graph, hooks, grad mode, deep graphs, version checks, custom ops."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import t64, to_np

import tinygrad_nb as tg
from tinygrad_nb import autograd


def test_gradients_accumulate_across_backward_calls() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert to_np(x.grad).tolist() == [3.0 + 2.0, 3.0 + 4.0]


def test_shared_subexpression_gets_summed_gradient() -> None:
    x = tg.tensor(2.0, requires_grad=True)
    y = x * x
    z = y + y * x  # dz/dx = 2x + 3x^2
    z.backward()
    assert x.grad.item() == 2 * 2 + 3 * 4


def test_second_backward_needs_retain_graph() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = to_np(x.grad).copy()
    y.backward()
    np.testing.assert_allclose(to_np(x.grad), 2 * first)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_backward_with_explicit_gradient_and_shape_errors() -> None:
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * 2).backward(tg.tensor([1.0, 0.0, -1.0]))
    assert to_np(x.grad).tolist() == [2.0, 0.0, -2.0]
    with pytest.raises(RuntimeError, match=r"grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match=r"grad has shape \(2,\) but the output has shape \(3,\)"):
        (x * 2).backward(tg.tensor([1.0, 1.0]))
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.tensor([1.0]).sum().backward()


def test_no_grad_context_and_decorator_and_enable_grad() -> None:
    x = tg.tensor([1.0], requires_grad=True)
    with tg.no_grad():
        y = x * 2
        assert not tg.is_grad_enabled()
        with tg.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn == "MulBackward"

    @tg.no_grad()
    def predict(t: tg.Tensor) -> tg.Tensor:
        return t * 5

    assert not predict(x).requires_grad
    assert tg.is_grad_enabled()
    with tg.set_grad_enabled(False):
        assert not (x + 1).requires_grad


def test_hundred_thousand_deep_chain_backward_is_iterative() -> None:
    x = tg.tensor([1.0, -1.0], dtype=tg.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1e-3
    y.sum().backward()
    assert to_np(x.grad).tolist() == [1.0, 1.0]
    assert y.numpy()[0] == pytest.approx(1.0 + 100.0)


def test_each_node_runs_after_all_its_consumers() -> None:
    # r uses a directly and through b; reached first as r's direct input, a must still wait for b's gradient.
    x = tg.tensor(1.5, dtype=tg.float64, requires_grad=True)
    a = x * 2
    b = a * 3
    r = a + b
    ran: list[Any] = []  # the nodes whose backward ran, in order (identified by their graph node)

    class Order:
        def op_begin(self, event: Any) -> None:
            if event.phase == "backward":
                ran.append(event.ctx)

        def op_end(self, event: Any) -> None:
            pass

    with tg.dispatch.add_observer(Order()):
        r.backward(retain_graph=True)
    assert ran == [r._ctx, b._ctx, a._ctx]
    x.grad = None
    r.backward()
    assert x.grad.item() == 2 + 6
    c = x * 1.0  # the same shape with the consumers listed the other way round
    d = c * 4
    (d + c).backward()
    assert x.grad.item() == 8 + 5


def test_hook_ids_count_per_tensor_and_are_never_reused() -> None:
    x = tg.tensor([1.0], requires_grad=True)
    h0, h1 = x.register_hook(lambda g: None), x.register_hook(lambda g: g * 2)
    assert (h0.id, h1.id) == (0, 1)
    h1.remove()
    h2 = x.register_hook(lambda g: g * 3)
    assert h2.id == 2
    h1.remove()  # a stale handle must not take off the newer hook
    (x * 1).sum().backward()
    assert x.grad.item() == 3.0
    assert tg.tensor([1.0], requires_grad=True).register_hook(lambda g: None).id == 0  # not a process-wide count


def test_tensor_hook_sees_and_replaces_gradient() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h1 = x.register_hook(lambda g: seen.append(to_np(g).tolist()))
    h2 = x.register_hook(lambda g: g * 10)
    (x * 3).sum().backward()
    assert seen == [[3.0, 3.0]]
    assert to_np(x.grad).tolist() == [30.0, 30.0]
    h1.remove()
    h2.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert seen == [[3.0, 3.0]] and to_np(x.grad).tolist() == [3.0, 3.0]


def test_hook_on_intermediate_tensor_and_with_form() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with y.register_hook(lambda g: g * 0):
        (y * y).sum().backward(retain_graph=True)
    assert to_np(x.grad).tolist() == [0.0, 0.0]
    x.grad = None
    (y * y).sum().backward()  # the hook left with the with-block
    assert to_np(x.grad).tolist() == [8.0, 16.0]


def test_register_hook_on_constant_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.tensor([1.0]).register_hook(lambda g: g)


def test_retain_grad_keeps_intermediate_gradient() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).retain_grad()
    (y * y).sum().backward()
    assert to_np(y.grad).tolist() == [4.0, 8.0]


def test_autograd_grad_returns_gradients_without_touching_dot_grad() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    w = tg.tensor([3.0, 4.0], requires_grad=True)
    loss = (x * w).sum()
    gx, gw = tg.grad(loss, [x, w])
    assert to_np(gx).tolist() == [3.0, 4.0] and to_np(gw).tolist() == [1.0, 2.0]
    assert x.grad is None and w.grad is None
    unused = tg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="was not used"):
        tg.grad((x * 2).sum(), [unused])
    assert tg.grad((x * 2).sum(), [x, unused], allow_unused=True)[1] is None


def test_inplace_on_saved_tensor_is_caught_at_backward() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = y * y  # saves y
    v0 = y.version
    y.add_(1)
    assert y.version == v0 + 1
    with pytest.raises(RuntimeError, match=r"Mul: a tensor of shape \(2,\) that this op saved for backward was "
                                           r"modified by an in-place operation after the op ran \(it is now at "
                                           r"version 1\)"):
        z.sum().backward()


@pytest.mark.parametrize("modify", ["add_", "setitem", "view_no_grad", "no_grad"])
def test_inplace_write_to_a_saved_output_or_through_a_view_is_refused(modify: str) -> None:
    # exp saves its own output; the write reaches that array by different routes
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    if modify == "add_":
        y.add_(1)  # y becomes the add's output; exp's node is reached through a copy of y's old value
    elif modify == "setitem":
        y[0] = 5.0
    elif modify == "view_no_grad":
        with tg.no_grad():
            y.reshape(2, 1).mul_(2)  # the view shares y's memory and version counter
    else:
        with tg.no_grad():
            y.add_(1)
    with pytest.raises(RuntimeError, match=r"Exp: a tensor of shape \(2,\) that this op saved for backward was "
                                           r"modified by an in-place operation after the op ran"):
        y.sum().backward()


@pytest.mark.parametrize("write, factor", [
    (lambda y: y[0:1].mul_(3), [[3.0, 3.0], [1.0, 1.0]]),
    (lambda y: y.reshape(4).mul_(3), [[3.0, 3.0], [3.0, 3.0]]),
    (lambda y: y.T.mul_(3), [[3.0, 3.0], [3.0, 3.0]]),
    (lambda y: y[:, 1:][0:1].mul_(3), [[1.0, 3.0], [1.0, 1.0]]),  # a view of a view
])
def test_inplace_through_a_view_rewrites_the_base_history(write: Any, factor: list[list[float]]) -> None:
    # as in PyTorch: the base becomes its old value with the view's part replaced, for values and gradients
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    before = y + 0  # recorded before the write: still sees the old y
    write(y)
    (y * y + before).sum().backward()
    f = np.array(factor)
    np.testing.assert_array_equal(to_np(y), f * to_np(x))
    np.testing.assert_array_equal(to_np(x.grad), 2 * f * f * to_np(x) + 1)  # d/dx (f x)^2 + x


def test_augmented_assignment_to_a_slice_matches_the_formula() -> None:
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    y[:, 0] += 1  # getitem, in-place add on the slice (a view), setitem back
    (y * y).sum().backward()
    assert to_np(y).tolist() == [[2.0, 2.0], [4.0, 4.0]]
    assert to_np(x.grad).tolist() == [[4.0, 4.0], [8.0, 8.0]]  # 2 y


def test_write_through_one_slice_is_seen_by_an_op_that_saved_another_slice() -> None:
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = tg.tensor([2.0, 2.0], requires_grad=True)
    y = x * 1
    b = y[0:2] * w  # saves the slice's memory to compute w's gradient
    y[0:2] += 1  # another slice object over the same memory
    with pytest.raises(RuntimeError, match=r"Mul: a tensor of shape \(2,\) that this op saved for backward was "
                                           r"modified by an in-place operation"):
        b.sum().backward()


def test_scaling_a_slice_by_itself_is_not_refused() -> None:
    # multiplying by a constant saves nothing the write overwrites (da reads only the constant), as in PyTorch
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    y[:, :1] += y[:, :1] * 0.5
    y[:, 1:] /= 2.0
    y.sum().backward()
    assert to_np(x.grad).tolist() == [[1.5, 0.5], [1.5, 0.5]]


def test_inplace_on_a_view_of_a_leaf_that_requires_grad_is_refused() -> None:
    w = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"in-place mul on a view of a leaf tensor of shape \(2, 2\) that "
                                           r"requires grad"):
        w[0].mul_(2)
    assert w.is_leaf and to_np(w).tolist() == [[1.0, 2.0], [3.0, 4.0]]  # refused before writing
    with tg.no_grad():
        w[0].mul_(2)  # parameter updates go here
    assert to_np(w)[0].tolist() == [2.0, 4.0]


def test_inplace_on_a_view_an_op_cannot_rewrite_is_refused() -> None:
    class Every(tg.Function):  # a user op whose output is a view of its input
        @staticmethod
        def forward(ctx: Any, a: Any) -> Any:
            return a[::1]

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g

    y = tg.tensor([1.0, 2.0], requires_grad=True) * 1
    with pytest.raises(RuntimeError, match=r"in-place mul on a tensor of shape \(2,\) that shares memory with an "
                                           r"input of Every, which cannot be rewritten under autograd"):
        Every.apply(y).mul_(2)


def test_inplace_write_before_an_op_ran_is_not_refused() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.add_(1)  # before z's op saves y
    z = y * y
    z.sum().backward()
    assert to_np(x.grad).tolist() == [4.0, 6.0]


def test_inplace_on_tensor_not_saved_is_differentiable() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x + 0  # Add saves nothing
    y.mul_(3)
    y.sum().backward()
    assert to_np(x.grad).tolist() == [3.0, 3.0]


def test_inplace_on_leaf_requiring_grad_is_refused() -> None:
    x = tg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        x.add_(1)
    with tg.no_grad():
        x.add_(1)  # allowed, like an optimizer update
    assert x.item() == 2.0


def test_setitem_is_differentiable() -> None:
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = tg.tensor(5.0, requires_grad=True)
    y = x * 1
    y[1] = v * 2
    (y * tg.tensor([1.0, 10.0, 100.0])).sum().backward()
    assert to_np(x.grad).tolist() == [1.0, 0.0, 100.0]
    assert v.grad.item() == 20.0


class Cube(tg.Function):
    """A user-defined op: out = x^3, d/dx = 3x^2."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return 3 * x * x * grad


class ScaledAdd(tg.Function):
    """Two tensor inputs and a plain number: out = a + alpha b."""

    @staticmethod
    def forward(ctx, a, b, alpha):  # type: ignore[no-untyped-def]
        ctx.alpha = alpha
        return a + alpha * b

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        return grad, ctx.alpha * grad, None


def test_custom_function_behaves_like_builtin(dev: str) -> None:
    x = t64([1.0, -2.0, 0.5], dev, requires_grad=True)
    y = Cube.apply(x)
    assert y.grad_fn == "CubeBackward" and y.device == x.device
    y.sum().backward()
    np.testing.assert_allclose(to_np(x.grad), 3 * np.array([1.0, -2.0, 0.5]) ** 2)
    assert tg.gradcheck(Cube.apply, [t64([0.3, -1.2], dev)])
    assert tg.gradcheck(lambda a, b: ScaledAdd.apply(a, b, 2.5), [t64([1.0, 2.0], dev), t64([3.0, 4.0], dev)])
    # A user backward that forgets to undo broadcasting is caught with the op, input and both shapes:
    with pytest.raises(RuntimeError, match=r"ScaledAdd.backward returned a gradient of shape \(2, 2\) for input 0, "
                                           r"which has shape \(2,\)"):
        ScaledAdd.apply(t64([1.0, 2.0], dev, True), t64([[3.0], [4.0]], dev), 2.5).sum().backward()


def test_engine_undoes_broadcasting_for_ops_that_declare_it(dev: str) -> None:
    class BroadcastAdd(tg.Function):
        broadcasts = True  # backward returns gradients in the output's shape; the engine sums them back

        @staticmethod
        def forward(ctx, a, b):  # type: ignore[no-untyped-def]
            return a + b

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            return grad * 2, grad * 3

    a = t64([1.0, 2.0, 3.0], dev, requires_grad=True)  # (3,) against (2, 1): output (2, 3)
    b = t64([[1.0], [2.0]], dev, requires_grad=True)
    BroadcastAdd.apply(a, b).sum().backward()
    np.testing.assert_array_equal(to_np(a.grad), [4.0, 4.0, 4.0])  # 2 summed over the 2 rows
    np.testing.assert_array_equal(to_np(b.grad), [[9.0], [9.0]])  # 3 summed over the 3 columns
    # A gradient that no broadcast explains is still the op's error:
    class WrongShape(BroadcastAdd):
        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            return grad[:, :2], None

    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape \(2, 2\) for input 0, "
                                           r"which has shape \(3,\)"):
        WrongShape.apply(t64([1.0, 2.0, 3.0], dev, True), b.detach()).sum().backward()


def test_gradcheck_catches_a_wrong_backward() -> None:
    class WrongSquare(tg.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            return grad * ctx.saved_tensors[0]  # missing the factor 2

    with pytest.raises(tg.GradcheckError, match=r"input 0 \(shape \(2,\)\) element \(0,\)"):
        tg.gradcheck(WrongSquare.apply, [t64([1.0, 2.0])])


def test_custom_function_with_wrong_number_of_gradients_is_explained() -> None:
    class Bad(tg.Function):
        @staticmethod
        def forward(ctx, a, b):  # type: ignore[no-untyped-def]
            return a + b

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            return grad

    x = tg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad.backward returned 1 gradient\(s\) but forward took 2 input\(s\)"):
        Bad.apply(x, x).sum().backward()


def test_matmul_shape_error_names_both_shapes() -> None:
    a, b = tg.zeros(32, 784), tg.zeros(10, 256)
    with pytest.raises(tg.ShapeError, match=r"^matmul: \(32, 784\) @ \(10, 256\): inner dimensions 784 and 10 differ$"):
        a @ b


def test_broadcast_error_names_op_and_shapes() -> None:
    with pytest.raises(tg.ShapeError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast together"):
        tg.zeros(2, 3) + tg.zeros(4)
    with pytest.raises(ValueError, match=r"mul: shapes \(5,\) and \(2, 4\) cannot be broadcast"):
        tg.zeros(5) * tg.zeros(2, 4)


def test_reshape_error_names_shapes() -> None:
    with pytest.raises(tg.ShapeError, match=r"^reshape: cannot view shape \(2, 3\) \(6 elements\) as \(4, 2\)$"):
        tg.zeros(2, 3).reshape(4, 2)


def test_graph_is_freed_after_backward() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert y._ctx is None or y._ctx.saved is autograd._FREED


def test_set_grad_enabled_restores_previous_mode() -> None:
    with tg.set_grad_enabled(False):
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    tg.set_grad_enabled(False)  # plain call form
    assert not tg.is_grad_enabled()
    tg.set_grad_enabled(True)
    assert tg.is_grad_enabled()
