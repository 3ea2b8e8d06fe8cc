"""The papers' controlled benchmarks, each one module and one YAML file in ``configs/experiments/``.

This package sits above every other: an experiment composes genint jobs (``cluster``), datagen's
generators and trainers' evaluation. Nothing imports it but the CLI's ``experiment`` verb, which
finds the experiment through ``experiments.registry`` from its config's ``kind``.
"""
