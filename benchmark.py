"""Measure how fast CP-VTON trains here: TPS grids, GMM and TOM training steps, data loading.

    python benchmark.py                                   # cuda if available, else cpu
    python benchmark.py --device cpu --compare-baseline   # also time the original computations
    python benchmark.py --device cuda --amp --channels_last --compile --fine_height 512 --fine_width 384

Every time is the median of --repeats runs after --warmup untimed ones. The machine's load may
change during a run, so the report says how much CPU other processes took, and a fast version
and its original are timed in turns (a, b, a, b, ...) with speed-ups taken as the median of
the per-round ratios. The training steps are train.py's own ``Trainer.train_step``
(same flags: --amp, --channels_last, --compile, --cudnn_benchmark) fed one fixed batch, so they
time the model, loss, backward and Adam update; data loading is measured on its own. The TOM
step uses a randomly initialised VGG19 for the perceptual loss (ImageNet weights are not
needed to time it: the network and its cost are the same).

--compare-baseline also times straightforward re-implementations of the original CP-VTON
computations, kept here and not in the product: the per-pixel TPS grid generator, the
original dataset item (torchvision transforms, per-keypoint PIL pose drawing, torch.cat, grid.png
re-read per item), and a GMM step that uses that TPS. It checks they give the same numbers as the
fast versions and prints the speed-ups. The original item is compared only on files of the model's
size: it never resized them.

Without --dataroot, a small synthetic dataset (256x192 files) is written to a temporary folder; at
another --fine_height/--fine_width, CPDataset resizes its files on load, and the data times include it.
Writes a markdown table to stdout (progress to stderr) and, with --json PATH, every number.
"""
import argparse
import contextlib
import functools
import itertools
import json
import os
import os.path as osp
import platform
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw
from torchvision import transforms

import cp_dataset
import flags
import synthetic_data
from cp_dataset import CPDataLoader, CPDataset, make_grid_image
from mgvton import MGVTON
from mgvton import STAGE_NAMES as MGVTON_STAGES
from mpv_dataset import TRIPLET_LIST
from networks import TpsGridGen, save_checkpoint, tps_control_points, tps_inverse_system, tps_radial_kernel
from methods import STAGES
from train import Trainer, get_opt

TPS_TOLERANCE = 1e-5           # baseline vs fast grid, float32
MIN_SAMPLE_SECONDS = 0.02      # fast calls are looped until one timed sample lasts this long


# --------------------------------------------------------------------------- the original computations

class OriginalTpsGridGen(nn.Module):
    """The original CP-VTON TPS grid generator, per pixel.

    Same constants as networks.TpsGridGen (control points on a regular grid, x varying
    slowest; float32 inverse Li of the TPS system), but applied as the original did: the
    weights W = Li[:N,:N] @ Q and A = Li[N:,:N] @ Q are copied to every pixel with .repeat
    ([B,H,W,1,N] and [B,H,W,1,3]), U = d^2 log d^2 is recomputed per pixel and control
    point ([1,H,W,1,N]), and each output coordinate is A0 + A1 x + A2 y + sum_k W_k U_k.
    """

    def __init__(self, out_h=256, out_w=192, grid_size=5):
        super().__init__()
        self.out_h, self.out_w, self.N = out_h, out_w, grid_size * grid_size
        p_x, p_y = tps_control_points(grid_size)
        self.register_buffer('li', tps_inverse_system(p_x, p_y), persistent=False)           # [N+3, N+3]
        self.register_buffer('p_x', p_x.reshape(1, 1, 1, 1, -1), persistent=False)          # [1,1,1,1,N]
        self.register_buffer('p_y', p_y.reshape(1, 1, 1, 1, -1), persistent=False)
        grid_x, grid_y = np.meshgrid(np.linspace(-1, 1, out_w), np.linspace(-1, 1, out_h))
        self.register_buffer('grid_x', torch.tensor(grid_x, dtype=torch.float32)[None, :, :, None],
                             persistent=False)                                                # [1,H,W,1]
        self.register_buffer('grid_y', torch.tensor(grid_y, dtype=torch.float32)[None, :, :, None],
                             persistent=False)

    def per_pixel(self, weights):
        """[B, K, 1] -> [B, H, W, 1, K], materialised (.repeat, not .expand) as the original."""
        return weights.transpose(1, 2).unsqueeze(1).unsqueeze(1).repeat(1, self.out_h, self.out_w, 1, 1)

    def transform(self, q, radial):
        """One output coordinate [B,H,W,1] from the displaced control points q [B,N,1]."""
        n = self.N
        w = self.per_pixel(torch.bmm(self.li[:n, :n].expand(q.size(0), n, n), q))
        a = self.per_pixel(torch.bmm(self.li[n:, :n].expand(q.size(0), 3, n), q))
        return (a[..., 0] + a[..., 1] * self.grid_x + a[..., 2] * self.grid_y
                + torch.sum(w * radial.expand_as(w), 4))

    def forward(self, theta):
        n = self.N
        q_x = theta[:, :n, None] + self.p_x.reshape(1, n, 1)
        q_y = theta[:, n:, None] + self.p_y.reshape(1, n, 1)
        radial = tps_radial_kernel((self.grid_x.unsqueeze(4) - self.p_x) ** 2
                                   + (self.grid_y.unsqueeze(4) - self.p_y) ** 2)              # [1,H,W,1,N]
        return torch.cat([self.transform(q_x, radial), self.transform(q_y, radial)], 3)


# ToTensor + Normalize(0.5, 0.5): the original's transform (one-channel fix for L images).
GRAY_TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
RGB_TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])


def draw_pose_maps_pil(keypoints, height, width, radius):
    """The original pose drawing, same result as cp_dataset.draw_pose_maps: one new PIL 'L'
    image per keypoint, a white square drawn if x > 1 and y > 1, each map converted on its own,
    plus one image with all squares."""
    pose_map = torch.zeros(len(keypoints), height, width)
    pose_image = Image.new('L', (width, height))
    pose_draw = ImageDraw.Draw(pose_image)
    for i, (x, y, _confidence) in enumerate(keypoints):
        one_map = Image.new('L', (width, height))
        if x > 1 and y > 1:
            square = (x - radius, y - radius, x + radius, y + radius)
            ImageDraw.Draw(one_map).rectangle(square, 'white', 'white')
            pose_draw.rectangle(square, 'white', 'white')
        pose_map[i] = GRAY_TRANSFORM(one_map)[0]
    return pose_map, GRAY_TRANSFORM(pose_image)


class OriginalCPDataset(CPDataset):
    """CPDataset items computed as the original __getitem__ did: torchvision transforms on every
    image, per-keypoint PIL pose drawing, the agnostic tensor built with torch.cat, and the grid
    picture read from a PNG file and converted for every item. Only the file paths and pair list
    come from CPDataset. Correct VITON-format files only (no load-time fixes)."""

    def __init__(self, opt, grid_png):
        super().__init__(opt)
        self.grid_png = grid_png

    def __getitem__(self, index):
        c_name, im_name = self.c_names[index], self.im_names[index]
        height, width = self.fine_height, self.fine_width
        cloth = RGB_TRANSFORM(Image.open(self.cloth_path(self.cloth_dir, im_name, c_name)))
        mask_array = np.array(Image.open(self.cloth_path(self.mask_dir, im_name, c_name)))
        cloth_mask = torch.from_numpy((mask_array >= 128).astype(np.float32)).unsqueeze(0)
        image = RGB_TRANSFORM(Image.open(self.file('image', im_name)))
        parse = np.array(Image.open(self.file('image-parse', cp_dataset.parse_file_name(im_name))))
        body = Image.fromarray(((parse > 0).astype(np.float32) * 255).astype(np.uint8))
        body = body.resize((width // 16, height // 16), Image.BILINEAR).resize((width, height), Image.BILINEAR)
        shape = GRAY_TRANSFORM(body)
        head_mask = torch.from_numpy(sum((parse == label).astype(np.float32) for label in cp_dataset.HEAD_LABELS))
        cloth_region = torch.from_numpy(sum((parse == label).astype(np.float32) for label in cp_dataset.CLOTH_LABELS))
        parse_cloth = image * cloth_region + (1 - cloth_region)
        head = image * head_mask - (1 - head_mask)
        keypoints = cp_dataset.read_keypoints(self.file('pose', cp_dataset.pose_file_name(im_name)))
        pose_map, pose_image = draw_pose_maps_pil(keypoints, height, width, self.radius)
        return {'c_name': c_name, 'im_name': im_name, 'cloth': cloth, 'cloth_mask': cloth_mask, 'image': image,
                'agnostic': torch.cat([shape, head, pose_map], 0), 'parse_cloth': parse_cloth, 'shape': shape,
                'head': head, 'pose_image': pose_image, 'grid_image': RGB_TRANSFORM(Image.open(self.grid_png))}


def write_grid_png(opt, folder):
    """Our grid picture as a PNG file, for OriginalCPDataset to re-read (lossless: same values)."""
    path = osp.join(folder, 'grid.png')
    pixels = ((make_grid_image(opt.fine_height, opt.fine_width) + 1) * 127.5).round().byte()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path)
    return path


# --------------------------------------------------------------------------- timing and memory

def synchronizer(device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)


def calls_per_sample(fn, sync):
    """How many calls make one timed sample last MIN_SAMPLE_SECONDS (1 for slow calls)."""
    start = time.perf_counter()
    fn()
    sync()
    return max(1, int(MIN_SAMPLE_SECONDS / max(time.perf_counter() - start, 1e-9)))


def time_in_turns(functions, args, sync, calls=None):
    """Seconds per call of each of `functions` ({name: fn}), timed in turns (a, b, a, b, ...) so
    that changes of the machine's load hit them alike: args.warmup untimed rounds, then
    args.repeats timed rounds, where fn runs calls[name] times (default 1) per timed sample.
    Returns {name: {'median_s', 'runs_s'}}."""
    calls = calls or {}
    for _ in range(args.warmup):
        for fn in functions.values():
            fn()
    sync()
    runs = {name: [] for name in functions}
    for _ in range(args.repeats):
        for name, fn in functions.items():
            count = calls.get(name, 1)
            start = time.perf_counter()
            for _ in range(count):
                fn()
            sync()
            runs[name].append((time.perf_counter() - start) / count)
    return {name: {'median_s': statistics.median(r), 'runs_s': r} for name, r in runs.items()}


def time_calls(fn, args, sync):
    """Median seconds per call of fn() (see time_in_turns)."""
    return time_in_turns({'call': fn}, args, sync)['call']


def paired_speedup(original, fast):
    """Median over the rounds of original/fast time: the two were timed in turns, so each
    round's ratio is measured under one machine load."""
    return statistics.median(o / f for o, f in zip(original['runs_s'], fast['runs_s']))


def peak_rss_bytes():
    """Peak resident memory of this process: VmHWM where /proc has it, else getrusage's
    ru_maxrss (kilobytes on Linux, bytes on macOS)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max_rss if sys.platform == 'darwin' else max_rss * 1024


class PeakMemory:
    """Peak memory while the `with` block runs: process RSS on Linux (VmHWM, reset on entry by
    writing 5 to /proc/self/clear_refs) and, on CUDA, torch.cuda.max_memory_allocated.

    Where the reset is not allowed, the RSS figure is the process peak since its start.
    """

    def __init__(self, device):
        self.device = device
        self.result = {}

    def __enter__(self):
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            self.rss_scope = 'phase'
        except OSError:
            self.rss_scope = 'process'
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.result = {'peak_rss_bytes': peak_rss_bytes(), 'rss_scope': self.rss_scope}
        if self.device.type == 'cuda':
            self.result['cuda_peak_allocated_bytes'] = torch.cuda.max_memory_allocated(self.device)


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what C++ code writes to fd 2 (the CPU profiler logs every start and stop there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, 'w') as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_live_bytes(fn, device):
    """Most bytes of tensors alive at once during fn(), above what was alive before.

    CUDA: the caching allocator's own peak counter. CPU: torch.profiler's memory events
    (allocations and frees, in time order) summed into the live total.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with native_stderr_silenced(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        fn()
    live = peak = 0
    for event in sorted(profiler.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def buffer_bytes(module):
    return sum(b.numel() * b.element_size() for b in module.buffers())


# --------------------------------------------------------------------------- measurements

def measure_tps(args, device, sync, compare):
    """Grid generation alone (forward, no grad) on random theta (std 0.1), fast and original."""
    generator = torch.Generator().manual_seed(args.seed)
    theta = (torch.randn(args.batch_size, 2 * args.grid_size ** 2, generator=generator) * 0.1).to(device)
    builders = {'fast': TpsGridGen}
    if compare:
        builders['original'] = OriginalTpsGridGen
    modules = {name: build(args.fine_height, args.fine_width, grid_size=args.grid_size).to(device)
               for name, build in builders.items()}
    calls = {name: functools.partial(module, theta) for name, module in modules.items()}
    with torch.no_grad():
        results = time_in_turns(calls, args, sync, {name: calls_per_sample(call, sync) for name, call in calls.items()})
        for name, call in calls.items():
            results[name].update(peak_live_bytes=peak_live_bytes(call, device),
                                 constant_bytes=buffer_bytes(modules[name]))
        if compare:
            difference = (calls['fast']() - calls['original']()).abs().max().item()
            results.update(max_abs_difference=difference, agree=difference <= TPS_TOLERANCE,
                           speedup=paired_speedup(results['original'], results['fast']),
                           memory_ratio=results['original']['peak_live_bytes'] / results['fast']['peak_live_bytes'])
    return results


def original_fields_equal(item, original):
    """Whether every field of the original item is equal in `item` (which may have more fields, such as
    CP-VTON+'s parse_cloth_mask)."""
    return all(torch.equal(item[k], v) if torch.is_tensor(v) else item[k] == v for k, v in original.items())


def load_all(dataset, indices):
    return [dataset[i] for i in indices]


def stored_photo_size(dataset):
    """(W, H) of the dataset's first person photo as stored on disk."""
    with Image.open(dataset.file('image', dataset.im_names[0])) as photo:
        return photo.size


def measure_data_items(args, opt, compare, work_dir):
    """Per-sample time of building one dataset item in this process, ours and the original way.

    Files of another size than the model's (the 256x192 synthetic data at --fine_height 512) are
    resized on load by CPDataset, so its time includes the resizing; the original loader never
    resized, so it is then not timed ('files_resized_from' gives the stored size)."""
    datasets = {'fast': CPDataset(opt)}
    stored_size = stored_photo_size(datasets['fast'])
    resized = stored_size != (opt.fine_width, opt.fine_height)
    if compare and not resized:
        datasets['original'] = OriginalCPDataset(opt, write_grid_png(opt, work_dir))
    indices = [i % len(datasets['fast']) for i in range(args.batch_size)]
    load_items = {name: functools.partial(load_all, dataset, indices) for name, dataset in datasets.items()}
    timing = time_in_turns(load_items, args, lambda: None)
    results = {name: {'median_s': t['median_s'] / len(indices), 'runs_s': [s / len(indices) for s in t['runs_s']]}
               for name, t in timing.items()}
    if resized:
        results['files_resized_from'] = list(stored_size)
    if 'original' in datasets:
        results['agree'] = all(original_fields_equal(datasets['fast'][i], datasets['original'][i])
                               for i in range(len(datasets['fast'])))
        results['speedup'] = paired_speedup(results['original'], results['fast'])
    return results


def measure_loader(args, opt, workers):
    """Samples/s from CPDataLoader (the training loader) with `workers` worker processes.

    The first batches (worker start-up) are not timed; each timed sample is 2*max(workers, 1)
    batches, so that batches arriving together from parallel workers average out.
    """
    loader_opt = argparse.Namespace(**vars(opt))
    loader_opt.workers, loader_opt.shuffle = workers, True
    loader = CPDataLoader(loader_opt, CPDataset(loader_opt))
    batches = 2 * max(workers, 1)
    for _ in range(args.warmup + 1):
        loader.next_batch()
    samples = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(batches):
            loader.next_batch()
        samples.append(batches * opt.batch_size / (time.perf_counter() - start))
    return {'samples_per_s': statistics.median(samples), 'runs_samples_per_s': samples}


def tom_dataroot(args, work_dir):
    """A dataroot that the TOM stage accepts, made of symlinks into args.dataroot.

    The TOM stage reads GMM's warps (warp-cloth/, warp-mask/), which a GMM dataset lacks until
    test.py wrote them; where they are missing, the in-shop cloth and mask stand in for them
    (pictures of the same size: the same work for the loader and the step)."""
    split, view = osp.join(args.dataroot, args.datamode), tempfile.mkdtemp(prefix='tom_data_', dir=work_dir)
    view_split, view_list = osp.join(view, args.datamode), osp.join(view, args.data_list)
    os.makedirs(view_split)
    os.makedirs(osp.dirname(view_list), exist_ok=True)
    os.symlink(osp.abspath(osp.join(args.dataroot, args.data_list)), view_list)
    for name in os.listdir(split):
        os.symlink(osp.abspath(osp.join(split, name)), osp.join(view_split, name))
    for warp_folder, stand_in in (('warp-cloth', 'cloth'), ('warp-mask', 'cloth-mask')):
        if not osp.exists(osp.join(view_split, warp_folder)):
            os.symlink(osp.abspath(osp.join(split, stand_in)), osp.join(view_split, warp_folder))
    return view


def trainer_argv(args, stage, name, dataroot, work_dir):
    """train.py's command line for a run `name` of `stage` with the benchmark's settings."""
    device = args.device
    gpu_ids = '-1' if device.type == 'cpu' else str(device.index or 0)
    argv = ['--name', name, '--stage', stage, '--gpu_ids', gpu_ids,
            '--batch-size', str(args.batch_size), '--workers', '0', '--seed', str(args.seed),
            '--dataroot', dataroot, '--datamode', args.datamode, '--data_list', args.data_list,
            '--fine_height', str(args.fine_height), '--fine_width', str(args.fine_width),
            '--radius', str(args.radius), '--grid_size', str(args.grid_size), '--vgg_init', 'random',
            '--checkpoint_dir', osp.join(work_dir, 'checkpoints'),
            '--tensorboard_dir', osp.join(work_dir, 'tensorboard')]
    for flag in ('amp', 'channels_last', 'compile', 'cudnn_benchmark'):
        if getattr(args, flag):
            argv.append(f'--{flag}')
    return argv


def build_trainer(args, stage, work_dir, original_tps=False, extra_argv=()):
    """train.py's Trainer (``extra_argv``: more of its arguments, overriding the benchmark's); with original_tps,
    its GMM generates grids with OriginalTpsGridGen."""
    dataroot = tom_dataroot(args, work_dir) if stage == 'TOM' else args.dataroot
    with contextlib.redirect_stdout(sys.stderr):   # its log lines are progress, not results
        name = f'benchmark_{stage}' + ('_original_tps' if original_tps else '')
        trainer = Trainer(get_opt(trainer_argv(args, stage, name, dataroot, work_dir) + list(extra_argv)))
    if original_tps:
        # The grid generator has no parameters, so the optimizer built by Trainer still
        # covers the whole model, and torch.compile only traces at the first step.
        trainer.model.gridGen = OriginalTpsGridGen(args.fine_height, args.fine_width, args.grid_size).to(
            trainer.device)
    return trainer


def step_function(trainer, batch):
    """trainer.train_step as a call without arguments that always trains on `batch`."""
    # The step reads its batch from the loader: feed it the same batch every time, so the
    # step time excludes data loading (measured separately).
    trainer.loader.next_batch = itertools.repeat(batch).__next__
    step_counter = itertools.count()
    return lambda: trainer.train_step(next(step_counter))


def measure_train_step(args, stage, batch, work_dir, extra_argv=()):
    """Median seconds and peak process memory of Trainer.train_step on one fixed batch."""
    trainer = build_trainer(args, stage, work_dir, extra_argv=extra_argv)
    try:
        with PeakMemory(trainer.device) as memory:
            timing = time_calls(step_function(trainer, batch), args, synchronizer(trainer.device))
    finally:
        trainer.close()
    return dict(timing, steps_per_s=1 / timing['median_s'], **memory.result)


def compare_gmm_steps(args, batch, work_dir):
    """GMM steps with the fast and with the original TPS (same initial weights), timed in turns,
    and the most tensor memory each step needs above what stays allocated between steps."""
    trainers = {'fast': build_trainer(args, 'GMM', work_dir),
                'original': build_trainer(args, 'GMM', work_dir, original_tps=True)}
    try:
        steps = {name: step_function(trainer, batch) for name, trainer in trainers.items()}
        # The TPS is a few percent of a CPU step, less than the spread of single steps: more
        # rounds make the median of the paired ratios settle.
        rounds = argparse.Namespace(**{**vars(args), 'repeats': args.compare_rounds})
        results = time_in_turns(steps, rounds, synchronizer(args.device))
        for name, step in steps.items():
            results[name]['step_peak_bytes'] = peak_live_bytes(step, args.device)
    finally:
        for trainer in trainers.values():
            trainer.close()
    results['speedup'] = paired_speedup(results['original'], results['fast'])
    return results


def fixed_batch(opt, device, spec=None, dataset=CPDataset):
    """One training batch from the training loader (pinned on CUDA, as Trainer's loader does), of the items of
    ``spec`` (a stage's DataSpec; GMM's when None) read by ``dataset`` (the stage's).

    The TOM step uses GMM's: a TOM batch has the same tensors (the TOM stage reads GMM's
    warps instead of the in-shop cloth, which only changes the pictures)."""
    return CPDataLoader(opt, dataset(opt, spec), pin_memory=device.type == 'cuda').next_batch()


# Other methods' stages whose training step the benchmark can time (--method_steps): their items come from the
# data alone (VITON's refinement also needs the shape-context warps and a trained stage 1); MG-VTON's from a
# synthetic two-pose set, at the paper's model size.
TIMED_METHOD_STAGES = ('VITON_COARSE', 'WUTON') + MGVTON_STAGES


def mpv_stage_setup(args, stage, opt, work_dir):
    """(dataset options, train.py arguments) of an MG-VTON stage: a synthetic two-pose set in ``work_dir`` (made
    once) and, past stage I, the previous stage's checkpoint, untrained (a step's cost does not depend on the
    weights)."""
    root = osp.join(work_dir, 'mpv')
    if not osp.isdir(root):
        synthetic_data.generate_mpv_dataset(root, max(args.batch_size, 2), 2, args.seed)
    data = {'dataroot': root, 'datamode': 'train', 'data_list': TRIPLET_LIST}
    extra = [argument for name, value in data.items() for argument in (f'--{name}', value)]
    level = MGVTON_STAGES.index(stage)
    if level:
        previous = osp.join(work_dir, f'{MGVTON_STAGES[level - 1]}.pth')
        defaults = get_opt(['--fine_height', str(args.fine_height), '--fine_width', str(args.fine_width),
                            '--grid_size', str(args.grid_size)])
        save_checkpoint(MGVTON(defaults, MGVTON_STAGES[level - 1]), previous)
        extra += ['--previous_checkpoint', previous]
    return argparse.Namespace(**{**vars(opt), **data}), extra


def measure_method_steps(args, opt, work_dir, cpvton_seconds):
    """{stage: its train_step timing, with its ratio to one GMM + one TOM step of the same run}."""
    results = {}
    for stage in args.method_steps:
        progress(f'{stage} steps...')
        spec = STAGES[stage].data
        stage_opt, extra = mpv_stage_setup(args, stage, opt, work_dir) if spec.layout == 'mpv' else (opt, [])
        batch = fixed_batch(stage_opt, args.device, spec, STAGES[stage].dataset)
        results[stage] = measure_train_step(args, stage, batch, work_dir, extra)
        results[stage]['ratio_to_gmm_plus_tom'] = results[stage]['median_s'] / cpvton_seconds
    return results


# --------------------------------------------------------------------------- machine and settings

def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device):
    info = {'cpu': cpu_model(), 'cpu_cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'torch': torch.__version__, 'python': platform.python_version(), 'device': str(device),
            'device_name': cpu_model()}
    if device.type == 'cuda':
        info['device_name'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info


def cpu_seconds():
    """(wall, busy CPU seconds of the whole machine or None without /proc/stat, this process's
    CPU seconds including its finished children, such as data-loader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        with open('/proc/stat') as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]   # user nice system idle iowait irq softirq steal
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError):
        machine = None
    return time.perf_counter(), machine, sum(r.ru_utime + r.ru_stime for r in own)


def other_processes_cpu_share(start, end):
    """Share of all cores' time that other processes were busy between two cpu_seconds() readings."""
    if start[1] is None:
        return None
    other = (end[1] - start[1]) - (end[2] - start[2])
    return max(other, 0.0) / ((end[0] - start[0]) * os.cpu_count())


def other_cpu_text(share):
    return 'an unknown share (no /proc/stat)' if share is None else f'{share:.0%}'


def get_args(argv=None):
    parser = argparse.ArgumentParser(description='Time CP-VTON training (TPS, GMM/TOM steps, data loading).',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--device', type=flags.torch_device, default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='the device train.py runs on (default: cuda if available)')
    parser.add_argument('-b', '--batch_size', '--batch-size', type=flags.positive_int, default=4,
                        help="train.py's --batch-size (default: %(default)s)")
    parser.add_argument('--fine_height', type=flags.image_side, default=256, help='(default: %(default)s)')
    parser.add_argument('--fine_width', type=flags.image_side, default=192, help='(default: %(default)s)')
    parser.add_argument('--radius', type=flags.non_negative_int, default=5, help='(default: %(default)s)')
    parser.add_argument('--grid_size', type=flags.grid_size, default=5, help='(default: %(default)s)')
    parser.add_argument('--dataroot', default=None, help='VITON-format data (default: synthetic, in a temp dir)')
    parser.add_argument('--datamode', default='train')
    parser.add_argument('--data_list', default='train_pairs.txt')
    parser.add_argument('--n_train', type=flags.positive_int, default=64,
                        help='pairs of the synthetic dataset (default: %(default)s)')
    parser.add_argument('--workers', type=flags.comma_separated(flags.non_negative_int), default=[0, 2],
                        help='loader worker counts, e.g. 0,2')
    parser.add_argument('--repeats', type=flags.positive_int, default=5, help='timed runs; the median is reported')
    parser.add_argument('--warmup', type=flags.non_negative_int, default=2, help='untimed runs before the timed ones')
    parser.add_argument('--seed', type=flags.seed, default=0, help='(default: %(default)s)')
    parser.add_argument('--amp', action='store_true', help='bf16 autocast in the training steps (as train.py)')
    parser.add_argument('--channels_last', action='store_true', help='channels-last training steps (as train.py)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the models (as train.py)')
    parser.add_argument('--cudnn_benchmark', action='store_true', help='cuDNN autotuning (as train.py)')
    parser.add_argument('--compare-baseline', '--compare_baseline', dest='compare_baseline', action='store_true',
                        help='also time the original TPS, pose drawing and GMM step, and check they agree')
    parser.add_argument('--compare_rounds', type=flags.positive_int, default=15,
                        help='timed rounds of the original-vs-fast GMM step in --compare-baseline (default: 15)')
    parser.add_argument('--method_steps', type=lambda text: [name.strip() for name in text.split(',') if name.strip()],
                        default=[],
                        help='also time the training step of these other methods\' stages, as a ratio to one GMM + '
                             'one TOM step of the same run: ' + ','.join(TIMED_METHOD_STAGES))
    parser.add_argument('--json', default=None, help='write every number to this file')
    args = parser.parse_args(argv)
    flags.check_device_present(parser, args.device)
    flags.check_gmm_trainable_size(parser, args.fine_height, args.fine_width)
    unknown = [stage for stage in args.method_steps if stage not in TIMED_METHOD_STAGES]
    if unknown:
        parser.error(f'--method_steps {",".join(unknown)}: choose among {",".join(TIMED_METHOD_STAGES)}')
    if args.dataroot is None and args.n_train < args.batch_size:
        # the loader's batches would be short, and its samples/s counted as full batches
        parser.error(f'--n_train {args.n_train} is smaller than --batch_size {args.batch_size}')
    return args


def dataset_opt(args):
    """The options CPDataset and CPDataLoader read (GMM stage: it reads the in-shop cloth)."""
    return argparse.Namespace(dataroot=args.dataroot, datamode=args.datamode, stage='GMM',
                              data_list=args.data_list, fine_height=args.fine_height,
                              fine_width=args.fine_width, radius=args.radius, batch_size=args.batch_size,
                              workers=0, shuffle=False, seed=args.seed)


# --------------------------------------------------------------------------- report

def plural(count, noun):
    return f'{count} {noun}' + ('' if int(count) == 1 else 's')


def megabytes(n_bytes):
    return f'{n_bytes / 2 ** 20:,.1f} MB'


def milliseconds(seconds, unit=' ms'):
    return (f'{seconds * 1e3:,.2f}' if seconds < 0.1 else f'{seconds * 1e3:,.0f}') + unit


def median_and_range(timing):
    """'12.3 ms (11.9-15.0)': the median, then the fastest and slowest run, to show the noise."""
    runs = timing['runs_s']
    return f'{milliseconds(timing["median_s"])} ({milliseconds(min(runs), "")}-{milliseconds(max(runs), "")})'


def hours(seconds):
    return f'{seconds / 3600:,.1f} h ({seconds / 86400:,.1f} days)'


def step_memory(result):
    text = f'{megabytes(result["peak_rss_bytes"])} RSS'
    if result['rss_scope'] == 'process':
        text += ' (process peak so far)'
    if 'cuda_peak_allocated_bytes' in result:
        text += f', {megabytes(result["cuda_peak_allocated_bytes"])} CUDA'
    return text


def projected_seconds(results, steps_per_stage):
    """Compute time of the default schedule: steps_per_stage GMM steps, then as many TOM steps."""
    return steps_per_stage * (results['gmm_step']['median_s'] + results['tom_step']['median_s'])


def report(results):
    """The markdown report, from the results dict (the same one --json writes)."""
    machine, settings = results['machine'], results['settings']
    tps, items, steps = results['tps'], results['data_item'], results['projection']['steps_per_stage']
    lines = [
        '## CP-VTON training benchmark', '',
        f'- machine: {machine["cpu"]}, {machine["cpu_cores"]} cores, torch {machine["torch"]} '
        f'({machine["torch_threads"]} threads), Python {machine["python"]}',
        f'- device: {machine["device"]} ({machine["device_name"]})',
        f'- settings: batch {settings["batch_size"]}, {settings["fine_height"]}x{settings["fine_width"]}, '
        f'median of {settings["repeats"]} after {settings["warmup"]} warm-up; amp {settings["amp"]}, '
        f'channels_last {settings["channels_last"]}, compile {settings["compile"]}',
        f'- data: {settings["dataset"]}{resize_note(items, settings)}',
        f'- other processes used {other_cpu_text(machine["other_processes_cpu_share"])} of the CPU time during '
        f'the run (they slow the timings down)',
        '- TOM perceptual loss: randomly initialised VGG19 (ImageNet weights are not available here; '
        'the cost is the same)', '',
        '| measurement | median (fastest-slowest run) | rate | peak memory |', '|---|---:|---:|---|',
        f'| TPS grid (forward, no grad) | {median_and_range(tps["fast"])} | '
        f'{1 / tps["fast"]["median_s"]:,.0f} grids/s | {megabytes(tps["fast"]["peak_live_bytes"])} per call '
        f'+ {megabytes(tps["fast"]["constant_bytes"])} constants |',
    ]
    for key, title in (('gmm_step', 'GMM training step'), ('tom_step', 'TOM training step (with VGG loss)')):
        step = results[key]
        lines.append(f'| {title} | {median_and_range(step)} | {step["steps_per_s"]:.2f} steps/s | '
                     f'{step_memory(step)} |')
    for stage, step in results.get('method_steps', {}).items():
        lines.append(f'| {stage} training step ({STAGES[stage].method}) | {median_and_range(step)} | '
                     f'{step["steps_per_s"]:.2f} steps/s, {step["ratio_to_gmm_plus_tom"]:.2f}x GMM + TOM | '
                     f'{step_memory(step)} |')
    lines.append(f'| data item (CPDataset[i], this process) | {median_and_range(items["fast"])} | '
                 f'{1 / items["fast"]["median_s"]:,.0f} samples/s | |')
    for workers, loader in results['loader'].items():
        lines.append(f'| data loader (CPDataLoader), {plural(workers, "worker")} | '
                     f'{milliseconds(1 / loader["samples_per_s"])} per sample | '
                     f'{loader["samples_per_s"]:,.0f} samples/s | |')
    lines += ['', f'Projected schedule ({steps:,} GMM + {steps:,} TOM steps, compute only): '
                  f'{hours(results["projection"]["seconds"])}', data_needs(results)]
    if 'baseline' in results:
        lines += baseline_report(results)
    return '\n'.join(lines)


def resize_note(items, settings):
    """What the data-item and loader times include when the files are not of the model's size."""
    if 'files_resized_from' not in items:
        return ''
    width, height = items['files_resized_from']
    return (f'; files {height}x{width}, resized on load to {settings["fine_height"]}x{settings["fine_width"]} '
            f'(photos LANCZOS, masks bilinear, parse maps nearest): the data times include it')


def data_item_comparison(items):
    """The baseline table's data-item row."""
    if 'original' not in items:
        return (f'| data item, per sample | n/a | {milliseconds(items["fast"]["median_s"])} | n/a | '
                'not compared: the original loader never resized, it reads files of the model\'s size only |')
    return (f'| data item, per sample | {milliseconds(items["original"]["median_s"])} | '
            f'{milliseconds(items["fast"]["median_s"])} | {items["speedup"]:.2f}x | '
            f'{"every tensor equal" if items["agree"] else "tensors DIFFER"} |')


def data_needs(results):
    """Whether the fastest loader measured keeps up with the training steps."""
    batch_size = results['settings']['batch_size']
    workers, best = max(results['loader'].items(), key=lambda item: item[1]['samples_per_s'])
    needs = {stage: batch_size / results[f'{stage.lower()}_step']['median_s'] for stage in ('GMM', 'TOM')}
    verdict = 'keeps up' if best['samples_per_s'] >= max(needs.values()) else 'does NOT keep up'
    return (f'Data: the GMM step consumes {needs["GMM"]:.3g} samples/s and the TOM step {needs["TOM"]:.3g}; '
            f'the best loader here ({plural(workers, "worker")}, {best["samples_per_s"]:,.0f} samples/s) {verdict}.')


def baseline_report(results):
    tps, items, gmm = results['tps'], results['data_item'], results['baseline']['gmm_step']
    tps_check = f'max abs difference {tps["max_abs_difference"]:.1e} (limit {TPS_TOLERANCE:.0e})'
    return [
        '', '### Against the original computations (timed in turns, same run)', '',
        '| measurement | original | fast | speed-up | notes |', '|---|---:|---:|---:|---|',
        f'| TPS grid | {milliseconds(tps["original"]["median_s"])} | {milliseconds(tps["fast"]["median_s"])} | '
        f'{tps["speedup"]:,.0f}x | outputs {"agree" if tps["agree"] else "DIFFER"}: {tps_check} |',
        f'| TPS peak tensor memory per call | {megabytes(tps["original"]["peak_live_bytes"])} | '
        f'{megabytes(tps["fast"]["peak_live_bytes"])} | {tps["memory_ratio"]:,.0f}x less | constants '
        f'{megabytes(tps["original"]["constant_bytes"])} vs {megabytes(tps["fast"]["constant_bytes"])} |',
        data_item_comparison(items),
        f'| GMM training step | {milliseconds(gmm["original"]["median_s"])} | '
        f'{milliseconds(gmm["fast"]["median_s"])} | {gmm["speedup"]:.2f}x | |',
        f'| GMM step peak tensor memory (above what stays between steps) | '
        f'{megabytes(gmm["original"]["step_peak_bytes"])} | {megabytes(gmm["fast"]["step_peak_bytes"])} | | |',
        '', 'Speed-ups are medians of the per-round ratios. Projected schedule with the original GMM step: '
            f'{hours(results["baseline"]["projection_seconds"])}',
    ]


# --------------------------------------------------------------------------- main

def settings_of(args, dataset_description):
    keys = ('device', 'batch_size', 'fine_height', 'fine_width', 'grid_size', 'radius', 'workers', 'repeats',
            'warmup', 'seed', 'amp', 'channels_last', 'compile', 'cudnn_benchmark', 'compare_baseline')
    return dict({k: getattr(args, k) for k in keys}, device=str(args.device), dataset=dataset_description)


def prepare_dataroot(args, work_dir):
    """args.dataroot, or a synthetic dataset written into work_dir. Returns its description."""
    if args.dataroot:
        return args.dataroot
    args.dataroot = osp.join(work_dir, 'data')
    synthetic_data.generate_dataset(args.dataroot, args.n_train, 2, args.seed)
    return f'synthetic, {args.n_train} train pairs (synthetic_data.generate_dataset, temp dir)'


def progress(message):
    print(message, file=sys.stderr, flush=True)


def run(args, work_dir):
    device = args.device
    sync, compare = synchronizer(device), args.compare_baseline
    cpu_at_start = cpu_seconds()
    results = {'machine': machine_info(device), 'settings': settings_of(args, prepare_dataroot(args, work_dir))}
    opt = dataset_opt(args)
    progress('TPS grids...')
    results['tps'] = measure_tps(args, device, sync, compare)
    progress('data items...')
    results['data_item'] = measure_data_items(args, opt, compare, work_dir)
    results['loader'] = {}
    for workers in args.workers:
        progress(f'data loader, {workers} workers...')
        results['loader'][str(workers)] = measure_loader(args, opt, workers)
    batch = fixed_batch(opt, device)
    for stage in ('GMM', 'TOM'):
        progress(f'{stage} steps...')
        results[f'{stage.lower()}_step'] = measure_train_step(args, stage, batch, work_dir)
    results['method_steps'] = measure_method_steps(
        args, opt, work_dir, results['gmm_step']['median_s'] + results['tom_step']['median_s'])
    defaults = get_opt([])
    steps = defaults.keep_step + defaults.decay_step
    results['projection'] = {'steps_per_stage': steps, 'seconds': projected_seconds(results, steps)}
    if compare:
        progress('GMM steps with the fast and the original TPS, in turns...')
        gmm = compare_gmm_steps(args, batch, work_dir)
        # The speed-up comes from steps timed in turns; applied to the GMM step timed above, it
        # gives the original's step time under the same conditions as the TOM step.
        original_gmm_s = results['gmm_step']['median_s'] * gmm['speedup']
        results['baseline'] = {'gmm_step': gmm, 'projection_seconds': steps * (
            original_gmm_s + results['tom_step']['median_s'])}
    results['machine']['other_processes_cpu_share'] = other_processes_cpu_share(cpu_at_start, cpu_seconds())
    return results


def outputs_agree(results):
    return 'baseline' not in results or (results['tps']['agree'] and results['data_item'].get('agree', True))


def main(argv=None):
    args = get_args(argv)
    with tempfile.TemporaryDirectory(prefix='cpvton_benchmark_') as work_dir:
        results = run(args, work_dir)
    print(report(results), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    if not outputs_agree(results):
        print('ERROR: the original and the fast computations disagree (see the table).', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
