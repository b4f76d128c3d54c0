"""tinygrad_nb.nn: Module machinery, layers, losses and init.

Values are checked against hand-written numpy formulas, gradients against finite differences (``tg.gradcheck`` in
float64) and, when PyTorch is installed, both against PyTorch with identical weights loaded through ``state_dict``.
"""
from __future__ import annotations

import copy
import math
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from helpers import t64, to_np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_nb as tg
from tinygrad_nb import dispatch, nn
from tinygrad_nb.nn import functional as F
from tinygrad_nb.nn import init

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- helpers ---------------------------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, dtype: Any = None):
        super().__init__()
        self.fc1 = nn.Linear(4, 8, dtype=dtype)
        self.bn = nn.BatchNorm1d(8, dtype=dtype)
        self.fc2 = nn.Linear(8, 3, dtype=dtype)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.fc2(self.bn(self.fc1(x)).relu())


def call_with(module: nn.Module, params: dict[str, tg.Tensor], *args: Any) -> Any:
    """Run ``module`` with some parameters temporarily replaced by the given tensors (so gradcheck can perturb
    them), like ``torch.func.functional_call``."""
    saved = {}
    for name, value in params.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        saved[name] = (owner, leaf, owner._parameters[leaf])
        owner._parameters[leaf] = value
    try:
        return module(*args)
    finally:
        for owner, leaf, original in saved.values():
            owner._parameters[leaf] = original


def gradcheck_module(module: nn.Module, inputs: Sequence[tg.Tensor]) -> bool:
    """gradcheck through a float64 module with respect to its inputs and every parameter."""
    names = [name for name, _ in module.named_parameters()]
    values = [t64(p.numpy()) for _, p in module.named_parameters()]
    n = len(inputs)

    def fn(*args: tg.Tensor) -> tg.Tensor:
        return call_with(module, dict(zip(names, args[n:])), *args[:n])

    return tg.gradcheck(fn, list(inputs) + values)


def rand64(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape)


class OpRecorder:
    """A dispatch observer that records the names of the forward ops run while it is attached."""

    def __init__(self) -> None:
        self.ops: list[str] = []

    def op_begin(self, event: dispatch.OpEvent) -> None:
        if event.phase == "forward":
            self.ops.append(event.op)

    def op_end(self, event: dispatch.OpEvent) -> None:
        pass


# -- Parameter --------------------------------------------------------------------------------------------------------
def test_parameter_is_a_leaf_tensor_requiring_grad_and_shares_memory() -> None:
    base = tg.zeros(2, 3)
    p = nn.Parameter(base)
    assert isinstance(p, tg.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.shape == (2, 3)
    base.data[0, 0] = 5.0
    assert p.numpy()[0, 0] == 5.0  # Parameter(tensor) shares memory, as in PyTorch
    frozen = nn.Parameter(tg.zeros(2), requires_grad=False)
    assert not frozen.requires_grad
    assert isinstance(p * 2, tg.Tensor) and not isinstance(p * 2, nn.Parameter)


def test_parameter_repr() -> None:
    p = nn.Parameter(tg.tensor([1.0, 2.0]))
    assert repr(p) == ("Parameter containing:\n"
                       "tensor([1., 2.], shape=(2,), dtype=float32, device=cpu, requires_grad=True)")


def test_parameter_keeps_the_device_of_its_tensor(dev: str) -> None:
    p = nn.Parameter(tg.ones(3, device=dev))
    assert p.device == tg.Device(dev)


# -- registration and iteration ---------------------------------------------------------------------------------------
def test_attributes_register_parameters_buffers_and_children() -> None:
    model = MLP()
    assert [n for n, _ in model.named_parameters()] == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                                                         "fc2.weight", "fc2.bias"]
    assert [n for n, _ in model.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in model.named_children()] == ["fc1", "bn", "fc2"]
    assert [n for n, _ in model.named_modules()] == ["", "fc1", "bn", "fc2"]
    assert list(model.children())[0] is model.fc1
    assert len(list(model.modules())) == 4
    assert [n for n, _ in model.named_parameters(prefix="net", recurse=False)] == []
    assert [n for n, _ in model.fc1.named_parameters(prefix="net")] == ["net.weight", "net.bias"]
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())


def test_plain_tensor_attribute_is_not_a_parameter_and_none_reserves_a_name() -> None:
    layer = nn.Linear(3, 2, bias=False)
    layer.scale = tg.ones(2)  # a plain tensor: just an attribute
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert layer.bias is None
    assert "bias" not in layer.state_dict()
    layer.bias = nn.Parameter(tg.zeros(2))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.weight = nn.Parameter(tg.ones(2, 3))  # replacing keeps the order (state dict keys stay stable)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]


def test_shared_parameters_and_modules_are_listed_once() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]
    # state_dict keeps every name, as PyTorch does (both point at the same memory)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_registration_errors() -> None:
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        layer.weight = tg.zeros(2, 2)
    with pytest.raises(KeyError, match='buffer name must not contain ".", got "a.b"'):
        layer.register_buffer("a.b", tg.zeros(1))
    with pytest.raises(KeyError, match="attribute 'weight' already exists"):
        layer.register_buffer("weight", tg.zeros(1))
    with pytest.raises(TypeError, match="cannot assign 'int' object to buffer 'count'"):
        layer.register_buffer("count", 3)
    with pytest.raises(TypeError, match="is not a Module subclass"):
        layer.add_module("child", tg.zeros(1))
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'wieght'"):
        _ = layer.wieght

    class Forgetful(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(2, 2)  # before super().__init__()

    with pytest.raises(AttributeError, match=r"cannot assign module before Module.__init__\(\) call"):
        Forgetful()


def test_buffers_persistent_and_not_and_delattr() -> None:
    module = nn.Module()
    module.register_buffer("kept", tg.ones(2))
    module.register_buffer("scratch", tg.zeros(2), persistent=False)
    assert [n for n, _ in module.named_buffers()] == ["kept", "scratch"]
    assert list(module.state_dict()) == ["kept"]
    module.kept = tg.full((2,), 3.0)  # assigning a tensor to a buffer name replaces the buffer
    assert module.state_dict()["kept"].tolist() == [3.0, 3.0]
    del module.kept
    assert [n for n, _ in module.named_buffers()] == ["scratch"]


def test_forward_missing_message() -> None:
    with pytest.raises(NotImplementedError, match='Module \\[Module\\] is missing the required "forward"'):
        nn.Module()(tg.zeros(1))


# -- modes, gradients, apply ------------------------------------------------------------------------------------------
def test_train_eval_propagate_to_every_submodule() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="mode is expected to be a bool"):
        model.train("no")


def test_zero_grad_requires_grad_and_apply() -> None:
    model = MLP()
    model(tg.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    seen: list[str] = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "BatchNorm1d", "Linear", "MLP"]  # children first, then the module itself


# -- devices and dtypes -----------------------------------------------------------------------------------------------
def test_to_dtype_keeps_parameter_objects_and_casts_grads() -> None:
    model = MLP()
    params = list(model.parameters())
    model(tg.randn(5, 4)).sum().backward()
    versions = [p.version for p in params]
    assert model.double() is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.dtype == tg.float64 and p.grad.dtype == tg.float64 for p in params)
    assert all(p.version == v + 1 for p, v in zip(params, versions))
    assert model.bn.running_mean.dtype == tg.float64
    assert model.bn.num_batches_tracked.dtype == tg.int64  # integer buffers are never cast
    assert model(t64(np.ones((5, 4)))).dtype == tg.float64
    model.float()
    assert all(p.dtype == tg.float32 for p in params)
    with pytest.raises(TypeError, match="only accepts floating point dtypes, but got int64"):
        model.to(tg.int64)


def test_module_to_device_moves_in_place(dev: str) -> None:
    model = MLP()
    params = list(model.parameters())
    x = tg.randn(5, 4)
    expected = to_np(model(x))
    model(x).sum().backward()
    model.to(dev)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.device == tg.Device(dev) and p.grad.device == tg.Device(dev) for p in params)
    assert all(b.device == tg.Device(dev) for b in model.buffers())
    out = model(x.to(dev))
    assert out.device == tg.Device(dev)
    model.zero_grad()
    out.sum().backward()
    assert all(p.grad.device == tg.Device(dev) for p in params)
    model.eval()
    np.testing.assert_allclose(to_np(model.cpu()(x)), to_np(model(x)))
    assert expected.shape == (5, 3)


def test_layers_give_the_same_values_on_every_device(dev: str) -> None:
    tg.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(12, 5), nn.LayerNorm(5))
    x = tg.randn(2, 2, 4, 4)
    target = tg.tensor([1, 4])
    reference = F.cross_entropy(model(x), target)
    reference.backward()
    cpu_grads = [to_np(p.grad) for p in model.parameters()]
    model.zero_grad()
    model.to(dev)
    loss = F.cross_entropy(model(x.to(dev)), target.to(dev))
    loss.backward()
    np.testing.assert_allclose(loss.item(), reference.item(), rtol=1e-6)
    for p, g in zip(model.parameters(), cpu_grads):
        np.testing.assert_allclose(to_np(p.grad), g, rtol=1e-5, atol=1e-7)


def test_deepcopy_and_pickle_give_independent_working_models() -> None:
    model = MLP()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone.fc1.weight is not model.fc1.weight and isinstance(clone.fc1.weight, nn.Parameter)
        np.testing.assert_array_equal(to_np(clone.fc1.weight), to_np(model.fc1.weight))
        clone(tg.randn(3, 4)).sum().backward()
        assert clone.fc1.weight.grad is not None and model.fc1.weight.grad is None


# -- state dict -------------------------------------------------------------------------------------------------------
def test_state_dict_keys_values_and_sharing() -> None:
    model = MLP()
    state = model.state_dict()
    assert isinstance(state, OrderedDict)
    assert list(state) == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                           "bn.num_batches_tracked", "fc2.weight", "fc2.bias"]
    assert all(not t.requires_grad and not isinstance(t, nn.Parameter) for t in state.values())
    assert np.shares_memory(state["fc1.weight"].numpy(), model.fc1.weight.numpy())
    assert state["fc1.weight"].version == model.fc1.weight.version  # shared counter: checkpoints see updates
    assert model.state_dict(keep_vars=True)["fc1.weight"] is model.fc1.weight
    assert list(model.fc1.state_dict(prefix="encoder.")) == ["encoder.weight", "encoder.bias"]


def test_state_dict_round_trip_is_byte_for_byte() -> None:
    tg.manual_seed(3)
    model = MLP()
    model(tg.randn(6, 4)).sum().backward()  # updates the batch-norm buffers
    with tg.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    state = model.state_dict()
    other = MLP()
    params_before = list(other.parameters())
    result = other.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    loaded = other.state_dict()
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype
        assert loaded[key].numpy().tobytes() == value.numpy().tobytes(), key
    assert [id(p) for p in other.parameters()] == [id(p) for p in params_before]
    assert not np.shares_memory(other.fc1.weight.numpy(), model.fc1.weight.numpy())  # values are copied


def test_load_state_dict_bumps_versions_and_accepts_arrays() -> None:
    model = nn.Linear(3, 2)
    versions = [p.version for p in model.parameters()]
    model.load_state_dict({"weight": np.ones((2, 3)), "bias": [1.0, 2.0]})
    assert [p.version for p in model.parameters()] == [v + 1 for v in versions]
    assert model.weight.dtype == tg.float32 and model.weight.numpy().sum() == 6.0
    assert model.bias.tolist() == [1.0, 2.0]


def test_load_state_dict_strict_errors_list_missing_and_unexpected_keys() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    state = model.state_dict()
    del state["0.bias"]
    state["0.extra"] = tg.zeros(1)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    assert isinstance(info.value, KeyError)
    assert str(info.value) == ('Error(s) in loading state_dict for Sequential:\n'
                               '    Missing key(s) in state_dict: "0.bias".\n'
                               '    Unexpected key(s) in state_dict: "0.extra".')
    weight_before = model[0].weight.numpy().copy()
    state["0.weight"] = tg.ones(2, 3)
    result = model.load_state_dict(state, strict=False)
    assert result == nn.IncompatibleKeys(missing_keys=["0.bias"], unexpected_keys=["0.extra"])
    assert result.missing_keys == ["0.bias"]
    assert model[0].weight.numpy().sum() == 6.0 and weight_before.sum() != 6.0


def test_load_state_dict_shape_mismatch_names_key_and_shapes_and_copies_nothing() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    bias_before = model[0].bias.numpy().copy()
    state = {"0.weight": tg.zeros(2, 4), "0.bias": tg.zeros(2)}
    with pytest.raises(ValueError, match=r"size mismatch for 0\.weight: copying a param with shape \(2, 4\) from "
                                         r"checkpoint, the shape in current model is \(2, 3\)"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model[0].bias.numpy(), bias_before)


def test_load_state_dict_across_devices(dev: str) -> None:
    source = MLP()
    target = MLP().to(dev)
    target.load_state_dict(source.state_dict())
    assert all(p.device == tg.Device(dev) for p in target.parameters())
    np.testing.assert_array_equal(to_np(target.fc2.weight), to_np(source.fc2.weight))


def test_load_state_dict_does_not_modify_callers_dict() -> None:
    model = nn.Linear(2, 2)
    state = model.state_dict()
    keys = list(state)
    model.load_state_dict(state, versions={"": 0})
    assert list(state) == keys


# -- layout versions ------------------------------------------------------------------------------------------------
class RenamedLinear(nn.Module):
    """Version 2 renamed the parameter ``w`` (version 1) to ``weight``."""

    _version = 2

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(tg.zeros(2, 2))

    def _upgrade_state_dict(self, state_dict: dict[str, Any], prefix: str, saved_version: int) -> None:
        if saved_version < 2 and prefix + "w" in state_dict:
            state_dict[prefix + "weight"] = state_dict.pop(prefix + "w")


def test_module_versions_and_upgrade_hook_renames_keys() -> None:
    model = nn.Sequential(nn.Linear(2, 2), RenamedLinear())
    assert model.module_versions() == {"": 1, "0": 1, "1": 2}
    old_checkpoint = {"0.weight": tg.ones(2, 2), "0.bias": tg.ones(2), "1.w": tg.full((2, 2), 7.0)}
    with pytest.raises(KeyError, match='Missing key\\(s\\) in state_dict: "1.weight"'):
        model.load_state_dict(old_checkpoint)  # without versions there is no upgrade
    model.load_state_dict(old_checkpoint, versions={"": 1, "0": 1, "1": 1})
    assert model[1].weight.numpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert "1.w" in old_checkpoint  # the caller's dict is untouched
    # saved with the current version: no upgrade, so the old key is unexpected
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "1.w"'):
        model.load_state_dict(old_checkpoint, versions={"": 1, "0": 1, "1": 2})


# -- hooks --------------------------------------------------------------------------------------------------------
def test_forward_pre_hook_and_forward_hook_see_and_replace_values() -> None:
    layer = nn.Linear(3, 2)
    x = tg.randn(4, 3)
    calls: list[tuple[str, Any]] = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        calls.append(("pre", args))
        return (args[0] * 2,)

    def post(module: nn.Module, args: tuple[Any, ...], output: tg.Tensor) -> tg.Tensor:
        calls.append(("post", (args, output)))
        return output + 1

    h1 = layer.register_forward_pre_hook(pre)
    h2 = layer.register_forward_hook(post)
    out = layer(x)
    plain = to_np(x) * 2 @ to_np(layer.weight).T + to_np(layer.bias)
    np.testing.assert_allclose(to_np(out), plain + 1, rtol=1e-6)
    assert calls[0][0] == "pre" and calls[0][1][0] is x
    assert calls[1][0] == "post"
    np.testing.assert_allclose(to_np(calls[1][1][0][0]), to_np(x) * 2)  # the forward hook sees the new args
    h1.remove()
    h2.remove()
    h2.remove()  # removing twice is harmless
    np.testing.assert_allclose(to_np(layer(x)), to_np(F.linear(x, layer.weight, layer.bias)))
    assert len(calls) == 2


def test_hook_handles_work_as_context_managers() -> None:
    layer = nn.ReLU()
    seen: list[int] = []
    with layer.register_forward_hook(lambda m, a, o: seen.append(1)):
        layer(tg.ones(2))
    layer(tg.ones(2))
    assert seen == [1]


def test_full_backward_hook_receives_grad_input_and_grad_output() -> None:
    class Scale(nn.Module):
        def forward(self, a: tg.Tensor, b: tg.Tensor, factor: float) -> tuple[tg.Tensor, tg.Tensor]:
            return a * b * factor, a + b

    module = Scale()
    record: list[tuple[Any, Any]] = []

    def hook(m: nn.Module, grad_input: tuple[Any, ...], grad_output: tuple[Any, ...]) -> None:
        record.append((grad_input, grad_output))

    module.register_full_backward_hook(hook)
    a = t64([1.0, 2.0], requires_grad=True)
    b = t64([3.0, 4.0])  # no gradient wanted
    prod, total = module(a, b, 3.0)
    (prod.sum() * 2 + (total * total).sum()).backward()
    assert len(record) == 1
    grad_input, grad_output = record[0]
    assert len(grad_input) == 3 and grad_input[1] is None and grad_input[2] is None  # one entry per argument
    np.testing.assert_allclose(to_np(grad_output[0]), [2.0, 2.0])
    np.testing.assert_allclose(to_np(grad_output[1]), [8.0, 12.0])  # 2 * (a + b)
    np.testing.assert_allclose(to_np(grad_input[0]), [2 * 3 * 3 + 8, 2 * 4 * 3 + 12])
    np.testing.assert_allclose(to_np(a.grad), to_np(grad_input[0]))


def test_full_backward_hook_can_replace_grad_input_with_many_inputs() -> None:
    class Mix(nn.Module):
        def forward(self, a: tg.Tensor, b: tg.Tensor) -> tg.Tensor:
            return (a * b).sum()

    module = Mix()
    module.register_full_backward_hook(lambda m, gi, go: (gi[0] * 10, None))
    a = t64([1.0, 2.0], requires_grad=True)
    b = t64([3.0, 5.0], requires_grad=True)
    (module(a, b) * 2).backward()
    np.testing.assert_allclose(to_np(a.grad), [60.0, 100.0])  # 10 * 2 * b
    assert b.grad is None


def test_full_backward_hook_fires_when_no_input_needs_grad_and_removal_stops_it() -> None:
    layer = nn.Linear(3, 2, dtype=tg.float64)
    seen: list[tuple[Any, Any]] = []
    handle = layer.register_full_backward_hook(lambda m, gi, go: seen.append((gi, go)))
    layer(t64(np.ones((4, 3)))).sum().backward()
    assert len(seen) == 1 and seen[0][0] == (None,)
    np.testing.assert_allclose(to_np(seen[0][1][0]), np.ones((4, 2)))
    assert layer.weight.grad is not None
    handle.remove()
    layer(t64(np.ones((4, 3)))).sum().backward()
    assert len(seen) == 1


def test_backward_hook_on_a_sequential_child_matches_manual_chain_rule() -> None:
    model = nn.Sequential(nn.Linear(3, 4, dtype=tg.float64), nn.Tanh(), nn.Linear(4, 1, dtype=tg.float64))
    grads: dict[str, np.ndarray] = {}

    def hook(m: nn.Module, gi: tuple[Any, ...], go: tuple[Any, ...]) -> None:
        grads["in"], grads["out"] = to_np(gi[0]), to_np(go[0])

    model[1].register_full_backward_hook(hook)
    x = t64(rand64(2, 3))
    model(x).sum().backward()
    hidden = to_np(x) @ to_np(model[0].weight).T + to_np(model[0].bias)
    grad_out = np.ones((2, 1)) @ to_np(model[2].weight)
    np.testing.assert_allclose(grads["out"], grad_out)
    np.testing.assert_allclose(grads["in"], grad_out * (1 - np.tanh(hidden) ** 2))


def test_call_without_hooks_goes_straight_to_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = nn.Linear(2, 2)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the hook path ran without hooks")

    monkeypatch.setattr(nn.Module, "_call_with_hooks", fail)
    assert layer(tg.ones(1, 2)).shape == (1, 2)
    with layer.register_forward_hook(lambda m, a, o: None), pytest.raises(AssertionError, match="hook path"):
        layer(tg.ones(1, 2))


def test_linear_forward_is_one_fused_op() -> None:
    layer = nn.Linear(4, 3)
    recorder = OpRecorder()
    with dispatch.add_observer(recorder):
        layer(tg.ones(2, 4))
    assert recorder.ops == ["Linear"]


# -- repr ----------------------------------------------------------------------------------------------------------
def test_repr_of_nested_modules() -> None:
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(),
                          nn.Sequential(nn.Dropout(0.2), nn.Linear(256, 10, bias=False)))
    assert repr(model) == ("Sequential(\n"
                           "  (0): Linear(in_features=784, out_features=256, bias=True)\n"
                           "  (1): ReLU()\n"
                           "  (2): Sequential(\n"
                           "    (0): Dropout(p=0.2)\n"
                           "    (1): Linear(in_features=256, out_features=10, bias=False)\n"
                           "  )\n"
                           ")")
    assert repr(MLP()).startswith("MLP(\n  (fc1): Linear(in_features=4, out_features=8, bias=True)\n"
                                  "  (bn): BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True, "
                                  "track_running_stats=True)\n")


def test_layer_reprs() -> None:
    assert repr(nn.Conv2d(1, 8, 3, padding=1)) == "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert repr(nn.LayerNorm(5)) == "LayerNorm((5,), eps=1e-05, elementwise_affine=True)"
    assert repr(nn.Embedding(10, 3, padding_idx=0)) == "Embedding(10, 3, padding_idx=0)"
    assert repr(nn.GRUCell(5, 4)) == "GRUCell(5, 4)"
    assert repr(nn.RNNCell(5, 4, nonlinearity="relu")) == "RNNCell(5, 4, nonlinearity='relu')"
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1)"
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_reprs_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    pairs = [
        (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Tanh())),
         torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Tanh()))),
        (nn.Conv2d(3, 6, (3, 5), stride=2, padding=1, bias=False),
         torch.nn.Conv2d(3, 6, (3, 5), stride=2, padding=1, bias=False)),
        (nn.Embedding(9, 2, padding_idx=1), torch.nn.Embedding(9, 2, padding_idx=1)),
        (nn.GRUCell(3, 2, bias=False), torch.nn.GRUCell(3, 2, bias=False)),
        (nn.GELU(), torch.nn.GELU()),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


# -- containers -----------------------------------------------------------------------------------------------------
def test_sequential_indexing_slicing_and_mutation() -> None:
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    model = nn.Sequential(a, b, c)
    assert len(model) == 3 and model[0] is a and model[-1] is c
    assert list(model) == [a, b, c]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    x = tg.randn(4, 2)
    np.testing.assert_allclose(to_np(model(x)), to_np(c(b(a(x)))))
    model.append(nn.Sigmoid())
    assert len(model) == 4 and [n for n, _ in model.named_children()] == ["0", "1", "2", "3"]
    model[1] = nn.Tanh()
    assert isinstance(model[1], nn.Tanh) and [n for n, _ in model.named_children()] == ["0", "1", "2", "3"]
    del model[1]
    assert [type(m).__name__ for m in model] == ["Linear", "Linear", "Sigmoid"]
    assert [n for n, _ in model.named_children()] == ["0", "1", "2"]
    with pytest.raises(IndexError, match="index 5 is out of range for 3 module"):
        model[5]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    assert isinstance(named[1], nn.ReLU)


def test_module_list_and_module_dict_register_their_members() -> None:
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and len(list(layers.parameters())) == 8
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    assert layers[-1].out_features == 1 and len(layers[1:]) == 3
    layers.extend([nn.ReLU()])
    assert isinstance(list(layers)[-1], nn.ReLU)
    heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "reg": nn.Linear(4, 1)})
    heads["aux"] = nn.Linear(4, 2)
    assert list(heads) == ["cls", "reg", "aux"] and "reg" in heads and len(heads) == 3
    assert [n for n, _ in heads.named_parameters()][-1] == "aux.bias"
    assert heads.pop("reg").out_features == 1 and list(heads.keys()) == ["cls", "aux"]
    with pytest.raises(NotImplementedError, match="ModuleList"):
        layers(tg.ones(2))


def test_identity_and_flatten() -> None:
    x = tg.randn(2, 3, 4)
    assert nn.Identity(5, whatever=1)(x) is x
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)


# -- init -------------------------------------------------------------------------------------------------------------
def test_calculate_gain() -> None:
    assert init.calculate_gain("linear") == 1.0 and init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def test_init_functions_bounds_and_statistics() -> None:
    w = nn.Parameter(tg.zeros(400, 300))  # requires grad: init must work anyway (no_grad inside)
    assert init.kaiming_uniform_(w, a=math.sqrt(5)) is w
    bound = 1 / math.sqrt(300)
    values = to_np(w)
    assert values.min() >= -bound and values.max() <= bound
    assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert to_np(w).std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    init.xavier_uniform_(w, gain=2.0)
    limit = 2.0 * math.sqrt(6 / 700)
    assert np.abs(to_np(w)).max() <= limit and to_np(w).std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    init.xavier_normal_(w)
    assert to_np(w).std() == pytest.approx(math.sqrt(2 / 700), rel=0.02)
    init.normal_(w, 3.0, 0.5)
    assert to_np(w).mean() == pytest.approx(3.0, abs=0.01)
    init.uniform_(w, 2.0, 4.0)
    assert 2.0 <= to_np(w).min() and to_np(w).max() <= 4.0
    assert init.constant_(w, 0.25).numpy().max() == 0.25
    assert init.ones_(w).numpy().min() == 1.0 and init.zeros_(w).numpy().max() == 0.0
    conv = tg.zeros(8, 4, 3, 3)
    init.kaiming_uniform_(conv)  # fan_in = 4 * 9
    assert np.abs(to_np(conv)).max() <= math.sqrt(2 / (1 + 0.01 ** 2)) * math.sqrt(3 / 36)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(tg.zeros(3))
    with pytest.raises(ValueError, match="mode 'fan_avg' not supported"):
        init.kaiming_uniform_(w, mode="fan_avg")


def test_default_initialisation_matches_pytorch_bounds() -> None:
    layer = nn.Linear(50, 40)
    bound = 1 / math.sqrt(50)
    for p in layer.parameters():
        assert np.abs(to_np(p)).max() <= bound
    conv = nn.Conv2d(4, 6, 3)
    conv_bound = 1 / math.sqrt(4 * 9)
    assert np.abs(to_np(conv.weight)).max() <= conv_bound and np.abs(to_np(conv.bias)).max() <= conv_bound
    gru = nn.GRUCell(3, 16)
    assert all(np.abs(to_np(p)).max() <= 0.25 for p in gru.parameters())
    emb = nn.Embedding(1000, 8, padding_idx=3)
    assert to_np(emb.weight)[3].tolist() == [0.0] * 8
    assert to_np(emb.weight).std() == pytest.approx(1.0, rel=0.05)
    norm = nn.LayerNorm(4)
    assert to_np(norm.weight).tolist() == [1.0] * 4 and to_np(norm.bias).tolist() == [0.0] * 4


def test_same_seed_gives_same_init_and_dropout_mask() -> None:
    def run() -> tuple[list[np.ndarray], np.ndarray]:
        tg.manual_seed(42)
        model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5))
        return [to_np(p).copy() for p in model.parameters()], to_np(model(tg.ones(3, 6)))

    first, second = run(), run()
    for a, b in zip(first[0], second[0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[1], second[1])
    tg.manual_seed(43)
    other = nn.Linear(6, 5)
    assert not np.array_equal(to_np(other.weight), first[0][0])


# -- layers: values and gradients -----------------------------------------------------------------------------------
def test_linear_values_and_gradients() -> None:
    x, w, b = rand64(4, 3, seed=1), rand64(2, 3, seed=2), rand64(2, seed=3)
    np.testing.assert_allclose(to_np(F.linear(t64(x), t64(w), t64(b))), x @ w.T + b)
    assert tg.gradcheck(F.linear, [t64(x), t64(w), t64(b)])
    assert tg.gradcheck(F.linear, [t64(rand64(2, 2, 3)), t64(w)])  # batched leading dims, no bias
    layer = nn.Linear(3, 2, dtype=tg.float64)
    assert gradcheck_module(layer, [t64(x)])
    with pytest.raises(ValueError, match=r"linear: input of shape \(4, 5\) does not fit weight of shape \(2, 3\)"):
        layer(t64(np.ones((4, 5))))


ACTIVATIONS = {
    "ReLU": (nn.ReLU(), lambda x: np.maximum(x, 0)),
    "Tanh": (nn.Tanh(), np.tanh),
    "Sigmoid": (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "GELU": (nn.GELU(), lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    "GELU_tanh": (nn.GELU("tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "Softmax": (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    "LogSoftmax": (nn.LogSoftmax(dim=0), lambda x: x - np.log(np.exp(x).sum(0, keepdims=True))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_values_and_gradients(name: str) -> None:
    module, reference = ACTIVATIONS[name]
    x = rand64(3, 4, seed=5, low=-2, high=2)
    x = np.where(np.abs(x) < 0.05, 0.3, x)  # away from relu's kink
    np.testing.assert_allclose(to_np(module(t64(x))), reference(x), rtol=1e-6, atol=1e-7)
    assert tg.gradcheck(module, [t64(x)])


def test_softmax_without_dim_uses_pytorchs_legacy_choice() -> None:
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        out = nn.Softmax()(t64(rand64(2, 3)))
    np.testing.assert_allclose(to_np(out).sum(1), [1.0, 1.0])


def test_dropout_train_scales_and_eval_is_identity() -> None:
    layer = nn.Dropout(0.25)
    x = tg.ones(200, 50, requires_grad=True)
    out = layer(x)
    values = to_np(out)
    kept = values != 0
    np.testing.assert_allclose(values[kept], 1 / 0.75)
    assert kept.mean() == pytest.approx(0.75, abs=0.02)
    out.sum().backward()
    np.testing.assert_allclose(to_np(x.grad), kept / 0.75)  # gradient = mask / (1 - p)
    layer.eval()
    assert layer(x) is x
    assert F.dropout(x, 0.5, training=False) is x
    assert not to_np(F.dropout(x, 1.0)).any()
    with pytest.raises(ValueError, match="probability has to be between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


def test_layer_norm_values_and_gradients() -> None:
    x = rand64(2, 3, 4, seed=7)
    w, b = rand64(3, 4, seed=8), rand64(3, 4, seed=9)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * w + b
    np.testing.assert_allclose(to_np(F.layer_norm(t64(x), (3, 4), t64(w), t64(b))), expected, rtol=1e-10)
    assert tg.gradcheck(lambda x, w, b: F.layer_norm(x, (3, 4), w, b), [t64(x), t64(w), t64(b)])
    plain = nn.LayerNorm(4, elementwise_affine=False)
    assert list(plain.parameters()) == []
    np.testing.assert_allclose(to_np(plain(t64(x))).mean(-1), 0, atol=1e-12)
    with pytest.raises(ValueError, match=r"layer_norm: input of shape \(2, 3, 4\) does not end with normalized_shape "
                                         r"\(3,\)"):
        nn.LayerNorm(3)(t64(x))


def test_batch_norm_training_statistics_and_running_buffers() -> None:
    layer = nn.BatchNorm1d(3, dtype=tg.float64)
    x = rand64(5, 3, seed=11, low=0, high=4)
    out = layer(t64(x))
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(to_np(out), expected, rtol=1e-10)
    np.testing.assert_allclose(to_np(layer.running_mean), 0.1 * x.mean(0))
    np.testing.assert_allclose(to_np(layer.running_var), 0.9 + 0.1 * x.var(0, ddof=1))  # unbiased, as PyTorch
    assert layer.num_batches_tracked.item() == 1
    layer.eval()
    np.testing.assert_allclose(to_np(layer(t64(x))), (x - 0.1 * x.mean(0)) / np.sqrt(0.9 + 0.1 * x.var(0, ddof=1)
                                                                                        + 1e-5))
    assert layer.num_batches_tracked.item() == 1  # eval does not touch the statistics


def test_batch_norm_3d_input_cumulative_momentum_and_gradients() -> None:
    layer = nn.BatchNorm1d(2, momentum=None, dtype=tg.float64)
    batches = [rand64(3, 2, 4, seed=s) for s in (1, 2)]
    for batch in batches:
        layer(t64(batch))
    mean_of_means = np.mean([b.mean(axis=(0, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(to_np(layer.running_mean), mean_of_means)
    x, w, b = rand64(4, 2, 3, seed=3), rand64(2, seed=4), rand64(2, seed=5)
    assert tg.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [t64(x), t64(w), t64(b)])
    assert tg.gradcheck(lambda x: F.batch_norm(x, t64([0.5, -0.5]), t64([2.0, 3.0]), training=False), [t64(x)])
    untracked = nn.BatchNorm1d(2, track_running_stats=False).eval()
    assert untracked.running_mean is None and list(untracked.state_dict()) == ["weight", "bias"]
    np.testing.assert_allclose(to_np(untracked(t64(x))).mean(axis=(0, 2)), 0, atol=1e-7)  # batch stats in eval
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training, got input of shape "
                                         r"\(1, 2\)"):
        nn.BatchNorm1d(2)(tg.ones(1, 2))
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\) has 3 channels, expected 2"):
        nn.BatchNorm1d(2)(tg.ones(4, 3))


def test_embedding_values_gradient_accumulation_and_padding() -> None:
    layer = nn.Embedding(5, 3, padding_idx=0, dtype=tg.float64)
    table = to_np(layer.weight).copy()
    index = tg.tensor([[1, 0, 1], [4, 0, 2]])
    out = layer(index)
    np.testing.assert_array_equal(to_np(out), table[to_np(index)])
    weights = rand64(2, 3, 3, seed=12)
    (out * t64(weights)).sum().backward()
    grad = to_np(layer.weight.grad)
    np.testing.assert_allclose(grad[1], weights[0, 0] + weights[0, 2])  # repeated index: gradients add
    np.testing.assert_allclose(grad[0], 0.0)  # padding row gets nothing
    np.testing.assert_allclose(grad[3], 0.0)
    assert tg.gradcheck(lambda w: F.embedding(tg.tensor([2, 2, 1]), w), [t64(table)])
    with pytest.raises(IndexError, match=r"embedding: index 5 is out of range for 5 embeddings"):
        layer(tg.tensor([1, 5]))
    with pytest.raises(TypeError, match="expected an integer index tensor, got float32"):
        layer(tg.tensor([1.0]))


def conv2d_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int], groups: int = 1) -> np.ndarray:
    """Direct loops over the definition of cross-correlation."""
    n, _, h, width = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for i in range(oh):
            for j in range(ow):
                rows = i * stride[0] + dilation[0] * np.arange(kh)
                cols = j * stride[1] + dilation[1] * np.arange(kw)
                patch = xp[:, g * cg:(g + 1) * cg][:, :, rows][:, :, :, cols]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + (b[oc] if b is not None else 0)
    return out


def pairs_of(low: int, high: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(low, high), st.integers(low, high))


@given(kernel=pairs_of(1, 3), stride=pairs_of(1, 2), padding=pairs_of(0, 2), dilation=pairs_of(1, 2),
       groups=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 16))
@SETTINGS
def test_conv2d_matches_direct_loops(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                                     dilation: tuple[int, int], groups: int, seed: int) -> None:
    x = rand64(2, 4, 6, 5, seed=seed)
    w = rand64(6, 4 // groups, *kernel, seed=seed + 1)
    b = rand64(6, seed=seed + 2)
    out = F.conv2d(t64(x), t64(w), t64(b), stride, padding, dilation, groups)
    np.testing.assert_allclose(to_np(out), conv2d_reference(x, w, b, stride, padding, dilation, groups), rtol=1e-10,
                               atol=1e-12)


def test_conv2d_gradients_same_padding_and_errors() -> None:
    x, w, b = rand64(1, 2, 5, 4, seed=1), rand64(3, 2, 3, 2, seed=2), rand64(3, seed=3)
    assert tg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [t64(x), t64(w), t64(b)])
    assert tg.gradcheck(lambda x, w: F.conv2d(x, w, dilation=(2, 1), padding="same"), [t64(x), t64(w)])
    same = F.conv2d(t64(x), t64(w), padding="same")
    assert same.shape == (1, 3, 5, 4)
    np.testing.assert_allclose(to_np(same), conv2d_reference(np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 1))), w, None,
                                                            (1, 1), (0, 0), (1, 1)), atol=1e-12)
    layer = nn.Conv2d(2, 3, 3, dtype=tg.float64)
    unbatched = layer(t64(x[0]))
    assert unbatched.shape == (3, 3, 2)
    np.testing.assert_allclose(to_np(unbatched), to_np(layer(t64(x)))[0])
    with pytest.raises(ValueError, match=r"conv2d: input of shape \(1, 3, 5, 4\) has 3 channels but weight of shape "
                                         r"\(3, 2, 3, 3\) with groups=1 expects 2"):
        layer(t64(np.ones((1, 3, 5, 4))))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        F.conv2d(t64(x), t64(w), stride=2, padding="same")


def max_pool_reference(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=-np.inf)
    oh = (xp.shape[2] - kernel[0]) // stride[0] + 1
    ow = (xp.shape[3] - kernel[1]) // stride[1] + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride[0]:i * stride[0] + kernel[0], j * stride[1]:j * stride[1] + kernel[1]]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


@pytest.mark.parametrize("kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                                   ((3, 2), (1, 2), (1, 0))])
def test_max_pool2d_values_and_gradients(kernel: tuple[int, int], stride: tuple[int, int],
                                         padding: tuple[int, int]) -> None:
    x = rand64(2, 2, 5, 6, seed=21)
    out = nn.MaxPool2d(kernel, stride, padding)(t64(x))
    np.testing.assert_array_equal(to_np(out), max_pool_reference(x, kernel, stride, padding))
    assert tg.gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding), [t64(x)])


def test_max_pool2d_gradient_goes_to_the_maximum_and_padding_limit() -> None:
    x = t64([[[[1.0, 5.0], [2.0, 3.0]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(to_np(x.grad), [[[[0.0, 1.0], [0.0, 0.0]]]])
    with pytest.raises(ValueError, match=r"padding \(2, 2\) should be at most half of the kernel size \(3, 3\)"):
        F.max_pool2d(x, 3, padding=2)


def test_rnn_cell_values_and_gradients() -> None:
    for nonlinearity, act in (("tanh", np.tanh), ("relu", lambda v: np.maximum(v, 0))):
        cell = nn.RNNCell(3, 4, nonlinearity=nonlinearity, dtype=tg.float64)
        x, h = rand64(2, 3, seed=31), rand64(2, 4, seed=32)
        p = {n: to_np(v) for n, v in cell.named_parameters()}
        expected = act(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])
        np.testing.assert_allclose(to_np(cell(t64(x), t64(h))), expected, rtol=1e-10)
        assert gradcheck_module(cell, [t64(x), t64(h)])
    assert nn.RNNCell(3, 4)(tg.ones(3)).shape == (4,)  # unbatched, zero initial state
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        nn.RNNCell(3, 4, nonlinearity="gelu")


def test_gru_cell_values_layout_and_gradients() -> None:
    cell = nn.GRUCell(3, 2, dtype=tg.float64)
    assert {n: tuple(p.shape) for n, p in cell.named_parameters()} == {
        "weight_ih": (6, 3), "weight_hh": (6, 2), "bias_ih": (6,), "bias_hh": (6,)}
    x, h = rand64(4, 3, seed=41), rand64(4, 2, seed=42)
    p = {n: to_np(v) for n, v in cell.named_parameters()}
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    gh = h @ p["weight_hh"].T + p["bias_hh"]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    r = sig(gi[:, 0:2] + gh[:, 0:2])  # gate order r, z, n as in PyTorch
    z = sig(gi[:, 2:4] + gh[:, 2:4])
    n = np.tanh(gi[:, 4:6] + r * gh[:, 4:6])
    np.testing.assert_allclose(to_np(cell(t64(x), t64(h))), (1 - z) * n + z * h, rtol=1e-10)
    assert gradcheck_module(cell, [t64(x), t64(h)])
    with pytest.raises(ValueError, match=r"GRUCell: hidden state of shape \(4, 3\) does not fit input of shape "
                                         r"\(4, 3\); expected \(4, 2\)"):
        cell(t64(x), t64(np.ones((4, 3))))


# -- losses -------------------------------------------------------------------------------------------------------
def test_mse_and_l1_losses() -> None:
    x, y = rand64(3, 4, seed=51), rand64(3, 4, seed=52)
    np.testing.assert_allclose(F.mse_loss(t64(x), t64(y)).item(), ((x - y) ** 2).mean())
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(t64(x), t64(y)).item(), ((x - y) ** 2).sum())
    np.testing.assert_allclose(to_np(nn.L1Loss(reduction="none")(t64(x), t64(y))), np.abs(x - y))
    assert tg.gradcheck(F.mse_loss, [t64(x), t64(y)])
    assert tg.gradcheck(F.l1_loss, [t64(x), t64(y)])
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3, 1\) and target shape \(3,\) differ"):
        F.mse_loss(tg.zeros(3, 1), tg.zeros(3))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        nn.L1Loss(reduction="avg")


def log_softmax_np(x: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_reference(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, ignore_index: int,
                            reduction: str, smoothing: float) -> np.ndarray:
    """PyTorch's definition for (N, C) logits and index targets, written out."""
    n, c = x.shape
    logp = log_softmax_np(x)
    w = np.ones(c) if weight is None else weight
    counted = target != ignore_index
    safe = np.where(counted, target, 0)
    nll = -logp[np.arange(n), safe] * w[safe] * counted
    smooth = -(logp * w).sum(1) * counted
    loss = (1 - smoothing) * nll + smoothing / c * smooth
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (w[safe] * counted).sum()


@given(n=st.integers(1, 6), c=st.integers(2, 5), seed=st.integers(0, 2 ** 16), use_weight=st.booleans(),
       smoothing=st.sampled_from([0.0, 0.1, 0.5]), reduction=st.sampled_from(["mean", "sum", "none"]),
       ignore=st.booleans())
@SETTINGS
def test_cross_entropy_matches_formula(n: int, c: int, seed: int, use_weight: bool, smoothing: float, reduction: str,
                                       ignore: bool) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)) * 3
    target = rng.integers(0, c, n)
    if ignore:
        target[0] = -100
        target = np.append(target, 0)  # keep at least one counted element
        x = np.vstack([x, rng.standard_normal((1, c))])
    weight = rng.uniform(0.5, 2.0, c) if use_weight else None
    out = F.cross_entropy(t64(x), tg.tensor(target), weight=None if weight is None else t64(weight),
                          reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(to_np(out), cross_entropy_reference(x, target, weight, -100, reduction, smoothing),
                               rtol=1e-10, atol=1e-12)


def test_cross_entropy_gradients_and_multidimensional_input() -> None:
    x = rand64(4, 3, seed=61)
    target = tg.tensor([0, 2, -100, 1])
    weight = t64([0.2, 1.0, 3.0])
    assert tg.gradcheck(lambda x: F.cross_entropy(x, target, weight, label_smoothing=0.2), [t64(x)])
    assert tg.gradcheck(lambda x: F.cross_entropy(x, tg.tensor([0, 2, 1, 1])), [t64(x)])
    x4 = rand64(2, 3, 2, 2, seed=62)
    t4 = np.array([[[0, 1], [2, 2]], [[1, 0], [-100, 1]]])
    moved = np.moveaxis(x4, 1, -1).reshape(-1, 3)
    expected = cross_entropy_reference(moved, t4.reshape(-1), None, -100, "none", 0.1).reshape(2, 2, 2)
    out = F.cross_entropy(t64(x4), tg.tensor(t4), reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(to_np(out), expected, rtol=1e-10)
    assert tg.gradcheck(lambda x: F.cross_entropy(x, tg.tensor(t4)), [t64(x4)])
    unbatched = F.cross_entropy(t64(x[0]), tg.tensor(2))
    np.testing.assert_allclose(unbatched.item(), -log_softmax_np(x[:1])[0, 2])


def test_cross_entropy_with_probability_targets() -> None:
    x = rand64(3, 4, seed=71)
    probs = np.random.default_rng(72).dirichlet(np.ones(4), 3)
    expected = -(log_softmax_np(x) * (probs * 0.9 + 0.1 / 4)).sum(1).mean()
    out = F.cross_entropy(t64(x), t64(probs), label_smoothing=0.1)
    np.testing.assert_allclose(out.item(), expected, rtol=1e-10)
    assert tg.gradcheck(lambda x, p: F.cross_entropy(x, p), [t64(x), t64(probs)])


def test_cross_entropy_error_messages() -> None:
    logits = tg.zeros(4, 3)
    with pytest.raises(ValueError, match=r"cross_entropy: target shape \(5,\) does not match input shape \(4, 3\): "
                                         r"expected class indices of shape \(4,\) or class probabilities of shape "
                                         r"\(4, 3\)"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: target contains class index 3, but the input \(4, 3\) has "
                                         r"3 classes \(valid: 0..2, or ignore_index=-100\)"):
        F.cross_entropy(logits, tg.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="target contains class index -1"):
        F.cross_entropy(logits, tg.tensor([0, -1, 2, 0]))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0, got 1.5"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"nll_loss: weight has shape \(2,\) but the input \(4, 3\) has 3 classes"):
        F.nll_loss(logits, tg.tensor([0, 1, 2, 0]), weight=tg.ones(2))
    # a class index equal to ignore_index is fine even when out of range
    assert F.cross_entropy(logits, tg.tensor([0, 7, 2, 0]), ignore_index=7).item() == pytest.approx(math.log(3))


def test_nll_loss_and_loss_modules() -> None:
    x = rand64(5, 4, seed=81)
    logp = log_softmax_np(x)
    target = np.array([3, 0, 1, 1, 2])
    weight = np.array([1.0, 2.0, 0.5, 1.5])
    expected = (-logp[np.arange(5), target] * weight[target]).sum() / weight[target].sum()
    np.testing.assert_allclose(F.nll_loss(t64(logp), tg.tensor(target), t64(weight)).item(), expected)
    np.testing.assert_allclose(nn.NLLLoss(weight=t64(weight))(t64(logp), tg.tensor(target)).item(), expected)
    np.testing.assert_allclose(nn.CrossEntropyLoss(weight=t64(weight))(t64(x), tg.tensor(target)).item(), expected)
    loss = nn.CrossEntropyLoss(weight=tg.ones(4), label_smoothing=0.1)
    assert list(loss.state_dict()) == ["weight"]  # class weights are a buffer, as in PyTorch
    assert loss.label_smoothing == 0.1 and loss.ignore_index == -100
    assert tg.gradcheck(lambda p: F.nll_loss(p, tg.tensor(target), reduction="sum"), [t64(logp)])


def test_bce_with_logits_values_gradients_and_stability() -> None:
    x = np.array([[-1000.0, -3.0, 0.0], [0.5, 40.0, 1000.0]])
    y = np.array([[0.0, 1.0, 0.3], [1.0, 0.0, 1.0]])
    pos_weight = np.array([2.0, 0.5, 1.5])
    sig = 1 / (1 + np.exp(-np.clip(x, -500, 500)))
    log_sig = -np.logaddexp(0, -x)  # log(sigmoid(x)), computed stably
    log_one_minus = -np.logaddexp(0, x)  # log(1 - sigmoid(x))
    expected = -(pos_weight * y * log_sig + (1 - y) * log_one_minus)
    out = F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=t64(pos_weight), reduction="none")
    assert np.isfinite(to_np(out)).all()
    np.testing.assert_allclose(to_np(out), expected, rtol=1e-12)
    xt = t64(x, requires_grad=True)
    F.binary_cross_entropy_with_logits(xt, t64(y), reduction="sum").backward()
    np.testing.assert_allclose(to_np(xt.grad), sig - y, atol=1e-12)  # exact at x = 0 too: 0.5 - 0.3
    small = rand64(2, 3, seed=91, low=-3, high=3)
    weight = rand64(2, 3, seed=92, low=0, high=1)
    assert tg.gradcheck(lambda x, y: F.binary_cross_entropy_with_logits(x, y, t64(weight), t64(pos_weight)),
                        [t64(small), t64(y)])
    module = nn.BCEWithLogitsLoss(pos_weight=t64(pos_weight))
    np.testing.assert_allclose(module(t64(x), t64(y)).item(), expected.mean())
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: input shape \(2, 3\) and target shape "
                                         r"\(3,\) differ"):
        module(t64(x), t64(y[0]))


def test_one_hot() -> None:
    out = F.one_hot(tg.tensor([2, 0, 1]))
    assert out.dtype == tg.int64
    np.testing.assert_array_equal(to_np(out), np.eye(3, dtype=np.int64)[[2, 0, 1]])
    assert F.one_hot(tg.tensor([[1], [0]]), num_classes=4).shape == (2, 1, 4)
    with pytest.raises(ValueError, match="one_hot: class value 4 is out of range for num_classes=3"):
        F.one_hot(tg.tensor([4]), 3)


# -- PyTorch parity -------------------------------------------------------------------------------------------------
def _torch_pair(module_pair: tuple[nn.Module, Any], torch: Any) -> tuple[nn.Module, Any]:
    ours, theirs = module_pair
    theirs = theirs.double()
    with torch.no_grad():
        for p in theirs.parameters():  # non-trivial affine parameters for norm layers
            p.add_(torch.randn_like(p) * 0.1)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _compare_forward_backward(torch: Any, ours: nn.Module, theirs: Any, inputs: Sequence[np.ndarray],
                              rtol: float = 1e-9) -> None:
    our_inputs = [t64(x, requires_grad=True) for x in inputs]
    their_inputs = [torch.tensor(x, requires_grad=True) for x in inputs]
    out, ref = ours(*our_inputs), theirs(*their_inputs)
    np.testing.assert_allclose(to_np(out), ref.detach().numpy(), rtol=rtol, atol=1e-12)
    weights = np.random.default_rng(0).standard_normal(out.shape)
    (out * t64(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    for a, b in zip(our_inputs, their_inputs):
        np.testing.assert_allclose(to_np(a.grad), b.grad.numpy(), rtol=rtol, atol=1e-12)
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(to_np(p.grad), their_params[name].grad.numpy(), rtol=rtol, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("case", ["linear", "conv2d", "conv2d_strided_grouped", "maxpool", "layernorm", "batchnorm2d",
                                  "batchnorm3d", "grucell", "rnncell"])
def test_layers_match_pytorch(case: str) -> None:
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    rng = np.random.default_rng(5)
    cases: dict[str, tuple[tuple[nn.Module, Any], list[tuple[int, ...]]]] = {
        "linear": ((nn.Linear(5, 3, dtype=tg.float64), tnn.Linear(5, 3)), [(4, 5)]),
        "conv2d": ((nn.Conv2d(3, 4, 3, padding=1, dtype=tg.float64), tnn.Conv2d(3, 4, 3, padding=1)), [(2, 3, 6, 5)]),
        "conv2d_strided_grouped": ((nn.Conv2d(4, 6, (3, 2), stride=2, dilation=(1, 2), groups=2, dtype=tg.float64),
                                    tnn.Conv2d(4, 6, (3, 2), stride=2, dilation=(1, 2), groups=2)), [(2, 4, 7, 8)]),
        "maxpool": ((nn.MaxPool2d(3, 2, 1), tnn.MaxPool2d(3, 2, 1)), [(2, 3, 7, 6)]),
        "layernorm": ((nn.LayerNorm((3, 4), dtype=tg.float64), tnn.LayerNorm((3, 4))), [(2, 5, 3, 4)]),
        "batchnorm2d": ((nn.BatchNorm1d(3, dtype=tg.float64), tnn.BatchNorm1d(3)), [(6, 3)]),
        "batchnorm3d": ((nn.BatchNorm1d(3, momentum=None, dtype=tg.float64), tnn.BatchNorm1d(3, momentum=None)),
                        [(4, 3, 5)]),
        "grucell": ((nn.GRUCell(5, 4, dtype=tg.float64), tnn.GRUCell(5, 4)), [(3, 5), (3, 4)]),
        "rnncell": ((nn.RNNCell(5, 4, nonlinearity="relu", dtype=tg.float64), tnn.RNNCell(5, 4, nonlinearity="relu")),
                    [(3, 5), (3, 4)]),
    }
    pair, shapes = cases[case]
    ours, theirs = _torch_pair(pair, torch)
    for _ in range(2):  # twice: batch norm's running statistics must track PyTorch's too
        ours.zero_grad()
        theirs.zero_grad()
        _compare_forward_backward(torch, ours, theirs, [rng.standard_normal(s) for s in shapes])
    for name, buffer in theirs.state_dict().items():
        np.testing.assert_allclose(to_np(ours.state_dict()[name]), buffer.numpy(), rtol=1e-12, err_msg=name)
    if case.startswith("batchnorm"):
        ours.eval()
        theirs.eval()
        _compare_forward_backward(torch, ours, theirs, [rng.standard_normal(s) for s in shapes])


def test_state_dicts_are_interchangeable_with_pytorch() -> None:
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.GRUCell(4, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.GRUCell(4, 2))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(tuple(ours.state_dict()[k].shape) == tuple(v.shape) for k, v in theirs.state_dict().items())
    result = theirs.load_state_dict({k: torch.from_numpy(to_np(v).copy()) for k, v in ours.state_dict().items()})
    assert not result.missing_keys and not result.unexpected_keys


def test_losses_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 4)) * 2
    target = np.array([0, 3, -100, 2, 1, 7])
    weight = np.array([0.5, 1.0, 2.0, 1.5])
    options = [dict(ignore_index=7), dict(ignore_index=7, label_smoothing=0.2),
               dict(ignore_index=7, label_smoothing=0.3, weight=True),
               dict(ignore_index=7, reduction="none", label_smoothing=0.1, weight=True)]
    target[2] = 1
    for kw in options:
        ours_kw, theirs_kw = dict(kw), dict(kw)
        if kw.get("weight"):
            ours_kw["weight"], theirs_kw["weight"] = t64(weight), torch.tensor(weight)
        x, xt = t64(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
        out = F.cross_entropy(x, tg.tensor(target), **ours_kw)
        ref = TF.cross_entropy(xt, torch.tensor(target), **theirs_kw)
        np.testing.assert_allclose(to_np(out), ref.detach().numpy(), rtol=1e-12)
        out.sum().backward()
        ref.sum().backward()
        np.testing.assert_allclose(to_np(x.grad), xt.grad.numpy(), rtol=1e-10, atol=1e-15)
    x4 = rng.standard_normal((2, 3, 4, 2))
    t4 = rng.integers(0, 3, (2, 4, 2))
    t4[0, 0, 0] = -100
    np.testing.assert_allclose(F.cross_entropy(t64(x4), tg.tensor(t4), label_smoothing=0.1).item(),
                               TF.cross_entropy(torch.tensor(x4), torch.tensor(t4), label_smoothing=0.1).item())
    z = np.array([[-800.0, -2.0, 0.0, 3.0], [0.0, 1.0, 50.0, 800.0]])
    y = rng.uniform(0, 1, z.shape)
    pos_weight, elem_weight = rng.uniform(0.5, 2, 4), rng.uniform(0, 1, z.shape)
    x, xt = t64(z, requires_grad=True), torch.tensor(z, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(x, t64(y), t64(elem_weight), t64(pos_weight))
    ref = TF.binary_cross_entropy_with_logits(xt, torch.tensor(y), torch.tensor(elem_weight),
                                              pos_weight=torch.tensor(pos_weight))
    np.testing.assert_allclose(out.item(), ref.item(), rtol=1e-12)
    out.backward()
    ref.backward()
    np.testing.assert_allclose(to_np(x.grad), xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_embedding_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    ours, theirs = _torch_pair((nn.Embedding(7, 3, padding_idx=2, dtype=tg.float64),
                                torch.nn.Embedding(7, 3, padding_idx=2)), torch)
    index = np.array([[1, 2, 2], [6, 0, 1]])
    out, ref = ours(tg.tensor(index)), theirs(torch.tensor(index))
    np.testing.assert_allclose(to_np(out), ref.detach().numpy())
    weights = np.random.default_rng(1).standard_normal(out.shape)
    (out * t64(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(to_np(ours.weight.grad), theirs.weight.grad.numpy(), rtol=1e-12)


def test_training_a_small_model_reduces_the_loss() -> None:
    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((64, 2)).astype(np.float32))
    labels = tg.tensor((rng.standard_normal(64) > 0).astype(np.int64))
    x.data[:, 0] += np.where(labels.numpy() == 1, 2.0, -2.0)  # separable along the first feature
    model = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Dropout(0.1), nn.LayerNorm(16), nn.Linear(16, 2))
    loss_fn = nn.CrossEntropyLoss()
    first = None
    for _ in range(60):
        loss = loss_fn(model(x), labels)
        first = first if first is not None else loss.item()
        model.zero_grad()
        loss.backward()
        with tg.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    model.eval()
    final = loss_fn(model(x), labels).item()
    assert final < 0.25 * first
    accuracy = (model(x).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95
