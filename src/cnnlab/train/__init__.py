"""Train, evaluate and predict: ``cnnlab train``, ``cnnlab eval`` and ``cnnlab predict``.

``data`` turns a ``--data`` string into train/test datasets and holds the test-time transform
(``preprocess``) that ``predict`` applies to images from disk. ``recipes`` holds the papers'
training recipes as data, ``config`` a run's resolved arguments, ``engine`` the training loop
(``train``), ``losses`` each architecture's objective, ``optim`` the optimizer and schedule,
``checkpoint`` atomic checkpoints read with ``weights_only=True``, ``distributed`` torchrun's
process group, ``logs`` metrics.csv, TensorBoard and the training curve, ``inference`` evaluation and prediction
with a checkpoint or torchvision's pretrained weights.

The names below are imported on first use: ``import cnnlab.train.recipes`` (``cnnlab train
--list-recipes``) does not import torch.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "TrainConfig": "config", "resolve_config": "config",
    "Data": "data", "DataError": "data", "load_data": "data",
    "Interrupted": "engine", "ModelBuilder": "engine", "Reporter": "engine", "StepProgress": "engine",
    "StopRequest": "engine", "TrainingError": "engine", "TrainResult": "engine", "evaluate": "engine",
    "train": "engine", "train_one_epoch": "engine",
    "EvalResult": "inference", "Trained": "inference", "WeightsError": "inference", "evaluate_model": "inference",
    "from_checkpoint": "inference", "from_torchvision": "inference", "predict_images": "inference",
    "trained_splits": "inference",
    "RECIPES": "recipes", "Recipe": "recipes", "default_recipe": "recipes", "get_recipe": "recipes",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
