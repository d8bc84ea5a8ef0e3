"""Tests of synthetic_data.py: layout, formats, loader compatibility, determinism, agreement
of drawing, keypoints and ground-truth warp, the difficulty dials, and overwrite safety."""
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import synthetic_data as sd  # noqa: E402
from cp_dataset import CPDataset, read_keypoints, read_pairs  # noqa: E402

N_TRAIN, N_TEST = 8, 4
ARM_LABELS = (sd.LEFT_ARM, sd.RIGHT_ARM)
# Labels drawn over the shirt: what can hide it on the person.
OCCLUDING_LABELS = (sd.HAIR, sd.FACE) + ARM_LABELS


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic') / 'data'
    summary = sd.generate_dataset(str(root), N_TRAIN, N_TEST, seed=0)
    return root, summary


@pytest.fixture
def one_torch_thread():
    """The loader's small tensor ops gain nothing from threads, and on a busy 2-core machine
    spinning intra-op threads make each item ~15x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def ids_of(root, split):
    return sorted(p.name[:6] for p in (root / split / 'image').iterdir())


def parse_labels(root, split, person_id):
    return np.asarray(Image.open(root / split / 'image-parse' / f'{person_id}_0.png'))


def keypoints(root, split, person_id):
    return read_keypoints(root / split / 'pose' / f'{person_id}_0_keypoints.json')


def all_persons(root):
    return [(split, person_id) for split in sd.SPLITS for person_id in ids_of(root, split)]


def file_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_layout_and_pair_lists(dataset):
    root, summary = dataset
    train_ids, test_ids = ids_of(root, 'train'), ids_of(root, 'test')
    assert len(train_ids) == N_TRAIN and len(test_ids) == N_TEST
    assert all(len(i) == 6 and i.isdigit() for i in train_ids + test_ids)
    assert not set(train_ids) & set(test_ids)
    for split, ids in (('train', train_ids), ('test', test_ids)):
        folder = root / split
        for person_id in ids:
            for path in (f'image/{person_id}_0.jpg', f'image-parse/{person_id}_0.png',
                         f'image-mask/{person_id}_0.png', f'cloth/{person_id}_1.jpg',
                         f'cloth-mask/{person_id}_1.jpg', f'pose/{person_id}_0_keypoints.json'):
                assert (folder / path).is_file(), path
        assert set(sd.load_warp_params(str(root), split)) == set(ids)

    assert read_pairs(root / 'train_pairs.txt') == [(f'{i}_0.jpg', f'{i}_1.jpg') for i in train_ids]
    paired = read_pairs(root / 'test_pairs_paired.txt')
    unpaired = read_pairs(root / 'test_pairs_unpaired.txt')
    assert paired == [(f'{i}_0.jpg', f'{i}_1.jpg') for i in test_ids]
    assert [person for person, _ in unpaired] == [person for person, _ in paired]
    assert all(person[:6] != cloth[:6] for person, cloth in unpaired)          # nobody wears their own
    assert sorted(cloth for _, cloth in unpaired) == sorted(cloth for _, cloth in paired)  # each once
    assert read_pairs(root / 'test_pairs.txt') == unpaired + paired
    assert summary['n_train'] == N_TRAIN and summary['pairs_per_second'] > 0


def test_file_formats(dataset):
    root, _ = dataset
    palette = [channel for colour in sd.LIP_PALETTE for channel in colour]
    assert len(sd.LIP_PALETTE) == 20
    for split, person_id in all_persons(root):
        folder = root / split
        image = Image.open(folder / 'image' / f'{person_id}_0.jpg')
        assert (image.format, image.mode, image.size) == ('JPEG', 'RGB', (192, 256))
        parse = Image.open(folder / 'image-parse' / f'{person_id}_0.png')
        assert (parse.format, parse.mode, parse.size) == ('PNG', 'P', (192, 256))
        assert parse.getpalette()[:60] == palette
        labels = set(np.unique(np.asarray(parse)).tolist())
        assert labels <= set(range(20)) and 10 not in labels
        assert {sd.UPPER_CLOTHES, sd.HAIR, sd.FACE, sd.LEFT_ARM, sd.RIGHT_ARM} <= labels
        body_mask = Image.open(folder / 'image-mask' / f'{person_id}_0.png')
        assert body_mask.mode == 'L'
        assert np.array_equal(np.asarray(body_mask), (np.asarray(parse) > 0) * 255)
        cloth = Image.open(folder / 'cloth' / f'{person_id}_1.jpg')
        assert (cloth.mode, cloth.size) == ('RGB', (192, 256))
        cloth_mask = Image.open(folder / 'cloth-mask' / f'{person_id}_1.jpg')
        assert (cloth_mask.format, cloth_mask.mode, cloth_mask.size) == ('JPEG', 'L', (192, 256))
        mask = np.asarray(cloth_mask) >= 128
        assert 0.2 < mask.mean() < 0.8
        # White around the shirt, as VITON's in-shop photos.
        assert np.asarray(cloth)[~mask].mean() > 245

        pose = json.loads((folder / 'pose' / f'{person_id}_0_keypoints.json').read_text())
        assert pose['version'] == 1.0 and len(pose['people']) == 1
        person = pose['people'][0]
        assert len(person['pose_keypoints']) == 54
        assert person['face_keypoints'] == person['hand_left_keypoints'] == person['hand_right_keypoints'] == []


@pytest.mark.parametrize('datamode, data_list', [('train', 'train_pairs.txt'), ('test', 'test_pairs.txt')])
def test_cpdataset_reads_every_item(dataset, one_torch_thread, datamode, data_list):
    root, _ = dataset
    opt = types.SimpleNamespace(dataroot=str(root), datamode=datamode, stage='GMM', data_list=data_list,
                                fine_height=256, fine_width=192, radius=5)
    data = CPDataset(opt)
    assert len(data) == (N_TRAIN if datamode == 'train' else 2 * N_TEST)
    shapes = {'cloth': (3, 256, 192), 'cloth_mask': (1, 256, 192), 'image': (3, 256, 192),
              'agnostic': (22, 256, 192), 'parse_cloth': (3, 256, 192), 'shape': (1, 256, 192),
              'head': (3, 256, 192), 'pose_image': (1, 256, 192), 'grid_image': (3, 256, 192)}
    for index in range(len(data)):
        item = data[index]
        for key, shape in shapes.items():
            assert tuple(item[key].shape) == shape, key
            assert -1 <= item[key].min() and item[key].max() <= 1, key
        assert set(item['cloth_mask'].unique().tolist()) == {0.0, 1.0}
        assert (item['parse_cloth'] < 1).any()          # the cloth region is not empty
        assert (item['agnostic'][4:] > 0).sum() > 0     # keypoints were drawn


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    root, _ = dataset
    again = tmp_path / 'again'
    sd.generate_dataset(str(again), N_TRAIN, N_TEST, seed=0, workers=2)
    assert file_bytes(again) == file_bytes(root)

    other = tmp_path / 'other'
    sd.generate_dataset(str(other), N_TRAIN, N_TEST, seed=1)
    first_image = 'train/image/000001_0.jpg'
    assert (other / first_image).read_bytes() != (root / first_image).read_bytes()


def test_keypoints_lie_on_the_drawing(dataset):
    root, _ = dataset
    for split, person_id in all_persons(root):
        labels = parse_labels(root, split, person_id)
        points = keypoints(root, split, person_id)
        assert points.shape == (18, 3)
        visible = points[:, 2] > 0
        assert np.all(points[~visible] == 0)
        assert visible[[0, 1, 2, 5, 8, 11, 14, 15]].all()   # nose, neck, shoulders, hips, eyes

        def label_at(index):
            x, y = points[index, :2]
            return labels[int(round(y)), int(round(x))]

        def labels_near(index, radius=2):
            x, y = np.round(points[index, :2]).astype(int)
            return set(labels[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1].ravel().tolist())

        for torso_point in (1, 2, 5):                      # neck and shoulders: on the body
            assert label_at(torso_point) != sd.BACKGROUND
        for face_point in (0, 14, 15):                     # nose and eyes: on the face
            assert label_at(face_point) == sd.FACE
        for wrist in (4, 7):                               # wrists: at the end of an arm
            if visible[wrist]:
                assert labels_near(wrist) & set(ARM_LABELS)
        for hip in (8, 11):                                # hips: in the pants, or what covers them
            assert label_at(hip) in (sd.PANTS, sd.UPPER_CLOTHES) + ARM_LABELS
        # The person's right is on the image's left.
        assert points[2, 0] < points[1, 0] < points[5, 0] and points[8, 0] < points[11, 0]


def test_parse_cloth_is_the_ground_truth_warp_where_nothing_covers_it(dataset):
    """Where no hair, face or arm is drawn, the parse's label 5 equals the mask that
    ground_truth_warped_mask rebuilds from warp_params.json, pixel for pixel; over the whole
    image (occluded pixels included) their IoU stays above 0.9 unless forearms cross the torso."""
    root, _ = dataset
    for split in sd.SPLITS:
        for person_id, params in sd.load_warp_params(str(root), split).items():
            labels = parse_labels(root, split, person_id)
            parse_cloth = labels == sd.UPPER_CLOTHES
            truth = sd.ground_truth_warped_mask(params)
            uncovered = ~np.isin(labels, OCCLUDING_LABELS)
            assert np.array_equal(parse_cloth[uncovered], truth[uncovered])
            assert not (parse_cloth & ~truth).any()
            if not params['arms_cross']:
                assert (parse_cloth & truth).sum() / (parse_cloth | truth).sum() > 0.9


def test_warp_follows_the_documented_convention():
    """Person pixel p shows shirt point q + tps(q) with q = A^-1 p: so A(c_k) shows c_k + offset_k."""
    ys, xs = np.mgrid[0:256, 0:192].astype(np.float32)    # planes whose values are their coordinates
    offsets = np.zeros((5, 5, 2))
    params = {'shirt': sd.sample_shirt_shape(np.random.default_rng(0)),
              'affine': [[1, 0, 0.5], [0, 1, 0.5]], 'tps_offsets': offsets.tolist()}
    x0, y0, x1, y1 = sd.warp_bounding_box(params)
    box = np.s_[max(y0, 1):y1, max(x0, 1):x1]
    warped_x, warped_y = sd.warp_planes([xs, ys], params)
    assert np.allclose(warped_x[box], xs[box] - 0.5, atol=1e-3)
    assert np.allclose(warped_y[box], ys[box] - 0.5, atol=1e-3)

    offsets[2, 2] = (3.0, -2.0)                  # the centre control point, shirt pixel (95.5, 127.5)
    params['tps_offsets'] = offsets.tolist()
    warped_x, warped_y = sd.warp_planes([xs, ys], params)
    # Shown at A(95.5, 127.5) = (96, 128); the TPS is evaluated on a 4-pixel lattice, hence the tolerance.
    assert warped_x[128, 96] == pytest.approx(95.5 + 3.0, abs=0.3)
    assert warped_y[128, 96] == pytest.approx(127.5 - 2.0, abs=0.3)


def arm_share_of_shirt(root, split, person_id, params):
    """The share of the warped shirt that arms hide."""
    labels = parse_labels(root, split, person_id)
    return np.isin(labels[sd.ground_truth_warped_mask(params)], ARM_LABELS).mean()


@pytest.mark.parametrize('share', [0.0, 1.0])
def test_difficulty_dials(tmp_path, share):
    root = tmp_path / 'data'
    summary = sd.generate_dataset(str(root), 6, 2, seed=3, textured_share=share, occluded_share=share)
    assert summary['textured'] == summary['occluded'] == {'train': 6 * share, 'test': 2 * share}
    hidden_shares = []
    for split in sd.SPLITS:
        for person_id, params in sd.load_warp_params(str(root), split).items():
            assert params['textured'] == (params['texture'] != sd.SOLID) == bool(share)
            assert params['texture'] in (sd.SOLID,) + sd.TEXTURES
            assert params['arms_cross'] == bool(params['crossing_arms']) == bool(share)
            hidden_shares.append(arm_share_of_shirt(root, split, person_id, params))
            points = keypoints(root, split, person_id)
            shoulders_x = sorted(points[[2, 5], 0])
            wrists = {'right': points[4], 'left': points[7]}
            for arm in params['crossing_arms']:             # the wrist lies in front of the torso
                assert shoulders_x[0] < wrists[arm][0] < shoulders_x[1]
    if share:
        # Crossing forearms hide at least 4% of every shirt (5-25% seen on 200 persons) ...
        assert min(hidden_shares) > 0.04
    else:
        # ... arms at the sides about 1% on average (up to ~10% where one runs along the shirt's side).
        assert np.mean(hidden_shares) < 0.03


def test_share_of_textured_and_occluded_is_exact(tmp_path):
    summary = sd.generate_dataset(str(tmp_path / 'data'), 10, 4, seed=0, textured_share=0.3, occluded_share=0.5)
    assert summary['textured'] == {'train': 3, 'test': 1}
    assert summary['occluded'] == {'train': 5, 'test': 2}


def test_refuses_to_overwrite_a_dataset(dataset, tmp_path):
    root, _ = dataset
    before = file_bytes(root)
    with pytest.raises(sd.DatasetExistsError, match='--overwrite'):
        sd.generate_dataset(str(root), N_TRAIN, N_TEST, seed=5)
    with pytest.raises(SystemExit, match='refusing to overwrite'):
        sd.main(['--dataroot', str(root), '--n_train', '2', '--n_test', '2'])
    assert file_bytes(root) == before

    ours = tmp_path / 'ours'
    sd.generate_dataset(str(ours), 3, 2, seed=0)
    (ours / 'train' / 'warp-cloth').mkdir()                     # e.g. left by an earlier GMM test
    sd.generate_dataset(str(ours), 2, 2, seed=1, overwrite=True)
    assert len(read_pairs(ours / 'train_pairs.txt')) == 2
    assert not (ours / 'train' / 'warp-cloth').exists()
    assert len(list((ours / 'train' / 'image').iterdir())) == 2

    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'train_pairs.txt').write_text('000003_0.jpg 000003_1.jpg\n')
    with pytest.raises(sd.DatasetExistsError, match='did not make'):
        sd.generate_dataset(str(foreign), 2, 2, seed=0, overwrite=True)
    assert (foreign / 'train_pairs.txt').read_text() == '000003_0.jpg 000003_1.jpg\n'


def test_command_line(tmp_path):
    root = tmp_path / 'cli'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'synthetic_data.py'), '--dataroot', str(root), '--n_train', '3',
         '--n_test', '2', '--seed', '7', '--textured_share', '1', '--occluded_share', '0', '--workers', '2'],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'wrote 3 train and 2 test persons' in result.stdout and 'pairs/s' in result.stdout
    assert len(read_pairs(root / 'test_pairs.txt')) == 4
    settings = json.loads((root / sd.MARKER_FILE).read_text())
    assert settings['seed'] == 7 and settings['textured_share'] == 1.0
