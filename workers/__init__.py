"""leasegate.workers: the Celery side (app, owned task base, image generation, celery CLI)."""
