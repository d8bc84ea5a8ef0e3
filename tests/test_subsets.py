"""Difficulty subsets of evaluate.py (textured clothes, occluded persons), results of another size, and the
worst-cases mode of smart_show_test_result.py.

Membership is checked on constructed cloths and parse maps, and on a tiny synthetic run against the generator's
own record of which shirts are patterned and whose arms cross the torso.
"""
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
import metrics
import smart_show_test_result
import subsets
import synthetic_data
from conftest import VITON_SAMPLES, require
from cp_dataset import load_parse_labels, load_photo, pair_key, read_pairs
from test_evaluate import (TinyClassifier, TinyFeatures, image_tensor, random_alexnet_features, random_state_dict,
                           smooth_image)

HEIGHT, WIDTH = 256, 192
LIGHT, DARK = (235, 225, 210), (40, 60, 150)
BODY, SLEEVES, NECKLINE = (60, 220, 52, 140), (60, 110, 20, 172), (60, 76, 80, 112)   # rows, columns of a T-shirt
SHOULDERS, HIPS = ((60, 70), (132, 70)), ((72, 170), (120, 170))   # (x, y) of R and L
PATTERNS = ('stripes_h', 'stripes_v', 'checks')     # synthetic textures that cover the whole shirt


def save_jpeg(array, path):
    """JPEG at quality 75, as VITON's cloths and masks: the cloth's outline rings a little."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=75)


def t_shirt_silhouette(scale=1):
    """bool [256,192] * scale: a T-shirt's body and sleeves, with a neckline cut out."""
    silhouette = np.zeros((HEIGHT * scale, WIDTH * scale), bool)
    for (top, bottom, left, right), value in ((BODY, True), (SLEEVES, True), (NECKLINE, False)):
        silhouette[top * scale:bottom * scale, left * scale:right * scale] = value
    return silhouette


def constructed_cloth(folder, pattern, scale=1):
    """A T-shirt on white and its mask, JPEG, scale x 256x192; pattern: 'plain' (dark blue: a sharp outline
    against the white) or 'stripes' (horizontal, dark blue and beige, 12 * scale pixels a period). Returns the
    paths."""
    silhouette = t_shirt_silhouette(scale)
    cloth = np.full(silhouette.shape + (3,), 255, np.uint8)
    cloth[silhouette] = DARK
    if pattern == 'stripes':
        light_rows = (np.arange(silhouette.shape[0]) // (6 * scale)) % 2 == 1
        cloth[silhouette & light_rows[:, None]] = LIGHT
    cloth_path, mask_path = folder / f'cloth_{pattern}_{scale}.jpg', folder / f'mask_{pattern}_{scale}.jpg'
    save_jpeg(cloth, cloth_path)
    save_jpeg(silhouette.astype(np.uint8) * 255, mask_path)
    return cloth_path, mask_path


def test_striped_cloth_is_textured_and_plain_one_is_not(tmp_path):
    plain = subsets.cloth_texture_energy(*constructed_cloth(tmp_path, 'plain'))
    striped = subsets.cloth_texture_energy(*constructed_cloth(tmp_path, 'stripes'))
    assert plain < 0.5 * subsets.TEXTURED_THRESHOLD
    assert striped > 2 * subsets.TEXTURED_THRESHOLD
    # measured at VITON's size: the same stripes on a cloth twice as large read about the same
    assert subsets.cloth_texture_energy(*constructed_cloth(tmp_path, 'stripes', scale=2)) == pytest.approx(
        striped, rel=0.2)


def test_the_outline_of_a_plain_cloth_does_not_count(tmp_path, monkeypatch):
    paths = constructed_cloth(tmp_path, 'plain')
    assert subsets.cloth_texture_energy(*paths) < subsets.TEXTURED_THRESHOLD
    monkeypatch.setattr(subsets, 'TEXTURE_EROSION_PIXELS', 0)   # the whole mask, outline included
    assert subsets.cloth_texture_energy(*paths) > subsets.TEXTURED_THRESHOLD


def test_stripes_of_equal_brightness_are_textured():
    # two colours of one gray level (ITU-R 601 luma): no edge in grayscale, an edge in colour
    luma = np.array([0.299, 0.587, 0.114])
    red = np.array([0.75, 0.36, 0.41])
    green = np.array([0.28, (red @ luma - 0.28 * luma[0] - 0.36 * luma[2]) / luma[1], 0.36])
    image = np.broadcast_to(np.where((np.arange(64) // 6 % 2 == 0)[:, None, None], red, green), (64, 48, 3))
    assert subsets.colour_gradient_magnitude(image @ luma[:, None]).max() < 1e-9
    assert subsets.colour_gradient_magnitude(image)[5:-5].mean() > subsets.TEXTURED_THRESHOLD


def test_gradient_magnitude_of_a_step():
    # a step of height c between flat areas reads c/2 on the two pixels beside it, 0 elsewhere
    image = np.zeros((20, 20, 3))
    image[:, 10:] = 0.4
    magnitude = subsets.colour_gradient_magnitude(image)
    np.testing.assert_allclose(magnitude[5, 8:12], [0, 0.2, 0.2, 0])


# --------------------------------------------------------------------------------------------- occlusion

def person_labels(arms):
    """A LIP label map [256,192]: upper-clothes (5) on the torso, a face (13), and arms (14, 15) hanging at the
    sides ('sides') or with the forearms folded across the belly ('crossed')."""
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[20:60, 76:116] = 13
    labels[64:180, 56:136] = 5
    labels[64:90, 40:56] = labels[64:90, 136:152] = 5      # sleeves
    if arms == 'sides':       # right arm on the image's left; both touch the torso's outline
        labels[90:190, 44:63], labels[90:190, 129:148] = 15, 14
    else:
        labels[90:130, 44:63], labels[90:130, 129:148] = 15, 14          # upper arms
        labels[125:145, 44:96], labels[125:145, 96:148] = 15, 14        # forearms across the belly
    return labels


def write_person(folder, arms, missing_keypoints=(), scale=1.0):
    """The parse map (palette PNG) and OpenPose JSON of a constructed person; the keypoints `missing_keypoints`
    are 0, 0, 0 and the others multiplied by `scale` (a photo of another size). Returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    parse_path, pose_path = folder / f'{arms}.png', folder / f'{arms}_keypoints.json'
    Image.fromarray(person_labels(arms)).convert('P').save(parse_path)
    keypoints = np.zeros((18, 3))
    keypoints[1] = (96, 64, 0.9)
    for index, (x, y) in zip((2, 5, 8, 11), SHOULDERS + HIPS):
        keypoints[index] = (x * scale, y * scale, 0.9)
    keypoints[list(missing_keypoints)] = 0
    pose_path.write_text(json.dumps({'people': [{'pose_keypoints': keypoints.ravel().tolist()}]}))
    return parse_path, pose_path


def test_arms_across_the_torso_occlude_it_and_arms_at_the_sides_do_not(tmp_path):
    crossed, found_by = subsets.torso_occlusion(*write_person(tmp_path, 'crossed'))
    sides, _ = subsets.torso_occlusion(*write_person(tmp_path, 'sides'))
    assert found_by == 'keypoints'
    assert crossed > 2 * subsets.OCCLUDED_THRESHOLD
    assert 0 < sides < 0.5 * subsets.OCCLUDED_THRESHOLD      # the shoulder joints overlap the quadrilateral


def test_keypoints_of_a_larger_photo_are_scaled_to_the_parse_map(tmp_path):
    expected = subsets.torso_occlusion(*write_person(tmp_path / 'a', 'crossed'))
    scaled = write_person(tmp_path / 'b', 'crossed', scale=2.0)
    assert subsets.torso_occlusion(*scaled, photo_size=(2 * WIDTH, 2 * HEIGHT)) == expected
    assert subsets.torso_occlusion(*scaled) != expected     # unscaled, the quadrilateral is another region


@pytest.mark.parametrize('missing', [(8,), (2, 5, 8, 11)])
def test_missing_torso_keypoints_fall_back_to_the_cloth_box(tmp_path, missing):
    crossed, found_by = subsets.torso_occlusion(*write_person(tmp_path, 'crossed', missing))
    sides, _ = subsets.torso_occlusion(*write_person(tmp_path, 'sides', missing))
    assert found_by == 'cloth box'
    assert crossed > subsets.OCCLUDED_THRESHOLD > sides
    # the central half of the columns of the cloth labels' bounding box (columns 40..151), all its rows (64..179)
    labels = person_labels('sides')
    region, _ = subsets.torso_region(labels, np.zeros((18, 3)))
    expected = np.zeros_like(region)
    expected[64:180, 68:124] = True
    np.testing.assert_array_equal(region, expected)


def test_no_keypoints_and_no_cloth_is_no_torso(tmp_path):
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[100:150, 40:150] = 14
    region, found_by = subsets.torso_region(labels, np.zeros((18, 3)))
    assert found_by == 'none' and not region.any()
    parse_path, pose_path = write_person(tmp_path, 'sides', missing_keypoints=range(18))
    Image.fromarray(labels).convert('P').save(parse_path)
    assert subsets.torso_occlusion(parse_path, pose_path) == (0.0, 'none')


# ------------------------------------------------------------------------------------------- IS splits

def test_subset_inception_score_keeps_the_runs_images_per_split():
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=100)     # 10 splits of 10 images
    result = evaluate.subset_inception_score(probs[:35], run_images=100, run_splits=10)
    expected = metrics.inception_score_from_probs(probs[:35], splits=3)
    assert result == {'value': expected[0], 'std': expected[1], 'splits': 3, 'num_images': 35}
    with pytest.raises(evaluate.MetricUnavailable, match='fewer than the 10 of one split'):
        evaluate.subset_inception_score(probs[:9], run_images=100, run_splits=10)


# ------------------------------------------------------------------------------------ a synthetic run

@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    """6 synthetic test persons, half with patterned shirts, half with crossing arms (seed 0: 2 patterned shirts,
    1 logo, 3 plain; 3 persons with crossing arms)."""
    root = tmp_path_factory.mktemp('synthetic') / 'data'
    synthetic_data.generate_dataset(str(root), n_train=1, n_test=6, seed=0, textured_share=0.5, occluded_share=0.5)
    return root


@pytest.fixture
def synthetic_run(synthetic_root, tmp_path):
    """A copy of the synthetic data and the results of a fake run on it: each same-cloth try-on is the person
    photo with noise of its own strength, each warp mask the person's cloth region moved right by its own shift;
    unpaired try-ons are smooth random images."""
    root = tmp_path / 'data'
    shutil.copytree(synthetic_root, root)
    tryon_dir = tmp_path / 'result' / 'tom_final.pth' / 'test' / 'try-on'
    mask_dir = tmp_path / 'result' / 'gmm_final.pth' / 'test' / 'warp-mask'
    tryon_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (im_name, c_name) in enumerate(read_pairs(root / 'test_pairs_paired.txt')):
        photo = np.asarray(Image.open(root / 'test' / 'image' / im_name), dtype=np.float64)
        noisy = np.clip(photo + rng.normal(0, 4 + 6 * index, photo.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tryon_dir / pair_key(im_name, c_name))
        labels = load_parse_labels(str(root / 'test' / 'image-parse' / im_name.replace('.jpg', '.png')),
                                   (WIDTH, HEIGHT))
        region = np.roll(np.isin(labels, (5, 6, 7)), 3 * index, axis=1)
        # PNG data under the pair's .jpg name: exact edges, and Pillow reads files by their content
        Image.fromarray(region.astype(np.uint8) * 255).save(mask_dir / pair_key(im_name, c_name), format='PNG')
    for index, pair in enumerate(read_pairs(root / 'test_pairs_unpaired.txt')):
        Image.fromarray(smooth_image(100 + index)).save(tryon_dir / pair_key(*pair))
    return tmp_path


def expected_subsets(root, list_name):
    """The generator's truth: {'textured': keys whose cloth has an all-over pattern, 'occluded': keys whose
    person's arms cross the torso}, in list order."""
    persons = json.loads((root / 'test' / 'warp_params.json').read_text())['persons']
    pairs = read_pairs(root / list_name)
    return {'textured': [pair_key(*pair) for pair in pairs if persons[pair[1][:6]]['texture'] in PATTERNS],
            'occluded': [pair_key(*pair) for pair in pairs if persons[pair[0][:6]]['arms_cross']]}


def run_evaluate(run, *extra):
    return evaluate.main(['--dataroot', str(run / 'data'), '--result_dir', str(run / 'result'), '--workers', '0',
                          *extra])


def read_report(run):
    return json.loads((run / 'result' / 'tom_final.pth' / 'test' / 'metrics.json').read_text())


def test_difficulty_subsets_of_the_synthetic_persons(synthetic_root):
    pairs = read_pairs(synthetic_root / 'test_pairs.txt')
    members = subsets.difficulty_subsets(synthetic_root, 'test', pairs)
    assert members == expected_subsets(synthetic_root, 'test_pairs.txt')
    assert 0 < len(members['textured']) < len(pairs) and 0 < len(members['occluded']) < len(pairs)
    assert subsets.difficulty_subsets(synthetic_root, 'test', pairs, textured_threshold=0,
                                      occluded_threshold=1) == {'textured': [pair_key(*p) for p in pairs],
                                                                'occluded': []}


def test_evaluate_reports_every_metric_on_each_subset(synthetic_run, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(synthetic_run / 'empty_torch_home'))
    monkeypatch.setattr(evaluate, 'InceptionClassifier', TinyClassifier)
    monkeypatch.setattr(evaluate, 'FidInception', TinyFeatures)
    weights = []
    for flag, state_dict in (('--lpips_weights', random_alexnet_features()),
                             ('--inception_weights', random_state_dict(torch.nn.Linear(3, 10), seed=1)),
                             ('--fid_weights', random_state_dict(torch.nn.Linear(3, 10), seed=2))):
        path = synthetic_run / f'random{flag}.pth'
        torch.save(state_dict if flag == '--lpips_weights' else {f'fc.{k}': v for k, v in state_dict.items()}, path)
        weights += [flag, str(path)]
    assert run_evaluate(synthetic_run, '--is_splits', '4', *weights) == 0
    report = read_report(synthetic_run)
    root = synthetic_run / 'data'
    paired, unpaired = expected_subsets(root, 'test_pairs_paired.txt'), expected_subsets(root, 'test_pairs.txt')
    per_pair = report['per_pair']
    tryon_dir = synthetic_run / 'result' / 'tom_final.pth' / 'test' / 'try-on'
    with torch.no_grad():
        classifier = TinyClassifier(torch.load(weights[3], weights_only=True))
        features = TinyFeatures(torch.load(weights[5], weights_only=True))
        real = features(image_tensor(sorted((root / 'test' / 'image').iterdir()))).double().numpy()
    for subset in ('textured', 'occluded'):
        entry = report['subsets'][subset]
        assert entry['pairs'] == {'paired': paired[subset], 'unpaired': unpaired[subset]}
        assert entry['size'] == {'paired': len(paired[subset]), 'unpaired': len(unpaired[subset])}
        assert entry['definition']['threshold'] == {'textured': subsets.TEXTURED_THRESHOLD,
                                                    'occluded': subsets.OCCLUDED_THRESHOLD}[subset]
        for metric in ('iou', 'ssim', 'ssim_matlab', 'lpips'):
            values = [per_pair[key][metric] for key in paired[subset]]
            assert entry['metrics'][metric] == {'value': pytest.approx(np.mean(values)), 'num_images': len(values)}
        with torch.no_grad():
            tryons = image_tensor([tryon_dir / key for key in unpaired[subset]])
            probs, fake = classifier(tryons).double().numpy(), features(tryons).double().numpy()
        splits = len(probs) // (12 // 4)      # the whole run's IS: 12 unpaired try-ons in 4 splits of 3
        assert entry['metrics']['is']['splits'] == splits
        assert (entry['metrics']['is']['value'], entry['metrics']['is']['std']) == pytest.approx(
            metrics.inception_score_from_probs(probs, splits), rel=1e-5)
        assert entry['metrics']['fid']['value'] == pytest.approx(metrics.fid_from_features(fake, real), rel=1e-5)
        assert entry['metrics']['fid']['num_real_images'] == 6
    measures = report['per_pair_difficulty']
    assert set(measures) == set(per_pair) | {pair_key(*pair) for pair in read_pairs(root / 'test_pairs.txt')}
    assert all(row['torso_region'] == 'keypoints' and 0 <= row['torso_occlusion'] <= 1 and row['texture_energy'] >= 0
               for row in measures.values())
    lines = capsys.readouterr().out.splitlines()
    textured_row = next(line for line in lines if line.startswith('  textured ('))
    assert f'({len(paired["textured"])} paired, {len(unpaired["textured"])} unpaired)' in textured_row
    assert f'{report["subsets"]["textured"]["metrics"]["ssim"]["value"]:.4f}' in textured_row


def test_subsets_are_unavailable_without_their_data_files(synthetic_run, capsys):
    im_name, _ = read_pairs(synthetic_run / 'data' / 'test_pairs_paired.txt')[0]
    pose = synthetic_run / 'data' / 'test' / 'pose' / im_name.replace('.jpg', '_keypoints.json')
    pose.unlink()
    assert run_evaluate(synthetic_run, '--metrics', 'ssim') == 0
    report = read_report(synthetic_run)
    assert report['metrics']['ssim']['num_images'] == 6
    assert all('unavailable' in entry for entry in report['subsets'].values())
    assert any('difficulty subsets not computed' in note and str(pose) in note for note in report['notes'])
    assert not any(line.startswith('  textured') for line in capsys.readouterr().out.splitlines())


# ------------------------------------------------------------------------------- results of another size

def resize_results(run, size):
    """Resize every try-on (LANCZOS) and warp mask (NEAREST) of the run to `size` (W, H), in place."""
    for folder, resample, file_format in (('tom_final.pth/test/try-on', Image.LANCZOS, 'JPEG'),
                                          ('gmm_final.pth/test/warp-mask', Image.NEAREST, 'PNG')):
        for path in (run / 'result' / folder).iterdir():
            Image.open(path).resize(size, resample).save(path, format=file_format, quality=95)


def test_results_at_512x384_are_scored_against_resized_ground_truth(synthetic_run):
    resize_results(synthetic_run, (2 * WIDTH, 2 * HEIGHT))
    assert run_evaluate(synthetic_run, '--metrics', 'ssim,iou') == 0
    report = read_report(synthetic_run)
    data = synthetic_run / 'data' / 'test'
    im_name, c_name = read_pairs(synthetic_run / 'data' / 'test_pairs_paired.txt')[0]
    key = pair_key(im_name, c_name)
    tryon = np.asarray(Image.open(synthetic_run / 'result' / 'tom_final.pth' / 'test' / 'try-on' / key).convert('RGB'))
    truth = np.asarray(load_photo(str(data / 'image' / im_name), (2 * WIDTH, 2 * HEIGHT))[0])
    assert report['per_pair'][key]['ssim'] == pytest.approx(metrics.ssim_score(tryon, truth), abs=1e-12)
    assert report['per_pair'][key]['iou'] == 1.0       # the exact cloth region, enlarged as the parse map is
    assert any('6 of 6 try-on results are of another size' in note and 'LANCZOS' in note for note in report['notes'])
    assert any('6 of 6 warp masks' in note and 'NEAREST' in note for note in report['notes'])


def test_results_of_another_aspect_ratio_are_refused(synthetic_run, capsys):
    resize_results(synthetic_run, (WIDTH, WIDTH))
    assert run_evaluate(synthetic_run, '--metrics', 'ssim') == 2
    error = capsys.readouterr().err
    assert 'size 192x192' in error and 'is 192x256, another aspect ratio' in error


# ---------------------------------------------------------------------------------------- worst cases

def show(run, *extra):
    return smart_show_test_result.main(['--dataroot', str(run / 'data'), '--result_dir', str(run / 'result'),
                                        '--out_worst', str(run / 'worst'), '--workers', '0', *extra])


@pytest.mark.parametrize('metric', ['ssim', 'iou'])
def test_worst_cases_are_written_per_subset_in_ascending_order(synthetic_run, metric):
    assert show(synthetic_run, '--worst', '2', '--worst_by', metric) == 0
    root = synthetic_run / 'data'
    layout = evaluate.RunLayout(root, 'test', synthetic_run / 'result' / 'tom_final.pth' / 'test' / 'try-on',
                                synthetic_run / 'result' / 'gmm_final.pth' / 'test' / 'warp-mask')
    scores = {key: row[metric] for key, row in evaluate.per_pair_scores(
        layout, read_pairs(root / 'test_pairs_paired.txt'), [metric]).items()}
    subsets = {'all': list(scores), **expected_subsets(root, 'test_pairs_paired.txt')}
    for subset, keys in subsets.items():
        names = sorted(path.name for path in (synthetic_run / 'worst' / subset).iterdir())
        expected = sorted(keys, key=scores.get)[:2]
        assert len(names) == min(2, len(keys))
        assert names == [f'{rank:02d}_{metric}{scores[key]:.3f}_{key[:-4]}.png' for rank, key in enumerate(expected, 1)]
        ranked = [float(re.match(rf'\d\d_{metric}([0-9.]+)_', name).group(1)) for name in names]
        assert ranked == sorted(ranked)
        width, height = smart_show_test_result.PANEL_SIZE     # the verbose strip: 2 labelled rows of 5 panels
        assert Image.open(synthetic_run / 'worst' / subset / names[0]).size == (
            5 * width, 2 * (height + smart_show_test_result.LABEL_HEIGHT))


def test_worst_cases_refuse_a_used_folder(synthetic_run, capsys):
    (synthetic_run / 'worst' / 'textured').mkdir(parents=True)
    (synthetic_run / 'worst' / 'textured' / 'old.png').write_bytes(b'')
    assert show(synthetic_run, '--worst', '1') == 2
    assert 'already holds files' in capsys.readouterr().err
    assert [path.name for path in (synthetic_run / 'worst' / 'textured').iterdir()] == ['old.png']


# ------------------------------------------------------------------------------------------ real data

def test_subset_measures_on_every_real_test_pair():
    root = require(VITON_SAMPLES)
    pairs = read_pairs(root / 'test_pairs.txt')
    measures = subsets.difficulty_measures(root, 'test', pairs)
    assert list(measures) == [pair_key(*pair) for pair in pairs]
    assert all(row['torso_region'] == 'keypoints' for row in measures.values())
    assert all(0 <= row['torso_occlusion'] <= 1 and 0 <= row['texture_energy'] < 1 for row in measures.values())
    members = subsets.subset_members(measures)
    # as seen in the photos: a leopard print and red stripes are textured, a plain black tank top is not;
    # 000097 holds both forearms across the chest, 000001 lets her arms hang
    assert {'000339_0_001879_1.jpg', '000330_0_000330_1.jpg'} <= set(members['textured'])
    assert '000183_0_019332_1.jpg' not in members['textured']
    assert '000097_0_000097_1.jpg' in members['occluded'] and '000001_0_000001_1.jpg' not in members['occluded']
