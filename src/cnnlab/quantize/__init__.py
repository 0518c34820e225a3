"""Post-training static INT8 quantization: ``cnnlab quantize``.

    >>> from cnnlab.quantize import quantize_checkpoint
    >>> result = quantize_checkpoint("runs/lenet5/checkpoint.pt", "lenet5", "lenet5.xml")  # doctest: +SKIP
    >>> result.float_top1, result.int8_top1, result.speedup  # doctest: +SKIP

``backends`` holds one class per backend (OpenVINO through NNCF, ONNX Runtime's static
quantization, PyTorch's PT2E with the x86 inductor quantizer) behind one interface;
``calibrate`` the calibration batches (from the training split), the test split and the
accuracy loop; ``run`` the pipeline (``quantize_trained``: fold BN, calibrate, write atomically,
evaluate float vs INT8, time both through ``cnnlab.bench``) and ``quantize_model`` for any
module. docs/quantize.md has the measurements behind ``DEFAULT_BACKEND``.

The names below are imported on first use: ``cnnlab.quantize.backends`` imports no torch, so the
command line's ``--help`` stays fast.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "BACKENDS": "backends", "DEFAULT_BACKEND": "backends", "Backend": "backends", "QuantizeError": "backends",
    "get_backend": "backends",
    "Accuracy": "calibrate", "calibration_batches": "calibrate", "top1_accuracy": "calibrate",
    "QuantizeResult": "run", "Written": "run", "check_out": "run", "measure_latency": "run",
    "quantize_checkpoint": "run", "quantize_model": "run", "quantize_trained": "run",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
