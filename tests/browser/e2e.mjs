// End-to-end browser test of the zhengwu web front end against a running server.
//
//   ZW_BASE=http://127.0.0.1:34567 ZW_OUT=/tmp/zw-e2e \
//   ZW_CITIZEN_KEY=... ZW_AGENT_KEY=... ZW_SUPERVISOR_KEY=... \
//   CHROMIUM=/usr/bin/chromium node tests/browser/e2e.mjs
//
// Supervisor reads the KPIs; a citizen (phone-sized) asks a question, opens a citation and files a
// ticket; an agent accepts, dispatches (adopting the suggestion) and starts handling it, then
// gets co-pilot suggestions for a call; the supervisor sees the counts go up. Any console error
// or uncaught page error fails the run. Screenshots go to ZW_OUT.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const BASE = (process.env.ZW_BASE || '').replace(/\/+$/, '');
const OUT = process.env.ZW_OUT || path.join(path.dirname(new URL(import.meta.url).pathname), 'out');
const KEYS = {
  citizen: process.env.ZW_CITIZEN_KEY || '',
  agent: process.env.ZW_AGENT_KEY || '',
  supervisor: process.env.ZW_SUPERVISOR_KEY || '',
};
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ANSWER_TIMEOUT = 240_000;
const QUESTION = '办理居住证需要准备什么材料？';
const CALL = '你好，我住在东城区，小区电梯坏了一个星期没人修，电话13912345678';

if (!BASE) {
  console.error('e2e: set ZW_BASE to the server address, e.g. http://127.0.0.1:34567');
  process.exit(2);
}
mkdirSync(OUT, { recursive: true });

const problems = [];
const t0 = Date.now();
let current = null; // the page a failure screenshot is taken of

function log(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

class Failure extends Error {}
function fail(msg) {
  throw new Failure(msg);
}

function watch(page, who) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const loc = m.location();
    const where = loc && loc.url ? ` (${loc.url}${loc.lineNumber ? ':' + loc.lineNumber : ''})` : '';
    problems.push(`[${who}] console error: ${m.text()}${where}`);
  });
  page.on('pageerror', (e) => problems.push(`[${who}] page error: ${e.message}`));
  page.setDefaultTimeout(30_000);
  return page;
}

async function shot(page, name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

// Open a page and log in when it asks for a key; fails on "无权访问此页面" or a rejected key.
async function open(page, route, role) {
  current = page;
  log(`${role}: open ${route}`);
  await page.goto(BASE + route, { waitUntil: 'domcontentloaded' });
  const ready = '#app:not([hidden]), #login:not([hidden]), #denied:not([hidden]), #page-error:not([hidden])';
  await page.waitForSelector(ready, { state: 'visible' });
  if (await page.locator('#login').isVisible()) {
    const envName = `ZW_${role.toUpperCase()}_KEY`;
    if (!KEYS[role]) fail(`${route} asks for a key but ${envName} is not set`);
    await page.getByLabel('访问密钥').fill(KEYS[role]);
    await page.getByRole('button', { name: '登录', exact: true }).click();
    await page.waitForSelector('#app:not([hidden]), #denied:not([hidden]), #login-error:not([hidden]), #page-error:not([hidden])', { state: 'visible' });
  }
  for (const sel of ['#login-error', '#page-error', '#denied']) {
    const box = page.locator(sel);
    if (await box.isVisible()) fail(`${role} on ${route}: ${(await box.textContent()).trim()}`);
  }
  await page.locator('#app').waitFor({ state: 'visible' });
}

// Wait for a KPI tile to hold a plain number.
async function kpi(page, id) {
  const err = page.locator('#filter-error');
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = ((await page.locator(`#${id}`).textContent()) || '').trim();
    if (/^\d+$/.test(text)) return Number(text);
    if (await err.isVisible()) fail(`dashboard metrics failed: ${(await err.textContent()).trim()}`);
    if (Date.now() > deadline) fail(`#${id} never showed a number (last: "${text}")`);
    await page.waitForTimeout(250);
  }
}

// Click an agent action and wait for #ticket-status to read `want` (fails on an action error).
async function agentAction(page, name, want) {
  log(`agent: ${name}`);
  const btn = page.locator('#detail').getByRole('button', { name, exact: true });
  await btn.waitFor({ state: 'visible' });
  if (await btn.isDisabled()) fail(`agent: button "${name}" is disabled (status ${(await page.locator('#ticket-status').textContent()).trim()})`);
  await btn.click();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = ((await page.locator('#ticket-status').textContent()) || '').trim();
    if (status === want) return;
    const err = page.locator('#action-error');
    if (await err.isVisible()) fail(`agent: "${name}" failed: ${(await err.textContent()).trim()}`);
    if (Date.now() > deadline) fail(`agent: after "${name}" #ticket-status is "${status}", expected "${want}"`);
    await page.waitForTimeout(200);
  }
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    // 1. Supervisor: KPIs before.
    const ctxA = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
    const sup = watch(await ctxA.newPage(), 'supervisor');
    await open(sup, '/dashboard', 'supervisor');
    const before = { tickets: await kpi(sup, 'kpi-tickets'), dispatched: await kpi(sup, 'kpi-dispatched') };
    log(`supervisor: before tickets=${before.tickets} dispatched=${before.dispatched}`);

    // 2. Citizen on a phone.
    const ctxB = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: 'zh-CN' });
    const cit = watch(await ctxB.newPage(), 'citizen');
    await open(cit, '/', 'citizen');

    const toggle = cit.getByRole('button', { name: '大字模式' });
    await toggle.click();
    if (!(await cit.evaluate(() => document.documentElement.classList.contains('large-font')))) fail('大字模式 did not set the large-font class');
    await toggle.click();

    log(`citizen: ask ${QUESTION}`);
    await cit.getByLabel('请输入您的问题').fill(QUESTION);
    await cit.getByRole('button', { name: '发送', exact: true }).click();
    await cit.waitForSelector('.msg.bot .ai-label, .msg.bot .handoff, .msg.system-msg[role="alert"]', { state: 'visible', timeout: ANSWER_TIMEOUT });
    const sysErr = cit.locator('.msg.system-msg[role="alert"]');
    if (await sysErr.count()) fail(`citizen: the answer failed: ${(await sysErr.last().textContent()).trim()}`);
    const bot = cit.locator('.msg.bot').last();
    if (await bot.locator('.handoff').count()) {
      fail(`citizen: expected a cited answer about 居住证 but got the hand-off: ${(await bot.textContent()).trim().slice(0, 300)}`);
    }
    await bot.locator('.ai-label').waitFor({ state: 'visible', timeout: ANSWER_TIMEOUT });
    const labelText = (await bot.locator('.ai-label').textContent()).trim();
    if (!labelText.includes('人工智能')) fail(`citizen: AI label reads "${labelText}"`);
    const cites = bot.locator('.citation');
    const n = await cites.count();
    if (n < 1) fail(`citizen: the answer has no citation buttons: ${(await bot.textContent()).trim().slice(0, 300)}`);
    log(`citizen: answer with ${n} citation button(s)`);
    const overflow = await cit.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) fail(`citizen: the page is ${overflow}px wider than the 390px phone screen`);

    await cites.first().click();
    const passage = cit.locator('#cite-text');
    await passage.waitFor({ state: 'visible' });
    if (!((await passage.textContent()) || '').trim()) fail('citizen: the cited passage is empty');
    await shot(cit, 'citizen-chat.png');
    await cit.getByRole('button', { name: '关闭', exact: true }).click();
    await passage.waitFor({ state: 'hidden' });

    log('citizen: 提交诉求');
    await cit.getByRole('button', { name: '提交诉求', exact: true }).click();
    await cit.locator('#submit-form').waitFor({ state: 'visible', timeout: 60_000 });
    const summary = cit.getByLabel('诉求摘要');
    if (!((await summary.inputValue()) || '').trim()) await summary.fill('咨询居住证办理材料');
    await cit.getByLabel('联系电话').fill('13800138000');
    const created = cit.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/tickets', { timeout: 60_000 });
    await cit.getByRole('button', { name: '确认提交', exact: true }).click();
    const resp = await created;
    if (!resp.ok()) {
      const err = cit.locator('#submit-error');
      await err.waitFor({ state: 'visible' }).catch(() => {});
      fail(`citizen: POST /api/tickets answered ${resp.status()}: ${((await err.textContent()) || '').trim()}`);
    }
    const ticket = await resp.json();
    const banner = cit.locator('#ticket-created');
    await banner.waitFor({ state: 'visible' });
    const bannerText = (await banner.textContent()) || '';
    if (!ticket.number || !bannerText.includes(String(ticket.number))) fail(`citizen: #ticket-created reads "${bannerText}", expected number ${ticket.number}`);
    log(`citizen: ticket id=${ticket.id} number=${ticket.number}`);
    await shot(cit, 'citizen-ticket.png');

    // 3. Agent.
    const ctxC = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
    const ag = watch(await ctxC.newPage(), 'agent');
    await open(ag, '/agent', 'agent');
    await ag.getByRole('button', { name: '刷新队列', exact: true }).click();
    const item = ag.locator('#queue .queue-item', { hasText: String(ticket.number) });
    try {
      await item.first().waitFor({ state: 'visible', timeout: 15_000 });
      await item.first().click();
    } catch (_) {
      const qerr = ag.locator('#queue-error');
      if (await qerr.isVisible()) fail(`agent: queue failed: ${(await qerr.textContent()).trim()}`);
      log(`agent: ${ticket.number} not among the first 50 in the queue; opening it by id`);
      await ag.getByLabel('按ID或编号打开工单').fill(String(ticket.id));
      await ag.getByRole('button', { name: '打开', exact: true }).click();
    }
    await ag.waitForFunction((num) => (document.querySelector('#ticket-number') || {}).textContent === num, String(ticket.number));

    await agentAction(ag, '受理', '已受理');
    await agentAction(ag, '采纳建议派发', '已派发');
    const dept = ((await ag.locator('#ticket-dept').textContent()) || '').trim();
    if (!dept) fail('agent: dispatched but #ticket-dept is empty');
    log(`agent: dispatched to ${dept}`);
    await agentAction(ag, '开始办理', '办理中');

    log('agent: live call transcript');
    await ag.getByLabel('通话转写').fill(CALL);
    try {
      await ag.locator('#copilot-dept[data-dept]').waitFor({ state: 'visible', timeout: 60_000 });
    } catch (_) {
      const status = ((await ag.locator('#copilot-status').textContent()) || '').trim();
      const shown = ((await ag.locator('#copilot').textContent()) || '').trim().slice(0, 300);
      fail(`agent: the co-pilot showed no suggested department (${status}): ${shown}`);
    }
    log(`agent: co-pilot suggests ${((await ag.locator('#copilot-dept').textContent()) || '').trim()}`);
    await shot(ag, 'agent.png');

    // 4. Supervisor: counts went up.
    current = sup;
    log('supervisor: reload');
    await sup.reload({ waitUntil: 'domcontentloaded' });
    await sup.locator('#app').waitFor({ state: 'visible' });
    await sup.waitForFunction(() => !/正在统计/.test((document.querySelector('#metrics-status') || {}).textContent || ''));
    const after = { tickets: await kpi(sup, 'kpi-tickets'), dispatched: await kpi(sup, 'kpi-dispatched') };
    log(`supervisor: after tickets=${after.tickets} dispatched=${after.dispatched}`);
    if (after.tickets < before.tickets + 1) fail(`dashboard: 工单总数 went from ${before.tickets} to ${after.tickets}, expected +1`);
    if (after.dispatched < before.dispatched + 1) fail(`dashboard: 已派发 went from ${before.dispatched} to ${after.dispatched}, expected +1`);
    await shot(sup, 'dashboard.png');
  } catch (e) {
    console.error(`e2e FAILED: ${e instanceof Failure ? e.message : e.stack || e}`);
    if (current) {
      await current.screenshot({ path: path.join(OUT, 'failure.png'), fullPage: true }).catch(() => {});
      console.error(`screenshot ${path.join(OUT, 'failure.png')} (${current.url()})`);
    }
    if (problems.length) console.error(`also seen in the browser:\n  ${problems.join('\n  ')}`);
    await browser.close().catch(() => {});
    process.exit(1);
  }
  await browser.close();
  if (problems.length) {
    console.error(`e2e FAILED: errors in the browser:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  console.log('e2e ok');
}

main().catch((e) => {
  console.error(`e2e FAILED: ${e.stack || e}`);
  process.exit(1);
});
