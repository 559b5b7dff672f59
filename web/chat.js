// zhengwu 政务 — citizen page: grounded Q&A over SSE with citations, service requests drafted
// in the chat, 提交诉求 (pre-filled by the co-pilot or the chat's draft), and ticket look-up.
'use strict';

(function () {
  const { el, clear, $, api, errorFrom, showError, busy, label, safeUrl, fmtTime, STATUS, TYPES } = window.ZW;
  const MY_KEY = 'zw-my-tickets';
  const DEFAULT_AI_LABEL = '本回复由人工智能生成，仅供参考';
  const HANDOFF_TEXT = '未能找到可靠答案，已为您转人工：可拨打12345热线，或点击“提交诉求”由工作人员处理';

  const asked = []; // the citizen's own messages, in order
  let draftCategory = [];
  let submitOpener = null; // the button that opened 提交诉求: 取消 gives focus back to it
  let fillSeq = 0; // each opening of 提交诉求 counts, so a late co-pilot draft cannot overwrite a newer one

  // ---------- chat ----------

  // Split an SSE stream into events (blank-line separated); calls onEvent(parsed JSON).
  async function readSse(resp, onEvent) {
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    const flush = (block) => {
      const data = block.split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (!data) return;
      let ev;
      try { ev = JSON.parse(data); } catch (_) { return; }
      onEvent(ev);
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf = (buf + dec.decode(value, { stream: true })).replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        flush(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
    buf += dec.decode();
    if (buf.trim()) flush(buf.replace(/\r\n?/g, '\n'));
  }

  function openCitation(c) {
    const d = $('#cite-dialog');
    $('#cite-title').textContent = `[${c.n}] ${c.title || c.doc_id || '引用资料'}`;
    $('#cite-section').textContent = c.section ? `章节：${c.section}` : '';
    $('#cite-text').textContent = c.text || '';
    const src = clear($('#cite-source'));
    const url = safeUrl(c.source_url);
    if (url) src.appendChild(el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: '查看原文' }));
    else if (c.doc_id) src.textContent = `文件：${c.doc_id}`;
    if (typeof d.showModal === 'function') d.showModal();
    else d.setAttribute('open', '');
    $('#cite-close').focus();
  }

  function citeButton(c, text) {
    return el('button', {
      type: 'button', class: 'citation', text,
      'aria-label': `查看引用${c.n}：${c.title || c.doc_id || ''}`,
      on: { click: () => openCitation(c) },
    });
  }

  // Answer text with [n] (also [1,2] / [1、2]) markers turned into citation buttons.
  function renderAnswer(box, text, citations) {
    clear(box);
    const byN = new Map((citations || []).map((c) => [Number(c.n), c]));
    const re = /\[(\d{1,2}(?:\s*[,，、]\s*\d{1,2})*)\]/g;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      const nums = m[1].split(/\s*[,，、]\s*/).map(Number);
      if (!nums.every((n) => byN.has(n))) continue;
      box.appendChild(document.createTextNode(text.slice(last, m.index)));
      for (const n of nums) box.appendChild(citeButton(byN.get(n), `[${n}]`));
      last = m.index + m[0].length;
    }
    box.appendChild(document.createTextNode(text.slice(last)));
  }

  function addMessage(kind, text) {
    const log = $('#chat-log');
    const msg = el('article', { class: `msg ${kind}` });
    if (kind === 'user') {
      msg.setAttribute('aria-label', '我的提问');
      msg.appendChild(el('p', { class: 'msg-text', text }));
    }
    log.appendChild(msg);
    msg.scrollIntoView({ block: 'nearest' });
    return msg;
  }

  // The answer text without its leading 【安全提示】 paragraph (shown in its own alert box).
  function withoutAdvice(text) {
    return text.replace(/^\s*【安全提示】[\s\S]*?\n[ \t]*\n\s*/, '');
  }

  function safetyAdvice(advice) {
    return el('div', { class: 'safety-advice', role: 'alert' },
      el('h3', { text: '安全提示' }),
      el('p', { text: advice }));
  }

  // The service request the server drafted from the message: what the ticket would say, and
  // 核对并提交 to open the form with it (no co-pilot call: the draft is already here).
  function requestDraft(request, question) {
    const form = request.form && typeof request.form === 'object' ? request.form : {};
    const t = form.ticket && typeof form.ticket === 'object' ? form.ticket : {};
    const addr = t.address && typeof t.address === 'object' ? t.address : {};
    const category = Array.isArray(t.category) ? t.category.filter((c) => typeof c === 'string' && c.trim()) : [];
    const dept = request.department && typeof request.department.name === 'string' && request.department.name
      ? request.department.name : '';
    const where = [addr.district, addr.text].filter((x) => typeof x === 'string' && x.trim());
    // The district is often already part of the address text; do not say it twice.
    const address = where.length === 2 && where[1].includes(where[0]) ? where[1] : where.join(' ');

    const fields = el('dl', { class: 'kv' });
    const row = (k, v, cls) => fields.append(el('dt', { text: k }), el('dd', { class: cls, text: v }));
    row('类型', label(TYPES, t.request_type) || '待确认');
    if (category.length) row('分类', category.join(' / '));
    row('地址', address || '请补充', address ? null : 'missing');
    row('摘要', t.summary || question);
    // The department is the system's first judgement; the agent who dispatches decides.
    row('建议承办部门', dept ? `${dept} · 系统初判` : '由工作人员派单');
    if (request.urgent) row('紧急程度', '紧急（安全隐患）', 'urgent');

    const actions = el('div', { class: 'actions' });
    const review = el('button', {
      type: 'button', class: 'btn', text: '核对并提交', 'aria-label': '核对并提交诉求单',
      on: { click: () => openDraft(t, question, review) },
    });
    const decline = el('button', {
      type: 'button', class: 'btn btn-quiet', text: '不用了', 'aria-label': '不用了，暂不提交诉求单',
      on: {
        click: () => {
          actions.hidden = true;
          // The buttons are gone; the citizen goes on asking.
          $('#question').focus();
        },
      },
    });
    actions.append(review, decline);
    return el('section', { class: 'request-draft', 'aria-label': '诉求单草稿' },
      el('h3', { text: '诉求单草稿' }), fields, actions);
  }

  // A service request without a draft (the hotline is not configured, or drafting failed):
  // the usual form, pre-filled by the co-pilot from the conversation.
  function fillRequestButton() {
    const btn = el('button', { type: 'button', class: 'btn', text: '填写诉求单' });
    btn.addEventListener('click', busy(btn, $('#submit-error'), () => openWithCopilot(btn)));
    return el('div', { class: 'actions msg-actions' }, btn);
  }

  function lookupButton() {
    return el('div', { class: 'actions msg-actions' }, el('button', {
      type: 'button', class: 'btn btn-secondary', text: '查看我的工单',
      on: {
        click: () => {
          const sec = $('#lookup-section');
          sec.scrollIntoView({ block: 'start' });
          sec.focus({ preventScroll: true });
        },
      },
    }));
  }

  // The generic 转人工 box: for answers that could not be given. A service request has its
  // draft card instead, a status answer its look-up button, small talk needs none, and a
  // harmful request's refusal already says why it is refused.
  function showsHandoff(kind, ev) {
    if (!ev.handoff) return false;
    if (kind === 'service_request' || kind === 'status' || kind === 'small_talk') return false;
    return !(kind === 'refusal' && ev.refusal_reason === 'harmful');
  }

  // One bot answer: streamed text, then citations/hand-off (or the kind's own parts), then the AI label.
  function botMessage(question) {
    const msg = addMessage('bot');
    msg.setAttribute('aria-label', '智能助手的回答');
    msg.setAttribute('aria-busy', 'true');
    const body = el('div', { class: 'msg-text' });
    const typing = el('p', { class: 'typing hint', text: '正在查找政策资料并生成回答…' });
    msg.append(typing, body);
    const st = { text: '', citations: [], finished: false, labelled: false };
    let early = null;
    return {
      el: msg,
      state: st,
      // The passages retrieved, shown while the model reads them; the final answer replaces them.
      sources(citations) {
        if (!Array.isArray(citations) || !citations.length || early) return;
        typing.textContent = '已找到相关政策资料，正在生成回答…';
        const list = el('ol', { class: 'sources pending-sources', 'aria-label': '正在参考的资料' });
        for (const c of citations) {
          const where = [c.title || c.doc_id, c.section].filter(Boolean).join(' · ');
          list.appendChild(el('li', { text: `[${c.n}] ${where}` }));
        }
        early = el('div', { class: 'pending' }, el('p', { class: 'sources-title', text: '正在参考：' }), list);
        msg.appendChild(early);
      },
      delta(t) {
        typing.remove();
        st.text += t;
        body.textContent = st.text;
      },
      // `ev` is the whole answer object (the SSE `citations` event, or the JSON body).
      final(ev) {
        typing.remove();
        if (early) { early.remove(); early = null; }
        if ((ev.replaced || !st.text) && typeof ev.answer === 'string') st.text = ev.answer;
        st.citations = Array.isArray(ev.citations) ? ev.citations : [];
        // An older server sends no kind: its answers were generated ones.
        const kind = typeof ev.kind === 'string' ? ev.kind : 'generated';
        const request = kind === 'service_request' && ev.request && typeof ev.request === 'object' ? ev.request : null;
        const advice = request && typeof request.advice === 'string' ? request.advice.trim() : '';
        // The advice is shown once, in the alert box at the top, not again in the text.
        renderAnswer(body, advice ? withoutAdvice(st.text) : st.text, st.citations);
        if (kind === 'faq' && typeof ev.faq_question === 'string' && ev.faq_question.trim()) {
          // A verbatim FAQ answer: the citizen sees which question it answers.
          msg.insertBefore(el('p', { class: 'faq-question', text: `常见问题：${ev.faq_question.trim()}` }), body);
        }
        if (advice) msg.insertBefore(safetyAdvice(advice), msg.firstChild);
        const g = ev.grounding;
        const dropped = g && Array.isArray(g.dropped) ? g.dropped.length : 0;
        if (kind === 'generated' && dropped > 0) {
          msg.appendChild(el('p', { class: 'grounding-note', text: `（已删去 ${dropped} 句无法在资料中核实的内容）` }));
        }
        if (st.citations.length) {
          const list = el('ol', { class: 'sources', 'aria-label': '参考资料' });
          for (const c of st.citations) {
            const where = [c.title || c.doc_id, c.section].filter(Boolean).join(' · ');
            list.appendChild(el('li', null, citeButton(c, `[${c.n}] ${where}`)));
          }
          msg.append(el('p', { class: 'sources-title', text: '参考资料：' }), list);
        }
        if (kind === 'service_request') msg.appendChild(request ? requestDraft(request, question) : fillRequestButton());
        else if (kind === 'status') msg.appendChild(lookupButton());
        if (showsHandoff(kind, ev)) msg.appendChild(el('div', { class: 'handoff', role: 'note', text: HANDOFF_TEXT }));
      },
      done(ai) {
        typing.remove();
        st.finished = true;
        if (!st.labelled) {
          st.labelled = true;
          const text = (ai && ai.label) || DEFAULT_AI_LABEL;
          const lab = el('p', { class: 'ai-label', text });
          if (ai && ai.model) lab.title = `模型：${ai.model}`;
          msg.appendChild(lab);
        }
        msg.setAttribute('aria-busy', 'false');
      },
    };
  }

  function systemError(text) {
    const log = $('#chat-log');
    const m = el('div', { class: 'msg system-msg', role: 'alert' }, el('p', { class: 'error-text', text }));
    log.appendChild(m);
    m.scrollIntoView({ block: 'nearest' });
  }

  async function ask(question) {
    addMessage('user', question);
    asked.push(question);
    const bot = botMessage(question);
    let failed = null;
    try {
      let resp;
      try {
        resp = await fetch('/api/ask', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
          // Earlier questions (not the one just asked) let the server read a short follow-up in context.
          body: JSON.stringify({ question, stream: true, history: asked.slice(-4, -1) }),
        });
      } catch (_) {
        throw new Error('网络错误，无法连接服务器，请稍后重试');
      }
      if (!resp.ok) throw await errorFrom(resp);
      const type = resp.headers.get('content-type') || '';
      if (type.includes('application/json')) {
        // A server that answered without streaming.
        const a = await resp.json();
        bot.final({ ...a, answer: typeof a.answer === 'string' ? a.answer : '', replaced: true });
        bot.done(a.ai_content);
      } else {
        let gotDone = false;
        await readSse(resp, (ev) => {
          if (ev.type === 'delta' && typeof ev.text === 'string') bot.delta(ev.text);
          else if (ev.type === 'sources') bot.sources(ev.citations);
          else if (ev.type === 'citations') bot.final(ev);
          else if (ev.type === 'done') { gotDone = true; bot.done(ev.ai_content); }
          else if (ev.type === 'error') failed = ev.message || '生成回答时出错';
        });
        if (!gotDone && !failed) failed = '回答意外中断，请重试';
      }
    } catch (err) {
      failed = err.message || '请求失败';
    }
    if (failed) {
      if (bot.state.text) bot.done(null);
      else bot.el.remove();
      systemError(`回答失败：${failed}`);
    }
    bot.el.scrollIntoView({ block: 'nearest' });
  }

  function setupChat() {
    const form = $('#ask-form');
    const q = $('#question');
    const btn = $('#ask-btn');
    const err = $('#ask-error');
    form.addEventListener('submit', busy(btn, err, async () => {
      const text = q.value.trim();
      if (!text) { q.focus(); throw new Error('请先输入问题'); }
      q.value = '';
      q.setAttribute('aria-disabled', 'true');
      try {
        await ask(text);
      } finally {
        q.removeAttribute('aria-disabled');
        q.focus();
      }
    }));
    q.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
  }

  // ---------- 提交诉求 ----------

  function fillForm(t) {
    t = t || {};
    const addr = t.address || {};
    const contact = t.contact || {};
    $('#f-summary').value = t.summary || '';
    $('#f-text').value = t.text || asked.join('\n');
    $('#f-type').value = TYPES[t.request_type] ? t.request_type : 'consult';
    $('#f-district').value = addr.district || '';
    $('#f-address').value = addr.text || '';
    $('#f-name').value = contact.name || '';
    $('#f-phone').value = contact.phone || '';
    draftCategory = Array.isArray(t.category) ? t.category.filter((c) => typeof c === 'string' && c.trim()) : [];
    $('#f-category').textContent = draftCategory.length ? `系统分类：${draftCategory.join(' / ')}` : '';
  }

  // Show the 提交诉求 section, its form hidden until it is filled.
  function beginSubmit(opener) {
    submitOpener = opener;
    fillSeq += 1;
    $('#submit-section').hidden = false;
    $('#ticket-created').hidden = true;
    $('#submit-form').hidden = true;
    showError($('#submit-error'), null);
    $('#submit-section').scrollIntoView({ block: 'start' });
    return fillSeq;
  }

  function showSubmitForm() {
    $('#submit-form').hidden = false;
    $('#f-summary').focus();
  }

  // 提交诉求 the usual way: the co-pilot drafts the form from everything asked so far.
  async function openWithCopilot(opener) {
    const seq = beginSubmit(opener);
    const status = $('#submit-status');
    const errBox = $('#submit-error');
    if (asked.length) {
      status.textContent = '正在根据您的对话生成工单草稿…';
      try {
        const r = await api('POST', '/api/copilot', { transcript: asked.join('\n'), channel: 'app' });
        if (seq !== fillSeq) return;
        fillForm(r && r.form ? r.form.ticket : null);
        status.textContent = '';
      } catch (err) {
        if (seq !== fillSeq) return;
        fillForm(null);
        status.textContent = '';
        showError(errBox, `自动填写失败（${err.message}），请手动填写。`);
      }
    } else {
      fillForm(null);
      status.textContent = '请填写您的诉求。';
    }
    showSubmitForm();
  }

  // 核对并提交 on a chat draft: the server already drafted the ticket from this message.
  function openDraft(ticket, question, opener) {
    beginSubmit(opener);
    fillForm(ticket);
    // The draft is of this one message, not the whole conversation.
    if (!(ticket && typeof ticket.text === 'string' && ticket.text.trim())) $('#f-text').value = question;
    $('#submit-status').textContent = '';
    showSubmitForm();
  }

  function setupSubmit() {
    const section = $('#submit-section');
    const form = $('#submit-form');
    const created = $('#ticket-created');
    const open = $('#open-submit');
    const errBox = $('#submit-error');

    open.addEventListener('click', busy(open, errBox, () => openWithCopilot(open)));

    $('#cancel-submit').addEventListener('click', () => {
      section.hidden = true;
      fillSeq += 1;
      // Back to whichever button opened the form, while it is still there to take focus.
      const back = submitOpener && submitOpener.isConnected && !submitOpener.closest('[hidden]') ? submitOpener : open;
      back.focus();
    });

    const confirm = $('#confirm-submit');
    form.addEventListener('submit', busy(confirm, errBox, async () => {
      const v = (id) => $(id).value.trim();
      const summary = v('#f-summary');
      if (!summary) { $('#f-summary').focus(); throw new Error('请填写诉求摘要'); }
      const phone = v('#f-phone').replace(/\s+/g, '');
      if (phone && !/^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$/.test(phone)) {
        $('#f-phone').focus();
        throw new Error('联系电话格式不正确：请填写11位手机号或带区号的固定电话');
      }
      const body = {
        channel: 'app',
        request_type: $('#f-type').value,
        summary,
        text: v('#f-text') || summary,
        category: draftCategory,
      };
      // Urgency is the hotline's decision (staff-only on create); the screener flags emergencies.
      const address = {};
      if (v('#f-address')) address.text = v('#f-address');
      if (v('#f-district')) address.district = v('#f-district');
      if (Object.keys(address).length) body.address = address;
      const contact = {};
      if (v('#f-name')) contact.name = v('#f-name');
      if (phone) contact.phone = phone;
      if (Object.keys(contact).length) body.contact = contact;
      const t = await api('POST', '/api/tickets', body);
      form.hidden = true;
      created.textContent = `工单已提交：编号 ${t.number}（查询ID：${t.id}）。工作人员将尽快处理，您可在下方“查询工单”中查看进度。`;
      created.dataset.id = String(t.id);
      created.dataset.number = String(t.number);
      created.hidden = false;
      remember(t);
      created.focus();
    }));
    created.tabIndex = -1;
  }

  // ---------- 查询工单 ----------

  function myTickets() {
    try {
      const v = JSON.parse(localStorage.getItem(MY_KEY) || '[]');
      return Array.isArray(v) ? v.filter((x) => x && Number.isInteger(Number(x.id))) : [];
    } catch (_) {
      return [];
    }
  }

  function remember(t) {
    const list = myTickets().filter((x) => Number(x.id) !== Number(t.id));
    list.unshift({ id: Number(t.id), number: String(t.number || '') });
    try { localStorage.setItem(MY_KEY, JSON.stringify(list.slice(0, 20))); } catch (_) { /* private mode */ }
    renderMine();
  }

  function renderMine() {
    const box = clear($('#my-tickets'));
    const list = myTickets();
    if (!list.length) return;
    box.appendChild(el('span', { class: 'hint', text: '我提交的工单：' }));
    for (const x of list) {
      box.appendChild(el('button', {
        type: 'button', class: 'link-btn', text: x.number || `ID ${x.id}`,
        'aria-label': `查询工单 ${x.number || x.id}`,
        on: { click: () => { $('#lookup-id').value = String(x.id); lookup(String(x.id)); } },
      }));
    }
  }

  async function lookup(raw) {
    const out = $('#lookup-result');
    const err = $('#lookup-error');
    showError(err, null);
    const id = window.ZW.ticketId(raw);
    if (!id) { out.hidden = true; showError(err, '请输入正确的工单ID或编号（数字）'); return; }
    try {
      const t = await api('GET', `/api/tickets/${id}`);
      clear(out);
      const row = (k, v) => { if (v) out.append(el('dt', { text: k }), el('dd', { text: v })); };
      row('工单编号', t.number);
      row('办理状态', label(STATUS, t.status));
      row('诉求类型', label(TYPES, t.request_type));
      row('诉求摘要', t.summary);
      row('承办部门', t.lead_dept || '待派发');
      row('答复内容', t.reply || '暂无答复');
      row('提交时间', fmtTime(t.created_at));
      out.hidden = false;
    } catch (e) {
      out.hidden = true;
      showError(err, e.status === 404 ? '未找到该工单，请核对编号' : e);
    }
  }

  function setupLookup() {
    const form = $('#lookup-form');
    const btn = form.querySelector('button[type="submit"]');
    form.addEventListener('submit', busy(btn, $('#lookup-error'), () => lookup($('#lookup-id').value)));
    renderMine();
  }

  window.ZW.boot({
    roles: null,
    init() {
      setupChat();
      setupSubmit();
      setupLookup();
    },
  });
})();
