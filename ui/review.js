() => {
  // The review page's keyboard and click-to-select (listed on the Review tab, ui/layout.py SHORTCUTS). Each key
  // presses the button or radio a reader would click, so the server sees the same events either way.
  if (window.__gcxrKeys) return;
  window.__gcxrKeys = true;
  const $ = (sel) => document.querySelector(sel);
  const radios = () => Array.from(document.querySelectorAll('#gcxr-sentence input[type=radio]'));
  const selectSentence = (value) => {
    const r = radios().find((x) => x.value === String(value));
    if (r) r.click();
  };
  const step = (delta) => {
    const all = radios();
    if (!all.length) return;
    const at = all.findIndex((x) => x.checked);
    const next = at < 0 ? (delta > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + delta));
    all[next].click();
  };
  const press = (...ids) => {  // the first of these buttons that is on screen (the tab in view has it)
    for (const id of ids) {
      const b = $(id);
      if (b && b.offsetParent !== null) { b.click(); return; }
    }
  };
  document.addEventListener('click', (ev) => {
    const li = ev.target.closest && ev.target.closest('#gcxr-report li[data-index]');
    if (li && !ev.target.closest('summary')) selectSentence(li.dataset.index);
  });
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (typing) {
      if (t.closest('#gcxr-text') && ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        t.dispatchEvent(new Event('input', {bubbles: true}));
        t.blur();
        setTimeout(() => press('#gcxr-edit'), 150);
      } else if (ev.key === 'Escape') {
        t.blur();
      }
      return;
    }
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const actions = {
      'j': () => step(1), 'ArrowDown': () => step(1), 'k': () => step(-1), 'ArrowUp': () => step(-1),
      'a': () => press('#gcxr-accept'), 'f': () => press('#gcxr-flag'), 'u': () => press('#gcxr-undo'),
      's': () => press('#gcxr-sign'), 'S': () => press('#gcxr-sign-confirm'), 'n': () => press('#gcxr-next', '#gcxr-next-todo'),
      'e': () => { const box = $('#gcxr-text textarea, #gcxr-text input'); if (box) box.focus(); },
    };
    const act = actions[ev.key];
    if (act) {
      ev.preventDefault();
      act();
    }
  });
}
