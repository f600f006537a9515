"""Celery (Debian's python3-celery) with Warren as its broker.

A real worker process runs tasks, retries a failing task and takes tasks
routed to a named queue; kombu and the worker's remote control see the
expected queues. Run by integration/clients_test.go with AMQP_URL set.
"""
import os
import ssl
import subprocess
import sys
import time
import unittest

from kombu import Connection, Queue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from celeryapp import add, app, flaky, routed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class CeleryOnWarren(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celeryapp", "worker",
             "-Q", "celery,warren_named", "--pool=solo", "--concurrency=1",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "-n", "warren@test"],
            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Wait until the worker answers a ping over the broker.
        deadline = time.time() + 30
        while time.time() < deadline:
            if cls.worker.poll() is not None:
                raise RuntimeError("worker exited:\n" + cls.worker.stdout.read())
            if app.control.ping(timeout=0.5):
                return
        cls.tearDownClass()
        raise RuntimeError("worker did not answer a ping in 30 s")

    @classmethod
    def tearDownClass(cls):
        cls.worker.terminate()
        try:
            out, _ = cls.worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            cls.worker.kill()
            out, _ = cls.worker.communicate()
        cls.worker_log = out
        if os.environ.get("CELERY_WORKER_LOG"):
            print(out)

    def test_tasks_run(self):
        results = [add.delay(i, i) for i in range(20)]
        self.assertEqual([r.get(timeout=10) for r in results], [2 * i for i in range(20)])

    def test_failing_task_is_retried(self):
        self.assertEqual(flaky.delay(2).get(timeout=10), {"attempts": 3})

    def test_task_routed_to_named_queue(self):
        self.assertEqual(routed.delay().get(timeout=10), "warren_named")

    def test_worker_and_kombu_see_the_queues(self):
        active = app.control.inspect(timeout=2).active_queues()
        self.assertIsNotNone(active, "no reply from the worker")
        names = sorted(q["name"] for q in active["warren@test"])
        self.assertEqual(names, ["celery", "warren_named"])
        with Connection(os.environ["AMQP_URL"]) as conn:
            ch = conn.default_channel
            for name in ("celery", "warren_named"):
                ok = Queue(name, channel=ch).queue_declare(passive=True)
                self.assertEqual(ok.queue, name)
                self.assertEqual(ok.consumer_count, 1, name)


class KombuOverTLS(unittest.TestCase):
    """Celery's transport (kombu on py-amqp) connects over TLS."""

    def test_simple_queue_over_tls(self):
        tls = {"ca_certs": os.environ["TLS_CA"], "cert_reqs": ssl.CERT_REQUIRED}
        with Connection(os.environ["AMQPS_URL"], ssl=tls) as conn:
            q = conn.SimpleQueue("kombu_tls")
            q.put({"over": "tls"})
            msg = q.get(timeout=5)
            self.assertEqual(msg.payload, {"over": "tls"})
            msg.ack()
            q.close()  # cancels the consumer first: deleting under it would cancel it
            self.assertEqual(conn.default_channel.queue_delete("kombu_tls"), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
