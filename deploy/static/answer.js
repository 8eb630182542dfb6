// The answer panel both demo pages share (demo.js draws, rows.js fills a form): the class name, or "can't read that"
// below [serving] min_confidence, the confidence, and a bar a class. Loaded before the page's own script.
'use strict';
window.answerPanel = function () {
  const answer = document.getElementById('answer');
  const confidence = document.getElementById('confidence');
  const bars = Array.from(document.querySelectorAll('#bars li'));
  const main = document.querySelector('main');
  const classes = JSON.parse(main.dataset.classes || '[]'); // the task's class names, index = label
  const minConfidence = Number(main.dataset.minConfidence || 0); // [serving] min_confidence

  function show(probabilities, label) {
    const sure = probabilities[label] >= minConfidence; // below [serving] min_confidence: "can't read that"
    answer.textContent = sure ? (classes[label] ?? String(label)) : "can't read that";
    answer.dataset.unsure = String(!sure);
    confidence.textContent = sure ? `(${Math.round(100 * probabilities[label])}% sure)`
      : `(at best ${classes[label] ?? label}, ${Math.round(100 * probabilities[label])}% sure)`;
    bars.forEach((li, d) => {
      const p = probabilities[d];
      li.querySelector('.fill').style.width = `${(100 * p).toFixed(1)}%`;
      li.querySelector('.pct').textContent = `${Math.round(100 * p)}%`;
      li.classList.toggle('top', d === label);
    });
  }

  function reset() {
    answer.textContent = '?';
    delete answer.dataset.unsure;
    confidence.textContent = '';
    bars.forEach(li => { li.querySelector('.fill').style.width = '0'; li.querySelector('.pct').textContent = '0%'; li.classList.remove('top'); });
  }

  return { show, reset, classes };
};
