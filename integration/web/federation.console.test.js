// The console's Federation page in headless Chromium. integration
// federation_test.go (TestWebConsoleFederation) starts two brokers, one
// federating exchange "orders" from the other (upstream "origin"), and sets
// CONSOLE_URL to the downstream's console.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { URL, useBrowser, login } = require('./harness');

let page;
const pageErrors = useBrowser((p) => { page = p; });

test('the Federation page lists the links with their state', async () => {
  await page.goto(URL);
  await login(page, 'guest', 'guest');
  await page.click('#nav a[href="#/federation"]');
  await page.waitForSelector('#fed-links td[data-state="running"]');
  const cells = await page.$$eval('#fed-links tbody tr td', (tds) => tds.map((td) => td.textContent.trim()));
  assert.equal(cells[1], 'exchange');
  assert.equal(cells[2], 'orders');
  assert.equal(cells[3], 'origin');
  assert.match(cells[4], /^amqp:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(cells[5], 'running');
  assert.equal(await page.getAttribute('#nav a[href="#/federation"]', 'class'), 'active');
  assert.deepEqual(pageErrors, []);
});
