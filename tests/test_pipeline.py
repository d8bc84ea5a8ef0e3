"""The step1..step5 scripts, train.py/test.py, TensorBoard logs, the strips and the gallery page, end to end on
synthetic data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, assert_no_console_errors, choose, count_text, open_page, save_screenshot, shown_keys
from cp_dataset import pair_key, read_pairs
from synthetic_data import generate_dataset

STEPS = 4          # per stage: keep 2 + decay 2
SAVE_COUNT = 2
DISPLAY_COUNT = 2


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    """Runs the five step scripts on a tiny synthetic dataset; returns the run's folders."""
    root = tmp_path_factory.mktemp('pipeline')
    generate_dataset(str(root / 'data'), n_train=6, n_test=3, seed=0)
    # As in VITON, which ships no same-cloth test list: steps 2 and 5 must write it themselves.
    generated_paired = root / 'data' / 'test_pairs_paired.txt'
    generated_paired.rename(root / 'generated_test_pairs_paired.txt')
    env = dict(os.environ, PYTHON=sys.executable, DATAROOT=str(root / 'data'),
               CHECKPOINT_DIR=str(root / 'checkpoints'), TENSORBOARD_DIR=str(root / 'tensorboard'),
               RESULT_DIR=str(root / 'result'), LOG_DIR=str(root / 'logs'), WORKERS='0',
               SAVE_COUNT=str(SAVE_COUNT), GMM_KEEP_STEP='2', GMM_DECAY_STEP='2', TOM_KEEP_STEP='2',
               TOM_DECAY_STEP='2')
    common = ['--gpu_ids', '-1', '--batch-size', '2']
    train_args = ['--display_count', str(DISPLAY_COUNT), '--seed', '0']
    for script, args in (('step1-train-gmm.sh', common + train_args), ('step2-test-gmm.sh', common),
                         ('step3-generate-tom-data.sh', common),
                         ('step4-train-tom.sh', common + train_args + ['--vgg_init', 'random']),
                         ('step5-test-tom.sh', common)):
        completed = subprocess.run(['bash', str(REPO / 'scripts' / script)] + args, env=env, cwd=REPO,
                                   capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, f'{script} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}'
    subprocess.run([sys.executable, 'smart_show_test_result.py', '--dataroot', str(root / 'data'),
                    '--result_dir', str(root / 'result'), '--out_simple', str(root / 'result_simple'),
                    '--out_verbose', str(root / 'result_verbose')], cwd=REPO, check=True, capture_output=True)
    return root


def test_training_writes_the_original_checkpoint_files(pipeline):
    for name, final in (('gmm_train_new', 'gmm_final.pth'), ('tom_train_new', 'tom_final.pth')):
        files = sorted(p.name for p in (pipeline / 'checkpoints' / name).iterdir())
        assert files == sorted([final, 'options.json', 'resume.pth', 'resume.prev.pth', 'step_000002.pth',
                                'step_000004.pth', 'train.lock'])


def test_the_step_scripts_write_the_same_cloth_list_viton_lacks_and_say_so(pipeline):
    written = pipeline / 'data' / 'test_pairs_paired.txt'
    assert written.read_text() == (pipeline / 'generated_test_pairs_paired.txt').read_text()
    logs = sorted((pipeline / 'logs').glob('paired-test-list-*.log'))
    assert len(logs) == 1, 'written once (step 2), then used as it is (step 5)'
    assert f'wrote {written}: derived 3 same-cloth pairs from the persons of test_pairs.txt' in logs[0].read_text()


def test_results_are_written_for_every_test_pair(pipeline):
    data = pipeline / 'data'
    pairs = read_pairs(str(data / 'test_pairs.txt')) + read_pairs(str(data / 'test_pairs_paired.txt'))
    keys = {pair_key(p, c) for p, c in pairs}
    gmm = pipeline / 'result' / 'gmm_final.pth' / 'test'
    tom = pipeline / 'result' / 'tom_final.pth' / 'test'
    for folder in (gmm / 'warp-cloth', gmm / 'warp-mask', tom / 'try-on'):
        assert {p.name for p in folder.iterdir()} == keys, folder
    image = Image.open(tom / 'try-on' / sorted(keys)[0])
    assert image.size == (192, 256) and image.mode == 'RGB'


def test_step3_places_the_warps_where_tom_reads_them(pipeline):
    train_pairs = read_pairs(str(pipeline / 'data' / 'train_pairs.txt'))
    for folder in ('warp-cloth', 'warp-mask'):
        placed = {p.name for p in (pipeline / 'data' / 'train' / folder).iterdir()}
        assert placed == {pair_key(p, c) for p, c in train_pairs}


def test_step3_moves_existing_warps_aside(tmp_path):
    """Running step 3 again must not overwrite the user's warps silently."""
    src, dst = tmp_path / 'src', tmp_path / 'dst'
    src.mkdir(), dst.mkdir()
    (src / 'a.jpg').write_bytes(b'new')
    (dst / 'a.jpg').write_bytes(b'mine')
    out = subprocess.run(['bash', '-c', f'source scripts/common.sh && place_results {src} {dst}'], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    backups = list(tmp_path.glob('dst.bak-*'))
    assert len(backups) == 1 and (backups[0] / 'a.jpg').read_bytes() == b'mine'
    assert (dst / 'a.jpg').read_bytes() == b'new'
    assert 'moved it to' in out


def test_step3_fills_an_existing_empty_folder(tmp_path):
    src, dst = tmp_path / 'src', tmp_path / 'dst'
    src.mkdir(), dst.mkdir()
    (src / 'a.jpg').write_bytes(b'new')
    subprocess.run(['bash', '-c', f'source scripts/common.sh && place_results {src} {dst}'], cwd=REPO,
                   capture_output=True, check=True)
    assert [str(path.relative_to(dst)) for path in dst.rglob('*')] == ['a.jpg']   # not dst/src/a.jpg


def test_each_step_logs_to_a_file(pipeline):
    logs = sorted(p.name for p in (pipeline / 'logs').iterdir())
    for step in ('step1-train-gmm', 'step2-test-gmm', 'step3-generate-tom-data', 'step4-train-tom', 'step5-test-tom'):
        assert any(name.startswith(step) for name in logs), step
    gmm_log = next((pipeline / 'logs').glob('step1-train-gmm-*.log')).read_text()
    assert 'step:        2, time: ' in gmm_log and 'eta' in gmm_log
    for log in (pipeline / 'logs').glob('step[235]-*.log'):   # test.py's progress: plain lines, no tqdm frames
        assert '\r' not in log.read_text(), log.name
    test_logs = sorted(log.read_text() for log in (pipeline / 'logs').glob('step2-test-gmm-*.log'))
    assert len(test_logs) == 2                                  # one per test list, none overwritten
    assert [log.count('test GMM: 3/3 batches, ') + log.count('test GMM: 2/2 batches, ') for log in test_logs] == [1, 1]


def read_events(run_dir):
    accumulator = EventAccumulator(str(run_dir), size_guidance={'images': 0, 'scalars': 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize('run, scalars', [('gmm_train_new', {'metric', 'lr'}),
                                          ('tom_train_new', {'metric', 'L1', 'VGG', 'MaskL1', 'lr'})])
def test_tensorboard_has_the_original_tags_at_the_display_steps(pipeline, run, scalars):
    events = read_events(pipeline / 'tensorboard' / run)
    tags = events.Tags()
    assert set(tags['scalars']) == scalars
    assert set(tags['images']) == {'combine/000', 'combine/001'}
    for tag in scalars:
        assert [e.step for e in events.Scalars(tag)] == list(range(DISPLAY_COUNT, STEPS + 1, DISPLAY_COUNT))
    image = events.Images('combine/000')[-1]
    assert (image.width, image.height) == (3 * 192, 3 * 256)    # the 3x3 'combine' layout
    lr = [e.value for e in events.Scalars('lr')]
    assert lr[0] == pytest.approx(1e-4) and lr[-1] < lr[0]     # the schedule really decays


def test_strips_have_seven_panels(pipeline):
    pairs = read_pairs(str(pipeline / 'data' / 'test_pairs.txt'))
    strips = sorted((pipeline / 'result_simple').iterdir())
    assert len(strips) == len(pairs)
    person, cloth = pairs[0]
    strip = Image.open(pipeline / 'result_simple' / f'src_{person[:-4]}_dst_{cloth[:-4]}.png')
    assert strip.size == (7 * 192, 256)
    panels = np.asarray(strip).reshape(256, 7, 192, 3)
    assert all(panels[:, i].std() > 1 for i in range(7)), 'a panel is blank'
    verbose = Image.open(pipeline / 'result_verbose' / strips[0].name)
    assert verbose.width == 5 * 192 and verbose.height > 2 * 256


def test_strips_can_carry_each_pairs_ssim(pipeline, tmp_path):
    import smart_show_test_result
    smart_show_test_result.main(['--dataroot', str(pipeline / 'data'), '--result_dir', str(pipeline / 'result'),
                                 '--out_simple', str(tmp_path), '--out_verbose', '', '--annotate_ssim'])
    name = sorted(p.name for p in (pipeline / 'result_simple').iterdir())[0]
    plain = np.asarray(Image.open(pipeline / 'result_simple' / name)).astype(int)
    annotated = np.asarray(Image.open(tmp_path / name)).astype(int)
    assert (plain[:20, :120] != annotated[:20, :120]).any()       # the label in the top-left corner
    assert (plain[40:] == annotated[40:]).all()                     # and nothing else changed


def test_the_pipelines_gallery_page_orders_and_filters_as_metrics_json_in_a_browser(pipeline, browser, tmp_path):
    """The demo's last commands (evaluate.py, then smart_show_test_result.py --html) on the pipeline's results,
    and the page they write looked at in headless Chromium."""
    import evaluate
    import smart_show_test_result
    metrics_json, strips = tmp_path / 'metrics.json', tmp_path / 'result_simple'
    assert evaluate.main(['--dataroot', str(pipeline / 'data'), '--result_dir', str(pipeline / 'result'),
                          '--metrics', 'iou,ssim,ssim_matlab', '--workers', '0', '--out', str(metrics_json)]) == 0
    assert smart_show_test_result.main(['--dataroot', str(pipeline / 'data'), '--result_dir', str(pipeline / 'result'),
                                        '--out_simple', str(strips), '--out_verbose', '', '--annotate_ssim',
                                        '--html', '--metrics', str(metrics_json)]) == 0
    report = json.loads(metrics_json.read_text())
    listed = [pair_key(*pair) for pair in read_pairs(str(pipeline / 'data' / 'test_pairs.txt'))]
    by_ssim = sorted(report['per_pair'], key=lambda key: report['per_pair'][key]['ssim'])

    open_page(browser, strips / 'index.html')

    shown = shown_keys(browser, 'view-run-0')
    assert sorted(shown) == sorted(listed)
    assert shown[:len(by_ssim)] == by_ssim             # worst SSIM first; the unpaired pairs (unscored) after
    assert count_text(browser) == f'{len(listed)} of {len(listed)} pairs shown'
    for subset, entry in report['subsets'].items():
        choose(browser, 'subset', subset)
        assert set(shown_keys(browser, 'view-run-0')) == set(sum(entry['pairs'].values(), []))
    choose(browser, 'subset', '')
    assert browser.execute_script("return [...document.images].slice(0, 2).every(i => i.complete && i.naturalWidth)")
    save_screenshot(browser, tmp_path, 'pipeline_gallery.png', '_pipeline')
    assert_no_console_errors(browser)


def lists_tested_by_step_2(tmp_path, test_pairs, clothes, **env):
    """TEST_LISTS after step 2's with_paired_test_list on a data folder with these pairs and cloth files."""
    data = tmp_path / 'data'
    (data / 'test' / 'cloth').mkdir(parents=True)
    for cloth in clothes:
        (data / 'test' / 'cloth' / cloth).write_bytes(b'')
    (data / 'test_pairs.txt').write_text(''.join(f'{p} {c}\n' for p, c in test_pairs))
    script = f'source {REPO / "scripts" / "common.sh"}; with_paired_test_list write; echo "lists: $TEST_LISTS"'
    completed = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=120, cwd=REPO,
                               env=dict(os.environ, PYTHON=sys.executable, DATAROOT=str(data),
                                        LOG_DIR=str(tmp_path / 'logs'), **env))
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.splitlines()[-1], completed.stdout, data


def test_data_without_vitons_naming_is_tested_on_test_pairs_alone_with_a_note(tmp_path):
    last, output, data = lists_tested_by_step_2(tmp_path, [('alice.jpg', 'shirt.jpg')], ['shirt.jpg'])
    assert last == 'lists: test_pairs.txt'
    assert 'note: testing test_pairs.txt only' in output and not (data / 'test_pairs_paired.txt').exists()


def test_test_lists_set_by_the_user_are_tested_as_they_are(tmp_path):
    last, _, data = lists_tested_by_step_2(tmp_path, [('000001_0.jpg', '000002_1.jpg')], ['000001_1.jpg'],
                                           TEST_LISTS='test_pairs.txt')
    assert last == 'lists: test_pairs.txt' and not (data / 'test_pairs_paired.txt').exists()
    last, _, data = lists_tested_by_step_2(tmp_path / 'unset', [('000001_0.jpg', '000002_1.jpg')], ['000001_1.jpg'])
    assert last == 'lists: test_pairs.txt test_pairs_paired.txt'
    assert (data / 'test_pairs_paired.txt').read_text() == '000001_0.jpg 000001_1.jpg\n'
