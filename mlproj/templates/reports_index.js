const runs = JSON.parse(document.getElementById('runs').textContent);
// metric name -> 1 when higher is better, -1 when lower is (names with no direction are absent)
const directions = JSON.parse(document.getElementById('directions').textContent);
const byId = new Map(runs.map(r => [r.run_id, r]));
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]);
const label = k => k.replaceAll('_', ' ');
const fmt = v => v === undefined || v === null ? '' : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : String(v);
const FILTERS = [...document.querySelectorAll('select[data-filter]')].map(s => s.dataset.filter);

// The state of the page is the address after '#': compare=a,b&job=train&metric=val_acc&diff=1.
function readState() {
  const q = new URLSearchParams(location.hash.slice(1));
  const s = {sel: (q.get('compare') || '').split(',').filter(id => byId.has(id)), metric: q.get('metric') || '',
    diff: q.get('diff') === '1'};
  for (const k of FILTERS) s[k] = q.get(k) || '';
  return s;
}
function go(s) {  // a new history entry; the hashchange it fires draws it
  const q = new URLSearchParams();
  if (s.sel.length) q.set('compare', s.sel.join(','));
  for (const k of FILTERS) if (s[k]) q.set(k, s[k]);
  if (s.metric) q.set('metric', s.metric);
  if (s.diff) q.set('diff', '1');
  const h = q.toString().replaceAll('%2C', ',');
  if (h !== location.hash.slice(1)) location.hash = h;
}

function gate(r) { return r.passed === null || r.passed === undefined ? '' : r.passed ? 'PASS' : 'FAIL'; }
const union = (sel, field) => [...new Set(sel.flatMap(r => Object.keys(r[field] || {})))];

// One row of the comparison: the values, '≠' when they differ, the better one marked when the metric has a direction.
function row(name, values, dir, diffOnly) {
  const texts = values.map(fmt), differ = new Set(texts).size > 1;
  if (diffOnly && !differ) return '';
  const nums = values.filter(v => typeof v === 'number');
  const best = dir && differ && nums.length > 1 ? (dir > 0 ? Math.max(...nums) : Math.min(...nums)) : null;
  const cells = values.map((v, i) => {
    const top = typeof v === 'number' && v === best;
    const cls = [typeof v === 'number' ? 'num' : '', top ? 'best' : ''].filter(Boolean).join(' ');
    const shown = texts[i] === '' ? '<span title="not recorded">–</span>' : esc(texts[i]);
    return `<td${cls ? ` class="${cls}"` : ''}>${shown}${top ? ' <span title="the better value">★</span>' : ''}</td>`;
  }).join('');
  const mark = differ ? ' <span class="mark" title="the runs differ here">≠</span>' : '';
  return `<tr data-key="${esc(name)}"${differ ? ' class="diff"' : ''}><th scope="row">${esc(label(name))}${mark}</th>${cells}</tr>`;
}

function drawCompare(s) {
  const box = $('compare'), sel = s.sel.map(id => byId.get(id));
  if (sel.length < 2) { box.innerHTML = sel.length ? '<h2>Compare</h2><p>Tick at least one more run.</p>' : ''; return; }
  const n = sel.length + 1, sec = t => `<tr class="sec"><th colspan="${n}">${t}</th></tr>`;
  const info = [['job', r => r.job], ['state', r => r.state], ['started', r => (r.started || '').slice(0, 19).replace('T', ' ')],
    ['task', r => r.task], ['dataset_version', r => r.dataset_version], ['model', r => r.model], ['code_version', r => r.code],
    ['gate', gate], ['gate_failures', r => (r.failures || []).join('; ')]];
  const params = union(sel, 'parameters').sort(), metrics = union(sel, 'metrics');
  const body = sec('Run') + info.map(([k, get]) => row(k, sel.map(get), 0, s.diff)).join('')
    + sec(`Parameters (${params.length})`) + params.map(k => row(k, sel.map(r => r.parameters[k]), 0, s.diff)).join('')
    + sec(`Metrics (${metrics.length})`) + metrics.map(k => row(k, sel.map(r => r.metrics[k]), directions[k] || 0, s.diff)).join('');
  const head = sel.map(r => `<th scope="col">${r.report ? `<a href="${esc(r.report)}">${esc(r.run_id)}</a>` : esc(r.run_id)}</th>`).join('');
  box.innerHTML = `<h2>Compare ${sel.length} runs</h2>
    <p class="legend"><span class="mark">≠</span> the runs differ; ★ the better value (higher accuracy, F1, recall;
    lower loss, gap, ECE, seconds); – not recorded.</p>
    <div class="bar"><label class="inline"><input type="checkbox" id="diffonly"${s.diff ? ' checked' : ''}>
    only what differs</label></div>
    <div class="scroll"><table class="cmp"><thead><tr><th scope="col">run</th>${head}</tr></thead><tbody>${body}</tbody></table></div>
    <details id="frames"><summary>their reports side by side</summary><div class="side"></div></details>`;
  $('frames').addEventListener('toggle', e => {
    const side = e.target.querySelector('.side');
    if (e.target.open && !side.firstChild) side.innerHTML = sel.map(r => r.report
      ? `<iframe title="report of ${esc(r.run_id)}" src="${esc(r.report)}"></iframe>` : `<p>${esc(r.run_id)}: no report</p>`).join('');
  });
}

// The chosen metric of every run shown, in time order, as an SVG drawn here (no library, nothing from elsewhere).
function drawChart(s, shown) {
  const keys = [...new Set(shown.flatMap(r => Object.keys(r.metrics || {})))];
  const metric = keys.includes(s.metric) ? s.metric
    : ['service_like_accuracy', 'accuracy', 'val_acc'].find(k => keys.includes(k)) || keys[0] || '';
  $('metric').innerHTML = keys.map(k => `<option value="${esc(k)}"${k === metric ? ' selected' : ''}>${esc(label(k))}</option>`).join('');
  const pts = shown.filter(r => typeof (r.metrics || {})[metric] === 'number')
    .sort((a, b) => (a.started || '').localeCompare(b.started || ''));
  const chart = $('chart');
  if (!pts.length) { chart.innerHTML = '<p>No run shown has a metric to plot.</p>'; return; }
  // drawn at the box's own width, so that its text stays 12 px on a phone as on a desktop
  const W = Math.max(300, Math.min(760, chart.clientWidth || 640)), H = 240, L = 64, R = 24, T = 24, B = 40;
  const ys = pts.map(r => r.metrics[metric]);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (lo === hi) { lo -= Math.abs(lo) * 0.05 || 0.5; hi += Math.abs(hi) * 0.05 || 0.5; }
  const x = i => pts.length === 1 ? (L + W - R) / 2 : L + i * (W - L - R) / (pts.length - 1);
  const y = v => T + (hi - v) * (H - T - B) / (hi - lo);
  const grid = [lo, (lo + hi) / 2, hi].map(v => `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>`
    + `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`).join('');
  const day = r => (r.started || '').slice(0, 16).replace('T', ' ');
  const dots = pts.map((r, i) => `<circle data-run="${esc(r.run_id)}" class="${s.sel.includes(r.run_id) ? 'on' : ''}"`
    + ` cx="${x(i)}" cy="${y(r.metrics[metric])}" r="7"><title>${esc(r.run_id)}: ${esc(fmt(r.metrics[metric]))}</title></circle>`
    + (pts.length <= 12 ? `<text x="${x(i)}" y="${y(r.metrics[metric]) - 10}" text-anchor="middle">${esc(fmt(r.metrics[metric]))}</text>` : '')).join('');
  const dir = directions[metric] ? (directions[metric] > 0 ? ', higher is better' : ', lower is better') : '';
  chart.innerHTML = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(label(metric))} of ${pts.length} runs in time order${dir}">
    ${grid}<polyline points="${pts.map((r, i) => `${x(i)},${y(r.metrics[metric])}`).join(' ')}"/>${dots}
    <text x="${L}" y="${H - 12}">${esc(day(pts[0]))}</text>
    <text x="${W - R}" y="${H - 12}" text-anchor="end">${pts.length > 1 ? esc(day(pts[pts.length - 1])) : ''}</text></svg>
    <p class="legend">${esc(label(metric))} of ${pts.length} run${pts.length > 1 ? 's' : ''}${dir}.</p>`;
}

let drawn = null;
function draw() {
  if (location.hash === drawn) return;  // popstate and hashchange both come for one step of Back
  drawn = location.hash;
  const s = readState();
  for (const k of FILTERS) $('f-' + k).value = s[k];
  const shown = runs.filter(r => FILTERS.every(k => !s[k] || String(r[k] ?? '') === s[k]));
  const ids = new Set(shown.map(r => r.run_id));
  for (const tr of document.querySelectorAll('tr[data-run]')) {
    tr.hidden = !ids.has(tr.dataset.run);
    tr.classList.toggle('picked', s.sel.includes(tr.dataset.run));
  }
  for (const x of document.querySelectorAll('input.pick')) x.checked = s.sel.includes(x.value);
  $('count').textContent = `${shown.length} of ${runs.length} runs shown, newest first; ${s.sel.length} ticked.`;
  drawCompare(s);
  drawChart(s, shown);
}

const toggle = (s, id, on) => ({...s, sel: on ? [...s.sel.filter(x => x !== id), id] : s.sel.filter(x => x !== id)});
document.addEventListener('change', e => {
  const t = e.target, s = readState();
  if (t.classList.contains('pick')) go(toggle(s, t.value, t.checked));
  else if (t.dataset.filter) go({...s, [t.dataset.filter]: t.value});
  else if (t.id === 'metric') go({...s, metric: t.value});
  else if (t.id === 'diffonly') go({...s, diff: t.checked});
});
document.addEventListener('click', e => {
  const dot = e.target.closest('circle[data-run]');
  if (dot) { const s = readState(); go(toggle(s, dot.dataset.run, !s.sel.includes(dot.dataset.run))); }
  if (e.target.id === 'clear') go({...readState(), sel: []});
});
addEventListener('hashchange', draw);
addEventListener('popstate', draw);
draw();
