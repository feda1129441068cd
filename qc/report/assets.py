"""The report page's inline stylesheet and scripts (no CDN, no network).

``ERROR_TRAP_JS`` runs first and records any script error or failed image
load on ``<html data-errors>`` (and on the console), so a headless browser
test can tell a page that works from one that merely loads.  ``REPORT_JS``
drives the excluded-files table (sort, filter, pages) and the lightbox, and
sets ``<body data-ready="1">`` when it has finished.
"""

from __future__ import annotations

CSS = """
:root { --fg:#1d232b; --muted:#5f6b7a; --line:#d9dee5; --accent:#3b7dd8; --bad:#c0392b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 0; background: #f6f7f9; }
header { background: #1d232b; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #b9c2cd; font-size: 12px; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 6px 24px;
      position: sticky; top: 0; z-index: 5; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 8px 24px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
          padding: 12px 18px; margin: 14px 0; }
h2 { font-size: 17px; margin: 4px 0 10px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
.note { color: var(--muted); font-size: 12px; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.row > div { min-width: 260px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.card td.num { font-size: 18px; font-weight: 600; }
img.fig { max-width: 100%; height: auto; }
#excluded-controls { margin: 6px 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#excluded-table th { cursor: pointer; user-select: none; background: #eef1f5; position: sticky; top: 34px; }
#excluded-table th[aria-sort="ascending"]::after { content: " \\25B2"; }
#excluded-table th[aria-sort="descending"]::after { content: " \\25BC"; }
#excluded-table td { max-width: 520px; overflow-wrap: anywhere; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure, .series figure { margin: 0; background: #111; border-radius: 4px; padding: 4px; }
.gallery figcaption, .series figcaption { color: #dde3ea; font-size: 11px; max-width: 480px; padding: 3px 2px 0; }
img.thumb { display: block; height: 110px; width: auto; cursor: zoom-in; image-rendering: auto; }
.missing { height: 110px; width: 240px; display: flex; align-items: center; justify-content: center;
           color: #99a3ae; font-size: 12px; border: 1px dashed #555; }
.series { display: flex; gap: 6px; margin-bottom: 8px; flex-wrap: wrap; }
.badge { display: inline-block; padding: 0 5px; border-radius: 3px; background: #3a4350; margin-left: 3px; }
.iqs-bad { color: #ff9d8f; }
#lightbox { position: fixed; inset: 0; background: rgba(0,0,0,.88); display: none;
            align-items: center; justify-content: center; flex-direction: column; z-index: 10; cursor: zoom-out; }
#lightbox.open { display: flex; }
#lightbox img { max-width: 96vw; max-height: 86vh; width: 92vw; object-fit: contain; image-rendering: auto; }
#lightbox p { color: #eee; margin: 8px; font-size: 13px; }
.legend span { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin: 0 4px 0 10px; }
"""

ERROR_TRAP_JS = """
(function () {
  var errors = [];
  function note(message) {
    errors.push(message);
    document.documentElement.setAttribute('data-errors', String(errors.length));
    console.error('report error: ' + message);
  }
  window.addEventListener('error', function (event) {
    var target = event.target;
    if (target && target !== window && target.tagName) {
      note('failed to load ' + target.tagName.toLowerCase() + ' ' + (target.getAttribute('src') || ''));
    } else {
      note(String(event.message || 'script error'));
    }
  }, true);
  window.__reportErrors = errors;
})();
"""

REPORT_JS = """
(function () {
  'use strict';
  var PAGE = 100;
  var source = document.getElementById('excluded-data');
  var data = source ? JSON.parse(source.textContent) : {columns: [], rows: [], total: 0};
  var state = {sortCol: 0, asc: true, page: 0, filter: '', reason: ''};
  var body = document.querySelector('#excluded-table tbody');
  var heads = document.querySelectorAll('#excluded-table th');
  var status = document.getElementById('excluded-status');

  function matches(row) {
    if (state.reason && row[3].split(', ').indexOf(state.reason) < 0) { return false; }
    if (!state.filter) { return true; }
    return row.join(' ').toLowerCase().indexOf(state.filter) >= 0;
  }
  function sorted(rows) {
    var col = state.sortCol, sign = state.asc ? 1 : -1;
    return rows.slice().sort(function (a, b) {
      return sign * String(a[col]).localeCompare(String(b[col]), undefined, {numeric: true});
    });
  }
  function render() {
    if (!body) { return; }
    var rows = sorted(data.rows.filter(matches));
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * PAGE, shown = rows.slice(start, start + PAGE);
    var frag = document.createDocumentFragment();
    shown.forEach(function (row) {
      var tr = document.createElement('tr');
      row.forEach(function (cell) {
        var td = document.createElement('td');
        td.textContent = cell;
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    heads.forEach(function (th, i) {
      th.setAttribute('aria-sort', i === state.sortCol ? (state.asc ? 'ascending' : 'descending') : 'none');
    });
    var more = data.total > data.rows.length ? ' (table holds the first ' + data.rows.length +
      ' of ' + data.total + ' excluded images; the manifest has all)' : '';
    status.textContent = rows.length ? 'rows ' + (start + 1) + '\\u2013' + (start + shown.length) +
      ' of ' + rows.length + ' matching' + more : 'no matching rows' + more;
    status.setAttribute('data-matching', String(rows.length));
  }
  heads.forEach(function (th, i) {
    th.addEventListener('click', function () {
      state.asc = state.sortCol === i ? !state.asc : true;
      state.sortCol = i; state.page = 0; render();
    });
  });
  function on(id, event, handler) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener(event, handler); }
  }
  on('excluded-filter', 'input', function (e) { state.filter = e.target.value.toLowerCase(); state.page = 0; render(); });
  on('excluded-reason', 'change', function (e) { state.reason = e.target.value; state.page = 0; render(); });
  on('excluded-prev', 'click', function () { state.page = Math.max(0, state.page - 1); render(); });
  on('excluded-next', 'click', function () { state.page += 1; render(); });
  render();

  var box = document.getElementById('lightbox');
  var boxImg = box.querySelector('img'), boxText = box.querySelector('p');
  function open(img) {
    boxImg.src = img.src;
    boxText.textContent = img.getAttribute('data-caption') || img.alt;
    box.classList.add('open');
    box.setAttribute('data-image-id', img.getAttribute('data-image-id') || '');
  }
  document.querySelectorAll('img.thumb').forEach(function (img) {
    img.addEventListener('click', function () { open(img); });
  });
  function close() { box.classList.remove('open'); }
  box.addEventListener('click', close);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') { close(); } });
  var wanted = /^#view=([0-9A-Za-z_-]+)$/.exec(window.location.hash);
  if (wanted) {
    var target = document.querySelector('img.thumb[data-image-id="' + wanted[1] + '"]');
    if (target) { open(target); } else { console.warn('no thumbnail for image ' + wanted[1]); }
  }
  document.body.setAttribute('data-ready', '1');
})();
"""

__all__ = ["CSS", "ERROR_TRAP_JS", "REPORT_JS"]
