"""tryon.py end to end: one person photo of another size, one or several clothes, checkpoints trained for two
steps; its try-on against the same inputs run through prepare_data.py and test.py by hand, the paste-back, and
its one-line errors."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import prepare_data
import test as test_script
import train
import tryon
from conftest import pair_keyed_warps_from_clothes
from cp_dataset import pair_key
from synthetic_data import generate_dataset


def train_two_steps(dataroot, checkpoint_dir, stage, *extra):
    assert train.main(['--name', stage.lower(), '--stage', stage, '--dataroot', str(dataroot), '--gpu_ids', '-1',
                       '--workers', '0', '--batch-size', '2', '--keep_step', '2', '--decay_step', '0',
                       '--seed', '1', '--checkpoint_dir', str(checkpoint_dir),
                       '--tensorboard_dir', str(checkpoint_dir / 'tb'), *extra]) == 0
    return checkpoint_dir / stage.lower() / f'{stage.lower()}_final.pth'


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp('tryon_models')
    generate_dataset(str(root / 'data'), n_train=4, n_test=2, seed=7)
    pair_keyed_warps_from_clothes(root / 'data', (('train', 'train_pairs.txt'),))
    return {'gmm': train_two_steps(root / 'data', root / 'checkpoints', 'GMM'),
            'tom': train_two_steps(root / 'data', root / 'checkpoints', 'TOM', '--vgg_init', 'random'),
            'data': root / 'data'}


@pytest.fixture
def photos(checkpoints, tmp_path):
    """A synthetic test person at 2.5x its size on a wider canvas (300x640, portrait; its pose and parse moved
    with it), and two clothes as product shots of other sizes; in photos/{persons,poses,parses,clothes}."""
    test_dir = checkpoints['data'] / 'test'
    person = sorted((test_dir / 'image').iterdir())[0]
    folders = {name: tmp_path / 'photos' / name for name in ('persons', 'poses', 'parses', 'clothes')}
    for folder in folders.values():
        folder.mkdir(parents=True)
    scale, pad = 2.5, 30     # 192x256 -> 480x640, then 30 px of white on either side
    canvas = Image.new('RGB', (480 + 2 * pad, 640), (255, 255, 255))
    canvas.paste(Image.open(person).resize((480, 640), Image.Resampling.LANCZOS), (pad, 0))
    canvas.save(folders['persons'] / 'me.jpg', quality=95)
    parse = Image.open(test_dir / 'image-parse' / (person.stem + '.png'))
    big_parse = Image.new(parse.mode, canvas.size, 0)
    big_parse.paste(parse.resize((480, 640), Image.Resampling.NEAREST), (pad, 0))
    if parse.mode == 'P':
        big_parse.putpalette(parse.getpalette())
    big_parse.save(folders['parses'] / 'me.png')
    pose = json.loads((test_dir / 'pose' / (person.stem + '_keypoints.json')).read_text())
    points = np.asarray(pose['people'][0]['pose_keypoints'], dtype=float).reshape(-1, 3)
    present = points[:, 2] > 0
    points[present, 0] = points[present, 0] * scale + pad
    points[present, 1] *= scale
    pose['people'][0]['pose_keypoints'] = points.ravel().tolist()
    (folders['poses'] / 'me_keypoints.json').write_text(json.dumps(pose))
    for index, cloth in enumerate(sorted((test_dir / 'cloth').iterdir())[:2]):
        size = (400, 500) if index == 0 else (600, 600)
        shot, width = Image.new('RGB', size, (255, 255, 255)), size[1] * 192 // 256
        shot.paste(Image.open(cloth).resize((width, size[1])), ((size[0] - width) // 2, 0))
        shot.save(folders['clothes'] / f'shirt{index}.jpg', quality=95)
    return folders


def tryon_argv(checkpoints, photos, out, clothes=('shirt0.jpg',), *extra):
    return ['--person', str(photos['persons'] / 'me.jpg'), '--pose', str(photos['poses'] / 'me_keypoints.json'),
            '--parse', str(photos['parses'] / 'me.png'),
            '--cloth', *[str(photos['clothes'] / name) for name in clothes],
            '--gmm', str(checkpoints['gmm']), '--tom', str(checkpoints['tom']), '--out', str(out), *extra]


def hashes(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob('*')) if path.is_file()}


def by_hand(checkpoints, photos, root):
    """The same inputs through prepare_data.py's command and test.py's, as the README's steps run them; returns
    the try-on folder."""
    data = root / 'data'
    assert prepare_data.main(['--persons', str(photos['persons']), '--clothes', str(photos['clothes']),
                              '--poses', str(photos['poses']), '--parses', str(photos['parses']),
                              '--out', str(data), '--datamode', 'test']) == 0
    common = ['--dataroot', str(data), '--datamode', 'test', '--data_list', 'test_pairs.txt', '--workers', '0',
              '--gpu_ids', '-1', '--result_dir', str(root / 'result'), '--tensorboard_dir', str(root / 'tb')]
    assert test_script.main(['--stage', 'GMM', '--checkpoint', str(checkpoints['gmm']), *common]) == 0
    for folder in ('warp-cloth', 'warp-mask'):
        shutil.copytree(root / 'result' / 'gmm_final.pth' / 'test' / folder, data / 'test' / folder)
    assert test_script.main(['--stage', 'TOM', '--checkpoint', str(checkpoints['tom']), *common]) == 0
    return root / 'result' / 'tom_final.pth' / 'test' / 'try-on'


def test_one_command_gives_the_try_on_of_the_step_by_step_pipeline_pasted_back(checkpoints, photos, tmp_path):
    before = hashes(tmp_path / 'photos')
    out = tmp_path / 'out'

    assert tryon.main(tryon_argv(checkpoints, photos, out, ('shirt0.jpg', 'shirt1.jpg'))) == 0

    assert sorted(path.name for path in out.iterdir()) == sorted(
        f'me_shirt{i}_{kind}' for i in (0, 1) for kind in ('model.png', 'strip.png', 'tryon.jpg'))
    by_hand_tryons = by_hand(checkpoints, photos, tmp_path / 'by_hand')
    photo = np.asarray(Image.open(photos['persons'] / 'me.jpg')).astype(int)
    for index in (0, 1):
        model = np.asarray(Image.open(out / f'me_shirt{index}_model.png'))
        assert model.shape == (256, 192, 3)
        assert np.array_equal(model, np.asarray(Image.open(by_hand_tryons / pair_key('me.jpg', f'shirt{index}.jpg'))))
        assert Image.open(out / f'me_shirt{index}_strip.png').size == (7 * 192, 256)
        pasted = np.asarray(Image.open(out / f'me_shirt{index}_tryon.jpg')).astype(int)
        assert pasted.shape == photo.shape                    # the photo's own size: 540x640
        # the head (top 10%) and the padding columns keep the photo's pixels (up to the JPEG of the result)
        assert np.abs(pasted[:64] - photo[:64]).mean() < 2
        assert np.abs(pasted[:, :25] - photo[:, :25]).mean() < 2
    assert hashes(tmp_path / 'photos') == before              # nothing in the input folders changed


def test_paste_back_keeps_the_photo_outside_the_region_and_the_try_on_inside():
    placement = prepare_data.fit((300, 200), (192, 256))       # landscape: white bands above and below
    photo = Image.new('RGB', (300, 200), (10, 20, 30))
    tryon_image = Image.new('RGB', (192, 256), (200, 100, 50))
    region = np.zeros((256, 192), bool)
    region[120:136, 80:112] = True                            # inside the placed photo (rows 64..192)
    pasted = np.asarray(tryon.paste_back(photo, tryon_image, tryon.pasted_region(region * 0, region), placement))
    # the region at the model size, mapped back: rows (120-64)/0.64 .. (136-64)/0.64, columns 80/0.64 .. 112/0.64
    assert (pasted[95:105, 135:165] == (200, 100, 50)).all()
    assert (pasted[:60] == (10, 20, 30)).all() and (pasted[:, :100] == (10, 20, 30)).all()


def test_an_existing_result_is_kept_unless_overwrite(checkpoints, photos, tmp_path, capsys):
    out = tmp_path / 'out'
    assert tryon.main(tryon_argv(checkpoints, photos, out)) == 0
    (out / 'me_shirt0_tryon.jpg').write_bytes(b'mine')
    assert tryon.main(tryon_argv(checkpoints, photos, out)) == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and '--overwrite' in error and (out / 'me_shirt0_tryon.jpg').read_bytes() == b'mine'
    assert tryon.main(tryon_argv(checkpoints, photos, out, ('shirt0.jpg',), '--overwrite')) == 0
    assert Image.open(out / 'me_shirt0_tryon.jpg').size == (540, 640)


@pytest.mark.parametrize('case, expected', [
    ('swapped checkpoints', 'is a TOM checkpoint'),
    ('missing checkpoint', 'file not found'),
    ('missing pose', 'me_missing.json'),
    ('masks for other clothes', 'give one per --cloth'),
    ('a name with a space', 'rename the file'),
    ('--out is a file', 'is a file, not a folder'),
])
def test_user_errors_are_one_line(checkpoints, photos, tmp_path, capsys, case, expected):
    argv = tryon_argv(checkpoints, photos, tmp_path / 'out')
    if case == 'swapped checkpoints':
        argv[argv.index('--gmm') + 1] = str(checkpoints['tom'])
    elif case == 'missing checkpoint':
        argv[argv.index('--tom') + 1] = str(tmp_path / 'nowhere.pth')
    elif case == 'missing pose':
        argv[argv.index('--pose') + 1] = str(photos['poses'] / 'me_missing.json')
    elif case == 'masks for other clothes':
        argv += ['--cloth_mask', 'a.png', 'b.png']
    elif case == 'a name with a space':
        spaced = photos['clothes'] / 'my shirt.jpg'
        shutil.copy(photos['clothes'] / 'shirt0.jpg', spaced)
        argv[argv.index('--cloth') + 1] = str(spaced)
    else:
        (tmp_path / 'out').write_text('my notes')
    try:
        code = tryon.main(argv)
    except SystemExit as stop:       # argparse's own errors
        code = stop.code
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and expected in error[-1] and 'Traceback' not in '\n'.join(error)
    if case == '--out is a file':
        assert (tmp_path / 'out').read_text() == 'my notes'
    else:
        assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_the_pasted_region_is_clothes_arms_and_warp_grown_but_never_the_head():
    parse = np.zeros((256, 192), np.uint8)
    parse[100:150, 60:130] = 5                 # upper clothes
    parse[100:150, 40:60] = 14                 # an arm
    parse[20:60, 70:120] = 13                  # the face
    warped = np.zeros((256, 192), bool)
    warped[40:110, 70:120] = True              # a warp that reaches over the face
    region = np.asarray(tryon.pasted_region(parse, warped))
    assert (region[105:145, 45:125] == 255).all()              # clothes and arm, away from the feathered edge
    assert (region[75:95, 75:115] == 255).all()                # the warp below the face
    assert (region[20:52, 75:115] == 0).all()                  # the face stays the photo's (but its feathered edge)
    assert (region[200:, :] == 0).all() and (region[:, 150:] == 0).all()
