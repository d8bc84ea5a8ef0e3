"""Render the test results of a CP-VTON run (or of MG-VTON's, --triplets) as comparison strips.

    python smart_show_test_result.py                      # paths of the step scripts
    python smart_show_test_result.py --dataroot demo/data --result_dir demo/result \
        --out_simple demo/result_simple --out_verbose demo/result_verbose --annotate_ssim

Worst cases (--worst K): the K same-cloth pairs of --paired_list with the lowest SSIM of the try-on against the
person photo (--worst_by ssim) or IoU of the warped mask against the cloth region (--worst_by iou), scored as
evaluate.py scores them, in each difficulty subset of evaluate.py (all pairs, textured clothes, occluded persons):
    result_worst/<subset>/<rank>_<metric><score>_<pair>.png   the verbose strip, rank and score written on it,
                                                            e.g. all/01_ssim0.412_000001_0_000001_1.png
Only that is written in this mode; a subset folder that already holds files is refused, not mixed with new strips.

For every pair of --data_list:
    result_simple/src_<person>_dst_<cloth>.png   one row of 7 panels (192x256 each): cloth, cloth mask,
                                                 person, person parse (LIP colours), warped cloth,
                                                 warped mask, try-on
    result_verbose/src_<person>_dst_<cloth>.png  two labelled rows: the inputs (cloth, cloth mask, person,
                                                 parse, pose) and the outputs (warped cloth, warped mask,
                                                 warp over person, try-on, person)
Each pair's results are read from GMM's and TOM's test folders under the pair's key
(cp_dataset.pair_key), so a cloth worn by several persons is shown correctly for each.

MG-VTON (--triplets LIST, the MPV layout): for every --datamode triplet of the list
    result_simple/<triplet key stem>.png          7 panels: person A, the target pose (person B's skeleton), cloth,
                                                 synthesised parse, warped cloth, try-on, person B (the answer)
    result_verbose/<triplet key stem>.png         the inputs (person A, its parse, target pose, cloth, cloth mask)
                                                 and every stage's result (parse, warped cloth, Warp-GAN, try-on,
                                                 person B)
read from the results of --mgvton_checkpoint_name (mpv_dataset.triplet_key names them).

--html also writes <out_simple>/index.html, a static gallery page of the strips (gallery.py), with the scores,
subsets and metric table of evaluate.py's metrics.json where --metrics names it; the pairs of that report's lists
(the same-cloth pairs, which alone have scores) are then rendered too.
"""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import flags
from cp_dataset import LIP_PALETTE, DataError, DataLayout, ResultLayout, file_in, pair_key, read_keypoints, read_pairs
from evaluate import RunLayout, add_threshold_arguments, default_tryon_dir, default_warp_mask_dir, per_pair_scores
from metrics import ssim_score
from mpv_dataset import MPVLayout, parse_result_name, read_triplets, triplet_key
from progress import progress
from subsets import difficulty_subsets
from visualization import save_image_atomic

PANEL_SIZE = (192, 256)  # width, height
LABEL_HEIGHT = 14
WORST_SUBSETS = ('all', 'textured', 'occluded')   # 'all', then subsets.difficulty_subsets' subsets
# Limbs of the COCO-18 skeleton, drawn in the verbose strip's pose panel.
COCO_LIMBS = ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
              (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))


def get_opt(argv=None):
    parser = argparse.ArgumentParser(description='Render CP-VTON test results as comparison strips.',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--datamode', default='test')
    parser.add_argument('--data_list', default='test_pairs.txt')
    parser.add_argument('--result_dir', default='result')
    parser.add_argument('--gmm_checkpoint_name', default='gmm_final.pth',
                        help='file name of the GMM checkpoint the results were made with')
    parser.add_argument('--tom_checkpoint_name', default='tom_final.pth')
    parser.add_argument('--out_simple', default='result_simple')
    parser.add_argument('--out_verbose', default='result_verbose', help="'' to skip the verbose strips")
    parser.add_argument('--annotate_ssim', action='store_true',
                        help="write each pair's try-on SSIM against the person photo on its strips (a ground-truth "
                             "score for same-cloth pairs only)")
    parser.add_argument('--worst', type=flags.positive_int, metavar='K',
                        help='worst-cases mode: render only the K same-cloth pairs with the lowest --worst_by score '
                             'in each difficulty subset (all, textured, occluded) into <out_worst>/<subset>/')
    parser.add_argument('--worst_by', choices=('ssim', 'iou'), default='ssim',
                        help="worst cases by the try-on's SSIM or the warped mask's IoU, as evaluate.py scores "
                             "them (default: %(default)s)")
    parser.add_argument('--out_worst', default='result_worst')
    parser.add_argument('--paired_list', default='test_pairs_paired.txt',
                        help='the same-cloth pairs (person photo = ground truth) that worst-cases mode ranks '
                             '(default: %(default)s)')
    add_threshold_arguments(parser)
    parser.add_argument('--workers', type=flags.non_negative_int, default=min(4, os.cpu_count() or 1),
                        help='processes that score pairs in worst-cases mode, 0: this one (default: %(default)s)')
    parser.add_argument('--html', action='store_true',
                        help='also write <out_simple>/index.html, a gallery page of the strips (see gallery.py)')
    parser.add_argument('--metrics', metavar='METRICS_JSON',
                        help="evaluate.py's metrics.json of these results: the gallery's scores, subsets and table; "
                             "the pairs of its lists get strips too (with --html)")
    parser.add_argument('--run_name', default='this run', help="the run's name on the gallery page (default: "
                                                               "%(default)s)")
    parser.add_argument('--triplets', metavar='LIST',
                        help='MG-VTON results (MPV layout, --dataroot the MPV folder, --datamode its split): the '
                             'triplet list under --dataroot; one strip per triplet of the split')
    parser.add_argument('--mgvton_checkpoint_name', default='mgvton_refine_final.pth',
                        help='with --triplets: file name of the checkpoint test.py ran (default: %(default)s)')
    opt = parser.parse_args(argv)
    if opt.triplets and (opt.worst is not None or opt.html):
        parser.error('--worst and --html rank and show CP-VTON pairs lists; with --triplets only the strips are made')
    if opt.metrics and not opt.html:
        parser.error('--metrics is read by the gallery page: add --html')
    if opt.html and opt.worst is not None:
        parser.error('--html makes a page of the strips of --data_list, not of the worst cases: drop one')
    return opt


def strip_name(im_name, c_name):
    return f'src_{osp.splitext(im_name)[0]}_dst_{osp.splitext(c_name)[0]}.png'


def open_panel(path):
    """An RGB panel of PANEL_SIZE from an image file; a grey panel with a cross where the file is missing."""
    if not osp.exists(path):
        panel = Image.new('RGB', PANEL_SIZE, (128, 128, 128))
        draw = ImageDraw.Draw(panel)
        draw.line((0, 0) + PANEL_SIZE, fill=(200, 0, 0), width=3)
        draw.line((0, PANEL_SIZE[1], PANEL_SIZE[0], 0), fill=(200, 0, 0), width=3)
        return panel
    image = Image.open(path).convert('RGB')
    return image if image.size == PANEL_SIZE else image.resize(PANEL_SIZE, Image.BILINEAR)


def parse_panel(path):
    """The LIP label map coloured with the LIP palette."""
    if not osp.exists(path):
        return open_panel(path)
    labels = np.asarray(Image.open(path))
    if labels.ndim == 3:             # already a colour rendering
        return open_panel(path)
    palette = np.asarray(LIP_PALETTE, dtype=np.uint8)
    return Image.fromarray(palette[np.clip(labels, 0, len(palette) - 1)]).resize(PANEL_SIZE, Image.NEAREST)


def pose_panel(pose_path, person, photo_size):
    """The person panel, darkened, with the COCO-18 skeleton drawn over it. The keypoints are in the
    coordinates of the person photo, of ``photo_size`` (W, H), and are scaled to the panel."""
    panel = Image.blend(person, Image.new('RGB', PANEL_SIZE), 0.5)
    if not osp.exists(pose_path):
        return panel
    keypoints = read_keypoints(pose_path)
    scale_x, scale_y = PANEL_SIZE[0] / photo_size[0], PANEL_SIZE[1] / photo_size[1]
    points = [(x * scale_x, y * scale_y) for x, y, _ in keypoints]
    draw = ImageDraw.Draw(panel)
    visible = [x > 1 and y > 1 for x, y, _ in keypoints]   # OpenPose writes (0, 0) for a missed keypoint
    for a, b in COCO_LIMBS:
        if a < len(points) and b < len(points) and visible[a] and visible[b]:
            draw.line(points[a] + points[b], fill=(255, 220, 0), width=2)
    for (x, y), seen in zip(points, visible):
        if seen:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(255, 60, 60))
    return panel


def photo_size(path):
    """(W, H) of the image at ``path``; PANEL_SIZE where it is missing (its panel is then a crossed grey one)."""
    if not osp.exists(path):
        return PANEL_SIZE
    with Image.open(path) as image:
        return image.size


def hstack(panels):
    strip = Image.new('RGB', (PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]))
    for i, panel in enumerate(panels):
        strip.paste(panel, (i * PANEL_SIZE[0], 0))
    return strip


def labelled_row(panels, labels):
    """Panels side by side with a caption above each."""
    row = Image.new('RGB', (PANEL_SIZE[0] * len(panels), PANEL_SIZE[1] + LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(row)
    for i, (panel, label) in enumerate(zip(panels, labels)):
        draw.text((i * PANEL_SIZE[0] + 3, 1), label, fill=(0, 0, 0))
        row.paste(panel, (i * PANEL_SIZE[0], LABEL_HEIGHT))
    return row


def vstack(rows):
    canvas = Image.new('RGB', (max(r.width for r in rows), sum(r.height for r in rows)), (255, 255, 255))
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    return canvas


class PairFiles:
    """Paths of everything shown for one pair: its data (cp_dataset.DataLayout) and its results
    (cp_dataset.ResultLayout of the warp and of the try-on)."""

    def __init__(self, opt, im_name, c_name):
        data = DataLayout(Path(opt.dataroot), opt.datamode)
        warps = ResultLayout(opt.result_dir, opt.gmm_checkpoint_name, opt.datamode)
        tryons = ResultLayout(opt.result_dir, opt.tom_checkpoint_name, opt.datamode)
        self.cloth = str(data.cloth(c_name))
        self.cloth_mask = str(data.cloth_mask(c_name))
        self.person = str(data.person_image(im_name))
        self.parse = str(data.parse_map(im_name))
        self.pose = str(data.pose(im_name))
        self.warp_cloth = str(warps.file('warp-cloth', im_name, c_name))
        self.warp_mask = str(warps.file('warp-mask', im_name, c_name))
        self.tryon = str(tryons.file('try-on', im_name, c_name))


def simple_strip(files):
    """7 panels: cloth, cloth mask, person, parse, warped cloth, warped mask, try-on."""
    return hstack([open_panel(files.cloth), open_panel(files.cloth_mask), open_panel(files.person),
                   parse_panel(files.parse), open_panel(files.warp_cloth), open_panel(files.warp_mask),
                   open_panel(files.tryon)])


def verbose_strip(files):
    """Row 1: the inputs; row 2: the outputs, with the warp laid over the person."""
    person = open_panel(files.person)
    warped = open_panel(files.warp_cloth)
    inputs = labelled_row([open_panel(files.cloth), open_panel(files.cloth_mask), person, parse_panel(files.parse),
                           pose_panel(files.pose, person, photo_size(files.person))],
                          ['cloth', 'cloth mask', 'person', 'parse', 'pose'])
    outputs = labelled_row([warped, open_panel(files.warp_mask), Image.blend(warped, person, 0.5),
                            open_panel(files.tryon), person],
                           ['warped cloth', 'warped mask', 'warp over person', 'try-on', 'person'])
    return vstack([inputs, outputs])


class TripletFiles:
    """Paths of everything shown for one MG-VTON triplet: its data (mpv_dataset.MPVLayout) and the results of
    --mgvton_checkpoint_name (cp_dataset.ResultLayout, named by mpv_dataset.triplet_key)."""

    def __init__(self, opt, triplet):
        data = MPVLayout(Path(opt.dataroot))
        results = ResultLayout(opt.result_dir, opt.mgvton_checkpoint_name, opt.datamode)
        key = triplet_key(triplet)
        self.source, self.source_parse = str(data.photo(triplet.source)), str(data.parse_map(triplet.source))
        self.person, self.pose = str(data.photo(triplet.target)), str(data.pose(triplet.target))
        self.cloth, self.cloth_mask = str(data.photo(triplet.cloth)), str(data.cloth_mask(triplet.cloth))
        self.parse = str(file_in(results.kind_dir('parse'), parse_result_name(key)))
        kinds = ('warp-cloth', 'warp-mask', 'coarse-person', 'try-on')
        self.warp_cloth, self.warp_mask, self.coarse, self.tryon = (str(file_in(results.kind_dir(kind), key))
                                                                    for kind in kinds)


def target_pose_panel(files):
    """Person B's skeleton on grey: the pose asked for, without the photo that is the answer."""
    return pose_panel(files.pose, Image.new('RGB', PANEL_SIZE, (255, 255, 255)), photo_size(files.person))


def multi_pose_simple_strip(files):
    """7 panels: person A, target pose, cloth, synthesised parse, warped cloth, try-on, person B (the answer)."""
    return hstack([open_panel(files.source), target_pose_panel(files), open_panel(files.cloth),
                   parse_panel(files.parse), open_panel(files.warp_cloth), open_panel(files.tryon),
                   open_panel(files.person)])


def multi_pose_verbose_strip(files):
    """Row 1: the inputs and person A's parse; row 2: every stage's result and person B."""
    inputs = labelled_row([open_panel(files.source), parse_panel(files.source_parse), target_pose_panel(files),
                           open_panel(files.cloth), open_panel(files.cloth_mask)],
                          ['person A', 'parse A', 'target pose', 'cloth', 'cloth mask'])
    outputs = labelled_row([parse_panel(files.parse), open_panel(files.warp_cloth), open_panel(files.coarse),
                            open_panel(files.tryon), open_panel(files.person)],
                           ['synthesised parse', 'warped cloth', 'Warp-GAN', 'try-on', 'person B'])
    return vstack([inputs, outputs])


def write_triplet_strips(opt):
    """The strips of every --datamode triplet of --triplets: <out_simple>/<key stem>.png (and <out_verbose>/)."""
    triplets = read_triplets(osp.join(opt.dataroot, opt.triplets), opt.datamode)
    outputs = [(opt.out_simple, multi_pose_simple_strip)]
    outputs += [(opt.out_verbose, multi_pose_verbose_strip)] if opt.out_verbose else []
    incomplete = 0
    for folder, _ in outputs:
        os.makedirs(folder, exist_ok=True)
    for triplet in progress(triplets, desc='strips', unit='triplet', file=sys.stdout):
        files = TripletFiles(opt, triplet)
        incomplete += not all(osp.exists(p) for p in (files.parse, files.warp_cloth, files.tryon))
        for folder, render in outputs:
            save_image_atomic(render(files), file_in(folder, f'{osp.splitext(triplet_key(triplet))[0]}.png'))
    print(f'wrote {len(triplets)} strips to {opt.out_simple}' + (f' and {opt.out_verbose}' if opt.out_verbose else ''))
    if incomplete:
        print(f'warning: {incomplete} triplets lack the results of {opt.mgvton_checkpoint_name} (crossed grey '
              f'panels); run test.py on --data_list {opt.triplets} --datamode {opt.datamode} first '
              f'(scripts/mgvton/step5-test.sh)')


def tryon_ssim(files):
    """SSIM of the pair's try-on against the person photo (evaluate.py's setting), None without a try-on."""
    if not osp.exists(files.tryon):
        return None
    return ssim_score(np.asarray(open_panel(files.tryon)), np.asarray(open_panel(files.person)))


def annotate(strip, text):
    """The strip with ``text`` on a white band in its top-left corner."""
    draw = ImageDraw.Draw(strip)
    left, top, right, bottom = draw.textbbox((4, 4), text)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(255, 255, 255))
    draw.text((4, 4), text, fill=(0, 0, 0))
    return strip


def render_strips(opt, pairs):
    """Write the strips of every pair [(im_name, c_name)]; returns the number of pairs, and of those whose result
    files were missing."""
    outputs = [(opt.out_simple, simple_strip)] + ([(opt.out_verbose, verbose_strip)] if opt.out_verbose else [])
    for folder, _ in outputs:
        os.makedirs(folder, exist_ok=True)
    incomplete = 0
    for im_name, c_name in progress(pairs, desc='strips', unit='pair', file=sys.stdout):
        files = PairFiles(opt, im_name, c_name)
        incomplete += not all(osp.exists(p) for p in (files.warp_cloth, files.warp_mask, files.tryon))
        ssim = tryon_ssim(files) if opt.annotate_ssim else None
        for folder, render in outputs:
            strip = render(files)
            if ssim is not None:
                strip = annotate(strip, f'SSIM {ssim:.3f}')
            save_image_atomic(strip, file_in(folder, strip_name(im_name, c_name)))
    return len(pairs), incomplete


def worst_cases(scores, keys, count):
    """The `count` pair keys among `keys` with the lowest score ({pair_key: score}), ascending (ties by key)."""
    return sorted(keys, key=lambda key: (scores[key], key))[:count]


def worst_strip_name(rank, metric, score, key):
    """E.g. '01_ssim0.412_000001_0_000001_1.png': sorts by rank, and says the score without opening the file."""
    return f'{rank:02d}_{metric}{score:.3f}_{osp.splitext(key)[0]}.png'


def refuse_used_folders(folders):
    """DataError if a folder already holds files: strips of an earlier run would mix with the new ranking."""
    used = [folder for folder in folders if osp.isdir(folder) and os.listdir(folder)]
    if used:
        raise DataError(f'{used[0]} already holds files; remove it or pass another --out_worst')


def render_worst_cases(opt):
    """Write the worst-cases strips (see the module docstring). Returns ({subset: strips written}, number of pairs
    of --paired_list left out because their result file is missing)."""
    layout = RunLayout(Path(opt.dataroot), opt.datamode, default_tryon_dir(opt), default_warp_mask_dir(opt))
    result_of = layout.tryon if opt.worst_by == 'ssim' else layout.warp_mask
    listed = read_pairs(osp.join(opt.dataroot, opt.paired_list))
    pairs = [pair for pair in listed if result_of(*pair).is_file()]
    folders = {subset: osp.join(opt.out_worst, subset) for subset in WORST_SUBSETS}
    refuse_used_folders(folders.values())
    scores = {key: row[opt.worst_by]
              for key, row in per_pair_scores(layout, pairs, [opt.worst_by], workers=opt.workers).items()}
    subsets = {'all': list(scores), **difficulty_subsets(opt.dataroot, opt.datamode, pairs, opt.textured_threshold,
                                                         opt.occluded_threshold, opt.workers)}
    pair_of = {pair_key(*pair): pair for pair in pairs}
    written = {}
    for subset, keys in subsets.items():
        os.makedirs(folders[subset], exist_ok=True)
        worst = worst_cases(scores, keys, opt.worst)
        for rank, key in enumerate(worst, 1):
            strip = annotate(verbose_strip(PairFiles(opt, *pair_of[key])),
                             f'{subset} #{rank} of {len(keys)}: {opt.worst_by.upper()} {scores[key]:.3f}')
            save_image_atomic(strip, file_in(folders[subset], worst_strip_name(rank, opt.worst_by, scores[key], key)))
        written[subset] = len(worst)
    return written, len(listed) - len(pairs)


def write_worst_cases(opt):
    written, missing = render_worst_cases(opt)
    print(f'wrote the worst cases by {opt.worst_by} to {opt.out_worst}: ' +
          ', '.join(f'{count} {subset}' for subset, count in written.items()))
    if missing:
        print(f'warning: {missing} pairs of {opt.paired_list} lack results and were not ranked')


def write_strips(opt, pairs):
    count, incomplete = render_strips(opt, pairs)
    print(f'wrote {count} strips to {opt.out_simple}' + (f' and {opt.out_verbose}' if opt.out_verbose else ''))
    if incomplete:
        print(f'warning: {incomplete} pairs lack GMM or TOM results (shown as crossed grey panels); '
              f'run steps 2 and 5 on {opt.data_list} first')


def gallery_run(opt, pairs):
    """The gallery's run of these strips; reads --metrics now, so that a bad one fails before any strip is made.
    Its pairs: those of --data_list, then those of the report's pair lists: VITON's test_pairs.txt holds no
    same-cloth pair, and only those have scores."""
    import gallery   # here, not at the top: gallery imports strip_name from this module
    report = gallery.load_report(opt.metrics) if opt.metrics else None
    listed = gallery.listed_pairs(report) if report else []
    return gallery.Run(opt.run_name, Path(opt.out_simple), list(dict.fromkeys(pairs + listed)), report)


def write_gallery_page(run):
    import gallery
    page = osp.join(run.strips_dir, 'index.html')
    gallery.write_gallery([run], page)
    print(f'wrote the gallery page {page}' + ('' if run.report else ' (no scores: pass --metrics METRICS_JSON)'))


def main(argv=None):
    opt = get_opt(argv)
    try:
        if opt.worst is not None:
            write_worst_cases(opt)
        elif opt.triplets:
            write_triplet_strips(opt)
        else:
            pairs = read_pairs(osp.join(opt.dataroot, opt.data_list))
            run = gallery_run(opt, pairs) if opt.html else None
            write_strips(opt, run.pairs if run else pairs)
            if run:
                write_gallery_page(run)
    except DataError as error:   # the message names the file and the fix
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
