// What every console test file (*.test.js here) shares: the console's URL
// from CONSOLE_URL, and one headless Chromium page (Debian's chromium at
// CHROMIUM, driven by playwright-core) for the file's tests. The Go test
// that runs a file (consoleTools.run in integration/console_test.go) sets
// both variables.
'use strict';
const { before, after } = require('node:test');
const { chromium } = require('playwright-core');

const URL = process.env.CONSOLE_URL;
if (!URL) throw new Error('CONSOLE_URL is not set');

// useBrowser launches Chromium before the file's tests, hands their page
// to onPage, and closes it after them. It returns the list of the page's
// script errors, for a test to require none. Dialogs (confirmations) are
// accepted. contextOptions go to browser.newContext.
function useBrowser(onPage, contextOptions = {}) {
  const pageErrors = [];
  let browser;
  before(async () => {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    const page = await (await browser.newContext(contextOptions)).newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('dialog', (d) => d.accept());
    page.setDefaultTimeout(10000);
    onPage(page);
  });
  after(async () => { await browser?.close(); });
  return pageErrors;
}

// login submits the console's login form.
async function login(page, user, pass) {
  await page.fill('#login-form input[name=username]', user);
  await page.fill('#login-form input[name=password]', pass);
  await page.click('#login-form button[type=submit]');
}

module.exports = { URL, useBrowser, login };
