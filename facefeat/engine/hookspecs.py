"""Hook specifications of the ``facefeat`` plugin host.

A plugin is a module (or object) registered through the ``facefeat`` entry-point group::

    [project.entry-points.facefeat]
    my_plugin = "my_package.plugin"

and implements::

    from facefeat.engine import hookimpl

    @hookimpl
    def facefeat_register(registry):
        registry.add_extractor(MyExtractor)

As in tox 4, registration goes through a registry object so that id uniqueness, naming rules
and config-schema checks live in the core, not in each plugin.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "facefeat"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def facefeat_register(registry) -> None:
    """Register extractors: call ``registry.add_extractor(ExtractorClass)`` for each.

    Parameters
    ----------
    registry : facefeat.engine.registry.Registry
        The registry being filled.
    """
