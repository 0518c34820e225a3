"""How fast is each cnnlab runtime next to torchvision eager and next to ONNX Runtime / OpenVINO
driven by hand? Side by side in one run (batch 1, 224x224), with the machine's load printed.

For each of resnet50, mobilenet_v2 and shufflenet_v2_x1_0 it times, interleaved round by round
(so a change in the machine's load hits every contender alike), and prints ratios:

    tv eager           torchvision's model, eager (the baseline: ratio 1.00)
    cnnlab eager       the zoo's model, eager          goal: within +-5 % of tv eager
    cnnlab <runtime>   each runtime through cnnlab.bench's adapters (verified first)
    hand onnxruntime   the same cnnlab model exported and run with onnxruntime by hand
    hand openvino      the same ONNX file compiled with openvino by hand (f32 hint)
                       goal: cnnlab's runtime within 5 % of the hand-driven one

Every contender is timed by the same plain loop (``time.perf_counter`` per call, median) under
``torch.inference_mode`` with the same thread count. Speed-ups are throughput ratios to tv eager
(higher is faster). Measure on a quiet machine: eager suffers most from other processes' load.

    .venv/bin/python benchmarks/bench_runtimes.py [--repeat 20] [--rounds 3] [--threads N]
        [--models resnet50,mobilenet_v2] [--runtimes eager,channels_last,fused,onnxruntime,openvino]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any, Callable

import torch
import torchvision

import cnnlab
from cnnlab.bench.runtimes import get_runtime
from cnnlab.bench.verify import max_rel_diff

MODELS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")
RUNTIMES = ("eager", "channels_last", "fused", "onnxruntime", "openvino")


def median_ms(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def hand_onnx(model: torch.nn.Module, x: torch.Tensor, folder: str, threads: int) -> dict[str, Callable[[], Any]]:
    import onnxruntime as ort
    import openvino as ov

    path = os.path.join(folder, "model.onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                                                     "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return {
        "hand onnxruntime": lambda: session.run(None, feed)[0],
        "hand openvino": lambda: request.infer({0: x.numpy()}, share_inputs=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per contender per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, contenders interleaved; the best median counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, cores {os.cpu_count()}, torch {torch.__version__}, load before "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    for name in args.models.split(","):
        torch.manual_seed(0)
        x = torch.randn(1, 3, 224, 224)
        tv = getattr(torchvision.models, name)().eval()
        ours = cnnlab.create_model(name).eval()
        contenders: dict[str, Callable[[], Any]] = {"tv eager": lambda tv=tv: tv(x)}
        notes = []
        with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
            reference = ours(x)
            for runtime in args.runtimes.split(","):
                adapter = get_runtime(runtime)
                reason = adapter.available("cpu", "fp32")
                if reason:
                    notes.append(f"{runtime}: {reason}")
                    continue
                try:
                    fn = adapter.prepare(ours, x, threads=args.threads)
                    diff = max_rel_diff(fn(), reference)
                except Exception as exc:  # noqa: BLE001 - reported
                    notes.append(f"{runtime}: {type(exc).__name__}: {exc}".splitlines()[0])
                    continue
                if diff > 1e-3:
                    notes.append(f"{runtime}: disagrees with eager ({diff:.2g})")
                contenders[f"cnnlab {runtime}"] = fn
            contenders.update(hand_onnx(ours, x, folder, args.threads))
        best = {k: float("inf") for k in contenders}
        for _ in range(args.rounds):
            for key, fn in contenders.items():
                best[key] = min(best[key], median_ms(fn, args.repeat))
        base = best["tv eager"]
        print(f"\n{name} (batch 1, 3x224x224), speed-up = tv eager ms / ms")
        for key, ms in best.items():
            extra = ""
            if key.startswith("cnnlab ") and f"hand {key[7:]}" in best:
                extra = f"   vs hand-driven: {best[f'hand {key[7:]}'] / ms:.3f}x"
            if key == "cnnlab eager":
                extra = f"   vs tv eager: {(ms / base - 1) * 100:+.1f} % time"
            print(f"  {key:22s} {ms:9.2f} ms   {base / ms:6.2f}x{extra}")
        for note in notes:
            print(f"  not timed: {note}")
    print("\nload after " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
