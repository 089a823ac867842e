"""The base class of vsda's own errors, the failures a CLI reports in one line.

Every project error class (``ConfigError``, ``CheckpointError``, ``DatasetError``, ``ModelError``,
``SourceError``, ``OptionError``, ``EngineError``, ``ExportError``, ``OutputError``) derives from
:class:`VsdaError` and keeps its built-in base (``ValueError`` or ``OSError``), so ``except ValueError``
in library code keeps working. The CLIs catch ``VsdaError`` and ``OSError`` only: any other exception
is a bug and shows its traceback.
"""

from __future__ import annotations


class VsdaError(Exception):
    """An expected failure the CLIs report in one line naming the file, option or frame at fault."""
