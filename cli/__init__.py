"""The ``aecodec`` command line (click)."""
