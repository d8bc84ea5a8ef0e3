"""ablation.py end to end on a tiny budget: the table, the strips, GMM reuse, a method's row (VITON), and its output
folder rules."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import ablation
from synthetic_data import generate_dataset


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A 1-step ablation of the baseline, one TOM option, VITON (and its oracle-mask test), WUTON and a noise row
    (seed 4) on user data without a same-cloth pairs list."""
    root = tmp_path_factory.mktemp('ablation')
    data = root / 'user_data'
    generate_dataset(str(data), n_train=4, n_test=4, seed=3)
    os.remove(data / 'test_pairs_paired.txt')      # derived from test_pairs.txt, as for VITON
    before = sorted(str(p.relative_to(data)) for p in data.rglob('*'))
    out = root / 'out'
    assert ablation.main(['--out', str(out), '--dataroot', str(data),
                          '--variants', 'tom_mask_input,viton,viton_parse_mask,wuton',
                          '--gmm_steps', '1', '--tom_steps', '1', '--viton_coarse_steps', '1',
                          '--viton_refine_steps', '1', '--wuton_steps', '1', '--batch_size', '2',
                          '--hard_pairs', '2',
                          '--seed', '3', '--workers', '0', '--gpu_ids', '-1']) == 0
    return out, data, before


def table_rows(markdown):
    return [line for line in markdown.splitlines() if line.startswith('| ') and not line.startswith('| variant')]


def test_the_report_has_a_row_per_variant_with_subset_columns(run):
    out, _, _ = run
    report = (out / 'ablation.md').read_text()
    rows = table_rows(report)
    assert [row.split(' | ')[0].strip('| ') for row in rows] == ['baseline', 'tom_mask_input', 'viton',
                                                                 'viton_parse_mask', 'wuton', 'baseline_seed4']
    header = next(line for line in report.splitlines() if line.startswith('| variant'))
    for column in ('IoU all (n=4)', 'IoU textured', 'IoU occluded', 'SSIM all (n=4)', 'SSIM textured'):
        assert column in header
    baseline_iou = float(rows[0].split(' | ')[1])
    assert 0 <= baseline_iou <= 1
    assert '(±0.000)' in rows[1].split(' | ')[1]   # same GMM, so the same IoU
    assert '(±0.000)' not in rows[5].split(' | ')[1]   # another seed, another GMM
    assert report.startswith('# Methods: comparison')
    assert [row.split(' | ')[-2] for row in rows] == (['GMM 1 + TOM 1'] * 2 + ['coarse 1 + refine 1'] * 2 +
                                                      ['end to end 1', 'GMM 1 + TOM 1'])


def test_the_oracle_viton_row_reuses_vitons_training_and_matches_the_parse_masks(run):
    out, _, _ = run
    assert not (out / 'viton_parse_mask' / 'checkpoints').exists()        # VITON's stages, tested otherwise
    oracle = json.loads((out / 'viton_parse_mask' / 'metrics.json').read_text())
    # the shape-context warp onto the person's own label-5 mask (measured 0.92 on synthetic persons)
    assert oracle['metrics']['iou']['value'] > 0.8
    assert oracle['settings']['tryon_dir'].endswith(os.path.join('viton_parse_mask', 'result',
                                                                 'viton_refine_final.pth', 'test', 'try-on'))


def test_the_wuton_row_scores_its_learned_warp_and_try_on(run):
    out, _, _ = run
    report = json.loads((out / 'wuton' / 'metrics.json').read_text())
    for key, kind in (('warp_mask_dir', 'warp-mask'), ('tryon_dir', 'try-on')):
        assert report['settings'][key].endswith(os.path.join('wuton', 'result', 'wuton_final.pth', 'test', kind))
    options = json.loads((out / 'wuton' / 'checkpoints' / 'wuton' / 'options.json').read_text())
    assert options['stage'] == 'WUTON' and options['keep_step'] + options['decay_step'] == 1


def test_the_viton_row_scores_its_shape_context_warp_and_refined_try_on(run):
    out, _, _ = run
    report = json.loads((out / 'viton' / 'metrics.json').read_text())
    assert report['settings']['warp_mask_dir'].endswith(os.path.join('viton', 'result', 'shape_context', 'test',
                                                                   'warp-mask'))
    assert report['settings']['tryon_dir'].endswith(os.path.join('viton_refine_final.pth', 'test', 'try-on'))
    # after one step stage 1's masks may be empty: the identity warp then, the cloth mask as it is
    assert 0.3 < report['metrics']['iou']['value'] <= 1
    refine = json.loads((out / 'viton' / 'checkpoints' / 'viton_refine' / 'options.json').read_text())
    assert refine['bn_momentum'] == 0.1     # the comparison's, for short budgets
    assert refine['keep_step'] + refine['decay_step'] == 1 and refine['coarse_checkpoint'].endswith(
        os.path.join('viton_coarse', 'viton_coarse_final.pth'))


def test_a_tom_only_option_reuses_the_baseline_gmm(run):
    out, _, _ = run
    assert (out / 'baseline' / 'checkpoints' / 'gmm' / 'gmm_final.pth').is_file()
    assert not (out / 'tom_mask_input' / 'checkpoints' / 'gmm').exists()
    assert (out / 'tom_mask_input' / 'checkpoints' / 'tom' / 'options.json').is_file()
    noise_run = json.loads((out / 'baseline_seed4' / 'checkpoints' / 'gmm' / 'options.json').read_text())
    assert noise_run['seed'] == 4


def test_strips_show_the_same_pairs_for_every_variant(run):
    out, _, _ = run
    report = (out / 'ablation.md').read_text()
    for name in ('inputs', 'baseline', 'tom_mask_input', 'viton', 'viton_parse_mask', 'wuton', 'baseline_seed4'):
        assert f'(strips/{name}.png)' in report
        assert Image.open(out / 'strips' / f'{name}.png').width == 2 * 2 * 192   # 2 pairs x 2 panels


def test_the_users_data_is_not_written_to(run):
    out, data, before = run
    assert sorted(str(p.relative_to(data)) for p in data.rglob('*')) == before
    assert (out / 'data' / 'test_pairs_paired.txt').read_text().count('\n') == 4


def test_an_existing_output_folder_is_kept_unless_overwrite(run, tmp_path):
    out, _, _ = run
    with pytest.raises(SystemExit, match='--overwrite'):
        ablation.main(['--out', str(out)])
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    with pytest.raises(SystemExit, match='not made by ablation.py'):
        ablation.main(['--out', str(foreign), '--overwrite'])
    assert (foreign / 'notes.txt').read_text() == 'mine'


def test_the_gallery_lines_up_every_variants_strip_of_each_pair(run):
    out, _, _ = run
    page = (out / 'index.html').read_text(encoding='utf-8')
    data = json.loads(re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', page,
                                re.S).group(1))
    names = ['baseline', 'tom_mask_input', 'viton', 'viton_parse_mask', 'wuton', 'baseline_seed4']
    assert [info['name'] for info in data['runs']] == names
    assert len(data['pairs']) == 4                   # the derived same-cloth pairs
    for pair in data['pairs']:
        strips = [out / entry['strip'] for entry in pair['runs']]
        assert [strip.parent.name for strip in strips] == ['result_simple'] * 6
        assert [strip.parent.parent.name for strip in strips] == names
        assert all(strip.is_file() for strip in strips)
        assert [entry['scores']['ssim'] for entry in pair['runs']] == [
            json.loads((out / name / 'metrics.json').read_text())['per_pair'][pair['key']]['ssim'] for name in names]
        # tom_mask_input reuses the baseline's GMM: the same warp panels (5th and 6th of 7), another try-on;
        # VITON's strip shows its own (shape-context) warp
        warps = [np.asarray(Image.open(strip))[:, 4 * 192:6 * 192] for strip in strips[:3]]
        assert np.array_equal(warps[0], warps[1]) and not np.array_equal(warps[0], warps[2])
    assert '[the gallery](index.html)' in (out / 'ablation.md').read_text()
