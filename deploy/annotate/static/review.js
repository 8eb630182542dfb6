// Adjudication by tap, click or key: a button gives its item that label; with a keyboard, Tab to an item (or to one of
// its buttons) and press the label's digit (up to ten labels). With more, "Another label…" holds a search box: type
// part of a label's name and press Enter.
(() => {
  const keyed = document.getElementById('queue').dataset.keyed === 'yes';
  async function decide(li, label) {
    const done = li.querySelector('.done');
    done.textContent = 'saving…';
    let r, data;
    try {
      r = await fetch(`/api/review/${li.dataset.item}`, {method: 'POST', headers: {'content-type': 'application/json'},
                                                         body: JSON.stringify({label})});
      data = await r.json().catch(() => ({}));
    } catch (err) { done.textContent = `Not saved: the server cannot be reached (${err.message})`; return; }
    if (!r.ok) { done.textContent = `Not saved: ${data.detail || r.statusText}`; return; }
    const name = li.querySelector(`.relabel button[data-label="${label}"]`).dataset.name;
    done.textContent = `Labelled ${name}: change it with another button.`;
    li.classList.add('settled');
    li.dataset.label = String(label);
    li.querySelectorAll('button[data-label]').forEach((b) => b.setAttribute('aria-pressed', String(Number(b.dataset.label) === label)));
    return true;
  }
  document.addEventListener('keydown', async (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || !keyed || e.target.matches('input')) return;
    const li = document.activeElement.closest && document.activeElement.closest('li[data-item]');
    if (!li || !/^[0-9]$/.test(e.key) || !li.querySelector(`.relabel button[data-label="${e.key}"]`)) return;
    e.preventDefault();
    if (await decide(li, Number(e.key))) (li.nextElementSibling || li).focus();
  });
  document.querySelectorAll('li[data-item]').forEach((li) => {
    li.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-label]');
      if (b) decide(li, Number(b.dataset.label));
      else if (!e.target.closest('summary, a, input')) li.focus();
    });
    const find = li.querySelector('input.find');
    if (!find) return;
    const buttons = [...li.querySelectorAll('.relabel button[data-label]')];
    find.addEventListener('input', () => {
      const q = find.value.trim().toLowerCase();
      for (const b of buttons) b.hidden = q !== '' && !b.dataset.name.toLowerCase().includes(q);
    });
    find.addEventListener('keydown', async (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      const q = find.value.trim().toLowerCase(), shown = buttons.filter((b) => !b.hidden);
      const b = q && (shown.find((x) => x.dataset.name.toLowerCase() === q) || shown.find((x) => x.dataset.name.toLowerCase().startsWith(q)) || shown[0]);
      if (b && await decide(li, Number(b.dataset.label))) (li.nextElementSibling || li).focus();
    });
  });
})();
