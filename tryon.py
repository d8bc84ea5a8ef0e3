"""Try clothes on one person photo in one command: prepare, warp, try on, paste back.

    python tryon.py --person me.jpg --pose me_keypoints.json --parse me.png --cloth shirt.jpg \\
        --gmm checkpoints/gmm_train_new/gmm_final.pth --tom checkpoints/tom_train_new/tom_final.pth --out out/
    python tryon.py ... --cloth a.jpg b.jpg c.jpg          # one result per cloth

The inputs go through prepare_data.py's own code (fitted to the model size without distortion, the pose and the
parse map moved with the photo, the parse converted to LIP labels, a cloth mask computed where --cloth_mask gives
none), into a VITON-format split in a temporary folder. test.py's own test loop then runs the GMM, its warps are
placed where the TOM reads them (as step 3 does), and test.py runs the TOM. The model options (CP-VTON+ options,
512x384) come from each checkpoint's options.json, as in test.py. Per cloth, <out>/ gets:

    <person>_<cloth>_tryon.jpg   the person photo at its original size with the try-on pasted in: inside the
                                 region the try-on changes (the person's clothes and arms, and the warped cloth,
                                 grown and feathered, less the head), the try-on upscaled; outside it, the
                                 photo's own pixels
    <person>_<cloth>_model.png   the try-on at the model size (256x192 by default), as TOM made it
    <person>_<cloth>_strip.png   the 7-panel strip of smart_show_test_result.py (cloth, cloth mask, person, parse,
                                 warped cloth, warped mask, try-on)

An existing result file is never replaced without --overwrite. --method names the method (cpvton, the only one
so far); --keep_work keeps the prepared split and test.py's results in <out>/work/.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image, ImageFilter

import flags
import prepare_data
import smart_show_test_result
import test as test_script
from cp_dataset import ARM_LABELS, CLOTH_LABELS, HEAD_LABELS, MASK_THRESHOLD, DataError, parse_file_name
from networks import CheckpointError
from train import OPTIONS_FILE, read_options
from visualization import save_image_atomic

STAGE_FLAGS = (('GMM', '--gmm'), ('TOM', '--tom'))
REGION_GROW = 5                   # pixels at the model size by which the pasted region is grown (max filter)
REGION_FEATHER = 2.0              # Gaussian blur radius, at the model size, of the pasted region's edge
NO_IMAGES = '1000000000'          # test.py's --display_count: no TensorBoard images from these passes
JPEG_QUALITY = 95                 # the pasted-back try-on: a photo, kept close to the original's quality


def get_opt(argv=None):
    parser = argparse.ArgumentParser(description='Try clothes on one person photo (see the docstring of tryon.py).',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--person', required=True, help='the person photo (any size; EXIF rotation applied)')
    parser.add_argument('--pose', required=True, help="its OpenPose JSON (COCO-18 or BODY_25)")
    parser.add_argument('--parse', required=True, help='its parse map (LIP, CIHP, ATR or Pascal-Person-Part labels)')
    parser.add_argument('--parse_labels', choices=prepare_data.PARSE_LABEL_SETS,
                        help="the parse map's label set (default: detected from the file where it tells)")
    parser.add_argument('--cloth', nargs='+', required=True, help='one or more in-shop cloth photos')
    parser.add_argument('--cloth_mask', nargs='+',
                        help='their masks, one per --cloth in the same order (default: computed by cloth_mask.py)')
    parser.add_argument('--gmm', required=True, help="the GMM checkpoint (options.json beside it is read)")
    parser.add_argument('--tom', required=True, help="the TOM checkpoint (options.json beside it is read)")
    parser.add_argument('--method', choices=tuple(METHODS), default='cpvton',
                        help='the method whose checkpoints --gmm and --tom are (default: %(default)s)')
    parser.add_argument('--out', required=True, help='the folder for the results')
    parser.add_argument('--gpu_ids', type=flags.gpu_ids, default='',
                        help="the device, as train.py's (default: the first GPU if there is one, else the CPU)")
    parser.add_argument('--overwrite', action='store_true', help='replace result files of an earlier try-on')
    parser.add_argument('--keep_work', action='store_true',
                        help="keep the prepared split and test.py's results in <out>/work/")
    opt = parser.parse_args(argv)
    if opt.cloth_mask and len(opt.cloth_mask) != len(opt.cloth):
        parser.error(f'--cloth_mask: {len(opt.cloth_mask)} masks for {len(opt.cloth)} clothes; give one per --cloth')
    flags.check_gpu_ids_present(parser, opt.gpu_ids)
    return opt


# ----------------------------------------------------------------------------------------------------
# Checkpoints and model size
# ----------------------------------------------------------------------------------------------------

def check_checkpoint(path, stage, flag):
    """DataError unless ``path`` exists and, where train.py recorded its options, was trained as ``stage``."""
    if not osp.isfile(path):
        raise DataError(f'{flag} {path}: file not found; pass the {stage} checkpoint (e.g. '
                        f'checkpoints/{stage.lower()}_train_new/{stage.lower()}_final.pth)')
    recorded = read_options(osp.join(osp.dirname(path), OPTIONS_FILE))
    if recorded and recorded.get('stage', stage) != stage:
        raise DataError(f'{flag} {path} is a {recorded.get("stage")} checkpoint (its {OPTIONS_FILE} says so); '
                        f'pass the {stage} checkpoint to {flag}')


def model_size(opt):
    """(W, H) the checkpoints were trained at (their options.json; the original code's 192x256 without one);
    DataError if the two differ."""
    sizes = {}
    for stage, flag in STAGE_FLAGS:
        recorded = read_options(osp.join(osp.dirname(getattr(opt, flag[2:])), OPTIONS_FILE)) or {}
        sizes[flag] = (recorded.get('fine_width', 192), recorded.get('fine_height', 256))
    if sizes['--gmm'] != sizes['--tom']:
        raise DataError(f'--gmm was trained at {sizes["--gmm"][1]}x{sizes["--gmm"][0]}, --tom at '
                        f'{sizes["--tom"][1]}x{sizes["--tom"][0]}; pass checkpoints of one resolution')
    return sizes['--gmm']


# ----------------------------------------------------------------------------------------------------
# The inputs, as a one-person VITON split
# ----------------------------------------------------------------------------------------------------

def stem(path):
    return osp.splitext(osp.basename(path))[0]


def pair_names(opt):
    """(person file name, [cloth file names]) in the split: the inputs' stems, as prepare_data.py names them;
    DataError for a stem that cannot name a VITON file (white space, '.jpg' inside, control characters)."""
    for flag, path in [('--person', opt.person)] + [('--cloth', path) for path in opt.cloth]:
        if problem := prepare_data.stem_problem(stem(path)):
            raise DataError(f'{flag} {path}: {problem}; rename the file (letters, digits, _ and -)')
    cloths = [prepare_data.viton_name(stem(path)) for path in opt.cloth]
    if len(set(cloths)) != len(cloths):
        raise DataError(f'--cloth: two clothes share a file name stem ({", ".join(opt.cloth)}); rename one')
    return prepare_data.viton_name(stem(opt.person)), cloths


def write_split(opt, split_dir, size):
    """Prepare the person and the clothes at ``size`` (W, H) into ``split_dir``; returns the person's placement."""
    for folder in prepare_data.split_folders(image_mask=True):   # image-mask/: for CP-VTON+'s body masks
        os.makedirs(osp.join(split_dir, folder), exist_ok=True)
    person_name, cloth_names = pair_names(opt)
    person = prepare_data.prepare_person(opt.person, opt.pose, opt.parse, size, opt.parse_labels)
    for note in person.notes:
        print(note)
    prepare_data.write_person(split_dir, person_name, person, image_mask=True)
    masks = opt.cloth_mask or [None] * len(opt.cloth)
    for path, mask_path, name in zip(opt.cloth, masks, cloth_names):
        cloth = prepare_data.prepare_cloth(path, mask_path, size)
        for note in cloth.notes:
            print(note)
        prepare_data.write_cloth(split_dir, name, cloth)
    return person.placement


def write_pairs(dataroot, person_name, cloth_names):
    """The split's pairs file (the person with each cloth); returns its name under ``dataroot``."""
    prepare_data.write_lines(osp.join(dataroot, 'test_pairs.txt'), [f'{person_name} {name}' for name in cloth_names])
    return 'test_pairs.txt'


# ----------------------------------------------------------------------------------------------------
# The two stages, with test.py's own loop
# ----------------------------------------------------------------------------------------------------

def run_stage(opt, stage, checkpoint, dataroot, data_list, work):
    """test.py's test loop for ``stage`` on the split; returns its cp_dataset.ResultLayout."""
    argv = ['--stage', stage, '--name', f'tryon_{stage.lower()}', '--checkpoint', checkpoint, '--dataroot', dataroot,
            '--datamode', 'test', '--data_list', data_list, '--result_dir', osp.join(work, 'result'),
            '--tensorboard_dir', osp.join(work, 'tensorboard'), '--workers', '0', '--display_count', NO_IMAGES,
            '--gpu_ids', opt.gpu_ids]
    stage_opt = test_script.get_opt(argv)
    test_script.test(stage_opt)
    return test_script.result_layout(stage_opt)


def place_warps(gmm_results, split_dir):
    """GMM's warps where the TOM stage reads them (<split>/warp-cloth, warp-mask), as step 3 places them."""
    for folder in ('warp-cloth', 'warp-mask'):
        shutil.copytree(gmm_results.kind_dir(folder), osp.join(split_dir, folder))


# ----------------------------------------------------------------------------------------------------
# The outputs
# ----------------------------------------------------------------------------------------------------

def output_paths(opt):
    """{cloth file name: {'tryon', 'model', 'strip'}: path} of every result this call writes."""
    person_name, cloth_names = pair_names(opt)
    paths = {}
    for name in cloth_names:
        base = osp.join(opt.out, f'{stem(person_name)}_{stem(name)}')
        paths[name] = {'tryon': base + '_tryon.jpg', 'model': base + '_model.png', 'strip': base + '_strip.png'}
    return paths


def refuse_existing_results(opt, paths):
    """DataError, before any work, if --out is no folder or a result of this call would replace an earlier one."""
    if osp.exists(opt.out) and not osp.isdir(opt.out):
        raise DataError(f'--out {opt.out} is a file, not a folder; pass a folder for the results')
    existing = [path for files in paths.values() for path in files.values() if osp.exists(path)]
    if existing and not opt.overwrite:
        raise DataError(f'{existing[0]} exists (from an earlier try-on); pass --overwrite to replace it, or '
                        f'another --out')


def pasted_region(parse, warped_mask):
    """Where the try-on replaces the photo: an L image at the model size, 255 inside. The person's clothes and arms
    (what TOM redraws) and the warped cloth, grown by REGION_GROW pixels, less the head (TOM copies it from the
    photo anyway, and the photo's is sharper), feathered at the edge."""
    # the arms too: TOM redraws them where the new cloth covers them
    region = Image.fromarray((np.isin(parse, CLOTH_LABELS + ARM_LABELS) | warped_mask).astype(np.uint8) * 255, 'L')
    grown = np.asarray(region.filter(ImageFilter.MaxFilter(2 * REGION_GROW + 1))) > 0
    grown &= ~np.isin(parse, HEAD_LABELS)
    return Image.fromarray(grown.astype(np.uint8) * 255, 'L').filter(ImageFilter.GaussianBlur(REGION_FEATHER))


def paste_back(photo, tryon, region, placement):
    """The photo (RGB, original size) with the try-on (RGB, model size) pasted in where ``region`` (an L image at
    the model size) says, both mapped back to the photo's size with prepare_data.unplace."""
    full_tryon = prepare_data.unplace(tryon, placement)
    full_region = prepare_data.unplace(region, placement, resample=Image.Resampling.BILINEAR)
    return Image.composite(full_tryon, photo, full_region)


def write_results(opt, paths, split_dir, results, placement):
    """Per cloth: the pasted-back try-on, the model-size try-on and the strip (see the module docstring). All are
    made first and then written, each whole or not at all: a failure leaves no half of a result behind."""
    person_name = pair_names(opt)[0]
    photo = prepare_data.load_photo(opt.person)[0]
    parse = np.asarray(Image.open(osp.join(split_dir, 'image-parse', parse_file_name(person_name))))
    strip_opt = smart_show_test_result.get_opt(['--dataroot', osp.dirname(split_dir), '--datamode', 'test',
                                                '--result_dir', results['root'],
                                                '--gmm_checkpoint_name', osp.basename(opt.gmm),
                                                '--tom_checkpoint_name', osp.basename(opt.tom)])
    images = {}
    for cloth_name, files in paths.items():
        tryon = Image.open(results['TOM'].file('try-on', person_name, cloth_name)).convert('RGB')
        warped_mask = Image.open(results['GMM'].file('warp-mask', person_name, cloth_name)).convert('L')
        warped_mask = np.asarray(warped_mask) >= MASK_THRESHOLD
        images[files['model']] = tryon
        images[files['tryon']] = paste_back(photo, tryon, pasted_region(parse, warped_mask), placement)
        images[files['strip']] = smart_show_test_result.simple_strip(
            smart_show_test_result.PairFiles(strip_opt, person_name, cloth_name))
    os.makedirs(opt.out, exist_ok=True)
    for path, image in images.items():
        save_image_atomic(image, path, quality=JPEG_QUALITY)   # quality: read by the JPEG of the try-on only
    for cloth_name, files in paths.items():
        print(f'{cloth_name}: {files["tryon"]} ({photo.size[0]}x{photo.size[1]}), {files["model"]}, {files["strip"]}')


# ----------------------------------------------------------------------------------------------------
# One call
# ----------------------------------------------------------------------------------------------------

def try_on_cpvton(opt, work):
    """CP-VTON: prepare, warp (GMM), try on (TOM) and write the results, with ``work`` as the scratch folder."""
    for stage, flag in STAGE_FLAGS:
        check_checkpoint(getattr(opt, flag[2:]), stage, flag)
    paths = output_paths(opt)
    refuse_existing_results(opt, paths)
    size = model_size(opt)
    dataroot = osp.join(work, 'data')
    split_dir = osp.join(dataroot, 'test')
    placement = write_split(opt, split_dir, size)
    data_list = write_pairs(dataroot, *pair_names(opt))
    results = {'root': osp.join(work, 'result')}
    results['GMM'] = run_stage(opt, 'GMM', opt.gmm, dataroot, data_list, work)
    place_warps(results['GMM'], split_dir)
    results['TOM'] = run_stage(opt, 'TOM', opt.tom, dataroot, data_list, work)
    write_results(opt, paths, split_dir, results, placement)


# --method: each method's whole try-on (the others join as they are added to the project)
METHODS = {'cpvton': try_on_cpvton}


def main(argv=None):
    opt = get_opt(argv)
    try:
        if opt.keep_work:
            work = osp.join(opt.out, 'work')
            if osp.exists(work):
                raise DataError(f'{work} exists (kept by an earlier --keep_work run, or left by one that failed); '
                                f'remove it, or drop --keep_work')
            METHODS[opt.method](opt, work)
            print(f'kept the prepared split and the test results in {work}')
        else:
            with tempfile.TemporaryDirectory(prefix='tryon_') as work:
                METHODS[opt.method](opt, work)
    except (DataError, CheckpointError) as error:   # prepare_data's too: one line, naming the file and the fix
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
