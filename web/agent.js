// zhengwu 政务 — agent console: ticket queue and detail with lifecycle actions, live-call
// co-pilot (knowledge, similar cases, pre-filled form with provenance, dispatch suggestion),
// audio upload for transcription, and callback QA.
'use strict';

(function () {
  const { el, clear, $, api, showError, notice, pct, fmtTime, label, STATUS, TYPES, URGENCY, CHANNELS, BUCKETS, DECIDED, SATISFACTION, SOURCES } = window.ZW;

  // Allowed next states (mirrors the server's state machine; the server has the last word).
  const NEXT = {
    received: ['accepted', 'closed'], accepted: ['dispatched', 'replied'], dispatched: ['handling', 'returned'],
    returned: ['dispatched'], handling: ['replied', 'returned'], replied: ['callback_done', 'reopened'],
    callback_done: ['closed', 'reopened'], closed: ['reopened'], reopened: ['dispatched', 'replied'],
  };
  const ACTIONS = {
    accept: { to: 'accepted', name: '受理' },
    'auto-dispatch': { to: 'dispatched', name: '派发' },
    dispatch: { to: 'dispatched', name: '派发' },
    handling: { to: 'handling', name: '开始办理' },
    reply: { to: 'replied', name: '答复' },
    callback: { to: 'callback_done', name: '回访' },
    return: { to: 'returned', name: '退单' },
    reopen: { to: 'reopened', name: '重办' },
  };

  const state = { me: null, current: null, running: false, copilot: null, seq: 0, lastSent: '', timer: null };
  const deptNames = new Map();

  const actor = () => String((state.me && state.me.user) || 'agent').slice(0, 64);
  const deptLabel = (id) => (id ? (deptNames.get(id) || id) : '');

  function learnDepts(s) {
    if (!s) return;
    const all = [s.lead, ...(s.co_handlers || []), ...(s.candidates || [])].filter(Boolean);
    const dl = $('#dept-options');
    for (const c of all) {
      if (c.dept && c.name && !deptNames.has(c.dept)) {
        deptNames.set(c.dept, c.name);
        dl.appendChild(el('option', { value: c.dept, label: c.name }));
      }
    }
  }

  // ---------- queue ----------

  async function loadQueue() {
    const err = $('#queue-error');
    showError(err, null);
    try {
      const r = await api('GET', '/api/tickets?limit=50');
      const list = clear($('#queue'));
      const data = (r && r.data) || [];
      $('#queue-count').textContent = `共 ${data.length} 件${r && r.next_cursor ? '（仅显示最近50件）' : ''}`;
      for (const t of data) {
        const selected = state.current && state.current.id === t.id;
        const flags = [];
        if (t.urgency && t.urgency !== 'normal') flags.push(el('span', { class: 'badge badge-warn', text: label(URGENCY, t.urgency) }));
        if (t.overdue && t.overdue.any) flags.push(el('span', { class: 'badge badge-danger', text: '超期' }));
        const b = el('button', {
          type: 'button', class: 'queue-item', dataset: { id: String(t.id) },
          'aria-current': selected ? 'true' : null,
          on: { click: () => selectTicket(t.id).catch((e) => showError(err, e)) },
        },
        el('span', { class: 'q-number', text: t.number }),
        el('span', { class: `badge status-${t.status}`, text: label(STATUS, t.status) }),
        flags,
        el('span', { class: 'q-summary', text: t.summary || '（无摘要）' }));
        list.appendChild(el('li', null, b));
      }
      if (!data.length) list.appendChild(el('li', { class: 'hint', text: '暂无工单' }));
    } catch (e) {
      showError(err, e);
    }
  }

  // ---------- detail ----------

  async function selectTicket(id) {
    const t = await api('GET', `/api/tickets/${id}`);
    state.current = t;
    renderDetail(t);
    for (const b of document.querySelectorAll('#queue .queue-item')) {
      if (Number(b.dataset.id) === t.id) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
    return t;
  }

  function renderDetail(t) {
    $('#detail-empty').hidden = true;
    $('#detail').hidden = false;
    $('#ticket-number').textContent = t.number || String(t.id);
    $('#ticket-status').textContent = label(STATUS, t.status);
    $('#ticket-dept').textContent = deptLabel(t.lead_dept);
    const more = clear($('#detail-more'));
    const row = (k, v) => { if (v !== undefined && v !== null && v !== '') more.append(el('dt', { text: k }), el('dd', { text: String(v) })); };
    const addr = t.address || {};
    const c = t.contact || {};
    row('诉求类型', label(TYPES, t.request_type));
    row('紧急程度', label(URGENCY, t.urgency));
    row('来源渠道', label(CHANNELS, t.channel));
    row('分类', (t.category || []).join(' / '));
    row('诉求摘要', t.summary);
    row('详细描述', t.text);
    row('所在区', addr.district);
    row('详细地址', addr.text);
    row('联系人', c.name);
    row('联系电话', c.phone);
    row('协办单位', (t.co_handlers || []).map(deptLabel).join('、'));
    row('登记时间', fmtTime(t.created_at));
    if (t.deadlines) row('答复时限', fmtTime(t.deadlines.reply_by));
    if (t.overdue && t.overdue.any) row('超期', '已超期');
    row('答复内容', t.reply);
    row('回访满意度', label(SATISFACTION, t.satisfaction));
    if (t.returns) row('退单次数', t.returns);
    if (t.reopens) row('重办次数', t.reopens);
    for (const d of t.dispatches || []) {
      const how = d.auto ? '自动' : '人工';
      const conf = d.confidence !== undefined && d.confidence !== null ? `，置信度 ${pct(d.confidence)}` : '';
      row('派单记录', `${deptLabel(d.dept)}（${how}${d.bucket ? '，系统分流：' + label(BUCKETS, d.bucket) : ''}${conf}）`);
    }
    const tb = clear($('#history'));
    for (const h of t.history || []) {
      tb.appendChild(el('tr', null,
        el('td', { text: h.seq }),
        el('td', { class: 'nowrap', text: fmtTime(h.at).slice(5) }),
        el('td', { text: h.actor }),
        el('td', { text: `${h.from ? label(STATUS, h.from) : '新建'} → ${label(STATUS, h.to)}` }),
        el('td', { text: deptLabel(h.dept) }),
        el('td', { text: h.reason || '' })));
    }
    updateButtons();
  }

  function updateButtons() {
    const t = state.current;
    const next = t && NEXT[t.status];
    for (const b of document.querySelectorAll('[data-action]')) {
      const a = ACTIONS[b.dataset.action];
      b.disabled = state.running || !t || (next ? !next.includes(a.to) : false);
    }
  }

  // ---------- actions ----------

  function transition(id, body) {
    return api('POST', `/api/tickets/${id}/transitions`, body);
  }

  function need(sel, msg) {
    const v = $(sel).value.trim();
    if (!v) { $(sel).focus(); throw new Error(msg); }
    return v;
  }

  function renderSuggestion(box, s, withLead = true) {
    clear(box);
    if (!s) return;
    learnDepts(s);
    if (withLead && s.lead) {
      box.appendChild(el('p', { class: 'suggest-lead' },
        '建议承办：', el('strong', { text: s.lead.name || s.lead.dept }),
        `（置信度 ${pct(s.lead.confidence)}，${label(BUCKETS, s.bucket)}，依据：${label(DECIDED, s.decided_by)}）`));
    } else if (withLead) {
      box.appendChild(el('p', { class: 'suggest-lead', text: `暂无可靠建议（${label(BUCKETS, s.bucket) || '需人工判断'}）` }));
    }
    if ((s.co_handlers || []).length) {
      box.appendChild(el('p', { text: `建议协办：${s.co_handlers.map((c) => `${c.name || c.dept} ${pct(c.confidence)}`).join('、')}` }));
    }
    if ((s.candidates || []).length) {
      box.appendChild(el('p', { class: 'hint', text: `候选：${s.candidates.map((c) => `${c.name || c.dept} ${pct(c.confidence)}`).join('；')}` }));
    }
    const reasons = (s.reasons || []).map(reasonText).filter(Boolean);
    if (reasons.length) box.appendChild(el('ul', { class: 'reasons', 'aria-label': '建议依据' }, reasons.map((r) => el('li', { text: r }))));
  }

  function reasonText(r) {
    const list = (x) => (Array.isArray(x) ? x.join('、') : '');
    switch (r.kind) {
      case 'rule': return `规则 ${r.rule || ''}${r.description ? '：' + r.description : ''}${r.matched && r.matched.length ? '（命中：' + list(r.matched) + '）' : ''}`;
      case 'model': return `模型 ${r.model || ''}：${deptLabel(r.dept)} ${pct(r.confidence)}`;
      case 'keywords': return `关键词：${deptLabel(r.dept)}（${list(r.matched)}）`;
      case 'duty': return `职责匹配：${deptLabel(r.dept)} ${pct(r.probability)}`;
      case 'similar_case': return `相似工单 #${r.ticket_id}：${deptLabel(r.dept)}，相似度 ${pct(r.similarity)}`;
      case 'excluded': return `排除 ${deptLabel(r.dept)}：${r.why || ''}`;
      case 'not_automatic': {
        const why = { model_disagrees: `模型倾向${deptLabel(r.dept)} ${pct(r.confidence)}`, rule_disputed: `职责匹配倾向${deptLabel(r.dept)} ${pct(r.confidence)}`, uncorroborated: '仅有关键词或相似工单' }[r.cause] || r.cause;
        return `未自动派发：依据不一致，请人工确认（${why}）`;
      }
      default: return r.kind ? String(r.kind) : '';
    }
  }

  async function autoDispatch(t) {
    const r = await api('POST', `/api/tickets/${t.id}/auto-dispatch`, {});
    const s = r && r.suggestion;
    renderSuggestion($('#dispatch-result'), s);
    if (r && r.dispatched) return;
    if (!s || !s.lead) throw new Error('系统无法确定承办部门，请在“承办部门（人工派发）”中填写后点击“人工派发”。');
    const co = [...new Set((s.co_handlers || []).map((c) => c.dept).filter((d) => d && d !== s.lead.dept))];
    const body = {
      to: 'dispatched', actor: actor(), dept: s.lead.dept,
      dispatch: { auto: false, bucket: s.bucket, suggested: s.lead.dept, confidence: Math.min(1, Math.max(0, Number(s.lead.confidence) || 0)), decided_by: 'person' },
    };
    if (co.length) body.co_handlers = co;
    await transition(t.id, body);
  }

  async function runAction(action) {
    const t = state.current;
    if (!t) throw new Error('请先选择工单');
    const me = actor();
    switch (action) {
      case 'accept': await transition(t.id, { to: 'accepted', actor: me }); break;
      case 'handling': await transition(t.id, { to: 'handling', actor: me }); break;
      case 'auto-dispatch': await autoDispatch(t); break;
      case 'dispatch': await transition(t.id, { to: 'dispatched', actor: me, dept: need('#act-dept', '请填写承办部门') }); $('#act-dept').value = ''; break;
      case 'reply': await transition(t.id, { to: 'replied', actor: me, reply: need('#act-reply', '请填写答复内容') }); $('#act-reply').value = ''; break;
      case 'callback': await transition(t.id, { to: 'callback_done', actor: me, satisfaction: $('#act-satisfaction').value }); break;
      case 'return': await transition(t.id, { to: 'returned', actor: me, reason: need('#act-reason', '请填写退单原因') }); $('#act-reason').value = ''; break;
      case 'reopen': await transition(t.id, { to: 'reopened', actor: me, reason: need('#act-reason', '请填写重办原因') }); $('#act-reason').value = ''; break;
      default: return;
    }
    await Promise.all([selectTicket(t.id), loadQueue()]);
    notice(`工单 ${t.number}：${ACTIONS[action].name}成功，当前状态 ${label(STATUS, state.current.status)}`);
  }

  function setupActions() {
    const err = $('#action-error');
    for (const b of document.querySelectorAll('[data-action]')) {
      b.addEventListener('click', async () => {
        if (state.running) return;
        state.running = true;
        showError(err, null);
        if (b.dataset.action !== 'auto-dispatch') clear($('#dispatch-result'));
        updateButtons();
        b.setAttribute('aria-busy', 'true');
        try {
          await runAction(b.dataset.action);
        } catch (e) {
          showError(err, e);
          if (state.current) await selectTicket(state.current.id).catch(() => {});
        } finally {
          state.running = false;
          b.removeAttribute('aria-busy');
          updateButtons();
        }
      });
    }
    updateButtons();
  }

  // ---------- co-pilot ----------

  function provText(p) {
    if (!p) return '';
    let s = `来源：${label(SOURCES, p.source) || p.source || ''} ${p.by || ''}`.trim();
    if (p.evidence) s += `（${p.evidence}）`;
    if (p.confidence !== undefined && p.confidence !== null) s += ` 置信度 ${pct(p.confidence)}`;
    return s;
  }

  function section(title, ...children) {
    return el('section', { class: 'cp-section' }, el('h3', { text: title }), children);
  }

  function renderCopilot(r, transcript) {
    const body = clear($('#copilot-body'));
    state.copilot = { result: r, transcript };
    const s = r.dispatch;
    learnDepts(s);

    // Suggested department and category.
    const deptBox = el('div');
    const lead = s && s.lead;
    deptBox.appendChild(el('p', {
      id: 'copilot-dept', class: 'suggest-lead', dataset: lead ? { dept: lead.dept } : null,
      text: lead ? `建议承办部门：${lead.name || lead.dept}（置信度 ${pct(lead.confidence)}）` : '建议承办部门：暂无，需人工判断',
    }));
    const extra = el('div');
    renderSuggestion(extra, s, false);
    if (s) deptBox.appendChild(el('p', { class: 'hint', text: `分流：${label(BUCKETS, s.bucket)}；依据：${label(DECIDED, s.decided_by)}` }));
    deptBox.appendChild(extra);
    const cls = r.classification || {};
    const top = (x) => (x && Array.isArray(x.top) && x.top.length ? x.top : null);
    const catTop = top(cls.category);
    const typeTop = top(cls.request_type);
    const clsLines = [];
    if (catTop) clsLines.push(`建议分类：${(cls.category.label || catTop[0].label)}（置信度 ${pct(catTop[0].confidence)}）${cls.category.model ? '，模型 ' + cls.category.model : ''}`);
    if (typeTop) clsLines.push(`诉求类型：${typeTop.map((x) => `${x.label} ${pct(x.confidence)}`).join('、')}`);
    body.appendChild(section('派单与分类建议', deptBox, clsLines.map((t) => el('p', { text: t }))));

    // Pre-filled form with provenance.
    const form = (r.form && r.form.ticket) || null;
    const prov = (r.form && r.form.provenance) || {};
    if (form) {
      const a = form.address || {};
      const c = form.contact || {};
      const rows = [
        ['诉求摘要', form.summary, 'summary'], ['诉求类型', label(TYPES, form.request_type), 'request_type'],
        ['分类', (form.category || []).join(' / '), 'category'], ['紧急程度', label(URGENCY, form.urgency), 'urgency'],
        ['所在区', a.district, 'address.district'], ['街道', a.street, 'address.street'], ['详细地址', a.text, 'address.text'],
        ['联系人', c.name, 'contact.name'], ['联系电话', c.phone, 'contact.phone'], ['身份证号', c.id_number, 'contact.id_number'],
      ];
      const dl = el('dl', { class: 'kv prefill' });
      for (const [k, v, key] of rows) {
        if (!v && !prov[key]) continue;
        dl.append(el('dt', { text: k }), el('dd', null, el('span', { text: v || '—' }), prov[key] ? el('span', { class: 'prov', text: provText(prov[key]) }) : null));
      }
      const create = el('button', { type: 'button', class: 'btn', id: 'copilot-create', text: '按建议新建工单' });
      const cerr = el('p', { class: 'error', role: 'alert', hidden: true });
      create.addEventListener('click', window.ZW.busy(create, cerr, createFromCopilot));
      body.appendChild(section('预填工单', dl, el('div', { class: 'actions' }, create), cerr));
    }

    // Knowledge suggestions.
    const k = r.knowledge || {};
    const hits = Array.isArray(k.hits) ? k.hits : [];
    const ol = el('ol', { class: 'hits' });
    for (const h of hits) {
      const c = h.chunk || h;
      const sec = Array.isArray(c.section) ? c.section.join(' › ') : c.section;
      const text = String(c.text || '');
      ol.appendChild(el('li', null,
        el('strong', { text: c.title || c.doc_id || '资料' }), sec ? el('span', { class: 'hint', text: ` · ${sec}` }) : null,
        el('p', { class: 'snippet', text: text.length > 160 ? text.slice(0, 160) + '…' : text })));
    }
    body.appendChild(section('知识推荐', hits.length ? ol : el('p', { class: 'hint', text: k.error ? `知识库暂不可用：${k.error}` : '暂无相关资料' })));

    // Similar tickets.
    const sim = Array.isArray(r.similar_tickets) ? r.similar_tickets : [];
    const ul = el('ul', { class: 'similar' });
    for (const x of sim) {
      ul.appendChild(el('li', null, el('button', {
        type: 'button', class: 'link-btn', text: `${x.number} ${x.summary || ''}`,
        on: { click: () => selectTicket(x.id).catch((e) => showError($('#call-error'), e)) },
      }), el('span', { class: 'hint', text: ` ${deptLabel(x.lead_dept)} · ${label(STATUS, x.status)} · 相似度 ${pct(x.similarity)}` })));
    }
    body.appendChild(section('相似工单', sim.length ? ul : el('p', { class: 'hint', text: '暂无相似工单' })));
  }

  async function runCopilot(force) {
    const transcript = $('#transcript').value.trim();
    const status = $('#copilot-status');
    if (!transcript) { status.textContent = '请先输入通话内容。'; return; }
    if (!force && transcript === state.lastSent) return;
    state.lastSent = transcript;
    const seq = ++state.seq;
    status.textContent = '正在分析通话内容…';
    try {
      // The chat model fills the form only on an explicit refresh (it takes seconds on CPU).
      const llm = Boolean(force) && $('#llm-form') && $('#llm-form').checked;
      if (llm) status.textContent = '正在由大模型填单…';
      const r = await api('POST', '/api/copilot', { transcript, channel: 'phone', llm_form: llm });
      if (seq !== state.seq) return;
      renderCopilot(r, transcript);
      const ms = r.timings_ms && r.timings_ms.total;
      status.textContent = `建议已更新${ms !== undefined ? `（耗时 ${Math.round(ms)} 毫秒）` : ''}`;
    } catch (e) {
      if (seq !== state.seq) return;
      state.lastSent = '';
      status.textContent = `获取建议失败：${e.message}`;
    }
  }

  async function createFromCopilot() {
    const cp = state.copilot;
    const f = cp && cp.result.form && cp.result.form.ticket;
    if (!f) throw new Error('暂无预填工单');
    const summary = (f.summary || '').trim() || cp.transcript.slice(0, 60);
    const body = {
      channel: 'phone', request_type: f.request_type || 'consult', summary, text: f.text || cp.transcript,
      category: Array.isArray(f.category) ? f.category : [], actor: actor(),
    };
    if (f.urgency) body.urgency = f.urgency;
    const a = {};
    for (const k of ['text', 'district', 'street']) if (f.address && f.address[k]) a[k] = f.address[k];
    if (Object.keys(a).length) body.address = a;
    const c = {};
    for (const k of ['name', 'phone', 'id_number']) if (f.contact && f.contact[k]) c[k] = f.contact[k];
    if (Object.keys(c).length) body.contact = c;
    const t = await api('POST', '/api/tickets', body);
    await Promise.all([selectTicket(t.id), loadQueue()]);
    notice(`已新建工单 ${t.number}`);
    $('#detail-title').scrollIntoView({ block: 'start' });
  }

  function setupCall() {
    const ta = $('#transcript');
    ta.addEventListener('input', () => {
      clearTimeout(state.timer);
      state.timer = setTimeout(() => runCopilot(false), 800);
    });
    $('#copilot-refresh').addEventListener('click', () => { clearTimeout(state.timer); runCopilot(true); });
    const file = $('#audio');
    const err = $('#call-error');
    file.addEventListener('change', async () => {
      const f = file.files && file.files[0];
      if (!f) return;
      showError(err, null);
      notice(`正在识别录音“${f.name}”…`);
      file.disabled = true;
      try {
        const r = await api('POST', '/api/asr/transcribe', undefined, { raw: f, contentType: f.type || 'application/octet-stream' });
        const text = (r && r.text ? String(r.text) : '').trim();
        if (!text) throw new Error('录音中未识别到语音');
        ta.value = ta.value.trim() ? `${ta.value.trim()}\n${text}` : text;
        notice('录音识别完成');
        runCopilot(true);
      } catch (e) {
        showError(err, `录音识别失败：${e.message}`);
      } finally {
        file.disabled = false;
        file.value = '';
      }
    });
  }

  // ---------- callback QA ----------

  const AGENT_RE = /^(坐席|客服|话务员|工作人员|接线员|agent)\s*[:：]\s*/i;
  const CITIZEN_RE = /^(市民|群众|来电人|居民|用户|citizen)\s*[:：]\s*/i;

  function parseTurns(text) {
    const turns = [];
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (!line) return;
      let m;
      if ((m = line.match(AGENT_RE))) turns.push({ speaker: 'agent', text: line.slice(m[0].length) });
      else if ((m = line.match(CITIZEN_RE))) turns.push({ speaker: 'citizen', text: line.slice(m[0].length) });
      else if (turns.length) turns[turns.length - 1].text += ` ${line}`;
      else throw new Error(`第${i + 1}行缺少说话人：请以“坐席：”或“市民：”开头`);
    });
    const out = turns.filter((t) => t.text.trim());
    if (!out.length) throw new Error('请先填写回访记录');
    return out;
  }

  function evidence(list) {
    return (list || []).map((e) => `“${e.text}”`).join('、');
  }

  function renderAssessment(a) {
    const box = clear($('#qa-result'));
    const dl = el('dl', { class: 'kv' });
    const row = (k, ...v) => dl.append(el('dt', { text: k }), el('dd', null, v));
    const solved = a.solved || {};
    const sv = solved.value === true ? '是' : solved.value === false ? '否' : '未知';
    row('问题是否解决', el('span', { id: 'qa-solved', text: sv }),
      solved.source && solved.source !== 'none' ? el('span', { class: 'hint', text: `（${label(SOURCES, solved.source)}）` }) : null,
      evidence(solved.evidence) ? el('span', { class: 'prov', text: `依据：${evidence(solved.evidence)}` }) : null);
    const sat = a.satisfaction || {};
    row('满意度', label(SATISFACTION, sat.value) || '未知',
      evidence(sat.evidence) ? el('span', { class: 'prov', text: `依据：${evidence(sat.evidence)}` }) : null);
    const comp = a.compliance || {};
    const checks = [['greeting', '开场问候'], ['identity', '身份核实'], ['restate', '复述诉求'], ['closing', '结束语']];
    const ul = el('ul', { class: 'checks' });
    for (const [k, name] of checks) {
      const ok = comp[k] && comp[k].passed;
      ul.appendChild(el('li', { class: ok ? 'pass' : 'fail' }, el('span', { 'aria-hidden': 'true', text: ok ? '✓ ' : '✗ ' }), `${name}：${ok ? '通过' : '未通过'}`));
    }
    row('服务规范', ul, el('span', { text: `得分 ${pct(comp.score)}` }));
    if (Array.isArray(a.sensitive) && a.sensitive.length) row('敏感内容', a.sensitive.join('、'));
    row('重办建议', el('strong', { class: a.reopen ? 'warn-text' : '', text: a.reopen ? `建议重办${a.reopen_reason ? '：' + a.reopen_reason : ''}` : '无需重办' }));
    if (a.model) row('模型评估', `${a.model.model}：解决程度 ${Number(a.model.accomplished).toFixed(1)}，满意程度 ${Number(a.model.satisfaction).toFixed(1)}（-2～2）`);
    box.appendChild(dl);
    if (a.reopen && state.current && !$('#act-reason').value.trim()) {
      $('#act-reason').value = a.reopen_reason || '回访不满意';
      box.appendChild(el('p', { class: 'hint', text: `已将重办原因填入当前工单 ${state.current.number} 的“原因”栏，可点击“重办”。` }));
    }
  }

  function setupQa() {
    const btn = $('#assess-btn');
    btn.addEventListener('click', window.ZW.busy(btn, $('#qa-error'), async () => {
      const turns = parseTurns($('#callback-turns').value);
      renderAssessment(await api('POST', '/api/callback/assess', { turns }));
    }));
  }

  // ---------- start ----------

  function setupQueue() {
    const err = $('#queue-error');
    const refresh = $('#queue-refresh');
    refresh.addEventListener('click', window.ZW.busy(refresh, err, loadQueue));
    const form = $('#goto-form');
    form.addEventListener('submit', window.ZW.busy(form.querySelector('button'), err, async () => {
      const id = window.ZW.ticketId($('#goto-id').value);
      if (!id) throw new Error('请输入工单ID或14位编号');
      try {
        await selectTicket(id);
      } catch (e) {
        throw e.status === 404 ? new Error('未找到该工单') : e;
      }
    }));
  }

  window.ZW.boot({
    roles: ['agent', 'supervisor', 'admin'],
    async init(me) {
      state.me = me;
      setupQueue();
      setupActions();
      setupCall();
      setupQa();
      await loadQueue();
    },
  });
})();
