"""``genint explain CKPT --config CONFIG --property NAME | --gradcam``, and ``genint explain --sanity``:
the property gradients and GradCAM of cluster/explain.py, settings in the job's ``explain:`` section
(the flags override its steps, permutations and output directory)."""

import argparse
from collections.abc import Callable
from pathlib import Path

from cluster.explain_config import MAX_PERMUTATIONS, MAX_STEPS, MIN_PERMUTATIONS, MIN_STEPS
from cluster.progress import console


def _explain_settings(args: argparse.Namespace, config):
    """The ``explain`` section (its defaults where the job has none) with the flags applied, revalidated."""
    from cluster.errors import ConfigError
    from cluster.explain_config import ExplainConfig

    settings = config.explain if config is not None and config.explain is not None else ExplainConfig()
    updates = {"steps": args.steps, "permutations": args.permutations, "output_dir": args.output}
    merged = settings.model_dump() | {key: value for key, value in updates.items() if value is not None}
    try:
        return ExplainConfig.model_validate(merged)
    except ValueError as error:  # pydantic's: a flag that fits its range but not the other settings
        raise ConfigError(f"explain: {' '.join(str(error).split())[:300]}") from None


def _sanity(args: argparse.Namespace) -> int:
    from rich.table import Table

    from trainers.explain.sanity import sanity_verdicts

    settings = _explain_settings(args, None)
    verdicts = sanity_verdicts(settings.steps, settings.permutations, settings.seed, settings.level)
    table = Table(title=f"sanity: E[|grad|] of model-free outputs ({settings.steps} steps, K={settings.permutations}, "
                        f"two-sided, level {settings.level})")
    for column in ("relationship", "E[|grad|] per step", "p-value", "significant", "expected", "verdict"):
        table.add_column(column, justify="right")
    for verdict in verdicts:
        table.add_row(verdict.relationship, f"{verdict.statistic:.4g}", f"{verdict.p_value:.4g}", "yes" if verdict.significant else "no",
                      "yes" if verdict.expected_significant else "no", "ok" if verdict.passed else "WRONG")
    console.print(table)
    failed = [verdict.relationship for verdict in verdicts if not verdict.passed]
    console.print(f"sanity: {'all four verdicts as expected' if not failed else 'unexpected verdicts for ' + ', '.join(failed)}")
    return 0 if not failed else 1


def _explain(args: argparse.Namespace) -> int:
    from cluster.config import load_config
    from cluster.errors import ConfigError
    from cluster.explain import (
        explain_job_gradcam,
        explain_job_property,
        explain_output_dir,
        parse_property,
        property_table,
        write_gradcam_outputs,
        write_property_outputs,
    )
    from cluster.progress import progress_bar
    from cluster.run_dirs import check_output_dir

    if args.sanity:
        if args.checkpoint or args.config or args.overrides or args.property or args.gradcam:
            raise ConfigError("genint explain --sanity: takes no CKPT, --config, --set, --property or --gradcam (it explains no model)")
        return _sanity(args)
    if not args.checkpoint or not args.config:
        raise ConfigError("genint explain: give CKPT and --config CONFIG (or --sanity)")
    if not args.property and not args.gradcam:
        raise ConfigError("genint explain: give --property NAME, --gradcam or both")
    name = parse_property(args.property) if args.property else None
    job = load_config(args.config, args.overrides)
    settings = _explain_settings(args, job)
    directory = explain_output_dir(job, settings)
    check_output_dir(directory, "explain output directory")
    if name is not None:
        with progress_bar(f"explain {name.text}") as update:
            explanation = explain_job_property(job, args.checkpoint, name, settings, update)
        console.print(property_table(explanation))
        paths = write_property_outputs(explanation, directory, name.slug)
        verdict = "significant" if explanation.test.overall_significant else "not significant"
        console.print(f"explain {name.text}: E[|grad|] = {explanation.test.overall_statistic:.4g} per step, p = "
                      f"{explanation.test.overall_p_value:.4g} ({verdict} at {settings.level}) -> {', '.join(map(str, paths))}",
                      markup=False, highlight=False, soft_wrap=True)
    if args.gradcam:
        cam = explain_job_gradcam(job, args.checkpoint, settings)
        paths = write_gradcam_outputs(cam, directory, f"GradCAM at {cam.layer} ({Path(args.checkpoint).name})")
        iou = "" if cam.mean_iou is None else f", mean IoU with the stroke masks {cam.mean_iou:.3f}"
        console.print(f"explain gradcam: {len(cam.labels)} images at {cam.layer}{iou} -> {', '.join(map(str, paths))}",
                      markup=False, highlight=False, soft_wrap=True)
    return 0


def add_explain_command(commands: argparse._SubParsersAction, whole_number: Callable[[int, int], Callable[[str], int]]) -> None:
    """Add ``explain`` to ``genint``'s subparsers (its handler is EXPLAIN_HANDLERS)."""
    explain = commands.add_parser("explain", help="how much a classifier's output depends on a property (E[|grad|] with its "
                                  "permutation test, seed 004), GradCAM; settings in the config's explain: section")
    explain.add_argument("checkpoint", nargs="?", help="a trainer checkpoint directory or state_dict file")
    explain.add_argument("--config", type=Path, help="the job config (model, store, generator, directions, explain: section)")
    explain.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                         help="override one config field (repeatable), e.g. --set explain.images=8")
    explain.add_argument("--property", help="direction:<k>, background_colour or stroke_colour")
    explain.add_argument("--gradcam", action="store_true", help="GradCAM overlays (and the IoU with digit masks if "
                         "explain.gradcam.stroke_iou)")
    explain.add_argument("--sanity", action="store_true", help="the four model-free relationships (noise, sine, parabola, step) "
                         "and their verdicts")
    explain.add_argument("--steps", type=whole_number(MIN_STEPS, MAX_STEPS), help="N, steps of each sweep (default explain.steps, 64)")
    explain.add_argument("--permutations", type=whole_number(MIN_PERMUTATIONS, MAX_PERMUTATIONS),
                         help="K, shuffles in the test (default explain.permutations, 10000)")
    explain.add_argument("--output", type=Path, help="the results' directory (default explain.output_dir, else OUTPUT_DIR/explain)")


EXPLAIN_HANDLERS = {("explain", None): _explain}
