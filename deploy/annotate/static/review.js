// Adjudication by tap, click or key: a button gives its item that label; with a keyboard, Tab to an item (or to one of
// its buttons) and press the label's digit.
(() => {
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
    const name = li.querySelector(`.relabel button[data-label="${label}"]`).textContent.replace(/^\s*\d+\s*/, '');
    done.textContent = `Labelled ${name}: change it with another button.`;
    li.classList.add('settled');
    li.dataset.label = String(label);
    li.querySelectorAll('button[data-label]').forEach((b) => b.setAttribute('aria-pressed', String(Number(b.dataset.label) === label)));
    return true;
  }
  document.addEventListener('keydown', async (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const li = document.activeElement.closest && document.activeElement.closest('li[data-item]');
    if (!li || !/^[0-9]$/.test(e.key) || !li.querySelector(`.relabel button[data-label="${e.key}"]`)) return;
    e.preventDefault();
    if (await decide(li, Number(e.key))) (li.nextElementSibling || li).focus();
  });
  document.querySelectorAll('li[data-item]').forEach((li) => li.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-label]');
    if (b) decide(li, Number(b.dataset.label));
    else if (!e.target.closest('summary, a')) li.focus();
  }));
})();
