"""Check a VITON-format dataset against its pairs file (or an MPV-layout one against its triplet list, for
MG-VTON) before any training or test step.

Every problem is collected, not only the first, and reported grouped by kind:

* errors: what no load-time fix can repair (malformed pairs lines, names in them that are paths
  rather than file names (cp_dataset.name_problem), missing or unreadable files,
  parse maps that are not LIP label maps, pose files without a person or with an unusable
  keypoint count), each naming the file, the problem and the fix;
* warnings: what ``CPDataset`` fixes in memory when it loads a file (the ``*_fixes`` functions of
  cp_dataset.py, so the check and the loader cannot disagree). Files on disk are never changed.

Speed: photos and masks are only opened (Pillow reads the header: mode and size) and their last
bytes compared with the format's end marker, which a truncated file lacks; only files without it
are decoded. Parse maps are decoded (their labels must be read) and pose JSON parsed. A few
threads overlap file reads and PNG decoding. Measured on 14,221 pairs (71,105 files, copies of
the real VITON samples, files in the page cache): about 9 s of CPU time.

    python data_check.py --dataroot data --datamode train --data_list train_pairs.txt --stage GMM
    python data_check.py --dataroot mpv --datamode train --data_list all_poseA_poseB_clothes_0607.txt \
        --stage MGVTON_PARSE                 # MG-VTON: the MPV layout and its triplet list

prints the report and exits with 1 when there are errors.
"""
import argparse
import os
import os.path as osp
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from PIL import Image

import flags
from cp_dataset import (BODY_SHAPE_SOURCES, DataFileError, FileProblem, cloth_file_name, cloth_folders,
                        cpvton_data_spec, file_in, keypoint_fixes, mask_fixes, pair_key, parse_file_name, parse_fixes,
                        parse_labels, photo_fixes, pose_file_name, read_pose_keypoints, scan_pairs, shown,
                        warps_named_by_cloth)
from mgvton import MGVTON_DATA
from mgvton import STAGE_NAMES as MGVTON_STAGES
from mpv_dataset import PARSE_FOLDER, PHOTO_FOLDER, POSE_FOLDER, MPVLayout, cloth_mask_fixes, scan_triplets

# The bytes an intact file of the format ends with: JPEG's EOI marker, PNG's IEND chunk.
END_MARKERS = {'JPEG': b'\xff\xd9', 'PNG': b'IEND\xaeB`\x82'}
# Pillow parses JPEG headers in Python, holding the GIL, so more threads mostly contend for it
# (measured: 6 threads on 2 cores doubled the CPU time of the check); a few threads overlap the
# file reads and PNG decoding, which release it. One task per file would cost more in thread
# hand-overs than the header checks themselves.
CHECK_THREADS = min(4, os.cpu_count() or 1)
FILES_PER_TASK = 256
WARNING_EXAMPLES = 5   # files listed per kind of warning; all errors are listed
WARP_FIX = ('run test.py --stage GMM on this split and pairs file first: it writes warp-cloth/ and warp-mask/, '
            'named by the pair key <person stem>_<cloth name> (warps named by the cloth, as the original code '
            'wrote them, are read only from a folder that holds no pair-keyed ones)')


def file_ends_with(path, marker):
    with open(path, 'rb') as f:
        size = f.seek(0, 2)
        f.seek(max(size - len(marker), 0))
        return f.read() == marker


def ensure_decodable(image, path):
    """Decode the image only when its file lacks its format's end marker.

    A truncated file (an interrupted copy or download, the usual damage) lacks it and an intact
    one has it, so the slow full decode is spent on suspects only (an intact file with bytes
    after the marker decodes fine). Damage inside the compressed data of a JPEG that ends
    properly goes unnoticed; decoding every photo and mask doubled the time of the whole check.
    """
    marker = END_MARKERS.get(image.format)
    if marker is None or not file_ends_with(path, marker):
        image.load()


# Checks of one file: each returns the file's load-time fixes and raises DataFileError, or
# OSError for a file that is missing or cannot be read.

def check_image(path, find_fixes):
    with Image.open(path) as image:
        fixes = find_fixes(image)
        ensure_decodable(image, path)
    return fixes


def check_person_image(path, size):
    return check_image(path, lambda image: photo_fixes(image, path, size, scales_keypoints=True))


def check_cloth_image(path, size):
    return check_image(path, lambda image: photo_fixes(image, path, size))


def check_mask(path, size):
    return check_image(path, lambda image: mask_fixes(image, path, size))


def check_parse_map(path, size):
    with Image.open(path) as image:
        fixes = parse_fixes(image, path, size)
        parse_labels(image, fixes, path)   # decodes: a colour rendering's colours and the labels must be read
    return fixes


def check_pose(path, size):
    return keypoint_fixes(read_pose_keypoints(path), path)


@dataclass(frozen=True)
class FileCheck:
    folder: str
    check: Callable          # (path, size) -> [LoadFix]
    missing_fix: str
    kind: str = ''           # what the file is, where its folder does not say (MPV's all/): 'person photo'


FILE_CHECKS = {file_check.folder: file_check for file_check in (
    FileCheck('image', check_person_image, 'add the person photo, or remove its pairs from the pairs file'),
    FileCheck('image-parse', check_parse_map, 'run a LIP human parser on the person photo and save its label map '
                                              '(pixel value = label 0-19) as <person stem>.png'),
    FileCheck('pose', check_pose, 'run OpenPose (COCO-18 or BODY_25) on the person photo; it writes '
                                  '<person stem>_keypoints.json'),
    FileCheck('image-mask', check_mask, 'make the person\'s body mask (white body on black) as <person stem>.png, '
                                        'as CP-VTON+\'s body_binary_masking.py does, or train with '
                                        '--body_shape parse'),
    FileCheck('cloth', check_cloth_image, 'add the in-shop cloth photo, or remove its pairs from the pairs file'),
    FileCheck('cloth-mask', check_mask, 'make the cloth\'s mask (white cloth on black) under the cloth\'s file name'),
    FileCheck('warp-cloth', check_cloth_image, WARP_FIX),
    FileCheck('warp-mask', check_mask, WARP_FIX),
)}


def run_check(path, file_check, size):
    """(errors, warnings) of one file."""
    try:
        return [], file_check.check(path, size)
    except FileNotFoundError:
        what = file_check.kind or f'{file_check.folder} file'
        return [FileProblem(f'missing {what}', path, 'file not found', file_check.missing_fix)], []
    except DataFileError as error:
        return [error.problem], []
    except (OSError, SyntaxError) as error:   # Pillow reports some broken PNG chunks as SyntaxError
        return [FileProblem('corrupt or unreadable file', path, f'cannot be read ({error})',
                            'the file is damaged or of another type: copy or export it again from its source')], []


WARP_RESULTS_FIX = ('run the warp of these pairs first (VITON: step 3, shape_context.py), or pass the folder '
                    'that holds its warp-cloth/ and warp-mask/')


def files_to_check(opt, data_path, pairs, log=print, spec=None):
    """{path: FileCheck} of every file the pairs read (``spec``: the stage's DataSpec, CP-VTON's GMM or TOM by
    opt.stage when None), each once, in the order of the pairs file."""
    spec = spec or cpvton_data_spec(opt.stage)
    in_shop = spec.cloth == 'in-shop'
    cloth_dir, mask_dir = cloth_folders(in_shop)
    # The dataset's own rules for file names (a dataset can't be built here, as its constructor stops
    # at the first bad pairs line).
    by_cloth = not in_shop and warps_named_by_cloth(data_path, pairs, log)
    warp_results = osp.abspath(getattr(opt, spec.warps_from)) if spec.warps_from else None
    files = {}

    def add(folder, name):
        files[file_in(osp.join(data_path, folder), name)] = FILE_CHECKS[folder]

    def add_warp_result(folder, name):
        folder_path = osp.join(warp_results, folder)
        files[file_in(folder_path, name)] = replace(FILE_CHECKS[folder], folder=folder_path,
                                                    missing_fix=WARP_RESULTS_FIX)

    for im_name, c_name in pairs:
        add('image', im_name)
        add('image-parse', parse_file_name(im_name))
        add('pose', pose_file_name(im_name))
        if getattr(opt, 'body_shape', 'parse') == 'image-mask':
            add('image-mask', parse_file_name(im_name))
        cloth = cloth_file_name(in_shop, by_cloth, im_name, c_name)
        add(cloth_dir, cloth)
        add(mask_dir, cloth)
        if warp_results:
            add_warp_result('warp-cloth', pair_key(im_name, c_name))
            add_warp_result('warp-mask', pair_key(im_name, c_name))
    return files


def check_cloth_mask_or_computed(path, size):
    """MPV's optional cloth mask: the mask file's check, or the warning that loading computes it."""
    return cloth_mask_fixes(Path(path)) or check_mask(path, size)


MPV_FILE_CHECKS = {check.kind: check for check in (
    FileCheck(PHOTO_FOLDER, check_person_image, 'add the photo, or remove its triplets from the list', 'person photo'),
    FileCheck(PHOTO_FOLDER, check_cloth_image, 'add the photo, or remove its triplets from the list', 'cloth photo'),
    FileCheck(PHOTO_FOLDER, check_cloth_mask_or_computed, '', 'cloth mask'),
    FileCheck(PARSE_FOLDER, check_parse_map, 'run a LIP human parser on the person photo and save its label map '
                                             '(pixel = label 0-19) as <person stem>.png', 'parse map'),
    FileCheck(POSE_FOLDER, check_pose, 'run OpenPose (COCO-18 or BODY_25) on the person photo; it writes '
                                       '<person stem>_keypoints.json', 'pose file'),
)}


def mpv_files_to_check(opt, triplets):
    """{path: FileCheck} of every file MPV triplets read (mpv_dataset.MPVDataset), each once: both persons'
    photos and parses, person B's keypoints, the cloth's photo and (optional) mask."""
    layout = MPVLayout(Path(opt.dataroot))
    files = {}
    for triplet in triplets:
        for name in (triplet.source, triplet.target):
            files[str(layout.photo(name))] = MPV_FILE_CHECKS['person photo']
            files[str(layout.parse_map(name))] = MPV_FILE_CHECKS['parse map']
        files[str(layout.pose(triplet.target))] = MPV_FILE_CHECKS['pose file']
        files[str(layout.photo(triplet.cloth))] = MPV_FILE_CHECKS['cloth photo']
        files[str(layout.cloth_mask(triplet.cloth))] = MPV_FILE_CHECKS['cloth mask']
    return files


def without_missing_folders(files, data_path):
    """(files outside missing folders, one error per missing folder) - not one error per file in it."""
    kept, errors = {}, []
    for folder in dict.fromkeys(file_check.folder for file_check in files.values()):
        folder_path = osp.join(data_path, folder)   # a folder outside the split is absolute: join keeps it
        in_folder = {path: check for path, check in files.items() if check.folder == folder}
        if osp.isdir(folder_path):
            kept.update(in_folder)
        else:
            errors.append(FileProblem('missing folder', folder_path,
                                      f'folder not found ({len(in_folder)} files of the pairs file are to be there)',
                                      next(iter(in_folder.values())).missing_fix))
    return kept, errors


def grouped(problems):
    groups = {}
    for problem in problems:
        groups.setdefault(problem.kind, []).append(problem)
    return groups


def format_groups(problems, fix_label, limit=None):
    """Lines listing the problems by kind with counts; a fix shared by a whole kind is written once."""
    lines = []
    for kind, group in grouped(problems).items():
        fixes = {problem.fix for problem in group}
        shared_fix = fixes.pop() if len(fixes) == 1 else None
        lines.append(f'  {kind} ({len(group)}):')
        for problem in group[:limit]:
            own_fix = f'; {fix_label}: {problem.fix}' if shared_fix is None and problem.fix else ''
            lines.append(f'    {shown(problem.path)}: {problem.problem}{own_fix}')
        if limit is not None and len(group) > limit:
            lines.append(f'    ... and {len(group) - limit} more')
        if shared_fix:
            lines.append(f'    {fix_label}: {shared_fix}')
    return lines


@dataclass
class DataReport:
    """Every problem found in a dataset: ``errors`` stop work, ``warnings`` are fixed when loading."""
    data_path: str
    pairs_path: str
    stage: str
    num_pairs: int = 0
    num_files: int = 0
    items_name: str = 'pairs'    # what num_pairs counts
    seconds: float = 0.0
    errors: list = field(default_factory=list)     # [FileProblem]
    warnings: list = field(default_factory=list)   # [LoadFix]

    @property
    def ok(self):
        return not self.errors

    def summary(self):
        return (f'data check of {self.data_path} against {self.pairs_path} (stage {self.stage}): {self.num_pairs} '
                f'{self.items_name}, {self.num_files} files in {self.seconds:.1f} s: {len(self.errors)} errors, '
                f'{len(self.warnings)} warnings')

    def format(self):
        """The summary, then every error and examples of each kind of warning, grouped by kind with counts."""
        lines = [self.summary()]
        if self.errors:
            lines.append(f'{len(self.errors)} errors (fix them, then run again):')
            lines += format_groups(self.errors, 'fix')
        if self.warnings:
            lines.append(f'{len(self.warnings)} warnings (fixed in memory when loading; the files stay as they are):')
            lines += format_groups(self.warnings, 'fixed', limit=WARNING_EXAMPLES)
        return '\n'.join(lines)


def validate_dataset(opt, log=print, spec=None):
    """Check every file the pairs file (MPV's layout: the triplet list) names. ``opt``: dataroot, datamode, stage,
    data_list, fine_height, fine_width (and body_shape, if image-mask/ is read); ``spec``: the stage's DataSpec
    (files_to_check, mpv_files_to_check). Returns a DataReport; logs one line as it starts."""
    start = time.perf_counter()
    mpv = spec is not None and spec.layout == 'mpv'
    data_path = opt.dataroot if mpv else osp.join(opt.dataroot, opt.datamode)
    report = DataReport(data_path, osp.join(opt.dataroot, opt.data_list), opt.stage,
                        items_name=f'{opt.datamode} triplets' if mpv else 'pairs')
    log(f'checking the data in {data_path} against {report.pairs_path} (stage {opt.stage}) ...')
    if mpv:
        items, report.errors = scan_triplets(report.pairs_path, opt.datamode)
        planned = mpv_files_to_check(opt, items)
    else:
        items, report.errors = scan_pairs(report.pairs_path)
        planned = files_to_check(opt, data_path, items, log, spec)
    files, folder_errors = without_missing_folders(planned, data_path)
    report.errors += folder_errors
    size = (opt.fine_width, opt.fine_height)
    chunks = [list(files.items())[i:i + FILES_PER_TASK] for i in range(0, len(files), FILES_PER_TASK)]
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        for results in pool.map(lambda chunk: [run_check(path, check, size) for path, check in chunk], chunks):
            for errors, warnings in results:
                report.errors += errors
                report.warnings += warnings
    report.num_pairs, report.num_files = len(items), len(files)
    report.seconds = time.perf_counter() - start
    return report


def check_or_exit(opt, log=print, spec=None):
    """Before training or testing: raise SystemExit with the full report when there are errors,
    else log the warnings (or a one-line summary) once and return the report."""
    report = validate_dataset(opt, log, spec)
    if not report.ok:
        raise SystemExit(report.format())
    log(report.format())
    return report


def check_only(opt, log=print, spec=None):
    """The --check_data mode: log the full report; returns the exit status, 1 when there are errors."""
    report = validate_dataset(opt, log, spec)
    log(report.format())
    return 0 if report.ok else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check a VITON-format dataset before training or testing.',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--datamode', default='train')
    parser.add_argument('--data_list', default='train_pairs.txt')
    parser.add_argument('--stage', choices=('GMM', 'TOM') + MGVTON_STAGES, default='GMM',
                        help="CP-VTON's stages read the VITON layout, MG-VTON's the MPV layout (--dataroot the MPV "
                             "folder, --datamode its split, --data_list its triplet list)")
    parser.add_argument('--fine_height', type=flags.image_side, default=256,
                        help="the model's input height, as train.py's")
    parser.add_argument('--fine_width', type=flags.image_side, default=192,
                        help="the model's input width, as train.py's")
    parser.add_argument('--body_shape', choices=BODY_SHAPE_SOURCES, default='parse',
                        help='image-mask: also check the body masks in image-mask/ (CP-VTON+)')
    return parser.parse_args(argv)


def main(argv=None):
    opt = parse_args(argv)
    return check_only(opt, spec=MGVTON_DATA if opt.stage in MGVTON_STAGES else None)


if __name__ == '__main__':
    sys.exit(main())
