"""Sentence-encoder trainer for the self-tuning retrieval server (see trainer/README.md)."""

__version__ = "0.1.0"
