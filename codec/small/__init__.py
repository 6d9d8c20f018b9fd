"""Small-data autoencoders on scikit-learn's bundled 8x8 digits.

The ideas behind the codec's backbone, each small enough to train on two
CPU cores in a minute or two, on data that ships with a package:

* :mod:`.onehot`  -- a one-hot code that clusters digits without labels;
* :mod:`.generative` -- a VAE and an adversarial autoencoder (AAE) whose
  decoders generate digits from a prior;
* :mod:`.swap` -- a code split into content (one-hot) and style, swappable.

Labels are used only for evaluation (:mod:`.metrics`).
"""
