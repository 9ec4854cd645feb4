"""The ``accord`` command: one module per command group, each thin."""
