"""Train a stage of a method: CP-VTON's Geometric Matching Module (--stage GMM) or Try-On Module (--stage TOM),
or another method's stage of the registry (methods.py, e.g. VITON_COARSE, VITON_REFINE).

    python train.py --name gmm_train_new --stage GMM --workers 4 --save_count 5000 --shuffle
    python train.py --name tom_train_new --stage TOM --workers 4 --save_count 5000 --shuffle
    torchrun --nproc_per_node=4 train.py ...      # DistributedDataParallel, --batch-size per GPU

Writes checkpoints/<name>/step_XXXXXX.pth every --save_count steps and the stage's final checkpoint
(gmm_final.pth, tom_final.pth, ...) at the end (plain state dicts in the original layout), plus resume.pth (model,
optimizer, LR schedule, step, data position, RNG) for --resume; TensorBoard logs go to
tensorboard/<name>. The flags and defaults are the original's; the additions are listed
in README.md.
"""
import argparse
import json
import os
import os.path as osp
import random
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from tensorboardX import SummaryWriter

import flags
from cp_dataset import BODY_SHAPE_SOURCES, RESERVED_LABELS, CPDataLoader, DataError
from cpvton import TOM_MASK_TARGETS
from data_check import check_only, check_or_exit
from methods import STAGES, add_method_arguments, refuse_other_stages_options
from networks import (CheckpointError, DiskFullError, atomic_write, cpu_state_dict, durable_writer, format_bytes,
                      load_checkpoint, read_checkpoint, save_checkpoint, select_device, serialized, set_tf32,
                      sha256_of)
from runs import (RunFolderError, RunLock, command_with, disk_space_warning, newest_intact, resume_option_changes,
                  step_checkpoints, step_of)
from visualization import board_add_images

RESUME_FILE = 'resume.pth'
PREVIOUS_RESUME_FILE = 'resume.prev.pth'   # the resume state before the last save


def get_opt(argv=None):
    parser = argparse.ArgumentParser(description='Train CP-VTON (GMM or TOM).',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--name', default='GMM')
    parser.add_argument('--gpu_ids', type=flags.gpu_ids, default='', help='the device to run on')
    parser.add_argument('-j', '--workers', type=flags.non_negative_int, default=1,
                        help='data loader processes (0: in this process)')
    parser.add_argument('-b', '--batch-size', type=flags.positive_int, default=4,
                        help='per process (per GPU with torchrun)')
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--datamode', default='train')
    parser.add_argument('--stage', default='GMM', choices=tuple(STAGES))
    parser.add_argument('--data_list', default='train_pairs.txt')
    add_model_arguments(parser)
    parser.add_argument('--lr', type=flags.positive_float, default=0.0001, help='initial learning rate for adam')
    parser.add_argument('--tensorboard_dir', type=str, default='tensorboard', help='save tensorboard infos')
    parser.add_argument('--checkpoint_dir', type=str, default='checkpoints', help='save checkpoint infos')
    parser.add_argument('--checkpoint', type=str, default='', help='model checkpoint for initialization')
    parser.add_argument('--display_count', type=flags.positive_int, default=20,
                        help='steps between log lines and TensorBoard entries')
    parser.add_argument('--save_count', type=flags.positive_int, default=100, help='steps between checkpoints')
    parser.add_argument('--keep_step', type=flags.non_negative_int, default=100000,
                        help='steps at the initial learning rate')
    parser.add_argument('--decay_step', type=flags.non_negative_int, default=100000,
                        help='steps of the learning rate decaying to 0 (with --lr_policy paper)')
    parser.add_argument('--shuffle', action='store_true', help='shuffle input data')
    # Additions to the original flags.
    parser.add_argument('--seed', type=flags.seed, default=None, help='random seed (default: drawn, and logged)')
    parser.add_argument('--lr_policy', default='paper', choices=['paper', 'constant'],
                        help='paper: constant for keep_step steps, then linear decay to 0 over decay_step; '
                             'constant: the original code\'s behaviour (its scheduler was never stepped)')
    parser.add_argument('--resume', nargs='?', const='', default=None, metavar='RESUME_FILE',
                        help='continue the run in <checkpoint_dir>/<name> from its resume.pth (or from the '
                             'resume state given, e.g. its resume.prev.pth)')
    parser.add_argument('--vgg_init', default='imagenet', choices=['imagenet', 'random'],
                        help='the perceptual loss (TOM, VITON): ImageNet VGG19 (needs the weights file) or random '
                             '(demos/tests)')
    parser.add_argument('--vgg_weights', default='', help='path of vgg19-dcbb9e9d.pth (default: torch hub cache)')
    parser.add_argument('--amp', action='store_true', help='bf16 autocast (GPU speed; off = faithful float32)')
    parser.add_argument('--channels_last', action='store_true', help='channels-last memory format')
    parser.add_argument('--cudnn_benchmark', action='store_true', help='cuDNN autotuning')
    add_tf32_argument(parser)
    parser.add_argument('--compile', action='store_true', help='torch.compile the model')
    parser.add_argument('--check_data', action='store_true',
                        help='only check the dataset against the pairs file, report every problem, and exit')
    plus = parser.add_argument_group('CP-VTON+ training options (off by default: the original CP-VTON)')
    plus.add_argument('--gic_weight', type=flags.float_at_least(0), default=0.0,
                      help='GMM: weight of the grid-interval-consistency loss (CP-VTON+: 40; 0 = off)')
    plus.add_argument('--tom_mask_target', default='warped_mask', choices=TOM_MASK_TARGETS,
                      help="TOM: the composition mask's L1 target: GMM's warped mask (original) or the "
                           "person's cloth region in the parse map (CP-VTON+)")
    add_method_arguments(parser, training=True)
    opt = parser.parse_args(argv)
    refuse_other_stages_options(parser, opt, training=True)
    if opt.vgg_weights and opt.vgg_init == 'random':
        parser.error(f'--vgg_weights {opt.vgg_weights} contradicts --vgg_init random (which uses no weights)')
    flags.check_gpu_ids_present(parser, opt.gpu_ids)
    return opt


def add_model_arguments(parser):
    """The options that define a model and its input; train.py records them in options.json and
    test.py reads them back, so it rebuilds the model a checkpoint was trained as."""
    parser.add_argument('--fine_width', type=flags.image_side, default=192, help='model input width, pixels')
    parser.add_argument('--fine_height', type=flags.image_side, default=256, help='model input height, pixels')
    parser.add_argument('--radius', type=flags.non_negative_int, default=5,
                        help='pose keypoints are squares of 2 * radius + 1 pixels')
    parser.add_argument('--grid_size', type=flags.grid_size, default=5,
                        help='the TPS has grid_size x grid_size control points')
    plus = parser.add_argument_group('CP-VTON+ model options (off by default: the original CP-VTON)')
    plus.add_argument('--reserved_regions', default='original', choices=tuple(RESERVED_LABELS),
                      help='regions the person representation keeps: original (hat, hair, sunglasses, face for '
                           'both stages) or cpvton_plus (GMM: hat, sunglasses, face; TOM: also hair, pants, '
                           'skirt, legs)')
    plus.add_argument('--body_shape', default='parse', choices=BODY_SHAPE_SOURCES,
                      help='body shape from the parse map (original) or from image-mask/<person>.png (CP-VTON+)')
    plus.add_argument('--tom_mask_input', action='store_true',
                      help='TOM: also feed the warped cloth mask (26 input channels, CP-VTON+)')


def add_tf32_argument(parser):
    parser.add_argument('--tf32', action='store_true',
                        help='TF32 convolutions and matmuls on Ampere and later GPUs (speed; off = float32)')


MODEL_OPTIONS = ('stage', 'fine_height', 'fine_width', 'radius', 'grid_size', 'reserved_regions', 'body_shape',
                 'tom_mask_input')
TRAINING_OPTIONS = ('gic_weight', 'tom_mask_target')
ORIGINAL_OPTIONS = {'reserved_regions': 'original', 'body_shape': 'parse', 'tom_mask_input': False,
                    'gic_weight': 0.0, 'tom_mask_target': 'warped_mask'}
OPTIONS_FILE = 'options.json'


def cpvton_plus_options(opt):
    """{option: value} of the CP-VTON+ options that are on (empty: the original CP-VTON)."""
    return {name: getattr(opt, name) for name, original in ORIGINAL_OPTIONS.items()
            if hasattr(opt, name) and getattr(opt, name) != original}


def describe_options(opt):
    on = cpvton_plus_options(opt)
    method = STAGES[opt.stage].method
    if method != 'CP-VTON':
        return f'method {method}' + (' with CP-VTON+ options: ' + describe_flags(on) if on else '')
    if not on:
        return 'CP-VTON+ options: none (the original CP-VTON)'
    return 'CP-VTON+ options on: ' + describe_flags(on)


def describe_flags(values):
    return ', '.join(f'--{name}' if value is True else f'--{name} {value}' for name, value in values.items())


# --------------------------------------------------------------------------- one step of each stage

def to_device(batch, device, memory_format=torch.contiguous_format):
    """Move every tensor of a batch dict to ``device``, images ([B,C,H,W]) in ``memory_format``; file
    names and '' stay as they are."""
    return {k: (v.to(device, non_blocking=True, memory_format=memory_format) if v.dim() == 4
                else v.to(device, non_blocking=True)) if torch.is_tensor(v) else v for k, v in batch.items()}


def finite_grid(out):
    """Whether a stage's warp grids (out['grid'], and any other '*grid', e.g. WUTON's unpaired one) are all finite;
    True for stages without one."""
    grids = [value.detach() for key, value in out.items() if key.endswith('grid')]
    return torch.stack([torch.isfinite(grid).all() for grid in grids]).all() if grids else torch.tensor(True)


# --------------------------------------------------------------------------- learning rate

def lr_lambda_for(opt):
    """Multiplier of --lr at each step: 1 for keep_step steps, then linear decay to ~0 over decay_step.
    With --lr_policy constant, always 1 (what the original really did)."""
    if opt.lr_policy == 'constant':
        return lambda step: 1.0
    return lambda step: 1.0 - max(0, step - opt.keep_step) / float(opt.decay_step + 1)


# --------------------------------------------------------------------------- processes, logging, state

def setup_distributed(opt):
    """(rank, world_size, device). Under torchrun, one process per GPU (or gloo on CPU)."""
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    if world_size == 1:
        return 0, 1, select_device(opt.gpu_ids)
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    if torch.cuda.is_available() and opt.gpu_ids != '-1':
        device = torch.device(f'cuda:{local_rank}')
        torch.cuda.set_device(device)
        dist.init_process_group('nccl', device_id=device)
    else:
        device = torch.device('cpu')
        dist.init_process_group('gloo')
    return rank, world_size, device


class Logger:
    """Prints on rank 0 only, flushed, so logs tee'd to a file are complete."""

    def __init__(self, rank):
        self.rank = rank

    def __call__(self, message):
        if self.rank == 0:
            print(message, flush=True)


def rng_state(device):
    state = {'torch': torch.get_rng_state(), 'python': random.getstate()}
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state['torch'])
    random.setstate(state['python'])
    if device.type == 'cuda' and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'], device)


def run_dir(opt):
    return osp.join(opt.checkpoint_dir, opt.name)


def resume_path(opt):
    """The resume state --resume continues from: the run's resume.pth, or the file given to --resume."""
    return opt.resume or osp.join(run_dir(opt), RESUME_FILE)


def refuse_new_run_over_old(opt):
    """A new run (no --resume) must not start in a folder with checkpoints: they would be overwritten."""
    existing = [f for f in os.listdir(run_dir(opt)) if f.endswith('.pth')] if osp.isdir(run_dir(opt)) else []
    if existing:
        raise SystemExit(f'{run_dir(opt)} already holds checkpoints of a run ({", ".join(sorted(existing)[:3])}...). '
                         f'Pass --resume to continue it, or choose another --name; nothing was overwritten.')


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step, so it can save and exit."""

    def __init__(self):
        self.signal_name = None

    def __enter__(self):
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def recorded_options(opt, world_size):
    """What options.json and resume.pth record: every flag of the run, the process count, the pairs
    list's checksum (a resumed run must read the same pairs, wherever --dataroot now is) and torch's
    version."""
    pairs_file = osp.join(opt.dataroot, opt.data_list)
    return {**vars(opt), 'world_size': world_size, 'torch_version': str(torch.__version__),
            'data_list_sha256': sha256_of(pairs_file) if osp.isfile(pairs_file) else None}


def write_options(options, folder):
    text = json.dumps(options, indent=2) + '\n'
    atomic_write(osp.join(folder, OPTIONS_FILE), lambda tmp_path: Path(tmp_path).write_text(text))


def read_options(path):
    """The options a run recorded, or None where the file is absent (checkpoints of the original code)."""
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f'{path} is not valid JSON ({error}); it records the options of the run beside it. '
                         f'Restore it, or delete it and pass the model options as flags.') from None


def data_position(state):
    """{'epoch', 'position'} of a resume state; resume states of earlier versions kept a per-rank
    sample count, which the position is that count times the process count."""
    data = state['data']
    if isinstance(data, list):
        return {'epoch': data[0]['epoch'], 'position': data[0]['samples_done'] * len(data)}
    return data


def rng_states(state):
    """The per-process random states of a resume state (earlier versions saved rank 0's only)."""
    return state['rng'] if isinstance(state['rng'], list) else [state['rng']]


def format_eta(seconds):
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# --------------------------------------------------------------------------- training

class Trainer:
    """One training run. Every check that can fail on one process (the run folder, the resume state,
    a non-finite loss, a failed save) is agreed on by all processes, so they all stop at the same
    point with one message instead of leaving the others waiting in a collective."""

    def __init__(self, opt, argv=None):
        self.opt = opt
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.lock, self.board = None, None
        self.rank, self.world_size, self.device = setup_distributed(opt)
        try:
            self.setup()
        except BaseException:
            self.close()
            raise

    def setup(self):
        opt = self.opt
        self.stage = STAGES[opt.stage]
        self.log = Logger(self.rank)
        self.all_or_none(self.take_run_folder)
        state = self.resume_state() if opt.resume is not None else None
        given_seed = opt.seed
        if state is not None:
            opt.seed = state['seed']   # the data order depends on it
        elif opt.seed is None:
            opt.seed = self.one_value(int(time.time()) % 100000)   # drawn once: every process shards one order
        # Every process builds the same model and (with --vgg_init random) the same loss network; each
        # then draws its own random numbers (seed + rank) from the first step on.
        torch.manual_seed(opt.seed)
        random.seed(opt.seed)
        torch.backends.cudnn.benchmark = opt.cudnn_benchmark
        set_tf32(opt.tf32)
        self.log(f'stage {opt.stage}, run {opt.name}, device {self.device}, processes {self.world_size}, '
                 f'batch {opt.batch_size} per process ({opt.batch_size * self.world_size} in all), seed {opt.seed}, '
                 f'lr {opt.lr} ({opt.lr_policy}), amp {opt.amp}, tf32 {opt.tf32}, channels_last {opt.channels_last}, '
                 f'compile {opt.compile}')
        self.log(describe_options(opt))
        self.all_or_none(lambda: self.record_options(state, given_seed))

        self.all_or_none(lambda: check_or_exit(opt, self.log, self.stage.data))
        self.dataset = self.all_or_none(lambda: self.stage.dataset(opt, self.stage.data))
        self.loader = self.all_or_none(lambda: CPDataLoader(opt, self.dataset, rank=self.rank,
                                                            world_size=self.world_size,
                                                            pin_memory=self.device.type == 'cuda', log=self.log))
        self.memory_format = torch.channels_last if opt.channels_last else torch.contiguous_format

        model = self.all_or_none(lambda: self.stage.build_model(opt))
        if opt.checkpoint:
            self.all_or_none(lambda: load_checkpoint(model, opt.checkpoint, torch.device('cpu')))
            self.log(f'initialised from {opt.checkpoint}')
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.stage.trainable(self.model), lr=opt.lr, betas=(0.5, 0.999))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=lr_lambda_for(opt))
        self.criterion = self.all_or_none(lambda: self.stage.build_loss(opt, self.log)).to(self.device)
        self.criterion = self.criterion.to(memory_format=self.memory_format)
        if self.rank:
            torch.manual_seed(opt.seed + self.rank)
            random.seed(opt.seed + self.rank)
        self.last_saved = {}           # 'model'/'resume' -> (path, step): the newest intact files (rank 0)
        self.resume_file_intact = False   # whether <run>/resume.pth is known to be whole (read or written)
        self.start_step = self.restore(state) if state is not None else 0
        if self.rank == 0:
            self.warn_if_disk_too_small()

        self.forward = self.model
        if self.world_size > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None)
        if opt.compile:
            self.forward = torch.compile(self.forward)
        if self.rank == 0:
            # purge_step drops events a killed run logged after its last checkpoint.
            self.board = SummaryWriter(log_dir=osp.join(opt.tensorboard_dir, opt.name),
                                       purge_step=self.start_step + 1 if self.start_step else None)

    # ----------------------------------------------------------------------- agreement between processes

    def agree(self, problem):
        """Every process says whether it has a problem (a message, or None); if any has, all stop: rank 0
        prints the first message, the others exit quietly."""
        first = next((p for p in self.all_values(problem) if p), None)
        if first:
            raise SystemExit(first if self.rank == 0 else 1)

    def all_or_none(self, attempt):
        """``attempt()`` on every process; a failure on any one stops all of them (a user's error with its
        message; anything else also with its traceback, printed by the process it happened in)."""
        try:
            result, problem = attempt(), None
        except (SystemExit, RunFolderError, CheckpointError, DataError, OSError) as error:
            result, problem = None, str(error) or type(error).__name__
        except Exception as error:
            traceback.print_exc()
            result, problem = None, f'process {self.rank}: {type(error).__name__}: {error} (traceback above)'
        self.agree(problem)
        return result

    def all_values(self, value):
        """[every process's ``value``], in rank order."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def one_value(self, value):
        """Rank 0's ``value``, on every process."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # ----------------------------------------------------------------------- run folder and resume state

    def take_run_folder(self):
        """Rank 0 (the only writer) locks the run folder for the life of the run, and refuses to start
        a new run over an old one."""
        if self.rank != 0:
            return
        self.lock = RunLock(run_dir(self.opt)).acquire()
        if self.opt.resume is None:
            refuse_new_run_over_old(self.opt)

    def resume_state(self):
        """Rank 0 reads the resume state and hands it to the others: only its machine needs the run folder."""
        return self.one_value(self.all_or_none(self.read_resume_state if self.rank == 0 else lambda: None))

    def read_resume_state(self):
        path = resume_path(self.opt)
        if not osp.isfile(path):
            if not self.opt.resume and not step_checkpoints(run_dir(self.opt)):
                raise SystemExit(f'--resume: {path} does not exist; nothing to resume. Start the run without '
                                 f'--resume.')
            raise SystemExit(self.unreadable_resume_message(path, f'--resume: {path} does not exist'))
        try:
            state = read_checkpoint(path, torch.device('cpu'))
        except CheckpointError as error:
            raise SystemExit(self.unreadable_resume_message(path, str(error))) from None
        if not isinstance(state, dict) or not {'stage', 'step', 'model', 'optimizer', 'data', 'rng'} <= set(state):
            raise SystemExit(self.unreadable_resume_message(path, f'{path} is not a resume state of train.py'))
        if state['stage'] != self.opt.stage:
            raise SystemExit(f'{path} is a {state["stage"]} run; this command trains {self.opt.stage}.')
        return state

    def unreadable_resume_message(self, path, problem):
        """What is wrong with the resume state, and the command that continues from the newest intact file."""
        folder = run_dir(self.opt)
        previous = osp.join(folder, PREVIOUS_RESUME_FILE)
        intact, state = newest_intact([previous] if osp.abspath(path) != osp.abspath(previous) else [])
        if intact:
            command = self.command_with(resume=intact)
            return (f'{problem}. The previous resume state {intact} (step {state["step"]}) is intact; continue '
                    f'from it with: {command}')
        intact, _ = newest_intact(step_checkpoints(folder))
        if intact:
            command = self.command_with(resume=None, name=self.opt.name + '_continued',
                                   checkpoint=intact)
            return (f'{problem}. No intact resume state; the newest intact step checkpoint is {intact}: continue '
                    f'from its weights (the optimizer and the LR schedule start anew) with: {command}')
        return f'{problem}. {folder} holds no intact resume state or step checkpoint: start the run again.'

    def command_with(self, **flags):
        """The command that continues this run with ``flags`` changed (see runs.command_with)."""
        command = command_with('train.py', self.argv, **flags)
        if self.world_size > 1:
            return command.replace('python train.py', 'torchrun <your torchrun options> train.py', 1)
        return command

    def record_options(self, state, given_seed):
        """A new run records its options; a resumed one must keep them, except the changes
        runs.resume_option_changes allows (logged, and recorded)."""
        current = self.recorded_options = recorded_options(self.opt, self.world_size)
        if state is not None:
            recorded = state.get('options') or read_options(osp.join(run_dir(self.opt), OPTIONS_FILE)) or {}
            refused, allowed = resume_option_changes(recorded, {**current, 'seed': given_seed}, state['step'],
                                                     lr_lambda_for, self.stage.batch_statistics)
            if refused:
                raise SystemExit(f'{resume_path(self.opt)}: this run was started with other options: '
                                 f'{"; ".join(refused)}. Resume it with the options it was started with, '
                                 f'or start a new run with another --name.')
            if not allowed:
                return
            self.log(f'resuming with changed options (allowed, they keep the run consistent): {"; ".join(allowed)}')
        if self.rank == 0:
            write_options(current, run_dir(self.opt))

    def restore(self, state):
        """Restore what ``save_resume_state`` wrote; returns the step to continue from."""
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        self.loader.load_state(data_position(state))
        # The schedule of this command (resume_option_changes allowed it) from this step on.
        self.scheduler.base_lrs = [self.opt.lr] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group['lr'] = self.opt.lr * lr_lambda_for(self.opt)(state['step'])
        saved = rng_states(state)
        if self.rank < len(saved):
            set_rng_state(saved[self.rank], self.device)
        else:
            print(f'process {self.rank}: the resume state holds the random state of {len(saved)} process(es); '
                  f'this one keeps its fresh seed {self.opt.seed + self.rank}', flush=True)
        self.log(f'resumed {resume_path(self.opt)} at step {state["step"]}')
        path = resume_path(self.opt)
        self.last_saved['resume'] = (path, state['step'])
        self.resume_file_intact = osp.abspath(path) == osp.abspath(osp.join(run_dir(self.opt), RESUME_FILE))
        newest = step_checkpoints(run_dir(self.opt))
        if newest:
            self.last_saved['model'] = (newest[0], step_of(newest[0]))
        return state['step']

    def warn_if_disk_too_small(self):
        model_bytes = sum(v.numel() * v.element_size() for v in self.model.state_dict().values())
        params_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        warning = disk_space_warning(run_dir(self.opt), model_bytes, model_bytes + 2 * params_bytes,  # + Adam
                                     self.start_step, self.opt.keep_step + self.opt.decay_step, self.opt.save_count)
        if warning:
            self.log(warning)

    # ----------------------------------------------------------------------- saving

    def save(self, step, model_file=None, resume=True):
        """Rank 0 writes ``model_file`` (if any) and (``resume``) the resume state of every process; a
        failed write stops all processes with one message."""
        rng = self.all_values(rng_state(self.device))
        problem = None
        if self.rank == 0:
            try:
                if model_file:
                    path = osp.join(run_dir(self.opt), model_file)
                    save_checkpoint(self.model, path)
                    self.last_saved['model'] = (path, step)
                if resume:
                    self.save_resume_state(step, rng)
            except OSError as error:
                problem = self.failed_save_message(error)
            except Exception as error:
                traceback.print_exc()
                problem = f'stopped: saving at step {step} failed: {type(error).__name__}: {error} (traceback above)'
        self.agree(problem)

    def save_resume_state(self, step, rng):
        path = osp.join(run_dir(self.opt), RESUME_FILE)
        data = serialized({'stage': self.opt.stage, 'step': step, 'seed': self.opt.seed,
                           'model': cpu_state_dict(self.model), 'optimizer': self.optimizer.state_dict(),
                           'scheduler': self.scheduler.state_dict(), 'data': self.loader.state(), 'rng': rng,
                           'options': self.recorded_options})
        # The previous state is kept as resume.prev.pth, so a resume.pth damaged later still leaves one; but
        # a resume.pth not known to be whole (the run resumed from resume.prev.pth) must not replace it.
        previous = osp.join(run_dir(self.opt), PREVIOUS_RESUME_FILE) if self.resume_file_intact else None
        atomic_write(path, durable_writer(data), size=len(data), keep_previous=previous)
        self.last_saved['resume'] = (path, step)
        self.resume_file_intact = True

    def failed_save_message(self, error):
        """One line: what failed, what is intact, and how to continue."""
        intact = [f'{path} (step {step})' for path, step in self.last_saved.values() if osp.exists(path)]
        intact = ', '.join(intact) if intact else 'nothing yet (no checkpoint was written before)'
        if isinstance(error, DiskFullError):
            fix = (f'free at least {format_bytes(error.needed or 0)} on that disk (or move {run_dir(self.opt)} '
                   f'to another disk and pass --checkpoint_dir)')
        else:
            fix = 'fix the disk (or move the run folder to another disk and pass --checkpoint_dir)'
        if 'resume' not in self.last_saved:
            return (f'stopped: {error}. Intact: {intact}; no temporary file was left. No resume state was '
                    f'written yet: {fix}, then start the run again (delete {run_dir(self.opt)} first, or pass '
                    f'another --name)')
        resume = self.last_saved['resume'][0]
        resume = True if osp.abspath(resume) == osp.abspath(osp.join(run_dir(self.opt), RESUME_FILE)) else resume
        return (f'stopped: {error}. Intact: {intact}; no temporary file was left. To continue, {fix}, then run: '
                f'{self.command_with(resume=resume)}')

    # ----------------------------------------------------------------------- steps

    def autocast(self):
        if not self.opt.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def train_step(self, step):
        inputs = to_device(self.loader.next_batch(), self.device, self.memory_format)
        with self.autocast():
            out = self.stage.run(self.forward, inputs)
            loss, terms = self.criterion(inputs, out)
        self.stop_if_not_finite(step, loss, out, inputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return inputs, out, terms

    def stop_if_not_finite(self, step, loss, out, inputs):
        """Before the update: a non-finite loss or warp grid on any process stops all of them at this step
        (a process that skipped backward alone would leave the others waiting in the gradient all-reduce).
        The grid is checked too: grid_sample's forward turns NaN coordinates into finite values, and its
        backward then crashes the process (SIGSEGV on the CPU, torch 2.14)."""
        finite = (torch.isfinite(loss.detach()) & finite_grid(out)).to(torch.int32)
        all_finite = finite.clone()
        if self.world_size > 1:
            dist.all_reduce(all_finite, op=dist.ReduceOp.MIN)
        if all_finite.item():
            return
        self.agree(None if finite.item() else self.bad_loss_message(step, loss, out, inputs))

    def bad_loss_message(self, step, loss, out, inputs):
        pairs = ', '.join(f'{p} + {c}' for p, c in zip(inputs['im_name'], inputs['c_name']))
        where = f' on process {self.rank}' if self.world_size > 1 else ''
        what = f'the loss is {loss.item()}' + ('' if finite_grid(out) else ' and the warp grid')
        last = self.last_saved.get('resume', (None,))[0]
        then = (f'The last good checkpoint is kept ({last}); check these images, or lower --lr, then continue '
                f'with --resume.' if last else
                'No resume state was written yet; check these images, or lower --lr, then start the run again.')
        return (f'step {step + 1}: {what}{where} (not finite); training stopped before the weights were '
                f'updated. Batch: {pairs}. {then}')

    def log_step(self, step, terms, inputs, out, seconds_per_step):
        values = {k: v.item() for k, v in terms.items()}
        lr = self.optimizer.param_groups[0]['lr']
        total = self.opt.keep_step + self.opt.decay_step
        eta = format_eta(seconds_per_step * (total - step - 1))
        line = 'step: %8d, time: %.3f, %s' % (step + 1, seconds_per_step, self.stage.log_terms(values))
        self.log(f'{line}, lr: {lr:.3g}, {1 / seconds_per_step:.2f} steps/s, eta {eta}')
        if self.board is not None:
            with torch.no_grad():
                board_add_images(self.board, 'combine', self.stage.visuals(inputs, out), step + 1)
            for tag, value in values.items():
                self.board.add_scalar(tag, value, step + 1)
            self.board.add_scalar('lr', lr, step + 1)

    def train(self):
        opt = self.opt
        total = opt.keep_step + opt.decay_step
        final_name = self.stage.final_checkpoint
        with StopRequest() as stop:
            tick, tick_step = time.time(), self.start_step
            for step in range(self.start_step, total):
                inputs, out, terms = self.train_step(step)
                if (step + 1) % opt.display_count == 0:
                    now = time.time()
                    self.log_step(step, terms, inputs, out, (now - tick) / (step + 1 - tick_step))
                    tick, tick_step = now, step + 1
                if (step + 1) % opt.save_count == 0:
                    self.save(step + 1, 'step_%06d.pth' % (step + 1))
                if self.stop_requested(stop):
                    if (step + 1) % opt.save_count:   # else saved just above: one resume state per step
                        self.save(step + 1)
                    self.log(f'{stop.signal_name}: saved {osp.join(run_dir(opt), RESUME_FILE)} at step {step + 1}; '
                             f'continue with the same command plus --resume.')
                    return 1
        # One resume state per step (so resume.prev.pth stays an older one): none when it was saved just above,
        # or when the run was resumed at its end.
        self.save(total, final_name, resume=total > self.start_step and total % opt.save_count != 0)
        if self.world_size > 1:
            self.log(f'processes in sync: largest parameter difference between ranks {self.rank_divergence():.3g}')
        self.log(f'finished: {osp.join(run_dir(opt), final_name)}')
        return 0

    def rank_divergence(self):
        """Largest difference of any parameter between any rank and rank 0 (0 when DDP works)."""
        divergence = torch.zeros((), device=self.device)
        for param in self.model.parameters():
            reference = param.detach().clone()
            dist.broadcast(reference, src=0)
            divergence = torch.maximum(divergence, (param.detach() - reference).abs().max())
        dist.all_reduce(divergence, op=dist.ReduceOp.MAX)
        return divergence.item()

    def stop_requested(self, stop):
        """Whether any process got SIGINT/SIGTERM (all must stop at the same step)."""
        requested = torch.tensor([stop.signal_name is not None], dtype=torch.int32)
        if self.world_size > 1:
            requested = requested.to(self.device)
            dist.all_reduce(requested)
        if requested.item() and stop.signal_name is None:
            stop.signal_name = 'stop request from another process'
        return bool(requested.item())

    def close(self):
        if self.board is not None:
            self.board.close()
        if self.lock is not None:
            self.lock.release()
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def main(argv=None):
    opt = get_opt(argv)
    if opt.check_data:
        return check_only(opt, spec=STAGES[opt.stage].data)
    trainer = Trainer(opt, argv)
    try:
        return trainer.train()
    finally:
        trainer.close()


if __name__ == '__main__':
    sys.exit(main())
