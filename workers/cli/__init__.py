"""Command lines: the ``celery dlq``, ``celery runs`` and ``celery leasegate`` subcommands
(entry points in pyproject.toml) and ``leasegate keygen``. Each module
keeps heavy imports inside its commands: every ``celery`` invocation imports it (exporter.py
and dlq_export.py are loaded by their commands only)."""
