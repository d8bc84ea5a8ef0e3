"""Train CP-VTON's Geometric Matching Module (--stage GMM) or Try-On Module (--stage TOM).

    python train.py --name gmm_train_new --stage GMM --workers 4 --save_count 5000 --shuffle
    python train.py --name tom_train_new --stage TOM --workers 4 --save_count 5000 --shuffle
    torchrun --nproc_per_node=4 train.py ...      # DistributedDataParallel, --batch-size per GPU

Writes checkpoints/<name>/step_XXXXXX.pth every --save_count steps and gmm_final.pth /
tom_final.pth at the end (plain state dicts in the original layout), plus resume.pth (model,
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
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from tensorboardX import SummaryWriter

from cp_dataset import BODY_SHAPE_SOURCES, RESERVED_LABELS, CPDataLoader, CPDataset
from data_check import check_only, check_or_exit
from networks import (GMM, TOM_INPUT_CHANNELS, atomic_torch_save, atomic_write, build_tom, build_vgg_loss,
                      cpu_state_dict, grid_interval_consistency, load_checkpoint, read_checkpoint, save_checkpoint,
                      select_device, tom_tryon, unwrap_model, warp, warp_cloth)
from visualization import board_add_images

RESUME_FILE = 'resume.pth'


def get_opt(argv=None):
    parser = argparse.ArgumentParser(description='Train CP-VTON (GMM or TOM).')
    parser.add_argument('--name', default='GMM')
    parser.add_argument('--gpu_ids', default='', help="'' first GPU if any, else CPU; '0' that GPU; '-1' the CPU")
    parser.add_argument('-j', '--workers', type=int, default=1)
    parser.add_argument('-b', '--batch-size', type=int, default=4, help='per process (per GPU with torchrun)')
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--datamode', default='train')
    parser.add_argument('--stage', default='GMM', choices=['GMM', 'TOM'])
    parser.add_argument('--data_list', default='train_pairs.txt')
    add_model_arguments(parser)
    parser.add_argument('--lr', type=float, default=0.0001, help='initial learning rate for adam')
    parser.add_argument('--tensorboard_dir', type=str, default='tensorboard', help='save tensorboard infos')
    parser.add_argument('--checkpoint_dir', type=str, default='checkpoints', help='save checkpoint infos')
    parser.add_argument('--checkpoint', type=str, default='', help='model checkpoint for initialization')
    parser.add_argument('--display_count', type=int, default=20)
    parser.add_argument('--save_count', type=int, default=100)
    parser.add_argument('--keep_step', type=int, default=100000)
    parser.add_argument('--decay_step', type=int, default=100000)
    parser.add_argument('--shuffle', action='store_true', help='shuffle input data')
    # Additions to the original flags.
    parser.add_argument('--seed', type=int, default=None, help='random seed (default: drawn, and logged)')
    parser.add_argument('--lr_policy', default='paper', choices=['paper', 'constant'],
                        help='paper: constant for keep_step steps, then linear decay to 0 over decay_step; '
                             'constant: the original code\'s behaviour (its scheduler was never stepped)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in <checkpoint_dir>/<name> from its resume.pth')
    parser.add_argument('--vgg_init', default='imagenet', choices=['imagenet', 'random'],
                        help='TOM perceptual loss: ImageNet VGG19 (needs the weights file) or random (demos/tests)')
    parser.add_argument('--vgg_weights', default='', help='path of vgg19-dcbb9e9d.pth (default: torch hub cache)')
    parser.add_argument('--amp', action='store_true', help='bf16 autocast (GPU speed; off = faithful float32)')
    parser.add_argument('--channels_last', action='store_true', help='channels-last memory format')
    parser.add_argument('--cudnn_benchmark', action='store_true', help='cuDNN autotuning')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model')
    parser.add_argument('--check_data', action='store_true',
                        help='only check the dataset against the pairs file, report every problem, and exit')
    plus = parser.add_argument_group('CP-VTON+ training options (off by default: the original CP-VTON)')
    plus.add_argument('--gic_weight', type=float, default=0.0,
                      help='GMM: weight of the grid-interval-consistency loss (CP-VTON+: 40; 0 = off)')
    plus.add_argument('--tom_mask_target', default='warped_mask', choices=TOM_MASK_TARGETS,
                      help="TOM: the composition mask's L1 target: GMM's warped mask (original) or the "
                           "person's cloth region in the parse map (CP-VTON+)")
    opt = parser.parse_args(argv)
    for name in ('display_count', 'save_count'):
        if getattr(opt, name) < 1:
            parser.error(f'--{name} must be at least 1')
    return opt


def add_model_arguments(parser):
    """The options that define a model and its input; train.py records them in options.json and
    test.py reads them back, so it rebuilds the model a checkpoint was trained as."""
    parser.add_argument('--fine_width', type=int, default=192)
    parser.add_argument('--fine_height', type=int, default=256)
    parser.add_argument('--radius', type=int, default=5)
    parser.add_argument('--grid_size', type=int, default=5)
    plus = parser.add_argument_group('CP-VTON+ model options (off by default: the original CP-VTON)')
    plus.add_argument('--reserved_regions', default='original', choices=tuple(RESERVED_LABELS),
                      help='regions the person representation keeps: original (hat, hair, sunglasses, face for '
                           'both stages) or cpvton_plus (GMM: hat, sunglasses, face; TOM: also hair, pants, '
                           'skirt, legs)')
    plus.add_argument('--body_shape', default='parse', choices=BODY_SHAPE_SOURCES,
                      help='body shape from the parse map (original) or from image-mask/<person>.png (CP-VTON+)')
    plus.add_argument('--tom_mask_input', action='store_true',
                      help='TOM: also feed the warped cloth mask (26 input channels, CP-VTON+)')


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
    if not on:
        return 'CP-VTON+ options: none (the original CP-VTON)'
    return 'CP-VTON+ options on: ' + ', '.join(f'--{name}' if value is True else f'--{name} {value}'
                                               for name, value in on.items())


# --------------------------------------------------------------------------- one step of each stage

def build_model(opt):
    if opt.stage == 'GMM':
        return GMM(opt)
    return build_tom(TOM_INPUT_CHANNELS + (1 if getattr(opt, 'tom_mask_input', False) else 0))


def to_device(batch, device, memory_format=torch.contiguous_format):
    """Move the tensors of a batch dict to ``device`` (file names and '' stay as they are)."""
    return {k: v.to(device, non_blocking=True, memory_format=memory_format) if torch.is_tensor(v) and v.dim() == 4
            else v for k, v in batch.items()}


def run_gmm(model, inputs):
    """GMM forward and warp: returns dict(grid, theta, warped_cloth, warped_mask)."""
    grid, theta = model(inputs['agnostic'], inputs['cloth'])
    warped_cloth, warped_mask = warp_cloth(inputs['cloth'], inputs['cloth_mask'], grid)
    return {'grid': grid, 'theta': theta, 'warped_cloth': warped_cloth, 'warped_mask': warped_mask}


def gmm_visuals(inputs, out):
    """Rows: head/shape/pose . cloth/warped cloth/target . warped grid/overlay/person."""
    warped_grid = warp(inputs['grid_image'], out['grid'], 'zeros')
    return [[inputs['head'], inputs['shape'], inputs['pose_image']],
            [inputs['cloth'], out['warped_cloth'], inputs['parse_cloth']],
            [warped_grid, (out['warped_cloth'] + inputs['image']) * 0.5, inputs['image']]]


def tom_input(model, inputs):
    """TOM's input: agnostic (22) + warped cloth (3), and the warped mask (1) for a 26-channel
    TOM (--tom_mask_input, CP-VTON+); the model's own input width decides."""
    parts = [inputs['agnostic'], inputs['cloth']]
    if unwrap_model(model).input_nc == TOM_INPUT_CHANNELS + 1:
        parts.append(inputs['cloth_mask'])
    return torch.cat(parts, 1)


def run_tom(model, inputs):
    """TOM forward and composition: returns dict(p_rendered, m_composite, p_tryon)."""
    outputs = model(tom_input(model, inputs))
    p_rendered, m_composite, p_tryon = tom_tryon(outputs, inputs['cloth'])
    return {'p_rendered': p_rendered, 'm_composite': m_composite, 'p_tryon': p_tryon}


def tom_visuals(inputs, out):
    """Rows: head/shape/pose . cloth/mask/composition mask . rendered/try-on/person."""
    return [[inputs['head'], inputs['shape'], inputs['pose_image']],
            [inputs['cloth'], inputs['cloth_mask'] * 2 - 1, out['m_composite'] * 2 - 1],
            [out['p_rendered'], out['p_tryon'], inputs['image']]]


class GMMLoss(nn.Module):
    """L1 between the warped cloth and the cloth region of the person; with ``gic_weight`` > 0,
    plus that weight times CP-VTON+'s grid-interval-consistency loss of the grid."""

    def __init__(self, gic_weight=0.0):
        super().__init__()
        self.gic_weight = gic_weight

    def forward(self, inputs, out):
        loss_warp = nn.functional.l1_loss(out['warped_cloth'], inputs['parse_cloth'])
        if not self.gic_weight:
            return loss_warp, {'metric': loss_warp}
        loss_gic = grid_interval_consistency(out['grid'])
        loss = loss_warp + self.gic_weight * loss_gic
        return loss, {'metric': loss, 'Lwarp': loss_warp, 'Lgic': loss_gic}


TOM_MASK_TARGETS = {'warped_mask': 'cloth_mask', 'person_cloth': 'parse_cloth_mask'}   # option -> input key


class TOMLoss(nn.Module):
    """L1(try-on, person) + VGG(try-on, person) + L1(composition mask, target), the target being
    the warped-cloth mask (original) or the person's cloth region (``mask_target='person_cloth'``)."""

    def __init__(self, vgg_loss, mask_target='warped_mask'):
        super().__init__()
        self.vgg_loss = vgg_loss
        self.mask_key = TOM_MASK_TARGETS[mask_target]

    def forward(self, inputs, out):
        loss_l1 = nn.functional.l1_loss(out['p_tryon'], inputs['image'])
        loss_vgg = self.vgg_loss(out['p_tryon'], inputs['image'])
        loss_mask = nn.functional.l1_loss(out['m_composite'], inputs[self.mask_key])
        loss = loss_l1 + loss_vgg + loss_mask
        return loss, {'metric': loss, 'L1': loss_l1, 'VGG': loss_vgg, 'MaskL1': loss_mask}


STAGES = {'GMM': (run_gmm, gmm_visuals), 'TOM': (run_tom, tom_visuals)}


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


def check_run_dir(opt):
    """Refuse to start a new run over an existing one: its checkpoints would be overwritten."""
    resume_path = osp.join(run_dir(opt), RESUME_FILE)
    if opt.resume:
        if not osp.isfile(resume_path):
            raise SystemExit(f'--resume: {resume_path} does not exist; nothing to resume. '
                             f'Start the run without --resume.')
        return resume_path
    existing = [f for f in os.listdir(run_dir(opt)) if f.endswith('.pth')] if osp.isdir(run_dir(opt)) else []
    if existing:
        raise SystemExit(f'{run_dir(opt)} already holds checkpoints of a run ({", ".join(sorted(existing)[:3])}...). '
                         f'Pass --resume to continue it, or choose another --name; nothing was overwritten.')
    return None


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
    """What options.json holds: every flag of the run, plus the process count and torch version."""
    return {**vars(opt), 'world_size': world_size, 'torch_version': torch.__version__}


def write_options(opt, world_size):
    text = json.dumps(recorded_options(opt, world_size), indent=2) + '\n'
    atomic_write(osp.join(run_dir(opt), OPTIONS_FILE), lambda tmp_path: Path(tmp_path).write_text(text))


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


def check_same_options(opt, path):
    """--resume must continue the run with the options it was started with."""
    recorded = read_options(path) or {}
    changed = [f'--{name} {recorded[name]!r} (now {getattr(opt, name)!r})' for name in MODEL_OPTIONS + TRAINING_OPTIONS
               if name in recorded and recorded[name] != getattr(opt, name)]
    if changed:
        raise SystemExit(f'{path}: this run was started with {", ".join(changed)}; resume it with the same options.')


def format_eta(seconds):
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# --------------------------------------------------------------------------- training

class Trainer:
    def __init__(self, opt):
        self.opt = opt
        self.rank, self.world_size, self.device = setup_distributed(opt)
        self.log = Logger(self.rank)
        resume_path = check_run_dir(opt)
        resume_state = read_checkpoint(resume_path, torch.device('cpu')) if resume_path else None
        if resume_state is not None:
            opt.seed = resume_state['seed']   # the data order depends on it
        elif opt.seed is None:
            opt.seed = int(time.time()) % 100000
        torch.manual_seed(opt.seed + self.rank)
        random.seed(opt.seed + self.rank)
        torch.backends.cudnn.benchmark = opt.cudnn_benchmark
        self.log(f'stage {opt.stage}, run {opt.name}, device {self.device}, processes {self.world_size}, '
                 f'batch {opt.batch_size} per process ({opt.batch_size * self.world_size} in all), seed {opt.seed}, '
                 f'lr {opt.lr} ({opt.lr_policy}), amp {opt.amp}, channels_last {opt.channels_last}, '
                 f'compile {opt.compile}')
        self.log(describe_options(opt))

        # Every rank checks (deterministically), so all stop together on bad data.
        check_or_exit(opt, self.log)
        self.dataset = CPDataset(opt)
        self.loader = CPDataLoader(opt, self.dataset, rank=self.rank, world_size=self.world_size,
                                   pin_memory=self.device.type == 'cuda', log=self.log)
        self.memory_format = torch.channels_last if opt.channels_last else torch.contiguous_format

        model = build_model(opt)
        if opt.checkpoint:
            load_checkpoint(model, opt.checkpoint, torch.device('cpu'))
            self.log(f'initialised from {opt.checkpoint}')
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=opt.lr, betas=(0.5, 0.999))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=lr_lambda_for(opt))
        self.criterion = (GMMLoss(opt.gic_weight) if opt.stage == 'GMM'
                          else TOMLoss(build_vgg_loss(opt.vgg_init, opt.vgg_weights, self.log),
                                       opt.tom_mask_target)).to(self.device)
        self.criterion = self.criterion.to(memory_format=self.memory_format)
        self.start_step = self.load_resume_state(resume_path, resume_state) if resume_path else 0
        if self.rank == 0 and not resume_path:
            write_options(opt, self.world_size)

        self.forward = self.model
        if self.world_size > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None)
        if opt.compile:
            self.forward = torch.compile(self.forward)
        self.run_stage, self.visuals = STAGES[opt.stage]
        self.board = None
        if self.rank == 0:
            # purge_step drops events a killed run logged after its last checkpoint.
            self.board = SummaryWriter(log_dir=osp.join(opt.tensorboard_dir, opt.name),
                                       purge_step=self.start_step + 1 if self.start_step else None)

    def autocast(self):
        if not self.opt.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def load_resume_state(self, path, state):
        """Restore what ``save_resume_state`` wrote; returns the step to continue from."""
        if state.get('stage') != self.opt.stage:
            raise SystemExit(f'{path} is a {state.get("stage")} run; this command trains {self.opt.stage}.')
        check_same_options(self.opt, osp.join(run_dir(self.opt), OPTIONS_FILE))
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        self.loader.load_state(state['data'][self.rank] if self.rank < len(state['data']) else state['data'][0])
        set_rng_state(state['rng'], self.device)
        self.log(f'resumed {path} at step {state["step"]}')
        return state['step']

    def save_resume_state(self, step):
        """Resume state of every process (data positions are gathered from all ranks)."""
        data_states = [self.loader.state()]
        if self.world_size > 1:
            data_states = [None] * self.world_size
            dist.all_gather_object(data_states, self.loader.state())
        if self.rank == 0:
            atomic_torch_save({'stage': self.opt.stage, 'step': step, 'seed': self.opt.seed,
                               'model': cpu_state_dict(self.model), 'optimizer': self.optimizer.state_dict(),
                               'scheduler': self.scheduler.state_dict(), 'data': data_states,
                               'rng': rng_state(self.device)}, osp.join(run_dir(self.opt), RESUME_FILE))

    def save_model(self, file_name):
        if self.rank == 0:
            save_checkpoint(self.model, osp.join(run_dir(self.opt), file_name))

    def train_step(self, step):
        inputs = to_device(self.loader.next_batch(), self.device, self.memory_format)
        with self.autocast():
            out = self.run_stage(self.forward, inputs)
            loss, terms = self.criterion(inputs, out)
        if not torch.isfinite(loss):
            self.stop_on_bad_loss(step, loss, inputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return inputs, out, terms

    def stop_on_bad_loss(self, step, loss, inputs):
        pairs = ', '.join(f'{p} + {c}' for p, c in zip(inputs['im_name'], inputs['c_name']))
        last = osp.join(run_dir(self.opt), RESUME_FILE)
        raise SystemExit(f'step {step + 1}: the loss is {loss.item()} (not finite); training stopped before the '
                         f'weights were updated. Batch: {pairs}. The last good checkpoint is kept '
                         f'({last if osp.exists(last) else "none written yet"}); check these images, or '
                         f'lower --lr, then continue with --resume.')

    def log_step(self, step, terms, inputs, out, seconds_per_step):
        values = {k: v.item() for k, v in terms.items()}
        lr = self.optimizer.param_groups[0]['lr']
        total = self.opt.keep_step + self.opt.decay_step
        eta = format_eta(seconds_per_step * (total - step - 1))
        if self.opt.stage == 'GMM':
            line = 'step: %8d, time: %.3f, loss: %4f' % (step + 1, seconds_per_step, values['metric'])
            if 'Lgic' in values:
                line += ', warp: %.6f, gic: %.8f' % (values['Lwarp'], values['Lgic'])
        else:
            line = ('step: %8d, time: %.3f, loss: %.4f, l1: %.4f, vgg: %.4f, mask: %.4f'
                    % (step + 1, seconds_per_step, values['metric'], values['L1'], values['VGG'], values['MaskL1']))
        self.log(f'{line}, lr: {lr:.3g}, {1 / seconds_per_step:.2f} steps/s, eta {eta}')
        if self.board is not None:
            with torch.no_grad():
                board_add_images(self.board, 'combine', self.visuals(inputs, out), step + 1)
            for tag, value in values.items():
                self.board.add_scalar(tag, value, step + 1)
            self.board.add_scalar('lr', lr, step + 1)

    def train(self):
        opt = self.opt
        total = opt.keep_step + opt.decay_step
        final_name = 'gmm_final.pth' if opt.stage == 'GMM' else 'tom_final.pth'
        with StopRequest() as stop:
            tick, tick_step = time.time(), self.start_step
            for step in range(self.start_step, total):
                inputs, out, terms = self.train_step(step)
                if (step + 1) % opt.display_count == 0:
                    now = time.time()
                    self.log_step(step, terms, inputs, out, (now - tick) / (step + 1 - tick_step))
                    tick, tick_step = now, step + 1
                if (step + 1) % opt.save_count == 0:
                    self.save_model('step_%06d.pth' % (step + 1))
                    self.save_resume_state(step + 1)
                if self.stop_requested(stop):
                    self.save_resume_state(step + 1)
                    self.log(f'{stop.signal_name}: saved {osp.join(run_dir(opt), RESUME_FILE)} at step {step + 1}; '
                             f'continue with the same command plus --resume.')
                    return 1
        self.save_model(final_name)
        self.save_resume_state(total)
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
        if self.world_size > 1:
            dist.destroy_process_group()


def main(argv=None):
    opt = get_opt(argv)
    if opt.check_data:
        return check_only(opt)
    trainer = Trainer(opt)
    try:
        return trainer.train()
    finally:
        trainer.close()


if __name__ == '__main__':
    sys.exit(main())
