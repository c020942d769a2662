"""The demo's rendered persons: deterministic, and a cross-modal problem that colour alone cannot solve."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fastreid_vld.data.synthetic_persons import ACCENT_CONTRAST, INFRARED, LUMA, VISIBLE, SyntheticPersonRenderer

IDS, CAMERAS = 12, 3


@pytest.fixture(scope="module")
def renderer():
    return SyntheticPersonRenderer(IDS, CAMERAS, (64, 32), seed=5)


def test_frames_are_deterministic_for_a_seed(renderer):
    again = SyntheticPersonRenderer(IDS, CAMERAS, (64, 32), seed=5)
    other_seed = SyntheticPersonRenderer(IDS, CAMERAS, (64, 32), seed=6)
    for modality in (VISIBLE, INFRARED):
        frame = renderer(3, modality, 1, 0, 4)
        assert frame.shape == (64, 32, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, again(3, modality, 1, 0, 4))
        assert not np.array_equal(frame, other_seed(3, modality, 1, 0, 4))


def test_infrared_frames_carry_no_hue(renderer):
    for pid in range(IDS):
        frame = renderer(pid, INFRARED, pid % CAMERAS, 0, 2).astype(int)
        assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all()
    visible = renderer(0, VISIBLE, 0, 0, 2).astype(int)
    assert np.abs(visible[..., 0] - visible[..., 2]).mean() > 5


def test_clothing_of_another_hue_but_equal_brightness_looks_the_same_in_infrared(renderer):
    person = renderer.identities[2]
    # the same brightness, another hue: move red against green along a brightness-preserving direction
    shift = np.array([LUMA[1], -LUMA[0], 0.0])
    step = 0.25 if np.all((person.bottom_rgb + 0.25 * shift >= 0) & (person.bottom_rgb + 0.25 * shift <= 1)) else -0.25
    recoloured = dataclasses.replace(person, bottom_rgb=person.bottom_rgb + step * shift)
    assert recoloured.bottom_rgb @ LUMA == pytest.approx(person.bottom_rgb @ LUMA)
    twin = SyntheticPersonRenderer(IDS, CAMERAS, (64, 32), seed=5)
    twin.identities[2] = recoloured
    np.testing.assert_array_equal(twin(2, INFRARED, 1, 0, 3), renderer(2, INFRARED, 1, 0, 3))
    assert not np.array_equal(twin(2, VISIBLE, 1, 0, 3), renderer(2, VISIBLE, 1, 0, 3))


def test_patterns_keep_their_contrast_in_both_modalities(renderer):
    for person in renderer.identities:
        assert abs(person.accent_rgb @ LUMA - person.top_rgb @ LUMA) >= ACCENT_CONTRAST
    striped = next(pid for pid, person in enumerate(renderer.identities) if person.top_pattern in (1, 3))
    for modality in (VISIBLE, INFRARED):
        grey = renderer(striped, modality, 0, 0, 0).astype(float).mean(axis=2)
        torso = grey[20:30, 12:20]  # the middle of the torso of a standing person
        assert np.percentile(torso, 90) - np.percentile(torso, 10) > 25, modality


def test_cameras_and_frames_vary_the_view_of_one_person(renderer):
    views = [renderer(4, VISIBLE, camera, 0, 0) for camera in range(CAMERAS)]
    assert all(not np.array_equal(views[0], view) for view in views[1:])
    walking = [renderer(4, INFRARED, 0, 0, frame).astype(int) for frame in range(3)]
    assert np.abs(walking[0] - walking[2]).mean() > 1
