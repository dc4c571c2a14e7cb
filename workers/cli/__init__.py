"""Command lines: the ``celery dlq``, ``celery runs`` and ``celery leasegate`` subcommands
(entry points in pyproject.toml) and the ``leasegate`` console script (the demo). Each module
keeps heavy imports inside its commands: every ``celery`` invocation imports it (exporter.py
and dlq_export.py are loaded by their commands only)."""
