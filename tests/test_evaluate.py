"""evaluate.py: every metric against an independent ground truth, and the command end to end.

Pretrained weights are never available here: networks are checked with random weights passed explicitly,
and the real entry points must refuse (naming the file) when the weights file is absent.
"""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageFilter
from skimage.metrics import structural_similarity

import evaluate
import metrics
from conftest import VITON_SAMPLES, require
from cp_dataset import pair_key

SKIMAGE_SETTINGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
HEIGHT, WIDTH = 256, 192


def smooth_image(seed, height=HEIGHT, width=WIDTH):
    """A photo-like uint8 RGB image [H,W,3]: low-frequency colour blobs."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))


def add_noise(image, sigma, seed=0):
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def random_state_dict(network, seed=0):
    """Random weights for a stand-in network: He-normal, so that activations stay near unit scale through a
    deep network in eval mode (PyTorch's default init shrinks them into slow denormal floats)."""
    torch.manual_seed(seed)
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity='relu')
    return network.state_dict()


def flat_ssim(a, b):
    """SSIM of two flat images of values a and b: only the luminance term differs from 1."""
    return (2 * a * b + C1) / (a * a + b * b + C1)


# ---------------------------------------------------------------------------------------------- SSIM

def test_ssim_score_is_skimages_rgb_ssim():
    image, reference = smooth_image(1), smooth_image(2)
    expected = structural_similarity(image, reference, channel_axis=-1, **SKIMAGE_SETTINGS)
    assert metrics.ssim_score(image, reference) == pytest.approx(expected, abs=1e-12)
    assert metrics.ssim_score(reference, reference) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize('score', [metrics.ssim_score, metrics.matlab_ssim_score])
def test_ssim_by_hand(score):
    image = smooth_image(3)
    assert score(image, image) == pytest.approx(1.0, abs=1e-12)
    light_noise, heavy_noise = score(add_noise(image, 5), image), score(add_noise(image, 25), image)
    assert 1.0 > light_noise > heavy_noise > 0.0
    flat_a, flat_b = np.full((64, 48, 3), 100, np.uint8), np.full((64, 48, 3), 120, np.uint8)
    assert score(flat_a, flat_b) == pytest.approx(flat_ssim(100.0, 120.0), abs=1e-12)


def test_matlab_ssim_is_skimages_map_inside_the_border_for_one_channel():
    # skimage and MATLAB use the same 11-tap Gaussian; they differ only in MATLAB keeping the 5-pixel border
    image, reference = smooth_image(4)[..., 0], add_noise(smooth_image(4), 12)[..., 0]
    _, skimage_map = structural_similarity(image, reference, full=True, **SKIMAGE_SETTINGS)
    matlab_map = metrics.matlab_ssim_map(image, reference)
    np.testing.assert_allclose(matlab_map[5:-5, 5:-5], skimage_map[5:-5, 5:-5], atol=1e-10)
    assert metrics.matlab_ssim_score(image, reference) == pytest.approx(matlab_map.mean())


def test_matlab_ssim_treats_rgb_as_a_volume():
    gray, gray_noisy = smooth_image(5)[..., 0], add_noise(smooth_image(5), 15)[..., 1]
    # Equal channels: the replicate-padded channel axis changes nothing, so the volume gives the 2-D result.
    as_rgb = np.repeat(gray[..., None], 3, axis=2), np.repeat(gray_noisy[..., None], 3, axis=2)
    assert metrics.matlab_ssim_score(*as_rgb) == pytest.approx(metrics.matlab_ssim_score(gray, gray_noisy), abs=1e-12)
    # Unequal channels: the 3-D window mixes them, so the volume is not the mean of per-channel 2-D SSIMs.
    image, noisy = smooth_image(6), add_noise(smooth_image(6), 15)
    per_channel = np.mean([metrics.matlab_ssim_score(image[..., c], noisy[..., c]) for c in range(3)])
    assert abs(metrics.matlab_ssim_score(image, noisy) - per_channel) > 1e-3


def test_ssim_on_real_viton_photos():
    folder = require(VITON_SAMPLES / 'test' / 'image')
    photo = np.asarray(Image.open(folder / '000001_0.jpg').convert('RGB'))
    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(1.5)))
    other_person = np.asarray(Image.open(folder / '000010_0.jpg').convert('RGB'))
    for score in (metrics.ssim_score, metrics.matlab_ssim_score):
        assert score(photo, photo) == pytest.approx(1.0, abs=1e-12)
        assert 1.0 > score(blurred, photo) > score(other_person, photo) > 0.0
    expected = structural_similarity(blurred, photo, channel_axis=-1, **SKIMAGE_SETTINGS)
    assert metrics.ssim_score(blurred, photo) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------- IoU

def test_mask_iou_of_constructed_masks():
    pred, target = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    pred[0:10, 0:10] = True        # 100 pixels
    target[5:15, 0:10] = True      # 100 pixels, 50 of them shared
    assert metrics.mask_iou(pred, target) == pytest.approx(50 / 150)
    assert metrics.mask_iou(pred, pred) == 1.0
    assert metrics.mask_iou(pred, ~pred) == 0.0
    assert metrics.mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


# ----------------------------------------------------------------------------------------------- FID

def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    closed_form = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed_form, rel=1e-10)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')    # pytorch-fid's use of scipy's sqrtm
def test_frechet_distance_matches_pytorch_fid_on_full_covariances():
    fid_score = pytest.importorskip('pytorch_fid.fid_score')
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_fid_from_features():
    # Fewer images than features, as in a small test set: singular covariances. The square roots of their
    # round-off eigenvalues (~1e-16) leave an error near 1e-7 against traces near 64.
    features = np.random.default_rng(2).normal(size=(50, 64))
    assert metrics.fid_from_features(features, features) == pytest.approx(0.0, abs=1e-5)
    shift = np.linspace(-1, 1, 64)      # same covariance: only the mean term remains
    assert metrics.fid_from_features(features, features + shift) == pytest.approx(np.sum(shift ** 2), abs=1e-5)


# ------------------------------------------------------------------------------------------------ IS

def test_inception_score_of_known_predictions():
    identical = np.tile([0.7, 0.2, 0.1], (20, 1))
    assert metrics.inception_score_from_probs(identical, splits=10) == pytest.approx((1.0, 0.0))
    classes = 5
    one_hot = np.eye(classes)
    assert metrics.inception_score_from_probs(one_hot, splits=1) == pytest.approx((classes, 0.0))
    # two splits, each holding every class once
    assert metrics.inception_score_from_probs(np.vstack([one_hot, one_hot]), splits=2) == pytest.approx((classes, 0.0))
    with pytest.raises(ValueError, match='at least 10'):
        metrics.inception_score_from_probs(one_hot, splits=10)


@pytest.fixture
def small_inception_input(monkeypatch):
    """Inception-v3 at 75x75, its smallest input, instead of 299x299: the same network and code path, 16 times
    cheaper on CI's CPU. Returns that side."""
    monkeypatch.setattr(evaluate, 'INCEPTION_SIZE', 75)
    return 75


def test_inception_classifier_preprocesses_as_torchvision_intends(small_inception_input):
    state_dict = random_state_dict(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False))
    classifier = evaluate.InceptionClassifier(state_dict)
    images = torch.rand(2, 3, HEIGHT, WIDTH)
    probs = classifier(images)
    # torchvision's own route for these weights: ImageNet-normalised input, converted by transform_input
    classifier.net.transform_input = True
    resized = F.interpolate(images, size=small_inception_input, mode='bilinear', align_corners=False)
    normalised = torchvision.transforms.functional.normalize(resized, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = F.softmax(classifier.net(normalised), dim=1)
    assert probs.shape == (2, 1000)
    torch.testing.assert_close(probs, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


def test_fid_inception_gives_pytorch_fids_features(monkeypatch, small_inception_input):
    pytorch_fid_inception = pytest.importorskip('pytorch_fid.inception')
    state_dict = random_state_dict(evaluate.fid_inception_network())
    # pytorch-fid's own network, handed the same (random) weights instead of downloading its own; it scales
    # [0,1] to [-1,1] itself, and its fixed 299x299 resize is replaced by the same resize as ours
    monkeypatch.setattr(pytorch_fid_inception, 'load_state_dict_from_url', lambda *args, **kwargs: state_dict)
    reference = pytorch_fid_inception.InceptionV3([3], resize_input=False).eval()
    images = torch.rand(2, 3, HEIGHT, WIDTH)
    resized = F.interpolate(images, size=small_inception_input, mode='bilinear', align_corners=False)
    with torch.no_grad():
        features = evaluate.FidInception(state_dict)(images)
        expected = reference(resized)[0].flatten(1)
    assert features.shape == (2, 2048)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------- LPIPS

def random_alexnet_features(seed=0):
    """Random weights of torchvision AlexNet's `features` (all that LPIPS uses), keyed as in its state dict."""
    features = random_state_dict(torchvision.models.alexnet(weights=None).features, seed)
    return {f'features.{key}': value for key, value in features.items()}


def random_lpips_model():
    """LPIPS with a random AlexNet trunk (and lpips's real linear layers): a stand-in, never the metric."""
    return evaluate.build_lpips_model(random_alexnet_features())


def test_build_lpips_model_puts_the_alexnet_weights_in_lpips_trunk():
    alexnet = random_alexnet_features(seed=1)
    model = evaluate.build_lpips_model(alexnet)
    # lpips's slices keep torchvision's layer names: features.3 is slice2's '3', features.10 slice5's '10'
    torch.testing.assert_close(getattr(model.net.slice2, '3').weight, alexnet['features.3.weight'])
    torch.testing.assert_close(getattr(model.net.slice5, '10').bias, alexnet['features.10.bias'])
    linear = torch.load(evaluate.lpips_linear_weights_path(), map_location='cpu', weights_only=True)
    torch.testing.assert_close(model.lin0.model[1].weight, linear['lin0.model.1.weight'])
    with pytest.raises(ValueError, match='not torchvision AlexNet'):
        evaluate.build_lpips_model({'classifier.1.weight': torch.zeros(1)})


def test_lpips_scorer_with_a_stand_in_backbone():
    model = random_lpips_model()
    scorer = evaluate.LpipsScorer(model)
    images = torch.rand(3, 3, 64, 48)
    others = torch.rand(3, 3, 64, 48)
    assert torch.equal(scorer.distances(images, images), torch.zeros(3))
    distances = scorer.distances(images, others)
    with torch.no_grad():
        expected = model(images * 2 - 1, others * 2 - 1).reshape(-1)
    assert distances.shape == (3,) and bool((distances > 0).all())
    torch.testing.assert_close(distances, expected)


def test_weights_are_looked_up_in_torch_hub_and_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    spec = evaluate.WEIGHTS['lpips']
    with pytest.raises(evaluate.MetricUnavailable, match='alexnet-owt-7be5be79.pth') as refusal:
        evaluate.locate_weights(spec)
    reason = str(refusal.value)     # names the flag and torch hub's folder, as well as the file
    assert '--lpips_weights' in reason and str(tmp_path / 'torch' / 'hub' / 'checkpoints') in reason
    with pytest.raises(evaluate.MetricUnavailable, match='alexnet-owt-7be5be79.pth'):
        evaluate.locate_weights(spec, tmp_path / 'elsewhere.pth')
    cached = tmp_path / 'torch' / 'hub' / 'checkpoints' / spec.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b'not weights')
    assert evaluate.locate_weights(spec) == cached
    result = evaluate.with_weights('lpips', None, evaluate.build_lpips_model, lambda model: {}, [])
    assert 'could not be loaded' in result['unavailable']


# ---------------------------------------------------------------------------------------- end to end

PERSONS = ('000001', '000002', '000003', '000004')
CLOTH_BOX = (64, 160, 48, 144)      # rows, columns of the cloth: multiples of 8, so JPEG keeps mask edges


def save_rgb(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def cloth_mask(shift=0):
    top, bottom, left, right = CLOTH_BOX
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[top:bottom, left + shift:right + shift] = 255
    return mask


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A dataroot of 4 persons and the results of a run on it. Try-ons of persons 1 and 2 are their photos
    (SSIM 1), of 3 and 4 noisy copies; the warp masks of persons 1-3 are their cloth region (IoU 1), of
    person 4 the region moved right by half its width (IoU 1/3)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'empty_torch_home'))   # no user's cached weights
    data = tmp_path / 'data' / 'test'
    tryon_dir = tmp_path / 'result' / 'tom_final.pth' / 'test' / 'try-on'
    mask_dir = tmp_path / 'result' / 'gmm_final.pth' / 'test' / 'warp-mask'
    label_map = np.zeros((HEIGHT, WIDTH), np.uint8)
    label_map[CLOTH_BOX[0]:CLOTH_BOX[1], CLOTH_BOX[2]:CLOTH_BOX[3]] = 5    # upper-clothes
    label_map[16:64, 72:120] = 13                                        # face
    parse = Image.fromarray(label_map).convert('P')     # palette PNG, as VITON's: pixel = label
    paired, unpaired = [], []
    for index, person in enumerate(PERSONS):
        im_name, own_cloth = f'{person}_0.jpg', f'{person}_1.jpg'
        save_rgb(smooth_image(10 + index), data / 'image' / im_name)
        save_rgb(smooth_image(20 + index), data / 'cloth' / own_cloth)
        (data / 'image-parse').mkdir(exist_ok=True)
        parse.save(data / 'image-parse' / f'{person}_0.png')
        paired.append((im_name, own_cloth))
        unpaired.append((im_name, f'{PERSONS[(index + 1) % len(PERSONS)]}_1.jpg'))
        tryon = tryon_dir / pair_key(im_name, own_cloth)
        tryon.parent.mkdir(parents=True, exist_ok=True)
        if index < 2:
            shutil.copy(data / 'image' / im_name, tryon)
        else:
            save_rgb(add_noise(np.asarray(Image.open(data / 'image' / im_name)), 20, seed=index), tryon)
        save_rgb(smooth_image(30 + index), tryon_dir / pair_key(*unpaired[-1]))
        save_rgb(cloth_mask(shift=48 if index == 3 else 0), mask_dir / pair_key(im_name, own_cloth))
    (tmp_path / 'data' / 'test_pairs_paired.txt').write_text(''.join(f'{p} {c}\n' for p, c in paired))
    (tmp_path / 'data' / 'test_pairs.txt').write_text(''.join(f'{p} {c}\n' for p, c in unpaired))
    return tmp_path


def run_main(run, *extra):
    return evaluate.main(['--dataroot', str(run / 'data'), '--result_dir', str(run / 'result'),
                          '--workers', '0', *extra])


def read_report(run):
    return json.loads((run / 'result' / 'tom_final.pth' / 'test' / 'metrics.json').read_text())


def test_ssim_and_iou_of_a_fake_run(fake_run, capsys):
    assert run_main(fake_run, '--metrics', 'ssim,iou') == 0
    report = read_report(fake_run)
    per_pair = report['per_pair']
    keys = [pair_key(f'{person}_0.jpg', f'{person}_1.jpg') for person in PERSONS]
    assert per_pair[keys[0]]['ssim'] == pytest.approx(1.0, abs=1e-12)
    assert per_pair[keys[1]]['ssim'] == pytest.approx(1.0, abs=1e-12)
    assert per_pair[keys[2]]['ssim'] < 0.9 and per_pair[keys[3]]['ssim'] < 0.9
    assert [per_pair[key]['iou'] for key in keys] == pytest.approx([1, 1, 1, 1 / 3])
    metrics = report['metrics']
    assert set(metrics) == {'ssim', 'iou'}
    assert metrics['iou']['value'] == pytest.approx((3 + 1 / 3) / 4) and metrics['iou']['num_images'] == 4
    assert metrics['ssim']['value'] == pytest.approx(np.mean([per_pair[key]['ssim'] for key in keys]))
    assert metrics['ssim']['implementation']['settings']['channel_axis'] == -1
    assert evaluate.aggregate(per_pair, 'ssim', keys[:2]) == {'value': pytest.approx(1.0), 'num_images': 2}
    this_run = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('this run'))
    assert this_run.split()[2:] == [f'{(3 + 1 / 3) / 4:.4f}', f'{metrics["ssim"]["value"]:.4f}', '-', '-', '-', '-']


def test_weight_metrics_are_unavailable_without_their_files(fake_run, capsys):
    assert run_main(fake_run, '--is_splits', '2') == 0
    out = capsys.readouterr().out
    metrics = read_report(fake_run)['metrics']
    assert metrics['ssim_matlab']['num_images'] == 4
    for metric, file_name, flag in (('lpips', 'alexnet-owt-7be5be79.pth', '--lpips_weights'),
                                    ('is', 'inception_v3_google-0cc3c7bd.pth', '--inception_weights'),
                                    ('fid', 'pt_inception-2015-12-05-6726825d.pth', '--fid_weights')):
        assert file_name in metrics[metric]['unavailable'] and flag in metrics[metric]['unavailable']
        assert file_name in out
    this_run = next(line for line in out.splitlines() if line.startswith('this run'))
    assert this_run.split()[-3:] == ['n/a', 'n/a', 'n/a']


class TinyClassifier(torch.nn.Module):
    """Stand-in for InceptionClassifier, built from a state dict: images [B,3,H,W] in [0,1] -> probs [B,10]."""

    def __init__(self, state_dict):
        super().__init__()
        self.fc = torch.nn.Linear(3, 10)
        self.load_state_dict(state_dict)

    def forward(self, images):
        return F.softmax(self.fc(images.mean(dim=(2, 3)) * 20), dim=1)


class TinyFeatures(TinyClassifier):
    """Stand-in for FidInception: images [B,3,H,W] in [0,1] -> features [B,10]."""

    def forward(self, images):
        return self.fc(images.mean(dim=(2, 3)))


def image_tensor(paths):
    """Image files -> float [N,3,H,W] in [0,1]."""
    return torch.stack([torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1)
                        for path in paths]).float() / 255


def test_explicit_weights_reach_each_metric_and_non_standard_ones_are_flagged(fake_run, monkeypatch):
    # The real LPIPS network with a random trunk; stand-ins for the two Inception networks, whose seconds per
    # image on a CPU would make this test slow (their own tests above compare them with the references).
    monkeypatch.setattr(evaluate, 'InceptionClassifier', TinyClassifier)
    monkeypatch.setattr(evaluate, 'FidInception', TinyFeatures)
    weights = {'--lpips_weights': random_alexnet_features(),
               '--inception_weights': random_state_dict(torch.nn.Sequential(torch.nn.Linear(3, 10)), seed=1),
               '--fid_weights': random_state_dict(torch.nn.Sequential(torch.nn.Linear(3, 10)), seed=2)}
    arguments = []
    for flag, state_dict in weights.items():
        path = fake_run / f'random{flag}.pth'
        torch.save({key.replace('0.', 'fc.', 1) if flag != '--lpips_weights' else key: value
                    for key, value in state_dict.items()}, path)
        arguments += [flag, str(path)]
    assert run_main(fake_run, '--metrics', 'lpips,is,fid', '--is_splits', '2', '--batch_size', '3', *arguments) == 0
    report = read_report(fake_run)
    scored = report['metrics']
    for metric in ('lpips', 'is', 'fid'):
        assert scored[metric]['num_images'] == 4
        assert scored[metric]['weights'][0]['sha256_matches_standard_file'] is False
        assert len(scored[metric]['weights'][0]['sha256_prefix']) == 16
    assert sum('is not the standard' in note for note in report['notes']) == 3

    data, tryon_dir = fake_run / 'data' / 'test', fake_run / 'result' / 'tom_final.pth' / 'test' / 'try-on'
    unpaired = [line.split() for line in (fake_run / 'data' / 'test_pairs.txt').read_text().splitlines()]
    tryons = image_tensor([tryon_dir / pair_key(*pair) for pair in unpaired])
    persons = image_tensor(sorted((data / 'image').iterdir()))
    with torch.no_grad():
        classifier = TinyClassifier(torch.load(arguments[3], weights_only=True))
        features = TinyFeatures(torch.load(arguments[5], weights_only=True))
        expected_is = metrics.inception_score_from_probs(classifier(tryons).double().numpy(), splits=2)
        expected_fid = metrics.fid_from_features(features(tryons).double().numpy(), features(persons).double().numpy())
    assert (scored['is']['value'], scored['is']['std']) == pytest.approx(expected_is, rel=1e-5)
    assert scored['fid']['value'] == pytest.approx(expected_fid, rel=1e-5, abs=1e-6)
    assert scored['fid']['num_real_images'] == 4

    truths = image_tensor([data / 'image' / f'{person}_0.jpg' for person in PERSONS])
    paired_tryons = image_tensor([tryon_dir / pair_key(f'{person}_0.jpg', f'{person}_1.jpg') for person in PERSONS])
    expected_lpips = evaluate.LpipsScorer(evaluate.build_lpips_model(weights['--lpips_weights'])).distances(
        paired_tryons, truths)
    assert scored['lpips']['value'] == pytest.approx(expected_lpips.mean().item(), rel=1e-5)
    assert expected_lpips[0] == 0 and expected_lpips[1] == 0     # try-on = ground truth


def test_missing_results_fail_unless_allowed(fake_run, capsys):
    tryon_dir = fake_run / 'result' / 'tom_final.pth' / 'test' / 'try-on'
    (tryon_dir / pair_key('000003_0.jpg', '000003_1.jpg')).unlink()
    assert run_main(fake_run, '--metrics', 'ssim') == 2
    error = capsys.readouterr().err
    assert '1 of 4 TOM try-on results of test_pairs_paired.txt are missing' in error
    assert 'python test.py --stage TOM' in error and '--data_list test_pairs_paired.txt' in error
    assert '--allow_missing' in error
    assert run_main(fake_run, '--metrics', 'ssim', '--allow_missing') == 0
    report = read_report(fake_run)
    assert report['metrics']['ssim']['num_images'] == 3
    assert any('1 of 4' in note for note in report['notes'])


def test_paired_list_is_derived_from_viton_naming_when_absent(fake_run, capsys):
    (fake_run / 'data' / 'test_pairs_paired.txt').unlink()
    (fake_run / 'data' / 'test' / 'cloth' / '000004_1.jpg').unlink()   # person 4's own cloth is unknown
    out_file = fake_run / 'scores.json'
    assert run_main(fake_run, '--metrics', 'iou', '--out', str(out_file)) == 0
    report = json.loads(out_file.read_text())
    assert report['pair_lists']['paired'] == {
        'path': str(fake_run / 'data' / 'test_pairs_paired.txt'), 'derived': True,
        'derived_from': 'test_pairs.txt', 'pairs': 3}
    assert report['metrics']['iou']['value'] == 1.0 and report['metrics']['iou']['num_images'] == 3
    assert 'derived 3 same-cloth pairs' in capsys.readouterr().out
    (fake_run / 'result' / 'gmm_final.pth' / 'test' / 'warp-mask' / pair_key('000002_0.jpg', '000002_1.jpg')).unlink()
    assert run_main(fake_run, '--metrics', 'iou') == 2
    error = capsys.readouterr().err     # the command to make the masks, and the list it needs first
    assert '--stage GMM' in error and f"first write {fake_run / 'data' / 'test_pairs_paired.txt'}" in error


def test_write_paired_list_writes_the_derived_list_once_and_never_replaces_one(fake_run, capsys):
    listed = fake_run / 'data' / 'test_pairs_paired.txt'
    listed.unlink()
    (fake_run / 'data' / 'test' / 'cloth' / '000004_1.jpg').unlink()   # person 4's own cloth is unknown
    assert run_main(fake_run, '--write_paired_list') == 0
    assert listed.read_text() == '000001_0.jpg 000001_1.jpg\n000002_0.jpg 000002_1.jpg\n000003_0.jpg 000003_1.jpg\n'
    assert f'wrote {listed}: derived 3 same-cloth pairs' in capsys.readouterr().out
    listed.write_text('000002_0.jpg 000002_1.jpg\n')       # the user's own list
    assert run_main(fake_run, '--write_paired_list') == 0
    assert listed.read_text() == '000002_0.jpg 000002_1.jpg\n'
    assert 'exists: kept as it is' in capsys.readouterr().out


def test_write_paired_list_says_so_in_one_line_when_no_pair_can_be_derived(fake_run, capsys):
    (fake_run / 'data' / 'test_pairs_paired.txt').unlink()
    for cloth in (fake_run / 'data' / 'test' / 'cloth').iterdir():
        cloth.unlink()
    assert run_main(fake_run, '--write_paired_list') == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and 'no same-cloth pair could be derived from test_pairs.txt' in error
    assert not (fake_run / 'data' / 'test_pairs_paired.txt').exists()
