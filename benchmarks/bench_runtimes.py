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
    cnnlab <rt> bf16   eager, channels_last and OpenVINO in bf16 (``--bf16-models``, resnet50 by
                       default) on a CPU with native bf16, with the error against fp32 printed
                       goal: the fastest bf16 >= 1.8x the fastest fp32

and ends with one PASS/FAIL line per goal of issue 10 (cnnlab eager within +-5 % of tv eager;
the fastest verified fp32 runtime >= 1.5x tv eager for resnet50 and >= 4x for mobilenet_v2 and
shufflenet_v2_x1_0). Only runtimes whose output agrees with fp32 eager are timed: the others
are listed with the reason.

Every contender is timed by the same plain loop (``time.perf_counter`` per call, median) under
``torch.inference_mode`` with the same thread count. Speed-ups are throughput ratios to tv eager
(higher is faster). Measure on a quiet machine: eager suffers most from other processes' load.

    .venv/bin/python benchmarks/bench_runtimes.py [--repeat 20] [--rounds 3] [--threads N]
        [--models resnet50,mobilenet_v2] [--runtimes eager,channels_last,fused,onnxruntime,openvino]
        [--bf16-models resnet50]
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
from cnnlab.bench import machine_info
from cnnlab.bench.runtimes import get_runtime
from cnnlab.bench.verify import TOLERANCE, max_rel_diff, nondegenerate

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


# The goals: minimum speed-up of the fastest verified fp32 runtime over tv eager.
SPEEDUP_GOAL = {"resnet50": 1.5, "mobilenet_v2": 4.0, "shufflenet_v2_x1_0": 4.0}
EAGER_GOAL = 0.05     # cnnlab eager within +-5 % of tv eager
HAND_GOAL = 1.05      # a cnnlab runtime at most 5 % slower than the same runtime driven by hand
BF16_GOAL = 1.8       # best bf16 runtime over the best fp32 one, on a CPU with native bf16
BF16_RUNTIMES = ("eager", "channels_last", "openvino")


def verified(name: str, model: torch.nn.Module, x: torch.Tensor, reference: torch.Tensor, threads: int,
             dtype: str, notes: list[str]) -> Callable[[], Any] | None:
    """The runtime's call when it runs here and agrees with fp32 eager, else None with a note."""
    adapter = get_runtime(name)
    reason = adapter.available("cpu", dtype)
    if reason:
        notes.append(f"{name} {dtype}: {reason}")
        return None
    try:
        fn = adapter.prepare(model, x, dtype=dtype, threads=threads)
        diff = max_rel_diff(fn(), reference)
    except Exception as exc:  # noqa: BLE001 - reported
        notes.append(f"{name} {dtype}: {type(exc).__name__}: {exc}".splitlines()[0])
        return None
    if diff > TOLERANCE[dtype]:
        notes.append(f"{name} {dtype}: disagrees with fp32 eager (max rel diff {diff:.2g})")
        return None
    if dtype != "fp32":
        notes.append(f"{name} {dtype}: error against fp32 eager {diff:.2g} (max |diff| / max |fp32|)")
    return fn


def goal(ok: bool, text: str) -> str:
    return f"  {'PASS' if ok else 'FAIL'}  {text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per contender per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, contenders interleaved; the best median counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--bf16-models", default="resnet50", help="models also timed in bf16 ('' for none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = machine_info()["cpu_flags"]
    native_bf16 = any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    print(f"threads {args.threads}, cores {os.cpu_count()}, torch {torch.__version__}, cpu flags {' '.join(flags)}, "
          "load before " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    verdicts = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        x = torch.randn(1, 3, 224, 224)
        tv = getattr(torchvision.models, name)().eval()
        ours = cnnlab.create_model(name).eval()
        # a random head gives near-constant logits: compare on a non-degenerate copy (as cnnlab bench does)
        ours, head_note = nondegenerate(ours, x)
        contenders: dict[str, Callable[[], Any]] = {"tv eager": lambda tv=tv: tv(x)}
        fp32_keys, bf16_keys, notes = [], [], [head_note] if head_note else []
        with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
            reference = ours(x)
            for runtime in args.runtimes.split(","):
                fn = verified(runtime, ours, x, reference, args.threads, "fp32", notes)
                if fn is not None:
                    contenders[f"cnnlab {runtime}"] = fn
                    fp32_keys.append(f"cnnlab {runtime}")
            if name in args.bf16_models.split(","):
                if not native_bf16:
                    notes.append("bf16: skipped, this CPU has no native bf16 (avx512_bf16 or amx_bf16)")
                for runtime in BF16_RUNTIMES if native_bf16 else ():
                    fn = verified(runtime, ours, x, reference, args.threads, "bf16", notes)
                    if fn is not None:
                        contenders[f"cnnlab {runtime} bf16"] = fn
                        bf16_keys.append(f"cnnlab {runtime} bf16")
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
            print(f"  {key:26s} {ms:9.2f} ms   {base / ms:6.2f}x{extra}")
        for note in notes:
            print(f"  note: {note}")
        if "cnnlab eager" in best:
            change = best["cnnlab eager"] / base - 1
            verdicts.append(goal(abs(change) <= EAGER_GOAL, f"{name}: cnnlab eager {change * 100:+.1f} % vs tv eager "
                                                            f"(goal within +-{EAGER_GOAL * 100:.0f} %)"))
        if fp32_keys:
            fastest = min(fp32_keys, key=best.__getitem__)
            speedup, want = base / best[fastest], SPEEDUP_GOAL.get(name)
            if want:
                verdicts.append(goal(speedup >= want, f"{name}: fastest verified fp32 ({fastest}) {speedup:.2f}x "
                                                      f"tv eager (goal >= {want}x)"))
            for key in fp32_keys:
                hand = best.get(f"hand {key[7:]}")
                if hand:
                    verdicts.append(goal(best[key] <= HAND_GOAL * hand, f"{name}: {key} {best[key]:.2f} ms vs hand-driven "
                                                                        f"{hand:.2f} ms (goal <= +5 %)"))
            if bf16_keys:
                fast16 = min(bf16_keys, key=best.__getitem__)
                ratio = best[fastest] / best[fast16]
                verdicts.append(goal(ratio >= BF16_GOAL, f"{name}: fastest bf16 ({fast16}) {ratio:.2f}x the fastest "
                                                         f"fp32 (goal >= {BF16_GOAL}x; error in the notes above)"))
    print("\ngoals (issue 10)")
    print("\n".join(verdicts))
    print("\nload after " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
