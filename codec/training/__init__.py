"""Rate-distortion training as a library: data, losses, checkpoints, loop.

The CLI (``aecodec train``) and the GPU burst script are thin callers of
:func:`codec.training.loop.train`.
"""
