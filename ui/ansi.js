// A small renderer of SGR colour codes (ESC [ ... m) to DOM spans; other escapes are dropped.
const COLORS = ['#000', '#e5534b', '#57ab5a', '#c69026', '#539bf5', '#b083f0', '#39c5cf', '#d7dde4'];
const BRIGHT = ['#636e7b', '#ff938a', '#6bc46d', '#daaa3f', '#6cb6ff', '#dcbdfb', '#56d4dd', '#ffffff'];

export function ansiToNodes(text) {
  const out = [];
  let style = {};
  const re = /\x1b\[([0-9;]*)([A-Za-z])/g;
  let last = 0, m;
  const push = (s) => {
    if (!s) return;
    const span = document.createElement('span');
    span.textContent = s;
    if (style.color) span.style.color = style.color;
    if (style.bg) span.style.background = style.bg;
    if (style.bold) span.style.fontWeight = 'bold';
    out.push(span);
  };
  while ((m = re.exec(text))) {
    push(text.slice(last, m.index));
    last = re.lastIndex;
    if (m[2] !== 'm') continue;
    const codes = (m[1] || '0').split(';').map(Number);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) style = {};
      else if (c === 1) style.bold = true;
      else if (c === 22) style.bold = false;
      else if (c >= 30 && c <= 37) style.color = COLORS[c - 30];
      else if (c >= 90 && c <= 97) style.color = BRIGHT[c - 90];
      else if (c === 39) style.color = undefined;
      else if (c >= 40 && c <= 47) style.bg = COLORS[c - 40];
      else if (c === 49) style.bg = undefined;
      else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        const v = `rgb(${codes[i + 2]},${codes[i + 3]},${codes[i + 4]})`;
        if (c === 38) style.color = v; else style.bg = v;
        i += 4;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        const n = codes[i + 2];
        const v = n < 8 ? COLORS[n] : n < 16 ? BRIGHT[n - 8] : `hsl(${(n * 37) % 360},60%,60%)`;
        if (c === 38) style.color = v; else style.bg = v;
        i += 2;
      }
    }
  }
  push(text.slice(last).replace(/\x1b[^a-zA-Z]*[a-zA-Z]?/g, ''));
  return out;
}
