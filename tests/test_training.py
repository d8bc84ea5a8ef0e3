"""Training that survives: resume after SIGKILL, SIGTERM, safe saving and loading, NaN losses, DDP, speed flags."""
import errno
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import networks
import cpvton
import train
from conftest import REPO, cloth_named_warps
from networks import CheckpointError, build_tom, load_checkpoint, save_checkpoint
from synthetic_data import generate_dataset

TOTAL_STEPS = 6


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp('train_data')
    generate_dataset(str(root), n_train=6, n_test=2, seed=1)
    return str(root)


def train_args(dataroot, workdir, name='run', *extra):
    return ['--name', name, '--stage', 'GMM', '--dataroot', dataroot, '--gpu_ids', '-1', '--workers', '0',
            '--batch-size', '2', '--keep_step', '3', '--decay_step', str(TOTAL_STEPS - 3), '--save_count', '2',
            '--display_count', '1', '--shuffle', '--seed', '3', '--checkpoint_dir', str(workdir / 'checkpoints'),
            '--tensorboard_dir', str(workdir / 'tensorboard'), *extra]


def start_training(args):
    return subprocess.Popen([sys.executable, 'train.py', *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(path, process, timeout=300):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f'training ended before {path} appeared:\n{process.stdout.read()}'
        assert time.time() < deadline, f'{path} did not appear in {timeout} s'
        time.sleep(0.05)


def final_weights(workdir, name='run'):
    return torch.load(workdir / 'checkpoints' / name / 'gmm_final.pth', weights_only=True)


@pytest.fixture(scope='module')
def uninterrupted(dataroot, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('uninterrupted')
    assert train.main(train_args(dataroot, workdir)) == 0
    return final_weights(workdir)


def test_killed_run_resumes_to_the_same_weights(dataroot, tmp_path, uninterrupted):
    process = start_training(train_args(dataroot, tmp_path))
    wait_for(tmp_path / 'checkpoints' / 'run' / 'resume.pth', process)
    process.kill()                                   # SIGKILL: no chance to save anything more
    process.wait()
    resumed_from = torch.load(tmp_path / 'checkpoints' / 'run' / 'resume.pth', weights_only=True)['step']
    assert 2 <= resumed_from < TOTAL_STEPS
    assert train.main(train_args(dataroot, tmp_path, 'run', '--resume')) == 0
    resumed = final_weights(tmp_path)
    assert list(resumed) == list(uninterrupted)
    for key in uninterrupted:
        # Bitwise on the CPU with --workers 0: same data order, optimizer and schedule state.
        assert torch.equal(resumed[key], uninterrupted[key]), key


def test_sigterm_saves_a_resumable_checkpoint(dataroot, tmp_path):
    process = start_training(train_args(dataroot, tmp_path))
    wait_for(tmp_path / 'checkpoints' / 'run' / 'step_000002.pth', process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip('the run finished before the signal arrived')
    assert process.returncode == 1
    assert 'SIGTERM: saved' in output and '--resume' in output
    state = torch.load(tmp_path / 'checkpoints' / 'run' / 'resume.pth', weights_only=True)
    assert state['step'] >= 2


def test_a_new_run_never_overwrites_an_old_one(dataroot, tmp_path):
    (tmp_path / 'checkpoints' / 'run').mkdir(parents=True)
    (tmp_path / 'checkpoints' / 'run' / 'gmm_final.pth').write_bytes(b'precious')
    with pytest.raises(SystemExit, match='already holds checkpoints'):
        train.main(train_args(dataroot, tmp_path))
    assert (tmp_path / 'checkpoints' / 'run' / 'gmm_final.pth').read_bytes() == b'precious'


def test_non_finite_loss_stops_before_the_update(dataroot, tmp_path, monkeypatch):
    trainer = train.Trainer(train.get_opt(train_args(dataroot, tmp_path)))
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    monkeypatch.setattr(cpvton.GMMLoss, 'forward', lambda self, inputs, out: (out['theta'].sum() * float('nan'), {}))
    with pytest.raises(SystemExit) as stopped:
        trainer.train()
    trainer.close()
    message = str(stopped.value)
    assert 'step 1: the loss is nan' in message and '_0.jpg + ' in message
    # No optimizer step was taken (BatchNorm's running statistics did see the batch).
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())


class RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'payload_ran'
    path = tmp_path / 'gmm_final.pth'
    with open(path, 'wb') as f:
        pickle.dump({'weight': RunsCode(str(marker))}, f, protocol=2)
    with pytest.raises(CheckpointError, match='was refused.*nothing in it was executed'):
        load_checkpoint(build_tom(), str(path))
    assert not marker.exists()


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The disk fills up while the new file is synced: the old file stays, no temporary file is left,
    and the error says how much the file needed (the real full-disk case: tests/test_faults.py)."""
    path = tmp_path / 'tom_final.pth'
    model = build_tom()
    save_checkpoint(model, str(path))
    good = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(networks.os, 'fsync', disk_full)
    with pytest.raises(networks.DiskFullError, match=r'tom_final.pth: no space left on the device: it needs 85\.\d MB'):
        save_checkpoint(model, str(path))
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ['tom_final.pth']


def test_two_process_ddp_stays_in_sync(dataroot, tmp_path):
    """torchrun with the gloo backend on the CPU; checkpoints load in a single process."""
    args = train_args(dataroot, tmp_path, 'ddp')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    completed = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                                '--nproc_per_node=2', 'train.py', *args], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert 'processes 2, batch 2 per process (4 in all)' in completed.stdout
    divergence = re.search(r'largest parameter difference between ranks (\S+)', completed.stdout)
    assert divergence is not None, completed.stdout[-3000:]
    assert float(divergence.group(1)) == 0.0     # DDP keeps the replicas bitwise equal on the CPU
    assert completed.stdout.count('step:        1,') == 1          # rank 0 logs alone
    model = cpvton.GMM(train.get_opt(args))
    load_checkpoint(model, str(tmp_path / 'checkpoints' / 'ddp' / 'gmm_final.pth'))
    assert not any(k.startswith('module.') for k in final_weights(tmp_path, 'ddp'))


@pytest.mark.parametrize('stage, flags', [('GMM', ['--amp', '--channels_last', '--cudnn_benchmark']),
                                         ('TOM', ['--channels_last', '--vgg_init', 'random'])])
def test_speed_flags_train_on_the_cpu(dataroot, tmp_path, stage, flags):
    """The speed flags take the same code path as on a GPU and training still learns: the loss of a
    fixed batch falls after one pass over the data. (bf16 convolutions are slow on CPUs without bf16
    instructions, so --amp is exercised on the smaller GMM.)"""
    if stage == 'TOM':
        cloth_named_warps(dataroot)   # TOM reads GMM's warps; the in-shop cloth stands in for them
    args = [a for a in train_args(dataroot, tmp_path, 'flags', '--lr', '1e-3', *flags) if a != '--shuffle']
    args[args.index('GMM')] = stage
    trainer = train.Trainer(train.get_opt(args))
    fixed = train.to_device(trainer.loader.next_batch(), trainer.device, trainer.memory_format)
    trainer.loader.restart(0, 0)

    def fixed_batch_loss():
        with torch.no_grad(), trainer.autocast():
            return trainer.criterion(fixed, trainer.stage.run(trainer.model, fixed))[0].item()

    before = fixed_batch_loss()
    for step in range(3):                      # 6 pairs, batch 2: one pass over the data
        trainer.train_step(step)
    after = fixed_batch_loss()
    trainer.close()
    assert next(trainer.model.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert after < before, (before, after)
