"""VITON: its person representation, both stages' networks and losses on hand-made cases, one training step of
each stage through train.py, the method registry, and the VITON step scripts end to end on a tiny synthetic set."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import methods
import test as test_script
import train
import viton
from conftest import REPO, make_opt, run_step_scripts, step_script_env
from cp_dataset import CPDataset, legacy_bilinear_matrix, pair_key, read_pairs
from synthetic_data import generate_dataset

H, W = 256, 192


# --------------------------------------------------------------------------- the person representation

def write_constructed_person(root):
    """One person whose parse map has known regions: hair (2) and face (13) at the top, upper-clothes (5), a
    dress block (6), pants (9), an arm (14); two pose keypoints, the rest missing."""
    split = root / 'train'
    for folder in ('image', 'image-parse', 'pose', 'cloth', 'cloth-mask'):
        (split / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(split / 'image' / 'p.jpg', quality=95)
    parse = np.zeros((H, W), np.uint8)
    parse[16:32, 80:112] = 2       # hair
    parse[32:64, 80:112] = 13      # face
    parse[64:160, 48:144] = 5      # upper-clothes: 96 x 96 pixels, six 16 x 16 blocks wide
    parse[160:176, 48:144] = 6     # dress
    parse[176:240, 64:128] = 9     # pants
    parse[64:128, 144:160] = 14    # left arm
    Image.fromarray(parse, 'L').save(split / 'image-parse' / 'p.png')
    keypoints = [0.0] * 54
    keypoints[0:3] = [100.0, 40.0, 0.9]      # nose
    keypoints[3:6] = [3.0, 250.0, 0.8]       # neck, near the bottom-left corner: its box is clipped
    (split / 'pose' / 'p_keypoints.json').write_text(json.dumps({'people': [{'pose_keypoints': keypoints}]}))
    Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(split / 'cloth' / 'c.jpg')
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(split / 'cloth-mask' / 'c.jpg')
    (root / 'train_pairs.txt').write_text('p.jpg c.jpg\n')
    return parse


@pytest.fixture(scope='module')
def constructed(tmp_path_factory):
    root = tmp_path_factory.mktemp('viton_person')
    parse = write_constructed_person(root)
    item = CPDataset(make_opt(dataroot=str(root), stage='VITON_COARSE'), viton.COARSE_DATA)[0]
    return parse, item


def test_legacy_bilinear_is_tensorflow_1s_resize_without_half_pixel_centres():
    # by hand: 2 -> 4 samples source coordinates 0, 0.5, 1, 1.5 (clamped to the last pixel)
    expected = np.array([[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
    assert np.allclose(legacy_bilinear_matrix(4, 2), expected)
    assert np.allclose(legacy_bilinear_matrix(4, 2) @ np.array([2.0, 6.0]), [2, 4, 6, 6])


def test_the_body_shape_leaves_out_the_head_and_is_area_averaged_at_one_sixteenth(constructed):
    parse, item = constructed
    shape = item['agnostic'][0].numpy()
    assert shape.min() >= 0 and shape.max() <= 1           # [0,1], not CP-VTON's [-1,1]
    body = (parse > 0) & ~np.isin(parse, (1, 2, 4, 13))
    # At the top-left pixel of each 16 x 16 block the legacy resize samples that block exactly: its mean.
    for row, col in ((64, 48), (96, 80), (16, 80), (32, 80), (0, 0), (160, 48), (176, 64), (64, 144)):
        block_mean = body[row:row + 16, col:col + 16].mean()
        assert shape[row, col] == pytest.approx(block_mean, abs=1e-6), (row, col)
    assert shape[16, 80] == 0 and shape[32, 80] == 0        # hair and face are not body shape
    assert shape[96, 96] == 1                              # inside the shirt


def test_the_head_is_the_photo_in_the_head_regions_and_zero_elsewhere(constructed):
    parse, item = constructed
    head = item['agnostic'][1:4]
    region = torch.from_numpy(np.isin(parse, (1, 2, 4, 13)))
    assert torch.equal(head[:, region], item['image'][:, region])
    assert torch.count_nonzero(head[:, ~region]) == 0      # 0 outside, not -1
    assert torch.equal(item['head'], head)


def test_pose_boxes_are_11_pixels_of_ones_on_zeros(constructed):
    _, item = constructed
    pose = item['agnostic'][4:]
    assert set(pose.unique().tolist()) <= {0.0, 1.0}
    nose = pose[0]
    assert nose.sum() == 11 * 11 and nose[35:46, 95:106].sum() == 121
    neck = pose[1]    # (3, 250): x 0..8 clipped at 0, y 245..255 clipped at the bottom
    assert neck.sum() == 9 * 11 and neck[245:256, 0:9].sum() == 99
    assert pose[2:].sum() == 0                               # missing keypoints draw nothing


def test_the_clothing_mask_is_upper_clothes_only(constructed):
    parse, item = constructed
    assert torch.equal(item['viton_cloth_mask'][0], torch.from_numpy((parse == 5).astype(np.float32)))
    assert item['viton_cloth_mask'].sum() == 96 * 96        # the dress (6) is not in it
    assert item['parse_cloth_mask'].sum() == 96 * 96 + 96 * 16   # CP-VTON's cloth region (5, 6, 7) is


def test_the_cpvton_representation_of_the_same_person_is_unchanged(constructed, tmp_path):
    write_constructed_person(tmp_path)
    item = CPDataset(make_opt(dataroot=str(tmp_path), stage='GMM'))[0]
    assert item['agnostic'].min() == -1 and 'viton_cloth_mask' not in item
    assert item['agnostic'][4:].unique().tolist() == [-1.0, 1.0]


# --------------------------------------------------------------------------- networks

def test_stage_1_shapes_layers_and_initialisation():
    torch.manual_seed(0)
    model = viton.CoarseGenerator()
    out = model(torch.randn(2, 25, H, W))
    assert out.shape == (2, 4, H, W) and out.abs().max() <= 1
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(m.bias is None and m.kernel_size == (4, 4) and m.stride == (2, 2) for m in convs)
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 512, 512, 512, 512, 256, 128, 64, 4]
    # skips: the first decoder layer takes the bottleneck alone, the others twice the width
    assert [m.in_channels for m in convs[6:]] == [512, 1024, 1024, 512, 256, 128]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001
    assert isinstance(model.encoders[0], torch.nn.Conv2d)               # a bare convolution
    assert [type(m).__name__ for m in model.encoders[1]] == ['LeakyReLU', 'Conv2d', 'BatchNorm2d']
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.5] and isinstance(model.decoders[0][-1], torch.nn.Dropout)
    assert all(m.momentum == 0.001 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_stage_2_composes_inside_the_mask_and_only_the_refinement_learns():
    torch.manual_seed(0)
    model = viton.VitonTryOn().train()
    coarse_in, warped = torch.randn(2, 25, H, W), torch.rand(2, 3, H, W) * 2 - 1
    mask = torch.zeros(2, 1, H, W)
    mask[:, :, 64:128, 48:144] = 1
    out = model(coarse_in, warped, mask)
    assert out['alpha'].shape == (2, 1, H, W) and out['p_tryon'].shape == (2, 3, H, W)
    assert out['alpha'][mask == 0].abs().max() == 0 and out['alpha'].max() <= 1
    expected = out['alpha'] * warped + (1 - out['alpha']) * out['coarse_person']
    assert torch.allclose(out['p_tryon'], expected)
    out['p_tryon'].mean().backward()
    assert all(p.grad is None for p in model.coarse.parameters())
    assert all(p.grad is not None for p in model.refine.parameters())
    assert set(map(id, viton.refinement_parameters(model))) == set(map(id, model.refine.parameters()))
    norms = [m for m in model.refine.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == 1 and m.num_channels == 64 for m in norms)


def test_stage_2_uses_the_predicted_mask_at_test_time():
    torch.manual_seed(0)
    model = viton.VitonTryOn().eval()
    coarse_in, warped = torch.randn(1, 25, H, W), torch.zeros(1, 3, H, W)
    out = model(coarse_in, warped)
    assert torch.allclose(out['alpha'], model.refine(warped, out['coarse_person']) * out['coarse_mask'].clamp(0, 1))


@pytest.mark.parametrize('coarse_mode, coarse_training', [('train', True), ('eval', False)])
def test_the_frozen_stage_1_runs_in_the_mode_asked_for(coarse_mode, coarse_training):
    model = viton.VitonTryOn(coarse_mode).train()
    assert model.refine.training and model.coarse.training == coarse_training
    assert all(m.training == coarse_training for m in model.coarse.modules())
    model.eval()
    assert not model.coarse.training and not model.refine.training


def test_the_perceptual_network_has_the_official_layers_with_average_pooling():
    vgg = viton.VitonVgg19(None)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in vgg.features)
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in vgg.features) == 4    # up to conv5_2
    for name, width in (('conv1_2', 64), ('conv2_2', 128), ('conv3_2', 256), ('conv4_2', 512), ('conv5_2', 512)):
        end = viton.VGG_LAYER_ENDS[name]
        assert isinstance(vgg.features[end - 1], torch.nn.ReLU)            # after ReLU
        assert vgg.features[end - 2].out_channels == width
    features = vgg(torch.zeros(1, 3, H, W))
    assert features['conv5_2'].shape == (1, 512, H // 16, W // 16)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_the_perceptual_loss_is_the_official_formula():
    vgg = viton.VitonVgg19(None, layers=('conv3_2', 'conv4_2', 'conv5_2'))
    x, y = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    fx, fy = vgg(x), vgg(y)
    by_hand = ((fx['conv3_2'] - fy['conv3_2']).abs().mean() / 1.35 / 2.3
               + (fx['conv4_2'] - fy['conv4_2']).abs().mean() / 0.67 / 8.2
               + (fx['conv5_2'] - fy['conv5_2']).abs().mean() / 0.16) / 3.0 / 128.0
    assert torch.allclose(viton.PerceptualLoss(vgg)(x, y), by_hand)


def test_total_variation_on_a_hand_made_case():
    alpha = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.5]]]])
    # image 1: |1-0| down + |1-1| down + |1-0| right + |1-1| right = 2; image 2: 0.5 + 0.5 = 1; batch mean 1.5
    assert viton.total_variation(alpha).item() == pytest.approx(1.5)


class ZeroPerceptual(torch.nn.Module):
    def forward(self, x, y):
        return torch.zeros(())


def test_the_losses_weigh_their_terms_as_the_official_code():
    image = torch.zeros(1, 3, 2, 2)
    mask_target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    out = {'coarse_mask': torch.full((1, 1, 2, 2), 0.5), 'coarse_person': torch.full((1, 3, 2, 2), 0.25)}
    loss, terms = viton.CoarseLoss(ZeroPerceptual())({'image': image, 'viton_cloth_mask': mask_target}, out)
    assert terms['generator_loss_mask_L1'].item() == pytest.approx(0.5)      # every pixel 0.5 away
    assert loss.item() == pytest.approx(0.5 + 0.25)
    alpha = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])                        # mean 0.25, TV 2
    out = {'p_tryon': torch.full((1, 3, 2, 2), 0.5), 'alpha': alpha}
    loss, terms = viton.RefineLoss(ZeroPerceptual())({'image': image}, out)
    assert terms['tv_loss'].item() == pytest.approx(2.0) and terms['mask_loss'].item() == pytest.approx(0.25)
    assert loss.item() == pytest.approx(0.2 * 0.5 - 0.1 * 0.25 + 5e-6 * 2.0)


# --------------------------------------------------------------------------- the registry and train.py

def test_every_registered_stage_is_complete_and_cpvtons_keep_their_files():
    assert {'GMM', 'TOM', 'VITON_COARSE', 'VITON_REFINE'} <= set(methods.STAGES)
    assert methods.STAGES['GMM'].final_checkpoint == 'gmm_final.pth'
    assert methods.STAGES['TOM'].final_checkpoint == 'tom_final.pth'
    for stage in methods.STAGES.values():
        assert all(callable(getattr(stage, field)) for field in ('build_model', 'build_loss', 'run', 'visuals',
                                                                 'save_results', 'log_terms', 'trainable'))


def test_another_stages_flag_and_a_missing_stage_1_are_one_line_errors(capsys):
    for script, argv, message in (
            (train, ['--stage', 'TOM', '--coarse_mode', 'eval'], '--coarse_mode is an option of --stage VITON_REFINE'),
            (train, ['--stage', 'VITON_REFINE'], 'pass --coarse_checkpoint'),
            (train, ['--stage', 'VITON_REFINE', '--coarse_checkpoint', 'nowhere.pth'],
             '--coarse_checkpoint nowhere.pth: no such file'),
            (train, ['--stage', 'VITON_COARSE', '--reserved_regions', 'cpvton_plus'], "uses VITON's"),
            (test_script, ['--stage', 'GMM', '--warp_dir', 'warps'], '--warp_dir is an option of --stage VITON_REFINE'),
            (test_script, ['--stage', 'TOM', '--neck_box', '8'], '--neck_box is an option of --stage WUTON')):
        with pytest.raises(SystemExit):
            script.get_opt(argv)
        error = capsys.readouterr().err
        assert message in error and 'Traceback' not in error, error
    with pytest.raises(SystemExit):
        train.get_opt(['--stage', 'GMM', '--bn_momentum', '0.1'])
    assert 'an option of --stage VITON_COARSE or VITON_REFINE' in capsys.readouterr().err
    assert train.get_opt(['--stage', 'VITON_COARSE', '--bn_momentum', '0.1']).bn_momentum == 0.1
    model = viton.build_refine_model(types.SimpleNamespace(coarse_mode='train', bn_momentum=0.1, coarse_checkpoint=''))
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    # resumed, the refinement has its stage 1 in the resume state: the file it started from may be gone
    opt = train.get_opt(['--stage', 'VITON_REFINE', '--resume', '--coarse_checkpoint', 'moved_away.pth'])
    assert opt.coarse_checkpoint == 'moved_away.pth'


def test_stages_with_batch_statistics_keep_their_per_process_batch_on_resume():
    assert [name for name, stage in methods.STAGES.items() if not stage.batch_statistics] == ['TOM']


# --------------------------------------------------------------------------- the step scripts

@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    """scripts/viton/step1..5 on a tiny synthetic set, one training step per stage."""
    root = tmp_path_factory.mktemp('viton_pipeline')
    generate_dataset(str(root / 'data'), n_train=4, n_test=2, seed=6, workers=1)
    env = step_script_env(root, root / 'data', VITON_BATCH_SIZE='2', VITON_COARSE_STEPS='1', VITON_REFINE_STEPS='1',
                          SAVE_COUNT='2')
    train_args = ['--vgg_init', 'random', '--display_count', '1', '--seed', '1']
    list(run_step_scripts('viton', (('step1-train-coarse.sh', train_args), ('step2-test-coarse.sh', []),
                                    ('step3-shape-context.sh', []), ('step4-train-refine.sh', train_args),
                                    ('step5-test-refine.sh', [])), env))
    return root


def scalar_tags(folder):
    events = EventAccumulator(str(folder))
    events.Reload()
    return set(events.Tags()['scalars']), set(events.Tags()['images'])


def test_the_step_scripts_write_every_result_in_the_standard_layout(pipeline):
    result = pipeline / 'result'
    pairs = {split: read_pairs(str(pipeline / 'data' / f'{split}_pairs.txt')) for split in ('train', 'test')}
    paired = read_pairs(str(pipeline / 'data' / 'test_pairs_paired.txt'))   # step 2 wrote it
    tested = {pair_key(*pair) for pair in pairs['test'] + paired}
    for kind in ('coarse-person', 'coarse-mask'):
        assert set(os.listdir(result / 'viton_coarse_final.pth' / 'train' / kind)) == {
            pair_key(*pair) for pair in pairs['train']}
        assert set(os.listdir(result / 'viton_coarse_final.pth' / 'test' / kind)) == tested
    for kind in ('warp-cloth', 'warp-mask'):
        assert set(os.listdir(result / 'shape_context' / 'train' / kind)) == {pair_key(*p) for p in pairs['train']}
        assert set(os.listdir(result / 'shape_context' / 'test' / kind)) == tested
    assert set(os.listdir(result / 'viton_refine_final.pth' / 'test' / 'try-on')) == tested
    for step in ('step1-train-coarse', 'step2-test-coarse', 'step3-shape-context', 'step4-train-refine',
                 'step5-test-refine'):
        assert list((pipeline / 'logs').glob(f'viton-{step}-*.log')), step


def test_each_stage_trained_with_the_official_tags_and_stage_1_stays_frozen(pipeline):
    checkpoints = pipeline / 'checkpoints'
    coarse = torch.load(checkpoints / 'viton_coarse_train' / 'viton_coarse_final.pth', weights_only=True)
    assert coarse.keys() == viton.CoarseGenerator().state_dict().keys()
    scalars, images = scalar_tags(pipeline / 'tensorboard' / 'viton_coarse_train')
    assert {'generator_loss_GAN', 'generator_loss_mask_L1', 'generator_loss_content_L1', 'perceptual_loss',
            'lr'} <= scalars and images
    refine = torch.load(checkpoints / 'viton_refine_train' / 'viton_refine_final.pth', weights_only=True)
    # stage 1's weights are the ones it was given; its batch statistics move (the official training mode)
    assert all(torch.equal(refine[f'coarse.{k}'], v) for k, v in coarse.items()
               if 'running' not in k and 'num_batches' not in k)
    assert any(not torch.equal(refine[f'coarse.{k}'], v) for k, v in coarse.items() if 'running' in k)
    scalars, images = scalar_tags(pipeline / 'tensorboard' / 'viton_refine_train')
    assert {'generator_loss_content_L1', 'perceptual_loss', 'mask_loss', 'tv_loss'} <= scalars and images


def test_the_results_score_and_show_as_any_methods(pipeline, tmp_path):
    """evaluate.py and the strips read the standard layout unchanged."""
    result = pipeline / 'result'
    names = ['--gmm_checkpoint_name', 'shape_context', '--tom_checkpoint_name', 'viton_refine_final.pth']
    evaluate = subprocess.run([sys.executable, 'evaluate.py', '--dataroot', str(pipeline / 'data'), '--result_dir',
                               str(result), *names, '--metrics', 'iou,ssim', '--workers', '0'],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
    assert evaluate.returncode == 0, evaluate.stdout[-2000:] + evaluate.stderr[-2000:]
    report = json.loads((result / 'viton_refine_final.pth' / 'test' / 'metrics.json').read_text())
    assert 0 < report['metrics']['iou']['value'] <= 1 and 0 < report['metrics']['ssim']['value'] <= 1
    strips = subprocess.run([sys.executable, 'smart_show_test_result.py', '--dataroot', str(pipeline / 'data'),
                             '--result_dir', str(result), *names, '--data_list', 'test_pairs_paired.txt',
                             '--out_simple', str(tmp_path / 'simple'), '--out_verbose', ''],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert strips.returncode == 0, strips.stdout[-2000:] + strips.stderr[-2000:]
    assert len(list((tmp_path / 'simple').glob('*.png'))) == 2


def test_the_refinements_data_check_names_missing_warps_and_the_fix(pipeline, capsys):
    code = train.main(['--stage', 'VITON_REFINE', '--dataroot', str(pipeline / 'data'), '--check_data',
                       '--coarse_checkpoint', __file__, '--warp_dir', str(pipeline / 'no_warps')])
    assert code == 1
    out = capsys.readouterr().out
    assert str(pipeline / 'no_warps' / 'warp-cloth') in out and 'shape_context.py' in out
