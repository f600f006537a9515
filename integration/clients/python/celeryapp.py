"""A Celery app whose broker is Warren (AMQP_URL), used by test_celery.py."""
import os

from celery import Celery

app = Celery("celeryapp", broker=os.environ["AMQP_URL"], backend="rpc://")
app.conf.update(
    task_routes={"celeryapp.routed": {"queue": "warren_named"}},
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=False,
    worker_hijack_root_logger=False,
)


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=5)
def flaky(self, fail_times):
    """Fails fail_times times, retrying each time, then reports its attempts."""
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError("not yet"), countdown=0.05)
    return {"attempts": self.request.retries + 1}


@app.task(bind=True)
def routed(self):
    """Reports the queue it was delivered from."""
    return self.request.delivery_info.get("routing_key")
