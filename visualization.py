"""TensorBoard image grids and result images.

Tensors come in [-1,1] (images, [B,3,H,W]) or [-1,1] / {0,1}-derived masks ([B,1,H,W]);
everything is mapped to [0,1] for TensorBoard and to uint8 for files.
"""
import os
import os.path as osp

import numpy as np
import torch
from PIL import Image

from cp_dataset import file_in
from networks import atomic_write


def tensor_for_board(img_tensor):
    """[B,C,H,W] in [-1,1] -> [B,3,H,W] in [0,1] (1-channel tensors are repeated to RGB)."""
    tensor = ((img_tensor.detach().float() + 1) * 0.5).clamp(0, 1).cpu()
    if tensor.size(1) == 1:
        tensor = tensor.repeat(1, 3, 1, 1)
    return tensor


def tensor_list_for_board(img_tensors_list):
    """Rows of [B,C,H,W] tensors -> [B,3,rows*H,cols*W]: for each sample one canvas laid out as the
    rows and columns of ``img_tensors_list`` (the original's 'combine' layout, torchvision's make_grid
    without padding: rows side by side, stacked)."""
    cols = max(len(row) for row in img_tensors_list)
    tiles = [[tensor_for_board(t) for t in row] for row in img_tensors_list]
    # Short rows are padded with grey (0.5), as the original canvas was.
    grey = torch.full_like(tiles[0][0], 0.5)
    rows = [torch.cat(row + [grey] * (cols - len(row)), dim=3) for row in tiles]
    return torch.cat(rows, dim=2)


def board_add_images(board, tag_name, img_tensors_list, step_count):
    """One image per sample under the tags '<tag_name>/000', '<tag_name>/001', ..."""
    for i, img in enumerate(tensor_list_for_board(img_tensors_list)):
        board.add_image('%s/%03d' % (tag_name, i), img, step_count)


def tensor_to_uint8_image(img_tensor):
    """[C,H,W] in [-1,1] -> HxW (C=1) or HxWx3 uint8 array, truncated like the original's astype('uint8')."""
    array = ((img_tensor.detach().float().cpu() + 1) * 0.5 * 255).clamp(0, 255).numpy().astype(np.uint8)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def save_image_atomic(image, path, **options):
    """Write a PIL image to a temporary file beside ``path`` and rename it into place, so that an
    interrupted run never leaves a truncated image where a good one was. ``options`` go to PIL's save
    (e.g. quality=95 for a JPEG)."""
    image_format = Image.registered_extensions().get(osp.splitext(path)[1].lower(), 'PNG')
    atomic_write(path, lambda tmp_path: image.save(tmp_path, format=image_format, **options))


def save_images(img_tensors, img_names, save_dir):
    """Save each [C,H,W] tensor in [-1,1] of the batch as ``save_dir/<name>`` (format from the extension;
    JPEG at Pillow's default quality 75, as the original). The names come from a pairs file: file_in
    keeps every file in ``save_dir``."""
    os.makedirs(save_dir, exist_ok=True)
    for img_tensor, img_name in zip(img_tensors, img_names):
        save_image_atomic(Image.fromarray(tensor_to_uint8_image(img_tensor)), file_in(save_dir, img_name))
