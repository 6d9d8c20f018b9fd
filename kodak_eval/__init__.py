"""Rate-distortion evaluation on Kodak (or any folder): aecodec's models
beside JPEG, WebP, AVIF, JPEG 2000, JPEG XL and HEIC, with BD-rates.

    python -m kodak_eval [--data DIR] [--out DIR] [--codecs a,b] [--reuse]
"""
