"""pika (Debian's python3-pika) and a stream queue (x-queue-type stream).

Run by TestStreamPika (integration/stream_test.go) against Warren, or the
broker WARREN_TEST_AMQP_URL names, with AMQP_URL and QUEUE set.
"""
import os
import unittest

import pika

URL = os.environ["AMQP_URL"]
QUEUE = os.environ["QUEUE"]


class Stream(unittest.TestCase):
    def setUp(self):
        p = pika.URLParameters(URL)
        p.connection_attempts = 1
        self.conn = pika.BlockingConnection(p)
        self.ch = self.conn.channel()

    def tearDown(self):
        if self.conn.is_open:
            self.conn.close()

    def test_publish_with_confirms_and_replay(self):
        self.ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "1D"})
        self.ch.confirm_delivery()
        for i in range(20):
            self.ch.basic_publish("", QUEUE, b"m%d" % i, pika.BasicProperties(headers={"n": i}))
        # Consumers must set a prefetch; an ack gives back credit.
        self.ch.basic_qos(prefetch_count=5)
        for start, first in (("first", 0), (15, 15), ("last", 19)):
            got = []
            for method, props, body in self.ch.consume(QUEUE, arguments={"x-stream-offset": start}, inactivity_timeout=5):
                self.assertIsNotNone(method, "only %d messages from %s" % (len(got), start))
                self.assertEqual(props.headers["x-stream-offset"], first + len(got))
                self.assertEqual(props.headers["n"], first + len(got))
                self.assertEqual(body, b"m%d" % (first + len(got)))
                got.append(body)
                self.ch.basic_ack(method.delivery_tag)
                if len(got) == 20 - first:
                    break
            self.ch.cancel()

    def test_refusals(self):
        self.ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "1D"})
        # 540 is a connection error, as in RabbitMQ.
        with self.assertRaises(pika.exceptions.ConnectionClosedByBroker) as cm:
            self.ch.basic_get(QUEUE)
        self.assertEqual(cm.exception.reply_code, 540)
        self.assertIn("basic.get not supported by stream queues", cm.exception.reply_text)
        self.setUp()
        ch = self.conn.channel()
        with self.assertRaises(pika.exceptions.ChannelClosedByBroker) as cm:
            ch.basic_consume(QUEUE, lambda *a: None)
        self.assertEqual(cm.exception.reply_code, 406)
        self.assertIn("consumer prefetch count is not set", cm.exception.reply_text)
        ch = self.conn.channel()
        with self.assertRaises(pika.exceptions.ChannelClosedByBroker) as cm:
            ch.queue_declare(QUEUE + "-x", durable=False, arguments={"x-queue-type": "stream"})
        self.assertEqual(cm.exception.reply_code, 406)
        self.assertIn("invalid property 'non-durable'", cm.exception.reply_text)


if __name__ == "__main__":
    unittest.main()
