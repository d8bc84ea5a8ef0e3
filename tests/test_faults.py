"""Faults long runs meet, provoked for real: a second process on the same run, a full file system,
damaged resume states and checkpoints, changed options on --resume, a NaN on one DDP rank."""
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import types

import pytest
import torch

import train
from conftest import REPO, cloth_named_warps
from cp_dataset import ResumableSampler
from networks import DamagedCheckpointError, read_checkpoint
from runs import resume_option_changes
from synthetic_data import generate_dataset

GMM_CHECKPOINT_BYTES = 19_057_650 * 4 + 7_808 * 4 + 14 * 8   # parameters + BN statistics + counters (reference)


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp('fault_data')
    generate_dataset(str(root), n_train=6, n_test=2, seed=2)
    return str(root)


def run_args(dataroot, checkpoint_dir, name='run', keep=2, decay=2, *extra):
    return ['--name', name, '--stage', 'GMM', '--dataroot', dataroot, '--gpu_ids', '-1', '--workers', '0',
            '--batch-size', '2', '--keep_step', str(keep), '--decay_step', str(decay), '--save_count', '2',
            '--display_count', '1', '--seed', '5', '--checkpoint_dir', str(checkpoint_dir),
            '--tensorboard_dir', str(checkpoint_dir) + '_tb', *extra]


def stop_message(argv):
    """The one-line message train.main stops with (it must stop)."""
    with pytest.raises(SystemExit) as stopped:
        train.main(argv)
    message = str(stopped.value)
    assert '\n' not in message and 'Traceback' not in message, message
    return message


def snapshot(folder):
    """Every file's bytes, but the lock's (it names the newest holder)."""
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if name != 'train.lock'}


def suggested_argv(message):
    """The train.py arguments of the command a message tells the user to run."""
    command = shlex.split(message.split(': python ', 1)[1] if ': python ' in message else message)
    return command[command.index('train.py') + 1:]


# --------------------------------------------------------------------------- one process per run folder

def wait_for_text(process, text, timeout=240):
    """Lines of ``process`` until one contains ``text``."""
    deadline, lines = time.time() + timeout, []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
        assert time.time() < deadline, ''.join(lines)
    raise AssertionError(f'{text!r} never appeared:\n{"".join(lines)}')


def test_a_second_process_on_the_same_run_is_refused_and_a_killed_ones_lock_does_not_block(dataroot, tmp_path):
    checkpoints = tmp_path / 'checkpoints'
    args = run_args(dataroot, checkpoints, 'run', 1000, 0)
    args[args.index('--workers') + 1] = '1'       # a forked loader worker outlives a killed run for a while
    first = subprocess.Popen([sys.executable, 'train.py', *args], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_text(first, 'step:        2,')        # the first save (step 2) is under way or done
        while not (checkpoints / 'run' / 'resume.pth').exists():
            time.sleep(0.1)
        before = snapshot(checkpoints / 'run')
        started = time.time()
        second = subprocess.run([sys.executable, 'train.py', *args], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode != 0
        message = second.stderr.strip().splitlines()[-1]
        assert 'Traceback' not in second.stderr
        assert f'is in use by another train.py: PID {first.pid} on host {socket.gethostname()} since ' in message
        assert 'stage GMM' not in second.stdout, 'the second process got as far as building a model'
        assert time.time() - started < 60
        assert first.poll() is None, 'the first run was disturbed'
        after = snapshot(checkpoints / 'run')
        for name in ('resume.pth', 'options.json'):
            assert name in after
        assert {k: v for k, v in after.items() if k in before and k.startswith('step_')} == \
            {k: v for k, v in before.items() if k.startswith('step_')}
    finally:
        first.kill()                                      # kill -9: the lock is never released by the run
        first.wait()
    # The dead run's lock does not block. A shorter schedule that gives the trained steps the same
    # learning rate is an allowed change.
    step = torch.load(checkpoints / 'run' / 'resume.pth', weights_only=True)['step']
    resumed = subprocess.run([sys.executable, 'train.py', *run_args(dataroot, checkpoints, 'run', step + 1, 0),
                              '--resume'], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f'--keep_step 1000 -> {step + 1}' in resumed.stdout and 'resuming with changed options' in resumed.stdout
    assert (checkpoints / 'run' / 'gmm_final.pth').exists()


# --------------------------------------------------------------------------- a full file system

@pytest.fixture
def small_disk(tmp_path):
    """A real tmpfs of 340 MB (root only): room for a step checkpoint and a resume state, not for more."""
    if os.geteuid() != 0:
        pytest.skip('mounting a small tmpfs needs root (CI runs as root)')
    mount_point = tmp_path / 'small_disk'
    mount_point.mkdir()
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=340m', 'tmpfs', str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {mounted.stderr.strip()}')
    yield mount_point
    subprocess.run(['umount', '-l', str(mount_point)], check=False)


def test_a_full_disk_stops_the_run_with_one_message_and_loses_nothing(dataroot, small_disk, capsys):
    checkpoints = small_disk / 'checkpoints'
    args = run_args(dataroot, checkpoints)
    message = stop_message(args)
    printed = capsys.readouterr().out
    assert f'warning: {checkpoints / "run"} has ' in printed and 'of checkpoints' in printed    # said at start
    # Step 2 wrote step_000002.pth and resume.pth; step 4's checkpoint did not fit.
    needed = f'{GMM_CHECKPOINT_BYTES / 1e6:.1f} MB'
    assert message.startswith(f'stopped: {checkpoints / "run" / "step_000004.pth"}: no space left on the device: '
                              f'it needs {needed}, ')
    assert (f'Intact: {checkpoints / "run" / "step_000002.pth"} (step 2), '
            f'{checkpoints / "run" / "resume.pth"} (step 2); no temporary file was left') in message
    assert '--resume' in message
    files = sorted(os.listdir(checkpoints / 'run'))
    assert files == ['options.json', 'resume.pth', 'step_000002.pth', 'train.lock'], files
    assert torch.load(checkpoints / 'run' / 'resume.pth', weights_only=True)['step'] == 2
    assert len(torch.load(checkpoints / 'run' / 'step_000002.pth', weights_only=True)) == 104
    # More space, and the command the message gives continues the run to its end.
    subprocess.run(['mount', '-o', 'remount,size=1500m', str(small_disk)], check=True)
    assert train.main(suggested_argv(message)) == 0
    assert torch.load(checkpoints / 'run' / 'resume.pth', weights_only=True)['step'] == 4


# --------------------------------------------------------------------------- damaged files

@pytest.fixture
def finished_run(dataroot, tmp_path):
    """A 4-step run: step_000002/4.pth, resume.pth (step 4) and resume.prev.pth (step 2)."""
    checkpoints = tmp_path / 'checkpoints'
    assert train.main(run_args(dataroot, checkpoints)) == 0
    run = checkpoints / 'run'
    assert torch.load(run / 'resume.prev.pth', weights_only=True)['step'] == 2
    return types.SimpleNamespace(dir=run, args=run_args(dataroot, checkpoints))


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('damage, problem', [(truncate, 'is truncated or corrupt'),
                                             (flip_a_byte, 'fails its checksum')])
def test_a_damaged_resume_state_names_the_intact_previous_one_and_its_command(finished_run, damage, problem):
    damage(finished_run.dir / 'resume.pth')
    message = stop_message(finished_run.args + ['--resume'])
    assert message.startswith(f'{finished_run.dir / "resume.pth"} ') and problem in message
    assert f'The previous resume state {finished_run.dir / "resume.prev.pth"} (step 2) is intact' in message
    assert train.main(suggested_argv(message)) == 0                    # continues from step 2 to the end
    assert torch.load(finished_run.dir / 'resume.pth', weights_only=True)['step'] == 4
    # The damaged file did not replace the intact state it was recovered from.
    assert torch.load(finished_run.dir / 'resume.prev.pth', weights_only=True)['step'] == 2


def test_without_an_intact_resume_state_the_newest_intact_step_checkpoint_is_named(finished_run):
    truncate(finished_run.dir / 'resume.pth')
    truncate(finished_run.dir / 'resume.prev.pth', 0.9)
    flip_a_byte(finished_run.dir / 'step_000004.pth')
    message = stop_message(finished_run.args + ['--resume'])
    assert f'the newest intact step checkpoint is {finished_run.dir / "step_000002.pth"}' in message
    argv = suggested_argv(message)
    assert '--resume' not in argv and argv[argv.index('--checkpoint') + 1] == str(finished_run.dir / 'step_000002.pth')
    assert train.main(argv) == 0                                        # a new run from those weights
    assert (finished_run.dir.parent / 'run_continued' / 'gmm_final.pth').exists()


def test_a_damaged_checkpoint_is_one_line_in_test_py(finished_run, dataroot, tmp_path):
    truncate(finished_run.dir / 'gmm_final.pth')
    completed = subprocess.run([sys.executable, 'test.py', '--stage', 'GMM', '--dataroot', dataroot, '--gpu_ids', '-1',
                                '--workers', '0', '--checkpoint', str(finished_run.dir / 'gmm_final.pth'),
                                '--result_dir', str(tmp_path / 'result'), '--tensorboard_dir', str(tmp_path / 'tb')],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0 and 'Traceback' not in completed.stderr
    line = completed.stderr.strip().splitlines()[-1]
    assert f'{finished_run.dir / "gmm_final.pth"} is truncated or corrupt' in line
    assert f'the newest intact step checkpoint there is {finished_run.dir / "step_000004.pth"}' in line


# --------------------------------------------------------------------------- resume rules

def test_resume_refuses_a_changed_training_option(finished_run):
    before = snapshot(finished_run.dir)
    for flags, named in ((['--lr', '0.001'], '--lr 0.0001 -> 0.001'),
                         (['--batch-size', '3'], "GMM's BatchNorm"),
                         (['--shuffle'], '--shuffle False -> True'),
                         (['--decay_step', '9'], '--decay_step 2 -> 9 (the learning rate of the steps already')):
        message = stop_message(finished_run.args + ['--resume'] + flags)
        assert 'this run was started with other options' in message and named in message, message
    assert snapshot(finished_run.dir) == before


def lr_lambda(opt):
    return train.lr_lambda_for(opt)


def options(**changes):
    base = dict(stage='TOM', lr=1e-4, lr_policy='paper', keep_step=10, decay_step=10, batch_size=2, world_size=2,
                seed=1, shuffle=True, workers=4)
    return {**base, **changes}


@pytest.mark.parametrize('current, step, allowed, refused', [
    (options(workers=0), 5, ['--workers 4 -> 0'], []),
    (options(keep_step=20), 5, ['--keep_step 10 -> 20'], []),                 # more steps at the same LR
    (options(keep_step=20), 12, [], ['--keep_step 10 -> 20 (the learning rate']),   # the decay had begun
    (options(lr_policy='constant', keep_step=20), 10, ['--lr_policy', '--keep_step 10 -> 20'], []),
    (options(lr=2e-4), 1, [], ['--lr 0.0001 -> 0.0002']),
    (options(batch_size=4, world_size=1), 5, ['batch 2 x 2 process(es) -> 4 x 1'], []),
    (options(world_size=1), 5, [], ['the global batch would change from 4 to 2']),
    (options(stage='GMM', batch_size=4, world_size=1), 5, [], ["GMM's BatchNorm"]),
    (options(seed=2), 5, [], ['--seed 1 -> 2']),
    (options(seed=None), 5, [], []),                                          # no --seed: the run's seed
])
def test_resume_option_rules(current, step, allowed, refused):
    recorded = options(stage=current['stage'])
    # GMM has BatchNorm, TOM none (train.py passes its Stage's batch_statistics)
    got_refused, got_allowed = resume_option_changes(recorded, current, step, lr_lambda, current['stage'] == 'GMM')
    assert len(got_allowed) == len(allowed) and all(any(a in g for g in got_allowed) for a in allowed), got_allowed
    assert len(got_refused) == len(refused) and all(any(r in g for g in got_refused) for r in refused), got_refused


def global_batches(segments, global_batch=4, num_samples=12):
    """The samples of each step (sorted) when training runs through ``segments`` of (processes, steps), each
    resuming where the previous one stopped, as CPDataLoader.state() records it."""
    batches, position = [], 0
    for world_size, steps in segments:
        per_rank = global_batch // world_size
        streams = []
        for rank in range(world_size):
            sampler = ResumableSampler(num_samples, True, seed=3, rank=rank, world_size=world_size)
            sampler.set_epoch(0, start=position)
            streams.append(list(sampler))
        for step in range(steps):
            batches.append(sorted(i for stream in streams for i in stream[step * per_rank:(step + 1) * per_rank]))
        position += steps * global_batch
    return batches


def test_another_process_count_reshards_the_rest_of_the_epoch_onto_the_same_batches():
    one_process = global_batches([(1, 3)])
    assert sorted(i for batch in one_process for i in batch) == list(range(12))      # one epoch, each sample once
    assert global_batches([(2, 3)]) == one_process
    assert global_batches([(2, 1), (4, 1), (1, 1)]) == one_process


# --------------------------------------------------------------------------- DDP: a NaN on one rank

NAN_ON_ONE_RANK = '''
import sys
import torch
import cp_dataset
import train

poisoned = sys.argv.pop(1)
original_item = cp_dataset.CPDataset.__getitem__


def item_with_a_nan(self, index):
    item = original_item(self, index)
    if item['im_name'] == poisoned:
        item['agnostic'][0, 0, 0] = float('nan')
    return item


cp_dataset.CPDataset.__getitem__ = item_with_a_nan
sys.exit(train.main())
'''


def test_a_nan_on_one_ddp_rank_stops_every_rank_at_the_same_step(dataroot, tmp_path):
    script = tmp_path / 'train_with_a_nan.py'
    script.write_text(NAN_ON_ONE_RANK)
    pairs = [line.split() for line in open(os.path.join(dataroot, 'train_pairs.txt')) if line.strip()]
    poisoned = pairs[3][0]              # unshuffled, batch 1: rank 1 reads pairs 1, 3, 5 -> step 2
    args = run_args(dataroot, tmp_path / 'checkpoints', 'ddp', 4, 0, '--save_count', '1')
    args[args.index('--batch-size') + 1] = '1'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    started = time.time()
    completed = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                                str(script), poisoned, *args], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=300)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output[-3000:]
    assert time.time() - started < 240, 'the ranks did not stop together'
    # NaN theta: a NaN grid, which grid_sample's forward hides and its backward would crash on.
    assert re.search(r'step 2: the loss is \S+ and the warp grid on process 1 \(not finite\)', output), output[-3000:]
    assert f'Batch: {poisoned} + {pairs[3][1]}.' in output
    assert output.count('(not finite)') == 1                              # rank 0 says it, once
    state = torch.load(tmp_path / 'checkpoints' / 'ddp' / 'resume.pth', weights_only=True)
    assert state['step'] == 1 and all(torch.isfinite(v).all() for v in state['model'].values())
    assert len(state['rng']) == 2 and not torch.equal(state['rng'][0]['torch'], state['rng'][1]['torch'])


def test_tom_resumed_on_another_process_count_continues_on_the_same_batches(dataroot, tmp_path):
    """2 processes x batch 1 for 2 steps, then 1 process x batch 2: the same weights (up to float
    summation order) as 1 process x batch 2 throughout. TOM has no batch statistics, so only the
    split of each global batch differs."""
    cloth_named_warps(dataroot)

    def tom_args(name, batch_size, keep):
        args = run_args(dataroot, tmp_path / 'checkpoints', name, keep, 0, '--stage', 'TOM', '--vgg_init', 'random',
                        '--fine_height', '128', '--fine_width', '64', '--shuffle', '--lr', '1e-3')
        args[args.index('--batch-size') + 1] = str(batch_size)
        return args

    assert train.main(tom_args('one', 2, 4)) == 0
    env = dict(os.environ, OMP_NUM_THREADS='1')
    completed = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                                'train.py', *tom_args('two', 1, 2)], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert train.main(tom_args('two', 2, 4) + ['--resume']) == 0
    one = torch.load(tmp_path / 'checkpoints' / 'one' / 'tom_final.pth', weights_only=True)
    two = torch.load(tmp_path / 'checkpoints' / 'two' / 'tom_final.pth', weights_only=True)
    one_at_2 = torch.load(tmp_path / 'checkpoints' / 'one' / 'step_000002.pth', weights_only=True)
    # Adam's first steps move each weight by about +-lr whatever the gradient's size, so the few weights
    # whose gradient is ~0 can flip sign with the summation order (2 means averaged vs 1 mean of 2):
    # 0.19% of the weights differ after 4 steps here; other batches in steps 3-4 would move most of them.
    assert share_differing(two, one) < 0.01
    assert share_differing(one, one_at_2) > 0.5          # 2 steps move most weights: the check can tell


def share_differing(a, b, atol=1e-4):
    """The share of the weights of state dicts a and b that differ by more than ``atol``."""
    differing = sum((a[k] - b[k]).abs().gt(atol).sum().item() for k in a)
    return differing / sum(v.numel() for v in a.values())


def test_resume_states_of_the_earlier_format_give_the_global_position():
    """Earlier versions saved a per-process sample count and rank 0's random state only."""
    rng = {'torch': torch.get_rng_state(), 'python': None}
    old = {'data': [{'epoch': 3, 'samples_done': 4}, {'epoch': 3, 'samples_done': 4}], 'rng': rng}
    assert train.data_position(old) == {'epoch': 3, 'position': 8}        # 2 processes x 4 samples each
    assert train.rng_states(old) == [rng]
    new = {'data': {'epoch': 3, 'position': 8}, 'rng': [rng, rng]}
    assert train.data_position(new) == {'epoch': 3, 'position': 8} and len(train.rng_states(new)) == 2


@pytest.mark.parametrize('damage, phrase', [
    (lambda path: path.write_bytes(b'garbage'), 'is not a torch checkpoint, or it is corrupt (7 bytes; '
                                                'Unsupported operand 103)'),
    (lambda path: path.write_bytes(b''), 'is truncated or corrupt (0 bytes; torch.load: EOFError)'),
    (truncate, 'is truncated or corrupt'),
    (flip_a_byte, 'fails its checksum'),
])
def test_every_kind_of_damage_is_a_damaged_checkpoint_error(tmp_path, damage, phrase):
    path = tmp_path / 'step_000002.pth'
    torch.save({'weight': torch.arange(100000.0)}, path)
    damage(path)
    with pytest.raises(DamagedCheckpointError) as damaged:
        read_checkpoint(str(path))
    assert str(damaged.value).startswith(str(path)) and phrase in str(damaged.value), str(damaged.value)
    assert '\n' not in str(damaged.value)
