"""Command ``facefeat export``: a run's tables without file names, with keyed pseudonyms."""

from __future__ import annotations

import argparse

EXPORT_EPILOG = """\
examples:
  facefeat export runs/demo -o exports/demo --make-key study.key          # new key (keep it private)
  facefeat export runs/demo -o exports/demo2 --pseudonymise study.key      # same pseudonyms again
  facefeat export runs/c1 -o exports/c1 --pseudonymise study.key --clinical clinical.csv

The exported tables have no path column and name no input file (errors and provenance
included); with a key, subject ids become HMAC-SHA256 pseudonyms (prefix P). The mapping is
never written: whoever holds the key can recompute it. image_id (sha256 of the photo bytes)
is kept. See docs/tables.md.
"""


def add_commands(subparsers) -> None:
    """Add ``export`` to the top-level parser."""
    p = subparsers.add_parser("export", help="copy a run's feature tables without file names, with pseudonymous ids",
                              description="Write a run's feature tables for sharing: no paths or file names, "
                                          "subject ids replaced by keyed pseudonyms (HMAC-SHA256), the method in "
                                          "the provenance and export.json.",
                              epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder of 'facefeat extract' (or one table)")
    p.add_argument("-o", "--out", required=True, help="export folder (empty or new)")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--pseudonymise", metavar="KEYFILE", help="study key file (from --make-key)")
    key.add_argument("--make-key", metavar="KEYFILE", help="create a new study key file (0600) and use it")
    p.add_argument("--clinical", metavar="CSV", help="also export this clinical table with its ids pseudonymised")
    p.add_argument("--id-column", default="subject_id", help="id column of --clinical (default subject_id)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    import logging

    from facefeat.io.export import export_run
    from facefeat.io.pseudonym import load_key, make_key

    if args.make_key:
        key = make_key(args.make_key)
        print(f"new study key written to {args.make_key} (0600): keep it private and backed up; the same key gives "
              "the same pseudonyms in later exports")
    elif args.pseudonymise:
        key = load_key(args.pseudonymise)
    else:
        key = None
        logging.getLogger(__name__).warning("no key given: subject ids are exported as they are "
                                            "(--pseudonymise KEYFILE or --make-key KEYFILE to replace them)")
    record = export_run(args.run, args.out, key=key, clinical=args.clinical, id_column=args.id_column,
                        overwrite=args.overwrite)
    rows = ", ".join(f"{name} {t['rows']} rows" for name, t in record["tables"].items())
    print(f"exported to {args.out}: {rows}; subject ids: {record['subject_id_method']}")
    if "clinical" in record:
        print(f"  clinical: {record['clinical']['file']} ({record['clinical']['rows']} rows)")
    return 0
