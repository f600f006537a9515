// amqplib (the npm package people use) against Warren: the RabbitMQ tutorial
// flows, publisher confirms, consumer cancel notification and a 5 MB message.
// Run by integration/clients_test.go, which starts a broker and sets AMQP_URL.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const amqp = require('amqplib');

const URL = process.env.AMQP_URL;
if (!URL) throw new Error('AMQP_URL is not set');

let conn;
before(async () => { conn = await amqp.connect(URL); });
after(async () => { await conn.close(); });

// take resolves with the next n messages a consumer sees.
function take(ch, queue, n, opts = { noAck: true }) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length}/${n} messages from ${queue}`)), 5000);
    ch.consume(queue, (m) => {
      if (m === null) { reject(new Error(`consumer of ${queue} cancelled`)); return; }
      got.push(m);
      if (got.length === n) { clearTimeout(timer); resolve(got); }
    }, opts).catch(reject);
  });
}

test('work queue: prefetch 1, manual ack, tasks shared between two workers', async () => {
  const ch = await conn.createChannel();
  const q = 'node_task_queue';
  await ch.assertQueue(q, { durable: true });
  await ch.purgeQueue(q);
  const seen = { a: [], b: [] };
  let acked = 0;
  const workers = [];
  for (const name of ['a', 'b']) {
    const wch = await conn.createChannel();
    await wch.prefetch(1);
    workers.push(wch);
    await wch.consume(q, (m) => {
      if (m === null) return;
      seen[name].push(m.content.toString());
      // An unacked message blocks this worker: the other one must get the next.
      setTimeout(() => { wch.ack(m); acked++; }, 5);
    }, { noAck: false });
  }
  for (let i = 0; i < 20; i++) ch.sendToQueue(q, Buffer.from(`task ${i}`), { persistent: true });
  const deadline = Date.now() + 5000;
  while (acked < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(acked, 20);
  assert.equal(seen.a.length + seen.b.length, 20, 'no task delivered twice');
  assert.ok(seen.a.length > 0 && seen.b.length > 0, `both workers work: ${seen.a.length}/${seen.b.length}`);
  for (const w of workers) await w.close();
  const { messageCount } = await ch.checkQueue(q);
  assert.equal(messageCount, 0, 'every task acked');
  await ch.deleteQueue(q);
  await ch.close();
});

test('publish/subscribe: fanout exchange reaches every bound queue', async () => {
  const ch = await conn.createChannel();
  await ch.assertExchange('node_logs', 'fanout', { durable: false });
  const q1 = (await ch.assertQueue('', { exclusive: true })).queue;
  const q2 = (await ch.assertQueue('', { exclusive: true })).queue;
  assert.match(q1, /^amq\.gen-/);
  await ch.bindQueue(q1, 'node_logs', '');
  await ch.bindQueue(q2, 'node_logs', '');
  const p1 = take(ch, q1, 3);
  const p2 = take(ch, q2, 3);
  for (let i = 0; i < 3; i++) ch.publish('node_logs', '', Buffer.from(`log ${i}`));
  for (const got of await Promise.all([p1, p2])) {
    assert.deepEqual(got.map((m) => m.content.toString()), ['log 0', 'log 1', 'log 2']);
  }
  await ch.deleteExchange('node_logs');
  await ch.close();
});

test('routing: direct exchange delivers by severity', async () => {
  const ch = await conn.createChannel();
  await ch.assertExchange('node_direct_logs', 'direct', { durable: false });
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  for (const sev of ['error', 'warning']) await ch.bindQueue(q, 'node_direct_logs', sev);
  const p = take(ch, q, 2);
  for (const sev of ['info', 'error', 'debug', 'warning']) ch.publish('node_direct_logs', sev, Buffer.from(sev));
  const got = await p;
  assert.deepEqual(got.map((m) => [m.fields.routingKey, m.content.toString()]), [['error', 'error'], ['warning', 'warning']]);
  await ch.deleteExchange('node_direct_logs');
  await ch.close();
});

test('topics: * and # patterns', async () => {
  const ch = await conn.createChannel();
  await ch.assertExchange('node_topic_logs', 'topic', { durable: false });
  const crit = (await ch.assertQueue('', { exclusive: true })).queue;
  const kern = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(crit, 'node_topic_logs', '*.critical');
  await ch.bindQueue(kern, 'node_topic_logs', 'kern.#');
  const pc = take(ch, crit, 2);
  const pk = take(ch, kern, 2);
  for (const key of ['kern.critical', 'cron.critical', 'kern.info.x', 'cron.info', 'a.b.critical']) {
    ch.publish('node_topic_logs', key, Buffer.from(key));
  }
  assert.deepEqual((await pc).map((m) => m.fields.routingKey), ['kern.critical', 'cron.critical']);
  assert.deepEqual((await pk).map((m) => m.fields.routingKey), ['kern.critical', 'kern.info.x']);
  await ch.deleteExchange('node_topic_logs');
  await ch.close();
});

// fibServer answers rpc requests on queue with fib(n), echoing correlationId.
async function fibServer(queue) {
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: false });
  await ch.prefetch(1);
  const fib = (n) => (n < 2 ? n : fib(n - 1) + fib(n - 2));
  await ch.consume(queue, (m) => {
    if (m === null) return; // cancelled: the test deletes the queue at the end
    const n = parseInt(m.content.toString(), 10);
    ch.sendToQueue(m.properties.replyTo, Buffer.from(String(fib(n))), { correlationId: m.properties.correlationId });
    ch.ack(m);
  });
  return ch;
}

// rpcCall sends n to queue and waits for the reply whose correlationId matches.
function rpcCall(ch, queue, replyTo, n) {
  return new Promise((resolve, reject) => {
    const id = crypto.randomUUID();
    const timer = setTimeout(() => reject(new Error('rpc timeout')), 5000);
    ch.consume(replyTo, (m) => {
      if (m !== null && m.properties.correlationId === id) { clearTimeout(timer); resolve(m.content.toString()); }
    }, { noAck: true }).then(() => {
      ch.sendToQueue(queue, Buffer.from(String(n)), { correlationId: id, replyTo });
    }, reject);
  });
}

test('RPC with a reply queue and correlation id', async () => {
  const server = await fibServer('node_rpc_queue');
  const ch = await conn.createChannel();
  const replyTo = (await ch.assertQueue('', { exclusive: true })).queue;
  assert.equal(await rpcCall(ch, 'node_rpc_queue', replyTo, 10), '55');
  await server.deleteQueue('node_rpc_queue');
  await server.close();
  await ch.close();
});

test('RPC with direct reply-to', async () => {
  const server = await fibServer('node_rpc_direct');
  const ch = await conn.createChannel();
  assert.equal(await rpcCall(ch, 'node_rpc_direct', 'amq.rabbitmq.reply-to', 15), '610');
  await server.deleteQueue('node_rpc_direct');
  await server.close();
  await ch.close();
});

test('publisher confirms: every publish acked, waitForConfirms resolves', async () => {
  const ch = await conn.createConfirmChannel();
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  const acked = [];
  for (let i = 0; i < 500; i++) {
    ch.sendToQueue(q, Buffer.from(`m${i}`), { persistent: true }, (err) => { if (!err) acked.push(i); });
  }
  await ch.waitForConfirms();
  assert.equal(acked.length, 500);
  assert.equal((await ch.checkQueue(q)).messageCount, 500);
  // An unroutable mandatory message is returned, then confirmed.
  const returned = new Promise((resolve) => ch.once('return', resolve));
  await new Promise((resolve, reject) => ch.publish('amq.direct', 'nowhere', Buffer.from('x'), { mandatory: true }, (err) => (err ? reject(err) : resolve())));
  const r = await returned;
  assert.equal(r.fields.replyCode, 312);
  assert.equal(r.fields.replyText, 'NO_ROUTE');
  await ch.close();
});

test('consumer cancel notification when the queue is deleted', async () => {
  const ch = await conn.createChannel();
  const q = 'node_cancel_me';
  await ch.assertQueue(q, { durable: false });
  const cancelled = new Promise((resolve) => {
    ch.consume(q, (m) => { if (m === null) resolve('cancelled'); });
  });
  const other = await conn.createChannel();
  await other.deleteQueue(q);
  assert.equal(await cancelled, 'cancelled');
  // The channel is still usable afterwards.
  await ch.checkExchange('amq.direct');
  await other.close();
  await ch.close();
});

test('a 5 MB message round-trips intact', async () => {
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  const body = crypto.randomBytes(5 * 1024 * 1024);
  ch.sendToQueue(q, body, { contentType: 'application/octet-stream', headers: { sha: crypto.createHash('sha256').update(body).digest('hex') } });
  const [m] = await take(ch, q, 1);
  assert.equal(m.content.length, body.length);
  assert.ok(m.content.equals(body));
  assert.equal(m.properties.headers.sha, crypto.createHash('sha256').update(body).digest('hex'));
  await ch.close();
});

test('TLS: password login, then EXTERNAL with a client certificate', async () => {
  const fs = require('node:fs');
  const ca = [fs.readFileSync(process.env.TLS_CA)];
  const tlsConn = await amqp.connect(process.env.AMQPS_URL, { ca, servername: 'localhost' });
  const ch = await tlsConn.createChannel();
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  ch.sendToQueue(q, Buffer.from('over tls'));
  const [m] = await take(ch, q, 1);
  assert.equal(m.content.toString(), 'over tls');
  await tlsConn.close();

  const url = new globalThis.URL(process.env.AMQPS_URL);
  url.username = ''; url.password = '';
  const ext = await amqp.connect(url.toString(), {
    ca, servername: 'localhost', cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY),
    credentials: amqp.credentials.external(),
  });
  const ech = await ext.createChannel();
  await ech.checkExchange('amq.topic');
  await ext.close();
});
