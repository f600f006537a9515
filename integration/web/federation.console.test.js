// The console's Federation page in headless Chromium. integration
// federation_test.go (TestWebConsoleFederation) starts two brokers, one
// federating exchange "orders" from the other (upstream "origin"), and sets
// CONSOLE_URL to the downstream's console.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');

const URL = process.env.CONSOLE_URL;
if (!URL) throw new Error('CONSOLE_URL is not set');

let browser, page;
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.setDefaultTimeout(10000);
});

after(async () => { await browser.close(); });

test('the Federation page lists the links with their state', async () => {
  await page.goto(URL);
  await page.fill('#login-form input[name=username]', 'guest');
  await page.fill('#login-form input[name=password]', 'guest');
  await page.click('#login-form button[type=submit]');
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
