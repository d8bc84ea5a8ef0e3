"""prepare_data.py: users' photos, poses and parse maps in, a checked VITON-format split out.

Expected values are written here from the documented rules and tables, not computed with the module's helpers."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import prepare_data
import train
from conftest import REPO, VITON_SAMPLES, require
from cp_dataset import LIP_PALETTE, VITON_LIP_PALETTE, load_coco18_keypoints
from prepare_data import (Placement, PrepareError, decode_parse, detect_label_set, fit, place_keypoints, place_labels,
                          place_photo, prepare_cloth, read_openpose, to_lip, to_rgb, unplace, unplace_keypoints)

SIZE = (192, 256)   # the model's W x H

# ------------------------------------------------------------------------------------------ builders


def box(labels, fractions, label):
    height, width = labels.shape
    x0, y0, x1, y1 = fractions
    labels[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)] = label


# (x0, y0, x1, y1) as fractions of the photo, LIP label
FIGURE_PARTS = [((0.40, 0.05, 0.60, 0.12), 2), ((0.42, 0.12, 0.58, 0.25), 13), ((0.30, 0.28, 0.70, 0.60), 5),
                ((0.20, 0.28, 0.30, 0.58), 15), ((0.70, 0.28, 0.80, 0.58), 14), ((0.32, 0.60, 0.68, 0.95), 9)]
COLOURS = {0: (255, 255, 255), 2: (40, 30, 20), 13: (230, 190, 160), 5: (200, 30, 30), 14: (220, 180, 150),
           15: (220, 180, 150), 9: (30, 30, 120)}
# COCO-18 as fractions of the photo; the ears (16, 17) are missing
COCO_FRACTIONS = [(0.5, 0.2), (0.5, 0.28), (0.3, 0.3), (0.25, 0.45), (0.25, 0.57), (0.7, 0.3), (0.75, 0.45),
                  (0.75, 0.57), (0.4, 0.6), (0.4, 0.78), (0.4, 0.93), (0.6, 0.6), (0.6, 0.78), (0.6, 0.93),
                  (0.47, 0.17), (0.53, 0.17), None, None]


def figure(width, height):
    """A drawn person: (RGB uint8 [H,W,3], LIP labels [H,W], COCO-18 keypoints [18,3] in pixels)."""
    labels = np.zeros((height, width), np.uint8)
    for fractions, label in FIGURE_PARTS:
        box(labels, fractions, label)
    rgb = np.zeros((height, width, 3), np.uint8)
    for label, colour in COLOURS.items():
        rgb[labels == label] = colour
    keypoints = np.array([(fx * width, fy * height, 0.9) if f else (0, 0, 0)
                          for f in COCO_FRACTIONS for fx, fy in [f or (0, 0)]], dtype=np.float64)
    return rgb, labels, keypoints


def save_lip_png(labels, path, palette=VITON_LIP_PALETTE):
    """A palette PNG of LIP labels; by default in VITON's variant of the palette, which only VITON's own (LIP)
    parse maps carry, so the label set is detected without --parse_labels."""
    image = Image.fromarray(labels.astype(np.uint8), 'L')
    image.putpalette([c for colour in palette for c in colour])
    image.save(path)


def coco_to_body25(keypoints):
    """COCO-18 -> BODY_25 by the documented order: MidHip inserted at 8, six feet points appended."""
    k = [list(p) for p in keypoints]
    mid_hip = [(k[8][0] + k[11][0]) / 2, (k[8][1] + k[11][1]) / 2, 0.8]
    return k[:8] + [mid_hip] + k[8:] + [[1.0, 2.0, 0.5]] * 6


def write_pose(path, keypoints, key='pose_keypoints_2d', body25=False, extra_people=()):
    points = coco_to_body25(keypoints) if body25 else keypoints
    people = [{key: [float(v) for p in points for v in p]}] + list(extra_people)
    with open(path, 'w') as f:
        json.dump({'version': 1.3, 'people': people}, f)


def cloth_photo(width, height):
    """A dark shirt (a rectangle) on white, and its mask."""
    mask = np.zeros((height, width), bool)
    mask[int(0.15 * height):int(0.85 * height), int(0.2 * width):int(0.8 * width)] = True
    rgb = np.full((height, width, 3), 255, np.uint8)
    rgb[mask] = (20, 40, 110)
    return rgb, mask


def tree_hashes(root):
    hashes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                hashes[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def exif_rotated_jpeg(upright_rgb, path, orientation=6):
    """A JPEG whose stored pixels are ``upright_rgb`` turned so that EXIF orientation 6 (turn 90 degrees
    clockwise to show) shows it upright again."""
    stored = Image.fromarray(upright_rgb).transpose(Image.Transpose.ROTATE_90)   # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)


class Inputs:
    """Input folders under tmp_path/in: persons/, clothes/, poses/, parses/, masks/."""

    def __init__(self, root):
        self.root = root / 'in'
        self.dirs = {name: self.root / name for name in ('persons', 'clothes', 'poses', 'parses', 'masks')}
        for folder in self.dirs.values():
            folder.mkdir(parents=True, exist_ok=True)

    def person(self, stem, size, ext='.jpg', mode='RGB', pose_name='{}_keypoints.json', pose_key='pose_keypoints_2d',
               body25=False, extra_people=()):
        rgb, labels, keypoints = figure(*size)
        image = Image.fromarray(rgb)
        path = self.dirs['persons'] / (stem + ext)
        if mode == 'L':
            image.convert('L').save(path)
        elif mode == 'RGBA':   # transparent around the person, black under the transparent pixels
            alpha = np.where(labels > 0, 255, 0).astype(np.uint8)
            Image.fromarray(np.dstack([rgb * (labels > 0)[..., None], alpha]), 'RGBA').save(path)
        elif mode == 'EXIF6':
            exif_rotated_jpeg(rgb, path)
        else:
            image.save(path, quality=95)
        save_lip_png(labels, self.dirs['parses'] / (stem + '.png'))
        write_pose(self.dirs['poses'] / pose_name.format(stem), keypoints, pose_key, body25, extra_people)
        return rgb, labels, keypoints

    def cloth(self, stem, size, ext='.jpg', mask_ext='.png'):
        rgb, mask = cloth_photo(*size)
        Image.fromarray(rgb).save(self.dirs['clothes'] / (stem + ext))
        mask_image = Image.fromarray(mask.astype(np.uint8) * 255)
        if mask_ext == '.rgba.png':   # a cut-out: opaque on the cloth, transparent elsewhere
            rgba = np.dstack([np.full(mask.shape + (3,), 255, np.uint8), mask.astype(np.uint8) * 255])
            Image.fromarray(rgba, 'RGBA').save(self.dirs['masks'] / (stem + '.png'))
        else:
            mask_image.save(self.dirs['masks'] / (stem + mask_ext))
        return rgb, mask

    def argv(self, out, datamode='train', masks=True, *extra):
        args = ['--persons', str(self.dirs['persons']), '--clothes', str(self.dirs['clothes']),
                '--poses', str(self.dirs['poses']), '--parses', str(self.dirs['parses']),
                '--out', str(out), '--datamode', datamode]
        if masks:
            args += ['--cloth_masks', str(self.dirs['masks'])]
        return args + list(extra)


def run(argv, capsys):
    code = prepare_data.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err):
    return [line for line in err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ placement


# source (W, H) -> resized (w, h) and offset (dx, dy) at 192 x 256, worked out by hand:
# scale = min(192 / W, 256 / H); the other side rounded; centred.
PLACEMENTS = {
    (600, 900): ((171, 256), (10, 0)),     # portrait: scale 256/900, 600 * 0.2844 = 170.7
    (900, 600): ((192, 128), (0, 64)),     # landscape: scale 192/900, 600 * 0.2133 = 128
    (1000, 667): ((192, 128), (0, 64)),    # scale 0.192, 667 * 0.192 = 128.06
    (480, 640): ((192, 256), (0, 0)),      # the model's aspect ratio: scale 0.4, no padding
    (192, 256): ((192, 256), (0, 0)),      # identity
    (96, 128): ((192, 256), (0, 0)),       # upscaled 2x
    (400, 300): ((192, 144), (0, 56)),
}


@pytest.mark.parametrize('source', list(PLACEMENTS))
def test_placement_sizes_offsets_and_keypoint_round_trip(source):
    placement = fit(source, SIZE)
    resized, offset = PLACEMENTS[source]
    assert placement.resized_size == resized and placement.offset == offset
    assert placement.target_size == SIZE and placement.source_size == source
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(1, source[0], 50), rng.uniform(1, source[1], 50), rng.uniform(0.1, 1, 50)])
    placed = place_keypoints(points, placement)
    # the photo's corners land on the placed box's corners; the centre on the box's centre
    corners = place_keypoints([[source[0], source[1], 1.0], [source[0] / 2, source[1] / 2, 1.0]], placement)
    assert np.allclose(corners[0, :2], [offset[0] + resized[0], offset[1] + resized[1]])
    assert np.allclose(corners[1, :2], [offset[0] + resized[0] / 2, offset[1] + resized[1] / 2])
    assert np.all(placed[:, 0] >= offset[0]) and np.all(placed[:, 0] <= offset[0] + resized[0])
    back = unplace_keypoints(placed, placement)
    assert np.abs(back[:, :2] - points[:, :2]).max() < 0.5
    assert np.array_equal(back[:, 2], points[:, 2])
    # the JSON record gives back the same mapping
    again = Placement.from_dict(json.loads(json.dumps(placement.to_dict())))
    assert np.allclose(place_keypoints(points, again), placed)


def test_missing_keypoints_stay_missing():
    placement = fit((900, 600), SIZE)    # offset (0, 64): a moved (0, 0) would become (0, 64)
    placed = place_keypoints([[0, 0, 0], [0, 0, 0.7], [100, 50, 0], [450, 300, 0.9]], placement)
    assert placed[:3].tolist() == [[0, 0, 0]] * 3
    assert np.allclose(placed[3], [96, 64 + 64, 0.9])


@pytest.mark.parametrize('source', [(600, 900), (900, 600), (1000, 667), (480, 640)])
def test_keypoint_convention_matches_the_resized_pixels(source):
    """A dark block's centre in the photo maps, by the keypoint rule, onto the block's centre in the placed photo
    (continuous coordinates: pixel i covers [i, i + 1), so its centre is i + 0.5)."""
    width, height = source
    rgb = np.full((height, width, 3), 255, np.uint8)
    x0, y0, side = width // 3, height // 4, 40
    rgb[y0:y0 + side, x0:x0 + side] = 0
    placement = fit(source, SIZE)
    placed = np.asarray(place_photo(Image.fromarray(rgb), placement)).astype(np.float64)
    darkness = 255 - placed.mean(axis=2)
    ys, xs = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    centroid = ((xs + 0.5) * darkness).sum() / darkness.sum(), ((ys + 0.5) * darkness).sum() / darkness.sum()
    expected = place_keypoints([[x0 + side / 2, y0 + side / 2, 1]], placement)[0, :2]
    assert abs(centroid[0] - expected[0]) < 0.5 and abs(centroid[1] - expected[1]) < 0.5


def test_photo_padding_is_white_and_unplace_restores_the_photo():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((900, 600), Image.Resampling.BICUBIC))   # smooth content
    placement = fit((900, 600), SIZE)
    placed = np.asarray(place_photo(Image.fromarray(rgb), placement))
    assert (placed[:64] == 255).all() and (placed[64 + 128:] == 255).all()
    back = unplace(placed, placement)
    assert back.shape == rgb.shape and back.dtype == np.uint8
    assert np.abs(back.astype(float) - rgb).mean() < 12        # a 4.7x round trip through 192 x 128
    with pytest.raises(ValueError, match='target size'):
        unplace(rgb, placement)


@pytest.mark.parametrize('source, cell', [((96, 128), 4), ((384, 512), 8), ((400, 300), 12), ((192, 256), 4)])
def test_parse_map_is_label_exact_under_the_mapping(source, cell):
    width, height = source
    labels = np.zeros((height, width), np.uint8)
    rects = []   # rectangles on a grid of `cell` pixels, labels 1..19
    for i, label in enumerate(range(1, 20)):
        x0, y0 = (2 + (i % 5) * 4) * cell, (2 + (i // 5) * 4) * cell
        if x0 + 3 * cell <= width and y0 + 3 * cell <= height:
            labels[y0:y0 + 3 * cell, x0:x0 + 3 * cell] = label
            rects.append((x0, y0, 3 * cell, label))
    assert len(rects) >= 10
    placement = fit(source, SIZE)
    placed = place_labels(labels, placement)
    assert placed.shape == (256, 192) and placed.dtype == np.uint8
    (dx, dy), (w, h) = placement.offset, placement.resized_size
    assert (placed[:dy] == 0).all() and (placed[dy + h:] == 0).all()
    assert (placed[:, :dx] == 0).all() and (placed[:, dx + w:] == 0).all()
    for x0, y0, side, label in rects:   # the rectangle's centre, mapped, carries its label
        cx, cy = place_keypoints([[x0 + side / 2, y0 + side / 2, 1]], placement)[0, :2]
        assert placed[int(cy), int(cx)] == label
    assert set(np.unique(placed)) <= set(np.unique(labels))
    if source in ((96, 128), (384, 512), (192, 256)):   # scales 2, 1/2, 1: nearest is exact both ways
        assert np.array_equal(unplace(placed, placement), labels)
        pil = unplace(Image.fromarray(placed, 'L'), placement, Image.Resampling.NEAREST)
        assert np.array_equal(np.asarray(pil), labels)


def test_unplace_to_the_stored_orientation(tmp_path):
    rgb, _, _ = figure(480, 640)
    exif_rotated_jpeg(rgb, tmp_path / 'p.jpg')
    photo, orientation, stored = prepare_data.load_photo(tmp_path / 'p.jpg')
    assert (orientation, stored, photo.size) == (6, (640, 480), (480, 640))
    placement = fit(photo.size, SIZE, orientation)
    placed = place_photo(photo, placement)
    assert unplace(placed, placement).size == (480, 640)
    back = unplace(placed, placement, stored_orientation=True)
    assert back.size == (640, 480)
    raw = np.asarray(Image.open(tmp_path / 'p.jpg').convert('RGB')).astype(float)
    assert np.abs(np.asarray(back).astype(float) - raw).mean() < 8


# ------------------------------------------------------------------------------------------ input modes


def test_photo_modes_become_rgb():
    gray16 = Image.fromarray(np.array([[0, 65535], [257 * 128, 257]], dtype=np.uint16))
    assert np.asarray(to_rgb(gray16))[..., 0].tolist() == [[0, 255], [128, 1]]
    rgba = Image.fromarray(np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], dtype=np.uint8), 'RGBA')
    assert np.asarray(to_rgb(rgba)).tolist() == [[[10, 20, 30], [255, 255, 255]]]
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), 'LA')
    assert np.asarray(to_rgb(la)).tolist() == [[[50, 50, 50], [255, 255, 255]]]
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), 'P')
    palette.putpalette([0, 0, 0, 200, 10, 10])
    palette.info['transparency'] = 0
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 255, 255], [200, 10, 10]]]
    cmyk = Image.new('CMYK', (2, 1), (0, 0, 0, 0))
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 255, 255]] * 2]
    gray = Image.new('L', (1, 1), 77)
    assert np.asarray(to_rgb(gray)).tolist() == [[[77, 77, 77]]]
    with pytest.raises(PrepareError, match='x.tif: has mode F'):      # 32-bit float: no photo
        to_rgb(Image.new('F', (1, 1)), 'x.tif')


# ------------------------------------------------------------------------------------------ label tables


def labelled_strip(count):
    """Label i in columns 4i..4i+3 of an 8-row map."""
    return np.repeat(np.repeat(np.arange(count, dtype=np.uint8)[None, :], 4, axis=1), 8, axis=0)


# Written from the documented tables: source label index -> LIP label.
EXPECTED_TABLES = {
    'lip': list(range(20)),
    'cihp': list(range(20)),     # 10 torso-skin kept as 10
    'atr': [0, 1, 2, 4, 5, 12, 9, 6, 9, 18, 19, 13, 16, 17, 14, 15, 0, 11],
}


@pytest.mark.parametrize('label_set', list(EXPECTED_TABLES))
def test_label_tables(label_set):
    expected = EXPECTED_TABLES[label_set]
    converted = to_lip(labelled_strip(len(expected)), label_set, 'x.png')
    assert converted[0, ::4].tolist() == expected
    with pytest.raises(PrepareError, match=rf'labels \[{len(expected)}\] are not in the {label_set} label set'):
        to_lip(labelled_strip(len(expected) + 1), label_set, 'x.png')


def test_pascal_table_splits_limbs_by_the_side_of_the_torso():
    # 0 background, 1 head, 2 torso, 3 upper arms, 4 lower arms, 5 upper legs, 6 lower legs
    pascal = np.zeros((100, 100), np.uint8)
    pascal[5:20, 40:60] = 1
    pascal[20:50, 40:60] = 2          # torso: middle column 49.5
    pascal[20:35, 25:40] = 3          # upper arm on the image's left: the person's right
    pascal[35:50, 25:40] = 4
    pascal[20:35, 60:75] = 3          # on the image's right: the person's left
    pascal[35:50, 60:75] = 4
    pascal[50:75, 40:50] = 5
    pascal[75:95, 40:50] = 6
    pascal[50:75, 50:60] = 5
    pascal[75:95, 50:60] = 6
    lip = to_lip(pascal, 'pascal', 'x.png')
    expected = np.zeros_like(pascal)
    expected[5:20, 40:60] = 13        # face
    expected[20:50, 40:60] = 5        # upper-clothes
    expected[20:50, 25:40] = 15       # right-arm
    expected[20:50, 60:75] = 14       # left-arm
    expected[50:95, 40:50] = 17       # right-leg
    expected[50:95, 50:60] = 16       # left-leg
    assert np.array_equal(lip, expected)
    with pytest.raises(PrepareError, match=r'labels \[7\] are not in the pascal'):
        to_lip(np.full((2, 2), 7, np.uint8), 'pascal', 'x.png')


def schp_colours(count):
    """SCHP's palette written out by its rule (PASCAL VOC colour map) for the first labels."""
    return [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
            (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
            (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0)][:count]


def p_image(indices, palette):
    image = Image.fromarray(indices, 'L')
    image.putpalette([c for colour in palette for c in colour])
    return image


def test_parse_map_encodings_and_label_detection():
    strip = labelled_strip(20)
    # P with the LIP palette (standard and VITON's variant), L values, RGB renderings in LIP colours
    for image in (p_image(strip, LIP_PALETTE), p_image(strip, VITON_LIP_PALETTE), Image.fromarray(strip, 'L'),
                  Image.fromarray(np.array(LIP_PALETTE, np.uint8)[strip])):
        decoded = decode_parse(image, 'x.png')
        assert np.array_equal(decoded.indices, strip)
        assert detect_label_set([('x.png', decoded)])[0] == 'lip'
    # SCHP's palette: its length tells the set, as simple_extractor.py writes it
    for count, family in ((20, 'lip'), (18, 'atr'), (7, 'pascal')):
        decoded = decode_parse(p_image(labelled_strip(count), schp_colours(count)), 'x.png')
        family_found, line = detect_label_set([('x.png', decoded)])
        assert family_found == family and f"SCHP's {count}-class palette" in line
    # an RGB rendering in SCHP's colours decodes to the labels, but its set is not told
    rendering = Image.fromarray(np.array(schp_colours(18), np.uint8)[labelled_strip(18)])
    decoded = decode_parse(rendering, 'x.png')
    assert np.array_equal(decoded.indices, labelled_strip(18))
    with pytest.raises(PrepareError, match='could be atr or lip'):
        detect_label_set([('x.png', decoded)])
    # grayscale labels up to 17: LIP or ATR; up to 6: any
    with pytest.raises(PrepareError, match='--parse_labels'):
        detect_label_set([('x.png', decode_parse(Image.fromarray(labelled_strip(18), 'L'), 'x.png'))])
    # files that disagree
    atr = decode_parse(p_image(labelled_strip(18), schp_colours(18)), 'a.png')
    lip = decode_parse(p_image(strip, LIP_PALETTE), 'b.png')
    with pytest.raises(PrepareError, match='do not agree'):
        detect_label_set([('a.png', atr), ('b.png', lip)])
    # colours of no palette
    with pytest.raises(PrepareError, match='neither the LIP nor'):
        decode_parse(Image.new('RGB', (4, 4), (1, 2, 3)), 'x.png')
    # LIP's colours without label 18 or 19 may be another set's labels (Graphonomy colours ATR maps so): not told
    upper_body = labelled_strip(16)
    for image in (p_image(upper_body, LIP_PALETTE), Image.fromarray(np.array(LIP_PALETTE, np.uint8)[upper_body])):
        with pytest.raises(PrepareError, match='could be atr or lip'):
            detect_label_set([('x.png', decode_parse(image, 'x.png'))])
    # ... but VITON's variant of the LIP palette is VITON's own LIP maps
    family, line = detect_label_set([('x.png', decode_parse(p_image(upper_body, VITON_LIP_PALETTE), 'x.png'))])
    assert family == 'lip' and "VITON's LIP palette" in line


# ------------------------------------------------------------------------------------------ OpenPose


def test_openpose_keys_body25_and_several_people(tmp_path):
    body25 = [[10.0 + i, 20.0 + i, 0.5] for i in range(25)]
    # COCO-18 takes BODY_25's 0-7 and 9-18 (MidHip 8 and the feet 19-24 dropped)
    expected_x = [10 + i for i in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)]
    path = tmp_path / 'a_keypoints.json'
    weak = {'pose_keypoints_2d': [v for i in range(25) for v in (50.0 + i, 60.0, 0.1)]}
    path.write_text(json.dumps({'version': 1.3, 'people': [weak, {'pose_keypoints_2d': sum(body25, [])}]}))
    keypoints, note = read_openpose(path, (100, 100))
    assert keypoints[:, 0].tolist() == expected_x and keypoints.shape == (18, 3)
    assert '2 people; took person 2' in note
    old = tmp_path / 'b.json'
    coco = [[30.0, 40.0, 0.9]] * 17 + [[0, 0, 0]]
    old.write_text(json.dumps({'people': [{'pose_keypoints': sum(coco, [])}]}))
    keypoints, note = read_openpose(old, (100, 100))
    assert note is None and keypoints[0].tolist() == [30, 40, 0.9] and keypoints[17].tolist() == [0, 0, 0]


@pytest.mark.parametrize('content, message', [
    ('{"people": [', 'not valid JSON'),
    ('{"people": []}', 'OpenPose found no person'),
    ('{"version": 1}', 'no "people" list'),
    (json.dumps({'people': [{'pose_keypoints_2d': [1.0] * 51}]}), '17 keypoints'),
    (json.dumps({'people': [{'pose_keypoints_2d': [0.5, 0.5, 0.9] * 18}]}), 'normalised'),
    (json.dumps({'people': [{'pose_keypoints_2d': [150.0, 50.0, 0.9] * 18}]}), 'outside its 100x100 photo'),
])
def test_openpose_errors(tmp_path, content, message):
    path = tmp_path / 'p.json'
    path.write_text(content)
    with pytest.raises(PrepareError, match=message):
        read_openpose(path, (100, 100))


# ------------------------------------------------------------------------------------------ whole splits


def odd_inputs(tmp_path):
    """Seven persons of odd sizes and modes with their own cloths (same stems), poses in every accepted form."""
    inputs = Inputs(tmp_path)
    inputs.person('portrait', (600, 900))
    inputs.person('landscape', (900, 600), ext='.png', pose_name='{}.json', body25=True)
    inputs.person('wide', (1000, 667), pose_key='pose_keypoints',
                  extra_people=[{'pose_keypoints': [5.0, 5.0, 0.05] * 18}])
    inputs.person('vga', (480, 640), body25=True, pose_key='pose_keypoints')
    inputs.person('gray', (300, 400), ext='.png', mode='L')
    inputs.person('cutout', (400, 300), ext='.png', mode='RGBA')
    inputs.person('rotated', (480, 640), mode='EXIF6')
    for stem, size, ext, mask_ext in (('portrait', (500, 600), '.jpg', '.png'),
                                      ('landscape', (640, 480), '.png', '.jpg'),
                                      ('wide', (1000, 667), '.jpg', '.rgba.png'), ('vga', (480, 640), '.webp', '.png'),
                                      ('gray', (192, 256), '.jpg', '.png'), ('cutout', (300, 300), '.png', '.png'),
                                      ('rotated', (333, 517), '.jpg', '.bmp')):
        inputs.cloth(stem, size, ext, mask_ext)
    return inputs


def test_odd_photos_make_a_checked_split_that_trains_one_gmm_step(tmp_path, capsys):
    inputs = odd_inputs(tmp_path)
    before = tree_hashes(inputs.root)
    out = tmp_path / 'data'
    code, printed, err = run(inputs.argv(out, 'train'), capsys)
    assert code == 0, printed + err
    assert tree_hashes(inputs.root) == before                    # nothing in the input folders changed
    assert 'parse labels: detected lip (palette PNG with VITON\'s LIP palette: 7)' in printed
    assert 'wide_keypoints.json: 2 people; took person 1' in printed
    assert ': 0 errors, 0 warnings' in printed                   # the data check's summary: nothing to fix on load
    stems = ['cutout', 'gray', 'landscape', 'portrait', 'rotated', 'vga', 'wide']
    assert (out / 'train_pairs.txt').read_text().splitlines() == [f'{s}.jpg {s}.jpg' for s in stems]
    assert (out / 'train_pairs_paired.txt').read_text() == (out / 'train_pairs.txt').read_text()
    split = out / 'train'
    for stem in stems:
        image = Image.open(split / 'image' / f'{stem}.jpg')
        assert (image.mode, image.size) == ('RGB', SIZE)
        parse = Image.open(split / 'image-parse' / f'{stem}.png')
        assert (parse.mode, parse.size) == ('P', SIZE)
        assert Image.open(split / 'cloth-mask' / f'{stem}.jpg').mode == 'L'
        record = json.loads((split / 'pose' / f'{stem}_keypoints.json').read_text())
        assert set(record) == {'version', 'people'} and len(record['people']) == 1
        assert set(record['people'][0]) == {'face_keypoints', 'pose_keypoints', 'hand_right_keypoints',
                                            'hand_left_keypoints'}
        assert len(record['people'][0]['pose_keypoints']) == 54
    placements = prepare_data.load_placements(str(split))
    assert set(placements['image']) == set(placements['cloth']) == {f'{s}.jpg' for s in stems}

    # Geometry, from the drawing: the person's labels and keypoints land where the mapping puts them.
    for stem, size, offset, scale in (('landscape', (900, 600), (0, 64), 192 / 900),
                                      ('rotated', (480, 640), (0, 0), 0.4),
                                      ('cutout', (400, 300), (0, 56), 0.48)):
        parse = np.asarray(Image.open(split / 'image-parse' / f'{stem}.png'))
        keypoints = load_coco18_keypoints(str(split / 'pose' / f'{stem}_keypoints.json'))
        _, _, drawn = figure(*size)
        assert np.abs(keypoints[:16, 0] - (drawn[:16, 0] * scale + offset[0])).max() < 0.6
        assert np.abs(keypoints[:16, 1] - (drawn[:16, 1] * scale + offset[1])).max() < 0.6
        assert keypoints[16:].tolist() == [[0, 0, 0]] * 2              # the missing ears stay missing
        torso = (offset[0] + 0.5 * size[0] * scale, offset[1] + 0.45 * size[1] * scale)
        assert parse[int(torso[1]), int(torso[0])] == 5
        face = (offset[0] + 0.5 * size[0] * scale, offset[1] + 0.2 * size[1] * scale)
        assert parse[int(face[1]), int(face[0])] == 13
        assert parse[offset[1] + 2, 2] == 0
    # the EXIF-rotated photo is upright: its red cloth lies where the upright drawing has it
    rotated = np.asarray(Image.open(split / 'image' / 'rotated.jpg')).astype(int)
    assert np.abs(rotated[int(0.45 * 256), 96] - (200, 30, 30)).max() < 30
    # RGBA person: composited on white, not on the black under its transparent pixels
    cutout = np.asarray(Image.open(split / 'image' / 'cutout.jpg')).astype(int)
    assert (cutout[56 + 5, 5] > 240).all() and (cutout[2, 2] > 240).all()
    # the RGBA cut-out mask of 'wide': opaque = cloth
    wide_mask = np.asarray(Image.open(split / 'cloth-mask' / 'wide.jpg')) >= 128
    assert wide_mask[128, 96] and not wide_mask[64 + 2, 2] and not wide_mask[10, 96]

    workdir = tmp_path / 'work'
    assert train.main(['--name', 'one_step', '--stage', 'GMM', '--dataroot', str(out), '--datamode', 'train',
                       '--data_list', 'train_pairs.txt', '--gpu_ids', '-1', '--workers', '0', '--batch-size', '2',
                       '--keep_step', '1', '--decay_step', '0', '--save_count', '1', '--display_count', '1',
                       '--seed', '0', '--checkpoint_dir', str(workdir / 'checkpoints'),
                       '--tensorboard_dir', str(workdir / 'tensorboard')]) == 0
    assert (workdir / 'checkpoints' / 'one_step' / 'gmm_final.pth').exists()


def test_test_split_pairs_every_person_with_every_cloth(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    inputs.person('000001_0', (480, 640))
    inputs.person('alice', (600, 900))
    for stem in ('000001_1', 'alice', 'zebra'):
        inputs.cloth(stem, (400, 500))
    out = tmp_path / 'data'
    code, printed, err = run(inputs.argv(out, 'test', True, '--image_mask'), capsys)
    assert code == 0, printed + err
    pairs = (out / 'test_pairs.txt').read_text().splitlines()
    assert pairs == [f'{p}.jpg {c}.jpg' for p in ('000001_0', 'alice') for c in ('000001_1', 'alice', 'zebra')]
    assert (out / 'test_pairs_paired.txt').read_text().splitlines() == ['000001_0.jpg 000001_1.jpg',
                                                                      'alice.jpg alice.jpg']
    body = np.asarray(Image.open(out / 'test' / 'image-mask' / 'alice.png'))
    parse = np.asarray(Image.open(out / 'test' / 'image-parse' / 'alice.png'))
    assert np.array_equal(body, np.where(parse > 0, 255, 0))
    # --pairs names input files; a stem matches too
    pairs_file = tmp_path / 'mine.txt'
    pairs_file.write_text('alice.jpg zebra.jpg\n000001_0 000001_1.jpg\n')
    code, printed, err = run(inputs.argv(tmp_path / 'data2', 'test', True, '--pairs', str(pairs_file)), capsys)
    assert code == 0, printed + err
    assert (tmp_path / 'data2' / 'test_pairs.txt').read_text().splitlines() == ['alice.jpg zebra.jpg',
                                                                              '000001_0.jpg 000001_1.jpg']
    assert (tmp_path / 'data2' / 'test_pairs_paired.txt').read_text().splitlines() == ['000001_0.jpg 000001_1.jpg']
    assert sorted(os.listdir(tmp_path / 'data2' / 'test' / 'cloth')) == ['000001_1.jpg', 'zebra.jpg']


def test_other_label_sets_through_the_command(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    rgb, lip, _ = inputs.person('p', (480, 640))
    inputs.cloth('p', (400, 500))
    # the same drawing in ATR labels (LIP -> ATR: hair 2, face 11, upper-clothes 4, arms 14/15, pants 6), grayscale
    atr = np.zeros_like(lip)
    for lip_label, atr_label in ((2, 2), (13, 11), (5, 4), (14, 14), (15, 15), (9, 6)):
        atr[lip == lip_label] = atr_label
    Image.fromarray(atr, 'L').save(inputs.dirs['parses'] / 'p.png')
    code, printed, err = run(inputs.argv(tmp_path / 'ambiguous', 'train'), capsys)
    assert code == 2 and 'could be atr or lip' in err and len(error_lines(err)) == 1
    code, printed, err = run(inputs.argv(tmp_path / 'atr', 'train', True, '--parse_labels', 'atr'), capsys)
    assert code == 0, printed + err
    written = np.asarray(Image.open(tmp_path / 'atr' / 'train' / 'image-parse' / 'p.png'))
    assert np.array_equal(written, place_labels(lip, fit((480, 640), SIZE)))
    # pascal: warned loudly
    pascal = np.where(lip > 0, 2, 0).astype(np.uint8)
    Image.fromarray(pascal, 'L').save(inputs.dirs['parses'] / 'p.png')
    code, printed, err = run(inputs.argv(tmp_path / 'pascal', 'train', True, '--parse_labels', 'pascal'), capsys)
    assert code == 0, printed + err
    assert sum(line.startswith('WARNING: ') for line in printed.splitlines()) >= 4


def test_missing_pose_is_reported_by_name(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    for stem in ('a', 'b', 'c'):
        inputs.person(stem, (480, 640))
        inputs.cloth(stem, (400, 500))
    (inputs.dirs['poses'] / 'b_keypoints.json').unlink()
    (inputs.dirs['parses'] / 'c.png').unlink()
    out = tmp_path / 'data'
    code, printed, err = run(inputs.argv(out, 'train'), capsys)
    assert code == 2 and not out.exists()
    lines = error_lines(err)
    assert any('b.jpg: no pose file' in line and 'b_keypoints.json' in line for line in lines)
    assert any('c.jpg: no parse map' in line for line in lines)
    assert 'Traceback' not in err
    code, printed, err = run(inputs.argv(out, 'train', True, '--skip_missing'), capsys)
    assert code == 0, printed + err
    assert any(line.startswith('skipped: ') and 'b.jpg: no pose file' in line for line in printed.splitlines())
    assert (out / 'train_pairs.txt').read_text().splitlines() == ['a.jpg a.jpg']


def test_never_overwrites_without_overwrite(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    out = tmp_path / 'data'
    assert run(inputs.argv(out, 'train'), capsys)[0] == 0
    written = tree_hashes(out)
    code, _, err = run(inputs.argv(out, 'train'), capsys)
    assert code == 2 and '--overwrite' in err and len(error_lines(err)) == 1
    assert tree_hashes(out) == written
    inputs.person('b', (600, 900))
    inputs.cloth('b', (400, 500))
    code, printed, err = run(inputs.argv(out, 'train', True, '--overwrite'), capsys)
    assert code == 0, printed + err
    assert (out / 'train_pairs.txt').read_text().splitlines() == ['a.jpg a.jpg', 'b.jpg b.jpg']
    # a pairs file alone counts as a dataset
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'train_pairs.txt').write_text('x.jpg y.jpg\n')
    assert run(inputs.argv(tmp_path / 'other', 'train'), capsys)[0] == 2
    # a split that prepare_data.py did not write is never replaced
    (tmp_path / 'foreign' / 'train' / 'image').mkdir(parents=True)
    (tmp_path / 'foreign' / 'train' / 'image' / 'x.jpg').write_bytes(b'precious')
    code, _, err = run(inputs.argv(tmp_path / 'foreign', 'train', True, '--overwrite'), capsys)
    assert code == 2 and 'not written by prepare_data.py' in err
    assert (tmp_path / 'foreign' / 'train' / 'image' / 'x.jpg').read_bytes() == b'precious'
    # the output may not lie in an input folder, nor hold one
    code, _, err = run(inputs.argv(inputs.dirs['persons'], 'train'), capsys)
    assert code == 2 and 'overlap' in err
    assert 'train' not in os.listdir(inputs.dirs['persons'])


def test_the_test_split_of_the_same_root_is_left_alone(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    out = tmp_path / 'data'
    assert run(inputs.argv(out, 'train'), capsys)[0] == 0
    train_files = tree_hashes(out)
    assert run(inputs.argv(out, 'test'), capsys)[0] == 0
    after = tree_hashes(out)
    assert {k: v for k, v in after.items() if k in train_files} == train_files
    assert 'test_pairs.txt' in after and not any(name.startswith('.') for name in os.listdir(out))


def test_overwrite_deletes_nothing_it_did_not_write(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    out = tmp_path / 'data'
    assert run(inputs.argv(out, 'test'), capsys)[0] == 0
    # step 2's warps copied in, as the "next:" line says: --overwrite refuses rather than delete them
    (out / 'test' / 'warp-cloth').mkdir()
    (out / 'test' / 'warp-cloth' / 'a.jpg').write_bytes(b'warp')
    (out / 'test' / 'image' / 'a-fixed.jpg').write_bytes(b'hand-fixed')
    written = tree_hashes(out)
    code, _, err = run(inputs.argv(out, 'test', True, '--overwrite'), capsys)
    assert code == 2 and len(error_lines(err)) == 1
    assert 'image/a-fixed.jpg' in err and 'warp-cloth' in err and 'warp-cloth/a.jpg' not in err
    assert tree_hashes(out) == written
    # a --pairs file inside the split is refused, not deleted
    shutil.rmtree(out / 'test' / 'warp-cloth')
    (out / 'test' / 'image' / 'a-fixed.jpg').unlink()
    (out / 'test' / 'my_pairs.txt').write_text('a.jpg a.jpg\n')
    code, _, err = run(inputs.argv(out, 'test', True, '--overwrite', '--pairs', str(out / 'test' / 'my_pairs.txt')),
                       capsys)
    assert code == 2 and '--pairs' in err and (out / 'test' / 'my_pairs.txt').exists()
    # pairs files with no split of ours beside them are not replaced either
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'test_pairs.txt').write_text('x.jpg y.jpg\n')
    code, _, err = run(inputs.argv(tmp_path / 'other', 'test', True, '--overwrite'), capsys)
    assert code == 2 and 'not written by prepare_data.py' in err
    assert (tmp_path / 'other' / 'test_pairs.txt').read_text() == 'x.jpg y.jpg\n'


def test_failed_swap_keeps_the_old_split(tmp_path, capsys, monkeypatch):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    out = tmp_path / 'data'
    assert run(inputs.argv(out, 'train'), capsys)[0] == 0
    written = tree_hashes(out / 'train')
    real_replace = os.replace

    def failing_replace(source, target):
        if '.prepare-' in str(source):
            raise OSError(28, 'No space left on device', str(target))
        return real_replace(source, target)

    monkeypatch.setattr(prepare_data.os, 'replace', failing_replace)
    code, _, err = run(inputs.argv(out, 'train', True, '--overwrite'), capsys)
    assert code == 2 and 'No space left on device' in err
    assert tree_hashes(out / 'train') == written and sorted(os.listdir(out)) == ['train', 'train_pairs.txt',
                                                                                  'train_pairs_paired.txt']


def dead_pid():
    """A pid that no process has now: that of a child that has exited."""
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    return child.pid


def test_folders_of_killed_runs_are_cleaned_up(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    out = tmp_path / 'data'
    pid = dead_pid()
    (out / f'.train.prepare-{pid}' / 'image').mkdir(parents=True)
    (out / f'.test.prepare-{pid}').mkdir()                 # another split's: not this run's business
    code, printed, err = run(inputs.argv(out, 'train'), capsys)
    assert code == 0, printed + err
    assert f'removed {out / f".train.prepare-{pid}"}' in printed
    assert sorted(os.listdir(out)) == [f'.test.prepare-{pid}', 'train', 'train_pairs.txt',
                                       'train_pairs_paired.txt']


def test_a_split_moved_aside_by_a_killed_run_is_put_back(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    out = tmp_path / 'data'
    pid = dead_pid()
    (out / f'.train.replaced-{pid}' / 'image').mkdir(parents=True)     # killed between the two renames
    (out / f'.train.replaced-{pid}' / 'image' / 'x.jpg').write_bytes(b'old split')
    code, printed, err = run(inputs.argv(out, 'train'), capsys)
    assert f'put back {out / "train"}' in printed
    assert code == 2 and 'already holds the train split' in err          # and, being back, it is not replaced
    assert (out / 'train' / 'image' / 'x.jpg').read_bytes() == b'old split'


def test_many_test_pairs_are_pointed_out(tmp_path, capsys, monkeypatch):
    inputs = Inputs(tmp_path)
    for stem in ('a', 'b'):
        inputs.person(stem, (480, 640))
        inputs.cloth(stem, (400, 500))
    monkeypatch.setattr(prepare_data, 'MANY_PAIRS', 3)
    code, printed, err = run(inputs.argv(tmp_path / 'data', 'test'), capsys)
    assert code == 0, printed + err
    assert '2 persons x 2 cloths = 4 pairs' in printed and '--pairs' in printed


def test_library_messages_name_no_command_flag(tmp_path):
    """tryon.py calls prepare_person and prepare_cloth too, with flags of its own."""
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    rgb, _ = inputs.cloth('a', (400, 500))
    (inputs.dirs['poses'] / 'a_keypoints.json').write_text('{"people": []}')
    with pytest.raises(PrepareError) as nobody:
        prepare_data.prepare_person(inputs.dirs['persons'] / 'a.jpg', inputs.dirs['poses'] / 'a_keypoints.json',
                                    inputs.dirs['parses'] / 'a.png', SIZE)
    Image.new('L', (400, 500)).save(inputs.dirs['masks'] / 'a.png')
    with pytest.raises(PrepareError) as empty:
        prepare_cloth(inputs.dirs['clothes'] / 'a.jpg', inputs.dirs['masks'] / 'a.png', SIZE)
    for error in (nobody, empty):
        assert '--' not in str(error.value), error.value


def test_a_parse_map_without_cloth_is_warned_about(tmp_path):
    inputs = Inputs(tmp_path)
    _, labels, _ = inputs.person('a', (480, 640))
    save_lip_png(np.where(labels == 5, 0, labels), inputs.dirs['parses'] / 'a.png')
    person = prepare_data.prepare_person(inputs.dirs['persons'] / 'a.jpg', inputs.dirs['poses'] / 'a_keypoints.json',
                                         inputs.dirs['parses'] / 'a.png', SIZE, 'lip')
    assert any(note.startswith('warning: ') and 'no upper-clothes, dress or coat' in note for note in person.notes)


def unreadable(inputs):
    (inputs.dirs['persons'] / 'a.jpg').write_bytes(b'not a jpeg at all')


def other_size_parse(inputs):
    Image.new('L', (100, 100)).save(inputs.dirs['parses'] / 'a.png')


def raw_frame_parse(inputs):
    rgb, labels, keypoints = figure(480, 640)
    exif_rotated_jpeg(rgb, inputs.dirs['persons'] / 'a.jpg')
    save_lip_png(labels.T.copy(), inputs.dirs['parses'] / 'a.png')   # 640 x 480: the stored pixels' size


def bad_json(inputs):
    (inputs.dirs['poses'] / 'a_keypoints.json').write_text('{"people": [{"pose_keypoints_2d": [1, 2,')


def nobody(inputs):
    (inputs.dirs['poses'] / 'a_keypoints.json').write_text('{"version": 1.3, "people": []}')


def unknown_labels(inputs):
    labels = np.full((640, 480), 25, np.uint8)
    save_lip_png(labels, inputs.dirs['parses'] / 'a.png', LIP_PALETTE + ((9, 9, 9),) * 10)


def space_in_name(inputs):
    os.rename(inputs.dirs['persons'] / 'a.jpg', inputs.dirs['persons'] / 'a b.jpg')


@pytest.mark.parametrize('spoil, extra, message', [
    (unreadable, (), 'a.jpg: cannot be read as an image'),
    (other_size_parse, (), 'a.png: the parse map is 100x100, but its photo'),
    (raw_frame_parse, (), 'the size of the stored pixels'),
    (bad_json, (), 'a_keypoints.json: not valid JSON'),
    (nobody, (), 'leave the photo out; or pass --skip_missing to leave it out'),
    (unknown_labels, ('--parse_labels', 'lip'), 'a.png: labels [25] are not in the lip label set'),
    (space_in_name, (), "a b.jpg: the name holds white space"),
    (None, ('--poses',), None),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, spoil, extra, message):
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (400, 500))
    argv = inputs.argv(tmp_path / 'data', 'train')
    if spoil:
        spoil(inputs)
        argv += list(extra)
    else:   # without --poses
        at = argv.index('--poses')
        del argv[at:at + 2]
        message = '--poses missing: CP-VTON\'s GMM and TOM both read'
    code, printed, err = run(argv, capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith('prepare_data.py: error: ') and 'fix:' in lines[0]
    assert not (tmp_path / 'data').exists()        # nothing written, no staging folder left


def test_command_line_errors_without_a_traceback(tmp_path, capsys):
    inputs = Inputs(tmp_path)
    argv = inputs.argv(tmp_path / 'data', 'test')
    argv[argv.index('--persons') + 1] = str(tmp_path / 'nowhere')
    result = subprocess.run([sys.executable, 'prepare_data.py', *argv], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ''
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and 'no such folder' in lines[0]
    assert lines[0].startswith('prepare_data.py: error: --persons ')
    # argparse's own errors: the usage, then one error line, as every command of the project
    with pytest.raises(SystemExit) as stopped:
        prepare_data.main(['--persons', 'x', '--clothes', 'y', '--out', 'o', '--datamode', 'val'])
    assert stopped.value.code == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines[0].startswith('usage:') and [line for line in lines if ': error: ' in line] == [lines[-1]]
    assert "argument --datamode: invalid choice: 'val'" in lines[-1]


def test_automatic_cloth_masks(tmp_path, capsys):
    rgb, mask = cloth_photo(500, 600)
    Image.fromarray(rgb).save(tmp_path / 'shirt.png')
    cloth = prepare_cloth(tmp_path / 'shirt.png', None, SIZE)
    expected = prepare_data.place_mask(mask, fit((500, 600), SIZE))
    assert (cloth.mask == expected).mean() > 0.98
    # the command without --cloth_masks
    inputs = Inputs(tmp_path)
    inputs.person('a', (480, 640))
    inputs.cloth('a', (500, 600))
    code, printed, err = run(inputs.argv(tmp_path / 'data', 'test', False), capsys)
    assert code == 0, printed + err
    assert 'masks: cloth_mask.cloth_mask' in printed
    written = np.asarray(Image.open(tmp_path / 'data' / 'test' / 'cloth-mask' / 'a.jpg')) >= 128
    assert (written == expected).mean() > 0.98


def test_one_person_for_tryon(tmp_path):
    """prepare_person as tryon.py calls it: the label set detected from the one parse map, SCHP's '..png' name."""
    inputs = Inputs(tmp_path)
    _, labels, keypoints = inputs.person('a', (600, 900), ext='.jpeg')
    os.rename(inputs.dirs['parses'] / 'a.png', inputs.dirs['parses'] / 'a..png')   # SCHP's name for a.jpeg
    parse = prepare_data.find_parse(str(inputs.dirs['parses']), 'a')
    person = prepare_data.prepare_person(inputs.dirs['persons'] / 'a.jpeg', inputs.dirs['poses'] / 'a_keypoints.json',
                                         parse, SIZE)
    assert any(note.startswith('parse labels: detected lip') for note in person.notes)
    placement = fit((600, 900), SIZE)
    assert person.placement == fit((600, 900), SIZE, 1, inputs.dirs['persons'] / 'a.jpeg')
    assert np.array_equal(person.parse, place_labels(labels, placement))
    assert np.abs(unplace_keypoints(person.keypoints, person.placement)[:16, :2] - keypoints[:16, :2]).max() < 1e-9
    assert unplace(person.image, person.placement).size == (600, 900)


def test_viton_samples_pass_through_unchanged(tmp_path, capsys):
    """VITON's own files (already 192 x 256, LIP palette PNGs, COCO-18 JSON) come out as they went in."""
    split = require(VITON_SAMPLES / 'test')
    argv = ['--persons', str(split / 'image'), '--clothes', str(split / 'cloth'), '--poses', str(split / 'pose'),
            '--parses', str(split / 'image-parse'), '--cloth_masks', str(split / 'cloth-mask'),
            '--out', str(tmp_path / 'data'), '--datamode', 'test']
    code, printed, err = run(argv, capsys)
    assert code == 0, printed + err
    assert 'detected lip (palette PNG with VITON\'s LIP palette: 40)' in printed
    out = tmp_path / 'data' / 'test'
    assert len((tmp_path / 'data' / 'test_pairs.txt').read_text().splitlines()) == 40 * 80
    assert len((tmp_path / 'data' / 'test_pairs_paired.txt').read_text().splitlines()) == 40
    for name in sorted(os.listdir(split / 'image'))[:10]:
        stem = name[:-4]
        assert (out / 'image' / name).read_bytes() == (split / 'image' / name).read_bytes()
        assert np.array_equal(np.asarray(Image.open(out / 'image-parse' / f'{stem}.png')),
                              np.asarray(Image.open(split / 'image-parse' / f'{stem}.png')))
        ours = load_coco18_keypoints(str(out / 'pose' / f'{stem}_keypoints.json'))
        theirs = load_coco18_keypoints(str(split / 'pose' / f'{stem}_keypoints.json'))
        assert np.abs(ours - theirs).max() < 1e-4
