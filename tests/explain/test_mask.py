"""Face masks, regions and change-energy shares on real aligned faces (facefeat.explain.mask).

The faces are the bundled example photos (examples/faces/) run through the project's own
detection (dlib HOG, upsample 1), 68-point landmarks and FFHQ alignment.
"""

from __future__ import annotations

import numpy as np
import pytest

from facefeat.explain.mask import (
    REGIONS,
    aligned_face_mask,
    change_energy_shares,
    convex_hull,
    face_frame_coordinates,
    face_mask,
    face_regions,
    landmarks_to_aligned,
    polygon_mask,
    skin_mask,
)

pytest.importorskip("dlib")

SIZE = 256


def _load(examples_dir, name: str) -> np.ndarray:
    import PIL.Image

    with PIL.Image.open(examples_dir / name) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def faces(examples_dir) -> dict:
    """name -> (original rgb, 68 landmarks, AlignResult at SIZE, aligned landmarks)."""
    from facefeat.face.align import align_face
    from facefeat.face.detect import FaceDetector
    from facefeat.face.landmarks import LandmarkPredictor

    detector, predictor = FaceDetector("hog", upsample=1), LandmarkPredictor()
    out = {}
    for key, name in (("tom", "Tom_Cruise_avp_2014_4.jpg"), ("astronaut", "astronaut.png")):
        rgb = _load(examples_dir, name)
        # the astronaut photo also fires on the mission patch (score ~0.1): take the best face
        det = max(detector.detect(rgb), key=lambda d: d.score)
        pts = predictor.predict(rgb, det.box)
        res = align_face(rgb, pts, output_size=SIZE)
        aligned = landmarks_to_aligned(pts, res.quad, SIZE, image_size=(rgb.shape[1], rgb.shape[0]))
        out[key] = (rgb, pts, res, aligned)
    return out


# -- mapping landmarks into the aligned image ---------------------------------------------------


def _marker_positions(rgb, pts, base, targets, size) -> tuple[np.ndarray, np.ndarray, float]:
    """Paint 5x5 markers at ``targets`` in the original (at least one inter-ocular distance
    apart), align, locate them; returns (measured, predicted positions, output px per source px)."""
    from facefeat.face.align import align_face

    marked = rgb.astype(np.int16)
    for x, y in np.rint(targets).astype(int):
        marked[y - 2:y + 3, x - 2:x + 3] += 120
    res = align_face(np.clip(marked, 0, 255).astype(np.uint8), pts, output_size=size)
    diff = np.abs(res.image.astype(float) - base.image).sum(axis=-1)
    predicted = landmarks_to_aligned(targets, base.quad, size, image_size=(rgb.shape[1], rgb.shape[0]))
    scale = size / base.geometry.qsize
    radius = int(20 * scale) + 3
    half_iod = 0.5 * np.hypot(*(pts[36:42].mean(0) - pts[42:48].mean(0))) * scale
    ys, xs = np.mgrid[:size, :size]
    measured = []
    for px, py in predicted:
        # strongest change within half an IOD of the prediction, then the centroid of the change
        # in a window around it (the crop may reach past the photo, where reflect padding
        # mirrors the markers, so the whole image cannot be used)
        near = diff * (np.hypot(ys - py, xs - px) <= half_iod)
        iy, ix = np.unravel_index(np.argmax(near), near.shape)
        win = diff * ((abs(ys - iy) <= radius) & (abs(xs - ix) <= radius))
        measured.append([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])
    return np.array(measured), predicted, scale


@pytest.mark.parametrize("key,size", [("tom", 256), ("tom", 64), ("astronaut", 256), ("astronaut", 64)])
def test_landmarks_land_where_the_alignment_puts_their_pixels(faces, key, size):
    # Tom at 64 px exercises the recipe's integer shrink (factor 5) before the warp.
    from facefeat.face.align import align_face

    rgb, pts, _, _ = faces[key]
    base = align_face(rgb, pts, output_size=size)
    for group in ((36, 54), (45, 48), (30,)):  # far apart, and away from the photo's edges
        targets = np.rint(pts[list(group)])
        measured, predicted, scale = _marker_positions(rgb, pts, base, targets, size)
        err = np.hypot(*(measured - predicted).T)
        # marker centroids are biased by clipping at 255 by up to ~0.35 source pixel
        assert err.max() <= max(0.25, 0.4 * scale), (key, size, group, measured, predicted)


def test_mapping_matches_the_ffhq_geometry(faces):
    # the FFHQ crop centre c = eye_avg + 0.1 * eye_to_mouth lands in the image centre, and the
    # quad corners on the image corners (pixel-index coordinates: -0.5 and size - 0.5)
    _, pts, res, aligned = faces["tom"]
    g = res.geometry
    centre = landmarks_to_aligned(g.center[None], res.quad, SIZE)[0]
    np.testing.assert_allclose(centre, [SIZE / 2 - 0.5] * 2, atol=1e-9)
    corners = landmarks_to_aligned(res.quad, res.quad, SIZE)
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [-0.5, SIZE - 0.5], [SIZE - 0.5, SIZE - 0.5],
                                         [SIZE - 0.5, -0.5]], atol=1e-9)
    # the crop's x axis (the eye line tilted by the eye-to-mouth direction) becomes horizontal
    ends = landmarks_to_aligned(np.stack([g.center - g.x, g.center + g.x]), res.quad, SIZE)
    np.testing.assert_allclose(ends, [[-0.5, SIZE / 2 - 0.5], [SIZE - 0.5, SIZE / 2 - 0.5]], atol=1e-9)
    # and the eyes end up level within a pixel or two
    eye_r, eye_l = aligned[36:42].mean(0), aligned[42:48].mean(0)
    assert abs(eye_r[1] - eye_l[1]) < 2.0
    # the 8-number engine diagnostic gives the same result as the (4, 2) quad
    np.testing.assert_allclose(landmarks_to_aligned(pts, res.quad.ravel(), SIZE), landmarks_to_aligned(pts, res.quad, SIZE))


def test_inverse_of_a_general_bilinear_quad():
    # not a parallelogram: Newton's method must still invert PIL's bilinear QUAD map exactly
    quad = np.array([[10.0, 5.0], [0.0, 90.0], [120.0, 110.0], [95.0, 0.0]])
    st = np.random.default_rng(0).uniform(0, 1, size=(50, 2))
    q0, q1, q2, q3 = quad
    s, t = st[:, :1], st[:, 1:]
    p = q0 + s * (q3 - q0) + t * (q1 - q0) + s * t * (q2 - q1 - q3 + q0)
    out = landmarks_to_aligned(p, quad, 100)
    np.testing.assert_allclose(out, st * 100 - 0.5, atol=1e-8)


def test_mapping_input_errors():
    quad = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)
    with pytest.raises(ValueError, match="quad"):
        landmarks_to_aligned(np.zeros((3, 2)), np.zeros((3, 2)), 64)
    with pytest.raises(ValueError, match="points"):
        landmarks_to_aligned(np.zeros((3, 3)), quad, 64)
    with pytest.raises(ValueError, match="NaN"):
        landmarks_to_aligned(np.full((1, 2), np.nan), quad, 64)
    with pytest.raises(ValueError, match="output_size"):
        landmarks_to_aligned(np.zeros((1, 2)), quad, 0)


# -- rasterising --------------------------------------------------------------------------------


def test_polygon_mask_agrees_with_matplotlib_off_the_edges():
    from matplotlib.path import Path

    rng = np.random.default_rng(1)
    pts = rng.uniform(5, 90, size=(12, 2))
    hull = convex_hull(pts)
    mask = polygon_mask(pts, (100, 120))
    ys, xs = np.mgrid[:100, :120]
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    path = Path(hull)
    strict_in = path.contains_points(centres, radius=-1e-6).reshape(100, 120)
    strict_out = ~Path(hull).contains_points(centres, radius=1e-6).reshape(100, 120)
    # ambiguous pixels (within 1e-6 of an edge) aside, the two agree exactly
    assert np.all(mask[strict_in]) and not np.any(mask[strict_out & ~strict_in])
    # every hull vertex lies on the hull: points on edges count as inside
    square = polygon_mask([[2, 2], [2, 6], [6, 6], [6, 2]], 10)
    assert square.sum() == 25 and square[2, 2] and square[6, 6] and not square[7, 7]


def test_polygon_mask_non_convex_and_degenerate():
    # an L shape (even-odd rule) vs its hull
    ell = [[0, 0], [0, 9], [9, 9], [9, 6], [3, 6], [3, 0]]
    m = polygon_mask(ell, 12, convex=False)
    assert m[8, 8] and m[1, 1] and not m[5, 5]
    assert polygon_mask(ell, 12)[5, 5]
    assert not polygon_mask([[0, 0], [5, 5], [9, 9]], 12).any()  # collinear: no area
    assert not polygon_mask([[-50, -50], [-40, -50], [-40, -40]], 12).any()  # off the image


# -- the face mask on real faces ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["tom", "astronaut"])
def test_face_mask_covers_the_central_face_not_the_corners(faces, key):
    _, pts, res, aligned = faces[key]
    mask = face_mask(aligned, SIZE)
    assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
    assert 0.15 < mask.mean() < 0.40  # FFHQ crops: the face is about a quarter of the image
    # eyes, nose tip, mouth and the point between the eyes are inside; the corners are not
    for i in (30, 33, 36, 39, 42, 45, 51, 57, 62, 27):
        x, y = np.rint(aligned[i]).astype(int)
        assert mask[y, x], i
    c = SIZE // 8
    for corner in (mask[:c, :c], mask[:c, -c:], mask[-c:, :c], mask[-c:, -c:]):
        assert not corner.any()
    assert mask[SIZE // 2, SIZE // 2]
    # the alignment-level helper gives the same mask
    np.testing.assert_array_equal(aligned_face_mask(pts, res.quad, SIZE, image_size=faces[key][0].shape[1::-1]), mask)


def test_forehead_lift_grows_the_mask_upwards_only(faces):
    _, _, _, aligned = faces["tom"]
    base = face_mask(aligned, SIZE)
    lifted = face_mask(aligned, SIZE, forehead=0.5)
    assert np.all(lifted[base])  # a superset
    added = lifted & ~base
    rows = np.nonzero(added.any(axis=1))[0]
    brow_top = aligned[17:27, 1].max()
    assert added.sum() > 0.1 * base.sum()
    assert rows.max() <= brow_top + 1  # the growth is above the lowest brow point
    with pytest.raises(ValueError, match="forehead"):
        face_mask(aligned, SIZE, forehead=-1)


@pytest.mark.parametrize("key", ["tom", "astronaut"])
def test_skin_mask_is_a_subset_without_eyes_and_mouth(faces, key):
    _, _, res, aligned = faces[key]
    hull = face_mask(aligned, SIZE)
    skin = skin_mask(res.image, aligned)
    assert np.all(hull[skin])
    assert 0.6 < skin.sum() / hull.sum() < 0.97
    for i in (37, 38, 43, 44, 62, 66):  # eye openings and the inner mouth
        x, y = np.rint(aligned[i]).astype(int)
        assert not skin[y, x], i
    # cheeks (midway between the eye's outer corner and the mouth corner) are skin
    for a, b in ((36, 48), (45, 54)):
        x, y = np.rint(0.5 * (aligned[a] + aligned[b])).astype(int)
        assert skin[y, x]
    # without the colour test and the feature holes, the skin mask is the hull
    np.testing.assert_array_equal(skin_mask(res.image, aligned, exclude_features=False, colour_threshold=None), hull)


def test_skin_mask_drops_off_colour_pixels(faces):
    _, _, res, aligned = faces["astronaut"]
    img = res.image.copy()
    x, y = np.rint(0.5 * (aligned[36] + aligned[48])).astype(int)  # a cheek
    img[y - 4:y + 5, x - 4:x + 5] = (20, 40, 220)  # a blue patch
    skin = skin_mask(img, aligned)
    assert not skin[y - 4:y + 5, x - 4:x + 5].any()
    assert skin_mask(img, aligned, colour_threshold=None)[y - 4:y + 5, x - 4:x + 5].all()


# -- regions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["tom", "astronaut"])
def test_regions_partition_the_image_and_sit_where_they_should(faces, key):
    _, _, _, aligned = faces[key]
    regions = face_regions(aligned, SIZE)
    assert tuple(regions) == REGIONS
    total = sum(m.astype(int) for m in regions.values())
    assert np.all(total == 1)
    np.testing.assert_array_equal(regions["face"], face_mask(aligned, SIZE))
    ys, xs = np.mgrid[:SIZE, :SIZE]
    uv = face_frame_coordinates(aligned, np.stack([xs, ys], -1))
    v_chin = face_frame_coordinates(aligned, aligned[8:9])[0, 1]
    v_brow = face_frame_coordinates(aligned, aligned[17:27])[:, 1].min()
    # hair lies above the chin; everything below the chin outside the face is below_chin
    assert uv[regions["hair"]][:, 1].max() <= v_chin
    assert np.all(regions["below_chin"][(uv[..., 1] > v_chin) & ~regions["face"]])
    # straight above the brows (on the midline, up to 0.8 IOD) is hair, not background
    top = np.rint(aligned[27] + (aligned[27] - aligned[8]) * 0.35).astype(int)
    assert regions["hair"][top[1], top[0]]
    assert uv[regions["hair"]][:, 1].min() < v_brow
    # the top corners are background, the bottom corners clothing (below the mouth, outside the head)
    assert regions["background"][0, 0] and regions["background"][0, -1]
    assert regions["below_chin"][-1, 0] and regions["below_chin"][-1, -1]
    for name, m in regions.items():
        assert m.any(), name


# -- change energy ------------------------------------------------------------------------------


def test_change_inside_the_mask_has_share_one(faces):
    _, _, res, aligned = faces["tom"]
    mask = face_mask(aligned, SIZE)
    edited = res.image.copy()
    edited[mask] = 255 - edited[mask]
    out = change_energy_shares(res.image, edited, mask)
    assert out.shares == {"inside": 1.0, "outside": 0.0}
    assert out.area_shares["inside"] == pytest.approx(mask.mean())
    assert out.total_energy > 0
    # the same edit seen through the region partition: all of it on the face
    regions = face_regions(aligned, SIZE)
    by_region = change_energy_shares(res.image, edited, regions)
    assert by_region.shares["face"] == 1.0 and set(by_region.shares) == set(REGIONS)
    assert sum(by_region.shares.values()) == pytest.approx(1.0, abs=1e-12)


def test_shares_sum_to_one_and_follow_the_area_for_uniform_noise(faces):
    _, _, res, aligned = faces["astronaut"]
    regions = face_regions(aligned, SIZE)
    rng = np.random.default_rng(0)
    noisy = res.image + rng.normal(0, 10, res.image.shape)  # float: no clipping at 0 and 255
    out = change_energy_shares(res.image, noisy, regions)
    assert sum(out.shares.values()) == pytest.approx(1.0, abs=1e-12)
    for name in REGIONS:
        # uniform noise: each region's energy share is its area share (within sampling noise)
        assert out.shares[name] == pytest.approx(out.area_shares[name], rel=0.08, abs=0.005)
        assert out.enrichment()[name] == pytest.approx(1.0, abs=0.1)
    flat = out.as_dict("edit_")
    assert flat["edit_share_face"] == out.shares["face"] and "edit_total_energy" in flat


def test_change_outside_only_and_no_change():
    a = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    b = a.copy()
    b[~mask] = 3
    out = change_energy_shares(a, b, mask)
    assert out.shares == {"inside": 0.0, "outside": 1.0}
    assert out.total_energy == 9 * 3 * (64 - 9)  # uint8 differences squared, summed over channels
    # uint8 inputs do not wrap around: 0 - 3 is -3, not 253
    assert change_energy_shares(b, a, mask).total_energy == out.total_energy
    same = change_energy_shares(a, a, mask)
    assert same.total_energy == 0 and all(np.isnan(v) for v in same.shares.values())
    # greyscale and float images, regions that leave pixels out: the rest is "other"
    g = change_energy_shares(np.zeros((4, 4)), np.ones((4, 4)), {"left": np.eye(4, dtype=bool)})
    assert g.shares == {"left": 0.25, "other": 0.75}


def test_change_energy_input_errors():
    a = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="shape"):
        change_energy_shares(a, np.zeros((8, 9, 3)), np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="mask 'inside'"):
        change_energy_shares(a, a, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="overlap"):
        change_energy_shares(a, a, {"x": np.ones((8, 8), bool), "y": np.eye(8, dtype=bool)})
    with pytest.raises(ValueError, match="boolean"):
        change_energy_shares(a, a, np.full((8, 8), 0.5))
