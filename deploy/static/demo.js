// The demo page: draw on the canvas (Pointer Events: mouse, touch and pen alike), send the drawing to POST /predict
// as a PNG (debounced while drawing), show the answer and a bar per class; "it was a _" posts it to POST /corrections.
'use strict';
(function () {
  const WAIT_MS = 150; // debounce: read the drawing this long after the pen last moved...
  const MAX_WAIT_MS = 500; // ...or this long after the last reading, so that a long stroke is read while it is drawn
  const pad = document.getElementById('pad');
  const ctx = pad.getContext('2d');
  const answer = document.getElementById('answer');
  const status = document.getElementById('status');
  const { show, reset, classes } = window.answerPanel(); // answer.js: the class name, its confidence, a bar a class
  const keys = Array.from(document.querySelectorAll('#correct button[data-label]'));
  let version = 0;   // bumped at every change of the drawing; an answer is shown only for the newest one
  let inked = false; // something is drawn
  let timer = null;
  let last = null;   // the previous point of the stroke being drawn
  let answered = null; // the model's answer for the drawing as it is now
  let lastRead = 0;    // when the newest reading was asked for (performance.now())
  let shown = 0;       // the version of the drawing whose reading is on the page

  function blank() {
    ctx.fillStyle = '#fff'; // an opaque white page: the PNG is dark ink on light, as a scan would be
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = '#000';
    ctx.fillStyle = '#000';
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = Math.round(pad.width * 0.07);
  }

  function changed() {
    version += 1;
    pad.dataset.version = String(version);
    answered = null;
    keys.forEach(k => { k.disabled = !inked; k.classList.remove('sent'); });
    clearTimeout(timer);
    if (!inked) return;
    const now = performance.now();
    if (lastRead === 0) lastRead = now; // a new drawing: its first reading may wait the full MAX_WAIT_MS
    timer = setTimeout(read, now - lastRead >= MAX_WAIT_MS ? 0 : WAIT_MS);
  }

  function point(e) {
    const r = pad.getBoundingClientRect(); // the canvas is scaled by CSS: map the pointer back to its pixels
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p[0], p[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function lineTo(p) {
    ctx.beginPath();
    ctx.moveTo(last[0], last[1]);
    ctx.lineTo(p[0], p[1]);
    ctx.stroke();
    last = p;
  }

  pad.addEventListener('pointerdown', e => {
    if (e.button !== undefined && e.button > 0) return; // the main button, a finger or a pen tip
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    last = point(e);
    dot(last);
    inked = true;
    changed();
  });
  pad.addEventListener('pointermove', e => {
    if (!last || !pad.hasPointerCapture(e.pointerId)) return;
    e.preventDefault();
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e]; // every sample of a fast pen, not one a frame
    (events.length ? events : [e]).forEach(c => lineTo(point(c)));
    changed();
  });
  const end = e => {
    if (!last) return;
    if (pad.hasPointerCapture(e.pointerId)) pad.releasePointerCapture(e.pointerId);
    last = null;
  };
  pad.addEventListener('pointerup', end);
  pad.addEventListener('pointercancel', end);



  function png() {
    return new Promise((ok, fail) => pad.toBlob(b => (b ? ok(b) : fail(new Error('the canvas gave no image'))), 'image/png'));
  }

  // What a refusal means to the person drawing; the server's own words (which name the operator's settings) stay on
  // the status line's tooltip.
  const PLAIN = {
    403: () => 'this server does not keep corrections',
    413: () => 'the drawing is too large to send',
    429: r => `too many in a short time from this address: try again in ${r.headers.get('Retry-After') || 'a few'} s`,
    503: () => 'no model is being served right now',
  };
  async function detail(r) {
    let said = r.statusText;
    try { said = (await r.json()).detail || said; } catch (_) { /* not JSON: the status text */ }
    status.title = said;
    return PLAIN[r.status] ? PLAIN[r.status](r) : said;
  }

  async function read() {
    const v = version;
    lastRead = performance.now();
    try {
      const form = new FormData();
      form.append('files', await png(), 'drawing.png');
      const r = await fetch('predict', { method: 'POST', body: form });
      if (v <= shown) return; // a newer reading (or a Clear) came first
      if (!r.ok) {
        if (v !== version) return; // drawn on since: a newer reading is on its way
        status.textContent = `The model cannot read it: ${await detail(r)}.`;
        reset();
      } else {
        const p = (await r.json()).predictions[0];
        if (v <= shown) return;
        show(p.probabilities, p.label); // a reading of the drawing a moment ago is shown while the pen moves on
        if (v === version) answered = p.label;
        status.textContent = '';
        status.title = '';
      }
      shown = v;
    } catch (err) {
      if (v === version) status.textContent = `No answer from the server: ${err.message}`;
    }
    if (v === version) answer.dataset.version = String(v);
  }

  async function correct(label, button) {
    if (!inked) return;
    const v = version;
    status.textContent = 'Saving…';
    status.title = '';
    try {
      const form = new FormData();
      form.append('file', await png(), 'drawing.png');
      form.append('label', String(label));
      const r = await fetch('corrections', { method: 'POST', body: form });
      if (!r.ok) { status.textContent = `Not saved: ${await detail(r)}.`; return; }
      const body = await r.json();
      const name = l => classes[l] ?? String(l);
      status.textContent = `Thank you: kept as a ${name(label)}` + (answered !== null && answered !== label ? ` (the model read ${name(answered)})` : '') + '.';
      status.dataset.saved = body.sha256;
      if (v === version) button.classList.add('sent');
    } catch (err) { status.textContent = `Not saved: ${err.message}`; }
  }

  keys.forEach(k => k.addEventListener('click', () => correct(Number(k.dataset.label), k)));

  document.getElementById('clear').addEventListener('click', () => {
    blank();
    inked = false;
    lastRead = 0;
    changed();
    shown = version; // readings of the drawing just cleared are not shown
    reset();
    status.textContent = '';
    answer.dataset.version = String(version);
  });

  blank();
})();
