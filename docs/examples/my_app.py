"""An integrator's app: one owned task, declared as its own code base would."""

from celery import Celery

from leasegate.workers import OwnedContext, OwnedResult, install, owned_task

app = Celery("my_app")
app.conf.task_default_queue = "my_app"
install(app)


@owned_task(app, name="my_app.caption")
def caption(ctx: OwnedContext, *, text: str) -> OwnedResult:
    """The tool ``caption``: a caption for an image (here, the text in capitals)."""
    ctx.checkpoint()  # the run is gone: stop here, no result is wanted
    return OwnedResult(payload={"caption": text.upper()})
