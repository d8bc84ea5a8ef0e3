"""The verbose strip's pose panel draws the keypoints where they are on the panel, whatever the photo's size."""
import json
import types

from PIL import Image

from smart_show_test_result import LABEL_HEIGHT, PANEL_SIZE, PairFiles, verbose_strip

RED, YELLOW = (255, 60, 60), (255, 220, 0)   # pose_panel's keypoints and limbs
POSE_PANEL = 4                               # the 5th panel of the first row: cloth, mask, person, parse, pose


def test_keypoints_of_a_512x384_photo_are_scaled_to_the_panel(tmp_path):
    data = tmp_path / 'test'
    (data / 'image').mkdir(parents=True)
    (data / 'pose').mkdir()
    Image.new('RGB', (384, 512), (100, 100, 100)).save(data / 'image' / 'p_0.jpg')
    keypoints = [[0.0, 0.0, 0.0]] * 18
    keypoints[3], keypoints[4] = [200.0, 300.0, 0.9], [200.0, 400.0, 0.9]   # right elbow and wrist: one limb
    (data / 'pose' / 'p_0_keypoints.json').write_text(
        json.dumps({'people': [{'pose_keypoints': [value for point in keypoints for value in point]}]}))
    opt = types.SimpleNamespace(dataroot=str(tmp_path), datamode='test', result_dir=str(tmp_path / 'result'),
                                gmm_checkpoint_name='gmm_final.pth', tom_checkpoint_name='tom_final.pth')

    strip = verbose_strip(PairFiles(opt, 'p_0.jpg', 'c_1.jpg'))

    def panel_pixel(x, y):
        return strip.getpixel((POSE_PANEL * PANEL_SIZE[0] + x, LABEL_HEIGHT + y))

    # 192x256 panel / 384x512 photo = 1/2: photo (200, 300) -> panel (100, 150), (200, 400) -> (100, 200)
    assert panel_pixel(100, 150) == RED and panel_pixel(100, 200) == RED
    assert panel_pixel(100, 175) == YELLOW                     # the limb between them
    assert all(abs(channel - 50) <= 2 for channel in panel_pixel(150, 60))   # the person, darkened by half
