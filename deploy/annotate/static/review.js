// Adjudication: focus an item (click or Tab), press its label 0-9.
(() => {
  document.addEventListener('keydown', async (e) => {
    const li = document.activeElement.closest && document.activeElement.closest('li[data-item]');
    if (!li || !/^[0-9]$/.test(e.key)) return;
    e.preventDefault();
    const r = await fetch(`/api/review/${li.dataset.item}`, {method: 'POST', headers: {'content-type': 'application/json'},
                                                            body: JSON.stringify({label: Number(e.key)})});
    const data = await r.json();
    li.querySelector('.done').textContent = r.ok ? ` → ${e.key}` : ` ${data.detail}`;
    if (r.ok) { li.classList.add('settled'); (li.nextElementSibling || li).focus(); }
  });
  document.querySelectorAll('li[data-item]').forEach((li) => li.addEventListener('click', () => li.focus()));
})();
