"""MG-VTON against its baselines on the synthetic two-pose set (synthetic_data.py --layout mpv), where the try-on in
the target pose has its exact answer for the person's own cloth and for another one.

    bash scripts/mgvton/compare.sh              # = python multipose_comparison.py --out multipose, ~25 min on 2 cores
    python multipose_comparison.py --parse_steps 2000 --gmm_steps 1000 --warp_steps 2000 --refine_steps 500 --gpu_ids 0

Rows, each trained from the same seed on the same training triplets (its own steps: the table's steps column):
    mgvton              the four stages (scripts/mgvton/ runs the same steps)
    mgvton_no_refine    its stages I and II alone: the Warp-GAN's try-on, without stage III
    cpvton_source_pose  the naive baseline: CP-VTON (GMM, then TOM) trained on person A with their cloth and applied
                        in person A's pose, i.e. no pose change; its GMM gets MG-VTON's matching steps and its TOM
                        the steps of MG-VTON's stages II and III together
    source_pose_answer  not a method: the exact answer in person A's pose (person A wearing the cloth, drawn by the
                        generator), the best any method that keeps the source pose can score
    mgvton_seed<S>      --noise_seeds rows: MG-VTON trained with other seeds, how much the numbers move by chance
Scores (evaluate.py --triplets): SSIM of the try-on against person B's photo, IoU of the warped mask against person
B's cloth region, stage I's parse accuracy and mean IoU against person B's parse; LPIPS where its weights are
present; on the test triplets with the person's own cloth and with another person's (test_own_cloth.txt,
test_other_cloth.txt). Everything goes under --out: data/, <row>/ (checkpoints, results, metrics), logs/, strips/
and comparison.md (the table, the strips of the same triplets in every row, the commands).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import evaluate
import flags
import smart_show_test_result
import test as test_script
from ablation import (Runner, commands_section, format_cell, prepare_out, train_and_test_gmm, train_and_test_tom,
                      train_stage, vgg_flags, write_markdown)
from mgvton import FINAL_CHECKPOINTS, STAGE_NAMES
from cp_dataset import pair_key
from mpv_dataset import TRIPLET_LIST, flat_name, read_triplets, stem, triplet_key
from smart_show_test_result import labelled_row, open_panel
from synthetic_data import generate_mpv_dataset, source_pose_answer

TEST_LISTS = (('own', 'test_own_cloth.txt'), ('other', 'test_other_cloth.txt'))
METRICS = (('ssim', 'SSIM'), ('iou', 'IoU'), ('parse_accuracy', 'parse acc'), ('parse_miou', 'parse mIoU'),
           ('lpips', 'LPIPS'))
RESULTS_NAME = 'results'   # the checkpoint-name folder of the rows whose results are gathered, not tested


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Compare MG-VTON with its baselines on synthetic two-pose data; '
                                                 'write comparison.md.', formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--out', default='multipose', help='output folder (default: %(default)s)')
    for stage, default in (('parse', 60), ('gmm', 40), ('warp', 30), ('refine', 16)):
        parser.add_argument(f'--{stage}_steps', type=flags.positive_int, default=default,
                            help=f'MG-VTON {stage} stage training steps (default: %(default)s)')
    parser.add_argument('--mgvton_ngf', type=flags.positive_int, default=32,
                        help="MG-VTON's generators' base filters (default: %(default)s; the paper's 64)")
    parser.add_argument('--mgvton_blocks', type=flags.positive_int, default=3,
                        help="MG-VTON's residual blocks (default: %(default)s; the paper's 9)")
    parser.add_argument('--batch_size', type=flags.positive_int, default=4, help='(default: %(default)s)')
    parser.add_argument('--lr', type=flags.positive_float, default=0.0002,
                        help="every row's learning rate (default: %(default)s, MG-VTON's)")
    parser.add_argument('--seed', type=flags.seed, default=0, help='(default: %(default)s)')
    parser.add_argument('--noise_seeds', type=flags.non_negative_int, default=1,
                        help='also train MG-VTON with this many other seeds (default: %(default)s)')
    parser.add_argument('--n_train', type=flags.positive_int, default=60,
                        help='training persons (default: %(default)s)')
    parser.add_argument('--n_test', type=flags.int_at_least(2), default=12, help='test persons (default: %(default)s)')
    parser.add_argument('--strip_triplets', type=flags.positive_int, default=4,
                        help='test triplets shown in the strips (default: %(default)s)')
    parser.add_argument('--workers', type=flags.non_negative_int, default=1,
                        help='data loader and scoring processes, 0: this one (default: %(default)s)')
    parser.add_argument('--gpu_ids', type=flags.gpu_ids, default='',
                        help="train.py's --gpu_ids (default: a GPU if there is one)")
    parser.add_argument('--overwrite', action='store_true', help='replace an earlier comparison in --out')
    args = parser.parse_args(argv)
    if args.seed + args.noise_seeds > flags.MAX_SEED:
        parser.error(f'--seed {args.seed} --noise_seeds {args.noise_seeds}: seeds above {flags.MAX_SEED}')
    flags.check_gpu_ids_present(parser, args.gpu_ids)
    args.tom_steps = args.warp_steps + args.refine_steps   # CP-VTON's try-on stage: MG-VTON's two together
    return args


# --------------------------------------------------------------------------- the rows

def train_mgvton(args, run, dataroot, name, seed, vgg):
    """MG-VTON's four stages in order, each on the previous one's final checkpoint; {stage: checkpoint}."""
    model = ['--data_list', TRIPLET_LIST, '--mgvton_ngf', args.mgvton_ngf, '--mgvton_blocks', args.mgvton_blocks]
    checkpoints, previous = {}, []
    for stage, steps in zip(STAGE_NAMES, (args.parse_steps, args.gmm_steps, args.warp_steps, args.refine_steps)):
        _, checkpoints[stage] = train_stage(args, run, stage, dataroot, name, seed, steps, 3,
                                            [*model, *previous, *(vgg if stage in STAGE_NAMES[2:] else [])])
        previous = ['--previous_checkpoint', checkpoints[stage]]
    return checkpoints


def test_mgvton(args, run, dataroot, name, stage, checkpoint):
    """test.py on every test triplet; the result folder."""
    results = osp.join(args.out, name, 'result')
    run(f'{name}-test', test_script, '--name', f'{name}_test', '--stage', stage, '--dataroot', dataroot,
        '--datamode', 'test', '--data_list', TRIPLET_LIST, '--checkpoint', checkpoint, '--result_dir', results,
        '--workers', args.workers, '--gpu_ids', args.gpu_ids, '--display_count', 1000000)
    return results, FINAL_CHECKPOINTS[stage]


def source_pose_view(dataroot, root):
    """A VITON-layout view (links) of the MPV set's person A photos and clothes, for CP-VTON: train_pairs.txt
    (person A, their cloth) and test_pairs_paired.txt (person A and the cloth of each test triplet)."""
    for split in ('train', 'test'):
        for folder in ('image', 'image-parse', 'pose', 'cloth', 'cloth-mask'):
            os.makedirs(osp.join(root, split, folder), exist_ok=True)
        lines = []
        for triplet in read_triplets(osp.join(dataroot, TRIPLET_LIST), split):
            person, cloth = flat_name(stem(triplet.source)), flat_name(triplet.cloth)
            links = {('image', f'{person}.jpg'): f'all/{triplet.source}',
                     ('image-parse', f'{person}.png'): f'all_parsing/{stem(triplet.source)}.png',
                     ('pose', f'{person}_keypoints.json'):
                         f'all_person_clothes_keypoints/{stem(triplet.source)}_keypoints.json',
                     ('cloth', cloth): f'all/{triplet.cloth}',
                     ('cloth-mask', cloth): f'all/{stem(triplet.cloth)}_mask.jpg'}
            for (folder, file_name), source in links.items():
                link = osp.join(root, split, folder, file_name)
                if not osp.lexists(link):
                    os.symlink(osp.abspath(osp.join(dataroot, source)), link)
            lines.append(f'{person}.jpg {cloth}\n')
        with open(osp.join(root, 'train_pairs.txt' if split == 'train' else 'test_pairs_paired.txt'), 'w') as f:
            f.writelines(lines)
    return root


def gathered_results(args, name, dataroot, file_of):
    """<out>/<name>/result/results/test/<kind>/<triplet key> linked to file_of(kind, triplet) for each test triplet
    (kinds 'try-on' and 'warp-mask'; file_of returns None for a kind the row has not); the result folder."""
    results = osp.join(args.out, name, 'result')
    for triplet in read_triplets(osp.join(dataroot, TRIPLET_LIST), 'test'):
        for kind in ('try-on', 'warp-mask'):
            source = file_of(kind, triplet)
            if source is not None:
                folder = osp.join(results, RESULTS_NAME, 'test', kind)
                os.makedirs(folder, exist_ok=True)
                os.symlink(osp.abspath(source), osp.join(folder, triplet_key(triplet)))
    return results, RESULTS_NAME


def cpvton_source_pose(args, run, dataroot, name, seed, vgg):
    """CP-VTON trained and applied in person A's pose; its try-ons and warps gathered under the triplet keys."""
    view = source_pose_view(dataroot, osp.join(args.out, name, 'view'))
    tom_dataroot = train_and_test_gmm(args, run, view, (), name, seed)
    train_and_test_tom(args, run, tom_dataroot, (), name, seed, vgg)
    tested = osp.join(args.out, name, 'result')
    files = {'try-on': osp.join(tested, 'tom_final.pth', 'test', 'try-on'),
             'warp-mask': osp.join(tested, 'gmm_final.pth', 'test', 'warp-mask')}
    return gathered_results(args, name, dataroot, lambda kind, triplet: osp.join(
        files[kind], pair_key(f'{flat_name(stem(triplet.source))}.jpg', flat_name(triplet.cloth))))


def evaluate_row(args, run, dataroot, name, results, checkpoint_name):
    """{'own': report, 'other': report} of evaluate.py --triplets on the two test lists."""
    reports = {}
    for clothes, list_name in TEST_LISTS:
        path = osp.join(args.out, name, f'metrics_{clothes}.json')
        run(f'{name}-evaluate-{clothes}', evaluate, '--dataroot', dataroot, '--datamode', 'test', '--triplets',
            list_name, '--result_dir', results, '--mgvton_checkpoint_name', checkpoint_name, '--metrics',
            ','.join(metric for metric, _ in METRICS), '--workers', args.workers, '--out', path)
        with open(path) as f:
            reports[clothes] = json.load(f)
    return reports


def run_rows(args):
    """Train, test and score every row: {name: (description, steps, results, checkpoint name, reports, seconds)}."""
    run = Runner(args.out)
    dataroot = osp.join(args.out, 'data')
    print(f'synthetic two-pose data -> {dataroot}', flush=True)
    generate_mpv_dataset(dataroot, args.n_train, args.n_test, args.seed)
    vgg = vgg_flags()
    mgvton_steps = f'{args.parse_steps} + {args.gmm_steps} + {args.warp_steps} + {args.refine_steps}'
    done = {}

    def finish(name, description, steps, start, results, checkpoint_name):
        reports = evaluate_row(args, run, dataroot, name, results, checkpoint_name)
        done[name] = (description, steps, results, checkpoint_name, reports, time.time() - start)

    for offset in range(args.noise_seeds + 1):
        name = 'mgvton' if offset == 0 else f'mgvton_seed{args.seed + offset}'
        print(f'[{name}]', flush=True)
        start = time.time()
        checkpoints = train_mgvton(args, run, dataroot, name, args.seed + offset, vgg)
        finish(name, 'MG-VTON, its four stages' + (f', seed {args.seed + offset}: chance alone' if offset else ''),
               mgvton_steps, start, *test_mgvton(args, run, dataroot, name, 'MGVTON_REFINE',
                                                 checkpoints['MGVTON_REFINE']))
        if offset == 0:
            print('[mgvton_no_refine]', flush=True)
            start = time.time()
            finish('mgvton_no_refine', "MG-VTON without stage III: its Warp-GAN's try-on (the same stages I and II)",
                   f'{args.parse_steps} + {args.gmm_steps} + {args.warp_steps}', start,
                   *test_mgvton(args, run, dataroot, 'mgvton_no_refine', 'MGVTON_WARP', checkpoints['MGVTON_WARP']))
    print('[cpvton_source_pose]', flush=True)
    start = time.time()
    finish('cpvton_source_pose', "CP-VTON in person A's pose (no pose change)",
           f'GMM {args.gmm_steps} + TOM {args.tom_steps}', start,
           *cpvton_source_pose(args, run, dataroot, 'cpvton_source_pose', args.seed, vgg))
    start = time.time()
    finish('source_pose_answer', "the exact try-on in person A's pose (not a method: the bound of any method that "
           'keeps the source pose)', '-', start, *gathered_results(
               args, 'source_pose_answer', dataroot, lambda kind, triplet: osp.join(
                   dataroot, 'all', source_pose_answer(triplet.target)) if kind == 'try-on' else None))
    return done, run.commands, dataroot


# --------------------------------------------------------------------------- the report

def value_of(report, metric):
    entry = report['metrics'].get(metric, {})
    return entry.get('value') if 'unavailable' not in entry else None


def comparison_table(done):
    """Markdown: one row per row, each metric on own and other clothes, differences to mgvton."""
    reference = done['mgvton'][4]
    shown = [(metric, title) for metric, title in METRICS
             if any(value_of(reports[clothes], metric) is not None for *_, reports, _ in done.values()
                    for clothes, _ in TEST_LISTS)]
    sizes = {clothes: len(reference[clothes]['per_triplet']) for clothes, _ in TEST_LISTS}
    header = ['row'] + [f'{title} {clothes} (n={sizes[clothes]})' for _, title in shown for clothes, _ in TEST_LISTS]
    lines = ['| ' + ' | '.join(header + ['steps', 'minutes']) + ' |', '|' + '---|' * (len(header) + 2)]
    for name, (_, steps, _, _, reports, seconds) in done.items():
        cells = [name]
        for metric, _ in shown:
            for clothes, _ in TEST_LISTS:
                base = value_of(reference[clothes], metric) if name != 'mgvton' else None
                cells.append(format_cell(value_of(reports[clothes], metric), base, metric == 'lpips'))
        lines.append('| ' + ' | '.join(cells + [steps, f'{seconds / 60:.1f}']) + ' |')
    return '\n'.join(lines)


def render_strips(args, done, dataroot):
    """strips/inputs.png (person A, target pose, cloth, person B of the first test triplets of each list) and
    strips/<row>.png (each row's try-ons of the same triplets); paths relative to --out."""
    folder = osp.join(args.out, 'strips')
    os.makedirs(folder, exist_ok=True)
    chosen = []
    for _, list_name in TEST_LISTS:
        chosen += read_triplets(osp.join(dataroot, list_name), 'test')[:max(1, args.strip_triplets // 2)]
    opt = argparse.Namespace(dataroot=dataroot, datamode='test', result_dir='', mgvton_checkpoint_name='')
    panels, labels = [], []
    for triplet in chosen:
        files = smart_show_test_result.TripletFiles(opt, triplet)
        panels += [open_panel(files.source), smart_show_test_result.target_pose_panel(files), open_panel(files.cloth),
                   open_panel(files.person)]
        labels += ['person A', 'target pose', 'cloth', 'person B (answer)']
    paths = {'inputs': 'strips/inputs.png'}
    labelled_row(panels, labels).save(osp.join(args.out, paths['inputs']))
    for name, (_, _, results, checkpoint_name, _, _) in done.items():
        tryons = [open_panel(osp.join(results, checkpoint_name, 'test', 'try-on', triplet_key(t))) for t in chosen]
        paths[name] = f'strips/{name}.png'
        labelled_row(tryons, [f'try-on {stem(t.target).split("/")[-1]}' for t in chosen]).save(
            osp.join(args.out, paths[name]))
    return paths


def write_report(args, done, commands, dataroot, total_seconds):
    table = comparison_table(done)
    strips = render_strips(args, done, dataroot)
    lines = [
        '# MG-VTON: comparison on synthetic two-pose data', '',
        f'Data: synthetic_data.py --layout mpv, {args.n_train} train / {args.n_test} test persons, seed {args.seed}. '
        f'Batch {args.batch_size}, lr {args.lr}, MG-VTON with --mgvton_ngf {args.mgvton_ngf} --mgvton_blocks '
        f'{args.mgvton_blocks}. Total time {total_seconds / 60:.1f} min.', '',
        "Each try-on against person B's photo (the target pose); own: the person's own cloth, other: another "
        "test person's (its answer drawn by the generator). SSIM: skimage, RGB; IoU: the warped mask against person "
        "B's cloth region; parse acc / mIoU: stage I's parse against person B's. In brackets: the difference to "
        'mgvton (↑ better, ↓ worse).', '', table, '', '## Rows', '']
    lines += [f'- **{name}**: {description}' for name, (description, *_) in done.items()]
    lines += ['', '## The same test triplets in every row', '', f'![inputs]({strips["inputs"]})', '']
    for name in done:
        lines += [f'**{name}**', '', f'![{name}]({strips[name]})', '']
    lines += commands_section('multipose_comparison.py', commands)
    return write_markdown(osp.join(args.out, 'comparison.md'), lines), table


def main(argv=None):
    args = parse_args(argv)
    prepare_out(args)
    start = time.time()
    done, commands, dataroot = run_rows(args)
    path, table = write_report(args, done, commands, dataroot, time.time() - start)
    print(f'\n{table}\n\nwrote {path} ({(time.time() - start) / 60:.1f} min)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
