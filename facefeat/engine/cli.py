"""Commands ``facefeat extract``, ``facefeat plugins`` and ``facefeat inspect``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

EXTRACT_EPILOG = """\
examples:
  facefeat extract examples/faces/ --extractors landmarks,face_descriptor --out runs/demo/
  facefeat extract cohort.csv --out runs/c1 --config run.yaml -s face.detector=cnn -s batch_size=16
  facefeat extract photos/ --out runs/p --jobs 2          # two local worker processes
  facefeat extract photos/ --out runs/p --cluster local:4 # Dask LocalCluster, 4 processes x 1 thread
  facefeat extract cohort.csv --out /shared/runs/c1 --scheduler tcp://10.0.0.5:8786
  facefeat extract cohort.csv --out /shared/runs/c1 --cluster slurm --config run.yaml  # 'cluster:' section
  facefeat extract photos/ --out runs/p --validate        # check config and inputs, compute nothing

A manifest is a CSV or Parquet table with columns subject_id and path (relative paths resolve
against the manifest's folder). Re-running the same command after a crash or kill processes
only the images that are missing. Each extractor writes <out>/<extractor>.parquet. An --out
that holds a run of other inputs or preprocessing is refused unless --overwrite. With a Dask
cluster the run folder must be on storage every worker can write (docs/cluster.md).
"""

INSPECT_EPILOG = """\
examples:
  facefeat inspect runs/demo/landmarks.parquet
  facefeat inspect runs/demo/ --json
"""


def add_commands(subparsers) -> None:
    """Add ``extract``, ``plugins`` and ``inspect`` to the top-level parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("extract", help="run extractors over a folder of photos or a manifest",
                              description="Detect, landmark and align every face, run the extractors, "
                                          "write one Parquet feature table per extractor.",
                              epilog=EXTRACT_EPILOG, formatter_class=fmt)
    p.add_argument("input", nargs="?", help="folder of photos, or a CSV/Parquet manifest (subject_id, path)")
    p.add_argument("--out", "-o", help="output folder")
    p.add_argument("--extractors", "-e", help="comma-separated extractor names (see 'facefeat plugins')")
    p.add_argument("--config", "-c", help="YAML config file; command-line values override it")
    p.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. -s face.detector=cnn -s stylegan2.steps=200")
    p.add_argument("--jobs", "-j", type=int, help="local worker processes (default 1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="KIND",
                       help="Dask workers: local:N (N local processes x 1 thread), or slurm, pbs, sge, lsf "
                            "(batch jobs from the config's 'cluster' section)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run of other inputs or settings found in --out (its tables are deleted)")
    p.add_argument("--batch-size", type=int, help="images per batch (default 8)")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or mps; checked before the run starts")
    p.add_argument("--validate", action="store_true", help="dry run: check config and inputs, compute nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-paths", action="store_true",
                   help="write no path column and no input file names (tables, provenance, run.json)")
    p.set_defaults(func=cmd_extract, on_interrupt="finished batches are kept in OUT/.parts; re-run the same command "
                                                  "to resume (only the missing images are processed)")

    p = subparsers.add_parser("plugins", help="list the registered extractors with version and distribution",
                              epilog="example:\n  facefeat plugins\n  FACEFEAT_PLUGINS_BLOCK=face_descriptor facefeat plugins",
                              formatter_class=fmt)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--schema", metavar="NAME", help="print the config JSON Schema of one extractor")
    p.set_defaults(func=cmd_plugins)

    p = subparsers.add_parser("inspect", help="show a feature table's schema, provenance and status counts",
                              epilog=INSPECT_EPILOG, formatter_class=fmt)
    p.add_argument("path", help="a feature table (.parquet) or a run folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)


def run_config(args, *, sections: Callable[[dict], dict] | None = None) -> dict:
    """The run config a command line describes: the --config file, then the flags, then
    ``sections(config)`` (a command's own config section, e.g. ``robustness``), then the ``-s``
    overrides, which win over everything."""
    from facefeat.engine.config import load_config_file, merge, parse_overrides
    from facefeat.errors import ConfigError

    config = load_config_file(args.config) if args.config else {}
    flags = {"input": args.input, "out": args.out, "extractors": args.extractors, "jobs": args.jobs,
             "batch_size": args.batch_size, "device": args.device,
             "paths": False if getattr(args, "no_paths", False) else None}
    config = merge(config, {k: v for k, v in flags.items() if v is not None})
    if sections is not None:
        config = sections(config)
    config = merge(config, parse_overrides(args.overrides))
    for key, flag in (("input", "INPUT"), ("out", "--out")):
        if not config.get(key):
            raise ConfigError(f"no {key} given: pass {flag} or set '{key}' in the config file")
    return config


def cmd_extract(args) -> int:
    from facefeat.engine.config import check_devices
    from facefeat.engine.run import plan_run, run_extraction
    from facefeat.errors import ConfigError

    config = run_config(args)
    check_devices(config, option="--device")  # before the schema, so 'tpu' gets the list of devices too
    if args.validate:
        plan = plan_run(config)
        print(f"config ok: {len(plan.inputs.records)} images "
              f"({len(plan.inputs.duplicates)} exact duplicates), extractors: "
              f"{', '.join(e.name for e in plan.extractors)}; aligned sizes {plan.preprocess['aligned_sizes']}; "
              f"output {plan.out}")
        return 0
    executor = args.scheduler or args.cluster
    if executor and args.jobs and args.jobs > 1:
        raise ConfigError("--jobs sets local processes; with --cluster/--scheduler the cluster's workers do the work "
                          "(give local:N for N local Dask workers)")
    summary = run_extraction(config, progress=not args.no_progress, executor=executor, overwrite=args.overwrite)
    print(summary.line())
    for name, path in summary.tables.items():
        print(f"  {name}: {path}")
    for path in summary.skipped[:10]:
        print(f"  skipped (not an image): {path}")
    if len(summary.skipped) > 10:
        print(f"  ... {len(summary.skipped) - 10} more skipped files listed in {summary.out / 'run.json'}")
    return 0


def cmd_plugins(args) -> int:
    from facefeat.engine.registry import load_registry

    registry = load_registry()
    if args.schema:
        print(json.dumps(registry.info(args.schema).cls.config_schema, indent=2))
        return 0
    rows = [{"extractor": i.name, "version": i.version, "plugin": i.plugin,
             "distribution": i.distribution, "distribution_version": i.distribution_version}
            for i in (registry.info(n) for n in registry.names())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no extractors registered (are all plugins blocked by FACEFEAT_PLUGINS_BLOCK/ALLOW?)")
        return 0
    _print_table(rows, ["extractor", "version", "plugin", "distribution", "distribution_version"])
    return 0


def cmd_inspect(args) -> int:
    from facefeat.io.jsonsafe import dumps_json
    from facefeat.io.tables import summarize_tables

    reports = summarize_tables(args.path)
    if args.json:
        print(dumps_json(reports, indent=2))
        return 0
    out = sys.stdout
    for rep in reports:
        prov = rep["provenance"]
        ext = prov.get("extractor", {})
        print(f"{rep['path']}: {rep['rows']} rows", file=out)
        print("  status: " + ", ".join(f"{k} {v}" for k, v in sorted(rep["status_counts"].items())), file=out)
        if prov:
            print(f"  extractor: {ext.get('name')} {ext.get('version')} from {ext.get('distribution') or ext.get('plugin')} "
                  f"{ext.get('distribution_version', '')}; facefeat {prov.get('facefeat_version')}; created {prov.get('created')}",
                  file=out)
            print(f"  config: {json.dumps(ext.get('config', {}), sort_keys=True)}", file=out)
            print(f"  input: {prov.get('input', {}).get('source')} (manifest sha256 {prov.get('input', {}).get('manifest_sha256', '')[:16]}..., "
                  f"{len(prov.get('input', {}).get('duplicates', []))} exact duplicates skipped)", file=out)
            models = {**prov.get("preprocessing", {}).get("models_sha256", {}), **prov.get("models_sha256", {})}
            for label, digest in models.items():
                print(f"  model {label}: sha256 {digest}", file=out)
            print(f"  preprocessing: {json.dumps(prov.get('preprocessing', {}).get('face', {}), sort_keys=True)} "
                  f"align {json.dumps(prov.get('preprocessing', {}).get('align', {}), sort_keys=True)}", file=out)
        print(f"  columns ({len(rep['columns'])}):", file=out)
        for f in rep["columns"]:
            print(f"    {f['name']}: {f['type']}" + (f" shape {f['shape']}" if "shape" in f else ""), file=out)
    return 0


def _print_table(rows: list[dict], cols: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
