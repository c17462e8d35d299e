"""ResNet-18 and ResNet-34 from the basic residual block (He et al. 2015, Table 1).

Keras ships only the bottleneck ResNets (50/101/152). The two shallow ones are the lecture's
first residual networks: each block is two 3x3 convolutions with batch normalisation, added to an
identity shortcut, or to a 1x1 strided projection where the stage halves the resolution. Layer
names follow Keras's ResNet50 (`conv2_block1_out`, ...), so Grad-CAM and summaries read the same.
Keras has no ImageNet weights for them: they are built with random weights or load a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnncli.tf_runtime import import_keras

BN_EPSILON = 1.001e-5


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, relu: bool) -> Any:
    """Convolution (no bias: batch norm follows), batch norm, optional ReLU."""
    layers = import_keras().layers
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def basic_block(x: Any, filters: int, stride: int, name: str) -> Any:
    """Two 3x3 convolutions plus a shortcut: identity, or 1x1 projection when the shape changes."""
    layers = import_keras().layers
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_0", relu=False)
    else:
        shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_1", relu=True)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def basic_resnet(
    blocks: Sequence[int],
    name: str,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    classes: int = 1000,
    classifier_activation: str = "softmax",
) -> Any:
    """A ResNet of basic blocks with `blocks[i]` blocks in stage i + 2 (conv2_x ... conv5_x)."""
    if weights not in (None, "none"):
        raise ValueError(f"{name} has no published Keras weights; build it with weights=None")
    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, count in enumerate(blocks):
        filters = 64 * 2**stage
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            x = basic_block(x, filters, stride, f"conv{stage + 2}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def ResNet18(**kwargs: Any) -> Any:
    """ResNet-18: stages of 2-2-2-2 basic blocks, 1.8 GMACs at 224 px."""
    return basic_resnet((2, 2, 2, 2), "resnet18", **kwargs)


def ResNet34(**kwargs: Any) -> Any:
    """ResNet-34: stages of 3-4-6-3 basic blocks, 3.6 GMACs at 224 px."""
    return basic_resnet((3, 4, 6, 3), "resnet34", **kwargs)
