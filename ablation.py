"""Ablation of CP-VTON+'s improvements, and comparison of methods: train and test the original CP-VTON and each
option (or each method: CP-VTON, CP-VTON+, VITON) on the same data, with the same seed and step budget, and compare
them overall and on the hard subsets.

    bash scripts/ablation.sh                                   # synthetic data, ~20 min on 2 CPU cores
    bash scripts/ablation.sh --gmm_steps 20000 --tom_steps 20000 --dataroot data --batch_size 8
    bash scripts/compare_methods.sh   # = --variants baseline,cpvton_plus,viton,viton_parse_mask,wuton --out methods

Variants (VARIANTS): the baseline, each option alone, and all of them together (CP-VTON+), plus
--noise_seeds rows: the baseline trained with other seeds, whose differences to the baseline show
how much the numbers move by chance alone at this budget. A variant whose GMM options (and seed)
equal another's reuses that GMM, so a TOM-only option is compared on the very same warps.
Everything goes under --out (default ablation/):

    data/                synthetic VITON-format data (unless --dataroot)
    <variant>/           its checkpoints, test results, TensorBoard logs, metrics.json
    logs/                every command's output
    strips/              per variant, the same hard pairs side by side (warped cloth and try-on)
    <variant>/result_simple/  the 7-panel strip of every same-cloth test pair
    index.html           the gallery: every pair of every variant side by side, sortable by the difference
    ablation.md          the table (IoU, SSIM, LPIPS where its weights are present, overall and per
                         difficulty subset), the strips, and the commands that made them

IoU scores the warp (GMM's; VITON's shape-context TPS); SSIM and LPIPS score the try-on against the person
(same-cloth pairs). The VITON row trains its coarse stage for --viton_coarse_steps and its refinement for
--viton_refine_steps, the WUTON row its warp and generator together for --wuton_steps (scripts/viton/ and
scripts/wuton/ run the same steps on their own).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import evaluate
import flags
import gallery
import shape_context
import smart_show_test_result
import test as test_script
import train
from cp_dataset import ResultLayout, file_in, pair_key, read_pairs
from methods import STAGES
from networks import find_vgg19_weights
from smart_show_test_result import annotate, labelled_row, open_panel
from synthetic_data import generate_dataset

PAIRED_LIST = 'test_pairs_paired.txt'
SUBSETS = ('all', 'textured', 'occluded')
METRICS = (('iou', 'IoU'), ('ssim', 'SSIM'), ('lpips', 'LPIPS'))
MARKER = 'ablation_run.json'    # marks --out as made by this script (see --overwrite)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    gmm_flags: tuple = ()
    tom_flags: tuple = ()
    seed_offset: int = 0    # trained with --seed + seed_offset (the noise rows)
    method: str = 'cpvton'  # 'cpvton' (GMM + TOM with the flags above), 'viton' or 'wuton'
    test_target: str = 'coarse'   # VITON: the clothing mask its test warps are matched to (shape_context.py)


@dataclass(frozen=True)
class VariantRun:
    variant: Variant
    dataroot: str        # the data its try-on stage was trained and tested on (with its GMM's warps)
    results: ResultLayout    # of its warp on the test split (warp-cloth/, warp-mask/)
    tryons: ResultLayout     # of its try-on on the test split (try-on/)
    report: dict         # evaluate.py's report
    seconds: float
    steps: str           # its training steps per stage, for the table


GIC = ('--gic_weight', '40')
REGIONS = ('--reserved_regions', 'cpvton_plus')
BODY = ('--body_shape', 'image-mask')
MASK_INPUT = ('--tom_mask_input',)
MASK_TARGET = ('--tom_mask_target', 'person_cloth')
VARIANTS = {variant.name: variant for variant in (
    Variant('baseline', 'the original CP-VTON'),
    Variant('gic', 'GMM grid-interval-consistency loss, weight 40', GIC),
    Variant('reserved_regions', 'stage-specific reserved regions', REGIONS, REGIONS),
    Variant('body_shape', 'body shape from image-mask/', BODY, BODY),
    Variant('tom_mask_input', 'TOM also takes the warped mask (26 channels)', (), MASK_INPUT),
    Variant('tom_mask_target', "TOM mask loss against the person's cloth region", (), MASK_TARGET),
    Variant('cpvton_plus', 'all of the above (CP-VTON+)', GIC + REGIONS + BODY,
            REGIONS + BODY + MASK_INPUT + MASK_TARGET),
    Variant('viton', 'VITON: coarse encoder-decoder, shape-context TPS warp, refinement', method='viton'),
    Variant('viton_parse_mask', "VITON's trained stages, its test warps matched to the person's own parse-map "
            "clothing mask instead of stage 1's prediction (an oracle: it sees the ground truth; it measures the "
            "matcher apart from stage 1)", method='viton', test_target='parse'),
    Variant('wuton', 'WUTON: the warp learned end to end on feature maps, adversarial loss on other clothes',
            method='wuton'),
)}
ABLATION_VARIANTS = [name for name, variant in VARIANTS.items() if variant.method == 'cpvton']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train and test CP-VTON and each CP-VTON+ option on the same data; '
                                                 'write ablation.md.', formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--out', default='ablation', help='output folder (default: %(default)s)')
    parser.add_argument('--variants', default=','.join(ABLATION_VARIANTS),
                        help='comma-separated, among ' + ','.join(VARIANTS) + ' (default: the CP-VTON+ options: '
                             + ','.join(ABLATION_VARIANTS) + ')')
    parser.add_argument('--gmm_steps', type=flags.positive_int, default=50,
                        help='GMM training steps (default: %(default)s)')
    parser.add_argument('--tom_steps', type=flags.positive_int, default=16,
                        help='TOM training steps (default: %(default)s)')
    parser.add_argument('--viton_coarse_steps', type=flags.positive_int, default=50,
                        help="VITON stage-1 training steps (default: %(default)s, GMM's: its first stage)")
    parser.add_argument('--viton_refine_steps', type=flags.positive_int, default=16,
                        help="VITON refinement training steps (default: %(default)s, TOM's: its second stage)")
    parser.add_argument('--viton_bn_momentum', type=flags.float_in(0, 1), default=0.1,
                        help="VITON's batch-norm momentum (--bn_momentum; default %(default)s: the official 0.001 "
                             "leaves stage 1's eval-mode statistics near their initial values for thousands of steps, "
                             "so at a short budget its test masks are empty)")
    parser.add_argument('--wuton_steps', type=flags.positive_int, default=24,
                        help='WUTON training steps, warp and generator together (default: %(default)s)')
    parser.add_argument('--batch_size', type=flags.positive_int, default=4, help='(default: %(default)s)')
    parser.add_argument('--lr', type=flags.positive_float, default=0.0001, help='(default: %(default)s, the original)')
    parser.add_argument('--seed', type=flags.seed, default=0, help='one seed for every variant (default: %(default)s)')
    parser.add_argument('--noise_seeds', type=flags.non_negative_int, default=1,
                        help='also train the baseline with this many other seeds, as rows that show how much '
                             'the numbers move by chance alone (default: %(default)s)')
    parser.add_argument('--dataroot', help='VITON-format data to use (default: synthetic data made in <out>/data)')
    parser.add_argument('--n_train', type=flags.positive_int, default=120,
                        help='synthetic training persons (default: %(default)s)')
    parser.add_argument('--n_test', type=flags.int_at_least(2), default=30,
                        help='synthetic test persons (default: %(default)s)')
    parser.add_argument('--textured_share', type=flags.share, default=0.5, help='synthetic data (default: %(default)s)')
    parser.add_argument('--occluded_share', type=flags.share, default=0.3, help='synthetic data (default: %(default)s)')
    parser.add_argument('--hard_pairs', type=flags.positive_int, default=4,
                        help='pairs shown in the strips (default: %(default)s)')
    parser.add_argument('--workers', type=flags.non_negative_int, default=1,
                        help='data loader and scoring processes, 0: this one (default: %(default)s)')
    parser.add_argument('--gpu_ids', type=flags.gpu_ids, default='',
                        help="train.py's --gpu_ids (default: a GPU if there is one)")
    parser.add_argument('--overwrite', action='store_true', help='replace an earlier ablation run in --out')
    parser.add_argument('--title', default='', help='the report\'s heading (default: by its rows)')
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(',') if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f'unknown variant(s) {unknown}; choose among {",".join(VARIANTS)}')
    if args.seed + args.noise_seeds > flags.MAX_SEED:
        parser.error(f'--seed {args.seed} --noise_seeds {args.noise_seeds}: the noise rows would use seeds up to '
                     f'{args.seed + args.noise_seeds}, above {flags.MAX_SEED}')
    flags.check_gpu_ids_present(parser, args.gpu_ids)
    if 'baseline' not in args.variants:
        args.variants.insert(0, 'baseline')   # the reference every row is compared with
    return args


# --------------------------------------------------------------------------- running the steps

class Runner:
    """Runs train.py, test.py and evaluate.py in this process (imported once: a fresh interpreter per
    command cost about 5 s each), each command's output going to <out>/logs/<name>.log."""

    def __init__(self, out):
        self.logs = osp.join(out, 'logs')
        os.makedirs(self.logs, exist_ok=True)
        self.commands = []

    def __call__(self, name, script, *args):
        args = [str(arg) for arg in args]
        self.commands.append(f'python {script.__name__}.py {" ".join(args)}')
        log_path = osp.join(self.logs, f'{name}.log')
        start = time.time()
        with open(log_path, 'w') as log, redirect_stdout(log), redirect_stderr(log):
            try:
                status = script.main(args)
            except SystemExit as stop:   # the scripts stop with a message on bad data or options
                print(stop, file=log)
                status = 1
        if status:
            with open(log_path) as log:
                tail = log.read()[-3000:]
            raise SystemExit(f'{name} failed; its log is {log_path}:\n{tail}')
        print(f'  {name}: {time.time() - start:.0f} s', flush=True)


def prepare_out(args):
    """Create --out; an earlier run there is replaced only with --overwrite, other content never."""
    if osp.exists(args.out) and os.listdir(args.out):
        if not osp.isfile(osp.join(args.out, MARKER)):
            raise SystemExit(f'{args.out} exists and was not made by ablation.py; choose another --out.')
        if not args.overwrite:
            raise SystemExit(f'{args.out} holds an earlier ablation run; pass --overwrite to replace it, '
                             f'or choose another --out.')
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, MARKER), 'w') as f:
        json.dump({key: value for key, value in vars(args).items()}, f, indent=2)


def vgg_flags():
    """ImageNet VGG19 for the perceptual losses where its weights are present, else random (said loudly)."""
    try:
        find_vgg19_weights()
        return []
    except FileNotFoundError:
        print('note: no ImageNet VGG19 weights in torch\'s cache: the perceptual losses (TOM, VITON, WUTON, '
              'MG-VTON) use --vgg_init random (the same for every variant)', flush=True)
        return ['--vgg_init', 'random']


def variant_dataroot(args, source, gmm_results, name):
    """A dataroot for TOM: the source data's folders and pair lists linked, plus this GMM's warps."""
    root = osp.join(args.out, name, 'data')
    for split in ('train', 'test'):
        os.makedirs(osp.join(root, split), exist_ok=True)
        for folder in os.listdir(osp.join(source, split)):
            if folder not in ('warp-cloth', 'warp-mask'):
                os.symlink(osp.abspath(osp.join(source, split, folder)), osp.join(root, split, folder))
        for folder in ('warp-cloth', 'warp-mask'):
            shutil.copytree(osp.join(gmm_results, split, folder), osp.join(root, split, folder))
    for entry in os.listdir(source):
        if entry.endswith('.txt'):
            os.symlink(osp.abspath(osp.join(source, entry)), osp.join(root, entry))
    return root


def link_user_data(source, root):
    """<out>/data: links to the user's split folders (their warps left out: each variant makes its own) and
    copies of the pair lists, plus same-cloth test pairs derived by VITON's naming where the data has none.
    Nothing is written into the user's data."""
    for split in ('train', 'test'):
        os.makedirs(osp.join(root, split))
        for folder in os.listdir(osp.join(source, split)):
            if folder not in ('warp-cloth', 'warp-mask'):
                os.symlink(osp.abspath(osp.join(source, split, folder)), osp.join(root, split, folder))
    for entry in os.listdir(source):
        if entry.endswith('.txt'):
            shutil.copy(osp.join(source, entry), osp.join(root, entry))
    if not osp.isfile(osp.join(root, PAIRED_LIST)):
        print(f'note: {source} has no {PAIRED_LIST}', flush=True)
        if evaluate.main(['--dataroot', root, '--paired_list', PAIRED_LIST, '--write_paired_list']) != 0:
            raise SystemExit(f'write {osp.join(source, PAIRED_LIST)}, one same-cloth pair a line')


def train_stage(args, run, stage, dataroot, name, seed, steps, logs_per_run, flags):
    """Train one stage of a variant for ``steps`` (two thirds constant LR, the rest decaying); returns the
    flags its tests share and its final checkpoint."""
    folder, run_name = osp.join(args.out, name), stage.lower()
    common = ['--stage', stage, '--dataroot', dataroot, '--workers', args.workers, '--gpu_ids', args.gpu_ids,
              '--batch-size', args.batch_size, '--tensorboard_dir', osp.join(folder, 'tensorboard')]
    run(f'{name}-{run_name}-train', train, '--name', run_name, *common,
        '--checkpoint_dir', osp.join(folder, 'checkpoints'), '--keep_step', steps * 2 // 3,
        '--decay_step', steps - steps * 2 // 3, '--save_count', steps + 1,
        '--display_count', max(1, steps // logs_per_run), '--lr', args.lr, '--seed', seed, '--shuffle', *flags)
    return common, osp.join(folder, 'checkpoints', run_name, STAGES[stage].final_checkpoint)


def train_and_test_gmm(args, run, dataroot, gmm_flags, name, seed):
    """Train GMM with ``gmm_flags``, warp the train and test splits; returns a dataroot with its warps."""
    common, checkpoint = train_stage(args, run, 'GMM', dataroot, name, seed, args.gmm_steps, 4, gmm_flags)
    results = osp.join(args.out, name, 'result')
    for datamode, data_list in (('train', 'train_pairs.txt'), ('test', PAIRED_LIST)):
        run(f'{name}-gmm-test-{datamode}', test_script, '--name', 'gmm_test', *common,
            '--datamode', datamode, '--data_list', data_list, '--checkpoint', checkpoint, '--result_dir', results,
            '--display_count', 1000000)
    return variant_dataroot(args, dataroot, osp.join(results, 'gmm_final.pth'), name)


def train_and_test_tom(args, run, dataroot, tom_flags, name, seed, vgg):
    """Train TOM with ``tom_flags`` on ``dataroot`` (its GMM's warps), try on the same-cloth test pairs."""
    common, checkpoint = train_stage(args, run, 'TOM', dataroot, name, seed, args.tom_steps, 3, [*vgg, *tom_flags])
    run(f'{name}-tom-test', test_script, '--name', 'tom_test', *common, '--data_list', PAIRED_LIST,
        '--checkpoint', checkpoint, '--result_dir', osp.join(args.out, name, 'result'), '--display_count', 1000000)


def train_viton(args, run, dataroot, name, seed, vgg):
    """VITON's training steps (as scripts/viton/): stage 1, the training split's shape-context warps onto the parse
    map's clothing mask, the refinement. Returns {stage: (its test flags, its checkpoint)}."""
    results = osp.join(args.out, name, 'result')
    momentum = ['--bn_momentum', args.viton_bn_momentum]
    coarse_flags, coarse = train_stage(args, run, 'VITON_COARSE', dataroot, name, seed, args.viton_coarse_steps, 3,
                                       [*vgg, *momentum])
    run(f'{name}-shape-context-train', shape_context, '--dataroot', dataroot, '--datamode', 'train', '--data_list',
        'train_pairs.txt', '--target', 'parse', '--result_dir', results, '--workers', max(1, args.workers))
    refine_flags, refine = train_stage(args, run, 'VITON_REFINE', dataroot, name, seed, args.viton_refine_steps, 3,
                                       [*vgg, *momentum, '--coarse_checkpoint', coarse, '--warp_dir',
                                        ResultLayout(results, 'shape_context', 'train').folder])
    return {'VITON_COARSE': (coarse_flags, coarse), 'VITON_REFINE': (refine_flags, refine)}


def test_viton(args, run, dataroot, name, trained, target):
    """VITON's test steps on the same-cloth test pairs: the shape-context warps onto stage 1's predicted clothing
    masks (``target`` 'coarse', VITON's test) or onto the parse map's ('parse': an oracle that sees the ground
    truth, which separates the matcher from stage 1), then the refinement's try-ons. Returns the result layouts
    of the test warps and try-ons."""
    results = osp.join(args.out, name, 'result')
    if target == 'coarse':
        coarse_flags, coarse = trained['VITON_COARSE']
        run(f'{name}-coarse-test', test_script, '--name', 'viton_coarse_test', *coarse_flags, '--data_list',
            PAIRED_LIST, '--checkpoint', coarse, '--result_dir', results, '--display_count', 1000000)
    run(f'{name}-shape-context-test', shape_context, '--dataroot', dataroot, '--datamode', 'test', '--data_list',
        PAIRED_LIST, '--target', target, '--result_dir', results, '--workers', max(1, args.workers))
    warps = ResultLayout(results, 'shape_context', 'test')
    refine_flags, refine = trained['VITON_REFINE']
    run(f'{name}-refine-test', test_script, '--name', 'viton_refine_test', *refine_flags, '--data_list', PAIRED_LIST,
        '--checkpoint', refine, '--result_dir', results, '--warp_dir', warps.folder, '--display_count', 1000000)
    return warps, ResultLayout(results, osp.basename(refine), 'test')


def train_and_test_wuton(args, run, dataroot, name, seed, vgg):
    """WUTON's steps (as scripts/wuton/): train end to end, try on the same-cloth test pairs. Returns the result
    layout of its test results (its image-space warps and its try-ons lie side by side)."""
    results = osp.join(args.out, name, 'result')
    common, checkpoint = train_stage(args, run, 'WUTON', dataroot, name, seed, args.wuton_steps, 3, vgg)
    run(f'{name}-wuton-test', test_script, '--name', 'wuton_test', *common, '--data_list', PAIRED_LIST,
        '--checkpoint', checkpoint, '--result_dir', results, '--display_count', 1000000)
    layout = ResultLayout(results, osp.basename(checkpoint), 'test')
    return layout, layout


def evaluate_variant(args, run, dataroot, name, warps, tryons):
    metrics_path = osp.join(args.out, name, 'metrics.json')
    run(f'{name}-evaluate', evaluate, '--dataroot', dataroot, '--metrics', 'iou,ssim,lpips',
        '--tryon_dir', tryons.kind_dir('try-on'), '--warp_mask_dir', warps.kind_dir('warp-mask'),
        '--paired_list', PAIRED_LIST, '--workers', args.workers, '--out', metrics_path)
    with open(metrics_path) as f:
        return json.load(f)


def noise_variants(args):
    return [Variant(f'baseline_seed{args.seed + offset}', f'the original CP-VTON with seed {args.seed + offset}: '
                    f'its differences to the baseline are chance alone', seed_offset=offset)
            for offset in range(1, args.noise_seeds + 1)]


def run_variants(args):
    """Train, test and evaluate every variant; returns {variant name: VariantRun}."""
    run = Runner(args.out)
    dataroot = osp.join(args.out, 'data')
    if args.dataroot is None:
        print(f'synthetic data -> {dataroot}', flush=True)
        generate_dataset(dataroot, args.n_train, args.n_test, args.seed, textured_share=args.textured_share,
                         occluded_share=args.occluded_share)
    else:
        link_user_data(args.dataroot, dataroot)
    vgg = vgg_flags()
    gmm_runs = {}   # (GMM flags, seed) -> (variant that trained it, its dataroot with warps)
    viton_runs = {}   # seed -> (variant that trained VITON, train_viton's result)
    done = {}
    for variant in [VARIANTS[name] for name in args.variants] + noise_variants(args):
        name, seed = variant.name, args.seed + variant.seed_offset
        print(f'[{name}] {variant.description}', flush=True)
        start = time.time()
        if variant.method == 'viton':
            tom_dataroot = dataroot
            if seed not in viton_runs:
                viton_runs[seed] = name, train_viton(args, run, dataroot, name, seed, vgg)
            viton_owner, trained = viton_runs[seed]
            if viton_owner != name:
                print(f'  VITON: the one of {viton_owner} (trained alike), tested otherwise', flush=True)
            warps, tryons = test_viton(args, run, dataroot, name, trained, variant.test_target)
            steps = f'coarse {args.viton_coarse_steps} + refine {args.viton_refine_steps}'
        elif variant.method == 'wuton':
            tom_dataroot = dataroot
            warps, tryons = train_and_test_wuton(args, run, dataroot, name, seed, vgg)
            steps = f'end to end {args.wuton_steps}'
        else:
            gmm_key = variant.gmm_flags, seed
            if gmm_key not in gmm_runs:
                gmm_runs[gmm_key] = name, train_and_test_gmm(args, run, dataroot, variant.gmm_flags, name, seed)
            gmm_owner, tom_dataroot = gmm_runs[gmm_key]
            if gmm_owner != name:
                print(f'  GMM: the one of {gmm_owner} (same GMM options)', flush=True)
            train_and_test_tom(args, run, tom_dataroot, variant.tom_flags, name, seed, vgg)
            results = osp.join(args.out, name, 'result')
            if gmm_owner != name:   # the result layout of one run: its GMM's warps beside its try-ons
                os.symlink(osp.abspath(osp.join(args.out, gmm_owner, 'result', 'gmm_final.pth')),
                           osp.join(results, 'gmm_final.pth'))
            warps = ResultLayout(results, 'gmm_final.pth', 'test')
            tryons = ResultLayout(results, 'tom_final.pth', 'test')
            steps = f'GMM {args.gmm_steps} + TOM {args.tom_steps}'
        report = evaluate_variant(args, run, tom_dataroot, name, warps, tryons)
        render_variant_strips(args, run, tom_dataroot, name, warps, tryons)
        done[name] = VariantRun(variant, tom_dataroot, warps, tryons, report, time.time() - start, steps)
    return done, run.commands


def render_variant_strips(args, run, dataroot, name, warps, tryons):
    """<out>/<variant>/result_simple/: the 7-panel strip of every same-cloth test pair, for the gallery."""
    run(f'{name}-strips', smart_show_test_result, '--dataroot', dataroot, '--data_list', PAIRED_LIST,
        '--result_dir', osp.join(args.out, name, 'result'), '--gmm_checkpoint_name', warps.checkpoint_name,
        '--tom_checkpoint_name', tryons.checkpoint_name, '--out_simple', osp.join(args.out, name, 'result_simple'),
        '--out_verbose', '')


def write_gallery(args, done):
    """<out>/index.html: the variants' strips and scores of the same pairs side by side (gallery.py)."""
    page = osp.join(args.out, 'index.html')
    gallery.write_gallery([gallery.Run(name, osp.join(args.out, name, 'result_simple'),
                                       read_pairs(osp.join(run.dataroot, PAIRED_LIST)), run.report)
                           for name, run in done.items()], page)
    return page


# --------------------------------------------------------------------------- the report

def subset_value(report, subset, metric):
    """(value or None, pairs scored) of ``metric`` on ``subset`` ('all' = every pair) of an evaluate.py report."""
    result = report['metrics'] if subset == 'all' else report.get('subsets', {}).get(subset, {}).get('metrics', {})
    entry = result.get(metric)
    if not entry or 'unavailable' in entry or entry.get('value') is None:
        return None, 0
    return entry['value'], entry.get('num_images', 0)


def subset_pairs(report, subset):
    """Pair keys of a difficulty subset among the same-cloth pairs of an evaluate.py report."""
    return report.get('subsets', {}).get(subset, {}).get('pairs', {}).get('paired', [])


def subset_sizes(report):
    sizes = {'all': report['pair_lists']['paired']['pairs']}
    sizes.update({subset: len(subset_pairs(report, subset)) for subset in SUBSETS[1:]})
    return sizes


def format_cell(value, reference, lower_is_better):
    """'0.712' for the baseline, '0.705 (-0.007 ↓)' for the others: the difference to the baseline."""
    if value is None:
        return 'n/a'
    if reference is None:
        return f'{value:.3f}'
    delta = value - reference
    if abs(delta) < 5e-4:
        return f'{value:.3f} (±0.000)'
    better = delta < 0 if lower_is_better else delta > 0
    return f'{value:.3f} ({delta:+.3f} {"↑" if better else "↓"})'


def metrics_table(done):
    """Markdown table: one row per variant, IoU/SSIM/LPIPS on all pairs and each subset, deltas to the baseline."""
    baseline = done['baseline'].report
    shown = [(metric, title) for metric, title in METRICS
             if any(subset_value(run.report, 'all', metric)[0] is not None for run in done.values())]
    sizes = subset_sizes(baseline)
    header = ['variant'] + [f'{title} {subset} (n={sizes[subset]})' for metric, title in shown for subset in SUBSETS]
    lines = ['| ' + ' | '.join(header + ['steps', 'minutes']) + ' |', '|' + '---|' * (len(header) + 2)]
    for name, run in done.items():
        report, seconds = run.report, run.seconds
        cells = [f'{name}']
        for metric, _ in shown:
            for subset in SUBSETS:
                value = subset_value(report, subset, metric)[0]
                reference = subset_value(baseline, subset, metric)[0] if name != 'baseline' else None
                cells.append(format_cell(value, reference, metric == 'lpips'))
        lines.append('| ' + ' | '.join(cells + [run.steps, f'{seconds / 60:.1f}']) + ' |')
    unavailable = [title for metric, title in METRICS if (metric, title) not in shown]
    return '\n'.join(lines), unavailable


def hard_pairs(done, count):
    """The same-cloth pairs with the lowest baseline SSIM, taken in turn from the textured and the occluded
    subsets (then any pair), so that the strips show both kinds of difficulty."""
    report = done['baseline'].report
    ssim = {key: row['ssim'] for key, row in report['per_pair'].items() if 'ssim' in row}
    ranked = {subset: sorted((key for key in subset_pairs(report, subset) if key in ssim), key=ssim.get)
              for subset in SUBSETS[1:]}
    ranked['all'] = sorted(ssim, key=ssim.get)
    chosen = []
    while len(chosen) < min(count, len(ssim)):
        for subset in ('textured', 'occluded', 'all'):
            candidates = [key for key in ranked[subset] if key not in chosen]
            if candidates and len(chosen) < count:
                chosen.append(candidates[0])
    return chosen


def render_strips(args, done, keys):
    """strips/inputs.png (cloth and person of each hard pair) and strips/<variant>.png (warped cloth and
    try-on of the same pairs, side by side); returns their paths relative to --out."""
    folder = osp.join(args.out, 'strips')
    os.makedirs(folder, exist_ok=True)
    pairs = {pair_key(*pair): pair for pair in read_pairs(osp.join(done['baseline'].dataroot, PAIRED_LIST))}
    data = osp.join(done['baseline'].dataroot, 'test')
    inputs = [[open_panel(file_in(osp.join(data, 'cloth'), pairs[key][1])),
               open_panel(file_in(osp.join(data, 'image'), pairs[key][0]))] for key in keys]
    paths = {'inputs': 'strips/inputs.png'}
    labelled_row([panel for pair in inputs for panel in pair],
                 [label for key in keys for label in (f'cloth {key[:12]}', 'person')]).save(
        osp.join(args.out, paths['inputs']))
    for name, run in done.items():
        report = run.report
        panels, labels = [], []
        for key in keys:
            warp = open_panel(file_in(run.results.kind_dir('warp-cloth'), key))
            tryon = open_panel(file_in(run.tryons.kind_dir('try-on'), key))
            score = report['per_pair'].get(key, {}).get('ssim')
            panels += [warp, annotate(tryon, f'SSIM {score:.3f}') if score is not None else tryon]
            labels += ['warped cloth', 'try-on']
        paths[name] = f'strips/{name}.png'
        labelled_row(panels, labels).save(osp.join(args.out, paths[name]))
    return paths


def report_title(args, done):
    if args.title:
        return args.title
    methods = any(run.variant.method != 'cpvton' for run in done.values())
    return 'Methods: comparison on the same data, seed and budget' if methods else 'CP-VTON+ options: ablation'


def describe_variant(variant, args):
    if variant.method == 'viton':
        return (f'{variant.description}, batch-norm momentum {args.viton_bn_momentum} (official: 0.001; '
                f'--viton_bn_momentum) (scripts/viton/ runs the same steps)')
    if variant.method != 'cpvton':
        return f'{variant.description} (scripts/{variant.method}/ runs the same steps)'
    return (f'{variant.description}; GMM flags `{" ".join(variant.gmm_flags) or "-"}`, '
            f'TOM flags `{" ".join(variant.tom_flags) or "-"}`')


def write_report(args, done, commands, total_seconds):
    table, unavailable = metrics_table(done)
    keys = hard_pairs(done, args.hard_pairs)
    strips = render_strips(args, done, keys)
    page = write_gallery(args, done)
    data = (f'{args.dataroot} (linked in {osp.join(args.out, "data")})' if args.dataroot else
            f'synthetic: {args.n_train} train / {args.n_test} test persons, seed {args.seed}, '
            f'textured share {args.textured_share}, occluded share {args.occluded_share}')
    lines = [
        f'# {report_title(args, done)}', '',
        f'Data: {data}. Budget (steps per stage: the table\'s steps column), batch {args.batch_size}, '
        f'lr {args.lr}, seed {args.seed} (the same for every variant but the noise rows). '
        f'Total time {total_seconds / 60:.1f} min.', '',
        'IoU: warped mask vs the cloth region of the person; SSIM: try-on vs the person (skimage, RGB); LPIPS: '
        'AlexNet. Same-cloth test pairs; subsets as defined by evaluate.py (textured clothes, occluded persons). '
        'In brackets: the difference to the baseline (↑ better, ↓ worse). Minutes: the time of the variant\'s own '
        'runs (a variant that reuses another\'s GMM trains only its TOM).', '',
        table, '',
    ]
    if unavailable:
        lines += [f'Not shown ({", ".join(unavailable)}): unavailable in every run (see each variant\'s '
                  f'metrics.json for why, e.g. missing pretrained weights).', '']
    lines += ['## Variants', '']
    lines += [f'- **{name}**: {describe_variant(run.variant, args)}' for name, run in done.items()]
    lines += ['', '## The same hard pairs in every variant', '',
              'Lowest baseline SSIM, alternately from the textured and the occluded subset: '
              + ', '.join(f'`{key}`' for key in keys) + '.', '', f'![inputs]({strips["inputs"]})', '']
    for name in done:
        lines += [f'**{name}**', '', f'![{name}]({strips[name]})', '']
    lines += [f'Every pair of every variant, sortable by score and by the difference between two variants: '
              f'[the gallery]({osp.relpath(page, args.out)}) (opens from disk; "compare runs" view).', '']
    lines += commands_section('ablation.py', commands)
    return write_markdown(osp.join(args.out, 'ablation.md'), lines), table


def commands_section(script, commands):
    """A report's last section: this command line, then every command it ran."""
    return ['## Commands', '', '```', f'python {script} {" ".join(sys.argv[1:])}', *commands, '```', '']


def write_markdown(path, lines):
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    return path


def main(argv=None):
    args = parse_args(argv)
    prepare_out(args)
    start = time.time()
    done, commands = run_variants(args)
    path, table = write_report(args, done, commands, time.time() - start)
    print(f'\n{table}\n\nwrote {path} ({(time.time() - start) / 60:.1f} min)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
