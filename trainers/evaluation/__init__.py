"""Evaluation: top-k on folders and shard streams, ObjectNet, ImageNet-C (CE/mCE) and ImageNet-V2."""

from trainers.evaluation.config import EvalConfig
from trainers.evaluation.corruptions import (
    CorruptionReport,
    build_corrupted_set,
    corruption_names,
)
from trainers.evaluation.report import format_table, write_json
from trainers.evaluation.results import EvalResult, SubsetResult
from trainers.evaluation.suites import SUITES, evaluate

__all__ = [
    "SUITES",
    "CorruptionReport",
    "EvalConfig",
    "EvalResult",
    "SubsetResult",
    "build_corrupted_set",
    "corruption_names",
    "evaluate",
    "format_table",
    "write_json",
]
