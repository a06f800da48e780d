"""Appraise a candidate dataset's value to a model without sharing either."""

__version__ = "0.1.0"
