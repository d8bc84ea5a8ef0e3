"""Learning curves on the test set: score a run's saved checkpoints, so you see whether it got better.

    python learning_curves.py --run_dir checkpoints/gmm_train_new --dataroot data --data_list test_pairs_paired.txt
    python learning_curves.py --name tom_train_new --every 2 --max_pairs 200      # checkpoints/tom_train_new

For every selected checkpoint of the run folder (every --every-th step_XXXXXX.pth by step, and the final
gmm_final.pth / tom_final.pth always) it runs test.py's own test loop (``test.test``) into a work folder
<run>/curves/, scores the results with evaluate.py's own functions, and removes them again:

    GMM  iou          the warped mask (>= 128) against the person's cloth region (LIP 5, 6, 7): mean per-pair IoU
                      in [0, 1], higher is better; as ``evaluate.py --metrics iou``
    TOM  ssim         skimage SSIM of the try-on against the person photo, RGB, in [-1, 1], higher is better
         ssim_matlab  MATLAB's ssim on the same images, in [-1, 1], higher is better
         lpips        LPIPS (AlexNet, v0.1), >= 0, lower is better; only where its weights are found, as
                      evaluate.py finds them (--lpips_weights or torch hub's cache), and load: said once if
                      they do not (then the rows without LPIPS count as scored)

The pair list should hold same-cloth pairs (the person photo is the ground truth), as evaluate.py's --paired_list;
--max_pairs N scores its first N pairs. The stage and every model option come from the run's options.json, read
by test.py as for any checkpoint (``test.apply_recorded_options``); TOM reads GMM's warps from
<dataroot>/<datamode>/warp-cloth and warp-mask, as test.py does.

Writes
    <run>/curves.csv   one row per scored checkpoint and pair list: step, checkpoint, the stage's metrics (floats
                       written exactly, repr), pairs (the first N of the list), data_list, data_list_sha256,
                       datamode, checkpoint_bytes, checkpoint_mtime_ns, seconds (test + scoring)
    <run>/curves.png   one panel per metric, x = training step, a line with points per pair list
    eval/<metric>      scalars at each checkpoint's step in the run's TensorBoard log (<tensorboard_dir>/<name>, the
                       folder train.py wrote the losses to, read from options.json; --tensorboard_dir overrides
                       the parent folder), in a file of its own beside train.py's

Steps: a step checkpoint's from its file name (runs.step_of); the final one's is the run's last step,
keep_step + decay_step of options.json. train.py writes step_<last>.pth and the final one from the same weights
when --save_count divides the step count: then they are scored once, as the final one, and the rows step_<last>.pth
got before the final one was written are removed (those of this call's pair list; TensorBoard keeps its scalars,
of the same weights, beside the final one's at that step).

Resumable: a checkpoint already in curves.csv for the same list (name and sha256), datamode and number of pairs,
whose file has the same size and modification time and whose row holds every metric scored now, is skipped; a
checkpoint replaced since is scored again (its row replaced). The CSV is written after each checkpoint, so an
interrupted call keeps what it scored, and the plot is redrawn from the whole CSV. TOM's scores also depend on
GMM's warps in the data folder: after placing new ones, pass --rescore. A rescored checkpoint's row is replaced, but
its TensorBoard scalars are not: --rescore writes another event file with values at the same steps, and TensorBoard
reads both files and draws both values at each step (its line runs back to the first step); to see only the new
ones, delete the *.learning_curves event files in the run's TensorBoard folder first. A curves.csv that is not
this command's (edited by hand, cut short) is an error: delete it, or move it aside, to start the curve again.
"""
import argparse
import csv
import io
import os
import os.path as osp
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tensorboardX import SummaryWriter

import evaluate
import flags
import test as test_script
from cp_dataset import DataError, read_pairs
from methods import STAGES
from networks import CheckpointError, atomic_write, read_checkpoint, sha256_of
from progress import progress
from runs import step_checkpoints, step_of
from train import OPTIONS_FILE, read_options

STAGE_METRICS = {'GMM': ('iou',), 'TOM': ('ssim', 'ssim_matlab', 'lpips')}
METRIC_TITLES = {'iou': 'warp IoU (higher is better)', 'ssim': 'SSIM (higher is better)',
                 'ssim_matlab': 'SSIM-M, MATLAB (higher is better)', 'lpips': 'LPIPS (lower is better)'}
CSV_FILE, PLOT_FILE, WORK_FOLDER = 'curves.csv', 'curves.png', 'curves'
# What a row was scored on, besides the checkpoint file: a row counts for this call only if all of them match.
SETTING_COLUMNS = ('data_list', 'data_list_sha256', 'datamode', 'pairs')
FILE_COLUMNS = ('checkpoint_bytes', 'checkpoint_mtime_ns')
NO_IMAGES = str(10 ** 9)   # test.py's --display_count: no TensorBoard images from the test passes
ANNOTATED_POINTS = 12      # points up to which the plot writes each value beside its point


@dataclass(frozen=True)
class Checkpoint:
    path: str
    step: int

    @property
    def name(self):
        return osp.basename(self.path)

    def identity(self):
        """{'checkpoint_bytes', 'checkpoint_mtime_ns'} as strings: a replaced file differs in one of them."""
        stat = os.stat(self.path)
        return {'checkpoint_bytes': str(stat.st_size), 'checkpoint_mtime_ns': str(stat.st_mtime_ns)}


# --------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Score the saved checkpoints of a training run on a test pair '
                                                 'list (see the docstring of learning_curves.py).',
                                     formatter_class=flags.RangeHelpFormatter)
    run = parser.add_mutually_exclusive_group(required=True)
    run.add_argument('--run_dir', metavar='DIR', help="the run's folder, <checkpoint_dir>/<name>, as train.py wrote it")
    run.add_argument('--name', help="the run's --name: its folder is <checkpoint_dir>/<name>")
    parser.add_argument('--checkpoint_dir', default='checkpoints', help='with --name, as train.py\'s '
                                                                        '(default: %(default)s)')
    parser.add_argument('--dataroot', default='data', help='(default: %(default)s)')
    parser.add_argument('--datamode', default='test', help='(default: %(default)s)')
    parser.add_argument('--data_list', default='test_pairs_paired.txt',
                        help='same-cloth pairs under --dataroot (default: %(default)s)')
    parser.add_argument('--every', type=flags.positive_int, default=1, metavar='K',
                        help='score every K-th step checkpoint by step (and the final one always)')
    parser.add_argument('--max_pairs', type=flags.positive_int, default=None, metavar='N',
                        help='score the first N pairs of --data_list (default: all)')
    parser.add_argument('--tensorboard_dir', default=None, metavar='DIR',
                        help='eval/<metric> go to <tensorboard_dir>/<name> (default: the run\'s, from options.json)')
    parser.add_argument('-j', '--workers', type=flags.non_negative_int, default=1,
                        help='data loader and scoring processes (0: in this process)')
    parser.add_argument('-b', '--batch-size', type=flags.positive_int, default=4, help="test.py's pairs per batch")
    parser.add_argument('--device', type=flags.torch_device, default=None,
                        help='torch device (default: the first GPU if there is one, else the CPU)')
    parser.add_argument('--lpips_weights', default=None, metavar='PATH',
                        help=f'TOM: {evaluate.WEIGHTS["lpips"].file_name} (default: torch hub\'s cache; without it '
                             f'LPIPS is not scored, and it says so)')
    parser.add_argument('--rescore', action='store_true', help='score every selected checkpoint again, even those '
                                                               'in curves.csv')
    args = parser.parse_args(argv)
    if args.run_dir and args.checkpoint_dir != parser.get_default('checkpoint_dir'):
        parser.error(f'--checkpoint_dir {args.checkpoint_dir} goes with --name; --run_dir names the run folder itself')
    if args.device is not None:
        flags.check_device_present(parser, args.device)
    return args


def gpu_ids_of(device):
    """test.py's --gpu_ids for a --device (None: '', test.py's default)."""
    if device is None:
        return ''
    return '-1' if device.type == 'cpu' else str(device.index or 0)


# --------------------------------------------------------------------------- the run and its checkpoints

def run_folder(args):
    folder = args.run_dir or osp.join(args.checkpoint_dir, args.name)
    flag = '--run_dir' if args.run_dir else '--name/--checkpoint_dir'
    if not osp.isdir(folder):
        raise DataError(f'{flag}: {folder} is not a folder; pass the run\'s folder as train.py wrote it, '
                        f'<checkpoint_dir>/<name> (e.g. --run_dir checkpoints/gmm_train_new)')
    return folder


def run_options(folder):
    """The options train.py recorded in <run>/options.json: {option: value}, with stage, keep_step, decay_step."""
    path = osp.join(folder, OPTIONS_FILE)
    try:
        options = read_options(path)
    except SystemExit as error:            # not valid JSON: train.read_options's message
        raise DataError(str(error.code)) from None
    if options is None:
        raise DataError(f'{path} not found: learning_curves.py takes the stage and the model options from it '
                        f'(train.py writes it). Checkpoints of the original code have none: test them one by one '
                        f'with test.py and the model flags.')
    missing = [name for name in ('stage', 'keep_step', 'decay_step') if name not in options]
    if not missing and options['stage'] in STAGES and options['stage'] not in STAGE_METRICS:
        raise DataError(f'{path}: a {options["stage"]} run; learning_curves.py scores CP-VTON\'s GMM and TOM runs. '
                        f'Score its checkpoints with test.py and evaluate.py (README "Methods")')
    if missing or options['stage'] not in STAGE_METRICS:
        raise DataError(f'{path} lacks {", ".join(missing) or "a valid stage"}: it is not an options.json '
                        f'of train.py; restore it')
    return options


def final_checkpoint_name(stage):
    return STAGES[stage].final_checkpoint   # train.py's gmm_final.pth / tom_final.pth


def same_weights(path_a, path_b):
    """Whether two checkpoint files hold equal state dicts (read safely). False where one cannot be read: it is
    then scored on its own, and its error told there."""
    try:
        a, b = read_checkpoint(path_a), read_checkpoint(path_b)
    except CheckpointError:
        return False
    return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and
            all(torch.is_tensor(a[key]) and torch.is_tensor(b[key]) and torch.equal(a[key], b[key]) for key in a))


def selected_checkpoints(folder, options, every, log=print):
    """(the checkpoints to score, by step: every ``every``-th step checkpoint and the final one (at the run's last
    step); the step checkpoint of the final one's step that holds the same weights, left out (logged), or None)."""
    steps = [Checkpoint(path, step_of(path)) for path in reversed(step_checkpoints(folder))]
    if not steps:
        raise DataError(f'{folder} holds no step checkpoints (step_XXXXXX.pth, written by train.py every '
                        f'--save_count steps): train with a --save_count below the number of steps, or wait for the '
                        f'first one')
    chosen = [checkpoint for index, checkpoint in enumerate(steps) if (index + 1) % every == 0]
    final_path = osp.join(folder, final_checkpoint_name(options['stage']))
    if osp.isfile(final_path):
        final = Checkpoint(final_path, options['keep_step'] + options['decay_step'])
        twin = next((checkpoint for checkpoint in chosen if checkpoint.step == final.step), None)
        if twin and same_weights(twin.path, final.path):
            chosen.remove(twin)
            log(f'{twin.name} holds the same weights as {final.name} (step {final.step}): scored once, as '
                f'{final.name}')
            return chosen + [final], twin
        chosen.append(final)
    return chosen, None


# --------------------------------------------------------------------------- the pair list

def pairs_list(args, work):
    """(data_list for test.py and evaluate.py, its setting columns). With --max_pairs below the list's length,
    its first N pairs are written to <work>/ and that file's absolute path is passed (both commands read
    <dataroot>/<data_list>, and a joined absolute path is the path itself)."""
    path = osp.join(args.dataroot, args.data_list)
    if not osp.isfile(path):
        raise DataError(f'--data_list: {path} not found; pass a list of same-cloth pairs under --dataroot '
                        f'(synthetic_data.py and VITON-style data have test_pairs_paired.txt)')
    pairs = read_pairs(path)
    if not pairs:
        raise DataError(f'--data_list: {path} holds no pairs')
    setting = {'data_list': args.data_list, 'data_list_sha256': sha256_of(path), 'datamode': args.datamode,
               'pairs': str(min(len(pairs), args.max_pairs or len(pairs)))}
    if args.max_pairs is None or args.max_pairs >= len(pairs):
        return args.data_list, setting
    first = osp.abspath(osp.join(work, f'first_{args.max_pairs}_pairs.txt'))
    text = ''.join(f'{im_name} {c_name}\n' for im_name, c_name in pairs[:args.max_pairs])
    atomic_write(first, lambda tmp_path: Path(tmp_path).write_text(text))
    return first, setting


# --------------------------------------------------------------------------- test.py and evaluate.py

def test_options(args, checkpoint, data_list, work):
    """test.py's options for ``checkpoint`` (model options from options.json beside it, as test.py reads them),
    results to <work>/<checkpoint name>/<datamode>/, its TensorBoard images off."""
    return test_script.get_opt(['--name', 'learning_curves', '--gpu_ids', gpu_ids_of(args.device),
                                '--workers', str(args.workers), '--batch-size', str(args.batch_size),
                                '--dataroot', args.dataroot, '--datamode', args.datamode, '--data_list', data_list,
                                '--tensorboard_dir', osp.join(work, 'tensorboard'), '--result_dir', work,
                                '--checkpoint', checkpoint.path, '--display_count', NO_IMAGES])


def evaluate_options(args, data_list, metrics):
    """evaluate.py's options for scoring ``metrics`` of ``data_list``; the result folders are set per checkpoint."""
    argv = ['--metrics', ','.join(metrics), '--dataroot', args.dataroot, '--datamode', args.datamode,
            '--paired_list', data_list, '--workers', str(args.workers)]
    if args.device is not None:
        argv += ['--device', str(args.device)]
    if args.lpips_weights:
        argv += ['--lpips_weights', args.lpips_weights]
    return evaluate.parse_args(argv)


def metrics_to_score(stage, lpips_weights, log=print):
    """The stage's metrics, LPIPS only where its weights are found and load (else said here, once).

    Loaded here, once, rather than found unusable at the first checkpoint: the plan then leaves LPIPS out from
    the start, so rows scored without it count as scored, and a second call skips them."""
    if stage == 'GMM':
        if lpips_weights:
            raise DataError(f'--lpips_weights {lpips_weights}: this is a GMM run, scored by the warp IoU; LPIPS '
                            f'scores try-ons (TOM runs)')
        return STAGE_METRICS['GMM']
    spec = evaluate.WEIGHTS['lpips']
    try:
        evaluate.load_network(evaluate.build_lpips_model, evaluate.locate_weights(spec, lpips_weights), spec)
    except evaluate.MetricUnavailable as reason:
        if lpips_weights:
            raise DataError(str(reason)) from None
        log(f'note: LPIPS not scored: {reason}')
        return tuple(metric for metric in STAGE_METRICS['TOM'] if metric != 'lpips')
    return STAGE_METRICS['TOM']


def score_results(eval_args, folder, metrics):
    """evaluate.py's scores of test.py's results in ``folder`` (<result_dir>/<checkpoint>/<datamode>):
    ({metric: float or None where unavailable}, pairs scored, notes, {metric: why unavailable})."""
    eval_args = argparse.Namespace(**{**vars(eval_args), 'warp_mask_dir': osp.join(folder, 'warp-mask'),
                                      'tryon_dir': osp.join(folder, 'try-on')})
    layout, device = evaluate.run_layout_and_device(eval_args)
    notes = []
    pairs, _ = evaluate.paired_list(eval_args, layout, notes)
    results, _ = evaluate.paired_metric_results(eval_args, layout, pairs, metrics, notes, device)
    values = {metric: results[metric].get('value') for metric in metrics}
    unavailable = {metric: results[metric]['unavailable'] for metric in metrics if 'unavailable' in results[metric]}
    scored = max(results[metric].get('num_images', 0) for metric in metrics)
    return values, scored, notes, unavailable


def score_checkpoint(base_opt, eval_args, checkpoint, metrics, work):
    """Test ``checkpoint`` with test.py's loop into the work folder, score it, remove the results.
    Returns score_results(...)."""
    opt = argparse.Namespace(**{**vars(base_opt), 'checkpoint': checkpoint.path})
    folder = str(test_script.result_layout(opt).folder)
    shutil.rmtree(osp.dirname(folder), ignore_errors=True)   # what an interrupted call left
    try:
        test_script.test(opt)
        return score_results(eval_args, folder, metrics)
    finally:
        shutil.rmtree(osp.dirname(folder), ignore_errors=True)


# --------------------------------------------------------------------------- curves.csv

def csv_columns(stage):
    return ('step', 'checkpoint', *STAGE_METRICS[stage], 'pairs', 'data_list', 'data_list_sha256', 'datamode',
            *FILE_COLUMNS, 'seconds')


def read_rows(path, stage):
    """The rows of curves.csv as dicts of strings ([] without the file). DataError, naming the file, where it is
    not one this command wrote for ``stage`` (edited by hand, cut short): sorting and plotting read its steps and
    values as numbers."""
    if not osp.isfile(path):
        return []
    try:
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        problem = csv_problem(reader.fieldnames or [], rows, stage)
    except (csv.Error, UnicodeDecodeError) as error:
        problem = f'not a CSV file ({error})'
    if problem:
        raise DataError(f'{path}: {problem}; it is not a curves.csv of learning_curves.py for this {stage} run: '
                        f'delete it (or move it aside) to start the curve again')
    return rows


def csv_problem(columns, rows, stage):
    """What makes curves.csv unreadable (a column missing, a step or a metric that is not a number), or None."""
    missing = [column for column in csv_columns(stage) if column not in columns]
    if missing:
        return f'its header lacks {", ".join(missing)}'
    for number, row in enumerate(rows, start=1):
        if not parses_as(int, row['step']):
            return f'row {number} has step {row["step"]!r}, not a whole number'
        bad = next((metric for metric in STAGE_METRICS[stage] if row[metric] and not parses_as(float, row[metric])),
                   None)
        if bad:
            return f'row {number} has {bad} {row[bad]!r}, not a number'
    return None


def parses_as(kind, text):
    try:
        kind(text)
    except (TypeError, ValueError):   # TypeError: None, a field of a row cut short
        return False
    return True


def write_rows(path, rows, stage):
    """curves.csv, atomically, rows ordered by pair list and step."""
    columns = csv_columns(stage)
    rows = sorted(rows, key=lambda row: (*(row.get(name, '') for name in SETTING_COLUMNS), int(row['step']),
                                         row['checkpoint']))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp_path: Path(tmp_path).write_text(text.getvalue()))


def is_scored(row, checkpoint, identity, setting, metrics):
    """Whether ``row`` holds this checkpoint file (same size and time), scored on ``setting`` for every metric."""
    return (row.get('checkpoint') == checkpoint.name and all(row.get(k) == v for k, v in identity.items())
            and all(row.get(k) == v for k, v in setting.items()) and all(row.get(m) for m in metrics))


def already_scored(rows, checkpoint, setting, metrics):
    identity = checkpoint.identity()
    return any(is_scored(row, checkpoint, identity, setting, metrics) for row in rows)


def rows_without(rows, checkpoint_name, setting):
    """``rows`` less those of the checkpoint file ``checkpoint_name`` scored on ``setting``."""
    return [row for row in rows if not (row.get('checkpoint') == checkpoint_name and
                                        all(row.get(k) == v for k, v in setting.items()))]


def replaced_row(rows, row, setting):
    """``rows`` with ``row`` instead of any earlier row of its checkpoint and setting."""
    return rows_without(rows, row['checkpoint'], setting) + [row]


# --------------------------------------------------------------------------- curves.png

def series_of(rows):
    """{label: rows} per pair list (name, sha256, datamode, number of pairs) in ``rows``."""
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row.get(name, '') for name in SETTING_COLUMNS), []).append(row)
    labels = {}
    for (data_list, sha, datamode, pairs), members in groups.items():
        label = f'{data_list} ({datamode}, {pairs} pairs)'
        if label in labels:   # the same list name with other contents
            label += f' sha256 {sha[:8]}'
        labels[label] = members
    return labels


def plot_curves(rows, stage, path, title):
    """curves.png: one panel per metric that has values, x = step, a line with points per pair list."""
    from matplotlib.figure import Figure           # the Agg canvas, without pyplot's global state
    from matplotlib.ticker import MaxNLocator
    metrics = [metric for metric in STAGE_METRICS[stage] if any(row.get(metric) for row in rows)]
    if not metrics:
        return False
    series = series_of(rows)
    figure = Figure(figsize=(7.5, 1.0 + 2.6 * len(metrics)), layout='constrained')
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        for label, members in series.items():
            points = sorted((int(row['step']), float(row[metric])) for row in members if row.get(metric))
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, marker='o', label=label)
            if len(points) <= ANNOTATED_POINTS:
                for step, value in points:
                    ax.annotate(f'{value:.3f}', (step, value), textcoords='offset points', xytext=(0, 6),
                                ha='center', fontsize=8)
        ax.set_ylabel(METRIC_TITLES[metric])
        ax.margins(x=0.08, y=0.25)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel('training step')
    steps = sorted({int(row['step']) for row in rows})
    if len(steps) <= ANNOTATED_POINTS:      # few checkpoints: a tick at each, the final one's marked
        finals = {int(row['step']) for row in rows if row['checkpoint'] == final_checkpoint_name(stage)}
        axes[-1].set_xticks(steps, [f'{step}\nfinal' if step in finals else str(step) for step in steps])
    else:
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    atomic_write(path, lambda tmp_path: figure.savefig(tmp_path, format='png', dpi=100))
    return True


def plot_title(run_name, stage, rows):
    series = list(series_of(rows))
    return f'{run_name} ({stage}) on ' + (series[0] if len(series) == 1 else 'several pair lists')


# --------------------------------------------------------------------------- TensorBoard

class EvalBoard:
    """eval/<metric> scalars in the run's TensorBoard folder, in a file of its own, opened at the first value
    (a call that scores nothing writes no file)."""

    def __init__(self, folder):
        self.folder, self.writer = folder, None

    def add(self, values, step):
        for metric, value in values.items():
            if value is None:
                continue
            if self.writer is None:
                self.writer = SummaryWriter(log_dir=self.folder, filename_suffix='.learning_curves')
            self.writer.add_scalar(f'eval/{metric}', value, step)
        if self.writer is not None:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def board_folder(args, options, folder):
    """<tensorboard_dir>/<name>: train.py's log folder of the run (its recorded flags), --tensorboard_dir given."""
    parent = args.tensorboard_dir or options.get('tensorboard_dir') or 'tensorboard'
    return osp.join(parent, options.get('name') or osp.basename(osp.normpath(folder)))


# --------------------------------------------------------------------------- the command

def format_values(values):
    return ', '.join(f'{metric} {value:.4f}' if value is not None else f'{metric} n/a'
                     for metric, value in values.items())


def remove_work_folder(work):
    """Remove what this command put in <run>/curves/ (and the folder, when that leaves it empty)."""
    shutil.rmtree(osp.join(work, 'tensorboard'), ignore_errors=True)
    for name in os.listdir(work) if osp.isdir(work) else []:
        if name.startswith('first_') and name.endswith('_pairs.txt'):
            os.remove(osp.join(work, name))
    if osp.isdir(work) and not os.listdir(work):
        os.rmdir(work)


@dataclass
class Plan:
    """One call's work: the run, what to score it on, and the rows of curves.csv."""
    folder: str
    options: dict
    metrics: tuple
    data_list: str      # as test.py and evaluate.py take it: a name under --dataroot, or a file in the work folder
    setting: dict       # the SETTING_COLUMNS of the rows it writes
    rows: list
    todo: list          # the selected checkpoints not yet scored on this setting

    @property
    def stage(self):
        return self.options['stage']

    @property
    def work(self):
        return osp.join(self.folder, WORK_FOLDER)

    @property
    def csv_path(self):
        return osp.join(self.folder, CSV_FILE)


def plan_line(args, plan, selected):
    every = 'every step checkpoint' if args.every == 1 else f'1 step checkpoint in {args.every}'
    return (f'learning curve of {plan.folder} ({plan.stage}): {selected} checkpoints selected ({every}, and the final '
            f'one), {len(plan.todo)} to score, {selected - len(plan.todo)} skipped (already in {plan.csv_path}); '
            f'{plan.setting["pairs"]} pairs of {args.data_list} ({args.datamode}); {", ".join(plan.metrics)}')


def summary_line(plan, selected, board):
    if not plan.todo:
        return (f'nothing new to score: {selected} checkpoints skipped (already in {plan.csv_path}; --rescore scores '
                f'them again)')
    tags = ', '.join(f'eval/{metric}' for metric in plan.metrics)
    return f'TensorBoard: {tags} at steps {", ".join(str(c.step) for c in plan.todo)} in {board.folder}'


def learning_curves(args):
    folder = run_folder(args)
    options = run_options(folder)
    checkpoints, twin = selected_checkpoints(folder, options, args.every)
    metrics = metrics_to_score(options['stage'], args.lpips_weights)
    work = osp.join(folder, WORK_FOLDER)
    os.makedirs(work, exist_ok=True)
    board = EvalBoard(board_folder(args, options, folder))
    try:
        data_list, setting = pairs_list(args, work)
        rows = read_rows(osp.join(folder, CSV_FILE), options['stage'])
        todo = [checkpoint for checkpoint in checkpoints
                if args.rescore or not already_scored(rows, checkpoint, setting, metrics)]
        plan = Plan(folder, options, metrics, data_list, setting, rows, todo)
        removed_twin_rows = drop_twin_rows(plan, twin)
        print(plan_line(args, plan, len(checkpoints)), flush=True)
        if todo and not osp.isdir(board.folder):
            print(f'note: {board.folder}, the TensorBoard folder train.py logged this run to (its --tensorboard_dir, '
                  f'relative to where it ran), does not exist: eval/ scalars go to a new one there; pass '
                  f'--tensorboard_dir to put them beside the training losses', flush=True)
        score_all(args, plan, board)
    finally:
        board.close()
        remove_work_folder(work)
    print(summary_line(plan, len(checkpoints), board))
    plot_path = osp.join(folder, PLOT_FILE)
    run_name = options.get('name') or osp.basename(osp.normpath(folder))
    if plot_curves(plan.rows, plan.stage, plot_path, plot_title(run_name, plan.stage, plan.rows)):
        print(f'{"wrote" if todo or removed_twin_rows else "kept"} {plan.csv_path} ({len(plan.rows)} rows); '
              f'drew {plot_path} from it')
    return 0


def drop_twin_rows(plan, twin):
    """Remove from plan.rows and curves.csv the rows of ``twin`` (the final one's twin, or None) on plan.setting:
    scored before the final one was written, they would be a second point at its step. Whether there were any."""
    kept = rows_without(plan.rows, twin.name, plan.setting) if twin else plan.rows
    if len(kept) == len(plan.rows):
        return False
    plan.rows = kept
    write_rows(plan.csv_path, plan.rows, plan.stage)
    print(f'removed the row of {twin.name} from {plan.csv_path}: scored before {final_checkpoint_name(plan.stage)} '
          f'was written, its point is now the final one\'s', flush=True)
    return True


def score_all(args, plan, board):
    """Score each checkpoint of plan.todo, writing curves.csv (plan.rows) and TensorBoard after each."""
    if not plan.todo:
        return
    base_opt = test_options(args, plan.todo[0], plan.data_list, plan.work)
    eval_args = evaluate_options(args, plan.data_list, plan.metrics)
    said = set()
    for checkpoint in progress(plan.todo, desc='learning curve', unit='checkpoint', file=sys.stdout):
        identity = checkpoint.identity()   # before testing: a file replaced meanwhile is scored again next time
        start = time.perf_counter()
        try:
            values, scored, notes, unavailable = score_checkpoint(base_opt, eval_args, checkpoint, plan.metrics,
                                                                  plan.work)
        except CheckpointError as error:
            raise DataError(f'{error}. Replace or delete it, then run this command again: the checkpoints scored '
                            f'before it are in {plan.csv_path} and are skipped') from None
        seconds = time.perf_counter() - start
        for note in notes + [f'{metric} not scored: {why}' for metric, why in unavailable.items()]:
            if note not in said:
                print(f'note: {note}', flush=True)
                said.add(note)
        row = {'step': str(checkpoint.step), 'checkpoint': checkpoint.name, **plan.setting, **identity,
               **{metric: repr(value) for metric, value in values.items() if value is not None},
               'seconds': f'{seconds:.1f}'}
        plan.rows = replaced_row(plan.rows, row, plan.setting)
        write_rows(plan.csv_path, plan.rows, plan.stage)
        board.add(values, checkpoint.step)
        print(f'step {checkpoint.step:>8} {checkpoint.name}: {format_values(values)} ({scored} pairs, '
              f'{seconds:.1f} s)', flush=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        return learning_curves(args)
    except CheckpointError as error:
        print(f'error: {error}. Replace or delete it, then run this command again', file=sys.stderr)
        return 2
    except (DataError, OSError) as error:
        one_line = str(error).replace('\n', '; ')   # read_pairs lists each malformed line on its own
        print(f'error: {one_line}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
