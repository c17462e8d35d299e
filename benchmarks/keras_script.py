"""The plain Keras way to label one photo, as tutorials and the seed scripts write it.

    python benchmarks/keras_script.py ARCH WEIGHTS PHOTO

This is the baseline `benchmarks/run.py` times against `cnn`: import TensorFlow, build the
model, load its weights, resize the photo, preprocess, `model.predict`, `decode_predictions`.
It is deliberately not optimised: it is what a person copies from the Keras documentation.
"""

import sys

import numpy as np
from tensorflow import keras
from tensorflow.keras.preprocessing import image

MODELS = {  # arch -> (constructor, module with preprocess_input/decode_predictions, input size)
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50, 224),
    "mobilenet_v2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2, 224),
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16, 224),
    "inception_v3": (keras.applications.InceptionV3, keras.applications.inception_v3, 299),
    "densenet121": (keras.applications.DenseNet121, keras.applications.densenet, 224),
}

arch, weights, photo = sys.argv[1:4]
constructor, module, size = MODELS[arch]
model = constructor(weights=weights)
img = image.load_img(photo, target_size=(size, size))
x = image.img_to_array(img)
x = np.expand_dims(x, axis=0)
x = module.preprocess_input(x)
preds = model.predict(x)
print("Predicted:", module.decode_predictions(preds, top=5)[0])
