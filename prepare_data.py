"""Turn folders of your own photos into a checked VITON-format split that CP-VTON trains or tests on.

    python prepare_data.py --persons photos/ --clothes clothes/ --poses openpose_json/ --parses parses/ \\
        --out mydata --datamode test [--fine_height 256 --fine_width 192] [--parse_labels lip|cihp|atr|pascal] \\
        [--cloth_masks masks/] [--pairs pairs.txt] [--image_mask] [--skip_missing] [--overwrite]

writes ``<out>/<datamode>/{image,image-parse,pose,cloth,cloth-mask[,image-mask]}/`` (SPLIT_FOLDERS),
``<out>/<datamode>_pairs.txt``, ``<out>/<datamode>_pairs_paired.txt`` and ``<out>/<datamode>/placement.json``,
then runs the data checker (data_check.validate_dataset) and prints its report. Exit 0 only when the check
passes; 2 for a user error (one line per problem, naming the file or flag and the fix); 1 when the check fails.
The README's "Your own photos" says how to make the inputs; the rules it leaves out follow.

Inputs (only read, never written to)
------------------------------------
* ``--persons``, ``--clothes``: image files (.jpg .jpeg .png .webp .bmp .tif .tiff .gif, any case) directly in
  the folder; hidden files are skipped, others are listed as ignored. The stem names the file in the split
  (viton_name: ``persons/alice.png`` -> ``image/alice.jpg``); a person and a cloth may share a stem. Stems are
  never renamed: one that is no plain pairs-file name (cp_dataset.name_problem), holds white space or '.jpg'
  (the loader derives the parse and pose names from '.jpg'), or two inputs of one stem, are refused by name.
* ``--poses``: ``<stem>_keypoints.json`` or ``<stem>.json`` (both: an error), in pixels of the photo as shown
  (OpenPose's default ``--keypoint_scale 0``). Written as VITON's COCO-18 files (``"pose_keypoints"``).
* ``--parses``: ``<stem>.png`` (or SCHP's ``<stem>..png``) of the photo's size: a palette or grayscale (16-bit
  too) PNG whose pixel values are labels, or an RGB rendering in the LIP palette (either variant) or SCHP's
  (the PASCAL VOC colour map), mapped back by colour. A JPEG parse map is refused (compression changes labels).
* ``--cloth_masks``: ``<cloth stem>.<any image extension>`` of the cloth photo's size, white (>= 128 in
  grayscale; transparent counts as black) = cloth. Without it: cloth_mask.cloth_mask on the full-size photo.
* ``--pairs``: ``<person file> <cloth file>`` per line, as named in --persons and --clothes (a name whose stem
  matches one input, like ``alice.jpg`` for alice.png, works too).
* ``--skip_missing`` also leaves out a person whose pose file holds nobody, or no keypoint.

A parse map or a user's mask must have its photo's size *as shown*, after the EXIF orientation (what SCHP and
OpenPose see: OpenCV's imread applies it); one of the stored, unrotated size is refused with that
explanation, as are keypoints outside the upright photo. Photos: grayscale, palette, CMYK and YCbCr become RGB,
16-bit grayscale is scaled (/257), transparency is composited on white (as cp_dataset loads photos).

Fitting to the model size without distortion (Placement)
--------------------------------------------------------
    scale = min(fine_width / W, fine_height / H); resized (w, h) = (round(W * scale), round(H * scale))
    offset (dx, dy) = ((fine_width - w) // 2, (fine_height - h) // 2); scale_x = w / W, scale_y = h / H

Photos: LANCZOS, padded white, JPEG quality 95 (an upright RGB JPEG of the model size is copied unchanged);
parse maps: NEAREST, padded with 0; masks: BILINEAR on 0/255 then >= 128, padded with 0; keypoints:
x' = x * scale_x + dx, y' = y * scale_y + dy in continuous coordinates (pixel i covers [i, i + 1), as Pillow's
resize and cp_dataset's scaling); a keypoint OpenPose did not find stays 0, 0, 0.

``<out>/<datamode>/placement.json`` records the mapping of every written file::

    {"made_by": "prepare_data.py", "version": 1, "fine_width": 192, "fine_height": 256, "parse_labels": "lip",
     "keypoint_convention": "...", "settings": {...},
     "image": {"alice.jpg": PLACEMENT, ...}, "cloth": {"shirt7.jpg": PLACEMENT, ...}}
    PLACEMENT = {"source": "photos/alice.png", "exif_orientation": 6, "source_size": [W, H] (upright),
                 "target_size": [192, 256], "scale": s, "scale_x": sx, "scale_y": sy,
                 "resized_size": [w, h], "offset": [dx, dy]}

``unplace(image_at_model_size, placement)`` maps a result back onto the original photo (upright frame, or the
file's stored pixels with ``stored_orientation=True``); ``load_placements(split_dir)`` reads the file back.

Parse labels (--parse_labels; written as LIP labels, palette PNGs as VITON's, cp_dataset.VITON_LIP_PALETTE)
------------------------------------------------------------------------------------------------------
LIP (20): 0 background, 1 hat, 2 hair, 3 glove, 4 sunglasses, 5 upper-clothes, 6 dress, 7 coat, 8 socks,
9 pants, 10 jumpsuits, 11 scarf, 12 skirt, 13 face, 14 left-arm, 15 right-arm, 16 left-leg, 17 right-leg,
18 left-shoe, 19 right-shoe. CP-VTON reads: head = 1, 2, 4, 13; cloth = 5, 6, 7; body shape = every label > 0.
A parse map without cloth (5, 6 or 7) is warned about: the GMM has nothing to warp onto.

* ``lip``: identity.
* ``cihp`` (CIHP, 20): identity. CIHP's names are LIP's except 10 = torso-skin, which is kept as 10. LIP has
  no skin label for the torso (VITON's LIP maps leave the neck and neckline skin at 0, background: a hole in
  the body shape). CP-VTON uses 10 nowhere but in the body shape - exactly how it treats bare arms and legs -
  and CP-VTON+'s re-made VITON maps (image-parse-new) label the neck and chest skin 10 too. Lost: nothing
  CP-VTON reads; a tool that reads the LIP names literally would call that skin 'jumpsuits'.
* ``atr`` (ATR, SCHP's order, 18): 0 background -> 0, 1 hat -> 1, 2 hair -> 2, 3 sunglasses -> 4,
  4 upper-clothes -> 5, 5 skirt -> 12, 6 pants -> 9, 7 dress -> 6, 8 belt -> 9 (pants: kept with the lower
  garment, out of the cloth region; a belt over a dress cuts the dress region), 9 left-shoe -> 18,
  10 right-shoe -> 19, 11 face -> 13, 12 left-leg -> 16, 13 right-leg -> 17, 14 left-arm -> 14,
  15 right-arm -> 15, 16 bag -> 0 (LIP has no bag; a bag in front of the body leaves a hole in the body
  shape), 17 scarf -> 11. ATR has no glove, coat, socks or jumpsuit: coats come out as upper-clothes (both
  are CP-VTON cloth, so nothing CP-VTON reads is lost but the bag).
* ``pascal`` (Pascal-Person-Part, 7: body parts, not garments): 0 background -> 0, 1 head -> 13 face,
  2 torso -> 5 upper-clothes, 3 upper arms and 4 lower arms -> 14 left-arm / 15 right-arm, 5 upper legs and
  6 lower legs -> 16 left-leg / 17 right-leg, left and right by the side of the torso's middle column
  (the person's left is on the image's right, as in VITON; a person seen from the back comes out mirrored,
  which CP-VTON does not read). Lost: no hair/face split and no hat or sunglasses (CP-VTON's head region,
  1 + 2 + 4 + 13, is still the whole head; CP-VTON+'s GMM, which leaves the hair out, keeps it in), and no
  garment/skin split on the torso: CP-VTON's cloth region becomes the whole torso, bare skin included, and
  a garment below the hips (a dress's skirt, a long coat) becomes legs, as do pants, skirts and shoes.
  Training the GMM on it teaches it the torso, not the garment; the run prints a loud warning.

Without --parse_labels the set is detected only where the files say it unambiguously, and the line
``parse labels: detected ...`` says from what: VITON's variant of the LIP palette (only VITON's own LIP maps
carry it), SCHP's palette with exactly 20 (LIP), 18 (ATR) or 7 (Pascal) entries as simple_extractor.py writes
it, or label values that only the 20-label sets have (18 or 19). LIP's standard colours alone do not tell the
set (Graphonomy draws its ATR and Pascal outputs in them), nor do SCHP's colours in an RGB rendering (all its
sets share them): anything else stops with a request for --parse_labels. A label the chosen set does not
have is an error naming the file and the labels.

Pairs and overwriting
---------------------
Train: no same-cloth pair is an error; test: more than MANY_PAIRS pairs (every person x every cloth) is
pointed out, suggesting --pairs. An existing non-empty split or pairs file stops the command unless
--overwrite, which replaces only a split that prepare_data.py wrote (its placement.json says so) and that
holds nothing else (step 2's warp-cloth/ copied in, a hand-fixed file: refused, listing them); a --pairs file
in the split is refused. The split is built in a hidden ``.<datamode>.prepare-<pid>`` folder beside it and
swapped in when complete (the old one moved aside until the new one is in place), so an error leaves nothing
half-written; a run that was killed leaves those folders, which the next run removes (or puts back).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time
import types
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

import flags
from cp_dataset import (ALPHA_MODES, BODY_25_TO_COCO_18, CLOTH_LABELS, LABEL_FILTER, LABEL_OF_LIP_COLOUR, LIP_PALETTE,
                        MASK_FILTER, NUM_BODY_25_KEYPOINTS, NUM_LIP_LABELS, NUM_POSE_KEYPOINTS, PHOTO_FILTER, POSE_KEYS,
                        VITON_LIP_PALETTE, DataError, name_problem, pairs_file_lines, parse_file_name, pose_file_name,
                        rgb_fix, shown)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp', '.tif', '.tiff', '.gif')
PHOTO_JPEG_QUALITY = 95
MASK_JPEG_QUALITY = 100          # a binary mask survives JPEG at this quality bit-exactly after >= 128
WHITE = (255, 255, 255)
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')   # how Pillow opens 16-bit grayscale PNGs and TIFFs
EXIF_ORIENTATION = 0x0112
PLACEMENT_FILE = 'placement.json'
MADE_BY = 'prepare_data.py'
# The folders of a split, as cp_dataset reads them; image-mask/ only with --image_mask (tryon.py always writes it).
SPLIT_FOLDERS = ('image', 'image-parse', 'pose', 'cloth', 'cloth-mask')
IMAGE_MASK_FOLDER = 'image-mask'
STAGING_PREFIX = '.{datamode}.prepare-'     # + the pid of the run that builds the split there
BACKUP_PREFIX = '.{datamode}.replaced-'     # + pid: the old split while --overwrite moves the new one in
MANY_PAIRS = 10_000
KEYPOINT_CONVENTION = ("x' = x * scale_x + offset_x, y' = y * scale_y + offset_y, continuous coordinates (the image "
                       "spans [0, W] x [0, H], pixel i covers [i, i + 1)); a keypoint at 0, 0 or of confidence 0 is "
                       "missing and stays 0, 0, 0")


class PrepareError(DataError):
    """A user error of preparing: one line that names the file or flag and the fix (a DataError, as every
    command reports them)."""


class MissingInput(PrepareError):
    """No usable pose, parse map or cloth mask for one photo (skipped with --skip_missing)."""


# ---------------------------------------------------------------------------------------------------
# Placement: fit to the model size without distortion, and back

@dataclass(frozen=True)
class Placement:
    """How a source image (upright, ``source_size`` (W, H)) was resized to ``resized_size`` and pasted at
    ``offset`` (dx, dy) into an image of ``target_size``. ``exif_orientation`` and ``source`` are records."""
    source_size: tuple
    target_size: tuple
    resized_size: tuple
    offset: tuple
    exif_orientation: int = 1
    source: str = ''

    @property
    def scale(self):
        """The nominal factor: min(target W / W, target H / H)."""
        return min(self.target_size[0] / self.source_size[0], self.target_size[1] / self.source_size[1])

    @property
    def scale_x(self):
        return self.resized_size[0] / self.source_size[0]

    @property
    def scale_y(self):
        return self.resized_size[1] / self.source_size[1]

    @property
    def box(self):
        """(left, top, right, bottom) of the placed image inside the target."""
        (dx, dy), (w, h) = self.offset, self.resized_size
        return dx, dy, dx + w, dy + h

    def to_dict(self):
        return {'source': self.source, 'exif_orientation': self.exif_orientation,
                'source_size': list(self.source_size), 'target_size': list(self.target_size),
                'scale': self.scale, 'scale_x': self.scale_x, 'scale_y': self.scale_y,
                'resized_size': list(self.resized_size), 'offset': list(self.offset)}

    @classmethod
    def from_dict(cls, entry):
        return cls(tuple(entry['source_size']), tuple(entry['target_size']), tuple(entry['resized_size']),
                   tuple(entry['offset']), int(entry.get('exif_orientation', 1)), entry.get('source', ''))


def fit(source_size, target_size, exif_orientation=1, source=''):
    """The Placement that fits ``source_size`` (W, H) into ``target_size`` keeping the aspect ratio, centred."""
    (width, height), (target_width, target_height) = source_size, target_size
    if width < 1 or height < 1:
        raise ValueError(f'empty image: {width}x{height}')
    scale = min(target_width / width, target_height / height)
    resized = (min(target_width, max(1, round(width * scale))), min(target_height, max(1, round(height * scale))))
    offset = ((target_width - resized[0]) // 2, (target_height - resized[1]) // 2)
    return Placement(tuple(source_size), tuple(target_size), resized, offset, exif_orientation, str(source))


def place_photo(image, placement):
    """RGB PIL image of the placement's source size -> RGB image of its target size (LANCZOS, white padding)."""
    resized = image.resize(placement.resized_size, PHOTO_FILTER) if image.size != placement.resized_size else image
    canvas = Image.new('RGB', placement.target_size, WHITE)
    canvas.paste(resized, placement.offset)
    return canvas


def _place_array(array, placement, resample, fill=0):
    resized = np.asarray(Image.fromarray(array).resize(placement.resized_size, resample))
    out = np.full(placement.target_size[::-1], fill, dtype=array.dtype)
    left, top, right, bottom = placement.box
    out[top:bottom, left:right] = resized
    return out


def place_labels(labels, placement):
    """Label map uint8 [H, W] -> [target H, target W] (NEAREST, padded with label 0)."""
    return _place_array(np.ascontiguousarray(labels, dtype=np.uint8), placement, LABEL_FILTER)


def place_mask(mask, placement):
    """Bool mask [H, W] -> bool [target H, target W] (BILINEAR on 0/255, then >= 128; padded with False)."""
    return _place_array(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, placement, MASK_FILTER) >= 128


def keypoints_present(keypoints):
    keypoints = np.asarray(keypoints, dtype=np.float64)
    return (keypoints[:, 2] > 0) & ~((keypoints[:, 0] == 0) & (keypoints[:, 1] == 0))


def place_keypoints(keypoints, placement):
    """Keypoints [K, 3] (x, y, confidence) in source pixels -> target pixels; missing ones stay 0, 0, 0."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros_like(keypoints)
    present = keypoints_present(keypoints)
    out[present, 0] = keypoints[present, 0] * placement.scale_x + placement.offset[0]
    out[present, 1] = keypoints[present, 1] * placement.scale_y + placement.offset[1]
    out[present, 2] = keypoints[present, 2]
    return out


def unplace_keypoints(keypoints, placement):
    """The inverse of place_keypoints."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros_like(keypoints)
    present = keypoints_present(keypoints)
    out[present, 0] = (keypoints[present, 0] - placement.offset[0]) / placement.scale_x
    out[present, 1] = (keypoints[present, 1] - placement.offset[1]) / placement.scale_y
    out[present, 2] = keypoints[present, 2]
    return out


# The transposition that undoes each EXIF orientation's exif_transpose (PIL's methods for 2-8 are
# FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90).
UNDO_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
                    7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def unplace(image, placement, resample=None, stored_orientation=False):
    """An image at the model size (``placement.target_size``) -> the same content at the original photo's size:
    the padding is cropped away and the rest resized to ``placement.source_size`` (the upright photo, as
    shown). With ``stored_orientation`` the EXIF rotation is undone as well, so the result lines up with the
    file's stored pixels (and its EXIF orientation, if kept, shows it upright again).

    ``image``: a PIL image, or a numpy array (uint8 [H, W, C] photo, integer [H, W] label map, bool [H, W] mask),
    returned as the same kind. ``resample`` defaults to LANCZOS for photos (PIL modes RGB, RGBA, L; 3-D
    arrays), NEAREST for label maps (PIL modes P, 1, I; integer 2-D arrays) and BILINEAR + >= 0.5 for bool masks.
    Pass Image.Resampling.NEAREST for a label map held as an L image."""
    as_array = isinstance(image, np.ndarray)
    is_mask = as_array and image.dtype == bool
    if as_array:
        array = image.astype(np.uint8) * 255 if is_mask else image
        pil = Image.fromarray(array)
        if resample is None:
            resample = MASK_FILTER if is_mask else (PHOTO_FILTER if image.ndim == 3 else LABEL_FILTER)
    else:
        pil = image
        if resample is None:
            resample = LABEL_FILTER if pil.mode in ('P', '1', 'I', 'I;16') else PHOTO_FILTER
    if pil.size != tuple(placement.target_size):
        raise ValueError(f'unplace: the image is {pil.size[0]}x{pil.size[1]}, the placement\'s target size is '
                         f'{placement.target_size[0]}x{placement.target_size[1]}')
    out = pil.crop(placement.box).resize(tuple(placement.source_size), resample)
    if stored_orientation and placement.exif_orientation in UNDO_ORIENTATION:
        out = out.transpose(UNDO_ORIENTATION[placement.exif_orientation])
    if not as_array:
        return out
    result = np.asarray(out)
    return result >= 128 if is_mask else result.astype(image.dtype)


def load_placements(split_dir):
    """{'image': {name: Placement}, 'cloth': {name: Placement}} from <split_dir>/placement.json."""
    with open(osp.join(split_dir, PLACEMENT_FILE)) as f:
        record = json.load(f)
    return {kind: {name: Placement.from_dict(entry) for name, entry in record.get(kind, {}).items()}
            for kind in ('image', 'cloth')}


# ---------------------------------------------------------------------------------------------------
# Reading inputs

def open_image(path, load=True):
    """Image.open (+ load, unless only the header is wanted), with a user error naming the file for anything
    unreadable."""
    try:
        image = Image.open(path)
        if load:
            image.load()
        return image
    except FileNotFoundError:
        raise PrepareError(f'{shown(str(path))}: file not found') from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PrepareError(f'{shown(str(path))}: cannot be read as an image ({error}); fix: export it again as '
                           f'JPEG or PNG') from None


def exif_orientation(image):
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except (ValueError, TypeError, OSError):
        return 1


def upright(image):
    """(image turned by its EXIF orientation, the orientation, the stored size)."""
    orientation, stored_size = exif_orientation(image), image.size
    if orientation in UNDO_ORIENTATION:
        image = ImageOps.exif_transpose(image)
    return image, orientation, stored_size


def sixteen_bit_to_8(image):
    """A 16-bit grayscale image -> L, 65535 -> 255."""
    values = np.asarray(image).astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), 'L')


def to_rgb(image, path=''):
    """A photo -> 8-bit RGB: 16-bit grayscale scaled, the rest as cp_dataset loads it (transparency composited
    on white); a mode nothing converts (32-bit, float) is a PrepareError naming ``path``."""
    if image.mode in SIXTEEN_BIT_MODES:
        return sixteen_bit_to_8(image).convert('RGB')
    try:
        return image if image.mode == 'RGB' else rgb_fix(image, str(path)).apply(image)
    except DataError as error:      # a mode nothing converts; a PrepareError, collected with the others
        raise PrepareError(str(error)) from None


def load_photo(path):
    """(upright RGB PIL image, EXIF orientation, stored size) of a person or cloth photo."""
    image, orientation, stored_size = upright(open_image(path))
    return to_rgb(image, path), orientation, stored_size


def size_problem(path, size, photo_path, photo_size, stored_size, orientation, what):
    """A PrepareError for a map of the wrong size, or None."""
    if tuple(size) == tuple(photo_size):
        return None
    w, h = size
    if tuple(size) == tuple(stored_size):
        return PrepareError(
            f'{shown(str(path))}: the {what} is {w}x{h}, the size of the stored pixels of {shown(str(photo_path))}, '
            f'but that photo is shown rotated (EXIF orientation {orientation}) as {photo_size[0]}x{photo_size[1]}; '
            f'fix: make the {what} from the upright photo (OpenCV\'s imread and PIL.ImageOps.exif_transpose give '
            f'it), or save the photo without its EXIF rotation')
    return PrepareError(
        f'{shown(str(path))}: the {what} is {w}x{h}, but its photo {shown(str(photo_path))} is '
        f'{photo_size[0]}x{photo_size[1]} (as shown, after its EXIF orientation); fix: make the {what} from that '
        f'photo at its full size')


# --- pose

def read_openpose(path, photo_size, stored_size=None, orientation=1):
    """COCO-18 keypoints [18, 3] of the most confident person in an OpenPose JSON file, in the photo's pixels,
    and a note (or None) when the file held several people. Raises PrepareError (MissingInput when OpenPose
    found nobody)."""
    where = shown(str(path))
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PrepareError(f'{where}: not valid JSON ({error}); fix: write it again with OpenPose\'s --write_json') \
            from None
    except OSError as error:
        raise PrepareError(f'{where}: cannot be read ({error.strerror})') from None
    people = record.get('people') if isinstance(record, dict) else None
    if not isinstance(people, list):
        raise PrepareError(f'{where}: no "people" list, so it is not an OpenPose JSON file; fix: write it with '
                           f'OpenPose\'s --write_json')
    if not people:
        raise MissingInput(f'{where}: OpenPose found no person in this photo ("people" is empty); fix: use a photo '
                           f'where the whole upper body is visible, or leave the photo out')
    candidates = []
    for index, person in enumerate(people):
        values = next((person[key] for key in POSE_KEYS if isinstance(person, dict) and key in person), None)
        if values is None:
            raise PrepareError(f'{where}: person {index + 1} has no {" or ".join(map(repr, POSE_KEYS))}; fix: '
                               f'write it with OpenPose\'s --write_json')
        try:
            keypoints = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        except (ValueError, TypeError):
            raise PrepareError(f'{where}: person {index + 1}\'s keypoints are not a list of numbers, 3 per point') \
                from None
        if len(keypoints) == NUM_BODY_25_KEYPOINTS:
            keypoints = keypoints[BODY_25_TO_COCO_18]
        elif len(keypoints) != NUM_POSE_KEYPOINTS:
            raise PrepareError(f'{where}: {len(keypoints)} keypoints; CP-VTON takes OpenPose COCO-18 (18) or '
                               f'BODY_25 (25); fix: run OpenPose with --model_pose COCO or BODY_25')
        if not np.isfinite(keypoints).all():
            raise PrepareError(f'{where}: person {index + 1}\'s keypoints hold NaN or infinite values')
        candidates.append(keypoints)
    confidences = [float(k[keypoints_present(k), 2].sum()) for k in candidates]
    best = int(np.argmax(confidences))
    note = None
    if len(candidates) > 1:
        others = ', '.join(f'{c:.2f}' for i, c in enumerate(confidences) if i != best)
        note = (f'{where}: {len(candidates)} people; took person {best + 1}, the highest summed confidence '
                f'({confidences[best]:.2f}; the others {others})')
    keypoints = candidates[best]
    keypoints[~keypoints_present(keypoints)] = 0.0
    check_keypoints_in_photo(keypoints, where, photo_size, stored_size, orientation)
    return keypoints, note


def check_keypoints_in_photo(keypoints, where, photo_size, stored_size, orientation):
    present = keypoints_present(keypoints)
    if not present.any():
        raise MissingInput(f'{where}: every keypoint is missing (confidence 0); fix: use a photo where the person '
                           f'is visible, or leave the photo out')
    xy = keypoints[present, :2]
    width, height = photo_size
    if max(width, height) > 8 and np.abs(xy).max() <= 1.0:
        raise PrepareError(f'{where}: every coordinate is within [-1, 1]: normalised keypoints; fix: run OpenPose '
                           f'with the default --keypoint_scale 0 (pixels)')
    margin_x, margin_y = 2 + 0.01 * width, 2 + 0.01 * height
    outside = ((xy[:, 0] < -margin_x) | (xy[:, 0] > width + margin_x) |
               (xy[:, 1] < -margin_y) | (xy[:, 1] > height + margin_y))
    if outside.any():
        x, y = xy[outside][0]
        hint = ''
        if stored_size is not None and tuple(stored_size) != tuple(photo_size):
            hint = (f' (the photo is shown rotated by its EXIF orientation {orientation}: run OpenPose on the '
                    f'upright photo)')
        raise PrepareError(f'{where}: keypoint ({x:.1f}, {y:.1f}) lies outside its {width}x{height} photo{hint}; '
                           f'fix: run OpenPose on that very photo at its full size')


def openpose_record(keypoints):
    """VITON's pose JSON for COCO-18 keypoints [18, 3]."""
    values = [0 if v == 0 else round(float(v), 4) for v in np.asarray(keypoints, dtype=np.float64).reshape(-1)]
    return {'version': 1.0, 'people': [{'face_keypoints': [], 'pose_keypoints': values,
                                        'hand_right_keypoints': [], 'hand_left_keypoints': []}]}


# --- parse maps

LIP_NAMES = ('background', 'hat', 'hair', 'glove', 'sunglasses', 'upper-clothes', 'dress', 'coat', 'socks', 'pants',
             'jumpsuits', 'scarf', 'skirt', 'face', 'left-arm', 'right-arm', 'left-leg', 'right-leg', 'left-shoe',
             'right-shoe')
ARM, LEG = -1, -2      # Pascal's unsided limbs: left or right by the side of the torso's middle
# Each table: (source label name, LIP label) in the source's label order; see the module docstring.
LABEL_TABLES = {
    'lip': tuple((name, label) for label, name in enumerate(LIP_NAMES)),
    'cihp': tuple(('torso-skin' if label == 10 else name, label) for label, name in enumerate(LIP_NAMES)),
    'atr': (('background', 0), ('hat', 1), ('hair', 2), ('sunglasses', 4), ('upper-clothes', 5), ('skirt', 12),
            ('pants', 9), ('dress', 6), ('belt', 9), ('left-shoe', 18), ('right-shoe', 19), ('face', 13),
            ('left-leg', 16), ('right-leg', 17), ('left-arm', 14), ('right-arm', 15), ('bag', 0), ('scarf', 11)),
    'pascal': (('background', 0), ('head', 13), ('torso', 5), ('upper-arms', ARM), ('lower-arms', ARM),
               ('upper-legs', LEG), ('lower-legs', LEG)),
}
PARSE_LABEL_SETS = tuple(LABEL_TABLES)
PASCAL_TORSO = 2
# Families the files can tell apart: LIP and CIHP share 20 labels, the palette and every mapping but 10's name.
FAMILY = {'lip': 'lip', 'cihp': 'lip', 'atr': 'atr', 'pascal': 'pascal'}
FAMILY_CLASSES = {'lip': 20, 'atr': 18, 'pascal': 7}


def schp_palette(num_classes=256):
    """The colour map SCHP's simple_extractor.py puts on its label PNGs (the PASCAL VOC colour map): the bits
    of the label spread over the high bits of R, G and B."""
    colours = []
    for label in range(num_classes):
        red = green = blue = 0
        value, bit = label, 7
        while value:
            red |= (value & 1) << bit
            green |= ((value >> 1) & 1) << bit
            blue |= ((value >> 2) & 1) << bit
            value >>= 3
            bit -= 1
        colours.append((red, green, blue))
    return tuple(colours)


SCHP_PALETTE = schp_palette(256)
LABEL_OF_SCHP_COLOUR = {colour: label for label, colour in enumerate(SCHP_PALETTE[:NUM_LIP_LABELS])}
# Label 0 and 1 are drawn alike in both palettes; only labels >= 2 tell them apart.
UNTELLING_LABELS = 2


@dataclass
class DecodedParse:
    """A parse map's label indices in its own label set, and what the file says about that set."""
    indices: np.ndarray      # uint8 [H, W]
    evidence: str            # for messages: 'LIP palette', 'SCHP palette, 18 entries', 'label values', ...
    families: frozenset      # label-set families ('lip', 'atr', 'pascal') the file is consistent with


def families_by_values(max_label):
    return frozenset(f for f, classes in FAMILY_CLASSES.items() if classes > max_label)


def colours_to_labels(rgb, path):
    """RGB rendering [H, W, 3] -> (indices, evidence, families), by the LIP or SCHP palette."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    unique, inverse = np.unique(codes, return_inverse=True)
    colours = [(int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255) for c in unique]
    by_lip = [LABEL_OF_LIP_COLOUR.get(c) for c in colours]
    by_schp = [LABEL_OF_SCHP_COLOUR.get(c) for c in colours]
    lip_fits, schp_fits = None not in by_lip, None not in by_schp
    if lip_fits and schp_fits and by_lip != by_schp:
        raise PrepareError(f'{shown(str(path))}: an RGB rendering whose colours are both LIP and SCHP palette colours '
                           f'of different labels; fix: save the parser\'s label PNG (pixel value = label) instead')
    if not (lip_fits or schp_fits):
        unknown = next(c for c, a, b in zip(colours, by_lip, by_schp) if a is None and b is None)
        raise PrepareError(f'{shown(str(path))}: an RGB image with colours of neither the LIP nor SCHP\'s palette '
                           f'(e.g. {unknown}), so no label can be read from it; fix: save the parser\'s label PNG '
                           f'(pixel value = label), not a blended visualisation')
    labels = np.array(by_lip if lip_fits else by_schp, dtype=np.uint8)
    indices = labels[inverse.reshape(codes.shape)]
    if max(labels) < UNTELLING_LABELS:
        return indices, 'label values', families_by_values(int(max(labels)))
    # Colours do not tell the set: Graphonomy draws its ATR and Pascal outputs in LIP's colours too, so
    # only the labels used (18 and 19 exist in the 20-label sets alone) can.
    palette = 'LIP' if lip_fits else 'SCHP'
    return indices, f'RGB rendering in {palette} colours', families_by_values(int(max(labels)))


def decode_parse(image, path):
    """A parse map PIL image -> DecodedParse (its label indices, not yet mapped to LIP)."""
    mode = image.mode
    if mode == 'RGBA' or mode == 'LA':
        if np.asarray(image.getchannel('A')).min() < 255:
            raise PrepareError(f'{shown(str(path))}: a parse map with transparent pixels; fix: save the parser\'s '
                               f'label PNG (pixel value = label)')
        image = image.convert('RGB' if mode == 'RGBA' else 'L')
        mode = image.mode
    if mode == 'RGB':
        indices, evidence, families = colours_to_labels(np.asarray(image), path)
        return DecodedParse(indices, evidence, families)
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.min(initial=0) < 0 or values.max(initial=0) > 255:
            raise PrepareError(f'{shown(str(path))}: label values {int(values.min())}..{int(values.max())}, more than '
                               f'any human-parsing label set has; fix: save the parser\'s label PNG')
        indices = values.astype(np.uint8)
        return DecodedParse(indices, 'label values', families_by_values(int(indices.max(initial=0))))
    if mode not in ('P', 'L'):
        raise PrepareError(f'{shown(str(path))}: a parse map of mode {mode}; fix: save the parser\'s label PNG '
                           f'(palette or grayscale, pixel value = label)')
    indices = np.asarray(image, dtype=np.uint8)
    used = [int(v) for v in np.unique(indices)]
    if mode == 'P' and used[-1] >= UNTELLING_LABELS:
        flat = image.getpalette() or []
        palette = [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]
        colours = {label: palette[label] if label < len(palette) else None for label in used}
        if all(label < NUM_LIP_LABELS and colour in (LIP_PALETTE[label], VITON_LIP_PALETTE[label])
               for label, colour in colours.items()):
            if any(VITON_LIP_PALETTE[label] != LIP_PALETTE[label] and colour == VITON_LIP_PALETTE[label]
                   for label, colour in colours.items()):
                return DecodedParse(indices, 'palette PNG with VITON\'s LIP palette', frozenset({'lip'}))
            # other parsers put LIP's palette on other label sets (see colours_to_labels)
            return DecodedParse(indices, 'palette PNG with the LIP palette', families_by_values(used[-1]))
        if all(colour == SCHP_PALETTE[label] for label, colour in colours.items()):
            entries = len(palette)
            by_size = {20: 'lip', 18: 'atr', 7: 'pascal'}
            if entries in by_size:
                return DecodedParse(indices, f'palette PNG with SCHP\'s {entries}-class palette',
                                    frozenset({by_size[entries]}))
            return DecodedParse(indices, 'label values', families_by_values(used[-1]))
        if all(colour in LABEL_OF_LIP_COLOUR for colour in colours.values()):
            # a colour rendering re-saved with an arbitrary palette: the colours are the labels
            return DecodedParse(*colours_to_labels(np.asarray(image.convert('RGB')), path))
    return DecodedParse(indices, 'label values', families_by_values(used[-1]))


def read_parse(path, photo_path, photo_size, stored_size, orientation):
    """DecodedParse of a parse map file, checked to have its photo's (upright) size."""
    image, _, _ = upright(open_image(path))
    problem = size_problem(path, image.size, photo_path, photo_size, stored_size, orientation, 'parse map')
    if problem:
        raise problem
    return decode_parse(image, path)


def lip_table(label_set):
    table = np.full(256, 255, dtype=np.int16)
    for index, (_, label) in enumerate(LABEL_TABLES[label_set]):
        table[index] = label
    return table


def to_lip(indices, label_set, path):
    """Label indices of ``label_set`` [H, W] -> LIP labels uint8 [H, W] (see LABEL_TABLES)."""
    mapped = lip_table(label_set)[indices]
    if (mapped == 255).any():
        unknown = sorted(int(v) for v in np.unique(indices[mapped == 255]))
        raise PrepareError(f'{shown(str(path))}: labels {unknown} are not in the {label_set} label set (labels 0-'
                           f'{len(LABEL_TABLES[label_set]) - 1}); fix: pass the --parse_labels of the parser that '
                           f'made it (lip, cihp, atr, pascal)')
    if label_set == 'pascal':
        mapped = sided_limbs(mapped, indices)
    return mapped.astype(np.uint8)


def sided_limbs(mapped, indices):
    """Pascal's arms and legs -> LIP's left (image right) or right (image left) arm and leg, split at the middle
    column of the torso (of the whole person where no torso is labelled)."""
    columns = np.nonzero(indices == PASCAL_TORSO)[1]
    if columns.size == 0:
        columns = np.nonzero(indices > 0)[1]
    middle = float(np.median(columns)) if columns.size else (indices.shape[1] - 1) / 2
    on_left_side = np.arange(indices.shape[1])[None, :] > middle   # the person's left: the image's right
    mapped = mapped.copy()
    for unsided, left, right in ((ARM, 14, 15), (LEG, 16, 17)):
        limb = mapped == unsided
        mapped[limb & on_left_side] = left
        mapped[limb & ~on_left_side] = right
    return mapped


def detect_label_set(decoded_files):
    """The label set family the decoded parse maps [(path, DecodedParse)] agree on, and the line that says why;
    raises PrepareError where they do not tell one set."""
    families = set(FAMILY_CLASSES)
    evidence = {}
    for path, decoded in decoded_files:
        if not decoded.families:
            raise PrepareError(f'{shown(str(path))}: labels up to {int(decoded.indices.max())}, more than any label '
                               f'set has (lip and cihp 0-19, atr 0-17, pascal 0-6); fix: save the parser\'s label PNG '
                               f'(pixel value = label)')
        families &= decoded.families
        evidence.setdefault(decoded.evidence, []).append(path)
    told = ', '.join(f'{kind}: {len(paths)}' for kind, paths in evidence.items())
    if len(families) == 1:
        family = families.pop()
        return family, f'parse labels: detected {family} ({told}); pass --parse_labels to choose otherwise'
    if not families:
        examples = '; '.join(f'{shown(str(paths[0]))} ({kind})' for kind, paths in evidence.items())
        raise PrepareError(f'--parse_labels: the parse maps do not agree on one label set ({examples}); fix: pass '
                           f'--parse_labels lip|cihp|atr|pascal, the set of the parser that made them')
    raise PrepareError(f'--parse_labels: the parse maps could be {" or ".join(sorted(families))} ({told}: no palette '
                       f'or label value that tells them apart); fix: pass --parse_labels lip|cihp|atr|pascal, '
                       f'the set of the parser that made them (SCHP: its --dataset)')


LABEL_SET_WARNINGS = {
    'cihp': ['note: --parse_labels cihp: CIHP\'s 10 torso-skin is kept as 10 (LIP\'s jumpsuits), which CP-VTON '
             'counts only in the body shape, like bare arms; the rest is LIP\'s labels'],
    'atr': ['note: --parse_labels atr: belt -> pants (9), bag -> background (0: LIP has no bag), sunglasses 3 -> 4 '
            'and the rest renumbered to LIP (see prepare_data.py\'s docstring)'],
    'pascal': [
        'WARNING: --parse_labels pascal: Pascal-Person-Part labels body parts, not garments. In the LIP maps written:',
        'WARNING:   head -> face (13): no hair/face split, no hat or sunglasses. CP-VTON\'s head region (hat, hair, '
        'sunglasses, face) is still the whole head; CP-VTON+\'s GMM, which leaves the hair out, keeps it in.',
        'WARNING:   torso -> upper-clothes (5): CP-VTON\'s cloth region becomes the whole torso, bare skin included; '
        'a garment below the hips becomes legs. GMM training and the warp IoU then target the torso, not the garment.',
        'WARNING:   arms and legs -> left/right by the side of the torso\'s middle; pants, skirts and shoes become '
        'legs.',
        'WARNING:   For training data use a LIP-trained parser (SCHP simple_extractor.py --dataset lip).'],
}


# --- cloth masks

def read_user_mask(path, photo_path, photo_size, stored_size, orientation):
    """A user's cloth mask -> bool [H, W] of the photo's (upright) size: grayscale >= 128, transparent = black."""
    image, _, _ = upright(open_image(path))
    problem = size_problem(path, image.size, photo_path, photo_size, stored_size, orientation, 'cloth mask')
    if problem:
        raise problem
    if image.mode in SIXTEEN_BIT_MODES:
        gray = sixteen_bit_to_8(image)
    elif image.mode in ALPHA_MODES or 'transparency' in image.info:
        black = Image.new('RGBA', image.size, (0, 0, 0, 255))
        gray = Image.alpha_composite(black, image.convert('RGBA')).convert('L')
    else:
        gray = image.convert('L')
    return np.asarray(gray) >= 128


def automatic_mask(photo):
    from cloth_mask import cloth_mask     # imported when needed: it loads scipy and scikit-image
    return cloth_mask(np.asarray(photo))


# ---------------------------------------------------------------------------------------------------
# One person, one cloth (importable: tryon.py prepares a single person and its cloths with these)

@dataclass
class PreparedPerson:
    image: Image.Image              # RGB, target size
    parse: np.ndarray               # LIP labels uint8 [target H, target W]
    keypoints: np.ndarray           # COCO-18 [18, 3], target pixels
    placement: Placement
    notes: list = field(default_factory=list)


@dataclass
class PreparedCloth:
    image: Image.Image              # RGB, target size
    mask: np.ndarray                # bool [target H, target W]
    placement: Placement
    notes: list = field(default_factory=list)


def prepare_person(photo_path, pose_path, parse_path, size=(192, 256), parse_labels=None, decoded=None):
    """A person photo, its OpenPose JSON and its parse map -> PreparedPerson at ``size`` (W, H).
    ``parse_labels``: 'lip', 'cihp', 'atr' or 'pascal'; None detects it from this parse map (see
    detect_label_set), raising where the file does not tell. Raises PrepareError (a one-line user error) for
    anything unusable; ``notes`` holds lines worth printing (several people in the pose file, the label set).
    ``decoded``: the parse map's DecodedParse where the caller has read it already (see read_parse)."""
    if parse_labels is not None and parse_labels not in LABEL_TABLES:
        raise ValueError(f'parse_labels must be one of {PARSE_LABEL_SETS}, got {parse_labels!r}')
    photo, orientation, stored_size = load_photo(photo_path)
    placement = fit(photo.size, size, orientation, photo_path)
    keypoints, note = read_openpose(pose_path, photo.size, stored_size, orientation)
    notes = [note] if note else []
    if decoded is None:
        decoded = read_parse(parse_path, photo_path, photo.size, stored_size, orientation)
    if parse_labels is None:
        parse_labels, line = detect_label_set([(parse_path, decoded)])
        notes.append(line)
    elif FAMILY[parse_labels] not in decoded.families:
        notes.append(f'warning: {shown(str(parse_path))}: its {decoded.evidence} suggests '
                     f'{" or ".join(sorted(decoded.families)) or "no label set"}, but it is read as {parse_labels}')
    labels = place_labels(to_lip(decoded.indices, parse_labels, parse_path), placement)
    if not np.isin(labels, CLOTH_LABELS).any():
        notes.append(f'warning: {shown(str(parse_path))}: no upper-clothes, dress or coat (LIP labels '
                     f'{", ".join(map(str, CLOTH_LABELS))}): the GMM has no cloth region to warp onto for this person')
    return PreparedPerson(place_photo(photo, placement), labels, place_keypoints(keypoints, placement), placement,
                          notes)


def prepare_cloth(photo_path, mask_path=None, size=(192, 256)):
    """A cloth photo (and the user's mask, else cloth_mask.cloth_mask's) -> PreparedCloth at ``size`` (W, H)."""
    photo, orientation, stored_size = load_photo(photo_path)
    placement = fit(photo.size, size, orientation, photo_path)
    if mask_path is None:
        mask = automatic_mask(photo)
        where = f'cloth_mask.cloth_mask of {shown(str(photo_path))}'
    else:
        mask = read_user_mask(mask_path, photo_path, photo.size, stored_size, orientation)
        where = shown(str(mask_path))
    placed = place_mask(mask, placement)
    if not placed.any():
        raise PrepareError(f'{where}: the cloth mask is empty (no pixel >= 128); fix: give a mask that is white on '
                           f'the cloth')
    notes = []
    if mask.all():
        notes.append(f'warning: {where}: the cloth mask covers the whole photo (no background found)')
    return PreparedCloth(place_photo(photo, placement), placed, placement, notes)


def save_label_png(labels, path):
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), 'L')
    image.putpalette([channel for colour in VITON_LIP_PALETTE for channel in colour])
    image.save(path)


def save_photo(image, placement, path):
    """Save a placed photo as JPEG; a source that already is an upright RGB JPEG of the model size is copied
    byte for byte instead (no second JPEG generation: VITON's own files come out unchanged)."""
    if placement.source and tuple(placement.source_size) == tuple(placement.target_size) \
            and placement.exif_orientation == 1:
        try:
            with Image.open(placement.source) as source:
                unchanged = source.format == 'JPEG' and source.mode == 'RGB'
        except (OSError, SyntaxError, ValueError):
            unchanged = False
        if unchanged:
            shutil.copyfile(placement.source, path)
            return
    image.save(path, quality=PHOTO_JPEG_QUALITY)


def split_folders(image_mask):
    """The folders of a split, relative to it: SPLIT_FOLDERS, and image-mask/ with ``image_mask``."""
    return SPLIT_FOLDERS + ((IMAGE_MASK_FOLDER,) if image_mask else ())


def viton_name(stem):
    """The file name an input photo of ``stem`` gets in the split (image/, cloth/) and in the pairs files."""
    return stem + '.jpg'


def write_person(split_dir, name, person, image_mask=False):
    """Write a PreparedPerson as image/<name>, image-parse/, pose/ (and image-mask/) of ``split_dir``."""
    save_photo(person.image, person.placement, osp.join(split_dir, 'image', name))
    save_label_png(person.parse, osp.join(split_dir, 'image-parse', parse_file_name(name)))
    with open(osp.join(split_dir, 'pose', pose_file_name(name)), 'w') as f:
        json.dump(openpose_record(person.keypoints), f)
    if image_mask:
        Image.fromarray(((person.parse > 0) * 255).astype(np.uint8), 'L').save(
            osp.join(split_dir, IMAGE_MASK_FOLDER, parse_file_name(name)))


def write_cloth(split_dir, name, cloth):
    save_photo(cloth.image, cloth.placement, osp.join(split_dir, 'cloth', name))
    Image.fromarray(cloth.mask.astype(np.uint8) * 255, 'L').save(osp.join(split_dir, 'cloth-mask', name),
                                                                 quality=MASK_JPEG_QUALITY)


# ---------------------------------------------------------------------------------------------------
# A whole split

def stem_problem(stem):
    """Why the stem cannot name a VITON file, or None."""
    name = viton_name(stem)
    problem = name_problem(name)
    if problem:
        return f'the name {name!r} {problem}'
    if any(character.isspace() for character in stem):
        return 'the name holds white space, which separates the names of a pairs line'
    if '.jpg' in stem:
        return 'the name holds \'.jpg\', from which the loader derives the parse map\'s and the pose\'s names'
    return None


def list_images(folder, flag, log):
    """{stem: path} of the image files directly in ``folder`` (checked to exist); other files are logged."""
    found, ignored, errors = {}, [], []
    for entry in sorted(os.listdir(folder)):
        path = osp.join(folder, entry)
        if entry.startswith('.'):
            continue
        stem, extension = osp.splitext(entry)
        if not osp.isfile(path) or extension.lower() not in IMAGE_EXTENSIONS:
            ignored.append(entry)
            continue
        if stem in found:
            errors.append(f'{shown(path)}: {flag} holds two images named {shown(stem)} '
                          f'({osp.basename(found[stem])}, {entry}); fix: keep one')
            continue
        problem = stem_problem(stem)
        if problem:
            errors.append(f'{shown(path)}: {problem}; fix: rename the file')
            continue
        found[stem] = path
    if errors:
        raise PrepareError('\n'.join(errors))
    if ignored:
        log(f'note: {flag} {shown(folder)}: ignored {len(ignored)} entries that are not image files: '
                     f'{", ".join(shown(e) for e in ignored[:8])}{" ..." if len(ignored) > 8 else ""}')
    return found


def same_cloth(person_stem, cloth_stem):
    """The pairing rule: equal stems, or VITON's person NNNNNN_0 wearing cloth NNNNNN_1."""
    return person_stem == cloth_stem or (person_stem.endswith('_0') and cloth_stem == person_stem[:-2] + '_1')


def lookup(name, found):
    """The stem in ``found`` ({stem: path}) that a --pairs name means: the file of that name, else the input of
    that stem (``alice``, or ``alice.jpg`` for persons/alice.png); None when there is none."""
    exact = [stem for stem, path in found.items() if osp.basename(path) == name]
    if exact:
        return exact[0]
    for stem in (name, osp.splitext(name)[0]):
        if stem in found:
            return stem
    return None


def read_pairs_file(path, persons, cloths):
    """[(person stem, cloth stem)] of a --pairs file (checked to exist) naming input files."""
    pairs, errors = [], []
    for line_no, fields, line in pairs_file_lines(path):
        where = f'--pairs {shown(path)}, line {line_no}'
        if len(fields) != 2:
            errors.append(f'{where}: expected "<person file> <cloth file>", got {line.strip()!r}')
            continue
        person, cloth = lookup(fields[0], persons), lookup(fields[1], cloths)
        if person is None:
            errors.append(f'{where}: no person photo {shown(fields[0])} in --persons')
        if cloth is None:
            errors.append(f'{where}: no cloth photo {shown(fields[1])} in --clothes')
        if person is not None and cloth is not None:
            pairs.append((person, cloth))
    if errors:
        raise PrepareError('\n'.join(errors))
    if not pairs:
        raise PrepareError(f'--pairs {shown(path)}: no pairs in it')
    return list(dict.fromkeys(pairs))


def find_pose(folder, stem):
    candidates = [osp.join(folder, stem + suffix) for suffix in ('_keypoints.json', '.json')]
    present = [path for path in candidates if osp.isfile(path)]
    if len(present) == 2:
        raise PrepareError(f'{shown(present[0])} and {shown(present[1])}: two pose files for the person {shown(stem)}; '
                           f'fix: keep one')
    return present[0] if present else None


def find_parse(folder, stem):
    """<stem>.png in ``folder`` (or <stem>..png, which SCHP's simple_extractor.py writes for a 5-letter
    extension such as .jpeg or .webp: it cuts 4 characters off the name), or None."""
    for path in (osp.join(folder, stem + '.png'), osp.join(folder, stem + '..png')):
        if osp.isfile(path):
            return path
    lossy = [osp.join(folder, stem + e) for e in ('.jpg', '.jpeg', '.JPG', '.JPEG')
             if osp.isfile(osp.join(folder, stem + e))]
    if lossy:
        raise PrepareError(f'{shown(lossy[0])}: a parse map saved as JPEG, whose compression changes the labels; fix: '
                           f'save the parser\'s output as PNG ({stem}.png)')
    return None


def mask_index(folder):
    """{stem: [file names]} of the image files in a --cloth_masks folder (listed once, not once per cloth)."""
    index = {}
    for entry in sorted(os.listdir(folder)):
        stem, extension = osp.splitext(entry)
        if extension.lower() in IMAGE_EXTENSIONS and not entry.startswith('.'):
            index.setdefault(stem, []).append(entry)
    return index


def find_mask(folder, stem, index):
    """The user's mask of the cloth ``stem`` (``index``: mask_index(folder)), or None."""
    found = index.get(stem, [])
    if len(found) > 1:
        raise PrepareError(f'--cloth_masks {shown(folder)}: {len(found)} masks for the cloth {shown(stem)} '
                           f'({", ".join(found)}); fix: keep one')
    return osp.join(folder, found[0]) if found else None


def inside(path, folder):
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def own_record(split_dir):
    """The placement record of a split that prepare_data.py wrote, or None for any other folder."""
    try:
        with open(osp.join(split_dir, PLACEMENT_FILE)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get('made_by') == MADE_BY else None


def written_entries(record):
    """The paths, relative to the split, that prepare_data.py writes for the split ``record`` describes."""
    entries = {PLACEMENT_FILE, *split_folders(image_mask=True)}
    for name in record.get('image', {}):
        entries |= {f'image/{name}', f'image-parse/{parse_file_name(name)}', f'pose/{pose_file_name(name)}',
                    f'{IMAGE_MASK_FOLDER}/{parse_file_name(name)}'}
    for name in record.get('cloth', {}):
        entries |= {f'cloth/{name}', f'cloth-mask/{name}'}
    return entries


def foreign_entries(split_dir, record):
    """The entries of ``split_dir`` (and of its folders) that prepare_data.py did not write, sorted."""
    found = []
    for entry in sorted(os.listdir(split_dir)):
        found.append(entry)
        if entry in split_folders(image_mask=True) and osp.isdir(osp.join(split_dir, entry)):
            found += [f'{entry}/{name}' for name in sorted(os.listdir(osp.join(split_dir, entry)))]
    expected = written_entries(record)
    return [entry for entry in found if entry not in expected]


def listed(entries, most=3):
    return ', '.join(shown(e) for e in entries[:most]) + (f' and {len(entries) - most} more' if len(entries) > most
                                                          else '')


def check_output(args, split_dir, pairs_paths):
    """Refuse outputs that overlap an input, and anything --overwrite would delete that is not ours."""
    inputs = [(flag, getattr(args, name)) for flag, name in (('--persons', 'persons'), ('--clothes', 'clothes'),
                                                              ('--poses', 'poses'), ('--parses', 'parses'),
                                                              ('--cloth_masks', 'cloth_masks')) if getattr(args, name)]
    for flag, folder in inputs:
        if inside(split_dir, folder) or inside(folder, split_dir):
            raise PrepareError(f'--out {shown(args.out)}: the split folder {shown(split_dir)} and the input folder '
                               f'{flag} {shown(folder)} overlap; fix: write the dataset elsewhere (the inputs are '
                               f'never modified)')
    if args.pairs and (inside(args.pairs, split_dir)
                       or any(osp.exists(p) and osp.samefile(p, args.pairs) for p in pairs_paths)):
        raise PrepareError(f'--pairs {shown(args.pairs)} lies where this command writes ({shown(split_dir)} or its '
                           f'pairs files); fix: pass a copy of it from elsewhere, or another --out')
    existing = [p for p in pairs_paths if osp.exists(p)]
    if osp.isdir(split_dir) and os.listdir(split_dir):
        existing.insert(0, split_dir)
    elif osp.exists(args.out) and not osp.isdir(args.out):
        raise PrepareError(f'--out {shown(args.out)} exists and is not a folder; fix: choose another --out')
    elif osp.exists(split_dir) and not osp.isdir(split_dir):
        raise PrepareError(f'--out: {shown(split_dir)} exists and is not a folder; fix: choose another --out')
    if not existing:
        return
    if not args.overwrite:
        raise PrepareError(f'--out {shown(args.out)} already holds the {args.datamode} split ({listed(existing)}); '
                           f'nothing was written; fix: pass --overwrite to replace it, or choose another --out')
    record = own_record(split_dir)
    if record is None:
        raise PrepareError(f'--overwrite: {shown(split_dir)} was not written by prepare_data.py (no {PLACEMENT_FILE} '
                           f'of it), so {listed(existing)} is not replaced even with --overwrite; fix: remove it '
                           f'yourself or choose another --out')
    foreign = foreign_entries(split_dir, record)
    if foreign:
        raise PrepareError(f'--overwrite: {shown(split_dir)} holds {len(foreign)} entries that prepare_data.py did '
                           f'not write ({listed(foreign)}), which replacing the split would delete; fix: move them '
                           f'out of it (and back in afterwards), or choose another --out')


def write_lines(path, lines):
    """Write ``lines`` to ``path``, one per line (a pairs file)."""
    with open(path, 'w') as f:
        f.writelines(line + '\n' for line in lines)


def build_parser():
    parser = argparse.ArgumentParser(prog='prepare_data.py', description=__doc__.split('\n\n')[0],
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--persons', required=True, metavar='DIR', help='person photos')
    parser.add_argument('--clothes', required=True, metavar='DIR', help='in-shop cloth photos')
    parser.add_argument('--poses', metavar='DIR', help='OpenPose JSON: <stem>_keypoints.json or <stem>.json (required)')
    parser.add_argument('--parses', metavar='DIR', help='human-parser label maps: <stem>.png (required)')
    parser.add_argument('--out', required=True, metavar='DATAROOT', help='the dataset root to write')
    parser.add_argument('--datamode', required=True, choices=('train', 'test'))
    parser.add_argument('--fine_height', type=flags.image_side, default=256, help='the model\'s input height')
    parser.add_argument('--fine_width', type=flags.image_side, default=192, help='the model\'s input width')
    parser.add_argument('--parse_labels', choices=PARSE_LABEL_SETS, default=None,
                        help='the parser\'s label set (default: detected where the files tell it unambiguously)')
    parser.add_argument('--cloth_masks', metavar='DIR', help='your cloth masks, <cloth stem>.<ext>, white = cloth '
                                                              '(default: cloth_mask.cloth_mask on each cloth photo)')
    parser.add_argument('--pairs', metavar='FILE', help='"<person file> <cloth file>" per line (default: test: every '
                                                        'person x every cloth; train: the same-cloth pairs)')
    parser.add_argument('--image_mask', action='store_true', help='also write image-mask/ (CP-VTON+\'s body masks, '
                                                                  'for --body_shape image-mask) from the parse maps')
    parser.add_argument('--skip_missing', action='store_true',
                        help='leave out persons without a pose or parse map and cloths without a mask, naming each '
                             '(default: report them and stop)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a split that prepare_data.py wrote earlier in --out')
    return parser


@dataclass
class Plan:
    persons: dict          # stem -> photo path
    cloths: dict
    pairs: list            # [(person stem, cloth stem)]
    poses: dict = field(default_factory=dict)      # person stem -> pose path
    parses: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)      # cloth stem -> mask path (or None: automatic)
    decoded: dict = field(default_factory=dict)    # person stem -> DecodedParse, where detection read it


def plan_split(args, log):
    persons = list_images(args.persons, '--persons', log)
    cloths = list_images(args.clothes, '--clothes', log)
    if not persons:
        raise PrepareError(f'--persons {shown(args.persons)}: no image files in it')
    if not cloths:
        raise PrepareError(f'--clothes {shown(args.clothes)}: no image files in it')
    if args.pairs:
        pairs = read_pairs_file(args.pairs, persons, cloths)
        if args.datamode == 'train':
            others = [p for p in pairs if not same_cloth(*p)]
            if others:
                log(f'note: --datamode train: {len(others)} of the {len(pairs)} pairs of --pairs are not '
                           f'same-cloth by their names (e.g. {others[0][0]} + {others[0][1]}); the GMM learns to warp '
                           f'each pair\'s cloth onto where that person wears a cloth, so be sure they wear it')
    elif args.datamode == 'test':
        pairs = [(p, c) for p in sorted(persons) for c in sorted(cloths)]
        if len(pairs) > MANY_PAIRS:
            log(f'note: --datamode test: {len(persons)} persons x {len(cloths)} cloths = {len(pairs)} pairs, each a '
                f'try-on that steps 2-5 compute; pass --pairs FILE to choose the ones you want')
    else:
        pairs = [(p, c) for p in sorted(persons) for c in sorted(cloths) if same_cloth(p, c)]
        if not pairs:
            raise PrepareError('--datamode train: no person has a cloth of the same name (persons/alice.jpg + '
                               'clothes/alice.png, or VITON\'s NNNNNN_0 + NNNNNN_1), and GMM training needs each '
                               'person with the cloth they wear; fix: name them so, or pass --pairs FILE')
        unused = sorted(set(persons) - {p for p, _ in pairs})
        if unused:
            log(f'note: --datamode train: {len(unused)} person photos have no cloth of their name and are left '
                       f'out: {", ".join(unused[:8])}{" ..." if len(unused) > 8 else ""}')
    used_persons = {p: persons[p] for p in dict.fromkeys(p for p, _ in pairs)}
    used_cloths = {c: cloths[c] for c in dict.fromkeys(c for _, c in pairs)}
    return Plan(used_persons, used_cloths, pairs)


def find_inputs(args, plan, log):
    """Fill the plan's pose, parse and mask paths; report every missing one by name (or skip it)."""
    missing, errors = [], []
    for stem, photo in plan.persons.items():
        try:
            pose, parse = find_pose(args.poses, stem), find_parse(args.parses, stem)
        except PrepareError as error:
            errors.append(str(error))
            continue
        if pose is None:
            expected = shown(osp.join(args.poses, stem + '_keypoints.json'))
            missing.append(('person', stem, f'{shown(photo)}: no pose file {expected} (or {stem}.json); fix: run '
                                            f'OpenPose on it with --write_json'))
        if parse is None:
            expected = shown(osp.join(args.parses, stem + '.png'))
            missing.append(('person', stem, f'{shown(photo)}: no parse map {expected}; fix: run the human parser on '
                                            f'it'))
        plan.poses[stem], plan.parses[stem] = pose, parse
    masks = mask_index(args.cloth_masks) if args.cloth_masks else {}
    for stem, photo in plan.cloths.items():
        try:
            mask = find_mask(args.cloth_masks, stem, masks) if args.cloth_masks else None
        except PrepareError as error:
            errors.append(str(error))
            continue
        if args.cloth_masks and mask is None:
            expected = shown(osp.join(args.cloth_masks, stem))
            missing.append(('cloth', stem, f'{shown(photo)}: no cloth mask {expected}.<png|jpg|...> in --cloth_masks; '
                                           f'fix: add it, or leave out --cloth_masks for automatic masks'))
        plan.masks[stem] = mask
    if errors:
        raise PrepareError('\n'.join(errors))
    if missing and not args.skip_missing:
        raise PrepareError(with_summary([f'{line} (or pass --skip_missing to leave it out)' for _, _, line in missing],
                                        'missing input files'))
    for kind, stem, line in missing:
        log(f'skipped: {line.split("; fix:")[0]}')
    drop(plan, {s for k, s, _ in missing if k == 'person'}, {s for k, s, _ in missing if k == 'cloth'})


def with_summary(lines, what):
    """The lines of several errors, one per file, and a count when there is more than one."""
    if len(lines) > 1:
        lines = lines + [f'{len(lines)} {what} (listed above); nothing was written']
    return '\n'.join(lines)


def drop(plan, persons, cloths):
    plan.pairs = [(p, c) for p, c in plan.pairs if p not in persons and c not in cloths]
    for name, left_out in (('persons', persons), ('poses', persons), ('parses', persons), ('decoded', persons),
                           ('cloths', cloths), ('masks', cloths)):
        setattr(plan, name, {s: v for s, v in getattr(plan, name).items() if s not in left_out})
    if not plan.pairs:
        raise PrepareError('--skip_missing: no pair is left once the photos without their inputs are left out')


def choose_label_set(args, plan, log):
    """The label set to convert with: --parse_labels, or detected from every parse map (whose decoding is kept
    in ``plan.decoded`` for build_split)."""
    if args.parse_labels:
        label_set, told = args.parse_labels, f'parse labels: {args.parse_labels} (--parse_labels)'
    else:
        errors = []
        for stem, parse in plan.parses.items():
            try:
                photo, orientation, stored = probe_photo(plan.persons[stem])
                plan.decoded[stem] = read_parse(parse, plan.persons[stem], photo, stored, orientation)
            except PrepareError as error:
                errors.append(str(error))
        if errors:
            raise PrepareError(with_summary(errors, 'files cannot be used'))
        label_set, told = detect_label_set([(plan.parses[stem], decoded) for stem, decoded in plan.decoded.items()])
    for line in [told] + LABEL_SET_WARNINGS.get(label_set, []):
        log(line)
    return label_set


def probe_photo(path):
    """(upright size, EXIF orientation, stored size) of a photo, from its header."""
    with open_image(path, load=False) as image:
        orientation, stored = exif_orientation(image), image.size
    swapped = orientation in (5, 6, 7, 8)
    return (stored[::-1] if swapped else stored), orientation, stored


def build_split(args, plan, label_set, staging, log):
    """Write every file of the split into ``staging``; returns the placement record. Collects every error."""
    size = (args.fine_width, args.fine_height)
    for folder in split_folders(args.image_mask):
        os.makedirs(osp.join(staging, folder))
    record = {'made_by': MADE_BY, 'version': 1, 'datamode': args.datamode, 'fine_width': args.fine_width,
              'fine_height': args.fine_height, 'parse_labels': label_set, 'keypoint_convention': KEYPOINT_CONVENTION,
              'settings': {key: value for key, value in vars(args).items()}, 'image': {}, 'cloth': {}}
    errors, skipped_persons = [], set()
    for stem, photo in plan.persons.items():
        try:
            person = prepare_person(photo, plan.poses[stem], plan.parses[stem], size, label_set,
                                    decoded=plan.decoded.get(stem))
        except MissingInput as error:
            if not args.skip_missing:
                errors.append(f'{error}; or pass --skip_missing to leave it out')
            else:
                log(f'skipped: {str(error).split("; fix:")[0]}')
                skipped_persons.add(stem)
            continue
        except PrepareError as error:
            errors.append(str(error))
            continue
        for note in person.notes:
            log(note)
        write_person(staging, viton_name(stem), person, args.image_mask)
        record['image'][viton_name(stem)] = person.placement.to_dict()
    for stem, photo in plan.cloths.items():
        try:
            cloth = prepare_cloth(photo, plan.masks[stem], size)
        except PrepareError as error:
            errors.append(str(error))
            continue
        for note in cloth.notes:
            log(note)
        write_cloth(staging, viton_name(stem), cloth)
        record['cloth'][viton_name(stem)] = cloth.placement.to_dict()
    if errors:
        raise PrepareError(with_summary(errors, 'files cannot be used'))
    if skipped_persons:
        drop(plan, skipped_persons, set())
    with open(osp.join(staging, PLACEMENT_FILE), 'w') as f:
        json.dump(record, f, indent=1)
    return record


def run_data_check(args, pairs_name, log=print):
    from data_check import validate_dataset
    opt = types.SimpleNamespace(dataroot=args.out, datamode=args.datamode, stage='GMM', data_list=pairs_name,
                                fine_height=args.fine_height, fine_width=args.fine_width,
                                body_shape='image-mask' if args.image_mask else 'parse')
    report = validate_dataset(opt, log)
    log(report.format())
    return report


def process_alive(pid):
    if os.name != 'posix':
        return True     # Windows' os.kill(pid, 0) would end the process; keep its folder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True     # alive, another user's
    return True


def clean_up_after_killed_runs(out, split_dir, datamode, log):
    """Remove the staging folders of runs that were killed (SIGKILL, power loss) before they could, and put
    back an old split that such a run had moved aside but not yet replaced."""
    if not osp.isdir(out):
        return
    for entry in sorted(os.listdir(out)):
        for prefix, is_backup in ((STAGING_PREFIX, False), (BACKUP_PREFIX, True)):
            prefix = prefix.format(datamode=datamode)
            pid = entry[len(prefix):]
            if not (entry.startswith(prefix) and pid.isdigit()) or process_alive(int(pid)):
                continue
            path = osp.join(out, entry)
            if is_backup and not osp.exists(split_dir):
                os.replace(path, split_dir)
                log(f'note: put back {shown(split_dir)}, which a killed run (process {pid}) had moved to {shown(path)}')
            else:
                shutil.rmtree(path, ignore_errors=True)
                log(f'note: removed {shown(path)}, left by a killed run (process {pid})')


def move_into_place(staging, split_dir, backup):
    """Replace ``split_dir`` by ``staging``: the old split is moved to ``backup`` and put back if the move of the
    new one fails, so a failure never loses both."""
    had_old = osp.isdir(split_dir)
    if had_old:
        os.replace(split_dir, backup)
    try:
        os.replace(staging, split_dir)
    except BaseException:
        if had_old:
            os.replace(backup, split_dir)
        raise
    if had_old:
        shutil.rmtree(backup, ignore_errors=True)    # a leftover is removed by the next run


def prepare_dataset(args, log=print):
    """Everything the command does but argument parsing; returns the exit status. Raises PrepareError."""
    start = time.perf_counter()
    lacking = [flag for flag, value in (('--poses', args.poses), ('--parses', args.parses)) if not value]
    if lacking:
        raise PrepareError(f'{" and ".join(lacking)} missing: CP-VTON\'s GMM and TOM both read every person\'s pose '
                           f'and parse map (cp_dataset.CPDataset), so no stage could train or test on the split; fix: '
                           f'run OpenPose (--write_json) and a LIP human parser (SCHP) on the person photos and pass '
                           f'--poses DIR --parses DIR')
    for flag, folder in (('--persons', args.persons), ('--clothes', args.clothes), ('--poses', args.poses),
                         ('--parses', args.parses), ('--cloth_masks', args.cloth_masks)):
        if folder and not osp.isdir(folder):
            raise PrepareError(f'{flag} {shown(folder)}: no such folder; fix: pass the folder that holds them')
    if args.pairs and not osp.isfile(args.pairs):
        raise PrepareError(f'--pairs {shown(args.pairs)}: file not found')
    split_dir = osp.join(args.out, args.datamode)
    pairs_name, paired_name = f'{args.datamode}_pairs.txt', f'{args.datamode}_pairs_paired.txt'
    pairs_paths = [osp.join(args.out, pairs_name), osp.join(args.out, paired_name)]
    clean_up_after_killed_runs(args.out, split_dir, args.datamode, log)
    check_output(args, split_dir, pairs_paths)
    plan = plan_split(args, log)
    find_inputs(args, plan, log)
    label_set = choose_label_set(args, plan, log)
    made_out = not osp.exists(args.out)
    os.makedirs(args.out, exist_ok=True)
    staging = osp.join(args.out, STAGING_PREFIX.format(datamode=args.datamode) + str(os.getpid()))
    backup = osp.join(args.out, BACKUP_PREFIX.format(datamode=args.datamode) + str(os.getpid()))
    if osp.exists(staging):
        shutil.rmtree(staging)
    try:
        build_split(args, plan, label_set, staging, log)
        move_into_place(staging, split_dir, backup)   # check_output allowed it: empty, or ours with --overwrite
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made_out and not os.listdir(args.out):
            os.rmdir(args.out)            # leave no trace of a run that wrote nothing
        raise
    pairs = [f'{viton_name(p)} {viton_name(c)}' for p, c in plan.pairs]
    paired = [f'{viton_name(p)} {viton_name(c)}' for p, c in plan.pairs if same_cloth(p, c)]
    write_lines(pairs_paths[0], pairs)
    if paired:
        write_lines(pairs_paths[1], paired)
    elif osp.exists(pairs_paths[1]):
        os.remove(pairs_paths[1])     # an old list of this split (--overwrite) would name other pairs
    masks = 'your --cloth_masks' if args.cloth_masks else 'cloth_mask.cloth_mask'
    log(f'wrote {shown(split_dir)}: {len(plan.persons)} persons, {len(plan.cloths)} cloths (masks: {masks}), '
        f'{args.fine_width}x{args.fine_height}; {pairs_name}: {len(pairs)} pairs; '
        + (f'{paired_name}: {len(paired)} same-cloth pairs' if paired else 'no same-cloth pairs (no paired list)')
        + f'; placements in {PLACEMENT_FILE} ({time.perf_counter() - start:.1f} s)')
    if args.datamode == 'test' and not paired:
        log('note: without same-cloth pairs evaluate.py can score only IS and FID (SSIM, LPIPS and IoU need a '
            'person in their own cloth)')
    report = run_data_check(args, pairs_name, log)
    if not report.ok:
        return 1
    size_flags = ('' if (args.fine_width, args.fine_height) == (192, 256)
                  else f' --fine_height {args.fine_height} --fine_width {args.fine_width}')
    if args.datamode == 'train':
        log(f'next: DATAROOT={args.out} bash scripts/step1-train-gmm.sh{size_flags} (steps 3-5 need a test split '
            f'too: prepare_data.py ... --datamode test)')
    else:
        log(f'next, with trained checkpoints: DATAROOT={args.out} GMM_CHECKPOINT=<gmm.pth> bash '
            f'scripts/step2-test-gmm.sh; copy result/<gmm.pth>/test/warp-cloth and warp-mask into {shown(split_dir)}/; '
            f'DATAROOT={args.out} TOM_CHECKPOINT=<tom.pth> bash scripts/step5-test-tom.sh')
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return prepare_dataset(args)
    except PrepareError as error:
        lines = str(error).splitlines()
    except OSError as error:   # writing the split: a full disk, no permission
        lines = [f'{shown(str(error.filename or args.out))}: {error.strerror or error}; fix: check the free space '
                 f'and the permissions there']
    for line in lines:
        print(f'prepare_data.py: error: {line}', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
