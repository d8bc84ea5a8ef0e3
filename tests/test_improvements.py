"""CP-VTON+ options (GIC loss, reserved regions, body shape, TOM mask input and target), the options
record that test.py rebuilds models from, and the 512x384 path."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import test as test_script
import cpvton
import train
from conftest import make_opt, pair_keyed_warps_from_clothes
from cp_dataset import (CLOTH_LABELS, RESERVED_LABELS, CPDataset, downsampled_body_shape, load_parse_labels, read_pairs)
from networks import TpsGridGen, grid_interval_consistency
from synthetic_data import generate_dataset


# --------------------------------------------------------------------------- the GIC loss

def gic_by_loops(grid):
    """The GIC loss written point by point, as the issue states it."""
    batch, height, width, _ = grid.shape
    total = 0.0
    for b in range(batch):
        for y in range(1, height - 1):
            for x in range(1, width - 1):
                gx, gy = grid[b, :, :, 0], grid[b, :, :, 1]
                total += abs(abs(gx[y, x - 1] - gx[y, x]) - abs(gx[y, x + 1] - gx[y, x]))
                total += abs(abs(gy[y - 1, x] - gy[y, x]) - abs(gy[y + 1, x] - gy[y, x]))
    return total / (batch * height * width)


def test_gic_loss_matches_its_definition():
    grid = torch.rand(2, 6, 5, 2, dtype=torch.float64)
    assert grid_interval_consistency(grid).item() == pytest.approx(float(gic_by_loops(grid)), rel=1e-12)


def test_gic_loss_is_zero_for_an_affine_grid():
    theta = torch.tensor([[[0.9, 0.2, 0.1], [-0.15, 1.1, -0.05]], [[1.2, -0.3, 0.0], [0.25, 0.8, 0.2]]])
    grid = F.affine_grid(theta, (2, 3, 256, 192), align_corners=True)
    assert grid_interval_consistency(grid).item() < 1e-7


def test_gic_loss_is_positive_for_a_bent_grid_and_its_gradient_reaches_theta():
    theta = (torch.rand(1, 50, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.2
    theta.requires_grad_(True)
    grid = TpsGridGen(256, 192, grid_size=5)(theta)
    loss = grid_interval_consistency(grid)
    loss.backward()
    assert loss.item() > 1e-5
    assert theta.grad is not None and theta.grad.abs().max() > 0


def test_gmm_loss_adds_the_weighted_gic_term_only_when_asked():
    grid = TpsGridGen(256, 192, grid_size=5)((torch.rand(2, 50) - 0.5) * 0.2)
    inputs = {'parse_cloth': torch.zeros(2, 3, 256, 192)}
    out = {'warped_cloth': torch.ones(2, 3, 256, 192), 'grid': grid}
    plain, plain_terms = cpvton.GMMLoss()(inputs, out)
    regularised, terms = cpvton.GMMLoss(gic_weight=40)(inputs, out)
    assert set(plain_terms) == {'metric'} and plain.item() == 1.0
    assert regularised.item() == pytest.approx(1.0 + 40 * grid_interval_consistency(grid).item(), rel=1e-6)
    assert terms['Lwarp'].item() == 1.0


# --------------------------------------------------------------------------- data options

@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    """Synthetic data with GMM's warps faked by the in-shop cloth, so both stages can run."""
    root = tmp_path_factory.mktemp('improvements')
    generate_dataset(str(root), n_train=4, n_test=2, seed=2)
    pair_keyed_warps_from_clothes(root, (('train', 'train_pairs.txt'), ('test', 'test_pairs.txt')))
    return root


def item(dataroot, stage, index=0, **options):
    return CPDataset(make_opt(dataroot=str(dataroot), stage=stage, **options))[index]


def parse_of(dataroot, index=0):
    im_name = read_pairs(str(dataroot / 'train_pairs.txt'))[index][0]
    return load_parse_labels(str(dataroot / 'train' / 'image-parse' / im_name.replace('.jpg', '.png')), (192, 256))


@pytest.mark.parametrize('stage', ['GMM', 'TOM'])
def test_reserved_regions_keep_the_stage_specific_labels(dataroot, stage):
    parse = torch.from_numpy(parse_of(dataroot).astype(np.int64))
    data = item(dataroot, stage, reserved_regions='cpvton_plus')
    kept = torch.from_numpy(np.isin(parse.numpy(), RESERVED_LABELS['cpvton_plus'][stage]))
    assert kept.any() and (~kept).any()
    assert torch.equal(data['head'][:, kept], data['image'][:, kept])
    assert (data['head'][:, ~kept] == -1).all()
    assert torch.equal(data['agnostic'][1:4], data['head'])
    hair = parse == 2
    if stage == 'GMM' and hair.any():
        assert (data['head'][:, hair] == -1).all()   # CP-VTON+ drops the hair from GMM's input


def test_the_original_regions_are_the_default(dataroot):
    default, original = item(dataroot, 'TOM'), item(dataroot, 'TOM', reserved_regions='original')
    assert torch.equal(default['agnostic'], original['agnostic'])


def test_body_shape_comes_from_image_mask_when_asked(tmp_path, dataroot):
    root = tmp_path / 'data'
    shutil.copytree(dataroot, root)
    im_name = read_pairs(str(root / 'train_pairs.txt'))[0][0]
    body = np.zeros((256, 192), bool)
    body[40:220, 50:150] = True    # a body mask unlike the parse map's silhouette
    Image.fromarray(body.astype(np.uint8) * 255).save(root / 'train' / 'image-mask' / im_name.replace('.jpg', '.png'))
    from_mask = item(root, 'GMM', body_shape='image-mask')
    from_parse = item(root, 'GMM')
    assert torch.equal(from_mask['shape'], downsampled_body_shape(body, 256, 192))
    assert not torch.equal(from_mask['shape'], from_parse['shape'])
    assert torch.equal(from_mask['agnostic'][4:], from_parse['agnostic'][4:])


def test_missing_body_masks_are_reported_before_training(tmp_path, dataroot):
    root = tmp_path / 'data'
    shutil.copytree(dataroot, root)
    shutil.rmtree(root / 'train' / 'image-mask')
    with pytest.raises(SystemExit, match=r'(?s)missing folder.*image-mask.*--body_shape parse'):
        train.main(['--name', 'no_masks', '--dataroot', str(root), '--body_shape', 'image-mask', '--gpu_ids', '-1',
                    '--checkpoint_dir', str(tmp_path / 'checkpoints'), '--tensorboard_dir', str(tmp_path / 'tb')])


def test_parse_cloth_mask_is_the_persons_cloth_region(dataroot):
    data = item(dataroot, 'TOM')
    expected = torch.from_numpy(np.isin(parse_of(dataroot), CLOTH_LABELS)).float()
    assert data['parse_cloth_mask'].shape == (1, 256, 192)
    assert torch.equal(data['parse_cloth_mask'][0], expected)


# --------------------------------------------------------------------------- every option trains and tests

VARIANTS = {   # name: (stage, flags, what options.json must record)
    'gic': ('GMM', ['--gic_weight', '40'], {'gic_weight': 40.0}),
    'reserved_regions': ('GMM', ['--reserved_regions', 'cpvton_plus'], {'reserved_regions': 'cpvton_plus'}),
    'body_shape': ('GMM', ['--body_shape', 'image-mask'], {'body_shape': 'image-mask'}),
    'tom_mask_input': ('TOM', ['--tom_mask_input'], {'tom_mask_input': True}),
    'tom_mask_target': ('TOM', ['--tom_mask_target', 'person_cloth'], {'tom_mask_target': 'person_cloth'}),
    'all_tom': ('TOM', ['--tom_mask_input', '--tom_mask_target', 'person_cloth', '--reserved_regions', 'cpvton_plus',
                        '--body_shape', 'image-mask'],
                {'tom_mask_input': True, 'tom_mask_target': 'person_cloth', 'reserved_regions': 'cpvton_plus',
                 'body_shape': 'image-mask'}),
}


def train_then_test(dataroot, workdir, stage, options, size=(256, 192)):
    """Train 1 step with ``options``, then test the same-cloth pairs with no option flag; returns
    (final checkpoint, result folder)."""
    common = ['--stage', stage, '--dataroot', str(dataroot), '--gpu_ids', '-1', '--workers', '0',
              '--tensorboard_dir', str(workdir / 'tensorboard')]
    sizes = ['--fine_height', str(size[0]), '--fine_width', str(size[1])]
    assert train.main(['--name', 'run', *common, *sizes, '--batch-size', '1', '--keep_step', '1', '--decay_step', '0',
                       '--seed', '0', '--checkpoint_dir', str(workdir / 'checkpoints'), '--vgg_init', 'random',
                       *options]) == 0
    checkpoint = workdir / 'checkpoints' / 'run' / ('gmm_final.pth' if stage == 'GMM' else 'tom_final.pth')
    assert test_script.main(['--name', 'run_test', *common, '--checkpoint', str(checkpoint), '--batch-size', '2',
                             '--data_list', 'test_pairs_paired.txt', '--result_dir', str(workdir / 'result')]) == 0
    return checkpoint, workdir / 'result' / checkpoint.name / 'test'


@pytest.fixture(scope='module')
def trained(dataroot, tmp_path_factory):
    """trained(variant) -> (checkpoint, result folder, log) of VARIANTS[variant], run once per module."""
    runs = {}

    def run(variant, capsys):
        if variant not in runs:
            stage, options, _ = VARIANTS[variant]
            capsys.readouterr()
            checkpoint, results = train_then_test(dataroot, tmp_path_factory.mktemp(variant), stage, options)
            runs[variant] = checkpoint, results, capsys.readouterr().out
        return runs[variant]
    return run


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_every_option_trains_and_test_rebuilds_its_model(dataroot, trained, variant, capsys):
    stage, _, expected = VARIANTS[variant]
    checkpoint, results, log = trained(variant, capsys)
    recorded = json.loads((checkpoint.parent / 'options.json').read_text())
    assert {name: recorded[name] for name in expected} == expected
    assert 'CP-VTON+ options on: ' in log
    folder = 'warp-cloth' if stage == 'GMM' else 'try-on'
    assert len(list((results / folder).iterdir())) == len(read_pairs(str(dataroot / 'test_pairs_paired.txt')))
    model_options = {name: value for name, value in expected.items() if name in train.MODEL_OPTIONS}
    if model_options:   # test.py was given no option flag: it must have read them from options.json
        assert 'model options from' in log


def test_a_26_channel_tom_without_its_options_file_gets_a_clear_message(dataroot, trained, tmp_path, capsys):
    checkpoint, _, _ = trained('tom_mask_input', capsys)
    bare = tmp_path / checkpoint.name
    shutil.copy(checkpoint, bare)   # the checkpoint alone, without the options.json beside it
    with pytest.raises(SystemExit, match='26 input channels: test it with --tom_mask_input'):
        test_script.main(['--stage', 'TOM', '--dataroot', str(dataroot), '--gpu_ids', '-1', '--workers', '0',
                          '--checkpoint', str(bare), '--result_dir', str(tmp_path / 'result'),
                          '--data_list', 'test_pairs_paired.txt', '--tensorboard_dir', str(tmp_path / 'tb')])


def test_test_refuses_flags_that_contradict_the_training_options(trained, capsys):
    checkpoint, _, _ = trained('reserved_regions', capsys)
    with pytest.raises(SystemExit, match=r"--fine_height 512 \(trained with 256\)"):
        test_script.get_opt(['--checkpoint', str(checkpoint), '--fine_height', '512', '--fine_width', '384'])


def test_resume_refuses_changed_options(dataroot, tmp_path):
    args = ['--name', 'run', '--dataroot', str(dataroot), '--gpu_ids', '-1', '--workers', '0', '--batch-size', '1',
            '--keep_step', '1', '--decay_step', '0', '--checkpoint_dir', str(tmp_path / 'checkpoints'),
            '--tensorboard_dir', str(tmp_path / 'tb')]
    assert train.main(args) == 0
    with pytest.raises(SystemExit, match=r"started with other options: --gic_weight 0.0 -> 40.0\. "):
        train.main(args + ['--resume', '--gic_weight', '40'])


# --------------------------------------------------------------------------- 512x384

@pytest.mark.parametrize('stage', ['GMM', 'TOM'])
def test_512x384_trains_and_tests_on_256x192_data(dataroot, tmp_path, stage):
    _, results = train_then_test(dataroot, tmp_path, stage, [], size=(512, 384))
    folder = results / ('warp-cloth' if stage == 'GMM' else 'try-on')
    sizes = {Image.open(path).size for path in folder.iterdir()}
    assert sizes == {(384, 512)}
    recorded = json.loads((tmp_path / 'checkpoints' / 'run' / 'options.json').read_text())
    assert (recorded['fine_height'], recorded['fine_width']) == (512, 384)
