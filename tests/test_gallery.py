"""gallery.py: the page's embedded data, its strip paths and CLI errors without a browser; then sorting, filtering,
searching, the comparison view, console errors and speed at VITON scale in headless Chromium (selenium)."""
import html
import json
import re
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

import gallery
import smart_show_test_result
from conftest import assert_no_console_errors, choose, count_text, open_page, save_screenshot, search, shown_keys
from cp_dataset import pair_key
from evaluate import PUBLISHED, aggregate
from smart_show_test_result import strip_name
from subsets import OCCLUDED_THRESHOLD, SUBSET_DEFINITIONS, TEXTURED_THRESHOLD, subset_members

REPO = Path(__file__).resolve().parents[1]
VITON_TEST_PAIRS = 2032
LPIPS_MISSING = 'alexnet-owt-7be5be79.pth not found: put it in ~/.cache/torch/hub/checkpoints/'
BLOB = re.compile(r'<script type="application/json" id="gallery-data">(.*?)</script>', re.S)


# ----------------------------------------------------------------------------------------------------
# A run: strips on disk and a report in evaluate.py's format
# ----------------------------------------------------------------------------------------------------

def viton_pairs(persons, stem=lambda i: f'{i:06d}'):
    """VITON-like lists: person i wears its own cloth (paired) and the cloth of person i+3 (unpaired)."""
    paired = [(f'{stem(i)}_0.jpg', f'{stem(i)}_1.jpg') for i in range(persons)]
    unpaired = [(f'{stem(i)}_0.jpg', f'{stem((i + 3) % persons)}_1.jpg') for i in range(persons)]
    return paired, unpaired


def write_pairs(path, pairs):
    path.write_text(''.join(f'{im_name} {c_name}\n' for im_name, c_name in pairs))
    return path


def write_strips(folder, pairs, png=None):
    """A small PNG per pair under its strip name (the same bytes for all when ``png`` is given: fast at scale)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, pair in enumerate(pairs):
        path = folder / strip_name(*pair)
        if png:
            path.write_bytes(png)
        else:
            Image.new('RGB', (70, 13), ((37 * index) % 256, 90, 160)).save(path)
    return folder


def tiny_png():
    buffer = BytesIO()
    Image.new('RGB', (1, 1), (120, 120, 120)).save(buffer, format='PNG')
    return buffer.getvalue()


def make_report(folder, paired, unpaired, seed, lpips=False):
    """evaluate.py's report of a run: per-pair IoU and SSIM (SSIM-M, LPIPS for some) of the paired pairs, the
    difficulty subsets as subsets.subset_members picks them from random measures of the data, and the pair lists'
    files."""
    rng = np.random.default_rng(seed)
    per_pair = {}
    for index, pair in enumerate(paired):
        row = {'iou': float(rng.uniform(0.3, 0.95))}
        if index % 7 != 6:                       # some pairs lack SSIM: they must sort last
            row['ssim'] = float(rng.uniform(0.4, 0.95))
            row['ssim_matlab'] = float(rng.uniform(0.4, 0.95))
        if lpips:
            row['lpips'] = float(rng.uniform(0.05, 0.4))
        per_pair[pair_key(*pair)] = row
    lists = {'paired': [pair_key(*pair) for pair in paired], 'unpaired': [pair_key(*pair) for pair in unpaired]}
    data = np.random.default_rng(0)   # the data's measures: the same in every run, as the subsets are
    measures = {key: {'texture_energy': float(data.uniform(0, 0.04)), 'torso_occlusion': float(data.uniform(0, 0.15)),
                      'torso_region': 'keypoints'} for keys in lists.values() for key in keys}
    subsets = {}
    for subset, definition in SUBSET_DEFINITIONS.items():
        threshold = {'textured': TEXTURED_THRESHOLD, 'occluded': OCCLUDED_THRESHOLD}[subset]
        members = {name: subset_members(measures, keys=keys)[subset] for name, keys in lists.items()}
        subsets[subset] = {
            'definition': {**definition, 'threshold': threshold, 'rule': f'{definition["measure"]} > {threshold}'},
            'size': {name: len(keys) for name, keys in members.items()}, 'pairs': members,
            'metrics': {metric: aggregate(per_pair, metric, members['paired'])
                        for metric in ('iou', 'ssim', 'ssim_matlab')}}
    metrics = {metric: aggregate(per_pair, metric) for metric in ('iou', 'ssim', 'ssim_matlab')}
    metrics['lpips'] = aggregate(per_pair, 'lpips') if lpips else {'unavailable': LPIPS_MISSING}
    for entry in subsets.values():
        entry['metrics']['lpips'] = metrics['lpips'] if 'unavailable' in metrics['lpips'] else \
            aggregate(per_pair, 'lpips', entry['pairs']['paired'])
    paired_file = write_pairs(folder / 'test_pairs_paired.txt', paired)
    unpaired_file = write_pairs(folder / 'test_pairs.txt', unpaired)
    return {
        'protocol': 'CP-VTON+ (CVPRW 2020) Table 1',
        'settings': {'dataroot': str(folder), 'datamode': 'test', 'metrics': ['iou', 'ssim', 'ssim_matlab', 'lpips']},
        'pair_lists': {'paired': {'path': str(paired_file), 'derived': False, 'pairs': len(paired)},
                       'unpaired': {'path': str(unpaired_file), 'pairs': len(unpaired)}},
        'metrics': metrics, 'notes': [],
        'published': {name: {metric: list(value) if isinstance(value, tuple) else value
                             for metric, value in row.items()} for name, row in PUBLISHED.items()},
        'per_pair': per_pair, 'subsets': subsets, 'per_pair_difficulty': measures,
        'output': str(folder / 'metrics.json'),
    }


def write_metrics(folder, report):
    path = folder / 'metrics.json'
    path.write_text(json.dumps(report))
    return path


def make_run(folder, paired, unpaired, seed, lpips=False):
    """Strips and metrics.json of a run in ``folder``; returns (strips folder, metrics.json path, report)."""
    folder.mkdir(parents=True)
    report = make_report(folder, paired, unpaired, seed, lpips)
    strips = write_strips(folder / 'result_simple', list(dict.fromkeys(paired + unpaired)))
    return strips, write_metrics(folder, report), report


def page_data(page):
    return json.loads(BLOB.search(page.read_text(encoding='utf-8')).group(1))


def worst_first(report, keys, metric):
    """The expected order of a sort by `metric`, worst first: scored pairs by their score, then the others."""
    scores = report['per_pair']
    scored = [key for key in keys if metric in scores.get(key, {})]
    reverse = metric in gallery.LOWER_IS_BETTER
    return sorted(scored, key=lambda key: scores[key][metric], reverse=reverse) + \
        [key for key in keys if key not in scored]


# ----------------------------------------------------------------------------------------------------
# Without a browser
# ----------------------------------------------------------------------------------------------------

def test_the_embedded_data_parses_back_to_the_report_and_no_name_breaks_out(tmp_path):
    # names that would break an unescaped <script> or an unquoted URL
    paired, unpaired = viton_pairs(5, stem=lambda i: f'a#b%c?&<!--{i}"')
    strips, metrics_json, report = make_run(tmp_path / 'run', paired, unpaired, seed=1)
    run_name = '</script><script>window.broken = 1</script>'
    page = tmp_path / 'site' / 'index.html'

    gallery.main(['--run', run_name, str(strips), str(metrics_json), '--out', str(page)])

    text = page.read_text(encoding='utf-8')
    assert text.count('</script>') == 2                   # the data's and the script's own end tags only
    data = page_data(page)
    assert data['runs'][0]['name'] == run_name
    pairs = list(dict.fromkeys(paired + unpaired))
    assert [(pair['person'], pair['cloth']) for pair in data['pairs']] == pairs
    tags = {pair_key(*pair): [subset for subset, entry in report['subsets'].items()
                              if any(pair_key(*pair) in keys for keys in entry['pairs'].values())] for pair in pairs}
    for pair in data['pairs']:
        entry = pair['runs'][0]
        assert pair['key'] == pair_key(pair['person'], pair['cloth'])
        assert entry['scores'] == report['per_pair'].get(pair['key'], {})
        assert entry['subsets'] == tags[pair['key']]
        assert entry['list'] == ('paired' if (pair['person'], pair['cloth']) in paired else 'unpaired')
    assert f'<th scope="row">{html.escape(run_name)}</th>' in text
    assert f'title="{html.escape(LPIPS_MISSING)}"' in text   # the reason of an unavailable metric


def test_strip_paths_are_relative_to_the_page_and_resolve_to_the_strips(tmp_path):
    paired, unpaired = viton_pairs(4, stem=lambda i: f'p{i}#?%')
    strips, metrics_json, _ = make_run(tmp_path / 'my runs' / 'a', paired, unpaired, seed=2)
    page = tmp_path / 'pages' / 'gallery' / 'index.html'

    data = gallery.write_gallery([gallery.load_run('a', strips, metrics_json)], page)

    for pair in data['pairs']:
        url = pair['runs'][0]['strip']
        assert not url.startswith('/') and '#' not in url and '?' not in url and ' ' not in url
        resolved = (page.parent / unquote(url)).resolve()
        assert resolved == (strips / strip_name(pair['person'], pair['cloth'])).resolve() and resolved.is_file()


def test_a_missing_metrics_file_is_one_line_naming_it_and_the_fix(tmp_path, capsys):
    strips = write_strips(tmp_path / 'strips', [('000001_0.jpg', '000001_1.jpg')])
    missing = tmp_path / 'nowhere' / 'metrics.json'

    code = gallery.main(['--run', 'a', str(strips), str(missing), '--out', str(tmp_path / 'index.html')])

    error = capsys.readouterr().err
    assert code == 2 and error.count('\n') == 1 and 'Traceback' not in error
    assert error.startswith(f'error: metrics file not found: {missing}') and 'evaluate.py' in error
    assert not (tmp_path / 'index.html').exists()


def test_a_missing_strips_folder_is_one_line_naming_it_and_the_fix(tmp_path, capsys):
    paired, unpaired = viton_pairs(5)
    _, metrics_json, _ = make_run(tmp_path / 'run', paired, unpaired, seed=3)
    missing = tmp_path / 'no_strips'

    code = gallery.main(['--run', 'a', str(missing), str(metrics_json), '--out', str(tmp_path / 'index.html')])

    error = capsys.readouterr().err
    assert code == 2 and error.count('\n') == 1 and 'Traceback' not in error
    assert error.startswith(f'error: strips folder not found: {missing}') and 'smart_show_test_result.py' in error


def test_a_run_without_metrics_shows_its_strips_without_scores(tmp_path, capsys):
    paired, unpaired = viton_pairs(5)
    strips = write_strips(tmp_path / 'strips', unpaired)
    pairs_file = write_pairs(tmp_path / 'test_pairs.txt', unpaired)
    page = tmp_path / 'index.html'

    assert gallery.main(['--run', 'a', str(strips), '-', '--pairs', str(pairs_file), '--out', str(page)]) == 0

    data = page_data(page)
    assert [pair['runs'][0]['scores'] for pair in data['pairs']] == [{}] * 5 and data['metrics'] == []
    assert 'no metrics file given' in page.read_text(encoding='utf-8')
    assert gallery.main(['--run', 'a', str(strips), '-', '--out', str(page)]) == 2
    assert '--pairs' in capsys.readouterr().err


def test_smart_show_html_writes_the_page_of_its_strips(tmp_path):
    paired, unpaired = viton_pairs(5)
    _, metrics_json, report = make_run(tmp_path / 'run', paired, unpaired, seed=4)
    data_list = write_pairs(tmp_path / 'shown_pairs.txt', paired + unpaired)
    out_simple = tmp_path / 'result_simple'

    # no results: the strips are crossed grey panels, which is all the page needs
    assert smart_show_test_result.main(['--dataroot', str(tmp_path), '--data_list', data_list.name,
                                        '--result_dir', str(tmp_path / 'result'), '--out_simple', str(out_simple),
                                        '--out_verbose', '', '--html', '--metrics', str(metrics_json)]) == 0

    data = page_data(out_simple / 'index.html')
    assert [pair['key'] for pair in data['pairs']] == [pair_key(*pair) for pair in paired + unpaired]
    assert all(pair['runs'][0]['scores'] == report['per_pair'].get(pair['key'], {}) for pair in data['pairs'])
    assert data['pairs'][0]['runs'][0]['strip'] == strip_name(*paired[0])


def test_smart_show_html_also_renders_the_scored_pairs_that_vitons_test_list_lacks(tmp_path):
    """VITON's test_pairs.txt holds different-cloth pairs only; the scores are the same-cloth pairs'."""
    paired, unpaired = viton_pairs(5)
    _, metrics_json, report = make_run(tmp_path / 'run', paired, unpaired, seed=4)
    data_list = write_pairs(tmp_path / 'test_pairs.txt', unpaired)
    out_simple = tmp_path / 'result_simple'

    assert smart_show_test_result.main(['--dataroot', str(tmp_path), '--data_list', data_list.name,
                                        '--result_dir', str(tmp_path / 'result'), '--out_simple', str(out_simple),
                                        '--out_verbose', '', '--html', '--metrics', str(metrics_json),
                                        '--run_name', 'cpvton']) == 0

    assert sorted(path.name for path in out_simple.glob('*.png')) == sorted(strip_name(*p) for p in paired + unpaired)
    data = page_data(out_simple / 'index.html')
    scored = {pair['key'] for pair in data['pairs'] if pair['runs'][0]['scores']}
    assert scored == set(report['per_pair']) and data['runs'][0]['name'] == 'cpvton'


def test_a_report_of_another_program_is_one_line_naming_what_it_lacks(tmp_path, capsys):
    strips = write_strips(tmp_path / 'strips', [('000001_0.jpg', '000001_1.jpg')])
    old = tmp_path / 'old_metrics.json'
    old.write_text(json.dumps({'metrics': {}}))

    assert gallery.main(['--run', 'a', str(strips), str(old), '--out', str(tmp_path / 'index.html')]) == 2

    error = capsys.readouterr().err
    assert error.count('\n') == 1 and 'has no "per_pair"' in error and f'python evaluate.py --out {old}' in error


def test_the_page_never_replaces_a_file_that_is_not_a_gallery_page(tmp_path, capsys):
    paired, unpaired = viton_pairs(4)
    strips, metrics_json, _ = make_run(tmp_path / 'run', paired, unpaired, seed=2)
    notes = tmp_path / 'notes.html'
    notes.write_text('<p>my notes</p>')
    arguments = ['--run', 'a', str(strips), str(metrics_json), '--out']

    assert gallery.main(arguments + [str(notes)]) == 2
    assert notes.read_text() == '<p>my notes</p>' and 'is not a gallery page' in capsys.readouterr().err
    assert gallery.main(arguments + [str(tmp_path)]) == 2 and 'is a folder' in capsys.readouterr().err
    page = tmp_path / 'index.html'
    assert gallery.main(arguments + [str(page)]) == 0 and gallery.main(arguments + [str(page)]) == 0   # its own


def test_the_demo_run_maps_every_scored_pair_to_its_strip(monkeypatch):
    if not (REPO / 'demo' / 'metrics.json').is_file():
        pytest.skip('demo/metrics.json is absent: bash scripts/demo.sh makes it')
    monkeypatch.chdir(REPO)   # the report's pair lists are relative to where evaluate.py ran
    run = gallery.load_run('demo', 'demo/result_simple', 'demo/metrics.json')

    entries, _, info = gallery.run_view(run, REPO / 'demo')

    assert set(run.report['per_pair']) <= set(entries)
    assert all(entries[key]['scores'] == scores for key, scores in run.report['per_pair'].items())
    assert not any('no strip' in note for note in info['notes'])


# ----------------------------------------------------------------------------------------------------
# In headless Chromium
# ----------------------------------------------------------------------------------------------------

def test_sorting_filtering_and_searching_in_the_browser(browser, tmp_path):
    paired, unpaired = viton_pairs(12)
    strips, metrics_json, report = make_run(tmp_path / 'run', paired, unpaired, seed=5, lpips=True)
    page = tmp_path / 'site' / 'index.html'
    gallery.main(['--run', 'cpvton', str(strips), str(metrics_json), '--out', str(page)])
    keys = list(dict.fromkeys(pair_key(*pair) for pair in paired + unpaired))

    open_page(browser, page)

    assert shown_keys(browser, 'view-run-0') == worst_first(report, keys, 'ssim')   # the default sort
    assert count_text(browser) == f'{len(keys)} of {len(keys)} pairs shown'
    choose(browser, 'sort-key', 'lpips')
    assert shown_keys(browser, 'view-run-0') == worst_first(report, keys, 'lpips')   # descending: worst first
    choose(browser, 'sort-key', 'iou')
    choose(browser, 'sort-order', 'best')
    scored = [key for key in worst_first(report, keys, 'iou') if key in report['per_pair']]
    assert shown_keys(browser, 'view-run-0')[:len(scored)] == scored[::-1]
    choose(browser, 'sort-order', 'worst')

    for subset in ('textured', 'occluded'):
        choose(browser, 'subset', subset)
        members = set(sum(report['subsets'][subset]['pairs'].values(), []))
        assert set(shown_keys(browser, 'view-run-0')) == members
        assert shown_keys(browser, 'view-run-0') == [key for key in worst_first(report, keys, 'iou') if key in members]
        assert count_text(browser) == f'{len(members)} of {len(keys)} pairs shown'
    choose(browser, 'subset', '')

    search(browser, '000004_0.jpg')
    assert set(shown_keys(browser, 'view-run-0')) == {key for key in keys if key.startswith('000004_0_')}
    assert count_text(browser) == f'2 of {len(keys)} pairs shown'
    search(browser, '000007_1')   # a cloth: worn by its own person and by person 4
    assert set(shown_keys(browser, 'view-run-0')) == {'000007_0_000007_1.jpg', '000004_0_000007_1.jpg'}
    search(browser, '')

    first = browser.find_element('css selector', '#view-run-0 .card')
    assert first.get_attribute('data-iou') == repr(report['per_pair'][first.get_attribute('data-key')]['iou'])
    assert browser.execute_script("return [...document.images].slice(0, 4).every(i => i.complete && i.naturalWidth)")
    save_screenshot(browser, tmp_path, 'gallery.png')
    assert_no_console_errors(browser)


def test_the_comparison_view_lines_up_each_pair_across_runs(browser, tmp_path):
    paired, unpaired = viton_pairs(10)
    strips_a, metrics_a, report_a = make_run(tmp_path / 'a', paired, unpaired, seed=6)
    strips_b, metrics_b, report_b = make_run(tmp_path / 'b', paired, unpaired, seed=7)
    page = tmp_path / 'index.html'
    gallery.main(['--run', 'A', str(strips_a), str(metrics_a), '--run', 'B', str(strips_b), str(metrics_b),
                  '--out', str(page)])
    keys = list(dict.fromkeys(pair_key(*pair) for pair in paired + unpaired))

    open_page(browser, page)
    choose(browser, 'view', 'compare')
    choose(browser, 'delta-metric', 'ssim')

    both = [key for key in keys if all('ssim' in report['per_pair'].get(key, {}) for report in (report_a, report_b))]
    delta = {key: report_b['per_pair'][key]['ssim'] - report_a['per_pair'][key]['ssim'] for key in both}
    rest = [key for key in keys if key not in delta]
    assert shown_keys(browser, 'view-compare') == sorted(both, key=delta.get) + rest      # largest loss first
    choose(browser, 'delta-order', 'gain')
    assert shown_keys(browser, 'view-compare') == sorted(both, key=delta.get, reverse=True) + rest
    assert count_text(browser) == f'{len(keys)} of {len(keys)} pairs shown'

    rows = browser.execute_script(
        "return [...document.querySelectorAll('#view-compare .row')].map(row => [row.dataset.key,"
        " [...row.querySelectorAll('.cell')].map(cell => cell.querySelector('img').getAttribute('src'))]);")
    names = {pair_key(*pair): strip_name(*pair) for pair in paired + unpaired}
    for key, (src_a, src_b) in rows:
        assert unquote(src_a) == f'a/result_simple/{names[key]}' and unquote(src_b) == f'b/result_simple/{names[key]}'
    first = browser.find_element('css selector', '#view-compare .row')
    assert float(first.get_attribute('data-delta')) == pytest.approx(delta[first.get_attribute('data-key')])

    choose(browser, 'subset', 'occluded')
    members = set(sum(report_a['subsets']['occluded']['pairs'].values(), []))
    assert set(shown_keys(browser, 'view-compare')) == members
    search(browser, '000003_0')
    assert set(shown_keys(browser, 'view-compare')) == {key for key in members if key.startswith('000003_0_')}
    save_screenshot(browser, tmp_path, 'compare.png', suffix='_compare')
    assert_no_console_errors(browser)


def timed(driver, action):
    """Milliseconds that `action` (JS on `c`, the page's controls) takes, layout included."""
    return driver.execute_script(
        "const t = performance.now();" + action + ";"
        "document.body.offsetHeight;"   # force style and layout, so that they are timed too
        "return performance.now() - t;")


def test_sort_and_filter_take_under_a_second_at_viton_scale(browser, tmp_path):
    paired, unpaired = viton_pairs(VITON_TEST_PAIRS // 2)   # 1,016 persons: 2,032 pairs
    # one folder of 1x1 strips for all three runs: the page only needs the files to exist
    strips = write_strips(tmp_path / 'strips', list(dict.fromkeys(paired + unpaired)), tiny_png())
    arguments, reports = [], []
    for seed, name in enumerate(('cpvton', 'cpvton_plus', 'ablation')):
        folder = tmp_path / name
        folder.mkdir()
        reports.append(make_report(folder, paired, unpaired, seed, lpips=True))
        arguments += ['--run', name, str(strips), str(write_metrics(folder, reports[-1]))]
    page = tmp_path / 'index.html'
    start = time.perf_counter()
    assert gallery.main(arguments + ['--out', str(page)]) == 0
    written = time.perf_counter() - start

    open_page(browser, page)
    loaded = browser.execute_script("return performance.now()")
    assert count_text(browser) == f'{VITON_TEST_PAIRS} of {VITON_TEST_PAIRS} pairs shown'
    figures = {
        'sort by IoU': timed(browser, "const c = document.getElementById('sort-key'); c.value = 'iou';"
                                      "c.dispatchEvent(new Event('change'))"),
        'filter textured': timed(browser, "const c = document.getElementById('subset'); c.value = 'textured';"
                                          "c.dispatchEvent(new Event('change'))"),
        'search': timed(browser, "const c = document.getElementById('search'); c.value = '000123';"
                                 "c.dispatchEvent(new Event('input'))"),
        'open the comparison (built once)': timed(browser, "const c = document.getElementById('view');"
                                                           "c.value = 'compare'; c.dispatchEvent(new Event('change'))"),
        'compare: sort by SSIM difference': timed(browser, "const c = document.getElementById('delta-order');"
                                                           "c.value = 'gain'; c.dispatchEvent(new Event('change'))"),
        'compare: filter occluded': timed(browser, "const s = document.getElementById('search'); s.value = '';"
                                                   "const c = document.getElementById('subset'); c.value = 'occluded';"
                                                   "c.dispatchEvent(new Event('change'))"),
    }
    print(f'\n{VITON_TEST_PAIRS} pairs x 3 runs: page written in {written:.1f} s, '
          f'{page.stat().st_size / 1e6:.1f} MB, loaded in {loaded:.0f} ms; ' +
          ', '.join(f'{what} {ms:.0f} ms' for what, ms in figures.items()))
    for what, ms in figures.items():
        assert ms < 1000, (what, ms)
    assert loaded < 2000, loaded     # navigation and the first view, on a shared 2-core machine
    occluded = reports[0]['subsets']['occluded']['pairs']
    assert sorted(shown_keys(browser, 'view-compare')) == sorted(set(occluded['paired'] + occluded['unpaired']))
    assert_no_console_errors(browser)
