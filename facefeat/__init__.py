"""facefeat: portrait photos to prognostic features and survival predictions.

Importing facefeat does no work: models, plugins and heavy libraries load on first use.
"""

from facefeat._version import __version__

__all__ = ["Study", "__version__", "read_features"]


def read_features(path, *, flatten: bool = False, extractors=None, status=None):
    """Read feature tables written by ``facefeat extract`` into a pandas DataFrame.

    See :func:`facefeat.io.tables.read_features` for the parameters.
    """
    from facefeat.io.tables import read_features as _read

    return _read(path, flatten=flatten, extractors=extractors, status=status)


def __getattr__(name: str):
    # facefeat.Study without importing the study layer (pandas, scikit-survival) at import time
    if name == "Study":
        from facefeat.study import Study

        return Study
    raise AttributeError(f"module 'facefeat' has no attribute {name!r}")
