// Labelling by key or by tap: 0-9 answer (up to ten labels; beyond, type in the search box and press Enter), s skip,
// u undo, ? help (each also a button). The page holds the item shown and the next one (already leased and its image
// or row loaded); an answer shows the next item at once and saves in the background. An item is shown as the task
// shows it: an image, or a table of its features (rows of a tabular task, read from /api/items/{id}/row).
// Every request for a next item names the assignments the page holds and those it answered whose save has not
// been acknowledged yet: the server still sees those as leased to this person, and would otherwise hand one back.
(() => {
  const $ = (id) => document.getElementById(id);
  const rows = $('stage').dataset.show === 'row'; // the task's items are table rows, not images
  const find = $('find');                           // the searchable list (more than ten labels), or null
  let queue = [];            // assignments held: queue[0] is shown, queue[1] preloaded
  const unsaved = new Set(); // ids answered on the page whose save has not been acknowledged
  const fetched = new Map(); // item id -> promise of its row (rows only)
  let busy = Promise.resolve();
  const say = (t) => { $('status').textContent = t; };
  const known = () => [...queue.map((a) => a.id), ...unsaved];
  const isKnown = (a) => known().includes(a.id);
  const buttons = () => [...$('keys').querySelectorAll('button[data-label]')];
  const nameOf = (i) => { const b = $('keys').querySelector(`button[data-label="${i}"]`); return b ? b.dataset.name : String(i); };

  async function api(method, url, body) {
    const r = await fetch(url, {method, headers: {'content-type': 'application/json'}, body: body && JSON.stringify(body)});
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.detail || r.statusText);
    return data;
  }
  function showProgress(p) {
    if (p) $('progress').textContent = `you: ${p.mine} labels · project: ${p.items_done}/${p.items} items done (${p.labels}/${p.labels_needed} labels)`;
  }
  function rowOf(a) {
    if (!fetched.has(a.item_id)) {
      const p = api('GET', `/api/items/${a.item_id}/row`);
      p.catch(() => fetched.delete(a.item_id)); // a failed read is tried again when the item is shown
      fetched.set(a.item_id, p);
    }
    return fetched.get(a.item_id);
  }
  function drawRow(r) {
    const cell = (tag, text, cls) => { const c = document.createElement(tag); c.textContent = text; if (cls) c.className = cls; return c; };
    $('item').tBodies[0].replaceChildren(...r.features.map((f) => {
      const tr = document.createElement('tr'), name = cell('th', f.name);
      name.scope = 'row';
      tr.append(name, cell('td', String(f.value), 'num'), cell('td', f.unit));
      return tr;
    }));
  }
  function show() {
    const a = queue[0];
    if (!a) {
      if (rows) $('item').tBodies[0].replaceChildren(); else $('item').removeAttribute('src');
      $('item').dataset.assignment = ''; $('item').dataset.item = '';
      say(unsaved.size ? 'saving…' : 'Nothing left to label for you: thank you!'); return;
    }
    $('item').dataset.assignment = a.id;
    say(a.suggestion != null ? `model suggests ${nameOf(a.suggestion)}` : 'your answer?');
    if (rows) {
      rowOf(a).then((r) => {
        if ($('item').dataset.assignment !== String(a.id)) return; // another item is shown by now
        drawRow(r); $('item').dataset.item = a.item_id;
      }).catch((e) => say(`cannot show item ${a.item_id}: ${e.message}`));
      if (queue[1]) rowOf(queue[1]).catch(() => {});
    } else {
      $('item').src = a.image; $('item').dataset.item = a.item_id;
      if (queue[1]) $('preload').src = queue[1].image;
    }
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
    if (find) { find.value = ''; narrow(); }
    show();                                              // the next item is on screen before the save returns
    act(async () => {
      let r;
      try { r = await api('POST', `/api/assignments/${a.id}`, {label, item_id: a.item_id, exclude: known().filter((id) => id !== a.id)}); }
      finally { unsaved.delete(a.id); fetched.delete(a.item_id); }  // saved, or refused (then the server may hand it back: rightly)
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
  // the searchable list: the labels whose name holds what was typed (case ignored); Enter takes the best one shown
  function narrow() {
    const q = find.value.trim().toLowerCase();
    for (const b of buttons()) b.hidden = q !== '' && !b.dataset.name.toLowerCase().includes(q);
  }
  function best() {
    const q = find.value.trim().toLowerCase();
    const shown = buttons().filter((b) => !b.hidden);
    return shown.find((b) => b.dataset.name.toLowerCase() === q) || shown.find((b) => b.dataset.name.toLowerCase().startsWith(q)) || shown[0];
  }
  if (find) {
    find.addEventListener('input', narrow);
    find.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        const b = best();
        if (!b || !find.value.trim()) { say(find.value.trim() ? `no label matches "${find.value.trim()}"` : 'type part of a label first'); return; }
        answer(Number(b.dataset.label));
      } else if (e.key === 'Escape') { find.value = ''; narrow(); find.blur(); }
    });
  }
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || (find && e.target === find)) return;
    const n = buttons().length;
    if (!find && /^[0-9]$/.test(e.key) && Number(e.key) < n) answer(Number(e.key));
    else if (find && e.key === '/') find.focus();
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
  act(async () => { showProgress(await api('GET', '/api/progress')); await fill(); show(); if (find) find.focus(); });
})();
