"""``facefeat fit``, ``facefeat evaluate`` and ``facefeat predict``.

Only argument parsing and composition live here; the work is done by
:mod:`facefeat.survival`. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from facefeat.io.jsonsafe import to_jsonable

log = logging.getLogger("facefeat.survival")

MODELS = ("coxph", "coxnet", "rsf", "gbsa", "deepsurv")

FIT_EPILOG = """\
examples:
  facefeat fit --features runs/r1 --clinical clinical.csv --time os_months --event death \\
      --model coxnet --fusion late --out models/faces_clinical
  facefeat fit --features runs/r1 --clinical clinical.csv --covariates none --model deepsurv \\
      --param hidden_layers=[64] --param dropout=0.3 --out models/faces_only

writes MODEL_DIR/model.skops, model.json (feature schema, settings, provenance),
fit_report.json / fit_report.md (what was dropped or imputed, fusion weights, the hazard-ratio
table) and, for Cox models, hazard_ratios.csv (HR, 95 % CI, Wald p and the unit of each term).
"""

EVAL_EPILOG = """\
examples:
  # 5 x repeated 5-fold cross-validation of a model specification
  facefeat evaluate --features runs/r1 --clinical clinical.csv --time os --event death \\
      --model coxph --fusion late --folds 5 --repeats 5 --out results/cv_late
  # nested CV: tune the ridge penalty inside each training fold
  facefeat evaluate --clinical clinical.csv --time os --event death --model coxph \\
      --grid alpha=0.01,0.1,1,10 --out results/cv_tuned
  # a saved model on held-out subjects, with bootstrap intervals
  facefeat evaluate --model-dir models/m1 --features runs/test --clinical test.csv \\
      --bootstrap 1000 --out results/heldout

  # does tumour grade add to the clinical model? paired comparison on identical folds + LRT
  facefeat evaluate --clinical gbsg2.csv --covariates age,pnodes,tsize,tgrade --categorical tgrade \
      --compare age,pnodes,tsize --out results/grade
  # subgroup audit of the out-of-fold risk
  facefeat evaluate --clinical clinical.csv --model coxph --subgroups sex,age --bands age=50,65 --out results/sub

writes OUT/results.json, OUT/results.md and PNG plots (km_risk_groups.png, td_auc.png,
calibration.png); with --compare OUT/comparison.csv, with --subgroups OUT/subgroups.csv.
"""

PREDICT_EPILOG = """\
examples:
  facefeat predict --model-dir models/m1 --features runs/new --clinical new_subjects.csv \\
      --times 12,24,60 --out predictions.csv

the clinical table needs the id column and the model's covariates (no outcome). The output
has one row per subject: risk (higher = worse), risk_group (by the training cut-offs) and
survival probabilities at --times.
"""


def _data_args(p: argparse.ArgumentParser, *, target: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--features", action="append", metavar="PATH",
                   help="run directory or Parquet feature table (repeatable)")
    g.add_argument("--clinical", required=target, metavar="CSV",
                   help="clinical table (CSV, ;-CSV, TSV or Parquet)" + ("" if target else
                        "; optional for a faces-only model: subjects are then those of the feature tables"))
    g.add_argument("--id", dest="id_column", help="subject id column (default subject_id, or the model's)")
    if target:
        g.add_argument("--time", help="follow-up time column (default time, or the model's)")
        g.add_argument("--event", help="event column, 0/1 or True/False (default event, or the model's)")
        g.add_argument("--time-unit", help="unit of the time column (days, months, years), shown on every plot and "
                                           "table; recorded with the model")
    g.add_argument("--covariates", help="comma-separated clinical covariates; default all other columns; 'none' for faces only")
    g.add_argument("--categorical", help="comma-separated covariates to one-hot encode (text columns always are)")
    g.add_argument("--aggregate", choices=("mean", "first", "most_recent"), default="mean",
                   help="how several photos of a subject are combined (default mean)")
    g.add_argument("--image-order", help="feature-table column ordering photos (for first / most_recent)")
    g.add_argument("--unmatched", choices=("drop", "error"), default="drop",
                   help="subjects on one side only: drop and report (default) or fail")
    g.add_argument("--block-per-extractor", action="store_true", help="one image block per extractor")
    g.add_argument("--sep", help="CSV field separator (default: detected)")
    g.add_argument("--decimal", choices=(".", ","), help="decimal mark (default: '.', decimal commas detected in ;-files)")


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default="coxph", help="survival model (default coxph)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="model parameter, value as JSON (e.g. alpha=0.1, hidden_layers=[64,32]); repeatable")
    g.add_argument("--clinical-model", choices=MODELS, help="late fusion: model of the clinical block (default: --model)")
    g.add_argument("--fusion", choices=("early", "late"), default="early", help="combine blocks early or late (default early)")
    g.add_argument("--combiner", choices=("stack", "mean"), default="stack",
                   help="late fusion: Cox model on out-of-fold risks (stack) or weighted mean")
    g.add_argument("--weights", help="late fusion with --combiner mean: block=weight,... (default equal)")
    g.add_argument("--pca", help="PCA of each image block: number of components or variance fraction (e.g. 32 or 0.95)")
    g.add_argument("--impute", choices=("median", "mean", "none"), default="median", help="missing numeric values (default median)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _robustness_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature robustness")
    g.add_argument("--robustness", metavar="TABLE", help="robustness table or folder from 'facefeat robustness': keep "
                   "only image features (embedding dimensions one by one) whose ICC reaches --min-icc")
    g.add_argument("--min-icc", type=float, metavar="X", help="ICC threshold with --robustness (usual: 0.75 or 0.9); a saved model (--model-dir) re-applies its own filter")


def add_commands(subparsers: Any) -> None:
    """Register ``fit``, ``evaluate`` and ``predict``."""
    from facefeat.cli import add_trust_option

    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("fit", help="fit a survival model on features and clinical data",
                              description="Fit a survival model and save it with its schema and provenance.",
                              formatter_class=fmt, epilog=FIT_EPILOG)
    _data_args(p)
    _robustness_args(p)
    _model_args(p)
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory for the model and its report")
    p.set_defaults(func=cmd_fit)

    p = subparsers.add_parser("evaluate", help="cross-validate a model, or evaluate a saved one on held-out data",
                              description="Cross-validate a model specification (repeated stratified k-fold, optional "
                                          "nested tuning) or, with --model-dir, evaluate a saved model on new subjects.",
                              formatter_class=fmt, epilog=EVAL_EPILOG)
    _data_args(p)
    _robustness_args(p)
    _model_args(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--model-dir", help="evaluate this saved model on the given data instead of cross-validating")
    add_trust_option(g)
    g.add_argument("--folds", type=int, default=5, help="CV folds (default 5)")
    g.add_argument("--repeats", type=int, default=5, help="CV repeats (default 5)")
    g.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="nested CV: tune this model parameter over these values (repeatable)")
    g.add_argument("--inner-folds", type=int, default=3, help="inner folds of nested CV (default 3)")
    g.add_argument("--scoring", default="c_index", choices=("c_index", "uno_c", "auc_mean", "neg_ibs"),
                   help="score maximised in nested CV (default c_index)")
    g.add_argument("--times", help="comma-separated times for time-dependent AUC (default: event-time deciles 10-80 %%)")
    g.add_argument("--calibration-times", help="comma-separated calibration times (default: event-time quartiles)")
    g.add_argument("--tau", type=float, help="truncation time of Uno's C (default: 80th percentile of times)")
    g.add_argument("--bootstrap", type=int, default=0, help="bootstrap replicates for held-out intervals (with --model-dir)")
    g.add_argument("--risk-groups", type=int, default=2, help="risk groups in the Kaplan-Meier plot (default 2)")
    g.add_argument("--jobs", type=int, default=1, help="parallel CV folds (default 1)")
    g.add_argument("--compare", metavar="MODEL_DIR|SPEC",
                   help="compare with a reference model on the same folds: a saved model directory, a covariate list "
                        "('age,stage', 'none' for no covariates) or overrides 'covariates=age;model=coxnet;pca=10'; "
                        "writes comparison.csv (paired differences with intervals and p; the likelihood-ratio test "
                        "when both are unpenalised coxph models and nested)")
    g.add_argument("--subgroups", metavar="COL[,COL...]",
                   help="subgroup audit by these clinical columns (C-index per subgroup with interval, risk x subgroup "
                        "interaction test); writes subgroups.csv")
    g.add_argument("--bands", action="append", default=[], metavar="COL=CUTS",
                   help="bands of a numeric subgroup column: cut points (age=50,65) or quantile bands (age=q4); "
                        "default tertiles for numeric columns with more than 10 values (repeatable)")
    g.add_argument("--min-events", type=int, default=5,
                   help="subgroups with fewer events get no C-index, only the reason (default 5)")
    g.add_argument("--out", required=True, metavar="DIR", help="directory for results.json, results.md and plots")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("predict", help="predict risk and survival for new subjects with a saved model",
                              description="Score new subjects with a model saved by 'facefeat fit'.",
                              formatter_class=fmt, epilog=PREDICT_EPILOG)
    _data_args(p, target=False)
    p.add_argument("--model-dir", required=True, help="directory written by 'facefeat fit'")
    add_trust_option(p)
    p.add_argument("--times", help="comma-separated times for survival probabilities")
    p.add_argument("--unknown-levels", choices=("warn", "error"), default="warn",
                   help="a categorical level the model never saw: warn, naming column and level, and score the row "
                        "as the reference level (default), or refuse the table")
    p.add_argument("--out", required=True, metavar="FILE", help="output CSV or Parquet")
    p.set_defaults(func=cmd_predict)


# -- helpers ---------------------------------------------------------------------------------------

def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _kv(items: list[str], what: str) -> dict[str, Any]:
    from facefeat.errors import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{what} {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def _floats(text: str | None, what: str) -> list[float] | None:
    from facefeat.errors import ConfigError

    if not text:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, not {text!r}") from None


def _data_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "id_column": args.id_column or "subject_id", "time": getattr(args, "time", None) or "time",
        "event": getattr(args, "event", None) or "event",
        "covariates": args.covariates, "categorical": args.categorical, "aggregate": args.aggregate,
        "image_order": args.image_order, "block_per_extractor": args.block_per_extractor,
        "time_unit": getattr(args, "time_unit", None),
    }


def _load(args: argparse.Namespace, *, require_target: bool = True):
    from facefeat.survival.dataset import load_survival_data

    s = _data_settings(args)
    return load_survival_data(
        clinical=args.clinical, features=args.features, id_column=args.id_column or s["id_column"],
        time=s["time"] or "time", event=s["event"] or "event", covariates=s["covariates"], categorical=s["categorical"],
        aggregate=s["aggregate"], image_order=s["image_order"], unmatched=args.unmatched,
        block_per_extractor=s["block_per_extractor"], sep=args.sep, decimal=args.decimal, require_target=require_target,
        robustness=getattr(args, "robustness", None), min_icc=getattr(args, "min_icc", None),
    )


def build_estimator(args: argparse.Namespace, ds: Any):
    """The SurvivalEstimator a command line describes, for the data set's blocks."""
    from facefeat.errors import ConfigError
    from facefeat.survival.blocks import FeatureBlock
    from facefeat.survival.estimator import SurvivalEstimator, make_model

    impute = None if args.impute == "none" else args.impute
    pca = None
    if args.pca:
        pca = float(args.pca) if "." in args.pca else int(args.pca)
    blocks = {}
    for name, cols in ds.blocks.items():
        if name == "clinical":
            blocks[name] = FeatureBlock(columns=cols, categorical=[c for c in ds.categorical if c in cols], impute=impute)
        else:
            blocks[name] = FeatureBlock(columns=cols, categorical=(), impute=impute, pca=pca, random_state=args.seed)
    params = _kv(args.param, "--param")
    weights = None
    if args.weights:
        weights = {k: float(v) for k, v in _kv(args.weights.split(","), "--weights").items()}
    if args.fusion == "late" and len(blocks) < 2:
        raise ConfigError(f"--fusion late needs two blocks or more; the data has {list(blocks)} "
                          "(add --features and covariates, or use --block-per-extractor)")
    model: Any = args.model
    model_params = params or None
    if args.fusion == "late" and args.clinical_model and args.clinical_model != args.model:
        model = {"clinical": make_model(args.clinical_model, random_state=args.seed),
                 "*": make_model(args.model, random_state=args.seed, **params)}
        model_params = None
    return SurvivalEstimator(model, model_params=model_params, blocks=blocks, fusion=args.fusion,
                             combiner=args.combiner, weights=weights, random_state=args.seed)


def _write_results(out: Path, data: dict, markdown: str) -> None:
    from facefeat.survival.results import write_results

    write_results(out, data, markdown)


def _saved_model_data(args: argparse.Namespace, meta: dict, *, require_target: bool):
    """The data set of ``args.clinical`` / ``args.features`` built the way the saved model was fitted."""
    from facefeat.survival.dataset import load_model_dataset

    return load_model_dataset(meta, clinical=args.clinical, features=args.features,
                              time=getattr(args, "time", None), event=getattr(args, "event", None),
                              id_column=args.id_column, unmatched=args.unmatched, require_target=require_target,
                              sep=args.sep, decimal=args.decimal)


# -- commands --------------------------------------------------------------------------------------

def _hazard_ratio_section(est: Any, out: Path, info: dict) -> str:
    """Write MODEL_DIR/hazard_ratios.csv for Cox models; the Markdown section for fit_report.md."""
    from facefeat.errors import ConfigError
    from facefeat.survival.hazard import hazard_ratio_markdown, hazard_ratio_table

    try:
        table = hazard_ratio_table(est)
    except ConfigError as exc:
        return f"\n## Hazard ratios\n\nNone: {exc}.\n"
    table.to_csv(out / "hazard_ratios.csv", index=False)
    info["hazard_ratios"] = table.to_dict(orient="records")
    shown = table
    head = ""
    if len(table) > 30:
        order = table["coef"].abs().sort_values(ascending=False).index[:30]
        shown = table.loc[order]
        head = f"The 30 largest of {len(table)} terms by |coef|; every term is in hazard_ratios.csv.\n\n"
    what = ("late fusion: the combiner's hazard ratio per SD of each block's out-of-fold risk score"
            if est.fusion == "late" else "each row's unit says what the hazard ratio is per")
    return f"\n## Hazard ratios\n\n{what}.\n\n{head}" + hazard_ratio_markdown(shown)


def cmd_fit(args: argparse.Namespace) -> int:
    from facefeat.errors import ConfigError
    from facefeat.survival.dataset import dataset_schema
    from facefeat.survival.metrics import risk_cutoffs
    from facefeat.survival.persist import save_model

    ds = _load(args)
    est = build_estimator(args, ds)
    est.fit(ds.X, ds.y)
    ds.report.extend(est.report_)
    risk = est.predict(ds.X)
    cutoffs = risk_cutoffs(risk, 2).tolist()
    settings = {**_data_settings(args), "risk_cutoffs": cutoffs, "covariates_used": ds.blocks.get("clinical", [])}
    provenance = {"sources": ds.sources, "feature_table_metadata": [t.get("metadata") for t in ds.feature_schema],
                  "n_subjects": int(len(ds.y)), "n_events": int(ds.y["event"].sum())}
    out = Path(args.out)
    save_model(out, est, schema=dataset_schema(ds), settings=settings, provenance=provenance)
    c = est.score(ds.X, ds.y)
    info: dict[str, Any] = {"n": int(len(ds.y)), "events": int(ds.y["event"].sum()), "apparent_c_index": c,
                            "blocks": {k: len(v) for k, v in ds.blocks.items()}, "data_report": ds.report.to_list()}
    md = [f"# Model fit\n\n{info['n']} subjects, {info['events']} events; blocks: "
          + ", ".join(f"{k} ({v} columns)" for k, v in info["blocks"].items())
          + f"; model {args.model}, fusion {args.fusion}.\n\nApparent (training) C-index {c:.3f}: optimistic, "
          "use 'facefeat evaluate' for an honest estimate.\n"]
    if c >= 0.999:
        md.append(f"\n**Warning:** apparent C-index {c:.3f}: the model orders the training subjects perfectly, the mark "
                  "of separation or of more features than the events support; its coefficients mean nothing (see the "
                  "data handling table for the likely columns).\n")
    if est.fusion == "late":
        info["fusion_weights"] = est.fusion_weights_.to_dict()
        md.append("\n## Fusion weights\n\n" + "\n".join(f"- {k}: {v:.3f}" for k, v in info["fusion_weights"].items()) + "\n")
    else:
        try:
            info["coefficients"] = est.coefficients().to_dict()
        except ConfigError:  # models without coefficients (rsf, gbsa, deepsurv)
            pass
    md.append(_hazard_ratio_section(est, out, info))
    md.append("\n## Data handling\n\n" + ds.report.to_markdown())
    (out / "fit_report.json").write_text(json.dumps(to_jsonable(info), indent=2))
    (out / "fit_report.md").write_text("".join(md))
    print(f"fitted {args.model} ({args.fusion} fusion) on {info['n']} subjects, {info['events']} events; "
          f"apparent C-index {c:.3f}; model saved to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from facefeat.survival import plots

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times = _floats(args.times, "--times")
    cal_times = _floats(args.calibration_times, "--calibration-times")
    if args.model_dir:
        return _evaluate_saved(args, out, times, cal_times)
    from facefeat.errors import ConfigError
    from facefeat.survival.validation import cross_validate

    ds = _load(args)
    est = build_estimator(args, ds)
    grid = None
    if args.grid:
        import itertools

        space = {}
        for g in args.grid:
            if "=" not in g:
                raise ConfigError(f"--grid {g!r} must look like KEY=V1,V2 (or KEY=[JSON list])")
            k, v = (x.strip() for x in g.split("=", 1))
            # KEY=[[32],[64,64]] is a JSON list of values; KEY=0.1,1,min is split on commas
            vals = _value(v) if v.startswith("[") else [_value(x.strip()) for x in v.split(",") if x.strip()]
            space[k] = vals if isinstance(vals, list) else [vals]
        base = dict(est.model_params or {})
        combos = [dict(zip(space, vals)) for vals in itertools.product(*space.values())]
        grid = {"model_params": [{**base, **c} for c in combos]}
    cv_kwargs = dict(n_splits=args.folds, n_repeats=args.repeats, param_grid=grid, inner_cv=args.inner_folds,
                     scoring=args.scoring, times=times, tau=args.tau, calibration_times=cal_times,
                     risk_groups=args.risk_groups, random_state=args.seed, n_jobs=args.jobs)
    res = cross_validate(est, ds.X, ds.y, **cv_kwargs)
    unit = args.time_unit
    p = plots.plot_km_by_risk_group(res.oof["time"], res.oof["event"], res.oof["risk_group"], out / "km_risk_groups.png",
                                    title="Out-of-fold risk groups (first CV repeat)", time_unit=unit)
    plots.plot_td_auc(res.auc, out / "td_auc.png", time_unit=unit)
    if res.calibration:
        plots.plot_calibration(res.calibration, out / "calibration.png", time_unit=unit)
    from facefeat.survival.dataset import dataset_schema
    from facefeat.survival.persist import spec_fingerprint
    from facefeat.survival.results import write_cv_results

    extra: dict[str, Any] = {"logrank_p_oof": p, "data_report": ds.report.to_list()}
    md = f"\nLog-rank p between out-of-fold risk groups (first repeat): {p:.3g}\n"
    if args.compare:
        text, extra["comparison"] = _compare_cv(args, out, ds, est, res, cv_kwargs)
        md += text
    if args.subgroups:
        oof = res.oof
        yo = _target(oof["event"].to_numpy(bool), oof["time"].to_numpy(float))
        text, extra["subgroups"] = _subgroups(args, out, oof["risk"].to_numpy(float), yo, oof["id"].astype(str),
                                              id_column=args.id_column or "subject_id",
                                              what="out-of-fold risk of the first CV repeat")
        md += text
    # nested tuning makes it another specification than any one fitted model
    spec = spec_fingerprint(est, dataset_schema(ds), {**_data_settings(args), **({"param_grid": grid} if grid else {})})
    write_cv_results(out, res, model=args.model, fusion=args.fusion, spec_sha256=spec,
                     title=f"Cross-validation: {args.model}, {args.fusion} fusion", extra=extra,
                     extra_markdown=md + "\n## Data handling\n\n" + ds.report.to_markdown())
    s = res.summary.set_index("metric")["mean"]
    print(f"{args.repeats}x{args.folds}-fold CV: C-index {s['c_index']:.3f}, Uno's C {s['uno_c']:.3f}, "
          f"IBS {s['ibs']:.3f}; results in {out}")
    return 0


def _evaluate_saved(args, out: Path, times, cal_times) -> int:
    import numpy as np

    from facefeat.survival import plots
    from facefeat.survival.metrics import assign_risk_groups, evaluate
    from facefeat.survival.persist import load_model

    est, meta = load_model(args.model_dir, trust=args.trust)
    ds = _saved_model_data(args, meta, require_target=True)
    res = evaluate(est, ds.X, ds.y, times=times, tau=args.tau, calibration_times=cal_times,
                   n_bootstrap=args.bootstrap, random_state=args.seed)
    cut = np.asarray(meta["settings"].get("risk_cutoffs") or [np.median(res.risk)])
    group = assign_risk_groups(res.risk, cut)
    unit = (meta.get("settings") or {}).get("time_unit")
    p = plots.plot_km_by_risk_group(ds.y["time"], ds.y["event"], group, out / "km_risk_groups.png",
                                    title="Held-out subjects by training risk cut-off", time_unit=unit)
    plots.plot_td_auc(res.auc_curve, out / "td_auc.png", time_unit=unit)
    if res.calibration:
        plots.plot_calibration(res.calibration, out / "calibration.png", time_unit=unit)
    data = {"mode": "held-out", "model_dir": str(args.model_dir), "logrank_p": p, **res.to_dict(),
            "data_report": ds.report.to_list()}
    md = f"# Held-out evaluation of {args.model_dir}\n\n" + res.to_markdown() + f"\nLog-rank p between risk groups: {p:.3g}\n"
    if args.compare:
        text, data["comparison"] = _compare_saved(args, out, est, meta, ds, res, times=times)
        md += text
    if args.subgroups:
        text, data["subgroups"] = _subgroups(args, out, res.risk, ds.y, ds.X.index.astype(str),
                                             id_column=args.id_column or meta["settings"].get("id_column") or "subject_id",
                                             what="the saved model's risk on these subjects")
        md += text
    md += "\n## Data handling\n\n" + ds.report.to_markdown()
    _write_results(out, data, md)
    m = res.metrics
    print(f"held-out: C-index {m['c_index']:.3f}, Uno's C {m['uno_c']:.3f}, IBS {m['ibs']:.3f}; results in {out}")
    return 0


def _fitted_blocks(est: Any) -> list:
    """The fitted FeatureBlocks of a SurvivalEstimator (early or late fusion)."""
    if hasattr(est, "blocks_"):
        return list(est.blocks_.values())
    return [b for b, _ in getattr(est, "block_models_", {}).values()]


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from facefeat.survival.metrics import assign_risk_groups, survival_at
    from facefeat.survival.persist import load_model

    est, meta = load_model(args.model_dir, trust=args.trust)
    settings = dict(meta["settings"])
    ds = _saved_model_data(args, meta, require_target=False)
    for blk in _fitted_blocks(est):
        blk.unknown_levels = args.unknown_levels
    risk = est.predict(ds.X)
    cut = np.asarray(settings.get("risk_cutoffs") or [np.median(risk)])
    out = pd.DataFrame({"subject_id": ds.X.index, "risk": risk, "risk_group": assign_risk_groups(risk, cut)})
    times = _floats(args.times, "--times")
    if times:
        surv = survival_at(est, ds.X, np.asarray(times))
        for j, t in enumerate(times):
            out[f"survival_{t:g}"] = surv[:, j]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False)
    if len(ds.report):
        path.with_suffix(".report.md").write_text(ds.report.to_markdown())
    print(f"predicted {len(out)} subject(s) -> {path}" + (f"; {len(ds.report)} data handling note(s) in "
          f"{path.with_suffix('.report.md')}" if len(ds.report) else ""))
    return 0


# -- comparison and subgroups ------------------------------------------------------------------------

def _target(event, time):
    from facefeat.survival.target import to_structured

    return to_structured(event, time)


def _bands(items: list[str]) -> dict[str, Any]:
    from facefeat.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--bands {item!r} must look like COL=CUT1,CUT2 or COL=qN")
        col, spec = (x.strip() for x in item.split("=", 1))
        if spec.lower().startswith("q"):
            try:
                out[col] = int(spec[1:])
            except ValueError:
                raise ConfigError(f"--bands {item!r}: qN needs a whole number of bands, e.g. {col}=q4") from None
        else:
            vals = _floats(spec, f"--bands {col}")
            if not vals:
                raise ConfigError(f"--bands {item!r} has no cut point")
            out[col] = vals
    return out


def _clinical_columns(args: argparse.Namespace, ids: Any, columns: list[str], *, id_column: str):
    """``columns`` of the clinical table for subjects ``ids`` (in that order)."""
    from facefeat.errors import DataError
    from facefeat.survival.tables import read_clinical

    table = read_clinical(args.clinical, sep=args.sep, decimal=args.decimal)
    if id_column not in table.columns:
        raise DataError(f"{args.clinical}: no id column {id_column!r} (use --id)")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"--subgroups: column(s) {missing} are not in {args.clinical}; its columns are "
                        f"{[c for c in table.columns if c != id_column][:20]}")
    table.index = table[id_column].astype(str).str.strip()
    return table.reindex(list(ids))[columns].reset_index(drop=True)


def _subgroups(args, out: Path, risk, y, ids, *, id_column: str, what: str) -> tuple[str, list]:
    from facefeat.survival.subgroups import subgroup_audit, subgroup_markdown

    cols = [c.strip() for c in args.subgroups.split(",") if c.strip()]
    groups = _clinical_columns(args, ids, cols, id_column=id_column)
    table = subgroup_audit(risk, y, groups, bands=_bands(args.bands), min_events=args.min_events)
    table.to_csv(out / "subgroups.csv", index=False)
    print(f"subgroup audit ({len(table) - 1} subgroups of {', '.join(cols)}) -> {out / 'subgroups.csv'}")
    return (f"\n## Subgroup audit\n\nRisk score: {what}.\n\n" + subgroup_markdown(table),
            table.to_dict(orient="records"))


def _reference_arm(args: argparse.Namespace, ds: Any):
    """Estimator, data set and label of the --compare reference."""
    import copy

    from facefeat.errors import ConfigError

    spec = args.compare.strip()
    path = Path(spec)
    if path.is_dir():
        from sklearn.base import clone

        from facefeat.survival.persist import load_model

        est, meta = load_model(path)
        return clone(est), _saved_model_data(args, meta, require_target=True), f"saved model {path}"
    ref = copy.copy(args)
    allowed = {"covariates", "model", "fusion", "pca", "features", "categorical"}
    if "=" in spec:
        for part in (p for p in spec.split(";") if p.strip()):
            if "=" not in part:
                raise ConfigError(f"--compare {spec!r}: {part!r} must look like KEY=VALUE (keys {sorted(allowed)})")
            k, v = (x.strip() for x in part.split("=", 1))
            if k not in allowed:
                raise ConfigError(f"--compare: cannot override {k!r}; keys are {sorted(allowed)}")
            setattr(ref, k, [x for x in v.split(",") if x] if k == "features" else (v or None))
    else:
        ref.covariates = spec
    if ref.features is None and args.features and ref.covariates == "none":
        raise ConfigError("--compare none with no features leaves the reference model without any column")
    ref_ds = _load(ref)
    label = f"reference: {spec}"
    return build_estimator(ref, ref_ds), ref_ds, label


def _lrt_columns(est: Any) -> list[str] | None:
    """Input columns of an unpenalised early-fusion coxph SurvivalEstimator, else None."""
    if getattr(est, "model", None) != "coxph" or getattr(est, "fusion", "early") != "early":
        return None
    if float((est.model_params or {}).get("alpha", 0.0) or 0.0) > 0:
        return None
    blocks = est.blocks.values() if isinstance(est.blocks, dict) else [b for _, b in (est.blocks or [])]
    cols: list[str] = []
    for b in blocks:
        if b.columns is None or b.regex is not None or b.pca is not None:
            return None
        cols.extend([b.columns] if isinstance(b.columns, str) else list(b.columns))
    return cols


def _compare_cv(args, out: Path, ds, est, res, cv_kwargs: dict) -> tuple[str, dict]:
    """Cross-validate the --compare reference on the same folds; write comparison.csv."""
    import numpy as np
    from sklearn.base import clone

    from facefeat.errors import DataError
    from facefeat.survival.compare import comparison_markdown, likelihood_ratio_test, paired_comparison
    from facefeat.survival.validation import cross_validate

    ref_est, ref_ds, label = _reference_arm(args, ds)
    common = ds.X.index.intersection(ref_ds.X.index, sort=False)
    notes = []
    if not len(common):
        raise DataError("--compare: the reference model's data share no subject with this model's")
    ia, ir = ds.X.index.get_indexer(common), ref_ds.X.index.get_indexer(common)
    ya, yr = ds.y[ia], ref_ds.y[ir]
    if not (np.array_equal(ya["time"], yr["time"]) and np.array_equal(ya["event"], yr["event"])):
        raise DataError("--compare: the two data sets give the same subjects different outcomes; compare on one "
                        "clinical table")
    if len(common) < max(len(ds.X), len(ref_ds.X)):
        notes.append(f"compared on the {len(common)} subjects both models have (this model {len(ds.X)}, "
                     f"reference {len(ref_ds.X)}); both cross-validated again on them")
        arm = cross_validate(clone(est), ds.X.iloc[ia], ya, **cv_kwargs)
    else:
        arm = res
    ref = cross_validate(ref_est, ref_ds.X.iloc[ir], yr, **cv_kwargs)
    table = paired_comparison(arm, ref)
    lrt = None
    full, reduced = _lrt_columns(est), _lrt_columns(ref_est)
    if full is not None and reduced is not None and set(reduced) < set(full):
        X = ds.X.iloc[ia]
        lrt = likelihood_ratio_test(X, ya, full=full, reduced=reduced,
                                    categorical=[c for c in ds.categorical if c in full])
    else:
        notes.append("no likelihood-ratio test: it needs two unpenalised coxph models (early fusion, no PCA) whose "
                     "columns are nested")
    csv = table.copy()
    if lrt:
        csv = _with_lrt_row(csv, lrt)
    csv.to_csv(out / "comparison.csv", index=False)
    text = (f"\n## Comparison with {label}\n\nThis model (arm) minus the reference, on identical folds "
            f"(splits_sha256 {arm.settings['splits_sha256'][:12]}...).\n\n" + comparison_markdown(table, lrt)
            + "".join(f"\n{n}.\n" for n in notes))
    row = table.set_index("metric").loc["c_index"]
    print(f"compared with {label}: C-index difference {row['difference']:+.4f} "
          f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}], p = {row['p_value']:.3g}"
          + (f"; LRT chi2 {lrt['statistic']:.3f} on {lrt['df']} df, p = {lrt['p_value']:.3g}" if lrt else "")
          + f" -> {out / 'comparison.csv'}")
    return text, {"reference": label, "table": table.to_dict(orient="records"), "lrt": lrt, "notes": notes}


def _with_lrt_row(table, lrt: dict):
    """comparison.csv: the paired table plus one row for the likelihood-ratio test."""
    import pandas as pd

    row = {"metric": "likelihood_ratio_chi2", "arm": lrt["loglik_full"], "reference": lrt["loglik_reduced"],
           "difference": lrt["statistic"], "ci_low": float("nan"), "ci_high": float("nan"), "p_value": lrt["p_value"],
           "better": "arm if p small (arm and reference columns: log partial likelihoods)", "folds": 0,
           "method": f"{lrt['method']}; df {lrt['df']}"}
    return pd.concat([table, pd.DataFrame([row])], ignore_index=True)


def _compare_saved(args, out: Path, est, meta: dict, ds, res, *, times) -> tuple[str, dict]:
    """Held-out: the saved model against another saved model on the same subjects (paired bootstrap)."""
    from facefeat.errors import ConfigError, DataError
    from facefeat.survival.compare import comparison_markdown, paired_bootstrap_comparison
    from facefeat.survival.persist import load_model

    path = Path(args.compare)
    if not path.is_dir():
        raise ConfigError(f"--compare {args.compare!r}: with --model-dir the reference must be another saved model "
                          "directory (a covariate list or spec is compared by cross-validation, without --model-dir)")
    ref, ref_meta = load_model(path)
    ref_ds = _saved_model_data(args, ref_meta, require_target=True)
    common = ds.X.index.intersection(ref_ds.X.index, sort=False)
    if not len(common):
        raise DataError(f"--compare: the data of {path} share no subject with those of {args.model_dir}")
    ia, ir = ds.X.index.get_indexer(common), ref_ds.X.index.get_indexer(common)
    n_boot = args.bootstrap or 1000
    table = paired_bootstrap_comparison(est, ref, ds.X.iloc[ia], ref_ds.X.iloc[ir], ds.y[ia], n_bootstrap=n_boot,
                                        random_state=args.seed, times=times, tau=args.tau)
    table.to_csv(out / "comparison.csv", index=False)
    row = table.set_index("metric").loc["c_index"]
    print(f"compared with {path}: C-index difference {row['difference']:+.4f} [{row['ci_low']:+.4f}, "
          f"{row['ci_high']:+.4f}], p = {row['p_value']:.3g} -> {out / 'comparison.csv'}")
    text = (f"\n## Comparison with saved model {path}\n\n{len(common)} subjects scored by both models; this model "
            "(arm) minus the reference.\n\n" + comparison_markdown(table))
    return text, {"reference": str(path), "table": table.to_dict(orient="records"), "n": int(len(common))}
