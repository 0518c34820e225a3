"""cnnlab: a laboratory for convolutional network architectures.

    >>> import cnnlab
    >>> cnnlab.list_models("vgg1?")
    ['vgg11', 'vgg13', 'vgg16', 'vgg19']
    >>> model = cnnlab.create_model("vgg16", num_classes=10)
"""

from cnnlab.analysis import Analysis, analyze
from cnnlab.registry import ModelInfo, Paper, create_model, list_models, model_info

__all__ = ["Analysis", "analyze", "ModelInfo", "Paper", "create_model", "list_models", "model_info"]
__version__ = "0.1.0"
