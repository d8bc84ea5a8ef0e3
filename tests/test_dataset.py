"""The dataset returns the original loader's tensors; real VITON files read without error."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from conftest import REFERENCE, VITON_SAMPLES, make_opt, require
from cp_dataset import (CPDataLoader, CPDataset, draw_pose_maps, label_region, masked_image, normalized,
                        read_keypoints, to_tensor_normalized)

TENSOR_KEYS = ('cloth', 'cloth_mask', 'image', 'agnostic', 'parse_cloth', 'shape', 'head', 'pose_image')


def test_every_tensor_equals_the_original_loader():
    expected = torch.load(require(REFERENCE / 'tiny_viton_expected.pt'), weights_only=True)
    for stage in ('GMM', 'TOM'):
        dataset = CPDataset(make_opt(dataroot=str(REFERENCE / 'tiny_viton'), stage=stage))
        assert len(dataset) == 2
        for item in dataset:
            reference = expected[stage][item['im_name']]
            assert item['c_name'] == reference['c_name']
            for key in TENSOR_KEYS:
                assert item[key].dtype == reference[key].dtype, key
                assert torch.equal(item[key], reference[key]), f'{stage} {item["im_name"]} {key}'
            if stage == 'GMM':
                assert item['grid_image'].shape == (3, 256, 192)
                assert item['grid_image'].min() == -1 and item['grid_image'].max() == 1
            else:
                assert item['grid_image'] == ''


EVERY_LEVEL = np.arange(256, dtype=np.uint8).reshape(16, 16)


@pytest.mark.parametrize('mode', ['L', 'RGB'])
def test_normalisation_equals_torchvision_for_every_level(mode):
    # Each channel holds all 256 levels, in another order per channel, so a channel mix-up shows.
    pixels = EVERY_LEVEL if mode == 'L' else np.stack([EVERY_LEVEL, EVERY_LEVEL.T, EVERY_LEVEL[::-1]], axis=2)
    channels = 1 if mode == 'L' else 3
    original = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * channels, (0.5,) * channels)])
    expected = original(Image.fromarray(pixels, mode))
    assert torch.equal(to_tensor_normalized(Image.fromarray(pixels, mode)), expected)
    assert torch.equal(normalized(pixels), expected)


ORIGINAL_MASKINGS = {-1.0: lambda image, mask: image * mask - (1 - mask),    # head
                     1.0: lambda image, mask: image * mask + (1 - mask)}     # parse_cloth


@pytest.mark.parametrize('outside', [-1.0, 1.0])
def test_masked_image_equals_the_original_arithmetic_for_every_level(outside):
    image = normalized(np.stack([EVERY_LEVEL] * 3, axis=2))
    region = np.random.default_rng(0).random((16, 16)) < 0.5
    original = ORIGINAL_MASKINGS[outside](image, torch.from_numpy(region.astype(np.float32)))
    assert torch.equal(masked_image(image, region, outside), original)


def test_label_region_equals_isin():
    for labels in ((1, 2, 4, 13), (5, 6, 7), (0,), (19,)):
        assert np.array_equal(label_region(EVERY_LEVEL, labels), np.isin(EVERY_LEVEL, labels))


def test_pose_squares_follow_the_original_drawing_rules():
    keypoints = [[1.0, 50.0, 1.0],      # x exactly 1: skipped
                 [50.0, 1.0, 1.0],      # y exactly 1: skipped
                 [0.0, 0.0, 0.0],       # missing
                 [10.7, 20.2, 1.0],     # corners truncate: x 5..15, y 15..25
                 [2.5, 254.0, 1.0]]     # clipped by the left and bottom borders
    pose_map, pose_image = draw_pose_maps(keypoints, 256, 192, 5)
    assert (pose_map[:3] == -1).all()
    square = (pose_map[3] == 1).nonzero()
    assert square[:, 0].min() == 15 and square[:, 0].max() == 25
    assert square[:, 1].min() == 5 and square[:, 1].max() == 15
    assert (pose_map[4] == 1).sum() == 8 * 7   # x 0..7, y 249..255
    assert torch.equal(pose_image[0], pose_map.amax(0))


def test_new_openpose_key_is_accepted(tmp_path):
    path = tmp_path / 'p_keypoints.json'
    path.write_text('{"people": [{"pose_keypoints_2d": [' + ', '.join(['3.0'] * 54) + ']}]}')
    assert read_keypoints(str(path)).shape == (18, 3)


def check_item_ranges(item):
    assert item['cloth'].shape == (3, 256, 192) and item['image'].shape == (3, 256, 192)
    assert item['agnostic'].shape == (22, 256, 192)
    for key in ('cloth', 'image', 'agnostic', 'parse_cloth', 'head', 'shape', 'pose_image'):
        assert item[key].min() >= -1 and item[key].max() <= 1, key
    assert set(item['cloth_mask'].unique().tolist()) <= {0.0, 1.0}
    assert item['cloth_mask'].sum() > 0, f'{item["c_name"]}: empty cloth mask'
    assert (item['agnostic'][4:] == 1).any(), f'{item["im_name"]}: no pose keypoint drawn'


def test_every_real_viton_sample_reads():
    root = require(VITON_SAMPLES)
    for datamode, data_list in (('test', 'test_pairs.txt'), ('train', 'train_pairs.txt')):
        dataset = CPDataset(make_opt(dataroot=str(root), datamode=datamode, data_list=data_list))
        assert len(dataset) in (80, 40)
        for item in dataset:
            check_item_ranges(item)


def test_loader_batches_and_wraps_around():
    dataset = CPDataset(make_opt(dataroot=str(require(REFERENCE / 'tiny_viton'))))
    loader = CPDataLoader(make_opt(batch_size=2), dataset)
    first = loader.next_batch()
    assert first['agnostic'].shape == (2, 22, 256, 192) and first['im_name'] == ['000001_0.jpg', '000002_0.jpg']
    assert loader.next_batch()['im_name'] == first['im_name']   # not shuffled without --shuffle


def test_workers_are_fitted_to_a_small_dev_shm():
    from cp_dataset import workers_that_fit
    messages = []
    batch = 34 * 2**20
    assert workers_that_fit(4, batch, 8 * 2**30, messages.append) == (4, 2) and not messages
    assert workers_that_fit(4, batch, 64 * 2**20, messages.append) == (0, None)     # Docker's default 64 MB
    assert '--shm-size' in messages[-1]
    assert workers_that_fit(4, batch, 300 * 2**20, messages.append) == (4, 1)
    assert workers_that_fit(0, batch, 1, messages.append) == (0, None)


def test_loader_with_workers_gives_the_same_batches():
    dataset = CPDataset(make_opt(dataroot=str(require(REFERENCE / 'tiny_viton'))))
    plain = CPDataLoader(make_opt(batch_size=2), dataset).next_batch()
    threaded = CPDataLoader(make_opt(batch_size=2, workers=2), dataset).next_batch()
    assert all(torch.equal(plain[k], threaded[k]) for k in plain if torch.is_tensor(plain[k]))
