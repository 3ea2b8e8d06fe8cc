"""The ``genint`` command line. Errors become one line on stderr; tracebacks only with --debug.

Exit codes: 0 success, 1 failure (including verify problems), 2 bad config or usage,
130 interrupted.
"""

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from cluster.config import check_output_dir_is_this_jobs, config_hash, load_config, resolved_yaml, save_resolved
from cluster.correlation_cli import ANALYSE_HANDLERS, add_analyse_commands
from cluster.errors import ClusterError, ConfigError
from cluster.explain_cli import EXPLAIN_HANDLERS, add_explain_command
from cluster.jobs_cli import CLUSTER_ADDRESS_HELP, JOB_HANDLERS, add_jobs_commands
from cluster.progress import console, progress_bar, summary_tables
from cluster.strategy_cli import STRATEGY_HANDLERS, add_strategy_commands
from datagen.errors import DatagenError
from shards.config import MAX_PREPARE_WORKERS, MAX_SEED
from shards.errors import ShardError
from shards.files import write_durably
from shards.locations import is_s3_url
from trainers.errors import TrainError
from trainers.limits import MAX_CLASSES, MAX_IIA_TRIPLES

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PROJECT_ERRORS = (ShardError, DatagenError, TrainError, ClusterError)
# Where `genint datagen | train` run without --address (a Ray job's driver finds RAY_ADDRESS set).
EMBEDDED_DEFAULT = "the cluster in RAY_ADDRESS, else an embedded local Ray"


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (``genint run: error: ...``), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="job YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one config field (repeatable), e.g. --set train.model=resnet18")


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {text})") from None


def _whole_number(minimum: int, maximum: int):
    """An argparse type: a whole number in [minimum, maximum]."""
    def parse(text: str) -> int:
        if not text.strip().lstrip("-").isdigit() or not minimum <= int(text) <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from {minimum} to {maximum} (got {text})")
        return int(text)
    return parse


def _store_root(text: str) -> "Path | str":
    """A store directory, or an ``s3://`` URL kept as text (Path would fold its ``//``)."""
    return text if text.startswith("s3://") else Path(text)


def _stream_name(text: str) -> str:
    from shards.names import is_name_part

    if not is_name_part(text):
        raise argparse.ArgumentTypeError(f"must be 1-100 characters from [A-Za-z0-9_] (got {text[:100]!r}); "
                                         "it names a directory inside the store")
    return text


def _severities(text: str) -> list[int]:
    levels = [part.strip() for part in text.split(",")]
    if not all(level in {"1", "2", "3", "4", "5"} for level in levels):
        raise argparse.ArgumentTypeError(f"must be comma-separated severities from 1 to 5 (got {text})")
    return sorted({int(level) for level in levels})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genint", description="Generative interventions at cluster scale.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a job on an embedded local Ray")
    _add_config_arguments(run)

    experiment = commands.add_parser("experiment", help="run the experiment its config's kind names (configs/experiments/, "
                                     "e.g. Colored Digits, the paper's Table 5); finished stages are reused")
    _add_config_arguments(experiment)
    experiment.add_argument("--fresh", action="store_true", help="delete the run directory first and redo every stage")

    datagen = commands.add_parser("datagen", help="run generation alone (embedded local Ray or --address)")
    _add_config_arguments(datagen)
    datagen.add_argument("--address", help=f"{CLUSTER_ADDRESS_HELP} (default: {EMBEDDED_DEFAULT})")

    train = commands.add_parser("train", help="run training alone on the job's shards (embedded local Ray or --address)")
    _add_config_arguments(train)
    train.add_argument("--address", help=f"{CLUSTER_ADDRESS_HELP} (default: {EMBEDDED_DEFAULT})")

    _add_config_arguments(commands.add_parser("directions", help="compute the generator's GANSpace directions (resumable)"))

    generator = commands.add_parser("generator", help="generator tools").add_subparsers(dest="action", required=True)
    _add_config_arguments(generator.add_parser("train", help="train the job's CVAE or CGN on its training stream"))

    evaluate = commands.add_parser("eval", help="top-1/top-5 (ObjectNet, ImageNet-C mCE, ImageNet-V2, folders, shards)")
    evaluate.add_argument("checkpoint", help="a trainer checkpoint directory, a state_dict file, or torchvision weights name")
    evaluate.add_argument("--suite", required=True, help="imagefolder, shards, objectnet, imagenet-c, imagenet-v2, or iia (a shard "
                          "stream whose samples carry causal variables; needs --config: train.objective's causal model and alignment)")
    evaluate.add_argument("--data", required=True, type=_store_root, help="the evaluation set's directory (shards: also s3://BUCKET/PREFIX)")
    evaluate.add_argument("--config", type=Path, help="the job config (model, classes, normalisation); else the flags below")
    evaluate.add_argument("--arch", default="resnet152", help="model architecture without --config (default resnet152)")
    evaluate.add_argument("--num-classes", type=_whole_number(1, MAX_CLASSES), default=1000, help="classifier outputs without --config (default 1000)")
    evaluate.add_argument("--json", type=Path, help="where the results go (default ./eval-SUITE.json)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.add_argument("--objectnet-unmapped", choices=("error", "skip"), default="error",
                          help="an ObjectNet folder outside the 113 ImageNet-overlapping classes: fail (default) or leave it out")
    evaluate.add_argument("--triples", type=_whole_number(1, MAX_IIA_TRIPLES), default=10_000,
                          help="iia: (base, source, variable) triples sampled from the stream (default 10000)")

    corrupt = commands.add_parser("imagenet-c", help="ImageNet-C tools").add_subparsers(dest="action", required=True)
    build = corrupt.add_parser("build", help="make a corruption/severity directory from an ImageFolder")
    build.add_argument("source", type=Path)
    build.add_argument("out", type=Path)
    build.add_argument("--corruptions", default="all", help="comma-separated names, or all (the 15 of ImageNet-C)")
    build.add_argument("--severities", type=_severities, default=[1, 2, 3, 4, 5], help="comma-separated, from 1 to 5")
    build.add_argument("--workers", type=_whole_number(1, MAX_PREPARE_WORKERS), default=1)

    config = commands.add_parser("config", help="job config tools").add_subparsers(dest="action", required=True)
    _add_config_arguments(config.add_parser("check", help="validate a config and print it resolved"))

    shards = commands.add_parser("shards", help="shard store tools").add_subparsers(dest="action", required=True)
    shards.add_parser("verify", help="check every manifest line against its files").add_argument("dir", type=_store_root)
    shards.add_parser("inspect", help="per-stream totals, classes and provenance").add_argument("dir", type=_store_root)

    prepare = commands.add_parser("prepare", help="ImageFolder tree -> shuffled shards (resumable)")
    prepare.add_argument("source", type=Path, help="ImageFolder root: one folder per class")
    prepare.add_argument("out", type=_store_root, help="store root directory or s3://BUCKET/PREFIX; the stream lands in OUT/STREAM")
    prepare.add_argument("--stream", required=True, type=_stream_name, help="stream name, e.g. original")
    prepare.add_argument("--seed", type=_whole_number(0, MAX_SEED), default=0, help="shuffle seed (default 0)")
    prepare.add_argument("--workers", type=_whole_number(1, MAX_PREPARE_WORKERS), default=1, help="decoding processes (default 1)")

    examples = commands.add_parser("examples", help="write small example data sets").add_subparsers(dest="action", required=True)
    digits = examples.add_parser("digits", help="scikit-learn's digits as an ImageFolder of 32 px PNGs")
    digits.add_argument("dest", type=Path)
    top = commands.add_parser("top", help="live dashboard of a running job's metrics endpoint")
    top.add_argument("job", nargs="?", help="a running job's name (its controller gives the metrics URL)")
    top.add_argument("--metrics", metavar="URL", help="the job's metrics URL, as genint run prints it (instead of JOB)")
    top.add_argument("--address", help=f"{CLUSTER_ADDRESS_HELP}; the cluster running JOB (default: auto)")
    top.add_argument("--interval", type=_seconds, default=2.0, help="seconds between polls (default 2)")
    top.add_argument("--once", action="store_true", help="print one snapshot (two polls one interval apart) and exit")
    add_jobs_commands(commands, _add_config_arguments)
    add_strategy_commands(commands, _add_config_arguments)
    add_analyse_commands(commands, _add_config_arguments)
    add_explain_command(commands, _whole_number)
    return parser


def _load_job(args: argparse.Namespace):
    """The command's job config, validated, with its output directories checked (nothing written yet)."""
    from cluster.run_dirs import check_output_dir

    config = load_config(args.config, args.overrides)
    check_output_dir(config.local_output_dir)
    for root, what in ((config.output_dir, "output_dir"), (config.shards.root, "shards.root")):
        if is_s3_url(root):
            from shards.storage import S3Store

            S3Store(root).check_bucket()  # endpoint, bucket and credentials, before anything is written
        elif root is not None and what != "output_dir":
            check_output_dir(root, what)
    return config


def _run(args: argparse.Namespace) -> int:
    from cluster.run import run_job

    result = run_job(_load_job(args))
    for table in summary_tables(result.streams):
        console.print(table)
    for stream, report in result.generated.items():
        console.print(f"generated {stream}: {report.images} images in {report.shards} shards ({report.restarts} actor restarts)")
    trained = ", ".join(f"{stream} {count}" for stream, count in result.trained_samples.items())
    losses = ", ".join(f"{stream} {loss:.4f}" for stream, loss in result.final_losses.items())
    console.print(f"trained: {result.train.steps} steps; samples {trained}; final losses {losses}")
    console.print(f"outputs: {result.output_dir} (checkpoint {result.train.checkpoint}; config sha256 {result.config_hash[:12]})")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    # The one import of experiments/ (it sits above cluster): lazy, so other verbs never load it.
    from experiments.registry import load_experiment

    experiment = load_experiment(args.config, args.overrides)
    for renderable in experiment.run(fresh=args.fresh):
        console.print(renderable)
    return 0


def _datagen(args: argparse.Namespace) -> int:
    from cluster.generation import plan_job_generation, run_datagen_stages, run_pool
    from cluster.local_ray import ray_session

    config = _load_job(args)
    check_output_dir_is_this_jobs(config)
    # Every input is checked (weights, directions, strategy, classes) before the config is saved.
    plan = plan_job_generation(config, config_hash(config))
    save_resolved(config)

    def run_stage(stage):
        with progress_bar(stage.label) as update:
            report = run_pool(stage.make_pool(update))
        console.print(stage.summary(report, config.store_dir))
        return report

    with ray_session(args.address):
        run_datagen_stages(config, plan, run_stage)
    return 0


def _train(args: argparse.Namespace) -> int:
    from cluster.local_ray import cluster_has_gpus, ray_session
    from cluster.training import check_streams_committed, train_job
    from trainers.ray_train import check_train_config
    from trainers.shard_sources import with_epoch_length

    config = _load_job(args)
    check_output_dir_is_this_jobs(config)
    check_streams_committed(config)
    check_train_config(with_epoch_length(config.train, config.store_dir), config.train.workers)
    save_resolved(config)
    with ray_session(args.address), progress_bar("train") as update:
        result, last = train_job(config, update, use_gpu=cluster_has_gpus())
    if last is not None:
        losses = ", ".join(f"{stream} {loss:.4f}" for stream, loss in last.stream_losses.items())
        console.print(f"train: {result.steps} steps, final loss {last.loss:.4f} ({losses})")
    console.print(f"train: checkpoint {result.checkpoint}")
    return 0


def _directions(args: argparse.Namespace) -> int:
    from cluster.generation import compute_job_directions

    path, directions = compute_job_directions(_load_job(args))
    top = ", ".join(f"{ratio:.3f}" for ratio in directions.var_ratio[:5])
    console.print(f"directions: {directions.lat_comp.shape[0]} components of {directions.generator_id} "
                  f"(variance ratio of the top 5: {top}) -> {path}, sha256 {directions.content_hash[:12]}")
    return 0


def _generator_train(args: argparse.Namespace) -> int:
    from cluster.generation import train_generator

    from datagen.generators.training import KIND_NAMES

    config = _load_job(args)
    path = train_generator(config)
    console.print(f"generator: trained {KIND_NAMES.get(config.datagen.generator.kind, config.datagen.generator.kind)} saved to {path}")
    return 0


def _eval_device(name: str):
    """The ``--device`` flag as a torch device; a usage error when it names none this machine has."""
    import torch

    from datagen.generators.loading import pick_device

    try:
        device = pick_device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ConfigError(f"--device {name!r}: no such CUDA device is visible here ({torch.cuda.device_count()} found)")
    return device


def _eval_iia(args: argparse.Namespace) -> int:
    """``genint eval --suite iia``: behavioural accuracy and interchange intervention accuracy on one stream."""
    from trainers.iia import evaluate_iia
    from trainers.models import load_classifier

    if not args.config:
        raise ConfigError("--suite iia needs --config: the job config whose train.objective names the causal model and alignment")
    train = load_config(args.config).train
    device = _eval_device(args.device)
    model = load_classifier(args.checkpoint, train.model, train.num_classes).to(device)
    result = evaluate_iia(model, args.data, train.objective.causal_model, train.objective.alignment, train.data, args.triples,
                          device=device)
    console.print(f"iia: {result.samples} samples of {result.data_dir}: behavioural top-1 {100 * result.behavioural_top1:.2f} %, "
                  f"IIA {100 * result.iia:.2f} % over {result.triples} triples ({result.causal_model} at {result.alignment_module})")
    destination = args.json or Path("eval-iia.json")
    write_durably(destination, json.dumps({"suite": "iia", **dataclasses.asdict(result)}, indent=1).encode())
    console.print(f"eval: results -> {destination}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from trainers.config import ARCHITECTURES
    from trainers.evaluation import SUITES, EvalConfig, evaluate, format_table, write_json
    from trainers.models import load_classifier

    if args.suite == "iia":
        return _eval_iia(args)
    if args.suite not in SUITES:
        raise ConfigError(f"--suite {args.suite!r}: choose one of {', '.join(SUITES)}")
    arch, num_classes, eval_config = args.arch, args.num_classes, EvalConfig(objectnet_unmapped=args.objectnet_unmapped)
    if args.config:
        train = load_config(args.config).train
        arch, num_classes = train.model, train.num_classes
        eval_config = eval_config.model_copy(update={"loader": train.data})
    elif arch not in ARCHITECTURES:
        raise ConfigError(f"--arch {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    device = _eval_device(args.device)
    model = load_classifier(args.checkpoint, arch, num_classes)
    result = evaluate(model, args.suite, args.data, eval_config, device)
    console.print(format_table(result))
    destination = args.json or Path(f"eval-{args.suite}.json")
    write_json(result, destination)
    console.print(f"eval: results -> {destination}")
    return 0


def _imagenet_c_build(args: argparse.Namespace) -> int:
    from trainers.evaluation import build_corrupted_set, corruption_names

    known = corruption_names()
    corruptions = known[:15] if args.corruptions == "all" else [name.strip() for name in args.corruptions.split(",")]
    unknown = [name for name in corruptions if name not in known]
    if unknown:
        raise ConfigError(f"--corruptions: unknown {', '.join(unknown)} (choose from all, {', '.join(known)})")
    report = build_corrupted_set(args.source, args.out, corruptions, args.severities, workers=args.workers)
    console.print(f"imagenet-c: {report.written} images written ({report.already_present} already there) "
                  f"from {report.images} source images -> {args.out}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    console.print(resolved_yaml(config), end="", markup=False, highlight=False)
    console.print(f"# sha256: {config_hash(config)}", markup=False, highlight=False)
    return 0


def _shards_verify(args: argparse.Namespace) -> int:
    from shards.verify import verify_store

    findings, totals = verify_store(args.dir)
    for finding in findings:
        print(finding, file=sys.stderr if finding.is_problem else sys.stdout)
    problems = sum(finding.is_problem for finding in findings)
    summary = f"{totals['streams']} streams, {totals['shards']} shards, {totals['samples']} samples"
    if problems:
        print(f"verify: {problems} problems in {args.dir} ({summary})", file=sys.stderr)
        return EXIT_FAILURE
    print(f"verify: ok ({summary})")
    return 0


def _shards_inspect(args: argparse.Namespace) -> int:
    from shards.inspect import summarize_store

    for table in summary_tables(summarize_store(args.dir)):
        console.print(table)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from shards.prepare import prepare_imagefolder

    with progress_bar(f"prepare {args.stream}") as update:
        report = prepare_imagefolder(args.source, args.out, args.stream, seed=args.seed,
                                     workers=args.workers, on_progress=update)
    for entry in report.skipped:
        print(f"skipped {entry['path']}: {entry['error']}", file=sys.stderr)
    print(f"prepare: {args.stream}: wrote {report.written} samples ({report.already_committed} already "
          f"committed), {len(report.skipped)} skipped, {len(report.classes)} classes -> {str(args.out).rstrip('/')}/{args.stream}")
    return 0


def _examples_digits(args: argparse.Namespace) -> int:
    from cluster.examples import write_digits_imagefolder
    from cluster.run_dirs import check_output_dir

    check_output_dir(args.dest, "examples digits DEST")
    written = write_digits_imagefolder(args.dest)
    print(f"examples: wrote {written} digit images to {args.dest}")
    return 0


def _top(args: argparse.Namespace) -> int:
    from cluster.controller_client import job_metrics_url
    from cluster.top import check_interval, run_top

    if (args.job is None) == (args.metrics is None):
        raise ConfigError("genint top: give a running JOB's name or --metrics URL (one of them)")
    check_interval(args.interval)  # before connecting to the job's cluster
    run_top(args.metrics or job_metrics_url(args.job, args.address), args.interval, args.once)
    return 0


HANDLERS = {
    ("run", None): _run,
    ("experiment", None): _experiment,
    ("datagen", None): _datagen,
    ("train", None): _train,
    ("directions", None): _directions,
    ("generator", "train"): _generator_train,
    ("eval", None): _eval,
    ("imagenet-c", "build"): _imagenet_c_build,
    ("config", "check"): _config_check,
    ("shards", "verify"): _shards_verify,
    ("shards", "inspect"): _shards_inspect,
    ("prepare", None): _prepare,
    ("examples", "digits"): _examples_digits,
    ("top", None): _top,
    **JOB_HANDLERS,
    **STRATEGY_HANDLERS,
    **ANALYSE_HANDLERS,
    **EXPLAIN_HANDLERS,
}


def _one_line(text: str, max_chars: int = 2000) -> str:
    """``text`` on one line (several problems joined by "; "), capped at ``max_chars``."""
    line = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


def _os_error_line(error: OSError) -> str:
    """An operating-system failure (permissions, a file where a directory belongs, a full disk)
    as one line naming the path."""
    where = f"{error.filename}: " if error.filename else ""
    also = f" -> {error.filename2}" if error.filename2 else ""
    return f"{where}{error.strerror or type(error).__name__}{also}"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr: a project error or an operating-system
    error (a path that cannot be read or written) names what and where, exit 1 (2 for bad config or
    usage); anything else is a bug, reported as one line asking for a rerun with --debug."""
    args = build_parser().parse_args(argv)
    handler = HANDLERS[(args.command, getattr(args, "action", None))]
    if args.debug:
        from cluster.local_ray import show_ray_output  # loads ray: only for --debug

        show_ray_output()
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("genint: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            raise
        if isinstance(error, PROJECT_ERRORS):
            print(f"genint: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE if isinstance(error, ConfigError) else EXIT_FAILURE
        if isinstance(error, OSError) and error.strerror:
            print(f"genint: error: {_one_line(_os_error_line(error))}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"genint: internal error: {type(error).__name__}: {_one_line(error, 300)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
