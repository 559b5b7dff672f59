// zhengwu 政务 — supervisor dashboard: KPI tiles, server-rendered SVG charts, overdue list,
// hot spots, CSV export and the audit log.
'use strict';

(function () {
  const { el, clear, $, api, showError, busy, pct, fmtTime, label, STATUS, ROLES } = window.ZW;

  const RATES = [
    ['coverage', 'auto_dispatch_coverage'], ['accuracy', 'auto_dispatch_accuracy'], ['suggestion', 'suggestion_accuracy'],
    ['redispatch', 'redispatch_rate'], ['sla', 'sla_on_time'], ['satisfaction', 'callback_satisfaction'], ['reopen', 'reopen_rate'],
  ];
  const ACTIONS = {
    login: '登录', 'login.failed': '登录失败', logout: '退出', 'ticket.create': '新建工单', 'ticket.transition': '状态变更',
    'dispatch.decision': '派单决策', 'pii.view': '查看个人信息',
  };

  // Filters → query string (dates as RFC 3339 UTC midnights; the end date is inclusive).
  function filterQuery() {
    const p = new URLSearchParams();
    const from = $('#from').value;
    const to = $('#to').value;
    if (from && to && from > to) throw new Error('开始日期不能晚于结束日期');
    if (from) p.set('created_from', `${from}T00:00:00Z`);
    if (to) {
      const d = new Date(`${to}T00:00:00Z`);
      d.setUTCDate(d.getUTCDate() + 1);
      p.set('created_to', `${d.toISOString().slice(0, 10)}T00:00:00Z`);
    }
    const district = $('#district').value.trim();
    const dept = $('#lead-dept').value.trim();
    if (district) p.set('district', district);
    if (dept) p.set('lead_dept', dept);
    return p;
  }

  function rateText(r) {
    if (!r || r.rate === null || r.rate === undefined) return ['—', r ? `${r.numerator || 0}/${r.denominator || 0}` : ''];
    return [pct(r.rate, 1), `${r.numerator}/${r.denominator}`];
  }

  function minutes(m) {
    if (m === null || m === undefined) return '—';
    const n = Number(m);
    if (n >= 1440) return `${(n / 1440).toFixed(1)}天`;
    if (n >= 60) return `${(n / 60).toFixed(1)}小时`;
    return `${Math.round(n)}分钟`;
  }

  function renderMetrics(m, truncated) {
    $('#kpi-tickets').textContent = String(m.tickets ?? 0);
    $('#kpi-dispatched').textContent = String(m.dispatched ?? 0);
    for (const [id, key] of RATES) {
      const [v, d] = rateText(m[key]);
      $(`#kpi-${id}`).textContent = v;
      $(`#kpi-${id}-d`).textContent = d;
    }
    const med = m.handling_minutes_median;
    const p90 = m.handling_minutes_p90;
    $('#kpi-handling').textContent = med === null && p90 === null ? '—' : `${minutes(med)} / ${minutes(p90)}`;
    const chips = clear($('#by-status'));
    for (const [k, v] of Object.entries(m.by_status || {})) {
      chips.appendChild(el('span', { class: `badge status-${k}`, text: `${label(STATUS, k)} ${v}` }));
    }
    const tb = clear($('#overdue'));
    for (const o of m.overdue || []) {
      tb.appendChild(el('tr', null,
        el('td', { text: o.number }), el('td', { text: label(STATUS, o.status) }),
        el('td', { text: o.lead_dept || '未派发' }), el('td', { text: fmtTime(o.reply_by) })));
    }
    if (!(m.overdue || []).length) tb.appendChild(el('tr', null, el('td', { colspan: '4', class: 'hint', text: '暂无超期工单' })));
    const wb = clear($('#dispatch-weeks'));
    const weeks = Object.entries(m.dispatch_by_week || {}).reverse();
    for (const [monday, w] of weeks) {
      const [acc, accD] = rateText(w.auto_accuracy);
      const [cor, corD] = rateText(w.corrected);
      wb.appendChild(el('tr', null,
        el('td', { text: monday }), el('td', { text: String(w.dispatched ?? 0) }), el('td', { text: String(w.auto ?? 0) }),
        el('td', { text: `${acc} (${accD})` }), el('td', { text: `${cor} (${corD})` })));
    }
    if (!weeks.length) wb.appendChild(el('tr', null, el('td', { colspan: '5', class: 'hint', text: '暂无派单记录' })));
    $('#metrics-status').textContent = truncated ? '数据量较大，部分统计已截断。' : `统计已更新（${fmtTime(new Date().toISOString())}）`;
  }

  function refreshCharts(q) {
    const t = Date.now();
    for (const img of document.querySelectorAll('img.chart')) {
      const p = new URLSearchParams(q);
      p.set('dim', img.dataset.dim);
      p.set('t', String(t));
      img.src = `/api/supervisor/chart.svg?${p.toString()}`;
    }
  }

  async function query() {
    const q = filterQuery();
    const qs = q.toString();
    $('#csv-link').href = `/api/supervisor/metrics.csv${qs ? '?' + qs : ''}`;
    refreshCharts(q);
    $('#metrics-status').textContent = '正在统计…';
    try {
      const r = await api('GET', `/api/supervisor/metrics${qs ? '?' + qs : ''}`);
      renderMetrics((r && r.metrics) || {}, r && r.truncated);
    } catch (e) {
      $('#metrics-status').textContent = '';
      throw e;
    }
  }

  async function loadHotspots() {
    const r = await api('GET', '/api/hotspots?days=30');
    const list = clear($('#hotspots'));
    const clusters = (r && r.clusters) || [];
    const n = r && r.tickets !== undefined ? r.tickets : 0;
    // Over the server's bound only the newest tickets are clustered: say so, never imply all.
    const scope = r && r.sampled ? `（工单较多，仅分析最新的 ${n} 件）` : '';
    $('#hot-count').textContent = `近30天共 ${n} 件工单${scope}，发现 ${clusters.length} 个热点。`;
    for (const x of clusters) {
      const c = x.cluster || {};
      const where = (c.districts || []).join('、');
      list.appendChild(el('li', { class: c.burst ? 'burst' : '' },
        c.burst ? el('span', { class: 'badge badge-danger', text: '突增' }) : null,
        el('strong', { text: ` ${c.size || 0} 件 ` }),
        el('span', { text: x.summary || '（无摘要）' }),
        el('span', { class: 'hint', text: ` ${where ? '· ' + where + ' ' : ''}· ${fmtTime(c.first)} 至 ${fmtTime(c.last)}${c.burst_z !== undefined && c.burst_z !== null ? ` · 突增指数 ${Number(c.burst_z).toFixed(1)}` : ''}` })));
    }
  }

  async function loadAudit() {
    const r = await api('GET', '/api/audit?limit=50');
    const tb = clear($('#audit'));
    const entries = (r && r.entries) || [];
    for (const a of entries) {
      const d = a.detail === undefined || a.detail === null ? '' : typeof a.detail === 'string' ? a.detail : JSON.stringify(a.detail);
      const detail = [a.doc ? `文档 ${a.doc}` : '', d].filter(Boolean).join('；');
      tb.appendChild(el('tr', null,
        el('td', { text: fmtTime(a.at) }), el('td', { text: a.user || '' }), el('td', { text: label(ROLES, a.role) }),
        el('td', { text: label(ACTIONS, a.action) }), el('td', { text: a.ticket ?? '' }),
        el('td', { class: 'wrap', text: detail }), el('td', { text: a.model || '' })));
    }
    if (!entries.length) tb.appendChild(el('tr', null, el('td', { colspan: '7', class: 'hint', text: '暂无审计记录' })));
  }

  function setupCharts() {
    for (const img of document.querySelectorAll('img.chart')) {
      const cap = img.parentElement.querySelector('figcaption');
      const base = cap.textContent;
      img.addEventListener('error', () => { if (img.getAttribute('src')) cap.textContent = `${base}（图表加载失败）`; });
      img.addEventListener('load', () => { cap.textContent = base; });
    }
  }

  window.ZW.boot({
    roles: ['supervisor', 'admin'],
    async init() {
      setupCharts();
      const form = $('#filters');
      const ferr = $('#filter-error');
      form.addEventListener('submit', busy($('#query-btn'), ferr, query));
      const hot = $('#hot-refresh');
      hot.addEventListener('click', busy(hot, $('#hot-error'), loadHotspots));
      const aud = $('#audit-refresh');
      aud.addEventListener('click', busy(aud, $('#audit-error'), loadAudit));
      await Promise.all([
        query().catch((e) => showError(ferr, e)),
        loadHotspots().catch((e) => showError($('#hot-error'), e)),
        loadAudit().catch((e) => showError($('#audit-error'), e)),
      ]);
    },
  });
})();
