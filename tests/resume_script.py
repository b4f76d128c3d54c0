"""Training run for the exact-resume test (tests/test_checkpoint.py), run in fresh processes.

    python tests/resume_script.py full   OUT.json                 # 20 steps straight
    python tests/resume_script.py first  OUT.json CKPT            # 10 steps, then save a checkpoint
    python tests/resume_script.py resume OUT.json CKPT            # fresh objects, load the checkpoint, 10 more steps
    python tests/resume_script.py resume-without-rng OUT.json CKPT  # the same, but leaving the RNG state alone

The data is the bundled iris CSV (150 rows) read with ``read_csv``; the DataLoader shuffles it in batches of 40, so
step 10 is in the middle of the third epoch. The model has dropout, Adam keeps moments, and the LR follows a schedule:
everything that must be restored for the losses and final parameters to match bit for bit. The resumed run builds
its objects under another seed, so anything the checkpoint failed to restore would show. OUT.json gets the losses
(float.hex), the parameter bytes (hex), the final LR and what the checkpoint recorded.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import tinygrad_nb as tg
from tinygrad_nb import nn, optim
from tinygrad_nb.checkpoint import load, save
from tinygrad_nb.data import DataLoader, Table, TensorDataset, read_csv
from tinygrad_nb.nn import functional as F

IRIS = Path(tg.__file__).parent / "datasets" / "iris.csv"

TOTAL_STEPS, SAVE_AT = 20, 10


def build(seed: int) -> tuple[Table, nn.Module, optim.Optimizer, optim.lr_scheduler.LRScheduler, DataLoader]:
    tg.manual_seed(seed)
    table = read_csv(IRIS, target="species")
    x, y = table.to_tensors()
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
    loader = DataLoader(TensorDataset(x, y), batch_size=40, shuffle=True)
    return table, model, opt, sched, loader


def train(model: nn.Module, opt: optim.Optimizer, sched: optim.lr_scheduler.LRScheduler, loader: DataLoader,
          step: int, stop: int, checkpoint: str | None = None, extra: dict | None = None) -> list[str]:
    losses = []
    model.train()
    while step < stop:
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()).hex())
            step += 1
            if step == stop:
                if checkpoint is not None:
                    save(checkpoint, model=model, optimizer=opt, scheduler=sched, loader=loader, step=step,
                         extra=extra)
                return losses
    return losses


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    checkpoint = sys.argv[3] if len(sys.argv) > 3 else None
    recorded = {}
    if mode == "full":
        _, model, opt, sched, loader = build(seed=0)
        losses = train(model, opt, sched, loader, 0, TOTAL_STEPS)
    elif mode == "first":
        table, model, opt, sched, loader = build(seed=0)
        losses = train(model, opt, sched, loader, 0, SAVE_AT, checkpoint, {"vocabularies": table.vocabularies})
    else:
        _, model, opt, sched, loader = build(seed=999)
        ckpt = load(checkpoint, model=model, optimizer=opt, scheduler=sched, loader=loader,
                    restore_rng=mode != "resume-without-rng")
        losses = train(model, opt, sched, loader, ckpt.step, TOTAL_STEPS)
        recorded = {"extra": ckpt.extra, "data": ckpt.fingerprint["data"]["files"],
                    "code": ckpt.fingerprint["code"]["origin"], "restored": ckpt.restored}
    params = {k: v.numpy().tobytes().hex() for k, v in model.state_dict().items()}
    with open(out, "w") as f:
        json.dump({"losses": losses, "params": params, "lr": opt.param_groups[0]["lr"], "recorded": recorded}, f)


if __name__ == "__main__":
    main()
