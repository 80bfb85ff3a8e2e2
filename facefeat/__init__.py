"""facefeat: portrait photos to prognostic features and survival predictions.

Importing facefeat does no work: models, plugins and heavy libraries load on first use.
"""

from facefeat._version import __version__

__all__ = ["Study", "__version__", "read_features"]


def read_features(run_or_files, *, flatten: bool = True, include_failed: bool = False, drop_paths: bool = False,
                  extractors=None, status=None):
    """Read the feature tables written by ``facefeat extract`` into a pandas DataFrame.

    See :func:`facefeat.io.tables.read_features` for the parameters (by default: embeddings
    flattened to ``<column>_0000`` columns, only ``ok`` rows).
    """
    from facefeat.io.tables import read_features as _read

    return _read(run_or_files, flatten=flatten, include_failed=include_failed, drop_paths=drop_paths,
                 extractors=extractors, status=status)


def __getattr__(name: str):
    # facefeat.Study without importing the study layer (pandas, scikit-survival) at import time
    if name == "Study":
        from facefeat.study import Study

        return Study
    raise AttributeError(f"module 'facefeat' has no attribute {name!r}")
