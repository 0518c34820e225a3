"""Distributed training with PyTorch's own engine (torchrun + DDP, gloo on the CPU).

Two processes with half the batch each give the same weights as one process with the whole
batch: each rank's loss is the mean over its equal-sized half, DDP averages the two gradients, and
the mean of two half-batch means is the full-batch mean; DistributedSampler hands rank r the
samples r, r + 2, ... of the same seeded permutation, so the two halves together are the one
process's batch. LeNet-5 has no batch norm (whose per-rank statistics would differ) and the runs
use no augmentation (drawn from each rank's own RNG). The same holds for two "nodes" of one
process each joined through torchrun's c10d rendezvous on 127.0.0.1, and for a distributed run
stopped by Ctrl-C and resumed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.train import load_checkpoint, train
from cnnlab.train.config import resolve_config
from cnnlab.train.distributed import Context
from cnnlab.train.engine import run

ARGS = ["lenet5", "--data", "fake", "--epochs", "2", "--batch-size", "16", "--no-augment", "--lr", "0.02"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same run in this process."""
    out = tmp_path_factory.mktemp("ddp") / "one"
    train("lenet5", data="fake", epochs=2, batch_size=16, augment=False, lr=0.02, out=str(out), threads=1)
    return load_checkpoint(out / "checkpoint.pt")


def _torchrun(*launch: str, args: list[str], **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launch, "-m", "cnnlab", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **popen)


def _same(state, reference):
    a, b = state["model"], reference["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key
    assert [r["test_acc"] for r in state["metrics"]] == [r["test_acc"] for r in reference["metrics"]]


def test_two_processes_equal_one(tmp_path, one_process):
    proc = _torchrun("--standalone", "--nproc_per_node=2", args=[*ARGS, "--out", str(tmp_path / "two")])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if line.startswith(("test accuracy:", "training lenet5"))]
    assert len(lines) == 2 and "2 processes" in lines[0]  # rank 0 alone prints
    state = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    _same(state, one_process)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_through_c10d_rendezvous(tmp_path, one_process):
    launch = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", f"cnnlab-test-{os.getpid()}"]
    nodes = [_torchrun(*launch, args=[*ARGS, "--out", str(tmp_path / "nodes")]) for _ in range(2)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sum("test accuracy:" in out for out in outputs) == 1
    _same(load_checkpoint(tmp_path / "nodes" / "checkpoint.pt"), one_process)


@pytest.mark.slow
def test_a_distributed_run_stopped_by_ctrl_c_resumes(tmp_path, one_process):
    args = [*ARGS, "--batch-size", "4", "--lr", "0.005", "--out", str(tmp_path / "run")]
    first = _torchrun("--standalone", "--nproc_per_node=2", args=args)
    metrics = tmp_path / "run" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not metrics.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGINT)  # torchrun passes it on to both workers
    out, _ = first.communicate(timeout=240)
    assert "interrupted at epoch" in out, out
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (saved["epoch"], saved["step"]) != (2, 0) and len(saved["rng"]) == 2
    second = _torchrun("--standalone", "--nproc_per_node=2", args=[*args, "--resume"])
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    resumed = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert [r["epoch"] for r in resumed["metrics"]] == [1, 2]
    reference = tmp_path / "reference"
    train("lenet5", data="fake", epochs=2, batch_size=4, augment=False, lr=0.005, out=str(reference), threads=1)
    _same(resumed, load_checkpoint(reference / "checkpoint.pt"))


def test_global_batch_must_divide_among_processes(tmp_path):
    config = resolve_config("lenet5", batch_size=7, out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="--batch-size 7 is the global batch: it must be divisible by the 2"):
        run(config, ctx=Context(rank=0, world_size=2))
    config = resolve_config("resnet20_cifar", batch_size=8, sync_bn=True, out=str(tmp_path / "y"))
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        run(config, ctx=Context(rank=0, world_size=2))
