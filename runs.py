"""A training run's folder, checkpoints/<name>/: which process holds it, whether its disk can take
the checkpoints the run will write, which of its files are intact, and which option changes a
resumed run may make.

    RunLock(folder).acquire()                 one train.py per run folder (an OS lock, freed on exit)
    disk_space_warning(folder, sizes, steps)  '' or the warning to print at start-up
    newest_intact(paths)                      the newest file among paths that loads and passes its checksums
    command_with(script, argv, flag=value)    the command an error message tells the user to run
    resume_option_changes(recorded, current)  (refused, allowed) option changes of a resumed run
"""
import datetime
import errno
import fcntl
import json
import os
import os.path as osp
import re
import shlex
import socket
import sys
import types

from networks import CheckpointError, format_bytes, free_bytes, read_checkpoint

LOCK_FILE = 'train.lock'
STEP_CHECKPOINT = re.compile(r'step_(\d+)\.pth$')


class RunFolderError(RuntimeError):
    """A problem with the run folder, with a one-line message that names the folder and the fix."""


# --------------------------------------------------------------------------- one process per run

def lock_holder_description(text):
    """'PID 123 on host h since 2026-12-01 09:30:00 (python train.py ...)' from the lock file's JSON."""
    try:
        holder = json.loads(text)
        return (f'PID {holder["pid"]} on host {holder["host"]} since {holder["started"]} '
                f'({holder["command"]})')
    except (ValueError, KeyError, TypeError):
        return 'a process that has not written its details yet'


class RunLock:
    """An exclusive lock on <folder>/train.lock for the life of the process. The OS drops it when the
    process ends in any way (also kill -9), so a lock left by a dead run never blocks; the file stays,
    holding the last holder's details. A POSIX record lock (lockf), not flock: DataLoader workers forked
    from the run do not inherit it, so it goes with the run itself, and it works on NFS too."""

    def __init__(self, folder):
        self.folder = folder
        self.path = osp.join(folder, LOCK_FILE)
        self.file = None

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        lock_file = open(self.path, 'a+')   # not 'w': truncating would erase the holder's details
        try:
            fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):   # the two ways lockf says 'held'
                lock_file.close()
                raise
            lock_file.seek(0)
            holder = lock_holder_description(lock_file.read())
            lock_file.close()
            raise RunFolderError(
                f'{self.folder} is in use by another train.py: {holder}. Two processes in one run folder '
                f'overwrite each other\'s checkpoints; wait for that run to end (or stop it), or pass '
                f'another --name. Nothing was written.') from None
        lock_file.truncate(0)
        json.dump({'pid': os.getpid(), 'host': socket.gethostname(),
                   'started': datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S'),
                   'command': shlex.join([osp.basename(sys.executable)] + sys.argv)}, lock_file)
        lock_file.flush()
        self.file = lock_file
        return self

    def release(self):
        if self.file is not None:
            self.file.close()   # closing drops the lock
            self.file = None


# --------------------------------------------------------------------------- disk space

def bytes_to_write(checkpoint_bytes, resume_bytes, start_step, total_steps, save_count):
    """The most disk space the rest of a run needs at once: a step checkpoint per --save_count steps
    and the final one (all kept), plus the resume state three times (resume.pth, resume.prev.pth and
    the new one being written)."""
    step_checkpoints = total_steps // save_count - start_step // save_count
    return (step_checkpoints + 1) * checkpoint_bytes + 3 * resume_bytes


def disk_space_warning(folder, checkpoint_bytes, resume_bytes, start_step, total_steps, save_count):
    """'' when the folder's disk holds what the run will write, else a one-line warning."""
    needed = bytes_to_write(checkpoint_bytes, resume_bytes, start_step, total_steps, save_count)
    free = free_bytes(folder)
    if needed <= free:
        return ''
    return (f'warning: {folder} has {format_bytes(free)} free, but this run will write about '
            f'{format_bytes(needed)} of checkpoints ({format_bytes(checkpoint_bytes)} every --save_count '
            f'{save_count} steps up to step {total_steps}, and {format_bytes(resume_bytes)} resume states). '
            f'Free space, raise --save_count, or use another --checkpoint_dir; the run stops cleanly when '
            f'the disk is full.')


# --------------------------------------------------------------------------- intact files

def step_of(path):
    """The step of a step_XXXXXX.pth file."""
    return int(STEP_CHECKPOINT.search(path).group(1))


def step_checkpoints(folder):
    """The folder's step_XXXXXX.pth files, newest step first."""
    if not osp.isdir(folder):
        return []
    found = [(step_of(f), osp.join(folder, f)) for f in os.listdir(folder) if STEP_CHECKPOINT.match(f)]
    return [path for _, path in sorted(found, reverse=True)]


def intact_step_checkpoint_beside(path):
    """The newest intact step checkpoint in the folder of ``path``, other than ``path`` (None: none)."""
    others = [p for p in step_checkpoints(osp.dirname(path) or '.') if osp.abspath(p) != osp.abspath(path)]
    return newest_intact(others)[0]


def newest_intact(paths):
    """(path, contents) of the first of ``paths`` that exists, passes its checksums and loads; or
    (None, None)."""
    for path in paths:
        if not osp.isfile(path):
            continue
        try:
            return path, read_checkpoint(path)
        except CheckpointError:
            continue
    return None, None


def command_with(script, argv, **flags):
    """'python SCRIPT ARGS' with each flag of ``flags`` set: a value, True (the flag alone) or None
    (removed). For the commands that error messages tell the user to run."""
    names = {f'--{name}' for name in flags}
    args, i = [], 0
    while i < len(argv):
        flag = argv[i].split('=', 1)[0]
        i += 1
        if flag not in names:
            args.append(argv[i - 1])
        elif '=' not in argv[i - 1] and i < len(argv) and not argv[i].startswith('-'):
            i += 1                                        # the removed flag's value
    for name, value in flags.items():
        if value is True:
            args.append(f'--{name}')
        elif value is not None:
            args += [f'--{name}', str(value)]
    return shlex.join(['python', script, *args])


# --------------------------------------------------------------------------- resume rules

# Options that say where and how fast a run goes, not what it computes: a resumed run may change them.
# (--dataroot may move: the pairs list itself is compared through its checksum, data_list_sha256.)
# The checkpoints a run was initialised from (a frozen VITON stage 1, WUTON's GMM) too: the resume state holds
# their weights.
RESUME_MAY_CHANGE = ('name', 'gpu_ids', 'workers', 'dataroot', 'tensorboard_dir', 'checkpoint_dir', 'display_count',
                     'save_count', 'compile', 'cudnn_benchmark', 'channels_last', 'vgg_weights', 'torch_version',
                     'coarse_checkpoint', 'gmm_checkpoint', 'previous_checkpoint')
# Options that say how this command was started, not what the run is: not compared.
RESUME_NOT_COMPARED = ('resume', 'check_data')
# Options with their own rule below.
RESUME_RULED = ('lr', 'lr_policy', 'keep_step', 'decay_step', 'batch_size', 'world_size', 'seed')


def learning_rates(options, steps, lr_lambda_for):
    multiplier = lr_lambda_for(types.SimpleNamespace(**options))
    return [options['lr'] * multiplier(step) for step in range(steps)]


def resume_option_changes(recorded, current, step, lr_lambda_for, batch_statistics):
    """(refused, allowed): descriptions of the options that differ between the run's recorded options and
    the resumed command's, both {option: value} dicts (with 'world_size'). ``step``: the step resumed at;
    ``batch_statistics``: whether the stage computes anything over each process's batch (BatchNorm, batch means).

    Allowed: the options of RESUME_MAY_CHANGE; a learning-rate schedule (--lr, --lr_policy, --keep_step,
    --decay_step) that gives every step already trained the learning rate it had (e.g. more steps while
    the LR is still constant); for a stage without batch statistics (TOM), another process count with the same
    global batch (batch size x processes), since every step then sees the same samples. Everything else is
    refused."""
    refused, allowed = [], []
    for name in sorted(set(recorded) & set(current)):
        if name in RESUME_RULED or name in RESUME_NOT_COMPARED or recorded[name] == current[name]:
            continue
        change = f'--{name} {recorded[name]!r} -> {current[name]!r}'
        (allowed if name in RESUME_MAY_CHANGE else refused).append(change)

    schedule = ('lr', 'lr_policy', 'keep_step', 'decay_step')
    changed = [f'--{n} {recorded[n]!r} -> {current[n]!r}' for n in schedule
               if n in recorded and recorded[n] != current[n]]
    if changed:
        same_past = (all(n in recorded for n in schedule) and
                     learning_rates(recorded, step, lr_lambda_for) == learning_rates(current, step, lr_lambda_for))
        if same_past:
            allowed += changed
        else:
            refused += [c + ' (the learning rate of the steps already trained would differ)' for c in changed]

    if 'batch_size' in recorded and 'world_size' in recorded:
        before = (recorded['batch_size'], recorded['world_size'])
        now = (current['batch_size'], current['world_size'])
        if before != now:
            change = (f'batch {before[0]} x {before[1]} process(es) -> {now[0]} x {now[1]}')
            if batch_statistics:
                refused.append(change + f" ({recorded.get('stage')}'s BatchNorm normalises over each process's "
                                        f"batch, so another per-process batch changes the training; keep both)")
            elif before[0] * before[1] == now[0] * now[1]:
                allowed.append(change + ' (same global batch: the remaining data is re-sharded)')
            else:
                refused.append(change + f' (the global batch would change from {before[0] * before[1]} to '
                                        f'{now[0] * now[1]}; keep --batch-size x processes = '
                                        f'{before[0] * before[1]})')

    if 'keep_step' in current and current['keep_step'] + current['decay_step'] < step:
        refused.append(f'--keep_step {current["keep_step"]} + --decay_step {current["decay_step"]} is fewer steps '
                       f'than the {step} already trained')
    if current.get('seed') is not None and recorded.get('seed') != current['seed']:
        refused.append(f'--seed {recorded.get("seed")!r} -> {current["seed"]!r}')
    return refused, allowed
