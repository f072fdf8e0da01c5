"""Benchmarks: resnorm against a minimal baseline, x-transformers and Hugging Face GPT-2.

Run with ``make bench`` (``python -m bench``); never part of ``make test``. See
``docs/performance.md`` for the latest results and `bench.__main__` for the options.
"""
