"""learning_curves.py: a run's checkpoints scored on a test list with test.py's loop and evaluate.py's functions,
one point per checkpoint, the same numbers as test.py + evaluate.py, TensorBoard scalars, resumable, clear errors."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluate
import learning_curves
import test as test_script
import train
from conftest import REPO, pair_keyed_warps_from_clothes
from synthetic_data import generate_dataset

# keep 1 + decay 1 steps, batch 1, a step checkpoint every step: step_000001, step_000002 (= the final one's
# weights). Few steps and saves: each save writes the checkpoint and a resume state, and syncs them to the disk.
METRICS = {'GMM': ('iou',), 'TOM': ('ssim', 'ssim_matlab')}   # no LPIPS weights here (tests check that it says so)


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    """Synthetic data; GMM's warps faked by the in-shop cloth (pair-keyed, as test.py names them) so TOM trains
    and tests without a GMM pass."""
    root = tmp_path_factory.mktemp('curves_data')
    generate_dataset(str(root), n_train=4, n_test=3, seed=5, workers=1)
    pair_keyed_warps_from_clothes(root, (('train', 'train_pairs.txt'), ('test', 'test_pairs_paired.txt')))
    return root


@pytest.fixture(scope='module')
def runs(dataroot, tmp_path_factory):
    """{stage: run folder}: GMM and TOM (random VGG) trained 2 steps, a checkpoint after each."""
    workdir = tmp_path_factory.mktemp('curves_runs')
    folders = {}
    for stage, extra in (('GMM', []), ('TOM', ['--vgg_init', 'random'])):
        name = f'{stage.lower()}_run'
        assert train.main(['--name', name, '--stage', stage, '--dataroot', str(dataroot), '--gpu_ids', '-1',
                           '--workers', '0', '--batch-size', '1', '--keep_step', '1', '--decay_step', '1',
                           '--save_count', '1', '--display_count', '1', '--seed', '0',
                           '--checkpoint_dir', str(workdir / 'checkpoints'),
                           '--tensorboard_dir', str(workdir / 'tensorboard'), *extra]) == 0
        folders[stage] = workdir / 'checkpoints' / name
    return folders


def linked_copy(run, tmp_path):
    """A copy of a run folder with hard links for the checkpoints (instant, no disk); its tensorboard folder is
    tmp_path/tensorboard. Replace files in it with os.replace, never write into them."""
    copy = tmp_path / 'checkpoints' / run.name
    copy.mkdir(parents=True)
    for path in run.iterdir():
        if path.suffix == '.pth' and not path.name.startswith('resume'):
            os.link(path, copy / path.name)
    options = json.loads((run / 'options.json').read_text())
    options['tensorboard_dir'] = str(tmp_path / 'tensorboard')
    (copy / 'options.json').write_text(json.dumps(options))
    return copy


def curves_argv(run, dataroot, *extra):
    return ['--run_dir', str(run), '--dataroot', str(dataroot), '--workers', '0', '--device', 'cpu', *extra]


def read_csv(run):
    with open(run / 'curves.csv', newline='') as f:
        return list(csv.DictReader(f))


def points(rows):
    return [(int(row['step']), row['checkpoint']) for row in rows]


@pytest.fixture(scope='module')
def scored(runs, dataroot, tmp_path_factory):
    """scored(stage) -> (run folder copy, stdout) after one learning_curves.py call, made once per stage."""
    done = {}

    def score(stage, capsys):
        if stage not in done:
            run = linked_copy(runs[stage], tmp_path_factory.mktemp(f'scored_{stage}'))
            capsys.readouterr()
            assert learning_curves.main(curves_argv(run, dataroot)) == 0
            done[stage] = run, capsys.readouterr().out
        return done[stage]
    return score


@pytest.mark.parametrize('stage', ['GMM', 'TOM'])
def test_the_curve_has_one_point_per_checkpoint(scored, stage, capsys):
    run, out = scored(stage, capsys)
    final = f'{stage.lower()}_final.pth'
    rows = read_csv(run)
    # step_000002.pth and the final one are the same weights (train.py writes both at step 2): scored once.
    assert points(rows) == [(1, 'step_000001.pth'), (2, final)]
    assert f'step_000002.pth holds the same weights as {final} (step 2): scored once' in out
    assert all(row['pairs'] == '3' and row['data_list'] == 'test_pairs_paired.txt' for row in rows)
    assert all(row[metric] for row in rows for metric in METRICS[stage])
    assert not (run / 'curves').exists()                      # the work folder is removed
    if stage == 'TOM':
        assert out.count('note: LPIPS not scored: alexnet-owt-7be5be79.pth') == 1
        assert all(row['lpips'] == '' for row in rows)


@pytest.mark.parametrize('stage', ['GMM', 'TOM'])
def test_the_values_are_evaluate_pys_for_the_same_checkpoint(scored, dataroot, stage, tmp_path, capsys):
    run, _ = scored(stage, capsys)
    checkpoint = run / 'step_000001.pth'
    assert test_script.main(['--name', 'check', '--gpu_ids', '-1', '--workers', '0', '--dataroot', str(dataroot),
                             '--data_list', 'test_pairs_paired.txt', '--checkpoint', str(checkpoint),
                             '--result_dir', str(tmp_path / 'result'),
                             '--tensorboard_dir', str(tmp_path / 'tensorboard')]) == 0
    results = tmp_path / 'result' / checkpoint.name / 'test'
    assert evaluate.main(['--metrics', ','.join(METRICS[stage]), '--dataroot', str(dataroot), '--workers', '0',
                          '--device', 'cpu', '--warp_mask_dir', str(results / 'warp-mask'),
                          '--tryon_dir', str(results / 'try-on'), '--out', str(tmp_path / 'metrics.json')]) == 0
    metrics = json.loads((tmp_path / 'metrics.json').read_text())['metrics']
    row = next(row for row in read_csv(run) if row['checkpoint'] == checkpoint.name)
    for metric in METRICS[stage]:
        assert float(row[metric]) == pytest.approx(metrics[metric]['value'], abs=1e-9), metric
        assert metrics[metric]['num_images'] == int(row['pairs'])


@pytest.mark.parametrize('stage', ['GMM', 'TOM'])
def test_tensorboard_holds_the_scores_at_the_checkpoints_steps(scored, stage, capsys):
    run, out = scored(stage, capsys)
    board = run.parents[1] / 'tensorboard' / run.name          # train.py's folder for the run (options.json)
    assert any(path.name.endswith('.learning_curves') for path in board.iterdir())
    events = EventAccumulator(str(board), size_guidance={'scalars': 0})
    events.Reload()
    rows = read_csv(run)
    assert {f'eval/{metric}' for metric in METRICS[stage]} <= set(events.Tags()['scalars'])
    for metric in METRICS[stage]:
        scalars = events.Scalars(f'eval/{metric}')
        assert [event.step for event in scalars] == [int(row['step']) for row in rows]
        assert [event.value for event in scalars] == pytest.approx([float(row[metric]) for row in rows], abs=1e-6)
    assert str(board) in out


def test_the_plot_is_a_png_with_a_panel_per_metric(scored, capsys):
    for stage in ('GMM', 'TOM'):
        run, _ = scored(stage, capsys)
        with Image.open(run / 'curves.png') as image:
            image.verify()
        with Image.open(run / 'curves.png') as image:
            assert image.format == 'PNG' and image.width >= 600
            heights = image.height
        if stage == 'GMM':
            gmm_height = heights
    assert heights > gmm_height        # TOM: two panels (SSIM, SSIM-M), GMM: one (IoU)


def test_every_2_halves_the_curve_and_max_pairs_scores_the_first_pairs(runs, dataroot, tmp_path, capsys):
    run = linked_copy(runs['GMM'], tmp_path)
    assert learning_curves.main(curves_argv(run, dataroot, '--every', '2', '--max_pairs', '2')) == 0
    rows = read_csv(run)
    assert points(rows) == [(2, 'gmm_final.pth')]              # step_000002 (the 2nd) is the final one's twin
    assert rows[0]['pairs'] == '2'
    assert not (run / 'curves').exists()


def count_forward_passes(monkeypatch):
    calls = []
    original = test_script.test

    def counted(opt):
        calls.append(os.path.basename(opt.checkpoint))
        return original(opt)
    monkeypatch.setattr(test_script, 'test', counted)
    return calls


def test_a_second_call_scores_only_new_or_replaced_checkpoints(runs, dataroot, tmp_path, capsys, monkeypatch):
    run = linked_copy(runs['GMM'], tmp_path)
    held_back = tmp_path / 'step_000001.pth'
    os.replace(run / 'step_000001.pth', held_back)
    argv = curves_argv(run, dataroot, '--max_pairs', '1')
    calls = count_forward_passes(monkeypatch)
    assert learning_curves.main(argv) == 0
    assert calls == ['gmm_final.pth']                              # step_000002 is its twin
    first_csv = (run / 'curves.csv').read_bytes()
    board = tmp_path / 'tensorboard' / run.name
    event_files = sorted(board.iterdir())
    capsys.readouterr()

    assert learning_curves.main(argv) == 0                         # nothing new
    out = capsys.readouterr().out
    assert calls == ['gmm_final.pth']
    assert '0 to score, 1 skipped' in out and 'nothing new to score: 1 checkpoints skipped' in out
    assert (run / 'curves.csv').read_bytes() == first_csv
    assert sorted(board.iterdir()) == event_files                 # no new TensorBoard file either

    os.replace(held_back, run / 'step_000001.pth')                # a new checkpoint
    assert learning_curves.main(argv) == 0
    assert calls[1:] == ['step_000001.pth']
    assert points(read_csv(run)) == [(1, 'step_000001.pth'), (2, 'gmm_final.pth')]

    replacement = tmp_path / 'replacement.pth'                    # step_000001 replaced by other weights
    shutil.copy(run / 'gmm_final.pth', replacement)
    os.replace(replacement, run / 'step_000001.pth')
    assert learning_curves.main(argv) == 0
    assert calls[2:] == ['step_000001.pth']
    rows = {row['checkpoint']: row for row in read_csv(run)}
    assert len(rows) == 2 and rows['step_000001.pth']['iou'] == rows['gmm_final.pth']['iou']

    assert learning_curves.main(curves_argv(run, dataroot, '--max_pairs', '2')) == 0    # another setting
    assert calls[3:] == ['step_000001.pth', 'gmm_final.pth']
    assert len(read_csv(run)) == 4                                # both settings kept, each its own rows


def test_the_final_ones_twin_scored_before_it_was_written_loses_its_row(runs, dataroot, tmp_path, capsys,
                                                                        monkeypatch):
    run = linked_copy(runs['GMM'], tmp_path)
    os.replace(run / 'gmm_final.pth', tmp_path / 'gmm_final.pth')   # training not finished yet
    argv = curves_argv(run, dataroot, '--every', '2', '--max_pairs', '1')
    calls = count_forward_passes(monkeypatch)
    assert learning_curves.main(argv) == 0
    assert points(read_csv(run)) == [(2, 'step_000002.pth')]
    os.replace(tmp_path / 'gmm_final.pth', run / 'gmm_final.pth')   # ... now it is, from step 2's weights
    capsys.readouterr()
    assert learning_curves.main(argv) == 0
    assert calls == ['step_000002.pth', 'gmm_final.pth']
    assert points(read_csv(run)) == [(2, 'gmm_final.pth')]          # one point at step 2, not two
    assert f'removed the row of step_000002.pth from {run / "curves.csv"}' in capsys.readouterr().out


def test_lpips_weights_that_do_not_load_leave_lpips_out_so_a_second_call_skips(scored, runs, tmp_path, dataroot,
                                                                              capsys, monkeypatch):
    scored_run, _ = scored('TOM', capsys)                           # scored without LPIPS (no weights found)
    run = linked_copy(runs['TOM'], tmp_path)                        # the same checkpoint files (hard links)
    shutil.copy(scored_run / 'curves.csv', run / 'curves.csv')
    hub = tmp_path / 'hub'
    hub.mkdir()
    (hub / evaluate.WEIGHTS['lpips'].file_name).write_bytes(b'not a torch file')   # found, but will not load
    monkeypatch.setattr(evaluate, 'hub_checkpoint_dir', lambda: hub)
    calls = count_forward_passes(monkeypatch)
    capsys.readouterr()
    assert learning_curves.main(curves_argv(run, dataroot)) == 0
    out = capsys.readouterr().out
    assert calls == []
    assert out.count(f'note: LPIPS not scored: {hub / evaluate.WEIGHTS["lpips"].file_name} could not be loaded') == 1
    assert 'nothing new to score: 2 checkpoints skipped' in out

    garbage = hub / evaluate.WEIGHTS['lpips'].file_name               # passed explicitly: the user's mistake
    assert learning_curves.main(curves_argv(run, dataroot, '--lpips_weights', str(garbage))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {garbage} could not be loaded as') and err.count('\n') == 1


def test_a_damaged_checkpoint_stops_with_one_line_keeping_what_was_scored(runs, dataroot, tmp_path, capsys):
    run = linked_copy(runs['GMM'], tmp_path)
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes((run / 'step_000002.pth').read_bytes()[:100000])
    os.replace(damaged, run / 'step_000002.pth')
    capsys.readouterr()
    assert learning_curves.main(curves_argv(run, dataroot, '--max_pairs', '1')) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if 'error' in line.lower() or 'Traceback' in line]
    assert errors == [err.splitlines()[-1]]                       # before it, only evaluate.py's progress lines
    assert errors[0].startswith(f'error: {run / "step_000002.pth"} is truncated or corrupt')
    assert 'Replace or delete it, then run this command again' in errors[0]
    assert points(read_csv(run)) == [(1, 'step_000001.pth')]     # scored before it, kept
    assert not (run / 'curves').exists()


def error_cases(run, dataroot, tmp_path):
    """(description, argv, the error line's start) per user error."""
    empty = tmp_path / 'empty'
    empty.mkdir()
    no_steps = tmp_path / 'no_steps'
    no_steps.mkdir()
    shutil.copy(run / 'options.json', no_steps / 'options.json')
    garbage = tmp_path / 'garbage'
    garbage.mkdir()
    shutil.copy(run / 'options.json', garbage / 'options.json')
    (garbage / 'step_000001.pth').write_bytes(b'garbage')
    bad_pairs = tmp_path / 'bad_pairs.txt'
    bad_pairs.write_text('000001_0.jpg\n000002_0.jpg 000002_1.jpg extra\n')
    edited = {}
    for name, text in (('another_header', 'step;checkpoint;iou\n1;step_000001.pth;0.5\n'),
                       ('step_not_a_number', 'step,checkpoint,iou,pairs,data_list,data_list_sha256,datamode,'
                                             'checkpoint_bytes,checkpoint_mtime_ns,seconds\n'
                                             'one,step_000001.pth,0.5,3,test_pairs_paired.txt,0,test,1,1,1.0\n')):
        edited[name] = tmp_path / name
        edited[name].mkdir()
        shutil.copy(run / 'options.json', edited[name] / 'options.json')
        os.link(run / 'step_000001.pth', edited[name] / 'step_000001.pth')
        (edited[name] / 'curves.csv').write_text(text)
    return [
        ('run folder missing', curves_argv(tmp_path / 'nope', dataroot),
         f'error: --run_dir: {tmp_path / "nope"} is not a folder'),
        ('--name of a missing run', ['--name', 'nope', '--checkpoint_dir', str(tmp_path)],
         f'error: --name/--checkpoint_dir: {tmp_path / "nope"} is not a folder'),
        ('no options.json', curves_argv(empty, dataroot), f'error: {empty / "options.json"} not found'),
        ('no step checkpoints', curves_argv(no_steps, dataroot), f'error: {no_steps} holds no step checkpoints'),
        ('pairs list missing', curves_argv(run, dataroot, '--data_list', 'nope.txt'),
         f'error: --data_list: {dataroot / "nope.txt"} not found'),
        ('damaged checkpoint', curves_argv(garbage, dataroot),
         f'error: {garbage / "step_000001.pth"} is not a torch checkpoint, or it is corrupt'),
        ('LPIPS weights for GMM', curves_argv(run, dataroot, '--lpips_weights', 'alex.pth'),
         'error: --lpips_weights alex.pth: this is a GMM run'),
        ('malformed pairs list, two lines', curves_argv(run, dataroot, '--data_list', str(bad_pairs)),
         f'error: {bad_pairs}, line 1: expected "person.jpg cloth.jpg"'),
        ('curves.csv of another header', curves_argv(edited['another_header'], dataroot),
         f'error: {edited["another_header"] / "curves.csv"}: its header lacks step, checkpoint, iou, pairs'),
        ('curves.csv with a step not a number', curves_argv(edited['step_not_a_number'], dataroot),
         f"error: {edited['step_not_a_number'] / 'curves.csv'}: row 1 has step 'one', not a whole number; it is "
         f'not a curves.csv of learning_curves.py for this GMM run: delete it (or move it aside) to start the curve '
         f'again'),
    ]


def test_user_errors_print_one_line_and_exit_2(runs, dataroot, tmp_path, capsys):
    run = linked_copy(runs['GMM'], tmp_path)
    for description, argv, start in error_cases(run, dataroot, tmp_path):
        capsys.readouterr()
        assert learning_curves.main(argv) == 2, description
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count('\n') == 1, (description, err)
    assert not (run / 'curves.csv').exists()
    assert (tmp_path / 'another_header' / 'curves.csv').read_text().startswith('step;')   # left for the user


@pytest.mark.parametrize('flag, value, message', [
    ('--every', '0', 'argument --every: 0 is out of range: must be an integer >= 1'),
    ('--max_pairs', '-3', 'argument --max_pairs: -3 is out of range: must be an integer >= 1'),
    ('--workers', 'x', "argument -j/--workers: 'x' is invalid: must be an integer >= 0"),
    ('--checkpoint_dir', 'ck', '--checkpoint_dir ck goes with --name; --run_dir names the run folder itself'),
])
def test_flags_out_of_range_or_contradicting_are_argparse_errors(flag, value, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        learning_curves.parse_args(['--run_dir', 'x', flag, value])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f': error: {message}')


def test_the_command_line_gives_no_traceback(tmp_path):
    completed = subprocess.run([sys.executable, 'learning_curves.py', '--run_dir', str(tmp_path / 'nope')],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [f'error: --run_dir: {tmp_path / "nope"} is not a folder; pass the '
                                             f"run's folder as train.py wrote it, <checkpoint_dir>/<name> (e.g. "
                                             f'--run_dir checkpoints/gmm_train_new)']
