"""tinygrad_nb.amp: autocast's policy and dtypes, the CPU matmul path, GradScaler against torch.amp.GradScaler, the
precision check, checkpoints of the scaler, and training with autocast + scaling on the digits data."""
from __future__ import annotations

import linecache
import warnings

import ml_dtypes
import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import datasets, dispatch, nn, optim
from tinygrad_nb.amp import GradScaler, PrecisionError
from tinygrad_nb.amp.bounds import ulp
from tinygrad_nb.nn import functional as F

BF16 = np.dtype(ml_dtypes.bfloat16)


# -- autocast -----------------------------------------------------------------------------------------------------
def _mlp(seed: int = 0) -> nn.Module:
    tg.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_policy_dtypes_and_float32_gradients():
    model = _mlp()
    x, y = tg.randn(5, 8), tg.tensor([0, 1, 2, 3, 0])
    with tg.autocast("cpu", dtype=tg.bfloat16):
        hidden = model(x)
        assert hidden.dtype == BF16  # Linear: lower list
        assert hidden.relu().dtype == BF16  # in no list: runs in its input's dtype
        assert hidden.softmax(-1).dtype == tg.float32  # exp and sum: float32 list
        assert hidden.exp().dtype == tg.float32
        assert hidden.sum().dtype == tg.float32
        assert hidden.log_softmax(-1).dtype == tg.float32
        assert (hidden + tg.ones(4)).dtype == tg.float32  # promote: widest input
        assert (hidden + tg.ones(4, dtype=tg.float64)).dtype == tg.float64
        loss = F.cross_entropy(hidden, y)
        assert loss.dtype == tg.float32
        x64 = tg.randn(3, 8, dtype=tg.float64)
        assert (x64 @ tg.randn(8, 2, dtype=tg.float64)).dtype == tg.float64  # float64 is never lowered
    loss.backward()
    for p in model.parameters():
        assert p.dtype == tg.float32 and p.grad.dtype == tg.float32  # master weights and their gradients stay float32


def test_linear_values_are_16bit_storage_with_float32_compute():
    tg.manual_seed(1)
    x, w, b = tg.randn(6, 32), tg.randn(5, 32), tg.randn(5)
    for low in (tg.float16, BF16):
        with tg.autocast("cpu", dtype=low):
            out = F.linear(x, w, b)
        assert out.dtype == low
        xs, ws, bs = (a.numpy().astype(low).astype(np.float32) for a in (x, w, b))
        expected = (xs @ ws.T + bs).astype(low)  # inputs stored in 16 bits, x W^T + b in float32, rounded once
        np.testing.assert_array_equal(out.numpy().view(np.uint16), expected.view(np.uint16))
        exact = xs.astype(np.float64) @ ws.T.astype(np.float64) + bs
        error = np.abs(out.numpy().astype(np.float64) - exact)
        assert np.all(error <= 0.51 * ulp(exact, low))  # correctly rounded, give or take the float32 error


def test_float16_matmul_on_cpu_rounds_a_float32_product():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 300)).astype(np.float16), rng.standard_normal((300, 3)).astype(np.float16)
    out = (tg.tensor(a) @ tg.tensor(b)).numpy()
    assert out.dtype == np.float16
    expected = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))
    # and it is closer to the exact product than numpy's float16 loop is (which rounds every partial sum)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(out - exact).max() <= np.abs((a @ b).astype(np.float64) - exact).max()


def test_gradients_against_float32_within_bf16_tolerance():
    model = _mlp(3)
    x, y = tg.randn(16, 8), tg.randint(0, 4, (16,))
    F.cross_entropy(model(x), y).backward()
    reference = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    with tg.autocast("cpu"):
        F.cross_entropy(model(x), y).backward()
    for p, ref in zip(model.parameters(), reference):
        np.testing.assert_allclose(p.grad.numpy(), ref, atol=0.03 * np.abs(ref).max() + 1e-6)


def test_nesting_enabled_false_decorator_and_zero_cost_when_off():
    assert dispatch.autocast_hooks == []
    w = tg.randn(4, 4)
    with tg.autocast("cpu"):
        assert len(dispatch.autocast_hooks) == 1 and tg.amp.is_autocast_enabled("cpu")
        with tg.autocast("cpu", enabled=False):
            assert (w @ w).dtype == tg.float32 and dispatch.autocast_hooks == []
            with tg.autocast("cpu", dtype=tg.float16):
                assert (w @ w).dtype == tg.float16
            assert (w @ w).dtype == tg.float32
        assert (w @ w).dtype == BF16
        with tg.autocast("cuda"):  # another device type: cpu tensors keep the cpu state
            assert (w @ w).dtype == BF16
    assert dispatch.autocast_hooks == [] and not tg.amp.is_autocast_enabled("cpu")

    @tg.autocast("cpu", dtype=tg.float16)
    def product(a: tg.Tensor) -> tg.Tensor:
        return a @ a

    assert product(w).dtype == tg.float16 and (w @ w).dtype == tg.float32
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'tpu'"):
        tg.autocast("tpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tg.autocast("cpu", dtype=tg.float64):
            assert (w @ w).dtype == tg.float32
    assert "target dtype is not supported. Disabling autocast" in str(caught[0].message)


def test_weight_casts_are_cached_within_a_region_until_the_weight_changes():
    tg.manual_seed(2)
    layer = nn.Linear(4, 4)
    x = tg.randn(3, 4)
    opt = optim.SGD(layer.parameters(), lr=0.5)

    def twice(cache: bool) -> tuple[int, list[np.ndarray]]:
        layer.zero_grad()
        with tg.profile() as prof:
            with tg.autocast("cpu", dtype=tg.float16, cache_enabled=cache):
                out = layer(layer(x))  # the weight and bias serve two Linear ops
                out.float().sum().backward()
        return prof.calls["Cast"], [p.grad.numpy().copy() for p in layer.parameters()]

    cached_casts, cached = twice(True)
    plain_casts, plain = twice(False)
    assert plain_casts - cached_casts == 2  # weight and bias cast once instead of twice
    for a, b in zip(cached, plain):  # cached: the two uses' float16 gradients add up in float16 (one more rounding)
        np.testing.assert_allclose(a, b, rtol=2 * 2.0**-11, atol=1e-6)
    layer.zero_grad()
    with tg.autocast("cpu", dtype=tg.float16):
        for _ in range(2):  # gradient accumulation: the second forward must not reuse the cast a backward freed
            layer(x).float().sum().backward()
        first = layer(x).numpy().copy()
        opt.step()  # the weights change (their version), so the next forward casts them again
        second = layer(x).numpy()
    expected = (x.numpy().astype(np.float16).astype(np.float32) @ layer.weight.numpy().astype(np.float16).astype(
        np.float32).T + layer.bias.numpy().astype(np.float16).astype(np.float32)).astype(np.float16)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, expected)


def test_policy_table_prints_and_can_be_changed():
    text = str(tg.amp.policy())
    assert "Matmul" in text and "CrossEntropy" in text and "every other op runs in the dtype of its inputs" in text
    assert tg.amp.op_policy("Linear") == "lower" and tg.amp.op_policy("Relu") is None
    for name in (r[0] for r in tg.amp.policy().rows):  # every entry names a real op
        assert hasattr(tg.ops, name), name
    x = tg.randn(3)
    try:
        tg.amp.set_op_policy("Tanh", "float32")
        with tg.autocast("cpu"):
            assert x.cast(BF16).tanh().dtype == tg.float32
    finally:
        tg.amp.set_op_policy("Tanh", None)
    with pytest.raises(ValueError, match="category must be one of lower, float32, promote"):
        tg.amp.set_op_policy("Tanh", "fp8")


# -- GradScaler vs torch --------------------------------------------------------------------------------------------
def _scaler_run(lib: str, grads: list[np.ndarray], **options) -> tuple[list[float], list[bool], np.ndarray]:
    """Drive a GradScaler with given (already scaled) gradients: the scale sequence, which steps ran, the weights."""
    torch = pytest.importorskip("torch") if lib == "torch" else None
    start = np.linspace(-1, 1, grads[0].size).astype(np.float32)
    if lib == "torch":
        p = torch.nn.Parameter(torch.tensor(start))
        opt = torch.optim.SGD([p], lr=0.1)
        scaler = torch.amp.GradScaler("cpu", **options)
    else:
        p = tg.tensor(start, requires_grad=True)
        opt = optim.SGD([p], lr=0.1)
        scaler = GradScaler(**options)
    scales, stepped = [], []
    for g in grads:
        loss = (p * 0).sum()
        scaler.scale(loss)  # initialises the scale lazily, as in a training loop
        before = p.detach().numpy().copy() if lib == "torch" else p.numpy().copy()
        scale = scaler.get_scale()
        p.grad = torch.tensor(g * np.float32(scale)) if lib == "torch" else tg.tensor(g * np.float32(scale))
        scaler.step(opt)
        scaler.update()
        after = p.detach().numpy() if lib == "torch" else p.numpy()
        stepped.append(not np.array_equal(before, after))
        scales.append(scaler.get_scale())
    final = p.detach().numpy() if lib == "torch" else p.numpy()
    return scales, stepped, final


def _gradient_sequence(steps: int, inf_at: set[int], nan_at: set[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(steps):
        g = rng.standard_normal(5).astype(np.float32)
        if i in inf_at:
            g[i % 5] = np.inf
        if i in nan_at:
            g[(i + 2) % 5] = np.nan
        out.append(g)
    return out


@pytest.mark.parametrize("options", [{"growth_interval": 3}, {"growth_interval": 2, "init_scale": 2.0**126},
                                     {"init_scale": 1024.0, "growth_factor": 3.0, "backoff_factor": 0.25,
                                      "growth_interval": 4}])
def test_grad_scaler_matches_torch(options):
    grads = _gradient_sequence(30, inf_at={0, 1, 5, 11, 12, 13, 20}, nan_at={7, 25})
    scales, stepped, final = _scaler_run("tg", grads, **options)
    torch_scales, torch_stepped, torch_final = _scaler_run("torch", grads, **options)
    assert scales == torch_scales
    assert stepped == torch_stepped
    assert not all(stepped) and any(stepped)
    np.testing.assert_allclose(final, torch_final, rtol=1e-6)


def test_grad_scaler_default_algorithm():
    scaler = GradScaler()
    p = tg.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    assert scaler.get_scale() == 2.0**16
    for step in range(2000):
        scaler.scale(p.sum())
        p.grad = tg.tensor([0.0])
        scaler.step(opt)
        scaler.update()
        assert scaler.get_scale() == (2.0**17 if step == 1999 else 2.0**16)
    p.grad = tg.tensor([np.inf], dtype=tg.float32)
    assert scaler.step(opt) is None  # skipped
    scaler.update()
    assert scaler.get_scale() == 2.0**16 and p.numpy()[0] == 1.0


def test_grad_scaler_unscale_for_clipping_and_errors():
    torch = pytest.importorskip("torch")
    p = tg.tensor([3.0, 4.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    scaler = GradScaler(init_scale=8.0)
    scaler.scale(p.sum()).backward()
    assert p.grad.numpy().tolist() == [8.0, 8.0]
    scaler.unscale_(opt)
    assert p.grad.numpy().tolist() == [1.0, 1.0]  # the true gradient, ready for clipping
    with pytest.raises(RuntimeError, match=r"unscale_\(\) has already been called on this optimizer since the last "
                                           r"update\(\)\."):
        scaler.unscale_(opt)
    scaler.step(opt)  # does not unscale again
    assert p.numpy().tolist() == [2.0, 3.0]
    with pytest.raises(RuntimeError, match=r"step\(\) has already been called since the last update\(\)\."):
        scaler.step(opt)
    scaler.update()
    with pytest.raises(AssertionError, match="No inf checks were recorded prior to update."):
        scaler.update()
    with pytest.raises(RuntimeError, match="The source state dict is empty"):
        GradScaler().load_state_dict({})
    half = tg.tensor([1.0], dtype=tg.float16, requires_grad=True)
    half.grad = tg.tensor([1.0], dtype=tg.float16)
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients."):
        scaler.scale(half.sum())
        scaler.unscale_(optim.SGD([half], lr=1.0))
    # the same messages as torch
    tp = torch.nn.Parameter(torch.tensor([3.0]))
    topt = torch.optim.SGD([tp], lr=1.0)
    tscaler = torch.amp.GradScaler("cpu")
    tscaler.scale(tp.sum()).backward()
    tscaler.unscale_(topt)
    with pytest.raises(RuntimeError, match=r"unscale_\(\) has already been called on this optimizer"):
        tscaler.unscale_(topt)


def test_grad_scaler_state_round_trips_through_checkpoints(tmp_path):
    torch = pytest.importorskip("torch")
    scaler = GradScaler(init_scale=1024.0, growth_interval=5)
    p = tg.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    for g in (1.0, np.inf, 1.0, 1.0):
        scaler.scale(p.sum())
        p.grad = tg.tensor([g], dtype=tg.float32)
        scaler.step(opt)
        scaler.update()
    state = scaler.state_dict()
    assert state == {"scale": 512.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 5,
                     "_growth_tracker": 2}
    tg.save(tmp_path / "ckpt.safetensors", optimizer=opt, scaler=scaler, step=4)
    restored = GradScaler()
    ckpt = tg.load(tmp_path / "ckpt.safetensors", scaler=restored)
    assert "scaler" in ckpt.restored and ckpt.scaler_state == state and restored.state_dict() == state
    # the state dict is torch's too
    tscaler = torch.amp.GradScaler("cpu")
    tscaler.load_state_dict(state)
    assert tscaler.state_dict() == state
    plain = tg.load(tmp_path / "ckpt.safetensors")  # loading without a scaler leaves it in scaler_state only
    assert plain.scaler_state == state


# -- underflow and training --------------------------------------------------------------------------------------
def _zero_gradients(scaled: bool) -> tuple[int, int, np.ndarray]:
    tg.manual_seed(0)
    model = nn.Linear(64, 10)
    x = tg.randn(32, 64) * 1e-3
    y = tg.randint(0, 10, (32,))
    opt = optim.SGD(model.parameters(), lr=0.1)
    scaler = GradScaler(enabled=scaled)
    with tg.autocast("cpu", dtype=tg.float16):
        loss = F.cross_entropy(model(x), y) * 1e-3
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    grad = model.weight.grad.numpy()
    model.zero_grad()
    F.cross_entropy(model(x), y).mul(1e-3).backward()  # float32 reference
    reference = model.weight.grad.numpy()
    return int(np.count_nonzero(grad == 0)), int(np.count_nonzero(reference == 0)), grad


def test_float16_gradients_underflow_without_scaling_and_the_scaler_fixes_it():
    zeros, reference_zeros, _ = _zero_gradients(scaled=False)
    zeros_scaled, _, grad = _zero_gradients(scaled=True)
    assert reference_zeros == 0
    assert zeros > 0.3 * grad.size  # most of the tiny gradients rounded to 0 in float16
    assert zeros_scaled == 0


def _digits_accuracy(low: np.dtype | None) -> float:
    table = datasets.load("digits")
    x, y = table.to_tensors()
    x = x / 16.0
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    xtr, ytr, xte, yte = x[tg.tensor(train)], y[tg.tensor(train)], x[tg.tensor(test)], y[tg.tensor(test)]
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = GradScaler(enabled=low is not None)
    for epoch in range(8):
        for start in range(0, 1400, 50):
            xb, yb = xtr[start:start + 50], ytr[start:start + 50]
            with tg.autocast("cpu", dtype=low, enabled=low is not None):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    with tg.no_grad():
        predicted = model(xte).argmax(1)
    return float((predicted == yte).float().mean().item()) * 100


def test_digits_mlp_bf16_autocast_matches_float32_accuracy():
    full = _digits_accuracy(None)
    mixed = _digits_accuracy(BF16)
    assert full > 90
    assert abs(full - mixed) <= 0.5, (full, mixed)


# -- the precision check -------------------------------------------------------------------------------------------
def test_check_reports_storage_compute_and_end_to_end_error():
    model = _mlp(5)
    x, y = tg.randn(6, 8), tg.randint(0, 4, (6,))
    report = tg.amp.check(model, (x, y), dtype=tg.float16)
    forward = [r for r in report.rows if r.phase == "forward"]
    ops_seen = [r.op for r in forward]
    assert ops_seen.count("Linear") == 2 and ops_seen[-1] == "CrossEntropy"
    assert any(r.phase == "backward" and r.op == "Linear" for r in report.rows)
    casts = [r for r in forward if r.op == "Cast" and r.dtype == "float16"]
    assert casts and all(r.ulp <= 0.5 and r.source == "storage" for r in casts)
    first = next(r for r in forward if r.op == "Linear")
    assert first.module == "0" and first.location[0] == __file__  # the user's line: the call of check here
    # the end-to-end error of the loss against an independent float64 computation
    w1, b1, w2, b2 = (p.numpy().astype(np.float64) for p in model.parameters())
    h = np.maximum(x.numpy().astype(np.float64) @ w1.T + b1, 0) @ w2.T + b2
    h = h - h.max(1, keepdims=True)
    loss64 = np.mean(np.log(np.exp(h).sum(1)) - h[np.arange(6), y.numpy()])
    with tg.autocast("cpu", dtype=tg.float16):
        loss16 = F.cross_entropy(model(x), y).item()
    assert forward[-1].rel_error == pytest.approx(abs(loss16 - loss64) / abs(loss64), rel=1e-6)
    for p in model.parameters():
        assert p.grad is None  # the check leaves no gradients behind
    assert "CrossEntropy" in str(report) and "<table>" in report._repr_html_()


def test_check_counts_overflow_and_underflow_and_compute_error():
    x = tg.tensor([1e5, -7e4, 1.0, 3e-9, -1e-9, 0.0, 2.0, 5.0])
    report = tg.amp.check(lambda t: t.cast(tg.float16).sigmoid(), x, dtype=tg.float16, backward=False)
    cast = report.rows[0]
    assert cast.op == "Cast" and cast.overflow == 2 and cast.underflow == 2
    rng = np.random.default_rng(0)
    values = tg.tensor(rng.uniform(-10, 10, 4000).astype(np.float32))
    sigmoid = [r for r in tg.amp.check(lambda t: t.cast(tg.float16).sigmoid(), values, backward=False).rows
               if r.op == "Sigmoid"][0]
    assert sigmoid.source == "compute" and 0.5 < sigmoid.ulp <= 3.5  # three float16 roundings


def test_strict_check_raises_at_the_op_naming_the_line():
    model = _mlp(2)
    x = tg.randn(4, 8) * 1e5
    with pytest.raises(PrecisionError) as caught:
        tg.amp.check(model, x, dtype=tg.float16, strict=True)
    error = caught.value
    assert error.op == "Cast" and "overflowed float16" in str(error)
    assert error.location is not None and isinstance(error, RuntimeError)
    tg.amp.check(_mlp(2), tg.randn(4, 8), dtype=BF16, strict=True)  # within every bound: no error


def test_ulp_helper():
    assert ulp(1.0, np.dtype(np.float16)) == 2.0**-10
    assert ulp(1.0, BF16) == 2.0**-7
    assert ulp(0.0, np.dtype(np.float16)) == 2.0**-24  # the subnormal spacing
    assert ulp(65504.0, np.dtype(np.float16)) == 32.0


# -- with the other tools -------------------------------------------------------------------------------------------
def test_autocast_with_the_profiler_and_the_nan_tracer():
    from tinygrad_nb import debug  # noqa: PLC0415

    model = _mlp(4)
    x, y = tg.randn(5, 8), tg.tensor([0, 1, 2, 3, 0])
    with tg.profile() as prof:
        with tg.autocast("cpu", dtype=tg.float16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
    calls = prof.calls
    assert calls["Linear"] == 2 and calls["Cast"] >= 6 and calls["CrossEntropy"] == 1  # the casts are ops too
    with pytest.raises(debug.NonFiniteError) as caught:
        with debug.detect_anomaly():
            with tg.autocast("cpu", dtype=tg.float16):
                model(x * 1e5)  # 1e5 is beyond float16's 65504: the cast to float16 makes inf
    filename, line = caught.value.location
    assert caught.value.op == "Cast" and filename == __file__
    assert linecache.getline(filename, line).strip().startswith("model(x * 1e5)")


@pytest.mark.parametrize("mode", [True, "portable"])
def test_autocast_replays_bitwise_under_deterministic_mode(mode):
    model = _mlp(6)
    x, y = tg.randn(9, 8), tg.randint(0, 4, (9,))
    runs = []
    for _ in range(2):
        model.zero_grad()
        with tg.deterministic(mode):
            with tg.autocast("cpu", dtype=tg.float16):
                out = model(x)
                loss = F.cross_entropy(out, y)
            loss.backward()
        runs.append([out.numpy().tobytes()] + [p.grad.numpy().tobytes() for p in model.parameters()])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("low", [tg.float16, BF16], ids=["float16", "bfloat16"])
def test_low_precision_weights_round_trip_through_checkpoints(tmp_path, low):
    model = _mlp(7).to(dtype=low)
    tg.save(tmp_path / "m.safetensors", model=model)
    other = _mlp(8).to(dtype=low)
    tg.load(tmp_path / "m.safetensors", model=other)
    for a, b in zip(model.parameters(), other.parameters()):
        assert b.dtype == low and a.numpy().tobytes() == b.numpy().tobytes()


def test_fp16_autocast_model_exports_and_validates_with_fp16_tolerances():
    pytest.importorskip("onnx")
    import tinygrad_nb.export  # noqa: F401, PLC0415

    model = _mlp(9)
    with tg.autocast("cpu", dtype=tg.float16):
        result = tg.export.onnx(model, tg.randn(4, 8), None, verbose=False)
    assert result.validation.ok
    kinds = [n.op_type for n in result.model.graph.node]
    assert "Cast" in kinds  # autocast's casts are in the graph: the file computes in float16 as the model did
