"""Pixel preprocessing per mode, in NumPy, equal to each Keras module's `preprocess_input`.

The registry names the mode of every architecture; these functions apply it without importing
TensorFlow, and the test suite checks each against the Keras module's own `preprocess_input`.
"""

from __future__ import annotations

import numpy as np

from cnncli.registry import Preprocessing

#: ImageNet channel means in BGR order on 0-255, as Caffe subtracts them.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
#: ImageNet channel mean and standard deviation in RGB order on 0-1, as torchvision uses them.
TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(pixels: np.ndarray, mode: Preprocessing) -> np.ndarray:
    """Map RGB float pixels in 0-255 (channels last) to what a `mode` network expects."""
    x = np.asarray(pixels, dtype=np.float32)
    if mode == "caffe":
        return x[..., ::-1] - CAFFE_MEAN_BGR
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - TORCH_MEAN) / TORCH_STD
    if mode == "none":
        return x
    raise ValueError(f"unknown preprocessing mode {mode!r}")
