"""The study configuration (``study.yaml``): its JSON Schema, defaults, and every check that
needs no computation.

:func:`load_study_config` reads the YAML, validates it against :data:`STUDY_SCHEMA` (the
schema is also ``schemas/study.schema.json``), fills the defaults, resolves relative paths
against the file's folder and checks the references between sections (arms name extractors
the extraction stage produces and clinical columns that exist, the reference arm is defined,
arm names are unique). :func:`check_inputs` then checks the inputs themselves (files exist,
the clinical table has the named columns, its ids match photos) without extracting anything.
Every error names the key as it is written in the file and says how to fix it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

from facefeat.errors import ConfigError, DataError, InputError

MODELS = ("coxph", "coxnet", "rsf", "gbsa", "deepsurv")
#: Arm feature item meaning "every clinical covariate of inputs.covariates".
CLINICAL = "clinical"
#: Extractor config value that stands for the generator / encoder trained by the study's own
#: training stage.
TRAINED_GENERATOR = "@training.generator"
TRAINED_ENCODER = "@training.encoder"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


def _p(kind: Any, default: Any, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "default": default, "description": description, **extra}


ARM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "features"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME, "description": "arm name (folder arms/<name>/); letters, "
                 "digits and _ . + -"},
        "features": {"type": "array", "minItems": 1, "items": {"type": "string"},
                     "description": "extractor names (their feature tables), 'clinical' (every covariate) "
                                    "and/or single clinical covariates"},
        "model": {"enum": list(MODELS), "default": "coxph", "description": "survival model"},
        "params": _p("object", {}, "model parameters, e.g. {alpha: 0.1} (coxph ridge), {l1_ratio: 0.5} (coxnet)"),
        "fusion": {"enum": ["early", "late"], "default": "early",
                   "description": "early: one model on all blocks; late: one model per block, risks stacked"},
        "pca": {"type": ["integer", "number", "null"], "default": None, "exclusiveMinimum": 0,
                "description": "PCA of each image block: components (int) or variance fraction (0-1); null: none"},
        "impute": {"enum": ["median", "mean", "none"], "default": "median",
                   "description": "missing numeric values (learned in each training fold)"},
        "block_per_extractor": _p("boolean", False, "one image block per extractor instead of one 'image' block"),
        "robustness": {
            "type": ["object", "null"], "default": None, "additionalProperties": False,
            "required": ["table", "min_icc"],
            "description": "keep only image features whose ICC in a 'facefeat robustness' table reaches min_icc",
            "properties": {"table": {"type": "string", "description": "robustness table (Parquet/CSV) or folder"},
                           "min_icc": {"type": "number", "minimum": 0, "maximum": 1,
                                       "description": "threshold, e.g. 0.75"}},
        },
    },
}

STUDY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://facefeat.invalid/schemas/study.schema.json",
    "title": "facefeat study configuration (study.yaml)",
    "type": "object",
    "additionalProperties": False,
    "required": ["inputs", "arms"],
    "properties": {
        "name": _p("string", "study", "study name (report title)"),
        "description": _p("string", "", "free text shown in the report"),
        "inputs": {
            "type": "object", "additionalProperties": False, "required": ["photos", "clinical"],
            "description": "the cohort: photos and the clinical table (paths relative to study.yaml)",
            "properties": {
                "photos": {"type": "string", "description": "folder of photos, or a CSV/Parquet manifest with "
                                                            "subject_id and path"},
                "subject_from": {"enum": ["stem", "parent"], "default": "stem",
                                 "description": "folder input: subject id from the file stem or the parent folder"},
                "clinical": {"type": "string", "description": "clinical table (CSV, ;-CSV, TSV or Parquet), one row "
                                                              "per subject"},
                "id": _p("string", "subject_id", "subject id column of the clinical table"),
                "time": _p("string", "time", "follow-up time column"),
                "event": _p("string", "event", "event column (1/True = event, 0/False = censored)"),
                "time_unit": _p("string", "days", "unit of the time column (days, months, years): named in every "
                                                  "table, plot and export"),
                "covariates": {"type": "array", "items": {"type": "string"}, "default": [],
                               "description": "clinical covariates the arms may use ('clinical' = all of these)"},
                "categorical": {"type": "array", "items": {"type": "string"}, "default": [],
                                "description": "covariates to one-hot encode (text columns always are)"},
                "aggregate": {"enum": ["mean", "first", "most_recent"], "default": "mean",
                              "description": "how several photos of one subject are combined"},
                "image_order": {"type": ["string", "null"], "default": None,
                                "description": "feature-table column ordering photos (first / most_recent)"},
            },
        },
        "training": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "optional stages before extraction; extractor configs refer to their outputs as "
                           f"'{TRAINED_GENERATOR}' / '{TRAINED_ENCODER}'",
            "properties": {
                "generator": {
                    "type": ["object", "null"], "default": None, "additionalProperties": False, "required": ["init"],
                    "description": "fine-tune a StyleGAN2 generator on the cohort's photos (facefeat.training)",
                    "properties": {
                        "init": {"type": "string", "description": "starting weights: file, registry name or 'scratch'"},
                        "images": {"type": ["string", "null"], "default": None,
                                   "description": "aligned crops to train on; default: the study photos"},
                        "align": _p("boolean", False, "detect and FFHQ-align the training photos on the fly"),
                        "config": _p("object", {}, "TrainingConfig fields, e.g. {kimg: 200, batch_size: 16}"),
                        "resolution": {"type": ["integer", "null"], "default": None,
                                       "description": "image size for init 'scratch'"},
                        "channel_base": {"type": ["integer", "null"], "default": None,
                                         "description": "network width for init 'scratch' (small for smoke tests)"},
                    },
                },
                "encoder": {
                    "type": ["object", "null"], "default": None, "additionalProperties": False,
                    "description": "train an e4e encoder for the (fine-tuned) generator (facefeat.training)",
                    "properties": {
                        "generator": _p("string", TRAINED_GENERATOR, "generator file, registry name or "
                                                                     f"'{TRAINED_GENERATOR}'"),
                        "images": {"type": ["string", "null"], "default": None,
                                   "description": "aligned crops; default: the study photos"},
                        "align": _p("boolean", False, "detect and FFHQ-align the training photos on the fly"),
                        "config": _p("object", {}, "EncoderTrainingConfig fields"),
                    },
                },
            },
        },
        "extraction": {
            "type": "object", "additionalProperties": False, "required": ["extractors"],
            "description": "the engine's resumable run into <study>/extract/",
            "properties": {
                "extractors": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object"},
                               "description": "extractor name -> its config (see 'facefeat plugins' and "
                                              "docs/features/)"},
                "face": _p("object", {}, "face detection settings of the run config (detector: hog|cnn|none)"),
                "align": _p("object", {}, "alignment settings of the run config"),
                "batch_size": {"type": "integer", "minimum": 1, "default": 8,
                               "description": "images per batch (the unit of progress saved for resuming)"},
                "device": _p("string", "cpu", "cpu, cuda, cuda:N, mps"),
                "out": {"type": ["string", "null"], "default": None,
                        "description": "run folder of the extraction; default <study>/extract. Studies of one "
                                       "cohort (e.g. replicate clinical tables) can share one"},
            },
        },
        "arms": {"type": "array", "minItems": 1, "items": ARM_SCHEMA,
                 "description": "the models compared, each cross-validated on the same subject splits"},
        "reference": {"type": ["string", "null"], "default": None,
                      "description": "arm every other arm is compared with; default: an arm named 'clinical', "
                                     "else one made from the clinical covariates (coxph)"},
        "cv": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "repeated stratified k-fold cross-validation, identical for every arm",
            "properties": {
                "folds": {"type": "integer", "minimum": 2, "default": 5, "description": "folds"},
                "repeats": {"type": "integer", "minimum": 1, "default": 5, "description": "repeats"},
                "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "seed of the splits"},
                "risk_groups": {"type": "integer", "minimum": 2, "default": 2,
                                "description": "risk groups of the out-of-fold predictions"},
                "level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.95,
                          "description": "confidence level of every interval"},
            },
        },
        "subgroups": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "subgroup audit of each arm's out-of-fold risk",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}, "default": [],
                            "description": "clinical columns defining subgroups"},
                "bands": {"type": "object", "default": {},
                          "additionalProperties": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                          "description": "numeric column -> cut points, e.g. {age: [50, 65]}"},
                "min_events": {"type": "integer", "minimum": 1, "default": 5,
                               "description": "subgroups with fewer events are listed, not assessed"},
            },
        },
        "outputs": {
            "type": "object", "additionalProperties": False, "default": {},
            "properties": {
                "report": _p("boolean", True, "write report.html"),
                "exports": _p("boolean", True, "write exports/ (CSV + Parquet + README data dictionary)"),
                "pseudonymise": {"type": ["string", "null"], "default": None,
                                 "description": "key file: exports carry keyed pseudonyms instead of subject ids"},
            },
        },
        "execution": {
            "type": "object", "additionalProperties": False, "default": {},
            "properties": {
                "executor": {"type": ["string", "null"], "default": None,
                             "description": "null/local (processes), local:N (Dask LocalCluster), "
                                            "tcp://HOST:PORT, slurm|pbs|sge|lsf (with cluster)"},
                "jobs": {"type": "integer", "minimum": 1, "default": 1,
                         "description": "local worker processes (extraction) and parallel CV folds"},
                "cluster": _p("object", {}, "dask-jobqueue settings for slurm/pbs/... executors"),
            },
        },
    },
}

#: Sections whose defaults are filled (nested one level) before validation.
_SECTIONS = ("inputs", "training", "extraction", "cv", "subgroups", "outputs", "execution")


def _fill(schema: Mapping[str, Any], data: Any) -> Any:
    """Fill ``default`` values of an object schema's properties, recursing into objects and
    arrays of objects (only where the user gave a mapping)."""
    if not isinstance(data, dict) or schema.get("type") not in ("object", ["object", "null"]):
        return data
    out = dict(data)
    for key, prop in schema.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if key in out:
            if isinstance(out[key], dict):
                out[key] = _fill(prop, out[key])
            elif isinstance(out[key], list) and isinstance(prop.get("items"), dict):
                out[key] = [_fill(prop["items"], x) for x in out[key]]
    return out


def _key(path: list[Any], data: Mapping[str, Any]) -> str:
    """A key path as the user reads it: ``arms[1] ('faces').pca``."""
    text, node = "", data
    for part in path:
        if isinstance(part, int):
            name = node[part].get("name") if isinstance(node, list) and isinstance(node[part], dict) else None
            text += f"[{part}]" + (f" ({name!r})" if name else "")
        else:
            text += f".{part}" if text else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return text or "(top level)"


def _explain(error, data: Mapping[str, Any]) -> str:
    path = list(error.absolute_path)
    key = _key(path, data)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        where = f" in {key}" if path else ""
        return (f"unknown key(s) {', '.join(map(repr, extra))}{where}; allowed: {', '.join(allowed)} "
                f"(check the spelling; 'facefeat study init' writes every key with its meaning)")
    if error.validator == "required":
        missing = [m for m in error.validator_value if m not in (error.instance or {})]
        props = schema.get("properties", {})
        return "; ".join(f"{key + '.' if path else ''}{m} is required: {props.get(m, {}).get('description', '')}"
                         for m in missing)
    if error.validator == "enum":
        return f"{key} = {error.instance!r} is not allowed; use one of {', '.join(map(repr, error.validator_value))}"
    if error.validator == "type":
        want = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        desc = schema.get("description")
        return f"{key} = {error.instance!r} must be of type {want}" + (f" ({desc})" if desc else "")
    if error.validator == "pattern":
        return f"{key} = {error.instance!r} is not a valid name: {schema.get('description', error.message)}"
    return f"{key}: {error.message}"


def validate_schema(data: Mapping[str, Any], *, where: str = "study.yaml") -> dict[str, Any]:
    """Fill defaults and validate ``data`` against :data:`STUDY_SCHEMA`; every error at once.

    Raises
    ------
    ConfigError
        Listing each problem with its key and the fix.
    """
    import jsonschema

    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping (inputs, extraction, arms, ...); "
                          "'facefeat study init DIR' writes a template")
    resolved = _fill(STUDY_SCHEMA, data)
    validator = jsonschema.Draft202012Validator(STUDY_SCHEMA)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = list(dict.fromkeys(_explain(e, resolved) for e in errors))
        raise ConfigError(f"{where}: invalid study config:\n  " + "\n  ".join(lines))
    return resolved


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or value.startswith("@"):
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _resolve_paths(config: dict[str, Any], base: Path) -> None:
    inputs = config["inputs"]
    for key in ("photos", "clinical"):
        inputs[key] = _resolve(base, inputs[key])
    for arm in config["arms"]:
        if arm.get("robustness"):
            arm["robustness"]["table"] = _resolve(base, arm["robustness"]["table"])
    out = config["outputs"]
    out["pseudonymise"] = _resolve(base, out["pseudonymise"])
    config["extraction"]["out"] = _resolve(base, config["extraction"]["out"])
    for stage in ("generator", "encoder"):
        spec = config["training"].get(stage)
        if spec:
            for key in ("images", "init", "generator"):
                v = spec.get(key)
                # registry names and 'scratch' stay as they are; relative files become absolute
                if isinstance(v, str) and not v.startswith("@") and (base / v).exists():
                    spec[key] = _resolve(base, v)
    for name, ext in config["extraction"]["extractors"].items():
        for key, v in list(ext.items()):
            if isinstance(v, str) and not v.startswith("@") and not Path(v).is_absolute() and (base / v).exists():
                ext[key] = str(base / v)


def default_reference_arm(config: Mapping[str, Any]) -> dict[str, Any]:
    """The reference arm used when none is named and no arm is called ``clinical``."""
    return _fill(ARM_SCHEMA, {"name": "clinical", "features": [CLINICAL], "model": "coxph"})


def check_references(config: dict[str, Any], *, where: str = "study.yaml") -> None:
    """Cross-section checks: arm names unique, reference defined, every arm feature an extractor
    of the extraction stage or a clinical covariate, subgroup columns named in the inputs.

    Sets ``config["reference"]`` (adding the default clinical arm when needed).
    """
    problems: list[str] = []
    arms = config["arms"]
    names = [a["name"] for a in arms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"arms: name(s) {dup} used twice; give every arm its own name")
    extractors = sorted(config["extraction"]["extractors"])
    covs = list(config["inputs"]["covariates"])
    inputs = config["inputs"]
    for c in config["inputs"]["categorical"]:
        if c not in covs:
            problems.append(f"inputs.categorical: {c!r} is not in inputs.covariates {covs}; add it there or remove it")
    outcome = {inputs["id"], inputs["time"], inputs["event"]}
    for c in covs:
        if c in outcome:
            problems.append(f"inputs.covariates: {c!r} is the id or outcome column; remove it")
    for i, arm in enumerate(arms):
        key = f"arms[{i}] ({arm['name']!r}).features"
        for item in arm["features"]:
            if item != CLINICAL and item not in extractors and item not in covs:
                problems.append(f"{key}: {item!r} is neither an extractor of the extraction stage ({', '.join(extractors)}) "
                                f"nor a clinical covariate ({', '.join(covs) or 'none listed'}); add it to "
                                f"extraction.extractors or inputs.covariates, or fix the spelling")
        if arm["features"].count(CLINICAL) and not covs:
            problems.append(f"{key}: 'clinical' but inputs.covariates is empty; list the covariates")
        if len(set(arm["features"])) != len(arm["features"]):
            problems.append(f"{key}: an item is listed twice")
        blocks = _n_blocks(arm, extractors, covs)
        if arm["fusion"] == "late" and blocks < 2:
            problems.append(f"arms[{i}] ({arm['name']!r}).fusion: late fusion needs two blocks or more (clinical "
                            f"and an extractor); use fusion: early")
        if arm["robustness"] and not any(f in extractors for f in arm["features"]):
            problems.append(f"arms[{i}] ({arm['name']!r}).robustness: the arm has no image features to filter")
    ref = config["reference"]
    if ref is None:
        if CLINICAL not in names:
            if not covs:
                problems.append("reference: not set and inputs.covariates is empty, so there is no default clinical "
                                "arm; name one of the arms as reference")
            else:
                arms.insert(0, default_reference_arm(config))
        config["reference"] = CLINICAL
    elif ref not in names:
        problems.append(f"reference: {ref!r} is not an arm; arms are {names}; set it to one of them")
    sub = config["subgroups"]
    for c in list(sub["columns"]) + list(sub["bands"]):
        if c not in covs:
            problems.append(f"subgroups: column {c!r} is not in inputs.covariates {covs}; add it there")
    for c in sub["bands"]:
        if c not in sub["columns"]:
            problems.append(f"subgroups.bands: {c!r} has bands but is not in subgroups.columns; add it")
    if config["training"].get("encoder") and config["training"]["encoder"]["generator"] == TRAINED_GENERATOR \
            and not config["training"].get("generator"):
        problems.append(f"training.encoder.generator: {TRAINED_GENERATOR} but there is no training.generator stage; "
                        "name a generator file or add the stage")
    for name, ext in config["extraction"]["extractors"].items():
        for k, v in ext.items():
            if v in (TRAINED_GENERATOR, TRAINED_ENCODER) and not config["training"].get(v.split(".")[-1]):
                problems.append(f"extraction.extractors.{name}.{k}: {v} but the study has no such training stage; "
                                f"add training.{v.split('.')[-1]} or name a file")
    if problems:
        raise ConfigError(f"{where}:\n  " + "\n  ".join(problems))


def _n_blocks(arm: Mapping[str, Any], extractors: list[str], covs: list[str]) -> int:
    clinical = any(f == CLINICAL or f in covs for f in arm["features"])
    images = [f for f in arm["features"] if f in extractors]
    return int(clinical) + (len(images) if arm["block_per_extractor"] else int(bool(images)))


def load_study_config(path: str | Path) -> dict[str, Any]:
    """Read, validate and resolve ``study.yaml``; computes nothing and reads no input file.

    Returns the resolved config: defaults filled, paths absolute, ``reference`` set (a default
    clinical arm added when needed) and ``_file`` / ``_base`` recording where it came from.

    Raises
    ------
    ConfigError
    """
    from facefeat.engine.config import load_config_file

    path = Path(path)
    if path.is_dir():
        path = path / "study.yaml"
    data = load_config_file(path)
    config = validate_schema(data, where=str(path))
    check_references(config, where=str(path))
    _resolve_paths(config, path.resolve().parent)
    config["_file"] = str(path.resolve())
    config["_base"] = str(path.resolve().parent)
    return config


def check_inputs(config: Mapping[str, Any], *, registry=None) -> dict[str, Any]:
    """Check that the inputs exist and fit the config, without extracting or modelling.

    The photos are listed (not decoded), the clinical table is read, its id/time/event and
    covariate columns checked, ids matched with the photos' subjects, and the extraction run
    config validated by the engine (extractor configs, model files, face settings).

    Returns
    -------
    dict
        ``n_photos``, ``n_subjects_photos``, ``n_clinical``, ``n_matched`` and the lists of
        unmatched ids (first 20).

    Raises
    ------
    InputError, DataError, ConfigError, ModelError
    """
    from facefeat.survival.tables import read_clinical

    inputs = config["inputs"]
    where = config.get("_file", "study.yaml")
    if not Path(inputs["clinical"]).is_file():
        raise InputError(f"{where}: inputs.clinical = {inputs['clinical']} does not exist; give the clinical table's "
                         "path (relative to study.yaml)")
    clin = read_clinical(inputs["clinical"], text_columns=[inputs["id"], *inputs["categorical"]])
    need = {"inputs.id": inputs["id"], "inputs.time": inputs["time"], "inputs.event": inputs["event"]}
    need.update({f"inputs.covariates[{i}]": c for i, c in enumerate(inputs["covariates"])})
    missing = [f"{k} = {v!r}" for k, v in need.items() if v not in clin.columns]
    if missing:
        raise DataError(f"{where}: {inputs['clinical']} has no column {', '.join(missing)}; its columns are "
                        f"{list(clin.columns)[:30]}; fix the key or the table")
    plan = None
    if not any(_uses_training(v) for ext in config["extraction"]["extractors"].values() for v in ext.values()):
        from facefeat.engine.run import plan_run

        plan = plan_run(extraction_run_config(config, out=Path(config["_base"]) / "extract"), registry=registry)
        records = plan.inputs.records
    else:
        from facefeat.io.manifest import load_inputs

        records = load_inputs(inputs["photos"], subject_from=inputs["subject_from"]).records
    photo_subjects = {r.subject_id for r in records}
    ids = set(clin[inputs["id"]].dropna().astype(str).str.strip())
    matched = ids & photo_subjects
    if not matched:
        raise DataError(f"{where}: no id of {inputs['clinical']} (column {inputs['id']!r}, e.g. {sorted(ids)[:3]}) "
                        f"matches a photo's subject id (e.g. {sorted(photo_subjects)[:3]}, from "
                        f"inputs.subject_from = {inputs['subject_from']!r}); fix inputs.id, inputs.subject_from or "
                        "the file names")
    return {"n_photos": len(records), "n_subjects_photos": len(photo_subjects), "n_clinical": len(ids),
            "n_matched": len(matched), "clinical_without_photo": sorted(ids - photo_subjects)[:20],
            "photos_without_clinical": sorted(photo_subjects - ids)[:20],
            "n_clinical_without_photo": len(ids - photo_subjects),
            "n_photos_without_clinical": len(photo_subjects - ids)}


def _uses_training(value: Any) -> bool:
    return value in (TRAINED_GENERATOR, TRAINED_ENCODER)


def extraction_run_config(config: Mapping[str, Any], *, out: Path,
                          trained: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The engine's run config of the extraction stage (``trained``: outputs of the training
    stages, ``"generator"`` / ``"encoder"`` -> checkpoint path, substituted for the ``@`` names)."""
    ext = config["extraction"]
    sections = {}
    for name, cfg in ext["extractors"].items():
        cfg = dict(cfg)
        for k, v in cfg.items():
            if _uses_training(v):
                stage = v.split(".")[-1]
                if not trained or stage not in trained:
                    raise ConfigError(f"extraction.extractors.{name}.{k}: {v} is not trained yet")
                cfg[k] = str(trained[stage])
        sections[name] = cfg
    execution = config["execution"]
    run = {"input": config["inputs"]["photos"], "out": str(out), "extractors": list(ext["extractors"]),
           "subject_from": config["inputs"]["subject_from"], "batch_size": ext["batch_size"],
           "jobs": execution["jobs"], "device": ext["device"], "face": dict(ext["face"]), "align": dict(ext["align"]),
           "executor": execution["executor"], **sections}
    if execution["cluster"]:
        run["cluster"] = dict(execution["cluster"])
    return run


def arm_names(config: Mapping[str, Any]) -> list[str]:
    return [a["name"] for a in config["arms"]]


def safe_name(name: str) -> str:
    """An arm name as a folder name (names are already restricted by the schema)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
