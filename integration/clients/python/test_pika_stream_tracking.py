"""pika (Debian's python3-pika) and named stream consumers: Warren tracks
where a consumer named by x-stream-consumer-name, or by its own tag with
x-stream-automatic-offset-tracking, stopped, and resumes it there.

Run by the TestStreamTrackingPika* tests (integration/stream_tracking_test.go)
against Warren, with AMQP_URL and QUEUE set; Restart and Kill run in stages
around a broker restart or kill -9 (LOW and HIGH bound where Kill resumes).
"""
import os
import time
import unittest

import pika

URL = os.environ["AMQP_URL"]
QUEUE = os.environ["QUEUE"]
STREAM = {"x-queue-type": "stream"}


def connect():
    p = pika.URLParameters(URL)
    p.connection_attempts = 1
    return pika.BlockingConnection(p)


def publish(q, frm, n):
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    ch.confirm_delivery()
    for i in range(frm, frm + n):
        ch.basic_publish("", q, b"m%d" % i)
    conn.close()


class Consumer:
    """A stream consumer on a connection of its own (close ends it)."""

    def __init__(self, q, args, tag=None, prefetch=10):
        self.conn = connect()
        self.ch = self.conn.channel()
        self.ch.basic_qos(prefetch_count=prefetch)
        self.got = []  # (delivery tag, offset, body)
        self.pos = 0  # got[:pos] were taken
        self.tag = self.ch.basic_consume(q, self._on, consumer_tag=tag, arguments=args)

    def _on(self, ch, method, props, body):
        self.got.append((method.delivery_tag, props.headers["x-stream-offset"], body))

    def take(self, n, timeout=10):
        """Waits for n more deliveries and returns their (tag, offset, body)."""
        deadline = time.time() + timeout
        while len(self.got) < self.pos + n and time.time() < deadline:
            self.conn.process_data_events(time_limit=0.1)
        if len(self.got) < self.pos + n:
            raise AssertionError("%d of %d deliveries" % (len(self.got) - self.pos, n))
        self.pos += n
        return self.got[self.pos - n:self.pos]

    def nothing(self, wait=0.5):
        self.conn.process_data_events(time_limit=wait)
        return len(self.got) == self.pos

    def ack(self, tag, multiple=False):
        self.ch.basic_ack(tag, multiple=multiple)
        self.conn.process_data_events(time_limit=0)

    def take_ack(self, n):
        """Takes n deliveries, acking each as it comes."""
        out = []
        for _ in range(n):
            d = self.take(1)[0]
            self.ack(d[0])
            out.append(d)
        return out

    def close(self):
        if self.conn.is_open:
            # pika rejects what it holds undispatched when it cancels a
            # consumer, and a stream refuses reject (540, as RabbitMQ):
            # dispatch what the broker sent (unacked) before closing.
            self.conn.process_data_events(time_limit=0.2)
            self.conn.close()


def offsets(ds):
    return [d[1] for d in ds]


class Tracking(unittest.TestCase):
    def queue(self, suffix):
        q = QUEUE + "-" + suffix
        self.addCleanup(self.delete, q)
        return q

    def delete(self, q):
        conn = connect()
        conn.channel().queue_delete(q)
        conn.close()

    def consumer(self, *a, **kw):
        c = Consumer(*a, **kw)
        self.addCleanup(c.close)
        return c

    def test_reconnect_resumes_at_first_unacked(self):
        q = self.queue("reconnect")
        publish(q, 0, 20)
        c = self.consumer(q, {"x-stream-consumer-name": "p1", "x-stream-offset": "first"})
        ds = c.take(10)
        self.assertEqual(offsets(ds), list(range(10)))
        c.ack(ds[4][0], multiple=True)  # 0-4
        c.ack(ds[6][0])  # out of order: 5 holds the name back
        time.sleep(0.3)
        c.close()
        c = self.consumer(q, {"x-stream-consumer-name": "p1"}, prefetch=20)
        self.assertEqual(offsets(c.take(15)), list(range(5, 20)))

    def test_explicit_offset_overrides(self):
        q = self.queue("override")
        publish(q, 0, 20)
        c = self.consumer(q, {"x-stream-consumer-name": "p1", "x-stream-offset": "first"})
        c.ack(c.take(10)[-1][0], multiple=True)
        c.close()
        c = self.consumer(q, {"x-stream-consumer-name": "p1", "x-stream-offset": 2}, prefetch=3)
        ds = c.take(3)
        self.assertEqual(offsets(ds), [2, 3, 4])
        c.ack(ds[-1][0], multiple=True)
        c.close()
        # The explicit start reset the name: it resumes after 4 now.
        c = self.consumer(q, {"x-stream-consumer-name": "p1"}, prefetch=1)
        self.assertEqual(offsets(c.take(1)), [5])

    def test_two_names_are_independent(self):
        q = self.queue("two")
        publish(q, 0, 20)
        a = self.consumer(q, {"x-stream-consumer-name": "a", "x-stream-offset": "first"}, prefetch=3)
        b = self.consumer(q, {"x-stream-consumer-name": "b", "x-stream-offset": 15}, prefetch=3)
        a.ack(a.take(3)[-1][0], multiple=True)
        b.ack(b.take(2)[-1][0], multiple=True)
        time.sleep(0.3)
        a.close()
        b.close()
        a = self.consumer(q, {"x-stream-consumer-name": "a"}, prefetch=1)
        b = self.consumer(q, {"x-stream-consumer-name": "b"}, prefetch=1)
        self.assertEqual(offsets(a.take(1)), [3])
        self.assertEqual(offsets(b.take(1)), [17])

    def test_own_tag_with_flag_is_tracked(self):
        q = self.queue("tag")
        publish(q, 0, 10)
        auto = {"x-stream-automatic-offset-tracking": True}
        c = self.consumer(q, dict(auto, **{"x-stream-offset": "first"}), tag="py-audit", prefetch=5)
        c.ack(c.take(5)[2][0], multiple=True)
        time.sleep(0.3)
        c.close()
        c = self.consumer(q, auto, tag="py-audit", prefetch=5)
        self.assertEqual(offsets(c.take(5)), [3, 4, 5, 6, 7])

    def test_server_named_tag_with_flag_is_not_tracked(self):
        q = self.queue("ctag")
        publish(q, 0, 10)
        auto = {"x-stream-automatic-offset-tracking": True}
        c = self.consumer(q, dict(auto, **{"x-stream-offset": "first"}), tag="amq.ctag-py", prefetch=5)
        c.ack(c.take(5)[-1][0], multiple=True)
        time.sleep(0.3)
        c.close()
        # Not resumed: it starts at next, as any consumer without an offset.
        c = self.consumer(q, auto, tag="amq.ctag-py", prefetch=5)
        self.assertTrue(c.nothing())
        publish(q, 10, 1)
        self.assertEqual(offsets(c.take(1)), [10])


class Restart(unittest.TestCase):
    """test_before, a broker restart, then test_after."""

    def test_before(self):
        publish(QUEUE, 0, 50)
        c = Consumer(QUEUE, {"x-stream-consumer-name": "r", "x-stream-offset": "first"}, prefetch=50)
        ds = c.take(30)
        c.ack(ds[-1][0], multiple=True)
        c.close()

    def test_after(self):
        c = Consumer(QUEUE, {"x-stream-consumer-name": "r"}, prefetch=50)
        self.assertEqual(offsets(c.take(20)), list(range(30, 50)))
        c.close()


class Kill(unittest.TestCase):
    """test_before; the offset on disk awaited; test_more; kill -9; test_after."""

    def test_before(self):
        publish(QUEUE, 0, 1000)
        c = Consumer(QUEUE, {"x-stream-consumer-name": "k", "x-stream-offset": "first"}, prefetch=100)
        self.assertEqual(offsets(c.take_ack(300)), list(range(300)))
        c.close()

    def test_more(self):
        c = Consumer(QUEUE, {"x-stream-consumer-name": "k"}, prefetch=100)
        self.assertEqual(offsets(c.take_ack(200)), list(range(300, 500)))
        c.close()

    def test_after(self):
        low, high = int(os.environ["LOW"]), int(os.environ["HIGH"])
        c = Consumer(QUEUE, {"x-stream-consumer-name": "k"}, prefetch=100)
        first = c.take(1)[0]
        self.assertGreaterEqual(first[1], low, "progress on disk before the kill was lost")
        self.assertLessEqual(first[1], high, "acked offsets skipped")
        c.ack(first[0])
        rest = []
        while len(rest) < 999 - first[1]:
            ds = c.take(min(100, 999 - first[1] - len(rest)))
            c.ack(ds[-1][0], multiple=True)
            rest += ds
        self.assertEqual(offsets(rest), list(range(first[1] + 1, 1000)))
        self.assertEqual(rest[-1][2], b"m999")
        c.close()


if __name__ == "__main__":
    unittest.main()
