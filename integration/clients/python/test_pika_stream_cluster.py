"""pika (Debian's python3-pika) and a stream replicated on a cluster.

Run by TestClusterStreamPika (integration/cluster_stream_pika_test.go)
with PUB_URL and CON_URLS (comma separated: other nodes) and QUEUE set:
the stream is declared and published to with confirms through one node and
read from `first` and from an offset through each of the others.
"""
import os
import unittest

import pika

PUB_URL = os.environ["PUB_URL"]
CON_URLS = os.environ["CON_URLS"].split(",")
QUEUE = os.environ["QUEUE"]
N = 200


def connect(url):
    p = pika.URLParameters(url)
    p.connection_attempts = 3
    return pika.BlockingConnection(p)


class ClusterStream(unittest.TestCase):
    def test_publish_on_one_node_read_on_the_others(self):
        conn = connect(PUB_URL)
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "stream"})
        ch.confirm_delivery()
        for i in range(N):
            # With confirms, basic_publish returns once the broker confirmed.
            ch.basic_publish("", QUEUE, b"m%d" % i, pika.BasicProperties(headers={"n": i}))
        conn.close()
        for url in CON_URLS:
            conn = connect(url)
            ch = conn.channel()
            ch.basic_qos(prefetch_count=50)
            for start, first in (("first", 0), (150, 150)):
                got = 0
                for method, props, body in ch.consume(QUEUE, arguments={"x-stream-offset": start}, inactivity_timeout=10):
                    self.assertIsNotNone(method, "%s: only %d messages from %s" % (url, got, start))
                    self.assertEqual(props.headers["x-stream-offset"], first + got)
                    self.assertEqual(body, b"m%d" % (first + got))
                    got += 1
                    ch.basic_ack(method.delivery_tag)
                    if first + got == N:
                        break
                ch.cancel()
            conn.close()


if __name__ == "__main__":
    unittest.main()
