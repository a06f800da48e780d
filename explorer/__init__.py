"""Appraise a candidate dataset's value to a model without sharing either."""

import os

# torch's C++ layer (c10d, gloo) prints multi-line warnings when a peer leaves a session; the
# project reports every failure in one sentence of its own, so keep only C++ errors.
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

__version__ = "0.1.0"
