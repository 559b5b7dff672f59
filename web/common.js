// zhengwu 政务 — shared helpers for every page: DOM building, JSON fetch with readable errors,
// session login/logout, role checks and the large-font toggle. No framework, no build step.
'use strict';

(function () {
  const FONT_KEY = 'zw-large-font';

  const STATUS = {
    received: '已登记', accepted: '已受理', dispatched: '已派发', returned: '已退回', handling: '办理中',
    replied: '已答复', callback_done: '已回访', closed: '已办结', reopened: '重办',
  };
  const TYPES = { consult: '咨询', help: '求助', complaint: '投诉', report: '举报', suggestion: '建议' };
  const URGENCY = { normal: '一般', urgent: '紧急', critical: '特急' };
  const CHANNELS = { phone: '电话', app: 'APP', web: '网站', mini_program: '小程序', letter: '信件' };
  const ROLES = { citizen: '市民', agent: '坐席', supervisor: '督办', admin: '管理员' };
  const BUCKETS = { auto: '自动派发', review: '派发并抽检', human: '需人工判断' };
  const DECIDED = { rule: '规则', model: '模型', duty: '职责匹配', keywords: '关键词', similar_cases: '相似工单', person: '人工', none: '无' };
  const SATISFACTION = { satisfied: '满意', basically_satisfied: '基本满意', unsatisfied: '不满意' };
  const SOURCES = { rule: '规则', model: '模型', none: '无' };

  // el('p', {class: 'x', text: 'hi'}, child, 'more text') — text always goes in as text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'text') node.textContent = String(v);
        else if (k === 'class') node.className = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
        else if (k in node && typeof v !== 'string') node[k] = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function $(sel, root) { return (root || document).querySelector(sel); }

  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.body = body;
    }
  }

  async function errorFrom(resp) {
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    const msg = body && body.error && body.error.message ? body.error.message : `请求失败（HTTP ${resp.status}）`;
    return new ApiError(msg, resp.status, body);
  }

  // fetch wrapper: JSON in, JSON out; throws ApiError with the server's error.message.
  async function api(method, path, body, opts) {
    const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (opts && opts.raw !== undefined) {
      init.body = opts.raw;
      init.headers['Content-Type'] = opts.contentType || 'application/octet-stream';
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      throw new ApiError('网络错误，无法连接服务器，请稍后重试', 0, null);
    }
    if (!resp.ok) throw await errorFrom(resp);
    if (resp.status === 204) return null;
    const type = resp.headers.get('content-type') || '';
    if (!type.includes('json')) return resp.text();
    try {
      return await resp.json();
    } catch (_) {
      throw new ApiError('服务器返回的数据无法解析', resp.status, null);
    }
  }

  function message(err) {
    if (err && err.message) return err.message;
    return '发生未知错误';
  }

  // Put an error (or clear it) in a role="alert" box.
  function showError(box, err) {
    if (!box) return;
    if (!err) { box.textContent = ''; box.hidden = true; return; }
    box.textContent = typeof err === 'string' ? err : message(err);
    box.hidden = false;
  }

  let noticeTimer = null;
  function notice(text) {
    const n = $('#notice');
    if (!n) return;
    n.textContent = text;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.textContent = ''; }, 6000);
  }

  function pct(x, digits) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return '—';
    return (Number(x) * 100).toFixed(digits === undefined ? 0 : digits) + '%';
  }

  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (Number.isNaN(d.getTime())) return String(s);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  function label(map, key) {
    if (key === null || key === undefined || key === '') return '';
    return map[key] || String(key);
  }

  // A safe link target: only http(s) or same-origin paths.
  function safeUrl(u) {
    if (typeof u !== 'string') return null;
    if (/^https?:\/\//i.test(u)) return u;
    // A same-site path only: browsers read a backslash as a slash, so "/\\evil.com" opens
    // //evil.com; control characters and whitespace are dropped by URL parsers the same way.
    if (u.startsWith('/') && !/^\/[\/\\]/.test(u) && !/[\\\s\x00-\x1f]/.test(u)) return u;
    return null;
  }

  // A ticket id from what a person typed: the id itself or the 14-digit number (YYYYMMDD + id).
  function ticketId(raw) {
    const d = String(raw || '').replace(/\s+/g, '');
    if (!/^\d+$/.test(d)) return null;
    const id = d.length === 14 ? Number(d.slice(8)) : Number(d);
    return id > 0 && Number.isSafeInteger(id) ? id : null;
  }

  // Run an async click handler with the button disabled while it works; errors go to `box`.
  function busy(button, box, fn) {
    return async (ev) => {
      if (ev && ev.preventDefault) ev.preventDefault();
      if (button.disabled) return;
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
      showError(box, null);
      try {
        await fn(ev);
      } catch (err) {
        showError(box, err);
      } finally {
        button.disabled = false;
        button.removeAttribute('aria-busy');
      }
    };
  }

  // ---- large-font toggle ----
  function applyFont(on) {
    document.documentElement.classList.toggle('large-font', on);
    const b = $('#font-toggle');
    if (b) b.setAttribute('aria-pressed', on ? 'true' : 'false');
  }
  function readFont() {
    try { return localStorage.getItem(FONT_KEY) === '1'; } catch (_) { return false; }
  }
  applyFont(readFont());

  function setupFontToggle() {
    const b = $('#font-toggle');
    if (!b) return;
    applyFont(readFont());
    b.addEventListener('click', () => {
      const on = !document.documentElement.classList.contains('large-font');
      applyFont(on);
      try { localStorage.setItem(FONT_KEY, on ? '1' : '0'); } catch (_) { /* private mode */ }
    });
  }

  // ---- session ----
  // Open mode (no users configured): everyone acts as administrator, so every page says so.
  function showOpenMode(open) {
    let b = document.getElementById('open-mode-banner');
    if (!open) { if (b) b.remove(); return; }
    if (b) return;
    b = el('div', { id: 'open-mode-banner', class: 'open-mode', role: 'alert',
      text: '⚠ 登录已关闭（开放模式）：未配置任何用户，任何能访问本服务的人都以管理员身份操作，可查看市民个人信息。仅供本机试用；正式使用请配置用户（[web] users）。' });
    document.body.insertBefore(b, document.body.firstChild);
  }

  // boot({roles: ['agent', ...] | null, init(me)}): checks /api/me, shows the login form when a
  // key is needed, "无权访问此页面" for a role that may not use the page, else calls init once.
  function boot(opts) {
    const state = { me: null, started: false };
    const loginSec = $('#login');
    const denied = $('#denied');
    const app = $('#app');
    const who = $('#whoami');
    const logout = $('#logout');
    const pageErr = $('#page-error');

    setupFontToggle();

    async function check() {
      showError(pageErr, null);
      let me;
      try {
        me = await api('GET', '/api/me');
      } catch (err) {
        if (err.status === 404) {
          me = { auth: false, user: null, role: null };
        } else {
          showError(pageErr, '无法获取登录状态：' + message(err));
          return;
        }
      }
      state.me = me || { auth: false };
      showOpenMode(!state.me.auth);
      const needLogin = !!state.me.auth && !state.me.user;
      loginSec.hidden = !needLogin;
      if (needLogin) {
        app.hidden = true;
        denied.hidden = true;
        who.textContent = '';
        logout.hidden = true;
        const k = $('#login-key');
        if (k) k.focus();
        return;
      }
      if (state.me.user) {
        who.textContent = `${state.me.user}（${label(ROLES, state.me.role) || '未知角色'}）`;
        logout.hidden = false;
      } else {
        who.textContent = '';
        logout.hidden = true;
      }
      const allowed = !state.me.auth || !opts.roles || opts.roles.includes(state.me.role);
      denied.hidden = allowed;
      app.hidden = !allowed;
      if (allowed && !state.started) {
        state.started = true;
        try {
          await opts.init(state.me);
        } catch (err) {
          showError(pageErr, err);
        }
      }
    }

    const form = $('#login-form');
    const loginErr = $('#login-error');
    const loginBtn = form.querySelector('button[type="submit"]');
    form.addEventListener('submit', busy(loginBtn, loginErr, async () => {
      const input = $('#login-key');
      const key = input.value.trim();
      if (!key) throw new Error('请输入访问密钥');
      try {
        await api('POST', '/api/login', { key });
      } catch (err) {
        if (err.status === 401) throw new Error('访问密钥不正确，请重新输入');
        throw err;
      }
      input.value = '';
      await check();
    }));

    logout.addEventListener('click', busy(logout, pageErr, async () => {
      await api('POST', '/api/logout', {});
      location.reload();
    }));

    check();
    return state;
  }

  window.ZW = {
    el, append, clear, $, api, ApiError, errorFrom, message, showError, notice, pct, fmtTime, label, safeUrl, busy, boot, ticketId,
    STATUS, TYPES, URGENCY, CHANNELS, ROLES, BUCKETS, DECIDED, SATISFACTION, SOURCES,
  };
})();
