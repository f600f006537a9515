// The Warren console end to end in headless Chromium (Debian's chromium,
// driven by playwright-core; harness.js opens it). integration
// console_test.go (TestWebConsole) starts a broker with some queues and sets
// CONSOLE_URL (and CHROMIUM, the browser path).
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { URL, useBrowser, login: submitLogin } = require('./harness');

let page;
const pageErrors = useBrowser((p) => { page = p; }, { acceptDownloads: true });

const login = (user, pass) => submitLogin(page, user, pass);

// bannerSays waits until the banner shows a text matching re (an earlier
// banner may still be up) and returns it.
async function bannerSays(re) {
  await page.waitForFunction((src) => {
    const b = document.querySelector('#banner');
    return !b.hidden && new RegExp(src).test(b.textContent);
  }, re.source);
  return (await page.textContent('#banner')).trim();
}

test('a wrong password is refused in words', async () => {
  await page.goto(URL);
  await page.waitForSelector('#login-form');
  await login('guest', 'wrong');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  assert.match(await page.textContent('#login-error'), /Login failed/);
  assert.equal(await page.isVisible('#app'), false);
});

test('logging in shows the overview with live numbers and charts', async () => {
  await login('guest', 'guest');
  await page.waitForSelector('#st-queues b');
  assert.equal(await page.textContent('#whoami'), 'guest (administrator)');
  assert.equal(await page.textContent('#st-queues b'), '150');
  assert.equal(await page.textContent('#st-ready b'), '3');
  assert.ok(await page.isVisible('canvas#rates'));
  assert.ok(await page.isVisible('canvas#depth'));
  // The charts are drawn (not blank) after a refresh or two.
  await page.waitForTimeout(2200);
  const inked = await page.evaluate(() => {
    const c = document.querySelector('canvas#depth');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 100, `the depth chart has ${inked} painted pixels`);
});

test('the queue list pages, filters and sorts on the server', async () => {
  await page.click('nav a[href="#/queues"]');
  await page.waitForSelector('#list tbody tr');
  assert.match(await page.textContent('#pageinfo'), /Page 1 of 3 · 150 of 150/);
  await page.fill('#filter', 'load-01');
  await page.waitForFunction(() => /of 150/.test(document.querySelector('#pageinfo').textContent) && document.querySelectorAll('#list tbody tr').length === 10);
  assert.match(await page.textContent('#pageinfo'), /10 of 150/);
  await page.fill('#filter', 'nothing-like-this');
  await page.waitForSelector('#list tbody td.muted');
  await page.fill('#filter', '');
  // Sort by total messages, descending: the queue with messages first.
  await page.waitForFunction(() => /150 of 150/.test(document.querySelector('#pageinfo').textContent));
  await page.click('th[data-sort="messages"]');
  await page.click('th[data-sort="messages"]');
  await page.waitForFunction(() => document.querySelector('#list tbody tr td:nth-child(2)').textContent === 'orders');
});

test('a queue is created from the form, and bad arguments are explained', async () => {
  await page.fill('#create-queue input[name=name]', 'made-in-browser');
  await page.fill('#create-queue textarea[name=arguments]', '{"x-max-length": "lots"}');
  await page.click('#create-queue button[type=submit]');
  assert.match(await bannerSays(/x-max-length/), /x-max-length/);
  await page.fill('#create-queue textarea[name=arguments]', '{not json');
  await page.click('#create-queue button[type=submit]');
  await page.waitForFunction(() => /must be a JSON object/.test(document.querySelector('#banner').textContent));
  await page.fill('#create-queue textarea[name=arguments]', '{"x-max-length": 100}');
  await page.click('#create-queue button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Queue added');
  await page.fill('#filter', 'made-in-browser');
  await page.waitForSelector('#list tbody a:text("made-in-browser")');
});

test('the queue page publishes, browses without taking, gets, purges and deletes', async () => {
  await page.click('#list tbody a:text("made-in-browser")');
  await page.waitForSelector('#publish');
  for (const body of ['hello from chromium', 'second']) {
    await page.fill('#publish textarea[name=payload]', body);
    await page.click('#publish button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Message published.');
    await page.evaluate(() => { document.querySelector('#banner').hidden = true; document.querySelector('#banner').textContent = ''; });
  }
  await page.click('#browse-refresh');
  await page.waitForFunction(() => document.querySelectorAll('#browse pre.payload').length === 2);
  assert.equal(await page.textContent('#browse pre.payload'), 'hello from chromium');
  // Browsing twice more leaves both messages unredelivered.
  await page.click('#browse-refresh');
  await page.click('#browse-refresh');
  await page.waitForFunction(() => /of 2 ready/.test(document.querySelector('#browse-info').textContent));
  assert.equal(await page.locator('#browse .tag').count(), 0, 'no message marked redelivered');
  // Get with requeue marks it redelivered, as RabbitMQ's get does.
  await page.click('#getmsgs button[type=submit]');
  await page.waitForSelector('#got pre.payload');
  assert.equal(await page.textContent('#got pre.payload'), 'hello from chromium');
  // Bind it to amq.fanout from the page, then unbind.
  await page.fill('#bind input[name=source]', 'amq.fanout');
  await page.click('#bind button[type=submit]');
  await page.waitForSelector('#qbindings td:text("amq.fanout")');
  await page.click('#qbindings button[data-unbind*="amq.fanout"]');
  await page.waitForFunction(() => !/amq\.fanout/.test(document.querySelector('#qbindings').textContent));
  await page.click('#purge');
  await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Queue purged');
  await page.waitForFunction(() => /empty/.test(document.querySelector('#browse-info').textContent));
  await page.click('#delete');
  await page.waitForURL(/#\/queues$/);
});

test('connections list and exchange page', async () => {
  await page.click('nav a[href="#/connections"]');
  await page.waitForSelector('main h1:text("Connections")');
  // The client-given name shows in the list (it loads asynchronously).
  await page.waitForSelector('#list tbody td:text("console-fixture")');
  assert.match(await page.textContent('#list tbody'), /guest/);
  await page.click('nav a[href="#/exchanges"]');
  await page.waitForSelector('main h1:text("Exchanges")');
  await page.waitForSelector('#list tbody a');
  await page.fill('#filter', 'amq.topic');
  await page.click('#list tbody a:text("amq.topic")');
  await page.waitForSelector('#publish');
  assert.match(await page.textContent('main h1'), /Exchange amq\.topic/);
});

test('plugin exchange types from the form: consistent-hash and deduplication', async () => {
  await page.click('nav a[href="#/exchanges"]');
  await page.waitForSelector('#create-exchange');
  await page.fill('#create-exchange input[name=name]', 'hash-in-browser');
  await page.selectOption('#create-exchange select[name=type]', 'x-consistent-hash');
  await page.fill('#create-exchange textarea[name=arguments]', '{"hash-header": "user"}');
  await page.click('#create-exchange button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Exchange added');
  await page.evaluate(() => { document.querySelector('#banner').hidden = true; document.querySelector('#banner').textContent = ''; });
  // Deduplication without its cache size is refused with the plugin's text.
  await page.fill('#create-exchange input[name=name]', 'dedup-in-browser');
  await page.selectOption('#create-exchange select[name=type]', 'fanout');
  await page.fill('#create-exchange textarea[name=arguments]', '{"x-message-deduplication": true}');
  await page.click('#create-exchange button[type=submit]');
  assert.match(await bannerSays(/x-cache-size/), /'x-cache-size' must be an integer greater than 0/);
  await page.fill('#create-exchange textarea[name=arguments]', '{"x-message-deduplication": true, "x-cache-size": 1000}');
  await page.click('#create-exchange button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Exchange added');
  await page.fill('#filter', 'in-browser');
  await page.waitForSelector('#list tbody a:text("hash-in-browser")');
  await page.waitForSelector('#list tbody a:text("dedup-in-browser")');
  assert.match(await page.textContent('#list tbody'), /x-consistent-hash/);
});

test('nodes list', async () => {
  await page.click('nav a[href="#/nodes"]');
  await page.waitForSelector('main h1:text("Nodes")');
  await page.waitForSelector('#list tbody td:text("warren@localhost")');
});

test('admin: users, vhosts, permissions and policies', async () => {
  await page.click('nav a[href="#/admin"]');
  await page.waitForSelector('#users table');
  await page.fill('#add-user input[name=name]', 'browser-user');
  await page.fill('#add-user input[name=password]', 'pw');
  await page.fill('#add-user input[name=tags]', 'management');
  await page.click('#add-user button[type=submit]');
  await page.waitForSelector('#users td:text("browser-user")');
  await page.fill('#add-vhost input[name=name]', 'browser-vhost');
  await page.click('#add-vhost button[type=submit]');
  await page.waitForSelector('#vhosts td:text("browser-vhost")');
  await page.fill('#set-perm input[name=user]', 'browser-user');
  await page.fill('#set-perm input[name=vhost]', 'browser-vhost');
  await page.click('#set-perm button[type=submit]');
  await page.waitForSelector('#perms td:text("browser-user")');
  await page.fill('#set-policy input[name=name]', 'cap');
  await page.fill('#set-policy textarea[name=definition]', '{"max-length": -1}');
  await page.click('#set-policy button[type=submit]');
  assert.match(await bannerSays(/Validation failed/), /Validation failed/);
  await page.fill('#set-policy textarea[name=definition]', '{"max-length": 1000}');
  await page.click('#set-policy button[type=submit]');
  await page.waitForSelector('#policies td:text("cap")');
});

test('shovels: add one, see it run, delete it', async () => {
  await page.click('nav a[href="#/shovels"]');
  await page.waitForSelector('#shovels .body p:text("No shovels.")');
  await page.fill('#add-shovel input[name=name]', 'browser-shovel');
  await page.fill('#add-shovel input[name=src_queue]', 'orders');
  await page.fill('#add-shovel input[name=dest_queue]', 'orders-copy');
  await page.fill('#add-shovel input[name=src_uri]', 'ftp://nowhere');
  await page.click('#add-shovel button[type=submit]');
  assert.match(await bannerSays(/Validation failed/), /not a valid URI/);
  await page.fill('#add-shovel input[name=src_uri]', 'amqp://');
  await page.click('#add-shovel button[type=submit]');
  await page.waitForSelector('#shovels td:text("browser-shovel")');
  await page.waitForSelector('#shovels td.state-running');
  assert.match(await page.textContent('#shovels tbody'), /amqp:\/\/ queue orders-copy/);
  await page.click('#shovels button[data-del]');
  await page.waitForSelector('#shovels .body p:text("No shovels.")');
});

test('definitions export downloads the topology, import takes a file', async () => {
  await page.click('nav a[href="#/definitions"]');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  const file = path.join(os.tmpdir(), `warren-defs-${process.pid}.json`);
  await download.saveAs(file);
  const defs = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.ok(defs.queues.some((q) => q.name === 'orders'));
  assert.ok(defs.users.some((u) => u.name === 'browser-user'));
  // Import a small document and see its queue appear.
  fs.writeFileSync(file, JSON.stringify({ queues: [{ name: 'imported-in-browser', vhost: '/', durable: true, auto_delete: false, arguments: {} }] }));
  await page.setInputFiles('#import input[type=file]', file);
  await page.click('#import button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Definitions imported');
  // A broken file is refused in words.
  fs.writeFileSync(file, '{broken');
  await page.setInputFiles('#import input[type=file]', file);
  await page.click('#import button[type=submit]');
  await page.waitForFunction(() => /is not JSON/.test(document.querySelector('#banner').textContent));
  fs.unlinkSync(file);
});

test('an unknown page and a missing queue say so', async () => {
  await page.goto(URL + '#/nowhere');
  await page.waitForSelector('main h1:text("Not found")');
  await page.goto(URL + '#/queue/%2F/no-such-queue');
  await page.waitForSelector('main h1:text("Could not show this page")');
  assert.match(await page.textContent('main .error'), /Not Found/);
});

test('no script errors happened', () => {
  assert.deepEqual(pageErrors, []);
});
