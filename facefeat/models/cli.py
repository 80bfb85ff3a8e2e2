"""``facefeat models list | pull | verify | convert``: the model registry on the command line.

Only the argparse wiring lives at module level; the registry, the downloader and the
checkpoint code are imported inside the command functions, so ``facefeat --help`` stays fast
and ``convert`` / ``verify --deep`` can say plainly when the loaders are not installed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from pathlib import Path

_RAW = argparse.RawDescriptionHelpFormatter

_MODELS_EPILOG = """\
Examples:
  facefeat models list                      # registry, licences, what is cached
  facefeat models pull nvidia-ffhq-256      # download into the cache (prints the licence)
  facefeat models verify                    # re-hash everything in the cache
  facefeat models convert nvidia-ffhq-256 ffhq256.safetensors

Cache: $FACEFEAT_HOME/models/<name>/<file> (default: the user cache dir). Offline machines:
copy the files there by hand; 'facefeat models list --long' prints each exact path.
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models`` and its subcommands to the top-level parser."""
    models = subparsers.add_parser(
        "models",
        help="list, download, verify and convert model checkpoints",
        description=(
            "Named public checkpoints (StyleGAN2 FFHQ generators, the e4e encoder) with their\n"
            "URL, sha256 where published, licence and configuration, and a local cache."
        ),
        formatter_class=_RAW,
        epilog=_MODELS_EPILOG,
    )
    models.set_defaults(func=lambda args: _help(models))
    sub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "list",
        help="show the registry: format, resolution, licence, hash status, cached or not",
        description=(
            "List the registry. SHA256 says 'published' when the publisher gives a hash that\n"
            "pull checks, 'unverified' when none is published. CACHED is yes / no / partial\n"
            "(an interrupted download that the next pull resumes)."
        ),
        formatter_class=_RAW,
        epilog="Examples:\n  facefeat models list\n  facefeat models list --long   # URLs, sources, exact cache paths, configs\n",
    )
    p.add_argument("--long", action="store_true", help="also print URLs, where they were published, cache paths, sha256 and config")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "pull",
        help="download a model into the cache (resumable, hash-checked)",
        description=(
            "Download NAME into $FACEFEAT_HOME/models/NAME/. Prints the licence first (NVIDIA's\n"
            "StyleGAN2 weights are non-commercial: research or evaluation only). An interrupted\n"
            "download is kept as <file>.part and resumed by running the same command again.\n"
            "The file is checked against the published sha256 when there is one, and only then\n"
            "moved into place."
        ),
        formatter_class=_RAW,
        epilog=(
            "Examples:\n"
            "  facefeat models pull nvidia-ffhq-256\n"
            "  facefeat models pull e4e-ffhq-encode --timeout 120\n"
            "  facefeat models pull nvidia-ffhq-1024 --force   # download again\n"
            "\nWithout internet: 'facefeat models list --long' shows where to copy each file.\n"
        ),
    )
    p.add_argument("name", metavar="NAME", help="registry name (see 'facefeat models list')")
    p.add_argument("--force", action="store_true", help="download again even if the file is cached")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for the server (default 60)")
    p.add_argument("--retries", type=int, default=3, metavar="N", help="resume an interrupted transfer up to N times (default 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_pull, on_interrupt="what arrived is kept in <file>.part; run the same command again to "
                                                "resume the download")

    p = sub.add_parser(
        "verify",
        help="re-hash cached models: ok / mismatch / missing / unverified",
        description=(
            "Re-hash cached files. ok = matches the published sha256; mismatch = differs from it,\n"
            "or from the hash recorded when pull installed the file; missing = not in the cache;\n"
            "unverified = present but no hash is published. --deep also loads each file with\n"
            "facefeat's loaders (strict key mapping).\n"
            "Exit status 1 on a mismatch, a failed deep check, or a missing model named on the\n"
            "command line; with --strict also on unverified files."
        ),
        formatter_class=_RAW,
        epilog=(
            "Examples:\n"
            "  facefeat models verify\n"
            "  facefeat models verify nvidia-ffhq-256 --deep\n"
            "  facefeat models verify --strict   # fail unless every file matches a published hash\n"
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all in the registry)")
    p.add_argument("--deep", action="store_true", help="also load each present file with facefeat's loaders")
    p.add_argument("--strict", action="store_true", help="treat 'unverified' as a failure")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint to facefeat's format (safetensors + JSON config)",
        description=(
            "Convert IN (an NVIDIA stylegan2-ada-pytorch .pkl or a rosinality .pt; a path or a\n"
            "registry name) to facefeat's own format at OUT. The converted weights keep the\n"
            "licence of the original."
        ),
        formatter_class=_RAW,
        epilog=(
            "Examples:\n"
            "  facefeat models convert nvidia-ffhq-256 ffhq256.safetensors\n"
            "  facefeat models convert ~/Downloads/network-snapshot.pkl my-gan.safetensors\n"
        ),
    )
    p.add_argument("src", metavar="IN", help="checkpoint path or registry name")
    p.add_argument("dst", metavar="OUT", help="output path")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=_cmd_convert)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from facefeat.models.download import part_path
    from facefeat.models.registry import cache_path, list_entries, models_dir

    rows = [["NAME", "FORMAT", "RES", "LICENCE", "SHA256", "CACHED"]]
    entries = list_entries()
    for entry in entries:
        path = cache_path(entry)
        cached = "yes" if path.is_file() else ("partial" if part_path(path).is_file() else "no")
        rows.append([
            entry.name,
            entry.format,
            str(entry.resolution or "-"),
            entry.licence.short,
            "published" if entry.sha256 else "unverified",
            cached,
        ])
    print(_table(rows))
    if args.long:
        for entry in entries:
            print()
            print(f"{entry.name}: {entry.description}")
            for url in entry.urls:
                print(f"  url:      {url}")
            if entry.browser_url:
                print(f"  browser:  {entry.browser_url}")
            print(f"  source:   {entry.source}")
            print(f"  path:     {cache_path(entry)}")
            print(f"  sha256:   {entry.sha256 or 'not published (unverified)'}")
            for mirror in entry.mirror_hashes:
                print(f"  3rd-party copy: {mirror.sha256} ({mirror.size} B) {mirror.source}")
            print("  config:   " + ", ".join(f"{k}={v}" for k, v in entry.config.items()))
            print(f"  licence:  {entry.licence.short}: {', '.join(entry.licence.urls)}")
    print()
    print(f"Cache: {models_dir()}  (set FACEFEAT_HOME to move it)")
    if any(e.licence.non_commercial for e in entries):
        print("Non-commercial: weights under NVIDIA's terms are for research or evaluation only "
              "('facefeat models pull NAME' prints each licence).")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from facefeat.models.download import pull

    pull(args.name, force=args.force, timeout=args.timeout, retries=args.retries,
         progress=not args.no_progress)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from facefeat.models.registry import check_cached, get_entry, list_entries

    entries = [get_entry(n) for n in args.names] if args.names else list_entries()
    failed = False
    rows = [["NAME", "STATUS", "DETAIL"]]
    for entry in entries:
        result = check_cached(entry)
        detail = result.detail
        if result.sha256:
            detail += f"; sha256 {result.sha256}"
        status = result.status
        if status == "mismatch":
            failed = True
        elif status == "missing" and args.names:
            failed = True
        elif status == "unverified" and args.strict:
            failed = True
        if args.deep and status in ("ok", "unverified"):
            loaded, message = _deep_check(entry, result.path)
            detail += f"; deep check: {message}"
            if not loaded:
                failed = True
                status += "+deep-failed"
        rows.append([entry.name, status, detail])
    print(_table(rows))
    return 1 if failed else 0


def _import_attr(module: str, names: tuple[str, ...]) -> tuple[object | None, str]:
    """First of ``names`` found in ``module``, or None and a sentence saying what is missing."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None, f"{module} is not available in this installation yet"
        return None, f"importing {module} failed: {exc}"
    except ImportError as exc:
        return None, f"importing {module} failed: {exc}"
    for name in names:
        func = getattr(mod, name, None)
        if callable(func):
            return func, name
    return None, f"{module} has no {' / '.join(names)} function yet"


def _call_loader(func, path: Path, entry):
    """Call a loader with the keywords it accepts (device="cpu"; num_ws for the e4e check)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {}
    if "device" in params:
        kwargs["device"] = "cpu"
    if "num_ws" in params and entry.config.get("num_ws"):
        kwargs["num_ws"] = int(entry.config["num_ws"])
    return func(path, **kwargs)


def _deep_check(entry, path: Path) -> tuple[bool, str]:
    """Load ``path`` with facefeat's loader for its format; (success, message)."""
    if entry.format == "e4e-pt":
        loader, info = _import_attr("facefeat.models.e4e", ("load_e4e", "load_encoder", "load_checkpoint"))
    else:
        loader, info = _import_attr("facefeat.models.checkpoints", ("load_generator",))
    if loader is None:
        return False, f"unavailable: {info}"
    try:
        model = _call_loader(loader, path, entry)
    except Exception as exc:  # report any loader failure as this file's result
        return False, f"FAILED: {type(exc).__name__}: {exc}"
    resolution = next(
        (getattr(model, a) for a in ("img_resolution", "resolution", "size") if isinstance(getattr(model, a, None), int)),
        None,
    )
    if resolution is not None and entry.resolution and resolution != entry.resolution:
        return False, f"FAILED: loads, but resolution {resolution} != registry {entry.resolution}"
    return True, f"loads with {info} ({type(model).__name__})"


def _cmd_convert(args: argparse.Namespace) -> int:
    from facefeat.errors import ModelError
    from facefeat.models.registry import REGISTRY, resolve_model

    # The converter first: no point in asking for a download it could not use.
    convert, info = _import_attr("facefeat.models.checkpoints", ("convert_checkpoint",))
    if convert is None:
        raise ModelError(
            f"'facefeat models convert' needs facefeat.models.checkpoints.convert_checkpoint: {info}"
        )
    src = resolve_model(args.src)
    dst = Path(args.dst).expanduser()
    if dst.exists() and not args.force:
        raise ModelError(f"{dst} already exists; pass --force to overwrite it")
    convert(src, dst)
    print(f"Converted {src} -> {dst}")
    if args.src in REGISTRY:
        lic = REGISTRY[args.src].licence
        note = " (non-commercial: research or evaluation only)" if lic.non_commercial else ""
        print(f"The converted weights keep the licence of {args.src}: {lic.short}{note}")
    return 0
