"""The data check reports each kind of bad data (naming the file and the fix) or the fix that loading
makes; after a fix the dataset loads; no file in the data folder is ever changed."""
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import make_opt
from cp_dataset import (LABEL_OF_LIP_COLOUR, LIP_PALETTE, VITON_LIP_PALETTE, CPDataset, DataError, FileProblem,
                        LoadFix, pair_key)
from data_check import DataReport, check_only, check_or_exit, validate_dataset

HEIGHT, WIDTH = 256, 192
PAIRS = (('000001_0.jpg', '000001_1.jpg'), ('000002_0.jpg', '000002_1.jpg'))
ITEM_SHAPES = {'cloth': (3, HEIGHT, WIDTH), 'cloth_mask': (1, HEIGHT, WIDTH), 'image': (3, HEIGHT, WIDTH),
               'agnostic': (22, HEIGHT, WIDTH), 'parse_cloth': (3, HEIGHT, WIDTH), 'shape': (1, HEIGHT, WIDTH),
               'head': (3, HEIGHT, WIDTH), 'pose_image': (1, HEIGHT, WIDTH)}
# COCO-18 (x, y) of a standing figure; (0, 0) = not detected, as OpenPose writes it.
KEYPOINTS = [(96, 50), (96, 75), (66, 80), (50, 125), (48, 170), (126, 80), (142, 125), (144, 170), (80, 150),
             (80, 200), (80, 240), (112, 150), (112, 200), (0, 0), (90, 45), (102, 45), (0, 0), (110, 48)]


# --- a small valid dataset, drawn with PIL ----------------------------------------------------------

def figure_regions(shift):
    """(LIP label, box) of a drawn figure, later boxes on top."""
    return [(9, (72 + shift, 140, 120 + shift, 235)),    # pants
            (14, (120 + shift, 80, 148 + shift, 175)),   # left arm (the image's right)
            (15, (44 + shift, 80, 72 + shift, 175)),     # right arm
            (5, (66 + shift, 75, 126 + shift, 150)),     # upper clothes
            (2, (80 + shift, 25, 112 + shift, 45)),      # hair
            (13, (82 + shift, 40, 110 + shift, 72))]     # face


def draw_person(path_photo, path_parse, shift):
    photo = Image.new('RGB', (WIDTH, HEIGHT), (235, 235, 230))
    labels = Image.new('L', (WIDTH, HEIGHT), 0)
    for label, box in figure_regions(shift):
        ImageDraw.Draw(photo).rectangle(box, fill=tuple(60 + (label * 37 + k * 71) % 180 for k in range(3)))
        ImageDraw.Draw(labels).rectangle(box, fill=label)
    photo.save(path_photo)
    parse = labels.convert('P')
    parse.putpalette([channel for colour in VITON_LIP_PALETTE for channel in colour])
    parse.save(path_parse)


def draw_cloth(path_cloth, path_mask, colour):
    cloth = Image.new('RGB', (WIDTH, HEIGHT), (255, 255, 255))
    mask = Image.new('L', (WIDTH, HEIGHT), 0)
    for image, fill in ((cloth, colour), (mask, 255)):
        ImageDraw.Draw(image).polygon([(40, 60), (152, 60), (140, 220), (52, 220)], fill=fill)
    cloth.save(path_cloth)
    mask.save(path_mask)


def write_pose(path, points, key='pose_keypoints'):
    flat = [value for x, y in points for value in (x, y, 0.9 if x else 0.0)]
    path.write_text(json.dumps({'version': 1.0, 'people': [{key: flat, 'face_keypoints': []}]}))


def make_dataset(root):
    data = root / 'train'
    for folder in ('image', 'image-parse', 'pose', 'cloth', 'cloth-mask', 'warp-cloth', 'warp-mask'):
        (data / folder).mkdir(parents=True)
    for index, (person, cloth) in enumerate(PAIRS):
        stem = person[:-4]
        draw_person(data / 'image' / person, data / 'image-parse' / f'{stem}.png', shift=4 * index)
        write_pose(data / 'pose' / f'{stem}_keypoints.json', [(x + 4 * index if x else 0, y) for x, y in KEYPOINTS])
        draw_cloth(data / 'cloth' / cloth, data / 'cloth-mask' / cloth, colour=(200, 40 + 90 * index, 60))
        # TOM's warps, named by the pair key as test.py names them (cloth-named folders: tests/test_pair_names.py).
        warp_name = pair_key(person, cloth)
        draw_cloth(data / 'warp-cloth' / warp_name, data / 'warp-mask' / warp_name, colour=(40, 90, 200))
    (root / 'train_pairs.txt').write_text(''.join(f'{person} {cloth}\n' for person, cloth in PAIRS))


@pytest.fixture(scope='module')
def clean_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('clean')
    make_dataset(root)
    return root


@pytest.fixture(scope='module')
def reference_items(clean_data):
    return {stage: list(CPDataset(make_opt(dataroot=str(clean_data), stage=stage))) for stage in ('GMM', 'TOM')}


def file_digests(root):
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob('*')) if path.is_file()}


# --- ways to break it -------------------------------------------------------------------------------

def rewrite_image(path, change, image_format=None):
    with Image.open(path) as image:
        changed = change(image.copy())
        image_format = image_format or image.format
    changed.save(path, format=image_format)


def rewrite_pose(path, change):
    person = json.loads(path.read_text())['people'][0]
    points = np.asarray(person['pose_keypoints'], dtype=float).reshape(-1, 3)
    write_pose(path, [(x, y) for x, y, _ in change(points)], key='pose_keypoints_2d')


def as_body_25(coco):
    mid_hip = (coco[8] + coco[11]) / 2
    feet = np.tile(coco[10], (6, 1)) + [[0, 10, 0]] * 6
    return np.concatenate([coco[:8], mid_hip[None], coco[8:], feet])


def remove(*paths):
    return lambda root: [(root / path).unlink() for path in paths]


def append_line(path, line):
    with path.open('a') as f:
        f.write(line + '\n')


def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def rendered_in(palette):
    return lambda parse: Image.fromarray(np.asarray(palette, dtype=np.uint8)[np.asarray(parse)])


def with_label(label):
    def change(parse):
        ImageDraw.Draw(parse).rectangle((0, 0, 20, 20), fill=label)
        return parse
    return change


def doubled(image):
    return image.resize((2 * image.width, 2 * image.height), Image.Resampling.NEAREST)


def transparent_background(cloth):
    rgb = np.asarray(cloth).copy()
    background = (rgb == 255).all(axis=2)
    rgb[background] = 0   # colour hidden under transparent pixels, as many cut-outs store it
    return Image.fromarray(np.dstack([rgb, np.where(background, 0, 255).astype(np.uint8)]))


def person(name='000001_0'):
    return f'train/image/{name}.jpg'


def parse(name='000001_0'):
    return f'train/image-parse/{name}.png'


def pose(name='000001_0'):
    return f'train/pose/{name}_keypoints.json'


# --- what must hold after a load-time fix (item and reference item of the first pair) ---------------

def same(*keys):
    def check(item, reference):
        for key in keys:
            assert torch.equal(item[key], reference[key]), key
    return check


def gray_image(item, reference):
    assert torch.equal(item['image'][0], item['image'][1]) and torch.equal(item['image'][1], item['image'][2])


def white_where_transparent(item, reference):
    background = (reference['cloth'] == 1).all(dim=0)
    assert torch.equal(item['cloth'], torch.where(background, torch.ones(()), reference['cloth']))


def same_pose_maps(item, reference):
    assert torch.equal(item['agnostic'][4:], reference['agnostic'][4:])
    assert torch.equal(item['pose_image'], reference['pose_image'])


@dataclass
class Case:
    name: str
    breaks: Callable      # (data root) -> None
    expected: list        # [(kind, path relative to the data root)] of the errors or warnings
    says: tuple           # fragments the report must contain: the fix, a group's count
    is_warning: bool = False
    stage: str = 'GMM'
    after_fix: Callable = None   # (item, reference item) -> None, for warnings


CASES = [
    Case('malformed pairs line', lambda root: append_line(root / 'train_pairs.txt', '000001_0.jpg a.jpg b.jpg'),
         [('malformed pairs line', 'train_pairs.txt, line 3')],
         ('expected "person.jpg cloth.jpg"', 'one pair per line')),
    Case('empty pairs file', lambda root: (root / 'train_pairs.txt').write_text('\n'),
         [('empty pairs file', 'train_pairs.txt')], ('one pair per line',)),
    Case('person name not jpg', lambda root: (root / 'train_pairs.txt').write_text('000001_0.png 000001_1.jpg\n'),
         [('person file name not *.jpg', 'train_pairs.txt, line 1')], ('name person photos *.jpg',)),
    Case('missing person image', remove(person()), [('missing image file', person())], ('add the person photo',)),
    Case('missing cloth', remove('train/cloth/000002_1.jpg'), [('missing cloth file', 'train/cloth/000002_1.jpg')],
         ('add the in-shop cloth photo',)),
    Case('missing mask', remove('train/cloth-mask/000001_1.jpg'),
         [('missing cloth-mask file', 'train/cloth-mask/000001_1.jpg')], ('make the cloth\'s mask',)),
    Case('missing parse', remove(parse()), [('missing image-parse file', parse())], ('run a LIP human parser',)),
    Case('missing pose', remove(pose('000002_0')), [('missing pose file', pose('000002_0'))], ('run OpenPose',)),
    Case('several missing, all listed', remove(person(), parse('000002_0'), pose(), pose('000002_0')),
         [('missing image file', person()), ('missing image-parse file', parse('000002_0')),
          ('missing pose file', pose()), ('missing pose file', pose('000002_0'))],
         ('add the person photo', 'run a LIP human parser', 'run OpenPose', 'missing pose file (2):')),
    Case('missing folder', lambda root: shutil.rmtree(root / 'train/pose'), [('missing folder', 'train/pose')],
         ('run OpenPose',)),
    Case('truncated JPEG', lambda root: truncate(root / person()), [('corrupt or unreadable file', person())],
         ('copy or export it again',)),
    Case('not an image', lambda root: (root / 'train/cloth/000001_1.jpg').write_text('<html>404</html>'),
         [('corrupt or unreadable file', 'train/cloth/000001_1.jpg')], ('copy or export it again',)),
    Case('parse as arbitrary colour image', lambda root: shutil.copyfile(root / person(), root / parse()),
         [('parse map is a colour image', parse())], ('label map (pixel value = LIP label 0-19)',)),
    Case('parse labels above 19', lambda root: rewrite_image(root / parse(), with_label(25)),
         [('parse labels outside LIP\'s 0-19', parse())], ('20 LIP labels',)),
    Case('pose JSON invalid', lambda root: (root / pose()).write_text('{"people": [{"pose_keypoints": [1, 2'),
         [('unusable pose JSON', pose())], ('not valid JSON', 're-export it from OpenPose')),
    Case('pose JSON without people', lambda root: (root / pose()).write_text('{"version": 1.0, "people": []}'),
         [('unusable pose JSON', pose())], ('OpenPose detected nobody',)),
    Case('17 keypoints', lambda root: rewrite_pose(root / pose(), lambda points: np.delete(points, 1, axis=0)),
         [('wrong keypoint count', pose())], ('has 17 keypoints', '--model_pose COCO')),
    Case('TOM without warp-cloth', remove(f'train/warp-cloth/{pair_key(*PAIRS[0])}'),
         [('missing warp-cloth file', f'train/warp-cloth/{pair_key(*PAIRS[0])}')], ('run test.py --stage GMM',),
         stage='TOM'),
    # fixed on load, with a warning
    Case('person image twice the size', lambda root: (rewrite_image(root / person(), doubled),
                                                      rewrite_pose(root / pose(), lambda points: points * [2, 2, 1])),
         [('wrong size', person())], ('resized on load (LANCZOS); its pose keypoints are scaled',),
         is_warning=True, after_fix=same_pose_maps),
    Case('parse, cloth and mask twice the size',
         lambda root: [rewrite_image(root / path, doubled)
                       for path in (parse(), 'train/cloth/000001_1.jpg', 'train/cloth-mask/000001_1.jpg')],
         [('wrong size', parse()), ('wrong size', 'train/cloth/000001_1.jpg'),
          ('wrong size', 'train/cloth-mask/000001_1.jpg')], ('NEAREST', 'LANCZOS', 'BILINEAR'),
         is_warning=True, after_fix=same('shape')),
    Case('grayscale person image', lambda root: rewrite_image(root / person(), lambda image: image.convert('L')),
         [('mode L, not RGB', person())], ('converted to RGB on load',), is_warning=True, after_fix=gray_image),
    Case('RGBA cloth', lambda root: rewrite_image(root / 'train/cloth/000001_1.jpg', transparent_background, 'PNG'),
         [('transparency', 'train/cloth/000001_1.jpg')], ('composited on white',), is_warning=True,
         after_fix=white_where_transparent),
    Case('RGB mask', lambda root: rewrite_image(root / 'train/cloth-mask/000001_1.jpg',
                                                lambda mask: mask.convert('RGB'), 'PNG'),
         [('mask mode RGB, not grayscale', 'train/cloth-mask/000001_1.jpg')], ('converted to grayscale',),
         is_warning=True, after_fix=same('cloth_mask')),
    Case('parse as LIP colour rendering', lambda root: rewrite_image(root / parse(), rendered_in(LIP_PALETTE)),
         [('parse map is a LIP colour rendering', parse())], ('mapped back to labels',), is_warning=True,
         after_fix=same('shape', 'head', 'parse_cloth')),
    Case('parse as colour rendering in VITON\'s palette',
         lambda root: rewrite_image(root / parse(), rendered_in(VITON_LIP_PALETTE)),
         [('parse map is a LIP colour rendering', parse())], ('mapped back to labels',), is_warning=True,
         after_fix=same('shape', 'head', 'parse_cloth')),
    Case('BODY_25 keypoints', lambda root: rewrite_pose(root / pose(), as_body_25),
         [('BODY_25 keypoints', pose())], ('converted to COCO-18',), is_warning=True, after_fix=same_pose_maps),
]


@pytest.mark.parametrize('case', CASES, ids=[case.name for case in CASES])
def test_bad_data_is_reported_and_the_files_stay_as_they_are(case, clean_data, reference_items, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(clean_data, root)
    case.breaks(root)
    digests = file_digests(root)
    opt = make_opt(dataroot=str(root), stage=case.stage)

    report = validate_dataset(opt, log=lambda line: None)
    found = report.warnings if case.is_warning else report.errors
    assert {(problem.kind, problem.path) for problem in found} == {
        (kind, str(root / path)) for kind, path in case.expected}, report.format()
    text = report.format()
    for _, path in case.expected:
        assert str(root / path) in text
    for fragment in case.says:
        assert fragment in text, text

    if case.is_warning:
        assert report.ok, text
        items = list(CPDataset(opt))
        for item in items:
            assert {key: tuple(item[key].shape) for key in ITEM_SHAPES} == ITEM_SHAPES
        case.after_fix(items[0], reference_items[case.stage][0])
    else:
        assert not report.warnings, text
        with pytest.raises((DataError, OSError)):   # what the check reports is what would stop loading
            list(CPDataset(opt))
    assert file_digests(root) == digests


@pytest.mark.parametrize('stage', ('GMM', 'TOM'))
def test_valid_data_passes_without_warnings(clean_data, stage):
    report = validate_dataset(make_opt(dataroot=str(clean_data), stage=stage), log=lambda line: None)
    assert report.ok and not report.warnings, report.format()
    assert (report.num_pairs, report.num_files) == (2, 10)


def test_both_lip_palette_variants_map_to_their_labels():
    for palette in (LIP_PALETTE, VITON_LIP_PALETTE):
        assert [LABEL_OF_LIP_COLOUR[colour] for colour in palette] == list(range(20))


def test_report_groups_every_problem_by_kind_with_counts():
    report = DataReport('data/train', 'data/train_pairs.txt', 'GMM', num_pairs=9, num_files=45)
    report.errors = [FileProblem('missing pose file', f'pose/{i}_keypoints.json', 'file not found', 'run OpenPose')
                     for i in range(7)]
    report.warnings = [LoadFix('wrong size', f'image/{i}.jpg', 'is 384x512', 'resized on load', apply=None)
                       for i in range(8)]
    lines = report.format().splitlines()
    assert '  missing pose file (7):' in lines and '    fix: run OpenPose' in lines
    assert all(f'    pose/{i}_keypoints.json: file not found' in lines for i in range(7))   # every error
    assert '  wrong size (8):' in lines and '    ... and 3 more' in lines                  # warnings: examples
    assert not report.ok


def test_check_or_exit_stops_on_errors_and_logs_warnings_once(clean_data, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(clean_data, root)
    rewrite_pose(root / pose(), as_body_25)
    logged = []
    check_or_exit(make_opt(dataroot=str(root)), log=logged.append)
    assert '\n'.join(logged).count('BODY_25 keypoints (1):') == 1

    (root / parse()).unlink()
    with pytest.raises(SystemExit) as stop:
        check_or_exit(make_opt(dataroot=str(root)), log=logged.append)
    assert str(root / parse()) in str(stop.value.code) and 'BODY_25' in str(stop.value.code)
    assert check_only(make_opt(dataroot=str(root)), log=logged.append) == 1


@pytest.mark.parametrize('datamode, data_list', (('train', 'train_pairs.txt'), ('test', 'test_pairs.txt')))
def test_real_viton_samples_have_no_problems(datamode, data_list):
    samples = Path(__file__).resolve().parents[2] / 'shared' / 'viton_samples'
    if not samples.exists():
        pytest.skip(f'{samples} is absent: the real VITON samples are only in the project\'s CI')
    report = validate_dataset(make_opt(dataroot=str(samples), datamode=datamode, data_list=data_list),
                              log=lambda line: None)
    assert report.ok and not report.warnings, report.format()
