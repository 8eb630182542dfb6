const runs = JSON.parse(document.getElementById('runs').textContent);
const byId = Object.fromEntries(runs.map(r => [r.run_id, r]));
const f = v => typeof v === 'number' ? v.toFixed(4) : (v ?? '');
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]);
function figures(r) {
  const out = [['job', r.job], ['state', r.state], ['dataset version', r.dataset_version], ['trained by run', r.train_run],
    ['test accuracy', f(r.test_acc)], ['macro-F1', f(r.macro_f1)], ['validation accuracy', f(r.val_acc)],
    ['service-like accuracy', f(r.service_like)], ['ECE (test)', f(r.ece)], ['ECE (service-like)', f(r.ece_service_like)],
    ['gate', r.passed === null ? '' : r.passed ? 'PASS' : 'FAIL']];
  for (const [k, d] of Object.entries(r.slices || {})) for (const [v, s] of Object.entries(d)) out.push([`${k}: ${v}`, `${f(s.accuracy)} (n=${s.n})`]);
  if (r.vs_production) out.push(['vs production v' + r.vs_production.version, r.vs_production.text]);
  return out;
}
function compare(a, b) {
  const A = byId[a], B = byId[b], box = document.getElementById('compare');
  if (!A || !B) { box.innerHTML = ''; return; }
  const fa = figures(A), fb = Object.fromEntries(figures(B));
  const keys = [...new Set([...fa.map(x => x[0]), ...Object.keys(fb)])], fam = Object.fromEntries(fa);
  const rows = keys.map(k => `<tr><th>${esc(k)}</th><td>${esc(fam[k] ?? '')}</td><td>${esc(fb[k] ?? '')}</td></tr>`).join('');
  const frame = r => r.report ? `<iframe title="${esc(r.run_id)}" src="${esc(r.report)}"></iframe>` : '<p>no report</p>';
  box.innerHTML = `<h2>Side by side</h2><table><tr><th></th><th>${esc(a)}</th><th>${esc(b)}</th></tr>${rows}</table>
    <div class="side">${frame(A)}${frame(B)}</div>`;
  location.hash = 'compare=' + a + ',' + b;
}
const boxes = () => [...document.querySelectorAll('input.pick')];
document.addEventListener('change', e => {
  if (!e.target.classList.contains('pick')) return;
  const on = boxes().filter(x => x.checked);
  if (on.length > 2) { e.target.checked = false; return; }
  document.getElementById('go').disabled = on.length !== 2;
});
document.getElementById('go').onclick = () => { const [a, b] = boxes().filter(x => x.checked).map(x => x.value); compare(a, b); };
document.getElementById('job').onchange = e => {
  for (const tr of document.querySelectorAll('tr[data-job]')) tr.hidden = e.target.value !== '' && tr.dataset.job !== e.target.value;
};
const m = location.hash.match(/^#compare=([^,]+),(.+)$/);
if (m) {
  for (const x of boxes()) x.checked = x.value === m[1] || x.value === m[2];
  document.getElementById('go').disabled = boxes().filter(x => x.checked).length !== 2;
  compare(m[1], m[2]);
}
