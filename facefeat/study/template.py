"""The annotated ``study.yaml`` that ``facefeat study init`` writes: every key, its default and
its meaning. ``tests/study/test_config.py`` checks that it names every key of the schema and
validates as it is."""

from __future__ import annotations

TEMPLATE = """\
# facefeat study: one config for the whole analysis (docs/study.md).
#   facefeat study validate study.yaml    check this file and the inputs (computes nothing)
#   facefeat study run study.yaml         run every stage that is not up to date
#   facefeat study status study.yaml      which stages are done, stale or missing
# Paths are relative to this file. Keys shown with their default may be left out.

name: {name}                      # report title (default: study)
description: ""                   # free text shown at the top of the report

inputs:
  photos: photos/                 # folder of photos, or a CSV/Parquet manifest (subject_id, path)
  subject_from: stem              # folder input: subject id from the file stem | parent folder name
  clinical: clinical.csv          # one row per subject: id, time, event, covariates
  id: subject_id                  # subject id column
  time: time                      # follow-up time column
  event: event                    # 1/True = event, 0/False = censored
  time_unit: days                 # unit of 'time' (days | months | years): named in tables and plots
  covariates: [age, sex]          # clinical covariates the arms may use ('clinical' = all of them)
  categorical: [sex]              # covariates to one-hot encode (text columns always are)
  aggregate: mean                 # several photos of a subject: mean | first | most_recent
  image_order: null               # feature column ordering photos for first / most_recent

# Optional stages before extraction; an extractor refers to their output as
# '@training.generator' or '@training.encoder' (e.g. stylegan2: {{checkpoint: '@training.generator'}}).
training:
  generator: null                 # fine-tune a StyleGAN2 generator first, e.g.:
  #   init: nvidia-ffhq-256       #   starting weights: file, registry name, or scratch
  #   images: null                #   aligned crops to train on (default: the study photos)
  #   align: false                #   detect and FFHQ-align the training photos on the fly
  #   config: {{kimg: 200}}         #   TrainingConfig fields (published defaults otherwise)
  #   resolution: null            #   image size for init scratch
  #   channel_base: null          #   network width for init scratch (small: smoke tests)
  encoder: null                   # train an e4e encoder, e.g.:
  #   generator: '@training.generator'   # or a file / registry name
  #   images: null, align: false, config: {{}}   (EncoderTrainingConfig fields)

extraction:                       # the engine's resumable run into <study>/extract/
  extractors:                     # extractor name -> its config ('facefeat plugins'; docs/features/)
    landmarks: {{}}
    # stylegan2: {{checkpoint: nvidia-ffhq-256, space: w, steps: 500}}
  face: {{}}                        # detection: {{detector: hog | cnn | none (already aligned crops)}}
  align: {{}}                       # alignment settings of the run config
  batch_size: 8                   # images per batch (the unit of progress kept when interrupted)
  device: cpu                     # cpu | cuda | cuda:N | mps
  out: null                       # extraction run folder (default <study>/extract; studies may share one)

arms:                             # the models compared, all on the same subject splits
  - name: clinical                # arms/<name>/; letters, digits, _ . + -
    features: [clinical]          # extractor names, 'clinical' (all covariates), single covariates
    model: coxph                  # coxph | coxnet | rsf | gbsa | deepsurv
    params: {{}}                    # model parameters, e.g. {{alpha: 0.1}} (coxph ridge)
    fusion: early                 # early (one model) | late (one model per block, stacked)
    pca: null                     # PCA of each image block: components (int) or variance fraction
    impute: median                # missing numeric values: median | mean | none
    block_per_extractor: false    # one image block per extractor instead of one 'image' block
    robustness: null              # {{table: robustness/icc.parquet, min_icc: 0.75}}: keep robust features
  - name: faces+clinical
    features: [clinical, landmarks]
    model: coxph
    pca: 5

reference: null                   # arm every other arm is compared with (default: the arm 'clinical',
                                  # else a coxph arm of all covariates named 'clinical')

cv:                               # one repeated stratified k-fold CV, identical for every arm
  folds: 5
  repeats: 5
  seed: 0
  risk_groups: 2                  # out-of-fold risk groups (Kaplan-Meier plots)
  level: 0.95                     # confidence level of every interval

subgroups:                        # audit of each arm's out-of-fold risk per subgroup
  columns: []                     # e.g. [sex, age]
  bands: {{}}                       # numeric columns -> cut points, e.g. {{age: [50, 65]}}
  min_events: 5                   # smaller subgroups are listed with the reason, not assessed

outputs:
  report: true                    # report.html
  exports: true                   # exports/: CSV + Parquet + README.md data dictionary
  pseudonymise: null              # key file (facefeat export --make-key KEY): keyed pseudonyms in exports/

execution:
  executor: null                  # null/local: processes | local:N (Dask) | tcp://HOST:PORT | slurm | pbs
  jobs: 1                         # local worker processes (extraction) and parallel CV folds
  cluster: {{}}                     # dask-jobqueue settings for slurm / pbs / sge / lsf
"""


def render_template(name: str = "study") -> str:
    """The annotated ``study.yaml`` text."""
    return TEMPLATE.format(name=name)
