from __future__ import annotations

import numpy as np
import soundfile
import torch

from training_app.ml.audio import fit_length, load_waveform
from training_app.ml.augment import Augmenter, gaussian_noise_powers
from training_app.ml.config import FeatureConfig
from training_app.ml.features import FeatureCache, LogMelFrontend, load_features

from .conftest import write_tone_clips


def test_load_waveform_downmixes_and_resamples(tmp_path):
    stereo = np.stack([np.full(8000, 0.5), np.full(8000, -0.1)], axis=1).astype(np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 8000, subtype="PCM_16")

    wave = load_waveform(path, 16000)

    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert wave.shape[0] == 16000
    assert abs(float(wave[4000:12000].mean()) - 0.2) < 1e-3


def test_fit_length_pads_and_crops_around_the_centre():
    wave = torch.arange(1.0, 7.0)

    assert fit_length(wave, 10).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 0, 0]
    assert fit_length(wave, 4).tolist() == [2, 3, 4, 5]


def test_random_fit_length_is_seeded_and_keeps_the_samples():
    wave = torch.arange(1.0, 7.0)
    first = fit_length(wave, 10, "random", torch.Generator().manual_seed(4))
    again = fit_length(wave, 10, "random", torch.Generator().manual_seed(4))

    assert torch.equal(first, again)
    assert first[first != 0].tolist() == wave.tolist()


def test_frontend_output_for_a_clip_does_not_depend_on_its_batch():
    frontend = LogMelFrontend(FeatureConfig(clip_samples=8000))
    quiet = 0.01 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    loud = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))

    alone = frontend(quiet)
    batched = frontend(torch.cat([quiet, loud]))[:1]

    assert alone.shape == (1, 1, 40, 51)
    assert torch.allclose(alone, batched, atol=1e-5)
    assert abs(float(alone.mean())) < 1e-4 and abs(float(alone.std(correction=0)) - 1) < 1e-3


def test_feature_cache_round_trips_and_ignores_damaged_entries(tmp_path):
    features = FeatureConfig(clip_samples=8000)
    cache = FeatureCache(tmp_path, features)
    power = torch.rand(40, 51)

    cache.save("ab" * 32, power)
    assert torch.equal(cache.load("ab" * 32), power)
    assert list(cache.path_for("ab" * 32).parent.iterdir()) == [cache.path_for("ab" * 32)]

    cache.path_for("ab" * 32).write_bytes(b"not a numpy file")
    assert cache.load("ab" * 32) is None
    assert cache.load("cd" * 32) is None


def test_feature_cache_separates_feature_configurations(tmp_path):
    power = torch.rand(40, 51)
    FeatureCache(tmp_path, FeatureConfig(clip_samples=8000)).save("ef" * 32, power)

    assert FeatureCache(tmp_path, FeatureConfig(clip_samples=8000, n_fft=512)).load("ef" * 32) is None


def test_second_pass_reads_features_from_the_cache_not_the_audio(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=2)
    features = FeatureConfig(clip_samples=8000)
    frontend = LogMelFrontend(features)
    cache = FeatureCache(tmp_path / "cache", features)

    first, hits, misses = load_features(clips, features, cache, frontend, lambda: False, lambda done: None)
    assert (hits, misses) == (0, 6)
    for clip in clips:
        clip.path.unlink()
    second, hits, misses = load_features(clips, features, cache, frontend, lambda: False, lambda done: None)

    assert (hits, misses) == (6, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_augmentation_is_reproducible_for_a_seed_and_keeps_shapes():
    features = FeatureConfig(clip_samples=8000)
    frontend = LogMelFrontend(features)
    batch = torch.rand(4, 40, 51)

    def augmented(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        noise = gaussian_noise_powers(frontend, features, 2, generator)
        augmenter = Augmenter(True, True, True, noise, generator, warp=True)
        return augmenter.log_mel(frontend.normalize(augmenter.power(batch)))

    first, again, other = augmented(0), augmented(0), augmented(1)

    assert first.shape == (4, 1, 40, 51)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_spec_augment_masks_whole_bands_and_steps():
    generator = torch.Generator().manual_seed(0)
    augmenter = Augmenter(False, False, True, [], generator, freq_masks=1, time_masks=0,
                          max_freq_mask_fraction=0.5)
    batch = torch.ones(8, 1, 40, 51)

    masked = augmenter.log_mel(batch)

    zero_rows = (masked == 0).all(dim=3)
    assert zero_rows.any()
    assert torch.equal((masked == 0), zero_rows.unsqueeze(-1).expand_as(masked))
