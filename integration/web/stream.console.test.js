// A stream's console page in headless Chromium. integration
// stream_console_test.go (TestWebConsoleStream) declares stream "events"
// with offsets 0-99 in SEGMENTS segments of BYTES bytes in all, a consumer
// "reader" 5 in (lag 95) and a named consumer "audit" stored at 40, and sets
// CONSOLE_URL.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { URL, useBrowser, login } = require('./harness');

let page;
const pageErrors = useBrowser((p) => { page = p; });

// rows returns the text of each cell of each body row of table sel.
const rows = (sel) => page.$$eval(`${sel} tbody tr`, (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
const detail = (name) => page.$$eval('#sdetails tr', (trs, name) => {
  const tr = trs.find((r) => r.children[0].textContent === name);
  return tr ? tr.children[1].textContent.trim() : null;
}, name);
const offsetsShown = () => page.$$eval('#sbrowse tbody tr', (trs) => trs.map((tr) => +tr.children[0].textContent.trim()));

test('the stream page shows the log, its consumers and named offsets', async () => {
  await page.goto(URL);
  await login(page, 'guest', 'guest');
  await page.waitForSelector('#st-queues b');
  await page.click('nav a[href="#/queues"]');
  await page.click('#list tbody a:text("events")');
  await page.waitForSelector('#sdetails table');
  assert.match(await page.textContent('#view h1'), /^Stream events/);
  assert.equal(await detail('Messages'), '100');
  assert.equal(await detail('First offset'), '0');
  assert.equal(await detail('Last offset'), '99');
  assert.equal(await detail('Segments'), process.env.SEGMENTS);
  assert.match(await detail('Size'), new RegExp('^' + Number(process.env.BYTES).toLocaleString('en-US') + ' bytes'));
  assert.deepEqual(await rows('#sconsumers-table'), [['reader', '', '5', '95']]);
  // audit resumes at 40: 60 behind the end, and that is on disk.
  assert.deepEqual(await rows('#soffsets-table'), [['audit', '40', '40', '60']]);
  // No get or purge for a stream: reading takes nothing.
  assert.equal(await page.locator('#getmsgs').count(), 0);
  assert.equal(await page.locator('#purge').count(), 0);
});

test('browsing reads from any offset and pages by offset', async () => {
  await page.waitForFunction(() => document.querySelectorAll('#sbrowse tbody tr').length === 20);
  assert.deepEqual(await offsetsShown(), [...Array(20).keys()]);
  await page.fill('#sbrowse-offset', '57');
  await page.click('#sbrowse-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#sbrowse tbody tr td').textContent.trim() === '57');
  assert.equal(await page.textContent('#sbrowse tbody tr pre.payload'), 'event-57');
  assert.match(await page.textContent('#sbrowse-info'), /^Offsets 57–76 of 0–99/);
  await page.click('#sbrowse-next');
  await page.waitForFunction(() => document.querySelector('#sbrowse tbody tr td').textContent.trim() === '77');
  assert.deepEqual(await offsetsShown(), [77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96]);
  assert.equal(await page.isDisabled('#sbrowse-next'), false);
  await page.click('#sbrowse-last');
  await page.waitForFunction(() => document.querySelector('#sbrowse tbody tr td').textContent.trim() === '80');
  assert.equal(await page.isDisabled('#sbrowse-next'), true);
  await page.click('#sbrowse-first');
  await page.waitForFunction(() => document.querySelector('#sbrowse tbody tr td').textContent.trim() === '0');
  assert.equal(await page.isDisabled('#sbrowse-prev'), true);
  // Past the end: nothing there, said so.
  await page.fill('#sbrowse-offset', '500');
  await page.click('#sbrowse-form button[type=submit]');
  await page.waitForFunction(() => /Nothing at offset 500/.test(document.querySelector('#sbrowse-info').textContent));
});

test('publishing from the page appends at the next offset', async () => {
  await page.fill('#publish textarea[name=payload]', 'from the console');
  await page.click('#publish button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#banner').textContent === 'Message published.');
  await page.waitForFunction(() => [...document.querySelectorAll('#sdetails tr')].some((r) => r.children[0].textContent === 'Last offset' && r.children[1].textContent === '100'));
  await page.fill('#sbrowse-offset', '100');
  await page.click('#sbrowse-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#sbrowse tbody tr pre.payload')?.textContent === 'from the console');
  assert.deepEqual(await offsetsShown(), [100]);
});

test('no script errors happened', () => {
  assert.deepEqual(pageErrors, []);
});
