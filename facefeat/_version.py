__version__ = "0.2.0"


def library_versions(dists: tuple[str, ...] = ("facefeat", "numpy", "pandas", "pyarrow", "scikit-learn",
                                               "scikit-survival", "skops", "torch", "scipy")) -> dict[str, str]:
    """Python's and the installed distributions' versions (read from package metadata, nothing
    imported), for provenance records; distributions that are not installed are left out."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    out["facefeat"] = __version__  # an editable install's metadata can lag behind the source
    return out
