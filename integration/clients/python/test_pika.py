"""pika (Debian's python3-pika) against Warren.

The RabbitMQ tutorial flows with BlockingConnection and SelectConnection,
basic.return for mandatory messages, and transactions. Run by
integration/clients_test.go, which starts a broker and sets AMQP_URL.
"""
import os
import ssl
import unittest
import uuid

import pika

URL = os.environ["AMQP_URL"]


def params():
    p = pika.URLParameters(URL)
    p.connection_attempts = 1
    p.blocked_connection_timeout = 10
    return p


class Blocking(unittest.TestCase):
    def setUp(self):
        self.conn = pika.BlockingConnection(params())
        self.ch = self.conn.channel()

    def tearDown(self):
        if self.conn.is_open:
            self.conn.close()

    def drain(self, queue, n, auto_ack=True):
        """Consume n messages from queue, failing after 5 s."""
        got = []
        for method, props, body in self.ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=5):
            self.assertIsNotNone(method, "only %d/%d messages from %s" % (len(got), n, queue))
            got.append((method, props, body))
            if len(got) == n:
                break
        self.ch.cancel()
        return got

    def test_server_properties(self):
        props = self.conn._impl.server_properties
        self.assertEqual(props["product"], b"RabbitMQ" if isinstance(props["product"], bytes) else "RabbitMQ")
        caps = props["capabilities"]
        for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify", "direct_reply_to"):
            self.assertTrue(caps[cap], cap)

    def test_work_queue_prefetch_and_ack(self):
        q = "py_task_queue"
        self.ch.queue_declare(q, durable=True)
        self.ch.queue_purge(q)
        for i in range(10):
            self.ch.basic_publish("", q, b"task %d" % i,
                                  pika.BasicProperties(delivery_mode=2))
        self.ch.basic_qos(prefetch_count=1)
        got = []

        def on_message(ch, method, props, body):
            got.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(got) == 10:
                ch.stop_consuming()

        self.ch.basic_consume(q, on_message)
        self.conn.call_later(5, self.ch.stop_consuming)
        self.ch.start_consuming()
        self.assertEqual(got, [b"task %d" % i for i in range(10)])
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.message_count, 0)
        self.ch.queue_delete(q)

    def test_unacked_messages_come_back_redelivered(self):
        q = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.basic_publish("", q, b"once")
        method, _, body = self.ch.basic_get(q)
        self.assertEqual(body, b"once")
        self.assertFalse(method.redelivered)
        self.ch.basic_nack(method.delivery_tag, requeue=True)
        method, _, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"once")
        self.assertTrue(method.redelivered)

    def test_fanout(self):
        self.ch.exchange_declare("py_logs", "fanout")
        qs = [self.ch.queue_declare("", exclusive=True).method.queue for _ in range(2)]
        for q in qs:
            self.assertTrue(q.startswith("amq.gen-"))
            self.ch.queue_bind(q, "py_logs")
        self.ch.basic_publish("py_logs", "", b"hello")
        for q in qs:
            self.assertEqual([b for _, _, b in self.drain(q, 1)], [b"hello"])
        self.ch.exchange_delete("py_logs")

    def test_direct_routing(self):
        self.ch.exchange_declare("py_direct_logs", "direct")
        q = self.ch.queue_declare("", exclusive=True).method.queue
        for sev in ("error", "warning"):
            self.ch.queue_bind(q, "py_direct_logs", sev)
        for sev in ("info", "error", "debug", "warning"):
            self.ch.basic_publish("py_direct_logs", sev, sev.encode())
        self.assertEqual([m.routing_key for m, _, _ in self.drain(q, 2)], ["error", "warning"])
        self.ch.exchange_delete("py_direct_logs")

    def test_topics(self):
        self.ch.exchange_declare("py_topic_logs", "topic")
        q = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.queue_bind(q, "py_topic_logs", "*.orange.*")
        self.ch.queue_bind(q, "py_topic_logs", "lazy.#")
        for key in ("quick.orange.rabbit", "lazy.brown.fox", "quick.brown.fox", "lazy", "orange", "a.orange.b.c"):
            self.ch.basic_publish("py_topic_logs", key, key.encode())
        self.assertEqual([m.routing_key for m, _, _ in self.drain(q, 3)],
                         ["quick.orange.rabbit", "lazy.brown.fox", "lazy"])
        self.ch.exchange_delete("py_topic_logs")

    def rpc(self, reply_to):
        """Serve fib on a second connection; call it once; return the answer."""
        server_conn = pika.BlockingConnection(params())
        server = server_conn.channel()
        server.queue_declare("py_rpc_queue")

        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def on_request(ch, method, props, body):
            ch.basic_publish("", props.reply_to, str(fib(int(body))).encode(),
                             pika.BasicProperties(correlation_id=props.correlation_id))
            ch.basic_ack(method.delivery_tag)

        server.basic_consume("py_rpc_queue", on_request)
        answer = []
        corr = str(uuid.uuid4())

        def on_response(ch, method, props, body):
            if props.correlation_id == corr:
                answer.append(body)

        queue = reply_to or self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.basic_consume(queue, on_response, auto_ack=True)
        self.ch.basic_publish("", "py_rpc_queue", b"20",
                              pika.BasicProperties(reply_to=queue, correlation_id=corr))
        for _ in range(500):
            server_conn.process_data_events(time_limit=0.01)
            self.conn.process_data_events(time_limit=0.01)
            if answer:
                break
        server.queue_delete("py_rpc_queue")
        server_conn.close()
        return answer

    def test_rpc_with_reply_queue(self):
        self.assertEqual(self.rpc(None), [b"6765"])

    def test_rpc_with_direct_reply_to(self):
        self.assertEqual(self.rpc("amq.rabbitmq.reply-to"), [b"6765"])

    def test_confirms_and_mandatory_return(self):
        self.ch.confirm_delivery()
        q = self.ch.queue_declare("", exclusive=True).method.queue
        for i in range(100):
            self.ch.basic_publish("", q, b"m%d" % i, mandatory=True)  # raises if nacked
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.message_count, 100)
        with self.assertRaises(pika.exceptions.UnroutableError) as cm:
            self.ch.basic_publish("amq.direct", "nowhere", b"lost", mandatory=True)
        returned = cm.exception.messages[0]
        self.assertEqual(returned.method.reply_code, 312)
        self.assertEqual(returned.method.reply_text, "NO_ROUTE")
        self.assertEqual(returned.body, b"lost")

    def test_mandatory_return_without_confirms(self):
        returns = []
        self.ch.add_on_return_callback(lambda ch, method, props, body: returns.append((method, body)))
        self.ch.basic_publish("amq.direct", "nowhere", b"back", mandatory=True)
        self.conn.process_data_events(time_limit=1)
        self.assertEqual(len(returns), 1)
        self.assertEqual(returns[0][0].reply_code, 312)
        self.assertEqual(returns[0][0].routing_key, "nowhere")
        self.assertEqual(returns[0][1], b"back")

    def test_tx_commit_and_rollback(self):
        q = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.tx_select()
        self.ch.basic_publish("", q, b"rolled back")
        self.ch.tx_rollback()
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.message_count, 0)
        self.ch.basic_publish("", q, b"committed")
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.message_count, 0)
        self.ch.tx_commit()
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.message_count, 1)
        method, _, body = self.ch.basic_get(q)
        self.assertEqual(body, b"committed")
        self.ch.basic_ack(method.delivery_tag)
        self.ch.tx_rollback()  # the ack is undone: the message is still unacked
        self.ch.close()
        ch = self.conn.channel()
        self.assertEqual(ch.queue_declare(q, passive=True).method.message_count, 1)

    def test_channel_error_reply(self):
        with self.assertRaises(pika.exceptions.ChannelClosedByBroker) as cm:
            self.ch.queue_declare("py_no_such_queue", passive=True)
        self.assertEqual(cm.exception.reply_code, 404)
        self.assertEqual(cm.exception.reply_text, "NOT_FOUND - no queue 'py_no_such_queue' in vhost '/'")
        self.assertTrue(self.conn.is_open)


class TLS(unittest.TestCase):
    def test_tls_password_and_external(self):
        ctx = ssl.create_default_context(cafile=os.environ["TLS_CA"])
        p = pika.URLParameters(os.environ["AMQPS_URL"])
        p.ssl_options = pika.SSLOptions(ctx, "localhost")
        conn = pika.BlockingConnection(p)
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"over tls")
        _, _, body = ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"over tls")
        conn.close()

        ctx.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
        p = pika.URLParameters(os.environ["AMQPS_URL"])
        p.ssl_options = pika.SSLOptions(ctx, "localhost")
        p.credentials = pika.credentials.ExternalCredentials()
        conn = pika.BlockingConnection(p)
        conn.channel().exchange_declare("amq.topic", passive=True)
        conn.close()


class Select(unittest.TestCase):
    """The asynchronous adapter: declare, bind, publish with confirms, consume."""

    def test_publish_confirm_consume(self):
        events = []
        state = {"confirmed": 0, "received": []}
        n = 50

        def on_open(conn):
            conn.channel(on_open_callback=on_channel)

        def on_channel(ch):
            state["ch"] = ch
            ch.exchange_declare("py_select_x", "topic", callback=lambda _: ch.queue_declare(
                "", exclusive=True, callback=on_queue))

        def on_queue(frame):
            ch = state["ch"]
            q = frame.method.queue
            state["q"] = q
            ch.queue_bind(q, "py_select_x", "a.#", callback=lambda _: ch.confirm_delivery(
                on_confirm, callback=lambda _: on_confirm_mode(q)))

        def on_confirm_mode(q):
            ch = state["ch"]
            ch.basic_consume(q, on_message, auto_ack=False)
            for i in range(n):
                ch.basic_publish("py_select_x", "a.b.%d" % i, b"%d" % i)
            events.append("published")

        def on_confirm(frame):
            if isinstance(frame.method, pika.spec.Basic.Ack):
                state["confirmed"] = frame.method.delivery_tag if frame.method.multiple else state["confirmed"] + 1
            else:
                events.append("nack")
            maybe_done()

        def on_message(ch, method, props, body):
            state["received"].append(body)
            ch.basic_ack(method.delivery_tag)
            maybe_done()

        def maybe_done():
            if state["confirmed"] == n and len(state["received"]) == n:
                state["ch"].exchange_delete("py_select_x", callback=lambda _: conn.close())

        conn = pika.SelectConnection(params(), on_open_callback=on_open,
                                     on_open_error_callback=lambda c, e: events.append("open error %r" % e),
                                     on_close_callback=lambda c, r: c.ioloop.stop())
        conn.ioloop.call_later(10, conn.ioloop.stop)
        conn.ioloop.start()
        self.assertEqual(events, ["published"])
        self.assertEqual(state["confirmed"], n)
        self.assertEqual(state["received"], [b"%d" % i for i in range(n)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
