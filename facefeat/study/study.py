"""A whole study from one config: stages, their cache, and the result.

Stages, in order (each a function of its config section and the outputs above it)::

    training.generator / training.encoder (optional) -> extract -> data -> arm:<name> ...
        -> comparison -> report, exports -> study.lock.json

Each stage's fingerprint covers its config section, the hashes of what it reads and the
facefeat version (:mod:`facefeat.study.stages`); a stage whose fingerprint and outputs match
its record is reused, so a second run is a no-op and an edit recomputes only what depends on
it. An arm's fingerprint covers the values of *its own* columns of the modelling table, so a
change of one extractor recomputes the arms that read that extractor and no other.
"""

from __future__ import annotations

import json
import logging
import shutil
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from facefeat._version import __version__
from facefeat.errors import ConfigError, DataError
from facefeat.study import stages as st
from facefeat.study.config import arm_names, check_inputs, extraction_run_config, load_study_config

log = logging.getLogger("facefeat.study")

LOCK_FILE = "study.lock.json"


@dataclass
class StageRun:
    """What happened to one stage in a run: ``reused`` or ``computed`` (with seconds)."""

    name: str
    action: str
    seconds: float
    reason: str = ""
    cpu_seconds: float = 0.0  # this process's CPU time (wall time on a shared machine says little)


@dataclass
class StudyResult:
    """What :meth:`Study.run` returns.

    Attributes
    ----------
    comparison : DataFrame
        One row per (arm, metric): the arm's cross-validated estimate with its interval, the
        paired difference from the reference arm with interval and p-value.
    lrt : DataFrame
        Likelihood-ratio tests of nested coxph arms against the reference (full data).
    arms : DataFrame
        One row per arm: model, features, subjects, events, Harrell's C with interval.
    stages : list of StageRun
    folder : Path
    """

    comparison: pd.DataFrame
    lrt: pd.DataFrame
    arms: pd.DataFrame
    stages: list[StageRun]
    folder: Path
    reference: str = ""
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The headline comparison as a plain-text table (what ``facefeat study run`` prints)."""
        from facefeat.study.comparison import headline

        return headline(self)


class Study:
    """A study: a validated ``study.yaml`` and its folder.

    Parameters
    ----------
    config : dict
        Resolved config (:func:`facefeat.study.config.load_study_config`).
    folder : path, optional
        Where outputs go; default the folder of ``study.yaml``.
    progress : callable, optional
        Called with one line per stage (the CLI prints them).

    Examples
    --------
    >>> result = Study.from_yaml("examples/study/study.yaml").run()   # doctest: +SKIP
    >>> result.comparison                                              # doctest: +SKIP
    """

    def __init__(self, config: dict[str, Any], *, folder: str | Path | None = None,
                 progress: Callable[[str], None] | None = None, show_bars: bool = False):
        self.config = config
        self.folder = Path(folder or config["_base"]).resolve()
        self.progress = progress
        self.show_bars = show_bars
        self._ran: list[StageRun] = []

    @property
    def extract_dir(self) -> Path:
        """The extraction run folder (``extraction.out``, default ``<study>/extract``)."""
        out = self.config["extraction"].get("out")
        return Path(out) if out else self.folder / "extract"

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> "Study":
        """Load and validate ``study.yaml`` (no input is read; see :meth:`validate`)."""
        return cls(load_study_config(path), **kwargs)

    # -- checks ---------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        """Check that the inputs exist and fit the config; computes nothing.

        Returns the matching counts of :func:`facefeat.study.config.check_inputs`.
        """
        return check_inputs(self.config)

    # -- helpers ---------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        # one line per stage: to the caller's progress callback (the CLI prints it), else the log
        if self.progress:
            self.progress(text)
        else:
            log.info("%s", text)

    def _stage(self, name: str, fp: str | None, work: Callable[[], tuple[list[Path], dict]]) -> dict[str, Any]:
        """Reuse stage ``name`` when its record matches ``fp``, else run ``work`` and record it."""
        state = st.check_stage(name, self.folder, fp)
        if state.state == "done":
            self._ran.append(StageRun(name, "reused", 0.0, state.reason))
            self._say(f"{name}: reused ({state.reason}; fingerprint {fp[:12]})")
            return state.record or {}
        self._say(f"{name}: running ({state.reason})")
        t0, c0 = _time.perf_counter(), _time.process_time()
        outputs, info = work()
        seconds, cpu = _time.perf_counter() - t0, _time.process_time() - c0
        rec = st.write_record(self.folder, name, fp, outputs, seconds=seconds, info={**info, "cpu_seconds": cpu})
        self._ran.append(StageRun(name, "computed", seconds, state.reason, cpu))
        self._say(f"{name}: done in {seconds:.1f} s ({cpu:.1f} s CPU)")
        return rec

    # -- fingerprints -----------------------------------------------------------------------
    def _training_fp(self, stage: str) -> str:
        spec = self.config["training"][stage]
        from facefeat.io.hashing import sha256_file

        inputs = {"photos": _listing_hash(spec.get("images") or self.config["inputs"]["photos"],
                                          self.config["inputs"]["subject_from"])}
        for key in ("init", "generator"):
            v = spec.get(key)
            if isinstance(v, str) and Path(v).is_file():
                inputs[key] = sha256_file(v)
        if stage == "encoder" and spec.get("generator") == "@training.generator":
            inputs["generator_stage"] = (st.read_record(self.folder, "training.generator") or {}).get("fingerprint")
        # files and folders by content (in inputs), not by path
        section = {k: ("(by content)" if k in inputs or k == "images" else v) for k, v in spec.items()}
        return st.fingerprint(f"training.{stage}", section, inputs)

    def _extract_plan(self, trained: Mapping[str, str]):
        from facefeat.engine.run import plan_run

        return plan_run(extraction_run_config(self.config, out=self.extract_dir, trained=trained))

    def _extract_fp(self, plan) -> str:
        from facefeat.io.hashing import sha256_file

        exts = {}
        for e in plan.extractors:
            models = {k: sha256_file(v) for k, v in e.model_files().items()}
            # model files by content, not by path: a moved study folder is the same study
            by_path = {str(v): f"sha256:{models[k]}" for k, v in e.model_files().items()}
            config = {k: by_path.get(str(v), v) if isinstance(v, (str, Path)) else v for k, v in e.config.items()}
            exts[e.name] = {"version": e.version, "config": config, "models": models}
        records = [[r.image_id, r.subject_id, r.status] for r in plan.inputs.records]
        # where and how fast it runs changes no value: not part of the fingerprint
        # (the extractor sections are in 'extractors', their files by content)
        skip = {"out", "input", "jobs", "cache_dir", "executor", "cluster", *exts}
        section = {k: v for k, v in plan.config.items() if k not in skip}
        return st.fingerprint("extract", {"run": section, "extractors": exts},
                              {"photos": st.sha256_bytes(st.canonical_json(records))})

    def _data_fp(self) -> str | None:
        from facefeat.io.hashing import sha256_file

        rec = st.read_record(self.folder, "extract")
        if rec is None:
            return None
        tables = {k: v for k, v in rec["outputs"].items() if k.endswith(".parquet")}
        inputs = {"clinical": sha256_file(self.config["inputs"]["clinical"]), "tables": tables}
        section = {k: v for k, v in self.config["inputs"].items() if k not in ("photos", "clinical")}
        return st.fingerprint("data", section, inputs)

    def _arm_fp(self, arm: Mapping[str, Any], data: "ModellingData") -> str:
        from facefeat.io.hashing import sha256_file
        from facefeat.study.arms import arm_columns

        blocks = arm_columns(arm, data.info)
        cols = [c for v in blocks.values() for c in v]
        inputs = {"columns": st.frame_hash(data.X[cols]), "target": st.frame_hash(data.target)}
        section = {"arm": dict(arm), "cv": self.config["cv"], "time_unit": self.config["inputs"]["time_unit"]}
        if arm.get("robustness"):
            t = Path(arm["robustness"]["table"])
            inputs["robustness"] = sha256_file(t) if t.is_file() else str(t)
            section["arm"]["robustness"] = {**arm["robustness"], "table": "(by content: inputs.robustness)"}
        return st.fingerprint(f"arm:{arm['name']}", section, inputs)

    def _downstream_fp(self, stage: str, arm_fps: Mapping[str, str], extra: Mapping[str, Any]) -> str:
        return st.fingerprint(stage, extra, {"arms": dict(arm_fps), "reference": self.config["reference"]})

    # -- the run ---------------------------------------------------------------------------
    def run(self, *, jobs: int | None = None) -> StudyResult:
        """Run every stage that is not current; returns the comparison.

        Raises
        ------
        FacefeatError
            Bad config or inputs (checked before any work starts).
        """
        self._ran = []
        self.folder.mkdir(parents=True, exist_ok=True)
        check_inputs(self.config)  # every input problem before any work
        jobs = jobs or self.config["execution"]["jobs"]
        trained = self._run_training()
        plan = self._extract_plan(trained)
        self._stage("extract", self._extract_fp(plan), lambda: self._do_extract(plan))
        data_fp = self._data_fp()
        self._stage("data", data_fp, self._do_data)
        data = ModellingData.load(self.folder / "data")
        arm_fps = {}
        for arm in self.config["arms"]:
            fp = self._arm_fp(arm, data)
            arm_fps[arm["name"]] = fp
            self._stage(f"arm:{arm['name']}", fp, lambda arm=arm: self._do_arm(arm, data, jobs))
        comp_fp = self._downstream_fp("comparison", arm_fps, {"subgroups": self.config["subgroups"],
                                                               "level": self.config["cv"]["level"]})
        self._stage("comparison", comp_fp, lambda: self._do_comparison(data))
        outputs = self.config["outputs"]
        if outputs["report"]:
            rep_fp = self._downstream_fp("report", arm_fps, {"comparison": comp_fp, "name": self.config["name"],
                                                             "description": self.config["description"]})
            self._stage("report", rep_fp, lambda: self._do_report(data))
        if outputs["exports"]:
            from facefeat.io.hashing import sha256_file

            key = outputs["pseudonymise"]
            exp_fp = self._downstream_fp("exports", arm_fps, {
                "comparison": comp_fp, "data": data_fp,
                "key": sha256_file(key) if key and Path(key).is_file() else key})
            self._stage("exports", exp_fp, lambda: self._do_exports(data))
        self._write_lock(plan)
        return self.result()

    def result(self) -> StudyResult:
        """The comparison of a finished study, read from its folder."""
        from facefeat.study.comparison import read_comparison

        comp, lrt, arms = read_comparison(self.folder)
        return StudyResult(comp, lrt, arms, list(self._ran), self.folder, self.config["reference"])

    # -- stages ---------------------------------------------------------------------------
    def _run_training(self) -> dict[str, str]:
        trained: dict[str, str] = {}
        for stage in ("generator", "encoder"):
            spec = self.config["training"].get(stage)
            if not spec:
                continue
            name = f"training.{stage}"
            rec = self._stage(name, self._training_fp(stage), lambda stage=stage: self._do_training(stage, trained))
            trained[stage] = str(self.folder / rec["info"]["checkpoint"])
        return trained

    def _do_training(self, stage: str, trained: Mapping[str, str]) -> tuple[list[Path], dict]:
        spec = self.config["training"][stage]
        out = self.folder / "train" / stage
        images = spec.get("images") or self.config["inputs"]["photos"]
        device = self.config["extraction"]["device"]
        resume = out.exists() and any(out.iterdir())  # a killed run continues from its newest snapshot
        if stage == "generator":
            from facefeat.training import TrainingConfig, train_generator
            from facefeat.training.config import config_from_dict

            cfg = config_from_dict(TrainingConfig, spec["config"], label="training.generator.config")
            res = train_generator(init=spec["init"], images=images, out=out, config=cfg, device=device, resume=resume,
                                  align=spec["align"], resolution=spec["resolution"], channel_base=spec["channel_base"],
                                  progress=self.show_bars)
        else:
            from facefeat.training import EncoderTrainingConfig, train_encoder
            from facefeat.training.config import config_from_dict

            gen = trained["generator"] if spec["generator"] == "@training.generator" else spec["generator"]
            cfg = config_from_dict(EncoderTrainingConfig, spec["config"], label="training.encoder.config")
            res = train_encoder(gen, out=out, images=images, config=cfg, device=device, resume=resume,
                                align=spec["align"], progress=self.show_bars)
        final = Path(res.final)
        files = [f for f in final.parent.glob(final.name + "*") if f.is_file()] or [final]
        return files, {"checkpoint": str(final.relative_to(self.folder)), "out": str(out.relative_to(self.folder))}

    def _do_extract(self, plan) -> tuple[list[Path], dict]:
        from facefeat.engine.run import run_extraction

        # The study owns extract/: a run of other inputs there is replaced (overwrite), while rows
        # of extractors whose settings did not change are reused by the engine.
        summary = run_extraction(plan.config, progress=self.show_bars, overwrite=True)
        files = [Path(p) for p in summary.tables.values()]
        return files, {"status_counts": summary.status_counts, "n_images": summary.n_images,
                       "n_processed": summary.n_processed, "n_reused": summary.n_reused,
                       "executor": getattr(summary, "executor", None)}

    def _do_data(self) -> tuple[list[Path], dict]:
        from facefeat.survival.dataset import load_survival_data

        inputs = self.config["inputs"]
        # only the tables of this study's extractors (a table of an extractor removed from the config stays unread)
        tables = [self.extract_dir / f"{name}.parquet" for name in self.config["extraction"]["extractors"]]
        ds = load_survival_data(clinical=inputs["clinical"], features=tables, id_column=inputs["id"],
                                time=inputs["time"], event=inputs["event"],
                                covariates=list(inputs["covariates"]) or "none",
                                categorical=list(inputs["categorical"]) or None, aggregate=inputs["aggregate"],
                                image_order=inputs["image_order"], unmatched="drop", block_per_extractor=True)
        return ModellingData.write(self.folder / "data", ds, inputs)

    def _do_arm(self, arm: Mapping[str, Any], data: "ModellingData", jobs: int) -> tuple[list[Path], dict]:
        from facefeat.study.arms import arm_columns, filter_robust, run_arm

        out = self.folder / "arms" / arm["name"]
        if out.exists():
            shutil.rmtree(out)  # a stale or half-written arm folder: nothing in it is kept
        blocks, robust = filter_robust(arm, arm_columns(arm, data.info))
        return run_arm(arm, data.X, data.y, blocks, list(data.info["categorical"]), self.config["cv"], out,
                       time_unit=self.config["inputs"]["time_unit"], robustness=robust, jobs=jobs,
                       data_sources=data.info.get("sources"))

    def _do_comparison(self, data: "ModellingData") -> tuple[list[Path], dict]:
        from facefeat.study.comparison import compare_arms

        return compare_arms(self.config, self.folder, data)

    def _do_report(self, data: "ModellingData") -> tuple[list[Path], dict]:
        from facefeat.study.report import write_study_report

        path = write_study_report(self.config, self.folder, data)
        return [path], {}

    def _do_exports(self, data: "ModellingData") -> tuple[list[Path], dict]:
        from facefeat.study.exports import write_exports

        return write_exports(self.config, self.folder, data)

    # -- status and lock ----------------------------------------------------------------------
    def status(self) -> list[st.StageState]:
        """Which stages are done, stale or missing, computing no stage (inputs are hashed)."""
        out: list[st.StageState] = []
        trained: dict[str, str] = {}
        upstream_ok = True
        for stage in ("generator", "encoder"):
            if self.config["training"].get(stage):
                s = st.check_stage(f"training.{stage}", self.folder, self._training_fp(stage))
                out.append(s)
                upstream_ok &= s.state == "done"
                if s.record:
                    trained[stage] = str(self.folder / s.record["info"]["checkpoint"])
        try:
            plan = self._extract_plan(trained)
            fp = self._extract_fp(plan)
        except ConfigError:
            fp = None  # needs a training stage that has not run
        s = st.check_stage("extract", self.folder, fp if upstream_ok else None)
        out.append(s)
        upstream_ok &= s.state == "done"
        s = st.check_stage("data", self.folder, self._data_fp() if upstream_ok else None)
        out.append(s)
        upstream_ok &= s.state == "done"
        data = ModellingData.load(self.folder / "data") if upstream_ok else None
        arm_fps = {}
        for arm in self.config["arms"]:
            fp = self._arm_fp(arm, data) if data is not None else None
            arm_fps[arm["name"]] = fp
            out.append(st.check_stage(f"arm:{arm['name']}", self.folder, fp))
        arms_ok = upstream_ok and all(s.state == "done" for s in out if s.name.startswith("arm:"))
        comp_fp = self._downstream_fp("comparison", arm_fps, {"subgroups": self.config["subgroups"],
                                                               "level": self.config["cv"]["level"]}) if arms_ok else None
        s = st.check_stage("comparison", self.folder, comp_fp)
        out.append(s)
        if self.config["outputs"]["report"]:
            fp = self._downstream_fp("report", arm_fps, {"comparison": comp_fp, "name": self.config["name"],
                                                         "description": self.config["description"]})
            out.append(st.check_stage("report", self.folder, fp if s.state == "done" else None))
        if self.config["outputs"]["exports"]:
            from facefeat.io.hashing import sha256_file

            key = self.config["outputs"]["pseudonymise"]
            fp = self._downstream_fp("exports", arm_fps, {
                "comparison": comp_fp, "data": self._data_fp() if upstream_ok else None,
                "key": sha256_file(key) if key and Path(key).is_file() else key})
            out.append(st.check_stage("exports", self.folder, fp if s.state == "done" else None))
        return out

    def _write_lock(self, plan) -> Path:
        from facefeat._version import library_versions
        from facefeat.io.hashing import sha256_file

        records = {}
        for path in sorted((self.folder / st.RECORDS).glob("*.json")):
            rec = json.loads(path.read_text())
            records[rec["stage"]] = {"fingerprint": rec["fingerprint"], "outputs": rec["outputs"]}
        versions = library_versions()
        models = {}
        for arm in arm_names(self.config):
            meta = self.folder / "arms" / arm / "model" / "model.json"
            if meta.is_file():
                models[arm] = json.loads(meta.read_text()).get("model_sha256")
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        lock = {
            "facefeat_version": __version__, "study_file": self.config["_file"], "config": config,
            "inputs": {"clinical_sha256": sha256_file(self.config["inputs"]["clinical"]),
                       "photos": {"source": plan.inputs.source, "n": len(plan.inputs.records),
                                  "manifest_sha256": plan.inputs.manifest_sha256}},
            "extractor_models_sha256": {e.name: {k: sha256_file(v) for k, v in e.model_files().items()}
                                        for e in plan.extractors},
            "arm_models_sha256": models, "versions": versions, "stages": records,
        }
        path = self.folder / LOCK_FILE
        from facefeat.io.jsonsafe import dumps_json

        new = dumps_json(lock, indent=2, sort_keys=True)
        if not path.is_file() or path.read_text() != new:
            from facefeat.io.atomic import write_bytes_atomic

            write_bytes_atomic(path, new.encode())
        return path


def _listing_hash(photos: str, subject_from: str) -> str:
    from facefeat.io.manifest import load_inputs

    inputs = load_inputs(photos, subject_from=subject_from)
    return st.sha256_bytes(st.canonical_json([[r.image_id, r.subject_id] for r in inputs.records]))


@dataclass
class ModellingData:
    """The modelling table shared by every arm (``data/modelling.parquet``) and its description."""

    X: pd.DataFrame
    y: np.ndarray
    target: pd.DataFrame
    info: dict[str, Any]

    @staticmethod
    def write(folder: Path, ds, inputs: Mapping[str, Any]) -> tuple[list[Path], dict]:
        from facefeat.io.atomic import atomic_output

        n, events = int(len(ds.y)), int(ds.y["event"].sum())
        if n < 10 or events < 2:
            raise DataError(f"only {n} subjects with {events} events are in the clinical table and have a usable "
                            f"photo; too few for a study. Data handling: {ds.report.to_markdown()}")
        folder.mkdir(parents=True, exist_ok=True)
        table = ds.X.copy()
        table.insert(0, "event", ds.y["event"].astype(bool))
        table.insert(0, "time", ds.y["time"].astype(float))
        table.index.name = "subject_id"
        with atomic_output(folder / "modelling.parquet", suffix=".parquet") as tmp:
            table.to_parquet(tmp, index=True)
        blocks = {k: v for k, v in ds.blocks.items() if k != "clinical"}
        info = {"n": int(len(ds.y)), "events": int(ds.y["event"].sum()), "covariates": ds.blocks.get("clinical", []),
                "categorical": list(ds.categorical), "blocks": blocks, "time_unit": inputs["time_unit"],
                "data_report": ds.report.to_list(), "sources": ds.sources}
        st.write_json(folder / "dataset.json", info)
        return [folder / "modelling.parquet", folder / "dataset.json"], {"n": info["n"], "events": info["events"]}

    @classmethod
    def load(cls, folder: Path) -> "ModellingData":
        from facefeat.survival.target import to_structured

        table = pd.read_parquet(folder / "modelling.parquet")
        info = json.loads((folder / "dataset.json").read_text())
        target = table[["time", "event"]]
        y = to_structured(target["event"].to_numpy(bool), target["time"].to_numpy(float))
        return cls(table.drop(columns=["time", "event"]), y, target, info)
