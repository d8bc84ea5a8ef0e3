"""A static gallery page of a run's result strips, with its scores, and a comparison view across runs.

    python gallery.py --run cpvton demo/result_simple demo/metrics.json --out demo/gallery/index.html
    python gallery.py --run A result_a/result_simple result_a/metrics.json \\
                      --run B result_b/result_simple result_b/metrics.json --out compare/index.html
    python gallery.py --run mine result_simple - --pairs data/test_pairs.txt --out result_simple/index.html

Each --run is NAME, the folder of its strips (smart_show_test_result.py's result_simple/) and its metrics.json
(evaluate.py's report; '-': none, the cards then have no scores). The pairs shown are those of the report's pair
lists (or of --pairs) whose strip is in the folder; a pair's strip is found with smart_show_test_result.strip_name
and its scores under cp_dataset.pair_key, the names the two commands write them under.

The page is one index.html that works opened from disk: no server, no network, the strips referenced by paths
relative to the page's folder (so keep the page where it was written, or move it together with the strips). It
shows the run's metric table as evaluate.py prints it (hover 'n/a' for the reason), then one card per pair (strip,
names, SSIM / SSIM-M / IoU / LPIPS where scored, the textured / occluded subset tags, paired or unpaired), sorted
worst first by any score, filtered by subset and by a name search. With several runs a 'compare' view lines up
each pair's strips and scores across the runs and sorts by the difference of a metric between run B and run A.

``write_gallery(runs, out_path)`` writes the page for other modules; ``load_run`` makes a Run from the files.
"""
import argparse
import html
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from cp_dataset import DataError, file_in, pair_key, read_pairs
from evaluate import TABLE_COLUMNS, derive_paired_pairs, format_table, published_rows, result_cells, subset_rows
from networks import atomic_write
from smart_show_test_result import strip_name
from subsets import SUBSET_DEFINITIONS

# The per-pair scores a card shows and the page sorts by, SSIM (the default sort) first.
CARD_METRICS = ('ssim', 'ssim_matlab', 'iou', 'lpips')
LOWER_IS_BETTER = {'lpips'}   # the others: higher is better, so 'worst first' is ascending for them
TITLES = dict(TABLE_COLUMNS)
# What the page reads of evaluate.py's report (see evaluate.evaluate).
REPORT_KEYS = ('metrics', 'per_pair', 'subsets', 'pair_lists', 'settings')
PAGE_MARKER = 'id="gallery-data"'   # in every page this module writes: a file without it is not replaced


@dataclass
class Run:
    """One run of the gallery: its name, its strips folder, the pairs [(im_name, c_name)] whose strips it shows
    (those whose strip is missing are counted, not shown) and evaluate.py's report (None: no scores)."""
    name: str
    strips_dir: Path
    pairs: list
    report: dict | None = None

    def __post_init__(self):
        self.strips_dir = Path(self.strips_dir)   # callers may pass a str


# ----------------------------------------------------------------------------------------------------
# Reading a run
# ----------------------------------------------------------------------------------------------------

def load_report(path):
    """evaluate.py's report from the JSON file ``path``; DataError naming the file and the fix if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f'metrics file not found: {path}; evaluate.py writes it (python evaluate.py --out {path})')
    try:
        report = json.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f'{path} is not JSON ({error}); write it again with python evaluate.py --out {path}') from None
    missing = [key for key in REPORT_KEYS if key not in report] if isinstance(report, dict) else ['metrics']
    if missing:
        raise DataError(f'{path} is not a metrics file of this evaluate.py (it has no "{missing[0]}"; an older '
                        f'version or another program wrote it); write it again with python evaluate.py --out {path}')
    return report


def pairs_file(path, fix):
    path = Path(path)
    if not path.is_file():
        raise DataError(f'pairs file not found: {path}; {fix}')
    return read_pairs(str(path))


def listed_pairs(report):
    """The pairs of the report's pair lists, paired list first, each once. A paired list that evaluate.py derived
    (no test_pairs_paired.txt) is derived again the same way."""
    settings = report.get('settings', {})
    fix = 'run from the folder evaluate.py ran in, or pass --pairs FILE'
    pairs = []
    for entry in report.get('pair_lists', {}).values():
        if entry.get('derived'):
            source = pairs_file(Path(settings['dataroot']) / entry['derived_from'], fix)
            pairs += derive_paired_pairs(source, Path(settings['dataroot']) / settings['datamode'] / 'cloth')
        else:
            pairs += pairs_file(entry['path'], fix)
    return list(dict.fromkeys(pairs))


def load_run(name, strips_dir, metrics_json=None, pairs_path=None):
    """A Run from its files: ``metrics_json`` None or '-' for no scores; the pairs of ``pairs_path``, else of the
    report's pair lists."""
    report = None if metrics_json in (None, '-') else load_report(metrics_json)
    if pairs_path:
        pairs = pairs_file(pairs_path, 'pass --pairs the pairs file the strips were rendered from')
    elif report is not None:
        pairs = listed_pairs(report)
    else:
        raise DataError(f'run {name} has no metrics file to list its pairs; pass --pairs with the pairs file its '
                        f'strips were rendered from (e.g. data/test_pairs.txt)')
    return Run(name, Path(strips_dir), pairs, report)


def check_strips_dir(run):
    if not run.strips_dir.is_dir():
        raise DataError(f'strips folder not found: {run.strips_dir} (run {run.name}); render the strips with '
                        f'python smart_show_test_result.py --out_simple {run.strips_dir}')


# ----------------------------------------------------------------------------------------------------
# The page's data
# ----------------------------------------------------------------------------------------------------

def page_url(path, page_dir):
    """``path`` as a URL relative to the page's folder, so the page works from file:// wherever both lie."""
    return quote(Path(os.path.relpath(path, page_dir)).as_posix())


def finite_scores(scores):
    """The card's scores of a per_pair row; NaN or infinite ones are left out (JSON has no NaN)."""
    return {metric: value for metric, value in scores.items()
            if metric in CARD_METRICS and isinstance(value, (int, float)) and math.isfinite(value)}


def subset_tags(report):
    """{pair key: [subsets it belongs to]} over every pair list of the report's subsets."""
    tags = {}
    for subset, entry in report.get('subsets', {}).items():
        for keys in entry.get('pairs', {}).values():
            for key in keys:
                if subset not in tags.setdefault(key, []):
                    tags[key].append(subset)
    return tags


def paired_keys(report):
    """Keys of the same-cloth pairs: those scored, and those of the subsets' paired lists."""
    keys = set(report.get('per_pair', {}))
    for entry in report.get('subsets', {}).values():
        keys.update(entry.get('pairs', {}).get('paired', ()))
    return keys


def strip_size(path):
    """(W, H) of a strip: the size the cards reserve before a lazily loaded image arrives."""
    with Image.open(path) as image:
        return list(image.size)


def run_notes(run, missing, shown):
    """Why pairs or scores are absent from the run's view (``missing``: strip names of listed pairs not in the
    folder; ``shown``: those in it)."""
    notes = [] if run.report else ['no metrics file given: the cards have no scores, subsets or paired/unpaired '
                                   "tags (pass evaluate.py's metrics.json to show them)"]
    if missing:
        notes.append(f'{len(missing)} listed pairs have no strip in {run.strips_dir} (e.g. {missing[0]}) and are '
                     f'not shown; python smart_show_test_result.py --data_list <their pairs file> renders them')
    strays = sum(1 for path in run.strips_dir.glob('*.png') if path.name not in shown)
    if strays:
        notes.append(f'{strays} strips of {run.strips_dir} belong to no listed pair and are not shown (gallery.py '
                     f'--pairs <the pairs file they were rendered from> shows them)')
    return notes


def run_view(run, page_dir):
    """({pair key: the pair's entry}, {pair key: (im_name, c_name)}, the run's description) of the listed pairs
    whose strip is in the run's folder."""
    report = run.report or {}
    per_pair, tags = report.get('per_pair', {}), subset_tags(report)
    paired = paired_keys(report)
    entries, names, missing, shown = {}, {}, [], {}
    for im_name, c_name in run.pairs:
        key, strip = pair_key(im_name, c_name), Path(file_in(run.strips_dir, strip_name(im_name, c_name)))
        if not strip.is_file():
            missing.append(strip.name)
            continue
        names[key], shown[strip.name] = (im_name, c_name), strip
        entries[key] = {'strip': page_url(strip, page_dir), 'scores': finite_scores(per_pair.get(key, {})),
                        'subsets': tags.get(key, []),
                        'list': ('paired' if key in paired else 'unpaired') if run.report else None}
    info = {'name': run.name, 'scored': run.report is not None, 'notes': run_notes(run, missing, shown),
            'strip_size': strip_size(next(iter(shown.values()))) if shown else None}
    return entries, names, info


def gallery_data(runs, page_dir):
    """The JSON the page's script reads: the runs, the card metrics, and per pair (in the runs' order, each once)
    its key, names and each run's entry (strip URL, scores, subsets, paired/unpaired) or None."""
    views = [run_view(run, page_dir) for run in runs]
    names = {}
    for _, run_names, _ in views:
        for key, pair in run_names.items():
            names.setdefault(key, pair)
    present = [metric for metric in CARD_METRICS
               if any(metric in entry['scores'] for entries, _, _ in views for entry in entries.values())]
    return {
        'runs': [info for _, _, info in views],
        'metrics': [{'id': metric, 'title': TITLES[metric], 'lower_is_better': metric in LOWER_IS_BETTER}
                    for metric in present],
        'subsets': list(SUBSET_DEFINITIONS),
        'pairs': [{'key': key, 'person': im_name, 'cloth': c_name,
                   'runs': [entries.get(key) for entries, _, _ in views]} for key, (im_name, c_name) in names.items()],
    }


def script_json(data):
    """``data`` as JSON that is safe inside a <script> element: every '<' escaped, so no name can close it."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False).replace('<', '\\u003c')


# ----------------------------------------------------------------------------------------------------
# Static HTML: the metric tables and the controls
# ----------------------------------------------------------------------------------------------------

def attribute(name, value):
    return f' {name}="{html.escape(value)}"' if value else ''


def table_row(label, cells, results, css_class):
    """A <tr> of the metric table; an unavailable metric's cell carries its reason as a tooltip."""
    tds = []
    for metric, _ in TABLE_COLUMNS:
        reason = (results.get(metric) or {}).get('unavailable', '')
        tds.append(f'<td class="num{" na" if reason else ""}"{attribute("title", reason)}>'
                   f'{html.escape(cells[metric])}</td>')
    return f'<tr class="{css_class}"><th scope="row">{html.escape(label)}</th>{"".join(tds)}</tr>'


def run_rows(run):
    """The run's row and those of its computed subsets, named with their sizes, as evaluate.format_table has them."""
    report = run.report
    rows = [table_row(run.name, result_cells(report['metrics']), report['metrics'], 'this-run')]
    computed = [entry for entry in report.get('subsets', {}).values() if 'unavailable' not in entry]
    for (label, cells), entry in zip(subset_rows(report), computed):
        rows.append(table_row(label.strip(), cells, entry['metrics'], 'subset'))
    return rows


def metrics_table(runs):
    """The table of the scored ``runs``: the published rows (of the first report), then each run and its subsets."""
    scored = [run for run in runs if run.report]
    if not scored:
        return ''
    rows = [table_row(name, cells, {}, 'published')
            for name, cells in published_rows(scored[0].report.get('published', {}))]
    rows += [row for run in scored for row in run_rows(run)]
    header = ''.join(f'<th scope="col">{html.escape(title)}</th>' for _, title in TABLE_COLUMNS)
    terminal = ''.join(f'<details><summary>evaluate.py\'s table and notes of {html.escape(run.name)}</summary>'
                       f'<pre>{html.escape(format_table(run.report))}</pre></details>' for run in scored)
    return (f'<table class="metrics"><thead><tr><th scope="col">method</th>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<p class="legend">higher is better: IoU, SSIM, SSIM-M, IS; lower: LPIPS, FID. n/a: unavailable (hover '
            'for why); -: not computed.</p>' + terminal)


def summary_section(view, runs, notes):
    """The metric table and the notes shown above the cards of one view."""
    items = ''.join(f'<li>{html.escape(note)}</li>' for note in notes)
    notes_list = f'<ul class="notes">{items}</ul>' if items else ''
    return f'<section class="summary" data-view="{view}">{metrics_table(runs)}{notes_list}</section>'


def options(values, selected=None):
    """<option>s of (value, label) pairs."""
    return ''.join(f'<option value="{html.escape(str(value))}"{" selected" if value == selected else ""}>'
                   f'{html.escape(label)}</option>' for value, label in values)


def scored_metrics(data, run_index):
    """The card metrics that some pair of the run has."""
    return {metric for pair in data['pairs'] if pair['runs'][run_index] for metric in pair['runs'][run_index]['scores']}


def controls_html(data, runs):
    metrics = [(metric['id'], metric['title']) for metric in data['metrics']]
    # the comparison opens on the first metric that both of its default runs, 0 and 1, have
    common = scored_metrics(data, 0) & scored_metrics(data, 1) if len(runs) > 1 else set()
    delta_metric = next((metric for metric, _ in metrics if metric in common), None)
    views = [(f'run-{index}', run.name) for index, run in enumerate(runs)] + ([('compare', 'compare runs')]
                                                                               if len(runs) > 1 else [])
    view_select = (f'<label>view <select id="view">{options(views)}</select></label>' if len(views) > 1 else
                   '<select id="view" hidden>' + options(views) + '</select>')
    run_choices = [(index, run.name) for index, run in enumerate(runs)]
    compare = (f'<span class="compare-controls" hidden><label>A <select id="run-a">{options(run_choices, 0)}</select>'
               f'</label><label>B <select id="run-b">{options(run_choices, 1)}</select></label>'
               f'<label>metric <select id="delta-metric">{options(metrics, delta_metric)}</select></label>'
               '<select id="delta-order"><option value="loss">largest loss first (B worse than A)</option>'
               '<option value="gain">largest gain first (B better than A)</option></select></span>'
               if len(runs) > 1 else '')
    subsets = options([('', 'all pairs')] + [(subset, subset) for subset in data['subsets']])
    return (f'<div class="controls">{view_select}'
            f'<span class="run-controls"><label>sort by <select id="sort-key">{options(metrics + [("name", "name")])}'
            '</select></label><select id="sort-order"><option value="worst">worst first</option>'
            f'<option value="best">best first</option></select></span>{compare}'
            f'<label>subset <select id="subset">{subsets}</select></label>'
            '<input id="search" type="search" placeholder="search person or cloth name" aria-label="search">'
            '<span id="count" aria-live="polite"></span></div>')


def page_html(runs, data):
    title = 'CP-VTON results: ' + ', '.join(run.name for run in runs)
    summaries = [summary_section(f'run-{index}', [run], info['notes'])
                 for index, (run, info) in enumerate(zip(runs, data['runs']))]
    containers = [f'<div id="view-run-{index}" class="grid" data-view="run-{index}"></div>'
                  for index in range(len(runs))]
    if len(runs) > 1:
        summaries.append(summary_section('compare', runs, [f'{info["name"]}: {note}' for info in data['runs']
                                                           for note in info['notes']]))
        containers.append('<div id="view-compare" class="compare" data-view="compare"></div>')
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{html.escape(title)}</title>\n<link rel="icon" href="data:,">\n<style>{CSS}</style>\n</head>\n'
            f'<body>\n<header><h1>{html.escape(title)}</h1>{"".join(summaries)}</header>\n{controls_html(data, runs)}\n'
            f'<main>{"".join(containers)}<p id="empty" hidden>no pair matches</p></main>\n'
            f'<script type="application/json" {PAGE_MARKER}>{script_json(data)}</script>\n'
            f'<script>{SCRIPT}</script>\n</body>\n</html>\n')


def refuse_to_replace_another_file(out_path):
    """DataError if ``out_path`` exists and is not a gallery page: nothing the user made is overwritten."""
    if out_path.is_dir():
        raise DataError(f'--out {out_path} is a folder; name the page to write, e.g. {out_path / "index.html"}')
    if out_path.exists() and PAGE_MARKER not in out_path.read_text(encoding='utf-8', errors='replace'):
        raise DataError(f'{out_path} exists and is not a gallery page of gallery.py; move it, or pass another --out')


def write_gallery(runs, out_path):
    """Write the gallery of ``runs`` (Run objects; several: with the comparison view) to ``out_path``, the strips
    referenced relative to its folder. Returns the page's data (see gallery_data). DataError on a missing folder."""
    for run in runs:
        check_strips_dir(run)
    out_path = Path(out_path)
    refuse_to_replace_another_file(out_path)
    data = gallery_data(runs, out_path.parent)
    page = page_html(runs, data)
    atomic_write(str(out_path), lambda tmp_path: Path(tmp_path).write_text(page, encoding='utf-8'))
    return data


# ----------------------------------------------------------------------------------------------------
# The page's style and script (plain CSS and JS, inline: the page needs nothing but its strips)
# ----------------------------------------------------------------------------------------------------

CSS = """
[hidden] { display: none !important; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #f4f4f6; }
header { padding: 12px 20px 4px; background: #fff; border-bottom: 1px solid #ddd; }
h1 { font-size: 18px; margin: 0 0 8px; }
table.metrics { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
table.metrics thead th { border-bottom: 2px solid #bbb; }
table.metrics td.num, table.metrics thead th + th { text-align: right; }
table.metrics td.na { color: #999; text-decoration: underline dotted; cursor: help; }
tr.published th { font-weight: normal; color: #555; }
tr.this-run { background: #eef4ff; }
tr.subset th { font-weight: normal; padding-left: 26px; }
.legend, .notes { color: #666; font-size: 12px; margin: 4px 0; }
details { font-size: 12px; margin: 4px 0; } pre { overflow-x: auto; background: #f8f8f8; padding: 6px; }
.controls { position: sticky; top: 0; z-index: 1; display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center;
            padding: 8px 20px; background: #fafafa; border-bottom: 1px solid #ddd; }
.controls span { display: inline-flex; gap: 6px 14px; flex-wrap: wrap; }
#search { width: 16em; } #count { color: #555; margin-left: auto; }
main { padding: 12px 20px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
.card, .row { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 6px 8px;
              content-visibility: auto; contain-intrinsic-size: auto 160px; }   /* off-screen: no layout, no paint */
.card img, .row img { display: block; width: 100%; height: auto; background: #ddd; }
.names { font-weight: 600; margin-top: 4px; overflow-wrap: anywhere; }
.scores, .tags { display: flex; flex-wrap: wrap; gap: 2px 10px; font-variant-numeric: tabular-nums; }
.scores .none { color: #999; }
.tag { font-size: 11px; padding: 0 6px; border-radius: 8px; background: #eee; }
.tag-textured { background: #ffe7c2; } .tag-occluded { background: #d9ecff; }
.list-paired { background: #dcf5dc; } .list-unpaired { background: #eee; }
.compare { display: flex; flex-direction: column; gap: 8px; }
.row { display: grid; grid-template-columns: 200px repeat(var(--runs), minmax(0, 1fr)); gap: 10px; }
.cell.is-a { outline: 2px solid #8ab; } .cell.is-b { outline: 2px solid #e90; }
.caption { font-size: 12px; color: #444; font-variant-numeric: tabular-nums; }
.delta { font-variant-numeric: tabular-nums; margin-top: 4px; }
.gain { color: #170; } .loss { color: #b00; } .missing { color: #999; padding: 20px 0; }
""" + ''.join(f'.grid[data-sort="{metric}"] .s-{metric} {{ font-weight: 700; }}\n' for metric in CARD_METRICS)

SCRIPT = r"""
'use strict';
(() => {
  const DATA = JSON.parse(document.getElementById('gallery-data').textContent);
  const METRIC = Object.fromEntries(DATA.metrics.map(m => [m.id, m]));
  const $ = id => document.getElementById(id);
  const ui = {view: $('view'), sortKey: $('sort-key'), sortOrder: $('sort-order'), runA: $('run-a'),
              runB: $('run-b'), deltaMetric: $('delta-metric'), deltaOrder: $('delta-order'),
              subset: $('subset'), search: $('search'), count: $('count'), empty: $('empty')};
  const views = {};   // view id -> {container, items}; built once, on first display

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const has = value => typeof value === 'number' && isFinite(value);
  const fmt = value => has(value) ? value.toFixed(3) : '-';

  function strip(entry, run, pair) {
    const link = el('a');
    link.href = entry.strip;
    link.target = '_blank';   // the strip at full size
    const img = el('img');
    img.loading = 'lazy';     // before src, so that only the strips scrolled to are read
    if (run.strip_size) [img.width, img.height] = run.strip_size;
    img.alt = `${pair.person} in ${pair.cloth}`;
    img.src = entry.strip;
    link.append(img);
    return link;
  }

  const scored = entry => DATA.metrics.filter(m => has(entry.scores[m.id]));
  const noScores = run => run.scored ? 'no scores (unpaired)' : 'no scores';

  function scores(entry, run) {
    const box = el('div', 'scores'), shown = scored(entry);
    for (const m of shown) box.append(el('span', 's-' + m.id, `${m.title} ${fmt(entry.scores[m.id])}`));
    if (!shown.length) box.append(el('span', 'none', noScores(run)));
    return box;
  }

  // One text line per cell of the comparison: a fraction of the nodes of a card's scores, for 3 x 2,032 cells.
  function caption(entry, run) {
    const shown = scored(entry);
    return el('div', 'caption', `${run.name}: ` + (shown.length ?
      shown.map(m => `${m.title} ${fmt(entry.scores[m.id])}`).join(' · ') : noScores(run)));
  }

  function tags(subsets, list) {
    const box = el('div', 'tags');
    if (list) box.append(el('span', 'tag list-' + list, list));
    for (const subset of subsets) box.append(el('span', 'tag tag-' + subset, subset));
    return box;
  }

  function item(node, pair, index, subsets) {
    return {node, index, key: pair.key, subsets: new Set(subsets),
            text: `${pair.person} ${pair.cloth} ${pair.key}`.toLowerCase()};
  }

  function buildRunView(r) {
    const container = $('view-run-' + r), run = DATA.runs[r], items = [];
    DATA.pairs.forEach((pair, index) => {
      const entry = pair.runs[r];
      if (!entry) return;
      const card = el('article', 'card');
      card.id = `card-${r}-${index}`;
      card.dataset.key = pair.key;
      card.dataset.list = entry.list || '';
      card.dataset.subsets = entry.subsets.join(' ');
      for (const m of DATA.metrics) if (has(entry.scores[m.id])) card.setAttribute('data-' + m.id, entry.scores[m.id]);
      card.append(strip(entry, run, pair), el('div', 'names', `${pair.person} · ${pair.cloth}`),
                  scores(entry, run), tags(entry.subsets, entry.list));
      container.append(card);
      items.push(Object.assign(item(card, pair, index, entry.subsets), {scores: entry.scores}));
    });
    return {container, items, sort: sortRunView};
  }

  function buildCompareView() {
    const container = $('view-compare'), items = [];
    container.style.setProperty('--runs', DATA.runs.length);
    DATA.pairs.forEach((pair, index) => {
      const row = el('article', 'row'), head = el('div', 'pair'), delta = el('div', 'delta');
      const entries = pair.runs, present = entries.filter(Boolean);
      const subsets = [...new Set(present.flatMap(entry => entry.subsets))];
      const list = present.some(entry => entry.list === 'paired') ? 'paired' : (present[0].list || null);
      row.id = 'row-' + index;
      row.dataset.key = pair.key;
      row.dataset.subsets = subsets.join(' ');
      head.append(el('div', 'names', `${pair.person} · ${pair.cloth}`), tags(subsets, list), delta);
      row.append(head);
      const cells = entries.map((entry, r) => {
        const cell = el('div', 'cell');
        cell.dataset.run = r;
        if (entry) cell.append(strip(entry, DATA.runs[r], pair), caption(entry, DATA.runs[r]));
        else cell.append(el('div', 'missing', `${DATA.runs[r].name}: no strip`));
        row.append(cell);
        return cell;
      });
      container.append(row);
      items.push(Object.assign(item(row, pair, index, subsets), {entries, cells, deltaLabel: delta}));
    });
    return {container, items, sort: sortCompareView};
  }

  // Items with a finite value first, by value (ties: page order), then those without one, in page order.
  function sortedBy(items, valueOf, descending) {
    const valued = [], rest = [];
    for (const it of items) {
      const value = valueOf(it);
      (has(value) ? valued : rest).push([value, it]);
    }
    valued.sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]) || a[1].index - b[1].index);
    return valued.concat(rest).map(pair => pair[1]);
  }

  // Move the existing nodes into the new order: one DocumentFragment, no node rebuilt.
  function reorder(view, ordered) {
    const fragment = document.createDocumentFragment();
    for (const it of ordered) fragment.appendChild(it.node);
    view.container.appendChild(fragment);
  }

  function sortRunView(view) {
    const key = ui.sortKey.value, worst = ui.sortOrder.value === 'worst';
    ui.sortOrder.disabled = key === 'name';
    view.container.dataset.sort = key;   // the CSS makes the sort score bold
    if (key === 'name') {
      reorder(view, view.items.slice().sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      return;
    }
    const descending = worst === METRIC[key].lower_is_better;   // worst first: low SSIM / IoU, high LPIPS
    reorder(view, sortedBy(view.items, it => it.scores[key], descending));
  }

  // The differences B - A of the chosen metric, shown on each row; recomputed only when A, B or the metric change.
  function updateDeltas(view) {
    const a = +ui.runA.value, b = +ui.runB.value, m = METRIC[ui.deltaMetric.value];   // m: none without scores
    const choice = `${a} ${b} ${m && m.id}`;
    if (view.choice === choice) return;
    view.choice = choice;
    for (const it of view.items) {
      const score = r => m && it.entries[r] && it.entries[r].scores[m.id];
      const va = score(a), vb = score(b);
      const delta = has(va) && has(vb) ? vb - va : null;
      it.gain = delta === null ? null : (m.lower_is_better ? -delta : delta);   // B better than A, either way
      it.cells.forEach((cell, r) => {
        cell.classList.toggle('is-a', r === a);
        cell.classList.toggle('is-b', r === b);
      });
      it.deltaLabel.textContent = `Δ ${m ? m.title : ''} (B − A): ` +
        (delta === null ? '-' : `${delta >= 0 ? '+' : ''}${delta.toFixed(3)}`);
      it.deltaLabel.className = 'delta' + (it.gain > 0 ? ' gain' : it.gain < 0 ? ' loss' : '');
      if (delta === null) it.node.removeAttribute('data-delta'); else it.node.dataset.delta = delta;
    }
  }

  function sortCompareView(view) {
    updateDeltas(view);
    reorder(view, sortedBy(view.items, it => it.gain, ui.deltaOrder.value === 'gain'));
  }

  function applyFilter(view) {
    const subset = ui.subset.value, query = ui.search.value.trim().toLowerCase();
    let shown = 0;
    for (const it of view.items) {
      const show = (!subset || it.subsets.has(subset)) && (!query || it.text.includes(query));
      if (it.node.hidden === show) it.node.hidden = !show;
      shown += show;
    }
    ui.count.textContent = `${shown} of ${view.items.length} pairs shown`;
    ui.empty.hidden = shown > 0;
  }

  function current() {
    const id = ui.view.value;
    if (!views[id]) views[id] = id === 'compare' ? buildCompareView() : buildRunView(+id.slice(4));
    return views[id];
  }

  function showView() {
    const id = ui.view.value;
    document.querySelectorAll('[data-view]').forEach(node => { node.hidden = node.dataset.view !== id; });
    document.querySelector('.run-controls').hidden = id === 'compare';
    const compareControls = document.querySelector('.compare-controls');
    if (compareControls) compareControls.hidden = id !== 'compare';
    const view = current();
    view.sort(view);
    applyFilter(view);
  }

  const resort = () => { const view = current(); view.sort(view); };
  ui.view.addEventListener('change', showView);
  for (const control of [ui.sortKey, ui.sortOrder, ui.runA, ui.runB, ui.deltaMetric, ui.deltaOrder]) {
    if (control) control.addEventListener('change', resort);
  }
  ui.subset.addEventListener('change', () => applyFilter(current()));
  ui.search.addEventListener('input', () => applyFilter(current()));
  showView();
})();
"""


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write a static gallery page of result strips and their scores '
                                                 '(see the docstring of gallery.py).')
    parser.add_argument('--run', nargs=3, action='append', required=True,
                        metavar=('NAME', 'STRIPS_DIR', 'METRICS_JSON'),
                        help="a run: its name, its strips folder (smart_show_test_result.py's --out_simple) and "
                             "evaluate.py's metrics.json ('-': none); repeat for a comparison")
    parser.add_argument('--pairs', help='pairs file of the strips to show (default: the pair lists named in each '
                                        'metrics file; needed for a run without one)')
    parser.add_argument('--out', required=True, help='the page to write, e.g. gallery/index.html')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        runs = [load_run(name, strips, metrics, args.pairs) for name, strips, metrics in args.run]
        data = write_gallery(runs, args.out)
    except DataError as error:   # the message names the file and the fix
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:     # e.g. no permission to write --out, or a full disk
        print(f'error: cannot write {args.out}: {error.strerror or error}', file=sys.stderr)
        return 2
    print(f'wrote {args.out}: {len(data["pairs"])} pairs of {len(runs)} run{"s" if len(runs) > 1 else ""} '
          f'(open it in a browser; it reads the strips from where they are)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
