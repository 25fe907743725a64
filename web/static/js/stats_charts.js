// Small SVG charts for the statistics page (stats.js): stacked columns and horizontal bars.
//
// Our own module rather than a chart library: three chart shapes are all the page needs,
// school networks are closed (nothing from a CDN), and SVG drawn here obeys the page's CSP
// (colours come from classes in app.css, never from style attributes). Each chart is a
// <figure>: a caption, the SVG (hidden from screen readers, which read the table instead),
// a legend, and a data table with the same numbers, visually hidden beside the picture.
// Every rectangle also carries a <title>, so a pointer shows its value.

// The SVG namespace, as the HTML parser gives it to an <svg> (pages spell out no URL at
// all: tests/test_web_static.py proves they fetch nothing from elsewhere).
const SVG = (() => {
  const template = document.createElement('template');
  template.innerHTML = '<svg></svg>';
  return template.content.firstElementChild.namespaceURI;
})();

function svgEl(tag, attributes = {}, text = '') {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  if (text) node.textContent = text;
  return node;
}

function htmlEl(tag, attributes = {}, text = '') {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  if (text) node.textContent = text;
  return node;
}

/** A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function dataTable(caption, headers, rows) {
  const table = htmlEl('table', { class: 'visually-hidden chart-data' });
  table.append(htmlEl('caption', {}, caption));
  const head = htmlEl('tr');
  headers.forEach((h, i) => head.append(htmlEl('th', { scope: i === 0 ? 'row' : 'col' }, h)));
  const thead = htmlEl('thead');
  thead.append(head);
  const tbody = htmlEl('tbody');
  for (const row of rows) {
    const tr = htmlEl('tr');
    row.forEach((cell, i) => tr.append(htmlEl(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : {}, cell)));
    tbody.append(tr);
  }
  table.append(thead, tbody);
  return table;
}

function legend(series) {
  const list = htmlEl('ul', { class: 'chart-legend', 'aria-hidden': 'true' });
  for (const s of series) {
    const item = htmlEl('li');
    item.append(htmlEl('span', { class: `swatch ${s.className}` }), document.createTextNode(s.label));
    list.append(item);
  }
  return list;
}

function figure(name, title, svg, extras) {
  const node = htmlEl('figure', { class: 'chart', 'data-chart': name });
  node.append(htmlEl('figcaption', {}, title), svg, ...extras);
  return node;
}

/**
 * Stacked columns, one per category (a week), one segment per series (held, partial, …).
 *
 * @param {object} o
 * @param {string} o.name        data-chart, for tests
 * @param {string} o.title       caption, also the data table's caption
 * @param {string[]} o.categories  column labels under the axis (short)
 * @param {string[]} [o.fullLabels] row headers of the data table (defaults to categories)
 * @param {{key, label, className, values: number[]}[]} o.series  bottom to top
 * @param {string} o.totalLabel  the data table's last column: the column's total
 * @param {(n:number)=>string} o.format
 */
export function stackedColumns(o) {
  // About the width it is drawn at on a laptop, so its text stays at its CSS size.
  const width = Math.max(520, 56 + o.categories.length * 40);
  const height = 220;
  const left = 40;
  const bottom = 26;
  const top = 10;
  const plot = height - bottom - top;
  const totals = o.categories.map((_, i) => o.series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart-svg', 'aria-hidden': 'true', focusable: 'false' });
  for (const tick of [0, max / 2, max]) {
    const y = top + plot - (tick / max) * plot;
    svg.append(svgEl('line', { x1: left, x2: width - 4, y1: y, y2: y, class: 'chart-grid' }));
    svg.append(svgEl('text', { x: left - 6, y: y + 4, class: 'chart-tick', 'text-anchor': 'end' }, o.format(tick)));
  }
  const step = (width - left - 8) / Math.max(1, o.categories.length);
  const barWidth = Math.min(28, step * 0.7);
  o.categories.forEach((label, i) => {
    const x = left + step * i + (step - barWidth) / 2;
    let y = top + plot;
    for (const s of o.series) {
      const value = s.values[i] || 0;
      if (!value) continue;
      const h = (value / max) * plot;
      y -= h;
      const rect = svgEl('rect', { x, y, width: barWidth, height: h, class: `chart-bar ${s.className}`, 'data-series': s.key, 'data-index': i });
      rect.append(svgEl('title', {}, `${label} · ${s.label}: ${o.format(value)}`));
      svg.append(rect);
    }
    svg.append(svgEl('text', { x: x + barWidth / 2, y: height - 8, class: 'chart-label', 'text-anchor': 'middle' }, label));
  });
  const rows = o.categories.map((label, i) => [
    (o.fullLabels ?? o.categories)[i],
    ...o.series.map((s) => o.format(s.values[i] || 0)),
    o.format(totals[i]),
  ]);
  const table = dataTable(o.title, ['', ...o.series.map((s) => s.label), o.totalLabel], rows);
  return figure(o.name, o.title, svg, [legend(o.series), table]);
}

/**
 * Horizontal bars, one per category; values may be null (no measurement: no bar, "—").
 *
 * @param {object} o
 * @param {string} o.name
 * @param {string} o.title
 * @param {string[]} o.categories
 * @param {(number|null)[]} o.values
 * @param {string} o.className
 * @param {(n:number)=>string} o.format
 * @param {number} [o.max]  the axis end (default: a round number above the largest value)
 * @param {string} o.valueLabel  the data table's value column
 * @param {number} [o.labelWidth=150]
 * @param {number} [o.width=460]  the viewBox width: about the width it is drawn at
 */
export function horizontalBars(o) {
  const row = 22;
  const labelWidth = o.labelWidth ?? 150;
  const valueWidth = 64;
  const width = o.width ?? 460;
  const height = Math.max(row, o.categories.length * row) + 8;
  const plot = width - labelWidth - valueWidth;
  const max = o.max ?? niceMax(Math.max(0, ...o.values.filter((v) => v !== null && v !== undefined)));
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart-svg chart-svg-rows', 'aria-hidden': 'true', focusable: 'false' });
  o.categories.forEach((label, i) => {
    const y = 4 + i * row;
    const value = o.values[i];
    svg.append(svgEl('text', { x: labelWidth - 6, y: y + 15, class: 'chart-label', 'text-anchor': 'end' }, shorten(label, labelWidth)));
    svg.append(svgEl('rect', { x: labelWidth, y: y + 3, width: plot, height: row - 6, class: 'chart-track' }));
    if (value !== null && value !== undefined) {
      const rect = svgEl('rect', {
        x: labelWidth,
        y: y + 3,
        width: Math.max(value > 0 ? 1 : 0, (Math.min(value, max) / max) * plot),
        height: row - 6,
        class: `chart-bar ${o.className}`,
        'data-index': i,
      });
      rect.append(svgEl('title', {}, `${label}: ${o.format(value)}`));
      svg.append(rect);
    }
    const shown = value === null || value === undefined ? '—' : o.format(value);
    svg.append(svgEl('text', { x: width - 4, y: y + 15, class: 'chart-value', 'text-anchor': 'end' }, shown));
  });
  const rows = o.categories.map((label, i) => [label, o.values[i] === null || o.values[i] === undefined ? '—' : o.format(o.values[i])]);
  return figure(o.name, o.title, svg, [dataTable(o.title, ['', o.valueLabel], rows)]);
}

/** Labels longer than the room beside a bar are cut with an ellipsis (the table has them whole). */
function shorten(text, width) {
  const room = Math.floor(width / 13); // CJK glyphs at 12-13 px
  return text.length > room ? `${text.slice(0, room - 1)}…` : text;
}
