// Labelling by key or by tap: 0-9 answer, s skip, u undo, ? help (each also a button). The page holds the item shown and the next one
// (already leased and its image loaded); an answer shows the next item at once and saves in the background.
// Every request for a next item names the assignments the page holds and those it answered whose save has not
// been acknowledged yet: the server still sees those as leased to this person, and would otherwise hand one back.
(() => {
  const $ = (id) => document.getElementById(id);
  let queue = [];            // assignments held: queue[0] is shown, queue[1] preloaded
  const unsaved = new Set(); // ids answered on the page whose save has not been acknowledged
  let busy = Promise.resolve();
  const say = (t) => { $('status').textContent = t; };
  const known = () => [...queue.map((a) => a.id), ...unsaved];
  const isKnown = (a) => known().includes(a.id);

  async function api(method, url, body) {
    const r = await fetch(url, {method, headers: {'content-type': 'application/json'}, body: body && JSON.stringify(body)});
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.detail || r.statusText);
    return data;
  }
  function showProgress(p) {
    if (p) $('progress').textContent = `you: ${p.mine} labels · project: ${p.items_done}/${p.items} items done (${p.labels}/${p.labels_needed} labels)`;
  }
  function show() {
    const a = queue[0];
    if (!a) {
      $('item').removeAttribute('src'); $('item').dataset.assignment = '';
      say(unsaved.size ? 'saving…' : 'Nothing left to label for you: thank you!'); return;
    }
    $('item').src = a.image; $('item').dataset.assignment = a.id;
    say(a.suggestion != null ? `model suggests ${a.suggestion}` : 'your answer?');
    if (queue[1]) $('preload').src = queue[1].image;
  }
  async function fill() {
    while (queue.length < 2) {
      const r = await api('GET', `/api/next?exclude=${known().join(',')}`);
      if (!r.next || isKnown(r.next)) break;
      queue.push(r.next);
    }
  }
  function act(fn) { busy = busy.then(fn).catch((e) => say(e.message)); return busy; }

  function answer(label) {
    const a = queue.shift();
    if (!a) return;
    unsaved.add(a.id);
    show();                                              // the next item is on screen before the save returns
    act(async () => {
      let r;
      try { r = await api('POST', `/api/assignments/${a.id}`, {label, item_id: a.item_id, exclude: known().filter((id) => id !== a.id)}); }
      finally { unsaved.delete(a.id); }                  // saved, or refused (then the server may hand it back: rightly)
      showProgress(r.progress);
      if (r.next && !isKnown(r.next)) queue.push(r.next);
      await fill(); if (!queue.length || $('item').dataset.assignment !== String(queue[0].id)) show();
      $('item').dataset.saved = (Number($('item').dataset.saved || 0) + 1);
    });
  }
  function undo() {
    act(async () => {
      const r = await api('POST', '/api/undo');
      if (!r.undone) { say('nothing to undo'); return; }
      queue = [r.undone.assignment, ...queue.filter((x) => x.id !== r.undone.assignment.id)];
      showProgress(r.undone.progress); show(); say('undone: answer again');
    });
  }
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const n = $('keys').querySelectorAll('button[data-label]').length;
    if (/^[0-9]$/.test(e.key) && Number(e.key) < n) answer(Number(e.key));
    else if (e.key === 's') answer(null);
    else if (e.key === 'u') undo();
    else if (e.key === '?') help();
    else return;
    e.preventDefault();
  });
  function help() {
    $('help').hidden = !$('help').hidden;
    document.querySelector('[data-action=help]').setAttribute('aria-expanded', String(!$('help').hidden));
  }
  ['keys', 'actions'].forEach((id) => $(id).addEventListener('click', (e) => {  // a tap or a click does what the key does
    const b = e.target.closest('button'); if (!b) return;
    if (b.dataset.label) answer(Number(b.dataset.label));
    else if (b.dataset.action === 'skip') answer(null);
    else if (b.dataset.action === 'undo') undo();
    else help();
  }));
  act(async () => { showProgress(await api('GET', '/api/progress')); await fill(); show(); });
})();
