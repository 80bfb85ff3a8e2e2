"""facefeat's built-in extractors, registered through the ``facefeat`` entry-point group
exactly like third-party plugins. Each module is a thin plugin over the library in facefeat/."""
