"""The step1..step5 scripts, train.py/test.py, TensorBoard logs and the strips, end to end on synthetic data."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO
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
