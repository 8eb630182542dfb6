// The demo page of a row task: a form with a number a feature (prefilled from a test row), sent to POST /predict as a
// JSON row whenever it changes (debounced); the answer is the class name, or "can't read that" below [serving]
// min_confidence, and a bar per class; "it was a _" posts the row and its class to POST /corrections as JSON.
'use strict';
(function () {
  const WAIT_MS = 200;
  const form = document.getElementById('row');
  const answer = document.getElementById('answer');
  const status = document.getElementById('status');
  const { show, reset, classes } = window.answerPanel(); // answer.js: the class name, its confidence, a bar a class
  const keys = Array.from(document.querySelectorAll('#correct button[data-label]'));
  const inputs = Array.from(form.querySelectorAll('input[name]'));
  let version = 0;     // bumped at every change of the form; an answer is shown only for the newest one
  let answered = null; // the model's answer for the row as it is now
  let timer = null;

  function row() {
    const out = {};
    inputs.forEach(i => { if (i.value.trim() !== '') out[i.name] = Number(i.value); });
    return out;
  }



  async function detail(r) {
    try { return (await r.json()).detail || r.statusText; } catch (_) { return r.statusText; }
  }

  async function read() {
    const v = version;
    try {
      const r = await fetch('predict', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(row()) });
      if (v !== version) return; // changed since: a newer reading is on its way
      if (!r.ok) {
        status.textContent = `The model cannot read it: ${await detail(r)}`;
        reset();
      } else {
        const p = (await r.json()).predictions[0];
        if (v !== version) return;
        show(p.probabilities, p.label);
        answered = p.label;
        status.textContent = '';
      }
    } catch (err) {
      if (v === version) status.textContent = `No answer from the server: ${err.message}`;
    }
    if (v === version) answer.dataset.version = String(v);
  }

  function changed() {
    version += 1;
    form.dataset.version = String(version);
    answered = null;
    keys.forEach(k => { k.disabled = false; k.classList.remove('sent'); });
    clearTimeout(timer);
    timer = setTimeout(read, WAIT_MS);
  }

  async function correct(label, button) {
    const v = version;
    status.textContent = 'Saving…';
    try {
      const r = await fetch('corrections', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ row: row(), label }) });
      if (!r.ok) { status.textContent = `Not saved: ${await detail(r)}`; return; }
      const body = await r.json();
      status.textContent = `Thank you: kept as ${classes[label]}` + (answered !== null && answered !== label ? ` (the model read ${classes[answered]})` : '') + '.';
      status.dataset.saved = body.sha256;
      if (v === version) button.classList.add('sent');
    } catch (err) { status.textContent = `Not saved: ${err.message}`; }
  }

  form.addEventListener('input', changed);
  form.addEventListener('submit', e => { e.preventDefault(); clearTimeout(timer); version += 1; form.dataset.version = String(version); read(); });
  keys.forEach(k => k.addEventListener('click', () => correct(Number(k.dataset.label), k)));
  changed(); // read the prefilled row at once
})();
