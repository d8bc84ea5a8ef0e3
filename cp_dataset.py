"""VITON-format dataset for CP-VTON's two stages (GMM and TOM).

Every tensor this module returns equals what the original CP-VTON loader
returns (with the one-channel Normalize fix that modern torchvision needs),
except ``grid_image``, which the project draws itself.

Layout read from ``<dataroot>/<datamode>/``::

    image/<person>.jpg                 RGB person photo, fine_width x fine_height
    image-parse/<person>.png           LIP label map (palette or L mode; pixel = label 0..19)
    image-mask/<person>.png            body mask, white on black (only with --body_shape image-mask)
    pose/<person>_keypoints.json       OpenPose COCO-18 ("pose_keypoints" or "pose_keypoints_2d")
    cloth/<cloth>.jpg, cloth-mask/     in-shop cloth and its mask           (stage GMM)
    warp-cloth/, warp-mask/            GMM's warped cloth and mask          (stage TOM), each named by
                                       the pair (pair_key), or by the cloth in folders of the original code

The names of the pairs file are file names in these folders, never paths (see name_problem).

Value ranges of an item (H = fine_height, W = fine_width):
    cloth [3,H,W] in [-1,1]; cloth_mask [1,H,W] in {0,1}; image [3,H,W] in [-1,1];
    agnostic [22,H,W] = shape(1) + head(3) + pose(18), all in [-1,1];
    parse_cloth [3,H,W] in [-1,1] (+1 outside the cloth); head [3,H,W] (-1 outside the head);
    shape [1,H,W], pose_image [1,H,W], grid_image [3,H,W] in [-1,1] (GMM) or '' (TOM);
    parse_cloth_mask [1,H,W] in {0,1}: the person's cloth region (CP-VTON+'s TOM mask target).

Options of CP-VTON+ (``opt.reserved_regions``, ``opt.body_shape``; absent = the original) change
what 'head' and 'shape' hold; see RESERVED_LABELS and BODY_SHAPE_SOURCES.
"""
import json
import ntpath
import os
import os.path as osp
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.utils.data as data
from PIL import Image

from progress import progress

# LIP labels used by CP-VTON's person representation.
HEAD_LABELS = (1, 2, 4, 13)      # hat, hair, sunglasses, face
CLOTH_LABELS = (5, 6, 7)         # upper-clothes, dress, coat
# The regions the person representation keeps visible (its 'head' channels), per --reserved_regions and stage.
# CP-VTON+ drops the hair from GMM's input (long hair over the shoulders is not cloth shape) and lets
# TOM keep hair, pants (9), skirt (12) and legs (16, 17), which the try-on must not repaint.
RESERVED_LABELS = {
    'original': {'GMM': HEAD_LABELS, 'TOM': HEAD_LABELS},
    'cpvton_plus': {'GMM': (1, 4, 13), 'TOM': (1, 2, 4, 9, 12, 13, 16, 17)},
}
# Where the body shape of the person representation comes from (--body_shape): every labelled pixel
# of the parse map (the original), or CP-VTON+'s body masks in image-mask/<person stem>.png.
BODY_SHAPE_SOURCES = ('parse', 'image-mask')
NUM_POSE_KEYPOINTS = 18          # OpenPose COCO-18
POSE_KEYS = ('pose_keypoints', 'pose_keypoints_2d')  # old (VITON) and new OpenPose names
MASK_THRESHOLD = 128     # CP-VTON binarises its JPEG masks with >= 128
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')


class DataError(ValueError):
    """A problem with the user's data, with a message that names the file and the fix."""


def read_pairs(pairs_path):
    """Read a pairs file: one ``<person>.jpg <cloth>.jpg`` per line. Returns [(im_name, c_name)].

    Raises DataError listing every malformed line (see ``scan_pairs``)."""
    pairs, errors = scan_pairs(pairs_path)
    if errors:
        raise DataError('\n'.join(str(e) for e in errors))
    return pairs


def pair_key(im_name, c_name):
    """File name of a pair's test outputs: unique per (person, cloth), e.g. '000001_0_001744_1.jpg'."""
    return f'{osp.splitext(im_name)[0]}_{c_name}'


def pose_file_name(im_name):
    return im_name.replace('.jpg', '_keypoints.json')


def parse_file_name(im_name):
    return im_name.replace('.jpg', '.png')


# Characters no name of a pairs file may hold, by Unicode category: control characters (NUL, escape ...),
# invisible ones (a stray byte-order mark, a zero-width space, a right-to-left override: the name looks
# right in an editor and names another file) and the surrogates that stand for bytes that are not UTF-8.
FORBIDDEN_CHARACTERS = {'Cc': 'the control character', 'Cf': 'the invisible character',
                        'Cs': 'a byte that is not UTF-8:'}


def name_problem(name):
    """Why ``name``, a person or cloth name of a pairs file, is not a plain file name, or None.

    Paths are built by joining such names to a data or result folder; a plain file name keeps the
    path in that folder, a name with a folder, '..', a root or a drive in it would lead anywhere."""
    if name.startswith(('/', '\\')):
        return 'is an absolute path'
    if '/' in name or '\\' in name:
        return 'is a path (it holds a folder separator)'
    if name in ('.', '..'):
        return 'names a folder'
    if ntpath.splitdrive(name)[0]:
        return 'starts with a drive letter'
    for character in name:
        kind = unicodedata.category(character)
        if kind in FORBIDDEN_CHARACTERS:
            # surrogateescape keeps an undecodable byte b as the code point U+DC00 + b
            code = f'0x{ord(character) - 0xDC00:02X}' if kind == 'Cs' else f'U+{ord(character):04X}'
            return f'holds {FORBIDDEN_CHARACTERS[kind]} {code}'
    return None


def shown(text):
    """``text`` for a message: as it is when plain printable ASCII, else its repr(), which makes invisible
    characters visible and shows where the text begins and ends."""
    return text if text.isascii() and text.isprintable() else repr(text)


def file_in(folder, name):
    """The path of the file ``name`` (a name of a pairs file, or one made from it) in ``folder``.

    Every path built from a pairs-file name is built here, so that no command reads or writes outside
    its folders; read_pairs already refused such names, naming their lines, so this is a safeguard."""
    problem = name_problem(name)
    if problem:
        raise DataError(f'{name!r} {problem}, so it is not a file name in {shown(str(folder))}; '
                        f'pairs files hold file names only')
    return osp.join(folder, name)


def open_image(path):
    if not Path(path).is_file():
        raise DataError(f'image not found: {shown(str(path))}')
    return Image.open(path)


def existing_file(path):
    """`path` as a string for cp_dataset's loaders; DataError (naming it) if there is no such file."""
    if not Path(path).is_file():
        raise DataError(f'file not found: {shown(str(path))}')
    return str(path)


@dataclass(frozen=True)
class DataLayout:
    """Where a split's data files lie (see the module docstring)."""
    dataroot: Path
    datamode: str

    @property
    def data_dir(self):
        return self.dataroot / self.datamode

    def person_image(self, im_name):
        return Path(file_in(self.data_dir / 'image', im_name))

    def parse_map(self, im_name):
        return Path(file_in(self.data_dir / 'image-parse', parse_file_name(im_name)))

    def cloth(self, c_name):
        return Path(file_in(self.data_dir / 'cloth', c_name))

    def cloth_mask(self, c_name):
        return Path(file_in(self.data_dir / 'cloth-mask', c_name))

    def pose(self, im_name):
        return Path(file_in(self.data_dir / 'pose', pose_file_name(im_name)))

    def body_mask(self, im_name):
        """CP-VTON+'s body mask (--body_shape image-mask)."""
        return Path(file_in(self.data_dir / 'image-mask', parse_file_name(im_name)))

    def split_file(self, folder, name):
        """The file ``name`` in the split's ``folder`` (a cloth or warp folder chosen by the stage)."""
        return Path(file_in(self.data_dir / folder, name))

    def real_images(self):
        """Every person photo of the split (FID's real set), sorted by name."""
        folder = self.data_dir / 'image'
        if not folder.is_dir():
            raise DataError(f'person image folder not found: {folder}')
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# The result kinds a stage writes, each a folder of <pair key> images: GMM and the shape-context matcher write
# warp-cloth ([-1,1] -> 0..255) and warp-mask (0/255), TOM and VITON's refinement try-on, VITON's coarse
# stage coarse-person and coarse-mask (its predicted clothing mask).
RESULT_KINDS = ('warp-cloth', 'warp-mask', 'try-on', 'coarse-person', 'coarse-mask', 'parse')


@dataclass(frozen=True)
class ResultLayout:
    """Where a stage's results lie: <result_dir>/<checkpoint file name>/<datamode>/<kind>/<pair key>
    (the shape-context matcher, which has no checkpoint, writes under the name 'shape_context')."""
    result_dir: Path
    checkpoint_name: str
    datamode: str

    @property
    def folder(self):
        return Path(self.result_dir) / self.checkpoint_name / self.datamode

    def kind_dir(self, kind):
        if kind not in RESULT_KINDS:
            raise ValueError(f'result kind must be one of {RESULT_KINDS}, got {kind!r}')
        return self.folder / kind

    def file(self, kind, im_name, c_name):
        return Path(file_in(self.kind_dir(kind), pair_key(im_name, c_name)))


def warp_dir_named_by_cloth(warp_dir, pairs):
    """True when ``warp_dir`` holds warps of ``pairs`` named by the cloth only (a folder of the original
    code), False when it holds pair-keyed ones (test.py's names, pair_key) or none.

    One rule per folder, never mixed: a cloth-named warp in a pair-keyed folder may be another person's."""
    try:
        names = set(os.listdir(warp_dir))
    except OSError:   # no folder: the data check reports it, the loader names the missing file
        return False
    if any(pair_key(im_name, c_name) in names for im_name, c_name in pairs):
        return False
    return any(c_name in names for _, c_name in pairs)


# The warp folders announced as cloth-named: the data check and the dataset decide on the same folder
# in one run, and the user is to read the announcement once.
ANNOUNCED_CLOTH_NAMED_WARP_DIRS = set()


def warps_named_by_cloth(data_path, pairs, log=print):
    """warp_dir_named_by_cloth of the split's warp-cloth/ (which decides for warp-mask/ too), announced
    once when it holds cloth-named warps."""
    warp_dir = osp.join(data_path, 'warp-cloth')
    by_cloth = warp_dir_named_by_cloth(warp_dir, pairs)
    if by_cloth and warp_dir not in ANNOUNCED_CLOTH_NAMED_WARP_DIRS:
        ANNOUNCED_CLOTH_NAMED_WARP_DIRS.add(warp_dir)
        log(f'note: {shown(warp_dir)} holds warps named by the cloth only, as the original code wrote them: '
            f'the TOM stage reads warp-cloth/ and warp-mask/ by the cloth name for every pair (test.py names '
            f'them by the pair, <person stem>_<cloth name>)')
    return by_cloth


def cloth_file_name(in_shop, by_cloth, im_name, c_name):
    """The file name of a pair's cloth and cloth mask: an in-shop cloth (GMM) is read by its name; a warp (TOM)
    by the pair key, or by the cloth where ``by_cloth`` (warps_named_by_cloth)."""
    return c_name if in_shop or by_cloth else pair_key(im_name, c_name)


def cloth_folders(in_shop):
    """(cloth folder, mask folder) of a stage reading in-shop clothes or the split's warps."""
    return ('cloth', 'cloth-mask') if in_shop else ('warp-cloth', 'warp-mask')


# torchvision's ToTensor + Normalize(0.5, 0.5) computes (x / 255 - 0.5) / 0.5 in float32. Scaling by 2 is
# exact in floating point, so 2 * fl(x / 255) == fl(x / 127.5) and 2 * fl(a - 0.5) == fl(2a - 1): the
# two-pass x / 127.5 - 1 gives the same float32 values as the four passes (tests check all 256 levels).
# None of the 256 values is 0 (127.5 is not an integer), which the masked copies below rely on.
NORMALIZE_DIVISOR = np.float32(127.5)


def normalize_into(pixels, out):
    """uint8 pixels [H,W,C] or [H,W] -> ``out``, a float32 array [C,H,W] (or [1,H,W]), in [-1,1], with
    the values of ToTensor + Normalize(0.5, 0.5). Returns ``out``.

    In numpy, single-threaded: torch's element-wise ops fork threads for arrays this size, which
    costs more than the work and stalls whenever another process holds a core."""
    out[...] = pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels
    out /= NORMALIZE_DIVISOR
    out -= np.float32(1)
    return out


def normalized(pixels):
    """uint8 pixels [H,W,C] or [H,W] -> new float tensor [C,H,W] in [-1,1] (see normalize_into)."""
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    tensor = torch.empty((channels,) + pixels.shape[:2])
    normalize_into(pixels, tensor.numpy())
    return tensor


def to_tensor_normalized(pil_image):
    """PIL image (RGB or L) -> float tensor [C,H,W] in [-1,1].

    Same values as torchvision's ToTensor followed by Normalize(0.5, 0.5), so they are
    bitwise identical to the original loader's.
    """
    return normalized(np.asarray(pil_image))


def read_keypoints(pose_path):
    """OpenPose JSON -> float array [K,3] of (x, y, confidence) for the first person."""
    with open(pose_path) as f:
        try:
            pose_label = json.load(f)
        except json.JSONDecodeError as error:
            raise DataError(f'{pose_path}: not valid JSON ({error}); re-export it from OpenPose') from None
    people = pose_label.get('people') if isinstance(pose_label, dict) else None
    if not people:
        raise DataError(f'{pose_path}: no person in "people"; OpenPose detected nobody in this image, '
                        f'remove the pair from the pairs file')
    person = people[0]
    for key in POSE_KEYS:
        if key in person:
            return np.asarray(person[key], dtype=np.float64).reshape(-1, 3)
    raise DataError(f'{pose_path}: no keypoints; expected one of the keys {POSE_KEYS}')


def draw_pose_maps(keypoints, height, width, radius, out=None):
    """Keypoints [K,3] -> (pose_map [K,H,W], pose_image [1,H,W]), both -1 background and +1 squares.

    As the original (PIL's rectangle with float corners, truncated to int, both ends
    inclusive), a point is drawn only if x > 1 and y > 1, as a square of 2*radius+1
    pixels clipped at the image border. ``out`` ([K,H,W]) receives the maps in place, which
    spares the dataset a copy into the agnostic tensor.
    """
    pose_map = torch.empty((len(keypoints), height, width)) if out is None else out
    pose_map.fill_(-1.0)
    pose_image = torch.full((1, height, width), -1.0)
    # The squares are written through numpy views (a numpy slice assignment costs a tenth of torch's)
    # from Python floats (the JSON's values; arithmetic on numpy scalars is slower).
    maps, image = pose_map.numpy(), pose_image.numpy()[0]
    for i, (x, y, _confidence) in enumerate(np.asarray(keypoints, dtype=np.float64).tolist()):
        if not (x > 1 and y > 1):
            continue
        x0, x1 = max(int(x - radius), 0), min(int(x + radius), width - 1)
        y0, y1 = max(int(y - radius), 0), min(int(y + radius), height - 1)
        if x0 <= x1 and y0 <= y1:
            maps[i, y0:y1 + 1, x0:x1 + 1] = 1.0
            image[y0:y1 + 1, x0:x1 + 1] = 1.0
    return pose_map, pose_image


def make_grid_image(height, width, spacing=16, line_width=2):
    """The picture warped for visualisation: white lines every `spacing` pixels on black, [3,H,W] in [-1,1]."""
    grid = torch.full((3, height, width), -1.0)
    for offset in range(line_width):
        grid[:, offset::spacing, :] = 1.0
        grid[:, :, offset::spacing] = 1.0
    return grid


def downsampled_body_shape(silhouette, height, width, out=None):
    """Blurry body shape: silhouette [H,W] (bool) *255 resized by Pillow's bilinear filter to 1/16
    and back, as a float tensor [1,H,W] in [-1,1], written into ``out`` when given.

    Pillow (not torch.interpolate) because its antialiasing is what the original used.
    """
    mask = Image.fromarray(silhouette.astype(np.uint8) * 255)
    mask = mask.resize((width // 16, height // 16), Image.BILINEAR)
    mask = mask.resize((width, height), Image.BILINEAR)
    if out is None:
        return to_tensor_normalized(mask)
    normalize_into(np.asarray(mask), out.numpy())
    return out


def label_region(parse_array, labels):
    """Bool [H,W]: where the uint8 label map [H,W] (load_parse_labels') holds one of ``labels``.

    A look-up table indexed by the labels: one pass, where np.isin (the original's test) sorts and compares."""
    is_wanted = np.zeros(256, dtype=bool)
    is_wanted[list(labels)] = True
    return is_wanted.take(parse_array)


def masked_image(image, region, outside, out=None):
    """Float tensor [C,H,W]: ``image`` [C,H,W] where ``region`` [H,W] (bool) is set, ``outside`` elsewhere;
    written into ``out`` when given.

    The original computed image * mask + (1 - mask) * outside with a 0/1 float mask. For finite
    x, x * 1 + 0 == x except that -0.0 becomes +0.0, and the normalised levels hold no zero;
    x * 0 + outside == outside. So selecting gives the same bits, in two passes instead of four.
    """
    out = torch.empty_like(image) if out is None else out
    values = out.numpy()
    values.fill(outside)
    np.copyto(values, image.numpy(), where=region)
    return out


# ---------------------------------------------------------------------------------------------------
# Loading with safe in-memory fixes. Each *_fixes function decides from a file's header (a parse
# map's fixes from its mode) what loading must fix; on correct data it returns [] and loading is
# the original's, bitwise, with nothing decoded twice. data_check.py reports the same fixes as
# warnings before work starts. Files on disk are never changed.

# The standard LIP colour map: label i is drawn in colour i.
LIP_PALETTE = (
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51),
    (255, 85, 0), (0, 0, 85), (0, 119, 221), (85, 85, 0), (0, 85, 85),
    (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221),
    (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
)
# VITON's parse PNGs carry the same map with the channel values 170, 221 and 255 stored as 169, 220, 254.
VITON_LIP_PALETTE = tuple(tuple({170: 169, 221: 220, 255: 254}.get(value, value) for value in colour)
                          for colour in LIP_PALETTE)
NUM_LIP_LABELS = len(LIP_PALETTE)
# Colour renderings made with either variant are mapped back; the two variants share no colour of different labels.
LABEL_OF_LIP_COLOUR = {colour: label for palette in (LIP_PALETTE, VITON_LIP_PALETTE)
                       for label, colour in enumerate(palette)}

# COCO-18 is BODY_25 without MidHip (8) and the feet (19-24), in the same order.
BODY_25_TO_COCO_18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
NUM_BODY_25_KEYPOINTS = 25

PHOTO_FILTER = Image.Resampling.LANCZOS    # sharpest when shrinking large photos
MASK_FILTER = Image.Resampling.BILINEAR    # smooth edges; the mask is binarised (>= 128) afterwards
LABEL_FILTER = Image.Resampling.NEAREST    # never invents a label between two regions
ALPHA_MODES = ('RGBA', 'LA', 'PA')
OPAQUE_MODES_CONVERTIBLE_TO_RGB = ('1', 'L', 'P', 'CMYK', 'YCbCr')
MODES_CONVERTIBLE_TO_MASK = ('1', 'P', 'RGB')
LABEL_MAP_MODES = ('P', 'L')               # pixel value = label (a palette PNG's index is its label)

PARSE_FIX = ('save the human parser\'s label map (pixel value = LIP label 0-19) as a palette or grayscale '
             'PNG, not its colour visualisation')


@dataclass(frozen=True)
class FileProblem:
    """What is wrong with one data file and the fix; ``kind`` groups the same problem across files."""
    kind: str
    path: str
    problem: str
    fix: str

    def __str__(self):
        return f'{shown(self.path)}: {self.problem}' + (f'. Fix: {self.fix}' if self.fix else '')


PAIRS_LINE_FIX = 'write one pair per line: the person photo\'s file name, a space, the cloth photo\'s file name'
PAIRS_NAME_FIX = ('write the file\'s name only, as it lies in <split>/image/ or <split>/cloth/: no folder, \'..\', '
                  'root or drive, no control or invisible character; save the pairs file as UTF-8')


def name_problems(fields, where):
    """One FileProblem for each name of a pairs line (person, cloth) that is not a plain file name."""
    return [FileProblem('name is not a plain file name', where, f'the {role} name {name!r} {problem}', PAIRS_NAME_FIX)
            for role, name in zip(('person', 'cloth'), fields) if (problem := name_problem(name))]


def pairs_file_lines(pairs_path):
    """(line number, fields, line) of each non-blank line of a pairs file, read as editors write it: a UTF-8
    byte-order mark, CRLF line ends, tabs or several spaces between the names and trailing spaces are all fine.
    A byte that is not UTF-8 becomes a character (surrogateescape) that name_problem reports, with its line."""
    with open(pairs_path, encoding='utf-8-sig', errors='surrogateescape') as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                yield line_no, fields, line


def scan_pairs(pairs_path):
    """(pairs, errors) of a pairs file: every malformed line is an error, the other lines are kept.

    Read as editors write it: a UTF-8 byte-order mark, CRLF line ends, tabs or several spaces between the
    names, trailing spaces and blank lines are all fine."""
    if not osp.isfile(pairs_path):
        return [], [FileProblem('missing pairs file', pairs_path, 'file not found',
                                'pass --dataroot and --data_list so that <dataroot>/<data_list> is the pairs file')]
    pairs, errors = [], []
    for line_no, fields, line in pairs_file_lines(pairs_path):
        where = f'{pairs_path}, line {line_no}'
        if len(fields) != 2:
            errors.append(FileProblem('malformed pairs line', where,
                                      f'expected "person.jpg cloth.jpg", got {line.strip()!r}', PAIRS_LINE_FIX))
        elif unsafe := name_problems(fields, where):
            errors += unsafe
        elif not fields[0].endswith('.jpg'):
            # The loader finds the parse map and the pose by replacing the person's '.jpg'.
            errors.append(FileProblem('person file name not *.jpg', where, f'{fields[0]!r} does not end in .jpg',
                                      'name person photos *.jpg (the parse map is <stem>.png, the pose '
                                      '<stem>_keypoints.json)'))
        else:
            pairs.append((fields[0], fields[1]))
    if not pairs and not errors:
        errors.append(FileProblem('empty pairs file', pairs_path, 'has no pairs', PAIRS_LINE_FIX))
    return pairs, errors


class DataFileError(DataError):
    """A DataError about one file that no load-time fix can repair."""

    def __init__(self, kind, path, problem, fix):
        self.problem = FileProblem(kind, path, problem, fix)
        super().__init__(str(self.problem))


@dataclass(frozen=True)
class LoadFix(FileProblem):
    """A problem that loading repairs in memory with ``apply``; ``fix`` says how."""
    apply: Callable


def apply_fixes(value, fixes):
    for fix in fixes:
        value = fix.apply(value)
    return value


def composite_on_white(image):
    return Image.alpha_composite(Image.new('RGBA', image.size, 'white'), image.convert('RGBA')).convert('RGB')


def resize_fix(image, path, size, resample, also=''):
    (width, height), (target_width, target_height) = image.size, size
    problem = f'is {width}x{height}, the model takes {target_width}x{target_height}'
    if abs(width * target_height - height * target_width) > 0.01 * height * target_width:
        problem += ' (another aspect ratio, so it is stretched)'
    return LoadFix('wrong size', path, problem, f'resized on load ({resample.name}){also}',
                   lambda im: im.resize(size, resample))


def rgb_fix(image, path):
    if image.mode in ALPHA_MODES or 'transparency' in image.info:
        # VITON photos have white backgrounds; dropping the alpha channel instead would show
        # whatever colour lies under the transparent pixels, often black.
        return LoadFix('transparency', path, f'has transparency (mode {image.mode})',
                       'composited on white on load, like the white backgrounds of VITON photos',
                       composite_on_white)
    if image.mode in OPAQUE_MODES_CONVERTIBLE_TO_RGB:
        return LoadFix(f'mode {image.mode}, not RGB', path, f'is mode {image.mode}, not RGB',
                       'converted to RGB on load', lambda im: im.convert('RGB'))
    raise DataFileError('unsupported image mode', path, f'has mode {image.mode}', 'save it as an 8-bit RGB JPEG')


def photo_fixes(image, path, size, scales_keypoints=False):
    """Fixes that make a person or cloth photo an RGB image of ``size`` (W, H)."""
    fixes = [rgb_fix(image, path)] if image.mode != 'RGB' else []
    if image.size != size:
        also = '; its pose keypoints are scaled by the same factors' if scales_keypoints else ''
        fixes.append(resize_fix(image, path, size, PHOTO_FILTER, also))
    return fixes


def mask_fixes(image, path, size):
    """Fixes that make a cloth mask a grayscale image of ``size``, which the caller binarises."""
    fixes = []
    if image.mode != 'L':
        if image.mode not in MODES_CONVERTIBLE_TO_MASK:
            raise DataFileError('unsupported mask mode', path, f'has mode {image.mode}',
                                'save it as a grayscale JPEG or PNG, white cloth on black')
        fixes.append(LoadFix(f'mask mode {image.mode}, not grayscale', path, f'is mode {image.mode}, not L',
                             'converted to grayscale on load', lambda im: im.convert('L')))
    if image.size != size:
        fixes.append(resize_fix(image, path, size, MASK_FILTER, ', then binarised'))
    return fixes


def lip_colours_to_labels(image, path):
    """A colour rendering in the LIP palette -> its label map (L image); raises if any colour is not LIP's."""
    rgb = np.asarray(image).astype(np.int32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colour_codes, pixel_colour = np.unique(codes, return_inverse=True)
    colours = [(int(code) >> 16, (int(code) >> 8) & 255, int(code) & 255) for code in colour_codes]
    unknown = [colour for colour in colours if colour not in LABEL_OF_LIP_COLOUR]
    if unknown:
        raise DataFileError('parse map is a colour image', path,
                            f'is an RGB image with {len(unknown)} colours that are not LIP palette colours '
                            f'(e.g. {unknown[0]}), so no label can be read from it', PARSE_FIX)
    labels = np.array([LABEL_OF_LIP_COLOUR[colour] for colour in colours], dtype=np.uint8)
    return Image.fromarray(labels[pixel_colour.reshape(codes.shape)])


def parse_fixes(image, path, size):
    """Fixes that make a parse map a label map of ``size`` (a colour rendering is checked when applied)."""
    fixes = []
    if image.mode == 'RGB':
        fixes.append(LoadFix('parse map is a LIP colour rendering', path, 'is an RGB colour rendering, not a label map',
                             'its LIP palette colours are mapped back to labels on load',
                             lambda im: lip_colours_to_labels(im, path)))
    elif image.mode not in LABEL_MAP_MODES:
        raise DataFileError('parse map is not a label map', path, f'has mode {image.mode}', PARSE_FIX)
    if image.size != size:
        fixes.append(resize_fix(image, path, size, LABEL_FILTER))
    return fixes


def parse_labels(image, fixes, path):
    """The label array [H,W] of a parse map after its fixes; raises unless every label is one of LIP's."""
    labels = np.asarray(apply_fixes(image, fixes))
    if labels.max() >= NUM_LIP_LABELS:
        outside = [int(label) for label in np.unique(labels) if label >= NUM_LIP_LABELS]
        raise DataFileError('parse labels outside LIP\'s 0-19', path, f'has the labels {outside}',
                            'map your parser\'s classes to the 20 LIP labels (0 background ... 19 right shoe)')
    return labels


def read_pose_keypoints(pose_path):
    """read_keypoints, raising a DataFileError for every way the JSON can be unusable."""
    try:
        return read_keypoints(pose_path)
    except DataError as error:   # its message already says the fix
        raise DataFileError('unusable pose JSON', pose_path, str(error).removeprefix(f'{pose_path}: '), '') from None
    except ValueError as error:  # the keypoints are not a list of numbers, 3 per point, or not UTF-8
        raise DataFileError('unusable pose JSON', pose_path, f'keypoints unreadable ({error})',
                            're-export it from OpenPose') from None


def keypoint_fixes(keypoints, path):
    """Fixes that make keypoints [K,3] COCO-18; raises for a count other than COCO-18's or BODY_25's."""
    if len(keypoints) == NUM_POSE_KEYPOINTS:
        return []
    if len(keypoints) == NUM_BODY_25_KEYPOINTS:
        return [LoadFix('BODY_25 keypoints', path, 'has the 25 keypoints of OpenPose BODY_25',
                        'converted to COCO-18 on load (MidHip and the feet dropped)',
                        lambda points: points[BODY_25_TO_COCO_18])]
    raise DataFileError('wrong keypoint count', path,
                        f'has {len(keypoints)} keypoints; CP-VTON takes OpenPose COCO-18 (18) or BODY_25 (25)',
                        'run OpenPose with --model_pose COCO or BODY_25 (17 points is the MS-COCO layout of '
                        'other pose estimators, which has no neck)')


def load_photo(path, size, scales_keypoints=False):
    """RGB person or cloth photo of ``size`` (W, H), decoded once: (uint8 array [H,W,3], the (x, y)
    factors it was resized by)."""
    with Image.open(path) as image:
        fixes = photo_fixes(image, path, size, scales_keypoints)
        return np.asarray(apply_fixes(image, fixes)), (size[0] / image.width, size[1] / image.height)


def load_mask(path, size):
    """Cloth mask of ``size`` as a uint8 array [H,W], 0..255; binarise it with >= 128 as the original did."""
    with Image.open(path) as image:
        return np.asarray(apply_fixes(image, mask_fixes(image, path, size)))


def load_parse_labels(path, size):
    """LIP label map [H,W] of ``size``; np.asarray of a palette PNG gives the label indices."""
    image = Image.open(path)
    return parse_labels(image, parse_fixes(image, path, size), path)


def load_body_mask(path, size):
    """CP-VTON+'s body mask as a bool array [H,W] of ``size``: white (>= 128) is body.

    CP-VTON+ took every non-zero pixel; >= 128 is the same on its 0/255 PNGs and also right for
    JPEG-saved or resized masks, whose edges and noise hold other values."""
    return load_mask(path, size) >= 128


def load_coco18_keypoints(path, scale=(1.0, 1.0)):
    """COCO-18 keypoints [18,3], x and y multiplied by ``scale``, the factors its photo was resized by."""
    keypoints = read_pose_keypoints(path)
    keypoints = apply_fixes(keypoints, keypoint_fixes(keypoints, path))
    if scale != (1.0, 1.0):
        keypoints = keypoints * (scale[0], scale[1], 1.0)
    return keypoints


@dataclass(frozen=True)
class DataSpec:
    """What a stage reads and how it represents the person (each method's stages declare theirs).

    cloth: 'in-shop' (cloth/, cloth-mask/ by the cloth's name) or 'warped' (the split's warp-cloth/ and
        warp-mask/, CP-VTON's TOM: the GMM results step 3 placed there).
    representation: 'cpvton' (agnostic in [-1,1], the reserved regions of ``reserved_for``) or 'viton'
        (VITON's, see viton_agnostic).
    reserved_for: the RESERVED_LABELS stage key ('GMM' or 'TOM') of the cpvton representation.
    grid_image: whether items carry the grid picture the GMM warps for visualisation.
    warps_from: '' or the option naming a folder of pair-keyed warp-cloth/ and warp-mask/ results (VITON's
        refinement reads the shape-context warps there) that items carry as warped_cloth and warped_mask.
    masked_photo: whether items carry WUTON's agnostic photo (see masked_photo).
    unpaired_cloth: whether items carry another cloth of the pairs list than the pair's (unpaired_cloth_name):
        the sampler then hands the dataset (epoch, index), so the draw is resumable with the data position.
    layout: 'viton' (this module's layout and pairs files) or 'mpv' (MPV's layout and triplet list, read by
        mpv_dataset.MPVDataset; the fields above are the VITON layout's and stay at their defaults).
    """
    cloth: str = 'in-shop'
    representation: str = 'cpvton'
    reserved_for: str = 'GMM'
    grid_image: bool = False
    warps_from: str = ''
    masked_photo: bool = False
    unpaired_cloth: bool = False
    layout: str = 'viton'


CPVTON_DATA = {'GMM': DataSpec(cloth='in-shop', reserved_for='GMM', grid_image=True),
               'TOM': DataSpec(cloth='warped', reserved_for='TOM')}


def cpvton_data_spec(stage):
    if stage not in CPVTON_DATA:
        raise ValueError(f'stage must be GMM or TOM (or a DataSpec given), got {stage!r}')
    return CPVTON_DATA[stage]


VITON_BODY_GRID = 16         # VITON area-downsamples the body shape to 1/16 (16 x 12 at 256 x 192)
VITON_CLOTH_LABEL = 5        # VITON's clothing mask: upper-clothes only


def legacy_bilinear_matrix(size_out, size_in):
    """[size_out, size_in] weights of TensorFlow 1's resize_images(BILINEAR, align_corners=False), which VITON's
    data used: source coordinate = output index * size_in / size_out (no half-pixel offset), clamped at the end."""
    source = np.arange(size_out) * (size_in / size_out)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    np.add.at(weights, (np.arange(size_out), low), 1 - (source - low))
    np.add.at(weights, (np.arange(size_out), high), source - low)
    return weights


def viton_body_shape(silhouette, out):
    """VITON's body shape: ``silhouette`` [H,W] (bool) area-averaged to 1/16 and resized back bilinearly as
    TensorFlow 1 did, into ``out`` [1,H,W], in [0,1]."""
    height, width = silhouette.shape
    small_h, small_w = height // VITON_BODY_GRID, width // VITON_BODY_GRID
    blocks = silhouette[:small_h * VITON_BODY_GRID, :small_w * VITON_BODY_GRID].astype(np.float64)
    small = blocks.reshape(small_h, VITON_BODY_GRID, small_w, VITON_BODY_GRID).mean(axis=(1, 3))   # AREA
    up = legacy_bilinear_matrix(height, small_h) @ small @ legacy_bilinear_matrix(width, small_w).T
    out.numpy()[0] = up
    return out


ARM_LABELS = (14, 15)            # left and right arm
NECK_KEYPOINT = 1                # COCO-18's neck
DEFAULT_NECK_BOX = 32            # pixels at the model size: the side of the square hidden around the neck


def masked_photo(image, parse_array, keypoints, box_side):
    """WUTON's agnostic input [3,H,W] in [-1,1]: the person photo with the upper-body clothes (5, 6, 7), the arms
    (14, 15) and a ``box_side`` square around the neck keypoint set to 0 (mid-grey), the rest as it is."""
    hidden = label_region(parse_array, CLOTH_LABELS + ARM_LABELS)
    x, y, _ = keypoints[NECK_KEYPOINT]
    if x > 1 and y > 1:   # drawn as CP-VTON draws its pose squares: only keypoints that were detected
        half = box_side // 2
        hidden[max(int(y) - half, 0):max(int(y) + half, 0), max(int(x) - half, 0):max(int(x) + half, 0)] = True
    return masked_image(image, ~hidden, 0.0)


def unpaired_cloth_name(clothes, own, seed, epoch, index):
    """A cloth of ``clothes`` (the sorted cloth names of the pairs list) other than ``own``, drawn from (seed,
    epoch, index): reproducible, and resumable with the data position; a new draw every epoch."""
    others = [name for name in clothes if name != own]
    return others[int(np.random.default_rng([seed, epoch, index]).integers(len(others)))]


class CPDataset(data.Dataset):
    """Dataset of (person, cloth) pairs. ``opt`` needs: dataroot, datamode, stage, data_list, fine_height,
    fine_width, radius; optionally reserved_regions ('original' or 'cpvton_plus') and body_shape ('parse' or
    'image-mask'), the original's when absent, and the folder option a ``spec.warps_from`` names. ``spec``
    (DataSpec) is what the stage reads; CP-VTON's GMM and TOM have theirs (CPVTON_DATA) when it is None."""

    def __init__(self, opt, spec=None):
        super().__init__()
        self.opt = opt
        self.spec = spec or cpvton_data_spec(opt.stage)
        self.root = opt.dataroot
        self.datamode = opt.datamode
        self.stage = opt.stage
        self.layout = DataLayout(Path(opt.dataroot), opt.datamode)
        self.data_list = opt.data_list
        self.fine_height = opt.fine_height
        self.fine_width = opt.fine_width
        self.radius = opt.radius
        self.data_path = osp.join(opt.dataroot, opt.datamode)
        pairs = read_pairs(osp.join(opt.dataroot, opt.data_list))
        self.im_names = [im_name for im_name, _ in pairs]
        self.c_names = [c_name for _, c_name in pairs]
        in_shop = self.spec.cloth == 'in-shop'
        self.cloth_dir, self.mask_dir = cloth_folders(in_shop)
        self.warps_by_cloth = not in_shop and warps_named_by_cloth(self.data_path, pairs)
        self.warp_results = Path(getattr(opt, self.spec.warps_from)) if self.spec.warps_from else None
        self.grid_image = make_grid_image(self.fine_height, self.fine_width) if self.spec.grid_image else ''
        self.clothes = sorted(set(self.c_names))
        if self.spec.unpaired_cloth and len(self.clothes) < 2:
            raise DataError(f'{osp.join(opt.dataroot, opt.data_list)} names one cloth only; stage {opt.stage} also '
                            f'tries each person in another cloth of the list: list pairs with at least two clothes')
        self.seed = getattr(opt, 'seed', None) or 0
        self.neck_box = getattr(opt, 'neck_box', DEFAULT_NECK_BOX)
        self.reserved_labels = RESERVED_LABELS[getattr(opt, 'reserved_regions', 'original')][self.spec.reserved_for]
        self.body_shape = getattr(opt, 'body_shape', 'parse')
        if self.body_shape not in BODY_SHAPE_SOURCES:
            raise ValueError(f'body_shape must be one of {BODY_SHAPE_SOURCES}, got {self.body_shape!r}')

    def name(self):
        return 'CPDataset'

    def __len__(self):
        return len(self.im_names)

    def file(self, folder, name):
        """The path of the file ``name`` in the split's ``folder`` (see file_in)."""
        return str(self.layout.split_file(folder, name))

    def cloth_path(self, folder, im_name, c_name):
        """Where a pair's cloth (or mask) lies in `folder` (see cloth_file_name)."""
        return self.file(folder, cloth_file_name(self.spec.cloth == 'in-shop', self.warps_by_cloth, im_name, c_name))

    def __getitem__(self, key):
        """``key``: an index, or (epoch, index) from a sampler of a spec with unpaired clothes."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        c_name = self.c_names[index]
        im_name = self.im_names[index]
        height, width = self.fine_height, self.fine_width
        size = (width, height)

        cloth_pixels, _ = load_photo(self.cloth_path(self.cloth_dir, im_name, c_name), size)
        cloth = normalized(cloth_pixels)
        mask_pixels = load_mask(self.cloth_path(self.mask_dir, im_name, c_name), size)
        cloth_mask = torch.from_numpy((mask_pixels >= 128).astype(np.float32)).unsqueeze(0)

        person_pixels, keypoint_scale = load_photo(self.file('image', im_name), size, scales_keypoints=True)
        image = normalized(person_pixels)

        parse_array = load_parse_labels(str(self.layout.parse_map(im_name)), size)
        keypoints = load_coco18_keypoints(str(self.layout.pose(im_name)), keypoint_scale)
        # agnostic = [shape (1), head (3), pose maps (18)], each part written in place: building it
        # with torch.cat costed more than the rest of the item together.
        agnostic = torch.empty((4 + len(keypoints), height, width))
        shape, head = agnostic[0:1], agnostic[1:4]
        _, pose_image = draw_pose_maps(keypoints, height, width, self.radius, out=agnostic[4:])
        if self.spec.representation == 'viton':
            self.viton_agnostic(agnostic, image, parse_array)
        else:
            downsampled_body_shape(self.body_silhouette(im_name, parse_array, size), height, width, out=shape)
            masked_image(image, label_region(parse_array, self.reserved_labels), -1.0, out=head)   # black outside
        cloth_region = label_region(parse_array, CLOTH_LABELS)
        parse_cloth = masked_image(image, cloth_region, 1.0)                                   # white outside
        parse_cloth_mask = torch.from_numpy(cloth_region.astype(np.float32)).unsqueeze(0)
        item = {
            'c_name': c_name,            # for visualisation
            'im_name': im_name,          # for visualisation or ground truth
            'cloth': cloth,              # input
            'cloth_mask': cloth_mask,    # input
            'image': image,              # ground truth (TOM), visualisation (GMM)
            'agnostic': agnostic,        # input
            'parse_cloth': parse_cloth,  # ground truth (GMM)
            'shape': shape,              # visualisation
            'head': head,                # visualisation
            'pose_image': pose_image,    # visualisation
            'grid_image': self.grid_image,  # visualisation
            'parse_cloth_mask': parse_cloth_mask,  # ground truth (TOM, --tom_mask_target person_cloth)
        }
        if self.spec.representation == 'viton':
            item['viton_cloth_mask'] = torch.from_numpy(
                (parse_array == VITON_CLOTH_LABEL).astype(np.float32)).unsqueeze(0)
        if self.warp_results is not None:
            item.update(self.warped_cloth(im_name, c_name, size))
        if self.spec.masked_photo:
            item['masked_photo'] = masked_photo(image, parse_array, keypoints, self.neck_box)
        if self.spec.unpaired_cloth:
            item.update(self.unpaired_cloth(c_name, epoch, index, size))
        return item

    def unpaired_cloth(self, own, epoch, index, size):
        """{'unpaired_c_name', 'unpaired_cloth' [3,H,W] in [-1,1]}: the try-on with it has no ground truth, so
        only its photo is needed (no mask)."""
        name = unpaired_cloth_name(self.clothes, own, self.seed, epoch, index)
        pixels, _ = load_photo(self.file('cloth', name), size)
        return {'unpaired_c_name': name, 'unpaired_cloth': normalized(pixels)}

    def viton_agnostic(self, agnostic, image, parse_array):
        """VITON's person representation, in place of ``agnostic`` [22,H,W] whose pose maps (rows 4:) CP-VTON's
        drawing filled in [-1,1]: body shape without the head in [0,1], the head regions' RGB in [-1,1] and 0
        outside (not -1), the pose boxes in {0,1}."""
        head_region = label_region(parse_array, HEAD_LABELS)
        viton_body_shape((parse_array > 0) & ~head_region, out=agnostic[0:1])
        masked_image(image, head_region, 0.0, out=agnostic[1:4])
        agnostic[4:].add_(1).mul_(0.5)

    def warped_cloth(self, im_name, c_name, size):
        """{'warped_cloth' [3,H,W] in [-1,1], 'warped_mask' [1,H,W] in {0,1}} of the pair in ``warp_results``."""
        key = pair_key(im_name, c_name)
        pixels, _ = load_photo(file_in(self.warp_results / 'warp-cloth', key), size)
        mask = load_mask(file_in(self.warp_results / 'warp-mask', key), size)
        return {'warped_cloth': normalized(pixels),
                'warped_mask': torch.from_numpy((mask >= MASK_THRESHOLD).astype(np.float32)).unsqueeze(0)}

    def body_silhouette(self, im_name, parse_array, size):
        """Bool [H,W]: the person's body, from the parse map or CP-VTON+'s image-mask/."""
        if self.body_shape == 'parse':
            return parse_array > 0
        return load_body_mask(str(self.layout.body_mask(im_name)), size)


class ResumableSampler(data.Sampler):
    """The indices of one epoch, for one process: shuffled by a permutation seeded with
    (seed, epoch) when ``shuffle`` is set, else in file order; split across ``world_size``
    processes like DistributedSampler (padded by wrapping around); and able to start part-way
    through an epoch, at ``start`` entries of the epoch's order consumed by all processes together.

    Process r takes entries r, r + W, r + 2W, ... of what remains, so each step's global batch
    (batch size x W consecutive entries) is the same whatever the process count: a resumed run
    continues on the same batches, also with another process count at the same global batch.
    """

    def __init__(self, num_samples, shuffle, seed=0, rank=0, world_size=1, with_epoch=False):
        super().__init__()
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.with_epoch = with_epoch   # yield (epoch, index): the dataset's draws then follow the epoch
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch, start=0):
        self.epoch, self.start = epoch, start

    def epoch_order(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return torch.randperm(self.num_samples, generator=generator).tolist()
        return list(range(self.num_samples))

    def epoch_indices(self):
        order = self.epoch_order()
        remaining = order[self.start:]
        per_rank = -(-len(remaining) // self.world_size)
        padded = (remaining + order * self.world_size)[:per_rank * self.world_size]
        return padded[self.rank::self.world_size]

    def __iter__(self):
        indices = self.epoch_indices()
        return iter([(self.epoch, index) for index in indices] if self.with_epoch else indices)

    def __len__(self):
        return len(self.epoch_indices())


def shared_memory_free_bytes(path='/dev/shm'):
    """Free bytes in the shared-memory file system, or None where there is none (not Linux)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def item_bytes(item):
    return sum(v.numel() * v.element_size() for v in item.values() if torch.is_tensor(v))


def workers_that_fit(workers, batch_bytes, free_bytes, log=print):
    """(workers, prefetch_factor) whose batches in flight fit in half the free shared memory.

    DataLoader workers hand their batches to the main process through /dev/shm (torch's
    'file_descriptor' sharing strategy, the Linux default, which we keep). Containers often
    give /dev/shm 64 MB (Docker's default), less than the 4 workers x 2 prefetched batches x
    ~34 MB of a CP-VTON batch: the process then dies with a bus error, which is what the seed
    reproduction hit. Fewer batches in flight avoid that; the log says what was reduced.
    """
    if workers == 0 or free_bytes is None:
        return workers, None if workers == 0 else 2
    budget = free_bytes // 2
    for prefetch in (2, 1):
        if workers * prefetch * batch_bytes <= budget:
            break
    fitting = max(0, min(workers, budget // (prefetch * batch_bytes)))
    if (fitting, prefetch) != (workers, 2):
        log(f'warning: /dev/shm has {free_bytes / 2**20:.0f} MB free, too little for {workers} workers x 2 batches '
            f'of {batch_bytes / 2**20:.0f} MB; using {fitting} worker(s), prefetch {prefetch}. For more, give the '
            f'container more shared memory (docker run --shm-size=1g).')
    return fitting, (prefetch if fitting else None)


class CPDataLoader:
    """Endless batch iterator over a CPDataset. ``opt`` needs: batch_size, workers, shuffle (and
    optionally seed). Batches are [B,...] versions of the dataset's items.

    The original always shuffled (also in test runs, whatever --shuffle said); here the
    order is shuffled only when ``opt.shuffle`` is set. ``state()`` / ``load_state()`` save
    and restore the position in the data, for resuming. Workers are persistent, and their
    number is lowered where /dev/shm is too small for them (see ``workers_that_fit``).
    """

    def __init__(self, opt, dataset, rank=0, world_size=1, pin_memory=False, log=print):
        super().__init__()
        spec = getattr(dataset, 'spec', None)
        self.sampler = ResumableSampler(len(dataset), opt.shuffle, seed=getattr(opt, 'seed', None) or 0,
                                        rank=rank, world_size=world_size,
                                        with_epoch=bool(spec and spec.unpaired_cloth))
        workers, prefetch = opt.workers, None
        if workers > 0:
            workers, prefetch = workers_that_fit(workers, item_bytes(dataset[0]) * opt.batch_size,
                                                 shared_memory_free_bytes(), log)
        self.data_loader = data.DataLoader(
            dataset, batch_size=opt.batch_size, shuffle=False, sampler=self.sampler, num_workers=workers,
            pin_memory=pin_memory, persistent_workers=workers > 0, prefetch_factor=prefetch)
        self.dataset = dataset
        self.batch_size = opt.batch_size
        self.samples_done = 0   # samples this process handed out since the sampler's start
        self.data_iter = iter(self.data_loader)

    def next_batch(self):
        try:
            batch = next(self.data_iter)
        except StopIteration:
            self.restart(self.sampler.epoch + 1, 0)
            batch = next(self.data_iter)
        self.samples_done += len(batch['im_name'])
        return batch

    def restart(self, epoch, position):
        """Continue in ``epoch`` after its first ``position`` entries (consumed by all processes)."""
        self.sampler.set_epoch(epoch, start=position)
        self.samples_done = 0
        self.data_iter = iter(self.data_loader)

    def state(self):
        """The position in the data, the same on every process: {'epoch', 'position'}."""
        return {'epoch': self.sampler.epoch,
                'position': self.sampler.start + self.samples_done * self.sampler.world_size}

    def load_state(self, state):
        self.restart(int(state['epoch']), int(state['position']))


class ParallelMap(data.Dataset):
    """Item i is function(items[i]), so that a DataLoader's workers map `function` over `items` in parallel
    (`function` must be picklable: a module-level function, or a functools.partial of one)."""

    def __init__(self, function, items):
        self.function, self.items = function, list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.function(self.items[index])


def parallel_map(function, items, workers, description):
    """[function(item) for item in items], computed by `workers` processes (0: in this one), in order."""
    jobs = ParallelMap(function, items)
    # batch_size=None: items come back one by one, uncollated, in order
    return list(progress(data.DataLoader(jobs, batch_size=None, num_workers=workers), total=len(jobs),
                         desc=description, unit='item'))
